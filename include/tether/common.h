/* SPDX-License-Identifier: MIT */
/* Definitions every tether header shares: export macro, ids, time constants. */
#ifndef TETHER_COMMON_H
#define TETHER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(TT_BUILDING) && defined(__GNUC__)
#define TT_EXTERN __attribute__((visibility("default")))
#else
#define TT_EXTERN
#endif

#ifdef __cplusplus
#define TT_BEGIN_DECLS extern "C" {
#define TT_END_DECLS }
#else
#define TT_BEGIN_DECLS
#define TT_END_DECLS
#endif

/* A coroutine's id. Ids start at 1 (the coroutine running tt_run's function) in every run and are
 * never reused within a run; 0 means "no coroutine" (a plain thread). */
typedef uint64_t tt_id;

/* Deadlines (the `_dl` variants) are absolute times on tt_now()'s monotonic clock, in ns. */
#define TT_FOREVER ((int64_t)-1)

#define TT_NSEC ((int64_t)1)
#define TT_USEC ((int64_t)1000)
#define TT_MSEC ((int64_t)1000000)
#define TT_SEC ((int64_t)1000000000)

#endif
