/*
 * coroscope, called exactly as a user calls it: through <coroscope/coro.h> and the installed
 * shared library (bench.mk builds this file with `pkg-config --cflags coroscope` against a
 * `make install` into a scratch prefix). The registry is always on; nothing here reaches into
 * the runtime's internals.
 */
#include <coroscope/coro.h>
#include <stdbool.h>
#include <stddef.h>

#include "bench.h"

static Coroutine *rt_co;
static volatile bool rt_stop;

static void rt_entry(void *opaque)
{
    (void)opaque;
    while (!rt_stop) {
        coro_yield();
    }
}

static void empty_entry(void *opaque)
{
    (void)opaque;
}

static int setup(void)
{
    rt_stop = false;
    rt_co = coro_create(rt_entry, NULL);
    if (!rt_co) {
        return -1;
    }
    /* Warm the pool: the first create of a thread maps a stack, later ones reuse it. */
    Coroutine *co = coro_create(empty_entry, NULL);
    if (!co) {
        return -1;
    }
    coro_enter(co);
    return 0;
}

static void round_trip(long n)
{
    Coroutine *co = rt_co;
    for (long i = 0; i < n; i++) {
        coro_enter(co);
    }
}

static void lifecycle(long n)
{
    for (long i = 0; i < n; i++) {
        Coroutine *co = coro_create(empty_entry, NULL);
        coro_enter(co);
    }
}

static void teardown(void)
{
    rt_stop = true;
    coro_enter(rt_co);
    rt_co = NULL;
}

const struct bench_impl bench_coroscope = {
    .name = "coroscope",
    .setup = setup,
    .round_trip = round_trip,
    .lifecycle = lifecycle,
    .teardown = teardown,
};
