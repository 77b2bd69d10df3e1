/* SPDX-License-Identifier: MIT */
/* tt_leak_verify_none in a cmocka suite (docs/LEAKS.md section 2): tether/leaktest.h's set-up and
 * tear-down pair begins a leak scope before each test and checks it after. test_clean passes;
 * test_leaky leaves a coroutine blocked on a channel nobody sends to, and the tear-down fails it
 * with the report. CTest runs this program and checks that exactly that happens
 * (examples/CMakeLists.txt). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <tether.h>
#include <tether/leaktest.h>

static void worker(void *arg) {
  tt_chan *results = arg;
  int v = 42;
  tt_chan_send(results, &v);
}

/* Spawns the worker with a reference of its own to results. */
static int spawn_worker(tt_chan *results) {
  tt_go_opts o = {.share = &results, .nshare = 1};
  return tt_go_opt(worker, results, &o, NULL);
}

/* Waits for its worker's answer: nothing is left behind. */
static void test_clean(void **state) {
  (void)state;
  tt_chan *results;
  assert_int_equal(tt_chan_make_opt(&results, sizeof(int), 0, NULL), 0);
  assert_int_equal(spawn_worker(results), 0);
  int v = 0;
  assert_int_equal(tt_chan_recv(results, &v, NULL), 0);
  assert_int_equal(v, 42);
  tt_chan_release(results);
}

/* Returns before receiving (an early return): the worker blocks in its send forever. */
static void test_leaky(void **state) {
  (void)state;
  tt_chan *results;
  assert_int_equal(tt_chan_make_opt(&results, sizeof(int), 0, NULL), 0);
  assert_int_equal(spawn_worker(results), 0);
  tt_chan_release(results);
}

/* The same check without a fixture: tt_leaktest_run runs a function as coroutine 1. */
static int leaky_main(void *arg) {
  (void)arg;
  tt_chan *results;
  if (tt_chan_make_opt(&results, sizeof(int), 0, NULL) != 0 || spawn_worker(results) != 0)
    return -1;
  tt_chan_release(results);
  return 0;
}

static void test_run_catches_leak(void **state) {
  (void)state;
  char *report = NULL;
  tt_leak_opts lo = {.timeout = 50 * TT_MSEC, .name = "leaky_main"};
  assert_int_equal(tt_leaktest_run(leaky_main, NULL, NULL, &lo, &report), TT_ELEAKED);
  assert_non_null(strstr(report, "tt_leak_verify_none: \"leaky_main\": 1 coroutine left behind"));
  assert_non_null(strstr(report, "[chan send"));
  free(report);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_clean, tt_leaktest_setup, tt_leaktest_teardown),
      cmocka_unit_test_setup_teardown(test_leaky, tt_leaktest_setup, tt_leaktest_teardown),
      cmocka_unit_test(test_run_catches_leak),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
