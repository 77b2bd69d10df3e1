/* SPDX-License-Identifier: MIT */
/* The coroutine registry as the diagnostics see it: states, wait reasons, exact counts and a
 * per-coroutine snapshot. */
#ifndef TETHER_DIAG_H
#define TETHER_DIAG_H

#include "common.h"

TT_BEGIN_DECLS

/* Coroutine states (name, Go's spelling in dumps). */
#define TT_STATE_MAP(XX)                                                                           \
  XX(RUNNABLE, "runnable")                                                                         \
  XX(RUNNING, "running")                                                                           \
  XX(WAITING, "waiting")

typedef enum tt_state {
#define TT_STATE_ENUM_(name, str) TT_STATE_##name,
  TT_STATE_MAP(TT_STATE_ENUM_) /* one enumerator per state */
#undef TT_STATE_ENUM_
  TT_STATE_COUNT
} tt_state;

/* Why a waiting coroutine waits: Go's strings (runtime/runtime2.go waitReasonStrings) where Go has
 * the wait, tether's own after them. Entries are only appended, never reused or reordered. */
#define TT_WAIT_REASON_MAP(XX)                                                                     \
  XX(NONE, "")                                                                                     \
  XX(CHAN_RECV, "chan receive")                                                                    \
  XX(CHAN_SEND, "chan send")                                                                       \
  XX(CHAN_RECV_NIL, "chan receive (nil chan)")                                                     \
  XX(CHAN_SEND_NIL, "chan send (nil chan)")                                                        \
  XX(SELECT, "select")                                                                             \
  XX(SELECT_NO_CASES, "select (no cases)")                                                         \
  XX(SLEEP, "sleep")                                                                               \
  XX(IO_WAIT, "IO wait")                                                                           \
  XX(MUTEX_LOCK, "sync.Mutex.Lock")                                                                \
  XX(RWMUTEX_RLOCK, "sync.RWMutex.RLock")                                                          \
  XX(RWMUTEX_LOCK, "sync.RWMutex.Lock")                                                            \
  XX(COND_WAIT, "sync.Cond.Wait")                                                                  \
  XX(WAITGROUP_WAIT, "sync.WaitGroup.Wait")                                                        \
  XX(SEMACQUIRE, "semacquire")                                                                     \
  XX(ONCE_DO, "sync.Once.Do")                                                                      \
  XX(BLOCKING_CALL, "blocking call")                                                               \
  XX(GROUP_WAIT, "group wait")                                                                     \
  XX(CONTEXT_DONE, "context done")

typedef enum tt_wait_reason {
#define TT_WAIT_ENUM_(name, str) TT_WAIT_##name,
  TT_WAIT_REASON_MAP(TT_WAIT_ENUM_) /* one enumerator per reason */
#undef TT_WAIT_ENUM_
  TT_WAIT_COUNT
} tt_wait_reason;

/* "runnable" etc.; NULL for an unknown value. Any thread, signal-safe. */
TT_EXTERN const char *tt_state_string(int state);
/* "chan receive" etc.; NULL for an unknown value. Any thread, signal-safe. */
TT_EXTERN const char *tt_wait_reason_string(int reason);

/* Live coroutine counts. Each call returns a consistent snapshot: the figures were all true at one
 * instant during the call (total == the sum over states; the sum over wait reasons == the waiting
 * count). */
typedef struct tt_counts {
  int64_t total;
  int64_t by_state[TT_STATE_COUNT];
  int64_t by_reason[TT_WAIT_COUNT];
  uint64_t created; /* coroutines spawned in this run */
  uint64_t exited;  /* coroutines that finished in this run */
  int64_t peak;     /* the most alive at once in this run: sampled every 64 spawns per worker
                       and at every tt_counts_get, so exact to within 64 per worker */
} tt_counts;

/* Fills *out. Returns 0, TT_EINVAL (out is NULL), or TT_ENOTRUNNING (then *out is zeroed).
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_counts_get(tt_counts *out);

/* What the registry holds about one coroutine. Strings point into storage that stays valid until
 * the callback returns. */
typedef struct tt_coro_info {
  tt_id id;
  tt_id parent;          /* the spawner's id; 0 when spawned by a plain thread */
  const char *name;      /* NULL when unnamed */
  int state;             /* tt_state */
  int wait_reason;       /* tt_wait_reason, TT_WAIT_NONE unless waiting */
  const void *wait_obj;  /* the object waited on (a tt_wg *, a tt_chan *, ...), or NULL */
  int64_t blocked_since; /* tt_now()-clock time the wait began (coarse), 0 unless waiting */
  void *create_pc;       /* return address of the tt_go call that spawned it */
  int daemon;
  int worker; /* index of the worker it is bound to; -1 before its first run */
  size_t stack_size;
  const tt_label *labels; /* nlabels entries */
  size_t nlabels;
  void *sp; /* saved stack pointer while suspended after its first run, else NULL */
  /* The bound stack's usable range [stack_lo, stack_hi) once it has run (NULL before). */
  const void *stack_lo, *stack_hi;
  /* A coroutine waiting in tt_select (wait reason "select"): its cases, which name the channels
   * it waits on (wait_obj is then the same array). Valid while the callback runs. */
  const struct tt_select_case *select_cases;
  size_t select_ncases;
  /* Snapshots only (tt_snapshot_get; NULL/0 in tt_coro_foreach): the coroutine's stack as program
   * counters, innermost first, each a return address (the code is at pc - 1; the innermost
   * frame of a coroutine captured while running is stored as its pc + 1, as Go does). At most
   * TT_STACK_KEEP are kept: when the stack is deeper (stack_depth > nstack), the innermost and
   * outermost TT_STACK_KEEP / 2 are kept and the frames between them are elided. */
  const uintptr_t *stack;
  size_t nstack;
  size_t stack_depth;
  int stack_status; /* TT_STACK_OK, or why the stack is missing (TT_STACK_UNAVAILABLE ...) */
  /* The spawner's stack at the spawn, with TT_DEBUG=creationstack=N (else NULL/0). */
  const uintptr_t *create_stack;
  size_t ncreate_stack;
  /* The verdict of the last leak check (tether/leak.h): TT_VERDICT_NONE, _LEAKED or _DEADLOCK. */
  int verdict;
  /* The leak-check scope it was created in (tether/leak.h), 0 when none. */
  uint64_t scope;
} tt_coro_info;

#define TT_STACK_KEEP 100 /* frames kept per stack: Go prints 50 innermost and 50 outermost */
#define TT_STACK_OK 0
#define TT_STACK_NOT_STARTED 1 /* never ran: stack holds its start function */
#define TT_STACK_UNAVAILABLE 2 /* running on another worker and its capture timed out */

/* Calls fn once for every live coroutine (in no particular order), stopping early when fn returns
 * non-zero (which is then returned). A suspended coroutine is held still (its scan bit is taken)
 * while fn looks at it, so fn must not block on tether objects. Coroutines spawned or exiting
 * during the walk may or may not be seen. Returns 0, fn's non-zero result, or TT_ENOTRUNNING.
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_coro_foreach(int (*fn)(const tt_coro_info *info, void *arg), void *arg);

/* ---- Dumps: every coroutine's stack, in Go's formats (docs/DIAGNOSTICS.md) ---------------- */

/* The formats, numbered as Go's goroutine profile numbers its debug levels. */
typedef enum tt_dump_format {
  TT_DUMP_PPROF = 0,  /* gzip'd profile.proto, sample type goroutine/count: `go tool pprof` */
  TT_DUMP_COUNTS = 1, /* "goroutine profile: total N": stacks aggregated with their counts */
  TT_DUMP_TRACES = 2, /* every coroutine's traceback, as Go's SIGQUIT dump (panicparse reads it) */
  TT_DUMP_JSON = 3    /* every registry field per coroutine (docs/DIAGNOSTICS.md has the schema) */
} tt_dump_format;

/* A still picture of every live coroutine with its stack. Coroutines are held still one group at
 * a time while they are read, never all at once, so a big process is never stopped for long;
 * the picture is therefore not one instant (nor is Go's goroutine profile at debug=1). */
typedef struct tt_snapshot tt_snapshot;

/* Takes a snapshot. Returns 0 (*out set; free it with tt_snapshot_free), TT_EINVAL (out NULL),
 * TT_ENOTRUNNING or TT_ENOMEM. Calls: never blocks on tether objects; it does wait for each
 * coroutine running on another worker to be captured (microseconds; at most a second when that
 * worker does not answer its signal), and walks a big registry on a helper thread; not a
 * cancellation point; any thread; not from signal handlers. */
TT_EXTERN int tt_snapshot_take(tt_snapshot **out);
/* The number of coroutines in s (0 for NULL). */
TT_EXTERN size_t tt_snapshot_len(const tt_snapshot *s);
/* Fills *out with coroutine i (0 <= i < len; ordered by id, the caller first when it is a
 * coroutine). Strings and arrays point into s: valid until s is freed. 0 or TT_EINVAL. */
TT_EXTERN int tt_snapshot_get(const tt_snapshot *s, size_t i, tt_coro_info *out);
/* Keeps only the coroutines for which keep returns non-zero; returns how many remain. */
TT_EXTERN size_t tt_snapshot_filter(tt_snapshot *s, int (*keep)(const tt_coro_info *, void *),
                                    void *arg);
/* Writes s in a format to fd. 0, TT_EINVAL (bad format, fd or s) or TT_EIO (a write failed). */
TT_EXTERN int tt_snapshot_write(const tt_snapshot *s, int fd, int format);
/* The same into a heap buffer (*out, NUL-terminated after *len bytes; free() it). */
TT_EXTERN int tt_snapshot_write_mem(const tt_snapshot *s, int format, char **out, size_t *len);
TT_EXTERN void tt_snapshot_free(tt_snapshot *s);

/* Snapshot and write in one call. Calls: as tt_snapshot_take. */
TT_EXTERN int tt_dump(int fd, int format);
TT_EXTERN int tt_dump_mem(int format, char **out, size_t *len);

TT_END_DECLS

#endif
