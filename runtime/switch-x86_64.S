/*
 * x86_64 System V context switch and coroutine trampoline.
 *
 * The switch saves exactly what the ABI makes callee-saved: rsp, rbx, rbp, r12-r15, the MXCSR
 * control bits and the x87 control word, plus the return address as rip. It leaves with
 * `jmp *` rather than `ret`, which keeps the return-address predictor in step (about 3x faster
 * round trips, shared/FIELD-NOTES.md).
 *
 * Floating-point control state (measured on this project's AMD EPYC VM, docs/benchmarks.md):
 * reading back the value stmxcsr just stored stalls (~2 ns per switch), while an unconditional
 * ldmxcsr is cheap; fnstcw reads back fast and fldcw is the costly load. So MXCSR is always
 * reloaded (status flags included, as Boost.Context and swapcontext do) and the x87 control
 * word only when it differs.
 *
 * coro_enter and coro_yield live here too (outside sanitizer builds): they call their C
 * bookkeeping, then jump into the switch with a saved rip that points at their own `ret`.
 * Readers therefore see coro_enter / coro_yield as frame 0 of a suspended context, and the
 * switch resumes such a context by doing that `ret`'s work itself (pop, jmp), so that no
 * `ret` runs against the other stack's return-stack-buffer entries (a mispredict each,
 * ~6 ns per switch here).
 *
 * All of it carries CFI so that gdb, libdw and libunwind can unwind a thread that is stopped
 * anywhere inside, and stop cleanly at the bottom of every coroutine stack.
 */
#include "backend-int.h"

/*
 * USDT probes enter and yield (runtime/probes-int.h, docs/tracing.md), written out as
 * <sys/sdt.h> lays them out (its macros do not assemble here): a nop at the site and a
 * .note.stapsdt entry naming it, whose one argument is a memory operand the tracer reads —
 * the record's id at CORO_REC_ID(reg) — so the fast path gains a nop and computes nothing.
 */
#define CORO_STR(x) #x
#define CORO_XSTR(x) CORO_STR(x)
    .macro CORO_PROBE name, reg
990\@:
    nop
    .pushsection .note.stapsdt, "?", "note"
    .balign 4
    .4byte 992\@f - 991\@f, 994\@f - 993\@f, 3
991\@:
    .asciz "stapsdt"
992\@:
    .balign 4
993\@:
    .8byte 990\@b
    .8byte _.stapsdt.base
    .8byte 0
    .asciz "coroscope"
    .asciz "\name"
    .ascii "8@" CORO_XSTR(CORO_REC_ID) "("
    .asciz "\reg)"
994\@:
    .balign 4
    .popsection
    .ifndef _.stapsdt.base
    .pushsection .stapsdt.base, "aG", "progbits", .stapsdt.base, comdat
    .weak _.stapsdt.base
    .hidden _.stapsdt.base
_.stapsdt.base:
    .space 1
    .size _.stapsdt.base, 1
    .popsection
    .endif
    .endm

    .text

    .globl  coro__switch
    .hidden coro__switch
    .globl  coro__switch_end
    .hidden coro__switch_end
    .type   coro__switch, @function
    .p2align 4
/*
 * coro__switch: rdi = from, rsi = to, rax = the rip to save, rdx = the rsp to save, and the
 * floating-point control state already stored in *from. coro_enter and coro_yield jump here
 * with rdx pointing at their return address; coro__switch_call (below) is the C-callable
 * form. Until rsp is reloaded the default CFI of a called function holds: CFA = rsp + 8,
 * return address at CFA - 8, callee-saved registers still in place.
 */
coro__switch:
    .cfi_startproc
    movq    %rbx, CORO_REGS_RBX(%rdi)
    movq    %rbp, CORO_REGS_RBP(%rdi)
    movq    %r12, CORO_REGS_R12(%rdi)
    movq    %r13, CORO_REGS_R13(%rdi)
    movq    %r14, CORO_REGS_R14(%rdi)
    movq    %r15, CORO_REGS_R15(%rdi)
    movq    %rax, CORO_REGS_RIP(%rdi)
    movq    %rdx, CORO_REGS_RSP(%rdi)
    /* *from is complete: close the seqlock the core opened (odd -> even). */
    addl    $1, CORO_REGS_SEQ(%rdi)
    movzwl  CORO_REGS_FP+4(%rdi), %ecx
    cmpw    CORO_REGS_FP+4(%rsi), %cx
    jne     .Lload_fpucw
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
    movq    CORO_REGS_RIP(%rsi), %rcx
    /* Late: here the loads above are already issued; right after the stores it costs a
       round trip ~4 ns (docs/benchmarks.md). */
    ldmxcsr CORO_REGS_FP(%rsi)
    cmpb    $0xc3, (%rcx)       /* does the target continue with a plain `ret`? */
    jne     .Ljump_rip
    /* Do that ret's work: the target's rsp points at its return address. */
    .cfi_remember_state
    popq    %rcx
    /* The target now continues at rcx with this rsp; rcx is also still in memory just below
       it, which every unwinder understands (DW_CFA_expression rip: rsp - 8). */
    .cfi_escape 0x10, 16, 2, 0x77, 0x78
    jmpq    *%rcx
    .cfi_restore_state
.Ljump_rip:
    jmpq    *%rcx
    .cfi_restore_state
.Lload_fpucw:
    fldcw   CORO_REGS_FP+4(%rsi)
    jmp     .Lfp_done
    .cfi_endproc
    .size   coro__switch, .-coro__switch

/* void coro__switch_call(CoroRegs *from, const CoroRegs *to): coro__switch for C callers. */
    .globl  coro__switch_call
    .hidden coro__switch_call
    .type   coro__switch_call, @function
    .p2align 4
coro__switch_call:
    .cfi_startproc
    stmxcsr CORO_REGS_FP(%rdi)
    fnstcw  CORO_REGS_FP+4(%rdi)
    movq    (%rsp), %rax
    leaq    8(%rsp), %rdx
    jmp     coro__switch
    .cfi_endproc
    .size   coro__switch_call, .-coro__switch_call

/*
 * void coro__switch_exit(const CoroRegs *to): the last switch of a terminating coroutine.
 * Nothing is saved (the context is never resumed), so neither are the stores nor stmxcsr,
 * which costs ~2 ns here; the x87 control word is loaded without comparing.
 */
    .globl  coro__switch_exit
    .hidden coro__switch_exit
    .type   coro__switch_exit, @function
    .p2align 4
coro__switch_exit:
    .cfi_startproc
    movq    %rdi, %rsi
    fldcw   CORO_REGS_FP+4(%rsi)
    jmp     .Lfp_done           /* same frame shape: return address at (%rsp) */
    .cfi_endproc
    .size   coro__switch_exit, .-coro__switch_exit
coro__switch_end:

#ifndef CORO_C_SWITCH
/*
 * EH_SWAP g, from, to: saves the thread's C++ exception state (*g, the __cxa_eh_globals of
 * this thread: caught-exception stack, uncaught count) into the context *from and loads the
 * one of *to, as eh_swap() in coro.c. Only reached when the shard's eh is set (the program
 * has a C++ runtime). Clobbers r9, r10.
 */
    .macro EH_SWAP g, from, to
    movq    (\g), %r9
    movl    8(\g), %r10d
    movq    %r9, CORO_REGS_EH(\from)
    movl    %r10d, CORO_REGS_EH+8(\from)
    movq    CORO_REGS_EH(\to), %r9
    movl    CORO_REGS_EH+8(\to), %r10d
    movq    %r9, (\g)
    movl    %r10d, 8(\g)
    .endm

/*
 * void coro_enter(Coroutine *co) and void coro_yield(void).
 *
 * The fast paths below record exactly what enter_prepare() / yield_prepare() in coro.c record,
 * in the same order (x86 keeps stores in program order, which is what the C code's release
 * stores ask for). The first use on a thread and every misuse of coro_enter take the C path
 * (coro__enter_prepare, which returns from and to in rax:rdx, or aborts); coro_yield outside
 * a coroutine calls coro__yield_misuse, which aborts.
 * Either way the switch saves rip = the `ret` below and rsp = our return address.
 *
 * Both store the floating-point control state (stmxcsr, fnstcw) into *from before any other
 * store: measured here, an stmxcsr issued behind pending stores, even one, costs ~3 ns more
 * per round trip (docs/benchmarks.md). The nested case of coro_enter is the exception (it
 * opens the caller's seqlock first); it is rarer.
 */
    .globl  coro_enter
    .type   coro_enter, @function
    .p2align 4
coro_enter:
    .cfi_startproc
    movq    coro__tls_shard@gottpoff(%rip), %rax
    movq    %fs:(%rax), %rax            /* rax = this thread's shard */
    testq   %rax, %rax
    jz      .Lenter_slow
    testq   %rdi, %rdi                  /* NULL: the C path says so (coro__enter_prepare) */
    jz      .Lenter_slow
    movl    CORO_REC_STATE(%rdi), %ecx  /* co must be created or suspended */
    andl    $~2, %ecx                   /* 1 (created) or 3 (suspended) -> 1 */
    cmpl    $CORO_ASM_STATE_CREATED, %ecx
    jne     .Lenter_slow
    movq    CORO_SHARD_CURRENT(%rax), %rdx  /* rdx = self (0: the thread's own stack) */
    testq   %rdx, %rdx
    jnz     .Lenter_nested
    leaq    CORO_SHARD_LEADER(%rax), %r8    /* from = the thread's own registers */
.Lenter_record:
    stmxcsr CORO_REGS_FP(%r8)           /* before any store: see below */
    fnstcw  CORO_REGS_FP+4(%r8)
    movl    CORO_SHARD_TID(%rax), %ecx
    movl    %ecx, CORO_REC_TID(%rdi)
    movq    %rdx, CORO_REC_CALLER(%rdi)
    addq    $1, CORO_REC_SWITCH_COUNT(%rdi)
    movl    $CORO_ASM_STATE_RUNNING, CORO_REC_STATE(%rdi)
    movq    %rdi, CORO_SHARD_CURRENT(%rax)
    movq    CORO_SHARD_EH(%rax), %rcx   /* the thread's C++ exception state; 0: none */
    testq   %rcx, %rcx
    jnz     .Lenter_eh
.Lenter_switch:
    CORO_PROBE enter, %rdi
    movq    %rdi, %rsi                  /* to = &co->regs */
    movq    %r8, %rdi
    leaq    .Lenter_resume(%rip), %rax
    movq    %rsp, %rdx
    jmp     coro__switch
.Lenter_resume:
    ret
.Lenter_eh:
    EH_SWAP %rcx, %r8, %rdi
    jmp     .Lenter_switch
.Lenter_nested:
    addl    $1, CORO_REGS_SEQ(%rdx)     /* begin_save(self, NESTED): seqlock odd */
    movl    $CORO_ASM_STATE_NESTED, CORO_REC_STATE(%rdx)
    movq    %rdx, %r8                   /* from = &self->regs */
    jmp     .Lenter_record
.Lenter_slow:
    subq    $8, %rsp                    /* align the stack for the call */
    .cfi_adjust_cfa_offset 8
    callq   coro__enter_prepare         /* rdi = co, passed through */
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    movq    %rax, %rdi
    movq    %rdx, %rsi
    CORO_PROBE enter, %rsi
    stmxcsr CORO_REGS_FP(%rdi)
    fnstcw  CORO_REGS_FP+4(%rdi)
    leaq    .Lenter_resume(%rip), %rax
    movq    %rsp, %rdx
    jmp     coro__switch
    .cfi_endproc
    .size   coro_enter, .-coro_enter

    .globl  coro_yield
    .type   coro_yield, @function
    .p2align 4
coro_yield:
    .cfi_startproc
    movq    coro__tls_shard@gottpoff(%rip), %rax
    movq    %fs:(%rax), %rax            /* rax = this thread's shard */
    testq   %rax, %rax
    jz      .Lyield_slow
    movq    CORO_SHARD_CURRENT(%rax), %rdi  /* rdi = self = from */
    testq   %rdi, %rdi
    jz      .Lyield_slow
    /* Before any store (see above); self is RUNNING, so readers do not use its registers
       yet, and the seqlock below covers them before they mean anything. */
    stmxcsr CORO_REGS_FP(%rdi)
    fnstcw  CORO_REGS_FP+4(%rdi)
    movq    CORO_REC_CALLER(%rdi), %rsi     /* rsi = to (0: the thread's own stack) */
    addl    $1, CORO_REGS_SEQ(%rdi)     /* begin_save(self, SUSPENDED): seqlock odd */
    movl    $CORO_ASM_STATE_SUSPENDED, CORO_REC_STATE(%rdi)
    movq    $0, CORO_REC_CALLER(%rdi)
    movq    %rsi, CORO_SHARD_CURRENT(%rax)
    testq   %rsi, %rsi
    jnz     .Lyield_nested
    leaq    CORO_SHARD_LEADER(%rax), %rsi   /* to = the thread's own registers */
.Lyield_switch:
    movq    CORO_SHARD_EH(%rax), %rcx   /* the thread's C++ exception state; 0: none */
    testq   %rcx, %rcx
    jnz     .Lyield_eh
.Lyield_go:
    CORO_PROBE yield, %rdi
    leaq    .Lyield_resume(%rip), %rax
    movq    %rsp, %rdx
    jmp     coro__switch
.Lyield_resume:
    ret
.Lyield_nested:
    movl    $CORO_ASM_STATE_RUNNING, CORO_REC_STATE(%rsi)
    jmp     .Lyield_switch
.Lyield_eh:
    EH_SWAP %rcx, %rdi, %rsi
    jmp     .Lyield_go
.Lyield_slow:
    /* No shard or no current coroutine: yield outside a coroutine, which only aborts. */
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    callq   coro__yield_misuse          /* noreturn */
    ud2
    .cfi_endproc
    .size   coro_yield, .-coro_yield
#endif

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
