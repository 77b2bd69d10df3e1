/* SPDX-License-Identifier: MIT */
/* Overflows a coroutine's stack, to die with "fatal error: stack overflow". argv[1] says how:
 * "guarded" recurses into the guard page; "unguarded" (run with TT_DEBUG=stackguard=0) recurses
 * past the stack's end while switching at every level; "canary" (TT_DEBUG=stackguard=0,
 * stackcanary=1) overflows into the red zone, returns, and only then switches. */
#include <stdio.h>
#include <string.h>

#include <tether.h>

#define STACK (64 << 10)

static const char *mode;
static char *top;

static int deep(int n) {
  volatile char frame[1024];
  for (size_t i = 0; i < sizeof frame; i++) /* not memset: no library call on a broken stack */
    frame[i] = (char)n;
  if (mode[0] == 'u')
    tt_yield();
  if (mode[0] == 'c' && (char *)frame < top - STACK - 512)
    return frame[0]; /* into the red zone: come back up before switching */
  return deep(n + 1) + frame[1];
}

void overflower(void *arg) {
  char here;
  top = &here;
  deep(0);
  tt_yield(); /* the canary mode is caught here */
  printf("survived\n");
}

int body(int argc, char **argv);
int body(int argc, char **argv) {
  if (argc != 2)
    return 64;
  mode = argv[1];
  tt_go_opts o = {.name = "deep-diver", .stack_size = STACK};
  tt_wg never = TT_WG_INIT;
  tt_wg_add(&never, 1);
  if (tt_go_opt(overflower, NULL, &o, NULL) != 0)
    return 65;
  tt_wg_wait(&never);
  return 0;
}

int main(int argc, char **argv) { return tt_main(argc, argv, body); }
