/* SPDX-License-Identifier: MIT */
/* The leak corpus's shared program side (docs/LEAKS.md, section 5; the harness is
 * tests/test_leak_corpus.c). Every tests/leaks/<name>.c is one leak pattern as a small program:
 *
 *   leak-<name> leaky|fixed [LAYER [N]]
 *
 * runs the pattern's scenario (the leaky twin, or its fixed twin: a minimal change of it), prints
 * "coroutine <name> <id>" for each coroutine it spawned, then shows what one layer of leak
 * detection reports:
 *   proof   (the default) tt_leak_check: "leak check: N", one line per verdict
 *           "verdict <name> <leaked|deadlock> <pattern text or -> <wait reason>", then
 *           "--- report ---" and tt_leak_report_write's text;
 *   dump    a check, then "--- dump ---" and tt_dump(TT_DUMP_TRACES): the leaked coroutines'
 *           headers read "[<reason> (leaked)]";
 *   eager   run under TT_LEAKCHECK=eager (the harness sets it): waits until N coroutines have a
 *           verdict (or a while when N is 0), so that the monitor's printout is out before exit;
 *   exit    returns from main at once: run under TT_LEAKCHECK=1, the exit check reports what is
 *           left;
 *   verify  tt_leak_verify_none (200 ms): "verify: <result name>", then its report.
 * Scenarios call corpus_checkpoint(label) where their coroutines wait but can still be woken: in
 * the proof layer it runs a check and prints "checkpoint <label>: <n> leaked" (the harness wants
 * 0 each time: before the leak, and all along the fixed twin).
 *
 * The leaky twin leaves its leaked coroutines behind when main returns (tt_main exits without
 * waiting for them); the fixed twin ends with every coroutine it spawned finished. */
#ifndef TT_LEAK_CORPUS_H
#define TT_LEAK_CORPUS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tether.h>

/* Each program defines its scenario: the leaky twin when leaky, else the fixed one. Never inlined,
 * so that the stacks the layers print show it. */
static void scenario(int leaky) __attribute__((noinline));

enum { CORPUS_PROOF, CORPUS_DUMP, CORPUS_EAGER, CORPUS_EXIT, CORPUS_VERIFY };
enum { CORPUS_MAX = 16 };

static struct {
  int leaky;
  int layer;
  int expect; /* eager: how many verdicts to wait for */
  tt_id last; /* CORPUS_GO's */
  size_t n;
  struct {
    const char *name;
    tt_id id;
  } co[CORPUS_MAX];
} corpus;

/* Records a spawned coroutine's name and id for the harness. */
static inline void corpus_note(const char *name, tt_id id) {
  if (corpus.n < CORPUS_MAX) {
    corpus.co[corpus.n].name = name;
    corpus.co[corpus.n].id = id;
    corpus.n++;
  }
}

/* Spawns fn(arg) named nm, with the tt_go_opts fields given after arg (".share = &ch, ..."),
 * records it, and evaluates to its id; exits on failure. A macro, so that the spawn site (the
 * dumps' "created by" line) is the scenario's own function. */
#define CORPUS_GO(nm, fn, arg, ...)                                                                \
  corpus_spawned((nm),                                                                             \
                 tt_go_opt((fn), (arg), &(tt_go_opts){.name = (nm), __VA_ARGS__}, &corpus.last))

static inline tt_id corpus_spawned(const char *name, int err) {
  if (err) {
    fprintf(stderr, "spawning %s: %s\n", name, tt_strerror(err));
    exit(1);
  }
  corpus_note(name, corpus.last);
  return corpus.last;
}

/* Waits (polling, 100 us naps) until at least n coroutines wait for reason; exits after 30 s. */
static inline void corpus_await(int reason, int64_t n) {
  int64_t give_up = tt_now() + 30 * TT_SEC;
  for (;;) {
    tt_counts c;
    if (tt_counts_get(&c) == 0 && c.by_reason[reason] >= n)
      return;
    if (tt_now() > give_up) {
      fprintf(stderr, "gave up waiting for %lld coroutines in \"%s\"\n", (long long)n,
              tt_wait_reason_string(reason));
      exit(1);
    }
    tt_sleep(100 * TT_USEC);
  }
}

/* Waits until the caller is the only coroutine left; exits after 30 s. */
static inline void corpus_await_alone(void) {
  int64_t give_up = tt_now() + 30 * TT_SEC;
  while (tt_num_coroutines() > 1) {
    if (tt_now() > give_up) {
      fprintf(stderr, "gave up waiting: %lld coroutines left\n", (long long)tt_num_coroutines());
      exit(1);
    }
    tt_sleep(100 * TT_USEC);
  }
}

/* tt_leak_check, retried while its answer is "unknown" (TT_EBUSY: a worker did not reach a safe
 * point; TT_EAGAIN: plain threads kept changing references). Exits when it cannot answer. */
static inline int corpus_check(tt_leak_report **r) {
  int n = 0;
  for (int attempt = 0; attempt < 50; attempt++) {
    n = tt_leak_check(r);
    if (n != TT_EBUSY && n != TT_EAGAIN)
      break;
    tt_sleep(TT_MSEC);
  }
  if (n < 0) {
    printf("leak check: unknown (%s)\n", tt_strerror(n));
    exit(1);
  }
  return n;
}

static inline void corpus_checkpoint(const char *label) {
  if (corpus.layer != CORPUS_PROOF)
    return;
  printf("checkpoint %s: %d leaked\n", label, corpus_check(NULL));
}

static inline const char *corpus_name_of(tt_id id) {
  for (size_t i = 0; i < corpus.n; i++)
    if (corpus.co[i].id == id)
      return corpus.co[i].name;
  return "?";
}

static inline void corpus_proof(void) {
  tt_leak_report *r;
  int n = corpus_check(&r);
  printf("leak check: %d\n", n);
  for (size_t i = 0; i < tt_leak_report_len(r); i++) {
    const tt_leak_verdict *v = tt_leak_report_get(r, i);
    const char *pat = tt_leak_pattern_string(v->pattern);
    printf("verdict %s %s %s %s\n", corpus_name_of(v->id),
           v->verdict == TT_VERDICT_DEADLOCK ? "deadlock" : "leaked", pat && *pat ? pat : "-",
           tt_wait_reason_string(v->wait_reason));
  }
  printf("--- report ---\n");
  fflush(stdout);
  tt_leak_report_write(r, 1);
  tt_leak_report_free(r);
}

/* Eager mode: the monitor proves on its own, a moment after each event. Wait for the verdicts
 * expected, then give its printout time to be written (it follows the verdicts). */
static inline void corpus_eager(void) {
  int64_t give_up = tt_now() + 30 * TT_SEC;
  for (;;) {
    int proven = 0;
    for (size_t i = 0; i < corpus.n; i++)
      proven += tt_leak_verdict_of(corpus.co[i].id) != TT_VERDICT_NONE;
    if (proven >= corpus.expect || tt_now() > give_up)
      break;
    tt_sleep(TT_MSEC);
  }
  const char *slow = getenv("TT_TEST_SLOW");
  double f = slow ? atof(slow) : 1;
  tt_sleep((int64_t)(100 * (f >= 1 ? f : 1)) * TT_MSEC);
}

/* The program: main runs the scenario, then the layer. */
static inline int corpus_main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0); /* in order with the runtime's reports on stderr */
  const char *twin = argc > 1 ? argv[1] : "";
  const char *layer = argc > 2 ? argv[2] : "proof";
  if (strcmp(twin, "leaky") != 0 && strcmp(twin, "fixed") != 0) {
    fprintf(stderr, "usage: %s leaky|fixed [proof|dump|eager [N]|exit|verify]\n", argv[0]);
    return 1;
  }
  corpus.leaky = strcmp(twin, "leaky") == 0;
  if (strcmp(layer, "proof") == 0)
    corpus.layer = CORPUS_PROOF;
  else if (strcmp(layer, "dump") == 0)
    corpus.layer = CORPUS_DUMP;
  else if (strcmp(layer, "eager") == 0)
    corpus.layer = CORPUS_EAGER;
  else if (strcmp(layer, "exit") == 0)
    corpus.layer = CORPUS_EXIT;
  else if (strcmp(layer, "verify") == 0)
    corpus.layer = CORPUS_VERIFY;
  else {
    fprintf(stderr, "unknown layer %s\n", layer);
    return 1;
  }
  corpus.expect = argc > 3 ? atoi(argv[3]) : 0;
  scenario(corpus.leaky);
  for (size_t i = 0; i < corpus.n; i++)
    printf("coroutine %s %llu\n", corpus.co[i].name, (unsigned long long)corpus.co[i].id);
  switch (corpus.layer) {
  case CORPUS_PROOF:
    corpus_proof();
    break;
  case CORPUS_DUMP:
    printf("leak check: %d\n--- dump ---\n", corpus_check(NULL));
    tt_dump(1, TT_DUMP_TRACES);
    break;
  case CORPUS_EAGER:
    corpus_eager();
    break;
  case CORPUS_EXIT:
    break; /* main returns: TT_LEAKCHECK=1 reports what the scenario left */
  case CORPUS_VERIFY: {
    char *report = NULL;
    tt_leak_opts o = {.timeout = 200 * TT_MSEC, .name = argv[0], .report_fd = -1};
    int r = tt_leak_verify_none(&o, &report);
    printf("verify: %s\n", r == 0 ? "0" : tt_err_name(r));
    if (report) {
      fputs(report, stdout);
      free(report);
    }
    break;
  }
  }
  printf("main returns\n");
  return 0;
}

/* Defines main for a corpus program. */
#define CORPUS_PROGRAM()                                                                           \
  TT_MAIN(argc, argv) { return corpus_main(argc, argv); }

#endif
