/* SPDX-License-Identifier: MIT */
/* tt_leak_verify_none in a Criterion suite (docs/LEAKS.md section 2): TT_LEAK_TEST (from
 * tether/leaktest.h) is Test() inside a leak-check fixture. test_clean passes; test_leaky leaves a
 * coroutine blocked on a channel nobody sends to, and the fixture fails it with the report. CTest
 * runs this program and checks that exactly that happens (examples/CMakeLists.txt). */
#include <criterion/criterion.h>
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
TT_LEAK_TEST(leaks, test_clean) {
  tt_chan *results;
  cr_assert_eq(tt_chan_make_opt(&results, sizeof(int), 0, NULL), 0);
  cr_assert_eq(spawn_worker(results), 0);
  int v = 0;
  cr_assert_eq(tt_chan_recv(results, &v, NULL), 0);
  cr_assert_eq(v, 42);
  tt_chan_release(results);
}

/* Returns before receiving (an early return): the worker blocks in its send forever. */
TT_LEAK_TEST(leaks, test_leaky) {
  tt_chan *results;
  cr_assert_eq(tt_chan_make_opt(&results, sizeof(int), 0, NULL), 0);
  cr_assert_eq(spawn_worker(results), 0);
  tt_chan_release(results); /* returns without receiving: the worker's send blocks forever */
}
