/*
 * Baseline: Boost.Context's fcontext primitives (make_fcontext, jump_fcontext), the switch
 * under boost::context::callcc and Boost.Coroutine2, without their allocation and unwinding
 * layers. The lifecycle reuses one stack, as a pooled stack allocator would.
 */
#include <boost/context/detail/fcontext.hpp>
#include <cstddef>

#include "bench.h"

namespace ctx = boost::context::detail;

static ctx::fcontext_t rt_ctx;
static volatile bool rt_stop;
static char *life_stack_top;

static void rt_fn(ctx::transfer_t t)
{
    while (!rt_stop) {
        t = ctx::jump_fcontext(t.fctx, nullptr);
    }
    /* Leave for good: the caller drops this context. */
    ctx::jump_fcontext(t.fctx, nullptr);
}

/* The whole life of a coroutine with an empty body: started, then returns control for good. */
static void empty_fn(ctx::transfer_t t)
{
    ctx::jump_fcontext(t.fctx, nullptr);
}

static int setup(void)
{
    char *base = static_cast<char *>(bench_stack_alloc(BENCH_STACK_SIZE));
    char *life = static_cast<char *>(bench_stack_alloc(BENCH_STACK_SIZE));
    if (!base || !life) {
        return -1;
    }
    rt_stop = false;
    rt_ctx = ctx::make_fcontext(base + BENCH_STACK_SIZE, BENCH_STACK_SIZE, rt_fn);
    rt_ctx = ctx::jump_fcontext(rt_ctx, nullptr).fctx;   /* started and suspended */
    life_stack_top = life + BENCH_STACK_SIZE;
    return 0;
}

static void round_trip(long n)
{
    ctx::fcontext_t c = rt_ctx;
    for (long i = 0; i < n; i++) {
        c = ctx::jump_fcontext(c, nullptr).fctx;
    }
    rt_ctx = c;
}

static void lifecycle(long n)
{
    for (long i = 0; i < n; i++) {
        ctx::fcontext_t c = ctx::make_fcontext(life_stack_top, BENCH_STACK_SIZE, empty_fn);
        ctx::jump_fcontext(c, nullptr);
    }
}

static void teardown(void)
{
    rt_stop = true;
    ctx::jump_fcontext(rt_ctx, nullptr);
}

extern "C" const struct bench_impl bench_boost = {
    "Boost.Context fcontext", setup, round_trip, lifecycle, teardown,
};
