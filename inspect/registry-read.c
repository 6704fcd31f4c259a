/*
 * Reading a coroutine registry through the debug ABI descriptor, from any target.
 *
 * Nothing read here is trusted: the descriptor is checked field by field before its offsets
 * are used, both list walks are bounded by the counts the descriptor gives (themselves
 * capped) and by Brent's cycle check, and every record is read as bytes and decoded with
 * checked offsets. Records are read in runs (the runtime allocates them in slabs whose list
 * order follows memory order), twice, and a record is taken only when both copies agree and
 * its seqlock is even: that gives a consistent state and register set even while other
 * threads of this process keep switching.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect-int.h"

#define MAX_RECORD_SIZE 4096u
#define MAX_SHARD_SIZE 4096u
#define RUN_RECORDS 64u      /* records read in one piece when they are adjacent (a slab) */
#define RUN_BYTES (16u * 1024u)
#define SEQ_RETRIES 8

/* The part of the descriptor every version-1 writer has (later writers only append). */
#define ABI_MIN_SIZE ((uint32_t)offsetof(struct coro_debug_abi, reserved0))

static void set_error(CoroTarget *t, const char *fmt, const char *what, uint64_t v)
{
    if (t) {
        snprintf(t->error, sizeof(t->error), fmt, what, (unsigned long long)v);
    }
}

static bool field_ok(uint32_t off, uint32_t width, uint32_t size)
{
    return off != CORO_DEBUG_ABSENT && off <= size && width <= size - off;
}

static bool opt_field_ok(uint32_t off, uint32_t width, uint32_t size)
{
    return off == CORO_DEBUG_ABSENT || field_ok(off, width, size);
}

int coro__abi_read(CoroTarget *t, uint64_t addr, struct coro_debug_abi *abi)
{
    struct coro_debug_abi a;
    int rc = t->ops->read(t, addr, &a, 16);
    if (rc < 0) {
        set_error(t, "cannot read the coroscope debug descriptor at %s0x%llx", "", addr);
        return rc;
    }
    if (memcmp(a.magic, CORO_DEBUG_ABI_MAGIC, sizeof(a.magic)) != 0) {
        set_error(t, "no coroscope debug descriptor at %s0x%llx (bad magic)", "", addr);
        return -EPROTO;
    }
    if (a.version != CORO_DEBUG_ABI_VERSION) {
        set_error(t, "coroscope debug descriptor %sversion %llu is not supported (this reader "
                  "knows version 1)", "", a.version);
        return -EPROTONOSUPPORT;
    }
    if (a.size < ABI_MIN_SIZE || a.size > 65536) {
        set_error(t, "coroscope debug descriptor has an impossible %ssize %llu", "", a.size);
        return -EPROTO;
    }
    size_t want = a.size < sizeof(a) ? a.size : sizeof(a);
    memset(&a, 0xff, sizeof(a));
    rc = t->ops->read(t, addr, &a, want);
    if (rc < 0) {
        set_error(t, "cannot read the coroscope debug descriptor at %s0x%llx", "", addr);
        return rc;
    }
    if (want < sizeof(a)) {
        /* An older, smaller writer: the fields it lacks are absent. */
        a.reserved0 = 0;
    }
    if (a.ptr_size != 8 || a.arch != 62) {
        set_error(t, "coroscope debug descriptor is for another architecture %s(%llu)", "",
                  a.arch);
        return -EPROTONOSUPPORT;
    }
    uint32_t rs = a.record_size, ss = a.shard_size;
    const char *bad = NULL;
    if (rs < 16 || rs > MAX_RECORD_SIZE) {
        bad = "record_size";
    } else if (ss < 8 || ss > MAX_SHARD_SIZE) {
        bad = "shard_size";
    } else if (!field_ok(a.off_next, 8, rs) || !field_ok(a.off_id, 8, rs) ||
               !field_ok(a.off_state, 4, rs) || !field_ok(a.off_seq, 4, rs)) {
        bad = "record header offsets";
    } else if (a.name_size == 0 || a.name_size > 4096 || !field_ok(a.off_name, a.name_size, rs)) {
        bad = "name";
    } else if (a.off_regs == CORO_DEBUG_ABSENT || a.off_regs > rs) {
        bad = "off_regs";
    } else if (!field_ok(a.off_stack_base, 8, rs) || !field_ok(a.off_stack_size, 8, rs) ||
               !field_ok(a.off_entry, 8, rs) || !opt_field_ok(a.off_opaque, 8, rs) ||
               !opt_field_ok(a.off_create_site, 8, rs) || !opt_field_ok(a.off_tid, 4, rs) ||
               !opt_field_ok(a.off_caller, 8, rs) || !opt_field_ok(a.off_switch_count, 8, rs) ||
               !opt_field_ok(a.off_generation, 8, rs) || !opt_field_ok(a.off_wait_reason, 8, rs) ||
               !opt_field_ok(a.off_wait_object, 8, rs) || !opt_field_ok(a.off_wait_since, 8, rs) ||
               !opt_field_ok(a.off_stack_used_max, 8, rs) || !opt_field_ok(a.off_wait_kind, 4, rs) ||
               !opt_field_ok(a.off_wait_fd, 4, rs) || !opt_field_ok(a.off_wait_events, 4, rs) ||
               !opt_field_ok(a.off_wait_deadline, 8, rs) ||
               !opt_field_ok(a.off_created_ns, 8, rs)) {
        bad = "record field offsets";
    } else if (!field_ok(a.shard_off_next, 8, ss) || !opt_field_ok(a.shard_off_tid, 4, ss) ||
               !opt_field_ok(a.shard_off_current, 8, ss) ||
               !opt_field_ok(a.shard_off_created, 8, ss) ||
               !opt_field_ok(a.shard_off_terminated, 8, ss)) {
        bad = "shard field offsets";
    } else if (a.trampoline_start > a.trampoline_end || a.switch_start > a.switch_end) {
        bad = "code ranges";
    }
    if (!bad) {
        const uint32_t *r = &a.regs.rsp;
        for (int i = 0; i < 8; i++) {
            if (!field_ok(r[i], 8, rs - a.off_regs)) {
                bad = "register offsets";
            }
        }
    }
    if (bad) {
        set_error(t, "coroscope debug descriptor is corrupt: impossible %s (at 0x%llx)", bad,
                  addr);
        return -EPROTO;
    }
    *abi = a;
    return 0;
}

/* ---- decoding ---- */

static uint64_t get_u64(const unsigned char *rec, uint32_t off)
{
    uint64_t v;
    memcpy(&v, rec + off, 8);
    return v;
}

static uint32_t get_u32(const unsigned char *rec, uint32_t off)
{
    uint32_t v;
    memcpy(&v, rec + off, 4);
    return v;
}

static uint64_t opt_u64(const unsigned char *rec, uint32_t off, uint64_t absent)
{
    return off == CORO_DEBUG_ABSENT ? absent : get_u64(rec, off);
}

static bool live_state(uint32_t s)
{
    return s == CORO_STATE_CREATED || s == CORO_STATE_RUNNING || s == CORO_STATE_SUSPENDED ||
           s == CORO_STATE_NESTED;
}

static void decode(const struct coro_debug_abi *a, uint64_t addr, const unsigned char *rec,
                   CoroInfo *ci)
{
    memset(ci, 0, sizeof(*ci));
    ci->record = addr;
    ci->id = get_u64(rec, a->off_id);
    ci->state = get_u32(rec, a->off_state);
    size_t nl = a->name_size < CORO_INFO_NAME_SIZE ? a->name_size : CORO_INFO_NAME_SIZE - 1;
    memcpy(ci->name, rec + a->off_name, nl);
    ci->name[nl] = '\0';
    ci->tid = a->off_tid == CORO_DEBUG_ABSENT ? 0 : (int32_t)get_u32(rec, a->off_tid);
    ci->stack_base = get_u64(rec, a->off_stack_base);
    ci->stack_size = get_u64(rec, a->off_stack_size);
    ci->entry = get_u64(rec, a->off_entry);
    ci->opaque = opt_u64(rec, a->off_opaque, 0);
    ci->create_site = opt_u64(rec, a->off_create_site, 0);
    ci->caller = opt_u64(rec, a->off_caller, 0);
    ci->switch_count = opt_u64(rec, a->off_switch_count, 0);
    ci->generation = opt_u64(rec, a->off_generation, 0);
    ci->wait_reason = opt_u64(rec, a->off_wait_reason, 0);
    ci->wait_object = opt_u64(rec, a->off_wait_object, 0);
    ci->wait_since = opt_u64(rec, a->off_wait_since, 0);
    ci->stack_used_max = opt_u64(rec, a->off_stack_used_max, UINT64_MAX);
    ci->wait_kind = a->off_wait_kind == CORO_DEBUG_ABSENT ? 0 : get_u32(rec, a->off_wait_kind);
    ci->wait_fd = a->off_wait_fd == CORO_DEBUG_ABSENT ? -1 : (int32_t)get_u32(rec, a->off_wait_fd);
    ci->wait_events = a->off_wait_events == CORO_DEBUG_ABSENT ? 0 : get_u32(rec, a->off_wait_events);
    ci->wait_deadline = (int64_t)opt_u64(rec, a->off_wait_deadline, 0);
    ci->created_ns = opt_u64(rec, a->off_created_ns, 0);
    ci->seq = get_u32(rec, a->off_seq);
    if (ci->state != CORO_STATE_RUNNING) {
        const unsigned char *r = rec + a->off_regs;
        ci->regs.rsp = get_u64(r, a->regs.rsp);
        ci->regs.rip = get_u64(r, a->regs.rip);
        ci->regs.rbp = get_u64(r, a->regs.rbp);
        ci->regs.rbx = get_u64(r, a->regs.rbx);
        ci->regs.r12 = get_u64(r, a->regs.r12);
        ci->regs.r13 = get_u64(r, a->regs.r13);
        ci->regs.r14 = get_u64(r, a->regs.r14);
        ci->regs.r15 = get_u64(r, a->regs.r15);
        ci->regs.valid = CORO_MREG_CALLEE_SAVED;
        ci->regs.rip_is_return_address = true;
    }
}

/* ---- the walks ---- */

/* Brent's cycle detection over record addresses: no extra reads. */
typedef struct Brent {
    uint64_t tortoise;
    uint64_t power, lam;
} Brent;

static bool brent_step(Brent *b, uint64_t next)
{
    if (next == b->tortoise) {
        return true;
    }
    if (b->power == b->lam) {
        b->tortoise = next;
        b->power *= 2;
        b->lam = 0;
    }
    b->lam++;
    return false;
}

/*
 * Reads the run of up to RUN_RECORDS records starting at addr, twice (once when b is NULL).
 * Returns how many records the run holds (0 when even one record cannot be read).
 */
static unsigned read_run(CoroTarget *t, uint32_t rs, uint64_t addr, unsigned want,
                         unsigned char *a, unsigned char *b)
{
    while (want > 0) {
        size_t len = (size_t)rs * want;
        if (addr + len < addr) {
            want = 1;
            if (addr + rs < addr) {
                return 0;
            }
            continue;
        }
        if (t->ops->read(t, addr, a, len) == 0 && (!b || t->ops->read(t, addr, b, len) == 0)) {
            return want;
        }
        want = want > 1 ? 1 : 0;
    }
    return 0;
}

/* One consistent copy of the record at idx of the run in ra/rb: retried under its seqlock,
 * re-reading just that record; false when it never settled (torn). */
static bool settle_record(CoroTarget *t, const struct coro_debug_abi *abi, uint64_t addr,
                          unsigned char *ra, unsigned char *rb)
{
    uint32_t rs = abi->record_size;
    for (int tries = 0;;) {
        uint32_t seq = get_u32(rb, abi->off_seq);
        if (memcmp(ra, rb, rs) == 0 && (seq & 1) == 0) {
            return true;
        }
        if (++tries > SEQ_RETRIES) {
            return false;
        }
        if (tries > 2) {
            sched_yield();
        }
        /* Re-read just this record; the rest of the run stays as it was. */
        if (t->ops->read(t, addr, ra, rs) < 0 || t->ops->read(t, addr, rb, rs) < 0) {
            return false;
        }
    }
}

/* The all-records walk (see coro__registry_read_into). bufa, bufb: run_bytes each. */
static bool id_kept(const uint64_t *ids, size_t nids, uint64_t id)
{
    for (size_t i = 0; i < nids; i++) {
        if (ids[i] == id) {
            return true;
        }
    }
    return false;
}

static void walk_records(CoroTarget *t, const struct coro_debug_abi *abi, CoroInfo *coros,
                         size_t cap, size_t *ncoros, size_t *nlive, const uint64_t *ids,
                         size_t nids, size_t *unreadable, bool *truncated,
                         unsigned char *bufa, unsigned char *bufb, size_t run_bytes)
{
    uint32_t rs = abi->record_size;
    unsigned run_max = (unsigned)(run_bytes / rs);
    if (run_max > RUN_RECORDS) {
        run_max = RUN_RECORDS;
    }
    uint64_t head = abi->records, bound = abi->nrecords;
    if (bound > CORO_SNAPSHOT_MAX_RECORDS) {
        bound = CORO_SNAPSHOT_MAX_RECORDS;
    }
    Brent br = { head, 1, 1 };
    uint64_t addr = head, visited = 0;
    unsigned run_n = 0;
    uint64_t run_addr = 0;
    while (addr != 0) {
        if (visited >= bound) {
            /* More records than the descriptor says were ever linked: corrupt, or records
             * were linked after we read the count (then they are newer than the dump). */
            *truncated = true;
            break;
        }
        visited++;
        if (addr & 7) {
            (*unreadable)++;
            *truncated = true;
            break;
        }
        unsigned idx;
        if (run_n && addr >= run_addr && addr - run_addr < (uint64_t)run_n * rs &&
            (addr - run_addr) % rs == 0) {
            idx = (unsigned)((addr - run_addr) / rs);
        } else {
            run_addr = addr;
            run_n = read_run(t, rs, addr, run_max, bufa, t->frozen_memory ? NULL : bufb);
            idx = 0;
            if (run_n == 0) {
                (*unreadable)++;
                *truncated = true;
                break;
            }
        }
        /* A frozen target (every thread stopped) reads each run once: the copies would be
         * equal anyway, and the second was half the syscalls of `bt -p PID ID`. */
        unsigned char *ra = bufa + (size_t)idx * rs;
        unsigned char *rb = (t->frozen_memory ? bufa : bufb) + (size_t)idx * rs;
        bool torn = !settle_record(t, abi, addr, ra, rb);
        uint64_t next = get_u64(rb, abi->off_next);
        uint32_t state = get_u32(rb, abi->off_state);
        if (live_state(state)) {
            if (*nlive >= cap) {
                *truncated = true;
                break;
            }
            (*nlive)++;
            CoroInfo *ci = &coros[*ncoros];
            decode(abi, addr, rb, ci);
            if (torn) {
                ci->torn = true;
                ci->regs.valid = 0;
            }
            if (!ids || id_kept(ids, nids, ci->id)) {
                (*ncoros)++;
            }
        }
        if (brent_step(&br, next)) {
            *truncated = true;
            break;
        }
        addr = next;
    }

}

/* The thread-shards walk. buf: at least shard_size bytes. */
static void walk_shards(CoroTarget *t, const struct coro_debug_abi *abi,
                        CoroThreadInfo *threads, size_t tcap, size_t *nthreads,
                        bool *truncated, unsigned char *bufa)
{
    uint64_t shead = abi->shards, sbound = abi->nshards;
    if (sbound > CORO_SNAPSHOT_MAX_SHARDS) {
        sbound = CORO_SNAPSHOT_MAX_SHARDS;
    }
    Brent bs = { shead, 1, 1 };
    uint64_t saddr = shead, svisited = 0;
    uint32_t ss = abi->shard_size;
    while (saddr != 0) {
        if (svisited++ >= sbound || (saddr & 7) || *nthreads >= tcap) {
            *truncated = true;
            break;
        }
        if (t->ops->read(t, saddr, bufa, ss) < 0) {
            *truncated = true;
            break;
        }
        CoroThreadInfo *ti = &threads[(*nthreads)++];
        ti->shard = saddr;
        ti->tid = abi->shard_off_tid == CORO_DEBUG_ABSENT
                      ? 0 : (int32_t)get_u32(bufa, abi->shard_off_tid);
        ti->current = opt_u64(bufa, abi->shard_off_current, 0);
        ti->created = opt_u64(bufa, abi->shard_off_created, 0);
        ti->terminated = opt_u64(bufa, abi->shard_off_terminated, 0);
        uint64_t next = get_u64(bufa, abi->shard_off_next);
        if (brent_step(&bs, next)) {
            *truncated = true;
            break;
        }
        saddr = next;
    }
}

static void read_into(CoroTarget *t, const struct coro_debug_abi *abi, CoroInfo *coros,
                      size_t cap, size_t *ncoros, size_t *nlive, const uint64_t *ids,
                      size_t nids, CoroThreadInfo *threads, size_t tcap,
                      size_t *nthreads, size_t *unreadable, bool *truncated,
                      unsigned char *bufa, unsigned char *bufb, size_t run_bytes)
{
    *ncoros = 0;
    *nlive = 0;
    if (nthreads) {
        *nthreads = 0;
    }
    *unreadable = 0;
    *truncated = false;
    walk_records(t, abi, coros, cap, ncoros, nlive, ids, nids, unreadable, truncated, bufa,
                 bufb, run_bytes);
    if (threads && nthreads) {
        walk_shards(t, abi, threads, tcap, nthreads, truncated, bufa);
    }
}

int coro__registry_read_into(CoroTarget *t, const struct coro_debug_abi *abi,
                             CoroInfo *coros, size_t cap, size_t *ncoros,
                             CoroThreadInfo *threads, size_t tcap, size_t *nthreads,
                             size_t *unreadable, bool *truncated)
{
    /* Two copies of a run of records, on the stack (32 KiB): no allocation, for signal-safe
     * callers with room (helper threads; not a small alternate signal stack). */
    unsigned char bufa[RUN_BYTES], bufb[RUN_BYTES];
    size_t nlive;
    read_into(t, abi, coros, cap, ncoros, &nlive, NULL, 0, threads, tcap, nthreads, unreadable,
              truncated, bufa, bufb, RUN_BYTES);
    return 0;
}

int coro__registry_read_one(CoroTarget *t, const struct coro_debug_abi *abi, uint64_t record,
                            CoroInfo *out)
{
    unsigned char a[MAX_RECORD_SIZE], b[MAX_RECORD_SIZE];
    uint32_t rs = abi->record_size;
    if (record == 0 || (record & 7)) {
        return -EFAULT;
    }
    for (int tries = 0; tries <= SEQ_RETRIES; tries++) {
        if (tries > 2) {
            sched_yield();
        }
        int rc = t->ops->read(t, record, a, rs);
        if (rc == 0) {
            rc = t->ops->read(t, record, b, rs);
        }
        if (rc < 0) {
            return rc;
        }
        if (memcmp(a, b, rs) != 0 || (get_u32(b, abi->off_seq) & 1)) {
            continue;
        }
        decode(abi, record, b, out);
        return live_state(out->state) ? 0 : -ESTALE;
    }
    return -EAGAIN;
}

/* Buffers are sized by what a walk finds, not by the descriptor's counts (which an untrusted
 * target may set to the bounds, 16 M records: gigabytes): they start at most this big (a few
 * MB; one walk for registries up to this size, as before) and grow eightfold while a walk fills
 * them, each time walking again: 100,001 coroutines take two walks (16 Ki, then all), not four
 * (doubling walked 2.1 records per record, and ps's registry syscalls went 1,569 -> 3,370). */
#define INITIAL_RECORDS 16384u
#define INITIAL_SHARDS 256u

/* Grows *buf (n elements of size each) to n * 8, but to no more than max. */
static bool grow(void **buf, size_t *n, size_t max, size_t size)
{
    size_t want = *n * 8 < max ? *n * 8 : max;
    void *p = realloc(*buf, want * size);
    if (!p) {
        return false;
    }
    *buf = p;
    *n = want;
    return true;
}

int coro__registry_read(CoroTarget *t, uint64_t abi_addr, CoroRegistry *out)
{
    return coro__registry_read_ids(t, abi_addr, NULL, 0, out);
}

int coro__registry_read_ids(CoroTarget *t, uint64_t abi_addr, const uint64_t *ids, size_t nids,
                            CoroRegistry *out)
{
    memset(out, 0, sizeof(*out));
    out->abi_addr = abi_addr;
    int rc = coro__abi_read(t, abi_addr, &out->abi);
    if (rc < 0) {
        return rc;
    }
    size_t cap = 0, tcap = 0, run_bytes = 0;
    unsigned char *bufs = NULL;
    /* Counts only grow while we read: one retry with room for what was added meanwhile. */
    for (int attempt = 0; attempt < 2;) {
        /* Room for every record and shard the descriptor counts, plus what may be added. The
         * counts are untrusted: above the limits the walks stop there and the result is
         * partial (truncated), not refused. */
        size_t max = (size_t)(out->abi.nrecords < CORO_SNAPSHOT_MAX_RECORDS
                                  ? out->abi.nrecords : CORO_SNAPSHOT_MAX_RECORDS) + 64;
        size_t tmax = (size_t)(out->abi.nshards < CORO_SNAPSHOT_MAX_SHARDS
                                   ? out->abi.nshards : CORO_SNAPSHOT_MAX_SHARDS) + 8;
        bool ok = true;
        if (cap == 0 || tcap == 0) {
            cap = max < INITIAL_RECORDS ? max : INITIAL_RECORDS;
            tcap = tmax < INITIAL_SHARDS ? tmax : INITIAL_SHARDS;
            free(out->coros);
            free(out->threads);
            out->coros = malloc(cap * sizeof(*out->coros));
            out->threads = malloc(tcap * sizeof(*out->threads));
            ok = out->coros && out->threads;
        }
        if (ok && !bufs) {
            /* A whole slab (RUN_RECORDS) per run: half the reads of the stack buffers' runs
             * (a syscall each for a live process). */
            run_bytes = (size_t)RUN_RECORDS * out->abi.record_size;
            if (run_bytes < RUN_BYTES) {
                run_bytes = RUN_BYTES;  /* walk_shards reuses it: room for MAX_SHARD_SIZE */
            }
            bufs = malloc(2 * run_bytes);
            ok = bufs != NULL;
        }
        if (ok) {
            read_into(t, &out->abi, out->coros, cap, &out->ncoros, &out->nlive, ids, nids,
                      out->threads, tcap, &out->nthreads, &out->unreadable, &out->truncated,
                      bufs, bufs + run_bytes, run_bytes);
            rc = 0;
        }
        /* A walk that filled a buffer is read again with a bigger one (with ids, the live
         * records seen count against cap: the kept ones are fewer). */
        bool full = out->nlive == cap && cap < max, tfull = out->nthreads == tcap && tcap < tmax;
        if (ok && rc == 0 && out->truncated && (full || tfull)) {
            ok = (!full || grow((void **)&out->coros, &cap, max, sizeof(*out->coros))) &&
                 (!tfull || grow((void **)&out->threads, &tcap, tmax, sizeof(*out->threads)));
            if (ok) {
                continue;
            }
        }
        if (!ok) {
            free(bufs);
            coro__registry_free(out);
            snprintf(t->error, sizeof(t->error), "out of memory reading %zu coroutine records",
                     cap);
            return -ENOMEM;
        }
        if (rc < 0 || !out->truncated || ++attempt == 2) {
            break;
        }
        /* Perhaps records were linked after the descriptor was read: read it again. */
        struct coro_debug_abi again;
        if (coro__abi_read(t, abi_addr, &again) < 0 ||
            (again.nrecords == out->abi.nrecords && again.nshards == out->abi.nshards)) {
            break;
        }
        out->abi = again;
        cap = tcap = 0;
        free(bufs);             /* record_size may differ in the descriptor read again */
        bufs = NULL;
    }
    free(bufs);
    if (rc < 0) {
        coro__registry_free(out);
    }
    return rc;
}

void coro__registry_free(CoroRegistry *r)
{
    free(r->coros);
    free(r->threads);
    r->coros = NULL;
    r->threads = NULL;
    r->ncoros = r->nlive = r->nthreads = 0;
}
