/*
 * USDT probes (systemtap's <sys/sdt.h>): a probe site is one nop plus an ELF note that
 * readelf -n, gdb (`break -probe-stap coroscope:create`), bpftrace and perf read. Arguments are
 * documented in docs/tracing.md; they are plain values (ids, addresses, nanoseconds). Built
 * without <sys/sdt.h>, they compile to nothing.
 *
 * Sites: create and terminate (coro.c), wait_begin / wait_end (loop.c: every coroscope wait,
 * fds, timers, queues, mutexes, rwlocks), wake (loop.c: a coroutine scheduled by a wake),
 * enter and yield (switch-x86_64.S, where the argument is a memory operand the tracer reads
 * — "8@120(%rdi)", the record's id — so the fast path gains one nop and no instruction; the
 * C switch of sanitizer builds has them too).
 */
#ifndef COROSCOPE_PROBES_INT_H
#define COROSCOPE_PROBES_INT_H

#if defined(__has_include)
#if __has_include(<sys/sdt.h>)
#include <sys/sdt.h>
#define CORO_HAVE_SDT 1
#endif
#endif

#ifdef CORO_HAVE_SDT
/* id, entry function, creation site (return address of coro_create), name (char *) */
#define CORO_PROBE_CREATE(co) \
    STAP_PROBE4(coroscope, create, (co)->id, (co)->entry, (co)->create_site, (co)->name)
/* id, times it was entered */
#define CORO_PROBE_TERMINATE(co) STAP_PROBE2(coroscope, terminate, (co)->id, (co)->switch_count)
/* id, kind (CORO_WAIT_*), object (or 0), fd (or -1 when not an fd wait) */
#define CORO_PROBE_WAIT_BEGIN(co, kind, object, fd) \
    STAP_PROBE4(coroscope, wait_begin, (co)->id, kind, object, fd)
/* id, kind, CLOCK_MONOTONIC ns when the wait began (no clock is read here: bpftrace's nsecs
 * is the same clock, so nsecs - arg2 is the time waited) */
#define CORO_PROBE_WAIT_END(co, kind, since) \
    STAP_PROBE3(coroscope, wait_end, (co)->id, kind, since)
/* id of the coroutine made runnable, kind of the wait it is in (0: none); the waker may run
 * on another thread than the coroutine, which writes wait_kind as it parks and resumes */
#define CORO_PROBE_WAKE(co) \
    STAP_PROBE2(coroscope, wake, (co)->id, __atomic_load_n(&(co)->wait_kind, __ATOMIC_RELAXED))
/* id of the coroutine entered / of the one yielding (C switch only; the asm has its own) */
#define CORO_PROBE_ENTER(co) STAP_PROBE1(coroscope, enter, (co)->id)
#define CORO_PROBE_YIELD(co) STAP_PROBE1(coroscope, yield, (co) ? (co)->id : 0)
#else
#define CORO_PROBE_ENTER(co) ((void)0)
#define CORO_PROBE_YIELD(co) ((void)0)
#define CORO_PROBE_CREATE(co) ((void)0)
#define CORO_PROBE_TERMINATE(co) ((void)0)
#define CORO_PROBE_WAIT_BEGIN(co, kind, object, fd) ((void)0)
#define CORO_PROBE_WAIT_END(co, kind, since) ((void)0)
#define CORO_PROBE_WAKE(co) ((void)0)
#endif

#endif /* COROSCOPE_PROBES_INT_H */
