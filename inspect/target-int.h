/*
 * Targets: where the bytes of a coroutine registry and of coroutine stacks come from — this
 * process, a live pid, a core file, a snapshot taken in a signal handler. Each target fills
 * one ops table (the Dwfl_Thread_Callbacks idea from elfutils); reading the registry,
 * unwinding, symbolizing and formatting are shared by all targets (registry-read.c,
 * unwind.c, symbolize.c, format.c).
 *
 * Every byte a target returns is untrusted: readers bound every walk and check every size.
 */
#ifndef COROSCOPE_TARGET_INT_H
#define COROSCOPE_TARGET_INT_H

#include <elfutils/libdwfl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The registers an unwinder needs, by name. valid is a bitmask of CORO_MREG_* bits. */
enum {
    CORO_MREG_RIP = 1u << 0, CORO_MREG_RSP = 1u << 1, CORO_MREG_RBP = 1u << 2,
    CORO_MREG_RBX = 1u << 3, CORO_MREG_R12 = 1u << 4, CORO_MREG_R13 = 1u << 5,
    CORO_MREG_R14 = 1u << 6, CORO_MREG_R15 = 1u << 7,
    CORO_MREG_CALLEE_SAVED = 0xff,   /* what a coroutine's saved context holds */
    CORO_MREG_ALL = 1u << 8,         /* plus the caller-saved ones below (a thread's full set) */
};

typedef struct CoroMachineRegs {
    uint64_t rip, rsp, rbp, rbx, r12, r13, r14, r15;
    uint64_t rax, rcx, rdx, rsi, rdi, r8, r9, r10, r11;
    unsigned valid;
    bool rip_is_return_address; /* true for a saved context: symbolize rip - 1 */
} CoroMachineRegs;

typedef struct CoroTarget CoroTarget;

typedef struct CoroTargetOps {
    /* Reads len bytes at target address addr into buf: 0, or -errno (-EFAULT when any byte is
     * not readable). Never crashes, whatever addr is. */
    int (*read)(CoroTarget *t, uint64_t addr, void *buf, size_t len);
    /* Registers of thread tid as the target was stopped (a running coroutine is unwound
     * from these): 0, or -errno (-ESRCH: no such thread). */
    int (*thread_regs)(CoroTarget *t, int32_t tid, CoroMachineRegs *out);
    /* Reports the target's modules into dwfl (between dwfl_report_begin and _end). */
    int (*report_modules)(CoroTarget *t, Dwfl *dwfl);
    /* Releases what the target holds (detaches from a pid); then frees t. */
    void (*close)(CoroTarget *t);
    /* Optional (NULL: reads stay one by one). Copies the n ranges [addrs[i], addrs[i] +
     * lens[i]) in a few syscalls, so that later reads inside one of them are a memcpy; only
     * for memory that does not change meanwhile (a stopped process). Replaces the previous
     * set; ranges that cannot be read are left out. 0 or -errno. */
    int (*prefetch)(CoroTarget *t, const uint64_t *addrs, const uint64_t *lens, size_t n);
} CoroTargetOps;

struct CoroTarget {
    const CoroTargetOps *ops;
    pid_t pid;                 /* the process (or the core's process) */
    Dwfl *dwfl;                /* modules of the target, once reported; owned by the target */
    char error[256];           /* last error, one line: what, which, why (per handle) */
    bool frozen_clock;         /* a core file: no clock of its own; "waiting for" durations
                                  use the registry's last clock reading (debug-abi.h) */
    bool frozen_memory;        /* nothing changes its memory while it is read (a core, a
                                  process with every thread in a ptrace stop): one read of a
                                  record is as good as two */
};

/* Copies of many ranges of a live process (prefetch.c), for the targets' prefetch op. */
#define CORO_PREFETCH_MAX_RANGES (16u * 1024u * 1024u)
#define CORO_PREFETCH_MAX_LEN (1u << 20)
typedef struct CoroPrefetchRange {
    uint64_t addr, len;
    size_t off;               /* into CoroPrefetch.buf */
} CoroPrefetchRange;
typedef struct CoroPrefetch {
    CoroPrefetchRange *r;     /* the ranges read, sorted by address, not overlapping */
    size_t n, cap;
    char *buf;
    size_t bufcap;
} CoroPrefetch;

/* Reads the ranges of process pid into p (zero-initialised, or filled before: its buffers are
 * reused), replacing what it held. -EINVAL for a range longer than CORO_PREFETCH_MAX_LEN,
 * wrapping or overlapping another, or more than CORO_PREFETCH_MAX_RANGES; -ENOMEM; else 0
 * (ranges that fault are left out; *refused, when given, is set when process_vm_readv is not
 * allowed at all). */
int coro__prefetch_fill(CoroPrefetch *p, pid_t pid, const uint64_t *addrs, const uint64_t *lens,
                        size_t n, bool *refused);
/* Copies [addr, addr + len) from p when one range holds all of it: true, else false. */
bool coro__prefetch_read(const CoroPrefetch *p, uint64_t addr, void *buf, size_t len);
void coro__prefetch_fini(CoroPrefetch *p);

/* A Dwfl_Callbacks.find_elf for readers of this very process: opens module files without
 * mapping them, so that outside readers do not see them as extra modules (elf-open.c). */
int coro__find_elf_unmapped(Dwfl_Module *mod, void **userdata, const char *modname,
                            Dwarf_Addr base, char **file_name, Elf **elfp);

#endif /* COROSCOPE_TARGET_INT_H */
