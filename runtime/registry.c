/*
 * The registry: every coroutine record and every thread shard the process ever allocated,
 * on two push-only lists published through the debug ABI descriptor.
 *
 * Nothing is ever unlinked, so a reader (another process, a core file, a signal handler) can
 * walk the lists without locks while writers keep going; a record that is pooled keeps its
 * place with state CORO_STATE_FREE. The lists grow only when a record or shard is allocated,
 * which the pools make rare: the create and switch paths never touch them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <coroscope/sync.h>

#include "coro-int.h"

#define OFF(field) ((uint32_t)offsetof(Coroutine, field))
#define ROFF(reg) ((uint32_t)offsetof(CoroRegs, reg))
#define SOFF(field) ((uint32_t)offsetof(CoroShard, field))

CORO_EXPORT __attribute__((section(CORO_DEBUG_ABI_SECTION), used, aligned(64)))
struct coro_debug_abi coroscope_debug_abi = {
    .magic = CORO_DEBUG_ABI_MAGIC,
    .version = CORO_DEBUG_ABI_VERSION,
    .size = sizeof(struct coro_debug_abi),
    .ptr_size = sizeof(void *),
    .arch = 62,
    /* Address constants: relocated at load time, so a reader of the live process or of a
     * core sees the runtime addresses. */
    .trampoline_start = (uint64_t)(uintptr_t)coro__trampoline,
    .trampoline_end = (uint64_t)(uintptr_t)coro__trampoline_end,
    .switch_start = (uint64_t)(uintptr_t)coro__switch,
    .switch_end = (uint64_t)(uintptr_t)coro__switch_end,
    .record_size = sizeof(Coroutine),
    .off_next = OFF(next),
    .off_id = OFF(id),
    .off_state = OFF(state),
    .off_seq = OFF(regs) + ROFF(seq),
    .off_name = OFF(name),
    .name_size = CORO_NAME_SIZE,
    .off_regs = OFF(regs),
    .regs = { ROFF(rsp), ROFF(rip), ROFF(rbp), ROFF(rbx), ROFF(r12), ROFF(r13), ROFF(r14),
              ROFF(r15), ROFF(mxcsr), ROFF(fpucw) },
    .off_stack_base = OFF(stack_base),
    .off_stack_size = OFF(stack_size),
    .guard_size = 0, /* set at first stack allocation: one page */
    .off_entry = OFF(entry),
    .off_opaque = OFF(opaque),
    .off_create_site = OFF(create_site),
    .off_tid = OFF(tid),
    .off_caller = OFF(caller),
    .off_switch_count = OFF(switch_count),
    .off_generation = OFF(generation),
    .off_wait_reason = CORO_DEBUG_ABSENT,
    .off_wait_object = OFF(wait_object),
    .off_wait_since = OFF(wait_since),
    .off_stack_used_max = CORO_DEBUG_ABSENT,
    .shard_size = sizeof(CoroShard),
    .shard_off_next = SOFF(next),
    .shard_off_tid = SOFF(tid),
    .shard_off_current = SOFF(current),
    .shard_off_created = SOFF(created),
    .shard_off_terminated = SOFF(terminated),
    .off_wait_kind = OFF(wait_kind),
    .off_wait_fd = OFF(wait_fd),
    .off_wait_events = OFF(wait_events),
    .off_wait_deadline = OFF(wait_deadline),
    .mutex_off_holder_id = (uint32_t)offsetof(CoMutex, holder_id),
    .rwlock_off_writer_id = (uint32_t)offsetof(CoRwlock, writer_id),
    .off_created_ns = OFF(created_ns),
};

/* Slow paths only: new records and shards, the free-record list. */
static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static Coroutine *free_records;
static _Atomic uint64_t id_blocks;

#define RECORDS_PER_SLAB 64

void coro__registry_lock(void)
{
    pthread_mutex_lock(&registry_mutex);
}

void coro__registry_unlock(void)
{
    pthread_mutex_unlock(&registry_mutex);
}

/*
 * Publishes [first..last] (already linked through next) at the head of the records list.
 * Counted first, then linked: nrecords is at every instant an upper bound of the records a
 * reader can reach (docs/debug-abi.md), so a core or a `ps` taken mid-create never sees more
 * records than counted and calls the registry corrupt.
 */
static void publish_records(Coroutine *first, Coroutine *last, uint64_t n)
{
    __atomic_fetch_add(&coroscope_debug_abi.nrecords, n, __ATOMIC_SEQ_CST);
    uint64_t head = __atomic_load_n(&coroscope_debug_abi.records, __ATOMIC_ACQUIRE);
    do {
        atomic_store_explicit(&last->next, (Coroutine *)(uintptr_t)head, memory_order_relaxed);
    } while (!__atomic_compare_exchange_n(&coroscope_debug_abi.records, &head,
                                          (uint64_t)(uintptr_t)first, true, __ATOMIC_RELEASE,
                                          __ATOMIC_ACQUIRE));
}

Coroutine *coro__record_alloc(void)
{
    coro__registry_lock();
    Coroutine *co = free_records;
    if (co) {
        free_records = co->pool_next;
        coro__registry_unlock();
        co->pool_next = NULL;
        return co;
    }
    /* Records are never freed (readers may hold their addresses), so take them in slabs. */
    Coroutine *slab = calloc(RECORDS_PER_SLAB, sizeof(Coroutine));
    if (!slab) {
        coro__registry_unlock();
        return NULL;
    }
    for (int i = 0; i < RECORDS_PER_SLAB - 1; i++) {
        atomic_store_explicit(&slab[i].next, &slab[i + 1], memory_order_relaxed);
    }
    for (int i = 1; i < RECORDS_PER_SLAB - 1; i++) {
        slab[i].pool_next = &slab[i + 1];
    }
    free_records = &slab[1];
    publish_records(&slab[0], &slab[RECORDS_PER_SLAB - 1], RECORDS_PER_SLAB);
    coro__registry_unlock();
    return &slab[0];
}

void coro__record_free(Coroutine *co)
{
    coro__registry_lock();
    co->pool_next = free_records;
    free_records = co;
    coro__registry_unlock();
}

uint64_t coro__id_block(void)
{
    return 1 + atomic_fetch_add_explicit(&id_blocks, 1, memory_order_relaxed) * CORO_ID_BLOCK;
}

CoroShard *coro__shard_attach(void)
{
    int32_t tid = (int32_t)gettid();
    /* Reuse the shard of an exited thread first, so that thread churn does not grow memory. */
    CoroShard *sh = (CoroShard *)(uintptr_t)__atomic_load_n(&coroscope_debug_abi.shards,
                                                            __ATOMIC_ACQUIRE);
    for (; sh; sh = atomic_load_explicit(&sh->next, memory_order_acquire)) {
        uint32_t idle = 0;
        if (atomic_compare_exchange_strong(&sh->in_use, &idle, 1)) {
            atomic_store_explicit(&sh->tid, tid, memory_order_release);
            return sh;
        }
    }
    sh = calloc(1, sizeof(*sh));
    if (!sh) {
        coro__die("cannot allocate the per-thread coroutine state of thread %d: out of memory",
                  (int)tid);
    }
    atomic_store_explicit(&sh->in_use, 1, memory_order_relaxed);
    atomic_store_explicit(&sh->tid, tid, memory_order_relaxed);
    /* Counted before it is linked, as the records are (publish_records). */
    __atomic_fetch_add(&coroscope_debug_abi.nshards, 1, __ATOMIC_SEQ_CST);
    uint64_t head = __atomic_load_n(&coroscope_debug_abi.shards, __ATOMIC_ACQUIRE);
    do {
        atomic_store_explicit(&sh->next, (CoroShard *)(uintptr_t)head, memory_order_relaxed);
    } while (!__atomic_compare_exchange_n(&coroscope_debug_abi.shards, &head,
                                          (uint64_t)(uintptr_t)sh, true, __ATOMIC_RELEASE,
                                          __ATOMIC_ACQUIRE));
    return sh;
}

void coro__shard_detach(CoroShard *sh)
{
    __atomic_store_n(&sh->current, NULL, __ATOMIC_RELAXED);
    atomic_store_explicit(&sh->tid, 0, memory_order_release);
    atomic_store_explicit(&sh->in_use, 0, memory_order_release);
}

/*
 * After fork() only the forking thread exists. Its shard, and the coroutines running on it,
 * get the child's tid; every other shard is released (its thread is gone, and its cached
 * coroutines with it: those records stay FREE and are not reused, their stacks are still
 * mapped and harmless).
 */
void coro__registry_child_reset(CoroShard *survivor)
{
    /* Locked by this thread in atfork_prepare (coro.c), as the pool is. */
    pthread_mutex_unlock(&registry_mutex);
    CoroShard *sh = (CoroShard *)(uintptr_t)coroscope_debug_abi.shards;
    for (; sh; sh = atomic_load_explicit(&sh->next, memory_order_relaxed)) {
        if (sh == survivor) {
            int32_t tid = (int32_t)gettid();
            atomic_store_explicit(&sh->tid, tid, memory_order_relaxed);
            /* fork() was called inside a coroutine: it, and the ones that entered it, now run
             * on the child's thread (a reader looks for their registers there). */
            for (Coroutine *c = sh->current; c; c = c->caller) {
                c->tid = tid;
            }
        } else if (atomic_load_explicit(&sh->in_use, memory_order_relaxed)) {
            sh->cache = NULL;
            sh->ncache = 0;
            coro__shard_detach(sh);
        }
    }
}
