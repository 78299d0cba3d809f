/* Networking (issue 6): socket coroutines, name resolution, transports and
 * protocols, servers, datagram endpoints, Unix sockets, and the behaviour
 * under bad peers, over real sockets on loopback (127.0.0.1, ::1, Unix
 * sockets in a temporary directory).
 *
 * Protocol callbacks record what happened into a `peer` (a log to compare
 * with asyncio's order, the bytes received, counters) and set one event the
 * test's tasks wait on, so nothing here polls or assumes timing; the short
 * sleeps only give a peer a chance to do something it must not do. Every
 * test closes what it opened and waits for connection_lost, so the
 * harness's leak check sees everything freed. Every test name starts with
 * "net_" (`make check T=net`). */
#define _GNU_SOURCE
#include "harness.h"

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

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Set by every protocol callback: tasks wait on it for a condition. */
static cio_event changed;

static void changed_init(void) { cio_event_init(&changed); }

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

/* The same, returning the error instead of failing (fault scenarios). */
#define AWAIT_OR_RETURN(cond)                                                  \
    do {                                                                       \
        while (!(cond)) {                                                      \
            cio_event_clear(&changed);                                         \
            int r_ = cio_event_wait(&changed);                                 \
            if (r_)                                                            \
                return r_;                                                     \
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
static reports rep;

static void on_report(cio_loop *loop, const cio_error_context *ctx, void *arg)
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
static void watch_reports(cio_loop *loop, bool fatal)
{
    memset(&rep, 0, sizeof rep);
    rep.fatal = fatal;
    CHECK_ERR(cio_loop_set_exception_handler(
                  loop ? loop : cio_get_running_loop(), on_report, NULL),
              0);
}

/* Bytes that tell where they are: byte i of a stream is pat(i). */
static char pat(size_t i) { return (char)((i * 131u + (i >> 9)) & 0xff); }

static void fill(char *buf, size_t n, size_t offset)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pat(offset + i);
}

static bool pattern_ok(const char *buf, size_t n, size_t offset)
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

static void peer_append(peer *p, const char *data, size_t n)
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

static void peer_free(peer *p)
{
    free(p->data);
    p->data = NULL;
    p->len = p->cap = 0;
}

static void p_made(cio_transport *t, void *ctx)
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

static void p_data(cio_transport *t, const char *data, size_t n, void *ctx)
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

static int p_eof(cio_transport *t, void *ctx)
{
    (void)t;
    peer *p = ctx;
    p->eofs++;
    p->last_was_data = false;
    test_log_add(&p->log, "eof");
    cio_event_set(&changed);
    return p->eof_keep;
}

static void p_lost(cio_transport *t, int error, void *ctx)
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

static void p_pause(cio_transport *t, void *ctx)
{
    peer *p = ctx;
    p->pauses++;
    p->size_at_pause = cio_transport_get_write_buffer_size(t);
    p->last_was_data = false;
    test_log_add(&p->log, "pause");
    cio_event_set(&changed);
}

static void p_resume(cio_transport *t, void *ctx)
{
    peer *p = ctx;
    p->resumes++;
    p->size_at_resume = cio_transport_get_write_buffer_size(t);
    p->last_was_data = false;
    test_log_add(&p->log, "resume");
    cio_event_set(&changed);
}

static void p_datagram(cio_transport *t, const char *data, size_t n,
                       const struct sockaddr *addr, socklen_t len, void *ctx)
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

static void p_error(cio_transport *t, int error, void *ctx)
{
    (void)t;
    peer *p = ctx;
    p->dgram_errors++;
    p->dgram_error = error;
    cio_event_set(&changed);
}

static const cio_protocol rec_proto = {
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

static void *next_peer(void *arg)
{
    peers *ps = arg;
    CHECK(ps->n < MAX_PEERS);
    peer *p = &ps->p[ps->n++];
    *p = ps->tmpl;
    cio_event_set(&changed);
    return p;
}

static void peers_free(peers *ps)
{
    for (int i = 0; i < ps->n; i++)
        peer_free(&ps->p[i]);
    peer_free(&ps->tmpl);
}

static int lost_count(const peers *ps)
{
    int n = 0;
    for (int i = 0; i < ps->n; i++)
        n += ps->p[i].lost;
    return n;
}

static int made_count(const peers *ps)
{
    int n = 0;
    for (int i = 0; i < ps->n; i++)
        n += ps->p[i].made;
    return n;
}

/* A protocol server on host, port "0", with its connections' peers. */
typedef struct srv {
    cio_server *s;
    int port;
    char portstr[16];
    peers sp;
} srv;

static void serve_opts(srv *v, const char *host, const cio_server_options *o)
{
    CHECK_ERR(cio_create_server(host, "0", &rec_proto, next_peer, &v->sp, o,
                                &v->s),
              0);
    v->port = cio_server_port(v->s);
    CHECK(v->port > 0);
    snprintf(v->portstr, sizeof v->portstr, "%d", v->port);
}

static void serve(srv *v, const char *host) { serve_opts(v, host, NULL); }

/* On the heap: a server's peers are too big for a task's stack. */
static srv *srv_new(void)
{
    srv *v = calloc(1, sizeof *v);
    CHECK(v != NULL);
    return v;
}

/* Closes the server, waits until its connections are gone, frees it and
 * v. */
static void srv_done(srv *v)
{
    cio_server_close(v->s);
    CHECK_ERR(cio_server_wait_closed(v->s), 0);
    cio_server_free(v->s);
    peers_free(&v->sp);
    free(v);
}

static cio_transport *dial(const char *host, const char *port, peer *p)
{
    cio_transport *t = NULL;
    CHECK_ERR(cio_create_connection(host, port, &rec_proto, p, NULL, &t), 0);
    CHECK(t != NULL);
    return t;
}

/* Closes the client side and waits until both ends heard connection_lost
 * (the server's peers close on EOF: eof_keep 0). */
static void hang_up(cio_transport *t, peer *c, const peers *ps, int nlost)
{
    cio_transport_close(t);
    AWAIT(c->lost && lost_count(ps) >= nlost);
}

/* Writes to t until data sits in its buffer (the kernel took the rest);
 * returns how much was written. */
static size_t fill_until_buffered(cio_transport *t, size_t offset)
{
    size_t chunk = 1u << 20, total = 0;
    char *buf = malloc(chunk);
    while (cio_transport_get_write_buffer_size(t) == 0) {
        CHECK(total < (512u << 20));
        fill(buf, chunk, offset + total);
        CHECK_ERR(cio_transport_write(t, buf, chunk), 0);
        total += chunk;
    }
    free(buf);
    return total;
}

static bool have_ipv6(void)
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
static socklen_t loopback(int family, int port, struct sockaddr_storage *ss)
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

static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* A non-blocking socket of type bound to loopback (port 0: any). */
static int bound_socket(int family, int type, int port)
{
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, port, &ss);
    CHECK(bind(fd, (struct sockaddr *)&ss, len) == 0);
    return fd;
}

static int raw_listener(int family, int *port)
{
    int fd = bound_socket(family, SOCK_STREAM, 0);
    CHECK(listen(fd, 16) == 0);
    *port = port_of(fd);
    return fd;
}

/* A port nothing listens on (bound, then released). */
static int closed_port(int family, int type)
{
    int fd = bound_socket(family, type, 0);
    int port = port_of(fd);
    close(fd);
    return port;
}

/* From a task: a raw non-blocking TCP socket connected to loopback:port. */
static int raw_connect(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, port, &ss);
    CHECK_ERR(cio_sock_connect(fd, (struct sockaddr *)&ss, len), 0);
    return fd;
}

/* From a task: reads from fd until n bytes came (or EOF); returns them. */
static size_t raw_read(int fd, char *buf, size_t n)
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

static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static bool same_addr(const struct sockaddr_storage *a, socklen_t alen,
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

static int strict_main(void *arg)
{
    main_args *m = arg;
    changed_init();
    watch_reports(NULL, true);
    return m->fn(m->arg);
}

static void run_main(cio_task_fn fn, void *arg)
{
    main_args m = {fn, arg};
    CHECK_ERR(cio_run(strict_main, &m), 0);
}

/* ------------------------------------------------------ socket coroutines */

typedef struct sock_pair {
    int lfd;
    int port;
    size_t n;
    struct sockaddr_storage accepted_from;
    socklen_t accepted_len;
    struct sockaddr_storage client_name;
    socklen_t client_len;
} sock_pair;

static int sock_server_task(void *arg)
{
    sock_pair *sp = arg;
    sp->accepted_len = sizeof sp->accepted_from;
    int fd = cio_sock_accept(sp->lfd, (struct sockaddr *)&sp->accepted_from,
                             &sp->accepted_len);
    CHECK(fd >= 0);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    char *buf = malloc(sp->n);
    CHECK(buf != NULL);
    size_t got = 0;
    for (int i = 0; got < sp->n; i++) { /* both spellings of recv */
        ssize_t r = i % 2 ? cio_sock_recv(fd, buf + got, sp->n - got)
                          : cio_sock_recv_into(fd, buf + got, sp->n - got);
        CHECK(r > 0);
        got += (size_t)r;
    }
    CHECK(pattern_ok(buf, sp->n, 0));
    CHECK_ERR(cio_sock_sendall(fd, buf, sp->n), 0);
    char b;
    CHECK_EQ(cio_sock_recv(fd, &b, 1), 0); /* the client's EOF */
    free(buf);
    close(fd);
    return 0;
}

static int sock_client_task(void *arg)
{
    sock_pair *sp = arg;
    int fd = raw_connect(AF_INET, sp->port);
    sp->client_len = sizeof sp->client_name;
    CHECK(getsockname(fd, (struct sockaddr *)&sp->client_name,
                      &sp->client_len) == 0);
    char *buf = malloc(sp->n);
    CHECK(buf != NULL);
    fill(buf, sp->n, 0);
    /* Much more than the socket buffers hold: sendall must wait. */
    CHECK_ERR(cio_sock_sendall(fd, buf, sp->n), 0);
    memset(buf, 0, sp->n);
    CHECK_EQ(raw_read(fd, buf, sp->n), sp->n);
    CHECK(pattern_ok(buf, sp->n, 0));
    CHECK(shutdown(fd, SHUT_WR) == 0);
    free(buf);
    close(fd);
    return 0;
}

static int sock_calls_main(void *arg)
{
    (void)arg;
    sock_pair sp = {.n = 8u << 20};
    sp.lfd = raw_listener(AF_INET, &sp.port);
    cio_task *srv_task, *cli_task;
    CHECK_ERR(cio_create_task(sock_server_task, &sp, &srv_task), 0);
    CHECK_ERR(cio_sleep(0.01), 0); /* the server waits in accept first */
    CHECK_ERR(cio_create_task(sock_client_task, &sp, &cli_task), 0);
    CHECK_ERR(cio_await(cli_task, NULL), 0);
    CHECK_ERR(cio_await(srv_task, NULL), 0);
    cio_future_unref(srv_task);
    cio_future_unref(cli_task);
    CHECK(same_addr(&sp.accepted_from, sp.accepted_len, &sp.client_name,
                    sp.client_len));
    close(sp.lfd);
    return 0;
}

TEST(net_sock_connect_accept_sendall_recv_between_two_tasks)
{
    run_main(sock_calls_main, NULL);
}

static int sock_udp_receiver(void *arg)
{
    int fd = *(int *)arg;
    char buf[64];
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    ssize_t n = cio_sock_recvfrom(fd, buf, sizeof buf, (struct sockaddr *)&from,
                                  &len); /* waits: nothing was sent yet */
    CHECK_EQ(n, 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(cio_sock_sendto(fd, "world!", 6, (struct sockaddr *)&from, len),
             6);
    return 0;
}

static int sock_udp_main(void *arg)
{
    (void)arg;
    int a = bound_socket(AF_INET, SOCK_DGRAM, 0);
    int b = bound_socket(AF_INET, SOCK_DGRAM, 0);
    cio_task *rt;
    CHECK_ERR(cio_create_task(sock_udp_receiver, &a, &rt), 0);
    CHECK_ERR(cio_sleep(0.01), 0);
    struct sockaddr_storage to;
    socklen_t tolen = loopback(AF_INET, port_of(a), &to);
    CHECK_EQ(cio_sock_sendto(b, "hello", 5, (struct sockaddr *)&to, tolen), 5);
    char buf[64];
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    CHECK_EQ(cio_sock_recvfrom(b, buf, sizeof buf, (struct sockaddr *)&from,
                               &len),
             6);
    CHECK(memcmp(buf, "world!", 6) == 0);
    CHECK(same_addr(&from, len, &to, tolen)); /* the reply came from a */
    CHECK_ERR(cio_await(rt, NULL), 0);
    cio_future_unref(rt);
    close(a);
    close(b);
    return 0;
}

TEST(net_sock_recvfrom_sendto_between_two_tasks)
{
    run_main(sock_udp_main, NULL);
}

static int sock_outside_task_main(void *arg)
{
    (void)arg;
    return 0;
}

TEST(net_sock_calls_outside_a_task_are_einval)
{
    char b;
    CHECK_ERR(cio_sock_recv(0, &b, 1), -EINVAL);
    CHECK_ERR(cio_sock_sendall(0, &b, 1), -EINVAL);
    CHECK_ERR(cio_sock_accept(0, NULL, NULL), -EINVAL);
    struct addrinfo *res = (struct addrinfo *)1;
    CHECK_ERR(cio_getaddrinfo("127.0.0.1", "80", NULL, &res), -EINVAL);
    CHECK(res == NULL);
    run_main(sock_outside_task_main, NULL);
}

/* -------------------------------------------------------- name resolution */

static int gai_numeric_main(void *arg)
{
    (void)arg;
    int threads = thread_count();
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    CHECK_ERR(cio_getaddrinfo("127.0.0.1", "8080", &hints, &res), 0);
    CHECK(res != NULL);
    CHECK_EQ(res->ai_family, AF_INET);
    struct sockaddr_in *in = (struct sockaddr_in *)res->ai_addr;
    CHECK_EQ(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
    CHECK_EQ(ntohs(in->sin_port), 8080);
    freeaddrinfo(res);
    CHECK_ERR(cio_getaddrinfo("::1", "53", &hints, &res), 0);
    CHECK_EQ(res->ai_family, AF_INET6);
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)res->ai_addr;
    CHECK(memcmp(&in6->sin6_addr, &in6addr_loopback, sizeof in6addr_loopback)
          == 0);
    CHECK_EQ(ntohs(in6->sin6_port), 53);
    freeaddrinfo(res);
    /* No host, passive: the wildcard addresses, still no thread. */
    struct addrinfo passive = {.ai_socktype = SOCK_STREAM,
                               .ai_flags = AI_PASSIVE};
    CHECK_ERR(cio_getaddrinfo(NULL, "0", &passive, &res), 0);
    CHECK(res != NULL);
    freeaddrinfo(res);
    /* Resolved in place: no executor thread was started. */
    CHECK_EQ(thread_count(), threads);
    return 0;
}

TEST(net_getaddrinfo_numeric_host_needs_no_thread)
{
    run_main(gai_numeric_main, NULL);
}

static int gai_localhost_main(void *arg)
{
    (void)arg;
    int threads = thread_count();
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    CHECK_ERR(cio_getaddrinfo("localhost", "80", &hints, &res), 0);
    /* A name: resolved in the default executor, as asyncio. */
    CHECK(thread_count() > threads);
    bool loop_v4 = false, loop_v6 = false;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET)
            loop_v4 |= ntohl(((struct sockaddr_in *)ai->ai_addr)
                                 ->sin_addr.s_addr) == INADDR_LOOPBACK;
        if (ai->ai_family == AF_INET6)
            loop_v6 |= memcmp(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr,
                              &in6addr_loopback, sizeof in6addr_loopback) == 0;
    }
    CHECK(loop_v4 || loop_v6);
    freeaddrinfo(res);

    /* And a connection by name, to a server on every interface (whichever
     * family "localhost" names first). */
    srv *v = srv_new();
    serve(v, NULL);
    peer c = {0};
    cio_transport *t = dial("localhost", v->portstr, &c);
    CHECK_ERR(cio_transport_write(t, "hi", 2), 0);
    AWAIT(v->sp.n == 1 && v->sp.p[0].len == 2);
    hang_up(t, &c, &v->sp, 1);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_getaddrinfo_localhost_resolves_in_the_executor)
{
    run_main(gai_localhost_main, NULL);
}

static int gni_main(void *arg)
{
    (void)arg;
    struct sockaddr_storage ss;
    socklen_t len = loopback(AF_INET, 8080, &ss);
    char host[64], serv[16];
    CHECK_ERR(cio_getnameinfo((struct sockaddr *)&ss, len, host, sizeof host,
                              serv, sizeof serv,
                              NI_NUMERICHOST | NI_NUMERICSERV),
              0);
    CHECK_STR(host, "127.0.0.1");
    CHECK_STR(serv, "8080");
    /* A name (whatever /etc/hosts calls 127.0.0.1). */
    CHECK_ERR(cio_getnameinfo((struct sockaddr *)&ss, len, host, sizeof host,
                              NULL, 0, 0),
              0);
    CHECK(host[0] != 0);
    /* An address of an unknown family: an EAI code. */
    struct sockaddr bad = {.sa_family = 12345};
    int r = cio_getnameinfo(&bad, sizeof bad, host, sizeof host, NULL, 0, 0);
    CHECK(r < CIO_EAI_BASE && r > CIO_EAI_BASE - 200);
    return 0;
}

TEST(net_getnameinfo_in_the_executor) { run_main(gni_main, NULL); }

static int gai_invalid_main(void *arg)
{
    (void)arg;
    struct addrinfo *res = (struct addrinfo *)1;
    int r = cio_getaddrinfo("name.invalid", "80", NULL, &res);
    CHECK(res == NULL);
    /* A CIO_EAI code, named by cio_strerror as gai_strerror names it. */
    int e = r - CIO_EAI_BASE;
    if (!(r < CIO_EAI_BASE && r > CIO_EAI_BASE - 200))
        test_fail(__FILE__, __LINE__, "not an EAI code: %d (%s)", r,
                  cio_strerror(r));
    CHECK(e == EAI_NONAME || e == EAI_AGAIN || e == EAI_FAIL
#ifdef EAI_NODATA
          || e == EAI_NODATA
#endif
    );
    CHECK_STR(cio_strerror(r), gai_strerror(e));
    /* create_connection says the same. */
    peer c = {0};
    cio_transport *t = (cio_transport *)1;
    int r2 = cio_create_connection("name.invalid", "80", &rec_proto, &c, NULL,
                                   &t);
    CHECK(r2 < CIO_EAI_BASE && r2 > CIO_EAI_BASE - 200);
    CHECK(t == NULL);
    CHECK_EQ(c.made, 0);
    return 0;
}

TEST_T(net_getaddrinfo_unresolvable_host_gives_an_eai_code, 30)
{
    run_main(gai_invalid_main, NULL);
}

/* ----------------------------------------------------- connection refused */

static int refused_main(void *arg)
{
    (void)arg;
    int families[2] = {AF_INET, AF_INET6};
    const char *hosts[2] = {"127.0.0.1", "::1"};
    for (int i = 0; i < (have_ipv6() ? 2 : 1); i++) {
        int port = closed_port(families[i], SOCK_STREAM);
        char ps[16];
        snprintf(ps, sizeof ps, "%d", port);
        peer c = {0};
        cio_transport *t = (cio_transport *)1;
        CHECK_ERR(cio_create_connection(hosts[i], ps, &rec_proto, &c, NULL, &t),
                  -ECONNREFUSED);
        CHECK(t == NULL);
        CHECK_EQ(c.made, 0);
        /* The socket call says the same. */
        int fd = socket(families[i], SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        0);
        CHECK(fd >= 0);
        struct sockaddr_storage ss;
        socklen_t len = loopback(families[i], port, &ss);
        CHECK_ERR(cio_sock_connect(fd, (struct sockaddr *)&ss, len),
                  -ECONNREFUSED);
        close(fd);
    }
    return 0;
}

TEST(net_connect_to_a_closed_port_is_refused) { run_main(refused_main, NULL); }

/* ------------------------------------------------ protocols and transports */

static int order_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    v->sp.tmpl.echo = true; /* the server echoes, closes at EOF */
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    /* create_connection returns after connection_made ran, as asyncio. */
    CHECK_EQ(c.made, 1);
    CHECK(c.t == t);
    CHECK_ERR(cio_transport_write(t, "hello", 5), 0);
    AWAIT(c.len == 5);
    CHECK_STR(c.data, "hello");
    CHECK_ERR(cio_transport_write_eof(t), 0);
    AWAIT(c.lost && lost_count(&v->sp) == 1);
    CHECK_LOG(&v->sp.p[0].log, "made data eof lost");
    CHECK_LOG(&c.log, "made data eof lost");
    CHECK_STR(v->sp.p[0].data, "hello");
    CHECK_EQ(c.lost_error, 0);
    CHECK_EQ(v->sp.p[0].lost_error, 0);
    CHECK_EQ(v->sp.p[0].write_err, 0);
    /* A transport is closing inside connection_lost: writes fail. */
    CHECK_ERR(c.write_in_lost, -EPIPE);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_protocol_callbacks_run_in_order_on_both_sides)
{
    run_main(order_main, NULL);
}

/* A protocol with no eof_received: EOF closes the transport. */
static int no_eof_main(void *arg)
{
    (void)arg;
    static const cio_protocol minimal = {.connection_made = p_made,
                                         .connection_lost = p_lost};
    srv *v = srv_new();
    CHECK_ERR(cio_create_server("127.0.0.1", "0", &minimal, next_peer, &v->sp,
                                NULL, &v->s),
              0);
    snprintf(v->portstr, sizeof v->portstr, "%d", cio_server_port(v->s));
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    CHECK_ERR(cio_transport_write(t, "ignored", 7), 0); /* no data_received */
    CHECK_ERR(cio_transport_write_eof(t), 0);
    AWAIT(v->sp.n == 1 && v->sp.p[0].lost);
    CHECK_LOG(&v->sp.p[0].log, "made lost");
    AWAIT(c.lost);
    CHECK_LOG(&c.log, "made eof lost");
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_protocol_without_eof_received_closes_at_eof)
{
    run_main(no_eof_main, NULL);
}

/* asyncio.BufferedProtocol: data lands in the protocol's own memory. */
static void *b_get(cio_transport *t, size_t sizehint, size_t *size, void *ctx)
{
    (void)t;
    peer *p = ctx;
    p->gets++;
    if (!p->min_hint || sizehint < p->min_hint)
        p->min_hint = sizehint;
    *size = sizeof p->small;
    memset(p->small, 0, sizeof p->small);
    return p->small;
}

static void b_updated(cio_transport *t, size_t n, void *ctx)
{
    (void)t;
    peer *p = ctx;
    CHECK(n > 0 && n <= sizeof p->small);
    p->updates++;
    peer_append(p, p->small, n);
    cio_event_set(&changed);
}

static const cio_protocol buffered_proto = {
    .connection_made = p_made,
    .eof_received = p_eof,
    .connection_lost = p_lost,
    .get_buffer = b_get,
    .buffer_updated = b_updated,
    /* never called when get_buffer is set */
    .data_received = p_data,
};

static int buffered_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    CHECK_ERR(cio_create_server("127.0.0.1", "0", &buffered_proto, next_peer,
                                &v->sp, NULL, &v->s),
              0);
    snprintf(v->portstr, sizeof v->portstr, "%d", cio_server_port(v->s));
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    size_t n = 100000;
    char *buf = malloc(n);
    fill(buf, n, 0);
    CHECK_ERR(cio_transport_write(t, buf, n), 0);
    CHECK_ERR(cio_transport_write_eof(t), 0);
    AWAIT(v->sp.n == 1 && v->sp.p[0].eofs == 1);
    peer *s = &v->sp.p[0];
    CHECK_EQ(s->len, n);
    CHECK(pattern_ok(s->data, n, 0));
    CHECK(s->updates >= n / sizeof s->small);
    CHECK(s->gets >= s->updates);
    CHECK(s->min_hint > 0);
    AWAIT(c.lost && s->lost);
    CHECK_LOG(&s->log, "made eof lost"); /* no data_received */
    free(buf);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_buffered_protocol_reads_into_its_own_buffer)
{
    run_main(buffered_main, NULL);
}

static int writelines_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    /* Three buffers, one system call: a second counted syscall would be
     * failed by the armed fault (and the connection with it). */
    struct iovec iov[3] = {{"ab", 2}, {"cde", 3}, {"f\n", 2}};
    cio__fault_arm(CIO__FAULT_SYS, 2, EIO);
    int r = cio_transport_writelines(t, iov, 3);
    int fired = cio__fault_fired();
    cio__fault_disarm();
    CHECK_ERR(r, 0);
    CHECK(!fired);
    CHECK_EQ(cio_transport_get_write_buffer_size(t), 0); /* all sent */
    AWAIT(v->sp.n == 1 && v->sp.p[0].len == 7);
    CHECK_STR(v->sp.p[0].data, "abcdef\n");

    /* Thousands of buffers (over IOV_MAX), more than the socket takes at
     * once: partial gathers, then the rest from the buffer, in order. */
    enum { NIOV = 3000, EACH = 1500 };
    char *big = malloc((size_t)NIOV * EACH);
    fill(big, (size_t)NIOV * EACH, 7);
    struct iovec *many = malloc(NIOV * sizeof *many);
    for (int i = 0; i < NIOV; i++) {
        many[i].iov_base = big + (size_t)i * EACH;
        many[i].iov_len = EACH;
    }
    CHECK_ERR(cio_transport_writelines(t, many, NIOV), 0);
    CHECK_ERR(cio_transport_writelines(t, NULL, 0), 0);
    memset(big, 0, (size_t)NIOV * EACH); /* writelines copied what it kept */
    AWAIT(v->sp.p[0].len == 7 + (size_t)NIOV * EACH);
    CHECK(pattern_ok(v->sp.p[0].data + 7, (size_t)NIOV * EACH, 7));
    CHECK_ERR(cio_transport_writelines(t, NULL, 1), -EINVAL);
    free(many);
    free(big);
    hang_up(t, &c, &v->sp, 1);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_writelines_gathers_buffers_into_one_write)
{
    run_main(writelines_main, NULL);
}

static int half_close_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    v->sp.tmpl.eof_keep = 1; /* a half-close: keep writing after EOF */
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    CHECK(cio_transport_can_write_eof(t));
    CHECK_ERR(cio_transport_write(t, "ping", 4), 0);
    CHECK_ERR(cio_transport_write_eof(t), 0);
    CHECK_ERR(cio_transport_write_eof(t), 0); /* again: nothing more */
    CHECK_ERR(cio_transport_write(t, "late", 4), -EPIPE);
    CHECK(!cio_transport_is_closing(t)); /* as asyncio: still open to read */
    AWAIT(v->sp.n == 1 && v->sp.p[0].eofs == 1);
    peer *s = &v->sp.p[0];
    CHECK_STR(s->data, "ping");
    CHECK(s->t != NULL && !s->lost);
    CHECK(!cio_transport_is_closing(s->t));
    /* The other direction still works, more than once. */
    CHECK_ERR(cio_transport_write(s->t, "pong", 4), 0);
    AWAIT(c.len == 4);
    CHECK_ERR(cio_transport_write(s->t, "!", 1), 0);
    AWAIT(c.len == 5);
    CHECK_STR(c.data, "pong!");
    cio_transport_close(s->t);
    AWAIT(c.lost && s->lost);
    CHECK_LOG(&s->log, "made data eof lost");
    CHECK_LOG(&c.log, "made data eof lost");
    CHECK_EQ(c.lost_error, 0);
    CHECK_EQ(s->lost_error, 0);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_write_eof_half_close_keeps_the_other_direction)
{
    run_main(half_close_main, NULL);
}

static int eof_after_buffer_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    v->sp.tmpl.pause_on_made = true;
    v->sp.tmpl.eof_keep = 1;
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    AWAIT(v->sp.n == 1 && v->sp.p[0].made);
    peer *s = &v->sp.p[0];
    size_t total = fill_until_buffered(t, 0);
    /* EOF goes out after what is buffered, not before. */
    CHECK_ERR(cio_transport_write_eof(t), 0);
    CHECK(cio_transport_get_write_buffer_size(t) > 0);
    CHECK_ERR(cio_transport_write(t, "x", 1), -EPIPE);
    CHECK_ERR(cio_transport_resume_reading(s->t), 0);
    AWAIT(s->eofs == 1);
    CHECK_EQ(s->len, total);
    CHECK(pattern_ok(s->data, total, 0));
    CHECK_EQ(cio_transport_get_write_buffer_size(t), 0);
    CHECK(!c.lost); /* half-closed, still open for reading */
    CHECK_ERR(cio_transport_write(s->t, "done", 4), 0);
    AWAIT(c.len == 4);
    cio_transport_close(s->t);
    AWAIT(c.lost && s->lost);
    CHECK_LOG(&c.log, "made pause resume data eof lost");
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_write_eof_waits_for_the_write_buffer)
{
    run_main(eof_after_buffer_main, NULL);
}

static int local_addr_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    v->sp.tmpl.echo = true;
    serve(v, "127.0.0.1");
    int lport = closed_port(AF_INET, SOCK_STREAM);
    char lps[16];
    snprintf(lps, sizeof lps, "%d", lport);
    cio_connection_options o = {.local_host = "127.0.0.1",
                                .local_port = lps,
                                .family = AF_INET};
    peer c = {0};
    cio_transport *t = NULL;
    CHECK_ERR(cio_create_connection("127.0.0.1", v->portstr, &rec_proto, &c,
                                    &o, &t),
              0);
    struct sockaddr_storage sn;
    socklen_t sl = sizeof sn;
    CHECK_ERR(cio_transport_get_extra_info(t, "sockname", &sn, &sl), 0);
    CHECK_EQ(ntohs(((struct sockaddr_in *)&sn)->sin_port), lport);
    CHECK_ERR(cio_transport_write(t, "bound", 5), 0);
    AWAIT(c.len == 5);
    hang_up(t, &c, &v->sp, 1);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_create_connection_binds_the_local_address)
{
    run_main(local_addr_main, NULL);
}

static int close_flushes_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    v->sp.tmpl.pause_on_made = true; /* the server reads nothing yet */
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    AWAIT(v->sp.n == 1 && v->sp.p[0].made);
    peer *s = &v->sp.p[0];
    CHECK(!cio_transport_is_reading(s->t));
    size_t total = fill_until_buffered(t, 0);
    CHECK(cio_transport_get_write_buffer_size(t) > 0);
    cio_transport_close(t);
    CHECK(cio_transport_is_closing(t));
    CHECK_ERR(cio_transport_write(t, "x", 1), -EPIPE);
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK_EQ(c.lost, 0); /* still flushing */
    CHECK_ERR(cio_transport_resume_reading(s->t), 0);
    AWAIT(c.lost && s->lost);
    CHECK_EQ(c.lost_error, 0);
    CHECK_EQ(s->len, total); /* every byte, then EOF */
    CHECK(pattern_ok(s->data, s->len, 0));
    CHECK_LOG(&s->log, "made data eof lost");
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_close_flushes_the_write_buffer_first)
{
    run_main(close_flushes_main, NULL);
}

static int abort_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    v->sp.tmpl.pause_on_made = true;
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    AWAIT(v->sp.n == 1 && v->sp.p[0].made);
    peer *s = &v->sp.p[0];
    size_t total = fill_until_buffered(t, 0);
    size_t dropped = cio_transport_get_write_buffer_size(t);
    CHECK(dropped > 0);
    cio_transport_abort(t);
    CHECK(cio_transport_is_closing(t));
    CHECK_EQ(cio_transport_get_write_buffer_size(t), 0);
    /* connection_lost comes without waiting for the peer to read. */
    AWAIT(c.lost);
    CHECK_EQ(c.lost_error, 0);
    CHECK_LOG(&c.log, "made pause lost"); /* no resume_writing */
    CHECK_ERR(cio_transport_resume_reading(s->t), 0);
    AWAIT(s->lost);
    CHECK(s->len <= total - dropped); /* the buffer never went out */
    CHECK(pattern_ok(s->data, s->len, 0));
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_abort_drops_the_write_buffer) { run_main(abort_main, NULL); }

static int flow_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    v->sp.tmpl.pause_on_made = true; /* a peer that does not read */
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    AWAIT(v->sp.n == 1 && v->sp.p[0].made);
    peer *s = &v->sp.p[0];
    CHECK_EQ(cio_transport_get_write_buffer_size(t), 0);
    CHECK_ERR(cio_transport_set_write_buffer_limits(t, 100, 200), -EINVAL);
    enum { HIGH = 16384, LOW = 4096, CHUNK = 8192 };
    CHECK_ERR(cio_transport_set_write_buffer_limits(t, HIGH, LOW), 0);
    char *buf = malloc(CHUNK);
    size_t total = 0;
    while (!c.pauses) { /* a well-behaved writer stops at pause_writing */
        CHECK(total < (512u << 20));
        fill(buf, CHUNK, total);
        CHECK_ERR(cio_transport_write(t, buf, CHUNK), 0);
        total += CHUNK;
    }
    CHECK_EQ(c.pauses, 1);
    CHECK(c.size_at_pause > HIGH);
    CHECK(c.size_at_pause <= HIGH + CHUNK);
    CHECK_EQ(cio_transport_get_write_buffer_size(t), c.size_at_pause);
    /* While the peer reads nothing, nothing changes. */
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK_EQ(c.resumes, 0);
    CHECK_EQ(cio_transport_get_write_buffer_size(t), c.size_at_pause);
    CHECK_ERR(cio_transport_resume_reading(s->t), 0);
    AWAIT(c.resumes == 1);
    CHECK(c.size_at_resume <= LOW);
    AWAIT(s->len == total);
    CHECK(pattern_ok(s->data, total, 0));
    CHECK_EQ(c.pauses, 1);
    CHECK_EQ(c.resumes, 1);
    CHECK_EQ(cio_transport_get_write_buffer_size(t), 0);
    CHECK_LOG(&c.log, "made pause resume");
    free(buf);
    hang_up(t, &c, &v->sp, 1);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_flow_control_pauses_and_resumes_writing)
{
    run_main(flow_main, NULL);
}

static int pause_reading_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    AWAIT(v->sp.n == 1 && v->sp.p[0].made);
    peer *s = &v->sp.p[0];
    CHECK(cio_transport_is_reading(s->t));
    CHECK_ERR(cio_transport_pause_reading(s->t), 0);
    CHECK(!cio_transport_is_reading(s->t));
    CHECK_ERR(cio_transport_write(t, "abc", 3), 0);
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK_EQ(s->len, 0); /* paused: nothing delivered */
    CHECK_ERR(cio_transport_resume_reading(s->t), 0);
    CHECK(cio_transport_is_reading(s->t));
    AWAIT(s->len == 3);
    CHECK_STR(s->data, "abc");
    /* Paused again, EOF waits as well. */
    CHECK_ERR(cio_transport_pause_reading(s->t), 0);
    CHECK_ERR(cio_transport_write_eof(t), 0);
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK_EQ(s->eofs, 0);
    CHECK_ERR(cio_transport_resume_reading(s->t), 0);
    AWAIT(s->eofs == 1 && s->lost && c.lost);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_pause_and_resume_reading) { run_main(pause_reading_main, NULL); }

static int resume_unpaused_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    v->sp.tmpl.eof_keep = 1;
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    CHECK_ERR(cio_transport_write_eof(t), 0);
    AWAIT(v->sp.n == 1 && v->sp.p[0].eofs == 1);
    peer *s = &v->sp.p[0];
    /* asyncio: resume_reading on a transport that is not paused does
     * nothing, so EOF is not delivered twice. */
    CHECK(cio_transport_is_reading(s->t));
    CHECK_ERR(cio_transport_resume_reading(s->t), 0);
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK_EQ(s->eofs, 1);
    cio_transport_close(s->t);
    AWAIT(c.lost && s->lost);
    CHECK_LOG(&s->log, "made eof lost");
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_resume_reading_when_not_paused_does_nothing)
{
    run_main(resume_unpaused_main, NULL);
}

static int extra_info_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    serve(v, "127.0.0.1");
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    AWAIT(v->sp.n == 1 && v->sp.p[0].made);
    cio_transport *st = v->sp.p[0].t;
    struct sockaddr_storage cpeer, cname, speer, sname;
    socklen_t cpl = sizeof cpeer, cnl = sizeof cname, spl = sizeof speer,
              snl = sizeof sname;
    CHECK_ERR(cio_transport_get_extra_info(t, "peername", &cpeer, &cpl), 0);
    CHECK_ERR(cio_transport_get_extra_info(t, "sockname", &cname, &cnl), 0);
    CHECK_ERR(cio_transport_get_extra_info(st, "peername", &speer, &spl), 0);
    CHECK_ERR(cio_transport_get_extra_info(st, "sockname", &sname, &snl), 0);
    CHECK(same_addr(&cpeer, cpl, &sname, snl));
    CHECK(same_addr(&cname, cnl, &speer, spl));
    CHECK_EQ(cpeer.ss_family, AF_INET);
    CHECK_EQ(ntohs(((struct sockaddr_in *)&cpeer)->sin_port), v->port);
    int fd = -1;
    socklen_t fl = sizeof fd;
    CHECK_ERR(cio_transport_get_extra_info(t, "socket", &fd, &fl), 0);
    CHECK_EQ(fl, sizeof(int));
    int type = 0;
    socklen_t tl = sizeof type;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0);
    CHECK_EQ(type, SOCK_STREAM);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    int nodelay = 0;
    socklen_t nl = sizeof nodelay;
    CHECK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &nl) == 0);
    CHECK(nodelay); /* as asyncio */
    char tiny[2];
    socklen_t tinyl = sizeof tiny;
    CHECK_ERR(cio_transport_get_extra_info(t, "socket", tiny, &tinyl),
              -EINVAL);
    CHECK_ERR(cio_transport_get_extra_info(t, "cipher", &fd, &fl), -ENOENT);
    CHECK(cio_transport_get_context(t) == &c);
    CHECK(cio_transport_get_context(st) == &v->sp.p[0]);
    hang_up(t, &c, &v->sp, 1);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_get_extra_info_peername_sockname_socket)
{
    run_main(extra_info_main, NULL);
}

/* ---------------------------------------------------------------- servers */

/* Connects to loopback of family at port, says hello, hears it back. */
static void echo_round_trip(int family, int port, peers *ps)
{
    const char *host = family == AF_INET6 ? "::1" : "127.0.0.1";
    char ps_[16];
    snprintf(ps_, sizeof ps_, "%d", port);
    peer c = {0};
    int before = ps->n;
    cio_transport *t = dial(host, ps_, &c);
    CHECK_ERR(cio_transport_write(t, "hello", 5), 0);
    AWAIT(c.len == 5);
    CHECK_STR(c.data, "hello");
    CHECK_EQ(ps->n, before + 1);
    struct sockaddr_storage pn;
    socklen_t pl = sizeof pn;
    CHECK_ERR(cio_transport_get_extra_info(t, "peername", &pn, &pl), 0);
    CHECK_EQ(pn.ss_family, family);
    hang_up(t, &c, ps, before + 1);
    peer_free(&c);
}

static int dual_stack_main(void *arg)
{
    (void)arg;
    bool v6 = have_ipv6();
    srv *v = srv_new();
    v->sp.tmpl.echo = true;
    serve(v, NULL); /* every interface, both families */
    int fds[8];
    int n = cio_server_sockets(v->s, fds, 8);
    CHECK_EQ(n, v6 ? 2 : 1);
    bool saw4 = false, saw6 = false;
    for (int i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        CHECK(getsockname(fds[i], (struct sockaddr *)&ss, &len) == 0);
        if (ss.ss_family == AF_INET6) {
            int only = 0;
            socklen_t ol = sizeof only;
            CHECK(getsockopt(fds[i], IPPROTO_IPV6, IPV6_V6ONLY, &only, &ol) ==
                  0);
            CHECK(only); /* one socket per family, as asyncio */
            saw6 = true;
        } else {
            saw4 = true;
        }
        echo_round_trip(ss.ss_family, port_of(fds[i]), &v->sp);
    }
    CHECK(saw4);
    CHECK(saw6 == v6);
    int one;
    CHECK_EQ(cio_server_sockets(v->s, &one, 1), n); /* the count, always */
    srv_done(v);

    if (v6) { /* and on ::1 alone */
        srv *w = srv_new();
        w->sp.tmpl.echo = true;
        serve(w, "::1");
        CHECK_EQ(cio_server_sockets(w->s, fds, 8), 1);
        echo_round_trip(AF_INET6, w->port, &w->sp);
        srv_done(w);
    }
    return 0;
}

TEST(net_server_listens_on_ipv4_and_ipv6) { run_main(dual_stack_main, NULL); }

static int reuse_port_main(void *arg)
{
    (void)arg;
    cio_server_options o = {.reuse_port = 1};
    srv *a = srv_new(), *b = srv_new();
    a->sp.tmpl.echo = b->sp.tmpl.echo = true;
    serve_opts(a, "127.0.0.1", &o);
    CHECK_ERR(cio_create_server("127.0.0.1", a->portstr, &rec_proto, next_peer,
                                &b->sp, &o, &b->s),
              0);
    CHECK_EQ(cio_server_port(b->s), a->port);
    /* Without reuse_port the port is taken. */
    cio_server *c = (cio_server *)1;
    srv *cp = srv_new();
    CHECK_ERR(cio_create_server("127.0.0.1", a->portstr, &rec_proto, next_peer,
                                &cp->sp, NULL, &c),
              -EADDRINUSE);
    CHECK(c == NULL);
    CHECK_EQ(cp->sp.n, 0);
    free(cp);
    /* The kernel spreads connections over both; every one is served. */
    enum { N = 12 };
    peer cl[N];
    cio_transport *t[N];
    memset(cl, 0, sizeof cl);
    for (int i = 0; i < N; i++) {
        t[i] = dial("127.0.0.1", a->portstr, &cl[i]);
        CHECK_ERR(cio_transport_write(t[i], "x", 1), 0);
    }
    for (int i = 0; i < N; i++)
        AWAIT(cl[i].len == 1);
    CHECK_EQ(made_count(&a->sp) + made_count(&b->sp), N);
    for (int i = 0; i < N; i++)
        cio_transport_close(t[i]);
    AWAIT(lost_count(&a->sp) + lost_count(&b->sp) == N);
    for (int i = 0; i < N; i++) {
        AWAIT(cl[i].lost);
        peer_free(&cl[i]);
    }
    srv_done(a);
    srv_done(b);
    return 0;
}

TEST(net_server_reuse_port_shares_a_port) { run_main(reuse_port_main, NULL); }

static int delayed_main(void *arg)
{
    (void)arg;
    cio_server_options o = {.delay_serving = 1};
    srv *v = srv_new();
    v->sp.tmpl.echo = true;
    serve_opts(v, "127.0.0.1", &o);
    CHECK(!cio_server_is_serving(v->s));
    /* The socket listens, so the kernel completes the handshake... */
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    CHECK_ERR(cio_transport_write(t, "early", 5), 0);
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK_EQ(v->sp.n, 0); /* ...but nothing is accepted */
    CHECK_ERR(cio_server_start_serving(v->s), 0);
    CHECK(cio_server_is_serving(v->s));
    CHECK_ERR(cio_server_start_serving(v->s), 0); /* idempotent */
    AWAIT(c.len == 5);
    CHECK_STR(c.data, "early");
    hang_up(t, &c, &v->sp, 1);
    cio_server_close(v->s);
    CHECK(!cio_server_is_serving(v->s));
    CHECK_ERR(cio_server_start_serving(v->s), -ESHUTDOWN);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_server_start_serving_delayed) { run_main(delayed_main, NULL); }

static int serve_forever_task(void *arg)
{
    return cio_server_serve_forever(arg);
}

static int serve_forever_main(void *arg)
{
    bool by_cancel = *(bool *)arg;
    cio_server_options o = {.delay_serving = 1};
    srv *v = srv_new();
    v->sp.tmpl.echo = true;
    serve_opts(v, "127.0.0.1", &o);
    cio_task *sf;
    CHECK_ERR(cio_create_task(serve_forever_task, v->s, &sf), 0);
    CHECK_ERR(cio_sleep(0.01), 0);
    CHECK(cio_server_is_serving(v->s)); /* serve_forever started it */
    CHECK(!cio_future_done(sf));
    echo_round_trip(AF_INET, v->port, &v->sp);
    if (by_cancel) {
        CHECK_EQ(cio_task_cancel(sf), 1);
        CHECK_ERR(cio_await(sf, NULL), -ECANCELED);
        CHECK(cio_future_cancelled(sf));
    } else {
        cio_server_close(v->s);
        CHECK_ERR(cio_await(sf, NULL), 0);
    }
    /* Closed either way: nothing listens any more. */
    CHECK(!cio_server_is_serving(v->s));
    CHECK_EQ(cio_server_sockets(v->s, NULL, 0), 0);
    peer c = {0};
    cio_transport *t = (cio_transport *)1;
    CHECK_ERR(cio_create_connection("127.0.0.1", v->portstr, &rec_proto, &c,
                                    NULL, &t),
              -ECONNREFUSED);
    cio_future_unref(sf);
    srv_done(v);
    return 0;
}

TEST(net_serve_forever_ends_when_the_server_closes)
{
    bool by_cancel = false;
    run_main(serve_forever_main, &by_cancel);
}

TEST(net_serve_forever_ends_when_cancelled)
{
    bool by_cancel = true;
    run_main(serve_forever_main, &by_cancel);
}

static int wait_closed_task(void *arg) { return cio_server_wait_closed(arg); }

/* Three clients connected to v, each having said "hi". */
static void three_clients(srv *v, peer *cl, cio_transport **t)
{
    for (int i = 0; i < 3; i++) {
        t[i] = dial("127.0.0.1", v->portstr, &cl[i]);
        CHECK_ERR(cio_transport_write(t[i], "hi", 2), 0);
    }
    AWAIT(v->sp.n == 3 && v->sp.p[0].len == 2 && v->sp.p[1].len == 2 &&
          v->sp.p[2].len == 2);
}

static int close_clients_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    serve(v, "127.0.0.1");
    peer cl[3];
    memset(cl, 0, sizeof cl);
    cio_transport *t[3];
    three_clients(v, cl, t);
    cio_server_close(v->s);
    CHECK(!cio_server_is_serving(v->s));
    /* Connections already made go on. */
    CHECK_ERR(cio_transport_write(v->sp.p[1].t, "still", 5), 0);
    AWAIT(cl[0].len + cl[1].len + cl[2].len == 5);
    /* wait_closed waits for them. */
    cio_task *w;
    CHECK_ERR(cio_create_task(wait_closed_task, v->s, &w), 0);
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK(!cio_future_done(w));
    /* close_clients: each flushes what it has, then closes. */
    for (int i = 0; i < 3; i++)
        CHECK_ERR(cio_transport_write(v->sp.p[i].t, "bye", 3), 0);
    cio_server_close_clients(v->s);
    AWAIT(lost_count(&v->sp) == 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(v->sp.p[i].lost_error, 0);
        AWAIT(cl[i].lost); /* the clients see the data, then EOF */
        CHECK(strstr(cl[i].data, "bye") != NULL);
        CHECK_EQ(cl[i].eofs, 1);
    }
    CHECK_ERR(cio_await(w, NULL), 0);
    cio_future_unref(w);
    srv_done(v);
    for (int i = 0; i < 3; i++)
        peer_free(&cl[i]);
    return 0;
}

TEST(net_server_close_clients_and_wait_closed)
{
    run_main(close_clients_main, NULL);
}

static int abort_clients_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    serve(v, "127.0.0.1");
    peer cl[3];
    memset(cl, 0, sizeof cl);
    cio_transport *t[3];
    three_clients(v, cl, t);
    size_t total[3];
    for (int i = 0; i < 3; i++) { /* the clients stop reading */
        CHECK_ERR(cio_transport_pause_reading(t[i]), 0);
        total[i] = fill_until_buffered(v->sp.p[i].t, 0);
    }
    cio_task *w;
    cio_server_close(v->s);
    CHECK_ERR(cio_create_task(wait_closed_task, v->s, &w), 0);
    cio_server_abort_clients(v->s);
    AWAIT(lost_count(&v->sp) == 3); /* at once: nothing is flushed */
    CHECK_ERR(cio_await(w, NULL), 0);
    cio_future_unref(w);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(v->sp.p[i].lost_error, 0);
        CHECK_ERR(cio_transport_resume_reading(t[i]), 0);
        AWAIT(cl[i].lost);
        CHECK(cl[i].len < total[i]);
    }
    srv_done(v);
    for (int i = 0; i < 3; i++)
        peer_free(&cl[i]);
    return 0;
}

TEST(net_server_abort_clients_drops_their_buffers)
{
    run_main(abort_clients_main, NULL);
}

/* ----------------------------------------------------------- Unix sockets */

static int unix_main(void *arg)
{
    (void)arg;
    char dir[] = "/tmp/cio-net-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    /* A stale socket file, as a crashed earlier run leaves. */
    int stale = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    CHECK(bind(stale, (struct sockaddr *)&sun, sizeof sun) == 0);
    close(stale);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));

    srv *v = srv_new();
    v->sp.tmpl.echo = true;
    CHECK_ERR(cio_create_unix_server(path, &rec_proto, next_peer, &v->sp, NULL,
                                     &v->s),
              0);
    CHECK_EQ(cio_server_port(v->s), 0);
    CHECK_EQ(cio_server_sockets(v->s, NULL, 0), 1);
    peer c = {0};
    cio_transport *t = NULL;
    CHECK_ERR(cio_create_unix_connection(path, &rec_proto, &c, &t), 0);
    CHECK_EQ(c.made, 1);
    CHECK_ERR(cio_transport_write(t, "over unix", 9), 0);
    AWAIT(c.len == 9);
    CHECK_STR(c.data, "over unix");
    struct sockaddr_storage pn;
    socklen_t pl = sizeof pn;
    CHECK_ERR(cio_transport_get_extra_info(t, "peername", &pn, &pl), 0);
    CHECK_EQ(pn.ss_family, AF_UNIX);
    CHECK_STR(((struct sockaddr_un *)&pn)->sun_path, path);
    CHECK(cio_transport_can_write_eof(t));
    CHECK_ERR(cio_transport_write_eof(t), 0);
    AWAIT(c.lost && lost_count(&v->sp) == 1);
    CHECK_LOG(&c.log, "made data eof lost");
    CHECK_LOG(&v->sp.p[0].log, "made data eof lost");
    srv_done(v);
    /* Closing the server removed its socket file. */
    CHECK(stat(path, &st) != 0 && errno == ENOENT);

    /* Not a socket: left alone, and the address is in use. */
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fclose(f);
    srv *np = srv_new();
    cio_server *s2 = (cio_server *)1;
    CHECK_ERR(cio_create_unix_server(path, &rec_proto, next_peer, &np->sp,
                                     NULL, &s2),
              -EADDRINUSE);
    CHECK(s2 == NULL);
    free(np);
    CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode));
    /* Nobody there: refused. */
    unlink(path);
    CHECK_ERR(cio_create_unix_connection(path, &rec_proto, &c, &t), -ENOENT);
    CHECK(rmdir(dir) == 0);
    peer_free(&c);
    return 0;
}

TEST(net_unix_server_and_connection_replace_a_stale_socket)
{
    run_main(unix_main, NULL);
}

/* ------------------------------------------------------------------ UDP */

static void udp_echo_family(int family)
{
    const char *host = family == AF_INET6 ? "::1" : "127.0.0.1";
    peer sv = {0};
    sv.echo = true;
    cio_transport *st = NULL;
    CHECK_ERR(cio_create_datagram_endpoint(host, "0", NULL, NULL, &rec_proto,
                                           &sv, &st),
              0);
    CHECK_EQ(sv.made, 1);
    int sfd;
    socklen_t fl = sizeof sfd;
    CHECK_ERR(cio_transport_get_extra_info(st, "socket", &sfd, &fl), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", port_of(sfd));

    /* A connected endpoint: sendto with no address. */
    peer cl = {0};
    cio_transport *ct = NULL;
    CHECK_ERR(cio_create_datagram_endpoint(NULL, NULL, host, port, &rec_proto,
                                           &cl, &ct),
              0);
    CHECK(!cio_transport_can_write_eof(ct));
    CHECK_ERR(cio_transport_write_eof(ct), -ENOTSUP);
    CHECK_ERR(cio_transport_sendto(ct, "one", 3, NULL, 0), 0);
    CHECK_ERR(cio_transport_sendto(ct, "two", 3, NULL, 0), 0);
    CHECK_ERR(cio_transport_sendto(ct, "three", 5, NULL, 0), 0);
    CHECK_ERR(cio_transport_sendto(ct, "", 0, NULL, 0), 0); /* empty is one */
    AWAIT(cl.datagrams == 4);
    CHECK_STR(cl.data, "one|two|three||");
    CHECK_STR(sv.data, "one|two|three||");
    struct sockaddr_storage cname;
    socklen_t cnl = sizeof cname;
    CHECK_ERR(cio_transport_get_extra_info(ct, "sockname", &cname, &cnl), 0);
    CHECK(same_addr(&sv.from, sv.fromlen, &cname, cnl));

    /* An unconnected one: sendto an address. */
    peer u = {0};
    cio_transport *ut = NULL;
    CHECK_ERR(cio_create_datagram_endpoint(host, "0", NULL, NULL, &rec_proto,
                                           &u, &ut),
              0);
    struct sockaddr_storage to;
    socklen_t tolen = loopback(family, port_of(sfd), &to);
    CHECK_ERR(cio_transport_sendto(ut, "direct", 6, (struct sockaddr *)&to,
                                   tolen),
              0);
    AWAIT(u.datagrams == 1);
    CHECK_STR(u.data, "direct|");
    CHECK(same_addr(&u.from, u.fromlen, &to, tolen));
    CHECK_EQ(sv.write_err, 0);
    CHECK_EQ(sv.dgram_errors + cl.dgram_errors + u.dgram_errors, 0);

    cio_transport_close(ct);
    cio_transport_close(st);
    cio_transport_close(ut);
    AWAIT(cl.lost && sv.lost && u.lost);
    CHECK_EQ(cl.lost_error + sv.lost_error + u.lost_error, 0);
    CHECK_LOG(&cl.log, "made lost");
    peer_free(&sv);
    peer_free(&cl);
    peer_free(&u);
}

static int udp_echo_main(void *arg)
{
    (void)arg;
    udp_echo_family(AF_INET);
    if (have_ipv6())
        udp_echo_family(AF_INET6);
    return 0;
}

TEST(net_udp_echo_with_datagram_received_and_sendto)
{
    run_main(udp_echo_main, NULL);
}

static int udp_refused_main(void *arg)
{
    (void)arg;
    char port[16];
    snprintf(port, sizeof port, "%d", closed_port(AF_INET, SOCK_DGRAM));
    peer cl = {0};
    cio_transport *ct = NULL;
    CHECK_ERR(cio_create_datagram_endpoint(NULL, NULL, "127.0.0.1", port,
                                           &rec_proto, &cl, &ct),
              0);
    /* The port's ICMP answer comes back as error_received on a later
     * operation; send until it has. */
    for (int i = 0; i < 200 && !cl.dgram_errors; i++) {
        int r = cio_transport_sendto(ct, "ping", 4, NULL, 0);
        CHECK(r == 0 || r == -ECONNREFUSED);
        if (r == -ECONNREFUSED)
            break; /* said at once: also asyncio's behaviour */
        CHECK_ERR(cio_sleep(0.01), 0);
    }
    CHECK_EQ(cl.dgram_errors, 1);
    CHECK_ERR(cl.dgram_error, -ECONNREFUSED);
    CHECK_EQ(cl.lost, 0); /* a datagram endpoint survives it */
    CHECK(!cio_transport_is_closing(ct));
    cio_transport_close(ct);
    AWAIT(cl.lost);
    CHECK_EQ(cl.lost_error, 0);
    peer_free(&cl);
    return 0;
}

TEST(net_udp_connected_to_a_closed_port_gets_error_received)
{
    run_main(udp_refused_main, NULL);
}

/* ------------------------------------------------- connect_accepted_socket */

static int accepted_main(void *arg)
{
    (void)arg;
    int port;
    int lfd = raw_listener(AF_INET, &port);
    int cfd = raw_connect(AF_INET, port);
    int afd = cio_sock_accept(lfd, NULL, NULL);
    CHECK(afd >= 0);
    CHECK_ERR(cio_connect_accepted_socket(NULL, -1, &rec_proto, NULL, NULL),
              -EINVAL);
    CHECK_ERR(cio_connect_accepted_socket(NULL, afd, NULL, NULL, NULL),
              -EINVAL);
    peer p = {0};
    cio_transport *t = NULL;
    CHECK_ERR(cio_connect_accepted_socket(NULL, afd, &rec_proto, &p, &t), 0);
    CHECK(t != NULL);
    AWAIT(p.made == 1);
    CHECK(p.t == t);
    CHECK_ERR(cio_sock_sendall(cfd, "from peer", 9), 0);
    AWAIT(p.len == 9);
    CHECK_STR(p.data, "from peer");
    CHECK_ERR(cio_transport_write(t, "to peer", 7), 0);
    char buf[16] = {0};
    CHECK_EQ(raw_read(cfd, buf, 7), 7);
    CHECK_STR(buf, "to peer");
    cio_transport_close(t);
    AWAIT(p.lost);
    CHECK_EQ(cio_sock_recv(cfd, buf, sizeof buf), 0); /* the transport's EOF */
    CHECK(fcntl(afd, F_GETFD) < 0); /* the transport closed its fd */

    /* A blocking socket from elsewhere is made non-blocking. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
    peer q = {0};
    CHECK_ERR(cio_connect_accepted_socket(cio_get_running_loop(), sv[0],
                                          &rec_proto, &q, &t),
              0);
    CHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(sv[0], F_GETFD) & FD_CLOEXEC);
    CHECK(write(sv[1], "pair", 4) == 4);
    AWAIT(q.len == 4);
    close(sv[1]); /* EOF: q closes (eof_keep 0) */
    AWAIT(q.lost);
    CHECK_LOG(&q.log, "made data eof lost");
    close(cfd);
    close(lfd);
    peer_free(&p);
    peer_free(&q);
    return 0;
}

TEST(net_connect_accepted_socket_wraps_a_connected_fd)
{
    run_main(accepted_main, NULL);
}

/* ------------------------------------------------------------ bad peers */

/* Closes fd with SO_LINGER 0: the kernel answers with a reset. */
static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(fd);
}

static int reset_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    serve(v, "127.0.0.1");
    int cfd = raw_connect(AF_INET, v->port);
    AWAIT(v->sp.n == 1 && v->sp.p[0].made);
    peer *s = &v->sp.p[0];
    /* The peer reads nothing: the server's writes back up in its buffer. */
    fill_until_buffered(s->t, 0);
    CHECK(cio_transport_get_write_buffer_size(s->t) > 0);
    reset_close(cfd); /* mid-write */
    AWAIT(s->lost);
    if (s->lost_error != -ECONNRESET && s->lost_error != -EPIPE)
        test_fail(__FILE__, __LINE__, "connection_lost(%d: %s)", s->lost_error,
                  cio_strerror(s->lost_error));
    /* Writing on says why it is closing. */
    CHECK_ERR(s->write_in_lost, s->lost_error);
    srv_done(v);
    return 0;
}

/* The harness runs tests with SIGPIPE at its default: a write that raised
 * it would kill the test. */
TEST(net_peer_reset_mid_write_is_connection_lost_with_an_error)
{
    run_main(reset_main, NULL);
}

static int reset_idle_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    serve(v, "127.0.0.1");
    int cfd = raw_connect(AF_INET, v->port);
    CHECK_ERR(cio_sock_sendall(cfd, "unread", 6), 0);
    AWAIT(v->sp.n == 1 && v->sp.p[0].len == 6);
    peer *s = &v->sp.p[0];
    reset_close(cfd); /* while the server only reads */
    AWAIT(s->lost);
    CHECK_ERR(s->lost_error, -ECONNRESET);
    CHECK_LOG(&s->log, "made data lost:Connection reset by peer");
    srv_done(v);
    return 0;
}

TEST(net_peer_reset_while_reading_is_connection_lost_econnreset)
{
    run_main(reset_idle_main, NULL);
}

static int peer_half_close_main(void *arg)
{
    (void)arg;
    srv *v = srv_new();
    v->sp.tmpl.eof_keep = 1;
    serve(v, "127.0.0.1");
    int cfd = raw_connect(AF_INET, v->port);
    CHECK_ERR(cio_sock_sendall(cfd, "request", 7), 0);
    CHECK(shutdown(cfd, SHUT_WR) == 0); /* the peer half-closes */
    AWAIT(v->sp.n == 1 && v->sp.p[0].eofs == 1);
    peer *s = &v->sp.p[0];
    CHECK_STR(s->data, "request");
    CHECK(!s->lost);
    CHECK_ERR(cio_transport_write(s->t, "response", 8), 0);
    char buf[16] = {0};
    CHECK_EQ(raw_read(cfd, buf, 8), 8);
    CHECK_STR(buf, "response");
    cio_transport_close(s->t);
    CHECK_EQ(cio_sock_recv(cfd, buf, sizeof buf), 0);
    AWAIT(s->lost);
    CHECK_EQ(s->lost_error, 0);
    CHECK_LOG(&s->log, "made data eof lost");
    close(cfd);
    srv_done(v);
    return 0;
}

TEST(net_peer_half_closes_and_still_reads_the_answer)
{
    run_main(peer_half_close_main, NULL);
}

/* ------------------------------------------------------ running out of fds */

static int emfile_main(void *arg)
{
    (void)arg;
    changed_init();
    watch_reports(NULL, false);
    cio__accept_retry_delay = 0.05;
    srv *v = srv_new();
    v->sp.tmpl.echo = true;
    serve(v, "127.0.0.1");
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(cfd >= 0);
    /* The lowest free fd becomes the limit: no new fd can be made. */
    struct rlimit old;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    int lowest = fcntl(cfd, F_DUPFD_CLOEXEC, 0);
    CHECK(lowest >= 0);
    close(lowest);
    struct rlimit low = {(rlim_t)lowest, old.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    CHECK(fcntl(cfd, F_DUPFD_CLOEXEC, 0) < 0 && errno == EMFILE);

    struct sockaddr_storage ss;
    socklen_t len = loopback(AF_INET, v->port, &ss);
    CHECK_ERR(cio_sock_connect(cfd, (struct sockaddr *)&ss, len), 0);
    CHECK_ERR(cio_sock_sendall(cfd, "waiting", 7), 0);
    AWAIT(rep.n_emfile >= 1); /* accept failed, and the handler heard */
    CHECK_ERR(rep.last_error, -EMFILE);
    /* It pauses between attempts: a handful in half a second, where a
     * server spinning on its readable socket would fail thousands of
     * times. */
    int before = rep.n_emfile;
    double t0 = mono();
    CHECK_ERR(cio_sleep(0.5), 0);
    double slept = mono() - t0;
    int during = rep.n_emfile - before;
    if (during > (int)(slept / 0.05) + 3)
        test_fail(__FILE__, __LINE__, "%d accept failures in %.2f s", during,
                  slept);
    CHECK(during >= 1); /* it keeps trying by itself */
    CHECK(cio_server_is_serving(v->s));
    CHECK_EQ(v->sp.n, 0);
    CHECK_EQ(rep.n, rep.n_emfile); /* nothing else went wrong */

    /* Room again: the waiting connection is accepted without help. */
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    AWAIT(v->sp.n == 1 && v->sp.p[0].len == 7);
    char buf[8] = {0};
    CHECK_EQ(raw_read(cfd, buf, 7), 7);
    CHECK_STR(buf, "waiting");
    close(cfd);
    AWAIT(v->sp.p[0].lost);
    srv_done(v);
    return 0;
}

TEST_T(net_accept_out_of_fds_reports_pauses_and_resumes, 20)
{
    /* Valgrind only emulates RLIMIT_NOFILE: the kernel's accept succeeds
     * and valgrind closes the new fd, so the connection is lost instead of
     * waiting in the backlog. */
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload"))
        test_skip("valgrind emulates RLIMIT_NOFILE after the kernel accepted");
    CHECK_ERR(cio_run(emfile_main, NULL), 0);
}

/* ------------------------------------------------------- closing the loop */

typedef struct leave_open {
    srv v;
    peer c;
    cio_transport *t;
} leave_open;

static int leave_open_task(void *arg)
{
    leave_open *lo = arg;
    lo->v.sp.tmpl.echo = true;
    serve(&lo->v, "127.0.0.1");
    lo->t = dial("127.0.0.1", lo->v.portstr, &lo->c);
    CHECK_ERR(cio_transport_write(lo->t, "hi", 2), 0);
    AWAIT(lo->c.len == 2);
    return 0; /* and leaves the server and both transports open */
}

TEST(net_loop_close_reports_open_transports_and_calls_connection_lost)
{
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    watch_reports(loop, false);
    leave_open lo;
    memset(&lo, 0, sizeof lo);
    cio_task *task;
    cio_event_init(&changed);
    CHECK_ERR(cio_task_new(loop, leave_open_task, &lo, NULL, &task), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, task), 0);
    cio_future_unref(task);
    CHECK_EQ(lo.c.lost, 0);
    CHECK_EQ(rep.n, 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    /* Each one reported, and told its end. */
    CHECK(strstr(rep.log.buf, "unclosed transport") != NULL);
    CHECK(strstr(rep.log.buf, "unclosed server") != NULL);
    CHECK_EQ(lo.c.lost, 1);
    CHECK_ERR(lo.c.lost_error, -ESHUTDOWN);
    CHECK_EQ(lo.v.sp.n, 1);
    CHECK_EQ(lo.v.sp.p[0].lost, 1);
    CHECK_ERR(lo.v.sp.p[0].lost_error, -ESHUTDOWN);
    cio_loop_free(loop);
    peers_free(&lo.v.sp);
    peer_free(&lo.c);
}

/* ------------------------------------------------------ failure injection */

/* One run of "start a server, connect, echo a few lines, close all" under
 * an injected failure. The state lives outside the loop: connection_lost
 * may still run when cio_run closes the loop after an early return. */
typedef struct fault_run {
    srv v;
    peer c;
    cio_transport *t;
} fault_run;

static const char fault_lines[] = "one\ntwo\nthree\n";

static int fault_body(fault_run *fr)
{
    int r = cio_create_server("127.0.0.1", "0", &rec_proto, next_peer,
                              &fr->v.sp, NULL, &fr->v.s);
    if (r)
        return r;
    snprintf(fr->v.portstr, sizeof fr->v.portstr, "%d",
             cio_server_port(fr->v.s));
    r = cio_create_connection("127.0.0.1", fr->v.portstr, &rec_proto, &fr->c,
                              NULL, &fr->t);
    if (r)
        return r;
    size_t off = 0;
    while (fault_lines[off]) {
        size_t n = strcspn(fault_lines + off, "\n") + 1;
        r = cio_transport_write(fr->t, fault_lines + off, n);
        if (r)
            return r;
        off += n;
        AWAIT_OR_RETURN(fr->c.len >= off || fr->c.lost || fr->c.eofs);
        if (fr->c.len < off)
            return fr->c.lost_error ? fr->c.lost_error : -ECONNRESET;
        CHECK(memcmp(fr->c.data, fault_lines, off) == 0); /* never garbled */
    }
    cio_transport_close(fr->t);
    AWAIT_OR_RETURN(fr->c.lost);
    return fr->c.lost_error;
}

/* Strict: a run whose echo hangs fails even when the failure was
 * reported (the server should have said so when it was created). */
static bool fault_strict;

static int fault_main(void *arg)
{
    fault_run *fr = arg;
    changed_init();
    watch_reports(NULL, false);
    cio__accept_retry_delay = 0.01;
    cio_timeout_scope scope;
    int r = cio_timeout(&scope, 2.0);
    if (r)
        return r;
    r = fault_body(fr);
    int end = cio_timeout_end(&scope);
    if (r == -ETIMEDOUT && end == -ETIMEDOUT && rep.n == 0)
        test_fail(__FILE__, __LINE__,
                  "an injected failure hung the echo, unreported");
    if (r == -ETIMEDOUT && end == -ETIMEDOUT && fault_strict)
        test_fail(__FILE__, __LINE__,
                  "an injected failure hung the echo; reported: %s",
                  rep.log.buf);
    /* Clean up whatever is left, with a deadline of its own (the
     * injected failure, if it came, is behind us). */
    int scoped = cio_timeout(&scope, 5.0) == 0;
    if (fr->t && !fr->c.lost)
        cio_transport_abort(fr->t);
    if (fr->v.s) {
        cio_server_close(fr->v.s);
        cio_server_abort_clients(fr->v.s);
        int w = cio_server_wait_closed(fr->v.s);
        if (w == -ENOMEM) /* the injected failure hit wait_closed itself */
            w = cio_server_wait_closed(fr->v.s);
        if (w == -ECANCELED) { /* the loop failed: cio_run cancels */
            if (scoped) /* the scope's timer lives on this stack */
                cio_timeout_end(&scope);
            return w; /* and closing the loop frees the rest */
        }
        if (w)
            test_fail(__FILE__, __LINE__, "wait_closed: %s", cio_strerror(w));
        cio_server_free(fr->v.s);
        fr->v.s = NULL;
    }
    while (fr->t && !fr->c.lost) {
        cio_event_clear(&changed);
        int w = cio_event_wait(&changed);
        if (w == -ECANCELED) {
            if (scoped)
                cio_timeout_end(&scope);
            return w;
        }
        if (w)
            test_fail(__FILE__, __LINE__, "waiting for connection_lost: %s",
                      cio_strerror(w));
    }
    if (scoped)
        CHECK_ERR(cio_timeout_end(&scope), 0);
    return r;
}

static int fault_scenario(void *arg)
{
    unsigned *runs = arg;
    fault_run fr;
    memset(&fr, 0, sizeof fr);
    fr.v.sp.tmpl.echo = true;
    int r = cio_run(fault_main, &fr);
    peers_free(&fr.v.sp);
    peer_free(&fr.c);
    (*runs)++;
    return r > 0 ? 0 : r;
}

TEST_T(net_allocation_failures_fail_cleanly, 120)
{
    unsigned runs = 0;
    int n = test_fault_loop(CIO__FAULT_ALLOC, 0, fault_scenario, &runs);
    CHECK(n > 10);
}

TEST_T(net_enomem_system_call_failures_fail_cleanly, 120)
{
    unsigned runs = 0;
    int n = test_fault_loop(CIO__FAULT_SYS, ENOMEM, fault_scenario, &runs);
    CHECK(n > 10);
}

TEST_T(net_emfile_system_call_failures_fail_cleanly, 120)
{
    unsigned runs = 0;
    int n = test_fault_loop(CIO__FAULT_SYS, EMFILE, fault_scenario, &runs);
    CHECK(n > 10);
}

/* A server that cannot watch its listening socket must not come back as
 * created (and serving) only to never accept: asyncio's create_server
 * raises what add_reader raised. */
TEST_T(net_server_that_cannot_watch_its_socket_is_not_created, 120)
{
    fault_strict = true;
    unsigned runs = 0;
    CHECK(test_fault_loop(CIO__FAULT_SYS, ENOMEM, fault_scenario, &runs) > 10);
    CHECK(test_fault_loop(CIO__FAULT_ALLOC, 0, fault_scenario, &runs) > 10);
}
