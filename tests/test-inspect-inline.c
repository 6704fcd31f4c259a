/*
 * Nested inlined calls: a coroutine suspended three inlined calls deep inside an -O2
 * function must show every level as its own frame (as `eu-stack -i` does), each with the line
 * of its call, and then the real function with the line of its outermost inlined call.
 * A function GCC's partial inlining inlined into itself is one frame, in every format.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdio.h>
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

/*
 * GCC's partial inlining (ipa-split) splits this after its cheap head into
 * partial_entry.part.0 and, the part having one caller, inlines it back: the DWARF then has
 * partial_entry inlined into partial_entry, called from its own declaration line.
 */
static int line_partial;
static volatile int partial_forever;

static void partial_entry(void *opaque)
{
    int *calls = opaque;
    (*calls)++;
    if (partial_forever) {
        for (;;) {
            coro_yield();
        }
    }
    HERE(line_partial); coro_yield();
    sink++;
}

static char *dump_as(int format)
{
    int fd = memfd_create("dump", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(coro_dump(fd, format), 0);
    char *buf = read_all(fd);
    close(fd);
    return buf;
}

static char *dump_json(void)
{
    return dump_as(CORO_DUMP_JSON);
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

static void test_inline_self_inline_is_one_frame(void **state)
{
    int calls = 0;
    Coroutine *co = coro_create(partial_entry, &calls);
    coro_enter(co);
    char *text = dump_json();
    char err[256];
    Json *doc = jparse_document(text, err, sizeof(err));
    if (!doc) {
        fail_msg("dump is not JSON: %s", err);
    }
    const Json *frames = jget(jget(doc, "coroutines")->items[0], "frames");
    for (size_t i = 0; i < frames->n; i++) {
        print_message("  frame %zu: %s line %lld%s\n", i,
                      jget(frames->items[i], "function")->s, jget(frames->items[i], "line")->i,
                      jget(frames->items[i], "inlined")->b ? " [inlined]" : "");
    }
    /* One frame, not "partial_entry [inlined]" over "partial_entry" (line of its
     * declaration), with the line inside and the function's offset. */
    assert_int_equal(frames->n, 2);
    assert_string_equal(jget(frames->items[0], "function")->s, "coro_yield");
    expect(frames->items[1], "partial_entry", line_partial, false);
    assert_int_equal(jget(frames->items[1], "offset")->type, J_NUM);
    jfree(doc);
    free(text);

    /* Text and folded show it once too. */
    text = dump_as(CORO_DUMP_TEXT);
    char want[64];
    snprintf(want, sizeof(want), "partial_entry (%s:%d)\n", __FILE__, line_partial);
    const char *at = strstr(text, want);
    assert_non_null(at);
    assert_null(strstr(at + 1, " partial_entry ("));
    assert_null(strstr(text, "[inlined]"));
    free(text);
    text = dump_as(CORO_DUMP_FOLDED);
    assert_null(strstr(text, "partial_entry;partial_entry"));
    assert_non_null(strstr(text, ";partial_entry;coro_yield 1"));
    free(text);
    coro_enter(co);
    assert_int_equal(calls, 1);
    assert_int_equal(coro_live_count(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline_nested_levels_each_shown),
        cmocka_unit_test(test_inline_self_inline_is_one_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
