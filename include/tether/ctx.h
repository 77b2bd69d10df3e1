/* SPDX-License-Identifier: MIT */
/* Contexts (Go's context package), and the current context every coroutine carries.
 *
 * A context carries a cancellation signal, maybe a deadline, and values, down a tree: cancelling
 * a context cancels every context derived from it. Unlike Go's, a tether context also reaches the
 * code that blocks: every coroutine has a *current context* (inherited by the coroutines it
 * spawns, unless tt_go_opts.ctx says otherwise), and every blocking tether call — channel
 * operations, select, sleeps, waits on wait groups, conditions, semaphores, mutexes, groups,
 * tt_blocking — returns TT_ECANCELED promptly once the caller's current context is cancelled or
 * its deadline passes. Code that must still block after a cancellation (cleanup) raises a shield
 * (tt_shield_begin); a region of code runs under a narrower context with tt_ctx_enter.
 *
 * Lifetime: contexts are reference counted. Each tt_ctx_with_* call returns a context holding one
 * reference, which its caller releases with tt_ctx_release; a derived context holds a reference
 * to its parent, and a coroutine to its current context. The last release frees the context and
 * everything it owns (its timer, its done channel, its place in its parent's list of children):
 * nothing is left behind, whether or not it was ever cancelled. Releasing does not cancel it
 * while others still hold it (a coroutine running under it, say).
 *
 * Cancelling: any holder of a reference to a cancellable context (made by tt_ctx_with_cancel,
 * _with_deadline, _with_timeout or _with_signals) may cancel it, once or many times (the first
 * wins). This is looser than Go, where only the holder of the CancelFunc can; the leak proofs
 * count every live holder as a possible canceller.
 *
 * The background context (tt_ctx_background) is never cancelled and has no deadline or values;
 * retaining and releasing it does nothing. Plain threads always have it as their current context.
 *
 * Calls: none of these blocks (they may take short internal locks); any thread unless said
 * otherwise, also when the runtime is not running (only timers need it: see _with_deadline);
 * none from signal handlers. */
#ifndef TETHER_CTX_H
#define TETHER_CTX_H

#include "common.h"

TT_BEGIN_DECLS

struct tt_chan;

/* A context. Opaque. */
typedef struct tt_ctx tt_ctx;

/* The root of every tree: never cancelled, no deadline, no values. */
TT_EXTERN tt_ctx *tt_ctx_background(void);

/* A cancellable child of parent: cancelled by tt_ctx_cancel, or when parent is. Returns 0 and the
 * context in *out (one reference, the caller's), or TT_EINVAL (NULL parent or out), TT_ENOMEM. */
TT_EXTERN int tt_ctx_with_cancel(tt_ctx *parent, tt_ctx **out);

/* tt_ctx_with_cancel that is also cancelled, with error TT_ETIMEDOUT, once tt_now() reaches
 * deadline (at once if it already has). A parent's earlier deadline wins, and then no timer is
 * armed; TT_FOREVER: none, as tt_ctx_with_cancel. Besides tt_ctx_with_cancel's errors:
 * TT_ENOTRUNNING (a timer is needed and the runtime is not running). The timer belongs to the
 * current run: if the runtime stops first, it never fires. */
TT_EXTERN int tt_ctx_with_deadline(tt_ctx *parent, int64_t deadline, tt_ctx **out);

/* tt_ctx_with_deadline(parent, tt_now() + timeout, out). */
TT_EXTERN int tt_ctx_with_timeout(tt_ctx *parent, int64_t timeout, tt_ctx **out);

/* tt_ctx_with_cancel that is also cancelled when one of the n signals in sigs arrives (Go's
 * signal.NotifyContext); n == 0 means SIGINT and SIGTERM (Go would take every signal, window
 * resizes included). tt_ctx_cause then reports the signal's number (a positive int). The signals
 * stay caught (the default action, such as ending the process, does not happen) until the context
 * is freed: release it once the shut-down it started is under way, and a second signal acts as
 * usual. Besides tt_ctx_with_cancel's errors: TT_EINVAL (a signal tt_signal_notify refuses, NULL
 * sigs with n > 0), TT_ENOTRUNNING. Calls: never blocks; any thread while the runtime runs. */
TT_EXTERN int tt_ctx_with_signals(tt_ctx *parent, const int *sigs, size_t n, tt_ctx **out);

/* A child of parent that carries value under key (compared by address, as Go compares keys by
 * identity: use the address of a static object of your own). tt_ctx_value finds the nearest one.
 * The value is the caller's: tether never frees it. Not cancellable itself: it is cancelled when
 * parent is. Returns 0, TT_EINVAL (NULL parent, key or out), TT_ENOMEM. */
TT_EXTERN int tt_ctx_with_value(tt_ctx *parent, const void *key, void *value, tt_ctx **out);

/* A child of parent that carries a reference to channel ch under key (a carrier, in the terms of
 * tether/chan.h): the context holds its own reference from now until it is freed, so coroutines
 * that receive the context can reach the channel. The caller must hold a reference to a tracked ch
 * (TT_EPERM otherwise); it keeps its own. Returns 0, TT_EINVAL, TT_EPERM, TT_ENOMEM. */
TT_EXTERN int tt_ctx_with_chan(tt_ctx *parent, const void *key, struct tt_chan *ch, tt_ctx **out);

/* The channel stored under key by the nearest tt_ctx_with_chan, with a new reference for the
 * caller (release it with tt_chan_release), in *out. Returns 0, or TT_EINVAL (no such key, NULL
 * arguments; *out is then NULL), TT_ENOMEM. */
TT_EXTERN int tt_ctx_chan(tt_ctx *ctx, const void *key, struct tt_chan **out);

/* Cancels ctx and every context derived from it, with error TT_ECANCELED: their done channels
 * close and every coroutine blocked under one of them returns TT_ECANCELED. Idempotent: only the
 * first cancellation counts. Returns 0, or TT_EINVAL (NULL, or a context that is not cancellable
 * itself: the background context or a value context). */
TT_EXTERN int tt_ctx_cancel(tt_ctx *ctx);

/* tt_ctx_cancel, recording cause (any nonzero int: a TT_E* code or one of the program's own) as
 * the reason, which tt_ctx_cause reports (Go's WithCancelCause). cause 0 means TT_ECANCELED. */
TT_EXTERN int tt_ctx_cancel_cause(tt_ctx *ctx, int cause);

/* 0 while ctx is not cancelled; then TT_ECANCELED (cancelled) or TT_ETIMEDOUT (its deadline
 * passed, or its parent's). */
TT_EXTERN int tt_ctx_err(tt_ctx *ctx);

/* Why ctx was cancelled: the cause given to the tt_ctx_cancel_cause that cancelled it or its
 * ancestor, else tt_ctx_err(ctx) (0 while not cancelled). */
TT_EXTERN int tt_ctx_cause(tt_ctx *ctx);

/* A channel that is closed once ctx is cancelled, for tt_select and tt_chan_recv (a receive then
 * returns TT_ECLOSED); NULL for a context that is never cancelled, which tt_select treats as never
 * ready. Valid while the caller holds its reference to ctx; receive from it only (never send on
 * it or close it). It is untracked: any holder of ctx may use it. */
TT_EXTERN struct tt_chan *tt_ctx_done(tt_ctx *ctx);

/* Whether ctx has a deadline (its own or an ancestor's): 1 with the deadline in *deadline, else 0
 * (TT_EINVAL for a NULL ctx). */
TT_EXTERN int tt_ctx_deadline(tt_ctx *ctx, int64_t *deadline);

/* The value stored under key by the nearest tt_ctx_with_value, or NULL. */
TT_EXTERN void *tt_ctx_value(tt_ctx *ctx, const void *key);

/* One more reference to ctx, for the caller; returns ctx. */
TT_EXTERN tt_ctx *tt_ctx_retain(tt_ctx *ctx);

/* Drops one reference; the last one frees ctx. NULL is ignored. */
TT_EXTERN void tt_ctx_release(tt_ctx *ctx);

/* The calling coroutine's current context (the background context on a plain thread), borrowed:
 * valid while it stays current; tt_ctx_retain it to keep it longer. */
TT_EXTERN tt_ctx *tt_ctx_current(void);

/* A region of code run under another context (Go passes a narrower ctx down; here the blocking
 * calls in the region see it). Between tt_ctx_enter and the matching tt_ctx_leave, ctx is the
 * caller's current context (the region holds a reference to it) and the coroutines it spawns
 * inherit it. Regions nest; leave them in reverse order. */
typedef struct tt_ctx_scope {
  void *co_;
  uint32_t depth_;
} tt_ctx_scope;

/* Enters the region. Returns 0, or TT_EINVAL (NULL arguments), TT_ENOTCORO (plain thread),
 * TT_ENOMEM. A coroutine that exits inside regions leaves them all.
 * Calls: never blocks; coroutines only. */
TT_EXTERN int tt_ctx_enter(tt_ctx_scope *scope, tt_ctx *ctx);

/* Leaves the region: the context current before tt_ctx_enter is current again. Returns 0, or
 * TT_EINVAL (NULL, a scope not entered by this coroutine, or not the innermost one).
 * Calls: never blocks; coroutines only. */
TT_EXTERN int tt_ctx_leave(tt_ctx_scope *scope);

/* Raises a cancellation shield: until the matching tt_shield_end, the caller's blocking calls
 * ignore the cancellation of its context and the runtime's shut-down (their own deadlines still
 * apply). For cleanup that must block (flushing, unlocking in order, telling a peer). Shields
 * nest. Returns 0 or TT_ENOTCORO. Calls: never blocks; coroutines only. */
TT_EXTERN int tt_shield_begin(void);

/* Lowers the innermost shield. Returns 0, TT_EINVAL (no shield up), TT_ENOTCORO. */
TT_EXTERN int tt_shield_end(void);

TT_END_DECLS

#endif
