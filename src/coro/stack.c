/* SPDX-License-Identifier: MIT */
/* Coroutine stacks: mapped in chunks, committed lazily, pooled per worker, guarded while the
 * process's mapping budget allows.
 *
 * A stack slot is one red-zone page plus the usable stack above it. Default-size stacks are
 * carved from chunks of CHUNK_STACKS slots mapped with MAP_NORESERVE, so a million stacks cost a
 * few thousand mappings, not a million, and nothing is committed until a page is touched: a parked
 * coroutine costs the one or two pages its frames use. The red-zone page is made a guard page
 * (PROT_NONE) while /proc/sys/vm/max_map_count allows: each guard splits its chunk's mapping, two
 * more mappings per stack, and the kernel refuses mmap/mprotect past the limit (which is what
 * stops libdill and neco near 32,000 coroutines). The budget keeps a quarter of the limit (at least
 * 8,192) for malloc, thread stacks and libraries. Past the budget, stacks are unguarded: the
 * scheduler checks the stack pointer at every switch and, with TT_DEBUG=stackcanary=1, a canary
 * that fills the red-zone page.
 *
 * A stack is bound to a coroutine when it first runs, taken from that worker's pool (most recently
 * freed first: its pages are warm), and returns to the same pool at exit (a coroutine never leaves
 * its worker). An idle worker gives back the memory of all but WARM_KEEP pooled stacks with
 * MADV_DONTNEED; the mappings stay for reuse and are unmapped when the runtime stops.
 *
 * Pools are owner-only; stack_lock guards the chunk list; map_budget is an atomic counter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#if defined(TT_SANITIZE_THREAD)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(TT_SANITIZE_ADDRESS)
#include <sanitizer/asan_interface.h>
#endif

/* ASan keeps shadow state for stack memory: the frames a coroutine leaves behind without returning
 * (its exit path, or all of a coroutine discarded at shut-down) keep their poisoned red zones, and
 * would trip the next coroutine on that stack, or whatever maps the address range next. Every
 * frame below the saved stack pointer has returned and cleaned up after itself, so clearing
 * [saved sp, top) when a stack is released is enough. */
#if defined(TT_SANITIZE_ADDRESS)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif
#if defined(TT_VALGRIND)
#include <valgrind/valgrind.h>
#endif

#define CHUNK_STACKS 64u
#define WARM_KEEP 64u
#define CANARY 0x5aU

bool tt__rt_debug_canary;

static long read_long(const char *path, long dflt) {
  FILE *f = fopen(path, "r");
  long v = dflt;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = dflt;
    fclose(f);
  }
  return v;
}

static long count_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL)
    return 0;
  long n = 0;
  int c;
  while ((c = getc(f)) != EOF)
    n += c == '\n';
  fclose(f);
  return n;
}

int tt__stacks_init(void) {
  size_t page = tt__rt.page;
  /* Round the usable size up to whole pages. */
  tt__rt.stack_size = (tt__rt.stack_size + page - 1) & ~(page - 1);
  tt__rt.stack_chunk_bytes = CHUNK_STACKS * (tt__rt.stack_size + page);
  tt__rt.nstack_chunks = 0;
  tt__rt.cap_stack_chunks = 0;
  tt__rt.stack_chunks = NULL;
  tt__rt_debug_canary = tt__rt.debug_canary;
  long max = read_long("/proc/sys/vm/max_map_count", 65530);
  long headroom = max / 4 > 8192 ? max / 4 : 8192;
  long budget = max - count_maps() - headroom;
  if (tt__rt.guard_mode == 0)
    budget = 0;
  atomic_store_explicit(&tt__rt.map_budget, budget > 0 ? budget : 0, memory_order_relaxed);
  atomic_store_explicit(&tt__rt.unguarded_warned, 0, memory_order_relaxed);
  return 0;
}

void tt__stacks_destroy(void) {
  for (size_t i = 0; i < tt__rt.nstack_chunks; i++)
    munmap(tt__rt.stack_chunks[i], tt__rt.stack_chunk_bytes);
  free(tt__rt.stack_chunks);
  tt__rt.stack_chunks = NULL;
  tt__rt.nstack_chunks = tt__rt.cap_stack_chunks = 0;
}

/* Takes n mappings from the budget for a guard page; false when the budget is spent. */
static bool budget_take(long n) {
  if (tt__rt.guard_mode == 2)
    return true;
  if (tt__rt.guard_mode == 0)
    return false;
  /* relaxed: the budget is a counter; no data hangs on it. */
  if (atomic_fetch_sub_explicit(&tt__rt.map_budget, n, memory_order_relaxed) >= n)
    return true;
  atomic_fetch_add_explicit(&tt__rt.map_budget, n, memory_order_relaxed);
  if (atomic_exchange_explicit(&tt__rt.unguarded_warned, 1, memory_order_relaxed) == 0)
    fprintf(stderr, "tether: mapping budget (vm.max_map_count) reached: new coroutine stacks have "
                    "no guard page; overflows are caught at the next switch "
                    "(TT_DEBUG=stackcanary=1 adds a canary)\n");
  return false;
}

static void budget_give(long n) {
  if (tt__rt.guard_mode != 2)
    atomic_fetch_add_explicit(&tt__rt.map_budget, n, memory_order_relaxed);
}

static bool guard(char *redzone) {
  if (!budget_take(2))
    return false;
  if (mprotect(redzone, tt__rt.page, PROT_NONE) != 0) {
    budget_give(2);
    return false;
  }
  return true;
}

/* Maps a chunk of default-size stacks into w's pool. */
static int refill(tt__worker *w) {
  size_t page = tt__rt.page, slot = tt__rt.stack_size + page;
  /* Every stack this worker maps comes back to its pool, so the pool must hold them all. */
  if (w->cap_stacks < w->owned_stacks + CHUNK_STACKS) {
    uint32_t cap = w->cap_stacks ? w->cap_stacks * 2 : CHUNK_STACKS * 4;
    tt__stack *v = tt__realloc(w->stacks, cap * sizeof *v);
    if (v == NULL)
      return TT_ENOMEM;
    w->stacks = v;
    w->cap_stacks = cap;
  }
  tt__lock_acquire(&tt__rt.stack_lock);
  if (tt__rt.nstack_chunks == tt__rt.cap_stack_chunks) {
    size_t cap = tt__rt.cap_stack_chunks ? tt__rt.cap_stack_chunks * 2 : 64;
    void **v = tt__realloc(tt__rt.stack_chunks, cap * sizeof *v);
    if (v == NULL) {
      tt__lock_release(&tt__rt.stack_lock);
      return TT_ENOMEM;
    }
    tt__rt.stack_chunks = v;
    tt__rt.cap_stack_chunks = cap;
  }
  char *base = tt__fault(TT__FAULT_MMAP)
                   ? MAP_FAILED
                   : mmap(NULL, tt__rt.stack_chunk_bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) {
    tt__lock_release(&tt__rt.stack_lock);
    return TT_ENOMEM;
  }
  tt__rt.stack_chunks[tt__rt.nstack_chunks++] = base;
  tt__lock_release(&tt__rt.stack_lock);
  w->owned_stacks += CHUNK_STACKS;
  /* The chunk's own mapping, in case the kernel does not merge it with its neighbour. It is
   * charged even past the budget: the budget only decides guards. */
  atomic_fetch_sub_explicit(&tt__rt.map_budget, 1, memory_order_relaxed);
  /* Highest slot last, so the pool hands out low addresses first (no reason but determinism). */
  for (uint32_t i = CHUNK_STACKS; i-- > 0;) {
    char *redzone = base + i * slot;
    tt__stack s = {.lo = redzone + page, .size = tt__rt.stack_size, .guarded = 0, .warm = 0};
    s.guarded = guard(redzone);
    w->stacks[w->nstacks++] = s;
  }
  return 0;
}

int tt__stack_bind_slow(tt__worker *w, tt__coro *co) {
  size_t page = tt__rt.page;
  if (co->stack_req == tt__rt.stack_size) {
    int r = refill(w);
    if (r != 0)
      return r;
    return tt__stack_bind(w, co);
  }
  size_t size = (co->stack_req + page - 1) & ~(page - 1);
  char *base = tt__fault(TT__FAULT_MMAP)
                   ? MAP_FAILED
                   : mmap(NULL, size + page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED)
    return TT_ENOMEM;
  co->stack_lo = base + page;
  co->stack_size = size;
  co->stack_pooled = 0;
  /* Its own mapping is not counted (like a chunk's, it usually merges with a neighbour); the
   * guard is. */
  co->stack_guarded = guard(base);
  tt__stack_bound(co);
  return 0;
}

void tt__stack_bound(tt__coro *co) {
  if (tt__rt_debug_canary && !co->stack_guarded)
    memset(co->stack_lo - tt__rt.page, CANARY, tt__rt.page);
#if defined(TT_SANITIZE_THREAD)
  co->tsan_fiber = __tsan_create_fiber(0);
#endif
#if defined(TT_VALGRIND)
  co->valgrind_id = VALGRIND_STACK_REGISTER(co->stack_lo, co->stack_lo + co->stack_size);
#endif
}

void tt__stack_unbind_slow(tt__worker *w, tt__coro *co) {
  if (co->sp) {
    char *sp = co->sp, *hi = co->stack_lo + co->stack_size;
    if (sp >= co->stack_lo && sp < hi)
      UNPOISON(sp, (size_t)(hi - sp));
  }
#if defined(TT_VALGRIND)
  VALGRIND_STACK_DEREGISTER(co->valgrind_id);
#endif
  if (co->stack_pooled) {
    TT_ASSERT(w->nstacks < w->cap_stacks);
    w->stacks[w->nstacks++] = (tt__stack){
        .lo = co->stack_lo, .size = co->stack_size, .guarded = co->stack_guarded, .warm = 1};
    w->nwarm++;
  } else {
    munmap(co->stack_lo - tt__rt.page, co->stack_size + tt__rt.page);
    if (co->stack_guarded)
      budget_give(2);
  }
  co->stack_lo = NULL;
}

static int by_address(const void *a, const void *b) {
  const char *x = ((const tt__stack *)a)->lo, *y = ((const tt__stack *)b)->lo;
  return (x > y) - (x < y);
}

void tt__stacks_trim(tt__worker *w) {
  if (w->nwarm <= WARM_KEEP)
    return;
  /* Keep the WARM_KEEP most recently freed (the top of the pool) warm; give back the memory of
   * the warm ones below them. Only stacks[cold_upto..) can be warm (what was pushed since the last
   * trim), so a trim costs what was freed since the last one, not the pool's size (a million
   * stacks, sorted before every sleep, made a run's end quadratic). Those are sorted by address:
   * the stacks of a chunk are adjacent (a red-zone page between neighbours, which holds nothing),
   * so one madvise covers a run of them. */
  uint32_t keep = 0, end = w->nstacks;
  while (end > 0 && keep < WARM_KEEP) {
    end--;
    keep += w->stacks[end].warm;
  }
  uint32_t from = w->cold_upto < end ? w->cold_upto : end;
  qsort(w->stacks + from, end - from, sizeof *w->stacks, by_address);
  size_t page = tt__rt.page;
  for (uint32_t i = from; i < end;) {
    char *lo = w->stacks[i].lo - page, *to = lo;
    bool any = false;
    uint32_t j = i;
    /* A run: each stack's red zone starts where the previous stack ends. The canary (debug) is
     * rewritten when a stack is bound, so the red zones may be cleared too. */
    while (j < end && w->stacks[j].lo - page == to) {
      to = w->stacks[j].lo + w->stacks[j].size;
      if (w->stacks[j].warm) {
        any = true;
        w->stacks[j].warm = 0;
        w->nwarm--;
      }
      j++;
    }
    if (any)
      madvise(lo, (size_t)(to - lo), MADV_DONTNEED);
    i = j;
  }
  w->cold_upto = end;
}

static const void *overflow_at;

/* Reports the overflow of the worker's running coroutine; runs on the worker's signal stack. */
static void overflow_entry(void) { tt__stack_overflow(tt__tls_worker->cur, overflow_at, NULL); }

/* The coroutine's stack is already past its end: report from the worker's alternate signal
 * stack, since even a lazy symbol binding on the broken stack would run off the red zone. Nothing
 * on this path may call through the PLT or into a sanitizer before the switch. */
TT_NO_SANITIZE static TT_NORETURN void overflow_off_stack(tt__coro *co, const void *at) {
  tt__worker *w = tt__tls_worker;
  overflow_at = at;
  if (w && w->altstack) {
    void *dummy;
    tt__switch(&dummy, tt__ctx_make((char *)w->altstack + w->altstack_size, overflow_entry));
  }
  tt__stack_overflow(co, at, NULL);
}

TT_NO_SANITIZE void tt__stack_check_slow(tt__coro *co, const char *sp) {
  if (sp < co->stack_lo)
    overflow_off_stack(co, sp);
  if (tt__rt_debug_canary && !co->stack_guarded) {
    const unsigned char *p = (const unsigned char *)co->stack_lo - tt__rt.page;
    for (size_t i = 0; i < tt__rt.page; i++)
      if (p[i] != CANARY)
        overflow_off_stack(co, p + i);
  }
}
