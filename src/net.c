/* Networking: socket coroutines, name resolution, transports (stream and
 * datagram sockets) with protocols, servers, and connecting.
 *
 * Transports are asyncio's selector transports: level-triggered readers,
 * a writer watcher only while the write buffer holds data, writes sent
 * at once when nothing is queued. Protocol callbacks run on the loop; a
 * transport stays valid until connection_lost has returned, then cio frees
 * it. Every failure is delivered as a code (a return value, or the error
 * of connection_lost / error_received), never SIGPIPE, never a crash.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum {
    READ_CHUNK = 65536,          /* bytes per recv */
    DEFAULT_HIGH = 64 * 1024,    /* asyncio's write-buffer high-water mark */
    DEFAULT_BACKLOG = 100,
    MAX_ATTEMPTS = 16            /* addresses tried by create_connection */
};

double cio__accept_retry_delay = 1.0; /* asyncio's; tests lower it */

/* ------------------------------------------------------- waiting for fds */

static void fd_ready(void *arg) { cio__wake(arg, 0); }

/* Parks the current task until fd is readable (dir 0) or writable (1). */
static int wait_fd(int fd, int dir)
{
    cio__task *t = cio__current;
    if (!t)
        return -EINVAL;
    int r = cio__interrupted(t);
    if (r)
        return r;
    cio_loop *loop = t->fut.loop;
    r = dir ? cio_add_writer(loop, fd, fd_ready, t)
            : cio_add_reader(loop, fd, fd_ready, t);
    if (r)
        return r;
    r = cio__park_checked(NULL, NULL);
    if (dir)
        cio_remove_writer(loop, fd);
    else
        cio_remove_reader(loop, fd);
    return r;
}

/* ---------------------------------------------------------- socket calls */

ssize_t cio_sock_recv(int fd, void *buf, size_t n)
{
    if (!cio__current)
        return -EINVAL;
    int r = cio__interrupted(cio__current);
    for (;;) {
        if (r)
            return r;
        ssize_t got = cio__sys_recv(fd, buf, n);
        if (got != -EAGAIN && got != -EINTR)
            return got;
        r = wait_fd(fd, 0);
    }
}

ssize_t cio_sock_recv_into(int fd, void *buf, size_t n)
{
    return cio_sock_recv(fd, buf, n);
}

int cio_sock_sendall(int fd, const void *buf, size_t n)
{
    if (!cio__current)
        return -EINVAL;
    const char *p = buf;
    int r = cio__interrupted(cio__current);
    while (!r && n > 0) {
        ssize_t sent = cio__sys_send(fd, p, n);
        if (sent >= 0) {
            p += sent;
            n -= (size_t)sent;
        } else if (sent == -EAGAIN || sent == -EINTR) {
            r = wait_fd(fd, 1);
        } else {
            return (int)sent;
        }
    }
    return r;
}

int cio_sock_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!cio__current || !addr)
        return -EINVAL;
    int r = cio__interrupted(cio__current);
    if (r)
        return r;
    r = cio__sys_connect(fd, addr, len);
    if (r != -EINPROGRESS && r != -EINTR)
        return r;
    r = wait_fd(fd, 1);
    return r ? r : cio__sys_socket_error(fd);
}

int cio_sock_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    if (!cio__current)
        return -EINVAL;
    int r = cio__interrupted(cio__current);
    for (;;) {
        if (r)
            return r;
        int c = cio__sys_accept(fd, addr, len);
        if (c != -EAGAIN && c != -EINTR)
            return c;
        r = wait_fd(fd, 0);
    }
}

ssize_t cio_sock_recvfrom(int fd, void *buf, size_t n, struct sockaddr *addr,
                          socklen_t *len)
{
    if (!cio__current)
        return -EINVAL;
    int r = cio__interrupted(cio__current);
    for (;;) {
        if (r)
            return r;
        ssize_t got = cio__sys_recvfrom(fd, buf, n, addr, len);
        if (got != -EAGAIN && got != -EINTR)
            return got;
        r = wait_fd(fd, 0);
    }
}

ssize_t cio_sock_sendto(int fd, const void *buf, size_t n,
                        const struct sockaddr *addr, socklen_t len)
{
    if (!cio__current)
        return -EINVAL;
    int r = cio__interrupted(cio__current);
    for (;;) {
        if (r)
            return r;
        ssize_t sent = cio__sys_sendto(fd, buf, n, addr, len);
        if (sent != -EAGAIN && sent != -EINTR)
            return sent;
        r = wait_fd(fd, 1);
    }
}

/* ------------------------------------------------------- name resolution
 * getaddrinfo may block (DNS, /etc/hosts), so it runs in the executor, as
 * asyncio's does; numeric hosts are resolved in place (asyncio's
 * _ipaddr_info shortcut), which needs no thread. */

typedef struct gai_job {
    const char *host, *port;
    const struct addrinfo *hints;
    struct addrinfo *res;
} gai_job;

static int eai_code(int e)
{
    return e == EAI_SYSTEM ? -errno : CIO_EAI(e);
}

static int run_getaddrinfo(void *arg)
{
    gai_job *j = arg;
    int e = getaddrinfo(j->host, j->port, j->hints, &j->res);
    return e ? eai_code(e) : 0;
}

static bool is_numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return !host || !*host || inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

int cio_getaddrinfo(const char *host, const char *port,
                    const struct addrinfo *hints, struct addrinfo **res)
{
    if (!res)
        return -EINVAL;
    *res = NULL;
    if (!cio__current)
        return -EINVAL;
    int r = cio__interrupted(cio__current);
    if (r)
        return r;
    gai_job j = {host && *host ? host : NULL, port, hints, NULL};
    if (is_numeric_host(host))
        r = run_getaddrinfo(&j);
    else
        r = cio_to_thread(run_getaddrinfo, &j);
    if (r == 0)
        *res = j.res;
    else if (j.res) /* cancelled after it resolved */
        freeaddrinfo(j.res);
    return r;
}

typedef struct gni_job {
    const struct sockaddr *addr;
    socklen_t len;
    char *host, *serv;
    size_t hostlen, servlen;
    int flags;
} gni_job;

static int run_getnameinfo(void *arg)
{
    gni_job *j = arg;
    int e = getnameinfo(j->addr, j->len, j->host, (socklen_t)j->hostlen,
                        j->serv, (socklen_t)j->servlen, j->flags);
    return e ? eai_code(e) : 0;
}

int cio_getnameinfo(const struct sockaddr *addr, socklen_t len, char *host,
                    size_t hostlen, char *serv, size_t servlen, int flags)
{
    if (!addr || !cio__current)
        return -EINVAL;
    gni_job j = {addr, len, host, serv, hostlen, servlen, flags};
    return cio_to_thread(run_getnameinfo, &j);
}

/* ------------------------------------------------------------ transports */

enum { T_STREAM, T_DGRAM, T_PIPE };

typedef struct datagram {
    struct datagram *next;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    size_t len;
    char data[];
} datagram;

struct cio_transport {
    cio_loop *loop;
    int fd;
    int kind;                  /* T_STREAM or T_DGRAM */
    cio_protocol p;            /* a copy: the caller's may be on a stack */
    void *ctx;
    cio_server *server;        /* the server that accepted it, or NULL */
    cio__list link;            /* in server->conns, or loop's others */
    bool reading;              /* the reader watcher is on */
    bool paused;               /* pause_reading was called */
    bool closing;              /* close, abort or a fatal error began */
    bool eof_requested, eof_written;
    bool protocol_paused;      /* pause_writing was called */
    bool made;                 /* connection_made ran */
    bool lost_scheduled;       /* connection_lost is on its way */
    bool pipe_write;           /* T_PIPE: the write end (else the read end) */
    int lost_error;            /* for connection_lost */
    char *wbuf;                /* write buffer: wbuf[whead .. wlen) */
    size_t whead, wlen, wcap;
    size_t high, low;
    datagram *dq, **dq_tail;   /* datagrams waiting to be sent */
    size_t dq_bytes;
    cio__handle made_handle;   /* runs connection_made */
    cio__handle lost_handle;   /* runs connection_lost, then frees */
};

static cio__list *loop_transports(cio_loop *loop);

static size_t buffered(const cio_transport *t)
{
    return t->kind == T_DGRAM ? t->dq_bytes : t->wlen - t->whead;
}

/* Byte I/O for sockets and pipes alike. */
static ssize_t t_recv(cio_transport *t, void *buf, size_t n)
{
    return t->kind == T_PIPE ? cio__sys_read(t->fd, buf, n)
                             : cio__sys_recv(t->fd, buf, n);
}

static ssize_t t_sendv(cio_transport *t, const struct iovec *iov, int n)
{
    if (t->kind == T_PIPE)
        return cio__sys_writev_pipe(t->fd, iov, n);
    return n == 1 ? cio__sys_send(t->fd, iov[0].iov_base, iov[0].iov_len)
                  : cio__sys_sendv(t->fd, iov, n);
}

static void reader_on(cio_transport *t);
static void on_readable(void *arg);
static void on_writable(void *arg);

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
    if (t->server)
        cio__server_conn_gone(t->server);
    cio__sys_close(t->fd);
    while (t->dq) {
        datagram *d = t->dq;
        t->dq = d->next;
        cio__free(d);
    }
    cio__free(t->wbuf);
    cio__free(t);
}

/* Stops all I/O and schedules connection_lost(err). */
static void force_close(cio_transport *t, int err)
{
    if (t->lost_scheduled)
        return;
    t->lost_scheduled = true;
    t->closing = true;
    t->lost_error = err;
    if (t->reading)
        cio_remove_reader(t->loop, t->fd);
    cio_remove_writer(t->loop, t->fd);
    t->reading = false;
    t->whead = t->wlen = 0;
    cio__handle_unschedule(&t->made_handle); /* lost runs made first */
    cio__handle_schedule(&t->lost_handle);
}

static void fatal_error(cio_transport *t, int err)
{
    if (err != -ECONNRESET && err != -EPIPE && err != -ECONNABORTED &&
        err != -ETIMEDOUT && err != -ENOTCONN && err != -EHOSTUNREACH)
        cio__report(t->loop, "fatal error on transport", err, "transport",
                    NULL, t);
    force_close(t, err);
}

static void made(void *arg)
{
    cio_transport *t = arg;
    t->made = true;
    if (t->p.connection_made)
        t->p.connection_made(t, t->ctx);
    if (!t->closing && !t->paused)
        reader_on(t);
}

static int transport_new(cio_loop *loop, int fd, int kind,
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
    t->low = DEFAULT_HIGH / 4;
    t->dq_tail = &t->dq;
    cio__handle_init(&t->made_handle, loop, made, t);
    cio__handle_init(&t->lost_handle, loop, call_connection_lost, t);
    cio__list_init(&t->link);
    *out = t;
    return 0;
}

static void reader_on(cio_transport *t)
{
    if (t->reading || t->closing)
        return;
    int err = cio_add_reader(t->loop, t->fd, on_readable, t);
    if (err == 0)
        t->reading = true;
    else
        fatal_error(t, err);
}

static void reader_off(cio_transport *t)
{
    if (t->reading)
        cio_remove_reader(t->loop, t->fd);
    t->reading = false;
}

/* The loop's shared read buffer: data_received sees it only during the
 * call, as asyncio's bytes object is the protocol's to keep or copy. */
static char *read_buffer(cio_loop *loop)
{
    if (!loop->read_buf)
        loop->read_buf = cio__malloc(READ_CHUNK);
    return loop->read_buf;
}

/* The peer's EOF. A socket may stay open for writing if eof_received
 * asks; a read pipe has no write side, so it closes whatever the protocol
 * answers (asyncio's _UnixReadPipeTransport ignores the return value). */
static void eof(cio_transport *t)
{
    reader_off(t);
    int keep_open = t->p.eof_received ? t->p.eof_received(t, t->ctx) : 0;
    if (!keep_open || (t->kind == T_PIPE && !t->pipe_write))
        cio_transport_close(t);
}

static void read_stream(cio_transport *t)
{
    void *buf;
    size_t size = READ_CHUNK;
    if (t->p.get_buffer) {
        buf = t->p.get_buffer(t, READ_CHUNK, &size, t->ctx);
        if (!buf || size == 0) {
            fatal_error(t, -ENOBUFS);
            return;
        }
    } else if (!(buf = read_buffer(t->loop))) {
        fatal_error(t, -ENOMEM);
        return;
    }
    ssize_t n = t_recv(t, buf, size);
    if (n > 0) {
        if (t->p.get_buffer) {
            if (t->p.buffer_updated)
                t->p.buffer_updated(t, (size_t)n, t->ctx);
        } else if (t->p.data_received) {
            t->p.data_received(t, buf, (size_t)n, t->ctx);
        }
    } else if (n == 0) {
        eof(t);
    } else if (n != -EAGAIN && n != -EINTR) {
        fatal_error(t, (int)n);
    }
}

static void read_datagram(cio_transport *t)
{
    char *buf = read_buffer(t->loop);
    if (!buf) {
        fatal_error(t, -ENOMEM);
        return;
    }
    struct sockaddr_storage addr;
    unsigned len = sizeof addr;
    ssize_t n = cio__sys_recvfrom(t->fd, buf, READ_CHUNK, &addr, &len);
    if (n >= 0) {
        if (t->p.datagram_received)
            t->p.datagram_received(t, buf, (size_t)n,
                                   (struct sockaddr *)&addr, len, t->ctx);
    } else if (n != -EAGAIN && n != -EINTR) {
        if (t->p.error_received) /* e.g. ECONNREFUSED from an ICMP */
            t->p.error_received(t, (int)n, t->ctx);
    }
}

static void on_readable(void *arg)
{
    cio_transport *t = arg;
    if (t->kind == T_DGRAM)
        read_datagram(t);
    else if (t->pipe_write) /* the write end "readable": the reader left */
        force_close(t, buffered(t) ? -EPIPE : 0);
    else
        read_stream(t);
}

/* Tells the protocol when the buffer crosses the water marks. */
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

/* The buffer emptied: finish a pending close or write_eof. */
static void flushed(cio_transport *t)
{
    cio_remove_writer(t->loop, t->fd);
    if (t->eof_requested && !t->eof_written) {
        t->eof_written = true;
        if (t->kind == T_PIPE) /* a pipe's EOF is its closing */
            t->closing = true;
        else
            (void)cio__sys_shutdown(t->fd, SHUT_WR);
    }
    if (t->closing)
        force_close(t, 0);
}

static void write_stream_buffer(cio_transport *t)
{
    struct iovec iov = {t->wbuf + t->whead, t->wlen - t->whead};
    ssize_t n = t_sendv(t, &iov, 1);
    if (n < 0) {
        if (n != -EAGAIN && n != -EINTR)
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

static void write_datagrams(cio_transport *t)
{
    while (t->dq) {
        datagram *d = t->dq;
        ssize_t n = cio__sys_sendto(t->fd, d->data, d->len,
                                    d->addrlen ? (void *)&d->addr : NULL,
                                    d->addrlen);
        if (n == -EAGAIN || n == -EINTR)
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

static void on_writable(void *arg)
{
    cio_transport *t = arg;
    if (t->kind == T_DGRAM)
        write_datagrams(t);
    else
        write_stream_buffer(t);
}

/* Appends to the write buffer (compacting or growing it). */
static int buffer_append(cio_transport *t, const void *data, size_t n)
{
    if (t->whead && t->wlen + n > t->wcap) {
        memmove(t->wbuf, t->wbuf + t->whead, t->wlen - t->whead);
        t->wlen -= t->whead;
        t->whead = 0;
    }
    if (t->wlen + n > t->wcap) {
        size_t cap = t->wcap ? t->wcap : 4096;
        while (cap < t->wlen + n)
            cap *= 2;
        char *b = cio__realloc(t->wbuf, cap);
        if (!b)
            return -ENOMEM;
        t->wbuf = b;
        t->wcap = cap;
    }
    memcpy(t->wbuf + t->wlen, data, n);
    t->wlen += n;
    return 0;
}

static int start_writing(cio_transport *t)
{
    int err = cio_add_writer(t->loop, t->fd, on_writable, t);
    if (err)
        fatal_error(t, err);
    return 0;
}

static bool writable(const cio_transport *t)
{
    return t && !t->closing && !t->eof_requested;
}

int cio_transport_writelines(cio_transport *t, const struct iovec *iov,
                             int iovcnt)
{
    if (!t || (iovcnt && !iov) || iovcnt < 0 || t->kind == T_DGRAM ||
        (t->kind == T_PIPE && !t->pipe_write))
        return -EINVAL;
    if (!writable(t)) /* the error it is closing for, if any */
        return t->lost_error ? t->lost_error : -EPIPE;
    int first = 0;
    size_t skip = 0; /* bytes of iov[first] already sent */
    if (t->wlen == t->whead) { /* nothing queued: try the kernel first */
        ssize_t n = t_sendv(t, iov, iovcnt > 1024 ? 1024 : iovcnt);
        if (n < 0 && n != -EAGAIN && n != -EINTR) {
            fatal_error(t, (int)n);
            return 0; /* the error arrives through connection_lost */
        }
        size_t sent = n > 0 ? (size_t)n : 0;
        while (first < iovcnt && sent >= iov[first].iov_len)
            sent -= iov[first++].iov_len;
        skip = sent;
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

int cio_transport_write(cio_transport *t, const void *data, size_t n)
{
    if (!t || (!data && n))
        return -EINVAL;
    if (n == 0)
        return writable(t) ? 0 : -EPIPE;
    struct iovec iov = {(void *)data, n};
    return cio_transport_writelines(t, &iov, 1);
}

int cio_transport_write_eof(cio_transport *t)
{
    if (!t)
        return -EINVAL;
    if (t->kind == T_DGRAM || (t->kind == T_PIPE && !t->pipe_write))
        return -ENOTSUP;
    if (t->closing)
        return -EPIPE;
    if (t->eof_requested)
        return 0;
    if (t->kind == T_PIPE) { /* closing a pipe is its EOF */
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
    return t && (t->kind == T_STREAM || (t->kind == T_PIPE && t->pipe_write));
}

void cio_transport_close(cio_transport *t)
{
    if (!t || t->closing)
        return;
    t->closing = true;
    reader_off(t);
    if (buffered(t) == 0)
        force_close(t, 0);
}

void cio_transport_abort(cio_transport *t)
{
    if (t)
        force_close(t, 0);
}

int cio_transport_is_closing(const cio_transport *t) { return t && t->closing; }

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

size_t cio_transport_get_write_buffer_size(const cio_transport *t)
{
    return t ? buffered(t) : 0;
}

int cio_transport_pause_reading(cio_transport *t)
{
    if (!t)
        return -EINVAL;
    t->paused = true;
    reader_off(t);
    return 0;
}

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

int cio_transport_sendto(cio_transport *t, const void *data, size_t n,
                         const struct sockaddr *addr, socklen_t len)
{
    if (!t || t->kind != T_DGRAM || (!data && n) ||
        len > sizeof(struct sockaddr_storage))
        return -EINVAL;
    if (t->closing)
        return -EPIPE;
    if (!t->dq) { /* nothing queued: straight to the kernel */
        ssize_t r = cio__sys_sendto(t->fd, data, n, addr, addr ? len : 0);
        if (r >= 0)
            return 0;
        if (r != -EAGAIN && r != -EINTR)
            return (int)r;
    }
    datagram *d = cio__malloc(sizeof *d + n);
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

/* Makes a transport for a connected socket; connection_made runs soon
 * (asyncio's order), or now when `now` (create_connection returns after
 * it ran). */
static int make_transport(cio_loop *loop, int fd, int kind,
                          const cio_protocol *proto, void *ctx, bool now,
                          cio_transport **out)
{
    cio_transport *t;
    int err = transport_new(loop, fd, kind, proto, ctx, &t);
    if (err)
        return err;
    cio__list_push_back(loop_transports(loop), &t->link);
    if (kind == T_STREAM) /* latency matters more than packet count */
        (void)cio__sys_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (now)
        made(t);
    else
        cio__handle_schedule(&t->made_handle);
    if (out)
        *out = t;
    return 0;
}

int cio__pipe_transport(cio_loop *loop, int fd, bool write_side,
                        const cio_protocol *proto, void *ctx,
                        cio_transport **out)
{
    cio_transport *t;
    int err = transport_new(loop, fd, T_PIPE, proto, ctx, &t);
    if (err)
        return err;
    t->pipe_write = write_side;
    cio__list_push_back(loop_transports(loop), &t->link);
    cio__handle_schedule(&t->made_handle);
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

int cio_connect_accepted_socket(cio_loop *loop, int fd,
                                const cio_protocol *proto, void *ctx,
                                cio_transport **out)
{
    int err = adopt_fd(&loop, fd, proto, out);
    return err ? err
               : make_transport(loop, fd, T_STREAM, proto, ctx, false, out);
}

/* -------------------------------------------------------------- servers */

struct cio_server {
    cio_loop *loop;
    int fds[8];                /* listening sockets */
    int nfds;
    cio_protocol proto;
    cio_protocol_factory factory;
    void *arg;
    int backlog;
    bool serving, closed;
    cio__list conns;           /* its transports */
    size_t nconns;
    cio__list link;            /* in the loop's servers */
    cio_future *closed_fut;    /* done when closed */
    cio_future *all_closed;    /* done when closed with no connections */
    cio__handle retry;         /* resumes accepting after EMFILE */
    char *unix_path;           /* removed when the server closes */
    void *stream_server;       /* stream.c's, freed with the server */
    void (*free_hook)(void *);
};

static void on_acceptable(void *arg);

static void listen_off(cio_server *s);

/* Watches every listening socket; on failure watches none. */
static int listen_on(cio_server *s)
{
    for (int i = 0; i < s->nfds; i++) {
        int err = cio_add_reader(s->loop, s->fds[i], on_acceptable, s);
        if (err) {
            listen_off(s);
            return err;
        }
    }
    return 0;
}

static void listen_off(cio_server *s)
{
    for (int i = 0; i < s->nfds; i++)
        cio_remove_reader(s->loop, s->fds[i]);
}

static void check_all_closed(cio_server *s)
{
    if (s->closed && !cio_future_done(s->closed_fut))
        cio_future_set_result(s->closed_fut, NULL);
    if (s->closed && s->nconns == 0 && !cio_future_done(s->all_closed))
        cio_future_set_result(s->all_closed, NULL);
}

void cio__server_conn_gone(cio_server *s)
{
    s->nconns--;
    check_all_closed(s);
}

static void resume_accepting(void *arg)
{
    cio_server *s = arg;
    if (s->serving && !s->closed && listen_on(s) != 0) /* try again later */
        cio__handle_schedule_at(&s->retry, cio_loop_time(s->loop) +
                                               cio__accept_retry_delay);
}

/* Out of fds or memory: say so, stop accepting for a while, then retry by
 * itself - never spin on a socket that stays readable, never die. */
static void accept_backoff(cio_server *s, int err)
{
    cio__report(s->loop, "accept() out of system resource; pausing accepts",
                err, "server", NULL, s);
    listen_off(s);
    cio__handle_schedule_at(&s->retry, cio_loop_time(s->loop) +
                                           cio__accept_retry_delay);
}

static void on_acceptable(void *arg)
{
    cio_server *s = arg;
    /* The watcher does not say which fd fired: try each, a few times. */
    for (int i = 0; i < s->nfds; i++)
        for (int k = 0; k < s->backlog; k++) {
            int fd = cio__sys_accept(s->fds[i], NULL, NULL);
            if (fd == -EAGAIN || fd == -EINTR)
                break;
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS ||
                fd == -ENOMEM) {
                accept_backoff(s, fd);
                return;
            }
            if (fd < 0)
                continue; /* ECONNABORTED and friends: the peer gave up */
            cio_transport *t;
            int err = transport_new(s->loop, fd, T_STREAM, &s->proto, NULL, &t);
            if (err) {
                cio__sys_close(fd);
                accept_backoff(s, err);
                return;
            }
            /* The context last: nothing can fail after it was made. */
            t->ctx = s->factory ? s->factory(s->arg) : s->arg;
            (void)cio__sys_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
            t->server = s;
            s->nconns++;
            cio__list_push_back(&s->conns, &t->link);
            cio__handle_schedule(&t->made_handle);
        }
}

static int server_new(cio_loop *loop, const cio_protocol *proto,
                      cio_protocol_factory factory, void *arg,
                      const cio_server_options *opts, cio_server **out)
{
    cio_server *s = cio__calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int err = cio_future_new(loop, &s->all_closed);
    if (!err) {
        err = cio_future_new(loop, &s->closed_fut);
        if (err)
            cio_future_unref(s->all_closed);
    }
    if (err) {
        cio__free(s);
        return err;
    }
    s->loop = loop;
    if (proto)
        s->proto = *proto;
    s->factory = factory;
    s->arg = arg;
    s->backlog = opts && opts->backlog > 0 ? opts->backlog : DEFAULT_BACKLOG;
    cio__list_init(&s->conns);
    cio__list_init(&s->link);
    cio__handle_init(&s->retry, loop, resume_accepting, s);
    *out = s;
    return 0;
}

/* Makes one listening socket for ai and adds it to s. */
static int listen_socket(cio_server *s, int family, const struct sockaddr *addr,
                         socklen_t len, const cio_server_options *opts)
{
    if (s->nfds == (int)(sizeof s->fds / sizeof s->fds[0]))
        return 0;
    int fd = cio__sys_socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int err = 0;
    if (family != AF_UNIX && !(opts && opts->reuse_address < 0))
        err = cio__sys_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (!err && opts && opts->reuse_port > 0)
        err = cio__sys_setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (!err && family == AF_INET6) /* as asyncio: one socket per family */
        err = cio__sys_setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (!err)
        err = cio__sys_bind(fd, addr, len);
    if (!err)
        err = cio__sys_listen(fd, s->backlog);
    if (err) {
        cio__sys_close(fd);
        return err;
    }
    s->fds[s->nfds++] = fd;
    return 0;
}

static void server_destroy(cio_server *s);

static int server_finish(cio_server *s, const cio_server_options *opts,
                         cio_server **out)
{
    cio__list_push_back(&s->loop->servers, &s->link);
    int err = opts && opts->delay_serving ? 0 : cio_server_start_serving(s);
    if (err) { /* a server that cannot accept is not made */
        server_destroy(s);
        return err;
    }
    *out = s;
    return 0;
}

static void server_destroy(cio_server *s)
{
    for (int i = 0; i < s->nfds; i++)
        cio__sys_close(s->fds[i]);
    cio__list_unlink(&s->link);
    cio__handle_unschedule(&s->retry);
    cio_future_unref(s->all_closed);
    cio_future_unref(s->closed_fut);
    if (s->free_hook)
        s->free_hook(s->stream_server);
    cio__free(s->unix_path);
    cio__free(s);
}

int cio_create_server(const char *host, const char *port,
                      const cio_protocol *proto, cio_protocol_factory factory,
                      void *arg, const cio_server_options *opts,
                      cio_server **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cio__current || !proto)
        return -EINVAL;
    cio_loop *loop = cio__current->fut.loop;
    struct addrinfo hints = {.ai_flags = AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM}, *res;
    int err = cio_getaddrinfo(host, port ? port : "0", &hints, &res);
    if (err)
        return err;
    cio_server *s = NULL;
    err = server_new(loop, proto, factory, arg, opts, &s);
    for (struct addrinfo *ai = res; !err && ai; ai = ai->ai_next)
        err = listen_socket(s, ai->ai_family, ai->ai_addr, ai->ai_addrlen,
                            opts);
    freeaddrinfo(res);
    if (err) {
        if (s)
            server_destroy(s);
        return err;
    }
    return server_finish(s, opts, out);
}

static int unix_address(const char *path, struct sockaddr_un *sun)
{
    if (!path || strlen(path) >= sizeof sun->sun_path)
        return -EINVAL;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    strcpy(sun->sun_path, path);
    return 0;
}

int cio_create_unix_server(const char *path, const cio_protocol *proto,
                           cio_protocol_factory factory, void *arg,
                           const cio_server_options *opts, cio_server **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct sockaddr_un sun;
    if (!cio__current || !proto || unix_address(path, &sun))
        return -EINVAL;
    struct stat st; /* a stale socket file from an earlier run goes */
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    cio_server *s;
    int err = server_new(cio__current->fut.loop, proto, factory, arg, opts, &s);
    if (err)
        return err;
    err = listen_socket(s, AF_UNIX, (struct sockaddr *)&sun, sizeof sun, opts);
    if (!err && !(s->unix_path = cio__strdup(path)))
        err = -ENOMEM;
    if (err) {
        if (s->nfds)
            unlink(path);
        server_destroy(s);
        return err;
    }
    return server_finish(s, opts, out);
}

int cio_server_start_serving(cio_server *s)
{
    if (!s)
        return -EINVAL;
    if (s->closed)
        return -ESHUTDOWN;
    if (!s->serving) {
        int err = listen_on(s);
        if (err)
            return err;
        s->serving = true;
    }
    return 0;
}

int cio_server_is_serving(const cio_server *s) { return s && s->serving; }

void cio_server_close(cio_server *s)
{
    if (!s || s->closed)
        return;
    s->closed = true;
    s->serving = false;
    listen_off(s);
    cio__handle_unschedule(&s->retry);
    for (int i = 0; i < s->nfds; i++)
        cio__sys_close(s->fds[i]);
    s->nfds = 0;
    if (s->unix_path)
        unlink(s->unix_path);
    check_all_closed(s);
}

static void close_each(cio_server *s, void (*how)(cio_transport *))
{
    cio__list *n = s->conns.next;
    while (n != &s->conns) {
        cio__list *next = n->next;
        how(cio__container_of(n, cio_transport, link));
        n = next;
    }
}

void cio_server_close_clients(cio_server *s)
{
    if (s)
        close_each(s, cio_transport_close);
}

void cio_server_abort_clients(cio_server *s)
{
    if (s)
        close_each(s, cio_transport_abort);
}

/* Awaits f behind a shield: cancelling the waiter must not cancel f,
 * which other waiters share. */
static int await_shielded(cio_future *f)
{
    cio_future *mine;
    int r = cio_shield(f, &mine);
    if (r)
        return r;
    r = cio_await(mine, NULL);
    cio_future_unref(mine);
    return r;
}

int cio_server_wait_closed(cio_server *s)
{
    if (!s || !cio__current)
        return -EINVAL;
    return await_shielded(s->all_closed);
}

/* Serves until the server is closed; cancelling the task closes it. */
int cio_server_serve_forever(cio_server *s)
{
    if (!cio__current)
        return -EINVAL;
    int r = cio_server_start_serving(s);
    if (r)
        return r;
    r = await_shielded(s->closed_fut);
    if (r)
        cio_server_close(s);
    return r;
}

int cio_server_sockets(const cio_server *s, int *fds, size_t cap)
{
    if (!s)
        return -EINVAL;
    for (int i = 0; i < s->nfds && (size_t)i < cap; i++)
        fds[i] = s->fds[i];
    return s->nfds;
}

int cio_server_port(const cio_server *s)
{
    if (!s || !s->nfds)
        return 0;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(s->fds[0], (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

void cio_server_free(cio_server *s)
{
    if (!s)
        return;
    cio_server_close(s);
    /* Its connections go on without it. */
    cio__list *n;
    while ((n = cio__list_pop_front(&s->conns))) {
        cio_transport *t = cio__container_of(n, cio_transport, link);
        t->server = NULL;
        cio__list_push_back(loop_transports(s->loop), &t->link);
    }
    server_destroy(s);
}

/* For stream.c: a server's stream-layer state, freed with it. */
void cio__server_set_owner(cio_server *s, void *owner, void (*free_hook)(void *))
{
    s->stream_server = owner;
    s->free_hook = free_hook;
}

/* ----------------------------------------------------------- connecting
 * Happy Eyeballs (RFC 8305, as asyncio's): addresses alternate between
 * families; an attempt starts, and if it has not connected after the
 * delay the next one starts alongside; the first to connect wins. */

typedef struct attempt {
    int fd;
    bool ready;
    cio__task *task;
} attempt;

static void attempt_ready(void *arg)
{
    attempt *a = arg;
    a->ready = true;
    cio__wake(a->task, 0);
}

static void delay_over(void *arg) { cio__wake(arg, 0); }

/* Orders addresses by alternating families, first family first. */
static int interleave(struct addrinfo *res, struct addrinfo **out, int max)
{
    int n = 0;
    int first = res ? res->ai_family : 0;
    struct addrinfo *a = res, *b = res;
    while (n < max && (a || b)) {
        while (a && a->ai_family != first)
            a = a->ai_next;
        if (a && n < max) {
            out[n++] = a;
            a = a->ai_next;
        }
        while (b && b->ai_family == first)
            b = b->ai_next;
        if (b && n < max) {
            out[n++] = b;
            b = b->ai_next;
        }
    }
    return n;
}

static int bind_local(int fd, const cio_connection_options *opts, int family)
{
    if (!opts || (!opts->local_host && !opts->local_port))
        return 0;
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE}, *res;
    int err = cio_getaddrinfo(opts->local_host, opts->local_port, &hints, &res);
    if (err)
        return err;
    err = cio__sys_bind(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return err;
}

/* Starts a connect; returns 0 (connecting or connected) or an error. */
static int start_attempt(attempt *a, const struct addrinfo *ai,
                         const cio_connection_options *opts)
{
    a->ready = false;
    a->fd = cio__sys_socket(ai->ai_family, SOCK_STREAM, 0);
    if (a->fd < 0)
        return a->fd;
    int err = bind_local(a->fd, opts, ai->ai_family);
    if (!err) {
        err = cio__sys_connect(a->fd, ai->ai_addr, ai->ai_addrlen);
        if (err == 0 || err == -EINPROGRESS)
            err = cio_add_writer(a->task->fut.loop, a->fd, attempt_ready, a);
    }
    if (err) {
        cio__sys_close(a->fd);
        a->fd = -1;
    }
    return err;
}

static void stop_attempt(attempt *a, bool close_fd)
{
    if (a->fd < 0)
        return;
    cio_remove_writer(a->task->fut.loop, a->fd);
    if (close_fd)
        cio__sys_close(a->fd);
    a->fd = -1;
}

/* Connects to one of addrs; returns the connected fd or an error. */
static int happy_eyeballs(struct addrinfo **addrs, int n,
                          const cio_connection_options *opts)
{
    cio__task *t = cio__current;
    double delay = opts && opts->happy_eyeballs_delay > 0
                       ? opts->happy_eyeballs_delay : 0.25;
    attempt at[MAX_ATTEMPTS];
    cio__handle timer;
    cio__handle_init(&timer, t->fut.loop, delay_over, t);
    int started = 0, active = 0, winner = -1, err = -ECONNREFUSED;
    bool delay_passed = true;
    while (winner < 0) {
        if (started < n && (active == 0 || delay_passed)) {
            attempt *a = &at[started++];
            a->task = t;
            int e = start_attempt(a, addrs[started - 1], opts);
            if (e) {
                err = e;
                continue;
            }
            active++;
            delay_passed = false;
            cio__handle_schedule_at(&timer, cio_loop_time(t->fut.loop) + delay);
            continue;
        }
        if (active == 0)
            break; /* every address failed */
        int r = cio__park_checked(NULL, NULL);
        if (r) {
            err = r;
            break;
        }
        if (timer.state == CIO__H_IDLE)
            delay_passed = true;
        for (int i = 0; i < started && winner < 0; i++) {
            if (at[i].fd < 0 || !at[i].ready)
                continue;
            int e = cio__sys_socket_error(at[i].fd);
            if (e == 0) {
                winner = i;
            } else {
                err = e;
                stop_attempt(&at[i], true);
                active--;
            }
        }
    }
    cio__handle_unschedule(&timer);
    int fd = winner >= 0 ? at[winner].fd : -1;
    for (int i = 0; i < started; i++)
        stop_attempt(&at[i], i != winner);
    return winner >= 0 ? fd : err;
}

int cio_create_connection(const char *host, const char *port,
                          const cio_protocol *proto, void *ctx,
                          const cio_connection_options *opts,
                          cio_transport **out)
{
    if (out)
        *out = NULL;
    if (!cio__current || !proto || !port)
        return -EINVAL;
    struct addrinfo hints = {.ai_family = opts ? opts->family : 0,
                             .ai_socktype = SOCK_STREAM}, *res;
    int err = cio_getaddrinfo(host, port, &hints, &res);
    if (err)
        return err;
    struct addrinfo *addrs[MAX_ATTEMPTS];
    int n = interleave(res, addrs, MAX_ATTEMPTS);
    int fd = happy_eyeballs(addrs, n, opts);
    freeaddrinfo(res);
    if (fd < 0)
        return fd;
    err = make_transport(cio__current->fut.loop, fd, T_STREAM, proto, ctx,
                         true, out);
    if (err)
        cio__sys_close(fd);
    return err;
}

int cio_create_unix_connection(const char *path, const cio_protocol *proto,
                               void *ctx, cio_transport **out)
{
    if (out)
        *out = NULL;
    struct sockaddr_un sun;
    if (!cio__current || !proto || unix_address(path, &sun))
        return -EINVAL;
    int fd = cio__sys_socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int err = cio_sock_connect(fd, (struct sockaddr *)&sun, sizeof sun);
    if (!err)
        err = make_transport(cio__current->fut.loop, fd, T_STREAM, proto, ctx,
                             true, out);
    if (err)
        cio__sys_close(fd);
    return err;
}

/* -------------------------------------------------------------- datagrams */

static int resolve_one(const char *host, const char *port, int family,
                       int flags, struct addrinfo **res)
{
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_DGRAM,
                             .ai_flags = flags};
    return cio_getaddrinfo(host, port, &hints, res);
}

int cio_create_datagram_endpoint(const char *local_host,
                                 const char *local_port,
                                 const char *remote_host,
                                 const char *remote_port,
                                 const cio_protocol *proto, void *ctx,
                                 cio_transport **out)
{
    if (out)
        *out = NULL;
    if (!cio__current || !proto || (!local_port && !remote_port))
        return -EINVAL;
    struct addrinfo *local = NULL, *remote = NULL;
    int err = 0;
    if (remote_port)
        err = resolve_one(remote_host, remote_port, 0, 0, &remote);
    if (!err && local_port)
        err = resolve_one(local_host, local_port,
                          remote ? remote->ai_family : 0, AI_PASSIVE, &local);
    int family = remote ? remote->ai_family : local ? local->ai_family : 0;
    int fd = err ? err : cio__sys_socket(family, SOCK_DGRAM, 0);
    if (fd < 0)
        err = fd;
    if (!err && local)
        err = cio__sys_bind(fd, local->ai_addr, local->ai_addrlen);
    if (!err && remote)
        err = cio__sys_connect(fd, remote->ai_addr, remote->ai_addrlen);
    if (!err)
        err = make_transport(cio__current->fut.loop, fd, T_DGRAM, proto, ctx,
                             true, out);
    if (err && fd >= 0)
        cio__sys_close(fd);
    if (local)
        freeaddrinfo(local);
    if (remote)
        freeaddrinfo(remote);
    return err;
}

/* ------------------------------------------------------ closing the loop */

static cio__list *loop_transports(cio_loop *loop) { return &loop->transports; }

/* The loop closes with transports or servers alive: each is reported,
 * told connection_lost(-ESHUTDOWN) if it never heard of its end (the one
 * place its owner can free its context), and freed. */
void cio__net_close(cio_loop *loop)
{
    cio__list *n;
    while ((n = cio__list_pop_front(&loop->servers))) {
        cio_server *s = cio__container_of(n, cio_server, link);
        cio__list_init(&s->link);
        cio__report(loop, "unclosed server", 0, "server", NULL, s);
        cio_server_free(s);
    }
    while ((n = cio__list_pop_front(&loop->transports))) {
        cio_transport *t = cio__container_of(n, cio_transport, link);
        cio__list_init(&t->link);
        if (!t->closing)
            cio__report(loop, "unclosed transport", 0, "transport", NULL, t);
        if (!t->lost_scheduled)
            t->lost_error = -ESHUTDOWN;
        reader_off(t);
        cio_remove_writer(loop, t->fd);
        cio__handle_unschedule(&t->made_handle);
        cio__handle_unschedule(&t->lost_handle);
        t->server = NULL;
        call_connection_lost(t);
    }
    cio__free(loop->read_buf);
    loop->read_buf = NULL;
}

void cio_free(void *p) { cio__free(p); }
