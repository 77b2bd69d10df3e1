/* SPDX-License-Identifier: MIT */
/* Tracing's internal interfaces: the record format shared by the recorder (trace.c) and the
 * readers (export.c: decoding, Chrome JSON, the summary), and the endpoint's capture. */
#ifndef TT_TRACE_INT_H
#define TT_TRACE_INT_H

#include "../diag/diag_int.h"
#include "../internal.h"

/* One fixed-size record. Strings (names, log text) follow their record as payload: len bytes
 * (NUL-terminated strings, back to back) in ceil(len / sizeof(tt__trec)) more records. */
typedef struct tt__trec {
  int64_t ts;      /* ticks (trace.c's ticks()); ns once decoded */
  uint8_t kind;    /* TT__TK_* */
  uint8_t arg;     /* wait reason, verdict */
  uint16_t worker; /* the worker that recorded it, TT__TW_THREAD for a plain thread */
  uint32_t len;    /* payload bytes */
  uint64_t a, b, c, d;
} tt__trec;
_Static_assert(sizeof(tt__trec) == 48, "a trace record is 48 bytes");

#define TT__TW_THREAD 0xffff

/* The kinds, and their fields (a is always the coroutine, 0 for a plain thread). */
enum {
  TT__TK_CREATE = 1, /* b parent, c creation pc, d fn; payload: name (from tt_go_opt), symbol */
  TT__TK_RUN,        /* worker: where it runs */
  TT__TK_BLOCK,      /* arg wait reason, b object */
  TT__TK_UNBLOCK,    /* arg the wait's reason, b the waker (a coroutine id, or 0) */
  TT__TK_EXIT,
  TT__TK_REGION_BEGIN, /* payload: name */
  TT__TK_REGION_END,
  TT__TK_LOG,   /* payload: category, message */
  TT__TK_NAME,  /* payload: name (tt_name_set) */
  TT__TK_LEAK,  /* arg verdict, b wait reason */
  TT__TK_INFO,  /* a live coroutine seen when the trace was written: b parent, d fn; payload:
                   name, symbol (names the tracks of coroutines created before the trace) */
  TT__TK_SYM,   /* the binary form's stream: d a function, payload its symbol */
  TT__TK_CLOCK, /* the binary form's last record: ts in ticks, a the same instant in ns */
  TT__TK_COUNT,
};

/* A decoded event. s1 and s2 point into the decoded buffer (or at interned symbols). */
typedef struct tt__tev {
  int64_t ts;
  uint8_t kind, arg;
  uint16_t worker;
  uint64_t a, b, c, d;
  const char *s1, *s2;
  uint64_t seq; /* decoding order: ties in ts keep it */
} tt__tev;

/* A decoded trace: events sorted by time, over [t0, t1]. bufs: the memory s1 and s2 point into. */
typedef struct tt__trace {
  int64_t t0, t1;
  tt__tev *ev;
  size_t n, cap;
  void **bufs;
  size_t nbufs;
} tt__trace;

/* Appends the events of buf (n bytes of records) to t; symbolize: resolve CREATE's fn now (a
 * trace of this process). 0, TT_EINVAL (malformed) or TT_ENOMEM. buf is not copied. */
int tt__trace_decode(tt__trace *t, const void *buf, size_t n, bool symbolize);
/* Sorts the events by time. */
void tt__trace_sort(tt__trace *t);
void tt__trace_free(tt__trace *t);
/* The writers: Chrome trace-event JSON, the summary. 0 or the sink's error. */
int tt__trace_json(const tt__trace *t, tt__sink *out);
int tt__trace_summary_text(const tt__trace *t, tt__sink *out);
/* Reads a binary trace from fd into t (which owns the memory). The binary form: a 24-byte header
 * (TT__TRACE_MAGIC, the start time in ns and in ticks), then records (times in ticks) in the order
 * the chunks were written (not sorted), with a SYM record naming each function before the first
 * record that needs it. */
int tt__trace_read(int fd, tt__trace *t);

#define TT__TRACE_MAGIC "TTTRACE1"

/* The debug endpoint's capture: begins an in-memory trace (TT_EBUSY when one is on), and ends it,
 * filling *t (decoded, sorted); live: the runtime is held running, so its registry may be read
 * for the names of coroutines created before the trace. */
int tt__trace_capture_begin(bool live);
int tt__trace_capture_end(tt__trace *t, bool live);

#endif
