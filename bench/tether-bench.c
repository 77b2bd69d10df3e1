/* SPDX-License-Identifier: MIT */
/* tether-bench: the C side of `make bench`; each workload has a twin in bench/go/main.go with the
 * same program shape and the same output, one `name value unit` line per result.
 *
 * Usage: tether-bench WORKLOAD [COUNT]
 *
 * Rules every workload follows, so that the comparison with Go is fair (DESIGN.md section 7):
 *   - the runtime runs with its defaults (tt_run(fn, arg, NULL): all CPUs), as Go runs with
 *     GOMAXPROCS = all CPUs;
 *   - cold: nothing is pre-warmed (no stacks or descriptors spawned and discarded first);
 *   - RSS is read from before the first spawn, and time from before the first spawn;
 *   - the run ends clean: every coroutine it started has finished when tt_run returns.
 * Adding a workload: a function here, a row in `workloads`, the twin in bench/go/main.go and
 * its name in WORKLOADS in scripts/bench. */
#include <tether.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void report(const char *name, double value, const char *unit) {
  printf("%s %.1f %s\n", name, value, unit);
  fflush(stdout);
}

/* The resident set size in bytes, from /proc/self/statm (resident pages * page size), as the Go
 * twin reads it. Plain open/read: no stdio buffer is allocated between the two readings. */
static long long rss_bytes(void) {
  char buf[256];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "tether-bench: /proc/self/statm: %s\n", strerror(errno));
    exit(1);
  }
  ssize_t len = read(fd, buf, sizeof buf - 1);
  close(fd);
  long long size, resident;
  if (len <= 0 || (buf[len] = '\0', sscanf(buf, "%lld %lld", &size, &resident) != 2)) {
    fprintf(stderr, "tether-bench: /proc/self/statm: cannot parse\n");
    exit(1);
  }
  return resident * sysconf(_SC_PAGESIZE);
}

static int fail(const char *what, int err) {
  fprintf(stderr, "tether-bench: %s: %s (%s)\n", what, tt_strerror(err),
          tt_err_name(err) ? tt_err_name(err) : "?");
  return err;
}

/* ---- spawn: n coroutines that only signal a wait group --------------------------------------- */

static void spawn_fn(void *arg) { tt_wg_done(arg); }

static int bench_spawn(long n) {
  tt_wg wg = TT_WG_INIT;
  int err;

  tt_wg_add(&wg, n);
  int64_t t0 = tt_now();
  for (long i = 0; i < n; i++) {
    if ((err = tt_go(spawn_fn, &wg)) < 0) {
      tt_wg_add(&wg, -(n - i)); /* the ones never spawned; then wait for the rest */
      tt_wg_wait(&wg);
      return fail("tt_go", err);
    }
  }
  if ((err = tt_wg_wait(&wg)) < 0)
    return fail("tt_wg_wait", err);
  int64_t t1 = tt_now();
  report("spawn", (double)(t1 - t0) / (double)n, "ns/op");
  return 0;
}

/* ---- parked: n coroutines blocked forever on a wait group that never reaches zero ------------ */

struct parked {
  tt_wg started;  /* each coroutine is done with it just before it parks */
  tt_wg never;    /* held at 1 until the measurement is over: what they park on */
  tt_wg finished; /* each coroutine is done with it once released */
};

static void parked_fn(void *arg) {
  struct parked *p = arg;
  tt_wg_done(&p->started);
  tt_wg_wait(&p->never);
  tt_wg_done(&p->finished);
}

static int bench_parked(long n) {
  struct parked p = {TT_WG_INIT, TT_WG_INIT, TT_WG_INIT};
  int err = 0;

  tt_wg_add(&p.never, 1);
  tt_wg_add(&p.started, n);
  tt_wg_add(&p.finished, n);
  long long before = rss_bytes();
  int64_t t0 = tt_now();
  for (long i = 0; i < n; i++) {
    if ((err = tt_go(parked_fn, &p)) < 0) {
      fprintf(stderr, "tether-bench: tt_go failed after %ld coroutines\n", i);
      tt_wg_add(&p.started, -(n - i));
      tt_wg_add(&p.finished, -(n - i));
      break;
    }
  }
  int werr = tt_wg_wait(&p.started);
  int64_t t1 = tt_now();
  long long after = rss_bytes();
  tt_wg_done(&p.never);
  tt_wg_wait(&p.finished);
  if (err < 0)
    return fail("tt_go", err);
  if (werr < 0)
    return fail("tt_wg_wait", werr);
  report("parked", (double)(after - before) / (double)n, "bytes/coroutine");
  report("parked_time", (double)(t1 - t0) / (double)n, "ns/op");
  return 0;
}

/* ---- driver ---------------------------------------------------------------------------------- */

static const struct workload {
  const char *name;
  long count; /* the default COUNT */
  int (*run)(long n);
} workloads[] = {
    {"spawn", 1000000, bench_spawn},
    {"parked", 1000000, bench_parked},
};

struct job {
  const struct workload *w;
  long n;
};

/* Coroutine 1: the workload runs here, as the Go twin's runs in main. */
static int run_job(void *arg) {
  struct job *job = arg;
  return job->w->run(job->n);
}

static int usage(void) {
  fprintf(stderr, "usage: tether-bench WORKLOAD [COUNT]\nworkloads:");
  for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
    fprintf(stderr, " %s", workloads[i].name);
  fprintf(stderr, "\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3)
    return usage();
  struct job job = {NULL, 0};
  for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
    if (strcmp(argv[1], workloads[i].name) == 0)
      job.w = &workloads[i];
  if (job.w == NULL) {
    fprintf(stderr, "tether-bench: unknown workload \"%s\"\n", argv[1]);
    return usage();
  }
  job.n = job.w->count;
  if (argc == 3) {
    char *end;
    errno = 0;
    job.n = strtol(argv[2], &end, 10);
    if (errno != 0 || end == argv[2] || *end != '\0' || job.n <= 0) {
      fprintf(stderr, "tether-bench: bad COUNT \"%s\"\n", argv[2]);
      return 2;
    }
  }
  int err = tt_run(run_job, &job, NULL);
  if (err < 0) {
    fprintf(stderr, "tether-bench: %s: %s\n", job.w->name, tt_strerror(err));
    return 1;
  }
  return 0;
}
