/* UDP echo: datagram endpoints, a server and a client.
 *
 * UDP has no connections: a socket sends and receives datagrams, whole
 * messages each with the address it came from. cio_create_datagram_endpoint
 * makes such a socket and a transport for it; the protocol's
 * datagram_received gets each message and its sender, and
 * cio_transport_sendto answers. No listen, no accept, no EOF.
 *
 * UDP also promises nothing: a datagram may be lost (rarely on one
 * machine, often across the Internet). So the client, which pings the
 * server three times, waits for each answer with a timeout.
 */
#define _POSIX_C_SOURCE 200809L
#include <cio.h>

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* ---- the server: answers each datagram to whoever sent it */

static void server_datagram(cio_transport *t, const char *data, size_t n,
                            const struct sockaddr *from, socklen_t fromlen,
                            void *ctx)
{
    (void)ctx;
    printf("server: got \"%.*s\", sending it back\n", (int)n, data);
    int err = cio_transport_sendto(t, data, n, from, fromlen);
    if (err)
        printf("server: sendto: %s\n", cio_strerror(err));
}

static void server_error(cio_transport *t, int error, void *ctx)
{
    (void)t;
    (void)ctx;
    printf("server: %s\n", cio_strerror(error)); /* and carry on */
}

static const cio_protocol udp_server = {
    .datagram_received = server_datagram,
    .error_received = server_error,
};

/* ---- the client: connected to the server, so sendto needs no address */

typedef struct pinger {
    cio_future *answer; /* completed by datagram_received */
} pinger;

static void client_datagram(cio_transport *t, const char *data, size_t n,
                            const struct sockaddr *from, socklen_t fromlen,
                            void *ctx)
{
    (void)t;
    (void)from;
    (void)fromlen;
    pinger *p = ctx;
    printf("client: got \"%.*s\" back\n", (int)n, data);
    if (p->answer && !cio_future_done(p->answer))
        cio_future_set_result(p->answer, NULL);
}

static void client_error(cio_transport *t, int error, void *ctx)
{
    (void)t;
    pinger *p = ctx; /* e.g. -ECONNREFUSED: nobody listens there */
    if (p->answer && !cio_future_done(p->answer))
        cio_future_set_error(p->answer, error);
}

static const cio_protocol udp_client = {
    .datagram_received = client_datagram,
    .error_received = client_error,
};

static int ping(cio_transport *t, pinger *p, const char *text)
{
    int err = cio_future_new(NULL, &p->answer);
    if (err)
        return err;
    err = cio_transport_sendto(t, text, strlen(text), NULL, 0);
    if (!err)
        err = cio_wait_for(p->answer, 1.0, NULL); /* -ETIMEDOUT: lost */
    cio_future_unref(p->answer);
    p->answer = NULL;
    return err;
}

static int main_task(void *arg)
{
    (void)arg;
    cio_transport *server, *client;
    /* Bound to 127.0.0.1, port "0": any free port. */
    int err = cio_create_datagram_endpoint("127.0.0.1", "0", NULL, NULL,
                                           &udp_server, NULL, &server);
    if (err) {
        fprintf(stderr, "server: %s\n", cio_strerror(err));
        return err;
    }
    /* Which port? The socket's own address says. */
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    err = cio_transport_get_extra_info(server, "sockname", &addr, &len);
    if (err) {
        cio_transport_close(server);
        return err;
    }
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(addr.sin_port));

    /* No local address: the kernel picks one. Remote: the server. */
    pinger p = {NULL};
    err = cio_create_datagram_endpoint(NULL, NULL, "127.0.0.1", port,
                                       &udp_client, &p, &client);
    if (err) {
        cio_transport_close(server);
        fprintf(stderr, "client: %s\n", cio_strerror(err));
        return err;
    }
    static const char *const pings[] = {"ping 1", "ping 2", "ping 3"};
    for (int i = 0; i < 3 && !err; i++)
        err = ping(client, &p, pings[i]);
    if (err)
        printf("client: no answer: %s\n", cio_strerror(err));
    else
        printf("client: 3 answers out of 3\n");

    /* Now without a server. UDP has no connection to break, but the
     * kernel tells the client nobody listens (an ICMP message), and cio
     * passes that on through error_received. */
    cio_transport_close(server); /* cio frees it once closed */
    if (!err)
        err = cio_sleep(0); /* lets the loop finish closing the socket */
    if (!err) {
        printf("client: the server is gone; pinging again\n");
        err = ping(client, &p, "anyone there?");
        printf("client: no answer: %s\n", cio_strerror(err));
        err = err == -ECONNREFUSED ? 0 : err; /* the failure we expected */
    }
    cio_transport_close(client);
    return err;
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
