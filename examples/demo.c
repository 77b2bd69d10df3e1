/* SPDX-License-Identifier: MIT */
/* The runtime at work: a million coroutines spawned on every core, parked, counted by state and
 * wait reason from the registry, then released and counted again. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <tether.h>

static tt_wg started = TT_WG_INIT, release = TT_WG_INIT, finished = TT_WG_INIT;

static void worker(void *arg) {
  tt_wg_done(&started);
  if ((intptr_t)arg % 4 == 0)
    tt_sleep(3600 * TT_SEC); /* a quarter sleep (until cancelled at the end) */
  else
    tt_wg_wait(&release); /* the rest wait for the release */
  tt_wg_done(&finished);
}

static long rss_mib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, rss = 0;
  if (f && fscanf(f, "%ld %ld", &pages, &rss) != 2)
    rss = 0;
  if (f)
    fclose(f);
  return rss * sysconf(_SC_PAGESIZE) >> 20;
}

static void show(const char *when) {
  tt_counts c;
  tt_counts_get(&c);
  printf("%s: %lld coroutines", when, (long long)c.total);
  for (int s = 0; s < TT_STATE_COUNT; s++)
    printf(", %lld %s", (long long)c.by_state[s], tt_state_string(s));
  printf("\n");
  for (int r = 1; r < TT_WAIT_COUNT; r++)
    if (c.by_reason[r])
      printf("    [%s] %lld\n", tt_wait_reason_string(r), (long long)c.by_reason[r]);
}

TT_MAIN(argc, argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  if (n <= 0) {
    fprintf(stderr, "usage: %s [coroutines]\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0); /* in order with the runtime's messages on stderr */
  printf("tether %s: %d workers\n", TT_VERSION_STRING, tt_procs());
  long rss0 = rss_mib();
  int64_t t0 = tt_now();
  tt_wg_add(&started, n);
  tt_wg_add(&finished, n);
  tt_wg_add(&release, 1);
  for (long i = 0; i < n; i++) {
    int r = tt_go(worker, (void *)(intptr_t)i);
    if (r != 0) {
      fprintf(stderr, "tt_go: %s\n", tt_strerror(r));
      return 1;
    }
  }
  tt_wg_wait(&started);
  int64_t t1 = tt_now();
  printf("spawned and parked %ld coroutines in %.0f ms; resident memory %ld MiB -> %ld MiB\n", n,
         (double)(t1 - t0) / 1e6, rss0, rss_mib());
  show("parked");

  /* Release the waiters and watch them finish; the sleepers would sleep for an hour. */
  tt_wg_done(&release);
  while (tt_wg_count(&finished) > n / 4)
    tt_sleep(TT_MSEC);
  show("released the waiters");
  printf("main returns: as in Go, the process exits without waiting for the %ld sleepers\n",
         (n + 3) / 4);
  return 0;
}
