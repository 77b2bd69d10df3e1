/* SPDX-License-Identifier: MIT */
/* Stacks: sizes, depth, and a million parked coroutines within the kernel's mapping limit. */
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

/* Recurses until `bytes` of stack below top are in use (frames vary in size between builds:
 * sanitizers add red zones). */
static int recurse(const char *top, size_t bytes) {
  volatile char frame[1024];
  frame[0] = 1;
  if ((size_t)(top - (const char *)frame) >= bytes)
    return frame[0];
  return recurse(top, bytes) + frame[0];
}

struct depth_arg {
  int kb;
  tt_wg *wg;
  _Atomic int ok;
};

static void dig(void *p) {
  struct depth_arg *a = p;
  char top = 0;
  recurse(&top, (size_t)a->kb << 10);
  atomic_fetch_add(&a->ok, 1);
  tt_wg_done(a->wg);
}

static int depth_main(void *p) {
  tt_wg wg = TT_WG_INIT;
  /* 200 KiB of frames on the default 256 KiB stack, and 900 KiB on a 1 MiB one. */
  struct depth_arg a = {200, &wg, 0}, b = {900, &wg, 0};
  tt_wg_add(&wg, 2);
  ASSERT_OK(tt_go(dig, &a));
  tt_go_opts big = {.stack_size = 1 << 20};
  ASSERT_OK(tt_go_opt(dig, &b, &big, NULL));
  ASSERT_OK(tt_wg_wait(&wg));
  ASSERT_EQ(atomic_load(&a.ok) + atomic_load(&b.ok), 2);
  return 0;
}

TEST(stack_depth_default_and_custom_sizes) { tt_test_run(depth_main, NULL, 2); }

static int size_info(const tt_coro_info *ci, void *arg) {
  if (ci->id != 1)
    *(size_t *)arg = ci->stack_size;
  return 0;
}

static void park_forever(void *p) { tt_wg_wait(p); }

static int env_size_main(void *p) {
  tt_wg wg = TT_WG_INIT;
  tt_wg_add(&wg, 1);
  ASSERT_OK(tt_go(park_forever, &wg));
  while (tt_num_coroutines() < 2)
    tt_yield();
  tt_sleep(TT_MSEC);
  size_t size = 0;
  ASSERT_OK(tt_coro_foreach(size_info, &size));
  ASSERT_EQ(size, 64 << 10);
  tt_wg_done(&wg);
  return 0;
}

TEST(stack_size_from_environment) {
  setenv("TT_STACK_SIZE", "64k", 1);
  tt_test_run(env_size_main, NULL, 2);
}

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, rss = 0;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
    abort();
  fclose(f);
  return rss * sysconf(_SC_PAGESIZE);
}

static long max_map_count(void) {
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  long v = 65530;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = 65530;
    fclose(f);
  }
  return v;
}

struct parked {
  tt_wg started, release, exited;
};

static void parked_fn(void *p) {
  struct parked *pk = p;
  tt_wg_done(&pk->started);
  tt_wg_wait(&pk->release);
  tt_wg_done(&pk->exited);
}

static int million_main(void *p) {
  int64_t n = SCALED(1000000, 2000);
  struct parked *pk = calloc(1, sizeof *pk);
  tt_wg_add(&pk->started, n);
  tt_wg_add(&pk->release, 1);
  tt_wg_add(&pk->exited, n);
  long rss0 = rss_bytes();
  for (int64_t i = 0; i < n; i++)
    ASSERT_OK(tt_go(parked_fn, pk));
  ASSERT_OK(tt_wg_wait(&pk->started));
  long rss1 = rss_bytes();
  int maps = tt_test_proc_count("maps");
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  ASSERT_EQ(c.by_reason[TT_WAIT_WAITGROUP_WAIT], n);
  ASSERT_EQ(c.total, n + 1);
  double per = (double)(rss1 - rss0) / (double)n;
  printf("%lld parked: %.0f bytes each, %d mappings (limit %ld)\n", (long long)n, per, maps,
         max_map_count());
  ASSERT_LT(maps, max_map_count());
  if (n >= 1000000)
    ASSERT(per < 6000); /* one page of stack and a descriptor (unscaled runs only: sanitizers add
                           shadow memory) */
  tt_wg_done(&pk->release);
  ASSERT_OK(tt_wg_wait(&pk->exited));
  free(pk);
  return 0;
}

TEST(million_parked_coroutines) {
  tt_run_opts o = {.report_fd = -1};
  ASSERT_EQ(tt_test_run_opt(million_main, NULL, &o), 0);
}
