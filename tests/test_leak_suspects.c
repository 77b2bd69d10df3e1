/* SPDX-License-Identifier: MIT */
/* Leak suspects: sites where many coroutines have been blocked for long, ranked, with the
 * pattern each looks like (each heuristic against its fixed twin), thresholds, bad input. */
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

#define MS TT_MSEC

/* Spawns fn(arg) with a reference to each of the n channels. */
static void go_with(void (*fn)(void *), void *arg, tt_chan *const *share, size_t n) {
  ASSERT_OK(tt_go_opt(fn, arg, &(tt_go_opts){.share = share, .nshare = n}, NULL));
}

/* Suspects with K = k and T = t (sample of 4), asserting success. */
static tt_suspect_report *suspects(size_t k, int64_t t) {
  tt_suspect_report *r = NULL;
  int n = tt_leak_suspects(&(tt_suspect_opts){.min_count = k, .min_age = t, .nsample = 4}, &r);
  ASSERT_GE(n, 0);
  ASSERT(r != NULL);
  ASSERT_EQ(n, (int64_t)tt_suspect_report_len(r));
  return r;
}

/* The first suspect of r with pattern p, or NULL. */
static const tt_suspect *with_pattern(const tt_suspect_report *r, int p) {
  for (size_t i = 0; i < tt_suspect_report_len(r); i++)
    if (tt_suspect_report_get(r, i)->pattern == p)
      return tt_suspect_report_get(r, i);
  return NULL;
}

static void print_report(const tt_suspect_report *r) {
  char *text;
  ASSERT_OK(tt_suspect_report_write_mem(r, &text, NULL));
  fprintf(stderr, "%s\n", text);
  free(text);
}

/* Waits long enough for min_age to pass, with room for slow runs. */
static void age_past(int64_t t) { tt_sleep(2 * t + 10 * MS); }

/* ---- Bad input ------------------------------------------------------------------------------ */

static int bad_input_body(void *unused) {
  (void)unused;
  ASSERT_ERR(tt_leak_suspects(NULL, NULL), TT_EINVAL);
  tt_suspect_report *r = (void *)1;
  ASSERT_ERR(tt_leak_suspects(&(tt_suspect_opts){.nsample = 1001}, &r), TT_EINVAL);
  ASSERT(r == NULL);
  ASSERT_EQ(tt_leak_suspects(NULL, &r), 0); /* defaults: nothing has been blocked a minute */
  ASSERT_EQ(tt_suspect_report_len(r), 0);
  ASSERT(tt_suspect_report_get(r, 0) == NULL);
  ASSERT_EQ(tt_suspect_report_proof(r), 0);
  ASSERT_ERR(tt_suspect_report_write(r, -1), TT_EINVAL);
  ASSERT_ERR(tt_suspect_report_write(NULL, 2), TT_EINVAL);
  ASSERT_ERR(tt_suspect_report_write_mem(NULL, NULL, NULL), TT_EINVAL);
  char *text;
  ASSERT_OK(tt_suspect_report_write_mem(r, &text, NULL));
  ASSERT_CONTAINS(text, "tether: leak suspects: 0 sites where at least 100 coroutines have been "
                        "blocked for at least 1m0.000s");
  free(text);
  tt_suspect_report_free(r);
  tt_suspect_report_free(NULL);
  ASSERT_EQ(tt_suspect_report_len(NULL), 0);
  return 0;
}

TEST(suspects_bad_input) {
  tt_suspect_report *r = (void *)1;
  ASSERT_ERR(tt_leak_suspects(NULL, &r), TT_ENOTRUNNING);
  ASSERT(r == NULL);
  tt_test_run(bad_input_body, NULL, 2);
}

/* ---- Ranking and thresholds ------------------------------------------------------------------ */

static tt_wg gate_a = TT_WG_INIT, gate_b = TT_WG_INIT;

static __attribute__((noinline)) void site_a(void *unused) {
  (void)unused;
  tt_wg_wait(&gate_a);
  __asm__ volatile(""); /* not a tail call: the frame stays on the stack */
}

static __attribute__((noinline)) void site_b(void *unused) {
  (void)unused;
  tt_wg_wait(&gate_b);
  __asm__ volatile(""); /* not a tail call: the frame stays on the stack */
}

static int64_t old_age = 200 * MS, young_age = 20 * MS;

/* Three coroutines blocked long at site_b, six blocked briefly at site_a. */
static void make_sites(void) {
  tt_wg_add(&gate_a, 1);
  tt_wg_add(&gate_b, 1);
  for (int i = 0; i < 3; i++)
    ASSERT_OK(tt_go(site_b, NULL));
  tt_sleep(old_age);
  for (int i = 0; i < 6; i++)
    ASSERT_OK(tt_go(site_a, NULL));
  tt_test_await_reason(TT_WAIT_WAITGROUP_WAIT, 9);
  tt_sleep(young_age + 5 * MS);
}

static void release_sites(void) {
  tt_wg_done(&gate_a);
  tt_wg_done(&gate_b);
  tt_test_await_alone();
}

static bool is_func(const tt_suspect *x, const char *name) {
  return !tt_test_have_dwarf() || (x->func && strcmp(x->func, name) == 0);
}

static int ranking_body(void *unused) {
  (void)unused;
  make_sites();
  /* K = 2, T = young: both sites; site_b's 3 x ~200 ms outranks site_a's 6 x ~25 ms. */
  tt_suspect_report *r = suspects(2, young_age);
  print_report(r);
  ASSERT_EQ(tt_suspect_report_len(r), 2);
  const tt_suspect *b = tt_suspect_report_get(r, 0), *a = tt_suspect_report_get(r, 1);
  ASSERT_EQ(b->rank, 1);
  ASSERT_EQ(a->rank, 2);
  ASSERT_EQ(b->count, 3);
  ASSERT_EQ(a->count, 6);
  ASSERT_EQ(b->wait_reason, TT_WAIT_WAITGROUP_WAIT);
  ASSERT_EQ(b->state, TT_STATE_WAITING);
  ASSERT(is_func(b, "site_b"));
  ASSERT(is_func(a, "site_a"));
  ASSERT_GE(b->median_age, old_age);
  ASSERT_GE(b->oldest_age, b->median_age);
  ASSERT_GE(a->median_age, young_age);
  ASSERT_LT(a->median_age, b->median_age);
  ASSERT(b->score > a->score);
  ASSERT_EQ(b->nsample, 3);
  ASSERT_EQ(a->nsample, 4);
  for (size_t i = 1; i < a->nsample; i++)
    ASSERT_LT(a->sample[i - 1], a->sample[i]);
  ASSERT(b->nstack > 0 && b->stack != NULL);
  ASSERT_CONTAINS(b->trace, "[sync.WaitGroup.Wait]:\n");
  ASSERT_EQ(b->pattern, TT_PATTERN_NONE);
  ASSERT_EQ(b->nleaked, 0);
  char *text;
  ASSERT_OK(tt_suspect_report_write_mem(r, &text, NULL));
  ASSERT_CONTAINS(text, "tether: leak suspects: 2 sites where at least 2 coroutines");
  ASSERT_CONTAINS(text, "\n#1  3 coroutines [sync.WaitGroup.Wait]  median ");
  ASSERT_CONTAINS(text, "\n#2  6 coroutines [sync.WaitGroup.Wait]  median ");
  ASSERT_CONTAINS(text, "    proven leaked: 0 of 6\n");
  ASSERT_CONTAINS(text, " ...\ngoroutine ");
  if (tt_test_have_dwarf())
    ASSERT_CONTAINS(text, "    at site_b (");
  free(text);
  tt_suspect_report_free(r);

  /* K = 4: only site_a has that many. */
  r = suspects(4, young_age);
  ASSERT_EQ(tt_suspect_report_len(r), 1);
  ASSERT_EQ(tt_suspect_report_get(r, 0)->count, 6);
  tt_suspect_report_free(r);
  /* T = old: only site_b's have been blocked that long (unless a slow run (Valgrind, sanitizers)
   * spent that long above, and site_a's have aged past it too). */
  if (tt_test_slow() <= 1) {
    r = suspects(2, old_age);
    ASSERT_EQ(tt_suspect_report_len(r), 1);
    ASSERT_EQ(tt_suspect_report_get(r, 0)->count, 3);
    tt_suspect_report_free(r);
  }
  /* max = 1: the best one only. */
  ASSERT_EQ(
      tt_leak_suspects(&(tt_suspect_opts){.min_count = 2, .min_age = young_age, .max = 1}, &r), 1);
  if (tt_test_slow() <= 1) /* a slow run ages both sites until site_a's count outweighs the gap */
    ASSERT_EQ(tt_suspect_report_get(r, 0)->count, 3);
  tt_suspect_report_free(r);
  /* K = 7: none. */
  r = suspects(7, young_age);
  ASSERT_EQ(tt_suspect_report_len(r), 0);
  tt_suspect_report_free(r);
  release_sites();
  return 0;
}

TEST(suspects_rank_by_count_times_median_age) { tt_test_run(ranking_body, NULL, 2); }

static int knobs_body(void *unused) {
  (void)unused;
  make_sites();
  /* TT_DEBUG=suspectcount=4,suspectage=20ms: the defaults are K = 4, T = 20 ms. */
  tt_suspect_report *r = NULL;
  ASSERT_EQ(tt_leak_suspects(NULL, &r), 1);
  ASSERT_EQ(tt_suspect_report_get(r, 0)->count, 6);
  tt_suspect_report_free(r);
  /* Options win over the environment: K = 7 finds none, where the environment's K = 4 found one.
   * (Not an age threshold: a slow run can age every site past any of them.) */
  r = suspects(7, young_age);
  ASSERT_EQ(tt_suspect_report_len(r), 0);
  tt_suspect_report_free(r);
  release_sites();
  return 0;
}

TEST(suspects_thresholds_from_tt_debug) {
  setenv("TT_DEBUG", "suspectcount=4,suspectage=20ms", 1);
  tt_test_run(knobs_body, NULL, 2);
  setenv("TT_DEBUG", "suspectcount=0", 1);
  ASSERT_ERR(tt_run(knobs_body, NULL, NULL), TT_EINVAL);
  setenv("TT_DEBUG", "suspectage=soon", 1);
  ASSERT_ERR(tt_run(knobs_body, NULL, NULL), TT_EINVAL);
  unsetenv("TT_DEBUG");
}

/* ---- Heuristics, each against its fixed twin --------------------------------------------------
 */

static const int64_t T = 30 * MS;
static bool fixed; /* the twin under test */

/* Unclosed range: a producer that forgets to close. */
static __attribute__((noinline)) void range_consumer(void *arg) {
  tt_chan *ch = arg;
  int v;
  while (tt_chan_recv(ch, &v, NULL) == 0)
    ;
  tt_chan_release(ch);
}

static void range_producer(void *arg) {
  tt_chan *ch = arg;
  for (int i = 0; i < 3; i++)
    tt_chan_send(ch, &i);
  if (fixed)
    tt_chan_close(ch);
  tt_chan_release(ch);
}

/* Timeout leak: the requester gives up; the worker's send waits for nobody. */
static __attribute__((noinline)) void slow_worker(void *arg) {
  tt_chan *ch = arg;
  tt_sleep(5 * MS);
  int v = 42;
  tt_chan_send(ch, &v);
  tt_chan_release(ch);
}

static void requester(void *unused) {
  (void)unused;
  /* fixed: a buffer of one, so the worker's send never waits. */
  tt_chan *ch = tt_chan_make(sizeof(int), fixed ? 1 : 0);
  ASSERT(ch != NULL);
  go_with(slow_worker, ch, &ch, 1);
  int v;
  ASSERT_ERR(tt_chan_recv_dl(ch, &v, NULL, tt_now() + MS), TT_ETIMEDOUT);
  tt_chan_release(ch);
}

/* N-cast: three senders, one receive. */
static __attribute__((noinline)) void ncast_sender(void *arg) {
  tt_chan *ch = arg;
  int v = 1;
  tt_chan_send(ch, &v);
  tt_chan_release(ch);
}

static void ncast_first(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), fixed ? 3 : 0);
  ASSERT(ch != NULL);
  for (int i = 0; i < 3; i++)
    go_with(ncast_sender, ch, &ch, 1);
  int v;
  ASSERT_OK(tt_chan_recv(ch, &v, NULL));
  tt_chan_release(ch);
}

/* Double send: an error path that forgets to return. */
static __attribute__((noinline)) void double_sender(void *arg) {
  tt_chan *ch = arg;
  int err = -1, v = 7;
  tt_chan_send(ch, &err);
  if (!fixed)
    tt_chan_send(ch, &v);
  tt_chan_release(ch);
}

static void double_receiver(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  ASSERT(ch != NULL);
  go_with(double_sender, ch, &ch, 1);
  int v;
  ASSERT_OK(tt_chan_recv(ch, &v, NULL));
  tt_chan_release(ch);
}

/* Daemon: started with a stop channel that nobody closes. */
static tt_chan *daemon_stop;

static __attribute__((noinline)) void ticking(void *arg) {
  tt_chan *stop = arg, *tick;
  ASSERT_OK(tt_ticker_make(&tick, 2 * MS));
  for (;;) {
    int64_t t;
    tt_select_case cases[2] = {TT_CASE_RECV(tick, &t), TT_CASE_RECV(stop, NULL)};
    int i = tt_select(cases, 2);
    if (i != 0)
      break;
  }
  tt_timer_stop(tick);
  tt_chan_release(tick);
  tt_chan_release(stop);
}

/* Cancellation ignored: a loop that never looks at its context. */
static _Atomic bool spin_stop;

static __attribute__((noinline)) void spinner(void *unused) {
  (void)unused;
  while (!atomic_load_explicit(&spin_stop, memory_order_relaxed)) {
    if (fixed && tt_ctx_err(tt_ctx_current()))
      return;
    tt_yield();
  }
}

enum { H_RANGE, H_TIMEOUT, H_NCAST, H_DOUBLE, H_DAEMON, H_CANCEL };

struct hcase {
  int kind;
  int pattern;
  const char *func;
};

static void start_case(int kind) {
  switch (kind) {
  case H_RANGE: {
    tt_chan *ch = tt_chan_make(sizeof(int), 0);
    ASSERT(ch != NULL);
    go_with(range_consumer, ch, &ch, 1);
    go_with(range_producer, ch, &ch, 1);
    tt_chan_release(ch);
    break;
  }
  case H_TIMEOUT:
    ASSERT_OK(tt_go(requester, NULL));
    break;
  case H_NCAST:
    ASSERT_OK(tt_go(ncast_first, NULL));
    break;
  case H_DOUBLE:
    ASSERT_OK(tt_go(double_receiver, NULL));
    break;
  case H_DAEMON: {
    ASSERT(daemon_stop = tt_chan_make(0, 0));
    go_with(ticking, daemon_stop, &daemon_stop, 1);
    if (fixed) {
      tt_sleep(10 * MS);
      tt_chan_close(daemon_stop);
    }
    break;
  }
  case H_CANCEL: {
    tt_ctx *ctx;
    ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &ctx));
    for (int i = 0; i < 4; i++)
      ASSERT_OK(tt_go_opt(spinner, NULL, &(tt_go_opts){.ctx = ctx}, NULL));
    tt_sleep(5 * MS);
    tt_ctx_cancel(ctx);
    tt_ctx_release(ctx);
    break;
  }
  }
}

/* Undoes what a leaky case left, so that the run ends clean. */
static void end_case(int kind) {
  if (kind == H_DAEMON && !fixed)
    tt_chan_close(daemon_stop);
  if (kind == H_DAEMON)
    tt_chan_release(daemon_stop);
  atomic_store_explicit(&spin_stop, true, memory_order_relaxed);
}

static int heuristic_body(void *arg) {
  const struct hcase *c = arg;
  atomic_store_explicit(&spin_stop, false, memory_order_relaxed);
  start_case(c->kind);
  age_past(T);
  /* A coroutine running on the other worker at the instant of the walk cannot be looked at: a
   * few tries for the spinners. */
  const tt_suspect *x = NULL;
  tt_suspect_report *r = NULL;
  for (int i = 0; i < 20 && x == NULL; i++) {
    if (i > 0) /* and, in a slow run (Valgrind), time for the leak to reach its wait and age */
      tt_sleep(T);
    tt_suspect_report_free(r);
    r = suspects(1, T);
    x = with_pattern(r, c->pattern);
    if (fixed || (c->kind != H_CANCEL && tt_test_slow() <= 1))
      break;
  }
  if (fixed) {
    if (x != NULL)
      print_report(r);
    ASSERT(x == NULL);
  } else {
    if (x == NULL)
      print_report(r);
    ASSERT(x != NULL);
    ASSERT(is_func(x, c->func));
    ASSERT(x->why != NULL && x->why[0] != '\0');
    ASSERT_GE(x->median_age, T);
    char *text;
    ASSERT_OK(tt_suspect_report_write_mem(r, &text, NULL));
    ASSERT_CONTAINS(text, "    pattern: ");
    free(text);
  }
  tt_suspect_report_free(r);
  end_case(c->kind);
  return 0;
}

static void heuristic_pair(int kind, int pattern, const char *func) {
  struct hcase c = {kind, pattern, func};
  fixed = false;
  tt_run_opts o = {.procs = 2};
  ASSERT_OK(tt_test_run_unchecked(heuristic_body, &c, &o, "the leaky twin leaves its leak"));
  fixed = true;
  tt_test_run(heuristic_body, &c, 2); /* the fixed twin leaves nothing */
}

TEST(suspects_unclosed_range) {
  heuristic_pair(H_RANGE, TT_PATTERN_UNCLOSED_RANGE, "range_consumer");
}
TEST(suspects_timeout_leak) { heuristic_pair(H_TIMEOUT, TT_PATTERN_TIMEOUT_LEAK, "slow_worker"); }
TEST(suspects_ncast) { heuristic_pair(H_NCAST, TT_PATTERN_NCAST, "ncast_sender"); }
TEST(suspects_double_send) { heuristic_pair(H_DOUBLE, TT_PATTERN_DOUBLE_SEND, "double_sender"); }
TEST(suspects_daemon_never_stopped) { heuristic_pair(H_DAEMON, TT_PATTERN_DAEMON, "ticking"); }
TEST(suspects_cancel_ignored) { heuristic_pair(H_CANCEL, TT_PATTERN_CANCEL_IGNORED, "spinner"); }

/* ---- The proof's patterns ---------------------------------------------------------------------
 */

static __attribute__((noinline)) void abandoned(void *arg) {
  tt_chan *ch = arg;
  int v;
  tt_chan_recv(ch, &v, NULL); /* its creator returned without sending or closing */
  tt_chan_release(ch);
}

static void early_return(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  ASSERT(ch != NULL);
  go_with(abandoned, ch, &ch, 1);
  tt_chan_release(ch);
}

static int proof_body(void *unused) {
  (void)unused;
  for (int i = 0; i < 3; i++)
    ASSERT_OK(tt_go(early_return, NULL));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 3);
  age_past(T);
  tt_suspect_report *r = NULL;
  ASSERT_GE(tt_leak_suspects(&(tt_suspect_opts){.min_count = 3, .min_age = T, .prove = 1}, &r), 0);
  int proof = tt_suspect_report_proof(r);
  ASSERT_GE(proof, 3);
  ASSERT_EQ(tt_suspect_report_len(r), 1);
  const tt_suspect *x = tt_suspect_report_get(r, 0);
  ASSERT_EQ(x->count, 3);
  ASSERT_EQ(x->nleaked, 3);
  ASSERT_EQ(x->pattern, TT_PATTERN_ABANDONED_RECEIVER);
  ASSERT(is_func(x, "abandoned"));
  tt_suspect_report_free(r);
  return 0;
}

TEST(suspects_name_the_proofs_pattern) {
  tt_run_opts o = {.procs = 2};
  ASSERT_OK(tt_test_run_unchecked(proof_body, NULL, &o, "it leaves the leaks it ranks"));
}

/* ---- Scale ------------------------------------------------------------------------------------
 */

static tt_wg scale_gate = TT_WG_INIT;

static __attribute__((noinline)) void parked(void *unused) {
  (void)unused;
  tt_wg_wait(&scale_gate);
  __asm__ volatile(""); /* not a tail call: the frame stays on the stack */
}

static int scale_body(void *unused) {
  (void)unused;
  int64_t n = SCALED(100000, 200);
  tt_wg_add(&scale_gate, 1);
  for (int64_t i = 0; i < n; i++)
    ASSERT_OK(tt_go(parked, NULL));
  tt_test_await_reason(TT_WAIT_WAITGROUP_WAIT, n);
  tt_sleep(2 * MS);
  int64_t t0 = tt_now();
  tt_snapshot *s;
  ASSERT_OK(tt_snapshot_take(&s));
  tt_snapshot_free(s);
  int64_t t1 = tt_now();
  tt_suspect_report *r = suspects(10, MS);
  int64_t t2 = tt_now();
  printf("over %lld parked coroutines: tt_snapshot_take %.1f ms, tt_leak_suspects %.1f ms\n",
         (long long)n, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
  ASSERT_EQ(tt_suspect_report_len(r), 1);
  ASSERT_EQ(tt_suspect_report_get(r, 0)->count, n);
  tt_suspect_report_free(r);
  tt_wg_done(&scale_gate);
  tt_test_await_alone();
  return 0;
}

TEST(suspects_at_scale) { tt_test_run(scale_body, NULL, 2); }
