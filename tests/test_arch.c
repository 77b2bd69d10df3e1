/* SPDX-License-Identifier: MIT */
/* The context switch keeps every piece of state the ABI calls callee-saved: registers, the
 * floating-point control state, and stack alignment for fresh coroutines, on x86_64 and aarch64.
 *
 * Each test runs two coroutines, A (coroutine 1) and B, on one worker, strictly taking turns
 * through tt_yield: while A is suspended with known state, B runs with different state, then A
 * checks that its own state came back, and the other way round. A plain C test cannot see a
 * callee-saved register (the compiler is free to keep a value anywhere across a call), so the
 * register test loads the registers, makes the call that yields and reads them back in one asm
 * statement. Every TEST() exists on both architectures (the CMake list of tests is read from the
 * source text, #if or not); what differs is inside the bodies. */
#include <fenv.h>
#include <stdatomic.h>

#include "test.h"

/* ---- Two coroutines taking turns ---------------------------------------------------------- */

typedef struct duo duo;
struct duo {
  /* Whose turn it is: 0 for A, 1 for B. Release on handing over, acquire on taking over, so each
   * side sees what the other wrote during its turn even if the two ran on different workers;
   * with procs = 1 they share one, and the orders cost nothing there. */
  _Atomic int turn;
  int rounds;
  tt_wg wg;                     /* B's exit, which A waits for */
  void (*setup_a)(duo *d);      /* run by A before B is spawned; may be NULL */
  void (*body)(duo *d, int me); /* each side's turns; calls duo_pass rounds times */
};

/* Hands the turn to the other side and waits (yielding) for it to come back. */
static void duo_pass(duo *d, int me) {
  atomic_store_explicit(&d->turn, !me, memory_order_release);
  while (atomic_load_explicit(&d->turn, memory_order_acquire) != me)
    ASSERT_OK(tt_yield());
}

static void duo_b(void *arg) {
  duo *d = arg;
  while (atomic_load_explicit(&d->turn, memory_order_acquire) != 1)
    ASSERT_OK(tt_yield());
  d->body(d, 1);
  ASSERT_OK(tt_wg_done(&d->wg));
}

/* A's side. The bodies pass alternately, so B's last pass waits for this final hand-over. */
static int duo_a(void *arg) {
  duo *d = arg;
  if (d->setup_a)
    d->setup_a(d);
  ASSERT_OK(tt_wg_add(&d->wg, 1));
  ASSERT_OK(tt_go(duo_b, d));
  d->body(d, 0);
  atomic_store_explicit(&d->turn, 1, memory_order_release);
  ASSERT_OK(tt_wg_wait(&d->wg));
  return 0;
}

/* procs = 1: A and B share a worker, so every pass is a real switch between the two. */
static void duo_run(void (*setup_a)(duo *), void (*body)(duo *, int), int rounds) {
  duo d = {.rounds = rounds, .setup_a = setup_a, .body = body};
  atomic_init(&d.turn, 0);
  tt_wg_init(&d.wg);
  tt_test_run(duo_a, &d, 1);
}

/* ---- Callee-saved registers --------------------------------------------------------------- */

#if defined(__x86_64__)
#define NGP 5 /* rbx, r12-r15 */
#define NFP 0
#elif defined(__aarch64__)
#define NGP 10 /* x19-x28 */
#define NFP 8  /* d8-d15 */
#endif

/* The registers' values in and out of regs_around(), in the order the asm expects. The frame
 * pointer (rbp, x29) is not loaded with a test value: unwinders walking the frame chain (the
 * sanitizers' fast unwinder, a dump) would follow it. Its value before and after the call is
 * recorded instead. */
typedef struct regs {
  uint64_t gp[NGP];
  uint64_t fp[NFP > 0 ? NFP : 1];
  uint64_t frame_before, frame_after;
} regs;

/* Loads r's values into the callee-saved registers, calls fn(arg), stores the registers back into
 * r. The call is a real ABI call made from inside the asm: the asm saves the frame pointer and
 * return address itself, declares every caller-saved register clobbered (the callee may change
 * them), and declares the callee-saved ones clobbered too so the compiler saves its own values of
 * them around the statement and never allocates an operand there. fn, arg and r are bound to
 * fixed caller-saved registers as in/out operands, because the call destroys them. */
static void regs_around(regs *r_, void (*fn_)(void *), void *arg_) {
#if defined(__x86_64__)
  _Static_assert(__builtin_offsetof(regs, frame_before) == 48, "asm offsets");
  register regs *r __asm__("rax") = r_;
  register void (*fn)(void *) __asm__("rcx") = fn_;
  register void *arg __asm__("rdi") = arg_;
  /* The red zone below rsp may hold the compiler's data, so the asm steps over it first; then it
   * aligns rsp to 16 for the call, keeping the unaligned value on the stack to undo it. */
  __asm__ volatile("lea -128(%%rsp), %%rsp\n\t"
                   "push %%rbp\n\t"
                   "push %%rax\n\t"
                   "mov %%rsp, %%rdx\n\t"
                   "and $-16, %%rsp\n\t"
                   "push %%rdx\n\t"
                   "push %%rdx\n\t"
                   "mov 0(%%rax), %%rbx\n\t"
                   "mov 8(%%rax), %%r12\n\t"
                   "mov 16(%%rax), %%r13\n\t"
                   "mov 24(%%rax), %%r14\n\t"
                   "mov 32(%%rax), %%r15\n\t"
                   "mov %%rbp, 48(%%rax)\n\t"
                   "call *%%rcx\n\t"
                   "mov (%%rsp), %%rsp\n\t"
                   "pop %%rax\n\t"
                   "mov %%rbx, 0(%%rax)\n\t"
                   "mov %%r12, 8(%%rax)\n\t"
                   "mov %%r13, 16(%%rax)\n\t"
                   "mov %%r14, 24(%%rax)\n\t"
                   "mov %%r15, 32(%%rax)\n\t"
                   "mov %%rbp, 56(%%rax)\n\t"
                   "pop %%rbp\n\t"
                   "lea 128(%%rsp), %%rsp"
                   : "+r"(r), "+r"(fn), "+r"(arg)
                   :
                   : "rdx", "rsi", "r8", "r9", "r10", "r11", "rbx", "r12", "r13", "r14", "r15",
                     "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                     "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)",
                     "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "cc", "memory");
#elif defined(__aarch64__)
  _Static_assert(__builtin_offsetof(regs, fp) == 80, "asm offsets");
  _Static_assert(__builtin_offsetof(regs, frame_before) == 144, "asm offsets");
  register regs *r __asm__("x0") = r_;
  register void (*fn)(void *) __asm__("x1") = fn_;
  register void *arg __asm__("x2") = arg_;
  /* AAPCS64 has no red zone and sp is always 16-aligned, so a 32-byte frame is all it takes. */
  __asm__ volatile("sub sp, sp, #32\n\t"
                   "stp x29, x30, [sp]\n\t"
                   "str x0, [sp, #16]\n\t"
                   "ldp x19, x20, [x0, #0]\n\t"
                   "ldp x21, x22, [x0, #16]\n\t"
                   "ldp x23, x24, [x0, #32]\n\t"
                   "ldp x25, x26, [x0, #48]\n\t"
                   "ldp x27, x28, [x0, #64]\n\t"
                   "ldp d8, d9, [x0, #80]\n\t"
                   "ldp d10, d11, [x0, #96]\n\t"
                   "ldp d12, d13, [x0, #112]\n\t"
                   "ldp d14, d15, [x0, #128]\n\t"
                   "str x29, [x0, #144]\n\t"
                   "mov x0, x2\n\t"
                   "blr x1\n\t"
                   "ldr x0, [sp, #16]\n\t"
                   "stp x19, x20, [x0, #0]\n\t"
                   "stp x21, x22, [x0, #16]\n\t"
                   "stp x23, x24, [x0, #32]\n\t"
                   "stp x25, x26, [x0, #48]\n\t"
                   "stp x27, x28, [x0, #64]\n\t"
                   "stp d8, d9, [x0, #80]\n\t"
                   "stp d10, d11, [x0, #96]\n\t"
                   "stp d12, d13, [x0, #112]\n\t"
                   "stp d14, d15, [x0, #128]\n\t"
                   "str x29, [x0, #152]\n\t"
                   "ldp x29, x30, [sp]\n\t"
                   "add sp, sp, #32"
                   : "+r"(r), "+r"(fn), "+r"(arg)
                   :
                   : "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
                     "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25",
                     "x26", "x27", "x28", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8",
                     "v9", "v10", "v11", "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19",
                     "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30",
                     "v31", "cc", "memory");
#endif
}

typedef struct pass_arg {
  duo *d;
  int me;
} pass_arg;

static void pass_cb(void *arg) {
  pass_arg *p = arg;
  duo_pass(p->d, p->me);
}

/* A value no other register, side or round uses, with every byte nonzero. */
static uint64_t pattern(int me, int kind, int reg, int round) {
  return 0x8080808080808080u ^ ((uint64_t)(me + 1) << 56) ^ ((uint64_t)(kind + 1) << 48) ^
         ((uint64_t)(reg + 1) << 40) ^ (uint64_t)round * 0x10001u;
}

static void regs_body(duo *d, int me) {
  pass_arg pa = {d, me};
  for (int i = 0; i < d->rounds; i++) {
    regs r, want;
    memset(&r, 0, sizeof r);
    for (int k = 0; k < NGP; k++)
      r.gp[k] = pattern(me, 0, k, i);
    for (int k = 0; k < NFP; k++)
      r.fp[k] = pattern(me, 1, k, i);
    want = r;
    regs_around(&r, pass_cb, &pa);
    for (int k = 0; k < NGP; k++)
      ASSERT_UEQ(r.gp[k], want.gp[k]);
    for (int k = 0; k < NFP; k++)
      ASSERT_UEQ(r.fp[k], want.fp[k]);
    ASSERT_UEQ(r.frame_after, r.frame_before);
  }
}

/* x86_64: rbx, r12-r15 (and rbp); aarch64: x19-x28, d8-d15 (and x29). */
TEST(arch_switch_keeps_callee_saved_regs) { duo_run(NULL, regs_body, (int)SCALED(2000, 100)); }

/* ---- Rounding mode ------------------------------------------------------------------------ */

/* num/den in the current rounding mode; volatile so that it is computed here, at run time. */
static double quotient(double num, double den) {
  volatile double n = num, d = den;
  return n / d;
}

static void rounding_setup_a(duo *d) { ASSERT_EQ(fesetround(FE_UPWARD), 0); }

static void rounding_body(duo *d, int me) {
  if (me == 1) {
    /* A fresh coroutine starts in the default mode, whatever its spawner's. */
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    ASSERT_EQ(fesetround(FE_DOWNWARD), 0);
  }
  /* The nearest doubles to 1/3 and 1/10 lie below and above them, so upward rounding changes the
   * first and downward the second (the constants are folded at compile time, to nearest). */
  int mode = me == 0 ? FE_UPWARD : FE_DOWNWARD;
  double den = me == 0 ? 3.0 : 10.0;
  double q = quotient(1.0, den);
  if (me == 0)
    ASSERT(q > 1.0 / 3.0);
  else
    ASSERT(q < 1.0 / 10.0);
  for (int i = 0; i < d->rounds; i++) {
    duo_pass(d, me);
    ASSERT_EQ(fegetround(), mode);
    /* The mode is in force, not only readable. */
    ASSERT(quotient(1.0, den) == q);
  }
  ASSERT_EQ(fesetround(FE_TONEAREST), 0);
}

TEST(arch_switch_keeps_rounding_mode) {
  duo_run(rounding_setup_a, rounding_body, (int)SCALED(1000, 50));
}

/* ---- The whole floating-point control state ----------------------------------------------- */

/* Flush-to-zero is visible in arithmetic: half the smallest normal double is subnormal, or 0. */
static int flushes_to_zero(void) {
  volatile double tiny = 0x1p-1022, two = 2.0;
  return tiny / two == 0.0;
}

#if defined(__x86_64__)
/* MXCSR without its sticky exception flags (bits 0-5), which arithmetic sets. */
static uint32_t mxcsr_get(void) {
  uint32_t v;
  __asm__ volatile("stmxcsr %0" : "=m"(v));
  return v & ~0x3fu;
}
static void mxcsr_set(uint32_t v) { __asm__ volatile("ldmxcsr %0" : : "m"(v)); }
static uint16_t x87cw_get(void) {
  uint16_t v;
  __asm__ volatile("fnstcw %0" : "=m"(v));
  return v;
}
static void x87cw_set(uint16_t v) { __asm__ volatile("fldcw %0" : : "m"(v)); }
#define MXCSR_DEFAULT 0x1f80u /* all exceptions masked, round to nearest */
#define X87CW_DEFAULT 0x037fu /* all exceptions masked, 64-bit precision, round to nearest */
#elif defined(__aarch64__)
static uint64_t fpcr_get(void) {
  uint64_t v;
  __asm__ volatile("mrs %0, fpcr" : "=r"(v));
  return v;
}
static void fpcr_set(uint64_t v) { __asm__ volatile("msr fpcr, %0" : : "r"(v)); }
#define FPCR_FZ (1u << 24)
#define FPCR_DN (1u << 25)
#define FPCR_RZ (3u << 22) /* RMode: round toward zero */
#endif

/* A: flush-to-zero (and DAZ / default NaN) plus, on x86, 24-bit x87 precision.
 * B: round toward zero plus, on x86, 53-bit x87 precision. Neither matches the default. */
static void fpctl_enter(int me) {
#if defined(__x86_64__)
  mxcsr_set(me == 0 ? MXCSR_DEFAULT | 0x8040u : MXCSR_DEFAULT | 0x6000u);
  x87cw_set(me == 0 ? 0x007fu : 0x027fu);
#elif defined(__aarch64__)
  fpcr_set(me == 0 ? FPCR_FZ | FPCR_DN : FPCR_RZ);
#endif
}

static void fpctl_check(int me) {
#if defined(__x86_64__)
  ASSERT_UEQ(mxcsr_get(), me == 0 ? MXCSR_DEFAULT | 0x8040u : MXCSR_DEFAULT | 0x6000u);
  ASSERT_UEQ(x87cw_get(), me == 0 ? 0x007fu : 0x027fu);
  /* 24-bit x87 precision is in force: 1/3 in long double has no more bits than a float. */
  volatile long double one = 1.0L, three = 3.0L;
  long double q = one / three;
  ASSERT((q == (long double)(float)q) == (me == 0));
#elif defined(__aarch64__)
  ASSERT_UEQ(fpcr_get(), me == 0 ? FPCR_FZ | FPCR_DN : FPCR_RZ);
#endif
  ASSERT_EQ(flushes_to_zero(), me == 0);
}

static void fpctl_default(void) {
#if defined(__x86_64__)
  mxcsr_set(MXCSR_DEFAULT);
  x87cw_set(X87CW_DEFAULT);
#elif defined(__aarch64__)
  fpcr_set(0);
#endif
}

static void fpctl_setup_a(duo *d) { fpctl_enter(0); }

static void fpctl_body(duo *d, int me) {
  if (me == 1) {
    /* A fresh coroutine starts with the default control state, whatever its spawner's. */
#if defined(__x86_64__)
    ASSERT_UEQ(mxcsr_get(), MXCSR_DEFAULT);
    ASSERT_UEQ(x87cw_get(), X87CW_DEFAULT);
#elif defined(__aarch64__)
    ASSERT_UEQ(fpcr_get(), 0);
#endif
    ASSERT_EQ(flushes_to_zero(), 0);
    fpctl_enter(1);
  }
  fpctl_check(me);
  for (int i = 0; i < d->rounds; i++) {
    duo_pass(d, me);
    fpctl_check(me);
  }
  fpctl_default();
}

/* x86_64: MXCSR (FTZ, DAZ, rounding) and the x87 control word (precision); aarch64: FPCR (FZ, DN,
 * RMode). */
TEST(arch_switch_keeps_fp_control) { duo_run(fpctl_setup_a, fpctl_body, (int)SCALED(1000, 50)); }

/* ---- Stack alignment ---------------------------------------------------------------------- */

typedef struct aligned_arg {
  uintptr_t addr;
  tt_wg wg;
} aligned_arg;

static void aligned_child(void *arg) {
  aligned_arg *x = arg;
  /* The compiler places this buffer relative to the stack pointer assuming the ABI's alignment at
   * entry (16 bytes on both), so a misaligned fresh stack shows up in its address; the empty asm
   * hides the address from the optimiser, which would otherwise fold the test to true. */
  _Alignas(16) volatile char buf[16];
  uintptr_t a = (uintptr_t)buf;
  __asm__("" : "+r"(a));
  buf[0] = 1;
  /* Formatting a double uses aligned vector stores on x86_64 and would fault if misaligned. */
  char s[32];
  snprintf(s, sizeof s, "%.3f", 1.0 / 3.0);
  ASSERT_STR_EQ(s, "0.333");
  x->addr = a;
  ASSERT_OK(tt_wg_done(&x->wg));
}

static int aligned_main(void *arg) {
  for (int i = 0; i < 8; i++) {
    aligned_arg x = {.addr = 1};
    tt_wg_init(&x.wg);
    ASSERT_OK(tt_wg_add(&x.wg, 1));
    ASSERT_OK(tt_go(aligned_child, &x));
    ASSERT_OK(tt_wg_wait(&x.wg));
    ASSERT_EQ(x.addr % 16, 0);
  }
  return 0;
}

TEST(arch_fresh_coroutine_stack_aligned) { tt_test_run(aligned_main, NULL, 1); }
