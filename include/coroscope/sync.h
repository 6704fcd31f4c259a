/*
 * Wait queues, mutexes and rwlocks for coroutines, with QEMU's semantics
 * (qemu/coroutine.h's CoQueue, CoMutex, CoRwlock). Waiting parks the coroutine on its
 * thread's loop (<coroscope/loop.h>); the objects work across threads: a coroutine on thread
 * B may wait for a mutex held by a coroutine on thread A, and is resumed on B's loop.
 *
 * Every object is caller storage: initialise it with its _init function (or zero it) before
 * use. Their layouts are part of the debug ABI (readers find a mutex's holder through the
 * offsets in <coroscope/debug-abi.h>): do not touch the fields.
 *
 * Misuse aborts with one line naming the coroutine: unlocking a mutex one does not hold,
 * unlocking a rwlock nobody holds, waiting outside a coroutine.
 */
#ifndef COROSCOPE_SYNC_H
#define COROSCOPE_SYNC_H

#include <coroscope/coro.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A FIFO of waiting coroutines; `lock` guards the list (a tiny spinlock: held for a few
 * pointer updates, never across a switch). */
typedef struct CoQueue {
    uint32_t lock;
    uint32_t reserved;
    Coroutine *head, *tail;
} CoQueue;

typedef struct CoMutex {
    CoQueue waiters;
    Coroutine *holder;          /* NULL: unlocked */
    uint64_t holder_id;         /* coro_id(holder), 0: unlocked (for readers of the ABI) */
} CoMutex;

typedef struct CoRwlock {
    CoQueue waiters;
    Coroutine *writer;          /* holder of the write lock, NULL none */
    uint64_t writer_id;         /* coro_id(writer), 0 none (for readers of the ABI) */
    uint32_t readers;           /* read locks held */
    uint32_t reserved;
} CoRwlock;

void coro_queue_init(CoQueue *q);
/* coroutine_fn: waits on q until coro_queue_next/restart_all (or a spurious wake, as with
 * pthread_cond_wait: re-check your condition). With m, m is unlocked while waiting and held
 * again on return. */
void coroutine_fn coro_queue_wait(CoQueue *q, CoMutex *m);
/* Wakes the first waiter; false when none waited. */
bool coro_queue_next(CoQueue *q);
/* Wakes every waiter. */
void coro_queue_restart_all(CoQueue *q);
bool coro_queue_empty(const CoQueue *q);

void coro_mutex_init(CoMutex *m);
/* coroutine_fn: takes m, waiting in FIFO order; unlock hands it to the first waiter. */
void coroutine_fn coro_mutex_lock(CoMutex *m);
void coro_mutex_unlock(CoMutex *m);

void coro_rwlock_init(CoRwlock *l);
/* coroutine_fn: shared; waits while a writer holds it or waits for it (FIFO, no writer
 * starvation). */
void coroutine_fn coro_rwlock_rdlock(CoRwlock *l);
/* coroutine_fn: exclusive. */
void coroutine_fn coro_rwlock_wrlock(CoRwlock *l);
/* Releases the caller's read or write lock; waiters are admitted in FIFO order. */
void coro_rwlock_unlock(CoRwlock *l);
/* coroutine_fn: read lock -> write lock (the read lock is given up first, as in QEMU). */
void coroutine_fn coro_rwlock_upgrade(CoRwlock *l);
/* write lock -> read lock, admitting the readers queued at the front. */
void coro_rwlock_downgrade(CoRwlock *l);

#ifdef __cplusplus
}
#endif

#endif /* COROSCOPE_SYNC_H */
