/* SPDX-License-Identifier: MIT */
/* The fast DWARF unwinder: walks a stack with compact rules (ehframe.h) cached per pc, falling
 * back to libunwind for frames the rules cannot express; and the libunwind walk the tests use as
 * their oracle.
 *
 * The cache. An open-addressing hash table of 2^16 slots in one anonymous mapping, made on the
 * first miss (mmap is async-signal-safe) and published with a compare-and-swap. A slot is two
 * words: the key (the address the rule was looked up for: a pc, or a return address minus 1) and
 * the packed rule. A writer claims an empty slot by compare-and-swapping its key from 0, then
 * stores the rule (release); a reader compares keys and loads the rule (acquire); a rule of 0
 * means "not stored yet" and is treated as a miss. Keys are never removed or changed once set,
 * so a probe sequence never loses an entry and readers never wait: the cached path takes no lock
 * and calls no allocator, which is what crash handlers need. Probing is bounded (PROBES); once
 * the table is three-quarters full, or a probe sequence is exhausted, new rules are simply not
 * cached (a dump sees a few thousand distinct pcs; 49,152 is far beyond that).
 *
 * Invariants of the walk: every read of stack memory lies in [stack_lo, stack_hi) and is 8-byte
 * aligned; the stack pointer strictly grows from frame to frame (one exception: an aarch64 frame
 * whose return address is still in x30, after which x30 is unknown, so it cannot repeat); the
 * walk ends at a zero return address, an undefined one, a frame without unwind information, or
 * max frames. So a corrupt stack can neither fault the walk nor make it loop.
 *
 * Rejected: libunwind for every frame (it blocks and unblocks signals twice per frame: ~2.6 µs
 * per frame here, minutes for a million coroutines); frame-pointer walks (wrong for -O2 code
 * without frame pointers, the common case); a per-module sorted array of all rules, ORC-style
 * (ehframe.c says why). */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "diag/ehframe.h"
#include "tether/error.h"

#if defined(TT_HAVE_LIBUNWIND)
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#endif

/* ---- Register state ------------------------------------------------------------------------ */

#include "arch/switch.h"

void tt__uregs_from_saved(tt__uregs *r, const void *saved_sp) {
  const tt__saved_regs *s = saved_sp;
  memset(r, 0, sizeof *r);
#if defined(__x86_64__)
  r->r[3] = s->rbx;
  r->r[6] = s->rbp;
  r->r[12] = s->r12;
  r->r[13] = s->r13;
  r->r[14] = s->r14;
  r->r[15] = s->r15;
  r->r[TT__UNW_SP] = TT_SAVED_SP(saved_sp);
  r->r[TT__UNW_PC] = s->pc;
  r->valid = (1u << 3) | (1u << 6) | (0xfu << 12) | (1u << TT__UNW_SP) | (1u << TT__UNW_PC);
#else
  const uint64_t *x = &s->x19;
  for (int i = 0; i < 10; i++)
    r->r[19 + i] = x[i];
  r->r[29] = s->fp;
  r->r[30] = s->pc; /* tt__switch returns with x30 still holding its return address */
  r->r[TT__UNW_SP] = TT_SAVED_SP(saved_sp);
  r->r[TT__UNW_PC] = s->pc;
  r->valid = (0xfffull << 19) | (1ull << TT__UNW_SP) | (1ull << TT__UNW_PC);
#endif
  r->exact = false;
}

void tt__uregs_from_ucontext(tt__uregs *r, const void *ucontext) {
  const ucontext_t *uc = ucontext;
  memset(r, 0, sizeof *r);
#if defined(__x86_64__)
  /* DWARF order: rax rdx rcx rbx rsi rdi rbp rsp r8..r15, rip. */
  static const int map[17] = {REG_RAX, REG_RDX, REG_RCX, REG_RBX, REG_RSI, REG_RDI,
                              REG_RBP, REG_RSP, REG_R8,  REG_R9,  REG_R10, REG_R11,
                              REG_R12, REG_R13, REG_R14, REG_R15, REG_RIP};
  for (int i = 0; i < 17; i++)
    r->r[i] = (uintptr_t)uc->uc_mcontext.gregs[map[i]];
  r->valid = (1u << 17) - 1;
#else
  for (int i = 0; i < 31; i++)
    r->r[i] = uc->uc_mcontext.regs[i];
  r->r[TT__UNW_SP] = uc->uc_mcontext.sp;
  r->r[TT__UNW_PC] = uc->uc_mcontext.pc;
  r->valid = (1ull << 33) - 1;
#endif
  r->exact = true;
}

/* ---- The rule cache -------------------------------------------------------------------------- */

#define CACHE_BITS 16
#define CACHE_SLOTS (1u << CACHE_BITS)
#define CACHE_LIMIT (CACHE_SLOTS / 4 * 3)
#define PROBES 32

typedef struct slot {
  _Atomic uintptr_t key;
  _Atomic uint64_t rule;
} slot;

static _Atomic(slot *) g_cache;
/* Statistics: relaxed, they order nothing; each walk adds its counts once, at its end. */
static _Atomic uint64_t st_hits, st_misses, st_fallbacks, st_entries;

static inline uint32_t slot_of(uintptr_t key) {
  return (uint32_t)(((uint64_t)key * 0x9e3779b97f4a7c15ull) >> (64 - CACHE_BITS));
}

static inline uint64_t cache_get(slot *t, uintptr_t key) {
  if (t == NULL)
    return 0;
  uint32_t i = slot_of(key);
  for (int n = 0; n < PROBES; n++, i = (i + 1) & (CACHE_SLOTS - 1)) {
    /* relaxed: the key only selects the slot; the rule's own acquire load below pairs with its
     * release store. */
    uintptr_t k = atomic_load_explicit(&t[i].key, memory_order_relaxed);
    if (k == key)
      return atomic_load_explicit(&t[i].rule, memory_order_acquire);
    if (k == 0)
      return 0;
  }
  return 0;
}

static slot *cache_table(void) {
  /* acquire: pairs with the publishing CAS (the zeroed mapping needs no ordering, but this keeps
   * the argument simple). */
  slot *t = atomic_load_explicit(&g_cache, memory_order_acquire);
  if (t)
    return t;
  void *m = mmap(NULL, CACHE_SLOTS * sizeof(slot), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return NULL;
  slot *expected = NULL;
  if (!atomic_compare_exchange_strong_explicit(&g_cache, &expected, (slot *)m, memory_order_acq_rel,
                                               memory_order_acquire)) {
    munmap(m, CACHE_SLOTS * sizeof(slot));
    return expected;
  }
  return m;
}

static void cache_put(slot *t, uintptr_t key, uint64_t rule) {
  if (t == NULL || atomic_load_explicit(&st_entries, memory_order_relaxed) >= CACHE_LIMIT)
    return;
  uint32_t i = slot_of(key);
  for (int n = 0; n < PROBES; n++, i = (i + 1) & (CACHE_SLOTS - 1)) {
    uintptr_t k = atomic_load_explicit(&t[i].key, memory_order_relaxed);
    if (k == 0) {
      /* relaxed: claiming the key publishes nothing; readers that see it before the rule read
       * 0 and take the slow path. */
      if (atomic_compare_exchange_strong_explicit(&t[i].key, &k, key, memory_order_relaxed,
                                                  memory_order_relaxed)) {
        /* release: pairs with cache_get's acquire (the rule is self-contained, so this is
         * belt and braces rather than load-bearing). */
        atomic_store_explicit(&t[i].rule, rule, memory_order_release);
        atomic_fetch_add_explicit(&st_entries, 1, memory_order_relaxed);
        return;
      }
    }
    if (k == key)
      return; /* another walk cached it first: the same rule */
  }
}

/* ---- The walk -------------------------------------------------------------------------------- */

/* Reads the word at a, which must lie in [lo, hi) and be aligned. Not instrumented: the slots an
 * unwinder reads (saved registers, return addresses) are never in a sanitizer's redzones, but a
 * stale or corrupt stack may lead it anywhere in the range. */
__attribute__((no_sanitize("address", "undefined"))) static inline bool
rd(uintptr_t a, uintptr_t lo, uintptr_t hi, const char *shadow, uintptr_t *out) {
  if (a < lo || a > hi - sizeof(uintptr_t) || hi < sizeof(uintptr_t) || (a & 7))
    return false;
  if (shadow) /* a copy of [lo, hi): read the copy (tt__unwind_copy) */
    memcpy(out, shadow + (a - lo), sizeof *out);
  else
    *out = *(const volatile uintptr_t *)a;
  return true;
}

#if defined(__aarch64__)
/* Strips a pointer-authentication code from a return address: xpaclri (a hint, so a no-op on
 * cores without pointer authentication) works on x30. */
static inline uintptr_t strip_pac(uintptr_t ra) {
  register uintptr_t x30 __asm__("x30") = ra;
  __asm__("hint 7" : "+r"(x30));
  return x30;
}
#endif

static int lu_walk(const tt__uregs *r, uintptr_t lo, uintptr_t hi, uintptr_t *pcs, int max,
                   int skip);

typedef struct walk_counts {
  uint64_t hits, misses, fallbacks;
} walk_counts;

/* The walk behind tt__unwind and tt__unwind_here: the first `skip` frames are not stored. */
__attribute__((no_sanitize("address", "undefined"))) static int
walk(const tt__uregs *r, uintptr_t lo, uintptr_t hi, const char *shadow, uintptr_t *pcs, int max,
     int skip) {
  if (r == NULL || pcs == NULL || max <= 0 || !(r->valid & (1ull << TT__UNW_PC)) ||
      !(r->valid & (1ull << TT__UNW_SP)))
    return 0;
  uintptr_t pc = r->r[TT__UNW_PC], sp = r->r[TT__UNW_SP];
  uintptr_t fp = r->r[TT__UNW_FP];
  bool fp_ok = r->valid & (1ull << TT__UNW_FP);
#if defined(__aarch64__)
  uintptr_t lr = r->r[30];
  bool lr_ok = r->valid & (1ull << 30);
  bool lr_step = false; /* the previous step took the return address from x30 */
#endif
  bool exact = r->exact;
  slot *t = atomic_load_explicit(&g_cache, memory_order_acquire);
  walk_counts wc = {0, 0, 0};
  int n = 0, frame = 0;
  while (pc != 0 && n < max) {
    if (frame++ >= skip)
      pcs[n++] = exact ? pc + 1 : pc;
    uintptr_t key = exact ? pc : pc - 1;
    if (key == 0)
      break; /* no code at 0; and 0 marks an empty cache slot */
    uint64_t w = cache_get(t, key);
    if (w)
      wc.hits++;
    else {
      wc.misses++;
      bool cacheable;
      w = tt__ehf_rule(key, &cacheable);
      if (cacheable) {
        if (t == NULL)
          t = cache_table();
        cache_put(t, key, w);
      }
    }
    unsigned kind = TT__R_KIND(w);
    if (kind == TT__RK_END)
      break;
    if (kind == TT__RK_COMPLEX) {
      /* Beyond a compact rule: libunwind walks the whole stack again from the start (it needs
       * every callee-saved register, which only the starting state has), and its frames replace
       * ours; without it the walk ends here. */
      wc.fallbacks++;
      if (shadow)
        break; /* libunwind would read the live stack, not the copy */
      int k = lu_walk(r, lo, hi, pcs, max, skip);
      if (k > n)
        n = k;
      break;
    }
    uintptr_t cfa;
    if (TT__R_CFA_FP(w)) {
      if (!fp_ok)
        break;
      cfa = fp + (uintptr_t)TT__R_CFA_OFF(w);
    } else {
      cfa = sp + (uintptr_t)TT__R_CFA_OFF(w);
    }
    uintptr_t ra;
#if defined(__aarch64__)
    if (TT__R_RA_LR(w)) {
      if (!lr_ok || lr_step)
        break;
      ra = lr;
    } else if (!rd(cfa + (uintptr_t)TT__R_RA_OFF(w), lo, hi, shadow, &ra)) {
      break;
    }
    if (TT__R_RA_SIGNED(w))
      ra = strip_pac(ra);
    if (cfa < sp || (cfa == sp && !TT__R_RA_LR(w)) || cfa > hi)
      break;
    lr_step = TT__R_RA_LR(w);
    lr_ok = false; /* the caller's x30 was clobbered by its call */
#else
    if (!rd(cfa + (uintptr_t)TT__R_RA_OFF(w), lo, hi, shadow, &ra) || cfa <= sp || cfa > hi)
      break;
#endif
    switch (TT__R_FP_HOW(w)) {
    case TT__FP_SAVED:
      fp_ok = rd(cfa + (uintptr_t)TT__R_FP_OFF(w), lo, hi, shadow, &fp);
      break;
    case TT__FP_LOST:
      fp_ok = false;
      break;
    default:
      break;
    }
    exact = TT__R_SIGNAL(w);
    sp = cfa;
    pc = ra;
  }
  if (wc.hits)
    atomic_fetch_add_explicit(&st_hits, wc.hits, memory_order_relaxed);
  if (wc.misses)
    atomic_fetch_add_explicit(&st_misses, wc.misses, memory_order_relaxed);
  if (wc.fallbacks)
    atomic_fetch_add_explicit(&st_fallbacks, wc.fallbacks, memory_order_relaxed);
  return n;
}

int tt__unwind_copy(const tt__uregs *r, uintptr_t lo, uintptr_t hi, const void *copy,
                    uintptr_t *pcs, int max) {
  if (copy == NULL)
    return 0;
  return walk(r, lo, hi, copy, pcs, max, 0);
}

int tt__unwind(const tt__uregs *r, uintptr_t stack_lo, uintptr_t stack_hi, uintptr_t *pcs,
               int max) {
  return walk(r, stack_lo, stack_hi, NULL, pcs, max, 0);
}

/* Fills r with the caller-visible state at this point of the calling function: its callee-saved
 * registers, sp, and the address of the capturing instruction (exact). */
#if defined(__x86_64__)
#define CAPTURE(u)                                                                                 \
  __asm__ volatile("1: leaq 1b(%%rip), %%rax\n\t"                                                  \
                   "movq %%rax, 128(%0)\n\t"                                                       \
                   "movq %%rbx, 24(%0)\n\t"                                                        \
                   "movq %%rbp, 48(%0)\n\t"                                                        \
                   "movq %%rsp, 56(%0)\n\t"                                                        \
                   "movq %%r12, 96(%0)\n\t"                                                        \
                   "movq %%r13, 104(%0)\n\t"                                                       \
                   "movq %%r14, 112(%0)\n\t"                                                       \
                   "movq %%r15, 120(%0)\n\t"                                                       \
                   :                                                                               \
                   : "r"((u)->r)                                                                   \
                   : "rax", "memory");                                                             \
  (u)->valid = (1u << 3) | (1u << 6) | (1u << 7) | (0xfu << 12) | (1u << 16)
#else
#define CAPTURE(u)                                                                                 \
  __asm__ volatile("adr x16, .\n\t"                                                                \
                   "str x16, [%0, #256]\n\t"                                                       \
                   "mov x17, sp\n\t"                                                               \
                   "str x17, [%0, #248]\n\t"                                                       \
                   "stp x19, x20, [%0, #152]\n\t"                                                  \
                   "stp x21, x22, [%0, #168]\n\t"                                                  \
                   "stp x23, x24, [%0, #184]\n\t"                                                  \
                   "stp x25, x26, [%0, #200]\n\t"                                                  \
                   "stp x27, x28, [%0, #216]\n\t"                                                  \
                   "stp x29, x30, [%0, #232]\n\t"                                                  \
                   :                                                                               \
                   : "r"((u)->r)                                                                   \
                   : "x16", "x17", "memory");                                                      \
  (u)->valid = (0xfffull << 19) | (1ull << 31) | (1ull << 32)
#endif

__attribute__((noinline)) int tt__unwind_here(uintptr_t stack_lo, uintptr_t stack_hi,
                                              uintptr_t *pcs, int max, int skip) {
  tt__uregs r;
  memset(&r, 0, sizeof r);
  CAPTURE(&r);
  r.exact = true;
  int n = walk(&r, stack_lo, stack_hi, NULL, pcs, max, 1 + (skip > 0 ? skip : 0));
  /* Keep this frame (whose registers r describes) alive until the walk is done: no tail call. */
  __asm__ volatile("" ::: "memory");
  return n;
}

void tt__unwind_stats(tt__unw_stats *out) {
  if (out == NULL)
    return;
  out->hits = atomic_load_explicit(&st_hits, memory_order_relaxed);
  out->misses = atomic_load_explicit(&st_misses, memory_order_relaxed);
  out->fallbacks = atomic_load_explicit(&st_fallbacks, memory_order_relaxed);
  out->entries = atomic_load_explicit(&st_entries, memory_order_relaxed);
}

/* ---- libunwind ------------------------------------------------------------------------------ */

#if defined(TT_HAVE_LIBUNWIND)
/* libunwind's walk from r, with the same stopping rules as walk(). Its local unwinder reads
 * memory directly: unlike walk() it trusts the stack (see the fallback's note in HACKING.md). */
static int lu_walk(const tt__uregs *r, uintptr_t lo, uintptr_t hi, uintptr_t *pcs, int max,
                   int skip) {
  ucontext_t uc;
  memset(&uc, 0, sizeof uc);
#if defined(__x86_64__)
  static const int map[17] = {REG_RAX, REG_RDX, REG_RCX, REG_RBX, REG_RSI, REG_RDI,
                              REG_RBP, REG_RSP, REG_R8,  REG_R9,  REG_R10, REG_R11,
                              REG_R12, REG_R13, REG_R14, REG_R15, REG_RIP};
  for (int i = 0; i < 17; i++)
    uc.uc_mcontext.gregs[map[i]] = (greg_t)r->r[i];
#else
  for (int i = 0; i < 31; i++)
    uc.uc_mcontext.regs[i] = r->r[i];
  uc.uc_mcontext.sp = r->r[TT__UNW_SP];
  uc.uc_mcontext.pc = r->r[TT__UNW_PC];
#endif
  unw_cursor_t c;
  if (unw_init_local2(&c, (unw_context_t *)&uc, r->exact ? UNW_INIT_SIGNAL_FRAME : 0) < 0)
    return 0;
  bool exact = r->exact;
  int n = 0, frame = 0;
  unw_word_t prev_sp = 0;
  while (n < max) {
    unw_word_t ip = 0, sp = 0;
    if (unw_get_reg(&c, UNW_REG_IP, &ip) < 0 || unw_get_reg(&c, UNW_REG_SP, &sp) < 0 || ip == 0)
      break;
#if defined(__x86_64__)
    if (frame > 0 && (sp <= prev_sp || sp > hi || sp < lo))
      break;
#else
    if (frame > 0 && (sp < prev_sp || sp > hi || sp < lo))
      break;
#endif
    if (frame++ >= skip)
      pcs[n++] = exact ? ip + 1 : ip;
    exact = unw_is_signal_frame(&c) > 0;
    prev_sp = sp;
    if (unw_step(&c) <= 0)
      break;
  }
  return n;
}

int tt__unwind_libunwind(const tt__uregs *r, uintptr_t stack_lo, uintptr_t stack_hi, uintptr_t *pcs,
                         int max) {
  if (r == NULL || pcs == NULL || max <= 0)
    return 0;
  return lu_walk(r, stack_lo, stack_hi, pcs, max, 0);
}
#else
static int lu_walk(const tt__uregs *r, uintptr_t lo, uintptr_t hi, uintptr_t *pcs, int max,
                   int skip) {
  return 0;
}

int tt__unwind_libunwind(const tt__uregs *r, uintptr_t stack_lo, uintptr_t stack_hi, uintptr_t *pcs,
                         int max) {
  return TT_ENOSYS;
}
#endif
