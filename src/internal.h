/* SPDX-License-Identifier: MIT */
/* The runtime's shared internal definitions: coroutines, workers, waiters, locks and the hooks
 * between the scheduler, the registry, timers and the synchronisation objects. Never installed. */
#ifndef TT_INTERNAL_H
#define TT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <tether.h>

#include "arch/switch.h"

#define TT_LIKELY(x) __builtin_expect(!!(x), 1)
#define TT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TT_CACHELINE 64
#define TT_NOINLINE __attribute__((noinline))
#define TT_NORETURN __attribute__((noreturn))
/* For code that runs on a broken stack: no sanitizer calls (they resolve lazily, on the stack). */
#define TT_NO_SANITIZE __attribute__((no_sanitize_address, no_sanitize_undefined, noinline))

/* A spin-wait hint to the CPU. */
static inline void tt__cpu_relax(void) {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

/* One step of a spin-wait for another thread that holds something briefly: a pause at first,
 * then the CPU for whoever holds it, in case it was preempted (or runs on the same core). */
void tt__spin_step(uint32_t *spins);

/* ---- Checks ------------------------------------------------------------------------------ */

/* TT_ASSERT stays on in release builds: a broken runtime invariant prints the expression, lists
 * the coroutines and aborts. TT_DASSERT is for expensive checks, in debug builds only. */
#define TT_ASSERT(expr)                                                                            \
  do {                                                                                             \
    if (TT_UNLIKELY(!(expr)))                                                                      \
      tt__assert_fail(#expr, __FILE__, __LINE__);                                                  \
  } while (0)
#ifndef NDEBUG
#define TT_DASSERT(expr) TT_ASSERT(expr)
#else
#define TT_DASSERT(expr) ((void)0)
#endif

TT_NORETURN void tt__assert_fail(const char *expr, const char *file, int line);
/* Prints "fatal error: msg", the coroutine list, and exits with status 2. */
TT_NORETURN void tt__fatal(const char *msg);

/* ---- Fault injection (src/util/fault.c) --------------------------------------------------- */

enum { TT__FAULT_ALLOC, TT__FAULT_MMAP, TT__FAULT_THREAD, TT__FAULT_COUNT };
extern _Atomic int tt__faults_armed;
bool tt__fault_slow(int site);
/* Whether the next operation of this kind must fail (TT_FAULT, tt__fault_arm). */
static inline bool tt__fault(int site) {
  return TT_UNLIKELY(atomic_load_explicit(&tt__faults_armed, memory_order_relaxed)) &&
         tt__fault_slow(site);
}
/* The nth next operation of the site fails (0: none). For tests. */
void tt__fault_arm(int site, int64_t nth);
int tt__fault_load(void); /* parses TT_FAULT; 0 or TT_EINVAL */
/* The runtime's allocations, through the fault injector. */
void *tt__malloc(size_t n);
void *tt__calloc(size_t n, size_t size);
void *tt__realloc(void *p, size_t n);
void *tt__aligned_alloc(size_t align, size_t n);
char *tt__strdup(const char *s);

/* ---- Futexes and the internal lock -------------------------------------------------------- */

/* Waits while *addr == val, until woken or (deadline >= 0) the monotonic deadline passes.
 * Returns 0 when woken or the value differed, TT_ETIMEDOUT at the deadline. */
int tt__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t deadline);
void tt__futex_wake(_Atomic uint32_t *addr, int n);

/* A three-state futex mutex (Drepper's "Futexes are tricky", mutex 2): 0 free, 1 locked,
 * 2 locked with waiters. Short critical sections only: a coroutine that finds it taken blocks its
 * worker's thread for the few nanoseconds the holder needs. Zero-initialised is unlocked. */
typedef struct tt__lock {
  _Atomic uint32_t v;
} tt__lock;
void tt__lock_slow(tt__lock *l);
static inline void tt__lock_acquire(tt__lock *l) {
  uint32_t z = 0;
  /* acquire: the critical section's reads must not move above the lock. */
  if (TT_UNLIKELY(!atomic_compare_exchange_strong_explicit(&l->v, &z, 1, memory_order_acquire,
                                                           memory_order_relaxed)))
    tt__lock_slow(l);
}
static inline void tt__lock_release(tt__lock *l) {
  /* release: the critical section's writes are visible to the next holder. */
  if (TT_UNLIKELY(atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2))
    tt__futex_wake(&l->v, 1);
}

/* ---- Coroutines ------------------------------------------------------------------------- */

/* A coroutine's state, and its scan bit (Go's _Gscan) in a word of its own.
 *
 * The state is written only by whoever moves the coroutine: its worker (to RUNNING, to WAITING,
 * back to RUNNABLE on a yield, to FREE at exit), the waker that claimed it (WAITING to RUNNABLE),
 * the spawner (FREE to RUNNABLE). A scanner (the diagnostics) that sets the scan bit of a
 * suspended coroutine — RUNNABLE or WAITING — holds it still: no worker switches to it until the
 * bit is cleared, so its stack and fields can be read.
 *
 * The two meet Dekker-style: the worker stores RUNNING and then reads the scan bit (and backs off
 * if it is set); the scanner sets the bit and then reads the state (and backs off if it is
 * RUNNING). The worker does this on every switch to a coroutine, the scanner rarely, so the
 * barrier is asymmetric: the worker's side is a plain store and load, and the scanner pays for
 * both with membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), which makes every other thread of the
 * process execute a full barrier before it returns (the technique of liburcu and of Folly's
 * asymmetric fences). Where membarrier is missing (old kernels, some emulators, TSan builds,
 * whose model cannot see it), both sides use sequentially consistent operations instead. */
enum {
  TT__S_FREE = 0,     /* descriptor unused */
  TT__S_RUNNABLE = 1, /* queued on a run queue or about to be */
  TT__S_RUNNING = 2,  /* on a worker; its stack belongs to that worker */
  TT__S_WAITING = 3,  /* parked, context saved; only a waiter's winner may make it runnable */
  TT__S_STATE_MASK = 0xff,
};

/* The bits of tt__coro.cancelled. RT: the runtime is shutting down (set once, never cleared).
 * CTX: the coroutine's current context is cancelled (set by a canceller under the anchor's lock,
 * recomputed by the coroutine when it changes context). SHIELD: a cancellation shield is up (set
 * and cleared by the coroutine itself). Cancellers only ever set bits; only the coroutine clears
 * them, so a suspended coroutine's word can only go from "not pending" to "pending". */
enum {
  TT__CANCEL_RT = 1u,
  TT__CANCEL_CTX = 2u,
  TT__CANCEL_SHIELD = 1u << 31,
};

/* Whether a cancellation is pending in a `cancelled` word: a reason, and no shield up. */
static inline bool tt__cancel_pending(uint32_t c) {
  return (c & (TT__CANCEL_RT | TT__CANCEL_CTX)) != 0 && (c & TT__CANCEL_SHIELD) == 0;
}

/* The tt__stats index of each public state. */
static inline int tt__state_public(uint32_t s) {
  switch (s & TT__S_STATE_MASK) {
  case TT__S_RUNNABLE:
    return TT_STATE_RUNNABLE;
  case TT__S_RUNNING:
    return TT_STATE_RUNNING;
  default:
    return TT_STATE_WAITING;
  }
}

typedef struct tt__labels {
  _Atomic uint32_t refs;
  uint32_t n;
  tt_label v[]; /* strings stored after the array, in the same allocation */
} tt__labels;

/* The spawner's stack at a spawn, recorded with TT_DEBUG=creationstack=N (Go's
 * GODEBUG=tracebackancestors=N): immutable once built, shared by reference, chained to the
 * spawner's own record up to N levels (src/diag/trigger.c). */
typedef struct tt__ancestry {
  _Atomic uint32_t refs;
  uint32_t npcs;
  uint32_t depth; /* records in the chain from this one up */
  tt_id goid;     /* the spawner */
  tt_id gparent;  /* the spawner's parent */
  void *gopc;     /* where the spawner was itself spawned */
  struct tt__ancestry *up;
  uintptr_t pcs[];
} tt__ancestry;
void tt__ancestry_release(tt__ancestry *a);
/* The calling coroutine's (or thread's) record for a child it spawns now, or NULL. */
tt__ancestry *tt__ancestry_capture(void);

typedef struct tt__worker tt__worker;
typedef struct tt__waiter tt__waiter;

/* tools/gdb/tether.py reads sp, w (w->index), status, wait_reason, fn, id, blocked_since,
 * create_pc and name by name from the DWARF (docs/HACKING.md, "The gdb script"): renaming or
 * retyping them means changing the script. */
typedef struct tt__coro {
  /* Hot: the switch and the queues. */
  void *sp;                /* saved stack pointer while suspended; NULL before the first run */
  tt__worker *w;           /* bound worker from the first run on (never changes after) */
  struct tt__coro *next;   /* run queue, inbox or free-list link; owned by whoever holds it */
  _Atomic uint32_t status; /* TT__S_*: see above */
  _Atomic uint32_t scan;   /* 1 while a scanner holds the coroutine still */
  uint8_t wait_reason;
  uint8_t daemon;
  uint8_t stack_guarded;
  uint8_t stack_pooled; /* stack came from a worker pool (default size) */
  uint8_t wait_timed;   /* the wait has a deadline (a timer will end it) */
  uint8_t verdict; /* TT_VERDICT_* of the last leak check (src/leak): relaxed atomic accesses */
  _Atomic uint32_t cancelled; /* TT__CANCEL_* bits: see tt__cancel_pending */
  _Atomic uint32_t qseq;      /* queueing order on its worker, for FIFO fairness across queues */
  void (*fn)(void *);
  void *arg;
  char *stack_lo;    /* lowest usable byte; a red-zone page (guard or canary) lies below */
  size_t stack_size; /* usable bytes above stack_lo */
  size_t stack_req;  /* requested size, before the stack is bound */
  /* Registry: written while the coroutine runs (or before it is published), read under scan. */
  tt_id id;
  tt_id parent;
  const void *wait_obj;
  tt__waiter *waiter; /* while parked */
  int64_t blocked_since;
  void *create_pc;
  char *name;
  tt__labels *labels;
  struct tt__holder *holder; /* references to channels it holds (src/chan/ref.c); NULL: none */
  /* Its current context (src/ctx/ctx.c); NULL: the background context. It holds a reference, and
   * sits on the member list of the context's anchor (the nearest cancellable one) while it has
   * one, so that cancelling the anchor finds it. */
  struct tt_ctx *ctx;
  struct tt__coro *ctx_next, *ctx_prev; /* the anchor's member list, under the anchor's lock */
  uint32_t shield;             /* tt_shield_begin depth; only the coroutine itself touches it */
  uint32_t ctx_depth, ctx_cap; /* tt_ctx_enter regions: the contexts current before each */
  struct tt_ctx **ctx_saved;   /* (references, released at exit if a region is never left) */
  struct tt__held *locks; /* mutexes and rwmutexes it holds (src/sync/sync_int.h); NULL: none */
  tt__ancestry *ancestry; /* TT_DEBUG=creationstack: the spawner's stack; NULL: not recorded */
  /* The leak-check scope its spawns go into (src/leak/verify.c), 0: none: the scope it was
   * created in, or one it has begun and not yet ended. Written by the spawner before publication
   * and by the coroutine itself, read by anyone: relaxed atomic accesses (__atomic_*). */
  uint64_t scope;
  /* The leak proof's scratch (src/leak/proof.c), written only while the world is stopped:
   * proof_node is this coroutine's node in the proof numbered proof_gen. */
  uint32_t proof_gen, proof_node;
  /* The watchdog (src/watchdog/watchdog.c): cancellation points refused since it was cancelled.
   * Valid only when wd_id == id (a reused descriptor's are stale, so the exit path need not clear
   * them); written only by the coroutine itself, read by it and by the capture handler that
   * interrupts it on its own thread. */
  tt_id wd_id;
  int64_t wd_since; /* the first refusal */
  uint32_t wd_hits; /* refusals more than the threshold after it; TT__WD_REPORTED once reported */
#if defined(TT_SANITIZE_THREAD)
  void *tsan_fiber;
#endif
#if defined(TT_SANITIZE_ADDRESS)
  void *asan_fake_stack;
#endif
#if defined(TT_VALGRIND)
  unsigned valgrind_id;
#endif
} tt__coro;

/* Contexts (src/ctx/ctx.c). The child inherits c (NULL or background: nothing), before it is
 * published; at exit a coroutine leaves its context (and any region it did not leave). */
struct tt_ctx;
void tt__ctx_spawn(tt__coro *child, struct tt_ctx *c);
void tt__ctx_exit(tt__coro *co);
int64_t tt__ctx_count_live(void); /* contexts made and not yet freed, for tests */
/* For the leak proof, with the world stopped. A context's anchor (NULL: the background). What an
 * anchor a holds that bears on whether it can still be cancelled: root when it is cancelled, has
 * a deadline (its own timer or an ancestor's) or a signal hook; its parent's anchor; its
 * reference count; how many cancellable children (with a as parent) hold a reference to it; its
 * member list (linked
 * by ctx_next: coroutines whose context has a as anchor). */
typedef struct tt__ctx_facts {
  bool root;
  struct tt_ctx *parent_anchor;
  uint32_t refs, nchildren;
  struct tt__coro *members;
} tt__ctx_facts;
struct tt_ctx *tt__ctx_anchor(struct tt_ctx *c);
void tt__ctx_get_facts(struct tt_ctx *a, tt__ctx_facts *f);
/* For the leak proof: calls fn for each child of group g (its id; 0 before it started) under the
 * group's lock, and returns the number of live children it counts. */
int64_t tt__group_children(const void *g, void (*fn)(tt_id id, void *arg), void *arg);
/* Wakes with TT_ECANCELED those of v[0..n) (sorted by address, no duplicates) that are parked
 * with a cancellation pending, holding each still meanwhile (src/coro/coro.c). */
void tt__coro_cancel_wake(tt__coro *const *v, size_t n);
/* Holds co still if it is suspended (its scan bit; release with tt__scan_release) and says so,
 * with its state; false if it runs (then nothing is held). */
bool tt__coro_hold(tt__coro *co, uint32_t *state);

/* ---- Waiters ------------------------------------------------------------------------------ */

/* One blocked party — a coroutine or a plain thread — in an object's wait queue.
 *
 * Waking is two steps. Claim: a waker swaps the token from TT__WAITING to the wait's result (0, a
 * TT_E* code); exactly one of the racing wakers (the object's waker, a timer, a cancellation)
 * wins. Commit: the winner makes the party run again (readies the coroutine, or releases the
 * thread). Nothing the party does can proceed between the two, so an object's waker claims its
 * waiters under the object's lock, takes them off the queue, unlocks, and only then commits them:
 * its unlock is its last touch of the object, and the waiter's node stays alive until the commit,
 * which is the waker's last touch of it. A waiter woken that way returns without touching the
 * object again, so either side may free an object on its stack as soon as its own call returns
 * (POSIX's rule for condition variables). A waiter whose token was won by a timer or a
 * cancellation is still queued and takes itself off under the lock. */
#define TT__WAITING 1
struct tt__waiter {
  struct tt__waiter *next, *prev;
  tt__coro *co; /* NULL for a plain thread */
  _Atomic uint32_t token;
  _Atomic uint32_t released; /* plain threads: set by the commit; the thread sleeps on it */
  void *data;                /* for the object's own use */
};

/* initial-exec: one instruction per access even in the shared library (no __tls_get_addr), which
 * matters on every switch; the library is never dlopen'ed late enough for that to fail. */
extern __thread tt__worker *tt__tls_worker __attribute__((tls_model("initial-exec")));

/* Plain threads' changes to what the leak proof reads (references, wake-ups, contexts' counts).
 * The proof stops the workers, but plain threads go on: each change a plain thread makes is
 * bracketed by these two counts, so that a proof which finds no change begun meanwhile (begins
 * unchanged) and none under way at its start (ends == begins) read one consistent world
 * (src/leak/proof.c). Workers never count: they are stopped while the proof reads. */
typedef struct tt__mutcount {
  _Alignas(TT_CACHELINE) _Atomic uint64_t begins;
  _Atomic uint64_t ends;
} tt__mutcount;
extern tt__mutcount tt__thread_mut;
static inline void tt__thread_mut_begin(void) {
  if (TT_UNLIKELY(tt__tls_worker == NULL))
    /* seq_cst: ordered before the change's own stores and loads, as the proof's reads are. */
    atomic_fetch_add_explicit(&tt__thread_mut.begins, 1, memory_order_seq_cst);
}
static inline void tt__thread_mut_end(void) {
  if (TT_UNLIKELY(tt__tls_worker == NULL))
    atomic_fetch_add_explicit(&tt__thread_mut.ends, 1, memory_order_seq_cst);
}

static inline void tt__waiter_init(tt__waiter *wt, tt__coro *co) {
  wt->next = wt->prev = NULL;
  wt->co = co;
  atomic_init(&wt->token, TT__WAITING);
  atomic_init(&wt->released, 0);
  wt->data = NULL;
}

/* Claims wt with result; false if another waker already had. Any thread. */
bool tt__wake_claim_thread(tt__waiter *wt, int result);
static inline bool tt__wake_claim(tt__waiter *wt, int result) {
  if (TT_UNLIKELY(tt__tls_worker == NULL))
    return tt__wake_claim_thread(wt, result); /* counted for the leak proof (see above) */
  uint32_t exp = TT__WAITING;
  /* acq_rel: the claimer's writes before the wake are visible to the woken party once it runs,
   * and the claimer sees what the party did before parking. */
  return atomic_compare_exchange_strong_explicit(&wt->token, &exp, (uint32_t)result,
                                                 memory_order_acq_rel, memory_order_acquire);
}

/* Lets a claimed party run. The caller's last touch of wt. */
void tt__wake_commit(tt__waiter *wt);

/* Claim and commit at once, for wakers that hold no object lock (timers, cancellation). */
bool tt__wake(tt__waiter *wt, int result);
/* tt__wake for a batch of wakes on this worker (due timers): a coroutine of this worker is queued
 * behind the ones readied before it, so the batch runs in the order it was woken. */
bool tt__wake_fifo(tt__waiter *wt, int result);
/* Prints every worker's queues and sleeping flag (racy reads), for post-mortems in tests. */
void tt__sched_dump(FILE *f);

/* The results a waiter gets from a timer, a cancellation or shut-down rather than from the
 * object: after one of these the waiter is still queued and must take itself off. */
static inline bool tt__wait_self_result(int r) {
  return r == TT_ETIMEDOUT || r == TT_ECANCELED || r == TT_ESHUTDOWN || r == TT_ENOMEM;
}

/* Parks the calling coroutine on wt (reason, obj for the registry). commit(arg) runs once the
 * coroutine's context is saved — it is where the caller releases the lock that hides wt from
 * wakers — and the wait is checked for cancellation after it. Returns the token's result.
 * Precondition: the caller is a coroutine and wt->token == TT__WAITING. */
int tt__park(tt__waiter *wt, int reason, const void *obj, void (*commit)(void *), void *arg);

/* What a coroutine blocked in tt_select waits on (its wait_obj): its cases. */
typedef struct tt__select_wait {
  const struct tt_select_case *cases;
  size_t n;
} tt__select_wait;

/* Blocks a plain thread on wt until it is woken or the deadline passes (then it claims itself
 * with TT_ETIMEDOUT). Returns the result. Registered so that shut-down can wake it with
 * TT_ESHUTDOWN. */
int tt__thread_block(tt__waiter *wt, int64_t deadline);

/* The calling coroutine, or NULL on a plain thread. */
tt__coro *tt__self(void);

/* Whether the caller (a coroutine, or NULL for a plain thread) must stop blocking: it has been
 * cancelled, or (plain thread) the runtime is not running. Returns 0 or the error to return. The
 * coroutine's half is inline: every blocking path asks it. */
int tt__block_check_thread(void);
/* The watchdog's count of a refused cancellation point (src/watchdog/watchdog.c); returns
 * TT_ECANCELED. Only on the cancelled branch: nothing on the common path. */
int tt__watchdog_cancel_seen(tt__coro *co);
static inline int tt__block_check(tt__coro *co) {
  if (TT_LIKELY(co != NULL))
    return TT_UNLIKELY(
               tt__cancel_pending(atomic_load_explicit(&co->cancelled, memory_order_relaxed)))
               ? tt__watchdog_cancel_seen(co)
               : 0;
  return tt__block_check_thread();
}

/* ---- Timers (src/time) -------------------------------------------------------------------- */

typedef struct tt__timer tt__timer;
struct tt__timer {
  int64_t when;   /* real deadline (tt_now() clock) */
  int64_t key;    /* heap order: when, or in deterministic mode the virtual deadline */
  uint32_t index; /* position in the heap; UINT32_MAX when not in one */
  int result;     /* what the waiter gets: 0 for a sleep, TT_ETIMEDOUT for a deadline */
  uint64_t seq;   /* arming order: equal deadlines fire in the order they were armed */
  tt__waiter *wt; /* whom to wake (fire == NULL) */
  /* Or, when set, what to run once the timer is due: called on the heap's worker with no lock
   * held, after the timer left the heap; `firing` is set (under the heap's lock) until it
   * returns, so that whoever frees the timer can wait for it. */
  void (*fire)(tt__timer *t, int64_t now);
  _Atomic uint32_t firing;
  uint64_t gen;  /* callback timers: the owner's arming generation, set before each add */
  uint64_t fgen; /* gen when it last left the heap due (under the heap's lock) */
  /* Callback timers left in a heap at shut-down are told through this (NULL: tt__atimer_orphan),
   * outside the heap's lock. */
  void (*orphan)(tt__timer *t);
  tt__timer *fnext; /* due callbacks collected under the lock */
};

/* A heap entry: the timer's key beside it, so that sifting compares without touching timers. */
typedef struct tt__heap_ent {
  int64_t key;
  tt__timer *t;
} tt__heap_ent;

/* A timer heap (src/time/timer.c). A worker has two: its waits' timers (private: only the worker
 * touches it, no lock) and the program's timers, which may be stopped and re-armed from any
 * thread (shared: every operation takes the lock, a leaf never held while a timer's callback runs
 * or across a switch). */
typedef struct tt__timer_heap {
  tt__lock lock;
  bool shared;
  tt__heap_ent *v, *base; /* base: the allocation (v is offset for cache-line alignment) */
  uint32_t n, cap;
  uint32_t reserved;     /* slots promised by tt__timer_reserve */
  _Atomic uint32_t hint; /* n, readable without the lock (a hint for the busy loop) */
  uint64_t seq;
} tt__timer_heap;

/* Adds t. Returns 1 if it is now the earliest timer (a sleeping owner must be woken to re-arm its
 * sleep), 0 otherwise, or TT_ENOMEM. Any thread. */
int tt__timer_add(tt__timer_heap *h, tt__timer *t);
/* Promises one later tt__timer_add_reserved that cannot fail: 0 or TT_ENOMEM. */
int tt__timer_reserve(tt__timer_heap *h);
void tt__timer_add_reserved(tt__timer_heap *h, tt__timer *t);
/* Removes t if it is still in h; returns whether it was. Any thread. */
bool tt__timer_del(tt__timer_heap *h, tt__timer *t);
/* Fires every timer due at now (only the earliest one, if single is set); returns the earliest
 * deadline left, or -1. The heap's worker only. */
int64_t tt__timers_run(tt__timer_heap *h, int64_t now, bool single);
/* The same over both of w's heaps (single: the earliest of both by key); and their earliest
 * deadline, or -1. */
int64_t tt__worker_timers_run(tt__worker *w, int64_t now, bool single);
int64_t tt__worker_timers_next(tt__worker *w);
/* The earliest deadline, or -1. */
int64_t tt__timers_next(tt__timer_heap *h);
/* The heap key for a timer due at `when` armed on w now (the virtual deadline in deterministic
 * mode). */
int64_t tt__timer_key(tt__worker *w, int64_t when, int64_t now);
/* At shut-down: detaches the timers left in the heap (callback timers are told through
 * tt__atimer_orphan) and frees it. */
void tt__timers_free(tt__timer_heap *h);
/* src/time/atimer.c: a program timer left armed when the runtime stops. */
void tt__atimer_orphan(tt__timer *t);

/* Blocks the caller (coroutine or plain thread) on wt until it is woken or the deadline
 * (TT_FOREVER: none) passes, for the wait reason and object given. Precondition: lk is held and
 * wt (tt__waiter_init'ed) is already in the object's wait queue under lk. Returns with lk released
 * and the wait's result. After a result for which tt__wait_self_result() is true, wt is still
 * queued: the caller takes lk again and removes it. After any other result the waker has removed
 * wt and the caller must not touch the object again. */
int tt__wait(tt__waiter *wt, int reason, const void *obj, int64_t deadline, tt__lock *lk);
/* tt__wait for waits hidden by several locks (select): unlock(arg), if not NULL, releases them
 * once the caller's context is saved (or before a plain thread blocks). */
int tt__wait_fn(tt__waiter *wt, int reason, const void *obj, int64_t deadline,
                void (*unlock)(void *), void *arg);

/* ---- Counting --------------------------------------------------------------------------- */

/* Transition counters. Every state change of a coroutine bumps exactly one counter, in the block
 * of the thread that makes the change (a worker's own block, which only that worker writes, or the
 * shared block of plain threads, under a lock). The counters only grow; the counts by state and
 * wait reason are differences of their sums:
 *   runnable = created + woken + yields - runs      running = runs - parks - yields - exited
 *   waiting on r = parked on r - woken from r
 * Because every transition is one increment of one monotonic counter, a reader that collects all
 * blocks twice and finds them unchanged has the values of one instant (no sequence counts are
 * needed, and no transition is ever seen half done). */
enum {
  TT__ST_CREATED,
  TT__ST_RUNS,
  TT__ST_YIELDS,
  TT__ST_EXITED,
  TT__ST_PARK0,                                /* + wait reason */
  TT__ST_WAKE0 = TT__ST_PARK0 + TT_WAIT_COUNT, /* + wait reason */
  TT__NSTAT = TT__ST_WAKE0 + TT_WAIT_COUNT,
};
typedef struct tt__stats {
  _Atomic uint64_t c[TT__NSTAT];
} tt__stats;

/* ---- The runtime ------------------------------------------------------------------------ */

typedef struct tt__stack {
  char *lo; /* usable bottom */
  size_t size;
  uint8_t guarded;
  uint8_t warm;
} tt__stack;

#define TT__RQ_SIZE 256
#define TT__CLAIM 8

enum { TT__PEND_NONE, TT__PEND_PARK, TT__PEND_YIELD, TT__PEND_EXIT };

struct tt__worker {
  /* Owner-only fields. */
  int index;
  tt__coro *cur; /* the running coroutine, NULL in the worker's own context */
  void *g0_sp;   /* the worker's own context while a coroutine runs */
  tt__coro *runnext;
  uint32_t runnext_streak;
  tt__coro *ready_head, *ready_tail; /* started coroutines this worker readied */
  tt__coro *claimed[TT__CLAIM];      /* fresh coroutines taken from the ring in one go */
  uint32_t claimed_head, claimed_n;
  uint32_t tick;
  uint32_t qseq;          /* next queueing sequence number */
  int64_t now;            /* coarse clock, refreshed by the scheduler (and tools/gdb/tether.py's
                             clock for a core's wait times) */
  int64_t vnow;           /* deterministic mode: virtual time, advanced only by firing timers */
  tt__timer_heap timers;  /* waits' timers: this worker's alone */
  tt__timer_heap ptimers; /* the program's timers: shared, locked */
  int pend_kind;          /* the action the next context runs after the switch (finish_switch) */
  tt__coro *pend_co;
  void (*pend_fn)(void *);
  void *pend_arg;
  tt__coro *free_co; /* descriptor free list */
  uint32_t nfree_co;
  tt__stack *stacks; /* pool of default-size stacks */
  uint32_t nstacks, cap_stacks, nwarm, owned_stacks;
  uint32_t cold_upto;       /* stacks[0..cold_upto) are all cold (trimmed or never used) */
  uint64_t id_next, id_end; /* a batch of ids */
  uint64_t rand;
  struct {
    uint32_t head;     /* a victim's ring head when first seen non-empty */
    uint32_t progress; /* and its progress counter */
    int64_t since;     /* when the head was first seen; -1 when not watching */
    int64_t psince;    /* when the progress counter last changed */
  } * steal_obs;       /* per victim, for try_steal */
  pthread_t thread;
  void *altstack;
  size_t altstack_size;
#if defined(TT_SANITIZE_THREAD)
  void *tsan_g0;
#endif
#if defined(TT_SANITIZE_ADDRESS)
  void *asan_fake_stack;
  const void *g0_stack_bottom;
  size_t g0_stack_size;
#endif
  tt__stats stats;
  /* Scheduler figures for /metrics (tt__worker_figures_get): the owner writes them (relaxed load
   * and store: it is their only writer), anyone reads. */
  _Atomic uint64_t fig_steals, fig_sleeps, fig_polls, fig_poll_events;

  /* Shared with other threads. */
  _Alignas(TT_CACHELINE) _Atomic(tt__coro *) inbox; /* started coroutines readied by others */
  /* 1 while asleep on it (a futex word), 2 while asleep in its poller (src/net/poll.h). */
  _Atomic uint32_t sleeping;
  /* The poller (src/net/poll.h): created on first use (published with release), and how many
   * wait on its descriptors. */
  struct tt__poller *_Atomic poller;
  _Atomic uint32_t io_waiters;
  _Alignas(TT_CACHELINE) _Atomic uint32_t rq_head; /* fresh coroutines: stealers advance head */
  _Atomic uint32_t progress; /* bumped every 8 switches and at every spawn (try_steal) */
  _Atomic uint32_t rq_tail;  /* only the owner advances tail */
  _Atomic(tt__coro *) rq[TT__RQ_SIZE];
};

/* Whether w has other coroutines ready to run (owner only; the inbox and ring reads are hints). */
static inline bool tt__worker_has_work(tt__worker *w) {
  return w->runnext || w->ready_head || w->claimed_n ||
         atomic_load_explicit(&w->inbox, memory_order_relaxed) ||
         atomic_load_explicit(&w->rq_head, memory_order_relaxed) !=
             atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
}

typedef struct tt__runtime {
  _Atomic int state; /* 0 stopped, 1 running, 2 shutting down (grace), 3 stopping */
  int procs;
  uint64_t seed;
  size_t stack_size; /* default usable size */
  int64_t grace_ns;
  int64_t grace_end; /* when the shut-down grace period ends (set when fn returns), or 0 */
  int report_fd;
  int blocking_max;         /* the blocking pool's bound at start-up */
  int64_t blocking_idle_ns; /* how long a pool thread stays idle before it exits */
  bool debug_canary;
  int creationstack;     /* TT_DEBUG=creationstack=N: ancestry levels recorded per spawn; 0 none */
  int leakcheck;         /* TT_LEAKCHECK: TT_LEAKCHECK_OFF, _EXIT or _EAGER */
  bool deadlocked;       /* the monitor found the global deadlock: the run ends */
  bool is_main;          /* the run is tt_main's: the process ends with it */
  bool discarding;       /* the end of a run frees the coroutines that never finished */
  int traceback;         /* TT_TRACEBACK: TT__TB_* */
  bool sigquit_continue; /* TT_SIGQUIT=dump: SIGQUIT dumps and the process goes on */
  int guard_mode;        /* 1 auto (budget), 0 never, 2 always */
  bool seed_given;       /* the seed came from the options or TT_SEED */
  bool deterministic;    /* one worker and a given seed: a reproducible schedule */
  bool scan_asym;        /* the scan protocol's barrier is membarrier (see TT__S_*) */
  tt__worker *workers;
  _Atomic int nspinning;
  _Atomic int nsleeping;
  _Atomic int plain_wakers; /* plain threads inside a wake of another worker (sched.c: ready) */
  /* Stop-the-world (tt__stw_begin): stw has TT__STW_REQ while one is requested or held, and
   * TT__STW_STOPPING once the runtime stops (so that pick_local asks one word for both);
   * stw_parked counts the workers parked at the safe point; stw_owner serialises the parties
   * that stop it. */
  _Atomic uint32_t stw;
  _Atomic uint32_t stw_parked;
  _Atomic uint32_t stw_owner;
  /* Fresh coroutines that overflowed a worker's ring or came from plain threads. */
  tt__lock gq_lock;
  tt__coro *gq_head, *gq_tail;
  _Atomic uint32_t gq_len;
  /* Descriptor arenas: chunks never freed until shut-down, so the registry can walk them.
   * tools/gdb/tether.py walks chunks[0..nchunks), CHUNK descriptors each (src/coro/coro.c). */
  tt__lock arena_lock;
  tt__coro **_Atomic chunks;
  _Atomic uint32_t nchunks;
  tt__coro *gfree; /* global descriptor free list (under arena_lock) */
  uint32_t ngfree;
  /* Stack memory. */
  tt__lock stack_lock; /* protects the chunk list below */
  void **stack_chunks;
  size_t nstack_chunks, cap_stack_chunks, stack_chunk_bytes;
  _Atomic int64_t map_budget; /* mappings still available for guard pages */
  _Atomic int unguarded_warned;
  size_t page;
  /* Ids. */
  _Atomic uint64_t next_id;
  _Atomic int64_t peak; /* most coroutines alive at once, sampled (tt_counts.peak) */
  /* Plain threads' counters. */
  tt__lock tstats_lock;
  tt__stats tstats;
  /* The end of the run. */
  int result;
  uint64_t run_id; /* counts the runs of this process, from 1 */
} tt__runtime;

/* TT_TRACEBACK levels (Go's GOTRACEBACK): what a crash prints. */
#define TT__TB_NONE 0   /* the header only */
#define TT__TB_SINGLE 1 /* and the crashing coroutine's stack (the default) */
#define TT__TB_ALL 2    /* and every coroutine's */
#define TT__TB_SYSTEM 3 /* all, with tether's own internal frames shown */
#define TT__TB_CRASH 4  /* system, then re-raise the signal for a core dump */

extern tt__runtime tt__rt;
extern bool tt__rt_debug_canary; /* a copy of tt__rt.debug_canary, for the inline check */

/* Counts one transition (see tt__stats). */
static inline void tt__stats_bump(int idx);

#define TT__STW_REQ 1u
#define TT__STW_STOPPING 2u
/* Stop-the-world (src/sched/sched.c): parks every worker at its safe point — its own context,
 * between two coroutines — so that no coroutine runs except the caller (when it is one). Waits
 * for the workers up to timeout ns; TT_EBUSY when one did not arrive (a coroutine that never
 * yields holds it), TT_ENOTRUNNING when the runtime is not running. One stop at a time: a second
 * caller waits for the first to end. Plain threads go on running (see tt__thread_mut_*). */
int tt__stw_begin(int64_t timeout);
void tt__stw_end(void);

/* The leak monitor (src/leak/monitor.c). tt__monitor_idle: the last worker fell asleep (it looks
 * for a global deadlock). tt__leak_event: with TT_LEAKCHECK=eager, an operation that may have
 * removed the last live way to wake a coroutine (op names it; obj: the object it let go, or NULL;
 * exiting: a coroutine that exits, else the caller makes it) — the monitor proves leaks soon
 * after. tt__sched_progress: a count that grows whenever a coroutine runs. tt__sched_deadlocked:
 * ends the run (tt_main: the process, status 2; tt_run: cancels every coroutine, and tt_run
 * returns TT_EDEADLK once fn has returned). tt__threads_internal: the runtime's own
 * helper threads alive (each counts itself in and out). */
void tt__monitor_idle(void);
void tt__leak_event_slow(const char *op, const void *obj, const tt__coro *exiting);
/* co starts a wait on obj for reason (eager mode records the waits the proof reasons about). */
void tt__leak_event_park(const tt__coro *co, int reason, const void *obj);
static inline void tt__leak_event(const char *op, const void *obj, const tt__coro *exiting) {
  if (TT_UNLIKELY(tt__rt.leakcheck == TT_LEAKCHECK_EAGER))
    tt__leak_event_slow(op, obj, exiting);
}
uint64_t tt__sched_progress(void);
void tt__sched_deadlocked(void);
extern _Atomic int tt__threads_internal;

/* The watchdog (src/watchdog/watchdog.c): its thread, started with the workers and stopped once
 * they are joined; tt__watchdog_wake: a worker ended the state "every worker asleep" (the only
 * scheduler hook: never per switch); the TT_DEBUG=watchdog knob (-1: not given). */
#define TT__WD_REPORTED (1u << 31)
void tt__watchdog_start(void);
void tt__watchdog_stop(void);
void tt__watchdog_wake(void);
void tt__watchdog_knob(int64_t ns);

/* Scheduler hooks. */
void tt__ready(tt__coro *co);                /* WAITING -> RUNNABLE, queue on its worker */
void tt__spawn_enqueue(tt__coro *co);        /* queue a fresh coroutine */
void tt__spawn_enqueue_global(tt__coro *co); /* on the global queue (never yields) */
void tt__worker_wake(tt__worker *w);         /* wakes w if it sleeps */
/* Spawns fn(arg) from scheduler code (a timer's callback): parent as given, nothing inherited,
 * queued globally. 0 or tt_go's errors. */
struct tt__holder;
/* refs (or NULL): a holder table that becomes the child's own (a tt_after_func's references);
 * scope: the leak-check scope the timer was armed in. */
int tt__spawn_from_sched(void (*fn)(void *), void *arg, tt_id parent, void *pc,
                         struct tt__holder *refs, uint64_t scope);
/* The leak-check scope a plain thread has begun (src/leak/verify.c), 0: none; a coroutine's is
 * its tt__coro.scope. */
extern __thread uint64_t tt__tls_scope;
/* The caller's current leak-check scope (a coroutine's or a plain thread's), for objects that
 * start coroutines later (timers). */
uint64_t tt__scope_current(void);
TT_NORETURN void tt__coro_exit(void); /* the running coroutine ends */
void tt__stats_bump_thread(int idx);  /* a plain thread's transition */

uint64_t tt__rand(tt__worker *w);

/* Registry and descriptors (src/coro). */
tt__coro *tt__coro_alloc(tt__worker *w);
void tt__coro_free(tt__worker *w, tt__coro *co);
void tt__coro_release_fields(tt__coro *co);
/* Sync primitives (src/sync/held.c): an exiting coroutine's held locks are marked as held by it
 * (they stay locked) and its list is freed. */
void tt__sync_coro_exit(tt__coro *co);
/* Channel references (src/chan/ref.c): release an exited coroutine's; build (share) or undo
 * (unshare) the ones a child gets at spawn; name the child as the holder. */
void tt__coro_drop_refs(tt__coro *co);
int tt__refs_share(struct tt__holder **out, struct tt_chan *const *share, size_t n, int mode,
                   const char *op);
void tt__refs_unshare(struct tt__holder *h, const tt_go_opts *o);
void tt__holder_set_owner(struct tt__holder *h, tt__coro *co);
int64_t tt__chan_count_live(void); /* channels made and not yet freed, process-wide */
int tt__registry_init(void);
void tt__registry_destroy(void);
/* Clears a coroutine's scan bit (see TT__S_*), letting its worker run it again. */
void tt__scan_release(tt__coro *co);
/* Calls fn on every non-free descriptor, a chunk at a time, each suspended one held still (held
 * true; state is then RUNNABLE or WAITING) while fn runs; one barrier per chunk. */
void tt__registry_walk_frozen(void (*fn)(tt__coro *co, uint32_t state, bool held, void *arg),
                              void *arg);
/* The same over chunks first, first + stride, ... (several walkers share the registry), with
 * stacks: prefetching each held coroutine's saved context ahead of fn (a walk that unwinds). */
void tt__registry_walk_frozen_range(void (*fn)(tt__coro *co, uint32_t state, bool held, void *arg),
                                    void *arg, uint32_t first, uint32_t stride, bool stacks);
/* The heavy side of an asymmetric Dekker pair whose light side (a worker's) is a compiler fence
 * when tt__rt.scan_asym: membarrier, which makes every other thread run a full barrier; a
 * sequentially consistent fence otherwise. Used by scanners and by cancellation. */
void tt__asym_barrier(void);
/* Sets up the scanners' barrier (membarrier registration) once per process. */
void tt__scan_init(void);
/* Calls fn on every non-free descriptor (no scan bit taken). */
void tt__registry_walk(void (*fn)(tt__coro *co, void *arg), void *arg);
/* The same, prefetching each parked coroutine's waiter ahead of fn (the leak proof's walk). */
void tt__registry_walk_waiters(void (*fn)(tt__coro *co, void *arg), void *arg);
void tt__labels_release(tt__labels *l);

/* Stacks (src/coro/stack.c). */
int tt__stacks_init(void);
void tt__stacks_destroy(void);
int tt__stack_bind_slow(tt__worker *w, tt__coro *co);
void tt__stack_unbind_slow(tt__worker *w, tt__coro *co);
void tt__stack_bound(tt__coro *co); /* debug and sanitizer set-up of a freshly bound stack */

/* Binds a stack to co, which is about to run for the first time on w: the most recently freed
 * default-size stack of w's pool when there is one (the common case, inline), else the slow
 * path. 0 or TT_ENOMEM. */
static inline int tt__stack_bind(tt__worker *w, tt__coro *co) {
  if (TT_UNLIKELY(co->stack_req != tt__rt.stack_size || w->nstacks == 0))
    return tt__stack_bind_slow(w, co);
  tt__stack *s = &w->stacks[--w->nstacks];
  w->nwarm -= s->warm;
  if (w->cold_upto > w->nstacks)
    w->cold_upto = w->nstacks;
  co->stack_lo = s->lo;
  co->stack_size = s->size;
  co->stack_guarded = s->guarded;
  co->stack_pooled = 1;
#if defined(TT_SANITIZE_THREAD) || defined(TT_VALGRIND)
  tt__stack_bound(co);
#else
  if (TT_UNLIKELY(tt__rt_debug_canary))
    tt__stack_bound(co);
#endif
  return 0;
}

/* Returns co's stack to w's pool (or unmaps a stack of another size). */
static inline void tt__stack_unbind(tt__worker *w, tt__coro *co) {
  if (co->stack_lo == NULL)
    return;
#if !defined(TT_VALGRIND) && !defined(TT_SANITIZE_ADDRESS)
  if (TT_LIKELY(co->stack_pooled)) {
    /* Room is reserved: a worker's pool can hold every stack it ever mapped. */
    w->stacks[w->nstacks++] = (tt__stack){
        .lo = co->stack_lo, .size = co->stack_size, .guarded = co->stack_guarded, .warm = 1};
    w->nwarm++;
    co->stack_lo = NULL;
    return;
  }
#endif
  tt__stack_unbind_slow(w, co);
}
void tt__stacks_trim(tt__worker *w);
void tt__stack_check_slow(tt__coro *co, const char *sp);
/* The switch-time overflow check for stacks without a guard page (and a cheap extra check for
 * those with one): the stack pointer must still be inside the stack, and with
 * TT_DEBUG=stackcanary=1 the canary page below it must be intact. */
static inline void tt__stack_check(tt__coro *co) {
  const char *sp = (const char *)__builtin_frame_address(0);
  if (TT_UNLIKELY(sp < co->stack_lo) || TT_UNLIKELY(tt__rt_debug_canary))
    tt__stack_check_slow(co, sp);
}
TT_NORETURN void tt__stack_overflow(tt__coro *co, const void *fault, const void *uc);

/* The blocking pool (src/blocking/blocking.c): opened before the workers start; torn down once
 * they are joined, threads still inside a job being given until deadline and then detached. */
void tt__blocking_start(void);
void tt__blocking_stop(int64_t deadline);

/* Knobs (src/util/knobs.c): parses the environment into the runtime; 0 or TT_EINVAL. */
int tt__knobs_load(const tt_run_opts *opts);
/* 0 if size is an acceptable stack size, else TT_EINVAL. */
int tt__check_stack_size(size_t size);

/* Diagnostics (src/diag). */
int tt__signals_install(void);
/* src/diag/trigger.c: the crash handlers (installed by tt__signals_install); SIGQUIT's dump
 * thread; the stacks printed by a fatal error (the caller's) and a stack overflow (from the
 * fault's context uc, or without it when the stack was found past its end at a switch); the
 * shut-down report (every coroutine but self, as Go tracebacks). */
int tt__crash_install(void);
int tt__dumper_start(void);
void tt__dumper_stop(void);
/* The debug endpoint (src/debug/server.c): tt_run's start serves TT_DEBUG_ADDR when it is set;
 * the run's end (tt__dumper_stop, once the state is stopping and before anything is freed) waits
 * for the endpoint's responders that are reading the runtime to be done with it. */
void tt__debug_run_start(void);
void tt__debug_run_end(void);
void tt__fatal_dump(int fd);
void tt__overflow_trace(int fd, tt__coro *co, const void *uc);
void tt__report_leftovers(int fd, tt__coro *self);
/* The calling coroutine's stack (co: the caller, or NULL on a plain thread: the thread's). */
void tt__own_stack(tt__coro *co, uintptr_t *lo, uintptr_t *hi);
int tt__altstack_setup(tt__worker *w);
void tt__altstack_teardown(tt__worker *w);
/* Async-signal-safe writing. */
void tt__write_str(int fd, const char *s);
void tt__write_u64(int fd, uint64_t v);
void tt__write_hex(int fd, uint64_t v);
void tt__write_pc(int fd, const void *pc); /* symbol+off (module) */
void tt__list_coroutines(int fd);
/* Writes "goroutine N [state or wait reason]: name=..." and its creation site, for a coroutine
 * visited by tt__registry_walk_frozen. */
void tt__write_coro(int fd, tt__coro *co, uint32_t state, bool held);

static inline void tt__stats_bump(int idx) {
  tt__worker *w = tt__tls_worker;
  if (TT_LIKELY(w != NULL)) {
    /* Relaxed load and store, no read-modify-write: this worker is the block's only writer;
     * readers only need each counter's own value to be untorn. */
    _Atomic uint64_t *c = &w->stats.c[idx];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return;
  }
  tt__stats_bump_thread(idx);
}

/* One worker's scheduler figures, for /metrics. Racy reads: each figure is true on its own. */
typedef struct tt__worker_figures {
  uint32_t runq;     /* fresh coroutines in its ring (started ones readied to it are not counted) */
  uint64_t switches; /* coroutines it ran (each run: a switch to the coroutine) */
  uint64_t parks;    /* coroutines that parked on it (any wait reason) */
  uint64_t steals;   /* coroutines it stole from other workers' rings */
  uint64_t sleeps;   /* times it went to sleep with nothing to run */
  uint64_t polls;    /* times it polled its I/O poller */
  uint64_t poll_events; /* descriptor events those polls returned */
  uint32_t timers;      /* timers armed in its heaps (waits' deadlines and program timers) */
  uint32_t io_waiters;  /* coroutines and plain threads waiting on descriptors it polls */
} tt__worker_figures;
/* Fills *out for worker i: 0, or TT_EINVAL (i out of range) or TT_ENOTRUNNING. Any thread. */
int tt__worker_figures_get(int i, tt__worker_figures *out);
static inline void tt__fig_bump(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* ---- Tracing (src/trace) ----------------------------------------------------------------- */

/* Set while a trace records (tt_trace_start, the flight recorder, TT_TRACE, the endpoint). Each
 * hook site tests it with TT__TRACE_ON(): one relaxed load and a predictable branch. */
extern _Atomic int tt__trace_on;
#define TT__TRACE_ON() TT_UNLIKELY(atomic_load_explicit(&tt__trace_on, memory_order_relaxed))
void tt__trace_create(const tt__coro *co); /* published, before queued */
void tt__trace_run(const tt__coro *co);    /* marked running */
void tt__trace_block(const tt__coro *co, int reason, const void *obj); /* about to park */
void tt__trace_unblock(const tt__coro *co);                            /* readied by tt__self() */
void tt__trace_exit(const tt__coro *co);                               /* its fn returned */
void tt__trace_name(const tt__coro *co);                               /* tt_name_set */
void tt__trace_leak(const tt__coro *co, int verdict);                  /* a new leak verdict */
void tt__trace_report(void); /* a leak or the deadlock was reported: the flight recorder's dump */
void tt__trace_run_start(void); /* TT_TRACE */
void tt__trace_run_end(void);

/* Clock. */
static inline int64_t tt__clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
