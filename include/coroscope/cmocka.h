/*
 * coroscope helpers for cmocka tests. Header-only, so that libcoroscope does not depend on
 * cmocka: include it after <cmocka.h> (it includes cmocka's prerequisites and cmocka.h
 * itself when they are not there yet).
 *
 *     static void test_server_shutdown(void **state)
 *     {
 *         uint64_t mark = coro_leak_mark();
 *         run_server_and_stop_it();
 *         assert_no_coroutine_leaks_since(mark);
 *     }
 *
 * Only coroutines created after the mark count, whatever thread created them, so tests that
 * run side by side (or leave long-lived coroutines of a fixture around) check only their own.
 * On failure the report (id, name, state, creation site, backtrace of each coroutine) goes to
 * stderr, then the current test fails at the line of the assertion.
 */
#ifndef COROSCOPE_CMOCKA_H
#define COROSCOPE_CMOCKA_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>
#include <coroscope/inspect.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline void coro_cmocka_no_leaks_since(uint64_t mark, const char *file, int line)
{
    size_t n = coro_leak_check_since(mark, STDERR_FILENO);
    if (n != 0) {
        print_error("%s:%d: %zu coroutine%s created since the leak mark %s still alive "
                    "(report above)\n", file, line, n, n == 1 ? "" : "s",
                    n == 1 ? "is" : "are");
        _fail(file, line);
    }
}

/* Fails the current cmocka test when coroutines created after mark (coro_leak_mark()) are
 * still alive, printing each of them. */
#define assert_no_coroutine_leaks_since(mark) \
    coro_cmocka_no_leaks_since((mark), __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif

#endif /* COROSCOPE_CMOCKA_H */
