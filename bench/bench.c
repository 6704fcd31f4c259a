/*
 * coroscope benchmark driver: times an enter+yield round trip and a pooled
 * create+enter+terminate lifecycle for coroscope and three baselines, in one process.
 *
 * Method: every sample times a batch of --iterations operations with CLOCK_MONOTONIC. A round
 * takes one sample of every (benchmark, implementation) pair, rotating the order of the
 * implementations from round to round, so that slow drifts of the machine (frequency, other
 * tenants, the other helpers' builds) fall on all of them alike. After a warm-up round the
 * medians and minima of --samples rounds are printed as a markdown table. Nothing is pinned.
 *
 * Usage: bench [--samples N] [--iterations N] [--command TEXT]
 * Exit codes: 0 table printed, 64 usage error, 1 an implementation failed to set up.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static const struct bench_impl *const impls[] = {
    &bench_coroscope, &bench_boost, &bench_bare, &bench_sjlj,
};
#define NIMPL (sizeof(impls) / sizeof(impls[0]))
#define BOOST 1 /* index of the reference in impls */

enum { ROUND_TRIP, LIFECYCLE, NBENCH };
static const char *const bench_names[NBENCH] = {
    "enter+yield round trip", "pooled create+enter+terminate",
};

void *bench_stack_alloc(unsigned long size)
{
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, size + (unsigned long)page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (map == MAP_FAILED) {
        return NULL;
    }
    if (mprotect(map, (size_t)page, PROT_NONE) != 0) {
        munmap(map, size + (unsigned long)page);
        return NULL;
    }
    return map + page;
}

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

static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) {
        return;
    }
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += 1 + strspn(v + 1, " \t");
                v[strcspn(v, "\n")] = '\0';
                snprintf(buf, size, "%s", v);
            }
            break;
        }
    }
    fclose(f);
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

    for (size_t i = 0; i < NIMPL; i++) {
        if (impls[i]->setup() != 0) {
            fprintf(stderr, "bench: %s: setup failed\n", impls[i]->name);
            return 1;
        }
    }

    double load_before = loadavg();
    double *res = calloc((size_t)NBENCH * NIMPL * (size_t)samples, sizeof(double));
    if (!res) {
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

    char cpu[256], date[64];
    cpu_model(cpu, sizeof(cpu));
    time_t t = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&t));
    printf("Measured %s on %s (%ld CPUs online), compiler %s%s, with `%s`.\n", date, cpu,
           sysconf(_SC_NPROCESSORS_ONLN),
#ifdef __clang__
           "clang ",
#else
           "gcc ",
#endif
           __VERSION__, command);
    printf("%d interleaved rounds of %ld operations per sample; CLOCK_MONOTONIC; "
           "nothing pinned; the coroscope registry is on; load average %.2f before, %.2f "
           "after.\n\n", samples, iters, load_before, loadavg());
    printf("| what | ns median | min | ratio to Boost |\n");
    printf("|---|---:|---:|---:|\n");
    double med[NBENCH][NIMPL];
    for (int b = 0; b < NBENCH; b++) {
        for (size_t i = 0; i < NIMPL; i++) {
            med[b][i] = median(&RES(b, i, 0), samples);
        }
        for (size_t i = 0; i < NIMPL; i++) {
            double mn = RES(b, i, 0); /* sorted by median() */
            printf("| %s: %s | %.1f | %.1f | %.2f× |\n", bench_names[b], impls[i]->name,
                   med[b][i], mn, med[b][i] / med[b][BOOST]);
        }
    }
    free(res);
    return 0;
}
