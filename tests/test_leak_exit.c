/* SPDX-License-Identifier: MIT */
/* The exit check, TT_LEAKCHECK=1: tt_main exits with TT_LEAKCHECK_STATUS and a report when main
 * leaves coroutines behind, tt_run returns TT_ELEAKED; daemons are never reported. */
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

static int run_main(const char *mode, const char *leakcheck, char **out) {
  char path[4200];
  snprintf(path, sizeof path, "%s/crash-leakcheck", tt_test_bindir());
  char lc[64];
  snprintf(lc, sizeof lc, "TT_LEAKCHECK=%s", leakcheck);
  char *env[] = {lc, "ASAN_OPTIONS=detect_leaks=0", NULL};
  char *argv[] = {path, (char *)mode, NULL};
  return tt_test_spawn(argv, env, out);
}

static void expect_status(int st, int want, const char *out) {
  if (!WIFEXITED(st) || WEXITSTATUS(st) != want)
    tt_test_fail(__FILE__, __LINE__, "status %#x (want exit %d), output:\n%s", st, want, out);
}

TEST(leakcheck_main_with_leaks_exits_23) {
  char *out;
  int st = run_main("leak", "1", &out);
  expect_status(st, TT_LEAKCHECK_STATUS, out);
  ASSERT_CONTAINS(out, "main returns 0 (leak)");
  ASSERT_CONTAINS(out, "tether: LeakCheck: 2 coroutines still alive when main returned\n");
  /* Each with its verdict line, then its traceback in debug=2 form. */
  ASSERT_CONTAINS(out, "\ncoroutine 3 \"rx\": ");
  ASSERT_CONTAINS(out, "; blocked in chan receive for ");
  ASSERT_CONTAINS(out, "; blocked in sleep for ");
  ASSERT_CONTAINS(out, "\ngoroutine 3 [chan receive");
  ASSERT_CONTAINS(out, "\ngoroutine 4 [sleep");
  ASSERT_CONTAINS(out, "created by tt_main_body_ in goroutine 1\n");
  if (tt_test_have_dwarf()) {
    ASSERT_CONTAINS(out, "stuck_receiver(...)\n\t");
    ASSERT_CONTAINS(out, "long_sleeper(...)\n\t");
    ASSERT_CONTAINS(out, "tests/crash/leakcheck.c:");
  }
  /* The daemon is not reported, nor is coroutine 1. */
  ASSERT(strstr(out, "janitor") == NULL);
  ASSERT(strstr(out, "goroutine 2 [") == NULL);
  ASSERT(strstr(out, "goroutine 1 [") == NULL);
  ASSERT_CONTAINS(out, "\nSUMMARY: tether LeakCheck: 2 coroutines alive when main returned, ");
  free(out);
}

TEST(leakcheck_main_clean_exits_0) {
  char *out;
  int st = run_main("clean", "1", &out);
  expect_status(st, 0, out);
  ASSERT_CONTAINS(out, "main returns 0 (clean)");
  ASSERT(strstr(out, "LeakCheck") == NULL);
  free(out);
  st = run_main("daemon", "1", &out);
  expect_status(st, 0, out);
  ASSERT(strstr(out, "LeakCheck") == NULL);
  free(out);
}

TEST(leakcheck_off_main_exits_0) {
  char *out;
  int st = run_main("leak", "0", &out);
  expect_status(st, 0, out);
  ASSERT(strstr(out, "LeakCheck") == NULL);
  free(out);
}

/* ---- tt_run --------------------------------------------------------------------------------- */

static tt_wg never = TT_WG_INIT;

static __attribute__((noinline)) void waits_forever(void *unused) {
  (void)unused;
  tt_wg_wait(&never); /* cancelled by the shut-down */
}

static int leaky(void *unused) {
  (void)unused;
  tt_wg_add(&never, 1);
  ASSERT_OK(tt_go(waits_forever, NULL));
  ASSERT_OK(tt_go_opt(waits_forever, NULL, &(tt_go_opts){.daemon = 1, .name = "d"}, NULL));
  tt_test_await_reason(TT_WAIT_WAITGROUP_WAIT, 2);
  return 7;
}

static int daemons_only(void *unused) {
  (void)unused;
  ASSERT_OK(tt_go_opt(waits_forever, NULL, &(tt_go_opts){.daemon = 1, .name = "d"}, NULL));
  tt_test_await_reason(TT_WAIT_WAITGROUP_WAIT, 1);
  return 7;
}

static int none(void *unused) {
  (void)unused;
  return 7;
}

/* Runs fn with the exit check on, its report in a file; returns tt_run's result and the report. */
static int run_checked(int (*fn)(void *), int leakcheck, char **report) {
  char path[] = "/tmp/tt-leakexit-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  unlink(path);
  int r = tt_run(fn, NULL, &(tt_run_opts){.procs = 2, .leakcheck = leakcheck, .report_fd = fd});
  off_t len = lseek(fd, 0, SEEK_END);
  *report = calloc(1, (size_t)len + 1);
  ASSERT(pread(fd, *report, (size_t)len, 0) == len);
  close(fd);
  return r;
}

TEST(leakcheck_tt_run_returns_eleaked) {
  tt_wg_init(&never);
  char *rep;
  ASSERT_ERR(run_checked(leaky, TT_LEAKCHECK_EXIT, &rep), TT_ELEAKED);
  ASSERT_CONTAINS(rep, "tether: LeakCheck: 1 coroutine still alive when main returned\n");
  ASSERT_CONTAINS(rep, "[sync.WaitGroup.Wait");
  ASSERT(strstr(rep, "\"d\"") == NULL);
  free(rep);
  /* Off: fn's result, and only the shut-down's usual report. */
  tt_wg_init(&never);
  ASSERT_EQ(run_checked(leaky, -1, &rep), 7);
  ASSERT(strstr(rep, "LeakCheck") == NULL);
  free(rep);
  /* Only daemons, or nothing, left: fn's result, no report. */
  ASSERT_EQ(run_checked(daemons_only, TT_LEAKCHECK_EXIT, &rep), 7);
  ASSERT(strstr(rep, "LeakCheck") == NULL);
  free(rep);
  ASSERT_EQ(run_checked(none, TT_LEAKCHECK_EXIT, &rep), 7);
  ASSERT_EQ(strlen(rep), 0);
  free(rep);
}
