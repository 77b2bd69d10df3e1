/* SPDX-License-Identifier: MIT */
/* Early return: a function starts a worker to compute a result, then returns on an error path
 * before receiving it.
 *
 *   leaky  the result channel is unbuffered: the worker's send waits for a receiver that left
 *          (abandoned sender);
 *   fixed  the result channel has room for the one result (as prevention pattern 2,
 *          examples/patterns/timeout.c): the send completes whether or not anyone receives. */
#include "corpus.h"

static void fetcher(void *arg) {
  tt_chan *result = arg;
  int v = 7;
  tt_chan_send(result, &v);
  tt_chan_release(result);
}

static __attribute__((noinline)) int lookup(int leaky, int key) {
  tt_chan *result = tt_chan_make(sizeof(int), leaky ? 0 : 1);
  CORPUS_GO("fetcher", fetcher, result, .share = &result, .nshare = 1);
  if (leaky) {
    corpus_await(TT_WAIT_CHAN_SEND, 1);
    corpus_checkpoint("the caller can still receive");
  }
  if (key < 0) {
    tt_chan_release(result); /* the early return: nobody receives the result */
    return -1;
  }
  int v;
  tt_chan_recv(result, &v, NULL);
  tt_chan_release(result);
  return v;
}

static void scenario(int leaky) {
  lookup(leaky, -1);
  if (!leaky)
    corpus_await_alone();
}

CORPUS_PROGRAM()
