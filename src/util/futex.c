/* SPDX-License-Identifier: MIT */
/* Futex waits and wakes, and the slow path of the internal lock. */
#include <errno.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

int tt__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t deadline) {
  struct timespec ts, *tsp = NULL;
  if (deadline >= 0) {
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, so a retry after EINTR does not
     * stretch the wait. */
    ts.tv_sec = deadline / 1000000000;
    ts.tv_nsec = deadline % 1000000000;
    tsp = &ts;
  }
  long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val, tsp,
                   NULL, FUTEX_BITSET_MATCH_ANY);
  if (r != 0 && errno == ETIMEDOUT)
    return TT_ETIMEDOUT;
  return 0;
}

void tt__futex_wake(_Atomic uint32_t *addr, int n) {
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}

void tt__spin_step(uint32_t *spins) {
  if (++*spins < 64)
    tt__cpu_relax();
  else
    sched_yield();
}

void tt__lock_slow(tt__lock *l) {
  /* Spin briefly: critical sections are a few dozen instructions, and a futex round trip costs
   * microseconds. */
  for (int i = 0; i < 100; i++) {
    uint32_t z = 0;
    if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_weak_explicit(&l->v, &z, 1, memory_order_acquire,
                                              memory_order_relaxed))
      return;
    tt__cpu_relax();
  }
  /* Mark the lock contended (2) and sleep until it is released; whoever takes it from here on
   * takes it as 2, since other sleepers may remain. acquire: as in tt__lock_acquire. */
  while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
    tt__futex_wait(&l->v, 2, -1);
}
