/*
 * For tests/e2e-top.sh: a thread whose coroutine "spinner" runs without ever yielding (the
 * stall `coroscope top` must name), and a thread whose coroutine "ticker" sleeps 1 ms at a
 * time (about 1,000 switches a second), beside one waiting on a queue forever, and a
 * coroutine "unstarted" that a coroutine of that thread's loop creates and never enters. Prints "ready" and runs until
 * killed.
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/loop.h>
#include <coroscope/sync.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static volatile unsigned long spins;
static CoQueue never;

static void spinner(void *opaque)
{
    for (;;) {
        spins++;
    }
}

static void ticker(void *opaque)
{
    for (;;) {
        coro_sleep_ns(1000000);
    }
}

static void idle(void *opaque)
{
    coro_queue_wait(&never, NULL);
}

/* Creates "unstarted" from inside the loop (the loop's clock is its creation time). */
static void maker(void *opaque)
{
    CoroutineOptions u = { .name = "unstarted" };
    coro_create_opts(spinner, NULL, &u);
}

static void *ticker_thread(void *arg)
{
    CoroutineOptions m = { .name = "maker" };
    coro_schedule(coro_create_opts(maker, NULL, &m));
    CoroutineOptions o = { .name = "ticker" };
    coro_schedule(coro_create_opts(ticker, NULL, &o));
    CoroutineOptions q = { .name = "idle" };
    coro_enter(coro_create_opts(idle, NULL, &q));
    coro_loop_run();
    return NULL;
}

int main(void)
{
    coro_queue_init(&never);
    pthread_t th;
    pthread_create(&th, NULL, ticker_thread, NULL);
    CoroutineOptions o = { .name = "spinner" };
    Coroutine *co = coro_create_opts(spinner, NULL, &o);
    usleep(50000);
    printf("ready\n");
    fflush(stdout);
    coro_enter(co);
    return 0;
}
