/* SPDX-License-Identifier: MIT */
/* Wait groups (Go's sync.WaitGroup), with a deadline wait that needs no helper coroutine.
 *
 * The counter and the number of queued waiters share one 64-bit atomic word (counter in the high
 * half, waiters in the low half), as in Go: Add and Done cost one compare-and-swap, and the one
 * that brings the counter to zero learns from that same operation whether anyone waits. So a
 * Done that finds no waiter never touches the wait group again, and a Wait that returns because
 * the counter is zero may free it at once. The FIFO of waiters sits under an internal lock that
 * only waiters and the Add that wakes them take. A waiter counts itself in (one atomic add on the
 * word, under the lock) before it queues; all operations on the word are totally ordered, so
 * either the waiter sees the counter at zero and leaves, or the Add that zeroes it sees the waiter
 * and wakes it (after taking the lock, by which time the waiter is queued).
 *
 * Waking claims the waiters and takes them off the queue under the lock, and commits them after
 * it (tt__waiter explains why): neither Done nor a woken Wait touches the wait group afterwards,
 * so one on either side's stack may die as soon as that side's call returns. */
#include <string.h>

#include "sync_int.h"

typedef struct wg_impl {
  _Atomic uint64_t state; /* counter (int32) << 32 | queued waiters (uint32) */
  tt__lock lock;          /* protects the queue */
  uint32_t pad;
  tt__wq q;
} wg_impl;

static inline int64_t counter_of(uint64_t s) { return (int32_t)(uint32_t)(s >> 32); }

/* A destroyed wait group's word: the counter at -1, which no Add can produce (the counter never
 * goes negative), and no waiters. Add's one range test refuses it (see tt_wg_add); Wait's fast
 * path tests for a zero counter, which it is not, and the slow path looks for it. */
#define WG_DEAD ((uint64_t)UINT32_MAX << 32)

_Static_assert(sizeof(wg_impl) <= sizeof(tt_wg), "tt_wg too small for its implementation");
_Static_assert(_Alignof(wg_impl) <= _Alignof(tt_wg), "tt_wg under-aligned");

#define IMPL(wg) ((wg_impl *)(void *)(wg)->opaque_)

/* Takes wt off the queue and out of the count of waiters; g->lock held. */
static void unlink(wg_impl *g, tt__waiter *wt) {
  tt__wq_unlink(&g->q, wt);
  atomic_fetch_sub_explicit(&g->state, 1, memory_order_relaxed);
}

void tt_wg_init(tt_wg *wg) {
  if (wg)
    memset(wg, 0, sizeof *wg);
}

/* The counter reached zero: wake whoever waits, if it still is zero once we hold the lock. */
static void wake_all(wg_impl *g) {
  tt__waiter *woken = NULL;
  tt__lock_acquire(&g->lock);
  if (counter_of(atomic_load_explicit(&g->state, memory_order_relaxed)) == 0) {
    for (tt__waiter *wt = g->q.head, *nx; wt; wt = nx) {
      nx = wt->next;
      /* Waiters already claimed by a timer or a cancellation stay queued: they remove
       * themselves. */
      if (!tt__wake_claim(wt, 0))
        continue;
      unlink(g, wt);
      wt->next = woken;
      woken = wt;
    }
  }
  tt__lock_release(&g->lock);
  tt__wake_commit_list(woken);
}

int tt_wg_add(tt_wg *wg, int64_t delta) {
  if (wg == NULL)
    return TT_EINVAL;
  wg_impl *g = IMPL(wg);
  uint64_t s = atomic_load_explicit(&g->state, memory_order_relaxed), ns, n;
  int64_t c;
  do {
    c = counter_of(s);
    /* The new counter must lie in [0, INT32_MAX] (Go panics otherwise; the counter is left as it
     * was), and so must the old one: only a destroyed wait group's does not (WG_DEAD). One
     * unsigned test covers both, a negative value being above INT32_MAX as unsigned. The sum is
     * taken modulo 2^64, and lands in [0, INT32_MAX] only if the true sum does: the true sum lies
     * within 2^63 + 2^31 of 0, and every other value congruent to [0, INT32_MAX] is further. */
    n = (uint64_t)c + (uint64_t)delta;
    if (TT_UNLIKELY((n | (uint64_t)c) > INT32_MAX))
      return TT_EINVAL;
    ns = (n << 32) | (uint32_t)s;
    /* seq_cst: one total order with the waiters' increments of the same word. */
  } while (!atomic_compare_exchange_weak_explicit(&g->state, &s, ns, memory_order_seq_cst,
                                                  memory_order_relaxed));
  if (n == 0 && delta != 0 && (uint32_t)ns > 0)
    wake_all(g);
  return 0;
}

int tt_wg_done(tt_wg *wg) { return tt_wg_add(wg, -1); }

int64_t tt_wg_count(tt_wg *wg) {
  if (wg == NULL)
    return TT_EINVAL;
  int64_t c = counter_of(atomic_load_explicit(&IMPL(wg)->state, memory_order_acquire));
  return c < 0 ? TT_EINVAL : c; /* only WG_DEAD's counter is negative */
}

/* Poisons an idle wait group: swaps its word from 0 (counter zero, no waiter counted in) to
 * WG_DEAD. Under the lock, where a waiter counts itself in: a waiter counted in first makes the
 * word non-zero (TT_EBUSY), one that comes after finds the poison there and does not queue. */
int tt_wg_destroy(tt_wg *wg) {
  if (wg == NULL)
    return TT_EINVAL;
  wg_impl *g = IMPL(wg);
  uint64_t s = 0;
  tt__lock_acquire(&g->lock);
  /* relaxed: nothing is published with the poison; later calls need only see the value. */
  bool ok = atomic_compare_exchange_strong_explicit(&g->state, &s, WG_DEAD, memory_order_relaxed,
                                                    memory_order_relaxed);
  tt__lock_release(&g->lock);
  return ok ? 0 : s == WG_DEAD ? TT_EINVAL : TT_EBUSY;
}

int tt_wg_wait_dl(tt_wg *wg, int64_t deadline) {
  if (wg == NULL)
    return TT_EINVAL;
  wg_impl *g = IMPL(wg);
  /* acquire: the work of every Done happens before Wait returns. */
  int64_t c = counter_of(atomic_load_explicit(&g->state, memory_order_acquire));
  if (c == 0)
    return 0;
  if (c < 0)
    return TT_EINVAL; /* destroyed (WG_DEAD) */
  tt__coro *co = tt__self();
  int r = tt__block_check(co);
  if (r != 0)
    return r;
  tt__lock_acquire(&g->lock);
  /* Count ourselves in; seq_cst: ordered with the Add that zeroes the counter (see above). */
  c = counter_of(atomic_fetch_add_explicit(&g->state, 1, memory_order_seq_cst));
  if (c <= 0) { /* zero, or destroyed (WG_DEAD: checked under the lock its swap is made under) */
    atomic_fetch_sub_explicit(&g->state, 1, memory_order_relaxed);
    tt__lock_release(&g->lock);
    return c == 0 ? 0 : TT_EINVAL;
  }
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  tt__wq_push(&g->q, &wt);
  r = tt__wait(&wt, TT_WAIT_WAITGROUP_WAIT, wg, deadline, &g->lock);
  if (tt__wait_self_result(r)) {
    tt__lock_acquire(&g->lock);
    unlink(g, &wt);
    tt__lock_release(&g->lock);
  }
  return r;
}

int tt_wg_wait(tt_wg *wg) { return tt_wg_wait_dl(wg, TT_FOREVER); }
