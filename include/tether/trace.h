/* SPDX-License-Identifier: MIT */
/* Execution tracing (Go's runtime/trace): when each coroutine was created, ran, blocked (and why),
 * and who woke it, with user regions and log messages; written as Chrome trace-event JSON, which
 * Perfetto (ui.perfetto.dev) and chrome://tracing open, or as tether's compact binary form, which
 * tt_trace_export converts and tt_trace_summary sums up. docs/TRACING.md describes the output.
 *
 * One trace at a time per process: a full trace (tt_trace_start to tt_trace_stop), a flight
 * recorder (tt_trace_flight_start: the last N seconds or bytes, kept in memory and written on
 * demand or when a leak or the global deadlock is reported), TT_TRACE=path (the whole of a
 * tt_run, written when it ends), or the debug endpoint's /debug/tether/trace?seconds=N. Events are
 * kept in memory (about 48 bytes each) until the trace is written. */
#ifndef TETHER_TRACE_H
#define TETHER_TRACE_H

#include "common.h"

TT_BEGIN_DECLS

/* Output formats of tt_trace_start. */
enum {
  TT_TRACE_JSON = 0,   /* Chrome trace-event JSON (the JSON object format, "traceEvents") */
  TT_TRACE_BINARY = 1, /* tether's binary form: tt_trace_export and tt_trace_summary read it */
};

typedef struct tt_trace_opts {
  int format;         /* TT_TRACE_JSON (the default) or TT_TRACE_BINARY */
  size_t chunk_bytes; /* each worker's buffer, 0: 64 KiB; 4 KiB to 16 MiB */
} tt_trace_opts;

/* Starts tracing every coroutine, to fd (which must stay open until tt_trace_stop). JSON is
 * written by tt_trace_stop (the events are kept in memory until then); the binary form is
 * streamed to fd as the trace goes, by a thread of the tracer's own, and costs a few buffers of
 * memory however long the trace. opts may be NULL (JSON). Works before tt_run too: the trace then
 * starts with the run's first events. Returns 0, or TT_EINVAL (fd < 0, a bad format or chunk
 * size), TT_EBUSY (a trace or the flight recorder is already on), TT_EIO (the binary header could
 * not be written), TT_ENOMEM. Calls: never blocks (the binary form writes its 24-byte header);
 * any thread; not from signal handlers. */
TT_EXTERN int tt_trace_start(int fd, const tt_trace_opts *opts);

/* Stops the trace begun by tt_trace_start and writes it (the rest of it) to its fd. Returns 0, or
 * TT_EINVAL (no trace of tt_trace_start's is on: TT_TRACE's is the run's), TT_EIO (writing
 * failed; the trace is discarded all the same), TT_ENOMEM. Calls: blocks the caller while it
 * writes (no worker waits for it); any thread; not from signal handlers. */
TT_EXTERN int tt_trace_stop(void);

/* Whether any trace (tt_trace_start, the flight recorder, TT_TRACE, the endpoint's) is on.
 * Calls: never blocks; any thread; signal-safe. */
TT_EXTERN int tt_trace_enabled(void);

/* Begins a region named name (copied; at most 255 bytes kept) on the calling coroutine (or plain
 * thread): shown as a span on its own track, nested with the coroutine's other regions. A no-op
 * returning 0 while no trace is on. Returns 0 or TT_EINVAL (name NULL). Calls: never blocks; any
 * thread; not from signal handlers. */
TT_EXTERN int tt_trace_region_begin(const char *name);

/* Ends the innermost region the caller began. Returns 0 (also while no trace is on). Calls: as
 * tt_trace_region_begin. */
TT_EXTERN int tt_trace_region_end(void);

/* Logs msg under category cat (both copied; at most 1023 bytes together are kept; cat may be
 * NULL): an instant on the caller's track. A no-op returning 0 while no trace is on. Returns 0 or
 * TT_EINVAL (msg NULL). Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_trace_log(const char *cat, const char *msg);

/* The flight recorder's bounds apply a buffer (64 KiB, ~1,300 events) at a time, as buffers
 * fill: a buffer is dropped once all of it is older than `seconds`, or while the buffers kept
 * exceed `bytes`; each worker's buffer being filled is always kept. */
typedef struct tt_trace_flight_opts {
  int64_t seconds; /* keep the last this many seconds (0: no age bound, only bytes) */
  size_t bytes;    /* and at most about this many bytes (0: 16 MiB) */
  /* Where the recorder writes itself, as JSON, when a leak verdict or the global deadlock is
   * reported (the leak monitor's reports); <= 0: nowhere. The fd must stay open. */
  int report_fd;
} tt_trace_flight_opts;

/* Starts the flight recorder: a trace that keeps only its most recent events (see the bounds
 * above). Returns 0, or TT_EINVAL (NULL opts, seconds < 0), TT_EBUSY (a trace is already on).
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_trace_flight_start(const tt_trace_flight_opts *opts);

/* Writes what the flight recorder holds now, as JSON, to fd; the recorder goes on. Returns 0, or
 * TT_EINVAL (fd < 0, the recorder is off), TT_EIO, TT_ENOMEM. Calls: blocks the caller while it
 * writes (workers handing a full buffer over wait for the copy, a memcpy); any thread; not from
 * signal handlers. */
TT_EXTERN int tt_trace_flight_write(int fd);

/* Stops the flight recorder and drops what it held. 0 or TT_EINVAL (it is off). Calls: never
 * blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_trace_flight_stop(void);

/* Converts a binary trace (TT_TRACE_BINARY) read from in_fd to JSON written to out_fd. Returns 0,
 * or TT_EINVAL (a bad fd, or in_fd does not hold a tether trace), TT_EIO, TT_ENOMEM. Calls:
 * blocks on the descriptors; any thread; not from signal handlers. */
TT_EXTERN int tt_trace_export(int in_fd, int out_fd);

/* Writes a text summary of a binary trace read from in_fd to out_fd (Go's goroutine analysis):
 * per coroutine its execution time, its scheduling wait (runnable to running) and its block time
 * by wait reason, with the totals. Returns as tt_trace_export. Calls: as tt_trace_export. */
TT_EXTERN int tt_trace_summary(int in_fd, int out_fd);

TT_END_DECLS

#endif
