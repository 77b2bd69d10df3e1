/* SPDX-License-Identifier: MIT */
/* Contexts: the tree, deadlines, values, the current context, regions, shields, and cancellation
 * reaching coroutines parked in every kind of blocking call. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

#define TOL (50 * TT_MSEC * (int64_t)tt_test_slow()) /* lateness allowed on a loaded machine */

static bool done_closed(tt_ctx *c) {
  tt_chan *d = tt_ctx_done(c);
  return d && tt_chan_try_recv(d, NULL, NULL) == TT_ECLOSED;
}

/* ---- The tree ------------------------------------------------------------------------------ */

static int basics_main(void *p) {
  int64_t live = tt__ctx_count_live();
  tt_ctx *bg = tt_ctx_background();
  ASSERT_EQ(tt_ctx_err(bg), 0);
  ASSERT(tt_ctx_done(bg) == NULL);
  ASSERT_EQ(tt_ctx_deadline(bg, NULL), 0);
  ASSERT_ERR(tt_ctx_cancel(bg), TT_EINVAL);
  ASSERT_PTR_EQ(tt_ctx_current(), bg);
  ASSERT_PTR_EQ(tt_ctx_retain(bg), bg);
  tt_ctx_release(bg);
  tt_ctx_release(NULL);

  tt_ctx *c;
  ASSERT_OK(tt_ctx_with_cancel(bg, &c));
  ASSERT_EQ(tt_ctx_err(c), 0);
  ASSERT_EQ(tt_ctx_cause(c), 0);
  ASSERT(tt_ctx_done(c) != NULL);
  ASSERT_ERR(tt_chan_try_recv(tt_ctx_done(c), NULL, NULL), TT_EAGAIN);
  ASSERT_OK(tt_ctx_cancel_cause(c, -4242));
  ASSERT_EQ(tt_ctx_err(c), TT_ECANCELED);
  ASSERT_EQ(tt_ctx_cause(c), -4242);
  ASSERT(done_closed(c));
  ASSERT_OK(tt_ctx_cancel(c)); /* idempotent: the first cause stays */
  ASSERT_EQ(tt_ctx_cause(c), -4242);
  tt_ctx_release(c);

  static int k1, k2, k3;
  tt_ctx *v1, *v2, *v3;
  ASSERT_OK(tt_ctx_with_value(bg, &k1, "one", &v1));
  ASSERT_OK(tt_ctx_with_cancel(v1, &c));
  ASSERT_OK(tt_ctx_with_value(c, &k2, "two", &v2));
  ASSERT_OK(tt_ctx_with_value(v2, &k1, "shadow", &v3));
  ASSERT_STR_EQ(tt_ctx_value(v3, &k1), "shadow");
  ASSERT_STR_EQ(tt_ctx_value(v3, &k2), "two");
  ASSERT_STR_EQ(tt_ctx_value(c, &k1), "one");
  ASSERT(tt_ctx_value(v3, &k3) == NULL);
  ASSERT(tt_ctx_value(bg, &k1) == NULL);
  ASSERT(tt_ctx_done(v1) == NULL); /* under the background: never cancelled */
  ASSERT_PTR_EQ(tt_ctx_done(v3), tt_ctx_done(c));
  ASSERT_ERR(tt_ctx_cancel(v3), TT_EINVAL); /* a value context is not cancellable itself */
  ASSERT_OK(tt_ctx_cancel(c));
  ASSERT_EQ(tt_ctx_err(v3), TT_ECANCELED);
  ASSERT_EQ(tt_ctx_err(v1), 0);
  /* Released in any order: each holds its parent. */
  tt_ctx_release(c);
  tt_ctx_release(v1);
  ASSERT_STR_EQ(tt_ctx_value(v3, &k1), "shadow");
  tt_ctx_release(v2);
  tt_ctx_release(v3);

  /* Bad input. */
  ASSERT_ERR(tt_ctx_with_cancel(NULL, &c), TT_EINVAL);
  ASSERT_ERR(tt_ctx_with_cancel(bg, NULL), TT_EINVAL);
  ASSERT_ERR(tt_ctx_with_value(bg, NULL, NULL, &c), TT_EINVAL);
  ASSERT_ERR(tt_ctx_with_deadline(NULL, 0, &c), TT_EINVAL);
  ASSERT_ERR(tt_ctx_cancel(NULL), TT_EINVAL);
  ASSERT_ERR(tt_ctx_deadline(NULL, NULL), TT_EINVAL);
  ASSERT_EQ(tt_ctx_err(NULL), 0);
  ASSERT(tt_ctx_done(NULL) == NULL);
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_basics) { tt_test_run(basics_main, NULL, 2); }

static int tree_main(void *p) {
  int64_t live = tt__ctx_count_live();
  tt_ctx *root, *a, *b, *a1, *a2, *av, *b1;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &root));
  ASSERT_OK(tt_ctx_with_cancel(root, &a));
  ASSERT_OK(tt_ctx_with_cancel(root, &b));
  ASSERT_OK(tt_ctx_with_timeout(a, TT_SEC * 3600, &a1));
  static int key;
  ASSERT_OK(tt_ctx_with_value(a, &key, NULL, &av));
  ASSERT_OK(tt_ctx_with_cancel(av, &a2)); /* under a through a value context */
  ASSERT_OK(tt_ctx_with_cancel(b, &b1));
  /* A child's cancellation stays below it. */
  ASSERT_OK(tt_ctx_cancel(b));
  ASSERT(done_closed(b) && done_closed(b1));
  ASSERT_EQ(tt_ctx_err(root), 0);
  ASSERT_EQ(tt_ctx_err(a), 0);
  ASSERT(!done_closed(a2));
  /* The root's reaches every descendant, with its cause. */
  ASSERT_OK(tt_ctx_cancel_cause(root, -77));
  tt_ctx *all[] = {root, a, a1, av, a2};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    ASSERT_EQ(tt_ctx_err(all[i]), TT_ECANCELED);
    ASSERT_EQ(tt_ctx_cause(all[i]), -77);
  }
  ASSERT(done_closed(a1) && done_closed(a2));
  ASSERT_EQ(tt_ctx_cause(b1), TT_ECANCELED); /* cancelled earlier, by b */
  /* Born under a cancelled parent: cancelled at once. */
  tt_ctx *late;
  ASSERT_OK(tt_ctx_with_cancel(av, &late));
  ASSERT_EQ(tt_ctx_err(late), TT_ECANCELED);
  ASSERT_EQ(tt_ctx_cause(late), -77);
  ASSERT(done_closed(late));
  tt_ctx *rel[] = {late, b1, a2, root, a1, av, a, b};
  for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
    tt_ctx_release(rel[i]);
  ASSERT_EQ(tt__ctx_count_live(), live);

  /* A long chain: cancelled and freed without recursion. */
  int64_t n = SCALED(100000, 1000);
  tt_ctx *top, *cur;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &top));
  cur = tt_ctx_retain(top);
  for (int64_t i = 0; i < n; i++) {
    tt_ctx *nx;
    ASSERT_OK(i % 2 ? tt_ctx_with_value(cur, &key, NULL, &nx) : tt_ctx_with_cancel(cur, &nx));
    tt_ctx_release(cur); /* the child holds its parent */
    cur = nx;
  }
  ASSERT_EQ(tt_ctx_err(cur), 0);
  ASSERT_OK(tt_ctx_cancel(top));
  ASSERT_EQ(tt_ctx_err(cur), TT_ECANCELED);
  tt_ctx_release(top);
  tt_ctx_release(cur); /* frees the whole chain, bottom up */
  ASSERT_EQ(tt__ctx_count_live(), live);

  /* A wide tree released without being cancelled: the children leave their parent's list. */
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &root));
  for (int64_t i = 0; i < n / 10; i++) {
    ASSERT_OK(tt_ctx_with_cancel(root, &a));
    if (i % 3 == 0)
      ASSERT_OK(tt_ctx_cancel(a));
    tt_ctx_release(a);
  }
  tt_ctx_release(root);
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_tree_cancel_and_free) { tt_test_run(tree_main, NULL, 2); }

/* ---- Deadlines ------------------------------------------------------------------------------ */

static int deadline_main(void *p) {
  int64_t live = tt__ctx_count_live();
  int64_t t0 = tt_now();
  tt_ctx *c, *d, *e;
  ASSERT_OK(tt_ctx_with_timeout(tt_ctx_background(), 5 * TT_MSEC, &c));
  int64_t dl = 0;
  ASSERT_EQ(tt_ctx_deadline(c, &dl), 1);
  ASSERT_GE(dl, t0 + 5 * TT_MSEC);
  ASSERT_LE(dl, tt_now() + 5 * TT_MSEC);
  /* A later deadline under it keeps the parent's. */
  ASSERT_OK(tt_ctx_with_deadline(c, dl + TT_SEC, &d));
  int64_t dl2 = 0;
  ASSERT_EQ(tt_ctx_deadline(d, &dl2), 1);
  ASSERT_EQ(dl2, dl);
  /* Wait for it on the done channel. */
  ASSERT_ERR(tt_chan_recv(tt_ctx_done(c), NULL, NULL), TT_ECLOSED);
  int64_t t1 = tt_now();
  ASSERT_GE(t1, dl);
  ASSERT_LE(t1, dl + TOL);
  ASSERT_EQ(tt_ctx_err(c), TT_ETIMEDOUT);
  ASSERT_EQ(tt_ctx_cause(c), TT_ETIMEDOUT);
  ASSERT_EQ(tt_ctx_err(d), TT_ETIMEDOUT);
  ASSERT(done_closed(d));
  /* A deadline already past: cancelled at once. */
  ASSERT_OK(tt_ctx_with_deadline(tt_ctx_background(), tt_now() - 1, &e));
  ASSERT_EQ(tt_ctx_err(e), TT_ETIMEDOUT);
  tt_ctx_release(e);
  tt_ctx_release(d);
  tt_ctx_release(c);
  /* Released long before their deadlines: the timers go with them (none left behind, none
   * fires into freed memory). */
  int64_t n = SCALED(20000, 200);
  for (int64_t i = 0; i < n; i++) {
    ASSERT_OK(tt_ctx_with_timeout(tt_ctx_background(), (i % 7) * TT_USEC, &c));
    if (i % 5 == 0)
      tt_yield();
    tt_ctx_release(c);
  }
  tt_sleep(TT_MSEC);
  ASSERT_EQ(tt__ctx_count_live(), live);
  ASSERT_OK(tt_ctx_with_timeout(tt_ctx_background(), 3600 * TT_SEC, &c));
  ASSERT_EQ(tt_ctx_err(c), 0);
  tt_ctx_release(c);
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_deadline) { tt_test_run(deadline_main, NULL, 2); }

/* A context with a deadline made by a plain thread, and one outliving the run. */
static _Atomic int thread_done;

static void *thread_deadline(void *p) {
  tt_ctx *c;
  int *res = p;
  res[0] = tt_ctx_with_timeout(tt_ctx_background(), 2 * TT_MSEC, &c);
  if (res[0] == 0) {
    res[1] = tt_chan_recv(tt_ctx_done(c), NULL, NULL); /* the thread blocks on a futex */
    res[2] = tt_ctx_err(c);
    tt_ctx_release(c);
  }
  atomic_store(&thread_done, 1);
  return NULL;
}

static tt_ctx *outliver;

static int thread_deadline_main(void *p) {
  int res[3] = {1, 1, 1};
  pthread_t t;
  atomic_store(&thread_done, 0);
  ASSERT_EQ(pthread_create(&t, NULL, thread_deadline, res), 0);
  /* Not pthread_join at once: the timer may live on this worker, which must keep running. */
  while (!atomic_load(&thread_done))
    tt_sleep(100 * TT_USEC);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(res[0], 0);
  ASSERT_EQ(res[1], TT_ECLOSED);
  ASSERT_EQ(res[2], TT_ETIMEDOUT);
  ASSERT_OK(tt_ctx_with_timeout(tt_ctx_background(), 3600 * TT_SEC, &outliver));
  return 0;
}

TEST(ctx_deadline_threads_and_runs) {
  int64_t live = tt__ctx_count_live();
  tt_test_run(thread_deadline_main, NULL, 2);
  /* Its run is over: the timer never fires, the context still works and frees. */
  tt_ctx *c;
  ASSERT_EQ(tt_ctx_err(outliver), 0);
  ASSERT_ERR(tt_ctx_with_timeout(outliver, TT_SEC, &c), TT_ENOTRUNNING);
  ASSERT_OK(tt_ctx_with_cancel(outliver, &c)); /* no timer needed */
  ASSERT_OK(tt_ctx_cancel(outliver));
  ASSERT_EQ(tt_ctx_err(c), TT_ECANCELED);
  tt_ctx_release(c);
  tt_ctx_release(outliver);
  ASSERT_EQ(tt__ctx_count_live(), live);
  tt_test_run(thread_deadline_main, NULL, 1); /* and the next run is unaffected */
  tt_ctx_release(outliver);
}

/* ---- Cancellation reaches every blocking call ---------------------------------------------- */

enum {
  B_RECV,
  B_SEND,
  B_SELECT,
  B_SLEEP,
  B_WG,
  B_NIL_RECV,
  B_SELECT_EMPTY,
  B_RECV_DL, /* a wait with a deadline of its own, far away */
  B_MUTEX,
  B_RLOCK,
  B_WLOCK,
  B_COND,
  B_SEM,
  B_ONCE,
  B_GROUP,
  B_BLOCKING,
  B_KINDS
};
static const int kind_reason[B_KINDS] = {
    TT_WAIT_CHAN_RECV,      TT_WAIT_CHAN_SEND,     TT_WAIT_SELECT,          TT_WAIT_SLEEP,
    TT_WAIT_WAITGROUP_WAIT, TT_WAIT_CHAN_RECV_NIL, TT_WAIT_SELECT_NO_CASES, TT_WAIT_CHAN_RECV,
    TT_WAIT_MUTEX_LOCK,     TT_WAIT_RWMUTEX_RLOCK, TT_WAIT_RWMUTEX_LOCK,    TT_WAIT_COND_WAIT,
    TT_WAIT_SEMACQUIRE,     TT_WAIT_ONCE_DO,       TT_WAIT_GROUP_WAIT,      TT_WAIT_BLOCKING_CALL,
};

/* The objects the blockers wait on, each held or blocked by someone outside the context. */
static struct {
  tt_mutex m, cm;
  tt_rwmutex rw;
  tt_cond cond;
  tt_sem sem;
  tt_once once;
  tt_group *group;
  tt_chan *gate; /* untracked: closed at the end to let the once's function and the child go */
} objs;

static _Atomic int blocking_release;

static intptr_t blocking_body(void *p) { /* runs on a pool thread: a real blocking call */
  while (!atomic_load(&blocking_release))
    usleep(200);
  return 0;
}

static void once_body(void *p) { tt_chan_recv(objs.gate, NULL, NULL); }
static void once_runner(void *p) { tt_once_do(&objs.once, once_body, NULL); }
static int group_child(void *p) {
  tt_chan_recv(objs.gate, NULL, NULL);
  return 0;
}

typedef struct blocker {
  int kind;
  tt_chan *ch;  /* untracked, shared by all: nobody sends on it */
  tt_chan *sch; /* and nobody receives from this one */
  tt_wg *wg;
  _Atomic int result;
  _Atomic int64_t returned_at;
  _Atomic int worker;
  _Atomic int *left;
} blocker;

static void block_fn(void *p) {
  blocker *b = p;
  atomic_store(&b->worker, tt_worker_index());
  int r = 0, v = 1;
  tt_select_case cs[2] = {TT_CASE_RECV(b->ch, &v), TT_CASE_RECV(NULL, &v)};
  switch (b->kind) {
  case B_RECV:
    r = tt_chan_recv(b->ch, &v, NULL);
    break;
  case B_SEND:
    r = tt_chan_send(b->sch, &v);
    break;
  case B_SELECT:
    r = tt_select(cs, 2);
    break;
  case B_SLEEP:
    r = tt_sleep(3600 * TT_SEC);
    break;
  case B_WG:
    r = tt_wg_wait(b->wg);
    break;
  case B_NIL_RECV:
    r = tt_chan_recv(NULL, &v, NULL);
    break;
  case B_SELECT_EMPTY:
    r = tt_select(NULL, 0);
    break;
  case B_RECV_DL:
    r = tt_chan_recv_dl(b->ch, &v, NULL, tt_now() + 3600 * TT_SEC);
    break;
  case B_MUTEX:
    r = tt_mutex_lock(&objs.m);
    break;
  case B_RLOCK:
    r = tt_rwmutex_rlock(&objs.rw);
    break;
  case B_WLOCK:
    r = tt_rwmutex_lock(&objs.rw);
    break;
  case B_COND:
    ASSERT_OK(tt_mutex_lock(&objs.cm));
    r = tt_cond_wait(&objs.cond, &objs.cm);
    ASSERT_OK(tt_mutex_unlock(&objs.cm)); /* held again whatever the wait's result */
    break;
  case B_SEM:
    r = tt_sem_acquire(&objs.sem, 1);
    break;
  case B_ONCE:
    r = tt_once_do(&objs.once, once_body, NULL);
    break;
  case B_GROUP:
    r = tt_group_wait(objs.group);
    break;
  case B_BLOCKING: {
    intptr_t res;
    r = tt_blocking(blocking_body, NULL, &res);
    break;
  }
  }
  atomic_store(&b->returned_at, tt_now());
  atomic_store(&b->result, r);
  atomic_fetch_sub(b->left, 1);
}

typedef struct cancel_case {
  int procs;
  int from_thread;
  int per_kind;
} cancel_case;

static void *thread_cancel(void *p) {
  tt_ctx_cancel(p);
  return NULL;
}

static int cancel_parked_main(void *p) {
  const cancel_case *cc = p;
  int64_t live = tt__ctx_count_live();
  tt_chan_opts uo = {.mode = TT_CHAN_UNTRACKED};
  tt_chan *ch, *sch;
  ASSERT_OK(tt_chan_make_opt(&ch, sizeof(int), 0, &uo));
  ASSERT_OK(tt_chan_make_opt(&sch, sizeof(int), 0, &uo));
  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_wg_add(&wg, 1)); /* never done */
  tt_ctx *ctx;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &ctx));
  /* The objects, held by this coroutine (outside the context) or by coroutines under the
   * background context. */
  tt_mutex_init(&objs.m);
  tt_mutex_init(&objs.cm);
  tt_rwmutex_init(&objs.rw);
  tt_cond_init(&objs.cond);
  tt_once_init(&objs.once);
  ASSERT_OK(tt_sem_init(&objs.sem, 1));
  ASSERT_OK(tt_chan_make_opt(&objs.gate, 0, 0, &uo));
  atomic_store(&blocking_release, 0);
  ASSERT_OK(tt_mutex_lock(&objs.m));
  ASSERT_OK(tt_rwmutex_lock(&objs.rw));
  ASSERT_OK(tt_sem_acquire(&objs.sem, 1));
  ASSERT_OK(tt_group_make(tt_ctx_background(), &objs.group));
  ASSERT_OK(tt_group_go(objs.group, group_child, NULL));
  tt_go_opts bg = {.ctx = tt_ctx_background()};
  ASSERT_OK(tt_go_opt(once_runner, NULL, &bg, NULL));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 2); /* the once's function and the group's child */
  int n = B_KINDS * cc->per_kind;
  blocker *bs = calloc((size_t)n, sizeof *bs);
  _Atomic int left = n;
  tt_go_opts o = {.ctx = ctx};
  for (int i = 0; i < n; i++) {
    bs[i] = (blocker){.kind = i % B_KINDS, .ch = ch, .sch = sch, .wg = &wg, .left = &left};
    atomic_store(&bs[i].result, 1);
    atomic_store(&bs[i].worker, -1);
    ASSERT_OK(tt_go_opt(block_fn, &bs[i], &o, NULL));
  }
  /* Every one parked in its call (receivers and senders on one channel: as many of each). */
  for (int k = 0; k < B_KINDS; k++) {
    int64_t want = cc->per_kind;
    if (k == B_RECV || k == B_RECV_DL)
      want = 2 * cc->per_kind;
    tt_test_await_reason(kind_reason[k], want);
  }
  /* Ours is not cancelled: this coroutine still runs under the background context. */
  ASSERT_PTR_EQ(tt_ctx_current(), tt_ctx_background());
  int64_t t0 = tt_now();
  if (cc->from_thread) {
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, thread_cancel, ctx), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
  } else {
    ASSERT_OK(tt_ctx_cancel(ctx));
  }
  while (atomic_load(&left) > 0) {
    ASSERT_LE(tt_now() - t0, TOL);
    tt_yield();
  }
  int self = tt_worker_index(), other = 0;
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(atomic_load(&bs[i].result), TT_ECANCELED);
    ASSERT_LE(atomic_load(&bs[i].returned_at) - t0, TOL);
    other += atomic_load(&bs[i].worker) != self;
  }
  if (cc->procs == 1)
    ASSERT_EQ(other, 0); /* all on the canceller's worker */
  /* Let the holders go (the abandoned blocking calls end on their pool threads). */
  atomic_store(&blocking_release, 1);
  ASSERT_OK(tt_mutex_unlock(&objs.m));
  ASSERT_OK(tt_rwmutex_unlock(&objs.rw));
  ASSERT_OK(tt_sem_release(&objs.sem, 1));
  ASSERT_OK(tt_chan_close(objs.gate));
  ASSERT_OK(tt_group_wait(objs.group));
  ASSERT_OK(tt_group_free(objs.group));
  ASSERT_OK(tt_chan_release(objs.gate));
  tt_test_await_alone();
  free(bs);
  tt_ctx_release(ctx);
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_OK(tt_chan_release(sch));
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_cancel_parked_same_worker) {
  cancel_case cc = {1, 0, 3};
  tt_test_run(cancel_parked_main, &cc, 1);
}

TEST(ctx_cancel_parked_other_worker) {
  cancel_case cc = {2, 0, 8};
  tt_test_run(cancel_parked_main, &cc, 2);
}

TEST(ctx_cancel_parked_from_thread) {
  cancel_case cc = {2, 1, 8};
  tt_test_run(cancel_parked_main, &cc, 2);
}

/* A deadline cancels the coroutines blocked under it: their calls return TT_ECANCELED, and the
 * context says why. */
static void recv_report(void *p) {
  _Atomic int *res = p;
  int v;
  tt_select_case cs[1] = {TT_CASE_RECV(NULL, &v)};
  atomic_store(res, tt_select(cs, 1));
}

static int deadline_parked_main(void *p) {
  tt_ctx *c;
  int64_t t0 = tt_now();
  ASSERT_OK(tt_ctx_with_timeout(tt_ctx_background(), 5 * TT_MSEC, &c));
  _Atomic int res = 1;
  tt_go_opts o = {.ctx = c};
  ASSERT_OK(tt_go_opt(recv_report, &res, &o, NULL));
  while (atomic_load(&res) == 1)
    tt_sleep(100 * TT_USEC);
  ASSERT_EQ(atomic_load(&res), TT_ECANCELED);
  ASSERT_GE(tt_now() - t0, 5 * TT_MSEC);
  ASSERT_LE(tt_now() - t0, 5 * TT_MSEC + TOL);
  ASSERT_EQ(tt_ctx_err(c), TT_ETIMEDOUT);
  tt_ctx_release(c);
  return 0;
}

TEST(ctx_deadline_cancels_parked) { tt_test_run(deadline_parked_main, NULL, 2); }

/* ---- Inheritance, regions and shields ---------------------------------------------------------
 */

typedef struct inherit {
  tt_ctx *seen[3];
  tt_wg wg;
} inherit;

static void grandchild(void *p) {
  inherit *in = p;
  in->seen[2] = tt_ctx_current();
  tt_wg_done(&in->wg);
}

static void child(void *p) {
  inherit *in = p;
  in->seen[1] = tt_ctx_current();
  ASSERT_OK(tt_go(grandchild, in));
  tt_wg_done(&in->wg);
}

static int inherit_main(void *p) {
  int64_t live = tt__ctx_count_live();
  inherit in = {.wg = TT_WG_INIT};
  tt_ctx *c, *c2;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &c));
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &c2));
  /* Through the spawn option, then inherited by the grandchild. */
  tt_wg_add(&in.wg, 2);
  tt_go_opts o = {.ctx = c};
  ASSERT_OK(tt_go_opt(child, &in, &o, NULL));
  ASSERT_OK(tt_wg_wait(&in.wg));
  ASSERT_PTR_EQ(in.seen[1], c);
  ASSERT_PTR_EQ(in.seen[2], c);
  /* Through a region: children spawned inside inherit its context. */
  tt_ctx_scope s;
  ASSERT_OK(tt_ctx_enter(&s, c2));
  ASSERT_PTR_EQ(tt_ctx_current(), c2);
  tt_wg_add(&in.wg, 2);
  ASSERT_OK(tt_go(child, &in));
  ASSERT_OK(tt_wg_wait(&in.wg));
  ASSERT_PTR_EQ(in.seen[1], c2);
  ASSERT_PTR_EQ(in.seen[2], c2);
  /* The background context as the option detaches the child. */
  tt_wg_add(&in.wg, 2);
  o.ctx = tt_ctx_background();
  ASSERT_OK(tt_go_opt(child, &in, &o, NULL));
  ASSERT_OK(tt_wg_wait(&in.wg));
  ASSERT_PTR_EQ(in.seen[1], tt_ctx_background());
  ASSERT_PTR_EQ(in.seen[2], tt_ctx_background());
  ASSERT_OK(tt_ctx_leave(&s));
  ASSERT_PTR_EQ(tt_ctx_current(), tt_ctx_background());
  tt_test_await_alone(); /* the children's references are gone with them */
  tt_ctx_release(c);
  tt_ctx_release(c2);
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_inherited_by_children) { tt_test_run(inherit_main, NULL, 2); }

static void exits_in_region(void *p) {
  tt_ctx_scope s1, s2;
  tt_ctx *c = p;
  ASSERT_OK(tt_ctx_enter(&s1, c));
  ASSERT_OK(tt_ctx_enter(&s2, tt_ctx_background()));
  ASSERT_OK(tt_shield_begin()); /* and a shield left up */
}

static int region_main(void *p) {
  int64_t live = tt__ctx_count_live();
  tt_ctx *outer, *inner;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &outer));
  tt_ctx_scope so, si, bad;
  ASSERT_OK(tt_ctx_enter(&so, outer));
  /* A narrower deadline for one region: its blocking calls end when it passes (measured from
   * before the context is made: its deadline is at least 3 ms after t0, however slow the run). */
  int64_t t0 = tt_now();
  ASSERT_OK(tt_ctx_with_timeout(tt_ctx_current(), 3 * TT_MSEC, &inner));
  ASSERT_OK(tt_ctx_enter(&si, inner));
  ASSERT_ERR(tt_sleep(3600 * TT_SEC), TT_ECANCELED);
  ASSERT_GE(tt_now() - t0, 2 * TT_MSEC);
  ASSERT_ERR(tt_chan_recv(NULL, NULL, NULL), TT_ECANCELED); /* at once, without parking */
  ASSERT_ERR(tt_ctx_leave(&so), TT_EINVAL);                 /* not the innermost */
  bad.co_ = NULL;
  bad.depth_ = 1;
  ASSERT_ERR(tt_ctx_leave(&bad), TT_EINVAL);
  ASSERT_OK(tt_ctx_leave(&si));
  tt_ctx_release(inner);
  /* Outside it, blocking works again. */
  ASSERT_PTR_EQ(tt_ctx_current(), outer);
  ASSERT_OK(tt_sleep(100 * TT_USEC));
  ASSERT_ERR(tt_chan_recv_dl(NULL, NULL, NULL, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  /* Cancelling the region's context cancels what the coroutine does inside it. */
  ASSERT_OK(tt_ctx_cancel(outer));
  ASSERT_ERR(tt_sleep(TT_MSEC), TT_ECANCELED);
  ASSERT_OK(tt_ctx_leave(&so));
  ASSERT_ERR(tt_ctx_leave(&so), TT_EINVAL); /* left already */
  ASSERT_OK(tt_sleep(100 * TT_USEC));
  ASSERT_ERR(tt_ctx_enter(NULL, outer), TT_EINVAL);
  ASSERT_ERR(tt_ctx_enter(&so, NULL), TT_EINVAL);
  /* A coroutine that exits inside regions leaves them. */
  ASSERT_OK(tt_go(exits_in_region, outer));
  tt_test_await_alone();
  tt_ctx_release(outer);
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_regions) { tt_test_run(region_main, NULL, 2); }

static void *thread_region(void *p) {
  tt_ctx_scope s;
  int *r = p;
  r[0] = tt_ctx_enter(&s, tt_ctx_background());
  r[1] = tt_shield_begin();
  r[2] = tt_shield_end();
  r[3] = tt_ctx_current() == tt_ctx_background();
  return NULL;
}

static void shielded_sleeper(void *p) {
  _Atomic int64_t *slept = p;
  tt_shield_begin();
  int64_t t0 = tt_now();
  int r = tt_sleep(20 * TT_MSEC);
  atomic_store(slept, r == 0 ? tt_now() - t0 : -1);
  tt_shield_end();
  /* The shield down, the cancellation counts again. */
  if (tt_sleep(TT_SEC) != TT_ECANCELED)
    atomic_store(slept, -2);
}

static int shield_main(void *p) {
  tt_ctx *c;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &c));
  tt_ctx_scope s;
  ASSERT_OK(tt_ctx_enter(&s, c));
  ASSERT_OK(tt_ctx_cancel(c));
  ASSERT_ERR(tt_sleep(TT_MSEC), TT_ECANCELED);
  ASSERT_OK(tt_shield_begin());
  ASSERT_OK(tt_shield_begin()); /* nests */
  ASSERT_OK(tt_sleep(100 * TT_USEC));
  ASSERT_ERR(tt_chan_recv_dl(NULL, NULL, NULL, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_OK(tt_shield_end());
  ASSERT_OK(tt_sleep(100 * TT_USEC));
  ASSERT_OK(tt_shield_end());
  ASSERT_ERR(tt_shield_end(), TT_EINVAL);
  ASSERT_ERR(tt_sleep(TT_MSEC), TT_ECANCELED);
  ASSERT_OK(tt_ctx_leave(&s));
  tt_ctx_release(c);

  /* A shielded coroutine parked when its context is cancelled sleeps on. */
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &c));
  _Atomic int64_t slept = 0;
  tt_go_opts o = {.ctx = c};
  ASSERT_OK(tt_go_opt(shielded_sleeper, (void *)&slept, &o, NULL));
  tt_test_await_reason(TT_WAIT_SLEEP, 1);
  ASSERT_OK(tt_ctx_cancel(c));
  tt_test_await_alone();
  ASSERT_GE(atomic_load(&slept), 19 * TT_MSEC);
  tt_ctx_release(c);

  int r[4] = {0, 0, 0, 0};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, thread_region, r), 0);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(r[0], TT_ENOTCORO);
  ASSERT_EQ(r[1], TT_ENOTCORO);
  ASSERT_EQ(r[2], TT_ENOTCORO);
  ASSERT_EQ(r[3], 1);
  return 0;
}

TEST(ctx_shield) { tt_test_run(shield_main, NULL, 2); }

/* ---- Channels carried by contexts ----------------------------------------------------------- */

static int key_results;

static void reporter(void *p) {
  tt_chan *ch;
  ASSERT_OK(tt_ctx_chan(tt_ctx_current(), &key_results, &ch));
  ASSERT_OK(tt_chan_send_val(ch, int, 7));
  ASSERT_OK(tt_chan_release(ch));
}

static void no_ref(void *p) {
  /* No reference to the tracked channel: it cannot be stored in a context. */
  tt_ctx *c;
  ASSERT_ERR(tt_ctx_with_chan(tt_ctx_background(), &key_results, p, &c), TT_EPERM);
}

static int with_chan_main(void *p) {
  int64_t chans = tt__chan_count_live(), live = tt__ctx_count_live();
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  tt_ctx *c;
  ASSERT_OK(tt_ctx_with_chan(tt_ctx_background(), &key_results, ch, &c));
  /* The child gets only the context, and reaches the channel through it. */
  tt_go_opts o = {.ctx = c};
  ASSERT_OK(tt_go_opt(reporter, NULL, &o, NULL));
  int v = 0;
  ASSERT_OK(tt_chan_recv(ch, &v, NULL));
  ASSERT_EQ(v, 7);
  ASSERT_OK(tt_go(no_ref, ch));
  tt_test_await_alone();
  tt_chan *got;
  ASSERT_ERR(tt_ctx_chan(c, &live, &got), TT_EINVAL);
  ASSERT(got == NULL);
  ASSERT(tt_ctx_value(c, &key_results) == NULL); /* a channel, not a plain value */
  /* The context's reference keeps the channel after ours goes; freeing it frees the channel. */
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(tt__chan_count_live(), chans + 1);
  tt_ctx_release(c);
  ASSERT_EQ(tt__chan_count_live(), chans);
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_carries_channel_reference) { tt_test_run(with_chan_main, NULL, 2); }

/* ---- Stress: cancellations racing with spawns, regions and parks on every worker ---------- */

typedef struct stress {
  tt_ctx *root;
  _Atomic int64_t cancelled, finished;
  tt_wg wg;
} stress;

static void stress_leaf(void *p) {
  stress *s = p;
  tt_ctx *c;
  int r = tt_ctx_with_timeout(tt_ctx_current(), (int64_t)(tt_now() % 5) * 100 * TT_USEC, &c);
  if (r == 0) {
    tt_ctx_scope sc;
    ASSERT_OK(tt_ctx_enter(&sc, c));
    r = tt_sleep(TT_SEC);
    ASSERT_OK(tt_ctx_leave(&sc));
    tt_ctx_release(c);
  }
  if (r == TT_ECANCELED)
    atomic_fetch_add(&s->cancelled, 1);
  atomic_fetch_add(&s->finished, 1);
  tt_wg_done(&s->wg);
}

static void stress_branch(void *p) {
  stress *s = p;
  tt_ctx *c;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_current(), &c));
  tt_go_opts o = {.ctx = c};
  for (int i = 0; i < 8; i++) {
    tt_wg_add(&s->wg, 1);
    ASSERT_OK(tt_go_opt(stress_leaf, s, &o, NULL));
  }
  if (tt_now() % 3 == 0)
    tt_ctx_cancel(c);
  tt_ctx_release(c);
  tt_wg_done(&s->wg);
}

static int stress_main(void *p) {
  int64_t live = tt__ctx_count_live();
  stress s = {.wg = TT_WG_INIT};
  int64_t rounds = SCALED(200, 10);
  for (int64_t k = 0; k < rounds; k++) {
    ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &s.root));
    tt_go_opts o = {.ctx = s.root};
    for (int i = 0; i < 8; i++) {
      tt_wg_add(&s.wg, 1);
      ASSERT_OK(tt_go_opt(stress_branch, &s, &o, NULL));
    }
    tt_yield();
    ASSERT_OK(tt_ctx_cancel(s.root));
    ASSERT_OK(tt_wg_wait(&s.wg));
    tt_ctx_release(s.root);
  }
  ASSERT_EQ(atomic_load(&s.finished), rounds * 64);
  ASSERT_EQ(atomic_load(&s.cancelled), rounds * 64); /* every sleep was cut short */
  tt_test_await_alone(); /* their references to their contexts go when they exit */
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_stress) { tt_test_run(stress_main, NULL, 2); }

/* ---- Signals ------------------------------------------------------------------------------ */

uint64_t tt__signal_handled(int sig); /* src/signal: deliveries the dispatcher has handled */

static void sleep_report(void *p) { atomic_store((_Atomic int *)p, tt_sleep(3600 * TT_SEC)); }

static int signals_main(void *p) {
  int64_t live = tt__ctx_count_live();
  struct sigaction before, during, after;
  ASSERT_EQ(sigaction(SIGUSR2, NULL, &before), 0);
  tt_ctx *c;
  int sigs[] = {SIGUSR2};
  ASSERT_OK(tt_ctx_with_signals(tt_ctx_background(), sigs, 1, &c));
  ASSERT_EQ(sigaction(SIGUSR2, NULL, &during), 0);
  ASSERT(during.sa_handler != before.sa_handler);
  _Atomic int res = 1;
  tt_go_opts o = {.ctx = c};
  ASSERT_OK(tt_go_opt(sleep_report, (void *)&res, &o, NULL));
  tt_test_await_reason(TT_WAIT_SLEEP, 1);
  ASSERT_EQ(tt_ctx_err(c), 0);
  ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
  ASSERT_ERR(tt_chan_recv(tt_ctx_done(c), NULL, NULL), TT_ECLOSED);
  ASSERT_EQ(tt_ctx_err(c), TT_ECANCELED);
  ASSERT_EQ(tt_ctx_cause(c), SIGUSR2);
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&res), TT_ECANCELED);
  /* Still caught while the context lives: wait until the dispatcher has seen it (signals are
   * delivered late under qemu), then let the context go. */
  uint64_t seen = tt__signal_handled(SIGUSR2);
  ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
  int64_t give_up = tt_now() + 10 * TT_SEC;
  while (tt__signal_handled(SIGUSR2) == seen && tt_now() < give_up)
    tt_sleep(100 * TT_USEC);
  ASSERT_GT(tt__signal_handled(SIGUSR2), seen);
  tt_ctx_release(c);
  ASSERT_EQ(sigaction(SIGUSR2, NULL, &after), 0);
  ASSERT(after.sa_handler == before.sa_handler);
  ASSERT_EQ(tt__ctx_count_live(), live);
  /* Refused signals, bad arguments. */
  int bad[] = {SIGKILL};
  ASSERT_ERR(tt_ctx_with_signals(tt_ctx_background(), bad, 1, &c), TT_EINVAL);
  ASSERT(c == NULL);
  ASSERT_ERR(tt_ctx_with_signals(tt_ctx_background(), NULL, 1, &c), TT_EINVAL);
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_with_signals) { tt_test_run(signals_main, NULL, 2); }

/* A context's own timer firing while an ancestor's cancellation walks through it: both walks
 * must complete (each child is handled by exactly one, and every reference taken is returned).
 * The timers are armed by a plain thread, so they live on random workers and fire in parallel
 * with the cancellation. */
typedef struct race {
  tt_ctx *root;
  tt_ctx *kids[64];
  int64_t deadline;
} race;

static void *race_arm(void *p) {
  race *r = p;
  for (int i = 0; i < 64; i++) {
    tt_ctx *mid;
    ASSERT_OK(tt_ctx_with_deadline(r->root, r->deadline + (i % 8) * 5 * TT_USEC, &mid));
    ASSERT_OK(tt_ctx_with_deadline(mid, r->deadline + (i % 5) * 7 * TT_USEC, &r->kids[i]));
    tt_ctx_release(mid); /* held by its child */
  }
  return NULL;
}

static int timer_race_main(void *p) {
  int64_t live = tt__ctx_count_live();
  int64_t rounds = SCALED(300, 20);
  for (int64_t k = 0; k < rounds; k++) {
    race r;
    ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &r.root));
    r.deadline = tt_now() + 300 * TT_USEC;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, race_arm, &r), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    while (tt_now() < r.deadline + (k % 40) * TT_USEC) /* cancel among the firing timers */
      ;
    ASSERT_OK(tt_ctx_cancel(r.root));
    for (int i = 0; i < 64; i++) {
      ASSERT_NE(tt_ctx_err(r.kids[i]), 0);
      tt_ctx_release(r.kids[i]);
    }
    tt_ctx_release(r.root);
  }
  /* A context whose timer's callback was under way at its last release is freed by that
   * callback, a moment later (longer under sanitizers). */
  int64_t give_up = tt_now() + (int64_t)(TT_SEC * tt_test_slow());
  while (tt__ctx_count_live() != live && tt_now() < give_up)
    tt_sleep(TT_MSEC);
  ASSERT_EQ(tt__ctx_count_live(), live);
  return 0;
}

TEST(ctx_cancel_races_own_timers) { tt_test_run(timer_race_main, NULL, 2); }
