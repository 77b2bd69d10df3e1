/* SPDX-License-Identifier: MIT */
/* Time: the monotonic clock and sleeping. Deadlines are absolute tt_now() nanoseconds. */
#ifndef TETHER_TIME_H
#define TETHER_TIME_H

#include "common.h"

TT_BEGIN_DECLS

/* Monotonic time in nanoseconds (CLOCK_MONOTONIC). Calls: never blocks; any thread;
 * signal-safe. */
TT_EXTERN int64_t tt_now(void);

/* Suspends the caller for ns nanoseconds (wait reason "sleep"); ns <= 0 returns at once.
 * Returns 0, TT_ECANCELED when the caller is cancelled while sleeping, TT_ESHUTDOWN (plain thread
 * at shut-down), TT_ENOTRUNNING (plain thread, runtime not running).
 * Calls: blocks; cancel point; plain threads (block on a futex); not from signal handlers. */
TT_EXTERN int tt_sleep(int64_t ns);

/* Suspends the caller until tt_now() >= deadline (TT_FOREVER: until cancelled). As tt_sleep. */
TT_EXTERN int tt_sleep_until(int64_t deadline);

TT_END_DECLS

#endif
