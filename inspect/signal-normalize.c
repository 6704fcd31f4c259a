/*
 * Putting a snapshot in order (signal-hold.c took it): the threads were stopped wherever they
 * were, some in the middle of a switch, so each copied record is made to say where its stack
 * really was, and each held thread's shard names the coroutine it was running. No locks, no
 * allocation: the crash report runs this in a signal handler.
 */
#define _GNU_SOURCE
#include <string.h>

#include "coro-int.h"
#include "signal-int.h"

/* Bytes from coro__trampoline_entry to the return address of its call of the entry function
 * (movq %r13, %rdi; callq *%r12), checked by a test. */
#define TRAMPOLINE_CALL_END 6

static void *copy_of(SigSnapshot *s, uint64_t addr, size_t len)
{
    bool fenced;
    return (void *)coro__sig_find(s, addr, len, &fenced);
}

/*
 * Makes every copied record say where its stack really was: a coroutine is shown running
 * when its thread's stack pointer was on its stack (this includes one caught in the middle
 * of yielding, whose record is still open: seq odd), and suspended (or created) when it was
 * marked running but its thread had not switched to it yet. Then each shard's current is the
 * coroutine whose stack its thread was on.
 */
void coro__sig_normalize(SigSnapshot *s)
{
    const struct coro_debug_abi *abi = copy_of(s, s->abi_addr, sizeof(*abi));
    if (!abi) {
        return;
    }
    uint64_t entry = (uint64_t)(uintptr_t)coro__trampoline_entry;
    uint64_t tramp_lo = (uint64_t)(uintptr_t)coro__trampoline;
    uint64_t tramp_hi = (uint64_t)(uintptr_t)coro__trampoline_end;
    uint64_t switch_lo = abi->switch_start, switch_hi = abi->switch_end;
    if (!switch_lo) {
        switch_lo = (uint64_t)(uintptr_t)coro__switch;
        switch_hi = (uint64_t)(uintptr_t)coro__switch_end;
    }
    uint64_t addr = abi->records;
    for (uint64_t n = 0; addr && n < abi->nrecords; n++) {
        Coroutine *rec = copy_of(s, addr, sizeof(Coroutine));
        if (!rec) {
            break;
        }
        uint32_t st = atomic_load_explicit(&rec->state, memory_order_relaxed);
        uint32_t seq = rec->regs.seq;
        if (coro__sig_live_state(st)) {
            uint64_t base = (uint64_t)(uintptr_t)rec->stack_base;
            uint64_t top = base + rec->stack_size;
            SigThread *t = coro__sig_find_thread(s, rec->tid);
            bool on_cpu = t && t->held && coro__sig_on_stack(&t->regs, base, top);
            uint64_t rip = on_cpu ? t->regs.rip : 0;
            if (on_cpu && rip >= tramp_lo && rip < tramp_hi) {
                /* In the trampoline: about to call the entry function (shown as never
                 * entered), or back from it and terminating (not live any more). */
                atomic_store_explicit(&rec->state,
                                      rip < entry + TRAMPOLINE_CALL_END ? CORO_STATE_CREATED
                                                                        : CORO_STATE_TERMINATED,
                                      memory_order_relaxed);
                rec->regs.seq &= ~1u;
            } else if (on_cpu) {
                atomic_store_explicit(&rec->state, CORO_STATE_RUNNING, memory_order_relaxed);
                rec->regs.seq &= ~1u;
                t->running = addr;
                if (rip >= switch_lo && rip < switch_hi && !(seq & 1) &&
                    (t->regs.rsp == rec->regs.rsp ||
                     t->regs.rsp == rec->regs.rsp + 8)) {
                    /* + 8: after the switch's last pop, about to jump to the address the saved
                     * rip's `ret` returns to (runtime/switch-x86_64.S). */
                    t->regs.rsp = rec->regs.rsp;
                    /* Caught inside the switch with this coroutine's saved stack pointer
                     * loaded and its record closed: the switch is loading (or has just
                     * stored) exactly the saved context, which every unwinder understands,
                     * while the switch's own CFI there describes a frame whose CFA does not
                     * grow. */
                    t->regs.rip = rec->regs.rip;
                    t->regs.rbp = rec->regs.rbp;
                    t->regs.rbx = rec->regs.rbx;
                    t->regs.r12 = rec->regs.r12;
                    t->regs.r13 = rec->regs.r13;
                    t->regs.r14 = rec->regs.r14;
                    t->regs.r15 = rec->regs.r15;
                    t->regs.valid = CORO_MREG_CALLEE_SAVED;
                    t->regs.rip_is_return_address = true;
                }
            } else if (st == CORO_STATE_RUNNING && t && t->held && !(rec->regs.seq & 1)) {
                atomic_store_explicit(&rec->state,
                                      rec->regs.rip == entry ? CORO_STATE_CREATED
                                                             : CORO_STATE_SUSPENDED,
                                      memory_order_relaxed);
            }
        }
        addr = (uint64_t)(uintptr_t)atomic_load_explicit(&rec->next, memory_order_relaxed);
    }
    /* Shards of held threads: current = the record now marked running on that thread. */
    uint64_t saddr = abi->shards;
    for (uint64_t n = 0; saddr && n < abi->nshards; n++) {
        CoroShard *sh = copy_of(s, saddr, sizeof(CoroShard));
        if (!sh) {
            break;
        }
        int32_t tid = atomic_load_explicit(&sh->tid, memory_order_relaxed);
        SigThread *t = tid > 0 ? coro__sig_find_thread(s, tid) : NULL;
        if (t && t->held) {
            sh->current = (Coroutine *)(uintptr_t)t->running;
        }
        saddr = (uint64_t)(uintptr_t)atomic_load_explicit(&sh->next, memory_order_relaxed);
    }
}

