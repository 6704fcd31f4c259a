/*
 * Hooks the coroscope runtime calls, so that layers above it attach to the runtime without
 * the runtime depending on them (as libuv's loop owns callbacks that higher layers fill).
 * coroscope's own inspectors install theirs when the library is loaded: the guard-page
 * overflow report, each thread's alternate signal stack and the CORO_LEAK_CHECK exit report.
 * A program rarely needs this header; a tool built on the runtime may chain its own hooks.
 */
#ifndef COROSCOPE_HOOKS_H
#define COROSCOPE_HOOKS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CoroRuntimeHooks {
    /* Called on a thread the first time it uses coroutines (before its first coroutine is
     * created or entered), on that thread. May be NULL. */
    void (*thread_init)(void);
} CoroRuntimeHooks;

/*
 * Installs hooks (the struct is borrowed: it must live as long as the process) and returns
 * the previous ones (NULL: none), which the caller may chain to. Threads that started using
 * coroutines before the call are not called back. Thread-safe.
 */
const CoroRuntimeHooks *coro_runtime_hooks_set(const CoroRuntimeHooks *hooks);

#ifdef __cplusplus
}
#endif

#endif /* COROSCOPE_HOOKS_H */
