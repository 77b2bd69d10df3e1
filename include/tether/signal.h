/* SPDX-License-Identifier: MIT */
/* Signals delivered as values on channels (Go's os/signal: Notify, Stop, Reset, Ignore).
 *
 * tt_signal_notify(ch, sigs, n) makes the runtime send the number (an int) of every listed signal
 * the process receives on ch, until tt_signal_stop(ch). As in Go, the send never blocks: when ch
 * has no room, the signal is dropped for ch (other channels still get it), so give ch a buffer
 * (one slot is enough to learn that a signal came; k slots keep k of them). While ch has room no
 * delivery is lost: every time the handler runs counts, and k deliveries of one signal made before
 * the runtime's dispatcher looks are sent as k values (Go keeps one pending bit per signal and
 * would send one; tether counts, so that a burst is not folded). The kernel itself keeps only one
 * pending instance of a standard (non-real-time) signal that is blocked everywhere.
 *
 * A registration holds a reference to its channel (DESIGN.md section 5, R2: a signal registration
 * is a holder), from the first notify until tt_signal_stop, tt_signal_reset/ignore of its last
 * signal, or the end of the run: the channel stays alive while a signal may be sent on it, even
 * after its other holders released theirs. When no registration wants a signal any more, the
 * disposition it had before the first registration is restored (a handler the program installs
 * for that signal meanwhile is overwritten, as in Go).
 *
 * Signals that cannot be notified (TT_EINVAL): SIGKILL and SIGSTOP (the kernel does not let them
 * be caught); SIGSEGV, SIGBUS, SIGFPE and SIGILL (synchronous faults: the runtime's fault handler
 * owns SIGSEGV and SIGBUS for stack overflows, and a handler that returns from the others re-runs
 * the faulting instruction forever); numbers outside 1..NSIG-1, and those the C library reserves
 * for itself (between 31 and SIGRTMIN). Everything else may be notified, including the real-time
 * signals SIGRTMIN..SIGRTMAX.
 *
 * Registrations belong to one run: they may be made while the runtime runs (TT_ENOTRUNNING
 * otherwise), from coroutines and from plain threads alike, and when tt_run returns every one is
 * dropped (references released, dispositions restored) and the dispatcher thread is gone.
 *
 * Signal numbers come from <signal.h>, which this header does not include (it would bring
 * unistd.h's names into every file that includes tether.h). Graceful shut-down on SIGINT or
 * SIGTERM:
 *
 *   tt_chan *sigs = tt_chan_make(sizeof(int), 1);
 *   tt_signal_notify(sigs, (int[]){SIGINT, SIGTERM}, 2);
 *   int sig;
 *   tt_chan_recv(sigs, &sig, NULL);   (or a tt_select case beside the program's work)
 *   tt_signal_stop(sigs);             (a second Ctrl-C now kills the process as usual)
 *   ...stop accepting work, drain, return from main...
 *   tt_chan_release(sigs);
 */
#ifndef TETHER_SIGNAL_H
#define TETHER_SIGNAL_H

#include "chan.h"
#include "common.h"

TT_BEGIN_DECLS

/* Sends every signal in sigs[0..n) that the process receives, as an int, on ch (whose elem_size
 * must be sizeof(int)), without ever blocking (see above). n == 0 means every signal that may be
 * notified, as Go's Notify with no signals (this takes SIGPIPE, SIGCHLD, SIGTSTP and the like
 * away from their default actions too; a signal whose handler the environment refuses, such as
 * one qemu-user keeps for itself, is left out rather than failing the call). Calling it again for
 * the same channel adds signals; a signal listed twice, or already registered, counts once. One
 * signal may go to several channels. The caller must hold a reference to ch (any caller, for an
 * untracked or detached channel); the registration takes its own, until tt_signal_stop. Returns 0;
 * TT_EINVAL (NULL ch, NULL sigs with n > 0, a signal that may not be notified — then nothing
 * changed —, elem_size != sizeof(int)); TT_EPERM (the caller holds no reference to ch);
 * TT_ENOTRUNNING; TT_ENOMEM (no memory, or the dispatcher thread could not start).
 * Calls: never blocks (takes an internal lock for microseconds); not a cancel point; coroutines
 * and plain threads while the runtime runs; not from signal handlers. */
TT_EXTERN int tt_signal_notify(tt_chan *ch, const int *sigs, size_t n);

/* Stops every delivery to ch and drops the registration's reference to it (the channel is freed
 * if that was its last); nothing is sent on ch once it returns. Signals nobody else wants get
 * back the disposition they had before they were first notified. Values already buffered stay.
 * Returns 0 (also when ch was not registered, as Go's Stop); TT_EINVAL (NULL ch); TT_EPERM (the
 * caller holds no reference to ch).
 * Calls: never blocks (as tt_signal_notify); not a cancel point; any thread, also when the
 * runtime is not running; not from signal handlers. */
TT_EXTERN int tt_signal_stop(tt_chan *ch);

/* Removes the listed signals (n == 0: all) from every channel's registration (a registration left
 * with no signal goes, as by tt_signal_stop) and gives each signal that nobody wants any more
 * the disposition it had before it was first notified (Go's signal.Reset, which restores Go's
 * default instead). Returns 0, TT_EINVAL (NULL sigs with n > 0, a signal that may not be
 * notified; nothing changed). Calls: as tt_signal_stop. */
TT_EXTERN int tt_signal_reset(const int *sigs, size_t n);

/* As tt_signal_reset, then makes the process ignore the listed signals (SIG_IGN; Go's
 * signal.Ignore). A signal that the runtime still wants internally is ignored as soon as it no
 * longer does. A later tt_signal_notify catches it again, and restores SIG_IGN when it ends.
 * Returns as tt_signal_reset. Calls: as tt_signal_stop. */
TT_EXTERN int tt_signal_ignore(const int *sigs, size_t n);

TT_END_DECLS

#endif
