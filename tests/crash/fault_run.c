/* SPDX-License-Identifier: MIT */
/* A small workload for fault injection: run under TT_FAULT=alloc:N (or mmap:N), it must either
 * finish (printing the run's result, 0 or TT_ENOMEM, and what failed along the way) or die with
 * "fatal error: out of memory" — never crash, hang or report anything else. */
#include <stdio.h>

#include <tether.h>

static tt_wg wg = TT_WG_INIT;

static void worker(void *arg) {
  tt_sleep(TT_USEC * (int64_t)((intptr_t)arg % 5));
  tt_label_set("phase", "two");
  tt_wg_done(&wg);
}

static int body(void *arg) {
  int failures = 0;
  tt_label l = {"job", "fault"};
  for (intptr_t i = 0; i < 2000; i++) {
    tt_go_opts o = {
        .name = i % 2 ? "odd" : NULL, .labels = i % 3 ? &l : NULL, .nlabels = i % 3 ? 1 : 0};
    tt_wg_add(&wg, 1);
    int r = tt_go_opt(worker, (void *)i, &o, NULL);
    if (r != 0) {
      if (r != TT_ENOMEM) {
        printf("unexpected spawn error %d\n", r);
        return 1;
      }
      failures++;
      tt_wg_done(&wg);
    }
  }
  int r = tt_wg_wait_dl(&wg, tt_now() + 10 * TT_SEC);
  if (r != 0 && r != TT_ENOMEM) {
    printf("unexpected wait error %d\n", r);
    return 1;
  }
  printf("spawn failures %d\n", failures);
  return 0;
}

int main(void) {
  tt_run_opts o = {.procs = 2};
  int r = tt_run(body, NULL, &o);
  printf("result %d\n", r);
  return r == 0 || r == TT_ENOMEM ? 0 : 1;
}
