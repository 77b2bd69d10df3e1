/* SPDX-License-Identifier: MIT */
/* The blocking pool: tt_blocking runs foreign code that may block on a bounded pool of plain
 * threads while the calling coroutine waits, parked (Tokio's spawn_blocking; Go's "syscall" state).
 *
 * Design
 * ------
 * A job (heap-allocated: it outlives the caller's frame once abandoned) goes through one lock,
 * the pool's, which protects the FIFO queue, the threads and every job's state:
 *
 *   QUEUED   in pool.queue, its caller's waiter in j->wt;
 *   RUNNING  a pool thread took it (t->job) and runs fn with the lock released;
 *   DONE     fn returned but the caller's token had already been won by its timer or a
 *            cancellation: the job waits in pool.unclaimed for the caller to come back for it.
 *
 * j->wt is the caller's tt__waiter while the caller waits for the job, NULL once the caller is
 * gone (woken, or left after its own timeout or cancellation). Ownership of the job follows it:
 *   - the pool thread that finishes fn claims the caller's token under the lock (the result
 *     written first into the caller's slot, wt->data), sets j->wt = NULL, unlocks, commits the
 *     wake and frees the job: a woken caller never touches the job again (the waiter protocol of
 *     src/sync/wg.c), so a caller that is woken and then discarded at shut-down leaks nothing;
 *   - a caller whose wait ends with its own result (TT_ETIMEDOUT, TT_ECANCELED, ...) takes the
 *     lock and sets j->wt = NULL: a QUEUED job it takes off the queue, a DONE one off the
 *     unclaimed list, and it calls `abandoned` (ran 0 or 1) and frees the job itself; a RUNNING
 *     one it leaves to the thread, which calls `abandoned` (ran 1) and frees it when fn returns.
 * Every transition happens under the one lock, so exactly one party calls `abandoned` and frees.
 * The lock that hides the waiter from the pool threads is the pool lock itself, released by the
 * park commit (tt__wait), so a fast job cannot complete before its caller is parked.
 *
 * Threads. A thread is created on demand when a job is queued with no idle thread and no thread
 * already on its way to the queue ("takers": starting, woken for a job, or just back from one, so
 * that a caller that calls again as soon as it is woken reuses the same thread), up to pool.max;
 * beyond, jobs wait in the queue. The caller reserves the new thread in the critical section that
 * queues its job (so no other caller counts on it) and starts it from its park commit, with the
 * lock released (pthread_create costs tens of microseconds of the worker's time, once per thread;
 * Go's scheduler also starts its Ms itself). Every thread that exits first wakes idle takers for
 * the jobs that would otherwise have none, so a queued job always has a thread coming: a taker,
 * or a busy thread that looks at the queue when its job ends. When the pool is left with no
 * thread at all and cannot start one, every queued caller is woken with TT_ENOMEM. An idle thread
 * sleeps on a futex word of its own, on a doubly-linked idle list: a submitter wakes the most
 * recently idle one (warm), and one idle for idle_ns (10 s) takes itself off the list and exits, so
 * an idle process keeps no extra threads for long. Only whoever takes a thread off the idle list
 * (under the lock) decides that it works; the futex word only ends its sleep. Threads above a
 * lowered bound exit when they next look for work. An exiting thread joins the one that exited
 * before it (pool.zombie), so at most one exited thread is left unjoined, and shut-down joins it:
 * no thread ever blocks a worker in pthread_join.
 *
 * Shut-down (tt__blocking_stop, from tt_run once the workers are joined, so no caller runs): the
 * callers still attached to jobs were discarded, so every job with j->wt != NULL is abandoned on
 * their behalf: queued and unclaimed ones on the spot (ran 0 / 1), running ones by their threads.
 * Idle threads are woken and joined, and commits in progress finished (a commit touches the
 * caller's worker, freed next); threads still inside fn get until the end of the grace period, then
 * are detached (they free their own record and job when fn returns, touching only the static lock,
 * so a later run is unaffected) and reported.
 *
 * Plain threads run fn themselves: they may block, and a pool hop would only add latency.
 *
 * Lock order: the pool lock is a leaf, except that tt__wait releases it in the park commit, after
 * arming the caller's timer (the worker's private heap: no lock); a thread start that fails in a
 * park commit takes it again, to undo the reservation. Never held across fn, an
 * abandoned callback, pthread_create or pthread_join.
 *
 * Rejected: a lock per job (its state is shared by the queue, a thread and the caller; one lock
 * makes each transition, shut-down's included, atomic; a blocking call costs a thread hand-off —
 * microseconds — so three short critical sections on one lock are noise next to it); reference
 * counts between caller and thread (a caller discarded at shut-down never drops its count; with
 * ownership passed under the lock, shut-down can find and free every job); waking idle threads
 * through one shared futex word (thundering herds, and no way to know how many will come). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_LIMIT 10000 /* as TT_BLOCKING_MAX's limit in knobs.c */

enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

typedef struct job {
  struct job *next, *prev; /* pool.queue or pool.unclaimed */
  tt_blocking_fn fn;
  void *arg;
  void (*abandoned)(void *arg, int ran, intptr_t result);
  tt__waiter *wt;  /* the caller's waiter while it waits for this job; NULL once it is gone */
  intptr_t result; /* DONE: what fn returned */
  int state;       /* JOB_* */
} job;

typedef struct job_list {
  job *head, *tail;
} job_list;

typedef struct pthr {
  struct pthr *next, *prev;   /* pool.threads */
  struct pthr *inext, *iprev; /* pool.idle while idle; inext also links a batch being started */
  pthread_t tid;              /* set by the thread itself when it starts */
  job *job;                   /* the job it runs */
  _Atomic uint32_t wake;      /* futex word of its idle sleep */
  bool idle;                  /* on pool.idle */
  bool taker;                 /* started or woken to take a job from the queue (pool.ntakers) */
  bool detached;              /* left behind by shut-down: frees itself when fn returns */
} pthr;

/* Static, not in tt__rt: a thread detached at shut-down still takes the lock after the run is
 * over, and the next run reuses the pool. Everything below the lock is under it. */
static struct {
  tt__lock lock;
  bool open; /* between tt__blocking_start and tt__blocking_stop */
  int max;
  int64_t idle_ns;
  job_list queue;
  int qlen;
  job_list unclaimed;
  pthr *threads; /* every thread of this run that has not exited or been detached */
  pthr *idle;    /* idle threads, most recently idle first */
  int nthreads, nidle, nbusy;
  int nstarting;   /* created, not yet running (their tid is not known yet) */
  int ntakers;     /* starting or woken, not yet back at the queue */
  int ncommitting; /* threads between a won claim and the end of its commit */
  pthr *zombie;    /* the last thread that exited, not yet joined */
  /* Futex word: bumped at every change shut-down waits for (threads starting, finishing a job,
   * exiting). */
  _Atomic uint32_t seq;
} pool;

/* ---- Lists ------------------------------------------------------------------------------- */

static void list_push(job_list *l, job *j) {
  j->next = NULL;
  j->prev = l->tail;
  if (l->tail)
    l->tail->next = j;
  else
    l->head = j;
  l->tail = j;
}

static void list_unlink(job_list *l, job *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    l->head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    l->tail = j->prev;
  j->next = j->prev = NULL;
}

static void idle_unlink(pthr *t) {
  if (t->iprev)
    t->iprev->inext = t->inext;
  else
    pool.idle = t->inext;
  if (t->inext)
    t->inext->iprev = t->iprev;
  t->inext = t->iprev = NULL;
  t->idle = false;
  pool.nidle--;
}

static void thread_unlink(pthr *t) {
  if (t->prev)
    t->prev->next = t->next;
  else
    pool.threads = t->next;
  if (t->next)
    t->next->prev = t->prev;
  t->next = t->prev = NULL;
}

/* Something shut-down may wait for changed; returns whether it waits (then the caller wakes it
 * after unlocking: the word is static, so the late wake is safe). Lock held. */
static bool changed_locked(void) {
  /* relaxed: the waiter reads the word under the lock and re-checks the pool under the lock;
   * the word only has to differ for its futex wait to return. */
  atomic_fetch_add_explicit(&pool.seq, 1, memory_order_relaxed);
  return !pool.open;
}

static void changed_wake(bool wake) {
  if (wake)
    tt__futex_wake(&pool.seq, 1);
}

/* Wakes idle thread t off the idle list, as a taker of a queued job or (taker false) to make it
 * look at the pool again (shut-down, a lowered bound). Lock held: t cannot exit before it has the
 * lock, so the wake never touches a freed record. */
static void idle_wake(pthr *t, bool taker) {
  idle_unlink(t);
  if (taker) {
    t->taker = true;
    pool.ntakers++;
  }
  /* relaxed: the word only ends the sleep; t decides what to do under the lock. */
  atomic_store_explicit(&t->wake, 1, memory_order_relaxed);
  tt__futex_wake(&t->wake, 1);
}

/* Wakes idle threads until every queued job has a thread on its way. Lock held. */
static void ensure_takers_locked(void) {
  while (pool.qlen > pool.ntakers && pool.idle)
    idle_wake(pool.idle, true);
}

/* ---- Pool threads ------------------------------------------------------------------------- */

static void *pool_main(void *p);

/* Reserves a new thread that will take a job from the queue. Lock held. NULL when out of memory. */
static pthr *thread_reserve(void) {
  pthr *t = tt__calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  t->next = pool.threads;
  if (pool.threads)
    pool.threads->prev = t;
  pool.threads = t;
  pool.nthreads++;
  pool.nstarting++;
  t->taker = true;
  pool.ntakers++;
  return t;
}

/* The pool has no thread left and could not start one: every queued job's caller is woken with
 * TT_ENOMEM (and takes its job off the queue itself, as after a timeout). Lock held; returns the
 * claimed waiters, linked through their next fields, to commit once it is released. */
static tt__waiter *orphans_claim_locked(void) {
  tt__waiter *list = NULL;
  if (pool.nthreads > 0)
    return NULL;
  for (job *j = pool.queue.head; j; j = j->next) {
    if (j->wt && tt__wake_claim(j->wt, TT_ENOMEM)) {
      j->wt->next = list;
      list = j->wt;
    }
  }
  return list;
}

/* Starts a reserved thread; lock not held. 0, or TT_ENOMEM with the reservation undone. */
static int thread_start(pthr *t) {
  pthread_t tid;
  if (!tt__fault(TT__FAULT_THREAD) && pthread_create(&tid, NULL, pool_main, t) == 0)
    return 0;
  tt__lock_acquire(&pool.lock);
  thread_unlink(t);
  pool.nthreads--;
  pool.nstarting--;
  pool.ntakers--;
  tt__waiter *orphans = orphans_claim_locked();
  bool w = changed_locked();
  tt__lock_release(&pool.lock);
  changed_wake(w);
  while (orphans) {
    tt__waiter *nx = orphans->next; /* before the commit, after which it may die */
    tt__wake_commit(orphans);
    orphans = nx;
  }
  free(t);
  return TT_ENOMEM;
}

/* Runs j on t. Lock held on entry and on return (released while fn runs). */
static void run_job(pthr *t, job *j) {
  j->state = JOB_RUNNING;
  t->job = j;
  pool.nbusy++;
  tt__lock_release(&pool.lock);

  intptr_t r = j->fn(j->arg);

  tt__lock_acquire(&pool.lock);
  t->job = NULL;
  if (!t->detached) {
    /* It goes back to the queue next: a taker, so that the caller it wakes, calling again at
     * once, finds a thread on its way rather than starting another (sequential calls reuse one
     * thread). */
    t->taker = true;
    pool.ntakers++;
  }
  tt__waiter *wake = NULL;
  if (j->wt) {
    /* The caller is still attached: the result goes into its slot first, which lives while
     * j->wt is set (the caller clears it under this lock before it returns); the claim's acq_rel
     * makes it visible to the caller once woken. */
    *(intptr_t *)j->wt->data = r;
    if (tt__wake_claim(j->wt, 0)) {
      wake = j->wt;
      j->wt = NULL;
      /* Shut-down waits for the commit, whatever the time: it touches the caller's descriptor
       * and worker, which are freed once the pool is torn down. */
      pool.ncommitting++;
    } else {
      /* Its timer or a cancellation won the token: it will come back for the job. */
      j->state = JOB_DONE;
      j->result = r;
      list_push(&pool.unclaimed, j);
      j = NULL;
    }
  }
  if (j) {
    /* Delivered (wake), or abandoned by a caller that left while fn ran: the job is ours. */
    tt__lock_release(&pool.lock);
    if (wake)
      tt__wake_commit(wake); /* the last touch of the waiter */
    else if (j->abandoned)
      j->abandoned(j->arg, 1, r);
    free(j);
    tt__lock_acquire(&pool.lock);
    if (wake)
      pool.ncommitting--; /* t cannot have been detached meanwhile: shut-down waits for this */
  }
  if (!t->detached) {
    pool.nbusy--;
    bool w = changed_locked();
    if (w) {
      tt__lock_release(&pool.lock);
      changed_wake(w);
      tt__lock_acquire(&pool.lock);
    }
  }
}

/* Sleeps idle until woken or idle_ns pass. Lock held on entry and on return. Returns whether t
 * timed out with nobody having taken it off the idle list (then it is off the list, and exits). */
static bool idle_wait(pthr *t) {
  t->iprev = NULL;
  t->inext = pool.idle;
  if (pool.idle)
    pool.idle->iprev = t;
  pool.idle = t;
  t->idle = true;
  pool.nidle++;
  atomic_store_explicit(&t->wake, 0, memory_order_relaxed); /* relaxed: see idle_wake */
  int64_t deadline = tt__clock() + pool.idle_ns;
  tt__lock_release(&pool.lock);
  /* relaxed: the word only ends the sleep; what to do is decided under the lock below. */
  while (atomic_load_explicit(&t->wake, memory_order_relaxed) == 0) {
    if (tt__futex_wait(&t->wake, 0, deadline) == TT_ETIMEDOUT)
      break;
  }
  tt__lock_acquire(&pool.lock);
  if (!t->idle)
    return false; /* woken: as a taker, or to look at the pool again */
  idle_unlink(t);
  return true;
}

/* t leaves the pool: joins the thread that left before it, and is joined by the next one (or by
 * shut-down). Lock held on entry; released. */
static void thread_exit(pthr *t) {
  thread_unlink(t);
  pool.nthreads--;
  ensure_takers_locked(); /* a taker leaving (above a lowered bound) hands its job on */
  pthr *prev = pool.zombie;
  pool.zombie = t;
  bool w = changed_locked();
  tt__lock_release(&pool.lock);
  changed_wake(w);
  if (prev) {
    pthread_join(prev->tid, NULL);
    free(prev);
  }
}

static void *pool_main_body(void *p) {
  pthr *t = p;
  pthread_setname_np(pthread_self(), "tt-blocking");
  tt__lock_acquire(&pool.lock);
  t->tid = pthread_self();
  pool.nstarting--;
  bool w = changed_locked();
  if (w) {
    tt__lock_release(&pool.lock);
    changed_wake(w);
    tt__lock_acquire(&pool.lock);
  }
  for (;;) {
    if (t->taker) {
      t->taker = false;
      pool.ntakers--;
    }
    if (!pool.open || pool.nthreads > pool.max)
      break;
    job *j = pool.queue.head;
    if (j) {
      list_unlink(&pool.queue, j);
      pool.qlen--;
      run_job(t, j);
      if (t->detached) {
        tt__lock_release(&pool.lock);
        free(t);
        return NULL;
      }
      continue;
    }
    if (idle_wait(t))
      break;
  }
  thread_exit(t);
  return NULL;
}

/* Counted as one of the runtime's own threads while it lives (the deadlock check's count). */
static void *pool_main(void *arg) {
  atomic_fetch_add_explicit(&tt__threads_internal, 1, memory_order_release);
  void *r = pool_main_body(arg);
  atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
  return r;
}

/* ---- Callers ------------------------------------------------------------------------------ */

/* The park commit of a caller: runs once its context is saved, so nothing can wake it too early.
 * Lets the pool threads in, then starts the thread the caller reserved (pthread_create takes tens
 * of microseconds: never under the lock). */
struct submit_commit {
  pthr *t; /* NULL: no thread to start */
};

static void submit_unlock(void *p) {
  struct submit_commit *sc = p;
  tt__lock_release(&pool.lock);
  if (sc->t)
    thread_start(sc->t);
}

/* Queues j for the calling coroutine and waits for it. Returns 0 with fn's result in *res, or an
 * error after which j has been abandoned (its callback called or left to its thread). */
static int submit_wait(tt__coro *co, job *j, int64_t deadline, intptr_t *res) {
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  intptr_t slot = 0;
  wt.data = &slot;
  int r = 0;
  struct submit_commit sc = {NULL};
  tt__lock_acquire(&pool.lock);
  if (!pool.open) {
    r = TT_ESHUTDOWN;
    goto fail_locked;
  }
  j->wt = &wt;
  j->state = JOB_QUEUED;
  list_push(&pool.queue, j);
  pool.qlen++;
  /* A thread must be on its way for every queued job: an idle one woken, else a new one (reserved
   * here, in the same critical section as the job, so no other caller can count on it), else a
   * busy one that comes back when its job ends. */
  ensure_takers_locked();
  if (pool.qlen > pool.ntakers && pool.nthreads < pool.max) {
    sc.t = thread_reserve();
    if (sc.t == NULL && pool.nthreads == 0) {
      list_unlink(&pool.queue, j);
      pool.qlen--;
      r = TT_ENOMEM;
      goto fail_locked;
    }
  }
  r = tt__wait_fn(&wt, TT_WAIT_BLOCKING_CALL, j, deadline, submit_unlock, &sc);
  if (!tt__wait_self_result(r)) {
    /* Woken by the job's thread, which owns (and frees) the job now. */
    *res = slot;
    return r;
  }
  /* Our own result: our timer, a cancellation, no thread to be had (TT_ENOMEM). The job is ours
   * to leave. */
  tt__lock_acquire(&pool.lock);
  j->wt = NULL;
  int ran = -1;
  intptr_t jr = 0;
  if (j->state == JOB_QUEUED) {
    list_unlink(&pool.queue, j);
    pool.qlen--;
    ran = 0;
  } else if (j->state == JOB_DONE) {
    list_unlink(&pool.unclaimed, j);
    ran = 1;
    jr = j->result;
  } /* else RUNNING: its thread calls abandoned and frees it when fn returns */
  tt__lock_release(&pool.lock);
  if (ran >= 0) {
    if (j->abandoned)
      j->abandoned(j->arg, ran, jr);
    free(j);
  }
  return r;

fail_locked:
  j->wt = NULL;
  tt__lock_release(&pool.lock);
  if (j->abandoned)
    j->abandoned(j->arg, 0, 0);
  free(j);
  return r;
}

static int blocking_call(tt_blocking_fn fn, void *arg, int64_t deadline,
                         void (*abandoned)(void *, int, intptr_t), intptr_t *result) {
  if (fn == NULL)
    return TT_EINVAL;
  tt__coro *co = tt__self();
  int r = tt__block_check(co);
  if (r == 0 && deadline != TT_FOREVER && deadline <= tt__clock())
    r = TT_ETIMEDOUT; /* before any work: fn would never run */
  if (r != 0)
    goto fail;
  if (co == NULL) {
    /* A plain thread may block: it runs fn itself. */
    intptr_t v = fn(arg);
    if (result)
      *result = v;
    return 0;
  }
  job *j = tt__malloc(sizeof *j);
  if (j == NULL) {
    r = TT_ENOMEM;
    goto fail;
  }
  memset(j, 0, sizeof *j);
  j->fn = fn;
  j->arg = arg;
  j->abandoned = abandoned;
  intptr_t v;
  r = submit_wait(co, j, deadline, &v);
  if (r == 0 && result)
    *result = v;
  return r;

fail:
  if (abandoned)
    abandoned(arg, 0, 0);
  return r;
}

int tt_blocking_opt(tt_blocking_fn fn, void *arg, const tt_blocking_opts *opts, intptr_t *result) {
  if (opts == NULL)
    return blocking_call(fn, arg, TT_FOREVER, NULL, result);
  return blocking_call(fn, arg, opts->deadline == 0 ? TT_FOREVER : opts->deadline, opts->abandoned,
                       result);
}

int tt_blocking(tt_blocking_fn fn, void *arg, intptr_t *result) {
  return blocking_call(fn, arg, TT_FOREVER, NULL, result);
}

int tt_blocking_dl(tt_blocking_fn fn, void *arg, intptr_t *result, int64_t deadline) {
  return blocking_call(fn, arg, deadline, NULL, result);
}

int tt_blocking_set_max(int n) {
  if (n < 0 || n > MAX_LIMIT)
    return TT_EINVAL;
  tt__lock_acquire(&pool.lock);
  if (!pool.open || !tt_running()) {
    tt__lock_release(&pool.lock);
    return TT_ENOTRUNNING;
  }
  int prev = pool.max;
  if (n > 0)
    pool.max = n;
  /* Lowered: idle threads above the bound go now (busy ones when they finish their job). */
  for (int over = pool.nthreads - pool.max; over > 0 && pool.idle; over--)
    idle_wake(pool.idle, false);
  /* Raised: threads for the jobs that wait. */
  ensure_takers_locked();
  pthr *batch = NULL;
  while (pool.qlen > pool.ntakers && pool.nthreads < pool.max) {
    pthr *t = thread_reserve();
    if (t == NULL)
      break;
    t->inext = batch;
    batch = t;
  }
  tt__lock_release(&pool.lock);
  while (batch) {
    pthr *t = batch;
    batch = t->inext; /* before the start, after which t belongs to its thread */
    t->inext = NULL;
    thread_start(t); /* a failure is no error: the running threads serve the queue */
  }
  return prev;
}

int tt_blocking_stats_get(tt_blocking_stats *out) {
  if (out == NULL)
    return TT_EINVAL;
  memset(out, 0, sizeof *out);
  tt__lock_acquire(&pool.lock);
  int r = pool.open ? 0 : TT_ENOTRUNNING;
  if (r == 0) {
    out->max = pool.max;
    out->threads = pool.nthreads;
    out->busy = pool.nbusy;
    out->idle = pool.nidle;
    out->queued = pool.qlen;
  }
  tt__lock_release(&pool.lock);
  return r;
}

/* ---- Start-up and shut-down -------------------------------------------------------------- */

void tt__blocking_start(void) {
  tt__lock_acquire(&pool.lock);
  TT_ASSERT(pool.threads == NULL && pool.nthreads == 0 && pool.queue.head == NULL);
  pool.open = true;
  pool.max = tt__rt.blocking_max;
  pool.idle_ns = tt__rt.blocking_idle_ns;
  tt__lock_release(&pool.lock);
}

/* Names a job's function: "name (module)" when the dynamic symbol table knows it. */
static void write_fn(int fd, tt_blocking_fn fn) {
  Dl_info di;
  if (dladdr((const void *)fn, &di) && di.dli_sname && di.dli_saddr == (void *)fn) {
    tt__write_str(fd, di.dli_sname);
    tt__write_str(fd, " (");
    tt__write_str(fd, di.dli_fname ? di.dli_fname : "?");
    tt__write_str(fd, ")");
    return;
  }
  tt__write_pc(fd, (const char *)fn + 1); /* it looks up the byte before a return address */
}

static void abandon_list(job *j, int ran) {
  while (j) {
    job *nx = j->next;
    if (j->abandoned)
      j->abandoned(j->arg, ran, ran ? j->result : 0);
    free(j);
    j = nx;
  }
}

void tt__blocking_stop(int64_t deadline) {
  tt__lock_acquire(&pool.lock);
  pool.open = false;
  /* No coroutine runs any more: whoever is still attached to a job was discarded. */
  job *queued = pool.queue.head, *unclaimed = pool.unclaimed.head;
  memset(&pool.queue, 0, sizeof pool.queue);
  memset(&pool.unclaimed, 0, sizeof pool.unclaimed);
  pool.qlen = 0;
  for (pthr *t = pool.threads; t; t = t->next)
    if (t->job)
      t->job->wt = NULL; /* its thread abandons it when fn returns */
  while (pool.idle)
    idle_wake(pool.idle, false);
  tt__lock_release(&pool.lock);
  abandon_list(queued, 0);
  abandon_list(unclaimed, 1);

  /* Threads that are not inside a job exit at once: wait for them whatever the time. Those inside
   * one get until the deadline. */
  tt__lock_acquire(&pool.lock);
  for (;;) {
    bool must = pool.nstarting > 0 || pool.nthreads > pool.nbusy || pool.ncommitting > 0;
    if (!must && (pool.nthreads == 0 || tt__clock() >= deadline))
      break;
    /* relaxed: read under the lock, and bumped under it by every change waited for; a change
     * after the unlock makes the futex wait return at once. */
    uint32_t seen = atomic_load_explicit(&pool.seq, memory_order_relaxed);
    tt__lock_release(&pool.lock);
    tt__futex_wait(&pool.seq, seen, must ? -1 : deadline);
    tt__lock_acquire(&pool.lock);
  }
  int fd = tt__rt.report_fd;
  for (pthr *t = pool.threads, *nx; t; t = nx) {
    nx = t->next;
    if (fd >= 0 && t->job) {
      tt__write_str(fd, "tether: a blocking call to ");
      write_fn(fd, t->job->fn);
      tt__write_str(fd, " is still running after the shut-down grace period; its thread is "
                        "detached and exits when it returns\n");
    }
    t->detached = true;
    t->next = t->prev = NULL;
    pthread_detach(t->tid);
  }
  pool.threads = NULL;
  pool.nthreads = pool.nbusy = pool.ntakers = 0;
  pthr *z = pool.zombie;
  pool.zombie = NULL;
  tt__lock_release(&pool.lock);
  if (z) {
    pthread_join(z->tid, NULL);
    free(z);
  }
}
