/* SPDX-License-Identifier: MIT */
/* The debug endpoint's bodies (src/debug/metrics.c, groups.c, page.c), written into memory sinks
 * while a known program runs: /metrics parsed by a strict reader of the Prometheus text format
 * and by the real promtool; groups.json parsed strictly and checked against the program; the
 * live page loaded in headless Chromium from a small HTTP server of the test's own. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/diag/diag_int.h"
#include "json.h"
#include "test.h"

/* src/debug/debug_int.h (which needs the library's include path; the tests see src/ only
 * through relative paths). */
int tt__debug_metrics(tt__sink *s);
int tt__debug_groups_json(tt__sink *s, const char *query);
extern const char tt__debug_page_html[];

/* ---- Helpers -------------------------------------------------------------------------------- */

static char *metrics_text(void) {
  tt__sink s;
  tt__sink_mem(&s);
  ASSERT_OK(tt__debug_metrics(&s));
  char *out;
  size_t len;
  ASSERT_OK(tt__sink_take(&s, &out, &len));
  ASSERT_EQ(strlen(out), len);
  return out;
}

/* groups.json for a query; the error when it fails (then *out is NULL). */
static int groups_text(const char *query, char **out) {
  tt__sink s;
  tt__sink_mem(&s);
  *out = NULL;
  int err = tt__debug_groups_json(&s, query);
  size_t len;
  char *text;
  ASSERT_OK(tt__sink_take(&s, &text, &len));
  if (err) {
    free(text);
    return err;
  }
  *out = text;
  return 0;
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT(fd >= 0);
  size_t n = strlen(text);
  while (n > 0) {
    ssize_t k = write(fd, text, n);
    ASSERT(k > 0);
    text += k;
    n -= (size_t)k;
  }
  close(fd);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  size_t got = fread(b, 1, (size_t)n, f);
  b[got] = '\0';
  fclose(f);
  return b;
}

static int64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- The known program ---------------------------------------------------------------------- */

/* 50 coroutines receive from one channel in bodies_f, 20 sleep in bodies_g, 3 receive from
 * channels only they hold in bodies_h (proven leaked), 4 wait for a mutex the test holds, 2 are
 * in tt_blocking calls and one spins, yielding. The figures the checks expect follow. */
#define N_F 50
#define N_G 20
#define N_H 3
#define N_MU 4
#define N_BLOCK 2

typedef struct prog {
  tt_wg done; /* every part but the leaked receivers, which never end */
  tt_chan *ch_f;
  tt_ctx *sleepers;
  tt_mutex mu;
  atomic_int release_blocking, in_blocking, stop_spin;
  tt_id h_ids[N_H];
} prog;

__attribute__((noinline)) void bodies_f(void *arg) {
  prog *p = arg;
  int v;
  bool ok;
  tt_chan_recv(p->ch_f, &v, &ok);
  tt_chan_release(p->ch_f);
  tt_wg_done(&p->done);
}

static atomic_int slept;

__attribute__((noinline)) void bodies_g(void *arg) {
  prog *p = arg;
  tt_sleep(3600 * TT_SEC); /* until the test cancels its context */
  atomic_fetch_add(&slept, 1);
  tt_wg_done(&p->done);
}

__attribute__((noinline)) void bodies_h(void *arg) {
  int v;
  bool ok;
  tt_chan_recv(arg, &v, &ok); /* nobody else holds the channel: returns only at shut-down */
  tt_chan_release(arg);
}

__attribute__((noinline)) void bodies_mutex(void *arg) {
  prog *p = arg;
  if (tt_mutex_lock(&p->mu) == 0)
    tt_mutex_unlock(&p->mu);
  tt_wg_done(&p->done);
}

static intptr_t blocking_wait(void *arg) {
  prog *p = arg;
  atomic_fetch_add(&p->in_blocking, 1);
  while (!atomic_load(&p->release_blocking)) {
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

__attribute__((noinline)) void bodies_block(void *arg) {
  prog *p = arg;
  intptr_t r;
  tt_blocking(blocking_wait, p, &r);
  tt_wg_done(&p->done);
}

__attribute__((noinline)) void bodies_spin(void *arg) {
  prog *p = arg;
  while (!atomic_load(&p->stop_spin))
    tt_yield();
  tt_wg_done(&p->done);
}

/* The spawners call tt_go_opt themselves, so that the creation site is theirs. */
__attribute__((noinline)) void bodies_spawn_f(prog *p) {
  tt_go_opts o = {.share = &p->ch_f, .nshare = 1};
  for (int i = 0; i < N_F; i++)
    ASSERT_OK(tt_go_opt(bodies_f, p, &o, NULL));
}

__attribute__((noinline)) void bodies_spawn_g(prog *p) {
  tt_go_opts o = {.ctx = p->sleepers};
  for (int i = 0; i < N_G; i++)
    ASSERT_OK(tt_go_opt(bodies_g, p, &o, NULL));
}

/* Starts the program and waits until every part of it is in place (spin: start the spinner). */
static void prog_start(prog *p, bool spin) {
  memset(p, 0, sizeof *p);
  p->ch_f = tt_chan_make(sizeof(int), 0);
  ASSERT(p->ch_f != NULL);
  ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &p->sleepers));
  tt_mutex_init(&p->mu);
  ASSERT_OK(tt_mutex_lock(&p->mu));
  tt_wg_init(&p->done);
  ASSERT_OK(tt_wg_add(&p->done, N_F + N_G + N_MU + N_BLOCK + (spin ? 1 : 0)));
  bodies_spawn_f(p);
  bodies_spawn_g(p);
  for (int i = 0; i < N_H; i++) {
    tt_chan *ch = tt_chan_make(sizeof(int), 0);
    ASSERT(ch != NULL);
    tt_go_opts o = {.share = &ch, .nshare = 1, .share_mode = TT_SHARE_MOVE};
    ASSERT_OK(tt_go_opt(bodies_h, ch, &o, &p->h_ids[i]));
  }
  for (int i = 0; i < N_MU; i++)
    ASSERT_OK(tt_go_opt(bodies_mutex, p, NULL, NULL));
  for (int i = 0; i < N_BLOCK; i++)
    ASSERT_OK(tt_go_opt(bodies_block, p, NULL, NULL));
  if (spin)
    ASSERT_OK(tt_go_opt(bodies_spin, p, NULL, NULL));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, N_F + N_H);
  tt_test_await_reason(TT_WAIT_SLEEP, N_G);
  tt_test_await_reason(TT_WAIT_MUTEX_LOCK, N_MU);
  tt_test_await_reason(TT_WAIT_BLOCKING_CALL, N_BLOCK);
  int64_t give_up = tt_now() + (int64_t)(60 * TT_SEC * tt_test_slow());
  while (atomic_load(&p->in_blocking) < N_BLOCK) {
    ASSERT(tt_now() < give_up);
    tt_sleep(100 * TT_USEC);
  }
}

/* The leak proof: exactly the three bodies_h receivers. */
static void prog_prove(prog *p) {
  ASSERT_EQ(tt_leak_check(NULL), N_H);
  for (int i = 0; i < N_H; i++)
    ASSERT_EQ(tt_leak_verdict_of(p->h_ids[i]), TT_VERDICT_LEAKED);
}

/* Ends everything but the leaked receivers, which the shut-down cancels. */
static void prog_stop(prog *p) {
  atomic_store(&p->stop_spin, 1);
  atomic_store(&p->release_blocking, 1);
  ASSERT_OK(tt_mutex_unlock(&p->mu));
  ASSERT_OK(tt_chan_close(p->ch_f));
  ASSERT_OK(tt_chan_release(p->ch_f));
  ASSERT_OK(tt_ctx_cancel(p->sleepers));
  tt_ctx_release(p->sleepers);
  /* A wait group, not a count: its wait orders their last touches of p before p goes away. */
  ASSERT_OK(tt_wg_wait(&p->done));
  ASSERT_OK(tt_wg_destroy(&p->done));
  ASSERT_OK(tt_mutex_destroy(&p->mu));
}

static void run_prog(int (*fn)(void *), void *arg) {
  tt_run_opts o = {.procs = 2};
  ASSERT_OK(tt_test_run_unchecked(fn, arg, &o,
                                  "the three receivers it proves leaked stay until the shut-down"));
}

/* ---- A strict reader of the Prometheus text format 0.0.4 ------------------------------------ */

typedef struct prom_sample {
  char *name;
  char *labels; /* canonical: the pairs as written (name="escaped value"), sorted, comma-joined */
  double value;
} prom_sample;

typedef struct prom {
  prom_sample *v;
  size_t n;
  char err[256];
} prom;

static bool prom_name_ok(const char *p, size_t n, bool metric) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
      return false;
  }
  return true;
}

static size_t prom_name_len(const char *p, bool metric) {
  size_t n = 0;
  while (p[n] && ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z') || p[n] == '_' ||
                  (metric && p[n] == ':') || (n > 0 && p[n] >= '0' && p[n] <= '9')))
    n++;
  return n;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool prom_fail(prom *out, int line, const char *why) {
  snprintf(out->err, sizeof out->err, "line %d: %s", line, why);
  return false;
}

static void prom_free(prom *p) {
  for (size_t i = 0; i < p->n; i++) {
    free(p->v[i].name);
    free(p->v[i].labels);
  }
  free(p->v);
  memset(p, 0, sizeof *p);
}

/* Parses text into *out (free with prom_free); false with out->err set when the text breaks a
 * rule: every family has HELP and TYPE before its first sample and its samples together (a
 * family never reopens), names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
 * and not __reserved, label values escape only \\ \" \n, a sample's labels are distinct, no series
 * repeats, counters end in _total, values are floats, the text ends with a newline and has no
 * blank lines (we write none). Histograms and summaries are refused: tether writes neither. */
static bool prom_parse(const char *text, prom *out) {
  memset(out, 0, sizeof *out);
  size_t cap = 0;
  char fam[256] = "", type[32] = "";
  bool help = false;
  char **closed = NULL;
  size_t nclosed = 0;
  int line = 0;
  size_t len = strlen(text);
  if (len == 0 || text[len - 1] != '\n')
    return prom_fail(out, 0, "the text does not end with a newline");
  for (const char *p = text; *p; line++) {
    const char *eol = strchr(p, '\n');
    size_t n = (size_t)(eol - p);
    char *l = strndup(p, n);
    p = eol + 1;
    bool ok = true;
    const char *why = NULL;
    if (n == 0) {
      why = "blank line";
    } else if (l[0] == '#') {
      bool is_help = strncmp(l, "# HELP ", 7) == 0, is_type = strncmp(l, "# TYPE ", 7) == 0;
      if (is_help || is_type) {
        const char *name = l + 7;
        size_t nn = prom_name_len(name, true);
        if (!prom_name_ok(name, nn, true) || name[nn] != ' ') {
          why = "bad name in HELP/TYPE";
        } else if (strlen(fam) != nn || strncmp(fam, name, nn) != 0) {
          /* A new family: the current one closes. */
          for (size_t i = 0; i < nclosed; i++)
            if (strlen(closed[i]) == nn && strncmp(closed[i], name, nn) == 0)
              why = "family reopened";
          if (fam[0]) {
            closed = realloc(closed, (nclosed + 1) * sizeof *closed);
            closed[nclosed++] = strdup(fam);
          }
          snprintf(fam, sizeof fam, "%.*s", (int)nn, name);
          type[0] = '\0';
          help = false;
        }
        const char *rest = name + nn + 1;
        if (why) {
        } else if (is_help) {
          if (help)
            why = "second HELP";
          for (const char *q = rest; !why && *q; q++)
            if (*q == '\\' && q[1] != '\\' && q[1] != 'n')
              why = "bad escape in HELP";
            else if (*q == '\\')
              q++;
          help = true;
        } else {
          if (type[0])
            why = "second TYPE";
          else if (strcmp(rest, "counter") != 0 && strcmp(rest, "gauge") != 0 &&
                   strcmp(rest, "untyped") != 0)
            why = "unknown or unexpected TYPE";
          else if (strcmp(rest, "counter") == 0 &&
                   (nn < 6 || strncmp(name + nn - 6, "_total", 6) != 0))
            why = "a counter's name does not end in _total";
          else
            snprintf(type, sizeof type, "%s", rest);
        }
      }
    } else {
      size_t nn = prom_name_len(l, true);
      if (!prom_name_ok(l, nn, true))
        why = "bad metric name";
      else if (strlen(fam) != nn || strncmp(fam, l, nn) != 0)
        why = "sample outside its family (or before its HELP and TYPE)";
      else if (!help || !type[0])
        why = "sample before HELP and TYPE";
      const char *q = l + nn;
      char *pairs[32];
      size_t np = 0;
      if (!why && *q == '{') {
        q++;
        while (!why && *q != '}') {
          size_t ln = prom_name_len(q, false);
          if (!prom_name_ok(q, ln, false) || strncmp(q, "__", 2) == 0 || q[ln] != '=' ||
              q[ln + 1] != '"') {
            why = "bad label name";
            break;
          }
          const char *v = q + ln + 2;
          while (*v && *v != '"') {
            if (*v == '\\') {
              if (v[1] != '\\' && v[1] != '"' && v[1] != 'n') {
                why = "bad escape in label value";
                break;
              }
              v++;
            }
            v++;
          }
          if (why || *v != '"') {
            why = why ? why : "unterminated label value";
            break;
          }
          pairs[np] = strndup(q, (size_t)(v + 1 - q));
          for (size_t i = 0; i < np; i++)
            if (strncmp(pairs[i], q, ln + 1) == 0)
              why = "repeated label";
          np++;
          q = v + 1;
          if (*q == ',' && q[1] != '}')
            q++;
          else if (*q != '}')
            why = "expected , or } after a label";
          if (np == 32)
            why = "too many labels";
        }
        if (!why)
          q++;
      }
      double value = 0;
      if (!why) {
        if (*q++ != ' ') {
          why = "expected a space before the value";
        } else {
          char *end;
          if (strncmp(q, "NaN", 3) == 0 || strncmp(q, "+Inf", 4) == 0 ||
              strncmp(q, "-Inf", 4) == 0) {
            value = q[0] == 'N' ? NAN : q[0] == '+' ? INFINITY : -INFINITY;
            end = (char *)q + (q[0] == 'N' ? 3 : 4);
          } else {
            value = strtod(q, &end);
            if (end == q || (*q != '-' && (*q < '0' || *q > '9')))
              why = "bad value";
          }
          if (!why && *end == ' ') {
            char *tend;
            strtoll(end + 1, &tend, 10);
            if (tend == end + 1 || *tend)
              why = "bad timestamp";
          } else if (!why && *end) {
            why = "junk after the value";
          }
        }
      }
      if (!why) {
        qsort(pairs, np, sizeof *pairs, cmp_str);
        size_t tl = 1;
        for (size_t i = 0; i < np; i++)
          tl += strlen(pairs[i]) + 1;
        char *canon = calloc(1, tl);
        for (size_t i = 0; i < np; i++) {
          if (i)
            strcat(canon, ",");
          strcat(canon, pairs[i]);
        }
        for (size_t i = 0; i < out->n; i++)
          if (strncmp(out->v[i].name, l, nn) == 0 && out->v[i].name[nn] == '\0' &&
              strcmp(out->v[i].labels, canon) == 0)
            why = "duplicate series";
        if (out->n == cap) {
          cap = cap ? cap * 2 : 64;
          out->v = realloc(out->v, cap * sizeof *out->v);
        }
        out->v[out->n++] = (prom_sample){strndup(l, nn), canon, value};
      }
      for (size_t i = 0; i < np; i++)
        free(pairs[i]);
    }
    if (why) {
      snprintf(out->err, sizeof out->err, "line %d: %s: %s", line + 1, why, l);
      ok = false;
    }
    free(l);
    if (!ok) {
      for (size_t i = 0; i < nclosed; i++)
        free(closed[i]);
      free(closed);
      char err[sizeof out->err];
      memcpy(err, out->err, sizeof err);
      prom_free(out);
      memcpy(out->err, err, sizeof err);
      return false;
    }
  }
  for (size_t i = 0; i < nclosed; i++)
    free(closed[i]);
  free(closed);
  return true;
}

/* The value of series name{labels} (labels canonical, "" for none); fails when absent. */
static double prom_get(const prom *p, const char *name, const char *labels) {
  for (size_t i = 0; i < p->n; i++)
    if (strcmp(p->v[i].name, name) == 0 && strcmp(p->v[i].labels, labels) == 0)
      return p->v[i].value;
  tt_test_fail(__FILE__, __LINE__, "no series %s{%s}", name, labels);
}

static bool prom_has(const prom *p, const char *name, const char *labels) {
  for (size_t i = 0; i < p->n; i++)
    if (strcmp(p->v[i].name, name) == 0 && strcmp(p->v[i].labels, labels) == 0)
      return true;
  return false;
}

static size_t prom_count(const prom *p, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < p->n; i++)
    n += strcmp(p->v[i].name, name) == 0;
  return n;
}

static prom parse_or_fail(const char *text) {
  prom p;
  if (!prom_parse(text, &p)) {
    tt_test_show(text);
    tt_test_fail(__FILE__, __LINE__, "invalid exposition: %s", p.err);
  }
  return p;
}

/* The reader must refuse what the format forbids, or the checks above prove nothing. */
TEST(debug_prom_reader_strict) {
  static const char *const bad[] = {
      "# HELP a_total x\n# TYPE a_total counter\na_total 1",      /* no final newline */
      "# TYPE a gauge\na 1\n",                                    /* no HELP */
      "# HELP a x\na 1\n",                                        /* no TYPE */
      "# HELP a x\n# TYPE a counter\na 1\n",                      /* counter, no _total */
      "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",                     /* bad name */
      "# HELP a x\n# TYPE a gauge\na{l=\"\\t\"} 1\n",             /* bad escape */
      "# HELP a x\n# TYPE a gauge\na{l=\"v\"} 1\na{l=\"v\"} 2\n", /* duplicate */
      "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n", /* split */
      "# HELP a x\n# TYPE a gauge\na{1l=\"v\"} 1\n",        /* bad label name */
      "# HELP a x\n# TYPE a gauge\na{l=\"v\",l=\"w\"} 1\n", /* repeated label */
      "# HELP a x\n# TYPE a gauge\na one\n",                /* bad value */
      "# HELP a x\n# TYPE a gauge\n\na 1\n",                /* blank line */
      "# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n",  /* second TYPE */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    prom p;
    if (prom_parse(bad[i], &p))
      tt_test_fail(__FILE__, __LINE__, "accepted bad input %zu:\n%s", i, bad[i]);
  }
  prom p = parse_or_fail("# HELP a_total x \\\\ y\n# TYPE a_total counter\na_total 3\n"
                         "# HELP b x\n# TYPE b gauge\nb{z=\"1\",a=\"q\\\"\\n\"} -2.5e3 17\n"
                         "b NaN\n");
  ASSERT_EQ(p.n, 3);
  ASSERT(prom_get(&p, "a_total", "") == 3);
  ASSERT(prom_get(&p, "b", "a=\"q\\\"\\n\",z=\"1\"") == -2500);
  ASSERT(isnan(prom_get(&p, "b", "")));
  prom_free(&p);
}

/* ---- /metrics ------------------------------------------------------------------------------- */

static void check_metrics(const prom *m, bool proven, int64_t live_now) {
  ASSERT(prom_get(m, "tether_up", "") == 1);
  ASSERT(prom_get(m, "tether_running", "") == 1);
  ASSERT(prom_get(m, "tether_build_info", "version=\"" TT_VERSION_STRING "\"") == 1);
  ASSERT(prom_get(m, "tether_coroutines_waiting", "reason=\"chan receive\"") == N_F + N_H);
  ASSERT(prom_get(m, "tether_coroutines_waiting", "reason=\"sleep\"") == N_G);
  ASSERT(prom_get(m, "tether_coroutines_waiting", "reason=\"sync.Mutex.Lock\"") == N_MU);
  ASSERT(prom_get(m, "tether_coroutines_waiting", "reason=\"blocking call\"") == N_BLOCK);
  ASSERT(prom_get(m, "tether_coroutines_waiting", "reason=\"select\"") == 0);
  /* One series per wait reason, none for "no reason". */
  ASSERT_EQ(prom_count(m, "tether_coroutines_waiting"), TT_WAIT_COUNT - 1);
  double waiting = 0;
  for (int r = 1; r < TT_WAIT_COUNT; r++) {
    char l[96];
    snprintf(l, sizeof l, "reason=\"%s\"", tt_wait_reason_string(r));
    waiting += prom_get(m, "tether_coroutines_waiting", l);
  }
  ASSERT(prom_get(m, "tether_coroutines", "state=\"waiting\"") == waiting);
  ASSERT(waiting == N_F + N_H + N_G + N_MU + N_BLOCK);
  double running = prom_get(m, "tether_coroutines", "state=\"running\"");
  double runnable = prom_get(m, "tether_coroutines", "state=\"runnable\"");
  ASSERT(running >= 1); /* the caller */
  double live = running + runnable + waiting;
  ASSERT(live == live_now); /* nothing spawns or exits meanwhile */
  ASSERT(prom_get(m, "tether_coroutines_created_total", "") >= live);
  ASSERT(prom_get(m, "tether_coroutines_created_total", "") -
             prom_get(m, "tether_coroutines_exited_total", "") ==
         live);
  ASSERT(prom_get(m, "tether_coroutines_peak", "") >= live);
  ASSERT(prom_get(m, "tether_coroutines_leaked", "") == (proven ? N_H : 0));
  ASSERT(prom_get(m, "tether_workers", "") == 2);
  static const char *const per_worker[] = {"tether_worker_runqueue",
                                           "tether_worker_switches_total",
                                           "tether_worker_parks_total",
                                           "tether_worker_steals_total",
                                           "tether_worker_sleeps_total",
                                           "tether_worker_polls_total",
                                           "tether_worker_poll_events_total",
                                           "tether_worker_io_waiters",
                                           "tether_timers"};
  for (size_t i = 0; i < sizeof per_worker / sizeof per_worker[0]; i++) {
    ASSERT_EQ(prom_count(m, per_worker[i]), 2);
    ASSERT(prom_has(m, per_worker[i], "worker=\"0\""));
    ASSERT(prom_has(m, per_worker[i], "worker=\"1\""));
  }
  /* Every parked coroutine parked on some worker, and ran there first. */
  double parks = prom_get(m, "tether_worker_parks_total", "worker=\"0\"") +
                 prom_get(m, "tether_worker_parks_total", "worker=\"1\"");
  ASSERT(parks >= waiting);
  ASSERT(prom_get(m, "tether_worker_switches_total", "worker=\"0\"") +
             prom_get(m, "tether_worker_switches_total", "worker=\"1\"") >=
         parks);
  /* The sleepers' deadlines are armed in the workers' heaps. */
  ASSERT(prom_get(m, "tether_timers", "worker=\"0\"") +
             prom_get(m, "tether_timers", "worker=\"1\"") >=
         N_G);
  tt_blocking_stats bs;
  ASSERT_OK(tt_blocking_stats_get(&bs));
  ASSERT(prom_get(m, "tether_blocking_threads_max", "") == bs.max);
  ASSERT(prom_get(m, "tether_blocking_threads_busy", "") >= N_BLOCK);
  ASSERT(prom_get(m, "tether_blocking_threads", "") >=
         prom_get(m, "tether_blocking_threads_busy", "") +
             prom_get(m, "tether_blocking_threads_idle", ""));
  ASSERT(prom_get(m, "tether_blocking_queued", "") == 0);
}

static int metrics_body(void *arg) {
  (void)arg;
  prog p;
  prog_start(&p, true);
  char *text = metrics_text();
  prom m = parse_or_fail(text);
  check_metrics(&m, false, tt_num_coroutines());
  prom_free(&m);
  free(text);
  /* After the proof, the verdicts in force are counted (and reading them proves nothing anew). */
  prog_prove(&p);
  text = metrics_text();
  m = parse_or_fail(text);
  check_metrics(&m, true, tt_num_coroutines());
  prom_free(&m);
  free(text);
  prog_stop(&p);
  ASSERT_ERR(tt__debug_metrics(NULL), TT_EINVAL);
  return 0;
}
TEST(debug_metrics_values) { run_prog(metrics_body, NULL); }

/* While the runtime is stopped only tether_up and tether_running (0) are written. */
TEST(debug_metrics_stopped) {
  char *text = metrics_text();
  prom m = parse_or_fail(text);
  ASSERT(prom_get(&m, "tether_up", "") == 1);
  ASSERT(prom_get(&m, "tether_running", "") == 0);
  ASSERT_EQ(prom_count(&m, "tether_coroutines"), 0);
  ASSERT_EQ(prom_count(&m, "tether_workers"), 0);
  prom_free(&m);
  free(text);
}

/* promtool check metrics, with its linter, reads the page from stdin: status 0, no complaint. */
/* Runs `promtool check metrics` on text: it must exit 0 and say nothing. */
static void promtool_check(const char *promtool, const char *text) {
  char path[128];
  snprintf(path, sizeof path, "/tmp/tt-metrics-%d.txt", (int)getpid());
  write_file(path, text);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "'%s' check metrics < '%s'", promtool, path);
  char *const argv[] = {"/bin/sh", "-c", cmd, NULL};
  char *out = NULL;
  int st = tt_test_spawn(argv, NULL, &out);
  unlink(path);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || out[0] != '\0') {
    tt_test_show(text);
    tt_test_fail(__FILE__, __LINE__, "promtool check metrics: status %d, output:\n%s", st, out);
  }
  free(out);
}

static int promtool_body(void *arg) {
  prog p;
  prog_start(&p, true);
  prog_prove(&p);
  char *text = metrics_text();
  promtool_check(arg, text);
  free(text);
  prog_stop(&p);
  return 0;
}

TEST(debug_metrics_promtool) {
  char *promtool = tt_test_client("promtool");
  if (promtool == NULL)
    return;
  run_prog(promtool_body, promtool);
  free(promtool);
}

/* ---- groups.json ---------------------------------------------------------------------------- */

static json parse_json_or_fail(const char *text) {
  json j;
  if (!json_parse(text, &j)) {
    tt_test_show(text);
    tt_test_fail(__FILE__, __LINE__, "invalid JSON (above)");
  }
  return j;
}

static int64_t jint(const json *o, const char *key) {
  const json *v = json_get(o, key);
  if (v == NULL || v->type != JSON_NUM)
    tt_test_fail(__FILE__, __LINE__, "no number \"%s\"", key);
  return (int64_t)v->num;
}

static const char *jstr_of(const json *o, const char *key) {
  const json *v = json_get(o, key);
  if (v == NULL || (v->type != JSON_STR && v->type != JSON_NULL))
    tt_test_fail(__FILE__, __LINE__, "no string or null \"%s\"", key);
  return v->type == JSON_STR ? v->str : NULL;
}

static const json *jgroups(const json *doc) {
  const json *g = json_get(doc, "groups");
  ASSERT(g != NULL && g->type == JSON_ARR);
  return g;
}

/* Whether group g has a visible frame in function func. */
static bool has_frame(const json *g, const char *func) {
  const json *fr = json_get(g, "frames");
  ASSERT(fr != NULL && fr->type == JSON_ARR);
  for (size_t i = 0; i < fr->n; i++)
    if (jstr_of(&fr->items[i], "func") && strcmp(jstr_of(&fr->items[i], "func"), func) == 0)
      return true;
  return false;
}

/* The only group with a frame in func; fails unless there is exactly one. */
static const json *group_with(const json *doc, const char *func) {
  const json *gs = jgroups(doc), *found = NULL;
  for (size_t i = 0; i < gs->n; i++)
    if (has_frame(&gs->items[i], func)) {
      if (found)
        tt_test_fail(__FILE__, __LINE__, "two groups in %s", func);
      found = &gs->items[i];
    }
  if (found == NULL)
    tt_test_fail(__FILE__, __LINE__, "no group in %s", func);
  return found;
}

/* groups.json for query, parsed. */
static json groups_doc(const char *query) {
  char *text;
  int err = groups_text(query, &text);
  if (err)
    tt_test_fail(__FILE__, __LINE__, "groups.json?%s: %s", query ? query : "", tt_strerror(err));
  json j = parse_json_or_fail(text);
  free(text);
  return j;
}

static void check_waiting_group(const json *g, int64_t count, const char *reason, int64_t leaked) {
  ASSERT_EQ(jint(g, "count"), count);
  ASSERT_STR_EQ(jstr_of(g, "state"), "waiting");
  ASSERT_STR_EQ(jstr_of(g, "reason"), reason);
  ASSERT_EQ(jint(g, "leaked"), leaked);
  int64_t lo = jint(g, "wait_min_ns"), hi = jint(g, "wait_max_ns");
  ASSERT_GE(lo, 0);
  ASSERT_LE(lo, hi);
  ASSERT_LT(hi, (int64_t)(600 * TT_SEC * tt_test_slow()));
  const json *ids = json_get(g, "ids");
  ASSERT(ids && ids->type == JSON_ARR);
  ASSERT_EQ(ids->n, count < 8 ? count : 8);
  for (size_t i = 1; i < ids->n; i++)
    ASSERT(ids->items[i - 1].num < ids->items[i].num);
  ASSERT_GE(jint(g, "depth"), 1);
}

static void check_groups(const prog *p) {
  json doc = groups_doc(NULL);
  int64_t total = jint(&doc, "total");
  ASSERT_EQ(total, tt_num_coroutines());
  ASSERT_EQ(jint(&doc, "leaked"), N_H);
  ASSERT_EQ(jint(&doc, "matched"), total);
  ASSERT_EQ(jint(&doc, "limit"), 500);
  ASSERT_GT(jint(&doc, "taken_ns"), 0);
  const json *gs = jgroups(&doc);
  ASSERT_EQ(jint(&doc, "groups_total"), gs->n);
  ASSERT_EQ(jint(&doc, "matched_groups"), gs->n);
  /* Largest first; the counts add up to every coroutine. */
  int64_t sum = 0;
  for (size_t i = 0; i < gs->n; i++) {
    sum += jint(&gs->items[i], "count");
    if (i)
      ASSERT_LE(jint(&gs->items[i], "count"), jint(&gs->items[i - 1], "count"));
  }
  ASSERT_EQ(sum, total);

  const json *f = group_with(&doc, "bodies_f");
  check_waiting_group(f, N_F, "chan receive", 0);
  ASSERT(f == &gs->items[0]);
  ASSERT_STR_EQ(jstr_of(&json_get(f, "frames")->items[0], "func"), "tt_chan_recv");
  ASSERT_CONTAINS(jstr_of(f, "creator"), "bodies_spawn_f");
  if (tt_test_have_dwarf()) {
    ASSERT_CONTAINS(jstr_of(f, "creator"), "test_debug_bodies.c:");
    const json *fr = &json_get(f, "frames")->items[1];
    ASSERT_CONTAINS(jstr_of(fr, "file"), "test_debug_bodies.c");
    ASSERT_GT(jint(fr, "line"), 0);
  }
  ASSERT(jstr_of(f, "name") == NULL);
  ASSERT_EQ(json_get(f, "labels")->n, 0);

  const json *g = group_with(&doc, "bodies_g");
  check_waiting_group(g, N_G, "sleep", 0);
  ASSERT(g == &gs->items[1]);
  ASSERT_CONTAINS(jstr_of(g, "creator"), "bodies_spawn_g");

  const json *h = group_with(&doc, "bodies_h");
  check_waiting_group(h, N_H, "chan receive", N_H);
  const json *ids = json_get(h, "ids");
  for (int i = 0; i < N_H; i++)
    ASSERT_EQ((int64_t)ids->items[i].num, p->h_ids[i]); /* spawned in order: ascending */

  check_waiting_group(group_with(&doc, "bodies_mutex"), N_MU, "sync.Mutex.Lock", 0);
  check_waiting_group(group_with(&doc, "bodies_block"), N_BLOCK, "blocking call", 0);
  /* The caller's own group: running, no wait range. */
  const json *self = group_with(&doc, "groups_body");
  ASSERT_STR_EQ(jstr_of(self, "state"), "running");
  ASSERT(jstr_of(self, "reason") == NULL);
  ASSERT_EQ(json_get(self, "wait_min_ns")->type, JSON_NULL);
  json_free(&doc);

  /* Filters. */
  doc = groups_doc("state=sleep");
  ASSERT_EQ(jgroups(&doc)->n, 1);
  ASSERT_EQ(jint(&doc, "matched"), N_G);
  group_with(&doc, "bodies_g");
  json_free(&doc);

  doc = groups_doc("state=leaked");
  ASSERT_EQ(jgroups(&doc)->n, 1);
  group_with(&doc, "bodies_h");
  json_free(&doc);

  doc = groups_doc("state=WAITING&limit=100");
  gs = jgroups(&doc);
  ASSERT_EQ(jint(&doc, "matched"), N_F + N_G + N_H + N_MU + N_BLOCK);
  for (size_t i = 0; i < gs->n; i++)
    ASSERT_STR_EQ(jstr_of(&gs->items[i], "state"), "waiting");
  json_free(&doc);

  doc = groups_doc("q=BODIES_H");
  ASSERT_EQ(jgroups(&doc)->n, 1);
  group_with(&doc, "bodies_h");
  json_free(&doc);

  /* The creation site is searched (the bodies_f group's frames do not name its spawner). */
  doc = groups_doc("q=bodies_spawn_f");
  ASSERT_EQ(jgroups(&doc)->n, 1);
  group_with(&doc, "bodies_f");
  json_free(&doc);

  /* Form encoding: '+' and %20 are spaces; the reason is searched. */
  static const char *const spaced[] = {"q=chan+receive", "q=chan%20receive", "q=chan%20r%65ceive"};
  for (size_t i = 0; i < 3; i++) {
    doc = groups_doc(spaced[i]);
    ASSERT_EQ(jgroups(&doc)->n, 2);
    ASSERT_EQ(jint(&doc, "matched"), N_F + N_H);
    json_free(&doc);
  }

  doc = groups_doc("state=sleep&q=bodies_f");
  ASSERT_EQ(jgroups(&doc)->n, 0);
  ASSERT_EQ(jint(&doc, "matched"), 0);
  json_free(&doc);

  /* limit keeps the largest groups; the totals still count them all. */
  doc = groups_doc("limit=2&unknown=1&state=");
  gs = jgroups(&doc);
  ASSERT_EQ(gs->n, 2);
  ASSERT_EQ(jint(&gs->items[0], "count"), N_F);
  ASSERT_EQ(jint(&gs->items[1], "count"), N_G);
  ASSERT_GT(jint(&doc, "matched_groups"), 2);
  ASSERT_EQ(jint(&doc, "limit"), 2);
  json_free(&doc);

  char *text;
  static const char *const bad[] = {"limit=0", "limit=abc", "limit=-1",
                                    "limit=",  "limit=2x",  "limit=100001"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ASSERT_ERR(groups_text(bad[i], &text), TT_EINVAL);
  ASSERT_ERR(tt__debug_groups_json(NULL, NULL), TT_EINVAL);
}

__attribute__((noinline)) int groups_body(void *arg) {
  (void)arg;
  prog p;
  prog_start(&p, false);
  prog_prove(&p);
  check_groups(&p);
  prog_stop(&p);
  return 0;
}
TEST(debug_groups_json) { run_prog(groups_body, NULL); }

TEST(debug_groups_json_stopped) {
  char *text;
  ASSERT_ERR(groups_text(NULL, &text), TT_ENOTRUNNING);
}

/* Odd names and labels: quotes, backslashes, control characters, invalid UTF-8, markup. */
static const char *const odd_names[] = {
    "quo\"te back\\slash",
    "ctl\x01\x1f\n\t\x7f end",
    "bad\xff utf8 \xc0\xaf \xed\xa0\x80 \xe2\x82",
    "good \xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x88",
    "</script><b>&amp;",
    "sep\xe2\x80\xa8",
};
/* What each reads as once decoded (invalid sequences become U+FFFD, one per byte). */
static const char *const odd_decoded[] = {
    "quo\"te back\\slash",
    "ctl\x01\x1f\n\t\x7f end",
    "bad\xef\xbf\xbd utf8 \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
    "\xef\xbf\xbd\xef\xbf\xbd",
    "good \xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x88",
    "</script><b>&amp;",
    "sep\xe2\x80\xa8",
};
#define N_ODD (sizeof odd_names / sizeof odd_names[0])

__attribute__((noinline)) void bodies_odd(void *arg) {
  int v;
  bool ok;
  tt_chan_recv(arg, &v, &ok);
  tt_chan_release(arg);
}

static int escaping_body(void *arg) {
  (void)arg;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_label labels[] = {{"k\"ey\\", "v\x02\xc0<al>"}, {"plain", "caf\xc3\xa9"}};
  for (size_t i = 0; i < N_ODD; i++) {
    tt_go_opts o = {.name = odd_names[i], .share = &ch, .nshare = 1};
    if (i == 0) {
      o.labels = labels;
      o.nlabels = 2;
    }
    ASSERT_OK(tt_go_opt(bodies_odd, ch, &o, NULL));
  }
  tt_test_await_reason(TT_WAIT_CHAN_RECV, (int64_t)N_ODD);
  char *text;
  ASSERT_OK(groups_text("q=bodies_odd", &text));
  /* Markup never appears raw, and the only bytes above 0x7e are valid UTF-8 (checked below). */
  ASSERT(strchr(text, '<') == NULL && strchr(text, '>') == NULL && strchr(text, '&') == NULL);
  ASSERT_CONTAINS(text, "\\u2028");
  json doc = parse_json_or_fail(text);
  const json *gs = jgroups(&doc);
  ASSERT_EQ(gs->n, N_ODD);
  for (size_t i = 0; i < N_ODD; i++) {
    const json *found = NULL;
    for (size_t j = 0; j < gs->n; j++) {
      const json *name = json_get(&gs->items[j], "name");
      if (name->type == JSON_STR && strcmp(name->str, odd_decoded[i]) == 0)
        found = &gs->items[j];
    }
    if (found == NULL) {
      tt_test_show(text);
      tt_test_fail(__FILE__, __LINE__, "no group named (decoded) #%zu", i);
    }
    ASSERT_EQ(jint(found, "count"), 1);
    const json *l = json_get(found, "labels");
    ASSERT_EQ(l->n, i == 0 ? 2 : 0);
    if (i == 0) {
      ASSERT_STR_EQ(l->keys[0], "k\"ey\\");
      ASSERT_STR_EQ(l->items[0].str, "v\x02\xef\xbf\xbd<al>");
      ASSERT_STR_EQ(l->keys[1], "plain");
      ASSERT_STR_EQ(l->items[1].str, "caf\xc3\xa9");
    }
  }
  json_free(&doc);
  free(text);
  /* Names and label values are searched. */
  json one = groups_doc("q=BACK%5cSLASH");
  ASSERT_EQ(jgroups(&one)->n, 1);
  json_free(&one);
  one = groups_doc("q=%3Cal%3E");
  ASSERT_EQ(jgroups(&one)->n, 1);
  json_free(&one);
  ASSERT_OK(tt_chan_close(ch));
  ASSERT_OK(tt_chan_release(ch));
  tt_test_await_alone();
  return 0;
}
TEST(debug_groups_json_escaping) { tt_test_run(escaping_body, NULL, 2); }

/* ---- The live page -------------------------------------------------------------------------- */

/* Self-contained: no external script, style, font or image; it fetches groups.json itself. */
TEST(debug_page_self_contained) {
  const char *h = tt__debug_page_html;
  ASSERT(strncmp(h, "<!DOCTYPE html>", 15) == 0);
  ASSERT_CONTAINS(h, "</html>\n");
  static const char *const external[] = {"http:",   "https:", "src=",  "href=",     "<link",
                                         "@import", "url(",   "//cdn", "@font-face"};
  for (size_t i = 0; i < sizeof external / sizeof external[0]; i++)
    if (strstr(h, external[i]))
      tt_test_fail(__FILE__, __LINE__, "the page refers to something outside it: %s", external[i]);
  ASSERT_CONTAINS(h, "fetch(");
  ASSERT_CONTAINS(h, "groups.json");
  ASSERT_CONTAINS(h, "PERIOD_MS = 2000");
  /* Every wait reason is offered by the state filter. */
  for (int r = 1; r < TT_WAIT_COUNT; r++) {
    char want[64];
    snprintf(want, sizeof want, "'%s',", tt_wait_reason_string(r));
    ASSERT_CONTAINS(h, want);
  }
  /* Data reach the document as text only. */
  ASSERT(strstr(h, "innerHTML") == NULL && strstr(h, "document.write") == NULL);
}

/* A tiny HTTP server for Chromium (fetch() needs http://): a thread with a blocking accept loop
 * serving dir/index.html at /debug/tether/ and dir/groups.json at /debug/tether/groups.json
 * (the query ignored), one request per connection. */
typedef struct static_server {
  int fd;
  int port;
  char dir[128];
  pthread_t thread;
  atomic_int stop, json_requests;
} static_server;

static void send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0)
      return;
    p += k;
    n -= (size_t)k;
  }
}

static void serve_one(static_server *s, int c) {
  char req[4096] = "";
  size_t n = 0;
  while (n < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
    ssize_t k = recv(c, req + n, sizeof req - 1 - n, 0);
    if (k <= 0)
      return;
    n += (size_t)k;
    req[n] = '\0';
  }
  char path[1024] = "";
  sscanf(req, "GET %1023s", path);
  char *q = strchr(path, '?');
  if (q)
    *q = '\0';
  const char *file = NULL, *type = NULL;
  if (strcmp(path, "/debug/tether/") == 0) {
    file = "index.html";
    type = "text/html; charset=utf-8";
  } else if (strcmp(path, "/debug/tether/groups.json") == 0) {
    file = "groups.json";
    type = "application/json";
    atomic_fetch_add(&s->json_requests, 1);
  }
  char full[256], head[256];
  char *body = NULL;
  if (file) {
    snprintf(full, sizeof full, "%s/%s", s->dir, file);
    body = read_file(full);
  }
  if (body == NULL) {
    static const char nf[] =
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    send_all(c, nf, sizeof nf - 1);
    return;
  }
  snprintf(head, sizeof head,
           "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: "
           "no-store\r\nConnection: close\r\n\r\n",
           type, strlen(body));
  send_all(c, head, strlen(head));
  send_all(c, body, strlen(body));
  free(body);
}

static void *server_main(void *arg) {
  static_server *s = arg;
  for (;;) {
    int c = accept(s->fd, NULL, NULL);
    if (atomic_load(&s->stop)) {
      if (c >= 0)
        close(c);
      return NULL;
    }
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      return NULL;
    }
    serve_one(s, c);
    close(c);
  }
}

static void server_start(static_server *s, const char *dir) {
  memset(s, 0, sizeof *s);
  snprintf(s->dir, sizeof s->dir, "%s", dir);
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(s->fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT_EQ(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
  ASSERT_EQ(listen(s->fd, 64), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(getsockname(s->fd, (struct sockaddr *)&a, &len), 0);
  s->port = ntohs(a.sin_port);
  ASSERT_EQ(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(static_server *s) {
  atomic_store(&s->stop, 1);
  shutdown(s->fd, SHUT_RDWR); /* wakes the blocked accept */
  pthread_join(s->thread, NULL);
  close(s->fd);
}

/* Loads url in headless Chromium (a throwaway profile in tmp) and returns the DOM it dumps after
 * 5 s of virtual time; fails when Chromium fails or runs longer than 60 s (then it is killed, with
 * the processes it started: they share its process group). */
static char *chromium_dom(const char *chromium, const char *tmp, const char *url) {
  char profile[256], log[256];
  snprintf(profile, sizeof profile, "--user-data-dir=%s/profile", tmp);
  snprintf(log, sizeof log, "%s/chromium.log", tmp);
  char *const argv[] = {(char *)chromium,
                        "--headless",
                        "--no-sandbox", /* root cannot use Chromium's sandbox */
                        "--disable-gpu",
                        "--no-first-run",
                        "--disable-extensions",
                        "--disable-background-networking",
                        profile,
                        "--virtual-time-budget=5000",
                        "--dump-dom",
                        (char *)url,
                        NULL};
  int pipefd[2];
  ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    dup2(pipefd[1], 1);
    int lf = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (lf >= 0)
      dup2(lf, 2);
    execv(chromium, argv);
    _exit(127);
  }
  setpgid(pid, pid); /* (also in the child: whichever runs first) */
  close(pipefd[1]);
  int64_t deadline = clock_ns() + 60 * (int64_t)1000000000;
  size_t n = 0, cap = 1 << 16;
  char *out = malloc(cap);
  bool timed_out = false;
  for (;;) {
    int64_t left = (deadline - clock_ns()) / 1000000;
    if (left <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd pfd = {pipefd[0], POLLIN, 0};
    int r = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      continue;
    if (n + 4096 > cap)
      out = realloc(out, cap *= 2);
    ssize_t k = read(pipefd[0], out + n, cap - n - 1);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    n += (size_t)k;
  }
  out[n] = '\0';
  close(pipefd[0]);
  int st = 0;
  while (!timed_out && waitpid(pid, &st, WNOHANG) == 0) {
    if (clock_ns() > deadline)
      timed_out = true;
    else
      usleep(10000);
  }
  kill(-pid, SIGKILL); /* whatever it left behind; the group is ours */
  if (timed_out) {
    waitpid(pid, &st, 0);
    char *l = read_file(log);
    tt_test_fail(__FILE__, __LINE__, "chromium ran longer than 60 s on %s; its log:\n%s", url,
                 l ? l : "");
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || strstr(out, "</html>") == NULL) {
    char *l = read_file(log);
    tt_test_fail(__FILE__, __LINE__, "chromium failed on %s (status %d); DOM:\n%s\nlog:\n%s", url,
                 st, out, l ? l : "");
  }
  return out;
}

/* The group elements of a dumped DOM: each from its opening tag to the next one's. */
static size_t dom_groups(const char *dom, char **out, size_t max) {
  static const char tag[] = "<div class=\"group";
  size_t n = 0;
  const char *p = strstr(dom, tag);
  while (p && n < max) {
    const char *next = strstr(p + 1, tag);
    const char *end = next ? next : p + strlen(p);
    out[n++] = strndup(p, (size_t)(end - p));
    p = next;
  }
  return n;
}

/* The only group element showing a frame in func (its function name as the element's text). */
static const char *dom_group_with(char **g, size_t n, const char *func, const char *dom) {
  char want[128];
  snprintf(want, sizeof want, ">%s<", func);
  const char *found = NULL;
  for (size_t i = 0; i < n; i++)
    if (strstr(g[i], want)) {
      if (found) {
        tt_test_show(dom);
        tt_test_fail(__FILE__, __LINE__, "two groups show %s", func);
      }
      found = g[i];
    }
  if (found == NULL) {
    tt_test_show(dom);
    tt_test_fail(__FILE__, __LINE__, "no group shows %s (DOM above)", func);
  }
  return found;
}

static void dom_free(char **g, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(g[i]);
}

/* The DOM checks against a server at base (".../debug/tether/", the page; groups.json beside it)
 * for the known program: only base changes between the test's own server and the real one. */
static void check_page_dom(const char *chromium, const char *tmp, const char *base) {
  char url[512];
  char *g[64];

  /* Unfiltered: the program's groups with their counts, the leaked one marked. */
  char *dom = chromium_dom(chromium, tmp, base);
  size_t n = dom_groups(dom, g, 64);
  if (n < 5) {
    tt_test_show(dom);
    tt_test_fail(__FILE__, __LINE__, "%zu groups shown (DOM above)", n);
  }
  const char *f = dom_group_with(g, n, "bodies_f", dom);
  ASSERT_CONTAINS(f, "data-count=\"50\"");
  ASSERT_CONTAINS(f, "data-reason=\"chan receive\"");
  ASSERT(strncmp(f, "<div class=\"group\"", 18) == 0);
  ASSERT(strstr(f, "LEAKED") == NULL);
  ASSERT_CONTAINS(f, "created by ");
  ASSERT_CONTAINS(f, "bodies_spawn_f");
  ASSERT_CONTAINS(f, "blocked ");
  ASSERT_CONTAINS(f, "<details>"); /* the full stack, folded */
  const char *gs = dom_group_with(g, n, "bodies_g", dom);
  ASSERT_CONTAINS(gs, "data-count=\"20\"");
  ASSERT_CONTAINS(gs, "data-reason=\"sleep\"");
  const char *h = dom_group_with(g, n, "bodies_h", dom);
  ASSERT(strncmp(h, "<div class=\"group leaked\"", 25) == 0);
  ASSERT_CONTAINS(h, "data-count=\"3\"");
  ASSERT_CONTAINS(h, "<span class=\"badge\">LEAKED</span>");
  /* Exactly one leaked group. */
  size_t leaked = 0;
  for (size_t i = 0; i < n; i++)
    leaked += strncmp(g[i], "<div class=\"group leaked\"", 25) == 0;
  ASSERT_EQ(leaked, 1);
  ASSERT_CONTAINS(dom, "3 leaked");
  ASSERT_CONTAINS(dom, "updated ");
  dom_free(g, n);
  free(dom);

  /* The page's own query pre-sets the filters. */
  snprintf(url, sizeof url, "%s?state=sleep", base);
  dom = chromium_dom(chromium, tmp, url);
  n = dom_groups(dom, g, 64);
  if (n != 1) {
    tt_test_show(dom);
    tt_test_fail(__FILE__, __LINE__, "state=sleep shows %zu groups", n);
  }
  ASSERT_CONTAINS(g[0], ">bodies_g<");
  dom_free(g, n);
  free(dom);

  snprintf(url, sizeof url, "%s?q=bodies_h", base);
  dom = chromium_dom(chromium, tmp, url);
  n = dom_groups(dom, g, 64);
  ASSERT_EQ(n, 1);
  ASSERT(strncmp(g[0], "<div class=\"group leaked\"", 25) == 0);
  dom_free(g, n);
  free(dom);

  snprintf(url, sizeof url, "%s?state=waiting&q=chan+receive", base);
  dom = chromium_dom(chromium, tmp, url);
  n = dom_groups(dom, g, 64);
  ASSERT_EQ(n, 2);
  dom_group_with(g, n, "bodies_f", dom);
  dom_group_with(g, n, "bodies_h", dom);
  dom_free(g, n);
  free(dom);
}

typedef struct dom_job {
  const char *chromium, *tmp, *base;
  static_server *server;
} dom_job;

static intptr_t dom_check_job(void *arg) {
  dom_job *j = arg;
  check_page_dom(j->chromium, j->tmp, j->base);
  return 0;
}

static int page_body(void *arg) {
  const char *chromium = arg;
  prog p;
  prog_start(&p, false);
  prog_prove(&p);
  char tmp[] = "/tmp/tt-page-XXXXXX";
  ASSERT(mkdtemp(tmp) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/index.html", tmp);
  write_file(path, tt__debug_page_html);
  char *json;
  ASSERT_OK(groups_text(NULL, &json));
  snprintf(path, sizeof path, "%s/groups.json", tmp);
  write_file(path, json);
  free(json);
  static_server srv;
  server_start(&srv, tmp);
  char base[128];
  snprintf(base, sizeof base, "http://127.0.0.1:%d/debug/tether/", srv.port);
  /* Chromium runs for seconds: on a tt_blocking thread, not on a worker. */
  dom_job job = {chromium, tmp, base, &srv};
  intptr_t r;
  ASSERT_OK(tt_blocking(dom_check_job, &job, &r));
  /* It refreshed: 4 loads of 5 s of virtual time, a fetch at once and every 2 s. */
  ASSERT_GE(atomic_load(&srv.json_requests), 4 * 2);
  server_stop(&srv);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  ASSERT_EQ(system(cmd), 0);
  prog_stop(&p);
  return 0;
}

TEST(debug_page_chromium) {
  char *chromium = tt_test_client("chromium");
  if (chromium == NULL)
    return;
  run_prog(page_body, chromium);
  free(chromium);
}

/* ---- The same checks against the real endpoint (tt_debug_serve) ----------------------------- */

/* GET path from the debug endpoint with tether's own sockets (HTTP/1.0: the body comes raw, not
 * chunked). Returns the body (malloc'd) and the status in *status. */
static char *endpoint_get(const char *path, int *status) {
  char addr[128];
  ASSERT_OK(tt_debug_addr(addr, sizeof addr));
  tt_conn *c;
  ASSERT_OK(tt_dial("tcp", addr, &c));
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr);
  ASSERT_OK(tt_conn_write_all(c, req, (size_t)n, NULL));
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 1 >= cap)
      buf = realloc(buf, cap *= 2);
    ssize_t k = tt_conn_read_dl(c, buf + len, cap - len - 1,
                                tt_now() + (int64_t)(30 * TT_SEC * tt_test_slow()));
    ASSERT_GE(k, 0);
    if (k == 0)
      break;
    len += (size_t)k;
  }
  buf[len] = '\0';
  ASSERT_OK(tt_conn_close(c));
  ASSERT(sscanf(buf, "HTTP/1.%*d %d", status) == 1);
  char *body = strstr(buf, "\r\n\r\n");
  ASSERT(body != NULL);
  char *out = strdup(body + 4);
  free(buf);
  return out;
}

static int live_promtool_body(void *arg) {
  prog p;
  prog_start(&p, true);
  prog_prove(&p);
  tt_debug_opts o = {.addr = "127.0.0.1:0"};
  ASSERT_OK(tt_debug_serve_opts(&o));
  int status;
  char *text = endpoint_get("/metrics", &status);
  ASSERT_EQ(status, 200);
  prom m = parse_or_fail(text);
  ASSERT(prom_get(&m, "tether_coroutines_leaked", "") == N_H);
  prom_free(&m);
  promtool_check(arg, text);
  free(text);
  ASSERT_OK(tt_debug_stop());
  prog_stop(&p);
  return 0;
}

TEST(debug_metrics_promtool_live) {
  char *promtool = tt_test_client("promtool");
  if (promtool == NULL)
    return;
  run_prog(live_promtool_body, promtool);
  free(promtool);
}

static int live_page_body(void *arg) {
  const char *chromium = arg;
  prog p;
  prog_start(&p, false);
  prog_prove(&p);
  tt_debug_opts o = {.addr = "127.0.0.1:0"};
  ASSERT_OK(tt_debug_serve_opts(&o));
  char addr[128], base[192];
  ASSERT_OK(tt_debug_addr(addr, sizeof addr));
  snprintf(base, sizeof base, "http://%s/debug/tether/", addr);
  char tmp[] = "/tmp/tt-page-live-XXXXXX";
  ASSERT(mkdtemp(tmp) != NULL);
  /* Chromium runs for seconds: on a tt_blocking thread, not on a worker. */
  dom_job job = {chromium, tmp, base, NULL};
  intptr_t r;
  ASSERT_OK(tt_blocking(dom_check_job, &job, &r));
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  ASSERT_EQ(system(cmd), 0);
  ASSERT_OK(tt_debug_stop());
  prog_stop(&p);
  return 0;
}

/* The live page served by the real endpoint, in headless Chromium: the groups, the leaked one
 * marked, the filters. */
TEST(debug_page_chromium_live) {
  char *chromium = tt_test_client("chromium");
  if (chromium == NULL)
    return;
  run_prog(live_page_body, chromium);
  free(chromium);
}
