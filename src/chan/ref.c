/* SPDX-License-Identifier: MIT */
/* References to channels: who holds them (coroutines, plain threads, values in flight),
 * the ownership check every operation makes, and freeing a channel with its last reference.
 *
 * Design
 * ------
 * The check on every operation reads only the caller's own table (a one-entry cache, then a hash
 * map keyed by channel address), never the channel: no shared cache line is touched, and a caller
 * without a reference never dereferences a channel that may be freed. Everything that changes
 * who holds what — retain, release, sharing at spawn, carrying through a channel, exit — also
 * updates the channel's list of holders under its rlock, a leaf lock, so the leak proof (DESIGN.md
 * section 5, R2) and the diagnostics see each channel's holders without walking every coroutine.
 *
 * Freeing can cascade: a freed channel's buffered values may carry the last references to other
 * channels. The cascade runs from a work list, not by recursion, so a long chain of channels
 * inside channels cannot overflow a coroutine's stack.
 *
 * Rejected: a plain atomic reference count (it cannot say who holds the references, which the
 * proofs need); per-channel holder arrays searched on every operation (a shared line read by every
 * worker, and the search reads a channel the caller may not hold). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "chan/chan_int.h"

/* ---- Holder tables ------------------------------------------------------------------------ */

static inline uint32_t slot_of(tt__chan *c, uint32_t mask) {
  uint64_t x = (uint64_t)(uintptr_t)c >> 4;
  return (uint32_t)((x * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

tt__ref *tt__holder_find(tt__holder *h, tt__chan *c) {
  tt__ref *r = h->cache[tt__ref_slot(c)];
  if (r && r->ch == c)
    return r;
  if (h->tab == NULL)
    return NULL;
  for (uint32_t i = slot_of(c, h->mask);; i = (i + 1) & h->mask) {
    r = h->tab[i];
    if (r == NULL)
      return NULL;
    if (r->ch == c)
      return h->cache[tt__ref_slot(c)] = r;
  }
}

static int table_grow(tt__holder *h) {
  uint32_t size = h->tab ? (h->mask + 1) * 2 : 8;
  tt__ref **tab = tt__calloc(size, sizeof *tab);
  if (tab == NULL)
    return TT_ENOMEM;
  for (uint32_t i = 0; h->tab && i <= h->mask; i++) {
    tt__ref *r = h->tab[i];
    if (r == NULL)
      continue;
    uint32_t j = slot_of(r->ch, size - 1);
    while (tab[j])
      j = (j + 1) & (size - 1);
    tab[j] = r;
  }
  free(h->tab);
  h->tab = tab;
  h->mask = size - 1;
  return 0;
}

static int table_insert(tt__holder *h, tt__ref *r) {
  /* At most 3/4 full: probes stay short. */
  if ((h->n + 1) * 4 > (h->tab ? h->mask + 1 : 0) * 3 && table_grow(h) != 0)
    return TT_ENOMEM;
  uint32_t i = slot_of(r->ch, h->mask);
  while (h->tab[i])
    i = (i + 1) & h->mask;
  h->tab[i] = r;
  h->n++;
  h->cache[tt__ref_slot(r->ch)] = r;
  return 0;
}

/* Removes r by backward-shift deletion: no tombstones, so lookups never lengthen. */
static void table_remove(tt__holder *h, tt__ref *r) {
  uint32_t i = slot_of(r->ch, h->mask);
  while (h->tab[i] != r)
    i = (i + 1) & h->mask;
  for (uint32_t j = i;;) {
    h->tab[i] = NULL;
    for (;;) {
      j = (j + 1) & h->mask;
      if (h->tab[j] == NULL)
        goto done;
      uint32_t k = slot_of(h->tab[j]->ch, h->mask);
      /* Move tab[j] back to i unless its home k lies cyclically in (i, j]. */
      if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
        continue;
      h->tab[i] = h->tab[j];
      i = j;
      break;
    }
  }
done:
  h->n--;
  if (h->cache[tt__ref_slot(r->ch)] == r)
    h->cache[tt__ref_slot(r->ch)] = NULL;
}

/* ---- The calling party's holder ----------------------------------------------------------- */

static pthread_key_t thread_key;
static pthread_once_t thread_key_once = PTHREAD_ONCE_INIT;
static __thread tt__holder *thread_holder;

static void thread_exit(void *p) {
  tt__holder *h = p;
  thread_holder = NULL;
  tt__holder_drop_all(h);
  free(h);
  tt__leak_event("the exit of a plain thread", NULL, NULL);
}

static void thread_key_init(void) {
  if (pthread_key_create(&thread_key, thread_exit) != 0)
    tt__fatal("cannot create the thread-exit key for channel references");
}

static tt__holder *holder_new(int kind, void *owner) {
  tt__holder *h = tt__calloc(1, sizeof *h);
  if (h) {
    h->kind = (uint8_t)kind;
    h->owner = owner;
  }
  return h;
}

tt__holder *tt__holder_self_slow(bool create) {
  tt__worker *w = tt__tls_worker;
  tt__coro *co;
  if (TT_LIKELY(w != NULL && (co = w->cur) != NULL)) {
    if (TT_UNLIKELY(co->holder == NULL && create))
      co->holder = holder_new(TT__HOLDER_CORO, co);
    return co->holder;
  }
  if (TT_UNLIKELY(thread_holder == NULL && create)) {
    pthread_once(&thread_key_once, thread_key_init);
    tt__holder *h = holder_new(TT__HOLDER_THREAD, NULL);
    if (h == NULL)
      return NULL;
    h->tid = (int64_t)syscall(SYS_gettid);
    if (pthread_setspecific(thread_key, h) != 0) {
      free(h);
      return NULL;
    }
    thread_holder = h;
  }
  return thread_holder;
}

/* ---- Counting references ------------------------------------------------------------------ */

/* c->rlock held. */
static void list_unlink(tt__chan *c, tt__ref *r) {
  if (r->cprev)
    r->cprev->cnext = r->cnext;
  else
    c->holders = r->cnext;
  if (r->cnext)
    r->cnext->cprev = r->cprev;
}

/* Adds n to h's ref to c, creating it; c->rlock held. */
static int ref_add_locked(tt__holder *h, tt__chan *c, uint64_t n) {
  tt__ref *r = tt__holder_find(h, c);
  if (r == NULL) {
    r = tt__malloc(sizeof *r);
    if (r == NULL)
      return TT_ENOMEM;
    *r = (tt__ref){.ch = c, .h = h, .count = 0, .cnext = c->holders, .cprev = NULL};
    if (table_insert(h, r) != 0) {
      free(r);
      return TT_ENOMEM;
    }
    if (c->holders)
      c->holders->cprev = r;
    c->holders = r;
  }
  r->count += n;
  return 0;
}

/* Takes one from h's ref to c, removing it at zero; c->rlock held. */
static void ref_sub_locked(tt__holder *h, tt__chan *c) {
  tt__ref *r = tt__holder_find(h, c);
  TT_ASSERT(r != NULL && r->count > 0);
  if (--r->count == 0) {
    table_remove(h, r);
    list_unlink(c, r);
    free(r);
  }
}

int tt__ref_add(tt__holder *h, tt__chan *c, uint64_t n) {
  tt__thread_mut_begin(); /* the leak proof reads holders: see internal.h */
  tt__lock_acquire(&c->rlock);
  int err = ref_add_locked(h, c, n);
  if (err == 0)
    atomic_store_explicit(&c->nrefs,
                          atomic_load_explicit(&c->nrefs, memory_order_relaxed) + (int64_t)n,
                          memory_order_relaxed);
  tt__lock_release(&c->rlock);
  tt__thread_mut_end();
  return err;
}

int tt__ref_move(tt__holder *from, tt__holder *to, tt__chan *c) {
  if (from == to)
    return 0;
  tt__thread_mut_begin();
  tt__lock_acquire(&c->rlock);
  int err = ref_add_locked(to, c, 1);
  if (err == 0)
    ref_sub_locked(from, c);
  tt__lock_release(&c->rlock);
  tt__thread_mut_end();
  return err;
}

/* A work list of channels to free: freeing one may release the last references to others. */
typedef struct free_list {
  tt__chan *head;
} free_list;

/* Takes k references off c's count; queues c on fl when they were the last. c->rlock held (nrefs
 * of a tracked channel changes only under it). */
static void nrefs_sub_locked(tt__chan *c, uint64_t k, free_list *fl) {
  int64_t left = atomic_load_explicit(&c->nrefs, memory_order_relaxed) - (int64_t)k;
  atomic_store_explicit(&c->nrefs, left, memory_order_relaxed);
  if (left == 0) { /* nobody can reach c any more: the list is ours after the unlock */
    c->free_next = fl->head;
    fl->head = c;
  }
}

/* Takes one reference to c from h; queues c on fl when it was the last. */
static void drop_one(tt__holder *h, tt__chan *c, free_list *fl) {
  tt__lock_acquire(&c->rlock);
  ref_sub_locked(h, c);
  nrefs_sub_locked(c, 1, fl);
  tt__lock_release(&c->rlock);
}

static void free_all(free_list *fl);

void tt__ref_drop(tt__holder *h, tt__chan *c) {
  free_list fl = {NULL};
  tt__thread_mut_begin();
  drop_one(h, c, &fl);
  free_all(&fl);
  tt__thread_mut_end();
}

/* Empties h's table into fl's cascade: each ref leaves its channel's list with all its count at
 * once, and the table goes whole (one pass, not a removal per reference). */
static void drop_table(tt__holder *h, free_list *fl) {
  for (uint32_t i = 0; h->tab && i <= h->mask; i++) {
    tt__ref *r = h->tab[i];
    if (r == NULL)
      continue;
    tt__chan *c = r->ch;
    tt__lock_acquire(&c->rlock);
    list_unlink(c, r);
    nrefs_sub_locked(c, r->count, fl);
    tt__lock_release(&c->rlock);
    free(r);
  }
  free(h->tab);
  h->tab = NULL;
  h->n = 0;
  h->mask = 0;
  memset(h->cache, 0, sizeof h->cache);
}

static void free_all(free_list *fl) {
  while (fl->head) {
    tt__chan *c = fl->head;
    fl->head = c->free_next;
    /* References carried by c's buffered values go with it. */
    drop_table(&c->carrier, fl);
    tt__chan_free(c);
  }
}

void tt__holder_drop_all(tt__holder *h) {
  free_list fl = {NULL};
  tt__thread_mut_begin();
  drop_table(h, &fl);
  free_all(&fl);
  tt__thread_mut_end();
}

void tt__coro_drop_refs(tt__coro *co) {
  tt__holder *h = co->holder;
  co->holder = NULL;
  tt__holder_drop_all(h);
  free(h);
}

/* ---- The public calls --------------------------------------------------------------------- */

int tt__chan_eperm(const char *op, const void *handle) {
  /* A program that misuses a channel in a loop must not flood stderr: the first few say how to
   * fix it, then one line says the rest are quiet. */
  static _Atomic int printed;
  int k = atomic_fetch_add_explicit(&printed, 1, memory_order_relaxed);
  if (k < 8) {
    char who[64];
    tt_id id = tt_self();
    if (id)
      snprintf(who, sizeof who, "coroutine %llu", (unsigned long long)id);
    else
      snprintf(who, sizeof who, "thread %ld", (long)syscall(SYS_gettid));
    fprintf(stderr,
            "tether: %s on channel %p by %s, which holds no reference to it (TT_EPERM).\n"
            "  A tracked channel is used only by its holders: pass it to a coroutine with "
            "tt_go_opts.share,\n  send it with tt_chan_send_ref, or make it untracked "
            "(tt_chan_opts.mode = TT_CHAN_UNTRACKED).\n",
            op, handle, who);
  } else if (k == 8) {
    fprintf(stderr, "tether: further TT_EPERM messages suppressed\n");
  }
  return TT_EPERM;
}

int tt_chan_retain(tt_chan *handle) {
  if (handle == NULL)
    return TT_EINVAL;
  tt__chan *c = tt__chan_of(handle);
  if (tt__chan_mode(handle) != TT_CHAN_TRACKED) {
    /* relaxed: the caller holds a reference, so the count cannot reach zero meanwhile. */
    atomic_fetch_add_explicit(&c->nrefs, 1, memory_order_relaxed);
    return 0;
  }
  tt__holder *h;
  int err;
  if (tt__chan_check(handle, "tt_chan_retain", &h, &err) == NULL)
    return err;
  return tt__ref_add(h, c, 1);
}

int tt_chan_release(tt_chan *handle) {
  if (handle == NULL)
    return TT_EINVAL;
  tt__chan *c = tt__chan_of(handle);
  if (tt__chan_mode(handle) != TT_CHAN_TRACKED) {
    /* acq_rel: every holder's use happens before the last one frees. */
    if (atomic_fetch_sub_explicit(&c->nrefs, 1, memory_order_acq_rel) == 1) {
      free_list fl = {c};
      c->free_next = NULL;
      free_all(&fl);
    }
    return 0;
  }
  tt__holder *h;
  int err;
  if (tt__chan_check(handle, "tt_chan_release", &h, &err) == NULL)
    return err;
  tt__ref_drop(h, c);
  tt__leak_event("tt_chan_release", c, NULL);
  return 0;
}

/* Undoes the first `done` entries of a share into h, and frees h: moved references go back, copies
 * are dropped (the spawner still holds each channel, so none is freed). */
static void refs_unshare_n(tt__holder *h, tt_chan *const *share, size_t done, int mode) {
  if (h == NULL)
    return;
  tt__holder *self = tt__holder_self(false);
  for (size_t i = 0; i < done; i++) {
    tt_chan *handle = share[i];
    if (tt__chan_mode(handle) != TT_CHAN_TRACKED)
      continue;
    if (mode == TT_SHARE_MOVE) {
      if (tt__ref_move(h, self, tt__chan_of(handle)) != 0)
        tt__fatal("out of memory returning a channel reference");
    } else {
      tt__ref_drop(h, tt__chan_of(handle));
    }
  }
  TT_ASSERT(h->n == 0);
  free(h->tab);
  free(h);
}

void tt__refs_unshare(tt__holder *h, const tt_go_opts *o) {
  if (h)
    refs_unshare_n(h, o->share, o->nshare, o->share_mode);
}

void tt__holder_set_owner(tt__holder *h, tt__coro *co) {
  h->kind = TT__HOLDER_CORO; /* also a timer's table, given whole to the coroutine it starts */
  h->owner = co;
}

int tt__refs_share(tt__holder **out, tt_chan *const *share, size_t n, int mode, const char *op) {
  *out = NULL;
  if ((share == NULL && n > 0) || (mode != TT_SHARE_COPY && mode != TT_SHARE_MOVE))
    return TT_EINVAL;
  tt__holder *self = tt__holder_self(false), *h = NULL;
  size_t done = 0;
  int err = 0;
  for (; done < n; done++) {
    tt_chan *handle = share[done];
    if (handle == NULL) {
      err = TT_EINVAL;
      break;
    }
    if (tt__chan_mode(handle) != TT_CHAN_TRACKED)
      continue;
    tt__chan *c = tt__chan_of(handle);
    /* Each listed reference must be the spawner's to give: with MOVE, the ones already moved no
     * longer are. */
    if (self == NULL || tt__holder_find(self, c) == NULL) {
      err = tt__chan_eperm(op, handle);
      break;
    }
    if (h == NULL && (h = holder_new(TT__HOLDER_CORO, NULL)) == NULL) {
      err = TT_ENOMEM;
      break;
    }
    if ((err = mode == TT_SHARE_MOVE ? tt__ref_move(self, h, c) : tt__ref_add(h, c, 1)) != 0)
      break;
  }
  if (err == 0) {
    *out = h;
    return 0;
  }
  refs_unshare_n(h, share, done, mode);
  return err;
}
