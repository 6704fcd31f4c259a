/*
 * The coroscope debug ABI: how a reader outside the runtime (the coroscope CLI, the gdb
 * extension, a signal handler, any other tool) finds and walks the coroutine registry.
 * docs/debug-abi.md is the prose version of this file, with the reading protocol.
 *
 * One descriptor, struct coro_debug_abi, is exported by every program or library that
 * contains the coroscope runtime:
 *   - by the global symbol CORO_DEBUG_ABI_SYMBOL ("coroscope_debug_abi"), and
 *   - as the only object in the ELF section CORO_DEBUG_ABI_SECTION (".coroscope_debug"),
 *     which survives `strip`.
 * It begins with magic, version and its own size, then gives the addresses of the registry
 * lists and the offset of every field a reader needs inside a coroutine record and a thread
 * shard. Readers take layouts from here, never from the runtime's own structs.
 *
 * Compatibility: fields are only ever added at the end (size grows); version changes only
 * when the meaning of an existing field changes. A field offset of CORO_DEBUG_ABSENT means
 * "this runtime does not keep that field".
 */
#ifndef COROSCOPE_DEBUG_ABI_H
#define COROSCOPE_DEBUG_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORO_DEBUG_ABI_SYMBOL "coroscope_debug_abi"
#define CORO_DEBUG_ABI_SECTION ".coroscope_debug"
#define CORO_DEBUG_ABI_MAGIC "CoroDbg" /* 8 bytes with the NUL */
#define CORO_DEBUG_ABI_VERSION 1u
#define CORO_DEBUG_ABSENT 0xffffffffu

/* Values of the record's state field (uint32). */
enum {
    CORO_STATE_FREE = 0,       /* pooled record: not a live coroutine, skip it */
    CORO_STATE_CREATED = 1,    /* created, never entered: regs point at the trampoline */
    CORO_STATE_RUNNING = 2,    /* on a CPU now: regs are stale, use the thread's registers */
    CORO_STATE_SUSPENDED = 3,  /* yielded: regs are valid */
    CORO_STATE_NESTED = 4,     /* running, but has entered another coroutine that has not
                                  yielded: regs are valid; shown as "running" */
    CORO_STATE_TERMINATED = 5, /* entry returned, being returned to the pool: skip it */
};

/* Values of the record's wait_kind field (uint32): what a suspended coroutine waits for
 * (<coroscope/loop.h>, <coroscope/sync.h>). NONE: not in a coroscope wait (a plain yield). */
enum {
    CORO_WAIT_NONE = 0,
    CORO_WAIT_FD = 1,          /* wait_fd, wait_events (poll bits); wait_deadline or 0 */
    CORO_WAIT_SLEEP = 2,       /* wait_deadline */
    CORO_WAIT_QUEUE = 3,       /* wait_object: the CoQueue */
    CORO_WAIT_MUTEX = 4,       /* wait_object: the CoMutex; holder at mutex_off_holder_id */
    CORO_WAIT_RWLOCK_READ = 5, /* wait_object: the CoRwlock; writer at rwlock_off_writer_id */
    CORO_WAIT_RWLOCK_WRITE = 6,
};

/* Saved registers: offsets within the record, relative to off_regs. All are uint64 except
 * mxcsr (uint32) and fpucw (uint16). */
struct coro_debug_regs_layout {
    uint32_t rsp, rip, rbp, rbx, r12, r13, r14, r15, mxcsr, fpucw;
};

struct coro_debug_abi {
    /* Identification: check all three before anything else. */
    char magic[8];     /* CORO_DEBUG_ABI_MAGIC */
    uint32_t version;  /* CORO_DEBUG_ABI_VERSION */
    uint32_t size;     /* sizeof(struct coro_debug_abi) of the writer; >= what you read */
    uint32_t ptr_size; /* 8 */
    uint32_t arch;     /* ELF e_machine: 62 (EM_X86_64) */

    /* Live values, updated by the runtime. Pointers are target addresses. */
    uint64_t records;      /* first record of the all-records list (push-only, never unlinked) */
    uint64_t nrecords;     /* records ever linked: an upper bound for the list walk */
    uint64_t shards;       /* first thread shard (push-only list, never unlinked) */
    uint64_t nshards;      /* shards ever linked: an upper bound for that walk */
    uint64_t leak_generation; /* bumped by coro_leak_mark() */

    /* Code addresses, for unwinders and for hiding coroscope's internal frames. */
    uint64_t trampoline_start; /* [start, end): the bottom frame of every coroutine stack */
    uint64_t trampoline_end;
    uint64_t switch_start;     /* [start, end): the context switch */
    uint64_t switch_end;

    /* Record layout. */
    uint32_t record_size;
    uint32_t off_next;         /* uint64: next record or 0 */
    uint32_t off_id;           /* uint64 */
    uint32_t off_state;        /* uint32, CORO_STATE_* */
    uint32_t off_seq;          /* uint32: odd while the runtime updates state and regs */
    uint32_t off_name;         /* char[name_size], NUL-terminated unless torn; "" = unnamed */
    uint32_t name_size;
    uint32_t off_regs;
    struct coro_debug_regs_layout regs;
    uint32_t off_stack_base;   /* uint64: lowest usable address; guard page just below */
    uint32_t off_stack_size;   /* uint64: usable bytes */
    uint32_t guard_size;       /* bytes of the guard region below stack_base */
    uint32_t off_entry;        /* uint64: entry function address */
    uint32_t off_opaque;       /* uint64: entry argument */
    uint32_t off_create_site;  /* uint64: return address of the coro_create call */
    uint32_t off_tid;          /* int32: kernel tid of the thread it last ran on */
    uint32_t off_caller;       /* uint64: record that entered it (0: a thread's own stack) */
    uint32_t off_switch_count; /* uint64: times entered */
    uint32_t off_generation;   /* uint64: leak_generation at creation */
    /* Reserved for later issues; CORO_DEBUG_ABSENT until then. */
    uint32_t off_wait_reason;  /* uint64: address of a NUL-terminated static string or 0 */
    uint32_t off_wait_object;  /* uint64: address of the object waited on or 0 */
    uint32_t off_wait_since;   /* uint64: CLOCK_MONOTONIC ns when the wait began */
    uint32_t off_stack_used_max; /* uint64: stack high-water mark in bytes */

    /* Shard (one per thread that has used coroutines) layout. */
    uint32_t shard_size;
    uint32_t shard_off_next;       /* uint64 */
    uint32_t shard_off_tid;        /* int32: kernel tid; 0 when the thread has exited */
    uint32_t shard_off_current;    /* uint64: record running on that thread, 0 if none */
    uint32_t shard_off_created;    /* uint64: coroutines created on that thread */
    uint32_t shard_off_terminated; /* uint64: coroutines that terminated on that thread */
    uint32_t reserved0;

    /* Wait reasons (added after the first release: a reader finds them CORO_DEBUG_ABSENT, or
     * all-ones, in a smaller descriptor). Valid when the record's state is SUSPENDED: the
     * coroutine writes them before it yields, inside the same seqlock window as its
     * registers; off_wait_object and off_wait_since above hold the object and the
     * CLOCK_MONOTONIC ns when the wait began. docs/debug-abi.md has the protocol. */
    uint32_t off_wait_kind;        /* uint32: CORO_WAIT_* */
    uint32_t off_wait_fd;          /* int32 */
    uint32_t off_wait_events;      /* uint32: poll(2) events */
    uint32_t off_wait_deadline;    /* int64: CLOCK_MONOTONIC ns, 0 none */
    uint32_t mutex_off_holder_id;  /* uint64 inside a CoMutex: holder's id, 0 unlocked */
    uint32_t rwlock_off_writer_id; /* uint64 inside a CoRwlock: writer's id, 0 none */
    /* Live: a recent CLOCK_MONOTONIC reading (ns), refreshed when a wait begins and on every
     * loop iteration. A core has no clock: readers of a core compute "waiting for" against
     * this value and say so. 0: no wait happened yet. */
    uint64_t clock_ns;
    /* Added after clock_ns (a smaller descriptor lacks it: treat as CORO_DEBUG_ABSENT). */
    uint32_t off_created_ns;       /* uint64 in a record: CLOCK_MONOTONIC_COARSE ns at creation */
    uint32_t reserved1;
};

#ifdef __cplusplus
}
#endif

#endif /* COROSCOPE_DEBUG_ABI_H */
