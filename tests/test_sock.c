/* Networking (issue 6), the socket layer: the sock_* coroutines between
 * two tasks, name resolution in place and in the executor, and a refused
 * connection, over real sockets on loopback (127.0.0.1, ::1).
 *
 * Every test closes what it opened and waits for connection_lost, so the
 * harness's leak check sees everything freed. Every test name starts
 * with "net_" (`make check T=net`); helpers are in net_util.h. */
#define _GNU_SOURCE
#include "net_util.h"

/* ------------------------------------------------------------- helpers */

/* The threads of this process: resolving a name starts the executor,
 * a numeric host must not. */

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

TEST(net_sock_calls_outside_a_task_are_enotask)
{
    char b;
    CHECK_ERR(cio_sock_recv(0, &b, 1), CIO_ENOTASK);
    CHECK_ERR(cio_sock_sendall(0, &b, 1), CIO_ENOTASK);
    CHECK_ERR(cio_sock_accept(0, NULL, NULL), CIO_ENOTASK);
    struct addrinfo *res = (struct addrinfo *)1;
    CHECK_ERR(cio_getaddrinfo("127.0.0.1", "80", NULL, &res), CIO_ENOTASK);
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

/* ------------------------------------------------------ port numbers */

/* Ports are 16 bits: a number above 65535 must not wrap onto another port
 * (65536 + p is p to a plain htons), and junk is no port at all. */
static const char *const bad_ports[] = {
    "65536", "65616", "4294967376", "99999999999999999999", "-1", "-0",
    "+80", " 80", "80 ", "80x", "0x50", "",
};

static int gai_ports_main(void *arg)
{
    (void)arg;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    for (size_t i = 0; i < sizeof bad_ports / sizeof *bad_ports; i++) {
        res = (struct addrinfo *)1;
        int r = cio_getaddrinfo("127.0.0.1", bad_ports[i], &hints, &res);
        if (r != -EINVAL)
            test_fail(__FILE__, __LINE__, "port \"%s\": %s, not EINVAL",
                      bad_ports[i], cio_strerror(r));
        CHECK(res == NULL);
    }
    /* A name where AI_NUMERICSERV asks for a number. */
    struct addrinfo numeric = {.ai_socktype = SOCK_STREAM,
                               .ai_flags = AI_NUMERICSERV};
    CHECK_ERR(cio_getaddrinfo("127.0.0.1", "http", &numeric, &res), -EINVAL);
    /* The edges still work. */
    CHECK_ERR(cio_getaddrinfo("127.0.0.1", "65535", &hints, &res), 0);
    CHECK_EQ(ntohs(((struct sockaddr_in *)res->ai_addr)->sin_port), 65535);
    freeaddrinfo(res);
    CHECK_ERR(cio_getaddrinfo("127.0.0.1", "00080", &numeric, &res), 0);
    CHECK_EQ(ntohs(((struct sockaddr_in *)res->ai_addr)->sin_port), 80);
    freeaddrinfo(res);
    return 0;
}

TEST(net_getaddrinfo_rejects_ports_out_of_range_and_junk)
{
    run_main(gai_ports_main, NULL);
}

static int no_client(cio_stream *s, void *arg)
{
    (void)s;
    (void)arg;
    CHECK(0);
    return 0;
}

/* Every call that takes a port string refuses 65536 + p, even with a real
 * listener on p that a wrapped port would reach. */
static int wrapped_ports_main(void *arg)
{
    (void)arg;
    int port;
    int lfd = raw_listener(AF_INET, &port);
    char wrapped[16];
    snprintf(wrapped, sizeof wrapped, "%d", port + 65536);
    peer c = {0};
    cio_transport *t = (cio_transport *)1;
    CHECK_ERR(cio_create_connection("127.0.0.1", wrapped, &rec_proto, &c, NULL,
                                    &t),
              -EINVAL);
    CHECK(t == NULL);
    CHECK_EQ(c.made, 0);
    cio_connection_options o = {.local_port = "70000"};
    CHECK_ERR(cio_create_connection("127.0.0.1", "80", &rec_proto, &c, &o, &t),
              -EINVAL);
    cio_stream *s = (cio_stream *)1;
    CHECK_ERR(cio_open_connection("127.0.0.1", wrapped, NULL, &s), -EINVAL);
    cio_server *sv = (cio_server *)1;
    CHECK_ERR(cio_create_server("127.0.0.1", "65536", &rec_proto, next_peer,
                                NULL, NULL, &sv),
              -EINVAL);
    CHECK_ERR(cio_start_server(no_client, NULL, "127.0.0.1", "-1", NULL, NULL,
                               &sv),
              -EINVAL);
    CHECK_ERR(cio_create_datagram_endpoint("127.0.0.1", "65536", NULL, NULL,
                                           &rec_proto, &c, &t),
              -EINVAL);
    CHECK_ERR(cio_create_datagram_endpoint(NULL, NULL, "127.0.0.1", wrapped,
                                           &rec_proto, &c, &t),
              -EINVAL);
    CHECK(t == NULL);
    CHECK_EQ(c.made, 0);
    close(lfd);
    return 0;
}

TEST(net_port_above_65535_never_wraps_onto_another_port)
{
    run_main(wrapped_ports_main, NULL);
}

/* ------------------------------------------------- oversized datagrams */

/* A datagram longer than the buffer is not passed off as a whole one:
 * -EMSGSIZE, the buffer holding its first bytes; the next datagram is
 * read whole. */
static int recvfrom_trunc_main(void *arg)
{
    (void)arg;
    int a = bound_socket(AF_INET, SOCK_DGRAM, 0);
    int b = bound_socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_storage to;
    socklen_t tolen = loopback(AF_INET, port_of(a), &to);
    CHECK_EQ(cio_sock_sendto(b, "0123456789", 10, (struct sockaddr *)&to,
                             tolen),
             10);
    CHECK_EQ(cio_sock_sendto(b, "next", 4, (struct sockaddr *)&to, tolen), 4);
    char buf[8];
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    CHECK_ERR(cio_sock_recvfrom(a, buf, 4, (struct sockaddr *)&from, &len),
              -EMSGSIZE);
    CHECK(memcmp(buf, "0123", 4) == 0);
    len = sizeof from;
    CHECK_EQ(cio_sock_recvfrom(a, buf, sizeof buf, (struct sockaddr *)&from,
                               &len),
             4);
    CHECK(memcmp(buf, "next", 4) == 0);
    CHECK_EQ(port_of(b), ntohs(((struct sockaddr_in *)&from)->sin_port));
    /* On a stream socket recvfrom still reads what is there, dropping
     * nothing: truncation is a datagram's matter. */
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) == 0);
    CHECK(write(sp[1], "abcdef", 6) == 6);
    CHECK_EQ(cio_sock_recvfrom(sp[0], buf, 4, NULL, NULL), 4);
    CHECK_EQ(cio_sock_recvfrom(sp[0], buf + 4, 4, NULL, NULL), 2);
    CHECK(memcmp(buf, "abcdef", 6) == 0);
    close(sp[0]);
    close(sp[1]);
    close(a);
    close(b);
    return 0;
}

TEST(net_sock_recvfrom_reports_an_oversized_datagram_as_emsgsize)
{
    run_main(recvfrom_trunc_main, NULL);
}

/* ------------------------------------------------------- bad arguments */

/* The connection and name calls' NULL and NaN arguments, from a task:
 * -EINVAL with the output cleared, nothing connected, no callback. */
static int connect_bad_arguments_main(void *arg)
{
    (void)arg;
    peer c = {0};
    cio_transport *t = (cio_transport *)1;
    CHECK_ERR(cio_create_connection("127.0.0.1", "80", NULL, &c, NULL, &t),
              -EINVAL);
    CHECK(t == NULL);
    CHECK_ERR(cio_create_connection("127.0.0.1", NULL, &rec_proto, &c, NULL,
                                    &t),
              -EINVAL);
    cio_connection_options nan_delay = {.happy_eyeballs_delay = NAN};
    CHECK_ERR(cio_create_connection("127.0.0.1", "80", &rec_proto, &c,
                                    &nan_delay, &t),
              -EINVAL);
    t = (cio_transport *)1;
    CHECK_ERR(cio_create_unix_connection("/tmp/x", NULL, &c, &t), -EINVAL);
    CHECK(t == NULL);
    CHECK_ERR(cio_create_unix_connection(NULL, &rec_proto, &c, &t), -EINVAL);
    char long_path[200];
    memset(long_path, 'p', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    CHECK_ERR(cio_create_unix_connection(long_path, &rec_proto, &c, &t),
              -EINVAL);
    t = (cio_transport *)1;
    CHECK_ERR(cio_create_datagram_endpoint("127.0.0.1", "0", NULL, NULL, NULL,
                                           &c, &t),
              -EINVAL);
    CHECK(t == NULL);
    CHECK_ERR(cio_create_datagram_endpoint("127.0.0.1", NULL, "127.0.0.1",
                                           NULL, &rec_proto, &c, &t),
              -EINVAL); /* no port on either side */
    CHECK_EQ(c.made, 0);
    CHECK_ERR(cio_getaddrinfo("127.0.0.1", "80", NULL, NULL), -EINVAL);
    char host[64];
    CHECK_ERR(cio_getnameinfo(NULL, 0, host, sizeof host, NULL, 0, 0),
              -EINVAL);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK_ERR(cio_sock_connect(fd, NULL, 0), -EINVAL);
    int err = -1;
    socklen_t el = sizeof err;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
    CHECK_EQ(err, 0); /* no connect was tried */
    close(fd);
    return 0;
}

TEST(net_connect_calls_with_bad_arguments_are_einval)
{
    run_main(connect_bad_arguments_main, NULL);
    /* No loop at all: each needs a task. */
    cio_transport *t = (cio_transport *)1;
    CHECK_ERR(cio_create_connection("127.0.0.1", "80", &rec_proto, NULL, NULL,
                                    &t),
              CIO_ENOTASK);
    CHECK(t == NULL);
    t = (cio_transport *)1;
    CHECK_ERR(cio_create_unix_connection("/tmp/x", &rec_proto, NULL, &t),
              CIO_ENOTASK);
    CHECK(t == NULL);
    t = (cio_transport *)1;
    CHECK_ERR(cio_create_datagram_endpoint("127.0.0.1", "0", NULL, NULL,
                                           &rec_proto, NULL, &t),
              CIO_ENOTASK);
    CHECK(t == NULL);
    struct sockaddr_in a = {.sin_family = AF_INET};
    char host[64];
    CHECK_ERR(cio_getnameinfo((struct sockaddr *)&a, sizeof a, host,
                              sizeof host, NULL, 0, 0),
              CIO_ENOTASK);
}
