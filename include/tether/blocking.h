/* SPDX-License-Identifier: MIT */
/* Blocking foreign code off the scheduler: tt_blocking runs a function on a bounded pool of plain
 * threads while the calling coroutine waits, parked, its worker free to run other coroutines
 * (Tokio's spawn_blocking; Go's "syscall" state). See docs/BLOCKING.md. */
#ifndef TETHER_BLOCKING_H
#define TETHER_BLOCKING_H

#include "common.h"

TT_BEGIN_DECLS

/* The function a blocking call runs: any C code that may block its thread (file I/O,
 * getaddrinfo, a database client). It runs on a pool thread, a plain thread: it may call what
 * plain threads may call (channel operations block that pool thread, never a worker), and
 * tt_self() is 0 there. Its result is handed back through tt_blocking's *result. */
typedef intptr_t (*tt_blocking_fn)(void *arg);

/* Options for tt_blocking_opt. Zero means "the default" for every field. */
typedef struct tt_blocking_opts {
  /* Absolute tt_now() deadline for the caller's wait; 0 or TT_FOREVER: none. When it passes
   * first the call returns TT_ETIMEDOUT and the job is abandoned (see below). */
  int64_t deadline;
  /* Called exactly once for a job whose result the caller did not get (every return other than
   * 0 and TT_EINVAL), so that arg can be released there:
   *   ran == 0: fn never ran and never will (the job was still queued, or the call failed before
   *             queuing it); called in the caller, before tt_blocking_opt returns;
   *   ran == 1: fn ran and returned `result`; called in the caller before it returns when fn had
   *             already finished, otherwise on the pool thread as soon as fn returns.
   * At shut-down (tt_run returning) the jobs of coroutines that were discarded without returning
   * are abandoned too: a queued one on the thread that called tt_run (ran == 0), a running one on
   * its pool thread when fn returns, which may be after tt_run has returned. On a pool thread the
   * callback runs on a plain thread, possibly with the runtime stopped: it should only release
   * resources, never block on tether objects. NULL: nothing is called, and then arg must stay
   * valid until fn returns, which the caller cannot know after a failed call. */
  void (*abandoned)(void *arg, int ran, intptr_t result);
} tt_blocking_opts;

/* Runs fn(arg) on the blocking pool and waits for it (wait reason "blocking call", the wait
 * object being the job: Go's "syscall" state). Returns 0 with fn's result in *result (result may
 * be NULL), or:
 *   TT_ECANCELED   the caller was cancelled (at shut-down, or through its context);
 *   TT_ETIMEDOUT   the deadline passed first (the _dl and _opt variants);
 *   TT_ESHUTDOWN   the pool is being torn down;
 *   TT_ENOMEM      no memory for the job, or no pool thread could be started;
 *   TT_ENOTRUNNING the runtime is not running;
 *   TT_EINVAL      fn is NULL (nothing runs, nothing is called: arg stays the caller's).
 * Cancellation is prompt: the caller returns within a scheduling round even if fn never returns.
 * After any error but TT_EINVAL the job is abandoned: either fn never ran and never will (a queued
 * job is taken off the queue), or fn is still running and runs to completion on its pool thread,
 * its result then discarded. WITHOUT AN abandoned CALLBACK (tt_blocking, tt_blocking_dl), arg AND
 * WHATEVER fn TOUCHES MUST STAY VALID UNTIL fn RETURNS, WHICH MAY BE LONG AFTER THE CALL FAILED
 * (shut-down cancels every caller): pass heap memory and use tt_blocking_opt's abandoned callback
 * to release it, or memory that lives for the whole program. See docs/BLOCKING.md.
 * The pool holds at most tt_blocking_set_max threads (default 64; TT_BLOCKING_MAX,
 * tt_run_opts.blocking_max); further jobs wait in a FIFO queue. Threads start on demand and exit
 * after 10 s idle; tt_run's shut-down joins them (a thread still inside fn at the end of the
 * grace period is detached instead, and exits when fn returns).
 * A plain thread may call it too: fn then runs at once on the calling thread (a plain thread may
 * block; a pool thread would only add a hand-off and take a slot from the coroutines), which
 * neither a deadline nor shut-down can interrupt: the deadline is only checked before fn starts.
 * Calls: blocks; cancel point; plain threads (run fn themselves); not from signal handlers. */
TT_EXTERN int tt_blocking(tt_blocking_fn fn, void *arg, intptr_t *result);

/* tt_blocking with a deadline (absolute tt_now() ns; TT_FOREVER: none): TT_ETIMEDOUT when it
 * passes before fn returns (fn may still be running: see tt_blocking). Calls: as tt_blocking. */
TT_EXTERN int tt_blocking_dl(tt_blocking_fn fn, void *arg, intptr_t *result, int64_t deadline);

/* tt_blocking with options (NULL: the defaults): a deadline and the abandoned callback, which is
 * what makes a job safe to give up on (see tt_blocking_opts). Calls: as tt_blocking. */
TT_EXTERN int tt_blocking_opt(tt_blocking_fn fn, void *arg, const tt_blocking_opts *opts,
                              intptr_t *result);

/* Sets the pool's bound to n threads (1 to 10000) for the rest of this run, or only reads it when
 * n is 0. Raising it starts threads for jobs that wait; lowering it lets threads above the bound
 * exit as they finish their current job (until then more than n may run). Each tt_run starts again
 * from tt_run_opts.blocking_max, TT_BLOCKING_MAX, or 64. Returns the bound in force before the
 * call, TT_EINVAL (n < 0 or n > 10000) or TT_ENOTRUNNING. (A thread that cannot be started for a
 * waiting job is not an error: the threads already running serve the queue.)
 * Calls: never blocks (may start threads); any thread while the runtime runs; not from signal
 * handlers. */
TT_EXTERN int tt_blocking_set_max(int n);

/* The pool at one instant. */
typedef struct tt_blocking_stats {
  int max;     /* the bound */
  int threads; /* pool threads alive (starting, idle or busy), detached ones not counted */
  int busy;    /* threads running a job (fn, or an abandoned callback) */
  int idle;    /* threads waiting for a job */
  int queued;  /* jobs waiting for a thread */
} tt_blocking_stats;

/* Fills *out. Returns 0, TT_EINVAL (out is NULL), TT_ENOTRUNNING (*out is zeroed).
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_blocking_stats_get(tt_blocking_stats *out);

TT_END_DECLS

#endif
