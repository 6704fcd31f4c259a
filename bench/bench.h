/*
 * The benchmark driver's view of one implementation. Every implementation provides the same
 * two loops; the driver (bench.c) times them in interleaved rounds.
 */
#ifndef COROSCOPE_BENCH_H
#define COROSCOPE_BENCH_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Usable bytes of every baseline's pooled stack: the runtime's default stack size. */
#define BENCH_STACK_SIZE (256u * 1024u)

struct bench_impl {
    const char *name;
    /* Prepares the round-trip coroutine and the pooled stacks; 0 on success. */
    int (*setup)(void);
    /* n round trips: enter a suspended coroutine, which yields straight back. */
    void (*round_trip)(long n);
    /* n lifecycles: create (from a pool), enter, run an empty entry, terminate, release. */
    void (*lifecycle)(long n);
    /* Lets the round-trip coroutine finish and releases what setup took. */
    void (*teardown)(void);
};

extern const struct bench_impl bench_coroscope;
extern const struct bench_impl bench_boost;
extern const struct bench_impl bench_bare;
extern const struct bench_impl bench_sjlj;

/* The CPU's model name; and the lines the table starts with about the CPU (bench/cpuinfo.c). */
void bench_cpu_model(char *buf, size_t size);
void bench_print_cpu(FILE *out);

/* One mmap'd stack with a PROT_NONE guard page below it; returns its usable base (the lowest
 * usable address) or NULL. Used by the baselines, which have no stack allocator of their own. */
void *bench_stack_alloc(unsigned long size);

#ifdef __cplusplus
}
#endif

#endif /* COROSCOPE_BENCH_H */
