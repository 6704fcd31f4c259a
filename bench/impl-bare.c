/*
 * Baseline: bare-switch-x86_64.S driven the way coroscope drives its own switch (a trampoline
 * calls entry(opaque), then an exit function switches back for good), minus every piece of
 * bookkeeping. The lifecycle reuses one stack.
 */
#include <stdbool.h>
#include <stdint.h>

#include "bench.h"

struct bare_regs {
    uint64_t rsp, rip, rbx, rbp, r12, r13, r14, r15;
    uint32_t mxcsr;
    uint16_t fpucw, pad;
};

struct bare_co {
    struct bare_regs regs;
    struct bare_regs *back;     /* where the coroutine returns to */
};

void bare_switch(struct bare_regs *from, const struct bare_regs *to);
void bare_trampoline(void);
void bare_exit(struct bare_co *co) __attribute__((noreturn));

static struct bare_regs leader;
static struct bare_co rt_co, life_co;
static char *rt_stack_top, *life_stack_top;
static volatile bool rt_stop;

void bare_exit(struct bare_co *co)
{
    bare_switch(&co->regs, co->back);
    __builtin_unreachable();
}

static void start(struct bare_co *co, char *top, void (*entry)(void *), void *arg)
{
    co->regs.rsp = (uint64_t)(uintptr_t)top;
    co->regs.rip = (uint64_t)(uintptr_t)bare_trampoline;
    co->regs.rbp = 0;
    co->regs.rbx = (uint64_t)(uintptr_t)co;
    co->regs.r12 = (uint64_t)(uintptr_t)entry;
    co->regs.r13 = (uint64_t)(uintptr_t)arg;
    __asm__("stmxcsr %0\n\tfnstcw %1" : "=m"(co->regs.mxcsr), "=m"(co->regs.fpucw));
    co->back = &leader;
}

static void rt_entry(void *arg)
{
    struct bare_co *co = arg;
    while (!rt_stop) {
        bare_switch(&co->regs, co->back);
    }
}

static void empty_entry(void *arg)
{
    (void)arg;
}

static int setup(void)
{
    char *a = bench_stack_alloc(BENCH_STACK_SIZE);
    char *b = bench_stack_alloc(BENCH_STACK_SIZE);
    if (!a || !b) {
        return -1;
    }
    rt_stack_top = a + BENCH_STACK_SIZE;
    life_stack_top = b + BENCH_STACK_SIZE;
    rt_stop = false;
    start(&rt_co, rt_stack_top, rt_entry, &rt_co);
    return 0;
}

static void round_trip(long n)
{
    for (long i = 0; i < n; i++) {
        bare_switch(&leader, &rt_co.regs);
    }
}

static void lifecycle(long n)
{
    for (long i = 0; i < n; i++) {
        start(&life_co, life_stack_top, empty_entry, &life_co);
        bare_switch(&leader, &life_co.regs);
    }
}

static void teardown(void)
{
    rt_stop = true;
    bare_switch(&leader, &rt_co.regs);
}

const struct bench_impl bench_bare = {
    .name = "bare asm switch",
    .setup = setup,
    .round_trip = round_trip,
    .lifecycle = lifecycle,
    .teardown = teardown,
};
