/* The epoll backend (Linux): level-triggered, as asyncio's selectors. */
#define _GNU_SOURCE
#include "internal.h"

#include <sys/epoll.h>

enum { MAX_EVENTS = 256 };

typedef struct epoll_state {
    int epfd;
    struct epoll_event events[MAX_EVENTS];
} epoll_state;

static int epoll_init(cio_loop *loop)
{
    epoll_state *st = cio__malloc(sizeof *st);
    if (!st)
        return -ENOMEM;
    st->epfd = cio__sys_epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int err = st->epfd;
        cio__free(st);
        return err;
    }
    loop->backend_data = st;
    return 0;
}

static void epoll_fini(cio_loop *loop)
{
    epoll_state *st = loop->backend_data;
    cio__sys_close(st->epfd);
    cio__free(st);
    loop->backend_data = NULL;
}

static int epoll_watch(cio_loop *loop, int fd, unsigned old, unsigned events)
{
    epoll_state *st = loop->backend_data;
    struct epoll_event ev = {0};
    ev.events = ((events & CIO__READ) ? EPOLLIN : 0) |
                ((events & CIO__WRITE) ? EPOLLOUT : 0);
    ev.data.fd = fd;
    if (!events)
        return cio__sys_epoll_ctl(st->epfd, EPOLL_CTL_DEL, fd, &ev);
    int op = old ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int err = cio__sys_epoll_ctl(st->epfd, op, fd, &ev);
    /* A watched fd that was closed and reopened under the same number is
     * unknown to the kernel (ENOENT); a new one it still knows (EEXIST). */
    if (err == -ENOENT && op == EPOLL_CTL_MOD)
        err = cio__sys_epoll_ctl(st->epfd, EPOLL_CTL_ADD, fd, &ev);
    else if (err == -EEXIST && op == EPOLL_CTL_ADD)
        err = cio__sys_epoll_ctl(st->epfd, EPOLL_CTL_MOD, fd, &ev);
    return err;
}

static int epoll_wait_events(cio_loop *loop, int timeout_ms,
                             cio__fired_fn fired)
{
    epoll_state *st = loop->backend_data;
    int n = cio__sys_epoll_wait(st->epfd, st->events, MAX_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++) {
        unsigned e = st->events[i].events, events = 0;
        /* An error or hang-up wakes both directions, so the callback
         * finds out from its read or write. */
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
            events |= CIO__READ;
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            events |= CIO__WRITE;
        fired(loop, st->events[i].data.fd, events);
    }
    return n;
}

const cio__backend cio__backend_epoll = {
    "epoll", epoll_init, epoll_fini, epoll_watch, epoll_wait_events,
};
