/* Pipes and the low-level subprocess API (issue 7): connect_read_pipe /
 * connect_write_pipe with their protocols (EOF, pause and resume, a
 * reader that went away, bulk data), cio_subprocess_exec's transport and
 * protocol (callback order, pipe transports, close while running, in
 * connection_lost and after exit, send_signal, a missing program), and
 * failure injection through the low-level API. test_process.c tests the
 * process objects above them.
 *
 * Everything runs real children and real pipes. Every test name starts
 * with "process_" (`make check T=process`). */
#define _GNU_SOURCE
#include "util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------ pipes */

typedef struct pipe_rec {
    test_log log;
    cio_future *lost;
    int lost_error;
    int eof_ret;
    int paused, resumed;
    size_t bytes;
    bool pattern_ok;
    bool quiet; /* bulk data: count it, do not log it */
} pipe_rec;

static void pr_made(cio_transport *t, void *ctx)
{
    (void)t;
    test_log_add(&((pipe_rec *)ctx)->log, "made");
}

static void pr_data(cio_transport *t, const char *data, size_t n, void *ctx)
{
    (void)t;
    pipe_rec *r = ctx;
    if (r->quiet) {
        for (size_t i = 0; i < n; i++)
            if (data[i] != pat(r->bytes + i))
                r->pattern_ok = false;
    } else {
        test_log_add(&r->log, "data:%.*s", (int)n, data);
    }
    r->bytes += n;
}

static int pr_eof(cio_transport *t, void *ctx)
{
    (void)t;
    pipe_rec *r = ctx;
    test_log_add(&r->log, "eof");
    return r->eof_ret;
}

static void pr_lost(cio_transport *t, int error, void *ctx)
{
    (void)t;
    pipe_rec *r = ctx;
    test_log_add(&r->log, "lost:%d", error);
    r->lost_error = error;
    CHECK_ERR(cio_future_set_result(r->lost, NULL), 0);
}

static void pr_pause(cio_transport *t, void *ctx)
{
    (void)t;
    ((pipe_rec *)ctx)->paused++;
}

static void pr_resume(cio_transport *t, void *ctx)
{
    (void)t;
    ((pipe_rec *)ctx)->resumed++;
}

static const cio_protocol pipe_proto = {
    .connection_made = pr_made,
    .data_received = pr_data,
    .eof_received = pr_eof,
    .connection_lost = pr_lost,
    .pause_writing = pr_pause,
    .resume_writing = pr_resume,
};

static void rec_init(pipe_rec *r)
{
    memset(r, 0, sizeof *r);
    r->pattern_ok = true;
    CHECK_ERR(cio_future_new(NULL, &r->lost), 0);
}

/* Waits for connection_lost (at most a few seconds). */
static void await_lost(pipe_rec *r)
{
    int e = cio_wait_for(r->lost, 5 * tscale(), NULL);
    if (e)
        test_fail(__FILE__, __LINE__, "no connection_lost (%s); log: %s",
                  cio_strerror(e), r->log.buf);
    cio_future_unref(r->lost);
    r->lost = NULL;
}

static int t_read_pipe(void *arg)
{
    (void)arg;
    int pp[2];
    pipe_rec r;
    cio_transport *t = (cio_transport *)&t;

    /* Data, the writer's close: eof_received, then connection_lost. */
    CHECK(pipe(pp) == 0);
    CHECK_EQ(write(pp[1], "hello", 5), 5);
    close(pp[1]);
    rec_init(&r);
    CHECK_ERR(cio_connect_read_pipe(NULL, pp[0], &pipe_proto, &r, &t), 0);
    CHECK(t != NULL && t != (cio_transport *)&t);
    CHECK(fcntl(pp[0], F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(pp[0], F_GETFD) & FD_CLOEXEC);
    CHECK_ERR(cio_transport_write(t, "x", 1), -EINVAL); /* read side */
    CHECK_EQ(cio_transport_can_write_eof(t), 0);
    CHECK_ERR(cio_transport_write_eof(t), -ENOTSUP);
    await_lost(&r);
    CHECK_LOG(&r.log, "made data:hello eof lost:0");

    /* Closed by us while the writer is still there; then pausing. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_read_pipe(NULL, pp[0], &pipe_proto, &r, &t), 0);
    CHECK_ERR(cio_transport_pause_reading(t), 0);
    CHECK_EQ(write(pp[1], "later", 5), 5);
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK_LOG(&r.log, "made");
    CHECK_EQ(cio_transport_is_reading(t), 0);
    CHECK_ERR(cio_transport_resume_reading(t), 0);
    double end = mono() + 5 * tscale();
    while (r.bytes < 5) {
        CHECK(mono() < end);
        CHECK_ERR(cio_sleep(0.005), 0);
    }
    cio_transport_close(t);
    CHECK_EQ(cio_transport_is_closing(t), 1);
    await_lost(&r);
    CHECK_LOG(&r.log, "made data:later lost:0");
    /* The transport closed its fd: the writer now has no reader. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    errno = 0;
    CHECK_EQ(write(pp[1], "y", 1), -1);
    CHECK_EQ(errno, EPIPE);
    struct timespec zero = {0, 0};
    sigtimedwait(&block, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(pp[1]);

    /* Errors. */
    CHECK_ERR(cio_connect_read_pipe(NULL, 999, &pipe_proto, NULL, &t),
              -EBADF);
    CHECK_ERR(cio_connect_read_pipe(NULL, -1, &pipe_proto, NULL, &t),
              -EINVAL);
    return 0;
}

TEST(process_connect_read_pipe) { run_strict(t_read_pipe, NULL); }

/* As asyncio's read pipe transport: EOF closes it (eof_received, then
 * connection_lost(None)) whatever eof_received returns: a read pipe has
 * no write side to keep open. */
static int t_read_pipe_keep(void *arg)
{
    (void)arg;
    int pp[2];
    pipe_rec r;
    cio_transport *t;
    CHECK(pipe(pp) == 0);
    CHECK_EQ(write(pp[1], "x", 1), 1);
    close(pp[1]);
    rec_init(&r);
    r.eof_ret = 1;
    CHECK_ERR(cio_connect_read_pipe(cio_get_running_loop(), pp[0], &pipe_proto,
                                    &r, &t),
              0);
    CHECK_ERR(cio_wait_for(r.lost, 1 * tscale(), NULL), 0);
    cio_future_unref(r.lost);
    CHECK_LOG(&r.log, "made data:x eof lost:0");
    return 0;
}

TEST(process_read_pipe_eof_keep_open) { run_strict(t_read_pipe_keep, NULL); }

static int t_write_pipe(void *arg)
{
    (void)arg;
    int pp[2];
    pipe_rec r;
    cio_transport *t;
    char buf[64];

    /* Writes, then close: the reader sees the data and EOF. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    CHECK_EQ(cio_transport_can_write_eof(t), 1);
    CHECK_ERR(cio_transport_write(t, "abc", 3), 0);
    CHECK_ERR(cio_transport_write(t, "def", 3), 0);
    cio_transport_close(t);
    CHECK_ERR(cio_transport_write(t, "x", 1), -EPIPE);
    await_lost(&r);
    CHECK_LOG(&r.log, "made lost:0");
    size_t n = read_fd_all(pp[0], buf, sizeof buf);
    CHECK_BYTES(buf, n, "abcdef");
    close(pp[0]);

    /* write_eof: a pipe's EOF is its closing. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    CHECK_ERR(cio_transport_write(t, "end", 3), 0);
    CHECK_ERR(cio_transport_write_eof(t), 0);
    await_lost(&r);
    CHECK_LOG(&r.log, "made lost:0");
    n = read_fd_all(pp[0], buf, sizeof buf);
    CHECK_BYTES(buf, n, "end");
    close(pp[0]);
    CHECK_ERR(cio_connect_write_pipe(NULL, 999, &pipe_proto, NULL, &t),
              -EBADF);
    return 0;
}

TEST(process_connect_write_pipe) { run_strict(t_write_pipe, NULL); }

/* A write pipe whose reader is gone: an error through connection_lost,
 * never a SIGPIPE (which is at its default here: it would kill us). */
static int t_write_pipe_broken(void *arg)
{
    (void)arg;
    int pp[2];
    pipe_rec r;
    cio_transport *t;
    struct sigaction sa;
    CHECK(sigaction(SIGPIPE, NULL, &sa) == 0);
    CHECK(sa.sa_handler == SIG_DFL);

    /* The reader left before the first write. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    close(pp[0]);
    CHECK_ERR(cio_transport_write(t, "x", 1), 0); /* errors come later */
    await_lost(&r);
    CHECK_ERR(r.lost_error, -EPIPE);
    CHECK_LOG(&r.log, "made lost:-32");

    /* The reader leaves while data waits in the buffer. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    size_t n = 1 << 20;
    char *big = malloc(n);
    CHECK(big != NULL);
    memset(big, 'z', n);
    CHECK_ERR(cio_transport_write(t, big, n), 0);
    free(big);
    CHECK(cio_transport_get_write_buffer_size(t) > 0);
    CHECK_EQ(r.paused, 1);
    CHECK_ERR(cio_sleep(0.01), 0);
    close(pp[0]);
    await_lost(&r);
    CHECK_ERR(r.lost_error, -EPIPE);

    /* The reader leaves with nothing buffered: as asyncio, a plain close
     * (connection_lost(0)). */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    CHECK_ERR(cio_sleep(0.01), 0);
    close(pp[0]);
    await_lost(&r);
    CHECK_LOG(&r.log, "made lost:0");

    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    return 0;
}

TEST(process_write_pipe_reader_closed)
{
    run_strict(t_write_pipe_broken, NULL);
}

/* A write pipe transport feeding a read pipe transport: 8 MiB, with flow
 * control on the writer. */
static int t_pipe_pair(void *arg)
{
    (void)arg;
    int pp[2];
    CHECK(pipe(pp) == 0);
    pipe_rec w, rd;
    rec_init(&w);
    rec_init(&rd);
    rd.quiet = true;
    cio_transport *wt, *rt;
    CHECK_ERR(cio_connect_read_pipe(NULL, pp[0], &pipe_proto, &rd, &rt), 0);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &w, &wt), 0);
    size_t total = 8u << 20, chunk = 256 << 10;
    char *buf = malloc(chunk);
    CHECK(buf != NULL);
    for (size_t off = 0; off < total; off += chunk) {
        for (size_t i = 0; i < chunk; i++)
            buf[i] = pat(off + i);
        CHECK_ERR(cio_transport_write(wt, buf, chunk), 0);
        /* Wait for resume_writing while paused (as drain would). */
        double end = mono() + 10 * tscale();
        while (w.paused > w.resumed) {
            CHECK(mono() < end);
            CHECK_ERR(cio_sleep(0.001), 0);
        }
    }
    free(buf);
    CHECK(w.paused > 0);
    cio_transport_close(wt); /* flushes, then closes: the reader's EOF */
    await_lost(&w);
    await_lost(&rd);
    CHECK_EQ(rd.bytes, total);
    CHECK(rd.pattern_ok);
    CHECK_LOG(&w.log, "made lost:0");
    CHECK_LOG(&rd.log, "made eof lost:0");
    return 0;
}

TEST_T(process_pipe_pair_bulk, 30) { run_strict(t_pipe_pair, NULL); }

/* ------------------------------------------ the low-level subprocess API */

typedef struct sub_rec {
    test_log log;
    cio_future *lost_fut;
    int made, exited, lost, lost_error;
    int pipe_lost[3], pipe_err[3];
    char data[3][256];
    size_t len[3];
    int have_code, code_at_exit;
    int npipes;          /* how many of 0, 1, 2 are pipes */
    bool close_in_lost;  /* call cio_subprocess_close in connection_lost */
    bool create_failed;  /* no callback may come after that */
    cio_subprocess_transport *t;
} sub_rec;

static void sr_alive(sub_rec *r)
{
    if (r->create_failed)
        test_fail(__FILE__, __LINE__,
                  "a callback after the create call failed");
}

static void sr_made(cio_subprocess_transport *t, void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK_EQ(r->made, 0);
    CHECK(!r->exited && !r->lost);
    r->made++;
    r->t = t;
    test_log_add(&r->log, "made");
}

static void sr_data(cio_subprocess_transport *t, int fd, const char *data,
                    size_t n, void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK(t == r->t);
    CHECK(r->made && !r->lost);
    CHECK(fd == 1 || fd == 2);
    CHECK_EQ(r->pipe_lost[fd], 0);
    size_t room = sizeof r->data[fd] - 1 - r->len[fd];
    size_t take = n < room ? n : room;
    memcpy(r->data[fd] + r->len[fd], data, take);
    r->len[fd] += take;
}

static void sr_pipe_lost(cio_subprocess_transport *t, int fd, int error,
                         void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK(t == r->t);
    CHECK(r->made && !r->lost);
    CHECK(fd >= 0 && fd < 3);
    CHECK_EQ(r->pipe_lost[fd], 0);
    r->pipe_lost[fd]++;
    r->pipe_err[fd] = error;
    test_log_add(&r->log, "pipe_lost:%d", fd);
}

static void sr_exited(cio_subprocess_transport *t, void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK(t == r->t);
    CHECK(r->made && !r->lost);
    CHECK_EQ(r->exited, 0);
    r->exited++;
    r->have_code = cio_subprocess_get_returncode(t, &r->code_at_exit);
    test_log_add(&r->log, "exited");
}

static void sr_lost(cio_subprocess_transport *t, int error, void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK(t == r->t);
    CHECK(r->made && r->exited);
    CHECK_EQ(r->lost, 0);
    CHECK_EQ(r->pipe_lost[0] + r->pipe_lost[1] + r->pipe_lost[2], r->npipes);
    r->lost++;
    r->lost_error = error;
    test_log_add(&r->log, "lost");
    CHECK_ERR(cio_future_set_result(r->lost_fut, NULL), 0);
    if (r->close_in_lost)
        cio_subprocess_close(t);
}

static const cio_subprocess_protocol sub_proto = {
    .connection_made = sr_made,
    .pipe_data_received = sr_data,
    .pipe_connection_lost = sr_pipe_lost,
    .process_exited = sr_exited,
    .connection_lost = sr_lost,
};

static void sub_init(sub_rec *r, int npipes)
{
    memset(r, 0, sizeof *r);
    r->npipes = npipes;
    CHECK_ERR(cio_future_new(NULL, &r->lost_fut), 0);
}

static void sub_await_lost(sub_rec *r)
{
    int e = cio_wait_for(r->lost_fut, 5 * tscale(), NULL);
    if (e)
        test_fail(__FILE__, __LINE__, "no connection_lost (%s); log: %s",
                  cio_strerror(e), r->log.buf);
    cio_future_unref(r->lost_fut);
    r->lost_fut = NULL;
}

/* The log starts with made and ends with lost; what lies between may come
 * in any order (as in asyncio). */
static void sub_check_frame(const sub_rec *r)
{
    const char *s = r->log.buf;
    size_t n = strlen(s);
    if (strncmp(s, "made", 4) != 0 || n < 9 || strcmp(s + n - 5, " lost") != 0)
        test_fail(__FILE__, __LINE__, "callback order: %s", s);
}

static int t_sub_order(void *arg)
{
    (void)arg;
    sub_rec r;
    sub_init(&r, 3);
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_subprocess_transport *t = (cio_subprocess_transport *)&t;
    CHECK_ERR(cio_subprocess_exec(ARGV("sh", "-c",
                                       "echo out; echo err >&2; exit 3"),
                                  &o, &sub_proto, &r, &t),
              0);
    CHECK(t != NULL && t != (cio_subprocess_transport *)&t);
    CHECK(cio_subprocess_get_pid(t) > 0);
    for (int fd = 0; fd < 3; fd++)
        CHECK(cio_subprocess_get_pipe_transport(t, fd) != NULL);
    CHECK(cio_subprocess_get_pipe_transport(t, 3) == NULL);
    CHECK(cio_subprocess_get_pipe_transport(t, -1) == NULL);
    if (!r.made) /* connection_made may come just after the call */
        r.t = t;
    sub_await_lost(&r);
    sub_check_frame(&r);
    CHECK_BYTES(r.data[1], r.len[1], "out\n");
    CHECK_BYTES(r.data[2], r.len[2], "err\n");
    for (int fd = 0; fd < 3; fd++) {
        CHECK_EQ(r.pipe_lost[fd], 1);
        CHECK_ERR(r.pipe_err[fd], 0);
        CHECK(cio_subprocess_get_pipe_transport(t, fd) == NULL);
    }
    CHECK_EQ(r.exited, 1);
    CHECK_EQ(r.have_code, 1);
    CHECK_EQ(r.code_at_exit, 3);
    CHECK_EQ(r.lost, 1);
    CHECK_ERR(r.lost_error, 0);
    int code = -1;
    CHECK_EQ(cio_subprocess_get_returncode(t, &code), 1);
    CHECK_EQ(code, 3);
    CHECK_ERR(cio_subprocess_send_signal(t, SIGTERM), -ESRCH);
    cio_subprocess_close(t); /* frees it */

    /* The shell form, no pipes. */
    sub_init(&r, 0);
    o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    CHECK_ERR(cio_subprocess_shell("exit 9", &o, &sub_proto, &r, &t), 0);
    for (int fd = 0; fd < 3; fd++)
        CHECK(cio_subprocess_get_pipe_transport(t, fd) == NULL);
    r.t = t;
    sub_await_lost(&r);
    CHECK_LOG(&r.log, "made exited lost");
    CHECK_EQ(r.code_at_exit, 9);
    cio_subprocess_close(t);
    return 0;
}

BOTH_WATCHERS(subprocess_protocol_order, 10) { run_strict(t_sub_order, NULL); }

static int t_sub_stdin(void *arg)
{
    (void)arg;
    sub_rec r;
    sub_init(&r, 2);
    cio_process_options o = stdio3(PIPE, PIPE, DEVNULL);
    cio_subprocess_transport *t;
    CHECK_ERR(cio_subprocess_exec(ARGV("cat"), &o, &sub_proto, &r, &t), 0);
    r.t = t;
    CHECK(cio_subprocess_get_pipe_transport(t, 2) == NULL);
    cio_transport *in = cio_subprocess_get_pipe_transport(t, 0);
    CHECK(in != NULL);
    CHECK(cio_subprocess_get_pipe_transport(t, 1) != NULL);
    CHECK_ERR(cio_transport_write(in, "hello ", 6), 0);
    CHECK_ERR(cio_transport_write(in, "pipes\n", 6), 0);
    CHECK_ERR(cio_transport_write_eof(in), 0); /* cat ends at EOF */
    sub_await_lost(&r);
    sub_check_frame(&r);
    CHECK_BYTES(r.data[1], r.len[1], "hello pipes\n");
    CHECK_EQ(r.pipe_lost[0], 1);
    CHECK_EQ(r.pipe_lost[1], 1);
    CHECK_EQ(r.pipe_lost[2], 0);
    CHECK_EQ(r.code_at_exit, 0);
    cio_subprocess_close(t);
    return 0;
}

TEST(process_subprocess_pipe_transport) { run_strict(t_sub_stdin, NULL); }

static int t_sub_close(void *arg)
{
    (void)arg;
    sub_rec r;
    /* close while it runs: pipes closed, the child killed, connection_lost
     * still comes (and then the transport is freed). */
    sub_init(&r, 3);
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_subprocess_transport *t;
    CHECK_ERR(cio_subprocess_exec(ARGV("sleep", "10"), &o, &sub_proto, &r,
                                  &t),
              0);
    r.t = t;
    pid_t pid = cio_subprocess_get_pid(t);
    CHECK_ERR(cio_sleep(0.01), 0);
    cio_subprocess_close(t);
    sub_await_lost(&r);
    sub_check_frame(&r);
    CHECK_EQ(r.exited, 1);
    CHECK_EQ(r.code_at_exit, -9);
    task_check_reaped(pid, 1);
    return 0;
}

TEST(process_subprocess_close_running) { run_strict(t_sub_close, NULL); }

static int t_sub_signal(void *arg)
{
    (void)arg;
    sub_rec r;
    cio_subprocess_transport *t;
    cio_process_options o;
    /* Signals through the transport. */
    sub_init(&r, 0);
    o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    CHECK_ERR(cio_subprocess_exec(ARGV("sleep", "10"), &o, &sub_proto, &r,
                                  &t),
              0);
    r.t = t;
    CHECK_ERR(cio_subprocess_send_signal(t, SIGTERM), 0);
    sub_await_lost(&r);
    CHECK_EQ(r.code_at_exit, -SIGTERM);
    CHECK_ERR(cio_subprocess_send_signal(t, SIGTERM), -ESRCH);
    cio_subprocess_close(t);
    return 0;
}

TEST(process_subprocess_send_signal) { run_strict(t_sub_signal, NULL); }

static int t_sub_close_in_lost(void *arg)
{
    (void)arg;
    sub_rec r;
    cio_subprocess_transport *t;
    cio_process_options o;
    /* close from inside connection_lost (as asyncio allows: close is
     * idempotent). */
    sub_init(&r, 1);
    r.close_in_lost = true;
    o = stdio3(DEVNULL, PIPE, DEVNULL);
    CHECK_ERR(cio_subprocess_shell("echo bye", &o, &sub_proto, &r, &t), 0);
    r.t = t;
    sub_await_lost(&r);
    CHECK_BYTES(r.data[1], r.len[1], "bye\n");
    CHECK_ERR(cio_sleep(0.01), 0);
    return 0;
}

static void close_in_lost_body(void) { run_strict(t_sub_close_in_lost, NULL); }

TEST(process_subprocess_close_in_connection_lost)
{
    close_in_lost_body();
}

static int t_sub_close_late(void *arg)
{
    (void)arg;
    sub_rec r;
    cio_subprocess_transport *t;
    cio_process_options o;
    /* close after process_exited, while a grandchild still holds the
     * stdout pipe: the pipe closes, then connection_lost, then it is
     * freed. */
    sub_init(&r, 1);
    o = stdio3(DEVNULL, PIPE, DEVNULL);
    CHECK_ERR(cio_subprocess_shell("(sleep 0.3; echo late) & exit 0", &o,
                                   &sub_proto, &r, &t),
              0);
    r.t = t;
    double end = mono() + 5 * tscale();
    while (!r.exited) {
        CHECK(mono() < end);
        CHECK_ERR(cio_sleep(0.002), 0);
    }
    CHECK_EQ(r.pipe_lost[1], 0);
    CHECK_EQ(r.lost, 0);
    cio_subprocess_close(t);
    sub_await_lost(&r);
    CHECK_LOG(&r.log, "made exited pipe_lost:1 lost");
    return 0;
}

TEST(process_subprocess_close_after_exit)
{
    run_strict(t_sub_close_late, NULL);
}

static int t_sub_enoent(void *arg)
{
    (void)arg;
    sub_rec r;
    cio_subprocess_transport *t;
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    /* No such program: an error, no transport, and never a callback. */
    sub_init(&r, 0);
    t = (cio_subprocess_transport *)&t;
    CHECK_ERR(cio_subprocess_exec(ARGV("/nonexistent/cio-prog"), &o,
                                  &sub_proto, &r, &t),
              -ENOENT);
    CHECK(t == NULL);
    r.create_failed = true;
    CHECK_ERR(cio_sleep(0.02), 0);
    cio_future_unref(r.lost_fut);
    CHECK_ERR(cio_subprocess_exec(ARGV("true"), &o, NULL, &r, &t), -EINVAL);
    CHECK_EQ(count_children(NULL), 0);
    return 0;
}

TEST(process_subprocess_enoent) { run_strict(t_sub_enoent, NULL); }

/* ------------------------------------------------- failure injection */

/* The same through the low-level API: once the create call succeeded,
 * connection_lost comes, whatever failed; after it failed, no callback. */
static int sub_fault_main(void *arg)
{
    int *reports = arg; /* errors reported through the exception handler */
    cio_loop_set_exception_handler(cio_get_running_loop(), count_reports,
                                   reports);
    sub_rec r;
    memset(&r, 0, sizeof r);
    r.npipes = 3;
    int e = cio_future_new(NULL, &r.lost_fut);
    if (e)
        return e;
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_subprocess_transport *t = (cio_subprocess_transport *)&t;
    e = cio_subprocess_exec(ARGV("sh", "-c", "cat; echo err >&2"), &o,
                            &sub_proto, &r, &t);
    if (e) {
        CHECK(t == NULL);
        r.create_failed = true;
        calm();
        cio_sleep(0.01); /* a stray callback would come now */
        cio_sleep(0.01);
        cio_future_unref(r.lost_fut);
        return e;
    }
    r.t = t;
    cio_transport *in = cio_subprocess_get_pipe_transport(t, 0);
    CHECK(in != NULL);
    e = cio_transport_write(in, "fault\n", 6);
    if (!e)
        e = cio_transport_write_eof(in);
    bool closed = false;
    double end = mono() + 5 * tscale();
    while (!r.lost) {
        if (mono() > end)
            test_fail(__FILE__, __LINE__, "no connection_lost; log: %s",
                      r.log.buf);
        int s2 = cio_sleep(0.002);
        if ((e || s2) && !closed) { /* give up: kill it, closing all */
            if (!e)
                e = s2;
            cio_subprocess_close(t);
            closed = true;
        }
        if (s2)
            calm();
    }
    if (!e) {
        for (int fd = 0; fd < 3 && !e; fd++)
            e = r.pipe_err[fd];
        bool right = r.len[1] == 6 && memcmp(r.data[1], "fault\n", 6) == 0 &&
                     r.len[2] == 4 && memcmp(r.data[2], "err\n", 4) == 0 &&
                     r.code_at_exit == 0;
        if (!e && !right && *reports == 0)
            test_fail(__FILE__, __LINE__,
                      "all went well but out \"%s\" err \"%s\" code %d",
                      r.data[1], r.data[2], r.code_at_exit);
    }
    if (!closed)
        cio_subprocess_close(t); /* frees it (after connection_lost) */
    cio_future_unref(r.lost_fut);
    return e;
}

static int sub_fault_scenario(void *arg)
{
    int r = cio_run(sub_fault_main, arg);
    check_no_children(5);
    return r;
}

static void sub_fault_alloc_body(void)
{
    int reports = 0;
    CHECK(test_fault_loop(CIO__FAULT_ALLOC, 0, sub_fault_scenario, &reports) >
          5);
}

static void sub_fault_emfile_body(void)
{
    int reports = 0;
    CHECK(test_fault_loop(CIO__FAULT_SYS, EMFILE, sub_fault_scenario,
                          &reports) > 3);
}

TEST_T(process_subprocess_fault_alloc, 60)
{
    sub_fault_alloc_body();
}

TEST_T(process_subprocess_fault_emfile, 60)
{
    sub_fault_emfile_body();
}

/* ----------------------------------------------------- bad arguments */

/* The waiting process calls, made from a callback (no task). */
typedef struct proc_outside {
    cio_process *p;
    int wait, communicate;
    bool ran;
} proc_outside;

static void process_calls_outside_a_task(void *arg)
{
    proc_outside *o = arg;
    o->wait = cio_process_wait(o->p, NULL);
    o->communicate = cio_process_communicate(o->p, NULL, 0, NULL, NULL, NULL,
                                             NULL);
    o->ran = true;
}

/* NULL processes and transports are -EINVAL (-1, 0 or NULL for the
 * questions, no-ops for close); input for a child without a stdin pipe,
 * or no input for n bytes, is -EINVAL; the waiting calls need a task;
 * none of it disturbs the child, whose output still comes whole. */
static int t_bad_arguments(void *arg)
{
    (void)arg;
    char *out = (char *)1, *err = (char *)1;
    size_t outlen = 0;
    CHECK(cio_process_stdin(NULL) == NULL);
    CHECK(cio_process_stdout(NULL) == NULL);
    CHECK(cio_process_stderr(NULL) == NULL);
    CHECK_ERR(cio_process_wait(NULL, NULL), -EINVAL);
    CHECK_ERR(cio_process_communicate(NULL, NULL, 0, &out, NULL, &err, NULL),
              -EINVAL);
    CHECK(out == NULL && err == NULL);
    CHECK_ERR(cio_create_subprocess_exec(NULL, NULL, NULL), -EINVAL);
    CHECK_ERR(cio_create_subprocess_shell(NULL, NULL, NULL), -EINVAL);
    cio_process_options o = stdio3(DEVNULL, PIPE, DEVNULL);
    cio_process *p = sh("echo hi", &o);
    CHECK(cio_process_stdin(p) == NULL);
    CHECK_ERR(cio_process_communicate(p, "x", 1, NULL, NULL, NULL, NULL),
              -EINVAL); /* no stdin pipe */
    CHECK_ERR(cio_process_communicate(p, NULL, 1, NULL, NULL, NULL, NULL),
              -EINVAL);
    CHECK_ERR(cio_process_killpg(p, -1), -EINVAL);
    CHECK_ERR(cio_process_killpg(p, NSIG), -EINVAL);
    proc_outside po = {.p = p};
    CHECK_ERR(cio_call_soon(cio_get_running_loop(),
                            process_calls_outside_a_task, &po, NULL),
              0);
    while (!po.ran)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(po.wait, CIO_ENOTASK);
    CHECK_ERR(po.communicate, CIO_ENOTASK);
    CHECK_ERR(cio_process_communicate(p, NULL, 0, &out, &outlen, NULL, NULL),
              0);
    CHECK_BYTES(out, outlen, "hi\n");
    cio_free(out);
    int code = -1;
    CHECK_EQ(cio_process_returncode(p, &code), 1);
    CHECK_EQ(code, 0);
    cio_process_free(p);

    /* The protocol form. */
    sub_rec r;
    sub_init(&r, 0);
    cio_subprocess_transport *t = (cio_subprocess_transport *)&t;
    o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    CHECK_ERR(cio_subprocess_exec(ARGV("true"), &o, &sub_proto, &r, NULL),
              -EINVAL);
    CHECK_ERR(cio_subprocess_exec(NULL, &o, &sub_proto, &r, NULL), -EINVAL);
    CHECK_ERR(cio_subprocess_shell(NULL, &o, &sub_proto, &r, NULL), -EINVAL);
    CHECK_ERR(cio_subprocess_shell(NULL, &o, &sub_proto, &r, &t), -EINVAL);
    CHECK(t == NULL);
    CHECK_EQ(cio_subprocess_get_pid(NULL), -1);
    CHECK_EQ(cio_subprocess_get_returncode(NULL, &code), 0);
    CHECK(cio_subprocess_get_pipe_transport(NULL, 0) == NULL);
    CHECK_ERR(cio_subprocess_send_signal(NULL, SIGTERM), -EINVAL);
    cio_subprocess_close(NULL);
    CHECK_EQ(count_children(NULL), 0); /* none of those spawned anything */
    CHECK_ERR(cio_subprocess_shell("exit 3", &o, &sub_proto, &r, &t), 0);
    r.t = t;
    CHECK(cio_subprocess_get_pipe_transport(t, -1) == NULL);
    CHECK(cio_subprocess_get_pipe_transport(t, 3) == NULL);
    CHECK(cio_subprocess_get_pipe_transport(t, 1) == NULL); /* DEVNULL */
    sub_await_lost(&r);
    CHECK_EQ(r.code_at_exit, 3);
    CHECK_LOG(&r.log, "made exited lost");
    cio_subprocess_close(t); /* frees it */
    return 0;
}

TEST(process_bad_arguments_and_calls_outside_a_task)
{
    run_strict(t_bad_arguments, NULL);
    /* No loop at all. */
    static const cio_subprocess_protocol none = {0};
    cio_subprocess_transport *t = (cio_subprocess_transport *)&t;
    CHECK_ERR(cio_subprocess_exec(ARGV("true"), NULL, &none, NULL, &t),
              CIO_ENOTASK);
    CHECK(t == NULL);
    CHECK_EQ(count_children(NULL), 0);
}
