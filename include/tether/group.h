/* SPDX-License-Identifier: MIT */
/* Structured scopes (Go's errgroup.Group with WithContext and SetLimit) and bounded worker pools:
 * ways to start coroutines that always have someone waiting for them to finish.
 *
 * A group owns a context, a child of its parent context: its children run under it, the first
 * child that fails cancels it (and so every sibling's blocking calls), and tt_group_wait waits
 * for all of them and returns the first error. A pool is n long-lived coroutines taking tasks
 * from a bounded queue: submitting waits while the queue is full (back-pressure), closing lets
 * the queue drain and the workers end, cancelling stops them.
 *
 * Calls: see each function; none may be called from signal handlers. */
#ifndef TETHER_GROUP_H
#define TETHER_GROUP_H

#include "common.h"

TT_BEGIN_DECLS

struct tt_ctx;
struct tt_chan;
struct tt_go_opts;

/* ---- Groups ------------------------------------------------------------------------------ */

typedef struct tt_group tt_group;

/* Makes a group whose context is a cancellable child of parent (NULL: the caller's current
 * context). Returns 0 and the group in *out, or TT_EINVAL, TT_ENOMEM.
 * Calls: never blocks; any thread. */
TT_EXTERN int tt_group_make(struct tt_ctx *parent, tt_group **out);

/* The group's context (borrowed: valid until tt_group_free). Cancelled by the first child that
 * returns an error (its cause is that error), by its parent, by tt_group_cancel, and once
 * tt_group_wait has seen every child finish (as errgroup.WithContext's). */
TT_EXTERN struct tt_ctx *tt_group_ctx(tt_group *g);

/* At most n children run at once from now on (n <= 0: no limit, the default). Returns 0, or
 * TT_EINVAL (NULL), TT_EBUSY (children are running: Go panics). Calls: never blocks; any thread. */
TT_EXTERN int tt_group_set_limit(tt_group *g, int n);

/* Spawns fn(arg) as a child of the group, under the group's context; its nonzero result is an
 * error: the first one is kept for tt_group_wait and cancels the group's context. While the limit
 * is reached, waits for a child to finish (wait reason "semacquire"). Returns 0, or TT_EINVAL
 * (NULL g or fn), TT_ECANCELED (the caller's context, not the group's), TT_ESHUTDOWN, TT_ENOMEM,
 * TT_ENOTRUNNING. On failure fn never runs.
 * Calls: blocks (only at the limit); cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_group_go(tt_group *g, int (*fn)(void *arg), void *arg);

/* tt_group_go with spawn options (name, labels, stack size, references to share: see
 * tt_go_opts; its ctx field must be NULL: children run under the group's context) and a
 * deadline for the wait at the limit (TT_FOREVER: none; TT_ETIMEDOUT when it passes). The child's
 * id goes to *id if id is not NULL. Calls: as tt_group_go. */
TT_EXTERN int tt_group_go_opt(tt_group *g, int (*fn)(void *arg), void *arg,
                              const struct tt_go_opts *opts, int64_t deadline, tt_id *id);

/* tt_group_go without waiting: TT_EAGAIN at the limit. Calls: never blocks; any thread. */
TT_EXTERN int tt_group_try_go(tt_group *g, int (*fn)(void *arg), void *arg);

/* Waits until every child has finished (wait reason "group wait"), then cancels the group's
 * context and returns the first child's error (0 if none failed). Or TT_ECANCELED (the caller's
 * own context was cancelled: the children go on), TT_EINVAL, TT_ESHUTDOWN, TT_ENOTRUNNING.
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_group_wait(tt_group *g);

/* tt_group_wait with a deadline: TT_ETIMEDOUT when it passes first (the children go on). */
TT_EXTERN int tt_group_wait_dl(tt_group *g, int64_t deadline);

/* Cancels the group's context (cause TT_ECANCELED), as a failing child would. Returns 0 or
 * TT_EINVAL. Calls: never blocks; any thread. */
TT_EXTERN int tt_group_cancel(tt_group *g);

/* The number of children not yet finished. */
TT_EXTERN int64_t tt_group_live(tt_group *g);

/* Frees the group. With children still running it refuses: returns TT_EBUSY and writes to stderr
 * which coroutines they are (id and name), so the leak is named where it happens. Returns 0 or
 * TT_EBUSY; NULL is ignored. Calls: never blocks; any thread. */
TT_EXTERN int tt_group_free(tt_group *g);

/* ---- Worker pools ------------------------------------------------------------------------ */

typedef struct tt_pool tt_pool;

typedef struct tt_pool_opts {
  struct tt_ctx *ctx; /* parent of the pool's context; NULL: the caller's current context */
  const char *name;   /* the workers' name in dumps; copied; default "pool worker" */
} tt_pool_opts;

/* Starts a pool of `workers` coroutines (1..65536) taking tasks from a queue of room `queue`
 * (0: a task is handed straight to an idle worker). Returns 0 and the pool in *out, or TT_EINVAL,
 * TT_ENOMEM, TT_ENOTRUNNING, TT_ESHUTDOWN. Calls: never blocks; any thread while the runtime runs.
 */
TT_EXTERN int tt_pool_make(tt_pool **out, int workers, size_t queue, const tt_pool_opts *opts);

/* Queues fn(arg) for a worker, waiting while the queue is full (wait reason "chan send").
 * Returns 0 (queued: a worker will run it, unless the pool is cancelled first), or TT_ECLOSED
 * (closed or cancelled pool), TT_EINVAL, TT_ECANCELED (the caller's context), TT_ESHUTDOWN,
 * TT_ENOTRUNNING. Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_pool_submit(tt_pool *p, void (*fn)(void *arg), void *arg);

/* tt_pool_submit with a deadline (TT_ETIMEDOUT: not queued), and references the task carries:
 * the task holds a reference to each of the nshare channels in share (copied from the caller's,
 * who must hold one to each tracked channel: TT_EPERM otherwise) while it is queued, the worker
 * running it holds them while fn runs, and they are released after it returns — or when the task
 * is dropped unrun by a cancellation (then drop(arg), if not NULL, is called too, so arg can be
 * freed). Calls: as tt_pool_submit. */
TT_EXTERN int tt_pool_submit_opt(tt_pool *p, void (*fn)(void *arg), void *arg,
                                 struct tt_chan *const *share, size_t nshare,
                                 void (*drop)(void *arg), int64_t deadline);

/* tt_pool_submit without waiting: TT_EAGAIN when the queue is full. Calls: never blocks. */
TT_EXTERN int tt_pool_try_submit(tt_pool *p, void (*fn)(void *arg), void *arg);

/* No more tasks: the workers run what is queued and end. Idempotent. Returns 0 or TT_EINVAL.
 * Calls: never blocks; any thread. */
TT_EXTERN int tt_pool_close(tt_pool *p);

/* Cancels the pool's context: running tasks see it in their blocking calls, queued tasks are
 * dropped unrun, the workers end. Implies tt_pool_close. Returns 0 or TT_EINVAL.
 * Calls: never blocks; any thread. */
TT_EXTERN int tt_pool_cancel(tt_pool *p);

/* Waits until every worker has ended (after tt_pool_close or tt_pool_cancel; wait reason
 * "sync.WaitGroup.Wait"). Returns 0, TT_ECANCELED (the caller's context), TT_EINVAL,
 * TT_ESHUTDOWN, TT_ENOTRUNNING. Calls: blocks; cancel point; plain threads. */
TT_EXTERN int tt_pool_wait(tt_pool *p);
/* tt_pool_wait with a deadline (TT_ETIMEDOUT). */
TT_EXTERN int tt_pool_wait_dl(tt_pool *p, int64_t deadline);

/* The pool's context (borrowed: valid until tt_pool_free); tasks run under it. */
TT_EXTERN struct tt_ctx *tt_pool_ctx(tt_pool *p);

/* Frees a pool whose workers have ended. Returns 0, or TT_EBUSY (workers still run: close or
 * cancel it and wait first; nothing is freed). NULL is ignored. Calls: never blocks; any thread. */
TT_EXTERN int tt_pool_free(tt_pool *p);

TT_END_DECLS

#endif
