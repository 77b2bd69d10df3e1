/* SPDX-License-Identifier: MIT */
/* Condition variables (Go's sync.Cond), used with a tt_mutex.
 *
 * A FIFO of waiters under a per-condition tt__lock. A waiter queues itself under that lock and
 * only then releases the mutex, so a signal sent after the release finds it queued: no wake-up is
 * lost. Lock order: the condition's lock, then the mutex's queue lock (the unlock may take it);
 * nothing takes them the other way round. Signal and broadcast claim waiters under the lock, take
 * them off the queue and commit them after releasing it (tt__waiter), so a condition on a stack
 * may die as soon as the last waiter and signaller have returned. A waiter claimed by a timer, a
 * cancellation or shut-down takes itself off; signal skips it and wakes the next one instead.
 * Every return path takes the mutex back before returning (pthreads' rule), see
 * tt__mutex_relock_after_wait. There are no spurious wake-ups, but callers should loop on their
 * predicate all the same, as with any condition variable. */
#include <string.h>

#include "sync_int.h"

typedef struct cond_impl {
  tt__lock lock;         /* protects q; dead is stored under it */
  _Atomic uint32_t dead; /* COND_DEAD once destroyed (0 when initialised) */
  tt__wq q;
} cond_impl;

#define COND_DEAD 0xdeadu

_Static_assert(sizeof(cond_impl) <= sizeof(tt_cond), "tt_cond too small for its implementation");
_Static_assert(_Alignof(cond_impl) <= _Alignof(tt_cond), "tt_cond under-aligned");

#define IMPL(c) ((cond_impl *)(void *)(c)->opaque_)

void tt_cond_init(tt_cond *c) {
  if (c)
    memset(c, 0, sizeof *c);
}

/* Whether c was destroyed. relaxed: destroy stores it under the lock, and a caller that uses c
 * after destroying it is ordered after that store by its own program order (or races its own
 * destroy: then the checks under the lock decide). */
static inline bool dead(cond_impl *ci) {
  return atomic_load_explicit(&ci->dead, memory_order_relaxed) == COND_DEAD;
}

int tt_cond_destroy(tt_cond *c) {
  if (c == NULL)
    return TT_EINVAL;
  cond_impl *ci = IMPL(c);
  int r = 0;
  tt__lock_acquire(&ci->lock);
  if (dead(ci))
    r = TT_EINVAL;
  else if (ci->q.head != NULL)
    r = TT_EBUSY; /* waiters, or a timed-out one still leaving */
  else
    /* relaxed: read under this lock by any waiter before it queues (see dead()). */
    atomic_store_explicit(&ci->dead, COND_DEAD, memory_order_relaxed);
  tt__lock_release(&ci->lock);
  return r;
}

int tt_cond_wait_dl(tt_cond *c, tt_mutex *m, int64_t deadline) {
  if (c == NULL || m == NULL)
    return TT_EINVAL;
  cond_impl *ci = IMPL(c);
  if (dead(ci) || tt__mutex_dead(m))
    return TT_EINVAL;
  tt__coro *co = tt__self();
  uint64_t tok = tt__sync_token(co);
  if (!tt__mutex_held_by(m, tok))
    return TT_EPERM;
  int r = tt__block_check(co);
  if (r != 0)
    return r; /* the mutex is still held */
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  tt__lock_acquire(&ci->lock);
  if (TT_UNLIKELY(dead(ci))) { /* destroyed since the check (the caller's race): m is still held */
    tt__lock_release(&ci->lock);
    return TT_EINVAL;
  }
  tt__wq_push(&ci->q, &wt);
  r = tt__mutex_unlock_for_wait(m, co, tok);
  TT_ASSERT(r == 0); /* we hold it (checked above), and only the holder can release it */
  r = tt__wait(&wt, TT_WAIT_COND_WAIT, c, deadline, &ci->lock);
  if (tt__wait_self_result(r)) {
    tt__lock_acquire(&ci->lock);
    tt__wq_unlink(&ci->q, &wt);
    tt__lock_release(&ci->lock);
  }
  int rr = tt__mutex_relock_after_wait(m, co, tok);
  return rr != 0 ? rr : r;
}

int tt_cond_wait(tt_cond *c, tt_mutex *m) { return tt_cond_wait_dl(c, m, TT_FOREVER); }

/* Wakes up to n waiters (n < 0: all). */
static int wake(tt_cond *c, int64_t n) {
  if (c == NULL)
    return TT_EINVAL;
  cond_impl *ci = IMPL(c);
  tt__waiter *woken = NULL, **tail = &woken;
  tt__lock_acquire(&ci->lock);
  if (TT_UNLIKELY(dead(ci))) {
    tt__lock_release(&ci->lock);
    return TT_EINVAL;
  }
  for (tt__waiter *wt = ci->q.head, *nx; wt && n != 0; wt = nx) {
    nx = wt->next;
    if (!tt__wake_claim(wt, 0))
      continue; /* a timer or a cancellation won it: it leaves by itself */
    tt__wq_unlink(&ci->q, wt);
    *tail = wt; /* in queue order */
    tail = &wt->next;
    n--;
  }
  tt__lock_release(&ci->lock);
  tt__wake_commit_list(woken);
  return 0;
}

int tt_cond_signal(tt_cond *c) { return wake(c, 1); }

int tt_cond_broadcast(tt_cond *c) { return wake(c, -1); }
