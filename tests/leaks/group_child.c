/* SPDX-License-Identifier: MIT */
/* A group waiting on a leaked child: a coordinator runs workers in a group (errgroup); each worker
 * flushes its result on the way out, inside a cancellation shield (cleanup that must complete even
 * if the group is cancelled: the shape of prevention pattern 4, examples/patterns/
 * signal_shutdown.c). The coordinator reads the flushed results after tt_group_wait.
 *
 *   leaky  the flush channel is unbuffered: the worker's flush waits for the coordinator, which
 *          waits for the group, which waits for the worker. The worker waits on a channel whose
 *          other holder is leaked; the coordinator on a group whose only child is leaked;
 *   fixed  the flush channel has room for every worker's result, as in the pattern.
 *
 * Without the shield the proof would not call the worker leaked, rightly: its wait is a
 * cancellation point of the group's context, and the group (which may cancel it) is a plain
 * pointer that any coroutine might hold, for all the runtime can tell. */
#include "corpus.h"

enum { WORKERS = 1 };

static int worker(void *arg) {
  tt_chan *flush = arg;
  int result = 42; /* its work */
  tt_shield_begin();
  tt_chan_send(flush, &result);
  tt_shield_end();
  tt_chan_release(flush);
  return 0;
}

static void coordinator(void *arg) {
  (void)arg;
  tt_group *g;
  if (tt_group_make(NULL, &g) != 0)
    exit(1);
  tt_chan *flush = tt_chan_make(sizeof(int), corpus.leaky ? 0 : WORKERS); /* the fix: room */
  tt_go_opts o = {.name = "worker", .share = &flush, .nshare = 1};
  tt_id id;
  if (tt_group_go_opt(g, worker, flush, &o, TT_FOREVER, &id) != 0)
    exit(1);
  corpus_note("worker", id);
  tt_group_wait(g); /* leaky: forever */
  int v, sum = 0;
  while (tt_chan_try_recv(flush, &v, NULL) == 0)
    sum += v;
  tt_chan_release(flush);
  tt_group_free(g);
}

static void scenario(int leaky) {
  CORPUS_GO("coordinator", coordinator, NULL);
  if (leaky) {
    corpus_await(TT_WAIT_GROUP_WAIT, 1);
    corpus_await(TT_WAIT_CHAN_SEND, 1);
  } else {
    corpus_await_alone();
  }
}

CORPUS_PROGRAM()
