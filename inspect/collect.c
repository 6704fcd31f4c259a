/*
 * The collect driver: the one way every reader turns a target's registry into backtraces.
 * The CLI (a live pid or a core), coro_dump() and the leak checks (this process) and the
 * signal dump (a snapshot of this process) all call coro__collect(), so they share one walk,
 * one order and one rule for records that cannot be read whole:
 *
 *   - a record that was read is always kept in the result, in id order; when its frames are
 *     missing or incomplete its backtrace says why (CoroBacktrace.error) and it is counted
 *     in CoroCollection.incomplete;
 *   - a record that could not be read at all has no id to show: it is counted in
 *     CoroCollection.unreadable, and a walk cut short by a bound or a cycle sets truncated.
 *
 * Formatters print those counts in the dump's header (text preamble, JSON "partial"), so a
 * leak check or a script can tell a complete answer from a partial one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inspect-int.h"

typedef struct IdIndex {
    uint64_t id;
    size_t at;
} IdIndex;

static int by_id(const void *a, const void *b)
{
    const IdIndex *x = a, *y = b;
    if (x->id != y->id) {
        return x->id < y->id ? -1 : 1;
    }
    return x->at < y->at ? -1 : x->at > y->at;
}

/* The indices of coros in id order (ties in registry order), without moving the 376-byte
 * records (sorting them was ~25% of `bt -p PID ID` on 100,000 coroutines). Returns a malloc'd
 * array (free()), NULL when out of memory. */
static uint32_t *id_order(const CoroInfo *coros, size_t n)
{
    if (n > UINT32_MAX) {
        return NULL;
    }
    uint32_t *order = malloc((n ? n : 1) * sizeof(*order));
    if (!order) {
        return NULL;
    }
    /* The usual shape: slabs newest first, ids ascending within each. When each ascending run
     * (taken from the last) starts above where the previous one ended, that is the order. */
    size_t k = 0, end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && coros[start - 1].id <= coros[start].id) {
            start--;
        }
        if (k > 0 && coros[start].id <= coros[order[k - 1]].id) {
            break;
        }
        for (size_t i = start; i < end; i++) {
            order[k++] = (uint32_t)i;
        }
        end = start;
    }
    if (end == 0) {
        return order;
    }
    /* Anything else: sort (id, index) pairs. */
    IdIndex *ix = malloc(n * sizeof(*ix));
    if (!ix) {
        free(order);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        ix[i] = (IdIndex){ coros[i].id, i };
    }
    qsort(ix, n, sizeof(*ix), by_id);
    for (size_t i = 0; i < n; i++) {
        order[i] = (uint32_t)ix[i].at;
    }
    free(ix);
    return order;
}

/* The tid a running coroutine runs on now: the shard whose current record it is. */
static int32_t running_tid(const CoroRegistry *reg, const CoroInfo *co)
{
    for (size_t i = 0; i < reg->nthreads; i++) {
        if (reg->threads[i].current == co->record && reg->threads[i].tid > 0) {
            return reg->threads[i].tid;
        }
    }
    return co->tid;
}

/* The holder of the mutex (writer of the rwlock) each waiter waits for, read from the
 * object itself through the descriptor's offsets: current, not as of when the wait began. */
static void resolve_holders(CoroTarget *t, CoroRegistry *reg)
{
    for (size_t i = 0; i < reg->ncoros; i++) {
        CoroInfo *ci = &reg->coros[i];
        uint32_t off = CORO_DEBUG_ABSENT;
        if (ci->wait_kind == CORO_WAIT_MUTEX) {
            off = reg->abi.mutex_off_holder_id;
        } else if (ci->wait_kind == CORO_WAIT_RWLOCK_READ ||
                   ci->wait_kind == CORO_WAIT_RWLOCK_WRITE) {
            off = reg->abi.rwlock_off_writer_id;
        }
        uint64_t id = 0;
        if (off != CORO_DEBUG_ABSENT && off < 4096 && ci->wait_object &&
            t->ops->read(t, ci->wait_object + off, &id, sizeof(id)) < 0) {
            id = 0;
        }
        ci->wait_holder = id;
    }
}

/*
 * Copies the stack tops of the selected coroutines from sel[from] on (the next batch) into
 * the target's prefetch: [rsp, min(top, rsp + CORO_COLLECT_PREFETCH_BYTES)), the window the
 * unwinder reads first and where the CLI looks for an all-zeros stack. Every value is
 * untrusted: only a saved rsp inside the coroutine's own stack counts, lengths are capped.
 * Returns the index after the batch.
 */
static size_t prefetch_batch(CoroTarget *t, const CoroRegistry *reg, const uint32_t *sel,
                             size_t nsel, size_t from, uint64_t *addrs, uint64_t *lens)
{
    size_t n = 0, i = from;
    for (; i < nsel && n < CORO_COLLECT_PREFETCH_BATCH; i++) {
        const CoroInfo *ci = &reg->coros[sel[i]];
        uint64_t top = ci->stack_base + ci->stack_size;
        if (ci->state == CORO_STATE_CREATED ||
            ci->state == CORO_STATE_RUNNING || !(ci->regs.valid & CORO_MREG_RSP) ||
            top < ci->stack_base || ci->regs.rsp < ci->stack_base || ci->regs.rsp >= top) {
            continue;
        }
        uint64_t lo = ci->regs.rsp & ~(uint64_t)7;
        uint64_t len = top - lo < CORO_COLLECT_PREFETCH_BYTES ? top - lo
                                                              : CORO_COLLECT_PREFETCH_BYTES;
        /* Stacks do not overlap unless the registry is corrupt; the prefetch refuses
         * overlapping ranges, so leave out one that overlaps the one before. */
        if (n && lo < addrs[n - 1] + lens[n - 1] && addrs[n - 1] < lo + len) {
            continue;
        }
        addrs[n] = lo;
        lens[n] = len;
        n++;
    }
    if (n && t->ops->prefetch(t, addrs, lens, n) < 0) {
        t->ops->prefetch(t, NULL, NULL, 0);    /* refused (overlaps): none, reads go one by one */
    }
    return i;
}

#define FRAME_BLOCK 4096u   /* frames per arena block (224 KiB) */

/* Moves bt's frames into the collection's blocks: one allocation per FRAME_BLOCK frames
 * instead of one (16 frames, 896 bytes at first) per coroutine. Frames equal to the
 * previous backtrace's (coroutines parked at the same place, listed side by side) are not
 * stored again: the two backtraces share them (read-only). 0 or -ENOMEM. */
/* Room for n frames in the collection's blocks; NULL when out of memory. */
static CoroFrame *arena_take(CoroCollection *c, size_t n)
{
    if (!c->nblocks || c->block_cap - c->block_used < n) {
        size_t cap = n > FRAME_BLOCK ? n : FRAME_BLOCK;
        CoroFrame **nb = realloc(c->frame_blocks, (c->nblocks + 1) * sizeof(*nb));
        if (!nb) {
            return NULL;
        }
        c->frame_blocks = nb;
        nb[c->nblocks] = malloc(cap * sizeof(CoroFrame));
        if (!nb[c->nblocks]) {
            return NULL;
        }
        c->nblocks++;
        c->block_used = 0;
        c->block_cap = cap;
    }
    CoroFrame *f = c->frame_blocks[c->nblocks - 1] + c->block_used;
    c->block_used += n;
    return f;
}

static int pack_frames(CoroCollection *c, CoroBacktrace *bt)
{
    size_t n = bt->nframes;
    CoroFrame *dst = NULL;
    if (n && n == c->last_n && memcmp(bt->frames, c->last_frames, n * sizeof(CoroFrame)) == 0) {
        dst = c->last_frames;
    } else if (n) {
        dst = arena_take(c, n);
        if (!dst) {
            return -ENOMEM;
        }
        memcpy(dst, bt->frames, n * sizeof(*dst));
        c->last_frames = dst;
        c->last_n = n;
    }
    if (!bt->frames_borrowed) {
        free(bt->frames);
    }
    bt->frames = dst;
    bt->frames_borrowed = true;
    /* entry and created_at, likewise (one copy while neighbours share them). */
    CoroFrame *owned = bt->sites_owned ? (CoroFrame *)bt->entry : NULL;
    const CoroFrame **site[2] = { &bt->entry, &bt->created_at };
    const CoroFrame **last[2] = { &c->last_entry, &c->last_created_at };
    for (int i = 0; i < 2; i++) {
        if (*last[i] && memcmp(*site[i], *last[i], sizeof(CoroFrame)) == 0) {
            *site[i] = *last[i];
            continue;
        }
        CoroFrame *copy = arena_take(c, 1);
        if (!copy) {
            return -ENOMEM;
        }
        *copy = **site[i];
        *site[i] = *last[i] = copy;
    }
    free(owned);
    bt->sites_owned = false;
    return 0;
}

/* "Now" for wait durations: the reader's clock for a live target (same machine, same
 * CLOCK_MONOTONIC), the registry's last clock reading for a core. */
static void set_now(const CoroTarget *t, CoroCollection *out)
{
    if (t->frozen_clock) {
        uint64_t c = out->reg.abi.clock_ns;
        out->now_ns = c == UINT64_MAX || c > INT64_MAX ? 0 : (int64_t)c;
        out->now_from_registry = true;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        out->now_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    }
}

int coro__collect(CoroTarget *t, uint64_t abi_addr, const CoroCollectOptions *o,
                  CoroCollection *out)
{
    static const CoroCollectOptions defaults;
    if (!o) {
        o = &defaults;
    }
    memset(out, 0, sizeof(*out));
    int rc = coro__registry_read_ids(t, abi_addr, o->ids, o->ids ? o->nids : 0, &out->reg);
    if (rc < 0) {
        return rc;
    }
    CoroRegistry *reg = &out->reg;
    out->unreadable = reg->unreadable;
    out->truncated = reg->truncated;

    out->u = o->unwinder;
    out->s = o->symbolizer;
    if (!out->u && !o->records_only) {
        out->u = out->own_u = coro__unwinder_create(t, t->dwfl, &reg->abi);
    }
    if (!out->s && !o->records_only) {
        out->s = out->own_s = coro__symbolizer_create(t->dwfl);
    }
    out->bts = calloc(reg->ncoros ? reg->ncoros : 1, sizeof(*out->bts));
    if ((!o->records_only && (!out->u || !out->s)) || !out->bts) {
        snprintf(t->error, sizeof(t->error), "cannot set up unwinding: out of memory");
        coro__collection_free(out);
        return -ENOMEM;
    }
    resolve_holders(t, reg);
    if (o->prepare) {
        o->prepare(reg, o->arg);
    }
    /* Registry order is newest slab first; people read ids in order (as `info threads`).
     * Which coroutines are wanted is decided once, before anything is done per coroutine. */
    uint32_t *sel = id_order(reg->coros, reg->ncoros);
    size_t nsel = 0;
    if (!sel) {
        snprintf(t->error, sizeof(t->error), "cannot set up unwinding: out of memory");
        coro__collection_free(out);
        return -ENOMEM;
    }
    for (size_t k = 0; k < reg->ncoros; k++) {
        if (!o->want || o->want(&reg->coros[sel[k]], o->arg)) {
            sel[nsel++] = sel[k];
        }
    }
    CoroBacktraceOptions bto = o->bt;
    CoroFrame *scratch = NULL;
    if (!o->records_only) {
        /* Each backtrace is built here, then packed (pack_frames). */
        scratch = malloc((CORO_UNWIND_MAX_FRAMES + 2) * sizeof(*scratch)); /* + sites */
        if (!scratch) {
            free(sel);
            snprintf(t->error, sizeof(t->error), "cannot set up unwinding: out of memory");
            coro__collection_free(out);
            return -ENOMEM;
        }
        bto.frames_buf = scratch;
        bto.frames_cap = CORO_UNWIND_MAX_FRAMES;
    }
    uint64_t *pf_addrs = NULL, *pf_lens = NULL;
    size_t pf_next = 0;
    if (o->prefetch_stacks && !o->records_only && t->ops->prefetch) {
        pf_addrs = malloc(CORO_COLLECT_PREFETCH_BATCH * sizeof(*pf_addrs));
        pf_lens = malloc(CORO_COLLECT_PREFETCH_BATCH * sizeof(*pf_lens));
        if (!pf_addrs || !pf_lens) {
            free(pf_addrs);
            free(pf_lens);
            pf_addrs = pf_lens = NULL;      /* no prefetch: slower, same answer */
        }
    }
    for (size_t k = 0; k < nsel; k++) {
        CoroInfo *co = &reg->coros[sel[k]];
        if (pf_addrs && k >= pf_next) {
            pf_next = prefetch_batch(t, reg, sel, nsel, k, pf_addrs, pf_lens);
        }
        if (o->records_only) {
            out->bts[out->n].error = coro__bt_no_error;
            out->bts[out->n].entry = out->bts[out->n].created_at = &coro__no_frame;
            out->bts[out->n++].info = co;
            continue;
        }
        CoroMachineRegs buf;
        const CoroMachineRegs *live = o->live ? o->live(co, &buf, o->arg) : NULL;
        if (!live && co->state == CORO_STATE_RUNNING) {
            co->tid = running_tid(reg, co);
            if (co->tid > 0 && t->ops->thread_regs(t, co->tid, &buf) == 0) {
                live = &buf;
            }
        }
        CoroBacktrace *bt = &out->bts[out->n];
        rc = coro__backtrace_build(out->u, out->s, &reg->abi, co, live, &bto, bt);
        if (rc == 0 && o->after) {
            rc = o->after(reg, co, live, bt, o->arg);
        }
        if (rc == 0) {
            rc = pack_frames(out, bt);
        }
        if (rc < 0) {
            coro__backtrace_fini(bt);
            snprintf(t->error, sizeof(t->error), "out of memory building backtraces");
            break;
        }
        out->n++;
        if (bt->error[0] && !(bt->truncated && bt->nframes > 0)) {
            out->incomplete++;
        }
    }
    free(sel);
    free(scratch);
    if (pf_addrs) {
        t->ops->prefetch(t, NULL, NULL, 0);     /* the copies are not needed any more */
        free(pf_addrs);
        free(pf_lens);
    }
    if (rc < 0) {
        coro__collection_free(out);
        return rc;
    }
    set_now(t, out);
    rc = coro__deadlocks_find(out->bts, out->n, &out->deadlocks, &out->ndeadlocks);
    if (rc < 0) {
        snprintf(t->error, sizeof(t->error), "out of memory finding deadlocks");
        coro__collection_free(out);
        return rc;
    }
    return 0;
}

void coro__collection_meta(const CoroCollection *c, CoroDumpMeta *meta)
{
    meta->unreadable = c->unreadable;
    meta->truncated = c->truncated;
    meta->incomplete = c->incomplete;
    meta->now_ns = c->now_ns;
    meta->now_from_registry = c->now_from_registry;
    meta->deadlocks = c->deadlocks;
    meta->ndeadlocks = c->ndeadlocks;
}

void coro__collection_free(CoroCollection *c)
{
    for (size_t i = 0; c->bts && i < c->n; i++) {
        coro__backtrace_fini(&c->bts[i]);
    }
    free(c->bts);
    for (size_t i = 0; i < c->nblocks; i++) {
        free(c->frame_blocks[i]);
    }
    free(c->frame_blocks);
    free(c->deadlocks);
    if (c->own_s) {
        coro__symbolizer_destroy(c->own_s);
    }
    if (c->own_u) {
        coro__unwinder_destroy(c->own_u);
    }
    coro__registry_free(&c->reg);
    memset(c, 0, sizeof(*c));
}
