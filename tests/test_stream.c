/* Streams (issue 6): open_connection / start_server and their Unix forms,
 * the reader (read, read_all, readline, readexactly, readuntil and the
 * buffer limit) and the writer (write, writelines, drain, write_eof, close,
 * wait_closed), over real sockets on loopback, against well-behaved and
 * bad peers, and a thousand connections at once.
 *
 * Servers' connection handlers record what they saw in the test's state
 * and set one event that waiting tasks re-check their condition on; the
 * few sleeps only give a peer time to do what it must not. Every test name
 * starts with "stream_" (`make check T=stream`). */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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

/* Set whenever a handler records something. */
static cio_event changed;

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

static void note(void) { cio_event_set(&changed); }

typedef struct reports {
    int n;
    bool fatal;
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
    note();
}

static void watch_reports(bool fatal)
{
    memset(&rep, 0, sizeof rep);
    rep.fatal = fatal;
    CHECK_ERR(cio_loop_set_exception_handler(cio_get_running_loop(),
                                             on_report, NULL),
              0);
}

typedef struct main_args {
    cio_task_fn fn;
    void *arg;
} main_args;

static int strict_main(void *arg)
{
    main_args *m = arg;
    cio_event_init(&changed);
    watch_reports(true);
    return m->fn(m->arg);
}

/* Runs fn as the main task; any exception report fails the test. */
static void run_main(cio_task_fn fn, void *arg)
{
    main_args m = {fn, arg};
    CHECK_ERR(cio_run(strict_main, &m), 0);
}

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

/* The stream's transport. stream.c keeps it as its first member; the
 * check against the socket's fd guards this peek at the internals. */
static cio_transport *stream_transport(cio_stream *s)
{
    cio_transport *t = *(cio_transport **)s;
    int a = -1, b = -2;
    socklen_t al = sizeof a, bl = sizeof b;
    CHECK_ERR(cio_stream_get_extra_info(s, "socket", &a, &al), 0);
    CHECK_ERR(cio_transport_get_extra_info(t, "socket", &b, &bl), 0);
    CHECK_EQ(a, b);
    return t;
}

/* From a task: a raw non-blocking TCP socket connected to 127.0.0.1:port. */
static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_ERR(cio_sock_connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* A stream server and what its handlers saw. */
typedef struct server {
    cio_server *s;
    char port[16];
    int started, finished;     /* handlers */
    int last_status;           /* the last handler's verdict */
    ssize_t last_read;         /* the last read result a handler saw */
    int drain_error;
    double elapsed;
    size_t bytes;              /* what handlers received */
    bool pattern_good;
    cio_event go;              /* handlers that wait for permission */
    char *got;                 /* read_all's bytes (cio_free) */
    ssize_t got_len;
    int timeout_end;
    int closed_status;         /* what wait_closed said */
    int lines;
} server;

static server *server_new(void)
{
    server *v = calloc(1, sizeof *v);
    CHECK(v != NULL);
    cio_event_init(&v->go);
    v->pattern_good = true;
    return v;
}

static void start_tcp(server *v, const char *host, cio_client_connected cb,
                      const cio_stream_options *so)
{
    CHECK_ERR(cio_start_server(cb, v, host, "0", so, NULL, &v->s), 0);
    snprintf(v->port, sizeof v->port, "%d", cio_server_port(v->s));
}

/* Closes the server, waits for its connections to end, frees it and v. */
static void server_done(server *v)
{
    cio_server_close(v->s);
    CHECK_ERR(cio_server_wait_closed(v->s), 0);
    CHECK_EQ(v->finished, v->started);
    cio_server_free(v->s);
    cio_free(v->got);
    free(v);
}

static cio_stream *connect_to(server *v, const cio_stream_options *so)
{
    cio_stream *s = NULL;
    CHECK_ERR(cio_open_connection("127.0.0.1", v->port, so, &s), 0);
    CHECK(s != NULL);
    return s;
}

/* Handler: echoes every line back until EOF. */
static int line_echo(cio_stream *s, void *arg)
{
    server *v = arg;
    v->started++;
    note();
    for (;;) {
        const char *line;
        ssize_t n = cio_stream_readline(s, &line);
        v->last_read = n;
        if (n <= 0)
            break;
        v->lines++;
        v->bytes += (size_t)n;
        if (cio_stream_write(s, line, (size_t)n) || cio_stream_drain(s))
            break;
    }
    v->finished++;
    note();
    return 0;
}

/* Handler: echoes chunks back until EOF. */
static int chunk_echo(cio_stream *s, void *arg)
{
    server *v = arg;
    v->started++;
    note();
    char buf[4096];
    for (;;) {
        ssize_t n = cio_stream_read(s, buf, sizeof buf);
        v->last_read = n;
        if (n <= 0)
            break;
        v->bytes += (size_t)n;
        if (cio_stream_write(s, buf, (size_t)n) || cio_stream_drain(s))
            break;
    }
    v->finished++;
    note();
    return 0;
}

/* ------------------------------------------------------------ the basics */

static void echo_lines_over(cio_stream *s)
{
    static const char *lines[] = {"first line\n", "second\n", "\n",
                                  "the last one\n"};
    for (size_t i = 0; i < 4; i++)
        CHECK_ERR(cio_stream_write(s, lines[i], strlen(lines[i])), 0);
    CHECK_ERR(cio_stream_drain(s), 0);
    for (size_t i = 0; i < 4; i++) {
        const char *line;
        ssize_t n = cio_stream_readline(s, &line);
        CHECK_EQ(n, strlen(lines[i]));
        CHECK(memcmp(line, lines[i], (size_t)n) == 0);
    }
    CHECK(!cio_stream_at_eof(s));
    CHECK_ERR(cio_stream_write_eof(s), 0);
    const char *line = (const char *)1;
    CHECK_EQ(cio_stream_readline(s, &line), 0); /* the server closed */
    CHECK(cio_stream_at_eof(s));
    /* Both directions are shut, but as in asyncio the transport stays
     * open until closed. */
    CHECK(!cio_stream_is_closing(s));
    cio_stream_close(s);
    CHECK_ERR(cio_stream_wait_closed(s), 0);
    cio_stream_free(s);
}

static int echo_main(void *arg)
{
    (void)arg;
    server *v = server_new();
    start_tcp(v, "127.0.0.1", line_echo, NULL);
    echo_lines_over(connect_to(v, NULL));
    AWAIT(v->finished == 1);
    CHECK_EQ(v->lines, 4);
    CHECK_EQ(v->last_read, 0);
    server_done(v);
    if (have_ipv6()) {
        server *w = server_new();
        start_tcp(w, "::1", line_echo, NULL);
        cio_stream *s = NULL;
        CHECK_ERR(cio_open_connection("::1", w->port, NULL, &s), 0);
        struct sockaddr_storage pn;
        socklen_t pl = sizeof pn;
        CHECK_ERR(cio_stream_get_extra_info(s, "peername", &pn, &pl), 0);
        CHECK_EQ(pn.ss_family, AF_INET6);
        echo_lines_over(s);
        AWAIT(w->finished == 1);
        server_done(w);
    }
    return 0;
}

TEST(stream_open_connection_and_start_server_echo_lines)
{
    run_main(echo_main, NULL);
}

static int refused_main(void *arg)
{
    (void)arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd); /* nothing listens there now */
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    cio_stream *s = (cio_stream *)1;
    CHECK_ERR(cio_open_connection("127.0.0.1", port, NULL, &s), -ECONNREFUSED);
    CHECK(s == NULL);
    s = (cio_stream *)1;
    int r = cio_open_connection("name.invalid", "80", NULL, &s);
    CHECK(r < CIO_EAI_BASE && r > CIO_EAI_BASE - 200);
    CHECK(s == NULL);
    return 0;
}

TEST_T(stream_open_connection_refused_and_unresolvable, 30)
{
    run_main(refused_main, NULL);
}

/* Handler: sends what the test put in v->got (v->got_len bytes), then
 * closes. */
static int send_and_close(cio_stream *s, void *arg)
{
    server *v = arg;
    v->started++;
    note();
    CHECK_ERR(cio_stream_write(s, v->got, (size_t)v->got_len), 0);
    CHECK_ERR(cio_stream_drain(s), 0);
    v->finished++;
    note();
    return 0;
}

static server *sender(const char *data, size_t n)
{
    server *v = server_new();
    v->got = malloc(n + 1);
    CHECK(v->got != NULL);
    memcpy(v->got, data, n);
    v->got_len = (ssize_t)n;
    start_tcp(v, "127.0.0.1", send_and_close, NULL);
    return v;
}

static void sender_done(server *v)
{
    free(v->got);
    v->got = NULL;
    server_done(v);
}

static int read_main(void *arg)
{
    (void)arg;
    server *v = sender("0123456789", 10);
    cio_stream *s = connect_to(v, NULL);
    char buf[16] = {0};
    AWAIT(v->finished == 1);
    CHECK_EQ(cio_stream_read(s, buf, 4), 4); /* up to n */
    CHECK(memcmp(buf, "0123", 4) == 0);
    CHECK_EQ(cio_stream_read(s, buf, 0), 0);
    CHECK_EQ(cio_stream_read(s, buf, sizeof buf), 6);
    CHECK(memcmp(buf, "456789", 6) == 0);
    CHECK_EQ(cio_stream_read(s, buf, sizeof buf), 0); /* EOF */
    CHECK(cio_stream_at_eof(s));
    CHECK_EQ(cio_stream_read(s, buf, sizeof buf), 0); /* and again */
    cio_stream_free(s);
    sender_done(v);
    return 0;
}

TEST(stream_read_returns_what_is_there_then_zero_at_eof)
{
    run_main(read_main, NULL);
}

static int read_all_main(void *arg)
{
    (void)arg;
    /* More than the limit: read_all is not bound by it. */
    size_t n = 300000;
    char *data = malloc(n);
    fill(data, n, 0);
    server *v = sender(data, n);
    cio_stream_options so = {.limit = 1024};
    cio_stream *s = connect_to(v, &so);
    char *all = NULL;
    CHECK_EQ(cio_stream_read_all(s, &all), n);
    CHECK(all != NULL);
    CHECK(pattern_ok(all, n, 0));
    CHECK(cio_stream_at_eof(s));
    cio_free(all);
    CHECK_EQ(cio_stream_read_all(s, &all), 0); /* nothing more */
    cio_free(all);
    cio_stream_free(s);
    free(data);
    sender_done(v);
    return 0;
}

TEST(stream_read_all_reads_to_eof) { run_main(read_all_main, NULL); }

static int empty_main(void *arg)
{
    /* A peer that sends nothing and closes: nothing ever buffered. */
    server *v = sender("", 0);
    cio_stream *s = connect_to(v, NULL);
    bool exactly = *(bool *)arg;
    if (exactly) {
        char buf[4];
        size_t partial = 99;
        CHECK_ERR(cio_stream_readexactly(s, buf, sizeof buf, &partial),
                  CIO_EINCOMPLETE);
        CHECK_EQ(partial, 0);
    } else {
        char *all = NULL;
        CHECK_EQ(cio_stream_read_all(s, &all), 0);
        CHECK(all != NULL);
        CHECK_STR(all, "");
        cio_free(all);
    }
    cio_stream_free(s);
    AWAIT(v->finished == 1);
    sender_done(v);
    return 0;
}

TEST(stream_read_all_of_an_empty_stream)
{
    bool exactly = false;
    run_main(empty_main, &exactly);
}

TEST(stream_readexactly_of_an_empty_stream)
{
    bool exactly = true;
    run_main(empty_main, &exactly);
}

/* Nothing ever buffered, so no buffer at all: readuntil and readline at
 * EOF answer without arithmetic on its NULL pointer (undefined; clang's
 * UBSan caught it, running tests/fuzz/fuzz_stream.c). */
static int empty_lines_main(void *arg)
{
    (void)arg;
    server *v = sender("", 0);
    cio_stream *s = connect_to(v, NULL);
    static const char *const seps[] = {"\r\n"};
    const char *data = "x";
    CHECK_ERR(cio_stream_readuntil(s, seps, 1, &data), CIO_EINCOMPLETE);
    const char *line = "x";
    CHECK_EQ(cio_stream_readline(s, &line), 0);
    cio_stream_free(s);
    AWAIT(v->finished == 1);
    sender_done(v);
    return 0;
}

TEST(stream_readuntil_and_readline_of_an_empty_stream)
{
    run_main(empty_lines_main, NULL);
}

static int readexactly_main(void *arg)
{
    (void)arg;
    server *v = sender("abcdefgh", 8);
    cio_stream *s = connect_to(v, NULL);
    char buf[16] = {0};
    size_t partial = 99;
    CHECK_EQ(cio_stream_readexactly(s, buf, 3, &partial), 3);
    CHECK_EQ(partial, 0);
    CHECK(memcmp(buf, "abc", 3) == 0);
    memset(buf, 0, sizeof buf);
    /* Five bytes left, ten wanted: EOF comes first. */
    CHECK_ERR(cio_stream_readexactly(s, buf, 10, &partial), CIO_EINCOMPLETE);
    CHECK_EQ(partial, 5);
    CHECK(memcmp(buf, "defgh", 5) == 0);
    CHECK(cio_stream_at_eof(s));
    CHECK_ERR(cio_stream_readexactly(s, buf, 1, &partial), CIO_EINCOMPLETE);
    CHECK_EQ(partial, 0);
    CHECK_EQ(cio_stream_readexactly(s, buf, 0, NULL), 0);
    cio_stream_free(s);
    sender_done(v);
    return 0;
}

TEST(stream_readexactly_at_early_eof_is_incomplete_with_the_partial)
{
    run_main(readexactly_main, NULL);
}

static int readuntil_main(void *arg)
{
    (void)arg;
    static const char text[] = "GET / HTTP/1.0\r\nHost: x\r\n\r\nbody;tail";
    server *v = sender(text, sizeof text - 1);
    cio_stream *s = connect_to(v, NULL);
    static const char *const crlf[] = {"\r\n"};
    static const char *const ends[] = {"\r\n\r\n", ";"};
    const char *d;
    ssize_t n = cio_stream_readuntil(s, crlf, 1, &d);
    CHECK_EQ(n, 16);
    CHECK(memcmp(d, "GET / HTTP/1.0\r\n", 16) == 0);
    /* Several separators: the one that ends first wins. */
    n = cio_stream_readuntil(s, ends, 2, &d);
    CHECK_EQ(n, 11);
    CHECK(memcmp(d, "Host: x\r\n\r\n", 11) == 0);
    n = cio_stream_readuntil(s, ends, 2, &d);
    CHECK_EQ(n, 5);
    CHECK(memcmp(d, "body;", 5) == 0);
    CHECK_ERR(cio_stream_readuntil(s, NULL, 0, &d), -EINVAL);
    static const char *const empty[] = {""};
    CHECK_ERR(cio_stream_readuntil(s, empty, 1, &d), -EINVAL);
    /* EOF before a separator. */
    CHECK_ERR(cio_stream_readuntil(s, crlf, 1, &d), CIO_EINCOMPLETE);
    cio_stream_free(s);
    sender_done(v);
    return 0;
}

TEST(stream_readuntil_one_or_several_separators)
{
    run_main(readuntil_main, NULL);
}

/* ------------------------------------------- bytes arriving in pieces */

/* A stream connected to a raw socket the test writes into (*raw). */
static cio_stream *raw_peer_stream(int *raw, const cio_stream_options *so)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(lfd, 1) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&a, &al) == 0);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    cio_stream *s = NULL;
    CHECK_ERR(cio_open_connection("127.0.0.1", port, so, &s), 0);
    *raw = cio_sock_accept(lfd, NULL, NULL);
    CHECK(*raw >= 0);
    close(lfd);
    return s;
}

/* Pieces written one at a time, each only after the reader searched the
 * one before (cio__stream_scanned moved): the reader sees every piece
 * arrive on its own, whatever the kernel would have merged. */
typedef struct pieces {
    int fd;
    const char *const *piece; /* NULL-terminated; or `line` when NULL */
    size_t line, chunk;       /* `line` bytes of 'a', then "\r\n" */
} pieces;

static void send_piece(int fd, const char *data, size_t n)
{
    size_t before = cio__stream_scanned;
    CHECK_ERR(cio_sock_sendall(fd, data, n), 0);
    while (cio__stream_scanned == before)
        CHECK_ERR(cio_sleep(0), 0);
}

static int write_pieces(void *arg)
{
    pieces *p = arg;
    for (size_t i = 0; p->piece && p->piece[i]; i++)
        send_piece(p->fd, p->piece[i], strlen(p->piece[i]));
    char buf[1024];
    memset(buf, 'a', sizeof buf);
    for (size_t sent = 0; !p->piece && sent < p->line; sent += p->chunk)
        send_piece(p->fd, buf, p->chunk);
    if (!p->piece)
        CHECK_ERR(cio_sock_sendall(p->fd, "\r\n", 2), 0);
    return 0;
}

static cio_task *start_pieces(pieces *p)
{
    cio_task *t = NULL;
    CHECK_ERR(cio_create_task(write_pieces, p, &t), 0);
    return t;
}

static void finish_pieces(cio_task *t, cio_stream *s, int fd)
{
    CHECK_ERR(cio_await(t, NULL), 0);
    cio_future_unref(t);
    close(fd);
    cio_stream_free(s);
}

/* A separator split across two arrivals is found where it ends, for one
 * separator and for the earliest of several. */
static int straddle_main(void *arg)
{
    (void)arg;
    int fd;
    cio_stream *s = raw_peer_stream(&fd, NULL);
    static const char *const split[] = {"head\r\n\r", "\nx--EN", "D-",
                                        "-y\r\n\r\n", "z\r", "\n", NULL};
    pieces p = {.fd = fd, .piece = split};
    cio_task *w = start_pieces(&p);
    static const char *const blank[] = {"\r\n\r\n"};
    static const char *const two[] = {"\r\n\r\n", "--END--"};
    const char *d;
    CHECK_EQ(cio_stream_readuntil(s, blank, 1, &d), 8);
    CHECK(memcmp(d, "head\r\n\r\n", 8) == 0);
    CHECK_EQ(cio_stream_readuntil(s, two, 2, &d), 8);
    CHECK(memcmp(d, "x--END--", 8) == 0);
    CHECK_EQ(cio_stream_readuntil(s, two, 2, &d), 5);
    CHECK(memcmp(d, "y\r\n\r\n", 5) == 0);
    CHECK_EQ(cio_stream_readline(s, &d), 3);
    CHECK(memcmp(d, "z\r\n", 3) == 0);
    finish_pieces(w, s, fd);
    return 0;
}

TEST(stream_readuntil_finds_separators_split_across_arrivals)
{
    run_main(straddle_main, NULL);
}

/* A long line arriving 1 KiB at a time is searched about once, not once
 * per arrival (which would be quadratic: 32 GiB of scanning for 256 KiB). */
static int scan_once_main(void *arg)
{
    (void)arg;
    enum { LINE = 256 * 1024 };
    int fd;
    cio_stream_options so = {.limit = 1 << 20};
    cio_stream *s = raw_peer_stream(&fd, &so);
    pieces p = {.fd = fd, .line = LINE, .chunk = 1024};
    static const char *const seps[] = {"\r\n", "\n\n"};
    cio_task *w = start_pieces(&p);
    size_t before = cio__stream_scanned;
    const char *d;
    CHECK_EQ(cio_stream_readuntil(s, seps, 2, &d), LINE + 2);
    CHECK(d[0] == 'a' && d[LINE - 1] == 'a' && d[LINE] == '\r');
    size_t scanned = cio__stream_scanned - before;
    if (scanned > 3 * (size_t)LINE)
        test_fail(__FILE__, __LINE__, "searched %zu bytes for a %d-byte line",
                  scanned, LINE);
    finish_pieces(w, s, fd);
    /* readline: the same. */
    s = raw_peer_stream(&fd, &so);
    p.fd = fd;
    w = start_pieces(&p);
    before = cio__stream_scanned;
    CHECK_EQ(cio_stream_readline(s, &d), LINE + 2);
    scanned = cio__stream_scanned - before;
    if (scanned > 2 * (size_t)LINE)
        test_fail(__FILE__, __LINE__, "searched %zu bytes for a %d-byte line",
                  scanned, LINE);
    finish_pieces(w, s, fd);
    return 0;
}

TEST(stream_readuntil_searches_a_long_line_once_not_per_chunk)
{
    run_main(scan_once_main, NULL);
}

/* Waits (bounded) for the stream's read buffer to have cap bytes. */
static void await_capacity(cio_stream *s, size_t cap)
{
    double t0 = mono();
    while (cio__stream_buffer_capacity(s) != cap) {
        if (mono() - t0 > 5)
            test_fail(__FILE__, __LINE__, "the read buffer kept %zu bytes",
                      cio__stream_buffer_capacity(s));
        CHECK_ERR(cio_sleep(0.001), 0);
    }
}

/* A burst grows the read buffer; once drained it goes back (a stream
 * idle after reading 64 KiB keeps no 64 KiB), though not at once (the
 * next message may need it), while a buffer that only ever held small
 * reads stays allocated (no churn). Borrowed data keeps the buffer until
 * the next read call. */
static int give_back_main(void *arg)
{
    (void)arg;
    int fd;
    cio_stream *s = raw_peer_stream(&fd, NULL);
    static char big[64 * 1024];
    memset(big, 'b', sizeof big);
    CHECK_ERR(cio_sock_sendall(fd, big, sizeof big), 0);
    static char got[64 * 1024];
    cio__stream_shrink_delay = 0.01;
    CHECK_EQ(cio_stream_readexactly(s, got, sizeof got, NULL), sizeof got);
    CHECK(cio__stream_buffer_capacity(s) >= sizeof got); /* for a while */
    await_capacity(s, 0);
    for (int i = 0; i < 10; i++) { /* small reads keep their buffer */
        CHECK_ERR(cio_sock_sendall(fd, "abc\n", 4), 0);
        const char *line;
        CHECK_EQ(cio_stream_readline(s, &line), 4);
        CHECK_EQ(cio__stream_buffer_capacity(s), 4096);
        CHECK_ERR(cio_sleep(0.02), 0);
        CHECK_EQ(cio__stream_buffer_capacity(s), 4096);
    }
    big[sizeof big - 1] = '\n';
    CHECK_ERR(cio_sock_sendall(fd, big + 32 * 1024, 32 * 1024), 0);
    const char *line;
    CHECK_EQ(cio_stream_readline(s, &line), 32 * 1024);
    CHECK_ERR(cio_sleep(0.02), 0);
    CHECK(cio__stream_buffer_capacity(s) >= 32 * 1024); /* line is borrowed */
    CHECK_EQ(line[0], 'b');
    shutdown(fd, SHUT_WR);
    CHECK_EQ(cio_stream_readline(s, &line), 0);
    await_capacity(s, 0);
    close(fd);
    cio_stream_free(s);
    return 0;
}

TEST(stream_read_buffer_goes_back_once_drained)
{
    run_main(give_back_main, NULL);
}

/* A peer that never reads: the stream's writes stop at the write buffer's
 * maximum with -ENOBUFS, keeping nothing of the refused write. */
static int write_max_main(void *arg)
{
    (void)arg;
    int fd;
    cio_stream *s = raw_peer_stream(&fd, NULL);
    CHECK_ERR(cio_stream_set_write_buffer_max(NULL, 1), -EINVAL);
    CHECK_ERR(cio_stream_set_write_buffer_max(s, 256 * 1024), 0);
    cio_transport *t = stream_transport(s);
    char buf[16 * 1024];
    memset(buf, 'w', sizeof buf);
    int r;
    size_t writes = 0;
    while (!(r = cio_stream_write(s, buf, sizeof buf)))
        CHECK(++writes < 100000);
    CHECK_ERR(r, -ENOBUFS);
    size_t size = cio_transport_get_write_buffer_size(t);
    CHECK(size <= 256 * 1024 && size + sizeof buf > 256 * 1024);
    struct iovec iov = {buf, sizeof buf};
    CHECK_ERR(cio_stream_writelines(s, &iov, 1), -ENOBUFS);
    CHECK_EQ(cio_transport_get_write_buffer_size(t), size);
    close(fd);
    cio_stream_free(s);
    return 0;
}

TEST(stream_write_past_the_write_buffer_max_is_enobufs)
{
    run_main(write_max_main, NULL);
}

/* From a task: true once fd's connection was reset (POLLERR / POLLHUP),
 * without reading what it holds; fails the test after 30 s. */
static bool await_reset(int fd)
{
    double t0 = mono();
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        CHECK(poll(&p, 1, 0) >= 0);
        if (p.revents & (POLLERR | POLLHUP))
            return true;
        CHECK(mono() - t0 < 30);
        CHECK_ERR(cio_sleep(0.001), 0);
    }
}

/* Written bytes the peer never reads: a freed stream may flush them for a
 * while (cio__stream_free_linger), then it is aborted with a reset, so
 * freeing a stream never holds its connection and memory forever. */
static int free_linger_main(void *arg)
{
    (void)arg;
    cio__stream_free_linger = 0.05;
    int fd;
    cio_stream *s = raw_peer_stream(&fd, NULL);
    cio_transport *t = stream_transport(s);
    size_t n = 1u << 20;
    char *buf = malloc(n);
    CHECK(buf != NULL);
    memset(buf, 'q', n);
    while (cio_transport_get_write_buffer_size(t) == 0)
        CHECK_ERR(cio_stream_write(s, buf, n), 0);
    free(buf);
    long live = cio__alloc_live();
    cio_stream_free(s);
    CHECK(await_reset(fd));
    char b[64];
    ssize_t r;
    while ((r = recv(fd, b, sizeof b, 0)) > 0)
        ;
    CHECK(r < 0 && errno == ECONNRESET);
    /* The stream and its transport are gone, not just closing. */
    while (cio__alloc_live() >= live)
        CHECK_ERR(cio_sleep(0), 0);
    close(fd);
    return 0;
}

TEST(stream_freed_with_unsent_bytes_is_aborted_after_a_linger)
{
    run_main(free_linger_main, NULL);
}

/* What a pipelining server asks before it flushes: how much input is
 * buffered (0: the next read waits), and how much output the peer has
 * not taken yet. */
static int buffered_main(void *arg)
{
    (void)arg;
    int fd;
    cio_stream *s = raw_peer_stream(&fd, NULL);
    const char *line;
    CHECK_EQ(cio_stream_buffered(NULL), 0);
    CHECK_EQ(cio_stream_get_write_buffer_size(NULL), 0);
    CHECK_EQ(send(fd, "ab\n", 3, 0), 3);
    CHECK_EQ(cio_stream_readline(s, &line), 3);
    CHECK_EQ(cio_stream_buffered(s), 0);
    CHECK_EQ(send(fd, "cd\nef", 5, 0), 5);
    for (double t0 = mono(); cio_stream_buffered(s) < 5;) {
        CHECK(mono() - t0 < 30);
        CHECK_ERR(cio_sleep(0.001), 0);
    }
    CHECK_EQ(cio_stream_readline(s, &line), 3);
    CHECK_EQ(cio_stream_buffered(s), 2);
    /* The peer never reads: what the kernel cannot take stays queued. */
    cio_transport *t = stream_transport(s);
    size_t n = 1u << 20;
    char *buf = malloc(n);
    CHECK(buf != NULL);
    memset(buf, 'q', n);
    while (cio_transport_get_write_buffer_size(t) == 0)
        CHECK_ERR(cio_stream_write(s, buf, n), 0);
    free(buf);
    CHECK_EQ(cio_stream_get_write_buffer_size(s),
             cio_transport_get_write_buffer_size(t));
    cio_stream_abort(s);
    CHECK_ERR(cio_stream_wait_closed(s), 0);
    CHECK_EQ(cio_stream_get_write_buffer_size(s), 0);
    CHECK_EQ(cio_stream_buffered(s), 2); /* still readable, as asyncio's */
    cio_stream_free(s);
    close(fd);
    return 0;
}

TEST(stream_buffered_and_write_buffer_size_report_both_sides)
{
    run_main(buffered_main, NULL);
}

/* cio_stream_abort drops what is buffered and resets the connection. */
static int stream_abort_main(void *arg)
{
    (void)arg;
    int fd;
    cio_stream *s = raw_peer_stream(&fd, NULL);
    CHECK_ERR(cio_stream_write(s, "dropped", 7), 0);
    cio_stream_abort(s);
    cio_stream_abort(s); /* twice is once */
    CHECK(cio_stream_is_closing(s));
    CHECK_ERR(cio_stream_wait_closed(s), 0);
    CHECK_ERR(cio_stream_write(s, "x", 1), -EPIPE);
    cio_stream_abort(s); /* after the end: nothing */
    cio_stream_abort(NULL);
    CHECK(await_reset(fd));
    cio_stream_free(s);
    close(fd);
    return 0;
}

TEST(stream_abort_resets_the_connection)
{
    run_main(stream_abort_main, NULL);
}

/* ---------------------------------------------------- the buffer limit */

static int long_line_main(void *arg)
{
    (void)arg;
    char text[128];
    memset(text, 'x', 40);
    strcpy(text + 40, "\nshort\nlast");
    server *v = sender(text, strlen(text));
    cio_stream_options so = {.limit = 16};
    cio_stream *s = connect_to(v, &so);
    AWAIT(v->finished == 1);
    CHECK_ERR(cio_sleep(0.05), 0); /* everything is in the stream's buffer */
    const char *line;
    /* 41 bytes with its newline, over the limit of 16: CIO_ELIMIT, and
     * the line is gone (asyncio's readline). */
    CHECK_ERR(cio_stream_readline(s, &line), CIO_ELIMIT);
    CHECK_EQ(cio_stream_readline(s, &line), 6);
    CHECK(memcmp(line, "short\n", 6) == 0);
    /* A last line without a newline comes at EOF. */
    CHECK_EQ(cio_stream_readline(s, &line), 4);
    CHECK(memcmp(line, "last", 4) == 0);
    CHECK_EQ(cio_stream_readline(s, &line), 0);
    cio_stream_free(s);
    sender_done(v);
    return 0;
}

TEST(stream_readline_longer_than_the_limit_is_consumed)
{
    run_main(long_line_main, NULL);
}

static int long_until_main(void *arg)
{
    (void)arg;
    char text[128];
    memset(text, 'y', 40);
    strcpy(text + 40, "$rest");
    server *v = sender(text, strlen(text));
    cio_stream_options so = {.limit = 16};
    cio_stream *s = connect_to(v, &so);
    AWAIT(v->finished == 1);
    CHECK_ERR(cio_sleep(0.05), 0);
    static const char *const dollar[] = {"$"};
    const char *d;
    CHECK_ERR(cio_stream_readuntil(s, dollar, 1, &d), CIO_ELIMIT);
    /* The data stays: a bigger read gets it all. */
    char buf[64] = {0};
    CHECK_EQ(cio_stream_readexactly(s, buf, 41, NULL), 41);
    CHECK(memcmp(buf, text, 41) == 0);
    CHECK_EQ(cio_stream_read(s, buf, sizeof buf), 4);
    CHECK(memcmp(buf, "rest", 4) == 0);
    cio_stream_free(s);
    sender_done(v);

    /* No separator at all, and more than the limit buffered. */
    memset(text, 'z', 60);
    server *w = sender(text, 60);
    s = connect_to(w, &so);
    AWAIT(w->finished == 1);
    CHECK_ERR(cio_stream_readuntil(s, dollar, 1, &d), CIO_ELIMIT);
    CHECK_ERR(cio_stream_readuntil(s, dollar, 1, &d), CIO_ELIMIT);
    CHECK_EQ(cio_stream_readexactly(s, buf, 60, NULL), 60);
    cio_stream_free(s);
    sender_done(w);
    return 0;
}

TEST(stream_readuntil_longer_than_the_limit_keeps_the_data)
{
    run_main(long_until_main, NULL);
}

/* A stream over a pipe that already holds all of data and its EOF: the
 * first read of the transport gets every byte at once, so what is
 * buffered when a read call looks is known exactly. */
static cio_stream *piped(const char *data, size_t limit)
{
    int p[2];
    CHECK_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    CHECK_EQ(write(p[1], data, strlen(data)), (ssize_t)strlen(data));
    close(p[1]);
    cio_stream *s;
    CHECK_ERR(cio__stream_pipe(cio_get_running_loop(), p[0], false, limit,
                               &s), 0);
    return s;
}

static int until_eof_main(void *arg)
{
    (void)arg;
    static const char *const crlf[] = {"\r\n"};
    cio_stream *s = piped("line\r\ntail", 0);
    const char *d;
    CHECK_EQ(cio_stream_readuntil(s, crlf, 1, &d), 6);
    CHECK_EQ(cio_stream_partial(s), 0);
    /* EOF before the separator: asyncio's IncompleteReadError, whose
     * partial holds the bytes; they are consumed. */
    d = NULL;
    CHECK_ERR(cio_stream_readuntil(s, crlf, 1, &d), CIO_EINCOMPLETE);
    CHECK_EQ(cio_stream_partial(s), 4);
    CHECK(d != NULL && memcmp(d, "tail", 4) == 0);
    CHECK(cio_stream_at_eof(s));
    /* Nothing left: the next call has no partial bytes. */
    CHECK_ERR(cio_stream_readuntil(s, crlf, 1, &d), CIO_EINCOMPLETE);
    CHECK_EQ(cio_stream_partial(s), 0);
    char buf[8];
    CHECK_EQ(cio_stream_read(s, buf, sizeof buf), 0);
    cio_stream_free(s);

    /* readexactly reports the same count; readline's last line is no
     * incomplete read. */
    s = piped("abcde", 0);
    size_t partial;
    CHECK_ERR(cio_stream_readexactly(s, buf, 8, &partial), CIO_EINCOMPLETE);
    CHECK_EQ(partial, 5);
    CHECK_EQ(cio_stream_partial(s), 5);
    CHECK(cio_stream_at_eof(s));
    cio_stream_free(s);
    s = piped("last", 0);
    CHECK_EQ(cio_stream_readline(s, &d), 4);
    CHECK(memcmp(d, "last", 4) == 0);
    CHECK_EQ(cio_stream_partial(s), 0);
    CHECK(cio_stream_at_eof(s));
    cio_stream_free(s);
    return 0;
}

TEST(stream_readuntil_at_eof_consumes_and_hands_over_the_partial)
{
    run_main(until_eof_main, NULL);
}

static int consumed_main(void *arg)
{
    (void)arg;
    char text[128];
    static const char *const dollar[] = {"$"};
    static const char *const seps[] = {"$", "END!"};
    const char *d;
    char buf[128];
    /* Found, but starting past the limit: consumed is where it starts. */
    memset(text, 'y', 40);
    strcpy(text + 40, "$rest");
    cio_stream *s = piped(text, 16);
    CHECK_ERR(cio_stream_readuntil(s, dollar, 1, &d), CIO_ELIMIT);
    CHECK_EQ(cio_stream_consumed(s), 40);
    /* Reading that many gets past them; the separator comes next. */
    CHECK_EQ(cio_stream_readexactly(s, buf, 40, NULL), 40);
    CHECK_EQ(cio_stream_consumed(s), 0); /* a new read call */
    CHECK_EQ(cio_stream_readuntil(s, dollar, 1, &d), 1);
    cio_stream_free(s);
    /* Not found: every byte that cannot be part of a separator, all but
     * len(longest) - 1 (asyncio's offset). */
    memset(text, 'z', 60);
    text[60] = 0;
    s = piped(text, 16);
    CHECK_ERR(cio_stream_readuntil(s, dollar, 1, &d), CIO_ELIMIT);
    CHECK_EQ(cio_stream_consumed(s), 60);
    CHECK_ERR(cio_stream_readuntil(s, seps, 2, &d), CIO_ELIMIT);
    CHECK_EQ(cio_stream_consumed(s), 57);
    CHECK_EQ(cio_stream_readexactly(s, buf, 57, NULL), 57);
    cio_stream_free(s);
    /* readline drops the long line itself and says how much went. */
    memset(text, 'x', 40);
    strcpy(text + 40, "\nshort\n");
    s = piped(text, 16);
    CHECK_ERR(cio_stream_readline(s, &d), CIO_ELIMIT);
    CHECK_EQ(cio_stream_consumed(s), 41);
    CHECK_EQ(cio_stream_readline(s, &d), 6);
    CHECK_EQ(cio_stream_consumed(s), 0);
    cio_stream_free(s);
    CHECK_EQ(cio_stream_consumed(NULL), 0);
    CHECK_EQ(cio_stream_partial(NULL), 0);
    return 0;
}

TEST(stream_limit_overrun_says_how_many_bytes_to_consume)
{
    run_main(consumed_main, NULL);
}

static int exact_limit_main(void *arg)
{
    (void)arg;
    /* asyncio: readuntil fails when the separator *starts* past the limit,
     * so a line of exactly `limit` bytes plus its newline is accepted. */
    char text[64];
    memset(text, 'q', 16);
    strcpy(text + 16, "\n");
    server *v = sender(text, 17);
    cio_stream_options so = {.limit = 16};
    cio_stream *s = connect_to(v, &so);
    AWAIT(v->finished == 1);
    const char *line;
    ssize_t n = cio_stream_readline(s, &line);
    cio_stream_free(s);
    sender_done(v);
    CHECK_EQ(n, 17);
    return 0;
}

TEST(stream_line_of_exactly_the_limit_is_accepted)
{
    run_main(exact_limit_main, NULL);
}

/* Handler: writes n pattern bytes in one go, then waits for go. */
static int flood(cio_stream *s, void *arg)
{
    server *v = arg;
    v->started++;
    note();
    size_t n = v->bytes;
    char *buf = malloc(n);
    fill(buf, n, 0);
    CHECK_ERR(cio_stream_write(s, buf, n), 0);
    free(buf);
    v->drain_error = cio_stream_drain(s);
    v->finished++;
    note();
    return 0;
}

static int bounded_reader_main(void *arg)
{
    (void)arg;
    server *v = server_new();
    v->bytes = 16u << 20; /* more than the kernel buffers between us */
    start_tcp(v, "127.0.0.1", flood, NULL);
    cio_stream_options so = {.limit = 4096};
    cio_stream *s = connect_to(v, &so);
    cio_transport *t = stream_transport(s);
    /* Nobody reads: the stream stops reading past twice the limit and
     * leaves the rest to the kernel (and the server's buffer). */
    AWAIT(v->started == 1);
    for (int i = 0; i < 100 && cio_transport_is_reading(t); i++)
        CHECK_ERR(cio_sleep(0.01), 0);
    CHECK(!cio_transport_is_reading(t));
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK(!cio_transport_is_reading(t));
    CHECK_EQ(v->finished, 0); /* the server's drain waits meanwhile */
    /* Reading it all back restores the flow, every byte in order. */
    char *buf = malloc(v->bytes);
    CHECK_EQ(cio_stream_readexactly(s, buf, v->bytes, NULL), v->bytes);
    CHECK(pattern_ok(buf, v->bytes, 0));
    free(buf);
    AWAIT(v->finished == 1);
    CHECK_ERR(v->drain_error, 0);
    char b;
    CHECK_EQ(cio_stream_read(s, &b, 1), 0);
    cio_stream_free(s);
    server_done(v);
    return 0;
}

TEST(stream_reader_buffer_stays_bounded_when_nobody_reads)
{
    run_main(bounded_reader_main, NULL);
}

/* ------------------------------------------------------------ bad peers */

/* Handler: reads nothing until go is set, then everything to EOF. */
static int slow_sink(cio_stream *s, void *arg)
{
    server *v = arg;
    v->started++;
    note();
    CHECK_ERR(cio_event_wait(&v->go), 0);
    char *buf = malloc(65536);
    for (;;) {
        ssize_t n = cio_stream_read(s, buf, 65536);
        CHECK(n >= 0);
        if (n == 0)
            break;
        if (!pattern_ok(buf, (size_t)n, v->bytes))
            v->pattern_good = false;
        v->bytes += (size_t)n;
    }
    free(buf);
    v->finished++;
    note();
    return 0;
}

typedef struct writer {
    cio_stream *s;
    cio_transport *t;
    bool stop;
    size_t written;
    long drains;
    size_t max_buffered;
} writer;

enum { CHUNK = 16384, HIGH = 65536 };

static int write_until_stopped(void *arg)
{
    writer *w = arg;
    char *buf = malloc(CHUNK);
    while (!w->stop) {
        fill(buf, CHUNK, w->written);
        CHECK_ERR(cio_stream_write(w->s, buf, CHUNK), 0);
        w->written += CHUNK;
        size_t b = cio_transport_get_write_buffer_size(w->t);
        if (b > w->max_buffered)
            w->max_buffered = b;
        CHECK_ERR(cio_stream_drain(w->s), 0);
        w->drains++;
    }
    free(buf);
    CHECK_ERR(cio_stream_write_eof(w->s), 0);
    return 0;
}

static int never_reads_main(void *arg)
{
    (void)arg;
    server *v = server_new();
    start_tcp(v, "127.0.0.1", slow_sink, NULL);
    writer w = {0};
    w.s = connect_to(v, NULL);
    w.t = stream_transport(w.s);
    cio_task *wt;
    CHECK_ERR(cio_create_task(write_until_stopped, &w, &wt), 0);
    /* Wait until the writer is stuck in drain: no progress for 0.2 s. */
    size_t last = (size_t)-1;
    double since = mono();
    for (;;) {
        CHECK_ERR(cio_sleep(0.02), 0);
        if (w.written != last) {
            last = w.written;
            since = mono();
        } else if (mono() - since > 0.2) {
            break;
        }
        CHECK(w.written < (1024u << 20));
    }
    CHECK(!cio_future_done(wt));
    /* Drain really waits: the buffer sits above the high-water mark and
     * never got more than one chunk past it. */
    size_t held = cio_transport_get_write_buffer_size(w.t);
    CHECK(held > HIGH / 4); /* above the low-water mark: still paused */
    CHECK(held <= HIGH + CHUNK);
    CHECK(w.max_buffered <= HIGH + CHUNK);
    long drains = w.drains;
    CHECK_ERR(cio_sleep(0.1), 0);
    CHECK_EQ(w.drains, drains);
    CHECK_EQ(cio_transport_get_write_buffer_size(w.t), held);
    /* The peer starts reading: the writer moves again, every byte
     * arrives in order. */
    size_t stuck_at = w.written;
    CHECK_ERR(cio_event_set(&v->go), 0);
    while (w.written < stuck_at + (4u << 20))
        CHECK_ERR(cio_sleep(0.01), 0);
    w.stop = true;
    CHECK_ERR(cio_await(wt, NULL), 0);
    cio_future_unref(wt);
    AWAIT(v->finished == 1);
    CHECK_EQ(v->bytes, w.written);
    CHECK(v->pattern_good);
    CHECK(w.max_buffered <= HIGH + CHUNK);
    char b;
    CHECK_EQ(cio_stream_read(w.s, &b, 1), 0); /* the handler closed */
    cio_stream_free(w.s);
    server_done(v);
    return 0;
}

TEST_T(stream_peer_never_reads_drain_blocks_with_bounded_memory, 30)
{
    run_main(never_reads_main, NULL);
}

/* Handler: a peer that says nothing meets a timeout scope. */
static int impatient(cio_stream *s, void *arg)
{
    server *v = arg;
    v->started++;
    note();
    double t0 = mono();
    cio_timeout_scope scope;
    CHECK_ERR(cio_timeout(&scope, 0.2), 0);
    const char *line;
    v->last_read = cio_stream_readline(s, &line);
    v->timeout_end = cio_timeout_end(&scope);
    v->elapsed = mono() - t0;
    v->finished++;
    note();
    return 0;
}

static int silent_main(void *arg)
{
    (void)arg;
    server *v = server_new();
    start_tcp(v, "127.0.0.1", impatient, NULL);
    cio_stream *s = connect_to(v, NULL); /* and say nothing */
    AWAIT(v->finished == 1);
    CHECK_ERR(v->last_read, -ETIMEDOUT);
    CHECK_ERR(v->timeout_end, -ETIMEDOUT);
    CHECK(v->elapsed >= 0.19);
    /* The handler returned, so its stream closed: we see EOF. */
    char b;
    CHECK_EQ(cio_stream_read(s, &b, 1), 0);
    cio_stream_free(s);
    server_done(v);
    return 0;
}

TEST(stream_peer_says_nothing_a_timeout_scope_ends_it)
{
    run_main(silent_main, NULL);
}

/* Handler: writes until drain fails. */
static int write_until_error(cio_stream *s, void *arg)
{
    server *v = arg;
    v->started++;
    note();
    char *buf = malloc(1u << 20);
    fill(buf, 1u << 20, 0);
    int r = 0;
    for (int i = 0; i < 4096 && !r; i++) {
        r = cio_stream_write(s, buf, 1u << 20);
        if (!r) {
            v->bytes += 1u << 20;
            note();
            r = cio_stream_drain(s);
        }
    }
    v->drain_error = r;
    /* Writing on has the same answer, and wait_closed tells it too. */
    v->last_status = cio_stream_write(s, "x", 1);
    v->closed_status = cio_stream_wait_closed(s);
    free(buf);
    v->finished++;
    note();
    return 0;
}

static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(fd);
}

static bool is_reset(int e) { return e == -ECONNRESET || e == -EPIPE; }

static int reset_main(void *arg)
{
    (void)arg;
    server *v = server_new();
    start_tcp(v, "127.0.0.1", write_until_error, NULL);
    int fd = raw_connect(atoi(v->port));
    AWAIT(v->bytes > 0);
    CHECK_ERR(cio_sleep(0.05), 0); /* the handler waits in drain */
    CHECK_EQ(v->finished, 0);
    reset_close(fd); /* mid-write */
    AWAIT(v->finished == 1);
    if (!is_reset(v->drain_error))
        test_fail(__FILE__, __LINE__, "drain returned %d (%s)", v->drain_error,
                  cio_strerror(v->drain_error));
    CHECK(v->last_status < 0);
    CHECK(is_reset(v->closed_status));
    server_done(v);
    return 0;
}

/* SIGPIPE is at its default in tests: raising it would kill this one. */
TEST(stream_peer_resets_mid_write_drain_returns_the_error)
{
    run_main(reset_main, NULL);
}

/* Handler: reads the request to EOF, then answers. */
static int answer_after_eof(cio_stream *s, void *arg)
{
    server *v = arg;
    v->started++;
    note();
    char *req = NULL;
    v->got_len = cio_stream_read_all(s, &req);
    v->got = req;
    CHECK(cio_stream_at_eof(s));
    CHECK(!cio_stream_is_closing(s));
    static const char a[] = "answer:";
    CHECK_ERR(cio_stream_write(s, a, sizeof a - 1), 0);
    CHECK_ERR(cio_stream_write(s, req, (size_t)v->got_len), 0);
    CHECK_ERR(cio_stream_drain(s), 0);
    v->finished++;
    note();
    return 0;
}

static int half_close_main(void *arg)
{
    (void)arg;
    server *v = server_new();
    start_tcp(v, "127.0.0.1", answer_after_eof, NULL);
    cio_stream *s = connect_to(v, NULL);
    CHECK(cio_stream_can_write_eof(s));
    CHECK_ERR(cio_stream_write(s, "question", 8), 0);
    CHECK_ERR(cio_stream_write_eof(s), 0); /* the half-close */
    CHECK_ERR(cio_stream_write(s, "more", 4), -EPIPE);
    char *all = NULL;
    CHECK_EQ(cio_stream_read_all(s, &all), 15);
    CHECK_STR(all, "answer:question");
    cio_free(all);
    AWAIT(v->finished == 1);
    CHECK_EQ(v->got_len, 8);
    CHECK(memcmp(v->got, "question", 8) == 0);
    cio_stream_free(s);
    server_done(v);
    return 0;
}

TEST(stream_peer_half_closes_and_reads_the_answer)
{
    run_main(half_close_main, NULL);
}

/* ----------------------------------------------------------------- writer */

static int writer_main(void *arg)
{
    (void)arg;
    server *v = server_new();
    start_tcp(v, "127.0.0.1", chunk_echo, NULL);
    cio_stream *s = connect_to(v, NULL);
    struct iovec iov[3] = {{"one ", 4}, {"two ", 4}, {"three\n", 6}};
    CHECK_ERR(cio_stream_writelines(s, iov, 3), 0);
    CHECK_ERR(cio_stream_drain(s), 0);
    const char *line;
    CHECK_EQ(cio_stream_readline(s, &line), 14);
    CHECK(memcmp(line, "one two three\n", 14) == 0);
    struct sockaddr_storage pn, sn;
    socklen_t pl = sizeof pn, sl = sizeof sn;
    CHECK_ERR(cio_stream_get_extra_info(s, "peername", &pn, &pl), 0);
    CHECK_ERR(cio_stream_get_extra_info(s, "sockname", &sn, &sl), 0);
    CHECK_EQ(pn.ss_family, AF_INET);
    CHECK_EQ(ntohs(((struct sockaddr_in *)&pn)->sin_port), atoi(v->port));
    CHECK_ERR(cio_stream_get_extra_info(s, "nonsense", &pn, &pl), -ENOENT);
    CHECK(cio_stream_can_write_eof(s));
    CHECK(!cio_stream_is_closing(s));
    cio_stream_close(s);
    CHECK(cio_stream_is_closing(s));
    CHECK_ERR(cio_stream_write(s, "late", 4), -EPIPE);
    CHECK_ERR(cio_stream_wait_closed(s), 0);
    CHECK(cio_stream_is_closing(s));
    CHECK(cio_stream_write(s, "late", 4) < 0);
    CHECK_ERR(cio_stream_get_extra_info(s, "peername", &pn, &pl), -ENOTCONN);
    CHECK(cio_stream_drain(s) < 0); /* the connection is gone */
    cio_stream_free(s);
    AWAIT(v->finished == 1);
    server_done(v);
    return 0;
}

TEST(stream_writer_writelines_close_wait_closed_extra_info)
{
    run_main(writer_main, NULL);
}

static int two_readers_task(void *arg)
{
    char b;
    return (int)cio_stream_read(arg, &b, 1);
}

static int busy_main(void *arg)
{
    (void)arg;
    server *v = server_new();
    start_tcp(v, "127.0.0.1", chunk_echo, NULL);
    cio_stream *s = connect_to(v, NULL);
    cio_task *first;
    CHECK_ERR(cio_create_task(two_readers_task, s, &first), 0);
    CHECK_ERR(cio_sleep(0.01), 0);
    char b;
    /* asyncio: RuntimeError, another coroutine is already waiting. */
    CHECK_ERR(cio_stream_read(s, &b, 1), -EBUSY);
    CHECK_ERR(cio_stream_write(s, "!", 1), 0);
    CHECK_EQ(cio_await(first, NULL), 1);
    cio_future_unref(first);
    cio_stream_free(s);
    AWAIT(v->finished == 1);
    server_done(v);
    return 0;
}

TEST(stream_a_second_reader_is_refused) { run_main(busy_main, NULL); }

/* ----------------------------------------------------------- Unix sockets */

static int unix_main(void *arg)
{
    (void)arg;
    char dir[] = "/tmp/cio-stream-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof path, "%s/echo.sock", dir);
    int stale = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    CHECK(bind(stale, (struct sockaddr *)&sun, sizeof sun) == 0);
    close(stale); /* leaves a stale socket file behind */
    server *v = server_new();
    CHECK_ERR(cio_start_unix_server(line_echo, v, path, NULL, NULL, &v->s), 0);
    for (int i = 0; i < 3; i++) {
        cio_stream *s = NULL;
        CHECK_ERR(cio_open_unix_connection(path, NULL, &s), 0);
        struct sockaddr_storage pn;
        socklen_t pl = sizeof pn;
        CHECK_ERR(cio_stream_get_extra_info(s, "peername", &pn, &pl), 0);
        CHECK_EQ(pn.ss_family, AF_UNIX);
        echo_lines_over(s);
    }
    AWAIT(v->finished == 3);
    CHECK_EQ(v->lines, 12);
    server_done(v);
    struct stat st;
    CHECK(stat(path, &st) != 0); /* the server removed its socket */
    cio_stream *s = (cio_stream *)1;
    CHECK_ERR(cio_open_unix_connection(path, NULL, &s), -ENOENT);
    CHECK(s == NULL);
    CHECK(rmdir(dir) == 0);
    return 0;
}

TEST(stream_over_unix_sockets) { run_main(unix_main, NULL); }

/* Handler that must never run: its task is cancelled before it starts. */
static int never_started(cio_stream *s, void *arg)
{
    (void)s;
    server *v = arg;
    v->started++;
    note();
    return 0;
}

static int unstarted_main(void *arg)
{
    (void)arg;
    server *v = server_new();
    start_tcp(v, "127.0.0.1", never_started, NULL);
    int fd = raw_connect(atoi(v->port));
    /* Catch the connection's task after it was made, before it ran. */
    cio_task *handler = NULL;
    while (!handler) {
        cio_task *all[4];
        int n = cio_all_tasks(NULL, all, 4);
        CHECK(n <= 2);
        for (int i = 0; i < n; i++)
            if (all[i] != cio_current_task())
                handler = all[i];
        if (v->started)
            test_skip("the handler started before it could be cancelled");
        if (!handler)
            CHECK_ERR(cio_sleep(0), 0);
    }
    CHECK_EQ(cio_task_cancel(handler), 1);
    /* asyncio closes the connection when its handler task is cancelled
     * (start_server's done-callback): the peer sees EOF. */
    cio_timeout_scope scope;
    CHECK_ERR(cio_timeout(&scope, 2.0), 0);
    char b;
    ssize_t r = cio_sock_recv(fd, &b, 1);
    int end = cio_timeout_end(&scope);
    if (end == -ETIMEDOUT)
        test_fail(__FILE__, __LINE__,
                  "the connection of a cancelled handler stays open");
    CHECK(r == 0 || r == -ECONNRESET);
    CHECK_EQ(v->started, 0); /* cancelled before it ran: never runs */
    close(fd);
    server_done(v);
    return 0;
}

TEST(stream_connection_whose_handler_is_cancelled_before_it_runs_closes)
{
    run_main(unstarted_main, NULL);
}

/* ------------------------------------------------ a thousand connections */

typedef struct crowd {
    server *v;
    int ok;
} crowd;

typedef struct member {
    crowd *c;
    int id;
} member;

static int crowd_client(void *arg)
{
    member *m = arg;
    cio_stream *s = NULL;
    CHECK_ERR(cio_open_connection("127.0.0.1", m->c->v->port, NULL, &s), 0);
    /* A few hundred bytes that name this client, in lines. */
    char out[1024];
    size_t len = 0;
    for (int line = 0; line < 8; line++)
        len += (size_t)snprintf(out + len, sizeof out - len,
                                "client %d line %d %.*s\n", m->id, line,
                                (m->id + line) % 50, "abcdefghijklmnopqrstuvwxyz"
                                                      "ABCDEFGHIJKLMNOPQRSTUVWX");
    CHECK_ERR(cio_stream_write(s, out, len), 0);
    CHECK_ERR(cio_stream_drain(s), 0);
    char back[1024];
    CHECK_EQ(cio_stream_readexactly(s, back, len, NULL), len);
    CHECK(memcmp(back, out, len) == 0);
    CHECK_ERR(cio_stream_write_eof(s), 0);
    CHECK_EQ(cio_stream_read(s, back, 1), 0);
    cio_stream_free(s);
    m->c->ok++;
    return 0;
}

static int crowd_main(void *arg)
{
    int n = *(int *)arg;
    crowd c = {0};
    c.v = server_new();
    /* A backlog for every client: with asyncio's 100, a machine too busy
     * to accept quickly drops SYNs past it, and the kernel retries them
     * after 1, 3, 7, 15 s... - the test would then measure the machine. */
    cio_server_options so = {.backlog = n};
    CHECK_ERR(cio_start_server(line_echo, c.v, "127.0.0.1", "0", NULL, &so,
                               &c.v->s),
              0);
    snprintf(c.v->port, sizeof c.v->port, "%d", cio_server_port(c.v->s));
    member *ms = calloc((size_t)n, sizeof *ms);
    cio_task **ts = calloc((size_t)n, sizeof *ts);
    cio_result *rs = calloc((size_t)n, sizeof *rs);
    for (int i = 0; i < n; i++) {
        ms[i] = (member){&c, i};
        CHECK_ERR(cio_create_task(crowd_client, &ms[i], &ts[i]), 0);
    }
    CHECK_ERR(cio_gather(ts, (size_t)n, 1, rs), 0);
    for (int i = 0; i < n; i++) {
        CHECK_ERR(rs[i].status, 0);
        cio_future_unref(ts[i]);
    }
    CHECK_EQ(c.ok, n);
    AWAIT(c.v->finished == n);
    CHECK_EQ(c.v->started, n);
    CHECK_EQ(c.v->lines, 8 * n);
    free(ms);
    free(ts);
    free(rs);
    server_done(c.v);
    return 0;
}

TEST_T(stream_a_thousand_concurrent_clients_every_byte_echoed, 60)
{
    int n = (int)test_scaled(1000);
    /* Two fds a connection (both ends live here), and some room. */
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rlim_t need = (rlim_t)(2 * n + 64);
    if (rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
            test_skip("RLIMIT_NOFILE's hard limit is below 2 fds a client");
        rl.rlim_cur = need;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    run_main(crowd_main, &n);
}

/* ------------------------------------------------------ failure injection */

/* One run of "start a server, open a connection, echo a few lines, close
 * all" with a failure injected. The state lives outside the loop, so an
 * early return leaves nothing dangling when cio_run closes it. */
typedef struct fault_run {
    server v;
    cio_stream *c;
} fault_run;

static const char *const fault_lines[] = {"alpha\n", "beta\n", "gamma\n"};

static int fault_body(fault_run *fr)
{
    int r = cio_start_server(line_echo, &fr->v, "127.0.0.1", "0", NULL, NULL,
                             &fr->v.s);
    if (r)
        return r;
    snprintf(fr->v.port, sizeof fr->v.port, "%d", cio_server_port(fr->v.s));
    r = cio_open_connection("127.0.0.1", fr->v.port, NULL, &fr->c);
    if (r)
        return r;
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(fault_lines[i]);
        if ((r = cio_stream_write(fr->c, fault_lines[i], len)) ||
            (r = cio_stream_drain(fr->c)))
            return r;
        const char *line;
        ssize_t n = cio_stream_readline(fr->c, &line);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -ECONNRESET; /* the server's side failed */
        CHECK_EQ(n, len); /* never garbled */
        CHECK(memcmp(line, fault_lines[i], len) == 0);
    }
    cio_stream_close(fr->c);
    return cio_stream_wait_closed(fr->c);
}

static int fault_main(void *arg)
{
    fault_run *fr = arg;
    cio_event_init(&changed);
    watch_reports(false);
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
    int scoped = cio_timeout(&scope, 5.0) == 0;
    cio_stream_free(fr->c); /* closes; freed at connection_lost */
    fr->c = NULL;
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
        /* Handlers that ran have finished (tasks that could not start
         * were reported). */
        CHECK_EQ(fr->v.finished, fr->v.started);
        cio_server_free(fr->v.s);
        fr->v.s = NULL;
    }
    if (scoped)
        CHECK_ERR(cio_timeout_end(&scope), 0);
    return r;
}

static int fault_scenario(void *arg)
{
    (void)arg;
    fault_run fr;
    memset(&fr, 0, sizeof fr);
    int r = cio_run(fault_main, &fr);
    return r > 0 ? 0 : r;
}

TEST_T(stream_allocation_failures_fail_cleanly, 120)
{
    CHECK(test_fault_loop(CIO__FAULT_ALLOC, 0, fault_scenario, NULL) > 10);
}

TEST_T(stream_enomem_system_call_failures_fail_cleanly, 120)
{
    CHECK(test_fault_loop(CIO__FAULT_SYS, ENOMEM, fault_scenario, NULL) > 10);
}

TEST_T(stream_emfile_system_call_failures_fail_cleanly, 120)
{
    CHECK(test_fault_loop(CIO__FAULT_SYS, EMFILE, fault_scenario, NULL) > 10);
}

/* ---------------------------------------------------------- bad arguments */

/* The calls that wait, made from a callback (no task): CIO_ENOTASK. */
typedef struct outside {
    cio_stream *s;
    int read, drain, wait_closed, start_tls;
    bool ran;
} outside;

static void stream_calls_outside_a_task(void *arg)
{
    outside *o = arg;
    char b;
    cio_tls_options tls = {.ctx = (struct ssl_ctx_st *)1};
    o->read = (int)cio_stream_read(o->s, &b, 1);
    o->drain = cio_stream_drain(o->s);
    o->wait_closed = cio_stream_wait_closed(o->s);
    o->start_tls = cio_stream_start_tls(o->s, &tls, 0);
    o->ran = true;
}

/* NULL streams and outputs are -EINVAL (0 for the questions, no-ops for
 * close, abort and free); a stream's waiting calls need a task; reading
 * calls with nothing to read into say so; and none of it hurts the
 * connection, which echoes afterwards as before. */
static int stream_bad_arguments_main(void *arg)
{
    (void)arg;
    char b[8];
    const char *line;
    char *all = (char *)1;
    size_t partial = 9;
    socklen_t bl = sizeof b;
    struct iovec one = {b, 1};
    const char *nl[] = {"\n"}, *empty_sep[] = {""}, *null_sep[] = {NULL};
    CHECK_ERR(cio_stream_read(NULL, b, 1), -EINVAL);
    CHECK_ERR(cio_stream_read_all(NULL, &all), -EINVAL);
    CHECK(all == NULL);
    CHECK_ERR(cio_stream_readline(NULL, &line), -EINVAL);
    CHECK_ERR(cio_stream_readexactly(NULL, b, 1, &partial), -EINVAL);
    CHECK_EQ(partial, 0);
    CHECK_ERR(cio_stream_readuntil(NULL, nl, 1, &line), -EINVAL);
    CHECK_ERR(cio_stream_write(NULL, "x", 1), -EINVAL);
    CHECK_ERR(cio_stream_writelines(NULL, &one, 1), -EINVAL);
    CHECK_ERR(cio_stream_drain(NULL), -EINVAL);
    size_t sent = 9;
    CHECK_ERR(cio_stream_sendfile(NULL, 0, 0, 1, 0, &sent), -EINVAL);
    CHECK_EQ(sent, 0);
    CHECK_ERR(cio_stream_set_write_buffer_max(NULL, 1), -EINVAL);
    CHECK_ERR(cio_stream_write_eof(NULL), -EINVAL);
    CHECK_ERR(cio_stream_wait_closed(NULL), -EINVAL);
    CHECK_ERR(cio_stream_get_extra_info(NULL, "socket", b, &bl), -EINVAL);
    CHECK_ERR(cio_stream_start_tls(NULL, NULL, 0), -EINVAL);
    CHECK_EQ(cio_stream_consumed(NULL), 0);
    CHECK_EQ(cio_stream_at_eof(NULL), 0);
    CHECK_EQ(cio_stream_buffered(NULL), 0);
    CHECK_EQ(cio_stream_get_write_buffer_size(NULL), 0);
    CHECK_EQ(cio_stream_can_write_eof(NULL), 0);
    CHECK_EQ(cio_stream_is_closing(NULL), 0);
    cio_stream_close(NULL);
    cio_stream_abort(NULL);
    cio_stream_free(NULL);
    cio_server *srv = (cio_server *)1;
    CHECK_ERR(cio_start_server(line_echo, NULL, "127.0.0.1", "0", NULL, NULL,
                               NULL),
              -EINVAL);
    CHECK_ERR(cio_start_server(NULL, NULL, "127.0.0.1", "0", NULL, NULL, &srv),
              -EINVAL);
    CHECK(srv == NULL);
    CHECK_ERR(cio_open_connection("127.0.0.1", "1", NULL, NULL), -EINVAL);
    CHECK_ERR(cio_open_unix_connection("/nonexistent", NULL, NULL), -EINVAL);

    server *v = server_new();
    start_tcp(v, "127.0.0.1", line_echo, NULL);
    cio_stream *s = connect_to(v, NULL);
    CHECK_ERR(cio_stream_read_all(s, NULL), -EINVAL);
    CHECK_ERR(cio_stream_readuntil(s, NULL, 1, &line), -EINVAL);
    CHECK_ERR(cio_stream_readuntil(s, nl, 0, &line), -EINVAL);
    CHECK_ERR(cio_stream_readuntil(s, empty_sep, 1, &line), -EINVAL);
    CHECK_ERR(cio_stream_readuntil(s, null_sep, 1, &line), -EINVAL);
    CHECK_ERR(cio_stream_readuntil(s, nl, 1, NULL), -EINVAL);
    CHECK_ERR(cio_stream_start_tls(s, NULL, 0), -EINVAL);
    outside o = {.s = s};
    CHECK_ERR(cio_call_soon(cio_get_running_loop(),
                            stream_calls_outside_a_task, &o, NULL),
              0);
    while (!o.ran)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(o.read, CIO_ENOTASK);
    CHECK_ERR(o.drain, CIO_ENOTASK);
    CHECK_ERR(o.wait_closed, CIO_ENOTASK);
    CHECK_ERR(o.start_tls, CIO_ENOTASK);
    CHECK_ERR(cio_stream_write(s, "still here\n", 11), 0);
    CHECK_EQ(cio_stream_readline(s, &line), 11);
    CHECK(memcmp(line, "still here\n", 11) == 0);
    cio_stream_close(s);
    CHECK_ERR(cio_stream_wait_closed(s), 0);
    cio_stream_free(s);
    AWAIT(v->finished == 1);
    server_done(v);
    return 0;
}

TEST(stream_bad_arguments_and_calls_outside_a_task)
{
    run_main(stream_bad_arguments_main, NULL);
    /* No loop at all: connecting and serving need a task. */
    cio_stream *s = (cio_stream *)1;
    CHECK_ERR(cio_open_connection("127.0.0.1", "1", NULL, &s), CIO_ENOTASK);
    CHECK(s == NULL);
    s = (cio_stream *)1;
    CHECK_ERR(cio_open_unix_connection("/nonexistent", NULL, &s), CIO_ENOTASK);
    CHECK(s == NULL);
    cio_server *srv;
    CHECK_ERR(cio_start_server(line_echo, NULL, "127.0.0.1", "0", NULL, NULL,
                               &srv),
              CIO_ENOTASK);
}
