/* SPDX-License-Identifier: MIT */
/* The watchdog (tether/watchdog.h): a busy loop, a read() on a pipe called directly and a sleep
 * loop that ignores its cancelled context are each reported once, with the right stack; a
 * well-behaved busy program is not; an idle process does not wake it. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

/* Internal hooks (src/watchdog/watchdog.c). */
uint64_t tt__watchdog_wakeups(void);
uint64_t tt__watchdog_samples(void);

/* ---- What the callback saw ----------------------------------------------------------------- */

#define MAXREP 16

typedef struct seen {
  tt_watchdog_kind kind;
  tt_id id, parent;
  char name[64];
  bool has_name;
  int worker;
  int64_t duration;
  uint64_t wakes;
  const void *create_pc;
  uintptr_t stack[TT_WATCHDOG_MAX_STACK];
  size_t nstack;
} seen;

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static seen reps[MAXREP];
static _Atomic int nreps;
static _Atomic tt_id wake_on_report; /* the callback writes to unblock_fd for this coroutine */
static int unblock_fd = -1;

static void on_report(const tt_watchdog_report *r, void *arg) {
  ASSERT(arg == &nreps);
  pthread_mutex_lock(&seen_lock);
  int i = atomic_load(&nreps);
  if (i < MAXREP) {
    seen *s = &reps[i];
    s->kind = r->kind;
    s->id = r->id;
    s->parent = r->parent;
    s->has_name = r->name != NULL;
    snprintf(s->name, sizeof s->name, "%s", r->name ? r->name : "");
    s->worker = r->worker;
    s->duration = r->duration;
    s->wakes = r->wakes;
    s->create_pc = r->create_pc;
    s->nstack = r->nstack;
    memcpy(s->stack, r->stack, r->nstack * sizeof *r->stack);
    atomic_store(&nreps, i + 1);
  }
  pthread_mutex_unlock(&seen_lock);
  if (unblock_fd >= 0 && r->id == atomic_load(&wake_on_report))
    ASSERT_EQ(write(unblock_fd, "x", 1), 1);
}

/* Reports about coroutine id of the given kind (0: any). */
static int reports_for(tt_id id, int kind) {
  int n = 0;
  for (int i = 0; i < atomic_load(&nreps); i++)
    n += reps[i].id == id && (kind == 0 || (int)reps[i].kind == kind);
  return n;
}

static const seen *report_for(tt_id id, int kind) {
  for (int i = 0; i < atomic_load(&nreps); i++)
    if (reps[i].id == id && (int)reps[i].kind == kind)
      return &reps[i];
  return NULL;
}

/* Whether the stack has a frame in the function whose exported name contains `name`. */
static bool stack_has(const seen *s, const char *name) {
  for (size_t i = 0; i < s->nstack; i++) {
    Dl_info di;
    if (dladdr((void *)(s->stack[i] - 1), &di) && di.dli_sname && strstr(di.dli_sname, name))
      return true;
  }
  return false;
}

static int64_t th(void) { return (int64_t)(50 * TT_MSEC * tt_test_slow()); }

/* A temporary file for the log (tt_run_opts.report_fd), read back at the end. */
static int log_open(void) {
  char path[] = "/tmp/tt-watchdog-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  unlink(path);
  return fd;
}

static char *log_read(int fd) {
  off_t n = lseek(fd, 0, SEEK_END);
  ASSERT(n >= 0);
  char *s = malloc((size_t)n + 1);
  ASSERT(s != NULL);
  ASSERT_EQ(pread(fd, s, (size_t)n, 0), n);
  s[n] = '\0';
  return s;
}

/* ---- A busy loop ---------------------------------------------------------------------------- */

static _Atomic tt_id busy_id;
static _Atomic bool busy_wants_report = true;

/* Spins for `ns` and at least until a report about the caller arrived (capped): exported, so
 * that dladdr names it in the reported stack. */
__attribute__((noinline)) void tt_test_wd_busy_loop(int64_t ns);
__attribute__((noinline)) void tt_test_wd_busy_loop(int64_t ns) {
  int64_t t0 = tt_now(), cap = t0 + (int64_t)(10 * TT_SEC * tt_test_slow());
  volatile uint64_t x = 0;
  /* Mostly plain arithmetic, the clock and the reports (a lock) only now and then: under TSan a
   * signal that arrives in an intercepted call is delivered from inside the sanitizer's runtime,
   * whose frames the captured stack may not get through. */
  for (;;) {
    x++;
    if ((x & 4095) != 0)
      continue;
    if (tt_now() >= cap || (tt_now() >= t0 + ns &&
                            !(atomic_load(&busy_wants_report) && reports_for(tt_self(), 0) == 0)))
      break;
  }
}

static void busy(void *wg) {
  atomic_store(&busy_id, tt_self());
  tt_test_wd_busy_loop(5 * th()); /* five thresholds: still one report */
  tt_wg_done(wg);
}

static int busy_main(void *p) {
  (void)p;
  tt_watchdog_counts c0, c1;
  ASSERT_OK(tt_watchdog_counts_get(&c0));
  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_wg_add(&wg, 1));
  tt_go_opts o = {.name = "spinner"};
  tt_id id;
  ASSERT_OK(tt_go_opt(busy, &wg, &o, &id));
  ASSERT_OK(tt_wg_wait(&wg));
  ASSERT_EQ(atomic_load(&busy_id), id);
  ASSERT_EQ(reports_for(id, 0), 1); /* once per episode */
  const seen *s = report_for(id, TT_WATCHDOG_LONG_RUN);
  ASSERT(s != NULL);
  ASSERT_EQ(s->parent, tt_self());
  ASSERT(s->has_name);
  ASSERT_STR_EQ(s->name, "spinner");
  ASSERT(s->worker >= 0 && s->worker < tt_procs());
  ASSERT_GE(s->duration, th());
  ASSERT_EQ(s->wakes, 0);
  ASSERT(s->create_pc != NULL);
  ASSERT(s->nstack > 0);
  ASSERT(stack_has(s, "tt_test_wd_busy_loop"));
  ASSERT_OK(tt_watchdog_counts_get(&c1));
  ASSERT_UEQ(c1.long_run, c0.long_run + 1);
  ASSERT_UEQ(c1.blocking_syscall, c0.blocking_syscall);
  return 0;
}

TEST(watchdog_reports_busy_loop_once) {
  ASSERT_OK(tt_watchdog_set_threshold(th()));
  ASSERT_OK(tt_watchdog_set_callback(on_report, &nreps));
  int fd = log_open();
  tt_run_opts o = {.procs = 2, .report_fd = fd};
  ASSERT_EQ(tt_test_run_opt(busy_main, NULL, &o), 0);
  char *log = log_read(fd);
  char want[128];
  snprintf(want, sizeof want, "tether: watchdog: coroutine %llu \"spinner\" has run ",
           (unsigned long long)atomic_load(&busy_id));
  ASSERT_CONTAINS(log, want);
  ASSERT_CONTAINS(log, "ms without yielding");
  ASSERT_CONTAINS(log, "[running]:\n");
  ASSERT_CONTAINS(log, "tt_test_wd_busy_loop");
  ASSERT_CONTAINS(log, "created by ");
  free(log);
  close(fd);
}

/* ---- A blocking read() called directly ------------------------------------------------------ */

static _Atomic int read_result = -2;
static _Atomic int read_errno;
static _Atomic bool reader_done;

struct rd {
  tt_wg *wg;
  int fd;
};

static void pipe_reader(void *p) {
  struct rd *r = p;
  atomic_store(&wake_on_report, tt_self());
  char c;
  ssize_t n = read(r->fd, &c, 1); /* blocks the worker: what the watchdog must see */
  atomic_store(&read_errno, n < 0 ? errno : 0);
  atomic_store(&read_result, (int)n);
  atomic_store(&reader_done, true);
  tt_wg_done(r->wg);
}

/* Unblocks the reader if the watchdog never does (the test then fails on its assertions). */
static void *rescuer(void *p) {
  int fd = *(int *)p;
  int64_t end = tt_now() + (int64_t)(10 * TT_SEC * tt_test_slow());
  while (!atomic_load(&reader_done) && tt_now() < end)
    usleep(10000);
  if (!atomic_load(&reader_done))
    ASSERT_EQ(write(fd, "y", 1), 1);
  return NULL;
}

static int read_main(void *p) {
  int *fds = p;
  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_wg_add(&wg, 1));
  struct rd r = {&wg, fds[0]};
  tt_id id;
  ASSERT_OK(tt_go_opt(pipe_reader, &r, NULL, &id));
  ASSERT_OK(tt_wg_wait(&wg));
  /* The capture's signal interrupted read(), which SA_RESTART restarted: it read the byte the
   * callback wrote. */
  ASSERT_EQ(atomic_load(&read_result), 1);
  ASSERT_EQ(reports_for(id, 0), 1);
  const seen *s = report_for(id, TT_WATCHDOG_BLOCKING_SYSCALL);
  ASSERT(s != NULL);
  ASSERT_GE(s->duration, th());
  ASSERT(!s->has_name);
  ASSERT(stack_has(s, "read"));
  ASSERT(stack_has(s, "pipe_reader") || s->nstack > 1);
  tt_watchdog_counts c;
  ASSERT_OK(tt_watchdog_counts_get(&c));
  ASSERT_UEQ(c.blocking_syscall, 1);
  return 0;
}

TEST(watchdog_reports_blocking_read) {
#if defined(__SANITIZE_THREAD__)
  /* TSan holds an asynchronous signal back until the interrupted call returns, so the capture
   * of a worker inside read() times out and the run is not reported (docs/DIAGNOSTICS.md). */
  printf("skipped: the capture signal is deferred under TSan\n");
  return;
#endif
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  unblock_fd = fds[1];
  ASSERT_OK(tt_watchdog_set_threshold(th()));
  ASSERT_OK(tt_watchdog_set_callback(on_report, &nreps));
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, rescuer, &fds[1]), 0);
  int fd = log_open();
  tt_run_opts o = {.procs = 2, .report_fd = fd};
  ASSERT_EQ(tt_test_run_opt(read_main, fds, &o), 0);
  pthread_join(t, NULL);
  char *log = log_read(fd);
  ASSERT_CONTAINS(log, "has been in a blocking system call for ");
  ASSERT_CONTAINS(log, "read");
  free(log);
  close(fd);
  close(fds[0]);
  close(fds[1]);
}

/* ---- A sleep loop that ignores its cancelled context ---------------------------------------- */

static _Atomic tt_id stubborn_id;
static _Atomic bool stubborn_stop;

/* for { select { case <-time.After(...) } } with the context ignored. */
__attribute__((noinline)) void tt_test_wd_ignore_cancel(void);
__attribute__((noinline)) void tt_test_wd_ignore_cancel(void) {
  int64_t cap = tt_now() + (int64_t)(10 * TT_SEC * tt_test_slow());
  while (!atomic_load(&stubborn_stop) && tt_now() < cap) {
    (void)tt_sleep(5 * TT_MSEC); /* TT_ECANCELED, ignored */
    if (reports_for(tt_self(), TT_WATCHDOG_IGNORES_CANCEL))
      atomic_store(&stubborn_stop, true);
  }
}

static void stubborn(void *wg) {
  atomic_store(&stubborn_id, tt_self());
  tt_test_wd_ignore_cancel();
  tt_wg_done(wg);
}

static int cancel_main(void *p) {
  (void)p;
  tt_ctx *ctx;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &ctx));
  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_wg_add(&wg, 1));
  tt_go_opts o = {.name = "stubborn", .ctx = ctx};
  tt_id id;
  ASSERT_OK(tt_go_opt(stubborn, &wg, &o, &id));
  tt_test_await_reason(TT_WAIT_SLEEP, 1);
  ASSERT_OK(tt_sleep(3 * th())); /* many wakes before the cancel: no report */
  ASSERT_EQ(reports_for(id, 0), 0);
  int64_t t0 = tt_now();
  ASSERT_OK(tt_ctx_cancel(ctx));
  ASSERT_OK(tt_wg_wait(&wg));
  ASSERT_EQ(reports_for(id, 0), 1); /* not also as a long run */
  const seen *s = report_for(id, TT_WATCHDOG_IGNORES_CANCEL);
  ASSERT(s != NULL);
  ASSERT_STR_EQ(s->name, "stubborn");
  ASSERT_GE(s->wakes, TT_WATCHDOG_CANCEL_WAKES);
  ASSERT_GE(s->duration, th());
  ASSERT_LE(s->duration, tt_now() - t0);
  ASSERT(stack_has(s, "tt_test_wd_ignore_cancel"));
  tt_ctx_release(ctx);
  return 0;
}

TEST(watchdog_reports_ignored_cancellation) {
  ASSERT_OK(tt_watchdog_set_threshold(th()));
  ASSERT_OK(tt_watchdog_set_callback(on_report, &nreps));
  int fd = log_open();
  tt_run_opts o = {.procs = 2, .report_fd = fd};
  ASSERT_EQ(tt_test_run_opt(cancel_main, NULL, &o), 0);
  char *log = log_read(fd);
  ASSERT_CONTAINS(log, "\"stubborn\" ignores its cancellation");
  ASSERT_CONTAINS(log, "tt_test_wd_ignore_cancel");
  free(log);
  close(fd);
}

/* ---- A well-behaved busy program ------------------------------------------------------------ */

struct quiet {
  tt_wg *wg;
  int64_t until;
  tt_chan *ping, *pong;
};

static void yielder(void *p) {
  struct quiet *q = p;
  volatile uint64_t x = 0;
  while (tt_now() < q->until) {
    for (int i = 0; i < 1000; i++)
      x++;
    ASSERT_OK(tt_yield());
  }
  tt_wg_done(q->wg);
}

static void napper(void *p) {
  struct quiet *q = p;
  while (tt_now() < q->until)
    ASSERT_OK(tt_sleep(TT_MSEC));
  tt_wg_done(q->wg);
}

static void pinger(void *p) {
  struct quiet *q = p;
  int v = 1;
  while (tt_now() < q->until) {
    ASSERT_OK(tt_chan_send(q->ping, &v));
    ASSERT_OK(tt_chan_recv(q->pong, &v, NULL));
  }
  v = 0;
  ASSERT_OK(tt_chan_send(q->ping, &v));
  tt_wg_done(q->wg);
}

static void ponger(void *p) {
  struct quiet *q = p;
  for (int v = 1; v;) {
    ASSERT_OK(tt_chan_recv(q->ping, &v, NULL));
    if (v)
      ASSERT_OK(tt_chan_send(q->pong, &v));
  }
  tt_wg_done(q->wg);
}

static int quiet_main(void *p) {
  (void)p;
  tt_wg wg = TT_WG_INIT;
  struct quiet q = {&wg, tt_now() + TT_SEC, NULL, NULL};
  tt_chan_opts co = {.mode = TT_CHAN_UNTRACKED};
  ASSERT_OK(tt_chan_make_opt(&q.ping, sizeof(int), 0, &co));
  ASSERT_OK(tt_chan_make_opt(&q.pong, sizeof(int), 0, &co));
  int n = 0;
  for (int i = 0; i < 8; i++, n++)
    ASSERT_OK(tt_go(yielder, &q));
  for (int i = 0; i < 8; i++, n++)
    ASSERT_OK(tt_go(napper, &q));
  ASSERT_OK(tt_go(pinger, &q));
  ASSERT_OK(tt_go(ponger, &q));
  n += 2;
  ASSERT_OK(tt_wg_add(&wg, n));
  /* A coroutine alone on its worker that yields: tt_yield has nothing to switch to. */
  volatile uint64_t x = 0;
  while (tt_now() < q.until - 500 * TT_MSEC) {
    x++;
    if ((x & 1023) == 0)
      ASSERT_OK(tt_yield());
  }
  ASSERT_OK(tt_wg_wait(&wg));
  ASSERT_GT(tt__watchdog_samples(), 10); /* it did look */
  ASSERT_EQ(atomic_load(&nreps), 0);
  tt_chan_release(q.ping);
  tt_chan_release(q.pong);
  return 0;
}

TEST(watchdog_quiet_on_well_behaved_busy_program) {
  ASSERT_OK(tt_watchdog_set_threshold(th()));
  ASSERT_OK(tt_watchdog_set_callback(on_report, &nreps));
  tt_run_opts o = {.procs = 2};
  ASSERT_EQ(tt_test_run_opt(quiet_main, NULL, &o), 0);
  tt_watchdog_counts c;
  ASSERT_OK(tt_watchdog_counts_get(&c));
  ASSERT_UEQ(c.long_run + c.blocking_syscall + c.ignores_cancel, 0);
}

/* ---- An idle process does not wake it ------------------------------------------------------- */

static void idler(void *wg) { ASSERT_OK(tt_wg_wait(wg)); }

struct spin {
  int64_t ns;
  tt_wg wg;
};

static void spin_for(void *p) {
  struct spin *sp = p;
  int64_t until = tt_now() + sp->ns;
  volatile uint64_t x = 0;
  while (tt_now() < until)
    x++;
  ASSERT_OK(tt_wg_done(&sp->wg));
}

static int idle_main(void *p) {
  (void)p;
  tt_wg gate = TT_WG_INIT;
  ASSERT_OK(tt_wg_add(&gate, 1));
  for (int i = 0; i < 10; i++)
    ASSERT_OK(tt_go(idler, &gate));
  ASSERT_OK(tt_sleep(50 * TT_MSEC));
  uint64_t w0 = tt__watchdog_wakeups(), s0 = tt__watchdog_samples();
  ASSERT_OK(tt_sleep(500 * TT_MSEC));
  uint64_t w1 = tt__watchdog_wakeups(), s1 = tt__watchdog_samples();
  printf("idle half second: %" PRIu64 " wake-ups, %" PRIu64 " samples\n", w1 - w0, s1 - s0);
  /* At most the wake-ups of our own two timers (the one before w0 may be counted after it), and
   * a sample or two around them: a watchdog that kept sampling would have made fifty. */
  ASSERT_LE(w1 - w0, 2);
  ASSERT_LE(s1 - s0, 3);
  /* Positive control: a busy worker is sampled every 10 ms. */
  struct spin sp = {200 * TT_MSEC, TT_WG_INIT};
  ASSERT_OK(tt_wg_add(&sp.wg, 1));
  ASSERT_OK(tt_go(spin_for, &sp));
  ASSERT_OK(tt_wg_wait(&sp.wg));
  ASSERT_OK(tt_wg_done(&gate));
  tt_test_await_alone();
  uint64_t s2 = tt__watchdog_samples();
  printf("busy fifth of a second: %" PRIu64 " samples\n", s2 - s1);
  ASSERT_GE(s2 - s1, 5);
  return 0;
}

TEST(watchdog_idle_process_does_not_wake_it) {
  ASSERT_OK(tt_watchdog_set_threshold(TT_SEC)); /* the spinner below is not to be reported */
  tt_run_opts o = {.procs = 2};
  ASSERT_EQ(tt_test_run_opt(idle_main, NULL, &o), 0);
}

/* ---- Settings -------------------------------------------------------------------------------- */

static int64_t seen_threshold;
static int read_threshold(void *p) {
  (void)p;
  seen_threshold = tt_watchdog_threshold();
  return 0;
}

static int off_main(void *p) {
  (void)p;
  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_wg_add(&wg, 1));
  atomic_store(&busy_wants_report, false);
  ASSERT_OK(tt_go(busy, &wg)); /* spins 5 thresholds */
  ASSERT_OK(tt_wg_wait(&wg));
  ASSERT_EQ(atomic_load(&nreps), 0);
  return 0;
}

TEST(watchdog_threshold_settings) {
  ASSERT_EQ(tt_watchdog_threshold(), TT_WATCHDOG_DEFAULT_THRESHOLD);
  ASSERT_ERR(tt_watchdog_counts_get(NULL), TT_EINVAL);
  ASSERT_STR_EQ(tt_watchdog_kind_string(TT_WATCHDOG_LONG_RUN), "long_run");
  ASSERT_STR_EQ(tt_watchdog_kind_string(TT_WATCHDOG_BLOCKING_SYSCALL), "blocking_syscall");
  ASSERT_STR_EQ(tt_watchdog_kind_string(TT_WATCHDOG_IGNORES_CANCEL), "ignores_cancel");
  ASSERT_STR_EQ(tt_watchdog_kind_string(99), "unknown");
  /* The knob, while no threshold is set in code. */
  tt_run_opts o = {.procs = 1};
  setenv("TT_DEBUG", "grace=1s,watchdog=250ms", 1);
  ASSERT_EQ(tt_test_run_opt(read_threshold, NULL, &o), 0);
  ASSERT_EQ(seen_threshold, 250 * TT_MSEC);
  setenv("TT_DEBUG", "watchdog=off", 1);
  ASSERT_EQ(tt_test_run_opt(read_threshold, NULL, &o), 0);
  ASSERT_EQ(seen_threshold, 0);
  setenv("TT_DEBUG", "watchdog=0", 1);
  ASSERT_EQ(tt_test_run_opt(read_threshold, NULL, &o), 0);
  ASSERT_EQ(seen_threshold, 0);
  setenv("TT_DEBUG", "watchdog=soon", 1);
  ASSERT_EQ(tt_run(read_threshold, NULL, &o), TT_EINVAL);
  unsetenv("TT_DEBUG");
  ASSERT_EQ(tt_test_run_opt(read_threshold, NULL, &o), 0);
  ASSERT_EQ(seen_threshold, TT_WATCHDOG_DEFAULT_THRESHOLD);
  /* Set in code: it wins over the knob. */
  ASSERT_ERR(tt_watchdog_set_threshold(-1), TT_EINVAL);
  ASSERT_OK(tt_watchdog_set_threshold(70 * TT_MSEC));
  setenv("TT_DEBUG", "watchdog=250ms", 1);
  ASSERT_EQ(tt_test_run_opt(read_threshold, NULL, &o), 0);
  ASSERT_EQ(seen_threshold, 70 * TT_MSEC);
  unsetenv("TT_DEBUG");
  /* Off: a busy loop of five (old) thresholds is not reported. */
  ASSERT_OK(tt_watchdog_set_threshold(0));
  ASSERT_EQ(tt_watchdog_threshold(), 0);
  ASSERT_OK(tt_watchdog_set_callback(on_report, &nreps));
  tt_run_opts o2 = {.procs = 2, .report_fd = -1};
  ASSERT_EQ(tt_test_run_opt(off_main, NULL, &o2), 0);
  ASSERT_OK(tt_watchdog_set_callback(NULL, NULL));
}
