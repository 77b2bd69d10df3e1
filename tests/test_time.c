/* SPDX-License-Identifier: MIT */
/* Time: tt_now, sleeping (coroutines and plain threads), deadlines, many sleepers. */
#include <pthread.h>
#include <stdatomic.h>

#include <string.h>

#include "test.h"

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int accuracy_main(void *p) {
  int64_t over[21];
  for (int i = 0; i < 21; i++) {
    int64_t t0 = tt_now();
    ASSERT_OK(tt_sleep(200 * TT_USEC));
    int64_t d = tt_now() - t0;
    ASSERT_GE(d, 200 * TT_USEC);
    over[i] = d - 200 * TT_USEC;
  }
  qsort(over, 21, sizeof over[0], cmp64);
  printf("sleep(200us) overshoot: median %lld ns, max %lld ns\n", (long long)over[10],
         (long long)over[20]);
  /* Sub-millisecond accuracy. */
  ASSERT_LT(over[10], (int64_t)(500 * TT_USEC * tt_test_slow()));
  return 0;
}

TEST(sleep_is_sub_millisecond_accurate) { tt_test_run(accuracy_main, NULL, 2); }

static int edges_main(void *p) {
  int64_t a = tt_now(), b = tt_now();
  ASSERT_LE(a, b);
  ASSERT_OK(tt_sleep(0));
  ASSERT_OK(tt_sleep(-5));
  int64_t t0 = tt_now();
  ASSERT_OK(tt_sleep_until(t0 - TT_SEC));
  ASSERT_OK(tt_sleep_until(0));
  ASSERT_LT(tt_now() - t0, 50 * TT_MSEC * (int64_t)tt_test_slow());
  return 0;
}

TEST(sleep_edge_cases) { tt_test_run(edges_main, NULL, 1); }

struct order {
  int log[16];
  _Atomic int n;
};

static struct order ord;
static int64_t base;
static tt_wg started = TT_WG_INIT, go_on = TT_WG_INIT;

static void sleep_n(void *p) {
  intptr_t k = (intptr_t)p;
  tt_wg_done(&started);
  tt_wg_wait(&go_on); /* base is set once every sleeper is here */
  ASSERT_OK(tt_sleep_until(base + (int64_t)k * 3 * TT_MSEC));
  ord.log[atomic_fetch_add(&ord.n, 1)] = (int)k;
}

/* Starts the five sleepers (deadlines out of spawn order) and sets their common base. */
static void start_sleepers(void) {
  int ks[] = {5, 1, 4, 2, 3};
  memset(&ord, 0, sizeof ord);
  tt_wg_add(&started, 5);
  tt_wg_add(&go_on, 1);
  for (int i = 0; i < 5; i++)
    ASSERT_OK(tt_go(sleep_n, (void *)(intptr_t)ks[i]));
  ASSERT_OK(tt_wg_wait(&started));
  /* A common base, set when all are ready and far enough out that each is asleep before the
   * first deadline: deadlines, not start times, decide the order. */
  base = tt_now() + (int64_t)(20 * TT_MSEC * tt_test_slow());
  tt_wg_done(&go_on);
}

/* Waits for the five and checks they ran in deadline order. */
static void check_order(void) {
  while (atomic_load(&ord.n) < 5)
    tt_sleep(TT_MSEC);
  for (int i = 0; i < 5; i++)
    ASSERT_EQ(ord.log[i], i + 1);
}

static int order_main(void *p) {
  start_sleepers();
  check_order();
  return 0;
}

TEST(timers_fire_in_deadline_order) { tt_test_run(order_main, NULL, 1); }

/* The same when the worker is busy past every deadline, so that all five are due in one batch:
 * they must still run in deadline order (the batch's wakes queue behind each other, rather than
 * each taking the run-next slot from the one before). */
static int batch_main(void *p) {
  start_sleepers();
  tt_yield(); /* let them go to sleep */
  while (tt_now() < base + 6 * 3 * TT_MSEC)
    ; /* busy, never yielding: every deadline passes */
  check_order();
  return 0;
}

TEST(timers_due_together_run_in_deadline_order) { tt_test_run(batch_main, NULL, 1); }

static void many_sleep(void *p) {
  ASSERT_OK(tt_sleep(10 * TT_MSEC));
  tt_wg_done(p);
}

static int many_main(void *p) {
  int64_t n = SCALED(100000, 500);
  tt_wg wg = TT_WG_INIT;
  tt_wg_add(&wg, n);
  int64_t t0 = tt_now();
  for (int64_t i = 0; i < n; i++)
    ASSERT_OK(tt_go(many_sleep, &wg));
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  ASSERT_OK(tt_wg_wait(&wg));
  int64_t took = tt_now() - t0;
  printf("%lld coroutines slept 10 ms each in %.1f ms\n", (long long)n, (double)took / 1e6);
  ASSERT_LT(took, (int64_t)(5 * TT_SEC * tt_test_slow()));
  return 0;
}

TEST(hundred_thousand_sleepers) { tt_test_run(many_main, NULL, 0); }

static int deadline_main(void *p) {
  tt_wg wg = TT_WG_INIT;
  tt_wg_add(&wg, 1);
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_wg_wait_dl(&wg, t0 + 20 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_GE(tt_now() - t0, 20 * TT_MSEC);
  /* A deadline already past times out at once, without blocking. */
  ASSERT_ERR(tt_wg_wait_dl(&wg, t0), TT_ETIMEDOUT);
  /* The timed-out waiters left the queue: the wait group still works. */
  ASSERT_OK(tt_wg_done(&wg));
  ASSERT_OK(tt_wg_wait_dl(&wg, tt_now() + TT_SEC));
  return 0;
}

TEST(wait_group_deadline) { tt_test_run(deadline_main, NULL, 2); }

static void *plain_sleeper(void *p) {
  int64_t t0 = tt_now();
  int r = tt_sleep(30 * TT_MSEC);
  *(int64_t *)p = r == 0 ? tt_now() - t0 : -1;
  return NULL;
}

static int plain_sleep_main(void *p) {
  int64_t took = 0;
  pthread_t th;
  pthread_create(&th, NULL, plain_sleeper, &took);
  pthread_join(th, NULL);
  ASSERT_GE(took, 30 * TT_MSEC);
  ASSERT_LT(took, (int64_t)(200 * TT_MSEC * tt_test_slow()));
  return 0;
}

TEST(plain_thread_sleeps) { tt_test_run(plain_sleep_main, NULL, 1); }

/* A Wait that returns may free the wait group at once, while the Done that released it is still
 * returning (Go's rule; ASan catches a Done that touches the group afterwards). */
static void done_and_go(void *p) { tt_wg_done(p); }

static int wg_free_main(void *p) {
  for (int i = 0; i < SCALED(20000, 200); i++) {
    tt_wg *wg = malloc(sizeof *wg);
    tt_wg_init(wg);
    ASSERT_OK(tt_wg_add(wg, 2));
    ASSERT_OK(tt_go(done_and_go, wg));
    ASSERT_OK(tt_go(done_and_go, wg));
    if (i % 2)
      tt_yield();
    ASSERT_OK(tt_wg_wait(wg));
    free(wg);
  }
  tt_wg wg = TT_WG_INIT;
  ASSERT_ERR(tt_wg_add(&wg, (int64_t)1 << 31), TT_EINVAL);
  ASSERT_OK(tt_wg_add(&wg, INT32_MAX));
  ASSERT_ERR(tt_wg_add(&wg, 1), TT_EINVAL);
  ASSERT_EQ(tt_wg_count(&wg), INT32_MAX);
  ASSERT_OK(tt_wg_add(&wg, -(int64_t)INT32_MAX));
  ASSERT_ERR(tt_wg_add(&wg, -1), TT_EINVAL);
  return 0;
}

TEST(wait_group_freed_right_after_wait) { tt_test_run(wg_free_main, NULL, 0); }
