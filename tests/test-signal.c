/*
 * cmocka tests of coro_dump_on_signal() in this process: argument checks, never replacing a
 * handler of the program's (-EBUSY), and a dump written to a file on a real signal, with
 * "%p" in the path and the file created 0600, appended to, and a forked child's own dump. The multi-threaded stress test, blocked and
 * spinning threads, the environment and the crash report run in real child processes:
 * tests/e2e-signal.sh.
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/inspect.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static void user_handler(int sig)
{
    (void)sig;
}

static void test_signal_rejects_bad_arguments(void **state)
{
    (void)state;
    assert_int_equal(coro_dump_on_signal(0, NULL, CORO_DUMP_TEXT), -EINVAL);
    assert_int_equal(coro_dump_on_signal(-1, NULL, CORO_DUMP_TEXT), -EINVAL);
    assert_int_equal(coro_dump_on_signal(SIGKILL, NULL, CORO_DUMP_TEXT), -EINVAL);
    assert_int_equal(coro_dump_on_signal(SIGSEGV, NULL, CORO_DUMP_TEXT), -EINVAL);
    assert_int_equal(coro_dump_on_signal(SIGRTMAX + 1, NULL, CORO_DUMP_TEXT), -EINVAL);
    assert_int_equal(coro_dump_on_signal(SIGUSR1, NULL, 7), -EINVAL);
    assert_int_equal(coro_dump_on_signal(SIGUSR1, "", CORO_DUMP_TEXT), -EINVAL);
    /* Nothing was installed by the failed calls. */
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
}

static void test_signal_never_replaces_a_handler(void **state)
{
    (void)state;
    struct sigaction sa, now;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = user_handler;
    sigaction(SIGUSR2, &sa, NULL);
    assert_int_equal(coro_dump_on_signal(SIGUSR2, NULL, CORO_DUMP_TEXT), -EBUSY);
    sigaction(SIGUSR2, NULL, &now);
    assert_true(now.sa_handler == user_handler);

    /* SIG_IGN is the program's choice too. */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGUSR2, &sa, NULL);
    assert_int_equal(coro_dump_on_signal(SIGUSR2, NULL, CORO_DUMP_TEXT), -EBUSY);
    sigaction(SIGUSR2, NULL, &now);
    assert_true(now.sa_handler == SIG_IGN);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGUSR2, &sa, NULL);
}

static volatile int resumed;

__attribute__((noinline)) static void parked_in_test(void)
{
    coro_yield();
    resumed++;
}

static void parked_entry(void *opaque)
{
    (void)opaque;
    parked_in_test();
    resumed++;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return NULL;
    }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Waits until the file holds ndumps complete text dumps (each ends with its summary line);
 * up to 30 s, for valgrind. */
static char *wait_dump(const char *path, int ndumps)
{
    for (int i = 0; i < 15000; i++) {
        char *s = slurp(path);
        int n = 0;
        for (char *p = s; p && (p = strstr(p, "# signal dump:")); p++) {
            n++;
        }
        if (n >= ndumps && s[strlen(s) - 1] == '\n') {
            return s;
        }
        usleep(2000);
    }
    return NULL;
}

#ifndef __SANITIZE_THREAD__
/* A forked child has its own helper thread and writes its own file ("%p" is its pid); the
 * parent's file gets nothing of it. */
static void check_forked_child_dump(const char *dir, const char *path)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        CoroutineOptions oc = { .name = "in-child" };
        Coroutine *cc = coro_create_opts(parked_entry, NULL, &oc);
        coro_enter(cc);
        char mine[128];
        snprintf(mine, sizeof(mine), "%s/dump-%d.txt", dir, (int)getpid());
        raise(SIGUSR1);
        char *t = wait_dump(mine, 1);
        _exit(t && strstr(t, "\"in-child\" [suspended") ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char child_path[128];
    snprintf(child_path, sizeof(child_path), "%s/dump-%d.txt", dir, (int)child);
    unlink(child_path);
    char *text = slurp(path);
    assert_null(strstr(text, "in-child"));
}
#endif

static void test_signal_dumps_to_a_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/coroscope-test-signal-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pattern[128], path[128];
    snprintf(pattern, sizeof(pattern), "%s/dump-%%p.txt", dir);
    snprintf(path, sizeof(path), "%s/dump-%d.txt", dir, (int)getpid());

    CoroutineOptions o = { .name = "parked-in-test" };
    Coroutine *co = coro_create_opts(parked_entry, NULL, &o);
    coro_enter(co);

    assert_int_equal(coro_dump_on_signal(SIGUSR1, pattern, CORO_DUMP_TEXT), 0);
    /* Calling again for the same signal is not "busy": it updates the configuration. */
    assert_int_equal(coro_dump_on_signal(SIGUSR1, pattern, CORO_DUMP_TEXT), 0);
    raise(SIGUSR1);
    char *text = wait_dump(path, 1);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"parked-in-test\" [suspended, thread "));
    assert_non_null(strstr(text, " coro_yield (runtime/"));
    assert_non_null(strstr(text, "parked_in_test (tests/test-signal.c:"));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Appends: a second signal, a second dump in the same file. */
    raise(SIGUSR1);
    assert_non_null(wait_dump(path, 2));

#ifdef __SANITIZE_THREAD__
    /* TSan does not support threads started in the child of a multi-threaded fork
     * (die_after_fork: "you are on your own"), and the dump's helper is one: no dump came. */
    print_message("      forked child's dump skipped under ThreadSanitizer: no threads after "
                  "a multi-threaded fork\n");
#else
    check_forked_child_dump(dir, path);
#endif

    coro_enter(co); /* let it finish */
    unlink(path);
    rmdir(dir);
}

/* A daemon that closes every descriptor it does not know of must not break the dump, and the
 * dump must never write into a file that reuses a closed descriptor's number. */
static void test_signal_survives_closed_descriptors(void **state)
{
    (void)state;
    char dir[] = "/tmp/coroscope-test-signal-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], other[128];
    snprintf(path, sizeof(path), "%s/dump.txt", dir);
    snprintf(other, sizeof(other), "%s/other.txt", dir);
    assert_int_equal(coro_dump_on_signal(SIGUSR1, path, CORO_DUMP_TEXT), 0);
    for (int fd = 3; fd < 1024; fd++) {
        close(fd);
    }
    int fd = open(other, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    CoroutineOptions o = { .name = "after-close" };
    Coroutine *co = coro_create_opts(parked_entry, NULL, &o);
    coro_enter(co);
    raise(SIGUSR1);
    char *text = wait_dump(path, 1);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"after-close\" [suspended"));
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 0);
    close(fd);
    coro_enter(co);
    unlink(other);
    unlink(path);
    rmdir(dir);
}

static volatile sig_atomic_t stolen_calls;

static void stolen_handler(int sig)
{
    (void)sig;
    stolen_calls++;
}

/* The hold signal is the highest free real-time signal at the first configuration. A program
 * that takes it afterwards must not receive the dump's internal signals. */
static void test_signal_moves_off_a_stolen_hold_signal(void **state)
{
    (void)state;
    char dir[] = "/tmp/coroscope-test-signal-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/dump.txt", dir);
    assert_int_equal(coro_dump_on_signal(SIGUSR1, path, CORO_DUMP_TEXT), 0);
    int taken = 0;
    for (int s = SIGRTMAX; s > SIGRTMIN && !taken; s--) {
        struct sigaction cur;
        sigaction(s, NULL, &cur);
        if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction) {
            taken = s; /* ours: the only SA_SIGINFO real-time handler in this program */
        }
    }
    assert_int_not_equal(taken, 0);
    struct sigaction mine;
    memset(&mine, 0, sizeof(mine));
    mine.sa_handler = stolen_handler;
    sigaction(taken, &mine, NULL);

    /* A thread with coroutines (this one: parked-in-test) must be held for the dump. */
    CoroutineOptions o = { .name = "after-steal" };
    Coroutine *co = coro_create_opts(parked_entry, NULL, &o);
    coro_enter(co);
    raise(SIGUSR1);
    char *text = wait_dump(path, 1);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"after-steal\" [suspended"));
    assert_int_equal(stolen_calls, 0);
    coro_enter(co);
    mine.sa_handler = SIG_DFL;
    sigaction(taken, &mine, NULL);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_rejects_bad_arguments),
        cmocka_unit_test(test_signal_never_replaces_a_handler),
        cmocka_unit_test(test_signal_dumps_to_a_file),
        cmocka_unit_test(test_signal_moves_off_a_stolen_hold_signal),
        cmocka_unit_test(test_signal_survives_closed_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
