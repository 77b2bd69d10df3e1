/* SPDX-License-Identifier: MIT */
/* TT_MAIN: the process exits with main's status when main returns, as a Go program does, even
 * though other coroutines are still blocked. */
#include <stdio.h>

#include <tether.h>

static tt_wg never = TT_WG_INIT;

static void blocked(void *arg) { tt_wg_wait(&never); }

TT_MAIN(argc, argv) {
  tt_wg_add(&never, 1);
  for (int i = 0; i < 100; i++)
    tt_go(blocked, NULL);
  tt_sleep(TT_MSEC);
  printf("main returns 3 with %lld coroutines alive\n", (long long)tt_num_coroutines());
  return 3;
}
