/*
 * Grouped stacks: 10,000 connections parked in the same read become one entry. Coroutines
 * with the same state (waiting counts as its own state), the same wait kind and the same
 * frame sequence (function, file, line, inlined-ness; not the pc, not the name) form a
 * group, printed once with its count and its ids (ranges compressed: 3-7,12), largest group
 * first, ties by lowest id. The text form is CORO_DUMP_GROUPED (coro_dump, the signal dump,
 * `coroscope bt --group`); the JSON form is the optional "groups" array.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "inspect-int.h"

static int str_cmp(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

const char *coro__group_state(const CoroInfo *ci)
{
    return coro__waiting(ci) ? "waiting" : coro__state_name(ci->state);
}

static int key_cmp(const CoroBacktrace *a, const CoroBacktrace *b)
{
    int c = strcmp(coro__group_state(a->info), coro__group_state(b->info));
    if (c) {
        return c;
    }
    uint32_t ka = coro__waiting(a->info) ? a->info->wait_kind : 0;
    uint32_t kb = coro__waiting(b->info) ? b->info->wait_kind : 0;
    if (ka != kb) {
        return ka < kb ? -1 : 1;
    }
    if (a->nframes != b->nframes) {
        return a->nframes < b->nframes ? -1 : 1;
    }
    for (size_t i = 0; i < a->nframes; i++) {
        const CoroFrame *fa = &a->frames[i], *fb = &b->frames[i];
        if ((c = str_cmp(fa->function, fb->function)) || (c = str_cmp(fa->file, fb->file))) {
            return c;
        }
        if (fa->line != fb->line || fa->inlined != fb->inlined) {
            return fa->line != fb->line ? (fa->line < fb->line ? -1 : 1) : fa->inlined - fb->inlined;
        }
        if (!fa->function && fa->pc != fb->pc) {
            return fa->pc < fb->pc ? -1 : 1; /* unnamed frames: only the same pc groups */
        }
    }
    if (a->nframes == 0 && a->info->state == CORO_STATE_CREATED) {
        return str_cmp(a->entry->function, b->entry->function);
    }
    return 0;
}

static int by_key_then_id(const void *x, const void *y, void *arg)
{
    const CoroBacktrace *bts = arg;
    const CoroBacktrace *a = &bts[*(const size_t *)x], *b = &bts[*(const size_t *)y];
    int c = key_cmp(a, b);
    return c ? c : (a->info->id < b->info->id ? -1 : a->info->id > b->info->id);
}


static int by_size(const void *x, const void *y, void *arg)
{
    const CoroGroup *a = x, *b = y;
    const size_t *ix = ((void **)arg)[0];
    const CoroBacktrace *bts = ((void **)arg)[1];
    if (a->count != b->count) {
        return a->count > b->count ? -1 : 1;
    }
    uint64_t ia = bts[ix[a->first]].info->id, ib = bts[ix[b->first]].info->id;
    return ia < ib ? -1 : ia > ib;
}

/* Sorts an index of bts by key and id and cuts it into groups, largest first. */
int coro__groups_build(const CoroBacktrace *bts, size_t n, size_t **ixp, CoroGroup **gp,
                       size_t *ng)
{
    size_t *ix = malloc((n ? n : 1) * sizeof(*ix));
    CoroGroup *g = malloc((n ? n : 1) * sizeof(*g));
    if (!ix || !g) {
        free(ix);
        free(g);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ix[i] = i;
    }
    qsort_r(ix, n, sizeof(*ix), by_key_then_id, (void *)bts);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && key_cmp(&bts[ix[i]], &bts[ix[j]]) == 0) {
            j++;
        }
        g[k++] = (CoroGroup){ i, j - i };
        i = j;
    }
    void *arg[2] = { ix, (void *)bts };
    qsort_r(g, k, sizeof(*g), by_size, arg);
    *ixp = ix;
    *gp = g;
    *ng = k;
    return 0;
}

/* "3-7,12": ids of a group are sorted (the index is sorted by id within a key). */
static void out_ids(CoroOut *o, const CoroBacktrace *bts, const size_t *ix, const CoroGroup *g)
{
    for (size_t i = 0; i < g->count;) {
        uint64_t lo = bts[ix[g->first + i]].info->id, hi = lo;
        size_t j = i + 1;
        while (j < g->count && bts[ix[g->first + j]].info->id == hi + 1) {
            hi++;
            j++;
        }
        if (i) {
            coro__out_str(o, ",");
        }
        coro__out_u64(o, lo);
        if (hi != lo) {
            coro__out_str(o, "-");
            coro__out_u64(o, hi);
        }
        i = j;
    }
}

int coro__format_grouped_text(CoroOut *o, const CoroDumpMeta *meta, const CoroBacktrace *bts,
                              size_t n)
{
    size_t *ix, ng;
    CoroGroup *g;
    if (coro__groups_build(bts, n, &ix, &g, &ng) < 0) {
        return -ENOMEM;
    }
    coro__out_str(o, "coroscope: ");
    coro__out_u64(o, n);
    coro__out_str(o, n == 1 ? " coroutine in " : " coroutines in ");
    coro__out_u64(o, ng);
    coro__out_str(o, ng == 1 ? " group, process " : " groups, process ");
    coro__out_u64(o, (uint64_t)(meta ? meta->pid : 0));
    coro__out_str(o, "\n");
    coro__format_text_partial(o, meta);
    coro__out_stall_text(o, bts, n, meta, "coroscope: ", coro__format_text_quoted);
    coro__out_deadlocks_text(o, bts, meta, "coroscope: ", coro__format_text_quoted);
    coro__out_warnings_text(o, bts, n, meta, "coroscope: ", coro__format_text_quoted);
    for (size_t k = 0; k < ng; k++) {
        const CoroBacktrace *rep = &bts[ix[g[k].first]];
        coro__out_str(o, "\n");
        coro__out_u64(o, g[k].count);
        coro__out_str(o, g[k].count == 1 ? " coroutine [" : " coroutines [");
        coro__out_str(o, coro__group_state(rep->info));
        if (coro__waiting(rep->info)) {
            coro__out_str(o, " ");
            coro__out_str(o, coro__wait_kind_name(rep->info->wait_kind));
        }
        coro__out_str(o, "]: ");
        out_ids(o, bts, ix, &g[k]);
        coro__out_str(o, "\n");
        const CoroFrame *frames = rep->nframes ? rep->frames : rep->entry;
        size_t nf = rep->nframes ? rep->nframes : rep->info->state == CORO_STATE_CREATED;
        for (size_t i = 0; i < nf; i++) {
            coro__format_text_frame(o, i, &frames[i]);
        }
        if (!nf && rep->error[0]) {
            coro__out_str(o, "  (no frames: ");
            coro__out_str(o, rep->error);
            coro__out_str(o, ")\n");
        }
    }
    free(ix);
    free(g);
    return 0;
}

int coro__format_groups_json(CoroOut *o, const CoroBacktrace *bts, size_t n)
{
    size_t *ix, ng;
    CoroGroup *g;
    if (coro__groups_build(bts, n, &ix, &g, &ng) < 0) {
        return -ENOMEM;
    }
    coro__out_str(o, ",\"groups\":[");
    for (size_t k = 0; k < ng; k++) {
        const CoroBacktrace *rep = &bts[ix[g[k].first]];
        coro__out_str(o, k ? ",{\"count\":" : "{\"count\":");
        coro__out_u64(o, g[k].count);
        coro__out_str(o, ",\"ids\":[");
        for (size_t i = 0; i < g[k].count; i++) {
            if (i) {
                coro__out_str(o, ",");
            }
            coro__out_u64(o, bts[ix[g[k].first + i]].info->id);
        }
        coro__out_str(o, "],\"state\":\"");
        coro__out_str(o, coro__group_state(rep->info));
        coro__out_str(o, "\",\"wait\":");
        if (coro__waiting(rep->info)) {
            coro__out_str(o, "\"");
            coro__out_str(o, coro__wait_kind_name(rep->info->wait_kind));
            coro__out_str(o, "\"");
        } else {
            coro__out_str(o, "null");
        }
        coro__out_str(o, ",\"frames\":[");
        for (size_t i = 0; i < rep->nframes; i++) {
            if (i) {
                coro__out_str(o, ",");
            }
            coro__format_json_frame(o, &rep->frames[i]);
        }
        coro__out_str(o, "]}");
    }
    coro__out_str(o, "]");
    free(ix);
    free(g);
    return 0;
}
