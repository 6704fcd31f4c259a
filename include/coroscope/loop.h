/*
 * coroscope's event loop: one per thread, created on first use, on epoll. It is what lets a
 * coroutine wait — for an fd, for a time, or (through <coroscope/sync.h>) for a queue, a
 * mutex or a rwlock — while the thread runs other coroutines: QEMU's model of sequential
 * code over an event loop instead of callbacks.
 *
 *     static void coroutine_fn conn(void *opaque) {
 *         int fd = (int)(intptr_t)opaque;
 *         char buf[256];
 *         ssize_t n;
 *         while ((n = read(fd, buf, sizeof(buf))) != 0) {
 *             if (n < 0 && errno == EAGAIN) { coro_wait_fd(fd, POLLIN); continue; }
 *             ...
 *         }
 *     }
 *     ... coro_schedule(coro_create(conn, (void *)(intptr_t)fd)); coro_loop_run();
 *
 * Every wait records what the coroutine waits for, since when (CLOCK_MONOTONIC, read once
 * when the wait begins) and for which object: `coroscope ps`, the dumps and gdb show it.
 *
 * Wakes: coro_wake(co) makes a waiting coroutine runnable, from any thread. It then runs on
 * the loop of the thread it waits on, after the waker yields or returns to its loop (never
 * inside coro_wake). A wake of a coroutine that is already scheduled is ignored (a double
 * wake runs it once). A wake of a coroutine that waits in coro_wait_fd()/coro_sleep_ns()
 * ends that wait early (see their return values); the primitives of <coroscope/sync.h>
 * treat a wake they did not send as spurious and wait again. A wake of a coroutine that
 * waits in nothing (it yielded with coro_yield) enters it on the loop of the calling thread,
 * as coro_schedule does. Only wake a coroutine you know is alive (as in QEMU).
 */
#ifndef COROSCOPE_LOOP_H
#define COROSCOPE_LOOP_H

#include <coroscope/coro.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Runs this thread's loop until no coroutine of this thread waits on an fd or a timer and
 * nothing is scheduled, or coro_loop_stop() is called. Returns 0, or -errno when epoll
 * fails. Must be called outside a coroutine (on the thread's own stack).
 */
int coro_loop_run(void);

/* Makes this thread's coro_loop_run() return after the current iteration. */
void coro_loop_stop(void);

/*
 * For programs that own their main loop (glib, libuv, their own epoll): an fd that becomes
 * readable when this thread's loop has work, and one iteration of it. coro_loop_poll runs
 * what is scheduled, waits at most timeout_ns (0: do not block; < 0: until something
 * happens) for fds and timers, runs what became runnable, and returns how many coroutines
 * it entered, or -errno. examples/loop-embed.c shows a poll(2) loop driving it.
 */
int coro_loop_fd(void);
int coro_loop_poll(int64_t timeout_ns);

/*
 * coroutine_fn: waits until fd has one of events (POLLIN, POLLOUT, ...; POLLERR and POLLHUP
 * are always reported). Returns the revents (> 0); 0 when coro_wake() ended the wait
 * early; -EBADF for a closed or invalid fd; -EBUSY when another coroutine already waits on
 * fd in this thread's loop; -EPERM for an fd epoll cannot watch (a regular file: those are
 * always ready — read them directly). An fd is registered with epoll once and re-armed with
 * one EPOLL_CTL_MOD per wait (never ADD/DEL per wait).
 */
int coroutine_fn coro_wait_fd(int fd, int events);

/* As coro_wait_fd, with a deadline (CLOCK_MONOTONIC ns, see coro_now_ns); -ETIMEDOUT when it
 * passes first. */
int coroutine_fn coro_wait_fd_until(int fd, int events, int64_t deadline_ns);

/* coroutine_fn: sleeps at least ns nanoseconds (never less). 0, or -EINTR when coro_wake()
 * ended the sleep early. */
int coroutine_fn coro_sleep_ns(int64_t ns);

/* See the top of this file. Any thread; never runs co itself. */
void coro_wake(Coroutine *co);

/* Gives co (created, or suspended by coro_yield) a turn on this thread's loop. */
void coro_schedule(Coroutine *co);

/* CLOCK_MONOTONIC in nanoseconds: the clock of every deadline and wait time. */
int64_t coro_now_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* COROSCOPE_LOOP_H */
