/*
 * A program that owns its main loop (here plain poll(2); glib or libuv work the same way)
 * and drives coroscope's loop inside it: it watches coro_loop_fd() next to its own fds and
 * calls coro_loop_poll(0) when that fd is readable. Coroutines sleep and wait on a pipe in
 * sequential code meanwhile. Prints what happened and exits 0.
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/loop.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

static int pipe_fds[2];
static int finished;

static void coroutine_fn ticker(void *opaque)
{
    for (int i = 1; i <= 3; i++) {
        coro_sleep_ns(20 * 1000000);
        printf("ticker: tick %d\n", i);
    }
    finished++;
}

static void coroutine_fn reader(void *opaque)
{
    char c;
    while (read(pipe_fds[0], &c, 1) < 0) {
        coro_wait_fd(pipe_fds[0], POLLIN);
    }
    printf("reader: got '%c' from the program's own loop\n", c);
    finished++;
}

int main(void)
{
    if (pipe2(pipe_fds, O_NONBLOCK) < 0) {
        perror("pipe2");
        return 1;
    }
    coro_schedule(coro_create(ticker, NULL));
    coro_schedule(coro_create(reader, NULL));
    int loop_fd = coro_loop_fd();
    int own_timer_ticks = 0;
    while (finished < 2) {
        struct pollfd fds[1] = { { .fd = loop_fd, .events = POLLIN } };
        int n = poll(fds, 1, 25); /* the program's own timeout: its own work */
        if (n < 0) {
            perror("poll");
            return 1;
        }
        if (n == 0 && ++own_timer_ticks == 2) {
            /* Something the program does on its own schedule: feed the reader. */
            if (write(pipe_fds[1], "x", 1) != 1) {
                perror("write");
                return 1;
            }
        }
        if (fds[0].revents & POLLIN) {
            coro_loop_poll(0); /* run what is ready; never blocks */
        }
    }
    printf("done: both coroutines finished inside the program's own poll loop\n");
    return 0;
}
