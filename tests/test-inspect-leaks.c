/*
 * Leak checks and what happens to whole processes: coro_leak_check[_since] and the cmocka
 * assertion of <coroscope/cmocka.h>, CORO_LEAK_CHECK / CORO_LEAK_EXITCODE at exit (programs
 * linked with the shared and the static library), the guard-page overflow report (main
 * thread, another thread, static library; other faults untouched), and a C++ program's
 * exceptions with coroscope linked in. The programs run are tests/prog-inspect-*.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <coroscope/cmocka.h>
#include <coroscope/coro.h>
#include <coroscope/inspect.h>

#include "test-inspect-common.h"

__attribute__((noinline)) static void wait_here(void)
{
    coro_yield();
    __asm__ volatile("" ::: "memory");
}

static void parked_entry(void *opaque)
{
    wait_here();
}

/* A suspended coroutine; *line gets the line of the create call. */
static __attribute__((noinline)) Coroutine *park(const char *name, int *line)
{
    CoroutineOptions o = { .name = name };
    *line = __LINE__; Coroutine *co = coro_create_opts(parked_entry, NULL, &o);
    assert_non_null(co);
    coro_enter(co);
    return co;
}

/* ---- leaks ---- */

static void test_leak_check_since_counts_only_newer(void **state)
{
    int line;
    Coroutine *before = park("before-mark", &line);
    uint64_t mark = coro_leak_mark();
    Coroutine *a = park("after-1", &line);
    Coroutine *b = coro_create(parked_entry, NULL);
    int fd = memfd_create("leaks", MFD_CLOEXEC);
    assert_int_equal(coro_leak_check_since(mark, fd), 2);
    char *report = read_all(fd);
    close(fd);
    char want[64];
    assert_non_null(strstr(report, "2 coroutines still alive"));
    snprintf(want, sizeof(want), "coroutine %llu \"after-1\" [suspended",
             (unsigned long long)coro_id(a));
    assert_non_null(strstr(report, want));
    snprintf(want, sizeof(want), "coroutine %llu [created", (unsigned long long)coro_id(b));
    assert_non_null(strstr(report, want));
    assert_null(strstr(report, "before-mark"));
    assert_non_null(strstr(report, "created by park at "));
    free(report);
    assert_true(coro_leak_check(-1) >= 3);
    coro_enter(a);
    assert_int_equal(coro_leak_check_since(mark, -1), 1);
    coro_enter(b);
    coro_enter(b);
    assert_int_equal(coro_leak_check_since(mark, -1), 0);
    coro_enter(before);
    assert_no_coroutine_leaks_since(mark);
}

static size_t counted_inside;

static void count_from_inside(void *opaque)
{
    counted_inside = coro_leak_check_since(*(uint64_t *)opaque, -1);
}

static void test_leak_check_leaves_out_the_caller(void **state)
{
    uint64_t mark = coro_leak_mark();
    Coroutine *co = coro_create(count_from_inside, &mark);
    counted_inside = 99;
    coro_enter(co);
    assert_int_equal(counted_inside, 0);
    assert_no_coroutine_leaks_since(mark);
}

/* The cmocka assertion, run in a child so that its failure is what we observe. */
static uint64_t child_mark;
static Coroutine *child_leaked;

static void leaking_test(void **state)
{
    child_mark = coro_leak_mark();
    int line;
    child_leaked = park("left-behind", &line);
    assert_no_coroutine_leaks_since(child_mark);
}

static void clean_test(void **state)
{
    uint64_t mark = coro_leak_mark();
    int line;
    Coroutine *co = park("finished", &line);
    coro_enter(co);
    assert_no_coroutine_leaks_since(mark);
}

/* Runs the n tests as a cmocka group in a child; returns its exit status (failed tests). */
static int run_child_tests(const struct CMUnitTest *t, size_t n, char **output)
{
    int out = memfd_create("child", MFD_CLOEXEC);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out, STDOUT_FILENO);
        dup2(out, STDERR_FILENO);
        _exit(_cmocka_run_group_tests("child", t, n, NULL, NULL));
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *output = read_all(out);
    if (getenv("TEST_INSPECT_VERBOSE")) {
        fprintf(stderr, "child output:\n%s\n", *output);
    }
    close(out);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int run_child_group(void (*fn)(void **), char **output)
{
    const struct CMUnitTest t[] = { cmocka_unit_test(fn) };
    return run_child_tests(t, 1, output);
}

static void test_cmocka_assertion_fails_on_leak(void **state)
{
    char *out;
    assert_int_equal(run_child_group(leaking_test, &out), 1);
    assert_non_null(strstr(out, "\"left-behind\" [suspended"));
    assert_non_null(strstr(out, "1 coroutine created since the leak mark is still alive"));
    assert_non_null(strstr(out, "test-inspect-leaks.c:"));
    free(out);
    assert_int_equal(run_child_group(clean_test, &out), 0);
    assert_null(strstr(out, "still alive"));
    free(out);
}

/* The assertion failing inside a coroutine that another coroutine entered: the test fails at
 * the assertion, and the thread is back on its own stack, outside every coroutine, for the
 * next test. The coroutines are left suspended where they were, and can still be finished. */
static Coroutine *outer_co, *asserting_co, *inner_leak;
static uint64_t inner_mark;
static int resumed_after_assertion;

static void asserting_entry(void *opaque)
{
    int line;
    inner_leak = park("inner-leak", &line);
    assert_no_coroutine_leaks_since(inner_mark); /* fails: "inner-leak" is alive */
    resumed_after_assertion = 1;
}

static void outer_entry(void *opaque)
{
    CoroutineOptions o = { .name = "asserting" };
    asserting_co = coro_create_opts(asserting_entry, NULL, &o);
    coro_enter(asserting_co);
}

static void leak_assertion_inside_coroutine(void **state)
{
    inner_mark = coro_leak_mark();
    CoroutineOptions o = { .name = "outer" };
    outer_co = coro_create_opts(outer_entry, NULL, &o);
    coro_enter(outer_co);
    fail_msg("the failed assertion returned into the test");
}

static void yield_once_entry(void *opaque)
{
    coro_yield();
    *(int *)opaque = 1;
}

static void next_test_runs_normally(void **state)
{
    assert_null(coro_self());
    assert_false(coro_in_coroutine());
    assert_false(coro_entered(outer_co));
    assert_false(coro_entered(asserting_co));
    /* The coroutines left behind are suspended where they were (the report shows them). */
    int fd = memfd_create("leaks", MFD_CLOEXEC);
    assert_int_equal(coro_leak_check_since(inner_mark, fd), 3);
    char *report = read_all(fd);
    close(fd);
    assert_non_null(strstr(report, "\"outer\" [suspended"));
    assert_non_null(strstr(report, "\"asserting\" [suspended"));
    assert_non_null(strstr(report, "\"inner-leak\" [suspended"));
    assert_null(strstr(report, "running"));
    free(report);
    /* Coroutines work as on any thread. */
    int done = 0;
    Coroutine *co = coro_create(yield_once_entry, &done);
    coro_enter(co);
    assert_true(coro_entered(co) == false && done == 0);
    coro_enter(co);
    assert_int_equal(done, 1);
    /* And the ones left behind can be finished: each resumes where it was. */
    coro_enter(asserting_co);
    assert_int_equal(resumed_after_assertion, 1);
    coro_enter(outer_co);
    coro_enter(inner_leak);
    assert_null(coro_self());
    assert_no_coroutine_leaks_since(inner_mark);
    print_message("next test ran normally\n");
}

static void test_cmocka_assertion_fails_cleanly_inside_coroutine(void **state)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(leak_assertion_inside_coroutine),
        cmocka_unit_test(next_test_runs_normally),
    };
    char *out;
    int failed = run_child_tests(t, 2, &out);
    if (failed != 1 || !strstr(out, "next test ran normally")) {
        print_error("child output:\n%s\n", out);
    }
    assert_int_equal(failed, 1);
    assert_non_null(strstr(out, "\"inner-leak\" [suspended"));
    assert_non_null(strstr(out, "1 coroutine created since the leak mark is still alive"));
    assert_non_null(strstr(out, "[  FAILED  ] leak_assertion_inside_coroutine"));
    assert_null(strstr(out, "the failed assertion returned"));
    assert_non_null(strstr(out, "next test ran normally"));
    assert_non_null(strstr(out, "[       OK ] next_test_runs_normally"));
    free(out);
}

/* ---- child programs: leak exit code, overflow, C++ ---- */

static const char *helper(const char *name)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", helper_dir, name);
    return path;
}

typedef struct Child {
    int status;
    char *out, *err;
} Child;

static Child run_child(const char *prog, const char *arg, char *const env[])
{
    int out = memfd_create("out", MFD_CLOEXEC), err = memfd_create("err", MFD_CLOEXEC);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        char *const argv[] = { (char *)prog, (char *)arg, NULL };
        execve(prog, argv, env);
        _exit(127);
    }
    Child c;
    assert_int_equal(waitpid(pid, &c.status, 0), pid);
    c.out = read_all(out);
    c.err = read_all(err);
    close(out);
    close(err);
    return c;
}

static void child_free(Child *c)
{
    free(c->out);
    free(c->err);
}

/* The sanitizer runtime's own variables, so that sanitizer builds run their children alike. */
static char *env_or(const char *name, char *buf, size_t len)
{
    const char *v = getenv(name);
    snprintf(buf, len, "%s=%s", name, v ? v : "");
    return buf;
}

static void check_leak_exit(const char *prog)
{
    char asan[512], ubsan[512], tsan[512];
    env_or("ASAN_OPTIONS", asan, sizeof(asan));
    env_or("UBSAN_OPTIONS", ubsan, sizeof(ubsan));
    env_or("TSAN_OPTIONS", tsan, sizeof(tsan));

    char *const on[] = { "CORO_LEAK_CHECK=1", asan, ubsan, tsan, NULL };
    Child c = run_child(prog, "leak", on);
    assert_true(WIFEXITED(c.status));
    assert_int_equal(WEXITSTATUS(c.status), 23);
    assert_string_equal(c.out, "main done\n");     /* the program's stdio was flushed */
    assert_non_null(strstr(c.err, "coroscope: CORO_LEAK_CHECK: 2 coroutines still alive:\n"));
    assert_non_null(strstr(c.err, "\"leaky-reader\" [suspended, thread "));
    assert_non_null(strstr(c.err, " coro_yield ("));
    assert_non_null(strstr(c.err, " wait_for_input"));
    assert_non_null(strstr(c.err, "created by main at "));
    assert_non_null(strstr(c.err, "prog-inspect-leak.c:"));
    child_free(&c);

    char *const code[] = { "CORO_LEAK_CHECK=1", "CORO_LEAK_EXITCODE=42", asan, ubsan, tsan,
                           NULL };
    c = run_child(prog, "leak", code);
    assert_true(WIFEXITED(c.status));
    assert_int_equal(WEXITSTATUS(c.status), 42);
    child_free(&c);

    c = run_child(prog, "clean", on);
    assert_true(WIFEXITED(c.status));
    assert_int_equal(WEXITSTATUS(c.status), 0);
    assert_string_equal(c.err, "");
    child_free(&c);

    char *const off[] = { asan, ubsan, tsan, NULL };
    c = run_child(prog, "leak", off);
    assert_true(WIFEXITED(c.status));
    assert_int_equal(WEXITSTATUS(c.status), 0);
    assert_string_equal(c.err, "");
    child_free(&c);
}

static void test_leak_env_exit_code_shared(void **state)
{
    check_leak_exit(helper("prog-inspect-leak"));
}

static void test_leak_env_exit_code_static(void **state)
{
    check_leak_exit(helper("prog-inspect-leak-static"));
}

static void check_overflow(const char *prog, const char *mode)
{
    char asan[512];
    /* ASan reports the fault itself once our handler passes it on; let ours be the one. */
    snprintf(asan, sizeof(asan), "ASAN_OPTIONS=%s%shandle_segv=0",
             getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "",
             getenv("ASAN_OPTIONS") ? ":" : "");
    char tsan[512];
    snprintf(tsan, sizeof(tsan), "TSAN_OPTIONS=%s handle_segv=0",
             getenv("TSAN_OPTIONS") ? getenv("TSAN_OPTIONS") : "");
    char *const env[] = { asan, tsan, NULL };
    Child c = run_child(helper(prog), mode, env);
    if (!WIFSIGNALED(c.status) || WTERMSIG(c.status) != SIGSEGV) {
        print_error("status %#x, stderr:\n%s\n", c.status, c.err);
        fail();
    }
    regex_t re;
#define PROG_OFF "[^ ]*/prog-inspect-overflow(-static)?\\+0x[0-9a-f]+"
    /* Function names from the ELF symbol table; module+offset for file:line. */
    assert_int_equal(regcomp(&re, "^coroscope: coroutine [0-9]+ \"deep\" overflowed its 64 KiB "
                             "stack \\(created at (main|thread_main) \\(" PROG_OFF "\\)\\)\n"
                             "  #0  recurse \\(" PROG_OFF "\\)\n"
                             "  #1  recurse \\(" PROG_OFF "\\)\n"
                             "      \\(the line above repeated [0-9]+ more times\\)\n",
                             REG_EXTENDED | REG_NOSUB), 0);
    if (regexec(&re, c.err, 0, NULL, 0) != 0) {
        print_error("unexpected overflow report:\n%s\n", c.err);
        fail();
    }
    regfree(&re);
    child_free(&c);
}

static void test_overflow_report_then_sigsegv(void **state)
{
    check_overflow("prog-inspect-overflow", "overflow");
}

static void test_overflow_on_another_thread(void **state)
{
    check_overflow("prog-inspect-overflow", "overflow-thread");
}

static void test_overflow_report_static_library(void **state)
{
    check_overflow("prog-inspect-overflow-static", "overflow");
}

static void test_other_faults_keep_their_handling(void **state)
{
    char *const env[] = { "ASAN_OPTIONS=handle_segv=0", "TSAN_OPTIONS=handle_segv=0", NULL };
    Child c = run_child(helper("prog-inspect-overflow"), "null", env);
    assert_true(WIFSIGNALED(c.status));
    assert_int_equal(WTERMSIG(c.status), SIGSEGV);
    assert_null(strstr(c.err, "overflowed"));
    child_free(&c);
    /* A handler the program installed before coroscope's still gets its faults. */
    c = run_child(helper("prog-inspect-overflow"), "chain", env);
    assert_true(WIFEXITED(c.status));
    assert_int_equal(WEXITSTATUS(c.status), 42);
    assert_string_equal(c.err, "own handler called\n");
    child_free(&c);
}

static void test_cxx_exceptions_keep_libgcc_unwinder(void **state)
{
    char asan[512];
    env_or("ASAN_OPTIONS", asan, sizeof(asan));
    char *const env[] = { "LD_DEBUG=bindings", asan, NULL };
    Child c = run_child(helper("prog-inspect-cxx"), NULL, env);
    assert_true(WIFEXITED(c.status));
    assert_int_equal(WEXITSTATUS(c.status), 0);
    assert_string_equal(c.out, "caught 2\n");
    /* Every binding of _Unwind_RaiseException goes to libgcc_s (or, in sanitizer builds, to
     * libasan's interceptor, which forwards to libgcc_s), and libunwind is not loaded. */
    int bindings = 0;
    char *save = NULL;
    for (char *l = strtok_r(c.err, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strstr(l, "libunwind")) {
            print_error("libunwind in the C++ program: %s\n", l);
            fail();
        }
        const char *to = strstr(l, " to ");
        if (to && strstr(l, "`_Unwind_RaiseException'")) {
            bindings++;
            if (!strstr(to, "/libgcc_s.so") && !strstr(to, "/libasan.so")) {
                print_error("bound elsewhere: %s\n", l);
                fail();
            }
        }
    }
    assert_true(bindings >= 1);
    child_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leak_check_since_counts_only_newer),
        cmocka_unit_test(test_leak_check_leaves_out_the_caller),
        cmocka_unit_test(test_cmocka_assertion_fails_on_leak),
        cmocka_unit_test(test_cmocka_assertion_fails_cleanly_inside_coroutine),
        cmocka_unit_test(test_leak_env_exit_code_shared),
        cmocka_unit_test(test_leak_env_exit_code_static),
        cmocka_unit_test(test_overflow_report_then_sigsegv),
        cmocka_unit_test(test_overflow_on_another_thread),
        cmocka_unit_test(test_overflow_report_static_library),
        cmocka_unit_test(test_other_faults_keep_their_handling),
        cmocka_unit_test(test_cxx_exceptions_keep_libgcc_unwinder),
    };
    return cmocka_run_group_tests(tests, setup_paths, NULL);
}
