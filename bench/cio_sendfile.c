/* sendfile (cio): the file server of the sendfile benchmark.
 *
 * Usage: cio_sendfile FILE PORT. Inside cio_run's main task: a streams
 * server on 127.0.0.1:PORT (cio_start_server) whose handler sends the
 * whole of FILE with cio_stream_sendfile (cio_sendfile on its transport:
 * sendfile(2), fallback off, so a copy would show as a failure) and
 * returns, which closes the connection. FILE is opened once and shared
 * by every connection (explicit offsets). bench/run.sh reads it with
 * bench/loadgen --sink; prints only errors; runs until killed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "cio.h"

static int file_fd;

static int send_it(cio_stream *s, void *arg)
{
    (void)arg;
    size_t sent = 0;
    int rc = cio_stream_sendfile(s, file_fd, 0, 0, 0, &sent);
    if (rc < 0)
        fprintf(stderr, "cio_sendfile: after %zu bytes: %s\n", sent,
                cio_strerror(rc));
    return 0;
}

static int serve(void *port)
{
    cio_server *server;
    int rc = cio_start_server(send_it, NULL, "127.0.0.1", port, NULL, NULL,
                              &server);
    if (rc < 0) {
        fprintf(stderr, "cio_sendfile: cio_start_server: %s\n",
                cio_strerror(rc));
        return rc;
    }
    rc = cio_server_serve_forever(server);
    cio_server_free(server);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: cio_sendfile FILE PORT\n");
        return 2;
    }
    file_fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (file_fd < 0) {
        perror("cio_sendfile: open");
        return 1;
    }
    return cio_run(serve, argv[2]) < 0;
}
