/* Streams: asyncio's StreamReader and StreamWriter as one object over a
 * transport. The stream is the transport's protocol: data_received fills
 * the read buffer and wakes the task waiting to read; pause/resume_writing
 * gate drain. Reading pauses the transport while more than twice the
 * limit is buffered, so memory stays bounded whatever the peer sends.
 *
 * readline and readuntil hand out pointers into the buffer, valid until
 * the next read call: while such data is out ("pinned"), data arriving
 * never moves it; a buffer that must grow meanwhile is replaced and the
 * old one kept until that next read.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <string.h>

enum {
    DEFAULT_LIMIT = 64 * 1024,
    BUF_FIRST = 4096,       /* the read buffer's first size */
    BUF_KEEP = 16 * 1024    /* a drained buffer larger than this goes back */
};

_Thread_local size_t cio__stream_scanned;
double cio__stream_free_linger = 30.0;
double cio__stream_shrink_delay = 1.0;

/* A task waiting in drain. */
typedef struct drainer {
    cio__list link;
    cio__task *task;
} drainer;

struct cio_stream {
    cio_transport *t;          /* NULL once the connection is lost */
    size_t limit;
    char *buf;                 /* unread data: buf[head .. len) */
    size_t head, len, cap;
    char *stash;               /* an old buffer holding pinned data */
    size_t stash_cap;
    bool pinned;               /* a borrowed pointer is out */
    bool eof, lost, orphaned;  /* orphaned: freed by the user, await lost */
    bool debug;                /* made on a debug loop (which it may outlive) */
    bool dead;                 /* debug: freed, kept in the quarantine */
    bool paused;               /* the transport is above its high mark */
    size_t partial;            /* the last read's CIO_EINCOMPLETE bytes */
    size_t consumed;           /* the last read's CIO_ELIMIT count */
    int error;                 /* the connection's error, once lost */
    cio__task *reader;         /* the task waiting for data */
    cio__list drainers;
    cio_future *closed;        /* done when the connection is lost */
    cio__handle linger;        /* orphaned: aborts a flush that takes too long */
    cio__handle shrink;        /* frees a large buffer still drained */
    /* Streams a server made (copied: the server may go first). */
    cio_client_connected handler;
    void *handler_arg;
    cio_loop *loop;
};

typedef struct stream_server {
    cio_client_connected cb;
    void *arg;
    size_t limit;
    cio_loop *loop;
} stream_server;

/* ------------------------------------------------------------ the buffer */

static size_t avail(const cio_stream *s) { return s->len - s->head; }

static bool drained(const cio_stream *s)
{
    return s->head == s->len && !s->pinned;
}

/* A buffer above BUF_KEEP is a mapping of its own, so that freeing it
 * gives its pages back: freed from the middle of malloc's heap, 10,000 of
 * them stayed resident, from a third to all of them by the run. */
static char *buf_alloc(size_t cap)
{
    return cap > BUF_KEEP ? cio__big_alloc(cap) : cio__malloc(cap);
}

static void buf_free(char *b, size_t cap)
{
    if (cap > BUF_KEEP)
        cio__big_free(b, cap);
    else
        cio__free(b);
}

static void free_buffer(cio_stream *s)
{
    buf_free(s->buf, s->cap);
    s->buf = NULL;
    s->cap = 0;
}

/* s->shrink's callback: the buffer is freed if it is drained still. */
static void shrink_due(void *arg)
{
    cio_stream *s = arg;
    if (drained(s) && s->cap > BUF_KEEP)
        free_buffer(s);
}

/* A drained buffer that a burst made large goes back (the next bytes get
 * a BUF_FIRST one): 10,000 connections that each once read 64 KiB must
 * not keep 64 KiB each while idle. Not at once: a stream reading 64 KiB
 * messages drains after each, and freeing it every time made glibc trim
 * and the kernel fault the pages in again (a 64 KiB echo lost 30%). So
 * the buffer goes if it is still drained cio__stream_shrink_delay later,
 * one timer at most per stream and delay. One at most BUF_KEEP always
 * stays; a pinned one stays until the next read call. */
static void give_back(cio_stream *s)
{
    if (!drained(s))
        return;
    s->head = s->len = 0;
    if (s->cap <= BUF_KEEP || s->shrink.state != CIO__H_IDLE)
        return;
    cio_loop *loop = s->shrink.loop;
    if (cio__handle_schedule_at(&s->shrink, cio_loop_time(loop) +
                                                cio__stream_shrink_delay))
        free_buffer(s); /* no room for the timer: at once, then */
}

/* Starts a read call: borrowed data from the last one is released. */
static void unpin(cio_stream *s)
{
    s->pinned = false;
    buf_free(s->stash, s->stash_cap);
    s->stash = NULL;
    give_back(s);
}

/* Makes room for n more bytes at the end, moving nothing that is pinned. */
static int reserve(cio_stream *s, size_t n)
{
    if (s->len + n <= s->cap)
        return 0;
    if (!s->pinned && s->head && avail(s) + n <= s->cap) {
        memmove(s->buf, s->buf + s->head, avail(s));
        s->len -= s->head;
        s->head = 0;
        return 0;
    }
    size_t cap = s->cap ? s->cap : BUF_FIRST;
    while (cap < avail(s) + n)
        cap *= 2;
    char *b = buf_alloc(cap);
    if (!b)
        return -ENOMEM;
    if (avail(s))
        memcpy(b, s->buf + s->head, avail(s));
    if (s->pinned && !s->stash) {
        s->stash = s->buf; /* the borrowed bytes live there */
        s->stash_cap = s->cap;
    } else {
        buf_free(s->buf, s->cap);
    }
    s->len -= s->head;
    s->head = 0;
    s->buf = b;
    s->cap = cap;
    return 0;
}

/* Consumes n bytes; reading resumes once the buffer is under the limit. */
static void consume(cio_stream *s, size_t n)
{
    s->head += n;
    give_back(s);
    if (s->t && !s->lost && avail(s) <= s->limit &&
        !cio_transport_is_reading(s->t) && !cio_transport_is_closing(s->t))
        cio_transport_resume_reading(s->t);
}

static void wake_reader(cio_stream *s)
{
    if (s->reader)
        cio__wake(s->reader, 0);
}

static void wake_drainers(cio_stream *s)
{
    for (cio__list *n = s->drainers.next; n != &s->drainers; n = n->next)
        cio__wake(cio__container_of(n, drainer, link)->task, 0);
}

/* ------------------------------------------------------- the protocol */

/* The quarantine lets it go (its mark goes first). */
static void stream_release(void *p)
{
    cio_stream *s = p;
    s->dead = false;
    cio__free(s);
}

/* A stream may be freed after its loop (it then only frees memory): the
 * quarantine it goes to in debug mode is the process's. */
static void stream_free_now(cio_stream *s)
{
    cio__handle_unschedule(&s->linger);
    cio__handle_unschedule(&s->shrink);
    cio_future_unref(s->closed);
    buf_free(s->stash, s->stash_cap);
    buf_free(s->buf, s->cap);
    s->stash = s->buf = NULL;
    if (!s->debug) {
        cio__free(s);
        return;
    }
    s->dead = true; /* a second cio_stream_free sees it */
    cio__quarantine(NULL, s, stream_release);
}

static void on_data(cio_transport *t, const char *data, size_t n, void *ctx)
{
    cio_stream *s = ctx;
    if (reserve(s, n)) {
        cio_transport_abort(t); /* cannot keep the bytes: lose the link */
        s->error = -ENOMEM;
        return;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    if (avail(s) > 2 * s->limit)
        cio_transport_pause_reading(t);
    wake_reader(s);
}

static int on_eof(cio_transport *t, void *ctx)
{
    (void)t;
    cio_stream *s = ctx;
    s->eof = true;
    wake_reader(s);
    return 1; /* keep the write side open: a half-close */
}

static void on_lost(cio_transport *t, int error, void *ctx)
{
    (void)t;
    cio_stream *s = ctx;
    if (!s) /* the factory could not allocate it */
        return;
    s->t = NULL;
    s->lost = s->eof = true;
    if (error && !s->error)
        s->error = error;
    if (s->orphaned) {
        stream_free_now(s);
        return;
    }
    wake_reader(s);
    wake_drainers(s);
    if (!cio_future_done(s->closed))
        cio_future_set_result(s->closed, NULL);
}

static void on_pause(cio_transport *t, void *ctx)
{
    (void)t;
    ((cio_stream *)ctx)->paused = true;
}

static void on_resume(cio_transport *t, void *ctx)
{
    (void)t;
    cio_stream *s = ctx;
    s->paused = false;
    wake_drainers(s);
}

static void on_made(cio_transport *t, void *ctx);

static const cio_protocol stream_protocol = {
    .connection_made = on_made,
    .data_received = on_data,
    .eof_received = on_eof,
    .connection_lost = on_lost,
    .pause_writing = on_pause,
    .resume_writing = on_resume,
};

/* A freed stream's flush outlived its linger: the peer is not reading. */
static void linger_over(void *arg)
{
    cio_stream *s = arg;
    if (s->t)
        cio_transport_abort(s->t);
}

static cio_stream *stream_new(cio_loop *loop, size_t limit)
{
    cio_stream *s = cio__calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (cio_future_new(loop, &s->closed)) {
        cio__free(s);
        return NULL;
    }
    s->limit = limit ? limit : DEFAULT_LIMIT;
    s->debug = loop->debug;
    cio__list_init(&s->drainers);
    cio__handle_init(&s->linger, loop, linger_over, s);
    cio__handle_init(&s->shrink, loop, shrink_due, s);
    return s;
}

/* ------------------------------------------------------------- reading */

static const cio__wait_kind read_wait = {"stream read", NULL};
static const cio__wait_kind drain_wait = {"stream drain", NULL};

/* Waits for the buffer to change. Returns 0, -EBUSY (another task is
 * reading), -ECANCELED, -ETIMEDOUT. */
static int wait_data(cio_stream *s)
{
    if (s->reader)
        return -EBUSY;
    if (s->t && !s->lost && !cio_transport_is_reading(s->t) &&
        avail(s) <= 2 * s->limit)
        cio_transport_resume_reading(s->t);
    s->reader = cio__current;
    cio__task_waits(cio__current, &read_wait, s, -1);
    int r = cio__park_checked(NULL, NULL);
    s->reader = NULL;
    return r;
}

/* Every read call starts here: a task, not interrupted, nothing pinned.
 * `call`: the public function, for debug mode's report. */
static int read_begin_(cio_stream *s, const char *call)
{
    if (!s)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task(call);
    unpin(s);
    s->partial = s->consumed = 0;
    return cio__interrupted(cio__current);
}
#define read_begin(s) read_begin_((s), __func__)

/* EOF came before what a read wanted: everything buffered is handed over
 * as the read's partial bytes (asyncio's IncompleteReadError.partial) and
 * consumed, so at_eof holds afterwards. *data (may be NULL) gets them,
 * borrowed until the next read call. */
static void take_partial(cio_stream *s, const char **data)
{
    s->partial = avail(s);
    if (data) {
        *data = s->buf ? s->buf + s->head : NULL; /* NULL: nothing came */
        s->pinned = s->partial > 0; /* none borrowed: the buffer may go */
    }
    consume(s, s->partial);
}

/* At EOF: 0, or the connection's error if it was lost to one. */
static ssize_t eof_result(const cio_stream *s) { return s->error; }

ssize_t cio_stream_read(cio_stream *s, void *buf, size_t n)
{
    int r = read_begin(s);
    if (r || n == 0)
        return r;
    while (!avail(s) && !s->eof)
        if ((r = wait_data(s)))
            return r;
    if (!avail(s))
        return eof_result(s);
    size_t take = avail(s) < n ? avail(s) : n;
    memcpy(buf, s->buf + s->head, take);
    consume(s, take);
    return (ssize_t)take;
}

ssize_t cio_stream_read_all(cio_stream *s, char **data)
{
    if (data)
        *data = NULL;
    int r = read_begin(s);
    if (r || !data)
        return r ? r : -EINVAL;
    while (!s->eof) {
        if (avail(s) > s->limit) /* read_all is not bound by the limit */
            cio_transport_resume_reading(s->t);
        if ((r = wait_data(s)))
            return r;
    }
    if (s->error)
        return s->error;
    size_t n = avail(s);
    char *out = cio__malloc(n + 1);
    if (!out)
        return -ENOMEM;
    if (n)
        memcpy(out, s->buf + s->head, n);
    out[n] = 0; /* convenient for text; not counted */
    consume(s, n);
    *data = out;
    return (ssize_t)n;
}

ssize_t cio_stream_readexactly(cio_stream *s, void *buf, size_t n,
                               size_t *partial)
{
    if (partial)
        *partial = 0;
    int r = read_begin(s);
    if (r)
        return r;
    while (avail(s) < n && !s->eof) {
        if (avail(s) > 2 * s->limit) /* n itself may exceed the limit */
            cio_transport_resume_reading(s->t);
        if ((r = wait_data(s)))
            return r;
    }
    size_t take = avail(s) < n ? avail(s) : n;
    if (take)
        memcpy(buf, s->buf + s->head, take);
    if (take == n) {
        consume(s, take);
        return (ssize_t)n;
    }
    take_partial(s, NULL); /* the bytes are in buf too */
    if (partial)
        *partial = take;
    return s->error ? s->error : CIO_EINCOMPLETE;
}

/* Finds the earliest end of any separator in the buffer (0 if none), and
 * where that separator starts. The first `searched` buffered bytes were
 * searched before and held no separator, so only a match ending past them
 * is possible: each separator is looked for from len(sep) - 1 bytes before
 * that point (one may straddle it), which keeps a long line arriving in
 * pieces linear to search, not quadratic. */
static size_t find_sep(const cio_stream *s, const char *const *seps,
                       size_t nseps, size_t searched, size_t *start)
{
    if (!avail(s)) /* and buf may be NULL: no arithmetic on it */
        return 0;
    size_t best = 0;
    const char *data = s->buf + s->head;
    for (size_t i = 0; i < nseps; i++) {
        size_t k = strlen(seps[i]);
        size_t from = searched >= k ? searched - (k - 1) : 0;
        cio__stream_scanned += avail(s) - from;
        const char *at = memmem(data + from, avail(s) - from, seps[i], k);
        if (at) {
            size_t end = (size_t)(at - data) + k;
            if (!best || end < best) {
                best = end;
                if (start)
                    *start = (size_t)(at - data);
            }
        }
    }
    return best;
}

/* asyncio's LimitOverrunError.consumed when no separator was found: the
 * buffered bytes that cannot be part of one, all but the last
 * len(longest separator) - 1. */
static size_t no_sep_prefix(const cio_stream *s, const char *const *seps,
                            size_t nseps)
{
    size_t longest = 0;
    for (size_t i = 0; i < nseps; i++)
        if (strlen(seps[i]) > longest)
            longest = strlen(seps[i]);
    return avail(s) + 1 > longest ? avail(s) + 1 - longest : 0;
}

ssize_t cio_stream_readuntil(cio_stream *s, const char *const *seps,
                             size_t nseps, const char **data)
{
    if (data)
        *data = NULL;
    int r = read_begin(s);
    if (r)
        return r;
    if (!data || !seps || nseps == 0)
        return -EINVAL;
    for (size_t i = 0; i < nseps; i++)
        if (!seps[i] || !*seps[i])
            return -EINVAL;
    /* Bytes from head searched in vain; head stays put meanwhile (a
     * buffer that grows keeps the bytes in order from head). */
    for (size_t searched = 0;;) {
        size_t start = 0;
        size_t end = find_sep(s, seps, nseps, searched, &start);
        if (end && start > s->limit) { /* asyncio measures where it starts */
            s->consumed = start;      /* found, but too far: the data stays */
            return CIO_ELIMIT;
        }
        if (end) {
            *data = s->buf + s->head;
            s->pinned = true;
            consume(s, end);
            return (ssize_t)end;
        }
        if (avail(s) > s->limit) {
            s->consumed = no_sep_prefix(s, seps, nseps);
            return CIO_ELIMIT;
        }
        if (s->eof && s->error)
            return s->error;
        if (s->eof) {
            take_partial(s, data);
            return CIO_EINCOMPLETE;
        }
        searched = avail(s);
        if ((r = wait_data(s)))
            return r;
    }
}

/* asyncio's readline: readuntil("\n"), except that a partial last line is
 * returned at EOF, and a line over the limit is consumed (the whole line
 * if its end came, else everything buffered) before CIO_ELIMIT. */
ssize_t cio_stream_readline(cio_stream *s, const char **line)
{
    static const char *const nl[] = {"\n"};
    ssize_t n = cio_stream_readuntil(s, nl, 1, line);
    if (n == CIO_EINCOMPLETE) { /* the last line: no error for readline */
        n = (ssize_t)s->partial;
        s->partial = 0;
    } else if (n == CIO_ELIMIT) {
        size_t end = find_sep(s, nl, 1, 0, NULL);
        s->consumed = end ? end : avail(s);
        consume(s, s->consumed);
    }
    return n;
}

size_t cio_stream_partial(const cio_stream *s) { return s ? s->partial : 0; }

size_t cio_stream_consumed(const cio_stream *s)
{
    return s ? s->consumed : 0;
}

int cio_stream_at_eof(const cio_stream *s)
{
    return s && s->eof && avail(s) == 0;
}

size_t cio_stream_buffered(const cio_stream *s)
{
    return s ? avail(s) : 0;
}

/* ------------------------------------------------------------- writing */

static int write_check(const cio_stream *s)
{
    if (!s)
        return -EINVAL;
    if (s->lost || !s->t)
        return s->error ? s->error : -EPIPE;
    return 0;
}

int cio_stream_write(cio_stream *s, const void *data, size_t n)
{
    int r = write_check(s);
    return r ? r : cio_transport_write(s->t, data, n);
}

int cio_stream_writelines(cio_stream *s, const struct iovec *iov, int iovcnt)
{
    int r = write_check(s);
    return r ? r : cio_transport_writelines(s->t, iov, iovcnt);
}

static void drainer_gone(void *d) { cio__list_unlink(&((drainer *)d)->link); }

int cio_stream_drain(cio_stream *s)
{
    if (!s)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task(__func__);
    int r = cio__interrupted(cio__current);
    while (!r && s->paused && !s->lost) {
        drainer d = {.task = cio__current};
        cio__list_push_back(&s->drainers, &d.link);
        cio__cleanup c; /* the stream outlives the loop, d our stack */
        cio__cleanup_push(cio__current, &c, drainer_gone, &d);
        cio__task_waits(cio__current, &drain_wait, s, -1);
        r = cio__park_checked(NULL, NULL);
        cio__cleanup_pop(cio__current, &c);
        cio__list_unlink(&d.link);
    }
    if (r)
        return r;
    if (s->lost)
        return s->error ? s->error : -ECONNRESET;
    return 0;
}

int cio_stream_sendfile(cio_stream *s, int file_fd, int64_t offset,
                        size_t count, int fallback, size_t *sent)
{
    int r = write_check(s);
    if (r && sent)
        *sent = 0;
    return r ? r : cio_sendfile(s->t, file_fd, offset, count, fallback, sent);
}

int cio_stream_set_write_buffer_max(cio_stream *s, size_t max)
{
    int r = write_check(s);
    return r ? r : cio_transport_set_write_buffer_max(s->t, max);
}

size_t cio_stream_get_write_buffer_size(const cio_stream *s)
{
    return s && s->t && !s->lost ? cio_transport_get_write_buffer_size(s->t)
                                 : 0;
}

int cio_stream_write_eof(cio_stream *s)
{
    int r = write_check(s);
    return r ? r : cio_transport_write_eof(s->t);
}

int cio_stream_can_write_eof(cio_stream *s)
{
    return s && s->t && cio_transport_can_write_eof(s->t);
}

void cio_stream_close(cio_stream *s)
{
    if (s && s->t)
        cio_transport_close(s->t);
}

int cio_stream_is_closing(const cio_stream *s)
{
    return s && (!s->t || cio_transport_is_closing(s->t));
}

int cio_stream_wait_closed(cio_stream *s)
{
    if (!s)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task(__func__);
    cio_future *mine; /* shielded: cancelling us must not cancel `closed` */
    int r = cio_shield(s->closed, &mine);
    if (r)
        return r;
    r = cio_await(mine, NULL);
    cio_future_unref(mine);
    return r ? r : s->error;
}

int cio_stream_get_extra_info(cio_stream *s, const char *name, void *buf,
                              socklen_t *len)
{
    if (!s)
        return -EINVAL;
    if (!s->t)
        return -ENOTCONN;
    return cio_transport_get_extra_info(s->t, name, buf, len);
}

void cio_stream_free(cio_stream *s)
{
    if (!s)
        return;
    if (s->dead || s->orphaned) { /* dead: only ever set in debug mode */
        if (s->debug) /* to the running loop's handler: its own may be gone */
            cio__misuse(NULL, "cio_stream_free of a stream already freed",
                        "stream", NULL, s);
        return;
    }
    if (s->lost || !s->t) {
        stream_free_now(s);
        return;
    }
    /* The transport still calls us: close it, free at connection_lost.
     * Nobody can drain any more, so a peer that never reads would keep the
     * flush, the fd and the memory forever: after the linger it is cut. */
    s->orphaned = true;
    cio_transport_close(s->t); /* connection_lost comes later, never now */
    cio_loop *loop = s->linger.loop;
    if (cio__handle_schedule_at(&s->linger,
                                cio_loop_time(loop) + cio__stream_free_linger))
        cio_transport_abort(s->t);
}

void cio_stream_abort(cio_stream *s)
{
    if (s && s->t)
        cio_transport_abort(s->t);
}

/* What the stream read and nobody took yet came after the peer began
 * TLS: those bytes are the handshake's, consumed here either way. */
int cio_stream_start_tls(cio_stream *s, const cio_tls_options *o,
                         int server_side)
{
    if (!s)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task(__func__);
    if (!s->t)
        return -ENOTCONN;
    if (s->reader)
        return -EBUSY;
    int err = cio__transport_start_tls(
        s->t, o, server_side, avail(s) ? s->buf + s->head : NULL, avail(s));
    if (err != -EINVAL && err != -EALREADY) {
        s->head = s->len;
        unpin(s);
    }
    return err;
}

/* ---------------------------------------------------------- connecting */

/* The loop closed while connecting: the stream never reached the caller. */
static void stream_gone(void *s) { stream_free_now(s); }

int cio_open_connection(const char *host, const char *port,
                        const cio_stream_options *opts, cio_stream **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cio__current)
        return cio__no_task(__func__);
    cio_stream *s = stream_new(cio__current->fut.loop, opts ? opts->limit : 0);
    if (!s)
        return -ENOMEM;
    cio__cleanup c; /* s is in no hands but ours until we return it */
    cio__cleanup_push(cio__current, &c, stream_gone, s);
    cio_connection_options co = {.tls = opts ? opts->tls : NULL};
    int r = cio_create_connection(host, port, &stream_protocol, s, &co, &s->t);
    cio__cleanup_pop(cio__current, &c);
    if (r) {
        stream_free_now(s);
        return r;
    }
    *out = s;
    return 0;
}

int cio_open_unix_connection(const char *path, const cio_stream_options *opts,
                             cio_stream **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cio__current)
        return cio__no_task(__func__);
    cio_stream *s = stream_new(cio__current->fut.loop, opts ? opts->limit : 0);
    if (!s)
        return -ENOMEM;
    cio__cleanup c;
    cio__cleanup_push(cio__current, &c, stream_gone, s);
    int r = cio__create_unix_connection(path, &stream_protocol, s,
                                        opts ? opts->tls : NULL, &s->t);
    cio__cleanup_pop(cio__current, &c);
    if (r) {
        stream_free_now(s);
        return r;
    }
    *out = s;
    return 0;
}

size_t cio__stream_buffer_capacity(const cio_stream *s)
{
    return s->cap;
}

/* ------------------------------------------------------------- serving */

/* Each connection's task runs the user's callback. */
static int run_handler(void *arg)
{
    cio_stream *s = arg;
    return s->handler(s, s->handler_arg);
}

/* The task ended - or never ran (cancelled first): the stream goes. */
static void handler_done(cio_future *task, void *arg)
{
    (void)task;
    cio_stream_free(arg);
}

static void on_made(cio_transport *t, void *ctx)
{
    cio_stream *s = ctx;
    if (!s) { /* the factory could not allocate */
        cio_transport_abort(t);
        return;
    }
    s->t = t;
    if (!s->handler)
        return; /* a client stream: its creator has it */
    if (cio_transport_is_closing(t)) { /* closed before it began */
        s->orphaned = true;            /* freed by connection_lost */
        return;
    }
    cio_task *task;
    int err = cio_task_new(s->loop, run_handler, s, NULL, &task);
    if (!err) {
        err = cio_future_add_done_callback(task, handler_done, s);
        if (err)
            cio_task_cancel(task); /* it never runs; we free below */
        cio_future_unref(task);
    }
    if (err) {
        cio__report(s->loop, "cannot start a connection's task", err,
                    "server", NULL, NULL);
        s->orphaned = true;
        cio_transport_abort(t);
    }
}

static void *stream_factory(void *arg)
{
    stream_server *ss = arg;
    cio_stream *s = stream_new(ss->loop, ss->limit);
    if (s) {
        s->handler = ss->cb;
        s->handler_arg = ss->arg;
        s->loop = ss->loop;
    }
    return s;
}

static void stream_server_free(void *p) { cio__free(p); }

static int start(cio_client_connected cb, void *arg, const char *host,
                 const char *port, const char *path,
                 const cio_stream_options *sopts,
                 const cio_server_options *opts, cio_server **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cb)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task("cio_start_server");
    stream_server *ss = cio__malloc(sizeof *ss);
    if (!ss)
        return -ENOMEM;
    *ss = (stream_server){cb, arg, sopts ? sopts->limit : 0,
                          cio__current->fut.loop};
    int r = path ? cio_create_unix_server(path, &stream_protocol,
                                          stream_factory, ss, opts, out)
                 : cio_create_server(host, port, &stream_protocol,
                                     stream_factory, ss, opts, out);
    if (r) {
        cio__free(ss);
        return r;
    }
    cio__server_set_owner(*out, ss, stream_server_free);
    return 0;
}

int cio_start_server(cio_client_connected cb, void *arg, const char *host,
                     const char *port, const cio_stream_options *sopts,
                     const cio_server_options *opts, cio_server **server)
{
    return start(cb, arg, host, port, NULL, sopts, opts, server);
}

int cio_start_unix_server(cio_client_connected cb, void *arg,
                          const char *path, const cio_stream_options *sopts,
                          const cio_server_options *opts, cio_server **server)
{
    return start(cb, arg, NULL, NULL, path, sopts, opts, server);
}

/* --------------------------------------------------------------- pipes */

int cio__stream_pipe(cio_loop *loop, int fd, bool write_side, size_t limit,
                     cio_stream **out)
{
    cio_stream *s = stream_new(loop, limit);
    if (!s)
        return -ENOMEM;
    int err = cio__pipe_transport(loop, fd, write_side, &stream_protocol, s,
                                  &s->t);
    if (err) {
        stream_free_now(s);
        return err;
    }
    *out = s;
    return 0;
}
