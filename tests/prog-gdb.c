/*
 * Helper for tests/e2e-gdb.sh: parks coroutines in known call chains, then stops in a known
 * place so that gdb can look at them live, attached, or in a core file.
 *
 *   prog-gdb run             stop in stop_here() (the test sets a breakpoint there), then exit 0
 *   prog-gdb wait            print the pid, then wait in stop_here() until killed (for gdb -p)
 *   prog-gdb crash           abort() in stop_here(): a kernel core
 *   prog-gdb many N          also park N extra coroutines (half of them waiting for a CoMutex
 *                            that parked-0 holds), then as "run"
 *   prog-gdb corrupt-loop    make the registry's record list loop, then abort()
 *   prog-gdb corrupt-magic   overwrite the descriptor's magic, then abort()
 *   prog-gdb corrupt-stack   give "beta" a saved stack pointer outside its stack, then abort()
 *   prog-gdb abi-old         make the descriptor look like an older writer's (shorter, the
 *                            optional fields absent), then abort()
 *   prog-gdb abi-new         make it look like a newer writer's (longer), then abort()
 *
 * Lines marked L:tag are looked up by the test. State at the stop point, on the main
 * thread unless said otherwise:
 *   "alpha"   suspended in alpha_leaf() <- alpha_mid() <- alpha_main(), local alpha_secret = 4242
 *   "beta"    suspended in beta_main() directly
 *   (unnamed) created, never entered, entry idle_main()
 *   "outer"   nested: entered "inner" and waits in coro_enter()
 *   "inner"   running: stop_here() <- inner_main()
 *   "sleeper" running on a second thread, blocked in read() <- sleeper_main()
 *   "remote"  suspended on the second thread in remote_main(); the main thread resumes it
 *             after that thread has ended (it migrates)
 *   "reader"  suspended on the second thread in coro_read(), a user function whose name
 *             merely starts with coro_ (it must not be taken for coroscope's own)
 * After the stop point, main resumes alpha, beta, the unnamed one, remote and reader, in
 * this order (coro-until's tests rely on it).
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/debug-abi.h>
#include <coroscope/sync.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern struct coro_debug_abi coroscope_debug_abi;

static const char *mode = "run";
static int sleeper_pipe[2];
static atomic_int sleeper_ready;
static volatile int keep_waiting = 1;

/* The test breaks here; a volatile store keeps the call from being optimised away. */
volatile int stop_reason;
void stop_here(int why);
__attribute__((noinline)) void stop_here(int why)
{
    stop_reason = why; /* L:stop_store */
    if (strcmp(mode, "wait") == 0) {
        printf("%d\n", (int)getpid());
        fflush(stdout);
        while (keep_waiting) {
            pause();
        }
    } else if (strcmp(mode, "run") != 0 && strcmp(mode, "many") != 0) {
        abort();
    }
}

/* alpha_secret lives in the stack frame; alpha_reg lives across the yield in a callee-saved
 * register, which gdb recovers from the registers the runtime saved at the switch. */
__attribute__((noinline)) static void alpha_leaf(int depth)
{
    volatile int alpha_secret = 4242 + depth;
    int alpha_reg = 5151 + depth * stop_reason;
    coro_yield(); /* L:alpha_yield */
    __asm__ volatile("" : : "r"(alpha_reg));
    alpha_secret++;
}

__attribute__((noinline)) static void alpha_mid(int depth)
{
    alpha_leaf(depth - 1); /* L:alpha_call_leaf */
    __asm__ volatile("" ::: "memory");
}

static void alpha_main(void *opaque)
{
    alpha_mid(1); /* L:alpha_call_mid */
    __asm__ volatile("" ::: "memory");
}

static void beta_main(void *opaque)
{
    coro_yield(); /* L:beta_yield */
    __asm__ volatile("" ::: "memory");
}

static void idle_main(void *opaque) /* L:idle_decl */
{
}

/* "many": parked-0 holds parked_lock, the odd ones wait for it (coro_mutex_lock reaches its
 * wait by a tail call), the others yield. */
static CoMutex parked_lock;

static void parked_main(void *opaque)
{
    long i = (long)(intptr_t)opaque;
    if (i % 2 == 1) {
        coro_mutex_lock(&parked_lock);
        __asm__ volatile("" ::: "memory");
        return;
    }
    if (i == 0) {
        coro_mutex_lock(&parked_lock);
    }
    coro_yield();
}

static void inner_main(void *opaque)
{
    stop_here(1); /* L:inner_call */
    __asm__ volatile("" ::: "memory");
}

static void outer_main(void *opaque)
{
    Coroutine *inner = coro_create_opts(inner_main, NULL,
                                        &(CoroutineOptions){ .name = "inner" });
    coro_enter(inner); /* L:outer_enter */
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void sleeper_block(void)
{
    char c;
    atomic_store(&sleeper_ready, 1);
    while (read(sleeper_pipe[0], &c, 1) < 0) { /* L:sleeper_read */
    }
}

static void sleeper_main(void *opaque)
{
    sleeper_block();
}

static Coroutine *remote, *reader;
static volatile int remote_runs, reader_runs;

static void remote_main(void *opaque)
{
    coro_yield(); /* L:remote_yield */
    remote_runs++; /* L:remote_resumed */
}

/* A user's own function that happens to be called coro_<something>. */
void coro_read(void);
__attribute__((noinline)) void coro_read(void)
{
    coro_yield(); /* L:reader_yield */
    reader_runs++; /* L:reader_resumed */
}

static void reader_main(void *opaque)
{
    coro_read();
    __asm__ volatile("" ::: "memory");
}

static void *sleeper_thread(void *arg)
{
    /* Ids in creation order: sleeper 1025, remote 1026, reader 1027. */
    Coroutine *co = coro_create_opts(sleeper_main, NULL,
                                     &(CoroutineOptions){ .name = "sleeper" });
    remote = coro_create_opts(remote_main, NULL, &(CoroutineOptions){ .name = "remote" });
    reader = coro_create_opts(reader_main, NULL, &(CoroutineOptions){ .name = "reader" });
    coro_enter(remote);
    coro_enter(reader);
    coro_enter(co);
    return NULL;
}

/* Corrupts the registry through the debug ABI, as a stray write would; or rewrites the
 * descriptor as an older or a newer runtime would have written it. */
static void corrupt(const char *how)
{
    struct coro_debug_abi *d = &coroscope_debug_abi;
    if (strcmp(how, "abi-old") == 0) {
        d->size = offsetof(struct coro_debug_abi, reserved0);
        d->off_opaque = d->off_create_site = d->off_tid = d->off_caller = CORO_DEBUG_ABSENT;
        d->off_switch_count = d->off_generation = CORO_DEBUG_ABSENT;
        d->shard_off_tid = d->shard_off_current = CORO_DEBUG_ABSENT;
        return;
    }
    if (strcmp(how, "abi-new") == 0) {
        d->size = sizeof(*d) + 64;
        return;
    }
    if (strcmp(how, "corrupt-magic") == 0) {
        memcpy(d->magic, "garbage", 8);
        return;
    }
    if (strcmp(how, "corrupt-stack") == 0) {
        /* beta's saved stack pointer points far outside its stack. */
        for (char *r = (char *)(uintptr_t)d->records; r;
             r = (char *)(uintptr_t)*(uint64_t *)(r + d->off_next)) {
            if (*(uint32_t *)(r + d->off_state) != CORO_STATE_FREE &&
                *(uint64_t *)(r + d->off_id) == 2) {
                *(uint64_t *)(r + d->off_regs + d->regs.rsp) = 0x10;
            }
        }
        return;
    }
    /* corrupt-loop: the third record points back at the first, and the bound is huge. */
    char *first = (char *)(uintptr_t)d->records;
    char *second = (char *)(uintptr_t)*(uint64_t *)(first + d->off_next);
    char *third = (char *)(uintptr_t)*(uint64_t *)(second + d->off_next);
    *(uint64_t *)(third + d->off_next) = (uint64_t)(uintptr_t)first;
    d->nrecords = (uint64_t)1 << 40;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        mode = argv[1];
    }
    long extra = (strcmp(mode, "many") == 0 && argc > 2) ? atol(argv[2]) : 0;

    Coroutine *alpha = coro_create_opts(alpha_main, NULL, &(CoroutineOptions){ .name = "alpha" });
    Coroutine *beta = coro_create_opts(beta_main, NULL, &(CoroutineOptions){ .name = "beta" });
    Coroutine *idle = coro_create(idle_main, NULL);
    coro_enter(alpha);
    coro_enter(beta);
    for (long i = 0; i < extra; i++) {
        char name[32];
        snprintf(name, sizeof(name), "parked-%ld", i);
        Coroutine *p = coro_create_opts(parked_main, (void *)(intptr_t)i,
                                        &(CoroutineOptions){ .name = name });
        if (!p) {
            perror("coro_create");
            return 1;
        }
        coro_enter(p);
    }

    if (pipe(sleeper_pipe) != 0) {
        perror("pipe");
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, sleeper_thread, NULL);
    while (!atomic_load(&sleeper_ready)) {
        usleep(1000);
    }
    if (strncmp(mode, "corrupt", 7) == 0 || strncmp(mode, "abi-", 4) == 0) {
        corrupt(mode);
        abort();
    }

    Coroutine *outer = coro_create_opts(outer_main, NULL, &(CoroutineOptions){ .name = "outer" });
    coro_enter(outer);

    /* Only "run" and "many" get here: finish every coroutine so that the program exits clean. */
    if (write(sleeper_pipe[1], "x", 1) != 1) {
        return 1;
    }
    pthread_join(th, NULL);
    coro_enter(alpha);
    coro_enter(beta);
    coro_enter(idle);
    coro_enter(remote); /* now on this thread: the one it ran on has ended */
    coro_enter(reader);
    return 0;
}
