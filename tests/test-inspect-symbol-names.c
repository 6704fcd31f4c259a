/*
 * How symbol names are shown (inspect/symbol-name-int.h): GCC's clone suffixes are left out,
 * symbol versions are kept whole. Every backtrace (CLI, coro_dump, the overflow report)
 * names functions through this rule, so a cut version ("clock_nanosleep@GLIBC_2") would show
 * in all of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "symbol-name-int.h"

/* The name as shown. */
static const char *shown(const char *name)
{
    static char buf[256];
    size_t len = strlen(name), cut0, cut1;
    if (coro__symbol_clone_suffix(name, len, &cut0, &cut1)) {
        snprintf(buf, sizeof(buf), "%.*s%s", (int)cut0, name, name + cut1);
    } else {
        snprintf(buf, sizeof(buf), "%s", name);
    }
    return buf;
}

static void test_symbol_names_keep_versions_whole(void **state)
{
    (void)state;
    assert_string_equal(shown("clock_nanosleep@GLIBC_2.2.5"), "clock_nanosleep@GLIBC_2.2.5");
    assert_string_equal(shown("memcpy@@GLIBC_2.14"), "memcpy@@GLIBC_2.14");
    assert_string_equal(shown("f@V.isra.0"), "f@V.isra.0");
}

static void test_symbol_names_drop_clone_suffixes(void **state)
{
    (void)state;
    assert_string_equal(shown("recurse.isra.0"), "recurse");
    assert_string_equal(shown("health_check.part.0"), "health_check");
    assert_string_equal(shown("f.constprop.0.isra.0"), "f");
    assert_string_equal(shown("f.cold"), "f");
    assert_string_equal(shown("f.part.0@V_1.2"), "f@V_1.2");
}

static void test_symbol_names_other_dots_stay(void **state)
{
    (void)state;
    assert_string_equal(shown("_GLOBAL__sub_I_main.cpp"), "_GLOBAL__sub_I_main.cpp");
    assert_string_equal(shown(".annobin_init.c"), ".annobin_init.c");
    assert_string_equal(shown("f."), "f.");
    assert_string_equal(shown("plain"), "plain");
    assert_string_equal(shown(""), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_symbol_names_keep_versions_whole),
        cmocka_unit_test(test_symbol_names_drop_clone_suffixes),
        cmocka_unit_test(test_symbol_names_other_dots_stay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
