/*
 * This process as a target: the in-process dump, the leak check and the overflow report read
 * their own registry through the same ops as the CLI reads another process's, so that a bad
 * pointer in a record costs one coroutine's backtrace, never a fault.
 *
 * Reads use process_vm_readv() on our own pid (one syscall, -EFAULT on any unmapped byte);
 * where that is not allowed (seccomp, some sandboxes) they fall back to pread() on
 * /proc/self/mem. Both answer for guard pages as the kernel sees them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "inspect-int.h"

extern struct coro_debug_abi coroscope_debug_abi;

typedef struct SelfTarget {
    CoroTarget base;
    int memfd;            /* /proc/self/mem, opened on first need */
    bool no_vm_readv;
    CoroPrefetch pre;     /* coro__self_target_prefetch() */
} SelfTarget;

static int self_read(CoroTarget *t, uint64_t addr, void *buf, size_t len)
{
    SelfTarget *s = (SelfTarget *)t;
    if (len == 0) {
        return 0;
    }
    if (addr + len < addr) {
        return -EFAULT;
    }
    if (s->pre.n && coro__prefetch_read(&s->pre, addr, buf, len)) {
        return 0;
    }
    if (!s->no_vm_readv) {
        struct iovec local = { buf, len };
        struct iovec remote = { (void *)(uintptr_t)addr, len };
        ssize_t n = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
        if (n == (ssize_t)len) {
            return 0;
        }
        if (n >= 0 || errno == EFAULT || errno == ENOMEM) {
            return -EFAULT;
        }
        if (errno != ENOSYS && errno != EPERM) {
            return -errno;
        }
        s->no_vm_readv = true;
    }
    if (s->memfd < 0) {
        s->memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
        if (s->memfd < 0) {
            return -errno;
        }
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(s->memfd, (char *)buf + done, len - done, (off_t)(addr + done));
        if (n <= 0) {
            return n < 0 && errno == EINTR ? -EINTR : -EFAULT;
        }
        done += (size_t)n;
    }
    return 0;
}

static int self_thread_regs(CoroTarget *t, int32_t tid, CoroMachineRegs *out)
{
    /* Another thread of this process cannot be stopped from here; the signal dump gets a
     * running coroutine's registers from its own handler instead. */
    return -ENOSYS;
}

static int self_report_modules(CoroTarget *t, Dwfl *dwfl)
{
    int rc = dwfl_linux_proc_report(dwfl, getpid());
    if (rc != 0) {
        snprintf(t->error, sizeof(t->error), "cannot list this process's modules: %s",
                 rc > 0 ? strerror(rc) : dwfl_errmsg(-1));
        return rc > 0 ? -rc : -EIO;
    }
    return 0;
}

int coro__self_target_prefetch(CoroTarget *t, const uint64_t *addrs, const uint64_t *lens,
                               size_t n)
{
    SelfTarget *s = (SelfTarget *)t;
    if (s->no_vm_readv) {
        s->pre.n = 0;
        return 0;
    }
    int rc = coro__prefetch_fill(&s->pre, t->pid, addrs, lens, n, NULL);
    if (rc < 0) {
        coro__self_target_prefetch_drop(t);
    }
    return rc;
}

void coro__self_target_prefetch_drop(CoroTarget *t)
{
    coro__prefetch_fini(&((SelfTarget *)t)->pre);
}

static void self_close(CoroTarget *t)
{
    SelfTarget *s = (SelfTarget *)t;
    coro__self_target_prefetch_drop(t);
    if (s->memfd >= 0) {
        close(s->memfd);
    }
    if (t->dwfl) {
        dwfl_end(t->dwfl);
    }
    free(s);
}

static const CoroTargetOps self_ops = {
    .read = self_read,
    .thread_regs = self_thread_regs,
    .report_modules = self_report_modules,
    .close = self_close,
};

static char *debuginfo_path;
static const Dwfl_Callbacks self_callbacks = {
    .find_elf = coro__find_elf_unmapped,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .debuginfo_path = &debuginfo_path,
};

int coro__self_target_open(CoroTarget **out)
{
    SelfTarget *s = calloc(1, sizeof(*s));
    if (!s) {
        return -ENOMEM;
    }
    s->base.ops = &self_ops;
    s->base.pid = getpid();
    s->memfd = -1;
    s->base.dwfl = dwfl_begin(&self_callbacks);
    if (!s->base.dwfl) {
        free(s);
        return -ENOMEM;
    }
    dwfl_report_begin(s->base.dwfl);
    int rc = self_report_modules(&s->base, s->base.dwfl);
    dwfl_report_end(s->base.dwfl, NULL, NULL);
    if (rc < 0) {
        self_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

void coro__self_target_forked(CoroTarget *t)
{
    /* The child reads its own memory now, not its parent's: new pid, and /proc/self/mem as
     * opened before the fork still means the parent's. */
    SelfTarget *s = (SelfTarget *)t;
    t->pid = getpid();
    if (s->memfd >= 0) {
        close(s->memfd);
        s->memfd = -1;
    }
}

uint64_t coro__self_abi_addr(void)
{
    return (uint64_t)(uintptr_t)&coroscope_debug_abi;
}

/* coro__capture_regs: rdi = CoroMachineRegs *. The caller's context as a switch would save
 * it: rip = our return address, rsp = the caller's rsp once we return. */
_Static_assert(offsetof(CoroMachineRegs, rip) == 0, "capture layout");
_Static_assert(offsetof(CoroMachineRegs, rsp) == 8, "capture layout");
_Static_assert(offsetof(CoroMachineRegs, rbp) == 16, "capture layout");
_Static_assert(offsetof(CoroMachineRegs, rbx) == 24, "capture layout");
_Static_assert(offsetof(CoroMachineRegs, r12) == 32, "capture layout");
_Static_assert(offsetof(CoroMachineRegs, r15) == 56, "capture layout");
_Static_assert(offsetof(CoroMachineRegs, valid) == 136, "capture layout");
_Static_assert(offsetof(CoroMachineRegs, rip_is_return_address) == 140, "capture layout");

__asm__(".text\n"
        ".globl coro__capture_regs\n"
        ".hidden coro__capture_regs\n"
        ".type coro__capture_regs, @function\n"
        ".p2align 4\n"
        "coro__capture_regs:\n"
        ".cfi_startproc\n"
        "    movq (%rsp), %rax\n"
        "    movq %rax, 0(%rdi)\n"
        "    leaq 8(%rsp), %rax\n"
        "    movq %rax, 8(%rdi)\n"
        "    movq %rbp, 16(%rdi)\n"
        "    movq %rbx, 24(%rdi)\n"
        "    movq %r12, 32(%rdi)\n"
        "    movq %r13, 40(%rdi)\n"
        "    movq %r14, 48(%rdi)\n"
        "    movq %r15, 56(%rdi)\n"
        "    movl $0xff, 136(%rdi)\n"
        "    movb $1, 140(%rdi)\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size coro__capture_regs, .-coro__capture_regs\n");
