/* SPDX-License-Identifier: MIT */
/* Execution tracing (src/trace): a program with channel hand-offs, a sleep, a contended mutex and
 * an I/O wait is traced, and the JSON is checked by a strict checker written against the Trace
 * Event Format document (the JSON object form: phases, pid/tid, microsecond timestamps, matched
 * flows, slices that do not overlap on a track, thread_name metadata) and for its values (the
 * hand-offs are flows from the sender to the receiver, the sleep a "sleep" block of its length,
 * the leak instant after tt_leak_check). Also: the binary form, its export and summary, the flight
 * recorder's bound, TT_TRACE, the endpoint's route, and bad input. */
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "json.h"
#include "test.h"

#define TOL (20 * TT_MSEC * (int64_t)tt_test_slow())

/* ---- Files -------------------------------------------------------------------------------- */

static int temp_fd(char *path) {
  strcpy(path, "/tmp/tt-trace-XXXXXX");
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  return fd;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ASSERT(f != NULL);
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  size_t r;
  while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n - 1 == 0)
      b = realloc(b, cap *= 2);
  }
  fclose(f);
  b[n] = '\0';
  if (len)
    *len = n;
  return b;
}

/* ---- The checker ---------------------------------------------------------------------------- */

/* What the checker gathers, for the value checks. */
typedef struct span {
  double tid, ts, dur;
  const char *name;
} span;

typedef struct flow {
  double id;
  int ns, nf;
  double s_tid, s_ts, f_tid, f_ts;
} flow;

typedef struct checked {
  json root;
  span *x;
  size_t nx;
  flow *fl;
  size_t nfl;
  const json **inst; /* "i" events */
  size_t ninst;
  char **names; /* thread_name per track: names[i] for tids[i] */
  double *tids;
  size_t nnames;
} checked;

static const json *get(const json *o, const char *k) { return json_get(o, k); }

static const char *str_of(const json *o, const char *k) {
  const json *v = get(o, k);
  return v && v->type == JSON_STR ? v->str : NULL;
}

static bool num_of(const json *o, const char *k, double *out) {
  const json *v = get(o, k);
  if (v == NULL || v->type != JSON_NUM)
    return false;
  *out = v->num;
  return true;
}

static int cmp_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->tid != y->tid)
    return x->tid < y->tid ? -1 : 1;
  return x->ts < y->ts ? -1 : x->ts > y->ts;
}

static const char *track_name(const checked *c, double tid) {
  for (size_t i = 0; i < c->nnames; i++)
    if (c->tids[i] == tid)
      return c->names[i];
  return NULL;
}

/* Whether some running slice on tid encloses ts. */
static bool enclosed(const checked *c, double tid, double ts) {
  for (size_t i = 0; i < c->nx; i++)
    if (c->x[i].tid == tid && c->x[i].ts <= ts + 1e-6 && ts <= c->x[i].ts + c->x[i].dur + 1e-6)
      return true;
  return false;
}

/* Parses text and checks it against the format: fails the test on any departure. */
static void check_trace(const char *text, checked *c) {
  memset(c, 0, sizeof *c);
  ASSERT(json_parse(text, &c->root));
  ASSERT(c->root.type == JSON_OBJ);
  const json *evs = get(&c->root, "traceEvents");
  ASSERT(evs != NULL && evs->type == JSON_ARR);
  const char *unit = str_of(&c->root, "displayTimeUnit");
  ASSERT(unit == NULL || strcmp(unit, "ns") == 0 || strcmp(unit, "ms") == 0);
  c->x = calloc(evs->n + 1, sizeof *c->x);
  c->fl = calloc(evs->n + 1, sizeof *c->fl);
  c->inst = calloc(evs->n + 1, sizeof *c->inst);
  c->names = calloc(evs->n + 1, sizeof *c->names);
  c->tids = calloc(evs->n + 1, sizeof *c->tids);
  double *used = calloc(evs->n + 1, sizeof *used);
  size_t nused = 0;
  int nb = 0, ne = 0;
  for (size_t i = 0; i < evs->n; i++) {
    const json *e = &evs->items[i];
    ASSERT(e->type == JSON_OBJ);
    const char *ph = str_of(e, "ph");
    const char *name = str_of(e, "name");
    double pid, tid, ts;
    ASSERT(ph != NULL && strlen(ph) == 1 && strchr("XiIsfMbe", ph[0]) != NULL);
    ASSERT(name != NULL);
    ASSERT(num_of(e, "pid", &pid) && pid == 1);
    ASSERT(num_of(e, "tid", &tid) && tid >= 0 && tid == floor(tid));
    ASSERT(num_of(e, "ts", &ts) && ts >= 0);
    /* Microseconds with at most nanosecond decimals. */
    ASSERT(fabs(ts * 1000 - round(ts * 1000)) < 1e-3);
    if (ph[0] == 'M') {
      const json *args = get(e, "args");
      ASSERT(args != NULL && args->type == JSON_OBJ);
      if (strcmp(name, "thread_name") == 0) {
        ASSERT(str_of(args, "name") != NULL);
        ASSERT(track_name(c, tid) == NULL); /* one per track */
        c->tids[c->nnames] = tid;
        c->names[c->nnames++] = (char *)str_of(args, "name");
      } else {
        ASSERT(strcmp(name, "process_name") == 0 || strcmp(name, "thread_sort_index") == 0);
      }
      continue;
    }
    used[nused++] = tid;
    switch (ph[0]) {
    case 'X': {
      double dur;
      ASSERT(num_of(e, "dur", &dur) && dur >= 0);
      c->x[c->nx++] = (span){tid, ts, dur, name};
      break;
    }
    case 'i':
    case 'I': {
      const char *s = str_of(e, "s");
      ASSERT(s == NULL || strcmp(s, "t") == 0 || strcmp(s, "p") == 0 || strcmp(s, "g") == 0);
      c->inst[c->ninst++] = e;
      break;
    }
    case 's':
    case 'f': {
      double id;
      ASSERT(num_of(e, "id", &id));
      if (ph[0] == 'f') {
        const char *bp = str_of(e, "bp");
        ASSERT(bp == NULL || strcmp(bp, "e") == 0);
      }
      size_t k = 0;
      while (k < c->nfl && c->fl[k].id != id)
        k++;
      if (k == c->nfl)
        c->fl[c->nfl++] = (flow){.id = id};
      if (ph[0] == 's') {
        c->fl[k].ns++;
        c->fl[k].s_tid = tid;
        c->fl[k].s_ts = ts;
      } else {
        c->fl[k].nf++;
        c->fl[k].f_tid = tid;
        c->fl[k].f_ts = ts;
      }
      break;
    }
    case 'b':
    case 'e': {
      double id;
      ASSERT(num_of(e, "id", &id));
      ASSERT(str_of(e, "cat") != NULL);
      if (ph[0] == 'b')
        nb++;
      else
        ne++;
      break;
    }
    }
  }
  ASSERT_EQ(nb, ne); /* every async begin ended */
  /* Slices on one track never overlap (and so are monotonic once sorted). */
  qsort(c->x, c->nx, sizeof *c->x, cmp_span);
  for (size_t i = 1; i < c->nx; i++)
    if (c->x[i].tid == c->x[i - 1].tid && c->x[i].ts + 1e-6 < c->x[i - 1].ts + c->x[i - 1].dur)
      tt_test_fail(__FILE__, __LINE__,
                   "overlapping slices on tid %.0f: %s at %.3f+%.3f, %s at %.3f", c->x[i].tid,
                   c->x[i - 1].name, c->x[i - 1].ts, c->x[i - 1].dur, c->x[i].name, c->x[i].ts);
  /* Every flow: one start, one finish, later, each inside a slice of its track. */
  for (size_t k = 0; k < c->nfl; k++) {
    ASSERT_EQ(c->fl[k].ns, 1);
    ASSERT_EQ(c->fl[k].nf, 1);
    ASSERT(c->fl[k].s_ts <= c->fl[k].f_ts + 1e-6);
    ASSERT(enclosed(c, c->fl[k].s_tid, c->fl[k].s_ts));
    ASSERT(enclosed(c, c->fl[k].f_tid, c->fl[k].f_ts));
  }
  /* Every track used is named "g<tid> ..." ("plain threads" for tid 0). */
  for (size_t i = 0; i < nused; i++) {
    const char *n = track_name(c, used[i]);
    ASSERT(n != NULL);
    char want[40];
    snprintf(want, sizeof want, "g%.0f ", used[i]);
    if (used[i] == 0)
      ASSERT_STR_EQ(n, "plain threads");
    else
      ASSERT(strncmp(n, want, strlen(want)) == 0);
  }
  free(used);
}

static void checked_free(checked *c) {
  json_free(&c->root);
  free(c->x);
  free(c->fl);
  free(c->inst);
  free(c->names);
  free(c->tids);
}

/* The track named exactly "g<id> name" (by name only), or -1. */
static double tid_named(const checked *c, const char *name) {
  for (size_t i = 0; i < c->nnames; i++) {
    const char *sp = strchr(c->names[i], ' ');
    if (sp && strcmp(sp + 1, name) == 0)
      return c->tids[i];
  }
  return -1;
}

static size_t count_spans(const checked *c, double tid, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < c->nx; i++)
    n += (tid < 0 || c->x[i].tid == tid) && strcmp(c->x[i].name, name) == 0;
  return n;
}

/* ---- The traced program --------------------------------------------------------------------- */

#define HANDOFFS 50
#define SLEEP_NS (30 * TT_MSEC)

typedef struct prog {
  tt_chan *ch;
  tt_mutex mu;
  tt_wg wg;
  int pipe[2];
} prog;

static void sender(void *arg) {
  prog *p = arg;
  tt_name_set("sender");
  for (int i = 0; i < HANDOFFS; i++)
    ASSERT_OK(tt_chan_send(p->ch, &i));
  tt_wg_done(&p->wg);
}

static void receiver(void *arg) {
  prog *p = arg;
  ASSERT_OK(tt_trace_region_begin("receiving"));
  for (int i = 0; i < HANDOFFS; i++) {
    int v;
    ASSERT_OK(tt_chan_recv(p->ch, &v, NULL));
    ASSERT_EQ(v, i);
  }
  ASSERT_OK(tt_trace_region_end());
  ASSERT_OK(tt_trace_log("receiver", "got them all \"50\""));
  tt_wg_done(&p->wg);
}

static void sleeper(void *arg) {
  prog *p = arg;
  tt_sleep(SLEEP_NS);
  tt_wg_done(&p->wg);
}

static void locker(void *arg) {
  prog *p = arg;
  ASSERT_OK(tt_mutex_lock(&p->mu)); /* held by main: waits */
  ASSERT_OK(tt_mutex_unlock(&p->mu));
  tt_wg_done(&p->wg);
}

static void io_waiter(void *arg) {
  prog *p = arg;
  ASSERT_EQ(tt_fd_wait(p->pipe[0], POLLIN, TT_FOREVER) > 0, 1);
  char b;
  ASSERT_EQ(read(p->pipe[0], &b, 1), 1);
  tt_wg_done(&p->wg);
}

static void go_named(void (*fn)(void *), void *arg, const char *name) {
  tt_go_opts o = {.name = name};
  ASSERT_OK(tt_go_opt(fn, arg, &o, NULL));
}

/* The program: every kind of block, from a coroutine. */
static int prog_main(void *unused) {
  (void)unused;
  tt_chan_opts co = {.mode = TT_CHAN_UNTRACKED};
  prog p = {.mu = TT_MUTEX_INIT, .wg = TT_WG_INIT};
  ASSERT_OK(tt_chan_make_opt(&p.ch, sizeof(int), 0, &co));
  ASSERT(pipe(p.pipe) == 0);
  ASSERT_OK(tt_mutex_lock(&p.mu));
  tt_wg_add(&p.wg, 5);
  ASSERT_OK(tt_go(sender, &p));
  go_named(receiver, &p, "receiver");
  go_named(sleeper, &p, "sleeper");
  go_named(locker, &p, "locker");
  go_named(io_waiter, &p, "io_waiter");
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, 1);
  tt_test_await_reason(TT_WAIT_IO_WAIT, 1);
  tt_sleep(2 * TT_MSEC);
  ASSERT_OK(tt_mutex_unlock(&p.mu));
  ASSERT_EQ(write(p.pipe[1], "x", 1), 1);
  ASSERT_OK(tt_wg_wait(&p.wg));
  tt_chan_release(p.ch);
  close(p.pipe[0]);
  close(p.pipe[1]);
  return 0;
}

/* The values the program's trace must show. */
static void check_prog(const checked *c) {
  double snd = tid_named(c, "sender"), rcv = tid_named(c, "receiver");
  double slp = tid_named(c, "sleeper"), lck = tid_named(c, "locker"),
         io = tid_named(c, "io_waiter");
  ASSERT(snd > 0 && rcv > 0 && slp > 0 && lck > 0 && io > 0);
  ASSERT(tid_named(c, "main") >= 0);
  /* The hand-offs: flows between the sender and the receiver, from the one that woke the other
   * (on an unbuffered channel each wakes the other in turn); at least one from the sender. */
  size_t s2r = 0;
  for (size_t k = 0; k < c->nfl; k++)
    s2r += c->fl[k].s_tid == snd && c->fl[k].f_tid == rcv;
  ASSERT_GE(s2r, 1);
  ASSERT_GE(count_spans(c, rcv, "chan receive") + count_spans(c, snd, "chan send"), HANDOFFS / 2);
  /* The sleep: one "sleep" block of about its length. */
  ASSERT_EQ(count_spans(c, slp, "sleep"), 1);
  for (size_t i = 0; i < c->nx; i++)
    if (c->x[i].tid == slp && strcmp(c->x[i].name, "sleep") == 0) {
      /* The block starts when the sleeper parks, a little after tt_sleep took its deadline
       * (much more than a little under qemu): the span may be that much shorter. */
      ASSERT_GE(c->x[i].dur * 1000, SLEEP_NS - (int64_t)(TT_MSEC * tt_test_slow()));
      ASSERT_LE(c->x[i].dur * 1000, SLEEP_NS + TOL);
    }
  ASSERT_EQ(count_spans(c, lck, "sync.Mutex.Lock"), 1);
  ASSERT_EQ(count_spans(c, io, "IO wait"), 1);
  ASSERT_GE(count_spans(c, rcv, "running"), 2);
  /* The log instant on the receiver's track, its text intact. */
  bool logged = false;
  for (size_t i = 0; i < c->ninst; i++) {
    double tid = -1;
    num_of(c->inst[i], "tid", &tid);
    const json *args = get(c->inst[i], "args");
    if (tid == rcv && strcmp(str_of(c->inst[i], "name"), "receiver") == 0 && args &&
        strcmp(str_of(args, "message"), "got them all \"50\"") == 0)
      logged = true;
  }
  ASSERT(logged);
}

TEST(trace_json_checked) {
  char path[64];
  int fd = temp_fd(path);
  ASSERT_OK(tt_trace_start(fd, NULL));
  ASSERT_EQ(tt_trace_enabled(), 1);
  tt_test_run(prog_main, NULL, 2);
  ASSERT_OK(tt_trace_stop());
  ASSERT_EQ(tt_trace_enabled(), 0);
  close(fd);
  char *text = slurp(path, NULL);
  checked c;
  check_trace(text, &c);
  check_prog(&c);
  checked_free(&c);
  free(text);
  unlink(path);
}

/* One worker: every hand-off is a switch on the same worker (yields and runnext). */
TEST(trace_json_one_worker) {
  char path[64];
  int fd = temp_fd(path);
  ASSERT_OK(tt_trace_start(fd, NULL));
  tt_test_run(prog_main, NULL, 1);
  ASSERT_OK(tt_trace_stop());
  close(fd);
  char *text = slurp(path, NULL);
  checked c;
  check_trace(text, &c);
  check_prog(&c);
  checked_free(&c);
  free(text);
  unlink(path);
}

/* The binary form, converted by tt_trace_export, checks the same; the summary sums it up. */
TEST(trace_binary_export_summary) {
  char bin[64], js[64], sum[64];
  int fd = temp_fd(bin);
  tt_trace_opts o = {.format = TT_TRACE_BINARY, .chunk_bytes = 4096}; /* many hand-overs */
  ASSERT_OK(tt_trace_start(fd, &o));
  tt_test_run(prog_main, NULL, 2);
  ASSERT_OK(tt_trace_stop());
  int in = open(bin, O_RDONLY), out = temp_fd(js);
  ASSERT_OK(tt_trace_export(in, out));
  close(in);
  close(out);
  char *text = slurp(js, NULL);
  checked c;
  check_trace(text, &c);
  check_prog(&c);
  checked_free(&c);
  free(text);
  in = open(bin, O_RDONLY);
  out = temp_fd(sum);
  ASSERT_OK(tt_trace_summary(in, out));
  close(in);
  close(out);
  text = slurp(sum, NULL);
  ASSERT_CONTAINS(text, "tether trace summary:");
  ASSERT_CONTAINS(text, "sched wait ms");
  ASSERT_CONTAINS(text, " sleeper ");
  /* ~30 ms asleep (more on a slow run: the wake comes late, never early). */
  const char *line = strstr(text, " sleeper ");
  ASSERT(line != NULL);
  const char *sl = strstr(line, "sleep ");
  ASSERT(sl != NULL && sl < strchr(line, '\n'));
  double slept = atof(sl + 6);
  ASSERT(slept >= 29.0 && slept <= 30.0 + 50.0 * tt_test_slow());
  ASSERT_CONTAINS(text, "sync.Mutex.Lock");
  ASSERT_CONTAINS(text, "IO wait");
  ASSERT_CONTAINS(text, "chan receive");
  ASSERT_CONTAINS(text, "\ntotal ");
  free(text);
  /* Not a trace. */
  in = open("/proc/self/status", O_RDONLY);
  ASSERT_ERR(tt_trace_export(in, 1), TT_EINVAL);
  close(in);
  ASSERT_ERR(tt_trace_summary(-1, 1), TT_EINVAL);
  close(fd);
  unlink(bin);
  unlink(js);
  unlink(sum);
}

/* ---- Leaks ---------------------------------------------------------------------------------- */

static void forever(void *ch) {
  int v;
  tt_chan_recv(ch, &v, NULL); /* returns at shut-down */
  tt_chan_release(ch);
}

static int leak_main(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.name = "abandoned", .share = &ch, .nshare = 1};
  ASSERT_OK(tt_go_opt(forever, ch, &o, NULL));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_EQ(tt_leak_check(NULL), 1);
  return 0;
}

TEST(trace_leak_instant) {
  char path[64];
  int fd = temp_fd(path);
  ASSERT_OK(tt_trace_start(fd, NULL));
  tt_run_opts ro = {.procs = 2, .report_fd = -1};
  ASSERT_OK(tt_test_run_unchecked(leak_main, NULL, &ro, "it proves a coroutine leaked"));
  ASSERT_OK(tt_trace_stop());
  close(fd);
  char *text = slurp(path, NULL);
  checked c;
  check_trace(text, &c);
  double ab = tid_named(&c, "abandoned");
  ASSERT(ab > 0);
  size_t n = 0;
  for (size_t i = 0; i < c.ninst; i++) {
    double tid = -1;
    num_of(c.inst[i], "tid", &tid);
    if (tid == ab && strncmp(str_of(c.inst[i], "name"), "leak: g", 7) == 0) {
      ASSERT_STR_EQ(str_of(c.inst[i], "s"), "g");
      ASSERT_STR_EQ(str_of(get(c.inst[i], "args"), "verdict"), "leaked");
      ASSERT_STR_EQ(str_of(get(c.inst[i], "args"), "wait_reason"), "chan receive");
      n++;
    }
  }
  ASSERT_EQ(n, 1);
  checked_free(&c);
  free(text);
  unlink(path);
}

/* ---- The flight recorder -------------------------------------------------------------------- */

static int flight_main(void *arg) {
  int fd = (int)(intptr_t)arg;
  int64_t n = SCALED(20000, 5000);
  char msg[32];
  for (int64_t i = 0; i < n; i++) {
    snprintf(msg, sizeof msg, "m%lld", (long long)i);
    ASSERT_OK(tt_trace_log("seq", msg));
  }
  ASSERT_OK(tt_trace_flight_write(fd));
  return 0;
}

TEST(trace_flight_keeps_the_last) {
  char path[64];
  int fd = temp_fd(path);
  ASSERT_ERR(tt_trace_flight_write(fd), TT_EINVAL); /* off */
  tt_trace_flight_opts fo = {.bytes = 256 * 1024};
  ASSERT_OK(tt_trace_flight_start(&fo));
  ASSERT_ERR(tt_trace_start(fd, NULL), TT_EBUSY);
  ASSERT_ERR(tt_trace_flight_start(&fo), TT_EBUSY);
  tt_test_run(flight_main, (void *)(intptr_t)fd, 1);
  ASSERT_OK(tt_trace_flight_stop());
  ASSERT_ERR(tt_trace_flight_stop(), TT_EINVAL);
  close(fd);
  size_t len;
  char *text = slurp(path, &len);
  checked c;
  check_trace(text, &c);
  /* Kept: a contiguous run of the most recent messages, the last one included, the first not. */
  int64_t n = SCALED(20000, 5000), lo = n, hi = -1, count = 0;
  for (size_t i = 0; i < c.ninst; i++) {
    const json *args = get(c.inst[i], "args");
    const char *m = args ? str_of(args, "message") : NULL;
    if (m && m[0] == 'm') {
      int64_t v = atoll(m + 1);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      count++;
    }
  }
  ASSERT_EQ(hi, n - 1);
  ASSERT_GT(lo, 0);
  ASSERT_EQ(count, hi - lo + 1);
  /* A log record with its text is 2 records of 48 bytes: about 256 KiB of them, plus a chunk. */
  ASSERT_LE(count * 96, 256 * 1024 + 2 * 65536);
  ASSERT_GE(count * 96, 256 * 1024 - 65536);
  checked_free(&c);
  free(text);
  unlink(path);
}

/* The age bound: after a pause longer than it, what came before is gone once newer buffers fill. */
static int flight_age_main(void *arg) {
  int fd = (int)(intptr_t)arg;
  for (int i = 0; i < 3000; i++)
    ASSERT_OK(tt_trace_log("old", "before the pause"));
  tt_sleep(1200 * TT_MSEC);
  for (int i = 0; i < 6000; i++)
    ASSERT_OK(tt_trace_log("new", "after the pause"));
  ASSERT_OK(tt_trace_flight_write(fd));
  return 0;
}

TEST(trace_flight_age) {
  char path[64];
  int fd = temp_fd(path);
  tt_trace_flight_opts fo = {.seconds = 1};
  ASSERT_OK(tt_trace_flight_start(&fo));
  tt_test_run(flight_age_main, (void *)(intptr_t)fd, 1);
  ASSERT_OK(tt_trace_flight_stop());
  close(fd);
  char *text = slurp(path, NULL);
  checked c;
  check_trace(text, &c);
  size_t nold = 0, nnew = 0;
  for (size_t i = 0; i < c.ninst; i++) {
    const char *name = str_of(c.inst[i], "name");
    nold += strcmp(name, "old") == 0;
    nnew += strcmp(name, "new") == 0;
  }
  ASSERT_EQ(nnew, 6000);
  /* Only what shares a buffer with the new ones may stay (a buffer holds ~680 logs). */
  ASSERT_LT(nold, 700);
  checked_free(&c);
  free(text);
  unlink(path);
}

/* ---- TT_TRACE and bad input ----------------------------------------------------------------- */

TEST(trace_env_whole_run) {
  char path[64];
  int fd = temp_fd(path);
  close(fd);
  setenv("TT_TRACE", path, 1);
  tt_test_run(prog_main, NULL, 2);
  unsetenv("TT_TRACE");
  ASSERT_EQ(tt_trace_enabled(), 0);
  ASSERT_ERR(tt_trace_stop(), TT_EINVAL); /* the run's trace is not the program's to stop */
  char *text = slurp(path, NULL);
  checked c;
  check_trace(text, &c);
  check_prog(&c);
  checked_free(&c);
  free(text);
  unlink(path);
}

TEST(trace_bad_input) {
  ASSERT_ERR(tt_trace_start(-1, NULL), TT_EINVAL);
  tt_trace_opts bad = {.format = 7};
  ASSERT_ERR(tt_trace_start(2, &bad), TT_EINVAL);
  tt_trace_opts small = {.chunk_bytes = 100};
  ASSERT_ERR(tt_trace_start(2, &small), TT_EINVAL);
  small.format = TT_TRACE_BINARY;
  ASSERT_ERR(tt_trace_start(2, &small), TT_EINVAL); /* nothing written */
  ASSERT_ERR(tt_trace_stop(), TT_EINVAL);
  ASSERT_ERR(tt_trace_region_begin(NULL), TT_EINVAL);
  ASSERT_ERR(tt_trace_log("x", NULL), TT_EINVAL);
  ASSERT_OK(tt_trace_log(NULL, "off: nothing recorded"));
  ASSERT_OK(tt_trace_region_end());
  ASSERT_ERR(tt_trace_flight_start(NULL), TT_EINVAL);
  tt_trace_flight_opts neg = {.seconds = -1};
  ASSERT_ERR(tt_trace_flight_start(&neg), TT_EINVAL);
  ASSERT_ERR(tt_trace_flight_write(-1), TT_EINVAL);
  ASSERT_ERR(tt_trace_export(-1, 1), TT_EINVAL);
  /* A trace with no events is still a valid document; a second start is refused. */
  char path[64];
  int fd = temp_fd(path);
  ASSERT_OK(tt_trace_start(fd, NULL));
  ASSERT_ERR(tt_trace_start(fd, NULL), TT_EBUSY);
  ASSERT_OK(tt_trace_log("plain", "from a plain thread, \xff not UTF-8, \xc3\xa9 is"));
  ASSERT_OK(tt_trace_stop());
  close(fd);
  char *text = slurp(path, NULL);
  checked c;
  check_trace(text, &c);
  ASSERT_EQ(c.ninst, 1);
  ASSERT_STR_EQ(track_name(&c, 0), "plain threads");
  /* Bytes that are not UTF-8 became U+FFFD; valid sequences stayed. */
  ASSERT_STR_EQ(str_of(get(c.inst[0], "args"), "message"),
                "from a plain thread, \xef\xbf\xbd not UTF-8, \xc3\xa9 is");
  checked_free(&c);
  free(text);
  unlink(path);
}

/* ---- The endpoint --------------------------------------------------------------------------- */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef struct get_call {
  const char *path;
  int status;
  char *body;
} get_call;

/* GET path over HTTP/1.0 (no chunking: the body runs to the close), on a plain thread. */
static intptr_t http_get(void *arg) {
  get_call *g = arg;
  char addr[80];
  ASSERT_OK(tt_debug_addr(addr, sizeof addr));
  char *colon = strrchr(addr, ':');
  *colon = '\0';
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  ASSERT(inet_pton(AF_INET, addr, &sa.sin_addr) == 1);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  ASSERT(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  char req[256];
  snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", g->path);
  ASSERT_EQ(write(fd, req, strlen(req)), (int64_t)strlen(req));
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  ssize_t r;
  while ((r = read(fd, b + n, cap - n - 1)) > 0) {
    n += (size_t)r;
    if (cap - n - 1 == 0)
      b = realloc(b, cap *= 2);
  }
  close(fd);
  b[n] = '\0';
  ASSERT(sscanf(b, "HTTP/1.%*d %d", &g->status) == 1);
  char *body = strstr(b, "\r\n\r\n");
  ASSERT(body != NULL);
  g->body = strdup(body + 4);
  free(b);
  return 0;
}

static void busy_handoffs(void *arg) {
  prog *p = arg;
  int64_t end = tt_now() + 300 * TT_MSEC;
  int i = 0;
  while (tt_now() < end) {
    ASSERT_OK(tt_chan_send(p->ch, &i));
    tt_sleep(TT_MSEC);
  }
  i = -1;
  ASSERT_OK(tt_chan_send(p->ch, &i));
}

static void drain(void *arg) {
  prog *p = arg;
  tt_name_set("drain");
  int v = 0;
  while (v >= 0)
    ASSERT_OK(tt_chan_recv(p->ch, &v, NULL));
  tt_wg_done(&p->wg);
}

/* The GET of the trace, from a coroutine of its own (its wait group says when it is done). */
typedef struct get_job {
  get_call *g;
  tt_wg *done;
} get_job;

static void get_in_coroutine(void *arg) {
  get_job *j = arg;
  ASSERT_OK(tt_blocking(http_get, j->g, NULL));
  tt_wg_done(j->done);
}

static int endpoint_main(void *unused) {
  (void)unused;
  tt_debug_opts o = {.addr = "127.0.0.1:0"};
  ASSERT_OK(tt_debug_serve_opts(&o));
  get_call bad = {.path = "/debug/tether/trace?seconds=abc"};
  ASSERT_OK(tt_blocking(http_get, &bad, NULL));
  ASSERT_EQ(bad.status, 400);
  free(bad.body);
  /* A trace while the program hands values over for 300 ms (of the 1 s traced). */
  tt_chan_opts co = {.mode = TT_CHAN_UNTRACKED};
  prog p = {.wg = TT_WG_INIT};
  ASSERT_OK(tt_chan_make_opt(&p.ch, sizeof(int), 0, &co));
  tt_wg_add(&p.wg, 1);
  get_call g = {.path = "/debug/tether/trace?seconds=1"};
  tt_wg got = TT_WG_INIT;
  tt_wg_add(&got, 1);
  get_job job = {&g, &got};
  ASSERT_OK(tt_go(get_in_coroutine, &job));
  /* The program starts once the endpoint's trace is on (a slow machine takes a while). */
  for (int64_t give_up = tt_now() + (int64_t)(30 * TT_SEC * tt_test_slow()); !tt_trace_enabled();) {
    ASSERT_LT(tt_now(), give_up);
    tt_sleep(TT_MSEC);
  }
  tt_go_opts bo = {.name = "handoffs"};
  ASSERT_OK(tt_go_opt(busy_handoffs, &p, &bo, NULL));
  ASSERT_OK(tt_go(drain, &p));
  ASSERT_OK(tt_wg_wait(&got));
  ASSERT_OK(tt_wg_wait(&p.wg));
  tt_chan_release(p.ch);
  ASSERT_EQ(g.status, 200);
  checked c;
  check_trace(g.body, &c);
  double h = tid_named(&c, "handoffs"), d = tid_named(&c, "drain");
  ASSERT(h > 0 && d > 0);
  ASSERT_GE(count_spans(&c, h, "sleep"), 10);
  size_t flows = 0;
  for (size_t k = 0; k < c.nfl; k++)
    flows += c.fl[k].s_tid == h && c.fl[k].f_tid == d;
  ASSERT_GE(flows, 10);
  checked_free(&c);
  free(g.body);
  /* One trace at a time: the endpoint says so while the program's own is on. */
  char path[64];
  int fd = temp_fd(path);
  ASSERT_OK(tt_trace_start(fd, NULL));
  get_call busy = {.path = "/debug/tether/trace?seconds=1"};
  ASSERT_OK(tt_blocking(http_get, &busy, NULL));
  ASSERT_EQ(busy.status, 500);
  ASSERT_CONTAINS(busy.body, "a trace is already on");
  free(busy.body);
  ASSERT_OK(tt_trace_stop());
  close(fd);
  unlink(path);
  ASSERT_OK(tt_debug_stop());
  return 0;
}

TEST(trace_endpoint) { tt_test_run(endpoint_main, NULL, 2); }

/* The flight recorder writes itself when the leak monitor reports a leak (TT_LEAKCHECK=eager). */
static int flight_leak_main(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.name = "abandoned", .share = &ch, .nshare = 1};
  tt_id id;
  ASSERT_OK(tt_go_opt(forever, ch, &o, &id));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_chan_release(ch)); /* the monitor proves it leaked soon after */
  int64_t give_up = tt_now() + (int64_t)(60 * TT_SEC * tt_test_slow());
  while (tt_leak_verdict_of(id) == TT_VERDICT_NONE) {
    ASSERT(tt_now() < give_up);
    tt_sleep(TT_MSEC);
  }
  tt_sleep(50 * TT_MSEC); /* the report, then the dump, follow the verdict */
  return 0;
}

TEST(trace_flight_dump_on_leak) {
  char path[64];
  int fd = temp_fd(path);
  tt_trace_flight_opts fo = {.seconds = 10, .report_fd = fd};
  ASSERT_OK(tt_trace_flight_start(&fo));
  tt_run_opts ro = {.procs = 2, .report_fd = -1, .leakcheck = TT_LEAKCHECK_EAGER};
  ASSERT_ERR(tt_test_run_unchecked(flight_leak_main, NULL, &ro, "it leaks a coroutine on purpose"),
             TT_ELEAKED); /* eager mode ends the run with the leak found */
  ASSERT_OK(tt_trace_flight_stop());
  close(fd);
  char *text = slurp(path, NULL);
  ASSERT(text[0] != '\0');
  checked c;
  check_trace(text, &c);
  double ab = tid_named(&c, "abandoned");
  ASSERT(ab > 0);
  bool leak = false;
  for (size_t i = 0; i < c.ninst; i++)
    leak |= strncmp(str_of(c.inst[i], "name"), "leak: g", 7) == 0;
  ASSERT(leak);
  checked_free(&c);
  free(text);
  unlink(path);
}
