/* SPDX-License-Identifier: MIT */
/* Worker pools: the seed's bounded worker pool, built from the public pieces — a queue that is a
 * channel of tasks, workers that are coroutines under the pool's context, a wait group.
 *
 * Closing closes the channel: the workers take what is buffered and end when it is drained (the
 * receive returns TT_ECLOSED). Cancelling closes it first (so no task can be queued after the
 * workers have looked for the last time) and then cancels the context: blocked workers wake,
 * running tasks see the cancellation in their blocking calls, and whatever is still queued is
 * dropped unrun by the workers as they drain, or by tt_pool_free for tasks that outlived them (a
 * runtime shut-down). A task that carries channel references holds them in a holder of its own
 * while queued; the worker takes them into its own table for the run and drops them after. */
#include <stdlib.h>
#include <string.h>

#include "chan/chan_int.h"
#include "internal.h"
#include "tether/ctx.h"
#include "tether/group.h"

typedef struct ptask {
  void (*fn)(void *);
  void *arg;
  void (*drop)(void *);
  tt__holder *refs; /* NULL: carries none */
  tt_chan **chans;  /* the channels refs holds one reference to each of (nchans) */
  size_t nchans;
} ptask;

struct tt_pool {
  tt_ctx *ctx;
  tt_chan *q; /* untracked: elements are ptask */
  tt_wg wg;
  char *name;
};

static void task_free_refs(ptask *t) {
  if (t->refs) {
    tt__holder_drop_all(t->refs);
    free(t->refs);
  }
  free(t->chans);
}

static void task_drop(ptask *t) {
  task_free_refs(t);
  if (t->drop)
    t->drop(t->arg);
}

static void task_run(ptask *t) {
  if (t->refs == NULL) {
    t->fn(t->arg);
    return;
  }
  tt__holder *self = tt__holder_self(true);
  bool moved = self != NULL;
  for (size_t i = 0; moved && i < t->nchans; i++)
    if (tt__ref_move(t->refs, self, tt__chan_of(t->chans[i])) != 0)
      moved = false;
  if (!moved) {
    /* Out of memory for the worker's table: drop what is left rather than run without them. */
    for (size_t i = 0; self && i < t->nchans; i++)
      if (tt__holder_find(self, tt__chan_of(t->chans[i])))
        tt__ref_drop(self, tt__chan_of(t->chans[i]));
    task_drop(t);
    return;
  }
  t->fn(t->arg);
  /* fn may have released some itself. */
  for (size_t i = 0; i < t->nchans; i++)
    if (tt__holder_find(self, tt__chan_of(t->chans[i])))
      tt__ref_drop(self, tt__chan_of(t->chans[i]));
  task_free_refs(t);
}

static void worker_main(void *p) {
  tt_pool *pl = p;
  ptask t;
  while (tt_chan_recv(pl->q, &t, NULL) == 0) {
    if (tt_ctx_err(pl->ctx))
      task_drop(&t);
    else
      task_run(&t);
  }
  tt_wg_done(&pl->wg); /* our last touch of the pool */
}

int tt_pool_make(tt_pool **out, int workers, size_t queue, const tt_pool_opts *o) {
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  if (workers < 1 || workers > 65536)
    return TT_EINVAL;
  if (!tt_running())
    return TT_ENOTRUNNING;
  tt_pool *pl = tt__calloc(1, sizeof *pl);
  if (pl == NULL)
    return TT_ENOMEM;
  tt_wg_init(&pl->wg);
  const char *name = o && o->name ? o->name : "pool worker";
  int err = TT_ENOMEM;
  if ((pl->name = tt__strdup(name)) == NULL)
    goto fail;
  if ((err = tt_ctx_with_cancel(o && o->ctx ? o->ctx : tt_ctx_current(), &pl->ctx)) != 0)
    goto fail;
  tt_chan_opts co = {.mode = TT_CHAN_UNTRACKED, .name = "pool queue"};
  if ((err = tt_chan_make_opt(&pl->q, sizeof(ptask), queue, &co)) != 0)
    goto fail;
  tt_go_opts go = {.name = pl->name, .ctx = pl->ctx};
  for (int i = 0; i < workers; i++) {
    tt_wg_add(&pl->wg, 1);
    if ((err = tt_go_opt(worker_main, pl, &go, NULL)) != 0) {
      tt_wg_done(&pl->wg);
      /* Undo: the workers already started end at once; wait for them, shielded, since they
       * hold the pool. */
      tt_pool_cancel(pl);
      bool shield = tt_shield_begin() == 0;
      tt_wg_wait(&pl->wg);
      if (shield)
        tt_shield_end();
      goto fail;
    }
  }
  *out = pl;
  return 0;
fail:
  if (pl->q)
    tt_chan_release(pl->q);
  tt_ctx_release(pl->ctx);
  free(pl->name);
  free(pl);
  return err;
}

static int submit(tt_pool *pl, ptask *t, int64_t deadline, bool try) {
  if (tt_ctx_err(pl->ctx))
    return TT_ECLOSED;
  int r = try ? tt_chan_try_send(pl->q, t) : tt_chan_send_dl(pl->q, t, deadline);
  return r;
}

int tt_pool_submit_opt(tt_pool *pl, void (*fn)(void *), void *arg, tt_chan *const *share,
                       size_t nshare, void (*drop)(void *), int64_t deadline) {
  if (pl == NULL || fn == NULL || (share == NULL && nshare > 0))
    return TT_EINVAL;
  ptask t = {fn, arg, drop, NULL, NULL, 0};
  if (nshare > 0) {
    int err = tt__refs_share(&t.refs, share, nshare, TT_SHARE_COPY, "tt_pool_submit_opt");
    if (err)
      return err;
    if (t.refs) { /* NULL: no tracked channel, nothing to carry */
      t.refs->kind = TT__HOLDER_TASK;
      t.refs->owner = pl;
      if ((t.chans = tt__calloc(nshare, sizeof *t.chans)) == NULL) {
        task_free_refs(&t);
        return TT_ENOMEM;
      }
      for (size_t i = 0; i < nshare; i++)
        if (tt__chan_mode(share[i]) == TT_CHAN_TRACKED)
          t.chans[t.nchans++] = share[i];
    }
  }
  int r = submit(pl, &t, deadline, false);
  if (r != 0)
    task_free_refs(&t); /* not queued: the caller keeps arg */
  return r;
}

int tt_pool_submit(tt_pool *pl, void (*fn)(void *), void *arg) {
  if (pl == NULL || fn == NULL)
    return TT_EINVAL;
  ptask t = {fn, arg, NULL, NULL, NULL, 0};
  return submit(pl, &t, TT_FOREVER, false);
}

int tt_pool_try_submit(tt_pool *pl, void (*fn)(void *), void *arg) {
  if (pl == NULL || fn == NULL)
    return TT_EINVAL;
  ptask t = {fn, arg, NULL, NULL, NULL, 0};
  return submit(pl, &t, TT_FOREVER, true);
}

int tt_pool_close(tt_pool *pl) {
  if (pl == NULL)
    return TT_EINVAL;
  tt_chan_close(pl->q); /* TT_ECLOSED the second time: idempotent */
  return 0;
}

int tt_pool_cancel(tt_pool *pl) {
  if (pl == NULL)
    return TT_EINVAL;
  tt_chan_close(pl->q); /* first: nothing is queued after the workers' last look */
  tt_ctx_cancel(pl->ctx);
  return 0;
}

int tt_pool_wait_dl(tt_pool *pl, int64_t deadline) {
  return pl ? tt_wg_wait_dl(&pl->wg, deadline) : TT_EINVAL;
}

int tt_pool_wait(tt_pool *pl) { return tt_pool_wait_dl(pl, TT_FOREVER); }

tt_ctx *tt_pool_ctx(tt_pool *pl) { return pl ? pl->ctx : NULL; }

int tt_pool_free(tt_pool *pl) {
  if (pl == NULL)
    return 0;
  if (tt_wg_count(&pl->wg) > 0)
    return TT_EBUSY;
  /* Tasks the workers never took (they ended at a shut-down) are dropped here. */
  ptask t;
  while (tt_chan_try_recv(pl->q, &t, NULL) == 0)
    task_drop(&t);
  tt_chan_release(pl->q);
  tt_ctx_release(pl->ctx);
  free(pl->name);
  free(pl);
  return 0;
}
