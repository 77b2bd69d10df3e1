/* SPDX-License-Identifier: MIT */
/* The program tests/gdb/run.sh opens in gdb: coroutines parked in known places, then either a core
 * dump or a pause for gdb to attach. Built twice, against the static and the shared library.
 *
 *   target core   abort() from coroutine 1 (SIGABRT's default action, RLIMIT_CORE raised)
 *   target live   print "ready <pid>" and wait in pause() until killed
 *
 * Coroutines, in spawn order (so their ids are fixed):
 *   1 "main"      running: it aborts or pauses on its worker
 *   2 "receiver"  f: a receive on a channel nobody sends to     (chan receive)
 *   3 "sleeper"   g: a one-hour sleep                           (sleep)
 *   4 (no name)   h: a mutex that coroutine 1 holds             (sync.Mutex.Lock)
 * Each body goes through a helper of its own (f_inner etc.), so the backtrace has a known chain. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <tether.h>

static tt_chan *never;
static tt_mutex mu;
static volatile int sink;

#define KEEP __attribute__((noinline, noipa))

KEEP static void f_inner(void) {
  int v = 0;
  bool ok;
  tt_chan_recv(never, &v, &ok); /* f_inner: parked here */
  sink += v;
}
KEEP static void f(void *arg) {
  (void)arg;
  f_inner();
  sink++;
}

KEEP static void g_inner(void) {
  tt_sleep(3600 * (int64_t)1000000000); /* g_inner: parked here */
  sink++;
}
KEEP static void g(void *arg) {
  (void)arg;
  g_inner();
  sink++;
}

KEEP static void h_inner(void) {
  tt_mutex_lock(&mu); /* h_inner: parked here */
  sink++;
  tt_mutex_unlock(&mu);
}
KEEP static void h(void *arg) {
  (void)arg;
  h_inner();
  sink++;
}

static int64_t waiting(const tt_counts *c, int reason) { return c->by_reason[reason]; }

static int main_fn(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "core") != 0 && strcmp(mode, "live") != 0) {
    fprintf(stderr, "usage: %s core|live\n", argv[0]);
    return 2;
  }
  tt_chan_opts untracked = {.mode = TT_CHAN_UNTRACKED};
  if (tt_chan_make_opt(&never, sizeof(int), 0, &untracked) != 0)
    never = NULL;
  tt_mutex_init(&mu);
  tt_mutex_lock(&mu);
  tt_go_opts named_f = {.name = "receiver"}, named_g = {.name = "sleeper"};
  if (never == NULL || tt_go_opt(f, NULL, &named_f, NULL) != 0 ||
      tt_go_opt(g, NULL, &named_g, NULL) != 0 || tt_go(h, NULL) != 0) {
    fprintf(stderr, "target: set-up failed\n");
    return 1;
  }
  /* Until all three are parked. */
  for (int i = 0;; i++) {
    tt_counts c;
    if (tt_counts_get(&c) == 0 && waiting(&c, TT_WAIT_CHAN_RECV) == 1 &&
        waiting(&c, TT_WAIT_SLEEP) == 1 && waiting(&c, TT_WAIT_MUTEX_LOCK) == 1)
      break;
    if (i > 10000) {
      fprintf(stderr, "target: the coroutines never parked (%lld %lld %lld)\n",
              (long long)waiting(&c, TT_WAIT_CHAN_RECV), (long long)waiting(&c, TT_WAIT_SLEEP),
              (long long)waiting(&c, TT_WAIT_MUTEX_LOCK));
      return 1;
    }
    tt_sleep(TT_MSEC); /* a coroutine sleep: the spawned ones may be queued on this worker */
  }
  if (strcmp(mode, "core") == 0) {
    struct rlimit rl;
    getrlimit(RLIMIT_CORE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_CORE, &rl);
    signal(SIGABRT, SIG_DFL); /* the runtime's crash handler would exit instead of dumping */
    printf("aborting %d\n", (int)getpid());
    fflush(stdout);
    abort();
  }
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  for (;;)
    pause(); /* coroutine 1 stays running on its worker until the test kills the process */
}

int main(int argc, char **argv) { return tt_main(argc, argv, main_fn); }
