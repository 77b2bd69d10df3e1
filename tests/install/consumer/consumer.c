/* SPDX-License-Identifier: MIT */
/* A program built against an installed tether: spawns a coroutine and waits for it with a wait
 * group, through nothing but <tether.h> and the installed library. */
#include <stdio.h>

#include <tether.h>

struct shared {
  tt_wg wg;
  int ran;
};

static void child(void *arg) {
  struct shared *s = arg;
  s->ran = 1;
  tt_wg_done(&s->wg);
}

static int body(void *arg) {
  struct shared *s = arg;
  int r = tt_wg_add(&s->wg, 1);
  if (r == 0)
    r = tt_go(child, s);
  if (r == 0)
    r = tt_wg_wait(&s->wg);
  return r;
}

int main(void) {
  struct shared s = {TT_WG_INIT, 0};
  int r = tt_run(body, &s, NULL);
  if (r != 0) {
    fprintf(stderr, "consumer: tt_run returned %d (%s)\n", r, tt_strerror(r));
    return 1;
  }
  if (!s.ran) {
    fprintf(stderr, "consumer: the coroutine did not run\n");
    return 1;
  }
  printf("consumer ok\n");
  return 0;
}
