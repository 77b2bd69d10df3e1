/* SPDX-License-Identifier: MIT */
/* The program's timers: tt_after, tt_timer_make, tt_ticker_make, tt_after_func, stop and reset. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

#define TOL (20 * TT_MSEC * (int64_t)tt_test_slow()) /* lateness allowed on a loaded machine */

static int after_main(void *p) {
  int64_t live = tt__chan_count_live();
  int64_t t0 = tt_now();
  tt_chan *ch = tt_after(2 * TT_MSEC);
  ASSERT(ch != NULL);
  ASSERT_EQ(tt_chan_cap(ch), 1);
  int64_t when = 0;
  ASSERT_OK(tt_chan_recv(ch, &when, NULL));
  int64_t t1 = tt_now();
  ASSERT_GE(when, t0 + 2 * TT_MSEC); /* the value is the time it fired */
  ASSERT_LE(when, t1);
  ASSERT_LE(t1 - t0, 2 * TT_MSEC + TOL);
  /* Once only. */
  ASSERT_ERR(tt_chan_recv_dl(ch, &when, NULL, tt_now() + 3 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_EQ(tt_timer_stop(ch), 0); /* it had fired */
  ASSERT_OK(tt_chan_release(ch));
  /* d <= 0: at once. */
  ch = tt_after(-5);
  ASSERT_OK(tt_chan_recv(ch, &when, NULL));
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(timer_after_delivers_time_once) { tt_test_run(after_main, NULL, 2); }

/* An unreceived tt_after is freed when released (Go leaked these until 1.23), armed or fired. */
static int after_release_main(void *p) {
  int64_t live = tt__chan_count_live();
  int64_t n = SCALED(10000, 100);
  for (int64_t i = 0; i < n; i++) {
    tt_chan *ch = tt_after(i % 2 ? TT_SEC * 3600 : 0);
    ASSERT(ch != NULL);
    if (i % 3 == 0)
      tt_yield(); /* let some fire */
    ASSERT_OK(tt_chan_release(ch));
  }
  ASSERT_EQ(tt__chan_count_live(), live);
  /* Freed with a time buffered. */
  tt_chan *ch = tt_after(0);
  while (tt_chan_len(ch) == 0)
    tt_sleep(100 * TT_USEC);
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(timer_after_freed_when_released) { tt_test_run(after_release_main, NULL, 2); }

static int stop_reset_main(void *p) {
  tt_chan *t;
  int64_t v;
  ASSERT_OK(tt_timer_make(&t, 5 * TT_MSEC));
  ASSERT_EQ(tt_timer_stop(t), 1); /* stopped it before it fired */
  ASSERT_EQ(tt_timer_stop(t), 0);
  ASSERT_ERR(tt_chan_recv_dl(t, &v, NULL, tt_now() + 10 * TT_MSEC), TT_ETIMEDOUT);
  /* Reset re-arms a stopped timer. */
  int64_t t0 = tt_now();
  ASSERT_EQ(tt_timer_reset(t, 2 * TT_MSEC), 0);
  ASSERT_OK(tt_chan_recv(t, &v, NULL));
  ASSERT_GE(tt_now() - t0, 2 * TT_MSEC);
  /* A fired, unreceived value is discarded by stop and by reset (Go 1.23). */
  ASSERT_EQ(tt_timer_reset(t, 0), 0);
  while (tt_chan_len(t) == 0)
    tt_sleep(100 * TT_USEC);
  ASSERT_EQ(tt_timer_stop(t), 0);
  ASSERT_EQ(tt_chan_len(t), 0);
  ASSERT_EQ(tt_timer_reset(t, 0), 0);
  while (tt_chan_len(t) == 0)
    tt_sleep(100 * TT_USEC);
  ASSERT_EQ(tt_timer_reset(t, TT_SEC * 3600), 0);
  ASSERT_EQ(tt_chan_len(t), 0);
  ASSERT_EQ(tt_timer_reset(t, 1 * TT_MSEC), 1); /* was armed (an hour away) */
  ASSERT_OK(tt_chan_recv(t, &v, NULL));
  ASSERT_OK(tt_chan_release(t));
  /* Not a timer; bad arguments. */
  tt_chan *plain = tt_chan_make(sizeof(int64_t), 1);
  ASSERT_ERR(tt_timer_stop(plain), TT_EINVAL);
  ASSERT_ERR(tt_timer_reset(plain, 1), TT_EINVAL);
  ASSERT_ERR(tt_timer_stop(NULL), TT_EINVAL);
  ASSERT_ERR(tt_timer_make(NULL, 1), TT_EINVAL);
  ASSERT_ERR(tt_ticker_make(&t, 0), TT_EINVAL);
  ASSERT_ERR(tt_ticker_make(&t, -1), TT_EINVAL);
  ASSERT_ERR(tt_after_func(NULL, 1, NULL, NULL), TT_EINVAL);
  ASSERT_OK(tt_chan_release(plain));
  return 0;
}

TEST(timer_stop_and_reset) { tt_test_run(stop_reset_main, NULL, 2); }

TEST(timer_needs_running_runtime) {
  tt_chan *t;
  ASSERT(tt_after(1) == NULL);
  ASSERT_ERR(tt_timer_make(&t, 1), TT_ENOTRUNNING);
  ASSERT_ERR(tt_ticker_make(&t, 1), TT_ENOTRUNNING);
}

static int ticker_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *tk;
  int64_t period = 2 * TT_MSEC, prev = 0, t0 = tt_now();
  ASSERT_OK(tt_ticker_make(&tk, period));
  for (int i = 0; i < 5; i++) {
    int64_t v;
    ASSERT_OK(tt_chan_recv(tk, &v, NULL));
    ASSERT_GT(v, prev);
    ASSERT_GE(v, t0 + (i + 1) * period); /* never early */
    prev = v;
  }
  ASSERT_LE(tt_now() - t0, 5 * period + TOL);
  /* A slow receiver: ticks do not pile up (capacity 1). */
  tt_sleep(5 * period);
  ASSERT_EQ(tt_chan_len(tk), 1);
  /* Reset to a new period. */
  ASSERT_EQ(tt_timer_reset(tk, 1 * TT_MSEC), 1);
  ASSERT_EQ(tt_chan_len(tk), 0);
  int64_t v;
  ASSERT_OK(tt_chan_recv(tk, &v, NULL));
  ASSERT_OK(tt_chan_recv(tk, &v, NULL));
  ASSERT_EQ(tt_timer_stop(tk), 1);
  ASSERT_ERR(tt_chan_recv_dl(tk, &v, NULL, tt_now() + 5 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_OK(tt_chan_release(tk));
  /* Released while running: freed, and never fires again. */
  ASSERT_OK(tt_ticker_make(&tk, 100 * TT_USEC));
  ASSERT_OK(tt_chan_recv(tk, &v, NULL));
  ASSERT_OK(tt_chan_release(tk));
  ASSERT_EQ(tt__chan_count_live(), live);
  tt_sleep(TT_MSEC);
  return 0;
}

TEST(timer_ticker) { tt_test_run(ticker_main, NULL, 2); }

/* tt_after_func: fn runs in a new coroutine, whose creator is the caller. */
struct af {
  _Atomic int ran;
  _Atomic tt_id who;
  tt_chan *done;
};

static void af_fn(void *p) {
  struct af *a = p;
  atomic_store(&a->who, tt_self());
  atomic_fetch_add(&a->ran, 1);
  if (a->done)
    tt_chan_send(a->done, NULL); /* untracked: any coroutine may */
}

static int parent_of(const tt_coro_info *info, void *arg) {
  tt_id *want = arg;
  if (info->id == want[0]) {
    want[1] = info->parent;
    return 1;
  }
  return 0;
}

static void af_block(void *p) {
  struct af *a = p;
  atomic_store(&a->who, tt_self());
  tt_chan_recv(a->done, NULL, NULL); /* until released below */
}

static int after_func_main(void *p) {
  int64_t live = tt__chan_count_live();
  static struct af a;
  memset(&a, 0, sizeof a);
  ASSERT_OK(tt_chan_make_opt(&a.done, 0, 0, &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED}));
  tt_chan *h;
  ASSERT_OK(tt_after_func(&h, TT_MSEC, af_fn, &a));
  ASSERT_OK(tt_chan_recv(a.done, NULL, NULL));
  ASSERT_EQ(atomic_load(&a.ran), 1);
  ASSERT_NE(atomic_load(&a.who), tt_self());
  ASSERT_EQ(tt_timer_stop(h), 0); /* it had fired */
  ASSERT_OK(tt_chan_release(h));
  /* Stopped in time: fn never runs. */
  ASSERT_OK(tt_after_func(&h, 3 * TT_MSEC, af_fn, &a));
  ASSERT_EQ(tt_timer_stop(h), 1);
  tt_sleep(6 * TT_MSEC);
  ASSERT_EQ(atomic_load(&a.ran), 1);
  /* Reset re-arms it. */
  ASSERT_EQ(tt_timer_reset(h, TT_MSEC), 0);
  ASSERT_OK(tt_chan_recv(a.done, NULL, NULL));
  ASSERT_EQ(atomic_load(&a.ran), 2);
  ASSERT_OK(tt_chan_release(h));
  /* Without a handle: frees itself after firing. */
  ASSERT_OK(tt_after_func(NULL, 0, af_fn, &a));
  ASSERT_OK(tt_chan_recv(a.done, NULL, NULL));
  ASSERT_EQ(atomic_load(&a.ran), 3);
  /* The coroutine's creator is the caller. */
  atomic_store(&a.who, 0);
  ASSERT_OK(tt_after_func(NULL, 0, af_block, &a));
  while (atomic_load(&a.who) == 0)
    tt_sleep(100 * TT_USEC);
  tt_id q[2] = {atomic_load(&a.who), 0};
  ASSERT_EQ(tt_coro_foreach(parent_of, q), 1);
  ASSERT_EQ(q[1], tt_self());
  ASSERT_OK(tt_chan_send(a.done, NULL));
  tt_test_await_alone();
  ASSERT_OK(tt_chan_release(a.done));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(timer_after_func) { tt_test_run(after_func_main, NULL, 2); }

/* Timers left armed when the run ends: a self-freeing tt_after_func goes with the runtime; a
 * timer channel a plain thread still holds outlives it, dead (it never fires again). */
struct outlive {
  _Atomic int made, run_over;
  int64_t live;
};

static void *outlive_thread(void *p) {
  struct outlive *o = p;
  tt_chan *t;
  while (!tt_running())
    usleep(100);
  ASSERT_OK(tt_timer_make(&t, TT_SEC * 3600));
  atomic_store(&o->made, 1);
  while (!atomic_load(&o->run_over))
    usleep(1000);
  ASSERT_EQ(tt__chan_count_live(), o->live + 1); /* ours; the self-owned one went with the run */
  ASSERT_EQ(tt_timer_stop(t), 0);                /* dead: its run is over */
  ASSERT_ERR(tt_timer_reset(t, 1), TT_ENOTRUNNING);
  ASSERT_OK(tt_chan_release(t));
  return NULL;
}

static int outlive_main(void *p) {
  struct outlive *o = p;
  static struct af a;
  ASSERT_OK(tt_after_func(NULL, TT_SEC * 3600, af_fn, &a));
  while (!atomic_load(&o->made))
    tt_sleep(100 * TT_USEC);
  return 0;
}

TEST(timer_outlives_its_run) {
  static struct outlive o;
  o.live = tt__chan_count_live();
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, outlive_thread, &o), 0);
  tt_test_run(outlive_main, &o, 1);
  atomic_store(&o.run_over, 1);
  pthread_join(th, NULL);
  ASSERT_EQ(tt__chan_count_live(), o.live);
}

/* A timeout in a select. */
static int select_timeout_main(void *p) {
  tt_chan *never = tt_chan_make(sizeof(int), 0);
  tt_chan *timeout = tt_after(2 * TT_MSEC);
  int v;
  int64_t when;
  tt_select_case c[2] = {TT_CASE_RECV(never, &v), TT_CASE_RECV(timeout, &when)};
  ASSERT_EQ(tt_select(c, 2), 1);
  ASSERT(c[1].ok);
  ASSERT_OK(tt_chan_release(timeout));
  ASSERT_OK(tt_chan_release(never));
  return 0;
}

TEST(timer_as_select_timeout) { tt_test_run(select_timeout_main, NULL, 1); }

/* Stop and reset from other workers and plain threads race the firing: never a crash, never a
 * value after a stop that reported success. */
struct storm {
  tt_chan *t[16];
};

static void storm_worker(void *p) {
  struct storm *s = p;
  uint64_t r = (uint64_t)tt_self() * 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < SCALED(3000, 50); i++) {
    r ^= r << 13;
    r ^= r >> 7;
    r ^= r << 17;
    tt_chan *t = s->t[r % 16];
    if (r & 0x100) {
      ASSERT(tt_timer_reset(t, (int64_t)(r >> 40) % (200 * TT_USEC)) >= 0);
    } else {
      ASSERT(tt_timer_stop(t) >= 0);
    }
    int64_t v;
    tt_chan_try_recv(t, &v, NULL);
    if (i % 16 == 0)
      tt_yield();
  }
}

/* A plain thread's own timers: armed on workers' heaps from outside (a remote add that must wake
 * a sleeping worker), stopped and reset while those workers fire them. */
static void *storm_thread(void *p) {
  tt_chan *t[8];
  for (int i = 0; i < 8; i++)
    ASSERT_OK(i % 2 ? tt_ticker_make(&t[i], 30 * TT_USEC) : tt_timer_make(&t[i], 0));
  for (int i = 0; i < SCALED(3000, 50); i++) {
    ASSERT(tt_timer_reset(t[i % 8], (i % 7 + 1) * 10 * TT_USEC) >= 0);
    if (i % 3 == 0)
      ASSERT(tt_timer_stop(t[i % 8]) >= 0);
  }
  /* A timer armed from here fires on its worker and wakes this thread. */
  int64_t v, t0 = tt_now();
  ASSERT(tt_timer_reset(t[0], TT_MSEC) >= 0);
  ASSERT_OK(tt_chan_recv(t[0], &v, NULL));
  ASSERT_GE(tt_now() - t0, TT_MSEC);
  for (int i = 0; i < 8; i++) {
    ASSERT(tt_timer_stop(t[i]) >= 0);
    ASSERT_ERR(tt_chan_recv_dl(t[i], &v, NULL, tt_now() + 200 * TT_USEC), TT_ETIMEDOUT);
    ASSERT_OK(tt_chan_release(t[i]));
  }
  atomic_store((_Atomic int *)p, 1);
  return NULL;
}

static int storm_main(void *p) {
  int64_t live = tt__chan_count_live();
  static struct storm s;
  for (int i = 0; i < 16; i++)
    ASSERT_OK(i % 2 ? tt_ticker_make(&s.t[i], 50 * TT_USEC) : tt_timer_make(&s.t[i], 0));
  tt_go_opts o = {.share = s.t, .nshare = 16};
  for (int i = 0; i < 6; i++)
    ASSERT_OK(tt_go_opt(storm_worker, &s, &o, NULL));
  pthread_t th;
  static _Atomic int thread_done;
  ASSERT_EQ(pthread_create(&th, NULL, storm_thread, (void *)&thread_done), 0);
  /* Wait without blocking this worker (pthread_join would stall it and its timers). */
  while (tt_num_coroutines() > 1 || !atomic_load(&thread_done))
    tt_sleep(200 * TT_USEC);
  pthread_join(th, NULL);
  /* After a stop nothing arrives. */
  for (int i = 0; i < 16; i++) {
    ASSERT(tt_timer_stop(s.t[i]) >= 0);
    int64_t v;
    ASSERT_ERR(tt_chan_recv_dl(s.t[i], &v, NULL, tt_now() + 300 * TT_USEC), TT_ETIMEDOUT);
    ASSERT_OK(tt_chan_release(s.t[i]));
  }
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(timer_stop_reset_storm) { tt_test_run(storm_main, NULL, 0); }

/* A program timer that falls due while its own channel's receiver is parking (the channel's lock
 * still held until the switch completes) must not fire from inside that park: it would take the
 * lock its worker already holds. One worker, so every park runs the scheduler's periodic timer
 * check sooner or later. */
static int park_race_main(void *p) {
  int64_t live = tt__chan_count_live();
  for (int i = 0; i < SCALED(20000, 500); i++) {
    tt_chan *t = tt_after(0);
    ASSERT(t != NULL);
    int64_t v;
    ASSERT_OK(tt_chan_recv(t, &v, NULL));
    ASSERT_OK(tt_chan_release(t));
  }
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(timer_fires_not_inside_its_receivers_park) { tt_test_run(park_race_main, NULL, 1); }

/* tt_after_func_opt: the timer carries references to its coroutine; unfired, it releases them. */
static void send_seven(void *p) { ASSERT_OK(tt_chan_send_val((tt_chan *)p, int, 7)); }

static void after_func_no_ref(void *p) {
  ASSERT_ERR(tt_after_func_opt(NULL, 0, send_seven, p, (tt_chan *const *)&p, 1), TT_EPERM);
}

static int after_func_refs_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  ASSERT_OK(tt_after_func_opt(NULL, TT_MSEC, send_seven, ch, &ch, 1));
  ASSERT_EQ(tt_chan_recv_val(ch, int, NULL), 7);
  tt_test_await_alone();
  /* A timer that never fires: releasing its handle releases what it carried. */
  tt_chan *ch2 = tt_chan_make(sizeof(int), 1), *h;
  ASSERT_OK(tt_after_func_opt(&h, 3600 * TT_SEC, send_seven, ch2, &ch2, 1));
  ASSERT_OK(tt_chan_release(ch2));
  ASSERT_EQ(tt__chan_count_live(), live + 3); /* ch, ch2 (held by the timer), the handle */
  ASSERT_OK(tt_chan_release(h));
  ASSERT_EQ(tt__chan_count_live(), live + 1);
  /* Without a reference to share: refused, nothing armed. */
  tt_chan *foreign = tt_chan_make(sizeof(int), 1);
  ASSERT_OK(tt_chan_release(foreign));
  ASSERT_OK(tt_go(after_func_no_ref, foreign));
  tt_test_await_alone();
  ASSERT_ERR(tt_after_func_opt(NULL, 0, send_seven, NULL, NULL, 1), TT_EINVAL);
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(timer_after_func_carries_references) { tt_test_run(after_func_refs_main, NULL, 2); }
