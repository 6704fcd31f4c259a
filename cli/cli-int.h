/*
 * What the CLI's files share: exit statuses (coroscope --help and docs/cli.md list them), the
 * helpers that make untrusted text printable, and the `top` command (top.c).
 */
#ifndef COROSCOPE_CLI_INT_H
#define COROSCOPE_CLI_INT_H

#include "inspect-int.h"

enum {
    CLI_EXIT_ALL = 0,      /* everything shown */
    CLI_EXIT_SOME = 1,     /* some could not be shown (a line each on stderr) */
    CLI_EXIT_NONE = 2,     /* nothing could be shown */
    CLI_EXIT_DEADLOCK = 3, /* ps: all shown, and a deadlock found */
    CLI_EXIT_USAGE = 64,
};

/* The exit-status table (coroscope.c): one rule for every command, printed by --help. */
extern const char cli_exit_status_text[];

/* Replaces control characters (and other bytes a terminal would act on) in place. */
void cli_clean(char *s);
/* A name in quotes, cleaned: for the deadlock lines. */
void cli_quoted(CoroOut *o, const char *s);

/* The WAIT cell ("fd 9 readable, 3.2 s", "-"; without the times when with_times is false)
 * and a duration cell ("3.2 s"), through the shared formatter (format-wait.c). */
void cli_wait_cell(const CoroInfo *ci, int64_t now_ns, bool with_times, char *buf, size_t size);
void cli_duration_cell(int64_t ns, char *buf, size_t size);
/* A number in [min, max] (strtod syntax, nothing after it). */
bool cli_number(const char *s, double min, double max, double *out);

/* ps's table, deadlock and warning lines on stdout (ps.c). */
void cli_print_ps(const CoroBacktrace *bts, size_t n, const CoroDumpMeta *meta);

/* coroscope top ARGS... (argv[0] is "top"): the exit status. */
int cli_top(int argc, char **argv);

#endif /* COROSCOPE_CLI_INT_H */
