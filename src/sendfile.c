/* asyncio's loop.sendfile: a file sent over a transport. On a socket
 * transport the bytes go with sendfile(2) straight to the socket, after
 * the write buffer has flushed (asyncio's "empty waiter"), so what was
 * written first arrives first; on the others (write pipes, and TLS once
 * it comes) they are read from the file and written through the
 * transport, waiting while it is above its high-water mark. Either way
 * the transport refuses other writes until the send ends (-EBUSY), as
 * asyncio's does, so nothing interleaves with the file's bytes.
 *
 * The transport knows the sending task only through its waiter (net.h):
 * told when the buffer shrank and when the transport starts closing, the
 * waiter wakes the task; every step re-checks whether the transport still
 * takes bytes before it touches the socket again.
 *
 * Calls only down (sock.c, transport.c); see net.h for the layers.
 */
#define _GNU_SOURCE
#include "net.h"

#include <stdint.h>

enum { COPY_CHUNK = 64 * 1024 }; /* the default high-water mark's worth */

#define NO_LEVEL SIZE_MAX /* not waiting for the buffer, only for closing */

/* One cio_sendfile, in its task's frame from start to end. */
typedef struct sendfile_state {
    cio__transport_waiter w;   /* on the transport while this runs */
    cio__sendfile sf;          /* what sock.c sends; sf.sent is the count */
    cio__task *task;           /* the sending task */
    size_t level;              /* wake once the buffer holds at most this */
} sendfile_state;

/* Which transports sendfile(2) can feed: a plain stream socket's, whose
 * bytes reach the peer as they are. Everything else copies through the
 * transport: pipes, and TLS, whose bytes must be encrypted on the way. */
static bool native_possible(const cio_transport *t)
{
    return t->kind == &cio__stream_kind && !t->tls;
}

/* 0 while the transport takes bytes; once it is closing, the error to
 * stop with: the one it is lost to, else -EPIPE. */
static int stopped(const sendfile_state *s)
{
    const cio_transport *t = s->w.t;
    if (t && !t->closing)
        return 0;
    return t && t->lost_error ? t->lost_error : -EPIPE;
}

static int check_transport(void *arg) { return stopped(arg); }

/* The transport's news: closing wakes the task wherever it is parked
 * (sock.c's wait for the socket included, whose watcher force_close has
 * just removed); a buffer down to the level wakes a wait_level. */
static void on_news(cio__transport_waiter *w)
{
    sendfile_state *s = cio__container_of(w, sendfile_state, w);
    int err = stopped(s);
    if (err)
        cio__wake(s->task, err);
    else if (s->level != NO_LEVEL &&
             cio_transport_get_write_buffer_size(w->t) <= s->level)
        cio__wake(s->task, 0);
}

static const cio__wait_kind sendfile_wait = {"sendfile", NULL};

/* Parks until the write buffer holds at most level bytes. Returns 0, or
 * why it stopped: the transport is closing, the task was interrupted. */
static int wait_level(sendfile_state *s, size_t level)
{
    int r;
    while (!(r = stopped(s)) &&
           cio_transport_get_write_buffer_size(s->w.t) > level) {
        s->level = level;
        cio__task_waits(s->task, &sendfile_wait, s->w.t, s->w.t->fd);
        r = cio__park_checked(NULL, NULL);
        s->level = NO_LEVEL;
        if (r)
            break;
    }
    return r;
}

/* One chunk through the transport, after waiting while its protocol is
 * paused (asyncio's fallback drains the same way). Counted once the
 * transport took it: a write that fails at once closes the transport and
 * still returns 0, hence the second look. */
static int write_chunk(sendfile_state *s, const char *buf, size_t n)
{
    cio_transport *t = s->w.t;
    int r = t->protocol_paused ? wait_level(s, t->low) : 0;
    if (r)
        return r;
    s->w.writing = true;
    r = cio_transport_write(t, buf, n);
    s->w.writing = false;
    if (!r)
        r = stopped(s);
    if (!r)
        s->sf.sent += n;
    return r;
}

static void free_chunk(void *buf) { cio__free(buf); }

/* The copying path through the transport itself. */
static int copy_through(sendfile_state *s)
{
    cio__sendfile *sf = &s->sf;
    size_t size = sf->count && sf->count < COPY_CHUNK ? sf->count : COPY_CHUNK;
    char *buf = cio__malloc(size);
    if (!buf)
        return -ENOMEM;
    cio__cleanup c; /* only we hold buf: freed if the loop closes first */
    cio__cleanup_push(s->task, &c, free_chunk, buf);
    int r = 0;
    while (!r && !(sf->count && sf->sent == sf->count)) {
        size_t want = sf->count && sf->count - sf->sent < size
                          ? sf->count - sf->sent
                          : size;
        ssize_t got = (r = stopped(s)) ? r : cio__sendfile_read(sf, buf, want);
        if (got <= 0) {
            r = (int)got; /* 0: EOF */
            break;
        }
        r = write_chunk(s, buf, (size_t)got);
    }
    cio__cleanup_pop(s->task, &c);
    cio__free(buf);
    return r;
}

/* The loop closes while the task waits: the transport forgets the waiter
 * (unless it was freed first and cleared w.t). */
static void sendfile_gone(void *arg)
{
    sendfile_state *s = arg;
    if (s->w.t)
        s->w.t->waiter = NULL;
}

/* The checks asyncio makes before anything is sent. */
static int refused(const cio_transport *t, int64_t offset, int fallback)
{
    if (!t || offset < 0 || !t->kind->sendv)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task("cio_sendfile");
    if (t->closing || t->eof_requested)
        return t->lost_error ? t->lost_error : -EPIPE;
    if (t->waiter)
        return -EBUSY; /* asyncio: "Empty waiter is already set" */
    if (!native_possible(t) && !fallback)
        return -ENOTSUP;
    return cio__interrupted(cio__current);
}

/* Reading pauses meanwhile where sendfile(2) runs, as asyncio's. Not on
 * the copying path: a write pipe's "reader" only watches for its reader
 * leaving, and TLS may need to read for its own sake while writing. Nor
 * when the file goes in one call before anything waits: no callback can
 * run in between then, so the pause could not be seen, and it would cost
 * two epoll_ctl calls (a small static file's answer, over and over). */
static int send_over(sendfile_state *s, cio_transport *t)
{
    s->task = cio__current;
    s->w = (cio__transport_waiter){.news = on_news, .t = t};
    s->sf.sock = t->fd;
    s->sf.check = check_transport;
    s->sf.check_arg = s;
    if (native_possible(t) && cio_transport_get_write_buffer_size(t) == 0 &&
        cio__sendfile_try(&s->sf))
        return 0;
    bool resume = native_possible(t) && cio_transport_is_reading(t);
    if (resume)
        cio_transport_pause_reading(t);
    t->waiter = &s->w;
    cio__cleanup c;
    cio__cleanup_push(s->task, &c, sendfile_gone, s);
    int r = wait_level(s, 0);
    if (!r)
        r = native_possible(t) ? cio__sendfile_run(&s->sf) : copy_through(s);
    cio__cleanup_pop(s->task, &c);
    if (s->w.t) {
        t->waiter = NULL;
        if (resume)
            cio_transport_resume_reading(t);
    }
    return r;
}

int cio_sendfile(cio_transport *t, int file_fd, int64_t offset, size_t count,
                 int fallback, size_t *sent)
{
    sendfile_state s = {.level = NO_LEVEL,
                        .sf = {.file = file_fd, .offset = offset,
                               .count = count, .fallback = fallback != 0}};
    int r = refused(t, offset, fallback);
    if (!r)
        r = send_over(&s, t);
    if (sent)
        *sent = s.sf.sent;
    return r;
}
