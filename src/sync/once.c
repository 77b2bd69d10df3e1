/* SPDX-License-Identifier: MIT */
/* Once (Go's sync.Once).
 *
 * A state word (NEW, RUNNING, DONE), the runner's token (to refuse a recursive call from fn with
 * TT_EDEADLK instead of deadlocking), and a queue of callers waiting for fn to return, under a
 * tt__lock. The first caller swaps NEW for RUNNING and runs fn with no lock held; then it stores
 * DONE under the lock and wakes every waiter (claim under the lock, commit after). A caller that
 * finds RUNNING takes the lock, and queues only if the state is still not DONE: the store of DONE
 * and the check are both under the lock, so no wake-up is lost. DONE is stored with release and
 * read with acquire, so fn's effects are visible to every caller that returns 0. A waiter's
 * cancellation or deadline only takes it off the queue: the once itself is unaffected. */
#include <string.h>

#include "sync_int.h"

/* O_DEAD: destroyed. The fast path tests for DONE only, so it never sees it; the slow path's swap
 * from NEW fails on it and the failure is where it is recognised. */
enum { O_NEW = 0, O_RUNNING = 1, O_DONE = 2, O_DEAD = 3 };

typedef struct once_impl {
  _Atomic uint32_t state;
  tt__lock lock;           /* protects q; DONE is stored under it */
  _Atomic uint64_t runner; /* the token of the party running fn */
  tt__wq q;
} once_impl;

_Static_assert(sizeof(once_impl) <= sizeof(tt_once), "tt_once too small for its implementation");
_Static_assert(_Alignof(once_impl) <= _Alignof(tt_once), "tt_once under-aligned");

#define IMPL(o) ((once_impl *)(void *)(o)->opaque_)

void tt_once_init(tt_once *o) {
  if (o)
    memset(o, 0, sizeof *o);
}

int tt_once_done(const tt_once *o) {
  if (o == NULL)
    return TT_EINVAL;
  /* acquire: a caller that sees DONE sees fn's effects. */
  uint32_t s = atomic_load_explicit(&IMPL((tt_once *)o)->state, memory_order_acquire);
  return s == O_DEAD ? TT_EINVAL : s == O_DONE;
}

int tt_once_destroy(tt_once *o) {
  if (o == NULL)
    return TT_EINVAL;
  once_impl *oi = IMPL(o);
  int r = 0;
  tt__lock_acquire(&oi->lock);
  uint32_t s = atomic_load_explicit(&oi->state, memory_order_relaxed);
  for (;;) {
    if (s == O_DEAD) {
      r = TT_EINVAL;
      break;
    }
    if (s == O_RUNNING || oi->q.head != NULL) {
      r = TT_EBUSY; /* fn runs, or callers wait for it (or are still leaving after a cancel) */
      break;
    }
    /* A swap, not a store, so that a caller electing itself runner at this moment (the caller's
     * race) is not overwritten. relaxed: nothing is published with the poison, and a waiter reads
     * the state under this lock before it queues. */
    if (atomic_compare_exchange_weak_explicit(&oi->state, &s, O_DEAD, memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
  tt__lock_release(&oi->lock);
  return r;
}

int tt_once_do(tt_once *o, void (*fn)(void *), void *arg) {
  if (o == NULL || fn == NULL)
    return TT_EINVAL;
  once_impl *oi = IMPL(o);
  /* acquire: fn's effects, published by the release store of DONE, are visible on return. */
  if (TT_LIKELY(atomic_load_explicit(&oi->state, memory_order_acquire) == O_DONE))
    return 0;
  tt__coro *co = tt__self();
  uint64_t tok = tt__sync_token(co);
  uint32_t exp = O_NEW;
  /* relaxed: winning the swap only elects the runner; fn's effects are published by DONE. */
  if (atomic_compare_exchange_strong_explicit(&oi->state, &exp, O_RUNNING, memory_order_relaxed,
                                              memory_order_relaxed)) {
    /* relaxed: read back only by the runner itself (recursion check); others compare to their own
     * token, which it never equals. */
    atomic_store_explicit(&oi->runner, tok, memory_order_relaxed);
    fn(arg);
    tt__waiter *woken = NULL, **tail = &woken;
    tt__lock_acquire(&oi->lock);
    /* release: fn's effects happen before any caller that sees DONE returns. */
    atomic_store_explicit(&oi->state, O_DONE, memory_order_release);
    for (tt__waiter *wt = oi->q.head, *nx; wt; wt = nx) {
      nx = wt->next;
      if (!tt__wake_claim(wt, 0))
        continue; /* claimed by a timer or a cancellation: it leaves by itself */
      tt__wq_unlink(&oi->q, wt);
      *tail = wt;
      tail = &wt->next;
    }
    tt__lock_release(&oi->lock);
    tt__wake_commit_list(woken);
    return 0;
  }
  if (exp == O_DONE) {
    atomic_thread_fence(memory_order_acquire); /* the failed swap read DONE relaxed */
    return 0;
  }
  if (exp == O_DEAD)
    return TT_EINVAL;
  if (atomic_load_explicit(&oi->runner, memory_order_relaxed) == tok)
    return TT_EDEADLK; /* fn called us: Go deadlocks here */
  int r = tt__block_check(co);
  if (r != 0)
    return r;
  tt__lock_acquire(&oi->lock);
  /* acquire: as above. */
  uint32_t s = atomic_load_explicit(&oi->state, memory_order_acquire);
  if (s == O_DONE || s == O_DEAD) { /* DEAD: destroyed since the swap (the caller's race) */
    tt__lock_release(&oi->lock);
    return s == O_DONE ? 0 : TT_EINVAL;
  }
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  tt__wq_push(&oi->q, &wt);
  r = tt__wait(&wt, TT_WAIT_ONCE_DO, o, TT_FOREVER, &oi->lock);
  if (tt__wait_self_result(r)) {
    tt__lock_acquire(&oi->lock);
    tt__wq_unlink(&oi->q, &wt);
    tt__lock_release(&oi->lock);
  }
  return r;
}
