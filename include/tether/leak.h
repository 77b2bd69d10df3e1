/* SPDX-License-Identifier: MIT */
/* Leak detection, in layers (docs/LEAKS.md; ../DESIGN.md section 5):
 *   1. proof: coroutines that nothing live can ever wake ("leaked"), and lock cycles;
 *   2. tests: tt_leak_verify_none, goleak's contract, scoped to what a test created;
 *   3. exit: TT_LEAKCHECK=1 reports live coroutines when main returns (see tether/coro.h for the
 *      global deadlock, which tt_run reports as TT_EDEADLK);
 *   4. production: suspects, sites where many coroutines have been blocked for long. */
#ifndef TETHER_LEAK_H
#define TETHER_LEAK_H

#include "common.h"

TT_BEGIN_DECLS

struct tt_snapshot;

/* ---- 1. Proof ------------------------------------------------------------------------------ */

/* What the proof says of a coroutine. */
typedef enum tt_verdict {
  TT_VERDICT_NONE = 0,     /* not proven: running, or blocked on something still live */
  TT_VERDICT_LEAKED = 1,   /* blocked, and nothing live can ever wake it */
  TT_VERDICT_DEADLOCK = 2, /* leaked, as one of a cycle of lock holders waiting on each other */
} tt_verdict;

/* The leak patterns a report names when it recognises one (name, text). Entries are only
 * appended. */
#define TT_LEAK_PATTERN_MAP(XX)                                                                    \
  XX(NONE, "")                                                                                     \
  XX(ABANDONED_RECEIVER, "abandoned receiver")                                                     \
  XX(ABANDONED_SENDER, "abandoned sender")                                                         \
  XX(TIMEOUT_LEAK, "timeout leak")                                                                 \
  XX(NCAST, "N-cast")                                                                              \
  XX(UNCLOSED_RANGE, "unclosed range")                                                             \
  XX(DOUBLE_SEND, "double send")                                                                   \
  XX(MUTEX_EXITED, "mutex held by an exited coroutine")                                            \
  XX(LOCK_CYCLE, "lock cycle")                                                                     \
  XX(DAEMON, "daemon never stopped")                                                               \
  XX(CANCEL_IGNORED, "loop ignores cancellation")                                                  \
  XX(NIL_WAIT, "waits on nothing")                                                                 \
  XX(DEAD_SELECT, "select with every case dead")                                                   \
  XX(CHAIN, "waits on a leaked coroutine")                                                         \
  XX(GROUP_CHILD, "group waits on a leaked child")

typedef enum tt_leak_pattern {
#define TT_LEAK_PATTERN_ENUM_(name, text) TT_PATTERN_##name,
  TT_LEAK_PATTERN_MAP(TT_LEAK_PATTERN_ENUM_) /* one enumerator per pattern */
#undef TT_LEAK_PATTERN_ENUM_
  TT_PATTERN_COUNT
} tt_leak_pattern;

/* "abandoned receiver" etc.; "" for NONE, NULL for an unknown value. Any thread, signal-safe. */
TT_EXTERN const char *tt_leak_pattern_string(int pattern);

/* One fact a verdict relied on (R6), rendered as a line of text. */
typedef struct tt_leak_evidence {
  const void *obj; /* the object it is about (an address to tell objects apart; may be freed) */
  tt_id coro;      /* the coroutine it is about, 0 when none */
  const char *text;
} tt_leak_evidence;

typedef struct tt_leak_verdict {
  tt_id id;
  int verdict; /* TT_VERDICT_LEAKED or TT_VERDICT_DEADLOCK */
  int pattern; /* tt_leak_pattern */
  int wait_reason;
  const void *wait_obj;
  int64_t blocked_since; /* tt_now() clock */
  int64_t proven_at;     /* when a check first proved it */
  const tt_leak_evidence *evidence;
  size_t nevidence;
  const tt_id *cycle; /* TT_VERDICT_DEADLOCK: the coroutines of the cycle, this one first */
  size_t ncycle;
  /* TT_LEAKCHECK=eager: the operation that removed the last live way to wake it (NULL/0 when
   * not recorded), who made it (0: a plain thread) and its stack, innermost first. */
  const char *cause_op;
  tt_id cause_by;
  const uintptr_t *cause_stack;
  size_t ncause_stack;
} tt_leak_verdict;

typedef struct tt_leak_report tt_leak_report;

/* Proves leaks now: stops the workers at a safe point (each at its next switch), computes the
 * verdicts over every coroutine, and lets them go. A verdict is never wrong (R1-R5); it is
 * sticky: a coroutine proven leaked stays marked (dumps print "[chan receive (leaked)]") until it
 * exits (only the runtime's shut-down can still wake it). *out (if out is not NULL) receives the
 * report of every coroutine proven leaked, old verdicts included; free it with
 * tt_leak_report_free.
 * Returns the number of leaked coroutines (>= 0), TT_ENOTRUNNING, TT_ENOMEM, TT_EBUSY (a worker
 * did not reach a safe point within 100 ms: a coroutine runs without yielding), or TT_EAGAIN
 * (plain threads kept changing references during every attempt).
 * Calls: blocks the caller for the analysis (no tether wait); not a cancellation point; any
 * thread; not from signal handlers. */
TT_EXTERN int tt_leak_check(tt_leak_report **out);
/* The report's verdicts, ordered by coroutine id. */
TT_EXTERN size_t tt_leak_report_len(const tt_leak_report *r);
TT_EXTERN const tt_leak_verdict *tt_leak_report_get(const tt_leak_report *r, size_t i);
/* Writes the report as text: each verdict with its evidence. 0, TT_EINVAL or TT_EIO. */
TT_EXTERN int tt_leak_report_write(const tt_leak_report *r, int fd);
TT_EXTERN void tt_leak_report_free(tt_leak_report *r);

/* The goroutineleak profile (Go 1.26): runs tt_leak_check, then writes the leaked coroutines in
 * a format of tether/diag.h (TT_DUMP_PPROF: sample type goroutineleak/count; TT_DUMP_COUNTS:
 * "goroutineleak profile: total N"; TT_DUMP_TRACES and TT_DUMP_JSON: each leaked coroutine).
 * 0, or tt_leak_check's and tt_dump's errors. Calls: as tt_leak_check. */
TT_EXTERN int tt_leak_profile(int fd, int format);
TT_EXTERN int tt_leak_profile_mem(int format, char **out, size_t *len);

/* The verdict the last check gave coroutine id (TT_VERDICT_NONE when not proven or unknown).
 * Calls: never blocks; any thread. */
TT_EXTERN int tt_leak_verdict_of(tt_id id);

/* ---- 2. Tests: tt_leak_verify_none -------------------------------------------------------- */

/* A leak-check scope: what one test created. While a coroutine (or a plain thread) has a scope
 * begun, every coroutine it spawns belongs to the scope, and so, transitively, does everything
 * those spawn: group children, pool workers made inside, the coroutines of tt_after_func timers
 * armed inside (when they fire, even after the scope ended). A scope begun inside another is
 * nested in it: the outer scope's checks cover the inner one's coroutines too, also after the
 * inner scope has ended. tt_coro_info.scope names a coroutine's scope (the one its spawns go
 * into: the scope it was created in, or one it has begun itself). */
typedef struct tt_leak_scope tt_leak_scope;

/* Begins a scope for the caller (a coroutine, or a plain thread: then for the thread), named name
 * (copied; NULL: "scope N") for reports. Scopes nest: end them in the reverse order. The runtime
 * need not be running. Returns 0 (*out set), TT_EINVAL (out NULL) or TT_ENOMEM.
 * Calls: never blocks; not a cancellation point; any thread; not from signal handlers. */
TT_EXTERN int tt_leak_scope_begin(const char *name, tt_leak_scope **out);
/* Ends s and frees it: the caller's spawns go back to the scope it had before. Its coroutines
 * keep belonging to it (and to the scopes around it). Returns 0, or TT_EINVAL (s NULL, not begun
 * by the caller, or not the caller's innermost scope; s is then not freed).
 * Calls: never blocks; not a cancellation point; the coroutine or thread that began s; not from
 * signal handlers. */
TT_EXTERN int tt_leak_scope_end(tt_leak_scope *s);
/* The scope's id (the value of tt_coro_info.scope for its coroutines), 0 for NULL. */
TT_EXTERN uint64_t tt_leak_scope_id(const tt_leak_scope *s);

/* Options of tt_leak_verify_none. Zero (or a NULL opts) means the default for every field.
 * Function names are matched exactly (strcmp) against the symbolizer's names: C function names as
 * the debug information or the symbol tables spell them (a static function's plain name; GCC's
 * clone suffixes such as ".constprop.0" dropped). Lists are NULL-terminated arrays of names. */
typedef struct tt_leak_opts {
  /* How long to wait in all for the coroutines to finish (ns); 0: 500 ms. Checks start 10 us
   * apart and double, each wait capped at max_sleep (0: 10 ms). */
  int64_t timeout;
  int64_t max_sleep;
  /* Only the coroutines of this scope and of the scopes nested in it (NULL: every coroutine). */
  const tt_leak_scope *scope;
  /* Coroutines alive in this snapshot (taken earlier in this run) are ignored: goleak's
   * IgnoreCurrent. */
  const struct tt_snapshot *baseline;
  /* Ignore a coroutine whose innermost frame outside tether's own code is one of these
   * (goleak's IgnoreTopFunction): for a coroutine blocked in tt_chan_recv, the function that
   * called it; for one that has not started yet, its start function. */
  const char *const *ignore_top;
  /* ... that has one of these functions anywhere on its stack (goleak's IgnoreAnyFunction). */
  const char *const *ignore_any;
  /* ... that was spawned by one of these functions: the function containing its creation site,
   * as "created by" names it (for a group's children that is tether's group code). */
  const char *const *ignore_creator;
  /* The report's title: the test's name (NULL: the scope's name, else "tt_leak_verify_none"). */
  const char *name;
  /* Where the report is written as well: 0 means stderr (2), -1 nowhere. */
  int report_fd;
} tt_leak_opts;

/* Checks that no coroutine is left behind (goleak's VerifyNone): waits, with exponential backoff,
 * up to opts->timeout for every coroutine that is not ignored to finish, returning as soon as
 * none is left. Always ignored: daemons (tt_go_opts.daemon), the caller, and, with a scope, the
 * coroutine that began it. A caller that is cancelled meanwhile stops waiting and checks at once.
 * When some are left, runs the proof once (tt_leak_check) and writes a report: the title, then
 * each coroutine in debug=2 form (tt_dump's TT_DUMP_TRACES: stack, wait reason, creation site)
 * after a line with its verdict: "leaked (proven: nothing can wake it)", or "still blocked
 * (<wait reason>) for <time> after <timeout>" / "still running after <timeout>" when the proof
 * did not or could not decide.
 * Returns 0 (none left; *report set to NULL), TT_ELEAKED (some left: *report, when report is not
 * NULL, receives the report as a NUL-terminated string to free()), TT_EINVAL (a negative timeout
 * or max_sleep, report_fd < -1), TT_ENOTRUNNING or TT_ENOMEM.
 * Calls: blocks the caller (a coroutine sleeps with tt_sleep, a plain thread with nanosleep) up to
 * the timeout; not a cancellation point (see above); any thread while the runtime runs; not from
 * signal handlers. */
TT_EXTERN int tt_leak_verify_none(const tt_leak_opts *opts, char **report);

/* ---- 4. Production: suspects -------------------------------------------------------------- */

/* A suspect is a site — a wait reason (or, for coroutines that are not parked, a state) and the
 * blocking location, the innermost frame of the program's own code — where at least min_count
 * coroutines have been blocked for at least min_age (LeakProf's production signal). Daemons are
 * never counted. Besides coroutines blocked that long, a site counts those the heuristics flag
 * as long-lived although they keep waking: a coroutine still running min_age after its context
 * was cancelled (TT_PATTERN_CANCEL_IGNORED) and one ticking in a select on a timer channel made
 * min_age ago beside a channel nobody ever sent to or closed (TT_PATTERN_DAEMON); their age is the
 * time since the cancellation, or since the timer channel was made. docs/LEAKS.md section 4. */
typedef struct tt_suspect_opts {
  size_t min_count; /* K; 0: TT_DEBUG=suspectcount=K, else 100 */
  int64_t min_age;  /* T in ns; 0: TT_DEBUG=suspectage=T, else 60 s; negative: no age needed */
  size_t max;       /* at most this many suspects, the best ranked; 0: all */
  size_t nsample;   /* coroutine ids listed per suspect (the lowest); 0: 8; at most 1000 */
  int prove;        /* non-zero: run the proof (tt_leak_check) first, so that verdicts and
                       their patterns are current; otherwise the last check's (sticky) are used */
} tt_suspect_opts;

typedef struct tt_suspect {
  size_t rank;     /* 1 for the first */
  int state;       /* tt_state of its coroutines: TT_STATE_WAITING, unless a heuristic flagged
                      coroutines that run */
  int wait_reason; /* tt_wait_reason (TT_WAIT_NONE when not waiting) */
  /* The blocking location: the return address into the program's innermost frame (0 when the
   * stack shows none), and what it is (NULL/0 when unknown; strings live as long as the
   * process). */
  uintptr_t pc;
  const char *func;
  const char *file;
  int line;
  size_t count;        /* coroutines at the site that qualify */
  size_t nleaked;      /* of which the proof has proven leaked (or deadlocked) */
  int64_t oldest_age;  /* ns: the oldest qualifying coroutine's age */
  int64_t median_age;  /* ns: the median age (the lower middle one for an even count) */
  double score;        /* the rank's key: count x median age in seconds */
  int pattern;         /* tt_leak_pattern: the proof's when some are proven, else a heuristic's */
  const char *why;     /* what the pattern rests on, one sentence; "" when none */
  const tt_id *sample; /* the lowest ids among them, ascending; nsample entries */
  size_t nsample;
  /* The first sampled coroutine: its creation site, the object it waits on (an address, to tell
   * objects apart; it may be gone), its stack as tt_coro_info.stack, and its traceback in Go's
   * debug=2 form. */
  void *create_pc;
  const void *wait_obj;
  const uintptr_t *stack;
  size_t nstack;
  const char *trace;
} tt_suspect;

typedef struct tt_suspect_report tt_suspect_report;

/* Finds the suspects now: takes a snapshot (tether/diag.h), groups its coroutines by site in one
 * pass, reads what the heuristics need of the channels and contexts involved, and ranks the
 * sites that qualify by count x median age (highest first). opts NULL: the defaults. *out
 * receives the report (free it with tt_suspect_report_free), possibly empty.
 * Returns the number of suspects (>= 0), TT_EINVAL (out NULL, nsample > 1000),
 * TT_ENOTRUNNING or TT_ENOMEM. A proof that cannot run (opts->prove; TT_EBUSY, TT_EAGAIN) leaves
 * the verdicts as they were: the report says so (tt_suspect_report_proof).
 * Calls: as tt_snapshot_take (with prove: as tt_leak_check); not a cancellation point; any
 * thread; not from signal handlers. */
TT_EXTERN int tt_leak_suspects(const tt_suspect_opts *opts, tt_suspect_report **out);
/* The suspects, best first (0 <= i < len; NULL otherwise). */
TT_EXTERN size_t tt_suspect_report_len(const tt_suspect_report *r);
TT_EXTERN const tt_suspect *tt_suspect_report_get(const tt_suspect_report *r, size_t i);
/* What the proof returned when opts->prove asked for it (its count of leaked coroutines, or its
 * error); 0 when it was not asked for. */
TT_EXTERN int tt_suspect_report_proof(const tt_suspect_report *r);
/* Writes the report as text for a person: a header with the thresholds, then per suspect its
 * rank, count, ages, site, pattern and one sample traceback. 0, TT_EINVAL or TT_EIO. */
TT_EXTERN int tt_suspect_report_write(const tt_suspect_report *r, int fd);
/* The same into a heap buffer (*out, NUL-terminated after *len bytes; free() it). 0, TT_EINVAL
 * or TT_ENOMEM. */
TT_EXTERN int tt_suspect_report_write_mem(const tt_suspect_report *r, char **out, size_t *len);
TT_EXTERN void tt_suspect_report_free(tt_suspect_report *r);

TT_END_DECLS

#endif
