/* SPDX-License-Identifier: MIT */
/* The symbolizer (src/diag/symbol.c, elfsym.c): DWARF names, files, lines and inline chains;
 * the ELF symbol tables; module+offset; shared libraries loaded late; bad addresses; threads and
 * the cache. */
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test.h"

#include "../src/diag/diag_int.h"
#include "../src/diag/elfsym.h"

#define NOINLINE __attribute__((noinline))
#define BARRIER() __asm__ volatile("" ::: "memory") /* also keeps a call from being a tail call */

/* Field by field: the struct's padding is not part of the answer. */
static bool sym_eq(const tt__sym *a, const tt__sym *b) {
  return a->func == b->func && a->file == b->file && a->line == b->line && a->entry == b->entry &&
         a->module == b->module && a->module_base == b->module_base && a->inlined == b->inlined;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = s ? strlen(s) : 0, b = strlen(suffix);
  return s != NULL && a >= b && strcmp(s + a - b, suffix) == 0;
}

#define ASSERT_ENDS(s, suffix)                                                                     \
  do {                                                                                             \
    const char *s_ = (s);                                                                          \
    if (!ends_with(s_, suffix))                                                                    \
      tt_test_fail(__FILE__, __LINE__, "%s (\"%s\") does not end with \"%s\"", #s,                 \
                   s_ ? s_ : "(null)", suffix);                                                    \
  } while (0)

/* Whether the symbolizer reads DWARF; if not, says why the calling test skips. */
static bool have_dwarf(const char *test) {
  tt__sym_stats st;
  tt__symbolize_stats(&st);
  if (!st.dwarf)
    fprintf(stderr, "%s: skipped: built without libdw (-DTT_WITH_LIBDW=OFF or not found)\n", test);
  return st.dwarf;
}

/* ---- The functions whose addresses the tests look up -------------------------------------- */

/* Stores its return address: an address inside the caller, just past the call. */
static NOINLINE void record_ra(uintptr_t *ra) {
  *ra = (uintptr_t)__builtin_return_address(0);
  BARRIER();
}
/* Called through volatile pointers, so that the compiler can neither inline nor clone them. */
static void (*volatile record_p)(uintptr_t *) = record_ra;

static NOINLINE int caller_fn(uintptr_t *ra) {
  int line = (record_p(ra), __LINE__); /* the call and its line on one line */
  BARRIER();
  return line;
}
static int (*volatile caller_p)(uintptr_t *) = caller_fn;

static inline __attribute__((always_inline)) int inlined_fn(uintptr_t *ra) {
  int line = (record_p(ra), __LINE__);
  return line;
}

static NOINLINE int outer_fn(uintptr_t *ra, int *call_line) {
  int line = (*call_line = __LINE__, inlined_fn(ra));
  BARRIER();
  return line;
}
static int (*volatile outer_p)(uintptr_t *, int *) = outer_fn;

static const char *self_path(void) {
  static char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  ASSERT(n > 0);
  buf[n] = '\0';
  return buf;
}

/* ---- DWARF -------------------------------------------------------------------------------- */

TEST(symbol_dwarf_caller_file_line) {
  if (!have_dwarf("symbol_dwarf_caller_file_line"))
    return;
  uintptr_t ra = 0;
  int line = caller_p(&ra);
  tt__sym s[8];
  int n = tt__symbolize(ra - 1, s, 8);
  ASSERT_EQ(n, 1);
  ASSERT_STR_EQ(s[0].func, "caller_fn");
  ASSERT(s[0].file != NULL && s[0].file[0] == '/');
  ASSERT_ENDS(s[0].file, "tests/test_symbol.c");
  ASSERT_EQ(s[0].line, line);
  ASSERT_PTR_EQ(s[0].entry, (uintptr_t)caller_p); /* the load bias is right (PIE) */
  ASSERT(!s[0].inlined);
  ASSERT_STR_EQ(s[0].module, self_path());
  ASSERT(s[0].module_base <= s[0].entry);
  /* The same pointers again: strings are interned, results cached. */
  tt__sym t;
  ASSERT_EQ(tt__symbolize(ra - 1, &t, 1), 1);
  ASSERT(t.func == s[0].func && t.file == s[0].file && t.line == s[0].line);
}

TEST(symbol_dwarf_inline_chain) {
  if (!have_dwarf("symbol_dwarf_inline_chain"))
    return;
  uintptr_t ra = 0;
  int call_line = 0;
  int line = outer_p(&ra, &call_line);
  tt__sym s[8];
  int n = tt__symbolize(ra - 1, s, 8);
  ASSERT_EQ(n, 2);
  ASSERT_STR_EQ(s[0].func, "inlined_fn");
  ASSERT(s[0].inlined);
  ASSERT_ENDS(s[0].file, "tests/test_symbol.c");
  ASSERT_EQ(s[0].line, line);
  ASSERT_STR_EQ(s[1].func, "outer_fn");
  ASSERT(!s[1].inlined);
  ASSERT_ENDS(s[1].file, "tests/test_symbol.c");
  ASSERT_EQ(s[1].line, call_line); /* the call site, in the outer function */
  /* Both frames' entry is the real function's. */
  ASSERT_PTR_EQ(s[0].entry, (uintptr_t)outer_p);
  ASSERT_PTR_EQ(s[1].entry, (uintptr_t)outer_p);
  /* Room for one: the real function. */
  tt__sym one;
  ASSERT_EQ(tt__symbolize(ra - 1, &one, 1), 1);
  ASSERT_STR_EQ(one.func, "outer_fn");
  ASSERT(!one.inlined);
}

/* ---- ELF symbol tables --------------------------------------------------------------------- */

static void *libc_fn(const char *name) {
  void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  ASSERT(h != NULL);
  void *f = dlsym(h, name); /* libc's own, not a sanitizer's interceptor */
  ASSERT(f != NULL);
  dlclose(h);
  return f;
}

TEST(symbol_symtab_executable) {
  bool was = tt__symbolize_use_dwarf(false);
  uintptr_t ra = 0;
  caller_p(&ra);
  tt__sym s;
  ASSERT_EQ(tt__symbolize(ra - 1, &s, 1), 1);
  ASSERT_STR_EQ(s.func, "caller_fn"); /* a static function: from .symtab */
  ASSERT(s.file == NULL);
  ASSERT_EQ(s.line, 0);
  ASSERT_PTR_EQ(s.entry, (uintptr_t)caller_p); /* PIE: the load bias is applied */
  ASSERT_STR_EQ(s.module, self_path());
  ASSERT(!s.inlined);
  /* The first byte of a function is that function. */
  ASSERT_EQ(tt__symbolize((uintptr_t)outer_p, &s, 1), 1);
  ASSERT_STR_EQ(s.func, "outer_fn");
  ASSERT_PTR_EQ(s.entry, (uintptr_t)outer_p);
  tt__symbolize_use_dwarf(was);
}

TEST(symbol_libc) {
  uintptr_t q = (uintptr_t)libc_fn("qsort");
  for (int dwarf = 0; dwarf < 2; dwarf++) {
    bool was = tt__symbolize_use_dwarf(dwarf);
    tt__sym s[4];
    int n = tt__symbolize(q + 4, s, 4);
    ASSERT_GE(n, 1);
    ASSERT_STR_EQ(s[n - 1].func, "qsort");
    ASSERT_PTR_EQ(s[n - 1].entry, q);
    ASSERT_ENDS(s[n - 1].module, "libc.so.6");
    ASSERT(s[n - 1].module_base != 0);
    if (!dwarf)
      ASSERT(s[0].file == NULL); /* the symbol table has no lines */
    else if (s[0].file != NULL)
      fprintf(stderr, "qsort has debug information here (%s:%d)\n", s[0].file, s[0].line);
    tt__symbolize_use_dwarf(was);
  }
}

/* ---- A library loaded after the first lookup ---------------------------------------------- */

TEST(symbol_dlopen_library) {
  tt__sym s[4];
  uintptr_t ra = 0;
  caller_p(&ra);
  ASSERT_GE(tt__symbolize(ra - 1, s, 4), 1); /* the module list now exists */
  tt__sym_stats before, after;
  tt__symbolize_stats(&before);
  ASSERT_GE(before.refreshes, 1);

  void *h = dlopen(TT_SYMTEST_LIB, RTLD_NOW | RTLD_LOCAL);
  ASSERT(h != NULL);
  int (*fn)(void (*)(uintptr_t *), uintptr_t *) =
      (int (*)(void (*)(uintptr_t *), uintptr_t *))dlsym(h, "tt_symtest_lib_call");
  ASSERT(fn != NULL);
  int line = fn(record_ra, &ra);
  int n = tt__symbolize(ra - 1, s, 4);
  ASSERT_EQ(n, 1);
  ASSERT_STR_EQ(s[0].func, "tt_symtest_lib_call");
  ASSERT_PTR_EQ(s[0].entry, (uintptr_t)fn);
  ASSERT_ENDS(s[0].module, "libtt_symtest.so");
  tt__symbolize_stats(&after);
  ASSERT_GT(after.refreshes, before.refreshes);
  ASSERT_GT(after.modules, before.modules);
  if (after.dwarf) {
    ASSERT(s[0].file != NULL && s[0].file[0] == '/');
    ASSERT_ENDS(s[0].file, "tests/lib/symtest.c");
    ASSERT_EQ(s[0].line, line);
  } else {
    ASSERT(s[0].file == NULL);
  }
  const char *func = s[0].func;

  /* Unloaded: the next miss notices and forgets the library's addresses. */
  dlclose(h);
  if (dlopen(TT_SYMTEST_LIB, RTLD_NOW | RTLD_NOLOAD) != NULL) {
    fprintf(stderr, "symbol_dlopen_library: the library stayed loaded; unload check skipped\n");
    return;
  }
  ASSERT_GE(tt__symbolize((uintptr_t)caller_p + 1, s, 4), 1); /* a miss */
  ASSERT_EQ(tt__symbolize(ra - 1, s, 4), 1);
  ASSERT(s[0].module == NULL && s[0].func == NULL);
  ASSERT_STR_EQ(func, "tt_symtest_lib_call"); /* strings outlive their module */
}

/* ---- Addresses in no module --------------------------------------------------------------- */

static void assert_nothing(uintptr_t addr) {
  tt__sym s[4];
  memset(s, 0xa5, sizeof s);
  ASSERT_EQ(tt__symbolize(addr, s, 4), 1);
  ASSERT(s[0].func == NULL && s[0].file == NULL && s[0].module == NULL);
  ASSERT_EQ(s[0].line, 0);
  ASSERT_PTR_EQ(s[0].entry, 0);
  ASSERT_PTR_EQ(s[0].module_base, 0);
  ASSERT(!s[0].inlined);
}

TEST(symbol_no_module) {
  assert_nothing(0);
  assert_nothing(1);
  assert_nothing(~(uintptr_t)0);
  assert_nothing(~(uintptr_t)0 - 4096);
  size_t len = 4096;
  void *p = mmap(NULL, len, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "symbol_no_module: no executable anonymous mapping here; that part skipped\n");
  } else {
    assert_nothing((uintptr_t)p + 16);
    assert_nothing((uintptr_t)p + 16); /* cached */
    munmap(p, len);
  }
  /* No room, no answer. */
  tt__sym s;
  ASSERT_EQ(tt__symbolize((uintptr_t)caller_p, &s, 0), 0);
  ASSERT_EQ(tt__symbolize((uintptr_t)caller_p, NULL, 4), 0);
}

/* ---- The ELF reader on crafted and broken files -------------------------------------------- */

/* A minimal ELF file: null, .text [0x1000, 0x1040), .symtab, .strtab, .shstrtab sections. */
static size_t craft_elf(unsigned char *buf, size_t cap) {
  static const char strtab[] = "\0f_sized\0f_nosize\0_f_alias\0f_local\0d_object";
  static const char shstr[] = "\0.text\0.symtab\0.strtab\0.shstrtab";
  Elf64_Sym syms[] = {
      {0},
      {.st_name = 1,
       .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC),
       .st_shndx = 1,
       .st_value = 0x1000,
       .st_size = 0x10},
      {.st_name = 9,
       .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC),
       .st_shndx = 1,
       .st_value = 0x1020,
       .st_size = 0},
      /* An alias of f_sized, weak and with an underscore: f_sized is preferred. */
      {.st_name = 18,
       .st_info = ELF64_ST_INFO(STB_WEAK, STT_FUNC),
       .st_shndx = 1,
       .st_value = 0x1000,
       .st_size = 0x10},
      /* A local function nested inside f_nosize's span: f_nosize ends where it starts. */
      {.st_name = 27,
       .st_info = ELF64_ST_INFO(STB_LOCAL, STT_FUNC),
       .st_shndx = 1,
       .st_value = 0x1030,
       .st_size = 8},
      /* Not a function. */
      {.st_name = 35,
       .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_OBJECT),
       .st_shndx = 1,
       .st_value = 0x1038,
       .st_size = 8},
  };
  size_t off = sizeof(Elf64_Ehdr);
  size_t sym_off = off, str_off = sym_off + sizeof syms, shstr_off = str_off + sizeof strtab;
  size_t sh_off = (shstr_off + sizeof shstr + 7) & ~(size_t)7;
  Elf64_Shdr sh[5] = {
      {0},
      {.sh_name = 1, .sh_type = SHT_PROGBITS, .sh_addr = 0x1000, .sh_size = 0x40},
      {.sh_name = 7,
       .sh_type = SHT_SYMTAB,
       .sh_offset = sym_off,
       .sh_size = sizeof syms,
       .sh_link = 3,
       .sh_entsize = sizeof(Elf64_Sym)},
      {.sh_name = 15, .sh_type = SHT_STRTAB, .sh_offset = str_off, .sh_size = sizeof strtab},
      {.sh_name = 23, .sh_type = SHT_STRTAB, .sh_offset = shstr_off, .sh_size = sizeof shstr},
  };
  size_t total = sh_off + sizeof sh;
  ASSERT(total <= cap);
  memset(buf, 0, total);
  Elf64_Ehdr eh = {.e_type = ET_DYN,
                   .e_version = EV_CURRENT,
                   .e_shoff = sh_off,
                   .e_ehsize = sizeof(Elf64_Ehdr),
                   .e_shentsize = sizeof(Elf64_Shdr),
                   .e_shnum = 5,
                   .e_shstrndx = 4};
  memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  memcpy(buf, &eh, sizeof eh);
  memcpy(buf + sym_off, syms, sizeof syms);
  memcpy(buf + str_off, strtab, sizeof strtab);
  memcpy(buf + shstr_off, shstr, sizeof shstr);
  memcpy(buf + sh_off, sh, sizeof sh);
  return total;
}

static tt__elfsym *load_bytes(const unsigned char *p, size_t n) {
  char path[] = "/tmp/tt-elfsym-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  unlink(path);
  ASSERT_EQ(write(fd, p, n), (ssize_t)n);
  tt__elfsym *t = tt__elfsym_load(fd, NULL, 0);
  close(fd);
  return t;
}

static const char *find(const tt__elfsym *t, uintptr_t a, uintptr_t *start) {
  *start = 0;
  return tt__elfsym_find(t, a, start);
}

TEST(symbol_elf_reader) {
  unsigned char buf[2048];
  size_t n = craft_elf(buf, sizeof buf);
  tt__elfsym *t = load_bytes(buf, n);
  ASSERT(t != NULL);
  ASSERT_EQ(tt__elfsym_count(t), 3); /* the alias merged, the object left out */
  uintptr_t start;
  ASSERT_STR_EQ(find(t, 0x1000, &start), "f_sized");
  ASSERT_PTR_EQ(start, 0x1000);
  ASSERT_STR_EQ(find(t, 0x100f, &start), "f_sized");
  ASSERT(find(t, 0x1010, &start) == NULL); /* past its size */
  ASSERT(find(t, 0x101f, &start) == NULL);
  ASSERT_STR_EQ(find(t, 0x1020, &start), "f_nosize");
  ASSERT_STR_EQ(find(t, 0x102f, &start), "f_nosize"); /* no size: up to the next symbol */
  ASSERT_STR_EQ(find(t, 0x1034, &start), "f_local");
  ASSERT_PTR_EQ(start, 0x1030);
  ASSERT(find(t, 0x1038, &start) == NULL);
  ASSERT(find(t, 0xfff, &start) == NULL);
  ASSERT(find(t, 0, &start) == NULL);
  ASSERT(find(t, ~(uintptr_t)0, &start) == NULL);
  tt__elfsym_free(t);

  /* Every truncation of the file, and corrupted bytes in every header field: rejected or read,
   * never a crash (ASan watches the reads). */
  for (size_t k = 0; k < n; k++) {
    t = load_bytes(buf, k);
    if (t != NULL) {
      (void)find(t, 0x1000, &start);
      tt__elfsym_free(t);
    }
  }
  unsigned char bad[2048];
  for (size_t k = 0; k < n; k += 3) {
    memcpy(bad, buf, n);
    bad[k] ^= 0xff;
    t = load_bytes(bad, n);
    if (t != NULL) {
      for (uintptr_t a = 0xff0; a < 0x1050; a += 4)
        (void)find(t, a, &start);
      tt__elfsym_free(t);
    }
  }
  ASSERT(load_bytes((const unsigned char *)"not an ELF file", 15) == NULL);
  ASSERT(tt__elfsym_load(-1, NULL, 0) == NULL);
  ASSERT(tt__elfsym_find(NULL, 0x1000, &start) == NULL);
}

/* ---- Threads and the cache ----------------------------------------------------------------- */

#define NADDR 12
#define NTHREADS 4

typedef struct addrs {
  uintptr_t a[NADDR];
} addrs;

static void make_addrs(addrs *v) {
  uintptr_t ra = 0;
  int cl;
  caller_p(&ra);
  v->a[0] = ra - 1;
  outer_p(&ra, &cl);
  v->a[1] = ra - 1;
  v->a[2] = (uintptr_t)caller_p;
  v->a[3] = (uintptr_t)outer_p + 1;
  v->a[4] = (uintptr_t)record_p;
  v->a[5] = (uintptr_t)libc_fn("qsort") + 4;
  v->a[6] = (uintptr_t)libc_fn("memchr") + 1;
  v->a[7] = (uintptr_t)tt_chan_make + 2;
  v->a[8] = (uintptr_t)tt_run + 3;
  v->a[9] = (uintptr_t)tt_strerror;
  v->a[10] = 0;
  v->a[11] = (uintptr_t)make_addrs + 5;
}

typedef struct worker_arg {
  const addrs *v;
  int rounds;
  tt__sym first[NADDR];
  bool differs;
} worker_arg;

static void *worker(void *p) {
  worker_arg *w = p;
  for (int r = 0; r < w->rounds; r++) {
    for (int i = 0; i < NADDR; i++) {
      tt__sym s;
      ASSERT_GE(tt__symbolize(w->v->a[i], &s, 1), 1);
      if (r == 0)
        w->first[i] = s;
      else if (!sym_eq(&s, &w->first[i]))
        w->differs = true;
    }
  }
  return NULL;
}

TEST(symbol_threads_and_cache) {
  addrs v;
  make_addrs(&v);
  tt__symbolize_reset();
  worker_arg w[NTHREADS];
  pthread_t th[NTHREADS];
  int rounds = (int)SCALED(200, 5);
  for (int i = 0; i < NTHREADS; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].v = &v;
    w[i].rounds = rounds;
    ASSERT_EQ(pthread_create(&th[i], NULL, worker, &w[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++)
    ASSERT_EQ(pthread_join(th[i], NULL), 0);
  tt__sym_stats st;
  tt__symbolize_stats(&st);
  /* Each address was resolved once, whoever got there first; everything else was a hit. */
  ASSERT_UEQ(st.misses, NADDR);
  ASSERT_UEQ(st.hits, (uint64_t)NTHREADS * rounds * NADDR - NADDR);
  ASSERT_UEQ(st.entries, NADDR);
  for (int i = 0; i < NTHREADS; i++) {
    ASSERT(!w[i].differs);
    for (int k = 0; k < NADDR; k++)
      ASSERT(sym_eq(&w[i].first[k], &w[0].first[k]));
  }
  ASSERT_STR_EQ(w[0].first[5].func, "qsort");
  ASSERT(w[0].first[10].module == NULL);

  /* After a reset the same lookups are cold again, and give the same (interned) strings. */
  tt__symbolize_reset();
  tt__symbolize_stats(&st);
  ASSERT_UEQ(st.misses, 0);
  for (int k = 0; k < NADDR; k++) {
    tt__sym s;
    ASSERT_EQ(tt__symbolize(v.a[k], &s, 1), 1);
    ASSERT(sym_eq(&s, &w[0].first[k]));
  }
  tt__symbolize_stats(&st);
  ASSERT_UEQ(st.misses, NADDR);
  ASSERT_UEQ(st.hits, 0);
}

/* ---- A deleted or replaced executable ------------------------------------------------------ */

/* The child half: runs in a copy of this program that it deletes (then replaces by a file that is
 * not ELF) before its first lookup. */
static void deleted_child(const char *copy) {
  ASSERT_EQ(unlink(copy), 0);
  int fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, "replaced\n", 9), 9);
  close(fd);
  uintptr_t ra = 0;
  int line = caller_p(&ra);
  tt__sym s[4];
  int n = tt__symbolize(ra - 1, s, 4);
  ASSERT_GE(n, 1);
  ASSERT(s[n - 1].module != NULL);
  /* Linux keeps the running file reachable through /proc/self/exe; qemu-user emulates that link
   * by opening the path again, which now holds the replacement. Either way no crash, and names
   * only when they are the running program's. */
  char magic[4] = {0};
  int exe = open("/proc/self/exe", O_RDONLY);
  if (exe >= 0) {
    ASSERT(read(exe, magic, 4) >= 0);
    close(exe);
  }
  if (memcmp(magic, ELFMAG, SELFMAG) == 0) {
    ASSERT_STR_EQ(s[n - 1].func, "caller_fn");
    ASSERT_PTR_EQ(s[n - 1].entry, (uintptr_t)caller_p);
    tt__sym_stats st;
    tt__symbolize_stats(&st);
    if (st.dwarf)
      ASSERT_EQ(s[0].line, line);
  } else {
    printf("/proc/self/exe is not the running program here: module+offset only\n");
    ASSERT(s[n - 1].func == NULL);
  }
  assert_nothing(0);
  unlink(copy);
  printf("deleted child ok\n");
}

TEST(symbol_deleted_executable) {
  const char *copy = getenv("TT_SYMTEST_COPY");
  if (getenv("TT_TEST_CHILD") && copy) {
    deleted_child(copy);
    exit(0);
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/tt-symtest-copy-%d", tt_test_bindir(), (int)getpid());
  int in = open("/proc/self/exe", O_RDONLY), out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  ASSERT(in >= 0 && out >= 0);
  char buf[1 << 16];
  ssize_t k;
  while ((k = read(in, buf, sizeof buf)) > 0)
    ASSERT_EQ(write(out, buf, (size_t)k), k);
  close(in);
  ASSERT_EQ(close(out), 0);
  char env_copy[4200];
  snprintf(env_copy, sizeof env_copy, "TT_SYMTEST_COPY=%s", path);
  char *argv[] = {path, "symbol_deleted_executable", NULL};
  char *env[] = {"TT_TEST_CHILD=1", env_copy, NULL};
  char *output = NULL;
  int st = tt_test_spawn(argv, env, &output);
  unlink(path);
  if (st != 0)
    fprintf(stderr, "%s", output);
  ASSERT_EQ(st, 0);
  ASSERT_CONTAINS(output, "deleted child ok");
  free(output);
}

/* A library replaced on disk after it was loaded (a package upgrade under a running program):
 * its file now has another build ID, so neither its DWARF nor its symbols are believed, and the
 * answer is module+offset rather than another file's names. The replacement is the library
 * itself with its function renamed everywhere (symbol tables, DWARF) and its build ID changed:
 * believed, it would give the new name at the very same offsets. */
static void copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  ASSERT(in >= 0 && out >= 0);
  char buf[1 << 16];
  ssize_t k;
  while ((k = read(in, buf, sizeof buf)) > 0)
    ASSERT_EQ(write(out, buf, (size_t)k), k);
  close(in);
  ASSERT_EQ(close(out), 0);
}

typedef struct find_id {
  const char *path;
  uint8_t id[TT__BUILD_ID_MAX];
  size_t len;
} find_id;

/* The length of the build ID of the loaded object named path (0: it has none). */
static int find_id_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  find_id *f = arg;
  if (info->dlpi_name == NULL || strcmp(info->dlpi_name, f->path) != 0)
    return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_NOTE && f->len == 0)
      f->len = tt__elf_note_build_id((const void *)(info->dlpi_addr + ph->p_vaddr),
                                     (size_t)ph->p_memsz, f->id);
  }
  return 1;
}

/* Writes to a copy of from with every "tt_symtest_lib_call" renamed and the build ID changed. */
static void replace_lib(const char *from, const char *to, const find_id *f) {
  int in = open(from, O_RDONLY);
  ASSERT(in >= 0);
  off_t size = lseek(in, 0, SEEK_END);
  ASSERT(size > 0);
  char *buf = malloc((size_t)size);
  ASSERT(buf != NULL);
  ASSERT_EQ(pread(in, buf, (size_t)size, 0), size);
  close(in);
  static const char name[] = "tt_symtest_lib_call", other[] = "tt_symtest_wrong_fn";
  _Static_assert(sizeof name == sizeof other, "same length");
  int renamed = 0;
  for (off_t i = 0; i + (off_t)sizeof name - 1 <= size; i++) {
    if (memcmp(buf + i, name, sizeof name - 1) == 0) {
      memcpy(buf + i, other, sizeof other - 1);
      renamed++;
    }
    if (f->len > 0 && i + (off_t)f->len <= size && memcmp(buf + i, f->id, f->len) == 0)
      buf[i] ^= 0x5a;
  }
  ASSERT_GE(renamed, 1);
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  ASSERT(out >= 0);
  ASSERT_EQ(write(out, buf, (size_t)size), size);
  ASSERT_EQ(close(out), 0);
  free(buf);
}

TEST(symbol_replaced_library) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tt-symtest-lib-%d.so", tt_test_bindir(), (int)getpid());
  copy_file(TT_SYMTEST_LIB, path);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  ASSERT(h != NULL);
  int (*fn)(void (*)(uintptr_t *), uintptr_t *) =
      (int (*)(void (*)(uintptr_t *), uintptr_t *))dlsym(h, "tt_symtest_lib_call");
  ASSERT(fn != NULL);
  uintptr_t ra = 0;
  fn(record_ra, &ra);
  find_id f = {.path = path};
  dl_iterate_phdr(find_id_cb, &f);
  ASSERT_EQ(unlink(path), 0);
  replace_lib(TT_SYMTEST_LIB, path, &f);
  tt__sym s[4];
  int n = tt__symbolize(ra - 1, s, 4);
  ASSERT_EQ(n, 1);
  ASSERT_STR_EQ(s[0].module, path);
  if (f.len > 0) {
    ASSERT(s[0].func == NULL && s[0].file == NULL);
  } else {
    fprintf(stderr, "symbol_replaced_library: the library has no build ID here; names unchecked\n");
  }
  ASSERT_GE(tt__symbolize((uintptr_t)caller_p, s, 4), 1); /* the rest still resolves */
  ASSERT_STR_EQ(s[0].func, "caller_fn");
  dlclose(h);
  unlink(path);
}
