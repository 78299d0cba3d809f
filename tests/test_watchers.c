/* The loop's fd watchers, tested against asyncio's add_reader /
 * add_writer: level-triggered, one reader and one writer per fd, a
 * callback added again replaces the old one, a watcher removed by itself
 * or by an earlier callback of the same iteration does not run again, bad
 * and huge fds, regular files (EPERM on both backends), and closing the
 * loop drops the watchers but leaves the fds open. test_loop.c tests the
 * rest of the callback loop.
 *
 * Every test runs in its own forked process, so the file-level globals
 * below start fresh in each one. */
#define _GNU_SOURCE
#include "util.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ fd watchers */

TEST(reader_is_level_triggered)
{
    cio_loop *loop = loop_open();
    int p[2], n = 0;
    readable_pipe(p);
    CHECK_ERR(cio_add_reader(loop, p[0], count_cb, &n), 0);
    for (int i = 1; i <= 3; i++) {
        CHECK_EQ(cio_loop_run_once(loop, CIO_NO_TIMEOUT), 1);
        CHECK_EQ(n, i); /* still readable: it fires again */
    }
    char c;
    CHECK_EQ(read(p[0], &c, 1), 1);
    CHECK_EQ(cio_loop_run_once(loop, 0.01), 0);
    CHECK_EQ(n, 3);
    CHECK_EQ(cio_remove_reader(loop, p[0]), 1);
    CHECK_EQ(cio_remove_reader(loop, p[0]), 0);
    cio_loop_free(loop);
    close_pair(p);
}

static int sp[2]; /* a socketpair */

static void write_ping(void *arg)
{
    (void)arg;
    CHECK_EQ(write(sp[0], "ping", 4), 4);
    say("wrote");
    CHECK_EQ(cio_remove_writer(LOOP, sp[0]), 1);
}

static void read_ping(void *arg)
{
    (void)arg;
    char buf[16] = {0};
    CHECK_EQ(read(sp[1], buf, sizeof buf - 1), 4);
    test_log_add(&L, "read:%s", buf);
    CHECK_EQ(cio_remove_reader(LOOP, sp[1]), 1);
    CHECK_ERR(cio_loop_stop(LOOP), 0);
}

TEST(writer_and_reader_on_a_socketpair)
{
    cio_loop *loop = loop_open();
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    CHECK_ERR(cio_add_writer(loop, sp[0], write_ping, NULL), 0);
    CHECK_ERR(cio_add_reader(loop, sp[1], read_ping, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "wrote read:ping");
    CHECK_EQ(cio_remove_writer(loop, sp[0]), 0);
    CHECK_EQ(cio_remove_reader(loop, sp[1]), 0);
    cio_loop_free(loop);
    close_pair(sp);
}

TEST(adding_a_reader_again_replaces_its_callback)
{
    cio_loop *loop = loop_open();
    int p[2];
    readable_pipe(p);
    CHECK_ERR(cio_add_reader(loop, p[0], say, "first"), 0);
    CHECK_ERR(cio_add_reader(loop, p[0], say, "second"), 0);
    CHECK_EQ(cio_loop_run_once(loop, CIO_NO_TIMEOUT), 1);
    CHECK_LOG(&L, "second");
    CHECK_EQ(cio_remove_reader(loop, p[0]), 1);
    CHECK_EQ(cio_remove_reader(loop, p[0]), 0);
    cio_loop_free(loop);
    close_pair(p);
}

TEST(reader_and_writer_on_one_fd_are_independent)
{
    cio_loop *loop = loop_open();
    int s[2], r = 0, w = 0;
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
    CHECK_EQ(write(s[1], "x", 1), 1);
    CHECK_ERR(cio_add_reader(loop, s[0], count_cb, &r), 0);
    CHECK_ERR(cio_add_writer(loop, s[0], count_cb, &w), 0);
    CHECK_EQ(cio_loop_run_once(loop, CIO_NO_TIMEOUT), 2);
    CHECK_EQ(r, 1);
    CHECK_EQ(w, 1);
    CHECK_EQ(cio_remove_writer(loop, s[0]), 1);
    CHECK_EQ(cio_loop_run_once(loop, CIO_NO_TIMEOUT), 1);
    CHECK_EQ(r, 2);
    CHECK_EQ(w, 1);
    CHECK_EQ(cio_remove_writer(loop, s[0]), 0);
    CHECK_EQ(cio_remove_reader(loop, s[0]), 1);
    CHECK_EQ(cio_loop_run_once(loop, 0.01), 0);
    cio_loop_free(loop);
    close_pair(s);
}

static int self_fd, self_runs;
static void remove_self(void *arg)
{
    (void)arg;
    self_runs++;
    CHECK_EQ(cio_remove_reader(LOOP, self_fd), 1);
}

TEST(reader_removing_itself_runs_once)
{
    cio_loop *loop = loop_open();
    int p[2];
    readable_pipe(p);
    self_fd = p[0];
    CHECK_ERR(cio_add_reader(loop, p[0], remove_self, NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, CIO_NO_TIMEOUT), 1);
    CHECK_EQ(cio_loop_run_once(loop, 0.01), 0);
    CHECK_EQ(self_runs, 1);
    cio_loop_free(loop);
    close_pair(p);
}

/* Two readable pipes whose readers each remove the other: whichever runs
 * first, the other was already scheduled in the same iteration and must
 * not run (its watcher is gone). */
static int cross_fd[2], cross_runs;
static void remove_other(void *arg)
{
    int other = cross_fd[(intptr_t)arg];
    cross_runs++;
    CHECK_EQ(cio_remove_reader(LOOP, other), 1);
}

TEST(reader_removed_by_an_earlier_callback_does_not_run)
{
    cio_loop *loop = loop_open();
    int a[2], b[2];
    readable_pipe(a);
    readable_pipe(b);
    cross_fd[0] = a[0];
    cross_fd[1] = b[0];
    CHECK_ERR(cio_add_reader(loop, a[0], remove_other, (void *)1), 0);
    CHECK_ERR(cio_add_reader(loop, b[0], remove_other, (void *)0), 0);
    CHECK_EQ(cio_loop_run_once(loop, CIO_NO_TIMEOUT), 1);
    CHECK_EQ(cross_runs, 1);
    CHECK_EQ(cio_remove_reader(loop, a[0]) + cio_remove_reader(loop, b[0]), 1);
    cio_loop_free(loop);
    close_pair(a);
    close_pair(b);
}

TEST(add_reader_bad_fds)
{
    cio_loop *loop = loop_open();
    int p[2];
    CHECK_EQ(pipe(p), 0);
    close_pair(p); /* p[0] now names no open file */
    CHECK_ERR(cio_add_reader(loop, p[0], say, "x"), -EBADF);
    CHECK_ERR(cio_add_writer(loop, p[1], say, "x"), -EBADF);
    CHECK_ERR(cio_add_reader(loop, -1, say, "x"), -EBADF);
    CHECK_EQ(cio_remove_reader(loop, p[0]), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 0);
    cio_loop_free(loop);
}

TEST_T(add_reader_on_a_huge_fd_number, 5)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_add_reader(loop, INT_MAX, say, "x"), -EBADF);
    CHECK_ERR(cio_add_writer(loop, INT_MAX - 1, say, "x"), -EBADF);
    cio_loop_free(loop);
}

/* epoll refuses regular files and directories; the poll backend must
 * refuse them too, so a program behaves the same on both. */
static void refuse_files(const char *backend)
{
    cio_loop *loop = loop_open_with(backend, -1);
    char path[] = "/tmp/cio-test-XXXXXX";
    int f = mkstemp(path);
    CHECK(f >= 0);
    unlink(path);
    int d = open("/tmp", O_RDONLY | O_DIRECTORY);
    CHECK(d >= 0);
    CHECK_ERR(cio_add_reader(loop, f, say, "x"), -EPERM);
    CHECK_ERR(cio_add_writer(loop, f, say, "x"), -EPERM);
    CHECK_ERR(cio_add_reader(loop, d, say, "x"), -EPERM);
    CHECK_EQ(cio_remove_reader(loop, f), 0);
    int p[2];
    CHECK_EQ(pipe(p), 0);
    CHECK_ERR(cio_add_reader(loop, p[0], say, "x"), 0);
    CHECK_EQ(cio_remove_reader(loop, p[0]), 1);
    cio_loop_free(loop);
    close_pair(p);
    close(f);
    close(d);
}

TEST(add_reader_on_a_regular_file_is_eperm_on_both_backends)
{
    refuse_files("epoll");
    refuse_files("poll");
}

TEST(closing_the_loop_drops_watchers_but_not_the_fds)
{
    cio_loop *loop = loop_open();
    int p[2], n = 0;
    readable_pipe(p);
    CHECK_ERR(cio_add_reader(loop, p[0], count_cb, &n), 0);
    CHECK_ERR(cio_add_writer(loop, p[1], count_cb, &n), 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_EQ(cio_remove_reader(loop, p[0]), 0);
    CHECK_EQ(cio_remove_writer(loop, p[1]), 0);
    CHECK_EQ(write(p[1], "y", 1), 1); /* still the caller's, still open */
    CHECK_EQ(n, 0);
    cio_loop_free(loop);
    close_pair(p);
}
