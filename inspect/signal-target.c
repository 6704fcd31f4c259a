/*
 * The signal dump's snapshot as a CoroTarget: the shared registry reader, unwinder,
 * symbolizer and formatters run on the copy taken while the coroutine threads were held
 * (signal-hold.c), after they have been released.
 *
 * read() serves copied ranges from the copy. Ranges that were deliberately not copied (the
 * unused parts of coroutine stacks) fail with -EFAULT, so a reader never mixes the copy with
 * memory that has changed since. Everything else (code, string constants, the ELF images)
 * is read live from this process with process_vm_readv, which cannot fault.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "signal-int.h"

typedef struct SigTarget {
    CoroTarget base;
    SigSnapshot *snap;
} SigTarget;

static void sift_down(SigRegion *r, size_t i, size_t n)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) {
            return;
        }
        if (c + 1 < n && r[c + 1].addr > r[c].addr) {
            c++;
        }
        if (r[i].addr >= r[c].addr) {
            return;
        }
        SigRegion tmp = r[i];
        r[i] = r[c];
        r[c] = tmp;
        i = c;
    }
}

/* A heap sort: glibc's qsort may call malloc, and the crash report sorts in a handler.
 * CORO_SIGNAL_SAFE. */
void coro__sig_regions_sort(SigSnapshot *s)
{
    SigRegion *r = s->regions;
    size_t n = s->nregions;
    for (size_t i = n / 2; i-- > 0;) {
        sift_down(r, i, n);
    }
    for (size_t end = n; end-- > 1;) {
        SigRegion tmp = r[0];
        r[0] = r[end];
        r[end] = tmp;
        sift_down(r, 0, end);
    }
}

/* The region containing addr, or NULL. Regions never overlap. */
static const SigRegion *region_at(const SigSnapshot *s, uint64_t addr)
{
    size_t lo = 0, hi = s->nregions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const SigRegion *r = &s->regions[mid];
        if (addr < r->addr) {
            hi = mid;
        } else if (addr - r->addr >= r->len) {
            lo = mid + 1;
        } else {
            return r;
        }
    }
    return NULL;
}

const void *coro__sig_find(const SigSnapshot *s, uint64_t addr, size_t len, bool *fenced)
{
    *fenced = false;
    const SigRegion *r = region_at(s, addr);
    if (!r) {
        /* A range that starts before a region and runs into it is not served live either. */
        if (len && addr + len > addr) {
            const SigRegion *end = region_at(s, addr + len - 1);
            *fenced = end != NULL;
        }
        return NULL;
    }
    if (r->off == SIG_REGION_FENCE || addr - r->addr + len > r->len) {
        *fenced = true;
        return NULL;
    }
    return s->arena + r->off + (addr - r->addr);
}

static int read_live(uint64_t addr, void *buf, size_t len)
{
    struct iovec local = { buf, len };
    struct iovec remote = { (void *)(uintptr_t)addr, len };
    ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    return n == (ssize_t)len ? 0 : -EFAULT;
}

/* Serves [addr, addr + len) piece by piece: a read may span adjacent copied ranges (records
 * of neighbouring slabs), and parts outside every range come from live memory. */
static int snap_read(CoroTarget *t, uint64_t addr, void *buf, size_t len)
{
    const SigSnapshot *s = ((SigTarget *)t)->snap;
    if (addr + len < addr) {
        return -EFAULT;
    }
    char *dst = buf;
    while (len) {
        const SigRegion *r = region_at(s, addr);
        size_t piece;
        if (r) {
            if (r->off == SIG_REGION_FENCE) {
                return -EFAULT;
            }
            piece = r->addr + r->len - addr < len ? (size_t)(r->addr + r->len - addr) : len;
            memcpy(dst, s->arena + r->off + (addr - r->addr), piece);
        } else {
            /* Up to the next region, if one starts inside the range. */
            piece = len;
            size_t lo = 0, hi = s->nregions;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (s->regions[mid].addr <= addr) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if (lo < s->nregions && s->regions[lo].addr - addr < len) {
                piece = (size_t)(s->regions[lo].addr - addr);
            }
            int rc = read_live(addr, dst, piece);
            if (rc < 0) {
                return rc;
            }
        }
        addr += piece;
        dst += piece;
        len -= piece;
    }
    return 0;
}

static int snap_thread_regs(CoroTarget *t, int32_t tid, CoroMachineRegs *out)
{
    SigTarget *st = (SigTarget *)t;
    for (size_t i = 0; i < st->snap->nthreads; i++) {
        const SigThread *th = &st->snap->threads[i];
        if (th->tid == tid && th->held) {
            *out = th->regs;
            return 0;
        }
    }
    return -ESRCH;
}

static char *snap_debuginfo_path;
static const Dwfl_Callbacks snap_callbacks = {
    .find_elf = coro__find_elf_unmapped,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .debuginfo_path = &snap_debuginfo_path,
};

static int snap_report_modules(CoroTarget *t, Dwfl *dwfl)
{
    int err = dwfl_linux_proc_report(dwfl, getpid());
    return err > 0 ? -err : err == 0 ? 0 : -EIO;
}

static void snap_close(CoroTarget *t)
{
    if (t->dwfl) {
        dwfl_end(t->dwfl);
    }
    free(t);
}

static const CoroTargetOps snap_ops = {
    .read = snap_read,
    .thread_regs = snap_thread_regs,
    .report_modules = snap_report_modules,
    .close = snap_close,
};

CoroTarget *coro__sig_target_create(SigSnapshot *s)
{
    SigTarget *st = calloc(1, sizeof(*st));
    if (!st) {
        return NULL;
    }
    st->base.ops = &snap_ops;
    st->base.pid = getpid();
    st->snap = s;
    st->base.dwfl = dwfl_begin(&snap_callbacks);
    if (!st->base.dwfl) {
        free(st);
        return NULL;
    }
    return &st->base;
}
