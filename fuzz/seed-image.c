/*
 * seed-image CORE OUT: writes a memory image (fuzz-int.h) of the bytes that reading CORE's
 * coroutine registry the way fuzz-registry.c does (the collect driver, records only) reads:
 * the descriptor, the records, the shards, the mutexes waited on. scripts/fuzz-seeds.sh makes
 * the seeds of fuzz/corpus/registry with it from cores of the test programs.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "elf-target-int.h"
#include "fuzz-int.h"
#include "inspect-int.h"

#define MAX_READS 65536

typedef struct Range {
    uint64_t lo, hi;
} Range;

static Range reads[MAX_READS];
static size_t nreads;
static int (*core_read)(CoroTarget *t, uint64_t addr, void *buf, size_t len);

static int recording_read(CoroTarget *t, uint64_t addr, void *buf, size_t len)
{
    int rc = core_read(t, addr, buf, len);
    if (rc == 0 && len && nreads < MAX_READS) {
        reads[nreads++] = (Range){ addr, addr + len };
    }
    return rc;
}

static int by_lo(const void *a, const void *b)
{
    const Range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void put(FILE *f, const void *p, size_t n)
{
    if (fwrite(p, 1, n, f) != n) {
        perror("seed-image: write");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: seed-image CORE OUT\n");
        return 64;
    }
    char err[512];
    CoroTarget *t;
    if (coro__target_core_open(argv[1], NULL, &t, err, sizeof(err)) < 0) {
        fprintf(stderr, "seed-image: %s\n", err);
        return 1;
    }
    uint64_t abi;
    const char *module;
    if (coro__target_find_registry(t, &abi, &module, err, sizeof(err)) < 0) {
        fprintf(stderr, "seed-image: %s\n", err);
        return 1;
    }
    /* Record through a copy of the ops table with the read swapped. */
    static CoroTargetOps ops;
    ops = *t->ops;
    core_read = ops.read;
    ops.read = recording_read;
    const CoroTargetOps *saved = t->ops;
    t->ops = &ops;
    CoroCollectOptions opts = { .records_only = true };
    CoroCollection c;
    /* A damaged registry is a seed too: what was read before the reader gave up. */
    if (coro__collect(t, abi, &opts, &c) < 0) {
        printf("seed-image: %s: %s\n", argv[1], t->error);
    } else {
        coro__collection_free(&c);
    }
    /* Merge overlapping and adjacent reads into chunks. */
    qsort(reads, nreads, sizeof(*reads), by_lo);
    size_t n = 0;
    for (size_t i = 0; i < nreads; i++) {
        if (n && reads[i].lo <= reads[n - 1].hi) {
            if (reads[i].hi > reads[n - 1].hi) {
                reads[n - 1].hi = reads[i].hi;
            }
        } else {
            reads[n++] = reads[i];
        }
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    put(f, &abi, 8);
    unsigned char *buf = NULL;
    for (size_t i = 0; i < n && i < FUZZ_IMAGE_MAX_CHUNKS; i++) {
        uint32_t len = (uint32_t)(reads[i].hi - reads[i].lo);
        buf = realloc(buf, len);
        if (!buf || core_read(t, reads[i].lo, buf, len) < 0) {
            fprintf(stderr, "seed-image: cannot read back 0x%llx\n",
                    (unsigned long long)reads[i].lo);
            return 1;
        }
        put(f, &reads[i].lo, 8);
        put(f, &len, 4);
        put(f, buf, len);
    }
    free(buf);
    t->ops = saved;
    t->ops->close(t);
    if (fclose(f) != 0) {
        perror(argv[2]);
        return 1;
    }
    printf("seed-image: %s: %zu chunks\n", argv[2], n);
    return 0;
}
