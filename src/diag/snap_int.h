/* SPDX-License-Identifier: MIT */
/* Snapshots (snapshot.c) as the formats (format.c) and the triggers (trigger.c) see them. */
#ifndef TT_DIAG_SNAP_INT_H
#define TT_DIAG_SNAP_INT_H

#include "diag/diag_int.h"
#include "internal.h"

#include <stdatomic.h>

/* A distinct stack: its kept pcs (see tt_coro_info.stack), interned so that a million coroutines
 * parked in a few places share a few records. */
typedef struct tt__stk {
  uint64_t hash;
  uint32_t n;     /* kept pcs */
  uint32_t depth; /* frames the walk found (> n when the middle was elided) */
  uintptr_t pcs[];
} tt__stk;

/* Room for a stack record on the stack (a crash report's, a stack being interned). */
typedef union tt__stk_buf {
  tt__stk stk;
  char bytes[sizeof(tt__stk) + TT_STACK_KEEP * sizeof(uintptr_t)];
} tt__stk_buf;

/* Fills out (room for TT_STACK_KEEP pcs) from the depth pcs of a walk: all of them, or the
 * innermost and outermost TT_STACK_KEEP / 2 when deeper (tt_coro_info.stack). */
void tt__stk_keep(tt__stk *out, const uintptr_t *pcs, size_t depth);

/* What few coroutines have: a blocked select's cases, a creation record. */
typedef struct tt__snap_extra {
  const tt_select_case *cases; /* a copy of a blocked select's cases, or NULL */
  size_t ncases;
  const tt__ancestry *ancestry; /* a reference the snapshot holds, or NULL */
} tt__snap_extra;

/* One coroutine in a snapshot (kept small: a million of them are written in one pass). */
typedef struct tt__snap_entry {
  tt_id id, parent;
  const char *name;         /* interned copy, or NULL */
  const tt__labels *labels; /* a reference the snapshot holds, or NULL */
  const void *wait_obj;
  int64_t blocked_since;
  void *create_pc;
  const tt__stk *stack;
  const char *stack_lo;        /* the bound stack, stack_size bytes; NULL before its first run */
  const tt__snap_extra *extra; /* or NULL */
  uint32_t stack_size;
  int16_t worker;
  uint8_t state, reason, daemon, stack_status; /* stack_status: TT_STACK_*, or: */
#define TT__STACK_PAST_END 3                   /* (crash reports) an overflowed stack, not walked */
  uint8_t verdict;                             /* TT_VERDICT_* */
} tt__snap_entry;

struct tt_snapshot {
  /* The coroutines: v[0..nv) from the first walker (and the caller), then the second walker's,
   * sub->v[0..sub->nv), in no order; order[0..n) lists them by id (the caller first), an index
   * below nv naming v's entry and one above it sub->v's. */
  tt__snap_entry *v;
  size_t nv, cap;
  uint32_t *_Atomic order; /* built on first use (tt__snap_sort); NULL: v, then sub->v */
  size_t n;
  struct tt_snapshot *sub; /* the second walker's part (its tables hold its references) */
  tt_id self;              /* the coroutine that took it, or 0 */
  int64_t taken;           /* tt_now() when it was taken */
  int64_t wall_ns;         /* the wall clock then (Unix ns), for pprof's time_nanos */
  const char *profile;     /* the profile's name: "goroutine" (NULL), or "goroutineleak" */
  /* Interning. */
  tt__stk **stk; /* open addressing by content */
  size_t nstk, capstk;
  char **names; /* open addressing by content */
  size_t nnames, capnames;
  const tt__labels **lsets; /* open addressing by pointer */
  size_t nlsets, caplsets;
  const tt__ancestry **anc; /* open addressing by pointer */
  size_t nanc, capanc;
  /* Bump allocator for stacks, names and case copies. */
  struct tt__arena_blk *arena;
  int err; /* sticky: the first allocation failure */
};

/* The i-th coroutine of s in its order. */
static inline const tt__snap_entry *tt__snap_at(const tt_snapshot *s, size_t i) {
  /* acquire: a published order's contents (tt__snap_sort). */
  const uint32_t *order = atomic_load_explicit(&s->order, memory_order_acquire);
  uint32_t k = order ? order[i] : (uint32_t)i;
  return k < s->nv ? &s->v[k] : &s->sub->v[k - s->nv];
}

/* Builds the order tt__snap_at follows (by id, the caller first) if it is not there yet: the
 * formats that list coroutines one by one call it first. 0 or TT_ENOMEM. */
int tt__snap_sort(const tt_snapshot *s);

/* Takes a snapshot into *out (which the caller frees with tt_snapshot_free). In a crash or
 * signal context (crash = true) it skips capturing coroutines running on other workers. */
int tt__snapshot_take(tt_snapshot **out, bool crash);

/* Captures the stack of co (id) running on another worker: signals the worker, whose handler
 * copies its registers and the top of the stack, and unwinds the copy. Returns the number of pcs
 * stored, or a TT_E* code when co is no longer running there or the capture timed out; *worker
 * gets co's worker (capture.c). */
int tt__capture_running(tt__coro *co, tt_id id, uintptr_t *pcs, int max, int32_t *worker);
int tt__capture_setup(void); /* the signal handler and a slot per worker, at start-up */
/* What tt__capture_worker learns of the coroutine it interrupted, on its own thread. */
typedef struct tt__capture_info {
  tt_id id, parent;
  void *create_pc;
  uint64_t runs;       /* the worker's switch count (TT__ST_RUNS) at the interruption */
  int tid;             /* the worker's thread id (gettid) */
  uint32_t cancelled;  /* its TT__CANCEL_* bits */
  bool cancel_refused; /* it has refused a cancellation point since it was cancelled */
  bool has_name;
  char name[64]; /* a copy, cut to 63 bytes */
} tt__capture_info;
/* Captures whichever coroutine runs on worker index (the watchdog): its stack into pcs (the
 * count, as tt__capture_running returns it) and *info. TT_EAGAIN when none runs there (the worker
 * is in its own context) or index is the caller's own worker, TT_ETIMEDOUT when the handler did
 * not answer, TT_EINVAL for a bad index. */
int tt__capture_worker(int index, tt__capture_info *info, uintptr_t *pcs, int max);

/* The formats (format.c). Each returns 0 or the sink's error. */
int tt__write_traces(const tt_snapshot *s, tt__sink *k);
/* A stack (innermost first, as tt__unwind stores it) as Go prints a traceback's frames, tether's
 * own frames at the top hidden. */
int tt__write_pcs(tt__sink *k, const uintptr_t *pcs, size_t n);
/* "created by f in goroutine P" and its file:line line, as the dumps write them (nothing for a
 * NULL pc). */
int tt__write_created(tt__sink *k, void *pc, tt_id parent);
int tt__write_counts(const tt_snapshot *s, tt__sink *k);
int tt__write_json(const tt_snapshot *s, tt__sink *k);
int tt__write_pprof(const tt_snapshot *s, tt__sink *k);
/* A delta profile (net/http/pprof's ?seconds=): s1's samples and s0's negated, which pprof sums
 * per stack. */
int tt__write_pprof_delta(const tt_snapshot *s0, const tt_snapshot *s1, tt__sink *k);
/* The index in stk->pcs of the innermost frame of the program's own code among those a dump
 * shows (stk->n when none): the leak suspects' blocking location. */
size_t tt__stk_user_frame(const tt__stk *stk);
/* The frames a dump shows of stk (tether's own frames at the top and the trampoline at the bottom
 * hidden): [*first, *last) of stk->pcs. */
void tt__stk_visible(const tt__stk *stk, size_t *first, size_t *last);
/* One coroutine's traceback (debug=2 form), for crash reports. */
void tt__write_trace_one(const tt_snapshot *s, const tt__snap_entry *e, tt__sink *k);

#endif
