/* SPDX-License-Identifier: MIT */
/* Channels' internal definitions, shared by references (ref.c), channel operations (chan.c),
 * select (select.c) and the timers that own channels (src/time). Never installed. */
#ifndef TT_CHAN_INT_H
#define TT_CHAN_INT_H

#include "internal.h"

typedef struct tt__chan tt__chan;

#define TT__CHAN_MANY 2u /* the channel counters' "more than one" */
typedef struct tt__ref tt__ref;
typedef struct tt__holder tt__holder;

/* ---- References -------------------------------------------------------------------------------
 *
 * A reference to a tracked channel is counted in a tt__ref: one per (holder, channel) pair, with a
 * count. Each ref is on two indexes: its holder's table (a hash map keyed by channel, which the
 * ownership check on every operation reads) and its channel's list of holders (what the leak proof
 * and the diagnostics read). A channel's nrefs is the sum of its refs' counts; the channel is freed
 * when it reaches zero.
 *
 * Who may change what:
 *   - a channel's holder list and nrefs: under the channel's rlock (a leaf lock);
 *   - a coroutine's or plain thread's table: the holder itself while it runs, or a party that holds
 *     the lock of the channel the holder is blocked on (a receiver taking a carried reference from
 *     a blocked sender, a sender handing one to a blocked receiver); the blocked holder sees the
 *     change once woken (the wake's claim and commit order it);
 *   - a channel's carrier table (references carried by values in its buffer): under its lock.
 * Untracked and detached channels have no refs: their nrefs is a plain atomic count. */
enum {
  TT__HOLDER_CORO = 1,    /* owner: the tt__coro */
  TT__HOLDER_THREAD = 2,  /* owner: NULL; tid: the thread's id */
  TT__HOLDER_CARRIER = 3, /* owner: the tt__chan whose buffered values carry the references */
  TT__HOLDER_SIGNAL = 4,  /* owner: the signal registration (src/signal/signal.c), which holds
                             one reference to its channel from tt_signal_notify to tt_signal_stop */
  TT__HOLDER_CTX = 5,     /* owner: the tt_ctx (tt_ctx_with_chan) that carries the reference */
  TT__HOLDER_TASK = 6,    /* owner: a queued pool task (tt_pool_submit_opt) */
  TT__HOLDER_TIMER = 7,   /* owner: the tt__atimer of a tt_after_func_opt not yet fired */
};

struct tt__ref {
  tt__chan *ch;
  tt__holder *h;
  uint64_t count;
  tt__ref *cnext, *cprev; /* the channel's holder list */
};

#define TT__REF_CACHE 8
/* The cache slot of channel c. */
static inline uint32_t tt__ref_slot(const void *c) {
  return (uint32_t)((uintptr_t)c >> 6) & (TT__REF_CACHE - 1); /* channels are 64-byte apart */
}

struct tt__holder {
  uint8_t kind;
  void *owner;
  int64_t tid;
  uint32_t n, mask; /* entries, and table size - 1 (0 while tab is NULL) */
  tt__ref **tab;    /* open addressing with tombstones-free deletion (backward shift) */
  tt__ref *cache[TT__REF_CACHE]; /* direct-mapped by channel address: the check's fast path */
};

/* The calling party's holder (the running coroutine's, or the plain thread's), created if create
 * is set; NULL if it has none (or could not allocate one). */
tt__holder *tt__holder_self_slow(bool create);
static inline tt__holder *tt__holder_self(bool create) {
  tt__worker *w = tt__tls_worker;
  tt__coro *co;
  /* The common case inline: a coroutine that already holds something. */
  if (TT_LIKELY(w != NULL && (co = w->cur) != NULL && co->holder != NULL))
    return co->holder;
  return tt__holder_self_slow(create);
}
/* The holder's reference to c, or NULL. */
tt__ref *tt__holder_find(tt__holder *h, tt__chan *c);
/* Releases every reference h holds (its owner is gone: an exited coroutine or thread, a freed
 * channel's carrier), freeing channels whose last reference that was, and h's
 * table. h itself is not freed. */
void tt__holder_drop_all(tt__holder *h);
/* Adds n references to c held by h (c tracked). TT_ENOMEM or 0. */
int tt__ref_add(tt__holder *h, tt__chan *c, uint64_t n);
/* Moves one reference to c from `from` (which must hold one) to `to`; TT_ENOMEM or 0 (on
 * failure nothing moved). */
int tt__ref_move(tt__holder *from, tt__holder *to, tt__chan *c);
/* Drops one reference to c held by h (which must hold one); frees c if it was the last. */
void tt__ref_drop(tt__holder *h, tt__chan *c);
/* (tt__refs_share, tt__refs_unshare, tt__holder_set_owner, tt__coro_drop_refs: internal.h.) */
/* Prints the TT_EPERM explanation for op on handle (rate-limited); returns TT_EPERM. */
int tt__chan_eperm(const char *op, const void *handle);

/* ---- Channels ----------------------------------------------------------------------------- */

/* A party waiting on a channel: one per blocked operation, one per case of a blocked select.
 * Lives on the waiting party's stack; queued on the channel's sendq or recvq under its lock. */
typedef struct tt__chan_wait {
  struct tt__chan_wait *next, *prev;
  tt__waiter *wt;     /* shared by every case of one select */
  void *elem;         /* send: the value; receive: where it goes */
  tt__holder *holder; /* the waiting party's holder (NULL: none), for carried references */
  uint32_t idx;       /* the select case (0 for a plain operation) */
  uint8_t linked;     /* on a queue; cleared by whoever unlinks it, under the channel's lock */
  uint8_t carry;      /* send: the value carries a reference to *(tt__chan **)elem's channel */
} tt__chan_wait;

/* Token results of channel waits: the case that fired, and whether it found the channel closed. */
#define TT__FIRED(idx, closed) (2 + 2 * (int)(idx) + ((closed) ? 1 : 0))
#define TT__FIRED_IDX(r) (((r)-2) / 2)
#define TT__FIRED_CLOSED(r) (((r)-2) & 1)

typedef struct tt__chan_waitq {
  tt__chan_wait *head, *tail;
} tt__chan_waitq;

enum { TT__MODE_MASK = 3 };

struct tt__chan {
  tt__lock lock; /* protects everything down to `carrier`; never held across a switch; taken
                    through tt__chan_lock, which may hold the channel by bias instead */
  /* The worker bias (see chan.c): bias is the owning worker's index + 1 (0: none); bheld is 1
   * while the owner holds the channel by bias (written by the owner only); revoked is set by a
   * party that needs the channel while it is biased. blast, bstreak, nrevoke: under lock. */
  _Atomic uint32_t bias, bheld, revoked;
  uint32_t blast, bstreak, nrevoke;
  uint8_t mode;           /* TT_CHAN_TRACKED, _UNTRACKED, _DETACHED; fixed */
  _Atomic uint8_t closed; /* set under lock; read without it by len and the diagnostics */
  size_t esize;           /* element size; fixed */
  size_t cap;             /* buffer slots; fixed */
  size_t count;           /* buffered values */
  size_t recvx, sendx;    /* ring indexes */
  char *buf;              /* cap * esize bytes (NULL when either is 0) */
  uint8_t *carried;       /* per slot: the value carries a reference (allocated on first use) */
  tt__chan_waitq recvq, sendq;
  /* What the leak proof and the suspects ask of a channel's history (src/leak): values sent and
   * received, as 0, 1 or TT__CHAN_MANY (more: the questions are "none", "exactly one" and
   * "several", and a count that stops changing costs a load and no store), and (below) the last
   * sender and the receive waits that gave up. Written under lock on paths that hold it anyway
   * (the lock makes the writer unique: a relaxed load and store); read without the lock, each
   * word whole. The two counts sit in the line of the wait queues, which every operation touches
   * anyway; the last sender in the next, stored only when it changes. */
  _Atomic uint32_t nsent, nrecv;
  /* The coroutine whose value was last handed over to a receiver (values buffered in a ring do not
   * count); 0: a plain thread. */
  _Atomic tt_id last_sender;
  tt__holder carrier; /* references carried by buffered values */
  tt__lock rlock;     /* leaf: protects holders and (tracked) nrefs */
  _Atomic int64_t nrefs;
  tt__ref *holders;
  tt__chan *free_next;      /* the freeing cascade's work list (see ref.c) */
  struct tt__atimer *timer; /* a timer channel's timer (src/time/atimer.c); fixed */
  struct tt_ctx *dctx;      /* a context's done channel: the context (cleared when it is freed) */
  uint32_t proof_gen, proof_node; /* the leak proof's scratch (see tt__coro's) */
  char *name;
  _Atomic uint64_t nrecv_gaveup; /* receive waits ended by a deadline or a cancellation */
  int64_t made;                  /* tt_now() (coarse) when made; fixed */
};

/* A channel's counters, as tt__chan_stats_get reads them. */
typedef struct tt__chan_stats {
  uint64_t sent, received, recv_gaveup;
  tt_id last_sender;
  int64_t made;
  bool closed, timer;
} tt__chan_stats;

/* Reads handle's counters. The channel must stay alive during the call: the caller holds a
 * reference, or holds still (its scan bit) a coroutine blocked on it with a reference. Any
 * thread; takes no lock (the values are each current, not one instant together). */
void tt__chan_stats_get(const tt_chan *handle, tt__chan_stats *out);

/* Takes c's lock, by bias when the caller's worker owns it: returns how (pass it to
 * tt__chan_unlock). */
int tt__chan_lock_slow(tt__chan *c, tt__worker *w);
static inline int tt__chan_lock(tt__chan *c) {
  tt__worker *w = tt__tls_worker;
  if (w != NULL && atomic_load_explicit(&c->bias, memory_order_relaxed) == (uint32_t)w->index + 1) {
    /* The light side of an asymmetric Dekker pair with a revoker (which stores revoked, runs
     * membarrier, then reads bheld): a plain store and load, kept in order by a compiler fence. */
    atomic_store_explicit(&c->bheld, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    if (TT_LIKELY(atomic_load_explicit(&c->revoked, memory_order_relaxed) == 0))
      return 1;
    atomic_store_explicit(&c->bheld, 0, memory_order_release);
  }
  return tt__chan_lock_slow(c, w);
}
static inline void tt__chan_unlock(tt__chan *c, int how) {
  if (how)
    /* release: our critical section happens before a revoker's, which reads bheld acquire. */
    atomic_store_explicit(&c->bheld, 0, memory_order_release);
  else
    tt__lock_release(&c->lock);
}

/* Handles carry the mode in their low bits, so that the ownership check never reads a channel
 * the caller holds no reference to (it may be freed): a tracked channel's handle is its address. */
static inline tt__chan *tt__chan_of(const tt_chan *h) {
  return (tt__chan *)((uintptr_t)h & ~(uintptr_t)TT__MODE_MASK);
}
static inline int tt__chan_mode(const tt_chan *h) { return (int)((uintptr_t)h & TT__MODE_MASK); }
static inline tt_chan *tt__chan_handle(tt__chan *c) {
  return (tt_chan *)((uintptr_t)c | (uintptr_t)c->mode);
}

/* Checks that the caller may use handle for op (any channel it holds a reference to, and any
 * untracked or detached one). Returns the channel, or NULL with *err = TT_EPERM (message
 * printed). *self receives the caller's holder (NULL when it has none). */
static inline tt__chan *tt__chan_check(const tt_chan *handle, const char *op, tt__holder **self,
                                       int *err) {
  tt__chan *c = tt__chan_of(handle);
  tt__holder *h = tt__holder_self(false);
  *self = h;
  *err = 0;
  if (TT_LIKELY(tt__chan_mode(handle) != TT_CHAN_TRACKED))
    return c;
  if (TT_LIKELY(h != NULL)) {
    tt__ref *r = h->cache[tt__ref_slot(c)];
    if (TT_LIKELY(r != NULL && r->ch == c))
      return c;
    if (tt__holder_find(h, c) != NULL)
      return c;
  }
  *err = tt__chan_eperm(op, handle);
  return NULL;
}

/* Stops and frees a timer channel's timer, waiting out a callback under way (atimer.c). */
void tt__atimer_destroy(struct tt__atimer *a);

/* Frees a channel whose last reference went: its buffer (releasing references buffered values
 * carried) and itself. No one waits on it (waiters hold references). */
void tt__chan_free(tt__chan *c);

/* The data path, with c->lock held (select.c shares it). Each returns 1 when the operation
 * completed without waiting — *woken is then a waiter it claimed, to be committed with
 * tt__wake_commit once every lock is released, or NULL — 0 when it would wait, or TT_ECLOSED
 * (send: the channel is closed; receive: closed and drained, v zeroed). carry: the tracked channel
 * whose reference the sent value carries (tt_chan_send_ref), else NULL. self: the caller's holder,
 * which must exist when a carried reference may move to or from it. */
int tt__chan_send_locked(tt__chan *c, const void *v, tt__chan *carry, tt__holder *self,
                         tt__chan_wait **woken);
int tt__chan_recv_locked(tt__chan *c, void *v, tt__holder *self, tt__chan_wait **woken);
/* Waits on nothing — an operation on a NULL channel, a select without cases — until the deadline,
 * a cancellation or shut-down, with the given wait reason. */
int tt__chan_nil_wait(int reason, int64_t deadline);
/* Queue handling, c->lock held. */
void tt__chan_enqueue(tt__chan_waitq *q, tt__chan_wait *n);
void tt__chan_unlink(tt__chan_waitq *q, tt__chan_wait *n);

/* A random number for select's choice: the worker's generator (the run's seed), or a per-thread
 * one on plain threads. */
uint64_t tt__chan_rand(void);

#endif
