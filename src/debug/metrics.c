/* SPDX-License-Identifier: MIT */
/* /metrics: the runtime's figures in the Prometheus text exposition format, version 0.0.4.
 *
 * Everything is read without stopping anything: the coroutine counts from tt_counts_get (one
 * consistent instant, see tt__stats), the scheduler's figures per worker from
 * tt__worker_figures_get (racy reads, each true on its own), the blocking pool's from
 * tt_blocking_stats_get, and the leaked count by walking the registry for verdicts in force
 * (tt_coro_foreach holds each suspended coroutine still for a moment, never the world). The proof
 * itself is never run here: it stops the world, and a scrape every 15 s must not.
 *
 * All figures are gathered first and written after, so that a runtime that stops half-way
 * through gives the stopped form (tether_up 1, tether_running 0) rather than half a page, and so
 * that every family's samples are written together, as the format requires. */
#include <stdlib.h>
#include <string.h>

#include "debug/debug_int.h"

/* What one scrape reports. */
typedef struct figures {
  tt_counts counts;
  int64_t leaked;
  tt_blocking_stats blocking;
  tt_watchdog_counts watchdog;
  int nworkers;
  tt__worker_figures *workers;
} figures;

static int count_leaked(const tt_coro_info *ci, void *arg) {
  if (ci->verdict != TT_VERDICT_NONE)
    (*(int64_t *)arg)++;
  return 0;
}

/* Fills f; 0, TT_ENOTRUNNING (the runtime is stopped or stopped meanwhile) or TT_ENOMEM. */
static int gather(figures *f) {
  int err = tt_counts_get(&f->counts);
  if (err)
    return err;
  /* The worker count is fixed while the runtime runs; read after tt_counts_get saw it running. A
   * runtime restarted meanwhile with fewer workers answers TT_EINVAL below: treated as stopped. */
  int n = tt__rt.procs;
  if (n <= 0)
    return TT_ENOTRUNNING;
  f->workers = tt__calloc((size_t)n, sizeof *f->workers);
  if (f->workers == NULL)
    return TT_ENOMEM;
  f->nworkers = n;
  for (int i = 0; i < n; i++)
    if (tt__worker_figures_get(i, &f->workers[i]) != 0)
      return TT_ENOTRUNNING;
  if (tt_blocking_stats_get(&f->blocking) != 0)
    return TT_ENOTRUNNING;
  tt_watchdog_counts_get(&f->watchdog);
  f->leaked = 0;
  if (tt_coro_foreach(count_leaked, &f->leaked) != 0)
    return TT_ENOTRUNNING;
  return 0;
}

/* "# HELP name help\n# TYPE name type\n". The help texts are ours: no backslash or newline. */
static void family(tt__sink *s, const char *name, const char *type, const char *help) {
  tt__sink_str(s, "# HELP ");
  tt__sink_str(s, name);
  tt__sink_str(s, " ");
  tt__sink_str(s, help);
  tt__sink_str(s, "\n# TYPE ");
  tt__sink_str(s, name);
  tt__sink_str(s, " ");
  tt__sink_str(s, type);
  tt__sink_str(s, "\n");
}

/* A label value, escaped as the format says: backslash, double quote and newline. */
static void label_value(tt__sink *s, const char *v) {
  const char *run = v;
  for (; *v; v++) {
    if (*v != '\\' && *v != '"' && *v != '\n')
      continue;
    tt__sink_write(s, run, (size_t)(v - run));
    tt__sink_str(s, *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : "\\n");
    run = v + 1;
  }
  tt__sink_write(s, run, (size_t)(v - run));
}

/* One sample: name{key="value"} v, the label omitted when key is NULL. */
static void sample_u(tt__sink *s, const char *name, const char *key, const char *value,
                     uint64_t v) {
  tt__sink_str(s, name);
  if (key) {
    tt__sink_str(s, "{");
    tt__sink_str(s, key);
    tt__sink_str(s, "=\"");
    label_value(s, value);
    tt__sink_str(s, "\"}");
  }
  tt__sink_str(s, " ");
  tt__sink_u64(s, v);
  tt__sink_str(s, "\n");
}

static void sample_i(tt__sink *s, const char *name, const char *key, const char *value, int64_t v) {
  if (v >= 0) {
    sample_u(s, name, key, value, (uint64_t)v);
    return;
  }
  /* Counts are differences of counters read at one instant: never negative, but a gauge may be. */
  tt__sink_str(s, name);
  if (key) {
    tt__sink_str(s, "{");
    tt__sink_str(s, key);
    tt__sink_str(s, "=\"");
    label_value(s, value);
    tt__sink_str(s, "\"}");
  }
  tt__sink_str(s, " ");
  tt__sink_i64(s, v);
  tt__sink_str(s, "\n");
}

/* The figure of every worker, one family. */
static void per_worker(tt__sink *s, const figures *f, const char *name, const char *type,
                       const char *help, size_t offset, bool wide) {
  family(s, name, type, help);
  for (int i = 0; i < f->nworkers; i++) {
    const char *p = (const char *)&f->workers[i] + offset;
    uint64_t v = wide ? *(const uint64_t *)(const void *)p : *(const uint32_t *)(const void *)p;
    char idx[16];
    snprintf(idx, sizeof idx, "%d", i);
    sample_u(s, name, "worker", idx, v);
  }
}

static void write_up(tt__sink *s, bool running) {
  family(s, "tether_up", "gauge", "Whether the process answers (always 1).");
  sample_u(s, "tether_up", NULL, NULL, 1);
  family(s, "tether_running", "gauge", "Whether the tether runtime is running (tt_run).");
  sample_u(s, "tether_running", NULL, NULL, running ? 1 : 0);
  family(s, "tether_build_info", "gauge", "tether's version, as a label; the value is 1.");
  sample_u(s, "tether_build_info", "version", TT_VERSION_STRING, 1);
}

static void write_all(tt__sink *s, const figures *f) {
  write_up(s, true);
  const tt_counts *c = &f->counts;

  family(s, "tether_coroutines", "gauge", "Live coroutines by state.");
  for (int st = 0; st < TT_STATE_COUNT; st++)
    sample_i(s, "tether_coroutines", "state", tt_state_string(st), c->by_state[st]);

  family(s, "tether_coroutines_waiting", "gauge",
         "Waiting coroutines by wait reason (Go's strings where Go has the wait).");
  for (int r = 1; r < TT_WAIT_COUNT; r++)
    sample_i(s, "tether_coroutines_waiting", "reason", tt_wait_reason_string(r), c->by_reason[r]);

  family(s, "tether_coroutines_created_total", "counter",
         "Coroutines spawned in this run of the runtime.");
  sample_u(s, "tether_coroutines_created_total", NULL, NULL, c->created);
  family(s, "tether_coroutines_exited_total", "counter",
         "Coroutines that finished in this run of the runtime.");
  sample_u(s, "tether_coroutines_exited_total", NULL, NULL, c->exited);
  family(s, "tether_coroutines_peak", "gauge",
         "The most coroutines alive at once in this run (sampled: exact to 64 per worker).");
  sample_i(s, "tether_coroutines_peak", NULL, NULL, c->peak);
  family(s, "tether_coroutines_leaked", "gauge",
         "Live coroutines the last leak check proved leaked or deadlocked (verdicts in force).");
  sample_i(s, "tether_coroutines_leaked", NULL, NULL, f->leaked);

  family(s, "tether_workers", "gauge", "Worker threads of the scheduler.");
  sample_i(s, "tether_workers", NULL, NULL, f->nworkers);
  per_worker(s, f, "tether_worker_runqueue", "gauge",
             "Fresh coroutines queued in the worker's ring.", offsetof(tt__worker_figures, runq),
             false);
  per_worker(s, f, "tether_worker_switches_total", "counter",
             "Coroutines the worker ran (one per switch to a coroutine).",
             offsetof(tt__worker_figures, switches), true);
  per_worker(s, f, "tether_worker_parks_total", "counter",
             "Coroutines that parked on the worker (blocked, for any wait reason).",
             offsetof(tt__worker_figures, parks), true);
  per_worker(s, f, "tether_worker_steals_total", "counter",
             "Coroutines the worker stole from other workers' rings.",
             offsetof(tt__worker_figures, steals), true);
  per_worker(s, f, "tether_worker_sleeps_total", "counter",
             "Times the worker went to sleep with nothing to run.",
             offsetof(tt__worker_figures, sleeps), true);
  per_worker(s, f, "tether_worker_polls_total", "counter",
             "Times the worker polled its I/O poller.", offsetof(tt__worker_figures, polls), true);
  per_worker(s, f, "tether_worker_poll_events_total", "counter",
             "Descriptor events the worker's polls returned.",
             offsetof(tt__worker_figures, poll_events), true);
  per_worker(s, f, "tether_worker_io_waiters", "gauge",
             "Coroutines and threads waiting on descriptors the worker polls.",
             offsetof(tt__worker_figures, io_waiters), false);
  per_worker(s, f, "tether_timers", "gauge",
             "Timers armed in the worker's heaps (waits' deadlines and program timers).",
             offsetof(tt__worker_figures, timers), false);

  const tt_blocking_stats *b = &f->blocking;
  family(s, "tether_blocking_threads_max", "gauge", "The bound of tt_blocking's thread pool.");
  sample_i(s, "tether_blocking_threads_max", NULL, NULL, b->max);
  family(s, "tether_blocking_threads", "gauge",
         "tt_blocking's pool threads alive (starting, idle or busy).");
  sample_i(s, "tether_blocking_threads", NULL, NULL, b->threads);
  family(s, "tether_blocking_threads_busy", "gauge", "tt_blocking's pool threads running a job.");
  sample_i(s, "tether_blocking_threads_busy", NULL, NULL, b->busy);
  family(s, "tether_blocking_threads_idle", "gauge",
         "tt_blocking's pool threads waiting for a job.");
  sample_i(s, "tether_blocking_threads_idle", NULL, NULL, b->idle);
  family(s, "tether_blocking_queued", "gauge", "tt_blocking jobs waiting for a thread.");
  sample_i(s, "tether_blocking_queued", NULL, NULL, b->queued);

  family(s, "tether_watchdog_reports_total", "counter",
         "Watchdog reports since the process started, by kind (tether/watchdog.h).");
  sample_u(s, "tether_watchdog_reports_total", "kind",
           tt_watchdog_kind_string(TT_WATCHDOG_LONG_RUN), f->watchdog.long_run);
  sample_u(s, "tether_watchdog_reports_total", "kind",
           tt_watchdog_kind_string(TT_WATCHDOG_BLOCKING_SYSCALL), f->watchdog.blocking_syscall);
  sample_u(s, "tether_watchdog_reports_total", "kind",
           tt_watchdog_kind_string(TT_WATCHDOG_IGNORES_CANCEL), f->watchdog.ignores_cancel);
}

int tt__debug_metrics(tt__sink *s) {
  if (s == NULL)
    return TT_EINVAL;
  figures f = {0};
  int err = gather(&f);
  if (err == TT_ENOMEM) {
    free(f.workers);
    return err;
  }
  if (err)
    write_up(s, false);
  else
    write_all(s, &f);
  free(f.workers);
  return s->err;
}
