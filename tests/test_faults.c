/* Faults at every step: each scenario runs on a loop with its N-th
 * allocation, or its N-th system call of one kind, failing - once, or
 * from then on for good - for every N the scenario reaches. After each
 * run the fault is lifted and the scenario runs again on the same loop:
 * it must succeed (the loop recovered). Bad is a crash, a hang (the
 * harness's time limit, or a scenario's own bound on a wait that must
 * end), a leak (the harness checks memory and fds after each test), a
 * call that returned 0 for something that then never happened, or a
 * failed recovery. */
#define _GNU_SOURCE
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <unistd.h>

/* A scenario: runs as a task of the loop; 0, or the error it met. */
typedef int (*scenario_fn)(void *arg);

/* The longest any wait that must end is given, however slow the machine:
 * a scenario that hits it has lost something. */
static double bound(void) { return 5.0 * tscale(); }

/* Runs fn as a task of loop until it finishes, with the armed fault;
 * then lifts the fault (*fired: whether it was met) and, if the loop
 * stopped before the task finished (its poller failed for good, say),
 * cancels the task and lets it finish. Returns 0 or fn's error, or the
 * loop's own when it could not run. */
static int run_on(cio_loop *loop, scenario_fn fn, void *arg, bool *fired)
{
    cio_task *t = NULL;
    int r = cio_task_new(loop, fn, arg, NULL, &t);
    if (!r)
        r = cio_loop_run_until_complete(loop, t);
    if (fired)
        *fired = cio__fault_fired();
    cio__fault_disarm();
    if (!t)
        return r;
    if (!cio_future_done(t))
        cio_task_cancel(t);
    while (!cio_future_done(t))
        CHECK(cio_loop_run_once(loop, CIO_NO_TIMEOUT) >= 0);
    cio_future_unref(t);
    return r;
}

typedef struct fault_kind {
    const char *name;   /* for the report */
    unsigned kinds;     /* CIO__FAULT_ALLOC or CIO__FAULT_SYS */
    int err;            /* for system calls */
    const char *call;   /* NULL: every system call */
} fault_kind;

static const fault_kind kinds[] = {
    {"allocation", CIO__FAULT_ALLOC, 0, NULL},
    {"syscall EMFILE", CIO__FAULT_SYS, EMFILE, NULL},
    {"syscall EINTR", CIO__FAULT_SYS, EINTR, NULL},
    {"syscall EAGAIN", CIO__FAULT_SYS, EAGAIN, NULL},
    {"syscall ENOMEM", CIO__FAULT_SYS, ENOMEM, NULL},
};

/* What the loop holds once the scenario ran unharmed: after any fault and
 * its rerun it must hold no more (a failure that kept memory or an fd
 * until the loop closes is a leak all the same). A few allocations may
 * come and stay with timing (a second executor worker started because
 * the first was not idle yet, a post array first needed): a leak on a
 * failure path grows with every N and passes that slack within a few;
 * the runner's exact count after the test catches any that remain. */
enum { HELD_SLACK = 8 };

typedef struct held {
    long allocs;
    int fds;
} held;

static held held_now(void) { return (held){cio__alloc_live(), test_open_fds()}; }

static void check_held(const held *base, const fault_kind *k, bool persist,
                       int n)
{
    held h = held_now();
    if (h.allocs > base->allocs + HELD_SLACK || h.fds > base->fds)
        test_fail(__FILE__, __LINE__,
                  "%s %s #%d: after the rerun the loop holds %ld more "
                  "allocations and %d more fds", k->name,
                  persist ? "for good" : "once", n, h.allocs - base->allocs,
                  h.fds - base->fds);
}

/* make faults: CIO_FAULTS=full runs every scenario at every N (the
 * short form, in make check, tries every N of the light scenarios and
 * a spread of them in the heavy ones); CIO_FAULTS_REPORT names a file
 * each matrix appends its line to, for the table. */
static bool full_mode(void)
{
    const char *m = getenv("CIO_FAULTS");
    return m && strcmp(m, "full") == 0;
}

/* Every how many N a heavy scenario tries: 1 in full mode. */
static int heavy_stride(int short_stride) { return full_mode() ? 1 : short_stride; }
static int stride = 1; /* the matrix's step over N; per test (a process) */

/* One fault kind in one mode, for every N: returns how many runs met it. */
static int fault_every_n(cio_loop *loop, scenario_fn fn, void *arg,
                         const fault_kind *k, bool persist)
{
    held base = held_now();
    int met = 0;
    for (int n = 1;; n += stride) {
        unsigned mode = k->kinds | (persist ? CIO__FAULT_PERSIST : 0);
        cio__fault_arm_call(mode, n, k->err, k->call);
        if (getenv("FAULT_TRACE"))
            fprintf(stderr, "%s %d %d\n", k->name, persist, n);
        bool fired;
        int r = run_on(loop, fn, arg, &fired);
        if (r > 0)
            test_fail(__FILE__, __LINE__, "%s %s #%d: returned %d", k->name,
                      persist ? "for good" : "once", n, r);
        int again = run_on(loop, fn, arg, NULL);
        if (again != 0)
            test_fail(__FILE__, __LINE__,
                      "%s %s #%d: the rerun on the same loop returned %d (%s)",
                      k->name, persist ? "for good" : "once", n, again,
                      cio_strerror(again));
        check_held(&base, k, persist, n);
        if (!fired)
            return met;
        met++;
    }
}

/* The whole matrix for one scenario; fails if no fault was ever met (the
 * scenario would then prove nothing). */
#define fault_matrix(fn, arg) fault_matrix_named(#fn, fn, arg)
static void fault_matrix_named(const char *name, scenario_fn fn, void *arg)
{
    int threads = thread_base();
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    /* Twice: the first run may leave what stays for good (a worker). */
    CHECK_ERR(run_on(loop, fn, arg, NULL), 0);
    CHECK_ERR(run_on(loop, fn, arg, NULL), 0);
    int met = 0;
    /* EINTR only once: it is transient by nature, and a call retried on
     * it would rightly retry forever if it never ended. */
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        for (int persist = 0; persist < 2 - (kinds[i].err == EINTR); persist++)
            met += fault_every_n(loop, fn, arg, &kinds[i], persist);
    /* Closing abandons the default executor (asyncio's shutdown without
     * waiting): join its threads first, or their memory is still live
     * when the harness counts. */
    cio__executor_shutdown_default(loop, 30);
    cio_loop_free(loop);
    CHECK(met > 0);
    WAIT_UNTIL(thread_count() <= threads); /* joined threads may linger */
    const char *out = getenv("CIO_FAULTS_REPORT");
    FILE *f = out ? fopen(out, "a") : NULL;
    if (f) {
        fprintf(f, "%s %s %d\n", name,
                getenv("CIO_BACKEND") ? getenv("CIO_BACKEND") : "epoll", met);
        fclose(f);
    }
}

/* As fault_every_n, but each N on a loop of its own, so that the faults
 * meet the scenario's first run (a loop's first signal handler, first
 * worker thread), which fault_matrix's warm-up run has made already.
 * Returns how many runs met the fault. */
static int fault_fresh_loops(scenario_fn fn, void *arg, const fault_kind *k,
                             bool persist)
{
    for (int n = 1;; n++) {
        cio_loop *loop;
        CHECK_ERR(cio_loop_new(&loop, NULL), 0);
        cio__fault_arm_call(k->kinds | (persist ? CIO__FAULT_PERSIST : 0), n,
                            k->err, k->call);
        bool fired;
        int r = run_on(loop, fn, arg, &fired);
        if (r > 0)
            test_fail(__FILE__, __LINE__, "%s %s #%d on a new loop: "
                      "returned %d", k->name, persist ? "for good" : "once",
                      n, r);
        int again = run_on(loop, fn, arg, NULL);
        if (again != 0)
            test_fail(__FILE__, __LINE__, "%s %s #%d on a new loop: the "
                      "rerun returned %d (%s)", k->name,
                      persist ? "for good" : "once", n, again,
                      cio_strerror(again));
        cio__executor_shutdown_default(loop, 30);
        cio_loop_free(loop);
        if (!fired)
            return n - 1;
    }
}

/* Awaits f for at most the bound; a timeout there is a lost wake-up. */
static int await_bounded(cio_future *f, const char *what)
{
    cio_timeout_scope s;
    int r = cio_timeout(&s, bound());
    if (r)
        return r;
    r = cio_await(f, NULL);
    if (cio_timeout_end(&s) == -ETIMEDOUT)
        test_fail(__FILE__, __LINE__, "%s never finished", what);
    return r;
}

/* --------------------------------------------------------------- signals */

static void count_signal(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

/* add_signal_handler either installs the handler for real (a raised
 * signal reaches it, not the default action that would kill us) or
 * returns its error with nothing changed. */
static int signal_scenario(void *arg)
{
    atomic_int *seen = arg;
    cio_loop *loop = cio_get_running_loop();
    int before = atomic_load(seen);
    int r = cio_add_signal_handler(loop, SIGUSR1, count_signal, seen);
    if (r)
        return r;
    raise(SIGUSR1);
    cio_timeout_scope s;
    r = cio_timeout(&s, bound());
    while (!r && atomic_load(seen) == before)
        r = cio_sleep(0.001);
    if (cio_timeout_end(&s) == -ETIMEDOUT)
        test_fail(__FILE__, __LINE__, "the handler never ran");
    CHECK_EQ(cio_remove_signal_handler(loop, SIGUSR1), 1);
    return r;
}

TEST_T(faults_signal_handler, 60)
{
    atomic_int seen = 0;
    fault_matrix(signal_scenario, &seen);
}

/* The same from a new loop each time: the 8th allocation of a loop's
 * first handler, once or for good, is one of these. */
TEST_T(faults_signal_handler_on_a_new_loop, 60)
{
    atomic_int seen = 0;
    for (int persist = 0; persist < 2; persist++)
        CHECK(fault_fresh_loops(signal_scenario, &seen, &kinds[0], persist) >=
              8);
}

/* -------------------------------------------------------------- executor */

static int add_one(void *arg) { return (int)(intptr_t)arg + 1; }

/* Work handed to a thread either comes back with its result or the call
 * fails: it never waits forever (no worker could be started, say). */
static int executor_scenario(void *arg)
{
    (void)arg;
    cio_future *f;
    int r = cio_run_in_executor(NULL, NULL, add_one, (void *)41, &f);
    if (r)
        return r;
    r = await_bounded(f, "run_in_executor's work");
    cio_future_unref(f);
    return r < 0 ? r : (r == 42 ? 0 : -EPROTO);
}

TEST_T(faults_executor, 60) { fault_matrix(executor_scenario, NULL); }

/* A new loop's default executor when no thread can start, for good:
 * run_in_executor fails or its work fails with the error, never waits. */
TEST_T(faults_executor_on_a_new_loop_without_threads, 60)
{
    const fault_kind no_thread = {"pthread_create EAGAIN", CIO__FAULT_SYS,
                                  EAGAIN, "pthread_create"};
    CHECK(fault_fresh_loops(executor_scenario, NULL, &no_thread, true) > 0);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        fault_fresh_loops(executor_scenario, NULL, &kinds[i], true);
}

/* A private executor whose only worker retired: under pthread_create
 * failing for good, submitting fails with the error, and once threads
 * can start again the same executor works. */
TEST(faults_executor_no_thread_can_start)
{
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 2), 0);
    cio__fault_arm_call(CIO__FAULT_SYS | CIO__FAULT_PERSIST, 1, EAGAIN,
                        "pthread_create");
    cio_cfuture *cf = (cio_cfuture *)&cf;
    CHECK_ERR(cio_executor_submit(ex, add_one, (void *)1, &cf), -EAGAIN);
    CHECK(cf == NULL);
    CHECK(cio__fault_fired());
    cio__fault_disarm();
    CHECK_ERR(cio_executor_submit(ex, add_one, (void *)1, &cf), 0);
    CHECK_EQ(cio_cfuture_result(cf, CIO_NO_TIMEOUT), 2);
    cio_cfuture_unref(cf);
    cio_executor_free(ex);
}

/* --------------------------------------------------------- other threads */

/* Static, not on a task's stack: a post that went through may run after
 * the scenario that made it returned (on the rerun, or at loop close). */
typedef struct poster {
    cio_loop *loop;
    atomic_int ran;
    int posted;      /* call_soon_threadsafe's answer */
    int coro;        /* run_coroutine_threadsafe's result, or its error */
    atomic_int done; /* the thread finished */
} poster;

static poster the_poster;

static void note_ran(void *arg) { atomic_fetch_add(&((poster *)arg)->ran, 1); }
static int coro_seven(void *arg) { (void)arg; return 7; }

static void *post_once(void *arg)
{
    poster *p = arg;
    p->posted = cio_call_soon_threadsafe(p->loop, note_ran, p);
    return NULL;
}

/* From another thread: a post that returned 0 runs on the loop. */
static int threadsafe_scenario(void *arg)
{
    (void)arg;
    poster *p = &the_poster;
    atomic_store(&p->ran, 0);
    p->loop = cio_get_running_loop();
    pthread_t th;
    if (pthread_create(&th, NULL, post_once, p) != 0)
        return -EAGAIN;
    pthread_join(th, NULL); /* post_once never waits for the loop */
    if (p->posted)
        return p->posted;
    cio_timeout_scope s;
    int r = cio_timeout(&s, bound()); /* may fail too (its record) */
    if (r)
        return r;
    while (!r && atomic_load(&p->ran) == 0)
        r = cio_sleep(0.001);
    if (cio_timeout_end(&s) == -ETIMEDOUT)
        test_fail(__FILE__, __LINE__, "a threadsafe post never ran");
    return r;
}

TEST_T(faults_threadsafe, 60)
{
    fault_matrix(threadsafe_scenario, NULL);
    for (int persist = 0; persist < 2; persist++)
        fault_fresh_loops(threadsafe_scenario, NULL, &kinds[0], persist);
}

static void *start_coro(void *arg)
{
    poster *p = arg;
    cio_cfuture *cf;
    p->coro = cio_run_coroutine_threadsafe(p->loop, coro_seven, NULL, &cf);
    if (p->coro == 0) {
        p->coro = cio_cfuture_result(cf, bound());
        cio_cfuture_unref(cf);
    }
    atomic_store(&p->done, 1);
    return NULL;
}

/* A coroutine started from another thread while every allocation fails:
 * the call fails, or its future completes with an error; it never waits
 * out the bound (that would be -ETIMEDOUT). */
TEST(faults_run_coroutine_threadsafe_without_memory)
{
    for (long n = 1; n < 6; n++) {
        poster *p = &the_poster;
        memset(p, 0, sizeof *p);
        CHECK_ERR(cio_loop_new(&p->loop, NULL), 0);
        cio__fault_arm(CIO__FAULT_ALLOC | CIO__FAULT_PERSIST, n, 0);
        pthread_t th;
        CHECK_EQ(pthread_create(&th, NULL, start_coro, p), 0);
        while (!atomic_load(&p->done))
            if (cio_loop_run_once(p->loop, 0.001) < 0)
                test_fail(__FILE__, __LINE__, "the loop stopped working");
        pthread_join(th, NULL);
        cio__fault_disarm();
        CHECK(p->coro == 7 || (p->coro < 0 && p->coro != -ETIMEDOUT));
        cio_loop_free(p->loop);
    }
}

/* ------------------------------------------------------------- the loop */

/* A poller that fails for good: run_forever returns its error instead of
 * spinning or hanging, and the loop works again once it recovers. */
TEST(faults_poller_fails_for_good)
{
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    int pp[2];
    CHECK(pipe(pp) == 0);
    poster p = {.loop = loop};
    CHECK_ERR(cio_add_reader(loop, pp[0], note_ran, &p), 0);
    const char *call =
        strcmp(getenv("CIO_BACKEND") ? getenv("CIO_BACKEND") : "epoll",
               "poll") == 0
            ? "poll"
            : "epoll_wait";
    cio__fault_arm_call(CIO__FAULT_SYS | CIO__FAULT_PERSIST, 1, ENOMEM, call);
    CHECK_ERR(cio_loop_run_forever(loop), -ENOMEM);
    CHECK_ERR(cio_loop_run_once(loop, 0.01), -ENOMEM);
    cio__fault_disarm();
    CHECK_EQ(write(pp[1], "x", 1), 1);
    CHECK_ERR(cio_loop_run_once(loop, CIO_NO_TIMEOUT), 1);
    CHECK_EQ(atomic_load(&p.ran), 1);
    cio_remove_reader(loop, pp[0]);
    close(pp[0]);
    close(pp[1]);
    cio_loop_free(loop);
}

static int sleep_scenario(void *arg)
{
    (void)arg;
    cio_handle h;
    poster p = {0};
    int r = cio_call_later(cio_get_running_loop(), 0.001, note_ran, &p, &h);
    if (r)
        return r;
    r = cio_sleep(0.002);
    if (!r)
        CHECK_EQ(atomic_load(&p.ran), 1);
    cio_handle_cancel(h);
    return r;
}

TEST_T(faults_timers_and_sleep, 60) { fault_matrix(sleep_scenario, NULL); }

/* ------------------------------------------------- Unix sockets and UDP */

/* Runs fn(arg) under a timeout scope of the bound: a timeout there is a
 * lost wake-up (the scenario fails the test). Returns fn's result. */
static ssize_t bounded(ssize_t (*fn)(void *), void *arg, const char *what)
{
    cio_timeout_scope s;
    int r = cio_timeout(&s, bound());
    if (r)
        return r;
    ssize_t n = fn(arg);
    if (cio_timeout_end(&s) == -ETIMEDOUT)
        test_fail(__FILE__, __LINE__, "%s never finished", what);
    return n;
}

/* The server's side of a connection: echoes one line. Its errors are the
 * fault's, seen by the client; the task itself always succeeds. */
static int echo_one_line(cio_stream *s, void *arg)
{
    (void)arg;
    const char *line;
    ssize_t n = cio_stream_readline(s, &line);
    if (n > 0 && cio_stream_write(s, line, (size_t)n) == 0)
        cio_stream_drain(s);
    return 0;
}

static ssize_t read_reply(void *arg)
{
    const char *line;
    ssize_t n = cio_stream_readline(arg, &line);
    return n == 5 && memcmp(line, "ping\n", 5) == 0 ? 0 : n < 0 ? n : -EPROTO;
}

static ssize_t wait_closed(void *arg) { return cio_server_wait_closed(arg); }

/* One line through a Unix stream server and back. */
static int unix_echo(const char *path)
{
    cio_server *srv;
    int r = cio_start_unix_server(echo_one_line, NULL, path, NULL, NULL, &srv);
    if (r)
        return r;
    cio_stream *s;
    r = cio_open_unix_connection(path, NULL, &s);
    if (!r) {
        r = cio_stream_write(s, "ping\n", 5);
        if (!r)
            r = (int)bounded(read_reply, s, "the Unix echo");
        cio_stream_free(s);
    }
    cio_server_close(srv);
    int closed = (int)bounded(wait_closed, srv, "closing the Unix server");
    cio_server_free(srv);
    return r ? r : closed;
}

/* A datagram endpoint's state. The transport is valid until its
 * connection_lost, which may come early (a fault ends it) or after the
 * scenario returned (a close completes on a later turn): whichever of the
 * two comes last frees the state. */
typedef struct udp_end {
    cio_transport *t;
    int got;      /* datagrams received */
    bool echo;    /* sends each one back */
    bool lost;    /* connection_lost ran: t is gone */
    bool dropped; /* the scenario is done with it */
} udp_end;

static void udp_received(cio_transport *t, const char *data, size_t n,
                         const struct sockaddr *addr, socklen_t len, void *ctx)
{
    udp_end *e = ctx;
    e->got++;
    if (e->echo) /* may fail with the fault: the client sends again */
        cio_transport_sendto(t, data, n, addr, len);
}

static void udp_lost(cio_transport *t, int err, void *ctx)
{
    (void)t, (void)err;
    udp_end *e = ctx;
    e->lost = true;
    if (e->dropped)
        cio__free(e);
}

static void udp_error(cio_transport *t, int err, void *ctx)
{
    (void)t, (void)err, (void)ctx; /* a datagram lost to the fault */
}

static const cio_protocol udp_proto = {.datagram_received = udp_received,
                                       .connection_lost = udp_lost,
                                       .error_received = udp_error};

/* An endpoint bound to loopback (remote_port NULL) or connected there. */
static udp_end *udp_open(const char *remote_port, bool echo, int *r)
{
    udp_end *e = cio__calloc(1, sizeof *e);
    if (!e) {
        *r = -ENOMEM;
        return NULL;
    }
    e->echo = echo;
    *r = remote_port ? cio_create_datagram_endpoint(
                           NULL, NULL, "127.0.0.1", remote_port, &udp_proto,
                           e, &e->t)
                     : cio_create_datagram_endpoint("127.0.0.1", "0", NULL,
                                                    NULL, &udp_proto, e, &e->t);
    if (*r) {
        cio__free(e);
        return NULL;
    }
    return e;
}

/* Closes e's transport unless a fault ended it, and lets go of e. */
static void udp_drop(udp_end *e)
{
    if (e->lost) {
        cio__free(e);
        return;
    }
    e->dropped = true;
    cio_transport_close(e->t);
}

/* Sends until the echo comes back: a datagram lost to a fault is sent
 * again, as UDP clients do; a fault for good fails a call instead, or
 * ends one of the endpoints (it could not read, say). */
static int udp_ping(udp_end *se, udp_end *ce)
{
    for (int tries = 0; tries < 1000; tries++) {
        if (se->lost || ce->lost)
            return -EPIPE;
        int r = cio_transport_sendto(ce->t, "ping", 4, NULL, 0);
        if (r)
            return r;
        for (int i = 0; i < 20 && !ce->got; i++)
            if ((r = cio_sleep(0.0005)) != 0)
                return r;
        if (ce->got)
            return 0;
    }
    test_fail(__FILE__, __LINE__, "no datagram came back");
}

static int port_text(udp_end *e, char *buf, size_t cap)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    int r = cio_transport_get_extra_info(e->t, "sockname", &sin, &len);
    if (!r)
        snprintf(buf, cap, "%d", ntohs(sin.sin_port));
    return r;
}

/* A datagram to a UDP echo endpoint and back. */
static int udp_echo(void)
{
    char port[16];
    int r;
    udp_end *se = udp_open(NULL, true, &r), *ce = NULL;
    if (!se)
        return r;
    r = port_text(se, port, sizeof port);
    if (!r && (ce = udp_open(port, false, &r)) != NULL) {
        r = udp_ping(se, ce);
        udp_drop(ce);
    }
    udp_drop(se);
    return r;
}

/* Protocols over a Unix socket: the server's side echoes what it gets. */
static void echo_back(cio_transport *t, const char *data, size_t n, void *ctx)
{
    (void)ctx;
    cio_transport_write(t, data, n); /* may fail with the fault */
}

static const cio_protocol echo_proto = {.data_received = echo_back};

/* The client's side: an end (as a datagram endpoint's) counting bytes. */
static void client_got(cio_transport *t, const char *data, size_t n,
                       void *ctx)
{
    (void)t, (void)data;
    ((udp_end *)ctx)->got += (int)n;
}

static const cio_protocol client_proto = {.data_received = client_got,
                                          .connection_lost = udp_lost};

static int unix_protocols(const char *path)
{
    cio_server *srv;
    int r = cio_create_unix_server(path, &echo_proto, NULL, NULL, NULL, &srv);
    if (r)
        return r;
    udp_end *e = cio__calloc(1, sizeof *e);
    r = e ? cio_create_unix_connection(path, &client_proto, e, &e->t)
          : -ENOMEM;
    if (r) {
        cio__free(e);
        e = NULL;
    } else {
        r = cio_transport_write(e->t, "ping", 4);
    }
    for (int i = 0; !r && e->got < 4 && !e->lost; i++) {
        if (i == 1000)
            test_fail(__FILE__, __LINE__, "the Unix echo never came back");
        r = cio_sleep(0.001);
    }
    if (!r && e->got < 4)
        r = -EPIPE; /* a fault ended the connection */
    if (e)
        udp_drop(e);
    cio_server_close(srv);
    cio_server_free(srv);
    return r;
}

static int unix_udp_scenario(void *arg)
{
    int r = unix_echo(arg);
    int p = unix_protocols(arg);
    int u = udp_echo();
    return r ? r : p ? p : u;
}

TEST_T(faults_unix_socket_and_udp, 120)
{
    char dir[] = "/tmp/cio-faults-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof path, "%s/echo.sock", dir);
    fault_matrix(unix_udp_scenario, path);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        for (int persist = 0; persist < 2 - (kinds[i].err == EINTR); persist++)
            fault_fresh_loops(unix_udp_scenario, path, &kinds[i], persist);
    /* A connection's handler task whose stack cannot be guarded. */
    const fault_kind guard = {"madvise ENOMEM", CIO__FAULT_SYS, ENOMEM,
                              "madvise"};
    for (int persist = 0; persist < 2; persist++)
        CHECK(fault_fresh_loops(unix_udp_scenario, path, &guard, persist) >=
              2);
    unlink(path);
    CHECK(rmdir(dir) == 0);
}

/* ---------------------------------------------------------------- stacks */

static int return_five(void *arg) { (void)arg; return 5; }

/* Spawns a task and waits for it: 0 when it ran and returned 5, else the
 * task's error. The wait is bounded: a task that never starts is lost. */
static int spawn_and_wait(cio_loop *loop)
{
    cio_task *t;
    int r = cio_task_new(loop, return_five, NULL, NULL, &t);
    if (r)
        return r;
    for (int i = 0; i < 1000 && !cio_future_done(t); i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    if (!cio_future_done(t))
        test_fail(__FILE__, __LINE__, "the task never finished");
    r = cio_future_result(t, NULL);
    cio_future_unref(t);
    return r == 5 ? 0 : r;
}

/* The guard page of a task's stack cannot be installed (madvise fails
 * with ENOMEM or EAGAIN, once or for good): the task's future fails with
 * that error, and once madvise works again the loop spawns tasks. */
TEST(faults_stack_guard_cannot_be_installed)
{
    const int errs[] = {ENOMEM, EAGAIN};
    for (int persist = 0; persist < 2; persist++)
        for (int e = 0; e < 2; e++) {
            cio_loop *loop;
            CHECK_ERR(cio_loop_new(&loop, NULL), 0);
            cio__fault_arm_call(CIO__FAULT_SYS |
                                    (persist ? CIO__FAULT_PERSIST : 0),
                                1, errs[e], "madvise");
            CHECK_ERR(spawn_and_wait(loop), -errs[e]);
            CHECK(cio__fault_fired());
            cio__fault_disarm();
            CHECK_ERR(spawn_and_wait(loop), 0);
            cio_loop_free(loop);
        }
}

/* ------------------------------------------------------- sync and queues */

typedef struct handoff {
    cio_lock lock;
    cio_queue *q;
    int holders;     /* inside the lock now: never more than one */
    int got;         /* the items the consumer took, summed */
} handoff;

static int consume_three(void *arg)
{
    handoff *h = arg;
    for (int i = 0; i < 3; i++) {
        int item;
        int r = cio_queue_get(h->q, &item);
        if (r)
            return r;
        if ((r = cio_lock_acquire(&h->lock)))
            return r;
        CHECK_EQ(++h->holders, 1);
        h->got += item;
        r = cio_sleep(0);
        h->holders--;
        cio_lock_release(&h->lock);
        if (r)
            return r;
    }
    return 0;
}

/* A producer and a consumer through a bounded queue, both taking a lock:
 * every item put comes out once, whatever failed on the way. */
/* Cancels t and waits until it ended (it borrows the caller's stack, so
 * it must not outlive it), even where no wait can be set up: yielding
 * needs no memory. The caller's own cancellation is withdrawn meanwhile
 * (its yields would return at once) and then requested again. */
static int reap(cio_task *t)
{
    cio_task *me = cio_current_task();
    int withdrawn = 0;
    for (; cio_task_cancelling(me) > 0; withdrawn++)
        cio_task_uncancel(me);
    cio_task_cancel(t);
    while (!cio_future_done(t))
        cio_sleep(0);
    for (int i = 0; i < withdrawn; i++)
        cio_task_cancel(me);
    return -ECANCELED;
}

static int sync_queue_scenario(void *arg)
{
    (void)arg;
    handoff h = {.lock = CIO_LOCK_INIT};
    int r = cio_queue_new(&h.q, sizeof(int), 1);
    if (r)
        return r;
    cio_task *c = NULL;
    r = cio_task_new(NULL, consume_three, &h, NULL, &c);
    for (int i = 1; !r && i <= 3; i++)
        r = cio_queue_put(h.q, &i);
    if (c) {
        if (r)
            cio_task_cancel(c);
        int cr = await_bounded(c, "the consumer");
        if (!cio_future_done(c)) /* no memory even to wait with a bound */
            cr = reap(c);
        if (!r && !cr)
            CHECK_EQ(h.got, 6);
        r = r ? r : cr;
        cio_future_unref(c);
    }
    cio_queue_free(h.q);
    return r;
}

TEST_T(faults_sync_and_queue, 60) { fault_matrix(sync_queue_scenario, NULL); }

/* --------------------------------------------------------------- streams */

static int echo_line(cio_stream *s, void *arg)
{
    (void)arg;
    const char *line;
    ssize_t n = cio_stream_readline(s, &line);
    if (n > 0 && !cio_stream_write(s, line, (size_t)n))
        cio_stream_drain(s);
    return 0;
}

/* A TCP server and a client over loopback: a line goes there and back,
 * then both close. Any step may fail; none may hang or leak. */
static int stream_scenario(void *arg)
{
    (void)arg;
    cio_server *srv;
    int r = cio_start_server(echo_line, NULL, "127.0.0.1", "0", NULL, NULL,
                             &srv);
    if (r)
        return r;
    char port[16];
    snprintf(port, sizeof port, "%d", cio_server_port(srv));
    cio_stream *s = NULL;
    cio_timeout_scope sc;
    r = cio_timeout(&sc, bound());
    if (!r)
        r = cio_open_connection("127.0.0.1", port, NULL, &s);
    if (!r)
        r = cio_stream_write(s, "ping\n", 5);
    const char *line = NULL;
    ssize_t n = r ? r : cio_stream_readline(s, &line);
    if (n >= 0 && (n != 5 || memcmp(line, "ping\n", 5) != 0))
        r = -EPROTO; /* a lost connection reads as a short line */
    else if (n < 0)
        r = (int)n;
    cio_stream_free(s);
    cio_server_close(srv);
    int w = cio_server_wait_closed(srv);
    if (cio_timeout_end(&sc) == -ETIMEDOUT)
        test_fail(__FILE__, __LINE__, "the stream scenario never finished");
    cio_server_free(srv);
    return r ? r : w;
}

TEST_T(faults_streams, 120)
{
    stride = heavy_stride(5);
    fault_matrix(stream_scenario, NULL);
}
