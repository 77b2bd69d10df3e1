/* SPDX-License-Identifier: MIT */
/* Network I/O on the poller: real sockets on loopback (TCP over IPv4 and IPv6, Unix), the errors a
 * peer can cause, deadlines, cancellation, close, and tt_fd_wait on other descriptors. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define SLOW_MS(ms) ((int64_t)((ms)*TT_MSEC * tt_test_slow()))

static tt_listener *listen_any(const char *net, const char *addr, char *where, size_t len) {
  tt_listener *l;
  ASSERT_OK(tt_listen(net, addr, &l));
  ASSERT_OK(tt_listener_addr(l, where, len));
  return l;
}

/* ---- Echo ------------------------------------------------------------------------------ */

typedef struct echo_srv {
  tt_listener *l;
  int conns; /* connections to serve, then return */
  tt_wg done;
  _Atomic int64_t bytes;
} echo_srv;

static void echo_conn(void *p) {
  tt_conn *c = p;
  char buf[4096];
  for (;;) {
    ssize_t n = tt_conn_read(c, buf, sizeof buf);
    if (n <= 0)
      break;
    ASSERT_OK(tt_conn_write_all(c, buf, (size_t)n, NULL));
  }
  ASSERT_OK(tt_conn_close(c));
}

static void echo_accept(void *p) {
  echo_srv *s = p;
  for (int i = 0; i < s->conns; i++) {
    tt_conn *c;
    ASSERT_OK(tt_accept(s->l, &c));
    ASSERT_OK(tt_go(echo_conn, c));
  }
  tt_wg_done(&s->done);
}

/* One client: n messages of len bytes each, every reply checked byte for byte. */
static void echo_client(const char *net, const char *addr, int n, size_t len) {
  tt_conn *c;
  ASSERT_OK(tt_dial(net, addr, &c));
  char *out = malloc(len), *in = malloc(len);
  for (int i = 0; i < n; i++) {
    for (size_t j = 0; j < len; j++)
      out[j] = (char)(i * 31 + j);
    size_t done = 99;
    ASSERT_OK(tt_conn_write_all(c, out, len, &done));
    ASSERT_UEQ(done, len);
    ASSERT_OK(tt_conn_read_full(c, in, len, &done));
    ASSERT_UEQ(done, len);
    ASSERT(memcmp(in, out, len) == 0);
  }
  /* Our side shut for writing: the server sees the end, closes, and we read the end too. */
  ASSERT_OK(tt_conn_shutdown(c, TT_SHUT_WR));
  ASSERT_EQ(tt_conn_read(c, in, len), 0);
  /* A second owner's close after the first: TT_ECLOSED, and its reference goes too. */
  ASSERT_OK(tt_conn_retain(c));
  ASSERT_OK(tt_conn_close(c));
  ASSERT_ERR(tt_conn_read(c, in, len), TT_ECLOSED);
  ASSERT_ERR(tt_conn_close(c), TT_ECLOSED);
  free(out);
  free(in);
}

typedef struct echo_case {
  const char *net, *addr;
} echo_case;

static int echo_main(void *p) {
  echo_case *ec = p;
  char where[128];
  echo_srv s = {.conns = 1};
  s.l = listen_any(ec->net, ec->addr, where, sizeof where);
  tt_wg_init(&s.done);
  tt_wg_add(&s.done, 1);
  ASSERT_OK(tt_go(echo_accept, &s));
  echo_client(ec->net, where, 200, 64);
  tt_wg_wait(&s.done);
  ASSERT_OK(tt_listener_close(s.l));
  return 0;
}

TEST(net_echo_tcp4) {
  echo_case ec = {"tcp", "127.0.0.1:0"};
  tt_test_run(echo_main, &ec, 2);
}

TEST(net_echo_tcp6) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) {
    printf("SKIP: no IPv6 here\n");
    return;
  }
  close(fd);
  echo_case ec = {"tcp6", "[::1]:0"};
  tt_test_run(echo_main, &ec, 2);
}

TEST(net_echo_unix) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/tt-net-%d.sock", (int)getpid());
  unlink(path);
  echo_case ec = {"unix", path};
  tt_test_run(echo_main, &ec, 2);
  ASSERT(access(path, F_OK) != 0); /* the listener's close removed its path */
  char abs[64];
  snprintf(abs, sizeof abs, "@tt-net-%d", (int)getpid());
  echo_case ea = {"unix", abs};
  tt_test_run(echo_main, &ea, 2);
}

/* Many connections at once on both workers, each echoing many small messages. */
typedef struct many {
  char where[128];
  tt_wg wg;
  int msgs;
} many;

static void many_client(void *p) {
  many *m = p;
  echo_client("tcp", m->where, m->msgs, 64);
  tt_wg_done(&m->wg);
}

static int many_main(void *p) {
  (void)p;
  int conns = (int)SCALED(200, 8);
  many m = {.msgs = (int)SCALED(200, 10)};
  echo_srv s = {.conns = conns};
  s.l = listen_any("tcp", "127.0.0.1:0", m.where, sizeof m.where);
  tt_wg_init(&s.done);
  tt_wg_add(&s.done, 1);
  tt_wg_init(&m.wg);
  tt_wg_add(&m.wg, conns);
  ASSERT_OK(tt_go(echo_accept, &s));
  for (int i = 0; i < conns; i++)
    ASSERT_OK(tt_go(many_client, &m));
  tt_wg_wait(&m.wg);
  tt_wg_wait(&s.done);
  ASSERT_OK(tt_listener_close(s.l));
  return 0;
}

TEST(net_many_connections) { tt_test_run(many_main, NULL, 2); }

/* ---- Big transfers: no byte lost or reordered ---------------------------------------------- */

typedef struct bulk {
  tt_conn *c;
  size_t total;
  uint64_t sum;
} bulk;

static uint8_t pattern(size_t i) { return (uint8_t)((i * 2654435761u) >> 13); }

static void bulk_reader(void *p) {
  bulk *b = p;
  uint8_t buf[7919];
  size_t at = 0;
  uint64_t seed = 12345;
  for (;;) {
    seed = seed * 6364136223846793005ull + 1;
    size_t want = 1 + (size_t)(seed >> 33) % sizeof buf;
    ssize_t n = tt_conn_read(b->c, buf, want);
    ASSERT_GE(n, 0);
    if (n == 0)
      break;
    for (ssize_t i = 0; i < n; i++)
      ASSERT_EQ(buf[i], pattern(at + (size_t)i));
    at += (size_t)n;
  }
  b->total = at;
  ASSERT_OK(tt_conn_close(b->c));
}

static int bulk_main(void *p) {
  (void)p;
  char where[128];
  tt_listener *l = listen_any("tcp", "127.0.0.1:0", where, sizeof where);
  tt_conn *w, *r;
  ASSERT_OK(tt_dial("tcp", where, &w));
  ASSERT_OK(tt_accept(l, &r));
  bulk b = {.c = r};
  tt_id id;
  tt_go_opts o = {0};
  ASSERT_OK(tt_go_opt(bulk_reader, &b, &o, &id));
  size_t total = (size_t)SCALED(16 << 20, 1 << 20);
  uint8_t *data = malloc(total);
  for (size_t i = 0; i < total; i++)
    data[i] = pattern(i);
  size_t done;
  ASSERT_OK(tt_conn_write_all(w, data, total, &done));
  ASSERT_UEQ(done, total);
  ASSERT_OK(tt_conn_close(w));
  tt_test_await_alone();
  ASSERT_UEQ(b.total, total);
  free(data);
  ASSERT_OK(tt_listener_close(l));
  return 0;
}

TEST(net_bulk_no_lost_bytes) { tt_test_run(bulk_main, NULL, 2); }

/* ---- Peers that go away ------------------------------------------------------------------ */

static void pair(tt_listener **l, tt_conn **a, tt_conn **b) {
  char where[128];
  *l = listen_any("tcp", "127.0.0.1:0", where, sizeof where);
  ASSERT_OK(tt_dial("tcp", where, a));
  ASSERT_OK(tt_accept(*l, b));
}

static int peer_close_main(void *p) {
  (void)p;
  tt_listener *l;
  tt_conn *a, *b;
  pair(&l, &a, &b);
  ASSERT_OK(tt_conn_write_all(a, "bye", 3, NULL));
  ASSERT_OK(tt_conn_close(a));
  /* The bytes sent before the close arrive, then the end of stream. */
  char buf[16];
  size_t got;
  ASSERT_ERR(tt_conn_read_full(b, buf, sizeof buf, &got), TT_EEOF);
  ASSERT_UEQ(got, 3);
  ASSERT(memcmp(buf, "bye", 3) == 0);
  ASSERT_EQ(tt_conn_read(b, buf, sizeof buf), 0);
  /* Writing to a peer that is gone: an error, never SIGPIPE (its default would kill us). The first
   * write may still be accepted (the RST comes back after it). */
  int r = 0;
  for (int i = 0; i < 100 && r >= 0; i++) {
    r = (int)tt_conn_write(b, "x", 1);
    if (r >= 0)
      tt_sleep(TT_MSEC);
  }
  ASSERT(r == TT_EPIPE || r == TT_ECONNRESET);
  ASSERT_OK(tt_conn_close(b));
  ASSERT_OK(tt_listener_close(l));
  return 0;
}

TEST(net_peer_close) {
  signal(SIGPIPE, SIG_DFL);
  tt_test_run(peer_close_main, NULL, 2);
}

static int reset_main(void *p) {
  (void)p;
  tt_listener *l;
  tt_conn *a, *b;
  pair(&l, &a, &b);
  /* A close with a zero linger sends RST. */
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  ASSERT_OK(setsockopt(tt_conn_fd(a), SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
  ASSERT_OK(tt_conn_close(a));
  char buf[16];
  ASSERT_ERR(tt_conn_read(b, buf, sizeof buf), TT_ECONNRESET);
  ASSERT_OK(tt_conn_close(b));
  ASSERT_OK(tt_listener_close(l));
  return 0;
}

TEST(net_reset) { tt_test_run(reset_main, NULL, 2); }

/* ---- Deadlines, cancellation, close ------------------------------------------------------- */

static int deadline_main(void *p) {
  (void)p;
  tt_listener *l;
  tt_conn *a, *b;
  pair(&l, &a, &b);
  char buf[64];
  int64_t t0 = tt_now();
  ASSERT_ERR(tt_conn_read_dl(b, buf, sizeof buf, t0 + 30 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_GE(tt_now() - t0, 30 * TT_MSEC);
  tt_conn *none = NULL;
  ASSERT_ERR(tt_accept_dl(l, &none, tt_now() + 10 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT(none == NULL);
  /* A read that timed out consumed nothing: the next one gets every byte. */
  ASSERT_OK(tt_conn_write_all(a, "hello", 5, NULL));
  size_t got;
  ASSERT_OK(tt_conn_read_full_dl(b, buf, 5, &got, tt_now() + SLOW_MS(5000)));
  ASSERT(memcmp(buf, "hello", 5) == 0);
  /* A deadline already past still fails at once when nothing is there. */
  ASSERT_ERR(tt_conn_read_dl(b, buf, sizeof buf, tt_now() - 1), TT_ETIMEDOUT);

  /* A writer whose peer does not read: write_all stops at the deadline, and *done says exactly
   * how much the kernel took, which the peer then reads, no more and no less. */
  int small = 4096;
  setsockopt(tt_conn_fd(a), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  setsockopt(tt_conn_fd(b), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  size_t big = 8 << 20;
  char *data = malloc(big);
  for (size_t i = 0; i < big; i++)
    data[i] = (char)pattern(i);
  size_t done = 0;
  ASSERT_ERR(tt_conn_write_all_dl(a, data, big, &done, tt_now() + 50 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_GT(done, 0);
  ASSERT_LT(done, big);
  ASSERT_OK(tt_conn_close(a));
  char *in = malloc(big);
  size_t rd;
  ASSERT_ERR(tt_conn_read_full(b, in, big, &rd), TT_EEOF);
  ASSERT_UEQ(rd, done);
  ASSERT(memcmp(in, data, rd) == 0);
  free(in);
  free(data);
  ASSERT_OK(tt_conn_close(b));
  ASSERT_OK(tt_listener_close(l));
  return 0;
}

TEST(net_deadlines) { tt_test_run(deadline_main, NULL, 2); }

typedef struct blocked {
  tt_conn *c;
  tt_listener *l;
  _Atomic int result;
} blocked;

static void block_read(void *p) {
  blocked *b = p;
  char buf[8];
  atomic_store(&b->result, (int)tt_conn_read(b->c, buf, sizeof buf));
}

static void block_accept(void *p) {
  blocked *b = p;
  tt_conn *c = NULL;
  atomic_store(&b->result, tt_accept(b->l, &c));
  ASSERT(c == NULL);
}

static int block_read_group(void *p) {
  block_read(p);
  return 0;
}

static int close_cancel_main(void *p) {
  (void)p;
  tt_listener *l;
  tt_conn *a, *b;
  pair(&l, &a, &b);
  /* Close wakes a blocked read (on the other worker too) with TT_ECLOSED. */
  blocked br = {.c = b, .result = 1};
  ASSERT_OK(tt_go(block_read, &br));
  tt_test_await_reason(TT_WAIT_IO_WAIT, 1);
  ASSERT_OK(tt_conn_close(b));
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&br.result), TT_ECLOSED);
  char buf[4];
  ASSERT_EQ(tt_conn_read(a, buf, 0), 0); /* len 0: nothing, at once */
  /* And a blocked accept. */
  blocked ba = {.l = l, .result = 1};
  ASSERT_OK(tt_go(block_accept, &ba));
  tt_test_await_reason(TT_WAIT_IO_WAIT, 1);
  ASSERT_OK(tt_listener_close(l));
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&ba.result), TT_ECLOSED);
  /* Cancellation through the group's context ends a blocked read with TT_ECANCELED. */
  tt_listener *l2;
  tt_conn *c, *d;
  pair(&l2, &c, &d);
  blocked bc = {.c = d, .result = 1};
  tt_group *g;
  ASSERT_OK(tt_group_make(NULL, &g));
  ASSERT_OK(tt_group_go(g, block_read_group, &bc));
  tt_test_await_reason(TT_WAIT_IO_WAIT, 1);
  ASSERT_OK(tt_group_cancel(g));
  tt_group_wait(g);
  ASSERT_OK(tt_group_free(g));
  ASSERT_EQ(atomic_load(&bc.result), TT_ECANCELED);
  /* The connection still works after a cancelled read: nothing was consumed. */
  ASSERT_OK(tt_conn_write_all(c, "ok", 2, NULL));
  size_t got;
  ASSERT_OK(tt_conn_read_full(d, buf, 2, &got));
  ASSERT(memcmp(buf, "ok", 2) == 0);
  ASSERT_OK(tt_conn_close(a));
  ASSERT_OK(tt_conn_close(c));
  ASSERT_OK(tt_conn_close(d));
  ASSERT_OK(tt_listener_close(l2));
  return 0;
}

TEST(net_close_and_cancel) { tt_test_run(close_cancel_main, NULL, 2); }

/* ---- Bad input ------------------------------------------------------------------------------ */

static int errors_main(void *p) {
  (void)p;
  tt_listener *l = NULL;
  tt_conn *c = NULL;
  ASSERT_ERR(tt_listen("udp", "127.0.0.1:0", &l), TT_EINVAL);
  ASSERT_ERR(tt_listen(NULL, "127.0.0.1:0", &l), TT_EINVAL);
  ASSERT_ERR(tt_listen("tcp", "127.0.0.1", &l), TT_EINVAL);       /* no port */
  ASSERT_ERR(tt_listen("tcp", "127.0.0.1:99999", &l), TT_EINVAL); /* port out of range */
  ASSERT_ERR(tt_listen("tcp", "::1:80", &l), TT_EINVAL);          /* v6 without brackets */
  ASSERT_ERR(tt_listen("tcp", "[::1:80", &l), TT_EINVAL);
  ASSERT_ERR(tt_listen("tcp4", "[::1]:0", &l), TT_EINVAL);
  ASSERT_ERR(tt_listen("unix", "", &l), TT_EINVAL);
  ASSERT_ERR(tt_listen("tcp", "127.0.0.1:0", NULL), TT_EINVAL);
  ASSERT(l == NULL);
  ASSERT_ERR(tt_dial("tcp", "127.0.0.1:0", &c), TT_EINVAL);
  ASSERT_ERR(tt_accept(NULL, &c), TT_EINVAL);
  ASSERT_ERR(tt_conn_read(NULL, NULL, 1), TT_EINVAL);
  ASSERT_ERR(tt_conn_write(NULL, "x", 1), TT_EINVAL);
  ASSERT_ERR(tt_conn_close(NULL), TT_EINVAL);
  ASSERT_ERR(tt_listener_close(NULL), TT_EINVAL);
  /* A port in use. */
  char where[128];
  l = listen_any("tcp", "127.0.0.1:0", where, sizeof where);
  tt_listener *l2 = NULL;
  ASSERT_ERR(tt_listen("tcp", where, &l2), TT_EADDRINUSE);
  ASSERT_GT(tt_listener_port(l), 0);
  /* Nobody listening: refused. */
  ASSERT_OK(tt_listener_close(l));
  ASSERT_ERR(tt_dial("tcp", where, &c), TT_ECONNREFUSED);
  ASSERT(c == NULL);
  char path[64];
  snprintf(path, sizeof path, "/tmp/tt-net-none-%d.sock", (int)getpid());
  ASSERT_ERR(tt_dial("unix", path, &c), -ENOENT);
  /* A name resolved on the blocking pool: localhost. */
  l = listen_any("tcp4", "localhost:0", where, sizeof where);
  ASSERT(strncmp(where, "127.0.0.1:", 10) == 0);
  char name[64];
  snprintf(name, sizeof name, "localhost:%d", tt_listener_port(l));
  ASSERT_OK(tt_dial("tcp4", name, &c));
  char la[128], ra[128];
  ASSERT_OK(tt_conn_local_addr(c, la, sizeof la));
  ASSERT_OK(tt_conn_remote_addr(c, ra, sizeof ra));
  ASSERT_STR_EQ(ra, where);
  ASSERT(strncmp(la, "127.0.0.1:", 10) == 0);
  ASSERT_ERR(tt_conn_remote_addr(c, ra, 4), TT_EINVAL); /* too small */
  ASSERT_ERR(tt_conn_shutdown(c, 7), TT_EINVAL);
  ASSERT_OK(tt_conn_close(c));
  ASSERT_OK(tt_listener_close(l));
  /* A name that cannot resolve (the .invalid domain, RFC 2606). */
  int r = tt_dial_dl("tcp", "no-such-host.invalid:80", &c, tt_now() + SLOW_MS(10000));
  ASSERT(r == TT_ENOHOST || r == TT_ETIMEDOUT);
  return 0;
}

TEST(net_errors) { tt_test_run(errors_main, NULL, 2); }

TEST(net_not_running) {
  tt_listener *l = NULL;
  tt_conn *c = NULL;
  ASSERT_ERR(tt_listen("tcp", "127.0.0.1:0", &l), TT_ENOTRUNNING);
  ASSERT_ERR(tt_dial("tcp", "127.0.0.1:1", &c), TT_ENOTRUNNING);
  ASSERT_ERR(tt_fd_wait(0, TT_FD_READ, TT_FOREVER), TT_ENOTRUNNING);
}

/* ---- tt_fd_wait ----------------------------------------------------------------------------- */

typedef struct fdw {
  int fd;
  _Atomic int result;
} fdw;

static void fd_waiter(void *p) {
  fdw *f = p;
  atomic_store(&f->result, tt_fd_wait(f->fd, TT_FD_READ, TT_FOREVER));
}

static int fd_wait_main(void *p) {
  (void)p;
  int pfd[2];
  ASSERT_OK(pipe2(pfd, O_NONBLOCK | O_CLOEXEC));
  ASSERT_ERR(tt_fd_wait(pfd[0], TT_FD_READ, tt_now() + 20 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_EQ(tt_fd_wait(pfd[1], TT_FD_WRITE | TT_FD_READ, TT_FOREVER), TT_FD_WRITE);
  ASSERT_ERR(tt_fd_wait(pfd[0], 0, TT_FOREVER), TT_EINVAL);
  ASSERT_ERR(tt_fd_wait(pfd[0], 8, TT_FOREVER), TT_EINVAL);
  ASSERT_ERR(tt_fd_wait(-1, TT_FD_READ, TT_FOREVER), TT_EBADF);
  ASSERT_ERR(tt_fd_wait(1000000, TT_FD_READ, TT_FOREVER), TT_EBADF);
  /* Three coroutines wait on the same descriptor at once (one on the other worker). */
  fdw f[3];
  for (int i = 0; i < 3; i++) {
    f[i].fd = pfd[0];
    atomic_store(&f[i].result, 0);
    ASSERT_OK(tt_go(fd_waiter, &f[i]));
  }
  tt_test_await_reason(TT_WAIT_IO_WAIT, 3);
  ASSERT_EQ(write(pfd[1], "z", 1), 1);
  tt_test_await_alone();
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(atomic_load(&f[i].result), TT_FD_READ);
  /* A regular file is always ready. */
  char tmp[] = "/tmp/tt-net-fileXXXXXX";
  int ffd = mkstemp(tmp);
  ASSERT_GE(ffd, 0);
  unlink(tmp);
  ASSERT_EQ(tt_fd_wait(ffd, TT_FD_READ, TT_FOREVER), TT_FD_READ);
  close(ffd);
  /* A hang-up reports what was asked. */
  close(pfd[1]);
  char c;
  ASSERT_EQ(read(pfd[0], &c, 1), 1);
  ASSERT_EQ(tt_fd_wait(pfd[0], TT_FD_READ, TT_FOREVER), TT_FD_READ);
  close(pfd[0]);
  return 0;
}

TEST(net_fd_wait) { tt_test_run(fd_wait_main, NULL, 2); }

/* ---- Plain threads -------------------------------------------------------------------------- */

typedef struct thr {
  char where[128];
  _Atomic int ok;
} thr;

static void *thread_client(void *p) {
  thr *t = p;
  tt_conn *c;
  ASSERT_OK(tt_dial("tcp", t->where, &c));
  ASSERT_OK(tt_conn_write_all(c, "ping", 4, NULL));
  char buf[4];
  ASSERT_OK(tt_conn_read_full(c, buf, 4, NULL));
  ASSERT(memcmp(buf, "ping", 4) == 0);
  /* A plain thread blocked on a read times out like a coroutine. */
  ASSERT_ERR(tt_conn_read_dl(c, buf, 4, tt_now() + 20 * TT_MSEC), TT_ETIMEDOUT);
  ASSERT_OK(tt_conn_close(c));
  atomic_store(&t->ok, 1);
  return NULL;
}

static int thread_main(void *p) {
  (void)p;
  thr t = {.ok = 0};
  echo_srv s = {.conns = 1};
  s.l = listen_any("tcp", "127.0.0.1:0", t.where, sizeof t.where);
  tt_wg_init(&s.done);
  tt_wg_add(&s.done, 1);
  ASSERT_OK(tt_go(echo_accept, &s));
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, thread_client, &t));
  tt_wg_wait(&s.done);
  while (!atomic_load(&t.ok))
    tt_sleep(TT_MSEC);
  pthread_join(th, NULL);
  tt_test_await_alone();
  ASSERT_OK(tt_listener_close(s.l));
  return 0;
}

TEST(net_plain_thread) { tt_test_run(thread_main, NULL, 2); }

/* ---- Liveness: I/O waiters are not deadlocked, nor leaked ----------------------------------- */

typedef struct live {
  tt_conn *c;
  tt_chan *ch;
} live;

static void live_reader(void *p) {
  live *lv = p;
  char buf[1];
  int v = (int)tt_conn_read(lv->c, buf, 1);
  ASSERT_OK(tt_chan_send(lv->ch, &v));
}

static int go_fd = -1; /* tells the peer process to write, 300 ms later */

static int live_main(void *p) {
  int fd = *(int *)p;
  live lv;
  ASSERT_OK(tt_conn_from_fd(fd, &lv.c));
  lv.ch = tt_chan_make(sizeof(int), 0);
  ASSERT(lv.ch != NULL);
  tt_go_opts o = {.share = &lv.ch, .nshare = 1};
  ASSERT_OK(tt_go_opt(live_reader, &lv, &o, NULL));
  tt_test_await_reason(TT_WAIT_IO_WAIT, 1);
  /* The proof holds the reader live: a peer may still write. */
  tt_leak_report *rep;
  ASSERT_OK(tt_leak_check(&rep));
  ASSERT_UEQ(tt_leak_report_len(rep), 0);
  tt_leak_report_free(rep);
  /* Everyone else now waits on a channel with no timer pending: without the I/O wait this is the
   * global deadlock, which the monitor notices within milliseconds. The peer (another process)
   * writes 300 ms after we tell it to. */
  ASSERT_EQ(write(go_fd, "g", 1), 1);
  int v = 0;
  ASSERT_OK(tt_chan_recv(lv.ch, &v, NULL));
  ASSERT_EQ(v, 1);
  ASSERT_OK(tt_chan_release(lv.ch));
  ASSERT_OK(tt_conn_close(lv.c));
  return 0;
}

TEST(net_io_wait_is_live) {
  int sv[2], go[2];
  ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  ASSERT_OK(pipe2(go, O_CLOEXEC));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(sv[0]);
    char c;
    if (read(go[0], &c, 1) != 1)
      _exit(1);
    usleep(300000);
    _exit(write(sv[1], "x", 1) == 1 ? 0 : 1);
  }
  close(sv[1]);
  close(go[0]);
  go_fd = go[1];
  tt_test_run(live_main, &sv[0], 2);
  close(go[1]);
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Snapshots (signals to the workers) while coroutines are blocked in I/O: interrupted system
 * calls are retried, and the dump names the wait. */
static int dump_main(void *p) {
  (void)p;
  tt_listener *l;
  tt_conn *a, *b;
  pair(&l, &a, &b);
  blocked br = {.c = b, .result = 1};
  ASSERT_OK(tt_go(block_read, &br));
  tt_test_await_reason(TT_WAIT_IO_WAIT, 1);
  for (int i = 0; i < 20; i++) {
    char *text;
    size_t len;
    ASSERT_OK(tt_dump_mem(TT_DUMP_TRACES, &text, &len));
    ASSERT_CONTAINS(text, "[IO wait]:");
    ASSERT_CONTAINS(text, "block_read");
    free(text);
  }
  ASSERT_OK(tt_conn_write_all(a, "12345678", 8, NULL));
  tt_test_await_alone();
  ASSERT_EQ(atomic_load(&br.result), 8);
  ASSERT_OK(tt_conn_close(a));
  ASSERT_OK(tt_conn_close(b));
  ASSERT_OK(tt_listener_close(l));
  return 0;
}

TEST(net_dump_io_wait) { tt_test_run(dump_main, NULL, 2); }

/* ---- Races: close against reads and writes in flight, on both workers --------------------- */

typedef struct racer {
  tt_conn *c;
  tt_wg *wg;
  _Atomic int64_t moved;
} racer;

static void race_reader(void *p) {
  racer *r = p;
  char buf[512];
  ssize_t n;
  while ((n = tt_conn_read(r->c, buf, sizeof buf)) > 0)
    atomic_fetch_add(&r->moved, n);
  ASSERT(n == 0 || n == TT_ECLOSED || n == TT_ECONNRESET);
  ASSERT_OK(tt_conn_release(r->c));
  tt_wg_done(r->wg);
}

static void race_writer(void *p) {
  racer *r = p;
  char buf[512] = {0};
  ssize_t n;
  while ((n = tt_conn_write(r->c, buf, sizeof buf)) > 0)
    atomic_fetch_add(&r->moved, n);
  ASSERT(n == TT_ECLOSED || n == TT_EPIPE || n == TT_ECONNRESET);
  ASSERT_OK(tt_conn_release(r->c));
  tt_wg_done(r->wg);
}

static int race_main(void *p) {
  (void)p;
  char where[128];
  tt_listener *l = listen_any("tcp", "127.0.0.1:0", where, sizeof where);
  int rounds = (int)SCALED(200, 20);
  for (int i = 0; i < rounds; i++) {
    tt_conn *a, *b;
    ASSERT_OK(tt_dial("tcp", where, &a));
    ASSERT_OK(tt_accept(l, &b));
    tt_wg wg;
    tt_wg_init(&wg);
    tt_wg_add(&wg, 2);
    racer rr = {.c = b, .wg = &wg}, rw = {.c = a, .wg = &wg};
    /* The reader and the writer own references of their own: the closes below may come first. */
    ASSERT_OK(tt_conn_retain(a));
    ASSERT_OK(tt_conn_retain(b));
    ASSERT_OK(tt_go(race_reader, &rr));
    ASSERT_OK(tt_go(race_writer, &rw));
    /* Close each side at a different moment: before, during, or after traffic starts. */
    if (i % 3)
      tt_sleep((i % 7) * 20 * TT_USEC);
    ASSERT_OK(tt_conn_close(i % 2 ? a : b));
    if (i % 5 == 0)
      tt_yield();
    ASSERT_OK(tt_conn_close(i % 2 ? b : a));
    ASSERT_OK(tt_wg_wait(&wg));
  }
  ASSERT_OK(tt_listener_close(l));
  return 0;
}

TEST(net_close_races) {
  signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test */
  tt_test_run(race_main, NULL, 2);
}
