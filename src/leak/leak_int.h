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

#endif
