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

void tt__frame_get(uintptr_t pc, tt__frame *f) {
  f->pc = pc;
  f->nsym = tt__symbolize(pc - 1, f->sym, (int)(sizeof f->sym / sizeof f->sym[0]));
  if (f->nsym < 1) {
    memset(&f->sym[0], 0, sizeof f->sym[0]);
    f->nsym = 1;
  }
}

bool tt__file_parsable(const char *file) {
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

static int frame_kind(const tt__frame *f) {
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

/* Per-writer memo of frame kinds, by pc. */
typedef struct kind_memo {
  uintptr_t *pc;
  uint8_t *kind;
  size_t n, cap;
} kind_memo;

static int kind_of(kind_memo *m, uintptr_t pc) {
  if (m == NULL) {
    tt__frame f;
    tt__frame_get(pc, &f);
    return frame_kind(&f);
  }
  if ((m->n + 1) * 2 > m->cap) {
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    uintptr_t *npc = calloc(ncap, sizeof *npc);
    uint8_t *nk = calloc(ncap, 1);
    if (npc == NULL || nk == NULL) {
      free(npc);
      free(nk);
      return kind_of(NULL, pc);
    }
    for (size_t i = 0; i < m->cap; i++) {
      if (m->pc[i] == 0)
        continue;
      size_t j = (m->pc[i] * 0x9e3779b97f4a7c15ull >> 20) & (ncap - 1);
      while (npc[j])
        j = (j + 1) & (ncap - 1);
      npc[j] = m->pc[i];
      nk[j] = m->kind[i];
    }
    free(m->pc);
    free(m->kind);
    m->pc = npc;
    m->kind = nk;
    m->cap = ncap;
  }
  size_t j = (pc * 0x9e3779b97f4a7c15ull >> 20) & (m->cap - 1);
  for (; m->pc[j]; j = (j + 1) & (m->cap - 1))
    if (m->pc[j] == pc)
      return m->kind[j];
  tt__frame f;
  tt__frame_get(pc, &f);
  m->pc[j] = pc;
  m->kind[j] = (uint8_t)frame_kind(&f);
  m->n++;
  return m->kind[j];
}

static void memo_free(kind_memo *m) {
  free(m->pc);
  free(m->kind);
}

/* The visible frames of a stack: tether's internal frames at the top are hidden up to the
 * outermost public call among them (the call the coroutine waits in); the trampoline at the
 * bottom is hidden. TT_TRACEBACK=system shows everything. */
static void visible(const tt__stk *stk, kind_memo *m, size_t *first, size_t *last) {
  size_t n = stk->n;
  *first = 0;
  *last = n;
  if (tt__rt.traceback >= TT__TB_SYSTEM || n == 0)
    return;
  pthread_once(&src_once, src_init);
  if (src_prefix != NULL) {
    /* Which frames are tether's is known from their files: hide the run at the top. */
    size_t r = 0, pub = SIZE_MAX;
    for (; r < n; r++) {
      int k = kind_of(m, stk->pcs[r]);
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
    while (p < n && p < 64 && kind_of(m, stk->pcs[p]) != FK_PUBLIC)
      p++;
    if (p < n && p < 64) {
      for (size_t j = p + 1; j < n; j++) {
        int k = kind_of(m, stk->pcs[j]);
        if (k == FK_PUBLIC)
          p = j;
        else if (k != FK_INTERNAL)
          break;
      }
      *first = p;
    } else {
      while (*first < n && kind_of(m, stk->pcs[*first]) == FK_INTERNAL)
        (*first)++;
      if (*first == n)
        *first = 0;
    }
  }
  /* At the bottom: the trampoline, and tether's frames below the program's last one (the run's
   * own entry under coroutine 1), as Go hides runtime.main and goexit. */
  size_t u = n;
  while (u > *first && kind_of(m, stk->pcs[u - 1]) != FK_USER)
    u--;
  if (u > *first && kind_of(m, stk->pcs[u - 1]) == FK_USER)
    *last = u;
  else if (*last > *first + 1 && kind_of(m, stk->pcs[*last - 1]) == FK_ENTRY)
    (*last)--;
}

void tt__frames_visible(const tt__stk *stk, size_t *first, size_t *last) {
  visible(stk, NULL, first, last);
}

/* ---- debug=2: tracebacks ------------------------------------------------------------------ */

static void put_file_line(tt__sink *k, const tt__sym *s) {
  tt__sink_str(k, "\t");
  tt__sink_str(k, tt__file_parsable(s->file) ? s->file : "??");
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
static int first_sym(const tt__frame *f, bool boundary) {
  if (!boundary || tt__rt.traceback >= TT__TB_SYSTEM || frame_kind(f) != FK_PUBLIC)
    return 0;
  return f->nsym - 1;
}

/* One frame, Go's way: "f(...)\n\tfile:line +0xoff\n", inlined calls first without offsets. */
static void put_frame(tt__sink *k, const tt__frame *f, bool boundary) {
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

static void put_stack(tt__sink *k, const tt__stk *stk, kind_memo *m) {
  size_t first, last;
  visible(stk, m, &first, &last);
  for (size_t i = first; i < last; i++) {
    if (stk->depth > stk->n && i == TT_STACK_KEEP / 2) {
      tt__sink_str(k, "...");
      tt__sink_u64(k, stk->depth - stk->n);
      tt__sink_str(k, " frames elided...\n");
    }
    tt__frame f;
    tt__frame_get(stk->pcs[i], &f);
    put_frame(k, &f, i == first);
  }
}

/* "created by f in goroutine P\n\tfile:line +0xoff\n" */
static void put_created(tt__sink *k, void *pc, tt_id parent) {
  if (pc == NULL)
    return;
  tt__frame f;
  tt__frame_get((uintptr_t)pc, &f);
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

/* Go's ancestor tracebacks (GODEBUG=tracebackancestors): the spawner's stack at the spawn. */
static void put_ancestry(tt__sink *k, const tt__ancestry *a, kind_memo *m) {
  for (int level = 0; a && level < tt__rt.creationstack; a = a->up, level++) {
    tt__sink_str(k, "[originating from goroutine ");
    tt__sink_u64(k, a->goid);
    tt__sink_str(k, "]:\n");
    tt__stk *stk = malloc(sizeof *stk + a->npcs * sizeof(uintptr_t));
    if (stk == NULL)
      return;
    /* From the spawning function down: the spawn call itself (tt_go) is left out too, as Go's
     * ancestor tracebacks start at the function with the go statement. */
    stk->n = stk->depth = a->npcs;
    memcpy(stk->pcs, a->pcs, a->npcs * sizeof(uintptr_t));
    size_t first, last;
    visible(stk, m, &first, &last);
    if (tt__rt.traceback < TT__TB_SYSTEM && first + 1 < last &&
        kind_of(m, stk->pcs[first]) == FK_PUBLIC)
      first++;
    for (size_t i = first; i < last; i++) {
      tt__frame f;
      tt__frame_get(stk->pcs[i], &f);
      put_frame(k, &f, false);
    }
    free(stk);
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

static void put_one(const tt_snapshot *s, const tt__snap_entry *e, tt__sink *k, kind_memo *m,
                    const char *stack_text, size_t stack_len) {
  put_header(k, s, e);
  if (e->stack_status == TT_STACK_UNAVAILABLE)
    tt__sink_str(k, "\tgoroutine running on other thread; stack unavailable\n");
  else if (stack_text)
    tt__sink_write(k, stack_text, stack_len);
  else if (e->stack)
    put_stack(k, e->stack, m);
  /* Coroutine 1 is the run's main, which Go shows without a creator. */
  if (e->id != 1 || e->parent != 0)
    put_created(k, e->create_pc, e->parent);
  put_ancestry(k, e->extra ? e->extra->ancestry : NULL, m);
}

void tt__write_stack(const tt__stk *stk, tt__sink *k) { put_stack(k, stk, NULL); }

void tt__write_trace_one(const tt_snapshot *s, const tt__snap_entry *e, tt__sink *k) {
  put_one(s, e, k, NULL, NULL, 0);
}

/* Rendered texts keyed by a pointer (a stack record, a creation pc). */
typedef struct text_memo {
  const void **key;
  char **text;
  size_t *len;
  size_t n, cap;
} text_memo;

static bool text_get(text_memo *t, const void *key, char **text, size_t *len) {
  if (t->cap == 0)
    return false;
  size_t j = ((uintptr_t)key * 0x9e3779b97f4a7c15ull >> 20) & (t->cap - 1);
  for (; t->key[j]; j = (j + 1) & (t->cap - 1))
    if (t->key[j] == key) {
      *text = t->text[j];
      *len = t->len[j];
      return true;
    }
  return false;
}

static void text_put(text_memo *t, const void *key, char *text, size_t len) {
  if ((t->n + 1) * 2 > t->cap) {
    size_t ncap = t->cap ? t->cap * 2 : 256;
    const void **nk = calloc(ncap, sizeof *nk);
    char **nt = calloc(ncap, sizeof *nt);
    size_t *nl = calloc(ncap, sizeof *nl);
    if (nk == NULL || nt == NULL || nl == NULL) {
      free(nk);
      free(nt);
      free(nl);
      free(text);
      return;
    }
    for (size_t i = 0; i < t->cap; i++) {
      if (t->key[i] == NULL)
        continue;
      size_t j = ((uintptr_t)t->key[i] * 0x9e3779b97f4a7c15ull >> 20) & (ncap - 1);
      while (nk[j])
        j = (j + 1) & (ncap - 1);
      nk[j] = t->key[i];
      nt[j] = t->text[i];
      nl[j] = t->len[i];
    }
    free(t->key);
    free(t->text);
    free(t->len);
    t->key = nk;
    t->text = nt;
    t->len = nl;
    t->cap = ncap;
  }
  size_t j = ((uintptr_t)key * 0x9e3779b97f4a7c15ull >> 20) & (t->cap - 1);
  while (t->key[j])
    j = (j + 1) & (t->cap - 1);
  t->key[j] = key;
  t->text[j] = text;
  t->len[j] = len;
  t->n++;
}

static void text_free(text_memo *t) {
  for (size_t i = 0; i < t->cap; i++)
    if (t->key[i])
      free(t->text[i]);
  free(t->key);
  free(t->text);
  free(t->len);
}

int tt__write_traces(const tt_snapshot *s, tt__sink *k) {
  int err = tt__snap_sort(s);
  if (err)
    return err;
  kind_memo m = {0};
  text_memo stacks = {0};
  for (size_t i = 0; i < s->n && !k->err; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    if (i > 0)
      tt__sink_str(k, "\n");
    char *text = NULL;
    size_t len = 0;
    if (e->stack && e->stack_status != TT_STACK_UNAVAILABLE &&
        !text_get(&stacks, e->stack, &text, &len)) {
      tt__sink r;
      tt__sink_mem(&r);
      put_stack(&r, e->stack, &m);
      if (tt__sink_take(&r, &text, &len) == 0)
        text_put(&stacks, e->stack, text, len);
      else
        text = NULL;
    }
    put_one(s, e, k, &m, text, len);
  }
  text_free(&stacks);
  memo_free(&m);
  return k->err;
}

/* ---- debug=1: counts ---------------------------------------------------------------------- */

typedef struct group {
  const tt__stk *stk;
  const tt__labels *labels;
  int64_t count;
  char *key; /* "@ 0x... 0x..." and the labels line: Go's sort key */
} group;

/* Groups s's coroutines by (stack, label set). */
static group *group_by(const tt_snapshot *s, size_t *ng) {
  size_t cap = 64, n = 0;
  while (cap < s->n * 2 + 64 && cap < ((size_t)1 << 30))
    cap *= 2;
  /* Bounded by the distinct (stack, labels) pairs, far fewer than coroutines in practice; the
   * table is sized for the worst case. */
  group *tab = calloc(cap, sizeof *tab);
  if (tab == NULL)
    return NULL;
  for (size_t i = 0; i < s->n; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    uint64_t h = ((uintptr_t)e->stack * 0x9e3779b97f4a7c15ull) ^ ((uintptr_t)e->labels * 31);
    size_t j = (h >> 17) & (cap - 1);
    for (;; j = (j + 1) & (cap - 1)) {
      if (tab[j].count == 0) {
        tab[j].stk = e->stack;
        tab[j].labels = e->labels;
        tab[j].count = 1;
        n++;
        break;
      }
      if (tab[j].stk == e->stack && tab[j].labels == e->labels) {
        tab[j].count++;
        break;
      }
    }
  }
  size_t k = 0;
  for (size_t j = 0; j < cap; j++)
    if (tab[j].count)
      tab[k++] = tab[j];
  *ng = k;
  (void)n;
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

static void put_record_frames(tt__sink *k, const tt__stk *stk, kind_memo *m) {
  size_t first, last;
  visible(stk, m, &first, &last);
  size_t cap = 0, n = 0;
  hash_line *v = NULL;
  for (size_t i = first; i < last; i++) {
    tt__frame f;
    tt__frame_get(stk->pcs[i], &f);
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
  group *g = group_by(s, &ng);
  if (g == NULL)
    return TT_ENOMEM;
  for (size_t i = 0; i < ng; i++) {
    tt__sink t;
    tt__sink_mem(&t);
    tt__sink_str(&t, "@");
    for (uint32_t j = 0; g[i].stk && j < g[i].stk->n; j++) {
      tt__sink_str(&t, " ");
      tt__sink_hex(&t, g[i].stk->pcs[j]);
    }
    if (g[i].labels) {
      tt__sink_str(&t, "\n# labels: ");
      put_labels_go(&t, g[i].labels);
    }
    if (tt__sink_take(&t, &g[i].key, NULL) != 0)
      g[i].key = NULL;
  }
  qsort(g, ng, sizeof *g, cmp_group);
  kind_memo m = {0};
  tt__sink_str(k, "goroutine profile: total ");
  tt__sink_u64(k, s->n);
  tt__sink_str(k, "\n");
  for (size_t i = 0; i < ng && !k->err; i++) {
    tt__sink_u64(k, (uint64_t)g[i].count);
    tt__sink_str(k, " ");
    tt__sink_str(k, g[i].key ? g[i].key : "@");
    tt__sink_str(k, "\n");
    if (g[i].stk)
      put_record_frames(k, g[i].stk, &m);
    tt__sink_str(k, "\n");
  }
  for (size_t i = 0; i < ng; i++)
    free(g[i].key);
  free(g);
  memo_free(&m);
  return k->err;
}

/* ---- pprof -------------------------------------------------------------------------------- */

/* Samples: one per distinct (stack, labels, state, wait reason, name). */
typedef struct pgroup {
  const tt__snap_entry *e; /* the first coroutine of the group */
  int64_t count;
} pgroup;

static bool same_sample(const tt__snap_entry *a, const tt__snap_entry *b) {
  return a->stack == b->stack && a->labels == b->labels && a->state == b->state &&
         a->reason == b->reason && a->name == b->name;
}

int tt__write_pprof(const tt_snapshot *s, tt__sink *k) {
  size_t cap = 64;
  while (cap < s->n * 2 + 64 && cap < ((size_t)1 << 30))
    cap *= 2;
  pgroup *tab = calloc(cap, sizeof *tab);
  if (tab == NULL)
    return TT_ENOMEM;
  size_t ng = 0;
  for (size_t i = 0; i < s->n; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    uint64_t h = (uintptr_t)e->stack * 0x9e3779b97f4a7c15ull;
    h ^= ((uintptr_t)e->labels * 31) ^ ((uint64_t)e->state << 40) ^ ((uint64_t)e->reason << 48);
    h ^= (uintptr_t)e->name * 0xff51afd7ed558ccdull;
    size_t j = (h >> 17) & (cap - 1);
    for (;; j = (j + 1) & (cap - 1)) {
      if (tab[j].e == NULL) {
        tab[j].e = e;
        tab[j].count = 1;
        ng++;
        break;
      }
      if (same_sample(tab[j].e, e)) {
        tab[j].count++;
        break;
      }
    }
  }
  tt__pp_sample *samples = calloc(ng ? ng : 1, sizeof *samples);
  size_t nl = 0;
  for (size_t j = 0; j < cap; j++)
    if (tab[j].e)
      nl += 3 + (tab[j].e->labels ? tab[j].e->labels->n : 0);
  tt__pp_label *labels = calloc(nl ? nl : 1, sizeof *labels);
  if (samples == NULL || labels == NULL) {
    free(tab);
    free(samples);
    free(labels);
    return TT_ENOMEM;
  }
  size_t ns = 0, li = 0;
  for (size_t j = 0; j < cap; j++) {
    const tt__snap_entry *e = tab[j].e;
    if (e == NULL)
      continue;
    tt__pp_sample *sm = &samples[ns++];
    sm->pcs = e->stack ? e->stack->pcs : NULL;
    sm->npcs = e->stack ? e->stack->n : 0;
    sm->value = tab[j].count;
    sm->labels = &labels[li];
    size_t l0 = li;
    if (e->labels)
      for (uint32_t x = 0; x < e->labels->n; x++)
        labels[li++] = (tt__pp_label){e->labels->v[x].key, e->labels->v[x].value};
    /* Ours, unless the program set a label with the same key. */
    const char *ours[3][2] = {
        {"state", e->state == TT_STATE_WAITING ? "waiting" : tt_state_string(e->state)},
        {"wait_reason", e->state == TT_STATE_WAITING ? tt_wait_reason_string(e->reason) : NULL},
        {"name", e->name}};
    for (int o = 0; o < 3; o++) {
      if (ours[o][1] == NULL)
        continue;
      bool taken = false;
      for (size_t x = l0; x < li; x++)
        taken |= strcmp(labels[x].key, ours[o][0]) == 0;
      if (!taken)
        labels[li++] = (tt__pp_label){ours[o][0], ours[o][1]};
    }
    sm->nlabels = li - l0;
  }
  tt__pp_profile p = {.sample_type = "goroutine",
                      .sample_unit = "count",
                      .period_type = "goroutine",
                      .period_unit = "count",
                      .period = 1,
                      .time_nanos = s->wall_ns,
                      .samples = samples,
                      .nsamples = ns};
  int err = tt__pprof_write(&p, k);
  free(tab);
  free(samples);
  free(labels);
  return err ? err : k->err;
}

/* ---- JSON --------------------------------------------------------------------------------- */

static void json_str(tt__sink *k, const char *p) {
  if (p == NULL) {
    tt__sink_str(k, "null");
    return;
  }
  tt__sink_str(k, "\"");
  const char *run = p;
  for (; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    tt__sink_write(k, run, (size_t)(p - run));
    run = p + 1;
    if (c == '"')
      tt__sink_str(k, "\\\"");
    else if (c == '\\')
      tt__sink_str(k, "\\\\");
    else if (c == '\n')
      tt__sink_str(k, "\\n");
    else if (c == '\t')
      tt__sink_str(k, "\\t");
    else
      tt__sink_printf(k, "\\u%04x", c);
  }
  tt__sink_write(k, run, (size_t)(p - run));
  tt__sink_str(k, "\"");
}

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
static void json_stack(tt__sink *k, const uintptr_t *pcs, size_t n, size_t first, size_t last,
                       kind_memo *m) {
  tt__sink_str(k, "[");
  bool any = false;
  for (size_t i = 0; i < n; i++) {
    tt__frame f;
    tt__frame_get(pcs[i], &f);
    bool hidden = i < first || i >= last;
    (void)m;
    for (int j = 0; j < f.nsym; j++) {
      const tt__sym *s = &f.sym[j];
      tt__sink_str(k, any ? ",{\"pc\":" : "{\"pc\":");
      any = true;
      json_ptr(k, (void *)(f.pc - 1));
      tt__sink_str(k, ",\"func\":");
      json_str(k, s->func);
      tt__sink_str(k, ",\"file\":");
      json_str(k, s->file);
      tt__sink_str(k, ",\"line\":");
      tt__sink_u64(k, s->line > 0 ? (uint64_t)s->line : 0);
      tt__sink_str(k, ",\"module\":");
      json_str(k, s->module);
      tt__sink_str(k, ",\"offset\":");
      tt__sink_u64(k, f.sym[f.nsym - 1].entry ? f.pc - 1 - f.sym[f.nsym - 1].entry : 0);
      tt__sink_str(k, s->inlined ? ",\"inlined\":true" : ",\"inlined\":false");
      tt__sink_str(k, hidden ? ",\"internal\":true}" : ",\"internal\":false}");
    }
  }
  tt__sink_str(k, "]");
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
  kind_memo m = {0};
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
    json_str(k, e->name);
    tt__sink_str(k, ",\"labels\":{");
    for (uint32_t j = 0; e->labels && j < e->labels->n; j++) {
      if (j)
        tt__sink_str(k, ",");
      json_str(k, e->labels->v[j].key);
      tt__sink_str(k, ":");
      json_str(k, e->labels->v[j].value);
    }
    tt__sink_str(k, "},\"state\":");
    json_str(k, tt_state_string(e->state));
    tt__sink_str(k, ",\"wait_reason\":");
    json_str(k, e->state == TT_STATE_WAITING ? tt_wait_reason_string(e->reason) : NULL);
    tt__sink_str(k, ",\"wait_object\":");
    json_ptr(k, e->wait_obj);
    if (e->extra && e->extra->cases) {
      const tt_select_case *cases = e->extra->cases;
      tt__sink_str(k, ",\"select_cases\":[");
      for (size_t j = 0; j < e->extra->ncases; j++) {
        tt__sink_str(k, j ? ",{\"op\":" : "{\"op\":");
        json_str(k, cases[j].op == TT_SELECT_SEND ? "send" : "recv");
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
    tt__sink_str(k, ",\"stack_size\":");
    tt__sink_u64(k, e->stack_size);
    tt__sink_str(k, ",\"created_at\":");
    if (e->create_pc) {
      uintptr_t pc = (uintptr_t)e->create_pc;
      json_stack(k, &pc, 1, 0, 1, &m);
    } else {
      tt__sink_str(k, "null");
    }
    tt__sink_str(k, ",\"creation_stack\":");
    if (e->extra && e->extra->ancestry) {
      const tt__ancestry *a = e->extra->ancestry;
      tt__sink_str(k, "{\"goroutine\":");
      tt__sink_u64(k, a->goid);
      tt__sink_str(k, ",\"stack\":");
      json_stack(k, a->pcs, a->npcs, 0, a->npcs, &m);
      tt__sink_str(k, "}");
    } else {
      tt__sink_str(k, "null");
    }
    tt__sink_str(k, ",\"stack_status\":");
    json_str(k, stack_status_string(e->stack_status));
    tt__sink_str(k, ",\"stack_depth\":");
    tt__sink_u64(k, e->stack ? e->stack->depth : 0);
    tt__sink_str(k, ",\"stack\":");
    if (e->stack) {
      size_t first, last;
      visible(e->stack, &m, &first, &last);
      json_stack(k, e->stack->pcs, e->stack->n, first, last, &m);
    } else {
      tt__sink_str(k, "[]");
    }
    tt__sink_str(k, "}");
  }
  tt__sink_str(k, "\n]}\n");
  memo_free(&m);
  return k->err;
}
