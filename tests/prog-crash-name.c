/*
 * For tests/e2e-env.sh: a coroutine whose name holds terminal control sequences, then an
 * abort with CORO_DUMP_ON_CRASH=1 in the environment: the crash report must escape them.
 */
#include <coroscope/coro.h>
#include <stdlib.h>

static void parked(void *opaque)
{
    coro_yield();
}

int main(void)
{
    CoroutineOptions o = { .name = "evil\033[2J\033[31m\"name\\" };
    Coroutine *co = coro_create_opts(parked, NULL, &o);
    coro_enter(co);
    abort();
}
