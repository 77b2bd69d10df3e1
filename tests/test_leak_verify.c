/* SPDX-License-Identifier: MIT */
/* tt_leak_verify_none and leak-check scopes: backoff, ignores, baselines, scopes (parallel,
 * transitive through groups, pools and tt_after_func, nested), the report, plain threads, bad
 * input. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

#define TOL (20 * TT_MSEC * (int64_t)tt_test_slow()) /* lateness allowed on a loaded machine */
#define SHORT (30 * TT_MSEC)                         /* the timeout of checks expected to fail */

/* The leaks of these tests wait on the gate (an untracked channel anyone may use); closing it
 * lets them all finish, so each test ends clean. */
static tt_chan *gate;

static void gate_open(void) {
  tt_chan_opts o = {.mode = TT_CHAN_UNTRACKED, .name = "gate"};
  ASSERT_OK(tt_chan_make_opt(&gate, sizeof(int), 0, &o));
}

static void gate_close(void) {
  ASSERT_OK(tt_chan_close(gate));
  tt_test_await_alone();
  ASSERT_OK(tt_chan_release(gate));
  gate = NULL;
}

/* Each waiter holds a reference of its own while it uses the gate: whoever drops the last one
 * frees it, after everyone's last use (tt_test_await_alone's counts order nothing). */
__attribute__((noinline)) static void wait_gate(void) {
  tt_chan *g = gate;
  int v;
  ASSERT_OK(tt_chan_retain(g));
  tt_chan_recv(g, &v, NULL);
  tt_chan_release(g);
  __asm__ volatile(""); /* not a tail call: this frame stays on the stack */
}

static void leaker(void *p) {
  (void)p;
  wait_gate();
  __asm__ volatile("");
}

static tt_id spawn_leaker(void) {
  tt_id id;
  ASSERT_OK(tt_go_opt(leaker, NULL, NULL, &id));
  return id;
}

static bool report_has_coro(const char *report, tt_id id) {
  char needle[64];
  snprintf(needle, sizeof needle, "goroutine %" PRIu64 " [", (uint64_t)id);
  return report && strstr(report, needle) != NULL;
}

static const tt_leak_opts quiet = {.timeout = SHORT, .report_fd = -1};

/* ---- Backoff -------------------------------------------------------------------------------- */

static void short_sleeper(void *p) { tt_sleep((int64_t)(intptr_t)p); }

static int backoff_main(void *p) {
  (void)p;
  /* Nothing left: at once. */
  int64_t t0 = tt_now();
  char *report = (char *)1;
  ASSERT_OK(tt_leak_verify_none(NULL, &report));
  ASSERT(report == NULL);
  ASSERT_LT(tt_now() - t0, TOL);
  /* Coroutines that finish within the deadline are waited for, and the check returns soon after
   * the last one finished (sleeps are capped at max_sleep, 10 ms by default). */
  for (int i = 0; i < 4; i++)
    ASSERT_OK(tt_go(short_sleeper, (void *)(intptr_t)(30 * TT_MSEC)));
  t0 = tt_now();
  tt_leak_opts o = {.timeout = 5 * TT_SEC};
  ASSERT_OK(tt_leak_verify_none(&o, NULL));
  int64_t took = tt_now() - t0;
  ASSERT_GE(took, 25 * TT_MSEC);
  ASSERT_LT(took, 30 * TT_MSEC + 10 * TT_MSEC + TOL);
  ASSERT_EQ(tt_num_coroutines(), 1);
  /* One that outlives the deadline is reported after it, not before. */
  ASSERT_OK(tt_go(short_sleeper, (void *)(intptr_t)(300 * TT_MSEC)));
  t0 = tt_now();
  ASSERT_ERR(tt_leak_verify_none(&quiet, NULL), TT_ELEAKED);
  took = tt_now() - t0;
  ASSERT_GE(took, SHORT);
  ASSERT_LT(took, SHORT + TOL + 50 * TT_MSEC);
  /* A long deadline still ends as soon as the coroutine does. */
  o.timeout = 10 * TT_SEC;
  ASSERT_OK(tt_leak_verify_none(&o, NULL));
  return 0;
}

TEST(leak_verify_backoff) { tt_test_run(backoff_main, NULL, 2); }

/* ---- Ignores -------------------------------------------------------------------------------- */

__attribute__((noinline)) static void ignore_outer(void) {
  wait_gate();
  __asm__ volatile("");
}

static void ignore_body(void *p) {
  (void)p;
  ignore_outer();
  __asm__ volatile("");
}

__attribute__((noinline)) static tt_id ignore_spawner(void) {
  tt_id id;
  int r = tt_go_opt(ignore_body, NULL, NULL, &id);
  ASSERT_OK(r);
  return id;
}

static void not_started_body(void *p) { (void)p; }

static int ignore_main(void *p) {
  (void)p;
  gate_open();
  /* Daemons are never reported. */
  tt_go_opts d = {.daemon = 1};
  ASSERT_OK(tt_go_opt(leaker, NULL, &d, NULL));
  ASSERT_OK(tt_leak_verify_none(&quiet, NULL));
  /* One coroutine, stack: wait_gate <- ignore_outer <- ignore_body, created in ignore_spawner. */
  tt_id id = ignore_spawner();
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 2);
  char *report = NULL;
  ASSERT_ERR(tt_leak_verify_none(&quiet, &report), TT_ELEAKED);
  ASSERT(report_has_coro(report, id));
  free(report);
  static const char *const top[] = {"wait_gate", NULL}, *const not_top[] = {"ignore_outer", NULL};
  static const char *const any[] = {"ignore_outer", NULL}, *const none[] = {"nowhere", NULL};
  static const char *const creator[] = {"ignore_spawner", NULL};
  static const char *const not_creator[] = {"ignore_body", NULL};
  tt_leak_opts o = quiet;
  o.ignore_top = top;
  ASSERT_OK(tt_leak_verify_none(&o, NULL));
  o.ignore_top = not_top; /* on the stack, but not its top */
  ASSERT_ERR(tt_leak_verify_none(&o, NULL), TT_ELEAKED);
  o.ignore_top = NULL;
  o.ignore_any = any;
  ASSERT_OK(tt_leak_verify_none(&o, NULL));
  o.ignore_any = none;
  ASSERT_ERR(tt_leak_verify_none(&o, NULL), TT_ELEAKED);
  o.ignore_any = NULL;
  o.ignore_creator = creator;
  ASSERT_OK(tt_leak_verify_none(&o, NULL));
  o.ignore_creator = not_creator;
  ASSERT_ERR(tt_leak_verify_none(&o, NULL), TT_ELEAKED);
  /* A coroutine that has not started yet has its start function as its top frame. */
  o.ignore_creator = NULL;
  static const char *const start[] = {"not_started_body", "wait_gate", NULL};
  o.ignore_top = start;
  ASSERT_OK(tt_go(not_started_body, NULL));
  ASSERT_OK(tt_leak_verify_none(&o, NULL)); /* runs it or ignores it: either way clean */
  gate_close();
  return 0;
}

TEST(leak_verify_ignores) { tt_test_run(ignore_main, NULL, 2); }

/* ---- Baseline ------------------------------------------------------------------------------- */

static int baseline_main(void *p) {
  (void)p;
  gate_open();
  tt_id before = spawn_leaker();
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  tt_snapshot *base;
  ASSERT_OK(tt_snapshot_take(&base));
  tt_leak_opts o = quiet;
  o.baseline = base;
  ASSERT_OK(tt_leak_verify_none(&o, NULL)); /* what was there is ignored: IgnoreCurrent */
  tt_id after = spawn_leaker();
  char *report = NULL;
  ASSERT_ERR(tt_leak_verify_none(&o, &report), TT_ELEAKED);
  ASSERT(report_has_coro(report, after));
  ASSERT(!report_has_coro(report, before));
  ASSERT_CONTAINS(report, "1 coroutine left behind");
  free(report);
  tt_snapshot_free(base);
  gate_close();
  return 0;
}

TEST(leak_verify_baseline) { tt_test_run(baseline_main, NULL, 2); }

/* ---- Scopes --------------------------------------------------------------------------------- */

/* Two "tests" in one process, in parallel: each sees its own leak only. The second leaks through
 * a group (a child and a grandchild), a pool (its worker) and a tt_after_func coroutine. */
typedef struct par {
  tt_wg ready, checked, done;
  tt_id a_leak, b_leaks[4];
  _Atomic int nb;
  _Atomic int b_fired;
  char *a_report, *b_report;
  int a_res, b_res, c_res;
} par;

static par P;

static int group_grandparent(void *p) {
  (void)p;
  tt_id id;
  ASSERT_OK(tt_go_opt(leaker, NULL, NULL, &id));
  P.b_leaks[atomic_fetch_add(&P.nb, 1)] = id;
  wait_gate();
  return 0;
}

static void after_leak(void *p) {
  (void)p;
  P.b_leaks[atomic_fetch_add(&P.nb, 1)] = tt_self();
  atomic_store(&P.b_fired, 1);
  wait_gate();
  __asm__ volatile("");
}

static bool all_in_scope(const tt_id *ids, int n, uint64_t scope);

static void test_a(void *p) {
  (void)p;
  tt_leak_scope *s;
  ASSERT_OK(tt_leak_scope_begin("test A", &s));
  P.a_leak = spawn_leaker();
  tt_wg_done(&P.ready);
  ASSERT_OK(tt_wg_wait(&P.ready));
  tt_leak_opts o = quiet;
  o.scope = s;
  P.a_res = tt_leak_verify_none(&o, &P.a_report);
  ASSERT(all_in_scope(&P.a_leak, 1, tt_leak_scope_id(s)));
  tt_wg_done(&P.checked);
  ASSERT_OK(tt_wg_wait(&P.checked));
  ASSERT_OK(tt_leak_scope_end(s));
  tt_wg_done(&P.done);
}

static void test_b(void *p) {
  (void)p;
  tt_leak_scope *s;
  ASSERT_OK(tt_leak_scope_begin("test B", &s));
  tt_group *g;
  ASSERT_OK(tt_group_make(NULL, &g));
  tt_id gid;
  ASSERT_OK(tt_group_go_opt(g, group_grandparent, NULL, NULL, TT_FOREVER, &gid));
  P.b_leaks[atomic_fetch_add(&P.nb, 1)] = gid;
  tt_pool *pl;
  ASSERT_OK(tt_pool_make(&pl, 1, 1, NULL));
  ASSERT_OK(tt_after_func(NULL, 1 * TT_MSEC, after_leak, NULL));
  while (!atomic_load(&P.b_fired) || P.nb < 3)
    tt_sleep(100 * TT_USEC);
  tt_wg_done(&P.ready);
  ASSERT_OK(tt_wg_wait(&P.ready));
  tt_leak_opts o = quiet;
  o.scope = s;
  o.name = "the B test";
  P.b_res = tt_leak_verify_none(&o, &P.b_report);
  ASSERT(all_in_scope(P.b_leaks, P.nb, tt_leak_scope_id(s)));
  tt_wg_done(&P.checked);
  ASSERT_OK(tt_wg_wait(&P.checked));
  ASSERT_OK(tt_pool_close(pl));
  ASSERT_OK(tt_pool_wait(pl));
  ASSERT_OK(tt_pool_free(pl));
  ASSERT_OK(tt_leak_scope_end(s));
  tt_wg_done(&P.done);
  /* The group's children end when the gate closes; the main test waits for them. */
  ASSERT_OK(tt_group_wait(g));
  ASSERT_OK(tt_group_free(g));
}

/* A third test that leaks nothing, in parallel with the two. */
static void test_c(void *p) {
  (void)p;
  tt_leak_scope *s;
  ASSERT_OK(tt_leak_scope_begin("test C", &s));
  ASSERT_OK(tt_go(short_sleeper, (void *)(intptr_t)(5 * TT_MSEC)));
  tt_wg_done(&P.ready);
  ASSERT_OK(tt_wg_wait(&P.ready));
  tt_leak_opts o = {.scope = s, .report_fd = -1};
  P.c_res = tt_leak_verify_none(&o, NULL);
  tt_wg_done(&P.checked);
  ASSERT_OK(tt_leak_scope_end(s));
  tt_wg_done(&P.done);
}

struct in_scope {
  const tt_id *ids;
  int n, found;
  uint64_t scope;
};

static int in_scope_one(const tt_coro_info *ci, void *arg) {
  struct in_scope *a = arg;
  for (int i = 0; i < a->n; i++)
    if (ci->id == a->ids[i] && ci->scope == a->scope)
      a->found++;
  return 0;
}

static bool all_in_scope(const tt_id *ids, int n, uint64_t scope) {
  struct in_scope a = {ids, n, 0, scope};
  ASSERT_OK(tt_coro_foreach(in_scope_one, &a));
  return a.found == n;
}

static int parallel_main(void *p) {
  (void)p;
  gate_open();
  memset(&P, 0, sizeof P);
  tt_wg_init(&P.ready);
  tt_wg_init(&P.checked);
  tt_wg_init(&P.done);
  tt_wg_add(&P.ready, 3);
  tt_wg_add(&P.checked, 3);
  tt_wg_add(&P.done, 3);
  ASSERT_OK(tt_go(test_a, NULL));
  ASSERT_OK(tt_go(test_b, NULL));
  ASSERT_OK(tt_go(test_c, NULL));
  ASSERT_OK(tt_wg_wait(&P.done));
  /* A sees its one leak, none of B's. */
  ASSERT_ERR(P.a_res, TT_ELEAKED);
  ASSERT_CONTAINS(P.a_report, "tt_leak_verify_none: \"test A\": 1 coroutine left behind");
  ASSERT(report_has_coro(P.a_report, P.a_leak));
  for (int i = 0; i < P.nb; i++)
    ASSERT(!report_has_coro(P.a_report, P.b_leaks[i]));
  /* B sees the group's child and grandchild, the pool's worker and the timer's coroutine. */
  ASSERT_ERR(P.b_res, TT_ELEAKED);
  ASSERT_CONTAINS(P.b_report, "\"the B test\" (scope \"test B\"): 4 coroutines left behind");
  ASSERT_EQ(P.nb, 3);
  for (int i = 0; i < P.nb; i++)
    ASSERT(report_has_coro(P.b_report, P.b_leaks[i]));
  ASSERT_CONTAINS(P.b_report, "group_grandparent");
  ASSERT_CONTAINS(P.b_report, "after_leak");
  ASSERT_CONTAINS(P.b_report, "created by tt_pool_make in goroutine");
  ASSERT(!report_has_coro(P.b_report, P.a_leak));
  ASSERT_OK(P.c_res);
  free(P.a_report);
  free(P.b_report);
  gate_close();
  return 0;
}

TEST(leak_verify_scopes_parallel) { tt_test_run(parallel_main, NULL, 2); }

/* A tt_after_func armed in a scope starts its coroutine in it, also after the scope ended. */
static int after_end_main(void *p) {
  (void)p;
  gate_open();
  tt_leak_scope *outer, *s;
  ASSERT_OK(tt_leak_scope_begin("outer", &outer));
  ASSERT_OK(tt_leak_scope_begin("timer", &s));
  uint64_t sid = tt_leak_scope_id(s);
  memset(&P, 0, sizeof P);
  ASSERT_OK(tt_after_func(NULL, 5 * TT_MSEC, after_leak, NULL));
  ASSERT_OK(tt_leak_scope_end(s));
  while (!atomic_load(&P.b_fired))
    tt_sleep(100 * TT_USEC);
  ASSERT(all_in_scope(P.b_leaks, 1, sid));
  tt_leak_opts o = quiet;
  o.scope = outer;
  char *report = NULL;
  ASSERT_ERR(tt_leak_verify_none(&o, &report), TT_ELEAKED);
  ASSERT(report_has_coro(report, P.b_leaks[0]));
  free(report);
  ASSERT_OK(tt_leak_scope_end(outer));
  gate_close();
  return 0;
}

TEST(leak_verify_scope_after_func_outlives) { tt_test_run(after_end_main, NULL, 2); }

/* Nested scopes: the inner check sees the inner leak only; the outer sees both, also once the
 * inner scope has ended and been freed. */
static int nested_main(void *p) {
  (void)p;
  gate_open();
  tt_leak_scope *outer, *inner, *sibling;
  ASSERT_OK(tt_leak_scope_begin("outer", &outer));
  tt_id out_leak = spawn_leaker();
  ASSERT_OK(tt_leak_scope_begin("inner", &inner));
  tt_id in_leak = spawn_leaker();
  char *report = NULL;
  tt_leak_opts o = quiet;
  o.scope = inner;
  ASSERT_ERR(tt_leak_verify_none(&o, &report), TT_ELEAKED);
  ASSERT(report_has_coro(report, in_leak));
  ASSERT(!report_has_coro(report, out_leak));
  free(report);
  /* Out of order, or by another coroutine or thread: refused, nothing freed. */
  ASSERT_ERR(tt_leak_scope_end(outer), TT_EINVAL);
  ASSERT_OK(tt_leak_scope_end(inner));
  ASSERT_OK(tt_leak_scope_begin("sibling", &sibling));
  o.scope = sibling;
  ASSERT_OK(tt_leak_verify_none(&o, NULL)); /* a new scope has nothing of the old one */
  ASSERT_OK(tt_leak_scope_end(sibling));
  o.scope = outer;
  ASSERT_ERR(tt_leak_verify_none(&o, &report), TT_ELEAKED);
  ASSERT(report_has_coro(report, in_leak));
  ASSERT(report_has_coro(report, out_leak));
  ASSERT_CONTAINS(report, "\"outer\": 2 coroutines left behind");
  free(report);
  ASSERT_OK(tt_leak_scope_end(outer));
  /* After the end, the caller's spawns are unscoped again. */
  tt_id after = spawn_leaker();
  ASSERT(all_in_scope(&after, 1, 0));
  ASSERT_EQ(tt_leak_scope_id(NULL), 0);
  gate_close();
  return 0;
}

TEST(leak_verify_scopes_nested) { tt_test_run(nested_main, NULL, 2); }

/* ---- The report ----------------------------------------------------------------------------- */

static int report_main(void *p) {
  (void)p;
  gate_open();
  tt_id id = spawn_leaker();
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  tt_leak_opts o = {.timeout = SHORT, .name = "report_test", .report_fd = pipefd[1]};
  char *report = NULL;
  ASSERT_ERR(tt_leak_verify_none(&o, &report), TT_ELEAKED);
  close(pipefd[1]);
  /* The same text went to report_fd. */
  char buf[65536];
  size_t len = 0;
  ssize_t k;
  while ((k = read(pipefd[0], buf + len, sizeof buf - 1 - len)) > 0)
    len += (size_t)k;
  buf[len] = '\0';
  close(pipefd[0]);
  ASSERT_STR_EQ(buf, report);
  /* The title, then the verdict line before the debug=2 traceback with its wait reason, frames
   * and creation site. */
  ASSERT_CONTAINS(report, "tt_leak_verify_none: \"report_test\": 1 coroutine left behind after ");
  char line[128];
  snprintf(line, sizeof line, "\ncoroutine %" PRIu64 ": ", (uint64_t)id);
  ASSERT_CONTAINS(report, line);
  snprintf(line, sizeof line, "\ngoroutine %" PRIu64 " [chan receive", (uint64_t)id);
  ASSERT_CONTAINS(report, line);
  ASSERT(strstr(report, "coroutine ") < strstr(report, "goroutine "));
  ASSERT_CONTAINS(report, "\nwait_gate(");
  ASSERT_CONTAINS(report, "\nleaker(");
  ASSERT_CONTAINS(report, "\ncreated by spawn_leaker in goroutine 1\n");
  if (strstr(report, "leaked (proven") == NULL)
    ASSERT_CONTAINS(report, "still blocked after 30ms (chan receive for ");
  free(report);
  gate_close();
  return 0;
}

TEST(leak_verify_report) { tt_test_run(report_main, NULL, 2); }

/* A proven leak: a receiver holding the only reference to its channel. Needs the proof engine. */
static void orphan_recv(void *p) {
  int v;
  tt_chan_recv(p, &v, NULL);
}

static int proven_main(void *p) {
  (void)p;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  ASSERT(ch != NULL);
  tt_go_opts o = {.share = &ch, .nshare = 1, .share_mode = TT_SHARE_MOVE};
  tt_id id;
  ASSERT_OK(tt_go_opt(orphan_recv, ch, &o, &id));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  char *report = NULL;
  ASSERT_ERR(tt_leak_verify_none(&quiet, &report), TT_ELEAKED);
  char line[128];
  snprintf(line, sizeof line, "coroutine %" PRIu64 ": leaked (proven: nothing can wake it)",
           (uint64_t)id);
  ASSERT_CONTAINS(report, line);
  snprintf(line, sizeof line, "goroutine %" PRIu64 " [chan receive (leaked)", (uint64_t)id);
  ASSERT_CONTAINS(report, line);
  free(report);
  return 0;
}

TEST(leak_verify_proven) {
  ASSERT_OK(tt_test_run_unchecked(
      proven_main, NULL, NULL, "its proven leak can only end at shut-down: the point of the test"));
}

/* ---- Plain threads -------------------------------------------------------------------------- */

struct thread_arg {
  tt_wg done;
  int leaky, clean;
  tt_id leak;
  char *report;
};

static void *thread_main(void *p) {
  struct thread_arg *a = p;
  tt_leak_scope *s;
  ASSERT_OK(tt_leak_scope_begin("thread", &s));
  a->leak = spawn_leaker();
  ASSERT_OK(tt_go(short_sleeper, (void *)(intptr_t)(10 * TT_MSEC)));
  tt_leak_opts o = quiet;
  o.scope = s;
  a->leaky = tt_leak_verify_none(&o, &a->report);
  ASSERT_OK(tt_leak_scope_end(s));
  ASSERT_OK(tt_leak_scope_begin("thread, clean", &s));
  ASSERT_OK(tt_go(short_sleeper, (void *)(intptr_t)(10 * TT_MSEC)));
  o.scope = s;
  o.timeout = 5 * TT_SEC;
  a->clean = tt_leak_verify_none(&o, NULL); /* waits (nanosleep) for the sleeper */
  ASSERT_OK(tt_leak_scope_end(s));
  tt_wg_done(&a->done);
  return NULL;
}

static int thread_run_main(void *p) {
  (void)p;
  gate_open();
  struct thread_arg a = {0};
  tt_wg_init(&a.done);
  tt_wg_add(&a.done, 1);
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, thread_main, &a), 0);
  ASSERT_OK(tt_wg_wait(&a.done));
  pthread_join(t, NULL);
  ASSERT_ERR(a.leaky, TT_ELEAKED);
  ASSERT(report_has_coro(a.report, a.leak));
  ASSERT_CONTAINS(a.report, "\"thread\": ");
  /* The caller's own coroutine (this one) is not in the thread's scope. */
  ASSERT(!report_has_coro(a.report, tt_self()));
  ASSERT_OK(a.clean);
  free(a.report);
  gate_close();
  return 0;
}

TEST(leak_verify_plain_thread) { tt_test_run(thread_run_main, NULL, 2); }

/* ---- Bad input ------------------------------------------------------------------------------ */

static void *end_elsewhere(void *p) { return (void *)(intptr_t)tt_leak_scope_end(p); }

static int bad_main(void *p) {
  (void)p;
  tt_leak_opts o = {.timeout = -1};
  ASSERT_ERR(tt_leak_verify_none(&o, NULL), TT_EINVAL);
  o = (tt_leak_opts){.max_sleep = -1};
  ASSERT_ERR(tt_leak_verify_none(&o, NULL), TT_EINVAL);
  o = (tt_leak_opts){.report_fd = -2};
  ASSERT_ERR(tt_leak_verify_none(&o, NULL), TT_EINVAL);
  ASSERT_ERR(tt_leak_scope_begin("x", NULL), TT_EINVAL);
  ASSERT_ERR(tt_leak_scope_end(NULL), TT_EINVAL);
  /* Ended by another thread: refused; then by its owner. */
  tt_leak_scope *s;
  ASSERT_OK(tt_leak_scope_begin(NULL, &s));
  pthread_t t;
  void *r;
  ASSERT_EQ(pthread_create(&t, NULL, end_elsewhere, s), 0);
  pthread_join(t, &r);
  ASSERT_EQ((intptr_t)r, TT_EINVAL);
  o = (tt_leak_opts){.scope = s, .report_fd = -1};
  ASSERT_OK(tt_leak_verify_none(&o, NULL)); /* an unnamed scope, nothing in it */
  ASSERT_OK(tt_leak_scope_end(s));
  return 0;
}

TEST(leak_verify_bad_input) {
  /* Outside the runtime. */
  ASSERT_ERR(tt_leak_verify_none(NULL, NULL), TT_ENOTRUNNING);
  char *report = (char *)1;
  ASSERT_ERR(tt_leak_verify_none(NULL, &report), TT_ENOTRUNNING);
  ASSERT(report == NULL);
  /* A plain thread's scope can be begun and ended with no runtime. */
  tt_leak_scope *s;
  ASSERT_OK(tt_leak_scope_begin("no runtime", &s));
  ASSERT(tt_leak_scope_id(s) != 0);
  ASSERT_OK(tt_leak_scope_end(s));
  tt_test_run(bad_main, NULL, 2);
}
