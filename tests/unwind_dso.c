/* SPDX-License-Identifier: MIT */
/* A shared object the unwinder's test dlopens after the unwinder has cached its module table:
 * frames in a module loaded later must unwind too. Built -O2 -fomit-frame-pointer. */

#define NOINLINE __attribute__((noinline, noclone))

NOINLINE void unwind_dso_inner(void (*cb)(void *), void *arg) {
  cb(arg);
  __asm__ volatile("" ::: "memory");
}

void unwind_dso_call(void (*cb)(void *), void *arg) {
  unwind_dso_inner(cb, arg);
  __asm__ volatile("" ::: "memory");
}
