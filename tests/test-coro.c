/*
 * The coroutine core's semantics: QEMU's tests/unit/test-coroutine.c cases in coroscope's
 * API, options, names and ids, floating-point control state, and many lifecycles.
 */
#include "coro-test.h"

#include <sys/mman.h>
#include <sys/resource.h>

static int fresh(void **state)
{
    (void)state;
    assert_int_equal(coro_live_count(), 0);
    return 0;
}

/* ---- lifecycle: a coroutine runs to completion and its resources are reused ---- */

static void set_done(void *opaque)
{
    *(bool *)opaque = true;
}

static void test_coro_lifecycle(void **state)
{
    bool done = false;
    Coroutine *co = coro_create(set_done, &done);
    assert_non_null(co);
    assert_int_equal(coro_live_count(), 1);
    assert_false(done);
    coro_enter(co);
    assert_true(done);
    assert_int_equal(coro_live_count(), 0);

    /* Again: the second one comes from the pool. */
    done = false;
    co = coro_create(set_done, &done);
    assert_non_null(co);
    coro_enter(co);
    assert_true(done);
    assert_int_equal(coro_live_count(), 0);
}

/* ---- yield: every yield returns to the enterer, every enter resumes after the yield ---- */

struct yield_state {
    unsigned limit, count;
    bool done;
};

static void yield_n(void *opaque)
{
    struct yield_state *s = opaque;
    while (s->count < s->limit) {
        s->count++;
        coro_yield();
    }
    s->done = true;
}

static void test_coro_yield_count(void **state)
{
    struct yield_state s = { .limit = 1000 };
    Coroutine *co = coro_create(yield_n, &s);
    unsigned enters = 0;
    while (!s.done) {
        assert_int_equal(s.count, enters);
        coro_enter(co);
        enters++;
    }
    assert_int_equal(s.count, 1000);
    assert_int_equal(enters, 1001);
}

/* ---- nesting: 128 coroutines each entering the next ---- */

struct nest_state {
    unsigned n_enter, n_return, max;
};

static void nest(void *opaque)
{
    struct nest_state *s = opaque;
    s->n_enter++;
    if (s->n_enter < s->max) {
        Coroutine *child = coro_create(nest, s);
        assert_non_null(child);
        coro_enter(child);
    }
    s->n_return++;
}

static void test_coro_nesting_128(void **state)
{
    struct nest_state s = { .max = 128 };
    Coroutine *root = coro_create(nest, &s);
    coro_enter(root);
    assert_int_equal(s.n_enter, 128);
    assert_int_equal(s.n_return, 128);
}

/* ---- self ---- */

static void check_self(void *opaque)
{
    Coroutine **expect = opaque;
    assert_ptr_equal(coro_self(), *expect);
    coro_yield();
    assert_ptr_equal(coro_self(), *expect);
    *expect = NULL;
}

static void test_coro_self(void **state)
{
    Coroutine *co = NULL;
    assert_null(coro_self());
    co = coro_create(check_self, &co);
    coro_enter(co);
    assert_null(coro_self());
    coro_enter(co);
    assert_null(co);
    assert_null(coro_self());
}

/* ---- entered ---- */

static void entered_inner(void *opaque)
{
    Coroutine *outer = opaque;
    assert_true(coro_entered(outer));   /* it entered us and has not yielded */
    assert_true(coro_entered(coro_self()));
    coro_yield();
    assert_true(coro_entered(coro_self()));
}

static void entered_outer(void *opaque)
{
    Coroutine **inner = opaque;
    Coroutine *self = coro_self();
    assert_true(coro_entered(self));
    *inner = coro_create(entered_inner, self);
    assert_false(coro_entered(*inner));  /* created, never entered */
    coro_enter(*inner);
    assert_false(coro_entered(*inner));  /* it yielded */
    assert_true(coro_entered(self));
    coro_yield();
    coro_enter(*inner);                  /* finishes it */
}

static void test_coro_entered(void **state)
{
    Coroutine *inner = NULL;
    Coroutine *outer = coro_create(entered_outer, &inner);
    assert_false(coro_entered(outer));
    coro_enter(outer);
    assert_false(coro_entered(outer));   /* suspended */
    assert_false(coro_entered(inner));
    coro_enter(outer);
}

/* ---- in_coroutine ---- */

static void check_in(void *opaque)
{
    *(bool *)opaque = coro_in_coroutine();
}

static void test_coro_in_coroutine(void **state)
{
    bool in = false;
    assert_false(coro_in_coroutine());
    coro_enter(coro_create(check_in, &in));
    assert_true(in);
    assert_false(coro_in_coroutine());
}

/* ---- order of execution ---- */

static int records[8];
static int nrecords;

static void record(int what)
{
    assert_true(nrecords < 8);
    records[nrecords++] = what;
}

static void order_fn(void *opaque)
{
    record(2);
    coro_yield();
    record(4);
}

static void test_coro_order(void **state)
{
    const int expect[] = { 1, 2, 3, 4, 5 };
    nrecords = 0;
    Coroutine *co = coro_create(order_fn, NULL);
    record(1);
    coro_enter(co);
    record(3);
    coro_enter(co);
    record(5);
    assert_int_equal(nrecords, 5);
    assert_memory_equal(records, expect, sizeof(expect));
}

/* ---- no dangling access to a terminated, pooled coroutine ---- */

static void dangle_c2(void *opaque)
{
    coro_yield();
}

static void dangle_c1(void *opaque)
{
    coro_enter(opaque); /* c2 yields back to us, then we terminate */
}

/*
 * QEMU's test: c1 enters c2, c2 yields, c1 terminates and goes to the pool; running c2 to
 * its end must not touch c1 (c2's record once named c1 as its caller). QEMU overwrites the
 * whole terminated coroutine with 0xff. Our records stay linked in the registry, so the link
 * to the next record is left intact (a reader may walk it at any time); everything else in
 * the record is scribbled on: a switch to c1, or any use of its saved state, would jump to
 * 0xffffffffffffffff. The pool link is restored before the next create, as QEMU restores
 * the whole coroutine.
 */
static void test_coro_no_dangling_access(void **state)
{
    const struct coro_debug_abi *d = abi();
    Coroutine *c2 = coro_create(dangle_c2, NULL);
    Coroutine *c1 = coro_create(dangle_c1, c2);
    uint64_t c1_id = coro_id(c1);
    coro_enter(c1);
    RecView v;
    assert_false(rec_find(c1_id, &v)); /* c1 terminated */

    unsigned char *rec = (unsigned char *)c1;
    size_t size = d->record_size;
    unsigned char *saved = malloc(size);
    assert_non_null(saved);
    memcpy(saved, rec, size);
    memset(rec, 0xff, d->off_next);
    memset(rec + d->off_next + 8, 0xff, size - d->off_next - 8);

    coro_enter(c2);   /* c2 resumes, returns, terminates: must not reach c1 */

    /* Nothing switched to or from c1: its state and saved registers are still scribbled. */
    assert_int_equal(rd32((uintptr_t)rec, d->off_state), 0xffffffffu);
    assert_int_equal(rd64((uintptr_t)rec + d->off_regs, d->regs.rsp), UINT64_MAX);
    assert_int_equal(rd64((uintptr_t)rec + d->off_regs, d->regs.rip), UINT64_MAX);
    assert_int_equal(rd64((uintptr_t)rec, d->off_caller), UINT64_MAX);
    memcpy(rec, saved, size);
    free(saved);
}

/* ---- ids and names ---- */

static void yield_once(void *opaque)
{
    coro_yield();
}

static void test_coro_id_unique_and_growing(void **state)
{
    enum { N = 300 };
    Coroutine *cos[N];
    uint64_t prev = 0;
    for (int i = 0; i < N; i++) {
        cos[i] = coro_create(yield_once, NULL);
        assert_non_null(cos[i]);
        uint64_t id = coro_id(cos[i]);
        assert_true(id > prev); /* one thread: ids grow, never reused */
        prev = id;
    }
    for (int i = 0; i < N; i++) {
        coro_enter(cos[i]);
        coro_enter(cos[i]);
    }
    /* A new coroutine on a reused record gets a new id. */
    Coroutine *co = coro_create(yield_once, NULL);
    assert_true(coro_id(co) > prev);
    coro_enter(co);
    coro_enter(co);
}

static void print_first_id(void *arg)
{
    Coroutine *co = coro_create(yield_once, NULL);
    fprintf(stderr, "id=%llu\n", (unsigned long long)coro_id(co));
    coro_enter(co);
    coro_enter(co);
}

static const char *self_path;

static void exec_print_first_id(void *arg)
{
    execl(self_path, self_path, "--print-first-id", (char *)NULL);
    fprintf(stderr, "exec %s: %s\n", self_path, strerror(errno));
    _exit(1);
}

static void test_coro_id_starts_at_one(void **state)
{
    /* Ids start at 1 in a fresh process: exec ourselves in a mode that creates one. */
    ChildResult r;
    run_child(exec_print_first_id, NULL, 30, &r);
    assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
    assert_string_equal(r.out, "id=1\n");
}

static void test_coro_name(void **state)
{
    const char *long_name = "0123456789abcdefghijklmnopqrstuvwxyz"; /* 36 characters */
    Coroutine *co = coro_create(yield_once, NULL);
    assert_null(coro_name(co));
    coro_set_name(co, "reader");
    assert_string_equal(coro_name(co), "reader");
    coro_set_name(co, long_name);
    assert_int_equal(strlen(coro_name(co)), CORO_NAME_SIZE - 1);
    assert_memory_equal(coro_name(co), long_name, CORO_NAME_SIZE - 1);
    coro_enter(co);
    assert_int_equal(strlen(coro_name(co)), 31); /* survives switches */
    coro_set_name(co, NULL);
    assert_null(coro_name(co));
    coro_enter(co);

    /* A pooled record handed out again starts unnamed. */
    co = coro_create(yield_once, NULL);
    assert_null(coro_name(co));
    coro_enter(co);
    coro_enter(co);
}

/* ---- coro_create_opts ---- */

static void report_stack(void *opaque)
{
    /* The frame address, not a local's: ASan may keep locals on a separate fake stack. */
    *(uintptr_t *)opaque = (uintptr_t)__builtin_frame_address(0);
    coro_yield();
}

static void test_coro_create_opts_name_and_sizes(void **state)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct {
        size_t ask, expect;
    } cases[] = {
        { 0, CORO_DEFAULT_STACK_SIZE },
        { 1, CORO_MIN_STACK_SIZE },
        { CORO_MIN_STACK_SIZE - 1, CORO_MIN_STACK_SIZE },
        { 20000, (20000 + page - 1) / page * page },
        { 64 * 1024, 64 * 1024 },
        { 64 * 1024 + 1, 64 * 1024 + page },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uintptr_t sp = 0;
        CoroutineOptions o = { .name = "sized", .stack_size = cases[i].ask };
        Coroutine *co = coro_create_opts(report_stack, &sp, &o);
        assert_non_null(co);
        assert_string_equal(coro_name(co), "sized");
        RecView v = rec_get(coro_id(co));
        assert_int_equal(v.stack_size, cases[i].expect);
        assert_int_equal(v.stack_base % page, 0);
        assert_string_equal(v.name, "sized");
        coro_enter(co);
        /* The coroutine really runs on that stack. */
        assert_true(sp >= v.stack_base && sp < v.stack_base + v.stack_size);
        coro_enter(co);
    }
    /* NULL options and all-zero options mean defaults. */
    CoroutineOptions zero = { 0 };
    Coroutine *co = coro_create_opts(yield_once, NULL, &zero);
    assert_null(coro_name(co));
    assert_int_equal(rec_get(coro_id(co)).stack_size, CORO_DEFAULT_STACK_SIZE);
    coro_enter(co);
    coro_enter(co);
    co = coro_create_opts(yield_once, NULL, NULL);
    assert_int_equal(rec_get(coro_id(co)).stack_size, CORO_DEFAULT_STACK_SIZE);
    coro_enter(co);
    coro_enter(co);
}

static void test_coro_create_opts_einval(void **state)
{
    for (int i = 0; i < 4; i++) {
        CoroutineOptions o = { .name = "x" };
        o.reserved[i] = &o;
        errno = 0;
        assert_null(coro_create_opts(yield_once, NULL, &o));
        assert_int_equal(errno, EINVAL);
    }
    CoroutineOptions huge = { .stack_size = (size_t)1 << 50 };
    errno = 0;
    assert_null(coro_create_opts(yield_once, NULL, &huge));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coro_create(NULL, NULL));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coro_live_count(), 0);
}

/* A coroutine with an 8 MiB stack uses 6 MiB of it, in frames that are all live at once. */
static unsigned long deep(unsigned depth, unsigned char *prev)
{
    unsigned char frame[64 * 1024];
    memset(frame, (int)depth, sizeof(frame));
    frame[0] = prev ? prev[1] : 0;
    unsigned long sum = depth ? deep(depth - 1, frame) : 0;
    __asm__ volatile("" ::"r"(frame) : "memory");
    return sum + frame[0] + frame[sizeof(frame) - 1];
}

static void big_stack_fn(void *opaque)
{
    *(unsigned long *)opaque = deep(96, NULL);
}

static void test_coro_create_opts_big_stack(void **state)
{
    unsigned long sum = 0, expect = 0;
    for (unsigned d = 0; d <= 96; d++) {
        expect += (d == 96 ? 0 : (unsigned char)(d + 1)) + (unsigned char)d;
    }
    CoroutineOptions o = { .name = "big", .stack_size = 8u << 20 };
    Coroutine *co = coro_create_opts(big_stack_fn, &sum, &o);
    assert_non_null(co);
    assert_int_equal(rec_get(coro_id(co)).stack_size, 8u << 20);
    coro_enter(co);
    assert_int_equal(sum, expect);
}

/* ENOMEM: a stack that cannot be mapped leaves nothing behind and the next create works. */
#ifndef __SANITIZE_ADDRESS__
static void enomem_child(void *arg)
{
    struct count_arg before, after;
    child_check(registry_scan(&before), "registry");
    size_t live = coro_live_count();
    /* Cap the address space a little above what the process uses now. */
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    child_check(f && fscanf(f, "%lu", &pages) == 1, "statm");
    fclose(f);
    struct rlimit rl = { .rlim_cur = (pages * 4096ul) + (64ul << 20),
                         .rlim_max = RLIM_INFINITY };
    child_check(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    CoroutineOptions o = { .name = "huge", .stack_size = 1ul << 30 };
    errno = 0;
    Coroutine *co = coro_create_opts(yield_once, NULL, &o);
    child_check(co == NULL && errno == ENOMEM, "create: %p, errno %d", (void *)co, errno);
    child_check(coro_live_count() == live, "live %zu, was %zu", coro_live_count(), live);
    child_check(registry_scan(&after) && after.live == before.live, "registry");
    /* The record it took is reused: a small coroutine still works. */
    CoroutineOptions small = { .stack_size = 64 * 1024 };
    co = coro_create_opts(yield_once, NULL, &small);
    child_check(co != NULL, "create after ENOMEM: %s", strerror(errno));
    coro_enter(co);
    coro_enter(co);
    child_check(coro_live_count() == live, "live %zu", coro_live_count());
}
#endif

static void test_coro_create_enomem(void **state)
{
#ifdef __SANITIZE_ADDRESS__
    skip(); /* ASan's shadow memory does not live under an address-space limit */
#else
    if (RUNNING_ON_VALGRIND) {
        skip(); /* valgrind manages the address space itself */
    }
    expect_clean_exit(enomem_child, NULL, 30);
#endif
}

/* ---- floating-point control state is per coroutine ---- */

static unsigned get_mxcsr_rc(void)
{
    unsigned m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    return m & 0x6000;
}

static void set_mxcsr_rc(unsigned rc)
{
    unsigned m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    m = (m & ~0x6000u) | rc;
    __asm__ volatile("ldmxcsr %0" ::"m"(m));
}

static unsigned get_x87_rc(void)
{
    unsigned short cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return cw & 0x0c00;
}

static void set_x87_rc(unsigned rc)
{
    unsigned short cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    cw = (unsigned short)((cw & ~0x0c00u) | rc);
    __asm__ volatile("fldcw %0" ::"m"(cw));
}

/* 1/3 in float, computed with SSE under the current rounding mode. */
static float third(void)
{
    volatile float one = 1.0f, three = 3.0f;
    return one / three;
}

#define SSE_RC_NEAREST 0x0000
#define SSE_RC_DOWN 0x2000
#define SSE_RC_UP 0x4000
#define SSE_RC_ZERO 0x6000
#define X87_RC_NEAREST 0x000
#define X87_RC_UP 0x800

struct fp_state {
    unsigned seen_sse[3], seen_x87[3];
    float down;
};

static void fp_fn(void *opaque)
{
    struct fp_state *s = opaque;
    s->seen_sse[0] = get_mxcsr_rc();
    s->seen_x87[0] = get_x87_rc();
    set_mxcsr_rc(SSE_RC_DOWN);
    set_x87_rc(X87_RC_UP);
    coro_yield();
    s->seen_sse[1] = get_mxcsr_rc();
    s->seen_x87[1] = get_x87_rc();
    s->down = third();
    coro_yield();
    s->seen_sse[2] = get_mxcsr_rc();
    s->seen_x87[2] = get_x87_rc();
}

static void test_coro_fp_control_is_per_coroutine(void **state)
{
    struct fp_state s;
    memset(&s, 0, sizeof(s));
    float nearest = third();
    set_mxcsr_rc(SSE_RC_NEAREST);
    set_x87_rc(X87_RC_NEAREST);
    Coroutine *co = coro_create(fp_fn, &s);

    /* The caller changes its mode after create: a new coroutine starts with its creator's
     * state at creation time, as a new thread does. */
    set_mxcsr_rc(SSE_RC_UP);
    coro_enter(co);
    assert_int_equal(s.seen_sse[0], SSE_RC_NEAREST);
    assert_int_equal(s.seen_x87[0], X87_RC_NEAREST);
    /* The coroutine's modes did not leak out. */
    assert_int_equal(get_mxcsr_rc(), SSE_RC_UP);
    assert_int_equal(get_x87_rc(), X87_RC_NEAREST);
    /* The registry holds the suspended coroutine's own control state. */
    RecView v = rec_get(coro_id(co));
    assert_int_equal(v.mxcsr & 0x6000, SSE_RC_DOWN);
    assert_int_equal(v.fpucw & 0x0c00, X87_RC_UP);

    /* Nor do the caller's leak in. */
    set_mxcsr_rc(SSE_RC_ZERO);
    coro_enter(co);
    assert_int_equal(s.seen_sse[1], SSE_RC_DOWN);
    assert_int_equal(s.seen_x87[1], X87_RC_UP);
    /* 1/3 rounded down is below 1/3 rounded to nearest (valgrind computes SSE arithmetic
     * in round-to-nearest whatever MXCSR says, though it keeps MXCSR itself). */
    assert_true(s.down < nearest || RUNNING_ON_VALGRIND);
    assert_int_equal(get_mxcsr_rc(), SSE_RC_ZERO);
    assert_int_equal(get_x87_rc(), X87_RC_NEAREST);

    set_mxcsr_rc(SSE_RC_NEAREST);
    coro_enter(co);
    assert_int_equal(s.seen_sse[2], SSE_RC_DOWN);
    assert_int_equal(s.seen_x87[2], X87_RC_UP);
    assert_int_equal(get_mxcsr_rc(), SSE_RC_NEAREST);
    assert_int_equal(get_x87_rc(), X87_RC_NEAREST);
    /* A user-visible result: float division rounds to nearest again out here. */
    assert_true(third() == nearest);
}

/* ---- many lifecycles leave nothing behind ---- */

static void nop_fn(void *opaque)
{
    (*(unsigned long *)opaque)++;
}

static void test_coro_100k_lifecycles(void **state)
{
    unsigned long ran = 0;
    unsigned n = 100000;
    uint64_t nrecords_before;
    /* Warm up the pool, then check the registry does not grow with more lifecycles. */
    coro_enter(coro_create(nop_fn, &ran));
    nrecords_before = abi()->nrecords;
    for (unsigned i = 0; i < n; i++) {
        Coroutine *co = coro_create(i % 2 ? nop_fn : yield_once, &ran);
        assert_non_null(co);
        coro_enter(co);
        if (i % 2 == 0) {
            coro_enter(co);
        }
    }
    assert_int_equal(ran, 1 + n / 2);
    assert_int_equal(coro_live_count(), 0);
    assert_int_equal(registry_live(), 0);
    assert_int_equal(abi()->nrecords, nrecords_before);

    /* Batches: many alive at once spill the thread cache to the shared pool and back. */
    enum { BATCH = 1000 };
    static Coroutine *batch[BATCH];
    for (unsigned round = 0; round < 5; round++) {
        for (unsigned i = 0; i < BATCH; i++) {
            batch[i] = coro_create(yield_once, NULL);
            assert_non_null(batch[i]);
            coro_enter(batch[i]);
        }
        assert_int_equal(coro_live_count(), BATCH);
        assert_int_equal(registry_live(), BATCH);
        for (unsigned i = 0; i < BATCH; i++) {
            coro_enter(batch[i]);
        }
        assert_int_equal(coro_live_count(), 0);
    }
}

/* ---- coro_escape_to_thread, when fn returns ---- */

struct escape_run {
    Coroutine *a, *b;
    unsigned escaped, outside, helper_ran, b_resumed, a_resumed;
};

static void escape_helper(void *opaque)
{
    ((struct escape_run *)opaque)->helper_ran++;
}

static void on_thread_stack(void *opaque)
{
    struct escape_run *r = opaque;
    r->escaped++;
    r->outside += coro_self() == NULL;
    /* Coroutines work from the escape as from the thread's own stack. */
    coro_enter(coro_create(escape_helper, r));
}

static void escape_b(void *opaque)
{
    struct escape_run *r = opaque;
    coro_escape_to_thread(on_thread_stack, r);
    r->b_resumed++;
}

static void escape_a(void *opaque)
{
    struct escape_run *r = opaque;
    coro_enter(r->b);
    r->a_resumed++;
}

/* fn returns: the outermost coro_enter() returns, both coroutines are left suspended where
 * they were and finish when entered again. Many times over (TSan builds keep a shadow call
 * stack per fiber, which escapes must leave balanced). */
static void test_coro_escape_returns_to_outer_enter(void **state)
{
    unsigned n = scaled(2000, 20);
    struct escape_run r = { 0 };
    for (unsigned i = 0; i < n; i++) {
        r.a = coro_create(escape_a, &r);
        r.b = coro_create(escape_b, &r);
        coro_enter(r.a);
        assert_null(coro_self());
        assert_false(coro_entered(r.a));
        assert_false(coro_entered(r.b));
        assert_int_equal(r.b_resumed, i);
        coro_enter(r.b);
        assert_int_equal(r.b_resumed, i + 1);
        assert_int_equal(r.a_resumed, i);
        coro_enter(r.a);
    }
    assert_int_equal(r.escaped, n);
    assert_int_equal(r.outside, n);
    assert_int_equal(r.helper_ran, n);
    assert_int_equal(r.a_resumed, n);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--print-first-id") == 0) {
        print_first_id(NULL);
        return 0;
    }
    self_path = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_coro_lifecycle, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_escape_returns_to_outer_enter, fresh,
                                        no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_yield_count, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_nesting_128, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_self, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_entered, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_in_coroutine, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_order, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_no_dangling_access, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_id_unique_and_growing, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_id_starts_at_one, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_name, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_create_opts_name_and_sizes, fresh,
                                        no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_create_opts_einval, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_create_opts_big_stack, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_create_enomem, fresh, no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_fp_control_is_per_coroutine, fresh,
                                        no_leftovers),
        cmocka_unit_test_setup_teardown(test_coro_100k_lifecycles, fresh, no_leftovers),
    };
    apply_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
