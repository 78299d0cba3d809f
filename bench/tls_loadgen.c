/* tls_loadgen: the load generator of the TLS benchmarks (issue 14).
 *
 * bench/loadgen's echo mode over TLS, written with OpenSSL directly (not
 * with cio, so the system under test is never on both sides): one
 * process, one thread, epoll, non-blocking sockets, the same client for
 * every server. Every connection offers TLS 1.3 with the one cipher suite
 * TLS_AES_128_GCM_SHA256 and X25519, so every server runs the same
 * cryptography (left to choose, Go picks AES-128 and OpenSSL AES-256);
 * certificates are not verified (the client's cost is not the server's).
 *
 * Echo mode (the default): --conns connections, each sending a message of
 * --size bytes and waiting for all of it to come back before the next,
 * --warmup seconds not counted, then --seconds measured:
 *
 *   bench <name> <system> <n> msgs/s
 *
 * Handshake mode (--handshakes): --conns connections at a time, each a new
 * TCP connection and a full handshake (no session resumption), closed as
 * soon as SSL_connect succeeds (as `openssl s_time -new` does):
 *
 *   bench <name> <system> <n> conns/s
 *
 * With --pid PID (the server's), also the server's CPU time per message
 * or handshake in the measured window, summed over its threads from
 * /proc/PID/task/N/schedstat (nanoseconds the scheduler ran them): a
 * figure that the machine's other load does not move as it moves msgs/s:
 *
 *   bench <name>_cpu <system> <us> us/msg      (us/conn for handshakes)
 *
 * TLS_LOADGEN_SELF=1 in the environment also prints this process's own CPU
 * per message on stderr (is the client the same for every server?).
 *
 * --wait S retries the first connection for up to S seconds (the server
 * is starting). A mismatched echo, an early close or an error ends the
 * run with status 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    SSL *ssl;
    int handshaken;
    int want_out;     /* EPOLLOUT registered: OpenSSL wants to write */
    size_t sent;      /* bytes of the current message taken by SSL_write */
    size_t recvd;     /* bytes of it echoed back */
};

static const char *opt_name = "tls_echo";
static const char *opt_system = "unknown";
static long opt_conns = 100;
static size_t opt_size = 1024;
static double opt_seconds = 5;
static double opt_warmup = 1;
static double opt_wait;
static int opt_handshakes;
static long opt_pid;

static struct sockaddr_in addr;
static int epfd;
static SSL_CTX *ctx;
static char *msg;   /* the message every connection sends */
static char *rxbuf; /* receive scratch buffer, opt_size bytes */
static uint64_t measure_from, end_at, done;
static double cpu_from, cpu_to; /* server_cpu_ns at the window's ends */

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "tls_loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

_Noreturn static void fail(const char *what)
{
    char reason[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    fprintf(stderr, "tls_loadgen: %s%s%s\n", what, *reason ? ": " : "",
            reason);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

_Noreturn static void usage(void)
{
    fprintf(stderr,
            "usage: tls_loadgen [--name N] [--system S] [--conns C] "
            "[--size B] [--handshakes 1]\n"
            "                   [--seconds T] [--warmup T] [--wait T] "
            "HOST PORT\n");
    exit(2);
}

/* The one client context: TLS 1.3, one suite, one group, no verification
 * and no session cache (every handshake is a full one). */
static void make_context(void)
{
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") ||
        !SSL_CTX_set1_groups_list(ctx, "X25519"))
        fail("SSL_CTX");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
}

/* A blocking TCP connect (loopback: immediate; the first may retry for
 * opt_wait seconds), then non-blocking, no Nagle, a new SSL in connect
 * state, registered for EPOLLIN. */
static void open_conn(struct conn *c, int first)
{
    uint64_t deadline = now_ns() + (uint64_t)(opt_wait * 1e9);
    int one = 1;
    for (;;) {
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            die("socket");
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) == 0)
            break;
        if (!first || errno != ECONNREFUSED || now_ns() >= deadline)
            die("connect");
        close(c->fd);
        usleep(20000);
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0)
        die("fcntl");
    if (!(c->ssl = SSL_new(ctx)) || !SSL_set_fd(c->ssl, c->fd))
        fail("SSL_new");
    SSL_set_connect_state(c->ssl);
    c->handshaken = 0;
    c->want_out = 0;
    c->sent = c->recvd = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

/* Without close_notify, as s_time: the server's cost is the handshake. */
static void close_conn(struct conn *c)
{
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
}

static void set_out(struct conn *c, int on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->want_out = on;
}

/* r is an SSL call's failed result: returns 0 to wait (EPOLLOUT set if
 * OpenSSL wants to write), or ends the run. */
static int wait_or_fail(struct conn *c, int r, const char *what)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_WANT_WRITE:
        set_out(c, 1);
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        fail("the server closed a connection");
    default:
        fail(what);
    }
    return 0;
}

static int in_window(uint64_t t) { return t >= measure_from && t < end_at; }

/* Handshake mode: a finished handshake is counted and replaced. */
static void step_handshake(struct conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
        wait_or_fail(c, r, "handshake");
        return;
    }
    if (in_window(now_ns()))
        done++;
    close_conn(c);
    open_conn(c, 0);
    step_handshake(c); /* the ClientHello */
}

/* Echo mode: write what is left of the message, read what came back;
 * each message complete starts the next. */
static void step_echo(struct conn *c)
{
    if (!c->handshaken) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            wait_or_fail(c, r, "handshake");
            return;
        }
        c->handshaken = 1;
    }
    set_out(c, 0);
    for (;;) {
        size_t n;
        while (c->sent < opt_size) {
            if (!SSL_write_ex(c->ssl, msg + c->sent, opt_size - c->sent, &n)) {
                wait_or_fail(c, 0, "SSL_write");
                break;
            }
            c->sent += n;
        }
        while (c->recvd < opt_size) {
            if (!SSL_read_ex(c->ssl, rxbuf, opt_size - c->recvd, &n)) {
                wait_or_fail(c, 0, "SSL_read");
                return;
            }
            if (memcmp(rxbuf, msg + c->recvd, n) != 0)
                fail("the echoed bytes differ from those sent");
            c->recvd += n;
        }
        if (in_window(now_ns()))
            done++;
        c->sent = c->recvd = 0;
    }
}

/* Nanoseconds PID's threads have run (the first field of schedstat). */
static double server_cpu_ns(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", opt_pid);
    DIR *d = opendir(path);
    if (!d)
        die(path);
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char f[400];
        unsigned long long ns;
        snprintf(f, sizeof f, "%s/%s/schedstat", path, e->d_name);
        FILE *fp = e->d_name[0] != '.' ? fopen(f, "r") : NULL;
        if (fp && fscanf(fp, "%llu", &ns) == 1)
            total += (double)ns;
        if (fp)
            fclose(fp);
    }
    closedir(d);
    return total;
}

static double self_cpu_ns(void)
{
    unsigned long long ns = 0;
    FILE *fp = fopen("/proc/thread-self/schedstat", "r");
    if (fp && fscanf(fp, "%llu", &ns) != 1)
        ns = 0;
    if (fp)
        fclose(fp);
    return (double)ns;
}

static void run(struct conn *conns)
{
    void (*step)(struct conn *) = opt_handshakes ? step_handshake : step_echo;
    uint64_t t0 = now_ns();
    measure_from = t0 + (uint64_t)(opt_warmup * 1e9);
    end_at = measure_from + (uint64_t)(opt_seconds * 1e9);
    for (long i = 0; i < opt_conns; i++)
        step(&conns[i]);
    struct epoll_event evs[256];
    int started = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!started && t >= measure_from && opt_pid)
            cpu_from = server_cpu_ns();
        started |= t >= measure_from;
        if (t >= end_at)
            break;
        int n = epoll_wait(epfd, evs, 256, (int)((end_at - t) / 1000000) + 1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++)
            step(evs[i].data.ptr);
    }
    if (opt_pid)
        cpu_to = server_cpu_ns();
}

static void parse(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(o, "--name") == 0)
            opt_name = v;
        else if (strcmp(o, "--system") == 0)
            opt_system = v;
        else if (strcmp(o, "--conns") == 0)
            opt_conns = atol(v);
        else if (strcmp(o, "--size") == 0)
            opt_size = (size_t)atol(v);
        else if (strcmp(o, "--seconds") == 0)
            opt_seconds = atof(v);
        else if (strcmp(o, "--warmup") == 0)
            opt_warmup = atof(v);
        else if (strcmp(o, "--wait") == 0)
            opt_wait = atof(v);
        else if (strcmp(o, "--pid") == 0)
            opt_pid = atol(v);
        else if (strcmp(o, "--handshakes") == 0)
            opt_handshakes = atoi(v);
        else
            usage();
    }
    if (argc - i != 2 || opt_conns < 1 || opt_size < 1 || opt_seconds <= 0 ||
        opt_warmup < 0)
        usage();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[i + 1]));
    if (inet_pton(AF_INET, argv[i], &addr.sin_addr) != 1 ||
        (ntohl(addr.sin_addr.s_addr) >> 24) != 127)
        fail("HOST must be a loopback IPv4 address (127.x.x.x)");
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    make_context();
    struct conn *conns = calloc((size_t)opt_conns, sizeof *conns);
    msg = malloc(opt_size);
    rxbuf = malloc(opt_size);
    if (!conns || !msg || !rxbuf || (epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("setup");
    for (size_t i = 0; i < opt_size; i++)
        msg[i] = (char)('a' + (i * 7 + i / 251) % 26);
    for (long i = 0; i < opt_conns; i++)
        open_conn(&conns[i], i == 0);
    run(conns);
    printf("bench %s %s %.0f %s\n", opt_name, opt_system,
           (double)done / opt_seconds, opt_handshakes ? "conns/s" : "msgs/s");
    if (getenv("TLS_LOADGEN_SELF"))
        fprintf(stderr, "tls_loadgen: own CPU %.1f us per %s\n",
                self_cpu_ns() / 1e3 / (double)done,
                opt_handshakes ? "handshake" : "message");
    if (opt_pid && done)
        printf("bench %s_cpu %s %.1f %s\n", opt_name, opt_system,
               (cpu_to - cpu_from) / 1e3 / (double)done,
               opt_handshakes ? "us/conn" : "us/msg");
    fflush(stdout);
    return 0;
}
