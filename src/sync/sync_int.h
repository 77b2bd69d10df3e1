/* SPDX-License-Identifier: MIT */
/* The sync primitives' shared internal definitions: holder tokens, wait queues, the per-coroutine
 * list of held locks, and the queries the diagnostics (the leak proofs, dumps) use. Never
 * installed.
 *
 * Holder tokens. A lock records who holds it as a 64-bit token: a coroutine's id, or for a plain
 * thread TT__TOK_THREAD | a number drawn once per thread from a process-wide counter. Ids are never
 * reused within a run, so a token never comes to name another coroutine when a descriptor is
 * recycled, and a lock held by a coroutine that exited keeps naming it. Tokens fit in 57 bits
 * (ids would need 2^56 spawns to reach the thread bit), which leaves the low bits of a mutex's
 * state word for its flags.
 *
 * Held locks. Each coroutine keeps the locks it holds in an array it alone writes (`co->locks`,
 * allocated on its first lock, freed at exit: one allocation per coroutine that locks, none per
 * lock); room for the next entry is reserved before a lock is taken, so recording it cannot fail.
 * The diagnostics read it only while the coroutine is held still (its scan bit) or is the caller.
 * Plain threads keep no list: a lock they hold names the thread's token. */
#ifndef TT_SYNC_INT_H
#define TT_SYNC_INT_H

#include <string.h>

#include "internal.h"

#define TT__TOK_THREAD ((uint64_t)1 << 56)

extern __thread uint64_t tt__thread_tok;
uint64_t tt__thread_token_slow(void);

/* The caller's holder token (co is tt__self()). */
static inline uint64_t tt__sync_token(tt__coro *co) {
  if (TT_LIKELY(co != NULL))
    return co->id;
  uint64_t t = tt__thread_tok;
  return TT_LIKELY(t != 0) ? t : tt__thread_token_slow();
}

/* The caller's coarse time for "held since": its worker's clock (refreshed by the scheduler every
 * 64 switches, as blocked_since is), or a clock read on a plain thread. */
static inline int64_t tt__sync_now(tt__coro *co) { return co ? co->w->now : tt__clock(); }

/* Results a primitive's waker gives its waiters besides 0 and TT_E* codes (TT__WAITING is 1):
 * ownership was handed over with the wake-up. */
#define TT__GRANTED 2

/* ---- Wait queues: FIFO lists of tt__waiter, under the owning object's lock ---------------- */

typedef struct tt__wq {
  tt__waiter *head, *tail;
} tt__wq;

static inline void tt__wq_push(tt__wq *q, tt__waiter *wt) {
  wt->next = NULL;
  wt->prev = q->tail;
  if (q->tail)
    q->tail->next = wt;
  else
    q->head = wt;
  q->tail = wt;
}

static inline void tt__wq_push_front(tt__wq *q, tt__waiter *wt) {
  wt->prev = NULL;
  wt->next = q->head;
  if (q->head)
    q->head->prev = wt;
  else
    q->tail = wt;
  q->head = wt;
}

static inline void tt__wq_unlink(tt__wq *q, tt__waiter *wt) {
  if (wt->prev)
    wt->prev->next = wt->next;
  else
    q->head = wt->next;
  if (wt->next)
    wt->next->prev = wt->prev;
  else
    q->tail = wt->prev;
  wt->next = wt->prev = NULL;
}

/* Whether wt is still unclaimed (a timer or a cancellation may claim it at any moment: this is a
 * hint for skipping the already claimed, never a promise). */
static inline bool tt__waiter_pending(tt__waiter *wt) {
  /* relaxed: a hint; the claim that follows decides. */
  return atomic_load_explicit(&wt->token, memory_order_relaxed) == TT__WAITING;
}

/* Commits every waiter on a list linked through ->next (claimed and unlinked under the object's
 * lock, which the caller has released). */
static inline void tt__wake_commit_list(tt__waiter *wt) {
  while (wt) {
    tt__waiter *nx = wt->next; /* read before the commit, after which wt may die */
    tt__wake_commit(wt);
    wt = nx;
  }
}

/* ---- Held locks ------------------------------------------------------------------------------ */

enum {
  TT__HELD_MUTEX = 1, /* a tt_mutex */
  TT__HELD_READ = 2,  /* a tt_rwmutex in read mode */
  TT__HELD_WRITE = 3, /* a tt_rwmutex in write mode */
};

typedef struct tt__heldlock {
  const void *obj; /* the tt_mutex * or tt_rwmutex * */
  int64_t since;   /* coarse tt_now() time it was taken */
  const void *pc;  /* where: the lock call's return address (NULL: not known) */
  uint32_t kind;   /* TT__HELD_* */
} tt__heldlock;

typedef struct tt__held {
  uint32_t n, cap;
  tt__heldlock v[];
} tt__held;

int tt__held_grow(tt__coro *co);

/* Room for one more entry in co's list (nothing to do for a plain thread). 0 or TT_ENOMEM. */
static inline int tt__held_reserve(tt__coro *co) {
  if (co == NULL)
    return 0;
  tt__held *h = co->locks;
  if (TT_LIKELY(h != NULL && h->n < h->cap))
    return 0;
  return tt__held_grow(co);
}

/* Records a lock co took; room was reserved. */
static inline void tt__held_push(tt__coro *co, const void *obj, uint32_t kind, int64_t since,
                                 const void *pc) {
  tt__held *h = co->locks;
  h->v[h->n++] = (tt__heldlock){.obj = obj, .since = since, .pc = pc, .kind = kind};
}

/* The newest entry for obj in that mode, or -1. */
static inline int64_t tt__held_find(const tt__coro *co, const void *obj, uint32_t kind) {
  const tt__held *h = co->locks;
  if (h == NULL)
    return -1;
  for (uint32_t i = h->n; i-- > 0;)
    if (h->v[i].obj == obj && h->v[i].kind == kind)
      return i;
  return -1;
}

/* Forgets entry i (found with tt__held_find), keeping the others in the order taken. */
static inline void tt__held_remove(tt__coro *co, int64_t i) {
  tt__held *h = co->locks;
  uint32_t k = (uint32_t)i;
  if (k + 1 < h->n)
    memmove(&h->v[k], &h->v[k + 1], (h->n - k - 1) * sizeof h->v[0]);
  h->n--;
}

/* Forgets the newest entry for obj in that mode, if any. */
static inline void tt__held_pop(tt__coro *co, const void *obj, uint32_t kind) {
  tt__held *h = co->locks;
  if (TT_LIKELY(h != NULL && h->n > 0 && h->v[h->n - 1].obj == obj &&
                h->v[h->n - 1].kind == kind)) {
    h->n--; /* last in, first out: the common case */
    return;
  }
  int64_t i = tt__held_find(co, obj, kind);
  if (i >= 0)
    tt__held_remove(co, i);
}

/* Exit hooks (held.c calls them for each lock an exiting coroutine still holds): the lock stays
 * held and is marked as held by the exited coroutine id. */
void tt__mutex_holder_exited(const void *m, tt_id id);
void tt__rwmutex_holder_exited(const void *rw, uint32_t kind, tt_id id);

/* ---- Queries for the diagnostics ------------------------------------------------------------ */

/* Copies up to max of co's held locks, oldest first, into out and returns how many co holds.
 * co is the caller, or a suspended coroutine held still by its scan bit. */
size_t tt__coro_held_locks(const tt__coro *co, tt__heldlock *out, size_t max);
/* For tests: the calling coroutine's list (objects and kinds, up to max); returns its length. */
int64_t tt__held_self(const void **objs, uint32_t *kinds, size_t max);

/* Who holds a mutex, or an rwmutex in write mode. */
typedef struct tt__lockinfo {
  int state;      /* TT_LOCK_FREE, TT_LOCK_CORO, TT_LOCK_THREAD or TT_LOCK_EXITED */
  uint64_t token; /* the holder's token (see above); 0 when free */
  tt_id id;       /* the holding coroutine's id (also when it exited); 0 for a plain thread */
  int64_t since;  /* coarse tt_now() time it was taken; 0 when free */
} tt__lockinfo;

/* A snapshot of m's holder (fields read without a lock: each is exact, the set may straddle a
 * hand-over). 0, or TT_EINVAL for a NULL m. Any thread. */
int tt__mutex_info(const tt_mutex *m, tt__lockinfo *out);

/* The same for an rwmutex: its writer, the number of read holds (readers), and how many of those
 * belong to coroutines that exited holding them (exited_readers; the last such coroutine's id in
 * last_exited_reader). Any of the out pointers may be NULL. */
int tt__rwmutex_info(const tt_rwmutex *rw, tt__lockinfo *writer, int64_t *readers,
                     int64_t *exited_readers, tt_id *last_exited_reader);

/* The token's holder kind, and the id a token names (0 for a plain thread). */
static inline tt_id tt__token_id(uint64_t tok) { return (tok & TT__TOK_THREAD) ? 0 : tok; }

/* Used by tt_cond (cond.c): whether the caller (token tok) holds m; releasing m on the cond
 * waiter's behalf, and taking it back on every return path. */
bool tt__mutex_held_by(const tt_mutex *m, uint64_t tok);
bool tt__mutex_dead(const tt_mutex *m); /* destroyed (tt_mutex_destroy) */
int tt__mutex_unlock_for_wait(tt_mutex *m, tt__coro *co, uint64_t tok);
int tt__mutex_relock_after_wait(tt_mutex *m, tt__coro *co, uint64_t tok);

#endif
