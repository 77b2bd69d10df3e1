/* SPDX-License-Identifier: MIT */
/* A randomized stress of the scheduler: coroutines and plain threads yield, sleep, spawn, wait on
 * and signal shared wait groups with and without deadlines, on several workers, and the run ends
 * with some of them still blocked for the shut-down to cancel. Checks that nothing is lost or
 * woken twice (every wait group reaches its expected state), that the counts stay consistent, and
 * (under TSan and ASan) that nothing races or leaks. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "test.h"

#define NWG 8

struct world {
  tt_wg wgs[NWG]; /* counters that only go up and down by matched pairs */
  tt_wg finished; /* one per actor */
  tt_wg stuck;    /* never reaches zero; must outlive the run (see tt_run) */
  _Atomic int64_t ops;
  _Atomic int64_t spawned;
  uint64_t seed;
  int64_t budget; /* coroutines that may still be spawned */
  _Atomic int64_t budget_used;
};

struct actor {
  struct world *w;
  uint64_t rng;
};

static uint64_t next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void act(struct actor *a, int rounds, bool plain);

static void coro_actor(void *p) {
  struct actor *a = p;
  act(a, 40, false);
  tt_wg_done(&a->w->finished);
  free(a);
}

static void spawn_actor(struct world *w, uint64_t seed) {
  if (atomic_fetch_add(&w->budget_used, 1) >= w->budget)
    return;
  struct actor *c = malloc(sizeof *c);
  c->w = w;
  c->rng = seed | 1;
  tt_wg_add(&w->finished, 1);
  if (tt_go(coro_actor, c) != 0) {
    tt_wg_done(&w->finished);
    free(c);
    return;
  }
  atomic_fetch_add(&w->spawned, 1);
}

static void act(struct actor *a, int rounds, bool plain) {
  struct world *w = a->w;
  for (int i = 0; i < rounds; i++) {
    uint64_t r = next(&a->rng);
    tt_wg *g = &w->wgs[r % NWG];
    switch ((r >> 8) % 7) {
    case 0:
      tt_yield();
      break;
    case 1:
      tt_sleep((int64_t)((r >> 16) % 50) * TT_USEC);
      break;
    case 2: /* a matched add/done pair around a yield: the counter returns to where it was */
      tt_wg_add(g, 1);
      tt_yield();
      tt_wg_done(g);
      break;
    case 3: { /* a bounded wait: done, timed out, cancelled at shut-down — never anything else */
      int rc = tt_wg_wait_dl(g, tt_now() + (int64_t)((r >> 16) % 200) * TT_USEC);
      if (rc != 0 && rc != TT_ETIMEDOUT && rc != TT_ECANCELED && rc != TT_ESHUTDOWN)
        abort();
      break;
    }
    case 4:
      if (!plain)
        spawn_actor(w, r);
      break;
    case 5: { /* a short busy stretch, no yield */
      int64_t end = tt_now() + (int64_t)((r >> 16) % 20) * TT_USEC;
      while (tt_now() < end)
        ;
      break;
    }
    case 6:
      if (plain)
        spawn_actor(w, r); /* plain threads spawn too */
      else
        tt_yield();
      break;
    }
    atomic_fetch_add(&w->ops, 1);
  }
}

struct plain_arg {
  struct world *w;
  uint64_t seed;
};

static void *plain_actor(void *p) {
  struct plain_arg *pa = p;
  struct actor a = {pa->w, pa->seed | 1};
  act(&a, 200, true);
  return NULL;
}

static void never_returns(void *p) {
  /* Blocked for good: the shut-down cancels it. */
  tt_wg_wait(p);
}

static int stress_main(void *p) {
  struct world *w = p;
  tt_wg_add(&w->stuck, 1);
  for (int i = 0; i < 5; i++)
    ASSERT_OK(tt_go(never_returns, &w->stuck));
  pthread_t th[2];
  struct plain_arg pa[2];
  for (int i = 0; i < 2; i++) {
    pa[i] = (struct plain_arg){w, w->seed * 7 + (uint64_t)i};
    ASSERT_EQ(pthread_create(&th[i], NULL, plain_actor, &pa[i]), 0);
  }
  for (int i = 0; i < 20; i++)
    spawn_actor(w, w->seed * 31 + (uint64_t)i);
  ASSERT_OK(tt_wg_wait(&w->finished));
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  /* Every add was matched by a done: each counter is back to zero. */
  for (int i = 0; i < NWG; i++)
    ASSERT_EQ(tt_wg_count(&w->wgs[i]), 0);
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  ASSERT_EQ(c.total, c.by_state[0] + c.by_state[1] + c.by_state[2]);
  ASSERT_GE(c.total, 1 + 5);
  return 0;
}

static void stress(int procs, uint64_t seed) {
  struct world *w = calloc(1, sizeof *w);
  w->seed = seed;
  w->budget = SCALED(3000, 200);
  tt_run_opts o = {.procs = procs, .seed = seed, .grace_ns = 50 * TT_MSEC, .report_fd = -1};
  ASSERT_EQ(
      tt_test_run_unchecked(stress_main, w, &o,
                            "the random program leaves coroutines blocked for shut-down to cancel"),
      0);
  ASSERT_GT(atomic_load(&w->ops), 0);
  free(w);
}

TEST(stress_random_two_workers) {
  for (uint64_t seed = 1; seed <= 6; seed++)
    stress(2, seed);
}

TEST(stress_random_four_workers) {
  for (uint64_t seed = 11; seed <= 14; seed++)
    stress(4, seed);
}

TEST(stress_random_one_worker) {
  for (uint64_t seed = 21; seed <= 24; seed++)
    stress(1, seed);
}

/* The scan protocol under fire: coroutines rename and relabel themselves (freeing the old
 * strings) between yields and sleeps, while a plain thread and a coroutine walk the registry
 * reading every name and label. A reader that looked at a coroutine while it ran would read
 * freed memory (ASan) or race (TSan), and the states it reports must be the suspended ones. */
struct churn {
  _Atomic int stop;
  _Atomic int64_t seen;
  tt_wg done;
};

static void renamer(void *p) {
  struct churn *c = p;
  uint64_t r = (uint64_t)tt_self() * 0x9E3779B97F4A7C15ULL | 1;
  char buf[32];
  while (!atomic_load(&c->stop)) {
    snprintf(buf, sizeof buf, "n%llu", (unsigned long long)(next(&r) % 1000));
    tt_name_set(buf);
    tt_label_set("k", buf + 1);
    if (next(&r) % 3 == 0)
      tt_sleep((int64_t)(next(&r) % 10) * TT_USEC);
    else
      tt_yield();
  }
  tt_wg_done(&c->done);
}

static int check_info(const tt_coro_info *ci, void *p) {
  struct churn *c = p;
  size_t n = ci->name ? strlen(ci->name) : 0;
  for (size_t i = 0; i < ci->nlabels; i++)
    n += strlen(ci->labels[i].key) + strlen(ci->labels[i].value);
  if (ci->state != TT_STATE_RUNNING && ci->state != TT_STATE_RUNNABLE &&
      ci->state != TT_STATE_WAITING)
    abort();
  atomic_fetch_add(&c->seen, (int64_t)(n > 0));
  return 0;
}

/* The scanners walk without pause, to give a broken protocol every chance to show. (A walk holds
 * each suspended coroutine still for a moment, so this is no way to run a profiler; under
 * Valgrind it needs --fair-sched=yes, or the walking thread keeps the one CPU.) */
static void *scanner_thread(void *p) {
  struct churn *c = p;
  while (!atomic_load(&c->stop))
    if (tt_coro_foreach(check_info, c) != 0)
      abort();
  return NULL;
}

static void scanner_coro(void *p) {
  struct churn *c = p;
  while (!atomic_load(&c->stop)) {
    ASSERT_OK(tt_coro_foreach(check_info, c));
    tt_yield();
  }
  tt_wg_done(&c->done);
}

static int churn_main(void *p) {
  struct churn *c = p;
  int n = (int)SCALED(200, 20);
  tt_wg_add(&c->done, n + 1);
  for (int i = 0; i < n; i++)
    ASSERT_OK(tt_go(renamer, c));
  ASSERT_OK(tt_go(scanner_coro, c));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, scanner_thread, c), 0);
  tt_sleep((int64_t)(300 * TT_MSEC));
  atomic_store(&c->stop, 1);
  pthread_join(th, NULL);
  ASSERT_OK(tt_wg_wait(&c->done));
  ASSERT_GT(atomic_load(&c->seen), 0);
  return 0;
}

TEST(stress_scan_while_coroutines_change) {
  struct churn c = {0};
  tt_test_run(churn_main, &c, 2);
}
