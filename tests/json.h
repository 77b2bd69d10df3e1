/* SPDX-License-Identifier: MIT */
/* A strict JSON reader for the tests (RFC 8259), header-only: parses a document into a tree the
 * tests can query. Stricter than the RFC where our writers promise more: strings must be valid
 * UTF-8 (raw bytes and \u escapes alike: no lone surrogates), and an object must not repeat a
 * key. The grammar checks are those of test_dump.c's checker, plus fractions and exponents. */
#ifndef TT_TEST_JSON_H
#define TT_TEST_JSON_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

typedef struct json {
  int type;
  bool b;
  double num;
  char *str;          /* JSON_STR: decoded, NUL-terminated (a \u0000 ends it early) */
  size_t len;         /* JSON_STR: decoded bytes */
  size_t n;           /* JSON_ARR, JSON_OBJ: members */
  struct json *items; /* the members' values */
  char **keys;        /* JSON_OBJ: the members' keys */
} json;

static const char *json_parse_value(const char *p, json *out, int depth);

static const char *json_skip_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
    p++;
  return p;
}

/* The length of the valid UTF-8 sequence at p (RFC 3629), or 0. */
static size_t json_utf8_len(const unsigned char *p) {
  unsigned char c = p[0];
  if (c < 0x80)
    return 1;
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

static int json_hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0)
      return -1;
    v = v * 16 + d;
  }
  return v;
}

static size_t json_put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* A string at p into *s (malloc'd) and *len; returns its end or NULL. */
static const char *json_parse_string(const char *p, char **s, size_t *len) {
  if (*p++ != '"')
    return NULL;
  const char *q = p;
  while (*q && *q != '"')
    q += *q == '\\' && q[1] ? 2 : 1;
  char *out = malloc((size_t)(q - p) + 1), *o = out;
  while (*p != '"') {
    unsigned char c = (unsigned char)*p;
    if (c == 0 || c < 0x20)
      goto bad;
    if (c != '\\') {
      size_t n = json_utf8_len((const unsigned char *)p);
      if (n == 0)
        goto bad;
      memcpy(o, p, n);
      o += n;
      p += n;
      continue;
    }
    p++;
    const char *simple = strchr("\"\\/bfnrt", *p);
    if (*p != 0 && simple) {
      *o++ = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      p++;
      continue;
    }
    if (*p != 'u')
      goto bad;
    int cp = json_hex4(p + 1);
    if (cp < 0)
      goto bad;
    p += 5;
    if (cp >= 0xdc00 && cp <= 0xdfff)
      goto bad;
    if (cp >= 0xd800 && cp <= 0xdbff) {
      int lo = p[0] == '\\' && p[1] == 'u' ? json_hex4(p + 2) : -1;
      if (lo < 0xdc00 || lo > 0xdfff)
        goto bad;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      p += 6;
    }
    o += json_put_utf8(o, (unsigned)cp);
  }
  *o = '\0';
  *s = out;
  *len = (size_t)(o - out);
  return p + 1;
bad:
  free(out);
  return NULL;
}

static void json_free(json *v) {
  if (v == NULL)
    return;
  free(v->str);
  for (size_t i = 0; i < v->n; i++) {
    json_free(&v->items[i]);
    if (v->keys)
      free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  memset(v, 0, sizeof *v);
}

static const char *json_parse_number(const char *p, json *out) {
  const char *q = p;
  if (*q == '-')
    q++;
  if (*q == '0')
    q++;
  else if (*q >= '1' && *q <= '9')
    while (*q >= '0' && *q <= '9')
      q++;
  else
    return NULL;
  if (*q == '.') {
    q++;
    if (*q < '0' || *q > '9')
      return NULL;
    while (*q >= '0' && *q <= '9')
      q++;
  }
  if (*q == 'e' || *q == 'E') {
    q++;
    if (*q == '+' || *q == '-')
      q++;
    if (*q < '0' || *q > '9')
      return NULL;
    while (*q >= '0' && *q <= '9')
      q++;
  }
  out->type = JSON_NUM;
  out->num = strtod(p, NULL);
  return q;
}

static const char *json_parse_value(const char *p, json *out, int depth) {
  memset(out, 0, sizeof *out);
  p = json_skip_ws(p);
  if (depth > 64)
    return NULL;
  if (*p == '{' || *p == '[') {
    bool obj = *p == '{';
    char close = obj ? '}' : ']';
    out->type = obj ? JSON_OBJ : JSON_ARR;
    p = json_skip_ws(p + 1);
    if (*p == close)
      return p + 1;
    size_t cap = 0;
    for (;;) {
      if (out->n == cap) {
        cap = cap ? cap * 2 : 8;
        out->items = realloc(out->items, cap * sizeof *out->items);
        if (obj)
          out->keys = realloc(out->keys, cap * sizeof *out->keys);
      }
      if (obj) {
        char *key;
        size_t klen;
        p = json_parse_string(json_skip_ws(p), &key, &klen);
        if (p == NULL)
          goto bad;
        for (size_t i = 0; i < out->n; i++)
          if (strcmp(out->keys[i], key) == 0) {
            free(key);
            goto bad;
          }
        out->keys[out->n] = key;
        p = json_skip_ws(p);
        if (*p++ != ':') {
          free(key);
          goto bad;
        }
      }
      p = json_parse_value(p, &out->items[out->n], depth + 1);
      if (p == NULL) {
        if (obj)
          free(out->keys[out->n]);
        goto bad;
      }
      out->n++;
      p = json_skip_ws(p);
      if (*p == close)
        return p + 1;
      if (*p++ != ',')
        goto bad;
    }
  bad:
    json_free(out);
    return NULL;
  }
  if (*p == '"') {
    out->type = JSON_STR;
    return json_parse_string(p, &out->str, &out->len);
  }
  if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
    out->type = JSON_BOOL;
    out->b = *p == 't';
    return p + (out->b ? 4 : 5);
  }
  if (strncmp(p, "null", 4) == 0) {
    out->type = JSON_NULL;
    return p + 4;
  }
  return json_parse_number(p, out);
}

/* Parses a whole document (one value, surrounding white space) into *out; false when invalid
 * (then *out holds nothing to free). */
static bool json_parse(const char *text, json *out) {
  const char *end = json_parse_value(text, out, 0);
  if (end == NULL)
    return false;
  if (*json_skip_ws(end) != '\0') {
    json_free(out);
    return false;
  }
  return true;
}

/* The member key of object o, or NULL. */
static const json *json_get(const json *o, const char *key) {
  if (o == NULL || o->type != JSON_OBJ)
    return NULL;
  for (size_t i = 0; i < o->n; i++)
    if (strcmp(o->keys[i], key) == 0)
      return &o->items[i];
  return NULL;
}

#endif
