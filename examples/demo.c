/*
 * A toy connection server run by coroutines, stopped at a moment when its coroutines are in
 * every state coroscope knows: never entered, suspended deep in a call chain, running, and
 * running-but-nested. It prints its own coroutines with coro_dump(); with --wait it then
 * sleeps so that `coroscope` and gdb can look at it from outside (examples/demo.mk does).
 */
#include <coroscope/coro.h>
#include <coroscope/inspect.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct conn {
    int fd;
    char buf[64];
    size_t len;
};

static int wait_for_data(struct conn *c)
{
    /* A real server would park the coroutine on an fd here; the demo just yields. */
    coro_yield();
    return c->fd;
}

static size_t read_header(struct conn *c)
{
    int fd = wait_for_data(c);
    c->len = (size_t)snprintf(c->buf, sizeof(c->buf), "GET / fd=%d", fd);
    return c->len;
}

static int parse_request(struct conn *c)
{
    size_t n = read_header(c);
    return n > 3 && memcmp(c->buf, "GET", 3) == 0;
}

static void connection(void *opaque)
{
    struct conn *c = opaque;
    while (parse_request(c)) {
        c->fd++;
    }
}

static void acceptor(void *opaque)
{
    for (;;) {
        coro_yield(); /* waiting for the listening socket */
    }
}

static void health_check(void *opaque)
{
    int *wait = opaque;
    /* Running, entered by the supervisor: the supervisor is "running" too (nested). */
    printf("== coro_dump(STDOUT_FILENO, CORO_DUMP_TEXT) from inside coroutine \"health-check\":\n");
    fflush(stdout);
    coro_dump(STDOUT_FILENO, CORO_DUMP_TEXT);
    if (*wait) {
        printf("== demo pid %d is waiting; look at it with coroscope or gdb\n", (int)getpid());
        fflush(stdout);
        for (;;) {
            pause(); /* a signal dump (CORO_DUMP_SIGNAL) ends pause(): wait on */
        }
    }
    printf("== health-check done\n");
}

static void supervisor(void *opaque)
{
    CoroutineOptions o = { .name = "health-check" };
    coro_enter(coro_create_opts(health_check, opaque, &o));
}

int main(int argc, char **argv)
{
    int wait = argc > 1 && strcmp(argv[1], "--wait") == 0;
    static struct conn conns[2] = { { .fd = 7 }, { .fd = 9 } };
    CoroutineOptions o = { .name = "acceptor" };
    coro_enter(coro_create_opts(acceptor, NULL, &o));
    o.name = "conn-7";
    coro_enter(coro_create_opts(connection, &conns[0], &o));
    o.name = "conn-9";
    coro_create_opts(connection, &conns[1], &o); /* accepted, not served yet */
    o.name = "supervisor";
    coro_enter(coro_create_opts(supervisor, &wait, &o));
    return 0;
}
