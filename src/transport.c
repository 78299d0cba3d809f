/* Transports (asyncio's selector transports) over connected stream
 * sockets, datagram sockets and pipes, with their protocols and flow
 * control.
 *
 * Level-triggered readers; a writer watcher only while the write buffer
 * holds data; a write goes to the kernel at once when nothing is queued,
 * so the buffer only ever holds what the kernel refused. Protocol
 * callbacks run on the loop; a transport stays valid until
 * connection_lost has returned, then cio frees it. Every failure is
 * delivered as a code (a return value, or the error of connection_lost /
 * error_received), never SIGPIPE, never a crash.
 *
 * Re-entrancy: any protocol callback may write, close or abort its
 * transport; freeing only ever happens from lost_handle, on a later turn
 * of the loop, so no callback returns into a freed transport.
 *
 * Calls only down (sys.c, the loop); knows nothing of servers, which
 * follow their connections through the `gone` hook (net.h).
 */
#define _GNU_SOURCE
#include "net.h"
#include "tls.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>

enum {
    READ_CHUNK = 65536,          /* bytes per recv */
    DEFAULT_HIGH = 64 * 1024,    /* asyncio's write-buffer high-water mark */
    DEFAULT_WMAX = 64 << 20,     /* the most a write may leave buffered */
    IOV_MAX_SEND = 1024,         /* iovecs per writev: below any IOV_MAX */
    WBUF_MIN = 4096,             /* the write buffer's first size */
    WBUF_KEEP = 64 * 1024        /* a flushed buffer larger than this goes */
};

size_t cio__dgram_read_size = READ_CHUNK;

static size_t buffered(const cio_transport *t)
{
    return t->dq_bytes + (t->wlen - t->whead); /* one of them is 0 */
}

/* TLS that is not (or no longer) carrying application data. */
static bool tls_busy(const cio_transport *t)
{
    return t->tls && t->tls->phase != CIO__TLS_OPEN;
}

static void tls_conn_free(cio_transport *t);
static void tls_begin_shutdown(cio_transport *t);
static void tls_end_wait(cio_transport *t, int err);
static void tls_close(cio_transport *t);
static void tls_readable(void *arg);

/* ------------------------------------------------------------- lifetime */

/* Datagrams still queued when the transport goes are dropped, as the
 * kernel drops what it cannot send: UDP promises no delivery. */
static void free_datagrams(cio_transport *t)
{
    while (t->dq) {
        cio__datagram *d = t->dq;
        t->dq = d->next;
        cio__free(d);
    }
}

/* As asyncio: a protocol always hears connection_made, then
 * connection_lost - its only chance to free its context - even when the
 * transport closed before connection_made had its turn. */
/* The one exception: a TLS connection whose first handshake failed was
 * never the protocol's (a client's call returned the error; a server made
 * no context for it), so it hears nothing. */
static void call_connection_lost(void *arg)
{
    cio_transport *t = arg;
    if (!t->made && !t->quiet) {
        t->made = true;
        if (t->p.connection_made)
            t->p.connection_made(t, t->ctx);
    }
    if (t->p.connection_lost && !t->quiet)
        t->p.connection_lost(t, t->lost_error, t->ctx);
    if (t->waiter) /* only as the loop closes: the task never runs again */
        t->waiter->t = NULL;
    cio__list_unlink(&t->link);
    if (t->gone)
        t->gone(t->gone_arg);
    tls_conn_free(t);
    cio__sys_close(t->fd);
    free_datagrams(t);
    cio__free(t->wbuf);
    cio__free(t);
}

/* The task waiting for the write buffer to empty (start_tls) resumes. */
static void wake_flush_waiter(cio_transport *t, int result)
{
    cio__task *w = t->flush_waiter;
    if (w) {
        t->flush_waiter = NULL;
        cio__wake(w, result);
    }
}

/* The buffer shrank or t is closing: a sendfile waiting on t hears it. */
static void tell_waiter(cio_transport *t)
{
    if (t->waiter)
        t->waiter->news(t->waiter);
}

static void reader_off(cio_transport *t)
{
    if (t->reading)
        cio_remove_reader(t->loop, t->fd);
    t->reading = false;
}

/* Stops all I/O and schedules connection_lost(err); idempotent, so every
 * path that ends a transport can call it without asking who came first. */
static void force_close(cio_transport *t, int err)
{
    if (t->lost_scheduled)
        return;
    t->lost_scheduled = true;
    t->closing = true;
    t->lost_error = err;
    reader_off(t);
    cio_remove_writer(t->loop, t->fd);
    t->whead = t->wlen = 0;
    cio__handle_unschedule(&t->made_handle); /* lost runs made first */
    /* A waiting task resumes before lost_handle frees t (FIFO). */
    wake_flush_waiter(t, err ? err : -EPIPE);
    tell_waiter(t);
    if (t->tls) {
        cio__handle_unschedule(&t->tls->timer);
        cio__handle_unschedule(&t->tls->pending);
        tls_end_wait(t, err ? err : -ECONNRESET);
    }
    cio__handle_schedule(&t->lost_handle);
}

/* The errors a peer causes by going away are the connection's business,
 * told through connection_lost; anything else is also reported. */
static void fatal_error(cio_transport *t, int err)
{
    if (err != -ECONNRESET && err != -EPIPE && err != -ECONNABORTED &&
        err != -ETIMEDOUT && err != -ENOTCONN && err != -EHOSTUNREACH &&
        err != CIO_ETLS && err != CIO_ETLSEOF) /* TLS: asyncio's too */
        cio__report(t->loop, "fatal error on transport", err, "transport",
                    NULL, t);
    force_close(t, err);
}

/* Over TLS, bytes OpenSSL already decrypted wait for no fd event: a
 * handle reads them. */
static void reader_on(cio_transport *t)
{
    if (t->reading || t->closing)
        return;
    int err = cio_add_reader(t->loop, t->fd, t->kind->readable, t);
    if (err == 0)
        t->reading = true;
    else
        fatal_error(t, err);
    if (t->reading && t->tls && cio__tls_pending(t->tls->tls))
        cio__handle_schedule(&t->tls->pending);
}

/* connection_made, then reading - unless the protocol closed or paused
 * the transport from inside connection_made. */
static void made(void *arg)
{
    cio_transport *t = arg;
    t->made = true;
    if (t->p.connection_made)
        t->p.connection_made(t, t->ctx);
    if (!t->closing && !t->paused)
        reader_on(t);
}

/* ctx may be NULL here and set by the caller before the transport starts:
 * a server makes the context last, once nothing else can fail. */
int cio__transport_new(cio_loop *loop, int fd, const cio__transport_kind *kind,
                       const cio_protocol *proto, void *ctx,
                       cio_transport **out)
{
    cio_transport *t = cio__calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->loop = loop;
    t->fd = fd;
    t->kind = kind;
    if (proto)
        t->p = *proto;
    t->ctx = ctx;
    t->high = DEFAULT_HIGH;
    t->wmax = DEFAULT_WMAX;
    t->low = DEFAULT_HIGH / 4;
    t->dq_tail = &t->dq;
    cio__handle_init(&t->made_handle, loop, made, t);
    cio__handle_init(&t->lost_handle, loop, call_connection_lost, t);
    cio__list_init(&t->link);
    *out = t;
    return 0;
}

void cio__transport_start(cio_transport *t, cio__list *list, bool now)
{
    cio__list_push_back(list ? list : &t->loop->net.transports, &t->link);
    if (t->kind == &cio__stream_kind) /* latency matters more than packets */
        (void)cio__sys_setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (now)
        made(t);
    else
        cio__handle_schedule(&t->made_handle);
}

/* The loop closes: unlike force_close, nothing is scheduled any more, so
 * connection_lost runs (and frees t) right here. */
static void close_with_loop(cio_transport *t)
{
    cio__list_init(&t->link);
    if (!t->closing)
        cio__report(t->loop, "unclosed transport", 0, "transport", NULL, t);
    if (!t->lost_scheduled)
        t->lost_error = -ESHUTDOWN;
    /* Nothing may schedule t again: a write from connection_lost fails
     * at once instead of sending (and failing into force_close). */
    t->closing = t->lost_scheduled = true;
    reader_off(t);
    cio_remove_writer(t->loop, t->fd);
    cio__handle_unschedule(&t->made_handle);
    cio__handle_unschedule(&t->lost_handle);
    t->gone = NULL;
    wake_flush_waiter(t, -ESHUTDOWN);
    if (t->tls) {
        cio__handle_unschedule(&t->tls->timer);
        cio__handle_unschedule(&t->tls->pending);
        tls_end_wait(t, -ESHUTDOWN);
    }
    call_connection_lost(t);
}

void cio__transports_close(cio_loop *loop)
{
    cio__list *n;
    while ((n = cio__list_pop_front(&loop->net.transports)))
        close_with_loop(cio__container_of(n, cio_transport, link));
    cio__free(loop->net.read_buf);
    loop->net.read_buf = NULL;
}

/* --------------------------------------------------------------- reading */

/* The loop's shared read buffer: data_received sees it only during the
 * call, as asyncio's bytes object is the protocol's to keep or copy. */
static char *read_buffer(cio_loop *loop)
{
    if (!loop->net.read_buf)
        loop->net.read_buf = cio__malloc(READ_CHUNK);
    return loop->net.read_buf;
}

/* The peer's EOF. A socket may stay open for writing if eof_received
 * asks; a read pipe has no write side, so it closes whatever the protocol
 * answers (asyncio's _UnixReadPipeTransport ignores the return value). */
static void eof(cio_transport *t)
{
    reader_off(t);
    int keep_open = t->p.eof_received ? t->p.eof_received(t, t->ctx) : 0;
    if (!keep_open || t->kind->pipe || t->tls) /* TLS: asyncio's too */
        cio_transport_close(t);
}

/* Where the next bytes go: the protocol's own buffer (a buffered
 * protocol, asyncio's get_buffer) or the loop's. NULL: t is closing. */
static void *read_target(cio_transport *t, size_t *size)
{
    void *buf;
    *size = READ_CHUNK;
    if (t->p.get_buffer) {
        buf = t->p.get_buffer(t, READ_CHUNK, size, t->ctx);
        if (!buf || *size == 0) {
            fatal_error(t, -ENOBUFS);
            return NULL;
        }
    } else if (!(buf = read_buffer(t->loop))) {
        fatal_error(t, -ENOMEM);
    }
    return buf;
}

/* One read of a byte stream; recv is a constant at each call site, so the
 * compiler can make it a direct call. */
static inline void read_bytes(cio_transport *t,
                              ssize_t (*recv)(int fd, void *buf, size_t n))
{
    size_t size;
    void *buf = read_target(t, &size);
    if (!buf)
        return;
    ssize_t n = recv(t->fd, buf, size);
    if (n > 0) {
        if (t->p.get_buffer) {
            if (t->p.buffer_updated)
                t->p.buffer_updated(t, (size_t)n, t->ctx);
        } else if (t->p.data_received) {
            t->p.data_received(t, buf, (size_t)n, t->ctx);
        }
    } else if (n == 0) {
        eof(t);
    } else if (!cio__net_again(n)) {
        fatal_error(t, (int)n);
    }
}

static void stream_readable(void *arg) { read_bytes(arg, cio__sys_recv); }

static void pipe_readable(void *arg) { read_bytes(arg, cio__sys_read); }

/* A write pipe turns "readable" only when its reader went away: what is
 * still buffered can never be delivered. */
static void pipe_reader_left(void *arg)
{
    cio_transport *t = arg;
    force_close(t, buffered(t) ? -EPIPE : 0);
}

/* One datagram; an error here is about an earlier send (e.g. ECONNREFUSED
 * from an ICMP) and does not end the transport. MSG_TRUNC (a UDP socket)
 * makes n the datagram's full length: one longer than we read is dropped
 * and reported as -EMSGSIZE, never delivered cut short. */
static void dgram_readable(void *arg)
{
    cio_transport *t = arg;
    char *buf = read_buffer(t->loop);
    if (!buf) {
        fatal_error(t, -ENOMEM);
        return;
    }
    struct sockaddr_storage addr;
    unsigned len = sizeof addr;
    int flags;
    ssize_t n = cio__sys_recvfrom(t->fd, buf, cio__dgram_read_size, &addr,
                                  &len, MSG_TRUNC, &flags);
    if (n > (ssize_t)cio__dgram_read_size)
        n = -EMSGSIZE;
    if (n >= 0) {
        if (t->p.datagram_received)
            t->p.datagram_received(t, buf, (size_t)n,
                                   (struct sockaddr *)&addr, len, t->ctx);
    } else if (!cio__net_again(n) && t->p.error_received) {
        t->p.error_received(t, (int)n, t->ctx);
    }
}

/* --------------------------------------------------------------- writing */

/* Tells the protocol when the buffer crosses the water marks: pause above
 * high, resume at or below low, each once per crossing. */
static void check_pause(cio_transport *t)
{
    size_t size = buffered(t);
    if (!t->protocol_paused && size > t->high) {
        t->protocol_paused = true;
        if (t->p.pause_writing)
            t->p.pause_writing(t, t->ctx);
    } else if (t->protocol_paused && size <= t->low) {
        t->protocol_paused = false;
        if (t->p.resume_writing)
            t->p.resume_writing(t, t->ctx);
    }
    tell_waiter(t);
}

/* The buffer emptied: finish a pending close or write_eof. (A pipe never
 * gets here with eof_requested: its write_eof is a close.) */
static void flushed(cio_transport *t)
{
    cio_remove_writer(t->loop, t->fd);
    if (t->eof_requested && !t->eof_written) {
        t->eof_written = true;
        (void)cio__sys_shutdown(t->fd, SHUT_WR);
    }
    wake_flush_waiter(t, 0);
    if (t->closing && t->tls)
        tls_begin_shutdown(t);
    else if (t->closing)
        force_close(t, 0);
}

/* The write buffer emptied. One a burst made large is freed (the next
 * refused bytes get a WBUF_MIN one), so a connection that once buffered
 * megabytes for a slow peer does not keep them. A writer that waits for
 * drain never has more than the high-water mark and one write buffered:
 * its buffer (up to four times the mark, or WBUF_KEEP) stays, so it does
 * not reallocate each time the peer catches up. */
static void wbuf_flushed(cio_transport *t)
{
    t->whead = t->wlen = 0;
    if (t->wcap > WBUF_KEEP && t->wcap > 4 * t->high) {
        cio__free(t->wbuf);
        t->wbuf = NULL;
        t->wcap = 0;
    }
}

size_t cio__transport_wbuf_capacity(const cio_transport *t) { return t->wcap; }

/* The writer watcher of the byte kinds, on only while bytes are queued.
 * A short write keeps the rest for the next wake-up; the watcher goes off
 * in flushed() once the buffer is empty. */
static void bytes_writable(void *arg)
{
    cio_transport *t = arg;
    struct iovec iov = {t->wbuf + t->whead, t->wlen - t->whead};
    ssize_t n = t->kind->sendv(t, &iov, 1);
    if (n < 0) {
        if (!cio__net_again(n))
            fatal_error(t, (int)n);
        return;
    }
    t->whead += (size_t)n;
    if (t->whead == t->wlen) {
        wbuf_flushed(t);
        check_pause(t);
        flushed(t);
    } else {
        check_pause(t);
    }
}

/* Sends queued datagrams in order; one that fails is dropped after telling
 * error_received, as a lost datagram would be. */
static void dgram_writable(void *arg)
{
    cio_transport *t = arg;
    while (t->dq) {
        cio__datagram *d = t->dq;
        ssize_t n = cio__sys_sendto(t->fd, d->data, d->len,
                                    d->addrlen ? (void *)&d->addr : NULL,
                                    d->addrlen);
        if (cio__net_again(n))
            return;
        if (n < 0 && t->p.error_received)
            t->p.error_received(t, (int)n, t->ctx);
        if (!(t->dq = d->next))
            t->dq_tail = &t->dq;
        t->dq_bytes -= d->len;
        cio__free(d);
        check_pause(t);
    }
    flushed(t);
}

/* Appends to the write buffer, first sliding the unsent bytes to the
 * front when that makes room: the buffer never grows past twice the
 * largest amount that was ever pending. */
static int buffer_append(cio_transport *t, const void *data, size_t n)
{
    if (t->whead && t->wlen + n > t->wcap) {
        memmove(t->wbuf, t->wbuf + t->whead, t->wlen - t->whead);
        t->wlen -= t->whead;
        t->whead = 0;
    }
    /* Only when short: otherwise cio__grow answers wbuf itself, which is
     * NULL while nothing was ever buffered, and would read as ENOMEM. */
    if (t->wlen + n > t->wcap) {
        char *b = cio__grow(t->wbuf, &t->wcap, t->wlen + n, 1, WBUF_MIN);
        if (!b)
            return -ENOMEM;
        t->wbuf = b;
    }
    memcpy(t->wbuf + t->wlen, data, n);
    t->wlen += n;
    return 0;
}

/* The first queued bytes turn the writer watcher on; a failure to watch
 * ends the transport, and the write itself still counts as accepted. */
static void start_writing(cio_transport *t)
{
    int err = cio_add_writer(t->loop, t->fd, t->kind->writable, t);
    if (err)
        fatal_error(t, err);
}

static bool writable(const cio_transport *t)
{
    return t && !t->closing && !t->eof_requested;
}

/* A sendfile owns the byte stream until it ends. */
static bool sendfile_busy(const cio_transport *t)
{
    return t->waiter && !t->waiter->writing;
}

/* With nothing queued, gives iov to the kernel at once. Returns how many
 * whole buffers went (*skip: bytes of the next one that did too), or -1
 * when the send failed and t is being closed. */
static int send_now(cio_transport *t, const struct iovec *iov, int iovcnt,
                    size_t *skip)
{
    ssize_t n = t->kind->sendv(t, iov,
                               iovcnt > IOV_MAX_SEND ? IOV_MAX_SEND : iovcnt);
    if (n < 0 && !cio__net_again(n)) {
        fatal_error(t, (int)n);
        return -1;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    int first = 0;
    while (first < iovcnt && sent >= iov[first].iov_len)
        sent -= iov[first++].iov_len;
    *skip = sent;
    return first;
}

/* Whether n more bytes keep the buffer within its maximum. Checked before
 * anything is sent, so a refused write leaves no trace in the stream: a
 * peer that never reads costs at most wmax, whatever the writer does. */
static bool fits(const cio_transport *t, size_t n)
{
    return n <= t->wmax && buffered(t) <= t->wmax - n;
}

/* The bytes of iov, or SIZE_MAX if they overflow a size_t. */
static size_t iov_bytes(const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SIZE_MAX - total)
            return SIZE_MAX;
        total += iov[i].iov_len;
    }
    return total;
}

/* asyncio's writelines, and the one path of every byte write. A failure
 * of the connection is not this call's error: it returns 0 and the error
 * arrives through connection_lost, as asyncio's write never raises for a
 * broken pipe. -ENOMEM: the bytes before the failing buffer are queued. */
int cio_transport_writelines(cio_transport *t, const struct iovec *iov,
                             int iovcnt)
{
    if (!t || (iovcnt && !iov) || iovcnt < 0 || !t->kind->sendv)
        return -EINVAL;
    if (!writable(t)) /* the error it is closing for, if any */
        return t->lost_error ? t->lost_error : -EPIPE;
    if (sendfile_busy(t))
        return -EBUSY;
    if (!fits(t, iov_bytes(iov, iovcnt)))
        return -ENOBUFS;
    int first = 0;
    size_t skip = 0; /* bytes of iov[first] already sent */
    /* Nothing queued: try the kernel first. A TLS handshake owns the
     * socket until it ends; it starts the writer for what waits. */
    if (t->wlen == t->whead && !tls_busy(t)) {
        first = send_now(t, iov, iovcnt, &skip);
        if (first < 0)
            return 0; /* the error arrives through connection_lost */
        if (first == iovcnt)
            return 0;
        start_writing(t);
    }
    for (int i = first; i < iovcnt; i++) { /* what the kernel refused */
        size_t off = i == first ? skip : 0;
        int err = buffer_append(t, (const char *)iov[i].iov_base + off,
                                iov[i].iov_len - off);
        if (err)
            return err;
    }
    check_pause(t);
    return 0;
}

/* An empty write sends nothing but still says whether t takes writes. */
int cio_transport_write(cio_transport *t, const void *data, size_t n)
{
    if (!t || (!data && n))
        return -EINVAL;
    if (n == 0)
        return !writable(t) ? -EPIPE : sendfile_busy(t) ? -EBUSY : 0;
    struct iovec iov = {(void *)data, n};
    return cio_transport_writelines(t, &iov, 1);
}

/* Queues a datagram the kernel refused for now; sent by dgram_writable. */
static int queue_datagram(cio_transport *t, const void *data, size_t n,
                          const struct sockaddr *addr, socklen_t len)
{
    if (!fits(t, n))
        return -ENOBUFS;
    cio__datagram *d = cio__malloc(sizeof *d + n);
    if (!d)
        return -ENOMEM;
    d->next = NULL;
    d->len = n;
    d->addrlen = addr ? len : 0;
    if (addr)
        memcpy(&d->addr, addr, len);
    memcpy(d->data, data, n);
    if (!t->dq)
        start_writing(t);
    *t->dq_tail = d;
    t->dq_tail = &d->next;
    t->dq_bytes += n;
    check_pause(t);
    return 0;
}

/* asyncio's sendto: addr NULL sends to the connected peer. An error the
 * kernel gives at once is returned; one from a queued datagram goes to
 * error_received, and neither closes the transport. */
int cio_transport_sendto(cio_transport *t, const void *data, size_t n,
                         const struct sockaddr *addr, socklen_t len)
{
    if (!t || t->kind != &cio__dgram_kind || (!data && n) ||
        len > sizeof(struct sockaddr_storage))
        return -EINVAL;
    if (t->closing)
        return -EPIPE;
    if (!t->dq) { /* nothing queued: straight to the kernel */
        ssize_t r = cio__sys_sendto(t->fd, data, n, addr, addr ? len : 0);
        if (r >= 0)
            return 0;
        if (!cio__net_again(r))
            return (int)r;
    }
    return queue_datagram(t, data, n, addr, len);
}

/* ------------------------------------------------------- closing, EOF */

/* Half-closes after the buffer is flushed. A pipe's EOF is its closing. */
int cio_transport_write_eof(cio_transport *t)
{
    if (!t)
        return -EINVAL;
    if (!t->kind->sendv || t->tls)
        return -ENOTSUP; /* TLS has no half-close */
    if (t->closing)
        return -EPIPE;
    if (t->eof_requested)
        return 0;
    if (t->kind->pipe) {
        cio_transport_close(t);
        return 0;
    }
    t->eof_requested = true;
    if (t->wlen == t->whead) {
        t->eof_written = true;
        int err = cio__sys_shutdown(t->fd, SHUT_WR);
        if (err && err != -ENOTCONN)
            fatal_error(t, err);
    }
    return 0;
}

int cio_transport_can_write_eof(cio_transport *t)
{
    return t && t->kind->sendv != NULL && !t->tls;
}

/* Stops reading now; the write buffer drains first, then connection_lost. */
void cio_transport_close(cio_transport *t)
{
    if (!t || t->closing)
        return;
    t->closing = true;
    reader_off(t);
    if (t->tls && t->tls->phase == CIO__TLS_OPEN)
        tls_close(t); /* flush, then close_notify, within the deadline */
    else if (buffered(t) == 0 || tls_busy(t))
        force_close(t, 0);
}

/* The peer learns of an abort at once: a socket's close then resets the
 * connection (RST) instead of a FIN after data that will never come. A
 * pipe is no socket; its close is the most there is. */
void cio_transport_abort(cio_transport *t)
{
    if (!t)
        return;
    if (!t->lost_scheduled)
        (void)cio__sys_reset_on_close(t->fd);
    force_close(t, 0);
}

int cio_transport_is_closing(const cio_transport *t) { return t && t->closing; }

/* ---------------------------------------------------------- information */

/* The names asyncio's socket transports answer: "socket" (the fd, still
 * the transport's), "peername", "sockname"; anything else is -ENOENT. */
int cio_transport_get_extra_info(cio_transport *t, const char *name,
                                 void *buf, socklen_t *len)
{
    if (!t || !name || !buf || !len)
        return -EINVAL;
    if (t->tls) {
        int r = cio__tls_info(t->tls->tls, name, buf, len);
        if (r != -ENOENT)
            return r;
    }
    if (strcmp(name, "socket") == 0) {
        if (*len < sizeof(int))
            return -EINVAL;
        *(int *)buf = t->fd;
        *len = sizeof(int);
        return 0;
    }
    int r;
    if (strcmp(name, "peername") == 0)
        r = getpeername(t->fd, buf, len);
    else if (strcmp(name, "sockname") == 0)
        r = getsockname(t->fd, buf, len);
    else
        return -ENOENT;
    return r < 0 ? -errno : 0;
}

/* asyncio's defaults: both 0 restore 64 KiB; one given, the other is a
 * quarter of it (or four times it). */
int cio_transport_set_write_buffer_limits(cio_transport *t, size_t high,
                                          size_t low)
{
    if (!t)
        return -EINVAL;
    if (high == 0 && low == 0)
        high = DEFAULT_HIGH;
    if (high && !low)
        low = high / 4;
    if (!high)
        high = low * 4;
    if (low > high)
        return -EINVAL;
    t->high = high;
    t->low = low;
    check_pause(t);
    return 0;
}

int cio_transport_set_write_buffer_max(cio_transport *t, size_t max)
{
    if (!t)
        return -EINVAL;
    t->wmax = max ? max : DEFAULT_WMAX;
    return 0;
}

size_t cio_transport_get_write_buffer_size(const cio_transport *t)
{
    return t ? buffered(t) : 0;
}

/* ------------------------------------------------------- reading control */

/* Allowed before connection_made: made() then leaves the reader off. */
int cio_transport_pause_reading(cio_transport *t)
{
    if (!t)
        return -EINVAL;
    t->paused = true;
    reader_off(t);
    return 0;
}

/* Before connection_made the reader is not on yet: made() turns it on. */
int cio_transport_resume_reading(cio_transport *t)
{
    if (!t)
        return -EINVAL;
    if (!t->paused)
        return 0; /* as asyncio: only a paused transport resumes */
    t->paused = false;
    if (t->made)
        reader_on(t);
    return 0;
}

int cio_transport_is_reading(const cio_transport *t)
{
    return t && !t->paused && !t->closing;
}

void *cio_transport_get_context(const cio_transport *t)
{
    return t ? t->ctx : NULL;
}

/* ------------------------------------------------------------------ TLS
 * A TLS transport is a stream transport whose kind reads and writes
 * through tls.c. Phases: HANDSHAKE (the watchers drive it; writes wait in
 * the buffer), OPEN (as plaintext, decrypted on the way), CLOSING (our
 * close_notify, then the peer's, discarding what else comes). A deadline
 * covers the handshake, and the closing from close() on. */

enum { DEFAULT_HANDSHAKE_TIMEOUT = 60, DEFAULT_SHUTDOWN_TIMEOUT = 30 };

static void tls_conn_free(cio_transport *t)
{
    if (!t->tls)
        return;
    cio__handle_unschedule(&t->tls->timer);
    cio__handle_unschedule(&t->tls->pending);
    cio__tls_free(t->tls->tls);
    cio__free(t->tls);
    t->tls = NULL;
}

/* The task awaiting the handshake (if any) learns its outcome, once. */
static void tls_end_wait(cio_transport *t, int err)
{
    cio__tls_conn *c = t->tls;
    c->result = err;
    if (c->waiter) {
        cio__task *w = c->waiter;
        c->waiter = NULL;
        cio__wake(w, err);
    }
}

static void writer_set(cio_transport *t, bool on)
{
    int err = 0;
    if (!on)
        cio_remove_writer(t->loop, t->fd);
    else if ((err = cio_add_writer(t->loop, t->fd, t->kind->writable, t)))
        fatal_error(t, err);
}

/* The handshake is through. A server's connection gets its context and
 * connection_made now; a waiting task resumes the rest itself. */
static void tls_established(cio_transport *t)
{
    cio__tls_conn *c = t->tls;
    c->phase = CIO__TLS_OPEN;
    t->quiet = false;
    cio__handle_unschedule(&c->timer);
    reader_off(t);
    writer_set(t, buffered(t) > 0);
    if (c->waiter) {
        tls_end_wait(t, 0);
        return;
    }
    if (c->factory)
        t->ctx = c->factory(c->factory_arg);
    made(t);
}

static void tls_handshake_step(cio_transport *t)
{
    int r = cio__tls_handshake(t->tls->tls);
    if (r == 0)
        tls_established(t);
    else if (r == -EAGAIN)
        writer_set(t, false);
    else if (r == CIO__TLS_WANT_WRITE)
        writer_set(t, true);
    else
        fatal_error(t, r);
}

static void tls_deadline(void *arg)
{
    cio_transport *t = arg;
    if (t->tls->phase == CIO__TLS_CLOSING)
        (void)cio__sys_reset_on_close(t->fd); /* the peer never finished */
    fatal_error(t, -ETIMEDOUT);
}

/* Waiting for the peer's close_notify: whatever else comes is dropped. */
static void tls_await_notify(cio_transport *t)
{
    char *buf = read_buffer(t->loop);
    if (!buf) {
        force_close(t, -ENOMEM);
        return;
    }
    for (;;) {
        ssize_t n = cio__tls_recv(t->tls->tls, buf, READ_CHUNK);
        if (n == -EAGAIN)
            return;
        if (n <= 0 && n != CIO__TLS_WANT_WRITE) { /* notify, EOF, error */
            force_close(t, 0);
            return;
        }
    }
}

static void tls_shutdown_step(cio_transport *t)
{
    cio__tls_conn *c = t->tls;
    if (!c->notify_sent) {
        int r = cio__tls_shutdown(c->tls);
        if (r == CIO__TLS_WANT_WRITE) {
            writer_set(t, true);
            return;
        }
        if (r < 0 || r == 1) { /* a dead peer, or both alerts through */
            force_close(t, 0);
            return;
        }
        c->notify_sent = r == 0;
        writer_set(t, false);
    }
    if (!t->reading && cio_add_reader(t->loop, t->fd, tls_readable, t)) {
        force_close(t, 0);
        return;
    }
    t->reading = true;
    tls_await_notify(t);
}

static void tls_begin_shutdown(cio_transport *t)
{
    if (t->tls->phase == CIO__TLS_CLOSING || t->lost_scheduled)
        return;
    t->tls->phase = CIO__TLS_CLOSING;
    tls_shutdown_step(t);
}

/* asyncio's order: the deadline runs from close(), over the flush too, so
 * a peer that never reads cannot hold the connection past it. */
static void tls_close(cio_transport *t)
{
    cio__tls_conn *c = t->tls;
    double when = cio_loop_time(t->loop) + c->shutdown_timeout;
    if (cio__handle_schedule_at(&c->timer, when)) {
        force_close(t, -ENOMEM);
        return;
    }
    if (buffered(t) == 0)
        tls_begin_shutdown(t);
}

/* Fills the read target with the records OpenSSL holds (one recv brings
 * several, with read-ahead), to hand them over in one data_received; it
 * stops when OpenSSL holds no more rather than ask the socket for an
 * EAGAIN: a level-triggered fd with more to give fires again. Returns the
 * status that stopped it (> 0 or -EAGAIN: nothing more for now). */
static ssize_t tls_fill(cio_transport *t, char *buf, size_t size,
                        size_t *got)
{
    ssize_t r = -EAGAIN;
    *got = 0;
    while (*got < size) {
        r = cio__tls_recv(t->tls->tls, buf + *got, size - *got);
        if (r <= 0)
            break;
        *got += (size_t)r;
        if (!cio__tls_pending(t->tls->tls))
            break;
    }
    return r;
}

static void deliver(cio_transport *t, void *buf, size_t n)
{
    if (t->p.get_buffer) {
        if (t->p.buffer_updated)
            t->p.buffer_updated(t, n, t->ctx);
    } else if (t->p.data_received) {
        t->p.data_received(t, buf, n, t->ctx);
    }
}

/* One turn of reading; more turns follow (through `pending`) while
 * OpenSSL holds decrypted bytes the fd will not announce. */
static void tls_read(cio_transport *t)
{
    size_t size, got;
    void *buf = read_target(t, &size);
    if (!buf)
        return;
    ssize_t r = tls_fill(t, buf, size, &got);
    if (got) {
        deliver(t, buf, got);
        if (t->closing || !t->reading)
            return;
    }
    if (r == 0) {
        eof(t);
    } else if (r == CIO__TLS_WANT_WRITE) {
        t->tls->read_wants_write = true;
        writer_set(t, true);
    } else if (r < 0 && r != -EAGAIN) {
        fatal_error(t, (int)r);
    } else if (cio__tls_pending(t->tls->tls)) {
        cio__handle_schedule(&t->tls->pending);
    }
}

static void tls_readable(void *arg)
{
    cio_transport *t = arg;
    switch (t->tls->phase) {
    case CIO__TLS_HANDSHAKE:
        tls_handshake_step(t);
        break;
    case CIO__TLS_OPEN:
        if (!t->tls->read_wants_write)
            tls_read(t);
        break;
    case CIO__TLS_CLOSING:
        tls_shutdown_step(t);
        break;
    }
}

static void tls_pending_read(void *arg)
{
    cio_transport *t = arg;
    if (t->reading && !t->closing && t->tls->phase == CIO__TLS_OPEN)
        tls_read(t);
}

static void tls_writable(void *arg)
{
    cio_transport *t = arg;
    cio__tls_conn *c = t->tls;
    if (c->phase == CIO__TLS_HANDSHAKE) {
        tls_handshake_step(t);
    } else if (c->phase == CIO__TLS_CLOSING) {
        tls_shutdown_step(t);
    } else if (c->read_wants_write) {
        c->read_wants_write = false;
        writer_set(t, buffered(t) > 0);
        if (t->reading)
            tls_read(t);
    } else if (buffered(t)) {
        bytes_writable(t);
    } else {
        writer_set(t, false);
    }
}

/* Record after record until the socket refuses one, as writev would:
 * OpenSSL takes at most a record (16 KiB) per call. A refused record must
 * be offered again as is, which the write buffer does (what was taken is
 * counted and skipped; the buffer only ever grows at its end). */
static ssize_t tls_sendv(cio_transport *t, const struct iovec *iov, int n)
{
    ssize_t total = 0;
    for (int i = 0; i < n; i++) {
        for (size_t off = 0; off < iov[i].iov_len;) {
            ssize_t r = cio__tls_send(t->tls->tls,
                                      (const char *)iov[i].iov_base + off,
                                      iov[i].iov_len - off);
            if (r < 0) {
                if (total)
                    return total;
                return r == CIO__TLS_WANT_WRITE ? -EAGAIN : r;
            }
            off += (size_t)r;
            total += r;
        }
    }
    return total;
}

static const cio__transport_kind tls_kind = {
    .readable = tls_readable, .writable = tls_writable, .sendv = tls_sendv};

static double or_default(double v, double dflt) { return v > 0 ? v : dflt; }

static int tls_conn_new(cio_transport *t, const cio_tls_options *o,
                        bool server, const char *hostname, const void *prefix,
                        size_t n)
{
    if (isnan(o->handshake_timeout) || isnan(o->shutdown_timeout))
        return -EINVAL; /* the duration rule; <= 0 is the default */
    cio__tls_conn *c = cio__calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    int err = cio__tls_new(o->ctx, t->fd, server, hostname, prefix, n,
                           &c->tls);
    if (err) {
        cio__free(c);
        return err;
    }
    c->shutdown_timeout = or_default(o->shutdown_timeout,
                                     DEFAULT_SHUTDOWN_TIMEOUT);
    cio__handle_init(&c->timer, t->loop, tls_deadline, t);
    cio__handle_init(&c->pending, t->loop, tls_pending_read, t);
    t->tls = c;
    return 0;
}

static int tls_begin(cio_transport *t, const cio_tls_options *o, bool server,
                     const char *hostname, const void *prefix, size_t n)
{
    if (!o || !o->ctx || t->kind != &cio__stream_kind || buffered(t))
        return -EINVAL;
    int err = tls_conn_new(t, o, server, hostname, prefix, n);
    if (err)
        return err;
    double when = cio_loop_time(t->loop) +
                  or_default(o->handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    reader_off(t);
    t->kind = &tls_kind;
    if ((err = cio__handle_schedule_at(&t->tls->timer, when)) ||
        (err = cio_add_reader(t->loop, t->fd, tls_readable, t))) {
        t->kind = &cio__stream_kind;
        tls_conn_free(t);
        return err;
    }
    t->reading = true;
    if (!server) /* the client speaks first */
        tls_handshake_step(t);
    return 0;
}

int cio__transport_start_tls_new(cio_transport *t, cio__list *list,
                                 const cio_tls_options *o, bool server,
                                 const char *hostname,
                                 cio_protocol_factory factory, void *arg)
{
    cio__list_push_back(list ? list : &t->loop->net.transports, &t->link);
    (void)cio__sys_setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, 1);
    t->quiet = true; /* the protocol's only once the handshake succeeds */
    int err = tls_begin(t, o, server, hostname, NULL, 0);
    if (err) {
        force_close(t, err);
        return err;
    }
    t->tls->factory = factory;
    t->tls->factory_arg = arg;
    return 0;
}

static const cio__wait_kind handshake_wait = {"TLS handshake", NULL};
static const cio__wait_kind flush_wait = {"transport flush", NULL};

/* The handshake of a transport no task of the program holds yet (create
 * connection) or one it holds (start_tls): on failure, abort it either
 * way; the protocol hears of it only if it heard connection_made. */
int cio__transport_tls_wait(cio_transport *t)
{
    cio__tls_conn *c = t->tls;
    int err = c->result;
    if (err == 0 && c->phase == CIO__TLS_HANDSHAKE && !t->lost_scheduled) {
        c->waiter = cio__current;
        cio__task_waits(cio__current, &handshake_wait, t, t->fd);
        err = cio__park_checked(NULL, NULL);
        if (t->tls)
            t->tls->waiter = NULL; /* woken by a cancel, not by the end */
    }
    if (err == 0 && t->lost_scheduled)
        err = t->lost_error ? t->lost_error : -ECONNRESET;
    if (err) {
        cio_transport_abort(t);
        return err;
    }
    if (!t->made)
        made(t); /* a new connection: connection_made before the return */
    else if (!t->paused)
        reader_on(t);
    return 0;
}

/* Parks until the write buffer is empty; its bytes go out as they were
 * written, before any TLS record. */
static int await_flush(cio_transport *t)
{
    while (buffered(t) && !t->lost_scheduled) {
        t->flush_waiter = cio__current;
        cio__task_waits(cio__current, &flush_wait, t, t->fd);
        int err = cio__park_checked(NULL, NULL);
        t->flush_waiter = NULL;
        if (err)
            return err;
    }
    return t->lost_scheduled ? (t->lost_error ? t->lost_error : -EPIPE) : 0;
}

int cio__transport_start_tls(cio_transport *t, const cio_tls_options *o,
                             bool server, const void *prefix, size_t n)
{
    if (!t || !o || !o->ctx ||
        (t->kind != &cio__stream_kind && t->kind != &tls_kind))
        return -EINVAL;
    if (!cio__current)
        return cio__no_task("cio_*_start_tls");
    if (!cio_tls_available())
        return -ENOTSUP; /* the connection goes on as it was */
    if (t->tls)
        return -EALREADY;
    if (t->closing)
        return t->lost_error ? t->lost_error : -EPIPE;
    reader_off(t); /* the peer's first TLS bytes stay in the kernel */
    int err = await_flush(t);
    if (!err)
        err = tls_begin(t, o, server, o->server_hostname, prefix, n);
    if (err) {
        cio_transport_abort(t);
        return err;
    }
    return cio__transport_tls_wait(t);
}

int cio_transport_start_tls(cio_transport *t, const cio_tls_options *o,
                            int server_side)
{
    return cio__transport_start_tls(t, o, server_side, NULL, 0);
}

/* ---------------------------------------------------------------- kinds */

/* One buffer is a plain send (cheaper than sendmsg); MSG_NOSIGNAL in both
 * (sys.c) turns a dead peer into EPIPE instead of SIGPIPE. */
static ssize_t sock_sendv(cio_transport *t, const struct iovec *iov, int n)
{
    return n == 1 ? cio__sys_send(t->fd, iov[0].iov_base, iov[0].iov_len)
                  : cio__sys_sendv(t->fd, iov, n);
}

static ssize_t pipe_sendv(cio_transport *t, const struct iovec *iov, int n)
{
    return cio__sys_writev_pipe(t->fd, iov, n);
}

/* A read pipe has no writer watcher: nothing can be queued on it, since
 * writes and write_eof refuse a kind without sendv. */
const cio__transport_kind cio__stream_kind = {
    .readable = stream_readable, .writable = bytes_writable,
    .sendv = sock_sendv};
const cio__transport_kind cio__dgram_kind = {
    .readable = dgram_readable, .writable = dgram_writable};
static const cio__transport_kind pipe_read_kind = {
    .readable = pipe_readable, .pipe = true};
static const cio__transport_kind pipe_write_kind = {
    .readable = pipe_reader_left, .writable = bytes_writable,
    .sendv = pipe_sendv, .pipe = true};

/* ----------------------------------------------------------------- pipes */

/* Pipes take no socket options: cio__transport_start sets TCP_NODELAY on
 * the stream kind only. */
int cio__pipe_transport(cio_loop *loop, int fd, bool write_side,
                        const cio_protocol *proto, void *ctx,
                        cio_transport **out)
{
    cio_transport *t;
    int err = cio__transport_new(loop, fd,
                                 write_side ? &pipe_write_kind
                                            : &pipe_read_kind,
                                 proto, ctx, &t);
    if (err)
        return err;
    cio__transport_start(t, NULL, false);
    if (out)
        *out = t;
    return 0;
}

/* Takes a caller's fd for a transport: checks the arguments, resolves the
 * loop, and makes the fd non-blocking and close-on-exec. */
static int adopt_fd(cio_loop **loop, int fd, const cio_protocol *proto,
                    cio_transport **out)
{
    if (out)
        *out = NULL;
    if (!*loop)
        *loop = cio__running_loop;
    int err = cio__loop_check(*loop);
    if (err)
        return err;
    if (fd < 0 || !proto)
        return -EINVAL;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -EBADF;
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return 0;
}

/* asyncio's connect_read_pipe / connect_write_pipe: the transport owns fd
 * from then on. */
static int connect_pipe(cio_loop *loop, int fd, bool write_side,
                        const cio_protocol *proto, void *ctx,
                        cio_transport **out)
{
    int err = adopt_fd(&loop, fd, proto, out);
    return err ? err
               : cio__pipe_transport(loop, fd, write_side, proto, ctx, out);
}

int cio_connect_read_pipe(cio_loop *loop, int fd, const cio_protocol *proto,
                          void *ctx, cio_transport **t)
{
    return connect_pipe(loop, fd, false, proto, ctx, t);
}

int cio_connect_write_pipe(cio_loop *loop, int fd, const cio_protocol *proto,
                           void *ctx, cio_transport **t)
{
    return connect_pipe(loop, fd, true, proto, ctx, t);
}

/* A socket connected elsewhere: like an accepted one, connection_made
 * runs soon, not before this returns. */
int cio_connect_accepted_socket(cio_loop *loop, int fd,
                                const cio_protocol *proto, void *ctx,
                                cio_transport **out)
{
    int err = adopt_fd(&loop, fd, proto, out);
    if (err)
        return err;
    cio_transport *t;
    err = cio__transport_new(loop, fd, &cio__stream_kind, proto, ctx, &t);
    if (err)
        return err;
    cio__transport_start(t, NULL, false);
    if (out)
        *out = t;
    return 0;
}

void cio_free(void *p) { cio__free(p); }
