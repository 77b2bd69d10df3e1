/* SPDX-License-Identifier: MIT */
/* Context switch for aarch64 (AAPCS64), implementing the contract in switch.h.
 *
 * The callee-saved state is x19-x28, x29 (fp), x30 (lr, which becomes the resume pc), sp, the low
 * 64 bits of v8-v15 (d8-d15; AAPCS64 6.1.2 leaves the upper halves and every other vector register
 * caller-saved), and FPCR, whose rounding mode and FZ/DN/AH bits the C library treats as
 * per-thread state that calls preserve. FPSR (the cumulative exception flags) is not saved: like
 * the integer flags it is caller-saved, and like errno-style state it belongs to whoever reads it
 * next. The saved area is 176 bytes, a multiple of 16 so that sp stays 16-aligned as AAPCS64
 * demands at every instruction, laid out exactly as tt__saved_regs.
 *
 * A fresh context (tt__ctx_make) resumes at tt__ctx_start rather than at entry itself: tt__switch
 * ends in `ret`, which leaves x30 equal to the address it branched to, so entering entry directly
 * would give it a return address pointing at its own first instruction and unwinders would loop.
 * The trampoline clears x29 and x30 and then branches to entry (kept in the x19 slot), so entry's
 * frame record is {0, 0}, which ends frame-pointer walks, and its DWARF return address is 0, which
 * ends table-driven ones.
 *
 * Rejected: saving all of v8-v15 (q registers) would cost 64 more bytes per switch for state no
 * caller may rely on; saving through a separate context struct instead of the stack would force
 * the diagnostics to know two layouts. Writing FPCR unconditionally was rejected because on
 * several cores `msr fpcr` is synchronising (it drains the FP pipeline) while `mrs` is cheap, and
 * almost every switch is between contexts with the same (default) FPCR. */

#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
#define BTI_C bti c
#else
#define BTI_C
#endif

/* Offsets into tt__saved_regs (switch.h). */
#define OFF_D8 0
#define OFF_X19 64
#define OFF_FP 144
#define OFF_PC 152
#define OFF_FPCR 160
#define SAVED_SIZE 176

	.text
	.globl	tt__switch
	.hidden	tt__switch
	.type	tt__switch, %function
	.p2align 4
/* void tt__switch(void **save, void *to): x0 = save, x1 = to.
 * The CFI below describes the saved area at sp; after sp is switched it describes `to`'s saved
 * area, which has the same layout, so a debugger stopping anywhere inside sees a valid frame. */
tt__switch:
	.cfi_startproc
	BTI_C
	sub	sp, sp, #SAVED_SIZE
	.cfi_def_cfa_offset SAVED_SIZE
	stp	d8, d9, [sp, #OFF_D8 + 0]
	.cfi_offset d8, OFF_D8 + 0 - SAVED_SIZE
	.cfi_offset d9, OFF_D8 + 8 - SAVED_SIZE
	stp	d10, d11, [sp, #OFF_D8 + 16]
	.cfi_offset d10, OFF_D8 + 16 - SAVED_SIZE
	.cfi_offset d11, OFF_D8 + 24 - SAVED_SIZE
	stp	d12, d13, [sp, #OFF_D8 + 32]
	.cfi_offset d12, OFF_D8 + 32 - SAVED_SIZE
	.cfi_offset d13, OFF_D8 + 40 - SAVED_SIZE
	stp	d14, d15, [sp, #OFF_D8 + 48]
	.cfi_offset d14, OFF_D8 + 48 - SAVED_SIZE
	.cfi_offset d15, OFF_D8 + 56 - SAVED_SIZE
	stp	x19, x20, [sp, #OFF_X19 + 0]
	.cfi_offset x19, OFF_X19 + 0 - SAVED_SIZE
	.cfi_offset x20, OFF_X19 + 8 - SAVED_SIZE
	stp	x21, x22, [sp, #OFF_X19 + 16]
	.cfi_offset x21, OFF_X19 + 16 - SAVED_SIZE
	.cfi_offset x22, OFF_X19 + 24 - SAVED_SIZE
	stp	x23, x24, [sp, #OFF_X19 + 32]
	.cfi_offset x23, OFF_X19 + 32 - SAVED_SIZE
	.cfi_offset x24, OFF_X19 + 40 - SAVED_SIZE
	stp	x25, x26, [sp, #OFF_X19 + 48]
	.cfi_offset x25, OFF_X19 + 48 - SAVED_SIZE
	.cfi_offset x26, OFF_X19 + 56 - SAVED_SIZE
	stp	x27, x28, [sp, #OFF_X19 + 64]
	.cfi_offset x27, OFF_X19 + 64 - SAVED_SIZE
	.cfi_offset x28, OFF_X19 + 72 - SAVED_SIZE
	stp	x29, x30, [sp, #OFF_FP]
	.cfi_offset x29, OFF_FP - SAVED_SIZE
	.cfi_offset x30, OFF_PC - SAVED_SIZE
	mrs	x9, fpcr
	stp	x9, xzr, [sp, #OFF_FPCR]	/* fpcr and the zeroed pad */
	/* Publish this context. A plain store suffices: whoever resumes it on another worker learns
	 * of it through the scheduler's own release/acquire, which runs after this switch. */
	mov	x10, sp
	str	x10, [x0]
	mov	sp, x1
	ldr	x10, [sp, #OFF_FPCR]
	cmp	x9, x10
	b.eq	1f
	msr	fpcr, x10
1:	ldp	d8, d9, [sp, #OFF_D8 + 0]
	ldp	d10, d11, [sp, #OFF_D8 + 16]
	ldp	d12, d13, [sp, #OFF_D8 + 32]
	ldp	d14, d15, [sp, #OFF_D8 + 48]
	ldp	x19, x20, [sp, #OFF_X19 + 0]
	ldp	x21, x22, [sp, #OFF_X19 + 16]
	ldp	x23, x24, [sp, #OFF_X19 + 32]
	ldp	x25, x26, [sp, #OFF_X19 + 48]
	ldp	x27, x28, [sp, #OFF_X19 + 64]
	ldp	x29, x30, [sp, #OFF_FP]
	add	sp, sp, #SAVED_SIZE
	.cfi_def_cfa_offset 0
	.cfi_restore d8
	.cfi_restore d9
	.cfi_restore d10
	.cfi_restore d11
	.cfi_restore d12
	.cfi_restore d13
	.cfi_restore d14
	.cfi_restore d15
	.cfi_restore x19
	.cfi_restore x20
	.cfi_restore x21
	.cfi_restore x22
	.cfi_restore x23
	.cfi_restore x24
	.cfi_restore x25
	.cfi_restore x26
	.cfi_restore x27
	.cfi_restore x28
	.cfi_restore x29
	.cfi_restore x30
	ret
	.cfi_endproc
	.size	tt__switch, .-tt__switch

	.globl	tt__ctx_make
	.hidden	tt__ctx_make
	.type	tt__ctx_make, %function
	.p2align 4
/* void *tt__ctx_make(void *hi, void (*entry)(void)): x0 = hi, x1 = entry.
 * Lays out one saved area directly below hi (rounded down to 16): every register zero except
 * pc = tt__ctx_start and x19 = entry, FPCR zero (round to nearest, no flush-to-zero, no default
 * NaN, no traps: the state the kernel gives a new process). Once tt__switch has popped it, sp is
 * hi again, 16-aligned as entry requires. Nothing is written at or above hi. */
tt__ctx_make:
	.cfi_startproc
	BTI_C
	and	x0, x0, #~15
	sub	x0, x0, #SAVED_SIZE
	stp	xzr, xzr, [x0, #OFF_D8 + 0]
	stp	xzr, xzr, [x0, #OFF_D8 + 16]
	stp	xzr, xzr, [x0, #OFF_D8 + 32]
	stp	xzr, xzr, [x0, #OFF_D8 + 48]
	stp	x1, xzr, [x0, #OFF_X19 + 0]	/* x19 = entry, x20 = 0 */
	stp	xzr, xzr, [x0, #OFF_X19 + 16]
	stp	xzr, xzr, [x0, #OFF_X19 + 32]
	stp	xzr, xzr, [x0, #OFF_X19 + 48]
	stp	xzr, xzr, [x0, #OFF_X19 + 64]
	adrp	x9, tt__ctx_start
	add	x9, x9, :lo12:tt__ctx_start
	stp	xzr, x9, [x0, #OFF_FP]		/* fp = 0, pc = tt__ctx_start */
	stp	xzr, xzr, [x0, #OFF_FPCR]	/* fpcr = 0, pad = 0 */
	ret
	.cfi_endproc
	.size	tt__ctx_make, .-tt__ctx_make

	.globl	tt__ctx_start
	.hidden	tt__ctx_start
	.type	tt__ctx_start, %function
	.p2align 4
/* The first code a fresh context runs, reached by tt__switch's `ret` with x19 = entry. Its CFI
 * marks the return address undefined, so an unwinder that samples it here stops at once. entry
 * is reached through x16 so that, under BTI, the `bti c` at its start accepts the branch (BR is
 * only compatible with `bti c` through x16 or x17). No BTI landing pad is needed here: `ret` is
 * not checked. */
tt__ctx_start:
	.cfi_startproc
	.cfi_undefined x30
	mov	x29, xzr
	mov	x30, xzr
	mov	x16, x19
	mov	x19, xzr
	br	x16
	.cfi_endproc
	.size	tt__ctx_start, .-tt__ctx_start

	.globl	tt__ctx_restart
	.hidden	tt__ctx_restart
	.type	tt__ctx_restart, %function
	.p2align 4
/* void tt__ctx_restart(void *hi, void (*entry)(void)): x0 = hi, x1 = entry. Abandons the current
 * frames: sp becomes hi rounded down to 16, the frame record and return address are cleared as
 * for a fresh context, FPCR goes back to its default (written only if it differs), and entry
 * runs. Nothing of the old stack is read after sp moves. */
tt__ctx_restart:
	.cfi_startproc
	BTI_C
	and	x0, x0, #~15
	mov	sp, x0
	mov	x29, xzr
	mov	x30, xzr
	mrs	x9, fpcr
	cbz	x9, 1f
	msr	fpcr, xzr
1:	mov	x16, x1
	br	x16
	.cfi_endproc
	.size	tt__ctx_restart, .-tt__ctx_restart

/* Under -mbranch-protection, mark the object BTI- and PAC-compatible so the linker does not turn
 * the feature off for the whole program because of this file. */
#if defined(__ARM_FEATURE_BTI_DEFAULT) || defined(__ARM_FEATURE_PAC_DEFAULT)
#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
#define GNU_PROPERTY_BTI 1
#else
#define GNU_PROPERTY_BTI 0
#endif
#if defined(__ARM_FEATURE_PAC_DEFAULT) && __ARM_FEATURE_PAC_DEFAULT
#define GNU_PROPERTY_PAC 2
#else
#define GNU_PROPERTY_PAC 0
#endif
	.pushsection .note.gnu.property, "a"
	.p2align 3
	.word	4				/* name size: "GNU\0" */
	.word	16				/* descriptor size */
	.word	5				/* NT_GNU_PROPERTY_TYPE_0 */
	.asciz	"GNU"
	.word	0xc0000000			/* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
	.word	4
	.word	GNU_PROPERTY_BTI | GNU_PROPERTY_PAC
	.word	0
	.popsection
#endif

	.section .note.GNU-stack,"",%progbits
