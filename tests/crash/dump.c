/* SPDX-License-Identifier: MIT */
/* Programs that crash, or get SIGQUIT, with coroutines parked: test_dump_crash.c reads what they
 * print. The mode is argv[1]. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <tether.h>

__attribute__((noreturn)) void
tt__fatal(const char *msg); /* the runtime's own fatal error (internal) */

static const char *mode;
static tt_chan *never;
static volatile int sink;

__attribute__((noinline)) static void parked(void *arg) {
  (void)arg;
  int v;
  bool ok;
  tt_chan_recv(never, &v, &ok);
  sink += v;
}

/* The crashes are the point: sanitizers must not stop them first. */
#define CRASHES __attribute__((noinline, no_sanitize("undefined", "address")))

CRASHES static void crash_deref(int *volatile p) { sink += *p; }

CRASHES static void crash_now(void) {
  if (strcmp(mode, "segv") == 0 || strcmp(mode, "chain") == 0) {
    crash_deref(NULL);
  } else if (strcmp(mode, "abort") == 0) {
    abort();
  } else if (strcmp(mode, "fpe") == 0) {
    volatile int num = 7, zero = 0;
    sink = num / zero;
  } else if (strcmp(mode, "ill") == 0) {
#if defined(__x86_64__)
    __asm__ volatile("ud2");
#else
    __asm__ volatile("udf #0");
#endif
  } else if (strcmp(mode, "trap") == 0) {
    __builtin_trap(); /* SIGILL on x86_64 (ud2), SIGTRAP on aarch64 (brk) */
  } else if (strcmp(mode, "bus") == 0) {
    /* A page of a file past its end. */
    FILE *f = tmpfile();
    char *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fileno(f), 0);
    sink += p[0];
  } else if (strcmp(mode, "fatal") == 0) {
    tt__fatal("something impossible happened");
  }
  sink++;
}

__attribute__((noinline)) static void crasher(void *arg) {
  (void)arg;
  crash_now();
  sink++;
}

static void own_handler(int sig) {
  (void)sig;
  static const char msg[] = "the program's own handler ran\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

static int body(void *arg) {
  (void)arg;
  never = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.name = "parked-one", .share = &never, .nshare = 1};
  tt_go_opt(parked, NULL, &o, NULL);
  tt_sleep(20 * TT_MSEC);
  if (strncmp(mode, "quit", 4) == 0) {
    kill(getpid(), SIGQUIT);
    /* The dump thread dumps meanwhile and, with "quit", ends the process long before this. */
    tt_sleep(strcmp(mode, "quit") == 0 ? 30 * TT_SEC : 500 * TT_MSEC);
    printf("went on after SIGQUIT\n");
    fflush(stdout);
    return 0;
  }
  tt_go(crasher, NULL);
  tt_sleep(10 * TT_SEC);
  printf("survived\n");
  return 0;
}

int main(int argc, char **argv) {
  mode = argc > 1 ? argv[1] : "segv";
  setvbuf(stdout, NULL, _IONBF, 0);
  if (strcmp(mode, "chain") == 0)
    signal(SIGSEGV, own_handler);
  tt_run_opts o = {.procs = 2};
  return tt_run(body, NULL, &o);
}
