/*
 * The signal dump (docs/signal-dump.md): internals shared by signal.c (API, environment,
 * helper thread), signal-hold.c (holding the coroutine threads and copying the registry and
 * stacks into a snapshot), signal-target.c (the snapshot as a CoroTarget) and signal-crash.c
 * (the opt-in crash report).
 */
#ifndef COROSCOPE_SIGNAL_INT_H
#define COROSCOPE_SIGNAL_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "target-int.h"

/* Bytes of a coroutine stack copied at most, from its stack pointer up to its top. Deeper
 * stacks are cut: their outermost frames are missing from the dump. */
#define CORO_SIG_STACK_CAP (256u * 1024u)
/* Bytes below a stack pointer copied as well (the x86_64 red zone). */
#define CORO_SIG_RED_ZONE 128u

/* One copied (or deliberately absent) range of the process's memory. */
typedef struct SigRegion {
    uint64_t addr;
    uint64_t len;
    uint64_t off;     /* into the arena; SIG_REGION_FENCE: known, not copied (reads fail) */
} SigRegion;
#define SIG_REGION_FENCE UINT64_MAX

/* A thread that has used coroutines, as found when the dump started. */
typedef struct SigThread {
    int32_t tid;
    bool held;                  /* stopped in the hold handler: regs are valid */
    CoroMachineRegs regs;
    uint64_t running;           /* record whose stack it was on, 0 if none */
    uint64_t stop_ns;           /* from the signal to the thread's stop */
} SigThread;

/*
 * A consistent copy of the registry and of every live coroutine's used stack, taken while the
 * coroutine threads were held. All memory is mmap'ed (never malloc: it is filled while other
 * threads, which may own malloc's lock, are stopped) and reused from one dump to the next.
 */
typedef struct SigSnapshot {
    char *arena;
    size_t arena_cap, arena_used;
    SigRegion *regions;
    size_t nregions, regions_cap;
    SigThread *threads;
    size_t nthreads, threads_cap;
    uint64_t abi_addr;          /* where the descriptor lives (served from the copy) */
    /* Measurements of the last capture, for docs and tests. */
    uint64_t hold_ns;           /* first thread stopped .. last thread released */
    uint64_t capture_ns;        /* preparation + hold */
    uint64_t copy_ns;           /* the copying part of the hold (all threads stopped) */
    unsigned attempts;          /* holds taken (> 1 when threads appeared meanwhile) */
    unsigned unheld;            /* coroutine threads that could not be stopped */
    unsigned truncated;         /* stacks cut to the arena or to CORO_SIG_STACK_CAP */
    uint64_t mapped_lo, mapped_hi; /* record pages known readable (signal-hold.c) */
    size_t ncoroutines;         /* live records copied */
} SigSnapshot;

/*
 * Fills s: sizes the buffers (may allocate: call from the helper thread, never from a signal
 * handler), holds every thread that owns a registry shard with the internal signal, copies,
 * releases, then puts the copy in a consistent form (see docs/signal-dump.md "Consistency").
 * self_regs, when not NULL, are the calling thread's registers (the crash report: the thread
 * that crashed may itself be running a coroutine). 0 or -errno (-ENOMEM). CORO_SIGNAL_SAFE
 * (mmap, futex, tgkill, process_vm_readv only), so the crash report can use it too.
 */
int coro__sig_capture(SigSnapshot *s, const CoroMachineRegs *self_regs);

/* Installs the hold handler on an unused real-time signal, once. 0 or -errno (-EBUSY: every
 * real-time signal is taken). */
int coro__sig_hold_init(void);
/* The real-time signal used to hold threads, 0 before coro__sig_hold_init(). */
int coro__sig_hold_signo(void);

/* A CoroTarget over s: read() serves the copies (live memory for what is outside every copied
 * or fenced range, e.g. code and string constants), thread_regs() the captured registers,
 * report_modules() this process's modules. Borrowed s must outlive the target. Release with
 * t->ops->close(t). NULL on ENOMEM. */
CoroTarget *coro__sig_target_create(SigSnapshot *s);

/* Shared by the capture (signal-hold.c) and its normalisation (signal-normalize.c). A record
 * state that has a stack; the thread slot of tid, NULL none; whether the registers' stack
 * pointer is on [base, top] or in the guard page below base (an overflow); and the pass
 * that makes every copied record say where its stack really was. */
bool coro__sig_live_state(uint32_t st);
SigThread *coro__sig_find_thread(SigSnapshot *s, int32_t tid);
bool coro__sig_on_stack(const CoroMachineRegs *r, uint64_t base, uint64_t top);
void coro__sig_normalize(SigSnapshot *s);

/* Sorts s->regions by address (after the capture, before lookups). */
void coro__sig_regions_sort(SigSnapshot *s);
/* The copy of [addr, addr + len) or NULL; *fenced tells whether the range lies in memory
 * that was deliberately not copied (unused parts of coroutine stacks). */
const void *coro__sig_find(const SigSnapshot *s, uint64_t addr, size_t len, bool *fenced);

/* The crash report (signal-crash.c). Installs the handlers for SIGBUS, SIGABRT, SIGFPE and
 * SIGILL; a handler installed before (the program's, a sanitizer's) is kept and chained to.
 * 0 or -errno. */
int coro__sig_crash_init(void);
/* True once the crash report is armed. */
bool coro__sig_crash_armed(void);
/* Writes a best-effort report of every coroutine to fd. CORO_SIGNAL_SAFE. */
void coro__sig_crash_report(int fd, int signo, const void *ucontext);
/* The report on stderr, when CORO_DUMP_ON_CRASH=1 armed it and no report was written yet in
 * this process; nothing otherwise. For the SIGSEGV handler of inspect/guard.c, which
 * redelivers the signal itself. CORO_SIGNAL_SAFE. */
void coro__sig_crash_report_once(int signo, const void *ucontext);
/*
 * From a handler of a fatal signal, after its report: gives the signal back to `previous`
 * (the disposition before ours, usually the default action) so that it takes effect at the
 * interrupted instruction, not in the handler — a core then shows the user's frames, as
 * without coroscope. A fault the kernel raised (si_code > 0) happens again when the handler
 * returns; a sent signal (kill, raise, abort) is sent again to this thread, where it stays
 * pending (the handler blocks it) until the handler returns. CORO_SIGNAL_SAFE.
 */
void coro__sig_redeliver(int signo, const siginfo_t *si, const struct sigaction *previous);

uint64_t coro__sig_now_ns(void);

/* A stall report (watchdog.c) made like a signal dump — the threads held, the running
 * coroutine unwound from its thread's registers — listing only stall->id, with the stall's
 * header; to path ("%p" expanded, O_APPEND | O_NOFOLLOW, 0600) or stderr when NULL. 0 or
 * -errno (also said on the output). */
/*
 * The return addresses a scan of a stack finds, for the overflow and crash reports: the
 * words on [lo, hi) that point just after a call in a known module (sigsafe-sym.c), up to the
 * trampoline's (the bottom of every coroutine stack), each passed to frame() with n counting
 * from 1; a run of one address (recursion) is one frame and a line "(the line above repeated
 * N more times)". read() fetches a word (false ends the scan). Stops before frame max and
 * returns whether words were left then. CORO_SIGNAL_SAFE (signal-crash.c).
 */
struct CoroOut;
bool coro__sig_scan_stack(struct CoroOut *o, uint64_t lo, uint64_t hi, unsigned max,
                          bool (*read)(uint64_t addr, uint64_t *v, void *arg),
                          void (*frame)(struct CoroOut *o, unsigned n, uint64_t ra, void *arg),
                          void *arg);

/* CORO_STALL_MS from the environment, with the dump format and path already read (signal.c's
 * env_init): starts the watchdog, or one line on stderr for a bad value. */
void coro__watchdog_env(int format, const char *path);

/* Reads this process's modules for the dumps now (the watchdog, when it starts), so that its
 * first report does not pay for it while a stall goes on. */
void coro__sig_dump_prepare(void);

struct CoroStall;
int coro__sig_dump_stall(const char *path, int format, const struct CoroStall *stall);

/* Reads CORO_DUMP_SIGNAL, CORO_DUMP_PATH, CORO_DUMP_FORMAT and CORO_DUMP_ON_CRASH once per
 * process (signal.c). Called by a constructor at load and by the runtime's thread_init hook (guard.c), the
 * reference that pulls signal.o into programs linked with the static library. */
void coro__signal_init(void);

/* One line on stderr for a CORO_* variable with a bad value: the variable, the value, what
 * it accepts (why), and what happens instead (fallback). signal.c. */
void coro__env_complain(const char *var, const char *value, const char *why,
                        const char *fallback);

#endif /* COROSCOPE_SIGNAL_INT_H */
