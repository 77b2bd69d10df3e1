/* SPDX-License-Identifier: MIT */
/* tt_blocking: blocking code on a bounded pool of plain threads while the caller stays parked. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#define TOL (20 * TT_MSEC * (int64_t)tt_test_slow()) /* lateness allowed on a loaded machine */

static void nap(int64_t ns) {
  struct timespec ts = {(time_t)(ns / TT_SEC), (long)(ns % TT_SEC)};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static tt_blocking_stats stats(void) {
  tt_blocking_stats s;
  ASSERT_OK(tt_blocking_stats_get(&s));
  return s;
}

/* A gate that blocking functions wait on (on their pool thread: nanosleep, never a tether call). */
typedef struct gate {
  _Atomic int open;
  _Atomic int entered; /* functions that reached the gate */
  _Atomic int left;
} gate;

static intptr_t gate_fn(void *p) {
  gate *g = p;
  atomic_fetch_add(&g->entered, 1);
  while (!atomic_load(&g->open))
    nap(200 * TT_USEC);
  atomic_fetch_add(&g->left, 1);
  return 42;
}

/* What an abandoned callback saw. */
typedef struct abandon_rec {
  _Atomic int calls;
  int ran;
  intptr_t result;
  tt_id self;       /* the coroutine it ran on, 0 on a plain thread */
  pthread_t thread; /* the thread it ran on */
} abandon_rec;

static void on_abandoned(void *arg, int ran, intptr_t result) {
  abandon_rec *a = arg;
  a->ran = ran;
  a->result = result;
  a->self = tt_self();
  a->thread = pthread_self();
  atomic_fetch_add(&a->calls, 1); /* last: the test waits for it, then reads the rest */
}

/* Waits (from a coroutine or a plain thread) until *v >= n; fails after a while. */
static void await_at_least(_Atomic int *v, int n) {
  int64_t give_up = tt_now() + (int64_t)(60 * TT_SEC * tt_test_slow());
  while (atomic_load(v) < n) {
    ASSERT_LT(tt_now(), give_up);
    if (tt_self())
      tt_sleep(100 * TT_USEC);
    else
      nap(100 * TT_USEC);
  }
}

/* tt_test_run with the default bound whatever TT_BLOCKING_MAX says: the tests count on it. */
static void run(int (*fn)(void *), void *arg, int procs) {
  tt_run_opts o = {.procs = procs, .blocking_max = 64};
  int r = tt_test_run_opt(fn, arg, &o);
  if (r != 0)
    tt_test_fail(__FILE__, __LINE__, "tt_run returned %d (%s)", r, tt_strerror(r));
}

/* ---- The result, and where fn runs --------------------------------------------------------- */

typedef struct probe {
  intptr_t v;
  int worker;
  tt_id self;
  pthread_t thread;
  int nested_rc;
  intptr_t nested;
} probe;

static intptr_t add_one(void *p) {
  probe *pr = p;
  pr->worker = tt_worker_index();
  pr->self = tt_self();
  pr->thread = pthread_self();
  return pr->v + 1;
}

static intptr_t nested_fn(void *p) {
  probe *pr = p;
  probe inner = {.v = 6};
  /* On a pool thread, a plain thread: a nested call runs right here. */
  pr->nested_rc = tt_blocking(add_one, &inner, &pr->nested);
  pr->thread = pthread_self();
  return pthread_equal(inner.thread, pthread_self()) ? 1 : 0;
}

static intptr_t negative_fn(void *p) { return -12345; }

static int result_main(void *p) {
  probe pr = {.v = 41, .worker = 99, .self = 99};
  intptr_t r = 0;
  ASSERT_OK(tt_blocking(add_one, &pr, &r));
  ASSERT_EQ(r, 42);
  ASSERT_EQ(pr.worker, -1); /* a plain thread, not a worker */
  ASSERT_UEQ(pr.self, 0);
  ASSERT(!pthread_equal(pr.thread, pthread_self()));
  ASSERT_OK(tt_blocking(add_one, &pr, NULL)); /* the result may be dropped */
  ASSERT_OK(tt_blocking(negative_fn, NULL, &r));
  ASSERT_EQ(r, -12345); /* any intptr_t comes back, negative ones included */
  ASSERT_OK(tt_blocking_dl(add_one, &pr, &r, tt_now() + 10 * TT_SEC));
  ASSERT_EQ(r, 42);
  ASSERT_OK(tt_blocking_dl(add_one, &pr, &r, TT_FOREVER));
  tt_blocking_opts o = {0}; /* deadline 0: none */
  ASSERT_OK(tt_blocking_opt(add_one, &pr, &o, &r));
  ASSERT_EQ(r, 42);
  ASSERT_OK(tt_blocking_opt(add_one, &pr, NULL, &r));
  ASSERT_OK(tt_blocking(nested_fn, &pr, &r));
  ASSERT_EQ(r, 1);
  ASSERT_OK(pr.nested_rc);
  ASSERT_EQ(pr.nested, 7);
  /* Sequential calls reuse one thread. */
  for (int64_t end = tt_now() + (int64_t)(5 * TT_SEC * tt_test_slow()); stats().idle < 1;) {
    ASSERT_LT(tt_now(), end);
    tt_sleep(100 * TT_USEC);
  }
  tt_blocking_stats s = stats();
  ASSERT_EQ(s.threads, 1);
  ASSERT_EQ(s.busy, 0);
  ASSERT_EQ(s.idle, 1);
  ASSERT_EQ(s.queued, 0);
  ASSERT_EQ(s.max, 64);
  /* Bad arguments. */
  abandon_rec a = {0};
  tt_blocking_opts oa = {.abandoned = on_abandoned};
  ASSERT_ERR(tt_blocking(NULL, NULL, &r), TT_EINVAL);
  ASSERT_ERR(tt_blocking_opt(NULL, &a, &oa, &r), TT_EINVAL);
  ASSERT_EQ(atomic_load(&a.calls), 0); /* misuse calls nothing */
  ASSERT_ERR(tt_blocking_stats_get(NULL), TT_EINVAL);
  return 0;
}

TEST(blocking_returns_result) { run(result_main, NULL, 2); }

/* ---- The worker keeps running other coroutines meanwhile ---------------------------------- */

#define NAP (50 * TT_MSEC)

typedef struct stall {
  _Atomic int ticks[2]; /* per worker */
  /* Blocking calls during which the ticker on their worker went on ticking. A stalled worker
   * would give none: its ticker could not run while fn ran. A loaded machine may starve a few. */
  _Atomic int ticked[2];
  _Atomic int callers[2];    /* blocking callers per worker */
  _Atomic int has_ticker[2]; /* two workers: each caller makes sure its worker has a ticker */
  _Atomic int stop;
  _Atomic int bad;
  tt_wg tickers, callers_wg, spinners;
  int ncallers;
} stall;

typedef struct call_arg {
  stall *st;
  int worker;
  intptr_t id;
} call_arg;

static intptr_t nap_fn(void *p) {
  call_arg *c = p;
  int t0 = atomic_load(&c->st->ticks[c->worker]);
  nap(NAP);
  int seen = atomic_load(&c->st->ticks[c->worker]) - t0;
  if (seen >= 2)
    atomic_fetch_add(&c->st->ticked[c->worker], 1);
  return c->id * 3;
}

static void ticker(void *p) {
  stall *st = p;
  int w = tt_worker_index();
  while (!atomic_load(&st->stop)) {
    tt_sleep(TT_MSEC);
    atomic_fetch_add(&st->ticks[w], 1);
  }
  tt_wg_done(&st->tickers);
}

static void caller(void *p) {
  call_arg *c = p;
  c->worker = tt_worker_index();
  atomic_fetch_add(&c->st->callers[c->worker], 1);
  if (atomic_load(&c->st->has_ticker[c->worker]) == 0 &&
      atomic_exchange(&c->st->has_ticker[c->worker], 1) == 0) {
    /* Spawned into this worker's runnext, which is never stolen: it runs here once we park. */
    tt_wg_add(&c->st->tickers, 1);
    tt_go(ticker, c->st);
  }
  intptr_t r = -1;
  if (tt_blocking(nap_fn, c, &r) != 0 || r != c->id * 3)
    atomic_fetch_add(&c->st->bad, 1);
  if (tt_worker_index() != c->worker) /* parked and resumed on its own worker */
    atomic_fetch_add(&c->st->bad, 1);
  tt_wg_done(&c->st->callers_wg);
}

/* Starts n pool threads and leaves them idle: the stall tests measure the worker while calls
 * block, not while it starts threads (pthread_create runs on the caller's worker: tens of
 * microseconds each, but milliseconds under TSan). */
static void warm_pool(int n);

static int stall_one_main(void *p) {
  stall *st = p;
  int n = 32;
  warm_pool(n);
  call_arg *args = calloc((size_t)n, sizeof *args);
  atomic_store(&st->has_ticker[0], 1);
  ASSERT_OK(tt_wg_add(&st->tickers, 1));
  ASSERT_OK(tt_go(ticker, st));
  ASSERT_OK(tt_wg_add(&st->callers_wg, n));
  int64_t t0 = tt_now();
  for (int i = 0; i < n; i++) {
    args[i] = (call_arg){.st = st, .id = i};
    ASSERT_OK(tt_go(caller, &args[i]));
  }
  ASSERT_OK(tt_wg_wait(&st->callers_wg));
  int64_t took = tt_now() - t0;
  atomic_store(&st->stop, 1);
  ASSERT_OK(tt_wg_wait(&st->tickers));
  ASSERT_EQ(atomic_load(&st->bad), 0);
  /* The calls ran side by side on the pool (n in a row would take n * NAP)... */
  int64_t bound = (int64_t)(300 * TT_MSEC * tt_test_slow());
  if (bound > n * NAP / 2)
    bound = n * NAP / 2;
  ASSERT_LT(took, bound);
  /* ...and while each one napped, the ticker on the only worker kept counting. */
  ASSERT_GE(atomic_load(&st->ticked[0]), n / 2);
  free(args);
  return 0;
}

TEST(blocking_does_not_stall_the_worker) {
  stall st = {.tickers = TT_WG_INIT, .callers_wg = TT_WG_INIT};
  run(stall_one_main, &st, 1);
}

/* On two workers: a spinner that never yields holds each worker for a moment, so that the idle
 * one steals the other spinner (as in idle_worker_steals_fresh_coroutines); each then starts its
 * callers on its own worker (some may still be stolen), and the first caller on each worker
 * starts a ticker there. */
typedef struct spin_arg {
  stall *st;
  call_arg *args;
  int n;
} spin_arg;

static void spread_spinner(void *p) {
  spin_arg *sa = p;
  int64_t end = tt_now() + 30 * TT_MSEC;
  while (tt_now() < end)
    ; /* busy, never yields */
  for (int i = 0; i < sa->n; i++)
    tt_go(caller, &sa->args[i]);
  tt_wg_done(&sa->st->spinners);
}

static int stall_two_main(void *p) {
  stall *st = p;
  int n = (int)SCALED(64, 16); /* per spinner */
  warm_pool(2 * n < 64 ? 2 * n : 64);
  call_arg *args = calloc((size_t)(2 * n), sizeof *args);
  for (int i = 0; i < 2 * n; i++)
    args[i] = (call_arg){.st = st, .id = i};
  spin_arg sa[2] = {{st, args, n}, {st, args + n, n}};
  ASSERT_OK(tt_wg_add(&st->callers_wg, 2 * n));
  ASSERT_OK(tt_wg_add(&st->spinners, 2));
  ASSERT_OK(tt_go(spread_spinner, &sa[0]));
  ASSERT_OK(tt_go(spread_spinner, &sa[1]));
  ASSERT_OK(tt_wg_wait(&st->spinners));
  ASSERT_OK(tt_wg_wait(&st->callers_wg));
  atomic_store(&st->stop, 1);
  ASSERT_OK(tt_wg_wait(&st->tickers));
  ASSERT_EQ(atomic_load(&st->bad), 0);
  /* Both workers had callers — when the idle one stole a spinner, which takes a timing that the
   * emulated aarch64 run does not always give (it then still checks that nothing stalled). */
  ASSERT_GT(atomic_load(&st->callers[0]) + atomic_load(&st->callers[1]), 0);
  if (getenv("TT_TEST_EMULATOR") == NULL) {
    ASSERT_GT(atomic_load(&st->callers[0]), 0);
    ASSERT_GT(atomic_load(&st->callers[1]), 0);
  }
  for (int w = 0; w < 2; w++) /* neither worker stalled while its callers' calls napped */
    ASSERT_GE(atomic_load(&st->ticked[w]), atomic_load(&st->callers[w]) / 2);
  free(args);
  return 0;
}

TEST(blocking_many_callers_on_both_workers) {
  stall st = {.tickers = TT_WG_INIT, .callers_wg = TT_WG_INIT, .spinners = TT_WG_INIT};
  run(stall_two_main, &st, 2);
}

/* ---- The bound ------------------------------------------------------------------------------ */

typedef struct bound {
  _Atomic int running, max_seen, done;
  int64_t nap;
  tt_wg wg;
} bound;

static intptr_t counted_fn(void *p) {
  bound *b = p;
  int n = atomic_fetch_add(&b->running, 1) + 1;
  int m = atomic_load(&b->max_seen);
  while (n > m && !atomic_compare_exchange_weak(&b->max_seen, &m, n))
    ;
  nap(b->nap);
  atomic_fetch_sub(&b->running, 1);
  atomic_fetch_add(&b->done, 1);
  return 0;
}

static void counted_caller(void *p) {
  bound *b = p;
  ASSERT_OK(tt_blocking(counted_fn, b, NULL));
  tt_wg_done(&b->wg);
}

/* n callers at once; returns the most fn ever ran at once, checking the pool's figures on the
 * way. */
static int burst(int n, int64_t napns, int max) {
  bound b = {.nap = napns, .wg = TT_WG_INIT};
  ASSERT_OK(tt_wg_add(&b.wg, n));
  for (int i = 0; i < n; i++)
    ASSERT_OK(tt_go(counted_caller, &b));
  bool saw_queue = false;
  while (tt_wg_count(&b.wg) > 0) {
    tt_blocking_stats s = stats();
    ASSERT_LE(s.threads, max);
    ASSERT_LE(s.busy, max);
    saw_queue |= s.queued > 0;
    tt_sleep(200 * TT_USEC);
  }
  ASSERT_OK(tt_wg_wait(&b.wg));
  ASSERT_EQ(atomic_load(&b.done), n);
  /* Jobs waited for a thread: seen by the sampler above, unless a sanitizer's slowness starved it
   * past the whole burst (the bound itself, max_seen <= max, is checked by the callers anyway). */
  if (n >= 4 * max && tt_test_slow() <= 1)
    ASSERT(saw_queue);
  return atomic_load(&b.max_seen);
}

static intptr_t warm_fn(void *p) {
  gate *g = p;
  atomic_fetch_add(&g->entered, 1);
  while (!atomic_load(&g->open))
    nap(100 * TT_USEC);
  return 0;
}

static void warm_caller(void *p) { ASSERT_OK(tt_blocking(warm_fn, p, NULL)); }

static void warm_pool(int n) {
  gate g = {0};
  for (int i = 0; i < n; i++)
    ASSERT_OK(tt_go(warm_caller, &g));
  await_at_least(&g.entered, n); /* n threads at once */
  atomic_store(&g.open, 1);
  tt_test_await_alone();
  ASSERT_GE(stats().threads, n);
}

static int bound_main(void *p) {
  ASSERT_EQ(stats().max, 4); /* from tt_run_opts.blocking_max */
  int m = burst(32, 5 * TT_MSEC, 4);
  ASSERT_LE(m, 4);
  ASSERT_GE(m, 2);
  /* Lowered: idle threads above the bound go at once, and no more than 2 run. */
  ASSERT_EQ(tt_blocking_set_max(2), 4);
  ASSERT_EQ(tt_blocking_set_max(0), 2); /* 0 only reads it */
  for (int64_t end = tt_now() + (int64_t)(5 * TT_SEC * tt_test_slow()); stats().threads > 2;) {
    ASSERT_LT(tt_now(), end);
    tt_sleep(TT_MSEC);
  }
  m = burst(16, 2 * TT_MSEC, 2);
  ASSERT_LE(m, 2);
  /* Raised: more run at once. */
  ASSERT_EQ(tt_blocking_set_max(8), 2);
  m = burst(32, 5 * TT_MSEC, 8);
  ASSERT_LE(m, 8);
  ASSERT_GT(m, 2);
  ASSERT_ERR(tt_blocking_set_max(-1), TT_EINVAL);
  ASSERT_ERR(tt_blocking_set_max(10001), TT_EINVAL);
  ASSERT_EQ(tt_blocking_set_max(0), 8);
  return 0;
}

TEST(blocking_pool_bound_holds) {
  tt_run_opts o = {.procs = 2, .blocking_max = 4};
  ASSERT_EQ(tt_test_run_opt(bound_main, NULL, &o), 0);
}

/* Raising the bound starts threads for the jobs already waiting. */
static void gate_caller(void *p) {
  intptr_t r = 0;
  ASSERT_OK(tt_blocking(gate_fn, p, &r));
  ASSERT_EQ(r, 42);
}

static int raise_main(void *p) {
  int max0 = stats().max;
  ASSERT_EQ(tt_blocking_set_max(1), max0);
  gate g = {0};
  bound b = {.nap = TT_MSEC, .wg = TT_WG_INIT};
  ASSERT_OK(tt_go(gate_caller, &g)); /* holds the only thread */
  await_at_least(&g.entered, 1);
  ASSERT_OK(tt_wg_add(&b.wg, 5));
  for (int i = 0; i < 5; i++)
    ASSERT_OK(tt_go(counted_caller, &b));
  tt_test_await_reason(TT_WAIT_BLOCKING_CALL, 6);
  ASSERT_EQ(stats().queued, 5);
  ASSERT_EQ(atomic_load(&b.done), 0);
  ASSERT_EQ(tt_blocking_set_max(8), 1);
  /* The waiting jobs run although the first thread is still held. */
  ASSERT_OK(tt_wg_wait(&b.wg));
  ASSERT_EQ(atomic_load(&g.left), 0);
  ASSERT_LE(stats().threads, 6);
  atomic_store(&g.open, 1);
  tt_test_await_alone();
  return 0;
}

TEST(blocking_raise_starts_waiting_jobs) { run(raise_main, NULL, 2); }

/* The bound from the environment, and the option that wins over it. */
static int max_is(void *p) {
  ASSERT_EQ(stats().max, (int)(intptr_t)p);
  return 0;
}

TEST(blocking_max_from_environment) {
  setenv("TT_BLOCKING_MAX", "3", 1);
  tt_run_opts o = {.procs = 1};
  ASSERT_EQ(tt_test_run_opt(max_is, (void *)(intptr_t)3, &o), 0);
  o.blocking_max = 5;
  ASSERT_EQ(tt_test_run_opt(max_is, (void *)(intptr_t)5, &o), 0);
  o.blocking_max = 0;
  setenv("TT_BLOCKING_MAX", "0", 1);
  ASSERT_ERR(tt_test_run_opt(max_is, NULL, &o), TT_EINVAL);
  setenv("TT_BLOCKING_MAX", "lots", 1);
  ASSERT_ERR(tt_test_run_opt(max_is, NULL, &o), TT_EINVAL);
  unsetenv("TT_BLOCKING_MAX");
  o.blocking_max = -1;
  ASSERT_ERR(tt_test_run_opt(max_is, NULL, &o), TT_EINVAL);
  o.blocking_max = 10001;
  ASSERT_ERR(tt_test_run_opt(max_is, NULL, &o), TT_EINVAL);
  o.blocking_max = 0;
  ASSERT_EQ(tt_test_run_opt(max_is, (void *)(intptr_t)64, &o), 0);
}

/* ---- Deadlines ----------------------------------------------------------------------------- */

static _Atomic int never_ran;

static intptr_t must_not_run(void *p) {
  atomic_fetch_add(&never_ran, 1);
  return 0;
}

/* The deadline passes while the job waits in the queue: it is dropped, fn never runs, and the
 * callback runs in the caller (ran 0) before the call returns. */
static int queued_deadline_main(void *p) {
  int max0 = stats().max;
  ASSERT_EQ(tt_blocking_set_max(1), max0);
  gate g = {0};
  ASSERT_OK(tt_go(gate_caller, &g));
  await_at_least(&g.entered, 1);
  abandon_rec a = {0};
  tt_blocking_opts o = {.deadline = tt_now() + 10 * TT_MSEC, .abandoned = on_abandoned};
  intptr_t r = 7;
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_blocking_opt(must_not_run, &a, &o, &r), TT_ETIMEDOUT);
  ASSERT_LE(tt_now() - t0, 10 * TT_MSEC + TOL);
  ASSERT_EQ(r, 7); /* untouched */
  ASSERT_EQ(atomic_load(&a.calls), 1);
  ASSERT_EQ(a.ran, 0);
  ASSERT_UEQ(a.self, tt_self()); /* in the caller */
  ASSERT_EQ(stats().queued, 0);  /* off the queue */
  /* A deadline already past: nothing is queued at all. */
  o.deadline = tt_now() - 1;
  ASSERT_ERR(tt_blocking_opt(must_not_run, &a, &o, &r), TT_ETIMEDOUT);
  ASSERT_EQ(atomic_load(&a.calls), 2);
  ASSERT_EQ(a.ran, 0);
  ASSERT_ERR(tt_blocking_dl(must_not_run, NULL, &r, 0), TT_ETIMEDOUT); /* absolute 0: past */
  ASSERT_ERR(tt_blocking_dl(must_not_run, NULL, &r, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  /* The thread frees up: the next job runs, and the dropped ones never do. */
  atomic_store(&g.open, 1);
  probe pr = {.v = 1};
  ASSERT_OK(tt_blocking(add_one, &pr, &r));
  ASSERT_EQ(r, 2);
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&never_ran), 0);
  ASSERT_EQ(atomic_load(&a.calls), 2);
  return 0;
}

TEST(blocking_deadline_before_fn_starts) { run(queued_deadline_main, NULL, 2); }

/* The deadline passes while fn runs: the caller returns at once; fn runs to its end on its
 * thread, which then calls the callback (ran 1, with the result). */
static gate rd_gate;
static abandon_rec rd_rec;

static void rd_abandoned(void *arg, int ran, intptr_t result) {
  ASSERT_PTR_EQ(arg, &rd_gate);
  on_abandoned(&rd_rec, ran, result);
}

static int running_deadline_main(void *p) {
  /* Long enough for the pool thread to start fn first, even under Valgrind (TT_TEST_SLOW). */
  int64_t d = 20 * TT_MSEC * (int64_t)tt_test_slow();
  tt_blocking_opts o = {.deadline = tt_now() + d, .abandoned = rd_abandoned};
  intptr_t r = 7;
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_blocking_opt(gate_fn, &rd_gate, &o, &r), TT_ETIMEDOUT);
  ASSERT_LE(tt_now() - t0, d + TOL);
  ASSERT_EQ(r, 7);
  ASSERT_EQ(atomic_load(&rd_gate.entered), 1);
  ASSERT_EQ(atomic_load(&rd_rec.calls), 0); /* fn still runs */
  ASSERT_EQ(stats().busy, 1);
  atomic_store(&rd_gate.open, 1);
  await_at_least(&rd_rec.calls, 1);
  ASSERT_EQ(rd_rec.ran, 1);
  ASSERT_EQ(rd_rec.result, 42);
  ASSERT_UEQ(rd_rec.self, 0); /* on the pool thread */
  ASSERT(!pthread_equal(rd_rec.thread, pthread_self()));
  /* Without a callback: the same, and arg (static here) must outlive fn. */
  atomic_store(&rd_gate.open, 0);
  ASSERT_ERR(tt_blocking_dl(gate_fn, &rd_gate, &r, tt_now() + d), TT_ETIMEDOUT);
  atomic_store(&rd_gate.open, 1);
  await_at_least(&rd_gate.left, 2);
  for (int64_t end = tt_now() + (int64_t)(5 * TT_SEC * tt_test_slow()); stats().busy > 0;) {
    ASSERT_LT(tt_now(), end);
    tt_sleep(100 * TT_USEC);
  }
  ASSERT_EQ(atomic_load(&rd_rec.calls), 1);
  return 0;
}

TEST(blocking_deadline_while_fn_runs) { run(running_deadline_main, NULL, 2); }

/* ---- Plain threads, and no runtime --------------------------------------------------------- */

typedef struct plain {
  int rc, rc_past, rc_null, rc_opt;
  intptr_t r;
  probe pr;
  abandon_rec a;
} plain;

static void *plain_caller(void *p) {
  plain *pl = p;
  pl->rc = tt_blocking(add_one, &pl->pr, &pl->r);
  pl->rc_past = tt_blocking_dl(must_not_run, NULL, NULL, tt_now() - 1);
  tt_blocking_opts o = {.deadline = tt_now() - 1, .abandoned = on_abandoned};
  pl->rc_opt = tt_blocking_opt(must_not_run, &pl->a, &o, NULL);
  pl->rc_null = tt_blocking(NULL, NULL, NULL);
  return NULL;
}

static int plain_main(void *p) {
  plain *pl = p;
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, plain_caller, pl), 0);
  pthread_join(th, NULL);
  ASSERT_OK(pl->rc);
  ASSERT_EQ(pl->r, 11);
  ASSERT(pthread_equal(pl->pr.thread, th)); /* ran on the calling thread itself */
  ASSERT_EQ(pl->pr.worker, -1);
  ASSERT_ERR(pl->rc_past, TT_ETIMEDOUT);
  ASSERT_ERR(pl->rc_opt, TT_ETIMEDOUT);
  ASSERT_EQ(atomic_load(&pl->a.calls), 1);
  ASSERT_EQ(pl->a.ran, 0);
  ASSERT_ERR(pl->rc_null, TT_EINVAL);
  ASSERT_EQ(atomic_load(&never_ran), 0);
  ASSERT_EQ(stats().threads, 0); /* the pool was never used */
  return 0;
}

TEST(blocking_from_plain_thread) {
  plain pl = {.pr = {.v = 10}};
  run(plain_main, &pl, 2);
}

TEST(blocking_needs_running_runtime) {
  intptr_t r = 5;
  abandon_rec a = {0};
  tt_blocking_opts o = {.abandoned = on_abandoned};
  ASSERT_ERR(tt_blocking(must_not_run, NULL, &r), TT_ENOTRUNNING);
  ASSERT_ERR(tt_blocking_dl(must_not_run, NULL, &r, TT_FOREVER), TT_ENOTRUNNING);
  ASSERT_ERR(tt_blocking_opt(must_not_run, &a, &o, &r), TT_ENOTRUNNING);
  ASSERT_EQ(atomic_load(&a.calls), 1); /* every failure but TT_EINVAL abandons the job */
  ASSERT_EQ(a.ran, 0);
  ASSERT_ERR(tt_blocking_opt(NULL, &a, &o, &r), TT_EINVAL);
  ASSERT_EQ(atomic_load(&a.calls), 1);
  ASSERT_EQ(r, 5);
  ASSERT_EQ(atomic_load(&never_ran), 0);
  ASSERT_ERR(tt_blocking_set_max(4), TT_ENOTRUNNING);
  ASSERT_ERR(tt_blocking_set_max(-4), TT_EINVAL);
  tt_blocking_stats s = {.max = 9};
  ASSERT_ERR(tt_blocking_stats_get(&s), TT_ENOTRUNNING);
  ASSERT_EQ(s.max, 0);
}

/* ---- The wait reason ------------------------------------------------------------------------ */

static int count_blocking(const tt_coro_info *ci, void *arg) {
  if (ci->wait_reason == TT_WAIT_BLOCKING_CALL && ci->wait_obj != NULL &&
      ci->state == TT_STATE_WAITING)
    ++*(int *)arg;
  return 0;
}

static int reason_main(void *p) {
  ASSERT_STR_EQ(tt_wait_reason_string(TT_WAIT_BLOCKING_CALL), "blocking call");
  gate g = {0};
  for (int i = 0; i < 3; i++)
    ASSERT_OK(tt_go(gate_caller, &g));
  tt_test_await_reason(TT_WAIT_BLOCKING_CALL, 3);
  int n = 0;
  ASSERT_OK(tt_coro_foreach(count_blocking, &n));
  ASSERT_EQ(n, 3);
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  ASSERT_EQ(c.by_reason[TT_WAIT_BLOCKING_CALL], 3);
  atomic_store(&g.open, 1);
  tt_test_await_alone();
  ASSERT_OK(tt_counts_get(&c));
  ASSERT_EQ(c.by_reason[TT_WAIT_BLOCKING_CALL], 0);
  return 0;
}

TEST(blocking_wait_reason) { run(reason_main, NULL, 2); }

/* ---- Shut-down ------------------------------------------------------------------------------ */

/* tt_run's fn returns while one job runs (its fn stuck at a gate) and another waits in the
 * queue: both callers are cancelled at once; the queued job is abandoned in its caller (ran 0),
 * never to run; tt_run waits for the running one until the end of the grace period, then
 * detaches its thread, which calls the callback (ran 1) when fn returns, after tt_run. */
static struct {
  gate g;
  abandon_rec running, queued;
  int rc_running, rc_queued;
  tt_id queued_caller;
  int64_t returned_at[2]; /* when each caller returned */
  int64_t main_returned_at;
} sd;

/* Not static: the report names it, through the dynamic symbol table. */
intptr_t sd_gate_fn(void *p);
intptr_t sd_gate_fn(void *p) { return gate_fn(&sd.g); }

static void sd_running2(void *p) {
  tt_blocking_opts o = {.abandoned = on_abandoned};
  sd.rc_running = tt_blocking_opt(sd_gate_fn, &sd.running, &o, NULL);
  sd.returned_at[0] = tt_now();
}

static void sd_queued(void *p) {
  sd.queued_caller = tt_self();
  tt_blocking_opts o = {.abandoned = on_abandoned};
  sd.rc_queued = tt_blocking_opt(must_not_run, &sd.queued, &o, NULL);
  sd.returned_at[1] = tt_now();
}

static int sd_main(void *p) {
  ASSERT_OK(tt_go(sd_running2, NULL));
  await_at_least(&sd.g.entered, 1);
  ASSERT_OK(tt_go(sd_queued, NULL));
  tt_test_await_reason(TT_WAIT_BLOCKING_CALL, 2);
  tt_blocking_stats s = stats();
  ASSERT_EQ(s.busy, 1);
  ASSERT_EQ(s.queued, 1);
  sd.main_returned_at = tt_now();
  return 3;
}

TEST(blocking_shutdown_with_queued_and_running_jobs) {
  run(result_main, NULL, 2); /* a sanitizer may start a thread of its own at first use */
  int threads = tt_test_proc_count("task");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  int64_t grace = (int64_t)(200 * TT_MSEC * tt_test_slow());
  tt_run_opts o = {.procs = 2, .grace_ns = grace, .report_fd = fds[1], .blocking_max = 1};
  ASSERT_EQ(tt_test_run_unchecked(sd_main, NULL, &o,
                                  "shut-down with tt_blocking jobs queued and running is the test"),
            3);
  int64_t took = tt_now() - sd.main_returned_at;
  close(fds[1]);
  char buf[4096];
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  ASSERT_GT(n, 0);
  buf[n] = '\0';
  /* Both callers were cancelled promptly, although the running fn never returned. */
  ASSERT_ERR(sd.rc_running, TT_ECANCELED);
  ASSERT_ERR(sd.rc_queued, TT_ECANCELED);
  ASSERT_LT(sd.returned_at[0] - sd.main_returned_at, grace / 2);
  ASSERT_LT(sd.returned_at[1] - sd.main_returned_at, grace / 2);
  /* The queued job: abandoned in its caller, never run. */
  ASSERT_EQ(atomic_load(&sd.queued.calls), 1);
  ASSERT_EQ(sd.queued.ran, 0);
  ASSERT_UEQ(sd.queued.self, sd.queued_caller);
  ASSERT_EQ(atomic_load(&never_ran), 0);
  /* The running one: waited for until the end of the grace period, no longer; reported. */
  ASSERT_GE(took, grace - 2 * TT_MSEC);
  ASSERT_LT(took, grace + (int64_t)(TT_SEC * tt_test_slow()));
  ASSERT_CONTAINS(buf, "tether: a blocking call to sd_gate_fn");
  ASSERT_CONTAINS(buf, "still running after the shut-down grace period");
  ASSERT_EQ(atomic_load(&sd.running.calls), 0);
  ASSERT(!tt_running());
  /* fn returns after the run: its detached thread abandons the job and exits. */
  atomic_store(&sd.g.open, 1);
  await_at_least(&sd.running.calls, 1);
  ASSERT_EQ(sd.running.ran, 1);
  ASSERT_EQ(sd.running.result, 42);
  for (int64_t end = tt_now() + (int64_t)(5 * TT_SEC * tt_test_slow());
       tt_test_proc_count("task") > threads;) {
    ASSERT_LT(tt_now(), end);
    nap(TT_MSEC);
  }
  ASSERT_EQ(atomic_load(&never_ran), 0);
}

/* A job that ends within the grace period is waited for and its thread joined: nothing is left
 * when tt_run returns, and nothing is reported. */
static abandon_rec quick_rec;

static intptr_t nap_50ms(void *p) {
  nap(50 * TT_MSEC);
  return 5;
}

static void quick_caller(void *p) {
  tt_blocking_opts o = {.abandoned = on_abandoned};
  ASSERT_ERR(tt_blocking_opt(nap_50ms, &quick_rec, &o, NULL), TT_ECANCELED);
}

static int quick_main(void *p) {
  ASSERT_OK(tt_go(quick_caller, NULL));
  tt_test_await_reason(TT_WAIT_BLOCKING_CALL, 1);
  for (int64_t end = tt_now() + (int64_t)(5 * TT_SEC * tt_test_slow()); stats().busy < 1;) {
    ASSERT_LT(tt_now(), end);
    tt_sleep(100 * TT_USEC);
  }
  return 0;
}

TEST(blocking_shutdown_waits_for_a_job_within_grace) {
  run(result_main, NULL, 2); /* a sanitizer may start a thread of its own at first use */
  int threads = tt_test_proc_count("task");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  tt_run_opts o = {
      .procs = 2, .grace_ns = (int64_t)(5 * TT_SEC * tt_test_slow()), .report_fd = fds[1]};
  ASSERT_EQ(tt_test_run_unchecked(
                quick_main, NULL, &o,
                "shut-down's cancellation of a coroutine inside tt_blocking is the test"),
            0);
  close(fds[1]);
  char buf[256];
  ASSERT_EQ(read(fds[0], buf, sizeof buf), 0); /* no report */
  close(fds[0]);
  ASSERT_EQ(atomic_load(&quick_rec.calls), 1); /* before tt_run returned */
  ASSERT_EQ(quick_rec.ran, 1);
  ASSERT_EQ(quick_rec.result, 5);
  ASSERT_UEQ(quick_rec.self, 0);
  for (int64_t end = tt_now() + (int64_t)(tt_test_slow() * TT_SEC);
       tt_test_proc_count("task") > threads && tt_now() < end;)
    nap(TT_MSEC);
  ASSERT_LE(tt_test_proc_count("task"), threads);
}

/* With no grace period, cancelled callers are discarded before they run again: shut-down
 * abandons their jobs for them (the queued one on the thread that called tt_run). */
static struct {
  gate g;
  abandon_rec running, queued;
} dc;

static intptr_t dc_gate_fn(void *p) { return gate_fn(&dc.g); }

static void dc_running(void *p) {
  tt_blocking_opts o = {.abandoned = on_abandoned};
  tt_blocking_opt(dc_gate_fn, &dc.running, &o, NULL);
  ASSERT(0); /* never resumed */
}

static void dc_queued(void *p) {
  tt_blocking_opts o = {.abandoned = on_abandoned};
  tt_blocking_opt(must_not_run, &dc.queued, &o, NULL);
  ASSERT(0);
}

static int dc_main(void *p) {
  ASSERT_OK(tt_go(dc_running, NULL));
  await_at_least(&dc.g.entered, 1);
  ASSERT_OK(tt_go(dc_queued, NULL));
  tt_test_await_reason(TT_WAIT_BLOCKING_CALL, 2);
  return 0;
}

TEST(blocking_shutdown_abandons_jobs_of_discarded_callers) {
  tt_run_opts o = {.procs = 1, .grace_ns = -1, .report_fd = -1, .blocking_max = 1};
  ASSERT_EQ(
      tt_test_run_unchecked(dc_main, NULL, &o,
                            "shut-down discarding callers still inside tt_blocking is the test"),
      0);
  ASSERT_EQ(atomic_load(&dc.queued.calls), 1);
  ASSERT_EQ(dc.queued.ran, 0);
  ASSERT(pthread_equal(dc.queued.thread, pthread_self())); /* by tt_run's teardown */
  ASSERT_EQ(atomic_load(&dc.running.calls), 0);
  atomic_store(&dc.g.open, 1);
  await_at_least(&dc.running.calls, 1);
  ASSERT_EQ(dc.running.ran, 1);
  ASSERT_EQ(dc.running.result, 42);
  ASSERT_EQ(atomic_load(&never_ran), 0);
  /* The pool works again in the next run. */
  run(result_main, NULL, 2);
}

/* ---- tt_run cycles that use the pool leave no threads behind ------------------------------- */

static intptr_t short_nap(void *p) {
  nap(TT_MSEC);
  return (intptr_t)p;
}

typedef struct cycle {
  tt_wg wg;
  intptr_t v;
} cycle;

static void cycle_caller(void *p) {
  cycle *c = p;
  intptr_t r = 0;
  ASSERT_OK(tt_blocking(short_nap, (void *)c->v, &r));
  ASSERT_EQ(r, c->v);
  tt_wg_done(&c->wg);
}

static int cycle_main(void *p) {
  int n = 8;
  cycle c[8];
  for (int i = 0; i < n; i++) {
    c[i] = (cycle){.wg = TT_WG_INIT, .v = i};
    ASSERT_OK(tt_wg_add(&c[i].wg, 1));
    ASSERT_OK(tt_go(cycle_caller, &c[i]));
  }
  for (int i = 0; i < n; i++)
    ASSERT_OK(tt_wg_wait(&c[i].wg));
  ASSERT_GE(stats().threads, 1);
  return 0;
}

TEST(blocking_run_cycles_leave_no_threads) {
  tt_run_opts o = {.procs = 2, .report_fd = -1};
  for (int i = 0; i < 5; i++) /* warm up, as run_restarts_without_leaking does */
    ASSERT_EQ(tt_test_run_opt(cycle_main, NULL, &o), 0);
  int threads = tt_test_proc_count("task"), fds = tt_test_proc_count("fd");
  int cycles = (int)SCALED(50, 10);
  for (int i = 0; i < cycles; i++)
    ASSERT_EQ(tt_test_run_opt(cycle_main, NULL, &o), 0);
  for (int64_t end = tt_now() + (int64_t)(tt_test_slow() * TT_SEC);
       tt_test_proc_count("task") > threads && tt_now() < end;)
    nap(TT_MSEC);
  ASSERT_LE(tt_test_proc_count("task"), threads);
  ASSERT_EQ(tt_test_proc_count("fd"), fds);
}

/* ---- Idle threads exit ---------------------------------------------------------------------- */

static int idle_main(void *p) {
  int base = tt_test_proc_count("task");
  bound b = {.nap = 5 * TT_MSEC, .wg = TT_WG_INIT};
  ASSERT_OK(tt_wg_add(&b.wg, 8));
  for (int i = 0; i < 8; i++)
    ASSERT_OK(tt_go(counted_caller, &b));
  ASSERT_OK(tt_wg_wait(&b.wg));
  ASSERT_GE(stats().threads, 2);
  /* blockingidle=20ms: they all go, and the process is back to its workers. */
  for (int64_t end = tt_now() + (int64_t)(5 * TT_SEC * tt_test_slow()); stats().threads > 0;) {
    ASSERT_LT(tt_now(), end);
    tt_sleep(TT_MSEC);
  }
  for (int64_t end = tt_now() + (int64_t)(5 * TT_SEC * tt_test_slow());
       tt_test_proc_count("task") > base;) {
    ASSERT_LT(tt_now(), end);
    tt_sleep(TT_MSEC);
  }
  /* And the pool starts threads again on demand. */
  probe pr = {.v = 1};
  intptr_t r;
  ASSERT_OK(tt_blocking(add_one, &pr, &r));
  ASSERT_EQ(r, 2);
  return 0;
}

/* Sets TT_DEBUG to what it was (a run's own settings kept) plus setting. */
static void debug_with(const char *old, const char *setting) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s%s%s", old ? old : "", old && *old ? "," : "", setting);
  setenv("TT_DEBUG", buf, 1);
}

TEST(blocking_idle_threads_exit) {
  const char *env = getenv("TT_DEBUG");
  char *old = env ? strdup(env) : NULL;
  debug_with(old, "blockingidle=20ms");
  run(idle_main, NULL, 2);
  debug_with(old, "blockingidle=0");
  ASSERT_ERR(tt_test_run_opt(idle_main, NULL, NULL), TT_EINVAL);
  debug_with(old, "blockingidle=soon");
  ASSERT_ERR(tt_test_run_opt(idle_main, NULL, NULL), TT_EINVAL);
  if (old)
    setenv("TT_DEBUG", old, 1);
  else
    unsetenv("TT_DEBUG");
  free(old);
}

/* ---- Out of memory, out of threads -------------------------------------------------------- */

enum { FAULT_ALLOC = 0, FAULT_THREAD = 2 }; /* TT__FAULT_ALLOC, TT__FAULT_THREAD */

static int fault_main(void *p) {
  abandon_rec a = {0};
  tt_blocking_opts o = {.abandoned = on_abandoned};
  /* The job's allocation. */
  tt__fault_arm(FAULT_ALLOC, 1);
  ASSERT_ERR(tt_blocking_opt(must_not_run, &a, &o, NULL), TT_ENOMEM);
  ASSERT_EQ(atomic_load(&a.calls), 1);
  ASSERT_EQ(a.ran, 0);
  /* The first thread's record. */
  tt__fault_arm(FAULT_ALLOC, 2);
  ASSERT_ERR(tt_blocking_opt(must_not_run, &a, &o, NULL), TT_ENOMEM);
  ASSERT_EQ(atomic_load(&a.calls), 2);
  /* The first thread itself. */
  tt__fault_arm(FAULT_THREAD, 1);
  ASSERT_ERR(tt_blocking_opt(must_not_run, &a, &o, NULL), TT_ENOMEM);
  ASSERT_EQ(atomic_load(&a.calls), 3);
  ASSERT_EQ(a.ran, 0);
  ASSERT_EQ(stats().threads, 0);
  ASSERT_EQ(stats().queued, 0);
  ASSERT_EQ(atomic_load(&never_ran), 0);
  /* Once a thread exists, a failure to start another only means waiting for it. */
  gate g = {0};
  ASSERT_OK(tt_go(gate_caller, &g));
  await_at_least(&g.entered, 1);
  tt__fault_arm(FAULT_THREAD, 1);
  probe pr = {.v = 1};
  tt_blocking_opts od = {.deadline = tt_now() + 20 * TT_MSEC, .abandoned = on_abandoned};
  ASSERT_ERR(tt_blocking_opt(must_not_run, &a, &od, NULL), TT_ETIMEDOUT); /* queued, then dropped */
  ASSERT_EQ(atomic_load(&a.calls), 4);
  ASSERT_EQ(a.ran, 0);
  atomic_store(&g.open, 1);
  intptr_t r;
  ASSERT_OK(tt_blocking(add_one, &pr, &r));
  ASSERT_EQ(r, 2);
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&never_ran), 0);
  return 0;
}

TEST(blocking_out_of_memory_and_threads) { run(fault_main, NULL, 1); }

/* ---- Deadlines racing completions ---------------------------------------------------------- */

/* Many calls whose deadlines fall around the time fn takes: every call either returns 0 with
 * its own result and is never abandoned, or fails and is abandoned exactly once (in the caller
 * or on the pool thread, ran 0 or 1 as it happened). */
typedef struct race_slot {
  _Atomic int abandoned;
  _Atomic int ran_fn;
  int ran;
  intptr_t result;
  int rc;
  int64_t nap;
} race_slot;

static _Atomic int race_abandoned_total;
static tt_wg race_wg = TT_WG_INIT;

static intptr_t race_fn(void *p) {
  race_slot *s = p;
  atomic_fetch_add(&s->ran_fn, 1);
  if (s->nap)
    nap(s->nap);
  return (intptr_t)s ^ 0x5a5a;
}

static void race_abandoned(void *p, int ran, intptr_t result) {
  race_slot *s = p;
  s->ran = ran;
  s->result = result;
  atomic_fetch_add(&s->abandoned, 1);
  atomic_fetch_add(&race_abandoned_total, 1);
}

static void race_caller(void *p) {
  race_slot *s = p;
  uint64_t x = (uint64_t)(uintptr_t)s * 0x9E3779B97F4A7C15ULL;
  s->nap = (int64_t)((x >> 20) % 3) * 100 * TT_USEC; /* 0, 100 or 200 us */
  tt_blocking_opts o = {.deadline = tt_now() + (int64_t)((x >> 30) % 300) * TT_USEC,
                        .abandoned = race_abandoned};
  intptr_t r = 0;
  s->rc = tt_blocking_opt(race_fn, s, &o, &r);
  if (s->rc == 0)
    ASSERT_EQ(r, (intptr_t)s ^ 0x5a5a);
  tt_wg_done(&race_wg); /* orders our writes before the checks */
}

static int race_main(void *p) {
  int n = (int)SCALED(4000, 200);
  race_slot *slots = calloc((size_t)n, sizeof *slots);
  int max0 = stats().max;
  ASSERT_EQ(tt_blocking_set_max(4), max0); /* a short queue, so that some jobs wait */
  for (int i = 0; i < n; i++) {
    ASSERT_OK(tt_wg_add(&race_wg, 1));
    ASSERT_OK(tt_go(race_caller, &slots[i]));
    if (i % 64 == 63)
      ASSERT_OK(tt_wg_wait(&race_wg));
  }
  ASSERT_OK(tt_wg_wait(&race_wg));
  int ok = 0, failed = 0;
  for (int i = 0; i < n; i++)
    failed += slots[i].rc != 0;
  /* Wait for the jobs still running to be abandoned by their threads. */
  await_at_least(&race_abandoned_total, failed);
  int in_queue = 0, after_fn = 0;
  for (int i = 0; i < n; i++) {
    race_slot *s = &slots[i];
    if (s->rc == 0) {
      ok++;
      ASSERT_EQ(atomic_load(&s->abandoned), 0);
      ASSERT_EQ(atomic_load(&s->ran_fn), 1);
      continue;
    }
    ASSERT_ERR(s->rc, TT_ETIMEDOUT);
    ASSERT_EQ(atomic_load(&s->abandoned), 1);
    ASSERT_EQ(atomic_load(&s->ran_fn), s->ran);
    if (s->ran) {
      ASSERT_EQ(s->result, (intptr_t)s ^ 0x5a5a);
      after_fn++;
    } else {
      in_queue++;
    }
  }
  ASSERT_EQ(ok + failed, n);
  ASSERT_EQ(atomic_load(&race_abandoned_total), failed);
  if (tt_test_slow() == 1) /* both ways of being abandoned happen (reported, not asserted) */
    fprintf(stderr, "%d calls: %d ok, %d dropped from the queue, %d abandoned after fn ran\n", n,
            ok, in_queue, after_fn);
  free(slots);
  return 0;
}

TEST(blocking_deadlines_race_completions) { run(race_main, NULL, 2); }
