/* SPDX-License-Identifier: MIT */
/* The pprof encoder: a goroutine profile as a profile.proto message (google/pprof), encoded by
 * hand and gzip-compressed with zlib, written through a tt__sink.
 *
 * The message is streamed. The root message has no length prefix and the parsers accept its
 * fields in any order and repeated fields interleaved, so each Function, Location and Sample is
 * encoded into a small scratch buffer and written out as soon as it is complete (Go's own writer
 * does the same); only the string table, which grows as we go, and the mappings, whose
 * has_* flags are known at the end, follow the samples. Nothing is ever rewritten, so memory is
 * bounded by the distinct pcs, functions and strings, not by the output.
 *
 * Ids, all dense from 1: Mapping ids are the modules' order in dl_iterate_phdr (the executable
 * first, which is what pprof's `File:` line shows); Location ids the order in which a pc is first
 * met; Function ids the order in which a (name, file) pair is first met. Strings are interned by
 * content, so string_table[0] is "" and no string appears twice. Lookups are hash tables with
 * open addressing (pcs, strings, functions) and a binary search over the modules' sorted address
 * ranges, so the cost is linear in the input: a dump of a million coroutines reduces to a few
 * hundred distinct stacks before it reaches us, and each distinct pc is symbolized once.
 *
 * What we write for pprof (checked against what Go 1.19 writes for the same profile): a
 * Location's address is the pc minus one (inside the call instruction, as Go's runtime.Frame.PC),
 * its Lines the symbolizer's inline chain, innermost first; a frame the symbolizer cannot name
 * gets "module+0xoffset" (or "0x..." outside any module) so pprof shows something; Function's
 * system_name is its name; each Mapping carries the executable segment's range and file offset as
 * /proc/self/maps shows them, the GNU build id when the object has one, and has_functions,
 * has_filenames, has_line_numbers and has_inline_frames from what symbolization found, so that
 * `go tool pprof` trusts our names and never looks for the binary.
 *
 * Rejected: a protobuf library (protobuf-c needs generated code and a full in-memory message; the
 * subset here is five message types of varints and byte strings) and building the whole message
 * in memory before compressing it (it doubles the peak memory for nothing). */
#include <elf.h>
#include <inttypes.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef TT_HAVE_ZLIB
#include <zlib.h>
#endif

#include "diag/diag_int.h"
#include "tether/error.h"

/* profile.proto field numbers. */
enum {
  PROFILE_SAMPLE_TYPE = 1,
  PROFILE_SAMPLE = 2,
  PROFILE_MAPPING = 3,
  PROFILE_LOCATION = 4,
  PROFILE_FUNCTION = 5,
  PROFILE_STRING_TABLE = 6,
  PROFILE_TIME_NANOS = 9,
  PROFILE_PERIOD_TYPE = 11,
  PROFILE_PERIOD = 12,
  VALUETYPE_TYPE = 1,
  VALUETYPE_UNIT = 2,
  SAMPLE_LOCATION_ID = 1,
  SAMPLE_VALUE = 2,
  SAMPLE_LABEL = 3,
  LABEL_KEY = 1,
  LABEL_STR = 2,
  MAPPING_ID = 1,
  MAPPING_MEMORY_START = 2,
  MAPPING_MEMORY_LIMIT = 3,
  MAPPING_FILE_OFFSET = 4,
  MAPPING_FILENAME = 5,
  MAPPING_BUILD_ID = 6,
  MAPPING_HAS_FUNCTIONS = 7,
  MAPPING_HAS_FILENAMES = 8,
  MAPPING_HAS_LINE_NUMBERS = 9,
  MAPPING_HAS_INLINE_FRAMES = 10,
  LOCATION_ID = 1,
  LOCATION_MAPPING_ID = 2,
  LOCATION_ADDRESS = 3,
  LOCATION_LINE = 4,
  LINE_FUNCTION_ID = 1,
  LINE_LINE = 2,
  FUNCTION_ID = 1,
  FUNCTION_NAME = 2,
  FUNCTION_SYSTEM_NAME = 3,
  FUNCTION_FILENAME = 4,
};

enum { WT_VARINT = 0, WT_LEN = 2 };

#define MAX_INLINE 32                 /* frames of one inline chain we keep */
#define STAGE_SIZE ((size_t)64 << 10) /* bytes staged before the compressor (or the sink) */

/* A growing byte buffer for one message being encoded. */
typedef struct buf {
  uint8_t *p;
  size_t len, cap;
} buf;

typedef struct module {
  uintptr_t start, limit; /* the executable segment(s), page-aligned as in /proc/self/maps */
  uint64_t offset;        /* file offset of start */
  uintptr_t bias;         /* load bias, for "module+0xoffset" */
  char *name;             /* path (malloc'd) */
  char *build_id;         /* hex (malloc'd) or NULL */
  bool functions, filenames, lines, inlines;
} module;

struct range {
  uintptr_t start;
  size_t mod;
};

typedef struct str_ent {
  const char *s;
  size_t len;
  uint64_t hash;
} str_ent;

typedef struct loc_slot {
  uintptr_t pc;
  uint64_t id; /* 0: empty */
} loc_slot;

typedef struct fn_slot {
  uint64_t name, file; /* string indices */
  uint64_t id;         /* 0: empty */
} fn_slot;

/* Strings we made (fallback names) and must free at the end. */
typedef struct owned {
  struct owned *next;
  char s[];
} owned;

typedef struct enc {
  tt__sink *sink;
  int err;
  uint8_t *stage;
  size_t staged;
#ifdef TT_HAVE_ZLIB
  z_stream z;
  bool z_live;
  uint8_t *zout;
#endif
  buf msg, sub;
  /* strings: the table in order, and a hash index of it (slot: index + 1, 0 empty) */
  str_ent *strs;
  size_t nstrs, cap_strs;
  uint32_t *str_slots;
  size_t str_mask;
  /* locations by pc, functions by (name, file) */
  loc_slot *locs;
  size_t loc_mask, nlocs;
  fn_slot *fns;
  size_t fn_mask, nfns;
  /* modules in dl_iterate_phdr order (mapping id = index + 1), and their ranges sorted */
  module *mods;
  size_t nmods, cap_mods;
  struct range *by_addr;
  owned *owned;
  uint64_t *ids; /* the current sample's location ids */
  size_t cap_ids;
  uint64_t unavailable; /* the Location standing for an empty stack, once made */
} enc;

static void fail(enc *e, int err) {
  if (e->err == 0)
    e->err = err;
}

/* ---- encoding primitives -------------------------------------------------------------------- */

/* Encodes v at p (room for 10 bytes); returns its length. */
static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

static bool buf_reserve(enc *e, buf *b, size_t n) {
  if (b->len + n <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n)
    cap *= 2;
  uint8_t *p = realloc(b->p, cap);
  if (p == NULL) {
    fail(e, TT_ENOMEM);
    return false;
  }
  b->p = p;
  b->cap = cap;
  return true;
}

static void buf_varint(enc *e, buf *b, uint64_t v) {
  if (buf_reserve(e, b, 10))
    b->len += put_varint(b->p + b->len, v);
}

static void buf_bytes(enc *e, buf *b, const void *p, size_t n) {
  if (n == 0 || !buf_reserve(e, b, n))
    return;
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static void buf_tag(enc *e, buf *b, int field, int wt) {
  buf_varint(e, b, (uint64_t)field << 3 | (uint64_t)wt);
}

/* A scalar field; zero is proto3's default and is left out, as every encoder does. */
static void buf_uint(enc *e, buf *b, int field, uint64_t v) {
  if (v == 0)
    return;
  buf_tag(e, b, field, WT_VARINT);
  buf_varint(e, b, v);
}

static void buf_len(enc *e, buf *b, int field, const void *p, size_t n) {
  buf_tag(e, b, field, WT_LEN);
  buf_varint(e, b, n);
  buf_bytes(e, b, p, n);
}

static void buf_packed(enc *e, buf *b, int field, const uint64_t *v, size_t n) {
  if (n == 0)
    return;
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += varint_len(v[i]);
  buf_tag(e, b, field, WT_LEN);
  buf_varint(e, b, len);
  if (!buf_reserve(e, b, len))
    return;
  for (size_t i = 0; i < n; i++)
    buf_varint(e, b, v[i]);
}

/* ---- output: staged, then compressed or written as it is ------------------------------------ */

static void drain_stage(enc *e, bool finish) {
#ifdef TT_HAVE_ZLIB
  e->z.next_in = e->stage;
  e->z.avail_in = (uInt)e->staged;
  for (;;) {
    e->z.next_out = e->zout;
    e->z.avail_out = (uInt)STAGE_SIZE;
    int r = deflate(&e->z, finish ? Z_FINISH : Z_NO_FLUSH);
    if (r == Z_STREAM_ERROR) {
      fail(e, TT_EIO);
      break;
    }
    tt__sink_write(e->sink, e->zout, STAGE_SIZE - e->z.avail_out);
    /* Without Z_FINISH, room left over means every input byte was taken. */
    if (finish ? r == Z_STREAM_END : e->z.avail_out != 0)
      break;
  }
#else
  (void)finish;
  tt__sink_write(e->sink, e->stage, e->staged);
#endif
  e->staged = 0;
}

static void out_bytes(enc *e, const void *p, size_t n) {
  const uint8_t *q = p;
  while (n > 0) {
    if (e->staged == STAGE_SIZE)
      drain_stage(e, false);
    size_t k = STAGE_SIZE - e->staged < n ? STAGE_SIZE - e->staged : n;
    memcpy(e->stage + e->staged, q, k);
    e->staged += k;
    q += k;
    n -= k;
  }
}

/* Writes the message in e->msg as field `field` of the Profile, and empties e->msg. */
static void out_msg(enc *e, int field) {
  uint8_t hdr[20];
  size_t h = put_varint(hdr, (uint64_t)field << 3 | WT_LEN);
  h += put_varint(hdr + h, e->msg.len);
  out_bytes(e, hdr, h);
  out_bytes(e, e->msg.p, e->msg.len);
  e->msg.len = 0;
}

/* Writes a scalar field of the Profile. */
static void out_uint(enc *e, int field, uint64_t v) {
  buf_uint(e, &e->msg, field, v);
  out_bytes(e, e->msg.p, e->msg.len);
  e->msg.len = 0;
}

/* ---- strings -------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= (uint8_t)s[i];
    h *= 0x100000001b3u;
  }
  return h ^ h >> 29;
}

static uint64_t hash_word(uint64_t v) {
  v ^= v >> 33;
  v *= 0xff51afd7ed558ccdu;
  v ^= v >> 33;
  return v;
}

static bool str_grow(enc *e) {
  size_t cap = e->str_mask ? (e->str_mask + 1) * 2 : 1024;
  uint32_t *slots = calloc(cap, sizeof *slots);
  if (slots == NULL) {
    fail(e, TT_ENOMEM);
    return false;
  }
  for (size_t i = 0; i < e->nstrs; i++) {
    size_t j = e->strs[i].hash & (cap - 1);
    while (slots[j] != 0)
      j = (j + 1) & (cap - 1);
    slots[j] = (uint32_t)(i + 1);
  }
  free(e->str_slots);
  e->str_slots = slots;
  e->str_mask = cap - 1;
  return true;
}

/* The index of s in the string table, adding it if new. s must stay valid until the end of
 * tt__pprof_write (the table points at it). Returns 0 (the empty string) on failure. */
static uint64_t intern_n(enc *e, const char *s, size_t n) {
  if (e->err)
    return 0;
  if ((e->nstrs + 1) * 2 > e->str_mask + 1 && !str_grow(e))
    return 0;
  uint64_t h = hash_bytes(s, n);
  size_t j = h & e->str_mask;
  for (uint32_t k; (k = e->str_slots[j]) != 0; j = (j + 1) & e->str_mask) {
    const str_ent *x = &e->strs[k - 1];
    if (x->hash == h && x->len == n && memcmp(x->s, s, n) == 0)
      return k - 1;
  }
  if (e->nstrs == e->cap_strs) {
    size_t cap = e->cap_strs ? e->cap_strs * 2 : 256;
    str_ent *p = realloc(e->strs, cap * sizeof *p);
    if (p == NULL) {
      fail(e, TT_ENOMEM);
      return 0;
    }
    e->strs = p;
    e->cap_strs = cap;
  }
  e->strs[e->nstrs] = (str_ent){.s = s, .len = n, .hash = h};
  e->str_slots[j] = (uint32_t)(e->nstrs + 1);
  return e->nstrs++;
}

static uint64_t intern(enc *e, const char *s) { return s ? intern_n(e, s, strlen(s)) : 0; }

/* A string we format ourselves, kept until the end. */
static const char *own_printf(enc *e, const char *fmt, const char *a, uintptr_t b) {
  int n = snprintf(NULL, 0, fmt, a, b);
  owned *o = n < 0 ? NULL : malloc(sizeof *o + (size_t)n + 1);
  if (o == NULL) {
    fail(e, TT_ENOMEM);
    return "";
  }
  snprintf(o->s, (size_t)n + 1, fmt, a, b);
  o->next = e->owned;
  e->owned = o;
  return o->s;
}

/* ---- modules -------------------------------------------------------------------------------- */

static char *hex_dup(const uint8_t *p, size_t n) {
  char *s = malloc(n * 2 + 1);
  if (s == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    s[2 * i] = "0123456789abcdef"[p[i] >> 4];
    s[2 * i + 1] = "0123456789abcdef"[p[i] & 15];
  }
  s[n * 2] = '\0';
  return s;
}

/* The GNU build id from the object's notes, as hex (malloc'd), or NULL. */
static char *build_id(const struct dl_phdr_info *info) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE)
      continue;
    const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
    const uint8_t *end = p + ph->p_memsz;
    while ((size_t)(end - p) >= sizeof(ElfW(Nhdr))) {
      ElfW(Nhdr) nh;
      memcpy(&nh, p, sizeof nh);
      size_t name = (nh.n_namesz + 3) & ~(size_t)3, desc = (nh.n_descsz + 3) & ~(size_t)3;
      const uint8_t *q = p + sizeof nh;
      if ((size_t)(end - q) < name + desc)
        break;
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && memcmp(q, "GNU", 4) == 0)
        return hex_dup(q + name, nh.n_descsz);
      p = q + name + desc;
    }
  }
  return NULL;
}

static int module_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  enc *e = arg;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  module m = {.bias = info->dlpi_addr};
  bool any = false;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || ph->p_memsz == 0)
      continue;
    uintptr_t start = (info->dlpi_addr + ph->p_vaddr) & ~(page - 1);
    uintptr_t limit = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + page - 1) & ~(page - 1);
    if (!any || start < m.start) {
      m.start = start;
      m.offset = ph->p_offset & ~(uint64_t)(page - 1);
    }
    if (!any || limit > m.limit)
      m.limit = limit;
    any = true;
  }
  if (!any)
    return 0;
  const char *name = info->dlpi_name;
  char exe[4096];
  if (name == NULL || name[0] == '\0') {
    /* The executable: dl_iterate_phdr has no name for it. */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    name = exe;
  }
  if (e->nmods == e->cap_mods) {
    size_t cap = e->cap_mods ? e->cap_mods * 2 : 32;
    module *p = realloc(e->mods, cap * sizeof *p);
    if (p == NULL) {
      fail(e, TT_ENOMEM);
      return 1;
    }
    e->mods = p;
    e->cap_mods = cap;
  }
  m.name = strdup(name);
  m.build_id = build_id(info);
  if (m.name == NULL) {
    free(m.build_id);
    fail(e, TT_ENOMEM);
    return 1;
  }
  e->mods[e->nmods++] = m;
  return 0;
}

static int by_start(const void *a, const void *b) {
  uintptr_t x = ((const struct range *)a)->start, y = ((const struct range *)b)->start;
  return x < y ? -1 : x > y;
}

static void load_modules(enc *e) {
  dl_iterate_phdr(module_cb, e);
  if (e->err || e->nmods == 0)
    return;
  e->by_addr = malloc(e->nmods * sizeof *e->by_addr);
  if (e->by_addr == NULL) {
    fail(e, TT_ENOMEM);
    return;
  }
  for (size_t i = 0; i < e->nmods; i++)
    e->by_addr[i] = (struct range){.start = e->mods[i].start, .mod = i};
  qsort(e->by_addr, e->nmods, sizeof *e->by_addr, by_start);
}

/* The module whose executable range holds addr, or NULL. */
static module *module_of(enc *e, uintptr_t addr) {
  size_t lo = 0, hi = e->nmods;
  while (lo < hi) { /* the first module starting above addr */
    size_t mid = lo + (hi - lo) / 2;
    if (e->by_addr[mid].start <= addr)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0)
    return NULL;
  module *m = &e->mods[e->by_addr[lo - 1].mod];
  return addr < m->limit ? m : NULL;
}

/* ---- functions and locations ---------------------------------------------------------------- */

static bool fn_grow(enc *e) {
  size_t cap = e->fn_mask ? (e->fn_mask + 1) * 2 : 512;
  fn_slot *slots = calloc(cap, sizeof *slots);
  if (slots == NULL) {
    fail(e, TT_ENOMEM);
    return false;
  }
  for (size_t i = 0; e->fn_mask && i <= e->fn_mask; i++) {
    if (e->fns[i].id == 0)
      continue;
    size_t j = hash_word(e->fns[i].name * 0x9e3779b97f4a7c15u ^ e->fns[i].file) & (cap - 1);
    while (slots[j].id != 0)
      j = (j + 1) & (cap - 1);
    slots[j] = e->fns[i];
  }
  free(e->fns);
  e->fns = slots;
  e->fn_mask = cap - 1;
  return true;
}

/* The id of the Function (name, file) (string indices), writing it out when new. */
static uint64_t function_id(enc *e, uint64_t name, uint64_t file) {
  if (e->err)
    return 0;
  if ((e->nfns + 1) * 2 > e->fn_mask + 1 && !fn_grow(e))
    return 0;
  size_t j = hash_word(name * 0x9e3779b97f4a7c15u ^ file) & e->fn_mask;
  for (; e->fns[j].id != 0; j = (j + 1) & e->fn_mask)
    if (e->fns[j].name == name && e->fns[j].file == file)
      return e->fns[j].id;
  uint64_t id = ++e->nfns;
  e->fns[j] = (fn_slot){.name = name, .file = file, .id = id};
  buf *b = &e->msg;
  buf_uint(e, b, FUNCTION_ID, id);
  buf_uint(e, b, FUNCTION_NAME, name);
  buf_uint(e, b, FUNCTION_SYSTEM_NAME, name);
  buf_uint(e, b, FUNCTION_FILENAME, file);
  out_msg(e, PROFILE_FUNCTION);
  return id;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static bool loc_grow(enc *e) {
  size_t cap = e->loc_mask ? (e->loc_mask + 1) * 2 : 1024;
  loc_slot *slots = calloc(cap, sizeof *slots);
  if (slots == NULL) {
    fail(e, TT_ENOMEM);
    return false;
  }
  for (size_t i = 0; e->loc_mask && i <= e->loc_mask; i++) {
    if (e->locs[i].id == 0)
      continue;
    size_t j = hash_word(e->locs[i].pc) & (cap - 1);
    while (slots[j].id != 0)
      j = (j + 1) & (cap - 1);
    slots[j] = e->locs[i];
  }
  free(e->locs);
  e->locs = slots;
  e->loc_mask = cap - 1;
  return true;
}

/* The id of pc's Location, symbolizing pc and writing the Location (and any new Functions) out
 * when pc is new. */
static uint64_t location_id(enc *e, uintptr_t pc) {
  if (e->err)
    return 0;
  if ((e->nlocs + 1) * 2 > e->loc_mask + 1 && !loc_grow(e))
    return 0;
  size_t j = hash_word(pc) & e->loc_mask;
  for (; e->locs[j].id != 0; j = (j + 1) & e->loc_mask)
    if (e->locs[j].pc == pc)
      return e->locs[j].id;
  uint64_t id = ++e->nlocs;
  e->locs[j] = (loc_slot){.pc = pc, .id = id};

  /* pc is a return address (tt__unwind's convention): the call is at pc - 1, which is also the
   * address Go writes. */
  uintptr_t addr = pc ? pc - 1 : 0;
  tt__sym syms[MAX_INLINE];
  int n = tt__symbolize(addr, syms, MAX_INLINE);
  if (n < 1) {
    n = 1;
    syms[0] = (tt__sym){0};
  }
  if (n > MAX_INLINE)
    n = MAX_INLINE;
  module *m = module_of(e, addr);
  uint64_t fids[MAX_INLINE];
  for (int i = 0; i < n; i++) {
    const tt__sym *y = &syms[i];
    const char *name = y->func;
    if (name == NULL || name[0] == '\0') {
      if (y->module != NULL)
        name = own_printf(e, "%s+0x%" PRIxPTR, base_name(y->module), addr - y->module_base);
      else if (m != NULL)
        name = own_printf(e, "%s+0x%" PRIxPTR, base_name(m->name), addr - m->bias);
      else
        name = own_printf(e, "%s0x%" PRIxPTR, "", addr);
    }
    fids[i] = function_id(e, intern(e, name), intern(e, y->file));
    if (m != NULL) {
      m->functions |= y->func != NULL;
      m->filenames |= y->file != NULL;
      m->lines |= y->line > 0;
      m->inlines |= y->inlined;
    }
  }
  buf *b = &e->msg, *l = &e->sub;
  buf_uint(e, b, LOCATION_ID, id);
  buf_uint(e, b, LOCATION_MAPPING_ID, m ? (uint64_t)(m - e->mods) + 1 : 0);
  buf_uint(e, b, LOCATION_ADDRESS, addr);
  for (int i = 0; i < n; i++) {
    l->len = 0;
    buf_uint(e, l, LINE_FUNCTION_ID, fids[i]);
    buf_uint(e, l, LINE_LINE, syms[i].line > 0 ? (uint64_t)syms[i].line : 0);
    buf_len(e, b, LOCATION_LINE, l->p, l->len);
  }
  out_msg(e, PROFILE_LOCATION);
  return id;
}

/* ---- the profile ---------------------------------------------------------------------------- */

static int check(const tt__pp_profile *p) {
  if (p->nsamples > 0 && p->samples == NULL)
    return TT_EINVAL;
  for (size_t i = 0; i < p->nsamples; i++) {
    const tt__pp_sample *x = &p->samples[i];
    if ((x->npcs > 0 && x->pcs == NULL) || (x->nlabels > 0 && x->labels == NULL))
      return TT_EINVAL;
    for (size_t k = 0; k < x->nlabels; k++)
      if (x->labels[k].key == NULL)
        return TT_EINVAL;
  }
  return 0;
}

static void value_type(enc *e, int field, const char *type, const char *unit) {
  buf_uint(e, &e->msg, VALUETYPE_TYPE, intern(e, type));
  buf_uint(e, &e->msg, VALUETYPE_UNIT, intern(e, unit));
  out_msg(e, field);
}

/* pprof drops a sample without locations, and its count with it, so an empty stack (one that
 * could not be read) gets a Location of its own, with no address or mapping, whose one frame is
 * named UNAVAILABLE. */
#define UNAVAILABLE "(stack unavailable)"

static uint64_t unavailable_id(enc *e) {
  if (e->unavailable != 0 || e->err)
    return e->unavailable;
  uint64_t fid = function_id(e, intern(e, UNAVAILABLE), 0);
  uint64_t id = ++e->nlocs; /* not in the pc table: no pc maps to it */
  buf_uint(e, &e->msg, LOCATION_ID, id);
  e->sub.len = 0;
  buf_uint(e, &e->sub, LINE_FUNCTION_ID, fid);
  buf_len(e, &e->msg, LOCATION_LINE, e->sub.p, e->sub.len);
  out_msg(e, PROFILE_LOCATION);
  e->unavailable = id;
  return id;
}

static void write_sample(enc *e, const tt__pp_sample *x) {
  if (x->npcs > e->cap_ids) {
    uint64_t *p = realloc(e->ids, x->npcs * sizeof *p);
    if (p == NULL) {
      fail(e, TT_ENOMEM);
      return;
    }
    e->ids = p;
    e->cap_ids = x->npcs;
  }
  for (size_t i = 0; i < x->npcs; i++)
    e->ids[i] = location_id(e, x->pcs[i]);
  uint64_t none = x->npcs == 0 ? unavailable_id(e) : 0;
  buf *b = &e->msg, *l = &e->sub;
  if (x->npcs == 0)
    buf_packed(e, b, SAMPLE_LOCATION_ID, &none, 1);
  else
    buf_packed(e, b, SAMPLE_LOCATION_ID, e->ids, x->npcs);
  uint64_t v = (uint64_t)x->value;
  buf_packed(e, b, SAMPLE_VALUE, &v, 1);
  for (size_t k = 0; k < x->nlabels; k++) {
    l->len = 0;
    buf_uint(e, l, LABEL_KEY, intern(e, x->labels[k].key));
    buf_uint(e, l, LABEL_STR, intern(e, x->labels[k].value));
    buf_len(e, b, SAMPLE_LABEL, l->p, l->len);
  }
  out_msg(e, PROFILE_SAMPLE);
}

static void write_mappings(enc *e) {
  for (size_t i = 0; i < e->nmods; i++) {
    module *m = &e->mods[i];
    buf *b = &e->msg;
    buf_uint(e, b, MAPPING_ID, i + 1);
    buf_uint(e, b, MAPPING_MEMORY_START, m->start);
    buf_uint(e, b, MAPPING_MEMORY_LIMIT, m->limit);
    buf_uint(e, b, MAPPING_FILE_OFFSET, m->offset);
    buf_uint(e, b, MAPPING_FILENAME, intern(e, m->name));
    buf_uint(e, b, MAPPING_BUILD_ID, intern(e, m->build_id));
    buf_uint(e, b, MAPPING_HAS_FUNCTIONS, m->functions);
    buf_uint(e, b, MAPPING_HAS_FILENAMES, m->filenames);
    buf_uint(e, b, MAPPING_HAS_LINE_NUMBERS, m->lines);
    buf_uint(e, b, MAPPING_HAS_INLINE_FRAMES, m->inlines);
    out_msg(e, PROFILE_MAPPING);
  }
}

static void write_strings(enc *e) {
  for (size_t i = 0; i < e->nstrs && !e->err; i++) {
    const str_ent *x = &e->strs[i];
    uint8_t hdr[20];
    size_t h = put_varint(hdr, PROFILE_STRING_TABLE << 3 | WT_LEN);
    h += put_varint(hdr + h, x->len);
    out_bytes(e, hdr, h);
    out_bytes(e, x->s, x->len);
  }
}

static void enc_free(enc *e) {
#ifdef TT_HAVE_ZLIB
  if (e->z_live)
    deflateEnd(&e->z);
  free(e->zout);
#endif
  free(e->stage);
  free(e->msg.p);
  free(e->sub.p);
  free(e->strs);
  free(e->str_slots);
  free(e->locs);
  free(e->fns);
  for (size_t i = 0; i < e->nmods; i++) {
    free(e->mods[i].name);
    free(e->mods[i].build_id);
  }
  free(e->mods);
  free(e->by_addr);
  free(e->ids);
  while (e->owned != NULL) {
    owned *o = e->owned;
    e->owned = o->next;
    free(o);
  }
}

int tt__pprof_write(const tt__pp_profile *p, tt__sink *s) {
  if (p == NULL || s == NULL)
    return TT_EINVAL;
  int err = check(p);
  if (err != 0)
    return err;
  if (s->err)
    return s->err;
  enc e = {.sink = s};
  e.stage = malloc(STAGE_SIZE);
  if (e.stage == NULL) {
    fail(&e, TT_ENOMEM);
    goto out;
  }
#ifdef TT_HAVE_ZLIB
  /* Level 1, as Go's profile writer uses: the profile is small and the dump should be quick.
   * windowBits 15 + 16 asks for a gzip wrapper. */
  e.zout = malloc(STAGE_SIZE);
  if (e.zout == NULL) {
    fail(&e, TT_ENOMEM);
    goto out;
  }
  int zr = deflateInit2(&e.z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  if (zr != Z_OK) {
    fail(&e, zr == Z_MEM_ERROR ? TT_ENOMEM : TT_EIO);
    goto out;
  }
  e.z_live = true;
#endif
  intern_n(&e, "", 0); /* string_table[0] == "" */
  load_modules(&e);
  value_type(&e, PROFILE_SAMPLE_TYPE, p->sample_type ? p->sample_type : "goroutine",
             p->sample_unit ? p->sample_unit : "count");
  for (size_t i = 0; i < p->nsamples && !e.err && !s->err; i++)
    write_sample(&e, &p->samples[i]);
  write_mappings(&e);
  value_type(&e, PROFILE_PERIOD_TYPE, p->period_type ? p->period_type : "goroutine",
             p->period_unit ? p->period_unit : "count");
  out_uint(&e, PROFILE_PERIOD, (uint64_t)p->period);
  out_uint(&e, PROFILE_TIME_NANOS, (uint64_t)p->time_nanos);
  write_strings(&e);
  if (!e.err)
    drain_stage(&e, true);
out:
  enc_free(&e);
  return e.err ? e.err : s->err;
}
