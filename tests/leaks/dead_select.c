/* SPDX-License-Identifier: MIT */
/* A select whose every case is dead: a watcher selects on an events channel and a done channel;
 * its creator drops both without closing done.
 *
 *   leaky  no live party holds either channel: no case can ever be ready (a select with every
 *          case dead);
 *   fixed  the creator closes done before letting go (prevention pattern 1's done channel). */
#include "corpus.h"

static void watcher(void *arg) {
  tt_chan **chs = arg; /* events, done */
  int ev;
  tt_select_case cs[] = {TT_CASE_RECV(chs[0], &ev), TT_CASE_RECV(chs[1], NULL)};
  tt_select(cs, 2);
  tt_chan_release(chs[0]);
  tt_chan_release(chs[1]);
}

static tt_chan *chs[2];

static void scenario(int leaky) {
  chs[0] = tt_chan_make(sizeof(int), 0);
  chs[1] = tt_chan_make(0, 0);
  CORPUS_GO("watcher", watcher, chs, .share = chs, .nshare = 2);
  corpus_await(TT_WAIT_SELECT, 1);
  corpus_checkpoint("the creator holds both channels");
  if (!leaky)
    tt_chan_close(chs[1]); /* the fix */
  tt_chan_release(chs[0]);
  tt_chan_release(chs[1]);
  if (!leaky)
    corpus_await_alone();
}

CORPUS_PROGRAM()
