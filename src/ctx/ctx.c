/* SPDX-License-Identifier: MIT */
/* Contexts, and how their cancellation reaches the coroutines blocked under them.
 *
 * Design
 * ------
 * Three kinds: the background context (static, never cancelled), cancellable contexts (with a
 * lock, an error, a done channel, maybe a deadline timer) and value contexts (a key and a value,
 * nothing else). Every context knows its *anchor*: itself if cancellable, else its parent's
 * anchor (NULL under the background context). A value context is cancelled exactly when its
 * anchor is, so everything about cancellation happens at anchors:
 *   - children: each cancellable context sits on its parent's anchor's list of children (a weak
 *     link: the child holds a reference to its parent, not the reverse);
 *   - members: each coroutine whose current context is C sits on C's anchor's member list.
 * Both lists, the error and the cause are under the anchor's lock.
 *
 * Cancelling C walks C's subtree with a work list (no recursion: a chain of a million contexts is
 * fine). At each context it sets the error, takes its children off its list (holding a reference
 * to each until it is handled), and sets TT__CANCEL_CTX in the `cancelled` word of each member;
 * then it closes the done channel. The members are collected, and once the walk is done (or 1,024
 * of them are pending) they are woken in one batch: the canceller holds each still with its scan
 * bit (the protocol of the diagnostics, internal.h), issues one asymmetric barrier for the whole
 * batch, and wakes with TT_ECANCELED those it finds parked with a cancellation pending. The
 * barrier pairs with the light fence in finish_switch: a coroutine parking concurrently either is
 * seen parked here or sees its flag there and wakes itself. A batch is sorted by address, and
 * holds are always taken in address order (as the registry walk takes them), so two cancellers and
 * a scanner never wait on each other in a cycle.
 *
 * A coroutine joining an anchor (spawned under it, or entering a region) links itself under the
 * anchor's lock and copies the anchor's state into its CTX bit there, so a cancellation is
 * either seen at the join or finds the coroutine on the list.
 *
 * Freeing: the last release unlinks the context from its parent's anchor, stops its timer (or,
 * when its callback is under way, leaves the rest of the free to that callback), releases its
 * done channel and its carried channel, and releases
 * its parent — iteratively, up the chain. A context with children or members is never freed:
 * both hold references.
 *
 * The deadline timer is a program timer in a worker's shared heap (src/time), with no reference:
 * freeing deletes it, and a callback under way (`firing`) finishes the free itself: waiting for it
 * could wait for ourselves (a callback's cancellation dropping the last reference to a context
 * whose own timer is due later in the same batch). */
#include <stdlib.h>
#include <string.h>

#include <signal.h>

#include "chan/chan_int.h"
#include "internal.h"
#include "leak/leak_int.h"
#include "signal/signal_int.h"
#include "tether/ctx.h"

enum { K_BACKGROUND, K_CANCEL, K_VALUE };

#define NO_DEADLINE INT64_MAX /* inside: "none" sorts after every deadline (TT_FOREVER is -1) */

struct tt_ctx {
  _Atomic uint32_t refs;
  uint8_t kind;
  bool linked;       /* on the children list of parent->anchor (under that lock) */
  bool armed;        /* its timer is in a heap (under lock) */
  bool free_pending; /* freed while its timer's callback ran: the callback frees it (under lock) */
  tt_ctx *parent;
  tt_ctx *anchor;   /* the nearest cancellable context at or above, or NULL */
  int64_t deadline; /* the effective deadline (its own or an ancestor's); NO_DEADLINE: none */
  /* Value contexts. */
  const void *key;
  void *value;
  tt__chan *vchan;    /* tt_ctx_with_chan: the carried channel */
  tt_chan *vhandle;   /* and its handle */
  tt__holder *holder; /* the context's own references (a tracked vchan) */
  /* Cancellable contexts. */
  tt__lock lock;
  _Atomic int err; /* 0 until cancelled; written under lock, read without it */
  int cause;
  int64_t cancelled_at; /* tt_now() when cancelled; written before err (tt__ctx_cancelled_at) */
  tt_chan *done;        /* closed at cancellation; the context's reference */
  tt_ctx *children;
  tt_ctx *sib_next, *sib_prev; /* on the parent anchor's children list */
  tt_ctx *wnext;               /* a canceller's work list */
  tt__coro *members;
  tt__timer timer;
  tt__worker *home;
  uint64_t run_id;
  struct tt__sighook *sighook; /* tt_ctx_with_signals */
};

static tt_ctx background = {.kind = K_BACKGROUND, .deadline = NO_DEADLINE};

/* Contexts made and not yet freed, for the tests' leak checks. */
static _Atomic int64_t nlive;
int64_t tt__ctx_count_live(void) { return atomic_load_explicit(&nlive, memory_order_relaxed); }

tt_ctx *tt_ctx_background(void) { return &background; }

tt_ctx *tt_ctx_retain(tt_ctx *c) {
  if (c && c->kind != K_BACKGROUND) {
    tt__thread_mut_begin(); /* the leak proof counts contexts' references */
    /* relaxed: the caller holds a reference, so the count cannot reach zero meanwhile. */
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    tt__thread_mut_end();
  }
  return c;
}

/* A reference for a canceller that finds c on a list without holding one: fails once the count
 * has reached zero (c is being freed and will unlink itself). Under the list's lock. */
static bool try_retain(tt_ctx *c) {
  uint32_t n = atomic_load_explicit(&c->refs, memory_order_relaxed);
  while (n != 0) {
    /* relaxed: the list's lock orders us against the unlink of a context being freed. */
    if (atomic_compare_exchange_weak_explicit(&c->refs, &n, n + 1, memory_order_relaxed,
                                              memory_order_relaxed))
      return true;
  }
  return false;
}

/* ---- Members ------------------------------------------------------------------------------ */

/* Puts co (running: the caller itself, or a child not yet published) on anchor a's member list,
 * and its CTX bit in step with a's state. */
static void member_join(tt_ctx *a, tt__coro *co) {
  tt__lock_acquire(&a->lock);
  co->ctx_prev = NULL;
  co->ctx_next = a->members;
  if (a->members)
    a->members->ctx_prev = co;
  a->members = co;
  /* relaxed: the anchor's lock orders this against a canceller's fetch_or (also under it), and
   * only the coroutine clears its own bits. */
  if (atomic_load_explicit(&a->err, memory_order_relaxed))
    atomic_fetch_or_explicit(&co->cancelled, TT__CANCEL_CTX, memory_order_relaxed);
  else
    atomic_fetch_and_explicit(&co->cancelled, ~(uint32_t)TT__CANCEL_CTX, memory_order_relaxed);
  tt__lock_release(&a->lock);
}

static void member_leave(tt_ctx *a, tt__coro *co) {
  tt__lock_acquire(&a->lock);
  if (co->ctx_prev)
    co->ctx_prev->ctx_next = co->ctx_next;
  else
    a->members = co->ctx_next;
  if (co->ctx_next)
    co->ctx_next->ctx_prev = co->ctx_prev;
  co->ctx_next = co->ctx_prev = NULL;
  tt__lock_release(&a->lock);
}

/* Makes c (a reference the caller gives away, or NULL) co's current context. */
static void set_current(tt__coro *co, tt_ctx *c) {
  tt_ctx *old = co->ctx;
  tt_ctx *oa = old ? old->anchor : NULL, *na = c ? c->anchor : NULL;
  if (oa != na) {
    if (oa)
      member_leave(oa, co);
    if (na)
      member_join(na, co);
    else
      atomic_fetch_and_explicit(&co->cancelled, ~(uint32_t)TT__CANCEL_CTX, memory_order_relaxed);
  }
  co->ctx = c;
}

void tt__ctx_spawn(tt__coro *child, tt_ctx *c) {
  if (c == NULL || c->kind == K_BACKGROUND)
    return;
  tt_ctx_retain(c);
  child->ctx = c;
  if (c->anchor)
    member_join(c->anchor, child);
}

void tt__ctx_exit(tt__coro *co) {
  tt_ctx *c = co->ctx;
  if (c && c->anchor)
    member_leave(c->anchor, co);
  co->ctx = NULL;
  tt_ctx_release(c);
  /* Regions never left: the contexts they saved. */
  while (co->ctx_depth)
    tt_ctx_release(co->ctx_saved[--co->ctx_depth]);
  free(co->ctx_saved);
  co->ctx_saved = NULL;
  co->ctx_cap = 0;
  co->shield = 0;
  atomic_store_explicit(&co->cancelled, 0, memory_order_relaxed);
}

/* ---- Cancelling -------------------------------------------------------------------------- */

#define BATCH 1024

typedef struct cancel_run {
  tt__coro **v;
  size_t n, cap;
} cancel_run;

static int by_address(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (tt__coro *const *)a, y = (uintptr_t) * (tt__coro *const *)b;
  return (x > y) - (x < y);
}

/* Wakes the collected members that are parked with a cancellation pending. */
static void flush(cancel_run *r) {
  if (r->n == 0)
    return;
  qsort(r->v, r->n, sizeof r->v[0], by_address);
  size_t k = 0; /* a coroutine that moved between two contexts of the walk is listed twice */
  for (size_t i = 0; i < r->n; i++)
    if (k == 0 || r->v[k - 1] != r->v[i])
      r->v[k++] = r->v[i];
  tt__coro_cancel_wake(r->v, k);
  r->n = 0;
}

static void timer_stop(tt_ctx *c);

/* Cancels c's subtree. */
/* Cancellation walks under way, process-wide. A walk that finds a context already cancelled
 * leaves its subtree to the walk that cancelled it, which may still be going (a deadline timer
 * firing on another worker): before it returns, it waits for the walks under way to finish, so
 * that when tt_ctx_cancel returns every descendant is cancelled, as Go's cancel guarantees. No
 * walk waits for anything while it runs (it takes one lock at a time and never blocks), and
 * none runs interleaved with another on one thread (a timer's walk finishes before its worker
 * switches), so the wait always ends; it is bounded all the same (WALK_WAIT), against a stream
 * of new walks that would keep the count up. cancel returns whether it skipped; only
 * tt_ctx_cancel waits. */
static _Atomic int walks;
#define WALK_WAIT (100 * TT_MSEC)

static bool cancel(tt_ctx *c, int err, int cause) {
  tt__coro *few[16];    /* without memory, small batches: more barriers, still correct */
  bool skipped = false; /* a context already cancelled by another walk */
  /* seq_cst: a walk that skips ours sees it counted before it reads the count. */
  atomic_fetch_add_explicit(&walks, 1, memory_order_seq_cst);
  cancel_run run = {malloc(BATCH * sizeof(tt__coro *)), 0, BATCH}, *r = &run;
  if (run.v == NULL) {
    run.v = few;
    run.cap = sizeof few / sizeof few[0];
  }
  /* The work list holds the children we took off their parents' lists: ours alone. c itself is
   * not put on it: another canceller may hold c on its own list (c's parent's cancellation), and
   * c->wnext is that list's link. */
  tt_ctx *work = NULL;
  int64_t now = tt__clock();
  for (tt_ctx *x = c; x; x = work, work = work ? work->wnext : NULL) {
    tt__lock_acquire(&x->lock);
    bool first = atomic_load_explicit(&x->err, memory_order_relaxed) == 0;
    skipped |= !first;
    if (first) {
      /* release: tt_ctx_err readers that see it see the cause and the time too. */
      x->cause = cause;
      x->cancelled_at = now;
      atomic_store_explicit(&x->err, err, memory_order_release);
      timer_stop(x);
      for (tt_ctx *ch = x->children, *nx; ch; ch = nx) {
        nx = ch->sib_next;
        if (!try_retain(ch))
          continue; /* being freed: it unlinks itself once we let go of the lock */
        if (ch->sib_prev)
          ch->sib_prev->sib_next = ch->sib_next;
        else
          x->children = ch->sib_next;
        if (ch->sib_next)
          ch->sib_next->sib_prev = ch->sib_prev;
        ch->sib_next = ch->sib_prev = NULL;
        ch->linked = false;
        ch->wnext = work;
        work = ch;
      }
      for (tt__coro *m = x->members; m; m = m->ctx_next) {
        /* seq_cst: the flag is stored before flush's barrier and the states it reads (the
         * Dekker pair with finish_switch). */
        atomic_fetch_or_explicit(&m->cancelled, TT__CANCEL_CTX, memory_order_seq_cst);
        r->v[r->n++] = m;
        if (r->n == r->cap)
          flush(r);
      }
    }
    tt__lock_release(&x->lock);
    if (first)
      tt_chan_close(x->done);
    if (x != c)
      tt_ctx_release(x);
  }
  flush(r);
  if (run.v != few)
    free(run.v);
  atomic_fetch_sub_explicit(&walks, 1, memory_order_seq_cst);
  return skipped;
}

/* For tt_ctx_cancel's callers, who are promised every descendant cancelled on return (a timer's
 * or a signal hook's walk has nobody waiting on it, and does not wait). */
static void walks_wait(void) {
  int64_t give_up = tt__clock() + WALK_WAIT;
  uint32_t spins = 0;
  while (atomic_load_explicit(&walks, memory_order_seq_cst) > 0 && tt__clock() < give_up)
    tt__spin_step(&spins);
}

int tt_ctx_cancel_cause(tt_ctx *c, int cause) {
  if (c == NULL || c->kind != K_CANCEL)
    return TT_EINVAL;
  if (cancel(c, TT_ECANCELED, cause ? cause : TT_ECANCELED))
    walks_wait();
  return 0;
}

int tt_ctx_cancel(tt_ctx *c) { return tt_ctx_cancel_cause(c, 0); }

/* ---- The deadline timer --------------------------------------------------------------------- */

#define CTX_OF_TIMER(tp) ((tt_ctx *)(void *)((char *)(tp)-offsetof(tt_ctx, timer)))

static void ctx_free(tt_ctx *c);

static void timer_fire(tt__timer *t, int64_t now) {
  (void)now;
  tt_ctx *c = CTX_OF_TIMER(t);
  /* No reference: a release that frees the context meanwhile leaves the free to us. */
  cancel(c, TT_ETIMEDOUT, TT_ETIMEDOUT);
  tt__lock_acquire(&c->lock);
  bool free_it = c->free_pending;
  /* relaxed: the context's lock orders it against ctx_free's look. */
  atomic_store_explicit(&t->firing, 0, memory_order_relaxed);
  tt__lock_release(&c->lock);
  if (free_it)
    ctx_free(c);
}

static void timer_orphan(tt__timer *t) {
  tt_ctx *c = CTX_OF_TIMER(t);
  tt__lock_acquire(&c->lock);
  c->armed = false;
  c->home = NULL;
  tt__lock_release(&c->lock);
}

/* Takes the timer out of its heap if it is there; c->lock held. A callback under way is left to
 * finish (freeing waits for it). */
static void timer_stop(tt_ctx *c) {
  if (c->armed && c->home && c->run_id == tt__rt.run_id)
    tt__timer_del(&c->home->ptimers, &c->timer);
  c->armed = false;
}

/* Arms c's timer for c->deadline; c is not yet visible to anyone else. */
static int timer_arm(tt_ctx *c) {
  if (!tt_running())
    return TT_ENOTRUNNING;
  tt__worker *w = tt__tls_worker;
  if (w == NULL)
    w = &tt__rt.workers[tt__chan_rand() % (uint64_t)tt__rt.procs];
  c->timer.index = UINT32_MAX;
  c->timer.fire = timer_fire;
  c->timer.orphan = timer_orphan;
  c->timer.when = c->deadline;
  c->timer.key = tt__timer_key(w, c->deadline, tt__clock());
  c->home = w;
  c->run_id = tt__rt.run_id;
  tt__lock_acquire(&c->lock);
  int r = tt__timer_add(&w->ptimers, &c->timer);
  if (r >= 0)
    c->armed = true;
  tt__lock_release(&c->lock);
  if (r < 0)
    return r;
  if (r == 1 && w != tt__tls_worker) {
    /* The new earliest timer of a worker that may sleep past it (see arm in atimer.c). */
    atomic_thread_fence(memory_order_seq_cst);
    tt__worker_wake(w);
  }
  return 0;
}

/* ---- Making and freeing ------------------------------------------------------------------- */

static void ctx_free(tt_ctx *c) {
  while (c) {
    tt_ctx *parent = c->parent;
    if (c->kind == K_CANCEL) {
      /* First the hook: once it is gone no signal can cancel (touch) us. */
      tt__signal_hook_del(c->sighook);
      c->sighook = NULL; /* (a free finished by the timer's callback comes through here again) */
      tt_ctx *pa = parent ? parent->anchor : NULL;
      if (pa) {
        tt__lock_acquire(&pa->lock);
        if (c->linked) {
          if (c->sib_prev)
            c->sib_prev->sib_next = c->sib_next;
          else
            pa->children = c->sib_next;
          if (c->sib_next)
            c->sib_next->sib_prev = c->sib_prev;
          c->linked = false;
        }
        tt__lock_release(&pa->lock);
      }
      tt__lock_acquire(&c->lock);
      timer_stop(c);
      /* A callback under way (the timer left its heap, `firing` was set under the heap's lock,
       * which timer_stop took after it) finishes the free: waiting for it here could wait for
       * ourselves — a callback that frees a context whose own timer is due in the same batch. */
      bool firing = atomic_load_explicit(&c->timer.firing, memory_order_relaxed) != 0;
      if (firing)
        c->free_pending = true;
      tt__lock_release(&c->lock);
      if (firing)
        return;
      if (c->done) {
        tt__chan_of(c->done)->dctx = NULL;
        tt_chan_release(c->done);
      }
    }
    if (c->holder) {
      tt__holder_drop_all(c->holder);
      free(c->holder);
    } else if (c->vhandle) {
      tt_chan_release(c->vhandle); /* untracked or detached: a plain count */
    }
    free(c);
    atomic_fetch_sub_explicit(&nlive, 1, memory_order_relaxed);
    /* The parent's reference, iteratively: a long chain must not recurse. */
    if (parent == NULL || parent->kind == K_BACKGROUND ||
        atomic_fetch_sub_explicit(&parent->refs, 1, memory_order_acq_rel) != 1)
      break;
    c = parent;
  }
}

void tt_ctx_release(tt_ctx *c) {
  if (c == NULL || c->kind == K_BACKGROUND)
    return;
  tt__thread_mut_begin(); /* the leak proof counts contexts' references */
  /* acq_rel: every holder's use happens before the last one frees. */
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
    ctx_free(c);
  tt__thread_mut_end();
  tt__leak_event("tt_ctx_release", c, NULL);
}

static tt_ctx *ctx_new(tt_ctx *parent, int kind) {
  tt_ctx *c = tt__calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  atomic_fetch_add_explicit(&nlive, 1, memory_order_relaxed);
  atomic_init(&c->refs, 1);
  c->kind = (uint8_t)kind;
  c->parent = tt_ctx_retain(parent);
  c->anchor = kind == K_CANCEL ? c : parent->anchor;
  c->deadline = parent->deadline;
  c->timer.index = UINT32_MAX;
  return c;
}

/* A cancellable child of parent due at deadline (NO_DEADLINE: none). */
static int with_cancel(tt_ctx *parent, int64_t deadline, tt_ctx **out) {
  if (parent == NULL || out == NULL)
    return TT_EINVAL;
  *out = NULL;
  bool timed = deadline < parent->deadline;
  if (timed && !tt_running())
    return TT_ENOTRUNNING;
  tt_ctx *c = ctx_new(parent, K_CANCEL);
  if (c == NULL)
    return TT_ENOMEM;
  tt_chan_opts o = {.mode = TT_CHAN_UNTRACKED, .name = "context done"};
  int err = tt_chan_make_opt(&c->done, 0, 0, &o);
  if (err) {
    ctx_free(c);
    return err;
  }
  tt__chan_of(c->done)->dctx = c; /* the leak proof reads a wait on it as one on c */
  tt_ctx *pa = parent->anchor;
  int perr = 0, pcause = 0;
  if (pa) {
    tt__lock_acquire(&pa->lock);
    perr = atomic_load_explicit(&pa->err, memory_order_relaxed);
    pcause = pa->cause;
    if (perr == 0) {
      c->sib_next = pa->children;
      if (pa->children)
        pa->children->sib_prev = c;
      pa->children = c;
      c->linked = true;
    }
    tt__lock_release(&pa->lock);
  }
  if (perr) {
    cancel(c, perr, pcause); /* born under a cancelled parent */
  } else if (timed) {
    c->deadline = deadline;
    if (deadline <= tt__clock()) {
      cancel(c, TT_ETIMEDOUT, TT_ETIMEDOUT);
    } else if ((err = timer_arm(c)) != 0) {
      tt_ctx_release(c);
      return err;
    }
  }
  *out = c;
  return 0;
}

int tt_ctx_with_cancel(tt_ctx *parent, tt_ctx **out) {
  return with_cancel(parent, NO_DEADLINE, out);
}

int tt_ctx_with_deadline(tt_ctx *parent, int64_t deadline, tt_ctx **out) {
  return with_cancel(parent, deadline == TT_FOREVER ? NO_DEADLINE : deadline, out);
}

int tt_ctx_with_timeout(tt_ctx *parent, int64_t timeout, tt_ctx **out) {
  int64_t now = tt__clock();
  if (timeout < 0)
    timeout = 0;
  return with_cancel(parent, timeout >= NO_DEADLINE - now ? NO_DEADLINE : now + timeout, out);
}

static void on_signal(void *arg, int sig) { cancel(arg, TT_ECANCELED, sig); }

int tt_ctx_with_signals(tt_ctx *parent, const int *sigs, size_t n, tt_ctx **out) {
  static const int dflt[] = {SIGINT, SIGTERM};
  if (sigs == NULL && n > 0)
    return TT_EINVAL;
  if (n == 0) {
    sigs = dflt;
    n = 2;
  }
  int err = with_cancel(parent, NO_DEADLINE, out);
  if (err)
    return err;
  tt_ctx *c = *out;
  if (tt_ctx_err(c) == 0 && (err = tt__signal_hook_add(sigs, n, on_signal, c, &c->sighook)) != 0) {
    *out = NULL;
    tt_ctx_release(c);
    return err;
  }
  return 0;
}

int tt_ctx_with_value(tt_ctx *parent, const void *key, void *value, tt_ctx **out) {
  if (parent == NULL || key == NULL || out == NULL)
    return TT_EINVAL;
  *out = NULL;
  tt_ctx *c = ctx_new(parent, K_VALUE);
  if (c == NULL)
    return TT_ENOMEM;
  c->key = key;
  c->value = value;
  *out = c;
  return 0;
}

int tt_ctx_with_chan(tt_ctx *parent, const void *key, tt_chan *ch, tt_ctx **out) {
  if (parent == NULL || key == NULL || ch == NULL || out == NULL)
    return TT_EINVAL;
  *out = NULL;
  /* The context's own reference: a copy of the caller's (TT_EPERM without one), or for an
   * untracked or detached channel one more on its plain count. */
  tt__holder *h = NULL;
  int err = tt__refs_share(&h, &ch, 1, TT_SHARE_COPY, "tt_ctx_with_chan");
  if (err == 0 && h == NULL)
    err = tt_chan_retain(ch);
  if (err)
    return err;
  tt_ctx *c = ctx_new(parent, K_VALUE);
  if (c == NULL) {
    if (h) {
      tt__holder_drop_all(h);
      free(h);
    } else {
      tt_chan_release(ch);
    }
    return TT_ENOMEM;
  }
  if (h) {
    h->kind = TT__HOLDER_CTX;
    h->owner = c;
  }
  c->key = key;
  c->vchan = tt__chan_of(ch);
  c->holder = h;
  c->vhandle = ch;
  *out = c;
  return 0;
}

/* The nearest value context under key, or NULL. */
static tt_ctx *find_key(tt_ctx *c, const void *key) {
  for (; c; c = c->parent)
    if (c->kind == K_VALUE && c->key == key)
      return c;
  return NULL;
}

void *tt_ctx_value(tt_ctx *c, const void *key) {
  tt_ctx *v = find_key(c, key);
  return v && v->vhandle == NULL ? v->value : NULL;
}

int tt_ctx_chan(tt_ctx *c, const void *key, tt_chan **out) {
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  tt_ctx *v = find_key(c, key);
  if (v == NULL || v->vhandle == NULL)
    return TT_EINVAL;
  if (v->holder) {
    /* A duplication from the context's reference to the caller's table. */
    tt__holder *self = tt__holder_self(true);
    if (self == NULL || tt__ref_add(self, v->vchan, 1) != 0)
      return TT_ENOMEM;
  } else {
    int err = tt_chan_retain(v->vhandle);
    if (err)
      return err;
  }
  *out = v->vhandle;
  return 0;
}

/* ---- Reading ---------------------------------------------------------------------------- */

int tt_ctx_err(tt_ctx *c) {
  if (c == NULL || c->anchor == NULL)
    return 0;
  /* acquire: pairs with the canceller's release store. */
  return atomic_load_explicit(&c->anchor->err, memory_order_acquire);
}

int tt_ctx_cause(tt_ctx *c) {
  if (c == NULL || c->anchor == NULL)
    return 0;
  tt_ctx *a = c->anchor;
  /* acquire: the cause was written before the error was released. */
  if (atomic_load_explicit(&a->err, memory_order_acquire) == 0)
    return 0;
  return a->cause;
}

/* For the leak suspects' CANCEL_IGNORED (src/leak/suspect.c). co->ctx changes only when co
 * itself runs, and co holds a reference to it, so it is stable and alive while co is held. */
int64_t tt__ctx_cancelled_at(const tt__coro *co) {
  tt_ctx *c = co->ctx;
  if (c == NULL || c->anchor == NULL)
    return 0;
  /* acquire: pairs with the canceller's release store of err, made after cancelled_at. */
  if (atomic_load_explicit(&c->anchor->err, memory_order_acquire) == 0)
    return 0;
  return c->anchor->cancelled_at;
}

tt_chan *tt_ctx_done(tt_ctx *c) { return c && c->anchor ? c->anchor->done : NULL; }

int tt_ctx_deadline(tt_ctx *c, int64_t *deadline) {
  if (c == NULL)
    return TT_EINVAL;
  if (c->deadline == NO_DEADLINE)
    return 0;
  if (deadline)
    *deadline = c->deadline;
  return 1;
}

/* ---- The current context ------------------------------------------------------------------ */

tt_ctx *tt_ctx_current(void) {
  tt__coro *co = tt__self();
  return co && co->ctx ? co->ctx : &background;
}

int tt_ctx_enter(tt_ctx_scope *s, tt_ctx *c) {
  if (s == NULL || c == NULL)
    return TT_EINVAL;
  tt__coro *co = tt__self();
  if (co == NULL)
    return TT_ENOTCORO;
  if (co->ctx_depth == co->ctx_cap) {
    uint32_t cap = co->ctx_cap ? co->ctx_cap * 2 : 4;
    tt_ctx **v = tt__realloc(co->ctx_saved, cap * sizeof *v);
    if (v == NULL)
      return TT_ENOMEM;
    co->ctx_saved = v;
    co->ctx_cap = cap;
  }
  co->ctx_saved[co->ctx_depth++] = co->ctx; /* the coroutine's reference, kept for the leave */
  s->co_ = co;
  s->depth_ = co->ctx_depth;
  set_current(co, c->kind == K_BACKGROUND ? NULL : tt_ctx_retain(c));
  return 0;
}

int tt_ctx_leave(tt_ctx_scope *s) {
  tt__coro *co = tt__self();
  if (co == NULL)
    return TT_ENOTCORO;
  if (s == NULL || s->co_ != co || s->depth_ != co->ctx_depth || co->ctx_depth == 0)
    return TT_EINVAL;
  tt_ctx *cur = co->ctx;
  set_current(co, co->ctx_saved[--co->ctx_depth]);
  s->co_ = NULL;
  tt_ctx_release(cur);
  return 0;
}

int tt_shield_begin(void) {
  tt__coro *co = tt__self();
  if (co == NULL)
    return TT_ENOTCORO;
  if (co->shield++ == 0)
    /* relaxed: only this coroutine reads the bit, in its own blocking calls and parks. */
    atomic_fetch_or_explicit(&co->cancelled, TT__CANCEL_SHIELD, memory_order_relaxed);
  return 0;
}

int tt_shield_end(void) {
  tt__coro *co = tt__self();
  if (co == NULL)
    return TT_ENOTCORO;
  if (co->shield == 0)
    return TT_EINVAL;
  if (--co->shield == 0)
    atomic_fetch_and_explicit(&co->cancelled, ~(uint32_t)TT__CANCEL_SHIELD, memory_order_relaxed);
  return 0;
}

/* ---- For the leak proof (src/leak/proof.c) --------------------------------------------------- */

struct tt_ctx *tt__ctx_anchor(struct tt_ctx *c) {
  return c ? c->anchor : NULL;
}

void tt__ctx_get_facts(struct tt_ctx *a, tt__ctx_facts *f) {
  tt__lock_acquire(&a->lock);
  f->root = atomic_load_explicit(&a->err, memory_order_relaxed) != 0 ||
            a->deadline != NO_DEADLINE || a->sighook != NULL;
  f->parent_anchor = a->parent ? a->parent->anchor : NULL;
  f->refs = atomic_load_explicit(&a->refs, memory_order_relaxed);
  f->nchildren = 0;
  /* Only the children whose parent is a itself hold a reference to it (one below a value
   * context holds one to that context, which holds one to a: a reference the proof cannot
   * attribute, which keeps a live). */
  for (tt_ctx *k = a->children; k; k = k->sib_next)
    f->nchildren += k->parent == a;
  f->members = a->members;
  tt__lock_release(&a->lock);
}
