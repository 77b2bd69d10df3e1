/* SPDX-License-Identifier: MIT */
/* select: waiting on several channel operations at once, Go's selectgo.
 *
 * Design
 * ------
 * Lock every distinct channel in address order (a global order, so two selects over the same
 * channels cannot deadlock); poll the cases in a random order and perform the first that can
 * proceed (uniform choice among the ready ones, as Go's); otherwise queue one tt__chan_wait per
 * case, all sharing one tt__waiter, and park with every lock released only once the context is
 * saved. The first waker to claim the shared token fires its case: it performs the operation on
 * that case's buffer (under its channel's lock, as for a plain operation) and records the case in
 * the token's result. Waiters of the other cases become stale; on waking, the select takes each
 * of their channels' locks in turn and unlinks those still queued (a waker that met one first has
 * unlinked it already).
 *
 * In deterministic mode the random order comes from the worker's generator, seeded by the run.
 *
 * Rejected: locking the channels one at a time while polling (a case could become ready behind
 * us and be missed, and the choice would not be uniform); Go's pass 3 under all the locks (only a
 * channel's own lock is needed to check a stale waiter's link). */
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "chan/chan_int.h"

#define SMALL 8 /* cases handled without allocating */

uint64_t tt__chan_rand(void) {
  tt__worker *w = tt__tls_worker;
  if (w)
    return tt__rand(w);
  static __thread uint64_t s;
  if (s == 0)
    s = ((uint64_t)tt__clock() ^ ((uint64_t)syscall(SYS_gettid) << 32)) | 1;
  /* xorshift64*, as the workers' generator. */
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s * 0x2545F4914F6CDD1Dull;
}

typedef struct lockset {
  tt__chan **v; /* distinct channels, ascending addresses */
  int *how;     /* how each is held (tt__chan_lock) */
  size_t n;
} lockset;

static void lock_all(lockset *ls) {
  for (size_t i = 0; i < ls->n; i++)
    ls->how[i] = tt__chan_lock(ls->v[i]);
}

static void unlock_all(void *p) {
  lockset *ls = p;
  for (size_t i = ls->n; i-- > 0;)
    tt__chan_unlock(ls->v[i], ls->how[i]);
}

static int select_impl(tt_select_case *cases, size_t n, int64_t deadline, bool block) {
  if (n == 0)
    return block ? tt__chan_nil_wait(TT_WAIT_SELECT_NO_CASES, deadline) : TT_EAGAIN;
  if (cases == NULL || n > (size_t)1 << 30)
    return TT_EINVAL;

  tt__chan *small_c[SMALL], *small_l[SMALL];
  uint32_t small_p[SMALL];
  int small_h[SMALL];
  int *hows = small_h;
  tt__chan_wait small_w[SMALL];
  tt__chan **chans = small_c, **locks = small_l;
  uint32_t *perm = small_p;
  tt__chan_wait *nodes = small_w;
  if (n > SMALL) {
    chans = malloc(n * sizeof *chans);
    locks = malloc(n * sizeof *locks);
    perm = malloc(n * sizeof *perm);
    nodes = malloc(n * sizeof *nodes);
    hows = malloc(n * sizeof *hows);
    if (!chans || !locks || !perm || !nodes || !hows) {
      free(hows);
      free(chans);
      free(locks);
      free(perm);
      free(nodes);
      return TT_ENOMEM;
    }
  }
  int r = 0;
  tt__holder *self = NULL;
  bool need_holder = false;
  size_t live = 0;    /* cases with a channel, in perm[0..live) */
  uint64_t rbits = 0; /* random bits for the order */
  for (size_t i = 0; i < n; i++) {
    tt_select_case *k = &cases[i];
    k->ok = false;
    k->err = 0;
    if (k->op != TT_SELECT_RECV && k->op != TT_SELECT_SEND) {
      r = TT_EINVAL;
      goto out;
    }
    chans[i] = NULL;
    if (k->ch == NULL)
      continue;
    int err;
    tt__chan *c = tt__chan_check(k->ch, "tt_select", &self, &err);
    if (c == NULL) {
      r = err;
      goto out;
    }
    if (k->val == NULL && c->esize) {
      r = TT_EINVAL;
      goto out;
    }
    if (k->op == TT_SELECT_RECV && c->esize == sizeof(tt_chan *))
      need_holder = true;
    chans[i] = c;
    /* Inside-out Fisher-Yates: perm is a uniformly random order of the live cases. The index is
     * drawn by multiply-shift (Lemire) from 32 random bits, two draws per generator call: no
     * division, and a bias below 2^-30 for any realistic case count. */
    if ((live & 1) == 0)
      rbits = tt__chan_rand();
    else
      rbits >>= 32;
    size_t j = (size_t)(((rbits & 0xffffffffu) * (uint64_t)(live + 1)) >> 32);
    perm[live] = perm[j];
    perm[j] = (uint32_t)i;
    live++;
  }
  self = tt__holder_self(need_holder);
  if (need_holder && self == NULL) {
    r = TT_ENOMEM;
    goto out;
  }

  /* The lock order: distinct channels by address (insertion sort; selects are small). */
  lockset ls = {locks, hows, 0};
  for (size_t k = 0; k < live; k++) {
    tt__chan *c = chans[perm[k]];
    size_t j = ls.n;
    bool dup = false;
    while (j > 0 && locks[j - 1] >= c) {
      if (locks[j - 1] == c) {
        dup = true;
        break;
      }
      j--;
    }
    if (dup)
      continue;
    for (size_t m = ls.n; m > j; m--)
      locks[m] = locks[m - 1];
    locks[j] = c;
    ls.n++;
  }

  lock_all(&ls);
  for (size_t k = 0; k < live; k++) {
    size_t i = perm[k];
    tt__chan *c = chans[i];
    /* A quick look first: most cases of a select that waits are not ready. */
    if (!atomic_load_explicit(&c->closed, memory_order_relaxed) &&
        (cases[i].op == TT_SELECT_SEND ? c->recvq.head == NULL && c->count >= c->cap
                                       : c->sendq.head == NULL && c->count == 0))
      continue;
    tt__chan_wait *woken;
    int done = cases[i].op == TT_SELECT_SEND
                   ? tt__chan_send_locked(chans[i], cases[i].val, NULL, self, &woken)
                   : tt__chan_recv_locked(chans[i], cases[i].val, self, &woken);
    if (done != 0) {
      unlock_all(&ls);
      if (woken)
        tt__wake_commit(woken->wt);
      cases[i].err = done == 1 ? 0 : done;
      cases[i].ok = cases[i].op == TT_SELECT_RECV && done == 1;
      r = (int)i;
      goto out;
    }
  }
  if (!block) {
    unlock_all(&ls);
    r = TT_EAGAIN;
    goto out;
  }
  tt__coro *co = tt__self();
  if ((r = tt__block_check(co)) != 0) {
    unlock_all(&ls);
    goto out;
  }
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  for (size_t i = 0; i < n; i++) {
    if (chans[i] == NULL)
      continue;
    tt__chan_wait *nd = &nodes[i];
    nd->wt = &wt;
    nd->elem = cases[i].val;
    nd->holder = self;
    nd->idx = (uint32_t)i;
    nd->carry = 0;
    tt__chan_enqueue(cases[i].op == TT_SELECT_SEND ? &chans[i]->sendq : &chans[i]->recvq,
                     &nodes[i]);
  }
  tt__select_wait sw = {cases, n};
  r = tt__wait_fn(&wt, TT_WAIT_SELECT, &sw, deadline, ls.n ? unlock_all : NULL, &ls);
  /* Unlink the cases that did not fire (the one that fired was unlinked by its waker). */
  size_t fired = r >= 2 ? (size_t)TT__FIRED_IDX(r) : n;
  for (size_t i = 0; i < n; i++) {
    tt__chan *c = chans[i];
    if (c == NULL || i == fired)
      continue;
    int how = tt__chan_lock(c);
    if (nodes[i].linked)
      tt__chan_unlink(cases[i].op == TT_SELECT_SEND ? &c->sendq : &c->recvq, &nodes[i]);
    tt__chan_unlock(c, how);
  }
  if (r >= 2) {
    size_t i = (size_t)TT__FIRED_IDX(r);
    bool closed = TT__FIRED_CLOSED(r);
    cases[i].err = closed ? TT_ECLOSED : 0;
    cases[i].ok = cases[i].op == TT_SELECT_RECV && !closed;
    r = (int)i;
  }
out:
  if (n > SMALL) {
    free(chans);
    free(locks);
    free(perm);
    free(nodes);
    free(hows);
  }
  return r;
}

int tt_select(tt_select_case *cases, size_t n) { return select_impl(cases, n, TT_FOREVER, true); }
int tt_select_dl(tt_select_case *cases, size_t n, int64_t deadline) {
  return select_impl(cases, n, deadline, true);
}
int tt_select_try(tt_select_case *cases, size_t n) {
  return select_impl(cases, n, TT_FOREVER, false);
}
