/* SPDX-License-Identifier: MIT */
/* Reading traces: decoding records (from the recorder's chunks or a binary file), and writing
 * them as Chrome trace-event JSON, as tether's binary form, or as a text summary.
 *
 * The JSON is the Trace Event Format's JSON object form ({"traceEvents": [...]}) in one process
 * (pid 1) with one track per coroutine (tid = its id, named "g17 worker_main" by thread_name
 * metadata; tid 0 holds plain threads' logs and regions). Each coroutine's life is replayed from
 * its events in time order: a running span ("X", named "running") from a RUN to the BLOCK, EXIT
 * or the next RUN on the same worker (which is how a yield shows), a blocked span named by its
 * wait reason from a BLOCK to its UNBLOCK, a flow arrow ("s" on the waker's running span, "f"
 * bound to the woken one's next running span: bp "e") for each wake by a coroutine, instants
 * ("i") for logs (thread scope) and leak verdicts (global scope), and nestable async spans ("b",
 * "e") for regions, which may span blocks and so cannot be slices of the coroutine's track.
 * Times are microseconds from the trace's start, with nanosecond decimals. Events of coroutines
 * that began before the trace (or, for the flight recorder, before its window) start at its
 * start. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trace_int.h"

/* ---- Decoding ----------------------------------------------------------------------------- */

int tt__trace_decode(tt__trace *t, const void *buf, size_t n, bool symbolize) {
  const tt__trec *r = buf;
  size_t nrec = n / sizeof(tt__trec);
  if (n % sizeof(tt__trec))
    return TT_EINVAL;
  for (size_t i = 0; i < nrec;) {
    const tt__trec *x = &r[i];
    size_t pay = x->len ? (x->len + sizeof(tt__trec) - 1) / sizeof(tt__trec) : 0;
    if (x->kind == 0 || x->kind >= TT__TK_COUNT || pay > nrec - i - 1)
      return TT_EINVAL;
    if (t->n == t->cap) {
      size_t cap = t->cap ? t->cap * 2 : 1024;
      tt__tev *nv = realloc(t->ev, cap * sizeof *nv);
      if (nv == NULL)
        return TT_ENOMEM;
      t->ev = nv;
      t->cap = cap;
    }
    tt__tev *e = &t->ev[t->n];
    *e = (tt__tev){.ts = x->ts,
                   .kind = x->kind,
                   .arg = x->arg,
                   .worker = x->worker,
                   .a = x->a,
                   .b = x->b,
                   .c = x->c,
                   .d = x->d,
                   .seq = t->n};
    if (x->len) {
      const char *p = (const char *)(x + 1);
      size_t l1 = strnlen(p, x->len);
      if (l1 == x->len)
        return TT_EINVAL; /* not NUL-terminated */
      e->s1 = p;
      if (l1 + 1 < x->len) {
        if (strnlen(p + l1 + 1, x->len - l1 - 1) == x->len - l1 - 1)
          return TT_EINVAL;
        e->s2 = p + l1 + 1;
      }
    }
    if ((e->kind == TT__TK_CREATE || e->kind == TT__TK_INFO) && symbolize && e->s2 == NULL &&
        e->d) {
      tt__sym s;
      if (tt__symbolize((uintptr_t)e->d, &s, 1) >= 1 && s.func)
        e->s2 = s.func;
    }
    if (e->kind == TT__TK_LOG && e->s2 == NULL)
      return TT_EINVAL;
    t->n++;
    i += 1 + pay;
  }
  return 0;
}

static int ev_cmp(const void *x, const void *y) {
  const tt__tev *a = x, *b = y;
  if (a->ts != b->ts)
    return a->ts < b->ts ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void tt__trace_sort(tt__trace *t) {
  if (t->n > 1)
    qsort(t->ev, t->n, sizeof *t->ev, ev_cmp);
}

void tt__trace_free(tt__trace *t) {
  free(t->ev);
  for (size_t i = 0; i < t->nbufs; i++)
    free(t->bufs[i]);
  free(t->bufs);
  memset(t, 0, sizeof *t);
}

/* ---- Replaying ---------------------------------------------------------------------------- */

enum { C_UNKNOWN, C_RUNNABLE, C_RUNNING, C_BLOCKED, C_EXITED };
#define MAXDEPTH 32

typedef struct cst {
  uint64_t id, parent;
  uintptr_t pc;
  const char *name, *sym;
  int state;
  int64_t since; /* of the state */
  int worker;    /* running: where */
  uint8_t reason;
  bool flow; /* a wake by a coroutine waits for its next running span */
  uint64_t flow_from;
  int64_t flow_ts;
  int depth; /* open regions */
  const char *regions[MAXDEPTH];
  int64_t exec, sched, blocked, by[TT_WAIT_COUNT];
  uint64_t runs, blocks;
  bool seen; /* it has events (not only INFO) */
} cst;

typedef struct replay {
  const tt__trace *t;
  tt__sink *out; /* NULL: statistics only */
  bool first;
  cst *v;
  size_t n, cap;
  uint32_t *slot; /* open addressing: index + 1 */
  size_t nslot;
  uint32_t *cur; /* per worker (TT__TW_THREAD + 1 of them): the running coroutine's index + 1 */
  uint64_t flows;
  int err;
} replay;

static uint64_t hash_id(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static int grow_slots(replay *p) {
  size_t ns = p->nslot ? p->nslot * 2 : 1024;
  uint32_t *s = calloc(ns, sizeof *s);
  if (s == NULL)
    return TT_ENOMEM;
  for (size_t i = 0; i < p->n; i++) {
    size_t h = hash_id(p->v[i].id) & (ns - 1);
    while (s[h])
      h = (h + 1) & (ns - 1);
    s[h] = (uint32_t)(i + 1);
  }
  free(p->slot);
  p->slot = s;
  p->nslot = ns;
  return 0;
}

/* The coroutine id's state, created (unknown) on first sight; NULL when out of memory. */
static cst *co_find(replay *p, uint64_t id);
static cst *co_get(replay *p, uint64_t id) {
  cst *f = co_find(p, id);
  if (f)
    return f;
  if ((p->n + 1) * 2 > p->nslot && grow_slots(p) != 0)
    return NULL;
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 256;
    cst *nv = realloc(p->v, cap * sizeof *nv);
    if (nv == NULL)
      return NULL;
    p->v = nv;
    p->cap = cap;
  }
  cst *c = &p->v[p->n];
  memset(c, 0, sizeof *c);
  c->id = id;
  c->since = p->t->t0;
  c->worker = -1;
  size_t h = hash_id(id) & (p->nslot - 1);
  while (p->slot[h])
    h = (h + 1) & (p->nslot - 1);
  p->slot[h] = (uint32_t)(++p->n);
  return c;
}

/* Microseconds from the trace's start. */
static void json_us(tt__sink *k, int64_t ns) {
  if (ns < 0)
    ns = 0;
  tt__sink_printf(k, "%lld.%03lld", (long long)(ns / 1000), (long long)(ns % 1000));
}

/* Opens an event object with its common fields. */
static void ev_open(replay *p, const char *ph, const char *name, const char *cat, uint64_t tid,
                    int64_t ts) {
  tt__sink *k = p->out;
  tt__sink_str(k, p->first ? "\n{" : ",\n{");
  p->first = false;
  tt__sink_str(k, "\"name\":");
  tt__sink_json_str(k, name);
  if (cat) {
    tt__sink_str(k, ",\"cat\":");
    tt__sink_json_str(k, cat);
  }
  tt__sink_printf(k, ",\"ph\":\"%s\",\"pid\":1,\"tid\":%llu,\"ts\":", ph, (unsigned long long)tid);
  json_us(k, ts - p->t->t0);
}

static const char *reason_name(int r) {
  const char *s = tt_wait_reason_string(r);
  return s && s[0] ? s : "blocked";
}

/* Ends c's running span at ts; it becomes state. */
static void end_running(replay *p, cst *c, int64_t ts, int state) {
  int64_t d = ts - c->since;
  c->exec += d;
  if (p->out) {
    ev_open(p, "X", "running", "sched", c->id, c->since);
    tt__sink_str(p->out, ",\"dur\":");
    json_us(p->out, d);
    if (c->worker >= 0 && c->worker != TT__TW_THREAD)
      tt__sink_printf(p->out, ",\"args\":{\"worker\":%d}", c->worker);
    tt__sink_str(p->out, "}");
  }
  if (c->worker >= 0 && p->cur[c->worker] == (uint32_t)(c - p->v) + 1)
    p->cur[c->worker] = 0;
  c->state = state;
  c->since = ts;
}

/* Ends c's blocked span at ts (woken by waker, 0: not by a coroutine). */
static void end_blocked(replay *p, cst *c, int64_t ts, uint64_t waker) {
  int64_t d = ts - c->since;
  c->blocked += d;
  c->by[c->reason < TT_WAIT_COUNT ? c->reason : 0] += d;
  if (p->out) {
    ev_open(p, "X", reason_name(c->reason), "blocked", c->id, c->since);
    tt__sink_str(p->out, ",\"dur\":");
    json_us(p->out, d);
    tt__sink_str(p->out, ",\"args\":{\"reason\":");
    tt__sink_json_str(p->out, reason_name(c->reason));
    if (waker)
      tt__sink_printf(p->out, ",\"waker\":%llu", (unsigned long long)waker);
    tt__sink_str(p->out, "}}");
  }
  c->state = C_RUNNABLE;
  c->since = ts;
}

/* A coroutine first seen doing something only a running one does: it ran since the start. */
static void assume_running(replay *p, cst *c, int worker) {
  if (c->state == C_UNKNOWN) {
    c->state = C_RUNNING;
    c->since = p->t->t0;
    c->worker = worker;
  }
}

/* The coroutine id's state if it was seen, else NULL. */
static cst *co_find(replay *p, uint64_t id) {
  if (p->nslot == 0)
    return NULL;
  size_t h = hash_id(id) & (p->nslot - 1);
  for (; p->slot[h]; h = (h + 1) & (p->nslot - 1))
    if (p->v[p->slot[h] - 1].id == id)
      return &p->v[p->slot[h] - 1];
  return NULL;
}

static void on_event(replay *p, const tt__tev *e) {
  if (e->kind == TT__TK_SYM || e->kind == TT__TK_CLOCK)
    return;
  cst *c = co_get(p, e->a);
  if (c == NULL) {
    p->err = TT_ENOMEM;
    return;
  }
  if (e->kind == TT__TK_INFO) {
    /* Names the track, and makes none of its own (seen stays false). */
    if (c->name == NULL && e->s1 && e->s1[0])
      c->name = e->s1;
    if (c->sym == NULL)
      c->sym = e->s2;
    if (c->parent == 0)
      c->parent = e->b;
    return;
  }
  c->seen = true;
  switch (e->kind) {
  case TT__TK_CREATE:
    c->parent = e->b;
    c->pc = (uintptr_t)e->c;
    if (e->s1 && e->s1[0])
      c->name = e->s1;
    c->sym = e->s2;
    c->state = C_RUNNABLE;
    c->since = e->ts;
    break;
  case TT__TK_RUN: {
    uint32_t prev = p->cur[e->worker];
    if (prev && prev - 1 != (uint32_t)(c - p->v) && p->v[prev - 1].state == C_RUNNING)
      end_running(p, &p->v[prev - 1], e->ts, C_RUNNABLE); /* it yielded */
    if (c->state == C_RUNNING) /* a RUN we did not see end (a lost event) */
      end_running(p, c, e->ts, C_RUNNABLE);
    if (c->state == C_BLOCKED) /* its wake's time came out later (clocks apart by a hair) */
      end_blocked(p, c, e->ts, 0);
    if (c->state == C_RUNNABLE)
      c->sched += e->ts - c->since;
    c->state = C_RUNNING;
    c->since = e->ts;
    c->worker = e->worker;
    c->runs++;
    p->cur[e->worker] = (uint32_t)(c - p->v) + 1;
    if (c->flow && p->out) {
      uint64_t id = ++p->flows;
      ev_open(p, "s", "wake", "wake", c->flow_from, c->flow_ts);
      tt__sink_printf(p->out, ",\"id\":%llu}", (unsigned long long)id);
      ev_open(p, "f", "wake", "wake", c->id, e->ts);
      tt__sink_printf(p->out, ",\"bp\":\"e\",\"id\":%llu}", (unsigned long long)id);
    }
    c->flow = false;
    break;
  }
  case TT__TK_BLOCK:
    assume_running(p, c, e->worker);
    if (c->state == C_RUNNING)
      end_running(p, c, e->ts, C_BLOCKED);
    c->state = C_BLOCKED;
    c->since = e->ts;
    c->reason = e->arg;
    c->blocks++;
    break;
  case TT__TK_UNBLOCK: {
    if (c->state == C_RUNNING || c->state == C_EXITED)
      break;                     /* its RUN came first (see above): nothing left to end */
    if (c->state == C_UNKNOWN) { /* blocked since before the trace */
      c->state = C_BLOCKED;
      c->reason = e->arg;
    }
    if (c->state == C_BLOCKED)
      end_blocked(p, c, e->ts, e->b);
    c->state = C_RUNNABLE;
    c->since = e->ts;
    c->flow = false;
    if (e->b) {
      size_t ci = (size_t)(c - p->v);
      cst *w = co_get(p, e->b); /* may move the table */
      if (w == NULL) {
        p->err = TT_ENOMEM;
        return;
      }
      c = &p->v[ci];
      assume_running(p, w, -1);
      if (w->state == C_RUNNING) { /* the arrow starts on the waker's running span */
        c->flow = true;
        c->flow_from = e->b;
        c->flow_ts = e->ts;
      }
    }
    break;
  }
  case TT__TK_EXIT:
    assume_running(p, c, e->worker);
    if (c->state == C_RUNNING)
      end_running(p, c, e->ts, C_EXITED);
    c->state = C_EXITED;
    break;
  case TT__TK_NAME:
    c->name = e->s1 && e->s1[0] ? e->s1 : NULL;
    break;
  case TT__TK_REGION_BEGIN:
    if (c->depth < MAXDEPTH) {
      c->regions[c->depth] = e->s1 ? e->s1 : "region";
      if (p->out) {
        ev_open(p, "b", c->regions[c->depth], "region", c->id, e->ts);
        tt__sink_printf(p->out, ",\"id\":%llu}", (unsigned long long)c->id);
      }
    }
    c->depth++;
    break;
  case TT__TK_REGION_END:
    if (c->depth == 0)
      break;
    c->depth--;
    if (c->depth < MAXDEPTH && p->out) {
      ev_open(p, "e", c->regions[c->depth], "region", c->id, e->ts);
      tt__sink_printf(p->out, ",\"id\":%llu}", (unsigned long long)c->id);
    }
    break;
  case TT__TK_LOG:
    if (p->out) {
      ev_open(p, "i", e->s1[0] ? e->s1 : "log", "log", c->id, e->ts);
      tt__sink_str(p->out, ",\"s\":\"t\",\"args\":{\"message\":");
      tt__sink_json_str(p->out, e->s2);
      tt__sink_str(p->out, "}}");
    }
    break;
  case TT__TK_LEAK:
    if (p->out) {
      char name[96];
      snprintf(name, sizeof name, "leak: g%llu [%s]", (unsigned long long)c->id,
               reason_name(e->b < TT_WAIT_COUNT ? (int)e->b : 0));
      ev_open(p, "i", name, "leak", c->id, e->ts);
      tt__sink_str(p->out, ",\"s\":\"g\",\"args\":{\"verdict\":");
      tt__sink_json_str(p->out, e->arg == TT_VERDICT_DEADLOCK ? "deadlocked" : "leaked");
      tt__sink_str(p->out, ",\"wait_reason\":");
      tt__sink_json_str(p->out, reason_name(e->b < TT_WAIT_COUNT ? (int)e->b : 0));
      tt__sink_str(p->out, "}}");
    }
    break;
  }
}

/* Replays t (writing JSON events to p->out when set) and closes what is open at t1. */
static int replay_run(replay *p, const tt__trace *t, tt__sink *out) {
  memset(p, 0, sizeof *p);
  p->t = t;
  p->out = out;
  p->first = true;
  p->cur = calloc(TT__TW_THREAD + 1, sizeof *p->cur);
  if (p->cur == NULL)
    return TT_ENOMEM;
  for (size_t i = 0; i < t->n && !p->err; i++)
    on_event(p, &t->ev[i]);
  for (size_t i = 0; i < p->n && !p->err; i++) {
    cst *c = &p->v[i];
    if (c->state == C_RUNNING)
      end_running(p, c, t->t1, C_RUNNING);
    else if (c->state == C_BLOCKED)
      end_blocked(p, c, t->t1, 0);
    else if (c->state == C_RUNNABLE && c->since < t->t1)
      c->sched += t->t1 - c->since; /* still waiting for a worker at the end */
    while (out && c->depth > 0) {
      c->depth--;
      if (c->depth < MAXDEPTH) {
        ev_open(p, "e", c->regions[c->depth], "region", c->id, t->t1);
        tt__sink_printf(out, ",\"id\":%llu}", (unsigned long long)c->id);
      }
    }
  }
  return p->err;
}

static void replay_free(replay *p) {
  free(p->cur);
  free(p->v);
  free(p->slot);
}

/* "g17 worker_main": the name, else the function's symbol. */
static void track_name(const cst *c, char *buf, size_t n) {
  if (c->id == 0)
    snprintf(buf, n, "plain threads");
  else
    snprintf(buf, n, "g%llu %s", (unsigned long long)c->id,
             c->name  ? c->name
             : c->sym ? c->sym
                      : "?");
}

int tt__trace_json(const tt__trace *t, tt__sink *out) {
  replay p;
  tt__sink_str(out, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"producer\":\"tether\","
                    "\"version\":\"" TT_VERSION_STRING "\"},\"traceEvents\":[");
  int err = replay_run(&p, t, out);
  if (!err) {
    ev_open(&p, "M", "process_name", NULL, 0, t->t0);
    tt__sink_str(out, ",\"args\":{\"name\":\"tether\"}}");
    for (size_t i = 0; i < p.n; i++) {
      if (!p.v[i].seen)
        continue;
      char name[300];
      track_name(&p.v[i], name, sizeof name);
      ev_open(&p, "M", "thread_name", NULL, p.v[i].id, t->t0);
      tt__sink_str(out, ",\"args\":{\"name\":");
      tt__sink_json_str(out, name);
      tt__sink_str(out, "}}");
      ev_open(&p, "M", "thread_sort_index", NULL, p.v[i].id, t->t0);
      tt__sink_printf(out, ",\"args\":{\"sort_index\":%llu}}", (unsigned long long)p.v[i].id);
    }
  }
  tt__sink_str(out, "\n]}\n");
  replay_free(&p);
  return err;
}

/* ---- The binary form ---------------------------------------------------------------------- */

int tt__trace_read(int fd, tt__trace *t) {
  memset(t, 0, sizeof *t);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  if (buf == NULL)
    return TT_ENOMEM;
  for (;;) {
    if (n == cap) {
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        free(buf);
        return TT_ENOMEM;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      free(buf);
      return errno == EBADF ? TT_EINVAL : TT_EIO;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  int64_t hdr[3];
  if (n < sizeof hdr || memcmp(buf, TT__TRACE_MAGIC, 8) != 0) {
    free(buf);
    return TT_EINVAL;
  }
  memcpy(hdr, buf, sizeof hdr);
  t->bufs = malloc(sizeof *t->bufs);
  if (t->bufs == NULL) {
    free(buf);
    return TT_ENOMEM;
  }
  t->bufs[0] = buf;
  t->nbufs = 1;
  t->t0 = hdr[1];
  t->t1 = hdr[1];
  /* The records start 24 bytes in: copy them to an aligned place of their own. */
  size_t body = n - sizeof hdr;
  char *recs = malloc(body ? body : 1);
  if (recs == NULL) {
    tt__trace_free(t);
    return TT_ENOMEM;
  }
  memcpy(recs, buf + sizeof hdr, body);
  t->bufs[0] = recs;
  free(buf);
  int err = tt__trace_decode(t, recs, body, false);
  if (err) {
    tt__trace_free(t);
    return err;
  }
  /* Ticks to ns, on the line through the header's pair and the CLOCK record's (without it, a
   * trace cut short: ticks taken for ns). */
  double rate = 1.0;
  for (size_t i = t->n; i-- > 0;)
    if (t->ev[i].kind == TT__TK_CLOCK) {
      if (t->ev[i].ts > hdr[2])
        rate = (double)((int64_t)t->ev[i].a - hdr[1]) / (double)(t->ev[i].ts - hdr[2]);
      break;
    }
  for (size_t i = 0; i < t->n; i++)
    t->ev[i].ts = hdr[1] + (int64_t)((double)(t->ev[i].ts - hdr[2]) * rate);
  tt__trace_sort(t);
  /* The functions' symbols: each SYM names its d for the CREATE and INFO records (a few
   * hundred distinct functions at most, in practice: a linear table). */
  const tt__tev **sym = NULL;
  size_t nsym = 0;
  for (size_t i = 0; i < t->n; i++)
    if (t->ev[i].kind == TT__TK_SYM) {
      const tt__tev **ns = realloc(sym, (nsym + 1) * sizeof *ns);
      if (ns == NULL)
        break;
      sym = ns;
      sym[nsym++] = &t->ev[i];
    }
  for (size_t i = 0; i < t->n; i++) {
    tt__tev *e = &t->ev[i];
    if ((e->kind == TT__TK_CREATE || e->kind == TT__TK_INFO) && e->s2 == NULL)
      for (size_t j = 0; j < nsym; j++)
        if (sym[j]->d == e->d) {
          e->s2 = sym[j]->s1;
          break;
        }
  }
  free(sym);
  if (t->n && t->ev[t->n - 1].ts > t->t1)
    t->t1 = t->ev[t->n - 1].ts;
  if (t->n && t->ev[0].ts < t->t0)
    t->t0 = t->ev[0].ts;
  return 0;
}

/* ---- The summary -------------------------------------------------------------------------- */

static int cmp_exec(const void *x, const void *y) {
  const cst *a = x, *b = y;
  if (a->exec != b->exec)
    return a->exec > b->exec ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

static void ms(tt__sink *k, int64_t ns) {
  tt__sink_printf(k, "%11lld.%03lld", (long long)(ns / 1000000), (long long)(ns / 1000 % 1000));
}

int tt__trace_summary_text(const tt__trace *t, tt__sink *out) {
  replay p;
  int err = replay_run(&p, t, NULL);
  if (err) {
    replay_free(&p);
    return err;
  }
  size_t nseen = 0;
  for (size_t i = 0; i < p.n; i++)
    if (p.v[i].seen)
      p.v[nseen++] = p.v[i];
  p.n = nseen;
  qsort(p.v, p.n, sizeof *p.v, cmp_exec);
  int64_t span = t->t1 - t->t0;
  tt__sink_printf(out, "tether trace summary: %zu coroutines, %lld.%03lld ms traced\n\n", p.n,
                  (long long)(span / 1000000), (long long)(span / 1000 % 1000));
  tt__sink_str(out, "coroutine                         exec ms   sched wait ms      blocked ms"
                    "   runs  block time by reason (ms)\n");
  cst tot = {0};
  for (size_t i = 0; i < p.n; i++) {
    const cst *c = &p.v[i];
    char name[300];
    track_name(c, name, sizeof name);
    tt__sink_printf(out, "%-28.28s", name);
    ms(out, c->exec);
    tt__sink_str(out, " ");
    ms(out, c->sched);
    tt__sink_str(out, " ");
    ms(out, c->blocked);
    tt__sink_printf(out, " %6llu ", (unsigned long long)c->runs);
    bool any = false;
    for (int r = 0; r < TT_WAIT_COUNT; r++)
      if (c->by[r] > 0) {
        tt__sink_printf(out, "%s %s %lld.%03lld", any ? "," : "", reason_name(r),
                        (long long)(c->by[r] / 1000000), (long long)(c->by[r] / 1000 % 1000));
        any = true;
      }
    tt__sink_str(out, "\n");
    tot.exec += c->exec;
    tot.sched += c->sched;
    tot.blocked += c->blocked;
    tot.runs += c->runs;
    for (int r = 0; r < TT_WAIT_COUNT; r++)
      tot.by[r] += c->by[r];
  }
  tt__sink_printf(out, "%-28s", "total");
  ms(out, tot.exec);
  tt__sink_str(out, " ");
  ms(out, tot.sched);
  tt__sink_str(out, " ");
  ms(out, tot.blocked);
  tt__sink_printf(out, " %6llu ", (unsigned long long)tot.runs);
  bool any = false;
  for (int r = 0; r < TT_WAIT_COUNT; r++)
    if (tot.by[r] > 0) {
      tt__sink_printf(out, "%s %s %lld.%03lld", any ? "," : "", reason_name(r),
                      (long long)(tot.by[r] / 1000000), (long long)(tot.by[r] / 1000 % 1000));
      any = true;
    }
  tt__sink_str(out, "\n");
  replay_free(&p);
  return 0;
}

/* ---- The public converters ---------------------------------------------------------------- */

static int convert(int in_fd, int out_fd, bool summary) {
  if (in_fd < 0 || out_fd < 0)
    return TT_EINVAL;
  tt__trace t;
  int err = tt__trace_read(in_fd, &t);
  if (err)
    return err;
  char *buf = malloc(16384); /* not on the stack: the caller may be a coroutine */
  if (buf == NULL) {
    tt__trace_free(&t);
    return TT_ENOMEM;
  }
  tt__sink k;
  tt__sink_fd(&k, out_fd, buf, 16384);
  err = summary ? tt__trace_summary_text(&t, &k) : tt__trace_json(&t, &k);
  int ferr = tt__sink_flush(&k);
  free(buf);
  tt__trace_free(&t);
  return err ? err : ferr;
}

int tt_trace_export(int in_fd, int out_fd) { return convert(in_fd, out_fd, false); }

int tt_trace_summary(int in_fd, int out_fd) { return convert(in_fd, out_fd, true); }
