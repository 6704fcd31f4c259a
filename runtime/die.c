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

/* The misuse messages of coro_enter and coro_yield (coro.c's slow paths; switch-x86_64.S calls
 * coro__yield_misuse). */
__attribute__((noinline, noreturn)) void coro__enter_misuse(Coroutine *co, Coroutine *self,
                                                            uint32_t state)
{
    char who[96], whom[96];
    coro__describe(self, who, sizeof(who));
    if (!co) {
        coro__die("coro_enter(NULL) from %s: no coroutine to enter (coro_create() returns NULL "
                  "when it fails)", who);
    }
    if (state == CORO_STATE_RUNNING || state == CORO_STATE_NESTED) {
        coro__describe(co, whom, sizeof(whom));
        char inner[128] = "";
        if (state == CORO_STATE_NESTED && co != self) {
            /* Name the coroutine it is waiting on, when it is this thread's chain. */
            for (Coroutine *c = self; c; c = c->caller) {
                if (c->caller == co) {
                    char d[96];
                    coro__describe(c, d, sizeof(d));
                    snprintf(inner, sizeof(inner), ", which has entered %s", d);
                    break;
                }
            }
        }
        coro__die("Co-routine re-entered recursively: %s entered %s%s while it is %s",
                  who, whom, inner, state == CORO_STATE_RUNNING ? "running" : "still running");
    }
    if (state == CORO_STATE_FREE || state == CORO_STATE_TERMINATED) {
        coro__die("coro_enter(%p) from %s: that coroutine has terminated (use after "
                  "termination)", (void *)co, who);
    }
    coro__die("coro_enter(%p) from %s: not a coroutine (state %u)", (void *)co, who, state);
}

__attribute__((noinline, noreturn)) void coro__yield_misuse(void)
{
    coro__die("coro_yield() called outside a coroutine, on thread %d", (int)gettid());
}
