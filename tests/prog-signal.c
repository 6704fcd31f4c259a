/*
 * A program for the signal-dump end-to-end tests (tests/e2e-signal.sh). It is configured
 * only through the environment (CORO_DUMP_SIGNAL, ...), as a user's program would be, and
 * checks its own work so that the tests can tell whether the dumps disturbed it.
 *
 *   prog-signal stress          4 threads x 250 named coroutines ("w<T>-<K>") switching flat
 *                                out, each parked in stress_park() -> coro_yield(); 8 "nomad"
 *                                coroutines entered by whichever thread gets them first
 *                                (they migrate); every thread also creates and finishes a
 *                                short-lived coroutine each round. Prints "ready", runs until
 *                                a line on stdin, then checks every counter and prints one line
 *                                "ok rounds=... max_gap_ms=..." (or "BROKEN ..." and exits 1).
 *   prog-signal blocked          a coroutine "reader" blocked in read() on an empty pipe, a
 *                                coroutine "spinner" spinning with no call in its loop, on
 *                                two threads, and a thread without coroutines sleeping in
 *                                nanosleep(). Prints "ready"; on a line on stdin, writes to
 *                                the pipe and checks that the read returned the data
 *                                (SA_RESTART: no EINTR) and that the bystander never saw
 *                                EINTR (it was not interrupted), prints "ok ..." and exits.
 *   prog-signal masked           a thread that blocks every signal runs coroutine
 *                                "masked-runner" (spinning) and has "masked-parked"
 *                                suspended; on a line on stdin the runner unblocks signals
 *                                (the dump's pending hold signal arrives then and must not
 *                                hold it), finishes, and "ok" is printed.
 *   prog-signal crash            parks a few coroutines, then one of them dereferences NULL.
 *   prog-signal idle             parks coroutine "idle-1" and waits for a line on stdin.
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/inspect.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Global (not static) so that their names stay as they are in backtraces. */
void stress_park(void *slot);
void blocked_in_read(void);
void spin_without_calls(void);
void crash_here(void);
void parked_here(void);

#define NTHREADS 4
#define NCOROS 250
#define NNOMADS 8

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- stress ---- */

typedef struct Slot {
    uint64_t runs;              /* incremented by the coroutine each time it runs */
} Slot;

static atomic_int stop;

__attribute__((noinline)) void stress_park(void *opaque)
{
    Slot *slot = opaque;
    slot->runs++;
    coro_yield();
    __asm__ volatile("" ::: "memory");
}

static void stress_body(void *opaque)
{
    for (;;) {
        stress_park(opaque);
    }
}

static void short_lived(void *opaque)
{
    (*(uint64_t *)opaque)++;
}

typedef struct Worker {
    int index;
    uint64_t rounds, temps_done, nomad_runs;
    uint64_t max_gap_ns;
    Slot slots[NCOROS];
    Coroutine *coros[NCOROS];
    pthread_t thread;
} Worker;

static Worker workers[NTHREADS];
static pthread_mutex_t nomad_lock = PTHREAD_MUTEX_INITIALIZER;
static Coroutine *nomads[NNOMADS];
static Slot nomad_slots[NNOMADS];
static bool nomad_busy[NNOMADS];

static void *stress_thread(void *arg)
{
    Worker *w = arg;
    for (int k = 0; k < NCOROS; k++) {
        char name[32];
        snprintf(name, sizeof(name), "w%d-%d", w->index, k);
        CoroutineOptions o = { .name = name, .stack_size = 64 * 1024 };
        w->coros[k] = coro_create_opts(stress_body, &w->slots[k], &o);
        if (!w->coros[k]) {
            perror("coro_create_opts");
            exit(2);
        }
    }
    uint64_t last = now_ns();
    while (!atomic_load(&stop)) {
        for (int k = 0; k < NCOROS; k++) {
            coro_enter(w->coros[k]);
        }
        /* A short-lived coroutine: created, run to completion, gone. */
        uint64_t before = w->temps_done;
        CoroutineOptions o = { .name = "temp" };
        Coroutine *t = coro_create_opts(short_lived, &w->temps_done, &o);
        coro_enter(t);
        if (w->temps_done != before + 1) {
            fprintf(stderr, "BROKEN: short-lived coroutine did not run once\n");
            exit(1);
        }
        /* A nomad, if one is free: it migrates between the threads. */
        int n = (int)(w->rounds % NNOMADS);
        pthread_mutex_lock(&nomad_lock);
        bool mine = !nomad_busy[n];
        nomad_busy[n] = true;
        pthread_mutex_unlock(&nomad_lock);
        if (mine) {
            coro_enter(nomads[n]);
            w->nomad_runs++;
            pthread_mutex_lock(&nomad_lock);
            nomad_busy[n] = false;
            pthread_mutex_unlock(&nomad_lock);
        }
        w->rounds++;
        uint64_t t1 = now_ns();
        if (t1 - last > w->max_gap_ns) {
            w->max_gap_ns = t1 - last;
        }
        last = t1;
    }
    return NULL;
}

static int stress(void)
{
    for (int n = 0; n < NNOMADS; n++) {
        char name[32];
        snprintf(name, sizeof(name), "nomad-%d", n);
        CoroutineOptions o = { .name = name, .stack_size = 64 * 1024 };
        nomads[n] = coro_create_opts(stress_body, &nomad_slots[n], &o);
    }
    for (int i = 0; i < NTHREADS; i++) {
        workers[i].index = i;
        pthread_create(&workers[i].thread, NULL, stress_thread, &workers[i]);
    }
    /* Ready once all 1,008 long-lived coroutines exist. */
    while (coro_live_count() < NTHREADS * NCOROS + NNOMADS) {
        usleep(1000);
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    /* Runs until a line (or EOF) on stdin. This thread owns coroutines (the nomads), so
     * dumps interrupt it: with SA_RESTART, read() resumes, as docs/signal-dump.md says. */
    char line[64];
    if (!fgets(line, sizeof(line), stdin)) {
        /* EOF: stop as well */
    }
    atomic_store(&stop, 1);
    uint64_t rounds = 0, nomad_runs = 0, nomad_total = 0, max_gap = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(workers[i].thread, NULL);
        Worker *w = &workers[i];
        /* Every coroutine ran exactly once per round: its own counter says so. */
        for (int k = 0; k < NCOROS; k++) {
            if (w->slots[k].runs != w->rounds) {
                printf("BROKEN: w%d-%d ran %llu times in %llu rounds\n", i, k,
                       (unsigned long long)w->slots[k].runs, (unsigned long long)w->rounds);
                return 1;
            }
        }
        if (w->temps_done != w->rounds) {
            printf("BROKEN: thread %d finished %llu short-lived coroutines in %llu rounds\n", i,
                   (unsigned long long)w->temps_done, (unsigned long long)w->rounds);
            return 1;
        }
        rounds += w->rounds;
        nomad_runs += w->nomad_runs;
        max_gap = w->max_gap_ns > max_gap ? w->max_gap_ns : max_gap;
    }
    for (int n = 0; n < NNOMADS; n++) {
        nomad_total += nomad_slots[n].runs;
    }
    if (nomad_total != nomad_runs) {
        printf("BROKEN: nomads ran %llu times, threads entered them %llu times\n",
               (unsigned long long)nomad_total, (unsigned long long)nomad_runs);
        return 1;
    }
    printf("ok rounds=%llu switches=%llu nomad_runs=%llu max_gap_ms=%.3f\n",
           (unsigned long long)rounds, (unsigned long long)rounds * (NCOROS + 1) * 2,
           (unsigned long long)nomad_runs, max_gap / 1e6);
    return 0;
}

/* ---- blocked in a syscall, spinning ---- */

static int pipefd[2];
static char got[16];
static ssize_t got_len = -2;
static int got_errno;
static atomic_ulong spins;

__attribute__((noinline)) void blocked_in_read(void)
{
    got_len = read(pipefd[0], got, sizeof(got));
    got_errno = errno;
    __asm__ volatile("" ::: "memory");
}

static void reader_body(void *opaque)
{
    (void)opaque;
    blocked_in_read();
    spins++; /* not a tail call: the entry function keeps its frame */
}

__attribute__((noinline)) void spin_without_calls(void)
{
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&spins, 1, memory_order_relaxed);
    }
}

static void spinner_body(void *opaque)
{
    (void)opaque;
    spin_without_calls();
    spins++;
}

/* A thread that never uses coroutines: the dump must not interrupt it (nanosleep would
 * return EINTR, even with SA_RESTART). */
static atomic_int bystander_eintr;

static void *bystander(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        if (nanosleep(&ts, NULL) != 0 && errno == EINTR) {
            atomic_fetch_add(&bystander_eintr, 1);
        }
    }
    return NULL;
}

static void *run_named(void *arg)
{
    const char *name = arg;
    CoroutineOptions o = { .name = name };
    Coroutine *co = coro_create_opts(strcmp(name, "reader") == 0 ? reader_body : spinner_body,
                                     NULL, &o);
    coro_enter(co);
    return NULL;
}

static int blocked(void)
{
    if (pipe(pipefd) != 0) {
        perror("pipe");
        return 2;
    }
    pthread_t r, s, b;
    pthread_create(&r, NULL, run_named, "reader");
    pthread_create(&s, NULL, run_named, "spinner");
    pthread_create(&b, NULL, bystander, NULL);
    while (coro_live_count() < 2 || atomic_load(&spins) == 0) {
        usleep(1000);
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof(line), stdin)) {
        return 2;
    }
    unsigned long before = atomic_load(&spins);
    usleep(20000);
    if (atomic_load(&spins) == before) {
        printf("BROKEN: the spinner stopped spinning\n");
        return 1;
    }
    if (write(pipefd[1], "data", 4) != 4) {
        return 2;
    }
    pthread_join(r, NULL);
    atomic_store(&stop, 1);
    pthread_join(s, NULL);
    pthread_join(b, NULL);
    if (got_len != 4 || memcmp(got, "data", 4) != 0) {
        printf("BROKEN: read returned %zd (%s)\n", got_len, strerror(got_errno));
        return 1;
    }
    if (atomic_load(&bystander_eintr) != 0) {
        printf("BROKEN: a thread without coroutines was interrupted %d times\n",
               atomic_load(&bystander_eintr));
        return 1;
    }
    printf("ok read=%zd spins=%lu bystander_eintr=0\n", got_len, atomic_load(&spins));
    return 0;
}

/* ---- crash ---- */

/* Near NULL, not NULL: under UBSan a NULL store is caught before it faults. */
static int *volatile nowhere = (int *)(uintptr_t)16;
static volatile int resumed;

__attribute__((noinline)) void crash_here(void)
{
    *nowhere = 42;
}

static void crasher_body(void *opaque)
{
    (void)opaque;
    crash_here();
    resumed++;
}

__attribute__((noinline)) void parked_here(void)
{
    coro_yield();
    resumed++; /* keeps the call out of tail position: a real frame */
}

static void parked_body(void *opaque)
{
    (void)opaque;
    parked_here();
    resumed++;
}

static int crash(void)
{
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "parked-%d", i);
        CoroutineOptions o = { .name = name };
        coro_enter(coro_create_opts(parked_body, NULL, &o));
    }
    CoroutineOptions o = { .name = "crasher" };
    coro_enter(coro_create_opts(crasher_body, NULL, &o));
    return 3; /* not reached */
}

/* ---- a coroutine thread that blocks every signal ---- */

static atomic_int unmask;

static void masked_runner(void *opaque)
{
    (void)opaque;
    while (!atomic_load(&unmask)) {
        atomic_fetch_add_explicit(&spins, 1, memory_order_relaxed);
    }
    /* The hold signal of the dump is pending here: taking it now must not hold us. */
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    usleep(20000);
    resumed++;
}

static void *masked_thread(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    CoroutineOptions p = { .name = "masked-parked" };
    Coroutine *parked = coro_create_opts(parked_body, NULL, &p);
    coro_enter(parked);
    CoroutineOptions r = { .name = "masked-runner" };
    coro_enter(coro_create_opts(masked_runner, NULL, &r));
    coro_enter(parked);
    return NULL;
}

static int masked(void)
{
    pthread_t t;
    pthread_create(&t, NULL, masked_thread, NULL);
    while (coro_live_count() < 2 || atomic_load(&spins) == 0) {
        usleep(1000);
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof(line), stdin)) {
        return 2;
    }
    atomic_store(&unmask, 1);
    pthread_join(t, NULL);
    printf("ok spins=%lu\n", atomic_load(&spins));
    return 0;
}

static int idle(void)
{
    CoroutineOptions o = { .name = "idle-1" };
    coro_enter(coro_create_opts(parked_body, NULL, &o));
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[64];
    return fgets(line, sizeof(line), stdin) ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "stress") == 0) {
        return stress();
    }
    if (argc >= 2 && strcmp(argv[1], "blocked") == 0) {
        return blocked();
    }
    if (argc >= 2 && strcmp(argv[1], "crash") == 0) {
        return crash();
    }
    if (argc >= 2 && strcmp(argv[1], "masked") == 0) {
        return masked();
    }
    if (argc >= 2 && strcmp(argv[1], "idle") == 0) {
        return idle();
    }
    fprintf(stderr, "usage: prog-signal stress | blocked | masked | crash | idle\n");
    return 64;
}
