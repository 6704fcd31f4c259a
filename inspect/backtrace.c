/*
 * One coroutine's backtrace as every output shows it: which registers to start from, which
 * frames to hide, the entry function and the creation site. The rules (issue 3):
 *   - a never-entered coroutine shows its entry function as its only frame;
 *   - frame 0 of a saved context is the public coroscope function it is suspended in
 *     (coro_yield, ...): coroscope-internal functions inlined into it are not shown, nor is
 *     the switch, nor anything below the entry function (the unwinder stops at the
 *     trampoline);
 *   - a coroutine running on another thread gets no frames here unless its registers are
 *     given (the signal dump and the CLI have them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect-int.h"
#include "own-functions-int.h"

#define MAX_SYM_FRAMES 17 /* a pc with up to 16 inlined instances */

const char *coro__state_name(uint32_t state)
{
    switch (state) {
    case CORO_STATE_CREATED:
        return "created";
    case CORO_STATE_RUNNING:
    case CORO_STATE_NESTED:
        return "running";
    case CORO_STATE_SUSPENDED:
        return "suspended";
    default:
        return "unknown";
    }
}

/* Is the real function of frame f part of the module that holds coroscope's switch? */
static bool in_runtime_module(CoroSymbolizer *s, const struct coro_debug_abi *abi,
                              const CoroFrame *f)
{
    CoroFrame sw;
    if (!f->module || coro__symbolize(s, abi->switch_start, false, CORO_SYM_NO_LINES |
                                      CORO_SYM_NO_INLINES, &sw, 1) < 1 || !sw.module) {
        return false;
    }
    return strcmp(sw.module, f->module) == 0;
}

static int push(CoroBacktrace *bt, size_t *cap, const CoroFrame *f)
{
    if (bt->nframes == *cap) {
        if (bt->frames_borrowed) {
            return -ENOMEM;     /* frames_cap below the frame limit: the caller's mistake */
        }
        size_t ncap = *cap ? *cap * 2 : 16;
        CoroFrame *nf = realloc(bt->frames, ncap * sizeof(*nf));
        if (!nf) {
            return -ENOMEM;
        }
        bt->frames = nf;
        *cap = ncap;
    }
    bt->frames[bt->nframes++] = *f;
    return 0;
}

int coro__backtrace_build(CoroUnwinder *u, CoroSymbolizer *s, const struct coro_debug_abi *abi,
                          const CoroInfo *co, const CoroMachineRegs *live,
                          const CoroBacktraceOptions *opts, CoroBacktrace *out)
{
    static const CoroBacktraceOptions defaults = { 0 };
    if (!opts) {
        opts = &defaults;
    }
    size_t max = opts->max_frames ? opts->max_frames : CORO_UNWIND_MAX_FRAMES;
    if (max > CORO_UNWIND_MAX_FRAMES) {
        max = CORO_UNWIND_MAX_FRAMES;
    }
    memset(out, 0, sizeof(*out));
    out->error = coro__bt_no_error;
    out->info = co;
    CoroFrame tmp[MAX_SYM_FRAMES];
    int k;

    /* The entry function and the creation site (the line of the coro_create call): after
     * the frames in the caller's buffer, else in an array of their own. */
    CoroFrame *sites;
    size_t cap = 0;
    if (opts->frames_buf && opts->frames_cap) {
        out->frames = opts->frames_buf;
        out->frames_borrowed = true;
        cap = opts->frames_cap;
        sites = opts->frames_buf + opts->frames_cap;
    } else {
        sites = calloc(2, sizeof(*sites));
        if (!sites) {
            out->entry = out->created_at = &coro__no_frame;
            return -ENOMEM;
        }
        out->sites_owned = true;
    }
    out->entry = &sites[0];
    out->created_at = &sites[1];
    k = coro__symbolize(s, co->entry, false, opts->sym_flags | CORO_SYM_NO_INLINES, tmp, 1);
    if (k < 0) {
        return k;
    }
    sites[0] = tmp[0];
    if (co->create_site) {
        k = coro__symbolize(s, co->create_site, true, opts->sym_flags, tmp, MAX_SYM_FRAMES);
        if (k < 0) {
            return k;
        }
        /* The innermost frame names the function and line that made the call. */
        sites[1] = tmp[0];
    } else {
        memset(&sites[1], 0, sizeof(sites[1]));
        sites[1].offset = -1;
    }

    if (co->state == CORO_STATE_CREATED) {
        return push(out, &cap, out->entry);
    }
    const CoroMachineRegs *regs = NULL;
    CoroMachineRegs from_record;
    if (live) {
        regs = live;
    } else if (co->state != CORO_STATE_RUNNING && (co->regs.valid & CORO_MREG_RSP)) {
        from_record = coro__saved_regs(&co->regs);
        regs = &from_record;
    }
    if (!regs) {
        if (co->state == CORO_STATE_RUNNING) {
            return coro__backtrace_error(out, "running on thread %d", (int)co->tid);
        }
        return coro__backtrace_error(out, "saved registers could not be read consistently");
    }
    uint64_t pcs[CORO_UNWIND_MAX_FRAMES];
    size_t n = 0;
    uint64_t lo = co->stack_base, hi = co->stack_base + co->stack_size;
    if (hi < lo || co->stack_size == 0) {
        lo = hi = 0;
    }
    char why[CORO_BT_ERROR_MAX];
    int rc = coro__unwind(u, regs, lo, hi, opts->unwind_flags, pcs, max, &n, why, sizeof(why));
    if (rc == 1) {
        out->truncated = true;
    }
    if (why[0] && coro__backtrace_error(out, "%s", why) < 0) {
        return -ENOMEM;
    }
    bool saved = regs->rip_is_return_address;
    for (size_t i = 0; i < n; i++) {
        bool ra = i > 0 || saved;
        k = coro__symbolize(s, pcs[i], ra, opts->sym_flags, tmp, MAX_SYM_FRAMES);
        if (k < 0) {
            return k;
        }
        if (k > MAX_SYM_FRAMES) {
            k = MAX_SYM_FRAMES;
        }
        int first = 0;
        if (i == 0 && saved && k > 1 && in_runtime_module(s, abi, &tmp[k - 1])) {
            /* Suspended inside coroscope: show the public function, not its inlined
             * internals (do_switch and friends). */
            first = k - 1;
        }
        for (int j = first; j < k; j++) {
            if (out->nframes >= max) {
                out->truncated = true;
                return 0;
            }
            if (push(out, &cap, &tmp[j]) < 0) {
                return -ENOMEM;
            }
        }
    }
    return 0;
}

char coro__bt_no_error[1];
static char out_of_memory[] = "out of memory";

static void error_free(CoroBacktrace *bt)
{
    if (bt->error && bt->error != coro__bt_no_error && bt->error != out_of_memory) {
        free(bt->error);
    }
    bt->error = coro__bt_no_error;
}

int coro__backtrace_error(CoroBacktrace *bt, const char *fmt, ...)
{
    char buf[CORO_BT_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char *e = strdup(buf);
    error_free(bt);
    if (!e) {
        bt->error = out_of_memory;
        return -ENOMEM;
    }
    bt->error = e;
    return 0;
}

const CoroFrame coro__no_frame;

void coro__backtrace_drop_frames(CoroBacktrace *bt)
{
    if (!bt->frames_borrowed) {
        free(bt->frames);
    }
    bt->frames = NULL;
    bt->nframes = 0;
    bt->frames_borrowed = false;
}

void coro__backtrace_fini(CoroBacktrace *bt)
{
    if (!bt->frames_borrowed) {
        free(bt->frames);
    }
    if (bt->sites_owned) {
        free((CoroFrame *)bt->entry);       /* the array: entry, then created_at */
        bt->sites_owned = false;
        bt->entry = bt->created_at = &coro__no_frame;
    }
    if (!bt->entry) {
        bt->entry = bt->created_at = &coro__no_frame;
    }
    bt->frames = NULL;
    bt->nframes = 0;
    bt->frames_borrowed = false;
    error_free(bt);
}

/* ------------------------------------------------------------------ one-line summary */

typedef enum { FRAME_USER, FRAME_SYSTEM, FRAME_OWN } FrameKind;

static bool same_module(const char *a, const char *b)
{
    return a && b && (a == b || strcmp(a, b) == 0);
}

/* coroscope's shared library: every function in it is coroscope's. */
static bool coroscope_library(const char *module)
{
    const char *base = module ? strrchr(module, '/') : NULL;
    base = base ? base + 1 : module;
    return base && strncmp(base, "libcoroscope.so", 15) == 0;
}

/* The system's libraries: libc's nanosleep is not where a person looks for a hung coroutine.
 * CoroFrame.module is the file the module was loaded from, for every target. */
static bool system_library(const char *module)
{
    static const char *const dirs[] = { "/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/" };
    for (size_t i = 0; module && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (strncmp(module, dirs[i], strlen(dirs[i])) == 0) {
            return true;
        }
    }
    return false;
}

const CoroFrame *coro__backtrace_where(const CoroBacktrace *bt)
{
    if (bt->info->state == CORO_STATE_CREATED) {
        return bt->entry;
    }
    /* Outermost first: a frame called by one of coroscope's public functions, in the same
     * module, runs on its behalf (coro_dump's formatter inside a static program). */
    const char *own_module = NULL;
    const CoroFrame *user = NULL, *user_lines = NULL, *other = NULL;
    /* Neighbouring frames mostly share their module string (the symbolizer's): what the
     * module is, by pointer, from the frame before (ps asks this of 100,000 backtraces). */
    const char *memo = NULL;
    bool memo_lib = false, memo_sys = false;
    for (size_t k = bt->nframes; k-- > 0;) {
        const CoroFrame *f = &bt->frames[k];
        if (!memo || f->module != memo) {
            memo = f->module;
            memo_lib = coroscope_library(f->module);
            memo_sys = system_library(f->module);
        }
        FrameKind kind = FRAME_USER;
        if (memo_lib || coro__own_function(f->function)) {
            kind = FRAME_OWN;
            own_module = f->module;
        } else if (same_module(f->module, own_module)) {
            kind = FRAME_OWN;
        } else if (memo_sys) {
            kind = FRAME_SYSTEM;
        }
        if (kind == FRAME_USER) {
            user = f;
            if (f->file && f->line > 0) {
                user_lines = f;
            }
        } else if (kind == FRAME_SYSTEM) {
            other = f;
        }
    }
    if (user_lines) {
        return user_lines;
    }
    if (user) {
        return user;
    }
    if (other) {
        return other;
    }
    return bt->nframes ? &bt->frames[0] : NULL;
}
