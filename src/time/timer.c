/* SPDX-License-Identifier: MIT */
/* Per-worker timer heaps and sleeping.
 *
 * Each worker has two 4-ary min-heaps of timers. One holds the timers of waits (sleeps and
 * deadlines): a coroutine arms its wait's timer on its own worker, from the park commit, and
 * disarms it when it resumes there, so that heap is its worker's alone and takes no lock. The
 * other holds the program's timers (tt_after, tickers, tt_after_func), which may be stopped and
 * re-armed from any thread: it has a lock, which its worker takes uncontended almost always.
 * Workers run due timers whenever they look for work and every 64 switches while busy, and sleep
 * on their futex no longer than the earliest deadline: expiry is as precise as the futex timeout
 * (tens of microseconds).
 *
 * The heap's array holds each timer's key beside its pointer, and a node's four children share
 * one cache line: sifting compares keys without touching the timers (which live on coroutine
 * stacks, a cache miss each) and writes only the moved timers' indexes. With 100,000 sleepers the
 * heap is 9 levels deep instead of a binary heap's 17.
 *
 * A timer only wins its waiter's token; a sleep cut short by cancellation leaves its timer in the
 * heap until the sleeper, running again on the same worker, removes it. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ARITY 4

/* Whether entry a fires before entry b: by key, then arming order. */
static inline bool before(const tt__heap_ent *a, const tt__heap_ent *b) {
  return a->key < b->key || (a->key == b->key && a->t->seq < b->t->seq);
}

static inline void put(tt__timer_heap *h, uint32_t i, tt__heap_ent e) {
  h->v[i] = e;
  e.t->index = i;
}

static void sift_up(tt__timer_heap *h, uint32_t i) {
  tt__heap_ent e = h->v[i];
  while (i > 0) {
    uint32_t p = (i - 1) / ARITY;
    if (!before(&e, &h->v[p]))
      break;
    put(h, i, h->v[p]);
    i = p;
  }
  put(h, i, e);
}

static void sift_down(tt__timer_heap *h, uint32_t i) {
  tt__heap_ent e = h->v[i];
  for (;;) {
    uint32_t c = i * ARITY + 1, m = UINT32_MAX;
    const tt__heap_ent *best = &e;
    for (uint32_t k = c; k < c + ARITY && k < h->n; k++)
      if (before(&h->v[k], best)) {
        best = &h->v[k];
        m = k;
      }
    if (m == UINT32_MAX)
      break;
    put(h, i, h->v[m]);
    i = m;
  }
  put(h, i, e);
}

/* Room for one more timer beyond those promised. */
static int grow(tt__timer_heap *h) {
  if (h->n + h->reserved < h->cap)
    return 0;
  uint32_t cap = h->cap ? h->cap * 2 : 64;
  /* Aligned so that four siblings (1 + 4k .. 4 + 4k) share a 64-byte line: the array starts 16
   * bytes before a line boundary. */
  tt__heap_ent *v = tt__aligned_alloc(64, (cap + 4) * sizeof *v);
  if (v == NULL)
    return TT_ENOMEM;
  if (h->n)
    memcpy(v + 3, h->v, h->n * sizeof *v);
  free(h->base);
  h->base = v;
  h->v = v + 3;
  h->cap = cap;
  return 0;
}

static inline void lock(tt__timer_heap *h) {
  if (h->shared)
    tt__lock_acquire(&h->lock);
}

static inline void unlock(tt__timer_heap *h) {
  if (h->shared)
    tt__lock_release(&h->lock);
}

static void add_locked(tt__timer_heap *h, tt__timer *t) {
  t->seq = h->seq++;
  uint32_t i = h->n++;
  h->v[i] = (tt__heap_ent){t->key, t};
  t->index = i;
  sift_up(h, i);
  atomic_store_explicit(&h->hint, h->n, memory_order_relaxed);
}

static void del_locked(tt__timer_heap *h, tt__timer *t) {
  uint32_t i = t->index;
  TT_ASSERT(i < h->n && h->v[i].t == t);
  t->index = UINT32_MAX;
  h->n--;
  atomic_store_explicit(&h->hint, h->n, memory_order_relaxed);
  if (i == h->n)
    return;
  h->v[i] = h->v[h->n];
  h->v[i].t->index = i;
  if (i > 0 && before(&h->v[i], &h->v[(i - 1) / ARITY]))
    sift_up(h, i);
  else
    sift_down(h, i);
}

int tt__timer_reserve(tt__timer_heap *h) {
  lock(h);
  int err = grow(h);
  if (err == 0)
    h->reserved++;
  unlock(h);
  return err;
}

void tt__timer_add_reserved(tt__timer_heap *h, tt__timer *t) {
  lock(h);
  TT_ASSERT(h->reserved > 0);
  h->reserved--;
  add_locked(h, t);
  unlock(h);
}

int tt__timer_add(tt__timer_heap *h, tt__timer *t) {
  lock(h);
  int err = grow(h);
  if (err == 0)
    add_locked(h, t);
  bool first = err == 0 && h->v[0].t == t;
  unlock(h);
  return err ? err : first;
}

bool tt__timer_del(tt__timer_heap *h, tt__timer *t) {
  /* A wait's timer is in its own worker's private heap, and its owner is here on that worker:
   * the index can be read without the lock. A program timer's is popped by its home worker. */
  if (!h->shared && t->index == UINT32_MAX)
    return false;
  lock(h);
  bool in = t->index != UINT32_MAX;
  if (in)
    del_locked(h, t);
  unlock(h);
  return in;
}

int64_t tt__timers_next(tt__timer_heap *h) {
  lock(h);
  int64_t next = h->n ? h->v[0].t->when : -1;
  unlock(h);
  return next;
}

/* The key of h's earliest timer, or INT64_MAX. */
static int64_t top_key(tt__timer_heap *h) {
  lock(h);
  int64_t k = h->n ? h->v[0].key : INT64_MAX;
  unlock(h);
  return k;
}

int64_t tt__timers_run(tt__timer_heap *h, int64_t now, bool single) {
  tt__timer *due = NULL, **tail = &due;
  lock(h);
  /* The key is the deadline except in deterministic mode: test it without touching the timer. */
  bool by_key = !tt__rt.deterministic;
  while (h->n && (by_key ? h->v[0].key : h->v[0].t->when) <= now) {
    tt__timer *t = h->v[0].t;
    del_locked(h, t);
    /* The next due timer's waiter is on another cold stack: start fetching it now. */
    if (h->n && h->v[0].key <= now)
      __builtin_prefetch(h->v[0].t->wt);
    if (single)
      tt__tls_worker->vnow = t->key; /* deterministic mode: virtual time moves to this timer */
    if (t->fire) {
      /* relaxed: the heap's lock orders it for whoever stops the timer next. */
      atomic_store_explicit(&t->firing, 1, memory_order_relaxed);
      t->fgen = t->gen;
      t->fnext = NULL;
      *tail = t;
      tail = &t->fnext;
    } else {
      tt__wake_fifo(t->wt, t->result); /* due timers wake in deadline order, and run in it */
    }
    if (single)
      break;
  }
  unlock(h);
  while (due) {
    tt__timer *t = due;
    due = t->fnext; /* before the callback, which may free t */
    t->fire(t, now);
  }
  return tt__timers_next(h);
}

int64_t tt__worker_timers_run(tt__worker *w, int64_t now, bool single) {
  if (single) {
    /* One timer, the earliest of both heaps by key (the virtual clock's order). */
    tt__timer_heap *h = top_key(&w->ptimers) < top_key(&w->timers) ? &w->ptimers : &w->timers;
    tt__timers_run(h, now, true);
  } else {
    if (atomic_load_explicit(&w->timers.hint, memory_order_relaxed))
      tt__timers_run(&w->timers, now, false);
    if (atomic_load_explicit(&w->ptimers.hint, memory_order_relaxed))
      tt__timers_run(&w->ptimers, now, false);
  }
  return tt__worker_timers_next(w);
}

int64_t tt__worker_timers_next(tt__worker *w) {
  int64_t a = tt__timers_next(&w->timers), b = tt__timers_next(&w->ptimers);
  return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

void tt__timers_free(tt__timer_heap *h) {
  tt__timer *orphans = NULL;
  lock(h);
  while (h->n) {
    tt__timer *t = h->v[h->n - 1].t;
    del_locked(h, t);
    if (t->fire) {
      t->fnext = orphans;
      orphans = t;
    }
  }
  unlock(h);
  /* Outside the heap's lock: a program timer's own lock comes first in the lock order. */
  while (orphans) {
    tt__timer *t = orphans;
    orphans = t->fnext;
    if (t->orphan)
      t->orphan(t);
    else
      tt__atimer_orphan(t);
  }
  free(h->base);
  h->base = NULL;
  h->v = NULL;
  h->n = h->cap = h->reserved = 0;
  atomic_store_explicit(&h->hint, 0, memory_order_relaxed);
}

int64_t tt_now(void) { return tt__clock(); }

struct wait_commit {
  tt__timer *t;              /* NULL: no deadline */
  void (*unlock)(void *arg); /* NULL: nothing to release */
  void *arg;
};

/* Runs once the parking coroutine's context is saved: arm its timer, then let wakers in. */
static void wait_commit(void *p) {
  struct wait_commit *wc = p;
  if (wc->t) /* room was reserved before parking */
    tt__timer_add_reserved(&tt__tls_worker->timers, wc->t);
  if (wc->unlock)
    wc->unlock(wc->arg);
}

/* The heap key of a timer due at `when`, armed at real time now: in deterministic mode the
 * virtual deadline, so that timers fire in an order that depends on the program alone (for
 * relative sleeps; deadlines computed from tt_now() carry the real clock's jitter). */
int64_t tt__timer_key(tt__worker *w, int64_t when, int64_t now) {
  if (!tt__rt.deterministic)
    return when;
  return w->vnow + (when > now ? when - now : 0);
}

/* Ends a wait before it starts, with err. The caller's locks are still held, and have been since
 * wt was queued, so no waker can have seen wt, and a cancellation only wakes parked coroutines:
 * the token is ours to take. */
static int wait_abort(tt__waiter *wt, void (*unlock)(void *), void *arg, int err) {
  uint32_t exp = TT__WAITING;
  bool won = atomic_compare_exchange_strong_explicit(&wt->token, &exp, (uint32_t)err,
                                                     memory_order_relaxed, memory_order_relaxed);
  TT_ASSERT(won);
  if (unlock)
    unlock(arg);
  return err;
}

/* Parks the calling coroutine on wt with a timer (none for TT_FOREVER) keyed `key` that ends
 * the wait with TT_ETIMEDOUT; unlock(arg) as in tt__wait_fn. */
static int park_timed(tt__waiter *wt, int reason, const void *obj, int64_t deadline, int64_t key,
                      void (*unlock)(void *), void *arg) {
  tt__worker *w = wt->co->w;
  tt__timer t = {
      .when = deadline, .key = key, .index = UINT32_MAX, .result = TT_ETIMEDOUT, .wt = wt};
  struct wait_commit wc = {NULL, unlock, arg};
  if (deadline != TT_FOREVER) {
    if (tt__timer_reserve(&w->timers) != 0)
      return wait_abort(wt, unlock, arg, TT_ENOMEM);
    wc.t = &t;
    wt->co->wait_timed = 1; /* cleared by tt__park once woken */
  }
  int r = tt__park(wt, reason, obj, wait_commit, &wc);
  tt__timer_del(&w->timers, &t);
  return r;
}

int tt__wait_fn(tt__waiter *wt, int reason, const void *obj, int64_t deadline,
                void (*unlock)(void *), void *arg) {
  if (TT_LIKELY(deadline == TT_FOREVER && wt->co != NULL))
    return tt__park(wt, reason, obj, unlock, arg); /* no timer: the common case, without layers */
  int64_t key = deadline;
  if (deadline != TT_FOREVER) { /* a clock read costs tens of ns: only when there is a deadline */
    int64_t now = tt__clock();
    if (deadline <= now)
      return wait_abort(wt, unlock, arg, TT_ETIMEDOUT);
    if (wt->co)
      key = tt__timer_key(wt->co->w, deadline, now);
  }
  if (wt->co == NULL) {
    if (unlock)
      unlock(arg);
    return tt__thread_block(wt, deadline);
  }
  return park_timed(wt, reason, obj, deadline, key, unlock, arg);
}

static void unlock_one(void *lk) { tt__lock_release(lk); }

int tt__wait(tt__waiter *wt, int reason, const void *obj, int64_t deadline, tt__lock *lk) {
  return tt__wait_fn(wt, reason, obj, deadline, lk ? unlock_one : NULL, lk);
}

/* Sleeps until deadline, or (rel >= 0) for rel ns from now: a wait that only its timer (or a
 * cancellation) ends. A relative sleep always parks, even for a deadline already past, so that it
 * goes through the timer heap (and the deterministic schedule, keyed by the virtual clock). */
static int sleep_until(int64_t deadline, int64_t rel) {
  tt__coro *co = tt__self();
  int r = tt__block_check(co);
  if (r != 0)
    return r;
  if (deadline != TT_FOREVER && deadline < 0)
    deadline = 0;
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  if (co == NULL || rel < 0) {
    r = tt__wait(&wt, TT_WAIT_SLEEP, NULL, deadline, NULL);
  } else {
    int64_t key = tt__rt.deterministic ? co->w->vnow + rel : deadline;
    r = park_timed(&wt, TT_WAIT_SLEEP, NULL, deadline, key, NULL, NULL);
  }
  return r == TT_ETIMEDOUT ? 0 : r;
}

int tt_sleep_until(int64_t deadline) { return sleep_until(deadline, -1); }

int tt_sleep(int64_t ns) {
  if (ns <= 0)
    return tt__block_check(tt__self());
  int64_t now = tt__clock();
  return ns > INT64_MAX - now ? sleep_until(TT_FOREVER, -1) : sleep_until(now + ns, ns);
}
