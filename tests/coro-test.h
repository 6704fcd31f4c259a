/*
 * Helpers shared by the runtime's cmocka binaries (tests/test-coro*.c): a registry reader
 * that walks the debug ABI the way an outside tool does (offsets from the descriptor, found
 * by symbol), death tests in a forked child, and scaling for valgrind.
 *
 * Header-only and static: each test binary is one translation unit.
 */
#ifndef COROSCOPE_TESTS_CORO_TEST_H
#define COROSCOPE_TESTS_CORO_TEST_H

#define _GNU_SOURCE
#include <coroscope/coro.h>
#include <coroscope/debug-abi.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#include <cmocka.h>

/* Valgrind serialises threads and runs code ~30x slower: scale loop counts down there. */
/* Iteration counts for the slow tools: valgrind runs one thread at a time, ThreadSanitizer
 * checks every access (5-15x slower, and its fibers cost a switch each). */
static inline unsigned scaled(unsigned n, unsigned valgrind_divisor)
{
#ifdef __SANITIZE_THREAD__
    bool slow = true;
#else
    bool slow = RUNNING_ON_VALGRIND;
#endif
    return slow ? (n / valgrind_divisor ? n / valgrind_divisor : 1) : n;
}

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the registry, read as an outside reader does ---- */

/* The descriptor, found by its documented symbol name (not by including runtime headers). */
static inline const struct coro_debug_abi *abi(void)
{
    static const struct coro_debug_abi *d;
    if (!d) {
        d = dlsym(RTLD_DEFAULT, CORO_DEBUG_ABI_SYMBOL);
        if (!d) {
            fail_msg("symbol %s not found: %s", CORO_DEBUG_ABI_SYMBOL, dlerror());
        }
    }
    return d;
}

/*
 * Copies live registry memory as an outside reader does (gdb, `coroscope ps -p`): racing
 * with the threads that write it, by design of the debug ABI (the seqlock and the readers'
 * checks make a torn copy harmless). ThreadSanitizer is not told of these reads — it cannot
 * see those of another process either; the runtime's own accesses stay checked. A byte loop,
 * not memcpy, which TSan intercepts.
 */
__attribute__((noinline, no_sanitize_thread, optimize("no-tree-loop-distribute-patterns")))
static void racy_copy(void *dst, const void *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ((char *)dst)[i] = ((const volatile char *)src)[i];
    }
}

static inline uint64_t rd64(uint64_t base, uint32_t off)
{
    uint64_t v;
    racy_copy(&v, (const void *)(uintptr_t)(base + off), sizeof(v));
    return v;
}

static inline uint32_t rd32(uint64_t base, uint32_t off)
{
    uint32_t v;
    racy_copy(&v, (const void *)(uintptr_t)(base + off), sizeof(v));
    return v;
}

/* One record as a reader sees it. */
typedef struct RecView {
    uint64_t addr, id, next;
    uint32_t state, seq;
    char name[64];
    uint64_t rsp, rip, rbp, rbx, r12, r13, r14, r15;
    uint32_t mxcsr;
    uint16_t fpucw;
    uint64_t stack_base, stack_size, entry, opaque, create_site, caller, switch_count;
    uint64_t generation;
    int32_t tid;
} RecView;

static inline void rec_read(uint64_t addr, RecView *v)
{
    const struct coro_debug_abi *d = abi();
    const struct coro_debug_regs_layout *r = &d->regs;
    uint64_t regs = addr + d->off_regs;
    memset(v, 0, sizeof(*v));
    v->addr = addr;
    v->next = rd64(addr, d->off_next);
    v->id = rd64(addr, d->off_id);
    v->state = rd32(addr, d->off_state);
    v->seq = rd32(addr, d->off_seq);
    size_t n = d->name_size < sizeof(v->name) ? d->name_size : sizeof(v->name) - 1;
    racy_copy(v->name, (const void *)(uintptr_t)(addr + d->off_name), n);
    v->name[sizeof(v->name) - 1] = '\0';
    v->rsp = rd64(regs, r->rsp);
    v->rip = rd64(regs, r->rip);
    v->rbp = rd64(regs, r->rbp);
    v->rbx = rd64(regs, r->rbx);
    v->r12 = rd64(regs, r->r12);
    v->r13 = rd64(regs, r->r13);
    v->r14 = rd64(regs, r->r14);
    v->r15 = rd64(regs, r->r15);
    v->mxcsr = rd32(regs, r->mxcsr);
    racy_copy(&v->fpucw, (const void *)(uintptr_t)(regs + r->fpucw), sizeof(v->fpucw));
    v->stack_base = rd64(addr, d->off_stack_base);
    v->stack_size = rd64(addr, d->off_stack_size);
    v->entry = rd64(addr, d->off_entry);
    v->opaque = rd64(addr, d->off_opaque);
    v->create_site = rd64(addr, d->off_create_site);
    v->caller = rd64(addr, d->off_caller);
    v->switch_count = rd64(addr, d->off_switch_count);
    v->generation = rd64(addr, d->off_generation);
    v->tid = (int32_t)rd32(addr, d->off_tid);
}

static inline bool state_is_live(uint32_t s)
{
    return s == CORO_STATE_CREATED || s == CORO_STATE_RUNNING || s == CORO_STATE_SUSPENDED ||
           s == CORO_STATE_NESTED;
}

/*
 * Walks the record list, bounded by nrecords as the ABI says. Calls fn on each record (stop
 * when it returns true); returns the number of records walked. The walk must end exactly at
 * nrecords when the process is quiescent: checked by the callers that care.
 */
typedef bool RecVisit(const RecView *v, void *arg);

static inline uint64_t rec_walk(RecVisit *fn, void *arg)
{
    const struct coro_debug_abi *d = abi();
    uint64_t limit = __atomic_load_n(&d->nrecords, __ATOMIC_ACQUIRE);
    uint64_t p = __atomic_load_n(&d->records, __ATOMIC_ACQUIRE);
    uint64_t n = 0;
    for (; p && n < limit; n++) {
        RecView v;
        rec_read(p, &v);
        if (fn && fn(&v, arg)) {
            return n + 1;
        }
        p = v.next;
    }
    return n;
}

struct find_arg {
    uint64_t id;
    RecView *out;
    bool found;
};

static inline bool find_visit(const RecView *v, void *arg)
{
    struct find_arg *a = arg;
    if (v->id == a->id && state_is_live(v->state)) {
        *a->out = *v;
        a->found = true;
        return true;
    }
    return false;
}

/* The live record with this id; false when there is none (terminated or pooled). */
static inline bool rec_find(uint64_t id, RecView *out)
{
    struct find_arg a = { id, out, false };
    rec_walk(find_visit, &a);
    return a.found;
}

static inline RecView rec_get(uint64_t id)
{
    RecView v;
    if (!rec_find(id, &v)) {
        fail_msg("coroutine %llu is not in the registry", (unsigned long long)id);
    }
    return v;
}

struct count_arg {
    uint64_t live, by_state[8], other;
};

static inline bool count_visit(const RecView *v, void *arg)
{
    struct count_arg *a = arg;
    if (v->state < 8) {
        a->by_state[v->state]++;
    } else {
        a->other++;
    }
    if (state_is_live(v->state)) {
        a->live++;
    }
    return false;
}

/* Counts the records by state; false when the list is not exactly nrecords long or a
 * record has a state that does not exist. No cmocka asserts: usable in a forked child. */
static inline bool registry_scan(struct count_arg *a)
{
    memset(a, 0, sizeof(*a));
    uint64_t walked = rec_walk(count_visit, a);
    return walked == abi()->nrecords && a->other == 0;
}

/* Live (non-FREE, non-terminated) records in the registry; asserts the list is well formed
 * and that no record is caught between termination and its return to the pool. */
static inline uint64_t registry_live(void)
{
    struct count_arg a;
    assert_true(registry_scan(&a));
    assert_int_equal(a.by_state[CORO_STATE_TERMINATED], 0);
    return a.live;
}

/* The shard of the thread with this kernel tid, or 0. */
static inline uint64_t shard_of(int32_t tid)
{
    const struct coro_debug_abi *d = abi();
    uint64_t p = __atomic_load_n(&d->shards, __ATOMIC_ACQUIRE);
    for (uint64_t n = 0; p && n < d->nshards; n++) {
        if ((int32_t)rd32(p, d->shard_off_tid) == tid) {
            return p;
        }
        p = rd64(p, d->shard_off_next);
    }
    return 0;
}

/* ---- running code in a child process ---- */

typedef void ChildFn(void *arg);

typedef struct ChildResult {
    int status;      /* from waitpid */
    char out[8192];  /* the child's stderr, NUL-terminated, truncated */
    bool timed_out;
} ChildResult;

static void exit_on_signal(int sig)
{
    _exit(128 + sig);
}

/*
 * Prepares a child that is expected to die of sig. Natively it gets the default action (a
 * sanitizer's handler would turn it into an exit). Under valgrind, whose report of a fatal
 * signal would fill the test log with a false alarm, the child catches it on an alternate
 * stack and exits 128 + sig instead: the signal was still raised.
 */
static inline void child_expect_signal(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    if (RUNNING_ON_VALGRIND) {
        static char altstack[64 * 1024];
        stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
        sigaltstack(&ss, NULL);
        sa.sa_handler = exit_on_signal;
        sa.sa_flags = SA_ONSTACK;
    } else {
        sa.sa_handler = SIG_DFL;
    }
    sigaction(sig, &sa, NULL);
}

static inline bool died_of(int status, int sig)
{
    return (WIFSIGNALED(status) && WTERMSIG(status) == sig) ||
           (RUNNING_ON_VALGRIND && WIFEXITED(status) && WEXITSTATUS(status) == 128 + sig);
}

/*
 * Runs fn(arg) in a forked child whose stderr goes to a pipe; the child exits 0 when fn
 * returns. Kills the child after timeout_s seconds (a deadlock is a failure, not a hang).
 * sig: the signal the child is expected to die of, or 0.
 */
static inline void run_child_sig(ChildFn *fn, void *arg, double timeout_s, int sig,
                                 ChildResult *r)
{
    int fds[2];
    memset(r, 0, sizeof(*r));
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        if (sig) {
            child_expect_signal(sig);
        }
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    double deadline = now_seconds() + timeout_s;
    for (;;) {
        int left_ms = (int)((deadline - now_seconds()) * 1000);
        if (left_ms <= 0) {
            r->timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
        int pr = poll(&pfd, 1, left_ms);
        if (pr < 0 && errno == EINTR) {
            continue;
        }
        if (pr <= 0) {
            continue;
        }
        char buf[1024];
        ssize_t got = read(fds[0], buf, sizeof(buf));
        if (got <= 0) {
            break;
        }
        size_t room = sizeof(r->out) - 1 - len;
        size_t take = (size_t)got < room ? (size_t)got : room;
        memcpy(r->out + len, buf, take);
        len += take;
    }
    r->out[len] = '\0';
    close(fds[0]);
    while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR) {
    }
}

static inline void run_child(ChildFn *fn, void *arg, double timeout_s, ChildResult *r)
{
    run_child_sig(fn, arg, timeout_s, 0, r);
}

/* Asserts that the child died of signal sig and that its stderr contains every needle. */
static inline void expect_death(ChildFn *fn, void *arg, int sig, const char *const *needles)
{
    ChildResult r;
    run_child_sig(fn, arg, 30, sig, &r);
    if (r.timed_out || !died_of(r.status, sig)) {
        print_error("child stderr:\n%s\n", r.out);
        fail_msg("expected death by signal %d; got status 0x%x%s", sig, r.status,
                 r.timed_out ? " (timed out)" : "");
    }
    for (; needles && *needles; needles++) {
        if (!strstr(r.out, *needles)) {
            print_error("child stderr:\n%s\n", r.out);
            fail_msg("message \"%s\" missing from the child's stderr", *needles);
        }
    }
}

/* Asserts that the child exited 0 in time; shows its stderr otherwise. */
static inline void expect_clean_exit(ChildFn *fn, void *arg, double timeout_s)
{
    ChildResult r;
    run_child(fn, arg, timeout_s, &r);
    if (r.timed_out || !WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        print_error("child stderr:\n%s\n", r.out);
        fail_msg("child failed: status 0x%x%s", r.status, r.timed_out ? " (timed out)" : "");
    }
}

/* In a child: a failed check prints one line and exits 1 (cmocka's asserts must not run
 * there, they would longjmp into the parent's copy of the runner). */
#define child_check(cond, ...)                                                        \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            _exit(1);                                                                 \
        }                                                                             \
    } while (0)

/* CORO_TEST_FILTER=pattern (cmocka's glob) runs only the matching tests of a binary. */
static inline void apply_test_filter(void)
{
    const char *f = getenv("CORO_TEST_FILTER");
    if (f && *f) {
        cmocka_set_test_filter(f);
    }
}

/* Per-test teardown: every test must leave no coroutine behind, in the counters and in the
 * registry. */
static inline int no_leftovers(void **state)
{
    (void)state;
    assert_int_equal(coro_live_count(), 0);
    assert_int_equal(registry_live(), 0);
    return 0;
}

#endif /* COROSCOPE_TESTS_CORO_TEST_H */
