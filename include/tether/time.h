/* SPDX-License-Identifier: MIT */
/* Time: the monotonic clock and sleeping. Deadlines are absolute tt_now() nanoseconds. */
#ifndef TETHER_TIME_H
#define TETHER_TIME_H

#include "chan.h"
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

/* ---- Timers ------------------------------------------------------------------------------------
 * A timer is a channel (elements: the int64_t tt_now() time it fired, capacity 1) that a worker's
 * timer heap sends on. The caller holds the channel's one reference: receive from it (or select
 * on it), stop or reset it with tt_timer_stop/tt_timer_reset, and release it with tt_chan_release,
 * which also stops it (an unreceived tt_after is freed then, never left behind). As in Go 1.23,
 * stopping or resetting discards a time sent and not yet received. Timers fire on the worker that
 * made them (a random one for plain threads), driven by its heap: stopping and resetting cost
 * O(log n). Timers belong to one run: after tt_run returns they never fire again. */

/* A channel that receives the time once, d ns from now (d <= 0: at once). NULL when the runtime
 * is not running or memory is short. Calls: never blocks; any thread while the runtime runs. */
TT_EXTERN tt_chan *tt_after(int64_t d);
/* tt_after with the error: 0 and the channel in *out, TT_EINVAL (NULL out), TT_ENOTRUNNING,
 * TT_ENOMEM. (Go's time.NewTimer.) Calls: as tt_after. */
TT_EXTERN int tt_timer_make(tt_chan **out, int64_t d);
/* A channel that receives the time every period ns (Go's time.NewTicker); a tick the receiver
 * has not taken when the next is due is dropped. TT_EINVAL for period <= 0 (Go panics).
 * Calls: as tt_after. */
TT_EXTERN int tt_ticker_make(tt_chan **out, int64_t period);
/* Runs fn(arg) in a new coroutine d ns from now (Go's time.AfterFunc); the coroutine's creator is
 * the caller. With out, *out receives a handle (a channel that never delivers) for
 * tt_timer_stop/tt_timer_reset, released with tt_chan_release; with out NULL the timer frees
 * itself once it has fired. TT_EINVAL (NULL fn), TT_ENOTRUNNING, TT_ENOMEM. Calls: as tt_after. */
TT_EXTERN int tt_after_func(tt_chan **out, int64_t d, void (*fn)(void *arg), void *arg);
/* tt_after_func whose coroutine gets references to the nshare channels in share: the timer holds
 * one to each (copied from the caller's, who must hold one to each tracked channel: TT_EPERM
 * otherwise) until it fires, and they become the coroutine's (released when it exits); a timer
 * freed unfired releases them. A timer reset after firing starts its next coroutine without any.
 * Calls: as tt_after. */
TT_EXTERN int tt_after_func_opt(tt_chan **out, int64_t d, void (*fn)(void *arg), void *arg,
                                tt_chan *const *share, size_t nshare);
/* Stops the timer: returns 1 if it was armed (it will not fire), 0 if it had already fired or
 * been stopped; TT_EINVAL (not a timer channel), TT_EPERM. Calls: never blocks; any thread. */
TT_EXTERN int tt_timer_stop(tt_chan *timer);
/* Re-arms the timer to fire d ns from now (a ticker: every d ns from now on; d must be > 0).
 * Returns 1 if it had been armed, 0 if not; TT_EINVAL, TT_EPERM, TT_ENOTRUNNING (the run that made
 * it is over). Calls: never blocks; any thread. */
TT_EXTERN int tt_timer_reset(tt_chan *timer, int64_t d);

TT_END_DECLS

#endif
