/*
 * The signal dump: coro_dump_on_signal() and its environment configuration
 * (CORO_DUMP_SIGNAL, CORO_DUMP_PATH, CORO_DUMP_FORMAT, CORO_DUMP_ON_CRASH, and CORO_STALL_MS
 * for watchdog.c, whose reports are made here too), the handler of
 * the user-visible signal and the helper thread that does the work. docs/signal-dump.md is
 * the user's documentation.
 *
 * The handler of the user's signal only sets a flag and wakes a futex: everything
 * else runs in a helper thread, which is allowed to allocate and to take locks because it is
 * an ordinary thread. It takes a snapshot (signal-hold.c: the coroutine threads are held only
 * while memory is copied), lets them go, then reads, unwinds, symbolizes and formats the
 * snapshot with the same code as coro_dump() and the CLI. Signals that arrive while a dump
 * is being made are folded into one more dump after it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "inspect-int.h"
#include "signal-int.h"
#include "sigsafe-sym-int.h"

#define MAX_DUMP_SIGNALS 4
#define PATH_SIZE 1024

typedef struct DumpConfig {
    int signo;                   /* 0: slot unused */
    int format;
    _Atomic int pending;         /* set by the handler, cleared by the helper */
    char path[PATH_SIZE];        /* "" = stderr; "%p" is replaced at each dump */
} DumpConfig;

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
/* Held while a dump is made: the helper thread and the stall watchdog share the readers. */
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static DumpConfig configs[MAX_DUMP_SIGNALS];
/* Bumped and futex-woken by the handler. A futex, not a pipe or an eventfd: a daemon that
 * closes every descriptor it does not know could close ours, and the handler would then
 * write into whatever file reuses the number. */
static _Atomic uint32_t wake_word;
static pthread_t helper;
static _Atomic pid_t helper_pid;   /* the process the helper thread runs in */

/* ---- the user-visible signal ---- */

static long futex(_Atomic uint32_t *word, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)word, op, val, NULL, NULL, 0);
}

/* CORO_SIGNAL_SAFE: two atomic operations and one futex wake. */
static void dump_signal_handler(int signo)
{
    int saved_errno = errno;
    for (int i = 0; i < MAX_DUMP_SIGNALS; i++) {
        if (configs[i].signo == signo) {
            /* Only the first signal of a burst wakes the helper: the rest coalesce. */
            if (!atomic_exchange_explicit(&configs[i].pending, 1, memory_order_acq_rel)) {
                atomic_fetch_add_explicit(&wake_word, 1, memory_order_release);
                futex(&wake_word, FUTEX_WAKE_PRIVATE, 1);
            }
            break;
        }
    }
    errno = saved_errno;
}

/* ---- making one dump ---- */

/*
 * State kept across dumps by the helper thread: the snapshot buffers and the readers with
 * their caches (CFI rules, sorted symbol tables, per-pc results), rebuilt when a library is
 * loaded or unloaded.
 */
static struct {
    SigSnapshot snap;
    CoroTarget *target;
    CoroUnwinder *unwinder;
    CoroSymbolizer *symbolizer;
    unsigned long long modules_gen;
    /* For docs and tests: the last dump's numbers. */
    uint64_t dump_ns;
} st;

static int count_modules(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    unsigned long long *gen = data;
    *gen = info->dlpi_adds * 1000003ull + info->dlpi_subs;
    return 1;
}

static void readers_drop(void)
{
    if (st.symbolizer) {
        coro__symbolizer_destroy(st.symbolizer);
        st.symbolizer = NULL;
    }
    if (st.unwinder) {
        coro__unwinder_destroy(st.unwinder);
        st.unwinder = NULL;
    }
    if (st.target) {
        st.target->ops->close(st.target);
        st.target = NULL;
    }
}

/* Creates the target and readers, or keeps them when no module came or went. */
static int readers_prepare(void)
{
    unsigned long long gen = 0;
    dl_iterate_phdr(count_modules, &gen);
    if (st.target && gen == st.modules_gen) {
        return 0;
    }
    readers_drop();
    st.target = coro__sig_target_create(&st.snap);
    if (!st.target) {
        return -ENOMEM;
    }
    Dwfl *dwfl = st.target->dwfl;
    dwfl_report_begin(dwfl);
    int err = st.target->ops->report_modules(st.target, dwfl);
    dwfl_report_end(dwfl, NULL, NULL);
    if (err < 0) {
        readers_drop();
        return err;
    }
    st.unwinder = coro__unwinder_create(
        st.target, dwfl, (const struct coro_debug_abi *)(uintptr_t)coro__self_abi_addr());
    st.symbolizer = st.unwinder ? coro__symbolizer_create(dwfl) : NULL;
    if (!st.symbolizer) {
        readers_drop();
        return -ENOMEM;
    }
    st.modules_gen = gen;
    return 0;
}

static int expand_path(const char *path, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = path; *p; p++) {
        char num[24];
        const char *piece = p;
        size_t len = 1;
        if (p[0] == '%' && p[1] == 'p') {
            len = (size_t)snprintf(num, sizeof(num), "%d", (int)getpid());
            piece = num;
            p++;
        }
        if (n + len >= size) {
            return -ENAMETOOLONG;
        }
        memcpy(out + n, piece, len);
        n += len;
    }
    out[n] = '\0';
    return 0;
}

/* Opens the dump's output; "%p" is expanded now, so that a forked child writes its own file. */
static int open_output(const DumpConfig *c)
{
    if (!c->path[0]) {
        return STDERR_FILENO;
    }
    char path[PATH_SIZE];
    if (expand_path(c->path, path, sizeof(path)) < 0) {
        return -ENAMETOOLONG;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        char line[PATH_SIZE + 128];
        int n = snprintf(line, sizeof(line), "coroscope: signal dump: cannot open %s: %s\n",
                         path, strerror(e));
        if (n > 0 && write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n
                                                                            : sizeof(line))) {
        }
        return -e;
    }
    return fd;
}

static void say(int fd, const char *what, int err)
{
    char line[256];
    int n = snprintf(line, sizeof(line), "coroscope: signal dump failed: %s: %s\n", what,
                     strerror(-err));
    if (n > 0 && write(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line))) {
    }
}

static bool want_stalled(const CoroInfo *co, void *arg)
{
    return co->id == ((const CoroStall *)arg)->id;
}

/* One dump of every coroutine, or (stall) a stall report: that coroutine only, with the
 * stall's header. Callers hold dump_lock (the helper thread and the watchdog share st). */
static int dump_once(const DumpConfig *c, const CoroStall *stall)
{
    uint64_t t0 = coro__sig_now_ns();
    int fd = open_output(c);
    if (fd < 0) {
        return fd;
    }
    int err = readers_prepare();
    if (err < 0) {
        say(fd, "cannot read this process's modules", err);
        goto out;
    }
    if (coro__sig_crash_armed()) {
        coro__sigsym_refresh(); /* libraries loaded since arming */
    }
    CoroDumpMeta meta = { .pid = getpid(), .stall = stall };
    err = coro__sig_capture(&st.snap, NULL);
    clock_gettime(CLOCK_REALTIME, &meta.time);
    if (err < 0) {
        say(fd, "cannot take a snapshot", err);
        goto out;
    }
    CoroCollectOptions opts = { .unwinder = st.unwinder, .symbolizer = st.symbolizer,
                                .want = stall ? want_stalled : NULL, .arg = (void *)stall };
    CoroCollection col;
    err = coro__collect(st.target, st.snap.abi_addr, &opts, &col);
    if (err < 0) {
        say(fd, st.target->error[0] ? st.target->error : "cannot read the registry", err);
        goto out;
    }
    coro__collection_meta(&col, &meta);
    size_t n = col.n;
    err = coro__format_dump(fd, c->format, &meta, col.bts, n, 0, NULL);
    coro__collection_free(&col);
    st.dump_ns = coro__sig_now_ns() - t0;
    if (err == 0 && c->format == CORO_DUMP_TEXT && !stall) {
        char line[256];
        uint64_t slowest = 0;
        for (size_t i = 0; i < st.snap.nthreads; i++) {
            if (st.snap.threads[i].held && st.snap.threads[i].stop_ns > slowest) {
                slowest = st.snap.threads[i].stop_ns;
            }
        }
        int len = snprintf(line, sizeof(line),
                           "# signal dump: %zu coroutines; %zu threads held %.3f ms (slowest "
                           "to stop %.3f ms, copy %.3f ms, %u not stopped); %.3f ms in all\n",
                           n, st.snap.nthreads - st.snap.unheld, st.snap.hold_ns / 1e6,
                           slowest / 1e6, st.snap.copy_ns / 1e6, st.snap.unheld,
                           st.dump_ns / 1e6);
        if (len > 0 && write(fd, line, (size_t)len) < 0) {
            err = -errno;
        }
    }
out:
    if (fd != STDERR_FILENO) {
        close(fd);
    }
    return err;
}

void coro__sig_dump_prepare(void)
{
    pthread_mutex_lock(&dump_lock);
    readers_prepare();
    pthread_mutex_unlock(&dump_lock);
}

int coro__sig_dump_stall(const char *path, int format, const CoroStall *stall)
{
    DumpConfig c = { .format = format };
    if (path && strlen(path) >= sizeof(c.path)) {
        return -ENAMETOOLONG;
    }
    snprintf(c.path, sizeof(c.path), "%s", path ? path : "");
    int err = coro__sig_hold_init();
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&dump_lock);
    err = dump_once(&c, stall);
    pthread_mutex_unlock(&dump_lock);
    return err;
}

/* ---- the helper thread ---- */

static void *helper_main(void *arg)
{
    (void)arg;
    /* Report the modules now, so that the first dump does not pay for it. */
    readers_prepare();
    for (;;) {
        /* Read before looking at the flags: a signal after this makes the wait return. */
        uint32_t seen = atomic_load_explicit(&wake_word, memory_order_acquire);
        for (int i = 0; i < MAX_DUMP_SIGNALS; i++) {
            if (!atomic_exchange_explicit(&configs[i].pending, 0, memory_order_acq_rel)) {
                continue;
            }
            pthread_mutex_lock(&config_lock);
            DumpConfig c = configs[i];
            pthread_mutex_unlock(&config_lock);
            pthread_mutex_lock(&dump_lock);
            dump_once(&c, NULL);
            pthread_mutex_unlock(&dump_lock);
        }
        futex(&wake_word, FUTEX_WAIT_PRIVATE, seen);
    }
    return NULL;
}

/* Starts the helper thread with every signal blocked: it never runs the program's handlers
 * and is never held. */
static int helper_start(void)
{
    if (atomic_load_explicit(&helper_pid, memory_order_acquire) == getpid()) {
        return 0;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&helper, NULL, helper_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        return -err;
    }
    pthread_detach(helper);
    pthread_setname_np(helper, "coro-dump");
    atomic_store_explicit(&helper_pid, getpid(), memory_order_release);
    return 0;
}

/* In a forked child only the forking thread exists: start a new helper when dumps are on. */
static void atfork_child(void)
{
    pthread_mutex_init(&config_lock, NULL);
    pthread_mutex_init(&dump_lock, NULL);
    atomic_store_explicit(&helper_pid, 0, memory_order_relaxed);
    bool on = false;
    for (int i = 0; i < MAX_DUMP_SIGNALS; i++) {
        atomic_store_explicit(&configs[i].pending, 0, memory_order_relaxed);
        on |= configs[i].signo != 0;
    }
    if (on) {
        helper_start();
    }
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_register(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

/* ---- the API ---- */

static bool handled_by_us(const struct sigaction *sa)
{
    return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler == dump_signal_handler;
}


CORO_EXPORT int coro_dump_on_signal(int signo, const char *path, int format)
{
    if (signo <= 0 || signo > SIGRTMAX || signo == SIGKILL || signo == SIGSTOP ||
        signo == SIGSEGV || signo == SIGBUS || signo == SIGFPE || signo == SIGILL) {
        return -EINVAL;
    }
    if (format != CORO_DUMP_TEXT && format != CORO_DUMP_JSON && format != CORO_DUMP_FOLDED &&
        format != CORO_DUMP_GROUPED && format != CORO_DUMP_PPROF) {
        return -EINVAL;
    }
    if (path) {
        char expanded[PATH_SIZE];
        if (!path[0]) {
            return -EINVAL;
        }
        /* Checked now (with this pid) so that a path too long is an error here. */
        int err = strlen(path) >= PATH_SIZE ? -ENAMETOOLONG
                                            : expand_path(path, expanded, sizeof(expanded));
        if (err < 0) {
            return err;
        }
    }
    pthread_mutex_lock(&config_lock);
    int err = coro__sig_hold_init();
    if (err < 0) {
        goto out;
    }
    if (signo == coro__sig_hold_signo()) {
        err = -EBUSY;
        goto out;
    }
    struct sigaction old;
    if (sigaction(signo, NULL, &old) != 0) {
        err = -errno;
        goto out;
    }
    bool ours = handled_by_us(&old);
    if (!ours && ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)) {
        err = -EBUSY; /* the program's handler, or SIG_IGN: never replaced */
        goto out;
    }
    DumpConfig *c = NULL;
    for (int i = 0; i < MAX_DUMP_SIGNALS && !c; i++) {
        if (configs[i].signo == signo) {
            c = &configs[i];
        }
    }
    for (int i = 0; i < MAX_DUMP_SIGNALS && !c; i++) {
        if (configs[i].signo == 0) {
            c = &configs[i];
        }
    }
    if (!c) {
        err = -ENOSPC;
        goto out;
    }
    pthread_once(&atfork_once, atfork_register);
    err = helper_start();
    if (err < 0) {
        goto out;
    }
    /* Kept as given: "%p" is expanded at each dump (a forked child has another pid). */
    snprintf(c->path, sizeof(c->path), "%s", path ? path : "");
    c->format = format;
    if (!ours) {
        c->signo = signo;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = dump_signal_handler;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(signo, &sa, NULL) != 0) {
            err = -errno;
            c->signo = 0;
            goto out;
        }
    }
out:
    pthread_mutex_unlock(&config_lock);
    return err;
}

/* ---- configuration from the environment, at load ---- */

/* One line naming the variable, the value, what it accepts and what happens instead. */
void coro__env_complain(const char *var, const char *value, const char *why,
                        const char *fallback)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "coroscope: %s=%.200s: %s; %s\n", var, value, why,
                     fallback);
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n
                                                                        : sizeof(line))) {
    }
}

static void env_complain(const char *var, const char *value, const char *why)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "coroscope: %s=%.200s: %s; signal dump off\n", var,
                     value, why);
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n
                                                                        : sizeof(line))) {
    }
}

/* "USR1", "SIGUSR1" or a number; 0 when it is none of these. */
static int parse_signal(const char *s)
{
    if (s[0] >= '0' && s[0] <= '9') {
        char *end;
        long v = strtol(s, &end, 10);
        return *end || v <= 0 || v > SIGRTMAX ? 0 : (int)v;
    }
    if (strncasecmp(s, "SIG", 3) == 0) {
        s += 3;
    }
    for (int i = 1; i < SIGRTMIN; i++) {
        const char *abbrev = sigabbrev_np(i);
        if (abbrev && strcasecmp(abbrev, s) == 0) {
            return i;
        }
    }
    return 0;
}

static int parse_format(const char *s)
{
    if (!s || !*s || strcmp(s, "text") == 0) {
        return CORO_DUMP_TEXT;
    }
    if (strcmp(s, "json") == 0) {
        return CORO_DUMP_JSON;
    }
    if (strcmp(s, "folded") == 0) {
        return CORO_DUMP_FOLDED;
    }
    if (strcmp(s, "grouped") == 0) {
        return CORO_DUMP_GROUPED;
    }
    if (strcmp(s, "pprof") == 0) {
        return CORO_DUMP_PPROF;
    }
    return -1;
}

static void env_init(void)
{
    const char *crash = secure_getenv("CORO_DUMP_ON_CRASH");
    if (crash && crash[0] && strcmp(crash, "0") != 0 && strcmp(crash, "1") != 0) {
        coro__env_complain("CORO_DUMP_ON_CRASH", crash, "not 0 or 1",
                           "crash report off (the default)");
    }
    if (crash && strcmp(crash, "1") == 0) {
        int err = coro__sig_crash_init();
        if (err < 0) {
            char line[160];
            int n = snprintf(line, sizeof(line),
                             "coroscope: CORO_DUMP_ON_CRASH=1: cannot arm the crash report: %s\n",
                             strerror(-err));
            if (n > 0 && write(STDERR_FILENO, line, (size_t)n)) {
            }
        }
    }
    const char *fmt = secure_getenv("CORO_DUMP_FORMAT");
    int format = parse_format(fmt);
    const char *stall = secure_getenv("CORO_STALL_MS");
    if (stall && stall[0] && strcmp(stall, "0") != 0) {
        const char *spath = secure_getenv("CORO_DUMP_PATH");
        if (format < 0) {
            coro__env_complain("CORO_DUMP_FORMAT", fmt,
                               "not one of text, json, folded, grouped, pprof",
                               "stall watchdog off");
        } else {
            coro__watchdog_env(format, spath && *spath ? spath : NULL);
        }
    }
    const char *sig = secure_getenv("CORO_DUMP_SIGNAL");
    if (!sig || !*sig) {
        return;
    }
    int signo = parse_signal(sig);
    if (!signo) {
        env_complain("CORO_DUMP_SIGNAL", sig, "not a signal name (USR1, SIGUSR1) or number");
        return;
    }
    if (format < 0) {
        env_complain("CORO_DUMP_FORMAT", fmt, "not one of text, json, folded, grouped, pprof");
        return;
    }
    const char *path = secure_getenv("CORO_DUMP_PATH");
    int err = coro_dump_on_signal(signo, path && *path ? path : NULL, format);
    if (err == -EBUSY) {
        env_complain("CORO_DUMP_SIGNAL", sig, "the program already handles that signal");
    } else if (err < 0) {
        env_complain("CORO_DUMP_SIGNAL", sig, strerror(-err));
    }
}

static pthread_once_t env_once = PTHREAD_ONCE_INIT;

/*
 * Reads the environment once. Runs at load as a constructor of the shared library; in a
 * static link this object is pulled in by coro__signal_init(), which the inspect glue calls
 * when a thread first uses coroutines.
 */
void coro__signal_init(void)
{
    pthread_once(&env_once, env_init);
}

__attribute__((constructor)) static void signal_load(void)
{
    coro__signal_init();
}
