/* SPDX-License-Identifier: MIT */
/* Owned mutexes (Go's sync.Mutex, error-checking like PTHREAD_MUTEX_ERRORCHECK).
 *
 * One 64-bit state word holds the holder's token (see sync_int.h) above five flag bits:
 *
 *   LOCKED    held (the token names the holder; meaningless otherwise)
 *   WOKEN     a contender is awake and about to try (woken by an unlock, or spinning): an unlock
 *             wakes nobody else meanwhile (Go's mutexWoken)
 *   STARVING  starvation mode: the lock is handed to the head waiter on unlock (Go's)
 *   WAITERS   the queue is not empty: an unlock must look at it
 *   EXITED    the holder exited holding it; it stays locked forever
 *
 * Lock is one compare-and-swap from 0 to token|LOCKED, unlock one from token|LOCKED to 0, so the
 * ownership check costs nothing on the fast path: a non-holder's unlock fails the swap and the slow
 * path finds it is not the holder (TT_EPERM), and a holder's relock finds its own token
 * (TT_EDEADLK). The queue sits under a per-mutex tt__lock, a leaf taken only by waiters (to queue
 * and to leave after a timeout or a cancellation) and by an unlock that must wake one. WAITERS and
 * STARVING change only under it; the rest of the word changes by compare-and-swap from anywhere.
 * Invariant: STARVING implies LOCKED and WAITERS (a hand-off keeps LOCKED; the last waiter leaving
 * clears both).
 *
 * Hand-off policy: Go's. In normal mode an unlock releases the lock and wakes the head waiter
 * (claim under the queue's lock, commit after it) with result 0: the woken waiter competes with
 * newcomers, who may barge in. A coroutine woken on the unlocker's worker goes to its runnext and
 * runs when the unlocker next parks, yields or exits; in the common case (no lock held across a
 * switch) the lock is free by then, so it takes it with one swap and nothing bounces. The unlocker
 * keeps its core and can relock at once, so a coroutine that locks in a loop pays no switch per
 * iteration (a direct hand-off would make every contended unlock a switch: a convoy). A contender
 * spins briefly (bounded; never in starvation mode, never on an exited holder) before it queues:
 * a holder running on another worker releases within nanoseconds, and a cross-worker wake costs
 * microseconds. A woken waiter that finds the lock taken again re-queues at the head; once it has
 * waited longer than 1 ms it sets STARVING, and the next unlock hands the lock to it directly
 * (claim with TT__GRANTED, the waiter's token written into the word under the queue's lock) and
 * clears STARVING; newcomers queue without spinning while it is set. Unlike Go, starvation mode
 * lasts one hand-off per starving waiter rather than until the queue drains: started coroutines
 * never migrate here, so a hand-off to a waiter on another worker costs a cross-core wake-up
 * (microseconds, more when that worker sleeps), and with hundreds of waiters that have all waited
 * over 1 ms Go's rule turned every operation into one (measured: ~2 us per lock in the mutex
 * benchmark, against ~60 ns). Each starving waiter is still served at its next attempt, so none
 * waits forever. Waiters are woken only through the tt__waiter claim/commit
 * protocol, so a timeout, a cancellation or shut-down racing with a wake or a hand-off is resolved
 * by the one claim: a waiter claimed by a timer was not granted anything and leaves the queue
 * itself; one granted the lock returns 0 holding it.
 *
 * Rejected: a futex word per mutex (a system call per contended operation and no coroutine
 * parking); a lock-free queue of waiters (the queue's lock is uncontended and held for a few
 * instructions, and timeouts need removal from the middle). */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "sync_int.h"

#define M_LOCKED ((uint64_t)1)
#define M_WOKEN ((uint64_t)2)
#define M_STARVING ((uint64_t)4)
#define M_WAITERS ((uint64_t)8)
#define M_EXITED ((uint64_t)16)
#define M_SHIFT 5

/* A destroyed mutex's word: every bit set. No lock swap expects it (they all expect LOCKED clear)
 * and no unlock swap does (its owner field, 2^59 - 1, is no token: thread tokens are 2^56 plus a
 * counter that never gets that far, coroutine ids are below 2^56), so the fast paths fail on it as
 * on any held mutex, and only the slow paths test for it. It has LOCKED and EXITED set, so the
 * spin test and the queries' callers treat it as held for good even before they look. */
#define M_DEAD (~(uint64_t)0)

#define STARVE_NS (1 * TT_MSEC) /* Go's starvationThresholdNs */
#define SPIN_ROUNDS 4           /* Go's active_spin */
#define LOCAL_SCAN 8            /* waiters an unlock looks at for one on its own worker */
#define SPIN_PAUSES 64          /* pauses per round, watching the word between them */

typedef struct mutex_impl {
  _Atomic uint64_t state;
  _Atomic int64_t since; /* when the holder took it (coarse clock); for the diagnostics */
  tt__lock lock;         /* protects q, and the WAITERS and STARVING bits */
  uint32_t pad;
  tt__wq q;
} mutex_impl;

_Static_assert(sizeof(mutex_impl) <= sizeof(tt_mutex), "tt_mutex too small for its implementation");
_Static_assert(_Alignof(mutex_impl) <= _Alignof(tt_mutex), "tt_mutex under-aligned");

#define IMPL(m) ((mutex_impl *)(void *)(m)->opaque_)

/* A queued locker: the waiter, the token to write into the word on a hand-off, and when it first
 * queued (for starvation). */
typedef struct mwait {
  tt__waiter wt; /* first: the queue links waiters */
  uint64_t tok;
  int64_t start;
} mwait;

static inline uint64_t owner_of(uint64_t s) { return s >> M_SHIFT; }

void tt_mutex_init(tt_mutex *m) {
  if (m)
    memset(m, 0, sizeof *m);
}

/* Poisons an idle mutex: swaps its word from 0 (free, nobody queued: WAITERS is set, under the
 * queue's lock, whenever the queue is not empty) to M_DEAD. The swap is made under the queue's
 * lock, which a locker holds from its last look at the word until it has queued: so a racing
 * locker either queued first (the word is not 0: TT_EBUSY) or sees the poison under that lock and
 * leaves with TT_EINVAL; none parks on a destroyed mutex. */
int tt_mutex_destroy(tt_mutex *m) {
  if (m == NULL)
    return TT_EINVAL;
  mutex_impl *mi = IMPL(m);
  uint64_t s = 0;
  tt__lock_acquire(&mi->lock);
  /* relaxed: nothing is published with the poison; a later operation needs only to see the
   * value (ordered after destroy by the caller, or a race the caller owns). */
  bool ok = atomic_compare_exchange_strong_explicit(&mi->state, &s, M_DEAD, memory_order_relaxed,
                                                    memory_order_relaxed);
  tt__lock_release(&mi->lock);
  return ok ? 0 : s == M_DEAD ? TT_EINVAL : TT_EBUSY;
}

/* Records the acquisition: since (for tt_mutex_holder) and co's held list (room reserved). */
static inline void acquired(mutex_impl *mi, tt__coro *co, const void *pc) {
  int64_t now = tt__sync_now(co);
  /* relaxed: read only by diagnostics, which accept a snapshot. */
  atomic_store_explicit(&mi->since, now, memory_order_relaxed);
  if (co)
    tt__held_push(co, mi, TT__HELD_MUTEX, now, pc);
}

/* Gives up WOKEN, which this contender set (or was woken under) and now leaves with an error. An
 * unlock may have skipped waking anyone because of it: if the mutex is free with waiters queued,
 * wake one now, or it would wait for an unlock that may never come. */
static void clear_woken(mutex_impl *mi) {
  /* relaxed: a flag for unlockers; nothing is published with it. */
  uint64_t s = atomic_fetch_and_explicit(&mi->state, ~M_WOKEN, memory_order_relaxed) & ~M_WOKEN;
  if ((s & (M_LOCKED | M_WAITERS)) != M_WAITERS)
    return; /* held (its unlock will wake), or nobody waits */
  tt__waiter *woken = NULL;
  tt__lock_acquire(&mi->lock);
  s = atomic_load_explicit(&mi->state, memory_order_relaxed);
  if (!(s & (M_LOCKED | M_WOKEN))) {
    for (tt__waiter *wt = mi->q.head; wt; wt = wt->next)
      if (tt__wake_claim(wt, 0)) {
        tt__wq_unlink(&mi->q, wt);
        woken = wt;
        break;
      }
    if (woken) {
      uint64_t waiters = mi->q.head ? M_WAITERS : 0;
      /* relaxed: as above; the queue is published by its lock. */
      while (!atomic_compare_exchange_weak_explicit(&mi->state, &s,
                                                    (s & ~M_WAITERS) | waiters | M_WOKEN,
                                                    memory_order_relaxed, memory_order_relaxed))
        ;
    }
  }
  tt__lock_release(&mi->lock);
  if (woken) {
    woken->next = NULL;
    tt__wake_commit(woken);
  }
}

/* Spinning pays only when the holder runs on another core and this worker has nothing else to
 * run (Go's canSpin: an empty local run queue). A spinner reads the word between pauses, which
 * takes the line from a holder that relocks in a loop: with other coroutines to run, parking and
 * running them costs the holder nothing. */
static inline bool can_spin(int rounds, uint64_t s) {
  tt__worker *w = tt__tls_worker;
  return rounds < SPIN_ROUNDS && !(s & (M_STARVING | M_EXITED)) && tt__rt.procs > 1 &&
         (w == NULL || !tt__worker_has_work(w));
}

/* Leaves the queue after a timeout, cancellation or shut-down claimed our waiter. */
static void leave_queue(mutex_impl *mi, mwait *mw) {
  tt__lock_acquire(&mi->lock);
  tt__wq_unlink(&mi->q, &mw->wt);
  if (mi->q.head == NULL)
    /* relaxed: the bits' meaning is protected by the queue's lock. */
    atomic_fetch_and_explicit(&mi->state, ~(M_WAITERS | M_STARVING), memory_order_relaxed);
  tt__lock_release(&mi->lock);
}

/* The contended lock: spin, barge, or queue and park. Returns 0 holding the lock (not yet
 * recorded), or an error without it. */
static TT_NOINLINE int lock_slow(mutex_impl *mi, tt__coro *co, uint64_t tok, int64_t deadline) {
  bool awoke = false;    /* we own the WOKEN bit (woken, or set it while spinning) */
  bool starving = false; /* waited longer than STARVE_NS */
  bool requeue = false;  /* queue at the head: we were woken and lost */
  int rounds = 0;
  int64_t start = 0;
  uint64_t s = atomic_load_explicit(&mi->state, memory_order_relaxed);
  if ((s & M_LOCKED) && owner_of(s) == tok)
    return TT_EDEADLK;
  for (;;) {
    /* Destroyed (before the call, or under us: the caller's race). We own no WOKEN bit here:
     * destroy swaps only a word of 0, and a WOKEN we own stays set until we clear it. */
    if (TT_UNLIKELY(s == M_DEAD))
      return TT_EINVAL;
    if ((s & M_LOCKED) && can_spin(rounds, s)) {
      /* Tell unlockers someone is awake, so that they wake nobody (Go does the same). */
      if (!awoke && !(s & M_WOKEN) && (s & M_WAITERS) &&
          atomic_compare_exchange_strong_explicit(&mi->state, &s, s | M_WOKEN, memory_order_relaxed,
                                                  memory_order_relaxed))
        awoke = true;
      for (int i = 0; i < SPIN_PAUSES; i++) {
        tt__cpu_relax();
        /* relaxed: a hint; the swap below decides, with acquire. */
        if (!(atomic_load_explicit(&mi->state, memory_order_relaxed) & M_LOCKED))
          break;
      }
      rounds++;
      s = atomic_load_explicit(&mi->state, memory_order_relaxed);
      continue;
    }
    if (!(s & M_LOCKED)) {
      /* Free (so not starving): take it, keeping WAITERS and anyone else's WOKEN. */
      uint64_t ns = (s & (M_WAITERS | M_WOKEN)) | (tok << M_SHIFT) | M_LOCKED;
      if (awoke)
        ns &= ~M_WOKEN;
      /* acquire: the critical section follows the previous holder's release. */
      if (atomic_compare_exchange_weak_explicit(&mi->state, &s, ns, memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
      continue;
    }
    /* Held: queue and park. */
    int r = tt__block_check(co);
    if (r != 0) {
      if (awoke)
        clear_woken(mi);
      return r;
    }
    tt__lock_acquire(&mi->lock);
    s = atomic_load_explicit(&mi->state, memory_order_relaxed);
    bool queued = false;
    if (TT_UNLIKELY(s == M_DEAD)) { /* destroy swaps under this lock: no waiter queues after it */
      tt__lock_release(&mi->lock);
      return TT_EINVAL;
    }
    while (s & M_LOCKED) {
      uint64_t ns = s | M_WAITERS;
      if (awoke)
        ns &= ~M_WOKEN;
      if (starving)
        ns |= M_STARVING;
      /* relaxed: the queue is published by its lock; the word only needs the swap's atomicity
       * (an unlock that swaps after us fails its fast path and takes the queue's lock). */
      if (atomic_compare_exchange_weak_explicit(&mi->state, &s, ns, memory_order_relaxed,
                                                memory_order_relaxed)) {
        queued = true;
        break;
      }
    }
    if (!queued) { /* released meanwhile: try again */
      tt__lock_release(&mi->lock);
      continue;
    }
    awoke = false;
    if (start == 0)
      start = tt__clock();
    mwait mw = {.tok = tok, .start = start};
    tt__waiter_init(&mw.wt, co);
    if (requeue)
      tt__wq_push_front(&mi->q, &mw.wt);
    else
      tt__wq_push(&mi->q, &mw.wt);
    r = tt__wait(&mw.wt, TT_WAIT_MUTEX_LOCK, mi, deadline, &mi->lock);
    if (r == TT__GRANTED)
      return 0; /* handed over: the word names us already */
    if (tt__wait_self_result(r)) {
      leave_queue(mi, &mw);
      return r;
    }
    TT_ASSERT(r == 0);
    /* Woken: the unlocker set WOKEN for us. Compete. */
    awoke = true;
    requeue = true;
    rounds = 0;
    if (!starving && tt__clock() - start > STARVE_NS)
      starving = true;
    s = atomic_load_explicit(&mi->state, memory_order_relaxed);
  }
}

/* The general lock: plain threads, a held list without room, contention. */
static TT_NOINLINE int lock_general(mutex_impl *mi, int64_t deadline, const void *pc) {
  tt__coro *co = tt__self();
  uint64_t tok = tt__sync_token(co);
  int r = tt__held_reserve(co);
  if (TT_UNLIKELY(r != 0))
    return r;
  uint64_t z = 0;
  /* acquire: the critical section's reads stay after the lock; pairs with unlock's release. */
  if (!atomic_compare_exchange_strong_explicit(&mi->state, &z, (tok << M_SHIFT) | M_LOCKED,
                                               memory_order_acquire, memory_order_relaxed))
    if ((r = lock_slow(mi, co, tok, deadline)) != 0)
      return r;
  acquired(mi, co, pc);
  return 0;
}

/* The fast path, inline in both entry points: a coroutine with room in its held list takes a free
 * mutex with one compare-and-swap and records it with a few stores. */
static inline int lock_fast(tt_mutex *m, int64_t deadline, const void *pc) {
  if (TT_UNLIKELY(m == NULL))
    return TT_EINVAL;
  mutex_impl *mi = IMPL(m);
  tt__worker *w = tt__tls_worker;
  tt__coro *co = w ? w->cur : NULL;
  if (TT_LIKELY(co != NULL)) {
    tt__held *h = co->locks;
    uint64_t z = 0;
    /* acquire: as in lock_general. */
    if (TT_LIKELY(h != NULL && h->n < h->cap) && TT_LIKELY(atomic_compare_exchange_strong_explicit(
                                                     &mi->state, &z, (co->id << M_SHIFT) | M_LOCKED,
                                                     memory_order_acquire, memory_order_relaxed))) {
      int64_t now = w->now;
      /* relaxed: read only by diagnostics, which accept a snapshot. */
      atomic_store_explicit(&mi->since, now, memory_order_relaxed);
      h->v[h->n++] = (tt__heldlock){.obj = mi, .since = now, .pc = pc, .kind = TT__HELD_MUTEX};
      return 0;
    }
  }
  return lock_general(mi, deadline, pc);
}

/* Each entry point records its caller as the lock site (the leak proof's deadlock reports). */
int tt_mutex_lock_dl(tt_mutex *m, int64_t deadline) {
  return lock_fast(m, deadline, __builtin_return_address(0));
}

int tt_mutex_lock(tt_mutex *m) { return lock_fast(m, TT_FOREVER, __builtin_return_address(0)); }

int tt_mutex_trylock(tt_mutex *m) {
  if (m == NULL)
    return TT_EINVAL;
  mutex_impl *mi = IMPL(m);
  tt__coro *co = tt__self();
  uint64_t tok = tt__sync_token(co);
  int r = tt__held_reserve(co);
  if (TT_UNLIKELY(r != 0))
    return r;
  uint64_t s = atomic_load_explicit(&mi->state, memory_order_relaxed);
  for (;;) {
    if (s & M_LOCKED)
      return s == M_DEAD ? TT_EINVAL : owner_of(s) == tok ? TT_EDEADLK : TT_EBUSY;
    /* Free, so not starving (see the invariant): barging is allowed. */
    uint64_t ns = (s & (M_WAITERS | M_WOKEN)) | (tok << M_SHIFT) | M_LOCKED;
    /* acquire: as in tt_mutex_lock_dl. */
    if (atomic_compare_exchange_weak_explicit(&mi->state, &s, ns, memory_order_acquire,
                                              memory_order_relaxed))
      break;
  }
  acquired(mi, co, __builtin_return_address(0));
  return 0;
}

/* The contended (or misused) unlock; s is the word as the fast path found it. */
/* Normal mode prefers a waiter on the unlocker's own worker (among the first LOCAL_SCAN), while
 * the head has waited less than STARVE_NS: woken into runnext, it runs when the unlocker next
 * switches, on the same core, and meanwhile its WOKEN keeps unlocks from waking waiters on other
 * workers — who would only lose to an unlocker that relocks in a loop, and requeue, each round a
 * cross-core wake and a stolen cache line. The head is still served within STARVE_NS: past it,
 * it is woken, loses at worst, and its requeue turns on starvation mode. Under mi->lock. */
static tt__waiter *wake_local(mutex_impl *mi) {
  tt__worker *w = tt__tls_worker;
  mwait *head = (mwait *)mi->q.head;
  if (w == NULL || head == NULL || tt__rt.procs == 1 || w->now - head->start > STARVE_NS)
    return NULL;
  int n = 0;
  for (tt__waiter *wt = mi->q.head; wt && n < LOCAL_SCAN; wt = wt->next, n++) {
    if (wt->co && wt->co->w == w && tt__wake_claim(wt, 0)) {
      tt__wq_unlink(&mi->q, wt);
      return wt;
    }
  }
  return NULL;
}

static TT_NOINLINE int unlock_slow(mutex_impl *mi, uint64_t tok, uint64_t s) {
  for (;;) {
    if (!(s & M_LOCKED) || owner_of(s) != tok)
      return s == M_DEAD ? TT_EINVAL : TT_EPERM;
    if (!(s & M_STARVING) && (!(s & M_WAITERS) || (s & M_WOKEN))) {
      /* Nobody to wake, or someone is awake already: release. release: the critical section's
       * writes are visible to the next holder. */
      if (atomic_compare_exchange_weak_explicit(&mi->state, &s, s & (M_WAITERS | M_WOKEN),
                                                memory_order_release, memory_order_relaxed))
        return 0;
      continue;
    }
    break;
  }
  tt__waiter *woken = NULL;
  tt__lock_acquire(&mi->lock);
  /* The word is still ours (only the holder releases it); WOKEN may come and go with spinners,
   * STARVING only under the lock we now hold. */
  s = atomic_load_explicit(&mi->state, memory_order_relaxed);
  bool handoff = (s & M_STARVING) != 0;
  if (!handoff && !(s & M_WOKEN))
    woken = wake_local(mi);
  if (woken == NULL && (handoff || !(s & M_WOKEN))) {
    for (tt__waiter *wt = mi->q.head; wt; wt = wt->next) {
      /* Waiters claimed by a timer or a cancellation stay queued until they remove themselves. */
      if (tt__wake_claim(wt, handoff ? TT__GRANTED : 0)) {
        tt__wq_unlink(&mi->q, wt);
        woken = wt;
        break;
      }
    }
  }
  uint64_t ns;
  uint64_t waiters = mi->q.head ? M_WAITERS : 0;
  if (handoff && woken) {
    /* One hand-off per starving waiter, then back to normal mode (see the design comment). */
    mwait *mw = (mwait *)woken;
    ns = (mw->tok << M_SHIFT) | M_LOCKED | waiters; /* the new holder, named now */
  } else {
    ns = waiters | (woken ? M_WOKEN : 0);
  }
  /* A spinner's WOKEN is kept: it clears it itself. release: the critical section's writes are
   * visible to the next holder (a granted waiter also synchronises through its token). */
  while (!atomic_compare_exchange_weak_explicit(&mi->state, &s, ns | (s & M_WOKEN),
                                                memory_order_release, memory_order_relaxed))
    ;
  tt__lock_release(&mi->lock);
  if (woken) {
    woken->next = NULL;
    tt__wake_commit(woken);
  }
  return 0;
}

/* Unlocks as the holder named by tok (co: the caller, NULL on a plain thread). */
static int unlock_as(mutex_impl *mi, tt__coro *co, uint64_t tok) {
  uint64_t s = (tok << M_SHIFT) | M_LOCKED;
  /* release: the critical section's writes are visible to the next holder. */
  if (!atomic_compare_exchange_strong_explicit(&mi->state, &s, 0, memory_order_release,
                                               memory_order_relaxed)) {
    int r = unlock_slow(mi, tok, s);
    if (r != 0)
      return r;
  }
  if (co)
    tt__held_pop(co, mi, TT__HELD_MUTEX);
  return 0;
}

static TT_NOINLINE int unlock_general(mutex_impl *mi) {
  tt__coro *co = tt__self();
  return unlock_as(mi, co, tt__sync_token(co));
}

int tt_mutex_unlock(tt_mutex *m) {
  if (TT_UNLIKELY(m == NULL))
    return TT_EINVAL;
  mutex_impl *mi = IMPL(m);
  tt__worker *w = tt__tls_worker;
  tt__coro *co = w ? w->cur : NULL;
  if (TT_LIKELY(co != NULL)) {
    uint64_t s = (co->id << M_SHIFT) | M_LOCKED;
    /* release: the critical section's writes are visible to the next holder. */
    if (TT_LIKELY(atomic_compare_exchange_strong_explicit(&mi->state, &s, 0, memory_order_release,
                                                          memory_order_relaxed))) {
      tt__held_pop(co, mi, TT__HELD_MUTEX);
      return 0;
    }
  }
  return unlock_general(mi);
}

int tt_mutex_holder(const tt_mutex *m, tt_id *id, int64_t *since) {
  tt__lockinfo li;
  int r = tt__mutex_info(m, &li);
  if (r != 0)
    return r;
  if (id)
    *id = li.id;
  if (since)
    *since = li.since;
  return li.state;
}

int tt__mutex_info(const tt_mutex *m, tt__lockinfo *out) {
  if (m == NULL || out == NULL)
    return TT_EINVAL;
  const mutex_impl *mi = IMPL(m);
  /* acquire: since, written after the swap that took the lock, is at least that holder's. */
  uint64_t s = atomic_load_explicit(&((mutex_impl *)mi)->state, memory_order_acquire);
  memset(out, 0, sizeof *out);
  if (s == M_DEAD)
    return TT_EINVAL;
  if (!(s & M_LOCKED))
    return 0;
  out->token = owner_of(s);
  out->id = tt__token_id(out->token);
  out->since = atomic_load_explicit(&((mutex_impl *)mi)->since, memory_order_relaxed);
  out->state = (s & M_EXITED)                       ? TT_LOCK_EXITED
               : (out->token & TT__TOK_THREAD) != 0 ? TT_LOCK_THREAD
                                                    : TT_LOCK_CORO;
  return 0;
}

void tt__mutex_holder_exited(const void *m, tt_id id) {
  mutex_impl *mi = (mutex_impl *)m;
  uint64_t s = atomic_load_explicit(&mi->state, memory_order_relaxed);
  /* relaxed: a mark for the diagnostics; the lock stays held, so nothing is published. */
  while ((s & M_LOCKED) && owner_of(s) == id &&
         !atomic_compare_exchange_weak_explicit(&mi->state, &s, s | M_EXITED, memory_order_relaxed,
                                                memory_order_relaxed))
    ;
}

/* ---- For tt_cond ------------------------------------------------------------------------- */

bool tt__mutex_dead(const tt_mutex *m) {
  /* relaxed: a destroyed mutex is not in use, so the poison was stored before this call (or the
   * caller races its own destroy). */
  return atomic_load_explicit(&((mutex_impl *)IMPL(m))->state, memory_order_relaxed) == M_DEAD;
}

bool tt__mutex_held_by(const tt_mutex *m, uint64_t tok) {
  /* relaxed: only our own token can make this true, and we wrote it ourselves (or a hand-off did,
   * before our wake-up, which we have synchronised with). */
  uint64_t s = atomic_load_explicit(&((mutex_impl *)IMPL(m))->state, memory_order_relaxed);
  return (s & M_LOCKED) && owner_of(s) == tok;
}

int tt__mutex_unlock_for_wait(tt_mutex *m, tt__coro *co, uint64_t tok) {
  return unlock_as(IMPL(m), co, tok);
}

/* Takes m back after a condition wait, whatever happened to the wait. A coroutine raises a
 * cancellation shield for it, so it parks like any locker even when cancelled (POSIX's rule: the
 * mutex is held again whatever the wait's result). A plain thread at shut-down cannot block, so it
 * retries, yielding between attempts. Gives up (TT_EDEADLK) only if the holder exited: then the
 * mutex can never be had. */
int tt__mutex_relock_after_wait(tt_mutex *m, tt__coro *co, uint64_t tok) {
  mutex_impl *mi = IMPL(m);
  int r = tt__held_reserve(co); /* the unlock freed a slot: cannot fail */
  TT_ASSERT(r == 0);
  if (co)
    tt_shield_begin();
  for (;;) {
    uint64_t z = 0;
    /* acquire: as in tt_mutex_lock_dl. */
    if (atomic_compare_exchange_strong_explicit(&mi->state, &z, (tok << M_SHIFT) | M_LOCKED,
                                                memory_order_acquire, memory_order_relaxed) ||
        (r = lock_slow(mi, co, tok, TT_FOREVER)) == 0)
      break;
    TT_ASSERT(r != TT_EDEADLK && r != TT_ENOMEM);
    /* A mutex destroyed while its cond waiter had released it (the caller's bug) can never be
     * had either: TT_EINVAL rather than a hang. */
    uint64_t s = atomic_load_explicit(&mi->state, memory_order_relaxed);
    if (r == TT_EINVAL || (s & M_EXITED)) {
      if (co)
        tt_shield_end();
      return s == M_DEAD ? TT_EINVAL : TT_EDEADLK;
    }
    if (co)
      tt_yield();
    else
      sched_yield();
  }
  if (co)
    tt_shield_end();
  acquired(mi, co, NULL); /* taken back after a condition wait: the first lock's site is gone */
  return 0;
}
