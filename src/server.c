/* Servers: listening TCP and Unix sockets, accepting connections into
 * transports, asyncio's Server object (start_serving, serve_forever,
 * close, wait_closed), and the network's part of closing the loop.
 *
 * Invariants: a server is on loop->net.servers from creation until it is
 * freed. Its transports are on its `conns` list and each one's `gone` hook
 * points back at it; cio_server_free hands them over to the loop, so a
 * connection outlives the server that accepted it. Accepting never spins
 * and never dies: out of fds or memory, it pauses and retries by itself.
 *
 * The top of the network layers: calls transport.c and sock.c, and nothing
 * below calls it.
 */
#define _GNU_SOURCE
#include "net.h"

#include <math.h>
#include "tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    DEFAULT_BACKLOG = 100,
    MAX_LISTENERS = 8          /* listening sockets per server */
};

double cio__accept_retry_delay = 1.0; /* asyncio's; tests lower it */

struct cio_server {
    cio_loop *loop;
    int fds[MAX_LISTENERS];    /* listening sockets, owned */
    int nfds;
    cio_protocol proto;        /* copied into each accepted transport */
    cio_protocol_factory factory; /* makes each connection's context */
    void *arg;                 /* the factory's argument, or the context */
    int backlog;               /* listen()'s, and accepts per wake-up */
    bool serving, closed;
    bool dead;                 /* debug: freed, kept in the quarantine */
    cio__list conns;           /* its transports */
    size_t nconns;             /* their number, for all_closed */
    cio__list link;            /* in the loop's servers */
    cio_future *closed_fut;    /* done when closed */
    cio_future *all_closed;    /* done when closed with no connections */
    cio__handle retry;         /* resumes accepting after EMFILE */
    /* The socket file bind made, removed when the server closes, but only
     * while the path still names that file (st_dev, st_ino): another
     * server may have bound the path since someone unlinked ours. */
    char *unix_path;
    dev_t unix_dev;
    ino_t unix_ino;
    bool unix_known;           /* unix_dev/unix_ino were read after bind */
    void *stream_server;       /* stream.c's, freed with the server */
    void (*free_hook)(void *);
    cio_tls_options tls;       /* a copy; tls.ctx: a reference of ours */
};

/* -------------------------------------------------------------- accepting */

static void on_acceptable(void *arg);

static void listen_off(cio_server *s)
{
    for (int i = 0; i < s->nfds; i++)
        cio_remove_reader(s->loop, s->fds[i]);
}

/* Watches every listening socket; on failure watches none. */
static int listen_on(cio_server *s)
{
    for (int i = 0; i < s->nfds; i++) {
        int err = cio_add_reader(s->loop, s->fds[i], on_acceptable, s);
        if (err) {
            listen_off(s);
            return err;
        }
    }
    return 0;
}

/* closed_fut completes at close, all_closed once the connections are
 * gone as well; each exactly once. */
static void check_all_closed(cio_server *s)
{
    if (s->closed && !cio_future_done(s->closed_fut))
        cio_future_set_result(s->closed_fut, NULL);
    if (s->closed && s->nconns == 0 && !cio_future_done(s->all_closed))
        cio_future_set_result(s->all_closed, NULL);
}

/* The transports' `gone` hook: one of its connections was freed. */
static void conn_gone(void *arg)
{
    cio_server *s = arg;
    s->nconns--;
    check_all_closed(s);
}

/* The back-off timer: accepts again unless the server stopped meanwhile;
 * if it still cannot watch its sockets, it waits another delay. */
static void resume_accepting(void *arg)
{
    cio_server *s = arg;
    if (s->serving && !s->closed && listen_on(s) != 0) /* try again later */
        cio__handle_schedule_at(&s->retry, cio_loop_time(s->loop) +
                                               cio__accept_retry_delay);
}

/* Out of fds or memory: say so, stop accepting for a while, then retry by
 * itself - never spin on a socket that stays readable, never die. */
static void accept_backoff(cio_server *s, int err)
{
    cio__report(s->loop, "accept() out of system resource; pausing accepts",
                err, "server", NULL, s);
    listen_off(s);
    cio__handle_schedule_at(&s->retry, cio_loop_time(s->loop) +
                                           cio__accept_retry_delay);
}

static bool out_of_resources(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS ||
           err == -ENOMEM;
}

/* Wraps an accepted fd; connection_made runs soon. -ENOMEM: fd closed. */
static int accept_conn(cio_server *s, int fd)
{
    cio_transport *t;
    int err = cio__transport_new(s->loop, fd, &cio__stream_kind, &s->proto,
                                 NULL, &t);
    if (err) {
        cio__sys_close(fd);
        return err;
    }
    if (s->tls.ctx) { /* the context comes after the handshake */
        t->ctx = s->factory ? NULL : s->arg;
        t->gone = conn_gone;
        t->gone_arg = s;
        s->nconns++;
        /* A failure closes t quietly, and the next accept goes on. */
        (void)cio__transport_start_tls_new(t, &s->conns, &s->tls, true, NULL,
                                           s->factory, s->arg);
        return 0;
    }
    /* The context last: nothing can fail after it was made. */
    t->ctx = s->factory ? s->factory(s->arg) : s->arg;
    t->gone = conn_gone;
    t->gone_arg = s;
    s->nconns++;
    cio__transport_start(t, &s->conns, false);
    return 0;
}

/* Accepts up to a backlog's worth from one socket; false: backing off. */
static bool accept_from(cio_server *s, int lfd)
{
    for (int k = 0; k < s->backlog; k++) {
        int fd = cio__sys_accept(lfd, NULL, NULL);
        if (cio__net_again(fd))
            break;
        int err = out_of_resources(fd) ? fd : 0;
        if (fd >= 0)
            err = accept_conn(s, fd);
        if (err) {
            accept_backoff(s, err);
            return false;
        }
        /* fd < 0 otherwise: ECONNABORTED and friends, the peer gave up */
    }
    return true;
}

/* The watcher does not say which fd fired: try each, a few times. */
static void on_acceptable(void *arg)
{
    cio_server *s = arg;
    for (int i = 0; i < s->nfds; i++)
        if (!accept_from(s, s->fds[i]))
            return;
}

/* --------------------------------------------------------------- creating */

/* A server with no sockets yet, on no list: server_destroy undoes it. */
static int server_new(cio_loop *loop, const cio_protocol *proto,
                      cio_protocol_factory factory, void *arg,
                      const cio_server_options *opts, cio_server **out)
{
    cio_server *s = cio__calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int err = cio_future_new(loop, &s->all_closed);
    if (!err) {
        err = cio_future_new(loop, &s->closed_fut);
        if (err)
            cio_future_unref(s->all_closed);
    }
    if (err) {
        cio__free(s);
        return err;
    }
    s->loop = loop;
    if (proto)
        s->proto = *proto;
    s->factory = factory;
    s->arg = arg;
    s->backlog = opts && opts->backlog > 0 ? opts->backlog : DEFAULT_BACKLOG;
    if (opts && opts->tls && opts->tls->ctx) {
        int bad = !cio_tls_available() ? -ENOTSUP
                  : isnan(opts->tls->handshake_timeout) ||
                          isnan(opts->tls->shutdown_timeout)
                      ? -EINVAL /* the duration rule */
                      : 0;
        if (bad) {
            cio_future_unref(s->all_closed);
            cio_future_unref(s->closed_fut);
            cio__free(s);
            return bad;
        }
        s->tls = *opts->tls;
        s->tls.server_hostname = NULL;
        cio__tls_ctx_ref(s->tls.ctx);
    }
    cio__list_init(&s->conns);
    cio__list_init(&s->link);
    cio__handle_init(&s->retry, loop, resume_accepting, s);
    *out = s;
    return 0;
}

/* Sets a listening socket's options: asyncio's defaults (SO_REUSEADDR on
 * TCP, unless told not to) and what opts asks for. */
static int listen_options(int fd, int family, const cio_server_options *opts)
{
    int err = 0;
    if (family != AF_UNIX && !(opts && opts->reuse_address < 0))
        err = cio__sys_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (!err && opts && opts->reuse_port > 0)
        err = cio__sys_setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (!err && family == AF_INET6) /* as asyncio: one socket per family */
        err = cio__sys_setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    return err;
}

/* Makes one listening socket for addr and adds it to s. Addresses beyond
 * MAX_LISTENERS are ignored, not an error. */
static int listen_socket(cio_server *s, int family, const struct sockaddr *addr,
                         socklen_t len, const cio_server_options *opts)
{
    if (s->nfds == MAX_LISTENERS)
        return 0;
    int fd = cio__sys_socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int err = listen_options(fd, family, opts);
    if (!err)
        err = cio__sys_bind(fd, addr, len);
    if (!err)
        err = cio__sys_listen(fd, s->backlog);
    if (err) {
        cio__sys_close(fd);
        return err;
    }
    s->fds[s->nfds++] = fd;
    return 0;
}

/* The quarantine lets it go (its mark goes first). */
static void server_release(void *p)
{
    cio_server *s = p;
    s->dead = false;
    cio__free(s);
}

/* Frees s and its own resources; its connections must be gone or handed
 * over to the loop already. */
static void server_destroy(cio_server *s)
{
    for (int i = 0; i < s->nfds; i++)
        cio__sys_close(s->fds[i]);
    cio__list_unlink(&s->link);
    cio__handle_unschedule(&s->retry);
    cio_future_unref(s->all_closed);
    cio_future_unref(s->closed_fut);
    if (s->free_hook)
        s->free_hook(s->stream_server);
    cio__tls_ctx_unref(s->tls.ctx);
    cio__free(s->unix_path);
    if (!s->loop->debug) {
        cio__free(s);
        return;
    }
    s->dead = true; /* a second cio_server_free sees it */
    cio__quarantine(s->loop, s, server_release);
}

static int server_finish(cio_server *s, const cio_server_options *opts,
                         cio_server **out)
{
    cio__list_push_back(&s->loop->net.servers, &s->link);
    int err = opts && opts->delay_serving ? 0 : cio_server_start_serving(s);
    if (err) { /* a server that cannot accept is not made */
        server_destroy(s);
        return err;
    }
    *out = s;
    return 0;
}

/* One listening socket per address host resolves to (both families for
 * NULL or ""), all on the same port. */
int cio_create_server(const char *host, const char *port,
                      const cio_protocol *proto, cio_protocol_factory factory,
                      void *arg, const cio_server_options *opts,
                      cio_server **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cio__current)
        return cio__no_task(__func__);
    if (!proto)
        return -EINVAL;
    cio_loop *loop = cio__current->fut.loop;
    struct addrinfo hints = {.ai_flags = AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM}, *res;
    int err = cio_getaddrinfo(host, port ? port : "0", &hints, &res);
    if (err)
        return err;
    cio_server *s = NULL;
    err = server_new(loop, proto, factory, arg, opts, &s);
    for (struct addrinfo *ai = res; !err && ai; ai = ai->ai_next)
        err = listen_socket(s, ai->ai_family, ai->ai_addr, ai->ai_addrlen,
                            opts);
    freeaddrinfo(res);
    if (err) {
        if (s)
            server_destroy(s);
        return err;
    }
    return server_finish(s, opts, out);
}

/* Right after bind: which file is ours. Unknown (never removed) if the
 * path is already gone or is not a socket. */
static void remember_unix_file(cio_server *s, const char *path)
{
    struct stat st;
    s->unix_known = stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
    if (s->unix_known) {
        s->unix_dev = st.st_dev;
        s->unix_ino = st.st_ino;
    }
}

/* Removes path if it is still the socket file this server's bind made. */
static void unlink_own_file(cio_server *s, const char *path)
{
    struct stat st;
    if (s->unix_known && stat(path, &st) == 0 && st.st_dev == s->unix_dev &&
        st.st_ino == s->unix_ino)
        unlink(path);
}

int cio_create_unix_server(const char *path, const cio_protocol *proto,
                           cio_protocol_factory factory, void *arg,
                           const cio_server_options *opts, cio_server **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct sockaddr_un sun;
    if (!cio__current)
        return cio__no_task(__func__);
    if (!proto || cio__unix_address(path, &sun))
        return -EINVAL;
    struct stat st; /* a stale socket file from an earlier run goes */
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    cio_server *s;
    int err = server_new(cio__current->fut.loop, proto, factory, arg, opts, &s);
    if (err)
        return err;
    err = listen_socket(s, AF_UNIX, (struct sockaddr *)&sun, sizeof sun, opts);
    if (s->nfds) /* bind made the file */
        remember_unix_file(s, path);
    if (!err && !(s->unix_path = cio__strdup(path)))
        err = -ENOMEM;
    if (err) {
        unlink_own_file(s, path);
        server_destroy(s);
        return err;
    }
    return server_finish(s, opts, out);
}

/* ---------------------------------------------------------------- serving */

/* Idempotent; -ESHUTDOWN once closed. On failure nothing is watched. */
int cio_server_start_serving(cio_server *s)
{
    if (!s)
        return -EINVAL;
    if (s->closed)
        return -ESHUTDOWN;
    if (!s->serving) {
        int err = listen_on(s);
        if (err)
            return err;
        s->serving = true;
    }
    return 0;
}

int cio_server_is_serving(const cio_server *s) { return s && s->serving; }

/* Stops listening at once; the connections go on until they close. */
void cio_server_close(cio_server *s)
{
    if (!s || s->closed)
        return;
    s->closed = true;
    s->serving = false;
    listen_off(s);
    cio__handle_unschedule(&s->retry);
    for (int i = 0; i < s->nfds; i++)
        cio__sys_close(s->fds[i]);
    s->nfds = 0;
    if (s->unix_path)
        unlink_own_file(s, s->unix_path);
    check_all_closed(s);
}

/* `how` may end a transport, but never frees it before a later turn of
 * the loop; still, take the next link first. */
static void close_each(cio_server *s, void (*how)(cio_transport *))
{
    cio__list *n = s->conns.next;
    while (n != &s->conns) {
        cio__list *next = n->next;
        how(cio__container_of(n, cio_transport, link));
        n = next;
    }
}

void cio_server_close_clients(cio_server *s)
{
    if (s)
        close_each(s, cio_transport_close);
}

void cio_server_abort_clients(cio_server *s)
{
    if (s)
        close_each(s, cio_transport_abort);
}

/* Awaits f behind a shield: cancelling the waiter must not cancel f,
 * which other waiters share. */
static int await_shielded(cio_future *f)
{
    cio_future *mine;
    int r = cio_shield(f, &mine);
    if (r)
        return r;
    r = cio_await(mine, NULL);
    cio_future_unref(mine);
    return r;
}

int cio_server_wait_closed(cio_server *s)
{
    if (!s)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task(__func__);
    return await_shielded(s->all_closed);
}

/* Serves until the server is closed; cancelling the task closes it. */
int cio_server_serve_forever(cio_server *s)
{
    if (!cio__current)
        return cio__no_task(__func__);
    int r = cio_server_start_serving(s);
    if (r)
        return r;
    r = await_shielded(s->closed_fut);
    if (r)
        cio_server_close(s);
    return r;
}

/* ------------------------------------------------------------ information */

/* Copies up to cap of its fds (still the server's); returns how many it
 * has, which may be more than cap. */
int cio_server_sockets(const cio_server *s, int *fds, size_t cap)
{
    if (!s)
        return -EINVAL;
    for (int i = 0; i < s->nfds && (size_t)i < cap; i++)
        fds[i] = s->fds[i];
    return s->nfds;
}

/* The port a socket is bound to, or 0. */
static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* The first socket's port: with port "0" every socket got the same one. */
int cio_server_port(const cio_server *s)
{
    return s && s->nfds ? bound_port(s->fds[0]) : 0;
}

/* Bound with SO_REUSEPORT and never listening: the kernel hands a
 * connection only to a listening socket of the group, so this one takes
 * none, yet while it is open no socket without SO_REUSEPORT (and none of
 * another user) can bind the port. */
int cio_hold_port(const char *host, int *port)
{
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    if (!port || *port < 0 || *port > 65535)
        return -EINVAL;
    bool v6 = host && inet_pton(AF_INET6, host, &a6.sin6_addr) == 1;
    if (!v6 && host && inet_pton(AF_INET, host, &a4.sin_addr) != 1)
        return -EINVAL;
    a6.sin6_port = a4.sin_port = htons((uint16_t)*port);
    int fd = cio__sys_socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int err = cio__sys_setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (!err)
        err = v6 ? cio__sys_bind(fd, &a6, sizeof a6)
                 : cio__sys_bind(fd, &a4, sizeof a4);
    if (err) {
        close(fd);
        return err;
    }
    *port = bound_port(fd);
    return fd;
}

/* ---------------------------------------------------------------- freeing */

/* Closes s if need be and frees it now. Its open connections move to the
 * loop's list, so cio__net_close still finds them, and stop counting
 * against all_closed: their `gone` hook is cleared. */
void cio_server_free(cio_server *s)
{
    if (!s)
        return;
    if (s->dead) { /* only ever set in debug mode */
        cio__misuse(s->loop, "cio_server_free of a server already freed",
                    "server", NULL, s);
        return;
    }
    cio_server_close(s);
    /* Its connections go on without it. */
    cio__list *n;
    while ((n = cio__list_pop_front(&s->conns))) {
        cio_transport *t = cio__container_of(n, cio_transport, link);
        t->gone = NULL;
        if (t->quiet) /* mid-handshake: its factory goes with the server */
            cio_transport_abort(t);
        cio__list_push_back(&s->loop->net.transports, &t->link);
    }
    server_destroy(s);
}

/* For stream.c: a server's stream-layer state, freed with it. */
void cio__server_set_owner(cio_server *s, void *owner, void (*free_hook)(void *))
{
    s->stream_server = owner;
    s->free_hook = free_hook;
}

/* The loop closes with transports or servers alive: each is reported,
 * told connection_lost(-ESHUTDOWN) if it never heard of its end (the one
 * place its owner can free its context), and freed. Servers first: they
 * hand their connections to the loop's list. */
void cio__net_close(cio_loop *loop)
{
    cio__list *n;
    while ((n = cio__list_pop_front(&loop->net.servers))) {
        cio_server *s = cio__container_of(n, cio_server, link);
        cio__list_init(&s->link);
        cio__report(loop, "unclosed server", 0, "server", NULL, s);
        cio_server_free(s);
    }
    cio__transports_close(loop);
}
