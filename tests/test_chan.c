/* SPDX-License-Identifier: MIT */
/* Channels: Go's rules, one test each, plus deadlines, plain threads and bad input. */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

static tt_go_opts share1(tt_chan **ch) { return (tt_go_opts){.share = ch, .nshare = 1}; }

/* ---- Unbuffered ---------------------------------------------------------------------------- */

struct rdv {
  tt_chan *ch;
  _Atomic int sent;
};

static void rdv_sender(void *p) {
  struct rdv *r = p;
  int v = 42;
  ASSERT_OK(tt_chan_send(r->ch, &v));
  atomic_store(&r->sent, 1);
}

static int rendezvous_main(void *p) {
  int64_t live = tt__chan_count_live();
  struct rdv r = {tt_chan_make(sizeof(int), 0), 0};
  ASSERT(r.ch != NULL);
  tt_go_opts o = share1(&r.ch);
  ASSERT_OK(tt_go_opt(rdv_sender, &r, &o, NULL));
  /* The sender waits for a receiver: it cannot finish on its own. */
  tt_test_await_reason(TT_WAIT_CHAN_SEND, 1);
  ASSERT_EQ(atomic_load(&r.sent), 0);
  ASSERT_EQ(tt_chan_len(r.ch), 0);
  ASSERT_EQ(tt_chan_cap(r.ch), 0);
  int v = 0;
  bool ok = false;
  ASSERT_OK(tt_chan_recv(r.ch, &v, &ok));
  ASSERT_EQ(v, 42);
  ASSERT(ok);
  ASSERT_OK(tt_chan_release(r.ch));
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&r.sent), 1);
  ASSERT_EQ(tt__chan_count_live(), live); /* the last reference (the sender's, at exit) freed it */
  return 0;
}

TEST(chan_unbuffered_rendezvous) { tt_test_run(rendezvous_main, NULL, 2); }

/* A receiver that arrives first waits for the sender. */
static void late_sender(void *p) {
  tt_sleep(2 * TT_MSEC);
  ASSERT_OK(tt_chan_send_val(p, int, 7));
}

static int recv_first_main(void *p) {
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = share1(&ch);
  ASSERT_OK(tt_go_opt(late_sender, ch, &o, NULL));
  int err = 1;
  ASSERT_EQ(tt_chan_recv_val(ch, int, &err), 7);
  ASSERT_EQ(err, 0);
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(chan_receiver_waits_for_sender) { tt_test_run(recv_first_main, NULL, 1); }

/* ---- Buffered ------------------------------------------------------------------------------ */

static int buffered_main(void *p) {
  tt_chan *ch = tt_chan_make(sizeof(int), 3);
  for (int i = 0; i < 3; i++)
    ASSERT_OK(tt_chan_try_send(ch, &i));
  ASSERT_EQ(tt_chan_len(ch), 3);
  ASSERT_EQ(tt_chan_cap(ch), 3);
  int x = 99;
  ASSERT_ERR(tt_chan_try_send(ch, &x), TT_EAGAIN);
  ASSERT_ERR(tt_chan_send_dl(ch, &x, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_EQ(tt_chan_len(ch), 3); /* nothing was added by the failed sends */
  for (int i = 0; i < 3; i++) {
    int v = -1;
    ASSERT_OK(tt_chan_try_recv(ch, &v, NULL));
    ASSERT_EQ(v, i);
  }
  ASSERT_ERR(tt_chan_try_recv(ch, &x, NULL), TT_EAGAIN);
  ASSERT_ERR(tt_chan_recv_dl(ch, &x, NULL, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_EQ(x, 99); /* untouched by the failed receives */
  /* Wrap around the ring many times. */
  for (int i = 0; i < 100; i++) {
    ASSERT_OK(tt_chan_send(ch, &i));
    if (i % 3 == 2)
      for (int j = i - 2; j <= i; j++) {
        int v;
        ASSERT_OK(tt_chan_recv(ch, &v, NULL));
        ASSERT_EQ(v, j);
      }
  }
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(chan_buffered_fifo_len_cap) { tt_test_run(buffered_main, NULL, 1); }

/* Full ring plus waiting senders: order is ring first, then senders in arrival order. */
static void ordered_sender(void *p) { ASSERT_OK(tt_chan_send_val(p, int, 100 + (int)tt_self())); }

static int full_order_main(void *p) {
  tt_chan *ch = tt_chan_make(sizeof(int), 2);
  ASSERT_OK(tt_chan_send_val(ch, int, 1));
  ASSERT_OK(tt_chan_send_val(ch, int, 2));
  tt_id ids[3];
  for (int i = 0; i < 3; i++) {
    tt_go_opts o = share1(&ch);
    ASSERT_OK(tt_go_opt(ordered_sender, ch, &o, &ids[i]));
    tt_test_await_reason(TT_WAIT_CHAN_SEND, i + 1); /* queued in this order */
  }
  int want[5] = {1, 2, 100 + (int)ids[0], 100 + (int)ids[1], 100 + (int)ids[2]};
  for (int i = 0; i < 5; i++) {
    int v;
    ASSERT_OK(tt_chan_recv(ch, &v, NULL));
    ASSERT_EQ(v, want[i]);
  }
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(chan_full_buffer_then_senders_in_order) { tt_test_run(full_order_main, NULL, 1); }

/* ---- Close --------------------------------------------------------------------------------- */

struct closer {
  tt_chan *ch;
  tt_wg done;
  _Atomic int closed_seen;
};

static void close_receiver(void *p) {
  struct closer *c = p;
  int v = 5;
  bool ok = true;
  ASSERT_ERR(tt_chan_recv(c->ch, &v, &ok), TT_ECLOSED);
  ASSERT(!ok);
  ASSERT_EQ(v, 0); /* the zero value, as Go gives */
  atomic_fetch_add(&c->closed_seen, 1);
  tt_wg_done(&c->done);
}

static void close_sender(void *p) {
  struct closer *c = p;
  ASSERT_ERR(tt_chan_send_val(c->ch, int, 3), TT_ECLOSED);
  atomic_fetch_add(&c->closed_seen, 1);
  tt_wg_done(&c->done);
}

static int close_wakes_main(void *p) {
  static struct closer c;
  memset(&c, 0, sizeof c);
  c.ch = tt_chan_make(sizeof(int), 0);
  tt_wg_add(&c.done, 10);
  for (int i = 0; i < 10; i++) {
    tt_go_opts o = share1(&c.ch);
    ASSERT_OK(tt_go_opt(close_receiver, &c, &o, NULL));
  }
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 10);
  ASSERT_OK(tt_chan_close(c.ch));
  ASSERT_OK(tt_wg_wait(&c.done));
  ASSERT_EQ(atomic_load(&c.closed_seen), 10);
  /* Senders blocked when the channel closes get the error. */
  tt_chan *ch2 = tt_chan_make(sizeof(int), 0);
  tt_chan *old = c.ch;
  c.ch = ch2;
  tt_wg_add(&c.done, 5);
  for (int i = 0; i < 5; i++) {
    tt_go_opts o = share1(&c.ch);
    ASSERT_OK(tt_go_opt(close_sender, &c, &o, NULL));
  }
  tt_test_await_reason(TT_WAIT_CHAN_SEND, 5);
  ASSERT_OK(tt_chan_close(ch2));
  ASSERT_OK(tt_wg_wait(&c.done));
  ASSERT_EQ(atomic_load(&c.closed_seen), 15);
  /* Misuse Go panics on: errors here. */
  ASSERT_ERR(tt_chan_close(ch2), TT_ECLOSED);
  ASSERT_ERR(tt_chan_send_val(ch2, int, 1), TT_ECLOSED);
  ASSERT_ERR(tt_chan_try_send(ch2, &(int){1}), TT_ECLOSED);
  ASSERT_ERR(tt_chan_close(NULL), TT_EINVAL);
  ASSERT_OK(tt_chan_release(old));
  ASSERT_OK(tt_chan_release(ch2));
  return 0;
}

TEST(chan_close_wakes_receivers_and_senders) { tt_test_run(close_wakes_main, NULL, 2); }

static int close_drains_main(void *p) {
  tt_chan *ch = tt_chan_make(sizeof(int), 4);
  for (int i = 1; i <= 3; i++)
    ASSERT_OK(tt_chan_send(ch, &i));
  ASSERT_OK(tt_chan_close(ch));
  ASSERT_EQ(tt_chan_len(ch), 3);
  for (int i = 1; i <= 3; i++) {
    int v;
    bool ok;
    ASSERT_OK(tt_chan_recv(ch, &v, &ok));
    ASSERT_EQ(v, i);
    ASSERT(ok);
  }
  for (int i = 0; i < 3; i++) { /* closed and drained: at once, every time */
    int v = 9;
    bool ok = true;
    ASSERT_ERR(tt_chan_recv(ch, &v, &ok), TT_ECLOSED);
    ASSERT_ERR(tt_chan_try_recv(ch, &v, &ok), TT_ECLOSED);
    ASSERT(!ok);
    ASSERT_EQ(v, 0);
  }
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(chan_close_drains_buffer_first) { tt_test_run(close_drains_main, NULL, 1); }

/* ---- NULL channels, zero-size elements, bad input ------------------------------------------- */

static void nil_forever(void *p) {
  int v = 0;
  /* Blocks until shut-down cancels it. */
  ASSERT_ERR(p ? tt_chan_send(NULL, &v) : tt_chan_recv(NULL, &v, NULL), TT_ECANCELED);
}

static int nil_main(void *p) {
  int v = 1;
  ASSERT_ERR(tt_chan_try_send(NULL, &v), TT_EAGAIN);
  ASSERT_ERR(tt_chan_try_recv(NULL, &v, NULL), TT_EAGAIN);
  ASSERT_ERR(tt_chan_send_dl(NULL, &v, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_ERR(tt_chan_recv_dl(NULL, &v, NULL, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_EQ(tt_chan_len(NULL), 0);
  ASSERT_EQ(tt_chan_cap(NULL), 0);
  ASSERT_OK(tt_go(nil_forever, NULL));
  ASSERT_OK(tt_go(nil_forever, &v));
  tt_test_await_reason(TT_WAIT_CHAN_RECV_NIL, 1);
  tt_test_await_reason(TT_WAIT_CHAN_SEND_NIL, 1);
  return 0; /* shut-down cancels both */
}

TEST(chan_nil_blocks_forever) {
  ASSERT_OK(tt_test_run_unchecked(
      nil_main, NULL, &(tt_run_opts){.procs = 2},
      "the nil-channel waiters block forever: shut-down's cancellation ends them"));
}

static void signal_once(void *p) { ASSERT_OK(tt_chan_send(p, NULL)); }

static int zero_size_main(void *p) {
  tt_chan *done = tt_chan_make(0, 0);
  tt_go_opts o = share1(&done);
  ASSERT_OK(tt_go_opt(signal_once, done, &o, NULL));
  bool ok = false;
  ASSERT_OK(tt_chan_recv(done, NULL, &ok));
  ASSERT(ok);
  tt_chan *sem = tt_chan_make(0, 2); /* a counting signal channel */
  ASSERT_OK(tt_chan_send(sem, NULL));
  ASSERT_OK(tt_chan_send(sem, NULL));
  ASSERT_ERR(tt_chan_try_send(sem, NULL), TT_EAGAIN);
  ASSERT_EQ(tt_chan_len(sem), 2);
  ASSERT_OK(tt_chan_recv(sem, NULL, NULL));
  ASSERT_EQ(tt_chan_len(sem), 1);
  ASSERT_OK(tt_chan_close(sem));
  ASSERT_OK(tt_chan_recv(sem, NULL, &ok));
  ASSERT(ok);
  ASSERT_ERR(tt_chan_recv(sem, NULL, &ok), TT_ECLOSED);
  ASSERT(!ok);
  ASSERT_OK(tt_chan_release(done));
  ASSERT_OK(tt_chan_release(sem));
  return 0;
}

TEST(chan_zero_size_elements) { tt_test_run(zero_size_main, NULL, 2); }

static int bad_input_main(void *p) {
  tt_chan *ch = NULL;
  ASSERT_ERR(tt_chan_make_opt(NULL, 4, 1, NULL), TT_EINVAL);
  ASSERT_ERR(tt_chan_make_opt(&ch, 4, (size_t)1 << 62, NULL), TT_EINVAL);
  ASSERT(ch == NULL);
  ASSERT_ERR(tt_chan_make_opt(&ch, (size_t)1 << 40, (size_t)1 << 20, NULL), TT_EINVAL);
  ASSERT_ERR(tt_chan_make_opt(&ch, SIZE_MAX, 2, NULL), TT_EINVAL);
  ASSERT(tt_chan_make(8, SIZE_MAX) == NULL);
  ASSERT_ERR(tt_chan_make_opt(&ch, 4, 1, &(tt_chan_opts){.mode = 9}), TT_EINVAL);
  /* An allocation that fails is an error, not a crash. */
  tt__fault_arm(0 /* TT__FAULT_ALLOC */, 1);
  ASSERT_ERR(tt_chan_make_opt(&ch, 4, 1, NULL), TT_ENOMEM);
  ASSERT_OK(tt_chan_make_opt(&ch, 4, 1, NULL));
  ASSERT_ERR(tt_chan_send(ch, NULL), TT_EINVAL);
  ASSERT_ERR(tt_chan_try_send(ch, NULL), TT_EINVAL);
  ASSERT_ERR(tt_chan_recv(ch, NULL, NULL), TT_EINVAL);
  ASSERT_ERR(tt_chan_try_recv(ch, NULL, NULL), TT_EINVAL);
  ASSERT_EQ(tt_chan_len(ch), 0); /* nothing got in */
  ASSERT_OK(tt_chan_send_val(ch, int, 5));
  ASSERT_ERR(tt_chan_recv(ch, NULL, NULL), TT_EINVAL);
  ASSERT_EQ(tt_chan_len(ch), 1); /* nothing was lost */
  ASSERT_ERR(tt_chan_retain(NULL), TT_EINVAL);
  ASSERT_ERR(tt_chan_release(NULL), TT_EINVAL);
  ASSERT_ERR(tt_chan_send_ref(ch, NULL), TT_EINVAL);
  ASSERT_ERR(tt_chan_send_ref(ch, ch), TT_EINVAL); /* elem_size is not a handle's */
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(chan_bad_input) { tt_test_run(bad_input_main, NULL, 1); }

/* ---- Plain threads --------------------------------------------------------------------------- */

struct thr {
  tt_chan *in, *out;
};

static void *thread_echo(void *p) {
  struct thr *t = p;
  for (int i = 0; i < 1000; i++) {
    int v;
    ASSERT_OK(tt_chan_recv(t->in, &v, NULL));
    ASSERT_OK(tt_chan_send_val(t->out, int, v * 2));
  }
  return NULL;
}

static int threads_main(void *p) {
  /* Untracked: a plain thread uses them without holding references of its own. */
  struct thr t;
  ASSERT_OK(tt_chan_make_opt(&t.in, sizeof(int), 0, &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED}));
  ASSERT_OK(tt_chan_make_opt(&t.out, sizeof(int), 1, &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED}));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, thread_echo, &t), 0);
  for (int i = 0; i < 1000; i++) {
    ASSERT_OK(tt_chan_send(t.in, &i));
    int v;
    ASSERT_OK(tt_chan_recv(t.out, &v, NULL));
    ASSERT_EQ(v, 2 * i);
  }
  pthread_join(th, NULL);
  ASSERT_OK(tt_chan_release(t.in));
  ASSERT_OK(tt_chan_release(t.out));
  return 0;
}

TEST(chan_between_coroutines_and_threads) { tt_test_run(threads_main, NULL, 2); }

/* ---- Stress: many producers and consumers on all workers ------------------------------------ */

struct mpmc {
  tt_chan *ch;
  int64_t per;
  _Atomic int64_t sum, count;
  tt_wg prod;
};

static void producer(void *p) {
  struct mpmc *m = p;
  for (int64_t i = 1; i <= m->per; i++)
    ASSERT_OK(tt_chan_send(m->ch, &i));
  tt_wg_done(&m->prod);
}

static void consumer(void *p) {
  struct mpmc *m = p;
  int64_t v, s = 0, n = 0;
  while (tt_chan_recv(m->ch, &v, NULL) == 0) {
    s += v;
    n++;
  }
  atomic_fetch_add(&m->sum, s);
  atomic_fetch_add(&m->count, n);
}

static int mpmc_run(size_t cap) {
  static struct mpmc m;
  memset(&m, 0, sizeof m);
  m.ch = tt_chan_make(sizeof(int64_t), cap);
  m.per = SCALED(20000, 200);
  int np = 8, nc = 8;
  tt_wg_add(&m.prod, np);
  tt_wg cons = TT_WG_INIT;
  for (int i = 0; i < np; i++) {
    tt_go_opts o = share1(&m.ch);
    ASSERT_OK(tt_go_opt(producer, &m, &o, NULL));
  }
  for (int i = 0; i < nc; i++) {
    tt_go_opts o = share1(&m.ch);
    ASSERT_OK(tt_go_opt(consumer, &m, &o, NULL));
  }
  ASSERT_OK(tt_wg_wait(&m.prod));
  ASSERT_OK(tt_chan_close(m.ch));
  ASSERT_OK(tt_chan_release(m.ch));
  tt_test_await_alone();
  (void)cons;
  ASSERT_EQ(atomic_load(&m.count), np * m.per);
  ASSERT_EQ(atomic_load(&m.sum), np * (m.per * (m.per + 1) / 2));
  return 0;
}

static int mpmc_main(void *p) {
  int64_t live = tt__chan_count_live();
  mpmc_run(0);
  mpmc_run(1);
  mpmc_run(64);
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_stress_many_producers_consumers) { tt_test_run(mpmc_main, NULL, 0); }

/* Deadline stress: timeouts racing sends must neither lose nor duplicate a value. */
struct race {
  tt_chan *ch;
  int64_t n;
  _Atomic int64_t got;
};

static void racing_receiver(void *p) {
  struct race *r = p;
  int64_t v;
  for (;;) {
    int e = tt_chan_recv_dl(r->ch, &v, NULL, tt_now() + 20 * TT_USEC);
    if (e == TT_ECLOSED)
      return;
    if (e == 0)
      atomic_fetch_add(&r->got, v);
    else
      ASSERT_EQ(e, TT_ETIMEDOUT);
  }
}

static int timeout_race_main(void *p) {
  static struct race r;
  memset(&r, 0, sizeof r);
  r.ch = tt_chan_make(sizeof(int64_t), 0);
  r.n = SCALED(20000, 500);
  for (int i = 0; i < 4; i++) {
    tt_go_opts o = share1(&r.ch);
    ASSERT_OK(tt_go_opt(racing_receiver, &r, &o, NULL));
  }
  int64_t want = 0;
  for (int64_t i = 1; i <= r.n; i++) {
    int e;
    while ((e = tt_chan_send_dl(r.ch, &i, tt_now() + 15 * TT_USEC)) == TT_ETIMEDOUT)
      ;
    ASSERT_OK(e);
    want += i;
  }
  ASSERT_OK(tt_chan_close(r.ch));
  ASSERT_OK(tt_chan_release(r.ch));
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&r.got), want);
  return 0;
}

TEST(chan_deadlines_race_hand_offs) { tt_test_run(timeout_race_main, NULL, 0); }

/* ---- Worker bias: a channel used from one worker is held without atomics, and another worker or
 * a plain thread that needs it revokes the bias safely, even mid-stream. ------------------------
 */

int tt__chan_bias_available(void);

struct bias {
  tt_chan *ch;
  int64_t n;
  _Atomic int64_t sum, count;
  _Atomic int biased_seen;
  _Atomic int wp, wc; /* the pair's workers */
  tt_wg done;
};

static void bias_consumer(void *p) {
  struct bias *b = p;
  int64_t v, s = 0, k = 0;
  atomic_store(&b->wc, tt_worker_index());
  while (tt_chan_recv(b->ch, &v, NULL) == 0) {
    s += v;
    k++;
    if (tt__chan_bias_owner(b->ch) == tt_worker_index())
      atomic_store(&b->biased_seen, 1);
  }
  atomic_fetch_add(&b->sum, s);
  atomic_fetch_add(&b->count, k);
  tt_wg_done(&b->done);
}

static void bias_producer(void *p) {
  struct bias *b = p;
  atomic_store(&b->wp, tt_worker_index());
  for (int64_t i = 1; i <= b->n; i++)
    ASSERT_OK(tt_chan_send(b->ch, &i));
  tt_wg_done(&b->done);
}

static _Atomic int bias_thread_done;

static void *bias_thread(void *p) {
  struct bias *b = p;
  for (int64_t i = 1; i <= b->n; i++)
    ASSERT_OK(tt_chan_send(b->ch, &i));
  atomic_store(&bias_thread_done, 1);
  return NULL;
}

static int bias_main(void *p) {
  static struct bias b;
  for (int round = 0; round < 6; round++) { /* past MAX_REVOKE revocations */
    memset(&b, 0, sizeof b);
    ASSERT_OK(tt_chan_make_opt(&b.ch, sizeof(int64_t), (size_t)(round % 3) * 4,
                               &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED}));
    b.n = SCALED(20000, 500);
    /* The pair alone: the channel is used from one worker, which earns the bias. */
    tt_wg_add(&b.done, 2);
    ASSERT_OK(tt_go(bias_consumer, &b));
    ASSERT_OK(tt_go(bias_producer, &b));
    while (tt_wg_count(&b.done) > 1)
      tt_sleep(100 * TT_USEC);
    if (tt__chan_bias_available() && atomic_load(&b.wp) == atomic_load(&b.wc))
      ASSERT(atomic_load(&b.biased_seen)); /* (a stolen half of the pair would not earn it) */
    /* Then a plain thread and a second producer (on any worker) join mid-stream: revocations
     * while the owner holds the channel. */
    atomic_store(&bias_thread_done, 0);
    tt_wg_add(&b.done, 1);
    ASSERT_OK(tt_go(bias_producer, &b));
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, bias_thread, &b), 0);
    /* Poll rather than join at once: pthread_join would stall this worker and the consumer. */
    while (!atomic_load(&bias_thread_done) || tt_wg_count(&b.done) > 1)
      tt_sleep(100 * TT_USEC);
    pthread_join(th, NULL);
    ASSERT_OK(tt_chan_close(b.ch));
    ASSERT_OK(tt_wg_wait(&b.done));
    ASSERT_EQ(atomic_load(&b.count), 3 * b.n);
    ASSERT_EQ(atomic_load(&b.sum), 3 * (b.n * (b.n + 1) / 2));
    ASSERT_OK(tt_chan_release(b.ch));
  }
  return 0;
}

TEST(chan_worker_bias_and_revocation) { tt_test_run(bias_main, NULL, 2); }
