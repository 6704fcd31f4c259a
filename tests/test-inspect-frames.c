/*
 * Frame rules that need no target:
 *   - how symbol names are shown (inspect/symbol-name-int.h): GCC's clone suffixes are left
 *     out, symbol versions are kept whole. Every backtrace (CLI, coro_dump, the overflow
 *     report) names functions through this rule, so a cut version ("clock_nanosleep@GLIBC_2")
 *     would show in all of them;
 *   - the list of coroscope's own functions (inspect/own-functions-int.h) that ps's WHERE
 *     skips holds every function include/coroscope/ declares, so that a new public function
 *     is skipped too, and no other coro_ name (a program's own coro_read is its code).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "own-functions-int.h"
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

#define NOWN (sizeof(coro__own_functions) / sizeof(coro__own_functions[0]))

/* The text of a header with its comments blanked out. Release with free(). */
static char *header_code(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *text = calloc(1, 1 << 20);
    assert_non_null(text);
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    for (size_t i = 0; i + 1 < n; i++) {
        if (text[i] == '/' && text[i + 1] == '*') {
            char *end = strstr(text + i + 2, "*/");
            size_t stop = end ? (size_t)(end - text) + 2 : n;
            memset(text + i, ' ', stop - i);
        } else if (text[i] == '/' && text[i + 1] == '/') {
            while (i < n && text[i] != '\n') {
                text[i++] = ' ';
            }
        }
    }
    return text;
}

static void test_own_functions_are_what_the_headers_declare(void **state)
{
    (void)state;
    for (size_t i = 1; i < NOWN; i++) {
        assert_true(strcmp(coro__own_functions[i - 1], coro__own_functions[i]) < 0);
    }
    /* coro__own_function() rejects names without the prefix before searching. */
    for (size_t i = 0; i < NOWN; i++) {
        assert_int_equal(strncmp(coro__own_functions[i], "coro_", 5), 0);
    }
    /* include/coroscope/ beside this file's tests/ directory. */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    snprintf(slash ? slash + 1 : dir, sizeof(dir) - (size_t)(slash ? slash + 1 - dir : 0),
             "../include/coroscope");
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool listed_seen[NOWN] = { false };
    size_t found = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 3 || strcmp(de->d_name + len - 2, ".h") != 0) {
            continue;
        }
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        char *code = header_code(path);
        /* Every coro_xxx( of the code: a function or a function-like macro. */
        for (char *p = code; (p = strstr(p, "coro_"));) {
            bool start = p == code || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
                                        (p[-1] >= 'A' && p[-1] <= 'Z') ||
                                        (p[-1] >= '0' && p[-1] <= '9'));
            size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
            const char *after = p + n + strspn(p + n, " \t");
            if (start && p[5] != '_' && *after == '(') {
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)n, p);
                if (!coro__own_function(name)) {
                    fail_msg("%s declares %s, which inspect/own-functions-int.h does not list",
                             path, name);
                }
                for (size_t i = 0; i < NOWN; i++) {
                    listed_seen[i] |= strcmp(coro__own_functions[i], name) == 0;
                }
                found++;
            }
            p += n;
        }
        free(code);
    }
    closedir(d);
    /* The core of the API is there (the list may name more: headers of another tree). */
    size_t seen = 0;
    for (size_t i = 0; i < NOWN; i++) {
        seen += listed_seen[i];
    }
    assert_true(found > 0 && seen > 0);
    /* And nothing else: the user's own functions of the same prefix are theirs. */
    assert_false(coro__own_function("coro_read"));
    assert_false(coro__own_function("coro_"));
    assert_false(coro__own_function(NULL));
    assert_true(coro__own_function("coro_yield"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_functions_are_what_the_headers_declare),
        cmocka_unit_test(test_symbol_names_keep_versions_whole),
        cmocka_unit_test(test_symbol_names_drop_clone_suffixes),
        cmocka_unit_test(test_symbol_names_other_dots_stay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
