/* SPDX-License-Identifier: MIT */
/* Coroutines: spawn, run, yield, exit, ids, options and errors. */
#include <dlfcn.h>
#include <fenv.h>
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

static _Atomic int64_t ran;

static void bump_done(void *arg) {
  atomic_fetch_add(&ran, 1);
  tt_wg_done(arg);
}

static int spawn_many(void *arg) {
  int64_t n = *(int64_t *)arg;
  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_wg_add(&wg, n));
  for (int64_t i = 0; i < n; i++)
    ASSERT_OK(tt_go(bump_done, &wg));
  ASSERT_OK(tt_wg_wait(&wg));
  ASSERT_EQ(atomic_load(&ran), n);
  ASSERT_EQ(tt_wg_count(&wg), 0);
  return 0;
}

TEST(spawn_and_wait_one_worker) {
  int64_t n = SCALED(100000, 1000);
  tt_test_run(spawn_many, &n, 1);
}

TEST(spawn_and_wait_all_workers) {
  int64_t n = SCALED(200000, 1000);
  tt_test_run(spawn_many, &n, 0);
}

static int returns_value(void *arg) {
  ASSERT_EQ(tt_self(), 1);
  ASSERT_EQ(tt_num_coroutines(), 1);
  ASSERT(tt_running());
  ASSERT_GE(tt_worker_index(), 0);
  return 42;
}

TEST(run_returns_result_and_main_is_one) {
  tt_run_opts o = {.procs = 2};
  ASSERT_EQ(tt_test_run_opt(returns_value, NULL, &o), 42);
  ASSERT(!tt_running());
  ASSERT_EQ(tt_num_coroutines(), 0);
  ASSERT_EQ(tt_self(), 0);
  ASSERT_EQ(tt_worker_index(), -1);
}

static void noop(void *arg) {}

static int nested_run(void *arg) {
  ASSERT_ERR(tt_test_run_opt(returns_value, NULL, NULL), TT_EBUSY);
  return 0;
}

TEST(api_errors) {
  /* Before start-up. */
  ASSERT_ERR(tt_go(noop, NULL), TT_ENOTRUNNING);
  ASSERT_ERR(tt_sleep(1000), TT_ENOTRUNNING);
  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_wg_add(&wg, 1));
  ASSERT_ERR(tt_wg_wait(&wg), TT_ENOTRUNNING);
  ASSERT_ERR(tt_wg_add(&wg, -2), TT_EINVAL);
  ASSERT_EQ(tt_wg_count(&wg), 1);
  ASSERT_ERR(tt_yield(), TT_ENOTCORO);
  tt_counts c;
  ASSERT_ERR(tt_counts_get(&c), TT_ENOTRUNNING);
  ASSERT_EQ(c.total, 0);
  ASSERT_ERR(tt_counts_get(NULL), TT_EINVAL);
  ASSERT_ERR(tt_coro_foreach(NULL, NULL), TT_EINVAL);
  ASSERT_ERR(tt_label_set("k", "v"), TT_ENOTCORO);
  ASSERT(tt_label_get("k") == NULL);
  ASSERT_ERR(tt_name_set("n"), TT_ENOTCORO);
  ASSERT_EQ(tt_num_coroutines(), 0);
  ASSERT_EQ(tt_procs(), 0);
  ASSERT_ERR(tt_wg_add(NULL, 1), TT_EINVAL);
  ASSERT_ERR(tt_wg_wait(NULL), TT_EINVAL);
  ASSERT_EQ(tt_wg_count(NULL), TT_EINVAL);
  tt_wg_init(NULL);
  ASSERT(tt_state_string(TT_STATE_COUNT) == NULL);
  ASSERT(tt_wait_reason_string(-1) == NULL);
  ASSERT_STR_EQ(tt_wait_reason_string(TT_WAIT_CHAN_RECV), "chan receive");
  ASSERT_STR_EQ(tt_state_string(TT_STATE_RUNNABLE), "runnable");
  ASSERT_ERR(tt_test_run_opt(NULL, NULL, NULL), TT_EINVAL);
  tt_run_opts bad = {.procs = -1};
  ASSERT_ERR(tt_test_run_opt(returns_value, NULL, &bad), TT_EINVAL);
  bad = (tt_run_opts){.stack_size = 100};
  ASSERT_ERR(tt_test_run_opt(returns_value, NULL, &bad), TT_EINVAL);
  bad = (tt_run_opts){.stack_size = (size_t)1 << 40};
  ASSERT_ERR(tt_test_run_opt(returns_value, NULL, &bad), TT_EINVAL);
  tt_test_run(nested_run, NULL, 1);
  ASSERT_STR_EQ(tt_strerror(TT_EINVAL), "invalid argument");
  ASSERT_STR_EQ(tt_err_name(TT_ECANCELED), "ECANCELED");
  ASSERT_STR_EQ(tt_strerror(12345), "unknown error");
  ASSERT(tt_err_name(12345) == NULL);
  /* Another negated errno (from a system call behind the sockets): the C library's words. */
  ASSERT_STR_EQ(tt_strerror(-2), "No such file or directory");
  ASSERT_STR_EQ(tt_err_name(-2), "ENOENT");
  ASSERT_STR_EQ(tt_strerror(TT_ECONNREFUSED), "connection refused");
  ASSERT_STR_EQ(tt_strerror(-3999), "unknown error");
  ASSERT_STR_EQ(tt_strerror(-4999), "unknown error");
}

static int bad_spawns(void *arg) {
  ASSERT_ERR(tt_go(NULL, NULL), TT_EINVAL);
  tt_go_opts o = {.stack_size = 1000};
  ASSERT_ERR(tt_go_opt(noop, NULL, &o, NULL), TT_EINVAL);
  o = (tt_go_opts){.stack_size = (size_t)2 << 30};
  ASSERT_ERR(tt_go_opt(noop, NULL, &o, NULL), TT_EINVAL);
  o = (tt_go_opts){.nlabels = 1, .labels = NULL};
  ASSERT_ERR(tt_go_opt(noop, NULL, &o, NULL), TT_EINVAL);
  tt_label l = {NULL, "v"};
  o = (tt_go_opts){.nlabels = 1, .labels = &l};
  ASSERT_ERR(tt_go_opt(noop, NULL, &o, NULL), TT_EINVAL);
  tt_chan *refs[1] = {NULL};
  o = (tt_go_opts){.share = refs, .nshare = 1};
  ASSERT_ERR(tt_go_opt(noop, NULL, &o, NULL), TT_EINVAL); /* a NULL channel */
  o = (tt_go_opts){.share = NULL, .nshare = 1};
  ASSERT_ERR(tt_go_opt(noop, NULL, &o, NULL), TT_EINVAL);
  o = (tt_go_opts){.share = refs, .nshare = 0, .share_mode = 7};
  ASSERT_ERR(tt_go_opt(noop, NULL, &o, NULL), TT_EINVAL);
  ASSERT_EQ(tt_num_coroutines(), 1);
  return 0;
}

TEST(spawn_errors) { tt_test_run(bad_spawns, NULL, 2); }

static _Atomic int second_result = 1;

static void *second_run(void *arg) {
  atomic_store(&second_result, tt_test_run_opt(returns_value, NULL, NULL));
  return NULL;
}

static int concurrent_main(void *arg) {
  /* Another thread's tt_run while this one runs fails at once, without waiting for it. */
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, second_run, NULL), 0);
  pthread_join(th, NULL);
  ASSERT_ERR(atomic_load(&second_result), TT_EBUSY);
  return 0;
}

TEST(second_run_while_running_is_busy) { tt_test_run(concurrent_main, NULL, 2); }

static int env_main(void *arg) { return 0; }

TEST(bad_environment_knobs) {
  const char *cases[][2] = {{"TT_PROCS", "0"},        {"TT_PROCS", "abc"},
                            {"TT_STACK_SIZE", "0"},   {"TT_STACK_SIZE", "1k"},
                            {"TT_STACK_SIZE", "4g"},  {"TT_STACK_SIZE", "12q"},
                            {"TT_SEED", "-1"},        {"TT_DEBUG", "grace"},
                            {"TT_DEBUG", "grace=xs"}, {"TT_DEBUG", "stackguard=2"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    setenv(cases[i][0], cases[i][1], 1);
    int r = tt_test_run_opt(env_main, NULL, NULL);
    if (r != TT_EINVAL)
      tt_test_fail(__FILE__, __LINE__, "%s=%s: tt_run returned %d", cases[i][0], cases[i][1], r);
    unsetenv(cases[i][0]);
  }
  setenv("TT_STACK_SIZE", "64k", 1);
  setenv("TT_PROCS", "3", 1);
  setenv("TT_DEBUG", "grace=10ms,unknownkey=1", 1);
  ASSERT_EQ(tt_test_run_opt(env_main, NULL, NULL), 0);
}

struct order {
  int log[64];
  _Atomic int n;
};

static void yielder(void *arg) {
  struct order *o = arg;
  for (int i = 0; i < 3; i++) {
    o->log[atomic_fetch_add(&o->n, 1)] = (int)tt_self();
    ASSERT_OK(tt_yield());
  }
}

static int yield_order(void *arg) {
  struct order *o = arg;
  tt_id a, b;
  ASSERT_OK(tt_go_opt(yielder, o, NULL, &a));
  ASSERT_OK(tt_go_opt(yielder, o, NULL, &b));
  ASSERT_EQ(a, 2);
  ASSERT_EQ(b, 3);
  while (tt_num_coroutines() > 1)
    ASSERT_OK(tt_yield());
  return 0;
}

TEST(yield_interleaves_on_one_worker) {
  struct order o = {0};
  tt_test_run(yield_order, &o, 1);
  ASSERT_EQ(atomic_load(&o.n), 6);
  /* Round robin: the two coroutines alternate. */
  for (int i = 2; i < 6; i++)
    ASSERT_EQ(o.log[i], o.log[i - 2]);
  ASSERT_NE(o.log[0], o.log[1]);
}

struct info_check {
  tt_id child;
  int seen;
};

static void labelled(void *arg) {
  ASSERT_STR_EQ(tt_label_get("team"), "core");
  ASSERT_STR_EQ(tt_label_get("job"), "child");
  tt_wg *wg = arg;
  tt_wg_wait(wg);
}

static int check_info(const tt_coro_info *ci, void *arg) {
  struct info_check *ic = arg;
  if (ci->id != ic->child)
    return 0;
  ic->seen++;
  ASSERT_EQ(ci->parent, 1);
  ASSERT_STR_EQ(ci->name, "worker-7");
  ASSERT_EQ(ci->state, TT_STATE_WAITING);
  ASSERT_EQ(ci->wait_reason, TT_WAIT_WAITGROUP_WAIT);
  ASSERT_STR_EQ(tt_wait_reason_string(ci->wait_reason), "sync.WaitGroup.Wait");
  ASSERT(ci->wait_obj != NULL);
  ASSERT_GT(ci->blocked_since, 0);
  ASSERT_LE(ci->blocked_since, tt_now());
  ASSERT_EQ(ci->daemon, 1);
  ASSERT(ci->sp != NULL);
  ASSERT_EQ(ci->nlabels, 2);
  Dl_info di;
  ASSERT(dladdr((char *)ci->create_pc - 1, &di) && di.dli_sname);
  ASSERT_STR_EQ(di.dli_sname, "registry_main");
  return 0;
}

int registry_main(void *arg) {
  ASSERT_OK(tt_label_set("team", "core"));
  ASSERT_STR_EQ(tt_label_get("team"), "core");
  ASSERT_OK(tt_name_set("the-main"));
  tt_wg wg = TT_WG_INIT;
  ASSERT_OK(tt_wg_add(&wg, 1));
  tt_label extra = {"job", "child"};
  tt_go_opts o = {.name = "worker-7", .daemon = 1, .labels = &extra, .nlabels = 1};
  struct info_check ic = {0};
  ASSERT_OK(tt_go_opt(labelled, &wg, &o, &ic.child));
  /* Wait until the child is parked. */
  for (;;) {
    tt_counts c;
    ASSERT_OK(tt_counts_get(&c));
    if (c.by_reason[TT_WAIT_WAITGROUP_WAIT] == 1)
      break;
    tt_sleep(100 * TT_USEC);
  }
  ASSERT_OK(tt_coro_foreach(check_info, &ic));
  ASSERT_EQ(ic.seen, 1);
  ASSERT_OK(tt_label_set("team", NULL));
  ASSERT(tt_label_get("team") == NULL);
  ASSERT_OK(tt_wg_done(&wg));
  return 0;
}

TEST(registry_records_spawn_facts) { tt_test_run(registry_main, NULL, 2); }

/* A coroutine that exits hands its stack straight to the next fresh one (no switch): the new one
 * must still start with the default floating-point control state, whatever the old one left. */
static int round_seen[3];

static void noop_done(void *wg) { tt_wg_done(wg); }

static void leave_upward(void *wg) {
  fesetround(FE_UPWARD);
  round_seen[0] = fegetround();
  tt_wg_done(wg);
}

static void check_round(void *wg) {
  round_seen[1] = fegetround();
  fesetround(FE_DOWNWARD);
  tt_wg_done(wg);
}

static void check_round_again(void *wg) {
  round_seen[2] = fegetround();
  tt_wg_done(wg);
}

static int restart_main(void *arg) {
  tt_wg wg = TT_WG_INIT;
  tt_wg_add(&wg, 4);
  /* Queued in this order, run as: noop (runnext), then leave_upward, check_round and
   * check_round_again, each started on the stack of the one before as it exits. */
  ASSERT_OK(tt_go(leave_upward, &wg));
  ASSERT_OK(tt_go(check_round, &wg));
  ASSERT_OK(tt_go(check_round_again, &wg));
  ASSERT_OK(tt_go(noop_done, &wg));
  ASSERT_OK(tt_wg_wait(&wg));
  ASSERT_EQ(round_seen[0], FE_UPWARD);
  ASSERT_EQ(round_seen[1], FE_TONEAREST);
  ASSERT_EQ(round_seen[2], FE_TONEAREST);
  ASSERT_EQ(fegetround(), FE_TONEAREST);
  return 0;
}

TEST(exit_hands_stack_to_fresh_coroutine_with_default_fp_state) {
  tt_test_run(restart_main, NULL, 1);
}
