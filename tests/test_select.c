/* SPDX-License-Identifier: MIT */
/* select: readiness, uniform choice, default and deadline, NULL channels, closed channels, the
 * same channel twice, many cases, plain threads, wait reasons and deterministic choices. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

static int basics_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *a = tt_chan_make(sizeof(int), 1), *b = tt_chan_make(sizeof(int), 1);
  int x = 0, y = 0;
  tt_select_case c[2] = {TT_CASE_RECV(a, &x), TT_CASE_RECV(b, &y)};
  /* Nothing ready: default, deadline. */
  ASSERT_ERR(tt_select_try(c, 2), TT_EAGAIN);
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_select_dl(c, 2, t0 + 2 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_GE(tt_now() - t0, 2 * TT_MSEC);
  /* One ready: that one. */
  ASSERT_OK(tt_chan_send_val(b, int, 5));
  ASSERT_EQ(tt_select(c, 2), 1);
  ASSERT_EQ(y, 5);
  ASSERT(c[1].ok);
  ASSERT_EQ(c[1].err, 0);
  /* Sends and receives mixed: the send is ready (room), the receive is not. */
  int z = 8;
  tt_select_case m[2] = {TT_CASE_RECV(a, &x), TT_CASE_SEND(b, &z)};
  ASSERT_EQ(tt_select(m, 2), 1);
  ASSERT_EQ(tt_chan_len(b), 1);
  /* Closed: a receive fires with ok false; a send fires with TT_ECLOSED (Go panics). */
  ASSERT_OK(tt_chan_close(a));
  x = 3;
  ASSERT_EQ(tt_select(c, 1), 0);
  ASSERT(!c[0].ok);
  ASSERT_EQ(c[0].err, TT_ECLOSED);
  ASSERT_EQ(x, 0);
  tt_select_case s[1] = {TT_CASE_SEND(a, &z)};
  ASSERT_EQ(tt_select(s, 1), 0);
  ASSERT_EQ(s[0].err, TT_ECLOSED);
  /* Bad input. */
  ASSERT_ERR(tt_select(NULL, 1), TT_EINVAL);
  tt_select_case bad[1] = {{.op = 7, .ch = b, .val = &x}};
  ASSERT_ERR(tt_select(bad, 1), TT_EINVAL);
  tt_select_case noval[1] = {TT_CASE_RECV(b, NULL)};
  ASSERT_ERR(tt_select(noval, 1), TT_EINVAL);
  ASSERT_EQ(tt_chan_len(b), 1); /* nothing lost */
  ASSERT_OK(tt_chan_release(a));
  ASSERT_OK(tt_chan_release(b));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(select_basics) { tt_test_run(basics_main, NULL, 1); }

/* NULL channels are never ready; no cases at all waits forever. */
static void no_cases(void *p) { ASSERT_ERR(tt_select(NULL, 0), TT_ECANCELED); }

static int nil_main(void *p) {
  int v;
  tt_select_case c[2] = {TT_CASE_RECV(NULL, &v), TT_CASE_SEND(NULL, &v)};
  ASSERT_ERR(tt_select_try(c, 2), TT_EAGAIN);
  ASSERT_ERR(tt_select_dl(c, 2, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_ERR(tt_select_try(NULL, 0), TT_EAGAIN);
  ASSERT_ERR(tt_select_dl(NULL, 0, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  ASSERT_OK(tt_chan_send_val(ch, int, 4));
  tt_select_case d[3] = {TT_CASE_RECV(NULL, &v), TT_CASE_RECV(ch, &v), TT_CASE_SEND(NULL, &v)};
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(tt_select(d, 3), 1); /* only ever the real channel */
    ASSERT_EQ(v, 4);
    ASSERT_OK(tt_chan_send_val(ch, int, 4));
  }
  ASSERT_OK(tt_go(no_cases, NULL));
  tt_test_await_reason(TT_WAIT_SELECT_NO_CASES, 1);
  ASSERT_OK(tt_chan_release(ch));
  return 0; /* shut-down cancels no_cases */
}

TEST(select_nil_channels_and_no_cases) {
  ASSERT_OK(tt_test_run_unchecked(
      nil_main, NULL, &(tt_run_opts){.procs = 2},
      "the select with no cases blocks forever: shut-down's cancellation ends it"));
}

/* Uniform choice among ready cases: a chi-square test over four always-ready channels. */
static int fairness_main(void *p) {
  enum { K = 4 };
  tt_chan *ch[K];
  int v;
  tt_select_case c[K];
  for (int i = 0; i < K; i++) {
    ch[i] = tt_chan_make(sizeof(int), 1);
    ASSERT_OK(tt_chan_send_val(ch[i], int, i));
    c[i] = TT_CASE_RECV(ch[i], &v);
  }
  int64_t n = SCALED(200000, 4000), hits[K] = {0};
  for (int64_t k = 0; k < n; k++) {
    int i = tt_select(c, K);
    ASSERT(i >= 0 && i < K);
    ASSERT_EQ(v, i);
    hits[i]++;
    ASSERT_OK(tt_chan_send_val(ch[i], int, i)); /* ready again */
  }
  double chi2 = 0, e = (double)n / K;
  for (int i = 0; i < K; i++)
    chi2 += (hits[i] - e) * (hits[i] - e) / e;
  /* 3 degrees of freedom: P(chi2 > 21.1) = 0.0001. */
  if (chi2 > 21.1)
    tt_test_fail(__FILE__, __LINE__, "choice not uniform: %lld %lld %lld %lld (chi2 %.1f)",
                 (long long)hits[0], (long long)hits[1], (long long)hits[2], (long long)hits[3],
                 chi2);
  /* And no case starves over a short run either. */
  for (int i = 0; i < K; i++)
    ASSERT_GT(hits[i], 0);
  for (int i = 0; i < K; i++)
    ASSERT_OK(tt_chan_release(ch[i]));
  return 0;
}

TEST(select_choice_is_uniform) { tt_test_run(fairness_main, NULL, 1); }

/* In deterministic mode the choices follow the seed. */
static int choices[64];

static int record_main(void *p) {
  tt_chan *a = tt_chan_make(0, 1), *b = tt_chan_make(0, 1);
  tt_select_case c[2] = {TT_CASE_RECV(a, NULL), TT_CASE_RECV(b, NULL)};
  for (int i = 0; i < 64; i++) {
    /* Both ready (each holds a signal; refilling a full one is a harmless TT_EAGAIN). */
    tt_chan_try_send(a, NULL);
    tt_chan_try_send(b, NULL);
    choices[i] = tt_select(c, 2);
  }
  ASSERT_OK(tt_chan_release(a));
  ASSERT_OK(tt_chan_release(b));
  return 0;
}

TEST(select_deterministic_with_seed) {
  int first[64], differs = 0;
  tt_run_opts o = {.procs = 1, .seed = 12345, .report_fd = -1};
  ASSERT_OK(tt_test_run_opt(record_main, NULL, &o));
  memcpy(first, choices, sizeof first);
  ASSERT_OK(tt_test_run_opt(record_main, NULL, &o));
  ASSERT(memcmp(first, choices, sizeof first) == 0);
  o.seed = 999;
  ASSERT_OK(tt_test_run_opt(record_main, NULL, &o));
  differs = memcmp(first, choices, sizeof first) != 0;
  ASSERT(differs); /* 2^-64 odds of a false failure */
}

/* A blocked select is woken by one case; its other cases leave their queues. */
static void late_send(void *p) {
  tt_sleep(TT_MSEC);
  ASSERT_OK(tt_chan_send_val(p, int, 11));
}

static int wake_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *a = tt_chan_make(sizeof(int), 0), *b = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.share = &b, .nshare = 1};
  ASSERT_OK(tt_go_opt(late_send, b, &o, NULL));
  int x = 0, y = 0;
  tt_select_case c[2] = {TT_CASE_RECV(a, &x), TT_CASE_RECV(b, &y)};
  ASSERT_EQ(tt_select(c, 2), 1);
  ASSERT_EQ(y, 11);
  /* Our case on a left its queue: a sender finds nobody. */
  ASSERT_ERR(tt_chan_try_send(a, &x), TT_EAGAIN);
  ASSERT_OK(tt_chan_release(a));
  ASSERT_OK(tt_chan_release(b));
  tt_test_await_alone();
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(select_wakes_on_one_case_and_unlinks_the_others) { tt_test_run(wake_main, NULL, 2); }

/* The same channel in several cases. */
static int same_chan_main(void *p) {
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  int in = 1, out = 0;
  tt_select_case c[3] = {TT_CASE_SEND(ch, &in), TT_CASE_RECV(ch, &out), TT_CASE_RECV(ch, &out)};
  ASSERT_EQ(tt_select(c, 3), 0); /* empty: only the send is ready */
  int i = tt_select(c, 3);       /* full: only the receives are */
  ASSERT(i == 1 || i == 2);
  ASSERT_EQ(out, 1);
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(select_same_channel_twice) { tt_test_run(same_chan_main, NULL, 1); }

/* Many cases (beyond the on-stack arrays), one blocked select woken by the last channel. */
struct many {
  tt_chan *ch[200];
};

static void send_last(void *p) {
  struct many *m = p;
  tt_test_await_reason(TT_WAIT_SELECT, 1);
  ASSERT_OK(tt_chan_send_val(m->ch[199], int, 199));
}

static int many_main(void *p) {
  static struct many m;
  tt_select_case c[200];
  int v = -1;
  for (int i = 0; i < 200; i++) {
    m.ch[i] = tt_chan_make(sizeof(int), 0);
    c[i] = TT_CASE_RECV(m.ch[i], &v);
  }
  tt_go_opts o = {.share = m.ch, .nshare = 200};
  ASSERT_OK(tt_go_opt(send_last, &m, &o, NULL));
  ASSERT_EQ(tt_select(c, 200), 199);
  ASSERT_EQ(v, 199);
  for (int i = 0; i < 200; i++)
    ASSERT_OK(tt_chan_release(m.ch[i]));
  return 0;
}

TEST(select_many_cases) { tt_test_run(many_main, NULL, 2); }

/* A plain thread selects too. */
static tt_chan *thr_a, *thr_b;

static void *thread_select(void *p) {
  int v = 0;
  tt_select_case c[2] = {TT_CASE_RECV(thr_a, &v), TT_CASE_RECV(thr_b, &v)};
  for (int i = 0; i < 100; i++) {
    int k = tt_select(c, 2);
    ASSERT(k == 0 || k == 1);
    ASSERT_EQ(v, i);
  }
  ASSERT_ERR(tt_select_dl(c, 2, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  return NULL;
}

static int thread_main(void *p) {
  tt_chan_opts u = {.mode = TT_CHAN_UNTRACKED};
  ASSERT_OK(tt_chan_make_opt(&thr_a, sizeof(int), 0, &u));
  ASSERT_OK(tt_chan_make_opt(&thr_b, sizeof(int), 0, &u));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, thread_select, NULL), 0);
  for (int i = 0; i < 100; i++)
    ASSERT_OK(tt_chan_send(i % 2 ? thr_a : thr_b, &i));
  pthread_join(th, NULL);
  ASSERT_OK(tt_chan_release(thr_a));
  ASSERT_OK(tt_chan_release(thr_b));
  return 0;
}

TEST(select_from_plain_thread) { tt_test_run(thread_main, NULL, 2); }

/* Stress: selecting senders and receivers on all workers, with timeouts racing the hand-offs;
 * every value arrives exactly once. */
struct stress {
  tt_chan *ch[3];
  int64_t per;
  _Atomic int64_t sum, n;
  tt_wg senders;
};

static void sel_sender(void *p) {
  struct stress *s = p;
  for (int64_t i = 1; i <= s->per;) {
    tt_select_case c[3];
    for (int k = 0; k < 3; k++)
      c[k] = TT_CASE_SEND(s->ch[k], &i);
    int r = tt_select_dl(c, 3, tt_now() + 30 * TT_USEC);
    if (r == TT_ETIMEDOUT)
      continue;
    ASSERT(r >= 0 && r < 3);
    i++;
  }
  tt_wg_done(&s->senders);
}

static void sel_receiver(void *p) {
  struct stress *s = p;
  int64_t v, sum = 0, n = 0;
  int open = 3;
  tt_select_case c[3];
  for (int k = 0; k < 3; k++)
    c[k] = TT_CASE_RECV(s->ch[k], &v);
  while (open > 0) {
    int r = tt_select_dl(c, 3, tt_now() + 40 * TT_USEC);
    if (r == TT_ETIMEDOUT)
      continue;
    ASSERT(r >= 0 && r < 3);
    if (!c[r].ok) {
      c[r].ch = NULL; /* closed: never ready again */
      open--;
      continue;
    }
    sum += v;
    n++;
  }
  atomic_fetch_add(&s->sum, sum);
  atomic_fetch_add(&s->n, n);
}

static int stress_main(void *p) {
  static struct stress s;
  memset(&s, 0, sizeof s);
  for (int k = 0; k < 3; k++)
    s.ch[k] = tt_chan_make(sizeof(int64_t), (size_t)k); /* caps 0, 1, 2 */
  s.per = SCALED(5000, 100);
  tt_wg_add(&s.senders, 4);
  tt_go_opts o = {.share = s.ch, .nshare = 3};
  for (int i = 0; i < 4; i++) {
    ASSERT_OK(tt_go_opt(sel_sender, &s, &o, NULL));
    ASSERT_OK(tt_go_opt(sel_receiver, &s, &o, NULL));
  }
  ASSERT_OK(tt_wg_wait(&s.senders));
  for (int k = 0; k < 3; k++) {
    ASSERT_OK(tt_chan_close(s.ch[k]));
    ASSERT_OK(tt_chan_release(s.ch[k]));
  }
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&s.n), 4 * s.per);
  ASSERT_EQ(atomic_load(&s.sum), 4 * (s.per * (s.per + 1) / 2));
  return 0;
}

TEST(select_stress_all_workers) { tt_test_run(stress_main, NULL, 0); }

/* The registry names what a blocked coroutine waits on: the channel, or a select's cases. */
struct shown {
  tt_chan *a, *b;
  int found;
};

static void blocked_in_select(void *p) {
  struct shown *s = p;
  int v;
  tt_select_case c[2] = {TT_CASE_RECV(s->a, &v), TT_CASE_SEND(s->b, &v)};
  ASSERT_ERR(tt_select(c, 2), TT_ECANCELED);
}

static void blocked_in_recv(void *p) {
  struct shown *s = p;
  int v;
  ASSERT_ERR(tt_chan_recv(s->a, &v, NULL), TT_ECANCELED);
}

static int find_waits(const tt_coro_info *ci, void *p) {
  struct shown *s = p;
  if (ci->wait_reason == TT_WAIT_SELECT) {
    ASSERT_EQ(ci->select_ncases, 2);
    ASSERT_PTR_EQ(ci->select_cases[0].ch, s->a);
    ASSERT_PTR_EQ(ci->select_cases[1].ch, s->b);
    ASSERT_EQ(ci->select_cases[1].op, TT_SELECT_SEND);
    ASSERT_PTR_EQ(ci->wait_obj, ci->select_cases);
    s->found |= 1;
  } else if (ci->wait_reason == TT_WAIT_CHAN_RECV) {
    ASSERT_PTR_EQ(ci->wait_obj, s->a);
    ASSERT(ci->select_cases == NULL);
    s->found |= 2;
  }
  return 0;
}

static int registry_main(void *p) {
  static struct shown s;
  s.a = tt_chan_make(sizeof(int), 0);
  s.b = tt_chan_make(sizeof(int), 0);
  tt_chan *both[2] = {s.a, s.b};
  tt_go_opts o = {.share = both, .nshare = 2};
  ASSERT_OK(tt_go_opt(blocked_in_select, &s, &o, NULL));
  ASSERT_OK(tt_go_opt(blocked_in_recv, &s, &o, NULL));
  tt_test_await_reason(TT_WAIT_SELECT, 1);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_coro_foreach(find_waits, &s));
  ASSERT_EQ(s.found, 3);
  ASSERT_OK(tt_chan_release(s.a));
  ASSERT_OK(tt_chan_release(s.b));
  return 0; /* shut-down cancels both */
}

TEST(select_registry_shows_channels_waited_on) {
  ASSERT_OK(tt_test_run_unchecked(registry_main, NULL, &(tt_run_opts){.procs = 2},
                                  "its blocked coroutines are ended by shut-down's cancellation"));
}
