/* SPDX-License-Identifier: MIT */
/* Prevention pattern 5: a controlled, non-blocking drain of a channel.
 *
 * A producer filled a buffered channel and stopped (it may close it, or not). The consumer takes
 * what is there without ever blocking: tt_chan_try_recv returns TT_EAGAIN when the buffer is
 * empty and TT_ECLOSED once it is closed and drained, so the loop always ends. A deadline bounds
 * the drain in case values keep coming. */
#include <tether.h>
#include <stdio.h>

static void producer(void *arg) {
  tt_chan *ch = arg;
  for (int i = 0; i < 10; i++)
    tt_chan_send(ch, &i);
  /* No close: the consumer must not wait for one. */
}

/* Takes every value available now, for at most `budget`. Returns how many. */
static int drain(tt_chan *ch, int64_t budget, long *sum) {
  int64_t stop = tt_now() + budget;
  int n = 0, v;
  while (tt_now() < stop) {
    int r = tt_chan_try_recv(ch, &v, NULL);
    if (r != 0) /* TT_EAGAIN: empty for now; TT_ECLOSED: closed and drained */
      break;
    *sum += v;
    n++;
  }
  return n;
}

TT_MAIN(argc, argv) {
  tt_chan *ch = tt_chan_make(sizeof(int), 16);
  tt_go_opts o = {.share = &ch, .nshare = 1};
  tt_go_opt(producer, ch, &o, NULL);
  while (tt_num_coroutines() > 1) /* the producer has sent everything and exited */
    tt_sleep(TT_MSEC);
  long sum = 0;
  int n = drain(ch, 10 * TT_MSEC, &sum);
  int again = drain(ch, 10 * TT_MSEC, &sum); /* empty, open: returns at once */
  tt_chan_close(ch);
  int closed = drain(ch, 10 * TT_MSEC, &sum); /* closed and empty: returns at once */
  printf("drained %d values (sum %ld), then %d, then %d after close\n", n, sum, again, closed);
  tt_chan_release(ch);
  printf("coroutines left: %lld\n", (long long)tt_num_coroutines() - 1);
  return 0;
}
