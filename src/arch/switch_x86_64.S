/* SPDX-License-Identifier: MIT */
/* Context switch for x86_64 (System V ABI). The callee-saved state is rbx, rbp, r12-r15, the
 * MXCSR control bits and the x87 control word (SysV 3.2.1); the layout matches tt__saved_regs in
 * switch.h. */

	.text
	.globl	tt__switch
	.hidden	tt__switch
	.type	tt__switch, @function
	.p2align 4
/* void tt__switch(void **save, void *to): rdi = save, rsi = to */
tt__switch:
	.cfi_startproc
	pushq	%rbp
	.cfi_adjust_cfa_offset 8
	pushq	%rbx
	.cfi_adjust_cfa_offset 8
	pushq	%r12
	.cfi_adjust_cfa_offset 8
	pushq	%r13
	.cfi_adjust_cfa_offset 8
	pushq	%r14
	.cfi_adjust_cfa_offset 8
	pushq	%r15
	.cfi_adjust_cfa_offset 8
	subq	$8, %rsp
	.cfi_adjust_cfa_offset 8
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.cfi_endproc
	.size	tt__switch, .-tt__switch

	.globl	tt__ctx_make
	.hidden	tt__ctx_make
	.type	tt__ctx_make, @function
	.p2align 4
/* void *tt__ctx_make(void *hi, void (*entry)(void)): rdi = hi, rsi = entry.
 * Layout from the aligned top down: a zero return address for entry (ends unwinding), entry as
 * the address tt__switch returns to, six zeroed callee-saved registers, and the default MXCSR
 * (0x1f80) and x87 control word (0x037f). After tt__switch pops it all and returns, rsp is
 * 8 mod 16, as at any function entry. */
tt__ctx_make:
	.cfi_startproc
	movq	%rdi, %rax
	andq	$-16, %rax
	movq	$0, -8(%rax)
	movq	%rsi, -16(%rax)
	movq	$0, -24(%rax)
	movq	$0, -32(%rax)
	movq	$0, -40(%rax)
	movq	$0, -48(%rax)
	movq	$0, -56(%rax)
	movq	$0, -64(%rax)
	leaq	-72(%rax), %rax
	movl	$0x1f80, (%rax)
	movw	$0x037f, 4(%rax)
	movw	$0, 6(%rax)
	ret
	.cfi_endproc
	.size	tt__ctx_make, .-tt__ctx_make

	.globl	tt__ctx_restart
	.hidden	tt__ctx_restart
	.type	tt__ctx_restart, @function
	.p2align 4
/* void tt__ctx_restart(void *hi, void (*entry)(void)): rdi = hi, rsi = entry. Abandons the current
 * frames: rsp becomes hi rounded down to 16 with a zero return address pushed (so rsp is 8 mod 16,
 * as at any function entry, and unwinding ends there), the FP control state goes back to the
 * defaults (reloaded only if it differs: ldmxcsr and fldcw stall), and entry runs. Nothing of the
 * old stack is read after rsp moves. */
tt__ctx_restart:
	.cfi_startproc
	andq	$-16, %rdi
	movq	%rdi, %rsp
	pushq	$0
	subq	$8, %rsp
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	cmpl	$0x1f80, (%rsp)
	jne	1f
	cmpw	$0x037f, 4(%rsp)
	je	2f
1:	movl	$0x1f80, (%rsp)
	movw	$0x037f, 4(%rsp)
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
2:	addq	$8, %rsp
	xorl	%ebp, %ebp
	jmpq	*%rsi
	.cfi_endproc
	.size	tt__ctx_restart, .-tt__ctx_restart

	.section .note.GNU-stack,"",@progbits
