/*
 * coroscope top, shared by the sampler and batch mode (top.c) and the interactive curses
 * interface (top-ui.c).
 */
#ifndef COROSCOPE_TOP_INT_H
#define COROSCOPE_TOP_INT_H

#include <stdio.h>
#include <sys/types.h>

#include "inspect-int.h"

typedef struct TopArgs {
    pid_t pid;
    bool batch;
    long iterations;      /* 0: until interrupted */
    double delay;         /* seconds between refreshes */
    int64_t stall_ns;
    CoroWarnLimits warn;
} TopArgs;

/* What the previous refresh saw of a coroutine, by id. */
typedef struct Seen {
    uint64_t id, switches;
    uint32_t state, wait_kind;
    int64_t state_since;  /* when this state was first seen; 0 unknown */
} Seen;

/* One row of the table, cells ready to print (cleaned), and the values to sort by. */
typedef struct TopRow {
    uint64_t id;
    char name[CORO_INFO_NAME_SIZE];
    const char *state;    /* "waiting" for a coroutine in a coroscope wait */
    char wait[64];
    int64_t for_ns;       /* -1 unknown */
    char dur[32];
    double rate;          /* switches per second; -1 unknown (first refresh) */
    char rate_s[16];
    int tid;
    char site[160];       /* creation site */
} TopRow;

typedef struct TopState {
    Seen *seen;
    size_t nseen;
    int64_t at;           /* CLOCK_MONOTONIC of that refresh */
    uint64_t created, terminated;
    TopRow *rows;         /* the last refresh's table, in id order */
    size_t nrows;
} TopState;

/* One refresh: reads the target without stopping it, compares with the previous refresh,
 * writes the header lines and the warnings to out and leaves the table in st->rows.
 * 0, or -errno (t->error says). */
int top_sample(CoroTarget *t, uint64_t abi_addr, CoroSymbolizer *s, const TopArgs *a,
               TopState *st, long iteration, FILE *out);
/* A row as text (NULL: the column headings). */
void top_row_text(const TopRow *r, char *buf, size_t size);

/* The interactive interface (top-ui.c): the exit status. */
int top_ui_run(CoroTarget *t, uint64_t abi_addr, CoroSymbolizer *s, const TopArgs *a);

#endif /* COROSCOPE_TOP_INT_H */
