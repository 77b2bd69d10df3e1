/* SPDX-License-Identifier: MIT */
/* Signals on channels: tt_signal_notify, tt_signal_stop, reset and ignore, the internal hooks, and
 * the end of a run. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

/* The internal hooks (src/signal/signal_int.h). */
struct tt__sighook;
int tt__signal_hook_add(const int *sigs, size_t n, void (*fn)(void *arg, int sig), void *arg,
                        struct tt__sighook **out);
void tt__signal_hook_del(struct tt__sighook *h);
uint64_t tt__signal_handled(int sig);

#define WAIT_LIMIT ((int64_t)(10 * tt_test_slow()) * TT_SEC)

/* Waits (coroutine or plain thread) until the dispatcher has handled `target` deliveries of sig
 * since the process started; fails rather than hangs. */
static void await_handled(int sig, uint64_t target) {
  int64_t end = tt_now() + WAIT_LIMIT;
  while (tt__signal_handled(sig) < target) {
    ASSERT(tt_now() < end);
    tt_sleep(100 * TT_USEC);
  }
}

/* The handler currently installed for sig. */
static struct sigaction current(int sig) {
  struct sigaction sa;
  ASSERT_EQ(sigaction(sig, NULL, &sa), 0);
  return sa;
}

static void *handler_of(int sig) {
  struct sigaction sa = current(sig);
  return (sa.sa_flags & SA_SIGINFO) ? (void *)sa.sa_sigaction : (void *)sa.sa_handler;
}

/* A program's own handler, to check that it is put back. */
static _Atomic int own_count;
static void own_handler(int sig) {
  (void)sig;
  atomic_fetch_add(&own_count, 1);
}

static void install_own(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = own_handler;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(sig, &sa, NULL), 0);
}

static void set_default(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(sig, &sa, NULL), 0);
}

/* ---- Delivery, from coroutines on either worker and from a plain thread ---------------------- */

/* Notifies a fresh channel of sig, sends sig to the process (to this thread with raise, or to
 * whichever thread the kernel picks with kill), and receives it. */
static void roundtrip(int sig, bool use_kill) {
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  ASSERT(ch != NULL);
  ASSERT_OK(tt_signal_notify(ch, &sig, 1));
  ASSERT_EQ(use_kill ? kill(getpid(), sig) : raise(sig), 0);
  int got = 0;
  bool ok = false;
  ASSERT_OK(tt_chan_recv_dl(ch, &got, &ok, tt_now() + WAIT_LIMIT));
  ASSERT(ok);
  ASSERT_EQ(got, sig);
  ASSERT_OK(tt_signal_stop(ch));
  ASSERT_OK(tt_chan_release(ch));
}

struct placed {
  _Atomic int started;
  _Atomic int workers[2];
  tt_wg done;
};

static void placed_roundtrip(void *p) {
  struct placed *pl = p;
  atomic_fetch_add(&pl->workers[tt_worker_index()], 1);
  atomic_store(&pl->started, 1);
  roundtrip(SIGUSR1, false);
  roundtrip(SIGUSR2, true);
  tt_wg_done(&pl->done);
}

static void *thread_roundtrip(void *p) {
  (void)p;
  roundtrip(SIGUSR1, false);
  roundtrip(SIGUSR2, true);
  return NULL;
}

static int delivery_main(void *p) {
  int me = tt_worker_index();
  roundtrip(SIGUSR1, false);
  roundtrip(SIGUSR2, true);
  /* Two children: the first goes to the ring when the second takes runnext, and since we do not
   * yield, only the idle worker can take it; the second runs here once we wait. */
  struct placed pl = {0};
  tt_wg_add(&pl.done, 2);
  ASSERT_OK(tt_go(placed_roundtrip, &pl));
  ASSERT_OK(tt_go(placed_roundtrip, &pl));
  int64_t end = tt_now() + WAIT_LIMIT;
  while (!atomic_load(&pl.started))
    ASSERT(tt_now() < end);
  ASSERT_OK(tt_wg_wait(&pl.done));
  ASSERT_EQ(atomic_load(&pl.workers[me]), 1);
  ASSERT_EQ(atomic_load(&pl.workers[1 - me]), 1);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, thread_roundtrip, NULL), 0);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  return 0;
}

TEST(signal_delivered_on_both_workers_and_plain_threads) { tt_test_run(delivery_main, NULL, 2); }

/* ---- Counting, dropping, fan-in and fan-out -------------------------------------------------- */

static int room_main(void *p) {
  /* k deliveries with room for k: k values. */
  const int k = 8;
  tt_chan *ch = tt_chan_make(sizeof(int), (size_t)k);
  ASSERT_OK(tt_signal_notify(ch, (int[]){SIGUSR1}, 1));
  uint64_t base = tt__signal_handled(SIGUSR1);
  for (int i = 0; i < k; i++)
    ASSERT_EQ(raise(SIGUSR1), 0);
  await_handled(SIGUSR1, base + (uint64_t)k);
  ASSERT_EQ(tt_chan_len(ch), k);
  for (int i = 0; i < k; i++) {
    int v = 0;
    ASSERT_OK(tt_chan_try_recv(ch, &v, NULL));
    ASSERT_EQ(v, SIGUSR1);
  }
  int v;
  ASSERT_ERR(tt_chan_try_recv(ch, &v, NULL), TT_EAGAIN);

  /* More than the room: the rest is dropped for this channel, and the dispatcher does not wait
   * for room (a roomy channel registered beside it gets every value at once). */
  tt_chan *small = tt_chan_make(sizeof(int), 2), *big = tt_chan_make(sizeof(int), 64);
  ASSERT_OK(tt_signal_notify(small, (int[]){SIGUSR2}, 1));
  ASSERT_OK(tt_signal_notify(big, (int[]){SIGUSR2}, 1));
  base = tt__signal_handled(SIGUSR2);
  for (int i = 0; i < 10; i++)
    ASSERT_EQ(raise(SIGUSR2), 0);
  await_handled(SIGUSR2, base + 10);
  ASSERT_EQ(tt_chan_len(small), 2);
  ASSERT_EQ(tt_chan_len(big), 10);
  /* Room again: the next delivery gets through. */
  ASSERT_OK(tt_chan_try_recv(small, &v, NULL));
  ASSERT_EQ(raise(SIGUSR2), 0);
  await_handled(SIGUSR2, base + 11);
  ASSERT_EQ(tt_chan_len(small), 2);
  ASSERT_EQ(tt_chan_len(big), 11);
  ASSERT_OK(tt_signal_stop(small));
  ASSERT_OK(tt_signal_stop(big));
  ASSERT_OK(tt_signal_stop(ch));
  ASSERT_OK(tt_chan_release(small));
  ASSERT_OK(tt_chan_release(big));
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(signal_never_lost_with_room_dropped_without) { tt_test_run(room_main, NULL, 2); }

/* Deliveries that pile up while the dispatcher is busy (here: held in a hook) are counted, not
 * folded into one as Go's pending bit would. */
static _Atomic int gate_entered, gate_open;
static void gate_hook(void *p, int sig) {
  (void)p;
  (void)sig;
  atomic_store(&gate_entered, 1);
  while (!atomic_load(&gate_open))
    usleep(100);
}

static int burst_main(void *p) {
  const int k = 5;
  struct tt__sighook *h;
  ASSERT_OK(tt__signal_hook_add((int[]){SIGUSR2}, 1, gate_hook, NULL, &h));
  tt_chan *ch = tt_chan_make(sizeof(int), (size_t)k + 1);
  ASSERT_OK(tt_signal_notify(ch, (int[]){SIGUSR1}, 1));
  ASSERT_EQ(raise(SIGUSR2), 0);
  int64_t end = tt_now() + WAIT_LIMIT;
  while (!atomic_load(&gate_entered)) {
    ASSERT(tt_now() < end);
    tt_sleep(100 * TT_USEC);
  }
  uint64_t base = tt__signal_handled(SIGUSR1);
  for (int i = 0; i < k; i++)
    ASSERT_EQ(raise(SIGUSR1), 0);
  ASSERT_EQ(tt__signal_handled(SIGUSR1), base); /* the dispatcher is still held */
  atomic_store(&gate_open, 1);
  await_handled(SIGUSR1, base + (uint64_t)k);
  ASSERT_EQ(tt_chan_len(ch), k);
  tt__signal_hook_del(h);
  ASSERT_OK(tt_signal_stop(ch));
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(signal_burst_counted_not_folded) { tt_test_run(burst_main, NULL, 2); }

static int many_main(void *p) {
  /* Several signals onto one channel, one notify adding to another. */
  tt_chan *ch = tt_chan_make(sizeof(int), 8);
  ASSERT_OK(tt_signal_notify(ch, (int[]){SIGUSR1, SIGUSR2, SIGUSR1}, 3));
  ASSERT_OK(tt_signal_notify(ch, (int[]){SIGHUP, SIGUSR2}, 2));
  int sigs[] = {SIGUSR1, SIGUSR2, SIGHUP, SIGRTMIN + 1};
  ASSERT_OK(tt_signal_notify(ch, &sigs[3], 1));
  int seen[4] = {0};
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ(raise(sigs[i]), 0);
    int v = 0;
    ASSERT_OK(tt_chan_recv_dl(ch, &v, NULL, tt_now() + WAIT_LIMIT));
    for (int j = 0; j < 4; j++)
      seen[j] += v == sigs[j];
  }
  for (int j = 0; j < 4; j++)
    ASSERT_EQ(seen[j], 1);
  int v;
  ASSERT_ERR(tt_chan_try_recv(ch, &v, NULL), TT_EAGAIN); /* a signal listed twice counts once */

  /* One signal to several channels: each gets it once. */
  tt_chan *cs[3];
  for (int i = 0; i < 3; i++) {
    cs[i] = tt_chan_make(sizeof(int), 4);
    ASSERT_OK(tt_signal_notify(cs[i], (int[]){SIGUSR1}, 1));
  }
  uint64_t base = tt__signal_handled(SIGUSR1);
  ASSERT_EQ(raise(SIGUSR1), 0);
  await_handled(SIGUSR1, base + 1);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(tt_chan_len(cs[i]), 1);
    ASSERT_OK(tt_chan_try_recv(cs[i], &v, NULL));
    ASSERT_EQ(v, SIGUSR1);
  }
  ASSERT_OK(tt_chan_try_recv(ch, &v, NULL)); /* ch wants SIGUSR1 too */
  ASSERT_EQ(v, SIGUSR1);
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(tt_signal_stop(cs[i]));
    ASSERT_OK(tt_chan_release(cs[i]));
  }
  ASSERT_OK(tt_signal_stop(ch));
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(signal_several_signals_and_several_channels) { tt_test_run(many_main, NULL, 2); }

/* A receiver blocked in select beside other work gets the signal from a thread's kill. */
static void *killer(void *p) {
  usleep(2000);
  kill(getpid(), *(int *)p);
  return NULL;
}

static int select_main(void *p) {
  tt_chan *sigs = tt_chan_make(sizeof(int), 1), *work = tt_chan_make(sizeof(int), 0);
  int sig = SIGTERM;
  ASSERT_OK(tt_signal_notify(sigs, (int[]){SIGINT, SIGTERM}, 2));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, killer, &sig), 0);
  int got = 0, job;
  tt_select_case cases[] = {TT_CASE_RECV(work, &job), TT_CASE_RECV(sigs, &got)};
  ASSERT_EQ(tt_select_dl(cases, 2, tt_now() + WAIT_LIMIT), 1);
  ASSERT_EQ(got, SIGTERM);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  ASSERT_OK(tt_signal_stop(sigs));
  ASSERT_OK(tt_chan_release(sigs));
  ASSERT_OK(tt_chan_release(work));
  return 0;
}

TEST(signal_wakes_a_select) { tt_test_run(select_main, NULL, 2); }

/* ---- Dispositions ------------------------------------------------------------------------- */

static int restore_main(void *p) {
  install_own(SIGUSR1);
  set_default(SIGUSR2);
  void *own = handler_of(SIGUSR1);
  tt_chan *a = tt_chan_make(sizeof(int), 4), *b = tt_chan_make(sizeof(int), 4);
  ASSERT_OK(tt_signal_notify(a, (int[]){SIGUSR1, SIGUSR2}, 2));
  ASSERT_OK(tt_signal_notify(b, (int[]){SIGUSR1}, 1));
  void *ours = handler_of(SIGUSR1);
  ASSERT(ours != own);
  ASSERT_PTR_EQ(handler_of(SIGUSR2), ours);
  ASSERT(current(SIGUSR1).sa_flags & SA_RESTART);
  /* While notified, the program's handler is not called. */
  uint64_t base = tt__signal_handled(SIGUSR1);
  ASSERT_EQ(raise(SIGUSR1), 0);
  await_handled(SIGUSR1, base + 1);
  ASSERT_EQ(atomic_load(&own_count), 0);
  /* One of two registrations stops: still ours. */
  ASSERT_OK(tt_signal_stop(a));
  ASSERT_PTR_EQ(handler_of(SIGUSR1), ours);
  ASSERT_PTR_EQ(handler_of(SIGUSR2), SIG_DFL); /* a was the only one for SIGUSR2 */
  ASSERT_OK(tt_signal_stop(b));
  ASSERT_PTR_EQ(handler_of(SIGUSR1), own);
  ASSERT_OK(tt_signal_stop(b)); /* not registered: nothing to do, as Go's Stop */
  /* Stopped: nothing is delivered, the program's handler runs again. */
  int64_t la = tt_chan_len(a), lb = tt_chan_len(b);
  ASSERT_EQ(raise(SIGUSR1), 0);
  ASSERT_EQ(atomic_load(&own_count), 1);
  ASSERT_EQ(tt__signal_handled(SIGUSR1), base + 1);
  ASSERT_EQ(tt_chan_len(a), la);
  ASSERT_EQ(tt_chan_len(b), lb);
  ASSERT_OK(tt_chan_release(a));
  ASSERT_OK(tt_chan_release(b));
  set_default(SIGUSR1);
  return 0;
}

TEST(signal_stop_restores_previous_disposition) { tt_test_run(restore_main, NULL, 2); }

static int all_main(void *p) {
  int probe[] = {SIGUSR1, SIGHUP, SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGRTMIN, SIGRTMIN + 2};
  size_t np = sizeof probe / sizeof probe[0];
  void *before[sizeof probe / sizeof probe[0]];
  for (size_t i = 0; i < np; i++)
    before[i] = handler_of(probe[i]);
  void *segv = handler_of(SIGSEGV), *bus = handler_of(SIGBUS), *fpe = handler_of(SIGFPE);
  tt_chan *ch = tt_chan_make(sizeof(int), 4);
  ASSERT_OK(tt_signal_notify(ch, NULL, 0)); /* every signal that may be notified */
  void *ours = handler_of(SIGUSR1);
  for (size_t i = 0; i < np; i++)
    ASSERT_PTR_EQ(handler_of(probe[i]), ours);
  /* The runtime's fault handler, and the refused signals, are left alone. */
  ASSERT_PTR_EQ(handler_of(SIGSEGV), segv);
  ASSERT_PTR_EQ(handler_of(SIGBUS), bus);
  ASSERT_PTR_EQ(handler_of(SIGFPE), fpe);
  /* (Not SIGRTMAX: qemu-user keeps the last real-time signals for itself.) */
  ASSERT_EQ(raise(SIGRTMIN + 2), 0);
  /* Another signal (SIGCHLD, SIGWINCH) may come first: every one is ours now. */
  int v = 0;
  while (v != SIGRTMIN + 2)
    ASSERT_OK(tt_chan_recv_dl(ch, &v, NULL, tt_now() + WAIT_LIMIT));
  ASSERT_OK(tt_signal_stop(ch));
  for (size_t i = 0; i < np; i++)
    ASSERT_PTR_EQ(handler_of(probe[i]), before[i]);
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(signal_notify_all_and_restore_all) { tt_test_run(all_main, NULL, 2); }

static int reset_main(void *p) {
  int64_t live = tt__chan_count_live();
  void *usr1 = handler_of(SIGUSR1);
  tt_chan *a = tt_chan_make(sizeof(int), 4), *b = tt_chan_make(sizeof(int), 4);
  ASSERT_OK(tt_signal_notify(a, (int[]){SIGUSR1, SIGUSR2}, 2));
  ASSERT_OK(tt_signal_notify(b, (int[]){SIGUSR1}, 1));
  ASSERT_OK(tt_chan_release(b)); /* only the registration holds b now */
  ASSERT_EQ(tt__chan_count_live(), live + 2);
  /* Reset SIGUSR1: b's registration is left empty and goes, freeing b; a keeps SIGUSR2. */
  ASSERT_OK(tt_signal_reset((int[]){SIGUSR1}, 1));
  ASSERT_EQ(tt__chan_count_live(), live + 1);
  ASSERT_PTR_EQ(handler_of(SIGUSR1), usr1);
  uint64_t base = tt__signal_handled(SIGUSR2);
  ASSERT_EQ(raise(SIGUSR2), 0);
  await_handled(SIGUSR2, base + 1);
  ASSERT_EQ(tt_chan_len(a), 1);
  /* Ignore SIGUSR2: a's registration goes; the signal is ignored (raising it is harmless). */
  ASSERT_OK(tt_signal_ignore((int[]){SIGUSR2}, 1));
  ASSERT_PTR_EQ(handler_of(SIGUSR2), SIG_IGN);
  ASSERT_EQ(raise(SIGUSR2), 0);
  ASSERT_EQ(tt__signal_handled(SIGUSR2), base + 1);
  /* Notified again, then stopped: back to ignored. */
  ASSERT_OK(tt_signal_notify(a, (int[]){SIGUSR2}, 1));
  ASSERT(handler_of(SIGUSR2) != SIG_IGN);
  ASSERT_OK(tt_signal_stop(a));
  ASSERT_PTR_EQ(handler_of(SIGUSR2), SIG_IGN);
  ASSERT_ERR(tt_signal_reset(NULL, 1), TT_EINVAL);
  ASSERT_ERR(tt_signal_ignore((int[]){SIGKILL}, 1), TT_EINVAL);
  ASSERT_OK(tt_signal_reset(NULL, 0)); /* nothing registered: nothing to do */
  set_default(SIGUSR2);
  ASSERT_OK(tt_chan_release(a));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(signal_reset_and_ignore) { tt_test_run(reset_main, NULL, 2); }

/* ---- Bad input ------------------------------------------------------------------------------ */

struct perm_arg {
  tt_chan *ch;
  tt_wg done;
};

static void no_reference(void *p) {
  struct perm_arg *a = p;
  ASSERT_ERR(tt_signal_notify(a->ch, (int[]){SIGUSR1}, 1), TT_EPERM);
  ASSERT_ERR(tt_signal_stop(a->ch), TT_EPERM);
  tt_wg_done(&a->done);
}

static int input_main(void *p) {
  int refused[] = {SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, 0, -1, NSIG, 32, 33};
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  void *usr1 = handler_of(SIGUSR1);
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    ASSERT_ERR(tt_signal_notify(ch, &refused[i], 1), TT_EINVAL);
    /* One refused signal among good ones: nothing changes. */
    ASSERT_ERR(tt_signal_notify(ch, (int[]){SIGUSR1, refused[i]}, 2), TT_EINVAL);
    ASSERT_PTR_EQ(handler_of(SIGUSR1), usr1);
  }
  ASSERT_ERR(tt_signal_notify(NULL, (int[]){SIGUSR1}, 1), TT_EINVAL);
  ASSERT_ERR(tt_signal_notify(ch, NULL, 1), TT_EINVAL);
  ASSERT_ERR(tt_signal_stop(NULL), TT_EINVAL);
  /* The element must be an int. */
  tt_chan *wide = tt_chan_make(sizeof(int64_t), 1), *empty = tt_chan_make(0, 1);
  ASSERT_ERR(tt_signal_notify(wide, (int[]){SIGUSR1}, 1), TT_EINVAL);
  ASSERT_ERR(tt_signal_notify(empty, (int[]){SIGUSR1}, 1), TT_EINVAL);
  ASSERT_PTR_EQ(handler_of(SIGUSR1), usr1);
  /* A coroutine that holds no reference. */
  struct perm_arg a = {ch, TT_WG_INIT};
  tt_wg_add(&a.done, 1);
  ASSERT_OK(tt_go(no_reference, &a));
  ASSERT_OK(tt_wg_wait(&a.done));
  /* The hooks' arguments. */
  struct tt__sighook *h = (void *)1;
  ASSERT_ERR(tt__signal_hook_add((int[]){SIGUSR1}, 1, NULL, NULL, &h), TT_EINVAL);
  ASSERT(h == NULL);
  ASSERT_ERR(tt__signal_hook_add((int[]){SIGUSR1}, 1, (void (*)(void *, int))1, NULL, NULL),
             TT_EINVAL);
  ASSERT_ERR(tt__signal_hook_add((int[]){SIGSEGV}, 1, (void (*)(void *, int))1, NULL, &h),
             TT_EINVAL);
  tt__signal_hook_del(NULL);
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_OK(tt_chan_release(wide));
  ASSERT_OK(tt_chan_release(empty));
  return 0;
}

TEST(signal_bad_input) {
  tt_test_run(input_main, NULL, 2);
  /* Outside a run. */
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  ASSERT(ch != NULL);
  ASSERT_ERR(tt_signal_notify(ch, (int[]){SIGUSR1}, 1), TT_ENOTRUNNING);
  ASSERT_OK(tt_signal_stop(ch));
  struct tt__sighook *h;
  ASSERT_ERR(tt__signal_hook_add((int[]){SIGUSR1}, 1, (void (*)(void *, int))1, NULL, &h),
             TT_ENOTRUNNING);
  ASSERT_OK(tt_chan_release(ch));
}

/* ---- The registration holds a reference ------------------------------------------------------ */

static int holder_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  ASSERT_OK(tt_signal_notify(ch, (int[]){SIGUSR1}, 1));
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(tt__chan_count_live(), live + 1); /* the registration keeps it */
  uint64_t base = tt__signal_handled(SIGUSR1);
  ASSERT_EQ(raise(SIGUSR1), 0); /* delivered to a channel only the registration holds */
  await_handled(SIGUSR1, base + 1);
  /* Untracked and closed channels: sends to a closed one are dropped. */
  tt_chan *u;
  ASSERT_OK(tt_chan_make_opt(&u, sizeof(int), 1, &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED}));
  ASSERT_OK(tt_signal_notify(u, (int[]){SIGUSR1}, 1));
  ASSERT_OK(tt_chan_close(u));
  ASSERT_EQ(raise(SIGUSR1), 0);
  await_handled(SIGUSR1, base + 2);
  int v;
  ASSERT_ERR(tt_chan_try_recv(u, &v, NULL), TT_ECLOSED);
  ASSERT_OK(tt_chan_release(u));
  ASSERT_EQ(tt__chan_count_live(), live + 2);
  return 0; /* the end of the run drops both registrations, freeing both channels */
}

TEST(signal_registration_holds_a_reference) {
  int64_t live = tt__chan_count_live();
  void *usr1 = handler_of(SIGUSR1);
  tt_test_run(holder_main, NULL, 2);
  ASSERT_EQ(tt__chan_count_live(), live);
  ASSERT_PTR_EQ(handler_of(SIGUSR1), usr1);
}

/* ---- Hooks ---------------------------------------------------------------------------------- */

struct hook_arg {
  _Atomic int calls;
  _Atomic int last;
  _Atomic int entered;
  _Atomic int done;
  int64_t linger;               /* how long each call takes */
  struct tt__sighook *self_del; /* a hook that deletes itself */
};

static void hook_fn(void *p, int sig) {
  struct hook_arg *a = p;
  ASSERT(tt_self() == 0 && tt_worker_index() == -1); /* a plain thread */
  atomic_store(&a->last, sig);
  atomic_store(&a->entered, 1);
  if (a->linger)
    usleep((useconds_t)(a->linger / TT_USEC));
  atomic_fetch_add(&a->calls, 1);
  atomic_store(&a->done, 1);
}

static void hook_self_del(void *p, int sig) {
  struct hook_arg *a = p;
  (void)sig;
  tt__signal_hook_del(a->self_del); /* on the dispatcher, within its own call: no wait */
  atomic_fetch_add(&a->calls, 1);
}

static int hooks_main(void *p) {
  void *usr2 = handler_of(SIGUSR2);
  struct hook_arg a = {0}, b = {0};
  struct tt__sighook *ha, *hb;
  ASSERT_OK(tt__signal_hook_add((int[]){SIGUSR2}, 1, hook_fn, &a, &ha));
  ASSERT_OK(tt__signal_hook_add((int[]){SIGUSR1, SIGUSR2}, 2, hook_fn, &b, &hb));
  tt_chan *ch = tt_chan_make(sizeof(int), 4);
  ASSERT_OK(tt_signal_notify(ch, (int[]){SIGUSR2}, 1));
  uint64_t base = tt__signal_handled(SIGUSR2);
  ASSERT_EQ(raise(SIGUSR2), 0);
  await_handled(SIGUSR2, base + 1);
  ASSERT_EQ(atomic_load(&a.calls), 1);
  ASSERT_EQ(atomic_load(&b.calls), 1);
  ASSERT_EQ(atomic_load(&a.last), SIGUSR2);
  ASSERT_EQ(tt_chan_len(ch), 1); /* the channel got it too */
  base = tt__signal_handled(SIGUSR1);
  ASSERT_EQ(raise(SIGUSR1), 0);
  await_handled(SIGUSR1, base + 1);
  ASSERT_EQ(atomic_load(&a.calls), 1);
  ASSERT_EQ(atomic_load(&b.calls), 2);
  ASSERT_EQ(atomic_load(&b.last), SIGUSR1);
  tt__signal_hook_del(hb);
  /* The channel and hook a still want SIGUSR2. */
  void *ours = handler_of(SIGUSR2);
  ASSERT(ours != usr2);
  ASSERT_OK(tt_signal_stop(ch));
  ASSERT_PTR_EQ(handler_of(SIGUSR2), ours);

  /* del waits for a call under way: a's calls now take 50 ms. */
  a.linger = 50 * TT_MSEC;
  atomic_store(&a.entered, 0);
  atomic_store(&a.done, 0);
  ASSERT_EQ(raise(SIGUSR2), 0);
  int64_t end = tt_now() + WAIT_LIMIT;
  while (!atomic_load(&a.entered)) {
    ASSERT(tt_now() < end);
    tt_sleep(100 * TT_USEC);
  }
  tt__signal_hook_del(ha);
  ASSERT_EQ(atomic_load(&a.done), 1);
  ASSERT_PTR_EQ(handler_of(SIGUSR2), usr2); /* nobody wants it now */

  /* A hook that deletes itself from its own call. */
  struct hook_arg c = {0};
  ASSERT_OK(tt__signal_hook_add((int[]){SIGUSR1}, 1, hook_self_del, &c, &c.self_del));
  base = tt__signal_handled(SIGUSR1);
  ASSERT_EQ(raise(SIGUSR1), 0);
  await_handled(SIGUSR1, base + 1);
  ASSERT_EQ(atomic_load(&c.calls), 1);
  ASSERT_PTR_EQ(handler_of(SIGUSR1), SIG_DFL);
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

TEST(signal_hooks) {
  set_default(SIGUSR1);
  set_default(SIGUSR2);
  tt_test_run(hooks_main, NULL, 2);
}

/* A hook left at the end of a run is disabled; its owner frees it afterwards. */
static struct tt__sighook *left_hook;
static int hook_left_main(void *p) {
  ASSERT_OK(tt__signal_hook_add((int[]){SIGUSR1}, 1, hook_fn, p, &left_hook));
  ASSERT(handler_of(SIGUSR1) != SIG_DFL);
  return 0;
}

TEST(signal_hook_outlives_its_run) {
  set_default(SIGUSR1);
  struct hook_arg a = {0};
  tt_test_run(hook_left_main, &a, 2);
  ASSERT_PTR_EQ(handler_of(SIGUSR1), SIG_DFL);
  tt__signal_hook_del(left_hook);
  ASSERT_EQ(atomic_load(&a.calls), 0);
}

/* ---- Runs ----------------------------------------------------------------------------------- */

/* A run that leaves a registration, a hook and a receiver behind for the shut-down. */
static void waiter(void *p) {
  int v;
  tt_chan_recv(p, &v, NULL); /* cancelled at the end of the run */
}

static void noop_hook(void *p, int sig) {
  (void)p;
  (void)sig;
}

static struct tt__sighook *cycle_hook;

static int cycle_main(void *p) {
  tt_chan *ch = tt_chan_make(sizeof(int), 1), *idle = tt_chan_make(sizeof(int), 1);
  ASSERT_OK(tt_signal_notify(ch, (int[]){SIGUSR1, SIGUSR2}, 2));
  ASSERT_OK(tt_signal_notify(idle, (int[]){SIGUSR2}, 1));
  ASSERT_OK(tt__signal_hook_add((int[]){SIGHUP}, 1, noop_hook, NULL, &cycle_hook));
  ASSERT_EQ(raise(SIGUSR1), 0);
  int v = 0;
  ASSERT_OK(tt_chan_recv_dl(ch, &v, NULL, tt_now() + WAIT_LIMIT));
  ASSERT_EQ(v, SIGUSR1);
  ASSERT_OK(tt_go_opt(waiter, idle, &(tt_go_opts){.share = &idle, .nshare = 1}, NULL));
  ASSERT_OK(tt_chan_release(idle));
  return 0;
}

TEST(signal_run_restarts_without_leaking) {
  tt_run_opts o = {.procs = 2, .report_fd = -1};
  set_default(SIGUSR1);
  set_default(SIGUSR2);
  set_default(SIGHUP);
  int64_t live = tt__chan_count_live();
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(tt_test_run_unchecked(cycle_main, NULL, &o,
                                    "each run leaves a signal receiver for shut-down: restarting "
                                    "cleanly after that is the test"),
              0);
    tt__signal_hook_del(cycle_hook);
  }
  int threads = tt_test_proc_count("task"), fds = tt_test_proc_count("fd");
  int maps = tt_test_proc_count("maps");
  int cycles = (int)SCALED(100, 10);
  for (int i = 0; i < cycles; i++) {
    ASSERT_EQ(tt_test_run_unchecked(cycle_main, NULL, &o,
                                    "each run leaves a signal receiver for shut-down: restarting "
                                    "cleanly after that is the test"),
              0);
    tt__signal_hook_del(cycle_hook);
    ASSERT_EQ(tt__chan_count_live(), live);
    ASSERT_PTR_EQ(handler_of(SIGUSR1), SIG_DFL);
    ASSERT_PTR_EQ(handler_of(SIGUSR2), SIG_DFL);
    ASSERT_PTR_EQ(handler_of(SIGHUP), SIG_DFL);
  }
  /* As run_restarts_without_leaking (test_sched.c): a joined thread may stay listed a moment. */
  for (int64_t end = tt_now() + (int64_t)(tt_test_slow() * TT_SEC);
       tt_test_proc_count("task") > threads && tt_now() < end;)
    usleep(1000);
  ASSERT_LE(tt_test_proc_count("task"), threads);
  ASSERT_EQ(tt_test_proc_count("fd"), fds);
#if defined(TT_TEST_SANITIZED)
  (void)maps;
#else
  ASSERT_LE(tt_test_proc_count("maps"), maps + 8);
#endif
}

/* Plain threads that register and unregister while the run ends: whatever they registered is
 * gone when tt_run returns, and they then get TT_ENOTRUNNING. */
struct racer {
  _Atomic int registered;
  _Atomic int refused;
  _Atomic int quit;
};

static void *race_thread(void *p) {
  struct racer *r = p;
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  ASSERT(ch != NULL);
  for (int i = 0; !atomic_load(&r->quit); i++) {
    int err = tt_signal_notify(ch, (int[]){SIGUSR1, SIGUSR2}, 2);
    if (err == 0)
      atomic_fetch_add(&r->registered, 1);
    else if (err == TT_ENOTRUNNING)
      atomic_store(&r->refused, 1);
    else
      ASSERT_OK(err);
    if (i % 2)
      ASSERT_OK(tt_signal_stop(ch));
  }
  ASSERT_OK(tt_signal_stop(ch));
  ASSERT_OK(tt_chan_release(ch));
  return NULL;
}

static int race_main(void *p) {
  struct racer *r = p;
  int64_t end = tt_now() + WAIT_LIMIT;
  while (atomic_load(&r->registered) == 0) {
    ASSERT(tt_now() < end);
    tt_sleep(50 * TT_USEC);
  }
  return 0;
}

TEST(signal_registrations_racing_the_end_of_a_run) {
  set_default(SIGUSR1);
  set_default(SIGUSR2);
  int64_t live = tt__chan_count_live();
  tt_run_opts o = {.procs = 2, .report_fd = -1};
  for (int i = 0; i < (int)SCALED(50, 5); i++) {
    struct racer r = {0};
    pthread_t th[2];
    /* Started before the run, so that they may also meet it before it begins. */
    for (int k = 0; k < 2; k++)
      ASSERT_EQ(pthread_create(&th[k], NULL, race_thread, &r), 0);
    ASSERT_EQ(tt_test_run_opt(race_main, &r, &o), 0);
    /* The run is over: everything they registered is gone, and they are refused. */
    ASSERT_PTR_EQ(handler_of(SIGUSR1), SIG_DFL);
    ASSERT_PTR_EQ(handler_of(SIGUSR2), SIG_DFL);
    atomic_store(&r.refused, 0);
    int64_t end = tt_now() + WAIT_LIMIT;
    while (!atomic_load(&r.refused)) {
      ASSERT(tt_now() < end);
      usleep(50);
    }
    ASSERT_PTR_EQ(handler_of(SIGUSR1), SIG_DFL);
    atomic_store(&r.quit, 1);
    for (int k = 0; k < 2; k++)
      ASSERT_EQ(pthread_join(th[k], NULL), 0);
  }
  ASSERT_EQ(tt__chan_count_live(), live);
}

/* Out of memory, and a dispatcher thread that cannot start: TT_ENOMEM, and nothing changed. */
static int fault_main(void *p) {
  int64_t live = tt__chan_count_live();
  void *usr1 = handler_of(SIGUSR1);
  tt_chan *ch = tt_chan_make(sizeof(int), 1);
  tt__fault_arm(2 /* TT__FAULT_THREAD */, 1);
  ASSERT_ERR(tt_signal_notify(ch, (int[]){SIGUSR1}, 1), TT_ENOMEM);
  ASSERT_PTR_EQ(handler_of(SIGUSR1), usr1);
  int failed = 0;
  for (int nth = 1; nth <= 4; nth++) {
    tt__fault_arm(0 /* TT__FAULT_ALLOC */, nth);
    int err = tt_signal_notify(ch, (int[]){SIGUSR1}, 1);
    tt__fault_arm(0, 0);
    if (err == TT_ENOMEM) {
      failed++;
      ASSERT_PTR_EQ(handler_of(SIGUSR1), usr1);
      continue;
    }
    ASSERT_OK(err);
    ASSERT(handler_of(SIGUSR1) != usr1);
    ASSERT_OK(tt_signal_stop(ch));
  }
  ASSERT_GE(failed, 2);      /* the registration, and its reference */
  roundtrip(SIGUSR1, false); /* all is well afterwards */
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(signal_out_of_memory) { tt_test_run(fault_main, NULL, 1); }
