/* SPDX-License-Identifier: MIT */
/* Double send: a worker reports an error on its result channel, forgets to return, and sends a
 * result too; the caller receives once.
 *
 *   leaky  the second send waits forever for a second receive (the proof calls it an abandoned
 *          sender);
 *   fixed  the worker returns after reporting the error. */
#include "corpus.h"

static void worker(void *arg) {
  tt_chan *result = arg;
  int err = -5; /* its step failed */
  if (err < 0) {
    tt_chan_send(result, &err);
    if (!corpus.leaky) { /* the fix: the missing return */
      tt_chan_release(result);
      return;
    }
  }
  int ok = 0;
  tt_chan_send(result, &ok); /* leaky: the second send */
  tt_chan_release(result);
}

static void scenario(int leaky) {
  tt_chan *result = tt_chan_make(sizeof(int), 0);
  CORPUS_GO("worker", worker, result, .share = &result, .nshare = 1);
  int v;
  tt_chan_recv(result, &v, NULL); /* one result: the error */
  if (leaky) {
    corpus_await(TT_WAIT_CHAN_SEND, 1);
    corpus_checkpoint("the caller can still receive again");
  }
  tt_chan_release(result);
  if (!leaky)
    corpus_await_alone();
}

CORPUS_PROGRAM()
