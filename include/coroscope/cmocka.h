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
#include <coroscope/coro.h>
#include <coroscope/inspect.h>

#ifdef __cplusplus
extern "C" {
#endif

struct coro_cmocka_site {
    const char *file;
    int line;
};

static inline void coro_cmocka_fail_at(void *opaque)
{
    const struct coro_cmocka_site *site = (const struct coro_cmocka_site *)opaque;
    _fail(site->file, site->line);
}

static inline void coro_cmocka_no_leaks_since(uint64_t mark, const char *file, int line)
{
    size_t n = coro_leak_check_since(mark, STDERR_FILENO);
    if (n != 0) {
        print_error("%s:%d: %zu coroutine%s created since the leak mark %s still alive "
                    "(report above)\n", file, line, n, n == 1 ? "" : "s",
                    n == 1 ? "is" : "are");
        /* cmocka fails a test by a longjmp to its runner, on the thread's own stack. From
         * inside a coroutine, the coroutines are left suspended and the failure is raised
         * from that stack, so that the thread is no longer inside them when the next test
         * runs. (Returns only if the suspended coroutine is entered again later: its test
         * has failed already.) */
        struct coro_cmocka_site site = { file, line };
        coro_escape_to_thread(coro_cmocka_fail_at, &site);
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
