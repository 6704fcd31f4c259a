/*
 * The in-process dump: coro_dump() and the leak checks read this process's registry through
 * the self target and print with the shared formatter, exactly as `coroscope bt` does for
 * another process.
 *
 * The target, its Dwfl, the unwinder's rule cache and the symbolizer's caches live for the
 * rest of the process (symbol tables are sorted once, every pc is resolved once), behind one
 * lock. Modules loaded later (dlopen) are reported when dl_iterate_phdr's load counter moves;
 * modules are never removed from the Dwfl, so cached strings stay valid.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inspect-int.h"

extern struct coro_debug_abi coroscope_debug_abi;

static pthread_mutex_t engine_lock = PTHREAD_MUTEX_INITIALIZER;
static CoroTarget *self_target;
static CoroUnwinder *unwinder;
static CoroSymbolizer *symbolizer;
static unsigned long long reported_adds;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* fork: no other thread may hold the engine across it, and the child reads itself. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&engine_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&engine_lock);
}

static void atfork_child(void)
{
    if (self_target) {
        coro__self_target_forked(self_target);
    }
    pthread_mutex_unlock(&engine_lock);
}

static void register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static int count_adds(struct dl_phdr_info *info, size_t size, void *data)
{
    *(unsigned long long *)data = info->dlpi_adds;
    return 1;
}

static unsigned long long loaded_adds(void)
{
    unsigned long long adds = 0;
    dl_iterate_phdr(count_adds, &adds);
    return adds;
}

static void say_corrupt(int fd, const char *why);

/* Opens the engine once; re-reports modules when objects were loaded since. A registry that
 * cannot be read is said on fd (say_corrupt). */
static int engine_open_locked(int fd)
{
    if (!self_target) {
        unsigned long long adds = loaded_adds();
        int rc = coro__self_target_open(&self_target);
        if (rc < 0) {
            return rc;
        }
        struct coro_debug_abi abi;
        rc = coro__abi_read(self_target, coro__self_abi_addr(), &abi);
        if (rc < 0) {
            /* The caller gets -errno and the reason; never an abort in its process. */
            say_corrupt(fd, self_target->error);
            self_target->ops->close(self_target);
            self_target = NULL;
            return rc;
        }
        unwinder = coro__unwinder_create(self_target, self_target->dwfl, &abi);
        symbolizer = coro__symbolizer_create(self_target->dwfl);
        if (!unwinder || !symbolizer) {
            coro__unwinder_destroy(unwinder);
            coro__symbolizer_destroy(symbolizer);
            self_target->ops->close(self_target);
            self_target = NULL;
            unwinder = NULL;
            symbolizer = NULL;
            return -ENOMEM;
        }
        reported_adds = adds;
        return 0;
    }
    unsigned long long adds = loaded_adds();
    if (adds != reported_adds) {
        /* Keep the old modules (begin_add): cached names point into them. */
        dwfl_report_begin_add(self_target->dwfl);
        self_target->ops->report_modules(self_target, self_target->dwfl);
        dwfl_report_end(self_target->dwfl, NULL, NULL);
        reported_adds = adds;
    }
    return 0;
}

/* The coroutine running on this thread and the chain that entered it: alive by definition,
 * never a leak. Chains are short; at most CHAIN_MAX are remembered. */
#define CHAIN_MAX 256

static size_t own_chain(const CoroRegistry *reg, uint64_t self, uint64_t *chain)
{
    size_t n = 0;
    for (uint64_t c = self; c && n < CHAIN_MAX;) {
        chain[n++] = c;
        uint64_t next = 0;
        for (size_t i = 0; i < reg->ncoros; i++) {
            if (reg->coros[i].record == c) {
                next = reg->coros[i].caller;
                break;
            }
        }
        c = next;
    }
    return n;
}

static bool in_chain(const uint64_t *chain, size_t n, uint64_t record)
{
    for (size_t i = 0; i < n; i++) {
        if (chain[i] == record) {
            return true;
        }
    }
    return false;
}

typedef struct DumpJob {
    int fd;
    int format;                   /* CORO_DUMP_*, or -1: leak report */
    bool leak_only;
    uint64_t since;               /* leak generation mark */
    const char *leak_title;       /* first line of a leak report */
    size_t leaks;                 /* out: coroutines reported */
} DumpJob;

/*
 * With other threads running, a coroutine suspended when the registry was read may have been
 * resumed (its stack changing under the unwinder) before its frames were read. Its seqlock
 * tells: when it moved, unwind it again from what its record says now (twice at most), and
 * say so if it keeps moving.
 */
static int recheck(const CoroRegistry *reg, const CoroInfo *ci, CoroBacktrace *bt)
{
    CoroInfo now = *ci;
    for (int round = 0; round < 2; round++) {
        CoroInfo again;
        int rc = coro__registry_read_one(self_target, &reg->abi, now.record, &again);
        if (rc == 0 && again.id == now.id && again.seq == now.seq) {
            return 0;
        }
        if (rc == -ESTALE || (rc == 0 && again.id != now.id)) {
            /* It ended while we read it: frames read from a reused stack would be wrong. */
            coro__backtrace_drop_frames(bt);
            return coro__backtrace_error(bt, "terminated while being read");
        }
        if (rc < 0) {
            coro__backtrace_drop_frames(bt);
            return coro__backtrace_error(bt, "changed while being read");
        }
        coro__backtrace_fini(bt);
        /* bt borrows its CoroInfo: the record as read now replaces the collection's copy (ci
         * is that copy, in the collection's registry, which the driver owns). */
        *(CoroInfo *)ci = again;
        rc = coro__backtrace_build(unwinder, symbolizer, &reg->abi, ci, NULL, NULL, bt);
        if (rc < 0) {
            return rc;
        }
        now = again;
    }
    coro__backtrace_drop_frames(bt);
    return coro__backtrace_error(bt, "kept switching while being read (coro_dump does not "
                                 "stop other threads; the signal dump does)");
}

/*
 * The used top of every suspended coroutine's stack (up to PREFETCH_MAX bytes above its
 * saved stack pointer), copied in a few syscalls instead of one per coroutine. Only when no
 * other thread runs coroutines: then nothing changes those stacks while we read.
 */
#define PREFETCH_MAX 2048u

static void prefetch_stacks(const CoroRegistry *reg, uint64_t self)
{
    uint64_t *addrs = malloc(reg->ncoros * sizeof(*addrs) + 1);
    uint64_t *lens = malloc(reg->ncoros * sizeof(*lens) + 1);
    size_t n = 0;
    for (size_t i = 0; addrs && lens && i < reg->ncoros; i++) {
        const CoroInfo *ci = &reg->coros[i];
        uint64_t top = ci->stack_base + ci->stack_size;
        if (ci->record == self || ci->state == CORO_STATE_CREATED ||
            !(ci->regs.valid & CORO_MREG_RSP) || ci->regs.rsp < ci->stack_base ||
            ci->regs.rsp >= top || top < ci->stack_base) {
            continue;
        }
        addrs[n] = ci->regs.rsp & ~(uint64_t)7;
        lens[n] = top - addrs[n] < PREFETCH_MAX ? top - addrs[n] : PREFETCH_MAX;
        n++;
    }
    if (n) {
        coro__self_target_prefetch(self_target, addrs, lens, n);
    }
    free(addrs);
    free(lens);
}

/*
 * A reader that goes away (a closed pipe) must cost the dump an -EPIPE, not the program its
 * life: SIGPIPE is blocked in this thread while we write, and the one our write raised is
 * taken back (unless one was already pending before).
 */
typedef struct NoSigpipe {
    sigset_t old;
    bool was_pending;
    bool blocked;
} NoSigpipe;

static void sigpipe_block(NoSigpipe *g)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    g->blocked = pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old) == 0;
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

static void sigpipe_restore(NoSigpipe *g, bool broke)
{
    if (!g->blocked) {
        return;
    }
    if (broke && !g->was_pending) {
        sigset_t pipe_set;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* What run() tells the collect driver. */
typedef struct RunCtx {
    DumpJob *job;
    uint64_t self;                /* record of the coroutine running the dump, 0 none */
    const CoroMachineRegs *live;  /* its captured registers */
    uint64_t chain[CHAIN_MAX];    /* leak reports: the running chain, never a leak */
    size_t nchain;
    bool others;                  /* other threads run coroutines: stacks may move */
} RunCtx;

static void run_prepare(const CoroRegistry *reg, void *arg)
{
    RunCtx *c = arg;
    /* Other threads may resume, suspend or end coroutines while we unwind them. */
    size_t threads = 0;
    for (size_t i = 0; i < reg->nthreads; i++) {
        threads += reg->threads[i].tid != 0;
    }
    c->others = threads > 1;
    if (!c->others) {
        prefetch_stacks(reg, c->self);
    }
    c->nchain = c->job->leak_only ? own_chain(reg, c->self, c->chain) : 0;
}

static bool run_want(const CoroInfo *co, void *arg)
{
    const RunCtx *c = arg;
    return !c->job->leak_only ||
           (co->generation >= c->job->since && !in_chain(c->chain, c->nchain, co->record));
}

static const CoroMachineRegs *run_live(const CoroInfo *co, CoroMachineRegs *buf, void *arg)
{
    const RunCtx *c = arg;
    return co->record == c->self ? c->live : NULL;
}

static int run_after(const CoroRegistry *reg, const CoroInfo *co, const CoroMachineRegs *live,
                     CoroBacktrace *bt, void *arg)
{
    const RunCtx *c = arg;
    return c->others && co->record != c->self ? recheck(reg, co, bt) : 0;
}

static int write_leaks(DumpJob *job, const CoroCollection *col)
{
    size_t n = col->n;
    job->leaks = n;
    if (job->fd < 0 || (n == 0 && !col->unreadable && !col->truncated)) {
        return 0;
    }
    CoroOut o;
    coro__out_init(&o, job->fd);
    coro__out_str(&o, job->leak_title);
    coro__out_u64(&o, n);
    coro__out_str(&o, n == 1 ? " coroutine still alive:\n" : " coroutines still alive:\n");
    if (col->unreadable || col->truncated) {
        /* The partial-record rule: a leak check must not under-report silently. */
        coro__out_str(&o, "coroscope: leak check: partial: ");
        coro__out_u64(&o, col->unreadable);
        coro__out_str(&o, col->truncated ? " records could not be read and the registry walk "
                      "was cut short: there may be more\n" :
                      " records could not be read: there may be more\n");
    }
    int rc = coro__out_flush(&o);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = coro__format_text_one(job->fd, &col->bts[i]);
        if (rc == 0 && i + 1 < n) {
            rc = write(job->fd, "\n", 1) == 1 ? 0 : -errno;
        }
    }
    return rc;
}

/* One line on fd (stderr when fd < 0): the registry cannot be read, and why. The caller's
 * process goes on; coro_dump returns the error. */
static void say_corrupt(int fd, const char *why)
{
    CoroOut o;
    coro__out_init(&o, fd >= 0 ? fd : STDERR_FILENO);
    coro__out_str(&o, "coroscope: this process's coroutine registry cannot be read: ");
    coro__out_str(&o, why);
    coro__out_str(&o, "; nothing was dumped\n");
    coro__out_flush(&o);
}

static int run(DumpJob *job, const CoroMachineRegs *live)
{
    RunCtx ctx = { .job = job, .self = (uint64_t)(uintptr_t)coro_self(), .live = live };
    CoroDumpMeta meta = { .pid = getpid() };
    clock_gettime(CLOCK_REALTIME, &meta.time);

    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&engine_lock);
    int rc = engine_open_locked(job->fd);
    if (rc < 0) {
        pthread_mutex_unlock(&engine_lock);
        return rc;
    }
    CoroCollectOptions opts = {
        .unwinder = unwinder, .symbolizer = symbolizer,
        .prepare = run_prepare, .want = run_want, .live = run_live, .after = run_after,
        .arg = &ctx,
    };
    CoroCollection col;
    rc = coro__collect(self_target, coro__self_abi_addr(), &opts, &col);
    if (rc == 0) {
        coro__collection_meta(&col, &meta);
        NoSigpipe guard;
        sigpipe_block(&guard);
        if (job->leak_only) {
            rc = write_leaks(job, &col);
        } else {
            rc = coro__format_dump(job->fd, job->format, &meta, col.bts, col.n, 0, NULL);
        }
        sigpipe_restore(&guard, rc == -EPIPE);
        coro__collection_free(&col);
    } else if (rc != -ENOMEM) {
        say_corrupt(job->fd, self_target->error);
    }
    coro__self_target_prefetch_drop(self_target);
    pthread_mutex_unlock(&engine_lock);
    return rc;
}

CORO_EXPORT __attribute__((noinline)) int coro_dump(int fd, int format)
{
    CoroMachineRegs live;
    coro__capture_regs(&live);
    if (format != CORO_DUMP_TEXT && format != CORO_DUMP_JSON && format != CORO_DUMP_FOLDED &&
        format != CORO_DUMP_GROUPED && format != CORO_DUMP_PPROF) {
        return -EINVAL;
    }
    DumpJob job = { .fd = fd, .format = format };
    int rc = run(&job, &live);
    /* Keeps coro_dump a real frame below the captured context. */
    __asm__ volatile("" ::: "memory");
    return rc;
}

size_t coro__leak_report(uint64_t since, int fd, const char *title,
                         const CoroMachineRegs *live)
{
    DumpJob job = { .fd = fd, .leak_only = true, .since = since, .leak_title = title };
    if (run(&job, live) < 0 && job.leaks == 0) {
        /* Could not read or print: still answer with a count the caller can trust. */
        size_t live_n = coro_live_count();
        return live_n > (coro_self() ? 1 : 0) ? live_n - (coro_self() ? 1 : 0) : 0;
    }
    return job.leaks;
}

CORO_EXPORT __attribute__((noinline)) size_t coro_leak_check(int fd)
{
    CoroMachineRegs live;
    coro__capture_regs(&live);
    size_t n = coro__leak_report(0, fd, "coroscope: leak check: ", &live);
    __asm__ volatile("" ::: "memory");
    return n;
}

CORO_EXPORT uint64_t coro_leak_mark(void)
{
    return __atomic_add_fetch(&coroscope_debug_abi.leak_generation, 1, __ATOMIC_SEQ_CST);
}

CORO_EXPORT __attribute__((noinline)) size_t coro_leak_check_since(uint64_t mark, int fd)
{
    CoroMachineRegs live;
    coro__capture_regs(&live);
    size_t n = coro__leak_report(mark, fd, "coroscope: leak check: ", &live);
    __asm__ volatile("" ::: "memory");
    return n;
}
