/*
 * Target for tests/e2e-switch-unwind.sh: a fixed sequence of context switches (enter a new
 * coroutine, yield, enter, a yield that reloads MXCSR, enter, terminate) to single-step
 * through under gdb, and a coroutine parked in pause() for eu-stack.
 *   prog-switch step    runs the sequence and prints "done"
 *   prog-switch park    prints "parked" once a coroutine is blocked in pause(), then waits
 */
#include <coroscope/coro.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static __attribute__((noinline)) void sw_park(int n)
{
    coro_yield();
    __asm__ volatile("" ::"r"(n) : "memory");
}

static __attribute__((noinline)) void sw_body(void *opaque)
{
    sw_park(1);
    /* Round down from here on: the next switches must save and reload MXCSR. */
    unsigned m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    m = (m & ~0x6000u) | 0x2000u;
    __asm__ volatile("ldmxcsr %0" ::"m"(m));
    sw_park(2);
}

static __attribute__((noinline)) void sw_outer(Coroutine *co)
{
    coro_enter(co);
    __asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void sw_blocked(void)
{
    printf("parked\n");
    fflush(stdout);
    pause();
    __asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void sw_parker(void *opaque)
{
    sw_blocked();
    __asm__ volatile("" ::: "memory"); /* not a tail call: keep this frame */
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "step") == 0) {
        Coroutine *co = coro_create(sw_body, NULL);
        sw_outer(co);
        sw_outer(co);
        sw_outer(co);
        printf("done\n");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "park") == 0) {
        coro_enter(coro_create(sw_parker, NULL));
        return 0;
    }
    fprintf(stderr, "usage: %s step|park\n", argv[0]);
    return 64;
}
