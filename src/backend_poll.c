/* The poll backend: portable, O(n) per wait. An array of pollfds and an
 * fd -> slot index so watch changes are O(1). */
#define _GNU_SOURCE
#include "internal.h"

#include <poll.h>
#include <string.h>
#include <sys/stat.h>

typedef struct poll_state {
    struct pollfd *fds;
    int nfds;
    size_t cap;
    int *slot_of; /* fd -> index in fds, -1 if unwatched */
    size_t slot_cap;
} poll_state;

static int poll_init(cio_loop *loop)
{
    poll_state *st = cio__calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    loop->backend_data = st;
    return 0;
}

static void poll_fini(cio_loop *loop)
{
    poll_state *st = loop->backend_data;
    cio__free(st->fds);
    cio__free(st->slot_of);
    cio__free(st);
    loop->backend_data = NULL;
}

static int grow(poll_state *st, int fd)
{
    size_t old = st->slot_cap;
    int *s = cio__grow(st->slot_of, &st->slot_cap, (size_t)fd + 1, sizeof *s,
                       64);
    if (!s)
        return -ENOMEM;
    memset(s + old, 0xff, (st->slot_cap - old) * sizeof *s); /* -1: none */
    st->slot_of = s;
    struct pollfd *f =
        cio__grow(st->fds, &st->cap, st->nfds + 1, sizeof *f, 64);
    if (!f)
        return -ENOMEM;
    st->fds = f;
    return 0;
}

/* epoll refuses fds that are not open (EBADF) and regular files (EPERM);
 * poll would accept both, so check the same here and behave alike. */
static int check_fd(int fd)
{
    unsigned mode;
    int err = cio__sys_fstat_mode(fd, &mode);
    if (err)
        return err;
    return S_ISREG(mode) || S_ISDIR(mode) ? -EPERM : 0;
}

static int poll_watch(cio_loop *loop, int fd, unsigned old, unsigned events)
{
    poll_state *st = loop->backend_data;
    short want = ((events & CIO__READ) ? POLLIN : 0) |
                 ((events & CIO__WRITE) ? POLLOUT : 0);
    if (!old) {
        int err = check_fd(fd);
        if (!err)
            err = grow(st, fd);
        if (err)
            return err;
        st->slot_of[fd] = st->nfds;
        st->fds[st->nfds++] = (struct pollfd){.fd = fd, .events = want};
        return 0;
    }
    int i = st->slot_of[fd];
    if (events) {
        st->fds[i].events = want;
        return 0;
    }
    st->fds[i] = st->fds[--st->nfds]; /* move the last into the hole */
    st->slot_of[st->fds[i].fd] = i;
    st->slot_of[fd] = -1;
    return 0;
}

static int poll_wait_events(cio_loop *loop, int timeout_ms,
                             cio__fired_fn fired)
{
    poll_state *st = loop->backend_data;
    int n = cio__sys_poll(st->fds, st->nfds, timeout_ms);
    if (n <= 0)
        return n;
    /* Collect first: callbacks run later, but `fired` may not change the
     * array, so walking it directly is safe. */
    for (int i = 0; i < st->nfds; i++) {
        short r = st->fds[i].revents;
        if (!r)
            continue;
        unsigned events = 0;
        if (r & (POLLIN | POLLERR | POLLHUP | POLLNVAL))
            events |= CIO__READ;
        if (r & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))
            events |= CIO__WRITE;
        fired(loop, st->fds[i].fd, events);
    }
    return n;
}

const cio__backend cio__backend_poll = {
    "poll", poll_init, poll_fini, poll_watch, poll_wait_events,
};
