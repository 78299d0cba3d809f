/* Transports and protocols: the callback layer under streams.
 *
 * A transport moves bytes over one connection; a protocol is a struct of
 * callbacks that reacts to them. The loop calls them in a fixed order:
 * connection_made once, data_received as bytes arrive, eof_received when
 * the peer has nothing more to send, connection_lost last, always. The
 * transport each callback gets is how the protocol answers.
 *
 * No server here (chapter 9 has those): the two ends of a socketpair are
 * a connection already. One end gets a protocol that answers each message
 * in capitals; the main task plays the peer on the other end.
 */
#define _POSIX_C_SOURCE 200809L /* socketpair, shutdown, fcntl */
#include <cio.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* The protocol's context: the callbacks' shared state, ours to keep alive
 * until connection_lost, the last callback. */
typedef struct shouter {
    size_t received;
    cio_future *lost; /* set in connection_lost: the main task waits on it */
} shouter;

static void made(cio_transport *t, void *ctx)
{
    (void)t;
    (void)ctx;
    printf("protocol: connection_made: the transport is ready\n");
}

/* `data` is only lent for this call; write copies what it cannot send at
 * once, so the reply needs no buffer of ours. */
static void data(cio_transport *t, const char *bytes, size_t n, void *ctx)
{
    shouter *s = ctx;
    printf("protocol: data_received: %zu bytes \"%.*s\"\n", n, (int)n, bytes);
    s->received += n;
    char loud[256];
    size_t m = n < sizeof loud ? n : sizeof loud;
    for (size_t i = 0; i < m; i++)
        loud[i] = (char)toupper((unsigned char)bytes[i]);
    (void)cio_transport_write(t, loud, m); /* errors arrive in lost */
}

static int eof(cio_transport *t, void *ctx)
{
    (void)t;
    (void)ctx;
    printf("protocol: eof_received: the peer has nothing more to send\n");
    return 0; /* 0: close our side too, once the reply is flushed */
}

static void lost(cio_transport *t, int error, void *ctx)
{
    (void)t;
    shouter *s = ctx;
    printf("protocol: connection_lost: %s, %zu bytes in all\n",
           error ? cio_strerror(error) : "closed normally", s->received);
    cio_future_set_result(s->lost, NULL); /* the transport is freed now */
}

static const cio_protocol shout = {
    .connection_made = made,
    .data_received = data,
    .eof_received = eof,
    .connection_lost = lost,
};

/* The peer: sends one message, closes its sending side, waits until the
 * protocol's connection is lost, then reads the reply to its end. */
static int peer(int fd, shouter *s)
{
    const char msg[] = "hello, protocol";
    printf("peer: sends \"%s\" and closes its sending side\n", msg);
    int err = cio_sock_sendall(fd, msg, sizeof msg - 1);
    if (!err && shutdown(fd, SHUT_WR) < 0)
        err = -errno;
    if (!err)
        err = cio_await(s->lost, NULL); /* the callbacks run meanwhile */
    char reply[64];
    size_t got = 0;
    ssize_t n = 1;
    while (!err && n > 0 && got < sizeof reply) {
        n = cio_sock_recv(fd, reply + got, sizeof reply - got);
        if (n < 0)
            err = (int)n;
        else
            got += (size_t)n;
    }
    if (!err)
        printf("peer: got \"%.*s\", then EOF\n", (int)got, reply);
    return err;
}

/* Wraps fd in a transport with the shouting protocol and plays the peer
 * on other. s must outlive the transport: on an error, abort it and wait
 * for its connection_lost before s goes. */
static int converse(int fd, int other, shouter *s)
{
    cio_transport *t;
    /* From here the transport owns fd; connection_made runs soon: when
     * this task next waits. */
    int err = cio_connect_accepted_socket(NULL, fd, &shout, s, &t);
    if (err) {
        close(fd); /* still ours when the call failed */
        return err;
    }
    err = peer(other, s);
    if (err && !cio_future_done(s->lost)) {
        cio_transport_abort(t);
        cio_task_uncancel(cio_current_task()); /* so the wait can wait */
        (void)cio_await(s->lost, NULL);
    }
    return err;
}

static int main_task(void *arg)
{
    (void)arg;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
        return -errno;
    fcntl(fds[1], F_SETFL, O_NONBLOCK); /* cio_sock_* want non-blocking */
    shouter s = {0};
    int err = cio_future_new(NULL, &s.lost);
    if (!err) {
        err = converse(fds[0], fds[1], &s);
        cio_future_unref(s.lost);
    } else {
        close(fds[0]);
    }
    close(fds[1]);
    if (err)
        fprintf(stderr, "protocol_basics: %s\n", cio_strerror(err));
    return err;
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
