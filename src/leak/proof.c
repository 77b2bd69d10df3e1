/* SPDX-License-Identifier: MIT */
/* The leak proof: which blocked coroutines nothing live can ever wake (DESIGN.md section 5,
 * rules R1-R6), and which of those wait on each other in a cycle of locks.
 *
 * Design
 * ------
 * C has no garbage collector to say what is reachable, so the proof reasons from what the runtime
 * knows exactly: who holds each reference to a tracked channel (R1, R2; src/chan/ref.c), who holds
 * each lock (src/sync), which coroutines belong to which context and group. The world is stopped
 * first (tt__stw_begin: every worker parked between two coroutines, so no operation is half done)
 * and the proof reads it as a graph:
 *
 *   nodes   blocked coroutines (parked, token unclaimed: the set B), and the objects they wait on
 *           or that those depend on: channels, mutexes, rwmutexes, contexts, groups;
 *   edges   "if u is live, v may yet be woken / used": a coroutine that holds a reference to a
 *           channel -> the channel; a channel -> the coroutines waiting on it; a channel -> the
 *           channels its buffered values carry; a lock's holder -> the lock -> its waiters; a
 *           context's cancellers -> the context -> its member coroutines and child contexts;
 *           a group's children -> the group -> its waiters;
 *   roots   (R3) everything that runs or can run by itself: coroutines not in B, timed waits,
 *           waits on objects without owners (wait groups, conditions, semaphores, onces,
 *           untracked and detached channels, timer channels, blocking calls), plain threads,
 *           signal registrations, armed timers, pool tasks, contexts with a deadline or a
 *           signal hook or already cancelled, and any reference the runtime cannot attribute
 *           (a context's count above the references it can name, a rwmutex's readers above the
 *           holders it can name): those count as live, never as dead.
 *
 * Liveness is the least fixed point (R4): what the roots reach, found by one breadth-first walk.
 * The coroutines of B it does not reach are leaked: nothing that can still run holds a way to
 * wake them, and nothing can acquire one, because every way to obtain a reference passes through
 * a live holder (R1). A cycle of lock waits among them is a deadlock.
 *
 * Plain threads are not stopped. Each change they make to what the proof reads is counted
 * (tt__thread_mut_begin/end, internal.h); a proof during which one began, or at whose start one
 * was under way, is thrown away and retried (R5).
 *
 * The graph is built from B outwards: only objects some blocked coroutine depends on, directly or
 * through holders, are visited, so a million coroutines parked on one channel cost a million
 * nodes and one channel, not a walk of every object of the program.
 *
 * Verdicts are sticky: a leaked coroutine stays leaked (only the runtime's shut-down wakes it), so
 * the verdict is stored on the coroutine (co->verdict, shown by the dumps) and in a table kept
 * across checks (when it was first proven and, in eager mode, what removed its last live waker).
 *
 * Rejected: a reachability scan of memory (conservative GC style): C pointers hide in integers,
 * registers and foreign memory, so it proves nothing; a model of the program kept incrementally
 * on every operation: it would put the proof's cost on every channel operation, where the
 * benchmarks allow none. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chan/chan_int.h"
#include "diag/snap_int.h"
#include "leak/leak_int.h"
#include "sync/sync_int.h"

tt__mutcount tt__thread_mut;

bool tt__wake_claim_thread(tt__waiter *wt, int result) {
  uint32_t exp = TT__WAITING;
  atomic_fetch_add_explicit(&tt__thread_mut.begins, 1, memory_order_seq_cst);
  /* acq_rel: as tt__wake_claim's. */
  bool won = atomic_compare_exchange_strong_explicit(&wt->token, &exp, (uint32_t)result,
                                                     memory_order_acq_rel, memory_order_acquire);
  atomic_fetch_add_explicit(&tt__thread_mut.ends, 1, memory_order_seq_cst);
  return won;
}

#define STW_TIMEOUT (100 * TT_MSEC)
#define ATTEMPTS 16

/* ---- The graph ------------------------------------------------------------------------------ */

enum { N_CORO, N_CHAN, N_MUTEX, N_RW, N_CTX, N_GROUP };

typedef struct node {
  const void *key;
  uint8_t kind;
  uint8_t root;
  uint8_t live;
  uint32_t e0, ne; /* its out-edges in the CSR array */
} node;

typedef struct edge {
  uint32_t from, to;
} edge;

/* Open addressing over (key, kind) -> value; keys are pointers or ids, kinds keep them apart. */
typedef struct map {
  uint64_t *k;
  uint32_t *v;
  uint8_t *kind;
  uint32_t cap, n;
} map;

typedef struct saved_ref {
  struct tt_ctx *ctx;
  uint32_t co; /* node of a coroutine in B that keeps ctx in a tt_ctx_enter region */
} saved_ref;

typedef struct rw_reader {
  const void *rw;
  uint32_t co;
} rw_reader;

typedef struct idnode {
  tt_id id;
  uint32_t node;
} idnode;

typedef struct proof {
  tt__coro *self; /* the caller, when it is a coroutine */
  uint32_t gen;   /* this proof's number: coroutines' and channels' scratch fields name it */
  idnode *ids;    /* the coroutines of B by id, sorted (built on first need) */
  bool ids_built;
  node *nodes;
  uint32_t nn;
  size_t capn;
  edge *edges;
  size_t ne, cape;
  uint32_t *adj; /* CSR targets */
  map objs;      /* (object, kind) -> node for mutexes, rwmutexes, contexts and groups (coroutines
                    and channels keep theirs in scratch fields) */
  map ctxrefs;   /* context -> references named by coroutines (bit 31: one of them is live) */
  uint32_t *work;
  size_t nwork, capwork;
  saved_ref *saved;
  size_t nsaved, capsaved;
  rw_reader *readers;
  size_t nreaders;
  bool readers_built;
  uint32_t nb; /* coroutine nodes: they are nodes[0..nb) once the walk is done */
  bool oom;
} proof;

static void *grow(void *p, size_t *cap, size_t need, size_t size, bool *oom) {
  if (need <= *cap)
    return p;
  size_t c = *cap ? *cap : 64;
  while (c < need)
    c *= 2;
  void *q = tt__realloc(p, c * size);
  if (q == NULL) {
    *oom = true;
    return NULL;
  }
  *cap = c;
  return q;
}

static inline uint64_t hash64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static bool map_init(map *m, uint32_t cap) {
  m->cap = cap;
  m->n = 0;
  m->k = tt__calloc(cap, sizeof *m->k);
  m->v = tt__malloc(cap * sizeof *m->v);
  m->kind = tt__calloc(cap, 1);
  return m->k && m->v && m->kind;
}

static void map_free(map *m) {
  free(m->k);
  free(m->v);
  free(m->kind);
  memset(m, 0, sizeof *m);
}

/* The slot of (key, kind): where it is, or the empty slot where it goes. Kind is stored + 1
 * (0: empty). */
static uint32_t map_slot(const map *m, uint64_t key, uint8_t kind) {
  uint32_t mask = m->cap - 1;
  for (uint32_t i = (uint32_t)hash64(key ^ ((uint64_t)kind << 59)) & mask;; i = (i + 1) & mask)
    if (m->kind[i] == 0 || (m->k[i] == key && m->kind[i] == kind + 1))
      return i;
}

static bool map_get(const map *m, uint64_t key, uint8_t kind, uint32_t *v) {
  if (m->cap == 0)
    return false;
  uint32_t i = map_slot(m, key, kind);
  if (m->kind[i] == 0)
    return false;
  *v = m->v[i];
  return true;
}

/* The value slot of (key, kind), inserted with init if new; NULL when out of memory. */
static uint32_t *map_put(map *m, uint64_t key, uint8_t kind, uint32_t init, bool *fresh) {
  if ((m->n + 1) * 4 > m->cap * 3) {
    map old = *m;
    if (!map_init(m, old.cap ? old.cap * 2 : 1024)) {
      map_free(m);
      *m = old;
      return NULL;
    }
    for (uint32_t i = 0; i < old.cap; i++)
      if (old.kind[i]) {
        uint32_t j = map_slot(m, old.k[i], (uint8_t)(old.kind[i] - 1));
        m->k[j] = old.k[i];
        m->kind[j] = old.kind[i];
        m->v[j] = old.v[i];
        m->n++;
      }
    map_free(&old);
  }
  uint32_t i = map_slot(m, key, kind);
  *fresh = m->kind[i] == 0;
  if (*fresh) {
    m->k[i] = key;
    m->kind[i] = (uint8_t)(kind + 1);
    m->v[i] = init;
    m->n++;
  }
  return &m->v[i];
}

/* The node of (obj, kind), created (and queued for expansion unless it is a coroutine) if new;
 * UINT32_MAX when out of memory. */
static uint32_t node_of(proof *p, const void *obj, uint8_t kind) {
  uint32_t *slot;
  bool fresh;
  if (kind == N_CORO || kind == N_CHAN) {
    uint32_t *gen = kind == N_CORO ? &((tt__coro *)obj)->proof_gen : &((tt__chan *)obj)->proof_gen;
    slot = kind == N_CORO ? &((tt__coro *)obj)->proof_node : &((tt__chan *)obj)->proof_node;
    fresh = *gen != p->gen;
    if (fresh) {
      *gen = p->gen;
      *slot = p->nn;
    }
  } else {
    slot = map_put(&p->objs, (uint64_t)(uintptr_t)obj, kind, p->nn, &fresh);
    if (slot == NULL) {
      p->oom = true;
      return UINT32_MAX;
    }
  }
  if (!fresh)
    return *slot;
  node *nodes = grow(p->nodes, &p->capn, (size_t)p->nn + 1, sizeof *nodes, &p->oom);
  if (nodes == NULL)
    return UINT32_MAX;
  p->nodes = nodes;
  p->nodes[p->nn] = (node){.key = obj, .kind = kind};
  if (kind != N_CORO) {
    uint32_t *w = grow(p->work, &p->capwork, p->nwork + 1, sizeof *w, &p->oom);
    if (w == NULL)
      return UINT32_MAX;
    p->work = w;
    p->work[p->nwork++] = p->nn;
  }
  return p->nn++;
}

static void add_edge(proof *p, uint32_t from, uint32_t to) {
  if (from == UINT32_MAX || to == UINT32_MAX)
    return;
  edge *e = grow(p->edges, &p->cape, p->ne + 1, sizeof *e, &p->oom);
  if (e == NULL)
    return;
  p->edges = e;
  p->edges[p->ne++] = (edge){from, to};
}

static void set_root(proof *p, uint32_t n) {
  if (n != UINT32_MAX)
    p->nodes[n].root = 1;
}

/* The node of the blocked coroutine co, if it is in B. */
static bool coro_node(proof *p, const tt__coro *co, uint32_t *n) {
  if (co->proof_gen != p->gen)
    return false;
  *n = co->proof_node;
  return true;
}

/* The node of channel c, if the proof has one. */
static bool chan_node(proof *p, const tt__chan *c, uint32_t *n) {
  if (c->proof_gen != p->gen)
    return false;
  *n = c->proof_node;
  return true;
}

static int idnode_cmp(const void *a, const void *b) {
  tt_id x = ((const idnode *)a)->id, y = ((const idnode *)b)->id;
  return (x > y) - (x < y);
}

/* The node of the coroutine of B with this id (a lock holder, a group child). */
static bool id_node(proof *p, tt_id id, uint32_t *n) {
  if (!p->ids_built) {
    p->ids_built = true;
    p->ids = tt__malloc(((size_t)p->nb + 1) * sizeof *p->ids);
    if (p->ids == NULL) {
      p->oom = true;
      return false;
    }
    for (uint32_t i = 0; i < p->nb; i++)
      p->ids[i] = (idnode){((const tt__coro *)p->nodes[i].key)->id, i};
    qsort(p->ids, p->nb, sizeof *p->ids, idnode_cmp);
  }
  if (p->ids == NULL)
    return false;
  size_t lo = 0, hi = p->nb;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (p->ids[mid].id < id)
      lo = mid + 1;
    else if (p->ids[mid].id > id)
      hi = mid;
    else {
      *n = p->ids[mid].node;
      return true;
    }
  }
  return false;
}

/* ---- Walking the coroutines ----------------------------------------------------------------- */

bool tt__leak_reason_is_root(int reason) {
  switch (reason) {
  case TT_WAIT_CHAN_RECV:
  case TT_WAIT_CHAN_SEND:
  case TT_WAIT_CHAN_RECV_NIL:
  case TT_WAIT_CHAN_SEND_NIL:
  case TT_WAIT_SELECT:
  case TT_WAIT_SELECT_NO_CASES:
  case TT_WAIT_MUTEX_LOCK:
  case TT_WAIT_RWMUTEX_RLOCK:
  case TT_WAIT_RWMUTEX_LOCK:
  case TT_WAIT_GROUP_WAIT:
    return false;
  default:
    return true; /* sleep, I/O, conditions, wait groups, semaphores, onces, blocking calls */
  }
}

/* Whether co is in B: parked, and no waker has claimed it. */
static bool blocked(const tt__coro *co) {
  if ((atomic_load_explicit(&co->status, memory_order_acquire) & TT__S_STATE_MASK) != TT__S_WAITING)
    return false;
  tt__waiter *wt = co->waiter;
  return wt != NULL && atomic_load_explicit(&wt->token, memory_order_acquire) == TT__WAITING;
}

/* Counts a reference to context c held by a coroutine (live or not). */
static void ctx_named(proof *p, struct tt_ctx *c, bool live) {
  if (c == NULL)
    return;
  if (p->ctxrefs.cap == 0 && !map_init(&p->ctxrefs, 64)) {
    p->oom = true;
    return;
  }
  bool fresh;
  uint32_t *v = map_put(&p->ctxrefs, (uint64_t)(uintptr_t)c, 0, 0, &fresh);
  if (v == NULL) {
    p->oom = true;
    return;
  }
  *v = (*v + 1) | (live ? 1u << 31 : 0);
}

static void walk_one(tt__coro *co, void *arg) {
  proof *p = arg;
  bool in_b = co != p->self && blocked(co);
  uint32_t n = UINT32_MAX;
  if (in_b)
    n = node_of(p, co, N_CORO);
  if (co->ctx == NULL && co->ctx_depth == 0)
    return;
  ctx_named(p, co->ctx, !in_b);
  for (uint32_t i = 0; i < co->ctx_depth; i++) {
    struct tt_ctx *c = co->ctx_saved[i];
    ctx_named(p, c, !in_b);
    if (in_b && c) {
      saved_ref *s = grow(p->saved, &p->capsaved, p->nsaved + 1, sizeof *s, &p->oom);
      if (s) {
        p->saved = s;
        p->saved[p->nsaved++] = (saved_ref){c, n};
      }
    }
  }
}

/* co (node n) waits on the channel behind handle. */
static void chan_dep(proof *p, uint32_t n, const tt_chan *handle) {
  tt__chan *c = tt__chan_of(handle);
  if (c->dctx) { /* a context's done channel: closed exactly when the context is cancelled */
    add_edge(p, node_of(p, c->dctx, N_CTX), n);
    return;
  }
  if (c->timer || tt__chan_mode(handle) != TT_CHAN_TRACKED) {
    set_root(p, n); /* a timer sends; anyone may use an untracked or detached channel */
    return;
  }
  add_edge(p, node_of(p, c, N_CHAN), n);
}

/* The objects blocked coroutine co (node n) waits on, and its context. */
static void coro_deps(proof *p, uint32_t n) {
  tt__coro *co = (tt__coro *)p->nodes[n].key;
  int reason = co->wait_reason;
  if (co->wait_timed || tt__leak_reason_is_root(reason) ||
      tt__cancel_pending(atomic_load_explicit(&co->cancelled, memory_order_relaxed))) {
    set_root(p, n);
    return;
  }
  switch (reason) {
  case TT_WAIT_CHAN_RECV:
  case TT_WAIT_CHAN_SEND:
    chan_dep(p, n, co->wait_obj);
    break;
  case TT_WAIT_SELECT: {
    const tt__select_wait *sw = co->wait_obj;
    for (size_t i = 0; i < sw->n; i++)
      if (sw->cases[i].ch)
        chan_dep(p, n, sw->cases[i].ch);
    break;
  }
  case TT_WAIT_MUTEX_LOCK:
    add_edge(p, node_of(p, co->wait_obj, N_MUTEX), n);
    break;
  case TT_WAIT_RWMUTEX_RLOCK:
  case TT_WAIT_RWMUTEX_LOCK:
    add_edge(p, node_of(p, co->wait_obj, N_RW), n);
    break;
  case TT_WAIT_GROUP_WAIT:
    add_edge(p, node_of(p, co->wait_obj, N_GROUP), n);
    break;
  default: /* nil channels, empty selects: nothing but the context */
    break;
  }
  /* Cancelling its context wakes it, unless a shield is up. */
  if (co->ctx && co->shield == 0) {
    struct tt_ctx *a = tt__ctx_anchor(co->ctx);
    if (a)
      add_edge(p, node_of(p, a, N_CTX), n);
  }
}

/* ---- Expanding objects ---------------------------------------------------------------------- */

static void expand_chan(proof *p, uint32_t n, tt__chan *c) {
  tt__lock_acquire(&c->rlock);
  for (tt__ref *r = c->holders; r; r = r->cnext) {
    tt__holder *h = r->h;
    uint32_t k;
    switch (h->kind) {
    case TT__HOLDER_CORO:
      /* A coroutine outside B runs or can: the channel is live. (A holder whose owner is not
       * set yet is a spawn under way.) */
      if (h->owner && coro_node(p, h->owner, &k))
        add_edge(p, k, n);
      else
        set_root(p, n);
      break;
    case TT__HOLDER_CARRIER:
      /* Carried by values in another channel's buffer: usable once they are received. */
      add_edge(p, node_of(p, (tt__chan *)h->owner, N_CHAN), n);
      break;
    default: /* threads, signal registrations, pool tasks, armed timers, context values */
      set_root(p, n);
      break;
    }
  }
  tt__lock_release(&c->rlock);
}

/* An edge from the coroutine that token names (a lock holder) to node n, or a root when it is
 * not in B. */
static void holder_dep(proof *p, uint32_t n, const tt__lockinfo *li) {
  uint32_t k;
  switch (li->state) {
  case TT_LOCK_CORO:
    if (id_node(p, li->id, &k))
      add_edge(p, k, n);
    else
      set_root(p, n);
    break;
  case TT_LOCK_EXITED:
    break; /* held forever */
  default:
    set_root(p, n); /* a plain thread holds it, or it is being handed over */
    break;
  }
}

static int reader_cmp(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const rw_reader *)a)->rw, y = (uintptr_t)((const rw_reader *)b)->rw;
  return (x > y) - (x < y);
}

/* The read holds of the coroutines in B, sorted by rwmutex (built on first need). */
static void build_readers(proof *p) {
  p->readers_built = true;
  size_t cap = 0;
  for (uint32_t i = 0; i < p->nb; i++) {
    tt__coro *co = (tt__coro *)p->nodes[i].key;
    tt__held *h = co->locks;
    for (uint32_t j = 0; h && j < h->n; j++) {
      if (h->v[j].kind != TT__HELD_READ)
        continue;
      rw_reader *r = grow(p->readers, &cap, p->nreaders + 1, sizeof *r, &p->oom);
      if (r == NULL)
        return;
      p->readers = r;
      p->readers[p->nreaders++] = (rw_reader){h->v[j].obj, i};
    }
  }
  if (p->nreaders > 1) /* readers is NULL when there are none (UBSan) */
    qsort(p->readers, p->nreaders, sizeof *p->readers, reader_cmp);
}

static void expand_rw(proof *p, uint32_t n, const void *rw) {
  tt__lockinfo wr;
  int64_t readers = 0, exited = 0;
  if (tt__rwmutex_info(rw, &wr, &readers, &exited, NULL) != 0) {
    set_root(p, n); /* destroyed: its waiters are told */
    return;
  }
  if (wr.state != TT_LOCK_FREE)
    holder_dep(p, n, &wr);
  else if (readers == 0)
    set_root(p, n); /* free with waiters: a hand-over under way */
  if (readers == 0)
    return;
  if (!p->readers_built)
    build_readers(p);
  int64_t named = exited;
  size_t lo = 0, hi = p->nreaders;
  while (lo < hi) { /* the first entry for rw */
    size_t mid = (lo + hi) / 2;
    if ((uintptr_t)p->readers[mid].rw < (uintptr_t)rw)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (size_t i = lo; i < p->nreaders && p->readers[i].rw == rw; i++, named++)
    add_edge(p, p->readers[i].co, n);
  if (readers > named)
    set_root(p, n); /* a read hold of a live coroutine or a plain thread */
}

struct group_arg {
  proof *p;
  uint32_t n;
  int64_t named;
};

static void group_child(tt_id id, void *arg) {
  struct group_arg *ga = arg;
  uint32_t k;
  ga->named++;
  if (id != 0 && id_node(ga->p, id, &k))
    add_edge(ga->p, k, ga->n);
  else
    set_root(ga->p, ga->n); /* running, or not started yet */
}

static void expand_ctx(proof *p, uint32_t n, struct tt_ctx *a) {
  tt__ctx_facts f;
  tt__ctx_get_facts(a, &f);
  if (f.root) {
    set_root(p, n);
    return;
  }
  if (f.parent_anchor) /* cancelling an ancestor cancels it */
    add_edge(p, node_of(p, f.parent_anchor, N_CTX), n);
  /* Who can call tt_ctx_cancel on it: a coroutine whose current context it is, or one that keeps
   * it in a region; any reference the coroutines do not account for (a variable, a group, a value
   * context below it) is someone's we cannot see: live. */
  uint32_t named = 0;
  if (map_get(&p->ctxrefs, (uint64_t)(uintptr_t)a, 0, &named) && (named >> 31)) {
    set_root(p, n);
    return;
  }
  named &= ~(1u << 31);
  if (f.refs > named + f.nchildren) {
    set_root(p, n);
    return;
  }
  uint32_t k;
  for (tt__coro *m = f.members; m; m = m->ctx_next)
    if (m->ctx == a && coro_node(p, m, &k))
      add_edge(p, k, n);
  for (size_t i = 0; i < p->nsaved; i++)
    if (p->saved[i].ctx == a)
      add_edge(p, p->saved[i].co, n);
}

static void expand(proof *p, uint32_t n) {
  const void *obj = p->nodes[n].key;
  switch (p->nodes[n].kind) {
  case N_CHAN:
    expand_chan(p, n, (tt__chan *)obj);
    break;
  case N_MUTEX: {
    tt__lockinfo li;
    if (tt__mutex_info(obj, &li) != 0)
      set_root(p, n);
    else if (li.state == TT_LOCK_FREE)
      set_root(p, n);
    else
      holder_dep(p, n, &li);
    break;
  }
  case N_RW:
    expand_rw(p, n, obj);
    break;
  case N_CTX:
    expand_ctx(p, n, (struct tt_ctx *)obj);
    break;
  case N_GROUP: {
    struct group_arg ga = {p, n, 0};
    int64_t live = tt__group_children(obj, group_child, &ga);
    if (live > ga.named)
      set_root(p, n);
    break;
  }
  }
}

/* ---- Liveness ------------------------------------------------------------------------------- */

/* The least fixed point: everything the roots reach. */
static void solve(proof *p) {
  uint32_t *cnt = tt__calloc((size_t)p->nn + 1, sizeof *cnt);
  p->adj = tt__malloc((p->ne ? p->ne : 1) * sizeof *p->adj);
  uint32_t *queue = tt__malloc(((size_t)p->nn + 1) * sizeof *queue);
  if (cnt == NULL || p->adj == NULL || queue == NULL) {
    p->oom = true;
    free(cnt);
    free(queue);
    return;
  }
  for (size_t i = 0; i < p->ne; i++)
    cnt[p->edges[i].from + 1]++;
  for (uint32_t i = 0; i < p->nn; i++) {
    cnt[i + 1] += cnt[i];
    p->nodes[i].e0 = cnt[i];
    p->nodes[i].ne = 0;
  }
  for (size_t i = 0; i < p->ne; i++) {
    node *u = &p->nodes[p->edges[i].from];
    p->adj[u->e0 + u->ne++] = p->edges[i].to;
  }
  free(cnt);
  size_t qh = 0, qt = 0;
  for (uint32_t i = 0; i < p->nn; i++)
    if (p->nodes[i].root) {
      p->nodes[i].live = 1;
      queue[qt++] = i;
    }
  while (qh < qt) {
    node *u = &p->nodes[queue[qh++]];
    for (uint32_t j = 0; j < u->ne; j++) {
      uint32_t v = p->adj[u->e0 + j];
      if (!p->nodes[v].live) {
        p->nodes[v].live = 1;
        queue[qt++] = v;
      }
    }
  }
  free(queue);
}

static void proof_free(proof *p) {
  free(p->nodes);
  free(p->edges);
  free(p->adj);
  free(p->work);
  free(p->saved);
  free(p->readers);
  free(p->ids);
  map_free(&p->objs);
  map_free(&p->ctxrefs);
  memset(p, 0, sizeof *p);
}

/* Builds the graph and solves it, the world stopped. */
/* Prefetching ahead of the two passes over a million objects, each a miss or more: the
 * coroutines' descriptors and what they wait on; the channels and their holder lists. */
#define AHEAD 8

static void prefetch_deps(proof *p, uint32_t i) {
  if (i + AHEAD < p->nb)
    __builtin_prefetch(p->nodes[i + AHEAD].key);
  if (i + AHEAD / 2 < p->nb) {
    const tt__coro *co = p->nodes[i + AHEAD / 2].key;
    if (co->wait_obj)
      __builtin_prefetch(co->wait_obj);
  }
}

static void prefetch_expand(proof *p, size_t w) {
  if (w + AHEAD < p->nwork)
    __builtin_prefetch(p->nodes[p->work[w + AHEAD]].key);
  if (w + AHEAD / 2 < p->nwork && p->nodes[p->work[w + AHEAD / 2]].kind == N_CHAN) {
    const tt__chan *c = p->nodes[p->work[w + AHEAD / 2]].key;
    if (c->holders)
      __builtin_prefetch(c->holders);
  }
  /* (Not further: a holder list is read only under its lock, as a plain thread may change it.) */
}

static void analyse(proof *p) {
  tt__registry_walk_waiters(walk_one, p);
  p->nb = p->nn; /* the walk creates coroutine nodes only */
  for (uint32_t i = 0; i < p->nb && !p->oom; i++) {
    prefetch_deps(p, i);
    coro_deps(p, i);
  }
  for (size_t w = 0; w < p->nwork && !p->oom; w++) {
    prefetch_expand(p, w);
    expand(p, p->work[w]);
  }
  if (!p->oom)
    solve(p);
}

/* ---- Verdicts ------------------------------------------------------------------------------- */

/* What the proof keeps between checks: each leaked coroutine's first proof, pattern and (eager
 * mode) the operation that removed its last live waker. Sorted by id; under vt_lock. */
typedef struct vrec {
  tt_id id;
  uint8_t verdict, pattern;
  bool reported; /* printed by the monitor (eager mode) */
  int64_t proven_at;
  const char *cause_op;
  tt_id cause_by;
  uintptr_t *cause_stack;
  size_t ncause_stack;
} vrec;

static pthread_mutex_t vt_lock = PTHREAD_MUTEX_INITIALIZER;
static vrec *vt;
static size_t nvt;
static uint64_t vt_run; /* the run the table belongs to */

static vrec *vt_find(tt_id id) {
  size_t lo = 0, hi = nvt;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (vt[mid].id < id)
      lo = mid + 1;
    else if (vt[mid].id > id)
      hi = mid;
    else
      return &vt[mid];
  }
  return NULL;
}

static void vt_clear(void) {
  for (size_t i = 0; i < nvt; i++)
    free(vt[i].cause_stack);
  free(vt);
  vt = NULL;
  nvt = 0;
}

/* The verdict and pattern the last check gave coroutine id (NONE, NONE when none). */
static void vt_get(tt_id id, int *verdict, int *pattern) {
  pthread_mutex_lock(&vt_lock);
  vrec *r = vt_run == tt__rt.run_id ? vt_find(id) : NULL;
  *verdict = r ? r->verdict : TT_VERDICT_NONE;
  *pattern = r ? r->pattern : TT_PATTERN_NONE;
  pthread_mutex_unlock(&vt_lock);
}

int tt_leak_verdict_of(tt_id id) {
  int v, p;
  vt_get(id, &v, &p);
  return v;
}

int tt__leak_pattern_of(tt_id id) {
  int v, p;
  vt_get(id, &v, &p);
  return p;
}

bool tt__leak_mark_reported(tt_id id) {
  pthread_mutex_lock(&vt_lock);
  vrec *r = vt_run == tt__rt.run_id ? vt_find(id) : NULL;
  bool fresh = r && !r->reported;
  if (r)
    r->reported = true;
  pthread_mutex_unlock(&vt_lock);
  return fresh;
}

void tt__leak_set_cause(tt_id id, const char *op, tt_id by, const uintptr_t *pcs, size_t n) {
  uintptr_t *copy = n ? tt__malloc(n * sizeof *copy) : NULL;
  if (copy)
    memcpy(copy, pcs, n * sizeof *copy);
  pthread_mutex_lock(&vt_lock);
  vrec *r = vt_run == tt__rt.run_id ? vt_find(id) : NULL;
  if (r && r->cause_op == NULL) {
    r->cause_op = op;
    r->cause_by = by;
    r->cause_stack = copy;
    r->ncause_stack = copy ? n : 0;
    copy = NULL;
  }
  pthread_mutex_unlock(&vt_lock);
  free(copy);
}

const char *tt_leak_pattern_string(int pattern) {
  static const char *const names[] = {
#define TT_LEAK_PATTERN_STR_(name, text) text,
      TT_LEAK_PATTERN_MAP(TT_LEAK_PATTERN_STR_)
#undef TT_LEAK_PATTERN_STR_
  };
  if (pattern < 0 || pattern >= TT_PATTERN_COUNT)
    return NULL;
  return names[pattern];
}

/* ---- Evidence (R6) -------------------------------------------------------------------------- */

typedef struct text {
  char *s;
  size_t n, cap;
  bool oom;
  bool off; /* a proof without a report: patterns only, no text */
} text;

static void tput(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tput(text *t, const char *fmt, ...) {
  if (t->off)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->cap - t->n;
    int k = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? room : 0, fmt, ap);
    va_end(ap);
    if (k < 0)
      return;
    if ((size_t)k < room) {
      t->n += (size_t)k;
      return;
    }
    size_t cap = t->cap ? t->cap * 2 : 128;
    while (cap < t->n + (size_t)k + 1)
      cap *= 2;
    char *s = tt__realloc(t->s, cap);
    if (s == NULL) {
      t->oom = true;
      return;
    }
    t->s = s;
    t->cap = cap;
  }
}

/* One verdict under construction. */
typedef struct vbuild {
  tt_leak_verdict v;
  tt_leak_evidence *ev;
  size_t nev, capev;
  tt_id *cycle;
  size_t ncycle;
  bool oom;
  bool quiet; /* no evidence text wanted */
} vbuild;

static void evidence(vbuild *b, const void *obj, tt_id coro, text *t) {
  if (t->off)
    return;
  if (t->oom || t->s == NULL) {
    free(t->s);
    b->oom = true;
    return;
  }
  tt_leak_evidence *e = grow(b->ev, &b->capev, b->nev + 1, sizeof *e, &b->oom);
  if (e == NULL) {
    free(t->s);
    return;
  }
  b->ev = e;
  b->ev[b->nev++] = (tt_leak_evidence){.obj = obj, .coro = coro, .text = t->s};
}

static const char *liveness(proof *p, const tt__coro *co) {
  uint32_t k;
  if (!coro_node(p, co, &k))
    return "running or runnable";
  return p->nodes[k].live ? "blocked, but can be woken" : "leaked";
}

/* Whether blocked coroutine co waits on channel c (a fellow waiter, not a party that could use c
 * otherwise). */
static bool waits_on(const tt__coro *co, const tt__chan *c) {
  if (co->wait_reason == TT_WAIT_CHAN_RECV || co->wait_reason == TT_WAIT_CHAN_SEND)
    return tt__chan_of(co->wait_obj) == c;
  if (co->wait_reason == TT_WAIT_SELECT) {
    const tt__select_wait *sw = co->wait_obj;
    for (size_t i = 0; i < sw->n; i++)
      if (sw->cases[i].ch && tt__chan_of(sw->cases[i].ch) == c)
        return true;
  }
  return false;
}

/* The holders of tracked channel c, as text; counts the coroutines among them, other than self
 * and its fellow waiters on c, that hold it (leaked ones: c is dead). */
static void chan_holders(proof *p, tt__chan *c, const tt__coro *self, text *t, int *others) {
  *others = 0;
  tt__lock_acquire(&c->rlock);
  if (c->holders == NULL)
    tput(t, " none");
  for (tt__ref *r = c->holders; r; r = r->cnext) {
    tt__holder *h = r->h;
    tput(t, r == c->holders ? " " : ", ");
    if (r->count > 1)
      tput(t, "%llux ", (unsigned long long)r->count);
    switch (h->kind) {
    case TT__HOLDER_CORO: {
      const tt__coro *o = h->owner;
      if (o == self) {
        tput(t, "coroutine %llu (this one)", (unsigned long long)o->id);
      } else if (o) {
        uint32_t k;
        bool fellow = coro_node(p, o, &k) && waits_on(o, c);
        tput(t, "coroutine %llu (%s%s)", (unsigned long long)o->id, liveness(p, o),
             fellow ? ", waiting on it too" : "");
        *others += !fellow;
      }
      break;
    }
    case TT__HOLDER_CARRIER: {
      uint32_t k;
      bool live = chan_node(p, h->owner, &k) && p->nodes[k].live;
      tput(t, "a value in flight in channel %p (%s)", h->owner,
           live ? "live" : "nothing live can receive it");
      break;
    }
    default:
      tput(t, "a root (thread, signal, task, timer or context value)");
      break;
    }
  }
  tt__lock_release(&c->rlock);
}

/* Describes waiting co's channel c; returns the pattern it suggests. */
static int chan_evidence(proof *p, vbuild *b, const tt__coro *co, const tt_chan *handle,
                         bool send) {
  tt__chan *c = tt__chan_of(handle);
  text t = {.off = b->quiet};
  if (c->dctx) {
    tput(&t, "the done channel of context %p, which nothing live can cancel", (void *)c->dctx);
    evidence(b, c, 0, &t);
    return TT_PATTERN_NONE;
  }
  tput(&t, "%s channel %p", send ? "sends on" : "receives from", (void *)handle);
  if (c->name)
    tput(&t, " \"%s\"", c->name);
  if (c->cap)
    tput(&t, " (buffered %zu/%zu)", c->count, c->cap);
  else
    tput(&t, " (unbuffered)");
  tput(&t, "; no live party holds a reference to it; its references:");
  int others;
  chan_holders(p, c, co, &t, &others);
  evidence(b, c, 0, &t);
  if (others > 0)
    return TT_PATTERN_CHAIN;
  /* The channel's history (its counters) tells the research catalogue's patterns apart. */
  uint64_t sent = atomic_load_explicit(&c->nsent, memory_order_relaxed);
  uint64_t received = atomic_load_explicit(&c->nrecv, memory_order_relaxed);
  uint64_t gaveup = atomic_load_explicit(&c->nrecv_gaveup, memory_order_relaxed);
  if (!send) /* values came, then its senders left without closing it: a range never ended */
    return sent > 0 && !atomic_load_explicit(&c->closed, memory_order_relaxed)
               ? TT_PATTERN_UNCLOSED_RANGE
               : TT_PATTERN_ABANDONED_RECEIVER;
  if (gaveup > 0) /* a receiver stopped waiting (a deadline, a cancellation): it left us here */
    return TT_PATTERN_TIMEOUT_LEAK;
  size_t senders = 0;
  for (tt__chan_wait *w = c->sendq.head; w; w = w->next)
    senders++;
  if (senders > 1) /* several senders, the one receive long done: an N-cast */
    return TT_PATTERN_NCAST;
  if (received > 0 && atomic_load_explicit(&c->last_sender, memory_order_relaxed) == co->id)
    return TT_PATTERN_DOUBLE_SEND; /* its first value was taken; nobody takes a second */
  return TT_PATTERN_ABANDONED_SENDER;
}

/* The coroutine a lock holder names, if it is a blocked one. */
static const tt__coro *holder_coro(proof *p, const tt__lockinfo *li) {
  uint32_t k;
  if (li->state != TT_LOCK_CORO || !id_node(p, li->id, &k))
    return NULL;
  return p->nodes[k].key;
}

/* ", locked at f (file:line)": where holder took obj, when it was recorded. */
static void put_site(text *t, const tt__coro *holder, const void *obj) {
  const tt__held *h = holder ? holder->locks : NULL;
  for (uint32_t i = 0; h && i < h->n && !t->off; i++) {
    if (h->v[i].obj != obj || h->v[i].pc == NULL)
      continue;
    tt__sym sym[4];
    int n = tt__symbolize((uintptr_t)h->v[i].pc - 1, sym, 4);
    if (n >= 1 && sym[0].func) {
      const char *file = sym[0].file ? strrchr(sym[0].file, '/') : NULL;
      tput(t, ", locked at %s (%s:%d)", sym[0].func,
           file          ? file + 1
           : sym[0].file ? sym[0].file
                         : "?",
           sym[0].line);
    }
    return;
  }
}

static int lock_evidence(proof *p, vbuild *b, const tt__coro *co, bool rw) {
  tt__lockinfo li;
  int64_t readers = 0, exited = 0;
  tt_id last_exited = 0;
  text t = {.off = b->quiet};
  int pattern = TT_PATTERN_CHAIN;
  if (rw)
    tt__rwmutex_info(co->wait_obj, &li, &readers, &exited, &last_exited);
  else
    tt__mutex_info(co->wait_obj, &li);
  tput(&t, "%s %s %p; ", co->wait_reason == TT_WAIT_RWMUTEX_RLOCK ? "read-locks" : "locks",
       rw ? "rwmutex" : "mutex", co->wait_obj);
  if (li.state == TT_LOCK_EXITED) {
    tput(&t, "held by coroutine %llu, which exited holding it", (unsigned long long)li.id);
    pattern = TT_PATTERN_MUTEX_EXITED;
  } else if (li.state == TT_LOCK_CORO) {
    const tt__coro *h = holder_coro(p, &li);
    tput(&t, "held by coroutine %llu (%s)", (unsigned long long)li.id,
         h == co ? "this one"
         : h     ? liveness(p, h)
                 : "running");
    put_site(&t, h, co->wait_obj);
  }
  if (readers > 0) {
    tput(&t, "%sread-held %lld times", li.state == TT_LOCK_FREE ? "" : "; ", (long long)readers);
    if (exited > 0) {
      tput(&t, ", %lld of them by coroutines that exited holding it (the last: %llu)",
           (long long)exited, (unsigned long long)last_exited);
      pattern = TT_PATTERN_MUTEX_EXITED;
    }
    for (size_t i = 0; i < p->nreaders; i++)
      if (p->readers[i].rw == co->wait_obj) {
        const tt__coro *r = p->nodes[p->readers[i].co].key;
        tput(&t, "; read-held by coroutine %llu (%s)", (unsigned long long)r->id,
             r == co ? "this one" : liveness(p, r));
        put_site(&t, r, co->wait_obj);
      }
  }
  tput(&t, "; no live holder can release it");
  evidence(b, co->wait_obj, li.id, &t);
  return pattern;
}

static void ctx_evidence(proof *p, vbuild *b, const tt__coro *co) {
  text t = {.off = b->quiet};
  struct tt_ctx *a = co->ctx ? tt__ctx_anchor(co->ctx) : NULL;
  if (a == NULL) {
    tput(&t, "its context cannot be cancelled (the background context)");
  } else if (co->shield) {
    tput(&t, "a cancellation shield is up: its context %p cannot wake it", (void *)a);
  } else {
    uint32_t k;
    bool live = map_get(&p->objs, (uint64_t)(uintptr_t)a, N_CTX, &k) && p->nodes[k].live;
    tput(&t,
         "its context %p %s: no deadline, no signal hook, and every party that can cancel it "
         "(its coroutines, its ancestors' cancellers) is itself leaked",
         (void *)a, live ? "can be cancelled" : "will never be cancelled");
  }
  evidence(b, a, 0, &t);
}

/* Fills b for leaked coroutine node n. */
static void describe(proof *p, uint32_t n, vbuild *b) {
  const tt__coro *co = p->nodes[n].key;
  b->v.id = co->id;
  b->v.verdict = TT_VERDICT_LEAKED;
  b->v.wait_reason = co->wait_reason;
  b->v.wait_obj = co->wait_obj;
  b->v.blocked_since = co->blocked_since;
  int pattern = TT_PATTERN_NONE;
  switch (co->wait_reason) {
  case TT_WAIT_CHAN_RECV:
  case TT_WAIT_CHAN_SEND:
    pattern = chan_evidence(p, b, co, co->wait_obj, co->wait_reason == TT_WAIT_CHAN_SEND);
    break;
  case TT_WAIT_SELECT: {
    const tt__select_wait *sw = co->wait_obj;
    pattern = TT_PATTERN_DEAD_SELECT;
    for (size_t i = 0; i < sw->n; i++)
      if (sw->cases[i].ch)
        chan_evidence(p, b, co, sw->cases[i].ch, sw->cases[i].op == TT_SELECT_SEND);
    break;
  }
  case TT_WAIT_CHAN_RECV_NIL:
  case TT_WAIT_CHAN_SEND_NIL:
  case TT_WAIT_SELECT_NO_CASES: {
    text t = {.off = b->quiet};
    tput(&t, "%s: nothing but its context can end the wait",
         co->wait_reason == TT_WAIT_SELECT_NO_CASES ? "a select without cases"
                                                    : "an operation on a nil channel");
    evidence(b, NULL, 0, &t);
    pattern = TT_PATTERN_NIL_WAIT;
    break;
  }
  case TT_WAIT_MUTEX_LOCK:
  case TT_WAIT_RWMUTEX_RLOCK:
  case TT_WAIT_RWMUTEX_LOCK:
    pattern = lock_evidence(p, b, co, co->wait_reason != TT_WAIT_MUTEX_LOCK);
    break;
  case TT_WAIT_GROUP_WAIT: {
    text t = {.off = b->quiet};
    tput(&t, "waits for group %p, whose children are all leaked", co->wait_obj);
    evidence(b, co->wait_obj, 0, &t);
    pattern = TT_PATTERN_GROUP_CHILD;
    break;
  }
  }
  ctx_evidence(p, b, co);
  b->v.pattern = pattern;
}

/* ---- Lock cycles ---------------------------------------------------------------------------- */

/* The leaked coroutines that co (a lock waiter) waits for: the holders of its lock. */
static size_t lock_succ(proof *p, const tt__coro *co, uint32_t *out, size_t max) {
  size_t n = 0;
  tt__lockinfo li;
  if (co->wait_reason == TT_WAIT_MUTEX_LOCK) {
    if (tt__mutex_info(co->wait_obj, &li) != 0)
      return 0;
  } else if (co->wait_reason == TT_WAIT_RWMUTEX_LOCK || co->wait_reason == TT_WAIT_RWMUTEX_RLOCK) {
    if (tt__rwmutex_info(co->wait_obj, &li, NULL, NULL, NULL) != 0)
      return 0;
    for (size_t i = 0; i < p->nreaders && n < max; i++)
      if (p->readers[i].rw == co->wait_obj && !p->nodes[p->readers[i].co].live)
        out[n++] = p->readers[i].co;
  } else {
    return 0;
  }
  uint32_t k;
  if (li.state == TT_LOCK_CORO && n < max && id_node(p, li.id, &k) && !p->nodes[k].live)
    out[n++] = k;
  return n;
}

/* Marks the leaked lock waiters that lie on a cycle of lock waits (Tarjan's strongly connected
 * components, iteratively): cyc[n] = the component's number + 1 for members of a cycle. */
static uint32_t *find_cycles(proof *p) {
  uint32_t nb = p->nb, waiters = 0;
  for (uint32_t s = 0; s < nb; s++) {
    const tt__coro *cs = p->nodes[s].key;
    waiters += !p->nodes[s].live &&
               (cs->wait_reason == TT_WAIT_MUTEX_LOCK || cs->wait_reason == TT_WAIT_RWMUTEX_LOCK ||
                cs->wait_reason == TT_WAIT_RWMUTEX_RLOCK);
  }
  if (waiters == 0)
    return tt__calloc(nb ? nb : 1, sizeof(uint32_t));
  uint32_t *index = tt__calloc(nb, sizeof *index), *low = tt__calloc(nb, sizeof *low);
  uint32_t *cyc = tt__calloc(nb, sizeof *cyc), *stack = tt__malloc((nb + 1) * sizeof *stack);
  uint8_t *on = tt__calloc(nb, 1);
  struct frame {
    uint32_t v, i, n;
    uint32_t succ[8];
  } *call = tt__malloc((nb + 1) * sizeof *call);
  if (!index || !low || !cyc || !stack || !on || !call) {
    free(cyc);
    cyc = NULL;
    goto out;
  }
  uint32_t next = 1, sp = 0, comp = 0;
  for (uint32_t s = 0; s < nb; s++) {
    const tt__coro *cs = p->nodes[s].key;
    if (index[s] || p->nodes[s].live ||
        (cs->wait_reason != TT_WAIT_MUTEX_LOCK && cs->wait_reason != TT_WAIT_RWMUTEX_LOCK &&
         cs->wait_reason != TT_WAIT_RWMUTEX_RLOCK))
      continue;
    size_t depth = 0;
    call[depth] = (struct frame){.v = s};
    call[depth].n = (uint32_t)lock_succ(p, cs, call[depth].succ, 8);
    index[s] = low[s] = next++;
    stack[sp++] = s;
    on[s] = 1;
    for (;;) {
      struct frame *f = &call[depth];
      if (f->i < f->n) {
        uint32_t w = f->succ[f->i++];
        if (index[w] == 0) {
          const tt__coro *cw = p->nodes[w].key;
          call[++depth] = (struct frame){.v = w};
          call[depth].n = (uint32_t)lock_succ(p, cw, call[depth].succ, 8);
          index[w] = low[w] = next++;
          stack[sp++] = w;
          on[w] = 1;
        } else if (on[w] && index[w] < low[f->v]) {
          low[f->v] = index[w];
        }
        continue;
      }
      uint32_t v = f->v;
      if (low[v] == index[v]) {
        /* A component: a cycle when it has two members, or one that waits on itself. */
        uint32_t first = sp;
        while (stack[first - 1] != v)
          first--;
        first--;
        bool self = false;
        for (uint32_t j = 0; j < f->n; j++)
          self |= f->succ[j] == v;
        bool cycle = sp - first > 1 || self;
        comp++;
        for (uint32_t j = first; j < sp; j++) {
          on[stack[j]] = 0;
          if (cycle)
            cyc[stack[j]] = comp;
        }
        sp = first;
      }
      if (depth == 0)
        break;
      depth--;
      if (low[v] < low[call[depth].v])
        low[call[depth].v] = low[v];
    }
  }
out:
  free(index);
  free(low);
  free(stack);
  free(on);
  free(call);
  return cyc;
}

/* ---- The check ------------------------------------------------------------------------------ */

struct tt_leak_report {
  tt_leak_verdict *v;
  vbuild *b;
  size_t n;
};

static void builds_free(vbuild *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < b[i].nev; j++)
      free((char *)b[i].ev[j].text);
    free(b[i].ev);
    free(b[i].cycle);
    free((uintptr_t *)b[i].v.cause_stack);
  }
  free(b);
}

void tt_leak_report_free(tt_leak_report *r) {
  if (r == NULL)
    return;
  builds_free(r->b, r->n);
  free(r->v);
  free(r);
}

size_t tt_leak_report_len(const tt_leak_report *r) { return r ? r->n : 0; }

const tt_leak_verdict *tt_leak_report_get(const tt_leak_report *r, size_t i) {
  return r && i < r->n ? &r->v[i] : NULL;
}

/* Turns the leaked coroutines of a solved proof into verdicts (the world still stopped): marks
 * them, names their patterns and cycles, and writes their evidence when b is wanted. Returns the
 * number leaked, with *out the builds (NULL when not wanted), or TT_ENOMEM. */
static int conclude(proof *p, bool want, vbuild **out, size_t *nout) {
  *out = NULL;
  *nout = 0;
  size_t nleaked = 0;
  for (uint32_t i = 0; i < p->nb; i++)
    nleaked += !p->nodes[i].live;
  if (nleaked == 0)
    return 0;
  if (!p->readers_built)
    build_readers(p);
  uint32_t *cyc = find_cycles(p);
  vbuild *b = tt__calloc(nleaked, sizeof *b);
  if (cyc == NULL || b == NULL || p->oom) {
    free(cyc);
    free(b);
    return TT_ENOMEM;
  }
  size_t k = 0;
  for (uint32_t i = 0; i < p->nb; i++) {
    if (p->nodes[i].live)
      continue;
    tt__coro *co = (tt__coro *)p->nodes[i].key;
    vbuild *vb = &b[k++];
    vb->quiet = !want;
    describe(p, i, vb);
    if (cyc[i]) {
      vb->v.verdict = TT_VERDICT_DEADLOCK;
      vb->v.pattern = TT_PATTERN_LOCK_CYCLE;
      /* The cycle, in wait order from this coroutine: follow holders within the component. */
      size_t cap = 0;
      uint32_t at = i;
      for (size_t guard = 0; guard <= p->nb; guard++) {
        tt_id *c = grow(vb->cycle, &cap, vb->ncycle + 1, sizeof *c, &vb->oom);
        if (c == NULL)
          break;
        vb->cycle = c;
        vb->cycle[vb->ncycle++] = ((const tt__coro *)p->nodes[at].key)->id;
        uint32_t succ[8];
        size_t ns = lock_succ(p, p->nodes[at].key, succ, 8);
        uint32_t nx = UINT32_MAX;
        for (size_t j = 0; j < ns; j++)
          if (cyc[succ[j]] == cyc[i]) {
            nx = succ[j];
            break;
          }
        if (nx == UINT32_MAX || nx == i)
          break;
        at = nx;
      }
      vb->v.cycle = vb->cycle;
      vb->v.ncycle = vb->ncycle;
    } else if (vb->v.verdict == 0) {
      vb->v.verdict = TT_VERDICT_LEAKED;
    }
    if (TT__TRACE_ON() && __atomic_load_n(&co->verdict, __ATOMIC_RELAXED) != vb->v.verdict)
      tt__trace_leak(co, vb->v.verdict); /* tracing: a new verdict's instant */
    /* relaxed atomic: snapshots read it concurrently (a walker is not stopped by the world). */
    __atomic_store_n(&co->verdict, (uint8_t)vb->v.verdict, __ATOMIC_RELAXED);
    vb->v.evidence = vb->ev;
    vb->v.nevidence = vb->nev;
  }
  free(cyc);
  *out = b;
  *nout = k;
  return (int)(nleaked > INT32_MAX ? INT32_MAX : nleaked);
}

static int by_id(const void *a, const void *b) {
  tt_id x = ((const vbuild *)a)->v.id, y = ((const vbuild *)b)->v.id;
  return (x > y) - (x < y);
}

/* Replaces the verdict table with this check's, carrying first-proof times and causes over. */
static void vt_update(vbuild *b, size_t n) {
  int64_t now = tt__clock();
  vrec *nv = n ? tt__calloc(n, sizeof *nv) : NULL;
  pthread_mutex_lock(&vt_lock);
  if (vt_run != tt__rt.run_id) {
    vt_clear();
    vt_run = tt__rt.run_id;
  }
  if (n && nv == NULL) {
    pthread_mutex_unlock(&vt_lock);
    return; /* keep the old table: verdicts are sticky anyway */
  }
  for (size_t i = 0; i < n; i++) {
    vrec *old = vt_find(b[i].v.id);
    nv[i] = (vrec){.id = b[i].v.id,
                   .verdict = (uint8_t)b[i].v.verdict,
                   .pattern = (uint8_t)b[i].v.pattern,
                   .proven_at = now};
    if (old) {
      nv[i].proven_at = old->proven_at;
      nv[i].reported = old->reported;
      nv[i].cause_op = old->cause_op;
      nv[i].cause_by = old->cause_by;
      nv[i].cause_stack = old->cause_stack;
      nv[i].ncause_stack = old->ncause_stack;
      old->cause_stack = NULL;
    }
    b[i].v.proven_at = nv[i].proven_at;
    b[i].v.cause_op = nv[i].cause_op;
    b[i].v.cause_by = nv[i].cause_by;
    if (nv[i].ncause_stack) {
      uintptr_t *st = tt__malloc(nv[i].ncause_stack * sizeof *st);
      if (st) {
        memcpy(st, nv[i].cause_stack, nv[i].ncause_stack * sizeof *st);
        b[i].v.cause_stack = st;
        b[i].v.ncause_stack = nv[i].ncause_stack;
      }
    }
  }
  vt_clear();
  vt = nv;
  nvt = n;
  pthread_mutex_unlock(&vt_lock);
}

/* One proof, with retries while plain threads change the world under it. */
static int check(bool want, vbuild **out, size_t *nout) {
  *out = NULL;
  *nout = 0;
  if (!tt_running())
    return TT_ENOTRUNNING;
  tt__worker *w = tt__tls_worker;
  for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (attempt > 0) {
      int64_t pause = (int64_t)TT_USEC << (attempt < 10 ? attempt : 10);
      if (w && w->cur)
        tt_sleep(pause);
      else
        nanosleep(&(struct timespec){pause / TT_SEC, pause % TT_SEC}, NULL);
    }
    int err = tt__stw_begin(STW_TIMEOUT);
    if (err)
      return err;
    /* seq_cst: the counts are read before anything of the world, and after all of it. */
    uint64_t b1 = atomic_load_explicit(&tt__thread_mut.begins, memory_order_seq_cst);
    uint64_t e1 = atomic_load_explicit(&tt__thread_mut.ends, memory_order_seq_cst);
    if (e1 != b1) { /* a change under way */
      tt__stw_end();
      continue;
    }
    static uint32_t gen; /* proofs run one at a time (the world is stopped) */
    if (++gen == 0)
      gen = 1;
    proof p = {.self = w ? w->cur : NULL, .gen = gen};
    if (!map_init(&p.objs, 64)) {
      proof_free(&p);
      tt__stw_end();
      return TT_ENOMEM;
    }
    analyse(&p);
    vbuild *b = NULL;
    size_t n = 0;
    int r = p.oom ? TT_ENOMEM : conclude(&p, want, &b, &n);
    uint64_t b2 = atomic_load_explicit(&tt__thread_mut.begins, memory_order_seq_cst);
    if (b2 != b1 && r >= 0) {
      /* A plain thread changed something meanwhile: nothing of this proof may stand. Marks set
       * by conclude are undone (a mark from an earlier check is re-proven next time). */
      for (size_t i = 0; i < n; i++) {
        uint32_t k;
        if (id_node(&p, b[i].v.id, &k)) {
          tt__coro *co = (tt__coro *)p.nodes[k].key;
          __atomic_store_n(&co->verdict, 0, __ATOMIC_RELAXED);
        }
      }
      builds_free(b, n);
      proof_free(&p);
      tt__stw_end();
      continue;
    }
    proof_free(&p);
    tt__stw_end();
    if (r < 0)
      return r;
    if (n > 1) /* b is NULL when nothing leaked, and qsort wants an array (UBSan) */
      qsort(b, n, sizeof *b, by_id);
    vt_update(b, n);
    *out = b;
    *nout = n;
    return r;
  }
  return TT_EAGAIN;
}

int tt_leak_check(tt_leak_report **out) {
  if (out)
    *out = NULL;
  vbuild *b;
  size_t n;
  int r = check(out != NULL, &b, &n);
  if (r < 0)
    return r;
  if (out == NULL) {
    builds_free(b, n);
    return r;
  }
  tt_leak_report *rep = tt__calloc(1, sizeof *rep);
  tt_leak_verdict *v = n ? tt__malloc(n * sizeof *v) : NULL;
  if (rep == NULL || (n && v == NULL)) {
    free(rep);
    free(v);
    builds_free(b, n);
    return TT_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    v[i] = b[i].v;
  rep->v = v;
  rep->b = b;
  rep->n = n;
  *out = rep;
  return r;
}

int tt__leak_refresh(void) { return tt_leak_check(NULL); }

/* ---- The goroutineleak profile -------------------------------------------------------------- */

static int keep_leaked(const tt_coro_info *ci, void *arg) {
  (void)arg;
  return ci->verdict != TT_VERDICT_NONE;
}

/* A snapshot of the leaked coroutines, after a fresh proof. */
static int leak_snapshot(tt_snapshot **out) {
  int r = tt_leak_check(NULL);
  if (r < 0)
    return r;
  int err = tt_snapshot_take(out);
  if (err)
    return err;
  tt_snapshot_filter(*out, keep_leaked, NULL);
  (*out)->profile = "goroutineleak";
  return 0;
}

int tt_leak_profile(int fd, int format) {
  if (fd < 0 || format < TT_DUMP_PPROF || format > TT_DUMP_JSON)
    return TT_EINVAL;
  tt_snapshot *s;
  int err = leak_snapshot(&s);
  if (err)
    return err;
  err = tt_snapshot_write(s, fd, format);
  tt_snapshot_free(s);
  return err;
}

int tt_leak_profile_mem(int format, char **out, size_t *len) {
  if (out == NULL || format < TT_DUMP_PPROF || format > TT_DUMP_JSON)
    return TT_EINVAL;
  tt_snapshot *s;
  int err = leak_snapshot(&s);
  if (err)
    return err;
  err = tt_snapshot_write_mem(s, format, out, len);
  tt_snapshot_free(s);
  return err;
}

/* ---- The report as text --------------------------------------------------------------------- */

int tt_leak_report_write(const tt_leak_report *r, int fd) {
  if (r == NULL || fd < 0)
    return TT_EINVAL;
  text t = {0};
  for (size_t i = 0; i < r->n; i++) {
    const tt_leak_verdict *v = &r->v[i];
    tput(&t, "coroutine %llu [%s (leaked)]: %s", (unsigned long long)v->id,
         tt_wait_reason_string(v->wait_reason),
         v->verdict == TT_VERDICT_DEADLOCK ? "deadlocked" : "leaked");
    if (v->pattern != TT_PATTERN_NONE)
      tput(&t, " (%s)", tt_leak_pattern_string(v->pattern));
    tput(&t, "\n");
    if (v->ncycle) {
      tput(&t, "  lock cycle:");
      for (size_t j = 0; j < v->ncycle; j++)
        tput(&t, " %scoroutine %llu", j ? "-> " : "", (unsigned long long)v->cycle[j]);
      tput(&t, " -> coroutine %llu\n", (unsigned long long)v->cycle[0]);
    }
    for (size_t j = 0; j < v->nevidence; j++)
      tput(&t, "  %s\n", v->evidence[j].text);
    if (v->cause_op)
      tput(&t, "  the last live way to wake it went with %s by %s %llu\n", v->cause_op,
           v->cause_by ? "coroutine" : "thread", (unsigned long long)v->cause_by);
  }
  if (t.oom) {
    free(t.s);
    return TT_ENOMEM;
  }
  bool ok = tt__leak_write_all(fd, t.s, t.n);
  free(t.s);
  return ok ? 0 : TT_EIO;
}
