/* SPDX-License-Identifier: MIT */
/* Prevention pattern 1: graceful shutdown with a cancelled context.
 *
 * The worker serves a data channel until its context is cancelled. In Go it would select on
 * ctx.Done() and the data channel; here the same select works, and tether adds a second safety
 * net: the worker runs under the context, so even a blocking call that forgot the done case
 * returns TT_ECANCELED once the context is cancelled. */
#include <tether.h>
#include <stdio.h>

static void worker(void *arg) {
  tt_chan *data = arg; /* the reference the spawn shared with us */
  int v, served = 0;
  for (;;) {
    tt_select_case cases[] = {TT_CASE_RECV(tt_ctx_done(tt_ctx_current()), NULL),
                              TT_CASE_RECV(data, &v)};
    int r = tt_select(cases, 2);
    if (r != 1) /* 0: done was closed; TT_ECANCELED: the context reached the select itself */
      break;
    served++;
  }
  printf("worker: stopping after %d items (%s)\n", served,
         tt_strerror(tt_ctx_err(tt_ctx_current())));
}

TT_MAIN(argc, argv) {
  tt_ctx *ctx;
  if (tt_ctx_with_cancel(tt_ctx_current(), &ctx) != 0)
    return 1;
  tt_chan *data = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.name = "worker", .ctx = ctx, .share = &data, .nshare = 1};
  tt_id id;
  if (data == NULL || tt_go_opt(worker, data, &o, &id) != 0)
    return 1;
  for (int i = 0; i < 5; i++)
    tt_chan_send(data, &i);
  tt_ctx_cancel(ctx); /* "shut down": the worker leaves its loop */
  tt_chan_release(data);
  tt_ctx_release(ctx);
  while (tt_num_coroutines() > 1)
    tt_sleep(TT_MSEC);
  printf("shutdown complete; coroutines left: %lld\n", (long long)tt_num_coroutines() - 1);
  return 0;
}
