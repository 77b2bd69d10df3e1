/* SPDX-License-Identifier: MIT */
/* Snapshots: every live coroutine with its stack, read from the registry one chunk at a time.
 *
 * A suspended coroutine is unwound from its saved context while the registry walk holds it still
 * (its scan bit); the caller unwinds itself; a coroutine running on another worker is captured
 * by a signal after the walk (capture.c). Stacks are interned by content: a million coroutines
 * parked in a few places share a few records, which is what makes the formats fast (each
 * distinct stack is symbolized once). Names are copied and interned; label sets and creation
 * records, immutable and reference counted, are shared with the runtime. */
#include <pthread.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "diag/snap_int.h"

#define ARENA_BLK ((size_t)256 << 10)
#define MAX_WALK 16384 /* deepest stack walked: a 256 KiB stack holds at most ~16k frames */

struct tt__arena_blk {
  struct tt__arena_blk *next;
  size_t used, cap;
  _Alignas(16) char data[];
};

static void *arena_alloc(tt_snapshot *s, size_t n) {
  n = (n + 15) & ~(size_t)15;
  struct tt__arena_blk *b = s->arena;
  if (b == NULL || b->cap - b->used < n) {
    size_t cap = n > ARENA_BLK ? n : ARENA_BLK;
    b = malloc(sizeof *b + cap);
    if (b == NULL) {
      s->err = TT_ENOMEM;
      return NULL;
    }
    b->next = s->arena;
    b->used = 0;
    b->cap = cap;
    s->arena = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  return p;
}

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

/* Grows an open-addressing table of pointers to twice its size; rehash(p) gives a slot key. */
static bool table_grow(tt_snapshot *s, void ***tab, size_t *cap, uint64_t (*key)(const void *)) {
  size_t ncap = *cap ? *cap * 2 : 256;
  void **nt = calloc(ncap, sizeof *nt);
  if (nt == NULL) {
    s->err = TT_ENOMEM;
    return false;
  }
  for (size_t i = 0; i < *cap; i++) {
    void *p = (*tab)[i];
    if (p == NULL)
      continue;
    size_t j = key(p) & (ncap - 1);
    while (nt[j])
      j = (j + 1) & (ncap - 1);
    nt[j] = p;
  }
  free(*tab);
  *tab = nt;
  *cap = ncap;
  return true;
}

static uint64_t stk_key(const void *p) { return ((const tt__stk *)p)->hash; }

static const tt__stk *intern_kept(tt_snapshot *s, const uintptr_t *pcs, size_t n, size_t depth);

void tt__stk_keep(tt__stk *out, const uintptr_t *pcs, size_t depth) {
  out->depth = (uint32_t)depth;
  if (depth <= TT_STACK_KEEP) {
    out->n = (uint32_t)depth;
    memcpy(out->pcs, pcs, depth * sizeof *pcs);
    return;
  }
  out->n = TT_STACK_KEEP;
  memcpy(out->pcs, pcs, TT_STACK_KEEP / 2 * sizeof *pcs);
  memcpy(out->pcs + TT_STACK_KEEP / 2, pcs + depth - TT_STACK_KEEP / 2,
         TT_STACK_KEEP / 2 * sizeof *pcs);
}

/* The interned record for pcs[0..depth) (depth frames walked, of which the buffer holds all). */
static const tt__stk *intern_stack(tt_snapshot *s, const uintptr_t *pcs, size_t depth) {
  tt__stk_buf k;
  tt__stk_keep(&k.stk, pcs, depth);
  return intern_kept(s, k.stk.pcs, k.stk.n, depth);
}

/* The interned record for the kept pcs[0..n) of a stack depth frames deep. */
static const tt__stk *intern_kept(tt_snapshot *s, const uintptr_t *pcs, size_t n, size_t depth) {
  uint64_t h = mix(0, depth);
  for (size_t i = 0; i < n; i++)
    h = mix(h, pcs[i]);
  if ((s->nstk + 1) * 2 > s->capstk && !table_grow(s, (void ***)&s->stk, &s->capstk, stk_key))
    return NULL;
  size_t j = h & (s->capstk - 1);
  for (tt__stk *t; (t = s->stk[j]) != NULL; j = (j + 1) & (s->capstk - 1))
    if (t->hash == h && t->depth == depth && t->n == n && memcmp(t->pcs, pcs, n * sizeof *pcs) == 0)
      return t;
  tt__stk *t = arena_alloc(s, sizeof *t + n * sizeof *pcs);
  if (t == NULL)
    return NULL;
  t->hash = h;
  t->n = (uint32_t)n;
  t->depth = (uint32_t)depth;
  memcpy(t->pcs, pcs, n * sizeof *pcs);
  s->stk[j] = t;
  s->nstk++;
  return t;
}

static uint64_t str_hash(const char *p) {
  uint64_t h = 1469598103934665603ull;
  while (*p)
    h = (h ^ (unsigned char)*p++) * 1099511628211ull;
  return h;
}

static uint64_t name_key(const void *p) { return str_hash(p); }

static const char *intern_name(tt_snapshot *s, const char *name) {
  if (name == NULL)
    return NULL;
  if ((s->nnames + 1) * 2 > s->capnames &&
      !table_grow(s, (void ***)&s->names, &s->capnames, name_key))
    return NULL;
  size_t j = str_hash(name) & (s->capnames - 1);
  for (char *t; (t = s->names[j]) != NULL; j = (j + 1) & (s->capnames - 1))
    if (strcmp(t, name) == 0)
      return t;
  size_t len = strlen(name) + 1;
  char *t = arena_alloc(s, len);
  if (t == NULL)
    return NULL;
  memcpy(t, name, len);
  s->names[j] = t;
  s->nnames++;
  return t;
}

static uint64_t ptr_key(const void *p) { return mix(0, (uintptr_t)p); }

/* Records that the snapshot holds a reference to p (a label set or an ancestry record), taking
 * one the first time p is seen. Returns false when out of memory (then p is not kept). */
static bool hold_ptr(tt_snapshot *s, const void ***tab, size_t *n, size_t *cap, const void *p,
                     _Atomic uint32_t *refs) {
  if ((*n + 1) * 2 > *cap && !table_grow(s, (void ***)tab, cap, ptr_key))
    return false;
  size_t j = ptr_key(p) & (*cap - 1);
  for (const void *t; (t = (*tab)[j]) != NULL; j = (j + 1) & (*cap - 1))
    if (t == p)
      return true;
  /* relaxed: the holder (the coroutine, held still) has its own reference meanwhile. */
  atomic_fetch_add_explicit(refs, 1, memory_order_relaxed);
  (*tab)[j] = p;
  (*n)++;
  return true;
}

/* Entry arrays: a big one (a million coroutines: ~100 MB) is its own mapping with transparent
 * huge pages asked for, so that filling it takes a few dozen page faults, not tens of thousands;
 * small ones come from malloc. */
#define BIG_ENTRIES ((size_t)4 << 20)

static tt__snap_entry *entries_alloc(size_t n) {
  size_t bytes = n * sizeof(tt__snap_entry);
  if (bytes < BIG_ENTRIES)
    return malloc(bytes);
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without THP, ordinary pages */
  return p;
}

static void entries_free(tt__snap_entry *v, size_t n) {
  if (v == NULL)
    return;
  if (n * sizeof *v < BIG_ENTRIES)
    free(v);
  else
    munmap(v, n * sizeof *v);
}

static tt__snap_entry *new_entry(tt_snapshot *s) {
  if (s->nv == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 1024;
    tt__snap_entry *v = entries_alloc(ncap);
    if (v == NULL) {
      s->err = TT_ENOMEM;
      return NULL;
    }
    if (s->nv)
      memcpy(v, s->v, s->nv * sizeof *v);
    entries_free(s->v, s->cap);
    s->v = v;
    s->cap = ncap;
  }
  tt__snap_entry *e = &s->v[s->nv++];
  memset(e, 0, sizeof *e);
  return e;
}

/* A coroutine running on another worker, captured after the walk. */
typedef struct pending_run {
  tt__coro *co;
  tt_id id;
  size_t entry; /* in the walker's own part */
  bool sub;     /* ... which became the sub-snapshot */
} pending_run;

struct walk {
  tt_snapshot *s;
  tt__coro *self; /* the coroutine taking the snapshot (skipped by the walk), or NULL */
  uintptr_t *buf; /* MAX_WALK pcs */
  pending_run *run;
  size_t nrun, caprun;
  bool crash;
};

/* Remembers a coroutine to capture after the walk (dropped when out of memory: it then keeps
 * "stack unavailable"). */
static void push_run(struct walk *wk, pending_run r) {
  if (wk->nrun == wk->caprun) {
    size_t ncap = wk->caprun ? wk->caprun * 2 : 16;
    pending_run *v = realloc(wk->run, ncap * sizeof *v);
    if (v == NULL)
      return;
    wk->run = v;
    wk->caprun = ncap;
  }
  wk->run[wk->nrun++] = r;
}

/* Copies what the registry holds about co into e; co is held still, or is the caller. */
static void fill(struct walk *wk, tt__snap_entry *e, tt__coro *co, uint32_t st) {
  tt_snapshot *s = wk->s;
  e->id = co->id;
  e->parent = co->parent;
  e->name = co->name ? intern_name(s, co->name) : NULL;
  if (co->labels && hold_ptr(s, (const void ***)&s->lsets, &s->nlsets, &s->caplsets, co->labels,
                             &co->labels->refs))
    e->labels = co->labels;
  e->state = (uint8_t)tt__state_public(st);
  e->daemon = co->daemon;
  e->verdict = __atomic_load_n(&co->verdict, __ATOMIC_RELAXED);
  e->create_pc = co->create_pc;
  e->worker = (int16_t)(co->w ? co->w->index : -1);
  e->stack_size = (uint32_t)(co->sp || co == wk->self ? co->stack_size : co->stack_req);
  if (co->w)
    e->stack_lo = co->stack_lo;
  const tt__select_wait *sw = NULL;
  if (st == TT__S_WAITING) {
    e->reason = co->wait_reason;
    e->wait_obj = co->wait_obj;
    e->blocked_since = co->blocked_since;
    if (e->reason == TT_WAIT_SELECT && co->wait_obj) {
      sw = co->wait_obj;
      e->wait_obj = sw->cases;
    }
  }
  if ((sw && sw->n) || co->ancestry) {
    tt__snap_extra *x = arena_alloc(s, sizeof *x);
    if (x == NULL)
      return;
    memset(x, 0, sizeof *x);
    if (sw && sw->n) {
      tt_select_case *c = arena_alloc(s, sw->n * sizeof *c);
      if (c) {
        memcpy(c, sw->cases, sw->n * sizeof *c);
        x->cases = c;
        x->ncases = sw->n;
      }
    }
    if (co->ancestry && hold_ptr(s, (const void ***)&s->anc, &s->nanc, &s->capanc, co->ancestry,
                                 &co->ancestry->refs))
      x->ancestry = co->ancestry;
    e->extra = x;
  }
}

/* Unwinds co, held still, from its saved context into wk->buf; returns the depth. */
static size_t unwind_held(struct walk *wk, tt__coro *co) {
  tt__uregs r;
  tt__uregs_from_saved(&r, co->sp);
  int n = tt__unwind(&r, (uintptr_t)co->stack_lo, (uintptr_t)co->stack_lo + co->stack_size, wk->buf,
                     MAX_WALK);
  return n > 0 ? (size_t)n : 0;
}

static void walk_one(tt__coro *co, uint32_t st, bool held, void *arg) {
  struct walk *wk = arg;
  tt_snapshot *s = wk->s;
  if (s->err)
    return;
  if (co == wk->self)
    return; /* the caller: added by tt__snapshot_take itself, from its own thread */
  if (!held) {
    /* Running on another worker (or in the middle of a switch): what never changes now, the
     * rest and the stack from a capture after the walk. */
    tt__snap_entry *e = new_entry(s);
    if (e == NULL)
      return;
    e->id = __atomic_load_n(&co->id, __ATOMIC_RELAXED);
    e->parent = __atomic_load_n(&co->parent, __ATOMIC_RELAXED);
    e->create_pc = __atomic_load_n(&co->create_pc, __ATOMIC_RELAXED);
    e->daemon = __atomic_load_n(&co->daemon, __ATOMIC_RELAXED);
    e->state = TT_STATE_RUNNING;
    e->worker = -1;
    e->stack_status = TT_STACK_UNAVAILABLE;
    if (!wk->crash)
      push_run(wk, (pending_run){co, e->id, s->nv - 1, false});
    return;
  }
  tt__snap_entry *e = new_entry(s);
  if (e == NULL)
    return;
  fill(wk, e, co, st);
  if (co->sp == NULL) {
    /* Never ran: its start function, as Go shows an unstarted goroutine's. */
    uintptr_t start = (uintptr_t)co->fn + 1;
    e->stack = intern_stack(s, &start, 1);
    e->stack_status = TT_STACK_NOT_STARTED;
  } else {
    e->stack = intern_stack(s, wk->buf, unwind_held(wk, co));
  }
}

/* A coroutine that was running on another worker during the walk: captured by a signal if it
 * still runs, else held and unwound like the others (it may start and stop again meanwhile, or
 * be caught between the two, when neither works: a few rounds, a few milliseconds in all). */
static void capture_one(struct walk *wk, tt__snap_entry *e, tt__coro *co, tt_id id) {
  tt_snapshot *s = wk->s;
  for (int round = 0; round < 8; round++) {
    if (round > 0) {
      /* Caught in a transition (starting, switching): give it a moment, longer each time. */
      struct timespec nap = {0, 20000L << round};
      nanosleep(&nap, NULL);
    }
    int32_t worker = e->worker;
    int n = tt__capture_running(co, id, wk->buf, MAX_WALK, &worker);
    e->worker = (int16_t)worker;
    if (n > 0) {
      e->stack = intern_stack(s, wk->buf, (size_t)n);
      e->stack_status = TT_STACK_OK;
      return;
    }
    if (n == TT_ETIMEDOUT)
      return;
    uint32_t st;
    if (tt__coro_hold(co, &st)) {
      if (co->id == id) {
        fill(wk, e, co, st);
        e->stack_status = TT_STACK_OK;
        e->stack = intern_stack(s, wk->buf, unwind_held(wk, co));
      }
      tt__scan_release(co);
      return; /* read, or gone (exited: the entry stays as the walk saw it) */
    }
    if (__atomic_load_n(&co->id, __ATOMIC_RELAXED) != id)
      return;
  }
}

/* Adopts b (the second walker's part) as a's sub-snapshot: its entries stay where they are, their
 * stacks and names re-pointed at a's records (so that equal stacks are one record, which the
 * formats group by), and its pending captures appended to a's with their indices shifted. */
static void adopt(struct walk *wa, struct walk *wb) {
  tt_snapshot *a = wa->s, *b = wb->s;
  const tt__stk **map = calloc(b->capstk ? b->capstk : 1, sizeof *map);
  if (map == NULL) {
    a->err = TT_ENOMEM;
    return;
  }
  for (size_t i = 0; i < b->capstk; i++)
    if (b->stk[i])
      map[i] = intern_kept(a, b->stk[i]->pcs, b->stk[i]->n, b->stk[i]->depth);
  const tt__stk *last_from = NULL, *last_to = NULL;
  const char *name_from = NULL, *name_to = NULL;
  for (size_t i = 0; i < b->nv && !a->err; i++) {
    tt__snap_entry *e = &b->v[i];
    if (e->stack && e->stack != last_from) {
      size_t j = e->stack->hash & (b->capstk - 1);
      while (b->stk[j] != e->stack)
        j = (j + 1) & (b->capstk - 1);
      last_from = e->stack;
      last_to = map[j];
    }
    if (e->stack)
      e->stack = last_to;
    if (e->name && e->name != name_from) {
      name_from = e->name;
      name_to = intern_name(a, e->name);
    }
    if (e->name)
      e->name = name_to;
  }
  free(map);
  for (size_t i = 0; i < wb->nrun; i++) {
    pending_run r = wb->run[i];
    r.sub = true;
    push_run(wa, r);
  }
  a->sub = b;
}

/* The second walker: the odd chunks, into a snapshot of its own. */
static void *walk_odd_body(void *arg) {
  struct walk *wk = arg;
  tt__registry_walk_frozen_range(walk_one, wk, 1, 2, true);
  return NULL;
}

/* Counted as one of the runtime's own threads while it lives (the deadlock check's count). */
static void *walk_odd(void *arg) {
  atomic_fetch_add_explicit(&tt__threads_internal, 1, memory_order_release);
  void *r = walk_odd_body(arg);
  atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
  return r;
}

static const tt__snap_entry *entry_k(const tt_snapshot *s, uint32_t k) {
  return k < s->nv ? &s->v[k] : &s->sub->v[k - s->nv];
}

typedef struct id_key {
  tt_id id;
  uint32_t k; /* the entry's index (v, then sub->v) */
} id_key;

/* Sorts s's n entries by id into order: a radix sort of (id, index) pairs, 11 bits a pass over
 * the id's significant bits (two passes for a run's first 4 million ids), then the caller first,
 * as Go prints the dumping goroutine first. TT_ENOMEM without room for the pairs. */
static int sort_into(const tt_snapshot *s, uint32_t *order, size_t n) {
  id_key *a = malloc(2 * (n ? n : 1) * sizeof *a), *b = a + n;
  if (a == NULL)
    return TT_ENOMEM;
  tt_id maxid = 0;
  for (uint32_t k = 0; k < n; k++) {
    a[k] = (id_key){entry_k(s, k)->id, k};
    maxid = a[k].id > maxid ? a[k].id : maxid;
  }
  id_key *base = a;
  for (unsigned shift = 0; shift < 64 && maxid >> shift; shift += 11) {
    size_t count[2049] = {0};
    for (size_t i = 0; i < n; i++)
      count[((a[i].id >> shift) & 2047) + 1]++;
    for (size_t d = 0; d < 2048; d++)
      count[d + 1] += count[d];
    for (size_t i = 0; i < n; i++)
      b[count[(a[i].id >> shift) & 2047]++] = a[i];
    id_key *t = a;
    a = b;
    b = t;
  }
  size_t me = SIZE_MAX;
  for (size_t i = 0; i < n; i++) {
    order[i] = a[i].k;
    if (s->self && a[i].id == s->self)
      me = i;
  }
  free(base);
  if (me != SIZE_MAX) {
    uint32_t k = order[me];
    memmove(order + 1, order, me * sizeof *order);
    order[0] = k;
  }
  return 0;
}

/* Builds s's order (by id, the caller first). Only the formats and calls that show coroutines
 * one by one need it (pprof and debug=1 aggregate), so it is built on first use; two threads
 * writing one snapshot at once may both build it, and the first to publish wins. */
int tt__snap_sort(const tt_snapshot *cs) {
  tt_snapshot *s = (tt_snapshot *)cs;
  /* acquire: a published order's contents. */
  if (atomic_load_explicit(&s->order, memory_order_acquire) != NULL)
    return 0;
  uint32_t *order = malloc((s->n ? s->n : 1) * sizeof *order);
  if (order == NULL || sort_into(s, order, s->n) != 0) {
    free(order);
    return TT_ENOMEM;
  }
  uint32_t *none = NULL;
  /* release: the contents before the pointer. */
  if (!atomic_compare_exchange_strong_explicit(&s->order, &none, order, memory_order_release,
                                               memory_order_acquire))
    free(order);
  return 0;
}

int tt__snapshot_take(tt_snapshot **out, bool crash) {
  tt_snapshot *s = calloc(1, sizeof *s), *s2 = calloc(1, sizeof *s2);
  uintptr_t *buf = malloc(MAX_WALK * sizeof *buf), *buf2 = malloc(MAX_WALK * sizeof *buf2);
  tt__coro *self = tt__self();
  struct walk wk = {.s = s, .self = self, .buf = buf, .crash = crash};
  struct walk wk2 = {.s = s2, .self = self, .buf = buf2, .crash = crash};
  int err = TT_ENOMEM;
  if (s == NULL || s2 == NULL || buf == NULL || buf2 == NULL)
    goto out;
  s->self = self ? self->id : 0;
  s->taken = tt_now();
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  s->wall_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  /* Room for everyone alive now (a little more: spawns go on meanwhile). */
  tt_counts c;
  size_t want = 0;
  if (tt_counts_get(&c) == 0 && c.total > 0)
    want = (size_t)c.total + (size_t)c.total / 16 + 64;
  /* Two walkers on big registries (the walk is a stream of cache misses: two cores overlap
   * twice as many), the even chunks here and the odd ones on a helper thread; one otherwise,
   * and always one in a crash (no thread is created there). */
  pthread_t helper;
  bool two = !crash && sysconf(_SC_NPROCESSORS_ONLN) > 1 &&
             atomic_load_explicit(&tt__rt.nchunks, memory_order_acquire) >= 8;
  if (two && want && (s2->v = entries_alloc(want / 2 + 64)) != NULL)
    s2->cap = want / 2 + 64;
  two = two && pthread_create(&helper, NULL, walk_odd, &wk2) == 0;
  /* Each walker's entries sized for its share. */
  size_t share = two ? want / 2 + 64 : want;
  if (share && (s->v = entries_alloc(share)) != NULL)
    s->cap = share;
  tt__registry_walk_frozen_range(walk_one, &wk, 0, two ? 2 : 1, true);
  if (two) {
    pthread_join(helper, NULL);
    if (s2->err) {
      s->err = s2->err;
    } else {
      adopt(&wk, &wk2);
      s2 = NULL; /* s's now */
    }
  }
  /* The caller, unwound from here: its stack starts at the public call it made. */
  if (self && !s->err) {
    tt__snap_entry *e = new_entry(s);
    if (e) {
      fill(&wk, e, self, TT__S_RUNNING);
      int n = tt__unwind_here((uintptr_t)self->stack_lo,
                              (uintptr_t)self->stack_lo + self->stack_size, buf, MAX_WALK, 0);
      e->stack = intern_stack(s, buf, n > 0 ? (size_t)n : 0);
    }
  }
  /* Coroutines that were running elsewhere: capture each now. */
  for (size_t i = 0; i < wk.nrun && !s->err; i++) {
    pending_run *r = &wk.run[i];
    capture_one(&wk, r->sub ? &s->sub->v[r->entry] : &s->v[r->entry], r->co, r->id);
  }
  err = s->err;
  s->n = s->nv + (s->sub ? s->sub->nv : 0);
  if (err)
    goto out;
  *out = s;
  s = NULL;
out:
  free(wk.run);
  free(wk2.run);
  free(buf);
  free(buf2);
  tt_snapshot_free(s);
  tt_snapshot_free(s2);
  return err;
}

int tt_snapshot_take(tt_snapshot **out) {
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  if (!tt_running())
    return TT_ENOTRUNNING;
  return tt__snapshot_take(out, false);
}

size_t tt_snapshot_len(const tt_snapshot *s) { return s ? s->n : 0; }

static void entry_info(const tt__snap_entry *e, tt_coro_info *ci) {
  memset(ci, 0, sizeof *ci);
  ci->id = e->id;
  ci->parent = e->parent;
  ci->name = e->name;
  ci->state = e->state;
  ci->wait_reason = e->reason;
  ci->wait_obj = e->wait_obj;
  ci->blocked_since = e->blocked_since;
  ci->create_pc = e->create_pc;
  ci->daemon = e->daemon;
  ci->verdict = e->verdict;
  ci->worker = e->worker;
  ci->stack_size = e->stack_size;
  ci->labels = e->labels ? e->labels->v : NULL;
  ci->nlabels = e->labels ? e->labels->n : 0;
  ci->stack_lo = e->stack_lo;
  ci->stack_hi = e->stack_lo ? e->stack_lo + e->stack_size : NULL;
  if (e->extra && e->extra->cases) {
    ci->select_cases = e->extra->cases;
    ci->select_ncases = e->extra->ncases;
    ci->wait_obj = e->extra->cases;
  }
  if (e->stack) {
    ci->stack = e->stack->pcs;
    ci->nstack = e->stack->n;
    ci->stack_depth = e->stack->depth;
  }
  ci->stack_status = e->stack_status;
  if (e->extra && e->extra->ancestry) {
    ci->create_stack = e->extra->ancestry->pcs;
    ci->ncreate_stack = e->extra->ancestry->npcs;
  }
}

int tt_snapshot_get(const tt_snapshot *s, size_t i, tt_coro_info *out) {
  if (s == NULL || out == NULL || i >= s->n)
    return TT_EINVAL;
  int err = tt__snap_sort(s);
  if (err)
    return err;
  entry_info(tt__snap_at(s, i), out);
  return 0;
}

size_t tt_snapshot_filter(tt_snapshot *s, int (*keep)(const tt_coro_info *, void *), void *arg) {
  if (s == NULL || keep == NULL || tt__snap_sort(s) != 0)
    return s ? s->n : 0;
  uint32_t *order = atomic_load_explicit(&s->order, memory_order_relaxed); /* built above */
  size_t j = 0;
  for (size_t i = 0; i < s->n; i++) {
    tt_coro_info ci;
    entry_info(tt__snap_at(s, i), &ci);
    if (keep(&ci, arg))
      order[j++] = order[i];
  }
  s->n = j;
  return j;
}

void tt_snapshot_free(tt_snapshot *s) {
  if (s == NULL)
    return;
  for (size_t i = 0; i < s->caplsets; i++)
    if (s->lsets[i])
      tt__labels_release((tt__labels *)s->lsets[i]);
  for (size_t i = 0; i < s->capanc; i++)
    if (s->anc[i])
      tt__ancestry_release((tt__ancestry *)s->anc[i]);
  free(s->lsets);
  free(s->anc);
  free(s->stk);
  free(s->names);
  entries_free(s->v, s->cap);
  free(atomic_load_explicit(&s->order, memory_order_acquire));
  tt_snapshot_free(s->sub);
  while (s->arena) {
    struct tt__arena_blk *b = s->arena;
    s->arena = b->next;
    free(b);
  }
  free(s);
}

static int write_format(const tt_snapshot *s, tt__sink *k, int format) {
  switch (format) {
  case TT_DUMP_PPROF:
    return tt__write_pprof(s, k);
  case TT_DUMP_COUNTS:
    return tt__write_counts(s, k);
  case TT_DUMP_TRACES:
    return tt__write_traces(s, k);
  case TT_DUMP_JSON:
    return tt__write_json(s, k);
  }
  return TT_EINVAL;
}

static bool format_ok(int format) { return format >= TT_DUMP_PPROF && format <= TT_DUMP_JSON; }

int tt_snapshot_write(const tt_snapshot *s, int fd, int format) {
  if (s == NULL || fd < 0 || !format_ok(format))
    return TT_EINVAL;
  char *buf = malloc(64 << 10);
  if (buf == NULL)
    return TT_ENOMEM;
  tt__sink k;
  tt__sink_fd(&k, fd, buf, 64 << 10);
  int err = write_format(s, &k, format);
  int ferr = tt__sink_flush(&k);
  free(buf);
  return err ? err : ferr;
}

int tt_snapshot_write_mem(const tt_snapshot *s, int format, char **out, size_t *len) {
  if (s == NULL || out == NULL || !format_ok(format))
    return TT_EINVAL;
  tt__sink k;
  tt__sink_mem(&k);
  int err = write_format(s, &k, format);
  if (err) {
    char *p;
    if (tt__sink_take(&k, &p, NULL) == 0)
      free(p);
    return err;
  }
  return tt__sink_take(&k, out, len);
}

int tt_dump(int fd, int format) {
  if (fd < 0 || !format_ok(format))
    return TT_EINVAL;
  tt_snapshot *s;
  int err = tt_snapshot_take(&s);
  if (err)
    return err;
  err = tt_snapshot_write(s, fd, format);
  tt_snapshot_free(s);
  return err;
}

int tt_dump_mem(int format, char **out, size_t *len) {
  if (out == NULL || !format_ok(format))
    return TT_EINVAL;
  tt_snapshot *s;
  int err = tt_snapshot_take(&s);
  if (err)
    return err;
  err = tt_snapshot_write_mem(s, format, out, len);
  tt_snapshot_free(s);
  return err;
}

/* Test hook: makes s look as if taken ns later (block times grow by ns). */
void tt__snapshot_age(tt_snapshot *s, int64_t ns);
void tt__snapshot_age(tt_snapshot *s, int64_t ns) { s->taken += ns; }
