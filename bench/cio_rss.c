/* rss: does memory go back after a burst? Two bursts, each reported as
 * VmRSS before it, at its peak, and after it (KiB):
 *   rss_streams_*  N connections to a streams server, each reading 64 KiB
 *                  once and staying open (the clients are a child
 *                  process); "before" is with every connection open and
 *                  its handler waiting, "after" 1.5 s after all have read
 *                  (a drained buffer goes back after a second idle).
 *   rss_tasks_*    N tasks alive at once, each with 64 KiB of its stack
 *                  in use; "after" is once all have finished.
 * N is argv[1] (default 10,000; capped by the open-file limit). */
#define _GNU_SOURCE
#include "bench.h"
#include "cio.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { BURST = 64 * 1024 };
static const double IDLE = 1.5; /* seconds idle before "after" */

/* VmRSS or VmHWM (the peak since the last reset_peak) from
 * /proc/self/status, in KiB. */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kib = atol(line + n + 1);
    if (f)
        fclose(f);
    return kib;
}

/* Linux 4.0+: writing 5 to clear_refs resets VmHWM to the current RSS. */
static void reset_peak(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd >= 0) {
        ssize_t w = write(fd, "5", 1);
        (void)w;
        close(fd);
    }
}

static void report3(const char *what, long before, long peak, long after)
{
    char name[64];
    snprintf(name, sizeof name, "rss_%s_before", what);
    bench_report(name, before, "KiB");
    snprintf(name, sizeof name, "rss_%s_peak", what);
    bench_report(name, peak, "KiB");
    snprintf(name, sizeof name, "rss_%s_after", what);
    bench_report(name, after, "KiB");
}

/* ------------------------------------------------------------- streams */

static long n_conns, waiting, done;
static cio_event all_waiting, all_done;
static char sink[BURST]; /* one task at a time copies into it */

static int handler(cio_stream *s, void *arg)
{
    (void)arg;
    if (++waiting == n_conns)
        cio_event_set(&all_waiting);
    ssize_t r = cio_stream_readexactly(s, sink, BURST, NULL);
    if (++done == n_conns)
        cio_event_set(&all_done);
    if (r == BURST) /* idle until the client hangs up */
        r = cio_stream_read(s, sink, 1);
    return r < 0 ? (int)r : 0;
}

/* The child: n connections; on a byte from `go`, 64 KiB on each; then it
 * waits for the parent's hang-up (EOF on `go`) and exits. */
static _Noreturn void clients(int port, long n, int go)
{
    int *fds = malloc((size_t)n * sizeof *fds);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (long i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof a))
            _exit(2);
    }
    char c, *burst = calloc(1, BURST);
    if (read(go, &c, 1) != 1)
        _exit(3);
    for (long i = 0; i < n; i++)
        for (size_t sent = 0; sent < BURST;) {
            ssize_t w = write(fds[i], burst + sent, BURST - sent);
            if (w <= 0)
                _exit(4);
            sent += (size_t)w;
        }
    while (read(go, &c, 1) > 0)
        ;
    _exit(0);
}

static int streams_burst(long n)
{
    n_conns = n;
    cio_event_init(&all_waiting);
    cio_event_init(&all_done);
    cio_server *srv;
    cio_server_options so = {.backlog = 4096};
    if (cio_start_server(handler, NULL, "127.0.0.1", "0", NULL, &so, &srv))
        return -1;
    int go[2];
    if (pipe(go))
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        clients(cio_server_port(srv), n, go[0]);
    }
    close(go[0]);
    cio_event_wait(&all_waiting);
    long before = status_kib("VmRSS");
    reset_peak();
    ssize_t w = write(go[1], "g", 1);
    (void)w;
    cio_event_wait(&all_done);
    cio_sleep(IDLE); /* drained buffers go back after a second idle */
    long peak = status_kib("VmHWM");
    long after = status_kib("VmRSS");
    report3("streams", before, peak, after);
    close(go[1]); /* the child closes its connections and exits */
    waitpid(pid, NULL, 0);
    cio_server_close(srv);
    cio_server_close_clients(srv);
    cio_server_wait_closed(srv);
    cio_server_free(srv);
    return 0;
}

/* --------------------------------------------------------------- tasks */

static cio_future *gate;
static long parked;
static cio_event tasks_parked;

/* 64 levels of 1 KiB: 64 KiB of stack in use while it waits at the
 * bottom. */
__attribute__((noinline)) static int deep(int levels)
{
    volatile char pad[1024];
    pad[0] = (char)levels;
    pad[sizeof pad - 1] = 1;
    if (levels == 0) {
        if (--parked == 0)
            cio_event_set(&tasks_parked);
        return cio_await(gate, NULL);
    }
    int r = deep(levels - 1);
    return r + pad[sizeof pad - 1] - 1 + (pad[0] - (char)levels);
}

static int deep_task(void *arg)
{
    (void)arg;
    return deep(64);
}

static int tasks_burst(long n)
{
    cio_future_new(NULL, &gate);
    cio_event_init(&tasks_parked);
    cio_task **t = calloc((size_t)n, sizeof *t);
    parked = n;
    long before = status_kib("VmRSS");
    for (long i = 0; i < n; i++)
        if (cio_create_task(deep_task, NULL, &t[i]))
            return -1;
    cio_event_wait(&tasks_parked);
    long peak = status_kib("VmRSS");
    cio_future_set_result(gate, NULL);
    cio_gather(t, (size_t)n, 0, NULL);
    long after = status_kib("VmRSS");
    report3("tasks", before, peak, after);
    for (long i = 0; i < n; i++)
        cio_future_unref(t[i]);
    free(t);
    cio_future_unref(gate);
    return 0;
}

static int bench_main(void *arg)
{
    long n = *(long *)arg;
    return streams_burst(n) || tasks_burst(n) ? 1 : 0;
}

int main(int argc, char **argv)
{
    long n = bench_count(argc, argv, 10000);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)n + 64 > rl.rlim_cur)
        n = (long)rl.rlim_cur - 64;
    return cio_run(bench_main, &n);
}
