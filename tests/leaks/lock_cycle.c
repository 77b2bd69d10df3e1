/* SPDX-License-Identifier: MIT */
/* Lock cycle: "transfer a->b" locks account a then b; "transfer b->a" locks b then a.
 *
 *   leaky  each holds its first lock and waits for the other's (a deadlock: both leaked, as one
 *          cycle);
 *   fixed  both take the locks in the same order (a, then b), so neither can hold what the other
 *          needs while waiting.
 *
 * In the leaky twin each transfer waits, holding its first lock, until the other holds its own:
 * that makes the bad interleaving certain rather than likely. The fixed twin needs no such wait
 * (and could not have one: the second transfer waits for a, which the first holds). */
#include "corpus.h"

static struct {
  tt_mutex a, b;
  tt_wg both; /* leaky: both first locks are taken */
  int balance_a, balance_b;
} bank = {TT_MUTEX_INIT, TT_MUTEX_INIT, TT_WG_INIT, 100, 100};

static void transfer(tt_mutex *first, tt_mutex *second) {
  tt_mutex_lock(first);
  if (corpus.leaky) {
    tt_wg_done(&bank.both);
    tt_wg_wait(&bank.both);
  }
  tt_mutex_lock(second);
  bank.balance_a -= 10;
  bank.balance_b += 10;
  tt_mutex_unlock(second);
  tt_mutex_unlock(first);
}

static void a_to_b(void *arg) {
  (void)arg;
  transfer(&bank.a, &bank.b);
}

static void b_to_a(void *arg) {
  (void)arg;
  if (corpus.leaky)
    transfer(&bank.b, &bank.a);
  else
    transfer(&bank.a, &bank.b); /* the fix: one global order */
}

static void scenario(int leaky) {
  tt_wg_add(&bank.both, 2);
  CORPUS_GO("transfer a->b", a_to_b, NULL);
  CORPUS_GO("transfer b->a", b_to_a, NULL);
  if (leaky)
    corpus_await(TT_WAIT_MUTEX_LOCK, 2);
  else
    corpus_await_alone();
}

CORPUS_PROGRAM()
