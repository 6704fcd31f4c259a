/*
 * The contract between the portable coroutine core (coro.c) and a context-switch backend
 * (switch-x86_64.S). The assembly hard-codes the CORO_REGS_* offsets below; coro.c checks
 * them against struct CoroRegs with static assertions.
 */
#ifndef COROSCOPE_BACKEND_INT_H
#define COROSCOPE_BACKEND_INT_H

#define CORO_REGS_RSP 0
#define CORO_REGS_RIP 8
#define CORO_REGS_RBP 16
#define CORO_REGS_RBX 24
#define CORO_REGS_R12 32
#define CORO_REGS_R13 40
#define CORO_REGS_R14 48
#define CORO_REGS_R15 56
#define CORO_REGS_FP 64   /* mxcsr (4 bytes) then x87 control word (2) then 2 zero bytes */
#define CORO_REGS_SEQ 72
#define CORO_REGS_SIZE 80

#ifndef __ASSEMBLER__
#include <stdint.h>

/*
 * A saved machine context. Plain named fields, never a jmp_buf: out-of-process readers take
 * these values as they are (glibc mangles pointers inside a jmp_buf).
 */
typedef struct CoroRegs {
    uint64_t rsp, rip, rbp, rbx, r12, r13, r14, r15;
    uint32_t mxcsr;
    uint16_t fpucw;
    uint16_t fp_pad;  /* stays zero: the switch compares mxcsr and fpucw as one 64-bit word */
    uint32_t seq;     /* seqlock: made odd by the core before a save, even by the switch after */
    uint32_t pad;
} CoroRegs;

/*
 * Saves the callee-saved state of the caller into *from (then makes from->seq even), loads
 * *to and continues there. Returns when something switches back to *from.
 */
void coro__switch(CoroRegs *from, const CoroRegs *to);

/*
 * First frame of every coroutine stack: CFI marks its return address undefined, so every
 * unwinder stops here. A new context starts at coro__trampoline_entry (one byte into the
 * function) with rbx = the Coroutine, r12 = entry, r13 = opaque; it calls entry(opaque),
 * then coro__terminate(rbx), which never returns.
 */
void coro__trampoline(void);
extern const char coro__trampoline_entry[];
extern const char coro__trampoline_end[];
extern const char coro__switch_end[];

struct Coroutine;
void coro__terminate(struct Coroutine *co) __attribute__((noreturn));

#endif
#endif /* COROSCOPE_BACKEND_INT_H */
