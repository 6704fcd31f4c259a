/*
 * Helper of tests/test-inspect.c for CORO_LEAK_CHECK: run with "leak" it leaves two
 * coroutines suspended at exit (one named "leaky-reader"), with "clean" none; it prints
 * "main done" on stdout either way, then returns 0 from main. Built against the shared
 * library (prog-inspect-leak) and the static one (prog-inspect-leak-static).
 */
#include <coroscope/coro.h>
#include <stdio.h>
#include <string.h>

__attribute__((noinline)) static void wait_for_input(int fd)
{
    coro_yield();
    __asm__ volatile("" ::: "memory");
}

static void reader(void *opaque)
{
    wait_for_input(0);
}

int main(int argc, char **argv)
{
    int leak = argc > 1 && strcmp(argv[1], "leak") == 0;
    CoroutineOptions o = { .name = "leaky-reader" };
    Coroutine *a = coro_create_opts(reader, NULL, &o);
    Coroutine *b = coro_create(reader, NULL);
    coro_enter(a);
    coro_enter(b);
    if (!leak) {
        coro_enter(a);
        coro_enter(b);
    }
    printf("main done\n");
    return 0;
}
