/*
 * The CLI's cells: untrusted text made printable, the WAIT and duration cells and quoted names
 * through inspect/'s shared formatters, numbers from the command line. Shared by ps, bt and
 * top (cli-int.h).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-int.h"
#include "inspect-int.h"

/* Untrusted bytes from the target go to a terminal: only printable ASCII passes. */
void cli_clean(char *s)
{
    for (; *s; s++) {
        if (!isprint((unsigned char)*s)) {
            *s = '?';
        }
    }
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
