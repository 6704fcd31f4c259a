/*
 * coroscope ps: one line per coroutine — id, state, name, thread, what it waits for, and where
 * it is (coro__backtrace_where: the innermost frame outside coroscope and the system's
 * libraries) — then one line per deadlock and per warning. Lines are assembled by hand:
 * 100,000 coroutines are printed in a few milliseconds.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli-int.h"
#include "inspect-int.h"

/* Untrusted text, cleaned as cli_clean does, whatever its length. */
static void put_clean(FILE *out, const char *s)
{
    for (; *s; s++) {
        putc(isprint((unsigned char)*s) ? *s : '?', out);
    }
}

/* ps's WHERE cell, unbounded (a long module path is named whole): "function (file:line)",
 * "function (module)", or the address. */
static void print_where(FILE *out, const CoroFrame *f)
{
    if (!f) {
        putc('?', out);
    } else if (f->function) {
        const char *file = f->file ? strrchr(f->file, '/') : NULL;
        file = file ? file + 1 : f->file;
        put_clean(out, f->function);
        fputs(" (", out);
        if (file && f->line > 0) {
            put_clean(out, file);
            fprintf(out, ":%d)", f->line);
        } else {
            put_clean(out, f->module ? f->module : "?");
            putc(')', out);
        }
    } else {
        fprintf(out, "0x%" PRIx64, f->pc);
    }
}

/* Appends s to p, padded with spaces to width (printf's %-Ns), and one space. */
static char *cell(char *p, const char *s, size_t width)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    for (; n < width; n++) {
        p[n] = ' ';
    }
    p[n] = ' ';
    return p + n + 1;
}

void cli_print_ps(const CoroBacktrace *bts, size_t n, const CoroDumpMeta *meta)
{
    printf("%-8s %-9s %-20s %-8s %-48s %s\n", "ID", "STATE", "NAME", "THREAD", "WAIT", "WHERE");
    /* 100,000 lines: each is assembled by hand and written once, and the WHERE cell is
     * printed again only when its frame differs from the previous line's (neighbours share
     * the symbolizer's strings); the same bytes as printf and print_where() would write. */
    char *where = NULL;
    size_t where_len = 0;
    const CoroFrame *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const CoroBacktrace *bt = &bts[i];
        char name[CORO_INFO_NAME_SIZE];
        snprintf(name, sizeof(name), "%s", bt->info->name[0] ? bt->info->name : "-");
        cli_clean(name);
        char tid[16] = "-";
        if (bt->info->tid > 0) {
            snprintf(tid, sizeof(tid), "%d", (int)bt->info->tid);
        }
        char wait[160];
        cli_wait_cell(bt->info, meta->now_ns, true, wait, sizeof(wait));
        cli_clean(wait);
        char id[24], line[sizeof(id) + 16 + sizeof(name) + sizeof(tid) + sizeof(wait) + 64];
        snprintf(id, sizeof(id), "%" PRIu64, bt->info->id);
        char *p = cell(line, id, 8);
        p = cell(p, coro__waiting(bt->info) ? "waiting" : coro__state_name(bt->info->state), 9);
        p = cell(p, name, 20);
        p = cell(p, tid, 8);
        p = cell(p, wait, 48);
        fwrite(line, 1, (size_t)(p - line), stdout);
        const CoroFrame *f = coro__backtrace_where(bt);
        bool same = where && (f && last ? f->function == last->function && f->file == last->file &&
                                              f->line == last->line && f->module == last->module &&
                                              (f->function || f->pc == last->pc)
                                        : f == last);
        if (!same) {
            free(where);
            where = NULL;
            FILE *m = open_memstream(&where, &where_len);
            if (!m) {
                print_where(stdout, f);
                putchar('\n');
                last = NULL;
                continue;
            }
            print_where(m, f);
            fclose(m);
            last = f;
        }
        fwrite(where, 1, where_len, stdout);
        putchar('\n');
    }
    free(where);
    fflush(stdout);
    CoroOut o;
    coro__out_init(&o, STDOUT_FILENO);
    coro__out_deadlocks_text(&o, bts, meta, "", cli_quoted);
    coro__out_warnings_text(&o, bts, n, meta, "", cli_quoted);
    coro__out_flush(&o);
}
