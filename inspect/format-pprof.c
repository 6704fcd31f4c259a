/*
 * pprof export: the coroutines as a gzip'd profile.proto (github.com/google/pprof's
 * proto/profile.proto), so `go tool pprof`, Pyroscope and Parca read them. One sample per
 * group of identical stacks (format-group.c), value = how many coroutines, sample type
 * coroutines/count, labels "state" and "wait"; a Location per distinct pc with its inline
 * chain as Lines (innermost first), Functions with file names, a Mapping per module with the
 * GNU build id of its file (read from the file with libelf, for symbolizers that match by it).
 *
 * The encoder is a few lines of protobuf wire format (varints and length-delimited fields,
 * as Go's runtime/pprof writes them by hand); zlib makes the gzip stream.
 */
#define _GNU_SOURCE
#include <elfutils/libdwelf.h>
#include <errno.h>
#include <fcntl.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "inspect-int.h"

/* ---- a growable buffer and the wire format ---- */

typedef struct Buf {
    unsigned char *p;
    size_t len, cap;
    bool oom;
} Buf;

static void put_bytes(Buf *b, const void *src, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n) {
            cap *= 2;
        }
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_varint(Buf *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put_bytes(b, tmp, n);
}

/* Field `field` as a varint (wire type 0); zero values are left out, as proto3 does. */
static void field_u64(Buf *b, unsigned field, uint64_t v)
{
    if (v) {
        put_varint(b, (uint64_t)field << 3);
        put_varint(b, v);
    }
}

/* Field `field` as length-delimited bytes (wire type 2). */
static void field_bytes(Buf *b, unsigned field, const void *p, size_t n)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put_bytes(b, p, n);
}

static void field_msg(Buf *b, unsigned field, Buf *msg)
{
    field_bytes(b, field, msg->p, msg->len);
    b->oom |= msg->oom;
    msg->len = 0;
}

/* ---- interning: strings, functions, locations, mappings (linear tables; dumps are small
 * in distinct values even when they hold many coroutines) ---- */

typedef struct Profile {
    Buf out;                /* the Profile message */
    Buf tmp, tmp2;          /* sub-messages being built */
    const char **strs;
    size_t nstrs, capstrs;
    struct Fn { const char *name, *file; } *fns;
    size_t nfns, capfns;
    struct Loc { uint64_t pc; size_t first; size_t nframes; uint64_t mapping; } *locs;
    size_t nlocs, caplocs;
    struct Map { const char *file; uint64_t lo, hi; char *build_id; } *maps;
    size_t nmaps, capmaps;
    const CoroFrame *frames; /* the frames of the location being added */
} Profile;

static bool grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) {
        return true;
    }
    size_t c = *cap ? *cap * 2 : 64;
    void *q = realloc(*p, c * size);
    if (!q) {
        return false;
    }
    *p = q;
    *cap = c;
    return true;
}

static uint64_t str_id(Profile *pr, const char *s)
{
    s = s ? s : "";
    for (size_t i = 0; i < pr->nstrs; i++) {
        if (pr->strs[i] == s || strcmp(pr->strs[i], s) == 0) {
            return i;
        }
    }
    if (!grow((void **)&pr->strs, &pr->capstrs, pr->nstrs, sizeof(*pr->strs))) {
        pr->out.oom = true;
        return 0;
    }
    pr->strs[pr->nstrs] = s;
    return pr->nstrs++;
}

static uint64_t fn_id(Profile *pr, const CoroFrame *f)
{
    const char *name = f->function ? f->function : "??";
    for (size_t i = 0; i < pr->nfns; i++) {
        if (strcmp(pr->fns[i].name, name) == 0 &&
            strcmp(pr->fns[i].file ? pr->fns[i].file : "", f->file ? f->file : "") == 0) {
            return i + 1;
        }
    }
    if (!grow((void **)&pr->fns, &pr->capfns, pr->nfns, sizeof(*pr->fns))) {
        pr->out.oom = true;
        return 0;
    }
    pr->fns[pr->nfns] = (struct Fn){ name, f->file };
    return ++pr->nfns;
}

/* The GNU build id of the ELF file at path, in hex (malloc'd), or NULL: what pprof's symbolizers
 * (and Pyroscope, Parca) match a mapping's debug info by. */
static char *build_id_of(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    char *hex = NULL;
    elf_version(EV_CURRENT);
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    const void *id;
    ssize_t n = elf ? dwelf_elf_gnu_build_id(elf, &id) : -1;
    if (n > 0 && n <= 64 && (hex = malloc((size_t)n * 2 + 1))) {
        static const char digits[] = "0123456789abcdef";
        for (ssize_t i = 0; i < n; i++) {
            hex[2 * i] = digits[((const unsigned char *)id)[i] >> 4];
            hex[2 * i + 1] = digits[((const unsigned char *)id)[i] & 15];
        }
        hex[2 * n] = '\0';
    }
    if (elf) {
        elf_end(elf);
    }
    close(fd);
    return hex;
}

static uint64_t map_id(Profile *pr, const char *file, uint64_t pc)
{
    if (!file) {
        return 0;
    }
    for (size_t i = 0; i < pr->nmaps; i++) {
        if (strcmp(pr->maps[i].file, file) == 0) {
            pr->maps[i].lo = pc < pr->maps[i].lo ? pc : pr->maps[i].lo;
            pr->maps[i].hi = pc + 1 > pr->maps[i].hi ? pc + 1 : pr->maps[i].hi;
            return i + 1;
        }
    }
    if (!grow((void **)&pr->maps, &pr->capmaps, pr->nmaps, sizeof(*pr->maps))) {
        pr->out.oom = true;
        return 0;
    }
    pr->maps[pr->nmaps] = (struct Map){ file, pc, pc + 1, build_id_of(file) };
    return ++pr->nmaps;
}

/* frames[0..n): one pc, inline instances first then the real function. */
static uint64_t loc_id(Profile *pr, const CoroFrame *frames, size_t n)
{
    for (size_t i = 0; i < pr->nlocs; i++) {
        if (pr->locs[i].pc == frames[0].pc && pr->locs[i].nframes == n) {
            return i + 1;
        }
    }
    if (!grow((void **)&pr->locs, &pr->caplocs, pr->nlocs, sizeof(*pr->locs))) {
        pr->out.oom = true;
        return 0;
    }
    pr->locs[pr->nlocs] = (struct Loc){ frames[0].pc, 0, n, 0 };
    pr->locs[pr->nlocs].mapping = map_id(pr, frames[n - 1].module, frames[0].pc);
    /* Encode it now, while the frames are at hand. */
    Buf *l = &pr->tmp;
    field_u64(l, 1, pr->nlocs + 1);
    field_u64(l, 2, pr->locs[pr->nlocs].mapping);
    field_u64(l, 3, frames[0].pc);
    for (size_t i = 0; i < n; i++) {
        field_u64(&pr->tmp2, 1, fn_id(pr, &frames[i]));
        field_u64(&pr->tmp2, 2, frames[i].line > 0 ? (uint64_t)frames[i].line : 0);
        field_msg(l, 4, &pr->tmp2);
    }
    field_msg(&pr->out, 4, l);
    return ++pr->nlocs;
}

static void label(Profile *pr, Buf *sample, const char *key, const char *value)
{
    field_u64(&pr->tmp2, 1, str_id(pr, key));
    field_u64(&pr->tmp2, 2, str_id(pr, value));
    field_msg(sample, 3, &pr->tmp2);
}

/* ---- the profile ---- */

static int write_gzip(int fd, const unsigned char *p, size_t n)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        return -ENOMEM;
    }
    unsigned char chunk[16384];
    z.next_in = (unsigned char *)p;
    z.avail_in = (uInt)n;
    int rc = 0, zr;
    do {
        z.next_out = chunk;
        z.avail_out = sizeof(chunk);
        zr = deflate(&z, Z_FINISH);
        size_t have = sizeof(chunk) - z.avail_out;
        for (size_t done = 0; done < have && rc == 0;) {
            ssize_t w = write(fd, chunk + done, have - done);
            if (w < 0 && errno != EINTR) {
                rc = -errno;
            } else if (w > 0) {
                done += (size_t)w;
            }
        }
    } while (zr == Z_OK && rc == 0);
    deflateEnd(&z);
    return rc ? rc : zr == Z_STREAM_END ? 0 : -EIO;
}

int coro__format_pprof(int fd, const CoroDumpMeta *meta, const CoroBacktrace *bts, size_t n)
{
    size_t *ix, ng;
    CoroGroup *g;
    if (coro__groups_build(bts, n, &ix, &g, &ng) < 0) {
        return -ENOMEM;
    }
    Profile pr = { 0 };
    Buf sample = { 0 };
    str_id(&pr, ""); /* string_table[0] must be "" */
    /* sample_type: coroutines/count */
    field_u64(&pr.tmp, 1, str_id(&pr, "coroutines"));
    field_u64(&pr.tmp, 2, str_id(&pr, "count"));
    field_msg(&pr.out, 1, &pr.tmp);
    for (size_t k = 0; k < ng; k++) {
        const CoroBacktrace *rep = &bts[ix[g[k].first]];
        const CoroFrame *frames = rep->nframes ? rep->frames : rep->entry;
        size_t nf = rep->nframes ? rep->nframes : 1;
        for (size_t i = 0; i < nf;) {
            size_t j = i;
            while (j + 1 < nf && frames[j].inlined && frames[j + 1].pc == frames[i].pc) {
                j++;
            }
            uint64_t id = loc_id(&pr, &frames[i], j - i + 1);
            field_u64(&sample, 1, id);
            i = j + 1;
        }
        field_u64(&sample, 2, g[k].count);
        label(&pr, &sample, "state", coro__group_state(rep->info));
        if (coro__waiting(rep->info)) {
            label(&pr, &sample, "wait", coro__wait_kind_name(rep->info->wait_kind));
        }
        field_msg(&pr.out, 2, &sample);
    }
    for (size_t i = 0; i < pr.nmaps; i++) {
        field_u64(&pr.tmp, 1, i + 1);
        field_u64(&pr.tmp, 2, pr.maps[i].lo);
        field_u64(&pr.tmp, 3, pr.maps[i].hi);
        field_u64(&pr.tmp, 5, str_id(&pr, pr.maps[i].file));
        if (pr.maps[i].build_id) {
            field_u64(&pr.tmp, 6, str_id(&pr, pr.maps[i].build_id));
        }
        field_u64(&pr.tmp, 7, 1); /* has_functions */
        field_u64(&pr.tmp, 8, 1); /* has_filenames */
        field_u64(&pr.tmp, 9, 1); /* has_line_numbers */
        field_u64(&pr.tmp, 10, 1); /* has_inline_frames */
        field_msg(&pr.out, 3, &pr.tmp);
    }
    for (size_t i = 0; i < pr.nfns; i++) {
        field_u64(&pr.tmp, 1, i + 1);
        field_u64(&pr.tmp, 2, str_id(&pr, pr.fns[i].name));
        field_u64(&pr.tmp, 3, str_id(&pr, pr.fns[i].name));
        field_u64(&pr.tmp, 4, str_id(&pr, pr.fns[i].file));
        field_msg(&pr.out, 5, &pr.tmp);
    }
    char comment[96];
    snprintf(comment, sizeof(comment), "coroscope: %zu coroutines of process %d", n,
             meta ? meta->pid : 0);
    uint64_t comment_id = str_id(&pr, comment);
    for (size_t i = 0; i < pr.nstrs; i++) {
        field_bytes(&pr.out, 6, pr.strs[i], strlen(pr.strs[i]));
    }
    if (meta) {
        field_u64(&pr.out, 9, (uint64_t)meta->time.tv_sec * 1000000000 +
                                  (uint64_t)meta->time.tv_nsec);
    }
    field_u64(&pr.out, 13, comment_id);
    int rc = pr.out.oom || sample.oom || pr.tmp.oom || pr.tmp2.oom ? -ENOMEM :
             write_gzip(fd, pr.out.p, pr.out.len);
    free(pr.out.p);
    free(pr.tmp.p);
    free(pr.tmp2.p);
    free(sample.p);
    free(pr.strs);
    free(pr.fns);
    free(pr.locs);
    for (size_t i = 0; i < pr.nmaps; i++) {
        free(pr.maps[i].build_id);
    }
    free(pr.maps);
    free(ix);
    free(g);
    return rc;
}
