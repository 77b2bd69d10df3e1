/* SPDX-License-Identifier: MIT */
/* Reader/writer mutexes (Go's sync.RWMutex), owned in both modes.
 *
 * One 64-bit state word: the number of read holds (low 30 bits), WLOCKED (a writer holds it),
 * PENDING (someone waits: every operation must take the slow path) and WEXITED (the writer exited
 * holding it). Uncontended, each operation is one compare-and-swap on the word: a read lock adds
 * one while neither WLOCKED nor PENDING is set, a write lock swaps 0 for WLOCKED, and each unlock
 * undoes its lock while PENDING is clear. Everything else happens under a per-rwmutex tt__lock (a
 * leaf) that protects the two FIFO queues (readers, writers); PENDING is set and cleared only
 * under it, and while it is set no fast path succeeds, so every change of the word is then made
 * under the lock too. A party that must wait decides so and sets PENDING in one compare-and-swap
 * (under the lock), so a fast-path release either happened before (and the decision saw it) or
 * fails and comes to the lock.
 *
 * Writer preference, as Go's: a reader waits while a writer holds the lock or any writer waits, so
 * a steady stream of readers cannot starve a writer (and a recursive read lock behind a waiting
 * writer deadlocks, as in Go). Hand-off is direct, through the tt__waiter claim protocol: the last
 * reader out grants the lock to the head writer (sets WLOCKED and the owner for it); a writer's
 * unlock grants it to all the readers waiting at that moment (they then go before the next
 * writer, as Go's readerWait does) or else to the next writer. A waiter claimed by a timer or a
 * cancellation leaves by itself; a writer that leaves lets the readers it was holding back in when
 * no other writer waits.
 *
 * Holders: the writer's token is kept in `wowner` (written after the swap that takes the lock, or
 * by the granter before the wake; cleared by the writer before it releases the word), read holds in
 * each coroutine's held list (a plain thread's are counted in thread_readers), which is how a
 * runlock by a party that holds no read lock is refused. */
#include <string.h>

#include "sync_int.h"

#define RW_RMASK ((uint64_t)0x3fffffff)
#define RW_WLOCKED ((uint64_t)1 << 30)
#define RW_PENDING ((uint64_t)1 << 31)
#define RW_WEXITED ((uint64_t)1 << 32)
/* A destroyed rwmutex's word: every bit set. Every fast path fails on it (WLOCKED and PENDING are
 * set, the read count is full), so only the slow paths, under the lock, test for it. */
#define RW_DEAD (~(uint64_t)0)

typedef struct rw_impl {
  _Atomic uint64_t state;
  _Atomic uint64_t wowner; /* the writer's token while write-locked, else 0 */
  _Atomic int64_t wsince;  /* when the writer took it (coarse clock) */
  tt__lock lock;           /* protects the queues; with PENDING set, every change of state */
  _Atomic uint32_t thread_readers; /* read holds of plain threads */
  tt__wq readers, writers;
  _Atomic uint32_t exited_readers; /* read holds of coroutines that exited holding them */
  uint32_t pad;
  _Atomic uint64_t exited_reader; /* the last such coroutine's id */
} rw_impl;

_Static_assert(sizeof(rw_impl) <= sizeof(tt_rwmutex), "tt_rwmutex too small for its impl");
_Static_assert(_Alignof(rw_impl) <= _Alignof(tt_rwmutex), "tt_rwmutex under-aligned");

#define IMPL(rw) ((rw_impl *)(void *)(rw)->opaque_)

typedef struct rwwait {
  tt__waiter wt; /* first: the queues link waiters */
  uint64_t tok;
} rwwait;

void tt_rwmutex_init(tt_rwmutex *rw) {
  if (rw)
    memset(rw, 0, sizeof *rw);
}

/* ---- Under the lock ------------------------------------------------------------------------ */

/* Adds dr read holds, sets (wl > 0) or clears (wl < 0) WLOCKED, and recomputes PENDING from the
 * queues. Lock held. */
static void apply(rw_impl *r, int64_t dr, int wl) {
  uint64_t pend = (r->readers.head || r->writers.head) ? RW_PENDING : 0;
  uint64_t s = atomic_load_explicit(&r->state, memory_order_relaxed), ns;
  do {
    ns = s + (uint64_t)dr;
    if (wl > 0)
      ns |= RW_WLOCKED;
    else if (wl < 0)
      ns &= ~RW_WLOCKED;
    ns = (ns & ~RW_PENDING) | pend;
    /* acq_rel: a release publishes the holder's writes to whoever acquires next; a grant or an
     * acquisition under the lock reads what the last holder published. */
  } while (!atomic_compare_exchange_weak_explicit(&r->state, &s, ns, memory_order_acq_rel,
                                                  memory_order_relaxed));
}

/* Lets waiters in if the lock allows: all queued readers (when prefer_readers, or no writer
 * waits), else the head writer once no reader holds it. Granted waiters are claimed, unlinked and
 * appended to *tail, to be committed after the lock is released. Lock held. */
static void dispatch(rw_impl *r, bool prefer_readers, tt__waiter ***tail) {
  uint64_t s = atomic_load_explicit(&r->state, memory_order_relaxed);
  if (s & RW_WLOCKED) {
    apply(r, 0, 0);
    return;
  }
  if (r->readers.head && (prefer_readers || r->writers.head == NULL)) {
    int64_t k = 0;
    for (tt__waiter *wt = r->readers.head, *nx; wt; wt = nx) {
      nx = wt->next;
      if (!tt__wake_claim(wt, TT__GRANTED))
        continue; /* claimed by a timer or a cancellation: it leaves by itself */
      tt__wq_unlink(&r->readers, wt);
      **tail = wt;
      *tail = &wt->next;
      k++;
    }
    if (k > 0) {
      apply(r, k, 0);
      return;
    }
  }
  if ((s & RW_RMASK) == 0) {
    for (tt__waiter *wt = r->writers.head; wt; wt = wt->next) {
      if (!tt__wake_claim(wt, TT__GRANTED))
        continue;
      tt__wq_unlink(&r->writers, wt);
      /* relaxed: the grantee reads it after its wake (which orders it); others take a snapshot. */
      atomic_store_explicit(&r->wowner, ((rwwait *)wt)->tok, memory_order_relaxed);
      **tail = wt;
      *tail = &wt->next;
      apply(r, 0, 1);
      return;
    }
  }
  apply(r, 0, 0);
}

/* Leaves a queue after a timeout, cancellation or shut-down claimed our waiter; a writer that
 * leaves may let readers in. */
static void leave(rw_impl *r, tt__wq *q, tt__waiter *wt, bool writer) {
  tt__waiter *woken = NULL, **tail = &woken;
  tt__lock_acquire(&r->lock);
  tt__wq_unlink(q, wt);
  if (writer)
    dispatch(r, false, &tail);
  else
    apply(r, 0, 0);
  tt__lock_release(&r->lock);
  tt__wake_commit_list(woken);
}

/* The error for an unlock by a party that holds nothing: a destroyed rwmutex is held by no one,
 * so it is checked here, off the unlocks' paths. */
static TT_NOINLINE int not_held(rw_impl *r) {
  /* relaxed: the poison is stored before the call (destroy happens before the misuse), or the
   * caller races its own destroy. */
  return atomic_load_explicit(&r->state, memory_order_relaxed) == RW_DEAD ? TT_EINVAL : TT_EPERM;
}

/* Poisons an idle rwmutex: swaps its word from 0 (no read holds, no writer, nobody queued: PENDING
 * is set whenever a queue is not empty) to RW_DEAD, under the lock, which a party that must wait
 * holds from its decision to its queueing (so none parks on a destroyed rwmutex). */
int tt_rwmutex_destroy(tt_rwmutex *rw) {
  if (rw == NULL)
    return TT_EINVAL;
  rw_impl *r = IMPL(rw);
  uint64_t s = 0;
  tt__lock_acquire(&r->lock);
  /* relaxed: nothing is published with the poison (see tt_mutex_destroy). */
  bool ok = atomic_compare_exchange_strong_explicit(&r->state, &s, RW_DEAD, memory_order_relaxed,
                                                    memory_order_relaxed);
  tt__lock_release(&r->lock);
  return ok ? 0 : s == RW_DEAD ? TT_EINVAL : TT_EBUSY;
}

/* ---- Readers ------------------------------------------------------------------------------- */

static void read_acquired(rw_impl *r, tt__coro *co, const void *pc) {
  if (co)
    tt__held_push(co, r, TT__HELD_READ, tt__sync_now(co), pc);
  else
    /* relaxed: a count for misuse checks, changed only by its owners' own calls. */
    atomic_fetch_add_explicit(&r->thread_readers, 1, memory_order_relaxed);
}

static TT_NOINLINE int rlock_slow(rw_impl *r, tt__coro *co, int64_t deadline, bool wait) {
  tt__lock_acquire(&r->lock);
  uint64_t s = atomic_load_explicit(&r->state, memory_order_relaxed);
  for (;;) {
    if (TT_UNLIKELY(s == RW_DEAD)) { /* destroyed: poisoned under this lock, so none queues */
      tt__lock_release(&r->lock);
      return TT_EINVAL;
    }
    if (!(s & RW_WLOCKED) && r->writers.head == NULL) {
      if ((s & RW_RMASK) == RW_RMASK) {
        tt__lock_release(&r->lock);
        return TT_EAGAIN;
      }
      /* acquire: the read section follows the last writer's release. */
      if (atomic_compare_exchange_weak_explicit(&r->state, &s, s + 1, memory_order_acquire,
                                                memory_order_relaxed)) {
        tt__lock_release(&r->lock);
        return 0;
      }
      continue;
    }
    int e = wait ? tt__block_check(co) : TT_EBUSY;
    if (e != 0) {
      tt__lock_release(&r->lock);
      return e;
    }
    /* relaxed: the queue is published by the lock; the word needs only the swap's atomicity. */
    if (atomic_compare_exchange_weak_explicit(&r->state, &s, s | RW_PENDING, memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  tt__wq_push(&r->readers, &wt);
  int res = tt__wait(&wt, TT_WAIT_RWMUTEX_RLOCK, r, deadline, &r->lock);
  if (res == TT__GRANTED)
    return 0;
  TT_ASSERT(tt__wait_self_result(res));
  leave(r, &r->readers, &wt, false);
  return res;
}

static int rlock(tt_rwmutex *rw, int64_t deadline, bool wait, const void *pc) {
  if (rw == NULL)
    return TT_EINVAL;
  rw_impl *r = IMPL(rw);
  tt__coro *co = tt__self();
  uint64_t tok = tt__sync_token(co);
  int e = tt__held_reserve(co);
  if (TT_UNLIKELY(e != 0))
    return e;
  /* relaxed: only our own token can match, and we wrote it ourselves. */
  if (atomic_load_explicit(&r->wowner, memory_order_relaxed) == tok)
    return TT_EDEADLK;
  uint64_t s = atomic_load_explicit(&r->state, memory_order_relaxed);
  /* acquire: the read section follows the last writer's release. */
  if (TT_UNLIKELY((s & (RW_WLOCKED | RW_PENDING)) || (s & RW_RMASK) == RW_RMASK ||
                  !atomic_compare_exchange_strong_explicit(
                      &r->state, &s, s + 1, memory_order_acquire, memory_order_relaxed)))
    if ((e = rlock_slow(r, co, deadline, wait)) != 0)
      return e;
  read_acquired(r, co, pc);
  return 0;
}

/* Each entry point records its caller as the lock site (the leak proof's deadlock reports). */
int tt_rwmutex_rlock_dl(tt_rwmutex *rw, int64_t deadline) {
  return rlock(rw, deadline, true, __builtin_return_address(0));
}
int tt_rwmutex_rlock(tt_rwmutex *rw) {
  return rlock(rw, TT_FOREVER, true, __builtin_return_address(0));
}
int tt_rwmutex_tryrlock(tt_rwmutex *rw) {
  return rlock(rw, TT_FOREVER, false, __builtin_return_address(0));
}

int tt_rwmutex_runlock(tt_rwmutex *rw) {
  if (rw == NULL)
    return TT_EINVAL;
  rw_impl *r = IMPL(rw);
  tt__coro *co = tt__self();
  int64_t i = -1;
  if (co) {
    if ((i = tt__held_find(co, r, TT__HELD_READ)) < 0)
      return not_held(r);
  } else {
    uint32_t n = atomic_load_explicit(&r->thread_readers, memory_order_relaxed);
    do
      if (n == 0)
        return not_held(r);
    /* relaxed: as in read_acquired. */
    while (!atomic_compare_exchange_weak_explicit(&r->thread_readers, &n, n - 1,
                                                  memory_order_relaxed, memory_order_relaxed));
  }
  uint64_t s = atomic_load_explicit(&r->state, memory_order_relaxed);
  for (;;) {
    TT_ASSERT((s & RW_RMASK) > 0);
    if (s & RW_PENDING) {
      tt__waiter *woken = NULL, **tail = &woken;
      tt__lock_acquire(&r->lock);
      apply(r, -1, 0);
      if ((atomic_load_explicit(&r->state, memory_order_relaxed) & RW_RMASK) == 0)
        dispatch(r, false, &tail);
      tt__lock_release(&r->lock);
      tt__wake_commit_list(woken);
      break;
    }
    /* release: the read section's reads happen before a later writer's writes. */
    if (atomic_compare_exchange_weak_explicit(&r->state, &s, s - 1, memory_order_release,
                                              memory_order_relaxed))
      break;
  }
  if (co)
    tt__held_remove(co, i);
  return 0;
}

/* ---- Writers ------------------------------------------------------------------------------- */

static TT_NOINLINE int lock_slow(rw_impl *r, tt__coro *co, uint64_t tok, int64_t deadline,
                                 bool wait) {
  tt__lock_acquire(&r->lock);
  uint64_t s = atomic_load_explicit(&r->state, memory_order_relaxed);
  for (;;) {
    if (TT_UNLIKELY(s == RW_DEAD)) { /* as in rlock_slow */
      tt__lock_release(&r->lock);
      return TT_EINVAL;
    }
    if ((s & (RW_RMASK | RW_WLOCKED)) == 0 && r->writers.head == NULL) {
      /* acquire: the write section follows the last holders' releases. */
      if (atomic_compare_exchange_weak_explicit(&r->state, &s, s | RW_WLOCKED, memory_order_acquire,
                                                memory_order_relaxed)) {
        tt__lock_release(&r->lock);
        return 0;
      }
      continue;
    }
    int e = wait ? tt__block_check(co) : TT_EBUSY;
    if (e != 0) {
      tt__lock_release(&r->lock);
      return e;
    }
    /* relaxed: as in rlock_slow. */
    if (atomic_compare_exchange_weak_explicit(&r->state, &s, s | RW_PENDING, memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
  rwwait ww = {.tok = tok};
  tt__waiter_init(&ww.wt, co);
  tt__wq_push(&r->writers, &ww.wt);
  int res = tt__wait(&ww.wt, TT_WAIT_RWMUTEX_LOCK, r, deadline, &r->lock);
  if (res == TT__GRANTED)
    return 0; /* wowner set by the granter */
  TT_ASSERT(tt__wait_self_result(res));
  leave(r, &r->writers, &ww.wt, true);
  return res;
}

static int wlock(tt_rwmutex *rw, int64_t deadline, bool wait, const void *pc) {
  if (rw == NULL)
    return TT_EINVAL;
  rw_impl *r = IMPL(rw);
  tt__coro *co = tt__self();
  uint64_t tok = tt__sync_token(co);
  int e = tt__held_reserve(co);
  if (TT_UNLIKELY(e != 0))
    return e;
  /* relaxed: only our own token can match, and we wrote it ourselves. */
  if (atomic_load_explicit(&r->wowner, memory_order_relaxed) == tok ||
      (co && tt__held_find(co, r, TT__HELD_READ) >= 0))
    return TT_EDEADLK;
  uint64_t z = 0;
  /* acquire: the write section follows the last holders' releases. */
  if (TT_UNLIKELY(!atomic_compare_exchange_strong_explicit(
          &r->state, &z, RW_WLOCKED, memory_order_acquire, memory_order_relaxed))) {
    if ((e = lock_slow(r, co, tok, deadline, wait)) != 0)
      return e;
  }
  /* relaxed: a granter stored the same value already; others take snapshots. */
  atomic_store_explicit(&r->wowner, tok, memory_order_relaxed);
  int64_t now = tt__sync_now(co);
  atomic_store_explicit(&r->wsince, now, memory_order_relaxed);
  if (co)
    tt__held_push(co, r, TT__HELD_WRITE, now, pc);
  return 0;
}

int tt_rwmutex_lock_dl(tt_rwmutex *rw, int64_t deadline) {
  return wlock(rw, deadline, true, __builtin_return_address(0));
}
int tt_rwmutex_lock(tt_rwmutex *rw) {
  return wlock(rw, TT_FOREVER, true, __builtin_return_address(0));
}
int tt_rwmutex_trylock(tt_rwmutex *rw) {
  return wlock(rw, TT_FOREVER, false, __builtin_return_address(0));
}

int tt_rwmutex_unlock(tt_rwmutex *rw) {
  if (rw == NULL)
    return TT_EINVAL;
  rw_impl *r = IMPL(rw);
  tt__coro *co = tt__self();
  uint64_t tok = tt__sync_token(co);
  /* relaxed: only our own token can match (see wlock). */
  if (atomic_load_explicit(&r->wowner, memory_order_relaxed) != tok)
    return not_held(r);
  atomic_store_explicit(&r->wowner, 0, memory_order_relaxed);
  uint64_t s = atomic_load_explicit(&r->state, memory_order_relaxed);
  for (;;) {
    TT_ASSERT(s & RW_WLOCKED);
    if (s & RW_PENDING) {
      tt__waiter *woken = NULL, **tail = &woken;
      tt__lock_acquire(&r->lock);
      apply(r, 0, -1);
      dispatch(r, true, &tail);
      tt__lock_release(&r->lock);
      tt__wake_commit_list(woken);
      break;
    }
    /* release: the write section's writes are visible to the next holders. */
    if (atomic_compare_exchange_weak_explicit(&r->state, &s, s & ~RW_WLOCKED, memory_order_release,
                                              memory_order_relaxed))
      break;
  }
  if (co)
    tt__held_pop(co, r, TT__HELD_WRITE);
  return 0;
}

/* ---- Queries and the exit hook --------------------------------------------------------------- */

int tt__rwmutex_info(const tt_rwmutex *rw, tt__lockinfo *writer, int64_t *readers,
                     int64_t *exited_readers, tt_id *last_exited_reader) {
  if (rw == NULL)
    return TT_EINVAL;
  rw_impl *r = IMPL((tt_rwmutex *)rw);
  /* acquire: the owner and since written after the swap are at least that holder's. */
  uint64_t s = atomic_load_explicit(&r->state, memory_order_acquire);
  if (s == RW_DEAD)
    return TT_EINVAL;
  if (writer) {
    memset(writer, 0, sizeof *writer);
    uint64_t tok = atomic_load_explicit(&r->wowner, memory_order_relaxed);
    if ((s & RW_WLOCKED) && tok != 0) {
      writer->token = tok;
      writer->id = tt__token_id(tok);
      writer->since = atomic_load_explicit(&r->wsince, memory_order_relaxed);
      writer->state = (s & RW_WEXITED)              ? TT_LOCK_EXITED
                      : (tok & TT__TOK_THREAD) != 0 ? TT_LOCK_THREAD
                                                    : TT_LOCK_CORO;
    }
  }
  if (readers)
    *readers = (int64_t)(s & RW_RMASK);
  if (exited_readers)
    *exited_readers = atomic_load_explicit(&r->exited_readers, memory_order_relaxed);
  if (last_exited_reader)
    *last_exited_reader = atomic_load_explicit(&r->exited_reader, memory_order_relaxed);
  return 0;
}

int tt_rwmutex_holder(const tt_rwmutex *rw, tt_id *id, int64_t *since) {
  tt__lockinfo li;
  int e = tt__rwmutex_info(rw, &li, NULL, NULL, NULL);
  if (e != 0)
    return e;
  if (id)
    *id = li.id;
  if (since)
    *since = li.since;
  return li.state;
}

int64_t tt_rwmutex_readers(const tt_rwmutex *rw) {
  int64_t n;
  int e = tt__rwmutex_info(rw, NULL, &n, NULL, NULL);
  return e != 0 ? e : n;
}

void tt__rwmutex_holder_exited(const void *p, uint32_t kind, tt_id id) {
  rw_impl *r = (rw_impl *)p;
  if (kind == TT__HELD_READ) {
    /* relaxed: marks for the diagnostics; the read hold stays, nothing is published. */
    atomic_fetch_add_explicit(&r->exited_readers, 1, memory_order_relaxed);
    atomic_store_explicit(&r->exited_reader, id, memory_order_relaxed);
    return;
  }
  if (atomic_load_explicit(&r->wowner, memory_order_relaxed) == id)
    /* relaxed: as above; the write lock stays held. */
    atomic_fetch_or_explicit(&r->state, RW_WEXITED, memory_order_relaxed);
}
