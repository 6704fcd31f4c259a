/*
 * Helper of tests/e2e-crash-core.sh: a program that dies inside a coroutine, so that the core
 * it leaves can be compared with and without CORO_DUMP_ON_CRASH=1. Modes:
 *   segv       a coroutine "segv" writes near NULL (a fault the kernel raises)
 *   abort      a coroutine "aborter" calls abort() (a signal the program sends itself)
 *   throw      a C++ exception escapes the entry function of coroutine "thrower"
 *   overflow   coroutine "deep" (64 KiB stack) recurses into its guard page
 *   altstack   the same, after the program installed an 8 KiB alternate signal stack
 *   ill        a coroutine "ill" executes ud2
 * A coroutine "parked" is suspended beforehand, so the crash report has one to list.
 */
#include <coroscope/coro.h>

#include <signal.h>
#include <stdexcept>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Winfinite-recursion"

/* Near NULL but not NULL, so that UBSan builds fault as plain ones do. */
static volatile int *volatile null_ptr = (volatile int *)16;

extern "C" {

__attribute__((noinline)) void crash_segv(void)
{
    *null_ptr = 1;
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void crash_abort(void)
{
    abort();
}

__attribute__((noinline)) void crash_throw(void)
{
    throw std::runtime_error("escaped from a coroutine");
}

__attribute__((noinline)) void crash_ill(void)
{
    __asm__ volatile("ud2");
}

__attribute__((noinline)) int crash_recurse(int n)
{
    volatile char buf[400];
    buf[0] = (char)n;
    return crash_recurse(n + 1) + buf[0];
}

}

static const char *mode;

static void body(void *)
{
    if (strcmp(mode, "segv") == 0) {
        crash_segv();
    } else if (strcmp(mode, "abort") == 0) {
        crash_abort();
    } else if (strcmp(mode, "throw") == 0) {
        crash_throw();
    } else if (strcmp(mode, "ill") == 0) {
        crash_ill();
    } else {
        crash_recurse(0);
    }
}

static void parked(void *)
{
    coro_yield();
}

int main(int argc, char **argv)
{
    mode = argc > 1 ? argv[1] : "segv";
    static char altstack[8192];
    if (strcmp(mode, "altstack") == 0) {
        stack_t ss = {};
        ss.ss_sp = altstack;
        ss.ss_size = sizeof(altstack);
        if (sigaltstack(&ss, NULL) != 0) {
            perror("sigaltstack");
            return 2;
        }
    }
    CoroutineOptions p = {};
    p.name = "parked";
    coro_enter(coro_create_opts(parked, NULL, &p));
    const char *name = strcmp(mode, "segv") == 0    ? "segv"
                       : strcmp(mode, "abort") == 0 ? "aborter"
                       : strcmp(mode, "throw") == 0 ? "thrower"
                       : strcmp(mode, "ill") == 0   ? "ill"
                                                    : "deep";
    CoroutineOptions o = {};
    o.name = name;
    o.stack_size = 64 * 1024;
    coro_enter(coro_create_opts(body, NULL, &o));
    fprintf(stderr, "prog-crash: %s did not crash\n", mode);
    return 1;
}
