/* SPDX-License-Identifier: MIT */
/* Mutex holder exits: a coroutine write-locks a shared configuration (an rwmutex), fails half way
 * and exits without unlocking; readers queue behind the write lock.
 *
 *   leaky  both readers wait forever for a write lock whose holder is gone (held by an exited
 *          coroutine);
 *   fixed  the updater unlocks on its failure path too.
 * (The seed's own mutex case, seed_mutex.c, is the plain mutex; this one is the rwmutex, with
 * several waiters.) */
#include "corpus.h"

static tt_rwmutex config_lock = TT_RWMUTEX_INIT; /* static: the readers stay queued until exit */
static int config;

static void updater(void *arg) {
  (void)arg;
  tt_rwmutex_lock(&config_lock);
  int parsed = -1; /* the new configuration does not parse */
  if (parsed < 0) {
    if (!corpus.leaky)
      tt_rwmutex_unlock(&config_lock); /* the fix */
    return;
  }
  config = parsed;
  tt_rwmutex_unlock(&config_lock);
}

static volatile int seen;

static void reader(void *arg) {
  (void)arg;
  if (tt_rwmutex_rlock(&config_lock) == 0) {
    seen = config;
    tt_rwmutex_runlock(&config_lock);
  }
}

static void scenario(int leaky) {
  CORPUS_GO("updater", updater, NULL);
  while (tt_num_coroutines() > 1) /* the update is over */
    tt_sleep(100 * TT_USEC);
  CORPUS_GO("reader-1", reader, NULL);
  CORPUS_GO("reader-2", reader, NULL);
  if (leaky)
    corpus_await(TT_WAIT_RWMUTEX_RLOCK, 2);
  else
    corpus_await_alone();
}

CORPUS_PROGRAM()
