/* SPDX-License-Identifier: MIT */
/* Prevention pattern 6: waiting for a wait group with a timeout, learning whether all finished.
 *
 * Go has no timed WaitGroup.Wait: the usual helper starts a goroutine that waits and closes a
 * channel, and that goroutine leaks when the wait times out. tt_wg_wait_dl is the timed wait
 * itself. When it times out, the stragglers are cancelled through their context and waited for,
 * so nothing is left behind either way. */
#include <tether.h>
#include <stdio.h>

struct job {
  tt_wg *wg;
  int64_t work;
};

static void worker(void *arg) {
  struct job *j = arg;
  tt_sleep(j->work); /* returns early (TT_ECANCELED) if the context is cancelled */
  tt_wg_done(j->wg);
}

/* Runs the jobs; returns 1 if all finished within timeout, 0 if some had to be cancelled. */
static int run_all(struct job *jobs, int n, int64_t timeout) {
  tt_wg wg = TT_WG_INIT;
  tt_ctx *ctx;
  tt_ctx_with_cancel(tt_ctx_current(), &ctx);
  tt_go_opts o = {.ctx = ctx};
  for (int i = 0; i < n; i++) {
    jobs[i].wg = &wg;
    tt_wg_add(&wg, 1);
    tt_go_opt(worker, &jobs[i], &o, NULL);
  }
  int all = tt_wg_wait_dl(&wg, tt_now() + timeout) == 0;
  if (!all) {
    printf("  timed out with %lld still running: cancelling them\n", (long long)tt_wg_count(&wg));
    tt_ctx_cancel(ctx);
    tt_wg_wait(&wg);
  }
  tt_ctx_release(ctx);
  return all;
}

TT_MAIN(argc, argv) {
  struct job jobs[] = {{NULL, TT_MSEC}, {NULL, 2 * TT_MSEC}, {NULL, 3 * TT_MSEC}};
  printf("all finished within 1 s: %s\n", run_all(jobs, 3, TT_SEC) ? "yes" : "no");
  jobs[2].work = 3600 * TT_SEC; /* one job that would take an hour */
  printf("all finished within 20 ms: %s\n", run_all(jobs, 3, 20 * TT_MSEC) ? "yes" : "no");
  while (tt_num_coroutines() > 1)
    tt_sleep(TT_MSEC);
  printf("coroutines left: %lld\n", (long long)tt_num_coroutines() - 1);
  return 0;
}
