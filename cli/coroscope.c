/*
 * coroscope: eu-stack for coroutines. Lists (ps) and backtraces (bt) the coroutines of a live
 * process or of a core file, through the target's coroutine registry (debug ABI).
 *
 * This file is argument parsing and output choice only: targets live in inspect/target-*.c,
 * registry reading, unwinding, symbolizing and the three output formats in inspect/ (the
 * same code as the in-process dump, so both print the same thing for the same stack).
 *
 * Exit codes (as eu-stack): 0 every coroutine shown, 1 some could not be shown (one message
 * each on stderr, the others still shown), 2 nothing could be shown, 64 usage.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "elf-target-int.h"
#include "cli-int.h"
#include "inspect-int.h"

#ifndef CORO_VERSION
#define CORO_VERSION "unknown"
#endif

enum {
    EXIT_ALL = CLI_EXIT_ALL, EXIT_SOME = CLI_EXIT_SOME, EXIT_NONE = CLI_EXIT_NONE,
    EXIT_DEADLOCK = CLI_EXIT_DEADLOCK, EXIT_USAGE = CLI_EXIT_USAGE,
};

/* ps looks this deep for the innermost user frame. */
#define PS_MAX_FRAMES 32

static const char usage_text[] =
    "Usage: coroscope ps (-p PID | --core FILE [-e EXECUTABLE])\n"
    "       coroscope bt (-p PID | --core FILE [-e EXECUTABLE]) [ID...]\n"
    "                    [--json | --folded | --pprof FILE] [--group] [-n MAXFRAMES]\n"
    "                    [--no-inlines]\n"
    "       coroscope top -p PID [-b] [-n ITERATIONS] [-d SECONDS] [--stall-ms MS]\n"
    "                     [--long-wait S] [--never-entered S]\n"
    "       coroscope --help | --version\n";

static const char help_text[] =
    "List and backtrace the coroutines of a live process or a core file.\n"
    "\n"
    "Commands:\n"
    "  ps                 one line per coroutine: id, state, name, thread, wait, where\n"
    "                     (wait: what it waits for, for how long, who holds it; where:\n"
    "                     innermost frame outside coroscope and the system's libraries,\n"
    "                     preferring one with file:line); then one line per deadlock\n"
    "                     and per warning (long wait, never entered: docs/live.md)\n"
    "  bt [ID...]         backtraces of the given coroutines (default: all)\n"
    "  top                the coroutines over time, read without stopping the process:\n"
    "                     state, wait, time in it, switches/s, creation site, and the\n"
    "                     warnings stalled, long wait and deadlock (docs/live.md);\n"
    "                     -b plain tables (batch), -n refreshes, -d seconds between them\n"
    "\n"
    "Input:\n"
    "  -p, --pid PID      a live process: its threads are stopped while it is read\n"
    "                     (a few milliseconds), then continue\n"
    "      --core FILE    a core file (kernel or gdb gcore)\n"
    "  -e, --executable EXE  the program that made the core (default: from the core's\n"
    "                     notes); its build-id must match the core's\n"
    "Output (bt):\n"
    "      --json         one JSON document (docs/json-schema.md)\n"
    "      --folded       folded stacks for flamegraph.pl and speedscope\n"
    "      --pprof FILE   a gzip'd pprof profile (go tool pprof, Pyroscope, Parca): one\n"
    "                     sample per group of identical stacks, coroutines/count\n"
    "      --group        identical stacks (state, wait kind, frames) once, with a count\n"
    "                     and their ids, largest first; with --json: a \"groups\" array\n"
    "  -n, --max-frames N at most N frames per coroutine\n"
    "      --no-inlines   no separate frames for inlined calls\n"
    "Warnings (ps, bt; top too):\n"
    "      --long-wait S  waiting S seconds or more on an fd or a queue with no deadline\n"
    "                     (default 60)\n"
    "      --never-entered S  created S seconds ago or more and never entered (default 60)\n"
    "  -h, --help         this text;   -V, --version   the version\n"
    "\n"
    "Exit status: 0 every coroutine shown, 1 some could not be shown (a message each on\n"
    "stderr), 2 nothing could be shown, 3 (ps) all shown and a deadlock found, 64 usage\n"
    "error.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fputs("coroscope: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n", stderr);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

/* Untrusted bytes from the target go to a terminal: only printable ASCII passes. */
void cli_clean(char *s)
{
    for (; *s; s++) {
        if (!isprint((unsigned char)*s)) {
            *s = '?';
        }
    }
}

static const char *describe_co(const CoroInfo *co, char *buf, size_t len)
{
    char name[CORO_INFO_NAME_SIZE];
    snprintf(name, sizeof(name), "%s", co->name);
    cli_clean(name);
    if (name[0]) {
        snprintf(buf, len, "coroutine %" PRIu64 " \"%s\"", co->id, name);
    } else {
        snprintf(buf, len, "coroutine %" PRIu64, co->id);
    }
    return buf;
}

/* Frames that are not the user's: coroscope's own functions, and code in the system's
 * libraries (libc's nanosleep is not where a person looks for a hung coroutine). */
/*
 * coroscope's own frames: every frame in the module that holds the registry when that is
 * libcoroscope.so (its address range), and in a program linked statically the runtime's
 * functions by name — a fixed list, so that a user's own coro_read stays visible.
 */
static const char *own_module; /* basename of the registry's module when it is the shared
                                  library, else NULL */

static bool own_frame(Dwfl *dwfl, const CoroFrame *f)
{
    static const char *const own[] = {
        "coro_yield", "coro_enter", "coro__park", "wait_fd", "coro_wait_fd",
        "coro_wait_fd_until", "coro_sleep_ns", "coro_queue_wait", "coro_mutex_lock",
        "wait_granted_unlock", "coro_rwlock_rdlock", "coro_rwlock_wrlock", "rw_wait",
        "coro_rwlock_upgrade", "coro__switch", "coro__trampoline", "coro_dump",
        "coro_leak_check", "coro_leak_check_since",
    };
    Dwfl_Module *m = own_module && dwfl ? dwfl_addrmodule(dwfl, f->pc) : NULL;
    if (m) {
        const char *mainfile = NULL;
        const char *name = dwfl_module_info(m, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
        const char *path = mainfile ? mainfile : name;
        const char *base = path ? strrchr(path, '/') : NULL;
        base = base ? base + 1 : path;
        if (base && strcmp(base, own_module) == 0) {
            return true;
        }
    }
    for (size_t i = 0; f->function && i < sizeof(own) / sizeof(own[0]); i++) {
        if (strcmp(f->function, own[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool system_frame(Dwfl *dwfl, const CoroFrame *f)
{
    static const char *const dirs[] = { "/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/" };
    if (own_frame(dwfl, f)) {
        return true;
    }
    /* The file the module was loaded from (in a core, module names are only sonames). */
    const char *path = f->module;
    Dwfl_Module *m = dwfl ? dwfl_addrmodule(dwfl, f->pc) : NULL;
    if (m) {
        const char *mainfile = NULL;
        const char *name = dwfl_module_info(m, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
        path = mainfile ? mainfile : name;
    }
    for (size_t i = 0; path && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (strncmp(path, dirs[i], strlen(dirs[i])) == 0) {
            return true;
        }
    }
    return false;
}

/* own_frame() and system_frame() of f, remembered per (pc, function): 100,000 parked
 * coroutines share a few dozen distinct frames, and each answer costs module lookups and
 * ~20 string compares. Bit 0: own, bit 1: system. */
static unsigned frame_kind(Dwfl *dwfl, const CoroFrame *f)
{
    static struct {
        uint64_t pc;
        const char *function;
        unsigned kind;           /* 0: empty slot */
    } cache[1024];
    uint64_t h = (f->pc ^ (uint64_t)(uintptr_t)f->function) * 0x9e3779b97f4a7c15ull;
    size_t slot = (size_t)(h >> 54);
    if (cache[slot].kind && cache[slot].pc == f->pc && cache[slot].function == f->function) {
        return cache[slot].kind & 3;
    }
    unsigned kind = (own_frame(dwfl, f) ? 1u : 0u) | (system_frame(dwfl, f) ? 2u : 0u);
    cache[slot].pc = f->pc;
    cache[slot].function = f->function;
    cache[slot].kind = kind | 4u;
    return kind;
}

/* ps's "where": the innermost user frame with source information, else the innermost user
 * frame, else the innermost frame outside coroscope, else frame 0. */
static const CoroFrame *where_frame(Dwfl *dwfl, const CoroBacktrace *bt)
{
    const CoroFrame *user = NULL, *other = NULL;
    for (size_t i = 0; i < bt->nframes; i++) {
        const CoroFrame *f = &bt->frames[i];
        unsigned kind = frame_kind(dwfl, f);
        if (!(kind & 2)) {
            if (f->file && f->line > 0) {
                return f;
            }
            if (!user) {
                user = f;
            }
        } else if (!other && !(kind & 1)) {
            other = f;
        }
    }
    if (user) {
        return user;
    }
    if (other) {
        return other;
    }
    return bt->nframes ? &bt->frames[0] : NULL;
}

/* The WAIT column: "fd 9 readable, 3.2 s", "mutex 0x... held by coroutine 5, 12 ms", "-". */
/* Copies what the shared formatter wrote into o (never flushed) to buf, dropping `skip`. */
static void out_to_buf(const CoroOut *o, const char *skip, char *buf, size_t size)
{
    size_t k = skip && o->len >= strlen(skip) && memcmp(o->buf, skip, strlen(skip)) == 0 ?
               strlen(skip) : 0;
    size_t len = o->len - k < size - 1 ? o->len - k : size - 1;
    memcpy(buf, o->buf + k, len);
    buf[len] = '\0';
}

void cli_wait_cell(const CoroInfo *ci, int64_t now_ns, bool with_times, char *buf, size_t size)
{
    if (!coro__waiting(ci)) {
        snprintf(buf, size, "-");
        return;
    }
    static CoroOut o;
    coro__out_init(&o, -1);
    CoroInfo copy = *ci;
    if (!with_times) {
        copy.wait_since = 0;
        copy.wait_deadline = 0;
    }
    coro__out_wait_text(&o, &copy, now_ns);
    out_to_buf(&o, "waiting ", buf, size); /* the column says "waiting" */
}

void cli_duration_cell(int64_t ns, char *buf, size_t size)
{
    static CoroOut o;
    coro__out_init(&o, -1);
    coro__out_duration(&o, ns);
    out_to_buf(&o, NULL, buf, size);
}

/* Names in the deadlock lines, quoted and cleaned like the NAME column. */
bool cli_number(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        return false;
    }
    *out = v;
    return true;
}

void cli_quoted(CoroOut *o, const char *s)
{
    char name[CORO_INFO_NAME_SIZE];
    snprintf(name, sizeof(name), "%s", s);
    cli_clean(name);
    coro__out_str(o, "\"");
    coro__out_str(o, name);
    coro__out_str(o, "\"");
}

/* Appends s to *p, padded with spaces to width (printf's %-Ns), and one space. */
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

/* The WHERE text of frame f (NULL: "?"). */
static void where_text(const CoroFrame *f, char *where, size_t size)
{
    snprintf(where, size, "?");
    if (f && f->function) {
        const char *file = f->file ? strrchr(f->file, '/') : NULL;
        file = file ? file + 1 : f->file;
        if (file && f->line > 0) {
            snprintf(where, size, "%s (%s:%d)", f->function, file, f->line);
        } else {
            snprintf(where, size, "%s (%s)", f->function, f->module ? f->module : "?");
        }
    } else if (f) {
        snprintf(where, size, "0x%" PRIx64, f->pc);
    }
    cli_clean(where);
}

static void print_ps(Dwfl *dwfl, const CoroBacktrace *bts, size_t n, const CoroDumpMeta *meta)
{
    printf("%-8s %-9s %-20s %-8s %-48s %s\n", "ID", "STATE", "NAME", "THREAD", "WAIT", "WHERE");
    /* The WHERE of the previous line: neighbours usually share it (the symbolizer hands out
     * the same strings for the same frame), and 100,000 snprintf calls showed in profiles. */
    char where[512];
    CoroFrame last = { 0 };
    bool have_last = false, last_null = false;
    for (size_t i = 0; i < n; i++) {
        const CoroBacktrace *bt = &bts[i];
        char name[CORO_INFO_NAME_SIZE];
        snprintf(name, sizeof(name), "%s", bt->info->name[0] ? bt->info->name : "-");
        cli_clean(name);
        char tid[16] = "-";
        if (bt->info->tid > 0) {
            snprintf(tid, sizeof(tid), "%d", (int)bt->info->tid);
        }
        const CoroFrame *f =
            bt->info->state == CORO_STATE_CREATED ? &bt->entry : where_frame(dwfl, bt);
        bool same = have_last && (f ? !last_null && f->function == last.function &&
                                          f->file == last.file && f->line == last.line &&
                                          f->module == last.module &&
                                          (f->function || f->pc == last.pc)
                                    : last_null);
        if (!same) {
            where_text(f, where, sizeof(where));
            have_last = true;
            last_null = !f;
            if (f) {
                last = *f;
            }
        }
        char wait[160];
        cli_wait_cell(bt->info, meta->now_ns, true, wait, sizeof(wait));
        cli_clean(wait);
        /* "%-8" PRIu64 " %-9s %-20s %-8s %-48s %s\n", without printf's per-call cost. */
        char id[24], line[sizeof(id) + 16 + sizeof(name) + sizeof(tid) + sizeof(wait) +
                          sizeof(where) + 64];
        snprintf(id, sizeof(id), "%" PRIu64, bt->info->id);
        char *p = cell(line, id, 8);
        p = cell(p, coro__waiting(bt->info) ? "waiting" : coro__state_name(bt->info->state), 9);
        p = cell(p, name, 20);
        p = cell(p, tid, 8);
        p = cell(p, wait, 48);
        size_t wl = strlen(where);
        memcpy(p, where, wl);
        p[wl] = '\n';
        fwrite(line, 1, (size_t)(p + wl + 1 - line), stdout);
    }
    fflush(stdout);
    CoroOut o;
    coro__out_init(&o, STDOUT_FILENO);
    coro__out_deadlocks_text(&o, bts, meta, "", cli_quoted);
    coro__out_warnings_text(&o, bts, n, meta, "", cli_quoted);
    coro__out_flush(&o);
}

/*
 * A suspended coroutine's stack, from its saved rsp to the top, always holds the return
 * address the trampoline's call pushed. All zeros there means the target's memory is not the
 * coroutine's: gdb's gcore writes zeros for every 1 MiB chunk it could not read, and reading
 * stacks with MADV_GUARD_INSTALL guard pages through /proc/PID/mem fails (Linux >= 6.13).
 */
static bool stack_all_zero(CoroTarget *t, const CoroInfo *co, const CoroMachineRegs *regs)
{
    uint64_t top = co->stack_base + co->stack_size;
    uint64_t sp = regs->rsp;
    if (!(regs->valid & CORO_MREG_RSP) || sp < co->stack_base || sp >= top) {
        return false;
    }
    uint64_t buf[512];
    while (sp < top) {
        size_t n = top - sp < sizeof(buf) ? (size_t)(top - sp) : sizeof(buf);
        if (t->ops->read(t, sp, buf, n) < 0) {
            return false;
        }
        for (size_t i = 0; i < n / 8; i++) {
            if (buf[i]) {
                return false;
            }
        }
        sp += n;
    }
    return true;
}

typedef struct Args {
    const char *command;
    pid_t pid;
    const char *core;
    const char *exe;
    int format;
    size_t max_frames;
    bool no_inlines;
    bool group;           /* --group: grouped text, or JSON with "groups" */
    const char *pprof;    /* --pprof FILE: a gzip'd profile.proto there */
    CoroWarnLimits warn;  /* --long-wait, --never-entered */
    uint64_t *ids;
    size_t nids;
} Args;

static int parse_args(int argc, char **argv, Args *a)
{
    enum { OPT_CORE = 256, OPT_JSON, OPT_FOLDED, OPT_NO_INLINES, OPT_GROUP, OPT_PPROF,
           OPT_LONG_WAIT, OPT_NEVER_ENTERED };
    static const struct option longopts[] = {
        { "pid", required_argument, NULL, 'p' },
        { "core", required_argument, NULL, OPT_CORE },
        { "executable", required_argument, NULL, 'e' },
        { "json", no_argument, NULL, OPT_JSON },
        { "folded", no_argument, NULL, OPT_FOLDED },
        { "group", no_argument, NULL, OPT_GROUP },
        { "pprof", required_argument, NULL, OPT_PPROF },
        { "max-frames", required_argument, NULL, 'n' },
        { "no-inlines", no_argument, NULL, OPT_NO_INLINES },
        { "long-wait", required_argument, NULL, OPT_LONG_WAIT },
        { "never-entered", required_argument, NULL, OPT_NEVER_ENTERED },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false, folded = false, group = false;
    int c;
    opterr = 0;
    /* The leading ':' makes a missing value ':' (not '?'), so it can be said as such. */
    while ((c = getopt_long(argc, argv, ":p:e:n:hV", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'p': {
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v <= 0 || v > INT_MAX) {
                return usage_error("invalid process id '%s'", optarg);
            }
            if (a->pid) {
                return usage_error("-p given twice%s", "");
            }
            a->pid = (pid_t)v;
            break;
        }
        case OPT_CORE:
            a->core = optarg;
            break;
        case 'e':
            a->exe = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_FOLDED:
            folded = true;
            break;
        case OPT_GROUP:
            group = true;
            break;
        case OPT_PPROF:
            a->pprof = optarg;
            break;
        case 'n': {
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || *end || end == optarg || optarg[0] == '-' || v == 0 ||
                v > CORO_UNWIND_MAX_FRAMES) {
                fprintf(stderr, "coroscope: -n wants a number of frames from 1 to %d, not "
                        "'%s'\n%s", CORO_UNWIND_MAX_FRAMES, optarg, usage_text);
                return EXIT_USAGE;
            }
            a->max_frames = v;
            break;
        }
        case OPT_NO_INLINES:
            a->no_inlines = true;
            break;
        case OPT_LONG_WAIT:
        case OPT_NEVER_ENTERED: {
            double v;
            if (!cli_number(optarg, 0.001, 1e7, &v)) {
                return usage_error(c == OPT_LONG_WAIT ? "--long-wait wants seconds > 0, not '%s'"
                                                      : "--never-entered wants seconds > 0, not '%s'",
                                   optarg);
            }
            *(c == OPT_LONG_WAIT ? &a->warn.long_wait_ns : &a->warn.never_entered_ns) =
                (int64_t)(v * 1e9);
            break;
        }
        case 'h':
            fputs(usage_text, stdout);
            fputs("\n", stdout);
            fputs(help_text, stdout);
            exit(EXIT_ALL);
        case 'V':
            printf("coroscope %s\n", CORO_VERSION);
            exit(EXIT_ALL);
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) {
        return usage_error("no command given (ps or bt)%s", "");
    }
    a->command = argv[optind++];
    bool bt = strcmp(a->command, "bt") == 0;
    if (!bt && strcmp(a->command, "ps") != 0) {
        return usage_error("unknown command '%s' (ps or bt)", a->command);
    }
    if (!!a->pid + !!a->core != 1) {
        return usage_error("give exactly one target: -p PID or --core FILE%s", "");
    }
    if (a->exe && !a->core) {
        return usage_error("-e names the executable of a core file: it needs --core%s", "");
    }
    if (json && folded) {
        return usage_error("--json and --folded exclude each other%s", "");
    }
    if (!bt && (json || folded || group || a->max_frames)) {
        return usage_error("ps takes no output options (--json, --folded, --group, -n belong "
                           "to bt)%s", "");
    }
    if (a->pprof && (json || folded || group)) {
        return usage_error("--pprof FILE writes a profile: it takes no other output option%s",
                           "");
    }
    if (!bt && a->pprof) {
        return usage_error("--pprof belongs to bt%s", "");
    }
    if (group && folded) {
        return usage_error("--group and --folded exclude each other (folded output is "
                           "grouped already)%s", "");
    }
    a->format = json ? CORO_DUMP_JSON : folded ? CORO_DUMP_FOLDED : group ? CORO_DUMP_GROUPED :
                a->pprof ? CORO_DUMP_PPROF : CORO_DUMP_TEXT;
    a->group = group;
    if (!bt && optind < argc) {
        return usage_error("ps takes no coroutine ids ('%s')", argv[optind]);
    }
    a->nids = (size_t)(argc - optind);
    a->ids = calloc(a->nids ? a->nids : 1, sizeof(*a->ids));
    if (!a->ids) {
        fprintf(stderr, "coroscope: out of memory\n");
        return EXIT_NONE;
    }
    for (size_t i = 0; i < a->nids; i++) {
        const char *s = argv[optind + (int)i];
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || end == s || s[0] == '-' || v == 0) {
            return usage_error("invalid coroutine id '%s'", s);
        }
        a->ids[i] = v;
    }
    return -1;
}

/* What main() tells the collect driver. */
typedef struct CliCtx {
    const Args *a;
    CoroTarget *t;
    bool *found;                  /* per requested id: seen */
} CliCtx;

/* Only the requested ids (all when none); every copy of a repeated id counts as found. */
static bool cli_want(const CoroInfo *co, void *arg)
{
    CliCtx *c = arg;
    if (c->a->nids == 0) {
        return true;
    }
    bool hit = false;
    for (size_t i = 0; i < c->a->nids; i++) {
        if (c->a->ids[i] == co->id) {
            c->found[i] = true;
            hit = true;
        }
    }
    return hit;
}

static bool repeated(const uint64_t *ids, size_t i)
{
    for (size_t k = 0; k < i; k++) {
        if (ids[k] == ids[i]) {
            return true;
        }
    }
    return false;
}

/* Marks a stack that reads as zeros (gcore), and says on stderr why frames are missing. */
static int cli_after(const CoroRegistry *reg, const CoroInfo *co, const CoroMachineRegs *live,
                     CoroBacktrace *bt, void *arg)
{
    CliCtx *c = arg;
    CoroMachineRegs saved = coro__saved_regs(&co->regs);
    const CoroMachineRegs *sp_regs = live ? live : &saved;
    if (co->state != CORO_STATE_CREATED && !bt->error[0] && stack_all_zero(c->t, co, sp_regs)) {
        coro__backtrace_error(bt, "its stack reads as all zeros in this %s (gdb's gcore "
                              "cannot read coroutine stacks with guard pages: use a kernel "
                              "core)", c->a->pid ? "process" : "core");
    }
    if (strcmp(c->a->command, "ps") == 0 && co->state != CORO_STATE_CREATED) {
        /* ps shows one frame: keep only that one (100,000 coroutines, 8 frames each, would
         * otherwise hold ~50 MB of frames). where_frame() of the one kept gives it again. */
        const CoroFrame *f = where_frame(c->t->dwfl, bt);
        if (f) {
            bt->frames[0] = *f;
        }
        bt->nframes = f ? 1 : 0;
    }
    if (bt->error[0]) {
        char desc[128];
        cli_clean(bt->error);
        fprintf(stderr, "coroscope: %s of %s: %s\n", describe_co(co, desc, sizeof(desc)),
                coro__target_describe(c->t), bt->error);
    }
    return 0;
}

/* The partial-record rule's counts, said once each on stderr; returns how many failed. */
static size_t report_partial(const CoroCollection *col, const char *what)
{
    size_t nfailed = col->incomplete;
    if (col->truncated) {
        fprintf(stderr, "coroscope: the coroutine registry of %s is corrupt (a list is cyclic "
                "or longer than its count): showing the %zu coroutines read before that\n",
                what, col->reg.nlive);
        nfailed++;
    }
    if (col->unreadable) {
        fprintf(stderr, "coroscope: %zu coroutine records of %s could not be read\n",
                col->unreadable, what);
        nfailed += col->unreadable;
    }
    return nfailed;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "top") == 0) {
        return cli_top(argc - 1, argv + 1);
    }
    Args a = { 0 };
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) {
        return rc;
    }
    bool ps = strcmp(a.command, "ps") == 0;

    char err[3 * 4096]; /* room for two whole paths: messages never cut one */
    CoroTarget *t = NULL;
    struct timespec when;
    clock_gettime(CLOCK_REALTIME, &when);
    if (a.pid) {
        rc = coro__target_pid_open(a.pid, &t, err, sizeof(err));
    } else {
        struct stat st;
        if (stat(a.core, &st) == 0) {
            when = st.st_mtim; /* when the process died, near enough */
        }
        rc = coro__target_core_open(a.core, a.exe, &t, err, sizeof(err));
    }
    if (rc < 0) {
        fprintf(stderr, "coroscope: %s\n", err);
        free(a.ids);
        return EXIT_NONE;
    }
    const char *what = coro__target_describe(t);

    uint64_t abi_addr;
    const char *module;
    if (coro__target_find_registry(t, &abi_addr, &module, err, sizeof(err)) < 0) {
        fprintf(stderr, "coroscope: %s\n", err);
        t->ops->close(t);
        free(a.ids);
        return EXIT_NONE;
    }
    const char *mbase = strrchr(module, '/');
    mbase = mbase ? mbase + 1 : module;
    own_module = strncmp(mbase, "libcoroscope.so", 15) == 0 ? mbase : NULL;
    /* Frames in a module whose file is gone cannot be unwound: say so once, up front. */
    const char *missing[4];
    size_t nmissing = coro__target_missing_modules(t, missing, 4);
    for (size_t i = 0; i < nmissing && i < 4; i++) {
        fprintf(stderr, "coroscope: warning: %s: module %s is missing or is not the file that "
                "ran (build-id differs): frames in it cannot be unwound or named%s\n", what,
                missing[i], a.core && !a.exe ? " (pass the program with -e)" : "");
    }
    if (nmissing > 4) {
        fprintf(stderr, "coroscope: warning: %s: %zu more modules missing\n", what,
                nmissing - 4);
    }
    bool *found_ids = calloc(a.nids ? a.nids : 1, sizeof(*found_ids));
    if (!found_ids) {
        fprintf(stderr, "coroscope: out of memory\n");
        t->ops->close(t);
        free(a.ids);
        return EXIT_NONE;
    }
    t->error[0] = '\0';
    CliCtx ctx = { .a = &a, .t = t, .found = found_ids };
    CoroCollectOptions opts = {
        .bt = {
            .max_frames = ps ? PS_MAX_FRAMES : a.max_frames,
            .sym_flags = a.no_inlines ? CORO_SYM_NO_INLINES : 0,
        },
        .want = cli_want, .after = cli_after, .arg = &ctx,
        .prefetch_stacks = true, /* the process is stopped (or a core: no prefetch there) */
        .ids = a.nids ? a.ids : NULL, .nids = a.nids, /* bt ID...: store only those */
    };
    CoroCollection col;
    rc = coro__collect(t, abi_addr, &opts, &col);
    if (rc < 0) {
        fprintf(stderr, "coroscope: cannot read the coroutine registry of %s (in %s): %s\n",
                what, module, t->error[0] ? t->error : strerror(-rc));
        t->ops->close(t);
        free(a.ids);
        free(found_ids);
        return EXIT_NONE;
    }
    /* Everything is read: let a live process go before printing. */
    coro__target_resume(t);

    size_t nfailed = report_partial(&col, what);
    for (size_t i = 0; i < a.nids; i++) {
        if (!found_ids[i] && !repeated(a.ids, i)) {
            fprintf(stderr, "coroscope: no coroutine %" PRIu64 " in %s\n", a.ids[i], what);
            nfailed++;
        }
    }
    if (col.reg.nlive == 0 && nfailed == 0) {
        fprintf(stderr, "coroscope: %s has no live coroutines\n", what);
    }

    int status = EXIT_ALL;
    fflush(stdout);
    CoroDumpMeta meta = { .pid = (int)t->pid, .time = when };
    coro__collection_meta(&col, &meta);
    meta.warn = a.warn;
    if (ps) {
        print_ps(t->dwfl, col.bts, col.n, &meta);
    } else if (a.format == CORO_DUMP_TEXT && col.n == 0) {
        /* Nothing to print; the messages above say why. */
    } else {
        int out = STDOUT_FILENO;
        if (a.pprof) {
            out = open(a.pprof, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (out < 0) {
                fprintf(stderr, "coroscope: cannot write the profile %s: %s\n", a.pprof,
                        strerror(errno));
                nfailed++;
            }
        }
        rc = out < 0 ? 0 : coro__format_dump(out, a.format, &meta, col.bts, col.n,
                                             a.group ? CORO_FORMAT_GROUPS : 0, NULL);
        if (out >= 0 && out != STDOUT_FILENO && close(out) < 0 && rc == 0) {
            rc = -errno;
        }
        if (rc < 0 && rc != -EPIPE) {
            fprintf(stderr, "coroscope: cannot write the output: %s\n", strerror(-rc));
            nfailed++;
        }
    }
    if (fflush(stdout) != 0 && errno != EPIPE) {
        fprintf(stderr, "coroscope: cannot write the output: %s\n", strerror(errno));
    }
    if (nfailed) {
        status = col.n > col.incomplete ? EXIT_SOME : EXIT_NONE;
    } else if (ps && col.ndeadlocks) {
        status = EXIT_DEADLOCK;
    }
    coro__collection_free(&col);
    t->ops->close(t);
    free(a.ids);
    free(found_ids);
    return status;
}
