/* SPDX-License-Identifier: MIT */
/* Error paths, reached by fault injection (TT_FAULT, tt__fault_arm): allocation, mapping and
 * thread failures give clear errors and leave the runtime usable. */
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>

#include "test.h"

/* The library's hook for tests (src/util/fault.c); linked statically, so reachable though
 * hidden. Sites: 0 alloc, 1 mmap, 2 thread. */
enum { FAULT_ALLOC, FAULT_MMAP, FAULT_THREAD };

static _Atomic int ran;

static int count_run(void *arg) {
  atomic_fetch_add(&ran, 1);
  return 0;
}

TEST(fault_worker_thread_fails_start_up) {
  setenv("TT_FAULT", "thread:2", 1);
  tt_run_opts o = {.procs = 2};
  ASSERT_ERR(tt_test_run_opt(count_run, NULL, &o), TT_ENOMEM);
  ASSERT_EQ(atomic_load(&ran), 0); /* fn never ran */
  ASSERT(!tt_running());
  unsetenv("TT_FAULT");
  ASSERT_OK(tt_test_run_opt(count_run, NULL, &o));
  ASSERT_EQ(atomic_load(&ran), 1);
}

/* Runs crash/fault_run with TT_FAULT=spec: it must finish cleanly (the run's result 0 or
 * TT_ENOMEM) or die of "out of memory" (a stack or its pool could not be had: fatal, as in Go). */
static void fault_run(const char *spec) {
  char path[4200], env0[64];
  snprintf(path, sizeof path, "%s/crash-fault_run", tt_test_bindir());
  snprintf(env0, sizeof env0, "TT_FAULT=%s", spec);
  char *argv[] = {path, NULL};
  char *env[] = {env0, NULL};
  char *out;
  int st = tt_test_spawn(argv, env, &out);
  bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
               (strstr(out, "result 0\n") || strstr(out, "result -12\n"));
  bool oom = WIFEXITED(st) && WEXITSTATUS(st) == 2 &&
             strstr(out, "fatal error: out of memory: cannot allocate a coroutine stack");
  if (!clean && !oom)
    tt_test_fail(__FILE__, __LINE__, "TT_FAULT=%s: status %#x, output:\n%s", spec, st, out);
  free(out);
}

TEST(fault_every_allocation_and_mapping) {
  /* Each of the first allocations and mappings of a run, in turn, fails. */
  char spec[32];
  int n = (int)SCALED(60, 20);
  for (int i = 1; i <= n; i++) {
    snprintf(spec, sizeof spec, "alloc:%d", i);
    fault_run(spec);
  }
  for (int i = 1; i <= 4; i++) {
    snprintf(spec, sizeof spec, "mmap:%d", i);
    fault_run(spec);
  }
}

TEST(fault_bad_spec_is_rejected) {
  const char *bad[] = {"alloc", "alloc:0", "alloc:x", "disk:1", "mmap:-2"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    setenv("TT_FAULT", bad[i], 1);
    ASSERT_ERR(tt_test_run_opt(count_run, NULL, NULL), TT_EINVAL);
  }
  unsetenv("TT_FAULT");
}

static _Atomic int child_ran;

static void child(void *arg) {
  atomic_fetch_add(&child_ran, 1);
  free(arg);
}

static int spawn_fail_main(void *p) {
  /* The name's copy fails: the spawn fails, the child never runs, arg stays the caller's. */
  char *arg = malloc(16);
  tt_go_opts o = {.name = "named"};
  tt__fault_arm(FAULT_ALLOC, 1);
  ASSERT_ERR(tt_go_opt(child, arg, &o, NULL), TT_ENOMEM);
  /* The label set's allocation fails. */
  tt_label l = {"k", "v"};
  o = (tt_go_opts){.labels = &l, .nlabels = 1};
  tt__fault_arm(FAULT_ALLOC, 1);
  ASSERT_ERR(tt_go_opt(child, arg, &o, NULL), TT_ENOMEM);
  tt__fault_arm(FAULT_ALLOC, 1);
  ASSERT_ERR(tt_label_set("k", "v"), TT_ENOMEM);
  tt__fault_arm(FAULT_ALLOC, 1);
  ASSERT_ERR(tt_name_set("n"), TT_ENOMEM);
  tt_sleep(TT_MSEC);
  ASSERT_EQ(atomic_load(&child_ran), 0);
  ASSERT_EQ(tt_num_coroutines(), 1);
  /* Without faults the same calls work, and the child frees arg. */
  ASSERT_OK(tt_go_opt(child, arg, &o, NULL));
  while (tt_num_coroutines() > 1)
    tt_sleep(TT_MSEC);
  ASSERT_EQ(atomic_load(&child_ran), 1);
  return 0;
}

TEST(fault_spawn_allocations) { tt_test_run(spawn_fail_main, NULL, 1); }

static int timer_fail_main(void *p) {
  /* The first sleep on a worker grows its timer heap: when that fails, the sleep says so. */
  tt__fault_arm(FAULT_ALLOC, 1);
  ASSERT_ERR(tt_sleep(TT_MSEC), TT_ENOMEM);
  tt_wg wg = TT_WG_INIT;
  tt_wg_add(&wg, 1);
  tt__fault_arm(FAULT_ALLOC, 1);
  ASSERT_ERR(tt_wg_wait_dl(&wg, tt_now() + TT_SEC), TT_ENOMEM); /* fails before it waits */
  ASSERT_OK(tt_sleep(TT_MSEC));
  ASSERT_ERR(tt_wg_wait_dl(&wg, tt_now() + TT_MSEC), TT_ETIMEDOUT);
  ASSERT_OK(tt_wg_done(&wg));
  ASSERT_OK(tt_wg_wait(&wg));
  return 0;
}

TEST(fault_timer_heap_allocation) { tt_test_run(timer_fail_main, NULL, 1); }

TEST(crash_stack_mapping_fails) {
  /* No memory for a coroutine stack is fatal, as Go's out-of-memory is: a clear message, exit 2. */
  char path[4200];
  snprintf(path, sizeof path, "%s/crash-main_exit", tt_test_bindir());
  char *argv[] = {path, NULL};
  char *env[] = {"TT_FAULT=mmap:1", NULL};
  char *out;
  int st = tt_test_spawn(argv, env, &out);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 2)
    tt_test_fail(__FILE__, __LINE__, "status %#x, output:\n%s", st, out);
  ASSERT_CONTAINS(out, "fatal error: out of memory: cannot allocate a coroutine stack");
  free(out);
}
