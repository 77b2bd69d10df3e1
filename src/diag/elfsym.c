/* SPDX-License-Identifier: MIT */
/* The ELF symbol-table reader: a module's function symbols, for the symbolizer's fallback when a
 * module has no DWARF (or the build has no libdw).
 *
 * Every offset and size the file states is checked against the file's size before it is used,
 * and the file is read with pread rather than mapped: a library truncated or rewritten in place
 * while we read it gives short reads (a rejected table), never SIGBUS. Only the kept symbols'
 * names are copied out, so a table costs about 24 bytes per function plus its names. */
#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diag/elfsym.h"
#include "internal.h"

#define MAX_TABLE_BYTES ((uint64_t)1 << 30) /* a larger symbol or string table is not believed */
#define MAX_NOTE_BYTES ((uint64_t)1 << 16)

typedef struct ent {
  uintptr_t lo, hi; /* [lo, hi): link-time addresses */
  uint32_t name;    /* offset in names */
} ent;

struct tt__elfsym {
  ent *v;
  size_t n;
  char *names;
};

/* A symbol as collected, before duplicates at one address are merged. */
typedef struct cand {
  uintptr_t lo, size, sec_end; /* sec_end: the end of its section, 0 when unknown */
  uint32_t name;               /* offset in the file's string table */
  uint32_t rank;               /* lower is preferred: global, then weak, then local; no '_' */
} cand;

/* Reads exactly n bytes at off; false on a short read or an error. */
static bool read_at(int fd, void *buf, size_t n, uint64_t off) {
  char *p = buf;
  while (n > 0) {
    ssize_t k = pread(fd, p, n, (off_t)off);
    if (k <= 0)
      return false;
    p += k;
    n -= (size_t)k;
    off += (uint64_t)k;
  }
  return true;
}

/* Whether [off, off + size) lies inside a file of fsize bytes. */
static bool in_file(uint64_t off, uint64_t size, uint64_t fsize) {
  return off <= fsize && size <= fsize - off;
}

static bool read_ehdr(int fd, uint64_t fsize, Elf64_Ehdr *eh) {
  if (fsize < sizeof *eh || !read_at(fd, eh, sizeof *eh, 0))
    return false;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64)
    return false;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return eh->e_ident[EI_DATA] == ELFDATA2LSB;
#else
  return eh->e_ident[EI_DATA] == ELFDATA2MSB;
#endif
}

size_t tt__elf_note_build_id(const void *p, size_t n, uint8_t *out) {
  const unsigned char *b = p;
  size_t off = 0;
  while (n - off >= sizeof(Elf64_Nhdr)) {
    Elf64_Nhdr nh; /* Elf32_Nhdr and Elf64_Nhdr are the same three words */
    memcpy(&nh, b + off, sizeof nh);
    off += sizeof nh;
    size_t namesz = ((size_t)nh.n_namesz + 3) & ~(size_t)3;
    size_t descsz = ((size_t)nh.n_descsz + 3) & ~(size_t)3;
    if (namesz > n - off || descsz > n - off - namesz)
      return 0;
    if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && memcmp(b + off, "GNU", 4) == 0 &&
        nh.n_descsz > 0 && nh.n_descsz <= TT__BUILD_ID_MAX) {
      memcpy(out, b + off + namesz, nh.n_descsz);
      return nh.n_descsz;
    }
    off += namesz + descsz;
  }
  return 0;
}

/* The file's build ID from its PT_NOTE segments; 0 when it has none (or is unreadable). */
static size_t file_build_id(int fd, uint64_t fsize, const Elf64_Ehdr *eh, uint8_t *out) {
  if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > 4096 ||
      !in_file(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), fsize))
    return 0;
  for (unsigned i = 0; i < eh->e_phnum; i++) {
    Elf64_Phdr ph;
    if (!read_at(fd, &ph, sizeof ph, eh->e_phoff + (uint64_t)i * sizeof ph))
      return 0;
    if (ph.p_type != PT_NOTE || ph.p_filesz > MAX_NOTE_BYTES ||
        !in_file(ph.p_offset, ph.p_filesz, fsize))
      continue;
    void *buf = malloc(ph.p_filesz ? ph.p_filesz : 1);
    if (buf == NULL)
      return 0;
    size_t len = 0;
    if (read_at(fd, buf, ph.p_filesz, ph.p_offset))
      len = tt__elf_note_build_id(buf, ph.p_filesz, out);
    free(buf);
    if (len > 0)
      return len;
  }
  return 0;
}

static bool file_size(int fd, uint64_t *size) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0)
    return false;
  *size = (uint64_t)st.st_size;
  return true;
}

bool tt__elf_build_id_matches(int fd, const uint8_t *id, size_t id_len) {
  uint64_t fsize;
  Elf64_Ehdr eh;
  if (id_len == 0)
    return true;
  if (!file_size(fd, &fsize) || !read_ehdr(fd, fsize, &eh))
    return false; /* not an ELF file at all: certainly not the one loaded */
  uint8_t fid[TT__BUILD_ID_MAX];
  size_t flen = file_build_id(fd, fsize, &eh, fid);
  return flen == 0 || (flen == id_len && memcmp(fid, id, id_len) == 0);
}

/* The section headers, with the extended section count (e_shnum == 0) resolved. */
static Elf64_Shdr *read_shdrs(int fd, uint64_t fsize, const Elf64_Ehdr *eh, size_t *count) {
  if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr))
    return NULL;
  uint64_t n = eh->e_shnum;
  if (n == 0) {
    Elf64_Shdr first;
    if (!in_file(eh->e_shoff, sizeof first, fsize) ||
        !read_at(fd, &first, sizeof first, eh->e_shoff))
      return NULL;
    n = first.sh_size;
  }
  if (n == 0 || n > 65536 * 16 || !in_file(eh->e_shoff, n * sizeof(Elf64_Shdr), fsize))
    return NULL;
  Elf64_Shdr *sh = malloc(n * sizeof *sh);
  if (sh == NULL)
    return NULL;
  if (!read_at(fd, sh, n * sizeof *sh, eh->e_shoff)) {
    free(sh);
    return NULL;
  }
  *count = n;
  return sh;
}

static int cand_cmp(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->lo != y->lo)
    return x->lo < y->lo ? -1 : 1;
  if (x->rank != y->rank)
    return x->rank < y->rank ? -1 : 1;
  return x->name < y->name ? -1 : x->name > y->name;
}

/* Collects the function symbols of one symbol table section into *out (malloc'd); returns how
 * many, or -1 when the table is malformed. strtab/strsz: its string table, read by the caller. */
static long collect(int fd, uint64_t fsize, const Elf64_Shdr *sh, size_t nsh, size_t symidx,
                    const char *strtab, size_t strsz, cand **out) {
  const Elf64_Shdr *s = &sh[symidx];
  if (s->sh_entsize != sizeof(Elf64_Sym) || s->sh_size > MAX_TABLE_BYTES ||
      !in_file(s->sh_offset, s->sh_size, fsize))
    return -1;
  size_t nsym = s->sh_size / sizeof(Elf64_Sym);
  cand *v = malloc((nsym ? nsym : 1) * sizeof *v);
  if (v == NULL)
    return -1;
  size_t k = 0;
  Elf64_Sym buf[256];
  for (size_t i = 0; i < nsym; i += 256) {
    size_t m = nsym - i < 256 ? nsym - i : 256;
    if (!read_at(fd, buf, m * sizeof(Elf64_Sym), s->sh_offset + i * sizeof(Elf64_Sym))) {
      free(v);
      return -1;
    }
    for (size_t j = 0; j < m; j++) {
      const Elf64_Sym *y = &buf[j];
      int type = ELF64_ST_TYPE(y->st_info), bind = ELF64_ST_BIND(y->st_info);
      if ((type != STT_FUNC && type != STT_GNU_IFUNC) || y->st_shndx == SHN_UNDEF ||
          y->st_value == 0 || y->st_name == 0 || y->st_name >= strsz || strtab[y->st_name] == '\0')
        continue;
      uintptr_t sec_end = 0;
      if (y->st_shndx < nsh && y->st_shndx < SHN_LORESERVE)
        sec_end = (uintptr_t)(sh[y->st_shndx].sh_addr + sh[y->st_shndx].sh_size);
      uint32_t rank = bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 2 : 4;
      rank += strtab[y->st_name] == '_';
      v[k++] = (cand){.lo = (uintptr_t)y->st_value,
                      .size = (uintptr_t)y->st_size,
                      .sec_end = sec_end,
                      .name = y->st_name,
                      .rank = rank};
    }
  }
  *out = v;
  return (long)k;
}

/* Reads section i (a string table) whole, NUL-terminating it. */
static char *read_strtab(int fd, uint64_t fsize, const Elf64_Shdr *s, size_t *size) {
  if (s->sh_type != SHT_STRTAB || s->sh_size == 0 || s->sh_size > MAX_TABLE_BYTES ||
      !in_file(s->sh_offset, s->sh_size, fsize))
    return NULL;
  char *p = malloc(s->sh_size + 1);
  if (p == NULL)
    return NULL;
  if (!read_at(fd, p, s->sh_size, s->sh_offset)) {
    free(p);
    return NULL;
  }
  p[s->sh_size] = '\0'; /* a name running off the end stops here */
  *size = s->sh_size;
  return p;
}

/* Builds the table from the candidates: one entry per address (the preferred name), sizes
 * resolved, names copied. Consumes nothing; returns NULL when out of memory or empty. */
static tt__elfsym *build(cand *c, size_t n, const char *strtab) {
  if (n == 0)
    return NULL;
  qsort(c, n, sizeof *c, cand_cmp);
  /* Merge duplicates: the first of a run is the preferred name; the run's largest size wins. */
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (k > 0 && c[k - 1].lo == c[i].lo) {
      if (c[i].size > c[k - 1].size)
        c[k - 1].size = c[i].size;
      continue;
    }
    c[k++] = c[i];
  }
  tt__elfsym *t = calloc(1, sizeof *t);
  ent *v = malloc(k * sizeof *v);
  size_t bytes = 0;
  for (size_t i = 0; i < k; i++)
    bytes += strlen(strtab + c[i].name) + 1;
  char *names = bytes <= UINT32_MAX ? malloc(bytes) : NULL;
  if (t == NULL || v == NULL || names == NULL) {
    free(t);
    free(v);
    free(names);
    return NULL;
  }
  size_t off = 0;
  for (size_t i = 0; i < k; i++) {
    uintptr_t hi;
    if (c[i].size > 0 && c[i].lo + c[i].size > c[i].lo) {
      hi = c[i].lo + c[i].size;
    } else {
      /* No size (hand-written assembly without .size): up to the next symbol, within its
       * section; the last one ends its section (or covers its first byte only). */
      hi = i + 1 < k ? c[i + 1].lo : UINTPTR_MAX;
      if (c[i].sec_end > c[i].lo && c[i].sec_end < hi)
        hi = c[i].sec_end;
      if (hi == UINTPTR_MAX)
        hi = c[i].lo + 1;
    }
    size_t len = strlen(strtab + c[i].name) + 1;
    memcpy(names + off, strtab + c[i].name, len);
    v[i] = (ent){.lo = c[i].lo, .hi = hi, .name = (uint32_t)off};
    off += len;
  }
  t->v = v;
  t->n = k;
  t->names = names;
  return t;
}

tt__elfsym *tt__elfsym_load(int fd, const uint8_t *id, size_t id_len) {
  uint64_t fsize;
  Elf64_Ehdr eh;
  if (fd < 0 || !file_size(fd, &fsize) || !read_ehdr(fd, fsize, &eh))
    return NULL;
  if (id_len > 0) {
    uint8_t fid[TT__BUILD_ID_MAX];
    size_t flen = file_build_id(fd, fsize, &eh, fid);
    if (flen > 0 && (flen != id_len || memcmp(fid, id, id_len) != 0))
      return NULL; /* replaced since it was loaded */
  }
  size_t nsh = 0;
  Elf64_Shdr *sh = read_shdrs(fd, fsize, &eh, &nsh);
  if (sh == NULL)
    return NULL;
  tt__elfsym *t = NULL;
  /* .symtab (every function, static ones included), then .dynsym (the exported ones). */
  static const uint32_t kinds[2] = {SHT_SYMTAB, SHT_DYNSYM};
  for (int pass = 0; pass < 2 && t == NULL; pass++) {
    for (size_t i = 0; i < nsh && t == NULL; i++) {
      if (sh[i].sh_type != kinds[pass] || sh[i].sh_link >= nsh)
        continue;
      size_t strsz = 0;
      char *strtab = read_strtab(fd, fsize, &sh[sh[i].sh_link], &strsz);
      if (strtab == NULL)
        continue;
      cand *c = NULL;
      long n = collect(fd, fsize, sh, nsh, i, strtab, strsz, &c);
      if (n > 0)
        t = build(c, (size_t)n, strtab);
      free(c);
      free(strtab);
    }
  }
  free(sh);
  return t;
}

void tt__elfsym_free(tt__elfsym *t) {
  if (t == NULL)
    return;
  free(t->v);
  free(t->names);
  free(t);
}

size_t tt__elfsym_count(const tt__elfsym *t) { return t ? t->n : 0; }

const char *tt__elfsym_find(const tt__elfsym *t, uintptr_t vaddr, uintptr_t *start) {
  if (t == NULL || t->n == 0 || vaddr < t->v[0].lo)
    return NULL;
  /* The last entry starting at or below vaddr. */
  size_t lo = 0, hi = t->n;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->v[mid].lo <= vaddr)
      lo = mid;
    else
      hi = mid;
  }
  /* It may end before vaddr while an earlier, larger symbol encloses it (a function with a
   * symbol for a part of itself): look back a few entries. */
  for (size_t i = lo + 1, steps = 0; i-- > 0 && steps < 8; steps++) {
    if (vaddr < t->v[i].hi) {
      *start = t->v[i].lo;
      return t->names + t->v[i].name;
    }
  }
  return NULL;
}
