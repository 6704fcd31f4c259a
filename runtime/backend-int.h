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
#define CORO_REGS_EH 80   /* the C++ exception state: caught-exception stack (8) then uncaught count (4) */
#define CORO_REGS_SIZE 96

/* Fields of struct Coroutine and struct CoroShard (coro-int.h) that the assembly fast paths of
 * coro_enter and coro_yield update; coro.c checks them with static assertions. The values of
 * CORO_STATE_* (debug-abi.h) they store are repeated here for the assembler. */
#define CORO_REC_STATE 96
#define CORO_REC_TID 100
#define CORO_REC_CALLER 104
#define CORO_REC_SWITCH_COUNT 112
#define CORO_REC_ID 120
#define CORO_SHARD_CURRENT 0
#define CORO_SHARD_EH 8
#define CORO_SHARD_TID 16
#define CORO_SHARD_LEADER 56
#define CORO_ASM_STATE_CREATED 1
#define CORO_ASM_STATE_RUNNING 2
#define CORO_ASM_STATE_SUSPENDED 3
#define CORO_ASM_STATE_NESTED 4

/* Sanitizer builds switch from C (coro.c), telling the sanitizer about every stack switch:
 * ASan around __sanitizer_{start,finish}_switch_fiber, TSan with __tsan_switch_to_fiber. Other
 * builds enter and yield through the assembly entry points in switch-x86_64.S. */
#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORO_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CORO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORO_TSAN 1
#endif
#endif
#if defined(CORO_ASAN) || defined(CORO_TSAN)
#define CORO_C_SWITCH 1
#endif

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
    uint16_t fp_pad;  /* stays zero */
    uint32_t seq;     /* seqlock: made odd by the core before a save, even by the switch after */
    uint32_t pad;
    /* The context's C++ exception state (the two fields of __cxa_eh_globals, Itanium C++ ABI
     * 2.2.2), saved and loaded only in programs that have a C++ runtime (CoroShard.eh). */
    uint64_t eh_caught;
    uint32_t eh_uncaught;
    uint32_t eh_pad;
} CoroRegs;

/*
 * coro__switch_call(from, to) saves the callee-saved state of the caller into *from (then
 * makes from->seq even), loads *to and continues there. Returns when something switches back
 * to *from. coro__switch is the same switch entered by jump from coro_enter / coro_yield
 * (register convention in switch-x86_64.S); [coro__switch, coro__switch_end) is the range
 * the debug ABI gives readers for the switch.
 *
 * Continuing at a saved rip that holds a `ret` instruction is done by popping the return
 * address and jumping to it, which is what that `ret` would do: the `ret` itself would
 * mispredict (the return-stack buffer holds the other stack's return addresses). coro_enter
 * and coro_yield save such a rip (a `ret` inside themselves), so readers see them as frame 0
 * while a resumed coroutine goes straight back into its caller.
 */
void coro__switch_call(CoroRegs *from, const CoroRegs *to);
void coro__switch(void); /* not callable from C: only its address is used */

/* Loads *to and continues there without saving anything: a terminating coroutine's last
 * switch. */
void coro__switch_exit(const CoroRegs *to) __attribute__((noreturn));

/* What coro_enter / coro_yield switch between; returned in rax:rdx to the assembly, which
 * calls these on its slow paths (first use on a thread, misuse). */
typedef struct CoroSwitch {
    CoroRegs *from;
    const CoroRegs *to;
} CoroSwitch;

struct Coroutine;
/* The bookkeeping and misuse checks of coro_enter(co), up to the switch: the C twin of the
 * assembly fast path, which must record exactly the same. */
CoroSwitch coro__enter_prepare(struct Coroutine *co);
/* coro_yield() outside a coroutine: one line, a backtrace, abort. */
void coro__yield_misuse(void) __attribute__((noreturn));

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

void coro__terminate(struct Coroutine *co) __attribute__((noreturn));

#endif
#endif /* COROSCOPE_BACKEND_INT_H */
