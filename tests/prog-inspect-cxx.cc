// Helper of tests/test-inspect.c: a C++ program linked against libcoroscope throws and
// catches, on its own stack and inside a coroutine. Linking coroscope must not change which
// unwinder serves the exceptions (the test checks _Unwind_RaiseException binds to libgcc_s
// with LD_DEBUG=bindings). Prints "caught 2" and exits 0 when both were caught.
#include <coroscope/coro.h>
#include <coroscope/inspect.h>
#include <cstdio>
#include <stdexcept>

static int caught;

__attribute__((noinline)) static void thrower(int n)
{
    if (n > 0) {
        throw std::runtime_error("boom");
    }
}

static void body(void *)
{
    try {
        thrower(1);
    } catch (const std::exception &) {
        caught++;
    }
    coro_yield();
}

int main()
{
    try {
        thrower(1);
    } catch (const std::runtime_error &) {
        caught++;
    }
    Coroutine *co = coro_create(body, nullptr);
    coro_enter(co);
    coro_enter(co);
    std::printf("caught %d\n", caught);
    return caught == 2 ? 0 : 1;
}
