/* SPDX-License-Identifier: MIT */
/* The symbolizer: code addresses to functions, files and lines, for the dumps and pprof.
 *
 * Sources, best first: DWARF through elfutils' libdwfl (function, file:line, the inline chain),
 * the module's ELF symbol tables through our own reader (elfsym.c: function name and entry), then
 * module+offset. Everything is cached: results per address (the whole inline chain), symbol
 * tables and DWARF per module, strings interned. The dumper deduplicates stacks before it asks,
 * so a million coroutines sharing a few thousand pcs cost a few thousand cold lookups.
 *
 * Modules. The list comes from dl_iterate_phdr: each object's path (the main program's through
 * /proc/self/exe, which still names the running file when it has been deleted or replaced), load
 * bias, PT_LOAD ranges and in-memory build ID. It is rebuilt when the loader's adds/subs counters
 * move (checked on every cache miss: one dl_iterate_phdr call that stops at the first object), or
 * when an address falls in no known module and the counters are unavailable. A module's files
 * are opened lazily, on the first address that falls in it, and only when their build ID matches
 * the one in memory: a library replaced on disk since it was loaded gives module+offset rather
 * than another library's names. When an object has been unloaded (subs moved) the address cache
 * and the Dwfl are dropped, since their answers may name code that is gone; until the next miss
 * notices, a cached answer for an unloaded library's address may be stale (its code is gone
 * too, so nothing could be right about it).
 *
 * DWARF. One Dwfl for the process; each module is reported to it by hand (dwfl_report_elf, with
 * our own descriptor for the main program) rather than by dwfl_linux_proc_report, so that the
 * module list, the build-ID check and /proc/self/exe are shared with the symbol-table path;
 * separate debug files are found by dwfl_standard_find_debuginfo (build ID, .gnu_debuglink).
 * The inline chain: the real function containing the address (from a per-CU index of the
 * functions' ranges), then the DIEs inside it that contain the address (func_path); each
 * DW_TAG_inlined_subroutine is a frame whose name comes through its abstract origin, and whose
 * call site (DW_AT_call_file/line) is the position in the next-outer frame; the innermost frame's
 * position is the line table's. dwarf_getscopes would do the same by walking the whole CU: ~170 us
 * per cold lookup in src/sched/sched.c's CU, against ~7 us through the index.
 *
 * Locking. One mutex, sym_lock, guards everything here: the caches, the module list, the string
 * arena and libdw, which is not thread-safe. It is held across a whole lookup, libdw's parsing
 * included (milliseconds for the first address in a large module), so lookups are serialized; a
 * cached one holds it for a hash probe and a copy. Nothing here calls back into tether while
 * holding it; it is taken before the loader's lock (dl_iterate_phdr), never after.
 *
 * Allocation is plain malloc, not tt__malloc: libdw allocates with malloc regardless, every
 * failure here degrades to a poorer answer (never an error), and the fault injector's counts
 * stay those of the runtime paths the fault tests aim at. Strings live in an arena that is never
 * freed, so a returned tt__sym stays valid for the life of the process, across
 * tt__symbolize_reset too. */
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if TT_HAVE_LIBDW
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#endif

#include "diag/diag_int.h"
#include "diag/elfsym.h"
#include "internal.h"

#define MAX_CHAIN 16 /* frames cached per address: the innermost 15 and the real function */
#define MAX_DEPTH 64 /* function scopes followed down from a CU */
#define MAX_SEGS 8   /* PT_LOAD ranges kept per module; more fall back to the whole span */

/* ---- Interned strings ------------------------------------------------------------------- */

#define ARENA_CHUNK ((size_t)64 << 10)

typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  char data[];
} chunk;

static chunk *arena;         /* never freed: interned strings live as long as the process */
static const char **strings; /* open addressing, power-of-two capacity; NULL: empty */
static size_t nstrings, strings_cap;

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static char *arena_alloc(size_t n) {
  if (arena == NULL || arena->cap - arena->used < n) {
    size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
    chunk *c = malloc(sizeof *c + cap);
    if (c == NULL)
      return NULL;
    c->cap = cap;
    c->used = 0;
    if (arena != NULL && cap != ARENA_CHUNK) {
      /* A big string gets a chunk of its own behind the current one, which stays open. */
      c->next = arena->next;
      arena->next = c;
    } else {
      c->next = arena;
      arena = c;
    }
    c->used = n;
    return c->data;
  }
  char *p = arena->data + arena->used;
  arena->used += n;
  return p;
}

static bool strings_grow(void) {
  size_t cap = strings_cap ? strings_cap * 2 : 1024;
  const char **v = calloc(cap, sizeof *v);
  if (v == NULL)
    return false;
  for (size_t i = 0; i < strings_cap; i++) {
    if (strings[i] == NULL)
      continue;
    size_t j = hash_bytes(strings[i], strlen(strings[i])) & (cap - 1);
    while (v[j] != NULL)
      j = (j + 1) & (cap - 1);
    v[j] = strings[i];
  }
  free(strings);
  strings = v;
  strings_cap = cap;
  return true;
}

/* The interned copy of the n bytes at s (NULL when s is NULL or memory ran out). */
static const char *intern_n(const char *s, size_t n) {
  if (s == NULL)
    return NULL;
  if ((nstrings + 1) * 2 > strings_cap && !strings_grow())
    return NULL;
  size_t j = hash_bytes(s, n) & (strings_cap - 1);
  for (; strings[j] != NULL; j = (j + 1) & (strings_cap - 1)) {
    if (strncmp(strings[j], s, n) == 0 && strings[j][n] == '\0')
      return strings[j];
  }
  char *p = arena_alloc(n + 1);
  if (p == NULL)
    return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  strings[j] = p;
  nstrings++;
  return p;
}

static const char *intern(const char *s) { return s ? intern_n(s, strlen(s)) : NULL; }

/* A symbol-table name without the suffixes GCC gives the clones it makes of a function
 * (deep.isra.0, f.constprop.0, g.part.0, h.cold): the source's name, as DWARF would give. */
static const char *intern_sym(const char *s) {
  static const char *const clones[] = {".constprop.", ".isra.",     ".part.",
                                       ".cold",       ".lto_priv.", ".localalias"};
  if (s == NULL)
    return NULL;
  size_t n = strlen(s);
  for (size_t i = 0; i < sizeof clones / sizeof clones[0]; i++) {
    const char *p = strstr(s, clones[i]);
    if (p != NULL && p > s && (size_t)(p - s) < n)
      n = (size_t)(p - s);
  }
  return intern_n(s, n);
}

#if TT_HAVE_LIBDW
/* dir/file interned when file is relative and dir absolute (the compilation directory); else file
 * as it is. A relative dir is left out: libdw has already put it in front of the file names of its
 * line tables (Debian's libc says "./stdlib" and "./stdlib/msort.c"), and joining it again would
 * only make a wrong path. */
static const char *intern_path(const char *dir, const char *file) {
  if (file == NULL)
    return NULL;
  if (file[0] == '/' || dir == NULL || dir[0] != '/')
    return intern(file);
  size_t a = strlen(dir), b = strlen(file);
  char small[512];
  char *buf = a + b + 2 <= sizeof small ? small : malloc(a + b + 2);
  if (buf == NULL)
    return intern(file);
  memcpy(buf, dir, a);
  size_t k = a;
  if (k > 0 && buf[k - 1] != '/')
    buf[k++] = '/';
  while (file[0] == '.' && file[1] == '/')
    file += 2, b -= 2; /* "./x.c" */
  memcpy(buf + k, file, b + 1);
  const char *r = intern(buf);
  if (buf != small)
    free(buf);
  return r;
}
#endif

/* ---- Modules ----------------------------------------------------------------------------- */

typedef struct module {
  const char *path;      /* interned: what tt__sym.module says */
  const char *open_path; /* what to open: "/proc/self/exe" for the main program */
  uintptr_t bias, lo, hi;
  int nseg; /* 0: [lo, hi) is the whole test */
  uintptr_t seg[MAX_SEGS][2];
  uint8_t id[TT__BUILD_ID_MAX];
  size_t id_len;
  tt__elfsym *tab;
  bool tab_tried;
#if TT_HAVE_LIBDW
  Dwfl_Module *dw;
  bool dw_tried;
#endif
} module;

static pthread_mutex_t sym_lock = PTHREAD_MUTEX_INITIALIZER;
static module *mods; /* the last dl_iterate_phdr's objects */
static size_t nmods;
static bool mods_valid;
static unsigned long long mods_adds, mods_subs; /* the loader's counters the list reflects */
static tt__sym_stats stats;

#if TT_HAVE_LIBDW
static Dwfl *dwfl;
static bool use_dwarf = true; /* tt__symbolize_use_dwarf */
#endif

typedef struct counters {
  unsigned long long adds, subs;
  bool ok;
} counters;

static int counters_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  counters *c = arg;
  if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
    c->adds = info->dlpi_adds;
    c->subs = info->dlpi_subs;
    c->ok = true;
  }
  return 1; /* the counters are the same in every entry: one is enough */
}

typedef struct collect_ctx {
  module *v;
  size_t n, cap;
  bool oom;
} collect_ctx;

static const char *main_path(void) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0)
    return intern("/proc/self/exe");
  return intern_n(buf, (size_t)n);
}

static int collect_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  collect_ctx *c = arg;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 32;
    module *v = realloc(c->v, cap * sizeof *v);
    if (v == NULL) {
      c->oom = true;
      return 1;
    }
    c->v = v;
    c->cap = cap;
  }
  module m = {.bias = (uintptr_t)info->dlpi_addr, .lo = UINTPTR_MAX};
  bool main_prog = c->n == 0 && (info->dlpi_name == NULL || info->dlpi_name[0] == '\0');
  if (main_prog) {
    m.path = main_path();
    m.open_path = intern("/proc/self/exe");
  } else if (info->dlpi_name != NULL && info->dlpi_name[0] != '\0') {
    m.path = m.open_path = intern(info->dlpi_name);
  }
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = m.bias + (uintptr_t)ph->p_vaddr;
    if (ph->p_type == PT_LOAD && ph->p_memsz > 0) {
      uintptr_t hi = lo + (uintptr_t)ph->p_memsz;
      if (lo < m.lo)
        m.lo = lo;
      if (hi > m.hi)
        m.hi = hi;
      if (m.nseg < MAX_SEGS) {
        m.seg[m.nseg][0] = lo;
        m.seg[m.nseg][1] = hi;
      }
      m.nseg++;
    } else if (ph->p_type == PT_NOTE && m.id_len == 0) {
      /* The notes are part of a loaded segment: readable in memory. */
      m.id_len = tt__elf_note_build_id((const void *)lo, (size_t)ph->p_memsz, m.id);
    }
  }
  if (m.nseg > MAX_SEGS)
    m.nseg = 0;
  if (m.lo < m.hi && m.path != NULL)
    c->v[c->n++] = m;
  return 0;
}

static void module_drop(module *m) {
  tt__elfsym_free(m->tab);
  m->tab = NULL;
}

static void cache_clear(void);

#if TT_HAVE_LIBDW
static void cu_index_clear(void);

static void dwfl_drop(void) {
  cu_index_clear(); /* it holds libdw's Dwarf handles */
  if (dwfl != NULL)
    dwfl_end(dwfl);
  dwfl = NULL;
  for (size_t i = 0; i < nmods; i++) {
    mods[i].dw = NULL;
    mods[i].dw_tried = false;
  }
}
#endif

/* Brings the module list up to date with the loader. Modules still loaded keep what they have
 * read; an unloaded one drops the address cache and the Dwfl with it. force: rebuild even when
 * the counters say nothing changed (they were unavailable). */
static void modules_sync(bool force) {
  counters k = {0};
  dl_iterate_phdr(counters_cb, &k);
  if (mods_valid && !force && k.ok && k.adds == mods_adds && k.subs == mods_subs)
    return;
  collect_ctx c = {0};
  dl_iterate_phdr(collect_cb, &c);
  if (c.oom) {
    free(c.v);
    return; /* keep the old list */
  }
  stats.refreshes++;
  bool removed = false;
  for (size_t i = 0; i < nmods; i++) {
    module *old = &mods[i];
    size_t j = 0;
    while (j < c.n && !(c.v[j].path == old->path && c.v[j].bias == old->bias &&
                        c.v[j].lo == old->lo && c.v[j].hi == old->hi))
      j++;
    if (j == c.n) {
      removed = true;
      module_drop(old);
      continue;
    }
    c.v[j].tab = old->tab;
    c.v[j].tab_tried = old->tab_tried;
#if TT_HAVE_LIBDW
    c.v[j].dw = old->dw;
    c.v[j].dw_tried = old->dw_tried;
#endif
  }
  free(mods);
  mods = c.v;
  nmods = c.n;
  mods_valid = true;
  mods_adds = k.adds;
  mods_subs = k.subs;
  if (removed) {
    cache_clear();
#if TT_HAVE_LIBDW
    dwfl_drop(); /* its modules' ranges may now belong to new objects */
#endif
  }
  stats.modules = nmods;
}

static module *module_at(uintptr_t addr) {
  for (size_t i = 0; i < nmods; i++) {
    module *m = &mods[i];
    if (addr < m->lo || addr >= m->hi)
      continue;
    if (m->nseg == 0)
      return m;
    for (int s = 0; s < m->nseg; s++) {
      if (addr >= m->seg[s][0] && addr < m->seg[s][1])
        return m;
    }
  }
  return NULL;
}

static module *module_find(uintptr_t addr) {
  modules_sync(false);
  module *m = module_at(addr);
  if (m == NULL) {
    counters k = {0};
    dl_iterate_phdr(counters_cb, &k);
    if (!k.ok) {
      modules_sync(true);
      m = module_at(addr);
    }
  }
  return m;
}

static const tt__elfsym *module_tab(module *m) {
  if (!m->tab_tried) {
    m->tab_tried = true;
    int fd = open(m->open_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      m->tab = tt__elfsym_load(fd, m->id, m->id_len);
      close(fd);
    }
  }
  return m->tab;
}

/* ---- DWARF ------------------------------------------------------------------------------- */

#if TT_HAVE_LIBDW
/* Opens the module's file and checks it is the one loaded; -1 when it is not. */
static int module_open(const module *m) {
  int fd = open(m->open_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  if (!tt__elf_build_id_matches(fd, m->id, m->id_len)) {
    close(fd);
    return -1;
  }
  return fd;
}

static const Dwfl_Callbacks dwfl_callbacks = {
    .find_elf = dwfl_linux_proc_find_elf, /* unused: every module is reported with its file */
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
};

static Dwfl_Module *module_dw(module *m) {
  if (m->dw_tried)
    return m->dw;
  m->dw_tried = true;
  if (dwfl == NULL) {
    dwfl = dwfl_begin(&dwfl_callbacks);
    if (dwfl == NULL)
      return NULL;
  }
  int fd = module_open(m);
  if (fd < 0)
    return NULL;
  dwfl_report_begin_add(dwfl);
  /* ET_DYN: base is the load bias; ET_EXEC: ignored (its addresses are absolute). On success
   * the descriptor belongs to libdwfl. */
  m->dw = dwfl_report_elf(dwfl, m->path, m->open_path, fd, m->bias, false);
  dwfl_report_end(dwfl, NULL, NULL);
  if (m->dw == NULL)
    close(fd);
  return m->dw;
}

static const char *die_name(Dwarf_Die *die) {
  Dwarf_Attribute a;
  const char *s = NULL;
  if (dwarf_attr_integrate(die, DW_AT_name, &a) != NULL)
    s = dwarf_formstring(&a);
  if (s == NULL && dwarf_attr_integrate(die, DW_AT_linkage_name, &a) != NULL)
    s = dwarf_formstring(&a);
  if (s == NULL && dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &a) != NULL)
    s = dwarf_formstring(&a);
  return s;
}

static const char *cu_comp_dir(Dwarf_Die *die) {
  Dwarf_Die cu;
  Dwarf_Attribute a;
  if (dwarf_diecu(die, &cu, NULL, NULL) == NULL || dwarf_attr(&cu, DW_AT_comp_dir, &a) == NULL)
    return NULL;
  return dwarf_formstring(&a);
}

/* The call site of an inlined instance: *file (interned, absolute when possible) and *line. */
static void call_site(Dwarf_Die *inl, const char **file, int *line) {
  Dwarf_Attribute a;
  Dwarf_Word v;
  *file = NULL;
  *line = 0;
  if (dwarf_attr(inl, DW_AT_call_line, &a) != NULL && dwarf_formudata(&a, &v) == 0)
    *line = (int)v;
  Dwarf_Die cu;
  Dwarf_Files *files;
  size_t nfiles;
  if (dwarf_attr(inl, DW_AT_call_file, &a) == NULL || dwarf_formudata(&a, &v) != 0 ||
      dwarf_diecu(inl, &cu, NULL, NULL) == NULL || dwarf_getsrcfiles(&cu, &files, &nfiles) != 0 ||
      v >= nfiles)
    return;
  *file = intern_path(cu_comp_dir(inl), dwarf_filesrc(files, v, NULL, NULL));
}

/* The entry of the real function die contains pc (unbiased): its entry pc, or, when the
 * function is split (a .cold part) and pc lies below it, the start of pc's range. */
static uintptr_t func_entry(Dwarf_Die *die, Dwarf_Addr pc) {
  Dwarf_Addr e = 0;
  if (dwarf_entrypc(die, &e) == 0 && e <= pc)
    return (uintptr_t)e;
  Dwarf_Addr base, start, end;
  ptrdiff_t off = 0;
  while ((off = dwarf_ranges(die, off, &base, &start, &end)) > 0) {
    if (pc >= start && pc < end)
      return (uintptr_t)start;
  }
  return 0;
}

static bool resolve_dwsym(module *m, uintptr_t addr, tt__sym *out);

/* ---- Per-CU function index ---- */

/* A CU's real functions by address: one entry per range of each subprogram with code, sorted,
 * built the first time an address falls in the CU. A lookup then binary-searches it and descends
 * from one function, where a walk from the CU would step over every top-level DIE (thousands of
 * declarations and types in a CU that includes internal.h: ~60 us per cold lookup, against ~10). */
typedef struct fent {
  Dwarf_Addr lo, hi;
  Dwarf_Off off; /* the subprogram DIE */
} fent;

typedef struct cu_index {
  const Dwarf *dbg; /* NULL: empty slot */
  Dwarf_Off cu;
  fent *v;
  size_t n;
} cu_index;

static cu_index *cuix; /* open addressing by (dbg, cu offset), power-of-two capacity */
static size_t ncuix, cuix_cap;

static void cu_index_clear(void) {
  for (size_t i = 0; i < cuix_cap; i++)
    free(cuix[i].v);
  free(cuix);
  cuix = NULL;
  ncuix = cuix_cap = 0;
}

static size_t cuix_slot(const Dwarf *dbg, Dwarf_Off cu, size_t cap) {
  uint64_t h = ((uint64_t)(uintptr_t)dbg ^ (cu * 0x9E3779B97F4A7C15ull)) * 0xff51afd7ed558ccdull;
  return (size_t)(h >> 32) & (cap - 1);
}

typedef struct fvec {
  fent *v;
  size_t n, cap;
  bool oom;
} fvec;

/* Whether DIEs of this kind may hold functions without having addresses of their own (C++
 * namespaces and classes, Fortran modules): searched through rather than tested. */
static bool is_container(int tag) {
  return tag == DW_TAG_namespace || tag == DW_TAG_module || tag == DW_TAG_class_type ||
         tag == DW_TAG_structure_type || tag == DW_TAG_union_type;
}

static void index_add(fvec *f, Dwarf_Die *parent, int level) {
  Dwarf_Die child;
  if (level > 16 || dwarf_child(parent, &child) != 0)
    return;
  do {
    int tag = dwarf_tag(&child);
    if (is_container(tag)) {
      index_add(f, &child, level + 1);
      continue;
    }
    if (tag != DW_TAG_subprogram)
      continue;
    Dwarf_Addr base, lo, hi;
    ptrdiff_t off = 0;
    while ((off = dwarf_ranges(&child, off, &base, &lo, &hi)) > 0) {
      if (lo >= hi)
        continue;
      if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        fent *v = realloc(f->v, cap * sizeof *v);
        if (v == NULL) {
          f->oom = true;
          return;
        }
        f->v = v;
        f->cap = cap;
      }
      f->v[f->n++] = (fent){.lo = lo, .hi = hi, .off = dwarf_dieoffset(&child)};
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

static int fent_cmp(const void *a, const void *b) {
  const fent *x = a, *y = b;
  return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* The index of the CU whose DIE is cu (built on first use); NULL when out of memory. */
static const cu_index *cu_index_get(Dwarf_Die *cu) {
  Dwarf *dbg = dwarf_cu_getdwarf(cu->cu);
  Dwarf_Off off = dwarf_dieoffset(cu);
  if (cuix_cap > 0) {
    for (size_t j = cuix_slot(dbg, off, cuix_cap); cuix[j].dbg != NULL;
         j = (j + 1) & (cuix_cap - 1)) {
      if (cuix[j].dbg == dbg && cuix[j].cu == off)
        return &cuix[j];
    }
  }
  if ((ncuix + 1) * 2 > cuix_cap) {
    size_t cap = cuix_cap ? cuix_cap * 2 : 64;
    cu_index *v = calloc(cap, sizeof *v);
    if (v == NULL)
      return NULL;
    for (size_t i = 0; i < cuix_cap; i++) {
      if (cuix[i].dbg == NULL)
        continue;
      size_t j = cuix_slot(cuix[i].dbg, cuix[i].cu, cap);
      while (v[j].dbg != NULL)
        j = (j + 1) & (cap - 1);
      v[j] = cuix[i];
    }
    free(cuix);
    cuix = v;
    cuix_cap = cap;
  }
  fvec f = {0};
  index_add(&f, cu, 0);
  if (f.oom) {
    free(f.v);
    return NULL;
  }
  qsort(f.v, f.n, sizeof *f.v, fent_cmp);
  size_t j = cuix_slot(dbg, off, cuix_cap);
  while (cuix[j].dbg != NULL)
    j = (j + 1) & (cuix_cap - 1);
  cuix[j] = (cu_index){.dbg = dbg, .cu = off, .v = f.v, .n = f.n};
  ncuix++;
  return &cuix[j];
}

/* The real function containing pc in the CU cu, into *fn. */
static bool cu_func(Dwarf_Die *cu, Dwarf_Addr pc, Dwarf_Die *fn) {
  const cu_index *x = cu_index_get(cu);
  if (x == NULL || x->n == 0 || pc < x->v[0].lo)
    return false;
  size_t lo = 0, hi = x->n;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (x->v[mid].lo <= pc)
      lo = mid;
    else
      hi = mid;
  }
  if (pc >= x->v[lo].hi)
    return false;
  return dwarf_offdie(dwarf_cu_getdwarf(cu->cu), x->v[lo].off, fn) != NULL;
}

/* Descends from parent (a function containing pc) through the children that contain pc,
 * appending the function ones (each inlined instance, outermost first) to path. Siblings that do
 * not contain pc are stepped over whole (DW_AT_sibling). */
static void func_path(Dwarf_Die *parent, Dwarf_Addr pc, Dwarf_Die *path, int *depth, int level) {
  Dwarf_Die child;
  if (level > MAX_DEPTH || dwarf_child(parent, &child) != 0)
    return;
  do {
    if (dwarf_haspc(&child, pc) != 1)
      continue;
    int tag = dwarf_tag(&child);
    if (tag == DW_TAG_subprogram)
      *depth = 0; /* a nested function (GNU C) is a real function of its own: its own chain */
    if ((tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine) && *depth < MAX_DEPTH)
      path[(*depth)++] = child;
    func_path(&child, pc, path, depth, level + 1);
    return;
  } while (dwarf_siblingof(&child, &child) == 0);
}

/* Fills out with the DWARF frames at addr, innermost first; returns how many (0: no DWARF). */
static int resolve_dwarf(module *m, uintptr_t addr, const tt__sym *base, tt__sym *out) {
  Dwfl_Module *dm = module_dw(m);
  if (dm == NULL)
    return 0;
  Dwarf_Addr bias = 0;
  Dwarf_Die *cu = dwfl_module_addrdie(dm, addr, &bias);
  if (cu == NULL)
    return 0;
  Dwarf_Addr pc = addr - bias;

  /* The innermost position, from the line table. */
  const char *lfile = NULL;
  int lline = 0;
  Dwfl_Line *ln = dwfl_module_getsrc(dm, addr);
  if (ln != NULL) {
    const char *f = dwfl_lineinfo(ln, NULL, &lline, NULL, NULL, NULL);
    lfile = intern_path(dwfl_line_comp_dir(ln), f);
  }

  /* The function scopes around pc, innermost first: inlined instances, then the real one. */
  Dwarf_Die path[MAX_DEPTH];
  int depth = 0;
  if (cu_func(cu, pc, &path[0])) {
    depth = 1;
    func_path(&path[0], pc, path, &depth, 0);
  }
  Dwarf_Die *fn[MAX_CHAIN];
  int nfn = 0;
  for (int i = depth; i-- > 0;) {
    if (nfn < MAX_CHAIN)
      fn[nfn++] = &path[i];
    else
      fn[MAX_CHAIN - 1] = &path[i]; /* too deep: keep the innermost and the real function */
  }
  if (nfn == 0) {
    /* Line information without a function (assembly): the name from the symbol table. */
    if (lfile == NULL && lline == 0)
      return 0;
    out[0] = *base;
    uintptr_t start;
    const char *name = tt__elfsym_find(module_tab(m), addr - m->bias, &start);
    if (name != NULL) {
      out[0].func = intern_sym(name);
      out[0].entry = start + m->bias;
    } else {
      resolve_dwsym(m, addr, &out[0]);
    }
    out[0].file = lfile;
    out[0].line = lline;
    return 1;
  }
  uintptr_t entry = 0;
  if (dwarf_tag(fn[nfn - 1]) == DW_TAG_subprogram) {
    entry = func_entry(fn[nfn - 1], pc);
    if (entry != 0)
      entry += (uintptr_t)bias;
  }
  if (entry == 0) {
    uintptr_t start;
    if (tt__elfsym_find(module_tab(m), addr - m->bias, &start) != NULL)
      entry = start + m->bias; /* no usable entry pc in the DWARF: the symbol's */
  }
  const char *file = lfile;
  int line = lline, n = 0;
  for (int i = 0; i < nfn; i++) {
    out[n] = *base;
    out[n].func = intern(die_name(fn[i]));
    out[n].file = file;
    out[n].line = line;
    out[n].entry = entry;
    out[n].inlined = i + 1 < nfn;
    n++;
    if (i + 1 < nfn)
      call_site(fn[i], &file, &line); /* where fn[i] was inlined: a position in fn[i + 1] */
  }
  if (out[n - 1].func == NULL) {
    uintptr_t start;
    const char *name = tt__elfsym_find(module_tab(m), addr - m->bias, &start);
    out[n - 1].func = intern_sym(name);
  }
  return n;
}

/* A name from libdw's view of the symbol tables (which includes a separate debug file's
 * .symtab and .gnu_debugdata), when our reader had none. */
static bool resolve_dwsym(module *m, uintptr_t addr, tt__sym *out) {
  Dwfl_Module *dm = module_dw(m);
  if (dm == NULL)
    return false;
  GElf_Off off = 0;
  GElf_Sym sym;
  const char *name = dwfl_module_addrinfo(dm, addr, &off, &sym, NULL, NULL, NULL);
  if (name == NULL || off > addr || (sym.st_size > 0 && off >= sym.st_size))
    return false;
  out->func = intern_sym(name);
  out->entry = addr - (uintptr_t)off;
  return out->func != NULL;
}
#endif

/* ---- Resolution and the address cache ---------------------------------------------------- */

/* Fills out (room for MAX_CHAIN) with what is known about addr; returns how many (>= 1). */
static int resolve(uintptr_t addr, tt__sym *out) {
  module *m = module_find(addr);
  out[0] = (tt__sym){0};
  if (m == NULL)
    return 1;
  tt__sym base = {.module = m->path, .module_base = m->bias};
#if TT_HAVE_LIBDW
  if (use_dwarf) {
    int n = resolve_dwarf(m, addr, &base, out);
    if (n > 0)
      return n;
  }
#endif
  out[0] = base;
  uintptr_t start;
  const char *name = tt__elfsym_find(module_tab(m), addr - m->bias, &start);
  if (name != NULL) {
    out[0].func = intern_sym(name);
    out[0].entry = start + m->bias;
  }
#if TT_HAVE_LIBDW
  else if (use_dwarf)
    resolve_dwsym(m, addr, &out[0]);
#endif
  return 1;
}

typedef struct slot {
  uintptr_t addr;
  uint32_t off; /* index of the first frame in pool */
  uint8_t n;    /* frames; 0: empty slot */
} slot;

static slot *cache; /* open addressing, power-of-two capacity */
static size_t cache_cap, cache_len;
static tt__sym *pool; /* every cached frame */
static size_t pool_len, pool_cap;

static size_t slot_of(uintptr_t addr, size_t cap) {
  uint64_t h = (uint64_t)addr * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 32) & (cap - 1);
}

static void cache_clear(void) {
  free(cache);
  free(pool);
  cache = NULL;
  pool = NULL;
  cache_cap = cache_len = pool_len = pool_cap = 0;
  stats.entries = 0;
}

static const slot *cache_get(uintptr_t addr) {
  if (cache_len == 0)
    return NULL;
  for (size_t j = slot_of(addr, cache_cap); cache[j].n != 0; j = (j + 1) & (cache_cap - 1)) {
    if (cache[j].addr == addr)
      return &cache[j];
  }
  return NULL;
}

static void cache_put(uintptr_t addr, const tt__sym *v, int n) {
  if ((cache_len + 1) * 2 > cache_cap) {
    size_t cap = cache_cap ? cache_cap * 2 : 1024;
    slot *c = calloc(cap, sizeof *c);
    if (c == NULL)
      return;
    for (size_t i = 0; i < cache_cap; i++) {
      if (cache[i].n == 0)
        continue;
      size_t j = slot_of(cache[i].addr, cap);
      while (c[j].n != 0)
        j = (j + 1) & (cap - 1);
      c[j] = cache[i];
    }
    free(cache);
    cache = c;
    cache_cap = cap;
  }
  if (pool_len + (size_t)n > pool_cap) {
    size_t cap = pool_cap ? pool_cap * 2 : 4096;
    if (cap > UINT32_MAX)
      return;
    tt__sym *p = realloc(pool, cap * sizeof *p);
    if (p == NULL)
      return;
    pool = p;
    pool_cap = cap;
  }
  memcpy(pool + pool_len, v, (size_t)n * sizeof *v);
  size_t j = slot_of(addr, cache_cap);
  while (cache[j].n != 0)
    j = (j + 1) & (cache_cap - 1);
  cache[j] = (slot){.addr = addr, .off = (uint32_t)pool_len, .n = (uint8_t)n};
  pool_len += (size_t)n;
  cache_len++;
  stats.entries = cache_len;
}

/* Copies the n frames at v into out (max > 0): all of them when they fit, else the innermost
 * max - 1 and the real function. */
static int copy_out(const tt__sym *v, int n, tt__sym *out, int max) {
  if (n <= max) {
    memcpy(out, v, (size_t)n * sizeof *v);
    return n;
  }
  memcpy(out, v, (size_t)(max - 1) * sizeof *v);
  out[max - 1] = v[n - 1];
  return max;
}

int tt__symbolize(uintptr_t addr, tt__sym *out, int max) {
  if (out == NULL || max <= 0)
    return 0;
  pthread_mutex_lock(&sym_lock);
  const slot *s = cache_get(addr);
  int n;
  if (s != NULL) {
    stats.hits++;
    n = copy_out(pool + s->off, s->n, out, max);
  } else {
    stats.misses++;
    tt__sym v[MAX_CHAIN];
    int k = resolve(addr, v);
    cache_put(addr, v, k);
    n = copy_out(v, k, out, max);
  }
  pthread_mutex_unlock(&sym_lock);
  return n;
}

void tt__symbolize_stats(tt__sym_stats *out) {
  pthread_mutex_lock(&sym_lock);
  *out = stats;
#if TT_HAVE_LIBDW
  out->dwarf = use_dwarf;
#else
  out->dwarf = false;
#endif
  pthread_mutex_unlock(&sym_lock);
}

void tt__symbolize_reset(void) {
  pthread_mutex_lock(&sym_lock);
  cache_clear();
#if TT_HAVE_LIBDW
  dwfl_drop();
#endif
  for (size_t i = 0; i < nmods; i++)
    module_drop(&mods[i]);
  free(mods);
  mods = NULL;
  nmods = 0;
  mods_valid = false;
  stats = (tt__sym_stats){0};
  pthread_mutex_unlock(&sym_lock);
}

bool tt__symbolize_use_dwarf(bool on) {
#if TT_HAVE_LIBDW
  pthread_mutex_lock(&sym_lock);
  bool was = use_dwarf;
  if (was != on)
    cache_clear();
  use_dwarf = on;
  pthread_mutex_unlock(&sym_lock);
  return was;
#else
  (void)on;
  return false;
#endif
}
