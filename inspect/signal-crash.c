/*
 * The opt-in crash report (CORO_DUMP_ON_CRASH=1): on SIGSEGV, SIGBUS, SIGABRT, SIGFPE or
 * SIGILL, every coroutine is listed on stderr before the process dies as it would have. SIGBUS,
 * SIGABRT, SIGFPE and SIGILL are handled here; SIGSEGV by the stack-overflow handler of
 * inspect/guard.c, which calls coro__sig_crash_report_once() — one handler for both, so
 * neither hides the other.
 *
 * Never make the core worse: after the report the signal goes back to the disposition it had
 * before ours (the default action, or the program's, a sanitizer's or a crash reporter's
 * handler, which is chained to, not replaced) and takes effect at the interrupted
 * instruction: a fault runs again, a sent signal (abort()) is sent again and stays pending
 * until the handler has returned into abort(). gdb on the core shows the user's frames, with
 * no coroscope frame above them (tests/e2e-crash-core.sh).
 *
 * A crash can happen anywhere — inside malloc, inside the dynamic loader, inside libdw — so
 * nothing here allocates with malloc or takes a lock: the same snapshot as the signal dump
 * (the other coroutine threads are held while their records and stacks are copied into
 * freshly mmap'ed memory), then, per coroutine, its exact pc and the return addresses found
 * by scanning its stack, printed as function+offset (module+offset) from the module table and
 * the sorted symbol table that sigsafe-sym.c takes in advance once this report is armed.
 * That is best effort, and marked so: a scanned frame is a word on the stack that points
 * just after a call instruction in a known module, which may be stale. Symbolize offline:
 *     eu-addr2line -f -i -e MODULE OFFSET
 * docs/signal-dump.md shows a report.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "coro-int.h"
#include "inspect-int.h"
#include "signal-int.h"
#include "sigsafe-sym-int.h"

#define SCAN_BYTES (64u * 1024u)
#define SCAN_FRAMES 48

/* A return address is shown at its call instruction (pc - 1), so that addr2line names the
 * line of the call, as the symbolized dumps do. */
static void out_frame(CoroOut *o, unsigned n, uint64_t pc, bool is_ra, bool scanned)
{
    coro__out_str(o, scanned ? "  ?" : "  #");
    coro__out_u64(o, n);
    coro__out_str(o, " ");
    coro__out_hex(o, pc);
    uint64_t look = is_ra ? pc - 1 : pc;
    uint64_t off;
    char buf[CORO_SIGSYM_NAME_SIZE];
    const char *fn = coro__sigsym_function_of(look, &off, buf, sizeof(buf));
    if (fn) {
        coro__out_str(o, " ");
        coro__out_str(o, fn);
        coro__out_str(o, "+");
        coro__out_hex(o, off);
    }
    const CoroSigModule *m = coro__sigsym_module_of(look);
    if (m) {
        coro__out_str(o, fn ? " (" : " ");
        coro__out_str(o, m->name);
        coro__out_str(o, "+");
        coro__out_hex(o, look - m->base);
        coro__out_str(o, fn ? ")" : "");
    }
    coro__out_str(o, "\n");
}

static void out_repeats(CoroOut *o, uint64_t *repeats)
{
    if (*repeats) {
        coro__out_str(o, "      (the line above repeated ");
        coro__out_u64(o, *repeats);
        coro__out_str(o, " more times)\n");
        *repeats = 0;
    }
}

bool coro__sig_scan_stack(CoroOut *o, uint64_t lo, uint64_t hi, unsigned max,
                          bool (*read)(uint64_t addr, uint64_t *v, void *arg),
                          void (*frame)(CoroOut *o, unsigned n, uint64_t ra, void *arg),
                          void *arg)
{
    const struct coro_debug_abi *abi = &coroscope_debug_abi;
    unsigned n = 1;
    uint64_t last = 0, repeats = 0, a = (lo + 7) & ~(uint64_t)7;
    for (; a + 8 <= hi && n < max; a += 8) {
        uint64_t v;
        if (!read(a, &v, arg)) {
            break;
        }
        if (!coro__sigsym_module_of(v) || !coro__sigsym_after_call(v)) {
            continue;
        }
        if (v - 1 >= abi->trampoline_start && v - 1 < abi->trampoline_end) {
            break; /* the bottom of the coroutine stack */
        }
        if (v == last) {
            repeats++; /* recursion: how deep, instead of the same line again */
            continue;
        }
        out_repeats(o, &repeats);
        last = v;
        frame(o, n++, v, arg);
    }
    out_repeats(o, &repeats);
    return a + 8 <= hi && n >= max;
}

static bool snapshot_read(uint64_t addr, uint64_t *v, void *arg)
{
    bool fenced;
    const uint64_t *w = coro__sig_find(arg, addr, 8, &fenced);
    if (w) {
        *v = *w;
    }
    return w != NULL;
}

static void scanned_frame(CoroOut *o, unsigned n, uint64_t ra, void *arg)
{
    out_frame(o, n, ra, true, true);
}

/* Frame 0 at pc, then return addresses found on [sp, top) of the stack [base, top). A stack
 * pointer below base (an overflow into the guard page) is scanned from base. */
static void out_frames(CoroOut *o, uint64_t pc, bool is_ra, uint64_t sp, uint64_t base,
                       uint64_t top, const SigSnapshot *s)
{
    out_frame(o, 0, pc, is_ra, false);
    if (sp < base) {
        sp = base;
    }
    uint64_t end = top - sp > SCAN_BYTES ? sp + SCAN_BYTES : top;
    coro__sig_scan_stack(o, sp, end, SCAN_FRAMES, snapshot_read, scanned_frame, (void *)s);
}

/* ---- the report ---- */

static SigSnapshot crash_snap;

/* `ID "name"` (the name escaped). */
static void out_id_name(CoroOut *o, const Coroutine *rec)
{
    coro__out_u64(o, rec->id);
    if (rec->name[0]) {
        /* Untrusted bytes to a terminal: control characters, quotes and backslashes are
         * escaped as \xNN, as the text dump does, so a name cannot move the cursor. */
        static const char hex[] = "0123456789abcdef";
        char name[CORO_NAME_SIZE * 4];
        size_t k = 0;
        for (size_t i = 0; i < CORO_NAME_SIZE - 1 && rec->name[i]; i++) {
            unsigned char c = (unsigned char)rec->name[i];
            if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
                name[k++] = '\\';
                name[k++] = 'x';
                name[k++] = hex[c >> 4];
                name[k++] = hex[c & 15];
            } else {
                name[k++] = (char)c;
            }
        }
        name[k] = '\0';
        coro__out_str(o, " \"");
        coro__out_str(o, name);
        coro__out_str(o, "\"");
    }
}

static void out_header(CoroOut *o, const Coroutine *rec)
{
    coro__out_str(o, "coroutine ");
    out_id_name(o, rec);
    coro__out_str(o, " [");
    coro__out_str(o, coro__state_name(rec->state));
    coro__out_str(o, ", thread ");
    coro__out_i64(o, rec->tid);
    coro__out_str(o, "]:\n");
}

/* Static, not on the signal stack (CoroOut is 17 KiB; a program's alternate stack may be
 * 8 KiB): one report per process. */
static CoroOut crash_out;

void coro__sig_crash_report(int fd, int signo, const void *ucontext)
{
    CoroOut *o = &crash_out;
    coro__out_init(o, fd);
    /* Read before the snapshot: the coroutine this thread was running when it crashed. */
    const Coroutine *running = coro_self();
    CoroMachineRegs self;
    memset(&self, 0, sizeof(self));
    if (ucontext) {
        const greg_t *g = ((const ucontext_t *)ucontext)->uc_mcontext.gregs;
        self.rip = (uint64_t)g[REG_RIP];
        self.rsp = (uint64_t)g[REG_RSP];
        self.valid = CORO_MREG_RIP | CORO_MREG_RSP;
    }
    int err = coro__sig_capture(&crash_snap, ucontext ? &self : NULL);
    bool fenced;
    const char *abbrev = sigabbrev_np(signo);
    coro__out_str(o, "coroscope: crash report: SIG");
    coro__out_str(o, abbrev ? abbrev : "?");
    coro__out_str(o, " in thread ");
    coro__out_i64(o, gettid());
    if (running) {
        /* Which coroutine crashed, e.g. the one whose entry function let a C++ exception
         * escape (std::terminate -> abort). */
        const Coroutine *rec = err < 0 ? NULL : coro__sig_find(&crash_snap,
                                               (uint64_t)(uintptr_t)running, sizeof(*rec), &fenced);
        coro__out_str(o, ", in coroutine ");
        if (rec) {
            out_id_name(o, rec);
        } else {
            coro__out_hex(o, (uint64_t)(uintptr_t)running);
        }
    }
    if (err < 0) {
        coro__out_str(o, "; no snapshot: ");
        coro__out_str(o, strerrorname_np(-err) ? strerrorname_np(-err) : "error");
        coro__out_str(o, "\n");
        coro__out_flush(o);
        return;
    }
    coro__out_str(o, ", ");
    coro__out_u64(o, crash_snap.ncoroutines);
    coro__out_str(o, " coroutines (#N exact pc, ?N found by scanning the stack)\n");
    const SigSnapshot *s = &crash_snap;
    const struct coro_debug_abi *abi = coro__sig_find(s, s->abi_addr, sizeof(*abi), &fenced);
    uint64_t addr = abi ? abi->records : 0;
    uint64_t n = 0;
    for (; abi && addr && n < abi->nrecords; n++) {
        const Coroutine *rec = coro__sig_find(s, addr, sizeof(Coroutine), &fenced);
        if (!rec) {
            break;
        }
        uint32_t st = rec->state;
        if (st == CORO_STATE_CREATED || st == CORO_STATE_RUNNING ||
            st == CORO_STATE_SUSPENDED || st == CORO_STATE_NESTED) {
            out_header(o, rec);
            uint64_t base = (uint64_t)(uintptr_t)rec->stack_base;
            uint64_t top = base + rec->stack_size;
            if (st == CORO_STATE_CREATED) {
                out_frame(o, 0, (uint64_t)(uintptr_t)rec->entry, false, false);
            } else if (st == CORO_STATE_RUNNING) {
                const SigThread *t = NULL;
                for (size_t i = 0; i < s->nthreads; i++) {
                    if (s->threads[i].tid == rec->tid && s->threads[i].held) {
                        t = &s->threads[i];
                    }
                }
                if (t) {
                    out_frames(o, t->regs.rip, t->regs.rip_is_return_address, t->regs.rsp,
                               base, top, s);
                } else {
                    coro__out_str(o, "  (running on a thread that could not be stopped)\n");
                }
            } else {
                /* A saved context: rip is the return address into the suspended function. */
                out_frames(o, rec->regs.rip, true, rec->regs.rsp, base, top, s);
            }
        }
        addr = (uint64_t)(uintptr_t)rec->next;
    }
    if (abi && addr) {
        /* The partial-record rule of the other dumps, in the signal-safe walk: say that the
         * list went on where it could not be followed (an unreadable record, or more records
         * than counted), so that nobody takes this for every coroutine. */
        coro__out_str(o, "coroscope: partial: the registry walk stopped at ");
        coro__out_hex(o, addr);
        coro__out_str(o, n < abi->nrecords ? " (a record that could not be read)"
                                           : " (more records than the registry counts)");
        coro__out_str(o, ": coroutines after it are not listed\n");
    }
    coro__out_str(o, "coroscope: end of crash report; symbolize with "
                      "eu-addr2line -f -i -e MODULE OFFSET\n");
    coro__out_flush(o);
}

/* ---- the handler ---- */

/* SIGSEGV is not here: inspect/guard.c owns the one SIGSEGV handler (stack overflows) and
 * calls coro__sig_crash_report() from it when the report is armed. */
static const int crash_signals[] = { SIGBUS, SIGABRT, SIGFPE, SIGILL };
#define NCRASH (sizeof(crash_signals) / sizeof(crash_signals[0]))
static struct sigaction previous[NCRASH]; /* what each had before ours */
static _Atomic int reporting;
static _Atomic bool armed;

void coro__sig_redeliver(int signo, const siginfo_t *si, const struct sigaction *prev)
{
    sigaction(signo, prev, NULL);
    if (si->si_code <= 0 || signo == SIGABRT) {
        /* Sent (SI_USER, SI_TKILL, SI_QUEUE...): blocked while this handler runs, so it stays
         * pending and is delivered at the interrupted instruction once we return — for
         * abort(), inside its raise(), which is where the core's first frames then are. */
        tgkill(getpid(), gettid(), signo);
    }
    /* A fault (si_code > 0): the instruction runs again when we return. */
}

static void crash_handler(int signo, siginfo_t *si, void *uc)
{
    /* One report per process: a second crash (in another thread, or in the report) only
     * goes to the previous disposition. */
    coro__sig_crash_report_once(signo, uc);
    for (unsigned i = 0; i < NCRASH; i++) {
        if (crash_signals[i] == signo) {
            coro__sig_redeliver(signo, si, &previous[i]);
        }
    }
}

bool coro__sig_crash_armed(void)
{
    return atomic_load_explicit(&armed, memory_order_acquire);
}

void coro__sig_crash_report_once(int signo, const void *ucontext)
{
    if (coro__sig_crash_armed() && !atomic_exchange(&reporting, 1)) {
        coro__sig_crash_report(STDERR_FILENO, signo, ucontext);
    }
}

int coro__sig_crash_init(void)
{
    int err = coro__sig_hold_init();
    if (err < 0) {
        return err;
    }
    /* Many frames of many coroutines to name: sort every symbol now rather than read the
     * files in the handler. */
    coro__sigsym_symbols_enable();
    atomic_store_explicit(&armed, true, memory_order_release);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = crash_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (unsigned i = 0; i < NCRASH; i++) {
        sigaddset(&sa.sa_mask, crash_signals[i]);
    }
    for (unsigned i = 0; i < NCRASH; i++) {
        struct sigaction old;
        if (sigaction(crash_signals[i], NULL, &old) != 0) {
            continue;
        }
        if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN) {
            continue; /* the program ignores it: not a crash */
        }
        if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == crash_handler) {
            continue; /* armed already */
        }
        /* A handler installed before ours (the program's, a sanitizer's) runs after the
         * report (coro__sig_redeliver), at the crash site. */
        previous[i] = old;
        sigaction(crash_signals[i], &sa, NULL);
    }
    return 0;
}
