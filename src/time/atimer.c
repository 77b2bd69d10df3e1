/* SPDX-License-Identifier: MIT */
/* The program's timers: tt_after, tt_timer_make, tt_ticker_make, tt_after_func, and stopping and
 * resetting them.
 *
 * Design
 * ------
 * A program timer is a channel (elements: the int64_t firing time, capacity 1) that owns a timer
 * in a worker's heap, so it has one handle and one reference story: whoever holds the channel
 * may receive from it, stop it or reset it, and the timer goes when the channel's last reference
 * goes — an unreceived tt_after is freed when released, never left behind (Go leaked these until
 * 1.23).
 *
 * Each timer lives in one worker's heap for the whole run (its home: the worker that made it, or
 * a random one for a plain thread), so its callbacks run one at a time, on that worker. Its own
 * lock `lk` serialises stopping, resetting and firing; the lock order is lk, then the heap's lock
 * or the channel's lock. Every stop or reset bumps the generation `gen`; a callback whose timer
 * left the heap under an older generation (it lost a race with a stop or reset) does nothing.
 * As in Go 1.23, a stop or reset also discards a value sent and not yet received, so no stale
 * time is received after either returns.
 *
 * Freeing the channel stops the timer and waits for a callback already under way (`firing`),
 * which takes microseconds at most: it never blocks. */
#include <stdlib.h>
#include <string.h>

#include "chan/chan_int.h"

enum { ONESHOT, TICKER, FUNC };

typedef struct tt__atimer {
  tt__timer t; /* the heap node; t.fire = fire */
  tt__lock lk; /* protects the fields below */
  tt__chan *c; /* the channel that owns this timer */
  int kind;
  bool armed;      /* in the heap, or due and not yet handled */
  bool orphan;     /* its heap went with the runtime: never armed again in that run */
  bool self_owned; /* tt_after_func without a handle: the timer holds the one reference */
  int64_t period;  /* tickers */
  void (*fn)(void *);
  void *arg;
  tt_id creator;
  void *pc;
  uint64_t scope; /* the leak-check scope it was armed in: its coroutine starts in it */
  tt__worker *home;
  uint64_t run_id;  /* the run home belongs to */
  tt__holder *refs; /* tt_after_func_opt's references, until the coroutine they go to starts */
  uint64_t gen;
} tt__atimer;

#define ATIMER(tp) ((tt__atimer *)(void *)((char *)(tp)-offsetof(tt__atimer, t)))

static void fire(tt__timer *t, int64_t now);

/* Puts the timer in its home heap, due at when; lk held, not armed. */
static int arm(tt__atimer *a, int64_t when) {
  tt__worker *w = a->home;
  /* A timer made in an earlier run (its channel outlived it) is dead: its worker is gone. */
  if (w == NULL || a->orphan || a->run_id != tt__rt.run_id || !tt_running())
    return TT_ENOTRUNNING;
  int64_t now = tt__clock();
  a->t.when = when;
  a->t.key = tt__timer_key(w, when, now);
  a->t.gen = a->gen;
  int r = tt__timer_add(&w->ptimers, &a->t);
  if (r < 0)
    return r;
  a->armed = true;
  if (r == 1 && w != tt__tls_worker) {
    /* The new earliest timer of a worker that may sleep past it: wake it to look again. The fence
     * orders our add (under its heap's lock) before the check of its sleeping flag; it stores
     * the flag before reading the heap under the same lock (see find_runnable). */
    atomic_thread_fence(memory_order_seq_cst);
    tt__worker_wake(w);
  }
  return 0;
}

/* Takes the timer out of its heap and invalidates a callback under way; lk held. Returns whether
 * it was armed. */
static bool disarm(tt__atimer *a) {
  bool was = a->armed;
  if (a->armed && a->home && !a->orphan && a->run_id == tt__rt.run_id)
    tt__timer_del(&a->home->ptimers, &a->t);
  a->armed = false;
  a->gen++;
  return was;
}

/* Discards a buffered tick: Go 1.23's rule that nothing stale is received after a stop or reset. */
static void drain(tt__chan *c) {
  int how = tt__chan_lock(c);
  c->count = 0;
  c->recvx = c->sendx = 0;
  tt__chan_unlock(c, how);
}

static void deliver(tt__chan *c, int64_t now) {
  tt__chan_wait *woken;
  int how = tt__chan_lock(c);
  /* A full buffer (an unreceived tick) drops this one, as Go's tickers do for slow receivers. */
  tt__chan_send_locked(c, &now, NULL, NULL, &woken);
  tt__chan_unlock(c, how);
  if (woken)
    tt__wake_commit(woken->wt);
}

static void fire(tt__timer *t, int64_t now) {
  tt__atimer *a = ATIMER(t);
  bool release = false;
  tt__lock_acquire(&a->lk);
  if (a->armed && t->fgen == a->gen) {
    a->armed = false;
    switch (a->kind) {
    case ONESHOT:
      deliver(a->c, now);
      break;
    case TICKER: {
      deliver(a->c, now);
      /* The next tick on the period's grid, skipping ticks missed while the worker was busy. */
      int64_t next = t->when + a->period;
      if (next <= now)
        next += ((now - next) / a->period + 1) * a->period;
      if (arm(a, next) != 0)
        tt__fatal("out of memory re-arming a ticker");
      break;
    }
    case FUNC:
      if (tt__spawn_from_sched(a->fn, a->arg, a->creator, a->pc, a->refs, a->scope) != 0)
        tt__fatal("cannot spawn a tt_after_func coroutine");
      a->refs = NULL; /* the coroutine's own table now */
      release = a->self_owned;
      break;
    }
  }
  tt__lock_release(&a->lk);
  tt__chan *c = a->c;
  /* release: the callback's work happens before a freer that waits for firing to clear. After
   * this store a may be freed at any moment. */
  atomic_store_explicit(&t->firing, 0, memory_order_release);
  if (release)
    tt_chan_release(tt__chan_handle(c)); /* the last reference: frees c and a */
}

void tt__atimer_destroy(tt__atimer *a) {
  tt__lock_acquire(&a->lk);
  disarm(a);
  tt__lock_release(&a->lk);
  uint32_t spins = 0;
  /* acquire: pairs with the callback's release store. */
  while (atomic_load_explicit(&a->t.firing, memory_order_acquire))
    tt__spin_step(&spins);
  if (a->refs) { /* never fired: the references it carried go with it */
    tt__holder_drop_all(a->refs);
    free(a->refs);
  }
  free(a);
}

void tt__atimer_orphan(tt__timer *t) {
  tt__atimer *a = ATIMER(t);
  tt__lock_acquire(&a->lk);
  a->armed = false;
  a->orphan = true;
  a->home = NULL;
  a->gen++;
  bool release = a->self_owned;
  tt__lock_release(&a->lk);
  if (release)
    tt_chan_release(tt__chan_handle(a->c));
}

/* Makes a timer channel of the given kind, armed to fire at now + d. refs (FUNC only, or NULL)
 * becomes the timer's: on failure it is freed with the references it holds. */
static int make(tt_chan **out, int kind, int64_t d, int64_t period, void (*fn)(void *), void *arg,
                void *pc, tt__holder *refs) {
  int err = TT_ENOTRUNNING;
  if (!tt_running())
    goto drop;
  bool self_owned = kind == FUNC && out == NULL;
  tt_chan *ch;
  tt_chan_opts o = {.mode = self_owned ? TT_CHAN_UNTRACKED : TT_CHAN_TRACKED};
  err = tt_chan_make_opt(&ch, kind == FUNC ? 0 : sizeof(int64_t), kind == FUNC ? 0 : 1, &o);
  if (err)
    goto drop;
  tt__atimer *a = tt__calloc(1, sizeof *a);
  if (a == NULL) {
    tt_chan_release(ch);
    err = TT_ENOMEM;
    goto drop;
  }
  tt__chan *c = tt__chan_of(ch);
  a->refs = refs; /* from here on freed with the timer */
  if (refs)
    refs->owner = a;
  a->t.index = UINT32_MAX;
  a->t.fire = fire;
  a->c = c;
  a->kind = kind;
  a->period = period;
  a->fn = fn;
  a->arg = arg;
  a->pc = pc;
  a->self_owned = self_owned;
  a->creator = tt_self();
  a->scope = tt__scope_current();
  tt__worker *w = tt__tls_worker;
  a->home = w ? w : &tt__rt.workers[tt__chan_rand() % (uint64_t)tt__rt.procs];
  a->run_id = tt__rt.run_id;
  c->timer = a;
  int64_t now = tt__clock();
  if (d < 0)
    d = 0;
  tt__lock_acquire(&a->lk);
  err = arm(a, d > INT64_MAX - now ? INT64_MAX : now + d);
  tt__lock_release(&a->lk);
  if (err) {
    tt_chan_release(ch); /* frees a too */
    return err;
  }
  if (out)
    *out = ch;
  return 0;
drop:
  if (refs) {
    tt__holder_drop_all(refs);
    free(refs);
  }
  return err;
}

int tt_timer_make(tt_chan **out, int64_t d) {
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  return make(out, ONESHOT, d, 0, NULL, NULL, NULL, NULL);
}

tt_chan *tt_after(int64_t d) {
  tt_chan *ch = NULL;
  return make(&ch, ONESHOT, d, 0, NULL, NULL, NULL, NULL) == 0 ? ch : NULL;
}

int tt_ticker_make(tt_chan **out, int64_t period) {
  if (out == NULL || period <= 0)
    return TT_EINVAL; /* Go panics: "non-positive interval for NewTicker" */
  *out = NULL;
  return make(out, TICKER, period, period, NULL, NULL, NULL, NULL);
}

int tt_after_func(tt_chan **out, int64_t d, void (*fn)(void *), void *arg) {
  if (fn == NULL)
    return TT_EINVAL;
  if (out)
    *out = NULL;
  return make(out, FUNC, d, 0, fn, arg, __builtin_return_address(0), NULL);
}

int tt_after_func_opt(tt_chan **out, int64_t d, void (*fn)(void *), void *arg,
                      tt_chan *const *share, size_t nshare) {
  if (fn == NULL || (share == NULL && nshare > 0))
    return TT_EINVAL;
  if (out)
    *out = NULL;
  tt__holder *refs = NULL;
  int err = tt__refs_share(&refs, share, nshare, TT_SHARE_COPY, "tt_after_func_opt");
  if (err)
    return err;
  if (refs)
    refs->kind = TT__HOLDER_TIMER;
  return make(out, FUNC, d, 0, fn, arg, __builtin_return_address(0), refs);
}

/* The timer of a timer channel the caller may use, or NULL with *err. */
static tt__atimer *timer_of(tt_chan *handle, const char *op, int *err) {
  if (handle == NULL) {
    *err = TT_EINVAL;
    return NULL;
  }
  tt__holder *self;
  tt__chan *c = tt__chan_check(handle, op, &self, err);
  if (c == NULL)
    return NULL;
  if (c->timer == NULL) {
    *err = TT_EINVAL;
    return NULL;
  }
  return c->timer;
}

int tt_timer_stop(tt_chan *handle) {
  int err;
  tt__atimer *a = timer_of(handle, "tt_timer_stop", &err);
  if (a == NULL)
    return err;
  tt__lock_acquire(&a->lk);
  bool was = disarm(a);
  if (a->kind != FUNC)
    drain(a->c);
  tt__lock_release(&a->lk);
  return was;
}

int tt_timer_reset(tt_chan *handle, int64_t d) {
  int err;
  tt__atimer *a = timer_of(handle, "tt_timer_reset", &err);
  if (a == NULL)
    return err;
  if (a->kind == TICKER && d <= 0)
    return TT_EINVAL;
  if (d < 0)
    d = 0;
  tt__lock_acquire(&a->lk);
  bool was = disarm(a);
  if (a->kind != FUNC)
    drain(a->c);
  if (a->kind == TICKER)
    a->period = d;
  int64_t now = tt__clock();
  err = arm(a, d > INT64_MAX - now ? INT64_MAX : now + d);
  tt__lock_release(&a->lk);
  return err ? err : was;
}
