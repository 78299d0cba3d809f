/* Networking (issue 6), servers: dual-stack and reuse_port listeners,
 * delayed serving, serve_forever, closing and aborting clients, Unix
 * servers, accepting out of fds, the loop closing with servers and
 * transports open, and failure injection across the network layers.
 *
 * Every test closes what it opened and waits for connection_lost, so the
 * harness's leak check sees everything freed. Every test name starts
 * with "net_" (`make check T=net`); helpers are in net_util.h. */
#define _GNU_SOURCE
#include "net_util.h"

/* ------------------------------------------------------------- helpers */

/* Monotonic seconds: the back-off test bounds failures by time slept. */
/* AWAIT (net_util.h), returning the error instead of failing: a fault
 * scenario may see its wait fail and must unwind. */
#define AWAIT_OR_RETURN(cond)                                                  \
    do {                                                                       \
        while (!(cond)) {                                                      \
            cio_event_clear(&changed);                                         \
            int r_ = cio_event_wait(&changed);                                 \
            if (r_)                                                            \
                return r_;                                                     \
        }                                                                      \
    } while (0)

static int made_count(const peers *ps)
{
    int n = 0;
    for (int i = 0; i < ps->n; i++)
        n += ps->p[i].made;
    return n;
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

/* Server A's socket file is removed by hand and B binds the same path:
 * closing A must leave B's file (another inode) in place and working. */
static int unix_rebound_main(void *arg)
{
    (void)arg;
    char dir[] = "/tmp/cio-net-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    srv *a = srv_new(), *b = srv_new();
    CHECK_ERR(cio_create_unix_server(path, &rec_proto, next_peer, &a->sp, NULL,
                                     &a->s),
              0);
    CHECK(unlink(path) == 0);
    b->sp.tmpl.echo = true;
    CHECK_ERR(cio_create_unix_server(path, &rec_proto, next_peer, &b->sp, NULL,
                                     &b->s),
              0);
    struct stat before, st;
    CHECK(stat(path, &before) == 0);
    srv_done(a);
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK(st.st_ino == before.st_ino && st.st_dev == before.st_dev);
    peer c = {0};
    cio_transport *t = NULL;
    CHECK_ERR(cio_create_unix_connection(path, &rec_proto, &c, &t), 0);
    CHECK_ERR(cio_transport_write(t, "still B", 7), 0);
    AWAIT(c.len == 7);
    CHECK_STR(c.data, "still B");
    hang_up(t, &c, &b->sp, 1);
    srv_done(b);
    /* B's own file goes with B. */
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
    CHECK(rmdir(dir) == 0);
    peer_free(&c);
    return 0;
}

TEST(net_unix_server_close_leaves_a_path_another_server_rebound)
{
    run_main(unix_rebound_main, NULL);
}

/* ------------------------------------------------------- bad arguments */

typedef struct server_outside {
    cio_server *s;
    int wait_closed, serve_forever;
    bool ran;
} server_outside;

static void server_calls_outside_a_task(void *arg)
{
    server_outside *o = arg;
    o->wait_closed = cio_server_wait_closed(o->s);
    o->serve_forever = cio_server_serve_forever(o->s);
    o->ran = true;
}

/* NULL servers, outputs and protocols are -EINVAL (0 for the questions,
 * no-ops for close, close_clients, abort_clients and free); the waiting
 * calls need a task; none of it stops a server, which still serves; and a
 * closed server does not serve forever. */
static int server_bad_arguments_main(void *arg)
{
    (void)arg;
    cio_server *s = (cio_server *)1;
    int fds[4];
    CHECK_ERR(cio_create_server("127.0.0.1", "0", &rec_proto, NULL, NULL,
                                NULL, NULL),
              -EINVAL);
    CHECK_ERR(cio_create_server("127.0.0.1", "0", NULL, NULL, NULL, NULL, &s),
              -EINVAL);
    CHECK(s == NULL);
    CHECK_ERR(cio_create_unix_server("/tmp/x", &rec_proto, NULL, NULL, NULL,
                                     NULL),
              -EINVAL);
    CHECK_ERR(cio_create_unix_server("/tmp/x", NULL, NULL, NULL, NULL, &s),
              -EINVAL);
    CHECK_ERR(cio_create_unix_server(NULL, &rec_proto, NULL, NULL, NULL, &s),
              -EINVAL);
    char long_path[200];
    memset(long_path, 'p', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    CHECK_ERR(cio_create_unix_server(long_path, &rec_proto, NULL, NULL, NULL,
                                     &s),
              -EINVAL);
    CHECK(s == NULL);
    CHECK_ERR(cio_server_start_serving(NULL), -EINVAL);
    CHECK_ERR(cio_server_serve_forever(NULL), -EINVAL);
    CHECK_ERR(cio_server_wait_closed(NULL), -EINVAL);
    CHECK_ERR(cio_server_sockets(NULL, fds, 4), -EINVAL);
    CHECK_EQ(cio_server_is_serving(NULL), 0);
    CHECK_EQ(cio_server_port(NULL), 0);
    cio_server_close(NULL);
    cio_server_close_clients(NULL);
    cio_server_abort_clients(NULL);
    cio_server_free(NULL);

    srv *v = srv_new();
    v->sp.tmpl.echo = true;
    serve(v, "127.0.0.1");
    server_outside o = {.s = v->s};
    CHECK_ERR(cio_call_soon(cio_get_running_loop(),
                            server_calls_outside_a_task, &o, NULL),
              0);
    while (!o.ran)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(o.wait_closed, CIO_ENOTASK);
    CHECK_ERR(o.serve_forever, CIO_ENOTASK);
    CHECK_EQ(cio_server_is_serving(v->s), 1);
    CHECK_EQ(cio_server_sockets(v->s, fds, 4), 1);
    peer c = {0};
    cio_transport *t = dial("127.0.0.1", v->portstr, &c);
    CHECK_ERR(cio_transport_write(t, "ping", 4), 0);
    AWAIT(c.len == 4);
    CHECK_STR(c.data, "ping");
    hang_up(t, &c, &v->sp, 1);
    cio_server_close(v->s);
    cio_server_close(v->s); /* a second close does nothing */
    CHECK_ERR(cio_server_serve_forever(v->s), -ESHUTDOWN);
    CHECK_EQ(cio_server_sockets(v->s, fds, 4), 0);
    srv_done(v);
    peer_free(&c);
    return 0;
}

TEST(net_server_bad_arguments_and_calls_outside_a_task)
{
    run_main(server_bad_arguments_main, NULL);
    /* No loop at all. */
    cio_server *s = (cio_server *)1;
    CHECK_ERR(cio_create_server("127.0.0.1", "0", &rec_proto, NULL, NULL,
                                NULL, &s),
              CIO_ENOTASK);
    CHECK(s == NULL);
    s = (cio_server *)1;
    CHECK_ERR(cio_create_unix_server("/tmp/x", &rec_proto, NULL, NULL, NULL,
                                     &s),
              CIO_ENOTASK);
    CHECK(s == NULL);
}
