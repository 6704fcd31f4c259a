/*
 * The warnings a single snapshot can give (docs/live.md), in the dumps' headers, in `coroscope
 * ps` and in `coroscope top`:
 *   long wait      waiting >= long_wait_ns (default 60 s) on an fd or a queue with no deadline
 *   never entered  created >= never_entered_ns ago (default 60 s) and never entered (only
 *                  coroutines created inside a running loop have a creation time)
 * (The deadlock lines are format-wait.c's; "stalled" needs two samples: top and the in-process
 * watchdog, whose report's header is printed here too.) Durations are against the snapshot's
 * "now" (coro__meta_now): for a core, its last clock reading. No stdio, no allocation: the signal dump prints through here too.
 */
#include <string.h>

#include "inspect-int.h"

static int64_t limit(int64_t v, int64_t dflt)
{
    return v > 0 ? v : dflt;
}

/* The warning that applies to ci (0: none) and for how long, against now. */
static int warning_of(const CoroInfo *ci, int64_t now, const CoroWarnLimits *lim, int64_t *for_ns)
{
    int64_t long_wait = limit(lim ? lim->long_wait_ns : 0, CORO_WARN_LONG_WAIT_NS);
    int64_t never = limit(lim ? lim->never_entered_ns : 0, CORO_WARN_NEVER_ENTERED_NS);
    if (now <= 0) {
        return 0;
    }
    if (coro__waiting(ci) && !ci->wait_deadline && ci->wait_since &&
        (ci->wait_kind == CORO_WAIT_FD || ci->wait_kind == CORO_WAIT_QUEUE) &&
        now - (int64_t)ci->wait_since >= long_wait) {
        *for_ns = now - (int64_t)ci->wait_since;
        return CORO_WARN_LONG_WAIT;
    }
    if (ci->state == CORO_STATE_CREATED && ci->created_ns && now - (int64_t)ci->created_ns >= never) {
        *for_ns = now - (int64_t)ci->created_ns;
        return CORO_WARN_NEVER_ENTERED;
    }
    return 0;
}

static void out_site(CoroOut *o, const CoroFrame *f)
{
    if (!f->pc || !f->function) {
        return;
    }
    coro__out_str(o, " (created at ");
    coro__out_str(o, f->function);
    if (f->file && f->line > 0) {
        const char *base = strrchr(f->file, '/') ? strrchr(f->file, '/') + 1 : f->file;
        coro__out_str(o, " ");
        coro__out_str(o, base);
        coro__out_str(o, ":");
        coro__out_u64(o, (uint64_t)f->line);
    }
    coro__out_str(o, ")");
}

/*
 * One line each:
 *   PREFIXwarning: long wait: coroutine 7 "conn-7" has waited 125.0 s on fd with no deadline
 *   PREFIXwarning: never entered: coroutine 9 "job" was created 180.0 s ago and never
 *   entered (created at main demo.c:41)
 */
void coro__out_warnings_text(CoroOut *o, const CoroBacktrace *bts, size_t n,
                             const CoroDumpMeta *meta, const char *prefix,
                             void (*quoted)(CoroOut *, const char *))
{
    int64_t now = coro__meta_now(meta);
    for (size_t i = 0; i < n; i++) {
        const CoroInfo *ci = bts[i].info;
        int64_t d = 0;
        int w = warning_of(ci, now, meta ? &meta->warn : NULL, &d);
        if (!w) {
            continue;
        }
        coro__out_str(o, prefix);
        coro__out_str(o, w == CORO_WARN_LONG_WAIT ? "warning: long wait: coroutine "
                                                  : "warning: never entered: coroutine ");
        coro__out_who(o, ci, quoted);
        if (w == CORO_WARN_LONG_WAIT) {
            coro__out_str(o, " has waited ");
            coro__out_duration(o, d);
            coro__out_str(o, " on ");
            coro__out_str(o, coro__wait_kind_name(ci->wait_kind));
            coro__out_str(o, " with no deadline\n");
        } else {
            coro__out_str(o, " was created ");
            coro__out_duration(o, d);
            coro__out_str(o, " ago and never entered");
            out_site(o, bts[i].created_at);
            coro__out_str(o, "\n");
        }
    }
}

/* The JSON top-level "warnings" value: [{"kind": "long-wait"|"never-entered", "id": N,
 * "for_ns": N}, ...]. */
void coro__out_warnings_json(CoroOut *o, const CoroBacktrace *bts, size_t n,
                             const CoroDumpMeta *meta)
{
    int64_t now = coro__meta_now(meta);
    bool first = true;
    coro__out_str(o, "[");
    for (size_t i = 0; i < n; i++) {
        int64_t d = 0;
        int w = warning_of(bts[i].info, now, meta ? &meta->warn : NULL, &d);
        if (!w) {
            continue;
        }
        coro__out_str(o, first ? "{\"kind\":\"" : ",{\"kind\":\"");
        first = false;
        coro__out_str(o, w == CORO_WARN_LONG_WAIT ? "long-wait" : "never-entered");
        coro__out_str(o, "\",\"id\":");
        coro__out_u64(o, bts[i].info->id);
        coro__out_str(o, ",\"for_ns\":");
        coro__out_u64(o, (uint64_t)d);
        coro__out_str(o, "}");
    }
    coro__out_str(o, "]");
}

/* coroscope: stall: coroutine 1 "spinner" on thread 812 has not yielded for at least 312 ms
 * (CORO_STALL_MS 100) */
void coro__out_stall_text(CoroOut *o, const CoroBacktrace *bts, size_t n,
                          const CoroDumpMeta *meta, const char *prefix,
                          void (*quoted)(CoroOut *, const char *))
{
    const CoroStall *st = meta ? meta->stall : NULL;
    if (!st) {
        return;
    }
    coro__out_str(o, prefix);
    coro__out_str(o, "stall: coroutine ");
    const CoroInfo *ci = NULL;
    for (size_t i = 0; i < n && !ci; i++) {
        ci = bts[i].info->id == st->id ? bts[i].info : NULL;
    }
    if (ci) {
        coro__out_who(o, ci, quoted);
    } else {
        coro__out_u64(o, st->id);
    }
    coro__out_str(o, " on thread ");
    coro__out_i64(o, st->tid);
    coro__out_str(o, " has not yielded for at least ");
    coro__out_duration(o, st->for_ns);
    coro__out_str(o, " (CORO_STALL_MS ");
    coro__out_u64(o, (uint64_t)(st->threshold_ns / 1000000));
    coro__out_str(o, ")\n");
}

void coro__out_stall_json(CoroOut *o, const CoroDumpMeta *meta)
{
    const CoroStall *st = meta ? meta->stall : NULL;
    if (!st) {
        return;
    }
    coro__out_str(o, ",\"stall\":{\"id\":");
    coro__out_u64(o, st->id);
    coro__out_str(o, ",\"thread\":");
    coro__out_i64(o, st->tid);
    coro__out_str(o, ",\"for_ns\":");
    coro__out_u64(o, (uint64_t)st->for_ns);
    coro__out_str(o, ",\"threshold_ns\":");
    coro__out_u64(o, (uint64_t)st->threshold_ns);
    coro__out_str(o, "}");
}
