/*
 * What loop.c (fd and timer waits, wakes, the ready lists) and sync.c (queues, mutexes,
 * rwlocks) share: parking the running coroutine with its wait reason, and the loop of the
 * calling thread.
 */
#ifndef COROSCOPE_WAIT_INT_H
#define COROSCOPE_WAIT_INT_H

#include <coroscope/loop.h>

#include "coro-int.h"

typedef struct CoroLoop CoroLoop;

/* This thread's loop, created on first use; aborts (one line) when it cannot be created. */
CoroLoop *coro__loop_self(void);

/*
 * coroutine_fn: records why the calling coroutine waits (kind, object, fd, events, deadline;
 * the start time from the clock, read here once), yields, and clears the record when it is
 * resumed. The caller has made sure something will wake it (queued it on an object, armed
 * an fd or a timer) after setting co->wait_loop = coro__loop_self(). who names the calling
 * API for the misuse message ("coro_mutex_lock").
 */
void coro__park(Coroutine *self, uint32_t kind, void *object, const char *who);

/* Schedules co on loop l (which the waker read from co->wait_loop while it held the lock
 * of the object co waited on: co may clear wait_loop as soon as it sees it was granted). */
void coro__wake_on(CoroLoop *l, Coroutine *co);

/* The running coroutine; aborts naming the thread and `who` when there is none. */
Coroutine *coro__wait_self(const char *who);

#endif /* COROSCOPE_WAIT_INT_H */
