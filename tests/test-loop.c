/*
 * The event loop (<coroscope/loop.h>): fd waits on pipes and sockets, timers (never early,
 * late by a bounded amount), wakes (early, double, cross-thread), embedding through
 * coro_loop_fd/coro_loop_poll, bad fds, and the wait reason each waiter publishes.
 */
#include "coro-test.h"

#include <coroscope/loop.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>

static uint32_t wait_kind_of(const Coroutine *co)
{
    return rd32((uint64_t)(uintptr_t)co, abi()->off_wait_kind);
}

typedef struct FdJob {
    int fd, events, result;
    int64_t deadline;
    bool done;
} FdJob;

static void fd_waiter(void *opaque)
{
    FdJob *j = opaque;
    j->result = j->deadline ? coro_wait_fd_until(j->fd, j->events, j->deadline)
                            : coro_wait_fd(j->fd, j->events);
    j->done = true;
}

static void test_wait_fd_pipe_readable_and_reason(void **state)
{
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    FdJob j = { .fd = p[0], .events = POLLIN };
    Coroutine *co = coro_create(fd_waiter, &j);
    coro_enter(co);
    assert_false(j.done);
    const struct coro_debug_abi *d = abi();
    uint64_t rec = (uint64_t)(uintptr_t)co;
    assert_int_equal(wait_kind_of(co), CORO_WAIT_FD);
    assert_int_equal((int32_t)rd32(rec, d->off_wait_fd), p[0]);
    assert_int_equal(rd32(rec, d->off_wait_events), POLLIN);
    assert_int_equal(rd64(rec, d->off_wait_deadline), 0);
    assert_int_equal(coro_loop_poll(0), 0); /* nothing to read yet */
    assert_false(j.done);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(coro_loop_run(), 0);
    assert_true(j.done);
    assert_true(j.result & POLLIN);
    /* Waiting again on the same fd re-arms it (and works). */
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    j.done = false;
    coro_enter(coro_create(fd_waiter, &j));
    assert_int_equal(write(p[1], "y", 1), 1);
    assert_int_equal(coro_loop_run(), 0);
    assert_true(j.done && (j.result & POLLIN));
    close(p[0]);
    close(p[1]);
}

static void test_wait_fd_socket_writable_and_hangup(void **state)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    FdJob w = { .fd = sv[0], .events = POLLOUT };
    coro_enter(coro_create(fd_waiter, &w));
    assert_int_equal(coro_loop_run(), 0);
    assert_true(w.result & POLLOUT);
    FdJob r = { .fd = sv[0], .events = POLLIN };
    coro_enter(coro_create(fd_waiter, &r));
    close(sv[1]); /* peer closes: readable (EOF) and hung up */
    assert_int_equal(coro_loop_run(), 0);
    assert_true(r.result & (POLLIN | POLLHUP));
    close(sv[0]);
}

static void test_wait_fd_bad_busy_and_reused(void **state)
{
    FdJob bad = { .fd = -1, .events = POLLIN };
    coro_enter(coro_create(fd_waiter, &bad));
    assert_true(bad.done);
    assert_int_equal(bad.result, -EBADF);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    int closed = p[1];
    FdJob c = { .fd = closed, .events = POLLIN };
    coro_enter(coro_create(fd_waiter, &c));
    assert_true(c.done);
    assert_int_equal(c.result, -EBADF);
    /* Two waiters on one fd: the second is refused. */
    int q[2];
    assert_int_equal(pipe2(q, O_NONBLOCK), 0);
    FdJob a = { .fd = q[0], .events = POLLIN }, b = { .fd = q[0], .events = POLLIN };
    coro_enter(coro_create(fd_waiter, &a));
    coro_enter(coro_create(fd_waiter, &b));
    assert_true(b.done);
    assert_int_equal(b.result, -EBUSY);
    assert_int_equal(write(q[1], "z", 1), 1);
    assert_int_equal(coro_loop_run(), 0);
    assert_true(a.done);
    /* The waited-on fd is closed with plain close() and its number reused by a new pipe:
     * the next wait must watch the new file, not hang. */
    int old = q[0];
    close(q[0]);
    close(q[1]);
    close(p[0]);
    int r[2];
    assert_int_equal(pipe2(r, O_NONBLOCK), 0);
    /* The lowest free numbers: one end of the new pipe has the old number. */
    bool read_end = r[0] == old;
    assert_true(read_end || r[1] == old);
    FdJob again = { .fd = old, .events = read_end ? POLLIN : POLLOUT };
    coro_enter(coro_create(fd_waiter, &again));
    if (read_end) {
        assert_int_equal(write(r[1], "w", 1), 1);
    }
    assert_int_equal(coro_loop_run(), 0);
    assert_true(again.done && (again.result & again.events));
    close(r[0]);
    close(r[1]);
}

static void test_wait_fd_until_times_out(void **state)
{
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    int64_t start = coro_now_ns();
    FdJob j = { .fd = p[0], .events = POLLIN, .deadline = start + 20 * 1000000 };
    coro_enter(coro_create(fd_waiter, &j));
    assert_int_equal(coro_loop_run(), 0);
    assert_int_equal(j.result, -ETIMEDOUT);
    assert_true(coro_now_ns() >= j.deadline);
    close(p[0]);
    close(p[1]);
}

/* ---- timers ---- */

typedef struct SleepJob {
    int64_t ns, slept;
    int result;
    bool done;
} SleepJob;

static void sleeper(void *opaque)
{
    SleepJob *j = opaque;
    int64_t t0 = coro_now_ns();
    j->result = coro_sleep_ns(j->ns);
    j->slept = coro_now_ns() - t0;
    j->done = true;
}

/* Never early; late by at most 5 ms on an idle machine (50 ms under valgrind or TSan, whose
 * first runs of each path symbolize and allocate shadow: 16 ms measured). */
static void test_sleep_never_early_bounded_late(void **state)
{
#ifdef __SANITIZE_THREAD__
    int64_t bound = 50000000;
#else
    int64_t bound = RUNNING_ON_VALGRIND ? 50000000 : 5000000;
#endif
    static const int64_t ms[] = { 1, 5, 20, 3, 0 };
    SleepJob j[5];
    for (int i = 0; i < 5; i++) {
        j[i] = (SleepJob){ .ns = ms[i] * 1000000 };
        coro_enter(coro_create(sleeper, &j[i]));
    }
    assert_int_equal(coro_loop_run(), 0);
    int64_t worst = 0;
    for (int i = 0; i < 5; i++) {
        assert_true(j[i].done);
        assert_int_equal(j[i].result, 0);
        assert_true(j[i].slept >= j[i].ns);
        worst = j[i].slept - j[i].ns > worst ? j[i].slept - j[i].ns : worst;
    }
    print_message("      worst lateness %.3f ms (bound %.0f ms)\n", worst / 1e6, bound / 1e6);
    assert_true(worst <= bound);
}

static void test_wake_ends_sleep_early_and_double_wake_runs_once(void **state)
{
    SleepJob j = { .ns = 10LL * 1000000000 };
    Coroutine *co = coro_create(sleeper, &j);
    coro_enter(co);
    assert_int_equal(wait_kind_of(co), CORO_WAIT_SLEEP);
    coro_wake(co);
    coro_wake(co);
    int64_t t0 = coro_now_ns();
    assert_int_equal(coro_loop_poll(0), 1);
    assert_true(j.done);
    assert_int_equal(j.result, -EINTR);
    assert_true(coro_now_ns() - t0 < 1000000000);
    assert_int_equal(coro_loop_run(), 0); /* nothing left: returns at once */
}

/* coro_schedule / coro_wake of a coroutine parked by a plain yield: entered by the loop. */
static int turns;

static void yielder(void *opaque)
{
    turns++;
    coro_yield();
    turns++;
}

static void test_schedule_gives_a_turn(void **state)
{
    turns = 0;
    Coroutine *co = coro_create(yielder, NULL);
    coro_schedule(co);
    assert_int_equal(turns, 0);
    assert_int_equal(coro_loop_run(), 0);
    assert_int_equal(turns, 1);
    coro_wake(co);
    assert_int_equal(coro_loop_run(), 0);
    assert_int_equal(turns, 2);
}

/* ---- embedding: a program's own poll(2) loop drives coroscope's ---- */

static void test_embedded_loop_fd(void **state)
{
    int lfd = coro_loop_fd();
    assert_true(lfd >= 0);
    SleepJob j = { .ns = 10 * 1000000 };
    coro_enter(coro_create(sleeper, &j));
    int64_t t0 = coro_now_ns();
    while (!j.done && coro_now_ns() - t0 < 2000000000) {
        struct pollfd pfd = { .fd = lfd, .events = POLLIN };
        int r = poll(&pfd, 1, 1000);
        assert_true(r >= 0);
        if (r > 0) {
            assert_true(coro_loop_poll(0) >= 0);
        }
    }
    assert_true(j.done);
    assert_true(j.slept >= j.ns);
    /* A scheduled coroutine makes the fd readable too. */
    turns = 0;
    Coroutine *co = coro_create(yielder, NULL);
    coro_schedule(co);
    struct pollfd pfd = { .fd = lfd, .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 1000), 1);
    assert_int_equal(coro_loop_poll(0), 1);
    assert_int_equal(turns, 1);
    coro_wake(co); /* its second turn ends it */
    assert_int_equal(poll(&pfd, 1, 1000), 1);
    assert_int_equal(coro_loop_poll(0), 1);
    assert_int_equal(turns, 2);
}

/* ---- wakes from another thread reach a thread blocked in its loop ---- */

static Coroutine *remote_target;
static _Atomic int remote_parked;

static void remote_sleeper(void *opaque)
{
    SleepJob *j = opaque;
    remote_parked = 1;
    sleeper(j);
}

static void *remote_loop(void *arg)
{
    SleepJob *j = arg;
    remote_target = coro_create(remote_sleeper, j);
    coro_enter(remote_target);
    coro_loop_run();
    return NULL;
}

static void test_cross_thread_wake_unblocks_epoll(void **state)
{
    SleepJob j = { .ns = 30LL * 1000000000 };
    remote_parked = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, remote_loop, &j), 0);
    while (!remote_parked) {
        usleep(1000);
    }
    usleep(20000); /* let it block in epoll_wait */
    int64_t t0 = coro_now_ns();
    coro_wake(remote_target);
    pthread_join(th, NULL);
    assert_true(j.done);
    assert_int_equal(j.result, -EINTR);
    assert_true(coro_now_ns() - t0 < 5000000000LL);
}

static void child_sleep_outside(void *arg)
{
    coro_sleep_ns(1);
}

static void test_wait_outside_a_coroutine_aborts(void **state)
{
    const char *const msg[] = { "coroscope: fatal: coro_sleep_ns() called outside a "
                                "coroutine, on thread", NULL };
    expect_death(child_sleep_outside, NULL, SIGABRT, msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_wait_fd_pipe_readable_and_reason, no_leftovers),
        cmocka_unit_test_teardown(test_wait_fd_socket_writable_and_hangup, no_leftovers),
        cmocka_unit_test_teardown(test_wait_fd_bad_busy_and_reused, no_leftovers),
        cmocka_unit_test_teardown(test_wait_fd_until_times_out, no_leftovers),
        cmocka_unit_test_teardown(test_sleep_never_early_bounded_late, no_leftovers),
        cmocka_unit_test_teardown(test_wake_ends_sleep_early_and_double_wake_runs_once,
                                  no_leftovers),
        cmocka_unit_test_teardown(test_schedule_gives_a_turn, no_leftovers),
        cmocka_unit_test_teardown(test_embedded_loop_fd, no_leftovers),
        cmocka_unit_test_teardown(test_cross_thread_wake_unblocks_epoll, no_leftovers),
        cmocka_unit_test_teardown(test_wait_outside_a_coroutine_aborts, no_leftovers),
    };
    apply_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
