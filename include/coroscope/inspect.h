/*
 * coroscope in-process introspection: backtraces of every coroutine, leak checks, the
 * signal-triggered dump. docs/dump-format.md describes the three output formats and
 * docs/json-schema.md the JSON schema (version 1).
 *
 * Everything here reads the coroutine registry through the same code the coroscope CLI uses
 * on other processes and core files, so an in-process dump and `coroscope bt` print the same.
 *
 * Without code changes (read with secure_getenv when a program first uses coroutines):
 *   CORO_LEAK_CHECK=1      at exit, report live coroutines on stderr and exit with
 *   CORO_LEAK_EXITCODE=N   N (default 23) when there are any, as LeakSanitizer does.
 * A coroutine that overflows into its guard page is reported on stderr (one line, then a short
 * backtrace) before the process dies of the SIGSEGV, core included; docs/dump-format.md.
 */
#ifndef COROSCOPE_INSPECT_H
#define COROSCOPE_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Output formats of coro_dump() and of the signal dump. */
enum {
    CORO_DUMP_TEXT = 0,
    CORO_DUMP_JSON = 1,
    CORO_DUMP_FOLDED = 2,
    /* Text, with coroutines of the same state, wait kind and frames printed once, with a
     * count and their ids, largest group first (as pprof's debug=1 and panicparse). */
    CORO_DUMP_GROUPED = 3,
    /* A gzip'd pprof profile.proto: one sample per group of identical stacks, sample type
     * coroutines/count (`go tool pprof`, Pyroscope, Parca read it). Binary: give a file. */
    CORO_DUMP_PPROF = 4,
};

/*
 * Writes every live coroutine with its backtrace to fd: suspended and never-entered ones from
 * their saved registers, the calling coroutine (and the chain that entered it) from the live
 * stack; coroutines running on other threads at that moment get their state and thread only.
 * JSON is exactly one document followed by a newline. Returns 0, or -errno (-EINVAL: unknown
 * format; -EBADF, -EPIPE and others from write(): a reader that went away costs -EPIPE, the
 * program gets no SIGPIPE; -EPROTO and others when this process's registry cannot be read,
 * after one line on fd saying why — never an abort). Above a reader's limits (16 Mi records)
 * the dump is partial and says so in its header. Other threads are not stopped: a coroutine they resume while it
 * is being read is listed without frames rather than with wrong ones. Concurrent callers
 * wait for each other (one lock per process). Not async-signal-safe.
 */
int coro_dump(int fd, int format);

/*
 * Reports every live coroutine (id, name, state, creation site, backtrace) to fd in the text
 * format and returns how many there are. fd < 0 only counts. The calling coroutine, if any,
 * is not counted: it is alive by definition.
 */
size_t coro_leak_check(int fd);

/* A point in time for coro_leak_check_since(): coroutines created after this call are
 * "since" the mark, whatever thread creates them. */
uint64_t coro_leak_mark(void);

/* As coro_leak_check(), but only coroutines created after mark was taken. */
size_t coro_leak_check_since(uint64_t mark, int fd);

/*
 * Dumps every coroutine when signo arrives (signal dump). path NULL: stderr; "%p" in path is
 * replaced by the pid. 0 or -errno; -EBUSY when the program already handles signo.
 */
int coro_dump_on_signal(int signo, const char *path, int format);

/*
 * The stalled-loop watchdog: a helper thread checks every ms/2 milliseconds what each thread
 * is running; when one coroutine has run ms milliseconds without yielding, it writes one
 * report (that coroutine's id, name, thread, how long, and its backtrace at that moment, made
 * like a signal dump) to path ("%p" is the pid; appended, O_NOFOLLOW, mode 0600) or to
 * stderr when path is NULL, in format (CORO_DUMP_*) — once per stall, not again until that
 * coroutine has yielded. Nothing is added to the switch path. ms = 0 stops it; calling again
 * replaces the settings. The environment does the same: CORO_STALL_MS=N, with
 * CORO_DUMP_PATH and CORO_DUMP_FORMAT. Returns 0 or -errno (-EINVAL: ms above 3,600,000 or an
 * unknown format). docs/live.md.
 */
int coro_stall_watchdog(unsigned ms, const char *path, int format);

#ifdef __cplusplus
}
#endif

#endif /* COROSCOPE_INSPECT_H */
