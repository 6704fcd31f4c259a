/*
 * A live process as a target: PTRACE_SEIZE + PTRACE_INTERRUPT every thread, read registers
 * and memory, detach. The process is stopped only for as long as the reader needs (a few
 * milliseconds for a registry walk and unwinding) and continues unharmed afterwards: seize
 * does not send SIGSTOP, and a signal that arrives while we hold a thread is handed back on
 * detach.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libelf.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "elf-target-int.h"

/* A thread that does not reach its ptrace stop within this time (uninterruptible sleep in a
 * broken driver, NFS) is given up on rather than hanging the reader. */
#define STOP_TIMEOUT_MS 2000
/* Threads that keep appearing while we attach: give up after this many directory passes. */
#define ATTACH_PASSES 16

typedef struct PidThread {
    int32_t tid;
    bool stopped;          /* in a ptrace stop: registers are readable */
    int pending_signal;    /* a signal that stopped it instead of our interrupt: re-inject */
} PidThread;

typedef struct PidTarget {
    ElfTarget e;
    int mem_fd;            /* /proc/PID/mem, the fallback when process_vm_readv is refused */
    bool vm_readv_ok;
    PidThread *threads;
    size_t nthreads, cap;
    struct PidTarget *next_open; /* on open_targets once its Dwfl exists */
    bool listed;
    CoroPrefetch pre;      /* pid_prefetch(): copies served before any syscall */
} PidTarget;

static char *pid_debuginfo_path;

/*
 * Open pid targets, so that find_elf (which gets a module, not our target) can reach the
 * process: a library replaced on disk while the process runs (a package upgrade) shows as
 * "PATH (deleted)" in /proc/PID/maps, and libdwfl's own callback then finds no file (it would
 * read the image from memory only with attached state, and memory has no symbol table). The
 * kernel still has the original file: /proc/PID/map_files/START-END opens it.
 */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static PidTarget *open_targets;

static pid_t pid_of_module(Dwfl_Module *mod)
{
    Dwarf_Addr lo;
    pid_t pid = -1;
    if (!dwfl_module_info(mod, NULL, &lo, NULL, NULL, NULL, NULL, NULL)) {
        return -1;
    }
    pthread_mutex_lock(&open_lock);
    for (PidTarget *p = open_targets; p; p = p->next_open) {
        if (p->e.base.dwfl && dwfl_addrmodule(p->e.base.dwfl, lo) == mod) {
            pid = p->e.base.pid;
            break;
        }
    }
    pthread_mutex_unlock(&open_lock);
    return pid;
}

/* Opens the file mapped as modname (which ends in " (deleted)") through map_files. */
static int open_deleted(pid_t pid, const char *modname)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    char line[4096 + 128];
    int fd = -1;
    while (fd < 0 && fgets(line, sizeof(line), f)) {
        unsigned long long lo, hi;
        int name_at = 0;
        if (sscanf(line, "%llx-%llx %*s %*s %*s %*s %n", &lo, &hi, &name_at) < 2 || !name_at) {
            continue;
        }
        char *name = line + name_at;
        name[strcspn(name, "\n")] = '\0';
        if (strcmp(name, modname) == 0) {
            char mf[96];
            snprintf(mf, sizeof(mf), "/proc/%d/map_files/%llx-%llx", (int)pid, lo, hi);
            fd = open(mf, O_RDONLY | O_CLOEXEC);
        }
    }
    fclose(f);
    return fd;
}

static int pid_find_elf(Dwfl_Module *mod, void **userdata, const char *modname,
                        Dwarf_Addr base, char **file_name, Elf **elfp)
{
    static const char deleted[] = " (deleted)";
    size_t n = modname ? strlen(modname) : 0;
    if (n > sizeof(deleted) - 1 && modname[0] == '/' &&
        strcmp(modname + n - (sizeof(deleted) - 1), deleted) == 0) {
        pid_t pid = pid_of_module(mod);
        int fd = pid > 0 ? open_deleted(pid, modname) : -1;
        if (fd >= 0) {
            Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
            char *name = strdup(modname);
            if (elf && name && elf_kind(elf) == ELF_K_ELF) {
                *elfp = elf;
                *file_name = name;
                return fd;
            }
            free(name);
            if (elf) {
                elf_end(elf);
            }
            close(fd);
        }
    }
    return dwfl_linux_proc_find_elf(mod, userdata, modname, base, file_name, elfp);
}

static const Dwfl_Callbacks pid_callbacks = {
    .find_elf = pid_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .debuginfo_path = &pid_debuginfo_path,
};

static int pid_read(CoroTarget *t, uint64_t addr, void *buf, size_t len)
{
    PidTarget *p = (PidTarget *)t;
    if (len == 0) {
        return 0;
    }
    if (addr + len < addr) {
        return -EFAULT;
    }
    if (p->pre.n && coro__prefetch_read(&p->pre, addr, buf, len)) {
        return 0;
    }
    if (p->vm_readv_ok) {
        struct iovec local = { buf, len };
        struct iovec remote = { (void *)(uintptr_t)addr, len };
        ssize_t n = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
        if (n == (ssize_t)len) {
            return 0;
        }
        if (n >= 0 || errno == EFAULT) {
            return -EFAULT;
        }
        if (errno != ENOSYS && errno != EPERM) {
            return -errno;
        }
        /* Refused (seccomp, container policy): /proc/PID/mem from now on. */
        p->vm_readv_ok = false;
    }
    if (p->mem_fd < 0) {
        return -EFAULT;
    }
    if (addr > (uint64_t)INT64_MAX) {
        return -EFAULT;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(p->mem_fd, (char *)buf + done, len - done, (off_t)(addr + done));
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return -EFAULT;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Only while the process is stopped (the CLI's ps and bt): the collect driver prefetches the
 * tops of the stacks it is about to unwind, a batch at a time. */
static int pid_prefetch(CoroTarget *t, const uint64_t *addrs, const uint64_t *lens, size_t n)
{
    PidTarget *p = (PidTarget *)t;
    if (!p->vm_readv_ok || !t->frozen_memory) {
        p->pre.n = 0;   /* refused, or not stopped: memory may change under us */
        return 0;
    }
    bool refused = false;
    int rc = coro__prefetch_fill(&p->pre, t->pid, addrs, lens, n, &refused);
    if (refused) {
        p->vm_readv_ok = false;
    }
    return rc;
}

static PidThread *find_thread(PidTarget *p, int32_t tid)
{
    for (size_t i = 0; i < p->nthreads; i++) {
        if (p->threads[i].tid == tid) {
            return &p->threads[i];
        }
    }
    return NULL;
}

static int pid_thread_regs(CoroTarget *t, int32_t tid, CoroMachineRegs *out)
{
    PidTarget *p = (PidTarget *)t;
    PidThread *th = find_thread(p, tid);
    if (!th || !th->stopped) {
        return -ESRCH;
    }
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, tid, NULL, &r) < 0) {
        return -errno;
    }
    *out = (CoroMachineRegs){
        .rip = r.rip, .rsp = r.rsp, .rbp = r.rbp, .rbx = r.rbx,
        .r12 = r.r12, .r13 = r.r13, .r14 = r.r14, .r15 = r.r15,
        .rax = r.rax, .rcx = r.rcx, .rdx = r.rdx, .rsi = r.rsi, .rdi = r.rdi,
        .r8 = r.r8, .r9 = r.r9, .r10 = r.r10, .r11 = r.r11,
        .valid = CORO_MREG_CALLEE_SAVED | CORO_MREG_ALL,
        .rip_is_return_address = false,
    };
    return 0;
}

static int pid_report_modules(CoroTarget *t, Dwfl *dwfl)
{
    int rc = dwfl_linux_proc_report(dwfl, t->pid);
    return rc == 0 ? 0 : (rc > 0 ? -rc : -EIO);
}

static void detach_all(PidTarget *p)
{
    for (size_t i = 0; i < p->nthreads; i++) {
        PidThread *th = &p->threads[i];
        /* Detach works from a ptrace stop; for a thread that never stopped it fails with
         * ESRCH and the kernel detaches it when we exit, still without a signal. */
        ptrace(PTRACE_DETACH, th->tid, NULL, (void *)(uintptr_t)th->pending_signal);
    }
    p->nthreads = 0;
}

static void pid_close(CoroTarget *t)
{
    PidTarget *p = (PidTarget *)t;
    if (p->listed) {
        pthread_mutex_lock(&open_lock);
        for (PidTarget **q = &open_targets; *q; q = &(*q)->next_open) {
            if (*q == p) {
                *q = p->next_open;
                break;
            }
        }
        pthread_mutex_unlock(&open_lock);
    }
    detach_all(p);
    if (t->dwfl) {
        dwfl_end(t->dwfl);
    }
    if (p->mem_fd >= 0) {
        close(p->mem_fd);
    }
    coro__prefetch_fini(&p->pre);
    free(p->threads);
    free(p->e.tids);
    free(p);
}

static const CoroTargetOps pid_ops = {
    .read = pid_read,
    .thread_regs = pid_thread_regs,
    .report_modules = pid_report_modules,
    .close = pid_close,
    .prefetch = pid_prefetch,
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits until th sits in a ptrace stop. Our PTRACE_INTERRUPT shows up as PTRACE_EVENT_STOP;
 * a signal may come first (signal-delivery stop), which is a stop too: we keep the signal and
 * hand it back on detach so the program sees it as if we had never been there.
 */
static void wait_stop(PidThread *th)
{
    long deadline = now_ms() + STOP_TIMEOUT_MS;
    for (;;) {
        int status;
        pid_t r = waitpid(th->tid, &status, __WALL | WNOHANG);
        if (r == th->tid) {
            if (WIFSTOPPED(status)) {
                /* event 0: a signal-delivery stop, whose signal the thread must still get. */
                if ((status >> 16) == 0) {
                    th->pending_signal = WSTOPSIG(status);
                }
                th->stopped = true;
            }
            /* Exited or killed: not stopped, nothing to read. */
            return;
        }
        if (r < 0 && errno != EINTR) {
            return;
        }
        if (now_ms() > deadline) {
            return;
        }
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
}

static int add_thread(PidTarget *p, int32_t tid)
{
    if (p->nthreads == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        PidThread *n = realloc(p->threads, cap * sizeof(*n));
        if (!n) {
            return -ENOMEM;
        }
        p->threads = n;
        p->cap = cap;
    }
    p->threads[p->nthreads++] = (PidThread){ .tid = tid };
    return 0;
}

/* One pass over /proc/PID/task: seizes and interrupts the threads not seen yet. Returns how
 * many were new, or -errno. */
/* True when thread tid of pid has exited (gone from /proc, or a zombie on its way out). */
static bool thread_gone(pid_t pid, pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return true;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return true;
    }
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

static int attach_pass(PidTarget *p, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)p->e.base.pid);
    DIR *d = opendir(path);
    if (!d) {
        int e = errno;
        snprintf(err, errlen, "cannot read process %d: %s", (int)p->e.base.pid,
                 e == ENOENT ? "no such process" : strerror(e));
        return e == ENOENT ? -ESRCH : -e;
    }
    int added = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        long tid = strtol(de->d_name, &end, 10);
        if (*end || tid <= 0 || find_thread(p, (int32_t)tid)) {
            continue;
        }
        if (ptrace(PTRACE_SEIZE, (pid_t)tid, NULL, NULL) < 0) {
            int e = errno;
            if (e == ESRCH || (e == EPERM && tid != p->e.base.pid &&
                               thread_gone(p->e.base.pid, (pid_t)tid))) {
                continue; /* exited meanwhile: the kernel says EPERM while it is a zombie */
            }
            closedir(d);
            if (e == EPERM) {
                char hint[640];
                coro__ptrace_refusal(p->e.base.pid, true, hint, sizeof(hint));
                snprintf(err, errlen, "cannot attach to process %d%s", (int)p->e.base.pid, hint);
            } else {
                snprintf(err, errlen, "cannot attach to process %d (thread %ld): %s",
                         (int)p->e.base.pid, tid, strerror(e));
            }
            return -e;
        }
        int rc = add_thread(p, (int32_t)tid);
        if (rc < 0) {
            ptrace(PTRACE_DETACH, (pid_t)tid, NULL, NULL);
            closedir(d);
            snprintf(err, errlen, "cannot attach to process %d: out of memory",
                     (int)p->e.base.pid);
            return rc;
        }
        if (ptrace(PTRACE_INTERRUPT, (pid_t)tid, NULL, NULL) == 0) {
            wait_stop(&p->threads[p->nthreads - 1]);
        }
        added++;
    }
    closedir(d);
    return added;
}

int coro__target_pid_open(pid_t pid, CoroTarget **out, char *err, size_t errlen)
{
    return coro__target_pid_open_mode(pid, true, out, err, errlen);
}

/* Whether the kernel lets us read pid's memory (the ptrace access check, without stopping
 * anything); fills err with the reason when not. */
static int check_readable(pid_t pid, char *err, size_t errlen)
{
    char byte;
    struct iovec local = { &byte, 1 }, remote = { (void *)1, 1 };
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) < 0 && (errno == EPERM ||
                                                               errno == ESRCH)) {
        int e = errno;
        if (e == ESRCH) {
            snprintf(err, errlen, "cannot read process %d: no such process", (int)pid);
        } else {
            char hint[640];
            coro__ptrace_refusal(pid, false, hint, sizeof(hint));
            snprintf(err, errlen, "cannot read process %d%s", (int)pid, hint);
        }
        return -e;
    }
    return 0;
}

int coro__target_pid_open_mode(pid_t pid, bool stop, CoroTarget **out, char *err,
                               size_t errlen)
{
    *out = NULL;
    if (pid <= 0) {
        snprintf(err, errlen, "invalid process id %d", (int)pid);
        return -EINVAL;
    }
    if (pid == getpid()) {
        snprintf(err, errlen, "cannot attach to process %d: it is coroscope itself", (int)pid);
        return -EINVAL;
    }
    if (kill(pid, 0) < 0 && errno == ESRCH) {
        snprintf(err, errlen, "cannot attach to process %d: no such process", (int)pid);
        return -ESRCH;
    }
    PidTarget *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "cannot attach to process %d: out of memory", (int)pid);
        return -ENOMEM;
    }
    p->e.base.ops = &pid_ops;
    p->e.base.pid = pid;
    p->mem_fd = -1;
    p->vm_readv_ok = true;
    snprintf(p->e.what, sizeof(p->e.what), "process %d", (int)pid);

    int rc = 0, pass;
    if (!stop) {
        /* Read while it runs: no ptrace stop, records read under their seqlocks. */
        rc = check_readable(pid, err, errlen);
        if (rc < 0) {
            pid_close(&p->e.base);
            return rc;
        }
        goto modules;
    }
    /* Threads may be created while we attach (a new thread of a seized thread is not
     * auto-attached without PTRACE_O_TRACECLONE): repeat until a pass finds none. */
    for (pass = 0; pass < ATTACH_PASSES; pass++) {
        rc = attach_pass(p, err, errlen);
        if (rc <= 0) {
            break;
        }
    }
    if (rc < 0) {
        pid_close(&p->e.base);
        return rc;
    }
    if (pass == ATTACH_PASSES) {
        snprintf(err, errlen, "cannot attach to process %d: it keeps creating threads",
                 (int)pid);
        pid_close(&p->e.base);
        return -EAGAIN;
    }
    size_t nstopped = 0;
    p->e.tids = calloc(p->nthreads ? p->nthreads : 1, sizeof(*p->e.tids));
    for (size_t i = 0; p->e.tids && i < p->nthreads; i++) {
        if (p->threads[i].stopped) {
            p->e.tids[nstopped++] = p->threads[i].tid;
        }
    }
    if (!p->e.tids || nstopped == 0) {
        snprintf(err, errlen, "cannot attach to process %d: %s", (int)pid,
                 p->e.tids ? "no thread could be stopped (exiting or a zombie?)" : "out of memory");
        pid_close(&p->e.base);
        return p->e.tids ? -ESRCH : -ENOMEM;
    }
    p->e.ntids = nstopped;
    /* A thread that did not reach its stop in time still runs and may write anywhere. */
    p->e.base.frozen_memory = nstopped == p->nthreads;
modules:;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    p->mem_fd = open(path, O_RDONLY | O_CLOEXEC);

    p->e.base.dwfl = dwfl_begin(&pid_callbacks);
    if (!p->e.base.dwfl) {
        snprintf(err, errlen, "cannot read process %d: %s", (int)pid, dwfl_errmsg(-1));
        pid_close(&p->e.base);
        return -ENOMEM;
    }
    pthread_mutex_lock(&open_lock);
    p->next_open = open_targets;
    open_targets = p;
    p->listed = true;
    pthread_mutex_unlock(&open_lock);
    dwfl_report_begin(p->e.base.dwfl);
    rc = pid_report_modules(&p->e.base, p->e.base.dwfl);
    dwfl_report_end(p->e.base.dwfl, NULL, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read the modules of process %d: %s", (int)pid,
                 strerror(-rc));
        pid_close(&p->e.base);
        return rc;
    }
    *out = &p->e.base;
    return 0;
}

void coro__target_resume(CoroTarget *t)
{
    if (t->ops == &pid_ops) {
        /* Running again: the copies would go stale. */
        ((PidTarget *)t)->pre.n = 0;
        t->frozen_memory = false;
        detach_all((PidTarget *)t);
    }
}
