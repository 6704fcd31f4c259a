/*
 * Coroutines and threads: a suspended coroutine entered from another thread (migration),
 * and a 4-thread stress test that creates, enters, yields, terminates and hands suspended
 * coroutines between threads, after which the counters and the registry must be exact.
 */
#include "coro-test.h"

#include <pthread.h>
#include <sched.h>
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
    __atomic_store_n(&p->tids[a->index], (int32_t)gettid(), __ATOMIC_RELEASE);
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

/* ---- a record read while it is reused ---- */

static _Atomic bool churn_stop;
static _Atomic uint64_t churn_record;

static void churn_nop(void *opaque)
{
}

/* Creates and terminates coroutines as fast as it can: the same record, reused each time,
 * each life with its own opaque value and a name derived from it. */
static void *churn_one_record(void *arg)
{
    unsigned long i = 0;
    while (!atomic_load_explicit(&churn_stop, memory_order_relaxed)) {
        char name[CORO_NAME_SIZE];
        snprintf(name, sizeof(name), "life-%lu", ++i);
        CoroutineOptions o = { .name = name };
        Coroutine *co = coro_create_opts(churn_nop, (void *)i, &o);
        atomic_store_explicit(&churn_record, (uint64_t)(uintptr_t)co, memory_order_relaxed);
        coro_enter(co);
    }
    return NULL;
}

/*
 * A reader following docs/debug-abi.md (seq even, copy, seq unchanged) reads a record that
 * another thread keeps rewriting for new coroutines: every snapshot of a created coroutine
 * is one life, never half of two (its name and its saved r13, the entry's argument, match
 * its opaque value; its registers aim at the trampoline at the top of its stack).
 */
static void test_coro_registry_snapshot_never_torn(void **state)
{
    const struct coro_debug_abi *d = abi();
    pthread_t t;
    atomic_store(&churn_stop, false);
    atomic_store(&churn_record, 0);
    assert_int_equal(pthread_create(&t, NULL, churn_one_record, NULL), 0);
    uint64_t rec;
    while (!(rec = atomic_load(&churn_record))) {
        sched_yield();
    }
    unsigned char *copy = malloc(d->record_size);
    assert_non_null(copy);
    unsigned long created = 0, torn = 0;
    char first[160] = "";
#ifdef __SANITIZE_THREAD__
    double end = now_seconds() + 2.0; /* 0.3 s caught no created state once under TSan */
#else
    double end = now_seconds() + (RUNNING_ON_VALGRIND ? 0.5 : 0.3);
#endif
    while (now_seconds() < end) {
        for (int k = 0; k < 1000; k++) {
            const uint32_t *seqp = (const uint32_t *)(uintptr_t)(rec + d->off_seq);
            uint32_t s1 = __atomic_load_n(seqp, __ATOMIC_ACQUIRE);
            racy_copy(copy, (const void *)(uintptr_t)rec, d->record_size);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if ((s1 & 1) || __atomic_load_n(seqp, __ATOMIC_RELAXED) != s1) {
                continue;
            }
            RecView v;
            rec_read((uintptr_t)copy, &v);
            v.addr = rec;
            if (v.state != CORO_STATE_CREATED) {
                continue;
            }
            created++;
            char expect[CORO_NAME_SIZE];
            snprintf(expect, sizeof(expect), "life-%llu", (unsigned long long)v.opaque);
#ifdef __SANITIZE_ADDRESS__
            uint64_t r13 = v.addr; /* ASan builds start coroutines through a hook */
#else
            uint64_t r13 = v.opaque; /* the trampoline passes it to the entry function */
#endif
            if (strcmp(v.name, expect) != 0 || v.rsp != v.stack_base + v.stack_size ||
                v.r13 != r13 ||
                v.rip <= d->trampoline_start || v.rip >= d->trampoline_end ||
                v.entry != (uintptr_t)churn_nop) {
                if (!torn++) {
                    snprintf(first, sizeof(first),
                             "name \"%s\" opaque %llu r13 %#llx rsp %#llx top %#llx", v.name,
                             (unsigned long long)v.opaque, (unsigned long long)v.r13,
                             (unsigned long long)v.rsp,
                             (unsigned long long)(v.stack_base + v.stack_size));
                }
            }
        }
    }
    atomic_store(&churn_stop, true);
    pthread_join(t, NULL);
    free(copy);
    if (torn) {
        fail_msg("%lu torn snapshots of %lu, first: %s", torn, created, first);
    }
    print_message("%lu consistent snapshots of a created coroutine\n", created);
#ifndef __SANITIZE_ADDRESS__
    /* Natively the reader catches the record between create and enter many times; ASan and
     * valgrind (one thread at a time) slow things down so much that it may not. */
    assert_true(created > 0 || RUNNING_ON_VALGRIND);
#endif
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

/*
 * A reader walking the registry while the workers run, with the protocol docs/debug-abi.md
 * gives: no lock, bounded walks, a record read as seq (even), copy, seq again (unchanged).
 * Every such snapshot of a suspended or created coroutine must make sense. (Before the
 * create path held the seqlock, this reader saw created records with rsp 0 or another
 * stack's rsp within seconds.)
 */
static _Atomic bool reader_stop;

struct reader_stats {
    unsigned long walks, snapshots, suspended_ok, retries, bad;
    char first_bad[160];
};

static void reader_bad(struct reader_stats *st, const char *what, const RecView *v)
{
    if (!st->bad++) {
        snprintf(st->first_bad, sizeof(st->first_bad),
                 "%s: id %llu state %u seq %u rsp %#llx stack %#llx+%llu", what,
                 (unsigned long long)v->id, v->state, v->seq, (unsigned long long)v->rsp,
                 (unsigned long long)v->stack_base, (unsigned long long)v->stack_size);
    }
}

static void *reader_thread(void *arg)
{
    struct reader_stats *st = arg;
    const struct coro_debug_abi *d = abi();
    uint32_t rs = d->record_size;
    unsigned char *b = malloc(rs);
    while (!atomic_load(&reader_stop)) {
        uint64_t p = __atomic_load_n(&d->records, __ATOMIC_ACQUIRE);
        uint64_t limit = __atomic_load_n(&d->nrecords, __ATOMIC_ACQUIRE);
        uint64_t n = 0;
        /* Slabs pushed between reading the head and nrecords: at most one per worker. */
        for (; p && n < limit + 64 * STRESS_THREADS; n++) {
            RecView v;
            int tries = 0;
            for (;;) {
                const uint32_t *seqp = (const uint32_t *)(uintptr_t)(p + d->off_seq);
                uint32_t s1 = __atomic_load_n(seqp, __ATOMIC_ACQUIRE);
                racy_copy(b, (const void *)(uintptr_t)p, rs);
                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                if ((s1 & 1) == 0 && __atomic_load_n(seqp, __ATOMIC_RELAXED) == s1) {
                    break;
                }
                st->retries++;
                if (++tries == 100) {
                    break;
                }
            }
            rec_read((uintptr_t)b, &v); /* decodes the stable copy */
            v.addr = p;
            p = v.next;
            if (tries == 100) {
                continue; /* reported as "changing" by a real reader */
            }
            st->snapshots++;
            if (v.state > CORO_STATE_TERMINATED) {
                reader_bad(st, "state out of range", &v);
            } else if (v.state == CORO_STATE_SUSPENDED || v.state == CORO_STATE_CREATED) {
                if (v.id == 0 || v.stack_size < CORO_MIN_STACK_SIZE || v.rip == 0 ||
                    v.rsp < v.stack_base || v.rsp > v.stack_base + v.stack_size) {
                    reader_bad(st, "inconsistent snapshot", &v);
                } else {
                    st->suspended_ok++;
                }
            }
        }
        if (p) {
            reader_bad(st, "walk did not end", &(RecView){ 0 });
        }
        st->walks++;
        if (RUNNING_ON_VALGRIND) {
            usleep(2000); /* valgrind runs one thread at a time: leave the workers time */
        }
    }
    free(b);
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
    static struct reader_stats rst;
    memset(&rst, 0, sizeof(rst));
    pthread_t reader;
    atomic_store(&reader_stop, false);
    assert_int_equal(pthread_create(&reader, NULL, reader_thread, &rst), 0);
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
    atomic_store(&reader_stop, true);
    pthread_join(reader, NULL);
    assert_int_equal(atomic_load(&stress_errors), 0);
    if (rst.bad) {
        fail_msg("concurrent reader: %lu bad snapshots, first: %s", rst.bad, rst.first_bad);
    }
    assert_true(rst.walks > 0 && rst.suspended_ok > 0);

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
    assert_true(busy <= 1); /* this thread's, if it has used coroutines before */

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
                  "the creator's, %.2f s; a concurrent reader walked the registry %lu times "
                  "(%lu stable snapshots, %lu re-reads)\n", atomic_load(&stress_created),
                  atomic_load(&stress_entries), atomic_load(&stress_migrations), elapsed,
                  rst.walks, rst.snapshots, rst.retries);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_coro_migration_between_threads, no_leftovers),
        cmocka_unit_test_teardown(test_coro_migration_ping_pong, no_leftovers),
        cmocka_unit_test_teardown(test_coro_thread_exit_releases_cache, no_leftovers),
        cmocka_unit_test_teardown(test_coro_registry_snapshot_never_torn, no_leftovers),
        cmocka_unit_test_teardown(test_coro_stress_4_threads, no_leftovers),
    };
    apply_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
