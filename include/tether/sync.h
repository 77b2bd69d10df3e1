/* SPDX-License-Identifier: MIT */
/* Coroutine-aware synchronisation. Every type is an opaque, stack-allocatable struct with a static
 * initializer; each works between coroutines on any workers and plain threads. */
#ifndef TETHER_SYNC_H
#define TETHER_SYNC_H

#include "common.h"

TT_BEGIN_DECLS

/* A wait group (Go's sync.WaitGroup): a counter that tt_wg_wait waits to reach zero.
 * Initialise with TT_WG_INIT or tt_wg_init; no destructor is needed once no one waits. */
typedef struct tt_wg {
  _Alignas(8) unsigned char opaque_[48];
} tt_wg;

/* clang-format off */
#define TT_WG_INIT {{0}}
/* clang-format on */

/* Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN void tt_wg_init(tt_wg *wg);

/* Adds delta (which may be negative) to the counter; when it reaches zero every waiter wakes.
 * Returns 0, or TT_EINVAL (the counter would go negative, or above 2^31 - 1, as Go's; it is left
 * unchanged; Go panics). A Wait that returns may free the wait group at once, as may a Done.
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_wg_add(tt_wg *wg, int64_t delta);

/* tt_wg_add(wg, -1). Calls: as tt_wg_add. */
TT_EXTERN int tt_wg_done(tt_wg *wg);

/* Waits until the counter is zero (wait reason "sync.WaitGroup.Wait"). Returns 0, or
 * TT_ECANCELED, TT_ESHUTDOWN, TT_ENOTRUNNING (plain thread, runtime not running, counter not zero).
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_wg_wait(tt_wg *wg);

/* tt_wg_wait with a deadline: TT_ETIMEDOUT when it passes first (the timed wait that Go builds
 * from a goroutine and a select, without the goroutine that leaks). Calls: as tt_wg_wait. */
TT_EXTERN int tt_wg_wait_dl(tt_wg *wg, int64_t deadline);

/* The counter's current value (TT_EINVAL for a NULL wg). Calls: never blocks; any thread; not from
 * signal handlers. */
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
 * Initialise with TT_MUTEX_INIT, tt_mutex_init or all-zero bytes (unlocked); no destructor is
 * needed once it is unlocked and no one waits. Uncontended, a lock and an unlock are one
 * compare-and-swap each. Contended, it behaves as Go's: a waiter that is woken competes with
 * newcomers, and one that has waited more than 1 ms switches the mutex to direct hand-off (each
 * unlock passes it to the longest waiter) until the queue drains. */
typedef struct tt_mutex {
  _Alignas(8) unsigned char opaque_[48];
} tt_mutex;

/* clang-format off */
#define TT_MUTEX_INIT {{0}}
/* clang-format on */

/* Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN void tt_mutex_init(tt_mutex *m);

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
 * for a NULL m) and, when id / since are not NULL, stores the holder's coroutine id (0 for a
 * plain thread or a free mutex) and when it took the mutex (tt_now() clock, coarse: within a few
 * dozen scheduler switches; 0 when free). A snapshot: the holder may change as it returns.
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_mutex_holder(const tt_mutex *m, tt_id *id, int64_t *since);

/* A reader/writer mutex (Go's sync.RWMutex), owned in both modes: any number of readers or one
 * writer. It prefers writers as Go's does: once a writer waits, new readers wait behind it, so a
 * coroutine that read-locks recursively while a writer waits deadlocks (as in Go; the leak checker
 * reports it). When a writer unlocks, the readers waiting then all get in before the next writer.
 * Read holds are recorded per coroutine (a plain thread's read holds are counted, not named);
 * only a party holding a read lock may release one. Initialise with TT_RWMUTEX_INIT,
 * tt_rwmutex_init or all-zero bytes. */
typedef struct tt_rwmutex {
  _Alignas(8) unsigned char opaque_[96];
} tt_rwmutex;

TT_END_DECLS

#endif
