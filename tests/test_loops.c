/* cio_run_loops: a loop per thread, spread connections, one stop for all.
 *
 * The servers listen with SO_REUSEPORT on a port the test holds first
 * (cio_hold_port), so every loop can bind the same port without one of
 * them going first. */
#define _GNU_SOURCE
#include "harness.h"
#include "util.h"

#include <cio.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_LOOPS = 8 };

/* What every loop's main task saw. */
static atomic_int ran, seen_index[MAX_LOOPS], counts[MAX_LOOPS];

static int note_index(void)
{
    int i = cio_loops_index();
    CHECK(i >= 0 && i < MAX_LOOPS);
    atomic_fetch_add(&ran, 1);
    atomic_fetch_add(&seen_index[i], 1);
    atomic_store(&counts[i], cio_loops_count());
    return i;
}

static int note_and_return(void *arg)
{
    (void)arg;
    note_index();
    return 0;
}

TEST(loops_each_loop_runs_the_main_task_with_its_index)
{
    int threads = thread_base();
    cio_loops_options o = {.nloops = 3};
    CHECK_ERR(cio_run_loops(note_and_return, NULL, &o), 0);
    CHECK_EQ(atomic_load(&ran), 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(atomic_load(&seen_index[i]), 1);
        CHECK_EQ(atomic_load(&counts[i]), 3);
    }
    CHECK_EQ(cio_loops_index(), -1);
    CHECK_EQ(cio_loops_count(), 0);
    WAIT_UNTIL(thread_count() <= threads); /* joined threads may linger */
}

TEST(loops_default_to_one_loop_per_cpu)
{
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK_ERR(cio_run_loops(note_and_return, NULL, NULL), 0);
    CHECK_EQ(atomic_load(&ran), CPU_COUNT(&set));
}

/* --------------------------------------------------------- stopping */

static int fail_on_loop_1(void *arg)
{
    (void)arg;
    if (note_index() == 1)
        return -EPROTO;
    return cio_loops_wait_stop(); /* 0: the failure stopped us */
}

TEST(loops_a_failing_main_task_stops_the_others)
{
    cio_loops_options o = {.nloops = 3};
    CHECK_ERR(cio_run_loops(fail_on_loop_1, NULL, &o), -EPROTO);
    CHECK_EQ(atomic_load(&ran), 3);
}

static int stop_from_loop_2(void *arg)
{
    (void)arg;
    if (note_index() == 2)
        CHECK_ERR(cio_loops_stop(), 0);
    CHECK_ERR(cio_loops_wait_stop(), 0);
    CHECK_ERR(cio_loops_stop(), 0); /* idempotent */
    return cio_loops_wait_stop();   /* at once: it stays stopped */
}

TEST(loops_stop_from_one_loop_reaches_every_loop)
{
    cio_loops_options o = {.nloops = 4};
    CHECK_ERR(cio_run_loops(stop_from_loop_2, NULL, &o), 0);
    CHECK_EQ(atomic_load(&ran), 4);
}

static int sigterm_from_loop_1(void *arg)
{
    (void)arg;
    if (note_index() == 1)
        CHECK(kill(getpid(), SIGTERM) == 0); /* to the process: any thread */
    return cio_loops_wait_stop();
}

static bool blocked(int sig)
{
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    return sigismember(&now, sig);
}

TEST(loops_sigterm_stops_every_loop_and_its_handling_ends_with_them)
{
    cio_loops_options o = {.nloops = 3, .stop_signals = 1};
    CHECK_ERR(cio_run_loops(sigterm_from_loop_1, NULL, &o), 0);
    CHECK_EQ(atomic_load(&ran), 3);
    struct sigaction sa;
    CHECK(sigaction(SIGTERM, NULL, &sa) == 0);
    CHECK(sa.sa_handler == SIG_DFL);
    CHECK(!blocked(SIGTERM) && !blocked(SIGINT));
}

static int wait_stop_in_a_plain_loop(void *arg)
{
    (void)arg;
    CHECK_EQ(cio_loops_index(), -1);
    CHECK_EQ(cio_loops_count(), 0);
    CHECK_ERR(cio_loops_stop(), -EINVAL);
    CHECK_ERR(cio_run_loops(note_and_return, NULL, NULL), -EBUSY);
    return cio_loops_wait_stop();
}

TEST(loops_bad_arguments_and_calls_outside_a_group)
{
    cio_loops_options o = {.nloops = -1};
    CHECK_ERR(cio_run_loops(NULL, NULL, NULL), -EINVAL);
    CHECK_ERR(cio_run_loops(note_and_return, NULL, &o), -EINVAL);
    CHECK_ERR(cio_run(wait_stop_in_a_plain_loop, NULL), -EINVAL);
    CHECK_ERR(cio_loops_stop(), -EINVAL);
    CHECK_EQ(atomic_load(&ran), 0);
}

static int note_and_wait_stop(void *arg)
{
    (void)arg;
    note_index();
    return cio_loops_wait_stop();
}

/* Loop 0 runs before any other loop lists itself: the stop must reach a
 * loop that was not there yet when it was given. */
TEST(loops_a_thread_that_cannot_start_stops_the_group)
{
    int threads = thread_base();
    cio_loops_options o = {.nloops = 3};
    cio__fault_arm_call(CIO__FAULT_SYS | CIO__FAULT_PERSIST, 2, EAGAIN,
                        "pthread_create");
    int r = cio_run_loops(note_and_wait_stop, NULL, &o);
    CHECK(cio__fault_fired());
    cio__fault_disarm();
    CHECK_ERR(r, -EAGAIN);
    CHECK_EQ(atomic_load(&ran), 2); /* loop 0 and the thread that started */
    WAIT_UNTIL(thread_count() <= threads);
}

/* ------------------------------------------------------ a real server */

enum { NLOOPS = 2, NCLIENTS = 64 };

static atomic_int listening, served[NLOOPS];
static int port;

/* Says which loop took the connection, then waits for the peer to go. */
static int tell_loop(cio_stream *s, void *arg)
{
    (void)arg;
    unsigned char i = (unsigned char)cio_loops_index();
    atomic_fetch_add(&served[i], 1);
    int err = cio_stream_write(s, &i, 1);
    if (!err)
        err = cio_stream_drain(s);
    char byte;
    while (!err && cio_stream_read(s, &byte, 1) > 0)
        ;
    return 0;
}

/* Loop 0 also plays the clients, once every loop listens: it keeps all
 * its connections open while the group stops. */
static int clients(void *arg)
{
    (void)arg;
    static cio_stream *s[NCLIENTS];
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    TASK_WAIT_UNTIL(atomic_load(&listening) == NLOOPS);
    int took[NLOOPS] = {0};
    for (int i = 0; i < NCLIENTS; i++) {
        CHECK_ERR(cio_open_connection("127.0.0.1", p, NULL, &s[i]), 0);
        unsigned char who;
        size_t partial;
        CHECK_EQ(cio_stream_readexactly(s[i], &who, 1, &partial), 1);
        CHECK(who < NLOOPS);
        took[who]++;
    }
    for (int i = 0; i < NLOOPS; i++)
        CHECK(took[i] > 0); /* each misses all 64 with odds 2^-64 */
    CHECK_ERR(cio_loops_stop(), 0);
    for (int i = 0; i < NCLIENTS; i++) {
        char byte;
        CHECK_EQ(cio_stream_read(s[i], &byte, 1), 0); /* closed by its loop */
        cio_stream_free(s[i]);
    }
    return 0;
}

/* A tell_loop server with reuse_port on 127.0.0.1 port p. */
static cio_server *reuse_port_server(int p)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", p);
    cio_server_options so = {.reuse_port = 1};
    cio_server *srv;
    CHECK_ERR(cio_start_server(tell_loop, NULL, "127.0.0.1", ps, NULL, &so,
                               &srv), 0);
    return srv;
}

static int serve_on_each_loop(void *arg)
{
    (void)arg;
    cio_server *srv = reuse_port_server(port);
    atomic_fetch_add(&listening, 1);
    cio_task *c = NULL;
    if (cio_loops_index() == 0)
        c = spawn(clients, NULL);
    CHECK_ERR(cio_loops_wait_stop(), 0);
    cio_server_close(srv);
    cio_server_close_clients(srv);
    CHECK_ERR(cio_server_wait_closed(srv), 0);
    cio_server_free(srv);
    return c ? finish(c) : 0;
}

TEST(loops_connections_spread_over_the_loops_and_stop_closes_them_all)
{
    int threads = thread_base(), fds = test_open_fds();
    int held = cio_hold_port("127.0.0.1", &port);
    CHECK(held >= 0);
    cio_loops_options o = {.nloops = NLOOPS};
    CHECK_ERR(cio_run_loops(serve_on_each_loop, NULL, &o), 0);
    close(held);
    for (int i = 0; i < NLOOPS; i++)
        CHECK(atomic_load(&served[i]) > 0);
    CHECK_EQ(atomic_load(&served[0]) + atomic_load(&served[1]), NCLIENTS);
    CHECK_EQ(test_open_fds(), fds);
    WAIT_UNTIL(thread_count() <= threads);
}

/* The held port keeps out a socket without SO_REUSEPORT, lets a
 * reuse_port listener in, and takes no connection itself. */
static int listen_on_held(void *arg)
{
    (void)arg;
    int p = 0, held = cio_hold_port("127.0.0.1", &p);
    CHECK(held >= 0 && p > 0);
    int plain = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(plain, (struct sockaddr *)&a, sizeof a) < 0 && errno == EADDRINUSE);
    close(plain);
    int refused = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(refused, (struct sockaddr *)&a, sizeof a) < 0 &&
          errno == ECONNREFUSED); /* not listening: it takes nothing */
    close(refused);
    cio_server *srv = reuse_port_server(p);
    CHECK_EQ(cio_server_port(srv), p);
    cio_server_free(srv);
    close(held);
    return 0;
}

TEST(loops_hold_port_keeps_a_port_for_reuse_port_servers)
{
    run_strict(listen_on_held, NULL);
    int p = 70000;
    CHECK_ERR(cio_hold_port(NULL, &p), -EINVAL);
    p = 0;
    CHECK_ERR(cio_hold_port("localhost", &p), -EINVAL); /* numeric only */
    CHECK_ERR(cio_hold_port(NULL, NULL), -EINVAL);
    int fd = cio_hold_port("::1", &p);
    CHECK(fd >= 0 || fd == -EADDRNOTAVAIL); /* a machine without IPv6 */
    if (fd >= 0) {
        CHECK(p > 0);
        close(fd);
    }
}
