/* SPDX-License-Identifier: MIT */
/* The seed's third cause: an endless loop with a sleep and no exit condition.
 *
 *   leaky  "ticker" wakes every millisecond forever: nothing in the program can stop it;
 *   fixed  it runs under a context that main cancels when it is done with it (prevention
 *          pattern 1, examples/patterns/shutdown_ctx.c): the sleep returns TT_ECANCELED and the
 *          loop ends.
 *
 * The proof cannot call the leaky ticker leaked, and must not: a sleeping coroutine is a timed
 * wait, a root of liveness (R3), and it does wake, every tick; whether it will ever stop is a
 * question about the program's future that no runtime can decide. The dump shows it ([sleep])
 * without a verdict, and the exit check and the test checker report it as still alive. */
#include "corpus.h"

static volatile int ticks;

static void ticker(void *arg) {
  (void)arg;
  while (tt_sleep(TT_MSEC) == 0) /* only the runtime's shut-down ends this (leaky) */
    ticks++;
}

static void scenario(int leaky) {
  tt_ctx *ctx;
  if (tt_ctx_with_cancel(tt_ctx_current(), &ctx) != 0)
    exit(1);
  CORPUS_GO("ticker", ticker, NULL, .ctx = leaky ? NULL : ctx);
  while (ticks < 5)
    tt_sleep(TT_MSEC);
  corpus_await(TT_WAIT_SLEEP, 1);
  corpus_checkpoint("ticking");
  if (!leaky) {
    tt_ctx_cancel(ctx); /* the fix: stop it when done */
    corpus_await_alone();
  }
  tt_ctx_release(ctx);
}

CORPUS_PROGRAM()
