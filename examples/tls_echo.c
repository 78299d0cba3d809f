/* TLS: an echo server and its clients over TLS, then an https GET from a
 * real TLS server (openssl s_server), all on this machine.
 *
 * TLS needs a certificate. A real server gets one from a CA; here the
 * example makes a self-signed one for "localhost" with the openssl
 * program (a subprocess, as chapter 6 shows), so it needs no Internet and
 * no files of its own. Then:
 *   1. a client with the default context (the system's CAs, host names
 *      checked) refuses the self-signed certificate: verification is on
 *      unless you turn it off;
 *   2. a client that trusts this one certificate talks to the server;
 *   3. the same client context fetches a page over https from
 *      `openssl s_server -www`, a TLS server cio did not write.
 * Streams over TLS read and write plaintext exactly as over TCP: only the
 * options given when connecting and serving differ.
 */
#define _GNU_SOURCE
#include <cio.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[] = "/tmp/cio-tls-example-XXXXXX";
static char cert[64], key[64];

/* Runs argv to its end; returns 0 if it exited with status 0. */
static int run(const char *const *argv)
{
    cio_process_options o = {.in = {.kind = CIO_STDIO_DEVNULL},
                             .out = {.kind = CIO_STDIO_DEVNULL},
                             .err = {.kind = CIO_STDIO_DEVNULL}};
    cio_process *p;
    int err = cio_create_subprocess_exec(argv, &o, &p);
    if (err)
        return err;
    int code = -1;
    err = cio_process_wait(p, &code);
    cio_process_free(p);
    return err ? err : code == 0 ? 0 : -EPROTO;
}

static int make_certificate(void)
{
    if (!mkdtemp(dir))
        return -errno;
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    const char *const argv[] = {
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        "-keyout", key, "-out", cert, NULL};
    return run(argv);
}

/* ---- the server: each line back, as over plain TCP */

static int echo(cio_stream *s, void *arg)
{
    (void)arg;
    const char *line;
    ssize_t n;
    while ((n = cio_stream_readline(s, &line)) > 0)
        if (cio_stream_write(s, line, (size_t)n) || cio_stream_drain(s))
            break;
    return 0; /* returning closes: TLS sends close_notify first */
}

/* ---- the clients */

static int talk(const char *port, struct ssl_ctx_st *ctx)
{
    cio_tls_options tls = {.ctx = ctx, .server_hostname = "localhost"};
    cio_stream_options opts = {.tls = &tls};
    cio_stream *s;
    int err = cio_open_connection("127.0.0.1", port, &opts, &s);
    if (err) {
        printf("client: %s (%s)\n", cio_strerror(err),
               err == CIO_ETLS ? cio_tls_error_string() : "");
        return err;
    }
    char version[32];
    socklen_t len = sizeof version;
    if (cio_stream_get_extra_info(s, "tls_version", version, &len) == 0)
        printf("client: connected over %s\n", version);
    const char *lines[] = {"hello over TLS\n", "bye\n"};
    for (int i = 0; i < 2 && !err; i++) {
        const char *line;
        err = cio_stream_write(s, lines[i], strlen(lines[i]));
        ssize_t n = err ? err : cio_stream_readline(s, &line);
        if (n > 0)
            printf("client: echoed %.*s", (int)n, line);
        else
            err = n ? (int)n : CIO_EINCOMPLETE;
    }
    cio_stream_free(s);
    return err;
}

/* An https GET: the request and the status line, plaintext to us. */
static int fetch(const char *port, struct ssl_ctx_st *ctx)
{
    cio_tls_options tls = {.ctx = ctx, .server_hostname = "localhost"};
    cio_stream_options opts = {.tls = &tls};
    cio_stream *s;
    int err = cio_open_connection("127.0.0.1", port, &opts, &s);
    if (err)
        return err;
    static const char get[] = "GET / HTTP/1.0\r\n\r\n";
    const char *line;
    ssize_t n;
    err = cio_stream_write(s, get, sizeof get - 1);
    n = err ? err : cio_stream_readline(s, &line);
    if (n > 2)
        printf("https: %.*s\n", (int)n - 2, line); /* without "\r\n" */
    cio_stream_free(s);
    return n > 2 ? 0 : n ? (int)n : CIO_EINCOMPLETE;
}

/* `openssl s_server -www` prints "ACCEPT [::]:PORT" once it listens. */
static int start_s_server(cio_process **p, char *port, size_t cap)
{
    const char *const argv[] = {"openssl", "s_server", "-www", "-accept",
                                "0", "-cert", cert, "-key", key, NULL};
    cio_process_options o = {.in = {.kind = CIO_STDIO_DEVNULL},
                             .out = {.kind = CIO_STDIO_PIPE},
                             .err = {.kind = CIO_STDIO_DEVNULL}};
    int err = cio_create_subprocess_exec(argv, &o, p);
    const char *line;
    ssize_t n;
    while (!err && (n = cio_stream_readline(cio_process_stdout(*p), &line)) > 0) {
        const char *colon = memrchr(line, ':', (size_t)n);
        if (strncmp(line, "ACCEPT", 6) == 0 && colon) {
            snprintf(port, cap, "%.*s", (int)(line + n - colon - 2), colon + 1);
            return 0;
        }
    }
    return err ? err : -EPROTO;
}

static int demo(void)
{
    struct ssl_ctx_st *server_ctx, *trusting, *defaults;
    int err = cio_tls_server_context(cert, key, &server_ctx);
    if (err)
        return err;
    cio_tls_options tls = {.ctx = server_ctx};
    cio_server_options sopts = {.tls = &tls};
    cio_server *server;
    err = cio_start_server(echo, NULL, "127.0.0.1", "0", NULL, &sopts,
                           &server);
    cio_tls_context_free(server_ctx); /* the server keeps a reference */
    if (err)
        return err;
    char port[16];
    snprintf(port, sizeof port, "%d", cio_server_port(server));

    printf("1. the system's CAs do not know our certificate:\n");
    if (cio_tls_client_context(&defaults) == 0) {
        talk(port, defaults);
        cio_tls_context_free(defaults);
    }
    printf("2. a client that trusts it:\n");
    err = cio_tls_client_context(&trusting);
    if (!err)
        err = cio_tls_context_load_ca(trusting, cert);
    if (!err)
        err = talk(port, trusting);
    cio_server_close(server);
    cio_server_wait_closed(server);
    cio_server_free(server);

    printf("3. https from openssl s_server:\n");
    cio_process *p;
    if (!err && (err = start_s_server(&p, port, sizeof port)) == 0) {
        err = fetch(port, trusting);
        cio_process_kill(p);
        cio_process_wait(p, NULL);
        cio_process_free(p);
    }
    cio_tls_context_free(trusting);
    return err;
}

static int main_task(void *arg)
{
    (void)arg;
    int err = make_certificate();
    if (err)
        printf("cannot make a certificate: %s\n", cio_strerror(err));
    else
        err = demo();
    const char *const rm[] = {"rm", "-rf", dir, NULL};
    run(rm);
    return err;
}

int main(void)
{
    if (!cio_tls_available()) {
        printf("skipped: cio was built without OpenSSL\n");
        return 77; /* examples/check.sh: a skip, with the reason above */
    }
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
