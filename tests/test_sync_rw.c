/* SPDX-License-Identifier: MIT */
/* Reader/writer mutexes: shared readers, writer exclusion, writer preference, deadlines, misuse,
 * holders that exit, and a random stress. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

static int count_reason(int reason) {
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  return (int)c.by_reason[reason];
}

/* ---- many readers at once ------------------------------------------------------------------ */

typedef struct readers {
  tt_rwmutex rw;
  _Atomic int inside;
  int n;
  tt_wg wg;
  _Atomic int thread_done;
} readers;

/* Holds a read lock until every reader holds one: exclusive readers would never get there. */
static void reader_hold(readers *r) {
  ASSERT_OK(tt_rwmutex_rlock(&r->rw));
  atomic_fetch_add(&r->inside, 1);
  while (atomic_load(&r->inside) < r->n) {
    if (tt_self())
      tt_sleep(50 * TT_USEC);
    else
      usleep(50);
  }
  ASSERT_GE(tt_rwmutex_readers(&r->rw), 1);
  ASSERT_OK(tt_rwmutex_runlock(&r->rw));
}

static void reader_coro(void *arg) {
  readers *r = arg;
  reader_hold(r);
  tt_wg_done(&r->wg);
}

static void *reader_thread(void *arg) {
  readers *r = arg;
  reader_hold(r);
  atomic_store(&r->thread_done, 1);
  return NULL;
}

static int readers_main(void *p) {
  readers r = {.rw = TT_RWMUTEX_INIT, .wg = TT_WG_INIT, .n = 33};
  ASSERT_OK(tt_wg_add(&r.wg, r.n - 1));
  for (int i = 0; i < r.n - 1; i++)
    ASSERT_OK(tt_go(reader_coro, &r));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, reader_thread, &r), 0);
  ASSERT_OK(tt_wg_wait(&r.wg));
  while (!atomic_load(&r.thread_done))
    tt_sleep(100 * TT_USEC);
  pthread_join(th, NULL);
  ASSERT_EQ(tt_rwmutex_readers(&r.rw), 0);
  ASSERT_OK(tt_rwmutex_lock(&r.rw)); /* free again */
  ASSERT_OK(tt_rwmutex_unlock(&r.rw));
  return 0;
}

TEST(rwmutex_many_readers_at_once) { tt_test_run(readers_main, NULL, 2); }

/* ---- writer preference ---------------------------------------------------------------------- */

typedef struct pref {
  tt_rwmutex rw;
  int order[2], norder; /* who got in, in order: 1 writer, 2 reader (under rw) */
  tt_wg wg;
} pref;

static void pref_writer(void *arg) {
  pref *p = arg;
  ASSERT_OK(tt_rwmutex_lock(&p->rw));
  p->order[p->norder++] = 1;
  ASSERT_OK(tt_rwmutex_unlock(&p->rw));
  tt_wg_done(&p->wg);
}

static void pref_reader(void *arg) {
  pref *p = arg;
  ASSERT_OK(tt_rwmutex_rlock(&p->rw));
  int n = __atomic_fetch_add(&p->norder, 1, __ATOMIC_RELAXED); /* readers may share */
  p->order[n] = 2;
  ASSERT_OK(tt_rwmutex_runlock(&p->rw));
  tt_wg_done(&p->wg);
}

static int pref_main(void *arg) {
  pref p = {.rw = TT_RWMUTEX_INIT, .wg = TT_WG_INIT};
  ASSERT_OK(tt_rwmutex_rlock(&p.rw));
  ASSERT_OK(tt_wg_add(&p.wg, 2));
  ASSERT_OK(tt_go(pref_writer, &p));
  tt_test_await_reason(TT_WAIT_RWMUTEX_LOCK, 1);
  ASSERT_STR_EQ(tt_wait_reason_string(TT_WAIT_RWMUTEX_LOCK), "sync.RWMutex.Lock");
  /* A reader arriving after the waiting writer waits, although only readers hold the lock. */
  ASSERT_OK(tt_go(pref_reader, &p));
  tt_test_await_reason(TT_WAIT_RWMUTEX_RLOCK, 1);
  ASSERT_STR_EQ(tt_wait_reason_string(TT_WAIT_RWMUTEX_RLOCK), "sync.RWMutex.RLock");
  ASSERT_ERR(tt_rwmutex_tryrlock(&p.rw), TT_EBUSY);
  /* So does a recursive read lock: the deadlock Go has too (here it times out). */
  ASSERT_ERR(tt_rwmutex_rlock_dl(&p.rw, tt_now() + 2 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_EQ(tt_rwmutex_readers(&p.rw), 1);
  ASSERT_OK(tt_rwmutex_runlock(&p.rw)); /* the writer first, then the reader */
  ASSERT_OK(tt_wg_wait(&p.wg));
  ASSERT_EQ(p.norder, 2);
  ASSERT_EQ(p.order[0], 1);
  ASSERT_EQ(p.order[1], 2);
  return 0;
}

TEST(rwmutex_waiting_writer_blocks_new_readers) { tt_test_run(pref_main, NULL, 2); }

/* After a writer, the readers waiting then go before the next writer (Go's alternation). */
static int alternate_main(void *arg) {
  pref p = {.rw = TT_RWMUTEX_INIT, .wg = TT_WG_INIT};
  ASSERT_OK(tt_rwmutex_lock(&p.rw));
  ASSERT_OK(tt_wg_add(&p.wg, 2));
  ASSERT_OK(tt_go(pref_reader, &p));
  tt_test_await_reason(TT_WAIT_RWMUTEX_RLOCK, 1);
  ASSERT_OK(tt_go(pref_writer, &p));
  tt_test_await_reason(TT_WAIT_RWMUTEX_LOCK, 1);
  ASSERT_OK(tt_rwmutex_unlock(&p.rw));
  ASSERT_OK(tt_wg_wait(&p.wg));
  ASSERT_EQ(p.order[0], 2);
  ASSERT_EQ(p.order[1], 1);
  return 0;
}

TEST(rwmutex_writer_unlock_lets_waiting_readers_first) { tt_test_run(alternate_main, NULL, 2); }

/* ---- deadlines --------------------------------------------------------------------------------
 */

typedef struct dlw {
  tt_rwmutex rw;
  int64_t deadline;
  int result;
  _Atomic int reader_in;
  tt_wg wg;
} dlw;

static void timed_writer(void *arg) {
  dlw *d = arg;
  d->result = tt_rwmutex_lock_dl(&d->rw, d->deadline);
  tt_wg_done(&d->wg);
}

static void blocked_reader(void *arg) {
  dlw *d = arg;
  ASSERT_OK(tt_rwmutex_rlock(&d->rw));
  atomic_store(&d->reader_in, 1);
  ASSERT_OK(tt_rwmutex_runlock(&d->rw));
  tt_wg_done(&d->wg);
}

static void *thread_rlock_dl(void *arg) {
  tt_rwmutex *rw = arg;
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_rwmutex_rlock_dl(rw, t0 + 3 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_GE(tt_now() - t0, 3 * TT_MSEC);
  return NULL;
}

static int deadline_main(void *arg) {
  dlw d = {.rw = TT_RWMUTEX_INIT, .wg = TT_WG_INIT};
  /* Held for writing: both modes time out elsewhere. */
  ASSERT_OK(tt_rwmutex_lock(&d.rw));
  d.deadline = tt_now() + 3 * TT_MSEC;
  ASSERT_OK(tt_wg_add(&d.wg, 1));
  ASSERT_OK(tt_go(timed_writer, &d));
  ASSERT_OK(tt_wg_wait(&d.wg));
  ASSERT_ERR(d.result, TT_ETIMEDOUT);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, thread_rlock_dl, &d.rw), 0);
  pthread_join(th, NULL);
  ASSERT_OK(tt_rwmutex_unlock(&d.rw));
  ASSERT_OK(tt_rwmutex_rlock_dl(&d.rw, tt_now() + TT_SEC));
  /* A writer that gives up lets in the readers it held back. */
  d.deadline = tt_now() + 10 * TT_MSEC * (int64_t)tt_test_slow();
  ASSERT_OK(tt_wg_add(&d.wg, 2));
  ASSERT_OK(tt_go(timed_writer, &d));
  tt_test_await_reason(TT_WAIT_RWMUTEX_LOCK, 1);
  ASSERT_OK(tt_go(blocked_reader, &d));
  tt_test_await_reason(TT_WAIT_RWMUTEX_RLOCK, 1);
  while (!atomic_load(&d.reader_in)) /* while we still hold our read lock */
    tt_sleep(100 * TT_USEC);
  ASSERT_OK(tt_wg_wait(&d.wg));
  ASSERT_ERR(d.result, TT_ETIMEDOUT);
  ASSERT_EQ(count_reason(TT_WAIT_RWMUTEX_LOCK), 0);
  ASSERT_OK(tt_rwmutex_runlock(&d.rw));
  ASSERT_OK(tt_rwmutex_lock_dl(&d.rw, 0)); /* free: a past deadline does not matter */
  ASSERT_OK(tt_rwmutex_unlock(&d.rw));
  return 0;
}

TEST(rwmutex_deadlines_and_a_writer_giving_up) { tt_test_run(deadline_main, NULL, 2); }

/* ---- misuse ---------------------------------------------------------------------------------- */

typedef struct rwop {
  tt_rwmutex *rw;
  int (*op)(tt_rwmutex *);
  int result;
  tt_wg wg;
} rwop;

static void rwop_coro(void *arg) {
  rwop *o = arg;
  o->result = o->op(o->rw);
  tt_wg_done(&o->wg);
}

static int in_other_coro(tt_rwmutex *rw, int (*op)(tt_rwmutex *)) {
  rwop o = {.rw = rw, .op = op, .wg = TT_WG_INIT};
  ASSERT_OK(tt_wg_add(&o.wg, 1));
  ASSERT_OK(tt_go(rwop_coro, &o));
  ASSERT_OK(tt_wg_wait(&o.wg));
  return o.result;
}

static void *rwop_thread(void *arg) {
  rwop *o = arg;
  o->result = o->op(o->rw);
  return NULL;
}

static int in_thread(tt_rwmutex *rw, int (*op)(tt_rwmutex *)) {
  rwop o = {.rw = rw, .op = op};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, rwop_thread, &o), 0);
  pthread_join(th, NULL);
  return o.result;
}

static int misuse_main(void *arg) {
  tt_rwmutex rw;
  memset(&rw, 0, sizeof rw); /* all-zero is unlocked */
  ASSERT_ERR(tt_rwmutex_runlock(&rw), TT_EPERM);
  ASSERT_ERR(tt_rwmutex_unlock(&rw), TT_EPERM);
  ASSERT_EQ(tt_rwmutex_holder(&rw, NULL, NULL), TT_LOCK_FREE);
  /* Read mode. */
  ASSERT_OK(tt_rwmutex_rlock(&rw));
  ASSERT_OK(tt_rwmutex_tryrlock(&rw)); /* recursive: fine while no writer waits */
  ASSERT_EQ(tt_rwmutex_readers(&rw), 2);
  ASSERT_ERR(tt_rwmutex_lock(&rw), TT_EDEADLK); /* an upgrade */
  ASSERT_ERR(tt_rwmutex_trylock(&rw), TT_EDEADLK);
  ASSERT_ERR(tt_rwmutex_unlock(&rw), TT_EPERM);
  ASSERT_ERR(in_other_coro(&rw, tt_rwmutex_runlock), TT_EPERM); /* not its read lock */
  ASSERT_ERR(in_thread(&rw, tt_rwmutex_runlock), TT_EPERM);
  ASSERT_ERR(in_other_coro(&rw, tt_rwmutex_trylock), TT_EBUSY);
  const void *objs[4];
  uint32_t kinds[4];
  ASSERT_EQ(tt__held_self(objs, kinds, 4), 2);
  ASSERT_PTR_EQ(objs[0], &rw);
  ASSERT_EQ(kinds[0], 2);
  ASSERT_OK(tt_rwmutex_runlock(&rw));
  ASSERT_OK(tt_rwmutex_runlock(&rw));
  ASSERT_ERR(tt_rwmutex_runlock(&rw), TT_EPERM);
  ASSERT_EQ(tt__held_self(objs, kinds, 4), 0);
  /* Write mode. */
  ASSERT_OK(tt_rwmutex_trylock(&rw));
  tt_id id;
  int64_t since;
  ASSERT_EQ(tt_rwmutex_holder(&rw, &id, &since), TT_LOCK_CORO);
  ASSERT_EQ(id, tt_self());
  ASSERT_LE(since, tt_now());
  ASSERT_EQ(tt__held_self(objs, kinds, 4), 1);
  ASSERT_EQ(kinds[0], 3);
  ASSERT_ERR(tt_rwmutex_lock(&rw), TT_EDEADLK);
  ASSERT_ERR(tt_rwmutex_rlock(&rw), TT_EDEADLK);
  ASSERT_ERR(tt_rwmutex_runlock(&rw), TT_EPERM);
  ASSERT_ERR(in_other_coro(&rw, tt_rwmutex_unlock), TT_EPERM);
  ASSERT_ERR(in_thread(&rw, tt_rwmutex_unlock), TT_EPERM);
  ASSERT_ERR(in_other_coro(&rw, tt_rwmutex_tryrlock), TT_EBUSY);
  ASSERT_EQ(tt_rwmutex_holder(&rw, NULL, NULL), TT_LOCK_CORO); /* as it was */
  ASSERT_OK(tt_rwmutex_unlock(&rw));
  ASSERT_ERR(tt_rwmutex_unlock(&rw), TT_EPERM);
  /* A plain thread's read lock is released by a plain thread. */
  ASSERT_OK(in_thread(&rw, tt_rwmutex_tryrlock));
  ASSERT_ERR(tt_rwmutex_runlock(&rw), TT_EPERM);
  ASSERT_OK(in_thread(&rw, tt_rwmutex_runlock));
  ASSERT_OK(in_thread(&rw, tt_rwmutex_trylock));
  ASSERT_EQ(tt_rwmutex_holder(&rw, &id, NULL), TT_LOCK_THREAD);
  ASSERT_EQ(id, 0);
  ASSERT_ERR(in_thread(&rw, tt_rwmutex_unlock), TT_EPERM); /* another thread */
  ASSERT_ERR(tt_rwmutex_unlock(&rw), TT_EPERM);
  /* NULL. */
  ASSERT_ERR(tt_rwmutex_rlock(NULL), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_rlock_dl(NULL, 0), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_tryrlock(NULL), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_runlock(NULL), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_lock(NULL), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_lock_dl(NULL, 0), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_trylock(NULL), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_unlock(NULL), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_holder(NULL, NULL, NULL), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_readers(NULL), TT_EINVAL);
  tt_rwmutex_init(NULL);
  return 0;
}

TEST(rwmutex_misuse_and_holders) { tt_test_run(misuse_main, NULL, 2); }

/* ---- holders that exit --------------------------------------------------------------------- */

static tt_rwmutex exit_rw = TT_RWMUTEX_INIT, exit_rw2 = TT_RWMUTEX_INIT;
static tt_id exiter;

static void rlock_and_exit(void *arg) { ASSERT_OK(tt_rwmutex_rlock(arg)); }

static void wlock_and_exit(void *arg) {
  exiter = tt_self();
  ASSERT_OK(tt_rwmutex_lock(arg));
}

static void rblocked_forever(void *arg) {
  ASSERT_ERR(tt_rwmutex_rlock(arg), TT_ECANCELED); /* shut-down cancels it */
}

static int exit_main(void *arg) {
  tt_wg wg = TT_WG_INIT;
  (void)wg;
  /* A reader that exits keeps its read lock: writers wait forever. */
  ASSERT_OK(tt_go(rlock_and_exit, &exit_rw));
  while (tt_rwmutex_readers(&exit_rw) != 1)
    tt_sleep(100 * TT_USEC);
  tt_test_await_alone();
  ASSERT_ERR(tt_rwmutex_lock_dl(&exit_rw, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_ERR(tt_rwmutex_runlock(&exit_rw), TT_EPERM);
  ASSERT_EQ(tt_rwmutex_readers(&exit_rw), 1);
  /* A writer that exits: marked, still held, misuse still refused; a reader stays blocked. */
  ASSERT_OK(tt_go(wlock_and_exit, &exit_rw2));
  tt_id id;
  while (tt_rwmutex_holder(&exit_rw2, &id, NULL) != TT_LOCK_EXITED)
    tt_sleep(100 * TT_USEC);
  ASSERT_EQ(id, exiter);
  ASSERT_ERR(tt_rwmutex_unlock(&exit_rw2), TT_EPERM);
  ASSERT_ERR(tt_rwmutex_tryrlock(&exit_rw2), TT_EBUSY);
  ASSERT_OK(tt_go(rblocked_forever, &exit_rw2));
  tt_test_await_reason(TT_WAIT_RWMUTEX_RLOCK, 1);
  return 0;
}

TEST(rwmutex_holders_that_exit) {
  ASSERT_OK(tt_test_run_unchecked(
      exit_main, NULL, &(tt_run_opts){.procs = 2},
      "the waiter on an rwmutex whose holders exited stays blocked until shut-down cancels it"));
}

/* ---- stress ------------------------------------------------------------------------------------
 */

typedef struct rwstress {
  tt_rwmutex rw;
  int64_t value, writes; /* under the write lock */
  _Atomic int writers_in, readers_in;
  int64_t iters;
  tt_wg wg;
  _Atomic int threads_done;
} rwstress;

static void rw_ops(rwstress *s, uint64_t seed) {
  for (int64_t i = 0; i < s->iters; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    int op = (int)(seed >> 59) & 7;
    int r;
    bool write = op < 2;
    int64_t dl = (seed >> 40 & 1) ? TT_FOREVER : tt_now() + (int64_t)(seed >> 44 & 0xff) * TT_USEC;
    if (write)
      r = op == 0 ? tt_rwmutex_lock_dl(&s->rw, dl) : tt_rwmutex_trylock(&s->rw);
    else
      r = op < 5 ? tt_rwmutex_rlock_dl(&s->rw, dl) : tt_rwmutex_tryrlock(&s->rw);
    if (r == TT_EBUSY || r == TT_ETIMEDOUT)
      continue;
    ASSERT_OK(r);
    if (write) {
      ASSERT_EQ(atomic_fetch_add(&s->writers_in, 1), 0);
      ASSERT_EQ(atomic_load(&s->readers_in), 0);
      s->value++;
      s->writes++;
      if ((seed >> 20 & 7) == 0)
        tt_yield();
      ASSERT_EQ(s->value, s->writes);
      atomic_fetch_sub(&s->writers_in, 1);
      ASSERT_OK(tt_rwmutex_unlock(&s->rw));
    } else {
      atomic_fetch_add(&s->readers_in, 1);
      ASSERT_EQ(atomic_load(&s->writers_in), 0);
      int64_t v = s->value;
      if ((seed >> 20 & 7) == 0)
        tt_yield();
      ASSERT_EQ(s->value, v);
      atomic_fetch_sub(&s->readers_in, 1);
      ASSERT_OK(tt_rwmutex_runlock(&s->rw));
    }
  }
}

static void rw_stress_coro(void *arg) {
  rwstress *s = arg;
  rw_ops(s, (uint64_t)tt_self() * 0x9e3779b97f4a7c15ULL);
  tt_wg_done(&s->wg);
}

static void *rw_stress_thread(void *arg) {
  rwstress *s = arg;
  rw_ops(s, (uint64_t)(uintptr_t)&arg);
  atomic_fetch_add(&s->threads_done, 1);
  return NULL;
}

static int stress_main(void *arg) {
  rwstress s = {.rw = TT_RWMUTEX_INIT, .wg = TT_WG_INIT, .iters = SCALED(5000, 200)};
  int nco = (int)SCALED(64, 8);
  ASSERT_OK(tt_wg_add(&s.wg, nco));
  for (int i = 0; i < nco; i++)
    ASSERT_OK(tt_go(rw_stress_coro, &s));
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    ASSERT_EQ(pthread_create(&th[i], NULL, rw_stress_thread, &s), 0);
  ASSERT_OK(tt_wg_wait(&s.wg));
  while (atomic_load(&s.threads_done) < 2)
    tt_sleep(100 * TT_USEC);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  ASSERT_EQ(tt_rwmutex_readers(&s.rw), 0);
  ASSERT_EQ(tt_rwmutex_holder(&s.rw, NULL, NULL), TT_LOCK_FREE);
  ASSERT_OK(tt_rwmutex_lock(&s.rw));
  ASSERT_EQ(s.value, s.writes);
  ASSERT_OK(tt_rwmutex_unlock(&s.rw));
  return 0;
}

TEST(rwmutex_stress_random_ops) { tt_test_run(stress_main, NULL, 2); }
