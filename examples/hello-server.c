/*
 * The seed of coroscope, for real: QEMU's say_hello written as sequential code over an event
 * loop instead of callbacks. A line-based TCP server on a loopback port, one coroutine per
 * connection:
 *
 *     co_send(fd, "Hello, what is your name?\n");
 *     co_read_line(fd, name, sizeof(name), 5 s);
 *     co_send(fd, "Hello, <name>!\n");
 *
 * then it echoes lines until the peer closes (`make bench` drives that part with 1,000
 * connections against a libuv echo server). A line "job TEXT" is handed to a worker pool
 * waiting on a CoQueue and answered with the worker's result.
 *
 * Options (the demo and tests/e2e-wait.sh use them to park coroutines in every kind of wait):
 *   --clients N    N client coroutines in this process talk to the server over loopback
 *   --idle N       N clients connect and stop mid-conversation (their server coroutines wait
 *                  in co_read_line: an fd wait with a 60 s deadline)
 *   --workers N    N workers waiting on the job queue (default 2)
 *   --deadlock     two coroutines take two CoMutexes in opposite orders and deadlock
 *   --port P       listen on P (default 0: any; the port is printed)
 * It prints "ready PORT" once every client has done its part, then serves until SIGTERM or
 * SIGINT, and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <coroscope/coro.h>
#include <coroscope/loop.h>
#include <coroscope/sync.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NS_PER_S 1000000000LL

/* ---- sequential I/O helpers on top of coro_wait_fd ---- */

/* Sends all of buf, waiting while the socket is full. 0, or -errno (-EPIPE: peer gone). */
static int coroutine_fn co_send(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            int r = coro_wait_fd(fd, POLLOUT);
            if (r < 0) {
                return r;
            }
        } else if (n < 0 && errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

typedef struct LineReader {
    int fd;
    char buf[1024];
    size_t len;
} LineReader;

/* Reads one line (without its newline) into line. Its length, 0 at end of stream, or -errno
 * (-ETIMEDOUT when the deadline passed, -EMSGSIZE for an over-long line). */
static ssize_t coroutine_fn co_read_line(LineReader *r, char *line, size_t size,
                                         int64_t timeout_ns)
{
    int64_t deadline = coro_now_ns() + timeout_ns;
    for (;;) {
        char *nl = memchr(r->buf, '\n', r->len);
        if (nl) {
            size_t n = (size_t)(nl - r->buf);
            if (n >= size) {
                return -EMSGSIZE;
            }
            memcpy(line, r->buf, n);
            line[n] = '\0';
            r->len -= n + 1;
            memmove(r->buf, nl + 1, r->len);
            return (ssize_t)n;
        }
        if (r->len == sizeof(r->buf)) {
            return -EMSGSIZE;
        }
        ssize_t got = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
        if (got > 0) {
            r->len += (size_t)got;
        } else if (got == 0) {
            return 0;
        } else if (errno == EAGAIN) {
            int w = coro_wait_fd_until(r->fd, POLLIN, deadline);
            if (w < 0) {
                return w;
            }
        } else if (errno != EINTR) {
            return -errno;
        }
    }
}

/* ---- the worker pool: jobs on a CoQueue ---- */

typedef struct Job {
    char text[256];
    bool done;
    CoQueue done_q;
    struct Job *next;
} Job;

static CoMutex jobs_lock;
static CoQueue jobs_q;
static Job *jobs_head, *jobs_tail;

static void coroutine_fn worker(void *opaque)
{
    for (;;) {
        coro_mutex_lock(&jobs_lock);
        while (!jobs_head) {
            coro_queue_wait(&jobs_q, &jobs_lock);
        }
        Job *j = jobs_head;
        jobs_head = j->next;
        if (!jobs_head) {
            jobs_tail = NULL;
        }
        coro_mutex_unlock(&jobs_lock);
        for (char *p = j->text; *p; p++) {
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        }
        j->done = true;
        coro_queue_restart_all(&j->done_q);
    }
}

static void coroutine_fn run_job(Job *j)
{
    coro_queue_init(&j->done_q);
    j->done = false;
    j->next = NULL;
    coro_mutex_lock(&jobs_lock);
    if (jobs_tail) {
        jobs_tail->next = j;
    } else {
        jobs_head = j;
    }
    jobs_tail = j;
    coro_queue_next(&jobs_q);
    coro_mutex_unlock(&jobs_lock);
    while (!j->done) {
        coro_queue_wait(&j->done_q, NULL);
    }
}

/* ---- the server ---- */

static unsigned conn_count;

static void coroutine_fn say_hello(void *opaque)
{
    LineReader r = { .fd = (int)(intptr_t)opaque };
    char name[64], line[256], reply[320];
    static const char greeting[] = "Hello, what is your name?\n";
    if (co_send(r.fd, greeting, sizeof(greeting) - 1) < 0) {
        goto out;
    }
    ssize_t n = co_read_line(&r, name, sizeof(name), 60 * NS_PER_S);
    if (n <= 0) {
        goto out; /* closed, timed out, or too long */
    }
    int len = snprintf(reply, sizeof(reply), "Hello, %s!\n", name);
    if (co_send(r.fd, reply, (size_t)len) < 0) {
        goto out;
    }
    while ((n = co_read_line(&r, line, sizeof(line), 60 * NS_PER_S)) > 0) {
        if (strncmp(line, "job ", 4) == 0) {
            Job j;
            snprintf(j.text, sizeof(j.text), "%s", line + 4);
            run_job(&j);
            len = snprintf(reply, sizeof(reply), "%s\n", j.text);
        } else {
            len = snprintf(reply, sizeof(reply), "%s\n", line);
        }
        if (co_send(r.fd, reply, (size_t)len) < 0) {
            break;
        }
    }
out:
    close(r.fd);
}

static void coroutine_fn acceptor(void *opaque)
{
    int lfd = (int)(intptr_t)opaque;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN) {
                if (coro_wait_fd(lfd, POLLIN) < 0) {
                    return;
                }
            } else if (errno != EINTR && errno != ECONNABORTED) {
                perror("hello-server: accept");
                return;
            }
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char name[CORO_NAME_SIZE];
        snprintf(name, sizeof(name), "conn-%u", ++conn_count);
        CoroutineOptions o = { .name = name, .stack_size = 64 * 1024 };
        coro_schedule(coro_create_opts(say_hello, (void *)(intptr_t)fd, &o));
    }
}

/* ---- clients in this process (the demo's traffic) ---- */

static struct sockaddr_in server_addr;
static unsigned clients_pending;

static int connect_loopback(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&server_addr, sizeof(server_addr)) < 0 &&
        errno != EINPROGRESS) {
        int err = -errno;
        close(fd);
        return err;
    }
    int w = coro_wait_fd(fd, POLLOUT);
    if (w < 0 || (w & (POLLERR | POLLHUP))) {
        close(fd);
        return w < 0 ? w : -ECONNREFUSED;
    }
    return fd;
}

static void coroutine_fn client(void *opaque)
{
    bool idle = opaque != NULL;
    int fd = connect_loopback();
    if (fd < 0) {
        fprintf(stderr, "hello-server: client cannot connect: %s\n", strerror(-fd));
        clients_pending--;
        return;
    }
    LineReader r = { .fd = fd };
    char line[256];
    co_read_line(&r, line, sizeof(line), 5 * NS_PER_S); /* the greeting */
    if (idle) {
        /* Stop mid-conversation: the server's coroutine now waits for our name. */
        clients_pending--;
        co_read_line(&r, line, sizeof(line), 3600 * NS_PER_S);
        close(fd);
        return;
    }
    co_send(fd, "coroscope\n", 10);
    co_read_line(&r, line, sizeof(line), 5 * NS_PER_S);
    co_send(fd, "job make it loud\n", 17);
    co_read_line(&r, line, sizeof(line), 5 * NS_PER_S);
    if (strcmp(line, "MAKE IT LOUD") != 0) {
        fprintf(stderr, "hello-server: client got \"%s\" for its job\n", line);
    }
    close(fd);
    clients_pending--;
}

/* ---- the deliberate deadlock ---- */

static CoMutex accounts, audit_log;

static void coroutine_fn db_a(void *opaque)
{
    coro_mutex_lock(&accounts);
    coro_sleep_ns(10 * 1000000);
    coro_mutex_lock(&audit_log); /* db-b holds it and waits for accounts */
    coro_mutex_unlock(&audit_log);
    coro_mutex_unlock(&accounts);
}

static void coroutine_fn db_b(void *opaque)
{
    coro_mutex_lock(&audit_log);
    coro_sleep_ns(10 * 1000000);
    coro_mutex_lock(&accounts);
    coro_mutex_unlock(&accounts);
    coro_mutex_unlock(&audit_log);
}

/* ---- main ---- */

static int stop_pipe[2];

static void on_stop(int sig)
{
    if (write(stop_pipe[1], "x", 1) < 0) {
        /* the loop is stopping anyway */
    }
}

static void coroutine_fn stopper(void *opaque)
{
    coro_wait_fd(stop_pipe[0], POLLIN);
    coro_loop_stop();
}

static void spawn(CoroutineEntry *fn, void *arg, const char *name)
{
    CoroutineOptions o = { .name = name, .stack_size = 64 * 1024 };
    Coroutine *co = coro_create_opts(fn, arg, &o);
    if (!co) {
        perror("hello-server: coro_create");
        exit(1);
    }
    coro_schedule(co);
}

int main(int argc, char **argv)
{
    unsigned clients = 0, idle = 0, workers = 2;
    bool deadlock = false;
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--clients") && i + 1 < argc) {
            clients = (unsigned)atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--idle") && i + 1 < argc) {
            idle = (unsigned)atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
            workers = (unsigned)atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--deadlock")) {
            deadlock = true;
        } else {
            fprintf(stderr, "usage: hello-server [--clients N] [--idle N] [--workers N] "
                    "[--deadlock] [--port P]\n");
            return 64;
        }
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    server_addr.sin_family = AF_INET;
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server_addr.sin_port = htons((uint16_t)port);
    socklen_t alen = sizeof(server_addr);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&server_addr, sizeof(server_addr)) < 0 ||
        listen(lfd, 4096) < 0 || getsockname(lfd, (struct sockaddr *)&server_addr, &alen) < 0) {
        perror("hello-server: listen on 127.0.0.1");
        return 1;
    }
    if (pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        perror("hello-server: pipe");
        return 1;
    }
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    signal(SIGPIPE, SIG_IGN);

    coro_mutex_init(&jobs_lock);
    coro_queue_init(&jobs_q);
    spawn(acceptor, (void *)(intptr_t)lfd, "acceptor");
    spawn(stopper, NULL, "stopper");
    for (unsigned i = 0; i < workers; i++) {
        char name[CORO_NAME_SIZE];
        snprintf(name, sizeof(name), "worker-%u", i + 1);
        spawn(worker, NULL, name);
    }
    if (deadlock) {
        coro_mutex_init(&accounts);
        coro_mutex_init(&audit_log);
        spawn(db_a, NULL, "db-a");
        spawn(db_b, NULL, "db-b");
    }
    clients_pending = clients + idle;
    for (unsigned i = 0; i < clients + idle; i++) {
        char name[CORO_NAME_SIZE];
        snprintf(name, sizeof(name), "%s-%u", i < clients ? "client" : "idle-client", i + 1);
        spawn(client, i < clients ? NULL : (void *)1, name);
    }
    /* Run until every client has done its part, then say so. */
    while (clients_pending > 0) {
        if (coro_loop_poll(-1) < 0) {
            perror("hello-server: loop");
            return 1;
        }
    }
    /* Let the deadlocked pair reach their second lock (they sleep 10 ms first). */
    int64_t settle = coro_now_ns() + 50 * 1000000;
    while (coro_now_ns() < settle) {
        coro_loop_poll(settle - coro_now_ns());
    }
    printf("ready %d\n", ntohs(server_addr.sin_port));
    fflush(stdout);
    int rc = coro_loop_run();
    if (rc < 0) {
        fprintf(stderr, "hello-server: loop: %s\n", strerror(-rc));
        return 1;
    }
    return 0;
}
