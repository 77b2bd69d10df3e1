/* SPDX-License-Identifier: MIT */
/* The pprof encoder (src/diag/pprof.c): profiles of synthetic samples, whose pcs are return
 * addresses inside real functions of this file, read back by the real `go tool pprof` and walked
 * by a decoder of our own that checks the message's structure. */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef TT_HAVE_ZLIB
#include <zlib.h>
#endif

#include "test.h"
#include "../src/diag/diag_int.h"

/* Frames: each returns a return address inside itself (its call to pp_here), which is what an
 * unwinder stores for a frame. The empty asm after the call keeps it from being a tail call. */
__attribute__((noinline)) uintptr_t pp_here(void) {
  uintptr_t pc = (uintptr_t)__builtin_return_address(0);
  __asm__ volatile("" : "+r"(pc));
  return pc;
}

#define PP_FRAME(name)                                                                             \
  __attribute__((noinline)) uintptr_t name(void) {                                                 \
    uintptr_t pc = pp_here();                                                                      \
    __asm__ volatile("" : "+r"(pc));                                                               \
    return pc;                                                                                     \
  }
PP_FRAME(pp_frame_recv)
PP_FRAME(pp_frame_lock)
PP_FRAME(pp_frame_select)
PP_FRAME(pp_frame_sleep)
PP_FRAME(pp_frame_mid)
PP_FRAME(pp_frame_inner)
PP_FRAME(pp_frame_root)

/* ---- running go tool pprof ------------------------------------------------------------------ */

/* The go command on PATH (malloc'd), or NULL with a message saying why the caller skips. */
static char *find_go(void) {
  if (getenv("TT_TEST_EMULATOR") != NULL) {
    printf("skipped: go tool pprof checks (emulated run)\n");
    return NULL;
  }
  const char *path = getenv("PATH");
  if (path == NULL)
    path = "/usr/local/bin:/usr/bin:/bin";
  char *copy = strdup(path), *save = NULL;
  for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/go", *dir ? dir : ".");
    if (access(buf, X_OK) == 0) {
      free(copy);
      return strdup(buf);
    }
  }
  free(copy);
  /* make test installs it (scripts/install-deps): missing, the real-client check would be lost
   * silently, so it fails unless skipping is asked for. */
  if (getenv("TT_TEST_NO_CLIENTS") == NULL)
    tt_test_fail(__FILE__, __LINE__,
                 "go is not on PATH (scripts/install-deps installs golang-go; "
                 "TT_TEST_NO_CLIENTS=1 skips the real-client checks)");
  printf("skipped: go tool pprof checks (no go on PATH, TT_TEST_NO_CLIENTS set)\n");
  return NULL;
}

/* Runs `go tool pprof FLAGS... FILE` and returns its output (malloc'd); asserts it exited 0.
 * PPROF_BINARY_PATH points nowhere: pprof must not need the binary. */
static char *run_pprof(const char *go, const char *flag1, const char *flag2, const char *file) {
  char *argv[8];
  int k = 0;
  argv[k++] = (char *)go;
  argv[k++] = "tool";
  argv[k++] = "pprof";
  argv[k++] = (char *)flag1;
  if (flag2 != NULL)
    argv[k++] = (char *)flag2;
  argv[k++] = (char *)file;
  argv[k] = NULL;
  char *env[] = {"PPROF_BINARY_PATH=/nonexistent", "PPROF_TMPDIR=/tmp", NULL};
  char *out = NULL;
  int status = tt_test_spawn(argv, env, &out);
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
    tt_test_fail(__FILE__, __LINE__, "go tool pprof %s %s %s: status %d; output:\n%s", flag1,
                 flag2 ? flag2 : "", file, status, out);
  return out;
}

/* From `pprof -top` output: the flat and cum counts of the row naming fn (the last field). */
static bool top_row(const char *out, const char *fn, int64_t *flat, int64_t *cum) {
  size_t n = strlen(fn);
  for (const char *line = out; line && *line;
       line = strchr(line, '\n'), line = line ? line + 1 : 0) {
    const char *end = strchr(line, '\n');
    if (end == NULL)
      end = line + strlen(line);
    if ((size_t)(end - line) > n + 2 && memcmp(end - n, fn, n) == 0 && end[-n - 1] == ' ') {
      long long f, c;
      double p1, p2, p3;
      if (sscanf(line, " %lld %lf%% %lf%% %lld %lf%%", &f, &p1, &p2, &c, &p3) == 5) {
        *flat = f;
        *cum = c;
        return true;
      }
    }
  }
  return false;
}

/* From `pprof -traces` output: whether a trace of count `count` lists exactly the frames fns
 * (innermost first; NULL-terminated) and exactly the labels ("key:value", NULL-terminated, in
 * any order: pprof sorts them by their padded text; NULL for none). */
static bool has_trace(const char *out, int64_t count, const char *const *fns,
                      const char *const *labels) {
  const char *sep = "-----------+";
  const char *b = strstr(out, sep);
  while (b != NULL && (b = strchr(b, '\n')) != NULL) {
    b++;
    const char *next = strstr(b, sep);
    const char *end = next ? next : b + strlen(b);
    char block[8192];
    size_t len = (size_t)(end - b) < sizeof block - 1 ? (size_t)(end - b) : sizeof block - 1;
    memcpy(block, b, len);
    block[len] = '\0';
    bool ok = true, seen_count = false;
    int fi = 0, nlab = 0;
    for (char *save = NULL, *line = strtok_r(block, "\n", &save); line && ok;
         line = strtok_r(NULL, "\n", &save)) {
      char *s = line;
      while (*s == ' ')
        s++;
      if (*s == '\0')
        continue;
      if (seen_count) {
        ok = fns[fi] != NULL && strcmp(s, fns[fi]) == 0;
        fi++;
        continue;
      }
      long long c;
      int used = 0;
      char *colon = strchr(s, ':');
      if (colon == NULL && sscanf(s, "%lld %n", &c, &used) == 1 && used > 0) {
        seen_count = true;
        ok = c == count && fns[0] != NULL && strcmp(s + used, fns[0]) == 0;
        fi = 1;
        continue;
      }
      /* A label line: "      key:  value". */
      ok = colon != NULL;
      if (!ok)
        break;
      char *v = colon + 1;
      while (*v == ' ')
        v++;
      char lab[512];
      snprintf(lab, sizeof lab, "%.*s:%s", (int)(colon - s), s, v);
      bool found = false;
      for (int k = 0; labels != NULL && labels[k] != NULL; k++)
        found |= strcmp(lab, labels[k]) == 0;
      ok = found;
      nlab++;
    }
    int want_lab = 0;
    while (labels != NULL && labels[want_lab] != NULL)
      want_lab++;
    if (ok && seen_count && fns[fi] == NULL && nlab == want_lab)
      return true;
    b = next;
  }
  return false;
}

/* ---- a decoder of our own ------------------------------------------------------------------- */

typedef struct rd {
  const uint8_t *p, *end;
} rd;

static uint64_t rd_varint(rd *r) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    ASSERT(r->p < r->end);
    uint8_t c = *r->p++;
    v |= (uint64_t)(c & 0x7f) << shift;
    if (c < 0x80)
      return v;
  }
  tt_test_fail(__FILE__, __LINE__, "varint longer than 10 bytes");
}

/* The next field: its number, wire type, and its value (varint) or contents (length-delimited). */
static bool rd_field(rd *r, int *field, uint64_t *v, rd *sub) {
  if (r->p == r->end)
    return false;
  uint64_t key = rd_varint(r);
  *field = (int)(key >> 3);
  ASSERT_GT(*field, 0);
  switch (key & 7) {
  case 0:
    *v = rd_varint(r);
    *sub = (rd){0};
    return true;
  case 2: {
    uint64_t n = rd_varint(r);
    ASSERT((uint64_t)(r->end - r->p) >= n);
    *sub = (rd){r->p, r->p + n};
    r->p += n;
    *v = n;
    return true;
  }
  default:
    tt_test_fail(__FILE__, __LINE__, "unexpected wire type %d", (int)(key & 7));
  }
}

/* Appends x to the array a of n elements, doubling its room at each power of two. */
#define PUSH(a, n, x)                                                                              \
  do {                                                                                             \
    if (((n) & ((n)-1)) == 0) {                                                                    \
      (a) = realloc((a), ((n) ? 2 * (n) : 1) * sizeof *(a));                                       \
      ASSERT((a) != NULL);                                                                         \
    }                                                                                              \
    (a)[(n)++] = (x);                                                                              \
  } while (0)

/* Packed or not, a repeated integer field's values are appended to *a (n of them). */
static void rd_ints(rd *sub, uint64_t v, bool is_len, uint64_t **a, size_t *n) {
  if (!is_len) {
    PUSH(*a, *n, v);
    return;
  }
  while (sub->p < sub->end)
    PUSH(*a, *n, rd_varint(sub));
}

typedef struct d_label {
  uint64_t key, str;
} d_label;
typedef struct d_sample {
  uint64_t *locs, *values;
  size_t nlocs, nvalues;
  d_label *labels;
  size_t nlabels;
} d_sample;
typedef struct d_line {
  uint64_t fn;
  int64_t line;
} d_line;
typedef struct d_loc {
  uint64_t id, mapping, address;
  d_line *lines;
  size_t nlines;
} d_loc;
typedef struct d_fn {
  uint64_t id, name, system_name, file;
} d_fn;
typedef struct d_map {
  uint64_t id, start, limit, offset, file, build_id;
  bool has_functions, has_filenames, has_lines, has_inline;
} d_map;
typedef struct d_prof {
  char **strs;
  size_t nstrs;
  uint64_t *sample_type; /* type, unit pairs */
  size_t nsample_type;
  uint64_t period_type[2];
  int64_t period, time_nanos;
  d_sample *samples;
  size_t nsamples;
  d_loc *locs;
  size_t nlocs;
  d_fn *fns;
  size_t nfns;
  d_map *maps;
  size_t nmaps;
} d_prof;

static void decode_value_type(rd *sub, uint64_t out[2]) {
  int f;
  uint64_t v;
  rd s2;
  while (rd_field(sub, &f, &v, &s2))
    if (f == 1 || f == 2)
      out[f - 1] = v;
}

static void decode(const uint8_t *msg, size_t len, d_prof *d) {
  memset(d, 0, sizeof *d);
  rd r = {msg, msg + len}, sub, s2, s3;
  int f, g, h;
  uint64_t v, w, x;
  while (rd_field(&r, &f, &v, &sub)) {
    bool is_len = sub.p != NULL || (v == 0 && f == 6);
    switch (f) {
    case 1: {
      uint64_t vt[2] = {0, 0};
      decode_value_type(&sub, vt);
      PUSH(d->sample_type, d->nsample_type, vt[0]);
      PUSH(d->sample_type, d->nsample_type, vt[1]);
      break;
    }
    case 2: {
      d_sample s = {0};
      while (rd_field(&sub, &g, &w, &s2)) {
        if (g == 1)
          rd_ints(&s2, w, s2.p != NULL, &s.locs, &s.nlocs);
        else if (g == 2)
          rd_ints(&s2, w, s2.p != NULL, &s.values, &s.nvalues);
        else if (g == 3) {
          d_label l = {0};
          while (rd_field(&s2, &h, &x, &s3)) {
            if (h == 1)
              l.key = x;
            else if (h == 2)
              l.str = x;
            else
              tt_test_fail(__FILE__, __LINE__, "label field %d", h);
          }
          PUSH(s.labels, s.nlabels, l);
        }
      }
      PUSH(d->samples, d->nsamples, s);
      break;
    }
    case 3: {
      d_map m = {0};
      while (rd_field(&sub, &g, &w, &s2)) {
        switch (g) {
        case 1:
          m.id = w;
          break;
        case 2:
          m.start = w;
          break;
        case 3:
          m.limit = w;
          break;
        case 4:
          m.offset = w;
          break;
        case 5:
          m.file = w;
          break;
        case 6:
          m.build_id = w;
          break;
        case 7:
          m.has_functions = w;
          break;
        case 8:
          m.has_filenames = w;
          break;
        case 9:
          m.has_lines = w;
          break;
        case 10:
          m.has_inline = w;
          break;
        default:
          tt_test_fail(__FILE__, __LINE__, "mapping field %d", g);
        }
      }
      PUSH(d->maps, d->nmaps, m);
      break;
    }
    case 4: {
      d_loc l = {0};
      while (rd_field(&sub, &g, &w, &s2)) {
        if (g == 1)
          l.id = w;
        else if (g == 2)
          l.mapping = w;
        else if (g == 3)
          l.address = w;
        else if (g == 4) {
          d_line ln = {0};
          while (rd_field(&s2, &h, &x, &s3)) {
            if (h == 1)
              ln.fn = x;
            else if (h == 2)
              ln.line = (int64_t)x;
          }
          PUSH(l.lines, l.nlines, ln);
        } else
          tt_test_fail(__FILE__, __LINE__, "location field %d", g);
      }
      PUSH(d->locs, d->nlocs, l);
      break;
    }
    case 5: {
      d_fn fn = {0};
      while (rd_field(&sub, &g, &w, &s2)) {
        switch (g) {
        case 1:
          fn.id = w;
          break;
        case 2:
          fn.name = w;
          break;
        case 3:
          fn.system_name = w;
          break;
        case 4:
          fn.file = w;
          break;
        case 5:
          break;
        default:
          tt_test_fail(__FILE__, __LINE__, "function field %d", g);
        }
      }
      PUSH(d->fns, d->nfns, fn);
      break;
    }
    case 6: {
      ASSERT(is_len);
      char *s = malloc(v + 1);
      memcpy(s, sub.p, v);
      s[v] = '\0';
      PUSH(d->strs, d->nstrs, s);
      break;
    }
    case 9:
      d->time_nanos = (int64_t)v;
      break;
    case 11:
      decode_value_type(&sub, d->period_type);
      break;
    case 12:
      d->period = (int64_t)v;
      break;
    default:
      tt_test_fail(__FILE__, __LINE__, "unexpected profile field %d", f);
    }
  }
}

static void d_free(d_prof *d) {
  for (size_t i = 0; i < d->nstrs; i++)
    free(d->strs[i]);
  free(d->strs);
  free(d->sample_type);
  for (size_t i = 0; i < d->nsamples; i++) {
    free(d->samples[i].locs);
    free(d->samples[i].values);
    free(d->samples[i].labels);
  }
  free(d->samples);
  for (size_t i = 0; i < d->nlocs; i++)
    free(d->locs[i].lines);
  free(d->locs);
  free(d->fns);
  free(d->maps);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Sorted copies of the ids, asserting they are nonzero and unique. */
static uint64_t *sorted_ids(const uint64_t *ids, size_t n, const char *what) {
  uint64_t *s = malloc((n + 1) * sizeof *s);
  memcpy(s, ids, n * sizeof *s);
  qsort(s, n, sizeof *s, cmp_u64);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == 0 || (i > 0 && s[i] == s[i - 1]))
      tt_test_fail(__FILE__, __LINE__, "%s id %" PRIu64 " is zero or repeated", what, s[i]);
  }
  return s;
}

static bool has_id(const uint64_t *sorted, size_t n, uint64_t id) {
  return bsearch(&id, sorted, n, sizeof id, cmp_u64) != NULL;
}

#define STR_OK(d, i) ASSERT_LT((int64_t)(i), (int64_t)(d)->nstrs)

/* The structural checks: string_table[0] == "", every string index in range, every id nonzero
 * and unique, every referenced id defined, one value per sample, the sample and period types. */
static void check_structure(const d_prof *d) {
  ASSERT_GE(d->nstrs, 1);
  ASSERT_STR_EQ(d->strs[0], "");
  for (size_t i = 1; i < d->nstrs; i++) /* deduplicated */
    for (size_t j = i + 1; j < d->nstrs && d->nstrs < 2000; j++)
      ASSERT(strcmp(d->strs[i], d->strs[j]) != 0);
  ASSERT_EQ(d->nsample_type, 2);
  STR_OK(d, d->sample_type[0]);
  STR_OK(d, d->sample_type[1]);
  ASSERT_STR_EQ(d->strs[d->sample_type[0]], "goroutine");
  ASSERT_STR_EQ(d->strs[d->sample_type[1]], "count");
  STR_OK(d, d->period_type[0]);
  STR_OK(d, d->period_type[1]);
  ASSERT_STR_EQ(d->strs[d->period_type[0]], "goroutine");
  ASSERT_STR_EQ(d->strs[d->period_type[1]], "count");
  ASSERT_EQ(d->period, 1);

  uint64_t *ids = malloc((d->nlocs + d->nfns + d->nmaps + 1) * sizeof *ids);
  for (size_t i = 0; i < d->nmaps; i++)
    ids[i] = d->maps[i].id;
  uint64_t *maps = sorted_ids(ids, d->nmaps, "mapping");
  for (size_t i = 0; i < d->nfns; i++)
    ids[i] = d->fns[i].id;
  uint64_t *fns = sorted_ids(ids, d->nfns, "function");
  for (size_t i = 0; i < d->nlocs; i++)
    ids[i] = d->locs[i].id;
  uint64_t *locs = sorted_ids(ids, d->nlocs, "location");
  free(ids);

  for (size_t i = 0; i < d->nmaps; i++) {
    const d_map *m = &d->maps[i];
    STR_OK(d, m->file);
    STR_OK(d, m->build_id);
    ASSERT(m->start < m->limit);
  }
  for (size_t i = 0; i < d->nfns; i++) {
    STR_OK(d, d->fns[i].name);
    STR_OK(d, d->fns[i].system_name);
    STR_OK(d, d->fns[i].file);
    ASSERT_NE(d->fns[i].name, 0); /* every function has a name */
  }
  for (size_t i = 0; i < d->nlocs; i++) {
    const d_loc *l = &d->locs[i];
    ASSERT(l->mapping == 0 || has_id(maps, d->nmaps, l->mapping));
    ASSERT_GE(l->nlines, 1);
    for (size_t k = 0; k < l->nlines; k++)
      ASSERT(has_id(fns, d->nfns, l->lines[k].fn));
    if (l->mapping != 0) { /* the address lies in its mapping */
      const d_map *m = NULL;
      for (size_t k = 0; k < d->nmaps; k++)
        if (d->maps[k].id == l->mapping)
          m = &d->maps[k];
      ASSERT(l->address >= m->start && l->address < m->limit);
    }
  }
  for (size_t i = 0; i < d->nsamples; i++) {
    const d_sample *s = &d->samples[i];
    ASSERT_EQ(s->nvalues, 1);
    for (size_t k = 0; k < s->nlocs; k++)
      ASSERT(has_id(locs, d->nlocs, s->locs[k]));
    for (size_t k = 0; k < s->nlabels; k++) {
      STR_OK(d, s->labels[k].key);
      STR_OK(d, s->labels[k].str);
      ASSERT_NE(s->labels[k].key, 0);
    }
  }
  free(maps);
  free(fns);
  free(locs);
}

static const d_loc *d_loc_by_id(const d_prof *d, uint64_t id) {
  for (size_t i = 0; i < d->nlocs; i++)
    if (d->locs[i].id == id)
      return &d->locs[i];
  tt_test_fail(__FILE__, __LINE__, "no location %" PRIu64, id);
}

static const char *d_fn_name(const d_prof *d, uint64_t id) {
  for (size_t i = 0; i < d->nfns; i++)
    if (d->fns[i].id == id)
      return d->strs[d->fns[i].name];
  tt_test_fail(__FILE__, __LINE__, "no function %" PRIu64, id);
}

/* ---- writing and reading back --------------------------------------------------------------- */

#define GZIP_MAGIC(p, n) ((n) >= 2 && (p)[0] == 0x1f && (p)[1] == 0x8b)

/* Encodes p into memory; returns the bytes as written (malloc'd) and their length. */
static uint8_t *encode(const tt__pp_profile *p, size_t *len) {
  tt__sink s;
  tt__sink_mem(&s);
  ASSERT_OK(tt__pprof_write(p, &s));
  char *out = NULL;
  ASSERT_OK(tt__sink_take(&s, &out, len));
  return (uint8_t *)out;
}

/* The message inside the encoder's output: gunzipped when the library has zlib (and then it must
 * be gzip), as it is otherwise (and then it must not be). */
static uint8_t *unwrap(const uint8_t *data, size_t len, size_t *out_len) {
#ifdef TT_HAVE_ZLIB
  ASSERT(GZIP_MAGIC(data, len));
  z_stream z = {0};
  ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  size_t cap = len * 4 + 4096, n = 0;
  uint8_t *out = malloc(cap);
  z.next_in = (Bytef *)data;
  z.avail_in = (uInt)len;
  int r;
  do {
    if (n == cap)
      out = realloc(out, cap *= 2);
    z.next_out = out + n;
    z.avail_out = (uInt)(cap - n);
    r = inflate(&z, Z_NO_FLUSH);
    ASSERT(r == Z_OK || r == Z_STREAM_END || r == Z_BUF_ERROR);
    n = cap - z.avail_out;
    ASSERT(r != Z_BUF_ERROR || z.avail_out == 0);
  } while (r != Z_STREAM_END);
  ASSERT_EQ(z.avail_in, 0); /* nothing after the gzip member */
  inflateEnd(&z);
  *out_len = n;
  return out;
#else
  ASSERT(!GZIP_MAGIC(data, len));
  uint8_t *out = malloc(len + 1);
  memcpy(out, data, len);
  *out_len = len;
  return out;
#endif
}

static void encode_decode(const tt__pp_profile *p, d_prof *d, uint8_t **raw, size_t *rawlen) {
  size_t len, mlen;
  uint8_t *data = encode(p, &len);
  uint8_t *msg = unwrap(data, len, &mlen);
  decode(msg, mlen, d);
  free(msg);
  check_structure(d);
  if (raw != NULL) {
    *raw = data;
    *rawlen = len;
  } else {
    free(data);
  }
}

/* Writes p through an fd sink to a new temporary file; returns its path (malloc'd) and the bytes
 * written (malloc'd, in *data). */
static char *write_temp(const tt__pp_profile *p, uint8_t **data, size_t *len) {
  const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char *path = malloc(strlen(dir) + 32);
  sprintf(path, "%s/tt-pprof-XXXXXX", dir);
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  char scratch[512]; /* small: the sink drains many times */
  tt__sink s;
  tt__sink_fd(&s, fd, scratch, sizeof scratch);
  ASSERT_OK(tt__pprof_write(p, &s));
  ASSERT_OK(tt__sink_flush(&s));
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  *len = (size_t)st.st_size;
  *data = malloc(*len + 1);
  ASSERT_EQ(pread(fd, *data, *len, 0), (int64_t)*len);
  close(fd);
  return path;
}

/* ---- the tests ------------------------------------------------------------------------------ */

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The corpus: four stacks of this file's frames plus one with a pc in no module, with labels. */
typedef struct corpus {
  uintptr_t recv[3], lock[4], select_[2], sleep[3], nowhere[2];
  void *heap;
  tt__pp_label l_recv[2], l_lock[3], l_sleep[1];
  tt__pp_sample samples[5];
  tt__pp_profile prof;
} corpus;

static void corpus_init(corpus *c) {
  memset(c, 0, sizeof *c);
  uintptr_t recv = pp_frame_recv(), lock = pp_frame_lock(), sel = pp_frame_select();
  uintptr_t sleep = pp_frame_sleep(), mid = pp_frame_mid(), inner = pp_frame_inner();
  uintptr_t root = pp_frame_root();
  c->heap = malloc(64); /* a "pc" in no module */
  uintptr_t nowhere = (uintptr_t)c->heap + 17;
  memcpy(c->recv, (uintptr_t[]){recv, mid, root}, sizeof c->recv);
  memcpy(c->lock, (uintptr_t[]){lock, inner, mid, root}, sizeof c->lock);
  memcpy(c->select_, (uintptr_t[]){sel, root}, sizeof c->select_);
  memcpy(c->sleep, (uintptr_t[]){sleep, inner, root}, sizeof c->sleep);
  memcpy(c->nowhere, (uintptr_t[]){nowhere, root}, sizeof c->nowhere);
  c->l_recv[0] = (tt__pp_label){"state", "waiting"};
  c->l_recv[1] = (tt__pp_label){"wait", "chan receive"};
  c->l_lock[0] = (tt__pp_label){"state", "waiting"};
  c->l_lock[1] = (tt__pp_label){"wait", "sync.Mutex.Lock"};
  c->l_lock[2] = (tt__pp_label){"name", "worker"};
  c->l_sleep[0] = (tt__pp_label){"wait", "sleep"};
  c->samples[0] = (tt__pp_sample){c->recv, 3, 7, c->l_recv, 2};
  c->samples[1] = (tt__pp_sample){c->lock, 4, 3, c->l_lock, 3};
  c->samples[2] = (tt__pp_sample){c->select_, 2, 2, NULL, 0};
  c->samples[3] = (tt__pp_sample){c->sleep, 3, 1, c->l_sleep, 1};
  c->samples[4] = (tt__pp_sample){c->nowhere, 2, 4, NULL, 0};
  c->prof = (tt__pp_profile){.sample_type = "goroutine",
                             .sample_unit = "count",
                             .period_type = "goroutine",
                             .period_unit = "count",
                             .period = 1,
                             .time_nanos = wall_ns(),
                             .samples = c->samples,
                             .nsamples = 5};
}

static char nowhere_name[32];

/* Our decoder: the names of each sample's frames, the labels, the addresses, the mapping. */
TEST(pprof_structure) {
  corpus c;
  corpus_init(&c);
  d_prof d;
  encode_decode(&c.prof, &d, NULL, NULL);
  ASSERT_EQ(d.time_nanos, c.prof.time_nanos);
  ASSERT_EQ(d.nsamples, 5);
  /* One location per distinct pc: recv lock sel sleep mid inner root nowhere. */
  ASSERT_EQ(d.nlocs, 8);
  ASSERT_EQ(d.nfns, 8);
  static const char *const want[5][4] = {
      {"pp_frame_recv", "pp_frame_mid", "pp_frame_root"},
      {"pp_frame_lock", "pp_frame_inner", "pp_frame_mid", "pp_frame_root"},
      {"pp_frame_select", "pp_frame_root"},
      {"pp_frame_sleep", "pp_frame_inner", "pp_frame_root"},
      {NULL, "pp_frame_root"},
  };
  snprintf(nowhere_name, sizeof nowhere_name, "0x%" PRIxPTR, c.nowhere[0] - 1);
  for (size_t i = 0; i < 5; i++) {
    const d_sample *s = &d.samples[i];
    ASSERT_EQ(s->values[0], c.samples[i].value);
    ASSERT_EQ(s->nlocs, c.samples[i].npcs);
    for (size_t k = 0; k < s->nlocs; k++) {
      const d_loc *l = d_loc_by_id(&d, s->locs[k]);
      /* Go's address: the return address minus one. */
      ASSERT_UEQ(l->address, c.samples[i].pcs[k] - 1);
      ASSERT_EQ(l->nlines, 1);
      const char *name = d_fn_name(&d, l->lines[0].fn);
      ASSERT_STR_EQ(name, want[i][k] ? want[i][k] : nowhere_name);
      if (want[i][k] != NULL) {
        /* In the test executable's mapping, which has functions. */
        ASSERT_NE(l->mapping, 0);
        const d_map *m = &d.maps[l->mapping - 1];
        ASSERT_EQ(m->id, l->mapping);
        ASSERT(m->has_functions);
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        ASSERT_GT(n, 0);
        exe[n] = '\0';
        ASSERT_STR_EQ(d.strs[m->file], exe);
      } else {
        ASSERT_EQ(l->mapping, 0);
      }
    }
    ASSERT_EQ(s->nlabels, c.samples[i].nlabels);
    for (size_t k = 0; k < s->nlabels; k++) {
      ASSERT_STR_EQ(d.strs[s->labels[k].key], c.samples[i].labels[k].key);
      ASSERT_STR_EQ(d.strs[s->labels[k].str], c.samples[i].labels[k].value);
    }
  }
  /* The executable is mapping 1 (pprof's "File:"). */
  ASSERT_GE(d.nmaps, 1);
  ASSERT_EQ(d.maps[0].id, 1);
  /* The same pc in two samples is one location: root is shared by all five. */
  ASSERT_EQ(d.samples[0].locs[2], d.samples[4].locs[1]);
  d_free(&d);
  free(c.heap);
}

/* The real go tool pprof: -top, -traces, -raw, -tags, and its default (symbolizing) mode, which
 * must keep our names without the binary. The fd sink writes the same bytes as the memory one. */
TEST(pprof_go_tool_reads_profile) {
  corpus c;
  corpus_init(&c);
  uint8_t *fdata, *mdata;
  size_t flen, mlen;
  char *path = write_temp(&c.prof, &fdata, &flen);
  d_prof d;
  encode_decode(&c.prof, &d, &mdata, &mlen);
  d_free(&d);
  ASSERT_EQ(flen, mlen);
  ASSERT(memcmp(fdata, mdata, flen) == 0);
  free(fdata);
  free(mdata);
  snprintf(nowhere_name, sizeof nowhere_name, "0x%" PRIxPTR, c.nowhere[0] - 1);

  char *go = find_go();
  if (go == NULL) {
    unlink(path);
    free(path);
    free(c.heap);
    return;
  }
  char *top = run_pprof(go, "-top", "-symbolize=none", path);
  ASSERT_CONTAINS(top, "Type: goroutine");
  ASSERT_CONTAINS(top, "of 17 total");
  struct {
    const char *fn;
    int64_t flat, cum;
  } rows[] = {{"pp_frame_recv", 7, 7},  {"pp_frame_lock", 3, 3}, {"pp_frame_select", 2, 2},
              {"pp_frame_sleep", 1, 1}, {nowhere_name, 4, 4},    {"pp_frame_mid", 0, 10},
              {"pp_frame_inner", 0, 4}, {"pp_frame_root", 0, 17}};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    int64_t flat = -1, cum = -1;
    if (!top_row(top, rows[i].fn, &flat, &cum))
      tt_test_fail(__FILE__, __LINE__, "no row for %s in:\n%s", rows[i].fn, top);
    ASSERT_EQ(flat, rows[i].flat);
    ASSERT_EQ(cum, rows[i].cum);
  }
  free(top);

  /* Default symbolization: the mapping says it has functions, so pprof keeps our names. */
  top = run_pprof(go, "-top", NULL, path);
  int64_t flat, cum;
  ASSERT(top_row(top, "pp_frame_recv", &flat, &cum));
  ASSERT_EQ(flat, 7);
  ASSERT(top_row(top, "pp_frame_root", &flat, &cum));
  ASSERT_EQ(cum, 17);
  free(top);

  char *traces = run_pprof(go, "-traces", "-symbolize=none", path);
  ASSERT_CONTAINS(traces, "Type: goroutine");
  const char *t_recv[] = {"pp_frame_recv", "pp_frame_mid", "pp_frame_root", NULL};
  const char *l_recv[] = {"state:waiting", "wait:chan receive", NULL};
  const char *t_lock[] = {"pp_frame_lock", "pp_frame_inner", "pp_frame_mid", "pp_frame_root", NULL};
  const char *l_lock[] = {"name:worker", "state:waiting", "wait:sync.Mutex.Lock", NULL};
  const char *t_sel[] = {"pp_frame_select", "pp_frame_root", NULL};
  const char *t_sleep[] = {"pp_frame_sleep", "pp_frame_inner", "pp_frame_root", NULL};
  const char *l_sleep[] = {"wait:sleep", NULL};
  const char *t_nowhere[] = {nowhere_name, "pp_frame_root", NULL};
  if (!has_trace(traces, 7, t_recv, l_recv) || !has_trace(traces, 3, t_lock, l_lock) ||
      !has_trace(traces, 2, t_sel, NULL) || !has_trace(traces, 1, t_sleep, l_sleep) ||
      !has_trace(traces, 4, t_nowhere, NULL))
    tt_test_fail(__FILE__, __LINE__, "traces differ from the samples:\n%s", traces);
  free(traces);

  char *raw = run_pprof(go, "-raw", "-symbolize=none", path);
  ASSERT_CONTAINS(raw, "PeriodType: goroutine count");
  ASSERT_CONTAINS(raw, "Period: 1");
  ASSERT_CONTAINS(raw, "goroutine/count");
  char want[128];
  snprintf(want, sizeof want, "0x%" PRIxPTR " M=1 pp_frame_recv", c.recv[0] - 1);
  ASSERT_CONTAINS(raw, want);
  free(raw);

  char *tags = run_pprof(go, "-tags", "-symbolize=none", path);
  ASSERT_CONTAINS(tags, " wait: Total 11.0");
  ASSERT_CONTAINS(tags, "7.0 (63.64%): chan receive");
  ASSERT_CONTAINS(tags, "3.0 (27.27%): sync.Mutex.Lock");
  ASSERT_CONTAINS(tags, "1.0 ( 9.09%): sleep");
  ASSERT_CONTAINS(tags, " state: Total 10.0");
  ASSERT_CONTAINS(tags, " name: Total 3.0");
  ASSERT_CONTAINS(tags, "3.0 (  100%): worker");
  free(tags);

  unlink(path);
  free(path);
  free(go);
  free(c.heap);
}

/* No samples: still a valid profile with its types, which pprof reads. */
TEST(pprof_empty_profile) {
  tt__pp_profile p = {.sample_type = "goroutine",
                      .sample_unit = "count",
                      .period_type = "goroutine",
                      .period_unit = "count",
                      .period = 1,
                      .time_nanos = wall_ns()};
  d_prof d;
  encode_decode(&p, &d, NULL, NULL);
  ASSERT_EQ(d.nsamples, 0);
  ASSERT_EQ(d.nlocs, 0);
  ASSERT_EQ(d.nfns, 0);
  d_free(&d);
  /* NULL types are goroutine/count (check_structure asserts them). */
  tt__pp_profile q = {.period = 1};
  encode_decode(&q, &d, NULL, NULL);
  d_free(&d);

  uint8_t *data;
  size_t len;
  char *path = write_temp(&p, &data, &len);
  free(data);
  char *go = find_go();
  if (go != NULL) {
    char *top = run_pprof(go, "-top", "-symbolize=none", path);
    ASSERT_CONTAINS(top, "Type: goroutine");
    ASSERT_CONTAINS(top, "of 0 total");
    free(top);
    char *raw = run_pprof(go, "-raw", "-symbolize=none", path);
    ASSERT_CONTAINS(raw, "PeriodType: goroutine count");
    free(raw);
    free(go);
  }
  unlink(path);
  free(path);
}

/* A sample with no pcs (a coroutine whose stack could not be read) keeps its count and labels:
 * pprof drops a sample without locations, so it gets one frame, "(stack unavailable)". */
TEST(pprof_sample_without_pcs) {
  uintptr_t pcs[2] = {pp_frame_recv(), pp_frame_root()};
  tt__pp_label lab[1] = {{"state", "running"}};
  tt__pp_sample s[2] = {{NULL, 0, 5, lab, 1}, {pcs, 2, 2, NULL, 0}};
  tt__pp_profile p = {.period = 1, .time_nanos = wall_ns(), .samples = s, .nsamples = 2};
  d_prof d;
  encode_decode(&p, &d, NULL, NULL);
  ASSERT_EQ(d.nsamples, 2);
  ASSERT_EQ(d.samples[0].nlocs, 1);
  const d_loc *l = d_loc_by_id(&d, d.samples[0].locs[0]);
  ASSERT_EQ(l->address, 0);
  ASSERT_EQ(l->mapping, 0);
  ASSERT_STR_EQ(d_fn_name(&d, l->lines[0].fn), "(stack unavailable)");
  ASSERT_EQ(d.samples[0].values[0], 5);
  ASSERT_EQ(d.samples[0].nlabels, 1);
  ASSERT_EQ(d.nlocs, 3);
  d_free(&d);
  uint8_t *data;
  size_t len;
  char *path = write_temp(&p, &data, &len);
  free(data);
  char *go = find_go();
  if (go != NULL) {
    char *top = run_pprof(go, "-top", "-symbolize=none", path);
    ASSERT_CONTAINS(top, "of 7 total");
    int64_t flat, cum;
    ASSERT(top_row(top, "pp_frame_recv", &flat, &cum));
    ASSERT_EQ(flat, 2);
    ASSERT(top_row(top, "(stack unavailable)", &flat, &cum));
    ASSERT_EQ(flat, 5);
    free(top);
    char *tags = run_pprof(go, "-tags", "-symbolize=none", path);
    ASSERT_CONTAINS(tags, "5.0 (  100%): running");
    free(tags);
    free(go);
  }
  unlink(path);
  free(path);
}

/* 10,000 distinct stacks, each with a pc of its own (so 10,000 locations and functions, growing
 * every table many times) over a few shared frames: linear, so quick even under ASan. */
TEST(pprof_ten_thousand_stacks) {
  enum { N = 10000, DEPTH = 5 };
  uintptr_t frames[6] = {pp_frame_recv(),  pp_frame_lock(),  pp_frame_select(),
                         pp_frame_sleep(), pp_frame_inner(), pp_frame_mid()};
  uintptr_t root = pp_frame_root();
  char *heap = malloc(N * 16);
  uintptr_t *pcs = malloc(sizeof *pcs * N * DEPTH);
  tt__pp_sample *s = malloc(sizeof *s * N);
  tt__pp_label *labs = malloc(sizeof *labs * N);
  char(*vals)[16] = malloc(sizeof *vals * N);
  for (int i = 0; i < N; i++) {
    uintptr_t *p = pcs + (size_t)i * DEPTH;
    p[0] = (uintptr_t)heap + (uintptr_t)i * 16 + 1; /* unique, in no module */
    p[1] = frames[i % 6];
    p[2] = frames[i / 6 % 6];
    p[3] = frames[i / 36 % 6];
    p[4] = root;
    snprintf(vals[i], sizeof vals[i], "v%d", i % 100);
    labs[i] = (tt__pp_label){"bucket", vals[i]};
    s[i] = (tt__pp_sample){p, DEPTH, 1 + i % 3, &labs[i], 1};
  }
  tt__pp_profile prof = {.period = 1, .time_nanos = wall_ns(), .samples = s, .nsamples = N};
  int64_t want_total = 0;
  for (int i = 0; i < N; i++)
    want_total += s[i].value;
  d_prof d;
  uint8_t *data;
  size_t len;
  encode_decode(&prof, &d, &data, &len);
  ASSERT_EQ(d.nsamples, N);
  ASSERT_EQ(d.nlocs, N + 7);
  ASSERT_EQ(d.nfns, N + 7);
  int64_t total = 0;
  for (size_t i = 0; i < d.nsamples; i++)
    total += (int64_t)d.samples[i].values[0];
  ASSERT_EQ(total, want_total);
  /* Strings deduplicated: "" goroutine count bucket, 100 values, 7 frame names and their one
   * source file, N "0x..." names, and the mappings' files and build ids (2 per module). */
  ASSERT_LE(d.nstrs, 4 + 100 + 7 + 1 + N + 2 * d.nmaps);
  d_free(&d);
  free(data);

  char *path = write_temp(&prof, &data, &len);
  free(data);
  char *go = find_go();
  if (go != NULL) {
    char *top = run_pprof(go, "-top", "-symbolize=none", path);
    char want[64];
    snprintf(want, sizeof want, "of %lld total", (long long)want_total);
    ASSERT_CONTAINS(top, want);
    int64_t flat, cum;
    ASSERT(top_row(top, "pp_frame_root", &flat, &cum));
    ASSERT_EQ(cum, want_total);
    free(top);
    free(go);
  }
  unlink(path);
  free(path);
  free(heap);
  free(pcs);
  free(s);
  free(labs);
  free(vals);
}

/* Bad input is TT_EINVAL, never a crash; a failing descriptor is TT_EIO from the sink. */
TEST(pprof_bad_input_and_write_errors) {
  tt__sink s;
  tt__sink_mem(&s);
  tt__pp_profile p = {.period = 1, .nsamples = 1};
  ASSERT_ERR(tt__pprof_write(NULL, &s), TT_EINVAL);
  ASSERT_ERR(tt__pprof_write(&p, NULL), TT_EINVAL);
  ASSERT_ERR(tt__pprof_write(&p, &s), TT_EINVAL); /* samples NULL */
  tt__pp_sample bad = {NULL, 2, 1, NULL, 0};
  p.samples = &bad;
  ASSERT_ERR(tt__pprof_write(&p, &s), TT_EINVAL); /* pcs NULL */
  uintptr_t pc = pp_frame_root();
  bad = (tt__pp_sample){&pc, 1, 1, NULL, 1};
  ASSERT_ERR(tt__pprof_write(&p, &s), TT_EINVAL); /* labels NULL */
  tt__pp_label nokey = {NULL, "v"};
  bad.labels = &nokey;
  ASSERT_ERR(tt__pprof_write(&p, &s), TT_EINVAL); /* a label without a key */
  tt__pp_label novalue = {"k", NULL};
  bad.labels = &novalue; /* a NULL value is the empty string */
  ASSERT_OK(tt__pprof_write(&p, &s));
  char *out;
  size_t len;
  ASSERT_OK(tt__sink_take(&s, &out, &len));
  ASSERT_GT(len, 0);
  free(out);

  int fd = open("/dev/full", O_WRONLY);
  if (fd < 0) {
    printf("skipped: write errors (no /dev/full)\n");
    return;
  }
  char scratch[64];
  tt__sink_fd(&s, fd, scratch, sizeof scratch);
  int r = tt__pprof_write(&p, &s);
  ASSERT(r == TT_EIO || r == 0);
  ASSERT_ERR(tt__sink_flush(&s), TT_EIO);
  ASSERT_ERR(tt__pprof_write(&p, &s), TT_EIO); /* a failed sink stays failed */
  close(fd);
}

/* ---- The goroutineleak profile, read by go tool pprof --------------------------------------- */

static __attribute__((noinline)) void pp_leaker(void *arg) {
  int v;
  bool ok;
  tt_chan_recv(arg, &v, &ok);
  tt_chan_release(arg);
}

static int leak_profile_main(void *arg) {
  const char *path = arg;
  for (int i = 0; i < 3; i++) {
    tt_chan *ch = tt_chan_make(sizeof(int), 0);
    ASSERT_OK(tt_go_opt(pp_leaker, ch,
                        &(tt_go_opts){.share = &ch, .nshare = 1, .share_mode = TT_SHARE_MOVE},
                        NULL));
  }
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 3);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT(fd >= 0);
  ASSERT_OK(tt_leak_profile(fd, TT_DUMP_PPROF));
  close(fd);
  return 0;
}

TEST(pprof_go_tool_reads_goroutineleak) {
  char path[] = "/tmp/tt-leakprof-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  close(fd);
  tt_run_opts o = {.procs = 2};
  ASSERT_OK(tt_test_run_unchecked(leak_profile_main, path, &o, "it profiles its own leaks"));
  char *go = find_go();
  if (go == NULL) {
    unlink(path);
    return;
  }
  char *top = run_pprof(go, "-top", NULL, path);
  ASSERT_CONTAINS(top, "Type: goroutineleak");
  ASSERT_CONTAINS(top, "of 3 total");
  int64_t flat, cum;
  if (tt_test_have_dwarf()) {
    ASSERT(top_row(top, "pp_leaker", &flat, &cum));
    ASSERT_EQ(cum, 3);
  }
  free(top);
  char *raw = run_pprof(go, "-raw", NULL, path);
  ASSERT_CONTAINS(raw, "goroutineleak/count");
  free(raw);
  free(go);
  unlink(path);
}
