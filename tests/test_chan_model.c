/* SPDX-License-Identifier: MIT */
/* Channels against a model of Go's rules: random sequences of operations, every outcome checked.
 *
 * chan_model_steps_*: a step machine. A controller coroutine and a few worker coroutines share a
 * few int channels (unbuffered and buffered, capacities up to 3). At each step the controller
 * picks a party (an idle worker, or itself for an operation that never blocks) and a random
 * operation: send, receive, their try and deadline variants, close, or a select (blocking, with a
 * default or with a deadline) mixing send and receive cases, nil-channel cases and repeated
 * channels. It hands a worker its operation over the worker's private command channel and lets the
 * runtime settle: every coroutine but the controller parked, which the counts tell exactly, as
 * they are a consistent snapshot. A sequential model (per channel a FIFO buffer, a closed flag and
 * queues of blocked parties; a blocked select is queued on every channel it names) predicts
 * whether the operation completes at once and how, and which blocked operations it completes.
 * Everything is checked: results, values, ok flags and errors, that the cases which did not fire
 * were left alone, who is still blocked and on what (the registry's wait reasons and objects), and
 * len. Where Go leaves a choice (a select with several ready cases; which of a blocked select's
 * cases on one channel fires) the model accepts any allowed choice and follows the one observed.
 * On one worker the schedule and select's choices follow the seed; on two, wake-ups cross threads.
 *
 * chan_model_free_procs2: workers run random operations freely, in parallel, with deadlines racing
 * hand-offs; the check is conservation: every value received was sent (by a send that reported
 * success, on that channel) and is received once, each receiver sees each sender's values on a
 * channel in the order they were sent, a channel a party saw closed stays closed for it, and after
 * close and drain every value sent has been received. When the workers all block in operations
 * none of them will complete, the controller helps with try operations, checked as theirs.
 *
 * To reproduce a step-machine failure: TT_MODEL_SEED=S tether-tests <test> runs sequence S alone
 * (TT_MODEL_TRACE=1 prints every step); TT_MODEL_BASE=B runs the seeds from B on, to explore. */
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "test.h"

enum { MAXCH = 4, MAXW = 5, MAXCASES = 4, MAXCAP = 3, QMAX = MAXW * MAXCASES, NTRACE = 32 };
enum { CTRL = MAXW };   /* the controller's party index in the step machine */
#define SENTINEL (-777) /* what a receive buffer holds until something is stored in it */
/* A deadline that never passes during a test: the operation blocks as its plain variant does, but
 * takes the timed path (a timer armed, then disarmed when a partner or a close completes it). */
#define LONG_DL (3600 * TT_SEC)

/* ---- Random numbers ------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) {
  /* splitmix64: any seed, including 0, gives a good sequence. */
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static int rnd(uint64_t *s, int n) { return (int)(rng_next(s) % (uint64_t)n); }

/* ---- Operations ---------------------------------------------------------------------------- */

enum {
  OP_SEND,
  OP_TRY_SEND,
  OP_SEND_DL,
  OP_RECV,
  OP_TRY_RECV,
  OP_RECV_DL,
  OP_CLOSE,
  OP_SELECT,
  OP_SELECT_TRY,
  OP_SELECT_DL,
};

static bool is_send(int k) { return k <= OP_SEND_DL; }
static bool is_recv(int k) { return k >= OP_RECV && k <= OP_RECV_DL; }
static bool is_select(int k) { return k >= OP_SELECT; }
static bool is_try(int k) { return k == OP_TRY_SEND || k == OP_TRY_RECV || k == OP_SELECT_TRY; }
static bool is_dl(int k) { return k == OP_SEND_DL || k == OP_RECV_DL || k == OP_SELECT_DL; }
/* What an operation that finds nothing ready returns without blocking. */
static int not_ready_err(int k) { return is_try(k) ? TT_EAGAIN : TT_ETIMEDOUT; }

typedef struct mcase {
  int op;  /* TT_SELECT_SEND or TT_SELECT_RECV */
  int ch;  /* the channel's index, -1 for a nil channel */
  int val; /* sends */
} mcase;

typedef struct op {
  int kind;
  int ch;     /* plain operations: the channel's index, -1 for a nil channel */
  int val;    /* plain sends */
  int n;      /* select: the number of cases */
  int64_t dl; /* deadline variants: the deadline, relative to the call */
  mcase c[MAXCASES];
} op;

/* What an operation reported. The receive buffers start as SENTINEL, a plain receive's ok as true.
 */
typedef struct result {
  int ret;
  int val; /* plain receives */
  bool ok;
  int cval[MAXCASES]; /* select: each case's receive buffer, ok and err */
  bool cok[MAXCASES];
  int cerr[MAXCASES];
} result;

static const char *err_str(int e) {
  const char *s = e < 0 ? tt_err_name(e) : NULL;
  return s ? s : "?";
}

static int fmt_ch(char *b, size_t n, int ch) {
  return ch < 0 ? snprintf(b, n, "nil") : snprintf(b, n, "c%d", ch);
}

static void fmt_op(const op *o, char *b, size_t n) {
  static const char *names[] = {"send",    "try_send", "send_dl", "recv",       "try_recv",
                                "recv_dl", "close",    "select",  "select_try", "select_dl"};
  size_t k = (size_t)snprintf(b, n, "%s(", names[o->kind]);
  if (!is_select(o->kind)) {
    k += (size_t)fmt_ch(b + k, n - k, o->ch);
    if (is_send(o->kind) && k < n)
      k += (size_t)snprintf(b + k, n - k, ", %d", o->val);
  } else {
    for (int i = 0; i < o->n && k < n; i++) {
      k += (size_t)snprintf(b + k, n - k, "%s%s ", i ? "; " : "",
                            o->c[i].op == TT_SELECT_SEND ? "send" : "recv");
      if (k < n)
        k += (size_t)fmt_ch(b + k, n - k, o->c[i].ch);
      if (o->c[i].op == TT_SELECT_SEND && k < n)
        k += (size_t)snprintf(b + k, n - k, " %d", o->c[i].val);
    }
  }
  if (is_dl(o->kind) && k < n && o->dl == LONG_DL)
    k += (size_t)snprintf(b + k, n - k, "%s+1h", b[k - 1] != '(' ? ", " : "");
  else if (is_dl(o->kind) && k < n)
    k += (size_t)snprintf(b + k, n - k, "%s+%" PRId64 "us", b[k - 1] != '(' ? ", " : "",
                          o->dl / TT_USEC);
  if (k < n)
    snprintf(b + k, n - k, ")");
}

/* "0", or the error's name with its value. */
static const char *fmt_err(int e, char *b, size_t n) {
  if (e < 0)
    snprintf(b, n, "%s (%d)", err_str(e), e);
  else
    snprintf(b, n, "%d", e);
  return b;
}

static void fmt_result(const op *o, const result *r, char *b, size_t n) {
  char e[40];
  if (!is_select(o->kind)) {
    if (is_recv(o->kind))
      snprintf(b, n, "%s, val %d, ok %d", fmt_err(r->ret, e, sizeof e), r->val, r->ok);
    else
      snprintf(b, n, "%s", fmt_err(r->ret, e, sizeof e));
    return;
  }
  size_t k = (size_t)(r->ret >= 0 ? snprintf(b, n, "case %d", r->ret)
                                  : snprintf(b, n, "%s", fmt_err(r->ret, e, sizeof e)));
  /* The fired case's outputs, and those of any other case that was touched. */
  for (int i = 0; i < o->n && k < n; i++) {
    bool recv = o->c[i].op == TT_SELECT_RECV;
    if (i != r->ret && r->cerr[i] == 0 && !r->cok[i] && (!recv || r->cval[i] == SENTINEL))
      continue;
    if (i != r->ret)
      k += (size_t)snprintf(b + k, n - k, "; case %d touched:", i);
    k += (size_t)snprintf(b + k, n - k, ", err %s, ok %d", fmt_err(r->cerr[i], e, sizeof e),
                          r->cok[i]);
    if (recv && k < n)
      k += (size_t)snprintf(b + k, n - k, ", val %d", r->cval[i]);
  }
}

/* Performs o on chans (a negative index is a nil channel), filling *r. */
static void exec_op(tt_chan *const *chans, const op *o, result *r) {
  tt_chan *ch = o->ch >= 0 ? chans[o->ch] : NULL;
  memset(r, 0, sizeof *r);
  r->val = SENTINEL;
  r->ok = true; /* must become false with TT_ECLOSED */
  int64_t dl = tt_now() + o->dl;
  switch (o->kind) {
  case OP_SEND:
    r->ret = tt_chan_send(ch, &o->val);
    break;
  case OP_TRY_SEND:
    r->ret = tt_chan_try_send(ch, &o->val);
    break;
  case OP_SEND_DL:
    r->ret = tt_chan_send_dl(ch, &o->val, dl);
    break;
  case OP_RECV:
    r->ret = tt_chan_recv(ch, &r->val, &r->ok);
    break;
  case OP_TRY_RECV:
    r->ret = tt_chan_try_recv(ch, &r->val, &r->ok);
    break;
  case OP_RECV_DL:
    r->ret = tt_chan_recv_dl(ch, &r->val, &r->ok, dl);
    break;
  case OP_CLOSE:
    r->ret = tt_chan_close(ch);
    break;
  default: {
    tt_select_case cs[MAXCASES];
    for (int i = 0; i < o->n; i++) {
      tt_chan *c = o->c[i].ch >= 0 ? chans[o->c[i].ch] : NULL;
      r->cval[i] = SENTINEL;
      cs[i] = o->c[i].op == TT_SELECT_SEND ? TT_CASE_SEND(c, &o->c[i].val)
                                           : TT_CASE_RECV(c, &r->cval[i]);
    }
    if (o->kind == OP_SELECT)
      r->ret = tt_select(cs, (size_t)o->n);
    else if (o->kind == OP_SELECT_TRY)
      r->ret = tt_select_try(cs, (size_t)o->n);
    else
      r->ret = tt_select_dl(cs, (size_t)o->n, dl);
    for (int i = 0; i < o->n; i++) {
      r->cok[i] = cs[i].ok;
      r->cerr[i] = cs[i].err;
    }
  }
  }
}

/* A random operation on nch channels, its send values left 0 for the caller to fill in; a close
 * close_rate times in 100000.
 * nonblocking: only kinds that never block (the controller's); dl_max: the longest deadline;
 * long_pct: how often (percent) a deadline variant on a channel gets LONG_DL instead. */
static void gen_op(uint64_t *s, op *o, int nch, int close_rate, bool nonblocking, int64_t dl_max,
                   int long_pct) {
  memset(o, 0, sizeof *o);
  if (rnd(s, 100000) < close_rate) {
    o->kind = OP_CLOSE;
    o->ch = rnd(s, 100) < 3 ? -1 : rnd(s, nch);
    return;
  }
  static const int weights[] = {
      [OP_SEND] = 16,      [OP_TRY_SEND] = 7,  [OP_SEND_DL] = 6, [OP_RECV] = 16,
      [OP_TRY_RECV] = 7,   [OP_RECV_DL] = 6,   [OP_CLOSE] = 0,   [OP_SELECT] = 20,
      [OP_SELECT_TRY] = 9, [OP_SELECT_DL] = 6,
  };
  int total = 0;
  for (int k = 0; k <= OP_SELECT_DL; k++)
    total += nonblocking && !is_try(k) ? 0 : weights[k];
  int r = rnd(s, total);
  for (o->kind = 0;; o->kind++) {
    int w = nonblocking && !is_try(o->kind) ? 0 : weights[o->kind];
    if (r < w)
      break;
    r -= w;
  }
  o->dl = dl_max ? rnd(s, (int)(dl_max / TT_USEC) + 1) * TT_USEC : 0;
  if (!is_select(o->kind)) {
    o->ch = rnd(s, 100) < 5 ? -1 : rnd(s, nch);
    /* A blocking operation on a nil channel would wait forever: give it a deadline. */
    if (o->ch < 0 && o->kind == OP_SEND)
      o->kind = OP_SEND_DL;
    if (o->ch < 0 && o->kind == OP_RECV)
      o->kind = OP_RECV_DL;
    if (is_dl(o->kind) && o->ch >= 0 && rnd(s, 100) < long_pct)
      o->dl = LONG_DL;
    return;
  }
  o->n = rnd(s, 100) < 4 && o->kind != OP_SELECT ? 0 : 1 + rnd(s, MAXCASES);
  bool any = false;
  for (int i = 0; i < o->n; i++) {
    o->c[i].op = rnd(s, 2) ? TT_SELECT_SEND : TT_SELECT_RECV;
    o->c[i].ch = rnd(s, 100) < 15 ? -1 : rnd(s, nch);
    any |= o->c[i].ch >= 0;
  }
  /* Likewise a blocking select with nothing but nil channels. */
  if (o->kind == OP_SELECT && !any)
    o->kind = OP_SELECT_DL;
  if (o->kind == OP_SELECT_DL && any && rnd(s, 100) < long_pct)
    o->dl = LONG_DL;
}

/* ---- The step machine: state --------------------------------------------------------------- */

/* A blocked party in a channel's queue: the worker and its select case (-1: a plain operation). */
typedef struct qent {
  int w, c;
} qent;

typedef struct mchan {
  int cap, n;
  int buf[MAXCAP]; /* buf[0] is the oldest */
  bool closed;
  int nsq, nrq;
  qent sq[QMAX], rq[QMAX];
} mchan;

enum { IDLE, BLOCKED };

typedef struct seqctx seqctx;

typedef struct party {
  seqctx *g;
  tt_id id;
  tt_chan *cmd;         /* commands: the sequence number of the operation in `o` */
  op o;                 /* the current (or last) operation; a blocked sender's value stays here */
  result r;             /* what it reported */
  _Atomic int64_t done; /* the number of the last command completed */
  int64_t issued;       /* the number of the last command issued */
  /* The model's view. */
  int state;  /* IDLE or BLOCKED */
  bool woke;  /* completed an operation in the current step */
  result exp; /* what it should report (when woke) */
  /* The registry's view, collected by verify(). */
  bool seen;
  int rstate, rreason;
  const void *robj;
} party;

typedef struct model_stats {
  int64_t seqs, steps, at_once, blocked, woken, woken_by_close, multi_ready;
  /* Selects with r ready cases (r = 2..MAXCASES): how often the i-th ready one fired. */
  int64_t rank[MAXCASES + 1][MAXCASES];
} model_stats;

struct seqctx {
  uint64_t seed, rng;
  int procs, nsteps, step, nch, nw, close_rate;
  bool trace;
  tt_chan *ch[MAXCH];
  mchan m[MAXCH];
  party p[MAXW + 1]; /* workers, then the controller (CTRL) */
  int nextval;
  int64_t live0;
  int64_t timeout;
  char hist[NTRACE][256];
  int nhist;
  model_stats st;
};

static void dump(seqctx *g) {
  for (int i = 0; i < g->nch; i++) {
    mchan *c = &g->m[i];
    fprintf(stderr, "  c%d: cap %d%s, buffer [", i, c->cap, c->closed ? ", closed" : "");
    for (int j = 0; j < c->n; j++)
      fprintf(stderr, "%s%d", j ? " " : "", c->buf[j]);
    fprintf(stderr, "], blocked senders [");
    for (int j = 0; j < c->nsq; j++)
      fprintf(stderr, "%sw%d.%d", j ? " " : "", c->sq[j].w, c->sq[j].c);
    fprintf(stderr, "], blocked receivers [");
    for (int j = 0; j < c->nrq; j++)
      fprintf(stderr, "%sw%d.%d", j ? " " : "", c->rq[j].w, c->rq[j].c);
    fprintf(stderr, "]\n");
  }
  for (int w = 0; w < g->nw; w++) {
    party *p = &g->p[w];
    char b[200], r[200];
    fmt_op(&p->o, b, sizeof b);
    fmt_result(&p->o, &p->r, r, sizeof r);
    bool done = atomic_load_explicit(&p->done, memory_order_acquire) == p->issued;
    fprintf(stderr, "  w%d: %s%s; observed: %s%s\n", w,
            p->state == BLOCKED ? "blocked in " : "idle", p->state == BLOCKED ? b : "",
            done ? "completed its last command, " : "not completed", done ? r : "");
  }
}

static void model_fail(seqctx *g, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));
static void model_fail(seqctx *g, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nchan model mismatch: seed %" PRIu64 ", procs %d, step %d of %d%s\n  %s\n",
          g->seed, g->procs, g->step, g->nsteps, g->step >= g->nsteps ? " (closing, draining)" : "",
          msg);
  fprintf(stderr, "the last steps (party: operation -> its result):\n");
  int from = g->nhist > NTRACE ? g->nhist - NTRACE : 0;
  for (int i = from; i < g->nhist; i++)
    fprintf(stderr, "  %s\n", g->hist[i % NTRACE]);
  fprintf(stderr, "the model after the step (c.k: case k of a select, c.-1: a plain operation):\n");
  dump(g);
  fprintf(stderr, "reproduce with TT_MODEL_SEED=%" PRIu64 "\n", g->seed);
  tt__sched_dump(stderr);
  tt_test_fail(__FILE__, __LINE__, "seed %" PRIu64 " step %d: %s", g->seed, g->step, msg);
}

/* Lets others run: a few yields, then short sleeps (a timer may be what they wait for). */
static void pause_for(int *spins) {
  if ((*spins)++ < 100)
    tt_yield();
  else
    tt_sleep(10 * TT_USEC);
}

/* Waits until party w has completed its last command; returns what it reported. */
static const result *observe(seqctx *g, int w) {
  party *p = &g->p[w];
  if (w == CTRL)
    return &p->r;
  int64_t deadline = tt_now() + g->timeout;
  for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) != p->issued;) {
    if (tt_now() > deadline) {
      char b[200];
      fmt_op(&p->o, b, sizeof b);
      model_fail(g, "w%d should have completed %s; it has not", w, b);
    }
    pause_for(&spins);
  }
  return &p->r;
}

/* ---- The step machine: the model ----------------------------------------------------------- */

static bool send_ready(seqctx *g, int ch) {
  if (ch < 0)
    return false; /* a nil channel is never ready */
  mchan *c = &g->m[ch];
  return c->closed || c->nrq > 0 || c->n < c->cap;
}

static bool recv_ready(seqctx *g, int ch) {
  if (ch < 0)
    return false; /* a nil channel is never ready */
  mchan *c = &g->m[ch];
  return c->closed || c->nsq > 0 || c->n > 0;
}

/* The cases of a select that can proceed now, as a bit mask. */
static unsigned ready_cases(seqctx *g, const op *o) {
  unsigned m = 0;
  for (int i = 0; i < o->n; i++)
    if (o->c[i].op == TT_SELECT_SEND ? send_ready(g, o->c[i].ch) : recv_ready(g, o->c[i].ch))
      m |= 1u << i;
  return m;
}

/* Removes every queue entry of worker w (its operation completed; a select's other cases go). */
static void unqueue(seqctx *g, int w) {
  for (int i = 0; i < g->nch; i++) {
    mchan *c = &g->m[i];
    int k = 0;
    for (int j = 0; j < c->nsq; j++)
      if (c->sq[j].w != w)
        c->sq[k++] = c->sq[j];
    c->nsq = k;
    k = 0;
    for (int j = 0; j < c->nrq; j++)
      if (c->rq[j].w != w)
        c->rq[k++] = c->rq[j];
    c->nrq = k;
  }
}

/* Which of blocked worker w's entries fired, among the cases in mask (plain operations: -1).
 * Go leaves the choice between several open: the one w reports is accepted if it is in mask. */
static int resolve(seqctx *g, int w, unsigned mask) {
  party *p = &g->p[w];
  if (!is_select(p->o.kind))
    return -1;
  if ((mask & (mask - 1)) == 0)
    return __builtin_ctz(mask);
  const result *r = observe(g, w);
  if (r->ret < 0 || r->ret >= p->o.n || !(mask & (1u << r->ret))) {
    char b[200];
    fmt_op(&p->o, b, sizeof b);
    model_fail(g, "w%d, blocked in %s, reported %d (%s); the cases that may fire: mask 0x%x", w, b,
               r->ret, err_str(r->ret), mask);
  }
  return r->ret;
}

static bool recv_case(const op *o, int k) {
  return k < 0 ? is_recv(o->kind) : o->c[k].op == TT_SELECT_RECV;
}

/* Worker w's blocked operation completes, through its case k (-1: a plain operation), with err
 * (0 or TT_ECLOSED) and, for a receive, val. */
static void expect_woken(seqctx *g, int w, int k, int err, int val) {
  party *p = &g->p[w];
  result *e = &p->exp;
  memset(e, 0, sizeof *e);
  if (k < 0) {
    e->ret = err;
    e->val = err ? 0 : val;
    e->ok = err == 0;
  } else {
    e->ret = k;
    e->cerr[k] = err;
    e->cok[k] = recv_case(&p->o, k) && err == 0;
    e->cval[k] = err ? 0 : val;
  }
  p->state = IDLE;
  p->woke = true;
  g->st.woken++;
}

/* The mask of worker w's cases queued in q (bit 31 stands for a plain operation). */
static unsigned entries_of(const qent *q, int nq, int w) {
  unsigned m = 0;
  for (int j = 0; j < nq; j++)
    if (q[j].w == w)
      m |= q[j].c < 0 ? 1u << 31 : 1u << q[j].c;
  return m;
}

/* Takes the first blocked party of channel ch's send queue (or receive queue): *w and its case. */
static void take_first(seqctx *g, int ch, bool senders, int *w, int *k) {
  mchan *c = &g->m[ch];
  const qent *q = senders ? c->sq : c->rq;
  int nq = senders ? c->nsq : c->nrq;
  *w = q[0].w;
  *k = resolve(g, *w, entries_of(q, nq, *w));
  unqueue(g, *w);
}

/* A send of v on ch that can proceed (send_ready). Returns 0 or TT_ECLOSED. */
static int m_send(seqctx *g, int ch, int v) {
  mchan *c = &g->m[ch];
  if (c->closed)
    return TT_ECLOSED;
  if (c->nrq > 0) {
    /* The first blocked receiver takes the value. */
    int w, k;
    take_first(g, ch, false, &w, &k);
    expect_woken(g, w, k, 0, v);
    return 0;
  }
  ASSERT(c->n < c->cap);
  c->buf[c->n++] = v;
  return 0;
}

/* A receive from ch that can proceed (recv_ready). Returns 0 or TT_ECLOSED, the value in *v. */
static int m_recv(seqctx *g, int ch, int *v) {
  mchan *c = &g->m[ch];
  if (c->nsq > 0) {
    /* The first blocked sender completes: unbuffered, its value comes straight here; buffered (and
     * so full), the oldest buffered value comes here and the sender's joins the buffer's tail. */
    int w, k;
    take_first(g, ch, true, &w, &k);
    const op *so = &g->p[w].o;
    int sv = k < 0 ? so->val : so->c[k].val;
    expect_woken(g, w, k, 0, 0);
    if (c->cap == 0) {
      *v = sv;
    } else {
      ASSERT_EQ(c->n, c->cap);
      *v = c->buf[0];
      memmove(c->buf, c->buf + 1, (size_t)(c->n - 1) * sizeof c->buf[0]);
      c->buf[c->n - 1] = sv;
    }
    return 0;
  }
  if (c->n > 0) {
    *v = c->buf[0];
    memmove(c->buf, c->buf + 1, (size_t)(--c->n) * sizeof c->buf[0]);
    return 0;
  }
  ASSERT(c->closed);
  *v = 0;
  return TT_ECLOSED;
}

/* Closes ch: every blocked receiver and sender on it completes with TT_ECLOSED. */
static int m_close(seqctx *g, int ch) {
  if (ch < 0)
    return TT_EINVAL;
  mchan *c = &g->m[ch];
  if (c->closed)
    return TT_ECLOSED;
  c->closed = true;
  while (c->nrq > 0 || c->nsq > 0) {
    int w = c->nrq > 0 ? c->rq[0].w : c->sq[0].w;
    /* A select with several cases on ch may fire any of them. */
    int k = resolve(g, w, entries_of(c->rq, c->nrq, w) | entries_of(c->sq, c->nsq, w));
    unqueue(g, w);
    expect_woken(g, w, k, TT_ECLOSED, 0);
    g->st.woken_by_close++;
  }
  return 0;
}

/* Performs party p's operation o in the model, o being one that completes at once; sets p's
 * expected result (and those of the operations it completes). */
static void m_apply(seqctx *g, int p, const op *o) {
  result *e = &g->p[p].exp;
  memset(e, 0, sizeof *e);
  e->val = SENTINEL;
  if (is_send(o->kind)) {
    e->ret = send_ready(g, o->ch) ? m_send(g, o->ch, o->val) : not_ready_err(o->kind);
  } else if (is_recv(o->kind)) {
    if (recv_ready(g, o->ch)) {
      e->ret = m_recv(g, o->ch, &e->val);
      e->ok = e->ret == 0;
    } else {
      e->ret = not_ready_err(o->kind);
    }
  } else if (o->kind == OP_CLOSE) {
    e->ret = m_close(g, o->ch);
  } else {
    unsigned ready = ready_cases(g, o);
    if (ready == 0) {
      e->ret = not_ready_err(o->kind);
    } else {
      /* Any ready case may fire: follow the one reported, once checked to be ready. */
      const result *r = observe(g, p);
      int k = r->ret;
      if (k < 0 || k >= o->n || !(ready & (1u << k))) {
        char b[200];
        fmt_op(o, b, sizeof b);
        model_fail(g, "%s reported %d (%s); the ready cases: mask 0x%x", b, k, err_str(k), ready);
      }
      if (ready & (ready - 1)) {
        g->st.multi_ready++;
        g->st.rank[__builtin_popcount(ready)][__builtin_popcount(ready & ((1u << k) - 1))]++;
      }
      e->ret = k;
      if (o->c[k].op == TT_SELECT_SEND) {
        e->cerr[k] = m_send(g, o->c[k].ch, o->c[k].val);
      } else {
        e->cerr[k] = m_recv(g, o->c[k].ch, &e->cval[k]);
        e->cok[k] = e->cerr[k] == 0;
      }
    }
  }
  g->p[p].woke = true;
}

/* Whether operation o, by an idle party, completes at once. */
static bool m_completes(seqctx *g, const op *o) {
  if (is_try(o->kind) || (is_dl(o->kind) && o->dl != LONG_DL) || o->kind == OP_CLOSE)
    return true;
  if (is_send(o->kind))
    return send_ready(g, o->ch);
  if (is_recv(o->kind))
    return recv_ready(g, o->ch);
  return ready_cases(g, o) != 0;
}

/* Queues worker w, whose operation o blocks, on every channel o names. */
static void m_block(seqctx *g, int w, const op *o) {
  g->p[w].state = BLOCKED;
  if (!is_select(o->kind)) {
    mchan *c = &g->m[o->ch];
    if (is_send(o->kind))
      c->sq[c->nsq++] = (qent){w, -1};
    else
      c->rq[c->nrq++] = (qent){w, -1};
    return;
  }
  for (int i = 0; i < o->n; i++) {
    if (o->c[i].ch < 0)
      continue;
    mchan *c = &g->m[o->c[i].ch];
    if (o->c[i].op == TT_SELECT_SEND)
      c->sq[c->nsq++] = (qent){w, i};
    else
      c->rq[c->nrq++] = (qent){w, i};
  }
}

/* ---- The step machine: checking the runtime against the model ------------------------------ */

/* Whether got is what e says, for an operation o. */
static bool same_result(const op *o, const result *e, const result *got) {
  if (got->ret != e->ret)
    return false;
  if (is_recv(o->kind)) {
    if (got->ret == 0)
      return got->val == e->val && got->ok;
    if (got->ret == TT_ECLOSED)
      return got->val == 0 && !got->ok; /* the zero value */
    return got->val == SENTINEL;        /* nothing received: the buffer is untouched */
  }
  if (is_select(o->kind)) {
    for (int i = 0; i < o->n; i++) {
      bool recv = o->c[i].op == TT_SELECT_RECV;
      if (i == got->ret) {
        if (got->cerr[i] != e->cerr[i] || got->cok[i] != e->cok[i] ||
            (recv && got->cval[i] != e->cval[i]))
          return false;
      } else if (got->cerr[i] != 0 || got->cok[i] || (recv && got->cval[i] != SENTINEL)) {
        return false; /* a case that did not fire was touched */
      }
    }
  }
  return true;
}

static void check_result(seqctx *g, int p, const result *got) {
  party *q = &g->p[p];
  if (same_result(&q->o, &q->exp, got))
    return;
  char b[200], want[200], have[200];
  fmt_op(&q->o, b, sizeof b);
  fmt_result(&q->o, &q->exp, want, sizeof want);
  fmt_result(&q->o, got, have, sizeof have);
  char who[16] = "ctrl";
  if (p != CTRL)
    snprintf(who, sizeof who, "w%d", p);
  model_fail(g, "%s: %s: expected %s; observed %s", who, b, want, have);
}

static int registry_cb(const tt_coro_info *in, void *arg) {
  seqctx *g = arg;
  for (int w = 0; w < g->nw; w++) {
    party *p = &g->p[w];
    if (p->id == in->id) {
      p->seen = true;
      p->rstate = in->state;
      p->rreason = in->wait_reason;
      p->robj = in->wait_obj;
    }
  }
  return 0;
}

/* Waits until every coroutine but the caller is parked: then every effect of the step happened. */
static void settle(seqctx *g) {
  int64_t deadline = tt_now() + g->timeout;
  for (int spins = 0;;) {
    tt_counts c;
    ASSERT_OK(tt_counts_get(&c));
    if (c.by_state[TT_STATE_RUNNABLE] == 0 && c.by_state[TT_STATE_RUNNING] == 1) {
      if (c.total != 1 + g->nw)
        model_fail(g, "%" PRId64 " coroutines, expected %d", c.total, 1 + g->nw);
      return;
    }
    if (tt_now() > deadline)
      model_fail(g, "the runtime did not settle: %" PRId64 " runnable, %" PRId64 " running",
                 c.by_state[TT_STATE_RUNNABLE], c.by_state[TT_STATE_RUNNING]);
    pause_for(&spins);
  }
}

/* Checks every party against the model, once settled. */
static void verify(seqctx *g) {
  for (int w = 0; w < g->nw; w++)
    g->p[w].seen = false;
  ASSERT_OK(tt_coro_foreach(registry_cb, g));
  for (int w = 0; w < g->nw; w++) {
    party *p = &g->p[w];
    char b[200];
    fmt_op(&p->o, b, sizeof b);
    if (!p->seen)
      model_fail(g, "w%d is not in the registry", w);
    bool done = atomic_load_explicit(&p->done, memory_order_acquire) == p->issued;
    if (p->state == BLOCKED) {
      if (done) {
        char have[200];
        fmt_result(&p->o, &p->r, have, sizeof have);
        model_fail(g, "w%d should be blocked in %s; it completed: %s", w, b, have);
      }
      int reason = is_select(p->o.kind) ? TT_WAIT_SELECT
                   : is_send(p->o.kind) ? TT_WAIT_CHAN_SEND
                                        : TT_WAIT_CHAN_RECV;
      const void *obj = is_select(p->o.kind) ? p->robj : g->ch[p->o.ch];
      if (p->rstate != TT_STATE_WAITING || p->rreason != reason || p->robj != obj)
        model_fail(g, "w%d, blocked in %s, is %s, wait reason \"%s\" on %p", w, b,
                   tt_state_string(p->rstate), tt_wait_reason_string(p->rreason), p->robj);
    } else {
      if (!done)
        model_fail(g, "w%d should have completed %s; it is %s, wait reason \"%s\"", w, b,
                   tt_state_string(p->rstate), tt_wait_reason_string(p->rreason));
      if (p->woke)
        check_result(g, w, &p->r);
      /* Idle: waiting for its next command. */
      if (p->rstate != TT_STATE_WAITING || p->rreason != TT_WAIT_CHAN_RECV || p->robj != p->cmd)
        model_fail(g, "w%d, idle, is %s, wait reason \"%s\" on %p", w, tt_state_string(p->rstate),
                   tt_wait_reason_string(p->rreason), p->robj);
    }
  }
  if (g->p[CTRL].woke)
    check_result(g, CTRL, &g->p[CTRL].r);
  /* The counts by wait reason agree: idle workers wait in "chan receive" on their commands. */
  int64_t want[TT_WAIT_COUNT] = {0};
  for (int w = 0; w < g->nw; w++) {
    const op *o = &g->p[w].o;
    want[g->p[w].state == IDLE ? TT_WAIT_CHAN_RECV
         : is_select(o->kind)  ? TT_WAIT_SELECT
         : is_send(o->kind)    ? TT_WAIT_CHAN_SEND
                               : TT_WAIT_CHAN_RECV]++;
  }
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  for (int r = 0; r < TT_WAIT_COUNT; r++)
    if (c.by_reason[r] != want[r])
      model_fail(g, "%" PRId64 " coroutines wait for \"%s\", expected %" PRId64, c.by_reason[r],
                 tt_wait_reason_string(r), want[r]);
  for (int i = 0; i < g->nch; i++) {
    int64_t n = tt_chan_len(g->ch[i]);
    if (n != g->m[i].n)
      model_fail(g, "len(c%d) is %" PRId64 ", expected %d", i, n, g->m[i].n);
  }
}

/* One step: party p (a worker, or CTRL for an operation that never blocks) performs o. */
static void step(seqctx *g, int p, op *o) {
  for (int i = 0; i < MAXCASES; i++)
    o->c[i].val = o->c[i].op == TT_SELECT_SEND ? ++g->nextval : 0;
  if (is_send(o->kind))
    o->val = ++g->nextval;
  char *h = g->hist[g->nhist++ % NTRACE];
  int hn = p == CTRL ? snprintf(h, 256, "%4d ctrl: ", g->step)
                     : snprintf(h, 256, "%4d w%d: ", g->step, p);
  fmt_op(o, h + hn, (size_t)(256 - hn));
  for (int w = 0; w <= CTRL; w++)
    g->p[w].woke = false;
  party *q = &g->p[p];
  q->o = *o;
  bool completes = m_completes(g, o);
  /* Issue the command. The worker is idle, so the hand-off is immediate. */
  if (p == CTRL) {
    exec_op(g->ch, o, &q->r);
  } else {
    int64_t seq = ++q->issued;
    ASSERT_OK(tt_chan_send(q->cmd, &seq));
  }
  int64_t woken0 = g->st.woken;
  if (completes) {
    m_apply(g, p, o);
    observe(g, p); /* a deadline variant may still be waiting for its timer */
    g->st.at_once++;
  } else {
    m_block(g, p, o);
    g->st.blocked++;
  }
  settle(g);
  verify(g);
  g->st.steps++;
  size_t hl = strlen(h);
  if (completes) {
    snprintf(h + hl, 256 - hl, " -> ");
    hl = strlen(h);
    fmt_result(o, &q->r, h + hl, 256 - hl);
  } else {
    snprintf(h + hl, 256 - hl, " -> blocks");
  }
  hl = strlen(h);
  if (g->st.woken > woken0)
    snprintf(h + hl, 256 - hl, ", wakes %" PRId64, g->st.woken - woken0);
  if (g->trace)
    printf("%s\n", h);
}

static void worker(void *arg) {
  party *p = arg;
  for (;;) {
    int64_t seq;
    int e = tt_chan_recv(p->cmd, &seq, NULL);
    if (e != 0) {
      ASSERT_ERR(e, TT_ECLOSED);
      return;
    }
    exec_op(p->g->ch, &p->o, &p->r);
    atomic_store_explicit(&p->done, seq, memory_order_release);
  }
}

static int seq_main(void *arg) {
  seqctx *g = arg;
  g->live0 = tt__chan_count_live();
  g->rng = g->seed * 0x100000001B3ull + (uint64_t)g->procs;
  uint64_t *s = &g->rng;
  g->nch = 1 + rnd(s, MAXCH);
  g->nw = 2 + rnd(s, MAXW - 1);
  static const int close_rates[] = {0, 300, 800, 2000};
  g->close_rate = close_rates[rnd(s, 4)];
  for (int i = 0; i < g->nch; i++) {
    static const int caps[] = {0, 0, 1, 2, 3};
    g->m[i].cap = caps[rnd(s, 5)];
    g->ch[i] = tt_chan_make(sizeof(int), (size_t)g->m[i].cap);
    ASSERT(g->ch[i] != NULL);
    ASSERT_EQ(tt_chan_cap(g->ch[i]), g->m[i].cap);
  }
  for (int w = 0; w < g->nw; w++) {
    party *p = &g->p[w];
    p->g = g;
    p->cmd = tt_chan_make(sizeof(int64_t), 0);
    ASSERT(p->cmd != NULL);
    tt_chan *share[MAXCH + 1];
    memcpy(share, g->ch, sizeof g->ch);
    share[g->nch] = p->cmd;
    tt_go_opts o = {.share = share, .nshare = (size_t)g->nch + 1};
    ASSERT_OK(tt_go_opt(worker, p, &o, &p->id));
  }
  settle(g);
  verify(g);
  for (g->step = 0; g->step < g->nsteps; g->step++) {
    int idle[MAXW], nidle = 0;
    for (int w = 0; w < g->nw; w++)
      if (g->p[w].state == IDLE)
        idle[nidle++] = w;
    int p = nidle == 0 || rnd(s, 100) < 10 ? CTRL : idle[rnd(s, nidle)];
    op o;
    gen_op(s, &o, g->nch, g->close_rate, p == CTRL, 30 * TT_USEC, 40);
    step(g, p, &o);
  }
  /* Close everything (which wakes every blocked worker), then drain. */
  for (int i = 0; i < g->nch; i++) {
    if (!g->m[i].closed)
      step(g, CTRL, &(op){.kind = OP_CLOSE, .ch = i}), g->step++;
    while (g->m[i].n > 0)
      step(g, CTRL, &(op){.kind = OP_TRY_RECV, .ch = i}), g->step++;
    step(g, CTRL, &(op){.kind = OP_TRY_RECV, .ch = i}), g->step++;
  }
  for (int w = 0; w < g->nw; w++) {
    ASSERT_EQ(g->p[w].state, IDLE);
    ASSERT_OK(tt_chan_close(g->p[w].cmd));
    ASSERT_OK(tt_chan_release(g->p[w].cmd));
  }
  for (int i = 0; i < g->nch; i++)
    ASSERT_OK(tt_chan_release(g->ch[i]));
  int64_t deadline = tt_now() + g->timeout;
  while (tt_num_coroutines() > 1) {
    if (tt_now() > deadline)
      model_fail(g, "the workers did not exit");
    tt_sleep(20 * TT_USEC);
  }
  ASSERT_EQ(tt__chan_count_live(), g->live0);
  return 0;
}

static uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *v = getenv(name);
  return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static void run_steps(int procs, int64_t nseq, int nsteps) {
  uint64_t base = env_u64("TT_MODEL_BASE", 1);
  uint64_t only = env_u64("TT_MODEL_SEED", 0);
  if (only) {
    base = only;
    nseq = 1;
  }
  model_stats tot = {0};
  seqctx *g = malloc(sizeof *g);
  ASSERT(g != NULL);
  for (int64_t i = 0; i < nseq; i++) {
    memset(g, 0, sizeof *g);
    g->seed = base + (uint64_t)i;
    g->procs = procs;
    g->nsteps = nsteps;
    g->trace = getenv("TT_MODEL_TRACE") != NULL;
    g->timeout = (int64_t)(10 * TT_SEC * tt_test_slow());
    tt_run_opts o = {.procs = procs, .seed = g->seed};
    int r = tt_test_run_opt(seq_main, g, &o);
    if (r != 0)
      tt_test_fail(__FILE__, __LINE__, "seed %" PRIu64 ": tt_run returned %d (%s)", g->seed, r,
                   tt_strerror(r));
    tot.seqs++;
    tot.steps += g->st.steps;
    tot.at_once += g->st.at_once;
    tot.blocked += g->st.blocked;
    tot.woken += g->st.woken;
    tot.woken_by_close += g->st.woken_by_close;
    tot.multi_ready += g->st.multi_ready;
    for (int r = 2; r <= MAXCASES; r++)
      for (int k = 0; k < r; k++)
        tot.rank[r][k] += g->st.rank[r][k];
  }
  free(g);
  printf("%" PRId64 " sequences, %" PRId64 " steps: %" PRId64 " completed at once, %" PRId64
         " blocked, %" PRId64 " blocked operations completed by others (%" PRId64
         " by close), %" PRId64 " selects with several ready cases\n",
         tot.seqs, tot.steps, tot.at_once, tot.blocked, tot.woken, tot.woken_by_close,
         tot.multi_ready);
  /* Go chooses uniformly among the ready cases: with r ready, each fires about 1/r of the time. The
   * bounds are six standard deviations out (binomial), checked once there are enough samples. */
  for (int r = 2; r <= MAXCASES; r++) {
    int64_t n = 0;
    for (int k = 0; k < r; k++)
      n += tot.rank[r][k];
    if (n < 100 * r)
      continue;
    double p = 1.0 / r, sd = sqrt((double)n * p * (1 - p));
    printf("%d ready cases, %" PRId64 " times; the first, second... ready fired:", r, n);
    for (int k = 0; k < r; k++)
      printf(" %" PRId64, tot.rank[r][k]);
    printf("\n");
    for (int k = 0; k < r; k++)
      if (fabs((double)tot.rank[r][k] - (double)n * p) > 6 * sd)
        tt_test_fail(__FILE__, __LINE__,
                     "select is not uniform: with %d ready cases, the ready case of rank %d fired "
                     "%" PRId64 " times of %" PRId64,
                     r, k, tot.rank[r][k], n);
  }
}

TEST(chan_model_steps_procs1) { run_steps(1, SCALED(400, 5), 400); }
TEST(chan_model_steps_procs2) { run_steps(2, SCALED(300, 3), 400); }

/* ---- Free-running, in parallel: conservation of values ------------------------------------- */

/* A value: its sender (party index + 1) above bit 20, the sender's sequence number below. */
enum { SEQ_BITS = 20 };

typedef struct fsent {
  int8_t ch, sent; /* sent: the send reported success */
} fsent;

typedef struct frecv {
  int ch, v;
} frecv;

typedef struct fctx fctx;

typedef struct fparty {
  fctx *g;
  int idx;
  uint64_t rng;
  int nsent, capsent, nrecv, caprecv;
  fsent *sent; /* by sequence number, from 1 (capsent entries) */
  frecv *recv; /* in the order received */
  bool closed[MAXCH];
} fparty;

struct fctx {
  uint64_t seed;
  int nch, nw, nops, close_rate;
  tt_chan *ch[MAXCH];
  int cap[MAXCH];
  fparty p[MAXW + 1]; /* workers, then the controller (it helps stuck workers, and drains) */
  tt_wg done;
  _Atomic int64_t progress;
  int64_t helps; /* rounds of try operations by the controller when the workers were stuck */
  int64_t sent, received;
};

static void free_fail(fctx *g, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));
static void free_fail(fctx *g, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char caps[64] = "";
  for (int i = 0; i < g->nch; i++)
    snprintf(caps + strlen(caps), sizeof caps - strlen(caps), " %d", g->cap[i]);
  tt_test_fail(__FILE__, __LINE__,
               "free-running seed %" PRIu64 " (capacities%s; w0..w%d workers, party %d the "
               "controller): %s",
               g->seed, caps, g->nw - 1, g->nw, msg);
}

static int fresh_value(fparty *p, int ch) {
  ASSERT(p->nsent + 1 < 1 << SEQ_BITS);
  if (p->nsent + 1 >= p->capsent) {
    p->capsent = p->capsent ? 2 * p->capsent : 1024;
    p->sent = realloc(p->sent, (size_t)p->capsent * sizeof *p->sent);
    ASSERT(p->sent != NULL);
  }
  int seq = ++p->nsent;
  p->sent[seq] = (fsent){(int8_t)ch, 0};
  return ((p->idx + 1) << SEQ_BITS) | seq;
}

static void record_recv(fparty *p, int ch, int v) {
  if (p->nrecv == p->caprecv) {
    p->caprecv = p->caprecv ? 2 * p->caprecv : 1024;
    p->recv = realloc(p->recv, (size_t)p->caprecv * sizeof *p->recv);
    ASSERT(p->recv != NULL);
  }
  p->recv[p->nrecv++] = (frecv){ch, v};
}

/* Checks what one operation reported, as far as a single party can tell, and records it. */
static void free_record(fparty *p, const op *o, const result *r) {
  fctx *g = p->g;
  char b[200], have[200];
  fmt_op(o, b, sizeof b);
  fmt_result(o, r, have, sizeof have);
  if (is_send(o->kind) || o->kind == OP_CLOSE) {
    bool was_closed = o->ch >= 0 && p->closed[o->ch];
    bool fine;
    if (o->kind == OP_CLOSE && o->ch < 0)
      fine = r->ret == TT_EINVAL;
    else if (r->ret == 0)
      fine = !was_closed;
    else if (r->ret == TT_ECLOSED)
      fine = o->ch >= 0;
    else
      fine = o->kind != OP_CLOSE && r->ret == not_ready_err(o->kind) && !was_closed;
    if (!fine)
      free_fail(g, "w%d: %s -> %s%s", p->idx, b, have, was_closed ? " (it saw it closed)" : "");
    if (r->ret == 0 && o->kind != OP_CLOSE)
      p->sent[o->val & ((1 << SEQ_BITS) - 1)].sent = 1;
    else if (r->ret == 0 || r->ret == TT_ECLOSED)
      p->closed[o->ch] = true;
    return;
  }
  if (is_recv(o->kind)) {
    bool was_closed = o->ch >= 0 && p->closed[o->ch];
    if (r->ret == 0 && r->ok) {
      record_recv(p, o->ch, r->val);
    } else if (r->ret == TT_ECLOSED && !r->ok && r->val == 0) {
      p->closed[o->ch] = true;
    } else if (r->ret != not_ready_err(o->kind) || r->val != SENTINEL || was_closed) {
      free_fail(g, "w%d: %s -> %s%s", p->idx, b, have, was_closed ? " (it saw it closed)" : "");
    }
    return;
  }
  /* A select: the cases that did not fire are untouched; a closed channel's case is always ready.
   */
  int k = r->ret;
  bool bad = !(k >= 0 && k < o->n) && k != not_ready_err(o->kind);
  for (int i = 0; i < o->n && !bad; i++) {
    bool recv = o->c[i].op == TT_SELECT_RECV;
    int ch = o->c[i].ch;
    if (i != k) {
      bad = r->cerr[i] != 0 || r->cok[i] || (recv && r->cval[i] != SENTINEL) ||
            (k < 0 && ch >= 0 && p->closed[ch]);
    } else if (r->cerr[i] == 0) {
      bad = recv != r->cok[i] || (p->closed[ch] && !recv);
      if (!bad && recv)
        record_recv(p, ch, r->cval[i]);
      else if (!bad)
        p->sent[o->c[i].val & ((1 << SEQ_BITS) - 1)].sent = 1;
    } else {
      bad = r->cerr[i] != TT_ECLOSED || r->cok[i] || (recv && r->cval[i] != 0);
      p->closed[ch] = true;
    }
  }
  if (bad)
    free_fail(g, "w%d: %s -> %s", p->idx, b, have);
}

static void free_worker(void *arg) {
  fparty *p = arg;
  fctx *g = p->g;
  for (int i = 0; i < g->nops; i++) {
    op o;
    gen_op(&p->rng, &o, g->nch, g->close_rate, false, 200 * TT_USEC, 0);
    /* Mostly deadlines: plain blocking operations can leave everyone stuck (see free_main). */
    if (rnd(&p->rng, 100) < 75) {
      if (o.kind == OP_SEND || o.kind == OP_RECV || o.kind == OP_SELECT)
        o.kind += 2; /* the deadline variant */
    }
    if (is_send(o.kind))
      o.val = fresh_value(p, o.ch);
    for (int j = 0; j < o.n; j++)
      if (o.c[j].op == TT_SELECT_SEND)
        o.c[j].val = fresh_value(p, o.c[j].ch);
    result r;
    exec_op(g->ch, &o, &r);
    free_record(p, &o, &r);
    atomic_fetch_add_explicit(&g->progress, 1, memory_order_relaxed);
  }
  ASSERT_OK(tt_wg_done(&g->done));
}

static int free_main(void *arg) {
  fctx *g = arg;
  int64_t live0 = tt__chan_count_live();
  uint64_t s = g->seed * 0x9E3779B97F4A7C15ull;
  g->nch = 1 + rnd(&s, MAXCH);
  g->nw = 3 + rnd(&s, MAXW - 2);
  static const int close_rates[] = {0, 5, 15};
  g->close_rate = close_rates[rnd(&s, 3)];
  for (int i = 0; i < g->nch; i++) {
    g->cap[i] = rnd(&s, 4);
    g->ch[i] = tt_chan_make(sizeof(int), (size_t)g->cap[i]);
    ASSERT(g->ch[i] != NULL);
  }
  for (int w = 0; w <= g->nw; w++) {
    fparty *p = &g->p[w];
    p->g = g;
    p->idx = w;
    p->rng = g->seed * 1000 + (uint64_t)w;
  }
  ASSERT_OK(tt_wg_add(&g->done, g->nw));
  for (int w = 0; w < g->nw; w++) {
    tt_go_opts o = {.share = g->ch, .nshare = (size_t)g->nch};
    ASSERT_OK(tt_go_opt(free_worker, &g->p[w], &o, NULL));
  }
  /* Wait for the workers. When they make no progress, they may all be blocked in plain operations
   * that none of them will complete: the controller helps with a try-receive and a try-send on
   * every channel (it is a party like the others, its values checked as theirs). */
  fparty *ctl = &g->p[g->nw];
  int64_t last = -1, since = tt_now(), timeout = (int64_t)(10 * TT_SEC * tt_test_slow());
  while (tt_wg_wait_dl(&g->done, tt_now() + 200 * TT_USEC) != 0) {
    int64_t now = atomic_load_explicit(&g->progress, memory_order_relaxed);
    if (now != last) {
      last = now;
      since = tt_now();
      continue;
    }
    if (tt_now() - since > timeout)
      free_fail(g, "%" PRId64 " workers made no progress in 10 s", tt_wg_count(&g->done));
    g->helps++;
    for (int i = 0; i < g->nch; i++) {
      op o = {.kind = OP_TRY_RECV, .ch = i};
      result r;
      exec_op(g->ch, &o, &r);
      free_record(ctl, &o, &r);
      o = (op){.kind = OP_TRY_SEND, .ch = i, .val = fresh_value(ctl, i)};
      exec_op(g->ch, &o, &r);
      free_record(ctl, &o, &r);
    }
  }
  /* Close and drain: the controller receives whatever is left. */
  for (int i = 0; i < g->nch; i++) {
    int e = tt_chan_close(g->ch[i]);
    ASSERT(e == 0 || e == TT_ECLOSED);
    int v;
    bool ok;
    while ((e = tt_chan_recv(g->ch[i], &v, &ok)) == 0) {
      ASSERT(ok);
      record_recv(ctl, i, v);
    }
    ASSERT_ERR(e, TT_ECLOSED);
    ASSERT_EQ(tt_chan_len(g->ch[i]), 0);
    ASSERT_OK(tt_chan_release(g->ch[i]));
  }
  for (int64_t deadline = tt_now() + timeout; tt_num_coroutines() > 1;) {
    if (tt_now() > deadline)
      free_fail(g, "the workers did not exit");
    tt_sleep(20 * TT_USEC);
  }
  ASSERT_EQ(tt__chan_count_live(), live0);

  /* Every value received was sent, on that channel, and is received once; each receiver sees each
   * sender's values on a channel in the order sent; every value sent was received. */
  uint8_t *got[MAXW + 1];
  for (int w = 0; w <= g->nw; w++) {
    got[w] = calloc((size_t)g->p[w].nsent + 1, 1);
    ASSERT(got[w] != NULL);
  }
  int64_t nrecv = 0, nsent = 0;
  for (int r = 0; r <= g->nw; r++) {
    int last_seq[MAXCH][MAXW + 1] = {{0}};
    fparty *p = &g->p[r];
    for (int j = 0; j < p->nrecv; j++) {
      int ch = p->recv[j].ch, v = p->recv[j].v;
      int w = (v >> SEQ_BITS) - 1, seq = v & ((1 << SEQ_BITS) - 1);
      if (w < 0 || w > g->nw || seq < 1 || seq > g->p[w].nsent)
        free_fail(g, "party %d received %d on c%d: never made", r, v, ch);
      const fsent *f = &g->p[w].sent[seq];
      if (f->ch != ch || !f->sent)
        free_fail(g, "party %d received w%d's value %d (seq %d) on c%d; it was %s on c%d", r, w, v,
                  seq, ch, f->sent ? "sent" : "not sent (its send failed)", f->ch);
      if (got[w][seq]++)
        free_fail(g, "w%d's value %d (seq %d, c%d) received twice", w, v, seq, ch);
      if (seq <= last_seq[ch][w])
        free_fail(g, "party %d received w%d's seq %d on c%d after seq %d", r, w, seq, ch,
                  last_seq[ch][w]);
      last_seq[ch][w] = seq;
      nrecv++;
    }
  }
  for (int w = 0; w <= g->nw; w++) {
    for (int seq = 1; seq <= g->p[w].nsent; seq++) {
      if (g->p[w].sent[seq].sent && !got[w][seq])
        free_fail(g, "w%d's value seq %d, sent on c%d, was never received", w, seq,
                  g->p[w].sent[seq].ch);
      nsent += g->p[w].sent[seq].sent;
    }
    free(got[w]);
  }
  ASSERT_EQ(nrecv, nsent);
  g->sent = nsent;
  g->received = nrecv;
  for (int w = 0; w <= g->nw; w++) {
    free(g->p[w].sent);
    free(g->p[w].recv);
  }
  return (int)(nsent > 0 ? 0 : TT_EINVAL); /* something must have moved */
}

TEST(chan_model_free_procs2) {
  int64_t nseq = SCALED(40, 2), helps = 0, sent = 0;
  int nops = (int)SCALED(4000, 200);
  for (int64_t i = 0; i < nseq; i++) {
    fctx *g = calloc(1, sizeof *g);
    ASSERT(g != NULL);
    g->seed = env_u64("TT_MODEL_BASE", 1) + (uint64_t)i;
    g->nops = nops;
    tt_run_opts o = {.procs = 2, .seed = g->seed};
    int r = tt_test_run_opt(free_main, g, &o);
    if (r != 0)
      tt_test_fail(__FILE__, __LINE__, "seed %" PRIu64 ": tt_run returned %d (%s)", g->seed, r,
                   tt_strerror(r));
    helps += g->helps;
    sent += g->sent;
    free(g);
  }
  printf("%" PRId64 " runs of %d operations per worker: %" PRId64 " values sent and received, "
         "%" PRId64 " rounds of help\n",
         nseq, nops, sent, helps);
}
