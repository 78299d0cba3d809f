/* TLS's private header: OpenSSL behind calls shaped like sys.c's, for the
 * transports (transport.c) and nothing else. Each returns as a
 * non-blocking socket call would: a count (or 0 / 1 where said), -EAGAIN
 * (try again once the fd is readable), CIO__TLS_WANT_WRITE (once it is
 * writable), a negative errno of the socket (-ECONNRESET, ...), CIO_ETLS
 * (OpenSSL's reason in cio_tls_error_string) or CIO_ETLSEOF. */
#ifndef CIO_TLS_H
#define CIO_TLS_H

#include "internal.h"

/* Never seen outside the transports: they wait for writability on it. */
#define CIO__TLS_WANT_WRITE (-30090)

typedef struct cio__tls cio__tls;

/* A connection on the connected socket fd (borrowed: the transport owns
 * it), client or server side; hostname (client, may be NULL or "": none)
 * is sent as SNI and verified when ctx verifies peers. The n bytes at
 * prefix (copied) are what was read from fd before TLS began: OpenSSL
 * reads them first. -ENOMEM, -EINVAL. */
CIO_HIDDEN int cio__tls_new(struct ssl_ctx_st *ctx, int fd, bool server,
                            const char *hostname, const void *prefix,
                            size_t n, cio__tls **out);
CIO_HIDDEN void cio__tls_free(cio__tls *tls);
/* One step of the handshake: 0 once it is complete. A peer that goes
 * away before the end gives -ECONNRESET. */
CIO_HIDDEN int cio__tls_handshake(cio__tls *tls);
/* Decrypted bytes (> 0), or 0 at the peer's close_notify; an EOF without
 * it gives CIO_ETLSEOF. */
CIO_HIDDEN ssize_t cio__tls_recv(cio__tls *tls, void *buf, size_t n);
/* Plaintext bytes taken (> 0). After -EAGAIN or CIO__TLS_WANT_WRITE the
 * next call must offer at least the same bytes again (OpenSSL's rule; the
 * buffer may move). */
CIO_HIDDEN ssize_t cio__tls_send(cio__tls *tls, const void *buf, size_t n);
/* Sends close_notify: 1 once both sides' alerts are through, 0 once ours
 * went (the peer's is awaited: call again when readable). */
CIO_HIDDEN int cio__tls_shutdown(cio__tls *tls);
/* Whether decrypted bytes wait inside OpenSSL: the fd will not say so. */
CIO_HIDDEN bool cio__tls_pending(const cio__tls *tls);
/* get_extra_info's TLS names (cio.h); -ENOENT for any other. */
CIO_HIDDEN int cio__tls_info(cio__tls *tls, const char *name, void *buf,
                             socklen_t *len);

/* A reference on a context, for an object that keeps it (a server);
 * NULL is a no-op for both. */
CIO_HIDDEN void cio__tls_ctx_ref(struct ssl_ctx_st *ctx);
CIO_HIDDEN void cio__tls_ctx_unref(struct ssl_ctx_st *ctx);

#endif
