/* SPDX-License-Identifier: MIT */
/* HTTP/1.x for the debug endpoint: the request parser and the response writers.
 *
 * The parser is incremental and bounded: it is handed everything read so far on a connection and
 * goes on from the first line it has not parsed yet, so a client that sends a byte at a time costs
 * one pass over its bytes, not one per read. It refuses a request as early as it can tell: a
 * request line that cannot be valid as soon as it is complete (400, 505), one that has grown past
 * the limit before its end (414), headers past their size or count (431). Only GET and HEAD are
 * served; another method is refused with 405 once its headers are in (the client may still be
 * sending them). Bodies are never read: every response closes the connection, and the server
 * lingers (server.c) so that unread bytes do not turn the close into a reset that would destroy
 * the response before the client reads it.
 *
 * Responses are written with send(MSG_NOSIGNAL) on a non-blocking socket and poll(): a client
 * that stops reading makes no progress, and one that makes none for the write timeout is dropped;
 * the server's stop descriptor in the same poll aborts every response at once. The body goes out
 * in HTTP/1.1 chunks, one per buffer of the sink it is written through, so no body is ever held
 * whole; an HTTP/1.0 client gets it raw, ended by the close. A response that fails after its
 * headers ends without the last chunk, which tells the client the body is incomplete. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "debug/http_int.h"
#include "tether/error.h"

/* ---- Parsing ------------------------------------------------------------------------------ */

/* RFC 9110 tchar: the characters of a method or a header name. */
static bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes the path p[0..n) (%XX escapes) into r->path. false: a bad escape or an encoded NUL. */
static bool decode_path(tt__http_req *r, const char *p, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '%') {
      if (i + 2 >= n)
        return false;
      int hi = hexval((unsigned char)p[i + 1]), lo = hexval((unsigned char)p[i + 2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
        return false;
      c = (unsigned char)(hi * 16 + lo);
      i += 2;
    }
    if (o < TT__HTTP_PATH_MAX)
      r->path[o++] = (char)c;
    else
      r->path_long = true;
  }
  r->path[o] = '\0';
  return true;
}

/* The request line, without its line end, NUL-terminated in place. Returns 0 or a status. */
static int parse_request_line(tt__http_req *r, char *line, size_t n) {
  /* method SP request-target SP HTTP-version, single spaces (RFC 9112 section 3). */
  char *sp1 = memchr(line, ' ', n);
  if (sp1 == NULL || sp1 == line)
    return 400;
  for (char *p = line; p < sp1; p++)
    if (!is_tchar((unsigned char)*p))
      return 400;
  char *target = sp1 + 1;
  char *sp2 = memchr(target, ' ', n - (size_t)(target - line));
  if (sp2 == NULL || sp2 == target)
    return 400;
  char *version = sp2 + 1;
  size_t vlen = n - (size_t)(version - line);
  /* HTTP-version = "HTTP/" DIGIT "." DIGIT */
  if (vlen != 8 || memcmp(version, "HTTP/", 5) != 0 || version[5] < '0' || version[5] > '9' ||
      version[6] != '.' || version[7] < '0' || version[7] > '9')
    return 400;
  if (version[5] != '1')
    return 505;
  r->minor = version[7] - '0';
  size_t mlen = (size_t)(sp1 - line);
  if (mlen == 3 && memcmp(line, "GET", 3) == 0)
    r->method = TT__HTTP_GET;
  else if (mlen == 4 && memcmp(line, "HEAD", 4) == 0)
    r->method = TT__HTTP_HEAD;
  else
    r->other_method = true;
  /* The target: origin-form, or absolute-form (whose scheme and authority are dropped). */
  *sp2 = '\0';
  for (char *p = target; p < sp2; p++)
    if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f)
      return 400;
  if (strncmp(target, "http://", 7) == 0 || strncmp(target, "https://", 8) == 0) {
    char *slash = strchr(target + (target[4] == 's' ? 8 : 7), '/');
    target = slash ? slash : (char *)"/";
  }
  if (target[0] != '/')
    return 400;
  char *q = strchr(target, '?');
  size_t plen = q ? (size_t)(q - target) : strlen(target);
  if (q) {
    char *hash = strchr(q + 1, '#');
    if (hash)
      *hash = '\0';
  }
  r->query = q ? q + 1 : "";
  if (!decode_path(r, target, plen))
    return 400;
  return 0;
}

/* One header line, without its line end. Returns 0 or a status. */
static int parse_header(tt__http_req *r, const char *line, size_t n) {
  if (line[0] == ' ' || line[0] == '\t')
    return 400; /* obsolete line folding (RFC 9112 section 5.2: a server may reject it) */
  const char *colon = memchr(line, ':', n);
  if (colon == NULL || colon == line)
    return 400;
  for (const char *p = line; p < colon; p++)
    if (!is_tchar((unsigned char)*p))
      return 400; /* includes whitespace before the colon (section 5.1) */
  for (const char *p = colon + 1; p < line + n; p++)
    if ((unsigned char)*p < ' ' && *p != '\t')
      return 400;
  if (colon - line == 4 && strncasecmp(line, "host", 4) == 0)
    r->nhost++;
  return 0;
}

int tt__http_parse(char *buf, size_t len, tt__http_req *r) {
  for (;;) {
    char *nl = memchr(buf + r->pos, '\n', len - r->pos);
    if (nl == NULL) {
      /* An incomplete line: refuse it once it can no longer fit. */
      if (r->phase == 0 && len - r->pos > TT__HTTP_LINE_MAX + 1)
        return 414;
      if (r->phase == 1 && len - r->hdr_start > TT__HTTP_HEADERS_MAX)
        return 431;
      return 0;
    }
    size_t end = (size_t)(nl - buf); /* the line is buf[pos, end), its end at end */
    size_t n = end - r->pos;
    char *line = buf + r->pos;
    if (n > 0 && line[n - 1] == '\r')
      n--;
    for (size_t i = 0; i < n; i++)
      if (line[i] == '\0' || line[i] == '\r')
        return 400; /* a NUL, or a bare CR, inside a line */
    if (r->phase == 0) {
      if (n > TT__HTTP_LINE_MAX)
        return 414;
      r->pos = end + 1;
      if (n == 0) {
        /* RFC 9112 section 2.2: ignore at least one empty line before the request line. */
        if (++r->nblank > 4)
          return 400;
        continue;
      }
      line[n] = '\0';
      int st = parse_request_line(r, line, n);
      if (st)
        return st;
      r->phase = 1;
      r->hdr_start = r->pos;
      continue;
    }
    if (end + 1 - r->hdr_start > TT__HTTP_HEADERS_MAX)
      return 431;
    r->pos = end + 1;
    if (n == 0) {
      /* The end of the headers. HTTP/1.1 requires exactly one Host (RFC 9112 section 3.2). */
      if ((r->minor >= 1 && r->nhost == 0) || r->nhost > 1)
        return 400;
      return r->other_method ? 405 : 1;
    }
    if (++r->nheaders > TT__HTTP_NHEADERS_MAX)
      return 431;
    int st = parse_header(r, line, n);
    if (st)
      return st;
  }
}

/* ---- Queries ------------------------------------------------------------------------------ */

/* Decodes q[0..n) as a form value into out; false on a bad escape (Go then drops the pair). */
static bool decode_form(const char *q, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)q[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= n)
        return false;
      int hi = hexval((unsigned char)q[i + 1]), lo = hexval((unsigned char)q[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      c = (unsigned char)(hi * 16 + lo);
      i += 2;
    }
    if (o + 1 < cap)
      out[o++] = (char)c;
  }
  if (cap)
    out[o] = '\0';
  return true;
}

bool tt__http_query(const char *query, const char *key, char *out, size_t cap) {
  if (cap)
    out[0] = '\0';
  if (query == NULL)
    return false;
  size_t klen = strlen(key);
  char name[256];
  for (const char *p = query; *p;) {
    /* One pair: up to '&' (Go 1.17 on no longer splits at ';'). */
    const char *amp = strchr(p, '&');
    size_t n = amp ? (size_t)(amp - p) : strlen(p);
    const char *eq = memchr(p, '=', n);
    size_t nlen = eq ? (size_t)(eq - p) : n;
    if (nlen < sizeof name && decode_form(p, nlen, name, sizeof name) && strlen(name) == klen &&
        memcmp(name, key, klen) == 0) {
      const char *v = eq ? eq + 1 : p + n;
      size_t vlen = (size_t)(p + n - v);
      if (decode_form(v, vlen, out, cap))
        return true;
      if (cap)
        out[0] = '\0';
    }
    p += n;
    if (*p == '&')
      p++;
  }
  return false;
}

bool tt__http_atoi(const char *s, int64_t *out) {
  const char *p = s;
  bool neg = false;
  if (*p == '+' || *p == '-')
    neg = *p++ == '-';
  if (*p == '\0')
    return false;
  uint64_t v = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9')
      return false;
    if (v > (UINT64_C(1) << 63) / 10)
      return false;
    v = v * 10 + (uint64_t)(*p - '0');
    if (v > (UINT64_C(1) << 63) - (neg ? 0 : 1))
      return false;
  }
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return true;
}

const char *tt__http_reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 301:
    return "Moved Permanently";
  case 400:
    return "Bad Request";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 414:
    return "URI Too Long";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  case 505:
    return "HTTP Version Not Supported";
  }
  return "Unknown";
}

/* ---- Writing ------------------------------------------------------------------------------ */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int tt__http_send(tt__http_out *o, struct iovec *v, int n) {
  if (o->err)
    return o->err;
  /* relaxed: a hint; the stop descriptor, which the poll below watches, is the guarantee. */
  if (o->stopping && atomic_load_explicit(o->stopping, memory_order_relaxed)) {
    o->err = TT_ECANCELED;
    return o->err;
  }
  int64_t last = now_ns(); /* the last progress */
  while (n > 0) {
    if (v->iov_len == 0) {
      v++, n--;
      continue;
    }
    struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)n};
    ssize_t k = sendmsg(o->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k > 0) {
      last = now_ns();
      size_t left = (size_t)k;
      while (left > 0 && n > 0) {
        size_t t = left < v->iov_len ? left : v->iov_len;
        v->iov_base = (char *)v->iov_base + t;
        v->iov_len -= t;
        left -= t;
        if (v->iov_len == 0)
          v++, n--;
      }
      continue;
    }
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      o->err = errno == ENOMEM || errno == ENOBUFS ? TT_ENOMEM : TT_EPIPE;
      return o->err;
    }
    /* The socket is full: wait for room, the stop, or the deadline. */
    int64_t left = last + o->timeout - now_ns();
    if (left <= 0) {
      o->err = o->timeout > 0 ? TT_ETIMEDOUT : TT_EAGAIN;
      return o->err;
    }
    struct pollfd p[2] = {{.fd = o->fd, .events = POLLOUT}, {.fd = o->stop_fd, .events = POLLIN}};
    int ms = (int)((left + 999999) / 1000000);
    int r = poll(p, o->stop_fd >= 0 ? 2 : 1, ms);
    if (r < 0 && errno != EINTR) {
      o->err = TT_EIO;
      return o->err;
    }
    if (r > 0 && o->stop_fd >= 0 && (p[1].revents & POLLIN)) {
      o->err = TT_ECANCELED;
      return o->err;
    }
    if (r > 0 && (p[0].revents & (POLLERR | POLLNVAL)) && !(p[0].revents & POLLOUT)) {
      o->err = TT_EPIPE;
      return o->err;
    }
  }
  return 0;
}

int tt__http_head(tt__http_out *o, int status, const char *type, const char *extra, int64_t len) {
  char h[1024];
  int n = snprintf(h, sizeof h,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: %s\r\n"
                   "X-Content-Type-Options: nosniff\r\n"
                   "Cache-Control: no-store\r\n",
                   status, tt__http_reason(status), type);
  char tail[96];
  int t;
  if (len >= 0) {
    o->chunked = false;
    t = snprintf(tail, sizeof tail, "Content-Length: %lld\r\nConnection: close\r\n\r\n",
                 (long long)len);
  } else {
    t = snprintf(tail, sizeof tail, "%sConnection: close\r\n\r\n",
                 o->chunked && !o->head ? "Transfer-Encoding: chunked\r\n" : "");
  }
  struct iovec v[3] = {
      {h, (size_t)n}, {(void *)(extra ? extra : ""), extra ? strlen(extra) : 0}, {tail, (size_t)t}};
  return tt__http_send(o, v, 3);
}

int tt__http_body_cb(void *arg, const char *p, size_t n) {
  tt__http_out *o = arg;
  if (o->head || n == 0)
    return o->err;
  if (!o->chunked) {
    struct iovec v[1] = {{(void *)p, n}};
    int err = tt__http_send(o, v, 1);
    o->sent += err ? 0 : n;
    return err;
  }
  char size[24];
  int k = snprintf(size, sizeof size, "%zx\r\n", n);
  struct iovec v[3] = {{size, (size_t)k}, {(void *)p, n}, {(void *)"\r\n", 2}};
  int err = tt__http_send(o, v, 3);
  o->sent += err ? 0 : n;
  return err;
}

int tt__http_end(tt__http_out *o) {
  if (o->err || o->head || !o->chunked)
    return o->err;
  struct iovec v[1] = {{(void *)"0\r\n\r\n", 5}};
  return tt__http_send(o, v, 1);
}

int tt__http_simple(tt__http_out *o, int status, const char *extra, const char *msg) {
  size_t n = strlen(msg);
  int err = tt__http_head(o, status, "text/plain; charset=utf-8", extra, (int64_t)n + 1);
  if (err || o->head)
    return err;
  struct iovec v[2] = {{(void *)msg, n}, {(void *)"\n", 1}};
  return tt__http_send(o, v, 2);
}
