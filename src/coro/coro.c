/* SPDX-License-Identifier: MIT */
/* Coroutine descriptors, the registry that finds every live one, spawning, names and labels, and
 * the exact counts.
 *
 * Descriptors live in chunks of CHUNK descriptors that are never freed while the runtime runs, so
 * the registry is simply every chunk: a walker reads each descriptor's status word and, to look at
 * a suspended one, takes its scan bit. Spawning touches no global lock: a worker recycles
 * descriptors through its own free list and trades surplus with a global list in batches (Go's
 * gFree), so exits on one worker feed spawns on another without fresh page faults.
 *
 * Counts come from per-worker monotonic transition counters, one increment per state change (see
 * tt__stats in internal.h). A reader collects every block twice: if nothing moved, all the figures
 * held at one instant between the two passes, so the counts are exact, not a blur of different
 * moments. */
#include <linux/membarrier.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define CHUNK 1024u       /* tools/gdb/tether.py has its own copy (not in the DWARF) */
#define MAX_CHUNKS 65536u /* 64 Mi coroutines */
#define LOCAL_FREE_MAX 512u
#define BATCH 128u
#define ID_BATCH 64u

int tt__registry_init(void) {
  tt__rt.chunks = tt__calloc(MAX_CHUNKS, sizeof(tt__coro *));
  if (tt__rt.chunks == NULL)
    return TT_ENOMEM;
  atomic_store_explicit(&tt__rt.nchunks, 0, memory_order_relaxed);
  atomic_store_explicit(&tt__rt.peak, 0, memory_order_relaxed);
  tt__rt.gfree = NULL;
  tt__rt.ngfree = 0;
  return 0;
}

void tt__registry_destroy(void) {
  if (tt__rt.chunks == NULL)
    return;
  uint32_t n = atomic_load_explicit(&tt__rt.nchunks, memory_order_relaxed);
  for (uint32_t i = 0; i < n; i++)
    free(tt__rt.chunks[i]);
  free(tt__rt.chunks);
  tt__rt.chunks = NULL;
  atomic_store_explicit(&tt__rt.nchunks, 0, memory_order_relaxed);
}

/* Takes a batch from the global free list, or a new chunk, into w's list (w may be NULL: then one
 * descriptor is returned and the rest stay global). Returns one descriptor or NULL. */
static tt__coro *refill(tt__worker *w) {
  tt__coro *co = NULL;
  tt__lock_acquire(&tt__rt.arena_lock);
  if (tt__rt.gfree) {
    co = tt__rt.gfree;
    tt__rt.gfree = co->next;
    tt__rt.ngfree--;
    for (uint32_t i = 0; w && i < BATCH && tt__rt.gfree; i++) {
      tt__coro *c = tt__rt.gfree;
      tt__rt.gfree = c->next;
      tt__rt.ngfree--;
      c->next = w->free_co;
      w->free_co = c;
      w->nfree_co++;
    }
    tt__lock_release(&tt__rt.arena_lock);
    return co;
  }
  uint32_t n = atomic_load_explicit(&tt__rt.nchunks, memory_order_relaxed);
  tt__coro *chunk = NULL;
  if (n < MAX_CHUNKS)
    chunk = tt__aligned_alloc(TT_CACHELINE, sizeof(tt__coro) * CHUNK);
  if (chunk == NULL) {
    tt__lock_release(&tt__rt.arena_lock);
    return NULL;
  }
  /* A free descriptor is clean: every field zero (status free, no stack, no name, not
   * cancelled...). tt__coro_free restores that, so allocation only unlinks one. */
  memset(chunk, 0, sizeof(tt__coro) * CHUNK);
  tt__rt.chunks[n] = chunk;
  /* release: walkers that see the new count see the chunk pointer and its free status words. */
  atomic_store_explicit(&tt__rt.nchunks, n + 1, memory_order_release);
  co = &chunk[0];
  tt__coro **list = w ? &w->free_co : &tt__rt.gfree;
  for (uint32_t i = CHUNK - 1; i >= 1; i--) {
    chunk[i].next = *list;
    *list = &chunk[i];
  }
  if (w)
    w->nfree_co += CHUNK - 1;
  else
    tt__rt.ngfree += CHUNK - 1;
  tt__lock_release(&tt__rt.arena_lock);
  return co;
}

tt__coro *tt__coro_alloc(tt__worker *w) {
  tt__coro *co;
  if (w && (co = w->free_co) != NULL) {
    w->free_co = co->next;
    w->nfree_co--;
    return co;
  }
  return refill(w);
}

void tt__coro_free(tt__worker *w, tt__coro *co) {
  /* Back to clean (see refill); the exit path already cleared name, labels and stack. */
  co->sp = NULL;
  co->w = NULL;
  atomic_store_explicit(&co->cancelled, 0, memory_order_relaxed);
#if defined(TT_SANITIZE_ADDRESS)
  co->asan_fake_stack = NULL;
#endif
  /* release: a walker that sees FREE does not look further; pairs with its acquire load. */
  atomic_store_explicit(&co->status, TT__S_FREE, memory_order_release);
  if (w == NULL) {
    tt__lock_acquire(&tt__rt.arena_lock);
    co->next = tt__rt.gfree;
    tt__rt.gfree = co;
    tt__rt.ngfree++;
    tt__lock_release(&tt__rt.arena_lock);
    return;
  }
  co->next = w->free_co;
  w->free_co = co;
  if (++w->nfree_co > LOCAL_FREE_MAX) {
    /* Give a batch back so that a worker that spawns more than it runs finds them. */
    tt__coro *head = w->free_co, *tail = head;
    for (uint32_t i = 1; i < BATCH; i++)
      tail = tail->next;
    w->free_co = tail->next;
    w->nfree_co -= BATCH;
    tt__lock_acquire(&tt__rt.arena_lock);
    tail->next = tt__rt.gfree;
    tt__rt.gfree = head;
    tt__rt.ngfree += BATCH;
    tt__lock_release(&tt__rt.arena_lock);
  }
}

void tt__labels_release(tt__labels *l) {
  /* acq_rel: the last releaser sees every other holder's reads done before it frees. */
  if (l && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
    free(l);
}

void tt__coro_release_fields(tt__coro *co) {
  if (co->name == NULL && co->labels == NULL && co->holder == NULL && co->ctx == NULL &&
      co->ctx_saved == NULL && co->shield == 0 && co->locks == NULL && co->ancestry == NULL)
    return;
  if (co->holder || co->locks)
    tt__leak_event("exit", NULL, co);
  /* The context first: a region's context may carry the last reference to a channel. */
  tt__ctx_exit(co);
  if (co->holder)
    tt__coro_drop_refs(co);
  if (co->locks)
    tt__sync_coro_exit(co);
  /* NULL first, then free: the watchdog's capture handler may interrupt us and copy co->name. */
  char *name = co->name;
  co->name = NULL;
  atomic_signal_fence(memory_order_seq_cst);
  free(name);
  tt__labels_release(co->labels);
  co->labels = NULL;
  tt__ancestry_release(co->ancestry);
  co->ancestry = NULL;
}

void tt__scan_init(void) {
  static _Atomic int done = 0; /* 0 not tried, 1 available, 2 unavailable */
  int d = atomic_load_explicit(&done, memory_order_acquire);
  if (d == 0) {
#if defined(TT_SANITIZE_THREAD)
    d = 2; /* TSan cannot see membarrier's ordering: keep to the symmetric protocol */
#else
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    d = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
            ? 1
            : 2;
#endif
    /* release: a later run that reads `done` sees the registration. */
    atomic_store_explicit(&done, d, memory_order_release);
  }
  tt__rt.scan_asym = d == 1;
}

/* The scanner's half of the barrier (see TT__S_*): after it, a worker that has not yet stored
 * RUNNING will see the scan bits set before it, and one that has is seen RUNNING. */
void tt__asym_barrier(void) {
  if (tt__rt.scan_asym && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
    return;
  atomic_thread_fence(memory_order_seq_cst);
}

/* Sets co's scan bit, waiting out another scanner. */
static void scan_set(tt__coro *co) {
  uint32_t z = 0, spins = 0;
  /* seq_cst: in the symmetric protocol this is the scanner's store of the Dekker pair. */
  while (!atomic_compare_exchange_weak_explicit(&co->scan, &z, 1, memory_order_seq_cst,
                                                memory_order_relaxed)) {
    z = 0;
    tt__spin_step(&spins);
  }
}

/* After the barrier: whether co is suspended (then it is held, *state says how), or not (then
 * the bit is dropped). */
static bool scan_check(tt__coro *co, uint32_t *state) {
  /* seq_cst: the scanner's load of the Dekker pair; it also acquires what the coroutine's worker
   * released when it suspended it (fields, saved context). */
  uint32_t st = atomic_load_explicit(&co->status, memory_order_seq_cst) & TT__S_STATE_MASK;
  *state = st;
  if (st == TT__S_RUNNABLE || st == TT__S_WAITING)
    return true;
  tt__scan_release(co);
  return false;
}

bool tt__coro_hold(tt__coro *co, uint32_t *state) {
  scan_set(co);
  tt__asym_barrier();
  return scan_check(co, state);
}

void tt__coro_cancel_wake(tt__coro *const *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    scan_set(v[i]);
  /* The callers' flags and our scan bits before any state is read (see cancel_all in sched.c). */
  tt__asym_barrier();
  for (size_t i = 0; i < n; i++) {
    tt__coro *co = v[i];
    uint32_t st;
    if (!scan_check(co, &st))
      continue;
    /* Held still: its waiter and its word cannot change under us. */
    if (st == TT__S_WAITING && co->waiter &&
        tt__cancel_pending(atomic_load_explicit(&co->cancelled, memory_order_relaxed)))
      tt__wake(co->waiter, TT_ECANCELED);
    tt__scan_release(co);
  }
}

void tt__scan_release(tt__coro *co) {
  /* release: our reads are done before a worker that sees the bit clear runs the coroutine. */
  atomic_store_explicit(&co->scan, 0, memory_order_release);
}

/* How far ahead a stack-reading walk prefetches: each suspended coroutine's saved context and
 * its first frames sit on a page of their own, so the walk is a stream of cache and TLB misses
 * that prefetching overlaps. */
#define PREFETCH_AHEAD 8u

static inline void prefetch_stack(const tt__coro *co) {
#if defined(TT_SANITIZE_THREAD)
  /* Read before the status check, these fields may be changing (a coroutine that turns out to
   * be running): harmless for a prefetch, but a race to TSan. */
  (void)co;
  return;
#endif
  const char *sp = co->sp, *hi = co->stack_lo + co->stack_size;
  if (sp == NULL)
    return;
  /* The saved context and the frames above it, up to 512 bytes: a parked coroutine's stack is
   * usually that shallow, and an unwind reads a word or two of each of its lines. */
  const char *end = hi - sp > 512 ? sp + 512 : hi;
  for (const char *p = sp; p < end; p += 64)
    __builtin_prefetch(p);
}

void tt__registry_walk_frozen(void (*fn)(tt__coro *co, uint32_t state, bool held, void *arg),
                              void *arg) {
  tt__registry_walk_frozen_range(fn, arg, 0, 1, false);
}

void tt__registry_walk_frozen_range(void (*fn)(tt__coro *co, uint32_t state, bool held, void *arg),
                                    void *arg, uint32_t first, uint32_t stride, bool stacks) {
  uint32_t n = atomic_load_explicit(&tt__rt.nchunks, memory_order_acquire);
  for (uint32_t i = first; i < n; i += stride) {
    tt__coro *chunk = tt__rt.chunks[i];
    uint8_t took[CHUNK];
    bool any = false;
    for (uint32_t j = 0; j < CHUNK; j++) {
      uint32_t st = atomic_load_explicit(&chunk[j].status, memory_order_relaxed) & TT__S_STATE_MASK;
      took[j] = st == TT__S_RUNNABLE || st == TT__S_WAITING;
      if (took[j]) {
        scan_set(&chunk[j]);
        any = true;
      }
    }
    if (any)
      tt__asym_barrier();
    if (stacks)
      for (uint32_t j = 0; j < PREFETCH_AHEAD; j++)
        if (took[j])
          prefetch_stack(&chunk[j]);
    for (uint32_t j = 0; j < CHUNK; j++) {
      tt__coro *co = &chunk[j];
      uint32_t st;
      /* Only held coroutines' stacks, and only after the barrier: a held one's sp is stable. */
      if (stacks && j + PREFETCH_AHEAD < CHUNK && took[j + PREFETCH_AHEAD])
        prefetch_stack(&chunk[j + PREFETCH_AHEAD]);
      bool held = took[j] && scan_check(co, &st);
      if (!held)
        st = atomic_load_explicit(&co->status, memory_order_acquire) & TT__S_STATE_MASK;
      if (st != TT__S_FREE)
        fn(co, st, held, arg);
      if (held)
        tt__scan_release(co);
    }
  }
}

void tt__registry_walk(void (*fn)(tt__coro *co, void *arg), void *arg) {
  uint32_t n = atomic_load_explicit(&tt__rt.nchunks, memory_order_acquire);
  for (uint32_t i = 0; i < n; i++) {
    tt__coro *chunk = tt__rt.chunks[i];
    for (uint32_t j = 0; j < CHUNK; j++) {
      if ((atomic_load_explicit(&chunk[j].status, memory_order_acquire) & TT__S_STATE_MASK) !=
          TT__S_FREE)
        fn(&chunk[j], arg);
    }
  }
}

void tt__registry_walk_waiters(void (*fn)(tt__coro *co, void *arg), void *arg) {
  enum { AHEAD = 8 };
  uint32_t n = atomic_load_explicit(&tt__rt.nchunks, memory_order_acquire);
  for (uint32_t i = 0; i < n; i++) {
    tt__coro *chunk = tt__rt.chunks[i];
    for (uint32_t j = 0; j < CHUNK; j++) {
      if (j + AHEAD < CHUNK) {
        /* A parked coroutine's waiter lives on its stack: a miss per coroutine, overlapped. */
        tt__waiter *wt = chunk[j + AHEAD].waiter;
        if (wt)
          __builtin_prefetch(&wt->token);
      }
      if ((atomic_load_explicit(&chunk[j].status, memory_order_acquire) & TT__S_STATE_MASK) !=
          TT__S_FREE)
        fn(&chunk[j], arg);
    }
  }
}

/* ---- Labels -------------------------------------------------------------------------------- */

/* Builds a label set: base's labels overridden/extended by add[0..nadd) (a NULL value removes the
 * key). Returns NULL with *err set on failure, or NULL with *err == 0 for an empty set. */
static tt__labels *labels_merge(const tt__labels *base, const tt_label *add, size_t nadd,
                                int *err) {
  *err = 0;
  size_t nbase = base ? base->n : 0;
  size_t max = nbase + nadd, bytes = 0, n = 0;
  for (size_t i = 0; i < nadd; i++)
    if (add[i].key == NULL || add[i].key[0] == '\0') {
      *err = TT_EINVAL;
      return NULL;
    }
  /* Worst-case string bytes. */
  for (size_t i = 0; i < nbase; i++)
    bytes += strlen(base->v[i].key) + strlen(base->v[i].value) + 2;
  for (size_t i = 0; i < nadd; i++)
    bytes += strlen(add[i].key) + (add[i].value ? strlen(add[i].value) : 0) + 2;
  tt__labels *l = tt__malloc(sizeof(tt__labels) + max * sizeof(tt_label) + bytes);
  if (l == NULL) {
    *err = TT_ENOMEM;
    return NULL;
  }
  char *p = (char *)&l->v[max];
  const tt_label *src[2] = {base ? base->v : NULL, add};
  size_t cnt[2] = {nbase, nadd};
  for (int s = 0; s < 2; s++) {
    for (size_t i = 0; i < cnt[s]; i++) {
      const char *k = src[s][i].key, *v = src[s][i].value;
      size_t at = n;
      for (size_t j = 0; j < n; j++)
        if (strcmp(l->v[j].key, k) == 0)
          at = j;
      if (v == NULL) { /* removal */
        if (at < n) {
          memmove(&l->v[at], &l->v[at + 1], (n - at - 1) * sizeof(tt_label));
          n--;
        }
        continue;
      }
      size_t kl = strlen(k) + 1, vl = strlen(v) + 1;
      memcpy(p, k, kl);
      l->v[at].key = p;
      p += kl;
      memcpy(p, v, vl);
      l->v[at].value = p;
      p += vl;
      if (at == n)
        n++;
    }
  }
  if (n == 0) {
    free(l);
    return NULL;
  }
  l->n = (uint32_t)n;
  atomic_init(&l->refs, 1);
  return l;
}

int tt_label_set(const char *key, const char *value) {
  tt__coro *co = tt__self();
  if (co == NULL)
    return TT_ENOTCORO;
  if (key == NULL || key[0] == '\0')
    return TT_EINVAL;
  tt_label one = {key, value};
  int err;
  tt__labels *l = labels_merge(co->labels, &one, 1, &err);
  if (err)
    return err;
  /* Readers (the registry) look at labels only while co is suspended, under its scan bit; co is
   * running, so replacing the pointer races with no one. */
  tt__labels *old = co->labels;
  co->labels = l;
  tt__labels_release(old);
  return 0;
}

const char *tt_label_get(const char *key) {
  tt__coro *co = tt__self();
  if (co == NULL || key == NULL || co->labels == NULL)
    return NULL;
  for (uint32_t i = 0; i < co->labels->n; i++)
    if (strcmp(co->labels->v[i].key, key) == 0)
      return co->labels->v[i].value;
  return NULL;
}

int tt_name_set(const char *name) {
  tt__coro *co = tt__self();
  if (co == NULL)
    return TT_ENOTCORO;
  char *copy = NULL;
  if (name && (copy = tt__strdup(name)) == NULL)
    return TT_ENOMEM;
  /* The new name first, then the old one freed: the watchdog's capture handler may interrupt us
   * here and copy co->name (src/diag/capture.c); the fence keeps the compiler from sinking the
   * store below the free. */
  char *old = co->name;
  co->name = copy;
  atomic_signal_fence(memory_order_seq_cst);
  free(old);
  if (TT__TRACE_ON()) /* tracing */
    tt__trace_name(co);
  return 0;
}

/* ---- Spawning ---------------------------------------------------------------------------- */

/* Fills in a clean descriptor, publishes it to the registry and queues it. The five fields that
 * the registry reads without the scan bit (a running coroutine's, possibly just reused) are
 * written with relaxed atomic stores, and read with relaxed atomic loads. */
static inline void publish(tt__coro *co, void (*fn)(void *), void *arg, size_t stack, int daemon,
                           void *pc, tt_id parent, tt_id id, uint64_t scope, bool global) {
  co->fn = fn;
  co->arg = arg;
  co->stack_req = stack;
  __atomic_store_n(&co->daemon, (uint8_t)daemon, __ATOMIC_RELAXED);
  __atomic_store_n(&co->create_pc, pc, __ATOMIC_RELAXED);
  __atomic_store_n(&co->parent, parent, __ATOMIC_RELAXED);
  __atomic_store_n(&co->id, id, __ATOMIC_RELAXED);
  /* The leak-check scope (src/leak/verify.c): read without the scan bit too, and rewritten by the
   * coroutine itself when it begins or ends a scope, hence atomic. */
  __atomic_store_n(&co->scope, scope, __ATOMIC_RELAXED);
  /* release: registry walkers that see the status see the fields above. */
  atomic_store_explicit(&co->status, TT__S_RUNNABLE, memory_order_release);
  tt__stats_bump(TT__ST_CREATED);
  if (TT__TRACE_ON()) /* tracing */
    tt__trace_create(co);
  if (TT_UNLIKELY(global))
    tt__spawn_enqueue_global(co);
  else
    tt__spawn_enqueue(co);
}

/* Spawns fn(arg). from_sched: called from the scheduler's own code (a timer's callback) rather
 * than by the running coroutine: the child has the given parent, inherits nothing, and is queued
 * on the global queue (the running coroutine, if any, is mid-switch: no runnext, no yield). */
/* Undoes a failed spawn's share; given references stay the giver's. */
static void spawn_unshare(struct tt__holder *refs, const tt_go_opts *o, struct tt__holder *give) {
  if (give == NULL)
    tt__refs_unshare(refs, o);
}

static void peak_sample(void);

static int spawn_ex(void (*fn)(void *), void *arg, const tt_go_opts *o, tt_id *idp, void *pc,
                    bool from_sched, tt_id parent, struct tt__holder *give, uint64_t scope) {
  if (fn == NULL)
    return TT_EINVAL;
  int state = atomic_load_explicit(&tt__rt.state, memory_order_acquire);
  if (state == 0)
    return TT_ENOTRUNNING;
  if (state >= 3)
    return TT_ESHUTDOWN;
  size_t stack = tt__rt.stack_size;
  if (o && o->stack_size) {
    if (tt__check_stack_size(o->stack_size) != 0)
      return TT_EINVAL;
    stack = o->stack_size;
  }
  if (o && o->nlabels && o->labels == NULL)
    return TT_EINVAL;
  tt__worker *w = tt__tls_worker;
  tt__coro *self = w && !from_sched ? w->cur : NULL;
  struct tt__holder *refs = give; /* a timer's references, whole: the child's table */
  if (o && (o->share || o->nshare || o->share_mode)) {
    int err = tt__refs_share(&refs, o->share, o->nshare, o->share_mode, "tt_go_opt share");
    if (err)
      return err;
  }

  tt__labels *labels = self ? self->labels : NULL;
  if (o && o->nlabels) {
    int err;
    labels = labels_merge(labels, o->labels, o->nlabels, &err);
    if (err) {
      spawn_unshare(refs, o, give);
      return err;
    }
  } else if (labels) {
    /* relaxed: the spawner holds a reference, so the count cannot reach zero meanwhile. */
    atomic_fetch_add_explicit(&labels->refs, 1, memory_order_relaxed);
  }
  char *name = NULL;
  if (o && o->name && (name = tt__strdup(o->name)) == NULL) {
    tt__labels_release(labels);
    spawn_unshare(refs, o, give);
    return TT_ENOMEM;
  }
  tt__coro *co = tt__coro_alloc(w);
  if (co == NULL) {
    free(name);
    tt__labels_release(labels);
    spawn_unshare(refs, o, give);
    return TT_ENOMEM;
  }
  co->name = name;
  co->labels = labels;
  co->holder = refs;
  if (TT_UNLIKELY(tt__rt.creationstack > 0))
    co->ancestry = tt__ancestry_capture();
  if (refs)
    tt__holder_set_owner(refs, co);
  if (w && w->id_next == w->id_end) {
    w->id_next = atomic_fetch_add_explicit(&tt__rt.next_id, ID_BATCH, memory_order_relaxed);
    w->id_end = w->id_next + ID_BATCH;
    peak_sample();
  }
  tt_id id = w ? w->id_next++ : atomic_fetch_add_explicit(&tt__rt.next_id, 1, memory_order_relaxed);
  /* Born during shut-down's grace period: cancelled from the start. */
  if (state == 2)
    atomic_store_explicit(&co->cancelled, TT__CANCEL_RT, memory_order_relaxed);
  if (idp)
    *idp = id;
  tt__ctx_spawn(co, o && o->ctx ? o->ctx : self ? self->ctx : NULL);
  /* The child's leak-check scope: the spawner's (a coroutine's own, a plain thread's current
   * one), or the one a timer recorded when it was armed. */
  if (!from_sched)
    scope = self ? self->scope : w ? 0 : tt__tls_scope;
  publish(co, fn, arg, stack, o && o->daemon, pc, self ? self->id : parent, id, scope, from_sched);
  return 0;
}

static int spawn(void (*fn)(void *), void *arg, const tt_go_opts *o, tt_id *idp, void *pc) {
  return spawn_ex(fn, arg, o, idp, pc, false, 0, NULL, 0);
}

int tt__spawn_from_sched(void (*fn)(void *), void *arg, tt_id parent, void *pc,
                         struct tt__holder *refs, uint64_t scope) {
  return spawn_ex(fn, arg, NULL, NULL, pc, true, parent, refs, scope);
}

int tt_go(void (*fn)(void *), void *arg) {
  void *pc = __builtin_return_address(0);
  tt__worker *w = tt__tls_worker;
  tt__coro *self, *co;
  /* The common case inline: a coroutine without labels spawns, the runtime is running, and a
   * clean descriptor waits on this worker's free list. Everything else takes spawn(). */
  if (TT_LIKELY(w != NULL && (self = w->cur) != NULL && fn != NULL && self->labels == NULL &&
                self->ctx == NULL && (co = w->free_co) != NULL && w->id_next != w->id_end &&
                tt__rt.creationstack == 0 &&
                atomic_load_explicit(&tt__rt.state, memory_order_relaxed) == 1)) {
    w->free_co = co->next;
    w->nfree_co--;
    /* The scope: one load (the spawner's, which only it writes) and one store. */
    publish(co, fn, arg, tt__rt.stack_size, 0, pc, self->id, w->id_next++, self->scope, false);
    return 0;
  }
  return spawn(fn, arg, NULL, NULL, pc);
}

int tt_go_opt(void (*fn)(void *), void *arg, const tt_go_opts *opts, tt_id *id) {
  return spawn(fn, arg, opts, id, __builtin_return_address(0));
}

/* ---- Counting ---------------------------------------------------------------------------- */

/* Sums every block's counters into sum. */
static void collect(uint64_t *sum) {
  memset(sum, 0, sizeof(uint64_t) * TT__NSTAT);
  for (int b = 0; b <= tt__rt.procs; b++) {
    tt__stats *st = b < tt__rt.procs ? &tt__rt.workers[b].stats : &tt__rt.tstats;
    for (int i = 0; i < TT__NSTAT; i++)
      sum[i] += atomic_load_explicit(&st->c[i], memory_order_relaxed);
  }
}

static void peak_note(int64_t live) {
  int64_t p = atomic_load_explicit(&tt__rt.peak, memory_order_relaxed);
  /* relaxed: the peak is a statistic; the CAS only keeps it monotonic. */
  while (live > p && !atomic_compare_exchange_weak_explicit(
                         &tt__rt.peak, &p, live, memory_order_relaxed, memory_order_relaxed))
    ;
}

/* Samples the live count into the peak: called every ID_BATCH spawns per worker (when a worker
 * takes a new batch of ids), so the peak is exact to within ID_BATCH coroutines per worker, at
 * the cost of one pass over the workers' counters per batch. */
static void peak_sample(void) {
  int64_t created = 0, exited = 0;
  for (int b = 0; b <= tt__rt.procs; b++) {
    tt__stats *st = b < tt__rt.procs ? &tt__rt.workers[b].stats : &tt__rt.tstats;
    created += (int64_t)atomic_load_explicit(&st->c[TT__ST_CREATED], memory_order_relaxed);
    exited += (int64_t)atomic_load_explicit(&st->c[TT__ST_EXITED], memory_order_relaxed);
  }
  peak_note(created - exited);
}

int tt_counts_get(tt_counts *out) {
  if (out == NULL)
    return TT_EINVAL;
  memset(out, 0, sizeof *out);
  if (!tt_running())
    return TT_ENOTRUNNING;
  uint64_t a[TT__NSTAT], b[TT__NSTAT];
  /* Two equal collections of monotonic counters: nothing moved in between, so the values are
   * those of one instant between them (see tt__stats). Under relentless churn, give up after a
   * while and use the last collection, whose figures are each exact but maybe not simultaneous. */
  collect(a);
  for (int attempt = 0; attempt < 1000; attempt++) {
    /* acquire: order the two passes' loads. */
    atomic_thread_fence(memory_order_acquire);
    collect(b);
    if (memcmp(a, b, sizeof a) == 0)
      break;
    memcpy(a, b, sizeof a);
  }
  out->created = a[TT__ST_CREATED];
  out->exited = a[TT__ST_EXITED];
  out->total = (int64_t)(out->created - out->exited);
  peak_note(out->total);
  out->peak = atomic_load_explicit(&tt__rt.peak, memory_order_relaxed);
  if (out->peak > (int64_t)out->created)
    out->peak = (int64_t)out->created;
  uint64_t parks = 0, wakes = 0;
  for (int r = 0; r < TT_WAIT_COUNT; r++) {
    out->by_reason[r] = (int64_t)(a[TT__ST_PARK0 + r] - a[TT__ST_WAKE0 + r]);
    parks += a[TT__ST_PARK0 + r];
    wakes += a[TT__ST_WAKE0 + r];
  }
  out->by_state[TT_STATE_RUNNABLE] =
      (int64_t)(a[TT__ST_CREATED] + wakes + a[TT__ST_YIELDS] - a[TT__ST_RUNS]);
  out->by_state[TT_STATE_RUNNING] =
      (int64_t)(a[TT__ST_RUNS] - parks - a[TT__ST_YIELDS] - a[TT__ST_EXITED]);
  out->by_state[TT_STATE_WAITING] = (int64_t)(parks - wakes);
  return 0;
}

int64_t tt_num_coroutines(void) {
  tt_counts c;
  if (tt_counts_get(&c) != 0)
    return 0;
  return c.total;
}

/* ---- The registry as users see it -------------------------------------------------------- */

struct foreach_arg {
  int (*fn)(const tt_coro_info *, void *);
  void *arg;
  int result;
};

static void fill_info(tt__coro *co, uint32_t st, tt_coro_info *ci) {
  memset(ci, 0, sizeof *ci);
  ci->id = co->id;
  ci->parent = co->parent;
  ci->name = co->name;
  ci->state = tt__state_public(st);
  ci->wait_reason = st == TT__S_WAITING ? co->wait_reason : TT_WAIT_NONE;
  ci->wait_obj = st == TT__S_WAITING ? co->wait_obj : NULL;
  if (ci->wait_reason == TT_WAIT_SELECT && ci->wait_obj) {
    const tt__select_wait *sw = ci->wait_obj;
    ci->select_cases = sw->cases;
    ci->select_ncases = sw->n;
    ci->wait_obj = sw->cases;
  }
  ci->blocked_since = st == TT__S_WAITING ? co->blocked_since : 0;
  ci->create_pc = co->create_pc;
  ci->daemon = co->daemon;
  ci->verdict = __atomic_load_n(&co->verdict, __ATOMIC_RELAXED);
  ci->scope = __atomic_load_n(&co->scope, __ATOMIC_RELAXED);
  ci->worker = co->w ? co->w->index : -1;
  ci->stack_size = co->sp ? co->stack_size : co->stack_req;
  ci->labels = co->labels ? co->labels->v : NULL;
  ci->nlabels = co->labels ? co->labels->n : 0;
  ci->sp = co->sp;
  ci->stack_lo = co->sp ? co->stack_lo : NULL;
  ci->stack_hi = co->sp ? co->stack_lo + co->stack_size : NULL;
}

static void foreach_one(tt__coro *co, uint32_t st, bool held, void *p) {
  struct foreach_arg *fa = p;
  if (fa->result)
    return;
  tt_coro_info ci;
  if (co == tt__self()) {
    /* The caller itself: running, and only it changes its own fields. */
    fill_info(co, TT__S_RUNNING, &ci);
    ci.sp = NULL;
  } else if (held) {
    fill_info(co, st, &ci);
  } else {
    /* Running on another worker (or changing state under us): report what is stable without
     * the scan bit. Atomic reads: the descriptor may be freed and reused meanwhile; these four
     * are written atomically at spawn, so at worst we report the coroutine that replaced it. */
    memset(&ci, 0, sizeof ci);
    ci.id = __atomic_load_n(&co->id, __ATOMIC_RELAXED);
    ci.parent = __atomic_load_n(&co->parent, __ATOMIC_RELAXED);
    ci.state = TT_STATE_RUNNING;
    ci.create_pc = __atomic_load_n(&co->create_pc, __ATOMIC_RELAXED);
    ci.daemon = __atomic_load_n(&co->daemon, __ATOMIC_RELAXED);
    ci.scope = __atomic_load_n(&co->scope, __ATOMIC_RELAXED);
    ci.worker = -1;
  }
  fa->result = fa->fn(&ci, fa->arg);
}

int tt_coro_foreach(int (*fn)(const tt_coro_info *, void *), void *arg) {
  if (fn == NULL)
    return TT_EINVAL;
  if (!tt_running())
    return TT_ENOTRUNNING;
  struct foreach_arg fa = {fn, arg, 0};
  tt__registry_walk_frozen(foreach_one, &fa);
  return fa.result;
}
