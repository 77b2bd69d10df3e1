/* SPDX-License-Identifier: MIT */
/* tether's test runner: TEST(name) defines a test; assertions print the expression and the values
 * and abort (never longjmp: that is undefined across coroutine stacks). Every test runs in a
 * process of its own, started by CTest as `tether-tests NAME` with a timeout. */
#ifndef TT_TEST_H
#define TT_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether.h>

typedef void (*tt_test_fn)(void);
void tt_test_register(const char *name, tt_test_fn fn, const char *file);

#define TEST(name)                                                                                 \
  static void test_##name(void);                                                                   \
  __attribute__((constructor)) static void test_register_##name(void) {                            \
    tt_test_register(#name, test_##name, __FILE__);                                                \
  }                                                                                                \
  static void test_##name(void)

void tt_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define ASSERT(expr)                                                                               \
  do {                                                                                             \
    if (!(expr))                                                                                   \
      tt_test_fail(__FILE__, __LINE__, "assertion failed: %s", #expr);                             \
  } while (0)

#define ASSERT_CMP_(a, op, b, type, fmt)                                                           \
  do {                                                                                             \
    type a_ = (type)(a), b_ = (type)(b);                                                           \
    if (!(a_ op b_))                                                                               \
      tt_test_fail(__FILE__, __LINE__, "assertion failed: %s %s %s (%" fmt " vs %" fmt ")", #a,    \
                   #op, #b, a_, b_);                                                               \
  } while (0)

#define ASSERT_EQ(a, b) ASSERT_CMP_(a, ==, b, int64_t, PRId64)
#define ASSERT_NE(a, b) ASSERT_CMP_(a, !=, b, int64_t, PRId64)
#define ASSERT_LT(a, b) ASSERT_CMP_(a, <, b, int64_t, PRId64)
#define ASSERT_LE(a, b) ASSERT_CMP_(a, <=, b, int64_t, PRId64)
#define ASSERT_GT(a, b) ASSERT_CMP_(a, >, b, int64_t, PRId64)
#define ASSERT_GE(a, b) ASSERT_CMP_(a, >=, b, int64_t, PRId64)
#define ASSERT_UEQ(a, b) ASSERT_CMP_(a, ==, b, uint64_t, PRIu64)
#define ASSERT_PTR_EQ(a, b) ASSERT_CMP_(a, ==, b, uintptr_t, PRIxPTR)

/* The call must return 0; otherwise prints its TT_E* code. */
#define ASSERT_OK(call)                                                                            \
  do {                                                                                             \
    int r_ = (call);                                                                               \
    if (r_ != 0)                                                                                   \
      tt_test_fail(__FILE__, __LINE__, "%s returned %d (%s)", #call, r_, tt_strerror(r_));         \
  } while (0)

/* The call must return exactly err. */
#define ASSERT_ERR(call, err)                                                                      \
  do {                                                                                             \
    int r_ = (call);                                                                               \
    if (r_ != (err))                                                                               \
      tt_test_fail(__FILE__, __LINE__, "%s returned %d (%s), expected %s", #call, r_,              \
                   tt_strerror(r_), #err);                                                         \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                                                        \
  do {                                                                                             \
    const char *a_ = (a), *b_ = (b);                                                               \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                           \
      tt_test_fail(__FILE__, __LINE__, "assertion failed: %s == %s (\"%s\" vs \"%s\")", #a, #b,    \
                   a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                        \
  } while (0)

#define ASSERT_CONTAINS(hay, needle)                                                               \
  do {                                                                                             \
    const char *h_ = (hay), *n_ = (needle);                                                        \
    if (h_ == NULL || strstr(h_, n_) == NULL)                                                      \
      tt_test_fail(__FILE__, __LINE__, "%s does not contain \"%s\"; it is:\n%s", #hay, n_,         \
                   h_ ? h_ : "(null)");                                                            \
  } while (0)

/* Scale for big tests: TT_TEST_SCALE (default 1; the TSan and qemu runs set less). */
double tt_test_scale(void);
/* n scaled, at least lo. */
int64_t tt_test_scaled(int64_t n, int64_t lo);
#define SCALED(n, lo) tt_test_scaled((n), (lo))

/* Tolerance multiplier for timing assertions: TT_TEST_SLOW (default 1; sanitizer runs set more). */
double tt_test_slow(void);

/* Every test that starts the runtime goes through these (never tt_run directly), so that the
 * leak check is part of every test: when fn returns, still in coroutine 1, tt_leak_verify_none
 * checks that fn left no coroutine behind (waiting up to TT_TEST_LEAK_TIMEOUT for stragglers)
 * and fails the test with its report otherwise. */
#define TT_TEST_LEAK_TIMEOUT ((int64_t)(TT_SEC * tt_test_slow()))
/* Runs fn(arg) with the check under tt_run with opts and returns tt_run's result. */
int tt_test_run_opt(int (*fn)(void *), void *arg, const tt_run_opts *opts);
/* The same with procs workers (unless 0), asserting that tt_run returned 0. */
void tt_test_run(int (*fn)(void *), void *arg, int procs);
/* tt_test_run_opt without the leak check, for tests that leave coroutines behind on purpose
 * (shut-down tests, dumps of blocked coroutines...): reason says why, and is printed. */
int tt_test_run_unchecked(int (*fn)(void *), void *arg, const tt_run_opts *opts,
                          const char *reason);
/* The name of the test running (argv[1]). */
const char *tt_test_name(void);

/* Starts argv[0] (a path) with argv and the extra environment entries env (NULL-terminated, may be
 * NULL), waits, and returns its exit status as from waitpid; its stderr (and stdout) are captured
 * into a malloc'd NUL-terminated string stored in *out (if out is not NULL). */
int tt_test_spawn(char *const argv[], char *const env[], char **out);

/* Writes text into the test's log at once (a failing assertion exits without flushing stdio). */
void tt_test_show(const char *text);

/* A real client program the tests check our output with (go, panicparse, promtool, chromium):
 * its path on PATH (malloc'd), or NULL — with a printed "skipped" — under the emulator (the tools
 * there would be the host's) or, when it is missing, if TT_TEST_NO_CLIENTS is set; missing
 * otherwise fails the test: scripts/install-deps installs them all, and a silent skip would lose
 * the check. */
char *tt_test_client(const char *prog);

/* The directory holding the test executables (from /proc/self/exe). */
const char *tt_test_bindir(void);
/* Whether frames get file:line here (built with libdw, DWARF not turned off): without, names come
 * from the symbol tables and lines are ??:0, and tests skip their file:line checks. */
bool tt_test_have_dwarf(void);

/* Lines in /proc/self/<what> (maps) or entries in /proc/self/<what> (fd, task). */
int tt_test_proc_count(const char *what);

/* From a coroutine: waits (sleeping 50 us at a time) until at least n coroutines wait for the
 * given reason, or until only the caller is left; fails, rather than hangs, after a minute
 * (scaled by TT_TEST_SLOW). */
void tt_test_await_reason(int reason, int64_t n);
void tt_test_await_alone(void);

/* The runtime's internal hooks that tests use (hidden symbols, linked from the static library). */
int64_t tt__chan_count_live(void); /* channels made and not yet freed */
int64_t tt__ctx_count_live(void);  /* contexts made and not yet freed */
void tt__sched_dump(FILE *f);      /* every worker's queues, for post-mortems */
void tt__fault_arm(int site, int64_t nth);
int tt__leak_refresh(void); /* the proof now; TT_ENOSYS until the proof engine is built in */
int tt__chan_bias_owner(tt_chan *h); /* the worker a channel is biased to, or -1 */
int tt__chan_bias_available(void);
/* The calling coroutine's held locks, oldest first (kinds: 1 mutex, 2 read, 3 write); returns
 * how many it holds. */
int64_t tt__held_self(const void **objs, uint32_t *kinds, size_t max);

#endif
