/* SPDX-License-Identifier: MIT */
/* A chain: four stages, each receiving from the previous one's channel and sending on to the
 * next; nobody feeds the first.
 *
 *   leaky  the first stage is an abandoned receiver; each later stage waits on a channel whose
 *          only other holder is the stage before it, itself leaked (waits on a leaked coroutine);
 *   fixed  main feeds the first stage and takes the last one's output. */
#include "corpus.h"

enum { STAGES = 4 };

static void stage(void *arg) {
  tt_chan **io = arg; /* [0]: receive from, [1]: send on */
  int v;
  if (tt_chan_recv(io[0], &v, NULL) == 0) {
    v++;
    tt_chan_send(io[1], &v);
  }
  tt_chan_release(io[0]);
  tt_chan_release(io[1]);
}

static const char *names[STAGES] = {"stage-1", "stage-2", "stage-3", "stage-4"};
static tt_chan *io[STAGES][2];

static void scenario(int leaky) {
  tt_chan *first = tt_chan_make(sizeof(int), 0), *prev = first;
  for (int i = 0; i < STAGES; i++) {
    tt_chan *next = tt_chan_make(sizeof(int), 0);
    io[i][0] = prev;
    io[i][1] = next;
    CORPUS_GO(names[i], stage, io[i], .share = io[i], .nshare = 2);
    if (i > 0)
      tt_chan_release(prev); /* the stages hold it now */
    prev = next;
  }
  tt_chan *last = prev;
  corpus_await(TT_WAIT_CHAN_RECV, STAGES);
  corpus_checkpoint("main holds the first channel");
  if (!leaky) {
    int v = 0;
    tt_chan_send(first, &v); /* the fix: feed it, and drain it */
    tt_chan_recv(last, &v, NULL);
  }
  tt_chan_release(first);
  tt_chan_release(last);
  if (!leaky)
    corpus_await_alone();
}

CORPUS_PROGRAM()
