/* SPDX-License-Identifier: MIT */
/* Coroutine-aware synchronisation. Every type is an opaque, stack-allocatable struct with a static
 * initializer; each works between coroutines on any workers and plain threads.
 *
 * Destroying. Each type has a tt_X_destroy, which is optional (none of them owns memory) but makes
 * a use after the end of the object's life a clear error instead of a hang: it returns TT_EBUSY and
 * changes nothing while the object is in use (held, waited on, counting, units out: see each), and
 * otherwise poisons it and returns 0. Every later call on a poisoned object — lock, unlock, wait,
 * signal, add, acquire, release, do, the queries, a second destroy — returns TT_EINVAL at once,
 * from a coroutine or a plain thread, whatever it would have waited for. tt_X_init (or assigning
 * the static initializer) makes it usable again. The rule is pthreads': destroy only what no one
 * uses. A destroy that races an operation on the same object from another thread is the caller's
 * bug (the operation may succeed on the object before it is poisoned, or fail with TT_EINVAL); it
 * cannot corrupt the runtime, and no caller is left parked on a destroyed object. */
#ifndef TETHER_SYNC_H
#define TETHER_SYNC_H

#include "common.h"

TT_BEGIN_DECLS

/* A wait group (Go's sync.WaitGroup): a counter that tt_wg_wait waits to reach zero.
 * Initialise with TT_WG_INIT or tt_wg_init; tt_wg_destroy is optional. */
typedef struct tt_wg {
  _Alignas(8) unsigned char opaque_[48];
} tt_wg;

/* clang-format off */
#define TT_WG_INIT {{0}}
/* clang-format on */

/* Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN void tt_wg_init(tt_wg *wg);

/* Poisons wg (see "Destroying" above): 0, TT_EBUSY (the counter is not zero, or a waiter has not
 * yet left), or TT_EINVAL (NULL, or destroyed already). Calls: never blocks; any thread; not from
 * signal handlers. */
TT_EXTERN int tt_wg_destroy(tt_wg *wg);

/* Adds delta (which may be negative) to the counter; when it reaches zero every waiter wakes.
 * Returns 0, or TT_EINVAL (the counter would go negative, or above 2^31 - 1, as Go's; it is left
 * unchanged; Go panics; or wg is NULL or destroyed). A Wait that returns may free the wait group at
 * once, as may a Done. Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_wg_add(tt_wg *wg, int64_t delta);

/* tt_wg_add(wg, -1). Calls: as tt_wg_add. */
TT_EXTERN int tt_wg_done(tt_wg *wg);

/* Waits until the counter is zero (wait reason "sync.WaitGroup.Wait"). Returns 0, or TT_EINVAL
 * (NULL, destroyed), TT_ECANCELED, TT_ESHUTDOWN, TT_ENOTRUNNING (plain thread, runtime not running,
 * counter not zero). Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_wg_wait(tt_wg *wg);

/* tt_wg_wait with a deadline: TT_ETIMEDOUT when it passes first (the timed wait that Go builds
 * from a goroutine and a select, without the goroutine that leaks). Calls: as tt_wg_wait. */
TT_EXTERN int tt_wg_wait_dl(tt_wg *wg, int64_t deadline);

/* The counter's current value (TT_EINVAL for a NULL or destroyed wg). Calls: never blocks; any
 * thread; not from signal handlers. */
TT_EXTERN int64_t tt_wg_count(tt_wg *wg);

/* ---- Lock holders ---------------------------------------------------------------------------
 *
 * Mutexes and rwmutexes are owned: each records who holds it and since when. A holder is a
 * coroutine (named by its id; ids are never reused within a run) or a plain thread (every thread
 * that takes a tether lock gets a token of its own, drawn once per thread; the queries report a
 * thread's id as 0). A coroutine that exits while holding a lock leaves it held — as Go would —
 * and the lock remembers that its holder exited: its waiters stay blocked (the leak checker reports
 * them), and an unlock by anyone else still fails with TT_EPERM. */
enum {
  TT_LOCK_FREE = 0,   /* not held */
  TT_LOCK_CORO = 1,   /* held by a live coroutine (id given) */
  TT_LOCK_THREAD = 2, /* held by a plain thread (id 0) */
  TT_LOCK_EXITED = 3, /* held by a coroutine that exited holding it (id given): held forever */
};

/* A mutex (Go's sync.Mutex) that is owned, like an error-checking pthread mutex: only its holder
 * may unlock it, and a holder that locks it again gets TT_EDEADLK instead of deadlocking.
 * Initialise with TT_MUTEX_INIT, tt_mutex_init or all-zero bytes (unlocked); tt_mutex_destroy is
 * optional, and every call below returns TT_EINVAL on a destroyed mutex. Uncontended, a lock and an
 * unlock are one compare-and-swap each. Contended, it behaves much as Go's: a waiter that is woken
 * competes with newcomers, and one that has waited more than 1 ms and loses again is handed the
 * mutex directly by the next unlock, so no waiter starves. */
typedef struct tt_mutex {
  _Alignas(8) unsigned char opaque_[48];
} tt_mutex;

/* clang-format off */
#define TT_MUTEX_INIT {{0}}
/* clang-format on */

/* Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN void tt_mutex_init(tt_mutex *m);

/* Poisons m (see "Destroying" above): 0, TT_EBUSY (m is held — by anyone, a coroutine that exited
 * holding it included — or someone waits for it), or TT_EINVAL (NULL, or destroyed already).
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_mutex_destroy(tt_mutex *m);

/* Locks m, waiting while another holds it (wait reason "sync.Mutex.Lock"). Returns 0 holding it,
 * or: TT_EINVAL (m NULL), TT_EDEADLK (the caller holds it already), TT_ECANCELED (the caller was
 * cancelled while it had to wait), TT_ESHUTDOWN, TT_ENOTRUNNING (plain thread, runtime not
 * running, and the mutex is held), TT_ENOMEM (the held-lock list could not grow). An uncontended
 * lock succeeds even for a cancelled caller.
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_mutex_lock(tt_mutex *m);

/* tt_mutex_lock with a deadline (absolute tt_now() ns; TT_FOREVER: none): TT_ETIMEDOUT when it
 * passes before the mutex could be had. Calls: as tt_mutex_lock. */
TT_EXTERN int tt_mutex_lock_dl(tt_mutex *m, int64_t deadline);

/* Locks m if it is free: 0, TT_EBUSY (another holds it), TT_EDEADLK (the caller does), TT_EINVAL,
 * TT_ENOMEM. Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_mutex_trylock(tt_mutex *m);

/* Unlocks m, waking a waiter if there is one. Returns 0, TT_EINVAL (m NULL) or TT_EPERM (the
 * caller does not hold m: it is unlocked, or held by another party; m is left as it was).
 * Calls: never blocks; any thread (the holder); not from signal handlers. */
TT_EXTERN int tt_mutex_unlock(tt_mutex *m);

/* Who holds m: returns TT_LOCK_FREE, TT_LOCK_CORO, TT_LOCK_THREAD or TT_LOCK_EXITED (or TT_EINVAL
 * for a NULL or destroyed m) and, when id / since are not NULL, stores the holder's coroutine id (0
 * for a plain thread or a free mutex) and when it took the mutex (tt_now() clock, coarse: within a
 * few dozen scheduler switches; 0 when free). A snapshot: the holder may change as it returns.
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_mutex_holder(const tt_mutex *m, tt_id *id, int64_t *since);

/* A reader/writer mutex (Go's sync.RWMutex), owned in both modes: any number of readers or one
 * writer. It prefers writers as Go's does: once a writer waits, new readers wait behind it, so a
 * coroutine that read-locks recursively while a writer waits deadlocks (as in Go; the leak checker
 * reports it). When a writer unlocks, the readers waiting then all get in before the next writer.
 * Read holds are recorded per coroutine (a plain thread's read holds are counted, not named);
 * only a party holding a read lock may release one. Initialise with TT_RWMUTEX_INIT,
 * tt_rwmutex_init or all-zero bytes; tt_rwmutex_destroy is optional, and every call below returns
 * TT_EINVAL on a destroyed rwmutex. */
typedef struct tt_rwmutex {
  _Alignas(8) unsigned char opaque_[96];
} tt_rwmutex;

/* clang-format off */
#define TT_RWMUTEX_INIT {{0}}
/* clang-format on */

/* Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN void tt_rwmutex_init(tt_rwmutex *rw);

/* Poisons rw (see "Destroying" above): 0, TT_EBUSY (read- or write-locked — by anyone, coroutines
 * that exited holding it included — or someone waits), or TT_EINVAL (NULL, or destroyed already).
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_rwmutex_destroy(tt_rwmutex *rw);

/* Takes a read lock, waiting while a writer holds it or waits for it (wait reason
 * "sync.RWMutex.RLock"). A party may hold several read locks (each needs its runlock). Returns 0,
 * TT_EINVAL, TT_EDEADLK (the caller holds the write lock), TT_EAGAIN (2^30 - 1 read holds
 * already), TT_ECANCELED, TT_ESHUTDOWN, TT_ENOTRUNNING, TT_ENOMEM (as tt_mutex_lock).
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_rwmutex_rlock(tt_rwmutex *rw);

/* tt_rwmutex_rlock with a deadline: TT_ETIMEDOUT when it passes first. Calls: as
 * tt_rwmutex_rlock. */
TT_EXTERN int tt_rwmutex_rlock_dl(tt_rwmutex *rw, int64_t deadline);

/* Takes a read lock if that needs no waiting: 0, TT_EBUSY, or the errors of tt_rwmutex_rlock that
 * need no wait. Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_rwmutex_tryrlock(tt_rwmutex *rw);

/* Releases one of the caller's read locks (the last one out lets a waiting writer in). Returns 0,
 * TT_EINVAL, or TT_EPERM (the caller holds no read lock on rw: a coroutine must hold one itself;
 * a plain thread, one taken by some plain thread). Calls: never blocks; any thread; not from
 * signal handlers. */
TT_EXTERN int tt_rwmutex_runlock(tt_rwmutex *rw);

/* Takes the write lock, waiting for the readers and any writer to leave (wait reason
 * "sync.RWMutex.Lock"); once it waits, new readers wait behind it. Returns 0, TT_EINVAL,
 * TT_EDEADLK (the caller holds rw in either mode: an upgrade deadlocks in Go), TT_ECANCELED,
 * TT_ESHUTDOWN, TT_ENOTRUNNING, TT_ENOMEM. Calls: blocks; cancel point; plain threads; not from
 * signal handlers. */
TT_EXTERN int tt_rwmutex_lock(tt_rwmutex *rw);

/* tt_rwmutex_lock with a deadline: TT_ETIMEDOUT when it passes first (readers held back by this
 * writer are then let in). Calls: as tt_rwmutex_lock. */
TT_EXTERN int tt_rwmutex_lock_dl(tt_rwmutex *rw, int64_t deadline);

/* Takes the write lock if it is free: 0, TT_EBUSY, TT_EDEADLK, TT_EINVAL, TT_ENOMEM.
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_rwmutex_trylock(tt_rwmutex *rw);

/* Releases the write lock: 0, TT_EINVAL, or TT_EPERM (the caller does not hold it; rw is left as
 * it was). Calls: never blocks; any thread (the holder); not from signal handlers. */
TT_EXTERN int tt_rwmutex_unlock(tt_rwmutex *rw);

/* The write holder, as tt_mutex_holder (TT_LOCK_FREE when not write-locked, whatever the
 * readers). Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_rwmutex_holder(const tt_rwmutex *rw, tt_id *id, int64_t *since);

/* The number of read locks held (including those of coroutines that exited holding them), or
 * TT_EINVAL. Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int64_t tt_rwmutex_readers(const tt_rwmutex *rw);

/* A condition variable (Go's sync.Cond), used with a tt_mutex the waiter holds. Initialise with
 * TT_COND_INIT, tt_cond_init or all-zero bytes; tt_cond_destroy is optional. */
typedef struct tt_cond {
  _Alignas(8) unsigned char opaque_[32];
} tt_cond;

/* clang-format off */
#define TT_COND_INIT {{0}}
/* clang-format on */

/* Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN void tt_cond_init(tt_cond *c);

/* Poisons c (see "Destroying" above): 0, TT_EBUSY (someone waits on it, or a waiter that timed out
 * or was cancelled has not yet left), or TT_EINVAL (NULL, or destroyed already). The mutex used
 * with it is not affected. Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_cond_destroy(tt_cond *c);

/* Atomically releases m (which the caller must hold) and waits until signalled (wait reason
 * "sync.Cond.Wait"); takes m back before returning, on every path — a timeout and a cancellation
 * included, as with pthreads. Returns 0 (signalled), TT_EINVAL (NULL, or c or m destroyed;
 * nothing changed), TT_EPERM (the caller does
 * not hold m; nothing changed), TT_ECANCELED, TT_ESHUTDOWN (m held again in each case), or
 * TT_EDEADLK in one case only: the wait was cancelled or shut down and m's holder exited while
 * holding it, so m can never be taken back (m is then not held; and TT_EINVAL, m not held, if m was
 * destroyed while the caller waited: the caller's bug). A cancelled coroutine takes m back under a
 * cancellation shield (it waits for m like any locker); a plain thread at shut-down retries,
 * yielding between tries. There are no spurious wake-ups, but loop on your predicate all the same.
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_cond_wait(tt_cond *c, tt_mutex *m);

/* tt_cond_wait with a deadline: TT_ETIMEDOUT when it passes before a signal (m held again).
 * Calls: as tt_cond_wait. */
TT_EXTERN int tt_cond_wait_dl(tt_cond *c, tt_mutex *m, int64_t deadline);

/* Wakes the longest waiter, if any (holding the mutex is allowed, not required). Returns 0 or
 * TT_EINVAL (NULL, destroyed). Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_cond_signal(tt_cond *c);

/* Wakes every waiter. Returns 0 or TT_EINVAL. Calls: as tt_cond_signal. */
TT_EXTERN int tt_cond_broadcast(tt_cond *c);

/* Once (Go's sync.Once): tt_once_do runs fn once, however many callers. Initialise with
 * TT_ONCE_INIT, tt_once_init or all-zero bytes; tt_once_destroy is optional. */
typedef struct tt_once {
  _Alignas(8) unsigned char opaque_[40];
} tt_once;

/* clang-format off */
#define TT_ONCE_INIT {{0}}
/* clang-format on */

/* Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN void tt_once_init(tt_once *o);

/* Poisons o, run or not (see "Destroying" above): 0, TT_EBUSY (fn is running, or callers wait for
 * it), or TT_EINVAL (NULL, or destroyed already). Calls: never blocks; any thread; not from signal
 * handlers. */
TT_EXTERN int tt_once_destroy(tt_once *o);

/* Calls fn(arg) if no call on o has run it yet; callers that arrive while it runs wait for it to
 * return (wait reason "sync.Once.Do"). When tt_once_do returns 0, fn has returned and its effects
 * are visible. The once is done when fn returns, whatever fn did (Go: even if fn panics); a caller
 * cancelled while waiting returns TT_ECANCELED and leaves the once as it was (fn runs on in its
 * own caller). fn calling tt_once_do on the same once returns TT_EDEADLK (Go deadlocks); fn waiting
 * for another party that calls it deadlocks, as in Go. Returns 0, TT_EINVAL (NULL o or fn, or o
 * destroyed: fn is not called),
 * TT_EDEADLK, TT_ECANCELED, TT_ESHUTDOWN, TT_ENOTRUNNING (plain thread, runtime not running, fn
 * running elsewhere). Calls: blocks (while fn runs elsewhere; and runs fn); cancel point; plain
 * threads; not from signal handlers. */
TT_EXTERN int tt_once_do(tt_once *o, void (*fn)(void *arg), void *arg);

/* Whether fn has run to completion (1) or not (0); TT_EINVAL for NULL or destroyed. Calls: never
 * blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_once_done(const tt_once *o);

/* A weighted semaphore (Go's golang.org/x/sync/semaphore.Weighted): a capacity of n units,
 * acquired and released in any amounts, waiters served strictly in arrival order — a large
 * request at the head holds back smaller ones behind it, so none starves. Not owned: any party may
 * release units (tt_mutex is the owned lock). Initialise with TT_SEM_INIT(n) or tt_sem_init; an
 * all-zero semaphore has no capacity (every acquire fails with TT_EINVAL). tt_sem_destroy is
 * optional, and every call below returns TT_EINVAL on a destroyed semaphore. */
typedef struct tt_sem {
  int64_t size_; /* the capacity: set by TT_SEM_INIT or tt_sem_init, never changed */
  _Alignas(8) unsigned char opaque_[40];
} tt_sem;

/* clang-format off */
#define TT_SEM_INIT(n) {(n), {0}}
/* clang-format on */

/* A semaphore of n units (n >= 1), all available. Returns 0 or TT_EINVAL.
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_sem_init(tt_sem *sem, int64_t n);

/* Poisons sem (see "Destroying" above): 0, TT_EBUSY (units are held, or someone waits), or
 * TT_EINVAL (NULL, or destroyed already). Calls: never blocks; any thread; not from signal
 * handlers. */
TT_EXTERN int tt_sem_destroy(tt_sem *sem);

/* Acquires k units, waiting (FIFO, wait reason "semacquire") until they are available and every
 * earlier waiter has been served. k == 0 succeeds at once unless others wait. Returns 0, TT_EINVAL
 * (NULL, destroyed, k < 0, or k above the capacity: it could never succeed), TT_ECANCELED,
 * TT_ESHUTDOWN, TT_ENOTRUNNING (plain thread, runtime not running, units unavailable). Calls:
 * blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_sem_acquire(tt_sem *sem, int64_t k);

/* tt_sem_acquire with a deadline: TT_ETIMEDOUT when it passes first (nothing acquired; waiters
 * behind it that now fit are served). Calls: as tt_sem_acquire. */
TT_EXTERN int tt_sem_acquire_dl(tt_sem *sem, int64_t k, int64_t deadline);

/* Acquires k units if they are available and no one waits: 0, TT_EBUSY, TT_EINVAL.
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_sem_try_acquire(tt_sem *sem, int64_t k);

/* Releases k units, serving waiters that now fit in FIFO order. Returns 0, TT_EINVAL (NULL,
 * destroyed, k < 0) or TT_EPERM (more than are held in total: x/sync panics; nothing is released).
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_sem_release(tt_sem *sem, int64_t k);

/* The units held now (acquired and not released), or TT_EINVAL (NULL, destroyed). Calls: never
 * blocks; any thread; not from signal handlers. */
TT_EXTERN int64_t tt_sem_held(const tt_sem *sem);

TT_END_DECLS

#endif
