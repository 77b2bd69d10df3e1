/* SPDX-License-Identifier: MIT */
/* The .eh_frame reader: finds the FDE covering an address through the module's .eh_frame_hdr,
 * runs the call-frame program up to the address, and reduces the row to a compact rule
 * (ehframe.h). This is the unwinder's slow path; unwind.c caches what it returns.
 *
 * Modules. A table of the loaded modules (each one's executable range and its .eh_frame_hdr) is
 * built from dl_iterate_phdr in mmap'd memory and published through an atomic pointer. A lookup
 * that finds no module for an address checks the loader's add/remove counters and rebuilds the
 * table if they moved (a library dlopen'd since), publishing it with a compare-and-swap; a loser
 * of that race unmaps its copy. Replaced tables are never unmapped, since a reader may still hold
 * one: a table is only rebuilt when the module set changed, so this costs one small mapping per
 * dlopen. No lock and no malloc, so the path is async-signal-safe apart from dl_iterate_phdr
 * itself (the loader's lock: a signal that interrupts dlopen must not unwind into a new module).
 * A module dlclose'd while its frames are being unwound is not supported (its stale entry would
 * point at unmapped memory), as with libgcc's unwinder.
 *
 * Rejected: parsing every FDE of a module up front into a sorted rule array (ORC's approach) costs
 * milliseconds per large library and memory for code never unwound; parsing lazily per address
 * and caching the result (unwind.c) costs a few microseconds for each of the few thousand
 * distinct return addresses a dump sees. */
#include <link.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "diag/ehframe.h"

/* DW_EH_PE_* pointer encodings (LSB's Exception Frames). */
enum {
  PE_ABSPTR = 0x00,
  PE_ULEB128 = 0x01,
  PE_UDATA2 = 0x02,
  PE_UDATA4 = 0x03,
  PE_UDATA8 = 0x04,
  PE_SLEB128 = 0x09,
  PE_SDATA2 = 0x0a,
  PE_SDATA4 = 0x0b,
  PE_SDATA8 = 0x0c,
  PE_PCREL = 0x10,
  PE_DATAREL = 0x30,
  PE_INDIRECT = 0x80,
  PE_OMIT = 0xff,
};

/* ---- Modules ------------------------------------------------------------------------------ */

typedef struct module {
  uintptr_t lo, hi;        /* the union of its executable segments */
  const uint8_t *hdr;      /* .eh_frame_hdr, or NULL */
  const uint8_t *eh_frame; /* .eh_frame (from the header), or NULL */
  const uint8_t *table;    /* the sorted search table, or NULL when absent or unusable */
  size_t count;            /* entries in table */
  size_t entsz;            /* bytes per field of an entry (4 or 8) */
  uint8_t table_enc;
} module;

typedef struct modtab {
  unsigned long long adds, subs; /* the loader's counters when the table was built */
  size_t n, cap, bytes;
  module m[];
} modtab;

/* The published table. acquire/release: a reader that loads the pointer sees the table's
 * contents as its builder wrote them. */
static _Atomic(modtab *) g_mods;

static bool read_u8(const uint8_t **p, const uint8_t *end, uint8_t *v) {
  if (*p >= end)
    return false;
  *v = *(*p)++;
  return true;
}

static bool read_uleb(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  unsigned shift = 0;
  for (;;) {
    if (*p >= end || shift > 63)
      return false;
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    shift += 7;
    if (!(b & 0x80))
      break;
  }
  *v = r;
  return true;
}

static bool read_sleb(const uint8_t **p, const uint8_t *end, int64_t *v) {
  uint64_t r = 0;
  unsigned shift = 0;
  uint8_t b;
  do {
    if (*p >= end || shift > 63)
      return false;
    b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    shift += 7;
  } while (b & 0x80);
  if (shift < 64 && (b & 0x40))
    r |= ~(uint64_t)0 << shift;
  *v = (int64_t)r;
  return true;
}

static bool read_fixed(const uint8_t **p, const uint8_t *end, size_t n, uint64_t *v) {
  if ((size_t)(end - *p) < n)
    return false;
  uint8_t b[8];
  memcpy(b, *p, n);
  *p += n;
  switch (n) {
  case 2: {
    uint16_t x;
    memcpy(&x, b, 2);
    *v = x;
    return true;
  }
  case 4: {
    uint32_t x;
    memcpy(&x, b, 4);
    *v = x;
    return true;
  }
  default: {
    uint64_t x;
    memcpy(&x, b, 8);
    *v = x;
    return true;
  }
  }
}

/* Reads a pointer in encoding enc. datarel is the base of DW_EH_PE_datarel (0: unsupported);
 * deref: follow DW_EH_PE_indirect (false when the value is only being skipped). */
static bool read_encoded(const uint8_t **p, const uint8_t *end, uint8_t enc, uintptr_t datarel,
                         bool deref, uintptr_t *out) {
  if (enc == PE_OMIT)
    return false;
  const uint8_t *start = *p;
  uint64_t v;
  int64_t s;
  switch (enc & 0x0f) {
  case PE_ABSPTR:
    if (!read_fixed(p, end, sizeof(uintptr_t), &v))
      return false;
    break;
  case PE_ULEB128:
    if (!read_uleb(p, end, &v))
      return false;
    break;
  case PE_SLEB128:
    if (!read_sleb(p, end, &s))
      return false;
    v = (uint64_t)s;
    break;
  case PE_UDATA2:
    if (!read_fixed(p, end, 2, &v))
      return false;
    break;
  case PE_SDATA2:
    if (!read_fixed(p, end, 2, &v))
      return false;
    v = (uint64_t)(int64_t)(int16_t)v;
    break;
  case PE_UDATA4:
    if (!read_fixed(p, end, 4, &v))
      return false;
    break;
  case PE_SDATA4:
    if (!read_fixed(p, end, 4, &v))
      return false;
    v = (uint64_t)(int64_t)(int32_t)v;
    break;
  case PE_UDATA8:
  case PE_SDATA8:
    if (!read_fixed(p, end, 8, &v))
      return false;
    break;
  default:
    return false;
  }
  switch (enc & 0x70) {
  case 0:
    break;
  case PE_PCREL:
    v += (uintptr_t)start;
    break;
  case PE_DATAREL:
    if (datarel == 0 && deref)
      return false;
    v += datarel;
    break;
  default: /* textrel, funcrel, aligned: not used by x86_64 or aarch64 toolchains */
    if (deref)
      return false;
    break;
  }
  if ((enc & PE_INDIRECT) && deref) {
    if (v == 0)
      return false;
    memcpy(&v, (const void *)(uintptr_t)v, sizeof(uintptr_t));
  }
  *out = (uintptr_t)v;
  return true;
}

/* The size of one fixed-size field of encoding enc, or 0. */
static size_t enc_size(uint8_t enc) {
  switch (enc & 0x0f) {
  case PE_UDATA4:
  case PE_SDATA4:
    return 4;
  case PE_UDATA8:
  case PE_SDATA8:
    return 8;
  default:
    return 0;
  }
}

/* Fills a module entry from its program headers. */
static void module_fill(module *m, const struct dl_phdr_info *info) {
  memset(m, 0, sizeof *m);
  m->lo = UINTPTR_MAX;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
      uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
      uintptr_t hi = lo + ph->p_memsz;
      if (lo < m->lo)
        m->lo = lo;
      if (hi > m->hi)
        m->hi = hi;
    } else if (ph->p_type == PT_GNU_EH_FRAME) {
      m->hdr = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
    }
  }
  if (m->lo >= m->hi || m->hdr == NULL)
    return;
  /* .eh_frame_hdr: version, eh_frame_ptr_enc, fde_count_enc, table_enc, eh_frame_ptr,
   * fde_count, then the table of (initial location, FDE address) pairs, sorted. The header's
   * own size is not recorded: the search never reads past count entries. */
  const uint8_t *p = m->hdr, *end = m->hdr + 4 + 8 + 8;
  uint8_t ver, fp_enc, cnt_enc, tab_enc;
  uintptr_t ehf, cnt;
  if (!read_u8(&p, end, &ver) || ver != 1 || !read_u8(&p, end, &fp_enc) ||
      !read_u8(&p, end, &cnt_enc) || !read_u8(&p, end, &tab_enc) ||
      !read_encoded(&p, end, fp_enc, (uintptr_t)m->hdr, true, &ehf)) {
    m->hdr = NULL;
    return;
  }
  m->eh_frame = (const uint8_t *)ehf;
  size_t sz = enc_size(tab_enc);
  if (cnt_enc != PE_OMIT && read_encoded(&p, end, cnt_enc, (uintptr_t)m->hdr, true, &cnt) &&
      sz != 0 && (tab_enc & 0x70) == PE_DATAREL && !(tab_enc & PE_INDIRECT)) {
    m->table = p;
    m->count = cnt;
    m->entsz = sz;
    m->table_enc = tab_enc;
  }
}

struct build_arg {
  modtab *t;
  size_t n; /* modules seen (may exceed t->cap on the counting pass) */
};

static int build_cb(struct dl_phdr_info *info, size_t size, void *p) {
  struct build_arg *a = p;
  if (a->n == 0 && a->t) {
    a->t->adds = info->dlpi_adds;
    a->t->subs = info->dlpi_subs;
  }
  if (a->t && a->n < a->t->cap) {
    module_fill(&a->t->m[a->t->n], info);
    if (a->t->m[a->t->n].hi > a->t->m[a->t->n].lo)
      a->t->n++;
  }
  a->n++;
  return 0;
}

struct counters_arg {
  unsigned long long adds, subs;
};

static int counters_cb(struct dl_phdr_info *info, size_t size, void *p) {
  struct counters_arg *a = p;
  a->adds = info->dlpi_adds;
  a->subs = info->dlpi_subs;
  return 1; /* the counters are the same in every entry: one is enough */
}

/* Builds and publishes a fresh table unless the module set is unchanged since cur was built.
 * Returns the table to use. */
static modtab *modules_refresh(modtab *cur) {
  struct counters_arg c = {0, 0};
  dl_iterate_phdr(counters_cb, &c);
  if (cur && cur->adds == c.adds && cur->subs == c.subs)
    return cur;
  struct build_arg a = {NULL, 0};
  dl_iterate_phdr(build_cb, &a); /* count */
  size_t cap = a.n + 16;         /* room for modules loaded between the two passes */
  size_t bytes = sizeof(modtab) + cap * sizeof(module);
  void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED)
    return cur;
  modtab *t = mem;
  t->cap = cap;
  t->bytes = bytes;
  a = (struct build_arg){t, 0};
  dl_iterate_phdr(build_cb, &a);
  /* acq_rel: release publishes the table's contents; acquire on failure reads the winner's. */
  modtab *expected = cur;
  if (!atomic_compare_exchange_strong_explicit(&g_mods, &expected, t, memory_order_acq_rel,
                                               memory_order_acquire)) {
    munmap(mem, bytes);
    return expected;
  }
  return t;
}

static const module *module_find_in(const modtab *t, uintptr_t addr) {
  if (t == NULL)
    return NULL;
  for (size_t i = 0; i < t->n; i++)
    if (addr >= t->m[i].lo && addr < t->m[i].hi)
      return &t->m[i];
  return NULL;
}

static const module *module_find(uintptr_t addr) {
  /* acquire: pairs with the publishing CAS. */
  modtab *t = atomic_load_explicit(&g_mods, memory_order_acquire);
  const module *m = module_find_in(t, addr);
  if (m)
    return m;
  modtab *t2 = modules_refresh(t);
  return t2 == t ? NULL : module_find_in(t2, addr);
}

/* ---- CIEs and FDEs ------------------------------------------------------------------------ */

typedef struct cie {
  uint64_t code_align;
  int64_t data_align;
  uint64_t ra_col;
  uint8_t fde_enc;
  bool aug_z, signal;
  const uint8_t *insns, *end;
} cie;

/* Reads an entry's length; p is left at the CIE-id/pointer field. */
static bool entry_len(const uint8_t **p, const uint8_t **end) {
  uint32_t l32;
  memcpy(&l32, *p, 4);
  *p += 4;
  if (l32 == 0)
    return false; /* terminator */
  uint64_t len = l32;
  if (l32 == 0xffffffffu) {
    memcpy(&len, *p, 8);
    *p += 8;
  }
  if (len > ((uint64_t)1 << 32))
    return false;
  *end = *p + len;
  return true;
}

static bool cie_parse(const uint8_t *at, cie *c) {
  const uint8_t *p = at, *end;
  if (!entry_len(&p, &end))
    return false;
  uint32_t id;
  memcpy(&id, p, 4);
  p += 4;
  if (id != 0)
    return false;
  uint8_t ver;
  if (!read_u8(&p, end, &ver) || (ver != 1 && ver != 3 && ver != 4))
    return false;
  const char *aug = (const char *)p;
  while (p < end && *p)
    p++;
  if (p >= end)
    return false;
  p++;
  memset(c, 0, sizeof *c);
  c->fde_enc = PE_ABSPTR;
  if (ver == 4) {
    uint8_t asz, ssz;
    if (!read_u8(&p, end, &asz) || !read_u8(&p, end, &ssz) || asz != sizeof(uintptr_t) || ssz != 0)
      return false;
  }
  if (!read_uleb(&p, end, &c->code_align) || !read_sleb(&p, end, &c->data_align))
    return false;
  if (ver == 1) {
    uint8_t r;
    if (!read_u8(&p, end, &r))
      return false;
    c->ra_col = r;
  } else if (!read_uleb(&p, end, &c->ra_col)) {
    return false;
  }
  const uint8_t *aug_end = NULL;
  if (aug[0] == 'z') {
    uint64_t alen;
    if (!read_uleb(&p, end, &alen) || alen > (uint64_t)(end - p))
      return false;
    c->aug_z = true;
    aug_end = p + alen;
    for (const char *a = aug + 1; *a; a++) {
      uint8_t enc;
      uintptr_t skip;
      switch (*a) {
      case 'L': /* LSDA encoding: the FDE's augmentation data, skipped whole */
        if (!read_u8(&p, aug_end, &enc))
          return false;
        break;
      case 'P': /* personality routine: its encoding and the pointer, skipped */
        if (!read_u8(&p, aug_end, &enc) || !read_encoded(&p, aug_end, enc, 0, false, &skip))
          return false;
        break;
      case 'R':
        if (!read_u8(&p, aug_end, &c->fde_enc))
          return false;
        break;
      case 'S':
        c->signal = true;
        break;
      case 'B': /* aarch64: return addresses signed with the B key (stripping is key-blind) */
      case 'G': /* aarch64: MTE-tagged stack frames */
        break;
      default:
        /* Unknown: the rest of the augmentation data cannot be interpreted, but 'z' says how
         * long it is, and the instructions follow it. */
        goto done;
      }
    }
  done:
    p = aug_end;
  } else if (aug[0] != 0) {
    return false; /* "eh" and other pre-'z' augmentations: not produced for these targets */
  }
  c->insns = p;
  c->end = end;
  return true;
}

typedef struct fde {
  uintptr_t start, range;
  cie c;
  const uint8_t *insns, *end;
} fde;

/* Parses the FDE at `at` and checks that it covers addr. */
static bool fde_parse(const uint8_t *at, uintptr_t addr, fde *f) {
  const uint8_t *p = at, *end;
  if (!entry_len(&p, &end))
    return false;
  uint32_t ptr;
  memcpy(&ptr, p, 4);
  if (ptr == 0)
    return false; /* a CIE */
  const uint8_t *cie_at = p - ptr;
  p += 4;
  if (!cie_parse(cie_at, &f->c))
    return false;
  if (!read_encoded(&p, end, f->c.fde_enc, 0, true, &f->start) ||
      !read_encoded(&p, end, f->c.fde_enc & 0x0f, 0, true, &f->range))
    return false;
  if (addr < f->start || addr - f->start >= f->range)
    return false;
  if (f->c.aug_z) {
    uint64_t alen;
    if (!read_uleb(&p, end, &alen) || alen > (uint64_t)(end - p))
      return false;
    p += alen;
  }
  f->insns = p;
  f->end = end;
  return true;
}

/* Reads the search table's entry i: its initial location and FDE address. */
static void table_entry(const module *m, size_t i, uintptr_t *loc, uintptr_t *fde_at) {
  const uint8_t *p = m->table + i * 2 * m->entsz, *end = p + 2 * m->entsz;
  *loc = *fde_at = 0;
  read_encoded(&p, end, m->table_enc, (uintptr_t)m->hdr, true, loc);
  read_encoded(&p, end, m->table_enc, (uintptr_t)m->hdr, true, fde_at);
}

/* Finds the FDE covering addr in module m. */
static bool fde_find(const module *m, uintptr_t addr, fde *f) {
  if (m->table && m->count) {
    size_t lo = 0, hi = m->count; /* the answer is the last entry whose location is <= addr */
    while (hi - lo > 1) {
      size_t mid = lo + (hi - lo) / 2;
      uintptr_t loc, at;
      table_entry(m, mid, &loc, &at);
      if (loc <= addr)
        lo = mid;
      else
        hi = mid;
    }
    uintptr_t loc, at;
    table_entry(m, lo, &loc, &at);
    return loc <= addr && fde_parse((const uint8_t *)at, addr, f);
  }
  if (m->eh_frame == NULL)
    return false;
  /* No usable table: scan .eh_frame (up to its terminator) for an FDE that covers addr. */
  const uint8_t *p = m->eh_frame;
  for (;;) {
    const uint8_t *q = p, *end;
    if (!entry_len(&q, &end))
      return false;
    uint32_t id;
    memcpy(&id, q, 4);
    if (id != 0 && fde_parse(p, addr, f))
      return true;
    p = end;
  }
}

/* ---- The call-frame program ---------------------------------------------------------------- */

enum { RU_UNSPEC, RU_UNDEF, RU_SAME, RU_OFFSET, RU_VALOFF, RU_REG, RU_EXPR, RU_VALEXPR };

typedef struct col {
  uint8_t how;
  int64_t off;
} col;

/* The three columns a compact rule needs: the return address, fp and sp. */
enum { C_RA, C_FP, C_SP, NCOLS };

typedef struct row {
  uint64_t cfa_reg;
  int64_t cfa_off;
  bool cfa_expr;
  bool ra_signed; /* aarch64: toggled by DW_CFA_AARCH64_negate_ra_state */
  col c[NCOLS];
} row;

#define STATE_DEPTH 8

typedef struct interp {
  const cie *c;
  row cur, init;
  row stack[STATE_DEPTH];
  int depth;
  bool complex; /* something no compact rule can express */
} interp;

static int col_of(const interp *in, uint64_t reg) {
  if (reg == in->c->ra_col)
    return C_RA;
  if (reg == TT__UNW_FP)
    return C_FP;
  if (reg == TT__UNW_SP)
    return C_SP;
  return -1;
}

static void set_col(interp *in, uint64_t reg, uint8_t how, int64_t off) {
  int i = col_of(in, reg);
  if (i >= 0)
    in->cur.c[i] = (col){how, off};
}

/* Runs the instructions [p, end) while the location stays <= addr. Returns false on malformed
 * input. */
static bool run(interp *in, const uint8_t *p, const uint8_t *end, uintptr_t loc, uintptr_t addr) {
  const cie *c = in->c;
  while (p < end) {
    uint8_t op = *p++;
    uint64_t reg, u, delta = 0;
    int64_t s;
    uintptr_t a;
    bool advance = false;
    switch (op & 0xc0) {
    case 0x40: /* DW_CFA_advance_loc */
      delta = op & 0x3f;
      advance = true;
      break;
    case 0x80: /* DW_CFA_offset */
      if (!read_uleb(&p, end, &u))
        return false;
      set_col(in, op & 0x3f, RU_OFFSET, (int64_t)u * c->data_align);
      continue;
    case 0xc0: { /* DW_CFA_restore */
      int i = col_of(in, op & 0x3f);
      if (i >= 0)
        in->cur.c[i] = in->init.c[i];
      continue;
    }
    }
    if (!advance) {
      switch (op) {
      case 0x00: /* nop */
        break;
      case 0x01: /* set_loc */
        if (!read_encoded(&p, end, c->fde_enc, 0, true, &a))
          return false;
        if (a > addr)
          return true;
        loc = a;
        break;
      case 0x02: { /* advance_loc1 */
        uint8_t d;
        if (!read_u8(&p, end, &d))
          return false;
        delta = d;
        advance = true;
        break;
      }
      case 0x03: /* advance_loc2 */
        if (!read_fixed(&p, end, 2, &delta))
          return false;
        advance = true;
        break;
      case 0x04: /* advance_loc4 */
        if (!read_fixed(&p, end, 4, &delta))
          return false;
        advance = true;
        break;
      case 0x05: /* offset_extended */
        if (!read_uleb(&p, end, &reg) || !read_uleb(&p, end, &u))
          return false;
        set_col(in, reg, RU_OFFSET, (int64_t)u * c->data_align);
        break;
      case 0x06: { /* restore_extended */
        if (!read_uleb(&p, end, &reg))
          return false;
        int i = col_of(in, reg);
        if (i >= 0)
          in->cur.c[i] = in->init.c[i];
        break;
      }
      case 0x07: /* undefined */
        if (!read_uleb(&p, end, &reg))
          return false;
        set_col(in, reg, RU_UNDEF, 0);
        break;
      case 0x08: /* same_value */
        if (!read_uleb(&p, end, &reg))
          return false;
        set_col(in, reg, RU_SAME, 0);
        break;
      case 0x09: /* register */
        if (!read_uleb(&p, end, &reg) || !read_uleb(&p, end, &u))
          return false;
        set_col(in, reg, reg == u ? RU_SAME : RU_REG, (int64_t)u);
        break;
      case 0x0a: /* remember_state */
        if (in->depth == STATE_DEPTH) {
          in->complex = true;
          return true;
        }
        in->stack[in->depth++] = in->cur;
        break;
      case 0x0b: /* restore_state */
        if (in->depth == 0)
          return false;
        in->cur = in->stack[--in->depth];
        break;
      case 0x0c: /* def_cfa */
        if (!read_uleb(&p, end, &reg) || !read_uleb(&p, end, &u))
          return false;
        in->cur.cfa_reg = reg;
        in->cur.cfa_off = (int64_t)u;
        in->cur.cfa_expr = false;
        break;
      case 0x0d: /* def_cfa_register */
        if (!read_uleb(&p, end, &reg))
          return false;
        in->cur.cfa_reg = reg;
        break;
      case 0x0e: /* def_cfa_offset */
        if (!read_uleb(&p, end, &u))
          return false;
        in->cur.cfa_off = (int64_t)u;
        break;
      case 0x0f: /* def_cfa_expression */
        if (!read_uleb(&p, end, &u) || u > (uint64_t)(end - p))
          return false;
        p += u;
        in->cur.cfa_expr = true;
        break;
      case 0x10: /* expression */
      case 0x16: /* val_expression */
        if (!read_uleb(&p, end, &reg) || !read_uleb(&p, end, &u) || u > (uint64_t)(end - p))
          return false;
        p += u;
        set_col(in, reg, op == 0x10 ? RU_EXPR : RU_VALEXPR, 0);
        break;
      case 0x11: /* offset_extended_sf */
        if (!read_uleb(&p, end, &reg) || !read_sleb(&p, end, &s))
          return false;
        set_col(in, reg, RU_OFFSET, s * c->data_align);
        break;
      case 0x12: /* def_cfa_sf */
        if (!read_uleb(&p, end, &reg) || !read_sleb(&p, end, &s))
          return false;
        in->cur.cfa_reg = reg;
        in->cur.cfa_off = s * c->data_align;
        in->cur.cfa_expr = false;
        break;
      case 0x13: /* def_cfa_offset_sf */
        if (!read_sleb(&p, end, &s))
          return false;
        in->cur.cfa_off = s * c->data_align;
        break;
      case 0x14: /* val_offset */
        if (!read_uleb(&p, end, &reg) || !read_uleb(&p, end, &u))
          return false;
        set_col(in, reg, RU_VALOFF, (int64_t)u * c->data_align);
        break;
      case 0x15: /* val_offset_sf */
        if (!read_uleb(&p, end, &reg) || !read_sleb(&p, end, &s))
          return false;
        set_col(in, reg, RU_VALOFF, s * c->data_align);
        break;
      case 0x2d: /* aarch64: DW_CFA_AARCH64_negate_ra_state (elsewhere GNU_window_save) */
#if defined(__aarch64__)
        in->cur.ra_signed = !in->cur.ra_signed;
#else
        in->complex = true;
#endif
        break;
      case 0x2e: /* GNU_args_size: the callee pops arguments; sp-based CFAs already say so */
        if (!read_uleb(&p, end, &u))
          return false;
        break;
      case 0x2f: /* GNU_negative_offset_extended */
        if (!read_uleb(&p, end, &reg) || !read_uleb(&p, end, &u))
          return false;
        set_col(in, reg, RU_OFFSET, -(int64_t)u * c->data_align);
        break;
      default: /* vendor opcodes we do not know: the row cannot be trusted */
        in->complex = true;
        return true;
      }
    }
    if (advance) {
      uintptr_t next = loc + delta * c->code_align;
      if (next > addr)
        return true; /* the current row covers addr */
      loc = next;
    }
  }
  return true;
}

static bool fits16(int64_t off) { return off % 8 == 0 && off / 8 >= -32768 && off / 8 <= 32767; }

/* Reduces the row at addr to a rule word. */
static uint64_t reduce(const interp *in) {
  const row *r = &in->cur;
  if (in->complex || r->cfa_expr)
    return TT__RK_COMPLEX;
  uint64_t w = TT__RK_COMPACT;
  if (r->cfa_reg == TT__UNW_FP)
    w |= 1u << 2;
  else if (r->cfa_reg != TT__UNW_SP)
    return TT__RK_COMPLEX; /* DRAP and friends: a CFA based on another register */
  if (r->cfa_off < -(1 << 23) || r->cfa_off >= (1 << 23))
    return TT__RK_COMPLEX;
  w |= (uint64_t)r->cfa_off << 40;
  /* The return address. */
  const col *ra = &r->c[C_RA];
#if defined(__x86_64__)
  if (in->c->ra_col != TT__UNW_PC)
    return TT__RK_COMPLEX;
#else
  if (in->c->ra_col != 30)
    return TT__RK_COMPLEX;
#endif
  switch (ra->how) {
  case RU_UNDEF:
    return TT__RK_END; /* the outermost frame (clone, _start, tt__ctx_start) */
  case RU_OFFSET:
    if (!fits16(ra->off))
      return TT__RK_COMPLEX;
    w |= ((uint64_t)(ra->off / 8) & 0xffff) << 8;
    break;
#if defined(__aarch64__)
  case RU_UNSPEC:
  case RU_SAME:
    w |= 1u << 3; /* still in x30 */
    break;
#endif
  default:
    return TT__RK_COMPLEX;
  }
  if (r->ra_signed)
    w |= 1u << 4;
  /* fp. */
  const col *fp = &r->c[C_FP];
  switch (fp->how) {
  case RU_UNSPEC:
  case RU_SAME:
    break;
  case RU_UNDEF:
    w |= (uint64_t)TT__FP_LOST << 5;
    break;
  case RU_OFFSET:
    if (!fits16(fp->off))
      return TT__RK_COMPLEX;
    w |= (uint64_t)TT__FP_SAVED << 5;
    w |= ((uint64_t)(fp->off / 8) & 0xffff) << 24;
    break;
  default:
    return TT__RK_COMPLEX;
  }
  /* sp: by convention the CFA; anything explicit is beyond a compact rule. */
  if (r->c[C_SP].how != RU_UNSPEC && r->c[C_SP].how != RU_SAME)
    return TT__RK_COMPLEX;
  if (in->c->signal)
    w |= 1u << 7;
  return w;
}

uint64_t tt__ehf_rule(uintptr_t addr, bool *cacheable) {
  *cacheable = false;
  const module *m = module_find(addr);
  if (m == NULL)
    return TT__RK_END;
  *cacheable = true;
  fde f;
  if (m->hdr == NULL || !fde_find(m, addr, &f))
    return TT__RK_END;
  interp in;
  memset(&in, 0, sizeof in);
  in.c = &f.c;
  if (!run(&in, f.c.insns, f.c.end, 0, UINTPTR_MAX) || in.complex)
    return TT__RK_COMPLEX;
  in.init = in.cur;
  in.depth = 0;
  if (!run(&in, f.insns, f.end, f.start, addr))
    return TT__RK_COMPLEX;
  return reduce(&in);
}
