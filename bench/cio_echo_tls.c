/* tls_echo (cio): the echo server of the TLS benchmarks (issue 14).
 *
 * Usage: cio_echo_tls CERT KEY PORT. cio_echo_protocol over TLS: inside
 * cio_run's main task, a server on 127.0.0.1:PORT (cio_create_server with
 * .tls, a context from cio_tls_server_context(CERT, KEY)) whose
 * protocol's data_received writes the plaintext straight back
 * (cio_transport_write). bench/run.sh drives it with bench/tls_loadgen,
 * for echoes and for handshakes; prints only errors; runs until killed. */
#include <stdio.h>

#include "cio.h"

static const char *cert, *key;

static void echo_data(cio_transport *t, const char *data, size_t n,
                      void *ctx)
{
    (void)ctx;
    cio_transport_write(t, data, n);
}

static const cio_protocol echo = {.data_received = echo_data};

static int serve(void *port)
{
    struct ssl_ctx_st *ctx;
    int rc = cio_tls_server_context(cert, key, &ctx);
    if (rc < 0) {
        fprintf(stderr, "cio_echo_tls: cio_tls_server_context: %s %s\n",
                cio_strerror(rc), cio_tls_error_string());
        return rc;
    }
    cio_tls_options tls = {.ctx = ctx};
    cio_server_options opts = {.tls = &tls};
    cio_server *server;
    rc = cio_create_server("127.0.0.1", port, &echo, NULL, NULL, &opts,
                           &server);
    cio_tls_context_free(ctx); /* the server holds its own reference */
    if (rc < 0) {
        fprintf(stderr, "cio_echo_tls: cio_create_server: %s\n",
                cio_strerror(rc));
        return rc;
    }
    rc = cio_server_serve_forever(server);
    cio_server_free(server);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: cio_echo_tls CERT KEY PORT\n");
        return 2;
    }
    cert = argv[1];
    key = argv[2];
    return cio_run(serve, argv[3]) < 0;
}
