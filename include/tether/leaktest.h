/* SPDX-License-Identifier: MIT */
/* The leak checker in any C test framework (Criterion, cmocka, Unity, ...): plain functions, all
 * inline here, on top of tt_leak_verify_none (tether/leak.h). docs/LEAKS.md section 2 shows each
 * framework's fixture.
 *
 * Two ways to use it:
 *   - a fixture: tt_leaktest_begin in the set-up starts the runtime on a background thread (unless
 *     it runs already) and begins a scope on the test's thread; the test spawns coroutines and
 *     talks to them from its thread (plain threads may call every blocking tether function);
 *     tt_leaktest_end in the tear-down (or at the end of the test) checks the scope and stops
 *     what the set-up started. Tests running in parallel threads each see only their own leaks.
 *   - a run: tt_leaktest_run runs a function as coroutine 1 of tt_run and checks what it left
 *     behind when it returns.
 * Both return 0 or TT_ELEAKED with a report (debug=2 tracebacks with verdicts) to show in the
 * framework's failure message. */
#ifndef TETHER_LEAKTEST_H
#define TETHER_LEAKTEST_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "coro.h"
#include "leak.h"
#include "sync.h"

TT_BEGIN_DECLS

typedef struct tt_leaktest {
  /* Set before tt_leaktest_end if wanted (zero: tt_leak_verify_none's defaults; report_fd is -1
   * unless set: the framework prints the report). The scope is filled in by the fixture. */
  tt_leak_opts opts;
  /* After tt_leaktest_end: its result and, for TT_ELEAKED, the report (freed by the next
   * tt_leaktest_begin on this struct, or by tt_leaktest_free). */
  int result;
  char *report;
  /* Private. */
  tt_leak_scope *scope_;
  pthread_t thread_;
  pthread_mutex_t mu_;
  pthread_cond_t cv_;
  tt_wg stop_; /* coroutine 1 of the runtime started here waits on it */
  int state_;  /* 0 none, 1 the runtime started here runs, 3 it stopped; -1 not started here */
  int run_result_;
} tt_leaktest;

static inline void tt_leaktest_signal_(tt_leaktest *t, int state) {
  pthread_mutex_lock(&t->mu_);
  t->state_ = state;
  pthread_cond_broadcast(&t->cv_);
  pthread_mutex_unlock(&t->mu_);
}

static inline void tt_leaktest_await_(tt_leaktest *t, int state) {
  pthread_mutex_lock(&t->mu_);
  while (t->state_ < state)
    pthread_cond_wait(&t->cv_, &t->mu_);
  pthread_mutex_unlock(&t->mu_);
}

/* Coroutine 1 of the runtime a fixture started: parked until the tear-down lets it return. */
static inline int tt_leaktest_main_(void *p) {
  tt_leaktest *t = (tt_leaktest *)p;
  tt_leaktest_signal_(t, 1);
  tt_wg_wait(&t->stop_);
  return 0;
}

static inline void *tt_leaktest_thread_(void *p) {
  tt_leaktest *t = (tt_leaktest *)p;
  tt_run_opts o = {0};
  o.report_fd = -1; /* what a leaky test left is in its report already; it is cancelled */
  t->run_result_ = tt_run(tt_leaktest_main_, t, &o);
  tt_leaktest_signal_(t, 3);
  return NULL;
}

/* Frees the report of the last check. */
static inline void tt_leaktest_free(tt_leaktest *t) {
  if (t) {
    free(t->report);
    t->report = NULL;
  }
}

/* Set-up: starts the runtime on a thread of its own if it is not running (tt_leaktest_end stops
 * it), then begins a scope named name on the calling thread, so that the coroutines the test
 * spawns from this thread, and everything they spawn, are checked at the end. Returns 0, or
 * tt_run's and tt_leak_scope_begin's errors. Calls: blocks until the runtime runs; a plain thread
 * (the test's), not a coroutine. */
static inline int tt_leaktest_begin(tt_leaktest *t, const char *name) {
  if (t == NULL)
    return TT_EINVAL;
  tt_leaktest_free(t);
  tt_leak_opts keep = t->opts;
  t->result = 0;
  t->scope_ = NULL;
  t->state_ = 0;
  t->opts = keep;
  pthread_mutex_init(&t->mu_, NULL);
  pthread_cond_init(&t->cv_, NULL);
  if (!tt_running()) {
    tt_wg_init(&t->stop_);
    tt_wg_add(&t->stop_, 1);
    if (pthread_create(&t->thread_, NULL, tt_leaktest_thread_, t) != 0)
      return TT_ENOMEM;
    tt_leaktest_await_(t, 1);
    if (t->state_ == 3) {
      pthread_join(t->thread_, NULL);
      return t->run_result_ ? t->run_result_ : TT_ENOTRUNNING;
    }
  } else {
    t->state_ = -1; /* not ours to stop */
  }
  int err = tt_leak_scope_begin(name, &t->scope_);
  if (err && t->state_ == 1) {
    tt_wg_done(&t->stop_);
    pthread_join(t->thread_, NULL);
  }
  return err;
}

/* Tear-down: checks that nothing the test spawned is left (tt_leak_verify_none over its scope,
 * with t->opts), ends the scope and stops the runtime if tt_leaktest_begin started it (whatever
 * leaked is then cancelled and discarded). Returns (and stores in t->result) 0, TT_ELEAKED (the
 * report is in t->report), or tt_leak_verify_none's other errors.
 * Calls: blocks up to the check's timeout; the thread that called tt_leaktest_begin. */
static inline int tt_leaktest_end(tt_leaktest *t) {
  if (t == NULL || t->scope_ == NULL)
    return TT_EINVAL;
  tt_leak_opts o = t->opts;
  o.scope = t->scope_;
  if (o.report_fd == 0)
    o.report_fd = -1;
  tt_leaktest_free(t);
  t->result = tt_leak_verify_none(&o, &t->report);
  tt_leak_scope_end(t->scope_);
  t->scope_ = NULL;
  if (t->state_ == 1) {
    tt_wg_done(&t->stop_);
    pthread_join(t->thread_, NULL);
  }
  pthread_mutex_destroy(&t->mu_);
  pthread_cond_destroy(&t->cv_);
  return t->result;
}

typedef struct tt_leaktest_run_ {
  int (*fn)(void *);
  void *arg;
  const tt_leak_opts *opts;
  char **report;
  int leak;
} tt_leaktest_run_;

static inline int tt_leaktest_run_main_(void *p) {
  tt_leaktest_run_ *r = (tt_leaktest_run_ *)p;
  int res = r->fn(r->arg);
  tt_leak_opts o;
  if (r->opts)
    o = *r->opts;
  else {
    tt_leak_opts z = {0};
    o = z;
  }
  if (o.report_fd == 0)
    o.report_fd = -1;
  r->leak = tt_leak_verify_none(&o, r->report);
  return res;
}

/* Runs fn(arg) as coroutine 1 of tt_run (run_opts: tt_run's options, NULL: defaults) and, when fn
 * returns, checks with tt_leak_verify_none(leak_opts) that it left nothing behind. Returns
 * TT_ELEAKED (the report in *report, to free(), if report is not NULL) or the check's other
 * errors, else tt_run's result (fn's). Calls: as tt_run. */
static inline int tt_leaktest_run(int (*fn)(void *), void *arg, const tt_run_opts *run_opts,
                                  const tt_leak_opts *leak_opts, char **report) {
  char *rep = NULL;
  tt_leaktest_run_ r = {fn, arg, leak_opts, &rep, 0};
  if (report)
    *report = NULL;
  if (fn == NULL)
    return TT_EINVAL;
  tt_run_opts ro = {0};
  if (run_opts)
    ro = *run_opts;
  if (ro.report_fd == 0)
    ro.report_fd = -1; /* leaks are in the report */
  int res = tt_run(tt_leaktest_run_main_, &r, &ro);
  if (r.leak != 0 && res >= 0) {
    res = r.leak;
    if (report)
      *report = rep;
    else
      free(rep);
  } else {
    free(rep);
  }
  return res;
}

/* A set-up and tear-down pair with cmocka's signatures (usable by any framework that passes a
 * void ** state): cmocka_unit_test_setup_teardown(test, tt_leaktest_setup, tt_leaktest_teardown).
 * The set-up allocates a tt_leaktest into *state and begins it (name "cmocka test"); the
 * tear-down ends it, writes the report to stderr when something was left behind and returns -1,
 * which fails the test ("Test teardown failed"). */
static inline int tt_leaktest_setup(void **state) {
  tt_leaktest *t = (tt_leaktest *)calloc(1, sizeof *t);
  if (t == NULL)
    return -1;
  if (tt_leaktest_begin(t, "cmocka test") != 0) {
    free(t);
    return -1;
  }
  *state = t;
  return 0;
}

static inline int tt_leaktest_teardown(void **state) {
  tt_leaktest *t = (tt_leaktest *)*state;
  int r = tt_leaktest_end(t);
  if (r != 0 && t->report)
    fputs(t->report, stderr);
  else if (r != 0)
    fprintf(stderr, "tt_leaktest_end: %s\n", tt_strerror(r));
  tt_leaktest_free(t);
  free(t);
  *state = NULL;
  return r == 0 ? 0 : -1;
}

/* Criterion (include <criterion/criterion.h> first): TT_LEAK_TEST(suite, name, ...) is
 * Test(suite, name, ...) whose body runs inside a tt_leaktest fixture named "suite::name"; the
 * test fails with the report when its body leaves coroutines behind. (Criterion does not fail a
 * test from a .fini function, so the check is part of the test itself.) */
#if defined(CRITERION_H_)
#define TT_LEAK_TEST(suite, name, ...)                                                             \
  static void tt_leak_body_##suite##_##name(void);                                                 \
  Test(suite, name, ##__VA_ARGS__) {                                                               \
    static tt_leaktest tt_lt_;                                                                     \
    cr_assert_eq(tt_leaktest_begin(&tt_lt_, #suite "::" #name), 0);                                \
    tt_leak_body_##suite##_##name();                                                               \
    int tt_r_ = tt_leaktest_end(&tt_lt_);                                                          \
    cr_assert_eq(tt_r_, 0, "coroutines left behind:\n%s",                                          \
                 tt_lt_.report ? tt_lt_.report : tt_strerror(tt_r_));                              \
    tt_leaktest_free(&tt_lt_);                                                                     \
  }                                                                                                \
  static void tt_leak_body_##suite##_##name(void)
#endif

TT_END_DECLS

#endif
