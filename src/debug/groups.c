/* SPDX-License-Identifier: MIT */
/* /debug/tether/groups.json: the live page's data, a snapshot's coroutines grouped by identical
 * stack.
 *
 * A group is the coroutines that share a stack record (interned by content in the snapshot, so
 * pointer equality is content equality), a state, a wait reason, a name (interned too), a label
 * set (shared by reference) and a creation site: everything the page shows once per group is the
 * same for all its members; what differs (ids, how long each has waited, verdicts) is summed up
 * (the first ids, the range of wait times, how many are leaked). A million coroutines parked in
 * a few places make a few groups: the table grows with the groups, not with the coroutines, and
 * each group's frames are symbolized once (the symbolizer caches per address).
 *
 * Filters (state=, q=, limit=) are applied here too, so that a process with more distinct stacks
 * than the limit still shows the groups the user asks for; the page applies the same rules to
 * the data it has, so that typing in its filter needs no round trip.
 *
 * Strings go out as RFC 8259 strings of valid UTF-8: names and labels are the program's bytes,
 * so an invalid sequence becomes U+FFFD, control characters are escaped, and so are <, > and &
 * (as Go's encoding/json does), in case the text lands in HTML. */
#include <stdlib.h>
#include <string.h>

#include "debug/debug_int.h"
#include "diag/snap_int.h"

#define GROUP_IDS 8     /* ids listed per group */
#define GROUP_LIMIT 500 /* groups written when the query names no limit */
#define GROUP_LIMIT_MAX 100000
#define GROUP_SYMS 8 /* inline chain entries per frame */

typedef struct grp {
  const tt__snap_entry *e; /* the first member: the group's shared fields but the stack */
  const tt__stk *stk;      /* the stack's canon (below) */
  uintptr_t site;          /* the creation pc's canon (below) */
  int64_t count, leaked;
  int64_t wmin, wmax; /* wait times (ns) of the waiting members with a start; -1: none */
  uint32_t nids;
  tt_id ids[GROUP_IDS]; /* the lowest ids (members are visited by id) */
} grp;

typedef struct table {
  grp *v;
  size_t n, cap;
} table;

/* Stacks as the page sees them: two stack records that differ only in the hidden frames (tether's
 * own, above the public call a coroutine waits in) show the same frames, so they make one group.
 * Each record of the snapshot maps to the first record with the same visible pcs (its canon). */
typedef struct canon_ent {
  const tt__stk *stk, *canon;
  size_t first, last;
} canon_ent;

typedef struct canon_tab {
  canon_ent *byptr; /* open addressing by record address */
  size_t n, cap;
  canon_ent **byvis; /* open addressing by visible content: the canons */
  size_t nvis, capvis;
} canon_tab;

static uint64_t vis_hash(const canon_ent *c) {
  uint64_t h = 0xcbf29ce484222325ull ^ (c->stk->depth - c->stk->n);
  for (size_t i = c->first; i < c->last; i++)
    h = (h ^ c->stk->pcs[i]) * 0x100000001b3ull;
  return h ^ (h >> 31);
}

static bool vis_same(const canon_ent *a, const canon_ent *b) {
  return a->last - a->first == b->last - b->first &&
         a->stk->depth - a->stk->n == b->stk->depth - b->stk->n &&
         memcmp(&a->stk->pcs[a->first], &b->stk->pcs[b->first],
                (a->last - a->first) * sizeof(uintptr_t)) == 0;
}

static size_t ptr_slot(const canon_tab *t, const tt__stk *stk) {
  size_t j = ((uintptr_t)stk * 0x9e3779b97f4a7c15ull >> 17) & (t->cap - 1);
  while (t->byptr[j].stk && t->byptr[j].stk != stk)
    j = (j + 1) & (t->cap - 1);
  return j;
}

static size_t vis_slot(canon_ent **v, size_t cap, const canon_ent *c) {
  size_t j = vis_hash(c) & (cap - 1);
  while (v[j] && !vis_same(v[j], c))
    j = (j + 1) & (cap - 1);
  return j;
}

/* Grows both tables to hold one more record; false when out of memory. */
static bool canon_grow(canon_tab *t) {
  if ((t->n + 1) * 2 <= t->cap)
    return true;
  size_t cap = t->cap ? t->cap * 2 : 64;
  canon_tab g = {tt__calloc(cap, sizeof *g.byptr), 0, cap,
                 tt__calloc(cap, sizeof *g.byvis), 0, cap};
  if (g.byptr == NULL || g.byvis == NULL) {
    free(g.byptr);
    free(g.byvis);
    return false;
  }
  for (size_t i = 0; i < t->cap; i++)
    if (t->byptr[i].stk)
      g.byptr[ptr_slot(&g, t->byptr[i].stk)] = t->byptr[i];
  /* The canons point into byptr: rebuild byvis from the moved entries. */
  for (size_t i = 0; i < g.cap; i++)
    if (g.byptr[i].stk && g.byptr[i].canon == g.byptr[i].stk)
      g.byvis[vis_slot(g.byvis, g.capvis, &g.byptr[i])] = &g.byptr[i];
  g.n = t->n;
  g.nvis = t->nvis;
  free(t->byptr);
  free(t->byvis);
  *t = g;
  return true;
}

/* The canon of stk (NULL stays NULL); *err set to TT_ENOMEM when out of memory. */
static const tt__stk *canon_of(canon_tab *t, const tt__stk *stk, int *err) {
  if (stk == NULL)
    return NULL;
  if (t->cap) {
    size_t j = ptr_slot(t, stk);
    if (t->byptr[j].stk)
      return t->byptr[j].canon;
  }
  if (!canon_grow(t)) {
    *err = TT_ENOMEM;
    return stk;
  }
  canon_ent *c = &t->byptr[ptr_slot(t, stk)];
  c->stk = stk;
  tt__stk_visible(stk, &c->first, &c->last);
  size_t k = vis_slot(t->byvis, t->capvis, c);
  if (t->byvis[k]) {
    c->canon = t->byvis[k]->stk;
  } else {
    c->canon = stk;
    t->byvis[k] = c;
    t->nvis++;
  }
  t->n++;
  return c->canon;
}

/* Creation sites as the page sees them: two spawn calls on one source line (an unrolled loop)
 * show the same creator, so they make one group. Each creation pc maps to the first pc with the
 * same innermost function, file and line (interned strings: pointers compare). */
typedef struct site_ent {
  uintptr_t pc, canon;
  const char *func, *file;
  int line;
} site_ent;

typedef struct site_tab {
  site_ent *byptr;
  site_ent **bysrc;
  size_t n, cap;
} site_tab;

static uint64_t src_hash(const site_ent *s) {
  uint64_t h = ((uintptr_t)s->func * 0x9e3779b97f4a7c15ull) ^ ((uintptr_t)s->file * 31) ^
               (uint64_t)(unsigned)s->line * 0xff51afd7ed558ccdull;
  return h ^ (h >> 29);
}

static size_t site_slot(const site_ent *v, size_t cap, uintptr_t pc) {
  size_t j = (pc * 0x9e3779b97f4a7c15ull >> 17) & (cap - 1);
  while (v[j].pc && v[j].pc != pc)
    j = (j + 1) & (cap - 1);
  return j;
}

static size_t src_slot(site_ent **v, size_t cap, const site_ent *s) {
  size_t j = src_hash(s) & (cap - 1);
  while (v[j] && !(v[j]->func == s->func && v[j]->file == s->file && v[j]->line == s->line))
    j = (j + 1) & (cap - 1);
  return j;
}

/* The canon of a creation pc (0 stays 0); *err set to TT_ENOMEM when out of memory. */
static uintptr_t site_of(site_tab *t, uintptr_t pc, int *err) {
  if (pc == 0)
    return 0;
  if (t->cap && t->byptr[site_slot(t->byptr, t->cap, pc)].pc)
    return t->byptr[site_slot(t->byptr, t->cap, pc)].canon;
  if ((t->n + 1) * 2 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    site_tab g = {tt__calloc(cap, sizeof *g.byptr), tt__calloc(cap, sizeof *g.bysrc), t->n, cap};
    if (g.byptr == NULL || g.bysrc == NULL) {
      free(g.byptr);
      free(g.bysrc);
      *err = TT_ENOMEM;
      return pc;
    }
    for (size_t i = 0; i < t->cap; i++)
      if (t->byptr[i].pc)
        g.byptr[site_slot(g.byptr, cap, t->byptr[i].pc)] = t->byptr[i];
    for (size_t i = 0; i < cap; i++)
      if (g.byptr[i].pc && g.byptr[i].canon == g.byptr[i].pc)
        g.bysrc[src_slot(g.bysrc, cap, &g.byptr[i])] = &g.byptr[i];
    free(t->byptr);
    free(t->bysrc);
    *t = g;
  }
  site_ent *e = &t->byptr[site_slot(t->byptr, t->cap, pc)];
  tt__sym sym[GROUP_SYMS];
  int n = tt__symbolize(pc - 1, sym, GROUP_SYMS);
  *e = (site_ent){.pc = pc, .canon = pc};
  if (n >= 1 && sym[0].func) {
    e->func = sym[0].func;
    e->file = sym[0].file;
    e->line = sym[0].line;
    site_ent **c = &t->bysrc[src_slot(t->bysrc, t->cap, e)];
    if (*c)
      e->canon = (*c)->pc;
    else
      *c = e;
  }
  t->n++;
  return e->canon;
}

static uint64_t key_hash(const tt__snap_entry *e, const tt__stk *stk, uintptr_t site) {
  uint64_t h = (uintptr_t)stk * 0x9e3779b97f4a7c15ull;
  h ^= (uintptr_t)e->name * 0xff51afd7ed558ccdull;
  h ^= (uintptr_t)e->labels * 0xc4ceb9fe1a85ec53ull;
  h ^= site * 0x2545f4914f6cdd1dull;
  h ^= ((uint64_t)e->state << 8 | e->reason) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static bool key_same(const grp *g, const tt__snap_entry *b, const tt__stk *stk, uintptr_t site) {
  const tt__snap_entry *a = g->e;
  return g->stk == stk && g->site == site && a->name == b->name && a->labels == b->labels &&
         a->state == b->state && (a->state != TT_STATE_WAITING || a->reason == b->reason);
}

static grp *slot(grp *v, size_t cap, const tt__snap_entry *e, const tt__stk *stk, uintptr_t site) {
  size_t j = key_hash(e, stk, site) & (cap - 1);
  while (v[j].e != NULL && !key_same(&v[j], e, stk, site))
    j = (j + 1) & (cap - 1);
  return &v[j];
}

/* The group of e (whose stack's canon is stk), made if new; NULL when out of memory. */
static grp *group_of(table *t, const tt__snap_entry *e, const tt__stk *stk, uintptr_t site) {
  if ((t->n + 1) * 2 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    grp *v = tt__calloc(cap, sizeof *v);
    if (v == NULL)
      return NULL;
    for (size_t i = 0; i < t->cap; i++)
      if (t->v[i].e)
        *slot(v, cap, t->v[i].e, t->v[i].stk, t->v[i].site) = t->v[i];
    free(t->v);
    t->v = v;
    t->cap = cap;
  }
  grp *g = slot(t->v, t->cap, e, stk, site);
  if (g->e == NULL) {
    g->e = e;
    g->stk = stk;
    g->site = site;
    g->wmin = g->wmax = -1;
    t->n++;
  }
  return g;
}

/* ---- The query ------------------------------------------------------------------------------ */

typedef struct query {
  char *state; /* NULL: any */
  char *q;     /* NULL: any */
  size_t limit;
} query;

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* p[0..n) decoded as a form value ('+' is a space, %XX a byte; a stray '%' stays itself). */
static char *decode(const char *p, size_t n) {
  char *out = tt__malloc(n + 1), *o = out;
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '+') {
      *o++ = ' ';
    } else if (p[i] == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
      *o++ = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
      i += 2;
    } else {
      *o++ = p[i];
    }
  }
  *o = '\0';
  return out;
}

static void query_free(query *q) {
  free(q->state);
  free(q->q);
}

/* Parses a raw query string (NULL or "": no filter). Unknown keys are ignored, as Go's handlers
 * ignore them; a later repeat of a key wins; an empty value means no filter. 0, TT_EINVAL (limit
 * not a number from 1 to GROUP_LIMIT_MAX) or TT_ENOMEM. */
static int query_parse(const char *raw, query *out) {
  *out = (query){.limit = GROUP_LIMIT};
  for (const char *p = raw; p && *p;) {
    const char *end = strchr(p, '&');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    const char *eq = memchr(p, '=', n);
    size_t kn = eq ? (size_t)(eq - p) : n;
    const char *v = eq ? eq + 1 : p + n;
    size_t vn = (size_t)(p + n - v);
    char *key = decode(p, kn), *val = decode(v, vn);
    int err = key && val ? 0 : TT_ENOMEM;
    if (!err && strcmp(key, "state") == 0) {
      free(out->state);
      out->state = val[0] ? val : NULL;
      val = out->state ? NULL : val;
    } else if (!err && strcmp(key, "q") == 0) {
      free(out->q);
      out->q = val[0] ? val : NULL;
      val = out->q ? NULL : val;
    } else if (!err && strcmp(key, "limit") == 0) {
      char *e;
      unsigned long long l = strtoull(val, &e, 10);
      if (val[0] < '0' || val[0] > '9' || *e != '\0' || l < 1 || l > GROUP_LIMIT_MAX)
        err = TT_EINVAL;
      else
        out->limit = (size_t)l;
    }
    free(key);
    free(val);
    if (err) {
      query_free(out);
      return err;
    }
    p = end ? end + 1 : p + n;
  }
  return 0;
}

/* ASCII case-insensitive comparisons (the filters' rule; the page's is the same). */
static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static bool ci_equal(const char *a, const char *b) {
  if (a == NULL || b == NULL)
    return false;
  for (; *a && lower((unsigned char)*a) == lower((unsigned char)*b); a++, b++)
    ;
  return *a == '\0' && *b == '\0';
}

static bool ci_contains(const char *hay, const char *needle) {
  if (hay == NULL)
    return false;
  for (; *hay; hay++) {
    size_t i = 0;
    while (needle[i] && lower((unsigned char)hay[i]) == lower((unsigned char)needle[i]))
      i++;
    if (needle[i] == '\0')
      return true;
  }
  return false;
}

/* ---- Frames --------------------------------------------------------------------------------- */

/* One frame as the page shows it. */
typedef struct pframe {
  const char *func; /* the name, or fbuf */
  const char *file; /* NULL when unknown */
  int line;
  char fbuf[64];
} pframe;

static void pframe_set(pframe *f, const tt__sym *s, uintptr_t addr) {
  f->file = s->file;
  f->line = s->line > 0 ? s->line : 0;
  if (s->func) {
    f->func = s->func;
    return;
  }
  if (s->module) {
    const char *base = strrchr(s->module, '/');
    snprintf(f->fbuf, sizeof f->fbuf, "%.40s+0x%llx", base ? base + 1 : s->module,
             (unsigned long long)(addr - s->module_base));
  } else {
    snprintf(f->fbuf, sizeof f->fbuf, "0x%llx", (unsigned long long)addr);
  }
  f->func = f->fbuf;
}

/* Calls fn on each frame of g's stack that a dump shows, inline chains flattened innermost first
 * (a public tether call's inlined internals hidden, as the dumps hide them); stops when fn
 * returns true and says so. */
static bool frames_each(const grp *g, bool (*fn)(const pframe *f, void *arg), void *arg) {
  const tt__stk *stk = g->stk;
  if (stk == NULL)
    return false;
  size_t first, last;
  tt__stk_visible(stk, &first, &last);
  for (size_t i = first; i < last; i++) {
    tt__sym sym[GROUP_SYMS];
    uintptr_t addr = stk->pcs[i] - 1;
    int n = tt__symbolize(addr, sym, GROUP_SYMS);
    if (n < 1) {
      memset(&sym[0], 0, sizeof sym[0]);
      n = 1;
    }
    int j0 = 0;
    const char *real = sym[n - 1].func;
    if (i == first && n > 1 && real && strncmp(real, "tt_", 3) == 0 && real[3] != '_')
      j0 = n - 1;
    for (int j = j0; j < n; j++) {
      pframe f;
      pframe_set(&f, &sym[j], addr);
      if (fn(&f, arg))
        return true;
    }
  }
  return false;
}

/* The creation site, "file.c:12 func" (the file's base name), or NULL when unknown. */
static const char *creator(const grp *g, char *buf, size_t len) {
  if (g->e->create_pc == NULL)
    return NULL;
  uintptr_t addr = (uintptr_t)g->e->create_pc - 1;
  tt__sym sym[GROUP_SYMS];
  int n = tt__symbolize(addr, sym, GROUP_SYMS);
  if (n < 1)
    return NULL;
  pframe f;
  pframe_set(&f, &sym[0], addr);
  if (f.file) {
    const char *base = strrchr(f.file, '/');
    snprintf(buf, len, "%s:%d %s", base ? base + 1 : f.file, f.line, f.func);
  } else {
    snprintf(buf, len, "%s", f.func);
  }
  return buf;
}

/* ---- Filtering ------------------------------------------------------------------------------ */

static const char *reason_of(const tt__snap_entry *e) {
  return e->state == TT_STATE_WAITING ? tt_wait_reason_string(e->reason) : NULL;
}

static bool frame_has(const pframe *f, void *arg) {
  return ci_contains(f->func, arg) || ci_contains(f->file, arg);
}

/* state=: the group's state, its wait reason, or "leaked" (a group with a leaked member). q=: a
 * substring of a visible frame's function or file, the reason, the state, the name, a label's key
 * or value, or the creation site. Both ignore ASCII case. */
static bool matches(const grp *g, const query *q) {
  const tt__snap_entry *e = g->e;
  if (q->state && !ci_equal(q->state, tt_state_string(e->state)) &&
      !ci_equal(q->state, reason_of(e)) && !(g->leaked > 0 && ci_equal(q->state, "leaked")))
    return false;
  if (q->q == NULL)
    return true;
  char buf[512];
  if (ci_contains(tt_state_string(e->state), q->q) || ci_contains(reason_of(e), q->q) ||
      ci_contains(e->name, q->q) || ci_contains(creator(g, buf, sizeof buf), q->q))
    return true;
  for (uint32_t i = 0; e->labels && i < e->labels->n; i++)
    if (ci_contains(e->labels->v[i].key, q->q) || ci_contains(e->labels->v[i].value, q->q))
      return true;
  return frames_each(g, frame_has, q->q);
}

/* ---- Writing -------------------------------------------------------------------------------- */

static void jnum_or_null(tt__sink *k, int64_t v) {
  if (v < 0)
    tt__sink_str(k, "null");
  else
    tt__sink_i64(k, v);
}

typedef struct frame_out {
  tt__sink *k;
  bool any;
} frame_out;

static bool frame_write(const pframe *f, void *arg) {
  frame_out *o = arg;
  tt__sink_str(o->k, o->any ? ",{\"func\":" : "{\"func\":");
  o->any = true;
  tt__sink_json_str(o->k, f->func);
  tt__sink_str(o->k, ",\"file\":");
  tt__sink_json_str(o->k, f->file);
  tt__sink_str(o->k, ",\"line\":");
  tt__sink_u64(o->k, (uint64_t)f->line);
  tt__sink_str(o->k, "}");
  return o->k->err != 0;
}

static void group_write(tt__sink *k, const grp *g) {
  const tt__snap_entry *e = g->e;
  tt__sink_str(k, "{\"count\":");
  tt__sink_i64(k, g->count);
  tt__sink_str(k, ",\"state\":");
  tt__sink_json_str(k, tt_state_string(e->state));
  tt__sink_str(k, ",\"reason\":");
  tt__sink_json_str(k, reason_of(e));
  tt__sink_str(k, ",\"leaked\":");
  tt__sink_i64(k, g->leaked);
  tt__sink_str(k, ",\"wait_min_ns\":");
  jnum_or_null(k, g->wmin);
  tt__sink_str(k, ",\"wait_max_ns\":");
  jnum_or_null(k, g->wmax);
  tt__sink_str(k, ",\"name\":");
  tt__sink_json_str(k, e->name);
  tt__sink_str(k, ",\"labels\":{");
  for (uint32_t i = 0; e->labels && i < e->labels->n; i++) {
    if (i)
      tt__sink_str(k, ",");
    tt__sink_json_str(k, e->labels->v[i].key);
    tt__sink_str(k, ":");
    tt__sink_json_str(k, e->labels->v[i].value);
  }
  char buf[512];
  tt__sink_str(k, "},\"creator\":");
  tt__sink_json_str(k, creator(g, buf, sizeof buf));
  tt__sink_str(k, ",\"ids\":[");
  for (uint32_t i = 0; i < g->nids; i++) {
    if (i)
      tt__sink_str(k, ",");
    tt__sink_u64(k, g->ids[i]);
  }
  tt__sink_str(k, "],\"depth\":");
  tt__sink_u64(k, g->stk ? g->stk->depth : 0);
  tt__sink_str(k, ",\"frames\":[");
  frame_out o = {k, false};
  frames_each(g, frame_write, &o);
  tt__sink_str(k, "]}");
}

/* Largest first; then the most leaked; then the lowest id, so the order is stable over reloads. */
static int cmp_grp(const void *a, const void *b) {
  const grp *x = *(const grp *const *)a, *y = *(const grp *const *)b;
  if (x->count != y->count)
    return x->count > y->count ? -1 : 1;
  if (x->leaked != y->leaked)
    return x->leaked > y->leaked ? -1 : 1;
  return x->ids[0] < y->ids[0] ? -1 : x->ids[0] > y->ids[0];
}

int tt__debug_groups_json(tt__sink *s, const char *raw_query) {
  if (s == NULL)
    return TT_EINVAL;
  query q;
  int err = query_parse(raw_query, &q);
  if (err)
    return err;
  tt_snapshot *snap = NULL;
  table t = {0};
  canon_tab ct = {0};
  site_tab st = {0};
  grp **sel = NULL;
  err = tt_snapshot_take(&snap);
  if (err)
    goto out;
  /* By id, so that each group's first ids are its lowest. */
  err = tt__snap_sort(snap);
  if (err)
    goto out;
  int64_t leaked = 0;
  for (size_t i = 0; i < snap->n; i++) {
    const tt__snap_entry *e = tt__snap_at(snap, i);
    const tt__stk *stk = canon_of(&ct, e->stack, &err);
    uintptr_t site = site_of(&st, (uintptr_t)e->create_pc, &err);
    grp *g = err ? NULL : group_of(&t, e, stk, site);
    if (g == NULL) {
      err = TT_ENOMEM;
      goto out;
    }
    g->count++;
    if (e->verdict != TT_VERDICT_NONE) {
      g->leaked++;
      leaked++;
    }
    if (g->nids < GROUP_IDS)
      g->ids[g->nids++] = e->id;
    if (e->state == TT_STATE_WAITING && e->blocked_since > 0) {
      int64_t w = snap->taken > e->blocked_since ? snap->taken - e->blocked_since : 0;
      if (g->wmin < 0 || w < g->wmin)
        g->wmin = w;
      if (w > g->wmax)
        g->wmax = w;
    }
  }
  sel = tt__malloc((t.n ? t.n : 1) * sizeof *sel);
  if (sel == NULL) {
    err = TT_ENOMEM;
    goto out;
  }
  size_t nsel = 0;
  int64_t matched = 0;
  for (size_t i = 0; i < t.cap; i++)
    if (t.v[i].e && matches(&t.v[i], &q)) {
      sel[nsel++] = &t.v[i];
      matched += t.v[i].count;
    }
  qsort(sel, nsel, sizeof *sel, cmp_grp);

  tt__sink_str(s, "{\"taken_ns\":");
  tt__sink_i64(s, snap->taken);
  tt__sink_str(s, ",\"wall_ns\":");
  tt__sink_i64(s, snap->wall_ns);
  tt__sink_str(s, ",\"total\":");
  tt__sink_u64(s, snap->n);
  tt__sink_str(s, ",\"leaked\":");
  tt__sink_i64(s, leaked);
  tt__sink_str(s, ",\"groups_total\":");
  tt__sink_u64(s, t.n);
  tt__sink_str(s, ",\"matched_groups\":");
  tt__sink_u64(s, nsel);
  tt__sink_str(s, ",\"matched\":");
  tt__sink_i64(s, matched);
  tt__sink_str(s, ",\"limit\":");
  tt__sink_u64(s, q.limit);
  tt__sink_str(s, ",\"groups\":[");
  for (size_t i = 0; i < nsel && i < q.limit && !s->err; i++) {
    tt__sink_str(s, i ? ",\n" : "\n");
    group_write(s, sel[i]);
  }
  tt__sink_str(s, "\n]}\n");
  err = s->err;
out:
  free(sel);
  free(t.v);
  free(ct.byptr);
  free(ct.byvis);
  free(st.byptr);
  free(st.bysrc);
  tt_snapshot_free(snap);
  query_free(&q);
  return err;
}
