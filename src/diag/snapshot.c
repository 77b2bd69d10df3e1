/* SPDX-License-Identifier: MIT */
/* Snapshots: every live coroutine with its stack, read from the registry one chunk at a time.
 *
 * A suspended coroutine is unwound from its saved context while the registry walk holds it still
 * (its scan bit); the caller unwinds itself; a coroutine running on another worker is captured
 * by a signal after the walk (capture.c). Stacks are interned by content: a million coroutines
 * parked in a few places share a few records, which is what makes the formats fast (each
 * distinct stack is symbolized once). Names are copied and interned; label sets and creation
 * records, immutable and reference counted, are shared with the runtime. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* The interned record for pcs[0..depth) (depth frames walked, of which the buffer holds all). */
static const tt__stk *intern_stack(tt_snapshot *s, const uintptr_t *pcs, size_t depth) {
  uintptr_t keep[TT_STACK_KEEP];
  size_t n = depth;
  if (depth > TT_STACK_KEEP) {
    memcpy(keep, pcs, TT_STACK_KEEP / 2 * sizeof *pcs);
    memcpy(keep + TT_STACK_KEEP / 2, pcs + depth - TT_STACK_KEEP / 2,
           TT_STACK_KEEP / 2 * sizeof *pcs);
    pcs = keep;
    n = TT_STACK_KEEP;
  }
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

static tt__snap_entry *new_entry(tt_snapshot *s) {
  if (s->n == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 1024;
    tt__snap_entry *v = realloc(s->v, ncap * sizeof *v);
    if (v == NULL) {
      s->err = TT_ENOMEM;
      return NULL;
    }
    s->v = v;
    s->cap = ncap;
  }
  tt__snap_entry *e = &s->v[s->n++];
  memset(e, 0, sizeof *e);
  return e;
}

/* A coroutine running on another worker, captured after the walk. */
typedef struct pending_run {
  tt__coro *co;
  tt_id id;
  size_t entry;
} pending_run;

struct walk {
  tt_snapshot *s;
  uintptr_t *buf; /* MAX_WALK pcs */
  pending_run *run;
  size_t nrun, caprun;
  bool crash;
};

/* Copies what the registry holds about co into e; co is held still, or is the caller. */
static void fill(struct walk *wk, tt__snap_entry *e, tt__coro *co, uint32_t st) {
  tt_snapshot *s = wk->s;
  e->id = co->id;
  e->parent = co->parent;
  e->name = intern_name(s, co->name);
  if (co->labels && hold_ptr(s, (const void ***)&s->lsets, &s->nlsets, &s->caplsets, co->labels,
                             &co->labels->refs))
    e->labels = co->labels;
  if (co->ancestry &&
      hold_ptr(s, (const void ***)&s->anc, &s->nanc, &s->capanc, co->ancestry, &co->ancestry->refs))
    e->ancestry = co->ancestry;
  e->state = (uint8_t)tt__state_public(st);
  e->daemon = co->daemon;
  e->create_pc = co->create_pc;
  e->worker = co->w ? co->w->index : -1;
  e->stack_size = co->sp || co == tt__self() ? co->stack_size : co->stack_req;
  if (co->w) {
    e->stack_lo = co->stack_lo;
    e->stack_hi = co->stack_lo + co->stack_size;
  }
  if (st == TT__S_WAITING) {
    e->reason = co->wait_reason;
    e->wait_obj = co->wait_obj;
    e->blocked_since = co->blocked_since;
    if (e->reason == TT_WAIT_SELECT && co->wait_obj) {
      const tt__select_wait *sw = co->wait_obj;
      tt_select_case *c = sw->n ? arena_alloc(s, sw->n * sizeof *c) : NULL;
      if (c) {
        memcpy(c, sw->cases, sw->n * sizeof *c);
        e->cases = c;
        e->ncases = sw->n;
      }
      e->wait_obj = sw->cases;
    }
  }
}

static void walk_one(tt__coro *co, uint32_t st, bool held, void *arg) {
  struct walk *wk = arg;
  tt_snapshot *s = wk->s;
  if (s->err)
    return;
  tt__coro *self = tt__self();
  if (co != self && !held) {
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
    if (wk->crash)
      return;
    if (wk->nrun == wk->caprun) {
      size_t ncap = wk->caprun ? wk->caprun * 2 : 16;
      pending_run *v = realloc(wk->run, ncap * sizeof *v);
      if (v == NULL)
        return;
      wk->run = v;
      wk->caprun = ncap;
    }
    wk->run[wk->nrun++] = (pending_run){co, e->id, s->n - 1};
    return;
  }
  tt__snap_entry *e = new_entry(s);
  if (e == NULL)
    return;
  fill(wk, e, co, co == self ? TT__S_RUNNING : st);
  int n;
  if (co == self) {
    /* Skip tt__snapshot_take's own frames: the stack starts at the public call. */
    n = tt__unwind_here((uintptr_t)co->stack_lo, (uintptr_t)co->stack_lo + co->stack_size, wk->buf,
                        MAX_WALK, 0);
  } else if (co->sp == NULL) {
    /* Never ran: its start function, as Go shows an unstarted goroutine's. */
    wk->buf[0] = (uintptr_t)co->fn + 1;
    n = 1;
    e->stack_status = TT_STACK_NOT_STARTED;
  } else {
    tt__uregs r;
    tt__uregs_from_saved(&r, co->sp);
    n = tt__unwind(&r, (uintptr_t)co->stack_lo, (uintptr_t)co->stack_lo + co->stack_size, wk->buf,
                   MAX_WALK);
  }
  e->stack = intern_stack(s, wk->buf, n > 0 ? (size_t)n : 0);
}

/* A coroutine that was running on another worker during the walk: captured by a signal if it
 * still runs, else held and unwound like the others (it may start and stop again meanwhile: a
 * few rounds). */
static void capture_one(struct walk *wk, tt__snap_entry *e, tt__coro *co, tt_id id) {
  tt_snapshot *s = wk->s;
  for (int round = 0; round < 4; round++) {
    int n = tt__capture_running(co, id, wk->buf, MAX_WALK, &e->worker);
    if (n > 0) {
      e->stack = intern_stack(s, wk->buf, (size_t)n);
      e->stack_status = TT_STACK_OK;
      return;
    }
    if (n == TT_ETIMEDOUT)
      return;
    uint32_t st;
    if (tt__coro_hold(co, &st)) {
      bool same = co->id == id;
      if (same) {
        fill(wk, e, co, st);
        e->stack_status = TT_STACK_OK;
        tt__uregs r;
        tt__uregs_from_saved(&r, co->sp);
        n = tt__unwind(&r, (uintptr_t)co->stack_lo, (uintptr_t)co->stack_lo + co->stack_size,
                       wk->buf, MAX_WALK);
        e->stack = intern_stack(s, wk->buf, n > 0 ? (size_t)n : 0);
      }
      tt__scan_release(co);
      return; /* read, or gone (exited: the entry stays as the walk saw it) */
    }
    if (__atomic_load_n(&co->id, __ATOMIC_RELAXED) != id)
      return;
  }
}

static int cmp_entry(const void *a, const void *b) {
  const tt__snap_entry *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

int tt__snapshot_take(tt_snapshot **out, bool crash) {
  tt_snapshot *s = calloc(1, sizeof *s);
  uintptr_t *buf = malloc(MAX_WALK * sizeof *buf);
  if (s == NULL || buf == NULL) {
    free(s);
    free(buf);
    return TT_ENOMEM;
  }
  tt__coro *self = tt__self();
  s->self = self ? self->id : 0;
  s->taken = tt_now();
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  s->wall_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  struct walk wk = {.s = s, .buf = buf, .crash = crash};
  tt__registry_walk_frozen(walk_one, &wk);
  /* Coroutines that were running elsewhere: capture each now (it may have stopped meanwhile:
   * then the capture says so and it keeps only the stable fields). */
  for (size_t i = 0; i < wk.nrun && !s->err; i++)
    capture_one(&wk, &s->v[wk.run[i].entry], wk.run[i].co, wk.run[i].id);
  free(wk.run);
  free(buf);
  if (s->err) {
    int err = s->err;
    tt_snapshot_free(s);
    return err;
  }
  qsort(s->v, s->n, sizeof *s->v, cmp_entry);
  /* The caller first, as Go prints the dumping goroutine first. */
  for (size_t i = 0; i < s->n && s->self; i++) {
    if (s->v[i].id == s->self) {
      tt__snap_entry me = s->v[i];
      memmove(s->v + 1, s->v, i * sizeof *s->v);
      s->v[0] = me;
      break;
    }
  }
  *out = s;
  return 0;
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

static void entry_info(const tt_snapshot *s, const tt__snap_entry *e, tt_coro_info *ci) {
  (void)s;
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
  ci->worker = e->worker;
  ci->stack_size = e->stack_size;
  ci->labels = e->labels ? e->labels->v : NULL;
  ci->nlabels = e->labels ? e->labels->n : 0;
  ci->stack_lo = e->stack_lo;
  ci->stack_hi = e->stack_hi;
  ci->select_cases = e->cases;
  ci->select_ncases = e->ncases;
  if (e->cases)
    ci->wait_obj = e->cases;
  if (e->stack) {
    ci->stack = e->stack->pcs;
    ci->nstack = e->stack->n;
    ci->stack_depth = e->stack->depth;
  }
  ci->stack_status = e->stack_status;
  if (e->ancestry) {
    ci->create_stack = e->ancestry->pcs;
    ci->ncreate_stack = e->ancestry->npcs;
  }
}

int tt_snapshot_get(const tt_snapshot *s, size_t i, tt_coro_info *out) {
  if (s == NULL || out == NULL || i >= s->n)
    return TT_EINVAL;
  entry_info(s, &s->v[i], out);
  return 0;
}

size_t tt_snapshot_filter(tt_snapshot *s, int (*keep)(const tt_coro_info *, void *), void *arg) {
  if (s == NULL || keep == NULL)
    return s ? s->n : 0;
  size_t j = 0;
  for (size_t i = 0; i < s->n; i++) {
    tt_coro_info ci;
    entry_info(s, &s->v[i], &ci);
    if (keep(&ci, arg))
      s->v[j++] = s->v[i];
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
  free(s->v);
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
