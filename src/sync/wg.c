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

#include "internal.h"

typedef struct wg_impl {
  _Atomic uint64_t state; /* counter (int32) << 32 | queued waiters (uint32) */
  tt__lock lock;          /* protects the queue */
  uint32_t pad;
  tt__waiter *head, *tail;
} wg_impl;

static inline int64_t counter_of(uint64_t s) { return (int32_t)(uint32_t)(s >> 32); }

_Static_assert(sizeof(wg_impl) <= sizeof(tt_wg), "tt_wg too small for its implementation");
_Static_assert(_Alignof(wg_impl) <= _Alignof(tt_wg), "tt_wg under-aligned");

#define IMPL(wg) ((wg_impl *)(void *)(wg)->opaque_)

static void unlink(wg_impl *g, tt__waiter *wt) {
  if (wt->prev)
    wt->prev->next = wt->next;
  else
    g->head = wt->next;
  if (wt->next)
    wt->next->prev = wt->prev;
  else
    g->tail = wt->prev;
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
    for (tt__waiter *wt = g->head, *nx; wt; wt = nx) {
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
  while (woken) {
    tt__waiter *nx = woken->next; /* read before the commit, after which woken may die */
    tt__wake_commit(woken);
    woken = nx;
  }
}

int tt_wg_add(tt_wg *wg, int64_t delta) {
  if (wg == NULL)
    return TT_EINVAL;
  wg_impl *g = IMPL(wg);
  uint64_t s = atomic_load_explicit(&g->state, memory_order_relaxed), ns;
  int64_t c;
  do {
    c = counter_of(s);
    if ((delta < 0 && c + delta < 0) || (delta > 0 && delta > INT32_MAX - c))
      return TT_EINVAL; /* Go panics; the counter is left as it was */
    ns = ((uint64_t)(uint32_t)(int32_t)(c + delta) << 32) | (uint32_t)s;
    /* seq_cst: one total order with the waiters' increments of the same word. */
  } while (!atomic_compare_exchange_weak_explicit(&g->state, &s, ns, memory_order_seq_cst,
                                                  memory_order_relaxed));
  if (c + delta == 0 && delta != 0 && (uint32_t)ns > 0)
    wake_all(g);
  return 0;
}

int tt_wg_done(tt_wg *wg) { return tt_wg_add(wg, -1); }

int64_t tt_wg_count(tt_wg *wg) {
  if (wg == NULL)
    return TT_EINVAL;
  return counter_of(atomic_load_explicit(&IMPL(wg)->state, memory_order_acquire));
}

int tt_wg_wait_dl(tt_wg *wg, int64_t deadline) {
  if (wg == NULL)
    return TT_EINVAL;
  wg_impl *g = IMPL(wg);
  /* acquire: the work of every Done happens before Wait returns. */
  if (counter_of(atomic_load_explicit(&g->state, memory_order_acquire)) == 0)
    return 0;
  tt__coro *co = tt__self();
  int r = tt__block_check(co);
  if (r != 0)
    return r;
  tt__lock_acquire(&g->lock);
  /* Count ourselves in; seq_cst: ordered with the Add that zeroes the counter (see above). */
  if (counter_of(atomic_fetch_add_explicit(&g->state, 1, memory_order_seq_cst)) == 0) {
    atomic_fetch_sub_explicit(&g->state, 1, memory_order_relaxed);
    tt__lock_release(&g->lock);
    return 0;
  }
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  wt.prev = g->tail;
  if (g->tail)
    g->tail->next = &wt;
  else
    g->head = &wt;
  g->tail = &wt;
  r = tt__wait(&wt, TT_WAIT_WAITGROUP_WAIT, wg, deadline, &g->lock);
  if (tt__wait_self_result(r)) {
    tt__lock_acquire(&g->lock);
    unlink(g, &wt);
    tt__lock_release(&g->lock);
  }
  return r;
}

int tt_wg_wait(tt_wg *wg) { return tt_wg_wait_dl(wg, TT_FOREVER); }
