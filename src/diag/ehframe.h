/* SPDX-License-Identifier: MIT */
/* The unwinder's private interface between the .eh_frame reader (ehframe.c) and the walk
 * (unwind.c): the compact unwind rule, packed into one 64-bit word so that the rule cache can
 * publish it with a single store. */
#ifndef TT_DIAG_EHFRAME_H
#define TT_DIAG_EHFRAME_H

#include <stdbool.h>
#include <stdint.h>

#include "diag/diag_int.h"

/* A rule says how to find the caller's frame from a frame whose code is at a given address:
 *   CFA = (sp | fp) + cfa_off
 *   return address: at CFA + ra_off, or (aarch64) still in x30, or none (the outermost frame)
 *   fp (rbp / x29): at CFA + fp_off, unchanged, or lost (its value in the caller is unknown)
 *   the caller's sp is the CFA.
 * Layout (never 0, so that 0 can mean "no rule yet" in the cache):
 *   bits 0-1   kind (TT__RK_*)
 *   bit  2     the CFA is based on fp (else sp)
 *   bit  3     the return address is still in x30 (aarch64 leaf or prologue); else in memory
 *   bit  4     the return address is signed (aarch64 pointer authentication): strip it
 *   bits 5-6   fp: 0 unchanged, 1 saved at CFA + fp_off, 2 lost
 *   bit  7     signal frame ("S" augmentation): the caller's pc is exact
 *   bits 8-23  ra_off / 8, signed (+-256 KiB: aarch64 saves x30 below a large frame's locals)
 *   bits 24-39 fp_off / 8, signed
 *   bits 40-63 cfa_off, signed (+-8 MiB)
 * A frame whose offsets do not fit is left to libunwind (TT__RK_COMPLEX). */
enum {
  TT__RK_COMPACT = 1, /* the fields above describe the frame */
  TT__RK_COMPLEX = 2, /* the CFI needs more than a compact rule: libunwind's job */
  TT__RK_END = 3,     /* no caller: the return address is undefined, or no unwind information */
};
enum { TT__FP_SAME = 0, TT__FP_SAVED = 1, TT__FP_LOST = 2 };

#define TT__R_KIND(w) ((unsigned)((w)&3u))
#define TT__R_CFA_FP(w) (((w) >> 2) & 1u)
#define TT__R_RA_LR(w) (((w) >> 3) & 1u)
#define TT__R_RA_SIGNED(w) (((w) >> 4) & 1u)
#define TT__R_FP_HOW(w) ((unsigned)(((w) >> 5) & 3u))
#define TT__R_SIGNAL(w) (((w) >> 7) & 1u)
#define TT__R_RA_OFF(w) ((intptr_t)(((int64_t)((w) << 40)) >> 48) * 8)
#define TT__R_FP_OFF(w) ((intptr_t)(((int64_t)((w) << 24)) >> 48) * 8)
#define TT__R_CFA_OFF(w) ((intptr_t)((int64_t)(w) >> 40))

static inline uint64_t tt__rule_simple(unsigned kind) { return kind; }

/* Finds the unwind information covering addr (a pc, or a return address minus 1) and reduces the
 * row that applies at addr to a rule. *cacheable is false when addr lies in no loaded module (it
 * may be mapped later, by dlopen) and the END rule is only provisional. The first lookup in a
 * module not yet seen walks the loaded modules (dl_iterate_phdr): not async-signal-safe then;
 * otherwise it only reads the module's mapped .eh_frame_hdr and .eh_frame. */
uint64_t tt__ehf_rule(uintptr_t addr, bool *cacheable);

#endif
