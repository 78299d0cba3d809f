/* sendfile_loop [--blocking] FILE PORT: the hand-written sendfile(2)
 * server, the machine's limit for the sendfile benchmark.
 *
 * Listens on 127.0.0.1:PORT and serves the whole of FILE to each
 * connection, one at a time, then closes it. Default: a non-blocking
 * socket, sendfile(2) of everything left until EAGAIN, then epoll_wait
 * for EPOLLOUT (what an event loop does, with nothing else around it).
 * --blocking: a blocking socket and a plain sendfile(2) loop, no epoll.
 * SIGPIPE is ignored. Prints only errors; runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "sendfile_loop: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int listen_on(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0)
        die("bind/listen");
    return fd;
}

/* Waits until the one socket in ep can take more. */
static void wait_writable(int ep)
{
    struct epoll_event ev;
    while (epoll_wait(ep, &ev, 1, -1) < 0)
        if (errno != EINTR)
            die("epoll_wait");
}

/* Sends file [0, size) to sock; a peer that leaves early ends it. */
static void serve(int sock, int file, off_t size, int blocking)
{
    int ep = -1;
    if (!blocking) {
        fcntl(sock, F_SETFL, O_NONBLOCK);
        ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLOUT, .data.fd = sock};
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev) < 0)
            die("epoll");
    }
    off_t off = 0;
    while (off < size) {
        ssize_t n = sendfile(sock, file, &off, (size_t)(size - off));
        if (n > 0)
            continue;
        if (n == 0)
            break;
        if (errno == EAGAIN)
            wait_writable(ep);
        else if (errno != EINTR)
            break;
    }
    if (ep >= 0)
        close(ep);
    close(sock);
}

int main(int argc, char **argv)
{
    int blocking = argc > 1 && strcmp(argv[1], "--blocking") == 0;
    if (argc != 3 + blocking) {
        fprintf(stderr, "usage: sendfile_loop [--blocking] FILE PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int file = open(argv[1 + blocking], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (file < 0 || fstat(file, &st) < 0)
        die("open");
    int lfd = listen_on(atoi(argv[2 + blocking]));
    for (;;) {
        int sock = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (sock < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept");
        }
        serve(sock, file, st.st_size, blocking);
    }
}
