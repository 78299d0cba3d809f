/* Shared by the networking tests (test_sock.c, test_transport.c,
 * test_server.c): a recording protocol, protocol servers and clients, raw
 * loopback sockets, and a strict main task. Header-only and all static, so
 * each test file gets its own copy of the state (the event `changed`, the
 * reports `rep`); nothing here is a symbol another test file could clash
 * with.
 *
 * Protocol callbacks record what happened into a `peer` (a log to compare
 * with asyncio's order, the bytes received, counters) and set one event the
 * test's tasks wait on, so nothing polls or assumes timing. */
#ifndef CIO_TESTS_NET_UTIL_H
#define CIO_TESTS_NET_UTIL_H

#include "harness.h"
#include "util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

/* Set by every protocol callback: tasks wait on it for a condition. */
__attribute__((unused)) static cio_event changed;

static inline void changed_init(void) { cio_event_init(&changed); }

/* From a task: waits until cond holds, re-checking after every callback. */
#define AWAIT(cond)                                                            \
    do {                                                                       \
        while (!(cond)) {                                                      \
            cio_event_clear(&changed);                                         \
            int r_ = cio_event_wait(&changed);                                 \
            if (r_)                                                            \
                test_fail(__FILE__, __LINE__, "waiting for %s: %s", #cond,     \
                          cio_strerror(r_));                                   \
        }                                                                      \
    } while (0)

/* What reached the exception handler. fatal: any report fails the test. */
typedef struct reports {
    int n;
    int n_emfile;
    int last_error;
    bool fatal;
    test_log log; /* the messages */
} reports;
__attribute__((unused)) static reports rep;

static inline void on_report(cio_loop *loop, const cio_error_context *ctx,
                             void *arg)
{
    (void)loop;
    (void)arg;
    if (rep.fatal)
        test_fail(__FILE__, __LINE__, "unexpected report: %s (%s)",
                  ctx->message, cio_strerror(ctx->error));
    rep.n++;
    if (ctx->error == -EMFILE)
        rep.n_emfile++;
    rep.last_error = ctx->error;
    test_log_add(&rep.log, "%s", ctx->message);
    cio_event_set(&changed);
}

/* Installs the recording handler on loop (NULL: the running one). */
static inline void watch_reports(cio_loop *loop, bool fatal)
{
    memset(&rep, 0, sizeof rep);
    rep.fatal = fatal;
    CHECK_ERR(cio_loop_set_exception_handler(
                  loop ? loop : cio_get_running_loop(), on_report, NULL),
              0);
}

/* Bytes that tell where they are: byte i of a stream is pat(i) (util.h). */

static inline void fill(char *buf, size_t n, size_t offset)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pat(offset + i);
}

static inline bool pattern_ok(const char *buf, size_t n, size_t offset)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != pat(offset + i))
            return false;
    return true;
}

/* ------------------------------------------------- a recording protocol */

typedef struct peer {
    test_log log;           /* made, data, eof, lost[:error], pause, resume */
    cio_transport *t;       /* NULL once connection_lost ran */
    char *data;             /* every byte received, NUL-terminated */
    size_t len, cap;
    int made, eofs, lost, lost_error;
    int pauses, resumes;
    size_t size_at_pause, size_at_resume;
    int eof_keep;           /* what eof_received returns */
    bool echo;              /* write back what arrives */
    bool pause_on_made;     /* pause_reading in connection_made */
    bool last_was_data;     /* data events log once per run */
    int write_err;          /* first error of an echo write */
    int write_in_lost;      /* cio_transport_write from connection_lost */
    /* buffered protocol */
    char small[97];         /* get_buffer's memory: deliberately small */
    size_t gets, updates, min_hint;
    /* datagrams */
    int datagrams, dgram_errors, dgram_error;
    struct sockaddr_storage from;
    socklen_t fromlen;
} peer;

static inline void peer_append(peer *p, const char *data, size_t n)
{
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + n + 1)
            cap *= 2;
        p->data = realloc(p->data, cap);
        CHECK(p->data != NULL);
        p->cap = cap;
    }
    memcpy(p->data + p->len, data, n);
    p->len += n;
    p->data[p->len] = 0;
}

static inline void peer_free(peer *p)
{
    free(p->data);
    p->data = NULL;
    p->len = p->cap = 0;
}

static inline void p_made(cio_transport *t, void *ctx)
{
    peer *p = ctx;
    p->t = t;
    p->made++;
    p->last_was_data = false;
    test_log_add(&p->log, "made");
    if (p->pause_on_made)
        CHECK_ERR(cio_transport_pause_reading(t), 0);
    cio_event_set(&changed);
}

static inline void p_data(cio_transport *t, const char *data, size_t n,
                          void *ctx)
{
    peer *p = ctx;
    CHECK(n > 0);
    if (!p->last_was_data)
        test_log_add(&p->log, "data");
    p->last_was_data = true;
    peer_append(p, data, n);
    if (p->echo) {
        int r = cio_transport_write(t, data, n);
        if (r && !p->write_err)
            p->write_err = r;
    }
    cio_event_set(&changed);
}

static inline int p_eof(cio_transport *t, void *ctx)
{
    (void)t;
    peer *p = ctx;
    p->eofs++;
    p->last_was_data = false;
    test_log_add(&p->log, "eof");
    cio_event_set(&changed);
    return p->eof_keep;
}

static inline void p_lost(cio_transport *t, int error, void *ctx)
{
    peer *p = ctx;
    p->lost++;
    p->lost_error = error;
    p->last_was_data = false;
    p->write_in_lost = cio_transport_write(t, "x", 1);
    if (error)
        test_log_add(&p->log, "lost:%s", cio_strerror(error));
    else
        test_log_add(&p->log, "lost");
    p->t = NULL;
    cio_event_set(&changed);
}

static inline void p_pause(cio_transport *t, void *ctx)
{
    peer *p = ctx;
    p->pauses++;
    p->size_at_pause = cio_transport_get_write_buffer_size(t);
    p->last_was_data = false;
    test_log_add(&p->log, "pause");
    cio_event_set(&changed);
}

static inline void p_resume(cio_transport *t, void *ctx)
{
    peer *p = ctx;
    p->resumes++;
    p->size_at_resume = cio_transport_get_write_buffer_size(t);
    p->last_was_data = false;
    test_log_add(&p->log, "resume");
    cio_event_set(&changed);
}

static inline void p_datagram(cio_transport *t, const char *data, size_t n,
                              const struct sockaddr *addr, socklen_t len,
                              void *ctx)
{
    peer *p = ctx;
    p->datagrams++;
    peer_append(p, data, n);
    peer_append(p, "|", 1);
    CHECK(len <= sizeof p->from);
    memcpy(&p->from, addr, len);
    p->fromlen = len;
    if (p->echo) {
        int r = cio_transport_sendto(t, data, n, addr, len);
        if (r && !p->write_err)
            p->write_err = r;
    }
    cio_event_set(&changed);
}

static inline void p_error(cio_transport *t, int error, void *ctx)
{
    (void)t;
    peer *p = ctx;
    p->dgram_errors++;
    p->dgram_error = error;
    cio_event_set(&changed);
}

__attribute__((unused)) static const cio_protocol rec_proto = {
    .connection_made = p_made,
    .data_received = p_data,
    .eof_received = p_eof,
    .connection_lost = p_lost,
    .pause_writing = p_pause,
    .resume_writing = p_resume,
    .datagram_received = p_datagram,
    .error_received = p_error,
};

/* A server's connections: the factory hands out peers copied from tmpl. */
enum { MAX_PEERS = 16 };
typedef struct peers {
    peer tmpl;
    peer p[MAX_PEERS];
    int n;
} peers;

static inline void *next_peer(void *arg)
{
    peers *ps = arg;
    CHECK(ps->n < MAX_PEERS);
    peer *p = &ps->p[ps->n++];
    *p = ps->tmpl;
    cio_event_set(&changed);
    return p;
}

static inline void peers_free(peers *ps)
{
    for (int i = 0; i < ps->n; i++)
        peer_free(&ps->p[i]);
    peer_free(&ps->tmpl);
}

static inline int lost_count(const peers *ps)
{
    int n = 0;
    for (int i = 0; i < ps->n; i++)
        n += ps->p[i].lost;
    return n;
}

/* A protocol server on host, port "0", with its connections' peers. */
typedef struct srv {
    cio_server *s;
    int port;
    char portstr[16];
    peers sp;
} srv;

static inline void serve_opts(srv *v, const char *host,
                              const cio_server_options *o)
{
    CHECK_ERR(cio_create_server(host, "0", &rec_proto, next_peer, &v->sp, o,
                                &v->s),
              0);
    v->port = cio_server_port(v->s);
    CHECK(v->port > 0);
    snprintf(v->portstr, sizeof v->portstr, "%d", v->port);
}

static inline void serve(srv *v, const char *host)
{
    serve_opts(v, host, NULL);
}

/* On the heap: a server's peers are too big for a task's stack. */
static inline srv *srv_new(void)
{
    srv *v = calloc(1, sizeof *v);
    CHECK(v != NULL);
    return v;
}

/* Closes the server, waits until its connections are gone, frees it and
 * v. */
static inline void srv_done(srv *v)
{
    cio_server_close(v->s);
    CHECK_ERR(cio_server_wait_closed(v->s), 0);
    cio_server_free(v->s);
    peers_free(&v->sp);
    free(v);
}

static inline cio_transport *dial(const char *host, const char *port, peer *p)
{
    cio_transport *t = NULL;
    CHECK_ERR(cio_create_connection(host, port, &rec_proto, p, NULL, &t), 0);
    CHECK(t != NULL);
    return t;
}

/* Closes the client side and waits until both ends heard connection_lost
 * (the server's peers close on EOF: eof_keep 0). */
static inline void hang_up(cio_transport *t, peer *c, const peers *ps,
                           int nlost)
{
    cio_transport_close(t);
    AWAIT(c->lost && lost_count(ps) >= nlost);
}

/* Writes to t until more than the default high-water mark sits in its
 * buffer (the kernel took the rest); returns how much was written. */
static inline size_t fill_until_buffered(cio_transport *t, size_t offset)
{
    size_t chunk = 1u << 20, total = 0;
    char *buf = malloc(chunk);
    /* Past the default high-water mark (64 KiB), not just non-empty: how
     * much of the last chunk the kernel takes varies with its memory, and
     * the callers count on pause_writing having come. */
    while (cio_transport_get_write_buffer_size(t) <= 64 * 1024) {
        CHECK(total < (512u << 20));
        fill(buf, chunk, offset + total);
        CHECK_ERR(cio_transport_write(t, buf, chunk), 0);
        total += chunk;
    }
    free(buf);
    return total;
}

static inline bool have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* The loopback address of family with port. */
static inline socklen_t loopback(int family, int port,
                                 struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = htons((uint16_t)port);
        return sizeof *a;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->sin_port = htons((uint16_t)port);
    return sizeof *a;
}

static inline int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* A non-blocking socket of type bound to loopback (port 0: any). */
static inline int bound_socket(int family, int type, int port)
{
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, port, &ss);
    CHECK(bind(fd, (struct sockaddr *)&ss, len) == 0);
    return fd;
}

static inline int raw_listener(int family, int *port)
{
    int fd = bound_socket(family, SOCK_STREAM, 0);
    CHECK(listen(fd, 16) == 0);
    *port = port_of(fd);
    return fd;
}

/* A port nothing listens on (bound, then released). */
static inline int closed_port(int family, int type)
{
    int fd = bound_socket(family, type, 0);
    int port = port_of(fd);
    close(fd);
    return port;
}

/* From a task: a raw non-blocking TCP socket connected to loopback:port. */
static inline int raw_connect(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, port, &ss);
    CHECK_ERR(cio_sock_connect(fd, (struct sockaddr *)&ss, len), 0);
    return fd;
}

/* From a task: reads from fd until n bytes came (or EOF); returns them. */
static inline size_t raw_read(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = cio_sock_recv(fd, buf + got, n - got);
        CHECK(r >= 0);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return got;
}

static inline bool same_addr(const struct sockaddr_storage *a, socklen_t alen,
                             const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Runs fn as the main task of a fresh loop, with changed initialised and
 * every exception report failing the test. */
typedef struct main_args {
    cio_task_fn fn;
    void *arg;
} main_args;

static inline int strict_main(void *arg)
{
    main_args *m = arg;
    changed_init();
    watch_reports(NULL, true);
    return m->fn(m->arg);
}

static inline void run_main(cio_task_fn fn, void *arg)
{
    main_args m = {fn, arg};
    CHECK_ERR(cio_run(strict_main, &m), 0);
}

#endif
