/*
 * coroscope's own functions, by name: every function and function-like macro that
 * include/coroscope/ declares (tests/test-inspect-frames.c checks that each is listed), and
 * the runtime's internal functions a parked coroutine's stack can show (coro__park, the
 * switch), whose reserved names no program uses. A one-line summary of a coroutine (ps's
 * WHERE, coro__backtrace_where) skips these frames and the ones they call in their own
 * module, to show the user's code. A fixed list, not the "coro_" prefix: a program's own
 * coro_read is the user's code and must show. The runtime's static helpers (wait_fd,
 * rw_wait, ...) are not listed: they run only under a listed function, and a program may
 * have its own wait_fd.
 */
#ifndef COROSCOPE_OWN_FUNCTIONS_INT_H
#define COROSCOPE_OWN_FUNCTIONS_INT_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Sorted (strcmp), for bsearch. A name here that no header declares (any more) costs nothing
 * but hides a user's function of that name. */
static const char *const coro__own_functions[] = {
    "coro__park",
    "coro__switch",
    "coro__switch_call",
    "coro__switch_exit",
    "coro_cmocka_fail_at",
    "coro_cmocka_no_leaks_since",
    "coro_create",
    "coro_create_opts",
    "coro_dump",
    "coro_dump_on_signal",
    "coro_enter",
    "coro_entered",
    "coro_escape_to_thread",
    "coro_id",
    "coro_in_coroutine",
    "coro_leak_check",
    "coro_leak_check_since",
    "coro_leak_mark",
    "coro_live_count",
    "coro_loop_fd",
    "coro_loop_poll",
    "coro_loop_run",
    "coro_loop_stop",
    "coro_mutex_init",
    "coro_mutex_lock",
    "coro_mutex_unlock",
    "coro_name",
    "coro_now_ns",
    "coro_queue_empty",
    "coro_queue_init",
    "coro_queue_next",
    "coro_queue_restart_all",
    "coro_queue_wait",
    "coro_runtime_hooks_set",
    "coro_rwlock_downgrade",
    "coro_rwlock_init",
    "coro_rwlock_rdlock",
    "coro_rwlock_unlock",
    "coro_rwlock_upgrade",
    "coro_rwlock_wrlock",
    "coro_schedule",
    "coro_self",
    "coro_set_name",
    "coro_sleep_ns",
    "coro_stall_watchdog",
    "coro_wait_fd",
    "coro_wait_fd_until",
    "coro_wake",
    "coro_yield",
};

static inline int coro__own_function_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, *(const char *const *)elem);
}

/* True when name is one of coroscope's public functions. */
static inline bool coro__own_function(const char *name)
{
    /* Every name starts with "coro_": most frames (the user's) are out after 5 bytes. */
    return name && name[0] == 'c' && name[1] == 'o' && name[2] == 'r' && name[3] == 'o' &&
           name[4] == '_' && bsearch(name, coro__own_functions,
                           sizeof(coro__own_functions) / sizeof(coro__own_functions[0]),
                           sizeof(coro__own_functions[0]), coro__own_function_cmp) != NULL;
}

#endif /* COROSCOPE_OWN_FUNCTIONS_INT_H */
