/*
 * Out-of-process targets: a live pid (target-pid.c) and an ELF core file (target-core.c),
 * and finding a target's coroutine registry by symbol or by ELF section (elf-registry.c).
 *
 * Both open functions fill t->dwfl with the target's modules (reported and ready for
 * dwfl_attach_state by the unwinder: no state is attached here) and, on failure, write one
 * line to err — what, which target, why, and what to do where there is something to do.
 */
#ifndef COROSCOPE_ELF_TARGET_INT_H
#define COROSCOPE_ELF_TARGET_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "target-int.h"

/*
 * Seizes and interrupts every thread of pid (threads that appear meanwhile too), so that
 * registers and memory hold still while they are read. The threads continue when the target
 * is closed (ops->close detaches). Returns 0 and *out, or -errno with a line in err:
 * -ESRCH no such process, -EPERM not allowed to trace it, other -errno.
 * Release with (*out)->ops->close(*out).
 */
int coro__target_pid_open(pid_t pid, CoroTarget **out, char *err, size_t errlen);

/* As coro__target_pid_open when stop; otherwise the process is never stopped (no ptrace):
 * memory is read while it runs (records under their seqlocks, docs/debug-abi.md) and
 * thread_regs answers -ENOSYS. `coroscope top` reads this way. */
int coro__target_pid_open_mode(pid_t pid, bool stop, CoroTarget **out, char *err,
                               size_t errlen);

/* Why PTRACE_SEIZE of pid (attach) or process_vm_readv (!attach) answered EPERM and what to
 * do, as a clause of the error line (": not allowed to trace it: ...; run coroscope as root,
 * ..."): ptrace's user rules, kernel.yama.ptrace_scope, CAP_SYS_PTRACE, zombies, another
 * tracer (ptrace-refusal.c). */
void coro__ptrace_refusal(pid_t pid, bool attach, char *buf, size_t len);

/*
 * Opens an x86_64 ELF core file (kernel or gdb gcore). exe, when not NULL, is the main
 * executable, checked against the build-id the core records; otherwise the modules named by
 * the core's notes are used. Returns 0 and *out, or -errno with a line in err:
 * -ENOENT/-EACCES cannot open, -ENOEXEC not a core / wrong arch, -EIO truncated,
 * -EINVAL build-id mismatch. Release with (*out)->ops->close(*out).
 */
int coro__target_core_open(const char *core, const char *exe, CoroTarget **out, char *err,
                           size_t errlen);

/* Lets a live process run again once everything needed from its memory and registers has
 * been read (detaches; later reads see a running process). Nothing for a core. The target
 * stays open: its Dwfl (for symbolizing) lives until ops->close. */
void coro__target_resume(CoroTarget *t);

/* The common head of both targets: what the CLI needs beyond the ops table. */
typedef struct ElfTarget {
    CoroTarget base;
    int32_t *tids;         /* threads as stopped (pid) or dumped (core) */
    size_t ntids;
    char what[4200];       /* for messages: "process 1234", "core file /tmp/core" (a whole
                              path: messages never cut one) */
} ElfTarget;

/* Threads of a target opened by the functions above; the array lives until t is closed. */
static inline size_t coro__target_tids(CoroTarget *t, const int32_t **tids)
{
    *tids = ((ElfTarget *)t)->tids;
    return ((ElfTarget *)t)->ntids;
}

static inline const char *coro__target_describe(CoroTarget *t)
{
    return ((ElfTarget *)t)->what;
}

/*
 * Finds the target's debug ABI descriptor: the symbol CORO_DEBUG_ABI_SYMBOL in any module's
 * symbol table, else the section CORO_DEBUG_ABI_SECTION of a module's ELF file plus the
 * module's load bias (stripped executables). Returns 0 with *addr (a target address) and
 * *module (borrowed from t->dwfl), -ENOENT when no module has one, with a line in err.
 */
int coro__target_find_registry(CoroTarget *t, uint64_t *addr, const char **module, char *err,
                               size_t errlen);

/*
 * Modules of t whose ELF file could not be used: it is gone, or it is an ELF file that is not
 * the one the target ran (build-id differs). Frames in them can be neither unwound nor named.
 * Stores up to max names (borrowed from t->dwfl) and returns how many there are.
 */
size_t coro__target_missing_modules(CoroTarget *t, const char **names, size_t max);

#endif /* COROSCOPE_ELF_TARGET_INT_H */
