/*
 * coroscope top: the coroutines of a live process over time, read without stopping it (no
 * ptrace: process_vm_readv and the records' seqlocks, docs/debug-abi.md). Each refresh is one
 * records-only pass of the collect driver; what changes between passes gives the rates
 * (switches per second, created and terminated per second), how long each coroutine has been
 * in its state, and the warnings:
 *
 *   stalled     a thread's current coroutine has not switched for >= --stall-ms (default
 *               100): same record, same switch count, running, across refreshes
 *   long wait   waiting >= --long-wait seconds (default 60) on an fd or a queue with no
 *               deadline          } inspect/warnings.c, as in ps and the dumps
 *   never entered  created >= --never-entered seconds ago (default 60), never entered }
 *   deadlock    a wait-for cycle (inspect/deadlock.c)
 *
 * Batch mode (-b) prints plain tables, as `top -b` does; without -b it is a curses interface
 * with keys (top-ui.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli-int.h"
#include "top-int.h"
#include "elf-target-int.h"
#include "inspect-int.h"

static volatile sig_atomic_t interrupted;

static void on_int(int sig)
{
    interrupted = 1;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const Seen *find_seen(const TopState *st, uint64_t id)
{
    size_t lo = 0, hi = st->nseen;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->seen[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < st->nseen && st->seen[lo].id == id ? &st->seen[lo] : NULL;
}

static const char *state_word(const CoroInfo *ci)
{
    return coro__waiting(ci) ? "waiting" : coro__state_name(ci->state);
}

static void cell_site(CoroSymbolizer *s, uint64_t site, char *buf, size_t size)
{
    CoroFrame f[8];
    if (!site || coro__symbolize(s, site, true, 0, f, 8) < 1 || !f[0].function) {
        snprintf(buf, size, site ? "0x%" PRIx64 : "?", site);
        return;
    }
    const char *file = f[0].file ? strrchr(f[0].file, '/') : NULL;
    file = file ? file + 1 : f[0].file;
    if (file && f[0].line > 0) {
        snprintf(buf, size, "%s (%s:%d)", f[0].function, file, f[0].line);
    } else {
        snprintf(buf, size, "%s", f[0].function);
    }
}

int top_sample(CoroTarget *t, uint64_t abi_addr, CoroSymbolizer *s, const TopArgs *a,
               TopState *st, long iteration, FILE *out)
{
    CoroCollectOptions opts = { .records_only = true, .symbolizer = s };
    CoroCollection col;
    int rc = coro__collect(t, abi_addr, &opts, &col);
    if (rc < 0) {
        return rc;
    }
    int64_t now = col.now_ns ? col.now_ns : mono_ns();
    double dt = st->at ? (double)(now - st->at) / 1e9 : 0;
    size_t by_state[6] = { 0 }, waiting = 0;
    uint64_t created = 0, terminated = 0;
    for (size_t i = 0; i < col.reg.nthreads; i++) {
        created += col.reg.threads[i].created;
        terminated += col.reg.threads[i].terminated;
    }
    Seen *seen = calloc(col.n ? col.n : 1, sizeof(*seen));
    if (!seen) {
        coro__collection_free(&col);
        return -ENOMEM;
    }
    for (size_t i = 0; i < col.n; i++) {
        const CoroInfo *ci = col.bts[i].info;
        const Seen *was = find_seen(st, ci->id);
        seen[i] = (Seen){ .id = ci->id, .switches = ci->switch_count, .state = ci->state,
                          .wait_kind = ci->wait_kind };
        bool same = was && was->state == ci->state && was->wait_kind == ci->wait_kind &&
                    (ci->state != CORO_STATE_RUNNING || was->switches == ci->switch_count);
        /* First seen now: durations count from here (lower bounds). */
        seen[i].state_since = same ? was->state_since : now;
        if (coro__waiting(ci)) {
            waiting++;
        } else if (ci->state < 6) {
            by_state[ci->state == CORO_STATE_NESTED ? CORO_STATE_RUNNING : ci->state]++;
        }
    }

    time_t wall = time(NULL);
    struct tm tm;
    localtime_r(&wall, &tm);
    fprintf(out, "coroscope top - %02d:%02d:%02d  process %d  refresh %ld: %zu coroutines: %zu created, "
           "%zu running, %zu suspended, %zu waiting\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)t->pid, iteration + 1, col.n, by_state[CORO_STATE_CREATED],
           by_state[CORO_STATE_RUNNING], by_state[CORO_STATE_SUSPENDED], waiting);
    fprintf(out, "threads:");
    for (size_t i = 0; i < col.reg.nthreads; i++) {
        if (col.reg.threads[i].tid > 0) {
            size_t on = 0;
            for (size_t k = 0; k < col.n; k++) {
                on += col.bts[k].info->tid == col.reg.threads[i].tid;
            }
            fprintf(out, " %d (%zu)", (int)col.reg.threads[i].tid, on);
        }
    }
    if (dt > 0) {
        fprintf(out, "; created/s %.1f, terminated/s %.1f\n", (double)(created - st->created) / dt,
               (double)(terminated - st->terminated) / dt);
    } else {
        fprintf(out, "; created/s -, terminated/s - (rates from the second refresh)\n");
    }

    /* Warnings. */
    CoroDumpMeta meta = { 0 };
    coro__collection_meta(&col, &meta);
    fflush(out);
    CoroOut o;
    coro__out_init(&o, fileno(out));
    coro__out_deadlocks_text(&o, col.bts, &meta, "warning: ", cli_quoted);
    coro__out_flush(&o);
    for (size_t i = 0; i < col.reg.nthreads; i++) {
        const CoroThreadInfo *th = &col.reg.threads[i];
        for (size_t k = 0; th->tid > 0 && th->current && k < col.n; k++) {
            const CoroInfo *ci = col.bts[k].info;
            if (ci->record == th->current && ci->state == CORO_STATE_RUNNING && st->at &&
                now - seen[k].state_since >= a->stall_ns) {
                char d[32];
                cli_duration_cell(now - seen[k].state_since, d, sizeof(d));
                char name[CORO_INFO_NAME_SIZE];
                snprintf(name, sizeof(name), "%s", ci->name);
                cli_clean(name);
                fprintf(out, "warning: stalled: coroutine %" PRIu64 " \"%s\" on thread %d has "
                        "not yielded for at least %s\n", ci->id, name, (int)th->tid, d);
            }
        }
    }
    meta.warn = a->warn;
    fflush(out);
    coro__out_init(&o, fileno(out));
    coro__out_warnings_text(&o, col.bts, col.n, &meta, "", cli_quoted);
    coro__out_flush(&o);

    TopRow *rows = calloc(col.n ? col.n : 1, sizeof(*rows));
    if (!rows) {
        free(seen);
        coro__collection_free(&col);
        return -ENOMEM;
    }
    for (size_t k = 0; k < col.n; k++) {
        const CoroInfo *ci = col.bts[k].info;
        const Seen *was = find_seen(st, ci->id);
        TopRow *r = &rows[k];
        *r = (TopRow){ .id = ci->id, .state = state_word(ci), .for_ns = -1, .rate = -1,
                       .tid = (int)ci->tid, .dur = "-", .rate_s = "-" };
        snprintf(r->name, sizeof(r->name), "%s", ci->name[0] ? ci->name : "-");
        cli_clean(r->name);
        cli_wait_cell(ci, now, false, r->wait, sizeof(r->wait));
        cli_clean(r->wait);
        if (coro__waiting(ci) && ci->wait_since) {
            r->for_ns = now - (int64_t)ci->wait_since;
        } else if (st->at) {
            r->for_ns = now - seen[k].state_since;
        }
        if (r->for_ns >= 0) {
            cli_duration_cell(r->for_ns, r->dur, sizeof(r->dur));
        }
        if (was && dt > 0) {
            r->rate = (double)(ci->switch_count - was->switches) / dt;
            snprintf(r->rate_s, sizeof(r->rate_s), "%.0f", r->rate);
        }
        cell_site(s, ci->create_site, r->site, sizeof(r->site));
        cli_clean(r->site);
    }
    fflush(out);
    free(st->rows);
    st->rows = rows;
    st->nrows = col.n;
    free(st->seen);
    st->seen = seen;
    st->nseen = col.n;
    st->at = now;
    st->created = created;
    st->terminated = terminated;
    coro__collection_free(&col);
    return 0;
}

void top_row_text(const TopRow *r, char *buf, size_t size)
{
    if (!r) {
        snprintf(buf, size, "%-8s %-20s %-9s %-44s %10s %8s %-8s %s", "ID", "NAME", "STATE",
                 "WAIT", "FOR", "SW/s", "THREAD", "CREATED AT");
        return;
    }
    snprintf(buf, size, "%-8" PRIu64 " %-20s %-9s %-44s %10s %8s %-8d %s", r->id, r->name,
             r->state, r->wait, r->dur, r->rate_s, r->tid, r->site);
}

static void print_rows(const TopState *st)
{
    char line[512];
    top_row_text(NULL, line, sizeof(line));
    puts(line);
    for (size_t k = 0; k < st->nrows; k++) {
        top_row_text(&st->rows[k], line, sizeof(line));
        puts(line);
    }
    fflush(stdout);
}

static const char top_usage[] =
    "Usage: coroscope top -p PID [-b] [-n ITERATIONS] [-d SECONDS] [--stall-ms MS]\n"
    "                     [--long-wait SECONDS] [--never-entered SECONDS]\n";

static int top_usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "coroscope: top: %s%s%s\n%s", what, arg ? ": " : "", arg ? arg : "",
            top_usage);
    return CLI_EXIT_USAGE;
}

static int parse_top(int argc, char **argv, TopArgs *a)
{
    static const struct option longopts[] = {
        { "pid", required_argument, NULL, 'p' },
        { "batch", no_argument, NULL, 'b' },
        { "iterations", required_argument, NULL, 'n' },
        { "delay", required_argument, NULL, 'd' },
        { "stall-ms", required_argument, NULL, 'S' },
        { "long-wait", required_argument, NULL, 'W' },
        { "never-entered", required_argument, NULL, 'E' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    *a = (TopArgs){ .delay = 1.0, .stall_ns = 100000000 };
    optind = 1;
    opterr = 0;
    int c;
    double v;
    while ((c = getopt_long(argc, argv, ":p:bn:d:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (!cli_number(optarg, 1, 4194304, &v)) {
                return top_usage_error("-p needs a process id", optarg);
            }
            a->pid = (pid_t)v;
            break;
        case 'b':
            a->batch = true;
            break;
        case 'n':
            if (!cli_number(optarg, 1, 1e9, &v)) {
                return top_usage_error("-n needs a number of refreshes >= 1", optarg);
            }
            a->iterations = (long)v;
            break;
        case 'd':
            if (!cli_number(optarg, 0.01, 3600, &v)) {
                return top_usage_error("-d needs seconds between 0.01 and 3600", optarg);
            }
            a->delay = v;
            break;
        case 'S':
            if (!cli_number(optarg, 1, 1e9, &v)) {
                return top_usage_error("--stall-ms needs milliseconds >= 1", optarg);
            }
            a->stall_ns = (int64_t)(v * 1e6);
            break;
        case 'W':
            if (!cli_number(optarg, 0.001, 1e7, &v)) {
                return top_usage_error("--long-wait needs seconds > 0", optarg);
            }
            a->warn.long_wait_ns = (int64_t)(v * 1e9);
            break;
        case 'E':
            if (!cli_number(optarg, 0.001, 1e7, &v)) {
                return top_usage_error("--never-entered needs seconds > 0", optarg);
            }
            a->warn.never_entered_ns = (int64_t)(v * 1e9);
            break;
        case 'h':
            fputs(top_usage, stdout);
            fputs("\n", stdout);
            fputs(cli_exit_status_text, stdout);
            return CLI_EXIT_ALL;
        case ':':
            fprintf(stderr, "coroscope: top: option %s needs a value\n%s", argv[optind - 1],
                    top_usage);
            return CLI_EXIT_USAGE;
        default:
            return top_usage_error("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        return top_usage_error("unexpected argument", argv[optind]);
    }
    if (!a->pid) {
        return top_usage_error("which process? (-p PID)", NULL);
    }
    return -1;
}

int cli_top(int argc, char **argv)
{
    TopArgs a;
    int rc = parse_top(argc, argv, &a);
    if (rc >= 0) {
        return rc;
    }
    char err[3 * 4096]; /* room for two whole paths: messages never cut one */
    CoroTarget *t;
    if (coro__target_pid_open_mode(a.pid, false, &t, err, sizeof(err)) < 0) {
        fprintf(stderr, "coroscope: %s\n", err);
        return CLI_EXIT_NONE;
    }
    uint64_t abi_addr;
    const char *module;
    if (coro__target_find_registry(t, &abi_addr, &module, err, sizeof(err)) < 0) {
        fprintf(stderr, "coroscope: %s\n", err);
        t->ops->close(t);
        return CLI_EXIT_NONE;
    }
    CoroSymbolizer *s = coro__symbolizer_create(t->dwfl);
    if (!s) {
        fprintf(stderr, "coroscope: out of memory\n");
        t->ops->close(t);
        return CLI_EXIT_NONE;
    }
    int status = CLI_EXIT_ALL;
    TopState st = { 0 };
    if (!a.batch) {
        status = top_ui_run(t, abi_addr, s, &a);
        goto out;
    }
    signal(SIGINT, on_int);
    signal(SIGTERM, on_int);
    for (long i = 0; !interrupted && (a.iterations == 0 || i < a.iterations); i++) {
        if (i > 0) {
            struct timespec d = { (time_t)a.delay, (long)((a.delay - (time_t)a.delay) * 1e9) };
            while (nanosleep(&d, &d) < 0 && errno == EINTR && !interrupted) {
            }
            if (interrupted) {
                break;
            }
            putchar('\n');
        }
        t->error[0] = '\0';
        rc = top_sample(t, abi_addr, s, &a, &st, i, stdout);
        if (rc < 0) {
            fprintf(stderr, "coroscope: cannot read the coroutine registry of process %d: %s\n",
                    (int)a.pid, t->error[0] ? t->error : strerror(-rc));
            status = i ? CLI_EXIT_SOME : CLI_EXIT_NONE;
            break;
        }
        print_rows(&st);
    }
out:
    free(st.rows);
    free(st.seen);
    coro__symbolizer_destroy(s);
    t->ops->close(t);
    return status;
}
