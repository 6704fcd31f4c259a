/*
 * The stalled-loop watchdog (CORO_STALL_MS=N, or coro_stall_watchdog()): a helper thread
 * looks every N/2 ms at what each thread is running — its shard's current coroutine and that
 * record's switch count, counters the runtime keeps anyway, read through the debug ABI — and
 * when one coroutine has run N ms without switching (same current, same count), writes one
 * report: the coroutine's id, name and thread, how long, and its backtrace at that moment,
 * made like a signal dump (signal.c: the threads are held for a moment and the running
 * coroutine is unwound from its thread's registers, so the leaf function is in it). Once per
 * stall: not again until that coroutine has switched. Nothing is added to the switch path.
 *
 * "How long" is a lower bound: a stall is timed from the first check that saw it, so it is
 * reported between N and 1.5 N after it began. A coroutine blocked in a system call (a read()
 * that does not go through coro_wait_fd) stalls its thread just the same and is reported.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inspect-int.h"
#include "signal-int.h"

extern struct coro_debug_abi coroscope_debug_abi;

#define STALL_MS_MAX 3600000u
#define PATH_SIZE 1024

/* What the last check saw on one thread (shards are never freed: the address is a key). */
typedef struct Watch {
    uint64_t shard;
    uint64_t current;            /* record running there, 0 none */
    uint64_t switches;           /* its switch count then */
    int64_t since;               /* first check that saw this (current, switches) */
    bool reported;               /* this stall's report is written */
} Watch;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed;
static unsigned stall_ms;        /* 0: off */
static int stall_format;
static char stall_path[PATH_SIZE];
static uint64_t config_gen;      /* bumped by every coro_stall_watchdog() */
static bool running;             /* the thread exists (in this process) */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t rd64(uint64_t addr, uint32_t off)
{
    return __atomic_load_n((const uint64_t *)(uintptr_t)(addr + off), __ATOMIC_RELAXED);
}

/* For a pointer the watchdog then follows (a shard's running coroutine, stored with release
 * by the runtime): what the owning thread wrote into the record before is visible. */
static uint64_t rd64_acquire(uint64_t addr, uint32_t off)
{
    return __atomic_load_n((const uint64_t *)(uintptr_t)(addr + off), __ATOMIC_ACQUIRE);
}

static int32_t rd32(uint64_t addr, uint32_t off)
{
    return __atomic_load_n((const int32_t *)(uintptr_t)(addr + off), __ATOMIC_RELAXED);
}

static Watch *watch_of(Watch **w, size_t *n, uint64_t shard)
{
    for (size_t i = 0; i < *n; i++) {
        if ((*w)[i].shard == shard) {
            return &(*w)[i];
        }
    }
    Watch *grown = realloc(*w, (*n + 1) * sizeof(**w));
    if (!grown) {
        return NULL;
    }
    *w = grown;
    grown[*n] = (Watch){ .shard = shard };
    return &grown[(*n)++];
}

/* One look at every thread; reports what has stalled for threshold_ns. */
static void check(Watch **w, size_t *nw, int64_t threshold_ns, const char *path, int format)
{
    const struct coro_debug_abi *a = &coroscope_debug_abi;
    uint64_t nshards = __atomic_load_n(&a->nshards, __ATOMIC_ACQUIRE);
    uint64_t sh = __atomic_load_n(&a->shards, __ATOMIC_ACQUIRE);
    for (uint64_t k = 0; sh && k < nshards; k++, sh = rd64(sh, a->shard_off_next)) {
        int32_t tid = rd32(sh, a->shard_off_tid);
        uint64_t cur = tid > 0 ? rd64_acquire(sh, a->shard_off_current) : 0;
        uint64_t switches = cur ? rd64(cur, a->off_switch_count) : 0;
        Watch *x = watch_of(w, nw, sh);
        if (!x) {
            return;
        }
        int64_t now = now_ns();
        if (!cur || cur != x->current || switches != x->switches) {
            *x = (Watch){ .shard = sh, .current = cur, .switches = switches, .since = now };
            continue;
        }
        if (x->reported || now - x->since < threshold_ns) {
            continue;
        }
        x->reported = true;
        CoroStall st = { .id = rd64(cur, a->off_id), .tid = tid, .for_ns = now - x->since,
                         .threshold_ns = threshold_ns };
        coro__sig_dump_stall(path[0] ? path : NULL, format, &st);
    }
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    Watch *w = NULL;
    size_t nw = 0;
    coro__sig_dump_prepare();
    pthread_mutex_lock(&lock);
    uint64_t gen = config_gen;
    while (stall_ms) {
        if (gen != config_gen) {
            gen = config_gen;
            nw = 0; /* a new threshold: start over */
        }
        unsigned ms = stall_ms;
        int format = stall_format;
        char path[PATH_SIZE];
        memcpy(path, stall_path, sizeof(path));
        pthread_mutex_unlock(&lock);
        check(&w, &nw, (int64_t)ms * 1000000, path, format);
        pthread_mutex_lock(&lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t half = (uint64_t)ms * 500000u; /* ns */
        until.tv_sec += (time_t)(half / 1000000000u);
        until.tv_nsec += (long)(half % 1000000000u);
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (stall_ms && gen == config_gen &&
               pthread_cond_timedwait(&changed, &lock, &until) != ETIMEDOUT) {
        }
    }
    running = false;
    pthread_mutex_unlock(&lock);
    free(w);
    return NULL;
}

/* Starts the thread (lock held), every signal blocked: it runs none of the program's
 * handlers and, owning no shard, is never held by a dump. */
static int start_locked(void)
{
    if (running) {
        return 0;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int err = pthread_create(&t, NULL, watchdog_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        return -err;
    }
    pthread_detach(t);
    pthread_setname_np(t, "coro-watchdog");
    running = true;
    return 0;
}

/* `changed` waits on the monotonic clock (the timed waits of watchdog_main). */
static void cond_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&changed, &ca);
    pthread_condattr_destroy(&ca);
}

/* fork() holds `lock` across the fork, so that the child finds it unlocked by its own thread
 * (initialising a mutex another thread held is undefined), as the runtime does with its own. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&lock);
}

/* In a forked child only the forking thread exists: the watchdog's thread and any wait on
 * `changed` are gone; a new watchdog when it was on. */
static void atfork_child(void)
{
    cond_init();
    running = false;
    if (stall_ms) {
        start_locked();
    }
    pthread_mutex_unlock(&lock);
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void once_init(void)
{
    cond_init();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

CORO_EXPORT int coro_stall_watchdog(unsigned ms, const char *path, int format)
{
    if (ms > STALL_MS_MAX) {
        return -EINVAL;
    }
    if (format != CORO_DUMP_TEXT && format != CORO_DUMP_JSON && format != CORO_DUMP_FOLDED &&
        format != CORO_DUMP_GROUPED && format != CORO_DUMP_PPROF) {
        return -EINVAL;
    }
    if (path && (!path[0] || strlen(path) >= PATH_SIZE)) {
        return path[0] ? -ENAMETOOLONG : -EINVAL;
    }
    pthread_once(&init_once, once_init);
    pthread_mutex_lock(&lock);
    stall_ms = ms;
    stall_format = format;
    snprintf(stall_path, sizeof(stall_path), "%s", path ? path : "");
    config_gen++;
    int err = 0;
    if (ms) {
        err = start_locked();
        if (err < 0) {
            stall_ms = 0;
        }
    }
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    return err;
}

void coro__watchdog_env(int format, const char *path)
{
    const char *v = secure_getenv("CORO_STALL_MS");
    if (!v || !v[0] || strcmp(v, "0") == 0) {
        return;
    }
    char *end;
    errno = 0;
    unsigned long ms = strtoul(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || ms == 0 || ms > STALL_MS_MAX) {
        coro__env_complain("CORO_STALL_MS", v, "not a number of milliseconds from 1 to 3600000",
                           "stall watchdog off (the default)");
        return;
    }
    int err = coro_stall_watchdog((unsigned)ms, path, format);
    if (err < 0) {
        coro__env_complain("CORO_STALL_MS", v, strerror(-err), "stall watchdog off");
    }
}
