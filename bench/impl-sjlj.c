/*
 * Baseline: QEMU's coroutine-ucontext.c scheme. makecontext/swapcontext run once, to start a
 * coroutine on its stack; every switch after that is sigsetjmp(env, 0)/siglongjmp (no signal
 * mask syscalls). Terminated coroutines go back to a pool with their stack and context, and
 * their trampoline loops, so a pooled create is a pop and a store of the entry (QEMU's
 * qemu_coroutine_create/qemu_coroutine_delete).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

#include "bench.h"

enum { ACTION_YIELD = 1, ACTION_TERMINATE = 2, ACTION_ENTER = 3 };

struct sj_co {
    void (*entry)(void *);
    void *arg;
    struct sj_co *caller;
    struct sj_co *pool_next;
    sigjmp_buf env;
};

static struct sj_co leader;          /* the thread's own stack */
static struct sj_co *current = &leader;
static struct sj_co *pool;
static struct sj_co rt_co, life_co;
static volatile bool rt_stop;
static sigjmp_buf *start_env;        /* where a new coroutine's first sigsetjmp returns to */

static __attribute__((noinline)) int sj_switch(struct sj_co *from, struct sj_co *to, int action)
{
    int ret = sigsetjmp(from->env, 0);
    if (ret == 0) {
        siglongjmp(to->env, action);
    }
    return ret;
}

static void trampoline(int hi, int lo)
{
    struct sj_co *co = (struct sj_co *)(((uintptr_t)(unsigned)hi << 32) | (unsigned)lo);
    if (!sigsetjmp(co->env, 0)) {
        siglongjmp(*start_env, 1);
    }
    for (;;) {
        co->entry(co->arg);
        sj_switch(co, co->caller, ACTION_TERMINATE);
    }
}

/* qemu_coroutine_new(): runs once per coroutine object, not per create. */
static int sj_new(struct sj_co *co, char *stack)
{
    ucontext_t old_uc, uc;
    sigjmp_buf old_env;
    if (getcontext(&uc) < 0) {
        return -1;
    }
    uc.uc_link = NULL;
    uc.uc_stack.ss_sp = stack;
    uc.uc_stack.ss_size = BENCH_STACK_SIZE;
    uc.uc_stack.ss_flags = 0;
    uintptr_t p = (uintptr_t)co;
    makecontext(&uc, (void (*)(void))trampoline, 2, (int)(p >> 32), (int)p);
    start_env = &old_env;
    if (!sigsetjmp(old_env, 0)) {
        swapcontext(&old_uc, &uc);
    }
    start_env = NULL;
    return 0;
}

static struct sj_co *sj_create(void (*entry)(void *), void *arg)
{
    struct sj_co *co = pool;   /* always pooled here: setup filled the pool */
    pool = co->pool_next;
    co->entry = entry;
    co->arg = arg;
    return co;
}

static void sj_enter(struct sj_co *co)
{
    struct sj_co *self = current;
    co->caller = self;
    current = co;
    int ret = sj_switch(self, co, ACTION_ENTER);
    current = self;
    if (ret == ACTION_TERMINATE) {
        co->pool_next = pool;
        pool = co;
    }
}

static void sj_yield(void)
{
    struct sj_co *self = current;
    struct sj_co *to = self->caller;
    self->caller = NULL;
    sj_switch(self, to, ACTION_YIELD);
}

static void rt_entry(void *arg)
{
    (void)arg;
    while (!rt_stop) {
        sj_yield();
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
    if (!a || !b || sj_new(&rt_co, a) < 0 || sj_new(&life_co, b) < 0) {
        return -1;
    }
    rt_stop = false;
    pool = &life_co;
    life_co.pool_next = NULL;
    rt_co.pool_next = NULL;
    rt_co.entry = rt_entry;
    rt_co.arg = NULL;
    return 0;
}

static void round_trip(long n)
{
    for (long i = 0; i < n; i++) {
        sj_enter(&rt_co);
    }
}

static void lifecycle(long n)
{
    for (long i = 0; i < n; i++) {
        sj_enter(sj_create(empty_entry, NULL));
    }
}

static void teardown(void)
{
    rt_stop = true;
    sj_enter(&rt_co);
}

const struct bench_impl bench_sjlj = {
    .name = "QEMU-style sigsetjmp",
    .setup = setup,
    .round_trip = round_trip,
    .lifecycle = lifecycle,
    .teardown = teardown,
};
