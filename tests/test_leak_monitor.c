/* SPDX-License-Identifier: MIT */
/* The leak monitor (src/leak/monitor.c): the global deadlock and TT_LEAKCHECK=eager, from outside
 * (crash/leaks.c) and inside tt_run. */
#include <sys/wait.h>

#include "test.h"

static int run_leaks(const char *mode, const char *leakcheck, char **out) {
  char path[4200];
  snprintf(path, sizeof path, "%s/crash-leaks", tt_test_bindir());
  char lc[64];
  snprintf(lc, sizeof lc, "TT_LEAKCHECK=%s", leakcheck ? leakcheck : "0");
  char *env[] = {lc, "ASAN_OPTIONS=detect_leaks=0", NULL};
  char *argv[] = {path, (char *)mode, NULL};
  return tt_test_spawn(argv, env, out);
}

static void expect_status(int st, int want, const char *out) {
  if (!WIFEXITED(st) || WEXITSTATUS(st) != want)
    tt_test_fail(__FILE__, __LINE__, "status %#x, want exit %d; output:\n%s", st, want, out);
}

TEST(leak_global_deadlock_exits_2) {
  char *out;
  int st = run_leaks("deadlock", NULL, &out);
  expect_status(st, 2, out);
  /* Go's line, a blank line, then every coroutine's traceback. */
  ASSERT(strncmp(out, "fatal error: all goroutines are asleep - deadlock!\n\ngoroutine ", 62) == 0);
  ASSERT_CONTAINS(out, "goroutine 1 [chan receive (leaked)]:\n");
  ASSERT_CONTAINS(out, "[sync.Mutex.Lock (leaked)]:\n");
  ASSERT_CONTAINS(out, "lock_forever");
  ASSERT(strstr(out, "survived") == NULL);
  free(out);
}

TEST(leak_eager_prints_with_cause) {
  char *out;
  int st = run_leaks("eager", "eager", &out);
  /* Eager mode includes the exit check: the leaked receiver is still there when main returns. */
  expect_status(st, TT_LEAKCHECK_STATUS, out);
  ASSERT_CONTAINS(out, "tether: LeakCheck: 1 coroutine still alive when main returned");
  ASSERT_CONTAINS(out, "tether: leak: coroutine 2 can never be woken (abandoned receiver)\n");
  ASSERT_CONTAINS(out, "no live party holds a reference to it");
  ASSERT_CONTAINS(out, "the last live way to wake it went with tt_chan_release in coroutine 1:\n");
  if (tt_test_have_dwarf()) {
    /* The releasing call's stack, then the leaked coroutine's own. */
    const char *cause = strstr(out, "went with tt_chan_release");
    const char *site = strstr(out, "leaky_function(...)\n\t");
    ASSERT(cause && site && site > cause);
    ASSERT_CONTAINS(out, "tests/crash/leaks.c:");
  }
  ASSERT_CONTAINS(out, "goroutine 2 [chan receive (leaked)]:\n");
  ASSERT_CONTAINS(out, "main returns");
  /* Printed once. */
  const char *first = strstr(out, "can never be woken");
  ASSERT(strstr(first + 1, "can never be woken") == NULL);
  free(out);
}

TEST(leak_eager_partial_deadlock_behind_sleeper) {
  char *out;
  int st = run_leaks("partial", "eager", &out);
  expect_status(st, TT_LEAKCHECK_STATUS, out);
  ASSERT(strstr(out, "all goroutines are asleep") == NULL);
  ASSERT_CONTAINS(out, "can never be woken (abandoned receiver)");
  free(out);
}

TEST(leak_quiet_without_eager) {
  char *out;
  int st = run_leaks("eager", NULL, &out);
  expect_status(st, 0, out);
  ASSERT(strstr(out, "can never be woken") == NULL);
  free(out);
}

TEST(leak_no_deadlock_with_plain_thread) {
  char *out;
  int st = run_leaks("thread", NULL, &out);
  expect_status(st, 0, out);
  ASSERT_CONTAINS(out, "woken by the thread");
  ASSERT(strstr(out, "deadlock") == NULL);
  free(out);
}

/* Inside tt_run: TT_EDEADLK, after fn has seen its wait cancelled. */
static int fn_result;

static int deadlocking(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  int v;
  bool ok;
  fn_result = tt_chan_recv(ch, &v, &ok);
  tt_chan_release(ch);
  return 0;
}

TEST(leak_deadlock_in_tt_run) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  tt_run_opts o = {.report_fd = fds[1]};
  ASSERT_ERR(tt_run(deadlocking, NULL, &o), TT_EDEADLK);
  close(fds[1]);
  ASSERT_EQ(fn_result, TT_ECANCELED);
  char buf[8192];
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  ASSERT_GT(n, 0);
  buf[n] = 0;
  ASSERT(strncmp(buf, "fatal error: all goroutines are asleep - deadlock!\n\n", 52) == 0);
  ASSERT_CONTAINS(buf, "goroutine 1 [chan receive (leaked)]:\n");
}

static int nothing(void *unused) {
  (void)unused;
  return 0;
}

/* TT_LEAKCHECK and tt_run_opts.leakcheck: a bad value fails the run with TT_EINVAL, naming it. */
TEST(leak_check_knob_bad_values) {
  setenv("TT_LEAKCHECK", "sometimes", 1);
  ASSERT_ERR(tt_run(nothing, NULL, NULL), TT_EINVAL);
  setenv("TT_LEAKCHECK", "eager", 1);
  tt_test_run(nothing, NULL, 1);
  unsetenv("TT_LEAKCHECK");
  ASSERT_ERR(tt_run(nothing, NULL, &(tt_run_opts){.leakcheck = 3}), TT_EINVAL);
  ASSERT_ERR(tt_run(nothing, NULL, &(tt_run_opts){.leakcheck = -2}), TT_EINVAL);
  /* -1 turns the environment's setting off. */
  setenv("TT_LEAKCHECK", "1", 1);
  tt_test_run_opt(nothing, NULL, &(tt_run_opts){.leakcheck = -1});
  unsetenv("TT_LEAKCHECK");
}
