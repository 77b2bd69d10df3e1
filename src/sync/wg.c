/* SPDX-License-Identifier: MIT */
/* Wait groups (Go's sync.WaitGroup), with a deadline wait that needs no helper coroutine.
 *
 * The counter and the FIFO of waiters sit under one internal lock. When the counter reaches zero
 * the waiters are claimed and taken off the queue under the lock and woken after it (tt__waiter
 * explains why): neither Done nor a woken Wait touches the wait group afterwards, so one on either
 * side's stack may die as soon as that side's call returns. */
#include <string.h>

#include "internal.h"

typedef struct wg_impl {
  tt__lock lock; /* protects everything below */
  uint32_t pad;
  int64_t count;
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
}

void tt_wg_init(tt_wg *wg) { memset(wg, 0, sizeof *wg); }

int tt_wg_add(tt_wg *wg, int64_t delta) {
  if (wg == NULL)
    return TT_EINVAL;
  wg_impl *g = IMPL(wg);
  tt__lock_acquire(&g->lock);
  if ((delta < 0 && g->count + delta < 0) || (delta > 0 && g->count > INT64_MAX - delta)) {
    tt__lock_release(&g->lock);
    return TT_EINVAL;
  }
  g->count += delta;
  tt__waiter *woken = NULL;
  if (g->count == 0) {
    /* Claim every waiter under the lock, commit them after it (see tt__waiter). Those already
     * claimed by a timer or a cancellation stay queued and remove themselves. */
    for (tt__waiter *wt = g->head, *nx; wt; wt = nx) {
      nx = wt->next;
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
  return 0;
}

int tt_wg_done(tt_wg *wg) { return tt_wg_add(wg, -1); }

int64_t tt_wg_count(tt_wg *wg) {
  wg_impl *g = IMPL(wg);
  tt__lock_acquire(&g->lock);
  int64_t c = g->count;
  tt__lock_release(&g->lock);
  return c;
}

int tt_wg_wait_dl(tt_wg *wg, int64_t deadline) {
  if (wg == NULL)
    return TT_EINVAL;
  tt__coro *co = tt__self();
  int r = tt__block_check(co);
  if (r != 0)
    return r;
  wg_impl *g = IMPL(wg);
  tt__lock_acquire(&g->lock);
  if (g->count == 0) {
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
