/* SPDX-License-Identifier: MIT */
/* Channel references (DESIGN.md section 5, R1 and R2): who may use a tracked channel, how
 * references are shared, moved, carried and released, and that a channel is freed exactly when
 * its last reference goes. */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

/* ---- R1: a caller without a reference gets TT_EPERM ----------------------------------------- */

struct nonowner {
  tt_chan *ch;
  _Atomic int checked;
};

static void use_without_ref(void *p) {
  struct nonowner *n = p;
  int v = 1;
  bool ok;
  ASSERT_ERR(tt_chan_send(n->ch, &v), TT_EPERM);
  ASSERT_ERR(tt_chan_try_send(n->ch, &v), TT_EPERM);
  ASSERT_ERR(tt_chan_recv(n->ch, &v, &ok), TT_EPERM);
  ASSERT_ERR(tt_chan_try_recv(n->ch, &v, &ok), TT_EPERM);
  ASSERT_ERR(tt_chan_close(n->ch), TT_EPERM);
  ASSERT_ERR(tt_chan_retain(n->ch), TT_EPERM); /* a duplication by a non-holder */
  ASSERT_ERR(tt_chan_release(n->ch), TT_EPERM);
  ASSERT_EQ(tt_chan_len(n->ch), TT_EPERM);
  ASSERT_EQ(tt_chan_cap(n->ch), TT_EPERM);
  tt_select_case c[1] = {TT_CASE_RECV(n->ch, &v)};
  ASSERT_ERR(tt_select_try(c, 1), TT_EPERM);
  /* Nor can it pass on what it does not hold. */
  tt_go_opts o = {.share = &n->ch, .nshare = 1};
  ASSERT_ERR(tt_go_opt(use_without_ref, n, &o, NULL), TT_EPERM);
  atomic_store(&n->checked, 1);
}

static int eperm_main(void *p) {
  static struct nonowner n;
  n.ch = tt_chan_make(sizeof(int), 1);
  ASSERT_OK(tt_go(use_without_ref, &n)); /* the pointer, but no reference */
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&n.checked), 1);
  ASSERT_EQ(tt_chan_len(n.ch), 0); /* nothing got in */
  ASSERT_OK(tt_chan_release(n.ch));
  return 0;
}

TEST(chan_ref_nonholder_gets_eperm) { tt_test_run(eperm_main, NULL, 2); }

/* The message says how to share the channel. Checked in a child process's stderr. */
static int eperm_message_main(void *p) {
  static struct nonowner n;
  n.ch = tt_chan_make(sizeof(int), 1);
  ASSERT_OK(tt_go(use_without_ref, &n));
  tt_test_await_alone();
  ASSERT_OK(tt_chan_release(n.ch));
  return 0;
}

TEST(chan_ref_eperm_message) {
  if (getenv("TT_TEST_CHILD")) {
    tt_test_run(eperm_message_main, NULL, 1);
    exit(0);
  }
  char exe[4096];
  snprintf(exe, sizeof exe, "%s/tether-tests", tt_test_bindir());
  char *argv[] = {exe, "chan_ref_eperm_message", NULL};
  char *env[] = {"TT_TEST_CHILD=1", NULL};
  char *out = NULL;
  int st = tt_test_spawn(argv, env, &out);
  ASSERT_EQ(st, 0);
  ASSERT_CONTAINS(out, "tt_chan_send on channel");
  ASSERT_CONTAINS(out, "which holds no reference to it (TT_EPERM)");
  ASSERT_CONTAINS(out, "tt_go_opts.share");
  ASSERT_CONTAINS(out, "tt_chan_send_ref");
  ASSERT_CONTAINS(out, "further TT_EPERM messages suppressed"); /* rate-limited */
  free(out);
}

/* ---- Sharing at spawn ------------------------------------------------------------------------ */

static void send_two(void *p) {
  ASSERT_OK(tt_chan_send_val(p, int, 1));
  ASSERT_OK(tt_chan_send_val(p, int, 2));
}

static int share_copy_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.share = &ch, .nshare = 1, .share_mode = TT_SHARE_COPY};
  ASSERT_OK(tt_go_opt(send_two, ch, &o, NULL));
  int v;
  ASSERT_OK(tt_chan_recv(ch, &v, NULL));
  ASSERT_EQ(v, 1);
  ASSERT_OK(tt_chan_recv(ch, &v, NULL));
  ASSERT_EQ(v, 2);
  ASSERT_OK(tt_chan_release(ch)); /* ours; the child's went when it exited (or goes soon) */
  tt_test_await_alone();
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_ref_share_copy) { tt_test_run(share_copy_main, NULL, 2); }

struct moved {
  tt_chan *ch, *done;
};

static void owns_moved(void *p) {
  struct moved *m = p;
  ASSERT_OK(tt_chan_send_val(m->ch, int, 5));
  ASSERT_OK(tt_chan_close(m->ch));
  ASSERT_OK(tt_chan_send(m->done, NULL));
}

static int share_move_main(void *p) {
  int64_t live = tt__chan_count_live();
  static struct moved m;
  m.ch = tt_chan_make(sizeof(int), 1);
  m.done = tt_chan_make(0, 1); /* buffered: the child never waits for a receiver */
  tt_chan *both[2] = {m.ch, m.done};
  /* Moving twice the one reference we hold to m.ch fails, and nothing moves. */
  tt_chan *twice[3] = {m.done, m.ch, m.ch};
  tt_go_opts bad = {.share = twice, .nshare = 3, .share_mode = TT_SHARE_MOVE};
  ASSERT_ERR(tt_go_opt(owns_moved, &m, &bad, NULL), TT_EPERM);
  ASSERT_EQ(tt_chan_cap(m.ch), 1); /* still ours */
  ASSERT_EQ(tt_chan_cap(m.done), 1);
  tt_go_opts o = {.share = both, .nshare = 2, .share_mode = TT_SHARE_MOVE};
  ASSERT_OK(tt_go_opt(owns_moved, &m, &o, NULL));
  /* Both references moved: we may no longer use either. */
  ASSERT_EQ(tt_chan_len(m.ch), TT_EPERM);
  ASSERT_ERR(tt_chan_recv(m.done, NULL, NULL), TT_EPERM);
  tt_test_await_alone();
  ASSERT_EQ(tt__chan_count_live(), live); /* the child's exit freed both */
  return 0;
}

TEST(chan_ref_share_move) { tt_test_run(share_move_main, NULL, 2); }

/* ---- Retain and release ---------------------------------------------------------------------- */

static int retain_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *ch = tt_chan_make(sizeof(int), 2);
  ASSERT_OK(tt_chan_retain(ch));
  ASSERT_OK(tt_chan_retain(ch));
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(tt__chan_count_live(), live + 1); /* one reference left */
  ASSERT_OK(tt_chan_send_val(ch, int, 3));
  ASSERT_OK(tt_chan_release(ch)); /* the last: freed, with the value still buffered */
  ASSERT_EQ(tt__chan_count_live(), live);
  /* Untracked: anyone may retain and release; freed with the last. */
  tt_chan *u;
  ASSERT_OK(tt_chan_make_opt(&u, sizeof(int), 1,
                             &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED, .name = "untracked"}));
  ASSERT_STR_EQ(tt_chan_name(u), "untracked");
  ASSERT_OK(tt_chan_retain(u));
  ASSERT_OK(tt_chan_release(u));
  ASSERT_EQ(tt__chan_count_live(), live + 1);
  ASSERT_OK(tt_chan_release(u));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_ref_retain_release_free_exactly_at_last) { tt_test_run(retain_main, NULL, 1); }

/* A coroutine's references are released when it exits, however many it holds. */
static void hoarder(void *p) {
  for (int i = 0; i < 100; i++) {
    tt_chan *ch = tt_chan_make(sizeof(int), 1);
    ASSERT(ch != NULL);
    ASSERT_OK(tt_chan_retain(ch)); /* two references each, never released by hand */
  }
}

static int exit_release_main(void *p) {
  int64_t live = tt__chan_count_live();
  for (int i = 0; i < 10; i++)
    ASSERT_OK(tt_go(hoarder, NULL));
  tt_test_await_alone();
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_ref_released_at_coroutine_exit) { tt_test_run(exit_release_main, NULL, 2); }

/* A plain thread's references are released when the thread exits. */
static tt_chan *thread_made;

static void *thread_holder(void *p) {
  thread_made = tt_chan_make(sizeof(int), 4);
  ASSERT(thread_made != NULL);
  ASSERT_OK(tt_chan_send_val(thread_made, int, 1));
  ASSERT_EQ(tt_chan_len(thread_made), 1);
  return NULL;
}

TEST(chan_ref_released_at_thread_exit) {
  int64_t live = tt__chan_count_live();
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, thread_holder, NULL), 0);
  pthread_join(th, NULL);
  ASSERT_EQ(tt__chan_count_live(), live);
  /* This thread holds none: the pointer it has is no reference. */
  ASSERT_OK(pthread_create(&th, NULL, thread_holder, NULL));
  pthread_join(th, NULL);
  ASSERT_EQ(tt__chan_count_live(), live);
}

/* ---- Carrying references through channels ---------------------------------------------------- */

struct courier {
  tt_chan *via;
  _Atomic int got;
};

static void ref_receiver(void *p) {
  struct courier *c = p;
  tt_chan *ch;
  ASSERT_OK(tt_chan_recv(c->via, &ch, NULL));
  /* Now a holder: it may use the channel, and its exit releases it. */
  int v;
  ASSERT_OK(tt_chan_recv(ch, &v, NULL));
  ASSERT_EQ(v, 77);
  atomic_store(&c->got, 1);
}

static int send_ref_main(void *p) {
  int64_t live = tt__chan_count_live();
  static struct courier c;
  for (int cap = 0; cap <= 1; cap++) { /* hand-off and buffered */
    atomic_store(&c.got, 0);
    c.via = tt_chan_make(sizeof(tt_chan *), (size_t)cap);
    tt_go_opts o = {.share = &c.via, .nshare = 1};
    ASSERT_OK(tt_go_opt(ref_receiver, &c, &o, NULL));
    tt_chan *ch = tt_chan_make(sizeof(int), 1);
    ASSERT_OK(tt_chan_send_val(ch, int, 77));
    ASSERT_OK(tt_chan_send_ref(c.via, ch));
    ASSERT_EQ(tt_chan_len(ch), TT_EPERM); /* our reference went with the message */
    tt_test_await_alone();
    ASSERT_EQ(atomic_load(&c.got), 1);
    ASSERT_OK(tt_chan_release(c.via));
    ASSERT_EQ(tt__chan_count_live(), live); /* the receiver's exit freed ch */
  }
  /* A failed send_ref leaves the reference with the sender. */
  tt_chan *via = tt_chan_make(sizeof(tt_chan *), 0), *ch = tt_chan_make(0, 0);
  ASSERT_ERR(tt_chan_send_ref_dl(via, ch, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_OK(tt_chan_close(via));
  ASSERT_ERR(tt_chan_send_ref(via, ch), TT_ECLOSED);
  ASSERT_EQ(tt_chan_len(ch), 0);
  /* No reference to the carried channel any more (it is in flight): TT_EPERM. */
  tt_chan *via2 = tt_chan_make(sizeof(tt_chan *), 2);
  ASSERT_OK(tt_chan_send_ref(via2, ch));
  ASSERT_ERR(tt_chan_send_ref(via2, ch), TT_EPERM);
  ASSERT_EQ(tt_chan_len(via2), 1);
  ASSERT_OK(tt_chan_release(via));
  ASSERT_OK(tt_chan_release(via2));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_ref_send_ref_moves_reference) { tt_test_run(send_ref_main, NULL, 2); }

/* A channel freed with buffered values that carry the last references to other channels frees
 * those too, however long the chain. */
static int cascade_main(void *p) {
  int64_t live = tt__chan_count_live();
  int64_t n = SCALED(10000, 100);
  tt_chan *inner = tt_chan_make(sizeof(int), 0);
  for (int64_t i = 0; i < n; i++) {
    tt_chan *outer = tt_chan_make(sizeof(tt_chan *), 1);
    ASSERT_OK(tt_chan_send_ref(outer, inner));
    inner = outer;
  }
  ASSERT_EQ(tt__chan_count_live(), live + n + 1);
  ASSERT_OK(tt_chan_release(inner));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_ref_free_cascades_through_carried_values) { tt_test_run(cascade_main, NULL, 1); }

/* Receiving a carried reference through select makes the receiver the holder too. */
static int select_carry_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *via = tt_chan_make(sizeof(tt_chan *), 1);
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  ASSERT_OK(tt_chan_send_ref(via, ch));
  tt_chan *got = NULL;
  tt_select_case c[2] = {TT_CASE_RECV(via, &got), TT_CASE_RECV(NULL, &got)};
  ASSERT_EQ(tt_select(c, 2), 0);
  ASSERT_PTR_EQ(got, ch);
  ASSERT_OK(tt_chan_send_val(got, int, 1)); /* ours again */
  ASSERT_OK(tt_chan_release(got));
  ASSERT_OK(tt_chan_release(via));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_ref_select_receives_carried_reference) { tt_test_run(select_carry_main, NULL, 1); }

/* ---- Races: close and release from many sides ------------------------------------------------ */

struct race {
  tt_chan *ch;
  tt_wg ready;
};

static void racer(void *p) {
  struct race *r = p;
  tt_chan *ch = r->ch;
  tt_wg_done(&r->ready);
  int v = 1;
  for (int i = 0; i < 20; i++) {
    if (tt_chan_try_send(ch, &v) == TT_ECLOSED)
      break;
    tt_chan_try_recv(ch, &v, NULL);
    tt_yield();
  }
  int e = tt_chan_close(ch);
  ASSERT(e == 0 || e == TT_ECLOSED);
  ASSERT_OK(tt_chan_release(ch));
}

static int release_race_main(void *p) {
  int64_t live = tt__chan_count_live();
  static struct race r;
  for (int round = 0; round < SCALED(300, 5); round++) {
    r.ch = tt_chan_make(sizeof(int), 2);
    tt_wg_init(&r.ready);
    tt_wg_add(&r.ready, 8);
    for (int i = 0; i < 8; i++) {
      tt_go_opts o = {.share = &r.ch, .nshare = 1};
      ASSERT_OK(tt_go_opt(racer, &r, &o, NULL));
    }
    ASSERT_OK(tt_wg_wait(&r.ready));
    ASSERT_OK(tt_chan_release(r.ch)); /* ours goes first; the last racer frees it */
  }
  tt_test_await_alone();
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_ref_close_release_races) { tt_test_run(release_race_main, NULL, 0); }

/* Detached channels: anyone may use them, and the program frees them. */
static tt_chan *global_ch;

static void global_user(void *p) { ASSERT_OK(tt_chan_send_val(global_ch, int, 9)); }

static int detached_main(void *p) {
  int64_t live = tt__chan_count_live();
  ASSERT_OK(
      tt_chan_make_opt(&global_ch, sizeof(int), 1, &(tt_chan_opts){.mode = TT_CHAN_DETACHED}));
  ASSERT_OK(tt_go(global_user, NULL));
  int v;
  ASSERT_OK(tt_chan_recv(global_ch, &v, NULL));
  ASSERT_EQ(v, 9);
  tt_test_await_alone();
  ASSERT_EQ(tt__chan_count_live(), live + 1);
  ASSERT_OK(tt_chan_release(global_ch));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_ref_detached_usable_by_anyone) { tt_test_run(detached_main, NULL, 2); }
