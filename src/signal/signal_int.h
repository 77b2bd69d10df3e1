/* SPDX-License-Identifier: MIT */
/* Signals' internal interface: hooks for runtime code that wants signals without a channel
 * (tt_ctx_with_signals, Go's signal.NotifyContext), and the shut-down hook. Never installed. */
#ifndef TT_SIGNAL_INT_H
#define TT_SIGNAL_INT_H

#include "internal.h"

struct tt__sighook;

/* Registers fn(arg, sig), called on the dispatcher thread (a plain thread, with no lock of ours
 * held) for each listed signal the process receives (n == 0: every signal that may be notified;
 * the same refusals as tt_signal_notify). Deliveries of one signal that arrive before the
 * dispatcher looks make one call. fn must not block for long (every other delivery waits for it)
 * and may call tt__signal_hook_del, also on its own hook. Returns 0 and the hook in *out, or
 * TT_EINVAL (NULL fn or out, NULL sigs with n > 0, a refused signal), TT_ENOTRUNNING, TT_ENOMEM.
 * A hook keeps its signals' handler installed: it is a root for the leak proofs (DESIGN.md
 * section 5, R4: a context with a signal hook is live). Any thread, while the runtime runs. */
int tt__signal_hook_add(const int *sigs, size_t n, void (*fn)(void *arg, int sig), void *arg,
                        struct tt__sighook **out);

/* Unregisters and frees h; once it returns fn is not running and will never be called again, so
 * the caller may free arg (from inside fn itself, on the dispatcher thread, the running call is
 * the caller's own and is not waited for). Waits for a running fn by spinning (fn is short).
 * Valid also after the run that made h ended (shut-down disabled h but left it to its owner to
 * free). NULL does nothing. Any thread. */
void tt__signal_hook_del(struct tt__sighook *h);

/* At the end of a run (sched.c): drops every registration (references released, dispositions
 * restored), disables every hook and joins the dispatcher thread. Idempotent. Not from the
 * dispatcher thread. */
void tt__signal_shutdown(void);
/* Whether any registration or hook exists (a signal may still wake someone): the deadlock
 * check's question. */
bool tt__signal_active(void);

/* For tests: deliveries of sig the dispatcher has handled since the process started. */
uint64_t tt__signal_handled(int sig);

#endif
