/* SPDX-License-Identifier: MIT */
/* The runtime and its coroutines: start-up, spawn, yield, identity.
 *
 * Every function documents four facts in a "Calls:" line:
 *   blocks        whether it may suspend the caller;
 *   cancel point  whether it returns TT_ECANCELED once the caller has been cancelled (at shut-down,
 *                 and from the contexts issue on, when its context is cancelled);
 *   threads       whether plain threads (not coroutines) may call it while the runtime runs;
 *   signals       whether a signal handler may call it. */
#ifndef TETHER_CORO_H
#define TETHER_CORO_H

#include "common.h"

TT_BEGIN_DECLS

/* ---- Starting the runtime ---------------------------------------------------------------- */

/* Options for tt_run. Zero means "the default" for every field, so `&(tt_run_opts){0}` or NULL
 * gives the defaults, which the environment can change (see docs/HACKING.md, "Knobs"). */
typedef struct tt_run_opts {
  int procs;         /* worker threads; default TT_PROCS, else the online CPUs */
  uint64_t seed;     /* scheduler and select randomness; default TT_SEED, else random */
  size_t stack_size; /* default coroutine stack; default TT_STACK_SIZE, else 256 KiB */
  int64_t grace_ns;  /* at shut-down, how long cancelled coroutines get to finish;
                        default TT_DEBUG=grace=..., else 1 s; negative means none */
  int report_fd;     /* where the shut-down report goes; 0 means stderr (2); -1 silences it */
  const char *name;  /* name of coroutine 1; default "main" */
  int blocking_max;  /* tt_blocking's thread pool bound (1-10000); default TT_BLOCKING_MAX, else 64
                      */
  int creationstack; /* record the spawner's stack at every spawn, this many levels of ancestors
                        (0-64), printed in dumps as Go's tracebackancestors; default
                        TT_DEBUG=creationstack=N, else 0 (only the spawn call's address) */
  int leakcheck;     /* TT_LEAKCHECK (tether/leak.h): 0 the default (TT_LEAKCHECK, else off),
                        TT_LEAKCHECK_EXIT, TT_LEAKCHECK_EAGER, or -1 for off */
} tt_run_opts;

/* tt_run_opts.leakcheck and TT_LEAKCHECK's values. */
#define TT_LEAKCHECK_OFF 0
#define TT_LEAKCHECK_EXIT 1  /* TT_LEAKCHECK=1: report coroutines still alive when main returns */
#define TT_LEAKCHECK_EAGER 2 /* TT_LEAKCHECK=eager: also print verdicts as they become true */
/* The exit status of a TT_LEAKCHECK=1 run whose main returned with coroutines left (as
 * LeakSanitizer's 23). */
#define TT_LEAKCHECK_STATUS 23

/* Starts the runtime on opts->procs workers, runs fn(arg) as coroutine 1 and, when fn returns,
 * shuts down: every coroutine still alive is cancelled (its blocking calls return TT_ECANCELED),
 * the runtime waits up to grace_ns for them to finish, reports any that remain (id, state, wait
 * reason, creation site) to report_fd, discards them without resuming them, wakes plain threads
 * still blocked on tether objects with TT_ESHUTDOWN, joins its workers and frees all it
 * allocated. A coroutine that never yields keeps its worker and so delays this return. Cancelled
 * coroutines still touch the objects they were blocked on (to leave their wait queues), so those
 * objects must outlive fn — not live in fn's own stack frame — unless fn makes sure first that
 * nothing waits on them (as with any object: never destroy one that someone is blocked on).
 *
 * With the exit check on (TT_LEAKCHECK=1 or eager, tt_run_opts.leakcheck), the check runs when fn
 * returns, before anything is cancelled: the live non-daemon coroutines other than fn's are
 * reported to report_fd with their stacks and verdicts (docs/LEAKS.md section 3), and if there
 * were any tt_run returns TT_ELEAKED, after its usual shut-down, instead of fn's result.
 * Returns fn's result (which should therefore be >= 0 or a TT_E* code), or TT_EBUSY if the
 * runtime is already running, TT_EINVAL for a NULL fn or invalid options or environment knobs
 * (with a message on stderr naming the knob), TT_ENOMEM if start-up could not allocate.
 * May be called again after it returns, any number of times.
 * The blocking pool's threads are joined too; one still inside a tt_blocking function at the end
 * of the grace period is detached and reported instead (see tether/blocking.h).
 * Calls: blocks (the calling thread, until fn returns); not a cancel point; any thread that is not
 * a tether worker; not from signal handlers. */
TT_EXTERN int tt_run(int (*fn)(void *arg), void *arg, const tt_run_opts *opts);

/* Runs main_fn(argc, argv) as coroutine 1 and exits the process with its result (exit(3): atexit
 * handlers run, stdio is flushed) when it returns, as a Go program exits when main returns: other
 * coroutines are neither cancelled nor waited for. With TT_LEAKCHECK=1 (or eager), the coroutines
 * main leaves behind (daemons aside) are reported first, as tt_run does, and if there were any the
 * process exits with TT_LEAKCHECK_STATUS (23) instead of main's result. Does not return, except
 * with TT_EINVAL or TT_EBUSY when the runtime cannot start.
 * fork(): while the runtime runs, the child of a fork() has none of the worker threads; as in any
 * multithreaded program it may only call async-signal-safe functions before exec or _exit.
 * Before tt_run starts and after it returns, fork() is unrestricted.
 * Calls: blocks until exit; the main thread; not from signal handlers. */
TT_EXTERN int tt_main(int argc, char **argv, int (*main_fn)(int argc, char **argv));

/* TT_MAIN(argc, argv) { ... return 0; } defines main() to run its body as coroutine 1; the body
 * need not use argc and argv. */
#if defined(__GNUC__)
#define TT_MAYBE_UNUSED_ __attribute__((unused))
#else
#define TT_MAYBE_UNUSED_
#endif
#define TT_MAIN(argc, argv)                                                                        \
  static int tt_main_body_(int argc, char **argv);                                                 \
  int main(int argc_, char **argv_) { return tt_main(argc_, argv_, tt_main_body_); }               \
  static int tt_main_body_(int argc TT_MAYBE_UNUSED_, char **argv TT_MAYBE_UNUSED_)

/* Whether the runtime is running (between tt_run's start-up and the end of its shut-down).
 * Calls: never blocks; any thread; signal-safe. */
TT_EXTERN int tt_running(void);

/* ---- Coroutines ------------------------------------------------------------------------- */

/* A label: a key/value pair attached to a coroutine (Go's pprof labels). Both strings are
 * copied at spawn. */
typedef struct tt_label {
  const char *key;
  const char *value;
} tt_label;

struct tt_chan;
struct tt_ctx;

/* How tt_go_opts.share passes references (see tether/chan.h). */
enum {
  TT_SHARE_COPY = 0, /* the child gets a reference of its own; the spawner keeps its own */
  TT_SHARE_MOVE = 1, /* the spawner's reference moves to the child */
};

/* Spawn options. Zero means "the default" for every field. */
typedef struct tt_go_opts {
  const char *name;       /* shown in dumps; copied; default none (the function's name is shown) */
  size_t stack_size;      /* bytes, rounded up to pages; 16 KiB..1 GiB; default the run's default */
  int daemon;             /* 1: intentionally long-lived, ignored by leak checks */
  const tt_label *labels; /* added to (or overriding) the labels inherited from the spawner */
  size_t nlabels;
  /* Channels the child gets references to, as share_mode says; the spawner must hold a reference
   * to each tracked one (untracked and detached channels need no sharing and are skipped). A
   * channel listed twice gives the child two references. */
  struct tt_chan *const *share;
  size_t nshare;
  int share_mode; /* TT_SHARE_COPY (default) or TT_SHARE_MOVE */
  /* The child's current context (tether/ctx.h); NULL: the spawner's (the background context when
   * a plain thread spawns). The child holds a reference of its own. */
  struct tt_ctx *ctx;
} tt_go_opts;

/* Spawns fn(arg) as a new coroutine, as `go fn(arg)` does. The coroutine is queued and starts on
 * some worker; once started it never moves to another worker, so TLS addresses (errno) it caches
 * stay valid. On success the coroutine owns nothing of the caller's: arg is passed through as is.
 * On failure (TT_EINVAL: NULL fn, bad options; TT_ENOTRUNNING; TT_ESHUTDOWN; TT_ENOMEM) fn never
 * runs and arg remains the caller's to free.
 * When the spawner's local run queue is full (256 coroutines not yet started), tt_go lets them run
 * first by yielding once (back-pressure: a loop spawning a million coroutines does not hold a
 * million of them at once).
 * Calls: never waits, may switch (the yield above); not a cancel point; plain threads may call it
 * while the runtime runs (they never yield); not from signal handlers. */
TT_EXTERN int tt_go(void (*fn)(void *arg), void *arg);

/* tt_go with options (NULL: the defaults); *id (if id is not NULL) receives the new coroutine's
 * id on success. Besides tt_go's errors: TT_EPERM when a shared tracked channel is one the spawner
 * holds no reference to (or, moving, fewer references than listed); TT_EINVAL for a NULL share
 * with nshare > 0, a NULL channel in it or an unknown share_mode. On failure no reference moved.
 * Calls: as tt_go. */
TT_EXTERN int tt_go_opt(void (*fn)(void *arg), void *arg, const tt_go_opts *opts, tt_id *id);

/* The calling coroutine's id, or 0 on a plain thread. Calls: never blocks; any thread;
 * signal-safe. */
TT_EXTERN tt_id tt_self(void);

/* Lets other runnable coroutines on this worker run, then continues. Returns 0, or
 * TT_ENOTCORO on a plain thread (where it calls sched_yield()). Calls: switches but never waits;
 * not a cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_yield(void);

/* The number of live coroutines (spawned and not yet exited), coroutine 1 included; 0 when the
 * runtime is not running. Exact: see tt_counts. Calls: never blocks; any thread; not from signal
 * handlers. */
TT_EXTERN int64_t tt_num_coroutines(void);

/* The index (0..procs-1) of the worker running the caller, or -1 on a plain thread.
 * Calls: never blocks; any thread; signal-safe. */
TT_EXTERN int tt_worker_index(void);

/* The number of worker threads, or 0 when the runtime is not running.
 * Calls: never blocks; any thread; signal-safe. */
TT_EXTERN int tt_procs(void);

/* The scheduler's seed for this run, 0 when the runtime is not running (deterministic mode:
 * TT_PROCS=1 and TT_SEED give a reproducible schedule). Calls: never blocks; any thread;
 * signal-safe. */
TT_EXTERN uint64_t tt_seed(void);

/* Sets a label on the calling coroutine (replacing a label with the same key); a NULL value
 * removes it. Labels are inherited by coroutines spawned afterwards. Returns 0, TT_EINVAL,
 * TT_ENOTCORO or TT_ENOMEM. Calls: never blocks; coroutines only. */
TT_EXTERN int tt_label_set(const char *key, const char *value);

/* The value of the calling coroutine's label key, or NULL (also on a plain thread). The string
 * stays valid until the coroutine changes its labels. Calls: never blocks; any thread; not from
 * signal handlers. */
TT_EXTERN const char *tt_label_get(const char *key);

/* Names the calling coroutine (copied; NULL clears). Returns 0, TT_ENOTCORO or TT_ENOMEM.
 * Calls: never blocks; coroutines only; not from signal handlers. */
TT_EXTERN int tt_name_set(const char *name);

TT_END_DECLS

#endif
