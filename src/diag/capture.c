/* SPDX-License-Identifier: MIT */
/* Capturing a coroutine that runs on another worker.
 *
 * Its stack changes under our feet, so we never walk it in place: the dumper posts a request in
 * the worker's slot and sends the worker SIGURG (Go's preemption signal: ignored by default, so a
 * stray one is harmless). The handler, on that worker, checks that the coroutine asked for is
 * the one it interrupted, copies the interrupted registers and the top of its stack into the
 * slot and says so; the dumper then unwinds the copy as if it were the stack (tt__unwind_copy).
 * When the coroutine has stopped running meanwhile, the handler says that instead; when the
 * handler does not answer in time (the worker is inside a system call with the signal blocked,
 * say), the dump prints "goroutine running on other thread; stack unavailable", as Go does.
 *
 * A slot's state moves IDLE -> ASKED (dumper) -> COPYING (handler, by CAS) -> DONE or GONE
 * (handler) -> IDLE (dumper). A dumper that gives up CASes ASKED -> IDLE; if that fails, the
 * handler is copying and finishes in microseconds, so the dumper waits for it: the buffer is
 * never reused under a handler. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "diag/snap_int.h"

#define CAPTURE_SIG SIGURG
#define CAPTURE_BYTES ((size_t)32 << 10) /* the top of the stack copied */
#define CAPTURE_REDZONE 128              /* x86_64 leaf frames may live below sp */
#define CAPTURE_TIMEOUT_NS (1000 * TT_MSEC)

enum { IDLE, ASKED, COPYING, DONE, GONE };

typedef struct slot {
  _Atomic int state;
  tt_id id;              /* the coroutine asked for; 0: whichever runs (tt__capture_worker) */
  tt__capture_info info; /* filled for id 0 */
  tt__uregs regs;
  uintptr_t lo, hi; /* the copied range, in the stack's own addresses */
  _Alignas(16) char buf[CAPTURE_BYTES];
} slot;

static slot *slots; /* one per worker, allocated with the runtime (capture_setup) */
static int nslots;
static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;

/* Copies n bytes (a multiple of 8) of a live stack word by word: not through memcpy, which
 * sanitizers intercept and which would see the stack's redzones as errors. */
__attribute__((no_sanitize("address", "thread"))) static void copy_stack(void *to, uintptr_t from,
                                                                         size_t n) {
  uintptr_t *d = to;
  const volatile uintptr_t *s = (const volatile uintptr_t *)from;
  for (size_t i = 0; i < n / sizeof *d; i++)
    d[i] = s[i];
}

static void on_capture(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)si;
  int saved = errno;
  tt__worker *w = tt__tls_worker;
  slot *sl = w && slots && w->index < nslots ? &slots[w->index] : NULL;
  int asked = ASKED;
  /* acquire: the dumper's request (the id) is visible once we own the slot. */
  if (sl == NULL || !atomic_compare_exchange_strong_explicit(
                        &sl->state, &asked, COPYING, memory_order_acquire, memory_order_relaxed)) {
    errno = saved;
    return;
  }
  tt__coro *co = w->cur;
  int result = GONE;
  if (co && sl->id == 0 && co->stack_lo) {
    /* Whichever runs (the watchdog): what it needs to know of it, read on its own thread. The
     * name is copied, never referenced: tt_name_set stores the new pointer before it frees the
     * old one, so the one we read here is alive whatever instruction we interrupted. */
    tt__capture_info *ci = &sl->info;
    ci->id = co->id;
    ci->parent = co->parent;
    ci->create_pc = co->create_pc;
    ci->runs = atomic_load_explicit(&w->stats.c[TT__ST_RUNS], memory_order_relaxed);
    ci->tid = (int)syscall(SYS_gettid);
    ci->cancelled = atomic_load_explicit(&co->cancelled, memory_order_relaxed);
    ci->cancel_refused = co->wd_id == co->id;
    size_t i = 0;
    const char *nm = co->name;
    ci->has_name = nm != NULL;
    for (; nm && nm[i] && i < sizeof ci->name - 1; i++)
      ci->name[i] = nm[i];
    ci->name[i] = '\0';
  }
  if (co && (co->id == sl->id || sl->id == 0) && co->stack_lo) {
    tt__uregs_from_ucontext(&sl->regs, uc);
    uintptr_t sp = sl->regs.r[TT__UNW_SP];
    uintptr_t lo = (uintptr_t)co->stack_lo, hi = lo + co->stack_size;
    if (sp >= lo && sp < hi) {
      uintptr_t from = (sp - CAPTURE_REDZONE > lo ? sp - CAPTURE_REDZONE : lo) & ~(uintptr_t)7;
      uintptr_t to = hi - from > CAPTURE_BYTES ? from + CAPTURE_BYTES : hi & ~(uintptr_t)7;
      copy_stack(sl->buf, from, to - from);
      sl->lo = from;
      sl->hi = to;
      result = DONE;
    }
  }
  /* release: the copy is visible to the dumper that sees DONE. */
  atomic_store_explicit(&sl->state, result, memory_order_release);
  errno = saved;
}

int tt__capture_setup(void) {
  static _Atomic int installed;
  if (slots == NULL || nslots < tt__rt.procs) {
    free(slots);
    slots = calloc((size_t)tt__rt.procs, sizeof *slots);
    if (slots == NULL) {
      nslots = 0;
      return TT_ENOMEM;
    }
    nslots = tt__rt.procs;
  }
  if (!atomic_exchange_explicit(&installed, 1, memory_order_relaxed)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_capture;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(CAPTURE_SIG, &sa, NULL) != 0)
      return TT_EINVAL;
  }
  return 0;
}

static void nap(void) {
  struct timespec ts = {0, 20000};
  nanosleep(&ts, NULL);
}

/* Asks w's handler for the coroutine id (0: whichever runs) and unwinds the copy. */
static int capture(tt__worker *w, tt_id id, tt__capture_info *info, uintptr_t *pcs, int max) {
  slot *sl = &slots[w->index];
  pthread_mutex_lock(&capture_lock);
  sl->id = id;
  /* release: the id before the request. */
  atomic_store_explicit(&sl->state, ASKED, memory_order_release);
  int n = TT_ETIMEDOUT;
  if (pthread_kill(w->thread, CAPTURE_SIG) != 0) {
    atomic_store_explicit(&sl->state, IDLE, memory_order_relaxed);
    pthread_mutex_unlock(&capture_lock);
    return TT_EAGAIN;
  }
  int64_t deadline = tt_now() + CAPTURE_TIMEOUT_NS;
  for (;;) {
    /* acquire: the handler's copy. */
    int st = atomic_load_explicit(&sl->state, memory_order_acquire);
    if (st == DONE) {
      n = tt__unwind_copy(&sl->regs, sl->lo, sl->hi, sl->buf, pcs, max);
      if (info)
        *info = sl->info;
      break;
    }
    if (st == GONE) {
      n = TT_EAGAIN;
      break;
    }
    if (st == ASKED && tt_now() > deadline) {
      int asked = ASKED;
      if (atomic_compare_exchange_strong_explicit(&sl->state, &asked, IDLE, memory_order_relaxed,
                                                  memory_order_relaxed)) {
        pthread_mutex_unlock(&capture_lock);
        return TT_ETIMEDOUT;
      }
      continue; /* the handler took it just now: it finishes in microseconds */
    }
    nap();
  }
  atomic_store_explicit(&sl->state, IDLE, memory_order_relaxed);
  pthread_mutex_unlock(&capture_lock);
  return n;
}

int tt__capture_running(tt__coro *co, tt_id id, uintptr_t *pcs, int max, int32_t *worker) {
  tt__worker *w = __atomic_load_n(&co->w, __ATOMIC_RELAXED);
  if (w == NULL || slots == NULL || w->index >= nslots ||
      __atomic_load_n(&co->id, __ATOMIC_RELAXED) != id || id == 0)
    return TT_EAGAIN;
  *worker = w->index;
  if (w == tt__tls_worker)
    return TT_EAGAIN; /* our own worker runs us, not co */
  return capture(w, id, NULL, pcs, max);
}

int tt__capture_worker(int index, tt__capture_info *info, uintptr_t *pcs, int max) {
  if (slots == NULL || index < 0 || index >= nslots || index >= tt__rt.procs)
    return TT_EINVAL;
  tt__worker *w = &tt__rt.workers[index];
  if (w == tt__tls_worker)
    return TT_EAGAIN;
  return capture(w, 0, info, pcs, max);
}
