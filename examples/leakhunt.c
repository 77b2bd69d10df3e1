/* SPDX-License-Identifier: MIT */
/* The leak hunt (`make demo`): the seed's three leaks, each run in its own tt_run with
 * TT_LEAKCHECK=eager, and what tether reports about each and when; then their fixed versions,
 * from the prevention patterns (examples/patterns/), running clean under the same checks.
 * The leaky and the fixed code of each scene are tests/leaks/seed_*.c's, trimmed for reading. */
#define _GNU_SOURCE 1 /* pipe2 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tether.h>

/* ---- Showing what tether reports ------------------------------------------------------------ */

static int report_pipe[2]; /* the runs' report_fd: eager mode's printout comes through here */

/* Prints text with every line indented, so the reports stand apart from the story. */
static void indent(const char *text, size_t len) {
  for (size_t i = 0; i < len;) {
    size_t n = 0;
    while (i + n < len && text[i + n] != '\n')
      n++;
    printf("    %.*s\n", (int)n, text + i);
    i += n + 1;
  }
}

/* Waits until eager mode has proven coroutine id leaked and printed why, and shows the printout:
 * the verdict, its evidence, the operation that removed the last way to wake it (with its stack)
 * and the leaked coroutine's own traceback. */
static void show_eager_report(tt_id id) {
  int64_t give_up = tt_now() + 10 * TT_SEC;
  while (tt_leak_verdict_of(id) == TT_VERDICT_NONE && tt_now() < give_up)
    tt_sleep(TT_MSEC);
  char buf[16384];
  size_t len = 0;
  char want[64];
  snprintf(want, sizeof want, "goroutine %llu [", (unsigned long long)id);
  while (tt_now() < give_up) { /* the printout ends with the traceback and a blank line */
    ssize_t n = read(report_pipe[0], buf + len, sizeof buf - 1 - len);
    if (n > 0)
      len += (size_t)n;
    buf[len] = 0;
    const char *tb = strstr(buf, want);
    if (tb && strstr(tb, "\n\n"))
      break;
    tt_sleep(TT_MSEC);
  }
  while (len > 0 && buf[len - 1] == '\n')
    len--;
  indent(buf, len);
}

static int keep_id(const tt_coro_info *ci, void *arg) { return ci->id == *(tt_id *)arg; }

/* A dump of coroutine id alone, as any tt_dump or SIGQUIT would show it (first `lines` lines),
 * taken while it waits (a coroutine that keeps waking is caught between two wake-ups). */
static void show_dump(tt_id id, int lines) {
  tt_snapshot *s = NULL;
  char *text;
  size_t len;
  for (int tries = 0; tries < 1000; tries++) {
    if (tt_snapshot_take(&s) != 0)
      return;
    tt_snapshot_filter(s, keep_id, &id);
    tt_coro_info ci;
    if (tt_snapshot_len(s) == 0 || tt_snapshot_get(s, 0, &ci) != 0 || ci.state == TT_STATE_WAITING)
      break;
    tt_snapshot_free(s);
    s = NULL;
    tt_sleep(100 * TT_USEC);
  }
  if (s == NULL)
    return;
  if (tt_snapshot_write_mem(s, TT_DUMP_TRACES, &text, &len) == 0) {
    size_t end = 0;
    for (int l = 0; l < lines && end < len; l++)
      end += strcspn(text + end, "\n") + 1;
    while (end > 0 && text[end - 1] == '\n')
      end--;
    indent(text, end);
    free(text);
  }
  tt_snapshot_free(s);
}

/* tt_leak_check's count; TT_EBUSY and TT_EAGAIN mean "unknown for now": ask again. */
static int leaks_proven(void) {
  int n;
  for (int i = 0; i < 100; i++) {
    n = tt_leak_check(NULL);
    if (n != TT_EBUSY && n != TT_EAGAIN)
      break;
    tt_sleep(TT_MSEC);
  }
  return n;
}

/* The test checker's view: a test that ran the scene and then called tt_leak_verify_none (goleak's
 * VerifyNone) fails with this report; the lines naming each coroutine left and its verdict. */
static void show_test_checker(void) {
  char *report = NULL;
  tt_leak_opts o = {.timeout = 50 * TT_MSEC, .name = "TestScene", .report_fd = -1};
  int r = tt_leak_verify_none(&o, &report);
  printf("   A test that ends here with tt_leak_verify_none() %s:\n",
         r == TT_ELEAKED ? "fails" : "passes");
  for (const char *line = report; line && *line;) {
    size_t n = strcspn(line, "\n");
    if (strncmp(line, "tt_leak_verify_none", 19) == 0 || strncmp(line, "coroutine ", 10) == 0)
      printf("    %.*s\n", (int)n, line);
    line += n + (line[n] == '\n');
  }
  free(report);
}

/* ---- 1. A receiver nobody will send to ------------------------------------------------------ */

static void receiver(void *arg) {
  tt_chan *ch = arg;
  int v;
  tt_chan_recv(ch, &v, NULL);
  tt_chan_release(ch);
}

/* Starts a lookup whose answer arrives on ch... and returns without sending one (leaky), or sends
 * it first (fixed). */
static __attribute__((noinline)) tt_id start_lookup(int fixed) {
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_id id;
  tt_go_opt(receiver, ch, &(tt_go_opts){.name = "receiver", .share = &ch, .nshare = 1}, &id);
  tt_sleep(10 * TT_MSEC); /* other work, while the receiver waits */
  if (fixed) {
    int v = 42;
    tt_chan_send(ch, &v);
  }
  tt_chan_release(ch);
  return id;
}

/* ---- 2. A mutex its holder never unlocks ---------------------------------------------------- */

static tt_mutex mu = TT_MUTEX_INIT;
static int fixed_mode;

static __attribute__((noinline)) int handle(int key) {
  tt_mutex_lock(&mu);
  tt_sleep(5 * TT_MSEC); /* work, while the next request queues up */
  if (key < 0) {
    if (fixed_mode)
      tt_mutex_unlock(&mu); /* the fix: unlock on every path */
    return -1;              /* leaky: returns still holding mu */
  }
  tt_mutex_unlock(&mu);
  return 0;
}

static void request(void *arg) { handle((int)(intptr_t)arg); }

/* ---- 3. A loop with no way out -------------------------------------------------------------- */

static _Atomic int ticks;

static void ticker(void *arg) {
  (void)arg;
  while (tt_sleep(TT_MSEC) == 0) /* nothing but the runtime's shut-down ends it */
    ticks++;
}

/* ---- The scenes ----------------------------------------------------------------------------- */

static int scene_receiver(void *arg) {
  (void)arg;
  printf(
      "1. A receiver nobody will send to\n"
      "   start_lookup() starts a coroutine that waits for an answer on a channel, then returns\n"
      "   without sending one. The channel's last reference goes with it, so nothing can ever\n"
      "   wake the receiver. tether proves it the moment it happens, and blames the release:\n");
  tt_id id = start_lookup(0);
  show_eager_report(id);
  printf("   Every dump from now on (tt_dump, SIGQUIT, the goroutineleak profile) marks it:\n");
  show_dump(id, 1);
  show_test_checker();
  return 0;
}

static int scene_mutex(void *arg) {
  (void)arg;
  printf("\n2. A mutex its holder never unlocks\n"
         "   A request locks a mutex in handle(), fails, and returns early without unlocking; the\n"
         "   next request is already waiting for the mutex. While the holder lives it could still\n"
         "   unlock; when it exits, nothing can. tether reports it then, blaming that exit:\n");
  tt_go_opt(request, (void *)(intptr_t)-1, &(tt_go_opts){.name = "request"}, NULL);
  tt_sleep(TT_MSEC);
  tt_id id;
  tt_go_opt(request, (void *)(intptr_t)1, &(tt_go_opts){.name = "next request"}, &id);
  /* One long wait, begun before the holder exits: eager mode blames the latest event, and a wait
   * of ours after the exit would be it. */
  tt_sleep(50 * TT_MSEC);
  show_eager_report(id);
  printf("   And any dump marks it:\n");
  show_dump(id, 1);
  show_test_checker();
  return 0;
}

static int scene_loop(void *arg) {
  (void)arg;
  printf(
      "\n3. A loop with no way out\n"
      "   ticker() sleeps a millisecond and loops, with no exit condition. It wakes at every\n"
      "   tick, so no proof can call it leaked, and tether does not. The dump shows it, alive:\n");
  int64_t born = tt_now();
  tt_id id;
  tt_go_opt(ticker, NULL, &(tt_go_opts){.name = "ticker"}, &id);
  tt_sleep(100 * TT_MSEC);
  show_dump(id, 7);
  printf("   alive for %lld ms, woken %d times; leaks proven: %d. Only the exit check and the\n"
         "   test checker, which list what is still running, can point at it.\n",
         (long long)((tt_now() - born) / TT_MSEC), (int)ticks, leaks_proven());
  show_test_checker();
  return 0;
}

/* The fixed versions: the same code with the prevention patterns' change, under the same checks. */
static int scene_fixed(void *arg) {
  (void)arg;
  printf("\nThe fixes (examples/patterns/), under the same checks:\n");
  start_lookup(1);
  while (tt_num_coroutines() > 1)
    tt_sleep(TT_MSEC);
  printf("1. start_lookup() sends its answer before returning: leaks proven %d, coroutines left "
         "%lld\n",
         leaks_proven(), (long long)tt_num_coroutines() - 1);
  fixed_mode = 1;
  tt_mutex_init(&mu); /* scene 2's request exited holding it: a fresh one */
  tt_go_opt(request, (void *)(intptr_t)-1, &(tt_go_opts){.name = "request"}, NULL);
  tt_sleep(TT_MSEC);
  tt_go_opt(request, (void *)(intptr_t)1, &(tt_go_opts){.name = "next request"}, NULL);
  while (tt_num_coroutines() > 1)
    tt_sleep(TT_MSEC);
  printf("2. handle() unlocks on its early return too: leaks proven %d, coroutines left %lld\n",
         leaks_proven(), (long long)tt_num_coroutines() - 1);
  tt_ctx *ctx; /* prevention pattern 1 (shutdown_ctx.c): run it under a context, cancel when done */
  tt_ctx_with_cancel(tt_ctx_current(), &ctx);
  tt_go_opt(ticker, NULL, &(tt_go_opts){.name = "ticker", .ctx = ctx}, NULL);
  tt_sleep(20 * TT_MSEC);
  tt_ctx_cancel(ctx);
  tt_ctx_release(ctx);
  while (tt_num_coroutines() > 1)
    tt_sleep(TT_MSEC);
  printf("3. ticker() runs under a context that is cancelled when done: leaks proven %d, "
         "coroutines left %lld\n",
         leaks_proven(), (long long)tt_num_coroutines() - 1);
  char buf[4096];
  ssize_t n = read(report_pipe[0], buf, sizeof buf);
  printf("Eager mode printed %s for the fixed versions.\n", n > 0 ? "this" : "nothing");
  if (n > 0)
    indent(buf, (size_t)n);
  return 0;
}

int main(void) {
  if (pipe2(report_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    perror("pipe2");
    return 1;
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("tether's leak hunt: the seed's three leaks, what tether says about each and when, and\n"
         "their fixes. Every run has TT_LEAKCHECK=eager (tt_run_opts.leakcheck).\n\n");
  int (*scenes[])(void *) = {scene_receiver, scene_mutex, scene_loop, scene_fixed};
  for (size_t i = 0; i < sizeof scenes / sizeof scenes[0]; i++) {
    /* The leaked coroutines are cancelled when the run ends: their waits return TT_ECANCELED.
     * Whatever remains goes to the report pipe, which is emptied before the next scene. */
    tt_run_opts o = {.leakcheck = TT_LEAKCHECK_EAGER, .report_fd = report_pipe[1], .procs = 2};
    int err = tt_run(scenes[i], NULL, &o);
    /* What remains in the pipe is the exit check's report (eager mode includes TT_LEAKCHECK=1):
     * its summary line is the scene's last word. */
    char sink[16384];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof sink - 1 &&
           (n = read(report_pipe[0], sink + len, sizeof sink - 1 - len)) > 0)
      len += (size_t)n;
    sink[len] = 0;
    const char *summary = strstr(sink, "SUMMARY: ");
    if (summary)
      printf("   When the scene's main returned, the exit check (TT_LEAKCHECK=1) said:\n    %.*s\n",
             (int)strcspn(summary, "\n"), summary);
    if (err && !(err == TT_ELEAKED && summary)) {
      fprintf(stderr, "tt_run: %s\n", tt_strerror(err));
      return 1;
    }
  }
  return 0;
}
