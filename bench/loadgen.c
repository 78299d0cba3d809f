/* loadgen: the load generator of the echo benchmarks (issue 6, "Benchmark").
 *
 * One process, one thread, epoll. Echo mode (the default): --conns
 * connections to HOST:PORT, each sending a message of --size bytes and
 * waiting until all of it has come back before sending the next, for
 * --warmup seconds (not counted) and then --seconds seconds. It prints
 *
 *   bench <name> <system> <n> msgs/s        round trips completed per second
 *   bench <name>_p50 <system> <us> us       median round-trip latency
 *   bench <name>_p99 <system> <us> us       99th percentile
 *
 * over every round trip that ended inside the measured window. The echoed
 * bytes are compared with what was sent; a mismatch, an early close or a
 * connection error ends the run with status 1.
 *
 * Idle mode (--idle N --pid PID): opens N connections, sends one byte on
 * each and waits for its echo (so the server has accepted it and set it
 * up), at most 64 at a time (below any listen backlog), then leaves them
 * idle and prints the growth of PID's VmRSS per connection:
 *
 *   bench <name> <system> <bytes> bytes/conn
 *
 * Sink mode (--sink RUNS), for the sendfile benchmark: RUNS connections
 * one after another, each read until the server closes it, with
 * recv(MSG_TRUNC), which makes TCP drop the bytes without copying them,
 * so the reader costs little and the server's speed shows. It prints the
 * median over the runs, from connect to EOF:
 *
 *   bench <name> <system> <MiB/s> MiB/s
 *
 * and fails unless every run brought the same, non-zero, byte count.
 *
 * Helpers for bench/run.sh: --free-port prints a free loopback TCP port;
 * --wait S retries the first connection for up to S seconds (the server
 * is starting).
 *
 * Only the load generator's own CPU is used for checking and timing; run
 * it pinned to another CPU than the server (taskset).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IDLE_INFLIGHT 64 /* idle mode: connections awaiting their echo */

struct conn {
    int fd;
    int want_out;     /* EPOLLOUT registered: a send is incomplete */
    size_t sent;      /* bytes of the current message sent */
    size_t recvd;     /* bytes of it echoed back */
    uint64_t t_start; /* ns: when the current message started */
};

static const char *opt_name = "echo";
static const char *opt_system = "unknown";
static long opt_conns = 100;
static size_t opt_size = 1024;
static double opt_seconds = 5;
static double opt_warmup = 1;
static double opt_wait;
static long opt_idle;
static long opt_pid;
static long opt_sink;

static struct sockaddr_in addr;
static int epfd;
static char *msg;    /* the message every connection sends */
static char *rxbuf;  /* receive scratch buffer, opt_size bytes */
static uint32_t *lat; /* latencies (ns) of measured round trips */
static size_t nlat, caplat;

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void fail(const char *what)
{
    fprintf(stderr, "loadgen: %s\n", what);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen [--name N] [--system S] [--conns C] [--size B]\n"
            "               [--seconds T] [--warmup T] [--wait T] HOST PORT\n"
            "       loadgen --idle N --pid PID [--name N] [--system S] "
            "[--wait T] HOST PORT\n"
            "       loadgen --sink RUNS [--name N] [--system S] [--wait T] "
            "HOST PORT\n"
            "       loadgen --free-port\n");
    exit(2);
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket");
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("bind");
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

/* A blocking connect (loopback: immediate); the first call may retry for
 * opt_wait seconds while the server starts. */
static int dial(int first)
{
    uint64_t deadline = now_ns() + (uint64_t)(opt_wait * 1e9);
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
            return fd;
        if (!first || errno != ECONNREFUSED || now_ns() >= deadline)
            die("connect");
        close(fd);
        usleep(20000);
    }
}

/* dial, then non-blocking, no Nagle, registered for EPOLLIN. */
static int open_conn(struct conn *c, int first)
{
    int one = 1;
    c->fd = dial(first);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0)
        die("fcntl");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
    return 0;
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

/* Sends what the socket takes of the rest of the current message. */
static void send_more(struct conn *c)
{
    while (c->sent < opt_size) {
        ssize_t n = write(c->fd, msg + c->sent, opt_size - c->sent);
        if (n < 0) {
            if (errno == EAGAIN) {
                set_out(c, 1);
                return;
            }
            if (errno == EINTR)
                continue;
            die("write");
        }
        c->sent += (size_t)n;
    }
    set_out(c, 0);
}

static void start_msg(struct conn *c, uint64_t t)
{
    c->t_start = t;
    c->sent = c->recvd = 0;
    send_more(c);
}

static void record(uint64_t ns)
{
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat)
            fail("out of memory");
    }
    lat[nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

/* One read (level-triggered: more data means another event). Returns 1
 * when the current message is complete. */
static int recv_some(struct conn *c)
{
    ssize_t n = read(c->fd, rxbuf, opt_size - c->recvd);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        die("read");
    }
    if (n == 0)
        fail("the server closed a connection");
    if (memcmp(rxbuf, msg + c->recvd, (size_t)n) != 0)
        fail("the echoed bytes differ from those sent");
    c->recvd += (size_t)n;
    return c->recvd == opt_size;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double percentile_us(double p)
{
    if (nlat == 0)
        return 0;
    size_t i = (size_t)(p * (double)(nlat - 1) + 0.5);
    return lat[i] / 1000.0;
}

static int run_echo(void)
{
    struct conn *conns = calloc((size_t)opt_conns, sizeof *conns);
    msg = malloc(opt_size);
    rxbuf = malloc(opt_size);
    if (!conns || !msg || !rxbuf)
        fail("out of memory");
    for (size_t i = 0; i < opt_size; i++)
        msg[i] = (char)('a' + (i * 7 + i / 251) % 26);
    for (long i = 0; i < opt_conns; i++)
        open_conn(&conns[i], i == 0);

    uint64_t t0 = now_ns();
    uint64_t measure_from = t0 + (uint64_t)(opt_warmup * 1e9);
    uint64_t end = measure_from + (uint64_t)(opt_seconds * 1e9);
    uint64_t done = 0;
    for (long i = 0; i < opt_conns; i++)
        start_msg(&conns[i], t0);

    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end)
            break;
        int timeout_ms = (int)((end - t) / 1000000) + 1;
        int n = epoll_wait(epfd, evs, 256, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if ((evs[i].events & EPOLLOUT) && c->sent < opt_size)
                send_more(c);
            if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            if (!recv_some(c))
                continue;
            t = now_ns();
            if (t >= measure_from && t < end) {
                record(t - c->t_start);
                done++;
            }
            start_msg(c, t);
        }
    }

    qsort(lat, nlat, sizeof *lat, cmp_u32);
    printf("bench %s %s %.0f msgs/s\n", opt_name, opt_system,
           (double)done / opt_seconds);
    printf("bench %s_p50 %s %.1f us\n", opt_name, opt_system,
           percentile_us(0.50));
    printf("bench %s_p99 %s %.1f us\n", opt_name, opt_system,
           percentile_us(0.99));
    fflush(stdout);
    return 0;
}

/* VmRSS of pid, in KiB. */
static long vm_rss_kib(long pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        die(path);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    if (kib < 0)
        fail("no VmRSS in /proc/PID/status");
    return kib;
}

static int run_idle(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_cur < (rlim_t)opt_idle + 16)
        fail("RLIMIT_NOFILE is below the number of connections");

    struct conn *conns = calloc((size_t)opt_idle, sizeof *conns);
    if (!conns)
        fail("out of memory");
    /* The first connection only checks that the server is up; the
     * baseline is taken once it has been served, then it stays open. */
    char byte = 'x';
    long opened = 0, idle = 0, inflight = 0;
    struct epoll_event evs[IDLE_INFLIGHT];
    long rss0 = 0;
    uint64_t deadline = now_ns() + (uint64_t)(opt_wait + 60) * 1000000000u;

    while (idle < opt_idle) {
        while (opened < opt_idle && inflight < IDLE_INFLIGHT &&
               (opened > 0 ? idle > 0 : 1)) {
            struct conn *c = &conns[opened];
            open_conn(c, opened == 0);
            if (write(c->fd, &byte, 1) != 1)
                die("write");
            opened++;
            inflight++;
        }
        if (now_ns() > deadline)
            fail("idle connections: timed out waiting for echoes");
        int n = epoll_wait(epfd, evs, IDLE_INFLIGHT, 1000);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            char b;
            ssize_t r = read(c->fd, &b, 1);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r < 0)
                die("read");
            if (r == 0 || b != byte)
                fail("idle connection: bad echo");
            epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
            inflight--;
            if (idle++ == 0) {
                usleep(200000);
                rss0 = vm_rss_kib(opt_pid);
            }
        }
    }
    /* Let the server finish whatever follows the echo (it is idle now). */
    usleep(300000);
    long rss1 = vm_rss_kib(opt_pid);
    printf("bench %s %s %.0f bytes/conn\n", opt_name, opt_system,
           (double)(rss1 - rss0) * 1024.0 / (double)(opt_idle - 1));
    fflush(stdout);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One sink run: the bytes that came before EOF, and how long they took. */
static size_t sink_once(int first, double *seconds)
{
    static char scratch[1 << 16]; /* MSG_TRUNC: TCP writes nothing here */
    int fd = dial(first);
    uint64_t t0 = now_ns();
    size_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, scratch, 64u << 20, MSG_TRUNC);
        if (n == 0)
            break;
        if (n < 0 && errno != EINTR)
            die("recv");
        if (n > 0)
            total += (size_t)n;
    }
    *seconds = (double)(now_ns() - t0) / 1e9;
    close(fd);
    return total;
}

static int run_sink(void)
{
    double *rate = calloc((size_t)opt_sink, sizeof *rate);
    size_t bytes = 0;
    if (!rate)
        die("calloc");
    for (long r = 0; r < opt_sink; r++) {
        double secs;
        size_t n = sink_once(r == 0, &secs);
        if (n == 0 || (r > 0 && n != bytes))
            fail("sink: the runs brought different byte counts");
        bytes = n;
        rate[r] = (double)n / (1 << 20) / secs;
    }
    qsort(rate, (size_t)opt_sink, sizeof *rate, cmp_double);
    printf("bench %s %s %.0f MiB/s\n", opt_name, opt_system,
           rate[opt_sink / 2]);
    fflush(stdout);
    free(rate);
    return 0;
}

int main(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--free-port") == 0)
            return free_port();
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
        else if (strcmp(o, "--idle") == 0)
            opt_idle = atol(v);
        else if (strcmp(o, "--pid") == 0)
            opt_pid = atol(v);
        else if (strcmp(o, "--sink") == 0)
            opt_sink = atol(v);
        else
            usage();
    }
    if (argc - i != 2 || opt_conns < 1 || opt_size < 1 || opt_seconds <= 0 ||
        opt_warmup < 0 || opt_idle < 0 || (opt_idle > 0 && opt_idle < 2) ||
        (opt_idle && opt_pid <= 0) || opt_sink < 0)
        usage();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[i + 1]));
    if (inet_pton(AF_INET, argv[i], &addr.sin_addr) != 1)
        fail("HOST must be an IPv4 address (loopback)");
    if ((ntohl(addr.sin_addr.s_addr) >> 24) != 127)
        fail("HOST must be a loopback address (127.x.x.x)");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    if (opt_sink)
        return run_sink();
    return opt_idle ? run_idle() : run_echo();
}
