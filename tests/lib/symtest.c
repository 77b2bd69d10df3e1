/* SPDX-License-Identifier: MIT */
/* The symbolizer test's shared library (tests/test_symbol.c): built with -g, loaded with dlopen
 * after the symbolizer has listed the modules, so that the list has to be refreshed. */
#include <stdint.h>

/* Calls record(ra) (which stores its return address, an address in this function) and returns
 * the line of the call. */
__attribute__((visibility("default"), noinline)) int
tt_symtest_lib_call(void (*record)(uintptr_t *), uintptr_t *ra) {
  int line = (record(ra), __LINE__); /* the call and its line on one line */
  __asm__ volatile("" ::: "memory"); /* no tail call: the return address stays in here */
  return line;
}
