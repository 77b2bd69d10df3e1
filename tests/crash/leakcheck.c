/* SPDX-License-Identifier: MIT */
/* TT_LEAKCHECK=1 at the end of TT_MAIN: argv[1] "leak" leaves a receiver nobody will send to and
 * a sleeper behind (and a daemon, never reported); "clean" releases its workers as main returns
 * (they are still runnable then: the check lets them finish); "daemon" leaves only a daemon. */
#include <stdio.h>
#include <string.h>

#include <tether.h>

static tt_wg never = TT_WG_INIT;

static __attribute__((noinline)) void stuck_receiver(void *arg) {
  tt_chan *ch = arg;
  int v;
  tt_chan_recv(ch, &v, NULL);
  tt_chan_release(ch);
}

static __attribute__((noinline)) void long_sleeper(void *unused) {
  (void)unused;
  tt_sleep(3600 * TT_SEC);
  __asm__ volatile(""); /* not a tail call: the frame stays on the stack */
}

static void a_daemon(void *unused) {
  (void)unused;
  tt_wg_wait(&never);
}

static void worker(void *arg) {
  tt_chan *ch = arg;
  int v;
  while (tt_chan_recv(ch, &v, NULL) == 0)
    ;
  tt_chan_release(ch);
}

TT_MAIN(argc, argv) {
  const char *mode = argc > 1 ? argv[1] : "leak";
  tt_wg_add(&never, 1);
  tt_go_opt(a_daemon, NULL, &(tt_go_opts){.daemon = 1, .name = "janitor"}, NULL);
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  if (strcmp(mode, "leak") == 0) {
    tt_go_opt(stuck_receiver, ch, &(tt_go_opts){.share = &ch, .nshare = 1, .name = "rx"}, NULL);
    tt_go(long_sleeper, NULL);
    tt_sleep(5 * TT_MSEC);
  } else if (strcmp(mode, "clean") == 0) {
    for (int i = 0; i < 8; i++)
      tt_go_opt(worker, ch, &(tt_go_opts){.share = &ch, .nshare = 1}, NULL);
    for (int i = 0; i < 100; i++)
      tt_chan_send(ch, &i);
    tt_chan_close(ch); /* the workers are woken, not finished, when main returns */
  }
  tt_chan_release(ch);
  printf("main returns 0 (%s)\n", mode);
  fflush(stdout);
  return 0;
}
