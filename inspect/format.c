/*
 * The three output formats of every coroscope dump (in-process, CLI, signal), written to an
 * fd through a small buffer: no stdio, no locks, no allocation (the folded format's sort
 * index can be passed in), so the signal dump can use it too. docs/dump-format.md and
 * docs/json-schema.md describe the output; this file is the reference.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inspect-int.h"

/* ---- the buffered writer ---- */

void coro__out_init(CoroOut *o, int fd)
{
    o->fd = fd;
    o->err = 0;
    o->len = 0;
    memset(o->plain, 0, sizeof(o->plain));
}

static void out_write(CoroOut *o, const char *p, size_t len)
{
    while (len > 0 && o->err == 0) {
        ssize_t n = write(o->fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            o->err = -errno;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

int coro__out_flush(CoroOut *o)
{
    if (o->len) {
        out_write(o, o->buf, o->len);
        o->len = 0;
    }
    return o->err;
}

void coro__out_mem(CoroOut *o, const char *s, size_t len)
{
    if (o->err) {
        return;
    }
    if (len > sizeof(o->buf) - o->len) {
        coro__out_flush(o);
        if (len > sizeof(o->buf)) {
            out_write(o, s, len);
            return;
        }
    }
    memcpy(o->buf + o->len, s, len);
    o->len += len;
}

/* The fast path of coro__out_mem, for this file's many small pieces. */
static inline void put(CoroOut *o, const char *s, size_t len)
{
    if (len <= sizeof(o->buf) - o->len) {
        memcpy(o->buf + o->len, s, len);
        o->len += len;
    } else {
        coro__out_mem(o, s, len);
    }
}

void coro__out_str(CoroOut *o, const char *s)
{
    put(o, s, strlen(s));
}

#define coro__out_str(o, s) put((o), (s), strlen(s))

static void out_ch(CoroOut *o, char c)
{
    if (o->len == sizeof(o->buf)) {
        coro__out_flush(o);
    }
    if (!o->err) {
        o->buf[o->len++] = c;
    }
}

void coro__out_u64(CoroOut *o, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, tmp + i, sizeof(tmp) - i);
}

void coro__out_i64(CoroOut *o, int64_t v)
{
    if (v < 0) {
        out_ch(o, '-');
        coro__out_u64(o, (uint64_t)0 - (uint64_t)v);
    } else {
        coro__out_u64(o, (uint64_t)v);
    }
}

static void out_hex_width(CoroOut *o, uint64_t v, int width)
{
    char tmp[18];
    int i = 18;
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v || 18 - i < width);
    put(o, tmp + i, (size_t)(18 - i));
}

void coro__out_hex(CoroOut *o, uint64_t v)
{
    put(o, "0x", 2);
    out_hex_width(o, v, 1);
}

/* Length of a valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return n;
}

void coro__out_json_str(CoroOut *o, const char *s)
{
    if (!s) {
        put(o, "null", 4);
        return;
    }
    size_t slot = ((uintptr_t)s >> 3 ^ (uintptr_t)s >> 11) & (CORO_OUT_STR_CACHE - 1);
    if (o->plain[slot] == s) {
        out_ch(o, '"');
        put(o, s, o->plain_len[slot]);
        out_ch(o, '"');
        return;
    }
    out_ch(o, '"');
    const unsigned char *p = (const unsigned char *)s;
    bool plain = true;
    while (*p) {
        /* Copy runs of plain ASCII in one go: the common case (paths, symbol names). */
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
        }
        if (p > run) {
            put(o, (const char *)run, (size_t)(p - run));
            continue;
        }
        unsigned c = *p;
        plain = false;
        if (c == '"' || c == '\\') {
            out_ch(o, '\\');
            out_ch(o, (char)c);
            p++;
        } else if (c < 0x20) {
            put(o, "\\u00", 4);
            out_hex_width(o, c, 2);
            p++;
        } else {
            size_t n = utf8_len(p);
            if (n == 0) {
                put(o, "\\ufffd", 6);
                p++;
            } else {
                put(o, (const char *)p, n);
                p += n;
            }
        }
    }
    out_ch(o, '"');
    if (plain && (size_t)(p - (const unsigned char *)s) < UINT32_MAX) {
        o->plain[slot] = s;
        o->plain_len[slot] = (uint32_t)(p - (const unsigned char *)s);
    }
}

/* Untrusted text for the text format: quotes, backslashes and control bytes escaped. */
static void out_text_str(CoroOut *o, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        const unsigned char *run = p;
        while (*p >= 0x20 && *p != 0x7f && *p != '"' && *p != '\\') {
            p++;
        }
        if (p > run) {
            put(o, (const char *)run, (size_t)(p - run));
            continue;
        }
        if (*p == '"' || *p == '\\') {
            out_ch(o, '\\');
            out_ch(o, (char)*p);
        } else {
            put(o, "\\x", 2);
            out_hex_width(o, *p, 2);
        }
        p++;
    }
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ---- time ---- */

static void out_time(CoroOut *o, const struct timespec *ts)
{
    /* Days to civil date (proleptic Gregorian), as gmtime_r would but signal-safe. */
    int64_t secs = ts->tv_sec;
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2) {
        y++;
    }
    char b[32];
    int64_t f[6] = { y, m, d, rem / 3600, rem / 60 % 60, rem % 60 };
    const char sep[6] = { '-', '-', 'T', ':', ':', '.' };
    size_t n = 0;
    for (int i = 0; i < 6; i++) {
        int w = i == 0 ? 4 : 2;
        int64_t v = f[i];
        for (int j = w - 1; j >= 0; j--) {
            b[n + (size_t)j] = (char)('0' + v % 10);
            v /= 10;
        }
        n += (size_t)w;
        b[n++] = sep[i];
    }
    long ms = ts->tv_nsec / 1000000;
    b[n++] = (char)('0' + ms / 100);
    b[n++] = (char)('0' + ms / 10 % 10);
    b[n++] = (char)('0' + ms % 10);
    b[n++] = 'Z';
    put(o, b, n);
}

/* ---- text ---- */

static void text_location(CoroOut *o, const CoroFrame *f)
{
    if (f->file) {
        put(o, " (", 2);
        out_text_str(o, f->file);
        if (f->line > 0) {
            out_ch(o, ':');
            coro__out_u64(o, (uint64_t)f->line);
        }
        out_ch(o, ')');
    } else if (f->module) {
        put(o, " (in ", 5);
        out_text_str(o, base_name(f->module));
        out_ch(o, ')');
    }
}

void coro__format_text_frame(CoroOut *o, size_t i, const CoroFrame *f)
{
    put(o, "  #", 3);
    coro__out_u64(o, i);
    put(o, i < 10 ? "  0x" : " 0x", i < 10 ? 4 : 3);
    out_hex_width(o, f->pc, 16);
    out_ch(o, ' ');
    if (f->function) {
        out_text_str(o, f->function);
    } else {
        put(o, "??", 2);
    }
    text_location(o, f);
    if (f->inlined) {
        put(o, " [inlined]", 10);
    }
    out_ch(o, '\n');
}

void coro__format_text_quoted(CoroOut *o, const char *s)
{
    out_ch(o, '"');
    out_text_str(o, s);
    out_ch(o, '"');
}

static void text_one(CoroOut *o, const CoroBacktrace *bt, int64_t now_ns)
{
    const CoroInfo *ci = bt->info;
    put(o, "coroutine ", 10);
    coro__out_u64(o, ci->id);
    if (ci->name[0]) {
        out_ch(o, ' ');
        coro__format_text_quoted(o, ci->name);
    }
    put(o, " [", 2);
    if (coro__waiting(ci)) {
        coro__out_wait_text(o, ci, now_ns);
    } else {
        coro__out_str(o, coro__state_name(ci->state));
    }
    if (ci->tid > 0) {
        put(o, ", thread ", 9);
        coro__out_u64(o, (uint64_t)ci->tid);
    }
    put(o, "]:\n", 3);
    for (size_t i = 0; i < bt->nframes; i++) {
        coro__format_text_frame(o, i, &bt->frames[i]);
    }
    if (bt->error[0]) {
        coro__out_str(o, bt->nframes ? "  (backtrace stops: " : "  (no frames: ");
        out_text_str(o, bt->error);
        put(o, ")\n", 2);
    } else if (bt->truncated) {
        coro__out_str(o, "  (more frames not shown)\n");
    }
    if (bt->created_at->pc) {
        coro__out_str(o, "  created by ");
        out_text_str(o, bt->created_at->function ? bt->created_at->function : "??");
        if (bt->created_at->file) {
            put(o, " at ", 4);
            out_text_str(o, bt->created_at->file);
            if (bt->created_at->line > 0) {
                out_ch(o, ':');
                coro__out_u64(o, (uint64_t)bt->created_at->line);
            }
        } else {
            text_location(o, bt->created_at);
        }
        out_ch(o, '\n');
    }
}

int coro__format_text_one(int fd, const CoroBacktrace *bt)
{
    CoroOut o;
    coro__out_init(&o, fd);
    text_one(&o, bt, coro__meta_now(NULL));
    return coro__out_flush(&o);
}

/* ---- JSON ---- */

void coro__format_json_frame(CoroOut *o, const CoroFrame *f)
{
    coro__out_str(o, "{\"pc\":\"");
    coro__out_hex(o, f->pc);
    coro__out_str(o, "\",\"function\":");
    coro__out_json_str(o, f->function);
    coro__out_str(o, ",\"offset\":");
    if (f->offset >= 0) {
        coro__out_i64(o, f->offset);
    } else {
        put(o, "null", 4);
    }
    coro__out_str(o, ",\"file\":");
    coro__out_json_str(o, f->file);
    coro__out_str(o, ",\"line\":");
    if (f->line > 0) {
        coro__out_u64(o, (uint64_t)f->line);
    } else {
        put(o, "null", 4);
    }
    coro__out_str(o, ",\"module\":");
    coro__out_json_str(o, f->module);
    coro__out_str(o, f->inlined ? ",\"inlined\":true}" : ",\"inlined\":false}");
}

static void json_one(CoroOut *o, const CoroBacktrace *bt, int64_t now_ns)
{
    const CoroInfo *ci = bt->info;
    coro__out_str(o, "{\"id\":");
    coro__out_u64(o, ci->id);
    coro__out_str(o, ",\"name\":");
    coro__out_json_str(o, ci->name[0] ? ci->name : NULL);
    coro__out_str(o, ",\"state\":\"");
    coro__out_str(o, coro__state_name(ci->state));
    coro__out_str(o, "\",\"thread\":");
    if (ci->tid > 0) {
        coro__out_u64(o, (uint64_t)ci->tid);
    } else {
        put(o, "null", 4);
    }
    coro__out_str(o, ",\"entry\":");
    coro__format_json_frame(o, bt->entry);
    coro__out_str(o, ",\"created_at\":");
    if (bt->created_at->pc) {
        coro__format_json_frame(o, bt->created_at);
    } else {
        put(o, "null", 4);
    }
    coro__out_str(o, ",\"stack\":{\"base\":\"");
    coro__out_hex(o, ci->stack_base);
    coro__out_str(o, "\",\"size\":");
    coro__out_u64(o, ci->stack_size);
    coro__out_str(o, ",\"used_max\":");
    if (ci->stack_used_max != UINT64_MAX) {
        coro__out_u64(o, ci->stack_used_max);
    } else {
        put(o, "null", 4);
    }
    coro__out_str(o, "},\"wait\":");
    coro__out_wait_json(o, ci, now_ns);
    coro__out_str(o, ",\"frames\":[");
    for (size_t i = 0; i < bt->nframes; i++) {
        if (i) {
            out_ch(o, ',');
        }
        coro__format_json_frame(o, &bt->frames[i]);
    }
    /* The partial-record rule: why frames are missing or incomplete, or null. */
    coro__out_str(o, "],\"error\":");
    coro__out_json_str(o, bt->error[0] ? bt->error : NULL);
    out_ch(o, '}');
}

/* ---- folded ---- */

static void folded_text(CoroOut *o, const char *s)
{
    /* ';' separates frames and the last ' ' the count: keep both out of names. */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char c = (char)*p;
        if (c == ';') {
            c = ':';
        } else if (*p <= ' ' || *p == 0x7f) {
            c = '_';
        }
        out_ch(o, c);
    }
}

static const char *folded_name(const CoroBacktrace *bt)
{
    return bt->info->name[0] ? bt->info->name : "[unnamed]";
}

static const char *frame_label(const CoroFrame *f)
{
    return f->function ? f->function : "??";
}

static int bt_cmp(const CoroBacktrace *a, const CoroBacktrace *b)
{
    int c = strcmp(folded_name(a), folded_name(b));
    if (c) {
        return c;
    }
    /* Outermost first, as the lines are written. */
    size_t na = a->nframes, nb = b->nframes;
    for (size_t i = 0; i < na && i < nb; i++) {
        c = strcmp(frame_label(&a->frames[na - 1 - i]), frame_label(&b->frames[nb - 1 - i]));
        if (c) {
            return c;
        }
    }
    if (na != nb) {
        return na < nb ? -1 : 1;
    }
    if (na == 0) {
        return strcmp(coro__state_name(a->info->state), coro__state_name(b->info->state));
    }
    return 0;
}

/* Heapsort of indexes: no allocation, no recursion, O(n log n). */
static void sift(uint32_t *ix, size_t start, size_t end, const CoroBacktrace *bts)
{
    size_t root = start;
    while (2 * root + 1 < end) {
        size_t child = 2 * root + 1;
        if (child + 1 < end && bt_cmp(&bts[ix[child]], &bts[ix[child + 1]]) < 0) {
            child++;
        }
        if (bt_cmp(&bts[ix[root]], &bts[ix[child]]) >= 0) {
            return;
        }
        uint32_t t = ix[root];
        ix[root] = ix[child];
        ix[child] = t;
        root = child;
    }
}

static void sort_index(uint32_t *ix, size_t n, const CoroBacktrace *bts)
{
    for (size_t i = 0; i < n; i++) {
        ix[i] = (uint32_t)i;
    }
    for (size_t s = n / 2; s-- > 0;) {
        sift(ix, s, n, bts);
    }
    for (size_t end = n; end > 1; end--) {
        uint32_t t = ix[0];
        ix[0] = ix[end - 1];
        ix[end - 1] = t;
        sift(ix, 0, end - 1, bts);
    }
}

static void folded_line(CoroOut *o, const CoroBacktrace *bt, uint64_t count)
{
    folded_text(o, folded_name(bt));
    if (bt->nframes == 0) {
        put(o, ";[", 2);
        coro__out_str(o, coro__state_name(bt->info->state));
        out_ch(o, ']');
    }
    for (size_t i = bt->nframes; i-- > 0;) {
        out_ch(o, ';');
        folded_text(o, frame_label(&bt->frames[i]));
    }
    out_ch(o, ' ');
    coro__out_u64(o, count);
    out_ch(o, '\n');
}

/* The header's second line when the answer is partial (the collect driver's counts). */
void coro__format_text_partial(CoroOut *o, const CoroDumpMeta *meta)
{
    if (!meta || (!meta->unreadable && !meta->truncated && !meta->incomplete)) {
        return;
    }
    const char *sep = "coroscope: partial: ";
    if (meta->unreadable) {
        coro__out_str(o, sep);
        coro__out_u64(o, meta->unreadable);
        coro__out_str(o, meta->unreadable == 1 ? " record could not be read" :
                      " records could not be read");
        sep = "; ";
    }
    if (meta->truncated) {
        coro__out_str(o, sep);
        coro__out_str(o, "the registry walk was cut short (a list is cyclic or longer than its "
                      "count)");
        sep = "; ";
    }
    if (meta->incomplete) {
        coro__out_str(o, sep);
        coro__out_u64(o, meta->incomplete);
        coro__out_str(o, meta->incomplete == 1 ? " coroutine listed without all its frames" :
                      " coroutines listed without all their frames");
    }
    out_ch(o, '\n');
}

int coro__format_dump(int fd, int format, const CoroDumpMeta *meta, const CoroBacktrace *bts,
                      size_t n, unsigned flags, uint32_t *order)
{
    CoroOut o;
    coro__out_init(&o, fd);
    switch (format) {
    case CORO_DUMP_TEXT:
        if (!(flags & CORO_FORMAT_NO_PREAMBLE)) {
            coro__out_str(&o, "coroscope: ");
            coro__out_u64(&o, n);
            coro__out_str(&o, n == 1 ? " coroutine in process " : " coroutines in process ");
            coro__out_u64(&o, (uint64_t)(meta ? meta->pid : 0));
            if (meta) {
                coro__out_str(&o, " at ");
                out_time(&o, &meta->time);
            }
            out_ch(&o, '\n');
            coro__format_text_partial(&o, meta);
            coro__out_stall_text(&o, bts, n, meta, "coroscope: ", coro__format_text_quoted);
            coro__out_deadlocks_text(&o, bts, meta, "coroscope: ", coro__format_text_quoted);
            coro__out_warnings_text(&o, bts, n, meta, "coroscope: ", coro__format_text_quoted);
        }
        for (size_t i = 0; i < n; i++) {
            out_ch(&o, '\n');
            text_one(&o, &bts[i], coro__meta_now(meta));
        }
        break;
    case CORO_DUMP_PPROF:
        return coro__format_pprof(fd, meta, bts, n);
    case CORO_DUMP_GROUPED: {
        int rc = coro__format_grouped_text(&o, meta, bts, n);
        if (rc < 0) {
            return rc;
        }
        break;
    }
    case CORO_DUMP_JSON:
        coro__out_str(&o, "{\"format\":\"coroscope\",\"version\":1,\"pid\":");
        coro__out_u64(&o, (uint64_t)(meta ? meta->pid : 0));
        coro__out_str(&o, ",\"time\":\"");
        if (meta) {
            out_time(&o, &meta->time);
        } else {
            struct timespec zero = { 0, 0 };
            out_time(&o, &zero);
        }
        coro__out_str(&o, "\",\"partial\":{\"unreadable\":");
        coro__out_u64(&o, meta ? meta->unreadable : 0);
        coro__out_str(&o, meta && meta->truncated ? ",\"truncated\":true" :
                      ",\"truncated\":false");
        coro__out_str(&o, ",\"incomplete\":");
        coro__out_u64(&o, meta ? meta->incomplete : 0);
        coro__out_str(&o, "},\"deadlocks\":");
        coro__out_deadlocks_json(&o, bts, meta);
        coro__out_str(&o, ",\"warnings\":");
        coro__out_warnings_json(&o, bts, n, meta);
        coro__out_stall_json(&o, meta);
        coro__out_str(&o, ",\"coroutines\":[");
        for (size_t i = 0; i < n; i++) {
            if (i) {
                out_ch(&o, ',');
            }
            json_one(&o, &bts[i], coro__meta_now(meta));
        }
        coro__out_str(&o, "]");
        if (flags & CORO_FORMAT_GROUPS) {
            int rc = coro__format_groups_json(&o, bts, n);
            if (rc < 0) {
                return rc;
            }
        }
        coro__out_str(&o, "}\n");
        break;
    case CORO_DUMP_FOLDED: {
        if (n > UINT32_MAX) {
            return -EOVERFLOW;
        }
        uint32_t *ix = order;
        if (!ix && n) {
            ix = malloc(n * sizeof(*ix));
            if (!ix) {
                return -ENOMEM;
            }
        }
        sort_index(ix, n, bts);
        for (size_t i = 0; i < n;) {
            size_t j = i + 1;
            while (j < n && bt_cmp(&bts[ix[i]], &bts[ix[j]]) == 0) {
                j++;
            }
            folded_line(&o, &bts[ix[i]], j - i);
            i = j;
        }
        if (ix != order) {
            free(ix);
        }
        break;
    }
    default:
        return -EINVAL;
    }
    return coro__out_flush(&o);
}
