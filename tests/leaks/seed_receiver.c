/* SPDX-License-Identifier: MIT */
/* The seed's first cause: a receive on a channel nobody will send to, after its creator returned.
 *
 *   leaky  start_lookup() spawns a receiver and returns without sending: the receiver's channel
 *          has no live holder left, so nothing can ever wake it (abandoned receiver);
 *   fixed  start_lookup() sends the value before it returns, as the Go original should have. */
#include "corpus.h"

static void receiver(void *arg) {
  tt_chan *ch = arg;
  int v;
  bool ok;
  tt_chan_recv(ch, &v, &ok);
  tt_chan_release(ch);
}

static __attribute__((noinline)) void start_lookup(int leaky) {
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  CORPUS_GO("receiver", receiver, ch, .share = &ch, .nshare = 1);
  corpus_await(TT_WAIT_CHAN_RECV, 1);
  corpus_checkpoint("creator holds the channel");
  if (!leaky) {
    int v = 42;
    tt_chan_send(ch, &v); /* the fix: the value the receiver waits for */
  }
  tt_chan_release(ch); /* leaky: the last live reference goes with the creator's return */
}

static void scenario(int leaky) {
  start_lookup(leaky);
  if (!leaky)
    corpus_await_alone();
}

CORPUS_PROGRAM()
