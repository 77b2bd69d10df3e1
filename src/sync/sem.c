/* SPDX-License-Identifier: MIT */
/* Weighted semaphores (Go's golang.org/x/sync/semaphore.Weighted).
 *
 * The capacity (size_, public so that TT_SEM_INIT can set it), the units held, and a FIFO of
 * waiters with their requests, all under a per-semaphore tt__lock. An acquire succeeds at once
 * only if its units are free and no one waits (so arrivals never overtake the queue); otherwise it
 * queues. A release serves the queue from the head while the head's request fits, and stops at the
 * first that does not: a large request at the head holds back smaller ones behind it, which is
 * what keeps it from starving (x/sync's rule). Serving is a hand-off: the units are counted as held
 * for the waiter under the lock and its waiter is claimed with TT__GRANTED, then committed after
 * the lock is released (tt__waiter). A waiter claimed by a timer or a cancellation is skipped (it
 * got nothing) and leaves by itself; if it was at the head, leaving serves the waiters behind it
 * that now fit (x/sync does the same). */
#include <string.h>

#include "sync_int.h"

typedef struct sem_impl {
  int64_t cur;   /* units held */
  tt__lock lock; /* protects cur and q */
  uint32_t pad;
  tt__wq q;
} sem_impl;

_Static_assert(sizeof(sem_impl) <= sizeof(((tt_sem *)0)->opaque_), "tt_sem too small");
_Static_assert(_Alignof(sem_impl) <= 8, "tt_sem under-aligned");

#define IMPL(s) ((sem_impl *)(void *)(s)->opaque_)

/* A destroyed semaphore's count of units held (under the lock, like every access to it): no
 * request ever fits beside it, so the acquires' tests fail as on a full semaphore and only their
 * slow branches look for it; release and the query test for it. (The capacity stays as it was:
 * it is read without the lock.) */
#define SEM_DEAD INT64_MAX

typedef struct swait {
  tt__waiter wt; /* first: the queue links waiters */
  int64_t k;
} swait;

int tt_sem_init(tt_sem *sem, int64_t n) {
  if (sem == NULL || n < 1)
    return TT_EINVAL;
  memset(sem, 0, sizeof *sem);
  sem->size_ = n;
  return 0;
}

int tt_sem_destroy(tt_sem *sem) {
  if (sem == NULL)
    return TT_EINVAL;
  sem_impl *si = IMPL(sem);
  int r = 0;
  tt__lock_acquire(&si->lock);
  if (si->cur == SEM_DEAD)
    r = TT_EINVAL;
  else if (si->cur != 0 || si->q.head != NULL)
    r = TT_EBUSY; /* units held, or waiters (or a timed-out one still leaving) */
  else
    si->cur = SEM_DEAD; /* under the lock, where the acquires look before they queue */
  tt__lock_release(&si->lock);
  return r;
}

/* Serves waiters from the head while their requests fit. Lock held; granted waiters are appended
 * to *tail for the caller to commit after unlocking. */
static void serve(tt_sem *sem, tt__waiter ***tail) {
  sem_impl *si = IMPL(sem);
  for (tt__waiter *wt = si->q.head, *nx; wt; wt = nx) {
    nx = wt->next;
    if (!tt__waiter_pending(wt))
      continue; /* timed out or cancelled: not served, leaves by itself */
    int64_t k = ((swait *)wt)->k;
    if (sem->size_ - si->cur < k)
      break; /* head-of-line: the rest wait behind it */
    if (!tt__wake_claim(wt, TT__GRANTED))
      continue; /* claimed just now by its timer */
    si->cur += k;
    tt__wq_unlink(&si->q, wt);
    **tail = wt;
    *tail = &wt->next;
  }
}

int tt_sem_acquire_dl(tt_sem *sem, int64_t k, int64_t deadline) {
  if (sem == NULL || k < 0 || sem->size_ < 1 || k > sem->size_)
    return TT_EINVAL;
  sem_impl *si = IMPL(sem);
  tt__coro *co = tt__self();
  tt__lock_acquire(&si->lock);
  if (sem->size_ - si->cur >= k && si->q.head == NULL) {
    si->cur += k;
    tt__lock_release(&si->lock);
    return 0;
  }
  /* Destroyed since the test above (the caller's race; SEM_DEAD never fits): never queue. */
  int r = TT_UNLIKELY(si->cur == SEM_DEAD) ? TT_EINVAL : tt__block_check(co);
  if (r != 0) {
    tt__lock_release(&si->lock);
    return r;
  }
  swait sw = {.k = k};
  tt__waiter_init(&sw.wt, co);
  tt__wq_push(&si->q, &sw.wt);
  r = tt__wait(&sw.wt, TT_WAIT_SEMACQUIRE, sem, deadline, &si->lock);
  if (r == TT__GRANTED)
    return 0;
  TT_ASSERT(tt__wait_self_result(r));
  tt__waiter *woken = NULL, **tail = &woken;
  tt__lock_acquire(&si->lock);
  bool head = si->q.head == &sw.wt;
  tt__wq_unlink(&si->q, &sw.wt);
  if (head)
    serve(sem, &tail);
  tt__lock_release(&si->lock);
  tt__wake_commit_list(woken);
  return r;
}

int tt_sem_acquire(tt_sem *sem, int64_t k) { return tt_sem_acquire_dl(sem, k, TT_FOREVER); }

int tt_sem_try_acquire(tt_sem *sem, int64_t k) {
  if (sem == NULL || k < 0 || sem->size_ < 1 || k > sem->size_)
    return TT_EINVAL;
  sem_impl *si = IMPL(sem);
  int r = TT_EBUSY;
  tt__lock_acquire(&si->lock);
  if (sem->size_ - si->cur >= k && si->q.head == NULL) {
    si->cur += k;
    r = 0;
  } else if (si->cur == SEM_DEAD) { /* as in tt_sem_acquire_dl: SEM_DEAD never fits */
    r = TT_EINVAL;
  }
  tt__lock_release(&si->lock);
  return r;
}

int tt_sem_release(tt_sem *sem, int64_t k) {
  if (sem == NULL || k < 0)
    return TT_EINVAL;
  sem_impl *si = IMPL(sem);
  tt__waiter *woken = NULL, **tail = &woken;
  tt__lock_acquire(&si->lock);
  if (si->cur == SEM_DEAD || k > si->cur) {
    tt__lock_release(&si->lock);
    return si->cur == SEM_DEAD ? TT_EINVAL : TT_EPERM;
  }
  si->cur -= k;
  serve(sem, &tail);
  tt__lock_release(&si->lock);
  tt__wake_commit_list(woken);
  return 0;
}

int64_t tt_sem_held(const tt_sem *sem) {
  if (sem == NULL)
    return TT_EINVAL;
  sem_impl *si = IMPL((tt_sem *)sem);
  tt__lock_acquire(&si->lock);
  int64_t n = si->cur == SEM_DEAD ? TT_EINVAL : si->cur;
  tt__lock_release(&si->lock);
  return n;
}
