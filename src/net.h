/* Networking's private header: what sock.c, transport.c, connect.c and
 * server.c share, and nothing else includes. The layers, bottom up:
 *
 *   sock.c       waiting for fds, the sock_* coroutines, name resolution,
 *                Unix addresses
 *   transport.c  transports (stream, datagram, pipe) with their protocols
 *                and flow control
 *   connect.c    the client side: create_connection (Happy Eyeballs), Unix
 *                connections, datagram endpoints
 *   sendfile.c   loop.sendfile over a transport (beside connect.c: neither
 *                calls the other)
 *   server.c     listening sockets, accepting, closing the loop's network
 *
 * Each file calls only the ones above it in this list. A transport does not
 * know servers exist: the server that accepted it sets a hook (`gone`) the
 * transport calls once it is freed; a sendfile hears from it through its
 * waiter the same way. */
#ifndef CIO_NET_H
#define CIO_NET_H

#include "internal.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

/* ----------------------------------------------------------------- sock.c */

/* A non-blocking syscall's "not now": the fd is not ready (EAGAIN) or a
 * signal came first (EINTR). Either way the caller waits for the fd and
 * tries again; neither is ever an error of the connection. */
static inline bool cio__net_again(ssize_t r)
{
    return r == -EAGAIN || r == -EINTR;
}

/* Fills *sun for path; -EINVAL if path is NULL or too long for sun_path. */
CIO_HIDDEN int cio__unix_address(const char *path, struct sockaddr_un *sun);

/* One sendfile under way: cio_sock_sendfile's, or cio_sendfile's over a
 * transport (sendfile.c), which passes `check` to stop it before it
 * touches the transport's socket again once that is closing. Lives in the
 * sending task's frame. */
typedef struct cio__sendfile {
    int sock;                  /* where to (a connected stream socket) */
    int file;                  /* from where: the caller's fd */
    int64_t offset;            /* the first byte's offset in file */
    size_t count;              /* bytes to send; 0: to EOF */
    bool fallback;             /* copy where sendfile(2) cannot */
    bool sequential;           /* file has no offsets (a pipe): read it */
    size_t sent;               /* bytes the socket (or transport) took */
    int (*check)(void *arg);   /* NULL, or 0 to go on / the error to stop */
    void *check_arg;
} cio__sendfile;

/* sendfile(2) until sf->count bytes went or EOF, waiting for the socket
 * to be writable; where the kernel cannot (sf->sent still 0, file a pipe
 * or a file without splice), copies with read and send if sf->fallback,
 * else -ENOTSUP. Returns 0 or -errno; sf->sent is exact either way. */
CIO_HIDDEN int cio__sendfile_run(cio__sendfile *sf);
/* One sendfile(2) call that never waits, for a sender that would rather
 * not set up its wait when the whole file fits in the socket at once:
 * returns whether the send is over (count bytes went, or EOF). Anything
 * else (not now, an error) leaves it to cio__sendfile_run, which meets
 * the same again and answers it properly. */
CIO_HIDDEN bool cio__sendfile_try(cio__sendfile *sf);
/* The next chunk of sf->file for a copying sender, at offset + sent (a
 * file without offsets: what comes next, waiting until it is readable;
 * only offset 0 is possible there, else -ESPIPE). Returns the bytes read,
 * 0 at EOF, or -errno. */
CIO_HIDDEN ssize_t cio__sendfile_read(cio__sendfile *sf, void *buf, size_t n);

/* ------------------------------------------------------------ transport.c */

/* A datagram waiting in a transport's send queue, with its destination
 * (addrlen 0: the connected peer). Owned by the queue until sent. */
typedef struct cio__datagram {
    struct cio__datagram *next;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    size_t len;
    char data[];
} cio__datagram;

/* What differs between the kinds of transport, fixed at creation. Each
 * kind's watcher callbacks are installed directly, so the hot path pays
 * no dispatch of its own; sendv is the one indirect call per write. */
typedef struct cio__transport_kind {
    cio_callback readable;     /* the reader watcher's callback */
    cio_callback writable;     /* the writer watcher's callback */
    /* Byte writes; NULL where the kind has none (datagrams, read pipes). */
    ssize_t (*sendv)(cio_transport *t, const struct iovec *iov, int n);
    bool pipe;                 /* EOF means closing, in either direction */
} cio__transport_kind;

CIO_HIDDEN extern const cio__transport_kind cio__stream_kind;
CIO_HIDDEN extern const cio__transport_kind cio__dgram_kind;

/* A TLS connection's state beside its transport (transport.c), allocated
 * only for TLS. The transport's write buffer holds plaintext, so flow
 * control counts plaintext bytes as asyncio's does. */
typedef enum cio__tls_phase {
    CIO__TLS_HANDSHAKE, /* reads and writes drive the handshake */
    CIO__TLS_OPEN,      /* application data */
    CIO__TLS_CLOSING,   /* close_notify sent or due; the peer's awaited */
} cio__tls_phase;

typedef struct cio__tls_conn {
    struct cio__tls *tls;      /* OpenSSL's side (tls.c) */
    cio__tls_phase phase;
    bool notify_sent;          /* our close_notify went */
    bool read_wants_write;     /* a read waits for the socket to take data */
    double shutdown_timeout;   /* s from close to the end of the exchange */
    cio__handle timer;         /* the handshake's or the shutdown's deadline */
    cio__task *waiter;         /* the task awaiting the handshake, or NULL */
    int result;                /* the handshake's outcome, for the waiter */
    cio__handle pending;       /* reads what OpenSSL holds decrypted */
    /* A server's factory: the protocol's context is made once the
     * handshake succeeded, so a failed one costs the program nothing. */
    cio_protocol_factory factory;
    void *factory_arg;
} cio__tls_conn;

/* A sendfile under way on a transport (sendfile.c's, in its task's
 * frame). While t->waiter is set, writes other than the waiter's own
 * (`writing`) are refused with -EBUSY, as asyncio refuses them with
 * "sendfile is in progress". `news` runs whenever the write buffer shrank
 * and once t starts closing - before connection_lost is scheduled, so a
 * task it wakes runs before the fd is closed - and `t` is cleared when
 * the transport is freed. */
typedef struct cio__transport_waiter {
    void (*news)(struct cio__transport_waiter *w);
    cio_transport *t;          /* NULL once t was freed */
    bool writing;              /* the waiter's own write is under way */
} cio__transport_waiter;

/* Invariants: a transport is on exactly one list (its server's conns, or
 * loop->transports) from creation until it is freed, right after
 * connection_lost returned. Once `closing` is set it never clears and no
 * new data is accepted. The write buffer (stream kinds) and the datagram
 * queue (datagram kind) are never both non-empty, so the buffered size is
 * their sum. `lost_scheduled` means lost_handle will run and free it. */
struct cio_transport {
    cio_loop *loop;
    int fd;                    /* owned: closed when it is freed */
    const cio__transport_kind *kind;
    cio_protocol p;            /* a copy: the caller's may be on a stack */
    void *ctx;                 /* the protocol's, passed to every callback */
    cio__list link;            /* in a server's conns, or loop->transports */
    void (*gone)(void *arg);   /* its owner's hook, run once it is freed */
    void *gone_arg;
    bool reading;              /* the reader watcher is on */
    bool paused;               /* pause_reading was called */
    bool closing;              /* close, abort or a fatal error began */
    bool eof_requested, eof_written;
    bool protocol_paused;      /* pause_writing was called */
    bool made;                 /* connection_made ran */
    bool lost_scheduled;       /* connection_lost is on its way */
    int lost_error;            /* for connection_lost */
    char *wbuf;                /* write buffer: wbuf[whead .. wlen) */
    size_t whead, wlen, wcap;
    size_t high, low;          /* the write buffer's water marks */
    size_t wmax;               /* buffered() never exceeds it by a write */
    cio__datagram *dq, **dq_tail; /* datagrams waiting to be sent */
    size_t dq_bytes;           /* their payload bytes */
    cio__handle made_handle;   /* runs connection_made */
    cio__handle lost_handle;   /* runs connection_lost, then frees */
    cio__tls_conn *tls;        /* TLS (owned), or NULL: plaintext */
    cio__task *flush_waiter;   /* a task waiting for an empty buffer */
    cio__transport_waiter *waiter; /* a sendfile under way, or NULL */
    /* Not the protocol's yet (a TLS handshake first): connection_lost
     * stays silent, as the connection never reached the program. */
    bool quiet;
};

/* Allocates a transport for fd (not yet on any list, not yet reading);
 * -ENOMEM. The caller starts it with cio__transport_start. */
CIO_HIDDEN int cio__transport_new(cio_loop *loop, int fd,
                                  const cio__transport_kind *kind,
                                  const cio_protocol *proto, void *ctx,
                                  cio_transport **out);
/* Links t into `list` (NULL: the loop's own) and runs connection_made now
 * (`now`: the caller returns t only after it ran) or soon (asyncio's
 * order for accepted connections). Cannot fail. */
CIO_HIDDEN void cio__transport_start(cio_transport *t, cio__list *list,
                                     bool now);
/* Starts a new transport (as cio__transport_start, on `list`) with a TLS
 * handshake first, run from the loop. A client's task then waits with
 * cio__transport_tls_wait, which runs connection_made on success. A
 * server's connection (factory: makes its context) gets its context and
 * connection_made once the handshake succeeds; a failure closes it
 * without a word to the protocol. Returns 0, or -ENOMEM, -EINVAL (a
 * verifying client context and no hostname), -ENOTSUP (built without
 * OpenSSL): then t is closing, quietly. */
CIO_HIDDEN int cio__transport_start_tls_new(cio_transport *t, cio__list *list,
                                            const cio_tls_options *o,
                                            bool server, const char *hostname,
                                            cio_protocol_factory factory,
                                            void *arg);
/* From a task: waits for t's first handshake. 0, or its error (CIO_ETLS,
 * -ETIMEDOUT, -ECONNRESET, -ECANCELED, ...): then t is aborted, and the
 * protocol hears connection_lost only if it had heard connection_made. */
CIO_HIDDEN int cio__transport_tls_wait(cio_transport *t);
/* Frees every transport still open as the loop closes, after telling
 * each protocol connection_lost(-ESHUTDOWN) if it never heard of its end. */
CIO_HIDDEN void cio__transports_close(cio_loop *loop);

#endif
