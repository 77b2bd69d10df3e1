/* SPDX-License-Identifier: MIT */
/* The watchdog: a thread of the runtime (Go's sysmon) that reports coroutines that run too long
 * without yielding, workers stuck in blocking system calls, and coroutines that ignore their
 * cancellation (tether/watchdog.h).
 *
 * Design
 * ------
 * Idle costs nothing. The thread sleeps on a futex word (`word`) whose bit 0 says "parked until
 * a worker wakes". The scheduler's one hook is on the transition "every worker asleep" -> "one
 * awake" (find_runnable's decrement of tt__rt.nsleeping that finds it equal to procs), never per
 * switch: the waking worker calls tt__watchdog_wake, which clears the bit and wakes the thread
 * only if it is set. Parking is a Dekker pair with that hook: the watchdog sets the bit, runs a
 * sequentially consistent fence and reads nsleeping; the worker decrements nsleeping, runs a
 * fence and reads the bit. By the fences' rule one of them sees the other's write: either the
 * watchdog sees a worker awake and does not sleep, or the worker sees the bit and wakes it.
 * While any worker is awake the thread samples every SAMPLE_NS; when all are asleep it parks.
 * (An idle runtime whose coroutines sleep on timers wakes it once per timer, and it parks again
 * at its next sample.) A threshold of 0 parks it without the bit: only tt_watchdog_set_threshold
 * wakes it.
 *
 * Long runs. Each sample reads, per worker, its switch count (stats TT__ST_RUNS, which only its
 * owner writes: relaxed loads) and whether it sleeps. A count unchanged while the worker is awake
 * means one run of one coroutine (or the worker's own context: spinning, timers, a stop of the
 * world); once that has lasted the threshold, the watchdog captures the worker with the dumps'
 * capture machinery (src/diag/capture.c: SIGURG, whose handler copies the interrupted registers,
 * the top of the stack and the coroutine's identity, name and switch count on its own thread, so
 * nothing is read across threads while the coroutine runs). No coroutine there (the worker's own
 * context): look again a threshold later. A switch count that moved meanwhile: a new run. Else
 * the run is reported, once: the episode ends only when the count moves or the worker sleeps.
 * Unless the worker thread used less than half the threshold of CPU time meanwhile while not
 * asleep in the kernel: on a loaded machine the kernel can keep a worker off its CPU for longer
 * than the threshold, which is no fault of the coroutine (pthread_getcpuclockid tells; look
 * again half a threshold later).
 *
 * Blocking system calls. The same episode, with the worker thread asleep in the kernel: its
 * /proc/self/task/TID/stat state is S or D (a busy loop is R, even when preempted). The state is
 * read a few times after the capture (which interrupts the call: SA_RESTART restarts read() and
 * most calls; those the kernel never restarts — nanosleep, poll, epoll_wait, futex waits with a
 * timeout — return EINTR to the program, once per episode, as under Go's preemption signal).
 *
 * Ignoring cancellation. Every cancellation point asks tt__block_check, whose cancelled branch
 * calls tt__watchdog_cancel_seen (nothing on the common path). It counts, in the coroutine's own
 * fields (wd_*), the points refused: the first starts the clock, and after a grace of one
 * threshold TT_WATCHDOG_CANCEL_WAKES more make a report, built there (its stack unwound in place)
 * and pushed on a lock-free list for the thread, which writes it. A coroutine spinning through
 * refused cancellation points also runs without yielding (a refused point does not switch): the
 * long-run check leaves such a coroutine to this report (its capture carries the count).
 *
 * Rejected: a periodic timer (it would wake an idle process: the idle-CPU test forbids it); a
 * hook per switch (publishing the running coroutine costs every switch a store); taking a whole
 * snapshot to find one coroutine (it walks a million descriptors to report one). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "diag/snap_int.h"

#define SAMPLE_NS (10 * TT_MSEC)
#define PARKED 1u /* bit 0 of word: parked until a worker wakes */
#define KICK 2u   /* word += KICK: something changed (a report posted, the threshold, stop) */

/* A report built off the thread (an ignored cancellation, on the coroutine). */
typedef struct pending {
  struct pending *next;
  tt_watchdog_report r;
  char name[64];
  uintptr_t pcs[TT_WATCHDOG_MAX_STACK];
} pending;

/* Per worker, the watchdog thread's own. */
typedef struct episode {
  uint64_t runs; /* the switch count at the last change */
  int64_t since; /* when the count was first seen at this value (or the worker awake) */
  int64_t cpu;   /* the worker thread's CPU time then (-1: unknown) */
  int64_t retry; /* nothing to report there until then */
  bool done;     /* this run was looked at for good */
} episode;

static struct {
  pthread_t thread;
  bool started;
  _Atomic uint32_t word;     /* futex: PARKED bit, KICK counts */
  _Atomic bool stop;         /* tt__watchdog_stop asks the thread to end */
  _Atomic(pending *) posted; /* reports to write, newest first */
  _Atomic uint64_t wakeups;  /* times it left "parked until a worker wakes" (tests) */
  _Atomic uint64_t samples;  /* sampling rounds (tests) */
  pthread_mutex_t cb_lock;   /* held while the callback runs and while it is replaced */
  tt_watchdog_fn cb;         /* under cb_lock */
  void *cb_arg;
  episode *ep; /* procs entries, the thread's */
} wd = {.cb_lock = PTHREAD_MUTEX_INITIALIZER};

/* The threshold in force, the one set in code (-1: none) and the knob's (-1: not given). Relaxed
 * accesses: each is a value on its own, read again at every sample. */
static _Atomic int64_t threshold = TT_WATCHDOG_DEFAULT_THRESHOLD;
static _Atomic int64_t code_threshold = -1;
static _Atomic uint64_t counts[4]; /* by kind; relaxed: independent counters */
static __thread bool on_watchdog;  /* the calling thread is the watchdog (its callback) */

/* For tests: the watchdog's wake-ups from "parked until a worker wakes", and its samples. */
uint64_t tt__watchdog_wakeups(void);
uint64_t tt__watchdog_samples(void);
uint64_t tt__watchdog_wakeups(void) {
  return atomic_load_explicit(&wd.wakeups, memory_order_relaxed);
}
uint64_t tt__watchdog_samples(void) {
  return atomic_load_explicit(&wd.samples, memory_order_relaxed);
}

static void kick(void) {
  /* release: a report pushed (or a flag set) before the kick is visible to the woken thread,
   * which reads the word with acquire. */
  atomic_fetch_add_explicit(&wd.word, KICK, memory_order_release);
  tt__futex_wake(&wd.word, 1);
}

void tt__watchdog_wake(void) {
  /* The worker's half of the parking handshake (see the design comment): the fence orders our
   * decrement of nsleeping before this load of the word. */
  atomic_thread_fence(memory_order_seq_cst);
  uint32_t v = atomic_load_explicit(&wd.word, memory_order_relaxed);
  /* relaxed CAS: only the bit matters, and the futex wake orders the rest; of several workers
   * waking at once one clears the bit and makes the system call. */
  while (v & PARKED) {
    if (atomic_compare_exchange_weak_explicit(&wd.word, &v, (v & ~PARKED) + KICK,
                                              memory_order_relaxed, memory_order_relaxed)) {
      tt__futex_wake(&wd.word, 1);
      return;
    }
  }
}

void tt__watchdog_knob(int64_t ns) {
  if (atomic_load_explicit(&code_threshold, memory_order_relaxed) >= 0)
    return; /* set in code: it wins */
  atomic_store_explicit(&threshold, ns < 0 ? TT_WATCHDOG_DEFAULT_THRESHOLD : ns,
                        memory_order_relaxed);
}

int tt_watchdog_set_threshold(int64_t ns) {
  if (ns < 0)
    return TT_EINVAL;
  atomic_store_explicit(&code_threshold, ns, memory_order_relaxed);
  atomic_store_explicit(&threshold, ns, memory_order_relaxed);
  kick();
  return 0;
}

int64_t tt_watchdog_threshold(void) {
  return atomic_load_explicit(&threshold, memory_order_relaxed);
}

int tt_watchdog_set_callback(tt_watchdog_fn fn, void *arg) {
  /* From the callback itself the lock is already ours (the thread holds it while calling). */
  if (!on_watchdog)
    pthread_mutex_lock(&wd.cb_lock);
  wd.cb = fn;
  wd.cb_arg = arg;
  if (!on_watchdog)
    pthread_mutex_unlock(&wd.cb_lock);
  return 0;
}

int tt_watchdog_counts_get(tt_watchdog_counts *out) {
  if (out == NULL)
    return TT_EINVAL;
  out->long_run = atomic_load_explicit(&counts[TT_WATCHDOG_LONG_RUN], memory_order_relaxed);
  out->blocking_syscall =
      atomic_load_explicit(&counts[TT_WATCHDOG_BLOCKING_SYSCALL], memory_order_relaxed);
  out->ignores_cancel =
      atomic_load_explicit(&counts[TT_WATCHDOG_IGNORES_CANCEL], memory_order_relaxed);
  return 0;
}

const char *tt_watchdog_kind_string(int kind) {
  switch (kind) {
  case TT_WATCHDOG_LONG_RUN:
    return "long_run";
  case TT_WATCHDOG_BLOCKING_SYSCALL:
    return "blocking_syscall";
  case TT_WATCHDOG_IGNORES_CANCEL:
    return "ignores_cancel";
  default:
    return "unknown";
  }
}

/* ---- Reporting --------------------------------------------------------------------------- */

/* The log (tt__rt.report_fd, unless -1), the counts, the callback. The watchdog thread only. */
static void report(const tt_watchdog_report *r) {
  atomic_fetch_add_explicit(&counts[r->kind], 1, memory_order_relaxed);
  int fd = tt__rt.report_fd;
  if (fd >= 0) {
    char buf[4096];
    tt__sink k;
    tt__sink_fd(&k, fd, buf, sizeof buf);
    tt__sink_printf(&k, "tether: watchdog: coroutine %llu", (unsigned long long)r->id);
    if (r->name)
      tt__sink_printf(&k, " \"%s\"", r->name);
    long long ms = (long long)(r->duration / TT_MSEC);
    switch (r->kind) {
    case TT_WATCHDOG_LONG_RUN:
      tt__sink_printf(&k, " has run %lld ms without yielding (worker %d)\n", ms, r->worker);
      break;
    case TT_WATCHDOG_BLOCKING_SYSCALL:
      tt__sink_printf(&k,
                      " has been in a blocking system call for %lld ms without yielding: its "
                      "worker %d cannot run other coroutines (use tt_blocking or tether's I/O)\n",
                      ms, r->worker);
      break;
    default:
      tt__sink_printf(&k,
                      " ignores its cancellation: %llu cancellation points refused more than "
                      "%lld ms after the first\n",
                      (unsigned long long)r->wakes, ms);
      break;
    }
    tt__sink_printf(&k, "\ngoroutine %llu [running]:\n", (unsigned long long)r->id);
    if (r->nstack)
      tt__write_pcs(&k, r->stack, r->nstack);
    else
      tt__sink_str(&k, "\tstack unavailable\n");
    tt__write_created(&k, (void *)r->create_pc, r->parent);
    tt__sink_str(&k, "\n");
    tt__sink_flush(&k);
  }
  pthread_mutex_lock(&wd.cb_lock);
  if (wd.cb) {
    on_watchdog = true;
    wd.cb(r, wd.cb_arg);
    on_watchdog = false;
  }
  pthread_mutex_unlock(&wd.cb_lock);
}

/* Writes the reports posted by coroutines, oldest first. */
static void drain_posted(void) {
  /* acquire: the reports' contents, written before their release push. */
  pending *p = atomic_exchange_explicit(&wd.posted, NULL, memory_order_acquire);
  pending *rev = NULL;
  while (p) {
    pending *next = p->next;
    p->next = rev;
    rev = p;
    p = next;
  }
  while (rev) {
    pending *next = rev->next;
    report(&rev->r);
    free(rev);
    rev = next;
  }
}

int tt__watchdog_cancel_seen(tt__coro *co) {
  int64_t th = atomic_load_explicit(&threshold, memory_order_relaxed);
  if (th <= 0)
    return TT_ECANCELED;
  int64_t now = tt__clock();
  if (co->wd_id != co->id) {
    co->wd_id = co->id;
    co->wd_since = now;
    co->wd_hits = 0;
    return TT_ECANCELED;
  }
  if ((co->wd_hits & TT__WD_REPORTED) || now - co->wd_since < th ||
      ++co->wd_hits < TT_WATCHDOG_CANCEL_WAKES)
    return TT_ECANCELED;
  co->wd_hits |= TT__WD_REPORTED;
  pending *p = tt__calloc(1, sizeof *p);
  if (p == NULL)
    return TT_ECANCELED; /* the report is lost, the coroutine is not disturbed */
  tt_watchdog_report *r = &p->r;
  r->kind = TT_WATCHDOG_IGNORES_CANCEL;
  r->id = co->id;
  r->parent = co->parent;
  if (co->name) {
    snprintf(p->name, sizeof p->name, "%s", co->name);
    r->name = p->name;
  }
  r->worker = co->w ? co->w->index : -1;
  r->duration = now - co->wd_since;
  r->wakes = co->wd_hits & ~TT__WD_REPORTED;
  r->create_pc = co->create_pc;
  uintptr_t lo, hi;
  tt__own_stack(co, &lo, &hi);
  int n = tt__unwind_here(lo, hi, p->pcs, TT_WATCHDOG_MAX_STACK, 0);
  r->stack = p->pcs;
  r->nstack = n > 0 ? (size_t)n : 0;
  pending *head = atomic_load_explicit(&wd.posted, memory_order_relaxed);
  do
    p->next = head;
  /* release: the report's contents before it is reachable. */
  while (!atomic_compare_exchange_weak_explicit(&wd.posted, &head, p, memory_order_release,
                                                memory_order_relaxed));
  kick();
  return TT_ECANCELED;
}

/* ---- Sampling ---------------------------------------------------------------------------- */

/* Whether thread tid of this process is asleep in the kernel (state S or D), looking a few times
 * a little apart: right after a capture the thread may still be on its way back into the call. */
static bool thread_blocked(int tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  for (int i = 0; i < 5; i++) {
    if (i)
      usleep(200);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return false;
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
      return false;
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    if (rp && rp[1] == ' ' && (rp[2] == 'S' || rp[2] == 'D'))
      return true;
  }
  return false;
}

/* The CPU time worker i's thread has used, in ns, or -1. */
static int64_t thread_cpu(int i) {
  clockid_t cid;
  struct timespec ts;
  if (pthread_getcpuclockid(tt__rt.workers[i].thread, &cid) != 0 || clock_gettime(cid, &ts) != 0)
    return -1;
  return (int64_t)ts.tv_sec * TT_SEC + ts.tv_nsec;
}

/* Captures worker i, whose switch count has not moved for the threshold, and reports the run. */
static void inspect(int i, episode *e, int64_t now, int64_t th) {
  tt__capture_info ci;
  uintptr_t pcs[TT_WATCHDOG_MAX_STACK];
  int n = tt__capture_worker(i, &ci, pcs, TT_WATCHDOG_MAX_STACK);
  if (n == TT_EAGAIN || n == TT_ETIMEDOUT || n == TT_EINVAL) {
    /* Its own context (no coroutine), or the signal is blocked there: look again later. */
    e->retry = now + th;
    return;
  }
  if (ci.runs != e->runs) {
    e->runs = ci.runs; /* it switched meanwhile: a new run */
    e->since = now;
    e->cpu = thread_cpu(i);
    return;
  }
  if (tt__cancel_pending(ci.cancelled) && ci.cancel_refused) {
    e->done = true;
    return; /* refusing cancellation points: the cancellation report's case */
  }
  bool blocked = thread_blocked(ci.tid);
  int64_t cpu = thread_cpu(i);
  if (!blocked && e->cpu >= 0 && cpu >= 0 && cpu - e->cpu < th / 2) {
    /* On the CPU, or ready for it, yet it has used less than half the threshold: the machine is
     * busy and the kernel kept the worker off its CPU. Not the coroutine's doing: look again. */
    e->retry = now + th / 2;
    return;
  }
  e->done = true;
  tt_watchdog_report r = {
      .kind = blocked ? TT_WATCHDOG_BLOCKING_SYSCALL : TT_WATCHDOG_LONG_RUN,
      .id = ci.id,
      .parent = ci.parent,
      .name = ci.has_name ? ci.name : NULL,
      .worker = i,
      .duration = tt__clock() - e->since,
      .create_pc = ci.create_pc,
      .stack = pcs,
      .nstack = n > 0 ? (size_t)n : 0,
  };
  report(&r);
}

static void sample(int64_t th) {
  /* Only while the runtime runs (or is in its grace period): once it stops, workers leave, and
   * one leaving must not be sent a capture signal. */
  if (!tt_running())
    return;
  atomic_fetch_add_explicit(&wd.samples, 1, memory_order_relaxed);
  int64_t now = tt__clock();
  for (int i = 0; i < tt__rt.procs; i++) {
    tt__worker *w = &tt__rt.workers[i];
    episode *e = &wd.ep[i];
    /* relaxed: each a value on its own; a stale one delays a report by a sample at most. */
    uint64_t runs = atomic_load_explicit(&w->stats.c[TT__ST_RUNS], memory_order_relaxed);
    bool asleep = atomic_load_explicit(&w->sleeping, memory_order_relaxed) != 0;
    if (runs != e->runs || asleep) {
      e->runs = runs;
      e->since = now;
      e->cpu = asleep ? -1 : thread_cpu(i);
      e->retry = 0;
      e->done = false;
      continue;
    }
    if (e->cpu < 0)
      e->cpu = thread_cpu(i); /* awake again on the same count: the episode's CPU starts now */
    if (!e->done && now - e->since >= th && now >= e->retry)
      inspect(i, e, now, th);
  }
}

/* Whether every worker sleeps. */
static bool all_asleep(void) {
  return atomic_load_explicit(&tt__rt.nsleeping, memory_order_relaxed) >= tt__rt.procs;
}

static void restart_episodes(void) {
  int64_t now = tt__clock();
  for (int i = 0; i < tt__rt.procs; i++)
    wd.ep[i] = (episode){.runs = UINT64_MAX, .since = now, .cpu = -1};
}

static void *watchdog_main(void *unused) {
  (void)unused;
  pthread_setname_np(pthread_self(), "tt-watchdog");
  restart_episodes();
  for (;;) {
    /* The word first, then what a kick announces: a kick after this load changes the word, so
     * the wait below returns at once. acquire: pairs with kick's release (the stop flag, a posted
     * report). */
    uint32_t v = atomic_load_explicit(&wd.word, memory_order_acquire);
    if (atomic_load_explicit(&wd.stop, memory_order_relaxed))
      break;
    drain_posted();
    int64_t th = atomic_load_explicit(&threshold, memory_order_relaxed);
    if (th <= 0) {
      tt__futex_wait(&wd.word, v, -1); /* off: until the threshold is set again */
      restart_episodes();
      continue;
    }
    if (all_asleep()) {
      /* Park until a worker wakes: the bit, the fence, and nsleeping again (the design
       * comment's Dekker pair with tt__watchdog_wake). */
      v = atomic_fetch_or_explicit(&wd.word, PARKED, memory_order_relaxed) | PARKED;
      atomic_thread_fence(memory_order_seq_cst);
      if (all_asleep() && !atomic_load_explicit(&wd.stop, memory_order_relaxed) &&
          atomic_load_explicit(&wd.posted, memory_order_relaxed) == NULL) {
        tt__futex_wait(&wd.word, v, -1);
        atomic_fetch_add_explicit(&wd.wakeups, 1, memory_order_relaxed);
      }
      atomic_fetch_and_explicit(&wd.word, ~PARKED, memory_order_relaxed);
      restart_episodes();
      continue;
    }
    sample(th);
    tt__futex_wait(&wd.word, v, tt__clock() + SAMPLE_NS);
  }
  drain_posted();
  return NULL;
}

void tt__watchdog_start(void) {
  wd.ep = tt__calloc((size_t)tt__rt.procs, sizeof *wd.ep);
  if (wd.ep == NULL)
    return;
  atomic_store_explicit(&wd.stop, false, memory_order_relaxed);
  atomic_store_explicit(&wd.word, 0, memory_order_relaxed);
  /* Counted before it exists and until it is joined, so that the deadlock check never takes it
   * for a program thread (src/leak/monitor.c). release: pairs with the check's acquire load. */
  atomic_fetch_add_explicit(&tt__threads_internal, 1, memory_order_release);
  wd.started = pthread_create(&wd.thread, NULL, watchdog_main, NULL) == 0;
  if (!wd.started) {
    atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
    free(wd.ep);
    wd.ep = NULL;
  }
}

void tt__watchdog_stop(void) {
  if (wd.started) {
    /* release: kick's own release orders it too; stated for the flag's reader. */
    atomic_store_explicit(&wd.stop, true, memory_order_release);
    kick();
    pthread_join(wd.thread, NULL);
    wd.started = false;
    atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
  }
  free(wd.ep);
  wd.ep = NULL;
  /* Reports posted after the thread's last drain (none: it drains after the workers stopped). */
  pending *p = atomic_exchange_explicit(&wd.posted, NULL, memory_order_acquire);
  while (p) {
    pending *next = p->next;
    free(p);
    p = next;
  }
}
