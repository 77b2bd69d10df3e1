/* SPDX-License-Identifier: MIT */
/* Groups: errgroup semantics over the runtime's own waiting.
 *
 * A group counts its live children under its lock. tt_group_go takes a slot (waiting in the
 * slot queue at the limit), records the child and spawns it under the group's context; the child
 * runs fn through a trampoline that, once fn returns, records a first error (and cancels the
 * group's context with it as the cause), then gives its slot back: straight to the first waiter
 * in the slot queue if there is one (the count does not change), else the count drops, and at
 * zero every waiter of tt_group_wait wakes. Wakers claim waiters under the lock and commit them
 * after it (internal.h's protocol), and a child's unlock is its last touch of the group, so a
 * tt_group_wait that returns may free the group at once. A first error cancels the context
 * before the child gives back its slot, so no Wait can return (and no one free the group) while
 * the cancellation still runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sync/sync_int.h"
#include "tether/ctx.h"
#include "tether/group.h"

typedef struct gchild {
  struct tt_group *g;
  int (*fn)(void *);
  void *arg;
  tt_id id; /* set by the child when it starts (0 before), under the group's lock */
  char *name;
  struct gchild *next, *prev;
} gchild;

struct tt_group {
  tt__lock lock;
  tt_ctx *ctx;
  int limit;
  int64_t live; /* slots taken: children spawned (or being spawned) and not finished */
  int err;
  tt__wq waiters; /* tt_group_wait */
  tt__wq slots;   /* tt_group_go at the limit */
  gchild *children;
};

/* Queues the caller on q and waits (g->lock held; released on return). 0: woken by a child (a
 * slot handed over, or the count at zero); else the wait's own error, off the queue again. */
static int queue_wait(tt_group *g, tt__wq *q, int reason, int64_t deadline) {
  tt__coro *co = tt__self();
  int r = tt__block_check(co);
  if (r != 0) {
    tt__lock_release(&g->lock);
    return r;
  }
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  tt__wq_push(q, &wt);
  r = tt__wait(&wt, reason, g, deadline, &g->lock);
  if (tt__wait_self_result(r)) {
    tt__lock_acquire(&g->lock);
    tt__wq_unlink(q, &wt);
    tt__lock_release(&g->lock);
  }
  return r;
}

int tt_group_make(tt_ctx *parent, tt_group **out) {
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  tt_group *g = tt__calloc(1, sizeof *g);
  if (g == NULL)
    return TT_ENOMEM;
  int err = tt_ctx_with_cancel(parent ? parent : tt_ctx_current(), &g->ctx);
  if (err) {
    free(g);
    return err;
  }
  *out = g;
  return 0;
}

tt_ctx *tt_group_ctx(tt_group *g) { return g ? g->ctx : NULL; }

int tt_group_set_limit(tt_group *g, int n) {
  if (g == NULL)
    return TT_EINVAL;
  int r = 0;
  tt__lock_acquire(&g->lock);
  if (g->live > 0)
    r = TT_EBUSY;
  else
    g->limit = n > 0 ? n : 0;
  tt__lock_release(&g->lock);
  return r;
}

int64_t tt_group_live(tt_group *g) {
  if (g == NULL)
    return TT_EINVAL;
  tt__lock_acquire(&g->lock);
  int64_t n = g->live;
  tt__lock_release(&g->lock);
  return n;
}

/* Gives back a slot; g->lock held. Returns the waiters to commit once it is released. */
static tt__waiter *slot_put(tt_group *g) {
  /* Straight to a waiting spawner, if one is still there to claim. */
  for (tt__waiter *wt = g->slots.head, *nx; wt; wt = nx) {
    nx = wt->next;
    if (tt__wake_claim(wt, 0)) {
      tt__wq_unlink(&g->slots, wt);
      wt->next = NULL;
      return wt;
    }
  }
  tt__waiter *woken = NULL;
  if (--g->live == 0) {
    for (tt__waiter *wt = g->waiters.head, *nx; wt; wt = nx) {
      nx = wt->next;
      if (!tt__wake_claim(wt, 0))
        continue; /* a timeout or cancellation won it: it removes itself */
      tt__wq_unlink(&g->waiters, wt);
      wt->next = woken;
      woken = wt;
    }
  }
  return woken;
}

/* A child is done (or failed to spawn): off the group's list, its slot given back, freed. The
 * unlock is the last touch of the group. */
static void child_done(gchild *c) {
  tt_group *g = c->g;
  tt__lock_acquire(&g->lock);
  if (c->prev)
    c->prev->next = c->next;
  else
    g->children = c->next;
  if (c->next)
    c->next->prev = c->prev;
  tt__waiter *woken = slot_put(g);
  tt__lock_release(&g->lock);
  tt__wake_commit_list(woken);
  free(c->name);
  free(c);
}

static void child_main(void *p) {
  gchild *c = p;
  tt_group *g = c->g;
  tt__lock_acquire(&g->lock);
  c->id = tt_self();
  tt__lock_release(&g->lock);
  int r = c->fn(c->arg);
  if (r != 0) {
    bool first = false;
    tt__lock_acquire(&g->lock);
    if (g->err == 0) {
      g->err = r;
      first = true;
    }
    tt__lock_release(&g->lock);
    /* Before the slot goes back: our slot keeps Wait (and a free) away meanwhile. */
    if (first)
      tt_ctx_cancel_cause(g->ctx, r);
  }
  child_done(c);
}

/* Takes a slot, waiting at the limit unless try. */
static int slot_get(tt_group *g, bool try, int64_t deadline) {
  tt__lock_acquire(&g->lock);
  if (g->limit == 0 || g->live < g->limit) {
    g->live++;
    tt__lock_release(&g->lock);
    return 0;
  }
  if (try) {
    tt__lock_release(&g->lock);
    return TT_EAGAIN;
  }
  return queue_wait(g, &g->slots, TT_WAIT_SEMACQUIRE, deadline); /* 0: a child's slot */
}

static int group_go(tt_group *g, int (*fn)(void *), void *arg, const tt_go_opts *opts,
                    int64_t deadline, tt_id *id, bool try) {
  if (g == NULL || fn == NULL || (opts && opts->ctx))
    return TT_EINVAL;
  gchild *c = tt__calloc(1, sizeof *c);
  if (c == NULL)
    return TT_ENOMEM;
  c->g = g;
  c->fn = fn;
  c->arg = arg;
  if (opts && opts->name && (c->name = tt__strdup(opts->name)) == NULL) {
    free(c);
    return TT_ENOMEM;
  }
  int r = slot_get(g, try, deadline);
  if (r != 0) {
    free(c->name);
    free(c);
    return r;
  }
  tt_go_opts o = opts ? *opts : (tt_go_opts){0};
  o.ctx = g->ctx;
  tt__lock_acquire(&g->lock);
  c->next = g->children;
  if (g->children)
    g->children->prev = c;
  g->children = c;
  tt__lock_release(&g->lock);
  r = tt_go_opt(child_main, c, &o, id);
  if (r != 0)
    child_done(c); /* never ran: its slot and record go back */
  return r;
}

int tt_group_go(tt_group *g, int (*fn)(void *), void *arg) {
  return group_go(g, fn, arg, NULL, TT_FOREVER, NULL, false);
}

int tt_group_go_opt(tt_group *g, int (*fn)(void *), void *arg, const tt_go_opts *opts,
                    int64_t deadline, tt_id *id) {
  return group_go(g, fn, arg, opts, deadline, id, false);
}

int tt_group_try_go(tt_group *g, int (*fn)(void *), void *arg) {
  return group_go(g, fn, arg, NULL, TT_FOREVER, NULL, true);
}

int tt_group_wait_dl(tt_group *g, int64_t deadline) {
  if (g == NULL)
    return TT_EINVAL;
  tt__lock_acquire(&g->lock);
  if (g->live > 0) {
    int r = queue_wait(g, &g->waiters, TT_WAIT_GROUP_WAIT, deadline);
    if (r != 0)
      return r;
    tt__lock_acquire(&g->lock); /* the last child has let go of it: read the error */
  }
  int err = g->err;
  tt__lock_release(&g->lock);
  tt_ctx_cancel(g->ctx); /* as errgroup.WithContext's Wait */
  return err;
}

int tt_group_wait(tt_group *g) { return tt_group_wait_dl(g, TT_FOREVER); }

int tt_group_cancel(tt_group *g) { return g ? tt_ctx_cancel(g->ctx) : TT_EINVAL; }

int tt_group_free(tt_group *g) {
  if (g == NULL)
    return 0;
  tt__lock_acquire(&g->lock);
  if (g->live > 0) {
    char line[512];
    int len = snprintf(line, sizeof line,
                       "tether: tt_group_free: %lld children still live:", (long long)g->live);
    int shown = 0;
    for (gchild *c = g->children; c && len < (int)sizeof line - 64; c = c->next, shown++) {
      if (c->id)
        len += snprintf(line + len, sizeof line - (size_t)len, " coroutine %llu",
                        (unsigned long long)c->id);
      else
        len += snprintf(line + len, sizeof line - (size_t)len, " (one not started)");
      if (c->name)
        len += snprintf(line + len, sizeof line - (size_t)len, " [%.32s]", c->name);
      len += snprintf(line + len, sizeof line - (size_t)len, c->next ? "," : "");
    }
    if (shown < g->live && len < (int)sizeof line - 16)
      snprintf(line + len, sizeof line - (size_t)len, " ...");
    tt__lock_release(&g->lock);
    fprintf(stderr, "%s (TT_EBUSY: wait for them with tt_group_wait first)\n", line);
    return TT_EBUSY;
  }
  tt__lock_release(&g->lock);
  tt_ctx_release(g->ctx);
  free(g);
  return 0;
}

int64_t tt__group_children(const void *gp, void (*fn)(tt_id id, void *arg), void *arg) {
  tt_group *g = (tt_group *)gp;
  tt__lock_acquire(&g->lock);
  for (gchild *c = g->children; c; c = c->next)
    fn(c->id, arg);
  int64_t live = g->live;
  tt__lock_release(&g->lock);
  return live;
}
