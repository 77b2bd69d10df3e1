/* SPDX-License-Identifier: MIT */
/* Crash reports and SIGQUIT dumps: a child process's output and exit status. */
#include <signal.h>
#include <sys/wait.h>

#include "test.h"

static int run_dump(const char *mode, const char *traceback, const char *sigquit, char **out) {
  char path[4200];
  snprintf(path, sizeof path, "%s/crash-dump", tt_test_bindir());
  char tb[64], sq[64];
  snprintf(tb, sizeof tb, "TT_TRACEBACK=%s", traceback ? traceback : "single");
  snprintf(sq, sizeof sq, "TT_SIGQUIT=%s", sigquit ? sigquit : "exit");
  /* Sanitizers leave these signals to us. */
  char *env[] = {tb, sq,
                 "ASAN_OPTIONS=handle_segv=0:handle_abort=0:handle_sigill=0:handle_sigfpe=0:"
                 "handle_sigbus=0:detect_leaks=0",
                 "TSAN_OPTIONS=handle_segv=0:handle_abort=0:handle_sigill=0:handle_sigfpe=0:"
                 "handle_sigbus=0:report_signal_unsafe=0",
                 NULL};
  char *argv[] = {path, (char *)mode, NULL};
  return tt_test_spawn(argv, env, out);
}

static void expect_exit(int st, int code, const char *out) {
  if (!WIFEXITED(st) || WEXITSTATUS(st) != code)
    tt_test_fail(__FILE__, __LINE__, "status %#x, want exit %d; output:\n%s", st, code, out);
}

/* The crashing coroutine's report: header, its stack down from the crashing function. */
static void expect_crash(const char *mode, const char *header, const char *frame) {
  char *out;
  int st = run_dump(mode, NULL, NULL, &out);
  printf("%s", out);
  expect_exit(st, 2, out);
  ASSERT_CONTAINS(out, header);
  ASSERT_CONTAINS(out, "\nPC=0x");
  ASSERT_CONTAINS(out, " m=");
  ASSERT_CONTAINS(out, "goroutine 3 [running]:\n");
  ASSERT_CONTAINS(out, frame);
  ASSERT_CONTAINS(out, "crasher(...)\n\t");
  if (tt_test_have_dwarf())
    ASSERT_CONTAINS(out, "tests/crash/dump.c:");
  ASSERT_CONTAINS(out, "created by body in goroutine 1\n");
  /* TT_TRACEBACK=single: only the crashing coroutine. */
  ASSERT(strstr(out, "goroutine 2 [") == NULL);
  ASSERT(strstr(out, "survived") == NULL);
  free(out);
}

TEST(crash_segv_reports_coroutine) {
  expect_crash("segv", "SIGSEGV: segmentation violation\nPC=0x", "crash_deref(...)\n\t");
  char *out;
  run_dump("segv", NULL, NULL, &out);
  ASSERT_CONTAINS(out, " addr=0x0\n");
  free(out);
}

TEST(crash_abort_reports_coroutine) {
  expect_crash("abort", "SIGABRT: abort\nPC=0x", "crash_now(...)\n\t");
}

TEST(crash_fpe_reports_coroutine) {
#if defined(__x86_64__)
  expect_crash("fpe", "SIGFPE: floating-point exception\nPC=0x", "crash_now(...)\n\t");
#else
  printf("skipped: integer division by zero does not trap on this architecture\n");
#endif
}

TEST(crash_ill_reports_coroutine) {
  expect_crash("ill", "SIGILL: illegal instruction\nPC=0x", "crash_now(...)\n\t");
}

TEST(crash_trap_reports_coroutine) {
#if defined(__x86_64__)
  expect_crash("trap", "SIGILL: illegal instruction\nPC=0x", "crash_now(...)\n\t");
#else
  expect_crash("trap", "SIGTRAP: trace trap\nPC=0x", "crash_now(...)\n\t");
#endif
}

TEST(crash_bus_reports_coroutine) {
  expect_crash("bus", "SIGBUS: bus error\nPC=0x", "crash_now(...)\n\t");
}

TEST(crash_traceback_all_none_crash) {
  char *out;
  int st = run_dump("segv", "all", NULL, &out);
  expect_exit(st, 2, out);
  ASSERT_CONTAINS(out, "goroutine 3 [running]:\n");
  ASSERT_CONTAINS(out, "goroutine 2 [chan receive]:\ntt_chan_recv(...)\n\t");
  ASSERT_CONTAINS(out, "parked(...)\n\t");
  ASSERT_CONTAINS(out, "goroutine 1 [sleep]:\n");
  free(out);

  st = run_dump("segv", "none", NULL, &out);
  expect_exit(st, 2, out);
  ASSERT_CONTAINS(out, "SIGSEGV: segmentation violation\n");
  ASSERT(strstr(out, "goroutine ") == NULL);
  free(out);

  /* crash: the report, then the signal's default action (a core dump where allowed). */
  st = run_dump("segv", "crash", NULL, &out);
  if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV)
    tt_test_fail(__FILE__, __LINE__, "status %#x, want death by SIGSEGV:\n%s", st, out);
  ASSERT_CONTAINS(out, "goroutine 3 [running]:\n");
  ASSERT_CONTAINS(out, "goroutine 2 [chan receive]:\n");
  free(out);

  st = run_dump("segv", "sometimes", NULL, &out);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 2);
  ASSERT_CONTAINS(out, "invalid TT_TRACEBACK=\"sometimes\"");
  free(out);
}

TEST(crash_chains_to_programs_handler) {
  char *out;
  int st = run_dump("chain", NULL, NULL, &out);
  expect_exit(st, 3, out);
  ASSERT_CONTAINS(out, "the program's own handler ran\n");
  free(out);
}

TEST(crash_fatal_error_prints_stack) {
  char *out;
  int st = run_dump("fatal", NULL, NULL, &out);
  printf("%s", out);
  expect_exit(st, 2, out);
  ASSERT_CONTAINS(out, "fatal error: something impossible happened\n\n");
  ASSERT_CONTAINS(out, "goroutine 3 [running]:\n");
  ASSERT_CONTAINS(out, "crash_now(...)\n\t");
  free(out);
}

TEST(sigquit_dumps_and_exits_2) {
  char *out;
  int st = run_dump("quit", NULL, NULL, &out);
  printf("%s", out);
  expect_exit(st, 2, out);
  ASSERT_CONTAINS(out, "SIGQUIT: quit\nPC=0x");
  ASSERT_CONTAINS(out, "goroutine 1 [");
  ASSERT_CONTAINS(out, "goroutine 2 [chan receive]:\ntt_chan_recv(...)\n\t");
  ASSERT_CONTAINS(out, "parked(...)\n\t");
  ASSERT_CONTAINS(out, "created by body in goroutine 1\n");
  ASSERT(strstr(out, "went on") == NULL);
  free(out);
}

TEST(sigquit_dump_and_continue) {
  char *out;
  int st = run_dump("quit-go", NULL, "dump", &out);
  expect_exit(st, 0, out);
  ASSERT_CONTAINS(out, "SIGQUIT: quit\n");
  ASSERT_CONTAINS(out, "goroutine 2 [chan receive]:\n");
  ASSERT_CONTAINS(out, "went on after SIGQUIT\n");
  free(out);
}
