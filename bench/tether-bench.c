/* SPDX-License-Identifier: MIT */
/* tether-bench: the C side of `make bench`; each workload has a twin in bench/go/main.go with the
 * same program shape and the same output, one `name value unit` line per result.
 *
 * Usage: tether-bench WORKLOAD [COUNT] [--out DIR]   (--out: where `dump` writes its files)
 *
 * Rules every workload follows, so that the comparison with Go is fair (DESIGN.md section 7):
 *   - the runtime runs with its defaults (tt_run(fn, arg, NULL): all CPUs), as Go runs with
 *     GOMAXPROCS = all CPUs;
 *   - cold: nothing is pre-warmed (no stacks or descriptors spawned and discarded first);
 *   - RSS is read from before the first spawn, and time from before the first spawn;
 *   - the run ends clean: every coroutine it started has finished when tt_run returns.
 * Adding a workload: a function here, a row in `workloads`, the twin in bench/go/main.go and
 * its name in WORKLOADS in scripts/bench. */
#include <tether.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void report(const char *name, double value, const char *unit) {
  printf("%s %.1f %s\n", name, value, unit);
  fflush(stdout);
}

/* The resident set size in bytes, from /proc/self/statm (resident pages * page size), as the Go
 * twin reads it. Plain open/read: no stdio buffer is allocated between the two readings. */
static long long rss_bytes(void) {
  char buf[256];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "tether-bench: /proc/self/statm: %s\n", strerror(errno));
    exit(1);
  }
  ssize_t len = read(fd, buf, sizeof buf - 1);
  close(fd);
  long long size, resident;
  if (len <= 0 || (buf[len] = '\0', sscanf(buf, "%lld %lld", &size, &resident) != 2)) {
    fprintf(stderr, "tether-bench: /proc/self/statm: cannot parse\n");
    exit(1);
  }
  return resident * sysconf(_SC_PAGESIZE);
}

static int fail(const char *what, int err) {
  fprintf(stderr, "tether-bench: %s: %s (%s)\n", what, tt_strerror(err),
          tt_err_name(err) ? tt_err_name(err) : "?");
  return err;
}

/* The result's name: "-trace" appended while the tracer is on. */
static const char *tracing_suffix(const char *name) {
  static char buf[64];
  if (!tt_trace_enabled())
    return name;
  snprintf(buf, sizeof buf, "%s-trace", name);
  return buf;
}

/* ---- spawn: n coroutines that only signal a wait group --------------------------------------- */

static void spawn_fn(void *arg) { tt_wg_done(arg); }

static int bench_spawn(long n) {
  tt_wg wg = TT_WG_INIT;
  int err;

  tt_wg_add(&wg, n);
  int64_t t0 = tt_now();
  for (long i = 0; i < n; i++) {
    if ((err = tt_go(spawn_fn, &wg)) < 0) {
      tt_wg_add(&wg, -(n - i)); /* the ones never spawned; then wait for the rest */
      tt_wg_wait(&wg);
      return fail("tt_go", err);
    }
  }
  if ((err = tt_wg_wait(&wg)) < 0)
    return fail("tt_wg_wait", err);
  int64_t t1 = tt_now();
  report(tracing_suffix("spawn"), (double)(t1 - t0) / (double)n, "ns/op");
  return 0;
}

/* ---- spawn-trace and pingpong-trace: the same with tracing on ------------------------------- */

/* Runs fn with the execution tracer on (the binary form, streamed to /dev/null by its writer
 * thread: what it costs to record, as Go's runtime/trace to io.Discard). */
static int traced(int (*fn)(long), long n) {
  int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return fail("open /dev/null", TT_EIO);
  tt_trace_opts o = {.format = TT_TRACE_BINARY};
  int err = tt_trace_start(fd, &o);
  if (err < 0) {
    close(fd);
    return fail("tt_trace_start", err);
  }
  int r = fn(n);
  if ((err = tt_trace_stop()) < 0)
    r = fail("tt_trace_stop", err);
  close(fd);
  return r;
}

/* ---- parked: n coroutines blocked forever on a wait group that never reaches zero ------------ */

struct parked {
  tt_wg started;  /* each coroutine is done with it just before it parks */
  tt_wg never;    /* held at 1 until the measurement is over: what they park on */
  tt_wg finished; /* each coroutine is done with it once released */
};

static void parked_fn(void *arg) {
  struct parked *p = arg;
  tt_wg_done(&p->started);
  tt_wg_wait(&p->never);
  tt_wg_done(&p->finished);
}

static int bench_parked(long n) {
  struct parked p = {TT_WG_INIT, TT_WG_INIT, TT_WG_INIT};
  int err = 0;

  tt_wg_add(&p.never, 1);
  tt_wg_add(&p.started, n);
  tt_wg_add(&p.finished, n);
  long long before = rss_bytes();
  int64_t t0 = tt_now();
  for (long i = 0; i < n; i++) {
    if ((err = tt_go(parked_fn, &p)) < 0) {
      fprintf(stderr, "tether-bench: tt_go failed after %ld coroutines\n", i);
      tt_wg_add(&p.started, -(n - i));
      tt_wg_add(&p.finished, -(n - i));
      break;
    }
  }
  int werr = tt_wg_wait(&p.started);
  int64_t t1 = tt_now();
  long long after = rss_bytes();
  tt_wg_done(&p.never);
  tt_wg_wait(&p.finished);
  if (err < 0)
    return fail("tt_go", err);
  if (werr < 0)
    return fail("tt_wg_wait", werr);
  report("parked", (double)(after - before) / (double)n, "bytes/coroutine");
  report("parked_time", (double)(t1 - t0) / (double)n, "ns/op");
  return 0;
}

/* ---- the channel workloads: what they share -------------------------------------------------
 * Each makes its channels (tracked, the default) before the clock starts, gives every coroutine
 * its references at spawn (tt_go_opts.share; the spawner keeps its own), releases its own once all
 * are spawned and waits for them on a wait group. A coroutine whose channel operation fails records
 * the first error and closes the channels it holds, so that its partners end with TT_ECLOSED
 * instead of waiting forever; the spawner reports the error once all have finished. The receiving
 * side sums what it gets and the spawner checks the sum, as the Go twin does. */

struct chanrun {
  tt_chan *ch[4];
  size_t nch;
  long n;      /* round trips, values or messages */
  int64_t sum; /* of what the receiving side got */
  tt_wg done;
  _Atomic int err;  /* the first error a coroutine hit */
  const char *what; /* and where: written by the one that set err, read after the wait */
};

static void chanrun_error(struct chanrun *r, const char *what, int err, tt_chan *const *chs,
                          size_t k) {
  int none = 0;
  if (atomic_compare_exchange_strong(&r->err, &none, err))
    r->what = what;
  for (size_t i = 0; i < k; i++)
    tt_chan_close(chs[i]); /* TT_ECLOSED if a partner closed it first: fine */
}

/* Makes r->nch channels of int64_t with room for cap; on failure releases those made. */
static int chanrun_make(struct chanrun *r, size_t cap) {
  for (size_t i = 0; i < r->nch; i++) {
    int err = tt_chan_make_opt(&r->ch[i], sizeof(int64_t), cap, NULL);
    if (err < 0) {
      while (i-- > 0)
        tt_chan_release(r->ch[i]);
      return fail("tt_chan_make_opt", err);
    }
  }
  return 0;
}

/* The spawner's part once it has spawned what it could (spawn_err < 0: the spawn that failed;
 * `unspawned` coroutines never started): on a failure close the channels, so that those started
 * end; release its own references; wait for the coroutines; stop the clock into *t1; report the
 * first error. */
static int chanrun_finish(struct chanrun *r, int spawn_err, long unspawned, int64_t *t1) {
  int rerr = 0;
  if (spawn_err < 0) {
    for (size_t i = 0; i < r->nch; i++)
      tt_chan_close(r->ch[i]);
    tt_wg_add(&r->done, -unspawned);
  }
  for (size_t i = 0; i < r->nch; i++) {
    int err = tt_chan_release(r->ch[i]);
    if (err < 0 && rerr == 0)
      rerr = err;
  }
  int werr = tt_wg_wait(&r->done);
  *t1 = tt_now();
  if (spawn_err < 0)
    return fail("tt_go_opt", spawn_err);
  if (werr < 0)
    return fail("tt_wg_wait", werr);
  if (rerr < 0)
    return fail("tt_chan_release", rerr);
  int err = atomic_load(&r->err);
  if (err < 0)
    return fail(r->what, err);
  return 0;
}

/* A wrong result: say so; run_job's caller exits 1. */
static int wrong_sum(const char *name, int64_t got, int64_t want) {
  fprintf(stderr, "tether-bench: %s: received values sum to %lld, expected %lld\n", name,
          (long long)got, (long long)want);
  return 1;
}

/* 0 + 1 + ... + (m - 1) */
static int64_t sum_below(long m) { return (int64_t)m * (m - 1) / 2; }

/* ---- pingpong: two coroutines, two unbuffered channels, n round trips ------------------------ */

static void ping_fn(void *arg) { /* A: sends i on ch[0], receives it back on ch[1] */
  struct chanrun *r = arg;
  int64_t sum = 0;
  int err;
  for (long i = 0; i < r->n; i++) {
    int64_t v = i;
    if ((err = tt_chan_send(r->ch[0], &v)) < 0) {
      chanrun_error(r, "pingpong: A: tt_chan_send", err, r->ch, 2);
      break;
    }
    if ((err = tt_chan_recv(r->ch[1], &v, NULL)) < 0) {
      chanrun_error(r, "pingpong: A: tt_chan_recv", err, r->ch, 2);
      break;
    }
    sum += v;
  }
  r->sum = sum;
  tt_wg_done(&r->done);
}

static void pong_fn(void *arg) { /* B: receives on ch[0], sends it back on ch[1] */
  struct chanrun *r = arg;
  int err;
  for (long i = 0; i < r->n; i++) {
    int64_t v;
    if ((err = tt_chan_recv(r->ch[0], &v, NULL)) < 0) {
      chanrun_error(r, "pingpong: B: tt_chan_recv", err, r->ch, 2);
      break;
    }
    if ((err = tt_chan_send(r->ch[1], &v)) < 0) {
      chanrun_error(r, "pingpong: B: tt_chan_send", err, r->ch, 2);
      break;
    }
  }
  tt_wg_done(&r->done);
}

static int bench_pingpong(long n) {
  struct chanrun r = {.nch = 2, .n = n, .done = TT_WG_INIT};
  void (*const fns[2])(void *) = {ping_fn, pong_fn};
  int err = 0;
  long i;

  if ((err = chanrun_make(&r, 0)) < 0)
    return err;
  tt_wg_add(&r.done, 2);
  int64_t t0 = tt_now(), t1;
  for (i = 0; i < 2; i++)
    if ((err = tt_go_opt(fns[i], &r, &(tt_go_opts){.share = r.ch, .nshare = 2}, NULL)) < 0)
      break;
  if ((err = chanrun_finish(&r, err, 2 - i, &t1)) < 0)
    return err;
  if (r.sum != sum_below(n))
    return wrong_sum("pingpong", r.sum, sum_below(n));
  report(tracing_suffix("pingpong"), (double)(t1 - t0) / (double)n, "ns/op");
  return 0;
}

/* ---- buffered: one producer, one consumer, a channel with room for 1024, n values ----------- */

static void produce_fn(void *arg) { /* sends 0..n-1, then closes */
  struct chanrun *r = arg;
  int err;
  for (long i = 0; i < r->n; i++) {
    int64_t v = i;
    if ((err = tt_chan_send(r->ch[0], &v)) < 0) {
      chanrun_error(r, "buffered: producer: tt_chan_send", err, r->ch, 1);
      tt_wg_done(&r->done);
      return;
    }
  }
  if ((err = tt_chan_close(r->ch[0])) < 0)
    chanrun_error(r, "buffered: producer: tt_chan_close", err, r->ch, 0);
  tt_wg_done(&r->done);
}

static void consume_fn(void *arg) { /* receives until the channel is closed and drained */
  struct chanrun *r = arg;
  int64_t sum = 0, v;
  int err;
  while ((err = tt_chan_recv(r->ch[0], &v, NULL)) == 0)
    sum += v;
  if (err != TT_ECLOSED)
    chanrun_error(r, "buffered: consumer: tt_chan_recv", err, r->ch, 1);
  r->sum = sum;
  tt_wg_done(&r->done);
}

static int bench_buffered(long n) {
  struct chanrun r = {.nch = 1, .n = n, .done = TT_WG_INIT};
  void (*const fns[2])(void *) = {produce_fn, consume_fn};
  int err = 0;
  long i;

  if ((err = chanrun_make(&r, 1024)) < 0)
    return err;
  tt_wg_add(&r.done, 2);
  int64_t t0 = tt_now(), t1;
  for (i = 0; i < 2; i++)
    if ((err = tt_go_opt(fns[i], &r, &(tt_go_opts){.share = r.ch, .nshare = 1}, NULL)) < 0)
      break;
  if ((err = chanrun_finish(&r, err, 2 - i, &t1)) < 0)
    return err;
  if (r.sum != sum_below(n))
    return wrong_sum("buffered", r.sum, sum_below(n));
  report("buffered", (double)(t1 - t0) / (double)n, "ns/op");
  return 0;
}

/* ---- select: four producers on unbuffered channels, one consumer selecting, n messages ------ */

struct sel_producer {
  struct chanrun *r;
  int k;  /* its channel: r->ch[k] */
  long m; /* it sends 0..m-1 */
};

static void sel_produce_fn(void *arg) {
  struct sel_producer *p = arg;
  tt_chan *ch = p->r->ch[p->k];
  int err;
  for (long i = 0; i < p->m; i++) {
    int64_t v = i;
    if ((err = tt_chan_send(ch, &v)) < 0) {
      chanrun_error(p->r, "select: producer: tt_chan_send", err, &ch, 1);
      break;
    }
  }
  tt_wg_done(&p->r->done);
}

static void sel_consume_fn(void *arg) { /* n selects over the four receives */
  struct chanrun *r = arg;
  int64_t sum = 0, v;
  tt_select_case cases[4] = {TT_CASE_RECV(r->ch[0], &v), TT_CASE_RECV(r->ch[1], &v),
                             TT_CASE_RECV(r->ch[2], &v), TT_CASE_RECV(r->ch[3], &v)};
  for (long i = 0; i < r->n; i++) {
    int idx = tt_select(cases, 4);
    if (idx < 0 || cases[idx].err < 0) {
      chanrun_error(r, "select: consumer: tt_select", idx < 0 ? idx : cases[idx].err, r->ch, 4);
      break;
    }
    sum += v;
  }
  r->sum = sum;
  tt_wg_done(&r->done);
}

static int bench_select(long n) {
  struct chanrun r = {.nch = 4, .n = n, .done = TT_WG_INIT};
  struct sel_producer prod[4];
  int64_t want = 0;
  int err = 0;
  long i;

  for (int k = 0; k < 4; k++) { /* n / 4 each, the remainder to the first ones */
    prod[k] = (struct sel_producer){&r, k, n / 4 + (k < n % 4)};
    want += sum_below(prod[k].m);
  }
  if ((err = chanrun_make(&r, 0)) < 0)
    return err;
  tt_wg_add(&r.done, 5);
  int64_t t0 = tt_now(), t1;
  for (i = 0; i < 4; i++)
    if ((err = tt_go_opt(sel_produce_fn, &prod[i], &(tt_go_opts){.share = &r.ch[i], .nshare = 1},
                         NULL)) < 0)
      break;
  if (err == 0 &&
      (err = tt_go_opt(sel_consume_fn, &r, &(tt_go_opts){.share = r.ch, .nshare = 4}, NULL)) == 0)
    i++;
  if ((err = chanrun_finish(&r, err, 5 - i, &t1)) < 0)
    return err;
  if (r.sum != want)
    return wrong_sum("select", r.sum, want);
  report("select", (double)(t1 - t0) / (double)n, "ns/op");
  return 0;
}

/* ---- timers: n coroutines each sleeping 1 ms ten times --------------------------------------- */

enum { TIMER_SLEEPS = 10 };

struct timers {
  tt_wg done;
  _Atomic int err; /* the first error a tt_sleep returned */
};

static void timers_fn(void *arg) {
  struct timers *t = arg;
  for (int j = 0; j < TIMER_SLEEPS; j++) {
    int err = tt_sleep(TT_MSEC);
    if (err < 0) {
      int none = 0;
      atomic_compare_exchange_strong(&t->err, &none, err);
      break;
    }
  }
  tt_wg_done(&t->done);
}

static int bench_timers(long n) {
  struct timers t = {.done = TT_WG_INIT};
  int err;

  tt_wg_add(&t.done, n);
  int64_t t0 = tt_now();
  for (long i = 0; i < n; i++) {
    if ((err = tt_go(timers_fn, &t)) < 0) {
      tt_wg_add(&t.done, -(n - i)); /* the ones never spawned; then wait for the rest */
      tt_wg_wait(&t.done);
      return fail("tt_go", err);
    }
  }
  if ((err = tt_wg_wait(&t.done)) < 0)
    return fail("tt_wg_wait", err);
  int64_t t1 = tt_now();
  if ((err = atomic_load(&t.err)) < 0)
    return fail("timers: tt_sleep", err);
  report("timers", (double)(t1 - t0) / ((double)n * TIMER_SLEEPS), "ns/op");
  return 0;
}

/* ---- mutex: 1000 coroutines each locking and unlocking one shared mutex n/1000 times --------- */

enum { MUTEX_COROS = 1000 };

struct mutexw {
  tt_mutex m;
  long per;     /* lock/unlock pairs per coroutine */
  long counter; /* the critical section: under m */
  tt_wg done;
  _Atomic int err; /* the first error a lock or unlock returned */
};

static void mutex_fn(void *arg) {
  struct mutexw *mw = arg;
  for (long j = 0; j < mw->per; j++) {
    int err = tt_mutex_lock(&mw->m);
    if (err == 0) {
      mw->counter++;
      err = tt_mutex_unlock(&mw->m);
    }
    if (err < 0) {
      int none = 0;
      atomic_compare_exchange_strong(&mw->err, &none, err);
      break;
    }
  }
  tt_wg_done(&mw->done);
}

static int bench_mutex(long n) {
  struct mutexw mw = {.m = TT_MUTEX_INIT, .done = TT_WG_INIT};
  long coros = n < MUTEX_COROS ? n : MUTEX_COROS;
  int err;

  mw.per = n / coros;
  tt_wg_add(&mw.done, coros);
  int64_t t0 = tt_now();
  for (long i = 0; i < coros; i++) {
    if ((err = tt_go(mutex_fn, &mw)) < 0) {
      tt_wg_add(&mw.done, -(coros - i)); /* the ones never spawned; then wait for the rest */
      tt_wg_wait(&mw.done);
      return fail("tt_go", err);
    }
  }
  if ((err = tt_wg_wait(&mw.done)) < 0)
    return fail("tt_wg_wait", err);
  int64_t t1 = tt_now();
  if ((err = atomic_load(&mw.err)) < 0)
    return fail("mutex: lock/unlock", err);
  if (mw.counter != coros * mw.per)
    return wrong_sum("mutex", mw.counter, coros * mw.per);
  report("mutex", (double)(t1 - t0) / (double)(coros * mw.per), "ns/op");
  return 0;
}

/* ---- echo: a TCP echo server on loopback, ECHO_CONNS clients, 64-byte messages ------------- */

enum { ECHO_CONNS = 100, ECHO_MSG = 64 };

struct echow {
  tt_listener *l;
  char addr[64];
  long per; /* round trips per client */
  tt_wg done;
  _Atomic int err;
  _Atomic long checked;
};

static void echo_fail(struct echow *ew, int err) {
  int none = 0;
  atomic_compare_exchange_strong(&ew->err, &none, err);
}

static void echo_handler(void *arg) {
  tt_conn *c = arg;
  char buf[ECHO_MSG];
  for (;;) { /* until the client closes */
    if (tt_conn_read_full(c, buf, sizeof buf, NULL) != 0 ||
        tt_conn_write_all(c, buf, sizeof buf, NULL) != 0)
      break;
  }
  tt_conn_close(c);
}

static void echo_acceptor(void *arg) {
  struct echow *ew = arg;
  for (int i = 0; i < ECHO_CONNS; i++) {
    tt_conn *c;
    int err = tt_accept(ew->l, &c);
    if (err == 0)
      err = tt_go(echo_handler, c);
    if (err != 0) {
      echo_fail(ew, err);
      break;
    }
  }
}

static void echo_client(void *arg) {
  struct echow *ew = arg;
  tt_conn *c;
  int err = tt_dial("tcp", ew->addr, &c);
  if (err == 0) {
    char out[ECHO_MSG], in[ECHO_MSG];
    memset(out, 'e', sizeof out);
    for (long i = 0; i < ew->per && err == 0; i++) {
      out[0] = (char)i;
      if ((err = tt_conn_write_all(c, out, sizeof out, NULL)) == 0 &&
          (err = tt_conn_read_full(c, in, sizeof in, NULL)) == 0 && in[0] != (char)i)
        err = TT_EIO;
    }
    atomic_fetch_add(&ew->checked, err == 0 ? ew->per : 0);
    tt_conn_close(c);
  }
  if (err != 0)
    echo_fail(ew, err);
  tt_wg_done(&ew->done);
}

/* n round trips in all, over ECHO_CONNS connections at once; the time from the first dial to
 * the last reply, per round trip (1e9 / this = requests per second). */
static int bench_echo(long n) {
  struct echow ew = {.done = TT_WG_INIT};
  int err = tt_listen("tcp", "127.0.0.1:0", &ew.l);
  if (err != 0)
    return fail("tt_listen", err);
  tt_listener_addr(ew.l, ew.addr, sizeof ew.addr);
  ew.per = n / ECHO_CONNS > 0 ? n / ECHO_CONNS : 1;
  tt_wg_add(&ew.done, ECHO_CONNS);
  int64_t t0 = tt_now();
  if ((err = tt_go(echo_acceptor, &ew)) != 0)
    return fail("tt_go", err);
  for (int i = 0; i < ECHO_CONNS; i++)
    if ((err = tt_go(echo_client, &ew)) != 0) {
      tt_wg_add(&ew.done, -(ECHO_CONNS - i));
      echo_fail(&ew, err);
      break;
    }
  tt_wg_wait(&ew.done);
  int64_t t1 = tt_now();
  tt_listener_close(ew.l);
  if ((err = atomic_load(&ew.err)) != 0)
    return fail("echo", err);
  if (atomic_load(&ew.checked) != ew.per * ECHO_CONNS)
    return wrong_sum("echo", atomic_load(&ew.checked), ew.per * ECHO_CONNS);
  report("echo", (double)(t1 - t0) / (double)(ew.per * ECHO_CONNS), "ns/req");
  return 0;
}

/* ---- ctxcancel: a tree of n contexts, a coroutine blocked on each leaf's done channel -------- */

enum { CTX_FANOUT = 10 };

struct ctxw {
  tt_wg started, done;
};

static void ctx_leaf_fn(void *arg) {
  tt_ctx *leaf = arg;
  struct ctxw *cw = tt_ctx_value(leaf, &ctx_leaf_fn);
  tt_wg_done(&cw->started);
  tt_chan_recv(tt_ctx_done(leaf), NULL, NULL); /* returns TT_ECLOSED once cancelled */
  tt_wg_done(&cw->done);
}

/* The tree is built breadth first with CTX_FANOUT children per node (node i's parent is
 * (i - 1) / CTX_FANOUT), as the Go twin builds it; about 90% of the nodes are leaves. The time is
 * from the root's cancel until every blocked coroutine has returned, per context. */
static int bench_ctxcancel(long n) {
  struct ctxw cw = {TT_WG_INIT, TT_WG_INIT};
  tt_ctx **v = calloc((size_t)n + 1, sizeof *v);
  int err = 0;
  long made = 0, leaves = 0;
  if (v == NULL)
    return fail("calloc", TT_ENOMEM);
  /* The root carries the bench state as a value, so the leaves need no second argument. */
  if ((err = tt_ctx_with_value(tt_ctx_background(), &ctx_leaf_fn, &cw, &v[n])) != 0)
    goto out;
  for (made = 0; made < n; made++) {
    tt_ctx *parent = made == 0 ? v[n] : v[(made - 1) / CTX_FANOUT];
    if ((err = tt_ctx_with_cancel(parent, &v[made])) != 0)
      goto out;
  }
  for (long i = 0; i < n; i++) {
    if (i * CTX_FANOUT + 1 < n)
      continue; /* has children: not a leaf */
    tt_wg_add(&cw.started, 1);
    tt_wg_add(&cw.done, 1);
    if ((err = tt_go(ctx_leaf_fn, v[i])) != 0) {
      tt_wg_add(&cw.started, -1);
      tt_wg_add(&cw.done, -1);
      break;
    }
    leaves++;
  }
  tt_wg_wait(&cw.started);
  int64_t t0 = tt_now();
  tt_ctx_cancel(v[0]);
  tt_wg_wait(&cw.done);
  int64_t t1 = tt_now();
  if (err == 0)
    report("ctxcancel", (double)(t1 - t0) / (double)n, "ns/op");
out:
  if (err)
    tt_ctx_cancel(v[0]), tt_wg_wait(&cw.done);
  for (long i = 0; i < made; i++)
    tt_ctx_release(v[i]);
  tt_ctx_release(v[n]);
  free(v);
  return err ? fail("ctxcancel", err) : 0;
}

/* ---- group: n children through a group with a limit of 1000 -------------------------------- */

enum { GROUP_LIMIT = 1000 };

static int group_child(void *arg) { return 0; }

static int bench_group(long n) {
  tt_group *g;
  int err;
  int64_t t0 = tt_now();
  if ((err = tt_group_make(NULL, &g)) != 0)
    return fail("tt_group_make", err);
  tt_group_set_limit(g, GROUP_LIMIT);
  for (long i = 0; i < n; i++)
    if ((err = tt_group_go(g, group_child, NULL)) != 0)
      break;
  int werr = tt_group_wait(g);
  int64_t t1 = tt_now();
  tt_group_free(g);
  if (err || werr)
    return fail("group", err ? err : werr);
  report("group", (double)(t1 - t0) / (double)n, "ns/op");
  return 0;
}

/* ---- dump: n parked coroutines in four stacks, written in each format ------------------------
 * A quarter each: a channel receive at depth 1, a mutex lock at depth 3, a select at depth 2, a
 * sleep at depth 5 (the Go twin parks the same shapes). Each format is timed from the call to the
 * last byte written to DIR (--out DIR; default a temporary directory, removed afterwards). */

static const char *dump_dir;
static tt_chan *dump_ch;
static tt_mutex dump_mu = TT_MUTEX_INIT;
static tt_wg dump_parked = TT_WG_INIT, dump_done = TT_WG_INIT;
static tt_ctx *dump_ctx;
static volatile long dump_sink;

__attribute__((noinline)) static void dump_recv(void) {
  int v;
  bool ok;
  tt_wg_done(&dump_parked);
  tt_chan_recv(dump_ch, &v, &ok);
  dump_sink++;
}

__attribute__((noinline)) static void dump_lock3(void) {
  tt_wg_done(&dump_parked);
  if (tt_mutex_lock(&dump_mu) == 0)
    tt_mutex_unlock(&dump_mu);
  dump_sink++;
}
__attribute__((noinline)) static void dump_lock2(void) {
  dump_lock3();
  dump_sink++;
}
__attribute__((noinline)) static void dump_lock1(void) {
  dump_lock2();
  dump_sink++;
}

__attribute__((noinline)) static void dump_select2(void) {
  int v;
  tt_select_case c[2] = {TT_CASE_RECV(dump_ch, &v), TT_CASE_RECV(NULL, &v)};
  tt_wg_done(&dump_parked);
  tt_select(c, 2);
  dump_sink++;
}
__attribute__((noinline)) static void dump_select1(void) {
  dump_select2();
  dump_sink++;
}

/* A day's sleep, as the Go twin's; the sleepers run under dump_ctx, cancelled at the end. */
__attribute__((noinline)) static void dump_sleep5(void) {
  tt_wg_done(&dump_parked);
  tt_sleep(24 * 3600 * TT_SEC);
  dump_sink++;
}
__attribute__((noinline)) static void dump_sleep4(void) {
  dump_sleep5();
  dump_sink++;
}
__attribute__((noinline)) static void dump_sleep3(void) {
  dump_sleep4();
  dump_sink++;
}
__attribute__((noinline)) static void dump_sleep2(void) {
  dump_sleep3();
  dump_sink++;
}
__attribute__((noinline)) static void dump_sleep1(void) {
  dump_sleep2();
  dump_sink++;
}

static void dump_fn(void *arg) {
  switch ((intptr_t)arg) {
  case 0:
    dump_recv();
    break;
  case 1:
    dump_lock1();
    break;
  case 2:
    dump_select1();
    break;
  default:
    dump_sleep1();
  }
  tt_wg_done(&dump_done);
}

static int dump_one(const char *file, int format, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dump_dir, file);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "tether-bench: %s: %s\n", path, strerror(errno));
    return 1;
  }
  int64_t t0 = tt_now();
  int err = tt_dump(fd, format);
  int64_t t1 = tt_now();
  close(fd);
  if (err)
    return fail(name, err);
  report(name, (double)(t1 - t0) / 1e6, "ms");
  return 0;
}

static int bench_dump(long n) {
  char tmp[] = "/tmp/tether-dump-XXXXXX";
  bool own = dump_dir == NULL;
  if (own && (dump_dir = mkdtemp(tmp)) == NULL) {
    fprintf(stderr, "tether-bench: mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  /* Untracked: every coroutine uses it without a reference of its own (Go's shape). */
  tt_chan_opts co = {.mode = TT_CHAN_UNTRACKED};
  int merr = tt_chan_make_opt(&dump_ch, sizeof(int), 0, &co);
  if (merr)
    return fail("tt_chan_make_opt", merr);
  tt_mutex_lock(&dump_mu);
  tt_wg_add(&dump_parked, n);
  tt_wg_add(&dump_done, n);
  int err = 0;
  long i = 0;
  if ((err = tt_ctx_with_cancel(tt_ctx_background(), &dump_ctx)) < 0)
    return fail("tt_ctx_with_cancel", err);
  tt_go_opts sleeper = {.ctx = dump_ctx};
  for (; i < n; i++)
    if ((err = i % 4 == 3 ? tt_go_opt(dump_fn, (void *)(intptr_t)3, &sleeper, NULL)
                          : tt_go(dump_fn, (void *)(intptr_t)(i % 4))) < 0)
      break;
  if (err < 0) {
    tt_wg_add(&dump_parked, -(n - i));
    tt_wg_add(&dump_done, -(n - i));
  }
  tt_wg_wait(&dump_parked);
  int r = err < 0 ? fail("tt_go", err) : 0;
  if (r == 0)
    r = dump_one("goroutine.pb.gz", TT_DUMP_PPROF, "dump-pprof");
  if (r == 0)
    r = dump_one("goroutine-debug1.txt", TT_DUMP_COUNTS, "dump-debug1");
  if (r == 0)
    r = dump_one("goroutine-debug2.txt", TT_DUMP_TRACES, "dump-debug2");
  /* Let everything finish. */
  tt_ctx_cancel(dump_ctx);
  tt_chan_close(dump_ch);
  tt_mutex_unlock(&dump_mu);
  tt_wg_wait(&dump_done);
  tt_chan_release(dump_ch);
  tt_ctx_release(dump_ctx);
  if (own) {
    static const char *files[] = {"goroutine.pb.gz", "goroutine-debug1.txt",
                                  "goroutine-debug2.txt"};
    char path[4096];
    for (int f = 0; f < 3; f++) {
      snprintf(path, sizeof path, "%s/%s", dump_dir, files[f]);
      unlink(path);
    }
    rmdir(dump_dir);
  }
  return r;
}

/* ---- leakscan: the leak proof over n coroutines ------------------------------------------------
 * A quarter each: a receiver that alone holds its channel (its spawner moved the reference to it
 * and left: leaked, the seed's first leak), receivers and selects on a channel coroutine 1 still
 * holds, and waiters on a mutex coroutine 1 holds (live). "leakscan" times tt_leak_check without
 * a report (the verdicts: co->verdict, the dumps' marks), "leakscan-report" with one (evidence
 * text for each leaked coroutine). Go 1.19 has no leak proof; its twin times runtime.GC() over
 * the same shapes, the pass Go 1.26's goroutineleak profile builds its detection on. */

static tt_chan *scan_live;
static tt_mutex scan_mu = TT_MUTEX_INIT;
static tt_wg scan_parked = TT_WG_INIT, scan_done = TT_WG_INIT;
static tt_ctx *scan_ctx;

static void scan_fn(void *arg) {
  int v;
  bool ok;
  switch ((intptr_t)arg) {
  case 1:
    tt_wg_done(&scan_parked);
    tt_chan_recv(scan_live, &v, &ok);
    tt_chan_release(scan_live);
    break;
  case 2:
    tt_wg_done(&scan_parked);
    if (tt_mutex_lock(&scan_mu) == 0)
      tt_mutex_unlock(&scan_mu);
    break;
  default: {
    tt_select_case c[2] = {TT_CASE_RECV(scan_live, &v), TT_CASE_RECV(tt_ctx_done(scan_ctx), NULL)};
    tt_wg_done(&scan_parked);
    tt_select(c, 2);
    tt_chan_release(scan_live);
  }
  }
  tt_wg_done(&scan_done);
}

static void scan_orphan(void *arg) {
  int v;
  bool ok;
  tt_wg_done(&scan_parked);
  tt_chan_recv(arg, &v, &ok); /* nobody else holds it: leaked */
  tt_chan_release(arg);
}

static int bench_leakscan(long n) {
  int err = tt_chan_make_opt(&scan_live, sizeof(int), 0, NULL);
  if (err)
    return fail("tt_chan_make_opt", err);
  if ((err = tt_ctx_with_cancel(tt_ctx_background(), &scan_ctx)) < 0)
    return fail("tt_ctx_with_cancel", err);
  tt_mutex_lock(&scan_mu);
  tt_wg_add(&scan_parked, n);
  tt_wg_add(&scan_done, n - (n + 3) / 4);
  long leaked = 0, i = 0;
  for (; i < n && err == 0; i++) {
    if (i % 4 == 0) {
      tt_chan *own;
      if ((err = tt_chan_make_opt(&own, sizeof(int), 0, NULL)) != 0)
        break;
      tt_go_opts o = {.share = &own, .nshare = 1, .share_mode = TT_SHARE_MOVE};
      err = tt_go_opt(scan_orphan, own, &o, NULL);
      leaked++;
    } else {
      tt_go_opts o = {.share = &scan_live, .nshare = 1};
      err = tt_go_opt(scan_fn, (void *)(intptr_t)(i % 4), i % 4 == 2 ? NULL : &o, NULL);
    }
  }
  if (err)
    return fail("tt_go_opt", err);
  tt_wg_wait(&scan_parked);
  tt_sleep(10 * TT_MSEC); /* the last ones reach their waits */
  int64_t t0 = tt_now();
  int got = tt_leak_check(NULL);
  int64_t t1 = tt_now();
  if (got != leaked) {
    fprintf(stderr, "tether-bench: leakscan: %d proven leaked, want %ld\n", got, leaked);
    return 1;
  }
  report("leakscan", (double)(t1 - t0) / 1e6, "ms");
  tt_leak_report *r;
  t0 = tt_now();
  got = tt_leak_check(&r);
  t1 = tt_now();
  if (got != leaked)
    return fail("tt_leak_check", got < 0 ? got : TT_EIO);
  report("leakscan-report", (double)(t1 - t0) / 1e6, "ms");
  tt_leak_report_free(r);
  /* The live ones finish (before their channels go); the leaked ones are cancelled by the
   * shut-down. */
  tt_chan_close(scan_live);
  tt_ctx_cancel(scan_ctx);
  tt_mutex_unlock(&scan_mu);
  tt_wg_wait(&scan_done);
  tt_chan_release(scan_live);
  tt_ctx_release(scan_ctx);
  return 0;
}

static int bench_spawn_trace(long n) { return traced(bench_spawn, n); }
static int bench_pingpong_trace(long n) { return traced(bench_pingpong, n); }

/* ---- driver ---------------------------------------------------------------------------------- */

static const struct workload {
  const char *name;
  long count; /* the default COUNT */
  int (*run)(long n);
} workloads[] = {
    /* clang-format off */
    {"spawn", 1000000, bench_spawn},
    {"parked", 1000000, bench_parked},
    {"pingpong", 1000000, bench_pingpong},
    {"pingpong-trace", 1000000, bench_pingpong_trace},
    {"spawn-trace", 1000000, bench_spawn_trace},
    {"buffered", 10000000, bench_buffered},
    {"select", 4000000, bench_select},
    {"timers", 100000, bench_timers},
    {"mutex", 1000000, bench_mutex},
    {"ctxcancel", 100000, bench_ctxcancel},
    {"group", 1000000, bench_group},
    {"dump", 1000000, bench_dump},
    {"leakscan", 1000000, bench_leakscan},
    {"echo", 500000, bench_echo},
    /* clang-format on */
};

struct job {
  const struct workload *w;
  long n;
};

/* Coroutine 1: the workload runs here, as the Go twin's runs in main. A workload returns 0, a
 * TT_E* code, or 1 once it has said on stderr what went wrong (a wrong sum). */
static int run_job(void *arg) {
  struct job *job = arg;
  return job->w->run(job->n);
}

static int usage(void) {
  fprintf(stderr, "usage: tether-bench WORKLOAD [COUNT] [--out DIR]\nworkloads:");
  for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
    fprintf(stderr, " %s", workloads[i].name);
  fprintf(stderr, "\n");
  return 2;
}

int main(int argc, char **argv) {
  /* --out DIR (the dump workload's directory) may follow the other arguments. */
  if (argc >= 4 && strcmp(argv[argc - 2], "--out") == 0) {
    dump_dir = argv[argc - 1];
    argc -= 2;
  }
  if (argc < 2 || argc > 3)
    return usage();
  struct job job = {NULL, 0};
  for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
    if (strcmp(argv[1], workloads[i].name) == 0)
      job.w = &workloads[i];
  if (job.w == NULL) {
    fprintf(stderr, "tether-bench: unknown workload \"%s\"\n", argv[1]);
    return usage();
  }
  job.n = job.w->count;
  if (argc == 3) {
    char *end;
    errno = 0;
    job.n = strtol(argv[2], &end, 10);
    if (errno != 0 || end == argv[2] || *end != '\0' || job.n <= 0) {
      fprintf(stderr, "tether-bench: bad COUNT \"%s\"\n", argv[2]);
      return 2;
    }
  }
  int err = tt_run(run_job, &job, NULL);
  if (err < 0) {
    fprintf(stderr, "tether-bench: %s: %s\n", job.w->name, tt_strerror(err));
    return 1;
  }
  return err > 0 ? 1 : 0;
}
