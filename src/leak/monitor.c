/* SPDX-License-Identifier: MIT */
/* The leak monitor: a thread of the runtime that proves leaks as they happen (TT_LEAKCHECK=eager)
 * and notices the global deadlock (every coroutine asleep, nothing left that could wake one).
 *
 * Design
 * ------
 * The monitor sleeps on a futex and costs nothing until it is kicked:
 *   - eager mode: every operation that can remove a live way to wake a coroutine (a reference
 *     dropped, a context released, a coroutine or a thread exiting with references or locks, a
 *     coroutine starting a wait) records an event — what it was, who made it, its stack — in a
 *     small ring and kicks the monitor. The monitor lets events settle for a moment, runs the
 *     proof (which stops the world: R5's confirmation at a safe point), and prints each verdict it
 *     has not printed before, with the event that removed its last live waker (R6): the latest
 *     event on an object the verdict relied on, else the verdict's own wait, else the latest
 *     event. Proofs are spaced by ten times the last one's duration, so eager mode costs at most
 *     about a tenth of the machine however busy the program is.
 *   - the global deadlock: the last worker to fall asleep with no timer pending anywhere kicks
 *     the monitor, which checks without stopping anything (every coroutine waiting, none timed,
 *     no timers, no signal registrations, no thread in the process but the runtime's own and
 *     tt_run's caller: any other thread might still wake a coroutine, as a cgo thread might in
 *     Go), then confirms with the world stopped. A deadlock ends the run: "fatal error: all
 *     goroutines are asleep - deadlock!", a blank line and every coroutine's traceback go to the
 *     report descriptor, and tt_run returns TT_EDEADLK (tt_main exits with status 2, as Go).
 *     A check that fails leaves a mark of the scheduler's progress, and the next kick is ignored
 *     until something ran: the monitor's own stop-the-world wakes the workers, whose return to
 *     sleep must not start another check. A check that fails only because the process has other
 *     threads is retried after a while (a thread may be about to exit).
 *
 * Rejected: a periodic scan (it would wake an idle process; the idle-CPU test forbids it);
 * proving on the operation's own thread (a proof stops the world: it cannot run inside a
 * coroutine's operation, which holds locks). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chan/chan_int.h"
#include "diag/snap_int.h"
#include "leak/leak_int.h"
#include "signal/signal_int.h"

#define KICK_EVENT 1u
#define KICK_IDLE 2u
#define KICK_STOP 4u
#define NEVENTS 64
#define SETTLE_NS (2 * TT_MSEC) /* how long everything must stay asleep before a deadlock check */
#define EVENT_PCS 32

typedef struct event {
  int64_t t;
  const char *op;
  tt_id by;
  const void *obj;
  void *create_pc; /* a coroutine's exit: where it was created */
  uint32_t npcs;
  uintptr_t pcs[EVENT_PCS];
} event;

static struct {
  pthread_t thread;
  _Atomic bool started;  /* read by idle workers while tt_run starts and stops the monitor */
  _Atomic uint32_t kick; /* futex word: KICK_* bits */
  pthread_mutex_t lock;  /* the ring */
  event ring[NEVENTS];
  uint64_t nev;
  uint64_t idle_mark; /* the progress at the last deadlock check that failed */
  int64_t last_proof; /* ns the last eager proof took */
} mon = {.lock = PTHREAD_MUTEX_INITIALIZER};

_Atomic int tt__threads_internal;

static void kick(uint32_t bits) {
  /* release: an event written before the kick is seen by the monitor that takes it. */
  atomic_fetch_or_explicit(&mon.kick, bits, memory_order_release);
  tt__futex_wake(&mon.kick, 1);
}

/* ---- Events (eager mode) -------------------------------------------------------------------- */

/* Puts e in the ring and kicks the monitor. */
static void record(const event *e) {
  pthread_mutex_lock(&mon.lock);
  mon.ring[mon.nev % NEVENTS] = *e;
  mon.nev++;
  pthread_mutex_unlock(&mon.lock);
  kick(KICK_EVENT);
}

void tt__leak_event_slow(const char *op, const void *obj, const tt__coro *exiting) {
  event e = {.t = tt__clock(), .op = op, .obj = obj};
  if (exiting) {
    e.by = exiting->id;
    e.create_pc = exiting->create_pc;
  } else {
    tt__coro *self = tt__self();
    e.by = self ? self->id : 0;
    uintptr_t lo, hi;
    tt__own_stack(self, &lo, &hi);
    int n = hi > lo ? tt__unwind_here(lo, hi, e.pcs, EVENT_PCS, 0) : 0;
    e.npcs = n > 0 ? (uint32_t)n : 0;
  }
  record(&e);
}

void tt__leak_event_park(const tt__coro *co, int reason, const void *obj) {
  /* Timed waits and waits on objects without owners keep their coroutine live: no event. */
  if (co->wait_timed || tt__leak_reason_is_root(reason))
    return;
  record(&(event){.t = tt__clock(), .op = "wait", .obj = obj, .by = co->id});
}

/* The event to blame for verdict v: the latest on an object it relied on (a release of it, a
 * wait on it, the exit of a holder it names), else the latest that let go of something (a release
 * or an exit), else NULL (its own wait was the last step). Ring lock held. */
static const event *blame(const tt_leak_verdict *v, uint64_t from) {
  const event *release = NULL;
  for (uint64_t i = mon.nev; i > from && i + NEVENTS > mon.nev; i--) {
    const event *e = &mon.ring[(i - 1) % NEVENTS];
    bool wait = strcmp(e->op, "wait") == 0;
    if (release == NULL && !wait)
      release = e;
    for (size_t j = 0; j < v->nevidence; j++) {
      const tt_leak_evidence *ev = &v->evidence[j];
      if ((e->obj && ev->obj == e->obj) || (e->create_pc && ev->coro && ev->coro == e->by))
        return e;
    }
  }
  return release;
}

bool tt__leak_write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

/* The verdicts first printed in this round: their ids, sorted. */
typedef struct fresh_ids {
  tt_id *v;
  size_t n;
} fresh_ids;

static int cmp_id(const void *a, const void *b) {
  tt_id x = *(const tt_id *)a, y = *(const tt_id *)b;
  return x < y ? -1 : x > y;
}

static int keep_ids(const tt_coro_info *ci, void *arg) {
  const fresh_ids *f = arg;
  return bsearch(&ci->id, f->v, f->n, sizeof *f->v, cmp_id) != NULL;
}

/* Runs a proof and prints the verdicts not printed before. */
static void eager_round(uint64_t from) {
  int fd = tt__rt.report_fd;
  tt_leak_report *r;
  int64_t t0 = tt__clock();
  int n = tt_leak_check(&r);
  mon.last_proof = tt__clock() - t0;
  if (n <= 0) {
    if (n == 0)
      tt_leak_report_free(r);
    return;
  }
  /* Keep only the new ones, blaming each on an event. */
  tt__sink k;
  tt__sink_mem(&k);
  size_t fresh = 0;
  fresh_ids ids = {tt__malloc(sizeof(tt_id) * tt_leak_report_len(r)), 0};
  for (size_t i = 0; i < tt_leak_report_len(r); i++) {
    const tt_leak_verdict *v = tt_leak_report_get(r, i);
    if (!tt__leak_mark_reported(v->id))
      continue;
    fresh++;
    if (ids.v)
      ids.v[ids.n++] = v->id;
    pthread_mutex_lock(&mon.lock);
    const event *e = blame(v, from);
    event copy;
    if (e)
      copy = *e;
    pthread_mutex_unlock(&mon.lock);
    tt__sink_printf(&k, "tether: leak: coroutine %llu can never be woken",
                    (unsigned long long)v->id);
    if (v->pattern != TT_PATTERN_NONE)
      tt__sink_printf(&k, " (%s)", tt_leak_pattern_string(v->pattern));
    tt__sink_str(&k, v->verdict == TT_VERDICT_DEADLOCK ? ": deadlocked\n" : "\n");
    if (v->ncycle) {
      tt__sink_str(&k, "\tlock cycle:");
      for (size_t j = 0; j < v->ncycle; j++)
        tt__sink_printf(&k, " %scoroutine %llu", j ? "-> " : "", (unsigned long long)v->cycle[j]);
      tt__sink_printf(&k, " -> coroutine %llu\n", (unsigned long long)v->cycle[0]);
    }
    for (size_t j = 0; j < v->nevidence; j++)
      tt__sink_printf(&k, "\t%s\n", v->evidence[j].text);
    if (e == NULL || (strcmp(copy.op, "wait") == 0 && copy.by == v->id)) {
      tt__sink_str(&k, "the last live way to wake it went with its own wait\n");
      tt__leak_set_cause(v->id, "its own wait", v->id, NULL, 0);
    } else if (strcmp(copy.op, "wait") == 0) {
      tt__sink_printf(&k,
                      "the last live way to wake it went when coroutine %llu blocked for good\n",
                      (unsigned long long)copy.by);
      tt__leak_set_cause(v->id, "a wait", copy.by, NULL, 0);
    } else if (copy.create_pc) {
      tt__sink_printf(&k,
                      "the last live way to wake it went with the exit of coroutine %llu, "
                      "created at:\n",
                      (unsigned long long)copy.by);
      uintptr_t pc = (uintptr_t)copy.create_pc;
      tt__write_pcs(&k, &pc, 1);
      tt__leak_set_cause(v->id, "coroutine exit", copy.by, &pc, 1);
    } else {
      tt__sink_printf(&k, "the last live way to wake it went with %s in %s %llu:\n", copy.op,
                      copy.by ? "coroutine" : "a plain thread, not a coroutine",
                      (unsigned long long)copy.by);
      tt__write_pcs(&k, copy.pcs, copy.npcs);
      tt__leak_set_cause(v->id, copy.op, copy.by, copy.pcs, copy.npcs);
    }
    tt__sink_str(&k, "\n");
  }
  if (fresh && ids.v) {
    /* And the traceback of each new one, marked. */
    qsort(ids.v, ids.n, sizeof *ids.v, cmp_id);
    tt_snapshot *s;
    if (tt_snapshot_take(&s) == 0) {
      tt_snapshot_filter(s, keep_ids, &ids);
      tt__write_traces(s, &k);
      tt_snapshot_free(s);
      tt__sink_str(&k, "\n");
    }
  }
  char *text;
  size_t len;
  if (tt__sink_take(&k, &text, &len) == 0) {
    if (fresh && fd >= 0)
      tt__leak_write_all(fd, text, len);
    if (fresh)
      tt__trace_report(); /* the flight recorder's dump, if one is on */
    free(text);
  }
  free(ids.v);
  tt_leak_report_free(r);
}

/* ---- The global deadlock -------------------------------------------------------------------- */

/* Threads in the process (/proc/self/status), or -1. */
static int process_threads(void) {
  FILE *f = fopen("/proc/self/status", "re");
  if (f == NULL)
    return -1;
  char line[256];
  int n = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "Threads:", 8) == 0) {
      n = atoi(line + 8);
      break;
    }
  fclose(f);
  return n;
}

/* Threads that exist before any program code runs: an emulator's (qemu-user's RCU thread), a
 * sanitizer's. Counted when the library is loaded, minus the main thread. */
static int infrastructure_threads;

__attribute__((constructor)) static void count_infrastructure(void) {
  int n = process_threads();
  infrastructure_threads = n > 1 ? n - 1 : 0;
#if defined(TT_SANITIZE_THREAD)
  if (infrastructure_threads < 1)
    infrastructure_threads = 1; /* TSan's background thread, which may start later */
#endif
}

/* Whether some thread other than the runtime's own and tt_run's caller exists. */
static bool other_threads(void) {
  int n = process_threads();
  /* The workers, the runtime's helper threads (this one included), tt_run's caller, and the
   * threads that were there before the program's code. */
  int ours = tt__rt.procs + atomic_load_explicit(&tt__threads_internal, memory_order_acquire) + 1 +
             infrastructure_threads;
  return n < 0 || n > ours;
}

static bool heaps_empty(void) {
  for (int i = 0; i < tt__rt.procs; i++) {
    tt__worker *w = &tt__rt.workers[i];
    if (atomic_load_explicit(&w->timers.hint, memory_order_acquire) ||
        atomic_load_explicit(&w->ptimers.hint, memory_order_acquire))
      return false;
  }
  return true;
}

/* Whether every coroutine looks asleep for good, from counters alone. */
static bool looks_dead(void) {
  if (atomic_load_explicit(&tt__rt.state, memory_order_acquire) != 1)
    return false;
  if (atomic_load_explicit(&tt__rt.nsleeping, memory_order_acquire) != tt__rt.procs ||
      atomic_load_explicit(&tt__rt.gq_len, memory_order_acquire) != 0 || !heaps_empty())
    return false;
  tt_counts c;
  if (tt_counts_get(&c) != 0 || c.total == 0 || c.by_state[TT_STATE_WAITING] != c.total)
    return false;
  return c.by_reason[TT_WAIT_SLEEP] == 0 && c.by_reason[TT_WAIT_BLOCKING_CALL] == 0 &&
         c.by_reason[TT_WAIT_IO_WAIT] == 0 && !tt__signal_active();
}

struct confirm {
  bool dead;
};

static void confirm_one(tt__coro *co, void *arg) {
  struct confirm *c = arg;
  uint32_t st = atomic_load_explicit(&co->status, memory_order_acquire) & TT__S_STATE_MASK;
  tt__waiter *wt = co->waiter;
  if (st != TT__S_WAITING || wt == NULL ||
      atomic_load_explicit(&wt->token, memory_order_acquire) != TT__WAITING || co->wait_timed ||
      co->wait_reason == TT_WAIT_SLEEP || co->wait_reason == TT_WAIT_BLOCKING_CALL ||
      co->wait_reason == TT_WAIT_IO_WAIT)
    c->dead = false;
}

/* Ends the run on a deadlock: the report, then the workers stop with coroutine 1 unfinished. */
static void deadlock(void) {
  int fd = tt__rt.report_fd;
  tt_leak_check(NULL); /* mark what the proof can explain */
  tt__sink k;
  tt__sink_mem(&k);
  tt__sink_str(&k, "fatal error: all goroutines are asleep - deadlock!\n\n");
  tt_snapshot *s;
  if (tt_snapshot_take(&s) == 0) {
    tt__write_traces(s, &k);
    tt_snapshot_free(s);
  }
  char *text;
  size_t len;
  if (tt__sink_take(&k, &text, &len) == 0) {
    if (fd >= 0)
      tt__leak_write_all(fd, text, len);
    free(text);
  }
  tt__trace_report(); /* the flight recorder's dump, if one is on */
  tt__sched_deadlocked();
}

/* 1: a deadlock (the run is ending), 0: none, -1: none for now, but only because of other
 * threads (look again later). */
static int deadlock_check(void) {
  uint64_t progress = tt__sched_progress();
  if (progress == mon.idle_mark || !looks_dead())
    return 0;
  /* Let it settle: a program that hands work back and forth can have every worker asleep for a
   * moment. Only a stillness that lasts is worth the process's thread list and a stop. */
  int64_t until = tt__clock() + SETTLE_NS;
  for (;;) {
    uint32_t cur = atomic_load_explicit(&mon.kick, memory_order_acquire);
    if ((cur & KICK_STOP) || tt__clock() >= until)
      break;
    tt__futex_wait(&mon.kick, cur, until);
  }
  if (tt__sched_progress() != progress || !looks_dead())
    return 0;
  if (other_threads()) {
    mon.idle_mark = progress;
    return -1;
  }
  if (tt__stw_begin(100 * TT_MSEC) != 0)
    return 0;
  struct confirm c = {.dead = heaps_empty() && !tt__signal_active()};
  if (c.dead)
    tt__registry_walk(confirm_one, &c);
  tt__stw_end();
  if (!c.dead) {
    mon.idle_mark = progress;
    return 0;
  }
  deadlock();
  return 1;
}

/* ---- The thread ----------------------------------------------------------------------------- */

void tt__monitor_idle(void) {
  /* Only when no timer is pending anywhere: a timer will wake someone. */
  /* relaxed: a worker that misses a fresh start only skips one kick; the monitor checks on its
   * own first wake-up. */
  if (atomic_load_explicit(&mon.started, memory_order_relaxed) && heaps_empty())
    kick(KICK_IDLE);
}

static void *monitor_main(void *unused) {
  (void)unused;
  atomic_fetch_add_explicit(&tt__threads_internal, 1, memory_order_release);
  pthread_setname_np(pthread_self(), "tt-monitor");
  uint64_t seen = 0;     /* events already proven against */
  int64_t retry_at = -1; /* a deadlock check to repeat (other threads) */
  int64_t retry_wait = 10 * TT_MSEC;
  for (;;) {
    uint32_t k = atomic_exchange_explicit(&mon.kick, 0, memory_order_acquire);
    if (k & KICK_STOP)
      break;
    if (k == 0) {
      tt__futex_wait(&mon.kick, 0, retry_at);
      if (retry_at >= 0 && tt__clock() >= retry_at) {
        retry_at = -1;
        mon.idle_mark = 0;
        atomic_fetch_or_explicit(&mon.kick, KICK_IDLE, memory_order_relaxed);
      }
      continue;
    }
    if (k & KICK_EVENT) {
      /* Let the events settle, and space the proofs by ten times the last one's duration. */
      int64_t pause = mon.last_proof * 10;
      if (pause < TT_MSEC)
        pause = TT_MSEC;
      int64_t until = tt__clock() + pause;
      for (;;) {
        uint32_t cur = atomic_load_explicit(&mon.kick, memory_order_acquire);
        if ((cur & KICK_STOP) || tt__clock() >= until)
          break;
        tt__futex_wait(&mon.kick, cur, until);
      }
      pthread_mutex_lock(&mon.lock);
      uint64_t from = seen;
      seen = mon.nev;
      pthread_mutex_unlock(&mon.lock);
      eager_round(from);
    }
    if (k & KICK_IDLE) {
      int r = deadlock_check();
      if (r == 1)
        break;
      if (r < 0) {
        retry_at = tt__clock() + retry_wait;
        if (retry_wait < TT_SEC)
          retry_wait *= 2;
      } else {
        retry_wait = 10 * TT_MSEC;
      }
    }
  }
  atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
  return NULL;
}

void tt__monitor_start(void) {
  atomic_store_explicit(&mon.kick, 0, memory_order_relaxed);
  mon.idle_mark = 0;
  mon.last_proof = 0;
  pthread_mutex_lock(&mon.lock);
  mon.nev = 0;
  pthread_mutex_unlock(&mon.lock);
  atomic_store_explicit(&mon.started, pthread_create(&mon.thread, NULL, monitor_main, NULL) == 0,
                        memory_order_relaxed); /* relaxed: a flag only (the kick is the futex's) */
}

void tt__monitor_stop(void) {
  if (!atomic_load_explicit(&mon.started, memory_order_relaxed))
    return;
  kick(KICK_STOP);
  pthread_join(mon.thread, NULL);
  atomic_store_explicit(&mon.started, false, memory_order_relaxed);
}
