/* SPDX-License-Identifier: MIT */
/* Dumps: every coroutine's stack in Go's formats, checked here and by the real clients
 * (panicparse, go tool pprof). The coroutine bodies (dump_bodies.c) are built with -O2 and
 * without frame pointers. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/diag/diag_int.h"
#include "dump_bodies.h"
#include "test.h"

/* Test hook (src/diag/snapshot.c): makes a snapshot older, as if taken ns later. */
void tt__snapshot_age(tt_snapshot *s, int64_t ns);

/* ---- Helpers ------------------------------------------------------------------------------ */

#define ASSERT_FILE_LINE(hay, needle)                                                              \
  do {                                                                                             \
    if (tt_test_have_dwarf())                                                                      \
      ASSERT_CONTAINS(hay, needle);                                                                \
  } while (0)

/* Writes a dump to a fresh temporary file and returns its path. */
static char *dump_to_file(int format, const char *suffix) {
  char *path = malloc(256);
  snprintf(path, 256, "/tmp/tt-dump-%d-%d%s", (int)getpid(), format, suffix);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT(fd >= 0);
  ASSERT_OK(tt_dump(fd, format));
  close(fd);
  return path;
}

/* The text of goroutine id's block in a debug=2 dump (a copy), or NULL. */
static char *block_of(const char *dump, tt_id id) {
  char head[64];
  snprintf(head, sizeof head, "goroutine %llu [", (unsigned long long)id);
  const char *p = dump;
  while ((p = strstr(p, head)) != NULL && p != dump && p[-1] != '\n')
    p++;
  if (p == NULL)
    return NULL;
  const char *end = strstr(p, "\n\ngoroutine ");
  size_t n = end ? (size_t)(end - p) + 1 : strlen(p);
  char *b = malloc(n + 1);
  memcpy(b, p, n);
  b[n] = '\0';
  return b;
}

/* The number of coroutine headers ("goroutine N [...]:" at a line start) in a dump. */
static int count_headers(const char *dump) {
  int n = strncmp(dump, "goroutine ", 10) == 0;
  for (const char *p = dump; (p = strstr(p, "\ngoroutine ")) != NULL; p++)
    n++;
  return n;
}

static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

/* The seed's leaks: a receive nobody satisfies, a mutex nobody unlocks, an endless sleep loop
 * (labelled), three coroutines in one select. */
typedef struct seed {
  tt_id chan, mutex, loop, select[3];
} seed;

__attribute__((noinline)) static void seed_start(seed *s) {
  dump_never = tt_chan_make(sizeof(int), 0);
  ASSERT(dump_never != NULL);
  ASSERT_OK(tt_mutex_lock(&dump_mu));
  tt_go_opts o = {.name = "chan-leaker", .share = &dump_never, .nshare = 1};
  ASSERT_OK(tt_go_opt(dump_leak_chan, NULL, &o, &s->chan));
  tt_go_opts om = {.name = "mutex-leaker"};
  ASSERT_OK(tt_go_opt(dump_leak_mutex, NULL, &om, &s->mutex));
  tt_label l = {"worker", "loop"};
  tt_go_opts ol = {.labels = &l, .nlabels = 1};
  ASSERT_OK(tt_go_opt(dump_leak_loop, NULL, &ol, &s->loop));
  for (int i = 0; i < 3; i++) {
    tt_go_opts os = {.share = &dump_never, .nshare = 1};
    ASSERT_OK(tt_go_opt(dump_select, NULL, &os, &s->select[i]));
  }
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, 1);
  tt_test_await_reason(TT_WAIT_SLEEP, 1);
  tt_test_await_reason(TT_WAIT_SELECT, 3);
}

/* Ends the run without waiting for the leaks: they are cancelled at shut-down. */
static void seed_stop(void) {
  ASSERT_OK(tt_mutex_unlock(&dump_mu));
  tt_chan_release(dump_never);
}

/* The dump tests dump coroutines blocked on purpose (the seed's leaks, a deep stack, many
 * parked ones) and leave them to the runtime's shut-down: they opt out of the leak check. */
static void run_leaving(int (*fn)(void *), void *arg, int procs) {
  ASSERT_OK(tt_test_run_unchecked(fn, arg, &(tt_run_opts){.procs = procs},
                                  "the dumped coroutines are left blocked for shut-down to end"));
}

/* ---- debug=2 ------------------------------------------------------------------------------ */

/* Coroutine id's block holds its header and top frame (head), the program's frame (frame) and
 * the line the body recorded before it parked (with DWARF). */
static void expect_block(const char *out, tt_id id, const char *head, const char *frame, int line) {
  char *b = block_of(out, id);
  ASSERT(b != NULL);
  ASSERT_CONTAINS(b, head);
  ASSERT_CONTAINS(b, frame);
  char want[128];
  snprintf(want, sizeof want, "tests/dump_bodies.c:%d +0x", line);
  ASSERT_FILE_LINE(b, want);
  free(b);
}

static int traces_body(void *arg) {
  (void)arg;
  seed s;
  seed_start(&s);
  char *out;
  size_t len;
  ASSERT_OK(tt_dump_mem(TT_DUMP_TRACES, &out, &len));
  ASSERT_EQ(len, strlen(out));
  tt_test_show(out);
  /* The caller first, at the public call it made; tether's own frames are hidden. */
  ASSERT(strncmp(out, "goroutine 1 [running]:\ntt_dump_mem(...)\n\t", 41) == 0);
  ASSERT(strstr(out, "tt__") == NULL);
  ASSERT(strstr(out, "traces_body(...)\n\t") != NULL);

  char want[512];
  char *b = block_of(out, s.chan);
  ASSERT(b != NULL);
  snprintf(want, sizeof want, "goroutine %llu [chan receive]:\ntt_chan_recv(...)\n\t",
           (unsigned long long)s.chan);
  ASSERT(strncmp(b, want, strlen(want)) == 0);
  snprintf(want, sizeof want, "dump_leak_chan(...)\n\t");
  ASSERT_CONTAINS(b, want);
  snprintf(want, sizeof want, "tests/dump_bodies.c:%d +0x", dump_line_chan);
  ASSERT_FILE_LINE(b, want);
  ASSERT_CONTAINS(b, "created by seed_start in goroutine 1\n\t");
  ASSERT_FILE_LINE(b, "tests/test_dump.c:");
  ASSERT(strstr(b, "tt__coro_entry") == NULL);
  free(b);

  expect_block(out, s.mutex, "[sync.Mutex.Lock]:\ntt_mutex_lock(...)\n\t",
               "dump_leak_mutex(...)\n\t", dump_line_mutex);
  expect_block(out, s.loop, "[sleep]:\ntt_sleep(...)\n\t", "dump_leak_loop(...)\n\t",
               dump_line_loop);
  for (int i = 0; i < 3; i++)
    expect_block(out, s.select[i], "[select]:\ntt_select(...)\n\t", "dump_select(...)\n\t",
                 dump_line_select);
  /* Blocks are separated by one blank line, and the dump ends with a newline. */
  ASSERT(strstr(out, "\n\n\n") == NULL);
  ASSERT(out[len - 1] == '\n' && out[len - 2] != '\n');
  free(out);
  seed_stop();
  return 0;
}

TEST(dump_traces_seed_leaks) { run_leaving(traces_body, NULL, 2); }

static int minutes_body(void *arg) {
  (void)arg;
  seed s;
  seed_start(&s);
  tt_snapshot *snap;
  ASSERT_OK(tt_snapshot_take(&snap));
  tt__snapshot_age(snap, 3 * 60 * TT_SEC + TT_SEC);
  char *out;
  ASSERT_OK(tt_snapshot_write_mem(snap, TT_DUMP_TRACES, &out, NULL));
  char want[128];
  snprintf(want, sizeof want, "goroutine %llu [chan receive, 3 minutes]:\n",
           (unsigned long long)s.chan);
  ASSERT_CONTAINS(out, want);
  snprintf(want, sizeof want, "goroutine %llu [select, 3 minutes]:\n",
           (unsigned long long)s.select[0]);
  ASSERT_CONTAINS(out, want);
  /* The running caller has no wait time. */
  ASSERT_CONTAINS(out, "goroutine 1 [running]:\n");
  free(out);
  tt_snapshot_free(snap);
  seed_stop();
  return 0;
}

TEST(dump_traces_minutes_blocked) { run_leaving(minutes_body, NULL, 2); }

static int panicparse_body(void *arg) {
  char *pp = arg;
  seed s;
  seed_start(&s);
  char *path = dump_to_file(TT_DUMP_TRACES, ".txt");
  char *argv[] = {pp, "-no-color", "-parse=false", path, NULL};
  char *out;
  int st = tt_test_spawn(argv, NULL, &out);
  tt_test_show(out);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    tt_test_fail(__FILE__, __LINE__, "panicparse: status %#x", st);
  ASSERT(strstr(out, "Failed") == NULL);
  /* Its buckets: the three selects together, each leak alone, with creation sites. */
  ASSERT_CONTAINS(out, "3: select [Created by");
  ASSERT_CONTAINS(out, "1: chan receive [Created by");
  ASSERT_CONTAINS(out, "1: sync.Mutex.Lock [Created by");
  ASSERT_CONTAINS(out, "1: sleep [Created by");
  ASSERT_FILE_LINE(out, "dump_bodies.c:");
  ASSERT_CONTAINS(out, "dump_select(...)");
  ASSERT_CONTAINS(out, "dump_leak_chan(...)");
  ASSERT_FILE_LINE(out, "test_dump.c:");
  unlink(path);
  free(path);
  free(out);
  seed_stop();
  return 0;
}

TEST(dump_traces_parsed_by_panicparse) {
  char *pp = tt_test_client("panicparse");
  if (pp == NULL)
    return;
  run_leaving(panicparse_body, pp, 2);
  free(pp);
}

/* ---- debug=1 ------------------------------------------------------------------------------ */

static int counts_body(void *arg) {
  (void)arg;
  seed s;
  seed_start(&s);
  char *out;
  ASSERT_OK(tt_dump_mem(TT_DUMP_COUNTS, &out, NULL));
  tt_test_show(out);
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  char want[128];
  snprintf(want, sizeof want, "goroutine profile: total %lld\n3 @ 0x", (long long)c.total);
  ASSERT(strncmp(out, want, strlen(want)) == 0);
  /* The select record: its frames, from the public call down, with Go's alignment. */
  const char *rec = strstr(out, "3 @ 0x");
  const char *end = strstr(rec, "\n\n");
  ASSERT(end != NULL);
  ASSERT(strstr(rec, "#\t0x") != NULL && strstr(rec, "#\t0x") < end);
  ASSERT(strstr(rec, "\ttt_select+0x") != NULL && strstr(rec, "\ttt_select+0x") < end);
  ASSERT(strstr(rec, "\tdump_select+0x") != NULL && strstr(rec, "\tdump_select+0x") < end);
  snprintf(want, sizeof want, "tests/dump_bodies.c:%d\n", dump_line_select);
  ASSERT(!tt_test_have_dwarf() || (strstr(rec, want) != NULL && strstr(rec, want) < end));
  /* Go's labels line for the labelled loop. */
  ASSERT_CONTAINS(out, "\n# labels: {\"worker\":\"loop\"}\n#\t0x");
  /* Every other record has a count of 1, after the 3. */
  ASSERT_EQ(count_of(out, "\n1 @ 0x"), c.total - 3);
  /* Tab alignment: each "#" line's function column is padded to a common tab stop. */
  const char *h = strstr(rec, "#\t0x");
  ASSERT(h != NULL);
  free(out);
  seed_stop();
  return 0;
}

TEST(dump_counts_format) { run_leaving(counts_body, NULL, 2); }

/* ---- pprof -------------------------------------------------------------------------------- */

static char *gotool;

static char *run_pprof(const char *flag, const char *path) {
  char *argv[] = {gotool, "tool", "pprof", (char *)flag, "-symbolize=none", (char *)path, NULL};
  char home[] = "HOME=/tmp", cache[] = "GOCACHE=/tmp/tt-gocache";
  char *env[] = {home, cache, NULL};
  char *out;
  int st = tt_test_spawn(argv, env, &out);
  printf("--- go tool pprof %s\n%s", flag, out);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    tt_test_fail(__FILE__, __LINE__, "go tool pprof %s: status %#x", flag, st);
  return out;
}

static int pprof_body(void *arg) {
  (void)arg;
  seed s;
  seed_start(&s);
  char *path = dump_to_file(TT_DUMP_PPROF, ".pb.gz");
  /* gzip's magic. */
  int fd = open(path, O_RDONLY);
  unsigned char magic[2] = {0};
  ASSERT_EQ(read(fd, magic, 2), 2);
  close(fd);
#if defined(TT_TEST_NO_ZLIB)
  (void)magic;
#else
  ASSERT(magic[0] == 0x1f && magic[1] == 0x8b);
#endif
  char *top = run_pprof("-top", path);
  ASSERT_CONTAINS(top, "Type: goroutine");
  ASSERT_CONTAINS(top, "dump_select");
  ASSERT_CONTAINS(top, "dump_leak_chan");
  ASSERT_CONTAINS(top, "dump_leak_mutex");
  ASSERT_CONTAINS(top, "dump_leak_loop");
  char *traces = run_pprof("-traces", path);
  ASSERT_CONTAINS(traces, "dump_select");
  ASSERT_CONTAINS(traces, "tt_select");
  char *tags = run_pprof("-tags", path);
  ASSERT_CONTAINS(tags, "worker");
  ASSERT_CONTAINS(tags, "loop");
  ASSERT_CONTAINS(tags, "wait_reason");
  ASSERT_CONTAINS(tags, "chan receive");
  ASSERT_CONTAINS(tags, "chan-leaker");
  free(top);
  free(traces);
  free(tags);
  unlink(path);
  free(path);
  seed_stop();
  return 0;
}

TEST(dump_pprof_read_by_go_tool_pprof) {
  gotool = tt_test_client("go");
  if (gotool == NULL)
    return;
  run_leaving(pprof_body, NULL, 2);
  free(gotool);
}

/* ---- JSON --------------------------------------------------------------------------------- */

/* A strict JSON checker (RFC 8259's grammar): returns the end of the value at p, or NULL. */
static const char *json_value(const char *p);

static const char *json_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
    p++;
  return p;
}

static const char *json_string(const char *p) {
  if (*p++ != '"')
    return NULL;
  for (; *p != '"'; p++) {
    if ((unsigned char)*p < 0x20)
      return NULL;
    if (*p == '\\') {
      p++;
      if (*p == 'u') {
        for (int i = 1; i <= 4; i++)
          if (!strchr("0123456789abcdefABCDEF", p[i]) || p[i] == 0)
            return NULL;
        p += 4;
      } else if (!strchr("\"\\/bfnrt", *p) || *p == 0) {
        return NULL;
      }
    }
  }
  return p + 1;
}

static const char *json_value(const char *p) {
  p = json_ws(p);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = json_ws(p + 1);
    if (*p == close)
      return p + 1;
    for (;;) {
      if (close == '}') {
        p = json_string(json_ws(p));
        if (p == NULL || *(p = json_ws(p)) != ':')
          return NULL;
        p++;
      }
      p = json_value(p);
      if (p == NULL)
        return NULL;
      p = json_ws(p);
      if (*p == close)
        return p + 1;
      if (*p++ != ',')
        return NULL;
    }
  }
  if (*p == '"')
    return json_string(p);
  if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0)
    return p + 4;
  if (strncmp(p, "false", 5) == 0)
    return p + 5;
  const char *q = p;
  if (*q == '-')
    q++;
  if (*q < '0' || *q > '9')
    return NULL;
  while (*q >= '0' && *q <= '9')
    q++;
  return q;
}

static int json_body(void *arg) {
  (void)arg;
  seed s;
  seed_start(&s);
  char *out;
  size_t len;
  ASSERT_OK(tt_dump_mem(TT_DUMP_JSON, &out, &len));
  const char *end = json_value(out);
  if (end == NULL || *json_ws(end) != '\0')
    tt_test_fail(__FILE__, __LINE__, "invalid JSON:\n%s", out);
  ASSERT_CONTAINS(out, "\"wait_reason\":\"chan receive\"");
  ASSERT_CONTAINS(out, "\"wait_reason\":\"sync.Mutex.Lock\"");
  ASSERT_CONTAINS(out, "\"name\":\"chan-leaker\"");
  ASSERT_CONTAINS(out, "\"labels\":{\"worker\":\"loop\"}");
  ASSERT_CONTAINS(out, "\"select_cases\":[{\"op\":\"recv\",\"chan\":\"0x");
  ASSERT_CONTAINS(out, "{\"op\":\"recv\",\"chan\":null}");
  ASSERT_CONTAINS(out, "\"func\":\"dump_leak_chan\"");
  ASSERT_CONTAINS(out, "\"internal\":true");
  ASSERT_CONTAINS(out, "\"created_at\":[{\"pc\":\"0x");
  ASSERT_CONTAINS(out, "\"func\":\"seed_start\"");
  char want[64];
  snprintf(want, sizeof want, "{\"id\":%llu,\"parent\":1,", (unsigned long long)s.chan);
  ASSERT_CONTAINS(out, want);
  free(out);
  seed_stop();
  return 0;
}

TEST(dump_json_complete_and_valid) { run_leaving(json_body, NULL, 2); }

/* ---- Snapshots ---------------------------------------------------------------------------- */

static int only_chan_recv(const tt_coro_info *ci, void *arg) {
  (void)arg;
  return ci->wait_reason == TT_WAIT_CHAN_RECV;
}

static int snapshot_body(void *arg) {
  (void)arg;
  seed s;
  seed_start(&s);
  tt_snapshot *snap;
  ASSERT_ERR(tt_snapshot_take(NULL), TT_EINVAL);
  ASSERT_OK(tt_snapshot_take(&snap));
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  ASSERT_EQ(tt_snapshot_len(snap), c.total);
  tt_coro_info ci;
  ASSERT_OK(tt_snapshot_get(snap, 0, &ci));
  ASSERT_EQ(ci.id, 1);
  ASSERT_EQ(ci.state, TT_STATE_RUNNING);
  ASSERT(ci.nstack > 0 && ci.stack_depth == ci.nstack);
  ASSERT_ERR(tt_snapshot_get(snap, tt_snapshot_len(snap), &ci), TT_EINVAL);
  bool seen = false;
  for (size_t i = 0; i < tt_snapshot_len(snap); i++) {
    ASSERT_OK(tt_snapshot_get(snap, i, &ci));
    if (i > 1)
      ASSERT_GT(ci.id, 1);
    if (ci.id == s.chan) {
      seen = true;
      ASSERT_STR_EQ(ci.name, "chan-leaker");
      ASSERT_EQ(ci.parent, 1);
      ASSERT_EQ(ci.wait_reason, TT_WAIT_CHAN_RECV);
      ASSERT(ci.wait_obj == dump_never);
      ASSERT_GT(ci.blocked_since, 0);
      ASSERT(ci.nstack >= 3);
      ASSERT_EQ(ci.stack_status, TT_STACK_OK);
    }
  }
  ASSERT(seen);
  ASSERT_EQ(tt_snapshot_filter(snap, only_chan_recv, NULL), 1);
  ASSERT_EQ(tt_snapshot_len(snap), 1);
  char *out;
  ASSERT_OK(tt_snapshot_write_mem(snap, TT_DUMP_TRACES, &out, NULL));
  ASSERT_EQ(count_headers(out), 1);
  ASSERT_CONTAINS(out, "[chan receive]:\n");
  free(out);
  ASSERT_ERR(tt_snapshot_write(snap, -1, TT_DUMP_TRACES), TT_EINVAL);
  ASSERT_ERR(tt_snapshot_write(snap, 1, 9), TT_EINVAL);
  ASSERT_ERR(tt_snapshot_write_mem(snap, -1, &out, NULL), TT_EINVAL);
  ASSERT_ERR(tt_snapshot_write(NULL, 1, TT_DUMP_TRACES), TT_EINVAL);
  /* A closed descriptor: an I/O error, not a crash. */
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  close(p[0]);
  signal(SIGPIPE, SIG_IGN);
  ASSERT_ERR(tt_snapshot_write(snap, p[1], TT_DUMP_TRACES), TT_EIO);
  close(p[1]);
  tt_snapshot_free(snap);
  tt_snapshot_free(NULL);
  ASSERT_ERR(tt_dump(1, 7), TT_EINVAL);
  ASSERT_ERR(tt_dump(-1, TT_DUMP_TRACES), TT_EINVAL);
  ASSERT_ERR(tt_dump_mem(TT_DUMP_TRACES, NULL, NULL), TT_EINVAL);
  seed_stop();
  return 0;
}

TEST(dump_snapshot_api) {
  tt_snapshot *s = (tt_snapshot *)1;
  ASSERT_ERR(tt_snapshot_take(&s), TT_ENOTRUNNING);
  ASSERT(s == NULL);
  ASSERT_ERR(tt_dump(1, TT_DUMP_TRACES), TT_ENOTRUNNING);
  run_leaving(snapshot_body, NULL, 2);
}

/* ---- A coroutine running on another worker ------------------------------------------------- */

static int find_running(const tt_coro_info *ci, void *arg) {
  tt_id *id = arg;
  if (ci->id != 1 && ci->state == TT_STATE_RUNNING) {
    *id = ci->id;
    return 1;
  }
  return 0;
}

static void *spawn_spinner(void *arg) {
  (void)arg;
  ASSERT_OK(tt_go(dump_spin, NULL));
  return NULL;
}

static int running_body(void *arg) {
  (void)arg;
  atomic_store(&dump_spin_stop, 0);
  tt_id spinner;
  /* Spawned by a plain thread: on the global queue, where the idle worker finds it. */
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, spawn_spinner, NULL), 0);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  /* Wait for it to run on the other worker, keeping ours busy meanwhile (without preemption a
   * spinner that started on our worker would keep it, and a sleep of ours would never end): the
   * idle worker steals it, since it has not run yet. */
  tt_id found = 0;
  int64_t until = tt_now() + 20 * TT_SEC;
  while (found == 0 && tt_now() < until)
    tt_coro_foreach(find_running, &found);
  ASSERT(found != 0);
  spinner = found;
  char *out;
  ASSERT_OK(tt_dump_mem(TT_DUMP_TRACES, &out, NULL));
  tt_test_show(out);
  char *b = block_of(out, spinner);
  ASSERT(b != NULL);
  ASSERT_CONTAINS(b, "[running]:\n");
  ASSERT(strstr(b, "stack unavailable") == NULL);
  ASSERT_CONTAINS(b, "dump_spin(...)\n\t");
  ASSERT_FILE_LINE(b, "tests/dump_bodies.c:");
  ASSERT_CONTAINS(b, "created by spawn_spinner\n");
  free(b);
  free(out);
  atomic_store(&dump_spin_stop, 1);
  return 0;
}

TEST(dump_captures_coroutine_running_on_other_worker) {
#if defined(__SANITIZE_THREAD__)
  /* TSan holds an asynchronous signal until the thread makes a call it intercepts, which a
   * coroutine in a busy loop never does: the capture could only time out. */
  printf("skipped: TSan delays signals to threads in busy loops\n");
  return;
#endif
  tt_test_run(running_body, NULL, 2);
}

/* ---- Deep stacks, creation stacks, plain threads ------------------------------------------ */

static int deep_body(void *arg) {
  (void)arg;
  dump_never = tt_chan_make(sizeof(int), 0);
  tt_id id;
  tt_go_opts o = {.share = &dump_never, .nshare = 1, .stack_size = 1 << 20};
  ASSERT_OK(tt_go_opt(dump_deep, (void *)(intptr_t)300, &o, &id));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  char *out;
  ASSERT_OK(tt_dump_mem(TT_DUMP_TRACES, &out, NULL));
  char *b = block_of(out, id);
  ASSERT(b != NULL);
  /* tt_chan_recv, 301 dump_recurse, dump_deep: 303 visible of 303 + the hidden ones. Go keeps
   * the innermost and outermost 50 frames of the stack and says how many it left out. */
  const char *el = strstr(b, " frames elided...\n");
  ASSERT(el != NULL);
  const char *num = el;
  while (num > b && num[-1] >= '0' && num[-1] <= '9')
    num--;
  ASSERT(strncmp(num - 3, "...", 3) == 0);
  tt_coro_info ci;
  tt_snapshot *snap;
  ASSERT_OK(tt_snapshot_take(&snap));
  for (size_t i = 0; i < tt_snapshot_len(snap); i++) {
    ASSERT_OK(tt_snapshot_get(snap, i, &ci));
    if (ci.id == id) {
      ASSERT_EQ(ci.nstack, TT_STACK_KEEP);
      ASSERT_GT(ci.stack_depth, 302);
      ASSERT_EQ(atoll(num), (long long)(ci.stack_depth - TT_STACK_KEEP));
    }
  }
  tt_snapshot_free(snap);
  /* The kept frames but tether's hidden ones at the top and the bottom. */
  ASSERT_GE(count_of(b, "dump_recurse(...)"), TT_STACK_KEEP - 15);
  ASSERT_LE(count_of(b, "dump_recurse(...)"), TT_STACK_KEEP - 2);
  ASSERT_CONTAINS(b, "dump_deep(...)\n");
  ASSERT_CONTAINS(b, "created by deep_body in goroutine 1\n");
  free(b);
  free(out);
  tt_chan_release(dump_never);
  return 0;
}

TEST(dump_traces_elide_deep_stacks) { run_leaving(deep_body, NULL, 2); }

__attribute__((noinline)) static void spawner_inner(tt_id *id) {
  tt_go_opts o = {.share = &dump_never, .nshare = 1};
  ASSERT_OK(tt_go_opt(dump_leak_chan, NULL, &o, id));
  atomic_fetch_add_explicit(&dump_sink, 1, memory_order_relaxed);
}

__attribute__((noinline)) static void spawner_outer(void *arg) {
  spawner_inner(arg);
  atomic_fetch_add_explicit(&dump_sink, 1, memory_order_relaxed);
  tt_sleep(TT_SEC * 100);
  atomic_fetch_add_explicit(&dump_sink, 1, memory_order_relaxed);
}

static int creation_body(void *arg) {
  (void)arg;
  dump_never = tt_chan_make(sizeof(int), 0);
  tt_id id = 0, mid;
  tt_go_opts o = {.share = &dump_never, .nshare = 1};
  ASSERT_OK(tt_go_opt(spawner_outer, &id, &o, &mid));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  char *out;
  ASSERT_OK(tt_dump_mem(TT_DUMP_TRACES, &out, NULL));
  tt_test_show(out);
  char *b = block_of(out, id);
  ASSERT(b != NULL);
  char want[256];
  snprintf(want, sizeof want, "created by spawner_inner in goroutine %llu\n",
           (unsigned long long)mid);
  ASSERT_CONTAINS(b, want);
  snprintf(want, sizeof want, "[originating from goroutine %llu]:\nspawner_inner(...)\n\t",
           (unsigned long long)mid);
  ASSERT_CONTAINS(b, want);
  ASSERT_CONTAINS(b, "spawner_outer(...)\n\t");
  /* Two levels: the spawner's own creation by goroutine 1. */
  ASSERT_CONTAINS(b, "created by creation_body in goroutine 1\n");
  ASSERT_CONTAINS(b, "[originating from goroutine 1]:\ncreation_body(...)\n\t");
  free(b);
  free(out);
  tt_chan_release(dump_never);
  return 0;
}

TEST(dump_creation_stacks) {
  tt_run_opts o = {.procs = 2, .creationstack = 2};
  ASSERT_OK(tt_test_run_unchecked(
      creation_body, NULL, &o,
      "the coroutines whose creation stacks are dumped sleep until shut-down"));
  tt_run_opts bad = {.creationstack = 65};
  ASSERT_ERR(tt_test_run_opt(creation_body, NULL, &bad), TT_EINVAL);
}

static void *thread_dump(void *arg) {
  char **out = arg;
  /* Once coroutine 1 sleeps too (the seed's loop is the other sleeper). */
  tt_counts c;
  do {
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
    ASSERT_OK(tt_counts_get(&c));
  } while (c.by_reason[TT_WAIT_SLEEP] < 2);
  ASSERT_OK(tt_dump_mem(TT_DUMP_TRACES, out, NULL));
  return NULL;
}

static int thread_body(void *arg) {
  (void)arg;
  seed s;
  seed_start(&s);
  pthread_t t;
  char *out = NULL;
  ASSERT_EQ(pthread_create(&t, NULL, thread_dump, &out), 0);
  tt_sleep(2 * TT_SEC); /* the thread dumps while we sleep, within milliseconds */
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT(out != NULL);
  /* No caller coroutine: every coroutine is suspended; we are asleep. */
  ASSERT(strncmp(out, "goroutine 1 [sleep]:\ntt_sleep(...)\n", 35) == 0);
  ASSERT_CONTAINS(out, "[chan receive]:\ntt_chan_recv(...)\n");
  free(out);
  seed_stop();
  return 0;
}

TEST(dump_from_plain_thread) { run_leaving(thread_body, NULL, 2); }

/* ---- Counts ------------------------------------------------------------------------------- */

static tt_wg peak_wg = TT_WG_INIT;

static void peak_waiter(void *arg) {
  (void)arg;
  tt_wg_wait(&peak_wg);
}

static int peak_body(void *arg) {
  (void)arg;
  int64_t n = SCALED(2000, 200);
  tt_wg_add(&peak_wg, 1);
  for (int64_t i = 0; i < n; i++)
    ASSERT_OK(tt_go(peak_waiter, NULL));
  tt_test_await_reason(TT_WAIT_WAITGROUP_WAIT, n);
  tt_counts c;
  ASSERT_OK(tt_counts_get(&c));
  ASSERT_EQ(c.total, n + 1);
  ASSERT_GE(c.peak, n + 1);
  ASSERT_LE(c.peak, (int64_t)c.created);
  tt_wg_done(&peak_wg);
  while (tt_num_coroutines() > 1)
    tt_sleep(TT_MSEC);
  ASSERT_OK(tt_counts_get(&c));
  ASSERT_EQ(c.total, 1);
  ASSERT_GE(c.peak, n + 1); /* the peak stays */
  return 0;
}

TEST(counts_peak) {
  tt_test_run(peak_body, NULL, 2);
  tt_test_run(peak_body, NULL, 1);
}

/* ---- Scale -------------------------------------------------------------------------------- */

static int scale_body(void *arg) {
  (void)arg;
  int64_t n = SCALED(20000, 400);
  seed s;
  seed_start(&s);
  for (int64_t i = 0; i < n; i++) {
    tt_go_opts o = {.share = &dump_never, .nshare = 1};
    ASSERT_OK(tt_go_opt(i % 2 ? dump_select : dump_leak_chan, NULL, &o, NULL));
  }
  tt_test_await_reason(TT_WAIT_CHAN_RECV, n / 2 + 1);
  tt_test_await_reason(TT_WAIT_SELECT, n / 2 + 3);
  for (int f = TT_DUMP_PPROF; f <= TT_DUMP_JSON; f++) {
    int64_t t0 = tt_now();
    char *out;
    size_t len;
    ASSERT_OK(tt_dump_mem(f, &out, &len));
    printf("format %d: %zu bytes in %.1f ms\n", f, len, (double)(tt_now() - t0) / 1e6);
    if (f == TT_DUMP_TRACES)
      ASSERT_EQ(count_headers(out), n + 7);
    if (f == TT_DUMP_COUNTS) {
      char want[64];
      snprintf(want, sizeof want, "\n%lld @ 0x", (long long)(n / 2 + 3));
      ASSERT_CONTAINS(out, want);
    }
    free(out);
  }
  seed_stop();
  return 0;
}

TEST(dump_many_coroutines) { run_leaving(scale_body, NULL, 2); }

/* Without debug information for tether (the aarch64 build has no libdw): names come from the
 * symbol tables, lines are ??:0, and tether's frames above the public call are still hidden,
 * told apart by name alone. */
TEST(dump_traces_without_dwarf) {
  tt__symbolize_use_dwarf(false);
  ASSERT(!tt_test_have_dwarf());
  run_leaving(traces_body, NULL, 2);
}
