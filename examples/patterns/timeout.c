/* SPDX-License-Identifier: MIT */
/* Prevention pattern 2: an operation with a timeout.
 *
 * The classic leak: the caller selects on a result channel and a timer, the timer wins, the
 * caller leaves, and the worker blocks forever sending a result nobody will receive. The cure
 * (as in Go): give the result channel room for the one result, so the late worker's send
 * completes and it exits. The worker also runs under a context with the same deadline, so a
 * slow operation made of blocking tether calls is cut short instead of finishing for nothing. */
#include <tether.h>
#include <stdio.h>

static void slow_query(void *arg) {
  tt_chan *result = arg;
  int r = tt_sleep(50 * TT_MSEC); /* the slow part: cut short when the context times out */
  int answer = r == 0 ? 42 : -1;
  tt_chan_send(result, &answer); /* room for one: never blocks, even with nobody listening */
}

/* Returns 0 and the answer, or TT_ETIMEDOUT. */
static int query_with_timeout(int64_t timeout, int *answer) {
  tt_ctx *ctx;
  if (tt_ctx_with_timeout(tt_ctx_current(), timeout, &ctx) != 0)
    return -1;
  tt_chan *result = tt_chan_make(sizeof(int), 1); /* buffered: the fix for the leak */
  tt_chan *timer = tt_after(timeout);
  tt_go_opts o = {.name = "slow query", .ctx = ctx, .share = &result, .nshare = 1};
  int r = tt_go_opt(slow_query, result, &o, NULL);
  if (r == 0) {
    int64_t fired;
    tt_select_case cases[] = {TT_CASE_RECV(result, answer), TT_CASE_RECV(timer, &fired)};
    /* The worker may get there first with its own cut-short answer (-1): a timeout too. */
    r = tt_select(cases, 2) == 0 && *answer >= 0 ? 0 : TT_ETIMEDOUT;
  }
  tt_chan_release(timer);
  tt_chan_release(result);
  tt_ctx_release(ctx);
  return r;
}

TT_MAIN(argc, argv) {
  int answer = 0;
  int r = query_with_timeout(10 * TT_MSEC, &answer);
  printf("with 10 ms: %s\n", r == 0 ? "answered" : tt_strerror(r));
  r = query_with_timeout(TT_SEC, &answer);
  printf("with 1 s: answer %d\n", answer);
  while (tt_num_coroutines() > 1)
    tt_sleep(TT_MSEC);
  printf("coroutines left: %lld\n", (long long)tt_num_coroutines() - 1);
  return 0;
}
