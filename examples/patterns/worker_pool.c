/* SPDX-License-Identifier: MIT */
/* Prevention pattern 3: a bounded worker pool whose workers end when the task queue is closed.
 *
 * First by hand, as the seed writes it in Go (a jobs channel, N workers ranging over it, a wait
 * group), then with tt_pool, which packages the same shape with back-pressure and cancellation. */
#include <tether.h>
#include <stdio.h>

enum { WORKERS = 4, JOBS = 100 };

struct by_hand {
  tt_chan *jobs;
  tt_wg wg;
  _Atomic long sum;
};

static void hand_worker(void *arg) {
  struct by_hand *p = arg;
  int job;
  while (tt_chan_recv(p->jobs, &job, NULL) == 0) /* ends when jobs is closed and drained */
    p->sum += job;
  tt_wg_done(&p->wg);
}

static _Atomic long pool_sum;

static void pool_task(void *arg) { pool_sum += (long)(intptr_t)arg; }

TT_MAIN(argc, argv) {
  struct by_hand p = {tt_chan_make(sizeof(int), WORKERS), TT_WG_INIT, 0};
  tt_go_opts o = {.name = "worker", .share = &p.jobs, .nshare = 1};
  for (int i = 0; i < WORKERS; i++) {
    tt_wg_add(&p.wg, 1);
    tt_go_opt(hand_worker, &p, &o, NULL);
  }
  for (int i = 1; i <= JOBS; i++)
    tt_chan_send(p.jobs, &i);
  tt_chan_close(p.jobs); /* the step that lets every worker finish */
  tt_wg_wait(&p.wg);
  tt_chan_release(p.jobs);
  printf("by hand: %d jobs, sum %ld\n", JOBS, (long)p.sum);

  tt_pool *pool;
  if (tt_pool_make(&pool, WORKERS, 8, NULL) != 0)
    return 1;
  for (int i = 1; i <= JOBS; i++)
    tt_pool_submit(pool, pool_task, (void *)(intptr_t)i); /* waits while the queue is full */
  tt_pool_close(pool);
  tt_pool_wait(pool);
  tt_pool_free(pool);
  printf("tt_pool: %d jobs, sum %ld\n", JOBS, (long)pool_sum);
  while (tt_num_coroutines() > 1) /* a worker is done with the pool a moment before it exits */
    tt_sleep(TT_MSEC);
  printf("coroutines left: %lld\n", (long long)tt_num_coroutines() - 1);
  return 0;
}
