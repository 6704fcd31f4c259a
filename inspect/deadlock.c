/*
 * Deadlocks: the wait-for graph of a collected set of coroutines. A coroutine waiting for a
 * CoMutex (or a CoRwlock's write lock) has one edge, to the coroutine holding it (its id
 * read from the object by the collect driver). Every node has at most one outgoing edge, so
 * a cycle is found by following edges; a chain that reaches a coroutine that is not waiting
 * (running, runnable, or merely slow) is no deadlock. Each cycle is reported once, starting
 * at its lowest id.
 */
#include <errno.h>
#include <stdlib.h>

#include "inspect-int.h"

static bool waits_for_holder(const CoroInfo *ci)
{
    return ci->state == CORO_STATE_SUSPENDED && ci->wait_holder != 0 &&
           (ci->wait_kind == CORO_WAIT_MUTEX || ci->wait_kind == CORO_WAIT_RWLOCK_READ ||
            ci->wait_kind == CORO_WAIT_RWLOCK_WRITE);
}

/* bts are sorted by id: the index of a coroutine by id, or SIZE_MAX. */
static size_t index_of(const CoroBacktrace *bts, size_t n, uint64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bts[mid].info->id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < n && bts[lo].info->id == id ? lo : SIZE_MAX;
}

int coro__deadlocks_find(const CoroBacktrace *bts, size_t n, CoroDeadlock **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    /* Usually nobody waits for a lock holder: then there is no cycle, and no index of n
     * entries to allocate (0.9 MB for 100,000 coroutines, at ps's peak). */
    size_t waiters = 0;
    for (size_t i = 0; i < n && !waiters; i++) {
        waiters += waits_for_holder(bts[i].info);
    }
    if (!waiters) {
        return 0;
    }
    /* next[i]: the coroutine i waits for, SIZE_MAX none; color: 0 new, 1 on this walk,
     * 2 done. */
    size_t *next = malloc((n ? n : 1) * sizeof(*next));
    unsigned char *color = calloc(n ? n : 1, 1);
    if (!next || !color) {
        free(next);
        free(color);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const CoroInfo *ci = bts[i].info;
        next[i] = waits_for_holder(ci) ? index_of(bts, n, ci->wait_holder) : SIZE_MAX;
    }
    size_t cap = 0;
    for (size_t start = 0; start < n; start++) {
        size_t i = start;
        while (i != SIZE_MAX && color[i] == 0) {
            color[i] = 1;
            i = next[i];
        }
        if (i != SIZE_MAX && color[i] == 1) {
            /* A new cycle through i: collect it from its lowest index (lowest id). */
            size_t low = i;
            for (size_t k = next[i]; k != i; k = next[k]) {
                low = k < low ? k : low;
            }
            if (*nout == cap) {
                cap = cap ? cap * 2 : 4;
                CoroDeadlock *d = realloc(*out, cap * sizeof(*d));
                if (!d) {
                    free(next);
                    free(color);
                    return -ENOMEM;
                }
                *out = d;
            }
            CoroDeadlock *d = &(*out)[(*nout)++];
            d->n = 0;
            size_t k = low;
            do {
                if (d->n < CORO_DEADLOCK_MAX) {
                    d->members[d->n++] = k;
                }
                k = next[k];
            } while (k != low);
        }
        for (i = start; i != SIZE_MAX && color[i] == 1; i = next[i]) {
            color[i] = 2;
        }
    }
    free(next);
    free(color);
    return 0;
}
