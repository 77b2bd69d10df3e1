/* SPDX-License-Identifier: MIT */
/* Method-contract violation: a server's Start without its Stop. server_start spawns a worker that
 * serves jobs until its stop channel is closed; server_stop closes it and waits for the worker.
 *
 *   leaky  the user starts the server, submits jobs and frees it without calling server_stop:
 *          the worker's select waits on two channels nobody holds any more (the proof calls it a
 *          select with every case dead);
 *   fixed  the user calls server_stop before server_free. */
#include "corpus.h"

typedef struct server {
  tt_chan *jobs, *stop;
  tt_wg done;
} server;

typedef struct worker_arg {
  tt_chan *jobs, *stop;
  tt_wg *done;
} worker_arg;

static volatile int served;

static void server_worker(void *arg) {
  worker_arg a = *(worker_arg *)arg;
  free(arg);
  for (;;) {
    int job;
    tt_select_case cs[] = {TT_CASE_RECV(a.stop, NULL), TT_CASE_RECV(a.jobs, &job)};
    if (tt_select(cs, 2) != 1)
      break; /* stop closed (or cancelled) */
    served += job;
  }
  tt_chan_release(a.jobs);
  tt_chan_release(a.stop);
  tt_wg_done(a.done);
}

static server *server_start(void) {
  server *s = calloc(1, sizeof *s);
  worker_arg *a = malloc(sizeof *a);
  if (s == NULL || a == NULL)
    exit(1);
  s->jobs = tt_chan_make(sizeof(int), 0);
  s->stop = tt_chan_make(0, 0);
  tt_wg_init(&s->done);
  tt_wg_add(&s->done, 1);
  *a = (worker_arg){s->jobs, s->stop, &s->done};
  tt_chan *share[] = {s->jobs, s->stop};
  CORPUS_GO("server worker", server_worker, a, .share = share, .nshare = 2);
  return s;
}

static void server_submit(server *s, int job) { tt_chan_send(s->jobs, &job); }

static void server_stop(server *s) {
  tt_chan_close(s->stop);
  tt_wg_wait(&s->done);
}

/* Drops the server's handles. Leaky: the wait group stays allocated, as the worker still points
 * at it (it never runs again). */
static __attribute__((noinline)) void server_free(server *s, int stopped) {
  tt_chan_release(s->jobs);
  tt_chan_release(s->stop);
  if (stopped)
    free(s);
}

static void scenario(int leaky) {
  static server *s; /* reachable from here, so LeakSanitizer stays quiet when leaky */
  s = server_start();
  server_submit(s, 1);
  server_submit(s, 2);
  corpus_await(TT_WAIT_SELECT, 1);
  corpus_checkpoint("the user holds the server");
  if (!leaky)
    server_stop(s); /* the fix: the contract's other half */
  server_free(s, !leaky);
  if (!leaky)
    corpus_await_alone();
}

CORPUS_PROGRAM()
