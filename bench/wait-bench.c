/*
 * The waiting side of the runtime, measured in one process (run by `make bench`):
 *   - an uncontended CoMutex lock+unlock, beside a plain enter+yield round trip;
 *   - a CoQueue wait+wake hand-off between two coroutines through the loop;
 *   - coro_dump (JSON to /dev/null) of 10,000 coroutines parked in coro_queue_wait against
 *     10,000 parked by a plain coro_yield, the same call depth.
 * Medians of 7 samples; prints a markdown table.
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/inspect.h>
#include <coroscope/loop.h>
#include <coroscope/sync.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define SAMPLES 7

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, SAMPLES, sizeof(*v), cmp);
    return v[SAMPLES / 2];
}

static long iters = 1000000;
static CoMutex m;
static double result;

static void mutex_loop(void *opaque)
{
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        coro_mutex_lock(&m);
        coro_mutex_unlock(&m);
    }
    result = (now_ns() - t0) / (double)iters;
}

static void yielder(void *opaque)
{
    for (;;) {
        coro_yield();
    }
}

static double round_trip(void)
{
    Coroutine *co = coro_create(yielder, NULL);
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        coro_enter(co);
    }
    return (now_ns() - t0) / (double)iters; /* co stays parked: a leak the bench ignores */
}

static CoQueue qa, qb;
static long handoffs;

static void ping(void *opaque)
{
    for (long i = 0; i < handoffs; i++) {
        coro_queue_next(&qb);
        coro_queue_wait(&qa, NULL);
    }
    coro_queue_next(&qb);
}

static void pong(void *opaque)
{
    for (long i = 0; i < handoffs; i++) {
        coro_queue_wait(&qb, NULL);
        coro_queue_next(&qa);
    }
}

static double handoff(void)
{
    handoffs = iters / 4;
    coro_queue_init(&qa);
    coro_queue_init(&qb);
    coro_enter(coro_create(pong, NULL)); /* waits on qb */
    coro_schedule(coro_create(ping, NULL));
    double t0 = now_ns();
    coro_loop_run();
    return (now_ns() - t0) / (double)(2 * handoffs);
}

/* 10,000 coroutines parked 8 calls deep, by a plain yield or in a queue wait. */
#define PARKED 10000
static CoQueue park_q;

static __attribute__((noinline)) void deep(int depth, int waits)
{
    if (depth > 0) {
        deep(depth - 1, waits);
        __asm__ volatile("" ::: "memory");
        return;
    }
    if (waits) {
        coro_queue_wait(&park_q, NULL);
    } else {
        coro_yield();
    }
}

static void parked(void *opaque)
{
    deep(8, (int)(intptr_t)opaque);
}

static double dump_ms(int waits)
{
    coro_queue_init(&park_q);
    Coroutine **cos = malloc(PARKED * sizeof(*cos));
    for (int i = 0; i < PARKED; i++) {
        cos[i] = coro_create(parked, (void *)(intptr_t)waits);
        coro_enter(cos[i]);
    }
    int fd = open("/dev/null", O_WRONLY);
    double v[SAMPLES];
    coro_dump(fd, CORO_DUMP_JSON); /* warm: symbol tables, unwind rules */
    for (int s = 0; s < SAMPLES; s++) {
        double t0 = now_ns();
        coro_dump(fd, CORO_DUMP_JSON);
        v[s] = (now_ns() - t0) / 1e6;
    }
    close(fd);
    /* Let them all finish. */
    if (waits) {
        coro_queue_restart_all(&park_q);
        coro_loop_run();
    } else {
        for (int i = 0; i < PARKED; i++) {
            coro_enter(cos[i]);
        }
    }
    free(cos);
    return median(v);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        iters = atol(argv[1]);
    }
    double rt[SAMPLES], mx[SAMPLES], ho[SAMPLES];
    coro_mutex_init(&m);
    for (int s = 0; s < SAMPLES; s++) {
        rt[s] = round_trip();
        Coroutine *co = coro_create(mutex_loop, NULL);
        coro_enter(co);
        mx[s] = result;
        ho[s] = handoff();
    }
    printf("| operation | median |\n|---|---:|\n");
    printf("| enter+yield round trip (reference) | %.1f ns |\n", median(rt));
    printf("| CoMutex lock+unlock, uncontended | %.1f ns |\n", median(mx));
    printf("| CoQueue wait+wake hand-off between two coroutines (through the loop) | %.1f ns |\n",
           median(ho));
    double plain = dump_ms(0), waiting = dump_ms(1);
    printf("| coro_dump JSON of 10,000 coroutines parked by coro_yield, 8 calls deep | %.1f ms |\n",
           plain);
    printf("| coro_dump JSON of 10,000 coroutines waiting in coro_queue_wait, 8 calls deep | "
           "%.1f ms |\n", waiting);
    return 0;
}
