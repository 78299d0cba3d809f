/* TLS through OpenSSL, seen by the transports as one more non-blocking
 * socket: handshake, recv, send and shutdown each return bytes, 0, -EAGAIN
 * (wait until readable), CIO__TLS_WANT_WRITE (wait until writable) or an
 * error, as the sys.c calls do. OpenSSL reads and writes the socket itself
 * through a BIO of ours that calls cio__sys_recv and cio__sys_send: no copy
 * through a memory BIO, never SIGPIPE (send is MSG_NOSIGNAL), and the
 * failure injection of sys.c reaches TLS connections too.
 *
 * Built without OpenSSL (CIO_HAVE_OPENSSL undefined), every public call
 * here returns -ENOTSUP and the transports never meet a TLS connection.
 *
 * Calls only down (sys.c); the transports call it.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "tls.h"

#include <string.h>

/* The reason of this thread's last CIO_ETLS, for cio_tls_error_string:
 * errno's model, since the failing call may have no object left to ask. */
static _Thread_local char last_reason[256];

const char *cio_tls_error_string(void) { return last_reason; }

#ifndef CIO_HAVE_OPENSSL

int cio_tls_client_context(struct ssl_ctx_st **ctx)
{
    if (ctx)
        *ctx = NULL;
    return -ENOTSUP;
}
int cio_tls_server_context(const char *c, const char *k,
                           struct ssl_ctx_st **ctx)
{
    if (ctx)
        *ctx = NULL;
    return -ENOTSUP;
}
int cio_tls_context_load_ca(struct ssl_ctx_st *ctx, const char *f)
{
    return -ENOTSUP;
}
int cio_tls_context_use_certificate(struct ssl_ctx_st *ctx, const char *c,
                                    const char *k)
{
    return -ENOTSUP;
}
int cio_tls_context_verify_clients(struct ssl_ctx_st *ctx, const char *f)
{
    return -ENOTSUP;
}
int cio_tls_context_set_alpn(struct ssl_ctx_st *ctx,
                             const char *const *protos, size_t n)
{
    return -ENOTSUP;
}
int cio_tls_context_add_sni(struct ssl_ctx_st *ctx, const char *name,
                            struct ssl_ctx_st *for_name)
{
    return -ENOTSUP;
}
void cio_tls_context_free(struct ssl_ctx_st *ctx) {}
void cio__tls_ctx_ref(struct ssl_ctx_st *ctx) {}
void cio__tls_ctx_unref(struct ssl_ctx_st *ctx) {}
int cio_tls_available(void) { return 0; }

int cio__tls_new(struct ssl_ctx_st *ctx, int fd, bool server,
                 const char *hostname, const void *prefix, size_t n,
                 cio__tls **out)
{
    return -ENOTSUP;
}
void cio__tls_free(cio__tls *tls) {}
int cio__tls_handshake(cio__tls *tls) { return -ENOTSUP; }
ssize_t cio__tls_recv(cio__tls *tls, void *buf, size_t n) { return -ENOTSUP; }
ssize_t cio__tls_send(cio__tls *tls, const void *buf, size_t n)
{
    return -ENOTSUP;
}
int cio__tls_shutdown(cio__tls *tls) { return -ENOTSUP; }
bool cio__tls_pending(const cio__tls *tls) { return false; }
int cio__tls_info(cio__tls *tls, const char *name, void *buf, socklen_t *len)
{
    return -ENOENT;
}

#else /* CIO_HAVE_OPENSSL */

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <pthread.h>

/* One connection: the SSL object, and the socket error its BIO last saw
 * (OpenSSL reports a failed read or write only as SSL_ERROR_SYSCALL). */
struct cio__tls {
    SSL *ssl;
    int fd;
    int sys_err;       /* the BIO's last -errno, 0 if none */
    char *prefix;      /* bytes read before TLS began, read first */
    size_t prefix_len, prefix_off;
    bool handshaken;   /* a handshake finished: EOF now means truncation */
};

/* ------------------------------------------------------------ the BIO */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, size_t n, size_t *done)
{
    cio__tls *tls = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r = cio__sys_send(tls->fd, data, n);
    if (r >= 0) {
        *done = (size_t)r;
        return 1;
    }
    if (r == -EAGAIN || r == -EINTR)
        BIO_set_retry_write(b);
    else
        tls->sys_err = (int)r;
    return 0;
}

/* 0 bytes is the peer's EOF: no retry flag, so OpenSSL sees the end. */
static int bio_read(BIO *b, char *data, size_t n, size_t *done)
{
    cio__tls *tls = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (tls->prefix_off < tls->prefix_len) {
        size_t k = tls->prefix_len - tls->prefix_off;
        k = k < n ? k : n;
        memcpy(data, tls->prefix + tls->prefix_off, k);
        tls->prefix_off += k;
        *done = k;
        return 1;
    }
    ssize_t r = cio__sys_recv(tls->fd, data, n);
    if (r > 0) {
        *done = (size_t)r;
        return 1;
    }
    if (r == -EAGAIN || r == -EINTR)
        BIO_set_retry_read(b);
    else if (r < 0)
        tls->sys_err = (int)r;
    return 0;
}

/* Writes go straight to the socket, so a flush has nothing to do. */
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "cio socket");
    if (m && BIO_meth_set_write_ex(m, bio_write) &&
        BIO_meth_set_read_ex(m, bio_read) && BIO_meth_set_ctrl(m, bio_ctrl) &&
        BIO_meth_set_create(m, bio_create)) {
        bio_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* ------------------------------------------------------------- errors */

/* Records OpenSSL's reason (the verification result first, when that is
 * what failed) and empties its error queue, which must be empty before
 * the next call for SSL_get_error to mean anything. */
static int tls_failure(SSL *ssl)
{
    unsigned long e = ERR_peek_last_error();
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (v != X509_V_OK)
        snprintf(last_reason, sizeof last_reason,
                 "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    else if (e)
        ERR_error_string_n(e, last_reason, sizeof last_reason);
    else
        snprintf(last_reason, sizeof last_reason, "TLS failure");
    ERR_clear_error();
    return CIO_ETLS;
}

static bool unexpected_eof(void)
{
    unsigned long e = ERR_peek_last_error();
    return ERR_GET_LIB(e) == ERR_LIB_SSL &&
           ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* An EOF where the protocol wanted more: during the handshake the peer
 * went away (asyncio: ConnectionResetError); after it, the close was
 * truncated (no close_notify). */
static int eof_error(cio__tls *tls)
{
    ERR_clear_error();
    return tls->handshaken ? CIO_ETLSEOF : -ECONNRESET;
}

/* Maps one SSL call's result r to the socket-like codes of tls.h. */
static int outcome(cio__tls *tls, int r)
{
    switch (SSL_get_error(tls->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        return CIO__TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (tls->sys_err) {
            ERR_clear_error();
            return tls->sys_err;
        }
        return eof_error(tls);
    case SSL_ERROR_SSL:
        if (unexpected_eof())
            return eof_error(tls);
        return tls_failure(tls->ssl);
    default:
        return tls_failure(tls->ssl);
    }
}

/* ---------------------------------------------------------- connections */

static bool is_ip_literal(const char *name)
{
    unsigned char a[16];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

/* The client's name: sent as SNI (never for an address literal, as the
 * RFC says) and checked against the certificate when the context
 * verifies peers. */
static int set_hostname(SSL *ssl, const char *name)
{
    if (!name || !*name)
        return 0;
    if (is_ip_literal(name))
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) ? 0
                                                                        : -EINVAL;
    if (!SSL_set_tlsext_host_name(ssl, name) || !SSL_set1_host(ssl, name))
        return -ENOMEM;
    return 0;
}

static int attach_bio(cio__tls *tls)
{
    pthread_once(&bio_once, make_bio_method);
    if (!bio_method)
        return -ENOMEM;
    BIO *b = BIO_new(bio_method);
    if (!b)
        return -ENOMEM;
    BIO_set_data(b, tls);
    SSL_set_bio(tls->ssl, b, b); /* the SSL owns it from here */
    return 0;
}

/* Read-ahead lets one recv fill OpenSSL's buffer with several records
 * (else it reads each record's header and body apart); renegotiation is
 * refused, so a write never waits for a read. */
int cio__tls_new(SSL_CTX *ctx, int fd, bool server, const char *hostname,
                 const void *prefix, size_t n, cio__tls **out)
{
    /* A verified chain says nothing of whom it names: a client that
     * verifies needs the name to check (asyncio refuses it too). */
    if (!server && !hostname && (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER))
        return -EINVAL;
    cio__tls *tls = cio__calloc(1, sizeof *tls);
    if (!tls)
        return -ENOMEM;
    tls->fd = fd;
    int err = -ENOMEM;
    if ((n && !(tls->prefix = cio__malloc(n))) || !(tls->ssl = SSL_new(ctx)) || (err = attach_bio(tls)) ||
        (!server && (err = set_hostname(tls->ssl, hostname)))) {
        ERR_clear_error();
        cio__tls_free(tls);
        return err;
    }
    if (n)
        memcpy(tls->prefix, prefix, n);
    tls->prefix_len = n;
    SSL_set_read_ahead(tls->ssl, 1);
    SSL_set_mode(tls->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                               SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_options(tls->ssl, SSL_OP_NO_RENEGOTIATION);
    if (server)
        SSL_set_accept_state(tls->ssl);
    else
        SSL_set_connect_state(tls->ssl);
    *out = tls;
    return 0;
}

void cio__tls_free(cio__tls *tls)
{
    if (!tls)
        return;
    SSL_free(tls->ssl);
    cio__free(tls->prefix);
    cio__free(tls);
}

int cio__tls_handshake(cio__tls *tls)
{
    ERR_clear_error();
    tls->sys_err = 0;
    int r = SSL_do_handshake(tls->ssl);
    if (r == 1) {
        tls->handshaken = true;
        return 0;
    }
    r = outcome(tls, r);
    return r == 0 ? -ECONNRESET : r; /* close_notify before the end */
}

ssize_t cio__tls_recv(cio__tls *tls, void *buf, size_t n)
{
    ERR_clear_error();
    tls->sys_err = 0;
    size_t got;
    if (SSL_read_ex(tls->ssl, buf, n, &got))
        return (ssize_t)got;
    return outcome(tls, 0);
}

ssize_t cio__tls_send(cio__tls *tls, const void *buf, size_t n)
{
    ERR_clear_error();
    tls->sys_err = 0;
    size_t done;
    if (SSL_write_ex(tls->ssl, buf, n, &done))
        return (ssize_t)done;
    int r = outcome(tls, 0);
    return r == 0 ? -EPIPE : r; /* the peer closed its side of TLS */
}

/* 1: both close_notify alerts are through; 0: ours went, the peer's is
 * awaited (call again when readable). */
int cio__tls_shutdown(cio__tls *tls)
{
    ERR_clear_error();
    tls->sys_err = 0;
    int r = SSL_shutdown(tls->ssl);
    if (r == 1)
        return 1;
    if (r == 0)
        return 0;
    r = outcome(tls, r);
    return r == 0 ? 1 : r;
}

bool cio__tls_pending(const cio__tls *tls)
{
    return SSL_has_pending(tls->ssl);
}

static int copy_string(const char *s, void *buf, socklen_t *len)
{
    size_t n = strlen(s) + 1;
    if (n > *len)
        return -EINVAL;
    memcpy(buf, s, n);
    *len = (socklen_t)n;
    return 0;
}

static int copy_pointer(void *p, void *buf, socklen_t *len)
{
    if (*len < sizeof p)
        return -EINVAL;
    memcpy(buf, &p, sizeof p);
    *len = sizeof p;
    return 0;
}

static int peer_subject(SSL *ssl, void *buf, socklen_t *len)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (!cert)
        return -ENOENT;
    char line[256];
    X509_NAME_oneline(X509_get_subject_name(cert), line, sizeof line);
    return copy_string(line, buf, len);
}

static int alpn_protocol(SSL *ssl, void *buf, socklen_t *len)
{
    const unsigned char *p;
    unsigned n;
    SSL_get0_alpn_selected(ssl, &p, &n);
    if (n + 1 > *len)
        return -EINVAL;
    if (n) /* none negotiated: p is NULL */
        memcpy(buf, p, n);
    ((char *)buf)[n] = '\0';
    *len = n + 1;
    return 0;
}

int cio__tls_info(cio__tls *tls, const char *name, void *buf, socklen_t *len)
{
    SSL *ssl = tls->ssl;
    if (strcmp(name, "ssl_object") == 0)
        return copy_pointer(ssl, buf, len);
    if (strcmp(name, "peercert") == 0) {
        X509 *cert = SSL_get0_peer_certificate(ssl);
        return cert ? copy_pointer(cert, buf, len) : -ENOENT;
    }
    if (strcmp(name, "peercert_subject") == 0)
        return peer_subject(ssl, buf, len);
    if (strcmp(name, "tls_version") == 0)
        return copy_string(SSL_get_version(ssl), buf, len);
    if (strcmp(name, "cipher") == 0)
        return copy_string(SSL_get_cipher_name(ssl), buf, len);
    if (strcmp(name, "alpn_protocol") == 0)
        return alpn_protocol(ssl, buf, len);
    if (strcmp(name, "server_hostname") == 0) {
        const char *s = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        return s ? copy_string(s, buf, len) : -ENOENT;
    }
    return -ENOENT;
}

/* ------------------------------------------------------------- contexts */

/* What cio keeps beside a context it configured: the server's ALPN list
 * (wire format) and the SNI names with their contexts. Freed with the
 * context, through OpenSSL's ex_data. */
typedef struct sni_entry {
    char *name;
    SSL_CTX *ctx; /* a reference of ours */
} sni_entry;

typedef struct ctx_extra {
    unsigned char *alpn;
    size_t alpn_len;
    sni_entry *sni;
    size_t nsni, sni_cap;
} ctx_extra;

static int extra_index = -1;
static pthread_once_t extra_once = PTHREAD_ONCE_INIT;

static void free_extra(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                       long argl, void *argp)
{
    ctx_extra *x = ptr;
    if (!x)
        return;
    for (size_t i = 0; i < x->nsni; i++) {
        cio__free(x->sni[i].name);
        SSL_CTX_free(x->sni[i].ctx);
    }
    cio__free(x->sni);
    cio__free(x->alpn);
    cio__free(x);
}

static void make_extra_index(void)
{
    extra_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_extra);
}

static ctx_extra *extra(SSL_CTX *ctx)
{
    pthread_once(&extra_once, make_extra_index);
    if (extra_index < 0)
        return NULL;
    ctx_extra *x = SSL_CTX_get_ex_data(ctx, extra_index);
    if (x)
        return x;
    if (!(x = cio__calloc(1, sizeof *x)))
        return NULL;
    if (!SSL_CTX_set_ex_data(ctx, extra_index, x)) {
        cio__free(x);
        return NULL;
    }
    return x;
}

int cio_tls_available(void) { return 1; }

/* TLS 1.2 at least, as Python's create_default_context. */
static int new_context(const SSL_METHOD *method, SSL_CTX **out)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx)
        return tls_failure(NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    *out = ctx;
    return 0;
}

int cio_tls_client_context(SSL_CTX **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    SSL_CTX *ctx;
    int err = new_context(TLS_client_method(), &ctx);
    if (err)
        return err;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (!SSL_CTX_set_default_verify_paths(ctx)) {
        SSL_CTX_free(ctx);
        return tls_failure(NULL);
    }
    *out = ctx;
    return 0;
}

int cio_tls_server_context(const char *cert, const char *key, SSL_CTX **out)
{
    if (!out || !cert || !key)
        return -EINVAL;
    *out = NULL;
    SSL_CTX *ctx;
    int err = new_context(TLS_server_method(), &ctx);
    if (err)
        return err;
    if ((err = cio_tls_context_use_certificate(ctx, cert, key))) {
        SSL_CTX_free(ctx);
        return err;
    }
    *out = ctx;
    return 0;
}

int cio_tls_context_load_ca(SSL_CTX *ctx, const char *cafile)
{
    if (!ctx || !cafile)
        return -EINVAL;
    ERR_clear_error();
    return SSL_CTX_load_verify_locations(ctx, cafile, NULL) ? 0
                                                            : tls_failure(NULL);
}

int cio_tls_context_use_certificate(SSL_CTX *ctx, const char *cert,
                                    const char *key)
{
    if (!ctx || !cert || !key)
        return -EINVAL;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        return tls_failure(NULL);
    return 0;
}

int cio_tls_context_verify_clients(SSL_CTX *ctx, const char *cafile)
{
    int err = cio_tls_context_load_ca(ctx, cafile);
    if (err)
        return err;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    return 0;
}

/* The server picks its own first choice among the client's offers; no
 * common protocol means no ALPN at all (the handshake goes on), as
 * Python's ssl module does. */
static int select_alpn(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    ctx_extra *x = arg;
    if (!x->alpn)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *chosen;
    if (SSL_select_next_proto(&chosen, outlen, x->alpn, (unsigned)x->alpn_len,
                              in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/* protos in order of preference, as the wire wants them: each a length
 * byte, then the name. */
static unsigned char *alpn_wire(const char *const *protos, size_t n,
                                size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = protos[i] ? strlen(protos[i]) : 0;
        if (l == 0 || l > 255)
            return NULL;
        total += 1 + l;
    }
    unsigned char *w = cio__malloc(total ? total : 1), *p = w;
    for (size_t i = 0; w && i < n; i++) {
        size_t l = strlen(protos[i]);
        *p++ = (unsigned char)l;
        memcpy(p, protos[i], l);
        p += l;
    }
    *len = total;
    return w;
}

int cio_tls_context_set_alpn(SSL_CTX *ctx, const char *const *protos, size_t n)
{
    if (!ctx || !protos || n == 0)
        return -EINVAL;
    ctx_extra *x = extra(ctx);
    if (!x)
        return -ENOMEM;
    size_t len;
    unsigned char *w = alpn_wire(protos, n, &len);
    if (!w)
        return -EINVAL; /* an empty or over-long name (or no memory) */
    if (SSL_CTX_set_alpn_protos(ctx, w, (unsigned)len) != 0) {
        cio__free(w);
        return -ENOMEM;
    }
    cio__free(x->alpn);
    x->alpn = w;
    x->alpn_len = len;
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, x);
    return 0;
}

/* The client's SNI chooses the context (and so the certificate); a name
 * not listed keeps the default one. Names compare without case. */
static int select_sni(SSL *ssl, int *alert, void *arg)
{
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    ctx_extra *x = arg;
    for (size_t i = 0; name && i < x->nsni; i++)
        if (strcasecmp(x->sni[i].name, name) == 0) {
            SSL_set_SSL_CTX(ssl, x->sni[i].ctx);
            break;
        }
    return SSL_TLSEXT_ERR_OK;
}

int cio_tls_context_add_sni(SSL_CTX *ctx, const char *name, SSL_CTX *for_name)
{
    if (!ctx || !name || !*name || !for_name || for_name == ctx)
        return -EINVAL;
    ctx_extra *x = extra(ctx);
    if (!x)
        return -ENOMEM;
    sni_entry *s = cio__grow(x->sni, &x->sni_cap, x->nsni + 1, sizeof *s, 4);
    if (!s)
        return -ENOMEM;
    x->sni = s;
    char *copy = cio__strdup(name);
    if (!copy)
        return -ENOMEM;
    SSL_CTX_up_ref(for_name);
    x->sni[x->nsni++] = (sni_entry){copy, for_name};
    SSL_CTX_set_tlsext_servername_callback(ctx, select_sni);
    SSL_CTX_set_tlsext_servername_arg(ctx, x);
    return 0;
}

void cio_tls_context_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }

void cio__tls_ctx_ref(SSL_CTX *ctx)
{
    if (ctx)
        SSL_CTX_up_ref(ctx);
}

void cio__tls_ctx_unref(SSL_CTX *ctx) { SSL_CTX_free(ctx); }

#endif /* CIO_HAVE_OPENSSL */
