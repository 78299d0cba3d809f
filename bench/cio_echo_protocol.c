/* echo_protocol (cio): the echo server of the protocol benchmark.
 *
 * Usage: cio_echo_protocol PORT. Inside cio_run's main task: a server on
 * 127.0.0.1:PORT (cio_create_server) whose protocol's data_received writes
 * the bytes straight back (cio_transport_write), then
 * cio_server_serve_forever. bench/run.sh drives it with bench/loadgen;
 * prints only errors; runs until killed. */
#include <stdio.h>

#include "cio.h"

static void echo_data(cio_transport *t, const char *data, size_t n,
                      void *ctx)
{
    (void)ctx;
    cio_transport_write(t, data, n);
}

static const cio_protocol echo = {.data_received = echo_data};

static int serve(void *port)
{
    cio_server *server;
    int rc = cio_create_server("127.0.0.1", port, &echo, NULL, NULL, NULL,
                               &server);
    if (rc < 0) {
        fprintf(stderr, "cio_echo_protocol: cio_create_server: %s\n",
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
        fprintf(stderr, "usage: cio_echo_protocol PORT\n");
        return 2;
    }
    return cio_run(serve, argv[1]) < 0;
}
