/* SPDX-License-Identifier: MIT */
/* The global deadlock check still fires while the debug endpoint serves: its threads are the
 * runtime's own, not the program's. With TT_DEBUG_ADDR set the endpoint is started by tt_run;
 * otherwise main starts it. Either way main then waits on a channel nobody will send to. */
#include <stdio.h>
#include <stdlib.h>

#include <tether.h>

TT_MAIN(argc, argv) {
  (void)argc;
  (void)argv;
  if (getenv("TT_DEBUG_ADDR") == NULL && tt_debug_serve("127.0.0.1:0") != 0) {
    printf("tt_debug_serve failed\n");
    return 1;
  }
  char addr[80];
  if (tt_debug_addr(addr, sizeof addr) != 0) {
    printf("not serving\n");
    return 1;
  }
  printf("serving on %s\n", addr);
  fflush(stdout);
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  int v;
  bool ok;
  tt_chan_recv(ch, &v, &ok); /* nobody sends: every coroutine is asleep */
  printf("unreachable\n");
  return 0;
}
