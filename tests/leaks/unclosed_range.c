/* SPDX-License-Identifier: MIT */
/* Unclosed range: a consumer receives until the channel is closed (Go's `for v := range ch`),
 * and the producer returns without closing it.
 *
 *   leaky  the consumer takes the three values and then waits for a fourth, or a close, that
 *          never comes (the proof calls it an abandoned receiver: it does not tell a range loop
 *          from a single receive);
 *   fixed  the producer closes the channel when done (prevention pattern 3,
 *          examples/patterns/worker_pool.c): the consumer's loop ends. */
#include "corpus.h"

static volatile int sum;

static void consumer(void *arg) {
  tt_chan *ch = arg;
  int v;
  while (tt_chan_recv(ch, &v, NULL) == 0) /* TT_ECLOSED once closed and drained */
    sum += v;
  tt_chan_release(ch);
}

static void producer(void *arg) {
  tt_chan *ch = arg;
  for (int i = 1; i <= 3; i++)
    tt_chan_send(ch, &i);
  if (!corpus.leaky)
    tt_chan_close(ch); /* the fix */
  tt_chan_release(ch);
}

static void scenario(int leaky) {
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  CORPUS_GO("consumer", consumer, ch, .share = &ch, .nshare = 1);
  CORPUS_GO("producer", producer, ch, .share = &ch, .nshare = 1);
  tt_chan_release(ch);
  if (leaky) {
    while (tt_num_coroutines() > 2) /* the producer is done */
      tt_sleep(100 * TT_USEC);
    corpus_await(TT_WAIT_CHAN_RECV, 1);
  } else {
    corpus_await_alone();
  }
}

CORPUS_PROGRAM()
