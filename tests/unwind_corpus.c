/* SPDX-License-Identifier: MIT */
/* The unwinder's corpus: frame shapes -O2 -fomit-frame-pointer code produces (CMake builds this
 * file with those flags), each a coroutine body that parks at the bottom so the test can unwind
 * it while it is suspended. Every function is noinline and noclone and does work after its call,
 * so that no call becomes a tail call or a loop and the expected frames are exactly the source's
 * calls. */
#include <alloca.h>
#include <stdlib.h>
#include <string.h>

#include "unwind_corpus.h"

#define NOINLINE __attribute__((noinline, noclone, used))
#define BARRIER() __asm__ volatile("" ::: "memory")

tt_chan *corpus_gate;
atomic_int corpus_stop;
/* Thread-local: the corpus runs on several threads at once and only needs its stores kept. */
_Thread_local volatile long corpus_sink;

NOINLINE void corpus_park(void) {
  int v;
  tt_chan_recv(corpus_gate, &v, NULL);
  BARRIER();
  corpus_sink++;
}

/* Deep recursion. */
NOINLINE int corpus_rec(int n) {
  if (n == 0) {
    corpus_park();
    BARRIER();
    return 1;
  }
  int r = corpus_rec(n - 1);
  corpus_sink = r;
  BARRIER();
  return r + n;
}

NOINLINE void corpus_body_recursion(void *arg) {
  corpus_sink += corpus_rec(20);
  BARRIER();
}

/* A variable-length frame: the CFA moves to the frame pointer even without -fno-omit-fp. */
NOINLINE int corpus_vla(int n) {
  char buf[n];
  memset(buf, n, (size_t)n);
  char *more = alloca((size_t)n * 2);
  memset(more, 1, (size_t)n * 2);
  corpus_park();
  BARRIER();
  return buf[n / 2] + more[n];
}

NOINLINE void corpus_body_vla(void *arg) {
  corpus_sink += corpus_vla(100 + (int)(corpus_sink & 7));
  BARRIER();
}

/* Every callee-saved register in use across the call. */
#if defined(__x86_64__)
#define CLOBBER_CALLEE_SAVED() __asm__ volatile("" ::: "rbx", "r12", "r13", "r14", "r15", "memory")
#else
#define CLOBBER_CALLEE_SAVED()                                                                     \
  __asm__ volatile("" ::                                                                           \
                       : "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",     \
                         "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15", "memory")
#endif

NOINLINE long corpus_callee_saved(long a) {
  long b = a * 3, c = a ^ 0x55, d = a + 17, e = a * a, f = a - 9, g = a << 3, h = a | 0x100;
  CLOBBER_CALLEE_SAVED();
  corpus_park();
  CLOBBER_CALLEE_SAVED();
  return a + b * c + d * e + f * g + h;
}

NOINLINE void corpus_body_callee_saved(void *arg) {
  corpus_sink += corpus_callee_saved(corpus_sink + 5);
  BARRIER();
}

/* A large frame (sub rsp, big). */
NOINLINE int corpus_big_frame(int k) {
  volatile char buf[48 * 1024];
  for (int i = 0; i < (int)sizeof buf; i += 4096)
    buf[i] = (char)(i + k);
  corpus_park();
  BARRIER();
  return buf[k & 4095] + buf[sizeof buf - 1];
}

NOINLINE void corpus_body_big_frame(void *arg) {
  corpus_sink += corpus_big_frame((int)corpus_sink);
  BARRIER();
}

/* Calls through function pointers. */
NOINLINE int corpus_fp_b(int x) {
  corpus_park();
  BARRIER();
  return x + 1;
}

int (*volatile corpus_fp_b_ptr)(int) = corpus_fp_b;

NOINLINE int corpus_fp_a(int x) {
  int r = corpus_fp_b_ptr(x * 2);
  BARRIER();
  return r + 3;
}

int (*volatile corpus_fp_a_ptr)(int) = corpus_fp_a;

NOINLINE void corpus_body_fnptr(void *arg) {
  corpus_sink += corpus_fp_a_ptr(7);
  BARRIER();
}

/* A frame inside the C library: qsort's comparator parks. */
static atomic_int corpus_cmp_parked;

NOINLINE int corpus_cmp_park(const void *a, const void *b) {
  if (atomic_exchange(&corpus_cmp_parked, 1) == 0)
    corpus_park();
  BARRIER();
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

NOINLINE int corpus_sort(void) {
  int v[16];
  for (int i = 0; i < 16; i++)
    v[i] = (i * 7919) % 16;
  qsort(v, 16, sizeof v[0], corpus_cmp_park);
  BARRIER();
  return v[0];
}

NOINLINE void corpus_body_qsort(void *arg) {
  corpus_sink += corpus_sort();
  BARRIER();
}

/* A noinline chain. */
NOINLINE int corpus_chain4(int x) {
  corpus_park();
  BARRIER();
  return x * 2;
}
NOINLINE int corpus_chain3(int x) {
  int r = corpus_chain4(x + 1);
  BARRIER();
  return r - 1;
}
NOINLINE int corpus_chain2(int x) {
  int r = corpus_chain3(x + 2);
  BARRIER();
  return r ^ 5;
}
NOINLINE int corpus_chain1(int x) {
  int r = corpus_chain2(x + 3);
  BARRIER();
  return r | 1;
}

NOINLINE void corpus_body_chain(void *arg) {
  corpus_sink += corpus_chain1(1);
  BARRIER();
}

/* Parked in tt_sleep rather than a channel. */
NOINLINE void corpus_sleeper(void) {
  while (!atomic_load(&corpus_stop))
    tt_sleep(TT_MSEC);
  BARRIER();
}

NOINLINE void corpus_body_sleep(void *arg) {
  corpus_sleeper();
  BARRIER();
  corpus_sink++;
}

/* A frame no compact rule can express: a hand-written trampoline whose CFA is based on a
 * callee-saved register other than sp and fp (as a dynamically realigned stack's is). */
void corpus_complex_tramp(void (*fn)(void *), void *arg);
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl corpus_complex_tramp\n"
        ".type corpus_complex_tramp, @function\n"
        ".p2align 4\n"
        "corpus_complex_tramp:\n"
        ".cfi_startproc\n"
        "pushq %rbx\n"
        ".cfi_def_cfa_offset 16\n"
        ".cfi_offset rbx, -16\n"
        "movq %rsp, %rbx\n"
        ".cfi_def_cfa_register rbx\n"
        "subq $64, %rsp\n"
        "andq $-16, %rsp\n"
        "movq %rdi, %rax\n"
        "movq %rsi, %rdi\n"
        "call *%rax\n"
        "movq %rbx, %rsp\n"
        ".cfi_def_cfa_register rsp\n"
        "popq %rbx\n"
        ".cfi_def_cfa_offset 8\n"
        "ret\n"
        ".cfi_endproc\n"
        ".size corpus_complex_tramp, .-corpus_complex_tramp\n");
#else
__asm__(".text\n"
        ".globl corpus_complex_tramp\n"
        ".type corpus_complex_tramp, %function\n"
        ".p2align 4\n"
        "corpus_complex_tramp:\n"
        ".cfi_startproc\n"
        "stp x29, x30, [sp, #-32]!\n"
        ".cfi_def_cfa_offset 32\n"
        ".cfi_offset x29, -32\n"
        ".cfi_offset x30, -24\n"
        "str x19, [sp, #16]\n"
        ".cfi_offset x19, -16\n"
        "mov x19, sp\n"
        ".cfi_def_cfa_register x19\n"
        "sub sp, sp, #64\n"
        "mov x16, x0\n"
        "mov x0, x1\n"
        "blr x16\n"
        "mov sp, x19\n"
        ".cfi_def_cfa_register sp\n"
        "ldr x19, [sp, #16]\n"
        "ldp x29, x30, [sp], #32\n"
        ".cfi_restore x19\n"
        ".cfi_restore x29\n"
        ".cfi_restore x30\n"
        ".cfi_def_cfa_offset 0\n"
        "ret\n"
        ".cfi_endproc\n"
        ".size corpus_complex_tramp, .-corpus_complex_tramp\n");
#endif

NOINLINE void corpus_complex_inner(void *arg) {
  corpus_park();
  BARRIER();
  corpus_sink++;
}

NOINLINE void corpus_body_complex(void *arg) {
  corpus_complex_tramp(corpus_complex_inner, arg);
  BARRIER();
  corpus_sink++;
}

#define REC21                                                                                      \
  "corpus_rec", "corpus_rec", "corpus_rec", "corpus_rec", "corpus_rec", "corpus_rec",              \
      "corpus_rec", "corpus_rec", "corpus_rec", "corpus_rec", "corpus_rec", "corpus_rec",          \
      "corpus_rec", "corpus_rec", "corpus_rec", "corpus_rec", "corpus_rec", "corpus_rec",          \
      "corpus_rec", "corpus_rec", "corpus_rec"

#define CASE(n, b, ...)                                                                            \
  {                                                                                                \
    .name = n, .body = b, .expect = { __VA_ARGS__ }                                                \
  }
const corpus_case corpus_cases[] = {
    CASE("recursion", corpus_body_recursion, "corpus_park", REC21, "corpus_body_recursion"),
    CASE("vla", corpus_body_vla, "corpus_park", "corpus_vla", "corpus_body_vla"),
    CASE("callee_saved", corpus_body_callee_saved, "corpus_park", "corpus_callee_saved",
         "corpus_body_callee_saved"),
    CASE("big_frame", corpus_body_big_frame, "corpus_park", "corpus_big_frame",
         "corpus_body_big_frame"),
    CASE("fnptr", corpus_body_fnptr, "corpus_park", "corpus_fp_b", "corpus_fp_a",
         "corpus_body_fnptr"),
    CASE("qsort", corpus_body_qsort, "corpus_park", "corpus_cmp_park", "*", "corpus_sort",
         "corpus_body_qsort"),
    CASE("chain", corpus_body_chain, "corpus_park", "corpus_chain4", "corpus_chain3",
         "corpus_chain2", "corpus_chain1", "corpus_body_chain"),
    CASE("sleep", corpus_body_sleep, "corpus_sleeper", "corpus_body_sleep"),
    {.name = "complex",
     .body = corpus_body_complex,
     .expect = {"corpus_park", "corpus_complex_inner", "corpus_complex_tramp",
                "corpus_body_complex"},
     .complex = true,
     .cut_after = 2},
};
const int corpus_ncases = (int)(sizeof corpus_cases / sizeof corpus_cases[0]);

/* ---- Plain-thread chains ------------------------------------------------------------------- */

NOINLINE void corpus_spin_leaf(atomic_int *stop, atomic_int *spinning) {
  atomic_store(spinning, 1);
  while (!atomic_load_explicit(stop, memory_order_relaxed))
    corpus_sink++;
}

NOINLINE void corpus_spin_mid(atomic_int *stop, atomic_int *spinning) {
  corpus_spin_leaf(stop, spinning);
  BARRIER();
  corpus_sink++;
}

NOINLINE void corpus_spin_outer(atomic_int *stop, atomic_int *spinning) {
  corpus_spin_mid(stop, spinning);
  BARRIER();
  corpus_sink++;
}

NOINLINE void corpus_rec_here(int depth, void (*fn)(void *), void *arg) {
  if (depth <= 0)
    fn(arg);
  else
    corpus_rec_here(depth - 1, fn, arg);
  BARRIER();
  corpus_sink++;
}

NOINLINE void corpus_recurse_then(int depth, void (*fn)(void *), void *arg) {
  corpus_rec_here(depth, fn, arg);
  BARRIER();
}
