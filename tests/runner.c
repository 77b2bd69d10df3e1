/* SPDX-License-Identifier: MIT */
/* The test runner: a list of tests registered by TEST(), run one per process. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/diag/diag_int.h"
#include "test.h"

extern char **environ;

#define MAX_TESTS 1024

static struct {
  const char *name;
  tt_test_fn fn;
  const char *file;
} tests[MAX_TESTS];
static int ntests;

void tt_test_register(const char *name, tt_test_fn fn, const char *file) {
  if (ntests == MAX_TESTS) {
    fprintf(stderr, "too many tests\n");
    abort();
  }
  tests[ntests].name = name;
  tests[ntests].fn = fn;
  tests[ntests].file = file;
  ntests++;
}

void tt_test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  abort();
}

static double env_double(const char *name, double dflt) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0')
    return dflt;
  char *end;
  double v = strtod(s, &end);
  if (*end != '\0' || v <= 0) {
    fprintf(stderr, "bad %s=%s\n", name, s);
    abort();
  }
  return v;
}

double tt_test_scale(void) { return env_double("TT_TEST_SCALE", 1.0); }
double tt_test_slow(void) { return env_double("TT_TEST_SLOW", 1.0); }

int64_t tt_test_scaled(int64_t n, int64_t lo) {
  int64_t v = (int64_t)((double)n * tt_test_scale());
  return v < lo ? lo : v;
}

static const char *current_test = "(no test)";

const char *tt_test_name(void) { return current_test; }

struct run_arg {
  int (*fn)(void *);
  void *arg;
};

/* Coroutine 1 of a checked run: the test's main function, then the leak check. */
static int checked_main(void *p) {
  struct run_arg *ra = p;
  int r = ra->fn(ra->arg);
  tt_leak_opts o = {.timeout = TT_TEST_LEAK_TIMEOUT, .name = current_test, .report_fd = -1};
  char *report = NULL;
  int err = tt_leak_verify_none(&o, &report);
  if (err == TT_ELEAKED)
    tt_test_fail(__FILE__, __LINE__, "the test left coroutines behind:\n%s", report);
  if (err != 0)
    tt_test_fail(__FILE__, __LINE__, "tt_leak_verify_none returned %d (%s)", err, tt_strerror(err));
  return r;
}

int tt_test_run_opt(int (*fn)(void *), void *arg, const tt_run_opts *opts) {
  struct run_arg ra = {fn, arg};
  return tt_run(fn ? checked_main : NULL, &ra, opts);
}

int tt_test_run_unchecked(int (*fn)(void *), void *arg, const tt_run_opts *opts,
                          const char *reason) {
  if (reason == NULL || reason[0] == '\0')
    tt_test_fail(__FILE__, __LINE__, "tt_test_run_unchecked needs a reason");
  printf("%s: leak check off: %s\n", current_test, reason);
  return tt_run(fn, arg, opts);
}

void tt_test_run(int (*fn)(void *), void *arg, int procs) {
  tt_run_opts o = {0};
  o.procs = procs;
  int r = tt_test_run_opt(fn, arg, &o);
  if (r != 0)
    tt_test_fail(__FILE__, __LINE__, "tt_run returned %d (%s)", r, tt_strerror(r));
}

int tt_test_spawn(char *const argv[], char *const env[], char **out) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0)
    abort();
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  /* The child's environment: ours, with env's variables added or replacing ours. */
  size_t n = 0, m = 0, j = 0;
  while (environ[n])
    n++;
  while (env && env[m])
    m++;
  char **envp = calloc(n + m + 1, sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    bool replaced = false;
    for (size_t e = 0; e < m && !replaced; e++) {
      const char *eq = strchr(env[e], '=');
      size_t len = eq ? (size_t)(eq - env[e]) + 1 : strlen(env[e]);
      replaced = strncmp(environ[i], env[e], len) == 0;
    }
    if (!replaced)
      envp[j++] = environ[i];
  }
  for (size_t i = 0; i < m; i++)
    envp[j++] = env[i];
  /* Under an emulator (qemu-user without binfmt: the aarch64 run), the kernel cannot exec the
   * child itself: TT_TEST_EMULATOR ("qemu-aarch64 -L /usr/aarch64-linux-gnu") goes in front. */
  char *emu = getenv("TT_TEST_EMULATOR");
  char *emu_copy = NULL, *full[64];
  size_t k = 0;
  if (emu && *emu) {
    emu_copy = strdup(emu);
    for (char *save = NULL, *tok = strtok_r(emu_copy, " ", &save); tok && k < 32;
         tok = strtok_r(NULL, " ", &save))
      full[k++] = tok;
  }
  for (size_t i = 0; argv[i] && k < 63; i++)
    full[k++] = argv[i];
  full[k] = NULL;
  pid_t pid;
  int rc = posix_spawnp(&pid, full[0], &fa, NULL, full, envp);
  free(emu_copy);
  posix_spawn_file_actions_destroy(&fa);
  free(envp);
  close(pipefd[1]);
  if (rc != 0) {
    fprintf(stderr, "posix_spawn %s: %s\n", argv[0], strerror(rc));
    abort();
  }
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 1024 > cap)
      buf = realloc(buf, cap *= 2);
    ssize_t k = read(pipefd[0], buf + len, cap - len - 1);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    len += (size_t)k;
  }
  buf[len] = '\0';
  close(pipefd[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (out)
    *out = buf;
  else
    free(buf);
  return status;
}

/* The absolute path of prog on PATH, or NULL. */
static char *which(const char *prog) {
  const char *path = getenv("PATH");
  if (path == NULL)
    return NULL;
  char *copy = strdup(path), *save = NULL;
  for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    char *full = malloc(strlen(d) + strlen(prog) + 2);
    sprintf(full, "%s/%s", d, prog);
    if (access(full, X_OK) == 0) {
      free(copy);
      return full;
    }
    free(full);
  }
  free(copy);
  return NULL;
}

void tt_test_show(const char *text) {

  fflush(stdout);
  size_t n = strlen(text);
  while (n > 0) {
    ssize_t k = write(1, text, n);
    if (k <= 0)
      break;
    text += k;
    n -= (size_t)k;
  }
}

char *tt_test_client(const char *prog) {
  if (getenv("TT_TEST_EMULATOR")) {
    printf("skipped: %s is not run under the emulator\n", prog);
    return NULL;
  }
  char *p = which(prog);
  if (p == NULL && getenv("TT_TEST_NO_CLIENTS") == NULL)
    tt_test_fail(__FILE__, __LINE__,
                 "%s is not on PATH (scripts/install-deps installs it; TT_TEST_NO_CLIENTS=1 "
                 "skips the real-client checks)",
                 prog);
  if (p == NULL)
    printf("skipped: %s is not on PATH (TT_TEST_NO_CLIENTS set)\n", prog);
  return p;
}

const char *tt_test_bindir(void) {
  static char dir[4096];
  if (dir[0] == '\0') {
    ssize_t k = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (k <= 0)
      abort();
    dir[k] = '\0';
    char *slash = strrchr(dir, '/');
    *slash = '\0';
  }
  return dir;
}

int tt_test_proc_count(const char *what) {
  char path[256];
  snprintf(path, sizeof path, "/proc/self/%s", what);
  if (strcmp(what, "maps") == 0) {
    FILE *f = fopen(path, "r");
    if (!f)
      abort();
    int c, lines = 0;
    while ((c = fgetc(f)) != EOF)
      lines += c == '\n';
    fclose(f);
    return lines;
  }
  DIR *d = opendir(path);
  if (!d)
    abort();
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    count += e->d_name[0] != '.';
  closedir(d);
  return count - (strcmp(what, "fd") == 0); /* the directory's own descriptor */
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (int i = 0; i < ntests; i++)
      printf("%s\n", tests[i].name);
    return 0;
  }
  if (argc != 2) {
    fprintf(stderr, "usage: %s --list | TEST\n", argv[0]);
    return 2;
  }
  for (int i = 0; i < ntests; i++) {
    if (strcmp(tests[i].name, argv[1]) == 0) {
      current_test = tests[i].name;
      tests[i].fn();
      if (tt_running()) {
        fprintf(stderr, "%s: the runtime is still running at the end of the test\n", argv[1]);
        return 1;
      }
      printf("ok %s\n", argv[1]);
      return 0;
    }
  }
  fprintf(stderr, "no test named %s\n", argv[1]);
  return 2;
}

static int64_t await_deadline(void) { return tt_now() + (int64_t)(60 * tt_test_slow()) * TT_SEC; }

void tt_test_await_reason(int reason, int64_t n) {
  int64_t give_up = await_deadline();
  for (;;) {
    tt_counts c;
    ASSERT_OK(tt_counts_get(&c));
    if (c.by_reason[reason] >= n)
      return;
    if (tt_now() > give_up)
      tt_test_fail(__FILE__, __LINE__, "%" PRId64 " of %" PRId64 " coroutines wait for \"%s\"",
                   c.by_reason[reason], n, tt_wait_reason_string(reason));
    tt_sleep(50 * TT_USEC);
  }
}

void tt_test_await_alone(void) {
  int64_t give_up = await_deadline();
  while (tt_num_coroutines() > 1) {
    if (tt_now() > give_up)
      tt_test_fail(__FILE__, __LINE__, "%" PRId64 " coroutines still live", tt_num_coroutines());
    tt_sleep(50 * TT_USEC);
  }
}

bool tt_test_have_dwarf(void) {
  tt__sym_stats st;
  tt__symbolize_stats(&st);
  return st.dwarf;
}
