/*
 * Nested inlined calls: a coroutine suspended three inlined calls deep inside an -O2
 * function must show every level as its own frame (as `eu-stack -i` does), each with the line
 * of its call, and then the real function with the line of its outermost inlined call.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <coroscope/coro.h>
#include <coroscope/inspect.h>

#include "test-inspect-common.h"
#include "test-inspect-json.h"

static int line_l3, line_l2, line_l1, line_entry;
static volatile int sink;

#define HERE(var) (var = __LINE__)

static inline __attribute__((always_inline)) void level3(void)
{
    HERE(line_l3); coro_yield();
    sink++;
}

static inline __attribute__((always_inline)) void level2(void)
{
    HERE(line_l2); level3();
    sink++;
}

static inline __attribute__((always_inline)) void level1(void)
{
    HERE(line_l1); level2();
    sink++;
}

static __attribute__((noinline, optimize("O2"))) void inline_entry(void *opaque)
{
    HERE(line_entry); level1();
    sink++;
}

static char *dump_json(void)
{
    int fd = memfd_create("dump", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(coro_dump(fd, CORO_DUMP_JSON), 0);
    char *buf = read_all(fd);
    close(fd);
    return buf;
}

static void expect(const Json *f, const char *function, int line, bool inlined)
{
    assert_non_null(f);
    assert_int_equal(jget(f, "function")->type, J_STR);
    assert_string_equal(jget(f, "function")->s, function);
    assert_int_equal(jget(f, "line")->i, line);
    assert_int_equal(jget(f, "inlined")->b, inlined);
}

static void test_inline_nested_levels_each_shown(void **state)
{
    Coroutine *co = coro_create(inline_entry, NULL);
    coro_enter(co);
    char *text = dump_json();
    char err[256];
    Json *doc = jparse_document(text, err, sizeof(err));
    if (!doc) {
        fail_msg("dump is not JSON: %s", err);
    }
    const Json *list = jget(doc, "coroutines");
    assert_int_equal(list->n, 1);
    const Json *frames = jget(list->items[0], "frames");
    assert_int_equal(frames->n, 5);
    assert_string_equal(jget(frames->items[0], "function")->s, "coro_yield");
    expect(frames->items[1], "level3", line_l3, true);
    expect(frames->items[2], "level2", line_l2, true);
    expect(frames->items[3], "level1", line_l1, true);
    expect(frames->items[4], "inline_entry", line_entry, false);
    /* The inlined levels and their function share one pc. */
    assert_string_equal(jget(frames->items[1], "pc")->s, jget(frames->items[4], "pc")->s);
    jfree(doc);
    free(text);
    coro_enter(co);
    assert_int_equal(coro_live_count(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline_nested_levels_each_shown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
