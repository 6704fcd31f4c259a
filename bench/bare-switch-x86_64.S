/*
 * Baseline: the smallest correct x86_64 System V switch of the register set coroscope saves
 * (rsp, rip, rbx, rbp, r12-r15, MXCSR and the x87 control word), leaving with `jmp *` instead
 * of `ret`. It has no registry, no seqlock and no CFI for an interrupted switch: the floor
 * that coroscope's instrumented switch is measured against. Its floating-point handling is
 * the one coroscope's switch uses (docs/benchmarks.md says why that one).
 *
 * struct bare_regs layout (bytes): rsp 0, rip 8, rbx 16, rbp 24, r12 32, r13 40, r14 48,
 * r15 56, mxcsr 64 (4), x87 control word 68 (2), 2 bytes of zero padding.
 */
    .text
    .globl  bare_switch
    .type   bare_switch, @function
    .p2align 4
bare_switch:                    /* void bare_switch(struct bare_regs *from, *to) */
    .cfi_startproc
    stmxcsr 64(%rdi)
    fnstcw  68(%rdi)
    popq    %rax                /* return address: where `from` resumes */
    .cfi_def_cfa_offset 0
    .cfi_register rip, rax
    movq    %rsp, 0(%rdi)
    movq    %rax, 8(%rdi)
    movq    %rbx, 16(%rdi)
    movq    %rbp, 24(%rdi)
    movq    %r12, 32(%rdi)
    movq    %r13, 40(%rdi)
    movq    %r14, 48(%rdi)
    movq    %r15, 56(%rdi)
    ldmxcsr 64(%rsi)
    movzwl  68(%rdi), %ecx      /* fldcw only when the control word differs */
    cmpw    68(%rsi), %cx
    je      1f
    fldcw   68(%rsi)
1:  movq    0(%rsi), %rsp
    movq    16(%rsi), %rbx
    movq    24(%rsi), %rbp
    movq    32(%rsi), %r12
    movq    40(%rsi), %r13
    movq    48(%rsi), %r14
    movq    56(%rsi), %r15
    jmpq    *8(%rsi)
    .cfi_endproc
    .size   bare_switch, .-bare_switch

    .globl  bare_trampoline
    .type   bare_trampoline, @function
    .p2align 4
bare_trampoline:                /* first frame: rbx = context, r12 = entry, r13 = argument */
    .cfi_startproc
    .cfi_undefined rip
    movq    %r13, %rdi
    callq   *%r12
    movq    %rbx, %rdi
    callq   bare_exit
    ud2
    .cfi_endproc
    .size   bare_trampoline, .-bare_trampoline

    .section .note.GNU-stack, "", @progbits
