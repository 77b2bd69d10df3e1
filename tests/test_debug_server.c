/* SPDX-License-Identifier: MIT */
/* The debug endpoint's server (src/debug/server.c, http.c), driven over real loopback sockets by a
 * small client of our own and by the real `go tool pprof`: every endpoint's status, type and body
 * shape; Go's query semantics; hostile clients (too long, too large, garbage, too slow, gone
 * mid-response, too many); workers hogged by busy loops; the runtime stopped; the deadlock check
 * with the endpoint on. Clients run on plain threads (tt_blocking's, from a coroutine), so no
 * worker is blocked by a test's own socket calls. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* ---- A small HTTP client -------------------------------------------------------------------- */

typedef struct http_resp {
  int status; /* -1: no response (the connection was closed or reset first) */
  char *head; /* the status line and headers, NUL-terminated */
  char *body; /* the body, de-chunked when chunked, NUL-terminated */
  size_t body_len;
  bool chunked;
  bool complete; /* a chunked body ended with its last chunk */
} http_resp;

static void resp_free(http_resp *r) {
  free(r->head);
  free(r->body);
  memset(r, 0, sizeof *r);
}

static int64_t mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * TT_SEC + ts.tv_nsec;
}

/* Connects to the server's address (tt_debug_addr); -1 when it cannot. */
static int dial(void) {
  char addr[80];
  ASSERT_OK(tt_debug_addr(addr, sizeof addr));
  char *colon = strrchr(addr, ':');
  ASSERT(colon != NULL);
  *colon = '\0';
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  ASSERT(inet_pton(AF_INET, addr, &sa.sin_addr) == 1);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static bool send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    p += k;
    n -= (size_t)k;
  }
  return true;
}

/* Reads until EOF, an error or the deadline; returns the bytes (NUL-terminated). */
static char *read_all(int fd, size_t *len, int64_t deadline) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  ASSERT(buf != NULL);
  for (;;) {
    int64_t left = deadline - mono();
    if (left <= 0)
      break;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, (int)(left / TT_MSEC) + 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    if (n + 4096 > cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      ASSERT(buf != NULL);
    }
    ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    n += (size_t)k;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* A header's value in r->head (case-insensitive name), copied into a static buffer; NULL when
 * absent. */
static const char *hdr(const http_resp *r, const char *name) {
  static __thread char val[1024];
  size_t n = strlen(name);
  for (const char *l = r->head ? strchr(r->head, '\n') : NULL; l; l = strchr(l, '\n')) {
    l++;
    if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
      const char *v = l + n + 1;
      while (*v == ' ')
        v++;
      size_t k = strcspn(v, "\r\n");
      if (k >= sizeof val)
        k = sizeof val - 1;
      memcpy(val, v, k);
      val[k] = '\0';
      return val;
    }
  }
  return NULL;
}

static void parse_resp(char *raw, size_t n, http_resp *r) {
  memset(r, 0, sizeof *r);
  r->status = -1;
  char *end = strstr(raw, "\r\n\r\n");
  int code;
  if (end == NULL || sscanf(raw, "HTTP/1.%*d %d", &code) != 1) {
    r->head = strdup("");
    r->body = strdup("");
    return;
  }
  r->status = code;
  r->head = strndup(raw, (size_t)(end - raw) + 2);
  char *b = end + 4;
  size_t blen = n - (size_t)(b - raw);
  const char *te = hdr(r, "Transfer-Encoding");
  r->chunked = te && strcmp(te, "chunked") == 0;
  if (!r->chunked) {
    r->body = malloc(blen + 1);
    memcpy(r->body, b, blen);
    r->body[blen] = '\0';
    r->body_len = blen;
    r->complete = true;
    return;
  }
  r->body = malloc(blen + 1);
  size_t o = 0;
  char *p = b, *lim = b + blen;
  while (p < lim) {
    char *nl = memchr(p, '\n', (size_t)(lim - p));
    if (nl == NULL)
      break;
    unsigned long sz = strtoul(p, NULL, 16);
    p = nl + 1;
    if (sz == 0) {
      r->complete = true;
      break;
    }
    if ((size_t)(lim - p) < sz + 2)
      break;
    memcpy(r->body + o, p, sz);
    o += sz;
    p += sz + 2;
  }
  r->body[o] = '\0';
  r->body_len = o;
}

/* Sends req (raw) on a new connection and reads the whole response. */
static http_resp http_raw(const char *req) {
  http_resp r = {.status = -1};
  int fd = dial();
  if (fd < 0) {
    r.head = strdup("");
    r.body = strdup("");
    return r;
  }
  send_all(fd, req, strlen(req));
  size_t n;
  char *raw = read_all(fd, &n, mono() + (int64_t)(120 * TT_SEC * tt_test_slow()));
  close(fd);
  parse_resp(raw, n, &r);
  free(raw);
  return r;
}

static http_resp http_method(const char *method, const char *path) {
  char req[2048];
  snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tether-test\r\n\r\n",
           method, path);
  return http_raw(req);
}

/* Runs fn(arg) on a plain thread: tt_blocking's from a coroutine, else here. */
static void off_worker(intptr_t (*fn)(void *), void *arg) {
  if (tt_self() != 0) {
    intptr_t res;
    ASSERT_OK(tt_blocking(fn, arg, &res));
  } else {
    fn(arg);
  }
}

struct get_call {
  const char *method, *path;
  http_resp r;
};

static intptr_t get_body(void *arg) {
  struct get_call *g = arg;
  g->r = http_method(g->method, g->path);
  return 0;
}

static http_resp GET(const char *path) {
  struct get_call g = {.method = "GET", .path = path};
  off_worker(get_body, &g);
  return g.r;
}

static http_resp HEAD(const char *path) {
  struct get_call g = {.method = "HEAD", .path = path};
  off_worker(get_body, &g);
  return g.r;
}

#define ASSERT_STATUS(r, code)                                                                     \
  do {                                                                                             \
    if ((r).status != (code))                                                                      \
      tt_test_fail(__FILE__, __LINE__, "status %d, expected %d; head:\n%s\nbody:\n%.2000s",        \
                   (r).status, (code), (r).head, (r).body);                                        \
  } while (0)

#define ASSERT_TYPE(r, type)                                                                       \
  do {                                                                                             \
    const char *t_ = hdr(&(r), "Content-Type");                                                    \
    if (t_ == NULL || strcmp(t_, (type)) != 0)                                                     \
      tt_test_fail(__FILE__, __LINE__, "Content-Type %s, expected %s", t_ ? t_ : "(none)",         \
                   (type));                                                                        \
  } while (0)

static void serve_test(const tt_debug_opts *o) {
  tt_debug_opts d = {.addr = "127.0.0.1:0"};
  if (o == NULL)
    o = &d;
  ASSERT_OK(tt_debug_serve_opts(o));
}

/* ---- Coroutines to look at ------------------------------------------------------------------ */

/* Parked on a channel until it is closed. */
__attribute__((noinline)) static void dbg_parked_reader(void *ch) {
  int v;
  bool ok;
  tt_chan_recv(ch, &v, &ok);
  __asm__ volatile("");
}

static tt_chan *park_many(int64_t n) {
  tt_chan_opts co = {.mode = TT_CHAN_UNTRACKED, .name = "debug-test"};
  tt_chan *ch;
  ASSERT_OK(tt_chan_make_opt(&ch, sizeof(int), 0, &co));
  for (int64_t i = 0; i < n; i++)
    ASSERT_OK(tt_go(dbg_parked_reader, ch));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, n);
  return ch;
}

static void unpark(tt_chan *ch) {
  ASSERT_OK(tt_chan_close(ch));
  tt_test_await_alone();
  tt_chan_release(ch);
}

/* ---- The API -------------------------------------------------------------------------------- */

TEST(debug_serve_api_errors) {
  char buf[80];
  ASSERT_ERR(tt_debug_addr(buf, sizeof buf), TT_ENOTRUNNING);
  ASSERT_ERR(tt_debug_stop(), TT_ENOTRUNNING);
  /* Bad addresses. */
  const char *bad[] = {"nonsense",           "127.0.0.1",     "127.0.0.1:",  "127.0.0.1:99999",
                       "127.0.0.1:-1",       "1.2.3:80",      "[::1:80",     "[]:80",
                       "example.invalid:80", "127.0.0.1:80x", "256.0.0.1:80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int r = tt_debug_serve(bad[i]);
    if (r != TT_EINVAL)
      tt_test_fail(__FILE__, __LINE__, "tt_debug_serve(\"%s\") = %d (%s), expected TT_EINVAL",
                   bad[i], r, tt_strerror(r));
  }
  tt_debug_opts neg = {.addr = "127.0.0.1:0", .max_conns = -1};
  ASSERT_ERR(tt_debug_serve_opts(&neg), TT_EINVAL);
  neg = (tt_debug_opts){.addr = "127.0.0.1:0", .header_timeout = -5};
  ASSERT_ERR(tt_debug_serve_opts(&neg), TT_EINVAL);
  /* A port in use. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 1) == 0);
  socklen_t sl = sizeof sa;
  ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
  char busy[64];
  snprintf(busy, sizeof busy, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
  ASSERT_ERR(tt_debug_serve(busy), TT_EADDRINUSE);
  close(fd);
  /* Serving: a second server is refused; the address is reported. */
  serve_test(NULL);
  ASSERT_ERR(tt_debug_serve("127.0.0.1:0"), TT_EBUSY);
  ASSERT_OK(tt_debug_addr(buf, sizeof buf));
  ASSERT(strncmp(buf, "127.0.0.1:", 10) == 0 && atoi(buf + 10) > 0);
  ASSERT_ERR(tt_debug_addr(buf, 5), TT_EINVAL);
  ASSERT_ERR(tt_debug_addr(NULL, 0), TT_EINVAL);
  http_resp r = GET("/debug/pprof/");
  ASSERT_STATUS(r, 200);
  resp_free(&r);
  /* Stop, serve again (on the same port, now free), and it answers. */
  char again[80];
  snprintf(again, sizeof again, "%s", buf);
  ASSERT_OK(tt_debug_stop());
  ASSERT_ERR(tt_debug_stop(), TT_ENOTRUNNING);
  ASSERT_ERR(tt_debug_addr(buf, sizeof buf), TT_ENOTRUNNING);
  ASSERT_OK(tt_debug_serve(again));
  ASSERT_OK(tt_debug_addr(buf, sizeof buf));
  ASSERT_STR_EQ(buf, again);
  r = GET("/metrics");
  ASSERT_STATUS(r, 200);
  resp_free(&r);
  ASSERT_OK(tt_debug_stop());
  /* IPv6 loopback, where the machine has it. */
  int r6 = tt_debug_serve("[::1]:0");
  if (r6 == 0) {
    ASSERT_OK(tt_debug_addr(buf, sizeof buf));
    ASSERT(strncmp(buf, "[::1]:", 6) == 0);
    ASSERT_OK(tt_debug_stop());
  } else {
    ASSERT(r6 == TT_EADDRNOTAVAIL || r6 == TT_EAFNOSUPPORT);
  }
}

/* ---- Endpoints ------------------------------------------------------------------------------ */

static int endpoints_body(void *unused) {
  (void)unused;
  tt_chan *ch = park_many(5);
  http_resp r;

  r = GET("/debug/pprof/");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "text/html; charset=utf-8");
  ASSERT(r.chunked && r.complete);
  ASSERT_CONTAINS(r.body, "<a href='goroutine?debug=1'>goroutine</a>");
  ASSERT_CONTAINS(r.body, "<a href='goroutineleak?debug=1'>goroutineleak</a>");
  ASSERT_CONTAINS(r.body, "<a href=\"goroutine?debug=2\">full goroutine stack dump</a>");
  ASSERT(strstr(r.body, "<tr><td>6</td>") != NULL || strstr(r.body, "<tr><td>7</td>") != NULL);
  resp_free(&r);

  r = GET("/debug/pprof/goroutine?debug=1");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "text/plain; charset=utf-8");
  ASSERT(hdr(&r, "Content-Disposition") == NULL);
  ASSERT(strncmp(r.body, "goroutine profile: total ", 25) == 0);
  ASSERT_CONTAINS(r.body, "\n5 @ ");
  ASSERT_CONTAINS(r.body, "dbg_parked_reader");
  resp_free(&r);

  r = GET("/debug/pprof/goroutine?debug=2");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "text/plain; charset=utf-8");
  ASSERT(strncmp(r.body, "goroutine ", 10) == 0);
  ASSERT_CONTAINS(r.body, "[chan receive]:\n");
  ASSERT_CONTAINS(r.body, "dbg_parked_reader");
  resp_free(&r);

  /* debug absent or 0: the proto, as an attachment. Go reads debug with strconv.Atoi and ignores
   * its error, so a value that is not a number is 0 too. */
  const char *proto[] = {"/debug/pprof/goroutine", "/debug/pprof/goroutine?debug=0",
                         "/debug/pprof/goroutine?debug=abc"};
  for (int i = 0; i < 3; i++) {
    r = GET(proto[i]);
    ASSERT_STATUS(r, 200);
    ASSERT_TYPE(r, "application/octet-stream");
    ASSERT_STR_EQ(hdr(&r, "Content-Disposition"), "attachment; filename=\"goroutine\"");
    ASSERT(r.body_len > 20);
#ifdef TT_HAVE_ZLIB
    ASSERT((unsigned char)r.body[0] == 0x1f && (unsigned char)r.body[1] == 0x8b);
#endif
    resp_free(&r);
  }

  /* seconds=, as Go's serveDeltaProfile checks it. */
  r = GET("/debug/pprof/goroutine?seconds=abc");
  ASSERT_STATUS(r, 400);
  ASSERT_STR_EQ(hdr(&r, "X-Go-Pprof"), "1");
  ASSERT_STR_EQ(r.body, "invalid value for \"seconds\" - must be a positive integer\n");
  resp_free(&r);
  r = GET("/debug/pprof/goroutine?seconds=0");
  ASSERT_STATUS(r, 400);
  resp_free(&r);
  r = GET("/debug/pprof/goroutine?seconds=1&debug=1");
  ASSERT_STATUS(r, 400);
  ASSERT_STR_EQ(r.body, "seconds and debug params are incompatible\n");
  resp_free(&r);
  r = GET("/debug/pprof/goroutineleak?seconds=1");
  ASSERT_STATUS(r, 400);
  ASSERT_STR_EQ(r.body, "\"seconds\" parameter is not supported for this profile type\n");
  resp_free(&r);
  r = GET("/debug/pprof/goroutine?seconds=1");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "application/octet-stream");
  ASSERT_STR_EQ(hdr(&r, "Content-Disposition"), "attachment; filename=\"goroutine-delta\"");
  resp_free(&r);

  r = GET("/debug/tether/coroutines.json");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "application/json");
  ASSERT(r.body[0] == '{' || r.body[0] == '[');
  ASSERT_CONTAINS(r.body, "dbg_parked_reader");
  resp_free(&r);

  r = GET("/debug/tether/suspects?count=5&age=0");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "text/plain; charset=utf-8");
  ASSERT(strncmp(r.body, "tether: leak suspects: ", 23) == 0);
  ASSERT_CONTAINS(r.body, "dbg_parked_reader");
  resp_free(&r);
  r = GET("/debug/tether/suspects?count=x");
  ASSERT_STATUS(r, 400);
  resp_free(&r);

  r = GET("/metrics");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "text/plain; version=0.0.4; charset=utf-8");
  ASSERT_CONTAINS(r.body, "tether_up 1\n");
  ASSERT_CONTAINS(r.body, "tether_running 1\n");
  resp_free(&r);

  r = GET("/debug/tether/");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "text/html; charset=utf-8");
  ASSERT_CONTAINS(r.body, "<html");
  resp_free(&r);

  r = GET("/debug/tether/groups.json?limit=10");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "application/json");
  ASSERT(r.body[0] == '{');
  resp_free(&r);

  /* HEAD: the headers, no body. */
  r = HEAD("/metrics");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "text/plain; version=0.0.4; charset=utf-8");
  ASSERT_EQ(r.body_len, 0);
  resp_free(&r);
  r = HEAD("/debug/pprof/goroutine?debug=2");
  ASSERT_STATUS(r, 200);
  ASSERT_EQ(r.body_len, 0);
  resp_free(&r);

  /* Other methods, unknown paths, a subtree without its slash. */
  r = (struct get_call){0}.r;
  struct get_call g = {.method = "POST", .path = "/metrics"};
  off_worker(get_body, &g);
  ASSERT_STATUS(g.r, 405);
  ASSERT_STR_EQ(hdr(&g.r, "Allow"), "GET, HEAD");
  resp_free(&g.r);
  g = (struct get_call){.method = "DELETE", .path = "/nowhere"};
  off_worker(get_body, &g);
  ASSERT_STATUS(g.r, 405);
  resp_free(&g.r);
  r = GET("/nowhere");
  ASSERT_STATUS(r, 404);
  ASSERT_STR_EQ(r.body, "404 page not found\n");
  resp_free(&r);
  r = GET("/debug/pprof/heap");
  ASSERT_STATUS(r, 404);
  resp_free(&r);
  r = GET("/debug/pprof?debug=1");
  ASSERT_STATUS(r, 301);
  ASSERT_STR_EQ(hdr(&r, "Location"), "/debug/pprof/?debug=1");
  resp_free(&r);
  /* Escapes in the path are decoded; an absolute-form target is served too. */
  r = GET("/debug/%70prof/goroutine?debug=1");
  ASSERT_STATUS(r, 200);
  resp_free(&r);
  g.r = http_raw("GET http://localhost/metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
  ASSERT_STATUS(g.r, 200);
  resp_free(&g.r);

  /* HTTP/1.0: no chunks, the body ends with the connection. */
  struct raw_call {
    const char *req;
    http_resp r;
  };
  r = http_raw("GET /debug/pprof/goroutine?debug=1 HTTP/1.0\r\n\r\n");
  ASSERT_STATUS(r, 200);
  ASSERT(!r.chunked);
  ASSERT(strncmp(r.body, "goroutine profile: total ", 25) == 0);
  resp_free(&r);

  unpark(ch);
  return 0;
}

TEST(debug_endpoints) {
  serve_test(NULL);
  tt_test_run(endpoints_body, NULL, 2);
  ASSERT_OK(tt_debug_stop());
}

/* The endpoint outlives tt_run: the dumps answer 503 while the runtime is stopped, the rest
 * answers as usual, and a run started later is served. TT_DEBUG_ADDR is ignored while serving. */
static int stopped_body(void *unused) {
  (void)unused;
  http_resp r = GET("/debug/pprof/goroutine?debug=1");
  ASSERT_STATUS(r, 200);
  resp_free(&r);
  return 0;
}

TEST(debug_runtime_stopped) {
  serve_test(NULL);
  const char *dumps[] = {"/debug/pprof/goroutine?debug=2",     "/debug/pprof/goroutine",
                         "/debug/pprof/goroutineleak?debug=1", "/debug/tether/coroutines.json",
                         "/debug/tether/groups.json",          "/debug/tether/suspects"};
  for (int round = 0; round < 2; round++) {
    for (size_t i = 0; i < sizeof dumps / sizeof dumps[0]; i++) {
      http_resp r = GET(dumps[i]);
      ASSERT_STATUS(r, 503);
      ASSERT_STR_EQ(r.body, "tether runtime not running\n");
      resp_free(&r);
    }
    http_resp r = GET("/metrics");
    ASSERT_STATUS(r, 200);
    ASSERT_CONTAINS(r.body, "tether_running 0\n");
    resp_free(&r);
    r = GET("/debug/pprof/");
    ASSERT_STATUS(r, 200);
    resp_free(&r);
    setenv("TT_DEBUG_ADDR", "127.0.0.1:1", 1); /* already serving: ignored */
    tt_test_run(stopped_body, NULL, 2);
    unsetenv("TT_DEBUG_ADDR");
  }
  ASSERT_OK(tt_debug_stop());
}

/* TT_DEBUG_ADDR starts the endpoint at tt_run's start. */
static int env_body(void *unused) {
  (void)unused;
  char buf[80];
  ASSERT_OK(tt_debug_addr(buf, sizeof buf));
  http_resp r = GET("/metrics");
  ASSERT_STATUS(r, 200);
  resp_free(&r);
  return 0;
}

TEST(debug_env_addr) {
  setenv("TT_DEBUG_ADDR", "127.0.0.1:0", 1);
  tt_test_run(env_body, NULL, 2);
  unsetenv("TT_DEBUG_ADDR");
  ASSERT_OK(tt_debug_stop()); /* it outlived the run */
}

/* ---- go tool pprof -------------------------------------------------------------------------- */

/* The go command, or NULL (with a message) where the real clients are not run. */
static char *find_go(void) { return tt_test_client("go"); }

struct pprof_call {
  const char *go;
  const char *url;
  int status;
  char *out;
};

static intptr_t pprof_body(void *arg) {
  struct pprof_call *p = arg;
  char timeout_s[32];
  snprintf(timeout_s, sizeof timeout_s, "%d", (int)(120 * tt_test_slow()));
  char *argv[] = {"/usr/bin/timeout", timeout_s, (char *)p->go, "tool", "pprof", "-top",
                  (char *)p->url,     NULL};
  char *env[] = {"PPROF_BINARY_PATH=/nonexistent", "PPROF_TMPDIR=/tmp", "HOME=/tmp", NULL};
  p->status = tt_test_spawn(argv, env, &p->out);
  return 0;
}

/* Runs `go tool pprof -top` on url (or a file), which must succeed and show a row for
 * dbg_parked_reader with cum 7; returns its output (malloc'd). */
static char *pprof_top_seven(const char *go, const char *url) {
  struct pprof_call p = {.go = go, .url = url};
  off_worker(pprof_body, &p);
  if (!(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 0))
    tt_test_fail(__FILE__, __LINE__, "go tool pprof -top %s: status %#x; output:\n%s", url,
                 p.status, p.out);
  printf("%s", p.out);
  bool seven = false;
  for (const char *l = p.out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
    long long flat, cum;
    double a, b, c;
    char fn[256];
    if (sscanf(l, " %lld %lf%% %lf%% %lld %lf%% %255s", &flat, &a, &b, &cum, &c, fn) == 6 &&
        strcmp(fn, "dbg_parked_reader") == 0)
      seven = cum == 7;
  }
  if (!seven)
    tt_test_fail(__FILE__, __LINE__, "no row dbg_parked_reader with cum 7:\n%s", p.out);
  return p.out;
}

static int go_pprof_body(void *arg) {
  const char *go = arg;
  tt_chan *ch = park_many(7);
  char addr[80], url[160];
  ASSERT_OK(tt_debug_addr(addr, sizeof addr));
  snprintf(url, sizeof url, "http://%s/debug/pprof/goroutine", addr);
  char *out = pprof_top_seven(go, url);
  /* Our function names, with their counts: seven parked readers. */
  ASSERT_CONTAINS(out, "Type: goroutine");
  ASSERT_CONTAINS(out, "go_pprof_body");
  free(out);
  unpark(ch);
  return 0;
}

TEST(debug_go_tool_pprof) {
  char *go = find_go();
  if (go == NULL)
    return;
  serve_test(NULL);
  tt_test_run(go_pprof_body, go, 2);
  ASSERT_OK(tt_debug_stop());
  free(go);
}

/* ---- goroutineleak -------------------------------------------------------------------------- */

__attribute__((noinline)) static void dbg_leaky_receiver(void *ch) {
  int v;
  bool ok;
  tt_chan_recv(ch, &v, &ok); /* nobody will ever send: returns only at the shut-down */
  tt_chan_release(ch);
}

static int leak_body(void *unused) {
  (void)unused;
  tt_chan *ch = tt_chan_make(sizeof(int), 0);
  tt_go_opts o = {.share = &ch, .nshare = 1, .share_mode = TT_SHARE_COPY};
  ASSERT_OK(tt_go_opt(dbg_leaky_receiver, ch, &o, NULL));
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(tt_chan_release(ch)); /* the last live way to wake it goes */

  http_resp r = GET("/debug/pprof/goroutineleak?debug=1");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "text/plain; charset=utf-8");
  ASSERT(hdr(&r, "X-Tether-Leak-Proof") == NULL); /* the proof ran */
  ASSERT(strncmp(r.body, "goroutineleak profile: total 1\n", 31) == 0);
  ASSERT_CONTAINS(r.body, "dbg_leaky_receiver");
  resp_free(&r);
  r = GET("/debug/pprof/goroutineleak?debug=2");
  ASSERT_STATUS(r, 200);
  ASSERT_CONTAINS(r.body, "[chan receive (leaked)]");
  ASSERT_CONTAINS(r.body, "dbg_leaky_receiver");
  ASSERT(strstr(r.body, "leak_body") == NULL || strstr(r.body, "created by leak_body") != NULL);
  resp_free(&r);
  r = GET("/debug/pprof/goroutineleak");
  ASSERT_STATUS(r, 200);
  ASSERT_TYPE(r, "application/octet-stream");
  ASSERT_STR_EQ(hdr(&r, "Content-Disposition"), "attachment; filename=\"goroutineleak\"");
  resp_free(&r);
  /* The index counts it. */
  r = GET("/debug/pprof/");
  ASSERT_CONTAINS(r.body, "<tr><td>1</td><td><a href='goroutineleak?debug=1'>");
  resp_free(&r);
  return 0;
}

TEST(debug_goroutineleak) {
  serve_test(NULL);
  tt_run_opts o = {.procs = 2};
  ASSERT_OK(tt_test_run_unchecked(leak_body, NULL, &o, "it leaves a coroutine leaked on purpose"));
  ASSERT_OK(tt_debug_stop());
}

/* ---- Hogged workers -------------------------------------------------------------------------- */

static _Atomic int hog_stop;
static _Atomic int hog_spinning;

/* Runs without ever yielding until told to stop. */
__attribute__((noinline)) static void dbg_hog(void *unused) {
  (void)unused;
  atomic_fetch_add_explicit(&hog_spinning, 1, memory_order_relaxed);
  while (!atomic_load_explicit(&hog_stop, memory_order_relaxed))
    __asm__ volatile("" ::: "memory");
}

struct hog_client {
  bool ok;
  char why[2048];
};

static void *hog_client_main(void *arg) {
  struct hog_client *hc = arg;
  /* Wait for every worker to be taken (the main coroutine spins too). */
  while (atomic_load_explicit(&hog_spinning, memory_order_relaxed) < 1)
    usleep(1000);
  usleep(20000);
  http_resp r = http_method("GET", "/debug/pprof/goroutine?debug=2");
  if (r.status != 200 || strncmp(r.body, "goroutine ", 10) != 0 || !r.complete) {
    snprintf(hc->why, sizeof hc->why, "debug=2: status %d, body %.200s", r.status, r.body);
    goto out;
  }
#if !defined(TT_TEST_SANITIZED)
  /* A coroutine running elsewhere is captured by a signal (TSan delays it in busy loops). */
  if (strstr(r.body, "dbg_hog") == NULL) {
    snprintf(hc->why, sizeof hc->why, "debug=2 does not show dbg_hog:\n%.1500s", r.body);
    goto out;
  }
#endif
  resp_free(&r);
  r = http_method("GET", "/metrics");
  if (r.status != 200 || strstr(r.body, "tether_running 1") == NULL) {
    snprintf(hc->why, sizeof hc->why, "/metrics: status %d, body %.200s", r.status, r.body);
    goto out;
  }
  resp_free(&r);
  /* The proof cannot stop the world: the verdicts already known, and a header saying so. */
  r = http_method("GET", "/debug/pprof/goroutineleak?debug=1");
  const char *proof = hdr(&r, "X-Tether-Leak-Proof");
  if (r.status != 200 || proof == NULL || strstr(proof, "not run") == NULL ||
      strncmp(r.body, "goroutineleak profile: total 0", 30) != 0) {
    snprintf(hc->why, sizeof hc->why, "goroutineleak: status %d, proof %s, body %.200s", r.status,
             proof ? proof : "(none)", r.body);
    goto out;
  }
  hc->ok = true;
out:
  resp_free(&r);
  atomic_store_explicit(&hog_stop, 1, memory_order_relaxed);
  return NULL;
}

static int hog_body(void *unused) {
  (void)unused;
  struct hog_client hc = {0};
  pthread_t t;
  ASSERT(pthread_create(&t, NULL, hog_client_main, &hc) == 0);
  int procs = tt_procs();
  for (int i = 0; i < procs; i++)
    ASSERT_OK(tt_go(dbg_hog, NULL));
  dbg_hog(NULL); /* this worker too */
  pthread_join(t, NULL);
  if (!hc.ok)
    tt_test_fail(__FILE__, __LINE__, "%s", hc.why);
  tt_test_await_alone();
  return 0;
}

TEST(debug_hogged_workers) {
  serve_test(NULL);
  tt_test_run(hog_body, NULL, 2);
  ASSERT_OK(tt_debug_stop());
}

/* ---- Hostile clients ------------------------------------------------------------------------ */

static char *repeat(char c, size_t n) {
  char *p = malloc(n + 1);
  memset(p, c, n);
  p[n] = '\0';
  return p;
}

TEST(debug_hostile_clients) {
  int64_t timeout = (int64_t)(500 * TT_MSEC * tt_test_slow());
  tt_debug_opts o = {.addr = "127.0.0.1:0", .header_timeout = timeout};
  ASSERT_OK(tt_debug_serve_opts(&o));
  char *req = malloc(64 << 10);

  /* A request line over 8 KiB. */
  char *path = repeat('a', 9000);
  snprintf(req, 64 << 10, "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", path);
  http_resp r = http_raw(req);
  ASSERT_STATUS(r, 414);
  resp_free(&r);
  /* ... which is refused before its end arrives. */
  snprintf(req, 64 << 10, "GET /%s", path);
  r = http_raw(req);
  ASSERT_STATUS(r, 414);
  resp_free(&r);
  free(path);

  /* Headers over 16 KiB, and over 100 of them. */
  char *big = repeat('b', 17000);
  snprintf(req, 64 << 10, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
  r = http_raw(req);
  ASSERT_STATUS(r, 431);
  resp_free(&r);
  free(big);
  size_t n = (size_t)snprintf(req, 64 << 10, "GET /metrics HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 101; i++)
    n += (size_t)snprintf(req + n, (64 << 10) - n, "X-H%d: %d\r\n", i, i);
  snprintf(req + n, (64 << 10) - n, "\r\n");
  r = http_raw(req);
  ASSERT_STATUS(r, 431);
  resp_free(&r);
  /* 99 headers are fine. */
  n = (size_t)snprintf(req, 64 << 10, "GET /metrics HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 98; i++)
    n += (size_t)snprintf(req + n, (64 << 10) - n, "X-H%d: %d\r\n", i, i);
  snprintf(req + n, (64 << 10) - n, "\r\n");
  r = http_raw(req);
  ASSERT_STATUS(r, 200);
  resp_free(&r);

  /* Garbage and malformed requests: 400 (or 505 for another HTTP). */
  struct {
    const char *req;
    int status;
  } bad[] = {
      {"\x01\x02\x03 garbage \xff\r\n\r\n", 400},
      {"GET\r\n\r\n", 400},
      {"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\n\r\n", 400}, /* no Host */
      {"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
      {"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /a%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"GET /metrics FTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    r = http_raw(bad[i].req);
    if (r.status != bad[i].status)
      tt_test_fail(__FILE__, __LINE__, "request %zu (%.40s): status %d, expected %d", i, bad[i].req,
                   r.status, bad[i].status);
    resp_free(&r);
  }
  /* Bare LF line ends are accepted, as Go accepts them. */
  r = http_raw("GET /metrics HTTP/1.1\nHost: x\n\n");
  ASSERT_STATUS(r, 200);
  resp_free(&r);

  /* A slow client, a byte at a time: 408 once the header timeout has passed since it connected. */
  int fd = dial();
  ASSERT(fd >= 0);
  const char *slow = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  int64_t t0 = mono();
  int got = -1;
  char resp[4096];
  for (size_t i = 0; slow[i]; i++) {
    if (!send_all(fd, slow + i, 1))
      break;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(timeout / TT_MSEC / 4) + 1) > 0) {
      ssize_t k = recv(fd, resp, sizeof resp - 1, 0);
      if (k > 0) {
        resp[k] = '\0';
        ASSERT(sscanf(resp, "HTTP/1.1 %d", &got) == 1);
      }
      break;
    }
  }
  int64_t took = mono() - t0;
  close(fd);
  ASSERT_EQ(got, 408);
  ASSERT_GE(took, timeout - 10 * TT_MSEC);
  ASSERT_LT(took, timeout * 2 + (int64_t)(2 * TT_SEC * tt_test_slow()));
  /* A client that connects and says nothing gets the same. */
  fd = dial();
  size_t len;
  char *all = read_all(fd, &len, mono() + timeout * 4 + 10 * TT_SEC);
  close(fd);
  ASSERT(strncmp(all, "HTTP/1.1 408 ", 13) == 0);
  free(all);

  /* The server is still there. */
  r = http_method("GET", "/metrics");
  ASSERT_STATUS(r, 200);
  resp_free(&r);
  free(req);
  ASSERT_OK(tt_debug_stop());
}

/* A client that goes away in the middle of a big dump: the responder stops at its next write, the
 * server goes on, and the response slot is free again (max_responses = 1). */
struct disc_call {
  int64_t n;
  int reads;
};

static intptr_t disconnect_client(void *arg) {
  struct disc_call *d = arg;
  for (int round = 0; round < 3; round++) {
    /* The previous round's responder may still be finishing (one slot): 503 until it is. */
    int64_t give_up = mono() + (int64_t)(60 * TT_SEC * tt_test_slow());
    int fd;
    char buf[8192];
    size_t got = 0;
    for (;;) {
      fd = dial();
      ASSERT(fd >= 0);
      const char *req = "GET /debug/pprof/goroutine?debug=2 HTTP/1.1\r\nHost: x\r\n\r\n";
      ASSERT(send_all(fd, req, strlen(req)));
      ssize_t k;
      while ((k = recv(fd, buf, sizeof buf, 0)) < 0 && errno == EINTR)
        ;
      ASSERT(k > 12);
      if (strncmp(buf, "HTTP/1.1 200 ", 13) == 0) {
        got = (size_t)k;
        break;
      }
      ASSERT(strncmp(buf, "HTTP/1.1 503 ", 13) == 0);
      close(fd);
      ASSERT(mono() < give_up);
      usleep(5000);
    }
    /* Read a little of the body, then leave: with a reset the second round. */
    while (got < 16384) {
      ssize_t k = recv(fd, buf, sizeof buf, 0);
      if (k < 0 && errno == EINTR)
        continue;
      ASSERT(k > 0);
      got += (size_t)k;
    }
    if (round == 1) {
      struct linger lg = {.l_onoff = 1, .l_linger = 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
    d->reads++;
  }
  /* The slot comes back: a request is answered whole (after a few 503s at most). */
  int64_t give_up = mono() + (int64_t)(60 * TT_SEC * tt_test_slow());
  for (;;) {
    http_resp r = http_method("GET", "/debug/pprof/goroutine?debug=1");
    if (r.status == 200) {
      ASSERT(r.complete);
      char want[64];
      snprintf(want, sizeof want, "\n%lld @ ", (long long)d->n);
      ASSERT_CONTAINS(r.body, want);
      resp_free(&r);
      break;
    }
    ASSERT_STATUS(r, 503);
    resp_free(&r);
    ASSERT(mono() < give_up);
    usleep(10000);
  }
  return 0;
}

static int disconnect_body(void *unused) {
  (void)unused;
  struct disc_call d = {.n = SCALED(100000, 1000)};
  tt_chan *ch = park_many(d.n);
  off_worker(disconnect_client, &d);
  ASSERT_EQ(d.reads, 3);
  unpark(ch);
  return 0;
}

TEST(debug_client_disconnects_mid_response) {
  tt_debug_opts o = {.addr = "127.0.0.1:0", .max_responses = 1};
  ASSERT_OK(tt_debug_serve_opts(&o));
  tt_test_run(disconnect_body, NULL, 2);
  ASSERT_OK(tt_debug_stop());
}

/* A client that stops reading: dropped after the write timeout without progress. */
static intptr_t stalled_client(void *arg) {
  int64_t n = *(int64_t *)arg;
  int fd = dial();
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  const char *req = "GET /debug/pprof/goroutine?debug=2 HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT(send_all(fd, req, strlen(req)));
  /* Never read: the server's writes stall, and it gives up; then the slot is free again. */
  int64_t give_up = mono() + (int64_t)(60 * TT_SEC * tt_test_slow());
  for (;;) {
    usleep(50000);
    http_resp r = http_method("GET", "/metrics");
    int st = r.status;
    resp_free(&r);
    if (st == 200)
      break;
    ASSERT_EQ(st, 503);
    ASSERT(mono() < give_up);
  }
  /* What it got ends without the last chunk: the response was cut off, and the connection reset
   * (when it was too big for the sockets' buffers, as 10,000 coroutines' tracebacks are). */
  size_t len;
  char *raw = read_all(fd, &len, mono() + (int64_t)(60 * TT_SEC * tt_test_slow()));
  http_resp r;
  parse_resp(raw, len, &r);
  free(raw);
  ASSERT_STATUS(r, 200);
  if (n >= 10000)
    ASSERT(!r.complete);
  resp_free(&r);
  close(fd);
  return 0;
}

static int stalled_body(void *unused) {
  (void)unused;
  int64_t n = SCALED(20000, 1000);
  tt_chan *ch = park_many(n);
  off_worker(stalled_client, &n);
  unpark(ch);
  return 0;
}

TEST(debug_stalled_client_times_out) {
  tt_debug_opts o = {.addr = "127.0.0.1:0", .max_responses = 1, .write_timeout = 300 * TT_MSEC};
  ASSERT_OK(tt_debug_serve_opts(&o));
  tt_test_run(stalled_body, NULL, 2);
  ASSERT_OK(tt_debug_stop());
}

/* 200 connections at once: at most max_conns are served, the others get 503 or are closed, none
 * hangs, and the server answers afterwards. */
TEST(debug_many_connections) {
  tt_debug_opts o = {.addr = "127.0.0.1:0", .max_conns = 64, .max_responses = 4};
  ASSERT_OK(tt_debug_serve_opts(&o));
  enum { N = 200 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = dial();
    ASSERT(fds[i] >= 0);
  }
  const char *req = "GET /debug/pprof/ HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < N; i++)
    send_all(fds[i], req, strlen(req)); /* may fail: the server closed it */
  int ok = 0, busy = 0, closed = 0;
  int64_t deadline = mono() + (int64_t)(60 * TT_SEC * tt_test_slow());
  for (int i = 0; i < N; i++) {
    size_t n;
    char *raw = read_all(fds[i], &n, deadline);
    close(fds[i]);
    http_resp r;
    parse_resp(raw, n, &r);
    free(raw);
    if (r.status == 200)
      ok++;
    else if (r.status == 503)
      busy++;
    else if (r.status == -1)
      closed++;
    else
      tt_test_fail(__FILE__, __LINE__, "connection %d: status %d", i, r.status);
    resp_free(&r);
  }
  ASSERT(mono() < deadline); /* nobody hung */
  printf("200: %d, 503: %d, closed: %d\n", ok, busy, closed);
  ASSERT_GE(ok, 1);
  ASSERT_LE(ok, 64);
  ASSERT_GE(busy, 1);
  ASSERT_EQ(ok + busy + closed, N);
  http_resp r = http_method("GET", "/debug/pprof/");
  ASSERT_STATUS(r, 200);
  resp_free(&r);
  ASSERT_OK(tt_debug_stop());
}

/* tt_debug_stop aborts the responses being written and joins. */
static intptr_t stop_client(void *unused) {
  (void)unused;
  int fd = dial();
  const char *req = "GET /debug/pprof/goroutine?debug=2 HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT(send_all(fd, req, strlen(req)));
  char buf[256];
  ASSERT(recv(fd, buf, sizeof buf, 0) > 0); /* the response has begun; then never read again */
  int64_t t0 = mono();
  ASSERT_OK(tt_debug_stop());
  ASSERT_LT(mono() - t0, (int64_t)(10 * TT_SEC * tt_test_slow()));
  close(fd);
  ASSERT_ERR(tt_debug_addr(buf, sizeof buf), TT_ENOTRUNNING);
  return 0;
}

static int stop_body(void *unused) {
  (void)unused;
  tt_chan *ch = park_many(SCALED(20000, 1000));
  off_worker(stop_client, NULL);
  unpark(ch);
  return 0;
}

TEST(debug_stop_aborts_responses) {
  serve_test(NULL);
  tt_test_run(stop_body, NULL, 2);
}

/* ---- The deadlock check with the endpoint on ------------------------------------------------- */

TEST(debug_deadlock_still_detected) {
  char path[4200];
  snprintf(path, sizeof path, "%s/crash-debug_deadlock", tt_test_bindir());
  char *argv[] = {path, NULL};
  for (int env = 0; env < 2; env++) {
    char *envs[] = {"TT_DEBUG_ADDR=127.0.0.1:0", NULL};
    char *out;
    int st = tt_test_spawn(argv, env ? envs : NULL, &out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 2)
      tt_test_fail(__FILE__, __LINE__, "status %#x, output:\n%s", st, out);
    ASSERT_CONTAINS(out, "serving on 127.0.0.1:");
    ASSERT_CONTAINS(out, "fatal error: all goroutines are asleep - deadlock!");
    free(out);
  }
}

/* ---- The parser, the query reader, the callback sink (internal) ---------------------------- */

#include "../src/debug/http_int.h"
#include "../src/diag/diag_int.h"

/* Feeds text to the parser in pieces of `step` bytes, as reads would deliver it; returns what the
 * parser returned once it decided (or 0 when it still wanted more at the end). */
static int parse_in_steps(const char *text, size_t step, tt__http_req *rq) {
  static char buf[TT__HTTP_BUF + 1];
  memset(rq, 0, sizeof *rq);
  size_t n = strlen(text), len = 0;
  while (len < n) {
    size_t k = n - len < step ? n - len : step;
    if (len + k > TT__HTTP_BUF)
      return -1;
    memcpy(buf + len, text + len, k);
    len += k;
    int st = tt__http_parse(buf, len, rq);
    if (st != 0)
      return st;
  }
  return 0;
}

TEST(debug_http_parser) {
  tt__http_req rq;
  const char *get = "GET /debug/pprof/goroutine?debug=2&x=%41+b HTTP/1.1\r\nHost: h\r\n"
                    "Accept: */*\r\n\r\n";
  size_t steps[] = {1, 2, 7, 4096};
  for (size_t i = 0; i < 4; i++) {
    ASSERT_EQ(parse_in_steps(get, steps[i], &rq), 1);
    ASSERT_EQ(rq.method, TT__HTTP_GET);
    ASSERT_EQ(rq.minor, 1);
    ASSERT_STR_EQ(rq.path, "/debug/pprof/goroutine");
    ASSERT_STR_EQ(rq.query, "debug=2&x=%41+b");
    ASSERT_EQ(rq.nheaders, 2);
  }
  /* Incomplete: more wanted. */
  ASSERT_EQ(parse_in_steps("GET / HTTP/1.1\r\nHost: h\r\n", 3, &rq), 0);
  ASSERT_EQ(parse_in_steps("HEAD /metrics HTTP/1.0\r\n\r\n", 1, &rq), 1);
  ASSERT_EQ(rq.method, TT__HTTP_HEAD);
  ASSERT_EQ(rq.minor, 0);
  /* A leading blank line is ignored; a malformed request line is refused before any header. */
  ASSERT_EQ(parse_in_steps("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 1, &rq), 1);
  ASSERT_EQ(parse_in_steps("GET /\r\n", 1, &rq), 400);
  ASSERT_EQ(parse_in_steps("PUT / HTTP/1.1\r\nHost: h\r\n\r\n", 5, &rq), 405);
  ASSERT_EQ(parse_in_steps("PUT / HTTP/1.1\r\nHost: h\r\n", 5, &rq), 0); /* 405 waits */
  ASSERT_EQ(parse_in_steps("GET / HTTP/3.0\r\n", 1, &rq), 505);
  ASSERT_EQ(parse_in_steps("GET / HTTP/1.1\r\nHo\x01st: h\r\n\r\n", 64, &rq), 400);
  ASSERT_EQ(parse_in_steps("GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", 64, &rq), 400);
  /* Limits, at their edges. */
  char *line = malloc(TT__HTTP_BUF + 64);
  int n = snprintf(line, 64, "GET /");
  memset(line + n, 'a', TT__HTTP_LINE_MAX - 14 - (size_t)n);
  strcpy(line + TT__HTTP_LINE_MAX - 14, " HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(strchr(line, '\r') - line, TT__HTTP_LINE_MAX - 5); /* under the limit */
  ASSERT_EQ(parse_in_steps(line, 1000, &rq), 1);
  ASSERT(rq.path_long); /* a path this long names nothing */
  memset(line + n, 'a', TT__HTTP_LINE_MAX + 10);
  line[n + TT__HTTP_LINE_MAX + 10] = '\0';
  ASSERT_EQ(parse_in_steps(line, 1000, &rq), 414);
  n = snprintf(line, 64, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
  memset(line + n, 'v', TT__HTTP_HEADERS_MAX);
  line[n + TT__HTTP_HEADERS_MAX] = '\0';
  ASSERT_EQ(parse_in_steps(line, 1000, &rq), 431); /* before the header's end arrives */
  free(line);
}

TEST(debug_http_query) {
  char v[64];
  ASSERT(tt__http_query("debug=2&seconds=5", "seconds", v, sizeof v));
  ASSERT_STR_EQ(v, "5");
  ASSERT(tt__http_query("debug=1&debug=2", "debug", v, sizeof v));
  ASSERT_STR_EQ(v, "1"); /* the first, as FormValue */
  ASSERT(tt__http_query("q=a+b%2Fc&x", "q", v, sizeof v));
  ASSERT_STR_EQ(v, "a b/c");
  ASSERT(tt__http_query("q=a&x", "x", v, sizeof v));
  ASSERT_STR_EQ(v, "");
  ASSERT(tt__http_query("%64ebug=3", "debug", v, sizeof v));
  ASSERT_STR_EQ(v, "3");
  ASSERT(!tt__http_query("debugx=1&xdebug=2", "debug", v, sizeof v));
  ASSERT(!tt__http_query("", "debug", v, sizeof v));
  ASSERT(!tt__http_query(NULL, "debug", v, sizeof v));
  ASSERT(!tt__http_query("debug=%zz", "debug", v, sizeof v)); /* Go drops an undecodable pair */
  int64_t x;
  ASSERT(tt__http_atoi("42", &x) && x == 42);
  ASSERT(tt__http_atoi("-7", &x) && x == -7);
  ASSERT(tt__http_atoi("+3", &x) && x == 3);
  ASSERT(tt__http_atoi("9223372036854775807", &x) && x == INT64_MAX);
  ASSERT(tt__http_atoi("-9223372036854775808", &x) && x == INT64_MIN);
  ASSERT(!tt__http_atoi("9223372036854775808", &x));
  ASSERT(!tt__http_atoi("", &x));
  ASSERT(!tt__http_atoi("-", &x));
  ASSERT(!tt__http_atoi("1x", &x));
  ASSERT(!tt__http_atoi(" 1", &x));
}

struct cb_log {
  char text[256];
  size_t len;
  int calls;
  int fail_at; /* the call that fails (1-based), 0: none */
};

static int cb_collect(void *arg, const char *p, size_t n) {
  struct cb_log *l = arg;
  l->calls++;
  if (l->calls == l->fail_at)
    return TT_EPIPE;
  ASSERT(n > 0 && l->len + n < sizeof l->text);
  memcpy(l->text + l->len, p, n);
  l->len += n;
  return 0;
}

TEST(debug_sink_callback_mode) {
  char buf[8];
  struct cb_log l = {.calls = 0};
  tt__sink k;
  tt__sink_cb(&k, cb_collect, &l, buf, sizeof buf);
  tt__sink_str(&k, "hello, ");
  ASSERT_EQ(l.calls, 0); /* buffered */
  tt__sink_str(&k, "world");
  ASSERT_EQ(l.calls, 1); /* one full buffer */
  tt__sink_u64(&k, 12345);
  ASSERT_EQ(l.calls, 2); /* "world1234" filled the second */
  ASSERT_OK(tt__sink_flush(&k));
  ASSERT_OK(tt__sink_flush(&k)); /* nothing left: no empty call */
  ASSERT_EQ(l.calls, 3);
  l.text[l.len] = '\0';
  ASSERT_STR_EQ(l.text, "hello, world12345");
  char *out;
  ASSERT_ERR(tt__sink_take(&k, &out, NULL), TT_EINVAL); /* not a memory sink */
  /* The callback's error is sticky. */
  l = (struct cb_log){.fail_at = 1};
  tt__sink_cb(&k, cb_collect, &l, buf, sizeof buf);
  tt__sink_str(&k, "0123456789abcdef");
  tt__sink_str(&k, "more");
  ASSERT_ERR(tt__sink_flush(&k), TT_EPIPE);
  ASSERT_EQ(l.calls, 1);
  ASSERT_EQ(l.len, 0);
}

/* ---- Delta profiles, read back by go tool pprof -------------------------------------------- */

struct delta_call {
  int64_t seconds;
  http_resp r;
};

static void *delta_client(void *arg) {
  struct delta_call *d = arg;
  char path[128];
  snprintf(path, sizeof path, "/debug/pprof/goroutine?seconds=%lld", (long long)d->seconds);
  d->r = http_method("GET", path);
  return NULL;
}

static int delta_body(void *arg) {
  const char *go = arg;
  tt_chan *before = park_many(3);
  struct delta_call d = {.seconds = (int64_t)(2 * tt_test_slow())};
  pthread_t t;
  ASSERT(pthread_create(&t, NULL, delta_client, &d) == 0);
  /* The first profile is taken as the request arrives; four more readers park well after it
   * and well before the second. */
  tt_sleep((int64_t)(d.seconds * TT_SEC) / 4);
  tt_chan *after = park_many(7);
  ASSERT(pthread_join(t, NULL) == 0);
  ASSERT_STATUS(d.r, 200);
  ASSERT_STR_EQ(hdr(&d.r, "Content-Disposition"), "attachment; filename=\"goroutine-delta\"");
  char file[] = "/tmp/tt-delta-XXXXXX";
  int fd = mkstemp(file);
  ASSERT(fd >= 0 && write(fd, d.r.body, d.r.body_len) == (ssize_t)d.r.body_len);
  close(fd);
  resp_free(&d.r);
  if (go != NULL) {
    /* 3 parked before, 10 after: the delta shows the 7 that parked meanwhile. */
    free(pprof_top_seven(go, file));
  }
  unlink(file);
  ASSERT_OK(tt_chan_close(after));
  tt_chan_release(after);
  unpark(before);
  return 0;
}

TEST(debug_delta_profile) {
  char *go = find_go(); /* NULL: the profile is still checked, without go tool pprof */
  serve_test(NULL);
  tt_test_run(delta_body, go, 2);
  ASSERT_OK(tt_debug_stop());
  free(go);
}
