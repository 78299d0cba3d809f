/* sendfile (issue 14): cio_sock_sendfile, cio_sendfile over a transport
 * and cio_stream_sendfile, over real TCP on loopback, from regular files
 * (sparse ones past 4 GiB included), pipes and /proc files (which
 * sendfile(2) refuses), with the peer reading, not reading, or going away.
 *
 * The harness leaves SIGPIPE at its default, so a sendfile that raised it
 * would kill the test. Every test name contains "sendfile" (`make check
 * T=sendfile`); helpers are in net_util.h. */
#define _GNU_SOURCE
#define _FILE_OFFSET_BITS 64
#include "net_util.h"

#include <signal.h>
#include <sys/ioctl.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((int64_t)1 << 30)

/* ------------------------------------------------------------- helpers */

/* A file in /tmp, unlinked at once (it goes with its fd), of n bytes
 * whose byte at offset i is pat(base + i). */
static int data_file(size_t n, size_t base)
{
    char path[] = "/tmp/cio-sendfile-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(unlink(path) == 0);
    char *buf = malloc(MiB);
    CHECK(buf != NULL);
    for (size_t off = 0; off < n;) {
        size_t k = n - off < MiB ? n - off : MiB;
        fill(buf, k, base + off);
        CHECK_EQ(pwrite(fd, buf, k, (off_t)off), k);
        off += k;
    }
    free(buf);
    return fd;
}

/* Windows of pattern in a sparse file: byte p of a window is pat(p). */
typedef struct window {
    int64_t at;
    size_t len;
} window;

/* A sparse file of size bytes (zeros, costing no disk) with the windows
 * written in. */
static int sparse_file(int64_t size, const window *w, int nw)
{
    int fd = data_file(0, 0);
    CHECK(ftruncate(fd, (off_t)size) == 0);
    for (int i = 0; i < nw; i++) {
        char *buf = malloc(w[i].len);
        CHECK(buf != NULL);
        fill(buf, w[i].len, (size_t)w[i].at);
        CHECK_EQ(pwrite(fd, buf, w[i].len, (off_t)w[i].at), w[i].len);
        free(buf);
    }
    return fd;
}

/* A connected TCP pair on loopback, from a task: a sends, b reads. */
typedef struct pair {
    int a, b;
} pair;

static pair tcp_pair(void)
{
    int port;
    int l = raw_listener(AF_INET, &port);
    int a = raw_connect(AF_INET, port);
    int b = cio_sock_accept(l, NULL, NULL);
    CHECK(b >= 0);
    close(l);
    return (pair){a, b};
}

static size_t unread(int fd)
{
    int n = 0;
    CHECK(ioctl(fd, FIONREAD, &n) == 0);
    return (size_t)n;
}

/* The reading side, as a task: reads fd to EOF (or until stop_after
 * bytes, then closes fd), keeping the bytes (keep) or checking them
 * against a sparse file's content as they pass (from file offset base). */
typedef struct reader {
    int fd;
    bool keep;
    size_t stop_after;  /* 0: read to EOF */
    int64_t base;       /* file offset of the first byte, for windows */
    const window *w;    /* expected pattern windows; zeros elsewhere */
    int nw;
    char *data;         /* keep: what came */
    size_t len, cap;
    size_t total;
    int error;          /* of the last recv, if it failed */
    cio_task *task;
} reader;

/* The expected bytes of a window that overlap buf, at stream position
 * pos, compared; a byte outside every window (the chunk's first) must be
 * 0. */
static void check_windows(const reader *r, const char *buf, size_t n,
                          size_t pos)
{
    int64_t lo = r->base + (int64_t)pos, hi = lo + (int64_t)n;
    bool first_in_window = false;
    for (int i = 0; i < r->nw; i++) {
        int64_t a = r->w[i].at, b = a + (int64_t)r->w[i].len;
        first_in_window |= lo >= a && lo < b;
        int64_t from = a > lo ? a : lo, to = b < hi ? b : hi;
        if (from < to)
            CHECK(pattern_ok(buf + (from - lo), (size_t)(to - from),
                             (size_t)from));
    }
    if (!first_in_window)
        CHECK_EQ(buf[0], 0);
}

static void reader_keep(reader *r, const char *buf, size_t n)
{
    if (r->len + n > r->cap) {
        r->cap = (r->len + n) * 2;
        r->data = realloc(r->data, r->cap);
        CHECK(r->data != NULL);
    }
    memcpy(r->data + r->len, buf, n);
    r->len += n;
}

static int reader_task(void *arg)
{
    reader *r = arg;
    size_t size = 256 * KiB;
    char *buf = malloc(size);
    CHECK(buf != NULL);
    for (;;) {
        size_t want = size;
        if (r->stop_after && r->stop_after - r->total < want)
            want = r->stop_after - r->total;
        ssize_t n = cio_sock_recv(r->fd, buf, want);
        if (n <= 0) {
            r->error = n < 0 ? (int)n : 0;
            break;
        }
        if (r->keep)
            reader_keep(r, buf, (size_t)n);
        if (r->w)
            check_windows(r, buf, (size_t)n, r->total);
        r->total += (size_t)n;
        if (r->stop_after && r->total == r->stop_after)
            break;
    }
    if (r->stop_after) { /* the peer that goes away: unread bytes: RST */
        close(r->fd);
        r->fd = -1;
    }
    free(buf);
    return 0;
}

static void reader_start(reader *r)
{
    CHECK_ERR(cio_create_task(reader_task, r, &r->task), 0);
}

static void reader_join(reader *r)
{
    CHECK_ERR(cio_await(r->task, NULL), 0);
    cio_future_unref(r->task);
    r->task = NULL;
}

/* An errno the next sock_send_collect's first sendfile(2) fails with, as
 * it does for a file it cannot take; 0: none. */
static int refuse_next;

/* Sends [offset, offset + count) of f over a fresh pair, closes the
 * sender's end and collects what arrived into *r (r->data: the caller
 * frees it). Returns cio_sock_sendfile's result. */
static int sock_send_collect(int f, int64_t offset, size_t count,
                             int fallback, size_t *sent, reader *r)
{
    pair p = tcp_pair();
    *r = (reader){.fd = p.b, .keep = true};
    reader_start(r);
    if (refuse_next) /* armed only now: connect's calls must not see it */
        cio__fault_arm_call(CIO__FAULT_SYS, 1, refuse_next, "sendfile");
    refuse_next = 0;
    int rc = cio_sock_sendfile(p.a, f, offset, count, fallback, sent);
    close(p.a);
    reader_join(r);
    CHECK_ERR(r->error, 0);
    close(p.b);
    return rc;
}

/* --------------------------------------------------- cio_sock_sendfile */

static int empty_main(void *arg)
{
    (void)arg;
    int f = data_file(0, 0);
    reader r;
    size_t sent = 99;
    CHECK_ERR(sock_send_collect(f, 0, 0, 1, &sent, &r), 0);
    CHECK_EQ(sent, 0);
    CHECK_EQ(r.len, 0);
    free(r.data);
    CHECK_ERR(sock_send_collect(f, 0, 100, 0, &sent, &r), 0); /* past EOF */
    CHECK_EQ(sent, 0);
    CHECK_EQ(r.len, 0);
    free(r.data);
    close(f);
    return 0;
}

TEST(net_sendfile_sock_empty_file_sends_nothing)
{
    run_main(empty_main, NULL);
}

static int small_main(void *arg)
{
    (void)arg;
    int f = data_file(10000, 0);
    reader r;
    size_t sent = 0;
    CHECK_ERR(sock_send_collect(f, 0, 0, 1, &sent, &r), 0); /* all of it */
    CHECK_EQ(sent, 10000);
    CHECK_EQ(r.len, 10000);
    CHECK(pattern_ok(r.data, r.len, 0));
    free(r.data);
    CHECK_ERR(sock_send_collect(f, 3000, 5000, 1, &sent, &r), 0); /* middle */
    CHECK_EQ(sent, 5000);
    CHECK_EQ(r.len, 5000);
    CHECK(pattern_ok(r.data, r.len, 3000));
    free(r.data);
    CHECK_EQ(lseek(f, 0, SEEK_CUR), 0); /* the file's position never moves */
    close(f);
    return 0;
}

TEST(net_sendfile_sock_whole_small_file_and_a_range_in_the_middle)
{
    run_main(small_main, NULL);
}

static int past_eof_main(void *arg)
{
    (void)arg;
    int f = data_file(10000, 0);
    reader r;
    size_t sent = 0;
    CHECK_ERR(sock_send_collect(f, 4000, MiB, 1, &sent, &r), 0);
    CHECK_EQ(sent, 6000); /* as asyncio: what there was */
    CHECK_EQ(r.len, 6000);
    CHECK(pattern_ok(r.data, r.len, 4000));
    free(r.data);
    CHECK_ERR(sock_send_collect(f, 20000, 10, 1, &sent, &r), 0); /* beyond */
    CHECK_EQ(sent, 0);
    free(r.data);
    close(f);
    return 0;
}

TEST(net_sendfile_sock_count_past_eof_stops_at_eof)
{
    run_main(past_eof_main, NULL);
}

static int large_main(void *arg)
{
    (void)arg;
    size_t n = 8 * MiB; /* far more than the socket buffers: it waits */
    int f = data_file(n, 0);
    reader r;
    size_t sent = 0;
    CHECK_ERR(sock_send_collect(f, 0, 0, 1, &sent, &r), 0);
    CHECK_EQ(sent, n);
    CHECK_EQ(r.len, n);
    CHECK(pattern_ok(r.data, r.len, 0));
    free(r.data);
    close(f);
    return 0;
}

TEST(net_sendfile_sock_large_file_resumes_after_partial_sends)
{
    run_main(large_main, NULL);
}

static int beyond_4g_main(void *arg)
{
    (void)arg;
    int64_t size = 5 * GiB + 4096;
    window w[] = {{((int64_t)1 << 32) + 12345, 64 * KiB},
                  {size - 1000, 1000}};
    int f = sparse_file(size, w, 2);
    reader r;
    size_t sent = 0;
    CHECK_ERR(sock_send_collect(f, w[0].at, w[0].len, 1, &sent, &r), 0);
    CHECK_EQ(sent, w[0].len);
    CHECK_EQ(r.len, w[0].len);
    CHECK(pattern_ok(r.data, r.len, (size_t)w[0].at));
    free(r.data);
    /* The last bytes of a file over 4 GiB, asking for more than there is. */
    CHECK_ERR(sock_send_collect(f, w[1].at, MiB, 0, &sent, &r), 0);
    CHECK_EQ(sent, 1000);
    CHECK_EQ(r.len, 1000);
    CHECK(pattern_ok(r.data, r.len, (size_t)w[1].at));
    free(r.data);
    close(f);
    return 0;
}

TEST_T(net_sendfile_sock_sparse_file_over_4gib_from_an_offset_past_2_32, 30)
{
    run_main(beyond_4g_main, NULL);
}

static int across_4g_main(void *arg)
{
    (void)arg;
    int64_t edge = (int64_t)1 << 32, from = edge - 32 * (int64_t)MiB;
    int64_t size = edge + 32 * (int64_t)MiB; /* 64 MiB from `from` to EOF */
    window w[] = {{from, 64 * KiB}, {edge - 32 * KiB, 64 * KiB},
                  {size - 64 * KiB, 64 * KiB}};
    int f = sparse_file(size, w, 3);
    pair p = tcp_pair();
    reader r = {.fd = p.b, .base = from, .w = w, .nw = 3};
    reader_start(&r);
    size_t sent = 0;
    CHECK_ERR(cio_sock_sendfile(p.a, f, from, 0, 1, &sent), 0);
    CHECK_EQ(sent, 64 * MiB);
    close(p.a);
    reader_join(&r);
    CHECK_ERR(r.error, 0);
    CHECK_EQ(r.total, 64 * MiB);
    close(p.b);
    close(f);
    return 0;
}

TEST_T(net_sendfile_sock_64mib_across_the_4gib_boundary, 60)
{
    run_main(across_4g_main, NULL);
}

/* The peer reads 1 MiB of 32 and goes away (a reset: it left bytes
 * unread). native: sendfile(2); else the copying path, forced by making
 * the first sendfile(2) fail as one on an unsupported file does. */
static int peer_gone_main(void *arg)
{
    bool native = *(bool *)arg;
    size_t n = 32 * MiB;
    int f = sparse_file((int64_t)n, NULL, 0);
    pair p = tcp_pair();
    reader r = {.fd = p.b, .stop_after = MiB};
    reader_start(&r);
    if (!native)
        cio__fault_arm_call(CIO__FAULT_SYS, 1, EINVAL, "sendfile");
    size_t sent = 0;
    int rc = cio_sock_sendfile(p.a, f, 0, 0, 1, &sent);
    CHECK(rc == -ECONNRESET || rc == -EPIPE);
    CHECK(native || cio__fault_fired());
    CHECK(sent >= MiB && sent < n); /* at least what the peer read */
    reader_join(&r);
    close(p.a);
    close(f);
    return 0;
}

TEST(net_sendfile_sock_peer_closes_midway_native)
{
    bool native = true;
    run_main(peer_gone_main, &native);
}

TEST(net_sendfile_sock_peer_closes_midway_copying)
{
    bool native = false;
    run_main(peer_gone_main, &native);
}

/* sendfile(2) on a socket that cannot send any more raises SIGPIPE in
 * the kernel (it has no MSG_NOSIGNAL); cio's caller sees -EPIPE only. */
static int epipe_main(void *arg)
{
    (void)arg;
    int f = data_file(1000, 0);
    pair p = tcp_pair();
    CHECK(shutdown(p.a, SHUT_WR) == 0);
    size_t sent = 99;
    CHECK_ERR(cio_sock_sendfile(p.a, f, 0, 0, 1, &sent), -EPIPE);
    CHECK_EQ(sent, 0);
    close(p.a);
    close(p.b);
    close(f);
    return 0;
}

TEST(net_sendfile_sock_epipe_never_raises_sigpipe)
{
    run_main(epipe_main, NULL);
}

/* The guard is skipped only where SIGPIPE is ignored (a server's usual
 * choice): -EPIPE all the same. A program's own handler is never run by
 * a sendfile of cio's: the guard takes the signal the call raised. */
static volatile sig_atomic_t pipe_handled;
static void on_pipe(int sig) { (void)sig; pipe_handled++; }

static void epipe_with(void (*disposition)(int))
{
    struct sigaction sa = {.sa_handler = disposition}, old;
    CHECK(sigaction(SIGPIPE, &sa, &old) == 0);
    run_main(epipe_main, NULL);
    CHECK(sigaction(SIGPIPE, &old, NULL) == 0);
}

TEST(net_sendfile_epipe_when_sigpipe_is_ignored_or_handled)
{
    epipe_with(SIG_IGN);
    epipe_with(on_pipe);
    CHECK_EQ(pipe_handled, 0);
}

/* A pipe as the source: sendfile(2) refuses it (ESPIPE), so it is read
 * and sent, in order, waiting for the writer. Its read end stays
 * blocking: the loop must never block on it. The writer is a write-pipe
 * transport flushing 1 MiB as the pipe drains, on the same loop. */
static int pipe_source_main(void *arg)
{
    (void)arg;
    int fds[2];
    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    size_t n = MiB, sent = 99;
    pair p = tcp_pair();
    CHECK_ERR(cio_sock_sendfile(p.a, fds[0], 5, 0, 1, &sent), -ESPIPE);
    CHECK_EQ(sent, 0);
    CHECK_ERR(cio_sock_sendfile(p.a, fds[0], 0, 0, 0, &sent), -ENOTSUP);
    CHECK_EQ(sent, 0);
    peer w = {0};
    cio_transport *tw;
    CHECK_ERR(cio_connect_write_pipe(NULL, fds[1], &rec_proto, &w, &tw), 0);
    char *buf = malloc(n);
    CHECK(buf != NULL);
    fill(buf, n, 0);
    CHECK_ERR(cio_transport_write(tw, buf, n), 0);
    free(buf);
    cio_transport_close(tw); /* after the flush: EOF for the reader */
    reader r = {.fd = p.b, .keep = true};
    reader_start(&r);
    CHECK_ERR(cio_sock_sendfile(p.a, fds[0], 0, 0, 1, &sent), 0);
    CHECK_EQ(sent, n);
    close(p.a);
    reader_join(&r);
    CHECK_EQ(r.len, n);
    CHECK(pattern_ok(r.data, r.len, 0));
    AWAIT(w.lost);
    free(r.data);
    peer_free(&w);
    close(p.b);
    close(fds[0]);
    return 0;
}

TEST(net_sendfile_sock_pipe_source_is_read_and_sent)
{
    run_main(pipe_source_main, NULL);
}

/* /proc/self/limits: a real file sendfile(2) refuses (EINVAL), which
 * pread reads; its content does not change within the test. */
static int proc_main(void *arg)
{
    (void)arg;
    int f = open("/proc/self/limits", O_RDONLY | O_CLOEXEC);
    CHECK(f >= 0);
    char want[16384];
    size_t wlen = read_fd_all(f, want, sizeof want);
    CHECK(wlen > 0 && wlen < sizeof want);
    reader r;
    size_t sent = 99;
    CHECK_ERR(sock_send_collect(f, 0, 0, 0, &sent, &r), -ENOTSUP);
    CHECK_EQ(sent, 0);
    CHECK_EQ(r.len, 0);
    free(r.data);
    CHECK_ERR(sock_send_collect(f, 0, 0, 1, &sent, &r), 0);
    CHECK_EQ(sent, wlen);
    CHECK_EQ(r.len, wlen);
    CHECK(memcmp(r.data, want, wlen) == 0);
    free(r.data);
    CHECK_ERR(sock_send_collect(f, 10, 20, 1, &sent, &r), 0); /* a range */
    CHECK_EQ(sent, 20);
    CHECK(memcmp(r.data, want + 10, 20) == 0);
    free(r.data);
    close(f);
    return 0;
}

TEST(net_sendfile_sock_proc_file_that_sendfile_refuses_is_copied)
{
    run_main(proc_main, NULL);
}

/* A regular file whose sendfile(2) says EINVAL (or ENOSYS) first: copied
 * in chunks (300 KiB: more than one), or -ENOTSUP with fallback 0. */
static int refused_main(void *arg)
{
    (void)arg;
    size_t n = 300 * KiB;
    int f = data_file(n, 0);
    int errs[] = {EINVAL, ENOSYS};
    for (int i = 0; i < 2; i++) {
        reader r;
        size_t sent = 0;
        refuse_next = errs[i];
        CHECK_ERR(sock_send_collect(f, 1, n - 1, 1, &sent, &r), 0);
        CHECK(cio__fault_fired());
        CHECK_EQ(sent, n - 1);
        CHECK_EQ(r.len, n - 1);
        CHECK(pattern_ok(r.data, r.len, 1));
        free(r.data);
        refuse_next = errs[i];
        CHECK_ERR(sock_send_collect(f, 0, 0, 0, &sent, &r), -ENOTSUP);
        CHECK(cio__fault_fired());
        CHECK_EQ(sent, 0);
        free(r.data);
    }
    close(f);
    return 0;
}

TEST(net_sendfile_sock_refused_file_is_copied_or_enotsup_without_fallback)
{
    run_main(refused_main, NULL);
}

/* Cancelled while the peer reads nothing: *sent is below the total and
 * is exactly what the peer then receives. */
typedef struct sender {
    int sock, file;
    cio_transport *t;
    size_t count;
    size_t sent;
    int rc;
    bool native;
    cio_task *task;
} sender;

static int sock_sender(void *arg)
{
    sender *s = arg;
    if (!s->native)
        cio__fault_arm_call(CIO__FAULT_SYS, 1, EINVAL, "sendfile");
    s->rc = s->t ? cio_sendfile(s->t, s->file, 0, s->count, 1, &s->sent)
                 : cio_sock_sendfile(s->sock, s->file, 0, s->count, 1,
                                     &s->sent);
    return 0;
}

static int cancel_main(void *arg)
{
    bool native = *(bool *)arg;
    size_t n = 64 * MiB;
    int f = sparse_file((int64_t)n, NULL, 0);
    pair p = tcp_pair();
    sender s = {.sock = p.a, .file = f, .count = n, .native = native};
    CHECK_ERR(cio_create_task(sock_sender, &s, &s.task), 0);
    TASK_WAIT_UNTIL(unread(p.b) > 0);
    CHECK_EQ(cio_task_cancel(s.task), 1);
    CHECK_ERR(cio_await(s.task, NULL), 0);
    cio_future_unref(s.task);
    CHECK_ERR(s.rc, -ECANCELED);
    CHECK(s.sent > 0 && s.sent < n);
    close(p.a);
    reader r = {.fd = p.b};
    reader_start(&r);
    reader_join(&r);
    CHECK_EQ(r.total, s.sent);
    close(p.b);
    close(f);
    return 0;
}

TEST(net_sendfile_sock_cancelled_midway_sent_is_what_the_peer_gets)
{
    bool native = true;
    run_main(cancel_main, &native);
}

TEST(net_sendfile_sock_cancelled_midway_while_copying)
{
    bool native = false;
    run_main(cancel_main, &native);
}

static int sock_args_main(void *arg)
{
    (void)arg;
    int f = data_file(10, 0);
    size_t sent = 99;
    pair p = tcp_pair();
    CHECK_ERR(cio_sock_sendfile(p.a, f, -1, 0, 1, &sent), -EINVAL);
    CHECK_EQ(sent, 0);
    CHECK_ERR(cio_sock_sendfile(f, f, 0, 0, 1, &sent), -ENOTSOCK);
    int u = bound_socket(AF_INET, SOCK_DGRAM, 0); /* asyncio: streams only */
    CHECK_ERR(cio_sock_sendfile(u, f, 0, 0, 1, &sent), -EINVAL);
    CHECK_ERR(cio_sock_sendfile(p.a, -1, 0, 0, 1, &sent), -EBADF);
    CHECK_ERR(cio_sock_sendfile(p.a, f, 0, 0, 1, NULL), 0); /* NULL sent */
    close(u);
    close(p.a);
    close(p.b);
    close(f);
    return 0;
}

TEST(net_sendfile_sock_bad_arguments)
{
    size_t sent = 99;
    CHECK_ERR(cio_sock_sendfile(0, 0, 0, 0, 1, &sent), CIO_ENOTASK);
    CHECK_EQ(sent, 0);
    run_main(sock_args_main, NULL);
}

/* -------------------------------------------------------- cio_sendfile */

/* A transport (client, recording into *c) connected to a raw socket the
 * test reads, *b. */
static cio_transport *transport_pair(peer *c, int *b)
{
    int port;
    int l = raw_listener(AF_INET, &port);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    cio_transport *t = dial("127.0.0.1", ps, c);
    *b = cio_sock_accept(l, NULL, NULL);
    CHECK(*b >= 0);
    close(l);
    return t;
}

static int buffered_first_main(void *arg)
{
    (void)arg;
    peer c = {0};
    int b;
    cio_transport *t = transport_pair(&c, &b);
    size_t head = fill_until_buffered(t, 0), n = MiB;
    CHECK(cio_transport_get_write_buffer_size(t) > 0);
    int f = data_file(n, head); /* the file continues the pattern */
    reader r = {.fd = b, .keep = true};
    reader_start(&r);
    size_t sent = 0;
    CHECK_ERR(cio_sendfile(t, f, 0, 0, 1, &sent), 0);
    CHECK_EQ(sent, n);
    CHECK(cio_transport_is_reading(t)); /* paused meanwhile, then resumed */
    char tail[1000];
    fill(tail, sizeof tail, head + n);
    CHECK_ERR(cio_transport_write(t, tail, sizeof tail), 0); /* after: ok */
    cio_transport_close(t);
    reader_join(&r);
    CHECK_EQ(r.len, head + n + sizeof tail);
    CHECK(pattern_ok(r.data, r.len, 0)); /* in order, nothing interleaved */
    AWAIT(c.lost);
    CHECK_EQ(c.lost_error, 0);
    free(r.data);
    peer_free(&c);
    close(b);
    close(f);
    return 0;
}

TEST(net_sendfile_transport_buffered_bytes_arrive_first)
{
    run_main(buffered_first_main, NULL);
}

/* While a sendfile waits for the peer, other writes and a second
 * sendfile are refused; cancelled, it reports what went, and writes are
 * taken again, arriving after the file's bytes. */
static int busy_main(void *arg)
{
    (void)arg;
    peer c = {0};
    int b;
    cio_transport *t = transport_pair(&c, &b);
    size_t n = 64 * MiB, sent = 99;
    int f = sparse_file((int64_t)n, NULL, 0);
    sender s = {.t = t, .file = f, .count = n, .native = true};
    CHECK_ERR(cio_create_task(sock_sender, &s, &s.task), 0);
    TASK_WAIT_UNTIL(unread(b) > 0);
    CHECK_ERR(cio_transport_write(t, "x", 1), -EBUSY);
    CHECK_ERR(cio_transport_write(t, "", 0), -EBUSY);
    struct iovec iov = {"x", 1};
    CHECK_ERR(cio_transport_writelines(t, &iov, 1), -EBUSY);
    CHECK_ERR(cio_sendfile(t, f, 0, 0, 1, &sent), -EBUSY);
    CHECK_EQ(sent, 0);
    CHECK_EQ(cio_transport_get_write_buffer_size(t), 0);
    CHECK_EQ(cio_task_cancel(s.task), 1);
    CHECK_ERR(cio_await(s.task, NULL), 0);
    cio_future_unref(s.task);
    CHECK_ERR(s.rc, -ECANCELED);
    CHECK(s.sent > 0 && s.sent < n);
    CHECK_ERR(cio_transport_write(t, "TAIL", 4), 0);
    cio_transport_close(t);
    reader r = {.fd = b, .keep = true};
    reader_start(&r);
    reader_join(&r);
    CHECK_EQ(r.len, s.sent + 4);
    CHECK(memcmp(r.data + s.sent, "TAIL", 4) == 0);
    AWAIT(c.lost);
    CHECK_EQ(c.pauses, 0); /* the file's bytes never entered the buffer */
    free(r.data);
    peer_free(&c);
    close(b);
    close(f);
    return 0;
}

TEST(net_sendfile_transport_refuses_writes_meanwhile_and_cancels_honestly)
{
    run_main(busy_main, NULL);
}

/* The transport is aborted (closed) by another task while the sendfile
 * waits on its socket: the sendfile ends with -EPIPE at once, and the
 * transport is freed after. */
static int closed_under_main(void *arg)
{
    bool abort_it = *(bool *)arg;
    peer c = {0};
    int b;
    cio_transport *t = transport_pair(&c, &b);
    size_t n = 64 * MiB;
    int f = sparse_file((int64_t)n, NULL, 0);
    sender s = {.t = t, .file = f, .count = n, .native = true};
    CHECK_ERR(cio_create_task(sock_sender, &s, &s.task), 0);
    TASK_WAIT_UNTIL(unread(b) > 0);
    if (abort_it)
        cio_transport_abort(t);
    else
        cio_transport_close(t);
    CHECK_ERR(cio_await(s.task, NULL), 0);
    cio_future_unref(s.task);
    CHECK_ERR(s.rc, -EPIPE);
    CHECK(s.sent > 0 && s.sent < n);
    AWAIT(c.lost);
    reader r = {.fd = b};
    reader_start(&r);
    reader_join(&r);
    CHECK(r.total <= s.sent); /* an abort may drop what was in flight */
    if (!abort_it)
        CHECK_EQ(r.total, s.sent);
    peer_free(&c);
    close(b);
    close(f);
    return 0;
}

TEST(net_sendfile_transport_aborted_while_sending_ends_it)
{
    bool abort_it = true;
    run_main(closed_under_main, &abort_it);
}

TEST(net_sendfile_transport_closed_while_sending_ends_it)
{
    bool abort_it = false;
    run_main(closed_under_main, &abort_it);
}

static int transport_peer_gone_main(void *arg)
{
    (void)arg;
    peer c = {0};
    int b;
    cio_transport *t = transport_pair(&c, &b);
    size_t n = 32 * MiB;
    int f = sparse_file((int64_t)n, NULL, 0);
    reader r = {.fd = b, .stop_after = MiB};
    reader_start(&r);
    size_t sent = 0;
    int rc = cio_sendfile(t, f, 0, 0, 1, &sent);
    CHECK(rc == -ECONNRESET || rc == -EPIPE);
    CHECK(sent >= MiB && sent < n);
    reader_join(&r);
    /* Reading resumed: the transport hears the end (EOF: the reset's
     * error went to the sendfile, as it would to a write). */
    AWAIT(c.lost);
    peer_free(&c);
    close(f);
    return 0;
}

TEST(net_sendfile_transport_peer_closes_midway)
{
    run_main(transport_peer_gone_main, NULL);
}

/* A write pipe takes the copying path through the transport: the
 * protocol sees pause_writing and resume_writing as the buffer fills and
 * drains; with fallback 0 it is -ENOTSUP. */
static int write_pipe_main(void *arg)
{
    (void)arg;
    int fds[2];
    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    peer w = {0}, rd = {0};
    cio_transport *tw, *tr;
    CHECK_ERR(cio_connect_write_pipe(NULL, fds[1], &rec_proto, &w, &tw), 0);
    CHECK_ERR(cio_connect_read_pipe(NULL, fds[0], &rec_proto, &rd, &tr), 0);
    AWAIT(w.made && rd.made);
    size_t n = MiB + 123, sent = 99;
    int f = data_file(n, 0);
    CHECK_ERR(cio_sendfile(tw, f, 0, 0, 0, &sent), -ENOTSUP);
    CHECK_EQ(sent, 0);
    CHECK_ERR(cio_transport_write(tw, "", 0), 0); /* still takes writes */
    CHECK_ERR(cio_sendfile(tw, f, 0, 0, 1, &sent), 0);
    CHECK_EQ(sent, n);
    CHECK(w.pauses >= 1);
    cio_transport_close(tw);
    AWAIT(rd.lost && w.lost);
    CHECK_EQ(w.resumes, w.pauses);
    CHECK_EQ(rd.len, n);
    CHECK(pattern_ok(rd.data, rd.len, 0));
    peer_free(&w);
    peer_free(&rd);
    close(f);
    return 0;
}

TEST(net_sendfile_write_pipe_transport_copies_with_flow_control)
{
    run_main(write_pipe_main, NULL);
}

static int transport_args_main(void *arg)
{
    (void)arg;
    int f = data_file(10, 0);
    size_t sent = 99;
    CHECK_ERR(cio_sendfile(NULL, f, 0, 0, 1, &sent), -EINVAL);
    CHECK_EQ(sent, 0);
    peer u = {0};
    cio_transport *ut;
    CHECK_ERR(cio_create_datagram_endpoint("127.0.0.1", "0", NULL, NULL,
                                           &rec_proto, &u, &ut),
              0);
    CHECK_ERR(cio_sendfile(ut, f, 0, 0, 1, &sent), -EINVAL);
    cio_transport_close(ut);
    AWAIT(u.lost);
    peer c = {0};
    int b;
    cio_transport *t = transport_pair(&c, &b);
    CHECK_ERR(cio_sendfile(t, f, -1, 0, 1, &sent), -EINVAL);
    CHECK_ERR(cio_transport_write_eof(t), 0);
    CHECK_ERR(cio_sendfile(t, f, 0, 0, 1, &sent), -EPIPE);
    cio_transport_close(t);
    CHECK_ERR(cio_sendfile(t, f, 0, 0, 1, &sent), -EPIPE);
    CHECK_EQ(sent, 0);
    AWAIT(c.lost);
    peer_free(&u);
    peer_free(&c);
    close(b);
    close(f);
    return 0;
}

TEST(net_sendfile_transport_bad_arguments_and_states)
{
    run_main(transport_args_main, NULL);
}

/* ---------------------------------------------------------------- streams */

static int stream_main(void *arg)
{
    (void)arg;
    int port;
    int l = raw_listener(AF_INET, &port);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    cio_stream *s;
    CHECK_ERR(cio_open_connection("127.0.0.1", ps, NULL, &s), 0);
    int b = cio_sock_accept(l, NULL, NULL);
    CHECK(b >= 0);
    close(l);
    size_t n = 2 * MiB, sent = 0;
    int f = data_file(n, 0);
    reader r = {.fd = b, .keep = true};
    reader_start(&r);
    CHECK_ERR(cio_stream_write(s, "HEAD", 4), 0);
    CHECK_ERR(cio_stream_sendfile(s, f, 0, 0, 1, &sent), 0);
    CHECK_EQ(sent, n);
    CHECK_ERR(cio_stream_write(s, "TAIL", 4), 0);
    CHECK_ERR(cio_stream_drain(s), 0);
    cio_stream_close(s);
    CHECK_ERR(cio_stream_wait_closed(s), 0);
    CHECK_ERR(cio_stream_sendfile(s, f, 0, 0, 1, &sent), -EPIPE);
    CHECK_EQ(sent, 0);
    cio_stream_free(s);
    reader_join(&r);
    CHECK_EQ(r.len, n + 8);
    CHECK(memcmp(r.data, "HEAD", 4) == 0);
    CHECK(pattern_ok(r.data + 4, n, 0));
    CHECK(memcmp(r.data + 4 + n, "TAIL", 4) == 0);
    free(r.data);
    close(b);
    close(f);
    return 0;
}

TEST(net_sendfile_stream_between_writes)
{
    run_main(stream_main, NULL);
}

/* ------------------------------------------------------------- teardown */

/* The loop closes while a sendfile waits, on the socket (native) or for
 * the write buffer to drain (a write pipe nobody reads): nothing leaks,
 * nothing touches the destroyed task's frame (zeroed on release). */
typedef struct parked {
    bool pipe;
    peer c;
    int b, f, fds[2];
    cio_transport *t;
    bool ready, returned;
} parked;

static int parked_sender(void *arg)
{
    parked *j = arg;
    size_t n = 64 * MiB, sent = 0;
    j->f = sparse_file((int64_t)n, NULL, 0);
    if (j->pipe) {
        CHECK(pipe2(j->fds, O_CLOEXEC) == 0);
        CHECK_ERR(cio_connect_write_pipe(NULL, j->fds[1], &rec_proto, &j->c,
                                         &j->t),
                  0);
    } else {
        j->t = transport_pair(&j->c, &j->b);
    }
    j->ready = true;
    cio_sendfile(j->t, j->f, 0, 0, 1, &sent); /* never returns */
    j->returned = true;
    return 0;
}

static void teardown_case(bool pipe)
{
    cio__stack_poison_released = true;
    changed_init();
    parked j = {.pipe = pipe, .b = -1, .fds = {-1, -1}};
    cio_loop *loop = NULL;
    int nreports = 0;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    CHECK_ERR(cio_loop_set_exception_handler(loop, count_reports, &nreports),
              0);
    CHECK_ERR(cio_task_new(loop, parked_sender, &j, NULL, NULL), 0);
    double t0 = mono();
    while (!(j.ready && (pipe ? j.c.pauses > 0 : unread(j.b) > 0))) {
        CHECK(mono() - t0 < 20);
        CHECK(cio_loop_run_once(loop, 0.01) >= 0);
    }
    for (int i = 0; i < 8; i++) /* it parks for good */
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    cio_loop_free(loop);
    CHECK(!j.returned);
    CHECK(nreports > 0);
    peer_free(&j.c);
    if (j.b >= 0)
        close(j.b);
    if (j.fds[0] >= 0)
        close(j.fds[0]);
    close(j.f);
}

TEST(net_sendfile_loop_closes_while_a_native_sendfile_waits)
{
    teardown_case(false);
}

TEST(net_sendfile_loop_closes_while_a_copying_sendfile_waits)
{
    teardown_case(true);
}
