/* SPDX-License-Identifier: MIT */
/* Channels and select, with Go's semantics, and the references that make leaks provable.
 *
 * References (the discipline, in short; docs/CHANNELS.md teaches it with examples)
 * -------------------------------------------------------------------------------
 * A channel is freed when its last reference goes, and every reference has a holder: a coroutine,
 * a plain thread, or a message in flight (tt_chan_send_ref). (A timer channel owns its timer, so
 * the timer needs no reference: releasing the channel stops it.) The creator holds the
 * first reference. A *tracked* channel (the default) may be used only by those who hold a
 * reference to it: any operation, or any duplication of a reference, by a caller that holds none
 * fails with TT_EPERM and a message on stderr saying how to share it. That strictness is what lets
 * the runtime prove that a coroutine blocked on a channel nobody else holds can never wake.
 * Ways to give a coroutine a reference:
 *   - at spawn: tt_go_opts.share lists channels the child gets a reference to (share_mode
 *     TT_SHARE_COPY: the spawner keeps its own; TT_SHARE_MOVE: the spawner's moves to the child);
 *   - through a channel: tt_chan_send_ref(via, ch) moves the sender's reference to ch into the
 *     message, and the receiver holds it once it receives;
 *   - tt_chan_retain by a holder adds one more reference of its own (for code that stores the
 *     pointer twice and releases each copy separately).
 * A coroutine's references are released for it when it exits, a plain thread's when the thread
 * exits. Channels created *untracked* (TT_CHAN_UNTRACKED) skip the checks — anyone may use them,
 * as in Go — and are plain reference-counted objects; their waiters are never proven leaked.
 * *Detached* channels (TT_CHAN_DETACHED, for globals) are owned by the program: anyone may use
 * them, they count as live forever, and they are freed only by tt_chan_release (as untracked ones).
 *
 * Go's rules hold: FIFO per channel; a close wakes every blocked receiver (they drain the buffer,
 * then get TT_ECLOSED) and every blocked sender (TT_ECLOSED); sending on or closing a closed
 * channel returns TT_ECLOSED where Go panics; operations on a NULL channel block forever (until a
 * deadline or a cancellation) and a NULL channel's select case is never ready.
 *
 * Calls: see each function. Blocking calls work from plain threads too (they block the thread on a
 * futex). None may be called from signal handlers. */
#ifndef TETHER_CHAN_H
#define TETHER_CHAN_H

#include <stdbool.h>

#include "common.h"

TT_BEGIN_DECLS

/* A channel handle. Opaque; compare handles with ==. */
typedef struct tt_chan tt_chan;

/* Channel kinds (tt_chan_opts.mode). */
enum {
  TT_CHAN_TRACKED = 0,   /* the default: only reference holders may use it (see above) */
  TT_CHAN_UNTRACKED = 1, /* anyone may use it; reference counted, never proven leaked */
  TT_CHAN_DETACHED = 2,  /* owned by the program: anyone may use it, live forever */
};

typedef struct tt_chan_opts {
  int mode;         /* TT_CHAN_TRACKED (0), TT_CHAN_UNTRACKED or TT_CHAN_DETACHED */
  const char *name; /* shown in diagnostics; copied; NULL for none */
} tt_chan_opts;

/* Makes a channel of elements of elem_size bytes (0 is valid: a signal-only channel, Go's
 * chan struct{}) with room for cap buffered elements (0: unbuffered, every send meets a receive).
 * The caller holds the first reference. Returns the channel, or NULL when it cannot be made (use
 * tt_chan_make_opt for the reason). Calls: never blocks; any thread, also when the runtime is not
 * running; not from signal handlers. */
TT_EXTERN tt_chan *tt_chan_make(size_t elem_size, size_t cap);
/* tt_chan_make with options (NULL: defaults). Returns 0 and the channel in *out, or TT_EINVAL (NULL
 * out, unknown mode, elem_size * cap overflows or exceeds 2^40 bytes), TT_ENOMEM.
 * Calls: as tt_chan_make. */
TT_EXTERN int tt_chan_make_opt(tt_chan **out, size_t elem_size, size_t cap,
                               const tt_chan_opts *opts);

/* Sends the elem_size bytes at v (NULL is allowed only when elem_size is 0), waiting while no
 * receiver or buffer slot is ready (wait reason "chan send"; "chan send (nil chan)" for a NULL ch,
 * which waits forever). Returns 0 once the value is delivered or buffered; TT_ECLOSED if the
 * channel is closed (also when it closes while we wait; the value was not sent); TT_EPERM (tracked
 * channel, no reference held); TT_EINVAL (NULL v with elem_size > 0); TT_ECANCELED, TT_ESHUTDOWN,
 * TT_ENOTRUNNING (plain thread, runtime not running, would wait).
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_chan_send(tt_chan *ch, const void *v);
/* tt_chan_send with a deadline: TT_ETIMEDOUT when it passes first (nothing was sent). */
TT_EXTERN int tt_chan_send_dl(tt_chan *ch, const void *v, int64_t deadline);
/* tt_chan_send without waiting: TT_EAGAIN when it would wait (a NULL ch always would).
 * Calls: never blocks; not a cancel point; any thread, also when the runtime is not running. */
TT_EXTERN int tt_chan_try_send(tt_chan *ch, const void *v);

/* Receives into the elem_size bytes at v, waiting while there is nothing to receive (wait reason
 * "chan receive"; "chan receive (nil chan)" for a NULL ch). Returns 0 with a value (*ok = true),
 * or TT_ECLOSED once the channel is closed and drained (*ok = false, and v is zeroed as Go gives
 * the zero value); ok may be NULL. Other errors as tt_chan_send (v untouched, nothing received).
 * A value that carried a reference (tt_chan_send_ref) makes the receiver its holder.
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_chan_recv(tt_chan *ch, void *v, bool *ok);
/* tt_chan_recv with a deadline: TT_ETIMEDOUT when it passes first (nothing was received). */
TT_EXTERN int tt_chan_recv_dl(tt_chan *ch, void *v, bool *ok, int64_t deadline);
/* tt_chan_recv without waiting: TT_EAGAIN when it would wait. Calls: as tt_chan_try_send. */
TT_EXTERN int tt_chan_try_recv(tt_chan *ch, void *v, bool *ok);

/* Closes ch: no more sends; receivers drain what is buffered, then get TT_ECLOSED; every waiting
 * receiver and sender wakes. Returns 0, TT_ECLOSED (already closed; Go panics), TT_EINVAL (NULL ch;
 * Go panics), TT_EPERM. Calls: never blocks; any thread, also when the runtime is not running. */
TT_EXTERN int tt_chan_close(tt_chan *ch);

/* The number of buffered elements (len(ch)) and the capacity (cap(ch)); 0 for a NULL ch, as in
 * Go; TT_EPERM for a tracked channel the caller holds no reference to.
 * Calls: never blocks; any thread. */
TT_EXTERN int64_t tt_chan_len(tt_chan *ch);
TT_EXTERN int64_t tt_chan_cap(tt_chan *ch);

/* Adds one reference held by the caller (who must already hold one, unless ch is untracked or
 * detached). Returns 0, TT_EINVAL (NULL ch), TT_EPERM, TT_ENOMEM. Calls: never blocks; any
 * thread. */
TT_EXTERN int tt_chan_retain(tt_chan *ch);
/* Drops one of the caller's references; the channel is freed when its last reference anywhere
 * goes (values still buffered are discarded, references they carried released). Returns 0,
 * TT_EINVAL (NULL ch), TT_EPERM (the caller holds none). Calls: never blocks; any thread. */
TT_EXTERN int tt_chan_release(tt_chan *ch);

/* Sends the handle ref through via (whose elem_size must be sizeof(tt_chan *)) and moves one of
 * the caller's references to ref into the message: whoever receives it becomes the holder (a
 * receive by tt_chan_recv or tt_select; the value received is the handle). If the send fails the
 * caller keeps its reference. Returns as tt_chan_send, and TT_EINVAL (wrong elem_size, NULL ref),
 * TT_EPERM (no reference to via, or to ref). Calls: as tt_chan_send. */
TT_EXTERN int tt_chan_send_ref(tt_chan *via, tt_chan *ref);
TT_EXTERN int tt_chan_send_ref_dl(tt_chan *via, tt_chan *ref, int64_t deadline);

/* The channel's name (NULL if none). Calls: never blocks; any thread. */
TT_EXTERN const char *tt_chan_name(tt_chan *ch);

/* ---- select ---------------------------------------------------------------------------------- */

enum { TT_SELECT_RECV = 1, TT_SELECT_SEND = 2 };

/* One case of a select. Fill in op, ch and val; the select fills in ok and err of the case that
 * fires. */
typedef struct tt_select_case {
  int op;      /* TT_SELECT_RECV or TT_SELECT_SEND */
  tt_chan *ch; /* NULL: the case is never ready (Go's nil channel) */
  void *val;   /* send: the value to send; receive: where to store it (as tt_chan_recv) */
  bool ok;     /* out, receive: true for a value, false for a closed channel */
  int err;     /* out: 0, or TT_ECLOSED (a receive from a closed channel, a send on one) */
} tt_select_case;

/* Initializers: TT_CASE_RECV(ch, &v), TT_CASE_SEND(ch, &v). */
#define TT_CASE_RECV(ch, ptr) ((tt_select_case){TT_SELECT_RECV, (ch), (ptr), false, 0})
#define TT_CASE_SEND(ch, ptr) ((tt_select_case){TT_SELECT_SEND, (ch), (void *)(ptr), false, 0})

/* Waits until one of the n cases can proceed and performs it, as Go's select: if several can, one
 * is chosen uniformly at random (from the run's seed in deterministic mode). Returns the index of
 * the case that fired (its ok and err say how; a send on a closed channel fires with err =
 * TT_ECLOSED where Go panics), or TT_EINVAL (NULL cases with n > 0, an unknown op, a NULL val for a
 * non-zero elem_size), TT_EPERM (a tracked channel the caller holds no reference to), TT_ECANCELED,
 * TT_ESHUTDOWN, TT_ENOTRUNNING. n == 0 waits forever (wait reason "select (no cases)"); otherwise
 * the wait reason is "select". The same channel may appear in several cases.
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_select(tt_select_case *cases, size_t n);
/* tt_select with a deadline: TT_ETIMEDOUT when it passes first (no case fired). */
TT_EXTERN int tt_select_dl(tt_select_case *cases, size_t n, int64_t deadline);
/* tt_select with a default case: TT_EAGAIN when no case is ready at once (Go's default branch).
 * Calls: never blocks; not a cancel point; any thread. */
TT_EXTERN int tt_select_try(tt_select_case *cases, size_t n);

/* ---- Typed conveniences ---------------------------------------------------------------------- */

/* tt_chan_send_val(ch, int, 42): sends a value of the given type without a named temporary. */
#define tt_chan_send_val(ch, type, value) tt_chan_send((ch), &(type){(value)})
/* tt_chan_recv_val(ch, int, &err): receives and yields a value of the given type (the zero value
 * on failure); *errp (an int *, may be NULL) receives tt_chan_recv's result. GNU C. */
#define tt_chan_recv_val(ch, type, errp)                                                           \
  __extension__({                                                                                  \
    type tt_v_;                                                                                    \
    __builtin_memset(&tt_v_, 0, sizeof tt_v_);                                                     \
    int tt_r_ = tt_chan_recv((ch), &tt_v_, (bool *)0);                                             \
    int *tt_e_ = (errp);                                                                           \
    if (tt_e_)                                                                                     \
      *tt_e_ = tt_r_;                                                                              \
    tt_v_;                                                                                         \
  })

TT_END_DECLS

#endif
