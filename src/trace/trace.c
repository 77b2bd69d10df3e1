/* SPDX-License-Identifier: MIT */
/* The trace recorder: per-worker event buffers filled by the scheduler's hooks, the sessions
 * (tt_trace_start/stop, the flight recorder, TT_TRACE, the endpoint's capture) that own them.
 *
 * Design. Each worker appends fixed-size records (tt__trec) to a chunk of its own: no lock and no
 * read-modify-write on the hot path, a clock read (see ticks()) and nine stores. A record is
 * published by a release store of the chunk's length (a plain store: the worker is the chunk's only
 * writer), so a reader may copy a chunk's published prefix while the worker goes on (the flight
 * recorder's writes). A full chunk is handed over under the session lock (once every ~1,300
 * records) to the session's list: kept whole for a full trace, trimmed to the last N seconds /
 * bytes for the flight recorder. Plain threads (wakes and spawns from outside the runtime, their
 * logs) share one chunk under the lock.
 *
 * Stopping. The hooks test tt__trace_on (a relaxed load, one predictable branch) and the slow path
 * re-checks it inside the worker's busy flag, Dekker-style against the stopper: the worker stores
 * busy = 1 and then loads the flag; the stopper clears the flag and then loads every busy word,
 * waiting for those set. As in the scan protocol (internal.h, TT__S_*), the barrier between each
 * side's store and load is asymmetric: a compiler fence for the worker and tt__asym_barrier
 * (membarrier) for the stopper, or sequentially consistent fences on both sides without
 * membarrier. Once the stopper has seen every busy word clear, no worker touches its chunk again
 * until the next session, so the stopper owns every chunk.
 *
 * Writing. The JSON needs the whole trace sorted before a span can be written (a span is written
 * at its end), so a JSON session keeps its chunks until the stop and converts them then. The
 * binary form streams instead: a writer thread writes handed-over chunks as they come, unsorted,
 * and the reader sorts; a long trace then costs a few chunks of memory.
 *
 * Lock order: ctl (sessions: start, stop, writes) before lock (the chunks) before fnlock (the
 * binary form's function names). A worker takes only lock (a hand-over) and fnlock (its first
 * spawn of a function in a binary session), and never waits on anything else while it holds one.
 *
 * Rejected: a lock-free MPSC ring shared by all workers (an atomic RMW per event, and a
 * contended line); converting the binary stream to JSON on the fly (see "Writing"). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "trace_int.h"

_Atomic int tt__trace_on;

#define MAXW 1024 /* tt_run_opts.procs' bound */
#define NREC(len) (1 + ((len) + sizeof(tt__trec) - 1) / sizeof(tt__trec))

typedef struct chunk {
  struct chunk *next;
  size_t cap;                /* records */
  _Atomic size_t len;        /* records published (the writer's release store) */
  int64_t last_ts;           /* when it was handed over (ns), for the flight recorder's bound */
  _Alignas(16) tt__trec r[]; /* records */
} chunk;

/* A worker's recording state. busy: see "Stopping"; cur: written by the worker under S.lock, read
 * by the worker alone or under S.lock. */
typedef struct wslot {
  _Alignas(TT_CACHELINE) _Atomic uint32_t busy;
  chunk *cur;
  /* The binary form: functions this worker already registered for the writer's symbols (a
   * direct-mapped cache, valid for session fngen only). The worker's own. */
  uint32_t fngen;
  uintptr_t fns[32];
  /* The worker's last event (see emit_fast's reuse). */
  int64_t last_ts;
  uint64_t last_a;
  uint32_t last_gen; /* the session it belongs to */
  uint8_t last_kind;
} wslot;
static wslot slots[MAXW];

enum { M_OFF, M_FULL, M_FLIGHT, M_CAPTURE };

static struct {
  pthread_mutex_t ctl; /* serialises sessions; never taken by a worker */
  tt__lock lock;       /* protects the list, tcur and the slots' cur pointers (see wslot) */
  int mode;            /* M_*: under both locks to change, either to read */
  bool run_owned;      /* the session is TT_TRACE's (the fd is ours) */
  int fd, format;
  size_t chunk_cap;
  int64_t t0;        /* the session's start, ns */
  int64_t tick0;     /* and in ticks (see ticks()) */
  int64_t keep_ns;   /* flight: age bound, 0 none */
  size_t keep_bytes; /* flight: size bound */
  int report_fd;
  chunk *head, *tail; /* the handed-over chunks, oldest first */
  size_t list_bytes;
  chunk *tcur; /* plain threads' chunk */
  /* The binary form streams: a writer thread writes the handed-over chunks to fd as they come
   * (kicked through wgen, a futex word), so a long trace needs no more memory than a few chunks.
   * wstop (under lock) tells it to finish; werr and the symbol set are its own until joined. */
  bool stream;
  pthread_t writer;
  _Atomic uint32_t wgen;
  bool wstop;
  int werr;
  /* The functions of CREATE and INFO records, for the binary form's SYM records: syms is the
   * session's set (open addressing, 0 empty), pending those the writer has not written yet. All
   * under fnlock (a leaf: taken by a worker once per function it spawns, rarely). */
  tt__lock fnlock;
  uintptr_t *syms;
  size_t nsyms, capsyms;
  uintptr_t *pending;
  size_t npending, cappending;
  uint32_t gen; /* sessions opened (the workers' fn caches' validity) */
} S = {.ctl = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .report_fd = -1};

/* Timestamps. The records carry ticks: the TSC on x86-64 where the kernel itself keeps time with
 * it (its clocksource is "tsc": constant, and synchronised across CPUs), read in ~20 cycles, else
 * CLOCK_MONOTONIC nanoseconds (a vDSO call, about twice that). Ticks become nanoseconds when the
 * trace is read, on the line through (tick0, t0) at the session's start and a second pair taken
 * when it is written. use_tsc is decided once per process, before the first session. */
static bool use_tsc;

static inline int64_t ticks(void) {
#if defined(__x86_64__)
  if (TT_LIKELY(use_tsc))
    return (int64_t)__rdtsc();
#endif
  return tt__clock();
}

static void ticks_init(void) {
#if defined(__x86_64__)
  static bool done;
  if (done)
    return;
  done = true;
  FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
  char cs[32] = "";
  if (f) {
    if (fgets(cs, sizeof cs, f) == NULL)
      cs[0] = '\0';
    fclose(f);
  }
  use_tsc = strncmp(cs, "tsc", 3) == 0 && getenv("TT_TRACE_NOTSC") == NULL;
#endif
}

/* Converts t's times from ticks to ns, on the line through the session's start and (tick1, ns1). */
static void to_ns(tt__trace *t, int64_t tick1, int64_t ns1) {
  double rate = use_tsc && tick1 > S.tick0 ? (double)(ns1 - S.t0) / (double)(tick1 - S.tick0) : 1.0;
  for (size_t i = 0; i < t->n; i++)
    t->ev[i].ts = S.t0 + (int64_t)((double)(t->ev[i].ts - S.tick0) * rate);
}

static chunk *chunk_new(void) {
  chunk *c = tt__malloc(sizeof(chunk) + S.chunk_cap * sizeof(tt__trec));
  if (c == NULL)
    return NULL;
  c->next = NULL;
  c->cap = S.chunk_cap;
  atomic_init(&c->len, 0);
  c->last_ts = 0;
  return c;
}

static size_t chunk_bytes(const chunk *c) { return sizeof(chunk) + c->cap * sizeof(tt__trec); }

/* S.lock held: appends c to the list, and for the flight recorder unlinks what it no longer keeps
 * onto *drop (freed by the caller outside the lock). */
static void list_push(chunk *c, chunk **drop) {
  c->next = NULL;
  c->last_ts = tt__clock();
  if (S.tail)
    S.tail->next = c;
  else
    S.head = c;
  S.tail = c;
  S.list_bytes += chunk_bytes(c);
  if (S.mode != M_FLIGHT)
    return;
  int64_t horizon = S.keep_ns > 0 ? c->last_ts - S.keep_ns : INT64_MIN;
  while (S.head && S.head != c && (S.list_bytes > S.keep_bytes || S.head->last_ts < horizon)) {
    chunk *old = S.head;
    S.head = old->next;
    S.list_bytes -= chunk_bytes(old);
    old->next = *drop;
    *drop = old;
  }
}

static void drop_free(chunk *d) {
  while (d) {
    chunk *n = d->next;
    free(d);
    d = n;
  }
}

/* Tells the binary form's writer that chunks wait (at a hand-over: not on the hot path). */
static void writer_kick(void) {
  /* release: pairs with the writer's acquire load before it sleeps (the futex re-checks). */
  atomic_fetch_add_explicit(&S.wgen, 1, memory_order_release);
  tt__futex_wake(&S.wgen, 1);
}

/* Copies the record and its payload into c at its published length (room checked). */
static void chunk_put(chunk *c, const tt__trec *r, const char *p1, size_t n1, const char *p2,
                      size_t n2) {
  size_t at = atomic_load_explicit(&c->len, memory_order_relaxed); /* our own */
  size_t n = NREC(r->len);
  c->r[at] = *r;
  if (r->len) {
    char *p = (char *)&c->r[at + 1];
    memcpy(p, p1, n1);
    p[n1] = '\0';
    if (p2) {
      memcpy(p + n1 + 1, p2, n2);
      p[n1 + 1 + n2] = '\0';
    }
    memset(p + r->len, 0, (n - 1) * sizeof(tt__trec) - r->len);
  }
  /* release: a reader that loads the length sees the records below it. */
  atomic_store_explicit(&c->len, at + n, memory_order_release);
}

/* The worker's chunk c is full (or missing): hands it to the session and returns a fresh one, or
 * NULL when out of memory (the event is lost). Inside the worker's busy section. */
static TT_NOINLINE chunk *handoff(wslot *s, chunk *c) {
  chunk *fresh = chunk_new(), *drop = NULL;
  tt__lock_acquire(&S.lock);
  if (c != NULL && atomic_load_explicit(&c->len, memory_order_relaxed) > 0)
    list_push(c, &drop);
  else
    drop = c; /* empty: not kept */
  s->cur = fresh;
  tt__lock_release(&S.lock);
  drop_free(drop);
  if (S.stream && c != NULL)
    writer_kick();
  return fresh;
}

static void fn_register(uintptr_t fn);

/* A function the binary form's writer must name: registered once per worker and session. */
static void fn_note(wslot *s, uintptr_t fn) {
  if (s->fngen != S.gen) {
    memset(s->fns, 0, sizeof s->fns);
    s->fngen = S.gen;
  }
  uintptr_t *e = &s->fns[(fn >> 4) & 31];
  if (*e != fn) {
    fn_register(fn);
    *e = fn;
  }
}

static void emit(tt__trec *r, const char *p1, size_t n1, const char *p2, size_t n2);

/* Records an event without payload: the hot hooks' path, written in place.
 *
 * A RUN that follows, on the same worker, the BLOCK or EXIT of the coroutine it switches away from
 * (nothing recorded between them) takes that event's time instead of reading the clock: the two
 * are a switch apart, tens of nanoseconds, and a clock read is most of an event's cost. A wake
 * from another worker that lands in that window may then come out after the RUN it caused; the
 * readers take a RUN of a blocked coroutine as the end of its block. */
static void emit_fast(uint8_t kind, uint8_t arg, uint64_t a, uint64_t b, uint64_t c3, uint64_t d) {
  tt__worker *w = tt__tls_worker;
  if (TT_UNLIKELY(w == NULL || w->index >= MAXW)) {
    tt__trec r = {.kind = kind, .arg = arg, .a = a, .b = b, .c = c3, .d = d};
    emit(&r, NULL, 0, NULL, 0);
    return;
  }
  wslot *s = &slots[w->index];
  atomic_store_explicit(&s->busy, 1, memory_order_relaxed);
  /* The worker's side of the Dekker pair with the stopper (see "Stopping"). */
  if (TT_LIKELY(tt__rt.scan_asym))
    atomic_signal_fence(memory_order_seq_cst);
  else
    atomic_thread_fence(memory_order_seq_cst);
  /* acquire: pairs with session_open's release; the session's fields are visible. */
  if (TT_LIKELY(atomic_load_explicit(&tt__trace_on, memory_order_acquire))) {
    int64_t ts;
    if (kind == TT__TK_RUN && w->cur != NULL && s->last_a == w->cur->id &&
        (s->last_kind == TT__TK_BLOCK || s->last_kind == TT__TK_EXIT) && s->last_gen == S.gen)
      ts = s->last_ts;
    else
      ts = ticks();
    s->last_ts = ts;
    s->last_a = a;
    s->last_kind = kind;
    s->last_gen = S.gen;
    if (kind == TT__TK_CREATE && S.stream && d)
      fn_note(s, (uintptr_t)d);
    chunk *c = s->cur;
    size_t at;
    if (TT_UNLIKELY(c == NULL ||
                    (at = atomic_load_explicit(&c->len, memory_order_relaxed)) >= c->cap)) {
      c = handoff(s, c);
      at = 0;
    }
    if (TT_LIKELY(c != NULL)) {
      tt__trec *r = &c->r[at];
      __builtin_prefetch(r + 4, 1); /* the lines ahead: written soon, never read first */
      r->ts = ts;
      r->kind = kind;
      r->arg = arg;
      r->worker = (uint16_t)w->index;
      r->len = 0;
      r->a = a;
      r->b = b;
      r->c = c3;
      r->d = d;
      /* release: a reader that loads the length sees the record. */
      atomic_store_explicit(&c->len, at + 1, memory_order_release);
    }
  }
  /* release: our writes to the chunk happen before a stopper that sees busy clear. */
  atomic_store_explicit(&s->busy, 0, memory_order_release);
}

/* Records r with payload p1 (and p2, when not NULL), n1/n2 bytes each, NUL-terminated in the
 * payload. The caller has seen tt__trace_on set. */
static void emit(tt__trec *r, const char *p1, size_t n1, const char *p2, size_t n2) {
  r->len = p1 ? (uint32_t)(n1 + 1 + (p2 ? n2 + 1 : 0)) : 0;
  size_t need = NREC(r->len);
  r->ts = ticks();
  tt__worker *w = tt__tls_worker;
  if (w != NULL && w->index < MAXW) {
    wslot *s = &slots[w->index];
    atomic_store_explicit(&s->busy, 1, memory_order_relaxed);
    /* The worker's side of the Dekker pair with the stopper (see "Stopping"). */
    if (TT_LIKELY(tt__rt.scan_asym))
      atomic_signal_fence(memory_order_seq_cst);
    else
      atomic_thread_fence(memory_order_seq_cst);
    /* acquire: pairs with session_open's release; the session's fields (chunk_cap, stream) are
     * visible. */
    if (atomic_load_explicit(&tt__trace_on, memory_order_acquire)) {
      r->worker = (uint16_t)w->index;
      s->last_kind = r->kind;
      if ((r->kind == TT__TK_CREATE || r->kind == TT__TK_INFO) && S.stream && r->d)
        fn_note(s, (uintptr_t)r->d);
      chunk *c = s->cur;
      /* (A record with its payload always fits an empty chunk: 23 records at most.) */
      if (c == NULL || atomic_load_explicit(&c->len, memory_order_relaxed) + need > c->cap)
        c = handoff(s, c);
      if (c != NULL)
        chunk_put(c, r, p1, n1, p2, n2); /* else out of memory: the event is lost */
    }
    /* release: our writes to the chunk happen before a stopper that sees busy clear. */
    atomic_store_explicit(&s->busy, 0, memory_order_release);
    return;
  }
  r->worker = TT__TW_THREAD;
  chunk *drop = NULL;
  bool kick = false;
  tt__lock_acquire(&S.lock);
  if (atomic_load_explicit(&tt__trace_on, memory_order_relaxed) && need <= S.chunk_cap) {
    if ((r->kind == TT__TK_CREATE || r->kind == TT__TK_INFO) && S.stream && r->d)
      fn_register((uintptr_t)r->d); /* lock order: S.lock, then fnlock */
    chunk *c = S.tcur;
    if (c == NULL || atomic_load_explicit(&c->len, memory_order_relaxed) + need > c->cap) {
      if (c != NULL)
        list_push(c, &drop);
      c = S.tcur = chunk_new(); /* rare: a plain thread's chunk fills slowly */
    }
    if (c != NULL)
      chunk_put(c, r, p1, n1, p2, n2);
    kick = S.stream && S.head != NULL; /* the session is on: its fields are stable */
  }
  tt__lock_release(&S.lock);
  drop_free(drop);
  if (kick)
    writer_kick();
}

/* ---- The hooks ---------------------------------------------------------------------------- */

void tt__trace_create(const tt__coro *co) {
  /* The name is the spawner's copy until the child runs: no one else writes it meanwhile. */
  if (co->name == NULL) {
    emit_fast(TT__TK_CREATE, 0, co->id, co->parent, (uintptr_t)co->create_pc, (uintptr_t)co->fn);
    return;
  }
  tt__trec r = {.kind = TT__TK_CREATE,
                .a = co->id,
                .b = co->parent,
                .c = (uintptr_t)co->create_pc,
                .d = (uintptr_t)co->fn};
  emit(&r, co->name, strnlen(co->name, 255), NULL, 0);
}

void tt__trace_run(const tt__coro *co) { emit_fast(TT__TK_RUN, 0, co->id, 0, 0, 0); }

void tt__trace_block(const tt__coro *co, int reason, const void *obj) {
  emit_fast(TT__TK_BLOCK, (uint8_t)reason, co->id, (uintptr_t)obj, 0, 0);
}

void tt__trace_unblock(const tt__coro *co) {
  tt__worker *w = tt__tls_worker;
  tt__coro *self = w ? w->cur : NULL; /* the waker: a coroutine, or 0 */
  emit_fast(TT__TK_UNBLOCK, co->wait_reason, co->id, self ? self->id : 0, 0, 0);
}

void tt__trace_exit(const tt__coro *co) { emit_fast(TT__TK_EXIT, 0, co->id, 0, 0, 0); }

void tt__trace_name(const tt__coro *co) {
  tt__trec r = {.kind = TT__TK_NAME, .a = co->id};
  const char *name = co->name ? co->name : "";
  emit(&r, name, strnlen(name, 255), NULL, 0);
}

void tt__trace_leak(const tt__coro *co, int verdict) {
  tt__trec r = {.kind = TT__TK_LEAK, .arg = (uint8_t)verdict, .a = co->id, .b = co->wait_reason};
  emit(&r, NULL, 0, NULL, 0);
}

static inline bool trace_on(void) {
  return TT_UNLIKELY(atomic_load_explicit(&tt__trace_on, memory_order_relaxed));
}

static uint64_t self_id(void) {
  tt__coro *co = tt__self();
  return co ? co->id : 0;
}

int tt_trace_region_begin(const char *name) {
  if (name == NULL)
    return TT_EINVAL;
  if (trace_on()) {
    tt__trec r = {.kind = TT__TK_REGION_BEGIN, .a = self_id()};
    emit(&r, name, strnlen(name, 255), NULL, 0);
  }
  return 0;
}

int tt_trace_region_end(void) {
  if (trace_on()) {
    tt__trec r = {.kind = TT__TK_REGION_END, .a = self_id()};
    emit(&r, NULL, 0, NULL, 0);
  }
  return 0;
}

int tt_trace_log(const char *cat, const char *msg) {
  if (msg == NULL)
    return TT_EINVAL;
  if (trace_on()) {
    tt__trec r = {.kind = TT__TK_LOG, .a = self_id()};
    if (cat == NULL)
      cat = "";
    size_t nc = strnlen(cat, 255);
    emit(&r, cat, nc, msg, strnlen(msg, 1022 - nc));
  }
  return 0;
}

int tt_trace_enabled(void) { return atomic_load_explicit(&tt__trace_on, memory_order_relaxed); }

/* ---- Sessions ----------------------------------------------------------------------------- */

static void live_emit(tt__coro *co, uint32_t state, bool held, void *arg);
static bool in_runtime(void);
static void writer_finish(void);

/* ctl held, no session on: opens one. */
static int session_open(int mode, size_t chunk_bytes, int64_t keep_ns, size_t keep_bytes) {
  if (S.mode != M_OFF)
    return TT_EBUSY;
  if (chunk_bytes == 0)
    chunk_bytes = 64 * 1024;
  if (chunk_bytes < 4096 || chunk_bytes > 16 * 1024 * 1024)
    return TT_EINVAL;
  ticks_init(); /* once per process: reads sysfs, so not under the lock */
  tt__lock_acquire(&S.lock);
  S.chunk_cap = (chunk_bytes - sizeof(chunk)) / sizeof(tt__trec);
  S.mode = mode;
  if (!S.stream) { /* the binary form's header has them already */
    S.t0 = tt__clock();
    S.tick0 = ticks();
  }
  S.head = S.tail = S.tcur = NULL;
  S.list_bytes = 0;
  S.keep_ns = keep_ns;
  S.keep_bytes = keep_bytes;
  S.gen++;
  /* release: a worker that sees the flag on sees the session's fields (chunk_cap). */
  atomic_store_explicit(&tt__trace_on, 1, memory_order_release);
  tt__lock_release(&S.lock);
  return 0;
}

/* ctl held, a session on: turns recording off, waits for every worker to leave its buffer, and
 * takes every chunk (oldest first) into *out; the session is closed. */
static chunk *session_close(void) {
  tt__lock_acquire(&S.lock);
  atomic_store_explicit(&tt__trace_on, 0, memory_order_seq_cst);
  tt__lock_release(&S.lock);
  /* The stopper's side of the Dekker pair (see "Stopping"). */
  tt__asym_barrier();
  for (int i = 0; i < MAXW; i++) {
    uint32_t spins = 0;
    /* acquire: the worker's records happen before we read its chunk. */
    while (atomic_load_explicit(&slots[i].busy, memory_order_acquire))
      tt__spin_step(&spins);
  }
  chunk *drop = NULL;
  tt__lock_acquire(&S.lock);
  for (int i = 0; i < MAXW; i++) {
    chunk *c = slots[i].cur;
    slots[i].cur = NULL;
    if (c && atomic_load_explicit(&c->len, memory_order_relaxed))
      list_push(c, &drop);
    else
      free(c);
  }
  if (S.tcur && atomic_load_explicit(&S.tcur->len, memory_order_relaxed))
    list_push(S.tcur, &drop);
  else
    free(S.tcur);
  chunk *all = S.head;
  S.head = S.tail = S.tcur = NULL;
  S.list_bytes = 0;
  S.mode = M_OFF;
  tt__lock_release(&S.lock);
  drop_free(drop);
  return all;
}

/* Decodes chunks (their published prefixes) into t, sorted; frees nothing. */
static int decode_chunks(chunk *c, tt__trace *t, int64_t t1, int64_t tick1) {
  memset(t, 0, sizeof *t);
  t->t0 = S.t0;
  t->t1 = t1;
  for (; c; c = c->next) {
    size_t n = atomic_load_explicit(&c->len, memory_order_acquire);
    int err = tt__trace_decode(t, c->r, n * sizeof(tt__trec), true);
    if (err)
      return err;
  }
  to_ns(t, tick1, t1);
  tt__trace_sort(t);
  if (t->n && t->ev[0].ts < t->t0)
    t->t0 = t->ev[0].ts;
  if (t->n && t->ev[t->n - 1].ts > t->t1)
    t->t1 = t->ev[t->n - 1].ts;
  return 0;
}

/* ---- Live coroutines' names ---------------------------------------------------------------- */

typedef struct live {
  tt__trace *t;
  char *buf; /* the names' copies, back to back */
  size_t len, cap;
  size_t first; /* t's first INFO event */
  int err;
} live;

/* Records one held coroutine: its id, parent, fn and a copy of its name (only a held one's name
 * may be read: a running coroutine may be renaming itself). */
static void live_one(tt__coro *co, uint32_t state, bool held, void *arg) {
  (void)state;
  live *l = arg;
  if (!held || l->err)
    return;
  const char *name = co->name ? co->name : "";
  size_t n = strnlen(name, 255);
  if (l->len + n + 1 > l->cap) {
    size_t cap = (l->cap ? l->cap * 2 : 4096) + n + 1;
    char *nb = realloc(l->buf, cap);
    if (nb == NULL) {
      l->err = TT_ENOMEM;
      return;
    }
    l->buf = nb;
    l->cap = cap;
  }
  tt__trace *t = l->t;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    tt__tev *nv = realloc(t->ev, cap * sizeof *nv);
    if (nv == NULL) {
      l->err = TT_ENOMEM;
      return;
    }
    t->ev = nv;
    t->cap = cap;
  }
  memcpy(l->buf + l->len, name, n);
  l->buf[l->len + n] = '\0';
  /* s1 holds the offset until the buffer stops moving (see add_live). */
  t->ev[t->n++] = (tt__tev){.ts = t->t1,
                            .kind = TT__TK_INFO,
                            .a = co->id,
                            .b = co->parent,
                            .d = (uintptr_t)co->fn,
                            .s1 = (const char *)(uintptr_t)l->len,
                            .seq = t->n};
  l->len += n + 1;
}

/* Appends an INFO event (at t1, after every other) for each suspended coroutine of the running
 * runtime. The caller keeps the runtime running (it is a coroutine, the leak monitor, or the
 * endpoint holding it). */
static int add_live(tt__trace *t) {
  live l = {.t = t, .first = t->n};
  tt__registry_walk_frozen(live_one, &l);
  void **nb = l.err ? NULL : realloc(t->bufs, (t->nbufs + 1) * sizeof *nb);
  if (nb == NULL) {
    t->n = l.first;
    free(l.buf);
    return l.err ? l.err : TT_ENOMEM;
  }
  t->bufs = nb;
  t->bufs[t->nbufs++] = l.buf;
  for (size_t i = l.first; i < t->n; i++) {
    tt__tev *e = &t->ev[i];
    e->s1 = l.buf + (uintptr_t)e->s1;
    tt__sym sym;
    if (e->d && tt__symbolize((uintptr_t)e->d, &sym, 1) >= 1 && sym.func)
      e->s2 = sym.func;
  }
  return 0;
}

/* At a session's start: an INFO record for each suspended coroutine (a running one is named by
 * the INFO events added when the trace is written, if it is still alive then). */
static void live_emit(tt__coro *co, uint32_t state, bool held, void *arg) {
  (void)state;
  (void)arg;
  if (!held)
    return;
  tt__trec r = {.kind = TT__TK_INFO, .a = co->id, .b = co->parent, .d = (uintptr_t)co->fn};
  const char *name = co->name ? co->name : "";
  emit(&r, name, strnlen(name, 255), NULL, 0);
}

/* Whether the caller keeps the runtime running: a coroutine of it. */
static bool in_runtime(void) { return tt__self() != NULL; }

/* ---- The binary form's writer ------------------------------------------------------------ */

static int write_all(int fd, const void *p, size_t n) {
  const char *q = p;
  while (n > 0) {
    ssize_t w = write(fd, q, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return TT_EIO;
    q += w;
    n -= (size_t)w;
  }
  return 0;
}

/* fnlock held: adds fn to the session's set, and to the writer's pending list if new. */
static void fn_add(uintptr_t fn) {
  if ((S.nsyms + 1) * 2 > S.capsyms) {
    size_t cap = S.capsyms ? S.capsyms * 2 : 256;
    uintptr_t *v = calloc(cap, sizeof *v);
    if (v == NULL)
      return; /* its track shows "?" */
    for (size_t i = 0; i < S.capsyms; i++)
      if (S.syms[i]) {
        size_t h = (S.syms[i] >> 4) & (cap - 1);
        while (v[h])
          h = (h + 1) & (cap - 1);
        v[h] = S.syms[i];
      }
    free(S.syms);
    S.syms = v;
    S.capsyms = cap;
  }
  size_t h = (fn >> 4) & (S.capsyms - 1);
  for (; S.syms[h]; h = (h + 1) & (S.capsyms - 1))
    if (S.syms[h] == fn)
      return;
  if (S.npending == S.cappending) {
    size_t cap = S.cappending ? S.cappending * 2 : 64;
    uintptr_t *v = realloc(S.pending, cap * sizeof *v);
    if (v == NULL)
      return;
    S.pending = v;
    S.cappending = cap;
  }
  S.syms[h] = fn;
  S.nsyms++;
  S.pending[S.npending++] = fn;
}

static void fn_register(uintptr_t fn) {
  tt__lock_acquire(&S.fnlock);
  fn_add(fn);
  tt__lock_release(&S.fnlock);
}

/* Writes a SYM record for each function registered since the last call. */
static int write_syms(void) {
  tt__lock_acquire(&S.fnlock);
  uintptr_t *fns = S.pending;
  size_t n = S.npending;
  S.pending = NULL;
  S.npending = S.cappending = 0;
  tt__lock_release(&S.fnlock);
  int err = 0;
  for (size_t i = 0; i < n && !err; i++) {
    tt__sym sym;
    const char *name = tt__symbolize(fns[i], &sym, 1) >= 1 && sym.func ? sym.func : "?";
    size_t len = strnlen(name, 255);
    tt__trec rec[1 + 6] = {
        {.ts = S.tick0, .kind = TT__TK_SYM, .len = (uint32_t)len + 1, .d = fns[i]}};
    memcpy(&rec[1], name, len); /* the rest is zero: the NUL and the padding */
    err = write_all(S.fd, rec, NREC(len + 1) * sizeof(tt__trec));
  }
  free(fns);
  return err;
}

/* Writes chunks as they are (the reader sorts), after the symbols of the functions they name. */
static int stream_chunks(const chunk *c) {
  int err = write_syms();
  for (; c && !err; c = c->next)
    err = write_all(S.fd, c->r,
                    atomic_load_explicit(&c->len, memory_order_acquire) * sizeof(tt__trec));
  return err;
}

static void *writer_main(void *unused) {
  (void)unused;
  /* Counted as one of the runtime's own threads (the deadlock check's count), as the monitor. */
  atomic_fetch_add_explicit(&tt__threads_internal, 1, memory_order_release);
  pthread_setname_np(pthread_self(), "tt-trace");
  for (;;) {
    /* acquire: pairs with writer_kick; a kick after this load changes the word, so the wait
     * below returns at once. */
    uint32_t g = atomic_load_explicit(&S.wgen, memory_order_acquire);
    tt__lock_acquire(&S.lock);
    chunk *c = S.head;
    S.head = S.tail = NULL;
    S.list_bytes = 0;
    bool stop = S.wstop;
    tt__lock_release(&S.lock);
    if (c) {
      int err = stream_chunks(c);
      if (err && !S.werr)
        S.werr = err;
      drop_free(c);
      continue;
    }
    if (stop)
      break;
    tt__futex_wait(&S.wgen, g, -1);
  }
  atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
  return NULL;
}

/* Writes t to fd as JSON. */
static int write_fd(const tt__trace *t, int fd) {
  char *buf = tt__malloc(16384); /* not on the stack: the caller may be a coroutine */
  if (buf == NULL)
    return TT_ENOMEM;
  tt__sink k;
  tt__sink_fd(&k, fd, buf, 16384);
  int err = tt__trace_json(t, &k);
  int ferr = tt__sink_flush(&k);
  free(buf);
  return err ? err : ferr;
}

int tt_trace_start(int fd, const tt_trace_opts *opts) {
  int format = opts ? opts->format : TT_TRACE_JSON;
  size_t cb = opts ? opts->chunk_bytes : 0;
  if (fd < 0 || (format != TT_TRACE_JSON && format != TT_TRACE_BINARY) ||
      (cb != 0 && (cb < 4096 || cb > 16 * 1024 * 1024)))
    return TT_EINVAL; /* (checked here too: the binary form writes its header first) */
  pthread_mutex_lock(&S.ctl);
  int err = 0;
  if (format == TT_TRACE_BINARY && S.mode == M_OFF) {
    /* The header, then the writer (before any record can be handed over). */
    /* The first point of the ticks' line: the session's, taken now and kept by session_open. */
    ticks_init();
    S.t0 = tt__clock();
    S.tick0 = ticks();
    int64_t hdr[3] = {0, S.t0, S.tick0};
    memcpy(hdr, TT__TRACE_MAGIC, 8);
    S.fd = fd;
    S.werr = 0;
    S.wstop = false;
    tt__lock_acquire(&S.fnlock);
    S.nsyms = S.npending = 0;
    if (S.syms)
      memset(S.syms, 0, S.capsyms * sizeof *S.syms);
    tt__lock_release(&S.fnlock);
    if ((err = write_all(fd, hdr, sizeof hdr)) == 0) {
      S.stream = true;
      if (tt__fault(TT__FAULT_THREAD) || pthread_create(&S.writer, NULL, writer_main, NULL) != 0) {
        S.stream = false;
        err = TT_ENOMEM;
      }
    }
  }
  if (!err)
    err = session_open(M_FULL, opts ? opts->chunk_bytes : 0, 0, 0);
  if (err && S.stream) {
    writer_finish();
    S.stream = false;
  }
  if (!err) {
    S.fd = fd;
    S.format = format;
    S.run_owned = false;
    if (in_runtime())
      tt__registry_walk_frozen(live_emit, NULL);
  }
  pthread_mutex_unlock(&S.ctl);
  return err;
}

/* Stops the writer and waits for it. */
static void writer_finish(void) {
  tt__lock_acquire(&S.lock);
  S.wstop = true;
  tt__lock_release(&S.lock);
  writer_kick();
  pthread_join(S.writer, NULL);
}

/* ctl held, a full session on: closes it and writes it. */
static int full_stop(void) {
  int64_t t1 = tt__clock(), tick1 = ticks();
  chunk *all = session_close();
  if (S.stream) {
    /* The writer writes what it took; the rest (the workers' last chunks) is written here. */
    writer_finish();
    S.stream = false;
    int err = S.werr ? S.werr : stream_chunks(all);
    /* The second point of the ticks' line (the header has the first). */
    tt__trec clk = {.ts = tick1, .kind = TT__TK_CLOCK, .a = (uint64_t)t1};
    if (!err)
      err = write_all(S.fd, &clk, sizeof clk);
    drop_free(all);
    S.fd = -1;
    return err;
  }
  tt__trace t;
  int err = decode_chunks(all, &t, t1, tick1);
  if (!err && in_runtime())
    err = add_live(&t);
  if (!err)
    err = write_fd(&t, S.fd);
  tt__trace_free(&t);
  drop_free(all);
  S.fd = -1;
  return err;
}

int tt_trace_stop(void) {
  pthread_mutex_lock(&S.ctl);
  int err = S.mode == M_FULL && !S.run_owned ? full_stop() : TT_EINVAL;
  pthread_mutex_unlock(&S.ctl);
  return err;
}

int tt_trace_flight_start(const tt_trace_flight_opts *opts) {
  if (opts == NULL || opts->seconds < 0 || opts->seconds > INT64_MAX / TT_SEC)
    return TT_EINVAL;
  pthread_mutex_lock(&S.ctl);
  int err = session_open(M_FLIGHT, 0, opts->seconds * TT_SEC,
                         opts->bytes ? opts->bytes : 16u * 1024 * 1024);
  if (!err) {
    S.report_fd = opts->report_fd > 0 ? opts->report_fd : -1; /* read under ctl only */
    if (in_runtime())
      tt__registry_walk_frozen(live_emit, NULL);
  }
  pthread_mutex_unlock(&S.ctl);
  return err;
}

/* ctl held, the flight recorder on: copies what it holds (under S.lock: the hand-overs wait
 * for the copy) and writes it as JSON. */
static int flight_write(int fd, bool live) {
  int64_t t1 = tt__clock(), tick1 = ticks();
  tt__lock_acquire(&S.lock);
  /* The chunks and the lengths counted now: a worker may publish more meanwhile, but each
   * length it published covers whole events (a record and its payload). */
  /* On the heap: the caller may be a coroutine, with a small stack. Allocated under the lock,
   * which is rare (a write) and short. */
  chunk **list = tt__malloc((MAXW + 1) * sizeof *list);
  size_t *lens = tt__malloc((MAXW + 1) * sizeof *lens), nl = 0, total = 0;
  if (list == NULL || lens == NULL) {
    tt__lock_release(&S.lock);
    free(list);
    free(lens);
    return TT_ENOMEM;
  }
  for (int i = 0; i < MAXW; i++)
    if (slots[i].cur) {
      list[nl] = slots[i].cur;
      /* acquire: the records below the length are complete. */
      lens[nl] = atomic_load_explicit(&slots[i].cur->len, memory_order_acquire);
      total += lens[nl++];
    }
  if (S.tcur) {
    list[nl] = S.tcur;
    lens[nl] = atomic_load_explicit(&S.tcur->len, memory_order_relaxed); /* under the lock */
    total += lens[nl++];
  }
  for (chunk *c = S.head; c; c = c->next)
    total += atomic_load_explicit(&c->len, memory_order_relaxed); /* handed over: final */
  tt__trec *copy = tt__malloc(total ? total * sizeof(tt__trec) : 1);
  size_t at = 0;
  if (copy) {
    for (chunk *c = S.head; c; c = c->next) {
      size_t n = atomic_load_explicit(&c->len, memory_order_relaxed);
      memcpy(copy + at, c->r, n * sizeof(tt__trec));
      at += n;
    }
    for (size_t i = 0; i < nl; i++) {
      memcpy(copy + at, list[i]->r, lens[i] * sizeof(tt__trec));
      at += lens[i];
    }
  }
  tt__lock_release(&S.lock);
  free(list);
  free(lens);
  if (copy == NULL)
    return TT_ENOMEM;
  tt__trace t = {0};
  int err = tt__trace_decode(&t, copy, at * sizeof(tt__trec), true);
  if (!err) {
    to_ns(&t, tick1, t1);
    tt__trace_sort(&t);
    t.t0 = t.n ? t.ev[0].ts : t1; /* the recorder's window: its oldest event kept */
    t.t1 = t.n && t.ev[t.n - 1].ts > t1 ? t.ev[t.n - 1].ts : t1;
    if (live)
      err = add_live(&t);
    if (!err)
      err = write_fd(&t, fd);
  }
  tt__trace_free(&t);
  free(copy);
  return err;
}

int tt_trace_flight_write(int fd) {
  if (fd < 0)
    return TT_EINVAL;
  pthread_mutex_lock(&S.ctl);
  int err = S.mode == M_FLIGHT ? flight_write(fd, in_runtime()) : TT_EINVAL;
  pthread_mutex_unlock(&S.ctl);
  return err;
}

int tt_trace_flight_stop(void) {
  pthread_mutex_lock(&S.ctl);
  int err = TT_EINVAL;
  if (S.mode == M_FLIGHT) {
    drop_free(session_close());
    S.report_fd = -1;
    err = 0;
  }
  pthread_mutex_unlock(&S.ctl);
  return err;
}

void tt__trace_report(void) {
  if (!trace_on())
    return;
  pthread_mutex_lock(&S.ctl);
  if (S.mode == M_FLIGHT && S.report_fd >= 0)
    (void)flight_write(S.report_fd, true); /* the monitor runs while the runtime does */
  pthread_mutex_unlock(&S.ctl);
}

int tt__trace_capture_begin(bool live) {
  pthread_mutex_lock(&S.ctl);
  int err = session_open(M_CAPTURE, 0, 0, 0);
  if (!err && live)
    tt__registry_walk_frozen(live_emit, NULL);
  pthread_mutex_unlock(&S.ctl);
  return err;
}

int tt__trace_capture_end(tt__trace *t, bool live) {
  memset(t, 0, sizeof *t);
  pthread_mutex_lock(&S.ctl);
  int err = TT_EINVAL;
  if (S.mode == M_CAPTURE) {
    int64_t t1 = tt__clock(), tick1 = ticks();
    chunk *all = session_close();
    err = decode_chunks(all, t, t1, tick1);
    /* The events point into the chunks: hand them to t. */
    for (chunk *c = all; c;) {
      chunk *n = c->next;
      void **nb = realloc(t->bufs, (t->nbufs + 1) * sizeof *nb);
      if (nb == NULL) {
        /* Cannot keep it: drop the trace rather than leave dangling events. */
        drop_free(c);
        t->n = 0;
        err = TT_ENOMEM;
        break;
      }
      t->bufs = nb;
      t->bufs[t->nbufs++] = c;
      c = n;
    }
    if (!err && live)
      err = add_live(t);
  }
  pthread_mutex_unlock(&S.ctl);
  return err;
}

/* TT_TRACE=path: the whole run, written when it ends. */
void tt__trace_run_start(void) {
  const char *path = getenv("TT_TRACE");
  if (path == NULL || path[0] == '\0')
    return;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "tether: TT_TRACE: cannot open %s: %s\n", path, strerror(errno));
    return;
  }
  pthread_mutex_lock(&S.ctl);
  int err = session_open(M_FULL, 0, 0, 0);
  if (!err) {
    S.fd = fd;
    S.format = TT_TRACE_JSON;
    S.run_owned = true;
  }
  pthread_mutex_unlock(&S.ctl);
  if (err) {
    fprintf(stderr, "tether: TT_TRACE: %s: a trace is already on\n", path);
    close(fd);
  }
}

void tt__trace_run_end(void) {
  pthread_mutex_lock(&S.ctl);
  if (S.mode == M_FULL && S.run_owned) {
    int fd = S.fd;
    int err = full_stop();
    if (err)
      fprintf(stderr, "tether: TT_TRACE: writing the trace failed: %s\n", tt_strerror(err));
    close(fd);
    S.run_owned = false;
  }
  pthread_mutex_unlock(&S.ctl);
}
