/*
 * For tests/e2e-stall.sh: coroutine "busy" burns the CPU for 400 ms in burn() without
 * yielding, yields, then for 1 s — two stalls (the second longer than a report takes to make
 * under ASan, so that the watchdog is back before it ends) — while coroutine "polite" on another
 * thread yields every millisecond for the whole run and never stalls. The watchdog comes from
 * the environment (CORO_STALL_MS, CORO_DUMP_PATH, CORO_DUMP_FORMAT), or with "api" from
 * coro_stall_watchdog(100, argv[2], CORO_DUMP_JSON). Prints "done" and exits 0.
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/inspect.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Atomic int finished;
static volatile unsigned long sink;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static void burn(double seconds)
{
    double end = now_s() + seconds;
    while (now_s() < end) {
        sink++;
    }
}

static void busy(void *opaque)
{
    burn(0.4);
    coro_yield();
    burn(1.0);
}

static void polite(void *opaque)
{
    while (!atomic_load(&finished)) {
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
        coro_yield();
    }
}

static void *polite_thread(void *arg)
{
    CoroutineOptions o = { .name = "polite" };
    Coroutine *co = coro_create_opts(polite, NULL, &o);
    while (!atomic_load(&finished)) {
        coro_enter(co);
    }
    coro_enter(co);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "api") == 0) {
        int err = coro_stall_watchdog(100, argv[2], CORO_DUMP_JSON);
        if (err < 0) {
            fprintf(stderr, "coro_stall_watchdog: %s\n", strerror(-err));
            return 1;
        }
    }
    pthread_t t;
    pthread_create(&t, NULL, polite_thread, NULL);
    CoroutineOptions o = { .name = "busy" };
    Coroutine *co = coro_create_opts(busy, NULL, &o);
    coro_enter(co);
    coro_enter(co);
    atomic_store(&finished, 1);
    pthread_join(t, NULL);
    printf("done\n");
    return 0;
}
