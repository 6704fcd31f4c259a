/*
 * A/B timing of several builds of libcoroscope.so in one process, for tuning the runtime.
 *
 * Each library given is loaded with dlopen(RTLD_LOCAL) (its own copy of every global and of the
 * thread-local shard), then the enter+yield round trip and the pooled lifecycle of each are
 * timed in interleaved rounds, as bench.c does, so that the machine's drifts fall on all of
 * them alike. Prints median, minimum and 10th percentile per library, in ns per operation.
 *
 *   cc -O2 bench/ab.c -o ab -ldl
 *   ./ab [--cxx] /path/a/libcoroscope.so.0 /path/b/libcoroscope.so.0 ...
 *
 * --cxx first loads libstdc++ into the global scope, as a C++ program has it: the runtimes
 * then keep each coroutine's C++ exception state, and the C++ switch path is what is timed.
 *
 * Copy each build to its own path first: dlopen returns the same handle for the same file.
 * Exit codes: 0 printed, 64 usage error, 1 a library failed to load.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIBS 16
#define ROUNDS 101
#define OPS 100000

typedef struct Coroutine Coroutine;

struct lib {
    const char *path;
    Coroutine *(*create)(void (*)(void *), void *);
    void (*enter)(Coroutine *);
    void (*yield)(void);
    Coroutine *rt;
    double res[2][ROUNDS];
};

static struct lib libs[MAX_LIBS];
static volatile int stop;

static void rt_entry(void *opaque)
{
    struct lib *l = opaque;
    while (!stop) {
        l->yield();
    }
}

static void empty_entry(void *opaque)
{
    (void)opaque;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--cxx") == 0) {
        first = 2;
        if (!dlopen("libstdc++.so.6", RTLD_NOW | RTLD_GLOBAL)) {
            fprintf(stderr, "ab: --cxx: cannot load libstdc++.so.6: %s\n", dlerror());
            return 1;
        }
    }
    int n = argc - first;
    if (n < 1 || n > MAX_LIBS) {
        fprintf(stderr, "usage: %s [--cxx] LIBCOROSCOPE.so... (1 to %d libraries)\n", argv[0],
                MAX_LIBS);
        return 64;
    }
    for (int i = 0; i < n; i++) {
        struct lib *l = &libs[i];
        l->path = argv[first + i];
        void *h = dlopen(l->path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "ab: %s: cannot load: %s\n", l->path, dlerror());
            return 1;
        }
        l->create = (Coroutine * (*)(void (*)(void *), void *)) dlsym(h, "coro_create");
        l->enter = (void (*)(Coroutine *))dlsym(h, "coro_enter");
        l->yield = (void (*)(void))dlsym(h, "coro_yield");
        if (!l->create || !l->enter || !l->yield) {
            fprintf(stderr, "ab: %s: not a coroscope runtime (no coro_create/enter/yield)\n",
                    l->path);
            return 1;
        }
        l->rt = l->create(rt_entry, l);
        l->enter(l->create(empty_entry, NULL)); /* warms the pool */
    }
    for (int r = -1; r < ROUNDS; r++) {
        for (int k = 0; k < n; k++) {
            struct lib *l = &libs[(k + (r < 0 ? 0 : r)) % n];
            double t0 = now_ns();
            for (int i = 0; i < OPS; i++) {
                l->enter(l->rt);
            }
            double t1 = now_ns();
            for (int i = 0; i < OPS; i++) {
                l->enter(l->create(empty_entry, NULL));
            }
            double t2 = now_ns();
            if (r >= 0) {
                l->res[0][r] = (t1 - t0) / OPS;
                l->res[1][r] = (t2 - t1) / OPS;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        struct lib *l = &libs[i];
        for (int b = 0; b < 2; b++) {
            qsort(l->res[b], ROUNDS, sizeof(double), cmp_double);
        }
        printf("%s: round trip median %.1f min %.1f p10 %.1f | lifecycle median %.1f min %.1f "
               "p10 %.1f\n", l->path, l->res[0][ROUNDS / 2], l->res[0][0], l->res[0][ROUNDS / 10],
               l->res[1][ROUNDS / 2], l->res[1][0], l->res[1][ROUNDS / 10]);
    }
    stop = 1;
    for (int i = 0; i < n; i++) {
        libs[i].enter(libs[i].rt);
    }
    return 0;
}
