/*
 * x86_64 System V context switch and coroutine trampoline.
 *
 * The switch saves exactly what the ABI makes callee-saved: rsp, rbx, rbp, r12-r15, the MXCSR
 * control bits and the x87 control word, plus the return address as rip. It leaves with
 * `jmp *` rather than `ret`, which keeps the return-address predictor in step (about 3x faster
 * round trips, shared/FIELD-NOTES.md). MXCSR/x87 are reloaded only when they differ from the
 * current ones, because ldmxcsr is the slow part and they almost never differ.
 *
 * Both functions carry CFI so that gdb, libdw and libunwind can unwind a thread that is
 * stopped anywhere inside them, and stop cleanly at the bottom of every coroutine stack.
 */
#include "backend-int.h"

    .text

    .globl  coro__switch
    .hidden coro__switch
    .globl  coro__switch_end
    .hidden coro__switch_end
    .type   coro__switch, @function
    .p2align 4
coro__switch:
    .cfi_startproc
    /* rdi = from, rsi = to. Until rsp is reloaded the default CFI of a called function holds:
       CFA = rsp + 8, return address at CFA - 8, callee-saved registers still in place. */
    movq    (%rsp), %rax
    leaq    8(%rsp), %rdx
    movq    %rbx, CORO_REGS_RBX(%rdi)
    movq    %rbp, CORO_REGS_RBP(%rdi)
    movq    %r12, CORO_REGS_R12(%rdi)
    movq    %r13, CORO_REGS_R13(%rdi)
    movq    %r14, CORO_REGS_R14(%rdi)
    movq    %r15, CORO_REGS_R15(%rdi)
    movq    %rax, CORO_REGS_RIP(%rdi)
    movq    %rdx, CORO_REGS_RSP(%rdi)
    stmxcsr CORO_REGS_FP(%rdi)
    fnstcw  CORO_REGS_FP+4(%rdi)
    /* *from is complete: close the seqlock the core opened (odd -> even). */
    addl    $1, CORO_REGS_SEQ(%rdi)
    /* Compare MXCSR control bits (6..15) and the x87 control word with the target's. */
    movq    CORO_REGS_FP(%rdi), %rax
    xorq    CORO_REGS_FP(%rsi), %rax
    movabsq $0x0000ffff0000ffc0, %rcx
    testq   %rcx, %rax
    jnz     .Lload_fp
.Lfp_done:
    .cfi_remember_state
    movq    CORO_REGS_RSP(%rsi), %rsp
    /* From here on this frame is the target context described by *to (rsi): its CFA is the
       loaded rsp, its return address and callee-saved registers are in *to. */
    .cfi_def_cfa %rsp, 0
    .cfi_escape 0x10, 16, 2, 0x74, CORO_REGS_RIP  /* DW_CFA_expression rip: rsi + RIP */
    .cfi_escape 0x10, 3, 2, 0x74, CORO_REGS_RBX   /* rbx */
    .cfi_escape 0x10, 6, 2, 0x74, CORO_REGS_RBP   /* rbp */
    .cfi_escape 0x10, 12, 2, 0x74, CORO_REGS_R12  /* r12 */
    .cfi_escape 0x10, 13, 2, 0x74, CORO_REGS_R13  /* r13 */
    .cfi_escape 0x10, 14, 2, 0x74, CORO_REGS_R14  /* r14 */
    .cfi_escape 0x10, 15, 2, 0x74, CORO_REGS_R15  /* r15 */
    movq    CORO_REGS_RBX(%rsi), %rbx
    movq    CORO_REGS_RBP(%rsi), %rbp
    movq    CORO_REGS_R12(%rsi), %r12
    movq    CORO_REGS_R13(%rsi), %r13
    movq    CORO_REGS_R14(%rsi), %r14
    movq    CORO_REGS_R15(%rsi), %r15
    jmpq    *CORO_REGS_RIP(%rsi)
    .cfi_restore_state
.Lload_fp:
    ldmxcsr CORO_REGS_FP(%rsi)
    fldcw   CORO_REGS_FP+4(%rsi)
    jmp     .Lfp_done
    .cfi_endproc
coro__switch_end:
    .size   coro__switch, .-coro__switch

    .globl  coro__trampoline
    .hidden coro__trampoline
    .globl  coro__trampoline_entry
    .hidden coro__trampoline_entry
    .globl  coro__trampoline_end
    .hidden coro__trampoline_end
    .type   coro__trampoline, @function
    .p2align 4
coro__trampoline:
    .cfi_startproc
    /* The bottom of every coroutine stack: there is no caller. */
    .cfi_undefined rip
    /* Execution starts one byte in, so that unwinders, which look up pc - 1 for the frame
       they start in, still find this FDE for a coroutine that was never entered. */
    nop
coro__trampoline_entry:
    movq    %r13, %rdi
    callq   *%r12
    movq    %rbx, %rdi
    callq   coro__terminate
    ud2
    .cfi_endproc
coro__trampoline_end:
    .size   coro__trampoline, .-coro__trampoline

    .section .note.GNU-stack, "", @progbits
