/* SPDX-License-Identifier: MIT */
/* The debug endpoint's server (tether/debug.h): Go's net/http/pprof, metrics and a live page,
 * served by threads of its own so that it answers when every worker is hogged or deadlocked.
 *
 * Threads. One server thread runs an epoll loop over the listener and every connection that is
 * being read or closed: it accepts, reads requests without blocking, parses them (http.c),
 * enforces the header deadline (408), the size limits (414, 431), max_conns (503) and answers
 * what it can alone (400, 404, 405, 505, 503). A request for an endpoint goes to a responder
 * thread of its own (at most max_responses at once; beyond: 503 from the loop), which owns the
 * connection until its response is written: the loop takes the socket out of its epoll set and
 * gets it back, through a done list and an eventfd, to close it. Only the loop closes sockets, so
 * a descriptor number is never reused under a responder. Both kinds of thread count themselves in
 * tt__threads_internal (the global deadlock check must not take them for the program's threads)
 * and block every signal (they are the workers' and the program's).
 *
 * Streaming. A responder reads what it serves from the runtime first (a snapshot, a leak report,
 * metrics into memory: small), then writes the body through a tt__sink in callback mode whose
 * buffer goes out as one HTTP/1.1 chunk each time it fills, with poll()-based write timeouts
 * (http.c). So a dump of a million coroutines is formatted and sent a buffer at a time, never held
 * whole as text; a client that stops reading is dropped after write_timeout without progress; one
 * that goes away fails the next write (EPIPE, no SIGPIPE: MSG_NOSIGNAL) and the responder stops.
 *
 * The runtime's lifetime. The server outlives tt_run. A responder that reads the runtime (a
 * snapshot, the proof, counts) does it inside a "hold": it counts itself in rt_users and then
 * reads the runtime's state; the end of a run (tt__debug_run_end, called once the state is
 * stopping and before anything is freed) waits for rt_users to drain. Both sides use sequentially
 * consistent operations (a Dekker pair): either the responder sees the run ending and answers 503
 * "tether runtime not running", or the run's end sees the responder and waits for it. Responders
 * hold only while they read, never while they write to a client, so a slow client cannot hold up
 * the end of a run.
 *
 * Stopping. tt_debug_stop sets the stop flag and makes the stop eventfd readable: the loop leaves,
 * every responder's next write (or the poll it waits in) fails with TT_ECANCELED; the loop joins
 * them, closes every socket and returns; tt_debug_stop joins it. A responder inside a snapshot
 * finishes the snapshot first (no write happens meanwhile), so a stop waits at most that long.
 *
 * Rejected: responders as coroutines on the workers (hogged or deadlocked workers are exactly
 * when the endpoint is needed); one thread writing every response (a slow client would stall the
 * rest, and formats write synchronously into their sink); building bodies in memory (a million
 * coroutines' debug=2 text is hundreds of megabytes); closing right after the response (unread
 * request bytes turn the close into a reset that can destroy the response in the client's
 * buffers: the loop lingers instead, as Go's server does). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "debug/debug_int.h"
#include "debug/http_int.h"
#include "diag/snap_int.h"
#include "leak/leak_int.h"
#include "trace/trace_int.h"
#include "tether/debug.h"

#define LINGER_NS (1000 * TT_MSEC)      /* how long a closing connection is drained at most */
#define LINGER_MAX_BYTES (256 << 10)    /* and how much of it is read and dropped */
#define EXTRA_MAX 64                    /* connections beyond max_conns being told 503 at once */
#define BODY_BUF (32 << 10)             /* a responder's sink buffer: one chunk */
#define ACCEPT_RETRY_NS (100 * TT_MSEC) /* after EMFILE: how long the listener rests */

enum { C_READ, C_RESPOND, C_LINGER };

/* The endpoints. */
enum {
  R_NONE,
  R_INDEX,
  R_GOROUTINE,
  R_LEAK,
  R_PAGE,
  R_JSON,
  R_GROUPS,
  R_SUSPECTS,
  R_METRICS,
  R_TRACE,
};

static const struct route {
  const char *path;
  int id;
} routes[] = {
    {"/debug/pprof/", R_INDEX},
    {"/debug/pprof/goroutine", R_GOROUTINE},
    {"/debug/pprof/goroutineleak", R_LEAK},
    {"/debug/tether/", R_PAGE},
    {"/debug/tether/coroutines.json", R_JSON},
    {"/debug/tether/groups.json", R_GROUPS},
    {"/debug/tether/suspects", R_SUSPECTS},
    {"/metrics", R_METRICS},
    {"/debug/tether/trace", R_TRACE},
};

typedef struct server server;

/* A connection. The loop owns it in C_READ and C_LINGER; a responder owns it (and its socket's
 * writing) in C_RESPOND, until it puts it on the done list. */
typedef struct conn {
  struct conn *next, *prev; /* the loop's list */
  server *srv;
  int fd;
  int state;
  bool extra;       /* beyond max_conns: counted in nextra, not nconns */
  int64_t deadline; /* C_READ: the header deadline; C_LINGER: the end of the lingering */
  size_t lingered;  /* bytes dropped while lingering */
  char *buf;        /* C_READ: the request so far (TT__HTTP_BUF + 1 bytes) */
  size_t len;
  tt__http_req req;
  /* C_RESPOND. */
  pthread_t thread;
  int route;
  bool linger; /* the response was written: close gracefully (else: abort) */
  struct conn *done_next;
} conn;

struct server {
  tt_debug_opts opts; /* resolved: no zero fields but addr */
  char addr[80];      /* what tt_debug_addr reports */
  int lfd, epfd;
  int stop_fd; /* eventfd, readable once the server stops: every poll and the loop see it */
  int done_fd; /* eventfd: responders tell the loop they are done */
  pthread_t thread;
  _Atomic bool stopping;
  conn *conns; /* every connection (the loop's) */
  int nconns, nextra, nresp;
  bool listen_off; /* the listener is out of the epoll set (EMFILE) until listen_retry */
  int64_t listen_retry;
  pthread_mutex_t done_lock; /* protects done: a leaf, held for a push or a pop */
  conn *done;
};

/* The one server, under g_lock (tt_debug_serve, _stop and _addr: rare calls, never hot). */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static server *g_srv;

/* The epoll tags of the server's own descriptors (a connection's tag is its conn; the
 * listener's is NULL). */
static char stop_tag, done_tag;

/* ---- The runtime's lifetime (see the top) --------------------------------------------------- */

static _Atomic int rt_users;

/* Holds the runtime: returns whether it runs (its data then stay valid until rt_release). The
 * caller releases in both cases. */
static bool rt_hold(void) {
  /* seq_cst, both: the Dekker pair with the run's end, which stores the stopping state and then
   * reads rt_users (tt__debug_run_end): one of the two sees the other. */
  atomic_fetch_add_explicit(&rt_users, 1, memory_order_seq_cst);
  int s = atomic_load_explicit(&tt__rt.state, memory_order_seq_cst);
  return s == 1 || s == 2; /* running, or in its grace period (tt_running) */
}

static void rt_release(void) {
  /* release: what the holder read of the runtime happens before the run's end frees it. */
  atomic_fetch_sub_explicit(&rt_users, 1, memory_order_release);
}

void tt__debug_run_end(void) {
  /* seq_cst: see rt_hold. Holders read briefly (a snapshot, a proof): a short sleep suffices. */
  while (atomic_load_explicit(&rt_users, memory_order_seq_cst) != 0) {
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
}

void tt__debug_run_start(void) {
  const char *addr = getenv("TT_DEBUG_ADDR");
  if (addr == NULL || *addr == '\0')
    return;
  int r = tt_debug_serve(addr);
  if (r != 0 && r != TT_EBUSY) {
    char msg[256];
    int n = snprintf(msg, sizeof msg, "tether: TT_DEBUG_ADDR=%s: the debug endpoint: %s\n", addr,
                     tt_strerror(r));
    if (n > 0 && write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1) < 0)
      return;
  }
}

/* ---- Helpers ------------------------------------------------------------------------------- */

static int64_t now_ns(void) { return tt__clock(); }

static int from_errno(int e) {
  switch (e) {
  case EADDRINUSE:
    return TT_EADDRINUSE;
  case EACCES:
  case EPERM:
    return TT_EACCES;
  case EADDRNOTAVAIL:
    return TT_EADDRNOTAVAIL;
  case EAFNOSUPPORT:
    return TT_EAFNOSUPPORT;
  case EMFILE:
  case ENFILE:
    return TT_EMFILE;
  case ENOMEM:
  case ENOBUFS:
    return TT_ENOMEM;
  case EINVAL:
    return TT_EINVAL;
  }
  return TT_EIO;
}

/* Parses "host:port" (host: IPv4 literal, [IPv6 literal], "localhost", or empty for every
 * interface; port: 0..65535) into *ss. Names are not resolved: that could block. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sl) {
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || colon[1] == '\0' || strlen(addr) >= 80)
    return TT_EINVAL;
  char host[80];
  size_t hlen = (size_t)(colon - addr);
  memcpy(host, addr, hlen);
  host[hlen] = '\0';
  long port = 0;
  for (const char *p = colon + 1; *p; p++) {
    if (*p < '0' || *p > '9' || port > 65535)
      return TT_EINVAL;
    port = port * 10 + (*p - '0');
  }
  if (port > 65535)
    return TT_EINVAL;
  memset(ss, 0, sizeof *ss);
  if (host[0] == '[') {
    if (hlen < 3 || host[hlen - 1] != ']')
      return TT_EINVAL;
    host[hlen - 1] = '\0';
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
      return TT_EINVAL;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *sl = sizeof *s6;
    return 0;
  }
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  s4->sin_family = AF_INET;
  s4->sin_port = htons((uint16_t)port);
  *sl = sizeof *s4;
  if (hlen == 0) {
    s4->sin_addr.s_addr = htonl(INADDR_ANY);
    return 0;
  }
  if (strcmp(host, "localhost") == 0) {
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return 0;
  }
  return inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? 0 : TT_EINVAL;
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap) {
  char h[INET6_ADDRSTRLEN] = "?";
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, h, sizeof h);
    snprintf(out, cap, "[%s]:%u", h, (unsigned)ntohs(s6->sin6_port));
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &s4->sin_addr, h, sizeof h);
    snprintf(out, cap, "%s:%u", h, (unsigned)ntohs(s4->sin_port));
  }
}

/* ---- Responders ------------------------------------------------------------------------------ */

/* The route of a decoded path. */
static int route_of(const tt__http_req *rq) {
  if (rq->path_long)
    return R_NONE;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
    if (strcmp(rq->path, routes[i].path) == 0)
      return routes[i].id;
  return R_NONE;
}

/* A response being written by a responder. */
typedef struct resp {
  conn *c;
  tt__http_out out;
  const char *query;
  tt__sink sink;
  char *sbuf;
} resp;

static int reply_simple(resp *r, int status, const char *extra, const char *msg) {
  return tt__http_simple(&r->out, status, extra, msg);
}

/* net/http/pprof's serveError: text/plain, and X-Go-Pprof: 1. */
static int reply_pprof_error(resp *r, int status, const char *msg) {
  return reply_simple(r, status, "X-Go-Pprof: 1\r\n", msg);
}

static int reply_not_running(resp *r) {
  return reply_simple(r, 503, NULL, "tether runtime not running");
}

static int reply_error_code(resp *r, int err) {
  if (err == TT_ENOTRUNNING || err == TT_ESHUTDOWN)
    return reply_not_running(r);
  char msg[128];
  snprintf(msg, sizeof msg, "tether: %s", tt_strerror(err));
  return reply_simple(r, err == TT_ENOMEM ? 503 : 500, NULL, msg);
}

/* Starts a streamed body: the headers, and the sink the body is written through. */
static int body_begin(resp *r, const char *type, const char *extra) {
  r->out.chunked = r->c->req.minor >= 1;
  int err = tt__http_head(&r->out, 200, type, extra, -1);
  tt__sink_cb(&r->sink, tt__http_body_cb, &r->out, r->sbuf, BODY_BUF);
  return err;
}

/* Ends it: the sink flushed (which reports a write error the format did not), the last chunk. */
static int body_end(resp *r, int err) {
  int ferr = tt__sink_flush(&r->sink);
  if (!err)
    err = ferr;
  if (!err)
    err = tt__http_end(&r->out);
  return err;
}

/* Streams text held in memory (a body read while the runtime was held). */
static int body_text(resp *r, const char *type, const char *extra, const char *p, size_t n) {
  int err = body_begin(r, type, extra);
  if (!err)
    tt__sink_write(&r->sink, p, n);
  return body_end(r, err);
}

/* Whether the runtime runs (for HEAD, which reads nothing else). */
static bool runtime_up(void) {
  bool up = rt_hold();
  rt_release();
  return up;
}

static int count_verdicts(const tt_coro_info *ci, void *arg) {
  *(int64_t *)arg += ci->verdict != TT_VERDICT_NONE;
  return 0;
}

static int serve_index(resp *r) {
  int64_t ngo = 0, nleak = 0;
  if (rt_hold()) {
    ngo = tt_num_coroutines();
    if (ngo < 0)
      ngo = 0;
    tt_coro_foreach(count_verdicts, &nleak);
  }
  rt_release();
  int err = body_begin(r, "text/html; charset=utf-8", NULL);
  if (err)
    return err;
  tt__sink *k = &r->sink;
  tt__sink_str(k, "<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n.profile-name{\n"
                  "\tdisplay:inline-block;\n\twidth:8rem;\n}\n</style>\n</head>\n<body>\n"
                  "/debug/pprof/\n<br>\n<p>Set debug=1 as a query parameter to export in legacy "
                  "text format</p>\n<br>\nTypes of profiles available:\n<table>\n"
                  "<thead><td>Count</td><td>Profile</td></thead>\n");
  tt__sink_printf(k, "<tr><td>%lld</td><td><a href='goroutine?debug=1'>goroutine</a></td></tr>\n",
                  (long long)ngo);
  tt__sink_printf(
      k, "<tr><td>%lld</td><td><a href='goroutineleak?debug=1'>goroutineleak</a></td></tr>\n",
      (long long)nleak);
  tt__sink_str(
      k,
      "</table>\n<a href=\"goroutine?debug=2\">full goroutine stack dump</a>\n<br>\n<p>\n"
      "Profile Descriptions:\n<ul>\n"
      "<li><div class=profile-name>goroutine: </div> Stack traces of all current coroutines. Use "
      "debug=2 as a query parameter to export in the same format as an unrecovered panic.</li>\n"
      "<li><div class=profile-name>goroutineleak: </div> Stack traces of the coroutines that "
      "nothing live can ever wake (the leak proof runs first; its verdicts are kept).</li>\n"
      "</ul>\n</p>\n<p>\ntether:\n<ul>\n"
      "<li><a href=\"/debug/tether/\">/debug/tether/</a>: the live page, coroutines grouped by "
      "stack</li>\n"
      "<li><a href=\"/debug/tether/coroutines.json\">/debug/tether/coroutines.json</a>: every "
      "coroutine, as JSON</li>\n"
      "<li><a href=\"/debug/tether/groups.json\">/debug/tether/groups.json</a>: the live page's "
      "data</li>\n"
      "<li><a href=\"/debug/tether/suspects\">/debug/tether/suspects</a>: the leak suspects</li>\n"
      "<li><a href=\"/debug/tether/trace?seconds=1\">/debug/tether/trace?seconds=N</a>: an "
      "execution trace of the next N seconds (Chrome trace-event JSON, for Perfetto)</li>\n"
      "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n"
      "</ul>\n</p>\n</body>\n</html>\n");
  return body_end(r, k->err);
}

static int keep_leaked(const tt_coro_info *ci, void *arg) {
  (void)arg;
  return ci->verdict != TT_VERDICT_NONE;
}

/* Takes what a profile shows (the runtime held): a snapshot, of the leaked coroutines for the
 * leak profile (after a proof; *proof gets its result). */
static int take_profile(bool leak, tt_snapshot **out, int *proof) {
  *out = NULL;
  int err;
  if (!rt_hold()) {
    err = TT_ENOTRUNNING;
    goto out;
  }
  if (leak) {
    *proof = tt_leak_check(NULL);
    if (*proof == TT_ENOTRUNNING || *proof == TT_ENOMEM) {
      err = *proof;
      goto out;
    }
  }
  err = tt_snapshot_take(out);
  if (!err && leak) {
    tt_snapshot_filter(*out, keep_leaked, NULL);
    (*out)->profile = "goroutineleak";
  }
out:
  rt_release();
  return err;
}

/* Waits ns for a delta profile: false when the server stops or the client goes away first. */
static bool delta_wait(resp *r, int64_t ns) {
  int64_t end = now_ns() + ns;
  for (;;) {
    int64_t left = end - now_ns();
    if (left <= 0)
      return true;
    struct pollfd p[2] = {{.fd = r->out.stop_fd, .events = POLLIN},
                          {.fd = r->out.fd, .events = POLLRDHUP}};
    int ms = left / TT_MSEC > 1000 ? 1000 : (int)(left / TT_MSEC) + 1;
    if (poll(p, 2, ms) > 0 &&
        ((p[0].revents & POLLIN) || (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR))))
      return false;
  }
}

/* /debug/pprof/goroutine and goroutineleak, with net/http/pprof's query semantics (Go 1.19's
 * handler.ServeHTTP): debug is read with strconv.Atoi and a value that is not a number is 0; a
 * non-zero debug is text/plain, 0 the gzip'd proto as an attachment; seconds=N asks for a delta
 * profile, which Go offers for goroutine (profileSupportsDelta) and not for goroutineleak. */
static int serve_profile(resp *r, bool leak) {
  const char *name = leak ? "goroutineleak" : "goroutine";
  char v[64];
  int64_t debug = 0, seconds = 0;
  if (tt__http_query(r->query, "debug", v, sizeof v) && !tt__http_atoi(v, &debug))
    debug = 0;
  bool delta = tt__http_query(r->query, "seconds", v, sizeof v) && v[0] != '\0';
  if (delta) {
    if (!tt__http_atoi(v, &seconds) || seconds <= 0)
      return reply_pprof_error(r, 400,
                               "invalid value for \"seconds\" - must be a positive integer");
    if (leak)
      return reply_pprof_error(r, 400,
                               "\"seconds\" parameter is not supported for this profile type");
    if (debug != 0)
      return reply_pprof_error(r, 400, "seconds and debug params are incompatible");
    if (seconds > INT64_MAX / TT_SEC)
      seconds = INT64_MAX / TT_SEC;
  }
  if (r->out.head) {
    if (!runtime_up())
      return reply_not_running(r);
    return tt__http_head(
        &r->out, 200, debug ? "text/plain; charset=utf-8" : "application/octet-stream", NULL, -1);
  }
  tt_snapshot *s0 = NULL, *s = NULL;
  int proof = 0, err;
  if (delta) {
    if ((err = take_profile(false, &s0, &proof)) != 0)
      return reply_error_code(r, err);
    if (!delta_wait(r, seconds * TT_SEC)) {
      tt_snapshot_free(s0);
      return TT_ECANCELED;
    }
  }
  if ((err = take_profile(leak, &s, &proof)) != 0) {
    tt_snapshot_free(s0);
    return reply_error_code(r, err);
  }
  char extra[512];
  size_t xn = 0;
  extra[0] = '\0';
  if (debug == 0)
    xn += (size_t)snprintf(extra, sizeof extra,
                           "Content-Disposition: attachment; filename=\"%s%s\"\r\n", name,
                           delta ? "-delta" : "");
  if (leak && proof < 0)
    /* The proof could not stop the world (a coroutine runs without yielding: TT_EBUSY) or plain
     * threads kept changing references (TT_EAGAIN): the verdicts shown are those already known,
     * which are never wrong (they are sticky), but there may be more. */
    snprintf(extra + xn, sizeof extra - xn,
             "X-Tether-Leak-Proof: not run (%s); the verdicts already known are shown\r\n",
             tt_strerror(proof));
  err = body_begin(r, debug ? "text/plain; charset=utf-8" : "application/octet-stream", extra);
  if (!err) {
    if (delta)
      err = tt__write_pprof_delta(s0, s, &r->sink);
    else if (debug >= 2)
      err = tt__write_traces(s, &r->sink);
    else if (debug == 1)
      err = tt__write_counts(s, &r->sink);
    else
      err = tt__write_pprof(s, &r->sink); /* debug <= 0: Go writes the proto for any of them */
  }
  tt_snapshot_free(s0);
  tt_snapshot_free(s);
  return body_end(r, err);
}

static int serve_json(resp *r) {
  tt_snapshot *s = NULL;
  int proof = 0, err;
  if (r->out.head)
    err = runtime_up() ? 0 : TT_ENOTRUNNING;
  else
    err = take_profile(false, &s, &proof);
  if (err)
    return reply_error_code(r, err);
  err = body_begin(r, "application/json", NULL);
  if (!err && s)
    err = tt__write_json(s, &r->sink);
  tt_snapshot_free(s);
  return body_end(r, err);
}

/* /debug/tether/suspects?count=K&age=SECONDS&prove=1&max=N (tether/leak.h's tt_suspect_opts). */
static int serve_suspects(resp *r) {
  tt_suspect_opts o = {0};
  char v[64];
  int64_t x;
  if (tt__http_query(r->query, "count", v, sizeof v)) {
    if (!tt__http_atoi(v, &x) || x <= 0)
      return reply_simple(r, 400, NULL, "invalid value for \"count\" - must be a positive integer");
    o.min_count = (size_t)x;
  }
  if (tt__http_query(r->query, "age", v, sizeof v)) {
    char *end;
    double sec = strtod(v, &end);
    if (v[0] == '\0' || *end != '\0' || !(sec >= 0 && sec < 1e9))
      return reply_simple(r, 400, NULL,
                          "invalid value for \"age\" - must be a number of seconds >= 0");
    o.min_age = sec > 0 ? (int64_t)(sec * 1e9) : -1;
  }
  if (tt__http_query(r->query, "max", v, sizeof v)) {
    if (!tt__http_atoi(v, &x) || x < 0)
      return reply_simple(r, 400, NULL, "invalid value for \"max\" - must be an integer >= 0");
    o.max = (size_t)x;
  }
  if (tt__http_query(r->query, "prove", v, sizeof v))
    o.prove = strcmp(v, "0") != 0 && strcmp(v, "false") != 0;
  tt_suspect_report *rep = NULL;
  int err = 0;
  if (!rt_hold())
    err = TT_ENOTRUNNING;
  else if (!r->out.head)
    err = tt_leak_suspects(&o, &rep);
  rt_release();
  if (err < 0)
    return reply_error_code(r, err);
  err = body_begin(r, "text/plain; charset=utf-8", NULL);
  if (!err && rep)
    err = tt__suspect_report_sink(rep, &r->sink);
  tt_suspect_report_free(rep);
  return body_end(r, err);
}

/* /metrics and groups.json: small bodies, read into memory while the runtime is held. */
static int serve_memory(resp *r, bool metrics) {
  tt__sink m;
  tt__sink_mem(&m);
  int err;
  bool up = rt_hold();
  if (metrics)
    err = tt__debug_metrics(&m);
  else
    err = up ? tt__debug_groups_json(&m, r->query) : TT_ENOTRUNNING;
  rt_release();
  char *text = NULL;
  size_t n = 0;
  int terr = tt__sink_take(&m, &text, &n);
  if (!err)
    err = terr;
  if (err) {
    free(text);
    return reply_error_code(r, err);
  }
  err = body_text(r, metrics ? "text/plain; version=0.0.4; charset=utf-8" : "application/json",
                  NULL, text, n);
  free(text);
  return err;
}

/* /debug/tether/trace?seconds=N (default 1, as Go's /debug/pprof/trace, whose binary format only
 * `go tool trace` reads): an execution trace of the next N seconds, as Chrome trace-event JSON.
 * The responder records nothing itself: it opens an in-memory trace, waits, and closes and
 * converts it on its own thread; the workers record as they go and never wait for it. */
static int serve_trace(resp *r) {
  char v[64];
  int64_t seconds = 1;
  if (tt__http_query(r->query, "seconds", v, sizeof v) && v[0] != '\0' &&
      (!tt__http_atoi(v, &seconds) || seconds <= 0))
    return reply_simple(r, 400, NULL, "invalid value for \"seconds\" - must be a positive integer");
  if (seconds > INT64_MAX / TT_SEC)
    seconds = INT64_MAX / TT_SEC;
  if (!runtime_up())
    return reply_not_running(r);
  if (r->out.head)
    return tt__http_head(&r->out, 200, "application/json", NULL, -1);
  bool up = rt_hold(); /* the live coroutines' names are read from the registry */
  int err = tt__trace_capture_begin(up);
  rt_release();
  if (err == TT_EBUSY)
    return reply_simple(r, 500, NULL,
                        "Could not enable tracing: a trace is already on in this process");
  if (err)
    return reply_error_code(r, err);
  bool waited = delta_wait(r, seconds * TT_SEC);
  tt__trace t;
  up = rt_hold();
  err = tt__trace_capture_end(&t, up);
  rt_release();
  if (!waited) {
    tt__trace_free(&t);
    return TT_ECANCELED;
  }
  if (err) {
    tt__trace_free(&t);
    return reply_error_code(r, err);
  }
  err = body_begin(r, "application/json",
                   "Content-Disposition: attachment; filename=\"trace.json\"\r\n");
  if (!err)
    err = tt__trace_json(&t, &r->sink);
  tt__trace_free(&t);
  return body_end(r, err);
}

static int respond(resp *r) {
  switch (r->c->route) {
  case R_INDEX:
    return serve_index(r);
  case R_GOROUTINE:
    return serve_profile(r, false);
  case R_LEAK:
    return serve_profile(r, true);
  case R_PAGE:
    return body_text(r, "text/html; charset=utf-8", NULL, tt__debug_page_html,
                     strlen(tt__debug_page_html));
  case R_JSON:
    return serve_json(r);
  case R_GROUPS:
    return serve_memory(r, false);
  case R_SUSPECTS:
    return serve_suspects(r);
  case R_METRICS:
    return serve_memory(r, true);
  case R_TRACE:
    return serve_trace(r);
  }
  return reply_simple(r, 404, NULL, "404 page not found");
}

static void *responder_main(void *arg) {
  /* Counted as one of the runtime's own threads while it lives (the deadlock check's count; the
   * release orders the count before anything the thread does, as monitor.c's threads do). */
  atomic_fetch_add_explicit(&tt__threads_internal, 1, memory_order_release);
  conn *c = arg;
  server *srv = c->srv;
  resp r = {.c = c,
            .out = {.fd = c->fd,
                    .stop_fd = srv->stop_fd,
                    .stopping = &srv->stopping,
                    .timeout = srv->opts.write_timeout,
                    .head = c->req.method == TT__HTTP_HEAD},
            .query = c->req.query};
  r.sbuf = malloc(BODY_BUF);
  int err = r.sbuf ? respond(&r) : reply_simple(&r, 503, NULL, "tether: out of memory");
  free(r.sbuf);
  c->linger = err == 0;
  if (c->linger)
    shutdown(c->fd, SHUT_WR); /* the response is complete: a FIN, then the loop drains */
  pthread_mutex_lock(&srv->done_lock);
  c->done_next = srv->done;
  srv->done = c;
  pthread_mutex_unlock(&srv->done_lock);
  uint64_t one = 1;
  if (write(srv->done_fd, &one, sizeof one) < 0) {
    /* An eventfd's counter cannot overflow here; nothing to do. */
  }
  atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
  return NULL;
}

/* ---- The loop ----------------------------------------------------------------------------------
 */

static void conn_close(server *srv, conn *c) {
  if (c->state != C_RESPOND)
    epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->extra)
    srv->nextra--;
  else
    srv->nconns--;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free(c->buf);
  free(c);
}

/* Closes gracefully: no more writes, and reads are drained for a while (see the top). */
static void conn_linger(server *srv, conn *c, bool shut) {
  if (shut)
    shutdown(c->fd, SHUT_WR);
  free(c->buf);
  c->buf = NULL;
  c->state = C_LINGER;
  c->deadline = now_ns() + LINGER_NS;
  c->lingered = 0;
}

/* Answers from the loop (nothing is read from the runtime) and closes gracefully. The socket
 * has just been read from and the response is small: it goes out at once or not at all. */
static void conn_reply(server *srv, conn *c, int status, const char *extra, const char *msg) {
  tt__http_out o = {.fd = c->fd,
                    .stop_fd = -1,
                    .timeout = 0,
                    .head = c->req.method == TT__HTTP_HEAD && !c->req.other_method};
  tt__http_simple(&o, status, extra, msg);
  conn_linger(srv, c, true);
}

static void reply_parse_error(server *srv, conn *c, int st) {
  switch (st) {
  case 405:
    conn_reply(srv, c, 405, "Allow: GET, HEAD\r\n", "405 method not allowed");
    return;
  case 414:
    conn_reply(srv, c, 414, NULL, "414 URI Too Long: the request line is over 8 KiB");
    return;
  case 431:
    conn_reply(srv, c, 431, NULL,
               "431 Request Header Fields Too Large: over 16 KiB or 100 header lines");
    return;
  case 505:
    conn_reply(srv, c, 505, NULL, "505 HTTP Version Not Supported");
    return;
  }
  conn_reply(srv, c, 400, NULL, "400 Bad Request");
}

/* A complete request: hand it to a responder, or answer it here. */
static void dispatch(server *srv, conn *c) {
  int route = route_of(&c->req);
  if (route == R_NONE) {
    /* Go's ServeMux redirects a subtree's name without its slash. */
    if (strcmp(c->req.path, "/debug/pprof") == 0 || strcmp(c->req.path, "/debug/tether") == 0) {
      char loc[TT__HTTP_PATH_MAX + 64];
      bool q = c->req.query[0] != '\0' && strlen(c->req.query) < 512;
      snprintf(loc, sizeof loc, "Location: %s/%s%s\r\n", c->req.path, q ? "?" : "",
               q ? c->req.query : "");
      conn_reply(srv, c, 301, loc, "Moved Permanently");
      return;
    }
    conn_reply(srv, c, 404, NULL, "404 page not found");
    return;
  }
  if (srv->nresp >= srv->opts.max_responses) {
    conn_reply(srv, c, 503, "Retry-After: 1\r\n",
               "tether: too many debug responses in progress; try again");
    return;
  }
  epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  c->route = route;
  c->state = C_RESPOND;
  /* The query stays in c->buf, which the responder reads until it is done. */
  if (pthread_create(&c->thread, NULL, responder_main, c) != 0) {
    c->state = C_READ;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(srv->epfd, EPOLL_CTL_ADD, c->fd, &ev);
    conn_reply(srv, c, 503, "Retry-After: 1\r\n", "tether: cannot start a responder thread");
    return;
  }
  srv->nresp++;
}

static void conn_readable(server *srv, conn *c) {
  if (c->state == C_LINGER) {
    char drop[4096];
    for (;;) {
      ssize_t k = recv(c->fd, drop, sizeof drop, MSG_DONTWAIT);
      if (k > 0) {
        c->lingered += (size_t)k;
        if (c->lingered > LINGER_MAX_BYTES) {
          conn_close(srv, c);
          return;
        }
        continue;
      }
      if (k < 0 && errno == EINTR)
        continue;
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      conn_close(srv, c); /* the client's FIN, or an error: done */
      return;
    }
  }
  for (;;) {
    if (c->len >= TT__HTTP_BUF) {
      /* Full: the parser refuses well before this (414 or 431); a safety net. */
      reply_parse_error(srv, c, 431);
      return;
    }
    ssize_t k = recv(c->fd, c->buf + c->len, TT__HTTP_BUF - c->len, MSG_DONTWAIT);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (k <= 0) {
      conn_close(srv, c); /* gone before its request was complete */
      return;
    }
    c->len += (size_t)k;
    int st = tt__http_parse(c->buf, c->len, &c->req);
    if (st == 1) {
      dispatch(srv, c);
      return;
    }
    if (st != 0) {
      reply_parse_error(srv, c, st);
      return;
    }
  }
}

static void accept_all(server *srv) {
  for (;;) {
    int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        /* Out of descriptors: rest the listener rather than spin on it. */
        epoll_ctl(srv->epfd, EPOLL_CTL_DEL, srv->lfd, NULL);
        srv->listen_off = true;
        srv->listen_retry = now_ns() + ACCEPT_RETRY_NS;
      }
      return;
    }
    bool extra = srv->nconns >= srv->opts.max_conns;
    if (extra && srv->nextra >= EXTRA_MAX) {
      close(fd); /* far over the limit: not even a 503 */
      continue;
    }
    conn *c = calloc(1, sizeof *c);
    char *buf = extra ? NULL : malloc(TT__HTTP_BUF + 1);
    if (c == NULL || (!extra && buf == NULL)) {
      free(c);
      free(buf);
      close(fd);
      continue;
    }
    c->srv = srv;
    c->fd = fd;
    c->buf = buf;
    c->extra = extra;
    c->state = C_READ;
    c->deadline = now_ns() + srv->opts.header_timeout;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      free(buf);
      free(c);
      close(fd);
      continue;
    }
    c->next = srv->conns;
    if (srv->conns)
      srv->conns->prev = c;
    srv->conns = c;
    if (extra) {
      srv->nextra++;
      conn_reply(srv, c, 503, "Retry-After: 1\r\n",
                 "tether: too many debug connections; try again");
    } else {
      srv->nconns++;
    }
  }
}

/* Takes back the connections responders are done with. */
static void reap(server *srv) {
  uint64_t n;
  if (read(srv->done_fd, &n, sizeof n) < 0 && errno != EAGAIN)
    return;
  pthread_mutex_lock(&srv->done_lock);
  conn *d = srv->done;
  srv->done = NULL;
  pthread_mutex_unlock(&srv->done_lock);
  while (d) {
    conn *c = d;
    d = d->done_next;
    pthread_join(c->thread, NULL);
    srv->nresp--;
    /* relaxed: only this thread's choice between two ways to close depends on it. */
    if (!c->linger || atomic_load_explicit(&srv->stopping, memory_order_relaxed)) {
      /* An aborted response: reset the connection, so that the kernel drops what it still
       * queues for a client that was too slow rather than trickle it out after we gave up. */
      struct linger lg = {.l_onoff = 1, .l_linger = 0};
      setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      c->state = C_LINGER; /* not in the epoll set: conn_close's EPOLL_CTL_DEL fails harmlessly */
      conn_close(srv, c);
      continue;
    }
    conn_linger(srv, c, false);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
      conn_close(srv, c);
  }
}

/* Deadlines: 408 for requests that did not arrive in time, the end of lingering. Returns the
 * epoll timeout (ms) until the next one. */
static int expire(server *srv) {
  int64_t now = now_ns(), next = now + 1000 * TT_MSEC;
  for (conn *c = srv->conns, *nx; c; c = nx) {
    nx = c->next;
    if (c->state == C_RESPOND)
      continue;
    if (c->deadline <= now) {
      if (c->state == C_LINGER) {
        conn_close(srv, c);
        continue;
      }
      conn_reply(srv, c, 408, NULL, "408 Request Timeout"); /* now lingering */
    }
    if (c->deadline < next)
      next = c->deadline;
  }
  if (srv->listen_off) {
    if (srv->listen_retry <= now) {
      struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
      if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lfd, &ev) == 0)
        srv->listen_off = false;
      srv->listen_retry = now + ACCEPT_RETRY_NS;
    }
    if (srv->listen_off && srv->listen_retry < next)
      next = srv->listen_retry;
  }
  int64_t ms = (next - now + TT_MSEC - 1) / TT_MSEC;
  return ms < 1 ? 1 : (int)ms;
}

static void *server_main(void *arg) {
  /* One of the runtime's own threads (see responder_main). */
  atomic_fetch_add_explicit(&tt__threads_internal, 1, memory_order_release);
  server *srv = arg;
  int timeout = 1000;
  /* acquire: paired with tt_debug_stop's release (nothing else is published with the flag; the
   * stop eventfd wakes the wait). */
  while (!atomic_load_explicit(&srv->stopping, memory_order_acquire)) {
    struct epoll_event ev[64];
    int n = epoll_wait(srv->epfd, ev, 64, timeout);
    for (int i = 0; i < n; i++) {
      void *p = ev[i].data.ptr;
      if (p == NULL)
        accept_all(srv);
      else if (p == &done_tag)
        reap(srv);
      else if (p != &stop_tag)
        conn_readable(srv, p);
      /* stop_tag: the loop's condition sees the flag */
    }
    timeout = expire(srv);
  }
  /* Stopping: every responder aborts at its next write (the stop descriptor is readable). */
  while (srv->nresp > 0) {
    struct pollfd p = {.fd = srv->done_fd, .events = POLLIN};
    poll(&p, 1, 100);
    reap(srv);
  }
  while (srv->conns)
    conn_close(srv, srv->conns);
  atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
  return NULL;
}

/* ---- The API -------------------------------------------------------------------------------- */

static void server_free(server *srv) {
  if (srv->lfd >= 0)
    close(srv->lfd);
  if (srv->epfd >= 0)
    close(srv->epfd);
  if (srv->stop_fd >= 0)
    close(srv->stop_fd);
  if (srv->done_fd >= 0)
    close(srv->done_fd);
  pthread_mutex_destroy(&srv->done_lock);
  free(srv);
}

int tt_debug_serve_opts(const tt_debug_opts *opts) {
  tt_debug_opts o = opts ? *opts : (tt_debug_opts){0};
  if (o.max_conns < 0 || o.max_responses < 0 || o.header_timeout < 0 || o.write_timeout < 0)
    return TT_EINVAL;
  if (o.addr == NULL)
    o.addr = TT_DEBUG_DEFAULT_ADDR;
  if (o.max_conns == 0)
    o.max_conns = 64;
  if (o.max_responses == 0)
    o.max_responses = 4;
  if (o.header_timeout == 0)
    o.header_timeout = 10 * TT_SEC;
  if (o.write_timeout == 0)
    o.write_timeout = 30 * TT_SEC;
  struct sockaddr_storage ss;
  socklen_t sl;
  int err = parse_addr(o.addr, &ss, &sl);
  if (err)
    return err;

  pthread_mutex_lock(&g_lock);
  if (g_srv != NULL) {
    pthread_mutex_unlock(&g_lock);
    return TT_EBUSY;
  }
  server *srv = calloc(1, sizeof *srv);
  if (srv == NULL) {
    pthread_mutex_unlock(&g_lock);
    return TT_ENOMEM;
  }
  srv->lfd = srv->epfd = srv->stop_fd = srv->done_fd = -1;
  pthread_mutex_init(&srv->done_lock, NULL);
  srv->opts = o;
  srv->opts.addr = NULL; /* the caller's string is not kept */
  err = TT_ENOMEM;
  srv->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (srv->lfd < 0) {
    err = from_errno(errno);
    goto fail;
  }
  int one = 1;
  setsockopt(srv->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(srv->lfd, (struct sockaddr *)&ss, sl) != 0 || listen(srv->lfd, 128) != 0) {
    err = from_errno(errno);
    goto fail;
  }
  struct sockaddr_storage bound;
  socklen_t bl = sizeof bound;
  if (getsockname(srv->lfd, (struct sockaddr *)&bound, &bl) != 0) {
    err = from_errno(errno);
    goto fail;
  }
  format_addr(&bound, srv->addr, sizeof srv->addr);
  srv->epfd = epoll_create1(EPOLL_CLOEXEC);
  srv->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  srv->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (srv->epfd < 0 || srv->stop_fd < 0 || srv->done_fd < 0) {
    err = from_errno(errno);
    goto fail;
  }
  struct epoll_event ev[3] = {{.events = EPOLLIN, .data.ptr = NULL},
                              {.events = EPOLLIN, .data.ptr = &stop_tag},
                              {.events = EPOLLIN, .data.ptr = &done_tag}};
  if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lfd, &ev[0]) != 0 ||
      epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->stop_fd, &ev[1]) != 0 ||
      epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->done_fd, &ev[2]) != 0) {
    err = from_errno(errno);
    goto fail;
  }
  err = TT_ENOMEM;
  /* The thread takes no signals (they are the workers' and the program's); its responders
   * inherit the mask. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int r = pthread_create(&srv->thread, NULL, server_main, srv);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0)
    goto fail;
  g_srv = srv;
  pthread_mutex_unlock(&g_lock);
  return 0;
fail:
  server_free(srv);
  pthread_mutex_unlock(&g_lock);
  return err;
}

int tt_debug_serve(const char *addr) {
  tt_debug_opts o = {.addr = addr};
  return tt_debug_serve_opts(&o);
}

int tt_debug_addr(char *buf, size_t len) {
  pthread_mutex_lock(&g_lock);
  int err = TT_ENOTRUNNING;
  if (g_srv != NULL) {
    size_t n = strlen(g_srv->addr);
    err = TT_EINVAL;
    if (buf != NULL && len > n) {
      memcpy(buf, g_srv->addr, n + 1);
      err = 0;
    }
  }
  pthread_mutex_unlock(&g_lock);
  return err;
}

int tt_debug_stop(void) {
  pthread_mutex_lock(&g_lock);
  server *srv = g_srv;
  if (srv == NULL) {
    pthread_mutex_unlock(&g_lock);
    return TT_ENOTRUNNING;
  }
  /* release: paired with the loop's acquire of the flag. */
  atomic_store_explicit(&srv->stopping, true, memory_order_release);
  uint64_t one = 1;
  if (write(srv->stop_fd, &one, sizeof one) < 0) {
    /* cannot fail on a fresh eventfd */
  }
  pthread_join(srv->thread, NULL);
  g_srv = NULL;
  pthread_mutex_unlock(&g_lock);
  server_free(srv);
  return 0;
}
