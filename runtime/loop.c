/*
 * The per-thread event loop (<coroscope/loop.h>): epoll for fds, a binary heap of deadlines
 * for timers (epoll_pwait2's nanosecond timeout, or a timerfd when the loop is embedded in
 * another program's loop), a ready list of scheduled coroutines, and an eventfd through which
 * other threads hand it wakes.
 *
 * Costs: an fd is added to epoll on its first wait and re-armed with one EPOLL_CTL_MOD per
 * wait (EPOLLONESHOT: nothing fires while nobody waits, and a closed-and-reused fd number is
 * found at the next wait: MOD answers ENOENT, we ADD the new file). The clock is read when a
 * wait begins and once per loop iteration; the plain enter/yield path is not touched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "probes-int.h"
#include "wait-int.h"

#define TAG_EVENTFD UINT64_MAX
#define TAG_TIMERFD (UINT64_MAX - 1)
#define MAX_FD (1u << 24)
#define EVENTS_PER_POLL 64

typedef struct FdWatch {
    Coroutine *waiter;          /* the coroutine waiting on this fd, NULL none */
    bool registered;            /* added to epoll (possibly disarmed: EPOLLONESHOT) */
} FdWatch;

struct CoroLoop {
    int epfd, evfd, tfd;        /* tfd: -1 until coro_loop_fd() embeds the loop */
    bool stop;
    pthread_mutex_t remote_lock;
    Coroutine *remote_head, *remote_tail; /* wakes from other threads */
    _Atomic uint32_t remote_signalled;    /* an eventfd write is outstanding */
    Coroutine *ready_head, *ready_tail;   /* scheduled on this thread */
    Coroutine **timers;         /* min-heap by wait_deadline */
    size_t ntimers, timers_cap;
    FdWatch *fds;
    size_t fds_cap;
    size_t fd_waiters;          /* coroutines in coro_wait_fd* */
};

static __thread CoroLoop *tls_loop;
static pthread_key_t loop_key;
static pthread_once_t loop_once = PTHREAD_ONCE_INIT;

CORO_EXPORT int64_t coro_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void publish_clock(int64_t now)
{
    __atomic_store_n(&coroscope_debug_abi.clock_ns, (uint64_t)now, __ATOMIC_RELAXED);
}


/* ---- creation and teardown ---- */

static void loop_free(CoroLoop *l)
{
    close(l->epfd);
    close(l->evfd);
    if (l->tfd >= 0) {
        close(l->tfd);
    }
    pthread_mutex_destroy(&l->remote_lock);
    free(l->timers);
    free(l->fds);
    free(l);
}

/* A loop that still has coroutines parked on it is left allocated: a late wake from another
 * thread must not touch freed memory (those coroutines are lost with their thread). */
static void loop_thread_exit(void *p)
{
    CoroLoop *l = p;
    if (!l->fd_waiters && !l->ntimers && !l->ready_head && !l->remote_head) {
        loop_free(l);
    }
    tls_loop = NULL;
}

/* In a fork child the loop's epoll and eventfd are shared with the parent: start afresh. */
static void loop_atfork_child(void)
{
    if (tls_loop) {
        loop_free(tls_loop);
        tls_loop = NULL;
    }
}

static void loop_init_process(void)
{
    pthread_key_create(&loop_key, loop_thread_exit);
    pthread_atfork(NULL, NULL, loop_atfork_child);
}

static CoroLoop *loop_create(void)
{
    CoroLoop *l = calloc(1, sizeof(*l));
    if (!l) {
        return NULL;
    }
    l->tfd = -1;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_EVENTFD };
    if (l->epfd < 0 || l->evfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0) {
        int err = errno;
        if (l->epfd >= 0) {
            close(l->epfd);
        }
        if (l->evfd >= 0) {
            close(l->evfd);
        }
        free(l);
        errno = err;
        return NULL;
    }
    pthread_mutex_init(&l->remote_lock, NULL);
    return l;
}

/* Not inlined: a coroutine may resume on another thread, and a caller must never reuse a
 * TLS address computed before a switch (see coro.c's tls_shard). */
__attribute__((noinline)) CoroLoop *coro__loop_self(void)
{
    CoroLoop *l = tls_loop;
    if (__builtin_expect(l != NULL, 1)) {
        return l;
    }
    pthread_once(&loop_once, loop_init_process);
    l = loop_create();
    if (!l) {
        coro__die("cannot create the event loop of thread %d: %s", (int)gettid(),
                  strerror(errno));
    }
    tls_loop = l;
    pthread_setspecific(loop_key, l);
    return l;
}

/* ---- timers: a binary min-heap on wait_deadline; timer_slot = 1 + index ---- */

static void heap_set(CoroLoop *l, size_t i, Coroutine *co)
{
    l->timers[i] = co;
    co->timer_slot = (uint32_t)i + 1;
}

static void heap_up(CoroLoop *l, size_t i)
{
    Coroutine *co = l->timers[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->timers[parent]->wait_deadline <= co->wait_deadline) {
            break;
        }
        heap_set(l, i, l->timers[parent]);
        i = parent;
    }
    heap_set(l, i, co);
}

static void heap_down(CoroLoop *l, size_t i)
{
    Coroutine *co = l->timers[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->ntimers) {
            break;
        }
        if (c + 1 < l->ntimers && l->timers[c + 1]->wait_deadline < l->timers[c]->wait_deadline) {
            c++;
        }
        if (co->wait_deadline <= l->timers[c]->wait_deadline) {
            break;
        }
        heap_set(l, i, l->timers[c]);
        i = c;
    }
    heap_set(l, i, co);
}

static void arm_timerfd(CoroLoop *l);

static void timer_add(CoroLoop *l, Coroutine *co)
{
    if (l->ntimers == l->timers_cap) {
        size_t cap = l->timers_cap ? l->timers_cap * 2 : 64;
        Coroutine **t = realloc(l->timers, cap * sizeof(*t));
        if (!t) {
            coro__die("out of memory for the timers of thread %d", (int)gettid());
        }
        l->timers = t;
        l->timers_cap = cap;
    }
    l->timers[l->ntimers++] = co;
    heap_up(l, l->ntimers - 1);
    if (l->tfd >= 0 && co->timer_slot == 1) {
        arm_timerfd(l);
    }
}

static void timer_remove(CoroLoop *l, Coroutine *co)
{
    size_t i = co->timer_slot - 1;
    co->timer_slot = 0;
    Coroutine *last = l->timers[--l->ntimers];
    if (i < l->ntimers) {
        heap_set(l, i, last);
        heap_up(l, i);
        heap_down(l, last->timer_slot - 1);
    }
}

/* Embedded loops: the timerfd fires at the earliest deadline, so coro_loop_fd() becomes
 * readable then. */
static void arm_timerfd(CoroLoop *l)
{
    struct itimerspec its = { { 0, 0 }, { 0, 0 } };
    if (l->ntimers) {
        int64_t d = l->timers[0]->wait_deadline;
        its.it_value.tv_sec = d / 1000000000;
        its.it_value.tv_nsec = d % 1000000000;
        if (!its.it_value.tv_sec && !its.it_value.tv_nsec) {
            its.it_value.tv_nsec = 1;
        }
    }
    timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ---- scheduling ---- */

static void ready_push(CoroLoop *l, Coroutine *co)
{
    co->ready_next = NULL;
    if (l->ready_tail) {
        l->ready_tail->ready_next = co;
    } else {
        l->ready_head = co;
    }
    l->ready_tail = co;
}

static void signal_loop(CoroLoop *l)
{
    if (!atomic_exchange(&l->remote_signalled, 1)) {
        uint64_t one = 1;
        while (write(l->evfd, &one, sizeof(one)) < 0 && errno == EINTR) {
        }
    }
}

static void schedule_on(CoroLoop *l, Coroutine *co)
{
    if (atomic_exchange(&co->wake_state, 1)) {
        return; /* already scheduled: it runs once */
    }
    CORO_PROBE_WAKE(co);
    if (l == tls_loop) {
        ready_push(l, co);
        if (l->tfd >= 0) {
            signal_loop(l); /* embedded: make coro_loop_fd() readable */
        }
        return;
    }
    pthread_mutex_lock(&l->remote_lock);
    co->ready_next = NULL;
    if (l->remote_tail) {
        l->remote_tail->ready_next = co;
    } else {
        l->remote_head = co;
    }
    l->remote_tail = co;
    pthread_mutex_unlock(&l->remote_lock);
    signal_loop(l);
}

void coro__wake_on(CoroLoop *l, Coroutine *co)
{
    schedule_on(l ? l : coro__loop_self(), co);
}

CORO_EXPORT void coro_wake(Coroutine *co)
{
    if (!co) {
        coro__die("coro_wake(NULL) on thread %d", (int)gettid());
    }
    CoroLoop *l = __atomic_load_n(&co->wait_loop, __ATOMIC_ACQUIRE);
    schedule_on(l ? l : coro__loop_self(), co);
}

CORO_EXPORT void coro_schedule(Coroutine *co)
{
    if (!co) {
        coro__die("coro_schedule(NULL) on thread %d", (int)gettid());
    }
    schedule_on(coro__loop_self(), co);
}

static void drain_remote(CoroLoop *l)
{
    if (!atomic_load(&l->remote_signalled)) {
        return; /* the flag is set after every push, under no lock */
    }
    uint64_t v;
    while (read(l->evfd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
    atomic_store(&l->remote_signalled, 0);
    pthread_mutex_lock(&l->remote_lock);
    Coroutine *head = l->remote_head;
    l->remote_head = l->remote_tail = NULL;
    pthread_mutex_unlock(&l->remote_lock);
    while (head) {
        Coroutine *next = head->ready_next;
        ready_push(l, head);
        head = next;
    }
}

/* Enters what is scheduled now (not what these coroutines schedule meanwhile: that waits for
 * the next round, so two coroutines waking each other cannot starve fds and timers). */
static size_t run_ready(CoroLoop *l)
{
    drain_remote(l);
    Coroutine *co = l->ready_head;
    l->ready_head = l->ready_tail = NULL;
    size_t n = 0;
    while (co) {
        Coroutine *next = co->ready_next;
        co->ready_next = NULL;
        atomic_store(&co->wake_state, 0);
        uint32_t st = atomic_load_explicit(&co->state, memory_order_acquire);
        if (st == CORO_STATE_CREATED || st == CORO_STATE_SUSPENDED) {
            coro_enter(co);
            n++;
        }
        /* else: a wake of a coroutine that ended (or runs) meanwhile is dropped. */
        co = next;
    }
    return n;
}

/* ---- waiting ---- */

Coroutine *coro__wait_self(const char *who)
{
    Coroutine *self = coro_self();
    if (!self) {
        coro__die("%s() called outside a coroutine, on thread %d", who, (int)gettid());
    }
    return self;
}

void coro__park(Coroutine *self, uint32_t kind, void *object, const char *who)
{
    int64_t now = coro_now_ns();
    publish_clock(now);
    self->wait_object = object;
    self->wait_since = (uint64_t)now;
    /* Readers see it with the registers of the yield below. Atomic: a waker on another
     * thread reads it for its probe (CORO_PROBE_WAKE) while we park or resume. */
    __atomic_store_n(&self->wait_kind, kind, __ATOMIC_RELAXED);
    CORO_PROBE_WAIT_BEGIN(self, kind, object, kind == CORO_WAIT_FD ? self->wait_fd : -1);
    coro_yield();
    CORO_PROBE_WAIT_END(self, kind, now); /* the tracer's clock gives the duration */
    /* wait_loop, wait_fd and wait_events stay: the waiting function owns them (a primitive
     * woken by a stray wake parks again with them) and clears wait_loop when done. */
    __atomic_store_n(&self->wait_kind, CORO_WAIT_NONE, __ATOMIC_RELAXED);
    self->wait_object = NULL;
    self->wait_since = 0;
    self->wait_deadline = 0;
}

static int fd_arm(CoroLoop *l, int fd, int events)
{
    if (fd < 0 || (unsigned)fd >= MAX_FD) {
        return -EBADF;
    }
    if ((size_t)fd >= l->fds_cap) {
        size_t cap = l->fds_cap ? l->fds_cap : 64;
        while (cap <= (size_t)fd) {
            cap *= 2;
        }
        FdWatch *f = realloc(l->fds, cap * sizeof(*f));
        if (!f) {
            return -ENOMEM;
        }
        memset(f + l->fds_cap, 0, (cap - l->fds_cap) * sizeof(*f));
        l->fds = f;
        l->fds_cap = cap;
    }
    FdWatch *w = &l->fds[fd];
    if (w->waiter) {
        return -EBUSY;
    }
    struct epoll_event ev = {
        .events = ((uint32_t)events & (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP)) |
                  EPOLLONESHOT,
        .data.u64 = (uint64_t)fd,
    };
    int op = w->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->epfd, op, fd, &ev) < 0) {
        /* ENOENT: closed and the number reused behind our back; EEXIST: the reverse. */
        int again = errno == ENOENT ? EPOLL_CTL_ADD : errno == EEXIST ? EPOLL_CTL_MOD : -1;
        if (again < 0 || epoll_ctl(l->epfd, again, fd, &ev) < 0) {
            int err = errno;
            w->registered = false;
            return -err;
        }
    }
    w->registered = true;
    return 0;
}

static int wait_fd(int fd, int events, int64_t deadline, const char *who)
{
    Coroutine *self = coro__wait_self(who);
    CoroLoop *l = coro__loop_self();
    int rc = fd_arm(l, fd, events);
    if (rc < 0) {
        return rc;
    }
    l->fds[fd].waiter = self;
    self->wait_fd = fd;
    self->wait_events = (uint32_t)events;
    self->wait_deadline = deadline;
    self->wait_result = 0;
    __atomic_store_n(&self->wait_loop, l, __ATOMIC_RELEASE);
    if (deadline) {
        timer_add(l, self);
    }
    l->fd_waiters++;
    coro__park(self, CORO_WAIT_FD, NULL, who);
    /* Resumed by l's own thread (its loop entered us). */
    l->fd_waiters--;
    if (l->fds[fd].waiter == self) {
        l->fds[fd].waiter = NULL; /* timed out or woken: the ONESHOT arm may still fire */
    }
    if (self->timer_slot) {
        timer_remove(l, self);
    }
    __atomic_store_n(&self->wait_loop, NULL, __ATOMIC_RELEASE);
    return self->wait_result;
}

CORO_EXPORT int coroutine_fn coro_wait_fd(int fd, int events)
{
    return wait_fd(fd, events, 0, "coro_wait_fd");
}

CORO_EXPORT int coroutine_fn coro_wait_fd_until(int fd, int events, int64_t deadline_ns)
{
    return wait_fd(fd, events, deadline_ns > 0 ? deadline_ns : 1, "coro_wait_fd_until");
}

CORO_EXPORT int coroutine_fn coro_sleep_ns(int64_t ns)
{
    Coroutine *self = coro__wait_self("coro_sleep_ns");
    CoroLoop *l = coro__loop_self();
    int64_t now = coro_now_ns();
    self->wait_deadline = now + (ns > 0 ? ns : 0);
    self->wait_result = 0;
    __atomic_store_n(&self->wait_loop, l, __ATOMIC_RELEASE);
    timer_add(l, self);
    coro__park(self, CORO_WAIT_SLEEP, NULL, "coro_sleep_ns");
    __atomic_store_n(&self->wait_loop, NULL, __ATOMIC_RELEASE);
    if (self->timer_slot) {
        timer_remove(l, self); /* woken before the deadline */
        return -EINTR;
    }
    return 0;
}

/* ---- one iteration ---- */

static void expire_timers(CoroLoop *l, int64_t now)
{
    while (l->ntimers && l->timers[0]->wait_deadline <= now) {
        Coroutine *co = l->timers[0];
        timer_remove(l, co);
        if (co->wait_kind == CORO_WAIT_FD && co->wait_fd >= 0 &&
            (size_t)co->wait_fd < l->fds_cap && l->fds[co->wait_fd].waiter == co) {
            l->fds[co->wait_fd].waiter = NULL;
        }
        co->wait_result = -ETIMEDOUT;
        schedule_on(l, co);
    }
}

/* What coro_loop_run() waits for: fds, timers, scheduled coroutines. */
static bool has_work(CoroLoop *l)
{
    return l->ready_head || l->fd_waiters || l->ntimers || atomic_load(&l->remote_signalled);
}

/* One iteration. run_mode: coro_loop_run's, which does not block once nothing is left. */
/* Rounds of scheduled coroutines run back to back before fds and timers are polled again:
 * a hand-off between coroutines then costs no syscall, and fds still get a turn. */
#define READY_ROUNDS 16

static int poll_once(CoroLoop *l, int64_t timeout_ns, bool run_mode)
{
    size_t n = run_ready(l);
    for (int r = 1; r < READY_ROUNDS && l->ready_head && !l->stop; r++) {
        n += run_ready(l);
    }
    if (run_mode && (!has_work(l) || l->stop)) {
        return (int)n;
    }
    int64_t now = coro_now_ns();
    if (n || l->ready_head || atomic_load(&l->remote_signalled)) {
        timeout_ns = 0; /* something ran or is due: just collect what is ready */
    } else if (l->ntimers) {
        int64_t until = l->timers[0]->wait_deadline - now;
        until = until < 0 ? 0 : until;
        timeout_ns = timeout_ns < 0 || until < timeout_ns ? until : timeout_ns;
    }
    struct epoll_event evs[EVENTS_PER_POLL];
    struct timespec ts = { timeout_ns / 1000000000, timeout_ns % 1000000000 };
    int k = epoll_pwait2(l->epfd, evs, EVENTS_PER_POLL, timeout_ns < 0 ? NULL : &ts, NULL);
    if (k < 0 && errno == ENOSYS) {
        /* Kernels before 5.11: milliseconds, rounded up so a timer never fires early. */
        int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);
        k = epoll_wait(l->epfd, evs, EVENTS_PER_POLL, ms);
    }
    if (k < 0) {
        if (errno != EINTR) {
            return -errno;
        }
        k = 0;
    }
    now = coro_now_ns();
    publish_clock(now);
    /* The iteration's clock, which coro_create stamps new records with (the readers' "never
     * entered" warning) at no cost of its own: a clock read on the pooled create path would
     * add ~20% to it. Set once here, before any coroutine of this iteration runs. */
    coro__shard_loop_clock(now);
    for (int i = 0; i < k; i++) {
        uint64_t tag = evs[i].data.u64;
        if (tag == TAG_EVENTFD) {
            drain_remote(l);
        } else if (tag == TAG_TIMERFD) {
            uint64_t v;
            if (read(l->tfd, &v, sizeof(v)) < 0) {
                /* EAGAIN: already read; the heap decides what expired. */
            }
        } else if (tag < l->fds_cap && l->fds[tag].waiter) {
            Coroutine *co = l->fds[tag].waiter;
            l->fds[tag].waiter = NULL;
            co->wait_result = (int)(evs[i].events & 0xffff);
            schedule_on(l, co);
        }
    }
    expire_timers(l, now);
    if (l->tfd >= 0) {
        arm_timerfd(l);
    }
    n += run_ready(l);
    return (int)(n > INT32_MAX ? INT32_MAX : n);
}

CORO_EXPORT int coro_loop_poll(int64_t timeout_ns)
{
    return poll_once(coro__loop_self(), timeout_ns, false);
}

CORO_EXPORT int coro_loop_run(void)
{
    if (coro_self()) {
        coro__die("coro_loop_run() called inside coroutine %llu: run the loop on the thread's "
                  "own stack", (unsigned long long)coro_id(coro_self()));
    }
    CoroLoop *l = coro__loop_self();
    l->stop = false;
    coro__shard_loop_clock(coro_now_ns()); /* for the first iteration's ready coroutines */
    int rc = 0;
    while (!l->stop && has_work(l)) {
        rc = poll_once(l, -1, true);
        if (rc < 0) {
            break;
        }
    }
    coro__shard_loop_clock(0); /* no loop runs: no creation time */
    return rc < 0 ? rc : 0;
}

CORO_EXPORT void coro_loop_stop(void)
{
    coro__loop_self()->stop = true;
}

CORO_EXPORT int coro_loop_fd(void)
{
    CoroLoop *l = coro__loop_self();
    if (l->tfd < 0) {
        int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_TIMERFD };
        if (tfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, tfd, &ev) < 0) {
            int err = errno;
            if (tfd >= 0) {
                close(tfd);
            }
            return -err;
        }
        l->tfd = tfd;
        arm_timerfd(l);
        if (l->ready_head) {
            signal_loop(l);
        }
    }
    return l->epfd;
}
