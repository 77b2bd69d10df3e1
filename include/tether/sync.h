/* SPDX-License-Identifier: MIT */
/* Coroutine-aware synchronisation. Every type is an opaque, stack-allocatable struct with a static
 * initializer; each works between coroutines on any workers and plain threads. */
#ifndef TETHER_SYNC_H
#define TETHER_SYNC_H

#include "common.h"

TT_BEGIN_DECLS

/* A wait group (Go's sync.WaitGroup): a counter that tt_wg_wait waits to reach zero.
 * Initialise with TT_WG_INIT or tt_wg_init; no destructor is needed once no one waits. */
typedef struct tt_wg {
  _Alignas(8) unsigned char opaque_[48];
} tt_wg;

/* clang-format off */
#define TT_WG_INIT {{0}}
/* clang-format on */

/* Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN void tt_wg_init(tt_wg *wg);

/* Adds delta (which may be negative) to the counter; when it reaches zero every waiter wakes.
 * Returns 0, or TT_EINVAL (the counter would go negative, or above 2^31 - 1, as Go's; it is left
 * unchanged; Go panics). A Wait that returns may free the wait group at once, as may a Done.
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_wg_add(tt_wg *wg, int64_t delta);

/* tt_wg_add(wg, -1). Calls: as tt_wg_add. */
TT_EXTERN int tt_wg_done(tt_wg *wg);

/* Waits until the counter is zero (wait reason "sync.WaitGroup.Wait"). Returns 0, or
 * TT_ECANCELED, TT_ESHUTDOWN, TT_ENOTRUNNING (plain thread, runtime not running, counter not zero).
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_wg_wait(tt_wg *wg);

/* tt_wg_wait with a deadline: TT_ETIMEDOUT when it passes first (the timed wait that Go builds
 * from a goroutine and a select, without the goroutine that leaks). Calls: as tt_wg_wait. */
TT_EXTERN int tt_wg_wait_dl(tt_wg *wg, int64_t deadline);

/* The counter's current value (TT_EINVAL for a NULL wg). Calls: never blocks; any thread; not from
 * signal handlers. */
TT_EXTERN int64_t tt_wg_count(tt_wg *wg);

TT_END_DECLS

#endif
