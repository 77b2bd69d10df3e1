/* SPDX-License-Identifier: MIT */
/* Stream sockets on the poller (tether/net.h): Go's net.Listen, net.Dial and net.Conn.
 *
 * A socket is non-blocking from birth and registered with a poller once, edge-triggered for both
 * directions (src/net/poll.h); each call tries the system call first and waits on the poller only
 * when it says EAGAIN, so a busy connection costs one system call per operation.
 *
 * Lifetime (Go's fdMutex, reduced to a count): one count holds the handle's owners (the creator
 * and each tt_*_retain) and the calls in progress, which take a reference for their duration with
 * one CAS that fails once the socket is closed. Close sets the closed bit, wakes every waiter with
 * TT_ECLOSED and drops its caller's reference; whoever drops the last one deregisters the
 * descriptor, closes it and frees the handle. So a close never pulls the descriptor from under a
 * call in a system call on it (the number cannot be reused while a call might still use it), and
 * an owner that calls after another owner's close gets TT_ECLOSED, as in Go. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/poll.h"
#include "tether/blocking.h"
#include "tether/net.h"

#define CLOSED_BIT (UINT32_C(1) << 31)

typedef struct sock {
  _Atomic uint32_t refs; /* calls in progress + 1 until closed; CLOSED_BIT once closed */
  int fd;
  int family;
  tt__pollfd *pd;
  char *unlink_path; /* a unix listener's path, removed at close */
} sock;

struct tt_listener {
  sock s;
};
struct tt_conn {
  sock s;
};

/* ---- References ------------------------------------------------------------------------- */

static int sock_acquire(sock *s) {
  /* relaxed then acq on success: the count only guards the descriptor's lifetime, which the
   * closer's release (the last reference drop, acq_rel) orders. */
  uint32_t v = atomic_load_explicit(&s->refs, memory_order_relaxed);
  do {
    if (v & CLOSED_BIT)
      return TT_ECLOSED;
  } while (!atomic_compare_exchange_weak_explicit(&s->refs, &v, v + 1, memory_order_acquire,
                                                  memory_order_relaxed));
  return 0;
}

static void sock_destroy(sock *s) {
  tt__pollfd_put(s->pd);
  close(s->fd);
  if (s->unlink_path) {
    unlink(s->unlink_path);
    free(s->unlink_path);
  }
  free(s);
}

static void sock_release(sock *s) {
  /* acq_rel: every call's use of the descriptor happens before the last drop destroys it. */
  uint32_t left = atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) - 1;
  if ((left & ~CLOSED_BIT) == 0)
    sock_destroy(s); /* the last reference: closed, or released without a close */
}

static int sock_retain(sock *s) {
  if (s == NULL)
    return TT_EINVAL;
  /* relaxed: the caller holds a reference, so the socket lives; nothing else is published. */
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return 0;
}

/* Closes (the first time) and drops the caller's reference. */
static int sock_close(sock *s) {
  if (s == NULL)
    return TT_EINVAL;
  uint32_t v = atomic_fetch_or_explicit(&s->refs, CLOSED_BIT, memory_order_acq_rel);
  if (!(v & CLOSED_BIT))
    tt__pollfd_close(s->pd);
  sock_release(s);
  return v & CLOSED_BIT ? TT_ECLOSED : 0;
}

/* Wraps fd (non-blocking already) in a socket of `size` bytes registered with the poller. On
 * failure fd is still the caller's. */
static int sock_new(int fd, int family, size_t size, sock **out) {
  sock *s = tt__calloc(1, size);
  tt__pollfd *pd = s ? tt__pollfd_get(fd) : NULL;
  if (pd == NULL) {
    free(s);
    return TT_ENOMEM;
  }
  int r = tt__pollfd_arm(pd, false, TT__POLL_READ | TT__POLL_WRITE);
  if (r != 0) {
    tt__pollfd_put(pd);
    free(s);
    return r == -EPERM ? TT_EINVAL : r;
  }
  atomic_init(&s->refs, 1);
  s->fd = fd;
  s->family = family;
  s->pd = pd;
  *out = s;
  return 0;
}

static int err_of(int e) {
  if (e == EWOULDBLOCK)
    e = EAGAIN;
  return -e; /* TT_E* are negated errnos (tether/error.h) */
}

static int start_check(void) {
  int r = tt__block_check(tt__self());
  if (r == 0 && atomic_load_explicit(&tt__rt.state, memory_order_acquire) == 0)
    r = TT_ENOTRUNNING;
  return r;
}

/* ---- Addresses -------------------------------------------------------------------------- */

enum { NET_TCP, NET_TCP4, NET_TCP6, NET_UNIX };

static int parse_network(const char *network) {
  if (network == NULL)
    return TT_EINVAL;
  if (strcmp(network, "tcp") == 0)
    return NET_TCP;
  if (strcmp(network, "tcp4") == 0)
    return NET_TCP4;
  if (strcmp(network, "tcp6") == 0)
    return NET_TCP6;
  if (strcmp(network, "unix") == 0)
    return NET_UNIX;
  return TT_EINVAL;
}

/* Splits "host:port", "[v6]:port" or ":port" into host (NUL-terminated in hbuf; "" for none) and
 * a port number. */
static int split_host_port(const char *addr, char *hbuf, size_t hcap, int *port) {
  const char *colon = strrchr(addr, ':');
  if (colon == NULL)
    return TT_EINVAL; /* Go: "missing port in address" */
  const char *h = addr;
  size_t hl = (size_t)(colon - addr);
  if (hl > 0 && h[0] == '[') {
    if (h[hl - 1] != ']')
      return TT_EINVAL;
    h++;
    hl -= 2;
  } else if (memchr(h, ':', hl) != NULL) {
    return TT_EINVAL; /* Go: "too many colons in address": an IPv6 address needs brackets */
  }
  if (hl >= hcap)
    return TT_EINVAL;
  memcpy(hbuf, h, hl);
  hbuf[hl] = '\0';
  const char *p = colon + 1;
  if (*p == '\0')
    return TT_EINVAL;
  long v = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > 65535)
      return TT_EINVAL; /* numeric ports only (no service names) */
  }
  *port = (int)v;
  return 0;
}

/* A resolved address list. */
typedef struct addrs {
  struct sockaddr_storage a[16];
  socklen_t len[16];
  int n;
} addrs;

static void add_addr(addrs *as, const void *sa, socklen_t len) {
  if (as->n < 16) {
    memcpy(&as->a[as->n], sa, len);
    as->len[as->n++] = len;
  }
}

/* getaddrinfo on the blocking pool. The job lives on the heap: the caller may give up on it
 * (deadline, cancellation) while getaddrinfo still runs, and the abandoned callback frees it. */
typedef struct lookup {
  char host[256];
  int family;
  struct addrinfo *res;
  int gai;
} lookup;

static intptr_t lookup_run(void *arg) {
  lookup *l = arg;
  struct addrinfo hints = {.ai_family = l->family, .ai_socktype = SOCK_STREAM};
  l->gai = getaddrinfo(l->host, NULL, &hints, &l->res);
  return 0;
}

static void lookup_abandoned(void *arg, int ran, intptr_t result) {
  (void)result;
  lookup *l = arg;
  if (ran && l->gai == 0)
    freeaddrinfo(l->res);
  free(l);
}

static int resolve(int net, const char *host, int port, bool passive, int64_t deadline,
                   addrs *out) {
  out->n = 0;
  struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
  if (host[0] == '\0') {
    /* No host: every interface when listening, the local system when dialing (Go's rule). */
    if (net != NET_TCP4) {
      v6.sin6_addr = passive ? in6addr_any : in6addr_loopback;
      add_addr(out, &v6, sizeof v6);
    }
    if (net != NET_TCP6) {
      v4.sin_addr.s_addr = htonl(passive ? INADDR_ANY : INADDR_LOOPBACK);
      add_addr(out, &v4, sizeof v4);
    }
    return 0;
  }
  if (inet_pton(AF_INET, host, &v4.sin_addr) == 1) {
    if (net == NET_TCP6)
      return TT_EINVAL;
    add_addr(out, &v4, sizeof v4);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1) {
    if (net == NET_TCP4)
      return TT_EINVAL;
    add_addr(out, &v6, sizeof v6);
    return 0;
  }
  if (strlen(host) >= sizeof((lookup *)0)->host)
    return TT_EINVAL;
  lookup *l = tt__calloc(1, sizeof *l);
  if (l == NULL)
    return TT_ENOMEM;
  strcpy(l->host, host);
  l->family = net == NET_TCP4 ? AF_INET : net == NET_TCP6 ? AF_INET6 : AF_UNSPEC;
  tt_blocking_opts o = {.deadline = deadline, .abandoned = lookup_abandoned};
  int r = tt_blocking_opt(lookup_run, l, &o, NULL);
  if (r != 0)
    return r; /* l belongs to the callback now */
  if (l->gai != 0) {
    r = l->gai == EAI_MEMORY ? TT_ENOMEM : TT_ENOHOST;
  } else {
    for (struct addrinfo *ai = l->res; ai; ai = ai->ai_next) {
      if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
        continue;
      struct sockaddr_storage ss;
      memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
      if (ai->ai_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
      else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
      add_addr(out, &ss, ai->ai_addrlen);
    }
    freeaddrinfo(l->res);
    if (out->n == 0)
      r = TT_ENOHOST;
  }
  free(l);
  return r;
}

static int unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len) {
  size_t n = path ? strlen(path) : 0;
  if (n == 0 || n >= sizeof sun->sun_path)
    return TT_EINVAL;
  memset(sun, 0, sizeof *sun);
  sun->sun_family = AF_UNIX;
  memcpy(sun->sun_path, path, n);
  if (path[0] == '@')
    sun->sun_path[0] = '\0'; /* Linux's abstract namespace */
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
  return 0;
}

static int format_addr(const struct sockaddr_storage *ss, socklen_t sl, char *buf, size_t len) {
  char ip[INET6_ADDRSTRLEN];
  int n;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    n = snprintf(buf, len, "%s:%u", ip, ntohs(a->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    n = snprintf(buf, len, "[%s]:%u", ip, ntohs(a->sin6_port));
  } else if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *a = (const void *)ss;
    size_t pl = sl > offsetof(struct sockaddr_un, sun_path)
                    ? sl - offsetof(struct sockaddr_un, sun_path)
                    : 0;
    if (pl > 0 && a->sun_path[0] == '\0') /* abstract: '@' and the name (not NUL-terminated) */
      n = snprintf(buf, len, "@%.*s", (int)(pl - 1), a->sun_path + 1);
    else
      n = snprintf(buf, len, "%.*s", (int)strnlen(a->sun_path, pl), a->sun_path);
  } else {
    return TT_EINVAL;
  }
  return n < 0 || (size_t)n >= len ? TT_EINVAL : 0;
}

static int sock_addr(sock *s, bool peer, char *buf, size_t len) {
  if (s == NULL || buf == NULL || len == 0)
    return TT_EINVAL;
  int r = sock_acquire(s);
  if (r != 0)
    return r;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  r = (peer ? getpeername : getsockname)(s->fd, (struct sockaddr *)&ss, &sl) == 0
          ? format_addr(&ss, sl, buf, len)
          : err_of(errno);
  sock_release(s);
  return r;
}

/* The addresses a call on (network, address) tries, in order: a unix path's, or what the host
 * resolves to. The common head of tt_listen and tt_dial: the checks, then the addresses. *net
 * and *anyhost (a TCP address with no host) tell the caller what it got. */
static int addresses(const char *network, const char *address, bool passive, int64_t deadline,
                     addrs *out, int *net, bool *anyhost) {
  out->n = 0;
  *anyhost = false;
  if (address == NULL || (*net = parse_network(network)) < 0)
    return TT_EINVAL;
  int r = start_check();
  if (r != 0)
    return r;
  if (*net == NET_UNIX) {
    struct sockaddr_un sun;
    socklen_t sl;
    if ((r = unix_addr(address, &sun, &sl)) == 0)
      add_addr(out, &sun, sl);
    return r;
  }
  char host[256];
  int port;
  if ((r = split_host_port(address, host, sizeof host, &port)) != 0)
    return r;
  if (!passive && port == 0)
    return TT_EINVAL; /* nobody listens on port 0 */
  *anyhost = host[0] == '\0';
  return resolve(*net, host, port, passive, deadline, out);
}

/* ---- Listening ---------------------------------------------------------------------------- */

static int listen_one(const struct sockaddr *sa, socklen_t sl, bool dual, int *out) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return err_of(errno);
  int one = 1, zero = 0;
  if (sa->sa_family != AF_UNIX)
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (sa->sa_family == AF_INET6)
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &one, sizeof one);
  if (bind(fd, sa, sl) != 0 || listen(fd, SOMAXCONN) != 0) {
    int e = errno;
    close(fd);
    return err_of(e);
  }
  *out = fd;
  return 0;
}

int tt_listen_dl(const char *network, const char *address, tt_listener **out, int64_t deadline) {
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  addrs as;
  int net;
  bool anyhost;
  int r = addresses(network, address, true, deadline, &as, &net, &anyhost);
  if (r != 0)
    return r;
  /* The first address that binds (Go listens on the first one too). "tcp" with no host is
   * dual-stack on [::], or 0.0.0.0 where IPv6 is missing. */
  int fd = -1;
  r = TT_EADDRNOTAVAIL;
  for (int i = 0; i < as.n && fd < 0; i++)
    r = listen_one((struct sockaddr *)&as.a[i], as.len[i], net == NET_TCP && anyhost, &fd);
  if (fd < 0)
    return r;
  int family = as.a[0].ss_family;
  char *path = NULL;
  if (net == NET_UNIX && address[0] != '@' && (path = strdup(address)) == NULL) {
    close(fd);
    unlink(address);
    return TT_ENOMEM;
  }
  sock *s;
  if ((r = sock_new(fd, family, sizeof(tt_listener), &s)) != 0) {
    close(fd);
    if (path)
      unlink(path);
    free(path);
    return r;
  }
  s->unlink_path = path;
  *out = (tt_listener *)s;
  return 0;
}

int tt_listen(const char *network, const char *address, tt_listener **out) {
  return tt_listen_dl(network, address, out, TT_FOREVER);
}

static void set_nodelay(int fd, int family) {
  int one = 1;
  if (family == AF_INET || family == AF_INET6)
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int tt_accept_dl(tt_listener *l, tt_conn **out, int64_t deadline) {
  if (l == NULL || out == NULL)
    return TT_EINVAL;
  *out = NULL;
  int r = start_check();
  if (r != 0)
    return r;
  sock *s = &l->s;
  if ((r = sock_acquire(s)) != 0)
    return r;
  for (;;) {
    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      set_nodelay(fd, s->family);
      sock *c;
      r = sock_new(fd, s->family, sizeof(tt_conn), &c);
      if (r == 0)
        *out = (tt_conn *)c;
      else
        close(fd);
      break;
    }
    int e = errno;
    if (e == EINTR || e == ECONNABORTED)
      continue; /* the client gave up before we took it: take the next (as Go does) */
    if (e != EAGAIN && e != EWOULDBLOCK) {
      r = err_of(e);
      break;
    }
    if ((r = tt__pollfd_wait(s->pd, TT__POLL_READ, deadline)) != 0)
      break;
  }
  sock_release(s);
  return r;
}

int tt_accept(tt_listener *l, tt_conn **out) { return tt_accept_dl(l, out, TT_FOREVER); }

int tt_listener_addr(tt_listener *l, char *buf, size_t len) {
  return sock_addr(l ? &l->s : NULL, false, buf, len);
}

int tt_listener_port(tt_listener *l) {
  char buf[80];
  int r = tt_listener_addr(l, buf, sizeof buf);
  if (r != 0)
    return r;
  const char *c = strrchr(buf, ':');
  return l->s.family == AF_UNIX || c == NULL ? TT_EINVAL : atoi(c + 1);
}

int tt_listener_fd(tt_listener *l) { return l ? l->s.fd : TT_EINVAL; }
int tt_listener_close(tt_listener *l) { return sock_close(l ? &l->s : NULL); }
int tt_listener_retain(tt_listener *l) { return sock_retain(l ? &l->s : NULL); }

int tt_listener_release(tt_listener *l) {
  if (l == NULL)
    return TT_EINVAL;
  sock_release(&l->s);
  return 0;
}

/* ---- Dialing ------------------------------------------------------------------------------ */

/* Connects to one address; 0 and *out, or an error. */
static int dial_one(const struct sockaddr *sa, socklen_t sl, int64_t deadline, sock **out) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return err_of(errno);
  set_nodelay(fd, sa->sa_family);
  /* EAGAIN: a unix socket whose backlog is full; Go waits for it as for EINPROGRESS. */
  if (connect(fd, sa, sl) != 0 && errno != EINPROGRESS && errno != EAGAIN) {
    int r = err_of(errno);
    close(fd);
    return r;
  }
  sock *s;
  int r = sock_new(fd, sa->sa_family, sizeof(tt_conn), &s);
  if (r != 0) {
    close(fd);
    return r;
  }
  /* Wait for the connection to complete (writable), then read its outcome. */
  for (;;) {
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
      err = errno;
    if (err == 0) {
      struct sockaddr_storage peer;
      socklen_t pl = sizeof peer;
      if (getpeername(s->fd, (struct sockaddr *)&peer, &pl) == 0)
        break; /* connected */
      if (errno != ENOTCONN) {
        r = err_of(errno);
        break;
      }
      /* still in progress */
    } else if (err != EINPROGRESS && err != EALREADY && err != EAGAIN) {
      r = err_of(err);
      break;
    }
    if ((r = tt__pollfd_wait(s->pd, TT__POLL_WRITE, deadline)) != 0)
      break;
  }
  if (r != 0) {
    sock_close(s);
    return r;
  }
  *out = s;
  return 0;
}

int tt_dial_dl(const char *network, const char *address, tt_conn **out, int64_t deadline) {
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  addrs as;
  int net;
  bool anyhost;
  int r = addresses(network, address, false, deadline, &as, &net, &anyhost);
  sock *s = NULL;
  for (int i = 0; r == 0 && i < as.n; i++) {
    r = dial_one((struct sockaddr *)&as.a[i], as.len[i], deadline, &s);
    if (r == 0 || r == TT_ETIMEDOUT || r == TT_ECANCELED || i + 1 == as.n)
      break;
    r = 0; /* the next address */
  }
  if (r == 0 && s == NULL)
    r = TT_ENOHOST; /* no address at all (resolve says so first) */
  if (r == 0)
    *out = (tt_conn *)s;
  return r;
}

int tt_dial(const char *network, const char *address, tt_conn **out) {
  return tt_dial_dl(network, address, out, TT_FOREVER);
}

int tt_conn_from_fd(int fd, tt_conn **out) {
  if (fd < 0 || out == NULL)
    return TT_EINVAL;
  *out = NULL;
  int r = start_check();
  if (r != 0)
    return r;
  int type;
  socklen_t tl = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0)
    return errno == ENOTSOCK ? TT_EINVAL : err_of(errno);
  if (type != SOCK_STREAM)
    return TT_EINVAL;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
    return err_of(errno);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
    return err_of(errno);
  sock *s;
  if ((r = sock_new(fd, ss.ss_family, sizeof(tt_conn), &s)) != 0)
    return r;
  *out = (tt_conn *)s;
  return 0;
}

/* ---- Reading and writing ------------------------------------------------------------------ */

/* One read (dir TT__POLL_READ) or send: the system call, and a wait on EAGAIN, until it moves
 * bytes or fails. */
static ssize_t conn_io(tt_conn *c, void *buf, size_t len, int64_t deadline, int dir) {
  if (c == NULL || (buf == NULL && len > 0))
    return TT_EINVAL;
  int r = tt__block_check(tt__self());
  if (r != 0)
    return r;
  sock *s = &c->s;
  if ((r = sock_acquire(s)) != 0)
    return r;
  ssize_t n = 0;
  while (len > 0) {
    /* send, not write: a gone peer is EPIPE, never SIGPIPE */
    n = dir == TT__POLL_READ ? read(s->fd, buf, len) : send(s->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
      break;
    int e = errno;
    if (e == EINTR)
      continue;
    if (e != EAGAIN && e != EWOULDBLOCK) {
      n = err_of(e);
      break;
    }
    if ((r = tt__pollfd_wait(s->pd, dir, deadline)) != 0) {
      n = r;
      break;
    }
  }
  sock_release(s);
  return n;
}

/* Reads or writes all len bytes; *done (may be NULL) is what moved. A read that meets the end of
 * the stream first is TT_EEOF. */
static int conn_io_full(tt_conn *c, void *buf, size_t len, size_t *done, int64_t deadline,
                        int dir) {
  size_t moved = 0;
  int r = 0;
  if (c == NULL || (buf == NULL && len > 0))
    r = TT_EINVAL;
  while (r == 0 && moved < len) {
    ssize_t n = conn_io(c, (char *)buf + moved, len - moved, deadline, dir);
    if (n > 0)
      moved += (size_t)n;
    else
      r = n < 0 ? (int)n : dir == TT__POLL_READ ? TT_EEOF : TT_EIO;
  }
  if (done)
    *done = moved;
  return r;
}

ssize_t tt_conn_read_dl(tt_conn *c, void *buf, size_t len, int64_t deadline) {
  return conn_io(c, buf, len, deadline, TT__POLL_READ);
}

ssize_t tt_conn_read(tt_conn *c, void *buf, size_t len) {
  return conn_io(c, buf, len, TT_FOREVER, TT__POLL_READ);
}

int tt_conn_read_full_dl(tt_conn *c, void *buf, size_t len, size_t *done, int64_t deadline) {
  return conn_io_full(c, buf, len, done, deadline, TT__POLL_READ);
}

int tt_conn_read_full(tt_conn *c, void *buf, size_t len, size_t *done) {
  return conn_io_full(c, buf, len, done, TT_FOREVER, TT__POLL_READ);
}

ssize_t tt_conn_write_dl(tt_conn *c, const void *buf, size_t len, int64_t deadline) {
  return conn_io(c, (void *)buf, len, deadline, TT__POLL_WRITE);
}

ssize_t tt_conn_write(tt_conn *c, const void *buf, size_t len) {
  return conn_io(c, (void *)buf, len, TT_FOREVER, TT__POLL_WRITE);
}

int tt_conn_write_all_dl(tt_conn *c, const void *buf, size_t len, size_t *done, int64_t deadline) {
  return conn_io_full(c, (void *)buf, len, done, deadline, TT__POLL_WRITE);
}

int tt_conn_write_all(tt_conn *c, const void *buf, size_t len, size_t *done) {
  return conn_io_full(c, (void *)buf, len, done, TT_FOREVER, TT__POLL_WRITE);
}

int tt_conn_shutdown(tt_conn *c, int how) {
  if (c == NULL || how < TT_SHUT_RD || how > TT_SHUT_RDWR)
    return TT_EINVAL;
  int r = sock_acquire(&c->s);
  if (r != 0)
    return r;
  int sh = how == TT_SHUT_RD ? SHUT_RD : how == TT_SHUT_WR ? SHUT_WR : SHUT_RDWR;
  r = shutdown(c->s.fd, sh) == 0 ? 0 : err_of(errno);
  sock_release(&c->s);
  return r;
}

int tt_conn_close(tt_conn *c) { return sock_close(c ? &c->s : NULL); }
int tt_conn_retain(tt_conn *c) { return sock_retain(c ? &c->s : NULL); }

int tt_conn_release(tt_conn *c) {
  if (c == NULL)
    return TT_EINVAL;
  sock_release(&c->s);
  return 0;
}

int tt_conn_local_addr(tt_conn *c, char *buf, size_t len) {
  return sock_addr(c ? &c->s : NULL, false, buf, len);
}

int tt_conn_remote_addr(tt_conn *c, char *buf, size_t len) {
  return sock_addr(c ? &c->s : NULL, true, buf, len);
}

int tt_conn_fd(tt_conn *c) { return c ? c->s.fd : TT_EINVAL; }
