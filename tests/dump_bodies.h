/* SPDX-License-Identifier: MIT */
/* The dump tests' coroutine bodies (dump_bodies.c, compiled -O2 -fomit-frame-pointer). */
#ifndef TT_TEST_DUMP_BODIES_H
#define TT_TEST_DUMP_BODIES_H

#include <stdatomic.h>

#include <tether.h>

extern tt_chan *dump_never; /* nobody ever sends on it */
extern tt_mutex dump_mu;    /* locked by the test, never unlocked while they wait */
extern atomic_int dump_spin_stop;
extern atomic_long dump_sink;
/* The line of each body's parking call, set by the body before it parks. */
extern atomic_int dump_line_chan, dump_line_mutex, dump_line_loop, dump_line_select;

void dump_leak_chan(void *arg);  /* receives from dump_never */
void dump_leak_mutex(void *arg); /* locks dump_mu */
void dump_leak_loop(void *arg);  /* sleeps a second, forever */
void dump_select(void *arg);     /* selects on dump_never and a nil channel */
void dump_spin(void *arg);       /* spins until dump_spin_stop */
void dump_deep(void *arg);       /* recurses (intptr_t)arg frames deep, then receives */

#endif
