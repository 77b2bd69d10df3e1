/* SPDX-License-Identifier: MIT */
/* The diagnostics' internal interfaces: the unwinder (unwind.c), the symbolizer (symbol.c), the
 * output sink every format writes through (sink.c) and the pprof encoder (pprof.c). The dumps
 * (dump.c) and the triggers (trigger.c) are built on them. */
#ifndef TT_DIAG_INT_H
#define TT_DIAG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Unwinding (src/diag/unwind.c) ------------------------------------------------------- */

/* DWARF register numbers (the psABIs' numbering, which .eh_frame uses). */
#if defined(__x86_64__)
#define TT__UNW_NREGS 17 /* rax rdx rcx rbx rsi rdi rbp rsp r8..r15, 16 = return address */
#define TT__UNW_SP 7
#define TT__UNW_FP 6
#define TT__UNW_PC 16
#elif defined(__aarch64__)
#define TT__UNW_NREGS 33 /* x0..x30 (x29 fp, x30 lr), 31 = sp, 32 = pc (not a DWARF number) */
#define TT__UNW_SP 31
#define TT__UNW_FP 29
#define TT__UNW_PC 32
#endif

/* The register state an unwind starts from. r[i] is meaningful only when bit i of valid is set;
 * pc and sp must be. exact: pc is the address of the instruction about to execute (a context
 * captured by a signal); otherwise it is a return address (a suspended coroutine's saved pc). */
typedef struct tt__uregs {
  uintptr_t r[TT__UNW_NREGS];
  uint64_t valid;
  bool exact;
} tt__uregs;

/* Fills r from the callee-saved area a suspended coroutine's saved stack pointer points at
 * (tt__saved_regs, src/arch/switch.h). */
void tt__uregs_from_saved(tt__uregs *r, const void *saved_sp);
/* Fills r from a signal handler's ucontext_t (exact = true). Async-signal-safe. */
void tt__uregs_from_ucontext(tt__uregs *r, const void *ucontext);

/* Unwinds from r, storing at most max program counters in pcs, innermost first, and returns how
 * many it stored. Every stored value is "return-address-like": the code it names is at pc - 1
 * (an exact first pc is stored as pc + 1, as Go does), so a symbolizer always looks up pc - 1.
 * The walk stops at a zero return address (the bottom of every coroutine stack), at a frame
 * without unwind information, when the stack pointer leaves [stack_lo, stack_hi) or does not
 * grow, or at max. Memory outside [stack_lo, stack_hi) is never read, so a corrupt stack cannot
 * fault the unwinder. Rules are cached per pc (the first unwind through a function parses its
 * FDE; later ones hash one word); what the cache cannot express falls back to libunwind when
 * built with it. Thread-safe, lock-free on the cached path, no malloc on that path, and
 * async-signal-safe except for the first parse of a module (dl_iterate_phdr). */
int tt__unwind(const tt__uregs *r, uintptr_t stack_lo, uintptr_t stack_hi, uintptr_t *pcs, int max);

/* The same walk over a copy of the stack's range [lo, hi) held at `copy` (a capture of a running
 * coroutine): every read of an address in [lo, hi) reads the copy instead; nothing outside it is
 * read. */
int tt__unwind_copy(const tt__uregs *r, uintptr_t lo, uintptr_t hi, const void *copy,
                    uintptr_t *pcs, int max);

/* The same walk through libunwind alone (the oracle the tests compare tt__unwind with); returns
 * TT_ENOSYS when built without libunwind. */
int tt__unwind_libunwind(const tt__uregs *r, uintptr_t stack_lo, uintptr_t stack_hi, uintptr_t *pcs,
                         int max);

/* Unwinds the calling thread or coroutine from the caller of tt__unwind_here (pcs[0] is the
 * return address into the caller), skipping `skip` more frames: for the dumper's own stack
 * ("goroutine 1 [running]") and for crash handlers. [stack_lo, stack_hi) is the caller's stack,
 * as for tt__unwind; the same rules and the same safety apply. */
int tt__unwind_here(uintptr_t stack_lo, uintptr_t stack_hi, uintptr_t *pcs, int max, int skip);

/* Cache statistics, for tests and the benchmark. */
typedef struct tt__unw_stats {
  uint64_t hits, misses, fallbacks, entries;
} tt__unw_stats;
void tt__unwind_stats(tt__unw_stats *out);

/* ---- Symbolization (src/diag/symbol.c) --------------------------------------------------- */

/* One source-level frame of the code at an address. Strings are interned: valid for the life of
 * the process. */
typedef struct tt__sym {
  const char *func;      /* function name; NULL when unknown */
  const char *file;      /* source file as the debug information names it (absolute when it
                          * can be made so); NULL when unknown */
  int line;              /* 0 when unknown */
  uintptr_t entry;       /* the function's entry address (for "+0x2b"); 0 when unknown */
  const char *module;    /* path of the executable or shared object; NULL when unknown */
  uintptr_t module_base; /* its load bias, for "module+0xoffset" */
  bool inlined;          /* this frame was inlined into the next one in the array */
} tt__sym;

/* Describes the code at addr (already adjusted: a return address minus 1), innermost inlined
 * function first, the enclosing real function last, in at most max entries; returns how many
 * (at least 1 when max >= 1: a frame with only module+offset, or nothing, still gets one entry;
 * when the chain is longer than max, the innermost max - 1 frames and the real function).
 * Sources, best first: DWARF through libdw (function, file, line, inline chain), the ELF symbol
 * tables (.symtab, then .dynsym), then module+offset. Results are cached per address, so a
 * million coroutines sharing a few thousand pcs cost a few thousand lookups. Thread-safe (libdw
 * is serialized); not async-signal-safe (it allocates). */
int tt__symbolize(uintptr_t addr, tt__sym *out, int max);

/* Cache statistics, for tests and the benchmark: lookups answered from the address cache (hits)
 * and resolved (misses), addresses cached (entries), modules known, module-list rebuilds
 * (refreshes), and whether DWARF is in use (built with libdw and not turned off). */
typedef struct tt__sym_stats {
  uint64_t hits, misses, entries, modules, refreshes;
  bool dwarf;
} tt__sym_stats;
void tt__symbolize_stats(tt__sym_stats *out);
/* Test hooks: drop every cache (addresses, modules, libdw's state; the statistics restart from
 * zero; interned strings stay valid), and turn the DWARF source off or back on (dropping the
 * address cache when it changes; returns the previous setting, false when built without libdw). */
void tt__symbolize_reset(void);
bool tt__symbolize_use_dwarf(bool on);

/* ---- Output sink (src/diag/sink.c) ------------------------------------------------------- */

/* Where a format writes: a file descriptor (buffered, flushed by tt__sink_flush), a callback
 * (buffered the same way: each full buffer, and the rest at tt__sink_flush, is handed to it) or a
 * growing heap buffer. Errors are sticky: after the first failed write or allocation every call
 * is a no-op and tt__sink_flush returns the error (TT_EIO, TT_ENOMEM, or the callback's). */
typedef struct tt__sink {
  int fd;    /* -1: memory (or the callback, when cb is set) */
  char *buf; /* fd, callback: a fixed buffer of cap bytes; memory: the heap buffer */
  size_t len, cap;
  int err;
  bool own_buf; /* buf was allocated by the sink (memory mode) */
  /* Callback mode: takes n > 0 bytes at p; returns 0, or a TT_E* code that becomes the sink's
   * sticky error (the debug endpoint streams a response through it). */
  int (*cb)(void *arg, const char *p, size_t n);
  void *cb_arg;
} tt__sink;

void tt__sink_fd(tt__sink *s, int fd, char *buf, size_t cap); /* buf: caller's scratch */
void tt__sink_mem(tt__sink *s);
/* Callback mode, buffered in the caller's scratch buf of cap > 0 bytes. */
void tt__sink_cb(tt__sink *s, int (*cb)(void *arg, const char *p, size_t n), void *arg, char *buf,
                 size_t cap);
void tt__sink_write(tt__sink *s, const void *p, size_t n);
void tt__sink_str(tt__sink *s, const char *str);
void tt__sink_u64(tt__sink *s, uint64_t v);
void tt__sink_i64(tt__sink *s, int64_t v);
void tt__sink_hex(tt__sink *s, uint64_t v); /* "0x1f" */
void tt__sink_printf(tt__sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tt__sink_flush(tt__sink *s);
/* A JSON string (RFC 8259) for str, or null for NULL. Names, labels and messages come from the
 * program, so bytes that are not UTF-8 become U+FFFD rather than an invalid document; control
 * characters, <, > and & (safe inside HTML too) and U+2028/9 are escaped. */
void tt__sink_json_str(tt__sink *s, const char *str);
/* Memory mode: hands the buffer (NUL-terminated, len bytes before the NUL) to the caller. */
int tt__sink_take(tt__sink *s, char **out, size_t *len);

/* ---- pprof (src/diag/pprof.c) ------------------------------------------------------------ */

typedef struct tt__pp_label {
  const char *key, *value;
} tt__pp_label;

typedef struct tt__pp_sample {
  const uintptr_t *pcs; /* as tt__unwind stores them: innermost first, look up at pc - 1 */
  size_t npcs;
  int64_t value;
  const tt__pp_label *labels;
  size_t nlabels;
} tt__pp_sample;

typedef struct tt__pp_profile {
  const char *sample_type, *sample_unit; /* "goroutine", "count" */
  const char *period_type, *period_unit; /* "goroutine", "count" */
  int64_t period;                        /* 1 */
  int64_t time_nanos;                    /* wall clock, Unix ns */
  const tt__pp_sample *samples;
  size_t nsamples;
} tt__pp_profile;

/* Writes p as a gzip-compressed profile.proto message (uncompressed when built without zlib,
 * which go tool pprof also reads) to s, symbolized with tt__symbolize: one Location per distinct
 * pc, its Lines the inline chain, one Function per distinct (name, file), one Mapping per module
 * with has_functions etc. set so that pprof needs no binary. A sample without pcs gets one frame,
 * "(stack unavailable)" (pprof drops samples without locations); NULL types are "goroutine" and
 * "count"; a NULL label value is "". Does not flush s. Returns 0, TT_EINVAL (p or s NULL, a NULL
 * array with a nonzero count, a label without a key), TT_ENOMEM, or the sink's error. */
int tt__pprof_write(const tt__pp_profile *p, tt__sink *s);

#endif
