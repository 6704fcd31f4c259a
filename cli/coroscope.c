/*
 * coroscope: eu-stack for coroutines. Lists (ps) and backtraces (bt) the coroutines of a live
 * process or of a core file, through the target's coroutine registry (debug ABI); `top`
 * (top.c) follows them over time.
 *
 * This file is argument parsing and output choice only: targets live in inspect/target-*.c,
 * registry reading, unwinding, symbolizing, the frame rules (ps's WHERE) and the output
 * formats in inspect/ (the same code as the in-process dump, so both print the same thing for
 * the same stack).
 *
 * Exit status: one rule for every command, the table of --help (cli_exit_status_text) and
 * docs/cli.md: 0 everything asked for was shown; 1 the target was read but something asked
 * for is not shown or not whole (one message each on stderr, the rest still shown); 2 the
 * target could not be read at all; 3 ps found a deadlock; 64 usage.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
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
    "                    [--no-inlines] [--long-wait S] [--never-entered S]\n"
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
    "  bt [ID...]         backtraces of the given coroutines (default: all; an ID\n"
    "                     given twice is shown once)\n"
    "  top                the coroutines over time, read without stopping the process:\n"
    "                     state, wait, time in it, switches/s, creation site, and the\n"
    "                     warnings stalled, long wait, never entered and deadlock\n"
    "                     (docs/live.md); keys: q quit, space pause, < > sort, r reverse,\n"
    "                     / filter, b backtrace of the selected row; -b plain tables\n"
    "                     (batch), -n refreshes, -d seconds between them\n"
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
    "  -n, --max-frames N at most N frames per coroutine (1..256)\n"
    "      --no-inlines   no separate frames for inlined calls\n"
    "Warnings (ps, bt; top too):\n"
    "      --long-wait S  waiting S seconds or more on an fd or a queue with no deadline\n"
    "                     (default 60)\n"
    "      --never-entered S  created S seconds ago or more and never entered (default 60)\n"
    "  -h, --help         this text;   -V, --version   the version\n"
    "\n";

/* One table for every command: coroscope --help and coroscope top --help print it. */
const char cli_exit_status_text[] =
    "Exit status (ps, bt and top alike):\n"
    "  0   everything asked for was shown (also: a process with no live coroutine)\n"
    "  1   the target was read, but something asked for is not shown or not whole:\n"
    "      an ID that does not exist (even when it is the only one), a coroutine that\n"
    "      cannot be unwound, a registry found corrupt part way, output that cannot be\n"
    "      written, a top refresh after the first that cannot read the registry; one\n"
    "      line on stderr for each, the rest is shown\n"
    "  2   the target cannot be read: it cannot be opened or attached, or has no\n"
    "      readable coroutine registry (one line on stderr)\n"
    "  3   ps only: everything was shown and a deadlock was found (a deadlock: line\n"
    "      after the table names each cycle); 1 and 2 take precedence\n"
    "  64  usage error (one line on stderr, then the usage)\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("coroscope: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
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

/* ------------------------------------------------------------------ arguments */

typedef struct Args {
    const char *command;
    bool ps;              /* the command is ps (else bt) */
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

/* The output options as given, before they are checked against each other. */
typedef struct OutputFlags {
    bool json, folded, group;
} OutputFlags;

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

static int pid_option(const char *arg, Args *a)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || *end || end == arg || v <= 0 || v > INT_MAX) {
        return usage_error("invalid process id '%s'", arg);
    }
    if (a->pid) {
        return usage_error("-p given twice");
    }
    a->pid = (pid_t)v;
    return -1;
}

static int max_frames_option(const char *arg, Args *a)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (errno || *end || end == arg || arg[0] == '-' || v == 0 || v > CORO_UNWIND_MAX_FRAMES) {
        return usage_error("-n wants a number of frames from 1 to %d, not '%s'",
                           CORO_UNWIND_MAX_FRAMES, arg);
    }
    a->max_frames = v;
    return -1;
}

/* --long-wait S, --never-entered S: a warning's threshold in seconds. */
static int threshold_option(int c, const char *arg, Args *a)
{
    double v;
    const char *name = c == OPT_LONG_WAIT ? "--long-wait" : "--never-entered";
    if (!cli_number(arg, 0.001, 1e7, &v)) {
        return usage_error("%s wants seconds > 0, not '%s'", name, arg);
    }
    *(c == OPT_LONG_WAIT ? &a->warn.long_wait_ns : &a->warn.never_entered_ns) =
        (int64_t)(v * 1e9);
    return -1;
}

/* A file option given once: a second --core or -e would silently replace the first. */
static int file_option(const char **slot, const char *arg, const char *name)
{
    if (*slot) {
        return usage_error("%s given twice", name);
    }
    *slot = arg;
    return -1;
}

/* getopt's complaint (opterr is 0, the optstring starts with ':'): a value missing, a value
 * given to an option that takes none (--json=1), an option unknown. */
static int option_error(int c, char **argv)
{
    const char *arg = argv[optind - 1];
    if (c == ':') {
        return usage_error("option %s needs a value", arg);
    }
    /* getopt_long leaves optopt at the option's value for a known long option given a
     * value, at 0 for an unknown long option. */
    bool long_opt = arg[0] == '-' && arg[1] == '-';
    if (long_opt && optopt && strchr(arg, '=')) {
        return usage_error("option %.*s takes no value", (int)strcspn(arg, "="), arg);
    }
    if (!long_opt && optopt) {
        return usage_error("unknown option '-%c'", optopt);
    }
    return usage_error("unknown option '%s'", arg);
}

/* One option (getopt's c and optarg) into a and f; -1 to go on, else the exit status (--help
 * and --version end here with 0). */
static int parse_option(int c, char **argv, Args *a, OutputFlags *f)
{
    switch (c) {
    case 'p':
        return pid_option(optarg, a);
    case OPT_CORE:
        return file_option(&a->core, optarg, "--core");
    case 'e':
        return file_option(&a->exe, optarg, "-e");
    case OPT_JSON:
        f->json = true;
        return -1;
    case OPT_FOLDED:
        f->folded = true;
        return -1;
    case OPT_GROUP:
        f->group = true;
        return -1;
    case OPT_PPROF:
        return file_option(&a->pprof, optarg, "--pprof");
    case 'n':
        return max_frames_option(optarg, a);
    case OPT_NO_INLINES:
        a->no_inlines = true;
        return -1;
    case OPT_LONG_WAIT:
    case OPT_NEVER_ENTERED:
        return threshold_option(c, optarg, a);
    case 'h':
        fputs(usage_text, stdout);
        fputs("\n", stdout);
        fputs(help_text, stdout);
        fputs(cli_exit_status_text, stdout);
        return EXIT_ALL;
    case 'V':
        printf("coroscope %s\n", CORO_VERSION);
        return EXIT_ALL;
    default:
        return option_error(c, argv);
    }
}

/* The command, the target and the output options together; -1 to go on. */
static int check_args(Args *a, const OutputFlags *f)
{
    if (strcmp(a->command, "top") == 0) {
        return usage_error("top comes first, its options after it (coroscope top -p PID)");
    }
    if (!a->ps && strcmp(a->command, "bt") != 0) {
        return usage_error("unknown command '%s' (ps, bt or top)", a->command);
    }
    if (!!a->pid + !!a->core != 1) {
        return usage_error("give exactly one target: -p PID or --core FILE");
    }
    if (a->exe && !a->core) {
        return usage_error("-e names the executable of a core file: it needs --core");
    }
    if (f->json && f->folded) {
        return usage_error("--json and --folded exclude each other");
    }
    if (a->ps && (f->json || f->folded || f->group || a->max_frames)) {
        return usage_error("ps takes no output options (--json, --folded, --group, -n belong "
                           "to bt)");
    }
    if (a->pprof && (f->json || f->folded || f->group)) {
        return usage_error("--pprof FILE writes a profile: it takes no other output option");
    }
    if (a->ps && a->pprof) {
        return usage_error("--pprof belongs to bt");
    }
    if (f->group && f->folded) {
        return usage_error("--group and --folded exclude each other (folded output is "
                           "grouped already)");
    }
    a->format = f->json ? CORO_DUMP_JSON : f->folded ? CORO_DUMP_FOLDED :
                f->group ? CORO_DUMP_GROUPED : a->pprof ? CORO_DUMP_PPROF : CORO_DUMP_TEXT;
    a->group = f->group;
    return -1;
}

/* The coroutine ids after bt, in the order given (a repeated one is found by cli_want and
 * reported once by report_missing_ids). */
static int parse_ids(char **ids, size_t n, Args *a)
{
    a->ids = calloc(n ? n : 1, sizeof(*a->ids));
    if (!a->ids) {
        fprintf(stderr, "coroscope: out of memory\n");
        return EXIT_NONE;
    }
    a->nids = n;
    for (size_t i = 0; i < n; i++) {
        const char *s = ids[i];
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

/* Returns -1 to go on, else the exit status (--help and --version too). */
static int parse_args(int argc, char **argv, Args *a)
{
    OutputFlags f = { 0 };
    int c, rc;
    opterr = 0;
    /* The leading ':' makes a missing value ':' (not '?'), so it can be said as such. */
    while ((c = getopt_long(argc, argv, ":p:e:n:hV", longopts, NULL)) != -1) {
        if ((rc = parse_option(c, argv, a, &f)) >= 0) {
            return rc;
        }
    }
    if (optind >= argc) {
        return usage_error("no command given (ps, bt or top)");
    }
    a->command = argv[optind++];
    a->ps = strcmp(a->command, "ps") == 0;
    if ((rc = check_args(a, &f)) >= 0) {
        return rc;
    }
    if (a->ps && optind < argc) {
        return usage_error("ps takes no coroutine ids ('%s')", argv[optind]);
    }
    return parse_ids(argv + optind, (size_t)(argc - optind), a);
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
    if (c->a->ps && co->state != CORO_STATE_CREATED) {
        /* ps shows one frame: keep only that one (100,000 coroutines, 8 frames each, would
         * otherwise hold ~50 MB of frames). coro__backtrace_where() of the one kept gives it
         * again: a user or system frame stays one alone, and a lone frame is its own answer. */
        const CoroFrame *f = coro__backtrace_where(bt);
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

/* ------------------------------------------------------------------ one run */

/* One run of ps or bt: the target, where its registry is, and what was read from it. */
typedef struct Run {
    const Args *a;
    CoroTarget *t;
    const char *what;             /* "process 42", "core file /tmp/core" */
    uint64_t abi_addr;            /* the registry's debug descriptor */
    const char *module;           /* the module that holds it */
    struct timespec when;         /* when the target was read (a core: its mtime) */
    bool *found;                  /* per requested id: seen */
    CoroCollection col;
    bool collected;
    size_t nfailed;               /* asked for, not shown or not whole: a line each said */
} Run;

/* Opens the pid or the core and finds its registry; -1, or EXIT_NONE with the line said. */
static int open_target(Run *r)
{
    const Args *a = r->a;
    char err[3 * 4096]; /* room for two whole paths: messages never cut one */
    int rc;
    clock_gettime(CLOCK_REALTIME, &r->when);
    if (a->pid) {
        rc = coro__target_pid_open(a->pid, &r->t, err, sizeof(err));
    } else {
        struct stat st;
        if (stat(a->core, &st) == 0) {
            r->when = st.st_mtim; /* when the process died, near enough */
        }
        rc = coro__target_core_open(a->core, a->exe, &r->t, err, sizeof(err));
    }
    if (rc == 0) {
        r->what = coro__target_describe(r->t);
        rc = coro__target_find_registry(r->t, &r->abi_addr, &r->module, err, sizeof(err));
    }
    if (rc < 0) {
        fprintf(stderr, "coroscope: %s\n", err);
        return EXIT_NONE;
    }
    return -1;
}

/* Frames in a module whose file is gone cannot be unwound: said once, up front. */
static void warn_missing_modules(const Run *r)
{
    const char *missing[4];
    size_t nmissing = coro__target_missing_modules(r->t, missing, 4);
    for (size_t i = 0; i < nmissing && i < 4; i++) {
        fprintf(stderr, "coroscope: warning: %s: module %s is missing or is not the file that "
                "ran (build-id differs): frames in it cannot be unwound or named%s\n", r->what,
                missing[i], r->a->core && !r->a->exe ? " (pass the program with -e)" : "");
    }
    if (nmissing > 4) {
        fprintf(stderr, "coroscope: warning: %s: %zu more modules missing\n", r->what,
                nmissing - 4);
    }
}

/* Reads the registry and unwinds the coroutines asked for, then lets a live process go;
 * -1, or EXIT_NONE with the line said. */
static int read_coroutines(Run *r)
{
    const Args *a = r->a;
    r->found = calloc(a->nids ? a->nids : 1, sizeof(*r->found));
    if (!r->found) {
        fprintf(stderr, "coroscope: out of memory\n");
        return EXIT_NONE;
    }
    r->t->error[0] = '\0';
    CliCtx ctx = { .a = a, .t = r->t, .found = r->found };
    CoroCollectOptions opts = {
        .bt = {
            .max_frames = a->ps ? PS_MAX_FRAMES : a->max_frames,
            .sym_flags = a->no_inlines ? CORO_SYM_NO_INLINES : 0,
        },
        .want = cli_want, .after = cli_after, .arg = &ctx,
        .prefetch_stacks = true, /* the process is stopped (or a core: no prefetch there) */
        .ids = a->nids ? a->ids : NULL, .nids = a->nids, /* bt ID...: store only those */
    };
    int rc = coro__collect(r->t, r->abi_addr, &opts, &r->col);
    if (rc < 0) {
        fprintf(stderr, "coroscope: cannot read the coroutine registry of %s (in %s): %s\n",
                r->what, r->module, r->t->error[0] ? r->t->error : strerror(-rc));
        return EXIT_NONE;
    }
    r->collected = true;
    /* Everything is read: let a live process go before printing. */
    coro__target_resume(r->t);
    return -1;
}

/* An id asked for that the registry does not hold: a line each (once for a repeated id). */
static void report_missing_ids(Run *r)
{
    const Args *a = r->a;
    for (size_t i = 0; i < a->nids; i++) {
        if (!r->found[i] && !repeated(a->ids, i)) {
            fprintf(stderr, "coroscope: no coroutine %" PRIu64 " in %s\n", a->ids[i], r->what);
            r->nfailed++;
        }
    }
}

/* bt's output: a dump format on stdout, or the profile in --pprof's file. */
static void print_bt(Run *r, const CoroDumpMeta *meta)
{
    const Args *a = r->a;
    if (a->format == CORO_DUMP_TEXT && r->col.n == 0) {
        return; /* nothing to print; the messages on stderr say why */
    }
    int out = STDOUT_FILENO;
    if (a->pprof) {
        out = open(a->pprof, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out < 0) {
            fprintf(stderr, "coroscope: cannot write the profile %s: %s\n", a->pprof,
                    strerror(errno));
            r->nfailed++;
            return;
        }
    }
    int rc = coro__format_dump(out, a->format, meta, r->col.bts, r->col.n,
                               a->group ? CORO_FORMAT_GROUPS : 0, NULL);
    if (out != STDOUT_FILENO && close(out) < 0 && rc == 0) {
        rc = -errno;
    }
    if (rc < 0 && rc != -EPIPE) {
        fprintf(stderr, "coroscope: cannot write the output: %s\n", strerror(-rc));
        r->nfailed++;
    }
}

/* Everything read is shown; the exit status of the table (cli_exit_status_text). */
static int show(Run *r)
{
    r->nfailed += report_partial(&r->col, r->what);
    report_missing_ids(r);
    if (r->col.reg.nlive == 0 && r->nfailed == 0) {
        fprintf(stderr, "coroscope: %s has no live coroutines\n", r->what);
    }
    fflush(stdout);
    CoroDumpMeta meta = { .pid = (int)r->t->pid, .time = r->when };
    coro__collection_meta(&r->col, &meta);
    meta.warn = r->a->warn;
    if (r->a->ps) {
        cli_print_ps(r->col.bts, r->col.n, &meta);
    } else {
        print_bt(r, &meta);
    }
    if (fflush(stdout) != 0 && errno != EPIPE) {
        fprintf(stderr, "coroscope: cannot write the output: %s\n", strerror(errno));
        r->nfailed++;
    }
    /* The target was read: whatever is missing, that is 1, never 2 (not even when the one
     * id asked for does not exist, or no coroutine could be unwound). */
    if (r->nfailed) {
        return EXIT_SOME;
    }
    return r->a->ps && r->col.ndeadlocks ? EXIT_DEADLOCK : EXIT_ALL;
}

static void run_fini(Run *r)
{
    if (r->collected) {
        coro__collection_free(&r->col);
    }
    if (r->t) {
        r->t->ops->close(r->t);
    }
    free(r->found);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "top") == 0) {
        return cli_top(argc - 1, argv + 1);
    }
    Args a = { 0 };
    int rc = parse_args(argc, argv, &a);
    if (rc < 0) {
        Run r = { .a = &a };
        if ((rc = open_target(&r)) < 0) {
            warn_missing_modules(&r);
            if ((rc = read_coroutines(&r)) < 0) {
                rc = show(&r);
            }
        }
        run_fini(&r);
    }
    free(a.ids);
    return rc;
}
