/* SPDX-License-Identifier: MIT */
/* Blocking calls off the scheduler (docs/BLOCKING.md): a file read and a name lookup run on the
 * blocking pool while a ticker coroutine keeps running. Built with -Werror by `make test` and run
 * by the examples test. */
#include <tether.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Reading a file: the caller waits, so arguments may live on its stack ----------------- */

struct file_read {
  const char *path;
  size_t bytes;
};

/* Runs on a pool thread: plain POSIX I/O, which may block for as long as the disk likes. */
static intptr_t read_all(void *arg) {
  struct file_read *f = arg;
  int fd = open(f->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  char buf[1 << 14];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    f->bytes += (size_t)n;
  int err = n < 0 ? -errno : 0;
  close(fd);
  return err;
}

/* ---- A lookup with a deadline: the request goes to whoever finishes last ------------------ */

struct lookup {
  char host[256];
  struct addrinfo *res;
};

static intptr_t do_lookup(void *arg) {
  struct lookup *l = arg;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  return getaddrinfo(l->host, "80", &hints, &l->res);
}

/* The caller gave up (deadline, cancellation): free what the lookup made, once it is over. */
static void lookup_abandoned(void *arg, int ran, intptr_t result) {
  struct lookup *l = arg;
  if (ran && result == 0)
    freeaddrinfo(l->res);
  free(l);
}

/* The number of addresses of host, or a TT_E* code (TT_ETIMEDOUT after timeout ns), or
 * TT_EAGAIN when the name does not resolve. */
static int resolve(const char *host, int64_t timeout) {
  struct lookup *l = calloc(1, sizeof *l);
  if (l == NULL)
    return TT_ENOMEM;
  snprintf(l->host, sizeof l->host, "%s", host);
  tt_blocking_opts o = {.deadline = tt_now() + timeout, .abandoned = lookup_abandoned};
  intptr_t gai;
  int err = tt_blocking_opt(do_lookup, l, &o, &gai);
  if (err != 0)
    return err; /* l belongs to lookup_abandoned now: never touch it again */
  int n = 0;
  if (gai == 0) {
    for (struct addrinfo *a = l->res; a; a = a->ai_next)
      n++;
    freeaddrinfo(l->res);
  }
  free(l);
  return gai == 0 ? n : TT_EAGAIN;
}

/* ---- Meanwhile ---------------------------------------------------------------------------- */

static _Atomic int ticks;

static void ticker(void *arg) {
  (void)arg;
  while (tt_sleep(TT_MSEC) == 0)
    atomic_fetch_add(&ticks, 1);
}

TT_MAIN(argc, argv) {
  tt_go(ticker, NULL);
  struct file_read f = {.path = argv[0]};
  intptr_t r;
  int err = tt_blocking(read_all, &f, &r);
  if (err != 0 || r != 0) {
    fprintf(stderr, "read %s: %s\n", f.path, err ? tt_strerror(err) : strerror((int)-r));
    return 1;
  }
  printf("read %zu bytes of %s\n", f.bytes, f.path);
  int n = resolve("localhost", 2 * TT_SEC);
  if (n >= 0)
    printf("localhost resolves to %d address%s\n", n, n == 1 ? "" : "es");
  else
    printf("localhost: %s\n", tt_strerror(n));
  printf("the ticker ticked %d times meanwhile\n", atomic_load(&ticks));
  return 0;
}
