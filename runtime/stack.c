/*
 * Coroutine stacks and the shared pool.
 *
 * Each stack is one anonymous mapping with a guard page at its low end. Where the kernel has
 * MADV_GUARD_INSTALL (Linux 6.13+) the guard is a page-table marker that does not split the
 * mapping, so neighbouring stacks merge into one VMA and vm.max_map_count no longer caps the
 * number of coroutines (shared/FIELD-NOTES.md: mprotect guards cost 2 VMAs each, ~32.7k
 * coroutines). Older kernels answer EINVAL and we fall back to mprotect(PROT_NONE).
 *
 * CORO_STACK_GUARD=mprotect in the environment forces the mprotect guards. gdb's `gcore`
 * copies a mapping in one read and writes zeros for the whole mapping when any page of it
 * cannot be read, which a MADV_GUARD_INSTALL guard inside a merged stack mapping is: programs
 * that will be inspected through gcore cores want separate guard mappings (kernel cores are
 * complete either way).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>

#include "coro-int.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* glibc 2.36 headers predate it */
#endif

/* Terminated default-size coroutines kept across threads (beyond each thread's cache). */
#define SHARED_POOL_MAX 1024u

static size_t page_size;
static _Atomic int guard_madvise = 1; /* cleared once the kernel says EINVAL */
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void guard_choose(void)
{
    const char *v = secure_getenv("CORO_STACK_GUARD");
    if (v && strcmp(v, "mprotect") == 0) {
        atomic_store_explicit(&guard_madvise, 0, memory_order_relaxed);
    } else if (v && v[0] && strcmp(v, "madvise") != 0) {
        /* One line naming the variable and what it accepts; the default stays. */
        char line[320];
        int n = snprintf(line, sizeof(line), "coroscope: CORO_STACK_GUARD=%.200s: not one of "
                         "madvise, mprotect; using madvise (the default)\n", v);
        if (n > 0 && write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n
                                                                          : sizeof(line))) {
        }
    }
}

static pthread_mutex_t pool_mutex = PTHREAD_MUTEX_INITIALIZER;
static Coroutine *shared_pool;
static unsigned shared_pool_n;

size_t coro__page_size(void)
{
    if (unlikely(!page_size)) {
        page_size = (size_t)sysconf(_SC_PAGESIZE);
        coroscope_debug_abi.guard_size = (uint32_t)page_size;
    }
    return page_size;
}

static int install_guard(char *guard, size_t len)
{
    pthread_once(&guard_once, guard_choose);
    if (atomic_load_explicit(&guard_madvise, memory_order_relaxed)) {
        if (madvise(guard, len, MADV_GUARD_INSTALL) == 0) {
            return 0;
        }
        if (errno != EINVAL) {
            return -errno;
        }
        atomic_store_explicit(&guard_madvise, 0, memory_order_relaxed);
    }
    return mprotect(guard, len, PROT_NONE) == 0 ? 0 : -errno;
}

int coro__stack_alloc(Coroutine *co, size_t size)
{
    size_t page = coro__page_size();
    size = (size + page - 1) & ~(page - 1);
    char *map = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED) {
        return -errno;
    }
    int err = install_guard(map, page);
    if (err < 0) {
        munmap(map, size + page);
        return err;
    }
    co->stack_base = map + page;
    co->stack_size = size;
    co->valgrind_stack_id = VALGRIND_STACK_REGISTER(map + page, map + page + size);
    return 0;
}

void coro__stack_free(Coroutine *co)
{
    if (!co->stack_base) {
        return;
    }
    size_t page = coro__page_size();
    VALGRIND_STACK_DEREGISTER(co->valgrind_stack_id);
    munmap((char *)co->stack_base - page, co->stack_size + page);
    co->stack_base = NULL;
    co->stack_size = 0;
}

/* Takes up to max pooled coroutines, linked through pool_next; returns how many. */
unsigned coro__pool_get_shared(Coroutine **chain, unsigned max)
{
    unsigned n = 0;
    pthread_mutex_lock(&pool_mutex);
    Coroutine *head = shared_pool, *last = NULL;
    for (Coroutine *co = head; co && n < max; co = co->pool_next) {
        last = co;
        n++;
    }
    if (last) {
        shared_pool = last->pool_next;
        shared_pool_n -= n;
        last->pool_next = NULL;
    }
    pthread_mutex_unlock(&pool_mutex);
    *chain = n ? head : NULL;
    return n;
}

/* Gives the pool as many of the n coroutines of chain as it has room for; returns the rest. */
Coroutine *coro__pool_put_shared(Coroutine *chain, unsigned n)
{
    pthread_mutex_lock(&pool_mutex);
    while (chain && shared_pool_n < SHARED_POOL_MAX && n--) {
        Coroutine *co = chain;
        chain = co->pool_next;
        co->pool_next = shared_pool;
        shared_pool = co;
        shared_pool_n++;
    }
    pthread_mutex_unlock(&pool_mutex);
    return chain;
}

/* In a fork child: the forking thread, the child's only one, locked the pool in
 * atfork_prepare (coro.c) and unlocks it here. (Initialising it again while locked, as this
 * did, is undefined; TSan saw the child hold it for ever and reported lock-order cycles.) */
void coro__pool_child_reset(void)
{
    pthread_mutex_unlock(&pool_mutex);
}

void coro__pool_lock(void)
{
    pthread_mutex_lock(&pool_mutex);
}

void coro__pool_unlock(void)
{
    pthread_mutex_unlock(&pool_mutex);
}

void coro__stack_valgrind_reuse_below(uint64_t sp)
{
    if (!RUNNING_ON_VALGRIND) {
        return;
    }
    /* Valgrind saw this thread's stack below the outermost coro_enter() released when the
     * coroutine was entered (a stack switch, not frames it tracks), and would call every
     * write there invalid: give it back, from sp down to the stack's end. */
    pthread_attr_t attr;
    void *lo;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        if (pthread_attr_getstack(&attr, &lo, &size) == 0 && (uint64_t)(uintptr_t)lo < sp) {
            VALGRIND_MAKE_MEM_UNDEFINED(lo, sp - (uint64_t)(uintptr_t)lo);
        }
        pthread_attr_destroy(&attr);
    }
}
