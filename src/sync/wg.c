/* SPDX-License-Identifier: MIT */
/* Wait groups (Go's sync.WaitGroup), with a deadline wait that needs no helper coroutine.
 *
 * The counter is an atomic word, so Add and Done cost one compare-and-swap; the FIFO of waiters
 * and its length sit under an internal lock that only waiters and the Add that reaches zero take.
 * The two sides meet Dekker-style: a waiter counts itself in `nwaiters` and then reads the counter,
 * an adder moves the counter and then reads `nwaiters` (both sequentially consistent), so either
 * the waiter sees zero or the adder sees the waiter and takes the lock to wake it.
 *
 * Waking claims the waiters and takes them off the queue under the lock, and commits them after
 * it (tt__waiter explains why): neither Done nor a woken Wait touches the wait group afterwards,
 * so one on either side's stack may die as soon as that side's call returns. */
#include <string.h>

#include "internal.h"

typedef struct wg_impl {
  _Atomic int64_t count;
  _Atomic int64_t nwaiters; /* queued waiters; changed under lock, read without it */
  tt__lock lock;            /* protects the queue */
  uint32_t pad;
  tt__waiter *head, *tail;
} wg_impl;

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
  atomic_fetch_sub_explicit(&g->nwaiters, 1, memory_order_relaxed);
}

void tt_wg_init(tt_wg *wg) {
  if (wg)
    memset(wg, 0, sizeof *wg);
}

/* The counter reached zero: wake whoever waits, if it still is zero once we hold the lock. */
static void wake_all(wg_impl *g) {
  tt__waiter *woken = NULL;
  tt__lock_acquire(&g->lock);
  if (atomic_load_explicit(&g->count, memory_order_relaxed) == 0) {
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
  int64_t c = atomic_load_explicit(&g->count, memory_order_relaxed);
  do {
    if ((delta < 0 && c + delta < 0) || (delta > 0 && c > INT64_MAX - delta))
      return TT_EINVAL; /* Go panics; the counter is left as it was */
    /* seq_cst: pairs with the waiter's seq_cst increment of nwaiters and load of count. */
  } while (!atomic_compare_exchange_weak_explicit(&g->count, &c, c + delta, memory_order_seq_cst,
                                                  memory_order_relaxed));
  if (c + delta == 0 && delta != 0 && atomic_load_explicit(&g->nwaiters, memory_order_seq_cst) > 0)
    wake_all(g);
  return 0;
}

int tt_wg_done(tt_wg *wg) { return tt_wg_add(wg, -1); }

int64_t tt_wg_count(tt_wg *wg) {
  if (wg == NULL)
    return TT_EINVAL;
  return atomic_load_explicit(&IMPL(wg)->count, memory_order_acquire);
}

int tt_wg_wait_dl(tt_wg *wg, int64_t deadline) {
  if (wg == NULL)
    return TT_EINVAL;
  wg_impl *g = IMPL(wg);
  /* acquire: the work of every Done happens before Wait returns. */
  if (atomic_load_explicit(&g->count, memory_order_acquire) == 0)
    return 0;
  tt__coro *co = tt__self();
  int r = tt__block_check(co);
  if (r != 0)
    return r;
  tt__lock_acquire(&g->lock);
  atomic_fetch_add_explicit(&g->nwaiters, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&g->count, memory_order_seq_cst) == 0) {
    atomic_fetch_sub_explicit(&g->nwaiters, 1, memory_order_relaxed);
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
