/* SPDX-License-Identifier: MIT */
/* The README's ten lines: a thousand coroutines sleep and signal a wait group. */
#include <tether.h>
#include <stdio.h>

static void worker(void *arg) {
  tt_sleep(10 * TT_MSEC); /* parks this coroutine, not the thread */
  tt_wg_done(arg);
}

TT_MAIN(argc, argv) { /* main's body runs as coroutine 1 */
  tt_wg wg = TT_WG_INIT;
  tt_wg_add(&wg, 1000);
  for (int i = 0; i < 1000; i++)
    tt_go(worker, &wg); /* like `go worker(&wg)` */
  tt_wg_wait(&wg);
  printf("%lld coroutine left\n", (long long)tt_num_coroutines());
  return 0; /* as in Go, the process exits with main */
}
