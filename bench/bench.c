/*
 * coroscope benchmark driver: times an enter+yield round trip and a pooled
 * create+enter+terminate lifecycle for coroscope and three baselines, in one process.
 *
 * Built twice (bench/bench.mk). `bench` is a C program: coroscope as a C program uses it,
 * the baselines beside it, Boost.Context loaded from bench-boost.so with RTLD_LOCAL so that
 * its C++ runtime does not become the program's (coroscope would then also swap the C++
 * exception state on every switch). `bench-cxx` (-DBENCH_CXX) is a C++ program, linked with
 * libstdc++ and Boost: coroscope as a C++ program uses it, against Boost in the same process.
 *
 * Method: every sample times a batch of --iterations operations with CLOCK_MONOTONIC. A round
 * takes one sample of every (benchmark, implementation) pair, rotating the order of the
 * implementations from round to round, so that slow drifts of the machine (frequency, other
 * tenants, the other helpers' builds) fall on all of them alike. After a warm-up round the
 * medians, minima and 10th-90th percentiles of --samples rounds are printed as a markdown
 * table, with each implementation's ratio to Boost taken round by round (median and spread).
 * Nothing is pinned.
 *
 * Usage: bench [--samples N] [--iterations N] [--command TEXT]
 * Exit codes: 0 table printed, 64 usage error, 1 an implementation failed to set up.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_IMPL 4
static const struct bench_impl *impls[MAX_IMPL];
static size_t NIMPL;
#define BOOST 1 /* index of the reference in impls */

#ifdef BENCH_CXX
#define PROGRAM_KIND "C++"
static int load_impls(void)
{
    impls[NIMPL++] = &bench_coroscope;
    impls[NIMPL++] = &bench_boost;
    return 0;
}
#else
#define PROGRAM_KIND "C"
/* Boost.Context, from bench-boost.so beside this executable, kept out of the global scope. */
static const struct bench_impl *load_boost(void)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);
    if (n <= 0) {
        fprintf(stderr, "bench: /proc/self/exe: cannot read the executable's path\n");
        return NULL;
    }
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "bench-boost.so");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    const struct bench_impl *im = h ? dlsym(h, "bench_boost") : NULL;
    if (!im) {
        fprintf(stderr, "bench: %s: cannot load the Boost.Context baseline: %s\n", path,
                dlerror());
    }
    return im;
}

static int load_impls(void)
{
    impls[NIMPL++] = &bench_coroscope;
    impls[NIMPL] = load_boost();
    if (!impls[NIMPL++]) {
        return -1;
    }
    impls[NIMPL++] = &bench_bare;
    impls[NIMPL++] = &bench_sjlj;
    return 0;
}
#endif

enum { ROUND_TRIP, LIFECYCLE, NBENCH };
static const char *const bench_names[NBENCH] = {
    "enter+yield round trip", "pooled create+enter+terminate",
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double sample(const struct bench_impl *im, int bench, long iters)
{
    void (*fn)(long) = bench == ROUND_TRIP ? im->round_trip : im->lifecycle;
    double t0 = now_ns();
    fn(iters);
    double t1 = now_ns();
    return (t1 - t0) / (double)iters;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The p-th percentile (0..100) of n sorted values, nearest rank. */
static double percentile(const double *sorted, int n, int p)
{
    int k = (p * (n - 1) + 50) / 100;
    return sorted[k];
}

/* The 1-minute load average, to tell a quiet run from a busy one when reading the table. */
static double loadavg(void)
{
    double v = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &v) != 1) {
            v = -1;
        }
        fclose(f);
    }
    return v;
}

static long parse_count(const char *arg, const char *opt)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (*arg == '\0' || *end != '\0' || v < 1 || v > 1000000000L) {
        fprintf(stderr, "bench: %s: invalid count '%s' (expected 1..1000000000)\n", opt, arg);
        exit(64);
    }
    return v;
}

int main(int argc, char **argv)
{
    int samples = 31;
    long iters = 1000000;
    const char *command = "bench";
    static const struct option longopts[] = {
        { "samples", required_argument, NULL, 's' },
        { "iterations", required_argument, NULL, 'n' },
        { "command", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "s:n:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            samples = (int)parse_count(optarg, "--samples");
            if (samples > 10001) {
                fprintf(stderr, "bench: --samples: at most 10001\n");
                return 64;
            }
            break;
        case 'n':
            iters = parse_count(optarg, "--iterations");
            break;
        case 'c':
            command = optarg;
            break;
        case 'h':
            printf("usage: %s [--samples N] [--iterations N] [--command TEXT]\n", argv[0]);
            return 0;
        default:
            fprintf(stderr, "usage: %s [--samples N] [--iterations N] [--command TEXT]\n",
                    argv[0]);
            return 64;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "bench: unexpected argument '%s'\n", argv[optind]);
        return 64;
    }

    /* The C++ runtime is in the global scope exactly when this is the C++ program: that is
     * what coroscope looks at to decide whether to swap the C++ exception state. */
    bool cxx_runtime = dlsym(RTLD_DEFAULT, "__cxa_get_globals") != NULL;
    if (cxx_runtime != (strcmp(PROGRAM_KIND, "C++") == 0)) {
        fprintf(stderr, "bench: this %s program %s a C++ runtime in its global scope; its "
                "coroscope rows would not measure what they say\n", PROGRAM_KIND,
                cxx_runtime ? "has" : "lacks");
        return 1;
    }
    if (load_impls() != 0) {
        return 1;
    }
    for (size_t i = 0; i < NIMPL; i++) {
        if (impls[i]->setup() != 0) {
            fprintf(stderr, "bench: %s: setup failed\n", impls[i]->name);
            return 1;
        }
    }

    double load_before = loadavg();
    double *res = calloc((size_t)NBENCH * NIMPL * (size_t)samples, sizeof(double));
    double *ratio = calloc((size_t)samples, sizeof(double));
    double *sorted = calloc((size_t)samples, sizeof(double));
    if (!res || !ratio || !sorted) {
        fprintf(stderr, "bench: out of memory\n");
        return 1;
    }
#define RES(b, i, s) res[((size_t)(b) * NIMPL + (i)) * (size_t)samples + (size_t)(s)]
    /* Round -1 warms caches, predictors and pools and is thrown away. */
    for (int r = -1; r < samples; r++) {
        for (int b = 0; b < NBENCH; b++) {
            for (size_t k = 0; k < NIMPL; k++) {
                size_t i = (k + (size_t)(r < 0 ? 0 : r)) % NIMPL;
                double v = sample(impls[i], b, iters);
                if (r >= 0) {
                    RES(b, i, r) = v;
                }
            }
        }
    }
    for (size_t i = 0; i < NIMPL; i++) {
        impls[i]->teardown();
    }

    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&t));
#ifndef BENCH_CXX
    printf("Measured %s with `%s`, compiler %s%s.\n", date, command,
#ifdef __clang__
           "clang ",
#else
           "gcc ",
#endif
           __VERSION__);
    bench_print_cpu(stdout);
    printf("%d interleaved rounds of %ld operations per sample; CLOCK_MONOTONIC; "
           "nothing pinned; the coroscope registry is on; a C program; load average %.2f "
           "before, %.2f after.\n\n", samples, iters, load_before, loadavg());
#else
    (void)command; /* the C program's header names it */
    printf("\nThe same in a C++ program (`bench-cxx`, linked with libstdc++: coroscope also "
           "keeps each coroutine's C++ exception state), run after it; %d rounds of %ld "
           "operations; load average %.2f before, %.2f after.\n\n", samples, iters,
           load_before, loadavg());
#endif
    printf("| what | ns median | min | p10–p90 | ratio to Boost | ratio p10–p90 |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    for (int b = 0; b < NBENCH; b++) {
        for (size_t i = 0; i < NIMPL; i++) {
            /* Ratios sample by sample within a round. */
            for (int r = 0; r < samples; r++) {
                ratio[r] = RES(b, i, r) / RES(b, BOOST, r);
            }
            memcpy(sorted, &RES(b, i, 0), (size_t)samples * sizeof(double));
            double *v = sorted;
            double med = median(v, samples); /* sorts v */
            double rmed = median(ratio, samples); /* sorts ratio */
            char spread[64] = "—";
            if (i != BOOST) {
                snprintf(spread, sizeof(spread), "%.2f–%.2f", percentile(ratio, samples, 10),
                         percentile(ratio, samples, 90));
            }
            printf("| %s: %s%s | %.1f | %.1f | %.1f–%.1f | %.2f× | %s |\n", bench_names[b],
                   impls[i]->name, i == 0 ? ", " PROGRAM_KIND " program" : "", med, v[0],
                   percentile(v, samples, 10), percentile(v, samples, 90), rmed, spread);
        }
    }
    free(sorted);
    free(ratio);
    free(res);
    return 0;
}
