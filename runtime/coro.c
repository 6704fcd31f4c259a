/*
 * The coroutine core: create, enter, yield, terminate, the per-thread pool, misuse checks.
 *
 * Cost model (see bench/): the switch path takes no lock, makes no syscall and reads no
 * clock. Registry upkeep is a few plain stores into the records being switched, which sit in
 * cache lines the switch touches anyway. Create and terminate use the calling thread's cache
 * of pooled coroutines; the shared pool and the registry lock are reached only in batches.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <coroscope/hooks.h>

#include "coro-int.h" /* defines CORO_ASAN / CORO_TSAN / CORO_C_SWITCH in sanitizer builds */
#include "probes-int.h"

#include <dlfcn.h>
#ifdef CORO_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CORO_TSAN
#include <sanitizer/tsan_interface.h>
#endif


/* Terminated coroutines a thread keeps for itself; the overflow goes to the shared pool in
 * batches of half this. */
#define THREAD_CACHE_MAX 128u

/*
 * This thread's shard. Read through tls_shard(), never cached across a switch: a coroutine
 * may resume on another thread, and compilers may keep a TLS address in a register across a
 * call (QEMU's coroutine-tls.h explains the bug this avoids).
 */
__attribute__((visibility("hidden"), tls_model("initial-exec")))
__thread CoroShard *coro__tls_shard;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Installed by the layers above (inspect/ at load time): see <coroscope/hooks.h>. */
static const CoroRuntimeHooks *_Atomic runtime_hooks;

CORO_EXPORT const CoroRuntimeHooks *coro_runtime_hooks_set(const CoroRuntimeHooks *hooks)
{
    return atomic_exchange(&runtime_hooks, hooks);
}
static pthread_key_t shard_key;

/*
 * C++ exception state per coroutine. The C++ runtime keeps the stack of caught exceptions and
 * the count of uncaught ones per thread (__cxa_get_globals(), Itanium C++ ABI 2.2.2), and
 * coroutines that share a thread would share them: a coroutine that yields inside a `catch`
 * and resumes after another one caught its own exception would rethrow the other's with
 * `throw;`, and std::uncaught_exceptions() would count other coroutines' exceptions. So every
 * context (each coroutine, and each thread's own stack) owns a copy (CoroRegs.eh_*) that the
 * switch swaps in and out. Only programs with a C++ runtime pay for it: __cxa_get_globals is
 * looked up once per process (a weak reference bound at load, else by name), and in a C
 * program every shard's eh is NULL, which the switch tests and skips.
 */
extern CoroEhGlobals *__cxa_get_globals(void) __attribute__((weak));
static CoroEhGlobals *(*cxa_get_globals)(void);

static inline CoroShard *tls_shard(void)
{
    CoroShard *sh;
    __asm__ volatile("movq coro__tls_shard@gottpoff(%%rip), %0\n\t"
                     "movq %%fs:(%0), %0"
                     : "=r"(sh));
    return sh;
}

/* ---- per-thread state ---- */

static void free_zombie(CoroShard *sh);

#ifdef CORO_TSAN
/*
 * ThreadSanitizer sees every context as a fiber (a TSan thread of its own) and hears of every
 * switch through __tsan_switch_to_fiber, which synchronises: what ran before a switch happens
 * before what runs after it, on whichever thread the switched-to context later runs. That is
 * also what makes a wake visible to TSan: the waker's hand-off (a lock, an atomic, an
 * eventfd) reaches the thread that enters the coroutine, and the enter carries it on.
 *
 * A coroutine's fiber is made when it is first entered (a created coroutine that never runs
 * costs none: gcc 12's TSan has room for ~8k live threads and fibers together) and ends
 * with its life: a fiber cannot destroy itself, so the terminating coroutine leaves it in
 * its shard's tsan_dead_fiber and the context it switches to destroys it
 * (san_finish_switch). An escape (coro_escape_to_thread) runs on
 * the thread's own fiber (escape_entry).
 *
 * In a fork child TSan ignores the accesses and synchronisation of the forking context
 * whenever the parent had more than one thread — and every fiber counts as one. Fibers
 * switched to in the child would not be ignored, and would report races against the
 * forking context's history that TSan no longer orders. So a fork child stops telling TSan
 * of switches: all of it runs as the forking context, as TSan means it to.
 */
static int tsan_fork_child;
#endif

static void release_cache(CoroShard *sh)
{
    free_zombie(sh);
    Coroutine *rest = coro__pool_put_shared(sh->cache, sh->ncache);
    while (rest) {
        Coroutine *co = rest;
        rest = co->pool_next;
        coro__stack_free(co);
        coro__record_free(co);
    }
    sh->cache = NULL;
    sh->ncache = 0;
}

static void shard_destructor(void *p)
{
    CoroShard *sh = p;
    release_cache(sh);
    sh->eh = NULL;
    coro__shard_detach(sh);
    coro__tls_shard = NULL;
}

static void atfork_prepare(void)
{
    coro__registry_lock();
    coro__pool_lock();
}

static void atfork_parent(void)
{
    coro__pool_unlock();
    coro__registry_unlock();
}

static void atfork_child(void)
{
#ifdef CORO_TSAN
    tsan_fork_child = 1;
#endif
    coro__pool_child_reset();
    coro__registry_child_reset(coro__tls_shard);
}

static void init_process(void)
{
    if (pthread_key_create(&shard_key, shard_destructor) != 0) {
        coro__die("pthread_key_create failed: cannot track per-thread coroutine state");
    }
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    coro__page_size();
    cxa_get_globals = __cxa_get_globals;
    if (!cxa_get_globals) {
        cxa_get_globals = (CoroEhGlobals * (*)(void)) dlsym(RTLD_DEFAULT, "__cxa_get_globals");
    }
}

static __attribute__((noinline)) CoroShard *shard_init(void)
{
    pthread_once(&init_once, init_process);
    CoroShard *sh = coro__shard_attach();
#ifdef CORO_ASAN
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *addr;
        size_t size;
        pthread_attr_getstack(&attr, &addr, &size);
        sh->leader_stack_bottom = addr;
        sh->leader_stack_size = size;
        pthread_attr_destroy(&attr);
    }
#endif
#ifdef CORO_TSAN
    sh->leader_tsan_fiber = __tsan_get_current_fiber();
#endif
    sh->loop_clock_ns = 0; /* a reused shard: no loop runs on this thread yet */
    /* This thread's C++ exception state (its address is fixed for the thread's life). */
    sh->eh = cxa_get_globals ? cxa_get_globals() : NULL;
    coro__tls_shard = sh;
    pthread_setspecific(shard_key, sh);
    /* The layers above: e.g. this thread's alternate signal stack, the overflow handler and
     * the CORO_LEAK_CHECK exit report (inspect/guard.c installs them). */
    const CoroRuntimeHooks *hooks = atomic_load(&runtime_hooks);
    if (hooks && hooks->thread_init) {
        hooks->thread_init();
    }
    return sh;
}

static inline CoroShard *shard(void)
{
    CoroShard *sh = tls_shard();
    return likely(sh) ? sh : shard_init();
}

void coro__shard_loop_clock(int64_t now)
{
    CoroShard *sh = tls_shard();
    if (sh) {
        sh->loop_clock_ns = now;
    }
}

/* ---- switching ---- */

#ifdef CORO_C_SWITCH
/*
 * Sanitizer builds switch from C and tell the sanitizer about every stack switch; other
 * builds switch in switch-x86_64.S. Before leaving the current context for `to` (NULL: the
 * thread's own stack): ASan learns the target stack's bounds (*fake gets the fake stack of
 * the context left, or pass NULL for a context never resumed). TSan has switched fibers
 * earlier (tsan_switch, before the records change).
 */
static inline __attribute__((always_inline)) void san_start_switch(CoroShard *sh, Coroutine *to,
                                                                   void **fake)
{
#ifdef CORO_ASAN
    __sanitizer_start_switch_fiber(fake, to ? to->stack_base : sh->leader_stack_bottom,
                                   to ? to->stack_size : sh->leader_stack_size);
#endif
}

/* First thing on the stack switched to. */
static inline __attribute__((always_inline)) void san_finish_switch(void *fake)
{
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
#ifdef CORO_TSAN
    /* The fiber of a coroutine that has just terminated. */
    CoroShard *sh = tls_shard();
    if (sh->tsan_dead_fiber) {
        __tsan_destroy_fiber(sh->tsan_dead_fiber);
        sh->tsan_dead_fiber = NULL;
    }
#endif
}

#ifdef CORO_TSAN
/*
 * TSan's side of a switch to `to` (NULL: the thread's own stack), done *before* the record
 * says who runs: TSan's fiber bookkeeping copies vector clocks (microseconds with many
 * fibers), and readers that stop the thread in between (coroscope ps -p) would find it on
 * the stack of the coroutine it left while the record calls the other one running. The few
 * stores left before the real switch run as the target fiber, which has synchronised with
 * everything before them.
 */
static inline __attribute__((always_inline)) void tsan_switch(CoroShard *sh, Coroutine *to)
{
    if (likely(!tsan_fork_child)) {
        __tsan_switch_to_fiber(to ? to->tsan_fiber : sh->leader_tsan_fiber, 0);
    }
}
#endif

/* The switch of the C coro_enter / coro_yield. */
static inline __attribute__((always_inline)) void do_switch(CoroShard *sh, CoroRegs *from,
                                                            Coroutine *to)
{
    void *fake = NULL;
    san_start_switch(sh, to, &fake);
    coro__switch_call(from, to ? &to->regs : &sh->leader);
    san_finish_switch(fake);
    /* Keeps the call out of tail position: the suspended function must stay a real frame,
     * because readers show it as frame 0 (coro_yield, coro_mutex_lock, ...). */
    __asm__ volatile("" ::: "memory");
}
#endif

/* Loads the C++ exception state of the context being entered into the thread's (no-op in a
 * program without the C++ runtime). */
static inline __attribute__((always_inline)) void eh_load(CoroShard *sh, const CoroRegs *to)
{
    CoroEhGlobals *g = sh->eh;
    if (g) {
        g->caught = (void *)(uintptr_t)to->eh_caught;
        g->uncaught = to->eh_uncaught;
    }
}

/* Saves the thread's C++ exception state into the context being left and loads the one of
 * the context being entered (switch-x86_64.S does the same on its fast paths). */
static inline __attribute__((always_inline)) void eh_swap(CoroShard *sh, CoroRegs *from,
                                                          const CoroRegs *to)
{
    CoroEhGlobals *g = sh->eh;
    if (g) {
        from->eh_caught = (uint64_t)(uintptr_t)g->caught;
        from->eh_uncaught = g->uncaught;
    }
    eh_load(sh, to);
}

/* The fields the stall watchdog (inspect/watchdog.c) reads from its own thread while this one
 * switches: the running coroutine of a shard and a record's switch count. Only the owning
 * thread writes them, so atomic stores without a read-modify-write do (a plain mov on x86,
 * as the assembly fast path does); plain C stores would race with those reads. current is
 * a release store: the watchdog, loading it with acquire, then reads the record it names
 * (whose memory may be a slab just calloc'ed). */
static inline void set_current(CoroShard *sh, Coroutine *co)
{
    __atomic_store_n(&sh->current, co, __ATOMIC_RELEASE);
}

static inline void set_switch_count(Coroutine *co, uint64_t n)
{
    __atomic_store_n(&co->switch_count, n, __ATOMIC_RELAXED);
}

/* Opens the seqlock of co's record before its state and registers change; the switch closes
 * it once the registers are stored. */
static inline void begin_save(Coroutine *co, uint32_t state)
{
    uint32_t seq = __atomic_load_n(&co->regs.seq, __ATOMIC_RELAXED);
    __atomic_store_n(&co->regs.seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    atomic_store_explicit(&co->state, state, memory_order_relaxed);
}

static inline void count(_Atomic uint64_t *counter)
{
    /* Only the owning thread writes its shard's counters: no read-modify-write needed. */
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

#ifdef CORO_ASAN
/* ASan builds: the entry function of every coroutine, first on its new stack. (TSan builds
 * start at the entry itself: nothing is pending when a new fiber first runs, and the extra
 * frame would show in backtraces, as TSan's function-exit hook keeps it from being a tail
 * call.) */
static void san_entry(void *opaque)
{
    Coroutine *co = opaque;
    san_finish_switch(NULL);
    co->entry(co->opaque);
}
#endif

/* ---- create ---- */

static void free_zombie(CoroShard *sh);

static __attribute__((noinline)) Coroutine *create_slow(CoroShard *sh, size_t size)
{
    free_zombie(sh);
    if (size == CORO_DEFAULT_STACK_SIZE) {
        Coroutine *chain;
        unsigned n = coro__pool_get_shared(&chain, THREAD_CACHE_MAX / 2);
        if (n) {
            sh->cache = chain->pool_next;
            sh->ncache = n - 1;
            return chain;
        }
    }
    Coroutine *co = coro__record_alloc();
    if (!co) {
        errno = ENOMEM;
        return NULL;
    }
    int err = coro__stack_alloc(co, size);
    if (err < 0) {
        coro__record_free(co);
        errno = -err;
        return NULL;
    }
    return co;
}

/* Fills a pooled or new record for a coroutine about to be handed out, and publishes it. */
static inline __attribute__((always_inline)) void
init_record(CoroShard *sh, Coroutine *co, CoroutineEntry *entry, void *opaque, const char *name,
            void *site)
{
    /* The record's seqlock is odd while it is rewritten: a reader racing with us (copy, then
     * re-read seq) must not take half of this life and half of the previous one, or fields
     * not yet written, for a created coroutine. Closed after the state is published. */
    uint32_t seq = __atomic_load_n(&co->regs.seq, __ATOMIC_RELAXED) | 1u;
    __atomic_store_n(&co->regs.seq, seq, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* x86 keeps stores in program order */
    co->regs.rsp = (uint64_t)(uintptr_t)co->stack_base + co->stack_size;
    co->regs.rip = (uint64_t)(uintptr_t)coro__trampoline_entry;
    co->regs.rbp = 0;
    co->regs.rbx = (uint64_t)(uintptr_t)co;
#ifdef CORO_ASAN
    co->regs.r12 = (uint64_t)(uintptr_t)san_entry;
    co->regs.r13 = (uint64_t)(uintptr_t)co;
#else
    co->regs.r12 = (uint64_t)(uintptr_t)entry;
    co->regs.r13 = (uint64_t)(uintptr_t)opaque;
#endif
    /* A new coroutine starts with its creator's floating-point control state, as a new thread
     * does; usually equal to the enterer's, so the switch skips reloading the x87 word. */
    __asm__("stmxcsr %0\n\tfnstcw %1" : "=m"(co->regs.mxcsr), "=m"(co->regs.fpucw));
    /* No exception caught or in flight, as on a new thread. */
    co->regs.eh_caught = 0;
    co->regs.eh_uncaught = 0;
    co->entry = entry;
    co->opaque = opaque;
    co->create_site = site;
    /* For readers' "never entered" warning: the clock of this thread's running loop iteration
     * (loop.c), 0 outside a loop. Reading a clock here costs the pooled lifecycle ~3.6 ns
     * (+23%, bench/ab.c on this VM). */
    co->created_ns = (uint64_t)sh->loop_clock_ns;
    co->caller = NULL;
    set_switch_count(co, 0);
    co->tid = atomic_load_explicit(&sh->tid, memory_order_relaxed);
    co->generation = __atomic_load_n(&coroscope_debug_abi.leak_generation, __ATOMIC_RELAXED);
    if (name) {
        strncpy(co->name, name, CORO_NAME_SIZE - 1);
        co->name[CORO_NAME_SIZE - 1] = '\0';
    } else {
        co->name[0] = '\0';
    }
    /* Publishes the initialised record to readers, which skip FREE records. */
    atomic_store_explicit(&co->state, CORO_STATE_CREATED, memory_order_release);
    __atomic_store_n(&co->regs.seq, seq + 1, __ATOMIC_RELEASE);
    count(&sh->created);
    CORO_PROBE_CREATE(co);
}

/* Every case of create: options, first use on a thread, empty cache, new id block, errors. */
static __attribute__((noinline)) Coroutine *
create(CoroutineEntry *entry, void *opaque, const CoroutineOptions *opts, void *site)
{
    size_t size = CORO_DEFAULT_STACK_SIZE;
    const char *name = NULL;
    if (opts) {
        if (opts->reserved[0] || opts->reserved[1] || opts->reserved[2] || opts->reserved[3]) {
            errno = EINVAL;
            return NULL;
        }
        name = opts->name;
        if (opts->stack_size) {
            size_t page = coro__page_size();
            size = opts->stack_size < CORO_MIN_STACK_SIZE ? CORO_MIN_STACK_SIZE
                                                          : opts->stack_size;
            if (size > ((size_t)1 << 40)) {
                errno = EINVAL;
                return NULL;
            }
            size = (size + page - 1) & ~(page - 1);
        }
    }
    if (unlikely(!entry)) {
        errno = EINVAL;
        return NULL;
    }
    CoroShard *sh = shard();
    Coroutine *co = sh->cache;
    if (likely(co && size == CORO_DEFAULT_STACK_SIZE)) {
        sh->cache = co->pool_next;
        sh->ncache--;
    } else {
        co = create_slow(sh, size);
        if (!co) {
            return NULL;
        }
    }
    if (unlikely(sh->next_id == sh->id_limit)) {
        sh->next_id = coro__id_block();
        sh->id_limit = sh->next_id + CORO_ID_BLOCK;
    }
    co->id = sh->next_id++;
    init_record(sh, co, entry, opaque, name, site);
    return co;
}

CORO_EXPORT Coroutine *coro_create(CoroutineEntry *entry, void *opaque)
{
    /* The common case as a leaf function (no callee-saved registers to push); everything
     * else goes to create(), as a tail call. */
    CoroShard *sh = tls_shard();
    Coroutine *co;
    if (likely(entry && sh && (co = sh->cache) && sh->next_id != sh->id_limit)) {
        sh->cache = co->pool_next;
        sh->ncache--;
        co->id = sh->next_id++;
        init_record(sh, co, entry, opaque, NULL, __builtin_return_address(0));
        return co;
    }
    return create(entry, opaque, NULL, __builtin_return_address(0));
}

CORO_EXPORT Coroutine *coro_create_opts(CoroutineEntry *entry, void *opaque,
                                        const CoroutineOptions *opts)
{
    return create(entry, opaque, opts, __builtin_return_address(0));
}

/* ---- terminate and release ---- */

/*
 * A terminated coroutine whose stack cannot go back to the pool (not the default size) and
 * was still in use when it released itself: its stack is unmapped by the next terminate,
 * create or thread exit on this thread, all of which run off that stack. At most one per
 * thread. Its record is FREE already, so readers skip it.
 */
static void free_zombie(CoroShard *sh)
{
    Coroutine *co = sh->zombie;
    if (co) {
        sh->zombie = NULL;
        coro__stack_free(co);
        coro__record_free(co);
    }
}

static __attribute__((noinline)) void release_slow(CoroShard *sh, Coroutine *co)
{
    free_zombie(sh);
    if (co->stack_size == CORO_DEFAULT_STACK_SIZE && sh->ncache < THREAD_CACHE_MAX) {
        co->pool_next = sh->cache;
        sh->cache = co;
        sh->ncache++;
        return;
    }
    if (co->stack_size == CORO_DEFAULT_STACK_SIZE) {
        /* Cache full: hand its oldest half to the shared pool in one batch. co stays here
         * (we may be running on its stack). */
        unsigned half = THREAD_CACHE_MAX / 2;
        Coroutine *batch = sh->cache, *last = sh->cache;
        for (unsigned i = 1; i < half; i++) {
            last = last->pool_next;
        }
        sh->cache = last->pool_next;
        sh->ncache -= half;
        last->pool_next = NULL;
        Coroutine *rest = coro__pool_put_shared(batch, half);
        while (rest) {
            Coroutine *c = rest;
            rest = c->pool_next;
            coro__stack_free(c);
            coro__record_free(c);
        }
        co->pool_next = sh->cache;
        sh->cache = co;
        sh->ncache++;
        return;
    }
    sh->zombie = co;
}

/*
 * Returns co to this thread's pool. Called by co itself, on its own stack, just before its
 * last switch: nothing else runs on this thread before that switch is done, and co never
 * leaves this thread's cache here, so nobody can reuse it while we are still on it.
 */
static inline void release(CoroShard *sh, Coroutine *co)
{
    atomic_store_explicit(&co->state, CORO_STATE_FREE, memory_order_release);
    if (likely(co->stack_size == CORO_DEFAULT_STACK_SIZE && sh->ncache < THREAD_CACHE_MAX &&
               !sh->zombie)) {
        co->pool_next = sh->cache;
        sh->cache = co;
        sh->ncache++;
    } else {
        release_slow(sh, co);
    }
}

/* Called by the trampoline, on co's stack, when co's entry function has returned. */
void coro__terminate(Coroutine *co)
{
    CoroShard *sh = tls_shard();
    Coroutine *to = co->caller;
#ifdef CORO_TSAN
    /* This life's fiber ends here; the context switched to destroys it. (A fork child
     * leaves fibers alone: it may be running as this one, see tsan_fork_child.) */
    sh->tsan_dead_fiber = tsan_fork_child ? NULL : co->tsan_fiber;
    tsan_switch(sh, to);
    co->tsan_fiber = NULL;
#endif
    /* No seqlock: co's registers are never saved again nor read (readers skip TERMINATED and
     * FREE records), and its seq stays even for its next life. */
    atomic_store_explicit(&co->state, CORO_STATE_TERMINATED, memory_order_relaxed);
    CORO_PROBE_TERMINATE(co);
    co->caller = NULL;
    count(&sh->terminated);
    set_current(sh, to);
    if (to) {
        atomic_store_explicit(&to->state, CORO_STATE_RUNNING, memory_order_relaxed);
    }
    /* Released here rather than by the enterer, so that the enterer resumes straight into
     * its caller (see switch-x86_64.S). Safe although we still run on co's stack: nothing
     * else runs on this thread before coro__switch_exit() has left it. */
    release(sh, co);
    const CoroRegs *regs = to ? &to->regs : &sh->leader;
    /* co's own exception state is over (its entry returned: nothing caught or in flight):
     * nothing to save. */
    eh_load(sh, regs);
#ifdef CORO_C_SWITCH
    san_start_switch(sh, to, NULL);
#endif
    coro__switch_exit(regs);
}

/* ---- enter and yield ---- */

/* Everything coro_enter(co) does before the switch. */
static inline __attribute__((always_inline)) CoroSwitch enter_prepare(CoroShard *sh,
                                                                      Coroutine *co)
{
    Coroutine *self = sh->current;
    if (unlikely(!co)) {
        coro__enter_misuse(co, self, 0);
    }
    uint32_t state = atomic_load_explicit(&co->state, memory_order_relaxed);
    if (unlikely(state != CORO_STATE_SUSPENDED && state != CORO_STATE_CREATED)) {
        coro__enter_misuse(co, self, state);
    }
    CoroRegs *from;
    if (self) {
        begin_save(self, CORO_STATE_NESTED);
        from = &self->regs;
    } else {
        from = &sh->leader;
    }
    co->tid = atomic_load_explicit(&sh->tid, memory_order_relaxed);
    co->caller = self;
    set_switch_count(co, co->switch_count + 1);
    atomic_store_explicit(&co->state, CORO_STATE_RUNNING, memory_order_release);
    set_current(sh, co);
    eh_swap(sh, from, &co->regs);
    return (CoroSwitch){ from, &co->regs };
}

/* Everything coro_yield() does before the switch; *to_co is who we go back to. */
static inline __attribute__((always_inline)) CoroSwitch yield_prepare(CoroShard *sh,
                                                                      Coroutine **to_co)
{
    Coroutine *self = sh ? sh->current : NULL;
    if (unlikely(!self)) {
        coro__yield_misuse();
    }
    Coroutine *to = self->caller;
    begin_save(self, CORO_STATE_SUSPENDED);
    self->caller = NULL;
    set_current(sh, to);
    *to_co = to;
    CoroSwitch s = { &self->regs, &sh->leader };
    if (to) {
        atomic_store_explicit(&to->state, CORO_STATE_RUNNING, memory_order_relaxed);
        s.to = &to->regs;
    }
    eh_swap(sh, s.from, s.to);
    return s;
}

#ifndef CORO_C_SWITCH
/* coro_enter and coro_yield are in switch-x86_64.S; coro_enter calls this, then switches. */
CoroSwitch coro__enter_prepare(Coroutine *co)
{
    return enter_prepare(shard(), co);
}

#else
CORO_EXPORT void coro_enter(Coroutine *co)
{
    CoroShard *sh = shard();
#ifdef CORO_TSAN
    /* Only for an enter that enter_prepare lets through (it aborts on misuse). */
    uint32_t state = co ? atomic_load_explicit(&co->state, memory_order_relaxed) : 0;
    if (state == CORO_STATE_CREATED || state == CORO_STATE_SUSPENDED) {
        if (!co->tsan_fiber && !tsan_fork_child) {
            co->tsan_fiber = __tsan_create_fiber(0); /* first enter of this life */
        }
        tsan_switch(sh, co);
    }
#endif
    CoroSwitch s = enter_prepare(sh, co);
    CORO_PROBE_ENTER(co);
    do_switch(sh, s.from, co);
}

CORO_EXPORT __attribute__((noinline)) void coro_yield(void)
{
    CoroShard *sh = tls_shard();
    Coroutine *to;
    Coroutine *self = sh ? sh->current : NULL;
#ifdef CORO_TSAN
    if (self) { /* else yield_prepare aborts */
        tsan_switch(sh, self->caller);
    }
#endif
    CoroSwitch s = yield_prepare(sh, &to);
    CORO_PROBE_YIELD(self);
    do_switch(sh, s.from, to);
}
#endif

/* ---- escape to the thread's own stack ---- */

struct escape {
    void (*fn)(void *);
    void *arg;
    CoroRegs leader; /* the outermost coro_enter(), where the escape ends if fn returns */
};

/* The first function of the escape context, on the thread's own stack (its caller is the
 * trampoline, where unwinders stop). e lives on the escaping coroutine's stack, which stays
 * mapped: that coroutine is suspended.
 *
 * TSan: it runs on the thread's own fiber, whose shadow call stack still ends in the
 * outermost coro_enter(), where the escape ends (by returning or by fn's longjmp, e.g. a
 * cmocka assertion, which TSan unwinds on that fiber). No shadow frame of its own
 * (no_sanitize_thread): it never returns, and one left behind per escape would pile up. */
static __attribute__((noreturn, no_sanitize_thread)) void escape_entry(void *opaque)
{
    /* Copied first: once fn has run, the escaping coroutine may have been entered again
     * and ended, and *opaque with its stack. */
    struct escape e = *(struct escape *)opaque;
#ifdef CORO_C_SWITCH
    san_finish_switch(NULL);
#endif
    e.fn(e.arg);
    /* fn returned: the outermost coro_enter() of the thread returns, as after a yield. Same
     * stack, same TSan fiber; ASan hears of the jump up the stack. sh->leader no longer holds
     * that coro_enter() if fn entered coroutines (each enter saved fn's context there). */
    CoroShard *sh = tls_shard();
    uint32_t seq = sh->leader.seq;
    sh->leader = e.leader;
    sh->leader.seq = seq;
#ifdef CORO_ASAN
    __sanitizer_start_switch_fiber(NULL, sh->leader_stack_bottom, sh->leader_stack_size);
#endif
    coro__switch_exit(&sh->leader);
}

CORO_EXPORT void coro_escape_to_thread(void (*fn)(void *), void *arg)
{
    CoroShard *sh = tls_shard();
    Coroutine *self = sh ? sh->current : NULL;
    if (!self) {
        fn(arg);
        return;
    }
    /* The coroutines that entered self have their registers saved (NESTED): they become
     * SUSPENDED where they are, each in its coro_enter(). */
    for (Coroutine *c = self->caller, *next; c; c = next) {
        next = c->caller;
        c->caller = NULL;
        atomic_store_explicit(&c->state, CORO_STATE_SUSPENDED, memory_order_release);
    }
    begin_save(self, CORO_STATE_SUSPENDED);
    self->caller = NULL;
    set_current(sh, NULL);
    /* A context that calls escape_entry on the thread's own stack, below the frame of the
     * outermost coro_enter() (nothing below its saved rsp is in use), with the thread's
     * floating-point control and C++ exception state. */
    struct escape e = { fn, arg, sh->leader };
    CoroRegs esc = sh->leader;
    esc.rsp = (sh->leader.rsp - 256) & ~(uint64_t)15;
    esc.rip = (uint64_t)(uintptr_t)coro__trampoline_entry;
    esc.rbp = 0;
    esc.rbx = 0;
    esc.r12 = (uint64_t)(uintptr_t)escape_entry;
    esc.r13 = (uint64_t)(uintptr_t)&e;
    eh_swap(sh, &self->regs, &sh->leader);
    coro__stack_valgrind_reuse_below(esc.rsp);
#ifdef CORO_TSAN
    tsan_switch(sh, NULL); /* fn runs as the thread's own fiber (escape_entry) */
#endif
#ifdef CORO_C_SWITCH
    void *fake = NULL;
    san_start_switch(sh, NULL, &fake);
#endif
    coro__switch_call(&self->regs, &esc);
    /* Entered again: carry on in the coroutine. */
#ifdef CORO_C_SWITCH
    san_finish_switch(fake);
#endif
    __asm__ volatile("" ::: "memory");
}

/* ---- queries ---- */

CORO_EXPORT Coroutine *coro_self(void)
{
    CoroShard *sh = tls_shard();
    return sh ? sh->current : NULL;
}

CORO_EXPORT bool coro_in_coroutine(void)
{
    return coro_self() != NULL;
}

CORO_EXPORT bool coro_entered(const Coroutine *co)
{
    uint32_t state = atomic_load_explicit(&co->state, memory_order_relaxed);
    return state == CORO_STATE_RUNNING || state == CORO_STATE_NESTED;
}

CORO_EXPORT void coro_set_name(Coroutine *co, const char *name)
{
    /* Readers may see a torn name while this runs; they treat names as untrusted text. */
    if (name) {
        strncpy(co->name, name, CORO_NAME_SIZE - 1);
        co->name[CORO_NAME_SIZE - 1] = '\0';
    } else {
        co->name[0] = '\0';
    }
}

CORO_EXPORT const char *coro_name(const Coroutine *co)
{
    return co->name[0] ? co->name : NULL;
}

CORO_EXPORT uint64_t coro_id(const Coroutine *co)
{
    return co->id;
}

CORO_EXPORT size_t coro_live_count(void)
{
    uint64_t created = 0, terminated = 0;
    CoroShard *sh = (CoroShard *)(uintptr_t)__atomic_load_n(&coroscope_debug_abi.shards,
                                                            __ATOMIC_ACQUIRE);
    for (; sh; sh = atomic_load_explicit(&sh->next, memory_order_acquire)) {
        /* terminated before created: a coroutine counted as terminated was created earlier,
         * so the difference never goes negative under concurrent updates. */
        terminated += atomic_load_explicit(&sh->terminated, memory_order_acquire);
    }
    sh = (CoroShard *)(uintptr_t)__atomic_load_n(&coroscope_debug_abi.shards, __ATOMIC_ACQUIRE);
    for (; sh; sh = atomic_load_explicit(&sh->next, memory_order_acquire)) {
        created += atomic_load_explicit(&sh->created, memory_order_acquire);
    }
    return created > terminated ? (size_t)(created - terminated) : 0;
}
