/*
 * coroscope top's interactive interface (ncurses). The table refreshes every -d seconds, read
 * without stopping the process (top.c); keys:
 *   q            quit                      space, p   pause / resume the refreshes
 *   < >          sort by the column to the left / right (the heading shows which)
 *   r            reverse the order         /          filter: a name substring or a state
 *                                                     (running, waiting, ...); empty clears
 *   up down j k PgUp PgDn Home End         move the selection
 *   b, Enter     the selected coroutine's backtrace: `coroscope bt -p PID ID`, the one moment
 *                the process is stopped; q, Esc or b returns to the table
 * Durations, rates and warnings are top.c's; this file only draws and reads keys.
 */
#define _GNU_SOURCE
#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli-int.h"
#include "top-int.h"

enum { COL_ID, COL_NAME, COL_STATE, COL_WAIT, COL_FOR, COL_RATE, COL_THREAD, COL_SITE, NCOLS };
static const char *const col_names[NCOLS] = { "ID", "NAME", "STATE", "WAIT", "FOR", "SW/s",
                                               "THREAD", "CREATED AT" };

typedef struct Ui {
    int sort;                 /* COL_* */
    bool reverse;
    bool paused;
    char filter[64];
    uint64_t selected;        /* id of the selected row, 0 none */
    size_t top;               /* first row shown */
    char *header;             /* the refresh's header and warning lines */
    const TopRow **view;      /* rows after filter and sort */
    size_t nview;
} Ui;

static int cmp_col;
static bool cmp_rev;

static int cmp_num(double a, double b)
{
    return a < b ? -1 : a > b;
}

static int row_cmp(const void *pa, const void *pb)
{
    const TopRow *a = *(const TopRow *const *)pa, *b = *(const TopRow *const *)pb;
    int c = 0;
    switch (cmp_col) {
    case COL_NAME: c = strcmp(a->name, b->name); break;
    case COL_STATE: c = strcmp(a->state, b->state); break;
    case COL_WAIT: c = strcmp(a->wait, b->wait); break;
    case COL_FOR: c = cmp_num((double)a->for_ns, (double)b->for_ns); break;
    case COL_RATE: c = cmp_num(a->rate, b->rate); break;
    case COL_THREAD: c = cmp_num(a->tid, b->tid); break;
    case COL_SITE: c = strcmp(a->site, b->site); break;
    default: break;
    }
    if (c == 0) {
        c = cmp_num((double)a->id, (double)b->id);
    }
    return cmp_rev ? -c : c;
}

static bool matches(const TopRow *r, const char *filter)
{
    return !filter[0] || strstr(r->name, filter) || strcmp(r->state, filter) == 0;
}

static int build_view(Ui *ui, const TopState *st)
{
    const TopRow **v = realloc(ui->view, (st->nrows ? st->nrows : 1) * sizeof(*v));
    if (!v) {
        return -ENOMEM;
    }
    ui->view = v;
    ui->nview = 0;
    for (size_t i = 0; i < st->nrows; i++) {
        if (matches(&st->rows[i], ui->filter)) {
            v[ui->nview++] = &st->rows[i];
        }
    }
    cmp_col = ui->sort;
    cmp_rev = ui->reverse;
    qsort(v, ui->nview, sizeof(*v), row_cmp);
    return 0;
}

static size_t selected_index(const Ui *ui)
{
    for (size_t i = 0; i < ui->nview; i++) {
        if (ui->view[i]->id == ui->selected) {
            return i;
        }
    }
    return 0;
}

static void draw(Ui *ui, const TopArgs *a)
{
    erase();
    int rows = LINES, cols = COLS, y = 0;
    for (const char *p = ui->header; p && *p && y < rows - 3;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (strncmp(p, "warning:", 8) == 0) {
            attron(A_BOLD);
        }
        mvaddnstr(y++, 0, p, (int)(len < (size_t)cols ? len : (size_t)cols));
        attroff(A_BOLD);
        p = nl ? nl + 1 : p + len;
    }
    char status[256];
    snprintf(status, sizeof(status), "sort: %s %s%s%s%s  |  q quit  space pause  < > sort  r reverse"
             "  / filter  b backtrace", col_names[ui->sort], ui->reverse ? "(descending)" : "",
             ui->filter[0] ? "  filter: " : "", ui->filter, ui->paused ? "  [paused]" : "");
    attron(A_DIM);
    mvaddnstr(y++, 0, status, cols);
    attroff(A_DIM);
    char line[512];
    top_row_text(NULL, line, sizeof(line));
    attron(A_REVERSE);
    mvaddnstr(y, 0, line, cols);
    for (int x = (int)strlen(line); x < cols; x++) {
        mvaddch(y, x, ' ');
    }
    attroff(A_REVERSE);
    y++;
    int room = rows - y;
    size_t sel = selected_index(ui);
    if (ui->nview && room > 0) {
        if (sel < ui->top) {
            ui->top = sel;
        } else if (sel >= ui->top + (size_t)room) {
            ui->top = sel - (size_t)room + 1;
        }
        if (ui->top >= ui->nview) {
            ui->top = 0;
        }
    }
    for (size_t i = ui->top; i < ui->nview && y < rows; i++, y++) {
        top_row_text(ui->view[i], line, sizeof(line));
        if (i == sel) {
            attron(A_BOLD | A_REVERSE);
        }
        mvaddnstr(y, 0, line, cols);
        if (i == sel) {
            attroff(A_BOLD | A_REVERSE);
        }
    }
    if (!ui->nview) {
        mvaddnstr(y, 0, ui->filter[0] ? "(no coroutine matches the filter)" : "(no coroutines)",
                  cols);
    }
    (void)a;
    refresh();
}

/* Reads a line at the bottom of the screen; false when cancelled (Esc). */
static bool prompt(const char *label, char *buf, size_t size)
{
    char tmp[64] = "";
    size_t n = 0;
    for (;;) {
        move(LINES - 1, 0);
        clrtoeol();
        attron(A_BOLD);
        addstr(label);
        attroff(A_BOLD);
        addstr(tmp);
        refresh();
        timeout(-1);
        int c = getch();
        if (c == 27) {
            return false;
        }
        if (c == '\n' || c == KEY_ENTER) {
            snprintf(buf, size, "%s", tmp);
            return true;
        }
        if ((c == KEY_BACKSPACE || c == 127 || c == 8) && n) {
            tmp[--n] = '\0';
        } else if (c >= 0x20 && c < 0x7f && n + 1 < sizeof(tmp)) {
            tmp[n++] = (char)c;
            tmp[n] = '\0';
        }
    }
}

/* `coroscope bt -p PID ID` (this very program), its output and errors in one buffer. */
static char *run_bt(pid_t pid, uint64_t id)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        return strdup("coroscope: cannot make a pipe for the backtrace\n");
    }
    char spid[24], sid[24];
    snprintf(spid, sizeof(spid), "%d", (int)pid);
    snprintf(sid, sizeof(sid), "%" PRIu64, id);
    pid_t child = fork();
    if (child == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        execl("/proc/self/exe", "coroscope", "bt", "-p", spid, sid, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 65536, len = 0;
    char *out = malloc(cap);
    for (ssize_t n; out && (n = read(fds[0], out + len, cap - len - 1)) != 0;) {
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        len += (size_t)n;
        if (cap - len < 4096 && cap < (16u << 20)) {
            char *grown = realloc(out, cap * 2);
            if (!grown) {
                break;
            }
            out = grown;
            cap *= 2;
        } else if (cap - len <= 1) {
            break; /* 16 MiB is enough of a backtrace */
        }
    }
    close(fds[0]);
    if (child > 0) {
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    if (out) {
        out[len] = '\0';
    }
    return out ? out : strdup("coroscope: out of memory\n");
}

/* A pager over text until q, Esc or b. */
static void show_text(const char *text)
{
    size_t first = 0;
    for (;;) {
        erase();
        size_t line = 0;
        int y = 0;
        for (const char *p = text; *p && y < LINES - 1;) {
            const char *nl = strchr(p, '\n');
            size_t len = nl ? (size_t)(nl - p) : strlen(p);
            if (line++ >= first) {
                char buf[512];
                snprintf(buf, sizeof(buf), "%.*s", (int)(len < 511 ? len : 511), p);
                cli_clean(buf);
                mvaddnstr(y++, 0, buf, COLS);
            }
            p = nl ? nl + 1 : p + len;
        }
        attron(A_DIM);
        mvaddnstr(LINES - 1, 0, "backtrace: q, Esc or b back to the table; up/down scroll", COLS);
        attroff(A_DIM);
        refresh();
        timeout(-1);
        int c = getch();
        if (c == 'q' || c == 27 || c == 'b') {
            return;
        }
        if ((c == KEY_DOWN || c == 'j') && line > first + 1) {
            first++;
        } else if ((c == KEY_UP || c == 'k') && first) {
            first--;
        }
    }
}

static char *read_all(FILE *f)
{
    fflush(f);
    long size = ftell(f);
    char *buf = malloc(size > 0 ? (size_t)size + 1 : 1);
    if (!buf) {
        return NULL;
    }
    ssize_t got = size > 0 ? pread(fileno(f), buf, (size_t)size, 0) : 0;
    buf[got > 0 ? got : 0] = '\0';
    return buf;
}

static int sample(CoroTarget *t, uint64_t abi_addr, CoroSymbolizer *s, const TopArgs *a,
                  TopState *st, long iteration, Ui *ui)
{
    int fd = memfd_create("coroscope-top", MFD_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;
    if (!f) {
        if (fd >= 0) {
            close(fd);
        }
        return -errno;
    }
    t->error[0] = '\0';
    int rc = top_sample(t, abi_addr, s, a, st, iteration, f);
    if (rc == 0) {
        free(ui->header);
        ui->header = read_all(f);
        rc = build_view(ui, st);
    }
    fclose(f);
    return rc;
}

static void move_selection(Ui *ui, long delta)
{
    if (!ui->nview) {
        return;
    }
    long i = (long)selected_index(ui) + delta;
    i = i < 0 ? 0 : i >= (long)ui->nview ? (long)ui->nview - 1 : i;
    ui->selected = ui->view[i]->id;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int top_ui_run(CoroTarget *t, uint64_t abi_addr, CoroSymbolizer *s, const TopArgs *a)
{
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "coroscope: top: not a terminal; use -b for plain tables (batch)\n");
        return CLI_EXIT_USAGE;
    }
    if (!initscr()) {
        fprintf(stderr, "coroscope: top: cannot start the terminal interface (TERM=%s)\n",
                getenv("TERM") ? getenv("TERM") : "");
        return CLI_EXIT_NONE;
    }
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25);
    Ui ui = { .sort = COL_ID };
    TopState st = { 0 };
    int status = CLI_EXIT_ALL, rc = 0;
    long done = 0;
    int64_t last = 0;
    char err[512] = "";
    for (;;) {
        int64_t now = mono_ms();
        if (!ui.paused && (!last || now - last >= (int64_t)(a->delay * 1000))) {
            if (a->iterations && done >= a->iterations) {
                break;
            }
            rc = sample(t, abi_addr, s, a, &st, done, &ui);
            if (rc < 0) {
                snprintf(err, sizeof(err), "coroscope: cannot read the coroutine registry of "
                         "process %d: %s", (int)a->pid, t->error[0] ? t->error : strerror(-rc));
                status = done ? CLI_EXIT_SOME : CLI_EXIT_NONE;
                break;
            }
            if (!ui.selected && ui.nview) {
                ui.selected = ui.view[0]->id;
            }
            done++;
            last = now;
        }
        draw(&ui, a);
        timeout(100);
        int c = getch();
        if (c == 'q' || c == 'Q') {
            break;
        } else if (c == ' ' || c == 'p') {
            ui.paused = !ui.paused;
        } else if (c == '<' || c == '>') {
            ui.sort = (ui.sort + (c == '<' ? NCOLS - 1 : 1)) % NCOLS;
            build_view(&ui, &st);
        } else if (c == 'r') {
            ui.reverse = !ui.reverse;
            build_view(&ui, &st);
        } else if (c == '/') {
            char f[64];
            if (prompt("filter (name or state, empty clears): ", f, sizeof(f))) {
                snprintf(ui.filter, sizeof(ui.filter), "%s", f);
                ui.top = 0;
                build_view(&ui, &st);
            }
        } else if (c == KEY_DOWN || c == 'j') {
            move_selection(&ui, 1);
        } else if (c == KEY_UP || c == 'k') {
            move_selection(&ui, -1);
        } else if (c == KEY_NPAGE) {
            move_selection(&ui, LINES / 2);
        } else if (c == KEY_PPAGE) {
            move_selection(&ui, -(LINES / 2));
        } else if (c == KEY_HOME) {
            move_selection(&ui, -(long)ui.nview);
        } else if (c == KEY_END) {
            move_selection(&ui, (long)ui.nview);
        } else if ((c == 'b' || c == '\n' || c == KEY_ENTER) && ui.nview) {
            uint64_t id = ui.view[selected_index(&ui)]->id;
            move(LINES - 1, 0);
            clrtoeol();
            printw("stopping process %d for the backtrace of coroutine %" PRIu64 "...",
                   (int)a->pid, id);
            refresh();
            char *text = run_bt(a->pid, id);
            show_text(text ? text : "");
            free(text);
        }
    }
    endwin();
    if (err[0]) {
        fprintf(stderr, "%s\n", err);
    }
    free(ui.header);
    free(ui.view);
    free(st.rows);
    free(st.seen);
    return status;
}
