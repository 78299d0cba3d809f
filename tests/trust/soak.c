/* make soak: hostile and heavy loads, then what the process holds after.
 *
 * Phases, each against a fresh server on the loop of this process:
 *  - c10k streams / c10k protocols: CONNS clients (in a child process, so
 *    each side has its own fd limit) ping-pong lines for SECS seconds with
 *    a stream server, then with a protocol (callback) echo server;
 *  - never-reading peers: 20 peers ask for data and never read, so the
 *    server's writes pile up until it aborts them;
 *  - RST storm: peers connect, send, and reset (SO_LINGER 0);
 *  - fd exhaustion: the server's fd limit is lowered until accept fails
 *    with EMFILE, then raised; the server must serve again;
 *  - connect/close: CYCLES connections opened, used once and closed.
 * Each prints a row: connections, bytes echoed, bytes lost (sent but not
 * echoed back intact), allocations cio still holds after the phase, and
 * RSS and fds before and after. Bad: a lost byte, an fd not given back,
 * more than 16 allocations held (a leak per connection would be
 * thousands; a few are the loop's tables grown to the peak: the fd
 * table, the stack pool's index), RSS after above twice before plus
 * 16 MiB.
 *
 * Two things held are shown, and not counted, because they are kept by
 * design and do not grow with use, only with the peak:
 *  - the stack pool's regions: one record per 256 stacks the peak needed
 *    at once (40 for 10,000 tasks), their address space reserved for the
 *    loop's life so that later tasks take a stack with no system call;
 *  - memory cio gave back to malloc that glibc keeps in its arenas: RSS
 *    is measured after malloc_trim(0) (the column shows both), since
 *    what the allocator caches for the process is not cio's to hold.
 *
 * usage: soak SECS CONNS CYCLES */
#define _GNU_SOURCE
#include "../../src/internal.h"

#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { LINE = 64 };

static double secs;
static long conns, cycles;
static int bad;

/* ------------------------------------------------------------ measuring */

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    if (f)
        fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 65536; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

typedef struct sample {
    long rss, rss_untrimmed, allocs;
    int fds;
} sample;

static cio_loop *server_loop; /* for the pool's regions */

static sample take_sample(void)
{
    long untrimmed = rss_kib();
    malloc_trim(0);
    long kept = (long)cio__stack_pool_regions(server_loop);
    return (sample){rss_kib(), untrimmed, cio__alloc_live() - kept,
                    open_fds()};
}

static void row(const char *phase, long n, long bytes, long lost,
                const sample *before)
{
    sample after = take_sample();
    long held = after.allocs - before->allocs;
    bool fail = lost || held > 16 || after.fds > before->fds ||
                after.rss > 2 * before->rss + 16 * 1024;
    bad += fail;
    printf("| %s | %ld | %ld | %ld | %ld | %zu | %.1f -> %.1f (%.1f) | "
           "%d -> %d | %s |\n",
           phase, n, bytes, lost, held, cio__stack_pool_regions(server_loop),
           before->rss / 1024.0, after.rss / 1024.0,
           after.rss_untrimmed / 1024.0, before->fds, after.fds,
           fail ? "BAD" : "ok");
    fflush(stdout);
}

/* ------------------------------------------------------------- servers */

static int line_echo(cio_stream *s, void *arg)
{
    (void)arg;
    for (;;) {
        const char *line;
        ssize_t n = cio_stream_readline(s, &line);
        if (n <= 0 || cio_stream_write(s, line, (size_t)n) ||
            cio_stream_drain(s))
            return 0;
    }
}

static void proto_data(cio_transport *t, const char *data, size_t n,
                       void *ctx)
{
    (void)ctx;
    cio_transport_write(t, data, n);
}

static const cio_protocol echo_protocol = {.data_received = proto_data};

static cio_server *serve(bool protocol, cio_client_connected cb)
{
    cio_server *srv;
    cio_server_options o = {.backlog = 4096}; /* c10k connects at once */
    int r = protocol ? cio_create_server("127.0.0.1", "0", &echo_protocol,
                                         NULL, NULL, &o, &srv)
                     : cio_start_server(cb, NULL, "127.0.0.1", "0", NULL, &o,
                                        &srv);
    if (r) {
        fprintf(stderr, "soak: server: %s\n", cio_strerror(r));
        exit(2);
    }
    return srv;
}

static void port_of(cio_server *srv, char *port)
{
    snprintf(port, 16, "%d", cio_server_port(srv));
}

static void server_done(cio_server *srv)
{
    cio_server_close(srv);
    cio_server_abort_clients(srv);
    cio_server_wait_closed(srv);
    cio_server_free(srv);
}

/* ---------------------------------------------------- clients (streams) */

typedef struct tally {
    long sent, echoed, failed;
} tally;

typedef struct client {
    const char *port;
    double until;   /* ping-pong until this loop time; < 0: once */
    tally *t;
} client;

static void fill_line(char *buf, long k)
{
    for (int i = 0; i < LINE - 1; i++)
        buf[i] = (char)('a' + (k + i) % 26);
    buf[LINE - 1] = '\n';
}

static int ping_pong(void *arg)
{
    client *c = arg;
    cio_stream *s;
    if (cio_open_connection("127.0.0.1", c->port, NULL, &s)) {
        c->t->failed++;
        return 0;
    }
    cio_loop *loop = cio_get_running_loop();
    for (long k = 0;; k++) {
        char buf[LINE];
        fill_line(buf, k);
        if (cio_stream_write(s, buf, LINE))
            break;
        c->t->sent += LINE;
        char back[LINE];
        if (cio_stream_readexactly(s, back, LINE, NULL) != LINE)
            break;
        if (memcmp(back, buf, LINE) == 0)
            c->t->echoed += LINE;
        if (c->until < 0 || cio_loop_time(loop) >= c->until)
            break;
    }
    cio_stream_free(s);
    return 0;
}

/* Runs n clients at once (at most `batch` in flight) on loop; each does
 * one exchange or ping-pongs until `until`. */
static void run_clients(cio_loop *loop, const char *port, long n, long batch,
                        double until, tally *t)
{
    client c = {port, until, t};
    for (long done = 0; done < n;) {
        long k = n - done < batch ? n - done : batch;
        cio_task **ts = calloc((size_t)k, sizeof *ts);
        for (long i = 0; i < k; i++)
            if (cio_task_new(loop, ping_pong, &c, NULL, &ts[i]))
                t->failed++, ts[i] = NULL;
        for (long i = 0; i < k; i++)
            if (ts[i]) {
                cio_loop_run_until_complete(loop, ts[i]);
                cio_future_unref(ts[i]);
            }
        free(ts);
        done += k;
    }
}

/* ------------------------------------------------------------- phases */

typedef struct job {
    bool protocol;
    cio_server *srv;
    char port[16];
    pid_t pid;
    int result_fd;
    tally result;
} job;

static int open_server(void *arg)
{
    job *j = arg;
    j->srv = serve(j->protocol, line_echo);
    port_of(j->srv, j->port);
    return 0;
}

/* Waits for the child's clients, takes their tally, closes the server. */
static int await_child(void *arg)
{
    job *j = arg;
    int status;
    while (waitpid(j->pid, &status, WNOHANG) == 0)
        cio_sleep(0.05);
    if (read(j->result_fd, &j->result, sizeof j->result) !=
        sizeof j->result)
        j->result.failed = conns;
    close(j->result_fd);
    server_done(j->srv);
    return 0;
}

static void run_task(cio_loop *loop, cio_task_fn fn, void *arg)
{
    cio_task *t;
    if (cio_task_new(loop, fn, arg, NULL, &t))
        exit(2);
    cio_loop_run_until_complete(loop, t);
    cio_future_unref(t);
}

/* The server here, CONNS clients in a child (forked outside any loop
 * run; it makes its own) ping-ponging for SECS seconds. */
static void phase_c10k(cio_loop *loop, bool protocol)
{
    sample before = take_sample();
    job j = {.protocol = protocol};
    run_task(loop, open_server, &j);
    int p[2];
    if (pipe(p))
        exit(2);
    fflush(stdout);
    j.pid = fork();
    if (j.pid == 0) {
        close(p[0]);
        cio_loop *mine;
        if (cio_loop_new(&mine, NULL))
            _exit(2);
        tally t = {0, 0, 0};
        run_clients(mine, j.port, conns, conns, cio_loop_time(mine) + secs,
                    &t);
        if (write(p[1], &t, sizeof t) != sizeof t)
            _exit(2);
        _exit(0);
    }
    close(p[1]);
    j.result_fd = p[0];
    run_task(loop, await_child, &j);
    row(protocol ? "c10k protocols" : "c10k streams", conns - j.result.failed,
        j.result.echoed, j.result.sent - j.result.echoed + j.result.failed,
        &before);
}

/* A handler that answers one line with data until the peer is cut off. */
static int flood(cio_stream *s, void *arg)
{
    (void)arg;
    const char *line;
    if (cio_stream_readline(s, &line) <= 0)
        return 0;
    static char chunk[65536];
    while (!cio_stream_write(s, chunk, sizeof chunk) && !cio_stream_drain(s))
        ;
    return 0;
}

static int raw_connect(const char *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(port)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int never_read_main(void *arg)
{
    (void)arg;
    cio_server *srv = serve(false, flood);
    char port[16];
    port_of(srv, port);
    int fds[20];
    for (int i = 0; i < 20; i++) {
        fds[i] = raw_connect(port);
        if (fds[i] >= 0 && write(fds[i], "go\n", 3) != 3)
            bad++;
    }
    cio_sleep(secs / 4 > 0.5 ? secs / 4 : 0.5); /* the writes pile up */
    server_done(srv); /* aborts them: nothing waits for those peers */
    for (int i = 0; i < 20; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return 0;
}

static int rst_storm_main(void *arg)
{
    long *n = arg;
    cio_server *srv = serve(false, line_echo);
    char port[16];
    port_of(srv, port);
    for (long i = 0; i < *n; i++) {
        int fd = raw_connect(port);
        if (fd < 0)
            continue;
        if (write(fd, "reset me\n", 9) != 9)
            bad++;
        struct linger l = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        close(fd);
        if (i % 100 == 99)
            cio_sleep(0.001);
    }
    tally t = {0, 0, 0};
    client c = {port, -1, &t};
    ping_pong(&c); /* and it still serves */
    server_done(srv);
    *n = t.sent - t.echoed + t.failed;
    return 0;
}

/* The server's fd limit is lowered to what it has now plus a few; peers
 * in a child connect past it; once they are gone it must serve again. */
static int fd_exhaustion_main(void *arg)
{
    long *lost = arg;
    cio_server *srv = serve(false, line_echo);
    char port[16];
    port_of(srv, port);
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    low = old;
    low.rlim_cur = (rlim_t)open_fds() + 8;
    setrlimit(RLIMIT_NOFILE, &low);
    pid_t pid = fork();
    if (pid == 0) {
        int fds[200];
        for (int i = 0; i < 200; i++)
            fds[i] = raw_connect(port);
        usleep(300000);
        for (int i = 0; i < 200; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, WNOHANG) == 0)
        cio_sleep(0.01); /* accept meets EMFILE meanwhile */
    setrlimit(RLIMIT_NOFILE, &old);
    cio_sleep(0.1);
    tally t = {0, 0, 0};
    client c = {port, -1, &t};
    ping_pong(&c);
    server_done(srv);
    *lost = t.sent - t.echoed + t.failed;
    return 0;
}

static void phase(cio_loop *loop, const char *name, cio_task_fn fn, long n,
                  long *lost)
{
    sample before = take_sample();
    run_task(loop, fn, lost);
    row(name, n, 0, *lost, &before);
}

static int cycles_main(void *arg)
{
    tally *t = arg;
    cio_server *srv = serve(false, line_echo);
    char port[16];
    port_of(srv, port);
    cio_loop *loop = cio_get_running_loop();
    client c = {port, -1, t};
    for (long i = 0; i < cycles;) {
        cio_task *ts[200];
        int k = 0;
        for (; k < 200 && i < cycles; k++, i++)
            if (cio_task_new(loop, ping_pong, &c, NULL, &ts[k]))
                t->failed++, k--;
        for (int j = 0; j < k; j++) {
            cio_await(ts[j], NULL);
            cio_future_unref(ts[j]);
        }
    }
    server_done(srv);
    return 0;
}

int main(int argc, char **argv)
{
    secs = argc > 1 ? atof(argv[1]) : 10;
    conns = argc > 2 ? atol(argv[2]) : 10000;
    cycles = argc > 3 ? atol(argv[3]) : 100000;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max; /* each side of c10k needs CONNS fds */
    setrlimit(RLIMIT_NOFILE, &r);
    cio__stream_free_linger = 1.0; /* a freed stream's flush: cut soon */
    cio_loop *loop;
    if (cio_loop_new(&loop, NULL))
        return 2;
    server_loop = loop;
    printf("| phase | connections | bytes echoed | bytes lost | allocations "
           "held after | stack pool regions | RSS MiB before -> after "
           "(untrimmed) | fds before -> after | verdict |\n"
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |\n");
    /* A first connection makes what the loop keeps for good (the shared
     * read buffer): before that, nothing is measured. */
    long warm = cycles;
    cycles = 10;
    tally w = {0, 0, 0};
    run_task(loop, cycles_main, &w);
    cycles = warm;
    phase_c10k(loop, false);
    phase_c10k(loop, true);
    long lost = 0;
    phase(loop, "never-reading peers", never_read_main, 20, &lost);
    long storm = cycles / 10 > 100 ? cycles / 10 : 100, rst = storm;
    phase(loop, "RST storm", rst_storm_main, storm, &rst);
    phase(loop, "fd exhaustion (EMFILE)", fd_exhaustion_main, 200, &lost);
    sample before = take_sample();
    tally t = {0, 0, 0};
    run_task(loop, cycles_main, &t);
    row("connect/close", cycles - t.failed, t.echoed,
        t.sent - t.echoed + t.failed, &before);
    cio__executor_shutdown_default(loop, 30);
    cio_loop_free(loop);
    return bad ? 1 : 0;
}
