/* SPDX-License-Identifier: MIT */
/* Timeout leak: the caller waits for a slow query's answer with a deadline, gives up when it
 * passes, and leaves the query behind.
 *
 *   leaky  the answer channel is unbuffered: when the query finally answers, its send waits for
 *          a receiver that timed out and left (the proof calls it an abandoned sender: what made
 *          the receiver leave is history it does not keep);
 *   fixed  the answer channel has room for the answer (prevention pattern 2,
 *          examples/patterns/timeout.c): the late send completes and the query exits. */
#include "corpus.h"

static void slow_query(void *arg) {
  tt_chan *answer = arg;
  tt_sleep(20 * TT_MSEC); /* slower than the caller's patience */
  int v = 42;
  tt_chan_send(answer, &v);
  tt_chan_release(answer);
}

static __attribute__((noinline)) int query_with_timeout(int leaky, int64_t timeout, int *v) {
  tt_chan *answer = tt_chan_make(sizeof(int), leaky ? 0 : 1);
  CORPUS_GO("slow query", slow_query, answer, .share = &answer, .nshare = 1);
  int r = tt_chan_recv_dl(answer, v, NULL, tt_now() + timeout);
  tt_chan_release(answer);
  return r;
}

static void scenario(int leaky) {
  int v;
  if (query_with_timeout(leaky, 2 * TT_MSEC, &v) != TT_ETIMEDOUT) {
    fprintf(stderr, "the query answered in time: no timeout to leak from\n");
    exit(1);
  }
  if (leaky)
    corpus_await(TT_WAIT_CHAN_SEND, 1);
  else
    corpus_await_alone();
}

CORPUS_PROGRAM()
