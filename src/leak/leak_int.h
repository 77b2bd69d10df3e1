/* SPDX-License-Identifier: MIT */
/* Leak detection's internal interfaces, shared by the proof (proof.c), the test checker
 * (verify.c), the exit check and the suspects (suspect.c). Never installed. */
#ifndef TT_LEAK_INT_H
#define TT_LEAK_INT_H

#include "internal.h"
#include "tether/leak.h"

/* Runs the proof now (tt_leak_check without a report): every coroutine's co->verdict is then
 * current. Returns the number of leaked coroutines, or tt_leak_check's errors (TT_ENOSYS until
 * the proof engine is built in). */
int tt__leak_refresh(void);

/* The pattern the last check named for coroutine id (TT_PATTERN_NONE when not proven). */
int tt__leak_pattern_of(tt_id id);

/* The verdict table (proof.c): marks id's verdict as printed (true the first time); records the
 * operation blamed for it (eager mode). */
bool tt__leak_mark_reported(tt_id id);
void tt__leak_set_cause(tt_id id, const char *op, tt_id by, const uintptr_t *pcs, size_t n);

/* The monitor (monitor.c), started and stopped by tt_run. */
void tt__monitor_start(void);
void tt__monitor_stop(void);

#endif
