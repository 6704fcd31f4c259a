/*
 * The runtime's one way to stop on a broken invariant: one line saying what, which
 * coroutine(s) and where, then a backtrace, then abort(). Every layer above uses it too
 * (it depends on nothing but libc), so it sits in a file of its own below coro.c and
 * registry.c instead of making them call each other.
 */
#define _GNU_SOURCE
#include <execinfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "coro-int.h"

void coro__describe(const Coroutine *co, char *buf, size_t size)
{
    if (!co) {
        snprintf(buf, size, "the thread's own stack (thread %d)", (int)gettid());
    } else if (co->name[0]) {
        snprintf(buf, size, "coroutine %llu \"%.*s\"", (unsigned long long)co->id,
                 CORO_NAME_SIZE - 1, co->name);
    } else {
        snprintf(buf, size, "coroutine %llu (unnamed)", (unsigned long long)co->id);
    }
}

void coro__die(const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "coroscope: fatal: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nothing better to do: we are about to abort. */
    }
    void *pcs[64];
    int depth = backtrace(pcs, 64);
    backtrace_symbols_fd(pcs, depth, STDERR_FILENO);
    abort();
}
