/* SPDX-License-Identifier: MIT */
/* The seed's second cause: a mutex locked by a function that returns (on an early path, without
 * unlocking) while another coroutine waits for it.
 *
 *   leaky  "request" calls handle(), which locks the mutex and returns early on an error, still
 *          holding it; "request" exits. "next request" waits for the mutex forever (mutex held by
 *          an exited coroutine);
 *   fixed  handle() unlocks on its early return too. */
#include "corpus.h"

static tt_mutex mu = TT_MUTEX_INIT; /* static: the waiter stays queued on it until exit */
static int table;

static __attribute__((noinline)) int handle(int leaky, int key) {
  tt_mutex_lock(&mu);
  if (key < 0) { /* an error path */
    if (!leaky)
      tt_mutex_unlock(&mu); /* the fix */
    return -1;
  }
  table += key;
  tt_mutex_unlock(&mu);
  return 0;
}

static void request(void *arg) { handle((int)(intptr_t)arg, -1); }

static void next_request(void *arg) {
  (void)arg;
  if (tt_mutex_lock(&mu) == 0) {
    table++;
    tt_mutex_unlock(&mu);
  }
}

static void scenario(int leaky) {
  CORPUS_GO("request", request, (void *)(intptr_t)leaky);
  while (tt_num_coroutines() > 1) /* the first request is over */
    tt_sleep(100 * TT_USEC);
  CORPUS_GO("next request", next_request, NULL);
  if (leaky)
    corpus_await(TT_WAIT_MUTEX_LOCK, 1);
  else
    corpus_await_alone();
}

CORPUS_PROGRAM()
