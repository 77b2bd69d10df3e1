/* SPDX-License-Identifier: MIT */
/* Channels: making, sending, receiving, closing, and the references values carry.
 *
 * Design
 * ------
 * Go's hchan: a lock, a ring buffer, and two FIFO queues of waiting parties (tt__chan_wait, Go's
 * sudog). A send that finds a waiting receiver copies its value straight into the receiver's
 * buffer and wakes it; one that finds room in the ring copies it there; otherwise the sender
 * queues itself and parks. A receive mirrors it, and a receive from a full ring with a waiting
 * sender takes the oldest value and moves the sender's into the freed slot, so FIFO order holds
 * across the ring and the queue.
 *
 * Invariants (c->lock held):
 *   - count > 0 implies recvq holds no waiter that can still be claimed; count < cap implies
 *     sendq holds none (for an unbuffered channel, cap == 0: at most one queue is non-empty);
 *   - once closed, sendq is empty and recvq empties as close wakes everyone.
 * A queued waiter whose token someone else already won (its timer, a cancellation, another case
 * of its select) is stale: whoever meets it first unlinks it and clears its `linked`, and the
 * party itself unlinks it only if still linked, both under the lock.
 *
 * Waking follows tt__waiter's two steps: waiters are claimed, their data copied and their queue
 * links cleared under the lock; they are committed (made runnable) after it is released, since a
 * woken party may return and free its stack at once.
 *
 * Lock order: a channel's lock, then (leaf) any channel's rlock (references). select takes the
 * locks of all its channels in address order. No lock is held across a switch.
 *
 * Worker bias. Most channels are used from one worker at a time (a pipeline's stages share a
 * worker: fresh coroutines stay with their spawner, woken ones run next). After BIAS_STREAK
 * consecutive acquisitions of the lock by one worker, that worker gets the bias: it then holds
 * the channel with a plain store of bheld, a compiler fence and a plain load of revoked — no
 * atomic instruction — instead of the lock. Anyone else takes the lock, stores revoked, runs
 * tt__asym_barrier (membarrier: every other thread executes a full barrier) and waits until bheld
 * is 0; then the bias is gone and the lock alone protects the channel. This is Dekker with an
 * asymmetric barrier, as in the scan protocol: either the owner sees revoked and backs off to the
 * lock, or the revoker sees bheld and waits. A channel revoked MAX_REVOKE times is never biased
 * again (the membarrier costs microseconds). Without membarrier (TSan builds, old kernels) there
 * is no bias.
 *
 * Rejected (for now): lock-free rings. Go's own channel is a lock per operation. */
#include <stdlib.h>
#include <string.h>

#include "chan/chan_int.h"

#define MAX_BYTES ((size_t)1 << 40)
#define BIAS_STREAK 64 /* consecutive acquisitions by one worker that earn it the bias */
#define MAX_REVOKE 3   /* revocations after which a channel stays unbiased */

int tt__chan_lock_slow(tt__chan *c, tt__worker *w) {
  tt__lock_acquire(&c->lock);
  uint32_t me = w ? (uint32_t)w->index + 1 : 0;
  uint32_t b = atomic_load_explicit(&c->bias, memory_order_relaxed);
  if (b != 0 && b != me) {
    /* Revoke: the owner either sees revoked before it enters, or we see its bheld and wait for
     * it to leave (acquire: its critical section happens before ours). */
    atomic_store_explicit(&c->revoked, 1, memory_order_relaxed);
    tt__asym_barrier();
    uint32_t spins = 0;
    while (atomic_load_explicit(&c->bheld, memory_order_acquire))
      tt__spin_step(&spins);
    atomic_store_explicit(&c->bias, 0, memory_order_relaxed);
    c->nrevoke++;
    c->bstreak = 0;
  } else if (b == me && me != 0) {
    /* Our own bias, revoked meanwhile (we saw revoked set): drop it. */
    atomic_store_explicit(&c->bias, 0, memory_order_relaxed);
  }
  if (me != 0 && c->blast == me) {
    if (++c->bstreak >= BIAS_STREAK && c->nrevoke < MAX_REVOKE && tt__rt.scan_asym &&
        atomic_load_explicit(&c->bias, memory_order_relaxed) == 0) {
      /* Grant ourselves the bias, under the lock: nobody holds the channel by bias now, and
       * whoever takes the lock after us sees it and revokes. */
      atomic_store_explicit(&c->revoked, 0, memory_order_relaxed);
      atomic_store_explicit(&c->bias, me, memory_order_relaxed);
    }
  } else {
    c->blast = me;
    c->bstreak = 1;
  }
  return 0;
}

/* Channels made and not yet freed, in this process (for tests and diagnostics). */
static _Atomic int64_t nlive;
int64_t tt__chan_count_live(void) { return atomic_load_explicit(&nlive, memory_order_relaxed); }

/* For tests: the worker a channel is biased to, or -1; and whether bias is possible at all. */
int tt__chan_bias_owner(tt_chan *h) {
  return (int)atomic_load_explicit(&tt__chan_of(h)->bias, memory_order_relaxed) - 1;
}
int tt__chan_bias_available(void) { return tt__rt.scan_asym; }

static inline void copy_elem(void *dst, const void *src, size_t n) {
  switch (n) {
  case 0:
    return;
  case 4:
    memcpy(dst, src, 4);
    return;
  case 8:
    memcpy(dst, src, 8);
    return;
  default:
    memcpy(dst, src, n);
  }
}

/* ---- Making and freeing ------------------------------------------------------------------- */

int tt_chan_make_opt(tt_chan **out, size_t esize, size_t cap, const tt_chan_opts *o) {
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  int mode = o ? o->mode : TT_CHAN_TRACKED;
  if (mode != TT_CHAN_TRACKED && mode != TT_CHAN_UNTRACKED && mode != TT_CHAN_DETACHED)
    return TT_EINVAL;
  if (cap > MAX_BYTES || esize > MAX_BYTES || (esize && cap > MAX_BYTES / esize))
    return TT_EINVAL; /* Go: "makechan: size out of range" */
  tt__holder *h = tt__holder_self(true);
  if (h == NULL)
    return TT_ENOMEM;
  tt__chan *c = tt__calloc(1, sizeof *c);
  if (c == NULL)
    return TT_ENOMEM;
  _Static_assert(_Alignof(max_align_t) > TT__MODE_MASK, "handles need free low bits");
  c->mode = (uint8_t)mode;
  c->esize = esize;
  c->cap = cap;
  c->carrier.kind = TT__HOLDER_CARRIER;
  c->carrier.owner = c;
  tt__worker *w = tt__tls_worker;
  c->made = w ? w->now : tt__clock();
  if (esize && cap && (c->buf = tt__malloc(esize * cap)) == NULL)
    goto nomem;
  if (o && o->name && (c->name = tt__strdup(o->name)) == NULL)
    goto nomem;
  if (mode == TT_CHAN_TRACKED) {
    if (tt__ref_add(h, c, 1) != 0)
      goto nomem;
  } else {
    atomic_init(&c->nrefs, 1);
  }
  atomic_fetch_add_explicit(&nlive, 1, memory_order_relaxed);
  *out = tt__chan_handle(c);
  return 0;
nomem:
  free(c->name);
  free(c->buf);
  free(c);
  return TT_ENOMEM;
}

tt_chan *tt_chan_make(size_t esize, size_t cap) {
  tt_chan *ch;
  return tt_chan_make_opt(&ch, esize, cap, NULL) == 0 ? ch : NULL;
}

void tt__chan_free(tt__chan *c) {
  if (c->timer)
    tt__atimer_destroy(c->timer); /* first: its callback may be about to send on c */
  /* Waiters hold references, so none is left when the last goes, except while the end of a run
   * discards coroutines that never finished: their wait nodes go with their stacks. */
  TT_ASSERT(tt__rt.discarding || (c->recvq.head == NULL && c->sendq.head == NULL));
  free(c->buf);
  free(c->carried);
  free(c->name);
  free(c);
  atomic_fetch_sub_explicit(&nlive, 1, memory_order_relaxed);
}

const char *tt_chan_name(tt_chan *handle) {
  if (handle == NULL)
    return NULL;
  tt__holder *h;
  int err;
  tt__chan *c = tt__chan_check(handle, "tt_chan_name", &h, &err);
  return c ? c->name : NULL;
}

/* ---- Queues ------------------------------------------------------------------------------- */

void tt__chan_enqueue(tt__chan_waitq *q, tt__chan_wait *n) {
  n->next = NULL;
  n->prev = q->tail;
  if (q->tail)
    q->tail->next = n;
  else
    q->head = n;
  q->tail = n;
  n->linked = 1;
}

void tt__chan_unlink(tt__chan_waitq *q, tt__chan_wait *n) {
  if (n->prev)
    n->prev->next = n->next;
  else
    q->head = n->next;
  if (n->next)
    n->next->prev = n->prev;
  else
    q->tail = n->prev;
  n->next = n->prev = NULL;
  n->linked = 0;
}

/* Takes the first waiter of q that can still be claimed, claiming it with the result of its case
 * firing (closed or not); stale waiters met on the way are unlinked. NULL if none. */
static inline __attribute__((always_inline)) tt__chan_wait *take_waiter(tt__chan_waitq *q,
                                                                        bool closed) {
  tt__chan_wait *n;
  while ((n = q->head) != NULL) {
    tt__chan_unlink(q, n);
    if (tt__wake_claim(n->wt, TT__FIRED(n->idx, closed)))
      return n;
  }
  return NULL;
}

/* ---- The data path ------------------------------------------------------------------------ */

/* The suspects' counters (see tt__chan): c->lock is held, so a load and a store suffice. */
static inline void count(_Atomic uint32_t *n) {
  uint32_t v = atomic_load_explicit(n, memory_order_relaxed);
  if (TT_UNLIKELY(v < TT__CHAN_MANY)) /* past it, a load and no store: the line is not dirtied */
    atomic_store_explicit(n, v + 1, memory_order_relaxed);
}

/* A value of id's went through c (c->lock held). */
static inline void count_sent(tt__chan *c, tt_id id) {
  count(&c->nsent);
  if (atomic_load_explicit(&c->last_sender, memory_order_relaxed) != id)
    atomic_store_explicit(&c->last_sender, id, memory_order_relaxed);
}

/* The running coroutine's id, 0 on a plain thread or a worker's own context. */
static inline tt_id self_id(void) {
  tt__worker *w = tt__tls_worker;
  return w && w->cur ? w->cur->id : 0;
}

void tt__chan_stats_get(const tt_chan *handle, tt__chan_stats *out) {
  const tt__chan *c = tt__chan_of(handle);
  /* relaxed: statistics; each word is read whole, and nothing else depends on the values. */
  out->sent = atomic_load_explicit(&c->nsent, memory_order_relaxed);
  out->received = atomic_load_explicit(&c->nrecv, memory_order_relaxed);
  out->recv_gaveup = atomic_load_explicit(&c->nrecv_gaveup, memory_order_relaxed);
  out->last_sender = atomic_load_explicit(&c->last_sender, memory_order_relaxed);
  out->closed = atomic_load_explicit(&c->closed, memory_order_relaxed) != 0;
  out->made = c->made;
  out->timer = c->timer != NULL;
}

/* The channel whose handle the carrying value at p holds. */
static inline tt__chan *carried_chan(const void *p) {
  tt_chan *h;
  memcpy(&h, p, sizeof h);
  return tt__chan_of(h);
}

/* Moves a carried reference, or dies: the allocation of a holder's table entry is the only way
 * this fails, and the value has already moved. */
static void carry_move(tt__holder *from, tt__holder *to, tt__chan *x) {
  if (tt__ref_move(from, to, x) != 0)
    tt__fatal("out of memory moving a channel reference");
}

/* The data path proper, inline in send and recv (and called through tt__chan_*_locked by select
 * and the timers). The common cases come first: a hand-off to a waiting receiver, room in the
 * ring. */
/* Forced inline (the compiler's size heuristics would otherwise split it). recv_locked is left to
 * the compiler: forced into recv, its frame makes Valgrind flag recv's own stack writes after a
 * signal delivered on the worker (a false report we could not explain yet; see the stop's note). */
static inline __attribute__((always_inline)) int
send_locked(tt__chan *c, const void *v, tt__chan *carry, tt__holder *self, tt__chan_wait **woken) {
  *woken = NULL;
  if (atomic_load_explicit(&c->closed, memory_order_relaxed))
    return TT_ECLOSED;
  tt__chan_wait *r = take_waiter(&c->recvq, false);
  if (r != NULL) {
    if (r->elem)
      copy_elem(r->elem, v, c->esize);
    if (carry)
      carry_move(self, r->holder, carry);
    count_sent(c, self_id());
    count(&c->nrecv);
    *woken = r;
    return 1;
  }
  if (c->count < c->cap) {
    size_t i = c->sendx;
    copy_elem(c->buf + i * c->esize, v, c->esize);
    if (c->carried)
      c->carried[i] = carry != NULL;
    if (carry)
      carry_move(self, &c->carrier, carry);
    c->sendx = i + 1 == c->cap ? 0 : i + 1;
    c->count++;
    count(&c->nsent); /* (the last sender only on hand-offs: the ring's path stays lean) */
    return 1;
  }
  return 0;
}

static inline int recv_locked(tt__chan *c, void *v, tt__holder *self, tt__chan_wait **woken) {
  *woken = NULL;
again:
  if (c->count > 0 && c->sendq.head == NULL) {
    /* The common case: a buffered value and no sender waiting behind the ring. */
    size_t i = c->recvx;
    char *slot = c->buf + i * c->esize;
    if (v)
      copy_elem(v, slot, c->esize);
    if (c->carried && c->carried[i]) {
      carry_move(&c->carrier, self, carried_chan(slot));
      c->carried[i] = 0;
    }
    c->recvx = i + 1 == c->cap ? 0 : i + 1;
    c->count--;
    count(&c->nrecv);
    return 1;
  }
  tt__chan_wait *s = take_waiter(&c->sendq, false);
  if (s != NULL) {
    if (c->cap == 0) {
      /* Unbuffered: straight from the sender. */
      if (v)
        copy_elem(v, s->elem, c->esize);
      if (s->carry)
        carry_move(s->holder, self, carried_chan(s->elem));
    } else {
      /* The ring is full: take its oldest value, and put the sender's at its tail (the slot just
       * freed), so the order is ring first, then queue. */
      size_t i = c->recvx;
      char *slot = c->buf + i * c->esize;
      if (v)
        copy_elem(v, slot, c->esize);
      if (c->carried && c->carried[i])
        carry_move(&c->carrier, self, carried_chan(slot));
      copy_elem(slot, s->elem, c->esize);
      if (c->carried)
        c->carried[i] = s->carry;
      if (s->carry)
        carry_move(s->holder, &c->carrier, carried_chan(s->elem));
      c->recvx = i + 1 == c->cap ? 0 : i + 1;
      c->sendx = c->recvx;
    }
    count(&c->nrecv);
    count_sent(c, s->wt->co ? s->wt->co->id : 0);
    *woken = s;
    return 1;
  }
  if (c->count > 0) /* only stale senders were queued, and take_waiter unlinked them */
    goto again;
  if (atomic_load_explicit(&c->closed, memory_order_relaxed)) {
    if (v && c->esize)
      memset(v, 0, c->esize);
    return TT_ECLOSED;
  }
  return 0;
}

int tt__chan_send_locked(tt__chan *c, const void *v, tt__chan *carry, tt__holder *self,
                         tt__chan_wait **woken) {
  return send_locked(c, v, carry, self, woken);
}

int tt__chan_recv_locked(tt__chan *c, void *v, tt__holder *self, tt__chan_wait **woken) {
  return recv_locked(c, v, self, woken);
}

/* ---- Blocking ----------------------------------------------------------------------------- */

int tt__chan_nil_wait(int reason, int64_t deadline) {
  tt__coro *co = tt__self();
  int r = tt__block_check(co);
  if (r != 0)
    return r;
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  return tt__wait(&wt, reason, NULL, deadline, NULL);
}

struct held {
  tt__chan *c;
  int how; /* tt__chan_lock's result */
};

static void unlock_chan(void *p) {
  struct held *h = p;
  tt__chan_unlock(h->c, h->how);
}

/* Queues the caller on q and waits; c is locked (how: tt__chan_lock's result) and unlocked on
 * return. Returns 0 or TT_ECLOSED when the operation completed (a waker did it), or the wait's
 * own error. */
static int wait_on(tt__chan *c, int how, tt__chan_waitq *q, tt__chan_wait *node, int reason,
                   const void *obj, int64_t deadline) {
  tt__worker *w = tt__tls_worker;
  tt__coro *co = w ? w->cur : NULL;
  int r = tt__block_check(co);
  if (r != 0) {
    tt__chan_unlock(c, how);
    return r;
  }
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  node->wt = &wt;
  node->idx = 0;
  tt__chan_enqueue(q, node);
  struct held held = {c, how};
  r = tt__wait_fn(&wt, reason, obj, deadline, unlock_chan, &held);
  if (r >= 2)
    return TT__FIRED_CLOSED(r) ? TT_ECLOSED : 0;
  /* Timed out, cancelled or shut down: unlink ourselves, unless a waker met us stale first. */
  how = tt__chan_lock(c);
  if (node->linked)
    tt__chan_unlink(q, node);
  if (q == &c->recvq && (r == TT_ETIMEDOUT || r == TT_ECANCELED))
    /* a receiver gave up: senders may now wait for nobody */
    atomic_store_explicit(&c->nrecv_gaveup,
                          atomic_load_explicit(&c->nrecv_gaveup, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  tt__chan_unlock(c, how);
  return r;
}

static inline __attribute__((always_inline)) int
send(tt_chan *handle, const void *v, int64_t deadline, bool block, tt_chan *ref, const char *op) {
  if (handle == NULL)
    return block ? tt__chan_nil_wait(TT_WAIT_CHAN_SEND_NIL, deadline) : TT_EAGAIN;
  tt__holder *self;
  int err;
  tt__chan *c = tt__chan_check(handle, op, &self, &err);
  if (c == NULL)
    return err;
  if (v == NULL && c->esize)
    return TT_EINVAL;
  tt__chan *carry = NULL;
  if (ref && tt__chan_mode(ref) == TT_CHAN_TRACKED) {
    tt__holder *h2;
    if ((carry = tt__chan_check(ref, op, &h2, &err)) == NULL)
      return err;
  }
  int how = tt__chan_lock(c);
  if (carry && c->cap && c->carried == NULL &&
      (c->carried = tt__calloc(c->cap, sizeof *c->carried)) == NULL) {
    tt__chan_unlock(c, how);
    return TT_ENOMEM;
  }
  tt__chan_wait *woken;
  int r = send_locked(c, v, carry, self, &woken);
  if (r != 0) {
    tt__chan_unlock(c, how);
    if (woken)
      tt__wake_commit(woken->wt);
    return r == 1 ? 0 : r;
  }
  if (!block) {
    tt__chan_unlock(c, how);
    return TT_EAGAIN;
  }
  tt__chan_wait node = {.elem = (void *)v, .holder = self, .carry = carry != NULL};
  return wait_on(c, how, &c->sendq, &node, TT_WAIT_CHAN_SEND, handle, deadline);
}

static int recv(tt_chan *handle, void *v, bool *ok, int64_t deadline, bool block) {
  if (handle == NULL) {
    if (!block)
      return TT_EAGAIN;
    return tt__chan_nil_wait(TT_WAIT_CHAN_RECV_NIL, deadline);
  }
  tt__holder *self;
  int err;
  tt__chan *c = tt__chan_check(handle, "tt_chan_recv", &self, &err);
  if (c == NULL)
    return err;
  if (v == NULL && c->esize)
    return TT_EINVAL;
  /* A value may carry a reference, which needs a holder to land in. */
  if (self == NULL && c->esize == sizeof(tt_chan *) && (self = tt__holder_self(true)) == NULL)
    return TT_ENOMEM;
  int how = tt__chan_lock(c);
  tt__chan_wait *woken;
  int r = recv_locked(c, v, self, &woken);
  if (r == 0 && !block) {
    tt__chan_unlock(c, how);
    return TT_EAGAIN;
  }
  if (r == 0) {
    tt__chan_wait node = {.elem = v, .holder = self};
    r = wait_on(c, how, &c->recvq, &node, TT_WAIT_CHAN_RECV, handle, deadline);
  } else {
    tt__chan_unlock(c, how);
    if (woken)
      tt__wake_commit(woken->wt);
    r = r == 1 ? 0 : r;
  }
  if (ok)
    *ok = r == 0;
  return r;
}

int tt_chan_send(tt_chan *ch, const void *v) {
  return send(ch, v, TT_FOREVER, true, NULL, "tt_chan_send");
}
int tt_chan_send_dl(tt_chan *ch, const void *v, int64_t deadline) {
  return send(ch, v, deadline, true, NULL, "tt_chan_send_dl");
}
int tt_chan_try_send(tt_chan *ch, const void *v) {
  return send(ch, v, TT_FOREVER, false, NULL, "tt_chan_try_send");
}
int tt_chan_recv(tt_chan *ch, void *v, bool *ok) { return recv(ch, v, ok, TT_FOREVER, true); }
int tt_chan_recv_dl(tt_chan *ch, void *v, bool *ok, int64_t deadline) {
  return recv(ch, v, ok, deadline, true);
}
int tt_chan_try_recv(tt_chan *ch, void *v, bool *ok) { return recv(ch, v, ok, TT_FOREVER, false); }

int tt_chan_send_ref_dl(tt_chan *via, tt_chan *ref, int64_t deadline) {
  if (ref == NULL)
    return TT_EINVAL;
  if (via != NULL) {
    tt__holder *h;
    int err;
    tt__chan *c = tt__chan_check(via, "tt_chan_send_ref", &h, &err);
    if (c == NULL)
      return err;
    if (c->esize != sizeof(tt_chan *))
      return TT_EINVAL;
  }
  return send(via, &ref, deadline, true, ref, "tt_chan_send_ref");
}

int tt_chan_send_ref(tt_chan *via, tt_chan *ref) {
  return tt_chan_send_ref_dl(via, ref, TT_FOREVER);
}

/* ---- Closing and inspecting --------------------------------------------------------------- */

int tt_chan_close(tt_chan *handle) {
  if (handle == NULL)
    return TT_EINVAL;
  tt__holder *self;
  int err;
  tt__chan *c = tt__chan_check(handle, "tt_chan_close", &self, &err);
  if (c == NULL)
    return err;
  int how = tt__chan_lock(c);
  if (atomic_load_explicit(&c->closed, memory_order_relaxed)) {
    tt__chan_unlock(c, how);
    return TT_ECLOSED;
  }
  /* relaxed: readers that need the buffer's state take the lock; len/diagnostics read a hint. */
  atomic_store_explicit(&c->closed, 1, memory_order_relaxed);
  /* Everyone waiting wakes: receivers with the zero value (the buffer is empty, or they would not
   * wait), senders with TT_ECLOSED. Their values never moved, so carried references stay put. */
  tt__chan_wait *woken = NULL, *n;
  while ((n = take_waiter(&c->recvq, true)) != NULL) {
    if (n->elem && c->esize)
      memset(n->elem, 0, c->esize);
    n->next = woken;
    woken = n;
  }
  while ((n = take_waiter(&c->sendq, true)) != NULL) {
    n->next = woken;
    woken = n;
  }
  tt__chan_unlock(c, how);
  while (woken) {
    n = woken->next; /* before the commit, after which the node may be gone */
    tt__wake_commit(woken->wt);
    woken = n;
  }
  return 0;
}

int64_t tt_chan_len(tt_chan *handle) {
  if (handle == NULL)
    return 0;
  tt__holder *self;
  int err;
  tt__chan *c = tt__chan_check(handle, "tt_chan_len", &self, &err);
  if (c == NULL)
    return err;
  int how = tt__chan_lock(c);
  int64_t n = (int64_t)c->count;
  tt__chan_unlock(c, how);
  return n;
}

int64_t tt_chan_cap(tt_chan *handle) {
  if (handle == NULL)
    return 0;
  tt__holder *self;
  int err;
  tt__chan *c = tt__chan_check(handle, "tt_chan_cap", &self, &err);
  return c ? (int64_t)c->cap : err;
}
