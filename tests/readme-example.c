#include <coroscope/coro.h>
#include <coroscope/inspect.h>
#include <unistd.h>

static void wait_for_data(void) { coro_yield(); }
static void connection(void *opaque) { wait_for_data(); }

int main(void)
{
    CoroutineOptions o = { .name = "conn-7" };
    Coroutine *co = coro_create_opts(connection, NULL, &o);
    coro_enter(co);
    coro_dump(STDOUT_FILENO, CORO_DUMP_TEXT);
    coro_enter(co);
    return coro_leak_check(STDERR_FILENO) ? 1 : 0;
}

/* README.md's example, line for line (the tests match its line numbers), as a user builds it
 * against the installed package: tests/e2e-install.sh and tests/e2e-gdb-installed.sh. */
