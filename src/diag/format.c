/* SPDX-License-Identifier: MIT */
/* The dump formats: Go's traceback text (debug=2), Go's aggregated counts (debug=1), the pprof
 * goroutine profile and JSON, all written from a snapshot.
 *
 * Everything that depends only on a stack is computed once per distinct stack (a million
 * coroutines parked in a few places share a few stacks): the traceback text of each stack is
 * rendered once and copied for every coroutine that has it, so debug=2 for a million coroutines
 * costs a million headers and copies, not a million symbolizations. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "diag/snap_int.h"

void tt__coro_entry(void);

/* ---- Frames ------------------------------------------------------------------------------- */

/* A stored pc (return-address-like) and what is there: its inline chain, innermost first. */
typedef struct frame {
  uintptr_t pc;
  tt__sym sym[8];
  int nsym; /* at least 1 */
} frame;

static void frame_get(uintptr_t pc, frame *f) {
  f->pc = pc;
  f->nsym = tt__symbolize(pc - 1, f->sym, (int)(sizeof f->sym / sizeof f->sym[0]));
  if (f->nsym < 1) {
    memset(&f->sym[0], 0, sizeof f->sym[0]);
    f->nsym = 1;
  }
}

/* Whether panicparse accepts a file name: it wants ".c", ".go", ".s" (or "??"). */
static bool file_parsable(const char *file) {
  if (file == NULL)
    return false;
  size_t n = strlen(file);
  return (n > 2 && strcmp(file + n - 2, ".c") == 0) || (n > 2 && strcmp(file + n - 2, ".s") == 0) ||
         (n > 3 && strcmp(file + n - 3, ".go") == 0);
}

/* tether's own source directory (".../src/"), from where its public functions were compiled;
 * NULL without debug information. */
static const char *src_prefix;
static size_t src_prefix_len;
static pthread_once_t src_once = PTHREAD_ONCE_INIT;

static void src_init(void) {
  tt__sym sym[4];
  int n = tt__symbolize((uintptr_t)&tt_go, sym, 4);
  if (n < 1 || sym[n - 1].file == NULL)
    return;
  const char *f = sym[n - 1].file, *p = strstr(f, "/src/coro/");
  if (p == NULL)
    return;
  src_prefix_len = (size_t)(p - f) + 5;
  char *copy = malloc(src_prefix_len + 1);
  if (copy == NULL)
    return;
  memcpy(copy, f, src_prefix_len);
  copy[src_prefix_len] = '\0';
  src_prefix = copy;
}

/* Frame kinds. */
#define FK_USER 0
#define FK_INTERNAL 1 /* tether's own code */
#define FK_PUBLIC 2   /* a tether API function */
#define FK_ENTRY 3    /* the coroutine trampoline at every stack's bottom */

static int frame_kind(const frame *f) {
  const tt__sym *s = &f->sym[f->nsym - 1];
  if (s->entry && s->entry == (uintptr_t)&tt__coro_entry)
    return FK_ENTRY;
  bool ours = false;
  if (s->file && src_prefix)
    ours = strncmp(s->file, src_prefix, src_prefix_len) == 0;
  else if (s->func)
    ours = strncmp(s->func, "tt_", 3) == 0;
  if (!ours)
    return FK_USER;
  if (s->func && strncmp(s->func, "tt_", 3) == 0 && s->func[3] != '_')
    return FK_PUBLIC;
  return FK_INTERNAL;
}

/* A writer's memo: an open-addressing map from a nonzero word (a pc, a stack record's address)
 * to a word (a frame kind, a rendered text), so that what depends on one pc or one stack is
 * worked out once per dump. */
typedef struct memo {
  uintptr_t *key, *val;
  size_t n, cap;
} memo;

static size_t memo_slot(const memo *m, uintptr_t key) {
  size_t j = (key * 0x9e3779b97f4a7c15ull >> 20) & (m->cap - 1);
  while (m->key[j] && m->key[j] != key)
    j = (j + 1) & (m->cap - 1);
  return j;
}

static bool memo_get(const memo *m, uintptr_t key, uintptr_t *val) {
  if (m->cap == 0)
    return false;
  size_t j = memo_slot(m, key);
  *val = m->val[j];
  return m->key[j] != 0;
}

/* Adds key (not yet there); false when out of memory (then nothing is remembered). */
static bool memo_put(memo *m, uintptr_t key, uintptr_t val) {
  if ((m->n + 1) * 2 > m->cap) {
    memo g = {calloc(m->cap ? m->cap * 2 : 1024, sizeof(uintptr_t)),
              calloc(m->cap ? m->cap * 2 : 1024, sizeof(uintptr_t)), m->n,
              m->cap ? m->cap * 2 : 1024};
    if (g.key == NULL || g.val == NULL) {
      free(g.key);
      free(g.val);
      return false;
    }
    for (size_t i = 0; i < m->cap; i++)
      if (m->key[i]) {
        size_t j = memo_slot(&g, m->key[i]);
        g.key[j] = m->key[i];
        g.val[j] = m->val[i];
      }
    free(m->key);
    free(m->val);
    *m = g;
  }
  size_t j = memo_slot(m, key);
  m->key[j] = key;
  m->val[j] = val;
  m->n++;
  return true;
}

/* Frees the map, and with it the rendered texts it holds when texts is set. */
static void memo_free(memo *m, bool texts) {
  for (size_t i = 0; texts && i < m->cap; i++)
    if (m->key[i])
      free((void *)m->val[i]);
  free(m->key);
  free(m->val);
}

/* A frame kind, through the memo (NULL: none, a crash report's one-off). */
static int kind_of(memo *m, uintptr_t pc) {
  uintptr_t k;
  if (m && memo_get(m, pc, &k))
    return (int)k;
  frame f;
  frame_get(pc, &f);
  int kind = frame_kind(&f);
  if (m)
    memo_put(m, pc, (uintptr_t)kind);
  return kind;
}

/* The visible frames of a stack: tether's internal frames at the top are hidden up to the
 * outermost public call among them (the call the coroutine waits in); the trampoline at the
 * bottom is hidden. TT_TRACEBACK=system shows everything. */
static void visible(const uintptr_t *pcs, size_t n, memo *m, size_t *first, size_t *last) {
  *first = 0;
  *last = n;
  if (tt__rt.traceback >= TT__TB_SYSTEM || n == 0)
    return;
  pthread_once(&src_once, src_init);
  if (src_prefix != NULL) {
    /* Which frames are tether's is known from their files: hide the run at the top. */
    size_t r = 0, pub = SIZE_MAX;
    for (; r < n; r++) {
      int k = kind_of(m, pcs[r]);
      if (k == FK_USER)
        break;
      if (k == FK_PUBLIC)
        pub = r;
    }
    if (pub != SIZE_MAX)
      *first = pub;
    else if (r < n)
      *first = r;
  } else {
    /* Without tether's debug information only names tell, and its static functions have no
     * prefix: everything above the first public call is its (nothing of the program's runs
     * above a tether call the coroutine waits in), and the public calls under it too. */
    size_t p = 0;
    while (p < n && p < 64 && kind_of(m, pcs[p]) != FK_PUBLIC)
      p++;
    if (p < n && p < 64) {
      for (size_t j = p + 1; j < n; j++) {
        int k = kind_of(m, pcs[j]);
        if (k == FK_PUBLIC)
          p = j;
        else if (k != FK_INTERNAL)
          break;
      }
      *first = p;
    } else {
      while (*first < n && kind_of(m, pcs[*first]) == FK_INTERNAL)
        (*first)++;
      if (*first == n)
        *first = 0;
    }
  }
  /* At the bottom: the trampoline, and tether's frames below the program's last one (the run's
   * own entry under coroutine 1), as Go hides runtime.main and goexit. */
  size_t u = n;
  while (u > *first && kind_of(m, pcs[u - 1]) != FK_USER)
    u--;
  if (u > *first && kind_of(m, pcs[u - 1]) == FK_USER)
    *last = u;
  else if (*last > *first + 1 && kind_of(m, pcs[*last - 1]) == FK_ENTRY)
    (*last)--;
}

/* The blocking location of a stack for the leak suspects (src/leak/suspect.c): the innermost of
 * the frames a dump shows that is the program's own (not tether's), by the rule above. */
size_t tt__stk_user_frame(const tt__stk *stk) {
  size_t first, last;
  visible(stk->pcs, stk->n, NULL, &first, &last);
  for (size_t i = first; i < last; i++)
    if (kind_of(NULL, stk->pcs[i]) == FK_USER)
      return i;
  return stk->n;
}

/* The frames a dump shows of a stack record, [*first, *last) of stk->pcs, by the rule above: the
 * live page's groups (src/debug/page.c) show the same frames as the dumps. */
void tt__stk_visible(const tt__stk *stk, size_t *first, size_t *last) {
  visible(stk->pcs, stk->n, NULL, first, last);
}

/* ---- debug=2: tracebacks ------------------------------------------------------------------ */

static void put_file_line(tt__sink *k, const tt__sym *s) {
  tt__sink_str(k, "\t");
  tt__sink_str(k, file_parsable(s->file) ? s->file : "??");
  tt__sink_str(k, ":");
  tt__sink_u64(k, s->file ? (uint64_t)(s->line > 0 ? s->line : 0) : 0);
}

static void put_func(tt__sink *k, const tt__sym *s, uintptr_t addr) {
  if (s->func) {
    tt__sink_str(k, s->func);
  } else if (s->module) {
    const char *base = strrchr(s->module, '/');
    tt__sink_str(k, base ? base + 1 : s->module);
    tt__sink_str(k, "+");
    tt__sink_hex(k, addr - s->module_base);
  } else {
    tt__sink_hex(k, addr);
  }
}

/* The first inline entry of f to show: a public tether call's own internals (what it inlined)
 * are hidden with the rest of tether's internal frames. */
static int first_sym(const frame *f, bool boundary) {
  if (!boundary || tt__rt.traceback >= TT__TB_SYSTEM || frame_kind(f) != FK_PUBLIC)
    return 0;
  return f->nsym - 1;
}

/* One frame, Go's way: "f(...)\n\tfile:line +0xoff\n", inlined calls first without offsets. */
static void put_frame(tt__sink *k, const frame *f, bool boundary) {
  uintptr_t addr = f->pc - 1;
  for (int i = first_sym(f, boundary); i < f->nsym; i++) {
    const tt__sym *s = &f->sym[i];
    put_func(k, s, addr);
    tt__sink_str(k, "(...)\n");
    put_file_line(k, s);
    if (i == f->nsym - 1) {
      tt__sink_str(k, " +");
      tt__sink_hex(k, s->entry ? f->pc - s->entry : 0);
    }
    tt__sink_str(k, "\n");
  }
}

static void put_stack(tt__sink *k, const tt__stk *stk, memo *m) {
  size_t first, last;
  visible(stk->pcs, stk->n, m, &first, &last);
  for (size_t i = first; i < last; i++) {
    if (stk->depth > stk->n && i == TT_STACK_KEEP / 2) {
      tt__sink_str(k, "...");
      tt__sink_u64(k, stk->depth - stk->n);
      tt__sink_str(k, " frames elided...\n");
    }
    frame f;
    frame_get(stk->pcs[i], &f);
    put_frame(k, &f, i == first);
  }
}

int tt__write_pcs(tt__sink *k, const uintptr_t *pcs, size_t n) {
  tt__stk_buf b;
  tt__stk_keep(&b.stk, pcs, n);
  memo m = {0};
  put_stack(k, &b.stk, &m);
  memo_free(&m, false);
  return k->err;
}

/* "created by f in goroutine P\n\tfile:line +0xoff\n" */
static void put_created(tt__sink *k, void *pc, tt_id parent) {
  if (pc == NULL)
    return;
  frame f;
  frame_get((uintptr_t)pc, &f);
  const tt__sym *s = &f.sym[0], *real = &f.sym[f.nsym - 1];
  tt__sink_str(k, "created by ");
  put_func(k, s, (uintptr_t)pc - 1);
  if (parent) {
    tt__sink_str(k, " in goroutine ");
    tt__sink_u64(k, parent);
  }
  tt__sink_str(k, "\n");
  put_file_line(k, s);
  tt__sink_str(k, " +");
  tt__sink_hex(k, real->entry ? (uintptr_t)pc - real->entry : 0);
  tt__sink_str(k, "\n");
}

int tt__write_created(tt__sink *k, void *pc, tt_id parent) {
  put_created(k, pc, parent);
  return k->err;
}

/* Go's ancestor tracebacks (GODEBUG=tracebackancestors): the spawner's stack at the spawn. */
static void put_ancestry(tt__sink *k, const tt__ancestry *a, memo *m) {
  for (int level = 0; a && level < tt__rt.creationstack; a = a->up, level++) {
    tt__sink_str(k, "[originating from goroutine ");
    tt__sink_u64(k, a->goid);
    tt__sink_str(k, "]:\n");
    /* From the spawning function down: the spawn call itself (tt_go) is left out too, as Go's
     * ancestor tracebacks start at the function with the go statement. */
    size_t first, last;
    visible(a->pcs, a->npcs, m, &first, &last);
    if (tt__rt.traceback < TT__TB_SYSTEM && first + 1 < last &&
        kind_of(m, a->pcs[first]) == FK_PUBLIC)
      first++;
    for (size_t i = first; i < last; i++) {
      frame f;
      frame_get(a->pcs[i], &f);
      put_frame(k, &f, false);
    }
    if (a->goid != 1)
      put_created(k, a->gopc, a->gparent);
  }
}

static void put_header(tt__sink *k, const tt_snapshot *s, const tt__snap_entry *e) {
  tt__sink_str(k, "goroutine ");
  tt__sink_u64(k, e->id);
  tt__sink_str(k, " [");
  if (e->state == TT_STATE_WAITING)
    tt__sink_str(k, tt_wait_reason_string(e->reason));
  else
    tt__sink_str(k, tt_state_string(e->state));
  if (e->verdict) /* proven (src/leak): Go 1.26's spelling */
    tt__sink_str(k, " (leaked)");
  if (e->state == TT_STATE_WAITING && e->blocked_since > 0 && s->taken > e->blocked_since) {
    int64_t min = (s->taken - e->blocked_since) / (60 * TT_SEC);
    if (min >= 1) {
      tt__sink_str(k, ", ");
      tt__sink_u64(k, (uint64_t)min);
      tt__sink_str(k, " minutes");
    }
  }
  tt__sink_str(k, "]:\n");
}

static void put_one(const tt_snapshot *s, const tt__snap_entry *e, tt__sink *k, memo *m,
                    const char *stack_text, size_t stack_len) {
  put_header(k, s, e);
  if (e->stack_status == TT_STACK_UNAVAILABLE)
    tt__sink_str(k, "\tgoroutine running on other thread; stack unavailable\n");
  else if (e->stack_status == TT__STACK_PAST_END)
    tt__sink_str(k, "\tstack past its end; not walked\n");
  else if (stack_text)
    tt__sink_write(k, stack_text, stack_len);
  else if (e->stack)
    put_stack(k, e->stack, m);
  /* Coroutine 1 is the run's main, which Go shows without a creator. */
  if (e->id != 1 || e->parent != 0)
    put_created(k, e->create_pc, e->parent);
  put_ancestry(k, e->extra ? e->extra->ancestry : NULL, m);
}

void tt__write_trace_one(const tt_snapshot *s, const tt__snap_entry *e, tt__sink *k) {
  put_one(s, e, k, NULL, NULL, 0);
}

/* A text rendered once per stack record and copied for every coroutine that has it (held in a
 * memo from the record's address). */
typedef struct rendered {
  size_t len;
  char text[];
} rendered;

/* The memo's text for stk, rendered by put(k, stk, m) the first time; NULL when out of memory. */
static const rendered *render(memo *texts, const tt__stk *stk, memo *m,
                              void (*put)(tt__sink *, const tt__stk *, memo *)) {
  uintptr_t v;
  if (memo_get(texts, (uintptr_t)stk, &v))
    return (const rendered *)v;
  tt__sink r;
  tt__sink_mem(&r);
  put(&r, stk, m);
  char *text;
  size_t len;
  if (tt__sink_take(&r, &text, &len) != 0)
    return NULL;
  rendered *t = malloc(sizeof *t + len);
  if (t != NULL) {
    t->len = len;
    memcpy(t->text, text, len);
    if (!memo_put(texts, (uintptr_t)stk, (uintptr_t)t)) {
      free(t);
      t = NULL;
    }
  }
  free(text);
  return t;
}

int tt__write_traces(const tt_snapshot *s, tt__sink *k) {
  int err = tt__snap_sort(s);
  if (err)
    return err;
  memo m = {0}, texts = {0};
  for (size_t i = 0; i < s->n && !k->err; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    if (i > 0)
      tt__sink_str(k, "\n");
    const rendered *t = e->stack && e->stack_status != TT_STACK_UNAVAILABLE
                            ? render(&texts, e->stack, &m, put_stack)
                            : NULL;
    put_one(s, e, k, &m, t ? t->text : NULL, t ? t->len : 0);
  }
  memo_free(&texts, true);
  memo_free(&m, false);
  return k->err;
}

/* ---- debug=1: counts ---------------------------------------------------------------------- */

/* Coroutines grouped by what a format aggregates: the first coroutine of a group and how many
 * there are. */
typedef struct group {
  const tt__snap_entry *e;
  int64_t count;
  char *key; /* debug=1: "@ 0x... 0x..." and the labels line, Go's sort key */
} group;

/* What a format groups by: debug=1 by stack and label set, pprof also by state, wait reason
 * and name (its labels). A hash and an equality that agree. */
typedef struct grouping {
  uint64_t (*hash)(const tt__snap_entry *e);
  bool (*same)(const tt__snap_entry *a, const tt__snap_entry *b);
} grouping;

static uint64_t hash_counts(const tt__snap_entry *e) {
  return ((uintptr_t)e->stack * 0x9e3779b97f4a7c15ull) ^ ((uintptr_t)e->labels * 31);
}

static bool same_counts(const tt__snap_entry *a, const tt__snap_entry *b) {
  return a->stack == b->stack && a->labels == b->labels;
}

static uint64_t hash_sample(const tt__snap_entry *e) {
  return hash_counts(e) ^ ((uint64_t)e->state << 40) ^ ((uint64_t)e->reason << 48) ^
         (uintptr_t)e->name * 0xff51afd7ed558ccdull;
}

static bool same_sample(const tt__snap_entry *a, const tt__snap_entry *b) {
  return same_counts(a, b) && a->state == b->state && a->reason == b->reason && a->name == b->name;
}

static const grouping by_counts = {hash_counts, same_counts};
static const grouping by_sample = {hash_sample, same_sample};

/* Groups s's coroutines, in a table sized for the worst case (every coroutine alone); returns
 * the groups, compacted to the front (*ng of them), or NULL when out of memory. */
static group *group_by(const tt_snapshot *s, const grouping *by, size_t *ng) {
  size_t cap = 64;
  while (cap < s->n * 2 + 64 && cap < ((size_t)1 << 30))
    cap *= 2;
  group *tab = calloc(cap, sizeof *tab);
  if (tab == NULL)
    return NULL;
  for (size_t i = 0; i < s->n; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    size_t j = (by->hash(e) >> 17) & (cap - 1);
    while (tab[j].e != NULL && !by->same(tab[j].e, e))
      j = (j + 1) & (cap - 1);
    if (tab[j].e == NULL)
      tab[j].e = e;
    tab[j].count++;
  }
  size_t n = 0;
  for (size_t j = 0; j < cap; j++)
    if (tab[j].e)
      tab[n++] = tab[j];
  *ng = n;
  return tab;
}

static int cmp_label(const void *a, const void *b) {
  const tt_label *x = *(const tt_label *const *)a, *y = *(const tt_label *const *)b;
  return strcmp(x->key, y->key);
}

/* Go's %q for the ASCII a label holds; other bytes as \x escapes. */
static void put_quoted(tt__sink *k, const char *p) {
  tt__sink_str(k, "\"");
  for (; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\') {
      char b[2] = {'\\', (char)c};
      tt__sink_write(k, b, 2);
    } else if (c >= 0x20 && c < 0x7f) {
      tt__sink_write(k, p, 1);
    } else if (c == '\n') {
      tt__sink_str(k, "\\n");
    } else if (c == '\t') {
      tt__sink_str(k, "\\t");
    } else {
      char b[5] = {'\\', 'x', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15], 0};
      tt__sink_str(k, b);
    }
  }
  tt__sink_str(k, "\"");
}

/* Go's labelMap.String(): {"k":"v", ...} sorted by key. */
static void put_labels_go(tt__sink *k, const tt__labels *l) {
  const tt_label *sorted[64];
  size_t n = l->n < 64 ? l->n : 64;
  for (size_t i = 0; i < n; i++)
    sorted[i] = &l->v[i];
  qsort(sorted, n, sizeof *sorted, cmp_label);
  tt__sink_str(k, "{");
  for (size_t i = 0; i < n; i++) {
    if (i)
      tt__sink_str(k, ", ");
    put_quoted(k, sorted[i]->key);
    tt__sink_str(k, ":");
    put_quoted(k, sorted[i]->value);
  }
  tt__sink_str(k, "}");
}

static int cmp_group(const void *a, const void *b) {
  const group *x = a, *y = b;
  if (x->count != y->count)
    return x->count > y->count ? -1 : 1;
  return strcmp(x->key ? x->key : "", y->key ? y->key : "");
}

/* A record's "#" lines, aligned as Go's text/tabwriter aligns them (minwidth 1, tabwidth 8,
 * padding 1, padding with tabs): each column is as wide as its widest cell plus one, rounded up
 * to a tab stop, over the run of lines that have that column. */
typedef struct hash_line {
  char pc[24];
  char *fn; /* "func+0xoff", or NULL for a frame without a name (the line is "#\t0x..") */
  char *loc;
} hash_line;

static void put_tabs(tt__sink *k, size_t textw, size_t colw) {
  size_t cellw = (colw + 7) / 8 * 8;
  size_t n = (cellw - textw + 7) / 8;
  for (size_t i = 0; i < n; i++)
    tt__sink_write(k, "\t", 1);
}

static void put_hash_lines(tt__sink *k, hash_line *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (v[i].fn == NULL) {
      tt__sink_str(k, "#\t");
      tt__sink_str(k, v[i].pc);
      tt__sink_str(k, "\n");
      i++;
      continue;
    }
    /* A run of full lines: column widths over the run. */
    size_t j = i, w1 = 0, w2 = 0;
    for (; j < n && v[j].fn; j++) {
      size_t a = strlen(v[j].pc) + 1, b = strlen(v[j].fn) + 1;
      w1 = a > w1 ? a : w1;
      w2 = b > w2 ? b : w2;
    }
    for (; i < j; i++) {
      tt__sink_str(k, "#");
      put_tabs(k, 1, 2); /* column 0 holds "#" alone: width 2, one tab */
      tt__sink_str(k, v[i].pc);
      put_tabs(k, strlen(v[i].pc), w1);
      tt__sink_str(k, v[i].fn);
      put_tabs(k, strlen(v[i].fn), w2);
      tt__sink_str(k, v[i].loc);
      tt__sink_str(k, "\n");
    }
  }
}

static void put_record_frames(tt__sink *k, const tt__stk *stk, memo *m) {
  size_t first, last;
  visible(stk->pcs, stk->n, m, &first, &last);
  size_t cap = 0, n = 0;
  hash_line *v = NULL;
  for (size_t i = first; i < last; i++) {
    frame f;
    frame_get(stk->pcs[i], &f);
    for (int j = first_sym(&f, i == first); j < f.nsym; j++) {
      if (n == cap) {
        cap = cap ? cap * 2 : 32;
        hash_line *nv = realloc(v, cap * sizeof *v);
        if (nv == NULL) {
          k->err = k->err ? k->err : TT_ENOMEM;
          goto out;
        }
        v = nv;
      }
      hash_line *h = &v[n++];
      const tt__sym *s = &f.sym[j], *real = &f.sym[f.nsym - 1];
      uintptr_t addr = f.pc - 1;
      snprintf(h->pc, sizeof h->pc, "%#lx", (unsigned long)addr);
      h->fn = h->loc = NULL;
      if (s->func == NULL)
        continue;
      tt__sink t;
      tt__sink_mem(&t);
      tt__sink_str(&t, s->func);
      tt__sink_str(&t, "+");
      tt__sink_hex(&t, real->entry ? addr - real->entry : 0);
      if (tt__sink_take(&t, &h->fn, NULL) != 0)
        h->fn = NULL;
      tt__sink_mem(&t);
      tt__sink_str(&t, s->file ? s->file : "??");
      tt__sink_str(&t, ":");
      tt__sink_u64(&t, s->file && s->line > 0 ? (uint64_t)s->line : 0);
      if (tt__sink_take(&t, &h->loc, NULL) != 0) {
        free(h->fn);
        h->fn = h->loc = NULL;
      }
    }
  }
  put_hash_lines(k, v, n);
out:
  for (size_t i = 0; i < n; i++) {
    free(v[i].fn);
    free(v[i].loc);
  }
  free(v);
}

int tt__write_counts(const tt_snapshot *s, tt__sink *k) {
  size_t ng = 0;
  group *g = group_by(s, &by_counts, &ng);
  if (g == NULL)
    return TT_ENOMEM;
  for (size_t i = 0; i < ng; i++) {
    tt__sink t;
    tt__sink_mem(&t);
    tt__sink_str(&t, "@");
    for (uint32_t j = 0; g[i].e->stack && j < g[i].e->stack->n; j++) {
      tt__sink_str(&t, " ");
      tt__sink_hex(&t, g[i].e->stack->pcs[j]);
    }
    if (g[i].e->labels) {
      tt__sink_str(&t, "\n# labels: ");
      put_labels_go(&t, g[i].e->labels);
    }
    if (tt__sink_take(&t, &g[i].key, NULL) != 0)
      g[i].key = NULL;
  }
  qsort(g, ng, sizeof *g, cmp_group);
  memo m = {0};
  tt__sink_str(k, s->profile ? s->profile : "goroutine");
  tt__sink_str(k, " profile: total ");
  tt__sink_u64(k, s->n);
  tt__sink_str(k, "\n");
  for (size_t i = 0; i < ng && !k->err; i++) {
    tt__sink_u64(k, (uint64_t)g[i].count);
    tt__sink_str(k, " ");
    tt__sink_str(k, g[i].key ? g[i].key : "@");
    tt__sink_str(k, "\n");
    if (g[i].e->stack)
      put_record_frames(k, g[i].e->stack, &m);
    tt__sink_str(k, "\n");
  }
  for (size_t i = 0; i < ng; i++)
    free(g[i].key);
  free(g);
  memo_free(&m, false);
  return k->err;
}

/* ---- pprof -------------------------------------------------------------------------------- */

/* Appends the samples of groups tab[0..ng) (their counts times sign) to samples, and their labels
 * to labels, from *ns and *li on. */
static void pprof_samples(const group *tab, size_t ng, int64_t sign, tt__pp_sample *samples,
                          size_t *ns, tt__pp_label *labels, size_t *li) {
  for (size_t j = 0; j < ng; j++) {
    const tt__snap_entry *e = tab[j].e;
    tt__pp_sample *sm = &samples[(*ns)++];
    sm->pcs = e->stack ? e->stack->pcs : NULL;
    sm->npcs = e->stack ? e->stack->n : 0;
    sm->value = sign * tab[j].count;
    sm->labels = &labels[*li];
    size_t l0 = *li;
    if (e->labels)
      for (uint32_t x = 0; x < e->labels->n; x++)
        labels[(*li)++] = (tt__pp_label){e->labels->v[x].key, e->labels->v[x].value};
    /* Ours, unless the program set a label with the same key. */
    const char *ours[3][2] = {
        {"state", e->state == TT_STATE_WAITING ? "waiting" : tt_state_string(e->state)},
        {"wait_reason", e->state == TT_STATE_WAITING ? tt_wait_reason_string(e->reason) : NULL},
        {"name", e->name}};
    for (int o = 0; o < 3; o++) {
      if (ours[o][1] == NULL)
        continue;
      bool taken = false;
      for (size_t x = l0; x < *li; x++)
        taken |= strcmp(labels[x].key, ours[o][0]) == 0;
      if (!taken)
        labels[(*li)++] = (tt__pp_label){ours[o][0], ours[o][1]};
    }
    sm->nlabels = *li - l0;
  }
}

static size_t pprof_nlabels(const group *tab, size_t ng) {
  size_t nl = 0;
  for (size_t j = 0; j < ng; j++)
    nl += 3 + (tab[j].e->labels ? tab[j].e->labels->n : 0);
  return nl;
}

/* s's samples, minus s0's when s0 is not NULL (a delta profile). */
static int write_pprof(const tt_snapshot *s0, const tt_snapshot *s, tt__sink *k) {
  /* Samples: one per distinct (stack, labels, state, wait reason, name). */
  size_t ng = 0, ng0 = 0;
  group *tab = group_by(s, &by_sample, &ng);
  group *tab0 = s0 ? group_by(s0, &by_sample, &ng0) : NULL;
  size_t nl = pprof_nlabels(tab, tab ? ng : 0) + pprof_nlabels(tab0, tab0 ? ng0 : 0);
  tt__pp_sample *samples = calloc(ng + ng0 ? ng + ng0 : 1, sizeof *samples);
  tt__pp_label *labels = calloc(nl ? nl : 1, sizeof *labels);
  if (tab == NULL || (s0 && tab0 == NULL) || samples == NULL || labels == NULL) {
    free(tab);
    free(tab0);
    free(samples);
    free(labels);
    return TT_ENOMEM;
  }
  size_t ns = 0, li = 0;
  pprof_samples(tab, ng, 1, samples, &ns, labels, &li);
  /* A delta: the earlier snapshot's samples negated; pprof sums the samples of a stack, as Go's
   * profile.Merge does when net/http/pprof serves ?seconds=. */
  pprof_samples(tab0, ng0, -1, samples, &ns, labels, &li);
  tt__pp_profile p = {.sample_type = s->profile ? s->profile : "goroutine",
                      .sample_unit = "count",
                      .period_type = s->profile ? s->profile : "goroutine",
                      .period_unit = "count",
                      .period = 1,
                      .time_nanos = s->wall_ns,
                      .samples = samples,
                      .nsamples = ns};
  int err = tt__pprof_write(&p, k);
  free(tab);
  free(tab0);
  free(samples);
  free(labels);
  return err ? err : k->err;
}

int tt__write_pprof(const tt_snapshot *s, tt__sink *k) { return write_pprof(NULL, s, k); }

int tt__write_pprof_delta(const tt_snapshot *s0, const tt_snapshot *s1, tt__sink *k) {
  return write_pprof(s0, s1, k);
}

/* ---- JSON --------------------------------------------------------------------------------- */

static void json_ptr(tt__sink *k, const void *p) {
  if (p == NULL) {
    tt__sink_str(k, "null");
    return;
  }
  tt__sink_str(k, "\"");
  tt__sink_hex(k, (uintptr_t)p);
  tt__sink_str(k, "\"");
}

/* A stack as an array of frames (inline chains flattened, innermost first). */
static void json_stack(tt__sink *k, const uintptr_t *pcs, size_t n, size_t first, size_t last) {
  tt__sink_str(k, "[");
  bool any = false;
  for (size_t i = 0; i < n; i++) {
    frame f;
    frame_get(pcs[i], &f);
    bool hidden = i < first || i >= last;
    for (int j = 0; j < f.nsym; j++) {
      const tt__sym *s = &f.sym[j];
      tt__sink_str(k, any ? ",{\"pc\":" : "{\"pc\":");
      any = true;
      json_ptr(k, (void *)(f.pc - 1));
      tt__sink_str(k, ",\"func\":");
      tt__sink_json_str(k, s->func);
      tt__sink_str(k, ",\"file\":");
      tt__sink_json_str(k, s->file);
      tt__sink_str(k, ",\"line\":");
      tt__sink_u64(k, s->line > 0 ? (uint64_t)s->line : 0);
      tt__sink_str(k, ",\"module\":");
      tt__sink_json_str(k, s->module);
      tt__sink_str(k, ",\"offset\":");
      tt__sink_u64(k, f.sym[f.nsym - 1].entry ? f.pc - 1 - f.sym[f.nsym - 1].entry : 0);
      tt__sink_str(k, s->inlined ? ",\"inlined\":true" : ",\"inlined\":false");
      tt__sink_str(k, hidden ? ",\"internal\":true}" : ",\"internal\":false}");
    }
  }
  tt__sink_str(k, "]");
}

/* A coroutine's stack in JSON, its internal frames marked (rendered once per stack record). */
static void json_coro_stack(tt__sink *k, const tt__stk *stk, memo *m) {
  size_t first, last;
  visible(stk->pcs, stk->n, m, &first, &last);
  json_stack(k, stk->pcs, stk->n, first, last);
}

static const char *stack_status_string(int st) {
  switch (st) {
  case TT_STACK_NOT_STARTED:
    return "not started";
  case TT_STACK_UNAVAILABLE:
    return "unavailable";
  }
  return "ok";
}

int tt__write_json(const tt_snapshot *s, tt__sink *k) {
  int err = tt__snap_sort(s);
  if (err)
    return err;
  memo m = {0}, texts = {0};
  tt__sink_str(k, "{\"taken_ns\":");
  tt__sink_i64(k, s->taken);
  tt__sink_str(k, ",\"wall_ns\":");
  tt__sink_i64(k, s->wall_ns);
  tt__sink_str(k, ",\"self\":");
  tt__sink_u64(k, s->self);
  tt__sink_str(k, ",\"total\":");
  tt__sink_u64(k, s->n);
  tt__sink_str(k, ",\"coroutines\":[");
  for (size_t i = 0; i < s->n && !k->err; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    tt__sink_str(k, i ? ",\n{\"id\":" : "\n{\"id\":");
    tt__sink_u64(k, e->id);
    tt__sink_str(k, ",\"parent\":");
    tt__sink_u64(k, e->parent);
    tt__sink_str(k, ",\"name\":");
    tt__sink_json_str(k, e->name);
    tt__sink_str(k, ",\"labels\":{");
    for (uint32_t j = 0; e->labels && j < e->labels->n; j++) {
      if (j)
        tt__sink_str(k, ",");
      tt__sink_json_str(k, e->labels->v[j].key);
      tt__sink_str(k, ":");
      tt__sink_json_str(k, e->labels->v[j].value);
    }
    tt__sink_str(k, "},\"state\":");
    tt__sink_json_str(k, tt_state_string(e->state));
    tt__sink_str(k, ",\"wait_reason\":");
    tt__sink_json_str(k, e->state == TT_STATE_WAITING ? tt_wait_reason_string(e->reason) : NULL);
    tt__sink_str(k, ",\"wait_object\":");
    json_ptr(k, e->wait_obj);
    if (e->extra && e->extra->cases) {
      const tt_select_case *cases = e->extra->cases;
      tt__sink_str(k, ",\"select_cases\":[");
      for (size_t j = 0; j < e->extra->ncases; j++) {
        tt__sink_str(k, j ? ",{\"op\":" : "{\"op\":");
        tt__sink_json_str(k, cases[j].op == TT_SELECT_SEND ? "send" : "recv");
        tt__sink_str(k, ",\"chan\":");
        json_ptr(k, cases[j].ch);
        tt__sink_str(k, "}");
      }
      tt__sink_str(k, "]");
    }
    tt__sink_str(k, ",\"blocked_since_ns\":");
    if (e->state == TT_STATE_WAITING && e->blocked_since > 0) {
      tt__sink_i64(k, e->blocked_since);
      tt__sink_str(k, ",\"blocked_ns\":");
      tt__sink_i64(k, s->taken > e->blocked_since ? s->taken - e->blocked_since : 0);
    } else {
      tt__sink_str(k, "null,\"blocked_ns\":null");
    }
    tt__sink_str(k, ",\"worker\":");
    tt__sink_i64(k, e->worker);
    tt__sink_str(k, e->daemon ? ",\"daemon\":true" : ",\"daemon\":false");
    tt__sink_str(k, e->verdict == TT_VERDICT_DEADLOCK ? ",\"verdict\":\"deadlock\""
                    : e->verdict                      ? ",\"verdict\":\"leaked\""
                                                      : ",\"verdict\":null");
    tt__sink_str(k, ",\"stack_size\":");
    tt__sink_u64(k, e->stack_size);
    tt__sink_str(k, ",\"created_at\":");
    if (e->create_pc) {
      uintptr_t pc = (uintptr_t)e->create_pc;
      json_stack(k, &pc, 1, 0, 1);
    } else {
      tt__sink_str(k, "null");
    }
    tt__sink_str(k, ",\"creation_stack\":");
    if (e->extra && e->extra->ancestry) {
      const tt__ancestry *a = e->extra->ancestry;
      tt__sink_str(k, "{\"goroutine\":");
      tt__sink_u64(k, a->goid);
      tt__sink_str(k, ",\"stack\":");
      json_stack(k, a->pcs, a->npcs, 0, a->npcs);
      tt__sink_str(k, "}");
    } else {
      tt__sink_str(k, "null");
    }
    tt__sink_str(k, ",\"stack_status\":");
    tt__sink_json_str(k, stack_status_string(e->stack_status));
    tt__sink_str(k, ",\"stack_depth\":");
    tt__sink_u64(k, e->stack ? e->stack->depth : 0);
    tt__sink_str(k, ",\"stack\":");
    const rendered *t = e->stack ? render(&texts, e->stack, &m, json_coro_stack) : NULL;
    if (t)
      tt__sink_write(k, t->text, t->len);
    else if (e->stack)
      json_coro_stack(k, e->stack, &m);
    else
      tt__sink_str(k, "[]");
    tt__sink_str(k, "}");
  }
  tt__sink_str(k, "\n]}\n");
  memo_free(&texts, true);
  memo_free(&m, false);
  return k->err;
}
