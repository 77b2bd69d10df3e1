/* SPDX-License-Identifier: MIT */
/* Leak detection's internal interfaces, shared by the proof (proof.c), the test checker
 * (verify.c), the exit check and the suspects (suspect.c). Never installed. */
#ifndef TT_LEAK_INT_H
#define TT_LEAK_INT_H

#include "internal.h"
#include "tether/leak.h"

/* Runs the proof now (tt_leak_check without a report): every coroutine's co->verdict is then
 * current. Returns the number of leaked coroutines, or tt_leak_check's errors. */
int tt__leak_refresh(void);

/* Whether a wait of this reason can end by itself or through an object with no owner to reason
 * about (R3: a root; the proof reasons about channel, select, nil, lock and group waits only). */
bool tt__leak_reason_is_root(int reason);

/* The pattern the last check named for coroutine id (TT_PATTERN_NONE when not proven). */
int tt__leak_pattern_of(tt_id id);

/* The verdict table (proof.c): marks id's verdict as printed (true the first time); records the
 * operation blamed for it (eager mode). */
bool tt__leak_mark_reported(tt_id id);
void tt__leak_set_cause(tt_id id, const char *op, tt_id by, const uintptr_t *pcs, size_t n);

/* Writes all n bytes at p to fd, retrying short writes and EINTR; false on an error. */
bool tt__leak_write_all(int fd, const char *p, size_t n);

/* The monitor (monitor.c), started and stopped by tt_run. */
void tt__monitor_start(void);
void tt__monitor_stop(void);

/* The exit check (exit.c): with TT_LEAKCHECK >= 1, called by coroutine 1 when the program's
 * function has returned, before the shut-down; reports the live non-daemon coroutines to
 * report_fd and returns true if there were any (false when the check is off). */
bool tt__leak_exit_check(void);

/* The suspects' default thresholds (suspect.c), set at start-up by knobs.c from
 * TT_DEBUG=suspectcount=K,suspectage=T (tt__leak_suspect_defaults first). */
extern uint64_t tt__suspect_count;
extern int64_t tt__suspect_age;
void tt__leak_suspect_defaults(void);

/* Writes a duration as a person reads it ("1.234s", "12ms", "2m3.000s"). */
struct tt__sink;
void tt__leak_put_duration(struct tt__sink *k, int64_t ns);

/* Writes a suspects report as tt_suspect_report_write does, through k (the debug endpoint streams
 * it). Does not flush k. Returns 0 or the sink's error. */
int tt__suspect_report_sink(const tt_suspect_report *r, struct tt__sink *k);

/* When the current context of co was cancelled (tt_now() clock), or 0 when it is not cancelled
 * (src/ctx/ctx.c). co is the caller, or is held still by the caller (its scan bit). */
int64_t tt__ctx_cancelled_at(const tt__coro *co);

#endif
