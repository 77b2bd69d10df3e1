/* SPDX-License-Identifier: MIT */
/* The exit check (TT_LEAKCHECK=1): when coroutine 1's function returns, report every coroutine
 * still alive, as LeakSanitizer reports the blocks still allocated at exit.
 *
 * Design
 * ------
 * Coroutine 1 runs the check right after the program's function returned and before anything is
 * cancelled, so what it sees is what the program left behind. Reported: every live coroutine that
 * is not a daemon and not coroutine 1 itself. Daemons (tt_go_opts.daemon) are intentionally
 * long-lived, as goleak and every other layer treat them.
 *
 * Settling. A coroutine that main has just released (a worker woken by main's last close, a
 * group child finishing) is runnable, not leaked: reporting it would make the check flaky. So the
 * check first waits, for at most SETTLE_NS, while any candidate is runnable or running, sleeping
 * with a growing pause (it returns at once when none is left, and as soon as every candidate is
 * parked). A coroutine that never stops running (a loop that ignores its context) costs the exit
 * SETTLE_NS and is then reported. Parked coroutines are reported without waiting, including those
 * whose wait has a deadline: as LeakSanitizer does not wait for a free that may come later, the
 * check does not wait for a timer that may come later.
 *
 * Then it runs the proof (tt__leak_refresh), so that each reported coroutine carries its verdict:
 * leaked or deadlocked when proven, "not proven" when the proof ran and found something live
 * that may still wake it, "unknown" when the proof could not run (TT_EBUSY, TT_EAGAIN). A snapshot
 * then gives every coroutine's stack, creation site, wait reason and time, printed in Go's debug=2
 * form (the dump's own writer) after a line with the verdict and the exact wait time.
 *
 * The caller decides what a report means: tt_main exits with TT_LEAKCHECK_STATUS, tt_run returns
 * TT_ELEAKED after its usual shut-down (src/sched/sched.c). */
#include <stdlib.h>
#include <string.h>

#include "diag/snap_int.h"
#include "leak/leak_int.h"

#define SETTLE_NS (100 * TT_MSEC)

struct census {
  tt__coro *self;
  int64_t candidates; /* non-daemon coroutines other than self */
  int64_t busy;       /* of which runnable or running */
};

static void census_one(tt__coro *co, void *arg) {
  struct census *c = arg;
  if (co == c->self || co->daemon)
    return;
  /* relaxed: a hint for the settling loop; the report itself comes from a snapshot. */
  uint32_t st = atomic_load_explicit(&co->status, memory_order_relaxed) & TT__S_STATE_MASK;
  if (st == TT__S_FREE)
    return;
  c->candidates++;
  if (st != TT__S_WAITING)
    c->busy++;
}

static struct census take_census(tt__coro *self) {
  struct census c = {self, 0, 0};
  tt__registry_walk(census_one, &c);
  return c;
}

static bool reported(const tt_snapshot *s, const tt__snap_entry *e) {
  return e->id != s->self && !e->daemon;
}

/* The line before a coroutine's traceback: its verdict, and what it does and for how long. */
static void put_verdict_line(tt__sink *k, const tt_snapshot *s, const tt__snap_entry *e,
                             int proof) {
  tt__sink_str(k, "coroutine ");
  tt__sink_u64(k, e->id);
  if (e->name) {
    tt__sink_str(k, " \"");
    tt__sink_str(k, e->name);
    tt__sink_str(k, "\"");
  }
  tt__sink_str(k, ": ");
  if (e->verdict == TT_VERDICT_DEADLOCK)
    tt__sink_str(k, "deadlocked (a cycle of lock holders waiting on each other)");
  else if (e->verdict == TT_VERDICT_LEAKED)
    tt__sink_str(k, "leaked (nothing live can ever wake it)");
  else if (proof < 0)
    tt__sink_printf(k, "verdict unknown (the proof could not run: %s)", tt_strerror(proof));
  else if (e->state == TT_STATE_WAITING)
    tt__sink_str(k, "still blocked (not proven leaked: something live may wake it)");
  else
    tt__sink_str(k, "still running (not proven leaked)");
  if (e->state == TT_STATE_WAITING) {
    tt__sink_str(k, "; blocked in ");
    tt__sink_str(k, tt_wait_reason_string(e->reason));
    if (e->blocked_since > 0 && s->taken >= e->blocked_since) {
      tt__sink_str(k, " for ");
      tt__leak_put_duration(k, s->taken - e->blocked_since);
    }
  } else {
    tt__sink_str(k, "; ");
    tt__sink_str(k, tt_state_string(e->state));
  }
  tt__sink_str(k, "\n");
}

/* Writes the report of s's reported coroutines (n of them, nleaked proven) to fd. */
static void write_report(int fd, const tt_snapshot *s, size_t n, size_t nleaked, int proof) {
  char buf[16384];
  tt__sink k;
  tt__sink_fd(&k, fd, buf, sizeof buf);
  tt__sink_printf(&k, "tether: LeakCheck: %zu %s still alive when main returned\n", n,
                  n == 1 ? "coroutine" : "coroutines");
  for (size_t i = 0; i < s->n && !k.err; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    if (!reported(s, e))
      continue;
    tt__sink_str(&k, "\n");
    put_verdict_line(&k, s, e, proof);
    tt__write_trace_one(s, e, &k);
  }
  tt__sink_printf(&k, "\nSUMMARY: tether LeakCheck: %zu %s alive when main returned", n,
                  n == 1 ? "coroutine" : "coroutines");
  if (proof >= 0)
    tt__sink_printf(&k, ", %zu proven leaked", nleaked);
  else
    tt__sink_str(&k, ", verdicts unknown");
  tt__sink_str(&k, ".\n");
  tt__sink_flush(&k);
}

bool tt__leak_exit_check(void) {
  if (tt__rt.leakcheck < TT_LEAKCHECK_EXIT)
    return false;
  tt__coro *self = tt__self();
  if (self == NULL)
    return false;
  /* Settle: let coroutines main has just released finish (see the design comment). */
  int64_t deadline = tt__clock() + SETTLE_NS, pause = 50 * TT_USEC;
  struct census c = take_census(self);
  while (c.candidates > 0 && c.busy > 0 && tt__clock() < deadline) {
    tt_sleep(pause);
    if (pause < 10 * TT_MSEC)
      pause *= 2;
    c = take_census(self);
  }
  if (c.candidates == 0)
    return false;

  /* The verdicts first, so that the snapshot carries them. */
  int proof = tt__leak_refresh();
  int fd = tt__rt.report_fd;
  tt_snapshot *s;
  if (tt__snapshot_take(&s, false) != 0) {
    if (fd >= 0) {
      tt__write_str(fd, "tether: LeakCheck: ");
      tt__write_u64(fd, (uint64_t)c.candidates);
      tt__write_str(fd, " coroutines still alive when main returned (no snapshot: out of "
                        "memory); the coroutines:\n");
      tt__report_leftovers(fd, self);
    }
    return true;
  }
  tt__snap_sort(s); /* without memory for the order: in the walk's order */
  size_t n = 0, nleaked = 0;
  for (size_t i = 0; i < s->n; i++) {
    const tt__snap_entry *e = tt__snap_at(s, i);
    if (reported(s, e)) {
      n++;
      nleaked += e->verdict != TT_VERDICT_NONE;
    }
  }
  /* Everything the census saw may have exited since: then there is nothing to report. */
  if (n > 0 && fd >= 0)
    write_report(fd, s, n, nleaked, proof);
  tt_snapshot_free(s);
  return n > 0;
}
