/*
 * Taking a consistent snapshot of every coroutine while the process keeps running.
 *
 * Only threads that own a registry shard (threads that have used coroutines) can change a
 * coroutine record or a coroutine stack, so only they are stopped: each gets the internal
 * real-time signal with tgkill(), and its handler stores the interrupted registers into a
 * preallocated slot, then waits on a futex until the helper thread has copied what it needs.
 * Threads that never touched coroutines are not interrupted at all.
 *
 * While the threads are held the helper only copies memory (memcpy of our own registry,
 * process_vm_readv of stacks, which cannot fault) into buffers it mmap'ed before: it takes no
 * lock, so a held thread that owns malloc's, the loader's or libdw's lock cannot block it.
 * Everything else — unwinding, symbolizing, formatting — happens after the release, on the
 * copy (signal-target.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "coro-int.h"
#include "signal-int.h"

/* How long the helper waits for all threads to reach the hold handler. A thread that blocks
 * the internal signal is given up on as soon as /proc says so (after HOLD_CHECK_NS); one that
 * is merely waiting for a CPU on a busy machine, or sits in an uninterruptible sleep, after
 * HOLD_ACK_TIMEOUT_NS. */
#define HOLD_ACK_TIMEOUT_NS (2000ull * 1000u * 1000u)
#define HOLD_CHECK_NS (10u * 1000u * 1000u)
/* How long a held thread waits for its release before it leaves on its own (the helper
 * thread should need milliseconds; this only bounds the damage if it cannot finish). */
#define HOLD_MAX_WAIT_MS 2000
/* Holds retried when threads started using coroutines while the others were held. */
#define HOLD_ATTEMPTS 4

typedef struct HoldSlot {
    _Atomic int32_t tid;
    _Atomic uint32_t acked;     /* the hold generation once regs are stored */
    _Atomic uint32_t escaped;   /* the generation if it left before being released */
    uint32_t pad;
    uint64_t acked_ns;          /* CLOCK_MONOTONIC when it stopped */
    CoroMachineRegs regs;
} HoldSlot;

static struct {
    _Atomic uint32_t gen;       /* generation of the current or last hold */
    _Atomic uint32_t released;  /* == gen once held threads may continue */
    _Atomic uint32_t nacks;     /* bumped (and futex-woken) by each handler */
    HoldSlot *_Atomic slots;
    _Atomic size_t nslots;
    size_t slots_cap;
    int signo;
    _Atomic uint32_t inside;    /* threads in hold_handler now, released ones included */
} hold;

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

uint64_t coro__sig_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the handler: runs in the held thread ---- */

static void regs_from_ucontext(CoroMachineRegs *r, const ucontext_t *uc)
{
    const greg_t *g = uc->uc_mcontext.gregs;
    r->rip = (uint64_t)g[REG_RIP];
    r->rsp = (uint64_t)g[REG_RSP];
    r->rbp = (uint64_t)g[REG_RBP];
    r->rbx = (uint64_t)g[REG_RBX];
    r->r12 = (uint64_t)g[REG_R12];
    r->r13 = (uint64_t)g[REG_R13];
    r->r14 = (uint64_t)g[REG_R14];
    r->r15 = (uint64_t)g[REG_R15];
    r->rax = (uint64_t)g[REG_RAX];
    r->rcx = (uint64_t)g[REG_RCX];
    r->rdx = (uint64_t)g[REG_RDX];
    r->rsi = (uint64_t)g[REG_RSI];
    r->rdi = (uint64_t)g[REG_RDI];
    r->r8 = (uint64_t)g[REG_R8];
    r->r9 = (uint64_t)g[REG_R9];
    r->r10 = (uint64_t)g[REG_R10];
    r->r11 = (uint64_t)g[REG_R11];
    r->valid = CORO_MREG_CALLEE_SAVED | CORO_MREG_ALL;
    /* The interrupted instruction itself, not a return address. */
    r->rip_is_return_address = false;
}

/* CORO_SIGNAL_SAFE: atomics, gettid, futex, clock-free waits. */
static void hold_handler(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    int saved_errno = errno;
    atomic_fetch_add_explicit(&hold.inside, 1, memory_order_acq_rel);
    /* Only our own tgkill holds a thread; the same signal from elsewhere is ignored. */
    if (si->si_code != SI_TKILL || si->si_pid != getpid()) {
        goto out;
    }
    uint32_t gen = atomic_load_explicit(&hold.gen, memory_order_acquire);
    if (atomic_load_explicit(&hold.released, memory_order_acquire) == gen) {
        goto out; /* a late signal of a hold that is over */
    }
    HoldSlot *slots = atomic_load_explicit(&hold.slots, memory_order_acquire);
    size_t n = atomic_load_explicit(&hold.nslots, memory_order_acquire);
    int32_t me = (int32_t)gettid();
    HoldSlot *slot = NULL;
    for (size_t i = 0; slots && i < n; i++) {
        if (atomic_load_explicit(&slots[i].tid, memory_order_relaxed) == me) {
            slot = &slots[i];
            break;
        }
    }
    if (!slot || atomic_load_explicit(&slot->acked, memory_order_relaxed) == gen) {
        goto out;
    }
    regs_from_ucontext(&slot->regs, ucv);
    slot->acked_ns = coro__sig_now_ns();
    atomic_store_explicit(&slot->acked, gen, memory_order_release);
    atomic_fetch_add_explicit(&hold.nacks, 1, memory_order_release);
    futex(&hold.nacks, FUTEX_WAKE_PRIVATE, 1, NULL);
    const struct timespec step = { 0, 50 * 1000 * 1000 };
    for (int waited = 0;; waited += 50) {
        uint32_t r = atomic_load_explicit(&hold.released, memory_order_acquire);
        if (r == gen) {
            break;
        }
        if (waited >= HOLD_MAX_WAIT_MS) {
            atomic_store_explicit(&slot->escaped, gen, memory_order_release);
            break;
        }
        futex(&hold.released, FUTEX_WAIT_PRIVATE, r, &step);
    }
out:
    atomic_fetch_sub_explicit(&hold.inside, 1, memory_order_acq_rel);
    errno = saved_errno;
}

static int hold_signo;

int coro__sig_hold_signo(void)
{
    return hold_signo;
}

/* Whether signo still runs our hold handler (the program may have taken it since). */
static bool still_ours(int signo)
{
    struct sigaction cur;
    return sigaction(signo, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
           cur.sa_sigaction == hold_handler;
}

int coro__sig_hold_init(void)
{
    if (hold_signo && still_ours(hold_signo)) {
        return 0;
    }
    hold_signo = 0;
    /* The highest real-time signal nobody handles: programs that use real-time signals
     * usually count up from SIGRTMIN. */
    for (int s = SIGRTMAX; s > SIGRTMIN; s--) {
        struct sigaction old;
        if (sigaction(s, NULL, &old) != 0) {
            continue;
        }
        if ((old.sa_flags & SA_SIGINFO) ? old.sa_sigaction != NULL
                                         : old.sa_handler != SIG_DFL) {
            continue;
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = hold_handler;
        /* SA_RESTART: a held thread blocked in read(), write(), wait... resumes its call.
         * SA_ONSTACK: a thread near the end of a small coroutine stack holds on its
         * alternate stack when it has one. All signals blocked while held. */
        sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
        sigfillset(&sa.sa_mask);
        if (sigaction(s, &sa, NULL) != 0) {
            return -errno;
        }
        hold_signo = s;
        hold.signo = s;
        return 0;
    }
    return -EBUSY;
}

/* ---- buffers ---- */

static void *map_zero(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static size_t round_page(size_t n)
{
    size_t page = 4096;
    return (n + page - 1) & ~(page - 1);
}

/* Grows (never shrinks) an mmap'ed array to hold want elements of size elem. */
static int ensure(void **buf, size_t *cap, size_t want, size_t elem)
{
    if (*cap >= want) {
        return 0;
    }
    size_t bytes = round_page(want * elem);
    void *p = map_zero(bytes);
    if (!p) {
        return -ENOMEM;
    }
    if (*buf) {
        munmap(*buf, round_page(*cap * elem));
    }
    *buf = p;
    *cap = bytes / elem;
    return 0;
}

bool coro__sig_live_state(uint32_t st)
{
    return st == CORO_STATE_CREATED || st == CORO_STATE_RUNNING ||
           st == CORO_STATE_SUSPENDED || st == CORO_STATE_NESTED;
}

static CoroShard *first_shard(void)
{
    return (CoroShard *)(uintptr_t)__atomic_load_n(&coroscope_debug_abi.shards,
                                                   __ATOMIC_ACQUIRE);
}

/*
 * Records are never unmapped (the list is push-only), but a corrupt next pointer can point
 * anywhere: a record is dereferenced only inside pages once read without faulting
 * (process_vm_readv). One probe per page run keeps 10,000-record snapshots cheap.
 */
static bool record_readable(SigSnapshot *s, const void *rec)
{
    uint64_t a = (uint64_t)(uintptr_t)rec, len = sizeof(Coroutine);
    if (a + len < a || (a & 7)) {
        return false;
    }
    if (a >= s->mapped_lo && a + len <= s->mapped_hi) {
        return true;
    }
    char scratch[sizeof(Coroutine)];
    struct iovec local = { scratch, len };
    struct iovec remote = { (void *)(uintptr_t)a, len };
    if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) != (ssize_t)len) {
        /* Refused by policy (ENOSYS, EPERM): trust the list, as before. */
        return errno == ENOSYS || errno == EPERM;
    }
    uint64_t lo = a & ~4095ull, hi = (a + len + 4095) & ~4095ull;
    if (lo <= s->mapped_hi && hi >= s->mapped_lo && s->mapped_hi) {
        s->mapped_lo = lo < s->mapped_lo ? lo : s->mapped_lo;
        s->mapped_hi = hi > s->mapped_hi ? hi : s->mapped_hi;
    } else {
        s->mapped_lo = lo;
        s->mapped_hi = hi;
    }
    return true;
}

/*
 * Sizes every buffer from the registry as it is now (racy, hence the margins): the arena
 * from each live coroutine's used stack, the regions from the record count.
 */
static int prepare(SigSnapshot *s)
{
    uint64_t nrec = __atomic_load_n(&coroscope_debug_abi.nrecords, __ATOMIC_ACQUIRE);
    uint64_t nsh = __atomic_load_n(&coroscope_debug_abi.nshards, __ATOMIC_ACQUIRE);
    size_t stack_bytes = 0;
    Coroutine *co = (Coroutine *)(uintptr_t)__atomic_load_n(&coroscope_debug_abi.records,
                                                            __ATOMIC_ACQUIRE);
    for (uint64_t i = 0; co && i < nrec && record_readable(s, co); i++) {
        uint32_t st = atomic_load_explicit(&co->state, memory_order_relaxed);
        if (coro__sig_live_state(st)) {
            uint64_t top = (uint64_t)(uintptr_t)co->stack_base + co->stack_size;
            uint64_t sp = __atomic_load_n(&co->regs.rsp, __ATOMIC_RELAXED);
            uint64_t used = sp < top && top - sp < CORO_SIG_STACK_CAP ? top - sp
                                                                       : CORO_SIG_STACK_CAP;
            /* A running coroutine may be deeper by the time it is held. */
            stack_bytes += used + CORO_SIG_RED_ZONE + 4096;
        }
        co = atomic_load_explicit(&co->next, memory_order_acquire);
    }
    /* Records appear in slabs of 64 and any thread may add one meanwhile. */
    size_t rec_cap = (size_t)nrec + 64 * ((size_t)nsh + 4);
    size_t arena = sizeof(struct coro_debug_abi) + rec_cap * sizeof(Coroutine) +
                   ((size_t)nsh + 16) * sizeof(CoroShard) + stack_bytes * 2 + (1u << 20);
    int err = ensure((void **)&s->arena, &s->arena_cap, arena, 1);
    if (!err) {
        err = ensure((void **)&s->regions, &s->regions_cap, 3 * rec_cap + nsh + 64,
                     sizeof(SigRegion));
    }
    if (!err) {
        err = ensure((void **)&s->threads, &s->threads_cap, nsh + 16, sizeof(SigThread));
    }
    if (!err) {
        void *slots = atomic_load_explicit(&hold.slots, memory_order_relaxed);
        size_t cap = hold.slots_cap;
        /* Only the helper thread changes the slot array, and never during a hold. */
        err = ensure(&slots, &cap, nsh + 16, sizeof(HoldSlot));
        atomic_store_explicit(&hold.slots, slots, memory_order_release);
        hold.slots_cap = cap;
    }
    s->arena_used = 0;
    s->nregions = 0;
    s->nthreads = 0;
    s->ncoroutines = 0;
    s->truncated = 0;
    s->unheld = 0;
    return err;
}

/* ---- copying (no locks, no allocation) ---- */

static bool vm_readv_ok = true;

/* A plain copy the sanitizers do not check: coroutine stacks hold ASan's poisoned redzones,
 * which are fine to read here. Kept a loop (not memcpy, which ASan intercepts). */
__attribute__((no_sanitize_address, optimize("no-tree-loop-distribute-patterns")))
static void copy_raw(char *dst, const char *src, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        dst[i] = src[i];
    }
}

/* Copies up to len bytes at addr into the arena; stops at the first unreadable page. Returns
 * the bytes copied. */
static size_t copy_mem(SigSnapshot *s, uint64_t addr, size_t len, bool trusted)
{
    size_t room = s->arena_cap - s->arena_used;
    if (len > room) {
        len = room;
        s->truncated++;
    }
    if (len == 0) {
        return 0;
    }
    char *dst = s->arena + s->arena_used;
    if (trusted) {
        copy_raw(dst, (const char *)(uintptr_t)addr, len);
        return len;
    }
    if (vm_readv_ok) {
        struct iovec local = { dst, len };
        struct iovec remote = { (void *)(uintptr_t)addr, len };
        ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
        if (n >= 0) {
            return (size_t)n;
        }
        if (errno != ENOSYS && errno != EPERM) {
            return 0;
        }
        vm_readv_ok = false; /* refused by policy: fall back to plain copies */
    }
    copy_raw(dst, (const char *)(uintptr_t)addr, len);
    return len;
}

static void add_region(SigSnapshot *s, uint64_t addr, uint64_t len, uint64_t off)
{
    if (len == 0) {
        return;
    }
    if (s->nregions) {
        SigRegion *last = &s->regions[s->nregions - 1];
        if (off != SIG_REGION_FENCE && last->off != SIG_REGION_FENCE &&
            last->addr + last->len == addr && last->off + last->len == off) {
            last->len += len; /* records of one slab: one region */
            return;
        }
    }
    if (s->nregions == s->regions_cap) {
        s->truncated++;
        return;
    }
    s->regions[s->nregions++] = (SigRegion){ addr, len, off };
}

static bool copy_region(SigSnapshot *s, uint64_t addr, size_t len, bool trusted)
{
    size_t off = s->arena_used;
    size_t got = copy_mem(s, addr, len, trusted);
    s->arena_used += (got + 15) & ~(size_t)15;
    if (s->arena_used > s->arena_cap) {
        s->arena_used = s->arena_cap;
    }
    add_region(s, addr, got, off);
    return got == len;
}

SigThread *coro__sig_find_thread(SigSnapshot *s, int32_t tid)
{
    for (size_t i = 0; i < s->nthreads; i++) {
        if (s->threads[i].tid == tid) {
            return &s->threads[i];
        }
    }
    return NULL;
}

/* The thread's stack pointer is on the stack [base, top) — or in the guard page below it: a
 * coroutine that overflowed was running (it faulted there). */
bool coro__sig_on_stack(const CoroMachineRegs *r, uint64_t base, uint64_t top)
{
    uint64_t guard = coroscope_debug_abi.guard_size ? coroscope_debug_abi.guard_size : 4096;
    return r->rsp >= (base > guard ? base - guard : 0) && r->rsp <= top;
}

/*
 * Copies the used part of one live coroutine's stack, fencing the rest of it. all_held: every
 * thread that owns a shard is held, so no live coroutine's stack can be unmapped under us and
 * a plain copy is safe; otherwise process_vm_readv, which cannot fault.
 */
static void copy_stack(SigSnapshot *s, const Coroutine *rec, bool all_held)
{
    uint64_t base = (uint64_t)(uintptr_t)rec->stack_base;
    uint64_t top = base + rec->stack_size;
    if (!base || top < base) {
        return;
    }
    uint64_t sp = rec->regs.rsp;
    SigThread *t = coro__sig_find_thread(s, rec->tid);
    if (t && t->held && coro__sig_on_stack(&t->regs, base, top)) {
        /* it is on a CPU (or mid-switch): the live pointer counts; in the guard page (an
         * overflow), the whole stack is in use */
        sp = t->regs.rsp < base ? base : t->regs.rsp;
    }
    if (sp < base || sp > top) {
        sp = top; /* nothing trustworthy: fence it all */
    }
    uint64_t lo = sp - base >= CORO_SIG_RED_ZONE ? sp - CORO_SIG_RED_ZONE : base;
    uint64_t hi = top;
    if (hi - lo > CORO_SIG_STACK_CAP) {
        hi = lo + CORO_SIG_STACK_CAP;
        s->truncated++;
    }
    add_region(s, base, lo - base, SIG_REGION_FENCE);
    size_t off = s->arena_used;
    size_t got = copy_mem(s, lo, hi - lo, all_held);
    s->arena_used += (got + 15) & ~(size_t)15;
    add_region(s, lo, got, off);
    add_region(s, lo + got, top - (lo + got), SIG_REGION_FENCE);
}

/* The registry, the shards, every record and every live stack. */
static void copy_all(SigSnapshot *s, bool all_held)
{
    const struct coro_debug_abi *abi = &coroscope_debug_abi;
    s->abi_addr = (uint64_t)(uintptr_t)abi;
    size_t abi_off = s->arena_used;
    copy_region(s, s->abi_addr, sizeof(*abi), true);
    const struct coro_debug_abi *copy = (const void *)(s->arena + abi_off);

    CoroShard *sh = (CoroShard *)(uintptr_t)copy->shards;
    for (uint64_t i = 0; sh && i < copy->nshards; i++) {
        copy_region(s, (uint64_t)(uintptr_t)sh, sizeof(*sh), true);
        sh = atomic_load_explicit(&sh->next, memory_order_acquire);
    }
    /* Records first, one after the other in the arena (contiguous slabs merge into few
     * regions), then the stacks. */
    const size_t stride = (sizeof(Coroutine) + 15) & ~(size_t)15;
    Coroutine *co = (Coroutine *)(uintptr_t)copy->records;
    size_t first_rec_off = s->arena_used;
    uint64_t n = 0;
    for (; co && n < copy->nrecords; n++) {
        if (!record_readable(s, co) ||
            !copy_region(s, (uint64_t)(uintptr_t)co, sizeof(*co), true)) {
            break;
        }
        co = atomic_load_explicit(&co->next, memory_order_acquire);
    }
    /* Walk the copies (not the live records) so that what is served matches. */
    for (uint64_t i = 0; i < n; i++) {
        const Coroutine *rec = (const void *)(s->arena + first_rec_off + i * stride);
        if (coro__sig_live_state(atomic_load_explicit(&rec->state, memory_order_relaxed))) {
            s->ncoroutines++;
            copy_stack(s, rec, all_held);
        }
    }
}

/* ---- holding ---- */

static size_t scan_shards(SigSnapshot *s, int32_t self)
{
    size_t added = 0;
    uint64_t max = __atomic_load_n(&coroscope_debug_abi.nshards, __ATOMIC_ACQUIRE);
    CoroShard *sh = first_shard();
    for (uint64_t i = 0; sh && i < max; i++) {
        int32_t tid = atomic_load_explicit(&sh->tid, memory_order_acquire);
        if (atomic_load_explicit(&sh->in_use, memory_order_acquire) && tid > 0 && tid != self &&
            !coro__sig_find_thread(s, tid) && s->nthreads < s->threads_cap &&
            s->nthreads < hold.slots_cap) {
            s->threads[s->nthreads] = (SigThread){ .tid = tid };
            s->nthreads++;
            added++;
        }
        sh = atomic_load_explicit(&sh->next, memory_order_acquire);
    }
    return added;
}

/* True when a thread that owns a shard now was not held. */
static bool shards_changed(SigSnapshot *s, int32_t self)
{
    uint64_t max = __atomic_load_n(&coroscope_debug_abi.nshards, __ATOMIC_ACQUIRE);
    CoroShard *sh = first_shard();
    for (uint64_t i = 0; sh && i < max; i++) {
        int32_t tid = atomic_load_explicit(&sh->tid, memory_order_acquire);
        if (atomic_load_explicit(&sh->in_use, memory_order_acquire) && tid != self &&
            (tid <= 0 || !coro__sig_find_thread(s, tid))) {
            return true;
        }
        sh = atomic_load_explicit(&sh->next, memory_order_acquire);
    }
    return false;
}

/* Whether thread tid blocks signal signo, from SigBlk in /proc/self/task/TID/status. Raw
 * syscalls and a stack buffer only: other threads are held while this runs. */
static bool blocks_signal(int32_t tid, int signo)
{
    char path[64] = "/proc/self/task/";
    char digits[16];
    int nd = 0;
    for (uint32_t v = (uint32_t)tid; v || nd == 0; v /= 10) {
        digits[nd++] = (char)('0' + v % 10);
    }
    size_t len = strlen(path);
    while (nd) {
        path[len++] = digits[--nd];
    }
    memcpy(path + len, "/status", 8);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    char buf[2048];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    const char *p = strstr(buf, "\nSigBlk:");
    if (!p) {
        return false;
    }
    p += 9;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    uint64_t mask = 0;
    for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++) {
        mask = mask << 4 | (uint64_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
    }
    return signo >= 1 && signo <= 64 && (mask >> (signo - 1) & 1);
}

/* Signals threads [from, s->nthreads) and waits until every one is held, gone, or late. */
static void hold_threads(SigSnapshot *s, size_t from, uint32_t gen)
{
    HoldSlot *slots = atomic_load_explicit(&hold.slots, memory_order_relaxed);
    pid_t pid = getpid();
    for (size_t i = from; i < s->nthreads; i++) {
        atomic_store_explicit(&slots[i].acked, 0, memory_order_relaxed);
        atomic_store_explicit(&slots[i].escaped, 0, memory_order_relaxed);
        atomic_store_explicit(&slots[i].tid, s->threads[i].tid, memory_order_relaxed);
    }
    atomic_store_explicit(&hold.nslots, s->nthreads, memory_order_release);
    bool gone[s->nthreads + 1];
    memset(gone, 0, sizeof(gone));
    uint64_t sent = coro__sig_now_ns();
    for (size_t i = from; i < s->nthreads; i++) {
        if (tgkill(pid, s->threads[i].tid, hold_signo) != 0) {
            gone[i] = true; /* exited since the scan */
        }
    }
    uint64_t deadline = sent + HOLD_ACK_TIMEOUT_NS;
    bool checked = false;
    for (;;) {
        uint32_t acks = atomic_load_explicit(&hold.nacks, memory_order_acquire);
        size_t waiting = 0;
        bool check = !checked && coro__sig_now_ns() - sent > HOLD_CHECK_NS;
        checked |= check;
        for (size_t i = from; i < s->nthreads; i++) {
            if (gone[i] || atomic_load_explicit(&slots[i].acked, memory_order_acquire) == gen) {
                continue;
            }
            if (tgkill(pid, s->threads[i].tid, 0) != 0) {
                gone[i] = true;
                continue;
            }
            if (check && blocks_signal(s->threads[i].tid, hold_signo)) {
                gone[i] = true; /* it will not stop: read its coroutines without it */
                continue;
            }
            waiting++;
        }
        if (waiting == 0 || coro__sig_now_ns() > deadline) {
            break;
        }
        const struct timespec step = { 0, 1000 * 1000 };
        futex(&hold.nacks, FUTEX_WAIT_PRIVATE, acks, &step);
    }
    for (size_t i = from; i < s->nthreads; i++) {
        if (atomic_load_explicit(&slots[i].acked, memory_order_acquire) == gen) {
            s->threads[i].held = true;
            s->threads[i].regs = slots[i].regs;
            s->threads[i].stop_ns = slots[i].acked_ns - sent;
        }
    }
}

static void release_threads(uint32_t gen)
{
    atomic_store_explicit(&hold.released, gen, memory_order_release);
    futex(&hold.released, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
}

int coro__sig_capture(SigSnapshot *s, const CoroMachineRegs *self_regs)
{
    /* A program that installed its own handler on our signal since would get our tgkills:
     * move to another free real-time signal, or give up. */
    if (!hold_signo || !still_ours(hold_signo)) {
        int err = coro__sig_hold_init();
        if (err < 0) {
            return err;
        }
    }
    uint64_t t0 = coro__sig_now_ns();
    int32_t self = (int32_t)gettid();
    /* Threads released by the previous hold may not have left the handler yet (on a busy
     * machine they wait for a CPU): while inside, they block every signal, which the check
     * for threads that block the hold signal would take for the program's doing. */
    for (int i = 0; i < 2000 && atomic_load_explicit(&hold.inside, memory_order_acquire); i++) {
        const struct timespec ms = { 0, 1000 * 1000 };
        nanosleep(&ms, NULL);
    }
    for (unsigned attempt = 1;; attempt++) {
        int err = prepare(s);
        if (err < 0) {
            return err;
        }
        uint32_t gen = atomic_load_explicit(&hold.gen, memory_order_relaxed) + 1;
        if (gen == 0) {
            gen = 1;
        }
        atomic_store_explicit(&hold.nslots, 0, memory_order_relaxed);
        atomic_store_explicit(&hold.gen, gen, memory_order_release);
        uint64_t h0 = coro__sig_now_ns();
        size_t first = 0;
        if (self_regs) {
            /* The calling thread (the crash report's): it is stopped by definition. */
            s->threads[0] = (SigThread){ .tid = self, .held = true, .regs = *self_regs };
            s->nthreads = first = 1;
        }
        scan_shards(s, self);
        hold_threads(s, first, gen);
        /* Threads that started using coroutines meanwhile: hold them as well. */
        for (int round = 0; round < 4; round++) {
            size_t before = s->nthreads;
            if (!scan_shards(s, self)) {
                break;
            }
            hold_threads(s, before, gen);
        }
        uint64_t nrec = __atomic_load_n(&coroscope_debug_abi.nrecords, __ATOMIC_ACQUIRE);
        bool fits = 3 * nrec + 64 <= s->regions_cap;
        uint64_t c0 = coro__sig_now_ns();
        bool all_held = true;
        for (size_t i = 0; i < s->nthreads; i++) {
            all_held &= s->threads[i].held;
        }
        if (fits) {
            copy_all(s, all_held && !shards_changed(s, self));
        }
        s->copy_ns = coro__sig_now_ns() - c0;
        bool changed = shards_changed(s, self);
        release_threads(gen);
        s->hold_ns = coro__sig_now_ns() - h0;
        s->attempts = attempt;
        if ((changed || !fits) && attempt < HOLD_ATTEMPTS) {
            continue;
        }
        for (size_t i = 0; i < s->nthreads; i++) {
            s->unheld += !s->threads[i].held;
        }
        break;
    }
    coro__sig_regions_sort(s);
    coro__sig_normalize(s);
    s->capture_ns = coro__sig_now_ns() - t0;
    return 0;
}
