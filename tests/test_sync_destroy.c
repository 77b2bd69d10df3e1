/* SPDX-License-Identifier: MIT */
/* Destroying the sync primitives: an idle object is poisoned and every later call on it returns
 * TT_EINVAL at once (from a coroutine, a plain thread in the runtime, a thread without it), init
 * revives it; a busy one (held, waited on, counting, units out, fn running) is refused with
 * TT_EBUSY and keeps working; a second destroy and NULL are TT_EINVAL; destroy racing lockers
 * leaves none of them parked on the dead object. */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

/* A deadline far enough away that reaching it means a call waited instead of failing at once. */
#define FAR() (tt_now() + 10 * TT_SEC)

static void noop(void *arg) { atomic_fetch_add((_Atomic int *)arg, 1); }

/* ---- every call on each poisoned type ------------------------------------------------------ */

/* Destroys an idle one of each type and checks every operation on it; then revives each (init
 * or the static initializer) and uses it. From a coroutine, a plain thread in the runtime and a
 * thread without the runtime alike: a blocking call must fail without waiting. */
static void poisoned_all(bool runtime) {
  int64_t t0 = tt_now();

  tt_mutex m = TT_MUTEX_INIT;
  ASSERT_OK(tt_mutex_destroy(&m));
  ASSERT_ERR(tt_mutex_lock_dl(&m, FAR()), TT_EINVAL);
  ASSERT_ERR(tt_mutex_lock(&m), TT_EINVAL);
  ASSERT_ERR(tt_mutex_trylock(&m), TT_EINVAL);
  ASSERT_ERR(tt_mutex_unlock(&m), TT_EINVAL);
  ASSERT_ERR(tt_mutex_holder(&m, NULL, NULL), TT_EINVAL);
  ASSERT_ERR(tt_mutex_destroy(&m), TT_EINVAL);
  tt_mutex_init(&m);
  ASSERT_OK(tt_mutex_lock(&m));
  ASSERT_ERR(tt_mutex_destroy(&m), TT_EBUSY); /* held by the caller */
  ASSERT_OK(tt_mutex_unlock(&m));
  ASSERT_OK(tt_mutex_destroy(&m));
  m = (tt_mutex)TT_MUTEX_INIT;
  ASSERT_OK(tt_mutex_trylock(&m));
  ASSERT_OK(tt_mutex_unlock(&m));

  tt_rwmutex rw = TT_RWMUTEX_INIT;
  ASSERT_OK(tt_rwmutex_destroy(&rw));
  ASSERT_ERR(tt_rwmutex_rlock_dl(&rw, FAR()), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_rlock(&rw), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_tryrlock(&rw), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_runlock(&rw), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_lock_dl(&rw, FAR()), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_lock(&rw), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_trylock(&rw), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_unlock(&rw), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_holder(&rw, NULL, NULL), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_readers(&rw), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_destroy(&rw), TT_EINVAL);
  tt_rwmutex_init(&rw);
  ASSERT_OK(tt_rwmutex_rlock(&rw));
  ASSERT_ERR(tt_rwmutex_destroy(&rw), TT_EBUSY);
  ASSERT_OK(tt_rwmutex_runlock(&rw));
  ASSERT_OK(tt_rwmutex_lock(&rw));
  ASSERT_ERR(tt_rwmutex_destroy(&rw), TT_EBUSY);
  ASSERT_OK(tt_rwmutex_unlock(&rw));
  ASSERT_OK(tt_rwmutex_destroy(&rw));
  rw = (tt_rwmutex)TT_RWMUTEX_INIT;
  ASSERT_OK(tt_rwmutex_trylock(&rw));
  ASSERT_OK(tt_rwmutex_unlock(&rw));

  /* A condition: its own poison, and a poisoned mutex given to a live one. */
  tt_cond c = TT_COND_INIT;
  tt_mutex cm = TT_MUTEX_INIT;
  ASSERT_OK(tt_cond_destroy(&c));
  ASSERT_OK(tt_mutex_lock(&cm));
  ASSERT_ERR(tt_cond_wait_dl(&c, &cm, FAR()), TT_EINVAL);
  ASSERT_ERR(tt_cond_wait(&c, &cm), TT_EINVAL);
  ASSERT_EQ(tt_mutex_holder(&cm, NULL, NULL), tt_self() ? TT_LOCK_CORO : TT_LOCK_THREAD);
  ASSERT_OK(tt_mutex_unlock(&cm)); /* still held after the refused waits */
  ASSERT_ERR(tt_cond_signal(&c), TT_EINVAL);
  ASSERT_ERR(tt_cond_broadcast(&c), TT_EINVAL);
  ASSERT_ERR(tt_cond_destroy(&c), TT_EINVAL);
  tt_cond_init(&c);
  ASSERT_OK(tt_cond_signal(&c));
  ASSERT_OK(tt_cond_broadcast(&c));
  ASSERT_OK(tt_mutex_destroy(&cm));
  ASSERT_ERR(tt_cond_wait_dl(&c, &cm, FAR()), TT_EINVAL); /* the mutex is the dead one */
  ASSERT_ERR(tt_cond_wait(&c, &cm), TT_EINVAL);
  tt_mutex_init(&cm);
  ASSERT_OK(tt_mutex_lock(&cm));
  /* Both alive again: a real wait (which a thread without the runtime cannot make). */
  ASSERT_ERR(tt_cond_wait_dl(&c, &cm, tt_now() + TT_MSEC), runtime ? TT_ETIMEDOUT : TT_ENOTRUNNING);
  ASSERT_OK(tt_mutex_unlock(&cm));
  ASSERT_OK(tt_cond_destroy(&c));

  tt_sem s = TT_SEM_INIT(3);
  ASSERT_OK(tt_sem_destroy(&s));
  ASSERT_ERR(tt_sem_acquire_dl(&s, 1, FAR()), TT_EINVAL);
  ASSERT_ERR(tt_sem_acquire(&s, 1), TT_EINVAL);
  ASSERT_ERR(tt_sem_acquire(&s, 0), TT_EINVAL);
  ASSERT_ERR(tt_sem_try_acquire(&s, 1), TT_EINVAL);
  ASSERT_ERR(tt_sem_try_acquire(&s, 0), TT_EINVAL);
  ASSERT_ERR(tt_sem_release(&s, 0), TT_EINVAL);
  ASSERT_ERR(tt_sem_release(&s, 1), TT_EINVAL);
  ASSERT_ERR(tt_sem_held(&s), TT_EINVAL);
  ASSERT_ERR(tt_sem_destroy(&s), TT_EINVAL);
  ASSERT_OK(tt_sem_init(&s, 2));
  ASSERT_OK(tt_sem_acquire(&s, 2));
  ASSERT_ERR(tt_sem_destroy(&s), TT_EBUSY); /* units held */
  ASSERT_EQ(tt_sem_held(&s), 2);
  ASSERT_OK(tt_sem_release(&s, 2));
  ASSERT_OK(tt_sem_destroy(&s));
  s = (tt_sem)TT_SEM_INIT(1);
  ASSERT_OK(tt_sem_try_acquire(&s, 1));
  ASSERT_OK(tt_sem_release(&s, 1));
  tt_sem zero = {0}; /* no capacity, but idle: destroyable */
  ASSERT_OK(tt_sem_destroy(&zero));
  ASSERT_ERR(tt_sem_release(&zero, 0), TT_EINVAL);

  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_wg_destroy(&wg));
  ASSERT_ERR(tt_wg_wait_dl(&wg, FAR()), TT_EINVAL);
  ASSERT_ERR(tt_wg_wait(&wg), TT_EINVAL);
  ASSERT_ERR(tt_wg_add(&wg, 1), TT_EINVAL);
  ASSERT_ERR(tt_wg_add(&wg, 0), TT_EINVAL);
  ASSERT_ERR(tt_wg_done(&wg), TT_EINVAL);
  /* Deltas that would bring the poisoned counter (-1) back into range, and extremes. */
  ASSERT_ERR(tt_wg_add(&wg, 1 + (int64_t)INT32_MAX), TT_EINVAL);
  ASSERT_ERR(tt_wg_add(&wg, (int64_t)UINT32_MAX), TT_EINVAL);
  ASSERT_ERR(tt_wg_add(&wg, INT64_MAX), TT_EINVAL);
  ASSERT_ERR(tt_wg_add(&wg, INT64_MIN), TT_EINVAL);
  ASSERT_ERR(tt_wg_count(&wg), TT_EINVAL);
  ASSERT_ERR(tt_wg_destroy(&wg), TT_EINVAL);
  tt_wg_init(&wg);
  ASSERT_EQ(tt_wg_count(&wg), 0);
  ASSERT_OK(tt_wg_add(&wg, 1));
  ASSERT_ERR(tt_wg_destroy(&wg), TT_EBUSY); /* counting */
  ASSERT_OK(tt_wg_done(&wg));
  ASSERT_OK(tt_wg_destroy(&wg));
  wg = (tt_wg)TT_WG_INIT;
  ASSERT_OK(tt_wg_wait(&wg));

  _Atomic int runs = 0;
  tt_once o = TT_ONCE_INIT;
  ASSERT_OK(tt_once_destroy(&o)); /* never run */
  ASSERT_ERR(tt_once_do(&o, noop, (void *)&runs), TT_EINVAL);
  ASSERT_ERR(tt_once_done(&o), TT_EINVAL);
  ASSERT_ERR(tt_once_destroy(&o), TT_EINVAL);
  tt_once_init(&o);
  ASSERT_OK(tt_once_do(&o, noop, (void *)&runs));
  ASSERT_OK(tt_once_destroy(&o)); /* done */
  ASSERT_ERR(tt_once_do(&o, noop, (void *)&runs), TT_EINVAL);
  ASSERT_ERR(tt_once_done(&o), TT_EINVAL);
  o = (tt_once)TT_ONCE_INIT;
  ASSERT_OK(tt_once_do(&o, noop, (void *)&runs));
  ASSERT_EQ(atomic_load(&runs), 2); /* fn never ran on the poisoned once */

  /* Nothing waited (the deadlines were ten seconds away). */
  ASSERT_LT(tt_now() - t0, 5 * TT_SEC);
}

TEST(destroy_null_is_einval) {
  ASSERT_ERR(tt_mutex_destroy(NULL), TT_EINVAL);
  ASSERT_ERR(tt_rwmutex_destroy(NULL), TT_EINVAL);
  ASSERT_ERR(tt_cond_destroy(NULL), TT_EINVAL);
  ASSERT_ERR(tt_sem_destroy(NULL), TT_EINVAL);
  ASSERT_ERR(tt_wg_destroy(NULL), TT_EINVAL);
  ASSERT_ERR(tt_once_destroy(NULL), TT_EINVAL);
}

/* A thread without the runtime: the blocking calls would say TT_ENOTRUNNING if they got as far as
 * waiting. */
TEST(destroy_idle_without_runtime) { poisoned_all(false); }

static _Atomic int thread_done;

static void *poisoned_thread(void *arg) {
  poisoned_all(true);
  atomic_store(&thread_done, 1);
  return NULL;
}

static int idle_main(void *p) {
  poisoned_all(true);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, poisoned_thread, NULL), 0);
  while (!atomic_load(&thread_done)) /* joining at once would stall this worker */
    tt_sleep(100 * TT_USEC);
  pthread_join(th, NULL);
  return 0;
}

TEST(destroy_idle_coroutine_and_thread) { tt_test_run(idle_main, NULL, 2); }

/* ---- busy objects ---------------------------------------------------------------------------- */

typedef struct busy {
  tt_mutex m;
  tt_rwmutex rw;
  tt_cond c;
  tt_sem s;
  tt_wg wg, done;
  tt_once o;
  _Atomic int go, ran, results;
} busy;

static void mutex_locker(void *arg) {
  busy *b = arg;
  ASSERT_OK(tt_mutex_lock(&b->m));
  ASSERT_OK(tt_mutex_unlock(&b->m));
  tt_wg_done(&b->done);
}

static void rw_writer(void *arg) {
  busy *b = arg;
  ASSERT_OK(tt_rwmutex_lock(&b->rw));
  ASSERT_OK(tt_rwmutex_unlock(&b->rw));
  tt_wg_done(&b->done);
}

static void cond_waiter(void *arg) {
  busy *b = arg;
  ASSERT_OK(tt_mutex_lock(&b->m));
  while (!atomic_load(&b->go))
    ASSERT_OK(tt_cond_wait(&b->c, &b->m));
  ASSERT_OK(tt_mutex_unlock(&b->m));
  tt_wg_done(&b->done);
}

static void sem_waiter(void *arg) {
  busy *b = arg;
  ASSERT_OK(tt_sem_acquire(&b->s, 2));
  ASSERT_OK(tt_sem_release(&b->s, 2));
  tt_wg_done(&b->done);
}

static void wg_waiter(void *arg) {
  busy *b = arg;
  ASSERT_OK(tt_wg_wait(&b->wg));
  tt_wg_done(&b->done);
}

static void slow_fn(void *arg) {
  busy *b = arg;
  atomic_fetch_add(&b->ran, 1);
  while (!atomic_load(&b->go))
    tt_sleep(100 * TT_USEC);
}

static void once_caller(void *arg) {
  busy *b = arg;
  ASSERT_OK(tt_once_do(&b->o, slow_fn, b));
  tt_wg_done(&b->done);
}

static void lock_and_exit(void *arg) { ASSERT_OK(tt_mutex_lock(arg)); }
static void rlock_and_exit(void *arg) { ASSERT_OK(tt_rwmutex_rlock(arg)); }
static void wlock_and_exit(void *arg) { ASSERT_OK(tt_rwmutex_lock(arg)); }

static tt_mutex exited_m = TT_MUTEX_INIT; /* held for ever by a coroutine that exited */
static tt_rwmutex exited_r = TT_RWMUTEX_INIT, exited_w = TT_RWMUTEX_INIT;

static int busy_main(void *p) {
  busy b = {.m = TT_MUTEX_INIT,
            .rw = TT_RWMUTEX_INIT,
            .c = TT_COND_INIT,
            .s = TT_SEM_INIT(2),
            .wg = TT_WG_INIT,
            .done = TT_WG_INIT,
            .o = TT_ONCE_INIT};

  /* Mutex: held by us with a waiter parked. */
  ASSERT_OK(tt_mutex_lock(&b.m));
  ASSERT_OK(tt_wg_add(&b.done, 1));
  ASSERT_OK(tt_go(mutex_locker, &b));
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, 1);
  ASSERT_ERR(tt_mutex_destroy(&b.m), TT_EBUSY);
  ASSERT_OK(tt_mutex_unlock(&b.m)); /* still works: the waiter gets it */
  ASSERT_OK(tt_wg_wait(&b.done));
  ASSERT_OK(tt_mutex_destroy(&b.m));
  tt_mutex_init(&b.m);

  /* Mutex held by a coroutine that exited: busy for ever. */
  ASSERT_OK(tt_go(lock_and_exit, &exited_m));
  while (tt_mutex_holder(&exited_m, NULL, NULL) != TT_LOCK_EXITED)
    tt_sleep(100 * TT_USEC);
  ASSERT_ERR(tt_mutex_destroy(&exited_m), TT_EBUSY);
  ASSERT_EQ(tt_mutex_holder(&exited_m, NULL, NULL), TT_LOCK_EXITED);

  /* RWMutex: read-held with a writer parked. */
  ASSERT_OK(tt_rwmutex_rlock(&b.rw));
  ASSERT_OK(tt_wg_add(&b.done, 1));
  ASSERT_OK(tt_go(rw_writer, &b));
  tt_test_await_reason(TT_WAIT_RWMUTEX_LOCK, 1);
  ASSERT_ERR(tt_rwmutex_destroy(&b.rw), TT_EBUSY);
  ASSERT_OK(tt_rwmutex_runlock(&b.rw));
  ASSERT_OK(tt_wg_wait(&b.done));
  ASSERT_EQ(tt_rwmutex_readers(&b.rw), 0);
  ASSERT_OK(tt_rwmutex_destroy(&b.rw));

  /* RWMutex read- or write-held by coroutines that exited. */
  ASSERT_OK(tt_go(rlock_and_exit, &exited_r));
  ASSERT_OK(tt_go(wlock_and_exit, &exited_w));
  while (tt_rwmutex_readers(&exited_r) != 1 ||
         tt_rwmutex_holder(&exited_w, NULL, NULL) != TT_LOCK_EXITED)
    tt_sleep(100 * TT_USEC);
  ASSERT_ERR(tt_rwmutex_destroy(&exited_r), TT_EBUSY);
  ASSERT_ERR(tt_rwmutex_destroy(&exited_w), TT_EBUSY);

  /* Cond: a waiter parked. */
  ASSERT_OK(tt_wg_add(&b.done, 1));
  ASSERT_OK(tt_go(cond_waiter, &b));
  tt_test_await_reason(TT_WAIT_COND_WAIT, 1);
  ASSERT_ERR(tt_cond_destroy(&b.c), TT_EBUSY);
  ASSERT_OK(tt_mutex_lock(&b.m));
  atomic_store(&b.go, 1);
  ASSERT_OK(tt_cond_signal(&b.c)); /* still works */
  ASSERT_OK(tt_mutex_unlock(&b.m));
  ASSERT_OK(tt_wg_wait(&b.done));
  ASSERT_OK(tt_cond_destroy(&b.c));
  atomic_store(&b.go, 0);

  /* Semaphore: one unit out and a waiter for two parked. */
  ASSERT_OK(tt_sem_acquire(&b.s, 1));
  ASSERT_OK(tt_wg_add(&b.done, 1));
  ASSERT_OK(tt_go(sem_waiter, &b));
  tt_test_await_reason(TT_WAIT_SEMACQUIRE, 1);
  ASSERT_ERR(tt_sem_destroy(&b.s), TT_EBUSY);
  ASSERT_OK(tt_sem_release(&b.s, 1)); /* still works: serves the waiter */
  ASSERT_OK(tt_wg_wait(&b.done));
  ASSERT_EQ(tt_sem_held(&b.s), 0);
  ASSERT_OK(tt_sem_destroy(&b.s));

  /* Wait group: counting, with a waiter parked. */
  ASSERT_OK(tt_wg_add(&b.wg, 1));
  ASSERT_OK(tt_wg_add(&b.done, 1));
  ASSERT_OK(tt_go(wg_waiter, &b));
  tt_test_await_reason(TT_WAIT_WAITGROUP_WAIT, 1);
  ASSERT_ERR(tt_wg_destroy(&b.wg), TT_EBUSY);
  ASSERT_EQ(tt_wg_count(&b.wg), 1);
  ASSERT_OK(tt_wg_done(&b.wg)); /* still works: wakes the waiter */
  ASSERT_OK(tt_wg_wait(&b.done));
  ASSERT_OK(tt_wg_destroy(&b.wg));

  /* Once: fn running in one caller, another parked. */
  ASSERT_OK(tt_wg_add(&b.done, 2));
  ASSERT_OK(tt_go(once_caller, &b));
  while (atomic_load(&b.ran) == 0)
    tt_sleep(100 * TT_USEC);
  ASSERT_ERR(tt_once_destroy(&b.o), TT_EBUSY); /* running */
  ASSERT_OK(tt_go(once_caller, &b));
  tt_test_await_reason(TT_WAIT_ONCE_DO, 1);
  ASSERT_ERR(tt_once_destroy(&b.o), TT_EBUSY); /* running, and waited for */
  atomic_store(&b.go, 1);
  ASSERT_OK(tt_wg_wait(&b.done));
  ASSERT_EQ(atomic_load(&b.ran), 1);
  ASSERT_EQ(tt_once_done(&b.o), 1);
  ASSERT_OK(tt_once_destroy(&b.o));
  ASSERT_ERR(tt_once_destroy(&b.o), TT_EINVAL);
  return 0;
}

TEST(destroy_busy_is_ebusy_and_the_object_still_works) { tt_test_run(busy_main, NULL, 2); }

/* A waiter that timed out has left: its object is idle again. */
static int timed_out_main(void *p) {
  tt_mutex m = TT_MUTEX_INIT;
  tt_cond c = TT_COND_INIT;
  tt_sem s = TT_SEM_INIT(1);
  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_mutex_lock(&m));
  ASSERT_ERR(tt_cond_wait_dl(&c, &m, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_OK(tt_mutex_unlock(&m));
  ASSERT_OK(tt_cond_destroy(&c));
  ASSERT_OK(tt_mutex_destroy(&m));
  ASSERT_OK(tt_sem_acquire(&s, 1));
  ASSERT_ERR(tt_sem_acquire_dl(&s, 1, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_OK(tt_sem_release(&s, 1));
  ASSERT_OK(tt_sem_destroy(&s));
  ASSERT_OK(tt_wg_add(&wg, 1));
  ASSERT_ERR(tt_wg_wait_dl(&wg, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_OK(tt_wg_done(&wg));
  ASSERT_OK(tt_wg_destroy(&wg));
  return 0;
}

TEST(destroy_after_a_waiter_timed_out) { tt_test_run(timed_out_main, NULL, 2); }

/* ---- destroy racing users -------------------------------------------------------------------- */

/* Coroutines and plain threads lock and unlock (and acquire and release) until destroy wins; the
 * destroyer retries while it is busy. Every call must succeed, or fail with TT_EINVAL once the
 * object is dead; none may park on it (a lock that waited for its ten-second deadline fails). This
 * is the caller's race pthreads leaves undefined; here it must only not hurt the runtime. */
typedef struct race {
  tt_mutex m;
  tt_rwmutex rw;
  tt_sem s;
  tt_wg done;
  _Atomic int threads_done;
  _Atomic int64_t ops;
  _Atomic int pause; /* set by a destroyer refused many times: users leave it gaps */
} race;

static void race_user(race *r) {
  bool m_dead = false, rw_dead = false, s_dead = false;
  for (int64_t i = 0; !(m_dead && rw_dead && s_dead); i++) {
    if (!m_dead) {
      int e = tt_mutex_lock_dl(&r->m, FAR());
      if (e == TT_EINVAL)
        m_dead = true;
      else {
        ASSERT_OK(e);
        ASSERT_OK(tt_mutex_unlock(&r->m)); /* held: cannot have been destroyed */
      }
    }
    if (!rw_dead) {
      int e = i % 2 ? tt_rwmutex_rlock_dl(&r->rw, FAR()) : tt_rwmutex_lock_dl(&r->rw, FAR());
      if (e == TT_EINVAL)
        rw_dead = true;
      else {
        ASSERT_OK(e);
        ASSERT_OK(i % 2 ? tt_rwmutex_runlock(&r->rw) : tt_rwmutex_unlock(&r->rw));
      }
    }
    if (!s_dead) {
      int e = tt_sem_acquire_dl(&r->s, 1 + i % 2, FAR());
      if (e == TT_EINVAL)
        s_dead = true;
      else {
        ASSERT_OK(e);
        ASSERT_OK(tt_sem_release(&r->s, 1 + i % 2));
      }
    }
    atomic_fetch_add_explicit(&r->ops, 1, memory_order_relaxed);
    /* With 18 users an object is rarely idle: a destroyer refused too often asks them to leave
     * gaps (they keep calling, so the race goes on). */
    if (atomic_load_explicit(&r->pause, memory_order_relaxed))
      tt_sleep((int64_t)(100 * TT_USEC * tt_test_slow())); /* real gaps, even under Valgrind */
    else if (i % 16 == 0)
      tt_yield();
  }
}

static void race_coro(void *arg) {
  race_user(arg);
  tt_wg_done(&((race *)arg)->done);
}

static void *race_thread(void *arg) {
  race_user(arg);
  atomic_fetch_add(&((race *)arg)->threads_done, 1);
  return NULL;
}

static int race_main(void *p) {
  int rounds = (int)SCALED(20, 2);
  for (int round = 0; round < rounds; round++) {
    race r = {.m = TT_MUTEX_INIT, .rw = TT_RWMUTEX_INIT, .s = TT_SEM_INIT(2), .done = TT_WG_INIT};
    int nco = 16, nth = 2;
    ASSERT_OK(tt_wg_add(&r.done, nco));
    for (int i = 0; i < nco; i++)
      ASSERT_OK(tt_go(race_coro, &r));
    pthread_t th[2];
    for (int i = 0; i < nth; i++)
      ASSERT_EQ(pthread_create(&th[i], NULL, race_thread, &r), 0);
    while (atomic_load_explicit(&r.ops, memory_order_relaxed) < 50 * (round + 1))
      tt_yield();
    int e, tries = 0;
#define DESTROY(call)                                                                              \
  while ((e = (call)) == TT_EBUSY)                                                                 \
    if (++tries >= 1000) {                                                                         \
      atomic_store(&r.pause, 1);                                                                   \
      tt_sleep(10 * TT_USEC);                                                                      \
    } else {                                                                                       \
      tt_yield();                                                                                  \
    }                                                                                              \
  ASSERT_OK(e)
    DESTROY(tt_mutex_destroy(&r.m));
    DESTROY(tt_rwmutex_destroy(&r.rw));
    DESTROY(tt_sem_destroy(&r.s));
#undef DESTROY
    ASSERT_OK(tt_wg_wait(&r.done));
    while (atomic_load(&r.threads_done) < nth)
      tt_sleep(100 * TT_USEC);
    for (int i = 0; i < nth; i++)
      pthread_join(th[i], NULL);
  }
  return 0;
}

TEST(destroy_racing_users_leaves_none_parked) { tt_test_run(race_main, NULL, 2); }
