/* SPDX-License-Identifier: MIT */
/* Mutexes: exclusion across workers and plain threads, trylock, deadlines, misuse, holders, the
 * held-lock list, a holder that exits, starvation, and a random stress. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

#define TOL (20 * TT_MSEC * (int64_t)tt_test_slow()) /* lateness allowed on a loaded machine */

/* A counter the mutex protects, updated non-atomically with a window between the read and the
 * write: a broken exclusion loses updates (and TSan reports the race). */
typedef struct excl {
  tt_mutex m;
  int64_t counter;
  int64_t iters;
  tt_wg wg;
  _Atomic int threads_done;
} excl;

static void excl_step(excl *e, int64_t i) {
  ASSERT_OK(tt_mutex_lock(&e->m));
  int64_t v = e->counter;
  for (volatile int k = 0; k < 8; k++)
    ;
  if (i % 64 == 0)
    tt_yield(); /* sometimes switch while holding it: waiters on this worker must park */
  e->counter = v + 1;
  ASSERT_OK(tt_mutex_unlock(&e->m));
}

static void excl_coro(void *arg) {
  excl *e = arg;
  for (int64_t i = 0; i < e->iters; i++)
    excl_step(e, i);
  tt_wg_done(&e->wg);
}

static void *excl_thread(void *arg) {
  excl *e = arg;
  for (int64_t i = 0; i < e->iters; i++)
    excl_step(e, i + 1); /* (a plain thread's tt_yield is a sched_yield) */
  atomic_fetch_add(&e->threads_done, 1);
  return NULL;
}

static int exclusion_main(void *p) {
  excl e = {.m = TT_MUTEX_INIT, .wg = TT_WG_INIT, .iters = SCALED(2000, 100)};
  int nco = 64, nth = 2;
  ASSERT_OK(tt_wg_add(&e.wg, nco));
  for (int i = 0; i < nco; i++)
    ASSERT_OK(tt_go(excl_coro, &e));
  pthread_t th[2];
  for (int i = 0; i < nth; i++)
    ASSERT_EQ(pthread_create(&th[i], NULL, excl_thread, &e), 0);
  ASSERT_OK(tt_wg_wait(&e.wg));
  while (atomic_load(&e.threads_done) < nth) /* joining at once would stall this worker */
    tt_sleep(100 * TT_USEC);
  for (int i = 0; i < nth; i++)
    pthread_join(th[i], NULL);
  ASSERT_EQ(e.counter, (nco + nth) * e.iters);
  ASSERT_EQ(tt_mutex_holder(&e.m, NULL, NULL), TT_LOCK_FREE);
  return 0;
}

TEST(mutex_exclusion_across_workers_and_threads) { tt_test_run(exclusion_main, NULL, 2); }
TEST(mutex_exclusion_one_worker) { tt_test_run(exclusion_main, NULL, 1); }

/* ---- trylock and misuse -------------------------------------------------------------------- */

typedef struct other_op {
  tt_mutex *m;
  int (*op)(tt_mutex *);
  int result;
  tt_wg wg;
} other_op;

static void other_op_coro(void *arg) {
  other_op *o = arg;
  o->result = o->op(o->m);
  tt_wg_done(&o->wg);
}

/* Runs op(m) in a fresh coroutine and returns its result. */
static int in_other_coro(tt_mutex *m, int (*op)(tt_mutex *)) {
  other_op o = {.m = m, .op = op, .wg = TT_WG_INIT};
  ASSERT_OK(tt_wg_add(&o.wg, 1));
  ASSERT_OK(tt_go(other_op_coro, &o));
  ASSERT_OK(tt_wg_wait(&o.wg));
  return o.result;
}

static void *other_op_thread(void *arg) {
  other_op *o = arg;
  o->result = o->op(o->m);
  return NULL;
}

/* Runs op(m) on a plain thread (briefly stalling this worker: op never blocks here). */
static int in_thread(tt_mutex *m, int (*op)(tt_mutex *)) {
  other_op o = {.m = m, .op = op};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, other_op_thread, &o), 0);
  pthread_join(th, NULL);
  return o.result;
}

static int misuse_main(void *p) {
  tt_mutex m;
  tt_mutex_init(&m);
  tt_id id = 99;
  int64_t since = 99;
  ASSERT_EQ(tt_mutex_holder(&m, &id, &since), TT_LOCK_FREE);
  ASSERT_EQ(id, 0);
  ASSERT_EQ(since, 0);
  /* Unlocking a free mutex. */
  ASSERT_ERR(tt_mutex_unlock(&m), TT_EPERM);
  ASSERT_OK(tt_mutex_trylock(&m));
  ASSERT_ERR(tt_mutex_trylock(&m), TT_EDEADLK);
  ASSERT_ERR(tt_mutex_lock(&m), TT_EDEADLK);
  ASSERT_ERR(tt_mutex_lock_dl(&m, tt_now() + TT_MSEC), TT_EDEADLK);
  ASSERT_ERR(in_other_coro(&m, tt_mutex_trylock), TT_EBUSY);
  ASSERT_ERR(in_thread(&m, tt_mutex_trylock), TT_EBUSY);
  /* Unlock by a non-holder: refused, and the mutex is left as it was. */
  ASSERT_ERR(in_other_coro(&m, tt_mutex_unlock), TT_EPERM);
  ASSERT_ERR(in_thread(&m, tt_mutex_unlock), TT_EPERM);
  ASSERT_EQ(tt_mutex_holder(&m, &id, NULL), TT_LOCK_CORO);
  ASSERT_EQ(id, tt_self());
  ASSERT_OK(tt_mutex_unlock(&m));
  ASSERT_ERR(tt_mutex_unlock(&m), TT_EPERM);
  ASSERT_EQ(tt_mutex_holder(&m, NULL, NULL), TT_LOCK_FREE);
  /* A plain thread's lock is its own: a coroutine cannot release it, nor another thread. */
  ASSERT_OK(in_thread(&m, tt_mutex_trylock));
  ASSERT_EQ(tt_mutex_holder(&m, &id, NULL), TT_LOCK_THREAD);
  ASSERT_EQ(id, 0);
  ASSERT_ERR(tt_mutex_unlock(&m), TT_EPERM);
  ASSERT_ERR(in_thread(&m, tt_mutex_unlock), TT_EPERM);
  ASSERT_ERR(tt_mutex_trylock(&m), TT_EBUSY);
  /* NULL. */
  ASSERT_ERR(tt_mutex_lock(NULL), TT_EINVAL);
  ASSERT_ERR(tt_mutex_lock_dl(NULL, TT_FOREVER), TT_EINVAL);
  ASSERT_ERR(tt_mutex_trylock(NULL), TT_EINVAL);
  ASSERT_ERR(tt_mutex_unlock(NULL), TT_EINVAL);
  ASSERT_ERR(tt_mutex_holder(NULL, &id, &since), TT_EINVAL);
  tt_mutex_init(NULL);
  /* All-zero bytes are an unlocked mutex. */
  tt_mutex z;
  memset(&z, 0, sizeof z);
  ASSERT_OK(tt_mutex_lock(&z));
  ASSERT_OK(tt_mutex_unlock(&z));
  return 0;
}

TEST(mutex_trylock_and_misuse) { tt_test_run(misuse_main, NULL, 2); }

/* A plain thread outside the runtime: uncontended locking works, waiting does not. */
TEST(mutex_plain_thread_without_runtime) {
  tt_mutex m = TT_MUTEX_INIT;
  ASSERT_OK(tt_mutex_lock(&m));
  ASSERT_EQ(tt_mutex_holder(&m, NULL, NULL), TT_LOCK_THREAD);
  ASSERT_ERR(tt_mutex_lock(&m), TT_EDEADLK);
  ASSERT_OK(tt_mutex_unlock(&m));
}

/* ---- deadlines ----------------------------------------------------------------------------- */

typedef struct hold {
  tt_mutex *m;
  tt_chan *locked, *release; /* untracked */
  tt_wg done;
} hold;

/* Locks m, says so, waits to be told to release it. */
static void holder_coro(void *arg) {
  hold *h = arg;
  ASSERT_OK(tt_mutex_lock(h->m));
  int one = 1;
  ASSERT_OK(tt_chan_send(h->locked, &one));
  ASSERT_OK(tt_chan_recv(h->release, &one, NULL));
  ASSERT_OK(tt_mutex_unlock(h->m));
  tt_wg_done(&h->done);
}

static void hold_start(hold *h, tt_mutex *m) {
  h->m = m;
  tt_chan_opts o = {.mode = TT_CHAN_UNTRACKED};
  ASSERT_OK(tt_chan_make_opt(&h->locked, sizeof(int), 0, &o));
  ASSERT_OK(tt_chan_make_opt(&h->release, sizeof(int), 0, &o));
  tt_wg_init(&h->done);
  ASSERT_OK(tt_wg_add(&h->done, 1));
  ASSERT_OK(tt_go(holder_coro, h));
  int v;
  ASSERT_OK(tt_chan_recv(h->locked, &v, NULL));
}

static void hold_end(hold *h) {
  int one = 1;
  ASSERT_OK(tt_chan_send(h->release, &one));
  ASSERT_OK(tt_wg_wait(&h->done));
  ASSERT_OK(tt_chan_release(h->locked));
  ASSERT_OK(tt_chan_release(h->release));
}

static void *thread_lock_dl(void *arg) {
  tt_mutex *m = arg;
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_mutex_lock_dl(m, t0 + 3 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_GE(tt_now() - t0, 3 * TT_MSEC);
  return NULL;
}

static int deadline_main(void *p) {
  tt_mutex m = TT_MUTEX_INIT;
  hold h;
  hold_start(&h, &m);
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_mutex_lock_dl(&m, t0 + 5 * TT_MSEC), TT_ETIMEDOUT);
  int64_t t1 = tt_now();
  ASSERT_GE(t1 - t0, 5 * TT_MSEC);
  ASSERT_LE(t1 - t0, 5 * TT_MSEC + TOL);
  ASSERT_ERR(tt_mutex_lock_dl(&m, t0 - TT_SEC), TT_ETIMEDOUT); /* already past */
  ASSERT_ERR(tt_mutex_lock_dl(&m, 0), TT_ETIMEDOUT);
  /* A plain thread's deadline too. */
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, thread_lock_dl, &m), 0);
  pthread_join(th, NULL); /* stalls this worker for 3 ms; the holder is parked meanwhile */
  /* The timed-out waiters left no trace: the holder's unlock takes the fast path, and a later
   * lock works. */
  tt_id id;
  ASSERT_EQ(tt_mutex_holder(&m, &id, NULL), TT_LOCK_CORO);
  ASSERT_NE(id, tt_self());
  hold_end(&h);
  ASSERT_OK(tt_mutex_lock_dl(&m, tt_now() + TT_SEC));
  ASSERT_OK(tt_mutex_unlock(&m));
  /* Free: a past deadline does not matter. */
  ASSERT_OK(tt_mutex_lock_dl(&m, 0));
  ASSERT_OK(tt_mutex_unlock(&m));
  return 0;
}

TEST(mutex_lock_dl_times_out_then_lock_works) { tt_test_run(deadline_main, NULL, 2); }

/* A waiter gets the mutex when its holder lets go, with the wait reason and object recorded. */
typedef struct waiter_arg {
  tt_mutex *m;
  _Atomic int got;
  tt_wg wg;
} waiter_arg;

static void lock_waiter(void *arg) {
  waiter_arg *w = arg;
  ASSERT_OK(tt_mutex_lock(w->m));
  atomic_fetch_add(&w->got, 1);
  ASSERT_OK(tt_mutex_unlock(w->m));
  tt_wg_done(&w->wg);
}

static int find_waiter(const tt_coro_info *ci, void *arg) {
  return ci->wait_reason == TT_WAIT_MUTEX_LOCK && ci->wait_obj == arg;
}

static int waiter_main(void *p) {
  tt_mutex m = TT_MUTEX_INIT;
  waiter_arg w = {.m = &m, .wg = TT_WG_INIT};
  ASSERT_OK(tt_mutex_lock(&m));
  ASSERT_OK(tt_wg_add(&w.wg, 3));
  for (int i = 0; i < 3; i++)
    ASSERT_OK(tt_go(lock_waiter, &w));
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, 3);
  ASSERT_STR_EQ(tt_wait_reason_string(TT_WAIT_MUTEX_LOCK), "sync.Mutex.Lock");
  ASSERT_EQ(tt_coro_foreach(find_waiter, &m), 1);
  ASSERT_EQ(atomic_load(&w.got), 0);
  ASSERT_OK(tt_mutex_unlock(&m));
  ASSERT_OK(tt_wg_wait(&w.wg));
  ASSERT_EQ(atomic_load(&w.got), 3);
  return 0;
}

TEST(mutex_waiters_get_it_in_turn) { tt_test_run(waiter_main, NULL, 2); }

/* ---- holders ------------------------------------------------------------------------------- */

static void *thread_holds(void *arg) {
  tt_mutex *m = arg;
  int64_t t0 = tt_now();
  ASSERT_OK(tt_mutex_lock(m));
  int64_t since;
  tt_id id = 7;
  ASSERT_EQ(tt_mutex_holder(m, &id, &since), TT_LOCK_THREAD);
  ASSERT_EQ(id, 0);
  ASSERT_GE(since, t0); /* a plain thread reads the clock */
  ASSERT_LE(since, tt_now());
  ASSERT_OK(tt_mutex_unlock(m));
  return NULL;
}

static int holder_main(void *p) {
  tt_mutex a = TT_MUTEX_INIT, b = TT_MUTEX_INIT;
  tt_sleep(TT_MSEC); /* the worker's coarse clock is refreshed when it looks for work */
  ASSERT_OK(tt_mutex_lock(&a));
  tt_id id;
  int64_t since;
  ASSERT_EQ(tt_mutex_holder(&a, &id, &since), TT_LOCK_CORO);
  ASSERT_EQ(id, tt_self());
  ASSERT_GT(since, 0);
  ASSERT_LE(since, tt_now());
  /* The held-lock list, in the order taken. */
  const void *objs[4];
  uint32_t kinds[4];
  ASSERT_EQ(tt__held_self(objs, kinds, 4), 1);
  ASSERT_OK(tt_mutex_lock(&b));
  ASSERT_EQ(tt__held_self(objs, kinds, 4), 2);
  ASSERT_PTR_EQ(objs[0], &a);
  ASSERT_PTR_EQ(objs[1], &b);
  ASSERT_EQ(kinds[0], 1);
  ASSERT_EQ(kinds[1], 1);
  ASSERT_OK(tt_mutex_unlock(&a)); /* not the newest */
  ASSERT_EQ(tt__held_self(objs, kinds, 4), 1);
  ASSERT_PTR_EQ(objs[0], &b);
  ASSERT_ERR(tt_mutex_unlock(&a), TT_EPERM);
  ASSERT_EQ(tt__held_self(objs, kinds, 4), 1);
  ASSERT_OK(tt_mutex_unlock(&b));
  ASSERT_EQ(tt__held_self(objs, kinds, 4), 0);
  /* Many at once (the list grows). */
  tt_mutex ms[20];
  for (int i = 0; i < 20; i++) {
    tt_mutex_init(&ms[i]);
    ASSERT_OK(tt_mutex_lock(&ms[i]));
  }
  const void *all[20];
  uint32_t allk[20];
  ASSERT_EQ(tt__held_self(all, allk, 20), 20);
  for (int i = 0; i < 20; i++)
    ASSERT_PTR_EQ(all[i], &ms[i]);
  for (int i = 0; i < 20; i++)
    ASSERT_OK(tt_mutex_unlock(&ms[i]));
  ASSERT_EQ(tt__held_self(all, allk, 20), 0);
  /* A plain thread as holder. */
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, thread_holds, &a), 0);
  pthread_join(th, NULL);
  return 0;
}

TEST(mutex_holder_since_and_held_list) { tt_test_run(holder_main, NULL, 2); }

/* ---- a holder that exits ------------------------------------------------------------------- */

static tt_id exiter_id;

static void lock_and_exit(void *arg) {
  exiter_id = tt_self();
  ASSERT_OK(tt_mutex_lock(arg));
}

static void blocked_forever(void *arg) {
  /* Nothing can wake it: tt_run's shut-down cancels it when the test ends. */
  ASSERT_ERR(tt_mutex_lock(arg), TT_ECANCELED);
}

static tt_mutex exited_m = TT_MUTEX_INIT; /* outlives the waiter, which shut-down cancels */

static int exited_main(void *p) {
  tt_mutex *m = &exited_m;
  tt_wg wg = TT_WG_INIT;
  tt_id id;
  ASSERT_OK(tt_go(lock_and_exit, m));
  while (tt_mutex_holder(m, &id, NULL) != TT_LOCK_EXITED)
    tt_sleep(100 * TT_USEC);
  ASSERT_EQ(id, exiter_id);
  ASSERT_NE(id, tt_self());
  /* Still locked; unlocking it is still misuse. */
  ASSERT_ERR(tt_mutex_unlock(m), TT_EPERM);
  ASSERT_ERR(tt_mutex_trylock(m), TT_EBUSY);
  ASSERT_ERR(tt_mutex_lock_dl(m, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_EQ(tt_mutex_holder(m, &id, NULL), TT_LOCK_EXITED);
  ASSERT_EQ(id, exiter_id);
  /* A waiter stays blocked, with its wait reason. */
  ASSERT_OK(tt_go(blocked_forever, m));
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, 1);
  tt_sleep(2 * TT_MSEC);
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  ASSERT_EQ(c.by_reason[TT_WAIT_MUTEX_LOCK], 1);
  ASSERT_EQ(tt_coro_foreach(find_waiter, m), 1);
  (void)wg;
  return 0; /* shut-down cancels the waiter */
}

TEST(mutex_holder_exits_and_waiter_stays_blocked) {
  ASSERT_OK(tt_test_run_unchecked(
      exited_main, NULL, &(tt_run_opts){.procs = 2},
      "the waiter on a mutex whose holder exited stays blocked until shut-down cancels it"));
}

/* ---- starvation ------------------------------------------------------------------------------ */

typedef struct starve {
  tt_mutex m;
  _Atomic int stop;
  _Atomic int64_t hog_locks;
  int64_t waited;
  tt_wg wg;
} starve;

/* Holds the mutex across a yield and relocks at once after each unlock: in normal mode the waiter
 * it wakes (on this worker) always finds the mutex taken again. Gives up after a while, so that a
 * starved waiter fails the test rather than hangs it. */
static void hog(void *arg) {
  starve *s = arg;
  int64_t give_up = tt_now() + 10 * TT_SEC * (int64_t)tt_test_slow();
  while (!atomic_load(&s->stop) && tt_now() < give_up) {
    ASSERT_OK(tt_mutex_lock(&s->m));
    atomic_fetch_add(&s->hog_locks, 1);
    tt_yield();
    ASSERT_OK(tt_mutex_unlock(&s->m));
  }
  tt_wg_done(&s->wg);
}

static void starved(void *arg) {
  starve *s = arg;
  while (atomic_load(&s->hog_locks) < 10)
    tt_yield();
  int64_t t0 = tt_now();
  ASSERT_OK(tt_mutex_lock(&s->m));
  s->waited = tt_now() - t0;
  atomic_store(&s->stop, 1);
  ASSERT_OK(tt_mutex_unlock(&s->m));
  tt_wg_done(&s->wg);
}

/* After 1 ms of waiting the mutex hands itself to the waiter (Go's starvation mode). */
static int starve_main(void *p) {
  starve s = {.m = TT_MUTEX_INIT, .wg = TT_WG_INIT};
  ASSERT_OK(tt_wg_add(&s.wg, 2));
  ASSERT_OK(tt_go(hog, &s));
  ASSERT_OK(tt_go(starved, &s));
  ASSERT_OK(tt_wg_wait(&s.wg));
  ASSERT_GE(s.waited, TT_MSEC); /* normal mode first: the hog barged in for a millisecond */
  ASSERT_LT(s.waited, TT_SEC * (int64_t)tt_test_slow());
  return 0;
}

TEST(mutex_starvation_mode_serves_a_waiter) { tt_test_run(starve_main, NULL, 1); }

/* ---- stress -----------------------------------------------------------------------------------
 */

typedef struct stress {
  tt_mutex m;
  int64_t counter, expect; /* both under m */
  int64_t iters;
  tt_wg wg;
  _Atomic int threads_done;
} stress;

static void stress_ops(stress *s, uint64_t seed) {
  for (int64_t i = 0; i < s->iters; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    int op = (int)(seed >> 60) & 3;
    int r;
    if (op == 0)
      r = tt_mutex_lock(&s->m);
    else if (op == 1)
      r = tt_mutex_trylock(&s->m);
    else
      r = tt_mutex_lock_dl(&s->m, tt_now() + (int64_t)(seed >> 40 & 0xff) * TT_USEC);
    if (r == TT_EBUSY || r == TT_ETIMEDOUT)
      continue;
    ASSERT_OK(r);
    s->counter++;
    s->expect++;
    if ((seed >> 20 & 15) == 0)
      tt_yield();
    ASSERT_EQ(s->counter, s->expect);
    ASSERT_ERR(tt_mutex_lock(&s->m), TT_EDEADLK);
    ASSERT_OK(tt_mutex_unlock(&s->m));
    ASSERT_ERR(tt_mutex_unlock(&s->m), TT_EPERM);
  }
}

static void stress_coro(void *arg) {
  stress *s = arg;
  stress_ops(s, (uint64_t)tt_self() * 0x9e3779b97f4a7c15ULL);
  tt_wg_done(&s->wg);
}

static void *stress_thread(void *arg) {
  stress *s = arg;
  stress_ops(s, (uint64_t)(uintptr_t)&s + 12345);
  atomic_fetch_add(&s->threads_done, 1);
  return NULL;
}

static int stress_main(void *p) {
  stress s = {.m = TT_MUTEX_INIT, .wg = TT_WG_INIT, .iters = SCALED(5000, 200)};
  int nco = (int)SCALED(100, 8);
  ASSERT_OK(tt_wg_add(&s.wg, nco));
  for (int i = 0; i < nco; i++)
    ASSERT_OK(tt_go(stress_coro, &s));
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    ASSERT_EQ(pthread_create(&th[i], NULL, stress_thread, &s), 0);
  ASSERT_OK(tt_wg_wait(&s.wg));
  while (atomic_load(&s.threads_done) < 2)
    tt_sleep(100 * TT_USEC);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  ASSERT_EQ(s.counter, s.expect);
  ASSERT_EQ(tt_mutex_holder(&s.m, NULL, NULL), TT_LOCK_FREE);
  return 0;
}

TEST(mutex_stress_random_ops) { tt_test_run(stress_main, NULL, 2); }
