/* SPDX-License-Identifier: MIT */
/* The test checker (leak layer 2): scopes, and tt_leak_verify_none, goleak's VerifyNone.
 *
 * Scopes
 * ------
 * A scope is a 64-bit id, never reused in the process. A coroutine's `scope` field is the scope
 * its spawns go into: a child copies its spawner's at spawn (tt_go's fast path pays one load and
 * one store for it), a plain thread's spawns take its thread-local tt__tls_scope, and a timer that
 * starts a coroutine later (tt_after_func) records its armer's at arming. Beginning a scope
 * replaces the caller's field (or the thread's variable) with the new id and ending it restores
 * the previous value, so the children of the beginner and everything they spawn, transitively,
 * carry the id, with no reference count anywhere on the spawn path.
 *
 * Nesting needs each id's enclosing scope, also after the inner scope object is gone (its leaked
 * coroutines still carry its id, and the outer test's check must see them). So the ids live in a
 * table of their own, apart from the objects: (id, parent id, ended), appended under `table_lock`
 * in id order (ids are taken under the same lock), so lookups are binary searches. An ended
 * scope's entry is a tombstone of 24 bytes that stays until the run ends: the first scope begun
 * in a later run (tt__rt.run_id changed: no coroutine of the old run exists) drops them. Nothing
 * ever points into the table from outside, so no lifetime is shared between a scope object and
 * its coroutines: a scope object may be ended (freed) while its coroutines live on.
 *
 * Checking
 * --------
 * Each round walks the registry without stacks (tt__registry_walk_frozen), keeping the live
 * coroutines that are not ignored by id (caller, daemons, baseline, the scope's beginner) or by
 * scope, then, when names are to be ignored, symbolizes creation sites (ignore_creator) and takes a
 * snapshot for the stacks (ignore_top, ignore_any). The rounds back off exponentially from 10 us
 * (goleak's shape) up to the deadline. What is left at the deadline gets one proof
 * (tt__leak_refresh), then a snapshot filtered to it is written as debug=2 tracebacks, each after
 * a line with its verdict; if every one of them has exited by the time of that snapshot, nothing
 * leaked after all.
 *
 * Rejected: a reference-counted scope object in every coroutine (an atomic read-modify-write per
 * scoped spawn, and a free at the last exit); a chain of scope ids per coroutine (it grows the
 * descriptor and the spawn path); re-tagging an ended scope's coroutines with the parent's id (it
 * races with spawns in progress and misses timers not yet fired). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "diag/diag_int.h"
#include "leak/leak_int.h"

__thread uint64_t tt__tls_scope;

struct tt_leak_scope {
  uint64_t id;
  uint64_t prev; /* the beginner's scope before: restored at the end */
  tt_id owner;   /* the coroutine that began it, 0 for a plain thread */
  pthread_t thread;
  char *name;
};

/* ---- The scope table ------------------------------------------------------------------------ */

typedef struct scope_ent {
  uint64_t id, parent;
  bool ended;
} scope_ent;

/* Protects everything below. Held for a few instructions (an append, a search); never across a
 * tether call or a registry walk. */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static scope_ent *table;
static size_t table_n, table_cap;
static uint64_t table_run; /* the run whose tombstones the table holds */
static uint64_t next_scope = 1;

/* The entry for id, or NULL; table_lock held. */
static const scope_ent *table_find(uint64_t id) {
  size_t lo = 0, hi = table_n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (table[mid].id == id)
      return &table[mid];
    if (table[mid].id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* Whether scope id is s or nested in s (transitively); table_lock held. */
static bool scope_within(uint64_t id, uint64_t s) {
  for (int depth = 0; id != 0 && depth < 1 << 16; depth++) {
    if (id == s)
      return true;
    const scope_ent *e = table_find(id);
    if (e == NULL)
      return false;
    id = e->parent;
  }
  return false;
}

uint64_t tt__scope_current(void) {
  tt__coro *self = tt__self();
  return self ? __atomic_load_n(&self->scope, __ATOMIC_RELAXED) : tt__tls_scope;
}

int tt_leak_scope_begin(const char *name, tt_leak_scope **out) {
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  tt_leak_scope *s = tt__calloc(1, sizeof *s);
  if (s == NULL)
    return TT_ENOMEM;
  if (name && (s->name = tt__strdup(name)) == NULL) {
    free(s);
    return TT_ENOMEM;
  }
  tt__coro *self = tt__self();
  s->owner = self ? self->id : 0;
  s->thread = pthread_self();
  s->prev = tt__scope_current();
  bool running = tt_running();
  pthread_mutex_lock(&table_lock);
  uint64_t run = running ? tt__rt.run_id : table_run;
  if (run != table_run) {
    /* A new run: the old run's coroutines are all gone, and with them the need for tombstones. */
    size_t k = 0;
    for (size_t i = 0; i < table_n; i++)
      if (!table[i].ended)
        table[k++] = table[i];
    table_n = k;
    table_run = run;
  }
  if (table_n == table_cap) {
    size_t ncap = table_cap ? table_cap * 2 : 64;
    scope_ent *t = tt__realloc(table, ncap * sizeof *t);
    if (t == NULL) {
      pthread_mutex_unlock(&table_lock);
      free(s->name);
      free(s);
      return TT_ENOMEM;
    }
    table = t;
    table_cap = ncap;
  }
  /* Ids are taken under the lock, so the table stays sorted by id. */
  s->id = next_scope++;
  table[table_n++] = (scope_ent){s->id, s->prev, false};
  pthread_mutex_unlock(&table_lock);
  if (self)
    /* Relaxed: registry readers need the value untorn, nothing else (see tt__coro.scope). */
    __atomic_store_n(&self->scope, s->id, __ATOMIC_RELAXED);
  else
    tt__tls_scope = s->id;
  *out = s;
  return 0;
}

int tt_leak_scope_end(tt_leak_scope *s) {
  if (s == NULL)
    return TT_EINVAL;
  tt__coro *self = tt__self();
  if (self ? self->id != s->owner : s->owner != 0 || !pthread_equal(s->thread, pthread_self()))
    return TT_EINVAL;
  if (tt__scope_current() != s->id)
    return TT_EINVAL; /* not the innermost one */
  if (self)
    __atomic_store_n(&self->scope, s->prev, __ATOMIC_RELAXED);
  else
    tt__tls_scope = s->prev;
  pthread_mutex_lock(&table_lock);
  scope_ent *e = (scope_ent *)table_find(s->id);
  if (e)
    e->ended = true;
  pthread_mutex_unlock(&table_lock);
  free(s->name);
  free(s);
  return 0;
}

uint64_t tt_leak_scope_id(const tt_leak_scope *s) { return s ? s->id : 0; }

/* ---- Collecting what is left --------------------------------------------------------------- */

typedef struct cand {
  tt_id id;
  uint64_t scope;
  void *create_pc;
} cand;

typedef struct cands {
  cand *v;
  size_t n, cap;
  tt_id self, beginner;
  int err;
} cands;

static void collect_one(tt__coro *co, uint32_t st, bool held, void *arg) {
  (void)st;
  cands *c = arg;
  if (c->err)
    return;
  /* Without the scan bit (running elsewhere) only the fields written atomically at spawn are
   * read, atomically (see publish in coro.c); held, the same loads are simply stable. */
  (void)held;
  tt_id id = __atomic_load_n(&co->id, __ATOMIC_RELAXED);
  if (id == c->self || id == c->beginner || __atomic_load_n(&co->daemon, __ATOMIC_RELAXED))
    return;
  if (c->n == c->cap) {
    size_t ncap = c->cap ? c->cap * 2 : 64;
    cand *v = tt__realloc(c->v, ncap * sizeof *v);
    if (v == NULL) {
      c->err = TT_ENOMEM;
      return;
    }
    c->v = v;
    c->cap = ncap;
  }
  c->v[c->n++] = (cand){id, __atomic_load_n(&co->scope, __ATOMIC_RELAXED),
                        __atomic_load_n(&co->create_pc, __ATOMIC_RELAXED)};
}

static int cmp_id(const void *a, const void *b) {
  tt_id x = *(const tt_id *)a, y = *(const tt_id *)b;
  return x < y ? -1 : x > y;
}

static bool id_in(const tt_id *v, size_t n, tt_id id) {
  return n && bsearch(&id, v, n, sizeof *v, cmp_id) != NULL;
}

static bool name_in(const char *const *list, const char *name) {
  for (; name && list && *list; list++)
    if (strcmp(*list, name) == 0)
      return true;
  return false;
}

/* tether's source directory (".../src/"), found from where this file was compiled; NULL without
 * debug information (then tether's frames are told by their "tt_" names). */
static const char *src_prefix;
static size_t src_prefix_len;
static pthread_once_t src_once = PTHREAD_ONCE_INIT;

static void src_init(void) {
  tt__sym sym[4];
  int n = tt__symbolize((uintptr_t)&tt_leak_verify_none, sym, 4);
  if (n < 1 || sym[n - 1].file == NULL)
    return;
  const char *f = sym[n - 1].file, *p = strstr(f, "/src/leak/");
  if (p == NULL)
    return;
  size_t len = (size_t)(p - f) + 5;
  char *copy = malloc(len + 1);
  if (copy == NULL)
    return;
  memcpy(copy, f, len);
  copy[len] = '\0';
  src_prefix = copy;
  src_prefix_len = len;
}

enum { F_USER, F_PUBLIC, F_INTERNAL };

/* What kind of frame the code at pc - 1 is; its names go to sym (n of them). */
static int frame_kind(uintptr_t pc, tt__sym *sym, int max, int *n) {
  *n = tt__symbolize(pc - 1, sym, max);
  if (*n < 1)
    return F_USER;
  const tt__sym *real = &sym[*n - 1];
  bool ours;
  if (src_prefix && real->file)
    ours = strncmp(real->file, src_prefix, src_prefix_len) == 0;
  else
    ours = real->func && strncmp(real->func, "tt_", 3) == 0;
  if (!ours)
    return F_USER;
  return real->func && strncmp(real->func, "tt_", 3) == 0 && real->func[3] != '_' ? F_PUBLIC
                                                                                  : F_INTERNAL;
}

#define MAXSYM 16

/* Whether the stack pcs[0..n) (innermost first) is to be ignored by opts' function lists. */
static bool stack_ignored(const tt_leak_opts *o, const uintptr_t *pcs, size_t n) {
  pthread_once(&src_once, src_init);
  tt__sym sym[MAXSYM];
  int ns;
  if (o->ignore_any)
    for (size_t i = 0; i < n; i++) {
      frame_kind(pcs[i], sym, MAXSYM, &ns);
      for (int j = 0; j < ns; j++)
        if (name_in(o->ignore_any, sym[j].func))
          return true;
    }
  if (o->ignore_top && n > 0) {
    /* The innermost frame outside tether: with tether's files known, the first frame that is not
     * one of them; by names alone, the frame under the run of tether's calls that starts at the
     * first public one (its static functions have no prefix). */
    size_t top = 0;
    if (src_prefix) {
      while (top < n && frame_kind(pcs[top], sym, MAXSYM, &ns) != F_USER)
        top++;
    } else {
      size_t p = 0;
      while (p < n && p < 64 && frame_kind(pcs[p], sym, MAXSYM, &ns) != F_PUBLIC)
        p++;
      if (p < n && p < 64) {
        top = p + 1;
        while (top < n && frame_kind(pcs[top], sym, MAXSYM, &ns) != F_USER)
          top++;
      } else {
        while (top < n && frame_kind(pcs[top], sym, MAXSYM, &ns) != F_USER)
          top++;
      }
    }
    if (top < n) {
      frame_kind(pcs[top], sym, MAXSYM, &ns);
      if (ns > 0 && name_in(o->ignore_top, sym[0].func))
        return true;
    }
  }
  return false;
}

/* Whether a creation site is to be ignored: the innermost function around it. */
static bool creator_ignored(const tt_leak_opts *o, void *pc) {
  if (o->ignore_creator == NULL || pc == NULL)
    return false;
  tt__sym sym[MAXSYM];
  int n = tt__symbolize((uintptr_t)pc - 1, sym, MAXSYM);
  return n > 0 && name_in(o->ignore_creator, sym[0].func);
}

typedef struct check {
  const tt_leak_opts *o;
  tt_id *base; /* the baseline's ids, sorted */
  size_t nbase;
  uint64_t scope;
  cands c;
  tt_id *left; /* the ids left after this round, sorted */
  size_t nleft, capleft;
} check;

static int keep_left(const tt_coro_info *ci, void *arg) {
  const check *k = arg;
  return id_in(k->left, k->nleft, ci->id);
}

static int keep_unignored(const tt_coro_info *ci, void *arg) {
  const check *k = arg;
  return id_in(k->left, k->nleft, ci->id) && !stack_ignored(k->o, ci->stack, ci->nstack);
}

/* One round: fills k->left. With stack-based ignores, *snap (if not NULL) receives the snapshot
 * the round used, filtered to what is left. 0 or TT_ENOMEM. */
static int round_once(check *k, tt_snapshot **snap) {
  if (snap)
    *snap = NULL;
  k->c.n = 0;
  k->c.err = 0;
  tt__registry_walk_frozen(collect_one, &k->c);
  if (k->c.err)
    return k->c.err;
  if (k->capleft < k->c.n) {
    tt_id *v = tt__realloc(k->left, k->c.n * sizeof *v);
    if (v == NULL)
      return TT_ENOMEM;
    k->left = v;
    k->capleft = k->c.n;
  }
  size_t m = 0;
  if (k->scope)
    pthread_mutex_lock(&table_lock);
  for (size_t i = 0; i < k->c.n; i++) {
    cand *x = &k->c.v[i];
    if (id_in(k->base, k->nbase, x->id))
      continue;
    if (k->scope && !scope_within(x->scope, k->scope))
      continue;
    k->c.v[m++] = *x;
  }
  if (k->scope)
    pthread_mutex_unlock(&table_lock);
  size_t nl = 0;
  for (size_t i = 0; i < m; i++)
    if (!creator_ignored(k->o, k->c.v[i].create_pc))
      k->left[nl++] = k->c.v[i].id;
  k->nleft = nl;
  if (nl)
    qsort(k->left, nl, sizeof *k->left, cmp_id);
  if (nl == 0 || (k->o->ignore_top == NULL && k->o->ignore_any == NULL))
    return 0;
  tt_snapshot *s;
  int err = tt_snapshot_take(&s);
  if (err)
    return err;
  size_t n = tt_snapshot_filter(s, keep_unignored, k);
  /* What is left: the ids that stayed in the snapshot (those not in it have exited). */
  k->nleft = 0;
  for (size_t i = 0; i < n; i++) {
    tt_coro_info ci;
    if (tt_snapshot_get(s, i, &ci) == 0)
      k->left[k->nleft++] = ci.id;
  }
  if (k->nleft)
    qsort(k->left, k->nleft, sizeof *k->left, cmp_id);
  if (snap)
    *snap = s;
  else
    tt_snapshot_free(s);
  return 0;
}

/* ---- The report ---------------------------------------------------------------------------- */

/* "500ms", "1.5s", "250us": Go's time.Duration spelling, rounded. */
static void put_verdict(tt__sink *k, const tt_coro_info *ci, int64_t timeout, int64_t now) {
  tt__sink_printf(k, "coroutine %" PRIu64, (uint64_t)ci->id);
  if (ci->name)
    tt__sink_printf(k, " \"%s\"", ci->name);
  tt__sink_str(k, ": ");
  if (ci->verdict == TT_VERDICT_LEAKED || ci->verdict == TT_VERDICT_DEADLOCK) {
    tt__sink_str(k, ci->verdict == TT_VERDICT_DEADLOCK
                        ? "leaked (proven: nothing can wake it; a lock cycle)"
                        : "leaked (proven: nothing can wake it)");
    /* The pattern's name from the header's map (tt_leak_pattern_string is the proof's). */
    static const char *const patterns[] = {
#define PATTERN_TEXT_(name, text) text,
        TT_LEAK_PATTERN_MAP(PATTERN_TEXT_)
#undef PATTERN_TEXT_
    };
    int p = tt__leak_pattern_of(ci->id);
    if (p > TT_PATTERN_NONE && p < TT_PATTERN_COUNT)
      tt__sink_printf(k, " [%s]", patterns[p]);
  } else if (ci->state == TT_STATE_WAITING) {
    tt__sink_str(k, "still blocked after ");
    tt__leak_put_duration(k, timeout);
    tt__sink_printf(k, " (%s for ", tt_wait_reason_string(ci->wait_reason));
    tt__leak_put_duration(k, now - ci->blocked_since);
    tt__sink_str(k, ")");
  } else {
    tt__sink_str(k, "still running after ");
    tt__leak_put_duration(k, timeout);
    if (ci->state == TT_STATE_RUNNABLE)
      tt__sink_str(k, " (runnable)");
  }
  tt__sink_str(k, "\n");
}

/* Writes the report of s (the coroutines left) into k: the title, then each coroutine's verdict
 * line and its traceback. */
static int write_report(tt__sink *k, tt_snapshot *s, const char *title, int64_t timeout,
                        int proof) {
  size_t n = tt_snapshot_len(s);
  tt__sink_printf(k, "tt_leak_verify_none: %s: %zu coroutine%s left behind after ", title, n,
                  n == 1 ? "" : "s");
  tt__leak_put_duration(k, timeout);
  tt__sink_str(k, "\n");
  if (proof < 0)
    tt__sink_printf(k, "(no proof this time: %s; verdicts unknown)\n", tt_strerror(proof));
  char *text = NULL;
  size_t len = 0;
  int err = tt_snapshot_write_mem(s, TT_DUMP_TRACES, &text, &len);
  if (err)
    return err;
  /* The tracebacks are in the snapshot's order (by id): the i-th block is coroutine i's. Each
   * block starts with "goroutine " after a blank line (or at the top). */
  int64_t now = tt_now();
  size_t i = 0;
  const char *p = text, *end = text + len;
  bool at_block = true;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *next = nl ? nl + 1 : end;
    if (at_block && strncmp(p, "goroutine ", 10) == 0 && i < n) {
      tt_coro_info ci;
      if (tt_snapshot_get(s, i++, &ci) == 0) {
        tt__sink_str(k, "\n");
        put_verdict(k, &ci, timeout, now);
      }
    }
    at_block = nl && nl == p; /* a blank line: the next line starts a block */
    if (!(nl && nl == p))     /* blank separators are replaced by the one before each verdict */
      tt__sink_write(k, p, (size_t)(next - p));
    p = next;
  }
  free(text);
  return k->err;
}

/* ---- tt_leak_verify_none ------------------------------------------------------------------- */

#define DEFAULT_TIMEOUT (500 * TT_MSEC)
#define DEFAULT_MAX_SLEEP (10 * TT_MSEC)
#define FIRST_SLEEP (10 * TT_USEC)

/* Sleeps ns; false when the caller (a coroutine) has been cancelled and cannot sleep. */
static bool nap(int64_t ns) {
  if (tt__self())
    return tt_sleep(ns) == 0;
  struct timespec ts = {(time_t)(ns / TT_SEC), (long)(ns % TT_SEC)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
  return true;
}

int tt_leak_verify_none(const tt_leak_opts *opts, char **report) {
  static const tt_leak_opts dflt = {0};
  const tt_leak_opts *o = opts ? opts : &dflt;
  if (report)
    *report = NULL;
  if (o->timeout < 0 || o->max_sleep < 0 || o->report_fd < -1)
    return TT_EINVAL;
  if (!tt_running())
    return TT_ENOTRUNNING;
  int64_t timeout = o->timeout ? o->timeout : DEFAULT_TIMEOUT;
  int64_t max_sleep = o->max_sleep ? o->max_sleep : DEFAULT_MAX_SLEEP;
  check k = {.o = o};
  k.c.self = tt_self();
  k.c.beginner = o->scope ? o->scope->owner : 0;
  k.scope = o->scope ? o->scope->id : 0;
  int err = 0;
  tt_snapshot *snap = NULL;
  if (o->baseline) {
    size_t n = tt_snapshot_len(o->baseline);
    if (n && (k.base = tt__malloc(n * sizeof *k.base)) == NULL)
      return TT_ENOMEM;
    for (size_t i = 0; i < n; i++) {
      tt_coro_info ci;
      if (tt_snapshot_get(o->baseline, i, &ci) == 0)
        k.base[k.nbase++] = ci.id;
    }
    if (k.nbase)
      qsort(k.base, k.nbase, sizeof *k.base, cmp_id);
  }
  int64_t start = tt_now(), deadline = start + timeout, step = FIRST_SLEEP;
  for (;;) {
    if ((err = round_once(&k, NULL)) != 0 || k.nleft == 0)
      goto out;
    int64_t now = tt_now();
    if (now >= deadline)
      break;
    int64_t d = step < max_sleep ? step : max_sleep;
    if (d > deadline - now)
      d = deadline - now;
    if (!nap(d))
      break; /* cancelled: check once more and report */
    step = step > max_sleep / 2 ? max_sleep : step * 2;
  }
  /* Some are left: one proof, so that the verdicts are current, then the picture to report. */
  int proof = tt__leak_refresh();
  if ((err = round_once(&k, &snap)) != 0)
    goto out;
  if (k.nleft == 0)
    goto out;
  if (snap == NULL && (err = tt_snapshot_take(&snap)) != 0)
    goto out;
  if (tt_snapshot_filter(snap, keep_left, &k) == 0)
    goto out; /* all gone meanwhile */
  char title[256];
  const char *name = o->name ? o->name : o->scope && o->scope->name ? o->scope->name : NULL;
  if (name && o->scope && o->scope->name && o->name)
    snprintf(title, sizeof title, "\"%s\" (scope \"%s\")", name, o->scope->name);
  else if (name)
    snprintf(title, sizeof title, "\"%s\"", name);
  else if (o->scope)
    snprintf(title, sizeof title, "scope %" PRIu64, o->scope->id);
  else
    snprintf(title, sizeof title, "all coroutines");
  tt__sink sk;
  tt__sink_mem(&sk);
  write_report(&sk, snap, title, tt_now() - start > timeout ? timeout : tt_now() - start, proof);
  char *text;
  size_t len;
  if ((err = tt__sink_take(&sk, &text, &len)) != 0)
    goto out;
  if (o->report_fd != -1)
    tt__leak_write_all(o->report_fd == 0 ? 2 : o->report_fd, text, len);
  if (report)
    *report = text;
  else
    free(text);
  err = TT_ELEAKED;
out:
  tt_snapshot_free(snap);
  free(k.base);
  free(k.c.v);
  free(k.left);
  return err;
}
