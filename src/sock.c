/* Networking's bottom layer: the sock_* coroutines (asyncio's
 * loop.sock_recv, sock_sendall, ...), name resolution, Unix addresses.
 *
 * A sock_* call first tries the syscall on the caller's non-blocking fd
 * and parks the task on a watcher only when the kernel says "not now", so
 * a ready socket costs one syscall and no trip through the loop. Each call
 * is a suspension point: it returns -ECANCELED or -ETIMEDOUT when the task
 * is cancelled or its timeout scope expires, and never leaves a watcher
 * behind. Outside a task every call is CIO_ENOTASK.
 *
 * Calls only down (tasks, the executor, sys.c); see net.h for the layers.
 */
#define _GNU_SOURCE
#include "net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <string.h>

/* ------------------------------------------------------- waiting for fds */

static void fd_ready(void *arg) { cio__wake(arg, 0); }

static const cio__wait_kind read_wait = {"read", NULL};
static const cio__wait_kind write_wait = {"write", NULL};

/* Parks the current task until fd is readable (dir 0) or writable (1).
 * The watcher is removed on every way out, cancellation included: fd
 * belongs to the caller, who may close it the moment we return. */
static int wait_fd(int fd, int dir)
{
    cio__task *t = cio__current;
    if (!t)
        return cio__no_task("cio_sock_*");
    int r = cio__interrupted(t);
    if (r)
        return r;
    cio_loop *loop = t->fut.loop;
    r = dir ? cio_add_writer(loop, fd, fd_ready, t)
            : cio_add_reader(loop, fd, fd_ready, t);
    if (r)
        return r;
    cio__task_waits(t, dir ? &write_wait : &read_wait, NULL, fd);
    r = cio__park_checked(NULL, NULL);
    if (dir)
        cio_remove_writer(loop, fd);
    else
        cio_remove_reader(loop, fd);
    return r;
}

/* ---------------------------------------------------------- socket calls */

/* The arguments of one sock_* syscall, so one retry loop serves them all. */
typedef struct sock_op {
    int fd;
    int dir;                   /* waits for 0: readable, 1: writable */
    void *buf;                 /* recv: where to; send: from (const) */
    size_t n;
    struct sockaddr *addr;     /* accept/recvfrom: out; sendto: in */
    socklen_t len, *lenp;      /* sendto's len; accept/recvfrom's in-out */
    cio__sendfile *sf;         /* sendfile's state, for its calls */
} sock_op;

/* Every call's way in: CIO_ENOTASK outside a task (debug mode names
 * `call`, the public function), else whatever already interrupts the task
 * (a pending cancellation, an expired scope) or 0. */
static int sock_enter_(const char *call)
{
    return cio__current ? cio__interrupted(cio__current) : cio__no_task(call);
}
#define sock_enter() sock_enter_(__func__)

/* The socket retry loop: runs call until it does something other than
 * "not now", waiting for the fd in between. Returns call's result, or the
 * error that ended the wait (the task interrupted, a watcher refused). */
static ssize_t sock_retry(sock_op *op, ssize_t (*call)(sock_op *op))
{
    ssize_t r = sock_enter();
    while (r == 0) {
        ssize_t got = call(op);
        if (!cio__net_again(got))
            return got;
        r = wait_fd(op->fd, op->dir);
    }
    return r;
}

static ssize_t op_recv(sock_op *o) { return cio__sys_recv(o->fd, o->buf, o->n); }

static ssize_t op_send(sock_op *o) { return cio__sys_send(o->fd, o->buf, o->n); }

static ssize_t op_accept(sock_op *o)
{
    return cio__sys_accept(o->fd, o->addr, o->lenp);
}

static ssize_t op_recvfrom(sock_op *o)
{
    /* Not MSG_TRUNC in the call (TCP takes it as "discard the bytes"):
     * the kernel marks a cut datagram in msg_flags on every socket type. */
    int flags;
    ssize_t r = cio__sys_recvfrom(o->fd, o->buf, o->n, o->addr, o->lenp, 0,
                                  &flags);
    return r >= 0 && (flags & MSG_TRUNC) ? -EMSGSIZE : r;
}

static ssize_t op_sendto(sock_op *o)
{
    return cio__sys_sendto(o->fd, o->buf, o->n, o->addr, o->len);
}

ssize_t cio_sock_recv(int fd, void *buf, size_t n)
{
    sock_op op = {.fd = fd, .buf = buf, .n = n};
    return sock_retry(&op, op_recv);
}

ssize_t cio_sock_recv_into(int fd, void *buf, size_t n)
{
    return cio_sock_recv(fd, buf, n);
}

/* Sends until all n bytes are out. An error after a partial send loses
 * the count, as asyncio's sock_sendall does: the stream is broken anyway. */
int cio_sock_sendall(int fd, const void *buf, size_t n)
{
    sock_op op = {.fd = fd, .dir = 1, .buf = (void *)buf, .n = n};
    int r = sock_enter();
    while (!r && op.n > 0) {
        ssize_t sent = sock_retry(&op, op_send);
        if (sent < 0)
            return (int)sent;
        op.buf = (char *)op.buf + sent;
        op.n -= (size_t)sent;
    }
    return r;
}

/* A non-blocking connect reports EINPROGRESS and finishes when the fd
 * turns writable; its outcome is then the socket's SO_ERROR. EINTR means
 * the same: the connect goes on in the kernel and must not be restarted. */
int cio_sock_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!addr)
        return -EINVAL;
    int r = sock_enter();
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
    sock_op op = {.fd = fd, .addr = addr, .lenp = len};
    return (int)sock_retry(&op, op_accept);
}

ssize_t cio_sock_recvfrom(int fd, void *buf, size_t n, struct sockaddr *addr,
                          socklen_t *len)
{
    sock_op op = {.fd = fd, .buf = buf, .n = n, .addr = addr, .lenp = len};
    return sock_retry(&op, op_recvfrom);
}

ssize_t cio_sock_sendto(int fd, const void *buf, size_t n,
                        const struct sockaddr *addr, socklen_t len)
{
    sock_op op = {.fd = fd, .dir = 1, .buf = (void *)buf, .n = n,
                  .addr = (struct sockaddr *)addr, .len = len};
    return sock_retry(&op, op_sendto);
}

/* -------------------------------------------------------------- sendfile
 * asyncio's sock_sendfile: sendfile(2) where the kernel can, read and send
 * where it cannot. The offset is explicit, so file's own position never
 * moves (asyncio seeks it past what went): one fd can serve many sockets
 * at once, and sf->sent says where a send stopped. */

enum {
    SENDFILE_MAX = 0x7ffff000, /* the most Linux moves in one call */
    COPY_CHUNK = 256 * 1024    /* asyncio's fallback read size */
};

/* sendfile(2)'s "not this file", as opposed to a failure of the
 * connection: a pipe or socket as the source (ESPIPE, EINVAL), a file
 * without splice support (EINVAL: much of /proc), no sendfile at all. */
static bool kernel_cannot(ssize_t r)
{
    return r == -EINVAL || r == -ESPIPE || r == -ENOSYS || r == -EOPNOTSUPP;
}

static bool sendfile_done(const cio__sendfile *sf)
{
    return sf->count && sf->sent == sf->count;
}

/* The bytes the next call may move: what is left, at most cap. */
static size_t sendfile_want(const cio__sendfile *sf, size_t cap)
{
    size_t left = sf->count ? sf->count - sf->sent : cap;
    return left < cap ? left : cap;
}

/* Before every call on the socket: whether its owner still lets us. */
static int sendfile_check(const cio__sendfile *sf)
{
    return sf->check ? sf->check(sf->check_arg) : 0;
}

static ssize_t op_sendfile(sock_op *o)
{
    cio__sendfile *sf = o->sf;
    int err = sendfile_check(sf);
    return err ? err
               : cio__sys_sendfile(o->fd, sf->file,
                                   sf->offset + (int64_t)sf->sent, o->n);
}

static ssize_t op_copy_send(sock_op *o)
{
    int err = sendfile_check(o->sf);
    return err ? err : cio__sys_send(o->fd, o->buf, o->n);
}

/* The zero-copy path. Returns 0 once count bytes went or at EOF (where
 * sendfile(2) moves nothing), else the error that stopped it. */
static int send_native(cio__sendfile *sf)
{
    sock_op op = {.fd = sf->sock, .dir = 1, .sf = sf};
    while (!sendfile_done(sf)) {
        op.n = sendfile_want(sf, SENDFILE_MAX);
        ssize_t r = sock_retry(&op, op_sendfile);
        if (r <= 0)
            return (int)r;
        sf->sent += (size_t)r;
    }
    return 0;
}

/* A source without offsets is read in order, after waiting until it is
 * readable, so a pipe left blocking never blocks the loop. */
ssize_t cio__sendfile_read(cio__sendfile *sf, void *buf, size_t n)
{
    if (!sf->sequential) {
        ssize_t r = cio__sys_pread(sf->file, buf, n,
                                   sf->offset + (int64_t)sf->sent);
        if (r != -ESPIPE)
            return r;
        if (sf->offset)
            return -ESPIPE; /* as asyncio's seek on a pipe */
        sf->sequential = true;
    }
    for (;;) {
        int err = sendfile_check(sf);
        if (!err)
            err = wait_fd(sf->file, 0);
        if (err)
            return err;
        ssize_t r = cio__sys_read(sf->file, buf, n);
        if (!cio__net_again(r))
            return r;
    }
}

/* Sends n bytes of buf, counting every partial send in sf->sent. */
static int send_chunk(cio__sendfile *sf, const char *buf, size_t n)
{
    sock_op op = {.fd = sf->sock, .dir = 1, .sf = sf};
    while (n > 0) {
        op.buf = (void *)buf;
        op.n = n;
        ssize_t r = sock_retry(&op, op_copy_send);
        if (r < 0)
            return (int)r;
        sf->sent += (size_t)r;
        buf += r;
        n -= (size_t)r;
    }
    return 0;
}

static void free_chunk(void *buf) { cio__free(buf); }

/* The copying path, for what sendfile(2) cannot take. */
static int send_copies(cio__sendfile *sf)
{
    size_t size = sendfile_want(sf, COPY_CHUNK);
    char *buf = cio__malloc(size);
    if (!buf)
        return -ENOMEM;
    cio__cleanup c; /* only we hold buf: freed if the loop closes first */
    cio__cleanup_push(cio__current, &c, free_chunk, buf);
    int r = 0;
    while (!r && !sendfile_done(sf)) {
        ssize_t got = cio__sendfile_read(sf, buf, sendfile_want(sf, size));
        if (got <= 0) {
            r = (int)got; /* 0: EOF */
            break;
        }
        r = send_chunk(sf, buf, (size_t)got);
    }
    cio__cleanup_pop(cio__current, &c);
    cio__free(buf);
    return r;
}

bool cio__sendfile_try(cio__sendfile *sf)
{
    sock_op op = {.fd = sf->sock, .sf = sf, .n = sendfile_want(sf, SENDFILE_MAX)};
    ssize_t r = op_sendfile(&op);
    if (r > 0)
        sf->sent += (size_t)r;
    return r == 0 || (r > 0 && sendfile_done(sf));
}

int cio__sendfile_run(cio__sendfile *sf)
{
    int r = send_native(sf);
    if (!kernel_cannot(r) || sf->sent > 0)
        return r;
    return sf->fallback ? send_copies(sf) : -ENOTSUP;
}

/* asyncio takes stream sockets only; anything else is -EINVAL, and what
 * is no socket at all gets the kernel's word (-ENOTSOCK, -EBADF). */
static int stream_socket(int fd)
{
    int type = cio__sys_socket_type(fd);
    return type < 0 ? type : type == SOCK_STREAM ? 0 : -EINVAL;
}

int cio_sock_sendfile(int sock, int file_fd, int64_t offset, size_t count,
                      int fallback, size_t *sent)
{
    cio__sendfile sf = {.sock = sock, .file = file_fd, .offset = offset,
                        .count = count, .fallback = fallback != 0};
    int r = sock_enter();
    if (!r && offset < 0)
        r = -EINVAL;
    if (!r)
        r = stream_socket(sock);
    if (!r)
        r = cio__sendfile_run(&sf);
    if (sent)
        *sent = sf.sent;
    return r;
}

/* ------------------------------------------------------- name resolution
 * getaddrinfo may block (DNS, /etc/hosts), so it runs in the executor, as
 * asyncio's does; numeric hosts are resolved in place (asyncio's
 * _ipaddr_info shortcut), which needs no thread. */

/* Lives on the calling task's stack: cio_to_thread returns only after the
 * worker is done with it, even when the task is cancelled meanwhile. */
typedef struct gai_job {
    const char *host, *port;
    const struct addrinfo *hints;
    struct addrinfo *res;      /* the worker's answer, the caller's to free */
} gai_job;

/* EAI_SYSTEM means "look at errno"; every other EAI_ code gets its own
 * cio code, far from errno's range. */
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

/* NULL and "" mean the wildcard or loopback address: numeric too. */
static bool is_numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return !host || !*host || inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

/* A decimal string within 0..65535. */
static bool is_port_number(const char *s)
{
    unsigned long v = 0;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        v = v * 10 + (unsigned long)(*c - '0');
        if (v > 65535)
            return false;
    }
    return *s != 0;
}

/* getaddrinfo turns any decimal it can read into a port with htons, so
 * "65616" would quietly become port 80 (libuv's CVE-2024-24806): what
 * starts like a number must be one in range. Anything else is a service
 * name (NULL: no port), unless the hints ask for a number. */
static bool port_acceptable(const char *port, const struct addrinfo *hints)
{
    if (!port)
        return true;
    unsigned char c = (unsigned char)*port;
    bool numeric_only = hints && (hints->ai_flags & AI_NUMERICSERV);
    if (numeric_only || !c || isdigit(c) || isspace(c) || c == '-' ||
        c == '+')
        return is_port_number(port);
    return true;
}

int cio_getaddrinfo(const char *host, const char *port,
                    const struct addrinfo *hints, struct addrinfo **res)
{
    if (!res)
        return -EINVAL;
    *res = NULL;
    if (!port_acceptable(port, hints))
        return -EINVAL;
    int r = sock_enter();
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
    char *host, *serv;         /* the caller's buffers */
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

/* Always in the executor: even a numeric address may be looked up. */
int cio_getnameinfo(const struct sockaddr *addr, socklen_t len, char *host,
                    size_t hostlen, char *serv, size_t servlen, int flags)
{
    if (!addr)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task(__func__);
    gni_job j = {addr, len, host, serv, hostlen, servlen, flags};
    return cio_to_thread(run_getnameinfo, &j);
}

/* ------------------------------------------------------------- addresses */

int cio__unix_address(const char *path, struct sockaddr_un *sun)
{
    if (!path || strlen(path) >= sizeof sun->sun_path)
        return -EINVAL;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    strcpy(sun->sun_path, path);
    return 0;
}
