/*
 * Helper of tests/test-inspect.c for the guard-page report. Modes:
 *   overflow         a coroutine named "deep" with a 64 KiB stack recurses into its guard page
 *   overflow-thread  the same on a second thread (its own alternate signal stack)
 *   null             a coroutine writes near NULL: not an overflow, default action
 *   chain            the program installs its own SIGSEGV handler first (it exits 42);
 *                    a fault near NULL in a coroutine must reach it
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Winfinite-recursion"

/* Near NULL but not NULL, so that UBSan builds fault as plain ones do. */
static volatile int *volatile null_ptr = (volatile int *)16;

__attribute__((noinline)) static int recurse(int n)
{
    volatile char buf[400];
    buf[0] = (char)n;
    return recurse(n + 1) + buf[0];
}

static void deep(void *opaque)
{
    recurse(0);
}

static void crash(void *opaque)
{
    *null_ptr = 1;
}

static void own_noop(void *opaque)
{
}

static void own_handler(int sig)
{
    static const char msg[] = "own handler called\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        _exit(43);
    }
    _exit(42);
}

static void *thread_main(void *arg)
{
    CoroutineOptions o = { .name = "deep", .stack_size = 64 * 1024 };
    coro_enter(coro_create_opts(deep, NULL, &o));
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "overflow";
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    if (strcmp(mode, "chain") == 0) {
        signal(SIGSEGV, own_handler);
    }
    if (strcmp(mode, "overflow") == 0) {
        CoroutineOptions o = { .name = "deep", .stack_size = 64 * 1024 };
        coro_enter(coro_create_opts(deep, NULL, &o));
    } else if (strcmp(mode, "overflow-thread") == 0) {
        /* The main thread uses coroutines first; the overflow happens on a thread of its own. */
        coro_enter(coro_create(own_noop, NULL));
        pthread_t t;
        pthread_create(&t, NULL, thread_main, NULL);
        pthread_join(t, NULL);
    } else {
        coro_enter(coro_create(crash, NULL));
    }
    return 0;
}
