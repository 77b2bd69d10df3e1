/* SPDX-License-Identifier: MIT */
/* N-cast: the same question is sent to three replicas; the first answer is taken and the other
 * two replicas wait forever to deliver theirs.
 *
 *   leaky  the answers channel is unbuffered: two senders are left on it (N-cast);
 *   fixed  it has room for every answer (one slot per replica), as Go's fix.
 *
 * The replicas block in turn (each waits until the previous one is blocked) so that the channel's
 * FIFO send queue makes the first replica the one answered, and the leaked pair certain. */
#include "corpus.h"

enum { REPLICAS = 3 };

static void replica(void *arg) {
  tt_chan *answers = arg;
  int v = 1;
  tt_chan_send(answers, &v);
  tt_chan_release(answers);
}

static const char *names[REPLICAS] = {"replica-1", "replica-2", "replica-3"};

static __attribute__((noinline)) int first_answer(int leaky) {
  tt_chan *answers = tt_chan_make(sizeof(int), leaky ? 0 : REPLICAS);
  for (int i = 0; i < REPLICAS; i++) {
    CORPUS_GO(names[i], replica, answers, .share = &answers, .nshare = 1);
    if (leaky)
      corpus_await(TT_WAIT_CHAN_SEND, i + 1);
  }
  if (leaky)
    corpus_checkpoint("every replica can still deliver");
  int v;
  tt_chan_recv(answers, &v, NULL); /* the first answer; the others are never read */
  tt_chan_release(answers);
  return v;
}

static void scenario(int leaky) {
  first_answer(leaky);
  if (leaky) {
    while (tt_num_coroutines() > 3) /* replica-1 delivered and exits */
      tt_sleep(100 * TT_USEC);
    corpus_await(TT_WAIT_CHAN_SEND, 2);
  } else {
    corpus_await_alone();
  }
}

CORPUS_PROGRAM()
