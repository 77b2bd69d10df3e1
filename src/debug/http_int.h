/* SPDX-License-Identifier: MIT */
/* The debug endpoint's HTTP/1.x layer (http.c): an incremental request parser with hard limits,
 * query-string lookup with Go's FormValue semantics, and the writers of responses (the status
 * line and headers, and a body streamed in chunks) with a deadline on progress. server.c drives
 * them; nothing here knows the runtime. */
#ifndef TT_DEBUG_HTTP_INT_H
#define TT_DEBUG_HTTP_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TT__HTTP_LINE_MAX 8192     /* the request line, without its line end: beyond it 414 */
#define TT__HTTP_HEADERS_MAX 16384 /* every header line together, line ends included: 431 */
#define TT__HTTP_NHEADERS_MAX 100  /* header lines: beyond it 431 */
/* What a connection's request buffer must hold: the line, the headers, the blank line. */
#define TT__HTTP_BUF (TT__HTTP_LINE_MAX + 2 + TT__HTTP_HEADERS_MAX + 2)
#define TT__HTTP_PATH_MAX 1024 /* a decoded path longer than this names nothing we serve: 404 */

enum { TT__HTTP_GET = 1, TT__HTTP_HEAD = 2 };

/* A request being read: the parser's position in buf and what it found so far. Zero it before
 * the first byte. Strings point into buf (NUL-terminated in place), except path (decoded). */
typedef struct tt__http_req {
  /* The parser's state. */
  size_t pos;       /* start of the first line not yet parsed */
  size_t hdr_start; /* where the header lines begin (after the request line) */
  int phase;        /* 0: request line, 1: header lines */
  int nheaders;
  int nhost;
  int nblank; /* blank lines skipped before the request line */
  /* The request. */
  int method; /* TT__HTTP_GET or TT__HTTP_HEAD (others are refused with 405 once complete) */
  bool other_method;
  int minor; /* HTTP/1.minor */
  char path[TT__HTTP_PATH_MAX + 1];
  bool path_long;    /* the decoded path did not fit: it names nothing */
  const char *query; /* raw, without the '?'; "" when none */
} tt__http_req;

/* Parses what buf[0..len) holds (the bytes read so far; buf has room for one more byte, which the
 * parser may overwrite). Returns 0 when the request is not complete yet and within the limits, 1
 * when it is complete and acceptable (a GET or HEAD of HTTP/1.0 or 1.1), or the status to answer
 * and close with: 400 (malformed), 405 (another method), 414 (request line too long), 431
 * (headers too large or too many), 505 (an HTTP version other than 1.x). A malformed request
 * line is refused as soon as it is complete, before the headers arrive. */
int tt__http_parse(char *buf, size_t len, tt__http_req *r);

/* Go's (*http.Request).FormValue on a raw query: the first value of key, decoded ('+' is a space,
 * %XX a byte), into out (cap bytes, NUL-terminated, truncated to fit). Returns false when key is
 * absent (out is then ""); a present key with an undecodable value yields "". */
bool tt__http_query(const char *query, const char *key, char *out, size_t cap);

/* Go's strconv.Atoi: an optional sign and decimal digits that fit an int64; false otherwise. */
bool tt__http_atoi(const char *s, int64_t *out);

/* The reason phrase of a status code ("Not Found"). */
const char *tt__http_reason(int status);

/* A response being written on a non-blocking socket. Every write waits for the socket with
 * poll(), together with stop_fd (readable: the server stops, the write fails with TT_ECANCELED),
 * for at most timeout ns without progress (then TT_ETIMEDOUT). A peer that went away fails it with
 * TT_EPIPE; no signal is raised (MSG_NOSIGNAL). */
typedef struct tt__http_out {
  int fd;
  int stop_fd;
  const _Atomic bool *stopping; /* or NULL: checked before every write, so that a response to a
                                 * fast client stops too */
  int64_t timeout;
  bool chunked;  /* the body goes in HTTP/1.1 chunks (else raw, ended by the close) */
  bool head;     /* a HEAD request: headers only */
  int err;       /* sticky: the first failure */
  uint64_t sent; /* body bytes (payload) sent */
} tt__http_out;

/* Writes all n bytes of the iovecs in v[0..n) (modified), as described above. 0 or the error. */
struct iovec;
int tt__http_send(tt__http_out *o, struct iovec *v, int n);

/* The status line and headers: Content-Type type, then extra (zero or more complete header lines,
 * each ending in CRLF; may be NULL), then the framing (chunked, or Content-Length len when
 * len >= 0) and Connection: close. 0 or the error. */
int tt__http_head(tt__http_out *o, int status, const char *type, const char *extra, int64_t len);

/* A tt__sink callback (arg: a tt__http_out) that sends each buffer of the body as one chunk (or
 * raw). Sends nothing for HEAD. */
int tt__http_body_cb(void *arg, const char *p, size_t n);

/* Ends the body: the last chunk when chunked. 0 or the error. */
int tt__http_end(tt__http_out *o);

/* A complete small response: the status, text/plain, and msg followed by a newline, as Go's
 * http.Error writes it (HEAD: without the body). extra as for tt__http_head. 0 or the error. */
int tt__http_simple(tt__http_out *o, int status, const char *extra, const char *msg);

#endif
