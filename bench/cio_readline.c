/* readline (cio): one 16 MiB line arriving in 1 KiB writes over a local
 * stream socket (a Unix connection: cio has no stream over a bare
 * socketpair), read with cio_stream_readline; the time from the first
 * write to readline's return, as a ratio to one memchr over 16 MiB (the
 * least any search of the line costs). A search per chunk of the whole
 * buffer would be quadratic; searching only the new bytes keeps the ratio
 * near the cost of moving the bytes. A writer thread does blocking 1 KiB
 * writes, so the reader sees the bytes as fast as the kernel passes them
 * on. BENCH_N: the line's length in KiB (default 16384). */
#define _GNU_SOURCE
#include "bench.h"
#include "cio.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum { CHUNK = 1024 };

typedef struct line_job {
    size_t len;   /* bytes before the '\n' */
    int fd;       /* the writer's end, blocking */
    double start; /* when the first write began */
} line_job;

static void *write_line(void *arg)
{
    line_job *j = arg;
    char buf[CHUNK];
    memset(buf, 'a', sizeof buf);
    j->start = bench_now_ns();
    for (size_t sent = 0; sent < j->len; sent += CHUNK)
        if (write(j->fd, buf, CHUNK) != CHUNK)
            return (void *)1;
    return write(j->fd, "\n", 1) == 1 ? NULL : (void *)1;
}

/* One memchr over len bytes that holds no match: the reference. */
static double memchr_ns(size_t len)
{
    char *b = malloc(len);
    if (!b)
        return 0;
    memset(b, 'a', len);
    double best = 0;
    for (int i = 0; i < 5; i++) { /* the best of five: caches warm */
        double t0 = bench_now_ns();
        void *volatile hit = memchr(b, '\n', len);
        double t = bench_now_ns() - t0;
        (void)hit;
        if (i == 0 || t < best)
            best = t;
    }
    free(b);
    return best;
}

/* A listening Unix socket at a fresh path (in path). */
static int listen_unix(char *path, size_t cap)
{
    snprintf(path, cap, "/tmp/cio-bench-readline-%ld.sock", (long)getpid());
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) ||
        listen(fd, 1)) {
        perror("cio_readline: listen");
        return -1;
    }
    return fd;
}

static int read_line(cio_stream *s, line_job *j, double *ns)
{
    pthread_t th;
    if (pthread_create(&th, NULL, write_line, j))
        return -1;
    const char *line;
    ssize_t n = cio_stream_readline(s, &line);
    double end = bench_now_ns();
    void *failed;
    pthread_join(th, &failed);
    *ns = end - j->start;
    return n == (ssize_t)(j->len + 1) && !failed ? 0 : -1;
}

static int bench_main(void *arg)
{
    line_job j = {.len = (size_t)*(long *)arg * CHUNK};
    char path[64];
    int lfd = listen_unix(path, sizeof path);
    if (lfd < 0)
        return -1;
    cio_stream_options so = {.limit = j.len + CHUNK};
    cio_stream *s;
    int r = cio_open_unix_connection(path, &so, &s);
    j.fd = r ? -1 : accept(lfd, NULL, NULL);
    close(lfd);
    unlink(path);
    double ns = 0;
    if (r || j.fd < 0 || read_line(s, &j, &ns))
        r = -1;
    if (j.fd >= 0)
        close(j.fd);
    if (!r) {
        cio_stream_free(s);
        bench_report("readline", ns / memchr_ns(j.len), "x");
    }
    return r;
}

int main(int argc, char **argv)
{
    long kib = bench_count(argc, argv, 16384);
    return cio_run(bench_main, &kib) == 0 ? 0 : 1;
}
