/*
 * Echo over loopback, coroscope against libuv (run by bench/echo-bench.sh from `make bench`).
 *
 *   echo-bench coroscope          a server: one coroutine per connection, sequential
 *                                 read-then-write over coro_wait_fd (hello-server's style)
 *   echo-bench libuv              a server: libuv callbacks, as libuv's own tcp-echo-server
 *                                 example writes it (uv_read_start, uv_write per read)
 *   echo-bench client PORT CONNS SECONDS MSGSIZE
 *                                 the load: CONNS connections on 127.0.0.1, each sending a
 *                                 message and waiting for its echo, for SECONDS; prints
 *                                 requests/s. Plain epoll, neither library: the same client
 *                                 for both servers. Bounded in time; stops by itself.
 * The servers print their port on stdout and run until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <coroscope/coro.h>
#include <coroscope/loop.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static int listen_any(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr->sin_port = 0;
    socklen_t len = sizeof(*addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof(*addr)) < 0 || listen(fd, 4096) < 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) < 0) {
        perror("echo-bench: listen");
        exit(1);
    }
    return fd;
}

/* ---- coroscope ---- */

static void coroutine_fn echo_conn(void *opaque)
{
    int fd = (int)(intptr_t)opaque;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EAGAIN) {
            if (coro_wait_fd(fd, POLLIN) < 0) {
                break;
            }
            continue;
        }
        if (n <= 0) {
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w > 0) {
                off += w;
            } else if (w < 0 && errno == EAGAIN) {
                coro_wait_fd(fd, POLLOUT);
            } else {
                goto out;
            }
        }
    }
out:
    close(fd);
}

static void coroutine_fn echo_accept(void *opaque)
{
    int lfd = (int)(intptr_t)opaque;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN) {
                coro_wait_fd(lfd, POLLIN);
            }
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        CoroutineOptions o = { .stack_size = 16 * 1024 };
        coro_schedule(coro_create_opts(echo_conn, (void *)(intptr_t)fd, &o));
    }
}

static int serve_coroscope(void)
{
    struct sockaddr_in addr;
    int lfd = listen_any(&addr);
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    coro_schedule(coro_create(echo_accept, (void *)(intptr_t)lfd));
    return coro_loop_run() < 0;
}

/* ---- libuv, as its tcp-echo-server example ---- */

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} write_req_t;

static void alloc_buffer(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    buf->base = malloc(suggested);
    buf->len = suggested;
}

static void on_close(uv_handle_t *handle)
{
    free(handle);
}

static void echo_write(uv_write_t *req, int status)
{
    write_req_t *wr = (write_req_t *)req;
    free(wr->buf.base);
    free(wr);
}

static void echo_read(uv_stream_t *client, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        write_req_t *req = malloc(sizeof(*req));
        req->buf = uv_buf_init(buf->base, (unsigned)nread);
        uv_write(&req->req, client, &req->buf, 1, echo_write);
        return;
    }
    if (nread < 0) {
        uv_close((uv_handle_t *)client, on_close);
    }
    free(buf->base);
}

static void on_new_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        return;
    }
    uv_tcp_t *client = malloc(sizeof(*client));
    uv_tcp_init(uv_default_loop(), client);
    if (uv_accept(server, (uv_stream_t *)client) == 0) {
        uv_tcp_nodelay(client, 1);
        uv_read_start((uv_stream_t *)client, alloc_buffer, echo_read);
    } else {
        uv_close((uv_handle_t *)client, on_close);
    }
}

static int serve_libuv(void)
{
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_tcp_init(uv_default_loop(), &server);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (uv_listen((uv_stream_t *)&server, 4096, on_new_connection) != 0) {
        fprintf(stderr, "echo-bench: uv_listen failed\n");
        return 1;
    }
    int len = sizeof(addr);
    uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len);
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}

/* ---- the client ---- */

typedef struct Conn {
    int fd;
    size_t got;
} Conn;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int client(int port, int nconn, double seconds, size_t msg)
{
    int ep = epoll_create1(0);
    Conn *c = calloc((size_t)nconn, sizeof(*c));
    char out[4096], in[4096];
    memset(out, 'x', sizeof(out));
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    for (int i = 0; i < nconn; i++) {
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c[i].fd < 0 || connect(c[i].fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
            perror("echo-bench client: connect");
            return 1;
        }
        int one = 1;
        setsockopt(c[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
    }
    unsigned long requests = 0;
    double start = mono(), end = start + seconds;
    for (int i = 0; i < nconn; i++) {
        if (write(c[i].fd, out, msg) != (ssize_t)msg) {
            perror("echo-bench client: write");
            return 1;
        }
    }
    struct epoll_event evs[256];
    while (mono() < end) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < k; e++) {
            Conn *cn = &c[evs[e].data.u32];
            ssize_t n = read(cn->fd, in, sizeof(in));
            if (n <= 0) {
                fprintf(stderr, "echo-bench client: connection closed by the server\n");
                return 1;
            }
            cn->got += (size_t)n;
            if (cn->got >= msg) {
                cn->got -= msg;
                requests++;
                if (write(cn->fd, out, msg) != (ssize_t)msg) {
                    perror("echo-bench client: write");
                    return 1;
                }
            }
        }
    }
    double took = mono() - start;
    printf("%.0f\n", (double)requests / took);
    for (int i = 0; i < nconn; i++) {
        close(c[i].fd);
    }
    free(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "coroscope") == 0) {
        return serve_coroscope();
    }
    if (argc == 2 && strcmp(argv[1], "libuv") == 0) {
        return serve_libuv();
    }
    if (argc == 6 && strcmp(argv[1], "client") == 0) {
        return client(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), (size_t)atoi(argv[5]));
    }
    fprintf(stderr, "usage: echo-bench coroscope | libuv | client PORT CONNS SECONDS MSGSIZE\n");
    return 64;
}
