/*
 * Target of bench/watch-bench.sh: N parked coroutines (default 100,000) and one coroutine that
 * a thread enters and that yields back, flat out. Every 0.5 s it prints the round trips of
 * that interval per second, so that the script can compare the rate alone, with `coroscope
 * top` reading the process, and with the in-process stall watchdog on (CORO_STALL_MS).
 *   watch-target [N] [SECONDS]
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void parked(void *opaque)
{
    for (;;) {
        coro_yield();
    }
}

static void bouncer(void *opaque)
{
    for (;;) {
        coro_yield();
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    double seconds = argc > 2 ? strtod(argv[2], NULL) : 10;
    for (long i = 0; i < n; i++) {
        CoroutineOptions o = { .name = "parked", .stack_size = 16 * 1024 };
        Coroutine *co = coro_create_opts(parked, NULL, &o);
        if (!co) {
            perror("coro_create_opts");
            return 1;
        }
        coro_enter(co);
    }
    CoroutineOptions b = { .name = "bouncer" };
    Coroutine *co = coro_create_opts(bouncer, NULL, &b);
    printf("ready\n");
    fflush(stdout);
    double start = now_s(), mark = start;
    unsigned long count = 0;
    for (;;) {
        for (int i = 0; i < 4096; i++) {
            coro_enter(co);
        }
        count += 4096;
        double t = now_s();
        if (t - mark >= 0.5) {
            printf("rate %.0f\n", count / (t - mark));
            fflush(stdout);
            count = 0;
            mark = t;
            if (t - start >= seconds) {
                return 0;
            }
        }
    }
}
