/* echo_streams (cio): the echo server of the streams benchmark.
 *
 * Usage: cio_echo_streams PORT. Inside cio_run's main task: a streams
 * server on 127.0.0.1:PORT (cio_start_server); each connection's task
 * loops cio_stream_read(s, buf, 65536) / cio_stream_write /
 * cio_stream_drain, as asyncio's reader.read / writer.write /
 * await writer.drain(). The buffer is on the task's stack, as a C user
 * would write it (only the pages a read touches become resident).
 * bench/run.sh drives it with bench/loadgen; prints only errors; runs
 * until killed. */
#include <stdio.h>

#include "cio.h"

static int echo_client(cio_stream *s, void *arg)
{
    (void)arg;
    char buf[65536];
    for (;;) {
        ssize_t n = cio_stream_read(s, buf, sizeof buf);
        /* EOF or a reset by the load generator ends the connection
         * quietly (0): not a server error worth a report. */
        if (n <= 0 || cio_stream_write(s, buf, (size_t)n) < 0 ||
            cio_stream_drain(s) < 0)
            return 0;
    }
}

static int serve(void *port)
{
    cio_server *server;
    int rc = cio_start_server(echo_client, NULL, "127.0.0.1", port, NULL,
                              NULL, &server);
    if (rc < 0) {
        fprintf(stderr, "cio_echo_streams: cio_start_server: %s\n",
                cio_strerror(rc));
        return rc;
    }
    rc = cio_server_serve_forever(server);
    cio_server_free(server);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: cio_echo_streams PORT\n");
        return 2;
    }
    return cio_run(serve, argv[1]) < 0;
}
