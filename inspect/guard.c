/*
 * What inspect/ does when a thread first uses coroutines (the runtime's thread_init hook,
 * <coroscope/hooks.h>): the stack-overflow report and the CORO_LEAK_CHECK exit report.
 *
 * Overflow: a SIGSEGV handler (SA_ONSTACK, on a per-thread alternate stack, since the
 * overflowing stack has no room left) checks whether the fault hit the guard page of the
 * coroutine running on this thread. If so it prints
 *     coroscope: coroutine 12 "name" overflowed its 64 KiB stack (created at MODULE+0xOFF)
 * and a bounded backtrace found by scanning the coroutine's stack for return addresses,
 * then restores the default disposition and returns: the faulting instruction runs again and
 * the process dies by SIGSEGV as it would have, core included. Everything else goes to the
 * handler that was installed before ours (or to the default action).
 *
 * The handler is async-signal-safe: no malloc, no stdio, no locks, no libdw. Code addresses
 * are printed as function (module+offset) by sigsafe-sym.c: modules from the table taken
 * beforehand (at process start, and at thread start when an object was loaded since), function
 * names read from the module's file by the handler (or from the prepared symbol table when
 * CORO_DUMP_ON_CRASH=1 built one), so a program that never overflows pays nothing for them
 * (file:line would need DWARF, which libdw reads with malloc and locks: `addr2line -e MODULE
 * OFF` or `coroscope bt` on the core give them).
 *
 * Being referenced from runtime/coro.c is also what pulls inspect/ (and so coro_dump and the
 * leak report) into programs linked with the static library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <coroscope/hooks.h>

#include "inspect-int.h"
#include "signal-int.h"
#include "sigsafe-sym-int.h"
#include "symbol-name-int.h"

extern struct coro_debug_abi coroscope_debug_abi;

#define ALTSTACK_SIZE (64u * 1024u)
#define SCAN_FRAMES 16
/* The stack scan reads whatever the coroutine left on its stack, sanitizer redzones included. */
#define NO_ASAN __attribute__((no_sanitize("address")))

/* ---- the handler ---- */

static struct sigaction previous;
static volatile sig_atomic_t reporting;

/* "function (module+0xoff)" where a symbol names it, else "module+0xoff". CORO_SIGNAL_SAFE. */
static void out_where(CoroOut *o, uint64_t pc)
{
    const CoroSigModule *m = coro__sigsym_module_of(pc);
    if (!m) {
        coro__out_hex(o, pc);
        return;
    }
    uint64_t off;
    char buf[128];
    const char *fn = coro__sigsym_function_of(pc, &off, buf, sizeof(buf));
    if (fn) {
        /* At most 127 bytes, GCC clone suffixes cut ("recurse.isra.0" -> "recurse"), symbol
         * versions kept whole ("clock_nanosleep@GLIBC_2.2.5"). */
        size_t len = strnlen(fn, 127), cut0, cut1;
        if (coro__symbol_clone_suffix(fn, len, &cut0, &cut1)) {
            coro__out_mem(o, fn, cut0);
            coro__out_mem(o, fn + cut1, len - cut1);
        } else {
            coro__out_mem(o, fn, len);
        }
        coro__out_str(o, " (");
    }
    coro__out_str(o, m->name);
    coro__out_mem(o, "+", 1);
    coro__out_hex(o, pc - m->base);
    if (fn) {
        coro__out_str(o, ")");
    }
}

/* The report's writer is static, not on the signal stack: a program's own alternate stack may
 * be as small as 8 KiB (SIGSTKSZ), and CoroOut alone is 17 KiB. One report at a time
 * (`reporting`), and the process dies after it. */
static CoroOut overflow_out;

static NO_ASAN bool stack_word(uint64_t addr, uint64_t *v, void *arg)
{
    *v = *(const uint64_t *)(uintptr_t)addr;
    return true;
}

static void scanned_frame(CoroOut *o, unsigned n, uint64_t ra, void *arg)
{
    coro__out_str(o, "  #");
    coro__out_u64(o, n);
    coro__out_str(o, n < 10 ? "  " : " ");
    out_where(o, ra - 1);
    coro__out_str(o, "\n");
}

static NO_ASAN void report_overflow(const unsigned char *rec, uint64_t base, uint64_t size,
                            const ucontext_t *uc)
{
    const struct coro_debug_abi *a = &coroscope_debug_abi;
    CoroOut *o = &overflow_out;
    coro__out_init(o, STDERR_FILENO);
    uint64_t id, site = 0;
    memcpy(&id, rec + a->off_id, 8);
    if (a->off_create_site != CORO_DEBUG_ABSENT) {
        memcpy(&site, rec + a->off_create_site, 8);
    }
    char name[CORO_INFO_NAME_SIZE];
    size_t nl = a->name_size < sizeof(name) ? a->name_size : sizeof(name) - 1;
    memcpy(name, rec + a->off_name, nl);
    name[nl] = '\0';
    coro__out_str(o, "coroscope: coroutine ");
    coro__out_u64(o, id);
    if (name[0]) {
        coro__out_str(o, " ");
        coro__out_json_str(o, name);
    }
    coro__out_str(o, " overflowed its ");
    coro__out_u64(o, size / 1024);
    coro__out_str(o, " KiB stack");
    if (site) {
        coro__out_str(o, " (created at ");
        out_where(o, site - 1);
        coro__out_str(o, ")");
    }
    coro__out_str(o, "\n");

    /* Bounded backtrace: the faulting pc, then return addresses found on the stack. */
    uint64_t pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    uint64_t sp = (uint64_t)uc->uc_mcontext.gregs[REG_RSP];
    coro__out_str(o, "  #0  ");
    out_where(o, pc);
    coro__out_str(o, "\n");
    if (coro__sig_scan_stack(o, sp < base ? base : sp, base + size, SCAN_FRAMES, stack_word,
                             scanned_frame, NULL)) {
        coro__out_str(o, "  ...\n");
    }
    coro__out_str(o, "  (return addresses found by scanning the stack; file:line with addr2line "
                  "-e MODULE OFFSET, or coroscope bt on the core)\n");
    coro__out_flush(o);
}


static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    ucontext_t *uc = ctx;
    Coroutine *self = coro_self();
    const struct coro_debug_abi *a = &coroscope_debug_abi;
    if (self && !reporting) {
        const unsigned char *rec = (const unsigned char *)self;
        uint64_t base, size;
        memcpy(&base, rec + a->off_stack_base, 8);
        memcpy(&size, rec + a->off_stack_size, 8);
        uint64_t addr = (uint64_t)(uintptr_t)si->si_addr;
        uint64_t guard = a->guard_size ? a->guard_size : 4096;
        uint64_t sp = (uint64_t)uc->uc_mcontext.gregs[REG_RSP];
        /* The guard page itself, or (a frame bigger than the guard) a stack pointer that
         * has already left the stack downwards. */
        bool hit = (addr >= base - guard && addr < base) ||
                   (sp < base && base - sp < 1024 * 1024 && addr < base);
        if (hit) {
            reporting = 1;
            report_overflow(rec, base, size, uc);
            /* CORO_DUMP_ON_CRASH=1: every coroutine too (signal-crash.c). */
            coro__sig_crash_report_once(sig, uc);
            /* Die of this very fault, at the faulting instruction (a core shows it, not this
             * handler), by the previous disposition: usually the default action. */
            coro__sig_redeliver(sig, si, &previous);
            return;
        }
    }
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) {
            previous.sa_sigaction(sig, si, ctx);
            return;
        }
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    /* Default (a SIGSEGV cannot usefully be ignored): the fault repeats and kills us, after
     * the crash report when CORO_DUMP_ON_CRASH=1 asked for one (signal-crash.c). */
    coro__sig_crash_report_once(sig, uc);
    coro__sig_redeliver(sig, si, &previous);
}

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous);
}

/* ---- per-thread alternate signal stacks ---- */

static pthread_key_t altstack_key;

static void altstack_release(void *p)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == p && !(cur.ss_flags & SS_ONSTACK)) {
        stack_t off = { .ss_flags = SS_DISABLE };
        sigaltstack(&off, NULL);
        munmap(p, ALTSTACK_SIZE);
    }
}

static void altstack_install(void)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0 || !(cur.ss_flags & SS_DISABLE)) {
        return;     /* the thread has one already (the program's, or a sanitizer's) */
    }
    void *p = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        return;
    }
    stack_t ss = { .ss_sp = p, .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(p, ALTSTACK_SIZE);
        return;
    }
    pthread_setspecific(altstack_key, p);
}

/* ---- CORO_LEAK_CHECK ---- */

static int leak_exitcode = 23;

static void leak_at_exit(void)
{
    size_t n = coro__leak_report(0, STDERR_FILENO, "coroscope: CORO_LEAK_CHECK: ", NULL);
    if (n > 0) {
        /* As LeakSanitizer: the exit status says so. Flush the program's stdio first. */
        fflush(NULL);
        _exit(leak_exitcode);
    }
}

static void leak_check_arm(void)
{
    const char *v = secure_getenv("CORO_LEAK_CHECK");
    if (!v || !v[0] || strcmp(v, "0") == 0) {
        return;
    }
    if (strcmp(v, "1") != 0) {
        coro__env_complain("CORO_LEAK_CHECK", v, "not 0 or 1", "leak check off (the default)");
        return;
    }
    const char *code = secure_getenv("CORO_LEAK_EXITCODE");
    if (code && code[0]) {
        char *end;
        errno = 0;
        long c = strtol(code, &end, 10);
        if (!errno && end != code && *end == '\0' && c >= 0 && c <= 255) {
            leak_exitcode = (int)c;
        } else {
            coro__env_complain("CORO_LEAK_EXITCODE", code, "not a number from 0 to 255",
                               "using 23 (the default)");
        }
    }
    atexit(leak_at_exit);
}

static pthread_once_t process_once = PTHREAD_ONCE_INIT;
static _Atomic int process_ready;

static void process_init(void)
{
    pthread_key_create(&altstack_key, altstack_release);
    coro__sigsym_refresh();
    /* The signal dump's environment (signal.c; its constructor did it already when
     * libcoroscope is a shared library), before our SIGSEGV handler goes in. */
    coro__signal_init();
    install_handler();
    leak_check_arm();
    process_ready = 1;
}

static void inspect_thread_init(void)
{
    if (process_ready) {
        /* A later thread: objects may have been loaded since (dlopen). */
        coro__sigsym_refresh();
    }
    pthread_once(&process_once, process_init);
    altstack_install();
}

/*
 * The runtime calls back into inspect/ only through the hook table it owns. Installed before
 * any constructor of default priority runs, so a program whose own constructors create
 * coroutines still gets the overflow report on that thread. In a static link this object is
 * always part of the program: libcoroscope.a holds the whole library as one relocatable
 * object (Makefile), so nothing in the runtime needs to reference inspect/ to pull it in.
 */
static const CoroRuntimeHooks inspect_hooks = { .thread_init = inspect_thread_init };

__attribute__((constructor(101))) static void inspect_hooks_install(void)
{
    coro_runtime_hooks_set(&inspect_hooks);
}
