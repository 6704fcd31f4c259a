/*
 * CoQueue, CoMutex and CoRwlock (<coroscope/sync.h>), with QEMU's semantics, across threads.
 *
 * Each object keeps a FIFO of waiting coroutines behind a tiny spinlock (held for a few
 * pointer updates, never across a switch). A waiter records its wait reason, queues itself
 * and parks (wait-int.h); whoever hands it the object sets wait_granted and wakes it, which
 * runs it on the loop of the thread it waits on. A wake it did not expect (a stray
 * coro_wake) finds wait_granted clear and parks again: the primitives never return early.
 */
#define _GNU_SOURCE
#include <coroscope/sync.h>
#include <errno.h>
#include <unistd.h>

#include "wait-int.h"

static void spin_lock(uint32_t *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(l, __ATOMIC_RELAXED)) {
            __builtin_ia32_pause();
        }
    }
}

static void spin_unlock(uint32_t *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* q->head changes under q's spinlock only, but coro_queue_empty() reads it without the lock:
 * every store is atomic, or that read races with it. */
static void q_set_head(CoQueue *q, Coroutine *co)
{
    __atomic_store_n(&q->head, co, __ATOMIC_RELEASE);
}

static void q_push(CoQueue *q, Coroutine *co)
{
    co->wait_next = NULL;
    if (q->tail) {
        q->tail->wait_next = co;
    } else {
        q_set_head(q, co);
    }
    q->tail = co;
}

static Coroutine *q_pop(CoQueue *q)
{
    Coroutine *co = q->head;
    if (co) {
        q_set_head(q, co->wait_next);
        if (!q->head) {
            q->tail = NULL;
        }
        co->wait_next = NULL;
    }
    return co;
}

/* Takes co out of q if it is still there (it was woken by someone else). */
static void q_remove(CoQueue *q, Coroutine *co)
{
    Coroutine *prev = NULL;
    for (Coroutine *c = q->head; c; prev = c, c = c->wait_next) {
        if (c == co) {
            if (prev) {
                prev->wait_next = c->wait_next;
            } else {
                q_set_head(q, c->wait_next);
            }
            if (q->tail == c) {
                q->tail = prev;
            }
            c->wait_next = NULL;
            return;
        }
    }
}

/* Called with the object's spinlock held: queue self, let go of the lock, park until granted. */
static void wait_granted_unlock(CoQueue *q, Coroutine *self, uint32_t kind, void *object,
                                const char *who)
{
    self->wait_granted = 0;
    __atomic_store_n(&self->wait_loop, coro__loop_self(), __ATOMIC_RELEASE);
    q_push(q, self);
    spin_unlock(&q->lock);
    do {
        coro__park(self, kind, object, who); /* again after a stray wake */
    } while (!__atomic_load_n(&self->wait_granted, __ATOMIC_ACQUIRE));
    __atomic_store_n(&self->wait_loop, NULL, __ATOMIC_RELEASE);
}

/*
 * Wakes to send once the spinlock is let go: the coroutine and the loop it waits on, read
 * under the lock (once granted, a coroutine running after a stray wake may return and clear
 * its wait_loop). Chunks of WAKE_BATCH keep this on the stack.
 */
#define WAKE_BATCH 32
typedef struct Wakes {
    Coroutine *co[WAKE_BATCH];
    CoroLoop *loop[WAKE_BATCH];
    unsigned n;
} Wakes;

/* Called with the spinlock held: hands co the object and notes the wake. */
static void grant(Wakes *w, Coroutine *co)
{
    w->co[w->n] = co;
    w->loop[w->n] = __atomic_load_n(&co->wait_loop, __ATOMIC_ACQUIRE);
    w->n++;
    __atomic_store_n(&co->wait_granted, 1, __ATOMIC_RELEASE);
}

static void wake_all(Wakes *w)
{
    for (unsigned i = 0; i < w->n; i++) {
        coro__wake_on(w->loop[i], w->co[i]);
    }
    w->n = 0;
}

/* ---- CoQueue ---- */

CORO_EXPORT void coro_queue_init(CoQueue *q)
{
    q->lock = 0;
    q->reserved = 0;
    q_set_head(q, NULL);
    q->tail = NULL;
}

CORO_EXPORT void coroutine_fn coro_queue_wait(CoQueue *q, CoMutex *m)
{
    Coroutine *self = coro__wait_self("coro_queue_wait");
    spin_lock(&q->lock);
    self->wait_granted = 0;
    __atomic_store_n(&self->wait_loop, coro__loop_self(), __ATOMIC_RELEASE);
    q_push(q, self);
    spin_unlock(&q->lock);
    if (m) {
        coro_mutex_unlock(m);
    }
    coro__park(self, CORO_WAIT_QUEUE, q, "coro_queue_wait");
    __atomic_store_n(&self->wait_loop, NULL, __ATOMIC_RELEASE);
    /* Woken by next/restart_all (already out of q) or by a stray wake (still in it). */
    spin_lock(&q->lock);
    if (!__atomic_load_n(&self->wait_granted, __ATOMIC_ACQUIRE)) {
        q_remove(q, self);
    }
    spin_unlock(&q->lock);
    if (m) {
        coro_mutex_lock(m);
    }
}

CORO_EXPORT bool coro_queue_next(CoQueue *q)
{
    Wakes w = { .n = 0 };
    spin_lock(&q->lock);
    Coroutine *co = q_pop(q);
    if (co) {
        grant(&w, co);
    }
    spin_unlock(&q->lock);
    wake_all(&w);
    return co != NULL;
}

CORO_EXPORT void coro_queue_restart_all(CoQueue *q)
{
    Wakes w = { .n = 0 };
    bool more = true;
    while (more) {
        spin_lock(&q->lock);
        for (Coroutine *co; w.n < WAKE_BATCH && (co = q_pop(q));) {
            grant(&w, co);
        }
        more = w.n == WAKE_BATCH;
        spin_unlock(&q->lock);
        wake_all(&w);
    }
}

CORO_EXPORT bool coro_queue_empty(const CoQueue *q)
{
    return __atomic_load_n(&q->head, __ATOMIC_ACQUIRE) == NULL;
}

/* ---- CoMutex ---- */

CORO_EXPORT void coro_mutex_init(CoMutex *m)
{
    coro_queue_init(&m->waiters);
    m->holder = NULL;
    m->holder_id = 0;
}

static void set_holder(CoMutex *m, Coroutine *co)
{
    m->holder = co;
    __atomic_store_n(&m->holder_id, co ? coro_id(co) : 0, __ATOMIC_RELEASE);
}

CORO_EXPORT void coroutine_fn coro_mutex_lock(CoMutex *m)
{
    Coroutine *self = coro__wait_self("coro_mutex_lock");
    spin_lock(&m->waiters.lock);
    if (!m->holder) {
        set_holder(m, self);
        spin_unlock(&m->waiters.lock);
        return;
    }
    if (m->holder == self) {
        spin_unlock(&m->waiters.lock);
        char who[96];
        coro__describe(self, who, sizeof(who));
        coro__die("coro_mutex_lock(%p): %s already holds it (CoMutex is not recursive)",
                  (void *)m, who);
    }
    /* unlock hands the mutex over (set_holder) before it wakes us. */
    wait_granted_unlock(&m->waiters, self, CORO_WAIT_MUTEX, m, "coro_mutex_lock");
}

CORO_EXPORT void coro_mutex_unlock(CoMutex *m)
{
    Coroutine *self = coro_self();
    spin_lock(&m->waiters.lock);
    if (m->holder != self || !self) {
        Coroutine *holder = m->holder;
        spin_unlock(&m->waiters.lock);
        char who[96], owner[96] = "nobody";
        coro__describe(self, who, sizeof(who));
        if (holder) {
            coro__describe(holder, owner, sizeof(owner));
        }
        coro__die("coro_mutex_unlock(%p) by %s: the mutex is held by %s", (void *)m, who,
                  owner);
    }
    Wakes w = { .n = 0 };
    Coroutine *next = q_pop(&m->waiters);
    set_holder(m, next); /* FIFO hand-off: the first waiter owns it now */
    if (next) {
        grant(&w, next);
    }
    spin_unlock(&m->waiters.lock);
    wake_all(&w);
}

/* ---- CoRwlock ---- */

CORO_EXPORT void coro_rwlock_init(CoRwlock *l)
{
    coro_queue_init(&l->waiters);
    l->writer = NULL;
    l->writer_id = 0;
    l->readers = 0;
    l->reserved = 0;
}

static void set_writer(CoRwlock *l, Coroutine *co)
{
    l->writer = co;
    __atomic_store_n(&l->writer_id, co ? coro_id(co) : 0, __ATOMIC_RELEASE);
}

/*
 * With the spinlock held: admits waiters from the front of the queue, in order, while they
 * can run — readers while there is no writer, a writer when nobody holds the lock; only
 * readers when readers_only (downgrade). At most WAKE_BATCH per call: returns true when it
 * stopped there with more to admit (the caller wakes these, locks again and goes on).
 */
static bool admit(CoRwlock *l, bool readers_only, Wakes *w)
{
    for (Coroutine *co; (co = l->waiters.head);) {
        if (w->n == WAKE_BATCH) {
            return true;
        }
        bool wants_write = co->wait_events == 1; /* rw_wait's mark, set before queueing */
        if (wants_write) {
            if (readers_only || l->writer || l->readers) {
                break;
            }
            set_writer(l, co);
        } else {
            if (l->writer) {
                break;
            }
            l->readers++;
        }
        q_pop(&l->waiters);
        grant(w, co);
        if (wants_write) {
            break;
        }
    }
    return false;
}

/* Called with the spinlock held: admits, lets go of the lock, wakes; repeats while more. */
static void admit_unlock(CoRwlock *l, bool readers_only)
{
    Wakes w = { .n = 0 };
    bool more;
    do {
        more = admit(l, readers_only, &w);
        spin_unlock(&l->waiters.lock);
        wake_all(&w);
        if (more) {
            spin_lock(&l->waiters.lock);
        }
    } while (more);
}

static void rw_wait(CoRwlock *l, Coroutine *self, bool write, const char *who)
{
    /* admit() may read the queue before self has parked: what it waits for is marked now,
     * before it is queued (wait_events == 1: a writer), and stays until it is granted. */
    self->wait_events = write ? 1 : 0;
    wait_granted_unlock(&l->waiters, self,
                        write ? CORO_WAIT_RWLOCK_WRITE : CORO_WAIT_RWLOCK_READ, l, who);
}

CORO_EXPORT void coroutine_fn coro_rwlock_rdlock(CoRwlock *l)
{
    Coroutine *self = coro__wait_self("coro_rwlock_rdlock");
    spin_lock(&l->waiters.lock);
    if (!l->writer && !l->waiters.head) {
        l->readers++;
        spin_unlock(&l->waiters.lock);
        return;
    }
    rw_wait(l, self, false, "coro_rwlock_rdlock");
}

CORO_EXPORT void coroutine_fn coro_rwlock_wrlock(CoRwlock *l)
{
    Coroutine *self = coro__wait_self("coro_rwlock_wrlock");
    spin_lock(&l->waiters.lock);
    if (!l->writer && !l->readers && !l->waiters.head) {
        set_writer(l, self);
        spin_unlock(&l->waiters.lock);
        return;
    }
    rw_wait(l, self, true, "coro_rwlock_wrlock");
}

static void __attribute__((noreturn)) rw_misuse(CoRwlock *l, const char *what)
{
    char who[96];
    coro__describe(coro_self(), who, sizeof(who));
    coro__die("%s(%p) by %s: %s", what, (void *)l, who,
              l->writer ? "the write lock is held by another coroutine" : "nobody holds it");
}

CORO_EXPORT void coro_rwlock_unlock(CoRwlock *l)
{
    Coroutine *self = coro_self();
    spin_lock(&l->waiters.lock);
    if (l->writer) {
        if (l->writer != self) {
            spin_unlock(&l->waiters.lock);
            rw_misuse(l, "coro_rwlock_unlock");
        }
        set_writer(l, NULL);
    } else if (l->readers) {
        l->readers--;
    } else {
        spin_unlock(&l->waiters.lock);
        rw_misuse(l, "coro_rwlock_unlock");
    }
    admit_unlock(l, false);
}

CORO_EXPORT void coroutine_fn coro_rwlock_upgrade(CoRwlock *l)
{
    Coroutine *self = coro__wait_self("coro_rwlock_upgrade");
    spin_lock(&l->waiters.lock);
    if (l->writer || !l->readers) {
        spin_unlock(&l->waiters.lock);
        rw_misuse(l, "coro_rwlock_upgrade (needs a read lock)");
    }
    l->readers--;
    if (!l->readers && !l->waiters.head) {
        set_writer(l, self);
        spin_unlock(&l->waiters.lock);
        return;
    }
    /* Others hold it or wait: queue as a writer behind them (as QEMU does). */
    self->wait_events = 1;
    self->wait_granted = 0;
    __atomic_store_n(&self->wait_loop, coro__loop_self(), __ATOMIC_RELEASE);
    q_push(&l->waiters, self);
    admit_unlock(l, false); /* we gave up a read lock: someone may go in now */
    do {
        coro__park(self, CORO_WAIT_RWLOCK_WRITE, l, "coro_rwlock_upgrade");
    } while (!__atomic_load_n(&self->wait_granted, __ATOMIC_ACQUIRE));
    __atomic_store_n(&self->wait_loop, NULL, __ATOMIC_RELEASE);
}

CORO_EXPORT void coro_rwlock_downgrade(CoRwlock *l)
{
    Coroutine *self = coro_self();
    spin_lock(&l->waiters.lock);
    if (l->writer != self || !self) {
        spin_unlock(&l->waiters.lock);
        rw_misuse(l, "coro_rwlock_downgrade (needs the write lock)");
    }
    set_writer(l, NULL);
    l->readers = 1;
    admit_unlock(l, true);
}
