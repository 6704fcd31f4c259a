/*
 * A QEMU-style program includes QEMU's coroutine headers and then coroscope's
 * (include/coroscope/coro.h): coroutine_fn, Coroutine and CoroutineEntry are defined by both.
 * This translation unit defines them first as QEMU does (same include guards, same
 * definitions), then includes ours: it must compile without a redefinition, keep QEMU's
 * coroutine_fn, and still run a coroutine through coroscope's API.
 */
/* --- as qemu/typedefs.h and qemu/coroutine.h define them --- */
#define QEMU_TYPEDEFS_H
typedef struct Coroutine Coroutine;
#define QEMU_COROUTINE_H
#define QEMU_ANNOTATE(x) __attribute__((unused))
#define coroutine_fn QEMU_ANNOTATE("coroutine_fn")
typedef void coroutine_fn CoroutineEntry(void *opaque);

/* --- then ours --- */
#include <coroscope/coro.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define STR_(x) #x
#define STR(x) STR_(x)
_Static_assert(sizeof(STR(coroutine_fn)) == sizeof("__attribute__((unused))"),
               "coroscope/coro.h redefined QEMU's coroutine_fn");

static int ran;

static void coroutine_fn entry(void *opaque)
{
    ran = *(int *)opaque;
    coro_yield();
    ran++;
}

static void test_qemu_names_then_ours(void **state)
{
    (void)state;
    int v = 41;
    CoroutineEntry *e = entry;
    Coroutine *co = coro_create(e, &v);
    assert_non_null(co);
    coro_enter(co);
    assert_int_equal(ran, 41);
    coro_enter(co); /* runs to the end */
    assert_int_equal(ran, 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qemu_names_then_ours),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
