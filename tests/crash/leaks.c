/* SPDX-License-Identifier: MIT */
/* Leak detection seen from outside (test_leak_monitor.c): the global deadlock, the eager
 * verdicts of TT_LEAKCHECK=eager, and the cases that must not be called a deadlock. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <tether.h>

static void receiver(void *arg) {
  int v;
  bool ok;
  tt_chan_recv(arg, &v, &ok);
  tt_chan_release(arg);
}

/* The seed's first leak: a function starts a receiver and returns without sending. */
static __attribute__((noinline)) void leaky_function(void) {
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opt(receiver, ch, &(tt_go_opts){.share = &ch, .nshare = 1}, NULL);
  tt_sleep(TT_MSEC);
  tt_chan_release(ch); /* returns: nobody will ever send */
}

static tt_mutex mu = TT_MUTEX_INIT;

static void lock_forever(void *arg) {
  (void)arg;
  if (tt_mutex_lock(&mu) == 0)
    tt_mutex_unlock(&mu);
}

static void *late_sender(void *arg) {
  usleep(200000);
  int v = 1;
  tt_chan_send(arg, &v); /* untracked: anyone may send */
  return NULL;
}

static void sleeper(void *arg) {
  (void)arg;
  for (;;)
    if (tt_sleep(TT_MSEC) != 0)
      return;
}

TT_MAIN(argc, argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "deadlock") == 0) {
    /* Everyone asleep: a receiver, a locker, and main on a channel of its own. */
    tt_chan *other = tt_chan_make(0, 0);
    tt_go_opt(receiver, other, &(tt_go_opts){.share = &other, .nshare = 1}, NULL);
    tt_mutex_lock(&mu);
    tt_go(lock_forever, NULL);
    tt_chan *ch = tt_chan_make(sizeof(int), 0);
    int v;
    bool ok;
    tt_chan_recv(ch, &v, &ok);
    printf("survived the deadlock\n");
    return 0;
  }
  if (strcmp(mode, "eager") == 0) {
    leaky_function();
    tt_sleep(100 * TT_MSEC); /* the monitor prints meanwhile */
    printf("main returns\n");
    return 0;
  }
  if (strcmp(mode, "partial") == 0) {
    /* A sleeping coroutine keeps the process from a global deadlock, as in Go; the proof still
     * finds the leak (eager mode prints it). */
    tt_go(sleeper, NULL);
    leaky_function();
    tt_sleep(100 * TT_MSEC);
    printf("main returns\n");
    return 0;
  }
  if (strcmp(mode, "thread") == 0) {
    /* Every coroutine asleep, but a plain thread will send: not a deadlock. */
    tt_chan *ch;
    tt_chan_make_opt(&ch, sizeof(int), 0, &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED});
    pthread_t t;
    pthread_create(&t, NULL, late_sender, ch);
    int v;
    bool ok;
    tt_chan_recv(ch, &v, &ok);
    pthread_join(t, NULL);
    printf("woken by the thread\n");
    return 0;
  }
  fprintf(stderr, "unknown mode %s\n", mode);
  return 1;
}
