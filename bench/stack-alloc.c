/*
 * The baselines' stacks (they have no allocator of their own), in a file of its own because
 * both benchmark programs and bench-boost.so link it.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

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
