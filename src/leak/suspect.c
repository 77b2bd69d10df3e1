/* SPDX-License-Identifier: MIT */
/* Leak suspects: the sites where many coroutines have been blocked for long (LeakProf's
 * production signal), ranked, each with the pattern it looks like.
 *
 * Design
 * ------
 * A site is (wait reason, blocking location): the location is the innermost frame of the
 * program's own code among those a dump shows (tt__stk_user_frame, format.c's rule, so a suspect
 * names the line a dump would point at). Coroutines that are not parked but are flagged by a
 * heuristic (below) form sites keyed by their state instead of a reason.
 *
 * One snapshot, then one registry walk, then one pass over the snapshot:
 *   - the snapshot gives every coroutine's stack (interned: the location is worked out once per
 *     distinct stack), reason, wait time and verdict;
 *   - the walk (each coroutine held still by its scan bit while it is looked at) reads what the
 *     heuristics need and the snapshot does not hold: the counters of the channels that
 *     long-blocked senders and receivers and blocked selects wait on (safe to read: a coroutine
 *     blocked on a tracked channel holds a reference, and a held coroutine cannot drop it;
 *     untracked channels are skipped, since nothing keeps them alive), and the time the context
 *     of each coroutine with a pending context cancellation was cancelled;
 *   - the pass groups the coroutines by site in a hash table, with per-site counts, the oldest
 *     age, a sample of the lowest ids, pattern votes; then the ages of the sites that qualify
 *     (count >= K) are gathered (a counting sort by site) and each site's median found by
 *     selection in linear time.
 * The walk and the snapshot are not one instant: a channel's counters are read a little after
 * its waiters were; the heuristics are hints, and say so.
 *
 * Ranking: count x median age. The median, not the oldest: one ancient coroutine (a worker
 * started at boot and parked since) must not put a site of two above one where a thousand have
 * been piling up for an hour; nor the mean, which that same outlier drags. Count x median is, for
 * a site that leaks at a steady rate, about half the coroutine-seconds it has accumulated, so
 * sites compare by the harm they have done so far.
 *
 * Patterns: the proof's (tt__leak_pattern_of) when some of a site's coroutines have verdicts — a
 * proof is never wrong — else the heuristic most of its coroutines match:
 *   UNCLOSED_RANGE  receivers blocked >= T on a channel that delivered values and is not closed;
 *   TIMEOUT_LEAK    senders blocked >= T on a channel whose receive waits ended by a deadline or
 *                   a cancellation (a receiver gave up);
 *   DOUBLE_SEND     a sender blocked >= T on a channel whose last delivered value was its own;
 *   NCAST           senders blocked >= T on a channel that received exactly one value;
 *   DAEMON          a select ticking on a timer channel made >= T ago (it delivered values), beside
 *                   a channel nobody ever sent to or closed: started and never stopped;
 *   CANCEL_IGNORED  a coroutine whose context was cancelled >= T ago and that has woken since
 *                   (runnable, running, or parked again after the cancellation). */
#include <stdlib.h>
#include <string.h>

#include "chan/chan_int.h"
#include "diag/snap_int.h"
#include "leak/leak_int.h"

#define DEFAULT_COUNT 100
#define DEFAULT_AGE (60 * TT_SEC)
#define DEFAULT_SAMPLE 8
#define MAX_SAMPLE 1000
#define PROOF_VOTES 16 /* proven coroutines per site asked for their pattern */

uint64_t tt__suspect_count = DEFAULT_COUNT;
int64_t tt__suspect_age = DEFAULT_AGE;

void tt__leak_suspect_defaults(void) {
  tt__suspect_count = DEFAULT_COUNT;
  tt__suspect_age = DEFAULT_AGE;
}

struct tt_suspect_report {
  tt_suspect *v;
  size_t n;
  int proof;
  bool proved;
  size_t min_count;
  int64_t min_age;
  size_t scanned;
};

/* ---- Hash tables --------------------------------------------------------------------------- */

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

/* Channels: handle -> counters, and the senders the pass finds blocked on it. */
typedef struct chan_ent {
  uintptr_t key; /* the handle; 0: empty */
  tt__chan_stats st;
  uint64_t nblocked_send;
} chan_ent;

typedef struct chan_tab {
  chan_ent *v;
  size_t n, cap;
  bool nomem;
} chan_tab;

static chan_ent *chan_find(const chan_tab *t, uintptr_t key) {
  if (t->cap == 0 || key == 0)
    return NULL;
  for (size_t j = mix(key) & (t->cap - 1);; j = (j + 1) & (t->cap - 1)) {
    if (t->v[j].key == key)
      return &t->v[j];
    if (t->v[j].key == 0)
      return NULL;
  }
}

/* The slot for key, new (zeroed) or found; NULL when out of memory. */
static chan_ent *chan_slot(chan_tab *t, uintptr_t key, bool *fresh) {
  if ((t->n + 1) * 2 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    chan_ent *v = calloc(cap, sizeof *v);
    if (v == NULL) {
      t->nomem = true;
      return NULL;
    }
    for (size_t i = 0; i < t->cap; i++)
      if (t->v[i].key) {
        size_t j = mix(t->v[i].key) & (cap - 1);
        while (v[j].key)
          j = (j + 1) & (cap - 1);
        v[j] = t->v[i];
      }
    free(t->v);
    t->v = v;
    t->cap = cap;
  }
  size_t j = mix(key) & (t->cap - 1);
  while (t->v[j].key && t->v[j].key != key)
    j = (j + 1) & (t->cap - 1);
  *fresh = t->v[j].key == 0;
  if (*fresh) {
    t->v[j].key = key;
    t->n++;
  }
  return &t->v[j];
}

/* Coroutines with a cancelled context: id -> when it was cancelled. */
typedef struct cancel_ent {
  tt_id id; /* 0: empty */
  int64_t at;
} cancel_ent;

typedef struct cancel_tab {
  cancel_ent *v;
  size_t n, cap;
  bool nomem;
} cancel_tab;

static void cancel_put(cancel_tab *t, tt_id id, int64_t at) {
  if ((t->n + 1) * 2 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    cancel_ent *v = calloc(cap, sizeof *v);
    if (v == NULL) {
      t->nomem = true;
      return;
    }
    for (size_t i = 0; i < t->cap; i++)
      if (t->v[i].id) {
        size_t j = mix(t->v[i].id) & (cap - 1);
        while (v[j].id)
          j = (j + 1) & (cap - 1);
        v[j] = t->v[i];
      }
    free(t->v);
    t->v = v;
    t->cap = cap;
  }
  size_t j = mix(id) & (t->cap - 1);
  while (t->v[j].id && t->v[j].id != id)
    j = (j + 1) & (t->cap - 1);
  if (t->v[j].id == 0)
    t->n++;
  t->v[j] = (cancel_ent){id, at};
}

static int64_t cancel_get(const cancel_tab *t, tt_id id) {
  if (t->cap == 0)
    return 0;
  for (size_t j = mix(id) & (t->cap - 1);; j = (j + 1) & (t->cap - 1)) {
    if (t->v[j].id == id)
      return t->v[j].at;
    if (t->v[j].id == 0)
      return 0;
  }
}

/* ---- The walk: channel counters and cancellation times --------------------------------------- */

struct walk {
  chan_tab chans;
  cancel_tab cancels;
  int64_t since; /* blocked at or before this: long enough to look at its channel */
};

static void note_chan(struct walk *wk, const tt_chan *h) {
  /* Untracked channels: no reference keeps one alive while we read it. */
  if (h == NULL || tt__chan_mode(h) == TT_CHAN_UNTRACKED)
    return;
  bool fresh;
  chan_ent *e = chan_slot(&wk->chans, (uintptr_t)h, &fresh);
  if (e && fresh)
    tt__chan_stats_get(h, &e->st);
}

static void walk_one(tt__coro *co, uint32_t state, bool held, void *arg) {
  struct walk *wk = arg;
  if (!held || co->daemon)
    return;
  if (state == TT__S_WAITING) {
    int r = co->wait_reason;
    if ((r == TT_WAIT_CHAN_SEND || r == TT_WAIT_CHAN_RECV) && co->blocked_since <= wk->since) {
      note_chan(wk, (const tt_chan *)co->wait_obj);
    } else if (r == TT_WAIT_SELECT && co->wait_obj) {
      const tt__select_wait *sw = co->wait_obj;
      for (size_t i = 0; i < sw->n; i++)
        note_chan(wk, sw->cases[i].ch);
    }
  }
  /* relaxed: a canceller sets the bit; the time itself is read with acquire inside. */
  if (atomic_load_explicit(&co->cancelled, memory_order_relaxed) & TT__CANCEL_CTX) {
    int64_t at = tt__ctx_cancelled_at(co);
    if (at > 0)
      cancel_put(&wk->cancels, co->id, at);
  }
}

/* ---- Sites ----------------------------------------------------------------------------------- */

typedef struct site {
  int code; /* the wait reason, or 64 + the state of coroutines that are not parked */
  uintptr_t pc;
  size_t count, nleaked, nproof;
  int64_t oldest;
  size_t votes[TT_PATTERN_COUNT], proof_votes[TT_PATTERN_COUNT];
  const tt__snap_entry *why[TT_PATTERN_COUNT]; /* a coroutine each heuristic matched */
  tt_id *sample;                               /* ascending; nsample of them */
  size_t nsample;
  const tt__snap_entry *first; /* the lowest id's */
  size_t off, fill;            /* its ages in the gathered array */
} site;

typedef struct site_tab {
  uint32_t *idx; /* open addressing: site index + 1; 0 empty */
  size_t cap;
  site *v;
  size_t n, vcap;
} site_tab;

static uint64_t site_hash(int code, uintptr_t pc) { return mix(pc ^ ((uint64_t)code << 56)); }

static site *site_get(site_tab *t, int code, uintptr_t pc) {
  if ((t->n + 1) * 2 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (idx == NULL)
      return NULL;
    for (size_t i = 0; i < t->n; i++) {
      size_t j = site_hash(t->v[i].code, t->v[i].pc) & (cap - 1);
      while (idx[j])
        j = (j + 1) & (cap - 1);
      idx[j] = (uint32_t)i + 1;
    }
    free(t->idx);
    t->idx = idx;
    t->cap = cap;
  }
  size_t j = site_hash(code, pc) & (t->cap - 1);
  for (; t->idx[j]; j = (j + 1) & (t->cap - 1)) {
    site *s = &t->v[t->idx[j] - 1];
    if (s->code == code && s->pc == pc)
      return s;
  }
  if (t->n == t->vcap) {
    size_t vcap = t->vcap ? t->vcap * 2 : 32;
    site *v = realloc(t->v, vcap * sizeof *v);
    if (v == NULL)
      return NULL;
    t->v = v;
    t->vcap = vcap;
  }
  site *s = &t->v[t->n];
  memset(s, 0, sizeof *s);
  s->code = code;
  s->pc = pc;
  t->idx[j] = (uint32_t)++t->n;
  return s;
}

/* Stack record -> blocking location, worked out once per distinct stack. */
typedef struct loc_ent {
  const tt__stk *key;
  uintptr_t pc;
} loc_ent;

typedef struct loc_tab {
  loc_ent *v;
  size_t n, cap;
} loc_tab;

static uintptr_t user_pc(const tt__stk *stk) {
  size_t i = tt__stk_user_frame(stk);
  return i < stk->n ? stk->pcs[i] : 0;
}

static uintptr_t loc_of(loc_tab *t, const tt__stk *stk) {
  if (stk == NULL)
    return 0;
  if ((t->n + 1) * 2 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    loc_ent *v = calloc(cap, sizeof *v);
    if (v == NULL)
      return user_pc(stk); /* slower, still right */
    for (size_t i = 0; i < t->cap; i++)
      if (t->v[i].key) {
        size_t j = mix((uintptr_t)t->v[i].key) & (cap - 1);
        while (v[j].key)
          j = (j + 1) & (cap - 1);
        v[j] = t->v[i];
      }
    free(t->v);
    t->v = v;
    t->cap = cap;
  }
  size_t j = mix((uintptr_t)stk) & (t->cap - 1);
  while (t->v[j].key && t->v[j].key != stk)
    j = (j + 1) & (t->cap - 1);
  if (t->v[j].key == NULL) {
    t->v[j].key = stk;
    t->v[j].pc = user_pc(stk);
    t->n++;
  }
  return t->v[j].pc;
}

/* Keeps the lowest max ids of a site, ascending. */
static bool sample_add(site *s, const tt__snap_entry *e, size_t max) {
  if (s->sample == NULL && (s->sample = malloc(max * sizeof *s->sample)) == NULL)
    return false;
  if (s->first == NULL || e->id < s->first->id)
    s->first = e;
  if (s->nsample == max && e->id > s->sample[max - 1])
    return true;
  size_t i = s->nsample < max ? s->nsample++ : max - 1;
  while (i > 0 && s->sample[i - 1] > e->id) {
    s->sample[i] = s->sample[i - 1];
    i--;
  }
  s->sample[i] = e->id;
  return true;
}

/* ---- Heuristics -------------------------------------------------------------------------- */

/* The heuristic pattern of e, and (DAEMON, CANCEL_IGNORED) the age it gives e, or -1. */
static int heuristic(const tt_snapshot *s, const tt__snap_entry *e, const struct walk *wk,
                     int64_t min_age, int64_t *hage) {
  *hage = -1;
  int64_t at = cancel_get(&wk->cancels, e->id);
  if (at > 0 && s->taken - at >= min_age &&
      (e->state != TT_STATE_WAITING || e->blocked_since > at)) {
    *hage = s->taken - at;
    return TT_PATTERN_CANCEL_IGNORED;
  }
  if (e->state != TT_STATE_WAITING)
    return TT_PATTERN_NONE;
  if (e->reason == TT_WAIT_CHAN_RECV) {
    const chan_ent *c = chan_find(&wk->chans, (uintptr_t)e->wait_obj);
    if (c && c->st.received > 0 && !c->st.closed && !c->st.timer)
      return TT_PATTERN_UNCLOSED_RANGE;
  } else if (e->reason == TT_WAIT_CHAN_SEND) {
    const chan_ent *c = chan_find(&wk->chans, (uintptr_t)e->wait_obj);
    if (c == NULL || c->st.closed)
      return TT_PATTERN_NONE;
    if (c->st.recv_gaveup > 0)
      return TT_PATTERN_TIMEOUT_LEAK;
    if (c->st.sent > 0 && c->st.last_sender == e->id)
      return TT_PATTERN_DOUBLE_SEND;
    if (c->st.received == 1)
      return TT_PATTERN_NCAST;
  } else if (e->reason == TT_WAIT_SELECT && e->extra && e->extra->cases) {
    const chan_ent *ticker = NULL;
    bool idle = false;
    for (size_t i = 0; i < e->extra->ncases; i++) {
      const tt_select_case *k = &e->extra->cases[i];
      const chan_ent *c = chan_find(&wk->chans, (uintptr_t)k->ch);
      if (c == NULL || k->op != TT_SELECT_RECV)
        continue;
      if (c->st.timer && c->st.received > 0 && s->taken - c->st.made >= min_age)
        ticker = c;
      else if (!c->st.timer && c->st.sent == 0 && !c->st.closed)
        idle = true;
    }
    if (ticker && idle) {
      *hage = s->taken - ticker->st.made;
      return TT_PATTERN_DAEMON;
    }
  }
  return TT_PATTERN_NONE;
}

/* "1.234s", "12ms", "5us", "2m3.000s", "1h2m3.000s". */
void tt__leak_put_duration(tt__sink *k, int64_t ns) {
  if (ns < 0)
    ns = 0;
  if (ns >= 60 * TT_SEC) {
    int64_t h = ns / (3600 * TT_SEC), m = ns / (60 * TT_SEC) % 60;
    if (h)
      tt__sink_printf(k, "%lldh", (long long)h);
    tt__sink_printf(k, "%lldm", (long long)m);
    ns %= 60 * TT_SEC;
  }
  if (ns >= TT_SEC || ns == 0)
    tt__sink_printf(k, "%lld.%03llds", (long long)(ns / TT_SEC),
                    (long long)(ns % TT_SEC / TT_MSEC));
  else if (ns >= TT_MSEC)
    tt__sink_printf(k, "%lldms", (long long)(ns / TT_MSEC));
  else
    tt__sink_printf(k, "%lldus", (long long)(ns / TT_USEC));
}

/* The sentence behind a site's pattern. */
static char *why_text(const site *st, int pattern, const tt_snapshot *s, const struct walk *wk) {
  tt__sink k;
  tt__sink_mem(&k);
  const tt__snap_entry *e = st->why[pattern];
  const chan_ent *c = e ? chan_find(&wk->chans, (uintptr_t)e->wait_obj) : NULL;
  switch (pattern) {
  case TT_PATTERN_NONE:
    break;
  case TT_PATTERN_UNCLOSED_RANGE:
    if (c)
      tt__sink_printf(&k,
                      "the channel delivered %s and was never closed: the receivers "
                      "wait for a close that does not come",
                      c->st.received == 1 ? "a value" : "values");
    break;
  case TT_PATTERN_TIMEOUT_LEAK:
    if (c)
      tt__sink_printf(&k,
                      "receive waits on the channel ended by a deadline or a cancellation %llu "
                      "times: the senders wait for a receiver that gave up",
                      (unsigned long long)c->st.recv_gaveup);
    break;
  case TT_PATTERN_DOUBLE_SEND:
    tt__sink_str(&k, "the blocked coroutine's earlier value on this channel was received; "
                     "nobody receives its second one");
    break;
  case TT_PATTERN_NCAST:
    if (c)
      tt__sink_printf(&k,
                      "the channel received one value; %llu senders are blocked on it for "
                      "a receive that does not come",
                      (unsigned long long)c->nblocked_send);
    break;
  case TT_PATTERN_DAEMON:
    tt__sink_str(&k, "it keeps ticking in a select on a timer channel beside a channel that "
                     "nobody ever sent to or closed: started and never stopped");
    break;
  case TT_PATTERN_CANCEL_IGNORED:
    if (e) {
      tt__sink_str(&k, "its context was cancelled ");
      tt__leak_put_duration(&k, s->taken - cancel_get(&wk->cancels, e->id));
      tt__sink_str(&k, " ago and it still wakes: it never checks cancellation");
    }
    break;
  default:
    tt__sink_printf(&k, "proven by the leak check (%zu of %zu coroutines here proven leaked)",
                    st->nleaked, st->count);
  }
  char *text;
  if (tt__sink_take(&k, &text, NULL) != 0)
    return NULL;
  return text;
}

/* ---- Ages --------------------------------------------------------------------------------- */

static void swap64(int64_t *a, int64_t *b) {
  int64_t t = *a;
  *a = *b;
  *b = t;
}

/* The k-th smallest of v[0..n) (n > k), reordering v: quickselect with a median-of-three pivot
 * and a three-way partition (many equal ages, as coarse clocks give, cost one round). */
static int64_t select_kth(int64_t *v, size_t n, size_t k) {
  size_t lo = 0, hi = n; /* k is in [lo, hi) */
  while (hi - lo > 1) {
    int64_t a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi - 1];
    int64_t p = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
    size_t lt = lo, i = lo, gt = hi; /* [lo,lt) < p, [lt,i) == p, [gt,hi) > p */
    while (i < gt) {
      if (v[i] < p)
        swap64(&v[lt++], &v[i++]);
      else if (v[i] > p)
        swap64(&v[i], &v[--gt]);
      else
        i++;
    }
    if (k < lt)
      hi = lt;
    else if (k >= gt)
      lo = gt;
    else
      return p;
  }
  return v[lo];
}

static int cmp_suspect(const void *a, const void *b) {
  const tt_suspect *x = a, *y = b;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  if (x->count != y->count)
    return x->count > y->count ? -1 : 1;
  if (x->oldest_age != y->oldest_age)
    return x->oldest_age > y->oldest_age ? -1 : 1;
  int cx = x->state == TT_STATE_WAITING ? x->wait_reason : 64 + x->state;
  int cy = y->state == TT_STATE_WAITING ? y->wait_reason : 64 + y->state;
  if (cx != cy)
    return cx < cy ? -1 : 1;
  return (x->pc > y->pc) - (x->pc < y->pc);
}

/* The pattern with the most votes (ties: the first listed), NONE when none has any. */
static int argmax(const size_t *votes) {
  int best = TT_PATTERN_NONE;
  size_t most = 0;
  for (int p = TT_PATTERN_NONE + 1; p < TT_PATTERN_COUNT; p++)
    if (votes[p] > most) {
      best = p;
      most = votes[p];
    }
  return best;
}

/* ---- The API ------------------------------------------------------------------------------- */

static void suspect_clear(tt_suspect *x) {
  free((void *)x->sample);
  free((void *)x->stack);
  free((void *)x->trace);
  free((void *)x->why);
}

void tt_suspect_report_free(tt_suspect_report *r) {
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->n; i++)
    suspect_clear(&r->v[i]);
  free(r->v);
  free(r);
}

/* Fills x from site st (the strings and arrays it owns). 0 or TT_ENOMEM. */
static int suspect_make(tt_suspect *x, site *st, const tt_snapshot *s, const struct walk *wk) {
  const tt__snap_entry *e = st->first;
  memset(x, 0, sizeof *x);
  x->state = st->code >= 64 ? st->code - 64 : TT_STATE_WAITING;
  x->wait_reason = st->code >= 64 ? TT_WAIT_NONE : st->code;
  x->pc = st->pc;
  if (st->pc) {
    tt__sym sym[8];
    if (tt__symbolize(st->pc - 1, sym, 8) >= 1) {
      x->func = sym[0].func;
      x->file = sym[0].file;
      x->line = sym[0].line;
    }
  }
  x->count = st->count;
  x->nleaked = st->nleaked;
  x->oldest_age = st->oldest;
  int pattern = argmax(st->proof_votes);
  if (pattern == TT_PATTERN_NONE && st->nleaked == 0)
    pattern = argmax(st->votes);
  x->pattern = pattern;
  x->why = why_text(st, pattern, s, wk);
  x->sample = st->sample;
  x->nsample = st->nsample;
  st->sample = NULL;
  x->create_pc = e->create_pc;
  x->wait_obj = e->wait_obj;
  if (e->stack && e->stack->n) {
    uintptr_t *pcs = malloc(e->stack->n * sizeof *pcs);
    if (pcs == NULL)
      return TT_ENOMEM;
    memcpy(pcs, e->stack->pcs, e->stack->n * sizeof *pcs);
    x->stack = pcs;
    x->nstack = e->stack->n;
  }
  tt__sink k;
  tt__sink_mem(&k);
  tt__write_trace_one(s, e, &k);
  char *trace;
  if (tt__sink_take(&k, &trace, NULL) != 0)
    return TT_ENOMEM;
  x->trace = trace;
  return x->why ? 0 : TT_ENOMEM;
}

int tt_leak_suspects(const tt_suspect_opts *o, tt_suspect_report **out) {
  static const tt_suspect_opts none;
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  if (o == NULL)
    o = &none;
  if (o->nsample > MAX_SAMPLE)
    return TT_EINVAL;
  if (!tt_running())
    return TT_ENOTRUNNING;
  size_t min_count = o->min_count ? o->min_count : (size_t)tt__suspect_count;
  int64_t min_age = o->min_age ? o->min_age : tt__suspect_age;
  if (min_age < 0)
    min_age = 0;
  size_t nsample = o->nsample ? o->nsample : DEFAULT_SAMPLE;

  tt_suspect_report *r = calloc(1, sizeof *r);
  if (r == NULL)
    return TT_ENOMEM;
  r->min_count = min_count;
  r->min_age = min_age;
  if (o->prove) {
    r->proved = true;
    r->proof = tt__leak_refresh(); /* an error leaves the verdicts as they were */
  }
  tt_snapshot *s;
  int err = tt__snapshot_take(&s, false);
  if (err) {
    free(r);
    return err;
  }
  r->scanned = s->n;

  struct walk wk = {.since = s->taken - min_age};
  tt__registry_walk_frozen(walk_one, &wk);

  site_tab sites = {0};
  loc_tab locs = {0};
  uint32_t *of = malloc((s->n ? s->n : 1) * sizeof *of); /* entry -> site index + 1, 0: none */
  int64_t *age = malloc((s->n ? s->n : 1) * sizeof *age);
  int64_t *ages = NULL;
  err = of && age && !wk.chans.nomem && !wk.cancels.nomem ? 0 : TT_ENOMEM;

  /* Senders blocked per channel, for N-cast's explanation. */
  for (size_t i = 0; !err && i < s->n; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    if (e->state == TT_STATE_WAITING && e->reason == TT_WAIT_CHAN_SEND) {
      chan_ent *c = chan_find(&wk.chans, (uintptr_t)e->wait_obj);
      if (c)
        c->nblocked_send++;
    }
  }

  /* The pass: each coroutine's site, age and pattern vote. */
  for (size_t i = 0; !err && i < s->n; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    of[i] = 0;
    if (e->id == s->self || e->daemon)
      continue;
    int64_t a = -1, hage;
    if (e->state == TT_STATE_WAITING && e->blocked_since > 0 &&
        s->taken - e->blocked_since >= min_age)
      a = s->taken - e->blocked_since;
    int pattern = heuristic(s, e, &wk, min_age, &hage);
    if (hage > a)
      a = hage;
    if (a < 0)
      continue;
    int code = e->state == TT_STATE_WAITING ? e->reason : 64 + e->state;
    site *st = site_get(&sites, code, loc_of(&locs, e->stack));
    if (st == NULL || !sample_add(st, e, nsample)) {
      err = TT_ENOMEM;
      break;
    }
    of[i] = (uint32_t)(st - sites.v) + 1;
    age[i] = a;
    st->count++;
    if (a > st->oldest)
      st->oldest = a;
    st->votes[pattern]++;
    if (st->why[pattern] == NULL)
      st->why[pattern] = e;
    if (e->verdict != TT_VERDICT_NONE) {
      st->nleaked++;
      if (st->nproof++ < PROOF_VOTES)
        st->proof_votes[tt__leak_pattern_of(e->id)]++;
    }
  }

  /* The qualifying sites' ages, gathered by site, and their medians. */
  size_t total = 0, nq = 0;
  for (size_t j = 0; !err && j < sites.n; j++)
    if (sites.v[j].count >= min_count) {
      sites.v[j].off = sites.v[j].fill = total;
      total += sites.v[j].count;
      nq++;
    }
  if (!err && nq > 0) {
    ages = malloc(total * sizeof *ages);
    r->v = calloc(nq, sizeof *r->v);
    if (ages == NULL || r->v == NULL)
      err = TT_ENOMEM;
  }
  for (size_t i = 0; !err && nq > 0 && i < s->n; i++)
    if (of[i] && sites.v[of[i] - 1].count >= min_count)
      ages[sites.v[of[i] - 1].fill++] = age[i];
  for (size_t j = 0; !err && j < sites.n; j++) {
    site *st = &sites.v[j];
    if (st->count < min_count)
      continue;
    tt_suspect *x = &r->v[r->n++];
    err = suspect_make(x, st, s, &wk);
    x->median_age = select_kth(ages + st->off, st->count, (st->count - 1) / 2);
    x->score = (double)x->count * ((double)x->median_age / (double)TT_SEC);
  }
  if (!err) {
    if (r->n > 1)
      qsort(r->v, r->n, sizeof *r->v, cmp_suspect);
    size_t keep = o->max && o->max < r->n ? o->max : r->n;
    for (size_t i = keep; i < r->n; i++)
      suspect_clear(&r->v[i]);
    r->n = keep;
    for (size_t i = 0; i < r->n; i++)
      r->v[i].rank = i + 1;
  }

  for (size_t j = 0; j < sites.n; j++)
    free(sites.v[j].sample);
  free(sites.v);
  free(sites.idx);
  free(locs.v);
  free(of);
  free(age);
  free(ages);
  free(wk.chans.v);
  free(wk.cancels.v);
  tt_snapshot_free(s);
  if (err) {
    tt_suspect_report_free(r);
    return err;
  }
  *out = r;
  return (int)(r->n > INT32_MAX ? INT32_MAX : r->n);
}

size_t tt_suspect_report_len(const tt_suspect_report *r) { return r ? r->n : 0; }

const tt_suspect *tt_suspect_report_get(const tt_suspect_report *r, size_t i) {
  return r && i < r->n ? &r->v[i] : NULL;
}

int tt_suspect_report_proof(const tt_suspect_report *r) { return r && r->proved ? r->proof : 0; }

static void write_suspect(tt__sink *k, const tt_suspect *x) {
  tt__sink_printf(k, "\n#%zu  %zu %s [%s]  median ", x->rank, x->count,
                  x->count == 1 ? "coroutine" : "coroutines",
                  x->state == TT_STATE_WAITING ? tt_wait_reason_string(x->wait_reason)
                                               : tt_state_string(x->state));
  tt__leak_put_duration(k, x->median_age);
  tt__sink_str(k, ", oldest ");
  tt__leak_put_duration(k, x->oldest_age);
  tt__sink_printf(k, "  (score %.2f)\n", x->score);
  tt__sink_str(k, "    at ");
  if (x->func)
    tt__sink_str(k, x->func);
  else if (x->pc)
    tt__sink_hex(k, x->pc - 1);
  else
    tt__sink_str(k, "(no frame of the program's)");
  if (x->file)
    tt__sink_printf(k, " (%s:%d)", x->file, x->line);
  tt__sink_str(k, "\n");
  if (x->pattern != TT_PATTERN_NONE) {
    tt__sink_printf(k, "    pattern: %s", tt_leak_pattern_string(x->pattern));
    if (x->why && *x->why)
      tt__sink_printf(k, ": %s", x->why);
    tt__sink_str(k, "\n");
  }
  tt__sink_printf(k, "    proven leaked: %zu of %zu\n", x->nleaked, x->count);
  tt__sink_str(k, "    sample:");
  for (size_t i = 0; i < x->nsample; i++)
    tt__sink_printf(k, " %llu", (unsigned long long)x->sample[i]);
  if (x->nsample < x->count)
    tt__sink_str(k, " ...");
  tt__sink_str(k, "\n");
  if (x->trace)
    tt__sink_str(k, x->trace);
}

static int write_report(const tt_suspect_report *r, tt__sink *k) {
  tt__sink_printf(k,
                  "tether: leak suspects: %zu %s where at least %zu coroutines have been "
                  "blocked for at least ",
                  r->n, r->n == 1 ? "site" : "sites", r->min_count);
  tt__leak_put_duration(k, r->min_age);
  tt__sink_printf(k, " (%zu coroutines scanned", r->scanned);
  if (r->proved && r->proof >= 0)
    tt__sink_printf(k, "; proof: %d leaked", r->proof);
  else if (r->proved)
    tt__sink_printf(k, "; proof unavailable: %s", tt_strerror(r->proof));
  tt__sink_str(k, ")\n");
  for (size_t i = 0; i < r->n && !k->err; i++)
    write_suspect(k, &r->v[i]);
  return k->err;
}

int tt__suspect_report_sink(const tt_suspect_report *r, tt__sink *k) { return write_report(r, k); }

int tt_suspect_report_write(const tt_suspect_report *r, int fd) {
  if (r == NULL || fd < 0)
    return TT_EINVAL;
  char buf[8192];
  tt__sink k;
  tt__sink_fd(&k, fd, buf, sizeof buf);
  write_report(r, &k);
  return tt__sink_flush(&k);
}

int tt_suspect_report_write_mem(const tt_suspect_report *r, char **out, size_t *len) {
  if (r == NULL || out == NULL)
    return TT_EINVAL;
  tt__sink k;
  tt__sink_mem(&k);
  write_report(r, &k);
  return tt__sink_take(&k, out, len);
}
