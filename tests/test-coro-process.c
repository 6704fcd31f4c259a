/*
 * What the runtime does to and in a whole process: misuse aborts with one clear line (death
 * tests in a forked child), guard pages below every stack, and fork() with coroutines
 * suspended, running on other threads, or being created at that moment.
 */
#include "coro-test.h"

#include <pthread.h>
#include <sys/mman.h>
#include <stdatomic.h>

static pid_t parent_pid;

static bool in_child(void)
{
    return getpid() != parent_pid;
}

static void nop(void *arg)
{
}

/* ---- death tests ---- */

struct pair {
    Coroutine *alpha, *beta;
};

static void reenter_self(void *opaque)
{
    struct pair *p = opaque;
    if (in_child()) {
        coro_enter(p->alpha); /* alpha is running: itself */
    }
}

static void test_coro_death_reenter_running(void **state)
{
    struct pair p;
    p.alpha = coro_create(reenter_self, &p);
    coro_set_name(p.alpha, "alpha");
    char who[96];
    snprintf(who, sizeof(who), "coroutine %llu \"alpha\" entered coroutine %llu \"alpha\"",
             (unsigned long long)coro_id(p.alpha), (unsigned long long)coro_id(p.alpha));
    const char *needles[] = { "coroscope: fatal: Co-routine re-entered recursively: ", who,
                              "while it is running", "libcoroscope.so", NULL };
    expect_death((ChildFn *)coro_enter, p.alpha, SIGABRT, needles);
    coro_enter(p.alpha); /* in the parent it just returns */
}

static void beta_enters_alpha(void *opaque)
{
    struct pair *p = opaque;
    if (in_child()) {
        coro_enter(p->alpha); /* alpha has entered us: it is nested */
    }
}

static void alpha_enters_beta(void *opaque)
{
    struct pair *p = opaque;
    coro_enter(p->beta);
}

static void test_coro_death_enter_nested(void **state)
{
    struct pair p;
    p.alpha = coro_create(alpha_enters_beta, &p);
    p.beta = coro_create(beta_enters_alpha, &p);
    coro_set_name(p.alpha, "alpha");
    coro_set_name(p.beta, "beta");
    char line[256];
    snprintf(line, sizeof(line),
             "Co-routine re-entered recursively: coroutine %llu \"beta\" entered coroutine "
             "%llu \"alpha\", which has entered coroutine %llu \"beta\"",
             (unsigned long long)coro_id(p.beta), (unsigned long long)coro_id(p.alpha),
             (unsigned long long)coro_id(p.beta));
    const char *needles[] = { line, NULL };
    expect_death((ChildFn *)coro_enter, p.alpha, SIGABRT, needles);
    coro_enter(p.alpha);
}

/* A coroutine running on another thread, entered from this one. */
struct blocked {
    Coroutine *co;
    int ready[2], release[2];
};

static void block_on_pipe(void *opaque)
{
    struct blocked *b = opaque;
    char c;
    if (write(b->ready[1], "r", 1) != 1 || read(b->release[0], &c, 1) != 1) {
        abort();
    }
}

static void *thread_enter(void *arg)
{
    coro_enter(arg);
    return NULL;
}

static void enter_running_elsewhere(void *arg)
{
    struct blocked *b = arg;
    pthread_t t;
    char c;
    pthread_create(&t, NULL, thread_enter, b->co);
    if (read(b->ready[0], &c, 1) != 1) { /* the coroutine runs on t now */
        _exit(3);
    }
    coro_enter(b->co);
}

static void test_coro_death_enter_running_on_other_thread(void **state)
{
    struct blocked b;
    assert_int_equal(pipe(b.ready), 0);
    assert_int_equal(pipe(b.release), 0);
    b.co = coro_create(block_on_pipe, &b);
    coro_set_name(b.co, "worker");
    char line[160];
    snprintf(line, sizeof(line), "entered coroutine %llu \"worker\" while it is running",
             (unsigned long long)coro_id(b.co));
    const char *needles[] = { "re-entered recursively: the thread's own stack (thread ", line,
                              NULL };
    expect_death(enter_running_elsewhere, &b, SIGABRT, needles);
    /* In the parent: let it run to its end. */
    assert_int_equal(write(b.release[1], "x", 1), 1);
    coro_enter(b.co);
    for (int i = 0; i < 2; i++) {
        close(b.ready[i]);
        close(b.release[i]);
    }
}

static void yield_once(void *arg)
{
    coro_yield();
}

static void *yield_on_fresh_thread(void *arg)
{
    coro_yield();
    return NULL;
}

static void yield_outside_fresh_thread(void *arg)
{
    pthread_t t;
    pthread_create(&t, NULL, yield_on_fresh_thread, NULL);
    pthread_join(t, NULL);
}

static void test_coro_death_yield_outside(void **state)
{
    const char *needles[] = { "coroscope: fatal: coro_yield() called outside a coroutine, "
                              "on thread ", NULL };
    /* This thread has used coroutines before... */
    coro_enter(coro_create(nop, NULL));
    expect_death((ChildFn *)coro_yield, NULL, SIGABRT, needles);
    /* ...and a thread that never has. */
    const char *needles2[] = { "coroscope: fatal: coro_yield() called outside a coroutine", NULL };
    expect_death(yield_outside_fresh_thread, NULL, SIGABRT, needles2);
}

static void test_coro_death_enter_terminated(void **state)
{
    Coroutine *co = coro_create(yield_once, NULL); /* yields once, then returns */
    coro_enter(co);
    coro_enter(co);
    const char *needles[] = { "that coroutine has terminated (use after termination)", NULL };
    expect_death((ChildFn *)coro_enter, co, SIGABRT, needles);
}

static void enter_null(void *arg)
{
    coro_enter(NULL);
}

static void *enter_null_on_fresh_thread(void *arg)
{
    coro_enter(NULL); /* the first coroscope call of this thread */
    return NULL;
}

static void enter_null_fresh_thread(void *arg)
{
    pthread_t t;
    pthread_create(&t, NULL, enter_null_on_fresh_thread, NULL);
    pthread_join(t, NULL);
}

static void enter_null_inside(void *arg)
{
    if (in_child()) {
        coro_enter(NULL);
    }
}

static void test_coro_death_enter_null(void **state)
{
    /* On a thread that has used coroutines (the fast path's check)... */
    coro_enter(coro_create(nop, NULL));
    const char *needles[] = { "coroscope: fatal: coro_enter(NULL) from the thread's own stack "
                              "(thread ", "no coroutine to enter", NULL };
    expect_death(enter_null, NULL, SIGABRT, needles);
    /* ...on one that never has... */
    expect_death(enter_null_fresh_thread, NULL, SIGABRT, needles);
    /* ...and inside a coroutine. */
    CoroutineOptions o = { .name = "caller" };
    Coroutine *co = coro_create_opts(enter_null_inside, NULL, &o);
    char who[96];
    snprintf(who, sizeof(who), "coro_enter(NULL) from coroutine %llu \"caller\"",
             (unsigned long long)coro_id(co));
    const char *needles2[] = { who, NULL };
    expect_death((ChildFn *)coro_enter, co, SIGABRT, needles2);
    coro_enter(co); /* in the parent it just returns */
}

/* ---- guard pages ---- */

static void write_below_stack(void *arg)
{
    RecView v = rec_get(coro_id(arg));
    volatile char *lowest = (volatile char *)(uintptr_t)v.stack_base;
    lowest[0] = 1;            /* the lowest usable byte is writable... */
    fprintf(stderr, "lowest byte written\n");
    lowest[-1] = 1;           /* ...the one below it is not */
    fprintf(stderr, "guard byte written\n");
}

static unsigned long recurse(unsigned long n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    return n ? recurse(n - 1) + pad[0] : 0;
}

static void overflow_fn(void *arg)
{
    fprintf(stderr, "%lu\n", recurse(1ul << 30));
}

static void overflow_child(void *arg)
{
    /* Runs off the bottom of a 64 KiB coroutine stack into its guard page. */
    CoroutineOptions o = { .name = "deep", .stack_size = 64 * 1024 };
    coro_enter(coro_create_opts(overflow_fn, NULL, &o));
}

static void yield_twice(void *arg)
{
    coro_yield();
    coro_yield();
}

static void test_coro_guard_page_faults(void **state)
{
    /* A new default stack, one with an odd size, and a pooled stack handed out again. */
    size_t sizes[] = { 0, 20000, 0 };
    for (int i = 0; i < 3; i++) {
        CoroutineOptions o = { .stack_size = sizes[i] };
        Coroutine *co = coro_create_opts(yield_twice, NULL, &o);
        coro_enter(co);
        const char *needles[] = { "lowest byte written", NULL };
        expect_death(write_below_stack, co, SIGSEGV, needles);
        coro_enter(co);
        coro_enter(co);
    }
    expect_death(overflow_child, NULL, SIGSEGV, NULL);
}

/* The mapping of /proc/self/maps that contains addr: its bounds and permissions. */
static bool mapping_of(uint64_t addr, uint64_t *lo, uint64_t *hi, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx %4s", &a, &b, perms) == 3 && addr >= a && addr < b) {
            *lo = a;
            *hi = b;
            found = true;
        }
    }
    if (f) {
        fclose(f);
    }
    return found;
}

static unsigned count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    unsigned n = 0;
    int c;
    while (f && (c = getc(f)) != EOF) {
        n += c == '\n';
    }
    if (f) {
        fclose(f);
    }
    return n;
}

/* Exec'd with CORO_STACK_GUARD=mprotect: the guard is a PROT_NONE mapping of its own. */
static int guard_mprotect_mode(void)
{
    Coroutine *co = coro_create(yield_twice, NULL);
    coro_enter(co);
    RecView v;
    if (!rec_find(coro_id(co), &v)) {
        fprintf(stderr, "coroutine not in the registry\n");
        return 1;
    }
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), lo, hi;
    char perms[5];
    if (mapping_of(v.stack_base - 1, &lo, &hi, perms) && strcmp(perms, "---p") == 0 &&
        hi == v.stack_base && lo == v.stack_base - page) {
        fprintf(stderr, "separate guard mapping\n");
    }
    child_expect_signal(SIGSEGV);
    write_below_stack(co);
    return 0;
}

static void exec_guard_mprotect(void *arg)
{
    setenv("CORO_STACK_GUARD", "mprotect", 1);
    execl(arg, arg, "--guard-mprotect", (char *)NULL);
    _exit(3);
}

static const char *self_path;

static void test_coro_guard_page_mprotect_fallback(void **state)
{
    const char *needles[] = { "separate guard mapping", "lowest byte written", NULL };
    expect_death(exec_guard_mprotect, (void *)self_path, SIGSEGV, needles);
}

/*
 * Where the kernel has MADV_GUARD_INSTALL, guards do not split mappings: more coroutines
 * than vm.max_map_count allows mprotect-guarded stacks (65530 maps, 2 per stack: ~32.7k).
 */
static void test_coro_guard_pages_do_not_split_mappings(void **state)
{
    long page = sysconf(_SC_PAGESIZE);
    char *probe = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(probe != MAP_FAILED);
    bool have = madvise(probe, (size_t)page, 102 /* MADV_GUARD_INSTALL */) == 0;
    munmap(probe, 2 * (size_t)page);
    FILE *oc = fopen("/proc/sys/vm/overcommit_memory", "r");
    int overcommit = 0;
    if (oc) {
        if (fscanf(oc, "%d", &overcommit) != 1) {
            overcommit = 0;
        }
        fclose(oc);
    }
    if (!have || RUNNING_ON_VALGRIND || getenv("CORO_STACK_GUARD") || overcommit == 2) {
        /* Old kernel, valgrind (which caps its own mappings), guards forced to mprotect, or
         * strict overcommit (17 GiB of stacks would be refused). */
        skip();
    }
#ifdef __SANITIZE_THREAD__
    /* ThreadSanitizer keeps shadow and metadata memory for every mapping: stacks failed with
     * ENOMEM after ~31,000 of the 70,000 (make check-tsan, 2026-12-04). */
    print_message("skipped under ThreadSanitizer: its shadow memory does not fit 70,000 "
                  "stacks\n");
    skip();
#endif
    enum { N = 70000 };
    Coroutine **cos = malloc(N * sizeof(*cos));
    assert_non_null(cos);
    unsigned before = count_mappings();
    for (unsigned i = 0; i < N; i++) {
        cos[i] = coro_create(yield_once, NULL);
        if (!cos[i]) {
            fail_msg("coroutine %u of %u: %s", i, N, strerror(errno));
        }
    }
    unsigned after = count_mappings();
    for (unsigned i = 0; i < N; i++) {
        coro_enter(cos[i]);
        coro_enter(cos[i]);
    }
    free(cos);
    /* Stacks merge into few mappings: nowhere near one per coroutine. */
    assert_true(after < before + 1000);
}

/* ---- AddressSanitizer knows which stack a coroutine runs on ---- */

#ifdef __SANITIZE_ADDRESS__
static jmp_buf asan_jb;

static __attribute__((noinline)) void asan_jump(void)
{
    longjmp(asan_jb, 1);
}

static __attribute__((noinline)) void asan_overflow(void)
{
    char buf[16];
    char *p = buf;
    volatile int i = 16;
    __asm__ volatile("" : "+r"(p));
    p[i] = 1; /* one past the end */
    __asm__ volatile("" ::"r"(buf) : "memory");
}

static __attribute__((noinline)) void asan_overflow_fn(void *arg)
{
    /* longjmp makes ASan unpoison the current stack, which it must know to be this
     * coroutine's: otherwise it warns that it is ignoring the request. */
    if (!setjmp(asan_jb)) {
        asan_jump();
    }
    coro_yield();
    asan_overflow();
}

static void asan_child(void *arg)
{
    Coroutine *co = coro_create(asan_overflow_fn, NULL);
    coro_enter(co);
    fprintf(stderr, "jumped and yielded\n");
    coro_enter(co);
}
#endif

static void test_coro_asan_knows_coroutine_stacks(void **state)
{
#ifdef __SANITIZE_ADDRESS__
    ChildResult r;
    run_child(asan_child, NULL, 30, &r);
    if (!strstr(r.out, "jumped and yielded") || strstr(r.out, "ignoring requested") ||
        !strstr(r.out, "ERROR: AddressSanitizer: stack-buffer-overflow") ||
        !strstr(r.out, "in asan_overflow ") || WIFEXITED(r.status) == 0 ||
        WEXITSTATUS(r.status) == 0) {
        print_error("child stderr:\n%s\n", r.out);
        fail_msg("ASan did not see the coroutine's stack as expected (status 0x%x)", r.status);
    }
#else
    skip();
#endif
}

/* ---- fork ---- */

struct fork_world {
    Coroutine *s1, *s2;           /* main thread: suspended, created */
    Coroutine *running, *tsusp;   /* thread T: running (blocked), suspended */
    uint64_t main_shard, t_shard;
    int fds[2];                   /* releases T's running coroutine */
    int ready[2];
    pthread_t t;
    unsigned done;
};

static void count_done(void *opaque)
{
    struct fork_world *w = opaque;
    coro_yield();
    w->done++;
}

static void block_until_released(void *opaque)
{
    struct fork_world *w = opaque;
    char c;
    if (write(w->ready[1], "r", 1) != 1 || read(w->fds[0], &c, 1) != 1) {
        abort();
    }
}

static void *fork_thread(void *arg)
{
    struct fork_world *w = arg;
    w->t_shard = 0;
    w->tsusp = coro_create(count_done, w);
    coro_enter(w->tsusp);
    w->t_shard = shard_of((int32_t)gettid());
    w->running = coro_create(block_until_released, w);
    coro_set_name(w->running, "stuck-in-T");
    coro_enter(w->running);
    return NULL;
}

static void check_child_registry(void *arg)
{
    struct fork_world *w = arg;
    const struct coro_debug_abi *d = abi();
    int32_t me = (int32_t)gettid();
    child_check(me == getpid(), "the child's only thread is its main thread");
    /* This thread's shard carries over with the child's tid; T's shard is released. */
    child_check(shard_of(me) == w->main_shard, "shard %#llx, expected %#llx",
                (unsigned long long)shard_of(me), (unsigned long long)w->main_shard);
    child_check(rd32(w->t_shard, d->shard_off_tid) == 0, "T's shard tid %d",
                (int)rd32(w->t_shard, d->shard_off_tid));
    struct count_arg cnt;
    child_check(registry_scan(&cnt), "registry list well formed");
    child_check(coro_live_count() == 4, "live %zu", coro_live_count());
    child_check(cnt.live == 4, "registry %llu", (unsigned long long)cnt.live);

    /* New coroutines work and are recorded with the child's tid. */
    Coroutine *c = coro_create(yield_twice, NULL);
    coro_set_name(c, "child-new");
    coro_enter(c);
    RecView v;
    child_check(rec_find(coro_id(c), &v), "new coroutine in the registry");
    child_check(v.state == CORO_STATE_SUSPENDED && v.tid == me, "state %u tid %d", v.state,
                v.tid);
    child_check(strcmp(v.name, "child-new") == 0, "name %s", v.name);
    coro_enter(c);
    coro_enter(c);

    /* Coroutines suspended before the fork resume in the child, T's one included. */
    coro_enter(w->s1);
    coro_enter(w->s2);
    coro_enter(w->s2);
    child_check(rec_find(coro_id(w->tsusp), &v) && v.tid != me, "T's suspended coroutine");
    coro_enter(w->tsusp);
    child_check(w->done == 3, "done %u", w->done);

    /* What is left: the coroutine that was running on T, a thread the child does not have. */
    child_check(registry_scan(&cnt), "registry list well formed");
    child_check(coro_live_count() == 1, "live %zu", coro_live_count());
    child_check(cnt.live == 1 && cnt.by_state[CORO_STATE_TERMINATED] == 0, "registry %llu",
                (unsigned long long)cnt.live);
    child_check(rec_find(coro_id(w->running), &v) && v.state == CORO_STATE_RUNNING,
                "T's running coroutine");
    child_check(rd64(shard_of(me), d->shard_off_current) == 0, "current");
}

static void test_coro_fork_child_registry(void **state)
{
    struct fork_world w;
    memset(&w, 0, sizeof(w));
    assert_int_equal(pipe(w.fds), 0);
    assert_int_equal(pipe(w.ready), 0);
    w.s1 = coro_create(count_done, &w);
    coro_enter(w.s1);
    w.s2 = coro_create(count_done, &w);
    w.main_shard = shard_of((int32_t)gettid());
    assert_int_not_equal(w.main_shard, 0);
    assert_int_equal(pthread_create(&w.t, NULL, fork_thread, &w), 0);
    char c;
    assert_int_equal(read(w.ready[0], &c, 1), 1); /* T is inside its running coroutine */
    assert_int_not_equal(w.t_shard, 0);
    assert_int_equal(coro_live_count(), 4);

    expect_clean_exit(check_child_registry, &w, 30);

    /* The parent is untouched: release T and finish everything. */
    assert_int_equal(rd32(w.t_shard, abi()->shard_off_tid) != 0, 1);
    assert_int_equal(write(w.fds[1], "x", 1), 1);
    pthread_join(w.t, NULL);
    coro_enter(w.s1);
    coro_enter(w.s2);
    coro_enter(w.s2);
    coro_enter(w.tsusp);
    assert_int_equal(w.done, 3);
    for (int i = 0; i < 2; i++) {
        close(w.fds[i]);
        close(w.ready[i]);
    }
}

/*
 * fork() called inside a coroutine, nested in another: the child goes on in that coroutine,
 * on its only thread, and the registry says so (running on the child's tid, not the parent's).
 */
struct fork_inside {
    Coroutine *outer, *inner;
    pid_t child;
    bool child_ok;
};

static void fork_inside_inner(void *opaque)
{
    struct fork_inside *f = opaque;
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) {
        f->child = pid;
        coro_yield();
        return;
    }
    /* In the child: still in this coroutine, entered by outer. */
    int32_t me = (int32_t)gettid();
    const struct coro_debug_abi *d = abi();
    RecView in, out;
    child_check(coro_self() == f->inner, "coro_self");
    child_check(rec_find(coro_id(f->inner), &in) && rec_find(coro_id(f->outer), &out),
                "records");
    child_check(in.state == CORO_STATE_RUNNING && in.tid == me, "inner: state %u tid %d, "
                "child %d", in.state, in.tid, me);
    child_check(out.state == CORO_STATE_NESTED && out.tid == me, "outer: state %u tid %d",
                out.state, out.tid);
    child_check(shard_of(me) && rd64(shard_of(me), d->shard_off_current) == in.addr,
                "shard current");
    coro_yield(); /* back to outer, in the child */
    _exit(70);
}

static void fork_inside_outer(void *opaque)
{
    struct fork_inside *f = opaque;
    coro_enter(f->inner);
    if (getpid() != parent_pid) {
        /* The child's inner yielded to us: finish it and leave through the thread's stack. */
        coro_yield();
    }
}

static void test_coro_fork_inside_coroutine(void **state)
{
    struct fork_inside f = { 0 };
    f.outer = coro_create(fork_inside_outer, &f);
    f.inner = coro_create(fork_inside_inner, &f);
    coro_enter(f.outer);
    if (getpid() != parent_pid) {
        /* The child is back on its main stack: its outer yielded. */
        RecView v;
        child_check(rec_find(coro_id(f.outer), &v) && v.state == CORO_STATE_SUSPENDED &&
                    v.tid == (int32_t)gettid(), "outer suspended in the child");
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(f.child, &status, 0), f.child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    coro_enter(f.inner); /* parent: finish both */
}

/* fork() while another thread is creating and terminating coroutines as fast as it can, on
 * the paths that take the registry and pool locks: the child must not deadlock. */
static _Atomic bool churn_stop;
static _Atomic unsigned long churn_rounds;

static void churn_batch(unsigned n)
{
    static __thread Coroutine *cos[300];
    for (unsigned i = 0; i < n; i++) {
        CoroutineOptions o = { .stack_size = i % 7 == 0 ? 32 * 1024 : 0 };
        cos[i] = coro_create_opts(yield_once, NULL, &o);
        if (!cos[i]) {
            abort();
        }
        coro_enter(cos[i]);
    }
    for (unsigned i = 0; i < n; i++) {
        coro_enter(cos[i]);
    }
}

static void *churn_thread(void *arg)
{
    while (!atomic_load(&churn_stop)) {
        churn_batch(300); /* more than a thread cache: spills to the shared pool */
        coro_enter(coro_create(nop, NULL));
        atomic_fetch_add(&churn_rounds, 1);
    }
    return NULL;
}

/*
 * In the child, the churning threads are gone; what they were doing at the fork stays in the
 * registry as it was: their batches (suspended), the coroutine each was running, possibly a
 * record between termination and its return to the pool (TERMINATED, which readers skip) or
 * one being created (in the registry, not yet in the counters), and so registry and counters
 * may differ by one per thread. The child's own work must
 * change none of that.
 */
static void fork_child_work(void *arg)
{
    struct count_arg c0, c1;
    child_check(registry_scan(&c0), "registry list well formed after fork");
    size_t live0 = coro_live_count();
    child_check(c0.by_state[CORO_STATE_TERMINATED] <= 2, "terminated %llu",
                (unsigned long long)c0.by_state[CORO_STATE_TERMINATED]);
    /* A thread caught between publishing a state and bumping its counter leaves them one
     * apart in the child, for good. */
    child_check(c0.live + 2 >= live0 && c0.live <= live0 + 2, "registry %llu, counters %zu",
                (unsigned long long)c0.live, live0);
    churn_batch(300);
    child_check(registry_scan(&c1), "registry list well formed");
    child_check(coro_live_count() == live0, "live %zu, was %zu", coro_live_count(), live0);
    child_check(c1.live == c0.live, "registry %llu, was %llu", (unsigned long long)c1.live,
                (unsigned long long)c0.live);
    child_check(c1.by_state[CORO_STATE_TERMINATED] == c0.by_state[CORO_STATE_TERMINATED],
                "terminated %llu", (unsigned long long)c1.by_state[CORO_STATE_TERMINATED]);
}

static void test_coro_fork_during_create(void **state)
{
    pthread_t t[2];
    unsigned forks = scaled(400, 200);
    atomic_store(&churn_stop, false);
    atomic_store(&churn_rounds, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, churn_thread, NULL), 0);
    }
    while (atomic_load(&churn_rounds) < 2) {
        usleep(100);
    }
    for (unsigned i = 0; i < forks; i++) {
        expect_clean_exit(fork_child_work, NULL, 20);
    }
    atomic_store(&churn_stop, true);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--guard-mprotect") == 0) {
        return guard_mprotect_mode();
    }
    self_path = argv[0];
    parent_pid = getpid();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_coro_death_reenter_running, no_leftovers),
        cmocka_unit_test_teardown(test_coro_death_enter_nested, no_leftovers),
        cmocka_unit_test_teardown(test_coro_death_enter_running_on_other_thread, no_leftovers),
        cmocka_unit_test_teardown(test_coro_death_yield_outside, no_leftovers),
        cmocka_unit_test_teardown(test_coro_death_enter_terminated, no_leftovers),
        cmocka_unit_test_teardown(test_coro_death_enter_null, no_leftovers),
        cmocka_unit_test_teardown(test_coro_guard_page_faults, no_leftovers),
        cmocka_unit_test_teardown(test_coro_guard_page_mprotect_fallback, no_leftovers),
        cmocka_unit_test_teardown(test_coro_asan_knows_coroutine_stacks, no_leftovers),
        cmocka_unit_test_teardown(test_coro_fork_child_registry, no_leftovers),
        cmocka_unit_test_teardown(test_coro_fork_inside_coroutine, no_leftovers),
        cmocka_unit_test_teardown(test_coro_fork_during_create, no_leftovers),
        /* Last: forks are slower once a process has had 70,000 coroutines. */
        cmocka_unit_test_teardown(test_coro_guard_pages_do_not_split_mappings, no_leftovers),
    };
    apply_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
