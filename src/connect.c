/* The client side of transports: create_connection (with Happy Eyeballs),
 * Unix connections, datagram endpoints.
 *
 * Each call runs in a task, resolves, makes the socket, and returns a
 * transport whose connection_made has already run (asyncio returns the
 * pair only after it). On any failure it returns the error and leaves no
 * socket, watcher or transport behind; cancellation and timeout scopes
 * apply to every wait inside, resolution included.
 *
 * Calls down into sock.c (resolution, sock_connect) and transport.c.
 */
#define _GNU_SOURCE
#include "net.h"

#include <math.h>
#include <netinet/in.h>

enum {
    MAX_ATTEMPTS = 16          /* addresses tried by create_connection */
};

/* ----------------------------------------------------------- connecting
 * Happy Eyeballs (RFC 8305, as asyncio's): addresses alternate between
 * families; an attempt starts, and if it has not connected after the
 * delay the next one starts alongside; the first to connect wins. */

/* One connect in flight: its writer watcher marks it ready and wakes the
 * task; fd -1 once it failed or was stopped. Lives on the task's stack. */
typedef struct attempt {
    int fd;
    bool ready;
    cio__task *task;
} attempt;

/* The race: `at` holds `started` attempts, `active` of them still open.
 * The delay before the next attempt is the task's own timer, so that the
 * loop holds nothing in this frame but the watchers, which the race's
 * cleanup stops. */
typedef struct race {
    attempt at[MAX_ATTEMPTS];
    int started, active;
    int err;                   /* the latest failure: what a loss returns */
    struct addrinfo *res;      /* the caller's resolution: the cleanup's */
    bool delay_passed;
    double delay;
    cio__task *task;
} race;

static void attempt_ready(void *arg)
{
    attempt *a = arg;
    a->ready = true;
    cio__wake(a->task, 0);
}

static void delay_over(void *arg) { cio__wake(arg, 0); }

/* Orders addresses by alternating families, first family first (v6 v4
 * v6 v4 ... when the resolver answered v6 first), so a family whose
 * connects hang holds the other one up by one delay, not by all of its
 * addresses. */
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

/* The caller's local_host/local_port, resolved for this family. */
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

/* Starts a connect; returns 0 (connecting or connected) or an error. A
 * connect that succeeds at once still waits for writability, so every
 * attempt ends the same way. */
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

/* Starts the next address's attempt and rearms the delay. An address that
 * fails at once only records its error: the loop moves on to the next. */
static void race_start_next(race *rc, struct addrinfo *ai,
                            const cio_connection_options *opts)
{
    attempt *a = &rc->at[rc->started++];
    a->task = rc->task;
    int e = start_attempt(a, ai, opts);
    if (e) {
        rc->err = e;
        return;
    }
    rc->active++;
    rc->delay_passed = false;
    cio__task_timer_at(rc->task, cio_loop_time(rc->task->fut.loop) + rc->delay,
                       delay_over);
}

/* After a wake-up: the index of an attempt that connected, or -1. Those
 * that failed are closed, their error kept. */
static int race_check(race *rc)
{
    for (int i = 0; i < rc->started; i++) {
        attempt *a = &rc->at[i];
        if (a->fd < 0 || !a->ready)
            continue;
        int e = cio__sys_socket_error(a->fd);
        if (e == 0)
            return i;
        rc->err = e;
        stop_attempt(a, true);
        rc->active--;
    }
    return -1;
}

/* The loop closes mid-race: what this frame and its caller's would free. */
static void race_teardown(void *arg)
{
    race *rc = arg;
    for (int i = 0; i < rc->started; i++)
        stop_attempt(&rc->at[i], true);
    freeaddrinfo(rc->res);
}

/* Runs the race to its end: the winner's index, or -1 with rc->err. Each
 * turn either starts an attempt (the first, or the next once the delay
 * passed or nothing is active) or parks until a writer watcher or the
 * timer wakes the task; cancellation ends the race with its error. */
static const cio__wait_kind connect_wait = {"connect", NULL};

static int race_run(race *rc, struct addrinfo **addrs, int n,
                    const cio_connection_options *opts)
{
    int winner = -1;
    while (winner < 0) {
        if (rc->started < n && (rc->active == 0 || rc->delay_passed)) {
            race_start_next(rc, addrs[rc->started], opts);
            continue;
        }
        if (rc->active == 0)
            break; /* every address failed */
        cio__cleanup c;
        cio__cleanup_push(rc->task, &c, race_teardown, rc);
        cio__task_waits(rc->task, &connect_wait, NULL, -1);
        int r = cio__park_checked(NULL, NULL);
        cio__cleanup_pop(rc->task, &c);
        if (r) {
            rc->err = r;
            break;
        }
        if (rc->task->timer.state == CIO__H_IDLE) /* the timer fired */
            rc->delay_passed = true;
        winner = race_check(rc);
    }
    return winner;
}

/* Connects to one of addrs; returns the connected fd or an error. Every
 * loser is closed and no watcher is left, whoever won. */
static int happy_eyeballs(struct addrinfo *res, struct addrinfo **addrs,
                          int n, const cio_connection_options *opts)
{
    race rc = {.err = -ECONNREFUSED, .delay_passed = true, .res = res,
               .task = cio__current};
    rc.delay = opts && opts->happy_eyeballs_delay > 0
                   ? opts->happy_eyeballs_delay : 0.25;
    int winner = race_run(&rc, addrs, n, opts);
    cio__handle_unschedule(&rc.task->timer);
    int fd = winner >= 0 ? rc.at[winner].fd : -1;
    for (int i = 0; i < rc.started; i++)
        stop_attempt(&rc.at[i], i != winner);
    return winner >= 0 ? fd : rc.err;
}

/* A connected socket becomes a transport whose connection_made has run
 * by the time this returns; on failure fd is closed. */
static int wrap_connected(int fd, const cio__transport_kind *kind,
                          const cio_protocol *proto, void *ctx,
                          const cio_tls_options *tls, const char *hostname,
                          cio_transport **out)
{
    cio_transport *t;
    int err = cio__transport_new(cio__current->fut.loop, fd, kind, proto, ctx,
                                 &t);
    if (err) {
        cio__sys_close(fd);
        return err;
    }
    if (tls && tls->ctx) {
        const char *name = tls->server_hostname ? tls->server_hostname
                                                : hostname;
        if ((err = cio__transport_start_tls_new(t, NULL, tls, false, name,
                                                NULL, NULL)) ||
            (err = cio__transport_tls_wait(t)))
            return err; /* t is closing, unheard of by the protocol */
    } else {
        cio__transport_start(t, NULL, true);
    }
    if (out)
        *out = t;
    return 0;
}

/* Resolves host, races up to MAX_ATTEMPTS of its addresses, and wraps the
 * winner. When every attempt fails, the latest failure is returned. */
int cio_create_connection(const char *host, const char *port,
                          const cio_protocol *proto, void *ctx,
                          const cio_connection_options *opts,
                          cio_transport **out)
{
    if (out)
        *out = NULL;
    if (!cio__current)
        return cio__no_task(__func__);
    if (!proto || !port || (opts && isnan(opts->happy_eyeballs_delay)))
        return -EINVAL;
    struct addrinfo hints = {.ai_family = opts ? opts->family : 0,
                             .ai_socktype = SOCK_STREAM}, *res;
    int err = cio_getaddrinfo(host, port, &hints, &res);
    if (err)
        return err;
    struct addrinfo *addrs[MAX_ATTEMPTS];
    int n = interleave(res, addrs, MAX_ATTEMPTS);
    int fd = happy_eyeballs(res, addrs, n, opts);
    freeaddrinfo(res);
    if (fd < 0)
        return fd;
    return wrap_connected(fd, &cio__stream_kind, proto, ctx,
                          opts ? opts->tls : NULL, host, out);
}

static void fd_gone(void *fd) { cio__sys_close(*(int *)fd); }

int cio__create_unix_connection(const char *path, const cio_protocol *proto,
                                void *ctx, const cio_tls_options *tls,
                                cio_transport **out)
{
    if (out)
        *out = NULL;
    struct sockaddr_un sun;
    if (!cio__current)
        return cio__no_task(__func__);
    if (!proto || cio__unix_address(path, &sun))
        return -EINVAL;
    /* Non-blocking (sys.c): a connect that must wait does so in the loop. */
    int fd = cio__sys_socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    cio__cleanup c; /* a full backlog makes it wait */
    cio__cleanup_push(cio__current, &c, fd_gone, &fd);
    int err = cio_sock_connect(fd, (struct sockaddr *)&sun, sizeof sun);
    cio__cleanup_pop(cio__current, &c);
    if (err) {
        cio__sys_close(fd);
        return err;
    }
    return wrap_connected(fd, &cio__stream_kind, proto, ctx, tls, NULL, out);
}

int cio_create_unix_connection(const char *path, const cio_protocol *proto,
                               void *ctx, cio_transport **out)
{
    return cio__create_unix_connection(path, proto, ctx, NULL, out);
}

/* -------------------------------------------------------------- datagrams */

static int resolve_one(const char *host, const char *port, int family,
                       int flags, struct addrinfo **res)
{
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_DGRAM,
                             .ai_flags = flags};
    return cio_getaddrinfo(host, port, &hints, res);
}

/* Resolves the remote side first, so the local address can be asked for
 * in the remote's family (a socket has one family). */
static int resolve_endpoints(const char *local_host, const char *local_port,
                             const char *remote_host, const char *remote_port,
                             struct addrinfo **local, struct addrinfo **remote)
{
    int err = 0;
    if (remote_port)
        err = resolve_one(remote_host, remote_port, 0, 0, remote);
    if (!err && local_port)
        err = resolve_one(local_host, local_port,
                          *remote ? (*remote)->ai_family : 0, AI_PASSIVE,
                          local);
    return err;
}

/* A bound and/or connected datagram socket, or an error (nothing open). */
static int dgram_socket(const struct addrinfo *local,
                        const struct addrinfo *remote)
{
    int family = remote ? remote->ai_family : local ? local->ai_family : 0;
    int fd = cio__sys_socket(family, SOCK_DGRAM, 0);
    if (fd < 0)
        return fd;
    int err = 0;
    if (local)
        err = cio__sys_bind(fd, local->ai_addr, local->ai_addrlen);
    if (!err && remote)
        err = cio__sys_connect(fd, remote->ai_addr, remote->ai_addrlen);
    if (err) {
        cio__sys_close(fd);
        return err;
    }
    return fd;
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
    if (!cio__current)
        return cio__no_task(__func__);
    if (!proto || (!local_port && !remote_port))
        return -EINVAL;
    struct addrinfo *local = NULL, *remote = NULL;
    int err = resolve_endpoints(local_host, local_port, remote_host,
                                remote_port, &local, &remote);
    int fd = err ? err : dgram_socket(local, remote);
    if (local)
        freeaddrinfo(local);
    if (remote)
        freeaddrinfo(remote);
    if (fd < 0)
        return fd;
    return wrap_connected(fd, &cio__dgram_kind, proto, ctx, NULL, NULL, out);
}
