/* SPDX-License-Identifier: MIT */
/* Once and weighted semaphores. */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

static int count_reason(int reason) {
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  return (int)c.by_reason[reason];
}

/* ---- once ------------------------------------------------------------------------------------ */

typedef struct oncet {
  tt_once o;
  _Atomic int runs;
  int64_t value; /* written by fn only, non-atomically */
  tt_wg wg;
  _Atomic int threads_done;
} oncet;

static _Atomic int once_go;

static void once_fn(void *arg) {
  oncet *t = arg;
  atomic_fetch_add(&t->runs, 1);
  while (!atomic_load(&once_go)) /* until the others wait */
    tt_sleep(100 * TT_USEC);
  t->value = 42;
}

static void once_caller(void *arg) {
  oncet *t = arg;
  ASSERT_OK(tt_once_do(&t->o, once_fn, t));
  ASSERT_EQ(t->value, 42);
  ASSERT_EQ(tt_once_done(&t->o), 1);
  tt_wg_done(&t->wg);
}

static void *once_thread(void *arg) {
  oncet *t = arg;
  ASSERT_OK(tt_once_do(&t->o, once_fn, t));
  ASSERT_EQ(t->value, 42);
  atomic_fetch_add(&t->threads_done, 1);
  return NULL;
}

static int once_main(void *p) {
  oncet t = {.o = TT_ONCE_INIT, .wg = TT_WG_INIT};
  ASSERT_EQ(tt_once_done(&t.o), 0);
  int n = 50;
  ASSERT_OK(tt_wg_add(&t.wg, n));
  for (int i = 0; i < n; i++)
    ASSERT_OK(tt_go(once_caller, &t));
  tt_test_await_reason(TT_WAIT_ONCE_DO, n - 1); /* fn runs in one, the others wait */
  ASSERT_STR_EQ(tt_wait_reason_string(TT_WAIT_ONCE_DO), "sync.Once.Do");
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    ASSERT_EQ(pthread_create(&th[i], NULL, once_thread, &t), 0);
  tt_sleep(TT_MSEC);
  atomic_store(&once_go, 1);
  ASSERT_OK(tt_wg_wait(&t.wg));
  while (atomic_load(&t.threads_done) < 2)
    tt_sleep(100 * TT_USEC);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  ASSERT_EQ(atomic_load(&t.runs), 1);
  ASSERT_OK(tt_once_do(&t.o, once_fn, &t)); /* done: returns at once */
  ASSERT_EQ(atomic_load(&t.runs), 1);
  return 0;
}

TEST(once_runs_fn_once_among_concurrent_callers) { tt_test_run(once_main, NULL, 2); }

static tt_once rec_once = TT_ONCE_INIT;
static int rec_result = 1;

static void recursive_fn(void *arg) { rec_result = tt_once_do(&rec_once, recursive_fn, NULL); }

static void noop(void *arg) {}

TEST(once_misuse) {
  /* Works without the runtime (nothing waits). */
  tt_once o;
  tt_once_init(&o);
  ASSERT_OK(tt_once_do(&o, noop, NULL));
  ASSERT_EQ(tt_once_done(&o), 1);
  ASSERT_ERR(tt_once_do(NULL, noop, NULL), TT_EINVAL);
  ASSERT_ERR(tt_once_do(&o, NULL, NULL), TT_EINVAL);
  ASSERT_ERR(tt_once_done(NULL), TT_EINVAL);
  tt_once_init(NULL);
  /* fn calling its own once: TT_EDEADLK, and the once is done afterwards. */
  ASSERT_OK(tt_once_do(&rec_once, recursive_fn, NULL));
  ASSERT_ERR(rec_result, TT_EDEADLK);
  ASSERT_EQ(tt_once_done(&rec_once), 1);
}

/* A waiter cancelled (by shut-down) while fn runs returns TT_ECANCELED; fn finishes and the once
 * is done. */
static tt_once cancel_once = TT_ONCE_INIT;
static tt_chan *cancel_ch;
static _Atomic int cancel_waiter_result = 1;

static void blocking_fn(void *arg) {
  int v;
  /* Blocks until shut-down cancels it. */
  ASSERT_ERR(tt_chan_recv(cancel_ch, &v, NULL), TT_ECANCELED);
}

static void once_runner(void *arg) { ASSERT_OK(tt_once_do(&cancel_once, blocking_fn, NULL)); }

static void once_waiter(void *arg) {
  atomic_store(&cancel_waiter_result, tt_once_do(&cancel_once, blocking_fn, NULL));
}

static int once_cancel_main(void *p) {
  tt_chan_opts o = {.mode = TT_CHAN_UNTRACKED};
  ASSERT_OK(tt_chan_make_opt(&cancel_ch, sizeof(int), 0, &o));
  ASSERT_OK(tt_go(once_runner, NULL));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_go(once_waiter, NULL));
  tt_test_await_reason(TT_WAIT_ONCE_DO, 1);
  ASSERT_EQ(tt_once_done(&cancel_once), 0);
  return 0;
}

TEST(once_cancelled_waiter_leaves_the_once_intact) {
  ASSERT_OK(tt_test_run_unchecked(once_cancel_main, NULL, &(tt_run_opts){.procs = 2},
                                  "the test is shut-down's cancellation of a tt_once_do waiter"));
  ASSERT_EQ(atomic_load(&cancel_waiter_result), TT_ECANCELED);
  ASSERT_EQ(tt_once_done(&cancel_once), 1);
  tt_chan_release(cancel_ch);
}

/* ---- semaphores ---------------------------------------------------------------------------- */

static int weights_main(void *p) {
  tt_sem s = TT_SEM_INIT(10);
  ASSERT_EQ(tt_sem_held(&s), 0);
  ASSERT_OK(tt_sem_acquire(&s, 3));
  ASSERT_OK(tt_sem_acquire(&s, 7));
  ASSERT_EQ(tt_sem_held(&s), 10);
  ASSERT_ERR(tt_sem_try_acquire(&s, 1), TT_EBUSY);
  ASSERT_OK(tt_sem_try_acquire(&s, 0));
  ASSERT_OK(tt_sem_release(&s, 3));
  ASSERT_OK(tt_sem_try_acquire(&s, 3));
  ASSERT_ERR(tt_sem_acquire_dl(&s, 1, tt_now() + 2 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_ERR(tt_sem_acquire_dl(&s, 1, 0), TT_ETIMEDOUT);
  ASSERT_OK(tt_sem_release(&s, 10));
  ASSERT_EQ(tt_sem_held(&s), 0);
  ASSERT_OK(tt_sem_acquire_dl(&s, 10, 0)); /* available: a past deadline does not matter */
  ASSERT_OK(tt_sem_release(&s, 10));
  /* Misuse. */
  ASSERT_ERR(tt_sem_acquire(&s, 11), TT_EINVAL); /* more than the capacity: never */
  ASSERT_ERR(tt_sem_try_acquire(&s, 11), TT_EINVAL);
  ASSERT_ERR(tt_sem_acquire(&s, -1), TT_EINVAL);
  ASSERT_ERR(tt_sem_release(&s, -1), TT_EINVAL);
  ASSERT_ERR(tt_sem_release(&s, 1), TT_EPERM); /* more than held */
  ASSERT_OK(tt_sem_acquire(&s, 4));
  ASSERT_ERR(tt_sem_release(&s, 5), TT_EPERM);
  ASSERT_EQ(tt_sem_held(&s), 4); /* unchanged */
  ASSERT_OK(tt_sem_release(&s, 4));
  ASSERT_ERR(tt_sem_acquire(NULL, 1), TT_EINVAL);
  ASSERT_ERR(tt_sem_acquire_dl(NULL, 1, 0), TT_EINVAL);
  ASSERT_ERR(tt_sem_try_acquire(NULL, 1), TT_EINVAL);
  ASSERT_ERR(tt_sem_release(NULL, 1), TT_EINVAL);
  ASSERT_ERR(tt_sem_held(NULL), TT_EINVAL);
  ASSERT_ERR(tt_sem_init(NULL, 1), TT_EINVAL);
  tt_sem z;
  ASSERT_ERR(tt_sem_init(&z, 0), TT_EINVAL);
  memset(&z, 0, sizeof z); /* no capacity */
  ASSERT_ERR(tt_sem_acquire(&z, 1), TT_EINVAL);
  ASSERT_OK(tt_sem_init(&z, 2));
  ASSERT_OK(tt_sem_acquire(&z, 2));
  ASSERT_OK(tt_sem_release(&z, 2));
  return 0;
}

TEST(sem_weights_try_deadline_and_misuse) { tt_test_run(weights_main, NULL, 2); }

typedef struct semw {
  tt_sem *s;
  int64_t k, deadline;
  _Atomic int result; /* 1 until it returns */
  tt_wg *wg;
} semw;

static void sem_waiter(void *arg) {
  semw *w = arg;
  atomic_store(&w->result, tt_sem_acquire_dl(w->s, w->k, w->deadline));
  tt_wg_done(w->wg);
}

/* FIFO: a large request at the head holds back a small one that would fit. */
static int fifo_main(void *p) {
  tt_sem s = TT_SEM_INIT(10);
  tt_wg wg = TT_WG_INIT;
  semw big = {&s, 8, TT_FOREVER, 1, &wg};
  semw small = {&s, 1, TT_FOREVER, 1, &wg};
  ASSERT_OK(tt_sem_acquire(&s, 10));
  ASSERT_OK(tt_wg_add(&wg, 2));
  ASSERT_OK(tt_go(sem_waiter, &big));
  tt_test_await_reason(TT_WAIT_SEMACQUIRE, 1);
  ASSERT_STR_EQ(tt_wait_reason_string(TT_WAIT_SEMACQUIRE), "semacquire");
  ASSERT_OK(tt_go(sem_waiter, &small));
  tt_test_await_reason(TT_WAIT_SEMACQUIRE, 2);
  ASSERT_OK(tt_sem_release(&s, 2)); /* 2 free: the small one would fit, but waits its turn */
  tt_sleep(2 * TT_MSEC);
  ASSERT_EQ(count_reason(TT_WAIT_SEMACQUIRE), 2);
  ASSERT_EQ(atomic_load(&big.result), 1);
  ASSERT_EQ(atomic_load(&small.result), 1);
  ASSERT_ERR(tt_sem_try_acquire(&s, 1), TT_EBUSY); /* nor may a newcomer barge in */
  ASSERT_OK(tt_sem_release(&s, 6)); /* 8 free: the big one, and nothing left for the small */
  while (atomic_load(&big.result) == 1)
    tt_sleep(100 * TT_USEC);
  ASSERT_OK(atomic_load(&big.result));
  tt_sleep(2 * TT_MSEC);
  ASSERT_EQ(atomic_load(&small.result), 1);
  ASSERT_EQ(tt_sem_held(&s), 10);
  ASSERT_OK(tt_sem_release(&s, 1));
  ASSERT_OK(tt_wg_wait(&wg));
  ASSERT_OK(atomic_load(&small.result));
  ASSERT_EQ(tt_sem_held(&s), 10);
  ASSERT_OK(tt_sem_release(&s, 10));
  return 0;
}

TEST(sem_fifo_head_of_line_blocking) { tt_test_run(fifo_main, NULL, 1); }

/* The head gives up: the waiters behind it that fit are served. */
static int head_leaves_main(void *p) {
  tt_sem s = TT_SEM_INIT(10);
  tt_wg wg = TT_WG_INIT;
  semw big = {&s, 8, tt_now() + 20 * TT_MSEC * (int64_t)tt_test_slow(), 1, &wg};
  semw small = {&s, 1, TT_FOREVER, 1, &wg};
  ASSERT_OK(tt_sem_acquire(&s, 10));
  ASSERT_OK(tt_wg_add(&wg, 2));
  ASSERT_OK(tt_go(sem_waiter, &big));
  tt_test_await_reason(TT_WAIT_SEMACQUIRE, 1);
  ASSERT_OK(tt_go(sem_waiter, &small));
  tt_test_await_reason(TT_WAIT_SEMACQUIRE, 2);
  ASSERT_OK(tt_sem_release(&s, 2));
  ASSERT_OK(tt_wg_wait(&wg)); /* big times out, and small gets in */
  ASSERT_ERR(atomic_load(&big.result), TT_ETIMEDOUT);
  ASSERT_OK(atomic_load(&small.result));
  ASSERT_EQ(tt_sem_held(&s), 9);
  ASSERT_OK(tt_sem_release(&s, 9));
  return 0;
}

TEST(sem_head_timing_out_serves_the_rest) { tt_test_run(head_leaves_main, NULL, 2); }

/* ---- stress: a limiter across workers and threads ----------------------------------------------
 */

typedef struct semstress {
  tt_sem s;
  _Atomic int64_t in_use;
  int64_t iters;
  tt_wg wg;
  _Atomic int threads_done;
} semstress;

static void sem_ops(semstress *t, uint64_t seed) {
  for (int64_t i = 0; i < t->iters; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    int64_t k = 1 + (int64_t)(seed >> 62); /* 1..4 */
    int op = (int)(seed >> 58) & 3;
    int r = op == 0   ? tt_sem_try_acquire(&t->s, k)
            : op == 1 ? tt_sem_acquire_dl(&t->s, k, tt_now() + (int64_t)(seed >> 40 & 0xff) * 1000)
                      : tt_sem_acquire(&t->s, k);
    if (r == TT_EBUSY || r == TT_ETIMEDOUT)
      continue;
    ASSERT_OK(r);
    int64_t now = atomic_fetch_add(&t->in_use, k) + k;
    ASSERT_LE(now, 5);
    if ((seed >> 20 & 7) == 0)
      tt_yield();
    atomic_fetch_sub(&t->in_use, k);
    ASSERT_OK(tt_sem_release(&t->s, k));
  }
}

static void sem_stress_coro(void *arg) {
  semstress *t = arg;
  sem_ops(t, (uint64_t)tt_self() * 0x9e3779b97f4a7c15ULL);
  tt_wg_done(&t->wg);
}

static void *sem_stress_thread(void *arg) {
  semstress *t = arg;
  sem_ops(t, (uint64_t)(uintptr_t)&arg);
  atomic_fetch_add(&t->threads_done, 1);
  return NULL;
}

static int sem_stress_main(void *p) {
  semstress t = {.s = TT_SEM_INIT(5), .wg = TT_WG_INIT, .iters = SCALED(3000, 200)};
  int nco = (int)SCALED(64, 8);
  ASSERT_OK(tt_wg_add(&t.wg, nco));
  for (int i = 0; i < nco; i++)
    ASSERT_OK(tt_go(sem_stress_coro, &t));
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    ASSERT_EQ(pthread_create(&th[i], NULL, sem_stress_thread, &t), 0);
  ASSERT_OK(tt_wg_wait(&t.wg));
  while (atomic_load(&t.threads_done) < 2)
    tt_sleep(100 * TT_USEC);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  ASSERT_EQ(tt_sem_held(&t.s), 0);
  return 0;
}

TEST(sem_stress_random_ops) { tt_test_run(sem_stress_main, NULL, 2); }
