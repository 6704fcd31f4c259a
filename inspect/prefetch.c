/*
 * Copies of many small ranges of a live process, read with a few process_vm_readv calls (up
 * to IOV_MAX ranges each) instead of one call per range: the top of every coroutine's stack
 * before unwinding them. A syscall costs ~1 us here and far more on a paravirtualised VM
 * (shared/FIELD-NOTES.md: 55% of `coroscope ps -p` on 100,001 coroutines was
 * process_vm_readv, one call per stack).
 *
 * The buffers are kept from one fill to the next, so that filling batch after batch touches
 * the same pages (no page fault per batch). Every range is untrusted: lengths are capped and
 * overlapping or wrapping ranges refused; a range that faults is left out, so reads there
 * take the target's usual path and report the fault themselves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "inspect-int.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif
#define PREFETCH_IOV (IOV_MAX < 1024 ? IOV_MAX : 1024)

static int by_addr(const void *a, const void *b)
{
    uint64_t x = ((const CoroPrefetchRange *)a)->addr, y = ((const CoroPrefetchRange *)b)->addr;
    return x < y ? -1 : x > y;
}

int coro__prefetch_fill(CoroPrefetch *p, pid_t pid, const uint64_t *addrs, const uint64_t *lens,
                        size_t n, bool *refused)
{
    p->n = 0;
    if (n > CORO_PREFETCH_MAX_RANGES) {
        return -EINVAL;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] > CORO_PREFETCH_MAX_LEN || addrs[i] + lens[i] < addrs[i]) {
            return -EINVAL;
        }
        total += lens[i];
    }
    if (n > p->cap) {
        CoroPrefetchRange *r = realloc(p->r, n * sizeof(*r));
        if (!r) {
            return -ENOMEM;
        }
        p->r = r;
        p->cap = n;
    }
    if (total > p->bufcap) {
        char *b = realloc(p->buf, total);
        if (!b) {
            return -ENOMEM;
        }
        p->buf = b;
        p->bufcap = total;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        p->r[i] = (CoroPrefetchRange){ addrs[i], lens[i], off };
        off += lens[i];
    }
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++) {
        sorted = p->r[i - 1].addr <= p->r[i].addr;
    }
    if (!sorted) {
        qsort(p->r, n, sizeof(*p->r), by_addr);
    }
    for (size_t i = 1; i < n; i++) {
        if (p->r[i - 1].addr + p->r[i - 1].len > p->r[i].addr) {
            return -EINVAL;     /* overlapping ranges: the caller's data is corrupt */
        }
    }
    /* Up to IOV_MAX ranges per call. A range that faults ends the call there: it is left
     * out (reads of it take the slow path, which reports the fault) and the rest goes on. */
    size_t kept = 0;
    struct iovec local[PREFETCH_IOV], remote[PREFETCH_IOV];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < PREFETCH_IOV && i + k < n; k++) {
            const CoroPrefetchRange *r = &p->r[i + k];
            local[k] = (struct iovec){ p->buf + r->off, r->len };
            remote[k] = (struct iovec){ (void *)(uintptr_t)r->addr, r->len };
        }
        ssize_t got = process_vm_readv(pid, local, k, remote, k, 0);
        if (got < 0 && errno != EFAULT && errno != ENOMEM) {
            if (refused && (errno == ENOSYS || errno == EPERM)) {
                *refused = true;
            }
            break;
        }
        size_t done = got > 0 ? (size_t)got : 0, j = 0;
        for (; j < k && done >= p->r[i + j].len; j++) {
            done -= p->r[i + j].len;
            p->r[kept++] = p->r[i + j];
        }
        i += j < k ? j + 1 : k;     /* skip the range that faulted */
    }
    p->n = kept;
    return 0;
}

bool coro__prefetch_read(const CoroPrefetch *p, uint64_t addr, void *buf, size_t len)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->r[mid].addr <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) {
        return false;
    }
    const CoroPrefetchRange *r = &p->r[lo - 1];
    if (addr - r->addr > r->len || len > r->len - (addr - r->addr)) {
        return false;
    }
    memcpy(buf, p->buf + r->off + (addr - r->addr), len);
    return true;
}

void coro__prefetch_fini(CoroPrefetch *p)
{
    free(p->r);
    free(p->buf);
    memset(p, 0, sizeof(*p));
}
