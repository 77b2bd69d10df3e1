/* SPDX-License-Identifier: MIT */
/* Prevention pattern 4: shutdown on SIGINT/SIGTERM.
 *
 * A context cancelled by the signal (Go's signal.NotifyContext) is the parent of everything the
 * program runs; on SIGTERM every worker's blocking call returns TT_ECANCELED, the workers clean up
 * (under a shield, so cleanup may still block) and main returns 0. Prints "ready" once it serves;
 * the examples test sends it a real SIGTERM. */
#include <tether.h>
#include <signal.h>
#include <stdio.h>

enum { WORKERS = 3 };

static _Atomic int cleaned;

static int serve(void *arg) {
  tt_chan *flush = arg;
  int ticks = 0;
  while (tt_sleep(5 * TT_MSEC) == 0) /* "serving", until the signal cancels the context */
    ticks++;
  /* Cleanup that must block even though we are cancelled: raise a shield. */
  tt_shield_begin();
  tt_chan_send(flush, &ticks);
  tt_shield_end();
  cleaned++;
  return 0;
}

TT_MAIN(argc, argv) {
  tt_ctx *ctx;
  if (tt_ctx_with_signals(tt_ctx_background(), NULL, 0, &ctx) != 0) /* SIGINT and SIGTERM */
    return 1;
  tt_group *g;
  tt_chan *flush = tt_chan_make(sizeof(int), WORKERS);
  if (flush == NULL || tt_group_make(ctx, &g) != 0)
    return 1;
  tt_go_opts o = {.name = "server", .share = &flush, .nshare = 1};
  for (int i = 0; i < WORKERS; i++)
    tt_group_go_opt(g, serve, flush, &o, TT_FOREVER, NULL);
  printf("ready\n");
  fflush(stdout);
  int err = tt_group_wait(g); /* returns when every server has finished */
  int sig = tt_ctx_cause(ctx);
  int flushed = 0, v;
  while (tt_chan_try_recv(flush, &v, NULL) == 0)
    flushed++;
  printf("signal %d (%s): %d servers cleaned up, %d flushed, group error %d\n", sig,
         sig == SIGTERM  ? "SIGTERM"
         : sig == SIGINT ? "SIGINT"
                         : "?",
         (int)cleaned, flushed, err);
  tt_group_free(g);
  tt_chan_release(flush);
  tt_ctx_release(ctx);
  while (tt_num_coroutines() > 1) /* a child is done with the group a moment before it exits */
    tt_sleep(TT_MSEC);
  printf("coroutines left: %lld\n", (long long)tt_num_coroutines() - 1);
  return 0;
}
