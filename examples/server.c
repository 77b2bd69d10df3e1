/* SPDX-License-Identifier: MIT */
/* A small HTTP service with a deliberate leak, and the debug endpoint on: the README's walk-through
 * of finding a leak in a running server (README "Find a leak in a live server").
 *
 *   server [ADDR [DEBUG_ADDR]]   serve on ADDR (127.0.0.1:8080), debug on DEBUG_ADDR
 * (127.0.0.1:6060) server --selftest            both on free ports; make requests, find the leak,
 * exit 0 if found
 *
 * GET /      answers "hello".
 * GET /slow  asks a backend (a coroutine that takes 20 ms) for an answer and gives up after 5 ms
 *            with 504. The bug: the reply channel is unbuffered, so the backend, finishing after
 *            the handler gave up, blocks forever on its send (the seed's first cause of leaks).
 *            The fix is one character: a buffer of 1 (tt_chan_make(sizeof(int), 1)).
 * Ctrl-C (SIGINT) or SIGTERM stops the service. */
#include <tether.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The service -------------------------------------------------------------------------- */

static void backend(void *arg) {
  tt_chan *reply = arg;
  tt_sleep(20 * TT_MSEC); /* the slow backend */
  int answer = 42;
  tt_chan_send(reply, &answer); /* blocks forever once the handler has given up: the leak */
}

static const char *slow_handler(int *status) {
  tt_chan *reply = tt_chan_make(sizeof(int), 0); /* BUG: unbuffered. Fix: capacity 1. */
  if (reply == NULL) {
    *status = 500;
    return "out of memory\n";
  }
  tt_go_opts o = {.share = &reply, .nshare = 1};
  tt_go_opt(backend, reply, &o, NULL);
  int answer;
  tt_select_case c[] = {TT_CASE_RECV(reply, &answer)};
  int r = tt_select_dl(c, 1, tt_now() + 5 * TT_MSEC);
  tt_chan_release(reply);
  if (r == TT_ETIMEDOUT) {
    *status = 504;
    return "backend timeout\n";
  }
  *status = 200;
  return "answer 42\n";
}

/* Reads a request's head (up to the blank line) and answers it; one request per connection. */
static void handle(void *arg) {
  tt_conn *c = arg;
  tt_name_set("http handler");
  char req[4096];
  size_t len = 0;
  while (len < sizeof req - 1) {
    ssize_t n = tt_conn_read_dl(c, req + len, sizeof req - 1 - len, tt_now() + 5 * TT_SEC);
    if (n <= 0)
      break;
    len += (size_t)n;
    req[len] = '\0';
    if (strstr(req, "\r\n\r\n"))
      break;
  }
  req[len] = '\0';
  int status = 404;
  const char *body = "not found\n";
  if (strncmp(req, "GET / ", 6) == 0) {
    status = 200;
    body = "hello\n";
  } else if (strncmp(req, "GET /slow ", 10) == 0) {
    body = slow_handler(&status);
  }
  char head[256];
  int hl = snprintf(head, sizeof head,
                    "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n",
                    status,
                    status == 200   ? "OK"
                    : status == 504 ? "Gateway Timeout"
                                    : "Not Found",
                    strlen(body));
  tt_conn_write_all(c, head, (size_t)hl, NULL);
  tt_conn_write_all(c, body, strlen(body), NULL);
  tt_conn_close(c);
}

static void serve(void *arg) {
  tt_listener *l = arg;
  tt_name_set("acceptor");
  for (;;) {
    tt_conn *c;
    int r = tt_accept(l, &c);
    if (r == TT_ECLOSED || r == TT_ECANCELED)
      break;
    if (r == 0 && tt_go(handle, c) != 0)
      tt_conn_close(c);
  }
}

/* ---- The self-test: a client of both servers ------------------------------------------------ */

/* GETs path from addr over HTTP/1.0 (so the body comes whole, not chunked); returns the whole
 * response (malloc'd) or NULL. */
static char *get(const char *addr, const char *path) {
  tt_conn *c;
  if (tt_dial("tcp", addr, &c) != 0)
    return NULL;
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr);
  size_t cap = 1 << 16, len = 0;
  char *out = malloc(cap);
  if (out && tt_conn_write_all(c, req, (size_t)n, NULL) == 0) {
    for (;;) {
      if (len + 4096 > cap && (out = realloc(out, cap *= 2)) == NULL)
        break;
      ssize_t k = tt_conn_read_dl(c, out + len, cap - len - 1, tt_now() + 10 * TT_SEC);
      if (k <= 0)
        break;
      len += (size_t)k;
    }
    if (out)
      out[len] = '\0';
  }
  tt_conn_close(c);
  return out;
}

static int selftest(const char *addr, const char *debug) {
  int ok = 1;
  char *r = get(addr, "/");
  ok &= r && strstr(r, "200 OK") && strstr(r, "hello");
  free(r);
  for (int i = 0; i < 3; i++) {
    r = get(addr, "/slow");
    ok &= r && strstr(r, "504");
    free(r);
  }
  tt_sleep(100 * TT_MSEC); /* the three backends finish and block on their sends */
  r = get(debug, "/debug/pprof/goroutineleak?debug=1");
  const char *body = r ? strstr(r, "\r\n\r\n") : NULL;
  printf("--- /debug/pprof/goroutineleak?debug=1\n%s", body ? body + 4 : "(none)\n");
  ok &= r && strstr(r, "goroutineleak profile: total 3") && strstr(r, "backend");
  free(r);
  r = get(debug, "/metrics");
  const char *m = r ? strstr(r, "\ntether_coroutines_leaked ") : NULL;
  printf("--- /metrics: %.*s\n", m ? (int)strcspn(m + 1, "\n") : 6, m ? m + 1 : "(none)");
  ok &= m && atoi(m + sizeof "\ntether_coroutines_leaked " - 1) == 3;
  free(r);
  printf("%s\n", ok ? "selftest: the leak was found" : "selftest: FAILED");
  return ok ? 0 : 1;
}

/* ---- main ------------------------------------------------------------------------------------ */

static int server_main(int argc, char **argv) {
  bool test = argc > 1 && strcmp(argv[1], "--selftest") == 0;
  const char *addr = test ? "127.0.0.1:0" : argc > 1 ? argv[1] : "127.0.0.1:8080";
  tt_debug_opts dopts = {.addr = test ? "127.0.0.1:0" : argc > 2 ? argv[2] : NULL};
  int r = tt_debug_serve_opts(&dopts);
  if (r != 0) {
    fprintf(stderr, "server: debug endpoint: %s\n", tt_strerror(r));
    return 1;
  }
  tt_listener *l;
  if ((r = tt_listen("tcp", addr, &l)) != 0) {
    fprintf(stderr, "server: listen on %s: %s\n", addr, tt_strerror(r));
    return 1;
  }
  char where[80], dwhere[80];
  tt_listener_addr(l, where, sizeof where);
  tt_debug_addr(dwhere, sizeof dwhere);
  tt_go(serve, l);
  if (test) {
    r = selftest(where, dwhere);
    tt_listener_close(l);
    tt_debug_stop();
    return r; /* the leaked backends are still blocked (shut-down cancels them): the point */
  }
  printf("serving on http://%s/ (try /slow), debug endpoint on http://%s/debug/tether/\n", where,
         dwhere);
  fflush(stdout);
  /* Until Ctrl-C or SIGTERM. */
  static const int sigs[] = {SIGINT, SIGTERM};
  tt_ctx *ctx;
  if (tt_ctx_with_signals(tt_ctx_background(), sigs, 2, &ctx) == 0) {
    tt_chan_recv(tt_ctx_done(ctx), NULL, NULL);
    tt_ctx_release(ctx);
  }
  tt_listener_close(l);
  printf("server: stopping\n");
  return 0;
}

int main(int argc, char **argv) { return tt_main(argc, argv, server_main); }
