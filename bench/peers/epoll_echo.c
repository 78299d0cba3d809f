/* epoll_echo PORT: the hand-written epoll echo server, the machine's limit
 * for the echo benchmarks.
 *
 * One thread, level-triggered epoll, non-blocking sockets on 127.0.0.1.
 * Per readiness: one read into a shared 64 KiB buffer and one write of
 * what came back (two system calls per message, plus epoll_wait shared
 * by the ready connections). What the socket does not take goes into the
 * connection's own write buffer; then the connection waits for EPOLLOUT
 * and stops reading until the buffer is flushed, so memory stays bounded.
 * TCP_NODELAY is set as asyncio, uvloop and Go set it. Prints only errors;
 * runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536

struct conn {
    int fd;
    char *wbuf; /* pending bytes (NULL while none) */
    size_t wlen, woff;
};

static int epfd;
static char rbuf[BUF_SIZE];

static void die(const char *what)
{
    fprintf(stderr, "epoll_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void conn_close(struct conn *c)
{
    close(c->fd); /* also leaves the epoll set */
    free(c->wbuf);
    free(c);
}

static void set_events(struct conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

/* Writes buf; keeps what the socket did not take. Returns -1 if the
 * connection is gone. */
static int send_or_buffer(struct conn *c, const char *buf, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(c->fd, buf + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -1;
        }
        off += (size_t)w;
    }
    if (off == n)
        return 0;
    c->wbuf = malloc(n - off);
    if (!c->wbuf)
        return -1;
    memcpy(c->wbuf, buf + off, n - off);
    c->wlen = n - off;
    c->woff = 0;
    set_events(c, EPOLLOUT);
    return 0;
}

static int flush(struct conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t w = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            return -1;
        }
        c->woff += (size_t)w;
    }
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = c->woff = 0;
    set_events(c, EPOLLIN);
    return 0;
}

static void accept_all(int lfd)
{
    int one = 1;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                fprintf(stderr, "epoll_echo: accept: %s\n", strerror(errno));
                return;
            }
            die("accept4");
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: epoll_echo PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind");
    if (listen(lfd, SOMAXCONN) < 0)
        die("listen");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    /* The listening socket is told apart by a NULL data pointer. */
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll_ctl");

    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                accept_all(lfd);
                continue;
            }
            if (c->wbuf) { /* waiting for EPOLLOUT (or an error) */
                if (flush(c) < 0)
                    conn_close(c);
                continue;
            }
            ssize_t r = read(c->fd, rbuf, sizeof rbuf);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0 || send_or_buffer(c, rbuf, (size_t)r) < 0)
                conn_close(c);
        }
    }
}
