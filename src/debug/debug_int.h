/* SPDX-License-Identifier: MIT */
/* The debug endpoint's parts (tether/debug.h): the HTTP server (server.c, http.c) and the bodies
 * it serves that are not plain dumps (metrics.c, page.c). Every body is written through a
 * tt__sink, which the server streams to the client (chunked), so no body is ever held whole. */
#ifndef TT_DEBUG_INT_H
#define TT_DEBUG_INT_H

#include "diag/diag_int.h"
#include "internal.h"

/* /metrics: Prometheus text exposition format 0.0.4 (HELP and TYPE lines, counters ending in
 * _total), every family prefixed "tether_". Families (at least):
 *   tether_coroutines{state="runnable|running|waiting"}            gauge   (tt_counts_get)
 *   tether_coroutines_waiting{reason="chan receive",...}           gauge   one per wait reason
 *   tether_coroutines_created_total, tether_coroutines_exited_total counter
 *   tether_coroutines_peak                                          gauge
 *   tether_coroutines_leaked                                        gauge   (verdicts in force)
 *   tether_workers                                                  gauge
 *   tether_worker_runqueue{worker="0"}                              gauge   (tt__worker_figures)
 *   tether_worker_switches_total{worker}, tether_worker_parks_total{worker},
 *   tether_worker_steals_total{worker}, tether_worker_sleeps_total{worker},
 *   tether_worker_polls_total{worker}, tether_worker_poll_events_total{worker}   counter
 *   tether_worker_io_waiters{worker}, tether_timers{worker}         gauge
 *   tether_blocking_*                                               (tt_blocking_stats_get)
 *   tether_up 1 / tether_running 0|1                                gauge
 * While the runtime is stopped only tether_up and tether_running (0) are written. Never stops the
 * world and never blocks on tether objects: it answers while every worker is hogged. Returns 0
 * or the sink's error. */
int tt__debug_metrics(tt__sink *s);

/* /debug/tether/groups.json: the live page's data. The coroutines of a snapshot grouped by
 * identical stack (and state and wait reason), largest group first:
 *   {"taken_ns":..., "total":N, "leaked":N, "groups":[{"count":N, "state":"waiting",
 *    "reason":"chan receive", "leaked":N, "wait_min_ns":..., "wait_max_ns":...,
 *    "creator":"main.c:12 spawn_workers", "ids":[first few ids], "frames":[{"func":...,
 *    "file":..., "line":N}, ...]}, ...]}
 * Strings escaped per RFC 8259. query is the request's raw query string (may be NULL): state=,
 * q= (substring of any frame, reason or creator), limit= (groups, default 500) filter on the
 * server too. Returns 0, or TT_ENOTRUNNING, TT_ENOMEM, TT_EINVAL (a limit= that is not a number
 * from 1 to 100000: a bad request), or the sink's error. */
int tt__debug_groups_json(tt__sink *s, const char *query);

/* /debug/tether/: the live page, one self-contained HTML document (no external script, style or
 * font: it works offline and under a strict CSP) that fetches groups.json every 2 s and shows the
 * groups (count, state, wait time range, creator, stack), leaked groups highlighted, filterable
 * by state and by text; the page's own query (?state=waiting&q=worker) pre-sets the filters. */
extern const char tt__debug_page_html[];

#endif
