/*
 * CoQueue, CoMutex and CoRwlock (<coroscope/sync.h>): QEMU's semantics (FIFO hand-off,
 * rwlock upgrade/downgrade, queue wait with a mutex), the wait reasons every waiter
 * publishes through the debug ABI, cross-thread hand-off under a 4-thread stress with exact
 * counts, and the misuse aborts.
 */
#include "coro-test.h"

#include <coroscope/loop.h>
#include <coroscope/sync.h>
#include <pthread.h>

/* ---- the wait reason, as an outside reader sees it (descriptor offsets only) ---- */

typedef struct WaitView {
    uint32_t kind;
    uint64_t object, since;
    int32_t fd;
    uint32_t events;
    int64_t deadline;
} WaitView;

static WaitView wait_of(const Coroutine *co)
{
    const struct coro_debug_abi *d = abi();
    uint64_t rec = (uint64_t)(uintptr_t)co;
    assert_true(d->size >= offsetof(struct coro_debug_abi, clock_ns) + 8);
    WaitView w = {
        .kind = rd32(rec, d->off_wait_kind),
        .object = rd64(rec, d->off_wait_object),
        .since = rd64(rec, d->off_wait_since),
        .fd = (int32_t)rd32(rec, d->off_wait_fd),
        .events = rd32(rec, d->off_wait_events),
        .deadline = (int64_t)rd64(rec, d->off_wait_deadline),
    };
    return w;
}

static uint64_t mutex_holder(const CoMutex *m)
{
    return rd64((uint64_t)(uintptr_t)m, abi()->mutex_off_holder_id);
}

static uint64_t rwlock_writer(const CoRwlock *l)
{
    return rd64((uint64_t)(uintptr_t)l, abi()->rwlock_off_writer_id);
}

/* ---- mutex ---- */

static CoMutex mtx;
static int order[16], norder;

static void hold_then_yield(void *opaque)
{
    coro_mutex_lock(&mtx);
    coro_yield(); /* holds the mutex while parked by a plain yield */
    coro_mutex_unlock(&mtx);
}

static void take_in_turn(void *opaque)
{
    coro_mutex_lock(&mtx);
    order[norder++] = (int)(intptr_t)opaque;
    coro_mutex_unlock(&mtx);
}

static void test_mutex_fifo_handoff_and_wait_reason(void **state)
{
    coro_mutex_init(&mtx);
    norder = 0;
    Coroutine *holder = coro_create(hold_then_yield, NULL);
    coro_enter(holder);
    assert_int_equal(mutex_holder(&mtx), coro_id(holder));
    Coroutine *w[3];
    int64_t before = coro_now_ns();
    for (int i = 0; i < 3; i++) {
        w[i] = coro_create(take_in_turn, (void *)(intptr_t)(i + 1));
        coro_enter(w[i]); /* parks in coro_mutex_lock */
    }
    for (int i = 0; i < 3; i++) {
        WaitView v = wait_of(w[i]);
        assert_int_equal(v.kind, CORO_WAIT_MUTEX);
        assert_int_equal(v.object, (uint64_t)(uintptr_t)&mtx);
        assert_true(v.since >= (uint64_t)before && v.since <= (uint64_t)coro_now_ns());
    }
    assert_true(__atomic_load_n(&abi()->clock_ns, __ATOMIC_RELAXED) >= (uint64_t)before);
    /* The holder unlocks: the first waiter owns the mutex at once (hand-off), runs on the
     * loop, and hands it to the next. */
    coro_enter(holder);
    assert_int_equal(mutex_holder(&mtx), coro_id(w[0]));
    assert_int_equal(norder, 0); /* a wake never runs the woken coroutine inside unlock */
    assert_int_equal(coro_loop_run(), 0);
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 3);
    assert_int_equal(mutex_holder(&mtx), 0);
}

static void lock_unlock_n(void *opaque)
{
    for (int i = 0; i < 1000; i++) {
        coro_mutex_lock(&mtx);
        coro_mutex_unlock(&mtx);
    }
}

static void test_mutex_uncontended(void **state)
{
    coro_mutex_init(&mtx);
    Coroutine *co = coro_create(lock_unlock_n, NULL);
    coro_enter(co); /* never waits: it terminates inside this enter */
    assert_int_equal(mutex_holder(&mtx), 0);
}

/* QEMU's "lockable": a waiter woken by a stray coro_wake does not return without the lock. */
static void stray_waiter(void *opaque)
{
    coro_mutex_lock(&mtx);
    *(int *)opaque = 1;
    coro_mutex_unlock(&mtx);
}

static void test_mutex_stray_wake_is_not_a_lock(void **state)
{
    coro_mutex_init(&mtx);
    int got = 0;
    Coroutine *holder = coro_create(hold_then_yield, NULL);
    coro_enter(holder);
    Coroutine *w = coro_create(stray_waiter, &got);
    coro_enter(w);
    coro_wake(w);
    coro_wake(w); /* double wake: runs once */
    assert_int_equal(coro_loop_poll(0), 1);
    assert_int_equal(got, 0);
    assert_int_equal(wait_of(w).kind, CORO_WAIT_MUTEX); /* parked again */
    coro_enter(holder);
    assert_int_equal(coro_loop_run(), 0);
    assert_int_equal(got, 1);
}

static void unlock_unheld(void *opaque)
{
    coro_mutex_unlock(&mtx);
}

static void child_unlock_unheld(void *arg)
{
    coro_mutex_init(&mtx);
    CoroutineOptions o = { .name = "careless" };
    coro_enter(coro_create_opts(unlock_unheld, NULL, &o));
}

static void child_lock_outside(void *arg)
{
    coro_mutex_init(&mtx);
    coro_mutex_lock(&mtx);
}

static void rw_unlock_unheld(void *opaque)
{
    coro_rwlock_unlock(opaque);
}

static void child_rwlock_unlock_unheld(void *arg)
{
    static CoRwlock l;
    coro_rwlock_init(&l);
    CoroutineOptions o = { .name = "stray-unlock" };
    coro_enter(coro_create_opts(rw_unlock_unheld, &l, &o));
}

static void rw_hold_write(void *opaque)
{
    coro_rwlock_wrlock(opaque);
    coro_yield();
}

static void child_rwlock_unlock_by_other(void *arg)
{
    static CoRwlock l;
    coro_rwlock_init(&l);
    coro_enter(coro_create(rw_hold_write, &l));
    CoroutineOptions o = { .name = "not-the-writer" };
    coro_enter(coro_create_opts(rw_unlock_unheld, &l, &o));
}

static void test_rwlock_misuse_aborts(void **state)
{
    const char *const unheld[] = { "coroscope: fatal: coro_rwlock_unlock(", "\"stray-unlock\"",
                                    "nobody holds it", NULL };
    expect_death(child_rwlock_unlock_unheld, NULL, SIGABRT, unheld);
    const char *const other[] = { "coroscope: fatal: coro_rwlock_unlock(", "\"not-the-writer\"",
                                  "the write lock is held by another coroutine", NULL };
    expect_death(child_rwlock_unlock_by_other, NULL, SIGABRT, other);
}

static void test_mutex_misuse_aborts(void **state)
{
    const char *const unheld[] = { "coroscope: fatal: coro_mutex_unlock(",
                                   "by coroutine", "\"careless\"", "held by nobody", NULL };
    expect_death(child_unlock_unheld, NULL, SIGABRT, unheld);
    const char *const outside[] = { "coroscope: fatal: coro_mutex_lock() called outside a "
                                    "coroutine, on thread", NULL };
    expect_death(child_lock_outside, NULL, SIGABRT, outside);
}

/* ---- queue ---- */

static CoQueue queue;
static int woken;

static void queue_waiter(void *opaque)
{
    coro_queue_wait(&queue, NULL);
    order[norder++] = (int)(intptr_t)opaque;
    woken++;
}

static void test_queue_next_restart_all_empty(void **state)
{
    coro_queue_init(&queue);
    norder = woken = 0;
    assert_true(coro_queue_empty(&queue));
    assert_false(coro_queue_next(&queue));
    Coroutine *w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = coro_create(queue_waiter, (void *)(intptr_t)i);
        coro_enter(w[i]);
        assert_int_equal(wait_of(w[i]).kind, CORO_WAIT_QUEUE);
        assert_int_equal(wait_of(w[i]).object, (uint64_t)(uintptr_t)&queue);
    }
    assert_false(coro_queue_empty(&queue));
    assert_true(coro_queue_next(&queue));
    assert_int_equal(coro_loop_poll(0), 1);
    assert_int_equal(woken, 1);
    assert_int_equal(order[0], 0); /* FIFO */
    coro_queue_restart_all(&queue);
    assert_true(coro_queue_empty(&queue));
    assert_int_equal(coro_loop_run(), 0);
    assert_int_equal(woken, 4);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[3], 3);
}

/* queue_wait(q, m): m is let go while waiting and held again on return (a condition variable). */
static int items;

static void consumer(void *opaque)
{
    coro_mutex_lock(&mtx);
    while (items == 0) {
        coro_queue_wait(&queue, &mtx);
    }
    assert_int_equal(mutex_holder(&mtx), coro_id(coro_self()));
    items--;
    woken++;
    coro_mutex_unlock(&mtx);
}

static void producer(void *opaque)
{
    coro_mutex_lock(&mtx); /* free: the consumer let it go while it waits */
    items++;
    coro_queue_next(&queue);
    coro_mutex_unlock(&mtx);
}

static void test_queue_wait_releases_the_mutex(void **state)
{
    coro_mutex_init(&mtx);
    coro_queue_init(&queue);
    items = woken = 0;
    Coroutine *c = coro_create(consumer, NULL);
    coro_enter(c);
    assert_int_equal(wait_of(c).kind, CORO_WAIT_QUEUE);
    assert_int_equal(mutex_holder(&mtx), 0);
    coro_enter(coro_create(producer, NULL));
    assert_int_equal(coro_loop_run(), 0);
    assert_int_equal(woken, 1);
    assert_int_equal(items, 0);
}

/* ---- rwlock ---- */

static CoRwlock rw;
static int phase;

static void reader_hold(void *opaque)
{
    coro_rwlock_rdlock(&rw);
    order[norder++] = (int)(intptr_t)opaque;
    coro_yield();
    coro_rwlock_unlock(&rw);
}

static void writer_once(void *opaque)
{
    coro_rwlock_wrlock(&rw);
    order[norder++] = (int)(intptr_t)opaque;
    assert_int_equal(rwlock_writer(&rw), coro_id(coro_self()));
    coro_yield();
    coro_rwlock_unlock(&rw);
}

static void test_rwlock_shared_exclusive_fifo(void **state)
{
    coro_rwlock_init(&rw);
    norder = 0;
    Coroutine *r1 = coro_create(reader_hold, (void *)1), *r2 = coro_create(reader_hold, (void *)2);
    coro_enter(r1);
    coro_enter(r2);
    assert_int_equal(norder, 2); /* readers share */
    Coroutine *wr = coro_create(writer_once, (void *)3);
    coro_enter(wr);
    assert_int_equal(wait_of(wr).kind, CORO_WAIT_RWLOCK_WRITE);
    Coroutine *r3 = coro_create(reader_hold, (void *)4);
    coro_enter(r3); /* queued behind the writer: no writer starvation */
    assert_int_equal(wait_of(r3).kind, CORO_WAIT_RWLOCK_READ);
    assert_int_equal(norder, 2);
    coro_enter(r1);
    coro_enter(r2); /* last reader out: the writer is admitted */
    assert_int_equal(rwlock_writer(&rw), coro_id(wr));
    coro_loop_poll(0);
    assert_int_equal(norder, 3);
    assert_int_equal(order[2], 3);
    coro_enter(wr); /* writer unlocks: the queued reader goes in */
    coro_loop_poll(0);
    assert_int_equal(norder, 4);
    coro_enter(r3);
    assert_int_equal(rwlock_writer(&rw), 0);
}

static void upgrader(void *opaque)
{
    coro_rwlock_rdlock(&rw);
    coro_yield();
    coro_rwlock_upgrade(&rw); /* waits for the other reader */
    phase = 2;
    assert_int_equal(rwlock_writer(&rw), coro_id(coro_self()));
    coro_rwlock_unlock(&rw);
}

static void test_rwlock_upgrade_waits_for_readers(void **state)
{
    coro_rwlock_init(&rw);
    norder = 0;
    phase = 0;
    Coroutine *up = coro_create(upgrader, NULL);
    Coroutine *other = coro_create(reader_hold, (void *)1);
    coro_enter(up);
    coro_enter(other);
    coro_enter(up); /* upgrade: parks, the other reader still holds */
    assert_int_equal(phase, 0);
    assert_int_equal(wait_of(up).kind, CORO_WAIT_RWLOCK_WRITE);
    coro_enter(other); /* unlocks */
    coro_loop_run();
    assert_int_equal(phase, 2);
    assert_int_equal(rwlock_writer(&rw), 0);
}

static void downgrader(void *opaque)
{
    coro_rwlock_wrlock(&rw);
    coro_yield();
    coro_rwlock_downgrade(&rw);
    coro_yield();
    coro_rwlock_unlock(&rw);
}

static void test_rwlock_downgrade_admits_readers_not_writers(void **state)
{
    coro_rwlock_init(&rw);
    norder = 0;
    Coroutine *d = coro_create(downgrader, NULL);
    coro_enter(d);
    Coroutine *r = coro_create(reader_hold, (void *)1);
    Coroutine *w = coro_create(writer_once, (void *)2);
    Coroutine *r2 = coro_create(reader_hold, (void *)3);
    coro_enter(r);
    coro_enter(w);
    coro_enter(r2);
    coro_enter(d); /* downgrade: the reader at the front goes in, the writer waits */
    coro_loop_poll(0);
    assert_int_equal(norder, 1);
    assert_int_equal(order[0], 1);
    assert_int_equal(wait_of(w).kind, CORO_WAIT_RWLOCK_WRITE);
    coro_enter(d);
    coro_enter(r);
    coro_loop_poll(0);
    assert_int_equal(norder, 2);
    assert_int_equal(order[1], 2);
    coro_enter(w);
    coro_loop_poll(0);
    coro_enter(r2);
    assert_int_equal(norder, 3);
}

/* ---- across threads ---- */

#define THREADS 4
static CoMutex shared;
static uint64_t counter;          /* guarded by `shared` only */
static unsigned per_coroutine;

typedef struct Worker {
    pthread_t th;
    unsigned done;
    int tid;
    bool wrong_thread;
} Worker;

static void bump(void *opaque)
{
    Worker *w = opaque;
    for (unsigned i = 0; i < per_coroutine; i++) {
        coro_mutex_lock(&shared);
        if (gettid() != w->tid) {
            w->wrong_thread = true; /* resumed on another thread's loop */
        }
        uint64_t v = counter;
        if ((i & 7) == 0) {
            coro_sleep_ns(0); /* give the lock up to others' attempts while holding it */
        }
        counter = v + 1;
        coro_mutex_unlock(&shared);
    }
    w->done++;
}

#define PER_THREAD 8

static void *worker_main(void *arg)
{
    Worker *w = arg;
    w->tid = gettid();
    for (int i = 0; i < PER_THREAD; i++) {
        coro_schedule(coro_create(bump, w));
    }
    while (w->done < PER_THREAD) {
        if (coro_loop_poll(-1) < 0) {
            break;
        }
    }
    return NULL;
}

static void test_mutex_cross_thread_stress_exact(void **state)
{
    coro_mutex_init(&shared);
    counter = 0;
    per_coroutine = scaled(2000, 20);
    Worker w[THREADS] = { 0 };
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(w[i].th, NULL);
        assert_int_equal(w[i].done, PER_THREAD);
        assert_false(w[i].wrong_thread);
    }
    assert_int_equal(counter, (uint64_t)THREADS * PER_THREAD * per_coroutine);
    assert_int_equal(mutex_holder(&shared), 0);
}

/* A coroutine waiting on thread A is woken by a coroutine on thread B: it runs on A. */
typedef struct Pair {
    CoQueue q;
    int waiter_tid, ran_on;
    _Atomic int parked;
} Pair;

static void pair_waiter(void *opaque)
{
    Pair *p = opaque;
    p->parked = 1;
    coro_queue_wait(&p->q, NULL);
    p->ran_on = gettid();
}

static void *pair_thread(void *arg)
{
    Pair *p = arg;
    p->waiter_tid = gettid();
    coro_enter(coro_create(pair_waiter, p));
    while (!p->ran_on) {
        coro_loop_poll(-1); /* blocks until the other thread's wake arrives */
    }
    return NULL;
}

static void pair_waker(void *opaque)
{
    assert_true(coro_queue_next(opaque));
}

static void test_cross_thread_wake_runs_on_the_waiters_loop(void **state)
{
    Pair p = { .ran_on = 0 };
    coro_queue_init(&p.q);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pair_thread, &p), 0);
    while (!p.parked || coro_queue_empty(&p.q)) {
        usleep(1000);
    }
    coro_enter(coro_create(pair_waker, &p.q));
    pthread_join(th, NULL);
    assert_int_equal(p.ran_on, p.waiter_tid);
    assert_int_not_equal(p.ran_on, gettid());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_mutex_fifo_handoff_and_wait_reason, no_leftovers),
        cmocka_unit_test_teardown(test_mutex_uncontended, no_leftovers),
        cmocka_unit_test_teardown(test_mutex_stray_wake_is_not_a_lock, no_leftovers),
        cmocka_unit_test_teardown(test_mutex_misuse_aborts, no_leftovers),
        cmocka_unit_test_teardown(test_rwlock_misuse_aborts, no_leftovers),
        cmocka_unit_test_teardown(test_queue_next_restart_all_empty, no_leftovers),
        cmocka_unit_test_teardown(test_queue_wait_releases_the_mutex, no_leftovers),
        cmocka_unit_test_teardown(test_rwlock_shared_exclusive_fifo, no_leftovers),
        cmocka_unit_test_teardown(test_rwlock_upgrade_waits_for_readers, no_leftovers),
        cmocka_unit_test_teardown(test_rwlock_downgrade_admits_readers_not_writers,
                                  no_leftovers),
        cmocka_unit_test_teardown(test_mutex_cross_thread_stress_exact, no_leftovers),
        cmocka_unit_test_teardown(test_cross_thread_wake_runs_on_the_waiters_loop,
                                  no_leftovers),
    };
    apply_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
