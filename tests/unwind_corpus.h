/* SPDX-License-Identifier: MIT */
/* The unwinder's test corpus (unwind_corpus.c, built with -O2 -fomit-frame-pointer): coroutine
 * bodies of many frame shapes that park at the bottom, and busy and recursive chains for plain
 * threads. */
#ifndef TT_UNWIND_CORPUS_H
#define TT_UNWIND_CORPUS_H

#include <stdatomic.h>
#include <stdbool.h>

#include <tether.h>

/* Where the bodies park: a receive on corpus_gate (untracked, nobody sends; closing it releases
 * them), or for the sleeper a tt_sleep loop until corpus_stop is set. */
extern tt_chan *corpus_gate;
extern atomic_int corpus_stop;

typedef struct corpus_case {
  const char *name;
  void (*body)(void *);
  /* The function names expected from the innermost corpus frame to the body, NULL-terminated;
   * "*" stands for one or more frames outside the executable (the C library's). */
  const char *expect[32];
  /* Whether a frame beyond a compact rule is on the way (the walk needs libunwind past it);
   * cut_after is the index in expect of the last frame the own unwinder reaches alone. */
  bool complex;
  int cut_after;
} corpus_case;

extern const corpus_case corpus_cases[];
extern const int corpus_ncases;

/* Spins in a three-deep chain (outer, mid, leaf) until *stop is set; sets *spinning first. */
void corpus_spin_outer(atomic_int *stop, atomic_int *spinning);

/* Recurses depth frames deep (corpus_rec_here) and calls fn(arg) at the bottom. */
void corpus_recurse_then(int depth, void (*fn)(void *), void *arg);

/* A function inside the corpus, for computing the executable's load bias. */
void corpus_park(void);

#endif
