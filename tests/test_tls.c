/* TLS (issue 14): cio's clients and servers against peers we did not
 * write (openssl s_server and s_client, Python's ssl module) and against
 * each other, with a test CA and certificates made by the openssl program
 * for each test; TLS 1.2 and 1.3; every bad input (plaintext, bad
 * certificates, vanishing and silent peers, truncated closes); ALPN, SNI,
 * mutual TLS, STARTTLS, flow control; a thousand connections at once.
 *
 * A build without OpenSSL skips these (the machine lacks what they test)
 * but one, which checks that every TLS call says -ENOTSUP. Every test name
 * starts with "tls_" (`make check T=tls`). */
#define _GNU_SOURCE
#include "harness.h"
#include "net_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef CIO_HAVE_OPENSSL
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#endif

/* A plain handler: reads until EOF. */
static int upper_plain(cio_stream *s, void *arg)
{
    char buf[64];
    while (cio_stream_read(s, buf, sizeof buf) > 0)
        ;
    return 0;
}

/* ------------------------------------------------------------ the files */

/* A CA; server (localhost, 127.0.0.1), other.example and client
 * certificates it signed; a self-signed localhost certificate. P-256
 * keys: quick to make. */
static const char make_certs[] =
    "set -e; cd \"$1\"\n"
    "k='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
    "openssl req -x509 $k -keyout ca.key -out ca.pem -days 2 "
    "  -subj /CN=cio-test-ca 2>/dev/null\n"
    "sign() {\n"
    "  openssl req $k -keyout $1.key -out $1.csr -subj /CN=$2 2>/dev/null\n"
    "  printf 'subjectAltName=%s\\n' \"$3\" > $1.ext\n"
    "  openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key "
    "    -CAcreateserial -out $1.pem -days 2 -extfile $1.ext 2>/dev/null\n"
    "}\n"
    "sign server localhost DNS:localhost,IP:127.0.0.1\n"
    "sign other other.example DNS:other.example\n"
    "sign client cio-client DNS:cio-client\n"
    "openssl req -x509 $k -keyout self.key -out self.pem -days 2 "
    "  -subj /CN=localhost -addext subjectAltName=DNS:localhost "
    "  2>/dev/null\n";

static char dir[64];

__attribute__((unused)) static const char *file(const char *name)
{
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

/* Each test's process makes its own files (in the harness's fork), and
 * the harness's exit removes them. */
static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

__attribute__((unused)) static void need_tls(void)
{
    if (!cio_tls_available())
        test_skip("built without OpenSSL");
    if (system("command -v openssl >/dev/null && command -v python3 "
               ">/dev/null") != 0)
        test_skip("no openssl or python3 program: the peers are missing");
    snprintf(dir, sizeof dir, "/tmp/cio-tls-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    atexit(remove_dir);
    char cmd[256];
    FILE *f = fopen(file("make.sh"), "w");
    CHECK(f != NULL);
    fputs(make_certs, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "sh %s %s", file("make.sh"), dir);
    CHECK_EQ(system(cmd), 0);
}

#ifdef CIO_HAVE_OPENSSL

/* ------------------------------------------------------------ contexts */

static SSL_CTX *client_ctx(void)
{
    SSL_CTX *c;
    CHECK_ERR(cio_tls_client_context(&c), 0);
    CHECK_ERR(cio_tls_context_load_ca(c, file("ca.pem")), 0);
    return c;
}

static SSL_CTX *server_ctx(const char *name)
{
    char cert[32], key[32];
    snprintf(cert, sizeof cert, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    SSL_CTX *c;
    const char *cf = file(cert), *kf = file(key);
    CHECK_ERR(cio_tls_server_context(cf, kf, &c), 0);
    return c;
}

/* ------------------------------------------------------------- peers */

/* A peer program whose stdout says where it listens: the line holding
 * `marker`, ending in ":PORT" (s_server's "ACCEPT [::]:PORT"), or the
 * port alone (our Python peers print it). */
typedef struct peer_proc {
    cio_process *p;
    char port[16];
    char out[4096]; /* what it printed after the port line */
    size_t nout;
} peer_proc;

static void peer_start(peer_proc *pp, const char *cmd, const char *marker)
{
    memset(pp, 0, sizeof *pp);
    cio_process_options o = stdio3(PIPE, PIPE, DEVNULL);
    pp->p = sh(cmd, &o);
    for (;;) {
        const char *line;
        ssize_t n = cio_stream_readline(cio_process_stdout(pp->p), &line);
        CHECK(n > 0);
        if (marker && !memmem(line, (size_t)n, marker, strlen(marker)))
            continue;
        const char *colon = memrchr(line, ':', (size_t)n);
        const char *from = colon ? colon + 1 : line;
        size_t len = (size_t)(line + n - from);
        while (len && (from[len - 1] == '\n' || from[len - 1] == '\r'))
            len--;
        CHECK(len > 0 && len < sizeof pp->port);
        memcpy(pp->port, from, len);
        return;
    }
}

/* Reads what the peer prints until it exits; returns its exit code. */
static int peer_finish(peer_proc *pp)
{
    char *all;
    ssize_t n = cio_stream_read_all(cio_process_stdout(pp->p), &all);
    CHECK(n >= 0);
    size_t k = (size_t)n < sizeof pp->out - 1 ? (size_t)n : sizeof pp->out - 1;
    memcpy(pp->out, all, k);
    pp->out[k] = '\0';
    pp->nout = k;
    cio_free(all);
    int code;
    CHECK_ERR(cio_process_wait(pp->p, &code), 0);
    cio_process_free(pp->p);
    return code;
}

static void peer_kill(peer_proc *pp)
{
    cio_process_kill(pp->p);
    int code;
    CHECK_ERR(cio_process_wait(pp->p, &code), 0);
    cio_process_free(pp->p);
}

/* Python's ssl module as the peer: a server (one connection) that
 * answers each line upper-cased and then reports how the client ended
 * ("clean": close_notify; "ragged": EOF without it; or the error), or a
 * client that sends argv's line and prints what came back. */
static const char py_server[] =
    "import socket, ssl, sys\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
    "if sys.argv[3] != 'any': ctx.maximum_version = "
    "getattr(ssl.TLSVersion, sys.argv[3])\n"
    "ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen()\n"
    "print(ls.getsockname()[1], flush=True)\n"
    "c, _ = ls.accept()\n"
    "s = ctx.wrap_socket(c, server_side=True, suppress_ragged_eofs=False)\n"
    "f = b''\n"
    "try:\n"
    "    while True:\n"
    "        d = s.recv(65536)\n"
    "        if not d: print('clean', flush=True); break\n"
    "        f += d\n"
    "        while b'\\n' in f:\n"
    "            l, f = f.split(b'\\n', 1); s.sendall(l.upper() + b'\\n')\n"
    "except ssl.SSLEOFError: print('ragged', flush=True)\n"
    "except OSError as e: print('error', type(e).__name__, flush=True)\n";

static const char py_client[] =
    "import socket, ssl, sys\n"
    "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
    "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', "
    "int(sys.argv[2]))), server_hostname='localhost')\n"
    "s.sendall(sys.argv[3].encode() + b'\\n')\n"
    "got = b''\n"
    "while not got.endswith(b'\\n'):\n"
    "    d = s.recv(100)\n"
    "    if not d: break\n"
    "    got += d\n"
    "print(s.version(), got.decode().strip(), flush=True)\n"
    "s.unwrap(); s.close()\n";

static const char *py_file(const char *name, const char *src)
{
    const char *path = file(name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(src, f);
    fclose(f);
    return path;
}

/* ------------------------------------------------- cio against s_server */

static int s_server_main(void *arg)
{
    const char *version = arg; /* "tls1_2" or "tls1_3" */
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "exec openssl s_server -accept 0 -naccept 1 -rev -%s -cert %s "
             "-key %s",
             version, file("server.pem"), file("server.key"));
    peer_proc pp;
    peer_start(&pp, cmd, "ACCEPT");
    SSL_CTX *ctx = client_ctx();
    cio_tls_options tls = {.ctx = ctx};
    cio_stream_options so = {.tls = &tls};
    cio_stream *s;
    CHECK_ERR(cio_open_connection("localhost", pp.port, &so, &s), 0);
    cio_tls_context_free(ctx); /* each connection keeps its own reference */
    char v[32];
    socklen_t len = sizeof v;
    CHECK_ERR(cio_stream_get_extra_info(s, "tls_version", v, &len), 0);
    CHECK(strcmp(v, strcmp(version, "tls1_2") == 0 ? "TLSv1.2" : "TLSv1.3") ==
          0);
    len = sizeof v;
    CHECK_ERR(cio_stream_get_extra_info(s, "cipher", v, &len), 0);
    CHECK(len > 1);
    /* s_server -rev answers each line reversed. */
    const char *line;
    ssize_t n;
    CHECK_ERR(cio_stream_write(s, "hello tls\n", 10), 0);
    for (;;) {
        n = cio_stream_readline(s, &line);
        CHECK(n > 0);
        if (n == 10 && memcmp(line, "slt olleh\n", 10) == 0)
            break;
    }
    cio_stream_close(s);
    CHECK_ERR(cio_stream_wait_closed(s), 0);
    cio_stream_free(s);
    peer_kill(&pp);
    return 0;
}

TEST(tls_stream_client_against_openssl_s_server_tls12)
{
    need_tls();
    run_main(s_server_main, "tls1_2");
}

TEST(tls_stream_client_against_openssl_s_server_tls13)
{
    need_tls();
    run_main(s_server_main, "tls1_3");
}


/* -------------------------------------------------- cio against s_client */

typedef struct tls_server {
    cio_server *srv_;
    char port[16];
    int served;
    bool once; /* answer one line, then close */
    SSL_CTX *ctx;
} tls_server;

/* A cio TLS server's handler: each line back upper-cased, until EOF. */
static int upper_handler(cio_stream *s, void *arg)
{
    tls_server *v = arg;
    const char *line;
    ssize_t n;
    while ((n = cio_stream_readline(s, &line)) > 0) {
        char up[256];
        size_t k = (size_t)n < sizeof up ? (size_t)n : sizeof up;
        for (size_t i = 0; i < k; i++)
            up[i] = (char)(line[i] >= 'a' && line[i] <= 'z' ? line[i] - 32
                                                            : line[i]);
        if (cio_stream_write(s, up, k) || cio_stream_drain(s) || v->once)
            break;
    }
    v->served++;
    cio_event_set(&changed);
    return 0;
}

/* A stream server on 127.0.0.1 running cb(stream, arg) per connection,
 * over TLS when tls is given (tls->ctx set); its port goes in port. Its
 * backlog takes a thousand clients at once: with asyncio's 100, SYNs
 * dropped on a busy machine come back only after 1, 3, 7, 15 s. */
static cio_server *listen_with(cio_client_connected cb, void *arg,
                               const cio_tls_options *tls, char port[16])
{
    cio_server_options so = {.tls = tls, .backlog = 1024};
    cio_server *s;
    CHECK_ERR(cio_start_server(cb, arg, "127.0.0.1", "0", NULL, &so, &s), 0);
    snprintf(port, 16, "%d", cio_server_port(s));
    return s;
}

/* Stops s, resetting the connections still open if `abort`. */
static void unlisten(cio_server *s, bool abort)
{
    cio_server_close(s);
    if (abort)
        cio_server_abort_clients(s);
    CHECK_ERR(cio_server_wait_closed(s), 0);
    cio_server_free(s);
}

static void tls_server_start(tls_server *v, SSL_CTX *ctx,
                             const cio_tls_options *more)
{
    memset(v, 0, sizeof *v);
    v->ctx = ctx;
    cio_tls_options tls = more ? *more : (cio_tls_options){0};
    tls.ctx = ctx;
    v->srv_ = listen_with(upper_handler, v, &tls, v->port);
}

static void tls_server_done(tls_server *v)
{
    unlisten(v->srv_, false);
    cio_tls_context_free(v->ctx);
}

static int s_client_main(void *arg)
{
    const char *version = arg;
    tls_server v;
    tls_server_start(&v, server_ctx("server"), NULL);
    v.once = true; /* s_client prints what it got when the server closes */
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "printf 'ping\\n' | exec openssl s_client -connect 127.0.0.1:%s "
             "-%s -CAfile %s -verify_return_error -verify_hostname localhost "
             "-quiet -ign_eof 2>/dev/null",
             v.port, version, file("ca.pem"));
    cio_process_options o = stdio3(DEVNULL, PIPE, DEVNULL);
    cio_process *p = sh(cmd, &o);
    const char *line;
    ssize_t n = cio_stream_readline(cio_process_stdout(p), &line);
    CHECK_EQ(n, 5);
    CHECK(memcmp(line, "PING\n", 5) == 0);
    int code;
    CHECK_ERR(cio_process_wait(p, &code), 0);
    CHECK_EQ(code, 0);
    cio_process_free(p);
    AWAIT(v.served == 1);
    tls_server_done(&v);
    return 0;
}

TEST(tls_stream_server_against_openssl_s_client_tls12)
{
    need_tls();
    run_main(s_client_main, "tls1_2");
}

TEST(tls_stream_server_against_openssl_s_client_tls13)
{
    need_tls();
    run_main(s_client_main, "tls1_3");
}

/* ------------------------------------------------ against Python's ssl */

static int py_client_main(void *arg)
{
    tls_server v;
    tls_server_start(&v, server_ctx("server"), NULL);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "exec python3 %s %s %s 'from python'",
             py_file("client.py", py_client), file("ca.pem"), v.port);
    cio_process_options o = stdio3(DEVNULL, PIPE, DEVNULL);
    peer_proc pp = {.p = sh(cmd, &o)};
    CHECK_EQ(peer_finish(&pp), 0);
    CHECK(strcmp(pp.out, "TLSv1.3 FROM PYTHON\n") == 0);
    AWAIT(v.served == 1);
    tls_server_done(&v);
    return 0;
}

TEST(tls_server_against_python_ssl_client) { need_tls(); run_main(py_client_main, NULL); }

/* Our client ends with close_notify (close) or without it (abort):
 * Python's server tells which it saw. */
static int py_server_main(void *arg)
{
    bool do_abort = arg != NULL;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "exec python3 %s %s %s TLSv1_2",
             py_file("server.py", py_server), file("server.pem"),
             file("server.key"));
    peer_proc pp;
    peer_start(&pp, cmd, NULL);
    SSL_CTX *ctx = client_ctx();
    cio_tls_options tls = {.ctx = ctx};
    cio_stream_options so = {.tls = &tls};
    cio_stream *s;
    CHECK_ERR(cio_open_connection("127.0.0.1", pp.port, &so, &s), 0);
    cio_tls_context_free(ctx);
    char v[32];
    socklen_t len = sizeof v;
    CHECK_ERR(cio_stream_get_extra_info(s, "tls_version", v, &len), 0);
    CHECK(strcmp(v, "TLSv1.2") == 0);
    CHECK_ERR(cio_stream_write(s, "abc\n", 4), 0);
    const char *line;
    CHECK_EQ(cio_stream_readline(s, &line), 4);
    CHECK(memcmp(line, "ABC\n", 4) == 0);
    if (do_abort)
        cio_stream_abort(s);
    else
        cio_stream_close(s);
    cio_stream_wait_closed(s);
    cio_stream_free(s);
    CHECK_EQ(peer_finish(&pp), 0);
    if (do_abort)
        CHECK(strncmp(pp.out, "error ConnectionResetError", 26) == 0 ||
              strcmp(pp.out, "ragged\n") == 0);
    else
        CHECK(strcmp(pp.out, "clean\n") == 0);
    return 0;
}

TEST(tls_close_sends_close_notify_to_python) { need_tls(); run_main(py_server_main, NULL); }

TEST(tls_abort_sends_no_close_notify) { need_tls(); run_main(py_server_main, "abort"); }

/* ------------------------------------------------------------ bad input */

/* A plain TCP server that does `what` with each connection: answer in
 * plaintext, close at once, or say nothing at all. */
typedef struct bad_peer {
    cio_server *srv_;
    char port[16];
    const char *what;
} bad_peer;

static int bad_handler(cio_stream *s, void *arg)
{
    bad_peer *b = arg;
    char buf[16];
    if (strcmp(b->what, "plaintext") == 0) {
        (void)cio_stream_read(s, buf, sizeof buf);
        (void)cio_stream_write(s, "HTTP/1.0 400 Bad Request\r\n\r\n", 28);
        (void)cio_stream_drain(s);
    } else if (strcmp(b->what, "vanish") == 0) {
        (void)cio_stream_read(s, buf, sizeof buf); /* part of the hello */
    } else { /* silent: read and wait until the client goes */
        while (cio_stream_read(s, buf, sizeof buf) > 0)
            ;
    }
    return 0;
}

static void bad_start(bad_peer *b, const char *what)
{
    b->what = what;
    b->srv_ = listen_with(bad_handler, b, NULL, b->port);
}

static void bad_done(bad_peer *b) { unlisten(b->srv_, true); }

static int connect_tls(const char *port, SSL_CTX *ctx, const char *hostname,
                       double timeout, cio_stream **s)
{
    cio_tls_options tls = {.ctx = ctx, .server_hostname = hostname,
                           .handshake_timeout = timeout};
    cio_stream_options so = {.tls = &tls};
    return cio_open_connection("127.0.0.1", port, &so, s);
}

static int bad_peers_main(void *arg)
{
    SSL_CTX *ctx = client_ctx();
    cio_stream *s = (cio_stream *)1;
    bad_peer b;
    bad_start(&b, "plaintext");
    CHECK_ERR(connect_tls(b.port, ctx, "localhost", 0, &s), CIO_ETLS);
    CHECK(s == NULL);
    CHECK(strlen(cio_tls_error_string()) > 0);
    bad_done(&b);
    bad_start(&b, "vanish");
    CHECK_ERR(connect_tls(b.port, ctx, "localhost", 0, &s), -ECONNRESET);
    bad_done(&b);
    bad_start(&b, "silent");
    CHECK_ERR(connect_tls(b.port, ctx, "localhost", 0.2, &s), -ETIMEDOUT);
    bad_done(&b);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_plaintext_vanishing_and_silent_peers_are_clear_errors)
{
    need_tls();
    run_main(bad_peers_main, NULL);
}

/* Each certificate problem: CIO_ETLS with the verifier's reason, and the
 * server (whose handshake failed too) goes on serving good clients. */
static void check_reason(const char *want)
{
    if (!strstr(cio_tls_error_string(), want))
        test_fail(__FILE__, __LINE__, "reason '%s' lacks '%s'",
                  cio_tls_error_string(), want);
}

static int certs_main(void *arg)
{
    SSL_CTX *ctx = client_ctx();
    cio_stream *s;
    tls_server self;
    tls_server_start(&self, server_ctx("self"), NULL);
    CHECK_ERR(connect_tls(self.port, ctx, "localhost", 0, &s), CIO_ETLS);
    check_reason("self-signed");
    tls_server_done(&self);

    tls_server v;
    tls_server_start(&v, server_ctx("server"), NULL);
    CHECK_ERR(connect_tls(v.port, ctx, "other.example", 0, &s), CIO_ETLS);
    check_reason("verify failed");
    /* Two days from now plus a year, the certificate has expired. */
    X509_VERIFY_PARAM_set_time(SSL_CTX_get0_param(ctx),
                               time(NULL) + 400 * 86400);
    CHECK_ERR(connect_tls(v.port, ctx, "localhost", 0, &s), CIO_ETLS);
    check_reason("expired");
    cio_tls_context_free(ctx);
    /* A client that verifies needs a name to check. */
    ctx = client_ctx();
    cio_tls_options tls = {.ctx = ctx};
    cio_stream_options so = {.tls = &tls};
    CHECK_ERR(cio_open_unix_connection("/nonexistent", &so, &s), -ENOENT);
    CHECK_ERR(connect_tls(v.port, ctx, "localhost", 0, &s), 0);
    CHECK_ERR(cio_stream_write(s, "ok\n", 3), 0);
    const char *line;
    CHECK_EQ(cio_stream_readline(s, &line), 3);
    CHECK(memcmp(line, "OK\n", 3) == 0);
    cio_stream_free(s);
    AWAIT(v.served == 1); /* the failed handshakes ran no handler */
    tls_server_done(&v);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_bad_certificates_fail_verification_with_the_reason)
{
    need_tls();
    run_main(certs_main, NULL);
}

/* A server's peer that sends plaintext, or vanishes mid-handshake: no
 * handler runs, nothing is reported, the next client is served. */
static int server_bad_clients_main(void *arg)
{
    tls_server v;
    tls_server_start(&v, server_ctx("server"), NULL);
    cio_stream *s;
    CHECK_ERR(cio_open_connection("127.0.0.1", v.port, NULL, &s), 0);
    CHECK_ERR(cio_stream_write(s, "GET / HTTP/1.0\r\n\r\n", 18), 0);
    char buf[64];
    ssize_t n;
    while ((n = cio_stream_read(s, buf, sizeof buf)) > 0)
        ; /* the server's alert, then its close */
    cio_stream_free(s);
    CHECK_ERR(cio_open_connection("127.0.0.1", v.port, NULL, &s), 0);
    cio_stream_abort(s);
    cio_stream_free(s);
    SSL_CTX *ctx = client_ctx();
    CHECK_ERR(connect_tls(v.port, ctx, "localhost", 0, &s), 0);
    cio_stream_free(s);
    AWAIT(v.served == 1);
    CHECK_EQ(v.served, 1);
    tls_server_done(&v);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_server_survives_plaintext_and_vanishing_clients)
{
    need_tls();
    run_main(server_bad_clients_main, NULL);
}

/* Python's server ends without close_notify after answering: the reader
 * gets the answer, then CIO_ETLSEOF, not a clean EOF. */
static const char py_truncating[] =
    "import socket, ssl, sys\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
    "ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen()\n"
    "print(ls.getsockname()[1], flush=True)\n"
    "c, _ = ls.accept()\n"
    "s = ctx.wrap_socket(c, server_side=True)\n"
    "s.sendall(b'partial answer\\n')\n"
    "c.detach() if False else None\n"
    "import os; os.close(s.detach())\n";

static int truncated_main(void *arg)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "exec python3 %s %s %s",
             py_file("trunc.py", py_truncating), file("server.pem"),
             file("server.key"));
    peer_proc pp;
    peer_start(&pp, cmd, NULL);
    SSL_CTX *ctx = client_ctx();
    cio_stream *s;
    CHECK_ERR(connect_tls(pp.port, ctx, "localhost", 0, &s), 0);
    const char *line;
    CHECK_EQ(cio_stream_readline(s, &line), 15);
    CHECK_ERR(cio_stream_readline(s, &line), CIO_ETLSEOF);
    cio_stream_free(s);
    cio_tls_context_free(ctx);
    CHECK_EQ(peer_finish(&pp), 0);
    return 0;
}

TEST(tls_truncated_close_is_reported_as_such)
{
    need_tls();
    run_main(truncated_main, NULL);
}

/* ---------------------------------------------- ALPN, SNI, mutual TLS */

static int alpn_sni_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server"), *other = server_ctx("other");
    const char *server_protos[] = {"http/1.1", "h2"};
    CHECK_ERR(cio_tls_context_set_alpn(sctx, server_protos, 2), 0);
    CHECK_ERR(cio_tls_context_set_alpn(other, server_protos, 2), 0);
    CHECK_ERR(cio_tls_context_add_sni(sctx, "other.example", other), 0);
    cio_tls_context_free(other); /* sctx keeps its own reference */
    tls_server v;
    tls_server_start(&v, sctx, NULL);
    SSL_CTX *ctx = client_ctx();
    const char *client_protos[] = {"h2", "http/1.1"};
    CHECK_ERR(cio_tls_context_set_alpn(ctx, client_protos, 2), 0);
    cio_stream *s;
    CHECK_ERR(connect_tls(v.port, ctx, "OTHER.example", 0, &s), 0);
    char buf[256];
    socklen_t len = sizeof buf;
    CHECK_ERR(cio_stream_get_extra_info(s, "alpn_protocol", buf, &len), 0);
    if (strcmp(buf, "http/1.1") != 0)
        test_fail(__FILE__, __LINE__, "alpn %s", buf); /* the server's first choice */
    len = sizeof buf;
    CHECK_ERR(cio_stream_get_extra_info(s, "peercert_subject", buf, &len), 0);
    CHECK(strstr(buf, "CN=other.example") != NULL);
    cio_stream_free(s);
    CHECK_ERR(connect_tls(v.port, ctx, "localhost", 0, &s), 0);
    len = sizeof buf;
    CHECK_ERR(cio_stream_get_extra_info(s, "peercert_subject", buf, &len), 0);
    CHECK(strstr(buf, "CN=localhost") != NULL);
    cio_stream_free(s);
    const char *bad[] = {""};
    CHECK_ERR(cio_tls_context_set_alpn(ctx, bad, 1), -EINVAL);
    AWAIT(v.served == 2);
    tls_server_done(&v);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_alpn_and_sni_choose_protocol_and_certificate)
{
    need_tls();
    run_main(alpn_sni_main, NULL);
}

/* The server requires a client certificate: a client with one is seen
 * by name; one without cannot talk (TLS 1.3 tells it at its first read). */
static int who_handler(cio_stream *s, void *arg)
{
    char *who = arg;
    socklen_t len = 128;
    if (cio_stream_get_extra_info(s, "peercert_subject", who, &len))
        strcpy(who, "nobody");
    (void)cio_stream_write(s, "hi\n", 3);
    (void)cio_stream_drain(s);
    cio_event_set(&changed);
    return 0;
}

static int mutual_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server");
    CHECK_ERR(cio_tls_context_verify_clients(sctx, file("ca.pem")), 0);
    char who[128] = "";
    cio_tls_options st = {.ctx = sctx};
    char port[16];
    cio_server *lsrv = listen_with(who_handler, who, &st, port);
    SSL_CTX *ctx = client_ctx();
    cio_stream *s;
    const char *line;
    int r = connect_tls(port, ctx, "localhost", 0, &s);
    if (r == 0) { /* TLS 1.3: the refusal comes after the handshake */
        CHECK_ERR(cio_stream_readline(s, &line), CIO_ETLS);
        cio_stream_free(s);
    } else {
        CHECK_ERR(r, CIO_ETLS);
    }
    CHECK_ERR(cio_tls_context_use_certificate(ctx, file("client.pem"),
                                              file("client.key")),
              0);
    CHECK_ERR(connect_tls(port, ctx, "localhost", 0, &s), 0);
    CHECK_EQ(cio_stream_readline(s, &line), 3);
    CHECK(strstr(who, "CN=cio-client") != NULL);
    cio_stream_free(s);
    unlisten(lsrv, false);
    cio_tls_context_free(sctx);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_mutual_tls_requires_and_names_the_client)
{
    need_tls();
    run_main(mutual_main, NULL);
}

/* ------------------------------------------------- address literals */

/* What a server's handler can learn of a client that sent no SNI and no
 * certificate, and of buffers too small for the answers. */
typedef struct ip_seen {
    int sni, peercert, subject, short_object, short_alpn;
    int served;
} ip_seen;

static int ip_info_handler(cio_stream *s, void *arg)
{
    ip_seen *v = arg;
    char buf[64];
    void *p;
    socklen_t len = sizeof buf;
    v->sni = cio_stream_get_extra_info(s, "server_hostname", buf, &len);
    len = sizeof p;
    v->peercert = cio_stream_get_extra_info(s, "peercert", &p, &len);
    len = sizeof buf;
    v->subject = cio_stream_get_extra_info(s, "peercert_subject", buf, &len);
    len = 1;
    v->short_object = cio_stream_get_extra_info(s, "ssl_object", buf, &len);
    len = 0;
    v->short_alpn = cio_stream_get_extra_info(s, "alpn_protocol", buf, &len);
    const char *line;
    ssize_t n = cio_stream_readline(s, &line);
    if (n > 0 && cio_stream_write(s, line, (size_t)n) == 0)
        (void)cio_stream_drain(s);
    v->served++;
    cio_event_set(&changed);
    return 0;
}

/* A client that names the server by address checks the address against
 * the certificate (its IP entry) and sends no SNI, as the RFC says; an
 * address the certificate does not list fails verification. */
static int ip_literal_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server"), *ctx = client_ctx();
    ip_seen v = {0};
    cio_tls_options st = {.ctx = sctx};
    char port[16];
    cio_server *lsrv = listen_with(ip_info_handler, &v, &st, port);
    cio_stream *s;
    CHECK_ERR(connect_tls(port, ctx, "127.0.0.1", 0, &s), 0);
    char name[64];
    socklen_t len = sizeof name;
    CHECK_ERR(cio_stream_get_extra_info(s, "server_hostname", name, &len),
              -ENOENT);
    CHECK_ERR(cio_stream_write(s, "by address\n", 11), 0);
    const char *line;
    CHECK_EQ(cio_stream_readline(s, &line), 11);
    CHECK(memcmp(line, "by address\n", 11) == 0);
    cio_stream_free(s);
    AWAIT(v.served == 1);
    CHECK_ERR(v.sni, -ENOENT);
    CHECK_ERR(v.peercert, -ENOENT);
    CHECK_ERR(v.subject, -ENOENT);
    CHECK_ERR(v.short_object, -EINVAL);
    CHECK_ERR(v.short_alpn, -EINVAL);
    s = (cio_stream *)1;
    CHECK_ERR(connect_tls(port, ctx, "127.0.0.2", 0, &s), CIO_ETLS);
    CHECK(s == NULL);
    CHECK(strstr(cio_tls_error_string(), "certificate verify failed") != NULL);
    CHECK_EQ(v.served, 1); /* no handler for a failed handshake */
    unlisten(lsrv, false);
    cio_tls_context_free(sctx);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_an_address_is_checked_against_the_certificate_and_sent_as_no_sni)
{
    need_tls();
    run_main(ip_literal_main, NULL);
}

/* --------------------------------------------------------- STARTTLS */

static int starttls_handler(cio_stream *s, void *arg)
{
    SSL_CTX *sctx = arg;
    const char *line;
    if (cio_stream_readline(s, &line) != 9 || memcmp(line, "STARTTLS\n", 9))
        return -EPROTO;
    CHECK_ERR(cio_stream_write(s, "GO\n", 3), 0);
    cio_tls_options tls = {.ctx = sctx};
    CHECK_ERR(cio_stream_start_tls(s, &tls, 1), 0);
    CHECK_ERR(cio_stream_start_tls(s, &tls, 1), -EALREADY);
    ssize_t n = cio_stream_readline(s, &line);
    CHECK_EQ(n, 7);
    CHECK_ERR(cio_stream_write(s, line, (size_t)n), 0);
    CHECK_ERR(cio_stream_drain(s), 0);
    return 0;
}

static int starttls_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server"), *ctx = client_ctx();
    char port[16];
    cio_server *lsrv = listen_with(starttls_handler, sctx, NULL, port);
    cio_stream *s;
    CHECK_ERR(cio_open_connection("127.0.0.1", port, NULL, &s), 0);
    CHECK_EQ(cio_stream_can_write_eof(s), 1);
    CHECK_ERR(cio_stream_write(s, "STARTTLS\n", 9), 0);
    const char *line;
    CHECK_EQ(cio_stream_readline(s, &line), 3);
    cio_tls_options tls = {.ctx = ctx, .server_hostname = "localhost"};
    CHECK_ERR(cio_stream_start_tls(s, &tls, 0), 0);
    CHECK_EQ(cio_stream_can_write_eof(s), 0);
    CHECK_ERR(cio_stream_write_eof(s), -ENOTSUP);
    CHECK_ERR(cio_stream_write(s, "secret\n", 7), 0);
    CHECK_EQ(cio_stream_readline(s, &line), 7);
    CHECK(memcmp(line, "secret\n", 7) == 0);
    char v[32];
    socklen_t len = sizeof v;
    CHECK_ERR(cio_stream_get_extra_info(s, "tls_version", v, &len), 0);
    cio_stream_free(s);
    unlisten(lsrv, false);
    cio_tls_context_free(sctx);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_starttls_upgrades_both_ends_of_a_plain_stream)
{
    need_tls();
    run_main(starttls_main, NULL);
}

/* The server end of a protocol's STARTTLS: "GO", then TLS; one line back
 * if the handshake succeeds. A failed handshake is the client's to see:
 * the handler just ends. */
static int starttls_echo_handler(cio_stream *s, void *arg)
{
    SSL_CTX *sctx = arg;
    const char *line;
    if (cio_stream_readline(s, &line) != 9 || memcmp(line, "STARTTLS\n", 9))
        return 0;
    if (cio_stream_write(s, "GO\n", 3) || cio_stream_drain(s))
        return 0;
    cio_tls_options tls = {.ctx = sctx};
    if (cio_stream_start_tls(s, &tls, 1) != 0)
        return 0;
    ssize_t n = cio_stream_readline(s, &line);
    if (n > 0 && cio_stream_write(s, line, (size_t)n) == 0)
        (void)cio_stream_drain(s);
    return 0;
}

typedef struct start_tls_try {
    cio_transport *t;
    const cio_tls_options *o;
    int r;
} start_tls_try;

static void start_tls_from_callback(void *arg)
{
    start_tls_try *x = arg;
    x->r = cio_transport_start_tls(x->t, x->o, 0);
}

/* A plain protocol connection that says STARTTLS and waits for "GO". */
static cio_transport *plain_until_go(const char *port, peer *c)
{
    cio_transport *t;
    CHECK_ERR(cio_create_connection("127.0.0.1", port, &rec_proto, c, NULL,
                                    &t),
              0);
    CHECK_ERR(cio_transport_write(t, "STARTTLS\n", 9), 0);
    AWAIT(c->len == 3);
    CHECK(memcmp(c->data, "GO\n", 3) == 0);
    return t;
}

/* asyncio's loop.start_tls on a protocol's transport: the same pointer
 * goes on as TLS, the protocol sees plaintext; what cannot be upgraded
 * says why and is left as it was; a failed handshake aborts it. */
static int transport_starttls_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server"), *ctx = client_ctx();
    char port[16];
    cio_server *lsrv = listen_with(starttls_echo_handler, sctx, NULL, port);
    cio_tls_options tls = {.ctx = ctx, .server_hostname = "localhost"};
    cio_tls_options no_ctx = {.server_hostname = "localhost"};
    peer c = {0};
    cio_transport *t = plain_until_go(port, &c);
    CHECK_ERR(cio_transport_start_tls(NULL, &tls, 0), -EINVAL);
    CHECK_ERR(cio_transport_start_tls(t, NULL, 0), -EINVAL);
    CHECK_ERR(cio_transport_start_tls(t, &no_ctx, 0), -EINVAL);
    start_tls_try x = {t, &tls, 1};
    CHECK_ERR(cio_call_soon(cio_get_running_loop(), start_tls_from_callback,
                            &x, NULL),
              0);
    while (x.r == 1)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(x.r, CIO_ENOTASK); /* it waits, and only a task can */
    CHECK_EQ(cio_transport_can_write_eof(t), 1); /* still plain */
    CHECK_ERR(cio_transport_start_tls(t, &tls, 0), 0);
    CHECK_ERR(cio_transport_start_tls(t, &tls, 0), -EALREADY);
    CHECK_EQ(cio_transport_can_write_eof(t), 0);
    char v[32];
    socklen_t len = sizeof v;
    CHECK_ERR(cio_transport_get_extra_info(t, "tls_version", v, &len), 0);
    CHECK_STR(v, "TLSv1.3");
    CHECK_ERR(cio_transport_write(t, "secret\n", 7), 0);
    AWAIT(c.len == 10);
    CHECK_BYTES(c.data, c.len, "GO\nsecret\n");
    CHECK_EQ(c.made, 1);
    cio_transport_close(t);
    AWAIT(c.lost);

    /* Closing: -EPIPE, and it stays plain. */
    peer d = {0};
    cio_transport *u = plain_until_go(port, &d);
    cio_transport_close(u);
    CHECK_ERR(cio_transport_start_tls(u, &tls, 0), -EPIPE);
    AWAIT(d.lost);
    CHECK_EQ(d.lost_error, 0);

    /* A datagram endpoint has no TLS. */
    peer g = {0};
    cio_transport *dg;
    CHECK_ERR(cio_create_datagram_endpoint("127.0.0.1", "0", NULL, NULL,
                                           &rec_proto, &g, &dg),
              0);
    CHECK_ERR(cio_transport_start_tls(dg, &tls, 0), -EINVAL);
    cio_transport_close(dg);
    AWAIT(g.lost);

    /* A server the client cannot verify (no test CA): CIO_ETLS with the
     * reason, and the transport is aborted. */
    SSL_CTX *untrusting;
    CHECK_ERR(cio_tls_client_context(&untrusting), 0);
    cio_tls_options bad = {.ctx = untrusting, .server_hostname = "localhost"};
    peer e = {0};
    cio_transport *w = plain_until_go(port, &e);
    CHECK_ERR(cio_transport_start_tls(w, &bad, 0), CIO_ETLS);
    CHECK(strstr(cio_tls_error_string(), "certificate verify failed") != NULL);
    AWAIT(e.lost);
    CHECK_EQ(e.len, 3); /* nothing after "GO" */
    peer_free(&c);
    peer_free(&d);
    peer_free(&g);
    peer_free(&e);
    unlisten(lsrv, false);
    cio_tls_context_free(untrusting);
    cio_tls_context_free(sctx);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_transport_starttls_upgrades_a_protocol_connection_in_place)
{
    need_tls();
    run_main(transport_starttls_main, NULL);
}

/* -------------------------------------------- flow control, many peers */

/* 8 MiB through TLS, drained after each write: every byte arrives, in
 * order (the reader checks the pattern as it goes). */
static int bulk_handler(cio_stream *s, void *arg)
{
    size_t *got = arg;
    char buf[65536];
    ssize_t n;
    while ((n = cio_stream_read(s, buf, sizeof buf)) > 0) {
        if (!pattern_ok(buf, (size_t)n, *got))
            return -EILSEQ;
        *got += (size_t)n;
    }
    cio_event_set(&changed);
    return 0;
}

static int bulk_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server"), *ctx = client_ctx();
    size_t got = 0, total = (size_t)test_scaled(8 << 20);
    cio_tls_options st = {.ctx = sctx};
    char port[16];
    cio_server *lsrv = listen_with(bulk_handler, &got, &st, port);
    cio_stream *s;
    CHECK_ERR(connect_tls(port, ctx, "localhost", 0, &s), 0);
    static char chunk[100000];
    size_t sent = 0;
    while (sent < total) {
        size_t n = total - sent < sizeof chunk ? total - sent : sizeof chunk;
        fill(chunk, n, sent);
        CHECK_ERR(cio_stream_write(s, chunk, n), 0);
        sent += n;
        CHECK_ERR(cio_stream_drain(s), 0);
    }
    cio_stream_close(s);
    CHECK_ERR(cio_stream_wait_closed(s), 0);
    cio_stream_free(s);
    AWAIT(got == total);
    unlisten(lsrv, false);
    cio_tls_context_free(sctx);
    cio_tls_context_free(ctx);
    return 0;
}

TEST_T(tls_bulk_transfer_with_drain_keeps_every_byte, 30)
{
    need_tls();
    run_main(bulk_main, NULL);
}

/* sendfile over TLS (issue 14): sendfile(2) cannot encrypt, so with
 * fallback 0 it is -ENOTSUP, having sent nothing; with fallback the file
 * is read and written through the TLS transport, after the bytes written
 * before it, every byte in order. */
static int sendfile_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server"), *ctx = client_ctx();
    size_t got = 0, head = 1000, n = (size_t)test_scaled(2 << 20) + 77;
    cio_tls_options st = {.ctx = sctx};
    char port[16];
    cio_server *lsrv = listen_with(bulk_handler, &got, &st, port);
    cio_stream *s;
    CHECK_ERR(connect_tls(port, ctx, "localhost", 0, &s), 0);
    char path[] = "/tmp/cio-tls-sendfile-XXXXXX";
    int f = mkstemp(path);
    CHECK(f >= 0);
    CHECK(unlink(path) == 0);
    char *buf = malloc(n);
    CHECK(buf != NULL);
    fill(buf, n, head); /* the file continues what is written first */
    CHECK_EQ(write(f, buf, n), n);
    fill(buf, head, 0);
    CHECK_ERR(cio_stream_write(s, buf, head), 0);
    free(buf);
    size_t sent = 99;
    CHECK_ERR(cio_stream_sendfile(s, f, 0, 0, 0, &sent), -ENOTSUP);
    CHECK_EQ(sent, 0);
    CHECK_ERR(cio_stream_sendfile(s, f, 0, 0, 1, &sent), 0);
    CHECK_EQ(sent, n);
    cio_stream_close(s);
    CHECK_ERR(cio_stream_wait_closed(s), 0);
    cio_stream_free(s);
    AWAIT(got == head + n);
    close(f);
    unlisten(lsrv, false);
    cio_tls_context_free(sctx);
    cio_tls_context_free(ctx);
    return 0;
}

TEST_T(tls_sendfile_copies_through_the_tls_transport, 30)
{
    need_tls();
    run_main(sendfile_main, NULL);
}

/* A write the socket can take goes out whole, record after record, and
 * nothing of it stays in the write buffer. (OpenSSL writes one record,
 * at most 16 KiB, per call: sending only the first and queueing the rest
 * costs a copy and a writer wake-up per record.) The send buffer is made
 * large enough for every record, so the kernel refuses none. */
static int whole_write_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server"), *ctx = client_ctx();
    size_t got = 0;
    static char chunk[65536];
    cio_tls_options st = {.ctx = sctx};
    char port[16];
    cio_server *lsrv = listen_with(bulk_handler, &got, &st, port);
    cio_tls_options tls = {.ctx = ctx, .server_hostname = "localhost"};
    cio_connection_options co = {.tls = &tls};
    static const cio_protocol silent = {0};
    cio_transport *t;
    CHECK_ERR(cio_create_connection("127.0.0.1", port, &silent, NULL, &co, &t),
              0);
    int fd, big = 1 << 20;
    socklen_t len = sizeof fd;
    CHECK_ERR(cio_transport_get_extra_info(t, "socket", &fd, &len), 0);
    CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big), 0);
    fill(chunk, sizeof chunk, 0);
    CHECK_ERR(cio_transport_write(t, chunk, sizeof chunk), 0);
    CHECK_EQ(cio_transport_get_write_buffer_size(t), 0);
    cio_transport_close(t);
    AWAIT(got == sizeof chunk);
    unlisten(lsrv, false);
    cio_tls_context_free(sctx);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_a_write_the_socket_takes_is_sent_whole)
{
    need_tls();
    run_main(whole_write_main, NULL);
}

typedef struct many {
    const char *port;
    SSL_CTX *ctx;
    int ok;
} many;

static int many_client(void *arg)
{
    many *m = arg;
    cio_stream *s;
    int r = connect_tls(m->port, m->ctx, "localhost", 0, &s);
    if (r)
        return r;
    const char *line;
    if ((r = cio_stream_write(s, "x\n", 2)) == 0 &&
        cio_stream_readline(s, &line) == 2 && line[0] == 'X')
        m->ok++;
    cio_stream_free(s);
    return r;
}

static int many_main(void *arg)
{
    int n = (int)test_scaled(1000);
    tls_server v;
    tls_server_start(&v, server_ctx("server"), NULL);
    many m = {v.port, client_ctx(), 0};
    cio_task **tasks = calloc((size_t)n, sizeof *tasks);
    for (int i = 0; i < n; i++)
        tasks[i] = spawn(many_client, &m);
    for (int i = 0; i < n; i++)
        CHECK_ERR(finish(tasks[i]), 0);
    free(tasks);
    CHECK_EQ(m.ok, n);
    AWAIT(v.served == n);
    tls_server_done(&v);
    cio_tls_context_free(m.ctx);
    return 0;
}

TEST_T(tls_a_thousand_concurrent_connections, 60)
{
    need_tls();
    run_main(many_main, NULL);
}

/* A peer that never reads: close sends what it can, and the shutdown
 * deadline ends the connection (-ETIMEDOUT), never waiting forever. */
static int flood_handler(cio_stream *s, void *arg)
{
    int *result = arg;
    static char chunk[65536];
    for (int i = 0; i < 128; i++) /* 8 MiB: more than the socket buffers */
        if (cio_stream_write(s, chunk, sizeof chunk))
            break;
    cio_stream_close(s);
    *result = cio_stream_wait_closed(s);
    cio_event_set(&changed);
    return 0;
}

static int deadline_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server"), *ctx = client_ctx();
    int result = 1;
    cio_tls_options st = {.ctx = sctx, .shutdown_timeout = 0.3};
    char port[16];
    cio_server *lsrv = listen_with(flood_handler, &result, &st, port);
    cio_stream *s;
    CHECK_ERR(connect_tls(port, ctx, "localhost", 0, &s), 0);
    AWAIT(result != 1); /* the client never reads */
    CHECK_ERR(result, -ETIMEDOUT);
    cio_stream_free(s);
    unlisten(lsrv, false);
    cio_tls_context_free(sctx);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_close_to_a_peer_that_never_reads_ends_at_the_deadline)
{
    need_tls();
    run_main(deadline_main, NULL);
}

/* Protocols over TLS: connection_made before create_connection returns,
 * plaintext both ways, EOF as close_notify; a server's factory runs only
 * for a handshake that succeeded. */
static int protocol_main(void *arg)
{
    SSL_CTX *sctx = server_ctx("server"), *ctx = client_ctx();
    peers ps = {.tmpl = {.echo = true}};
    cio_tls_options st = {.ctx = sctx};
    cio_server_options so = {.tls = &st};
    cio_server *lsrv;
    CHECK_ERR(cio_create_server("127.0.0.1", "0", &rec_proto, next_peer, &ps,
                                &so, &lsrv),
              0);
    char port[16];
    snprintf(port, sizeof port, "%d", cio_server_port(lsrv));
    cio_stream *plain; /* a handshake that fails: no context is made */
    CHECK_ERR(cio_open_connection("127.0.0.1", port, NULL, &plain), 0);
    CHECK_ERR(cio_stream_write(plain, "not tls\r\n\r\n", 11), 0);
    char buf[64];
    while (cio_stream_read(plain, buf, sizeof buf) > 0)
        ;
    cio_stream_free(plain);
    peer c = {0};
    cio_tls_options tls = {.ctx = ctx};
    cio_connection_options co = {.tls = &tls};
    cio_transport *t;
    CHECK_ERR(cio_create_connection("localhost", port, &rec_proto, &c, &co, &t),
              0);
    CHECK_EQ(c.made, 1); /* before the return, as over TCP */
    CHECK_EQ(cio_transport_can_write_eof(t), 0);
    CHECK_ERR(cio_transport_write_eof(t), -ENOTSUP);
    CHECK_ERR(cio_transport_write(t, "hello", 5), 0);
    AWAIT(c.len == 5);
    CHECK(memcmp(c.data, "hello", 5) == 0);
    CHECK_EQ(ps.n, 1);
    cio_transport_close(t);
    AWAIT(c.lost == 1 && ps.n == 1 && ps.p[0].lost == 1);
    CHECK_LOG(&ps.p[0].log, "made data eof lost");
    CHECK_EQ(c.lost_error, 0);
    peer_free(&c);
    peers_free(&ps);
    unlisten(lsrv, false);
    cio_tls_context_free(sctx);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_protocols_over_tls_and_a_factory_only_for_good_handshakes)
{
    need_tls();
    run_main(protocol_main, NULL);
}

/* Unix sockets: the server's tls option and the stream's; the client
 * names the host to check, as a path says nothing of it. */
static int unix_main(void *arg)
{
    tls_server v = {.ctx = server_ctx("server")};
    cio_tls_options st = {.ctx = v.ctx};
    cio_server_options so = {.tls = &st};
    const char *path = file("sock");
    CHECK_ERR(cio_start_unix_server(upper_handler, &v, path, NULL, &so,
                                    &v.srv_),
              0);
    SSL_CTX *ctx = client_ctx();
    cio_tls_options tls = {.ctx = ctx};
    cio_stream_options opts = {.tls = &tls};
    cio_stream *s;
    CHECK_ERR(cio_open_unix_connection(path, &opts, &s), -EINVAL);
    tls.server_hostname = "localhost";
    CHECK_ERR(cio_open_unix_connection(path, &opts, &s), 0);
    CHECK_ERR(cio_stream_write(s, "unix\n", 5), 0);
    const char *line;
    CHECK_EQ(cio_stream_readline(s, &line), 5);
    CHECK(memcmp(line, "UNIX\n", 5) == 0);
    cio_stream_free(s);
    AWAIT(v.served == 1);
    tls_server_done(&v);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_over_unix_sockets) { need_tls(); run_main(unix_main, NULL); }

/* Faults: a TLS server and client exchange a line on a fresh loop with
 * the N-th allocation or system call failing (once, then for good), for
 * every N the exchange reaches: an error or success, never a crash, a
 * hang or a leak (test_fault_loop counts memory and fds after each). */
typedef struct fault_ctx {
    SSL_CTX *server, *client;
    peer sp, c; /* here: a loop that stops mid-run never returns to the task */
} fault_ctx;

static void *echo_peer(void *arg)
{
    peer *p = arg;
    p->echo = true;
    return p;
}

static int fault_exchange(void *arg)
{
    fault_ctx *fc = arg;
    peer *sp = &fc->sp;
    peer *c = &fc->c;
    cio_tls_options st = {.ctx = fc->server, .handshake_timeout = 2};
    cio_server_options so = {.tls = &st};
    cio_server *lsrv;
    int r = cio_create_server("127.0.0.1", "0", &rec_proto, echo_peer, sp,
                              &so, &lsrv);
    if (r)
        return r;
    char port[16];
    snprintf(port, sizeof port, "%d", cio_server_port(lsrv));
    cio_tls_options tls = {.ctx = fc->client, .server_hostname = "localhost",
                           .handshake_timeout = 2};
    cio_connection_options co = {.tls = &tls};
    cio_transport *t;
    r = cio_create_connection("127.0.0.1", port, &rec_proto, c, &co, &t);
    if (!r) {
        r = cio_transport_write(t, "ping", 4);
        cio_timeout_scope sc;
        int e = cio_timeout(&sc, 2.0);
        while (!r && !e && c->len < 4 && !c->lost)
            e = cio_sleep(0.001);
        if (cio_timeout_end(&sc) == -ETIMEDOUT || (!r && c->len < 4))
            r = r ? r : c->lost_error ? c->lost_error : -EIO;
        if (!c->lost) /* t is valid until connection_lost ran */
            cio_transport_abort(t);
        while (!c->lost)
            (void)cio_sleep(0.001);
    }
    cio_server_close(lsrv);
    cio_server_abort_clients(lsrv);
    (void)cio_server_wait_closed(lsrv);
    cio_server_free(lsrv);
    return r;
}

static int fault_run(void *arg)
{
    cio_loop *loop;
    int r = cio_loop_new(&loop, NULL);
    if (r)
        return r;
    fault_ctx *fc = arg;
    memset(&fc->sp, 0, sizeof fc->sp);
    memset(&fc->c, 0, sizeof fc->c);
    cio_task *t;
    r = cio_task_new(loop, fault_exchange, arg, NULL, &t);
    if (!r) {
        r = cio_loop_run_until_complete(loop, t);
        cio_future_unref(t);
    }
    cio_loop_free(loop);
    peer_free(&fc->sp);
    peer_free(&fc->c);
    return r > 0 ? -EIO : r;
}

TEST_T(tls_every_fault_is_an_error_never_a_crash_or_a_leak, 120)
{
    need_tls();
    fault_ctx fc = {.server = server_ctx("server"), .client = client_ctx()};
    static const struct {
        unsigned kinds;
        int err;
    } kinds[] = {{CIO__FAULT_ALLOC, 0},      {CIO__FAULT_SYS, EMFILE},
                 {CIO__FAULT_SYS, EAGAIN},   {CIO__FAULT_SYS, EINTR},
                 {CIO__FAULT_SYS, ECONNRESET}};
    int met = 0;
    CHECK_ERR(fault_run(&fc), 0);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        met += test_fault_loop(kinds[i].kinds, kinds[i].err, fault_run, &fc);
    CHECK(met > 50);
    CHECK_ERR(fault_run(&fc), 0);
    cio_tls_context_free(fc.server);
    cio_tls_context_free(fc.client);
}

/* A task cancelled while its handshake waits: -ECANCELED, nothing left. */
static int cancel_main(void *arg)
{
    bad_peer b;
    bad_start(&b, "silent");
    SSL_CTX *ctx = client_ctx();
    many m = {b.port, ctx, 0};
    cio_task *t = spawn(many_client, &m);
    yield_n(20);
    cio_task_cancel(t);
    CHECK_ERR(finish(t), -ECANCELED);
    bad_done(&b);
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_cancelled_handshake_leaves_nothing)
{
    need_tls();
    run_main(cancel_main, NULL);
}

/* The duration rule (cio.h): a NaN timeout is -EINVAL, at the call. */
static int nan_timeouts_main(void *arg)
{
    (void)arg;
    SSL_CTX *sctx = server_ctx("server"), *cctx = client_ctx();
    cio_tls_options tls = {.ctx = sctx, .handshake_timeout = NAN};
    cio_server_options so = {.tls = &tls};
    cio_server *server = (cio_server *)&server;
    CHECK_ERR(cio_start_server(upper_handler, NULL, "127.0.0.1", "0", NULL,
                               &so, &server),
              -EINVAL);
    tls_server v;
    tls_server_start(&v, sctx, NULL);
    cio_tls_options ct = {.ctx = cctx, .server_hostname = "localhost",
                          .shutdown_timeout = NAN};
    cio_stream_options sopts = {.tls = &ct};
    cio_stream *s = (cio_stream *)&s;
    CHECK_ERR(cio_open_connection("127.0.0.1", v.port, &sopts, &s), -EINVAL);
    tls_server_done(&v);
    cio_tls_context_free(cctx);
    return 0;
}

TEST(tls_nan_timeouts_are_einval)
{
    need_tls();
    run_main(nan_timeouts_main, NULL);
}

#endif /* CIO_HAVE_OPENSSL */

/* Without OpenSSL, asking any connection call for TLS is -ENOTSUP and
 * leaves nothing behind. */
static int no_tls_main(void *arg)
{
    static char fake_ctx;
    cio_tls_options tls = {.ctx = (struct ssl_ctx_st *)&fake_ctx,
                           .server_hostname = ""};
    cio_server_options so = {.tls = &tls};
    cio_server *s = (cio_server *)1;
    CHECK_ERR(cio_start_server(upper_plain, NULL, "127.0.0.1", "0", NULL, &so,
                               &s),
              -ENOTSUP);
    CHECK_ERR(cio_start_server(upper_plain, NULL, "127.0.0.1", "0", NULL,
                               NULL, &s),
              0);
    char port[16];
    snprintf(port, sizeof port, "%d", cio_server_port(s));
    cio_stream_options opts = {.tls = &tls};
    cio_stream *st;
    CHECK_ERR(cio_open_connection("127.0.0.1", port, &opts, &st), -ENOTSUP);
    CHECK_ERR(cio_open_connection("127.0.0.1", port, NULL, &st), 0);
    CHECK_ERR(cio_stream_start_tls(st, &tls, 0), -ENOTSUP);
    cio_stream_free(st);
    cio_server_close(s);
    cio_server_abort_clients(s);
    CHECK_ERR(cio_server_wait_closed(s), 0);
    cio_server_free(s);
    return 0;
}

#ifdef CIO_HAVE_OPENSSL
/* What a connection tells about itself, and the helpers' bad arguments. */
static int info_main(void *arg)
{
    tls_server v;
    tls_server_start(&v, server_ctx("server"), NULL);
    SSL_CTX *ctx = client_ctx();
    cio_stream *s;
    CHECK_ERR(connect_tls(v.port, ctx, "localhost", 0, &s), 0);
    void *p = NULL;
    socklen_t len = sizeof p;
    CHECK_ERR(cio_stream_get_extra_info(s, "ssl_object", &p, &len), 0);
    CHECK(p != NULL && len == sizeof p);
    CHECK_EQ(SSL_version(p), TLS1_3_VERSION); /* OpenSSL's own object */
    len = sizeof p;
    CHECK_ERR(cio_stream_get_extra_info(s, "peercert", &p, &len), 0);
    CHECK(p != NULL);
    char name[64];
    len = sizeof name;
    CHECK_ERR(cio_stream_get_extra_info(s, "server_hostname", name, &len), 0);
    CHECK(strcmp(name, "localhost") == 0);
    len = 2; /* too short for any of the strings */
    CHECK_ERR(cio_stream_get_extra_info(s, "tls_version", name, &len), -EINVAL);
    len = sizeof name;
    CHECK_ERR(cio_stream_get_extra_info(s, "alpn_protocol", name, &len), 0);
    CHECK_EQ(len, 1); /* none negotiated: "" */
    len = sizeof name;
    CHECK_ERR(cio_stream_get_extra_info(s, "no such thing", name, &len),
              -ENOENT);
    int fd = -1;
    len = sizeof fd;
    CHECK_ERR(cio_stream_get_extra_info(s, "socket", &fd, &len), 0);
    CHECK(fd >= 0);
    cio_stream_free(s);
    AWAIT(v.served == 1);
    tls_server_done(&v);
    /* Bad arguments: each a clear code, nothing changed. */
    const char *one[] = {"h2"};
    CHECK_ERR(cio_tls_context_set_alpn(NULL, one, 1), -EINVAL);
    CHECK_ERR(cio_tls_context_set_alpn(ctx, one, 0), -EINVAL);
    char long_name[300];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const char *too_long[] = {long_name};
    CHECK_ERR(cio_tls_context_set_alpn(ctx, too_long, 1), -EINVAL);
    CHECK_ERR(cio_tls_context_add_sni(ctx, "", ctx), -EINVAL);
    CHECK_ERR(cio_tls_context_add_sni(ctx, "x", ctx), -EINVAL);
    CHECK_ERR(cio_tls_context_add_sni(NULL, "x", ctx), -EINVAL);
    CHECK_ERR(cio_tls_context_verify_clients(ctx, "/nonexistent.pem"),
              CIO_ETLS);
    CHECK_ERR(cio_tls_context_use_certificate(ctx, file("client.pem"),
                                              file("server.key")),
              CIO_ETLS); /* the key is not the certificate's */
    CHECK_ERR(cio_tls_context_use_certificate(ctx, NULL, "k"), -EINVAL);
    CHECK_ERR(cio_tls_server_context(NULL, "k", &v.ctx), -EINVAL);
    CHECK_ERR(cio_tls_client_context(NULL), -EINVAL);
    cio_tls_context_free(NULL); /* a no-op */
    cio_tls_context_free(ctx);
    return 0;
}

TEST(tls_extra_info_and_bad_arguments)
{
    need_tls();
    run_main(info_main, NULL);
}
#endif

/* Built with OpenSSL the helpers work; without, each says -ENOTSUP. */
TEST(tls_calls_work_or_say_enotsup_as_built)
{
    struct ssl_ctx_st *c = (struct ssl_ctx_st *)1;
    if (!cio_tls_available()) {
        CHECK_ERR(cio_tls_client_context(&c), -ENOTSUP);
        CHECK(c == NULL);
        CHECK_ERR(cio_tls_server_context("a", "b", &c), -ENOTSUP);
        CHECK_ERR(cio_tls_context_load_ca(NULL, "x"), -ENOTSUP);
        run_main(no_tls_main, NULL);
        return;
    }
    CHECK_ERR(cio_tls_client_context(&c), 0);
    CHECK(c != NULL);
    CHECK_ERR(cio_tls_context_load_ca(c, "/nonexistent.pem"), CIO_ETLS);
    CHECK(strlen(cio_tls_error_string()) > 0);
    cio_tls_context_free(c);
    CHECK_ERR(cio_tls_server_context("/nonexistent.pem", "/x", &c), CIO_ETLS);
    CHECK(c == NULL);
}
