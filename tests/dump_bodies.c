/* SPDX-License-Identifier: MIT */
/* Coroutine bodies for the dump tests, compiled with -O2 -fomit-frame-pointer
 * (tests/CMakeLists.txt) so that the dumps must unwind them with DWARF call-frame information. Each
 * parks in a known place; dump_line_* hold the line of each parking call, for the tests to find in
 * the output. Every call is followed by a volatile store, so that none is a tail call. */
#include <stdatomic.h>

#include <tether.h>

#include "dump_bodies.h"

tt_chan *dump_never;
tt_mutex dump_mu = TT_MUTEX_INIT;
atomic_int dump_spin_stop;
atomic_long dump_sink; /* keeps the calls from being tail calls */
atomic_int dump_line_chan, dump_line_mutex, dump_line_loop, dump_line_select;

__attribute__((noinline)) void dump_leak_chan(void *arg) {
  int v = 0;
  bool ok;
  atomic_store_explicit(&dump_line_chan, __LINE__ + 1, memory_order_relaxed);
  tt_chan_recv(dump_never, &v, &ok);
  atomic_fetch_add_explicit(&dump_sink, v, memory_order_relaxed);
  (void)arg;
}

__attribute__((noinline)) void dump_leak_mutex(void *arg) {
  atomic_store_explicit(&dump_line_mutex, __LINE__ + 1, memory_order_relaxed);
  tt_mutex_lock(&dump_mu);
  atomic_fetch_add_explicit(&dump_sink, 1, memory_order_relaxed);
  (void)arg;
}

__attribute__((noinline)) void dump_leak_loop(void *arg) {
  for (;;) {
    atomic_store_explicit(&dump_line_loop, __LINE__ + 1, memory_order_relaxed);
    if (tt_sleep(TT_SEC) != 0)
      break; /* cancelled at the end of the run */
    atomic_fetch_add_explicit(&dump_sink, 1, memory_order_relaxed);
  }
  (void)arg;
}

__attribute__((noinline)) void dump_select(void *arg) {
  int v = 0;
  tt_select_case c[2] = {TT_CASE_RECV(dump_never, &v), TT_CASE_RECV(NULL, &v)};
  atomic_store_explicit(&dump_line_select, __LINE__ + 1, memory_order_relaxed);
  tt_select(c, 2);
  atomic_fetch_add_explicit(&dump_sink, v, memory_order_relaxed);
  (void)arg;
}

__attribute__((noinline)) long dump_spin_inner(long x) {
  unsigned long u = (unsigned long)x;
  for (int i = 0; i < 1000; i++)
    u = u * 6364136223846793005UL + 1442695040888963407UL;
  atomic_store_explicit(&dump_sink, (long)(u >> 1), memory_order_relaxed);
  return (long)(u >> 1);
}

__attribute__((noinline)) void dump_spin(void *arg) {
  long x = 1;
  while (!atomic_load_explicit(&dump_spin_stop, memory_order_relaxed))
    x = dump_spin_inner(x);
  atomic_store_explicit(&dump_sink, x, memory_order_relaxed);
  (void)arg;
}

__attribute__((noinline)) int dump_recurse(int n) {
  if (n == 0) {
    bool ok;
    int v = 0;
    tt_chan_recv(dump_never, &v, &ok);
    atomic_fetch_add_explicit(&dump_sink, v, memory_order_relaxed);
    return 0;
  }
  int r = dump_recurse(n - 1);
  atomic_fetch_add_explicit(&dump_sink, r, memory_order_relaxed);
  return r + 1;
}

void dump_deep(void *arg) {
  dump_recurse((int)(intptr_t)arg);
  atomic_fetch_add_explicit(&dump_sink, 1, memory_order_relaxed);
}
