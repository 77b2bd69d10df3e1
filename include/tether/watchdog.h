/* SPDX-License-Identifier: MIT */
/* The watchdog: Go's sysmon for tether. A thread of the runtime that notices, without stopping
 * anything, a coroutine that has run longer than a threshold without yielding, one whose worker is
 * stuck in a blocking system call, and one that keeps passing cancellation points long after it
 * was cancelled. Each is reported once (per run of the coroutine, or per coroutine for the last)
 * through a callback, the log (the run's report descriptor) and /metrics. See docs/DIAGNOSTICS.md,
 * "The watchdog".
 *
 * It costs nothing while the process is idle: it sleeps until a worker wakes, samples every 10 ms
 * while any worker is awake, and sleeps again when all are asleep. */
#ifndef TETHER_WATCHDOG_H
#define TETHER_WATCHDOG_H

#include "common.h"

TT_BEGIN_DECLS

/* What a report is about. */
typedef enum tt_watchdog_kind {
  /* The coroutine has run for `duration` without yielding (no switch on its worker): a busy
   * loop, a long computation that should be split or handed to tt_blocking. */
  TT_WATCHDOG_LONG_RUN = 1,
  /* The same, with the worker thread asleep in the kernel (its /proc state S or D, not R): a
   * blocking system call made directly (read() on a pipe) that should go through tt_blocking or
   * tether's I/O. */
  TT_WATCHDOG_BLOCKING_SYSCALL = 2,
  /* The coroutine was cancelled (its context, or the runtime's shut-down) and has reached
   * TT_WATCHDOG_CANCEL_WAKES more cancellation points more than the threshold after the first
   * one it was refused: a loop that ignores TT_ECANCELED. Reported once per coroutine. */
  TT_WATCHDOG_IGNORES_CANCEL = 3,
} tt_watchdog_kind;

#define TT_WATCHDOG_CANCEL_WAKES 3
#define TT_WATCHDOG_DEFAULT_THRESHOLD (100 * TT_MSEC)
#define TT_WATCHDOG_MAX_STACK 64

/* One report. Its pointers are valid during the callback only. */
typedef struct tt_watchdog_report {
  tt_watchdog_kind kind;
  tt_id id;               /* the coroutine */
  tt_id parent;           /* its spawner (0: a plain thread) */
  const char *name;       /* its name (cut to 63 bytes), or NULL */
  int worker;             /* the worker it runs on */
  int64_t duration;       /* ns: how long it has run without yielding (at least; sampled every
                           * 10 ms), or, for IGNORES_CANCEL, since its first refused cancellation
                           * point */
  uint64_t wakes;         /* IGNORES_CANCEL: refused cancellation points after the grace; else 0 */
  const void *create_pc;  /* where it was spawned (a return address into the spawner) */
  const uintptr_t *stack; /* its stack, innermost first; each a return address (the call is at
                           * pc - 1); tether's own frames are included */
  size_t nstack;          /* entries in stack (0: it could not be captured) */
} tt_watchdog_report;

/* Receives every report, on the watchdog's thread, after the log line is written. It may call
 * any tether function that plain threads may call and that does not block for long (it delays
 * the next sample): tt_chan_try_send, tt_counts_get, tt_go, tt_ctx_cancel, tt_watchdog_*; not
 * blocking sends or tt_run. Registering a new callback (or NULL) from another thread waits for a
 * call in progress to return, so that after tt_watchdog_set_callback the old one is not running.
 * The callback outlives runs of the runtime (set it before tt_run to see every report). */
typedef void (*tt_watchdog_fn)(const tt_watchdog_report *report, void *arg);

/* Sets (or, with fn NULL, removes) the callback. 0 always.
 * Calls: never blocks except to wait for a call of the old callback in progress; any thread
 * (from inside the callback: replaces it without waiting); not from signal handlers. */
TT_EXTERN int tt_watchdog_set_callback(tt_watchdog_fn fn, void *arg);

/* Sets the threshold in ns: how long a coroutine may run without yielding before it is reported,
 * and the grace given to a cancelled coroutine. 0 turns the watchdog off (its thread then sleeps
 * until the threshold is set again). Set in code it wins over TT_DEBUG=watchdog=DURATION (or
 * =0, =off), which wins over the default, TT_WATCHDOG_DEFAULT_THRESHOLD; it takes effect at once
 * in a running runtime and lasts across runs. Returns 0, or TT_EINVAL for a negative ns.
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_watchdog_set_threshold(int64_t ns);

/* The threshold in force (ns; 0: off). Calls: never blocks; any thread. */
TT_EXTERN int64_t tt_watchdog_threshold(void);

/* Reports made since the process started, by kind (the /metrics family
 * tether_watchdog_reports_total{kind}). */
typedef struct tt_watchdog_counts {
  uint64_t long_run, blocking_syscall, ignores_cancel;
} tt_watchdog_counts;

/* Fills *out: 0, or TT_EINVAL for NULL. Calls: never blocks; any thread; not from signal
 * handlers. */
TT_EXTERN int tt_watchdog_counts_get(tt_watchdog_counts *out);

/* "long_run", "blocking_syscall", "ignores_cancel" (the metrics' label values), or "unknown". */
TT_EXTERN const char *tt_watchdog_kind_string(int kind);

TT_END_DECLS

#endif
