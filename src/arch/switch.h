/* SPDX-License-Identifier: MIT */
/* The context-switch contract every src/arch/switch_<arch>.S implements.
 *
 * A suspended context is nothing but a stack pointer: tt__switch pushes the callee-saved state the
 * ABI requires (and the floating-point control state) onto the current stack, stores the stack
 * pointer, loads the other one and pops its state. Everything caller-saved is already dead at the
 * call, so this is the minimum a switch can save. The layout of the saved area is fixed per
 * architecture (tt__saved_regs below) so that the diagnostics can unwind a suspended coroutine
 * from its saved registers (src/diag, and tools/gdb/tether.py, which has its own copy of both
 * layouts). */
#ifndef TT_ARCH_SWITCH_H
#define TT_ARCH_SWITCH_H

#include <stdint.h>

/* Saves the caller's context on its stack, stores its stack pointer in *save, then resumes the
 * context whose saved stack pointer is `to`. Returns when another context switches back to *save.
 * The store to *save happens before the first load from `to`'s stack, so a context may switch to
 * itself only through another one. */
void tt__switch(void **save, void *to);

/* Builds a fresh context at the top of a stack whose highest usable address is `hi` (rounded
 * down to 16 bytes) and returns its stack pointer: switching to it calls entry() on an
 * ABI-aligned stack with a zero return address (which ends every unwind) and with the default
 * floating-point control state. entry must never return. */
void *tt__ctx_make(void *hi, void (*entry)(void));

/* Abandons the caller's frames and starts entry() on the same stack, from its top `hi` (rounded
 * down to 16 bytes), as a fresh context would start: zero return address, default floating-point
 * control state. For handing an exiting coroutine's stack straight to the next one. Never
 * returns. */
__attribute__((noreturn)) void tt__ctx_restart(void *hi, void (*entry)(void));

#if defined(__x86_64__)
/* x86_64 SysV: what lies at a saved stack pointer, lowest address first. */
typedef struct tt__saved_regs {
  uint32_t mxcsr;
  uint16_t fpucw;
  uint16_t pad;
  uint64_t r15, r14, r13, r12, rbx, rbp;
  uint64_t pc; /* return address into the code that called tt__switch */
} tt__saved_regs;
#define TT_SAVED_SP(saved) ((uintptr_t)(saved) + sizeof(tt__saved_regs))
#elif defined(__aarch64__)
/* AAPCS64: what lies at a saved stack pointer, lowest address first. */
typedef struct tt__saved_regs {
  uint64_t d8, d9, d10, d11, d12, d13, d14, d15;
  uint64_t x19, x20, x21, x22, x23, x24, x25, x26, x27, x28;
  uint64_t fp; /* x29 */
  uint64_t pc; /* x30: return address into the code that called tt__switch */
  uint64_t fpcr;
  uint64_t pad;
} tt__saved_regs;
#define TT_SAVED_SP(saved) ((uintptr_t)(saved) + sizeof(tt__saved_regs))
#else
#error "tether supports x86_64 and aarch64"
#endif

#endif
