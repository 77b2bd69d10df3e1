/* SPDX-License-Identifier: MIT */
/* The output sink the dump formats write through: a buffered file descriptor, a buffered
 * callback or a growing heap buffer, with a sticky error so that a format's writer checks once, at
 * the end. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diag/diag_int.h"
#include "tether/error.h"

void tt__sink_fd(tt__sink *s, int fd, char *buf, size_t cap) {
  *s = (tt__sink){.fd = fd, .buf = buf, .cap = cap};
}

void tt__sink_mem(tt__sink *s) { *s = (tt__sink){.fd = -1, .own_buf = true}; }

void tt__sink_cb(tt__sink *s, int (*cb)(void *arg, const char *p, size_t n), void *arg, char *buf,
                 size_t cap) {
  *s = (tt__sink){.fd = -1, .buf = buf, .cap = cap, .cb = cb, .cb_arg = arg};
}

/* Whether s buffers into a fixed buffer that drain() empties (descriptor and callback modes). */
static bool buffered(const tt__sink *s) { return s->fd >= 0 || s->cb != NULL; }

/* Writes the buffered bytes to the descriptor (retrying short writes and EINTR) or hands them to
 * the callback. */
static void drain(tt__sink *s) {
  if (s->cb != NULL) {
    int err = s->len ? s->cb(s->cb_arg, s->buf, s->len) : 0;
    if (err)
      s->err = err < 0 ? err : TT_EIO;
    s->len = 0;
    return;
  }
  size_t off = 0;
  while (off < s->len) {
    ssize_t k = write(s->fd, s->buf + off, s->len - off);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      s->err = TT_EIO;
      break;
    }
    off += (size_t)k;
  }
  s->len = 0;
}

/* Memory mode: room for n more bytes and a terminating NUL. */
static bool grow(tt__sink *s, size_t n) {
  if (s->len + n + 1 <= s->cap)
    return true;
  size_t cap = s->cap ? s->cap : 4096;
  while (cap < s->len + n + 1) {
    if (cap > SIZE_MAX / 2) {
      s->err = TT_ENOMEM;
      return false;
    }
    cap *= 2;
  }
  char *p = realloc(s->buf, cap);
  if (p == NULL) {
    s->err = TT_ENOMEM;
    return false;
  }
  s->buf = p;
  s->cap = cap;
  return true;
}

void tt__sink_write(tt__sink *s, const void *p, size_t n) {
  if (s->err || n == 0)
    return;
  if (!buffered(s)) {
    if (grow(s, n)) {
      memcpy(s->buf + s->len, p, n);
      s->len += n;
      s->buf[s->len] = '\0';
    }
    return;
  }
  const char *q = p;
  while (n > 0 && !s->err) {
    if (s->len == s->cap)
      drain(s);
    size_t k = s->cap - s->len < n ? s->cap - s->len : n;
    memcpy(s->buf + s->len, q, k);
    s->len += k;
    q += k;
    n -= k;
  }
}

void tt__sink_str(tt__sink *s, const char *str) {
  if (str != NULL)
    tt__sink_write(s, str, strlen(str));
}

void tt__sink_u64(tt__sink *s, uint64_t v) {
  char buf[24];
  char *p = buf + sizeof buf;
  do
    *--p = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  tt__sink_write(s, p, (size_t)(buf + sizeof buf - p));
}

void tt__sink_i64(tt__sink *s, int64_t v) {
  if (v < 0) {
    tt__sink_write(s, "-", 1);
    tt__sink_u64(s, (uint64_t)0 - (uint64_t)v);
  } else {
    tt__sink_u64(s, (uint64_t)v);
  }
}

void tt__sink_hex(tt__sink *s, uint64_t v) {
  char buf[24];
  char *p = buf + sizeof buf;
  do
    *--p = "0123456789abcdef"[v & 15];
  while ((v >>= 4) != 0);
  *--p = 'x';
  *--p = '0';
  tt__sink_write(s, p, (size_t)(buf + sizeof buf - p));
}

void tt__sink_printf(tt__sink *s, const char *fmt, ...) {
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    s->err = s->err ? s->err : TT_EINVAL;
    return;
  }
  if ((size_t)n < sizeof small) {
    tt__sink_write(s, small, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (big == NULL) {
    s->err = s->err ? s->err : TT_ENOMEM;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  tt__sink_write(s, big, (size_t)n);
  free(big);
}

int tt__sink_flush(tt__sink *s) {
  if (buffered(s) && !s->err)
    drain(s);
  return s->err;
}

int tt__sink_take(tt__sink *s, char **out, size_t *len) {
  if (buffered(s))
    return TT_EINVAL;
  if (!s->err && s->buf == NULL)
    grow(s, 0);
  if (s->err) {
    free(s->buf);
    *s = (tt__sink){.fd = -1, .err = s->err};
    return s->err;
  }
  s->buf[s->len] = '\0';
  *out = s->buf;
  if (len != NULL)
    *len = s->len;
  s->buf = NULL;
  s->len = s->cap = 0;
  return 0;
}

/* ---- JSON strings --------------------------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF), or 0 when p does not start one. */
static size_t utf8_len(const unsigned char *p) {
  unsigned char c = p[0];
  if (c >= 0xc2 && c <= 0xdf)
    return (p[1] & 0xc0) == 0x80 ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80 ? 4 : 0;
  }
  return 0;
}

void tt__sink_json_str(tt__sink *k, const char *str) {
  if (str == NULL) {
    tt__sink_str(k, "null");
    return;
  }
  const unsigned char *p = (const unsigned char *)str, *run = p;
  tt__sink_str(k, "\"");
  while (*p) {
    size_t n = 1;
    const char *esc = NULL;
    char u[8];
    if (*p >= 0x80) {
      n = utf8_len(p);
      if (n == 0) {
        esc = "\\ufffd";
        n = 1;
      } else if (n == 3 && p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
        esc = p[2] == 0xa8 ? "\\u2028" : "\\u2029"; /* line separators JavaScript once refused */
      }
    } else if (*p == '"') {
      esc = "\\\"";
    } else if (*p == '\\') {
      esc = "\\\\";
    } else if (*p == '\n') {
      esc = "\\n";
    } else if (*p == '\t') {
      esc = "\\t";
    } else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&' || *p == 0x7f) {
      snprintf(u, sizeof u, "\\u%04x", *p);
      esc = u;
    }
    if (esc) {
      tt__sink_write(k, run, (size_t)(p - run));
      tt__sink_str(k, esc);
      run = p + n;
    }
    p += n;
  }
  tt__sink_write(k, run, (size_t)(p - run));
  tt__sink_str(k, "\"");
}
