/* SPDX-License-Identifier: MIT */
/* Programs that must die (or exit) a given way: their stderr and exit status. */
#include <sys/wait.h>

#include "test.h"

static int run_crash(const char *prog, const char *arg, const char *debug, char **out) {
  char path[4200];
  snprintf(path, sizeof path, "%s/crash-%s", tt_test_bindir(), prog);
  char dbg[256];
  snprintf(dbg, sizeof dbg, "TT_DEBUG=%s", debug ? debug : "");
  /* Under ASan our handler reports the overflow only if ASan leaves SIGSEGV alone. */
  /* Crash reports symbolize inside the signal handler (an alarm ends them if they hang): TSan
   * must not report that. */
  char *env[] = {dbg, "ASAN_OPTIONS=handle_segv=0:detect_leaks=0",
                 "TSAN_OPTIONS=report_signal_unsafe=0", NULL};
  char *argv[] = {path, (char *)arg, NULL};
  return tt_test_spawn(argv, env, out);
}

static void expect_overflow(const char *mode, const char *debug, const char *how) {
  char *out;
  int st = run_crash("overflow", mode, debug, &out);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 2)
    tt_test_fail(__FILE__, __LINE__, "%s: status %#x, output:\n%s", mode, st, out);
  ASSERT_CONTAINS(out, "fatal error: stack overflow");
  ASSERT_CONTAINS(out, "runtime: coroutine 2 (\"deep-diver\") overflowed its 65536-byte");
  ASSERT_CONTAINS(out, how);
  ASSERT_CONTAINS(out, "goroutine 2 [running]:\n");
  ASSERT_CONTAINS(out, "created by body in goroutine 1\n\t");
  if (tt_test_have_dwarf())
    ASSERT_CONTAINS(out, "tests/crash/overflow.c:");
  /* A guard-page hit is unwound from the fault's context: the recursion, down to its start. */
  if (strcmp(mode, "guarded") == 0) {
    ASSERT_CONTAINS(out, "goroutine 2 [running]:\ndeep(...)\n\t");
    ASSERT_CONTAINS(out, "overflower(...)\n\t");
  }
  ASSERT(strstr(out, "survived") == NULL);
  free(out);
}

TEST(crash_stack_overflow_guard_page) {
  expect_overflow("guarded", NULL, "stack: guard page hit at 0x");
}

TEST(crash_stack_overflow_unguarded_at_switch) {
  expect_overflow("unguarded", "stackguard=0", "unguarded stack: found at a switch");
}

TEST(crash_stack_overflow_canary) {
  expect_overflow("canary", "stackguard=0,stackcanary=1", "unguarded stack: found at a switch");
}

TEST(tt_main_exits_with_mains_status) {
  char *out;
  int st = run_crash("main_exit", "", NULL, &out);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 3)
    tt_test_fail(__FILE__, __LINE__, "status %#x, output:\n%s", st, out);
  ASSERT_CONTAINS(out, "main returns 3 with 101 coroutines alive");
  free(out);
}
