/*
 * Target program for tests/e2e-cli*.sh and bench/cli-bench.sh: parks coroutines in known call
 * chains, then waits to be inspected (live) or dumps core.
 *
 *   prog-cli MODE [N]
 *     wait      park the fixed set below, write "ready PID" to stdout, sleep until killed
 *     abort     park the fixed set, then abort() (a kernel core, when ulimit -c allows)
 *     many N    also park N coroutines 8 calls deep ("bulk-<i>"), then wait
 *     many-abort N [T]  as many, plus T threads parked 8 calls deep, then abort()
 *     churn     as wait, while another thread keeps creating short-lived threads that each
 *               run a coroutine to completion (threads appear and vanish while we attach)
 *     corrupt-cycle  park the set, make the registry's record list a cycle, abort()
 *     corrupt-magic  park the set, scribble on the descriptor's magic, abort()
 *     corrupt-stack  park the set, smash one parked coroutine's saved stack pointer, abort()
 *
 * Fixed set (tests check names, states, frames and the lines marked LINE-...):
 *   "parker-1", "parker-2": entry park_entry -> park_a -> park_b -> park_c -> coro_yield
 *   "fresh": created, never entered (entry fresh_entry)
 *   "outer" -> enters "inner", inner yields: outer is suspended below coro_yield as well
 *   "waiter" on a second thread enters "sleeper", which blocks in nanosleep inside sleep_deep:
 *   sleeper is running (unwound from the thread's registers), waiter has entered it (running,
 *   from its saved registers, below coro_enter)
 *   unnamed: entry park_entry, suspended
 *   "reader": entry reader_entry -> coro_read (the program's own function, not coroscope's)
 *   -> coro_yield
 *   "partial": partial_entry, which GCC's partial inlining inlines into itself, suspended
 *
 * PROG_CLI_NOT_DUMPABLE=1 makes the process not dumpable (prctl) before it parks: tracing it
 * then needs CAP_SYS_PTRACE, even for its own user.
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/debug-abi.h>
#include <coroscope/inspect.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

extern struct coro_debug_abi coroscope_debug_abi;

static volatile int sink;

static __attribute__((noinline)) void park_c(int x)
{
    sink += x;
    coro_yield(); /* LINE-park_c */
    sink -= x;
}

static __attribute__((noinline)) void park_b(int x)
{
    park_c(x + 1); /* LINE-park_b */
    sink++;
}

static __attribute__((noinline)) void park_a(int x)
{
    park_b(x + 1); /* LINE-park_a */
    sink++;
}

static void park_entry(void *opaque)
{
    park_a((int)(intptr_t)opaque); /* LINE-park_entry */
    sink++;
}

static void fresh_entry(void *opaque)
{
    sink += (int)(intptr_t)opaque;
}

static void inner_entry(void *opaque)
{
    coro_yield(); /* LINE-inner */
    sink++;
}

static void outer_entry(void *opaque)
{
    Coroutine *inner = opaque;
    coro_enter(inner); /* LINE-outer-enter */
    coro_yield(); /* LINE-outer-yield */
    sink++;
}

/* A program's own function that happens to start with coro_: it is the user's code, and ps
 * shows it as where the coroutine is. */
static __attribute__((noinline)) void coro_read(int fd)
{
    sink += fd;
    coro_yield(); /* LINE-coro_read */
    sink++;
}

static void reader_entry(void *opaque)
{
    coro_read(3); /* LINE-reader */
    sink++;
}

/* GCC's partial inlining splits this into partial_entry and partial_entry.part.0, then inlines
 * the part back: the DWARF has partial_entry inlined into itself (one frame for readers). */
static volatile int partial_forever;
static void partial_entry(void *opaque)
{
    sink++;
    if (partial_forever) {
        for (;;) {
            coro_yield();
        }
    }
    coro_yield(); /* LINE-partial */
    sink++;
}

/* The bulk chain: 8 user frames below coro_yield. */
#define BULK(n, next)                                                                        \
    static __attribute__((noinline)) void bulk##n(int x)                                    \
    {                                                                                        \
        next(x + 1);                                                                         \
        sink++;                                                                              \
    }
static __attribute__((noinline)) void bulk_leaf(int x)
{
    sink += x;
    coro_yield();
    sink++;
}
BULK(7, bulk_leaf)
BULK(6, bulk7)
BULK(5, bulk6)
BULK(4, bulk5)
BULK(3, bulk4)
BULK(2, bulk3)
BULK(1, bulk2)
static void bulk_entry(void *opaque)
{
    bulk1((int)(intptr_t)opaque);
    sink++;
}

/* The same depth on plain threads, for comparing with eu-stack on one core. */
static __attribute__((noinline)) void thread_leaf(int x)
{
    sink += x;
    for (;;) {
        pause();
    }
}
BULK(t7, thread_leaf)
BULK(t6, bulkt7)
BULK(t5, bulkt6)
BULK(t4, bulkt5)
BULK(t3, bulkt4)
BULK(t2, bulkt3)
BULK(t1, bulkt2)
static _Atomic int threads_parked;
static void *parked_thread(void *arg)
{
    threads_parked++;
    bulkt1(0);
    return NULL;
}

static void quick_entry(void *opaque)
{
    sink++;
}

static void *churn_worker(void *arg)
{
    Coroutine *co = coro_create(quick_entry, NULL);
    if (co) {
        coro_enter(co);
    }
    return NULL;
}

static _Atomic long churned;
static void *churner(void *arg)
{
    for (;;) {
        pthread_t w;
        if (pthread_create(&w, NULL, churn_worker, NULL) == 0) {
            pthread_join(w, NULL);
            churned++;
        }
    }
    return NULL;
}

static __attribute__((noinline)) void sleep_deep(void)
{
    for (;;) {
        struct timespec ts = { 3600, 0 };
        nanosleep(&ts, NULL); /* LINE-sleep */
    }
}

static void sleeper_entry(void *opaque)
{
    sleep_deep(); /* LINE-sleeper */
    sink++;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int sleeper_started;

static void waiter_entry(void *opaque)
{
    pthread_mutex_lock(&lock);
    sleeper_started = (int)gettid();
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    coro_enter(opaque); /* LINE-waiter */
    sink++;             /* not a tail call: waiter_entry stays on the stack */
}

static void *sleeper_thread(void *arg)
{
    CoroutineOptions o = { .name = "sleeper" };
    Coroutine *co = coro_create_opts(sleeper_entry, NULL, &o);
    CoroutineOptions w = { .name = "waiter" };
    coro_enter(coro_create_opts(waiter_entry, co, &w));
    return NULL;
}

static Coroutine *named(CoroutineEntry *fn, void *opaque, const char *name)
{
    CoroutineOptions o = { .name = name };
    Coroutine *co = coro_create_opts(fn, opaque, &o);
    if (!co) {
        perror("coro_create_opts");
        exit(3);
    }
    return co;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "wait";
    long nbulk = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    long nthreads = argc > 3 ? strtol(argv[3], NULL, 10) : 0;

    coro_enter(named(park_entry, (void *)1, "parker-1"));
    coro_enter(named(park_entry, (void *)2, "parker-2"));
    named(fresh_entry, (void *)3, "fresh");
    Coroutine *inner = named(inner_entry, NULL, "inner");
    coro_enter(named(outer_entry, inner, "outer"));
    coro_enter(coro_create(park_entry, (void *)4));
    coro_enter(named(reader_entry, NULL, "reader"));
    coro_enter(named(partial_entry, NULL, "partial"));
    if (getenv("PROG_CLI_NOT_DUMPABLE")) {
        prctl(PR_SET_DUMPABLE, 0);
    }
    for (long i = 0; i < nbulk; i++) {
        char name[32];
        snprintf(name, sizeof(name), "bulk-%ld", i);
        CoroutineOptions o = { .name = name, .stack_size = 16 * 1024 };
        Coroutine *co = coro_create_opts(bulk_entry, (void *)(intptr_t)i, &o);
        if (!co) {
            perror("coro_create_opts");
            return 3;
        }
        coro_enter(co);
    }

    for (long i = 0; i < nthreads; i++) {
        pthread_t pt;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        if (pthread_create(&pt, &attr, parked_thread, NULL) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 3;
        }
        pthread_attr_destroy(&attr);
    }
    while (threads_parked < nthreads) {
        usleep(1000);
    }

    pthread_t th;
    pthread_create(&th, NULL, sleeper_thread, NULL);
    pthread_mutex_lock(&lock);
    while (!sleeper_started) {
        pthread_cond_wait(&cond, &lock);
    }
    pthread_mutex_unlock(&lock);
    /* Wait until the sleeper's thread sits in clock_nanosleep (syscall 230), so that
     * readers see it there and nowhere else, however loaded the machine is. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", sleeper_started);
    for (int i = 0; i < 5000; i++) {
        char buf[32] = "";
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(buf, sizeof(buf), f)) {
                buf[0] = '\0';
            }
            fclose(f);
        }
        if (strncmp(buf, "230 ", 4) == 0) {
            break;
        }
        usleep(1000);
    }

    if (strcmp(mode, "corrupt-cycle") == 0) {
        /* The first record's next points back at itself: a reader must see the cycle. */
        uint64_t first = coroscope_debug_abi.records;
        *(uint64_t *)(uintptr_t)(first + coroscope_debug_abi.off_next) = first;
        abort();
    }
    if (strcmp(mode, "corrupt-magic") == 0) {
        memcpy(coroscope_debug_abi.magic, "garbage", 8);
        abort();
    }
    if (strcmp(mode, "corrupt-stack") == 0) {
        /* parker-1's saved rsp and rip now point nowhere: only parker-1 cannot be shown. */
        uint64_t r = coroscope_debug_abi.records;
        for (uint64_t i = 0; r && i < coroscope_debug_abi.nrecords; i++) {
            const char *nm = (const char *)(uintptr_t)(r + coroscope_debug_abi.off_name);
            if (strcmp(nm, "parker-1") == 0) {
                char *regs = (char *)(uintptr_t)(r + coroscope_debug_abi.off_regs);
                *(uint64_t *)(regs + coroscope_debug_abi.regs.rsp) = 0x10;
                *(uint64_t *)(regs + coroscope_debug_abi.regs.rip) = 0x20;
                break;
            }
            r = *(uint64_t *)(uintptr_t)(r + coroscope_debug_abi.off_next);
        }
        abort();
    }
    if (strcmp(mode, "churn") == 0) {
        pthread_t ch;
        pthread_create(&ch, NULL, churner, NULL);
        while (churned < 10) {
            usleep(1000);
        }
    }
    if (strstr(mode, "abort")) {
        abort();
    }
    if (getenv("PROG_CLI_SELF_DUMP")) {
        /* An in-process dump first: it leaves libelf's mappings of our own ELF files behind,
         * which outside readers must not mistake for the loaded modules. */
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        coro_dump(null, CORO_DUMP_TEXT);
        close(null);
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    for (;;) {
        pause();
    }
}
