/* SPDX-License-Identifier: MIT */
/* Holder tokens of plain threads and the per-coroutine list of held locks (see sync_int.h). */
#include <stdlib.h>

#include "sync/sync_int.h"

__thread uint64_t tt__thread_tok;

uint64_t tt__thread_token_slow(void) {
  static _Atomic uint64_t next = 1;
  /* relaxed: only uniqueness matters. */
  uint64_t t = TT__TOK_THREAD | atomic_fetch_add_explicit(&next, 1, memory_order_relaxed);
  tt__thread_tok = t;
  return t;
}

int tt__held_grow(tt__coro *co) {
  tt__held *h = co->locks;
  uint32_t cap = h ? h->cap * 2 : 4;
  tt__held *nh = tt__realloc(h, sizeof *nh + cap * sizeof nh->v[0]);
  if (nh == NULL)
    return TT_ENOMEM;
  if (h == NULL)
    nh->n = 0;
  nh->cap = cap;
  co->locks = nh;
  return 0;
}

/* Called by tt__coro_release_fields as co exits (on its own stack, before it is freed), and for
 * the coroutines still alive when the runtime stops (then the locks are not touched: they may be
 * gone with the program's data). */
void tt__sync_coro_exit(tt__coro *co) {
  tt__held *h = co->locks;
  co->locks = NULL;
  if (h == NULL)
    return;
  /* relaxed: a coroutine that exits during the run sees the state it runs in. */
  bool stopping = atomic_load_explicit(&tt__rt.state, memory_order_relaxed) >= 3;
  for (uint32_t i = 0; i < h->n && !stopping; i++) {
    if (h->v[i].kind == TT__HELD_MUTEX)
      tt__mutex_holder_exited(h->v[i].obj, co->id);
    else
      tt__rwmutex_holder_exited(h->v[i].obj, h->v[i].kind, co->id);
  }
  free(h);
}

size_t tt__coro_held_locks(const tt__coro *co, tt__heldlock *out, size_t max) {
  const tt__held *h = co->locks;
  if (h == NULL)
    return 0;
  for (uint32_t i = 0; i < h->n && i < max; i++)
    out[i] = h->v[i];
  return h->n;
}

/* For tests: the calling coroutine's held locks (up to max), oldest first; returns how many it
 * holds (0 on a plain thread). */
int64_t tt__held_self(const void **objs, uint32_t *kinds, size_t max) {
  tt__coro *co = tt__self();
  if (co == NULL || co->locks == NULL)
    return 0;
  for (uint32_t i = 0; i < co->locks->n && i < max; i++) {
    objs[i] = co->locks->v[i].obj;
    kinds[i] = co->locks->v[i].kind;
  }
  return co->locks->n;
}
