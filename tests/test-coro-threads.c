/*
 * Coroutines and threads: a suspended coroutine entered from another thread (migration),
 * and a 4-thread stress test that creates, enters, yields, terminates and hands suspended
 * coroutines between threads, after which the counters and the registry must be exact.
 */
#include "coro-test.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- migration ---- */

struct migrant {
    Coroutine *co;
    uint64_t id;
    int32_t tid_seen[3];
    Coroutine *self_seen[3];
    int32_t reg_tid_seen[3];
    uint64_t shard_current_ok;
};

static void migrant_fn(void *opaque)
{
    struct migrant *m = opaque;
    const struct coro_debug_abi *d = abi();
    for (int i = 0; i < 3; i++) {
        int32_t me = (int32_t)gettid();
        m->tid_seen[i] = me;
        m->self_seen[i] = coro_self();
        RecView v = rec_get(m->id);
        m->reg_tid_seen[i] = v.tid;
        /* The running coroutine is its current thread's shard's current one. */
        if (rd64(shard_of(me), d->shard_off_current) == v.addr) {
            m->shard_current_ok++;
        }
        if (i < 2) {
            coro_yield();
        }
    }
}

struct handoff {
    struct migrant *m;
    int32_t tid;
};

static void *enter_on_thread(void *arg)
{
    struct handoff *h = arg;
    h->tid = (int32_t)gettid();
    coro_enter(h->m->co);
    return NULL;
}

static void test_coro_migration_between_threads(void **state)
{
    struct migrant m;
    memset(&m, 0, sizeof(m));
    struct handoff a = { &m, 0 }, b = { &m, 0 };
    pthread_t ta, tb;

    /* Thread A creates nothing: the coroutine is made here and first entered on A. */
    m.co = coro_create(migrant_fn, &m);
    m.id = coro_id(m.co);
    assert_int_equal(pthread_create(&ta, NULL, enter_on_thread, &a), 0);
    pthread_join(ta, NULL);
    RecView v = rec_get(m.id);
    assert_int_equal(v.state, CORO_STATE_SUSPENDED);
    assert_int_equal(v.tid, a.tid);

    /* Thread B resumes it. A has exited: its shard is released (tid 0) or reused by B. */
    assert_int_equal(pthread_create(&tb, NULL, enter_on_thread, &b), 0);
    pthread_join(tb, NULL);
    v = rec_get(m.id);
    assert_int_equal(v.state, CORO_STATE_SUSPENDED);
    assert_int_equal(v.tid, b.tid);

    /* And this thread finishes it. */
    coro_enter(m.co);
    assert_false(rec_find(m.id, &v));

    int32_t expect[3] = { a.tid, b.tid, (int32_t)gettid() };
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m.tid_seen[i], expect[i]);
        assert_int_equal(m.reg_tid_seen[i], expect[i]);
        assert_ptr_equal(m.self_seen[i], m.co);
    }
    assert_int_equal(m.shard_current_ok, 3);
    assert_int_not_equal(a.tid, b.tid);
}

/* Both threads alive: the coroutine moves from a thread that still uses coroutines. */
struct pingpong {
    Coroutine *co;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int turn;          /* 0: thread 0 enters next, 1: thread 1 */
    int rounds;
    int32_t tids[2];
    unsigned wrong_tid, wrong_self;
    bool done;
};

static void pingpong_fn(void *opaque)
{
    struct pingpong *p = opaque;
    for (int i = 0; i < p->rounds; i++) {
        int32_t me = (int32_t)gettid();
        if (me != p->tids[i % 2]) {
            p->wrong_tid++;
        }
        if (coro_self() != p->co) {
            p->wrong_self++;
        }
        coro_yield();
    }
    p->done = true;
}

struct pp_arg {
    struct pingpong *p;
    int index;
};

static void *pingpong_thread(void *arg)
{
    struct pp_arg *a = arg;
    struct pingpong *p = a->p;
    p->tids[a->index] = (int32_t)gettid();
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->turn != a->index && !p->done) {
            pthread_cond_wait(&p->cv, &p->mu);
        }
        if (p->done) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        pthread_mutex_unlock(&p->mu);
        coro_enter(p->co);
        pthread_mutex_lock(&p->mu);
        p->turn = 1 - a->index;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

static void test_coro_migration_ping_pong(void **state)
{
    struct pingpong p;
    memset(&p, 0, sizeof(p));
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    p.rounds = (int)scaled(2000, 10);
    p.co = coro_create(pingpong_fn, &p);
    p.turn = -1; /* hold both threads until their tids are known */
    pthread_t t[2];
    struct pp_arg args[2] = { { &p, 0 }, { &p, 1 } };
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, pingpong_thread, &args[i]), 0);
    }
    while (!__atomic_load_n(&p.tids[0], __ATOMIC_ACQUIRE) ||
           !__atomic_load_n(&p.tids[1], __ATOMIC_ACQUIRE)) {
        usleep(100);
    }
    pthread_mutex_lock(&p.mu);
    p.turn = 0;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    assert_true(p.done);
    assert_int_equal(p.wrong_tid, 0);
    assert_int_equal(p.wrong_self, 0);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
}

/* ---- thread exit releases the thread's pool ---- */

static void yield_once_fn(void *opaque)
{
    coro_yield();
}

static void *fill_cache_and_exit(void *arg)
{
    enum { N = 160 }; /* more than a thread keeps: its cache ends up full */
    Coroutine *cos[N];
    for (int i = 0; i < N; i++) {
        cos[i] = coro_create(yield_once_fn, NULL);
        coro_enter(cos[i]);
    }
    if (arg) {
        pthread_barrier_wait(arg); /* every thread's coroutines are alive at once */
    }
    for (int i = 0; i < N; i++) {
        coro_enter(cos[i]);
    }
    return NULL;
}

static bool count_pooled_stacks(const RecView *v, void *arg)
{
    if (v->state == CORO_STATE_FREE && v->stack_base) {
        (*(uint64_t *)arg)++;
    }
    return false;
}

/*
 * Each exiting thread hands its cached coroutines to the shared pool, which is bounded: the
 * stacks kept for reuse do not grow with the number of threads that have come and gone.
 */
static void test_coro_thread_exit_releases_cache(void **state)
{
    enum { MAXT = 40 };
    unsigned threads = scaled(MAXT, 4); /* 10 under valgrind: still past the pool bound */
    pthread_t ts[MAXT];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, threads);
    for (unsigned i = 0; i < threads; i++) {
        assert_int_equal(pthread_create(&ts[i], NULL, fill_cache_and_exit, &barrier), 0);
    }
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(ts[i], NULL);
    }
    pthread_barrier_destroy(&barrier);
    uint64_t pooled = 0;
    rec_walk(count_pooled_stacks, &pooled);
    /* Shared pool (1024) + this thread's cache (128) + a few in flight; without the release
     * at thread exit it would be 128 per thread gone (5,120 natively). */
    print_message("stacks kept for reuse after %u threads exited: %llu\n", threads,
                  (unsigned long long)pooled);
    assert_true(pooled <= 1024 + 128 + 8);
    /* And they are reused: the registry does not grow for the next thread's coroutines. */
    uint64_t nrecords = abi()->nrecords;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fill_cache_and_exit, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(abi()->nrecords, nrecords);
}

/* ---- stress ---- */

#define STRESS_THREADS 4
#define PARK_PER_THREAD 25

struct task {
    Coroutine *co;
    unsigned yields_left;
    bool done;
    bool park;           /* left suspended at the end, for the exact count */
    unsigned bad_self;
    int32_t creator;     /* tid of the thread that created it */
};

static _Atomic unsigned long stress_created, stress_finished, stress_migrations;
static _Atomic unsigned long stress_entries;
static _Atomic unsigned stress_errors;

static void child_fn(void *opaque)
{
    struct task *t = opaque;
    coro_yield();
    t->done = true;
}

static void task_fn(void *opaque)
{
    struct task *t = opaque;
    while (t->yields_left || t->park) {
        if (t->yields_left) {
            t->yields_left--;
        }
        /* Sometimes nest: a child coroutine entered from here, finished before we yield. */
        if (t->yields_left % 3 == 1) {
            struct task c = { 0 };
            c.co = coro_create(child_fn, &c);
            if (!c.co) {
                atomic_fetch_add(&stress_errors, 1);
                break;
            }
            coro_enter(c.co);
            coro_enter(c.co);
            if (!c.done) {
                atomic_fetch_add(&stress_errors, 1);
            }
        }
        coro_yield();
        /* Resumed, maybe on another thread: TLS must say who we are. */
        if (coro_self() != t->co) {
            t->bad_self++;
        }
    }
}

/* Suspended coroutines waiting for any thread to enter them next. */
static pthread_mutex_t queue_mu = PTHREAD_MUTEX_INITIALIZER;
static struct task *queue[4096];
static unsigned queue_len;

static bool queue_push(struct task *t)
{
    pthread_mutex_lock(&queue_mu);
    bool ok = queue_len < sizeof(queue) / sizeof(queue[0]);
    if (ok) {
        queue[queue_len++] = t;
    }
    pthread_mutex_unlock(&queue_mu);
    return ok;
}

static struct task *queue_pop(unsigned pick)
{
    struct task *t = NULL;
    pthread_mutex_lock(&queue_mu);
    if (queue_len) {
        unsigned i = pick % queue_len;
        t = queue[i];
        queue[i] = queue[--queue_len];
    }
    pthread_mutex_unlock(&queue_mu);
    return t;
}

struct worker {
    unsigned iterations;
    unsigned seed;
    struct task *parked[PARK_PER_THREAD];
};

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* Enters t once; returns true when it is finished (and frees it). */
static bool step(struct task *t)
{
    atomic_fetch_add_explicit(&stress_entries, 1, memory_order_relaxed);
    if (t->creator != (int32_t)gettid()) {
        atomic_fetch_add_explicit(&stress_migrations, 1, memory_order_relaxed);
    }
    coro_enter(t->co);
    if (t->done) {
        if (t->bad_self) {
            atomic_fetch_add(&stress_errors, 1);
        }
        free(t);
        atomic_fetch_add(&stress_finished, 1);
        return true;
    }
    return false;
}

static void task_done_marker(void *opaque)
{
    struct task *t = opaque;
    task_fn(t);
    t->done = true;
}

static void *stress_thread(void *arg)
{
    struct worker *w = arg;
    for (unsigned i = 0; i < w->iterations; i++) {
        unsigned r = rnd(&w->seed);
        struct task *t = calloc(1, sizeof(*t));
        t->yields_left = r % 5;
        t->creator = (int32_t)gettid();
        CoroutineOptions o = { .stack_size = r % 16 == 0 ? 32 * 1024 : 0 };
        t->co = coro_create_opts(task_done_marker, t, &o);
        if (!t->co) {
            atomic_fetch_add(&stress_errors, 1);
            free(t);
            continue;
        }
        atomic_fetch_add(&stress_created, 1);
        if (!step(t) && !queue_push(t)) {
            while (!step(t)) {
            }
        }
        /* Enter someone else's coroutine (often created on another thread). */
        struct task *other = queue_pop(rnd(&w->seed));
        if (other) {
            if (!step(other) && !queue_push(other)) {
                while (!step(other)) {
                }
            }
        }
    }
    /* Park some coroutines, suspended, for the exact count at the end. */
    for (unsigned i = 0; i < PARK_PER_THREAD; i++) {
        struct task *t = calloc(1, sizeof(*t));
        t->park = true;
        t->creator = (int32_t)gettid();
        t->co = coro_create(task_done_marker, t);
        atomic_fetch_add(&stress_created, 1);
        coro_enter(t->co);
        w->parked[i] = t;
    }
    return NULL;
}

static void test_coro_stress_4_threads(void **state)
{
    static struct worker workers[STRESS_THREADS];
    pthread_t t[STRESS_THREADS];
    unsigned iterations = scaled(40000, 20);
    atomic_store(&stress_created, 0);
    atomic_store(&stress_finished, 0);
    atomic_store(&stress_migrations, 0);
    atomic_store(&stress_entries, 0);
    atomic_store(&stress_errors, 0);
    double t0 = now_seconds();
    for (int i = 0; i < STRESS_THREADS; i++) {
        workers[i].iterations = iterations;
        workers[i].seed = 12345u + (unsigned)i * 7919u;
        assert_int_equal(pthread_create(&t[i], NULL, stress_thread, &workers[i]), 0);
    }
    for (int i = 0; i < STRESS_THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    double elapsed = now_seconds() - t0;
    assert_int_equal(atomic_load(&stress_errors), 0);

    /* Exact: what is queued plus what is parked, nothing else; all suspended. */
    unsigned long expect = queue_len + STRESS_THREADS * PARK_PER_THREAD;
    assert_int_equal(atomic_load(&stress_created) - atomic_load(&stress_finished), expect);
    assert_int_equal(coro_live_count(), expect);
    struct count_arg c;
    assert_true(registry_scan(&c));
    assert_int_equal(c.live, expect);
    assert_int_equal(c.by_state[CORO_STATE_SUSPENDED], expect);
    assert_int_equal(c.by_state[CORO_STATE_TERMINATED], 0);
    /* The worker threads have exited: their shards are released. */
    const struct coro_debug_abi *d = abi();
    uint64_t p = d->shards, busy = 0;
    for (uint64_t n = 0; p && n < d->nshards; n++, p = rd64(p, d->shard_off_next)) {
        if (rd32(p, d->shard_off_tid) != 0) {
            busy++;
            assert_int_equal(rd32(p, d->shard_off_tid), gettid());
        }
    }
    assert_int_equal(busy, 1);

    /* Finish everything from this thread. */
    struct task *q;
    while ((q = queue_pop(0))) {
        while (!step(q)) {
        }
    }
    for (int i = 0; i < STRESS_THREADS; i++) {
        for (unsigned j = 0; j < PARK_PER_THREAD; j++) {
            workers[i].parked[j]->park = false;
            while (!step(workers[i].parked[j])) {
            }
        }
    }
    assert_int_equal(atomic_load(&stress_errors), 0);
    assert_int_equal(atomic_load(&stress_created), atomic_load(&stress_finished));
    /* The hand-offs really happened. */
    assert_true(atomic_load(&stress_migrations) > atomic_load(&stress_created) / 20);
    print_message("stress: %lu coroutines, %lu entries, %lu of them on another thread than "
                  "the creator's, %.2f s\n", atomic_load(&stress_created),
                  atomic_load(&stress_entries), atomic_load(&stress_migrations), elapsed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_coro_migration_between_threads, no_leftovers),
        cmocka_unit_test_teardown(test_coro_migration_ping_pong, no_leftovers),
        cmocka_unit_test_teardown(test_coro_thread_exit_releases_cache, no_leftovers),
        cmocka_unit_test_teardown(test_coro_stress_4_threads, no_leftovers),
    };
    apply_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
