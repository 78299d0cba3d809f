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
    WBUF_MIN = 4096              /* the write buffer's first size */
};

size_t cio__dgram_read_size = READ_CHUNK;

static size_t buffered(const cio_transport *t)
{
    return t->dq_bytes + (t->wlen - t->whead); /* one of them is 0 */
}

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
static void call_connection_lost(void *arg)
{
    cio_transport *t = arg;
    if (!t->made) {
        t->made = true;
        if (t->p.connection_made)
            t->p.connection_made(t, t->ctx);
    }
    if (t->p.connection_lost)
        t->p.connection_lost(t, t->lost_error, t->ctx);
    cio__list_unlink(&t->link);
    if (t->gone)
        t->gone(t->gone_arg);
    cio__sys_close(t->fd);
    free_datagrams(t);
    cio__free(t->wbuf);
    cio__free(t);
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
    cio__handle_schedule(&t->lost_handle);
}

/* The errors a peer causes by going away are the connection's business,
 * told through connection_lost; anything else is also reported. */
static void fatal_error(cio_transport *t, int err)
{
    if (err != -ECONNRESET && err != -EPIPE && err != -ECONNABORTED &&
        err != -ETIMEDOUT && err != -ENOTCONN && err != -EHOSTUNREACH)
        cio__report(t->loop, "fatal error on transport", err, "transport",
                    NULL, t);
    force_close(t, err);
}

static void reader_on(cio_transport *t)
{
    if (t->reading || t->closing)
        return;
    int err = cio_add_reader(t->loop, t->fd, t->kind->readable, t);
    if (err == 0)
        t->reading = true;
    else
        fatal_error(t, err);
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
    reader_off(t);
    cio_remove_writer(t->loop, t->fd);
    cio__handle_unschedule(&t->made_handle);
    cio__handle_unschedule(&t->lost_handle);
    t->gone = NULL;
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
    if (!keep_open || t->kind->pipe)
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
    if (t->closing)
        force_close(t, 0);
}

/* The writer watcher of the byte kinds, on only while bytes are queued.
 * A short write keeps the rest for the next wake-up; the watcher goes off
 * in flushed() once the buffer is empty. */
static void bytes_writable(void *arg)
{
    cio_transport *t = arg;
    struct iovec iov = {t->wbuf + t->whead, t->wlen - t->whead};
    ssize_t n = t->kind->sendv(t->fd, &iov, 1);
    if (n < 0) {
        if (!cio__net_again(n))
            fatal_error(t, (int)n);
        return;
    }
    t->whead += (size_t)n;
    if (t->whead == t->wlen) {
        t->whead = t->wlen = 0;
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

/* With nothing queued, gives iov to the kernel at once. Returns how many
 * whole buffers went (*skip: bytes of the next one that did too), or -1
 * when the send failed and t is being closed. */
static int send_now(cio_transport *t, const struct iovec *iov, int iovcnt,
                    size_t *skip)
{
    ssize_t n = t->kind->sendv(t->fd, iov,
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
    if (!fits(t, iov_bytes(iov, iovcnt)))
        return -ENOBUFS;
    int first = 0;
    size_t skip = 0; /* bytes of iov[first] already sent */
    if (t->wlen == t->whead) { /* nothing queued: try the kernel first */
        first = send_now(t, iov, iovcnt, &skip);
        if (first < 0)
            return 0; /* the error arrives through connection_lost */
        if (first == iovcnt)
            return 0;
        start_writing(t);
    }
    for (int i = first; i < iovcnt; i++) {
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
        return writable(t) ? 0 : -EPIPE;
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
    if (!t->kind->sendv)
        return -ENOTSUP;
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
    return t && t->kind->sendv != NULL;
}

/* Stops reading now; the write buffer drains first, then connection_lost. */
void cio_transport_close(cio_transport *t)
{
    if (!t || t->closing)
        return;
    t->closing = true;
    reader_off(t);
    if (buffered(t) == 0)
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

/* ---------------------------------------------------------------- kinds */

/* One buffer is a plain send (cheaper than sendmsg); MSG_NOSIGNAL in both
 * (sys.c) turns a dead peer into EPIPE instead of SIGPIPE. */
static ssize_t sock_sendv(int fd, const struct iovec *iov, int n)
{
    return n == 1 ? cio__sys_send(fd, iov[0].iov_base, iov[0].iov_len)
                  : cio__sys_sendv(fd, iov, n);
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
    .sendv = cio__sys_writev_pipe, .pipe = true};

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
