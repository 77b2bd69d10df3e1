/* SPDX-License-Identifier: MIT */
/* Channels the tether way: a generator, a bounded pool of squarers and a collector with a
 * timeout, every channel shared explicitly so that none can leak. docs/CHANNELS.md walks through
 * it. Built with -Werror by `make test` and run by the examples test. */
#include <tether.h>
#include <stdio.h>

enum { WORKERS = 4, N = 1000 };

struct pipeline {
  tt_chan *jobs;    /* int: the generator's numbers */
  tt_chan *results; /* int: their squares */
  tt_wg busy;       /* the workers still running */
};

static void generate(void *arg) {
  struct pipeline *p = arg;
  for (int i = 1; i <= N; i++)
    if (tt_chan_send(p->jobs, &i) != 0)
      return;
  tt_chan_close(p->jobs); /* "no more jobs": every worker's receive loop ends */
}

static void square(void *arg) {
  struct pipeline *p = arg;
  int x;
  while (tt_chan_recv(p->jobs, &x, NULL) == 0) /* until jobs is closed and drained */
    tt_chan_send_val(p->results, int, x *x);
  tt_wg_done(&p->busy);
}

static void close_when_done(void *arg) { /* Go's `go func() { wg.Wait(); close(results) }()` */
  struct pipeline *p = arg;
  tt_wg_wait(&p->busy);
  tt_chan_close(p->results);
}

TT_MAIN(argc, argv) {
  struct pipeline p = {tt_chan_make(sizeof(int), 16), tt_chan_make(sizeof(int), 16), TT_WG_INIT};
  if (p.jobs == NULL || p.results == NULL)
    return 1;
  /* Each coroutine gets references to exactly the channels it uses. */
  tt_go_opt(generate, &p, &(tt_go_opts){.share = &p.jobs, .nshare = 1}, NULL);
  tt_wg_add(&p.busy, WORKERS);
  for (int i = 0; i < WORKERS; i++)
    tt_go_opt(square, &p, &(tt_go_opts){.share = (tt_chan *[]){p.jobs, p.results}, .nshare = 2},
              NULL);
  tt_go_opt(close_when_done, &p, &(tt_go_opts){.share = &p.results, .nshare = 1}, NULL);
  tt_chan_release(p.jobs); /* main never touches jobs again */

  long long sum = 0;
  int got = 0, sq;
  tt_chan *timeout = tt_after(5 * TT_SEC); /* a deadline for the whole collection */
  int64_t when;
  for (;;) {
    tt_select_case cases[2] = {TT_CASE_RECV(p.results, &sq), TT_CASE_RECV(timeout, &when)};
    int which = tt_select(cases, 2);
    if (which == 1) {
      fprintf(stderr, "pipeline: timed out after %d results\n", got);
      return 1;
    }
    if (which != 0 || !cases[0].ok)
      break; /* results closed: every worker is done */
    sum += sq;
    got++;
  }
  tt_chan_release(timeout); /* unreceived: freed now, its timer stopped */
  tt_chan_release(p.results);
  printf("%d squares, sum %lld (expected %lld)\n", got, sum,
         (long long)N * (N + 1) * (2 * N + 1) / 6);
  return sum == (long long)N * (N + 1) * (2 * N + 1) / 6 ? 0 : 1;
}
