/* SPDX-License-Identifier: MIT */
/* The leak proof (src/leak/proof.c): each leaky program with the verdict it must produce, and its
 * fixed twin, a minimal change, which must never be reported (DESIGN.md section 5). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include <tether.h>

/* ---- Helpers -------------------------------------------------------------------------------- */

/* The verdict of coroutine id in a fresh check, and (if r is given) the report. */
static int verdict(tt_id id) {
  int n = tt_leak_check(NULL);
  ASSERT_GE(n, 0);
  return tt_leak_verdict_of(id);
}

/* The report's entry for id, or NULL. */
static const tt_leak_verdict *find(const tt_leak_report *r, tt_id id) {
  for (size_t i = 0; i < tt_leak_report_len(r); i++)
    if (tt_leak_report_get(r, i)->id == id)
      return tt_leak_report_get(r, i);
  return NULL;
}

static bool evidence_has(const tt_leak_verdict *v, const char *needle) {
  for (size_t i = 0; i < v->nevidence; i++)
    if (strstr(v->evidence[i].text, needle))
      return true;
  return false;
}

/* Waits until n coroutines are alive, the caller included. */
static void await_count(int64_t n) {
  int64_t give_up = tt_now() + 60 * TT_SEC;
  while (tt_num_coroutines() != n) {
    ASSERT(tt_now() < give_up);
    tt_sleep(100 * TT_USEC);
  }
}

static tt_id spawn_share(void (*fn)(void *), void *arg, tt_chan *const *share, size_t n, int mode) {
  tt_go_opts o = {.share = share, .nshare = n, .share_mode = mode};
  tt_id id;
  ASSERT_OK(tt_go_opt(fn, arg, &o, &id));
  return id;
}

/* Runs a leaky program: the coroutines it proves leaked stay behind until the shut-down cancels
 * them, so the runner's own leak check is off (it would report them again). */
static void run_leaky(int (*fn)(void *), void *arg) {
  tt_run_opts o = {.procs = 2};
  ASSERT_OK(tt_test_run_unchecked(fn, arg, &o, "it leaves the coroutines it proves leaked"));
}

/* ---- The seed's first cause: a receive nobody will ever send to --------------------------- */

static void receiver(void *arg) {
  int v;
  bool ok;
  tt_chan_recv(arg, &v, &ok); /* returns only at shut-down (leaky) or when fed (fixed) */
  tt_chan_release(arg);
}

static int abandoned_receiver(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id id = spawn_share(receiver, ch, &ch, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  /* The spawner still holds a reference: it can send. */
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE);
  /* It returns without sending: the last live way to wake the receiver is gone. */
  ASSERT_OK(tt_chan_release(ch));
  tt_leak_report *r;
  ASSERT_EQ(tt_leak_check(&r), 1);
  const tt_leak_verdict *v = find(r, id);
  ASSERT(v != NULL);
  ASSERT_EQ(v->verdict, TT_VERDICT_LEAKED);
  ASSERT_EQ(v->pattern, TT_PATTERN_ABANDONED_RECEIVER);
  ASSERT_EQ(v->wait_reason, TT_WAIT_CHAN_RECV);
  ASSERT(evidence_has(v, "(this one)"));
  ASSERT(evidence_has(v, "no live party holds a reference"));
  ASSERT(v->proven_at > 0);
  tt_leak_report_free(r);
  ASSERT_EQ(tt_leak_verdict_of(id), TT_VERDICT_LEAKED);
  /* Verdicts are sticky: proven once, the same again. */
  ASSERT_EQ(verdict(id), TT_VERDICT_LEAKED);
  return 0;
}
TEST(leak_abandoned_receiver) { run_leaky(abandoned_receiver, NULL); }

static int abandoned_receiver_fixed(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id id = spawn_share(receiver, ch, &ch, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE);
  int v = 7;
  ASSERT_OK(tt_chan_send(ch, &v));
  ASSERT_OK(tt_chan_release(ch));
  tt_test_await_alone();
  ASSERT_EQ(tt_leak_check(NULL), 0);
  return 0;
}
TEST(leak_abandoned_receiver_fixed) { tt_test_run(abandoned_receiver_fixed, NULL, 2); }

/* ---- Senders: abandoned and N-cast ---------------------------------------------------------- */

static void sender(void *arg) {
  int v = 1;
  tt_chan_send(arg, &v);
  tt_chan_release(arg);
}

static int ncast(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id ids[3];
  for (int i = 0; i < 3; i++)
    ids[i] = spawn_share(sender, ch, &ch, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_SEND, 3);
  int v;
  bool ok;
  ASSERT_OK(tt_chan_recv(ch, &v, &ok)); /* the first answer; the others are never read */
  await_count(3);
  size_t nl = 0;
  for (int i = 0; i < 3; i++)
    nl += verdict(ids[i]) == TT_VERDICT_NONE;
  ASSERT_EQ(nl, 3); /* we still hold the channel */
  ASSERT_OK(tt_chan_release(ch));
  tt_leak_report *r;
  ASSERT_EQ(tt_leak_check(&r), 2);
  for (size_t i = 0; i < tt_leak_report_len(r); i++)
    ASSERT_EQ(tt_leak_report_get(r, i)->pattern, TT_PATTERN_NCAST);
  tt_leak_report_free(r);
  return 0;
}
TEST(leak_ncast) { run_leaky(ncast, NULL); }

/* ---- R1: a use without a reference fails, and the verdict stands ---------------------------- */

static tt_chan *stolen;
static _Atomic int stolen_err;

static void thief(void *arg) {
  (void)arg;
  int v = 1;
  /* It learnt the handle through memory, not through a reference: R1 refuses the send. */
  atomic_store(&stolen_err, tt_chan_send(stolen, &v));
  atomic_store(&stolen_err, tt_chan_retain(stolen) == TT_EPERM ? 2 : -2);
}

static int use_without_reference(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id id = spawn_share(receiver, ch, &ch, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(verdict(id), TT_VERDICT_LEAKED);
  stolen = ch;
  ASSERT_OK(tt_go(thief, NULL));
  while (atomic_load(&stolen_err) != 2)
    tt_sleep(100 * TT_USEC);
  ASSERT_EQ(verdict(id), TT_VERDICT_LEAKED);
  return 0;
}
TEST(leak_use_without_reference) { run_leaky(use_without_reference, NULL); }

/* ---- References sent through channels ------------------------------------------------------- */

struct relay {
  tt_chan *via; /* carries the work channel */
  bool by_ref;  /* tt_chan_send_ref, else the handle by value with a retain first */
};

/* Receives a channel over via and keeps it for a while, then feeds it. */
static void relay_keeper(void *arg) {
  struct relay *rl = arg;
  tt_chan *work;
  bool ok;
  ASSERT_OK(tt_chan_recv(rl->via, &work, &ok));
  tt_sleep(30 * TT_MSEC); /* the proof runs while we hold the only live reference */
  int v = 1;
  ASSERT_OK(tt_chan_send(work, &v));
  tt_chan_release(work);
  tt_chan_release(rl->via);
}

static int sent_over_channel(void *arg) {
  bool by_ref = arg != NULL;
  tt_chan *via = tt_chan_make(sizeof(tt_chan *), 1);
  tt_chan *work = tt_chan_make(sizeof(int), 0);
  struct relay rl = {via, by_ref};
  tt_id w = spawn_share(receiver, work, &work, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  if (by_ref) {
    ASSERT_OK(tt_chan_send_ref(via, work)); /* our reference moves into the buffer */
  } else {
    ASSERT_OK(tt_chan_send(via, &work)); /* a value: our reference stays ours */
  }
  /* In flight, in via's buffer: via is ours, so the carried reference is live. */
  ASSERT_EQ(verdict(w), TT_VERDICT_NONE);
  if (!by_ref) {
    ASSERT_OK(tt_go_opt(relay_keeper, &rl,
                        &(tt_go_opts){.share = (tt_chan *[]){via, work}, .nshare = 2}, NULL));
    ASSERT_OK(tt_chan_release(work));
  } else {
    ASSERT_OK(tt_go_opt(relay_keeper, &rl, &(tt_go_opts){.share = &via, .nshare = 1}, NULL));
  }
  ASSERT_OK(tt_chan_release(via));
  ASSERT_EQ(verdict(w), TT_VERDICT_NONE); /* the keeper can still send */
  tt_test_await_alone();
  return 0;
}
TEST(leak_chan_sent_by_value) { tt_test_run(sent_over_channel, NULL, 2); }
TEST(leak_chan_sent_by_ref) { tt_test_run(sent_over_channel, (void *)1, 2); }

static int carried_then_dropped(void *unused) {
  (void)unused;
  tt_chan *via = tt_chan_make(sizeof(tt_chan *), 1);
  tt_chan *work = tt_chan_make(sizeof(int), 0);
  tt_id w = spawn_share(receiver, work, &work, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_chan_send_ref(via, work));
  ASSERT_EQ(verdict(w), TT_VERDICT_NONE);
  /* The buffered value still carries the reference, but nobody can receive it any more: via's
   * only holder lets go (via is freed, and the carried reference with it). */
  ASSERT_OK(tt_chan_release(via));
  ASSERT_EQ(verdict(w), TT_VERDICT_LEAKED);
  return 0;
}
TEST(leak_carried_then_dropped) { run_leaky(carried_then_dropped, NULL); }

/* A carried reference in a live channel whose only other holder is a leaked coroutine. */
static int carried_in_dead_channel(void *unused) {
  (void)unused;
  tt_chan *via = tt_chan_make(sizeof(tt_chan *), 1);
  tt_chan *work = tt_chan_make(sizeof(int), 0);
  tt_id w = spawn_share(receiver, work, &work, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_chan_send_ref(via, work));
  /* via goes to a coroutine that blocks forever on a channel of its own: it holds via, but is
   * leaked, so nothing will ever receive the carried reference. */
  tt_chan *dead = tt_chan_make(0, 0);
  tt_id d = spawn_share(receiver, dead, &dead, 1, TT_SHARE_MOVE);
  (void)d;
  tt_chan *pair[] = {via};
  tt_go_opts o = {.share = pair, .nshare = 1, .share_mode = TT_SHARE_MOVE};
  /* A second coroutine holding via, blocked on its own dead channel. */
  tt_chan *dead2 = tt_chan_make(0, 0);
  ASSERT_OK(tt_chan_retain(dead2));
  tt_id holder;
  ASSERT_OK(tt_go_opt(
      receiver, dead2,
      &(tt_go_opts){.share = (tt_chan *[]){dead2, via}, .nshare = 2, .share_mode = TT_SHARE_MOVE},
      &holder));
  (void)o;
  ASSERT_OK(tt_chan_release(dead2));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 3);
  tt_leak_report *r;
  ASSERT_EQ(tt_leak_check(&r), 3);
  const tt_leak_verdict *v = find(r, w);
  ASSERT(v != NULL);
  ASSERT(evidence_has(v, "a value in flight in channel"));
  tt_leak_report_free(r);
  return 0;
}
TEST(leak_carried_in_dead_channel) { run_leaky(carried_in_dead_channel, NULL); }

/* ---- Retain by a non-owner ------------------------------------------------------------------ */

static void retain_thief(void *arg) {
  (void)arg;
  atomic_store(&stolen_err, tt_chan_retain(stolen) == TT_EPERM ? 2 : -2);
}

static int retain_by_non_owner(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id id = spawn_share(receiver, ch, &ch, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  stolen = ch;
  atomic_store(&stolen_err, 0);
  ASSERT_OK(tt_go(retain_thief, NULL));
  while (atomic_load(&stolen_err) == 0)
    tt_sleep(100 * TT_USEC);
  ASSERT_EQ(atomic_load(&stolen_err), 2);
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(verdict(id), TT_VERDICT_LEAKED);
  return 0;
}
TEST(leak_retain_by_non_owner) { run_leaky(retain_by_non_owner, NULL); }

/* ---- Contexts --------------------------------------------------------------------------------*/

static tt_ctx *parent_ctx;

static void ctx_receiver(void *arg) {
  int v;
  bool ok;
  tt_chan_recv(arg, &v, &ok);
  tt_chan_release(arg);
}

/* A receiver on a dead channel under a context an ancestor can still cancel is not leaked;
 * once that ancestor's canceller lets go, it is. */
static int ctx_ancestor(void *unused) {
  (void)unused;
  tt_ctx *mid;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &parent_ctx));
  ASSERT_OK(tt_ctx_with_value(parent_ctx, "k", "v", &mid));
  tt_ctx *leaf;
  ASSERT_OK(tt_ctx_with_cancel(mid, &leaf));
  tt_ctx_release(mid);
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.share = &ch, .nshare = 1, .share_mode = TT_SHARE_MOVE, .ctx = leaf};
  tt_id id;
  ASSERT_OK(tt_go_opt(ctx_receiver, ch, &o, &id));
  tt_ctx_release(leaf);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE); /* we can cancel parent_ctx */
  tt_ctx_release(parent_ctx);              /* ... and let go without cancelling */
  /* The value context in between holds the only reference to parent_ctx: nobody can cancel it
   * any more, but the proof does not follow value contexts' references, so it stays live. */
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE);
  return 0;
}
TEST(leak_ctx_ancestor_can_cancel) { run_leaky(ctx_ancestor, NULL); }

static int ctx_cancel_holder(void *arg) {
  bool leaky = arg != NULL;
  tt_ctx *c;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &c));
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.share = &ch, .nshare = 1, .share_mode = TT_SHARE_MOVE, .ctx = c};
  tt_id id;
  ASSERT_OK(tt_go_opt(ctx_receiver, ch, &o, &id));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE); /* we hold c: we can cancel it */
  if (leaky) {
    tt_ctx_release(c); /* Go's "lostcancel": the cancel function dropped */
    tt_leak_report *r;
    ASSERT_EQ(tt_leak_check(&r), 1);
    const tt_leak_verdict *v = find(r, id);
    ASSERT(v && evidence_has(v, "will never be cancelled"));
    tt_leak_report_free(r);
  } else {
    ASSERT_OK(tt_ctx_cancel(c));
    tt_ctx_release(c);
    tt_test_await_alone();
    ASSERT_EQ(tt_leak_check(NULL), 0);
  }
  return 0;
}
TEST(leak_ctx_cancel_dropped) { run_leaky(ctx_cancel_holder, (void *)1); }
TEST(leak_ctx_cancel_kept) { tt_test_run(ctx_cancel_holder, NULL, 2); }

static int ctx_deadline(void *unused) {
  (void)unused;
  tt_ctx *c;
  ASSERT_OK(tt_ctx_with_timeout(tt_ctx_background(), 60 * TT_SEC, &c));
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.share = &ch, .nshare = 1, .share_mode = TT_SHARE_MOVE, .ctx = c};
  tt_id id;
  ASSERT_OK(tt_go_opt(ctx_receiver, ch, &o, &id));
  tt_ctx_release(c);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE); /* its deadline will wake it */
  return 0;
}
TEST(leak_ctx_deadline_is_live) { run_leaky(ctx_deadline, NULL); }

/* A select on a dead channel and its context's done channel. */
static void select_done(void *arg) {
  tt_chan *ch = arg;
  int v;
  tt_select_case cs[] = {TT_CASE_RECV(ch, &v), TT_CASE_RECV(tt_ctx_done(tt_ctx_current()), NULL)};
  tt_select(cs, 2);
  tt_chan_release(ch);
}

static int select_ctx_done(void *arg) {
  bool leaky = arg != NULL;
  tt_ctx *c;
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &c));
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.share = &ch, .nshare = 1, .share_mode = TT_SHARE_MOVE, .ctx = c};
  tt_id id;
  ASSERT_OK(tt_go_opt(select_done, ch, &o, &id));
  tt_test_await_reason(TT_WAIT_SELECT, 1);
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE);
  if (leaky) {
    tt_ctx_release(c);
    tt_leak_report *r;
    ASSERT_EQ(tt_leak_check(&r), 1);
    const tt_leak_verdict *v = find(r, id);
    ASSERT(v != NULL);
    ASSERT_EQ(v->pattern, TT_PATTERN_DEAD_SELECT);
    ASSERT(evidence_has(v, "done channel of context"));
    tt_leak_report_free(r);
  } else {
    ASSERT_OK(tt_ctx_cancel(c));
    tt_ctx_release(c);
    tt_test_await_alone();
  }
  return 0;
}
TEST(leak_select_ctx_done_dropped) { run_leaky(select_ctx_done, (void *)1); }
TEST(leak_select_ctx_done_kept) { tt_test_run(select_ctx_done, NULL, 2); }

/* ---- Waiters whose only waker waits on a wait group, a condition or a semaphore ------------- */

struct gate {
  tt_wg wg;
  tt_chan *ch;
};

/* Waits on the wait group, then sends: the receiver's only waker. */
static void wg_then_send(void *arg) {
  struct gate *g = arg;
  tt_wg_wait(&g->wg);
  int v = 1;
  tt_chan_send(g->ch, &v);
  tt_chan_release(g->ch);
}

static int waker_on_wg(void *unused) {
  (void)unused;
  struct gate g;
  tt_wg_init(&g.wg);
  ASSERT_OK(tt_wg_add(&g.wg, 1));
  g.ch = tt_chan_make(sizeof(int), 0);
  tt_id r = spawn_share(receiver, g.ch, &g.ch, 1, TT_SHARE_COPY);
  ASSERT_OK(tt_go_opt(wg_then_send, &g, &(tt_go_opts){.share = &g.ch, .nshare = 1}, NULL));
  ASSERT_OK(tt_chan_release(g.ch));
  tt_test_await_reason(TT_WAIT_WAITGROUP_WAIT, 1);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  /* The wait group has no owner to reason about: its waiter is live, and so the receiver. */
  ASSERT_EQ(verdict(r), TT_VERDICT_NONE);
  ASSERT_OK(tt_wg_done(&g.wg));
  tt_test_await_alone();
  return 0;
}
TEST(leak_waker_waits_on_wg) { tt_test_run(waker_on_wg, NULL, 2); }

struct semgate {
  tt_sem sem;
  tt_mutex mu;
  tt_cond cv;
  bool go;
  tt_chan *ch;
};

static void sem_then_send(void *arg) {
  struct semgate *g = arg;
  tt_sem_acquire(&g->sem, 1);
  tt_mutex_lock(&g->mu);
  while (!g->go)
    tt_cond_wait(&g->cv, &g->mu);
  tt_mutex_unlock(&g->mu);
  int v = 1;
  tt_chan_send(g->ch, &v);
  tt_chan_release(g->ch);
}

static int waker_on_sem_and_cond(void *unused) {
  (void)unused;
  struct semgate g = {.go = false};
  ASSERT_OK(tt_sem_init(&g.sem, 1));
  ASSERT_OK(tt_sem_acquire(&g.sem, 1)); /* the waker will wait for it */
  tt_mutex_init(&g.mu);
  tt_cond_init(&g.cv);
  g.ch = tt_chan_make(sizeof(int), 0);
  tt_id r = spawn_share(receiver, g.ch, &g.ch, 1, TT_SHARE_COPY);
  ASSERT_OK(tt_go_opt(sem_then_send, &g, &(tt_go_opts){.share = &g.ch, .nshare = 1}, NULL));
  ASSERT_OK(tt_chan_release(g.ch));
  tt_test_await_reason(TT_WAIT_SEMACQUIRE, 1);
  ASSERT_EQ(verdict(r), TT_VERDICT_NONE);
  ASSERT_OK(tt_sem_release(&g.sem, 1));
  tt_test_await_reason(TT_WAIT_COND_WAIT, 1);
  ASSERT_EQ(verdict(r), TT_VERDICT_NONE);
  tt_mutex_lock(&g.mu);
  g.go = true;
  tt_cond_signal(&g.cv);
  tt_mutex_unlock(&g.mu);
  tt_test_await_alone();
  return 0;
}
TEST(leak_waker_waits_on_sem_and_cond) { tt_test_run(waker_on_sem_and_cond, NULL, 2); }

/* ---- Timers, tt_after_func and signal registrations hold references ----------------------- */

static void fed_later(void *arg) {
  int v = 3;
  tt_chan_send(arg, &v);
  tt_chan_release(arg);
}

static int after_func_holds(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id r = spawn_share(receiver, ch, &ch, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  tt_chan *timer;
  ASSERT_OK(tt_after_func_opt(&timer, 50 * TT_MSEC, fed_later, ch, &ch, 1));
  ASSERT_OK(tt_chan_release(ch));
  /* Our reference went to the armed timer: the receiver is live. */
  ASSERT_EQ(verdict(r), TT_VERDICT_NONE);
  tt_test_await_alone();
  tt_chan_release(timer);
  return 0;
}
TEST(leak_after_func_holds_reference) { tt_test_run(after_func_holds, NULL, 2); }

static int signal_holds(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  int sig = SIGUSR2;
  ASSERT_OK(tt_signal_notify(ch, &sig, 1));
  tt_id r = spawn_share(receiver, ch, &ch, 1, TT_SHARE_MOVE);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  /* Only the registration and the receiver hold it: a signal can still arrive. */
  ASSERT_EQ(verdict(r), TT_VERDICT_NONE);
  kill(getpid(), SIGUSR2);
  tt_test_await_alone();
  return 0;
}
TEST(leak_signal_registration_holds_reference) { tt_test_run(signal_holds, NULL, 2); }

/* ---- Plain threads -------------------------------------------------------------------------- */

struct thread_box {
  _Atomic int stage;
  _Atomic tt_id id;
  tt_mutex *mu;
};

/* A plain thread makes the channel (it holds the first reference), spawns the receiver with a
 * copy, and sends once told to. */
static void *thread_owner(void *arg) {
  struct thread_box *b = arg;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id id;
  ASSERT_OK(tt_go_opt(receiver, ch, &(tt_go_opts){.share = &ch, .nshare = 1}, &id));
  atomic_store(&b->id, id);
  atomic_store(&b->stage, 1);
  while (atomic_load(&b->stage) != 2)
    usleep(1000);
  int v = 1;
  ASSERT_OK(tt_chan_send(ch, &v));
  ASSERT_OK(tt_chan_release(ch));
  return NULL;
}

static int thread_holds(void *unused) {
  (void)unused;
  struct thread_box b = {0};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, thread_owner, &b), 0);
  while (atomic_load(&b.stage) != 1)
    tt_sleep(100 * TT_USEC);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_EQ(verdict(atomic_load(&b.id)), TT_VERDICT_NONE); /* the thread holds it */
  atomic_store(&b.stage, 2);
  tt_test_await_alone();
  pthread_join(t, NULL);
  return 0;
}
TEST(leak_plain_thread_holds_reference) { tt_test_run(thread_holds, NULL, 2); }

/* A plain thread that exits releases its references: then the receiver is leaked. */
static void *thread_leaves(void *arg) {
  struct thread_box *b = arg;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id id;
  ASSERT_OK(tt_go_opt(receiver, ch, &(tt_go_opts){.share = &ch, .nshare = 1}, &id));
  atomic_store(&b->id, id);
  return NULL; /* exits with its reference */
}

static int thread_exit_releases(void *unused) {
  (void)unused;
  struct thread_box b = {0};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, thread_leaves, &b), 0);
  pthread_join(t, NULL);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_EQ(verdict(atomic_load(&b.id)), TT_VERDICT_LEAKED);
  return 0;
}
TEST(leak_plain_thread_exit_releases) { run_leaky(thread_exit_releases, NULL); }

static void locker(void *arg) {
  tt_mutex_lock(arg);
  tt_mutex_unlock(arg);
}

static void *thread_locks(void *arg) {
  struct thread_box *b = arg;
  ASSERT_OK(tt_mutex_lock(b->mu));
  atomic_store(&b->stage, 1);
  while (atomic_load(&b->stage) != 2)
    usleep(1000);
  ASSERT_OK(tt_mutex_unlock(b->mu));
  return NULL;
}

static int mutex_held_by_thread(void *unused) {
  (void)unused;
  tt_mutex mu = TT_MUTEX_INIT;
  struct thread_box b = {.mu = &mu};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, thread_locks, &b), 0);
  while (atomic_load(&b.stage) != 1)
    tt_sleep(100 * TT_USEC);
  tt_id id;
  ASSERT_OK(tt_go_opt(locker, &mu, NULL, &id));
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, 1);
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE);
  atomic_store(&b.stage, 2);
  tt_test_await_alone();
  pthread_join(t, NULL);
  return 0;
}
TEST(leak_mutex_held_by_plain_thread) { tt_test_run(mutex_held_by_thread, NULL, 2); }

/* ---- Untracked and detached channels are never proven ---------------------------------------- */

static int untracked_never(void *arg) {
  int mode = (int)(intptr_t)arg;
  tt_chan *ch;
  ASSERT_OK(tt_chan_make_opt(&ch, sizeof(int), 0, &(tt_chan_opts){.mode = mode}));
  tt_id id;
  ASSERT_OK(tt_go_opt(receiver, ch, NULL, &id));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE);
  int v = 1;
  ASSERT_OK(tt_chan_send(ch, &v));
  tt_test_await_alone();
  return 0;
}
TEST(leak_untracked_never_proven) {
  tt_test_run(untracked_never, (void *)(intptr_t)TT_CHAN_UNTRACKED, 2);
}
TEST(leak_detached_never_proven) {
  tt_test_run(untracked_never, (void *)(intptr_t)TT_CHAN_DETACHED, 2);
}

/* ---- Nil channels and empty selects ---------------------------------------------------------- */

static void nil_recv(void *arg) {
  (void)arg;
  int v;
  bool ok;
  tt_chan_recv(NULL, &v, &ok);
}

static void empty_select(void *arg) {
  (void)arg;
  tt_select(NULL, 0);
}

static int nil_waits(void *unused) {
  (void)unused;
  tt_id a, b;
  ASSERT_OK(tt_go_opt(nil_recv, NULL, NULL, &a));
  ASSERT_OK(tt_go_opt(empty_select, NULL, NULL, &b));
  tt_test_await_reason(TT_WAIT_CHAN_RECV_NIL, 1);
  tt_test_await_reason(TT_WAIT_SELECT_NO_CASES, 1);
  tt_leak_report *r;
  ASSERT_EQ(tt_leak_check(&r), 2);
  ASSERT_EQ(find(r, a)->pattern, TT_PATTERN_NIL_WAIT);
  ASSERT_EQ(find(r, b)->pattern, TT_PATTERN_NIL_WAIT);
  tt_leak_report_free(r);
  return 0;
}
TEST(leak_nil_waits) { run_leaky(nil_waits, NULL); }

/* ---- Mutexes -------------------------------------------------------------------------------- */

static void lock_and_exit(void *arg) { tt_mutex_lock(arg); /* returns holding it */ }

static tt_mutex exited_mu = TT_MUTEX_INIT; /* outlives fn: the waiter leaves it at shut-down */

static int mutex_exited(void *arg) {
  bool leaky = arg != NULL;
  tt_mutex local = TT_MUTEX_INIT;
  tt_mutex *mup = leaky ? &exited_mu : &local;
#define mu (*mup)
  if (leaky) {
    ASSERT_OK(tt_go(lock_and_exit, &mu));
    while (tt_mutex_holder(&mu, NULL, NULL) != TT_LOCK_EXITED)
      tt_sleep(100 * TT_USEC);
  } else {
    ASSERT_OK(tt_mutex_lock(&mu));
  }
  tt_id id;
  ASSERT_OK(tt_go_opt(locker, &mu, NULL, &id));
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, 1);
  if (leaky) {
    tt_leak_report *r;
    ASSERT_EQ(tt_leak_check(&r), 1);
    const tt_leak_verdict *v = find(r, id);
    ASSERT_EQ(v->pattern, TT_PATTERN_MUTEX_EXITED);
    ASSERT(evidence_has(v, "exited holding it"));
    tt_leak_report_free(r);
    return 0; /* mu stays locked forever: the waiter is cancelled at shut-down */
  }
  ASSERT_EQ(verdict(id), TT_VERDICT_NONE); /* we hold it and run */
  ASSERT_OK(tt_mutex_unlock(&mu));
  tt_test_await_alone();
  return 0;
#undef mu
}
TEST(leak_mutex_holder_exited) { run_leaky(mutex_exited, (void *)1); }
TEST(leak_mutex_holder_live) { tt_test_run(mutex_exited, NULL, 2); }

struct cycle {
  tt_mutex a, b;
  tt_wg both;
};

static void lock_ab(void *arg) {
  struct cycle *c = arg;
  tt_mutex_lock(&c->a);
  tt_wg_done(&c->both);
  tt_wg_wait(&c->both);
  tt_mutex_lock(&c->b);
}

static void lock_ba(void *arg) {
  struct cycle *c = arg;
  tt_mutex_lock(&c->b);
  tt_wg_done(&c->both);
  tt_wg_wait(&c->both);
  tt_mutex_lock(&c->a);
}

static struct cycle cyc; /* outlives fn: the waiters leave its queues at shut-down */

static int lock_cycle(void *unused) {
  (void)unused;
  tt_mutex_init(&cyc.a);
  tt_mutex_init(&cyc.b);
  tt_wg_init(&cyc.both);
  ASSERT_OK(tt_wg_add(&cyc.both, 2));
  tt_id x, y;
  ASSERT_OK(tt_go_opt(lock_ab, &cyc, NULL, &x));
  ASSERT_OK(tt_go_opt(lock_ba, &cyc, NULL, &y));
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, 2);
  tt_leak_report *r;
  ASSERT_EQ(tt_leak_check(&r), 2);
  const tt_leak_verdict *vx = find(r, x), *vy = find(r, y);
  ASSERT_EQ(vx->verdict, TT_VERDICT_DEADLOCK);
  ASSERT_EQ(vy->verdict, TT_VERDICT_DEADLOCK);
  ASSERT_EQ(vx->pattern, TT_PATTERN_LOCK_CYCLE);
  ASSERT_EQ(vx->ncycle, 2);
  ASSERT_UEQ(vx->cycle[0], x);
  ASSERT_UEQ(vx->cycle[1], y);
  ASSERT_UEQ(vy->cycle[0], y);
  ASSERT_UEQ(vy->cycle[1], x);
  /* Every holder and where it took its lock. */
  if (tt_test_have_dwarf()) {
    ASSERT(evidence_has(vx, ", locked at lock_ba (test_leak_proof.c:"));
    ASSERT(evidence_has(vy, ", locked at lock_ab (test_leak_proof.c:"));
  }
  tt_leak_report_free(r);
  return 0;
}
TEST(leak_lock_cycle) { run_leaky(lock_cycle, NULL); }

/* The fixed twin: both take the locks in the same order. */
static void lock_ab_plain(void *arg) {
  struct cycle *c = arg;
  tt_mutex_lock(&c->a);
  tt_mutex_lock(&c->b);
  tt_sleep(2 * TT_MSEC);
  tt_mutex_unlock(&c->b);
  tt_mutex_unlock(&c->a);
}

static int lock_order(void *unused) {
  (void)unused;
  struct cycle c;
  tt_mutex_init(&c.a);
  tt_mutex_init(&c.b);
  for (int i = 0; i < 4; i++)
    ASSERT_OK(tt_go(lock_ab_plain, &c));
  for (int i = 0; i < 20; i++) {
    ASSERT_EQ(tt_leak_check(NULL), 0);
    tt_sleep(TT_MSEC);
  }
  tt_test_await_alone();
  return 0;
}
TEST(leak_lock_order_fixed) { tt_test_run(lock_order, NULL, 2); }

/* An rwmutex read-locked recursively behind a waiting writer: Go deadlocks, and so would we. */
static struct {
  tt_rwmutex rw;
  _Atomic int stage;
} rwc;

static void recursive_reader(void *arg) {
  (void)arg;
  tt_rwmutex_rlock(&rwc.rw);
  atomic_store(&rwc.stage, 1);
  while (atomic_load(&rwc.stage) != 2)
    tt_sleep(100 * TT_USEC);
  tt_rwmutex_rlock(&rwc.rw); /* behind the writer */
}

static void writer(void *arg) {
  (void)arg;
  tt_rwmutex_lock(&rwc.rw);
  tt_rwmutex_unlock(&rwc.rw);
}

static int rw_cycle(void *unused) {
  (void)unused;
  tt_rwmutex_init(&rwc.rw);
  tt_id r, w;
  ASSERT_OK(tt_go_opt(recursive_reader, NULL, NULL, &r));
  while (atomic_load(&rwc.stage) != 1)
    tt_sleep(100 * TT_USEC);
  ASSERT_OK(tt_go_opt(writer, NULL, NULL, &w));
  tt_test_await_reason(TT_WAIT_RWMUTEX_LOCK, 1);
  /* A live reader holds it: the writer waits, but is not leaked. */
  ASSERT_EQ(verdict(w), TT_VERDICT_NONE);
  atomic_store(&rwc.stage, 2);
  tt_test_await_reason(TT_WAIT_RWMUTEX_RLOCK, 1);
  tt_leak_report *rep;
  ASSERT_EQ(tt_leak_check(&rep), 2);
  const tt_leak_verdict *vr = find(rep, r), *vw = find(rep, w);
  ASSERT_EQ(vr->verdict, TT_VERDICT_DEADLOCK);
  ASSERT_EQ(vr->ncycle, 1); /* it waits on itself */
  ASSERT_EQ(vw->verdict, TT_VERDICT_LEAKED);
  ASSERT(evidence_has(vr, "read-held by coroutine"));
  if (tt_test_have_dwarf())
    ASSERT(evidence_has(vr, ", locked at recursive_reader (test_leak_proof.c:"));
  tt_leak_report_free(rep);
  return 0;
}
TEST(leak_rwmutex_recursive_read) { run_leaky(rw_cycle, NULL); }

/* ---- Chains ----------------------------------------------------------------------------------*/

/* Each link waits on the previous one's channel, which only the previous link holds. */
static void link_fn(void *arg) {
  tt_chan **pair = arg; /* [0]: receive from, [1]: send on */
  int v;
  bool ok;
  if (tt_chan_recv(pair[0], &v, &ok) == 0)
    tt_chan_send(pair[1], &v);
  tt_chan_release(pair[0]);
  tt_chan_release(pair[1]);
}

static int chain(void *arg) {
  bool leaky = arg != NULL;
  enum { N = 6 };
  static tt_chan *pairs[N][2];
  tt_chan *first = tt_chan_make(sizeof(int), 0), *prev = first;
  ASSERT_OK(tt_chan_retain(first));
  tt_id ids[N];
  for (int i = 0; i < N; i++) {
    tt_chan *next = tt_chan_make(sizeof(int), 0);
    if (i < N - 1)
      ASSERT_OK(tt_chan_retain(next)); /* the next link's receive end */
    pairs[i][0] = prev;
    pairs[i][1] = next;
    tt_go_opts o = {.share = pairs[i], .nshare = 2, .share_mode = TT_SHARE_MOVE};
    ASSERT_OK(tt_go_opt(link_fn, pairs[i], &o, &ids[i]));
    prev = next;
  }
  tt_test_await_reason(TT_WAIT_CHAN_RECV, N);
  for (int i = 0; i < N; i++)
    ASSERT_EQ(verdict(ids[i]), TT_VERDICT_NONE); /* we hold first */
  if (leaky) {
    ASSERT_OK(tt_chan_release(first));
    tt_leak_report *r;
    ASSERT_EQ(tt_leak_check(&r), N);
    ASSERT_EQ(find(r, ids[0])->pattern, TT_PATTERN_ABANDONED_RECEIVER);
    for (int i = 1; i < N; i++)
      ASSERT_EQ(find(r, ids[i])->pattern, TT_PATTERN_CHAIN);
    tt_leak_report_free(r);
  } else {
    int v = 5;
    ASSERT_OK(tt_chan_send(first, &v));
    ASSERT_OK(tt_chan_release(first));
    tt_test_await_reason(TT_WAIT_CHAN_SEND, 1); /* the last link: nobody receives */
  }
  return 0;
}
TEST(leak_chain) { run_leaky(chain, (void *)1); }

/* ---- Groups --------------------------------------------------------------------------------- */

static tt_chan *gch;

static int group_child_recv(void *arg) {
  (void)arg;
  int v;
  bool ok;
  return tt_chan_recv(gch, &v, &ok);
}

static int group_child_fail(void *arg) {
  tt_sleep((int64_t)(intptr_t)arg * TT_MSEC);
  return TT_EIO;
}

/* A child blocked on a dead channel under its group's context: a sibling that can still fail
 * cancels it. */
static int group_sibling(void *arg) {
  bool sibling = arg != NULL;
  gch = tt_chan_make_opt(&gch, sizeof(int), 0, &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED}) == 0
            ? gch
            : NULL;
  tt_group *g;
  ASSERT_OK(tt_group_make(NULL, &g));
  ASSERT_OK(tt_group_go(g, group_child_recv, NULL));
  if (sibling)
    ASSERT_OK(tt_group_go(g, group_child_fail, (void *)(intptr_t)30));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_EQ(tt_leak_check(NULL), 0); /* untracked, and a group's context is live */
  if (sibling) {
    ASSERT_EQ(tt_group_wait(g), TT_EIO);
  } else {
    ASSERT_OK(tt_group_cancel(g));
    ASSERT_ERR(tt_group_wait(g), TT_ECANCELED);
  }
  ASSERT_OK(tt_group_free(g));
  tt_chan_release(gch);
  return 0;
}
TEST(leak_group_sibling_can_cancel) { tt_test_run(group_sibling, (void *)1, 2); }

/* A child of a group spawns a coroutine that blocks on a dead channel while a sibling can still
 * fail: under the group's context it is live (the sibling's error cancels it); spawned with the
 * background context instead, nothing can wake it. */
static void grandchild(void *arg) {
  int v;
  bool ok;
  tt_chan_recv(arg, &v, &ok);
  tt_chan_release(arg);
}

static _Atomic tt_id gc_id;

static int spawn_grandchild(void *arg) {
  bool escape = arg != NULL;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id id;
  tt_go_opts o = {.share = &ch, .nshare = 1, .share_mode = TT_SHARE_MOVE};
  if (escape)
    o.ctx = tt_ctx_background();
  ASSERT_OK(tt_go_opt(grandchild, ch, &o, &id));
  atomic_store(&gc_id, id);
  return 0;
}

static int group_escape(void *arg) {
  tt_group *g;
  ASSERT_OK(tt_group_make(NULL, &g));
  atomic_store(&gc_id, 0);
  ASSERT_OK(tt_group_go(g, spawn_grandchild, arg));
  ASSERT_OK(tt_group_go(g, group_child_fail, (void *)(intptr_t)50));
  while (atomic_load(&gc_id) == 0)
    tt_sleep(100 * TT_USEC);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_EQ(verdict(atomic_load(&gc_id)), arg ? TT_VERDICT_LEAKED : TT_VERDICT_NONE);
  ASSERT_EQ(tt_group_wait(g), TT_EIO);
  ASSERT_OK(tt_group_free(g));
  if (!arg)
    tt_test_await_alone(); /* the sibling's error cancelled it */
  return 0;
}
TEST(leak_group_context_sibling_fixed) { tt_test_run(group_escape, NULL, 2); }
TEST(leak_group_context_escaped) { run_leaky(group_escape, (void *)1); }

/* ---- Where verdicts show: dumps, the goroutineleak profile, the report -------------------- */

static __attribute__((noinline)) void leaky_receiver_fn(void *arg) {
  int v;
  bool ok;
  tt_chan_recv(arg, &v, &ok);
  tt_chan_release(arg);
}

static int shows(void *unused) {
  (void)unused;
  tt_id ids[2];
  for (int i = 0; i < 2; i++) {
    tt_chan *ch = tt_chan_make(sizeof(int), 0);
    ASSERT_OK(tt_go_opt(leaky_receiver_fn, ch,
                        &(tt_go_opts){.share = &ch, .nshare = 1, .share_mode = TT_SHARE_MOVE},
                        &ids[i]));
  }
  tt_chan *live = tt_chan_make(sizeof(int), 0);
  tt_id lid = spawn_share(receiver, live, &live, 1, TT_SHARE_COPY);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 3);
  /* Before any check, nothing is marked. */
  char *out;
  size_t len;
  ASSERT_OK(tt_dump_mem(TT_DUMP_TRACES, &out, &len));
  ASSERT(strstr(out, "(leaked)") == NULL);
  free(out);
  ASSERT_EQ(tt_leak_check(NULL), 2);
  ASSERT_OK(tt_dump_mem(TT_DUMP_TRACES, &out, &len));
  char want[128];
  for (int i = 0; i < 2; i++) {
    snprintf(want, sizeof want, "goroutine %llu [chan receive (leaked)]:\n",
             (unsigned long long)ids[i]);
    ASSERT_CONTAINS(out, want);
  }
  snprintf(want, sizeof want, "goroutine %llu [chan receive]:\n", (unsigned long long)lid);
  ASSERT_CONTAINS(out, want);
  free(out);
  ASSERT_OK(tt_dump_mem(TT_DUMP_JSON, &out, &len));
  ASSERT_CONTAINS(out, "\"verdict\":\"leaked\"");
  ASSERT_CONTAINS(out, "\"verdict\":null");
  free(out);
  /* The goroutineleak profile lists the leaked ones only. */
  ASSERT_OK(tt_leak_profile_mem(TT_DUMP_COUNTS, &out, &len));
  ASSERT(strncmp(out, "goroutineleak profile: total 2\n2 @", 34) == 0);
  if (tt_test_have_dwarf())
    ASSERT_CONTAINS(out, "leaky_receiver_fn");
  free(out);
  ASSERT_OK(tt_leak_profile_mem(TT_DUMP_TRACES, &out, &len));
  ASSERT(strstr(out, "[chan receive]:") == NULL);
  snprintf(want, sizeof want, "goroutine %llu [chan receive (leaked)]:\n",
           (unsigned long long)ids[0]);
  ASSERT_CONTAINS(out, want);
  free(out);
  /* The report as text, and its errors. */
  tt_leak_report *r;
  ASSERT_EQ(tt_leak_check(&r), 2);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_OK(tt_leak_report_write(r, fds[1]));
  close(fds[1]);
  char buf[4096];
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  ASSERT_GT(n, 0);
  buf[n] = 0;
  snprintf(want, sizeof want, "coroutine %llu [chan receive (leaked)]: leaked (abandoned receiver)",
           (unsigned long long)ids[0]);
  ASSERT_CONTAINS(buf, want);
  ASSERT_CONTAINS(buf, "no live party holds a reference");
  ASSERT_ERR(tt_leak_report_write(r, -1), TT_EINVAL);
  ASSERT_ERR(tt_leak_report_write(NULL, 1), TT_EINVAL);
  ASSERT(tt_leak_report_get(r, 2) == NULL);
  tt_leak_report_free(r);
  ASSERT_ERR(tt_leak_profile(-1, TT_DUMP_COUNTS), TT_EINVAL);
  ASSERT_ERR(tt_leak_profile(1, 9), TT_EINVAL);
  ASSERT_ERR(tt_leak_profile_mem(TT_DUMP_COUNTS, NULL, NULL), TT_EINVAL);
  int v = 1;
  ASSERT_OK(tt_chan_send(live, &v));
  ASSERT_OK(tt_chan_release(live));
  return 0;
}
TEST(leak_verdicts_in_dumps_and_profiles) { run_leaky(shows, NULL); }

TEST(leak_check_not_running) {
  tt_leak_report *r = (tt_leak_report *)1;
  ASSERT_ERR(tt_leak_check(&r), TT_ENOTRUNNING);
  ASSERT(r == NULL);
  ASSERT_EQ(tt_leak_verdict_of(1), TT_VERDICT_NONE);
  ASSERT_STR_EQ(tt_leak_pattern_string(TT_PATTERN_NCAST), "N-cast");
  ASSERT_STR_EQ(tt_leak_pattern_string(TT_PATTERN_NONE), "");
  ASSERT(tt_leak_pattern_string(TT_PATTERN_COUNT) == NULL);
  ASSERT(tt_leak_pattern_string(-1) == NULL);
}

/* A timer channel's timer will send: its receiver is live, even with nobody else holding it. */
static void timer_receiver(void *arg) {
  bool ok;
  int64_t when;
  tt_chan_recv(arg, &when, &ok);
  tt_chan_release(arg);
}

static int timer_holds(void *unused) {
  (void)unused;
  /* Long enough for the receiver to be waiting first, even under Valgrind; if it is not (the
   * timer won), there is nothing to prove. */
  tt_chan *t = tt_after((int64_t)(100 * TT_MSEC * tt_test_slow()));
  ASSERT(t != NULL);
  tt_id id = spawn_share(timer_receiver, t, &t, 1, TT_SHARE_MOVE);
  tt_counts c;
  do {
    tt_sleep(100 * TT_USEC);
    ASSERT_OK(tt_counts_get(&c));
  } while (c.by_reason[TT_WAIT_CHAN_RECV] == 0 && c.total > 1);
  if (c.by_reason[TT_WAIT_CHAN_RECV] == 1)
    ASSERT_EQ(verdict(id), TT_VERDICT_NONE);
  tt_test_await_alone();
  return 0;
}
TEST(leak_timer_channel_is_live) { tt_test_run(timer_holds, NULL, 2); }
