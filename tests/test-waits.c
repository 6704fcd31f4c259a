/*
 * Wait reasons as the dumps show them, and deadlock detection: cycles of 2 and 3 coroutines,
 * across threads, each reported once, and no false cycle when a holder is merely slow,
 * sleeping or runnable. Everything through coro_dump (JSON and text), the in-process reader
 * that shares the collect driver with the CLI and the signal dump.
 */
#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/inspect.h>
#include <coroscope/loop.h>
#include <coroscope/sync.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "test-inspect-common.h"
#include "test-inspect-json.h"

static Json *dump_json(void)
{
    int fd = memfd_create("dump", 0);
    assert_true(fd >= 0);
    assert_int_equal(coro_dump(fd, CORO_DUMP_JSON), 0);
    char *text = read_all(fd);
    close(fd);
    char err[128];
    Json *doc = jparse_document(text, err, sizeof(err));
    if (!doc) {
        fail_msg("not one JSON document: %s", err);
    }
    free(text);
    return doc;
}

static char *dump_text(void)
{
    int fd = memfd_create("dump", 0);
    assert_int_equal(coro_dump(fd, CORO_DUMP_TEXT), 0);
    char *text = read_all(fd);
    close(fd);
    return text;
}

static const Json *by_id(const Json *doc, uint64_t id)
{
    const Json *list = jget(doc, "coroutines");
    for (size_t i = 0; i < list->n; i++) {
        if (jget(list->items[i], "id")->i == (long long)id) {
            return list->items[i];
        }
    }
    fail_msg("coroutine %llu not in the dump", (unsigned long long)id);
    return NULL;
}

/* Cycles that include coroutine id (deadlocks of earlier tests stay parked for good). */
static const Json *cycle_with(const Json *doc, uint64_t id, size_t *count)
{
    const Json *cycles = jget(doc, "deadlocks"), *found = NULL;
    *count = 0;
    for (size_t i = 0; i < cycles->n; i++) {
        const Json *cyc = jget(cycles->items[i], "cycle");
        for (size_t k = 0; k < cyc->n; k++) {
            if (cyc->items[k]->i == (long long)id) {
                found = cyc;
                ++*count;
            }
        }
    }
    return found;
}

static size_t count_lines(const char *text, const char *prefix)
{
    size_t n = 0, len = strlen(prefix);
    for (const char *p = text; p; p = strchr(p, '\n')) {
        p += *p == '\n';
        n += strncmp(p, prefix, len) == 0;
    }
    return n;
}

/* ---- a ring of lockers: i holds m[i], then wants m[(i + 1) % n] ---- */

typedef struct Ring {
    CoMutex m[4];
    int n;
} Ring;

typedef struct Locker {
    Ring *ring;
    int i;
} Locker;

static void locker(void *opaque)
{
    Locker *l = opaque;
    coro_mutex_lock(&l->ring->m[l->i]);
    coro_yield(); /* everyone holds its first mutex before anyone asks for a second */
    coro_mutex_lock(&l->ring->m[(l->i + 1) % l->ring->n]);
    coro_mutex_unlock(&l->ring->m[(l->i + 1) % l->ring->n]);
    coro_mutex_unlock(&l->ring->m[l->i]);
}

static void test_deadlock_cycle_of_three_reported_once(void **state)
{
    static Ring ring = { .n = 3 }; /* outlives the test: its waiters stay parked */
    static Locker l[3];
    Coroutine *co[3];
    for (int i = 0; i < 3; i++) {
        coro_mutex_init(&ring.m[i]);
        l[i] = (Locker){ &ring, i };
        char name[16];
        snprintf(name, sizeof(name), "ring-%d", i);
        CoroutineOptions o = { .name = name };
        co[i] = coro_create_opts(locker, &l[i], &o);
        coro_enter(co[i]);
    }
    for (int i = 0; i < 3; i++) {
        coro_enter(co[i]); /* now each waits for the next one's mutex */
    }
    Json *doc = dump_json();
    size_t count;
    const Json *cyc = cycle_with(doc, coro_id(co[1]), &count);
    assert_int_equal(count, 1);
    assert_int_equal(cyc->n, 3);
    assert_int_equal(cyc->items[0]->i, (long long)coro_id(co[0])); /* from the lowest id */
    for (int i = 0; i < 3; i++) {
        const Json *w = jget(by_id(doc, coro_id(co[i])), "wait");
        assert_string_equal(jget(w, "kind")->s, "mutex");
        assert_int_equal(jget(w, "holder")->i, (long long)coro_id(co[(i + 1) % 3]));
        assert_true(jget(w, "for_ns")->i >= 0);
    }
    jfree(doc);
    char *text = dump_text();
    assert_int_equal(count_lines(text, "coroscope: deadlock: coroutine "), 1);
    assert_non_null(strstr(text, "\"ring-0\" waits for mutex 0x"));
    assert_non_null(strstr(text, "which waits for mutex 0x"));
    free(text);
    /* A deadlock has no way out: the three stay parked until the process ends. */
}

/* A chain into a holder that is not waiting for a lock is no deadlock. */
static CoMutex held;

static void slow_holder(void *opaque)
{
    coro_mutex_lock(&held);
    if (opaque) {
        coro_sleep_ns(60LL * 1000000000); /* slow: sleeping with the lock */
    } else {
        coro_yield();                     /* runnable: parked by a plain yield */
    }
    coro_mutex_unlock(&held);
}

static void blocked(void *opaque)
{
    coro_mutex_lock(&held);
    coro_mutex_unlock(&held);
}

static void check_no_cycle(void *sleeping)
{
    coro_mutex_init(&held);
    Coroutine *h = coro_create(slow_holder, sleeping);
    coro_enter(h);
    Coroutine *b = coro_create(blocked, NULL), *c = coro_create(blocked, NULL);
    coro_enter(b);
    coro_enter(c);
    Json *doc = dump_json();
    size_t count;
    cycle_with(doc, coro_id(b), &count);
    assert_int_equal(count, 0);
    cycle_with(doc, coro_id(h), &count);
    assert_int_equal(count, 0);
    const Json *w = jget(by_id(doc, coro_id(b)), "wait");
    assert_int_equal(jget(w, "holder")->i, (long long)coro_id(h));
    const Json *hw = jget(by_id(doc, coro_id(h)), "wait");
    if (sleeping) {
        assert_string_equal(jget(hw, "kind")->s, "sleep");
        assert_true(jget(hw, "deadline_ns")->i > 0);
    } else {
        assert_int_equal(hw->type, J_NULL);
    }
    jfree(doc);
    if (sleeping) {
        coro_wake(h); /* ends the sleep early */
    } else {
        coro_enter(h);
    }
    assert_int_equal(coro_loop_run(), 0);
}

static void test_no_false_cycle_when_holder_is_slow_or_runnable(void **state)
{
    check_no_cycle((void *)1);
    check_no_cycle(NULL);
}

/* ---- across threads: A on thread 1 and B on thread 2 take two mutexes crosswise ---- */

static CoMutex ma, mb;
static pthread_barrier_t both_hold;
static _Atomic int parked_cross;
static Coroutine *cross[2];

static void cross_locker(void *opaque)
{
    int first = (int)(intptr_t)opaque;
    coro_mutex_lock(first ? &mb : &ma);
    pthread_barrier_wait(&both_hold);
    parked_cross++;
    coro_mutex_lock(first ? &ma : &mb);
}

static void *cross_thread(void *arg)
{
    int i = (int)(intptr_t)arg;
    CoroutineOptions o = { .name = i ? "cross-b" : "cross-a" };
    cross[i] = coro_create_opts(cross_locker, arg, &o);
    coro_enter(cross[i]);
    return NULL; /* the coroutine stays parked: the deadlock outlives the thread's loop */
}

static void test_deadlock_across_threads(void **state)
{
    pthread_barrier_init(&both_hold, NULL, 2);
    coro_mutex_init(&ma);
    coro_mutex_init(&mb);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, cross_thread, (void *)(intptr_t)i), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    Json *doc = dump_json();
    size_t count;
    const Json *cyc = cycle_with(doc, coro_id(cross[0]), &count);
    assert_int_equal(count, 1);
    assert_int_equal(cyc->n, 2);
    const Json *a = by_id(doc, coro_id(cross[0])), *b = by_id(doc, coro_id(cross[1]));
    assert_int_not_equal(jget(a, "thread")->i, jget(b, "thread")->i);
    assert_int_equal(jget(jget(a, "wait"), "holder")->i, (long long)coro_id(cross[1]));
    assert_int_equal(jget(jget(b, "wait"), "holder")->i, (long long)coro_id(cross[0]));
    jfree(doc);
    pthread_barrier_destroy(&both_hold);
}

int main(void)
{
    /* The deadlocked coroutines are never released: no leak report at exit. */
    setenv("CORO_LEAK_CHECK", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadlock_cycle_of_three_reported_once),
        cmocka_unit_test(test_no_false_cycle_when_holder_is_slow_or_runnable),
        cmocka_unit_test(test_deadlock_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
