/* SPDX-License-Identifier: MIT */
/* The seed's three leaks and a select nobody completes, then every coroutine's stack in Go's
 * formats: the C twin of ../shared/reference/go-1.19/seedleaks.go.txt.
 *
 *   seedleaks [DIR]   writes DIR/goroutine.pb.gz, goroutine-debug1.txt and goroutine-debug2.txt
 *                     (DIR defaults to .) and prints the debug=2 dump on stdout
 *
 * Read the profile with `go tool pprof -top DIR/goroutine.pb.gz` and the tracebacks with
 * `panicparse DIR/goroutine-debug2.txt`. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <tether.h>

static volatile int sink;

/* 1a: a receive on a channel nobody will send to. */
static void leak_chan_receiver(void *ch) {
  int val;
  bool ok;
  tt_chan_recv(ch, &val, &ok);
  sink = val;
}

static void leak_chan(void) {
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.share_mode = TT_SHARE_MOVE, .share = &ch, .nshare = 1};
  tt_go_opt(leak_chan_receiver, ch, &o, NULL);
}

/* 1b: a mutex locked by a function that returns while another coroutine waits for it. */
static tt_mutex mu = TT_MUTEX_INIT;

static void leak_mutex_locker(void *arg) {
  (void)arg;
  tt_mutex_lock(&mu);
  tt_mutex_unlock(&mu);
}

static void leak_mutex(void) {
  tt_mutex_lock(&mu);
  tt_go(leak_mutex_locker, NULL);
}

/* 1c: an endless loop with a sleep and no exit condition. */
static void leak_loop_body(void *arg) {
  (void)arg;
  while (tt_sleep(TT_SEC) == 0)
    sink++;
}

static void leak_loop(void) { tt_go(leak_loop_body, NULL); }

/* n coroutines in one select that nobody completes. */
static tt_chan *sel_a, *sel_b;

static void select_body(void *arg) {
  (void)arg;
  int v = 1;
  tt_select_case c[2] = {TT_CASE_RECV(sel_a, &v), TT_CASE_SEND(sel_b, &v)};
  tt_select(c, 2);
  sink = v;
}

static void select_leak(int n) {
  sel_a = tt_chan_make(sizeof(int), 0);
  sel_b = tt_chan_make(sizeof(int), 0);
  tt_chan *both[2] = {sel_a, sel_b};
  for (int i = 0; i < n; i++) {
    tt_go_opts o = {.share = both, .nshare = 2};
    tt_go_opt(select_body, NULL, &o, NULL);
  }
  tt_chan_release(sel_a);
  tt_chan_release(sel_b);
}

static int write_dump(const char *dir, const char *name, int format) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    perror(path);
    return 1;
  }
  int err = tt_dump(fd, format);
  close(fd);
  if (err) {
    fprintf(stderr, "%s: %s\n", path, tt_strerror(err));
    return 1;
  }
  return 0;
}

TT_MAIN(argc, argv) {
  const char *dir = argc > 1 ? argv[1] : ".";
  leak_chan();
  leak_mutex();
  leak_loop();
  select_leak(3);
  tt_sleep(100 * TT_MSEC);
  int r = write_dump(dir, "goroutine.pb.gz", TT_DUMP_PPROF);
  r |= write_dump(dir, "goroutine-debug1.txt", TT_DUMP_COUNTS);
  r |= write_dump(dir, "goroutine-debug2.txt", TT_DUMP_TRACES);
  fflush(stdout);
  r |= tt_dump(1, TT_DUMP_TRACES) != 0;
  return r;
}
