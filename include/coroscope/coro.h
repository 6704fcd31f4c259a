/*
 * coroscope runtime: QEMU-style stackful coroutines for x86_64 Linux, instrumented so that
 * every live coroutine can be listed and unwound from inside the process, from another
 * process, from a core file and from gdb (see <coroscope/debug-abi.h>).
 *
 * Semantics follow QEMU's qemu-coroutine.h: a coroutine is entered with coro_enter() and runs
 * until it yields or its entry function returns. coro_yield() goes back to whoever entered it.
 * A coroutine may enter another one (nesting). When the entry function returns, the coroutine
 * terminates, coro_enter() returns and the handle is dead: its memory goes back to a pool and
 * will be handed out again by a later coro_create().
 *
 * A suspended coroutine may be entered again from another thread; a coroutine is never used
 * by two threads at the same time (the caller provides that exclusion, as in QEMU).
 */
#ifndef COROSCOPE_CORO_H
#define COROSCOPE_CORO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * QEMU defines the same three names (coroutine_fn in qemu/coroutine.h or qemu/osdep.h,
 * Coroutine in qemu/typedefs.h, CoroutineEntry in qemu/coroutine.h). A program that includes
 * QEMU's headers FIRST and then this one compiles: each name is only defined here when it is
 * not defined yet (QEMU's include guards QEMU_TYPEDEFS_H and QEMU_COROUTINE_H tell). The
 * Coroutine type is then QEMU's `struct Coroutine` tag, which is the same tag as ours.
 * tests/test-qemu-names.c checks it.
 */

/* Marks a function that may only run inside a coroutine (it may yield). Documentation only. */
#ifndef coroutine_fn
#define coroutine_fn
#endif

/* Marks a function that may run in a signal handler: no malloc, no locks, no stdio. */
#define CORO_SIGNAL_SAFE

#ifndef QEMU_TYPEDEFS_H
typedef struct Coroutine Coroutine;
#endif
#ifndef QEMU_COROUTINE_H
typedef void CoroutineEntry(void *opaque);
#endif

/* Stack size used when CoroutineOptions.stack_size is 0 (usable bytes, guard page not counted). */
#define CORO_DEFAULT_STACK_SIZE (256u * 1024u)
/* Smallest stack size accepted; smaller requests are rounded up to it. */
#define CORO_MIN_STACK_SIZE (16u * 1024u)
/* Bytes of a name that are kept, including the terminating NUL. */
#define CORO_NAME_SIZE 32

/*
 * Options for coro_create_opts(). Zero-initialise and set what you need, for example
 *     CoroutineOptions o = { .name = "conn-reader", .stack_size = 64 * 1024 };
 * Fields added later keep zero meaning "default", so this stays source-compatible.
 */
typedef struct CoroutineOptions {
    const char *name;   /* copied (CORO_NAME_SIZE - 1 characters kept); NULL: unnamed */
    size_t stack_size;  /* usable stack bytes, rounded up to pages; 0: CORO_DEFAULT_STACK_SIZE */
    void *reserved[4];  /* must be zero */
} CoroutineOptions;

/*
 * Creates a coroutine that will run entry(opaque) when first entered. It is "created" until
 * then. Returns NULL with errno set (ENOMEM, EINVAL) on failure. The coroutine is released by
 * its own termination (entry returning); a coroutine that is never run to completion is a
 * leak, which coro_leak_check() in <coroscope/inspect.h> reports.
 */
Coroutine *coro_create(CoroutineEntry *entry, void *opaque);
Coroutine *coro_create_opts(CoroutineEntry *entry, void *opaque, const CoroutineOptions *opts);

/*
 * Runs co until it yields or terminates. Aborts with a clear message when co is running or
 * has entered another coroutine that has not yielded ("re-entered recursively").
 */
void coro_enter(Coroutine *co);

/* coroutine_fn: suspends the calling coroutine and returns to whoever entered it. Aborts when
 * called outside a coroutine. */
void coroutine_fn coro_yield(void);

/*
 * Leaves the thread's coroutines where they are and calls fn(arg) on the thread's own stack:
 * for code whose failure path longjmps to a point on that stack, such as a test framework's
 * failed assertion (<coroscope/cmocka.h> uses it). The running coroutine and every coroutine
 * that entered it become suspended (each may be entered again later and resumes where it
 * was, or stays alive and is reported as a leak); the thread is then outside any coroutine,
 * and fn runs below the frame of the outermost coro_enter(). fn is expected not to return
 * (longjmp, exit); if it returns, that coro_enter() returns. Outside a coroutine, calls
 * fn(arg) and returns.
 */
void coro_escape_to_thread(void (*fn)(void *), void *arg);

/* The coroutine running on this thread, or NULL on the thread's own stack. */
Coroutine *coro_self(void);
bool coro_in_coroutine(void);

/* True while co is running or has entered another coroutine that has not yielded yet. */
bool coro_entered(const Coroutine *co);

/* Copies name (CORO_NAME_SIZE - 1 characters kept); NULL clears it. */
void coro_set_name(Coroutine *co, const char *name);
/* The name, or NULL when unnamed. Borrowed: valid until the next coro_set_name() on co or the
 * coroutine's termination. */
const char *coro_name(const Coroutine *co);

/* Unique in the process, never reused, starts at 1. Ids are handed to threads in blocks, so
 * they grow with time on one thread but not across threads. */
uint64_t coro_id(const Coroutine *co);

/* Coroutines created and not yet terminated, on all threads. */
size_t coro_live_count(void);

#ifdef __cplusplus
}
#endif

#endif /* COROSCOPE_CORO_H */
