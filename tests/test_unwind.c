/* SPDX-License-Identifier: MIT */
/* The DWARF unwinder (src/diag/unwind.c): suspended coroutines of the corpus (unwind_corpus.c,
 * -O2 -fomit-frame-pointer) unwound frame for frame as libunwind unwinds them and in the order
 * the source calls; the calling thread's own stack; a signal's context; bounds and garbage;
 * concurrent walks. */
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "test.h"
#include "unwind_corpus.h"
#include "../src/diag/diag_int.h"

#define MAXF 128

/* ---- Naming frames ------------------------------------------------------------------------- */

static uintptr_t exe_base(void) {
  Dl_info di;
  ASSERT(dladdr((void *)corpus_park, &di) != 0);
  return (uintptr_t)di.dli_fbase;
}

/* The exported name of the function holding the code a stored pc names (pc - 1), or NULL. */
static const char *frame_name(uintptr_t pc) {
  Dl_info di;
  if (dladdr((void *)(pc - 1), &di) == 0)
    return NULL;
  return di.dli_sname;
}

static bool in_exe(uintptr_t pc) {
  Dl_info di;
  return dladdr((void *)(pc - 1), &di) != 0 && (uintptr_t)di.dli_fbase == exe_base();
}

static bool is_corpus(uintptr_t pc) {
  const char *s = frame_name(pc);
  return in_exe(pc) && s && strncmp(s, "corpus_", 7) == 0;
}

/* A function's runtime range from the executable's .symtab (static functions have no dynamic
 * symbol for dladdr). Returns false when the executable has no symbol table. */
static bool symtab_range(const char *name, uintptr_t *lo, uintptr_t *hi) {
  int fd = open("/proc/self/exe", O_RDONLY);
  ASSERT(fd >= 0);
  struct stat st;
  ASSERT(fstat(fd, &st) == 0);
  const uint8_t *f = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  ASSERT(f != MAP_FAILED);
  const ElfW(Ehdr) *eh = (const void *)f;
  const ElfW(Shdr) *sh = (const void *)(f + eh->e_shoff);
  uintptr_t val = 0, size = 0, park = 0;
  bool found = false, found_park = false;
  for (int i = 0; i < eh->e_shnum; i++) {
    if (sh[i].sh_type != SHT_SYMTAB)
      continue;
    const ElfW(Sym) *sym = (const void *)(f + sh[i].sh_offset);
    const char *str = (const char *)(f + sh[sh[i].sh_link].sh_offset);
    size_t n = sh[i].sh_size / sizeof *sym;
    for (size_t j = 0; j < n; j++) {
      if (ELF64_ST_TYPE(sym[j].st_info) != STT_FUNC)
        continue;
      if (strcmp(str + sym[j].st_name, name) == 0) {
        val = sym[j].st_value;
        size = sym[j].st_size;
        found = true;
      } else if (strcmp(str + sym[j].st_name, "corpus_park") == 0) {
        park = sym[j].st_value;
        found_park = true;
      }
    }
  }
  munmap((void *)f, (size_t)st.st_size);
  if (!found || !found_park)
    return false;
  uintptr_t bias = (uintptr_t)corpus_park - park;
  *lo = val + bias;
  *hi = val + bias + size;
  return true;
}

static void dump_frames(const char *what, const uintptr_t *pcs, int n) {
  fprintf(stderr, "%s: %d frames\n", what, n);
  for (int i = 0; i < n; i++) {
    const char *s = frame_name(pcs[i]);
    fprintf(stderr, "  #%d %#lx %s\n", i, (unsigned long)pcs[i], s ? s : "?");
  }
}

/* Whether libunwind, the oracle, is built in (reported once). */
static bool have_oracle(void) {
  static int have = -1;
  if (have < 0) {
    tt__uregs r;
    memset(&r, 0, sizeof r);
    uintptr_t pc;
    have = tt__unwind_libunwind(&r, 0, 0, &pc, 1) != TT_ENOSYS;
    if (!have)
      fprintf(stderr, "skipped: the libunwind comparisons (built without libunwind)\n");
  }
  return have;
}

/* The two walks agree on every frame. */
static void assert_same(const uintptr_t *own, int n, const uintptr_t *lu, int m) {
  bool same = n == m;
  for (int i = 0; same && i < n; i++)
    same = own[i] == lu[i];
  if (!same) {
    dump_frames("own", own, n);
    dump_frames("libunwind", lu, m);
  }
  ASSERT(same);
}

/* ---- The corpus, suspended ----------------------------------------------------------------- */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct corpus_run {
  bool done[32];
  int ndone;
  bool want[32];
  void (*extra)(const corpus_case *cc, const tt_coro_info *ci, const uintptr_t *pcs, int n);
} corpus_run;

static void check_case(const corpus_case *cc, const tt_coro_info *ci, corpus_run *run) {
  uintptr_t lo = (uintptr_t)ci->stack_lo, hi = (uintptr_t)ci->stack_hi;
  ASSERT(lo < (uintptr_t)ci->sp && (uintptr_t)ci->sp < hi);
  tt__uregs r;
  tt__uregs_from_saved(&r, ci->sp);
  uintptr_t own[MAXF], lu[MAXF];
  int n = tt__unwind(&r, lo, hi, own, MAXF);
  ASSERT(n > 0 && n < MAXF);
  if (getenv("TT_UNWIND_VERBOSE"))
    dump_frames(cc->name, own, n);
  if (have_oracle()) {
    int m = tt__unwind_libunwind(&r, lo, hi, lu, MAXF);
    assert_same(own, n, lu, m);
  }
  /* The expected functions, from the innermost corpus frame out. Frames inside tether (the
   * receive, the park, the switch) come first. */
  bool full = !cc->complex || have_oracle();
  int i = 0;
  while (i < n && !is_corpus(own[i]))
    i++;
  if (i == 0 || i == n)
    dump_frames(cc->name, own, n);
  ASSERT(i > 0 && i < n);
  for (int e = 0; cc->expect[e]; e++) {
    if (!full && e > cc->cut_after)
      break;
    if (i >= n)
      dump_frames(cc->name, own, n);
    ASSERT(i < n);
    if (strcmp(cc->expect[e], "*") == 0) {
      ASSERT(!in_exe(own[i]));
      while (i < n && !in_exe(own[i]))
        i++;
      continue;
    }
    const char *s = frame_name(own[i]);
    if (s == NULL || strcmp(s, cc->expect[e]) != 0)
      dump_frames(cc->name, own, n);
    ASSERT_STR_EQ(s, cc->expect[e]);
    i++;
  }
  if (full) {
    /* Then the entry trampoline, whose zero return address ends the walk. */
    if (i != n - 1)
      dump_frames(cc->name, own, n);
    ASSERT_EQ(i, n - 1);
    uintptr_t elo, ehi;
    if (symtab_range("coro_entry", &elo, &ehi)) {
      ASSERT(own[n - 1] - 1 >= elo && own[n - 1] - 1 < ehi);
    } else {
      fprintf(stderr, "note: no .symtab: the entry trampoline check is skipped\n");
    }
  } else {
    ASSERT_EQ(i, n); /* the walk stops at the frame it cannot follow */
  }
  /* A second walk is served from the cache. */
  tt__unw_stats a, b;
  tt__unwind_stats(&a);
  uintptr_t again[MAXF];
  ASSERT_EQ(tt__unwind(&r, lo, hi, again, MAXF), n);
  ASSERT(memcmp(again, own, (size_t)n * sizeof own[0]) == 0);
  tt__unwind_stats(&b);
  if (!cc->complex) {
    ASSERT_UEQ(b.hits - a.hits, (uint64_t)n);
    ASSERT_UEQ(b.misses, a.misses);
  } else {
    ASSERT_GT(b.hits - a.hits, 0);
    if (have_oracle())
      ASSERT_GT(b.fallbacks - a.fallbacks, 0);
  }
  if (run->extra)
    run->extra(cc, ci, own, n);
}

static int corpus_cb(const tt_coro_info *ci, void *p) {
  corpus_run *run = p;
  if (ci->name == NULL || strncmp(ci->name, "corpus:", 7) != 0 || ci->sp == NULL)
    return 0;
  for (int k = 0; k < corpus_ncases; k++) {
    if (strcmp(ci->name + 7, corpus_cases[k].name) == 0 && run->want[k] && !run->done[k]) {
      check_case(&corpus_cases[k], ci, run);
      run->done[k] = true;
      run->ndone++;
    }
  }
  return 0;
}

/* Spawns the wanted corpus cases, checks each once it is suspended, and releases them. */
static void corpus_check(corpus_run *run) {
  ASSERT_OK(
      tt_chan_make_opt(&corpus_gate, sizeof(int), 0, &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED}));
  atomic_store(&corpus_stop, 0);
  int want = 0;
  for (int k = 0; k < corpus_ncases; k++) {
    if (!run->want[k])
      continue;
    char name[64];
    snprintf(name, sizeof name, "corpus:%s", corpus_cases[k].name);
    tt_go_opts o = {.name = name, .stack_size = 512 * 1024};
    ASSERT_OK(tt_go_opt(corpus_cases[k].body, NULL, &o, NULL));
    want++;
  }
  int64_t deadline = tt_now() + 60 * TT_SEC * (int64_t)tt_test_slow();
  while (run->ndone < want) {
    ASSERT(tt_now() < deadline);
    ASSERT_OK(tt_coro_foreach(corpus_cb, run));
    if (run->ndone < want)
      tt_sleep(TT_MSEC);
  }
  ASSERT_OK(tt_chan_close(corpus_gate));
  atomic_store(&corpus_stop, 1);
  tt_test_await_alone();
  ASSERT_OK(tt_chan_release(corpus_gate));
}

/* Measures a cached walk against libunwind's on one suspended coroutine (printed, not asserted). */
static void time_walks(const corpus_case *cc, const tt_coro_info *ci, const uintptr_t *pcs, int n) {
  if (strcmp(cc->name, "recursion") != 0)
    return;
  uintptr_t lo = (uintptr_t)ci->stack_lo, hi = (uintptr_t)ci->stack_hi, out[MAXF];
  tt__uregs r;
  tt__uregs_from_saved(&r, ci->sp);
  int64_t iters = SCALED(20000, 100);
  int64_t t0 = now_ns();
  for (int64_t i = 0; i < iters; i++)
    ASSERT_EQ(tt__unwind(&r, lo, hi, out, MAXF), n);
  int64_t t1 = now_ns();
  fprintf(stderr, "unwind: own (cached) %.1f ns/frame over %d frames\n",
          (double)(t1 - t0) / (double)(iters * n), n);
  if (have_oracle()) {
    int64_t li = SCALED(500, 10);
    t0 = now_ns();
    for (int64_t i = 0; i < li; i++)
      ASSERT_EQ(tt__unwind_libunwind(&r, lo, hi, out, MAXF), n);
    t1 = now_ns();
    fprintf(stderr, "unwind: libunwind %.1f ns/frame\n", (double)(t1 - t0) / (double)(li * n));
  }
}

static int corpus_main(void *p) {
  corpus_run run;
  memset(&run, 0, sizeof run);
  for (int k = 0; k < corpus_ncases; k++)
    run.want[k] = true;
  run.extra = time_walks;
  corpus_check(&run);
  return 0;
}

TEST(unwind_corpus_matches_libunwind) { tt_test_run(corpus_main, NULL, 2); }

/* ---- Bounds, garbage, statistics --------------------------------------------------------------
 */

static void bounds_extra(const corpus_case *cc, const tt_coro_info *ci, const uintptr_t *pcs,
                         int n) {
  uintptr_t lo = (uintptr_t)ci->stack_lo, hi = (uintptr_t)ci->stack_hi, out[MAXF];
  tt__uregs r;
  tt__uregs_from_saved(&r, ci->sp);
  /* A range that ends a little above the saved sp cuts the walk short: a prefix of the full
   * walk. */
  uintptr_t cut = ((uintptr_t)ci->sp + 600) & ~(uintptr_t)15;
  int k = tt__unwind(&r, lo, cut, out, MAXF);
  ASSERT(k >= 1 && k < n);
  ASSERT(memcmp(out, pcs, (size_t)k * sizeof out[0]) == 0);
  /* An empty range: the first pc (from the registers) and nothing read. */
  ASSERT_EQ(tt__unwind(&r, hi, hi, out, MAXF), 1);
  ASSERT_PTR_EQ(out[0], pcs[0]);
  /* max is respected. */
  ASSERT_EQ(tt__unwind(&r, lo, hi, out, 3), 3);
  ASSERT(memcmp(out, pcs, 3 * sizeof out[0]) == 0);
  ASSERT_EQ(tt__unwind(&r, lo, hi, out, 0), 0);
  ASSERT_EQ(tt__unwind(NULL, lo, hi, out, MAXF), 0);
}

static int bounds_main(void *p) {
  corpus_run run;
  memset(&run, 0, sizeof run);
  run.want[0] = true; /* recursion */
  run.extra = bounds_extra;
  corpus_check(&run);
  return 0;
}

TEST(unwind_bounds_cut_the_walk) { tt_test_run(bounds_main, NULL, 2); }

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static uintptr_t harvested[64];
static int nharvested;

static void harvest(void *p) {
  uintptr_t *range = p;
  nharvested = tt__unwind_here(range[0], range[1], harvested, 64, 0);
}

/* Thread stack bounds of the calling thread. */
static void thread_stack(uintptr_t *lo, uintptr_t *hi) {
  pthread_attr_t a;
  ASSERT(pthread_getattr_np(pthread_self(), &a) == 0);
  void *addr;
  size_t size;
  ASSERT(pthread_attr_getstack(&a, &addr, &size) == 0);
  pthread_attr_destroy(&a);
  *lo = (uintptr_t)addr;
  *hi = (uintptr_t)addr + size;
}

static void *garbage_thread(void *p) {
  uintptr_t range[2];
  thread_stack(&range[0], &range[1]);
  corpus_recurse_then(6, harvest, range);
  ASSERT(nharvested > 6);
  /* Code addresses to plant: real return addresses in the executable, and corpus functions plus
   * small offsets. */
  uintptr_t code[96];
  int ncode = 0;
  for (int i = 0; i < nharvested; i++)
    if (in_exe(harvested[i]))
      code[ncode++] = harvested[i];
  static const char *const fns[] = {"corpus_park",      "corpus_rec",      "corpus_vla",
                                    "corpus_big_frame", "corpus_fp_a",     "corpus_chain1",
                                    "corpus_chain4",    "corpus_rec_here", "corpus_spin_leaf"};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    void *f = dlsym(RTLD_DEFAULT, fns[i]);
    ASSERT(f != NULL);
    code[ncode++] = (uintptr_t)f;
  }
  size_t words = 8192;
  uintptr_t *fake = mmap(NULL, words * sizeof(uintptr_t), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT(fake != MAP_FAILED);
  uintptr_t lo = (uintptr_t)fake, hi = lo + words * sizeof(uintptr_t);
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  int64_t iters = SCALED(20000, 1000);
  int64_t total = 0, maxn = 0;
  for (int64_t it = 0; it < iters; it++) {
    if (it % 64 == 0) {
      for (size_t w = 0; w < words; w++) {
        uint64_t x = rng_next(&seed);
        switch (x % 4) {
        case 0:
          fake[w] = (uintptr_t)rng_next(&seed);
          break;
        case 1:
          fake[w] = lo + (rng_next(&seed) % (words * sizeof(uintptr_t) + 64)) - 32;
          break;
        case 2:
          fake[w] = code[rng_next(&seed) % (uint64_t)ncode] + rng_next(&seed) % 24;
          break;
        default:
          fake[w] = 0;
          break;
        }
      }
    }
    tt__uregs r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < TT__UNW_NREGS; i++)
      r.r[i] = fake[rng_next(&seed) % words];
    r.r[TT__UNW_PC] = code[rng_next(&seed) % (uint64_t)ncode] + rng_next(&seed) % 24;
    r.r[TT__UNW_SP] = lo + (rng_next(&seed) % words) * sizeof(uintptr_t);
    r.valid = ~(uint64_t)0 >> (64 - TT__UNW_NREGS);
    r.exact = rng_next(&seed) & 1;
    uintptr_t out[64];
    int n = tt__unwind(&r, lo, hi, out, 64);
    ASSERT(n >= 1 && n <= 64);
    total += n;
    if (n > maxn)
      maxn = n;
  }
  fprintf(stderr, "garbage: %lld walks, %.2f frames on average, at most %lld\n", (long long)iters,
          (double)total / (double)iters, (long long)maxn);
  munmap(fake, words * sizeof(uintptr_t));
  return NULL;
}

/* Random words in a fake stack, random registers: the walk never faults (every read is bounded)
 * and never loops (the stack pointer must grow). */
TEST(unwind_garbage_never_faults) {
  pthread_t t;
  ASSERT(pthread_create(&t, NULL, garbage_thread, NULL) == 0);
  ASSERT(pthread_join(t, NULL) == 0);
  tt__unw_stats s;
  tt__unwind_stats(&s);
  ASSERT_GT(s.hits, 0);
  ASSERT_GT(s.entries, 0);
}

/* ---- The caller's own stack --------------------------------------------------------------- */

/* Unwinds from here with tt__unwind_here and with both walks from a getcontext() taken here:
 * all agree past the first frame (each starts at its own call site in this function). */
__attribute__((noinline)) static void here_check(uintptr_t lo, uintptr_t hi) {
  ucontext_t uc;
  ASSERT(getcontext(&uc) == 0);
  uintptr_t a[MAXF], b[MAXF], c[MAXF];
  int n = tt__unwind_here(lo, hi, a, MAXF, 0);
  __asm__ volatile("" ::: "memory");
  tt__uregs r;
  tt__uregs_from_ucontext(&r, &uc);
  r.exact = false; /* getcontext's pc is its return address */
  int k = tt__unwind(&r, lo, hi, c, MAXF);
  ASSERT(n >= 2 && n < MAXF);
  ASSERT_EQ(k, n);
  ASSERT(in_exe(a[0]) && in_exe(c[0]));
  Dl_info da, dc, dself;
  ASSERT(dladdr((void *)(a[0] - 1), &da) && dladdr((void *)(c[0] - 1), &dc));
  ASSERT(dladdr((void *)here_check, &dself));
  ASSERT_PTR_EQ(da.dli_saddr, dc.dli_saddr); /* both in here_check's module symbol */
  ASSERT(memcmp(a + 1, c + 1, (size_t)(n - 1) * sizeof a[0]) == 0);
  if (have_oracle()) {
    int m = tt__unwind_libunwind(&r, lo, hi, b, MAXF);
    assert_same(c, k, b, m);
  }
  /* skip drops frames from the inside. */
  uintptr_t s[MAXF];
  int ns = tt__unwind_here(lo, hi, s, MAXF, 2);
  ASSERT_EQ(ns, n - 2);
  ASSERT(memcmp(s, a + 2, (size_t)ns * sizeof s[0]) == 0);
}

static void here_at_bottom(void *p) {
  uintptr_t *range = p;
  here_check(range[0], range[1]);
}

static void *here_thread(void *p) {
  uintptr_t range[2];
  thread_stack(&range[0], &range[1]);
  corpus_recurse_then(4, here_at_bottom, range);
  return NULL;
}

TEST(unwind_here_plain_thread) {
  pthread_t t;
  ASSERT(pthread_create(&t, NULL, here_thread, NULL) == 0);
  ASSERT(pthread_join(t, NULL) == 0);
}

static int self_range_cb(const tt_coro_info *ci, void *p) {
  uintptr_t *range = p;
  if (ci->id != tt_self())
    return 0;
  range[0] = (uintptr_t)ci->stack_lo;
  range[1] = (uintptr_t)ci->stack_hi;
  return 1;
}

static void here_coro(void *p) {
  uintptr_t range[2] = {0, 0};
  ASSERT_EQ(tt_coro_foreach(self_range_cb, range), 1);
  ASSERT(range[0] < range[1]);
  corpus_recurse_then(5, here_at_bottom, range);
  atomic_fetch_add((atomic_int *)p, 1);
}

static int here_main(void *p) {
  atomic_int done = 0;
  ASSERT_OK(tt_go(here_coro, &done));
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&done), 1);
  return 0;
}

TEST(unwind_here_coroutine) { tt_test_run(here_main, NULL, 2); }

/* ---- A signal's context ---------------------------------------------------------------------- */

static struct {
  uintptr_t lo, hi;
  uintptr_t own[MAXF], lu[MAXF];
  int n, m;
  atomic_int done;
} sig;

static void unwind_handler(int signo, siginfo_t *si, void *ucontext) {
  tt__uregs r;
  tt__uregs_from_ucontext(&r, ucontext);
  sig.n = tt__unwind(&r, sig.lo, sig.hi, sig.own, MAXF);
  sig.m = tt__unwind_libunwind(&r, sig.lo, sig.hi, sig.lu, MAXF);
  atomic_store(&sig.done, 1);
}

static atomic_int spin_stop, spinning;

static void *spin_thread(void *p) {
  thread_stack(&sig.lo, &sig.hi);
  corpus_spin_outer(&spin_stop, &spinning);
  return NULL;
}

static void signal_round(pthread_t t, const char *what) {
  atomic_store(&sig.done, 0);
  ASSERT(pthread_kill(t, SIGUSR1) == 0);
  while (!atomic_load(&sig.done))
    sched_yield();
  if (have_oracle())
    assert_same(sig.own, sig.n, sig.lu, sig.m);
  /* The interrupted frame (exact: stored as pc + 1), then its callers. */
  int i = 0;
  static const char *const expect[] = {"corpus_spin_leaf", "corpus_spin_mid", "corpus_spin_outer",
                                       "spin_thread"};
  if (sig.n < 4)
    dump_frames(what, sig.own, sig.n);
  ASSERT(sig.n >= 4);
  for (; i < 3; i++) {
    const char *s = frame_name(sig.own[i]);
    if (s == NULL || strcmp(s, expect[i]) != 0)
      dump_frames(what, sig.own, sig.n);
    ASSERT_STR_EQ(s, expect[i]);
  }
  ASSERT(in_exe(sig.own[3])); /* spin_thread: static, so dladdr cannot name it */
}

/* A plain thread spinning three frames deep is interrupted by a signal whose handler unwinds
 * from the signal's context right there, cold (the first walk parses the rules) and warm. */
TEST(unwind_signal_context) {
#if defined(TT_SANITIZE_THREAD)
  fprintf(stderr, "skipped: TSan delivers asynchronous signals late, with a stale context\n");
  return;
#endif
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = unwind_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ASSERT(sigaction(SIGUSR1, &sa, NULL) == 0);
  pthread_t t;
  ASSERT(pthread_create(&t, NULL, spin_thread, NULL) == 0);
  while (!atomic_load(&spinning))
    sched_yield();
  tt__unw_stats a, b;
  tt__unwind_stats(&a);
  ASSERT_UEQ(a.hits + a.misses, 0); /* cold: no walk yet in this process */
  signal_round(t, "cold");
  tt__unwind_stats(&b);
  ASSERT_GT(b.misses, 0);
  for (int round = 0; round < 20; round++) {
    tt__unwind_stats(&a);
    signal_round(t, "warm");
    tt__unwind_stats(&b);
    /* Warm: every frame but possibly the interrupted one (a new pc in the loop) is a hit. */
    ASSERT_GE((int64_t)(b.hits - a.hits), sig.n - 1);
  }
  atomic_store(&spin_stop, 1);
  ASSERT(pthread_join(t, NULL) == 0);
}

/* ---- Concurrency ---------------------------------------------------------------------------- */

typedef struct conc_arg {
  pthread_barrier_t *bar;
  int depth;
  int64_t iters;
  uintptr_t lo, hi;
} conc_arg;

static void conc_bottom(void *p) {
  conc_arg *a = p;
  uintptr_t first[MAXF], pcs[MAXF];
  pthread_barrier_wait(a->bar); /* all start cold together */
  int n = tt__unwind_here(a->lo, a->hi, first, MAXF, 0);
  ASSERT(n >= a->depth + 2);
  for (int64_t i = 0; i < a->iters; i++) {
    int k = tt__unwind_here(a->lo, a->hi, pcs, MAXF, 0);
    ASSERT_EQ(k, n);
    /* pcs[0] is this call site, first[0] the one above. */
    ASSERT(memcmp(pcs + 1, first + 1, (size_t)(n - 1) * sizeof pcs[0]) == 0);
  }
  for (int i = 1; i <= a->depth; i++)
    ASSERT_STR_EQ(frame_name(first[i]), "corpus_rec_here");
}

static void *conc_thread(void *p) {
  conc_arg *a = p;
  thread_stack(&a->lo, &a->hi);
  corpus_recurse_then(a->depth, conc_bottom, a);
  return NULL;
}

/* Threads unwinding at once from a cold cache fill it together; every walk stays exact. */
TEST(unwind_concurrent_threads) {
  enum { N = 4 };
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, N);
  pthread_t t[N];
  conc_arg a[N];
  for (int i = 0; i < N; i++) {
    a[i] = (conc_arg){.bar = &bar, .depth = 3 + 2 * i, .iters = SCALED(20000, 200)};
    ASSERT(pthread_create(&t[i], NULL, conc_thread, &a[i]) == 0);
  }
  for (int i = 0; i < N; i++)
    ASSERT(pthread_join(t[i], NULL) == 0);
  pthread_barrier_destroy(&bar);
  tt__unw_stats s;
  tt__unwind_stats(&s);
  ASSERT_GT(s.hits, s.misses);
}

/* ---- A module loaded later ------------------------------------------------------------------- */

static void dso_cb(void *p) {
  uintptr_t *range = p;
  here_check(range[0], range[1]);
  uintptr_t pcs[MAXF];
  int n = tt__unwind_here(range[0], range[1], pcs, MAXF, 0);
  /* pcs[0] is in this function (static, unnamed), then the module's two frames. */
  ASSERT(n >= 4);
  ASSERT_STR_EQ(frame_name(pcs[1]), "unwind_dso_inner");
  ASSERT_STR_EQ(frame_name(pcs[2]), "unwind_dso_call");
  ASSERT(in_exe(pcs[3]));
}

static void *dso_thread(void *p) {
  uintptr_t range[2], pcs[MAXF];
  thread_stack(&range[0], &range[1]);
  /* A first walk caches the module table without the module. */
  ASSERT(tt__unwind_here(range[0], range[1], pcs, MAXF, 0) >= 2);
  char path[4096];
  snprintf(path, sizeof path, "%s/unwind-dso.so", tt_test_bindir());
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL)
    fprintf(stderr, "dlopen: %s\n", dlerror());
  ASSERT(h != NULL);
  void (*call)(void (*)(void *), void *) =
      (void (*)(void (*)(void *), void *))dlsym(h, "unwind_dso_call");
  ASSERT(call != NULL);
  call(dso_cb, range);
  /* Left loaded: a module unloaded while its frames may be unwound is not supported. */
  return NULL;
}

/* Frames in a shared object dlopen'd after the module table was first built. */
TEST(unwind_dlopen_module) {
  pthread_t t;
  ASSERT(pthread_create(&t, NULL, dso_thread, NULL) == 0);
  ASSERT(pthread_join(t, NULL) == 0);
}
