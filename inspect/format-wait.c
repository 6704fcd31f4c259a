/*
 * What each coroutine waits for, since when, and who holds it — in the text and JSON
 * formats (format.c calls these) and in `coroscope ps` — and the deadlock lines. Durations
 * are measured against the dump's "now": the reader's CLOCK_MONOTONIC for a live process, a
 * core's last clock reading (debug-abi.h clock_ns) for a core file. No stdio, no allocation:
 * the signal dump prints through here too.
 */
#include <poll.h>
#include <time.h>

#include "inspect-int.h"

const char *coro__wait_kind_name(uint32_t kind)
{
    switch (kind) {
    case CORO_WAIT_FD: return "fd";
    case CORO_WAIT_SLEEP: return "sleep";
    case CORO_WAIT_QUEUE: return "queue";
    case CORO_WAIT_MUTEX: return "mutex";
    case CORO_WAIT_RWLOCK_READ: return "rwlock-read";
    case CORO_WAIT_RWLOCK_WRITE: return "rwlock-write";
    default: return NULL;
    }
}

bool coro__waiting(const CoroInfo *ci)
{
    return ci->state == CORO_STATE_SUSPENDED && coro__wait_kind_name(ci->wait_kind) != NULL;
}

int64_t coro__meta_now(const CoroDumpMeta *meta)
{
    if (meta) {
        return meta->now_ns;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 3.2 s, 12 ms, 850 us (one decimal from a second up). */
void coro__out_duration(CoroOut *o, int64_t ns)
{
    if (ns < 0) {
        ns = 0;
    }
    if (ns >= 1000000000) {
        coro__out_u64(o, (uint64_t)(ns / 1000000000));
        coro__out_str(o, ".");
        coro__out_u64(o, (uint64_t)(ns / 100000000 % 10));
        coro__out_str(o, " s");
    } else if (ns >= 1000000) {
        coro__out_u64(o, (uint64_t)(ns / 1000000));
        coro__out_str(o, " ms");
    } else {
        coro__out_u64(o, (uint64_t)(ns / 1000));
        coro__out_str(o, " us");
    }
}

static void out_events(CoroOut *o, uint32_t ev)
{
    bool in = ev & (POLLIN | POLLPRI), out = ev & POLLOUT;
    coro__out_str(o, in && out ? "readable|writable" : in ? "readable" : out ? "writable" :
                  "events ");
    if (!in && !out) {
        coro__out_hex(o, ev);
    }
}

/* "waiting fd 9 readable, 3.2 s" / "waiting mutex 0x55d0... held by coroutine 5, 12 ms" */
void coro__out_wait_text(CoroOut *o, const CoroInfo *ci, int64_t now_ns)
{
    coro__out_str(o, "waiting ");
    coro__out_str(o, coro__wait_kind_name(ci->wait_kind));
    if (ci->wait_kind == CORO_WAIT_FD) {
        coro__out_str(o, " ");
        coro__out_i64(o, ci->wait_fd);
        coro__out_str(o, " ");
        out_events(o, ci->wait_events);
    } else if (ci->wait_kind != CORO_WAIT_SLEEP) {
        coro__out_str(o, " ");
        coro__out_hex(o, ci->wait_object);
        if (ci->wait_holder) {
            coro__out_str(o, ci->wait_kind == CORO_WAIT_MUTEX ? " held by coroutine " :
                          " write-held by coroutine ");
            coro__out_u64(o, ci->wait_holder);
        }
    }
    if (now_ns > 0 && ci->wait_since > 0) {
        coro__out_str(o, ", ");
        coro__out_duration(o, now_ns - (int64_t)ci->wait_since);
    }
    if (ci->wait_deadline > 0 && now_ns > 0) {
        coro__out_str(o, ci->wait_deadline > now_ns ? ", deadline in " : ", deadline passed ");
        coro__out_duration(o, ci->wait_deadline > now_ns ? ci->wait_deadline - now_ns :
                           now_ns - ci->wait_deadline);
        if (ci->wait_deadline <= now_ns) {
            coro__out_str(o, " ago");
        }
    }
}

static void null_or_u64(CoroOut *o, bool present, uint64_t v)
{
    if (present) {
        coro__out_u64(o, v);
    } else {
        coro__out_str(o, "null");
    }
}

/* The JSON "wait" value: an object (docs/json-schema.md) or null. */
void coro__out_wait_json(CoroOut *o, const CoroInfo *ci, int64_t now_ns)
{
    if (!coro__waiting(ci)) {
        coro__out_str(o, "null");
        return;
    }
    bool fd = ci->wait_kind == CORO_WAIT_FD;
    bool lock = ci->wait_kind == CORO_WAIT_MUTEX || ci->wait_kind == CORO_WAIT_RWLOCK_READ ||
                ci->wait_kind == CORO_WAIT_RWLOCK_WRITE;
    coro__out_str(o, "{\"kind\":\"");
    coro__out_str(o, coro__wait_kind_name(ci->wait_kind));
    coro__out_str(o, "\",\"object\":");
    if (ci->wait_object) {
        coro__out_str(o, "\"");
        coro__out_hex(o, ci->wait_object);
        coro__out_str(o, "\"");
    } else {
        coro__out_str(o, "null");
    }
    coro__out_str(o, ",\"holder\":");
    null_or_u64(o, lock && ci->wait_holder, ci->wait_holder);
    coro__out_str(o, ",\"fd\":");
    if (fd) {
        coro__out_i64(o, ci->wait_fd);
    } else {
        coro__out_str(o, "null");
    }
    coro__out_str(o, ",\"events\":");
    null_or_u64(o, fd, ci->wait_events);
    coro__out_str(o, ",\"deadline_ns\":");
    null_or_u64(o, ci->wait_deadline > 0, (uint64_t)ci->wait_deadline);
    coro__out_str(o, ",\"since_ns\":");
    coro__out_u64(o, ci->wait_since);
    coro__out_str(o, ",\"for_ns\":");
    bool known = now_ns > 0 && ci->wait_since > 0;
    null_or_u64(o, known, known && now_ns > (int64_t)ci->wait_since ?
                (uint64_t)(now_ns - (int64_t)ci->wait_since) : 0);
    coro__out_str(o, "}");
}

void coro__out_who(CoroOut *o, const CoroInfo *ci, void (*str)(CoroOut *, const char *))
{
    coro__out_u64(o, ci->id);
    if (ci->name[0]) {
        coro__out_str(o, " ");
        str(o, ci->name);
    }
}

/* One line per cycle:
 * deadlock: coroutine 3 "db-a" waits for mutex 0x... held by 5 "db-b", which waits for
 * mutex 0x... held by 3 */
void coro__out_deadlocks_text(CoroOut *o, const CoroBacktrace *bts, const CoroDumpMeta *meta,
                              const char *prefix, void (*quoted)(CoroOut *, const char *))
{
    for (size_t d = 0; meta && d < meta->ndeadlocks; d++) {
        const CoroDeadlock *dl = &meta->deadlocks[d];
        coro__out_str(o, prefix);
        coro__out_str(o, "deadlock: coroutine ");
        for (size_t k = 0; k < dl->n; k++) {
            const CoroInfo *ci = bts[dl->members[k]].info;
            const CoroInfo *next = bts[dl->members[(k + 1) % dl->n]].info;
            if (k == 0) {
                coro__out_who(o, ci, quoted);
            }
            coro__out_str(o, k == 0 ? " waits for " : ", which waits for ");
            coro__out_str(o, coro__wait_kind_name(ci->wait_kind));
            coro__out_str(o, " ");
            coro__out_hex(o, ci->wait_object);
            coro__out_str(o, " held by ");
            if (k + 1 < dl->n) {
                coro__out_who(o, next, quoted);
            } else {
                coro__out_u64(o, next->id);
            }
        }
        coro__out_str(o, "\n");
    }
}

/* The JSON top-level "deadlocks" value. */
void coro__out_deadlocks_json(CoroOut *o, const CoroBacktrace *bts, const CoroDumpMeta *meta)
{
    coro__out_str(o, "[");
    for (size_t d = 0; meta && d < meta->ndeadlocks; d++) {
        const CoroDeadlock *dl = &meta->deadlocks[d];
        coro__out_str(o, d ? ",{\"cycle\":[" : "{\"cycle\":[");
        for (size_t k = 0; k < dl->n; k++) {
            if (k) {
                coro__out_str(o, ",");
            }
            coro__out_u64(o, bts[dl->members[k]].info->id);
        }
        coro__out_str(o, "],\"objects\":[");
        for (size_t k = 0; k < dl->n; k++) {
            coro__out_str(o, k ? ",\"" : "\"");
            coro__out_hex(o, bts[dl->members[k]].info->wait_object);
            coro__out_str(o, "\"");
        }
        coro__out_str(o, "]}");
    }
    coro__out_str(o, "]");
}
