/* SPDX-License-Identifier: MIT */
/* The leak corpus (docs/LEAKS.md, section 5): every program of tests/leaks/, leaky and fixed, run
 * as a child process and checked in every layer of leak detection.
 *
 * The expectations are one table, `programs`: per program, the coroutines its leaky twin leaves
 * behind, each with the verdict and pattern the proof must give it, its wait reason, what eager
 * mode must blame, and whether the exit check and the test checker must report it. A fixed twin
 * must be reported by no layer, and must end with every coroutine it spawned finished.
 *
 * Each layer is one function taking a program and a twin: layer_proof (tt_leak_check's verdicts
 * and report), layer_dump (the "(leaked)" marks of a debug=2 dump), layer_eager (TT_LEAKCHECK=
 * eager's printout). The exit check (TT_LEAKCHECK=1) and the test checker (tt_leak_verify_none)
 * are built in parallel: their layers are marked stubs below, and their expectations (at_exit,
 * in_verify) are in the table already. */
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

typedef struct expect {
  const char *name;   /* the tt_go_opts.name the program gave it */
  int verdict;        /* TT_VERDICT_LEAKED, _DEADLOCK, or _NONE: the proof cannot apply */
  int pattern;        /* the pattern the proof names */
  const char *reason; /* its wait reason, as dumps print it */
  /* Eager mode: what follows "the last live way to wake it went " (alternatives separated by
   * '|'; NULL where which event the monitor blames depends on scheduling), and a function on the
   * blamed operation's stack (checked where frames have DWARF names; NULL: none). */
  const char *cause;
  const char *cause_fn;
  bool at_exit;   /* TT_LEAKCHECK=1 reports it when main returns */
  bool in_verify; /* tt_leak_verify_none reports it */
} expect;

typedef struct program {
  const char *name; /* tests/leaks/<name>.c, built as leak-<name> */
  expect leaky[6];  /* what the leaky twin leaves behind (ends at a NULL name) */
} program;

#define LEAKED TT_VERDICT_LEAKED
#define DEADLOCK TT_VERDICT_DEADLOCK
#define UNPROVABLE TT_VERDICT_NONE

/* The proof names the catalogue's patterns from what it sees and from the channel's history (its
 * counters: values sent and received, receives that gave up, the last sender): a timeout leak, a
 * double send, an unclosed range. Start without Stop is named by its mechanism, a select with
 * every case dead: nothing tells a forgotten Stop from any other dead select. */
static const program programs[] = {
    /* The seed's three causes. */
    {"seed_receiver",
     {{"receiver", LEAKED, TT_PATTERN_ABANDONED_RECEIVER, "chan receive",
       "with tt_chan_release in coroutine 1", "start_lookup", true, true}}},
    {"seed_mutex",
     {{"next request", LEAKED, TT_PATTERN_MUTEX_EXITED, "sync.Mutex.Lock", "with its own wait",
       NULL, true, true}}},
    /* Wakes every millisecond: never provably leaked (tests/leaks/seed_loop.c says why). */
    {"seed_loop", {{"ticker", UNPROVABLE, TT_PATTERN_NONE, "sleep", NULL, NULL, true, true}}},
    /* The research catalogue. */
    {"early_return",
     {{"fetcher", LEAKED, TT_PATTERN_ABANDONED_SENDER, "chan send",
       "with tt_chan_release in coroutine 1", "lookup", true, true}}},
    /* The caller's release usually comes first (then the query's own send is the cause), but a
     * slow machine can delay it past the query's send. */
    {"timeout_leak",
     {{"slow query", LEAKED, TT_PATTERN_TIMEOUT_LEAK, "chan send",
       "with its own wait|with tt_chan_release in coroutine 1", NULL, true, true}}},
    /* The last reference goes with main or with replica-1, whichever lets go last. */
    {"ncast",
     {{"replica-2", LEAKED, TT_PATTERN_NCAST, "chan send", "with tt_chan_release in coroutine",
       NULL, true, true},
      {"replica-3", LEAKED, TT_PATTERN_NCAST, "chan send", "with tt_chan_release in coroutine",
       NULL, true, true}}},
    {"unclosed_range",
     {{"consumer", LEAKED, TT_PATTERN_UNCLOSED_RANGE, "chan receive",
       "with tt_chan_release in coroutine 3|with its own wait", NULL, true, true}}},
    {"double_send",
     {{"worker", LEAKED, TT_PATTERN_DOUBLE_SEND, "chan send", "with tt_chan_release in coroutine 1",
       "scenario", true, true}}},
    {"start_stop",
     {{"server worker", LEAKED, TT_PATTERN_DEAD_SELECT, "select",
       "with tt_chan_release in coroutine 1", "server_free", true, true}}},
    /* Both are proven in one check: which event each is blamed on depends on their order. */
    {"lock_cycle",
     {{"transfer a->b", DEADLOCK, TT_PATTERN_LOCK_CYCLE, "sync.Mutex.Lock", NULL, NULL, true, true},
      {"transfer b->a", DEADLOCK, TT_PATTERN_LOCK_CYCLE, "sync.Mutex.Lock", NULL, NULL, true,
       true}}},
    {"holder_exits",
     {{"reader-1", LEAKED, TT_PATTERN_MUTEX_EXITED, "sync.RWMutex.RLock", NULL, NULL, true, true},
      {"reader-2", LEAKED, TT_PATTERN_MUTEX_EXITED, "sync.RWMutex.RLock", NULL, NULL, true, true}}},
    {"group_child",
     {{"coordinator", LEAKED, TT_PATTERN_GROUP_CHILD, "group wait", NULL, NULL, true, true},
      {"worker", LEAKED, TT_PATTERN_CHAIN, "chan send", NULL, NULL, true, true}}},
    {"dead_select",
     {{"watcher", LEAKED, TT_PATTERN_DEAD_SELECT, "select", "with tt_chan_release in coroutine 1",
       "scenario", true, true}}},
    {"chain",
     {{"stage-1", LEAKED, TT_PATTERN_ABANDONED_RECEIVER, "chan receive",
       "with tt_chan_release in coroutine 1", "scenario", true, true},
      {"stage-2", LEAKED, TT_PATTERN_CHAIN, "chan receive", NULL, NULL, true, true},
      {"stage-3", LEAKED, TT_PATTERN_CHAIN, "chan receive", NULL, NULL, true, true},
      {"stage-4", LEAKED, TT_PATTERN_CHAIN, "chan receive", NULL, NULL, true, true}}},
};

/* ---- Running a program ---------------------------------------------------------------------- */

static const program *find_program(const char *name) {
  for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++)
    if (strcmp(programs[i].name, name) == 0)
      return &programs[i];
  tt_test_fail(__FILE__, __LINE__, "no program %s in the table", name);
  return NULL;
}

/* The expectations that apply to one twin: the leaky one's coroutines, or none. */
static size_t expected(const program *p, bool leaky) {
  size_t n = 0;
  while (leaky && n < sizeof p->leaky / sizeof p->leaky[0] && p->leaky[n].name)
    n++;
  return n;
}

static size_t proven(const program *p, bool leaky) {
  size_t n = 0;
  for (size_t i = 0; i < expected(p, leaky); i++)
    n += p->leaky[i].verdict != TT_VERDICT_NONE;
  return n;
}

/* Whether the exit check reports any coroutine of this twin. */
static bool any_at_exit(const program *p, bool leaky) {
  for (size_t i = 0; i < expected(p, leaky); i++)
    if (p->leaky[i].at_exit)
      return true;
  return false;
}

/* Runs leak-<name> with its twin, layer and extra argument; returns its output. Fails unless the
 * program exits with the status the exit check gives it (TT_LEAKCHECK=1 and eager include the
 * check: TT_LEAKCHECK_STATUS when the twin leaves coroutines it reports, else 0) and says "main
 * returns". */
static char *run(const program *p, bool leaky, const char *layer, const char *leakcheck,
                 const char *extra) {
  int want = strcmp(leakcheck, "0") != 0 && any_at_exit(p, leaky) ? TT_LEAKCHECK_STATUS : 0;
  char path[4200];
  snprintf(path, sizeof path, "%s/leak-%s", tt_test_bindir(), p->name);
  char lc[64];
  snprintf(lc, sizeof lc, "TT_LEAKCHECK=%s", leakcheck);
  /* The leaky twins leave memory behind with their coroutines at exit, by design. */
  char *env[] = {lc, "ASAN_OPTIONS=detect_leaks=0", NULL};
  char *argv[] = {path, leaky ? "leaky" : "fixed", (char *)layer, (char *)extra, NULL};
  char *out;
  int st = tt_test_spawn(argv, env, &out);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != want || strstr(out, "main returns\n") == NULL)
    tt_test_fail(__FILE__, __LINE__, "leak-%s %s %s: status %#x; output:\n%s", p->name, argv[1],
                 layer, st, out);
  return out;
}

/* The line of out that starts with prefix, or NULL. */
static const char *line_with(const char *out, const char *prefix) {
  size_t len = strlen(prefix);
  for (const char *s = out; *s;) {
    if (strncmp(s, prefix, len) == 0)
      return s;
    const char *nl = strchr(s, '\n');
    if (nl == NULL)
      break;
    s = nl + 1;
  }
  return NULL;
}

/* How many lines of out start with prefix. */
static size_t count_lines(const char *out, const char *prefix) {
  size_t n = 0;
  for (const char *s = line_with(out, prefix); s; n++) {
    const char *nl = strchr(s, '\n');
    s = nl ? line_with(nl + 1, prefix) : NULL;
  }
  return n;
}

/* The id the program gave the coroutine named name ("coroutine <name> <id>"). */
static unsigned long long id_of(const char *out, const char *name) {
  char key[128];
  snprintf(key, sizeof key, "coroutine %s ", name);
  const char *at = line_with(out, key);
  if (at == NULL)
    tt_test_fail(__FILE__, __LINE__, "no coroutine named \"%s\" in:\n%s", name, out);
  return strtoull(at + strlen(key), NULL, 10);
}

static void expect_line(const char *out, const char *line, const program *p) {
  if (strstr(out, line) == NULL)
    tt_test_fail(__FILE__, __LINE__, "leak-%s: no \"%s\" in:\n%s", p->name, line, out);
}

static void expect_count(const char *out, const char *prefix, size_t want, const program *p) {
  size_t n = count_lines(out, prefix);
  if (n != want)
    tt_test_fail(__FILE__, __LINE__, "leak-%s: %zu lines start with \"%s\", want %zu:\n%s", p->name,
                 n, prefix, want, out);
}

static const char *pattern_text(int pattern) {
  const char *s = tt_leak_pattern_string(pattern);
  return s && *s ? s : "-";
}

/* ---- The layers ----------------------------------------------------------------------------- */

/* The proof: tt_leak_check's count, one verdict line per leaked coroutine with its pattern, none
 * at any checkpoint (before the leak; all along the fixed twin), and the report's text. */
static void layer_proof(const program *p, bool leaky) {
  char *out = run(p, leaky, "proof", "0", NULL);
  char line[512];
  snprintf(line, sizeof line, "leak check: %zu\n", proven(p, leaky));
  expect_line(out, line, p);
  expect_count(out, "verdict ", proven(p, leaky), p);
  /* Every checkpoint saw nothing leaked. */
  for (const char *s = strstr(out, "checkpoint "); s; s = strstr(s + 1, "\ncheckpoint ")) {
    const char *colon = strchr(s, ':');
    ASSERT(colon != NULL);
    if (strncmp(colon, ": 0 leaked\n", 11) != 0)
      tt_test_fail(__FILE__, __LINE__, "leak-%s: a checkpoint saw a leak:\n%s", p->name, out);
  }
  for (size_t i = 0; i < expected(p, leaky); i++) {
    const expect *e = &p->leaky[i];
    if (e->verdict == TT_VERDICT_NONE)
      continue;
    bool dl = e->verdict == TT_VERDICT_DEADLOCK;
    snprintf(line, sizeof line, "\nverdict %s %s %s %s\n", e->name, dl ? "deadlock" : "leaked",
             pattern_text(e->pattern), e->reason);
    expect_line(out, line, p);
    /* The report: the coroutine, its verdict and pattern, then its evidence. */
    snprintf(line, sizeof line, "\ncoroutine %llu [%s (leaked)]: %s (%s)\n  ", id_of(out, e->name),
             e->reason, dl ? "deadlocked" : "leaked", pattern_text(e->pattern));
    expect_line(out, line, p);
    if (dl) {
      snprintf(line, sizeof line, "  lock cycle: coroutine %llu -> ", id_of(out, e->name));
      expect_line(out, line, p);
    }
  }
  free(out);
}

/* The dump after a check: "[<reason> (leaked)]" on exactly the proven coroutines; the unprovable
 * ones are there unmarked; a fixed twin has nothing left but main. */
static void layer_dump(const program *p, bool leaky) {
  char *out = run(p, leaky, "dump", "0", NULL);
  const char *dump = strstr(out, "--- dump ---\n");
  ASSERT(dump != NULL);
  expect_count(dump, "goroutine ", 1 + expected(p, leaky), p);
  expect_line(dump, "\ngoroutine 1 [running]:\n", p);
  size_t marked = 0;
  for (const char *s = dump; (s = strstr(s, " (leaked)]:\n")) != NULL; s++)
    marked++;
  if (marked != proven(p, leaky))
    tt_test_fail(__FILE__, __LINE__, "leak-%s: %zu coroutines marked leaked, want %zu:\n%s",
                 p->name, marked, proven(p, leaky), out);
  for (size_t i = 0; i < expected(p, leaky); i++) {
    const expect *e = &p->leaky[i];
    char line[256];
    snprintf(line, sizeof line, "\ngoroutine %llu [%s%s]:\n", id_of(out, e->name), e->reason,
             e->verdict != TT_VERDICT_NONE ? " (leaked)" : "");
    expect_line(dump, line, p);
  }
  free(out);
}

/* Whether the eager block (from its "tether: leak:" line to the blank line that ends it) says
 * "went <cause>" for one of cause's '|'-separated alternatives. */
static bool block_has_cause(const char *block, size_t len, const char *cause) {
  char alt[256];
  for (const char *c = cause; *c;) {
    size_t n = strcspn(c, "|");
    snprintf(alt, sizeof alt, "the last live way to wake it went %.*s", (int)n, c);
    const char *hit = strstr(block, alt);
    if (hit && (size_t)(hit - block) < len)
      return true;
    c += n + (c[n] == '|');
  }
  return false;
}

/* TT_LEAKCHECK=eager: each proven coroutine printed once, as it becomes true, with its pattern,
 * the operation that removed its last live waker and its marked traceback; nothing for a fixed
 * twin, whose coroutines the monitor watched block and wake all along. */
static void layer_eager(const program *p, bool leaky) {
  char n[16];
  snprintf(n, sizeof n, "%zu", proven(p, leaky));
  char *out = run(p, leaky, "eager", "eager", n);
  expect_count(out, "tether: leak: coroutine ", proven(p, leaky), p);
  for (size_t i = 0; i < expected(p, leaky); i++) {
    const expect *e = &p->leaky[i];
    if (e->verdict == TT_VERDICT_NONE)
      continue;
    unsigned long long id = id_of(out, e->name);
    char line[256];
    snprintf(line, sizeof line, "tether: leak: coroutine %llu can never be woken (%s)%s\n", id,
             pattern_text(e->pattern), e->verdict == TT_VERDICT_DEADLOCK ? ": deadlocked" : "");
    expect_line(out, line, p);
    const char *block = strstr(out, line);
    const char *end = strstr(block, "\n\n");
    size_t len = end ? (size_t)(end - block) : strlen(block);
    const char *went = strstr(block, "the last live way to wake it went ");
    if (went == NULL || went > block + len)
      tt_test_fail(__FILE__, __LINE__, "leak-%s: no cause for coroutine %llu:\n%s", p->name, id,
                   out);
    if (e->cause && !block_has_cause(block, len, e->cause))
      tt_test_fail(__FILE__, __LINE__, "leak-%s: coroutine %llu not blamed on \"%s\":\n%s", p->name,
                   id, e->cause, out);
    if (e->cause_fn && tt_test_have_dwarf()) {
      snprintf(line, sizeof line, "\n%s(...)\n\t", e->cause_fn);
      const char *fn = strstr(went, line);
      if (fn == NULL || fn > block + len)
        tt_test_fail(__FILE__, __LINE__, "leak-%s: %s not on the blamed stack:\n%s", p->name,
                     e->cause_fn, out);
    }
    snprintf(line, sizeof line, "\ngoroutine %llu [%s (leaked)]:\n", id, e->reason);
    expect_line(out, line, p);
  }
  free(out);
}

/* The exit check (TT_LEAKCHECK=1): status TT_LEAKCHECK_STATUS and a report naming every
 * coroutine whose at_exit is set, with its verdict (proven ones "leaked", the others "still
 * blocked"), and no other; status 0 and no report for a fixed twin. */
static void layer_exit(const program *p, bool leaky) {
  char *out = run(p, leaky, "exit", "1", NULL);
  size_t n = 0;
  for (size_t i = 0; i < expected(p, leaky); i++)
    n += p->leaky[i].at_exit;
  if (n == 0) {
    if (strstr(out, "LeakCheck") != NULL)
      tt_test_fail(__FILE__, __LINE__, "leak-%s: an exit report for nothing:\n%s", p->name, out);
    free(out);
    return;
  }
  char line[256];
  snprintf(line, sizeof line, "tether: LeakCheck: %zu coroutine%s still alive when main returned\n",
           n, n == 1 ? "" : "s");
  expect_line(out, line, p);
  for (size_t i = 0; i < expected(p, leaky); i++) {
    const expect *e = &p->leaky[i];
    if (!e->at_exit)
      continue;
    snprintf(line, sizeof line, "\ncoroutine %llu \"%s\": %s", id_of(out, e->name), e->name,
             e->verdict == TT_VERDICT_DEADLOCK ? "deadlocked"
             : e->verdict                      ? "leaked"
                                               : "still blocked");
    expect_line(out, line, p);
  }
  free(out);
}

/* The test checker (tt_leak_verify_none): TT_ELEAKED naming exactly the coroutines whose
 * in_verify is set, with the proof's verdict for the proven ones; 0 for a fixed twin. */
static void layer_verify(const program *p, bool leaky) {
  char *out = run(p, leaky, "verify", "0", NULL);
  size_t n = 0;
  for (size_t i = 0; i < expected(p, leaky); i++)
    n += p->leaky[i].in_verify;
  expect_line(out, n ? "verify: ELEAKED\n" : "verify: 0\n", p);
  char line[256];
  if (n) {
    snprintf(line, sizeof line, "%zu coroutine%s left behind after 200ms", n, n == 1 ? "" : "s");
    expect_line(out, line, p);
  }
  for (size_t i = 0; i < expected(p, leaky); i++) {
    const expect *e = &p->leaky[i];
    if (!e->in_verify)
      continue;
    snprintf(line, sizeof line, "\ncoroutine %llu \"%s\": %s", id_of(out, e->name), e->name,
             e->verdict ? "leaked (proven" : "still");
    expect_line(out, line, p);
  }
  free(out);
}

static void check(const char *name, bool leaky) {
  const program *p = find_program(name);
  layer_proof(p, leaky);
  layer_dump(p, leaky);
  layer_eager(p, leaky);
  layer_exit(p, leaky);
  layer_verify(p, leaky);
}

/* ---- One test per program and twin ---------------------------------------------------------- */

TEST(leak_corpus_seed_receiver) { check("seed_receiver", true); }
TEST(leak_corpus_seed_receiver_fixed) { check("seed_receiver", false); }
TEST(leak_corpus_seed_mutex) { check("seed_mutex", true); }
TEST(leak_corpus_seed_mutex_fixed) { check("seed_mutex", false); }
TEST(leak_corpus_seed_loop) { check("seed_loop", true); }
TEST(leak_corpus_seed_loop_fixed) { check("seed_loop", false); }
TEST(leak_corpus_early_return) { check("early_return", true); }
TEST(leak_corpus_early_return_fixed) { check("early_return", false); }
TEST(leak_corpus_timeout_leak) { check("timeout_leak", true); }
TEST(leak_corpus_timeout_leak_fixed) { check("timeout_leak", false); }
TEST(leak_corpus_ncast) { check("ncast", true); }
TEST(leak_corpus_ncast_fixed) { check("ncast", false); }
TEST(leak_corpus_unclosed_range) { check("unclosed_range", true); }
TEST(leak_corpus_unclosed_range_fixed) { check("unclosed_range", false); }
TEST(leak_corpus_double_send) { check("double_send", true); }
TEST(leak_corpus_double_send_fixed) { check("double_send", false); }
TEST(leak_corpus_start_stop) { check("start_stop", true); }
TEST(leak_corpus_start_stop_fixed) { check("start_stop", false); }
TEST(leak_corpus_lock_cycle) { check("lock_cycle", true); }
TEST(leak_corpus_lock_cycle_fixed) { check("lock_cycle", false); }
TEST(leak_corpus_holder_exits) { check("holder_exits", true); }
TEST(leak_corpus_holder_exits_fixed) { check("holder_exits", false); }
TEST(leak_corpus_group_child) { check("group_child", true); }
TEST(leak_corpus_group_child_fixed) { check("group_child", false); }
TEST(leak_corpus_dead_select) { check("dead_select", true); }
TEST(leak_corpus_dead_select_fixed) { check("dead_select", false); }
TEST(leak_corpus_chain) { check("chain", true); }
TEST(leak_corpus_chain_fixed) { check("chain", false); }

/* The table covers every program of tests/leaks/ (each built as leak-<name>) and no other. */
TEST(leak_corpus_table_complete) {
  for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
    char path[4200];
    snprintf(path, sizeof path, "%s/leak-%s", tt_test_bindir(), programs[i].name);
    ASSERT(access(path, X_OK) == 0);
    ASSERT_GT(expected(&programs[i], true), 0);
  }
  size_t built = 0;
  DIR *d = opendir(tt_test_bindir());
  ASSERT(d != NULL);
  for (struct dirent *de; (de = readdir(d)) != NULL;)
    if (strncmp(de->d_name, "leak-", 5) == 0 && strchr(de->d_name, '.') == NULL) {
      find_program(de->d_name + 5);
      built++;
    }
  closedir(d);
  ASSERT_UEQ(built, sizeof programs / sizeof programs[0]);
}
