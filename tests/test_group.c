/* SPDX-License-Identifier: MIT */
/* Groups (errgroup) and worker pools. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

/* ---- Groups ---------------------------------------------------------------------------- */

typedef struct gstate {
  _Atomic int running, max_running, finished, cancelled;
  int fail_at; /* the child with this index fails; -1: none */
  _Atomic int next;
  /* When set: a child waits until gate children have run at once (or all n have started), so
   * that reaching a limit does not depend on how fast the spawner is (qemu is slow). */
  int gate, n;
} gstate;

static gstate gs;

static int child_fn(void *p) {
  int i = atomic_fetch_add(&gs.next, 1);
  int now = atomic_fetch_add(&gs.running, 1) + 1;
  int m = atomic_load(&gs.max_running);
  while (now > m && !atomic_compare_exchange_weak(&gs.max_running, &m, now)) {
  }
  int r = 0;
  if (i == gs.fail_at) {
    tt_sleep(TT_MSEC);
    r = -5;
  } else if (p) {
    r = tt_sleep(3600 * TT_SEC); /* until the group is cancelled */
    if (r == TT_ECANCELED)
      atomic_fetch_add(&gs.cancelled, 1);
  } else {
    tt_sleep(200 * TT_USEC);
    while (atomic_load(&gs.max_running) < gs.gate && atomic_load(&gs.next) < gs.n)
      tt_sleep(50 * TT_USEC);
  }
  atomic_fetch_sub(&gs.running, 1);
  atomic_fetch_add(&gs.finished, 1);
  return r;
}

static void gs_reset(int fail_at) {
  memset(&gs, 0, sizeof gs);
  gs.fail_at = fail_at;
}

static int first_error_main(void *p) {
  int64_t live = tt__ctx_count_live();
  gs_reset(3);
  tt_group *g;
  ASSERT_OK(tt_group_make(NULL, &g));
  ASSERT_EQ(tt_ctx_err(tt_group_ctx(g)), 0);
  for (int i = 0; i < 10; i++)
    ASSERT_OK(tt_group_go(g, child_fn, (void *)1));
  ASSERT_EQ(tt_group_wait(g), -5);
  ASSERT_EQ(atomic_load(&gs.finished), 10);
  ASSERT_EQ(atomic_load(&gs.cancelled), 9); /* the first error cancelled every sibling */
  ASSERT_EQ(tt_group_live(g), 0);
  ASSERT_EQ(tt_ctx_cause(tt_group_ctx(g)), -5);
  ASSERT_EQ(tt_group_wait(g), -5); /* again: the same */
  ASSERT_OK(tt_group_free(g));

  /* No error: 0, and the context is cancelled once Wait has seen them all finish. */
  gs_reset(-1);
  ASSERT_OK(tt_group_make(tt_ctx_background(), &g));
  ASSERT_OK(tt_group_wait(g)); /* no children */
  ASSERT_OK(tt_group_free(g));
  ASSERT_OK(tt_group_make(NULL, &g));
  for (int i = 0; i < 10; i++)
    ASSERT_OK(tt_group_go(g, child_fn, NULL));
  ASSERT_EQ(tt_ctx_err(tt_group_ctx(g)), 0);
  ASSERT_OK(tt_group_wait(g));
  ASSERT_EQ(atomic_load(&gs.finished), 10);
  ASSERT_EQ(tt_ctx_err(tt_group_ctx(g)), TT_ECANCELED);
  ASSERT_OK(tt_group_free(g));
  tt_test_await_alone();
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(group_first_error_cancels_siblings) { tt_test_run(first_error_main, NULL, 2); }

static int limit_main(void *p) {
  gs_reset(-1);
  tt_group *g;
  ASSERT_OK(tt_group_make(NULL, &g));
  ASSERT_OK(tt_group_set_limit(g, 3));
  int n = (int)SCALED(200, 20);
  gs.gate = 3;
  gs.n = n;
  for (int i = 0; i < n; i++)
    ASSERT_OK(tt_group_go(g, child_fn, NULL)); /* waits at the limit */
  ASSERT_LE(tt_group_live(g), 3);
  ASSERT_ERR(tt_group_set_limit(g, 5), TT_EBUSY);
  ASSERT_OK(tt_group_wait(g));
  ASSERT_EQ(atomic_load(&gs.finished), n);
  ASSERT_EQ(atomic_load(&gs.max_running), 3);

  ASSERT_OK(tt_group_free(g));

  /* try_go at the limit does not wait; the deadline form times out. (A fresh group: Wait
   * cancelled the last one's context, as errgroup's does.) */
  gs_reset(-1);
  ASSERT_OK(tt_group_make(NULL, &g));
  ASSERT_OK(tt_group_set_limit(g, 2));
  ASSERT_OK(tt_group_go(g, child_fn, (void *)1));
  ASSERT_OK(tt_group_try_go(g, child_fn, (void *)1));
  ASSERT_ERR(tt_group_try_go(g, child_fn, (void *)1), TT_EAGAIN);
  tt_id id = 0;
  ASSERT_ERR(tt_group_go_opt(g, child_fn, NULL, NULL, tt_now() + TT_MSEC, &id), TT_ETIMEDOUT);
  ASSERT_EQ(tt_group_live(g), 2);
  /* A spawner waiting at the limit is cancelled through its own context. */
  tt_ctx *c;
  ASSERT_OK(tt_ctx_with_timeout(tt_ctx_current(), TT_MSEC, &c));
  tt_ctx_scope s;
  ASSERT_OK(tt_ctx_enter(&s, c));
  ASSERT_ERR(tt_group_go(g, child_fn, NULL), TT_ECANCELED);
  ASSERT_ERR(tt_group_wait(g), TT_ECANCELED); /* and a waiter: the children go on */
  ASSERT_OK(tt_ctx_leave(&s));
  tt_ctx_release(c);
  ASSERT_EQ(tt_group_live(g), 2);
  ASSERT_ERR(tt_group_wait_dl(g, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_OK(tt_group_cancel(g));
  /* The children return their sleep's TT_ECANCELED: an error, the first one Wait reports. */
  ASSERT_EQ(tt_group_wait(g), TT_ECANCELED);
  ASSERT_EQ(atomic_load(&gs.cancelled), 2);
  ASSERT_OK(tt_group_free(g));
  return 0;
}

TEST(group_limit) { tt_test_run(limit_main, NULL, 2); }

static int parent_cancel_main(void *p) {
  gs_reset(-1);
  tt_ctx *parent;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &parent));
  tt_group *g;
  ASSERT_OK(tt_group_make(parent, &g));
  tt_go_opts o = {.name = "sleeper"};
  tt_id id;
  for (int i = 0; i < 4; i++)
    ASSERT_OK(tt_group_go_opt(g, child_fn, (void *)1, &o, TT_FOREVER, &id));
  ASSERT_GT(id, 0);
  o.ctx = parent; /* children run under the group's context: no other */
  ASSERT_ERR(tt_group_go_opt(g, child_fn, NULL, &o, TT_FOREVER, NULL), TT_EINVAL);
  tt_test_await_reason(TT_WAIT_SLEEP, 4);

  /* Freeing it now is refused, naming them. */
  fflush(stderr);
  int saved = dup(2);
  FILE *tmp = tmpfile();
  ASSERT(tmp != NULL);
  dup2(fileno(tmp), 2);
  int r = tt_group_free(g);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  ASSERT_EQ(r, TT_EBUSY);
  char buf[1024] = {0};
  rewind(tmp);
  ASSERT(fread(buf, 1, sizeof buf - 1, tmp) > 0);
  fclose(tmp);
  char want[64];
  snprintf(want, sizeof want, "coroutine %llu [sleeper]", (unsigned long long)id);
  ASSERT_CONTAINS(buf, "tt_group_free: 4 children still live");
  ASSERT_CONTAINS(buf, want);

  ASSERT_OK(tt_ctx_cancel(parent)); /* reaches the group's children */
  ASSERT_EQ(tt_group_wait(g), TT_ECANCELED);
  ASSERT_EQ(atomic_load(&gs.cancelled), 4);
  ASSERT_EQ(tt_ctx_err(tt_group_ctx(g)), TT_ECANCELED);
  ASSERT_OK(tt_group_free(g));
  tt_ctx_release(parent);

  /* Bad input. */
  ASSERT_ERR(tt_group_make(NULL, NULL), TT_EINVAL);
  ASSERT_ERR(tt_group_go(NULL, child_fn, NULL), TT_EINVAL);
  ASSERT_OK(tt_group_make(NULL, &g));
  ASSERT_ERR(tt_group_go(g, NULL, NULL), TT_EINVAL);
  ASSERT_ERR(tt_group_wait(NULL), TT_EINVAL);
  ASSERT_ERR(tt_group_set_limit(NULL, 1), TT_EINVAL);
  ASSERT_ERR(tt_group_cancel(NULL), TT_EINVAL);
  ASSERT(tt_group_ctx(NULL) == NULL);
  ASSERT_OK(tt_group_free(NULL));
  ASSERT_OK(tt_group_free(g));
  return 0;
}

TEST(group_parent_cancel_and_free_refused) { tt_test_run(parent_cancel_main, NULL, 2); }

static void *thread_group(void *p) {
  tt_group *g = p;
  intptr_t r = 0;
  for (int i = 0; i < 10 && r == 0; i++)
    r = tt_group_go(g, child_fn, NULL);
  if (r == 0)
    r = tt_group_wait(g); /* a plain thread blocks on its futex */
  return (void *)r;
}

static int thread_main(void *p) {
  gs_reset(-1);
  tt_group *g;
  ASSERT_OK(tt_group_make(NULL, &g));
  ASSERT_OK(tt_group_set_limit(g, 2));
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, thread_group, g), 0);
  while (atomic_load(&gs.finished) < 10)
    tt_sleep(100 * TT_USEC);
  void *r;
  ASSERT_EQ(pthread_join(t, &r), 0);
  ASSERT_EQ((intptr_t)r, 0);
  ASSERT_OK(tt_group_free(g));
  return 0;
}

TEST(group_from_plain_thread) { tt_test_run(thread_main, NULL, 2); }

/* ---- Pools ----------------------------------------------------------------------------- */

static _Atomic int64_t done_count, dropped;

static void count_task(void *p) {
  atomic_fetch_add(&done_count, 1);
  if (p)
    tt_yield();
}

static void drop_fn(void *p) { atomic_fetch_add(&dropped, 1); }

static int pool_main(void *p) {
  int64_t live = tt__ctx_count_live();
  atomic_store(&done_count, 0);
  tt_pool *pl;
  ASSERT_OK(tt_pool_make(&pl, 4, 8, NULL));
  int64_t n = SCALED(20000, 500);
  for (int64_t i = 0; i < n; i++)
    ASSERT_OK(tt_pool_submit(pl, count_task, (void *)(intptr_t)(i % 2)));
  ASSERT_OK(tt_pool_close(pl));
  ASSERT_OK(tt_pool_close(pl)); /* idempotent */
  ASSERT_ERR(tt_pool_submit(pl, count_task, NULL), TT_ECLOSED);
  ASSERT_OK(tt_pool_wait(pl));
  ASSERT_EQ(atomic_load(&done_count), n);
  ASSERT_OK(tt_pool_free(pl));
  tt_test_await_alone();
  ASSERT_EQ(tt__ctx_count_live(), live);

  /* Bad input. */
  ASSERT_ERR(tt_pool_make(&pl, 0, 1, NULL), TT_EINVAL);
  ASSERT_ERR(tt_pool_make(NULL, 1, 1, NULL), TT_EINVAL);
  ASSERT_ERR(tt_pool_submit(NULL, count_task, NULL), TT_EINVAL);
  ASSERT_ERR(tt_pool_close(NULL), TT_EINVAL);
  ASSERT_ERR(tt_pool_wait(NULL), TT_EINVAL);
  ASSERT_OK(tt_pool_free(NULL));
  return 0;
}

TEST(pool_runs_every_task_then_drains) { tt_test_run(pool_main, NULL, 2); }

static tt_chan *gate;

static void gated_task(void *p) {
  int v;
  int r = tt_chan_recv(gate, &v, NULL);
  if (r == TT_ECANCELED)
    atomic_fetch_add(&dropped, 100); /* counted apart from drops */
  atomic_fetch_add(&done_count, 1);
}

static int backpressure_main(void *p) {
  atomic_store(&done_count, 0);
  atomic_store(&dropped, 0);
  tt_chan_opts uo = {.mode = TT_CHAN_UNTRACKED};
  ASSERT_OK(tt_chan_make_opt(&gate, sizeof(int), 0, &uo));
  tt_pool *pl;
  tt_pool_opts po = {.name = "gated"};
  ASSERT_OK(tt_pool_make(&pl, 1, 2, &po));
  ASSERT_OK(tt_pool_submit(pl, gated_task, NULL)); /* taken by the worker, which blocks */
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_pool_submit(pl, gated_task, NULL));
  ASSERT_OK(tt_pool_submit(pl, gated_task, NULL)); /* the queue is full */
  ASSERT_ERR(tt_pool_try_submit(pl, count_task, NULL), TT_EAGAIN);
  ASSERT_ERR(tt_pool_submit_opt(pl, count_task, NULL, NULL, 0, NULL, tt_now() + TT_MSEC),
             TT_ETIMEDOUT);
  ASSERT_ERR(tt_pool_free(pl), TT_EBUSY);
  for (int i = 0; i < 3; i++)
    ASSERT_OK(tt_chan_send_val(gate, int, i));
  while (atomic_load(&done_count) < 3)
    tt_sleep(100 * TT_USEC);

  /* Cancelling: the running task sees it, queued ones are dropped unrun. */
  ASSERT_OK(tt_pool_submit(pl, gated_task, NULL));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_pool_submit_opt(pl, gated_task, NULL, NULL, 0, drop_fn, TT_FOREVER));
  ASSERT_OK(tt_pool_submit_opt(pl, gated_task, NULL, NULL, 0, drop_fn, TT_FOREVER));
  ASSERT_OK(tt_pool_cancel(pl));
  ASSERT_ERR(tt_pool_submit(pl, count_task, NULL), TT_ECLOSED);
  ASSERT_OK(tt_pool_wait(pl));
  ASSERT_EQ(atomic_load(&done_count), 4);
  ASSERT_EQ(atomic_load(&dropped), 100 + 2);
  ASSERT_EQ(tt_ctx_err(tt_pool_ctx(pl)), TT_ECANCELED);
  ASSERT_OK(tt_pool_free(pl));
  ASSERT_OK(tt_chan_release(gate));
  return 0;
}

TEST(pool_backpressure_and_cancel) { tt_test_run(backpressure_main, NULL, 2); }

static void reply_task(void *p) {
  tt_chan *out = p; /* the task's reference makes this legal */
  ASSERT_OK(tt_chan_send_val(out, int, 99));
}

static void no_ref_submit(void *p) {
  tt_pool *pl = p;
  tt_chan *out = tt_chan_make(sizeof(int), 1);
  tt_chan *foreign = tt_chan_make(sizeof(int), 1);
  ASSERT_OK(tt_chan_release(foreign)); /* freed: we hold no reference to it now */
  ASSERT_ERR(tt_pool_submit_opt(pl, reply_task, out, &foreign, 1, NULL, TT_FOREVER), TT_EPERM);
  ASSERT_OK(tt_chan_release(out));
}

static int refs_main(void *p) {
  int64_t chans = tt__chan_count_live();
  tt_pool *pl;
  ASSERT_OK(tt_pool_make(&pl, 2, 4, NULL));
  tt_chan *out = tt_chan_make(sizeof(int), 4);
  tt_chan *keep = tt_chan_make(sizeof(int), 4);
  ASSERT_OK(tt_pool_submit_opt(pl, reply_task, out, &out, 1, NULL, TT_FOREVER));
  ASSERT_EQ(tt_chan_recv_val(out, int, NULL), 99);
  /* The task's reference outlives ours while it is queued. */
  ASSERT_OK(tt_pool_cancel(pl));
  ASSERT_OK(tt_pool_wait(pl));
  ASSERT_OK(tt_pool_free(pl));
  tt_test_await_alone(); /* the workers hold the pool's context (and its channel) until they exit */
  ASSERT_OK(tt_pool_make(&pl, 1, 4, NULL));
  ASSERT_OK(tt_chan_make_opt(&gate, sizeof(int), 0, &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED}));
  atomic_store(&done_count, 0);
  ASSERT_OK(tt_pool_submit(pl, gated_task, NULL)); /* holds the only worker */
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_pool_submit_opt(pl, reply_task, keep, &keep, 1, NULL, TT_FOREVER));
  ASSERT_OK(tt_chan_release(keep));
  /* out, gate, keep (held by the task), the pool's queue and its context's done channel */
  ASSERT_EQ(tt__chan_count_live(), chans + 5);
  ASSERT_OK(tt_chan_send_val(gate, int, 0));
  while (atomic_load(&done_count) < 1)
    tt_sleep(100 * TT_USEC);
  ASSERT_OK(tt_pool_close(pl));
  ASSERT_OK(tt_pool_wait(pl));
  ASSERT_EQ(tt__chan_count_live(), chans + 4); /* the task ran and let keep go */
  /* Dropped unrun: the references go too. */
  ASSERT_OK(tt_pool_free(pl));
  tt_test_await_alone();
  ASSERT_EQ(tt__chan_count_live(), chans + 2);
  ASSERT_OK(tt_pool_make(&pl, 1, 4, NULL));
  ASSERT_OK(tt_pool_submit(pl, gated_task, NULL));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  keep = tt_chan_make(sizeof(int), 4);
  ASSERT_OK(tt_pool_submit_opt(pl, reply_task, keep, &keep, 1, NULL, TT_FOREVER));
  ASSERT_OK(tt_chan_release(keep));
  ASSERT_OK(tt_pool_cancel(pl));
  ASSERT_OK(tt_pool_wait(pl));
  ASSERT_OK(tt_pool_free(pl));
  tt_test_await_alone();
  ASSERT_EQ(tt__chan_count_live(), chans + 2);
  /* Without a reference: refused. */
  ASSERT_OK(tt_pool_make(&pl, 1, 4, NULL));
  ASSERT_OK(tt_go(no_ref_submit, pl));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 0);
  ASSERT_OK(tt_pool_close(pl));
  ASSERT_OK(tt_pool_wait(pl));
  ASSERT_OK(tt_pool_free(pl));
  tt_test_await_alone();
  ASSERT_OK(tt_chan_release(out));
  ASSERT_OK(tt_chan_release(gate));
  ASSERT_EQ(tt__chan_count_live(), chans);
  return 0;
}

TEST(pool_tasks_carry_references) { tt_test_run(refs_main, NULL, 2); }
