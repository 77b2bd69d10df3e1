/* SPDX-License-Identifier: MIT */
/* Condition variables: signal, broadcast, deadlines with the mutex re-held, misuse, cancellation,
 * and the bounded buffer across workers and plain threads. */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

#define TOL (20 * TT_MSEC * (int64_t)tt_test_slow())

typedef struct cw {
  tt_mutex m;
  tt_cond c;
  int go; /* under m */
  _Atomic int woken;
  tt_wg wg;
} cw;

static void cond_waiter(void *arg) {
  cw *s = arg;
  ASSERT_OK(tt_mutex_lock(&s->m));
  ASSERT_OK(tt_cond_wait(&s->c, &s->m));
  ASSERT_EQ(tt_mutex_holder(&s->m, NULL, NULL), TT_LOCK_CORO);
  atomic_fetch_add(&s->woken, 1);
  ASSERT_OK(tt_mutex_unlock(&s->m));
  tt_wg_done(&s->wg);
}

static int count_reason(int reason) {
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  return (int)c.by_reason[reason];
}

static int signal_main(void *p) {
  cw s = {.m = TT_MUTEX_INIT, .c = TT_COND_INIT, .wg = TT_WG_INIT};
  ASSERT_OK(tt_wg_add(&s.wg, 3));
  for (int i = 0; i < 3; i++)
    ASSERT_OK(tt_go(cond_waiter, &s));
  tt_test_await_reason(TT_WAIT_COND_WAIT, 3);
  ASSERT_STR_EQ(tt_wait_reason_string(TT_WAIT_COND_WAIT), "sync.Cond.Wait");
  ASSERT_OK(tt_cond_signal(&s.c));
  while (atomic_load(&s.woken) < 1)
    tt_sleep(100 * TT_USEC);
  tt_sleep(2 * TT_MSEC);
  ASSERT_EQ(atomic_load(&s.woken), 1); /* one signal, one waiter */
  ASSERT_EQ(count_reason(TT_WAIT_COND_WAIT), 2);
  ASSERT_OK(tt_cond_broadcast(&s.c));
  ASSERT_OK(tt_wg_wait(&s.wg));
  ASSERT_EQ(atomic_load(&s.woken), 3);
  /* Nobody waits: signal and broadcast do nothing. */
  ASSERT_OK(tt_cond_signal(&s.c));
  ASSERT_OK(tt_cond_broadcast(&s.c));
  ASSERT_ERR(tt_cond_signal(NULL), TT_EINVAL);
  ASSERT_ERR(tt_cond_broadcast(NULL), TT_EINVAL);
  return 0;
}

TEST(cond_signal_wakes_one_broadcast_all) { tt_test_run(signal_main, NULL, 2); }

static void *thread_cond_dl(void *arg) {
  cw *s = arg;
  ASSERT_OK(tt_mutex_lock(&s->m));
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_cond_wait_dl(&s->c, &s->m, t0 + 3 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_GE(tt_now() - t0, 3 * TT_MSEC);
  ASSERT_EQ(tt_mutex_holder(&s->m, NULL, NULL), TT_LOCK_THREAD);
  ASSERT_OK(tt_mutex_unlock(&s->m));
  return NULL;
}

static int deadline_main(void *p) {
  cw s = {.m = TT_MUTEX_INIT, .c = TT_COND_INIT, .wg = TT_WG_INIT};
  /* Not holding the mutex. */
  ASSERT_ERR(tt_cond_wait(&s.c, &s.m), TT_EPERM);
  ASSERT_ERR(tt_cond_wait_dl(&s.c, &s.m, tt_now() + TT_MSEC), TT_EPERM);
  ASSERT_ERR(tt_cond_wait(NULL, &s.m), TT_EINVAL);
  ASSERT_ERR(tt_cond_wait(&s.c, NULL), TT_EINVAL);
  /* Times out with the mutex held again. */
  ASSERT_OK(tt_mutex_lock(&s.m));
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_cond_wait_dl(&s.c, &s.m, t0 + 5 * TT_MSEC), TT_ETIMEDOUT);
  int64_t t1 = tt_now();
  ASSERT_GE(t1 - t0, 5 * TT_MSEC);
  ASSERT_LE(t1 - t0, 5 * TT_MSEC + TOL);
  tt_id id;
  ASSERT_EQ(tt_mutex_holder(&s.m, &id, NULL), TT_LOCK_CORO);
  ASSERT_EQ(id, tt_self());
  const void *objs[2];
  uint32_t kinds[2];
  ASSERT_EQ(tt__held_self(objs, kinds, 2), 1);              /* released and retaken: listed once */
  ASSERT_ERR(tt_cond_wait_dl(&s.c, &s.m, 0), TT_ETIMEDOUT); /* past */
  ASSERT_EQ(tt_mutex_holder(&s.m, NULL, NULL), TT_LOCK_CORO);
  ASSERT_OK(tt_mutex_unlock(&s.m));
  /* A plain thread's timed wait. */
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, thread_cond_dl, &s), 0);
  pthread_join(th, NULL);
  return 0;
}

TEST(cond_wait_dl_times_out_with_mutex_held) { tt_test_run(deadline_main, NULL, 2); }

/* A timed-out waiter must take the mutex back: it waits for it (as "sync.Mutex.Lock") while
 * another holds it, and returns holding it. */
typedef struct relock {
  tt_mutex m;
  tt_cond c;
  _Atomic int released; /* the waiter released m (is in the wait) */
  _Atomic int returned;
  tt_wg wg;
} relock;

static void relock_waiter(void *arg) {
  relock *s = arg;
  ASSERT_OK(tt_mutex_lock(&s->m));
  atomic_store(&s->released, 1);
  /* Long enough for the test to take the mutex first, even on a loaded machine. */
  int64_t dl = tt_now() + 20 * TT_MSEC * (int64_t)tt_test_slow();
  ASSERT_ERR(tt_cond_wait_dl(&s->c, &s->m, dl), TT_ETIMEDOUT);
  tt_id id;
  ASSERT_EQ(tt_mutex_holder(&s->m, &id, NULL), TT_LOCK_CORO);
  ASSERT_EQ(id, tt_self());
  atomic_store(&s->returned, 1);
  ASSERT_OK(tt_mutex_unlock(&s->m));
  tt_wg_done(&s->wg);
}

static int relock_main(void *p) {
  relock s = {.m = TT_MUTEX_INIT, .c = TT_COND_INIT, .wg = TT_WG_INIT};
  ASSERT_OK(tt_wg_add(&s.wg, 1));
  ASSERT_OK(tt_go(relock_waiter, &s));
  tt_test_await_reason(TT_WAIT_COND_WAIT, 1);
  ASSERT_OK(tt_mutex_lock(&s.m));              /* free: the waiter released it */
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, 1); /* timed out, now wants the mutex back */
  ASSERT_EQ(atomic_load(&s.returned), 0);
  ASSERT_OK(tt_mutex_unlock(&s.m));
  ASSERT_OK(tt_wg_wait(&s.wg));
  ASSERT_EQ(atomic_load(&s.returned), 1);
  return 0;
}

TEST(cond_timeout_waits_to_retake_the_mutex) { tt_test_run(relock_main, NULL, 1); }

/* A signal skips a waiter whose deadline has passed and wakes the next one. */
static int64_t short_deadline;

static void short_waiter(void *arg) {
  cw *s = arg;
  ASSERT_OK(tt_mutex_lock(&s->m));
  ASSERT_ERR(tt_cond_wait_dl(&s->c, &s->m, short_deadline), TT_ETIMEDOUT);
  ASSERT_OK(tt_mutex_unlock(&s->m));
  tt_wg_done(&s->wg);
}

static int skip_main(void *p) {
  cw s = {.m = TT_MUTEX_INIT, .c = TT_COND_INIT, .wg = TT_WG_INIT};
  ASSERT_OK(tt_wg_add(&s.wg, 2));
  /* Long enough for the second waiter to queue behind it, even under a sanitizer. */
  short_deadline = tt_now() + 20 * TT_MSEC * (int64_t)tt_test_slow();
  ASSERT_OK(tt_go(short_waiter, &s));
  tt_test_await_reason(TT_WAIT_COND_WAIT, 1);
  ASSERT_OK(tt_go(cond_waiter, &s));
  tt_test_await_reason(TT_WAIT_COND_WAIT, 2);
  while (count_reason(TT_WAIT_COND_WAIT) > 1) /* the first times out */
    tt_sleep(100 * TT_USEC);
  ASSERT_OK(tt_cond_signal(&s.c));
  ASSERT_OK(tt_wg_wait(&s.wg));
  ASSERT_EQ(atomic_load(&s.woken), 1);
  return 0;
}

TEST(cond_signal_skips_timed_out_waiter) { tt_test_run(skip_main, NULL, 2); }

/* Shut-down cancels a waiter, which returns TT_ECANCELED holding the mutex. */
static tt_mutex cancel_m = TT_MUTEX_INIT;
static tt_cond cancel_c = TT_COND_INIT;

static void cancelled_waiter(void *arg) {
  ASSERT_OK(tt_mutex_lock(&cancel_m));
  ASSERT_ERR(tt_cond_wait(&cancel_c, &cancel_m), TT_ECANCELED);
  tt_id id;
  ASSERT_EQ(tt_mutex_holder(&cancel_m, &id, NULL), TT_LOCK_CORO);
  ASSERT_EQ(id, tt_self());
  ASSERT_OK(tt_mutex_unlock(&cancel_m));
}

static int cancel_main(void *p) {
  ASSERT_OK(tt_go(cancelled_waiter, NULL));
  tt_test_await_reason(TT_WAIT_COND_WAIT, 1);
  return 0;
}

TEST(cond_cancelled_waiter_gets_mutex_back) {
  ASSERT_OK(tt_test_run_unchecked(cancel_main, NULL, &(tt_run_opts){.procs = 2},
                                  "the test is shut-down's cancellation of a condition waiter"));
  ASSERT_EQ(tt_mutex_holder(&cancel_m, NULL, NULL), TT_LOCK_FREE);
}

/* ---- the bounded buffer -------------------------------------------------------------------- */

#define BB_CAP 8

typedef struct bb {
  tt_mutex m;
  tt_cond notfull, notempty;
  int64_t buf[BB_CAP];
  int head, len;
  int64_t per_producer, nprod;
  int64_t sum, got; /* consumers' totals, under m */
  tt_wg wg;
  _Atomic int threads_done;
} bb;

static void bb_put(bb *b, int64_t v) {
  ASSERT_OK(tt_mutex_lock(&b->m));
  while (b->len == BB_CAP)
    ASSERT_OK(tt_cond_wait(&b->notfull, &b->m));
  b->buf[(b->head + b->len) % BB_CAP] = v;
  b->len++;
  ASSERT_OK(tt_cond_signal(&b->notempty));
  ASSERT_OK(tt_mutex_unlock(&b->m));
}

/* Takes one value; false once every value has been taken. */
static bool bb_get(bb *b) {
  ASSERT_OK(tt_mutex_lock(&b->m));
  while (b->len == 0 && b->got < b->nprod * b->per_producer)
    ASSERT_OK(tt_cond_wait(&b->notempty, &b->m));
  if (b->len == 0) {
    ASSERT_OK(tt_mutex_unlock(&b->m));
    return false;
  }
  b->sum += b->buf[b->head];
  b->head = (b->head + 1) % BB_CAP;
  b->len--;
  b->got++;
  if (b->got == b->nprod * b->per_producer)
    ASSERT_OK(tt_cond_broadcast(&b->notempty)); /* the end: release the other consumers */
  ASSERT_OK(tt_cond_signal(&b->notfull));
  ASSERT_OK(tt_mutex_unlock(&b->m));
  return true;
}

static void bb_producer(void *arg) {
  bb *b = arg;
  for (int64_t i = 1; i <= b->per_producer; i++)
    bb_put(b, i);
  tt_wg_done(&b->wg);
}

static void bb_consumer(void *arg) {
  bb *b = arg;
  while (bb_get(b))
    ;
  tt_wg_done(&b->wg);
}

static void *bb_thread_producer(void *arg) {
  bb *b = arg;
  for (int64_t i = 1; i <= b->per_producer; i++)
    bb_put(b, i);
  atomic_fetch_add(&b->threads_done, 1);
  return NULL;
}

static void *bb_thread_consumer(void *arg) {
  bb *b = arg;
  while (bb_get(b))
    ;
  atomic_fetch_add(&b->threads_done, 1);
  return NULL;
}

static int bb_main(void *p) {
  bb b = {.m = TT_MUTEX_INIT,
          .notfull = TT_COND_INIT,
          .notempty = TT_COND_INIT,
          .wg = TT_WG_INIT,
          .per_producer = SCALED(5000, 200)};
  int ncp = 4, ncc = 4; /* coroutines */
  b.nprod = ncp + 1;    /* and a thread */
  ASSERT_OK(tt_wg_add(&b.wg, ncp + ncc));
  for (int i = 0; i < ncc; i++)
    ASSERT_OK(tt_go(bb_consumer, &b));
  for (int i = 0; i < ncp; i++)
    ASSERT_OK(tt_go(bb_producer, &b));
  pthread_t tp, tc;
  ASSERT_EQ(pthread_create(&tp, NULL, bb_thread_producer, &b), 0);
  ASSERT_EQ(pthread_create(&tc, NULL, bb_thread_consumer, &b), 0);
  ASSERT_OK(tt_wg_wait(&b.wg));
  while (atomic_load(&b.threads_done) < 2)
    tt_sleep(100 * TT_USEC);
  pthread_join(tp, NULL);
  pthread_join(tc, NULL);
  ASSERT_EQ(b.got, b.nprod * b.per_producer);
  ASSERT_EQ(b.sum, b.nprod * (b.per_producer * (b.per_producer + 1) / 2));
  ASSERT_EQ(b.len, 0);
  return 0;
}

TEST(cond_bounded_buffer_across_workers) { tt_test_run(bb_main, NULL, 2); }
