/* SPDX-License-Identifier: MIT */
/* The M:N scheduler: workers, run queues, switching, parking and waking, start-up and shut-down.
 *
 * Design
 * ------
 * Each worker is a thread with its own run queues, timer heap, descriptor and stack pools. A
 * coroutine is bound to the worker that first runs it and never moves: C code caches TLS
 * addresses (glibc declares __errno_location const), so a coroutine resumed on another thread
 * would write another thread's errno. Only coroutines that have not started are shared:
 *
 *   runnext   one slot, owner only: the coroutine just spawned or woken by the running one; it
 *             runs next, so producer/consumer pairs stay on one worker and in cache (Go's
 *             runnext). Never stolen. A streak limit keeps two coroutines handing the slot back
 *             and forth from starving the rest.
 *   ready     owner-only FIFO of started coroutines made runnable by this worker.
 *   inbox     lock-free LIFO of started coroutines made runnable by other threads; the owner
 *             takes it whole and appends it (reversed, so FIFO) to ready.
 *   rq        Go's runq: a 256-slot ring of fresh coroutines; the owner pushes and pops, idle
 *             workers steal half, but only from a stuck owner (see try_steal: a ring its owner
 *             will soon serve is cheaper left alone). Overflow goes to the global
 *             queue (locked, batched). A spawner that fills its ring yields to the children
 *             (back-pressure), so a spawning loop does not pile up descriptors.
 *
 * Switching is direct: a coroutine that parks, yields or exits picks the next coroutine from its
 * worker's local queues and switches straight to it; only when there is none does it switch to
 * the worker's own context (the thread's original stack, "g0"), which looks further (global queue,
 * stealing, timers) and sleeps. Whatever the leaving coroutine still needs done once its context is
 * saved — release the lock that hides its waiter, requeue it, free its stack — is recorded in
 * w->pend_* and run by the context that resumes (finish_switch), as Go's gopark runs its unlockf
 * on g0. That is what makes a park race-free: no waker can see the waiter before the context it
 * must resume is complete.
 *
 * Waking is decided by the waiter's token (see tt__waiter): several wakers may race (the object, a
 * timer, a cancellation); the one that claims the token wins and alone commits the wake (calls
 * tt__ready), after letting go of the object.
 *
 * Sleeping workers: a worker with nothing to do spins briefly looking for work (every idle worker
 * may: see find_runnable), then sets w->sleeping and, after re-checking every source of work,
 * sleeps on it with a futex until its next timer — or, while anyone waits on a descriptor
 * registered with its poller, in the poller (epoll), with the sleeping word at 2, so that one
 * sleep ends at a timer, an I/O event or a wake-up (src/net/poll.h). A thread that queues a started
 * coroutine on another worker's inbox then wakes that worker if it sleeps; the two sides use
 * sequentially consistent operations on the inbox and the sleeping word, so one of them always sees
 * the other (Dekker). A fresh coroutine queued while every other worker sleeps wakes one of them;
 * losing that race only delays the coroutine until its own worker gets to it, never loses it.
 *
 * Lock order: gq_lock, arena_lock and stack_lock are leaves: nothing else is taken while one is
 * held, and none is held across a switch.
 *
 * Rejected: a global run queue (contended on every spawn), migrating started coroutines (breaks
 * TLS, see above), switching through g0 every time (doubles the cost of every hand-off),
 * eventfd for every sleep (a futex on the worker's own word is cheaper and needs no descriptor:
 * only a worker whose descriptors are waited on sleeps in its poller).
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "net/poll.h"
#include "leak/leak_int.h"
#include "signal/signal_int.h"

#if defined(TT_SANITIZE_ADDRESS)
#include <sanitizer/asan_interface.h>
#endif
#if defined(TT_SANITIZE_THREAD)
#include <sanitizer/tsan_interface.h>
#endif

tt__runtime tt__rt;
__thread tt__worker *tt__tls_worker __attribute__((tls_model("initial-exec")));

enum { RT_STOPPED = 0, RT_RUNNING = 1, RT_GRACE = 2, RT_STOPPING = 3 };

#define RUNNEXT_STREAK 64
#define SPIN_NS (50 * TT_USEC)
#define STEAL_AFTER (20 * TT_USEC)  /* a victim that has not switched for this long is stuck */
#define STEAL_STALE (500 * TT_USEC) /* a ring not served for this long is stolen from anyway */
#define CLAIM TT__CLAIM             /* fresh coroutines claimed at once from a long ring */

uint64_t tt__rand(tt__worker *w) {
  /* xorshift64*: cheap, and seeded from the run's seed so TT_PROCS=1 runs repeat. */
  uint64_t x = w->rand;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  w->rand = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* ---- Counting ---------------------------------------------------------------------------- */

void tt__stats_bump_thread(int idx) {
  tt__lock_acquire(&tt__rt.tstats_lock);
  _Atomic uint64_t *c = &tt__rt.tstats.c[idx];
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
  tt__lock_release(&tt__rt.tstats_lock);
}

/* ---- Sanitizer annotations (compiled out of normal builds) -------------------------------- */

static inline void san_before(tt__worker *w, tt__coro *from, tt__coro *to, bool dying) {
#if defined(TT_SANITIZE_ADDRESS)
  void **fake = dying ? NULL : (from ? &from->asan_fake_stack : &w->asan_fake_stack);
  if (to)
    __sanitizer_start_switch_fiber(fake, to->stack_lo, to->stack_size);
  else
    __sanitizer_start_switch_fiber(fake, w->g0_stack_bottom, w->g0_stack_size);
#endif
#if defined(TT_SANITIZE_THREAD)
  __tsan_switch_to_fiber(to ? to->tsan_fiber : w->tsan_g0, 0);
#endif
  (void)w, (void)from, (void)to, (void)dying;
}

static inline void san_after(tt__worker *w, tt__coro *self) {
#if defined(TT_SANITIZE_ADDRESS)
  __sanitizer_finish_switch_fiber(self ? self->asan_fake_stack : w->asan_fake_stack, NULL, NULL);
#endif
  (void)w, (void)self;
}

/* ---- Queues ------------------------------------------------------------------------------ */

static void gq_push_list(tt__coro *head, tt__coro *tail, uint32_t n) {
  tt__lock_acquire(&tt__rt.gq_lock);
  tail->next = NULL;
  if (tt__rt.gq_tail)
    tt__rt.gq_tail->next = head;
  else
    tt__rt.gq_head = head;
  tt__rt.gq_tail = tail;
  atomic_fetch_add_explicit(&tt__rt.gq_len, n, memory_order_seq_cst);
  tt__lock_release(&tt__rt.gq_lock);
}

/* The ring is full: move its older half and co to the global queue. Returns false if a stealer
 * made room meanwhile (then push again). */
static TT_NOINLINE bool rq_overflow(tt__worker *w, tt__coro *co, uint32_t h) {
  uint32_t n = TT__RQ_SIZE / 2;
  tt__coro *batch[TT__RQ_SIZE / 2];
  for (uint32_t i = 0; i < n; i++)
    batch[i] = atomic_load_explicit(&w->rq[(h + i) % TT__RQ_SIZE], memory_order_relaxed);
  /* release on success: our slot reads happen before stealers/owner may overwrite them. */
  if (!atomic_compare_exchange_strong_explicit(&w->rq_head, &h, h + n, memory_order_release,
                                               memory_order_relaxed))
    return false;
  for (uint32_t i = 0; i + 1 < n; i++)
    batch[i]->next = batch[i + 1];
  batch[n - 1]->next = co;
  gq_push_list(batch[0], co, n + 1);
  return true;
}

/* Pushes a fresh coroutine on the owner's ring; on overflow moves half the ring and co to the
 * global queue. Owner only. */
static void rq_push(tt__worker *w, tt__coro *co) {
  for (;;) {
    /* acquire: pairs with the stealers' release CAS of head, so their reads of the slots are
     * done before the owner reuses them. */
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    if (TT_LIKELY(t - h < TT__RQ_SIZE)) {
      /* relaxed: qseq is only a fairness hint, read racily by the owner's pick. */
      atomic_store_explicit(&co->qseq, w->qseq++, memory_order_relaxed);
      atomic_store_explicit(&w->rq[t % TT__RQ_SIZE], co, memory_order_relaxed);
      /* release: a stealer that sees the new tail sees the slot. */
      atomic_store_explicit(&w->rq_tail, t + 1, memory_order_release);
      return;
    }
    if (rq_overflow(w, co, h))
      return;
  }
}

/* Takes the oldest fresh coroutine of w's ring. It claims up to CLAIM at once (never more than
 * half of what waits) into an owner-only batch, one compare-and-swap for all of them: those few
 * are no longer stealable, but at least as many remain in the ring for idle workers. Owner
 * only. */
static tt__coro *rq_pop(tt__worker *w) {
  if (w->claimed_head < w->claimed_n)
    return w->claimed[w->claimed_head++];
  for (;;) {
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    uint32_t n = t - h;
    if (n == 0)
      return NULL;
    /* Half of what waits, at most CLAIM: the rest stays stealable. */
    n = n / 2 > CLAIM ? CLAIM : n / 2 > 0 ? n / 2 : 1;
    for (uint32_t i = 0; i < n; i++)
      w->claimed[i] = atomic_load_explicit(&w->rq[(h + i) % TT__RQ_SIZE], memory_order_relaxed);
    /* release: as in rq_push; competes with stealers for the same slots. */
    if (atomic_compare_exchange_strong_explicit(&w->rq_head, &h, h + n, memory_order_release,
                                                memory_order_relaxed)) {
      w->claimed_n = n;
      w->claimed_head = 1;
      return w->claimed[0];
    }
  }
}

/* Steals half of victim's ring into w's (empty) ring and returns one of them to run. */
static tt__coro *rq_steal(tt__worker *w, tt__worker *v) {
  tt__coro *batch[TT__RQ_SIZE / 2];
  uint32_t n;
  for (;;) {
    uint32_t h = atomic_load_explicit(&v->rq_head, memory_order_acquire);
    /* acquire: the slots up to tail were written before tail was published. */
    uint32_t t = atomic_load_explicit(&v->rq_tail, memory_order_acquire);
    n = t - h;
    n -= n / 2;
    if (n == 0)
      return NULL;
    if (n > TT__RQ_SIZE / 2)
      continue; /* read head and tail at different moments; retry */
    for (uint32_t i = 0; i < n; i++)
      batch[i] = atomic_load_explicit(&v->rq[(h + i) % TT__RQ_SIZE], memory_order_relaxed);
    if (atomic_compare_exchange_strong_explicit(&v->rq_head, &h, h + n, memory_order_release,
                                                memory_order_relaxed))
      break;
  }
  for (uint32_t i = 1; i < n; i++)
    rq_push(w, batch[i]);
  return batch[0];
}

/* Takes up to a fair share of the global queue: one to run, the rest onto w's ring. */
static tt__coro *gq_take(tt__worker *w) {
  if (atomic_load_explicit(&tt__rt.gq_len, memory_order_relaxed) == 0)
    return NULL;
  tt__lock_acquire(&tt__rt.gq_lock);
  uint32_t len = atomic_load_explicit(&tt__rt.gq_len, memory_order_relaxed);
  uint32_t n = len / (uint32_t)tt__rt.procs + 1;
  if (n > len)
    n = len;
  if (n > TT__RQ_SIZE / 2)
    n = TT__RQ_SIZE / 2;
  tt__coro *first = NULL, *rest = NULL;
  if (n > 0) {
    first = tt__rt.gq_head;
    tt__coro *last = first;
    for (uint32_t i = 1; i < n; i++)
      last = last->next;
    tt__rt.gq_head = last->next;
    if (tt__rt.gq_head == NULL)
      tt__rt.gq_tail = NULL;
    last->next = NULL;
    rest = first->next;
    atomic_fetch_sub_explicit(&tt__rt.gq_len, n, memory_order_relaxed);
  }
  tt__lock_release(&tt__rt.gq_lock);
  while (rest) {
    tt__coro *nx = rest->next;
    rq_push(w, rest);
    rest = nx;
  }
  return first;
}

static void ready_push(tt__worker *w, tt__coro *co) {
  atomic_store_explicit(&co->qseq, w->qseq++, memory_order_relaxed);
  co->next = NULL;
  if (w->ready_tail)
    w->ready_tail->next = co;
  else
    w->ready_head = co;
  w->ready_tail = co;
}

static tt__coro *ready_pop(tt__worker *w) {
  tt__coro *co = w->ready_head;
  w->ready_head = co->next;
  if (w->ready_head == NULL)
    w->ready_tail = NULL;
  return co;
}

static void drain_inbox(tt__worker *w) {
  /* acquire: the pushers' fields (co->next) are visible. */
  tt__coro *list = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
  tt__coro *rev = NULL;
  while (list) {
    tt__coro *nx = list->next;
    list->next = rev;
    rev = list;
    list = nx;
  }
  while (rev) {
    tt__coro *nx = rev->next;
    ready_push(w, rev);
    rev = nx;
  }
}

/* The store-then-load of the sleep handshake (a worker stores its sleeping flag and then looks
 * for work; a waker publishes work and then looks at the flag) is ordered by seq_cst alone in C11,
 * and aarch64 hardware keeps a store-release before a later load-acquire (stlr, ldar). qemu-user on
 * an x86 host does not: it lets the store sit in the host's store buffer past the load, and a
 * worker then slept with coroutines in its inbox (the model test, under load). A full fence on
 * aarch64 (dmb ish: tens of cycles, on the sleep path and on a cross-worker wake) closes it there;
 * x86's seq_cst store is already a full barrier. */
static inline void sleep_fence(void) {
#if defined(__aarch64__)
  atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* Ends the sleep of w, whose sleeping word the caller just exchanged from `was` to 0. */
static inline void wake_sleeper(tt__worker *w, uint32_t was) {
  if (was == 1)
    tt__futex_wake(&w->sleeping, 1);
  else if (was == 2)
    tt__pb_wake(w); /* asleep in its poller */
}

/* Wakes w if it sleeps. Precondition: the work for it was published with a seq_cst operation. */
static void wake_worker(tt__worker *w) {
  sleep_fence();
  if (atomic_load_explicit(&w->sleeping, memory_order_seq_cst))
    wake_sleeper(w, atomic_exchange_explicit(&w->sleeping, 0, memory_order_seq_cst));
}

/* Fresh work appeared: wake one sleeping worker. With must unset (the spawner's own worker will
 * get to the work anyway, so a missed wake only delays it) nobody is woken while a worker spins
 * or none sleeps, judged from relaxed counters. With must set (the work sits in the global queue,
 * published with a seq_cst operation and a fence), the sleeping flags are read sequentially
 * consistently, the other half of a sleeping worker's store and re-check. */
static void wake_idle(bool must) {
  if (!must && (atomic_load_explicit(&tt__rt.nsleeping, memory_order_relaxed) == 0 ||
                atomic_load_explicit(&tt__rt.nspinning, memory_order_relaxed) != 0))
    return;
  if (must)
    sleep_fence();
  for (int i = 0; i < tt__rt.procs; i++) {
    tt__worker *v = &tt__rt.workers[i];
    uint32_t was;
    if (atomic_load_explicit(&v->sleeping, must ? memory_order_seq_cst : memory_order_relaxed) &&
        (was = atomic_exchange_explicit(&v->sleeping, 0, memory_order_seq_cst)) != 0) {
      wake_sleeper(v, was);
      return;
    }
  }
}

/* Tells idle workers that w is making progress (see try_steal). Owner only. */
static inline void progress_bump(tt__worker *w) {
  atomic_store_explicit(&w->progress, atomic_load_explicit(&w->progress, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

/* Puts co in w's runnext slot, moving the previous occupant to the back of its queue. */
static void runnext_put(tt__worker *w, tt__coro *co) {
  tt__coro *old = w->runnext;
  w->runnext = co;
  if (old) {
    if (old->sp == NULL)
      rq_push(w, old);
    else
      ready_push(w, old);
  }
}

void tt__spawn_enqueue(tt__coro *co) {
  tt__worker *w = tt__tls_worker;
  if (w != NULL && w->cur != NULL) {
    runnext_put(w, co);
    /* A spawner is not stuck: without this, a coroutine that spawns a pipeline on a cold start
     * (page faults, first allocations: tens of microseconds without a switch) lost its first
     * children to an idle worker, for good. The line is the ring's, which the push just wrote. */
    progress_bump(w);
    wake_idle(false);
    /* Back-pressure: a coroutine that spawns faster than the workers run its children would pile
     * up descriptors (a page fault per ~20 of them) and overflow into the global queue. When the
     * ring is full, let the queued children run first (the spawner is requeued behind them;
     * other workers can still steal them meanwhile). */
    if (atomic_load_explicit(&w->rq_tail, memory_order_relaxed) -
            atomic_load_explicit(&w->rq_head, memory_order_relaxed) >=
        TT__RQ_SIZE)
      tt_yield();
    return;
  }
  tt__spawn_enqueue_global(co);
}

void tt__spawn_enqueue_global(tt__coro *co) {
  /* A plain thread, a worker's own context or a timer's callback: the global queue. seq_cst on
   * gq_len (in gq_push_list) pairs with a sleeping worker's seq_cst re-check of it. */
  gq_push_list(co, co, 1);
  atomic_thread_fence(memory_order_seq_cst);
  wake_idle(true);
}

void tt__worker_wake(tt__worker *w) { wake_worker(w); }

/* Readies co: on its own worker into runnext (or, fifo, behind what is queued), else into its
 * worker's inbox. */
static void ready(tt__coro *co, bool fifo) {
  TT_ASSERT(atomic_load_explicit(&co->status, memory_order_relaxed) == TT__S_WAITING);
  if (TT__TRACE_ON()) /* tracing: first, so the wake's time precedes the run's */
    tt__trace_unblock(co);
  /* The claimed waker alone moves co now, so a plain store does; a scanner holding co still is
   * undisturbed (its bit is in another word), and the worker that picks co up waits for it.
   * release: what the waker wrote before the wake (the wait's result) is visible to a scanner;
   * the coroutine itself gets it through the queue it is put on. */
  atomic_store_explicit(&co->status, TT__S_RUNNABLE, memory_order_release);
  tt__stats_bump(TT__ST_WAKE0 + co->wait_reason);
  tt__worker *w = co->w, *me = tt__tls_worker;
  if (w == me) {
    if (fifo)
      ready_push(w, co);
    else
      runnext_put(w, co);
    return;
  }
  /* Another worker's coroutine: its inbox. seq_cst on the push pairs with the worker's seq_cst
   * store of w->sleeping and re-check of the inbox before it sleeps. */
  /* A plain thread's wake may let the run end (its coroutine returns, tt_run frees the workers)
   * before wake_worker has looked at w: counted, and the end of the run waits for the count to
   * drain (runtime_free). seq_cst: the count is up before the push that lets anyone run. */
  if (me == NULL)
    atomic_fetch_add_explicit(&tt__rt.plain_wakers, 1, memory_order_seq_cst);
  tt__coro *head = atomic_load_explicit(&w->inbox, memory_order_relaxed);
  do
    co->next = head;
  while (!atomic_compare_exchange_weak_explicit(&w->inbox, &head, co, memory_order_seq_cst,
                                                memory_order_relaxed));
  wake_worker(w);
  if (me == NULL) /* release: our reads of w happen before the end of the run frees it */
    atomic_fetch_sub_explicit(&tt__rt.plain_wakers, 1, memory_order_release);
}

void tt__ready(tt__coro *co) { ready(co, false); }

void tt__wake_commit(tt__waiter *wt) {
  tt__coro *co = wt->co;
  if (co) {
    tt__ready(co); /* co cannot run, and so wt cannot die, before this */
    return;
  }
  /* release: the thread sees everything the waker did; it may return (and wt die) at once. */
  atomic_store_explicit(&wt->released, 1, memory_order_release);
  tt__futex_wake(&wt->released, 1); /* at worst a spurious wake of whatever reuses the address */
}

void tt__sched_dump(FILE *f) {
  /* Racy reads, for a post-mortem: every worker's queues and sleeping flag. */
  fprintf(f, "scheduler: %d workers, %d sleeping, %d spinning, global queue %u\n", tt__rt.procs,
          atomic_load(&tt__rt.nsleeping), atomic_load(&tt__rt.nspinning),
          (unsigned)atomic_load(&tt__rt.gq_len));
  for (int i = 0; i < tt__rt.procs; i++) {
    tt__worker *w = &tt__rt.workers[i];
    tt__coro *cur = w->cur, *rn = w->runnext, *in = atomic_load(&w->inbox);
    fprintf(f, "  worker %d: sleeping %u, cur %llu, runnext %llu, inbox head %llu, ready", i,
            (unsigned)atomic_load(&w->sleeping), cur ? (unsigned long long)cur->id : 0ULL,
            rn ? (unsigned long long)rn->id : 0ULL, in ? (unsigned long long)in->id : 0ULL);
    int n = 0;
    for (tt__coro *c = w->ready_head; c && n < 8; c = c->next, n++)
      fprintf(f, " %llu", (unsigned long long)c->id);
    fprintf(f, "%s, claimed %u/%u, ring %u..%u, progress %u, tick %u\n", n ? "" : " -",
            w->claimed_head, w->claimed_n, (unsigned)atomic_load(&w->rq_head),
            (unsigned)atomic_load(&w->rq_tail), (unsigned)atomic_load(&w->progress), w->tick);
  }
}

bool tt__wake_fifo(tt__waiter *wt, int result) {
  if (!tt__wake_claim(wt, result))
    return false;
  /* Behind what is queued rather than in runnext, which the next wake of a batch would take
   * over (running the batch backwards). */
  if (wt->co)
    ready(wt->co, true);
  else
    tt__wake_commit(wt);
  return true;
}

bool tt__wake(tt__waiter *wt, int result) {
  if (!tt__wake_claim(wt, result))
    return false;
  tt__wake_commit(wt);
  return true;
}

/* ---- Switching ----------------------------------------------------------------------------- */

/* Every coroutine stack's bottom frame (the diagnostics hide it, as Go hides goexit). */
void tt__coro_entry(void);

/* RUNNABLE -> RUNNING, waiting out a scanner that holds the coroutine still: the worker's half
 * of the scan protocol (see TT__S_* in internal.h). */
static void mark_running(tt__coro *co) {
  TT_ASSERT(atomic_load_explicit(&co->status, memory_order_relaxed) == TT__S_RUNNABLE);
  for (;;) {
    if (TT_LIKELY(tt__rt.scan_asym)) {
      /* A plain store and load: the scanner's membarrier supplies the barrier between them.
       * The signal fence keeps the compiler from swapping them. */
      atomic_store_explicit(&co->status, TT__S_RUNNING, memory_order_relaxed);
      atomic_signal_fence(memory_order_seq_cst);
    } else {
      atomic_store_explicit(&co->status, TT__S_RUNNING, memory_order_seq_cst);
    }
    /* acquire (seq_cst in the symmetric protocol): a scanner's reads of the coroutine, released
     * with the bit, happen before we run it. */
    if (TT_LIKELY(atomic_load_explicit(&co->scan, tt__rt.scan_asym ? memory_order_acquire
                                                                   : memory_order_seq_cst) == 0))
      break;
    /* A scanner holds it (or is about to look): step back and wait for it, microseconds. */
    atomic_store_explicit(&co->status, TT__S_RUNNABLE, memory_order_release);
    uint32_t spins = 0;
    while (atomic_load_explicit(&co->scan, memory_order_acquire))
      tt__spin_step(&spins);
  }
  tt__stats_bump(TT__ST_RUNS);
  if (TT__TRACE_ON()) /* tracing */
    tt__trace_run(co);
}

/* Marks co running on w, binding a stack first if it has never run. */
static void prepare_run(tt__worker *w, tt__coro *co) {
  TT_DASSERT(co->w == w || co->sp == NULL);
  /* Running first, then the stack: a scanner may be reading a fresh coroutine's fields until
   * mark_running has waited it out. */
  mark_running(co);
  if (co->sp == NULL) {
    if (tt__stack_bind(w, co) != 0)
      tt__fatal("out of memory: cannot allocate a coroutine stack");
    /* relaxed atomic: a snapshot's capture reads w of a running coroutine (capture.c). */
    __atomic_store_n(&co->w, w, __ATOMIC_RELAXED);
    co->sp = tt__ctx_make(co->stack_lo + co->stack_size, tt__coro_entry);
  }
}

/* Runs the action the previous context left for us once its context was saved. */
static void finish_switch(tt__worker *w) {
  int kind = w->pend_kind;
  tt__coro *co = w->pend_co;
  w->pend_kind = TT__PEND_NONE;
  switch (kind) {
  case TT__PEND_NONE:
    return;
  case TT__PEND_PARK: {
    TT_DASSERT(atomic_load_explicit(&co->status, memory_order_relaxed) == TT__S_RUNNING);
    /* release: the context saved by the switch is visible to scanners that take the scan bit. */
    atomic_store_explicit(&co->status, TT__S_WAITING, memory_order_release);
    tt__stats_bump(TT__ST_PARK0 + co->wait_reason);
    tt__waiter *wt = co->waiter;
    if (w->pend_fn)
      w->pend_fn(w->pend_arg);
    /* A cancellation that saw co still running left it to us: Dekker between our store of
     * the state and load of co->cancelled, and the canceller's store of co->cancelled and load
     * of the state. The barrier is asymmetric, as in the scan protocol: a compiler fence here
     * (every park pays it; an mfence would cost ~10 ns) and tt__asym_barrier in the canceller;
     * sequentially consistent fences on both sides without membarrier. */
    if (TT_LIKELY(tt__rt.scan_asym))
      atomic_signal_fence(memory_order_seq_cst);
    else
      atomic_thread_fence(memory_order_seq_cst);
    if (tt__cancel_pending(atomic_load_explicit(&co->cancelled, memory_order_relaxed)))
      tt__wake(wt, TT_ECANCELED);
    return;
  }
  case TT__PEND_YIELD:
    atomic_store_explicit(&co->status, TT__S_RUNNABLE, memory_order_release);
    tt__stats_bump(TT__ST_YIELDS);
    ready_push(w, co);
    return;
  case TT__PEND_EXIT:
#if defined(TT_SANITIZE_THREAD)
    __tsan_destroy_fiber(co->tsan_fiber);
    co->tsan_fiber = NULL;
#endif
    tt__stack_unbind(w, co);
    tt__stats_bump(TT__ST_EXITED);
    tt__coro_free(w, co);
    return;
  }
}

/* Whether the head of w's ring was queued before co (the head of the ready list): the two queues
 * are served in the order their entries were queued, so neither starves the other. */
static bool rq_older(tt__worker *w, tt__coro *co) {
  tt__coro *c;
  if (w->claimed_head < w->claimed_n) {
    c = w->claimed[w->claimed_head];
  } else {
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_acquire);
    if (atomic_load_explicit(&w->rq_tail, memory_order_relaxed) == h)
      return false;
    c = atomic_load_explicit(&w->rq[h % TT__RQ_SIZE], memory_order_relaxed);
  }
  uint32_t cs = atomic_load_explicit(&c->qseq, memory_order_relaxed);
  return (int32_t)(cs - atomic_load_explicit(&co->qseq, memory_order_relaxed)) < 0;
}

/* pick_local's less common half: the streak limit reached or runnext empty. */
static tt__coro *pick_rest(tt__worker *w) {
  tt__coro *co;
  /* The streak limit yields to both local queues: a pair handing runnext back and forth must
   * not starve the ready list, nor the ring (whose untouched head would also invite a steal). */
  if (w->runnext && !w->ready_head && w->claimed_head == w->claimed_n &&
      atomic_load_explicit(&w->rq_head, memory_order_relaxed) ==
          atomic_load_explicit(&w->rq_tail, memory_order_relaxed)) {
    co = w->runnext;
    w->runnext = NULL;
    w->runnext_streak = 1; /* nothing else waits: a new streak */
    return co;
  }
  w->runnext_streak = 0;
  if ((co = w->ready_head) != NULL && !rq_older(w, co))
    return ready_pop(w);
  if ((co = rq_pop(w)) != NULL)
    return co;
  if (w->ready_head)
    return ready_pop(w);
  if ((co = w->runnext) != NULL) { /* the ring was raced empty by a thief */
    w->runnext = NULL;
    w->runnext_streak = 1;
    return co;
  }
  return gq_take(w);
}

/* Picks the next coroutine from w's own queues without blocking, or NULL. Owner only. */
static tt__coro *pick_local(tt__worker *w) {
  /* The runtime stops, or the world is to stop: every switch goes through our own context, which
   * leaves or parks (one load for both: see TT__STW_*). */
  if (TT_UNLIKELY(atomic_load_explicit(&tt__rt.stw, memory_order_relaxed)))
    return NULL;
  uint32_t tick = ++w->tick;
  tt__coro *co;
  if (TT_UNLIKELY((tick & 7) == 0)) {
    /* Idle workers see we are not stuck (try_steal). Every 8th switch: a thief reads the line
     * about once a microsecond while it spins. */
    progress_bump(w);
    if ((tick & 63) == 0) {
      /* The coarse clock (blocked-since times) stays within 64 switches of the truth; due
       * timers run even while the worker is busy. */
      w->now = tt__clock();
      if (!tt__rt.deterministic) {
        if (w->pend_kind == TT__PEND_PARK && w->pend_fn != NULL) {
          /* A park in progress still holds the locks its commit will release (a channel's,
           * say), and a program timer's callback takes a channel's lock: run only the waits'
           * timers, which take none, and if a program timer is due, go through our own
           * context, which runs it once the park's commit is done. */
          tt__timers_run(&w->timers, w->now, false);
          int64_t due = tt__timers_next(&w->ptimers);
          if (due >= 0 && due <= w->now)
            return NULL;
        } else {
          tt__worker_timers_run(w, w->now, false);
          /* Descriptors that became ready while we were busy. */
          if (TT_UNLIKELY(atomic_load_explicit(&w->io_waiters, memory_order_relaxed)))
            tt__poller_poll_now(w);
        }
      }
    } else if ((tick & 63) == 32 && atomic_load_explicit(&tt__rt.gq_len, memory_order_relaxed) &&
               (co = gq_take(w)) != NULL) {
      /* Now and then serve the global queue first, so it cannot starve. (tick & 63) == 32
       * rather than Go's tick % 61: a division costs more than the rest of the pick; offset from
       * the timer poll so the two don't coincide.) */
      return co;
    }
  }
  if (atomic_load_explicit(&w->inbox, memory_order_relaxed))
    drain_inbox(w);
  /* The common case: what was just spawned or woken runs next. */
  if ((co = w->runnext) != NULL && w->runnext_streak < RUNNEXT_STREAK) {
    w->runnext = NULL;
    w->runnext_streak++;
    return co;
  }
  return pick_rest(w);
}

/* Switches from the current context (co, or w's own when co is NULL) to next (or to w's own
 * context when next is NULL), and on return finishes whatever the previous context left. */
static void switch_away(tt__worker *w, tt__coro *co, tt__coro *next, bool dying) {
  TT_DASSERT(w == tt__tls_worker && w->cur == co && next != co);
  void **save = co ? &co->sp : &w->g0_sp;
  void *to;
  if (next) {
    prepare_run(w, next);
    to = next->sp;
  } else {
    to = w->g0_sp;
  }
  w->cur = next;
  san_before(w, co, next, dying);
  tt__switch(save, to);
  /* Resumed: on the same worker, since nothing migrates once started. */
  san_after(w, co);
  finish_switch(w);
}

void tt__coro_entry(void) {
  tt__worker *w = tt__tls_worker;
  tt__coro *co = w->cur;
  san_after(w, co);
  finish_switch(w);
  co->fn(co->arg);
  tt__coro_exit();
}

void tt__coro_exit(void) {
  tt__worker *w = tt__tls_worker;
  tt__coro *co = w->cur;
  tt__stack_check(co);
  if (TT__TRACE_ON()) /* tracing */
    tt__trace_exit(co);
  tt__coro_release_fields(co);
  tt__coro *next = pick_local(w);
#if !defined(TT_SANITIZE_ADDRESS) && !defined(TT_SANITIZE_THREAD) && !defined(TT_VALGRIND)
  if (next && next->sp == NULL && co->stack_pooled && next->stack_req == co->stack_size &&
      !tt__rt_debug_canary) {
    /* The next coroutine has never run and needs a stack of this size: hand it this one in
     * place. No registers to save (co is dead), no pool round trip, no context to build, and the
     * stack's lines are the warmest there are. (Sanitizer and Valgrind builds keep to the
     * general path: their fiber bookkeeping wants a switch.) */
    mark_running(next); /* first: a scanner may be reading next's fields until then */
    next->stack_lo = co->stack_lo;
    next->stack_size = co->stack_size;
    next->stack_guarded = co->stack_guarded;
    next->stack_pooled = 1;
    co->stack_lo = NULL;
    tt__stats_bump(TT__ST_EXITED);
    tt__coro_free(w, co);
    __atomic_store_n(&next->w, w, __ATOMIC_RELAXED); /* read by captures, as in prepare_run */
    next->sp = next->stack_lo + next->stack_size;    /* started: never stolen, never rebound */
    w->cur = next;
    tt__ctx_restart(next->stack_lo + next->stack_size, tt__coro_entry);
  }
#endif
  w->pend_kind = TT__PEND_EXIT;
  w->pend_co = co;
  switch_away(w, co, next, true);
  __builtin_unreachable();
}

int tt__park(tt__waiter *wt, int reason, const void *obj, void (*commit)(void *), void *arg) {
  tt__worker *w = tt__tls_worker;
  tt__coro *co = w->cur;
  tt__stack_check(co);
  if (TT_UNLIKELY(tt__rt.leakcheck == TT_LEAKCHECK_EAGER))
    tt__leak_event_park(co, reason, obj);
  if (TT__TRACE_ON()) /* tracing */
    tt__trace_block(co, reason, obj);
  co->wait_reason = (uint8_t)reason;
  co->wait_obj = obj;
  co->waiter = wt;
  co->blocked_since = w->now;
  w->pend_kind = TT__PEND_PARK;
  w->pend_co = co;
  w->pend_fn = commit;
  w->pend_arg = arg;
  switch_away(w, co, pick_local(w), false);
  co->waiter = NULL;
  co->wait_obj = NULL;
  co->wait_reason = TT_WAIT_NONE;
  co->wait_timed = 0;
  co->blocked_since = 0;
  /* acquire: pairs with the winner's acq_rel swap of the token. */
  return (int)(int32_t)atomic_load_explicit(&wt->token, memory_order_acquire);
}

int tt_yield(void) {
  tt__worker *w = tt__tls_worker;
  if (w == NULL || w->cur == NULL) {
    sched_yield();
    return TT_ENOTCORO;
  }
  tt__coro *co = w->cur;
  tt__stack_check(co);
  tt__coro *next = pick_local(w);
  /* Nothing else to run: go on, unless the world is to stop (a yield is a safe point too). */
  if (next == NULL && !(atomic_load_explicit(&tt__rt.stw, memory_order_relaxed) & TT__STW_REQ)) {
    /* Counted as a yield and a run (the counts by state are unchanged), so that the watchdog's
     * switch count moves: a lone coroutine that yields often is not one that never yields. */
    tt__stats_bump(TT__ST_YIELDS);
    tt__stats_bump(TT__ST_RUNS);
    return 0;
  }
  w->pend_kind = TT__PEND_YIELD;
  w->pend_co = co;
  switch_away(w, co, next, false);
  return 0;
}

tt__coro *tt__self(void) {
  tt__worker *w = tt__tls_worker;
  return w ? w->cur : NULL;
}

tt_id tt_self(void) {
  tt__coro *co = tt__self();
  return co ? co->id : 0;
}

int tt_worker_index(void) {
  tt__worker *w = tt__tls_worker;
  return w ? w->index : -1;
}

int tt_running(void) {
  int s = atomic_load_explicit(&tt__rt.state, memory_order_acquire);
  return s == RT_RUNNING || s == RT_GRACE;
}

int tt_procs(void) { return tt_running() ? tt__rt.procs : 0; }

uint64_t tt_seed(void) { return tt_running() ? tt__rt.seed : 0; }

int tt__block_check_thread(void) {
  int s = atomic_load_explicit(&tt__rt.state, memory_order_acquire);
  if (s == RT_STOPPED)
    return TT_ENOTRUNNING;
  return s == RT_STOPPING ? TT_ESHUTDOWN : 0;
}

/* ---- Plain threads ----------------------------------------------------------------------- */

/* Plain threads blocked on tether objects, so shut-down can wake them. Static (not in tt__rt) so
 * a thread that wakes after the runtime is gone still finds a valid lock. */
typedef struct thread_block {
  struct thread_block *next, *prev;
  tt__waiter *wt;
} thread_block;
static tt__lock thread_lock;
static thread_block *thread_list;

int tt__thread_block(tt__waiter *wt, int64_t deadline) {
  thread_block tb = {.wt = wt};
  tt__lock_acquire(&thread_lock);
  tb.next = thread_list;
  if (thread_list)
    thread_list->prev = &tb;
  thread_list = &tb;
  tt__lock_release(&thread_lock);
  int s = atomic_load_explicit(&tt__rt.state, memory_order_acquire);
  if (s == RT_STOPPED || s >= RT_STOPPING)
    tt__wake(wt, TT_ESHUTDOWN);
  /* acquire: pairs with the commit's release store. */
  while (atomic_load_explicit(&wt->released, memory_order_acquire) == 0) {
    if (tt__futex_wait(&wt->released, 0, deadline) == TT_ETIMEDOUT) {
      /* Time is up: claim ourselves, unless a waker did first — then its commit is coming. */
      if (tt__wake_claim(wt, TT_ETIMEDOUT))
        break;
      deadline = -1;
    }
  }
  tt__lock_acquire(&thread_lock);
  if (tb.prev)
    tb.prev->next = tb.next;
  else
    thread_list = tb.next;
  if (tb.next)
    tb.next->prev = tb.prev;
  tt__lock_release(&thread_lock);
  return (int)(int32_t)atomic_load_explicit(&wt->token, memory_order_acquire);
}

static void wake_threads(int result) {
  tt__lock_acquire(&thread_lock);
  for (thread_block *tb = thread_list; tb; tb = tb->next)
    tt__wake(tb->wt, result);
  tt__lock_release(&thread_lock);
}

/* ---- Stopping the world ----------------------------------------------------------------------
 *
 * The safe point is a worker's own context between two coroutines: every runtime operation a
 * coroutine makes is complete by then (a park's commit has run), so what the world holds — wait
 * queues, references, lock holders — is whole. The party that stops the world sets stw; each
 * worker sees it at its next switch (pick_local then hands back to the worker's own context, and
 * a yield with nothing else to run switches there too) or when it wakes from its sleep (the
 * party wakes every sleeper), and parks in stw_park until stw is cleared. The party waits for
 * all of them (but its own worker, when it is a coroutine: it runs, and nothing else there can)
 * with a timeout, since a coroutine that never yields never reaches the safe point. */

static void stw_park(void) {
  /* seq_cst: the party's count read and our loads of the world below are ordered after it. */
  atomic_fetch_add_explicit(&tt__rt.stw_parked, 1, memory_order_seq_cst);
  tt__futex_wake(&tt__rt.stw_parked, 1);
  uint32_t v;
  while ((v = atomic_load_explicit(&tt__rt.stw, memory_order_acquire)) & TT__STW_REQ)
    tt__futex_wait(&tt__rt.stw, v, TT_FOREVER);
  atomic_fetch_sub_explicit(&tt__rt.stw_parked, 1, memory_order_seq_cst);
}

int tt__stw_begin(int64_t timeout) {
  tt__worker *self = tt__tls_worker;
  int64_t pause = 20 * TT_USEC;
  for (;;) {
    int s = atomic_load_explicit(&tt__rt.state, memory_order_acquire);
    if (s != RT_RUNNING && s != RT_GRACE)
      return TT_ENOTRUNNING;
    uint32_t z = 0;
    /* acquire: the previous holder's stw_end happens before our stop. */
    if (atomic_compare_exchange_strong_explicit(&tt__rt.stw_owner, &z, 1, memory_order_acquire,
                                                memory_order_relaxed))
      break;
    /* Another party stops the world: a coroutine parks (its worker must reach the safe point
     * for that party), a thread sleeps. */
    if (self && self->cur)
      tt_sleep(pause);
    else
      nanosleep(&(struct timespec){0, pause}, NULL);
  }
  uint32_t want = (uint32_t)tt__rt.procs - (self && self->cur ? 1u : 0u);
  atomic_fetch_or_explicit(&tt__rt.stw, TT__STW_REQ, memory_order_seq_cst);
  for (int i = 0; i < tt__rt.procs; i++)
    if (&tt__rt.workers[i] != self)
      wake_worker(&tt__rt.workers[i]);
  int64_t deadline = tt__clock() + timeout;
  for (;;) {
    uint32_t n = atomic_load_explicit(&tt__rt.stw_parked, memory_order_seq_cst);
    if (n >= want)
      return 0;
    if (tt__clock() >= deadline)
      break;
    tt__futex_wait(&tt__rt.stw_parked, n, tt__clock() + TT_MSEC);
  }
  tt__stw_end();
  return TT_EBUSY;
}

void tt__stw_end(void) {
  /* seq_cst: what the party changed while the world stood still is seen by the workers. */
  atomic_fetch_and_explicit(&tt__rt.stw, ~TT__STW_REQ, memory_order_seq_cst);
  tt__futex_wake(&tt__rt.stw, INT32_MAX);
  atomic_store_explicit(&tt__rt.stw_owner, 0, memory_order_release);
}

/* ---- Workers ------------------------------------------------------------------------------- */

/* Work for w other than what it may steal from other workers' rings. */
static bool has_work(tt__worker *w) {
  return atomic_load_explicit(&w->inbox, memory_order_seq_cst) ||
         atomic_load_explicit(&tt__rt.gq_len, memory_order_seq_cst) ||
         (atomic_load_explicit(&tt__rt.stw, memory_order_seq_cst) & TT__STW_REQ) ||
         atomic_load_explicit(&tt__rt.state, memory_order_seq_cst) >= RT_STOPPING;
}

/* Steals from another worker's ring, but only from a stuck one: a worker that has neither
 * switched nor spawned for STEAL_AFTER (it runs a long coroutine: exactly what stealing is for), or
 * whose ring head has not moved for STEAL_STALE although it keeps switching. A ring its owner will
 * soon serve is left alone: a started coroutine never moves, so one stolen from a pipeline that
 * shares a worker would talk to it across cores for the rest of its life (each hand-off then costs
 * a microsecond of cache-line transfers instead of ~100 ns), and a freshly spawned coroutine is
 * cheaper to run where its descriptor and stack are warm. Sets *pending when some ring holds
 * coroutines that may become stealable. */
static tt__coro *try_steal(tt__worker *w, int64_t now, bool *pending) {
  int n = tt__rt.procs;
  *pending = false;
  if (n < 2)
    return NULL;
  int start = (int)(tt__rand(w) % (uint64_t)n);
  for (int i = 0; i < n; i++) {
    int vi = (start + i) % n;
    tt__worker *v = &tt__rt.workers[vi];
    if (v == w)
      continue;
    uint32_t h = atomic_load_explicit(&v->rq_head, memory_order_relaxed);
    if (atomic_load_explicit(&v->rq_tail, memory_order_relaxed) == h) {
      w->steal_obs[vi].since = -1;
      continue;
    }
    uint32_t p = atomic_load_explicit(&v->progress, memory_order_relaxed);
    if (w->steal_obs[vi].since < 0 || w->steal_obs[vi].head != h) {
      w->steal_obs[vi].head = h;
      w->steal_obs[vi].since = now;
      w->steal_obs[vi].progress = p;
      w->steal_obs[vi].psince = now;
      *pending = true;
      continue;
    }
    if (w->steal_obs[vi].progress != p) {
      w->steal_obs[vi].progress = p;
      w->steal_obs[vi].psince = now;
    }
    if (now - w->steal_obs[vi].psince < STEAL_AFTER && now - w->steal_obs[vi].since < STEAL_STALE) {
      *pending = true;
      continue;
    }
    tt__coro *co = rq_steal(w, v);
    w->steal_obs[vi].since = -1;
    if (co) {
      tt__fig_bump(&w->fig_steals, 1);
      return co;
    }
  }
  return NULL;
}

/* Finds something to run, sleeping when there is nothing; NULL when the runtime stops.
 * Runs in w's own context. */
static tt__coro *find_runnable(tt__worker *w) {
  bool spun = false; /* spin at most once between sleeps */
  for (;;) {
    if (atomic_load_explicit(&tt__rt.state, memory_order_acquire) >= RT_STOPPING)
      return NULL;
    if (TT_UNLIKELY(atomic_load_explicit(&tt__rt.stw, memory_order_acquire) & TT__STW_REQ))
      stw_park();
    w->now = tt__clock();
    tt__coro *co;
    int64_t next_timer;
    if (tt__rt.deterministic) {
      /* Reproducible timing: timers fire only when nothing else can run, one at a time, in
       * (deadline, arming) order — never "whichever happened to be due". */
      if ((co = pick_local(w)) != NULL)
        return co;
      next_timer = tt__worker_timers_run(w, w->now, true);
      if ((co = pick_local(w)) != NULL)
        return co;
    } else {
      next_timer = tt__worker_timers_run(w, w->now, false);
      if ((co = pick_local(w)) != NULL)
        return co;
    }
    if (atomic_load_explicit(&w->io_waiters, memory_order_relaxed) && tt__poller_poll_now(w) &&
        (co = pick_local(w)) != NULL)
      return co;
    bool pending;
    if ((co = try_steal(w, w->now, &pending)) != NULL)
      return co;
    /* Spin a little before sleeping: work often arrives within microseconds, and a futex wake
     * costs ~10 us. Every idle worker may spin (Go allows half): a coroutine never moves once
     * started, so two that talk across workers hand off through the inbox every time, and with
     * only one spinner the other side is always asleep (a futex round trip per hand-off, ~7 us
     * per round trip here instead of ~2 us). The spin is bounded (SPIN_NS), so an idle process
     * still goes quiet. */
    if (!spun && tt__rt.procs > 1 &&
        atomic_load_explicit(&tt__rt.nspinning, memory_order_relaxed) < tt__rt.procs) {
      spun = true;
      atomic_fetch_add_explicit(&tt__rt.nspinning, 1, memory_order_relaxed);
      int64_t until = w->now + SPIN_NS;
      if (next_timer >= 0 && next_timer < until)
        until = next_timer;
      int64_t now;
      do {
        /* Poll the cheap sources between pauses: a pause costs ~40 ns (more on recent x86), and
         * work handed to us by another worker must be noticed in well under a microsecond. */
        for (int i = 0; i < 32; i++) {
          if (atomic_load_explicit(&w->inbox, memory_order_relaxed) ||
              atomic_load_explicit(&tt__rt.gq_len, memory_order_relaxed))
            break;
          tt__cpu_relax();
        }
        now = tt__clock();
        if (atomic_load_explicit(&w->inbox, memory_order_relaxed))
          drain_inbox(w);
        /* Descriptors ready meanwhile (a system call per round: only while someone waits). */
        if (atomic_load_explicit(&w->io_waiters, memory_order_relaxed))
          tt__poller_poll_now(w);
        if ((co = w->ready_head) != NULL || (co = gq_take(w)) != NULL ||
            (co = try_steal(w, now, &pending)) != NULL)
          break;
      } while (atomic_load_explicit(&tt__rt.state, memory_order_relaxed) < RT_STOPPING &&
               now < until);
      atomic_fetch_sub_explicit(&tt__rt.nspinning, 1, memory_order_relaxed);
      if (co) {
        if (co == w->ready_head)
          ready_pop(w);
        /* We found work; if more waits in the global queue, another sleeper may be needed for
         * it. (Not otherwise: a hand-off between two workers would wake the third for nothing,
         * and each futex round trip costs microseconds.) */
        if (atomic_load_explicit(&tt__rt.gq_len, memory_order_relaxed))
          wake_idle(false);
        return co;
      }
      continue; /* timers may be due */
    }
    /* Sleep. Give back memory first: idle stacks beyond the warm few. */
    tt__stacks_trim(w);
    /* The last one asleep, with nothing left to run: perhaps a deadlock (src/leak/monitor.c). */
    if (atomic_fetch_add_explicit(&tt__rt.nsleeping, 1, memory_order_relaxed) + 1 == tt__rt.procs &&
        next_timer < 0)
      tt__monitor_idle();
    atomic_store_explicit(&w->sleeping, 1, memory_order_seq_cst);
    sleep_fence();
    if (!has_work(w)) {
      tt__fig_bump(&w->fig_sleeps, 1);
      w->now = tt__clock();
      int64_t until = tt__worker_timers_next(w);
      /* Coroutines waiting in a busy worker's ring: look again when they become stealable. */
      if (pending && (until < 0 || until > w->now + STEAL_AFTER))
        until = w->now + STEAL_AFTER;
      /* Woken by another thread: work may be arriving, so spin again before the next sleep.
       * Timed out: look once and sleep again — spinning on a ring that its owner drains would
       * only bounce its cache line. Someone waits on our descriptors: sleep in the poller, which
       * wakes for them too (seq_cst load: against a waiter's count increment and its load of
       * our sleeping word; a waker that exchanged the 1 away makes the CAS fail: no sleep). */
      uint32_t one = 1;
      if (atomic_load_explicit(&w->io_waiters, memory_order_seq_cst) &&
          atomic_compare_exchange_strong_explicit(&w->sleeping, &one, 2, memory_order_seq_cst,
                                                  memory_order_relaxed)) {
        if (until < 0 || until > w->now)
          tt__poller_sleep(w, until);
        spun = false;
      } else if ((until < 0 || until > w->now) && tt__futex_wait(&w->sleeping, 1, until) == 0) {
        spun = false;
      }
    } else {
      spun = false;
    }
    atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
    /* The first awake after all slept: the watchdog samples while anyone is awake. */
    if (atomic_fetch_sub_explicit(&tt__rt.nsleeping, 1, memory_order_relaxed) == tt__rt.procs)
      tt__watchdog_wake();
  }
}

static void *worker_main(void *arg) {
  tt__worker *w = arg;
  tt__tls_worker = w;
  tt__altstack_setup(w);
#if defined(TT_SANITIZE_THREAD)
  w->tsan_g0 = __tsan_get_current_fiber();
#endif
#if defined(TT_SANITIZE_ADDRESS)
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void *addr;
    size_t size;
    pthread_attr_getstack(&attr, &addr, &size);
    w->g0_stack_bottom = addr;
    w->g0_stack_size = size;
    pthread_attr_destroy(&attr);
  }
#endif
  for (;;) {
    tt__coro *co = find_runnable(w);
    if (co == NULL)
      break;
    switch_away(w, NULL, co, false);
  }
  /* No capture signal (SIGURG: the dumps', the watchdog's) from here on: this thread is leaving
   * and its alternate stack goes (Valgrind cannot deliver one to a thread in its exit path). A
   * capturer that aimed at us times out and looks again. */
  sigset_t urg;
  sigemptyset(&urg);
  sigaddset(&urg, SIGURG);
  pthread_sigmask(SIG_BLOCK, &urg, NULL);
  tt__altstack_teardown(w);
  tt__tls_worker = NULL;
  return NULL;
}

int tt__worker_figures_get(int i, tt__worker_figures *out) {
  if (atomic_load_explicit(&tt__rt.state, memory_order_acquire) == 0)
    return TT_ENOTRUNNING;
  if (i < 0 || i >= tt__rt.procs || out == NULL)
    return TT_EINVAL;
  tt__worker *w = &tt__rt.workers[i];
  /* relaxed: each figure is a hint, true on its own at some moment of the call. */
  uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_relaxed);
  uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
  out->runq = t - h <= TT__RQ_SIZE ? t - h : 0;
  out->switches = atomic_load_explicit(&w->stats.c[TT__ST_RUNS], memory_order_relaxed);
  out->parks = 0;
  for (int r = 0; r < TT_WAIT_COUNT; r++)
    out->parks += atomic_load_explicit(&w->stats.c[TT__ST_PARK0 + r], memory_order_relaxed);
  out->steals = atomic_load_explicit(&w->fig_steals, memory_order_relaxed);
  out->sleeps = atomic_load_explicit(&w->fig_sleeps, memory_order_relaxed);
  out->polls = atomic_load_explicit(&w->fig_polls, memory_order_relaxed);
  out->poll_events = atomic_load_explicit(&w->fig_poll_events, memory_order_relaxed);
  out->timers = atomic_load_explicit(&w->timers.hint, memory_order_relaxed) +
                atomic_load_explicit(&w->ptimers.hint, memory_order_relaxed);
  out->io_waiters = atomic_load_explicit(&w->io_waiters, memory_order_relaxed);
  return 0;
}

uint64_t tt__sched_progress(void) {
  uint64_t n = atomic_load_explicit(&tt__rt.tstats.c[TT__ST_RUNS], memory_order_relaxed);
  for (int i = 0; i < tt__rt.procs; i++)
    n += atomic_load_explicit(&tt__rt.workers[i].stats.c[TT__ST_RUNS], memory_order_relaxed) +
         atomic_load_explicit(&tt__rt.workers[i].stats.c[TT__ST_CREATED], memory_order_relaxed);
  return n;
}

/* ---- Start-up and shut-down ------------------------------------------------------------- */

struct main_arg {
  int (*fn)(void *);
  void *arg;
};

/* First pass of a cancellation: the flags. seq_cst: pairs with finish_switch's fence (Dekker):
 * either the second pass sees co parked and wakes it, or its worker sees the flag after parking
 * it. */
static void cancel_flag(tt__coro *co, void *self) {
  if (co != self && !(atomic_load_explicit(&co->cancelled, memory_order_relaxed) & TT__CANCEL_RT))
    atomic_fetch_or_explicit(&co->cancelled, TT__CANCEL_RT, memory_order_seq_cst);
}

/* Second pass: wake the parked. The waiter lives on co's stack, which holds still (co is held,
 * and cannot run before one of us wins the token anyway). */
static void cancel_wake(tt__coro *co, uint32_t st, bool held, void *self) {
  if (co != self && held && st == TT__S_WAITING && co->waiter &&
      tt__cancel_pending(atomic_load_explicit(&co->cancelled, memory_order_relaxed))) {
    /* A coroutine proven leaked is woken only here, by the end of the run (or the deadlock's
     * cancellation): its mark goes, or dumps of the grace period would still show it. It is
     * held still, so the field is ours to write. */
    __atomic_store_n(&co->verdict, 0, __ATOMIC_RELAXED);
    tt__wake(co->waiter, TT_ECANCELED);
  }
}

static void cancel_all(tt__coro *self) {
  tt__registry_walk(cancel_flag, self);
  /* The flags are stored before any state is read below (including the walk's relaxed first
   * look at each state): the heavy half of finish_switch's light fence. */
  tt__asym_barrier();
  tt__registry_walk_frozen(cancel_wake, self);
}

void tt__sched_deadlocked(void) {
  if (tt__rt.is_main) {
    /* tt_main: the process ends, as a Go program does. */
    fflush(NULL);
    _exit(2);
  }
  /* tt_run: every coroutine is cancelled (its blocking call returns TT_ECANCELED), fn finishes
   * and the run ends as usual, with TT_EDEADLK. */
  tt__rt.deadlocked = true;
  atomic_store_explicit(&tt__rt.state, RT_GRACE, memory_order_seq_cst);
  cancel_all(NULL);
}

/* Coroutine 1's body around fn. Named tt__ like the library's other internals so that a dump
 * without tether's debug information still tells it from the program's code by name. */
static void tt__main_entry(void *p) {
  struct main_arg *ma = p;
  tt__coro *self = tt__self();
  tt__rt.result = ma->fn(ma->arg);
  if (tt__leak_exit_check()) /* TT_LEAKCHECK=1 found coroutines left */
    tt__rt.result = TT_ELEAKED;

  /* fn returned: cancel everything else, give it the grace period, report what remains. */
  atomic_store_explicit(&tt__rt.state, RT_GRACE, memory_order_seq_cst);
  cancel_all(self);
  int64_t deadline = tt__clock() + tt__rt.grace_ns;
  tt__rt.grace_end = deadline; /* read by tt_run once the workers are joined */
  int64_t pause = 20 * TT_USEC;
  while (tt_num_coroutines() > 1 && tt__clock() < deadline) {
    tt_sleep(pause);
    /* Again: a spawn that checked the state just before the grace period began may have been
     * published after the walk went past it. */
    cancel_all(self);
    if (pause < 10 * TT_MSEC)
      pause *= 2;
  }
  int64_t left = tt_num_coroutines() - 1;
  if (left > 0 && tt__rt.report_fd >= 0) {
    tt__write_str(tt__rt.report_fd, "tether: ");
    tt__write_u64(tt__rt.report_fd, (uint64_t)left);
    tt__write_str(tt__rt.report_fd, left == 1 ? " coroutine is" : " coroutines are");
    tt__write_str(tt__rt.report_fd,
                  " still alive after the shut-down grace period; discarding:\n\n");
    tt__report_leftovers(tt__rt.report_fd, self);
  }
  /* Signal registrations go while the workers still run, so a wake the dispatcher commits lands
   * on a live worker (tt_run repeats it for a registration that raced with this). */
  tt__signal_shutdown();
  atomic_store_explicit(&tt__rt.state, RT_STOPPING, memory_order_seq_cst);
  atomic_fetch_or_explicit(&tt__rt.stw, TT__STW_STOPPING, memory_order_seq_cst);
  wake_threads(TT_ESHUTDOWN);
  for (int i = 0; i < tt__rt.procs; i++)
    wake_worker(&tt__rt.workers[i]);
}

static void free_leftover(tt__coro *co, void *unused) {
#if defined(TT_SANITIZE_THREAD)
  if (co->tsan_fiber)
    __tsan_destroy_fiber(co->tsan_fiber);
#endif
  if (co->sp)
    tt__stack_unbind(co->w, co);
  if (atomic_load_explicit(&co->status, memory_order_relaxed) != TT__S_RUNNING)
    tt__coro_release_fields(co);
}

static void runtime_free(void) {
  /* acquire: pairs with a plain waker's release as it lets go of a worker (see ready). */
  while (atomic_load_explicit(&tt__rt.plain_wakers, memory_order_acquire) != 0)
    sched_yield();
  tt__rt.discarding = true; /* no worker runs: only this thread reads it until it is cleared */
  tt__registry_walk(free_leftover, NULL);
  tt__rt.discarding = false;
  for (int i = 0; i < tt__rt.procs; i++) {
    tt__timers_free(&tt__rt.workers[i].timers);
    tt__timers_free(&tt__rt.workers[i].ptimers);
    tt__pb_destroy(&tt__rt.workers[i]); /* its poller, if it made one */
  }
  tt__stacks_destroy();
  for (int i = 0; i < tt__rt.procs; i++) {
    free(tt__rt.workers[i].stacks);
    free(tt__rt.workers[i].steal_obs);
  }
  tt__registry_destroy();
  free(tt__rt.workers);
  tt__rt.workers = NULL;
}

static tt__lock run_lock;

int tt_run(int (*fn)(void *arg), void *arg, const tt_run_opts *opts) {
  if (fn == NULL)
    return TT_EINVAL;
  if (tt__tls_worker != NULL)
    return TT_EBUSY;
  /* One run at a time: a second caller gets TT_EBUSY at once rather than waiting for the first
   * run to end. acquire: the previous run's clean-up is visible to this one. */
  uint32_t unlocked = 0;
  if (!atomic_compare_exchange_strong_explicit(&run_lock.v, &unlocked, 1, memory_order_acquire,
                                               memory_order_relaxed))
    return TT_EBUSY;
  int r = tt__knobs_load(opts);
  if (r == 0)
    r = tt__fault_load();
  if (r != 0)
    goto out_unlock;
  r = TT_ENOMEM;
  tt__rt.page = (size_t)sysconf(_SC_PAGESIZE);
  tt__rt.gq_head = tt__rt.gq_tail = NULL;
  /* relaxed: no other thread looks at the runtime until the workers start (pthread_create
   * orders these stores before them). */
  atomic_store_explicit(&tt__rt.gq_len, 0, memory_order_relaxed);
  atomic_store_explicit(&tt__rt.nspinning, 0, memory_order_relaxed);
  atomic_store_explicit(&tt__rt.nsleeping, 0, memory_order_relaxed);
  atomic_store_explicit(&tt__rt.stw, 0, memory_order_relaxed);
  atomic_store_explicit(&tt__rt.next_id, 1, memory_order_relaxed);
  tt__rt.grace_end = 0;
  tt__rt.deadlocked = false;
  memset(&tt__rt.tstats, 0, sizeof tt__rt.tstats);
  tt__rt.run_id++; /* objects that outlive a run (timer channels) tell runs apart by it */
  tt__rt.workers = tt__aligned_alloc(TT_CACHELINE, sizeof(tt__worker) * (size_t)tt__rt.procs);
  if (tt__rt.workers == NULL)
    goto out_unlock;
  memset(tt__rt.workers, 0, sizeof(tt__worker) * (size_t)tt__rt.procs);
  for (int i = 0; i < tt__rt.procs; i++) {
    tt__worker *w = &tt__rt.workers[i];
    w->index = i;
    w->ptimers.shared = true; /* program timers are stopped and reset from any thread */
    w->steal_obs = tt__malloc(sizeof *w->steal_obs * (size_t)tt__rt.procs);
    if (w->steal_obs == NULL)
      goto out_workers;
    for (int j = 0; j < tt__rt.procs; j++)
      w->steal_obs[j].since = -1;
    w->rand = tt__rt.seed * 0x9E3779B97F4A7C15ULL + (uint64_t)i * 0xBF58476D1CE4E5B9ULL + 1;
  }
  if (tt__registry_init() != 0)
    goto out_workers;
  if (tt__stacks_init() != 0)
    goto out_registry;
  if (tt__signals_install() != 0)
    goto out_stacks;
  tt__scan_init();

  /* Coroutine 1. */
  struct main_arg ma = {fn, arg};
  tt__coro *co = tt__coro_alloc(NULL);
  if (co == NULL)
    goto out_stacks;
  co->fn = tt__main_entry;
  co->arg = &ma;
  co->id = atomic_fetch_add_explicit(&tt__rt.next_id, 1, memory_order_relaxed);
  co->parent = 0;
  co->stack_req = tt__rt.stack_size;
  co->create_pc = __builtin_return_address(0);
  const char *name = opts && opts->name ? opts->name : "main";
  co->name = tt__strdup(name);
  atomic_store_explicit(&co->status, TT__S_RUNNABLE, memory_order_release);
  tt__stats_bump(TT__ST_CREATED);

  tt__blocking_start();
  tt__dumper_start(); /* SIGQUIT's dump thread; without it SIGQUIT keeps its old action */
  tt__debug_run_start();
  tt__trace_run_start(); /* TT_TRACE */
  if (TT__TRACE_ON())    /* tracing: coroutine 1's creation */
    tt__trace_create(co);
  /* Start every worker before coroutine 1 is queued, so that a worker that cannot be started
   * fails the run before any of fn runs. */
  atomic_store_explicit(&tt__rt.state, RT_RUNNING, memory_order_release);
  int started = 0;
  for (; started < tt__rt.procs; started++) {
    if (tt__fault(TT__FAULT_THREAD) || pthread_create(&tt__rt.workers[started].thread, NULL,
                                                      worker_main, &tt__rt.workers[started]) != 0)
      break;
  }
  if (started < tt__rt.procs) {
    /* Could not start every worker: stop those that did, and fail. */
    atomic_store_explicit(&tt__rt.state, RT_STOPPING, memory_order_seq_cst);
    atomic_fetch_or_explicit(&tt__rt.stw, TT__STW_STOPPING, memory_order_seq_cst);
    for (int i = 0; i < started; i++)
      wake_worker(&tt__rt.workers[i]);
    tt__rt.result = TT_ENOMEM;
  } else {
    tt__monitor_start();
    tt__watchdog_start();
    tt__spawn_enqueue(co); /* from this plain thread: the global queue, and a worker woken */
  }
  for (int i = 0; i < started; i++)
    pthread_join(tt__rt.workers[i].thread, NULL);
  tt__monitor_stop();
  tt__watchdog_stop();
  tt__dumper_stop();
  tt__signal_shutdown(); /* a registration made by a plain thread during the shut-down */
  /* No coroutine runs any more: the blocking pool abandons what its callers left, and gives
   * threads still inside a job the rest of the grace period. */
  tt__blocking_stop(tt__rt.grace_end);
  tt__trace_run_end(); /* TT_TRACE: written once no coroutine runs */
  r = tt__rt.deadlocked ? TT_EDEADLK : tt__rt.result;
  runtime_free();
  atomic_store_explicit(&tt__rt.state, RT_STOPPED, memory_order_release);
  tt__lock_release(&run_lock);
  return r;

out_stacks:
  tt__stacks_destroy();
out_registry:
  tt__registry_destroy();
out_workers:
  for (int i = 0; i < tt__rt.procs; i++)
    free(tt__rt.workers[i].steal_obs);
  free(tt__rt.workers);
  tt__rt.workers = NULL;
out_unlock:
  tt__lock_release(&run_lock);
  return r;
}

static struct {
  int argc;
  char **argv;
  int (*fn)(int, char **);
} main_args;

static int main_body(void *unused) {
  int status = main_args.fn(main_args.argc, main_args.argv);
  /* As in Go, the process ends when main returns; other coroutines are not waited for (but
   * TT_LEAKCHECK=1 reports them first, and then the status says so). */
  exit(tt__leak_exit_check() ? TT_LEAKCHECK_STATUS : status);
}

int tt_main(int argc, char **argv, int (*main_fn)(int, char **)) {
  if (main_fn == NULL)
    return TT_EINVAL;
  main_args.argc = argc;
  main_args.argv = argv;
  main_args.fn = main_fn;
  tt__rt.is_main = true;
  int r = tt_run(main_body, NULL, NULL);
  tt__rt.is_main = false;
  return r;
}
