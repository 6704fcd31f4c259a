/*
 * Target of bench/gdb-bench.sh: N coroutines waiting in four places, as a server's
 * connections wait in a few places: on a CoQueue (a quarter of them 9 user calls deep, the
 * rest 2), for a CoMutex that another coroutine holds, in a one-hour sleep (a deadline), and
 * for a read lock of a CoRwlock that a writer holds; plus the two holders and one coroutine
 * never entered. So coro-info decodes a wait, its age and a holder for every line.
 * Prints "ready PID" when all are parked, then sleeps until killed.
 *
 *   gdb-bench-prog N
 */
#include <coroscope/coro.h>
#include <coroscope/loop.h>
#include <coroscope/sync.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile int sink;

#define PARK(name, next)                                                                      \
    static __attribute__((noinline)) void name(int x)                                      \
    {                                                                                          \
        next(x + 1);                                                                           \
        sink += x;                                                                             \
    }

static CoQueue requests;
static CoMutex table_lock;
static CoRwlock index_lock;

static __attribute__((noinline)) void wait_read(int x)
{
    coro_queue_wait(&requests, NULL);
    sink += x;
}
static __attribute__((noinline)) void wait_write(int x)
{
    coro_mutex_lock(&table_lock);
    sink += x;
}
static __attribute__((noinline)) void wait_timer(int x)
{
    coro_sleep_ns(3600 * 1000000000LL);
    sink += x;
}
static __attribute__((noinline)) void wait_lock(int x)
{
    coro_rwlock_rdlock(&index_lock);
    sink += x;
}

/* Takes the mutex and the write lock the others wait for, then waits itself. */
static void holder_main(void *opaque)
{
    coro_mutex_lock(&table_lock);
    coro_rwlock_wrlock(&index_lock);
    coro_queue_wait(&requests, NULL);
    sink++; /* no tail call: holder_main stays on its stack */
}

PARK(step7, wait_read)
PARK(step6, step7)
PARK(step5, step6)
PARK(step4, step5)
PARK(step3, step4)
PARK(step2, step3)
PARK(step1, step2)

static void (*const sites[4])(int) = { wait_read, wait_write, wait_timer, wait_lock };

static void conn_main(void *opaque)
{
    int which = (int)(intptr_t)opaque;
    if (which == 0) {
        step1(0); /* 8 calls deep */
    } else {
        sites[which](which);
    }
}

static void never_main(void *opaque)
{
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    coro_queue_init(&requests);
    coro_mutex_init(&table_lock);
    coro_rwlock_init(&index_lock);
    coro_enter(coro_create_opts(holder_main, NULL, &(CoroutineOptions){ .name = "holder" }));
    for (long i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "conn-%ld", i);
        Coroutine *co = coro_create_opts(conn_main, (void *)(intptr_t)(i % 4),
                                         &(CoroutineOptions){ .name = name });
        if (!co) {
            perror("coro_create");
            return 1;
        }
        coro_enter(co);
    }
    coro_create(never_main, NULL);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    for (;;) {
        pause();
    }
}
