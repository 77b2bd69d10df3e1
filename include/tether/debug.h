/* SPDX-License-Identifier: MIT */
/* The production debug endpoint: Go's net/http/pprof for C, plus metrics and a live page. An
 * HTTP/1.1 server on a thread of its own (with its own poller), so it answers while every worker
 * is busy, hogged or deadlocked. See docs/DIAGNOSTICS.md, "The debug endpoint".
 *
 *   /debug/pprof/                            index (HTML)
 *   /debug/pprof/goroutine?debug=0|1|2       Go's goroutine profile: `go tool pprof URL` reads it
 *   /debug/pprof/goroutineleak?debug=0|1|2   the leaked coroutines (tether/leak.h)
 *   /debug/tether/                           live page: coroutines grouped by stack
 *   /debug/tether/coroutines.json            the JSON snapshot (TT_DUMP_JSON)
 *   /debug/tether/groups.json                the live page's data: groups by identical stack
 *   /debug/tether/suspects                   the leak suspects report (text)
 *   /metrics                                 Prometheus text format */
#ifndef TETHER_DEBUG_H
#define TETHER_DEBUG_H

#include "common.h"

TT_BEGIN_DECLS

#define TT_DEBUG_DEFAULT_ADDR "127.0.0.1:6060"

/* Options for tt_debug_serve_opts; zero means the default for every field. */
typedef struct tt_debug_opts {
  const char *addr;       /* "host:port" (port 0: the kernel picks); NULL: TT_DEBUG_DEFAULT_ADDR */
  int max_conns;          /* connections open at once; beyond it new ones get 503 (default 64) */
  int max_responses;      /* responses being written at once (default 4); beyond it 503 */
  int64_t header_timeout; /* ns for a request's line and headers to arrive (default 10 s): 408 */
  int64_t write_timeout;  /* ns a response may go without progress (default 30 s): then closed */
} tt_debug_opts;

/* Starts the debug server on addr (NULL: TT_DEBUG_DEFAULT_ADDR, which is loopback: a server that
 * shows every stack in the process must be exposed on purpose, by naming another address). One
 * server per process; it outlives tt_run (endpoints answer 503 while the runtime is stopped) and
 * stops at tt_debug_stop or process exit. TT_DEBUG_ADDR=addr in the environment starts it at
 * tt_run's start. Returns 0, TT_EBUSY (already serving), TT_EINVAL (bad address), TT_EADDRINUSE,
 * TT_EACCES, TT_ENOMEM, ... Calls: never blocks (binds, starts the thread); any thread; not from
 * signal handlers. */
TT_EXTERN int tt_debug_serve(const char *addr);
TT_EXTERN int tt_debug_serve_opts(const tt_debug_opts *opts);

/* The address the server listens on ("127.0.0.1:40123") into buf. 0, TT_EINVAL (buf too small),
 * TT_ENOTRUNNING (not serving). */
TT_EXTERN int tt_debug_addr(char *buf, size_t len);

/* Stops the server: closes the listener and every connection, waits for responses being written
 * to end (they are aborted), joins the thread. 0, or TT_ENOTRUNNING (not serving).
 * Calls: blocks the calling thread briefly; any thread; not from signal handlers. */
TT_EXTERN int tt_debug_stop(void);

TT_END_DECLS

#endif
