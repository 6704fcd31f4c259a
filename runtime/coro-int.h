/*
 * Internal layout of coroutine records and thread shards. Readers outside the runtime never
 * use these structs: they take every offset from the debug ABI descriptor (registry.c).
 */
#ifndef COROSCOPE_CORO_INT_H
#define COROSCOPE_CORO_INT_H

#include <coroscope/coro.h>
#include <coroscope/debug-abi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "backend-int.h"

#define CORO_EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

typedef struct CoroShard CoroShard;

/* The C++ runtime's per-thread exception state, as __cxa_get_globals() returns it: the
 * caught-exception stack and the uncaught count (Itanium C++ ABI 2.2.2; libstdc++ and
 * libc++abi both start their __cxa_eh_globals with these two fields). */
typedef struct CoroEhGlobals {
    void *caught;
    uint32_t uncaught;
} CoroEhGlobals;

/*
 * A coroutine record. Allocated once, linked into the registry for the life of the process
 * and reused through the pools; the hot fields of a switch share the first two cache lines.
 */
struct Coroutine {
    CoroRegs regs;              /* valid when suspended, created or nested */
    _Atomic uint32_t state;     /* CORO_STATE_* */
    int32_t tid;                /* kernel tid it last ran on */
    Coroutine *caller;          /* who entered it; NULL: a thread's own stack */
    uint64_t switch_count;
    uint64_t id;
    CoroutineEntry *entry;
    void *opaque;
    void *create_site;
    uint64_t generation;        /* coro_debug_abi.leak_generation at creation */
    uint64_t created_ns;        /* creating thread's loop clock (loop.c), 0 none ("never
                                   entered") */
    void *stack_base;           /* lowest usable byte; guard page below */
    size_t stack_size;
    char name[CORO_NAME_SIZE];
    /* The wait reason (loop.c, sync.c; published by the debug ABI): written by the
     * coroutine itself before it parks, cleared when it resumes. */
    const char *wait_reason;    /* unused (the ABI's older string field) */
    void *wait_object;
    uint64_t wait_since;
    Coroutine *_Atomic next;    /* registry list: push-only, never unlinked */
    Coroutine *pool_next;       /* free lists and pools */
    void *asan_fake_stack;      /* sanitizer bookkeeping (ASan builds only) */
    void *tsan_fiber;           /* TSan builds: this life's fiber, made when it is first
                                   entered, destroyed when it terminates (coro.c) */
    unsigned valgrind_stack_id;
    /* Waiting (wait-int.h). */
    uint32_t wait_kind;         /* CORO_WAIT_* */
    int32_t wait_fd;
    uint32_t wait_events;
    int32_t wait_result;        /* what woke it: revents, -ETIMEDOUT, 0 (coro_wake) */
    int64_t wait_deadline;      /* CLOCK_MONOTONIC ns, 0 none */
    struct CoroLoop *wait_loop; /* the loop it waits on / is scheduled on */
    Coroutine *wait_next;       /* link in a CoQueue / CoMutex / CoRwlock wait list */
    Coroutine *ready_next;      /* link in a loop's ready list (scheduled to run) */
    _Atomic uint32_t wake_state; /* 1 while scheduled on a loop (a second wake is ignored) */
    uint32_t wait_granted;      /* sync.c: the object was handed to it */
    uint32_t timer_slot;        /* 1 + index in its loop's timer heap, 0 none */
};

/* Per-thread state. Shards are linked for the life of the process and reused by later threads. */
struct CoroShard {
    Coroutine *current;         /* running on this thread; NULL on the thread's own stack */
    CoroEhGlobals *eh;          /* the thread's C++ exception state; NULL: no C++ runtime */
    _Atomic int32_t tid;        /* 0 when no thread owns the shard */
    _Atomic uint32_t in_use;
    _Atomic uint64_t created;
    _Atomic uint64_t terminated;
    uint64_t next_id, id_limit; /* this thread's block of ids */
    CoroRegs leader;            /* the thread's own stack while a coroutine runs */
    Coroutine *cache;           /* per-thread pool of default-size coroutines */
    unsigned ncache;
    Coroutine *zombie;          /* terminated, stack not yet unmapped (coro.c) */
    const void *leader_stack_bottom; /* ASan: the thread stack's bounds */
    size_t leader_stack_size;
    void *leader_tsan_fiber;    /* TSan: the thread's own fiber */
    void *tsan_dead_fiber;      /* TSan: fiber of a context just left for good, destroyed by
                                   the context switched to (coro.c) */
    int64_t loop_clock_ns;      /* CLOCK_MONOTONIC of this thread's loop iteration; 0 when no
                                   loop runs (loop.c) */
    CoroShard *_Atomic next;    /* shard list: push-only */
};

/* Under valgrind: the thread's own stack from sp down is in use again (coro_escape_to_thread
 * runs code there while valgrind still thinks it was left); nothing otherwise (stack.c). */
void coro__stack_valgrind_reuse_below(uint64_t sp);

/* Sets this thread's loop clock (CoroShard.loop_clock_ns), which coro_create stamps records
 * with; loop.c calls it each iteration and with 0 when its loop stops. */
void coro__shard_loop_clock(int64_t now);

/* registry.c */
extern struct coro_debug_abi coroscope_debug_abi;
Coroutine *coro__record_alloc(void);          /* zeroed record, linked; NULL on ENOMEM */
void coro__record_free(Coroutine *co);       /* record with no stack, for reuse */
CoroShard *coro__shard_attach(void);          /* this thread's new or reused shard */
void coro__shard_detach(CoroShard *sh);
uint64_t coro__id_block(void);                /* first id of a fresh block of CORO_ID_BLOCK */
void coro__registry_lock(void);
void coro__registry_unlock(void);
void coro__registry_child_reset(CoroShard *survivor);
#define CORO_ID_BLOCK 1024u

/* stack.c */
int coro__stack_alloc(Coroutine *co, size_t size);   /* 0 or -errno */
void coro__stack_free(Coroutine *co);
size_t coro__page_size(void);
unsigned coro__pool_get_shared(Coroutine **chain, unsigned max);
Coroutine *coro__pool_put_shared(Coroutine *chain, unsigned n);
void coro__pool_child_reset(void);
void coro__pool_lock(void);
void coro__pool_unlock(void);

/* coro.c */
void coro__die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2), cold));
void coro__describe(const Coroutine *co, char *buf, size_t size);

#endif /* COROSCOPE_CORO_INT_H */
