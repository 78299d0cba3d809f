/* The echo server again, with a protocol instead of tasks.
 *
 * A protocol is a struct of callbacks; the loop calls them as things
 * happen on a connection: connection_made, data_received (as often as
 * bytes arrive), eof_received, connection_lost (always last). The
 * transport passed to each one is how you answer: write, close. No task
 * and no stack per connection: this is the lowest, fastest layer, the
 * one streams are built on.
 *
 * The client here is a protocol too (asyncio's classic example): it sends
 * a message when connected, sends EOF once the whole echo is back, and
 * tells the main task through a future when its connection is lost.
 */
#include <cio.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the server's protocol: one context per connection (the factory) */

typedef struct conn {
    int id;
    size_t echoed; /* bytes sent back */
} conn;

static int connections;

/* Called for each new connection, before connection_made: its return
 * value is the ctx every callback of that connection receives. */
static void *new_conn(void *arg)
{
    (void)arg;
    conn *c = calloc(1, sizeof *c);
    if (c)
        c->id = ++connections;
    return c; /* NULL (out of memory): connection_made drops it */
}

static void server_made(cio_transport *t, void *ctx)
{
    conn *c = ctx;
    if (!c) {
        cio_transport_abort(t); /* no memory for this one: hang up */
        return;
    }
    printf("server: connection %d made\n", c->id);
}

static void server_data(cio_transport *t, const char *data, size_t n,
                        void *ctx)
{
    conn *c = ctx;
    /* `data` is only lent for this call: write copies what it cannot
     * send at once. */
    printf("server: received %zu bytes: \"%.*s\"\n", n, (int)n, data);
    if (cio_transport_write(t, data, n) == 0)
        c->echoed += n;
    /* An error (-EPIPE: already closing) needs nothing here: whatever
     * ended the connection arrives in connection_lost. */
}

static int server_eof(cio_transport *t, void *ctx)
{
    (void)t;
    conn *c = ctx;
    printf("server: connection %d sent EOF\n", c->id);
    return 0; /* 0: close our side too (after the pending writes) */
}

static void server_lost(cio_transport *t, int error, void *ctx)
{
    (void)t;
    conn *c = ctx;
    if (!c)
        return; /* the connection new_conn had no memory for */
    /* error 0: closed normally; else why it was lost (-ECONNRESET...) */
    printf("server: connection %d lost (%s), %zu bytes echoed\n", c->id,
           error ? cio_strerror(error) : "closed normally", c->echoed);
    free(c); /* the last callback: the context is ours to free */
}

static const cio_protocol echo_server = {
    .connection_made = server_made,
    .data_received = server_data,
    .eof_received = server_eof,
    .connection_lost = server_lost,
};

/* ---- the client's protocol */

typedef struct client {
    const char *message;
    size_t received;
    cio_future *done; /* set in connection_lost: the main task waits on it */
} client;

static void client_made(cio_transport *t, void *ctx)
{
    client *c = ctx;
    if (cio_transport_write(t, c->message, strlen(c->message)) != 0)
        cio_transport_close(t);
}

static void client_data(cio_transport *t, const char *data, size_t n,
                        void *ctx)
{
    client *c = ctx;
    /* TCP is a byte stream: the echo may come in several pieces. */
    printf("client: received \"%.*s\"\n", (int)n, data);
    c->received += n;
    if (c->received == strlen(c->message))
        cio_transport_write_eof(t); /* all back: tell the server we're done */
}

static void client_lost(cio_transport *t, int error, void *ctx)
{
    (void)t;
    client *c = ctx;
    printf("client: connection lost (%s)\n",
           error ? cio_strerror(error) : "closed normally");
    if (error)
        cio_future_set_error(c->done, error);
    else
        cio_future_set_result(c->done, NULL);
}

static const cio_protocol echo_client = {
    .connection_made = client_made,
    .data_received = client_data,
    .connection_lost = client_lost, /* no eof_received: EOF closes */
};

static int main_task(void *arg)
{
    (void)arg;
    cio_server *server;
    int err = cio_create_server("127.0.0.1", "0", &echo_server, new_conn,
                                NULL, NULL, &server);
    if (err) {
        fprintf(stderr, "cannot listen: %s\n", cio_strerror(err));
        return err;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", cio_server_port(server));

    client c = {.message = "Hello, protocols!"};
    err = cio_future_new(NULL, &c.done);
    if (!err) {
        printf("client: connecting to send \"%s\"\n", c.message);
        /* Returns once connected, after connection_made has run. */
        err = cio_create_connection("127.0.0.1", port, &echo_client, &c,
                                    NULL, NULL);
        if (!err)
            err = cio_await(c.done, NULL); /* until connection_lost */
        cio_future_unref(c.done);
    }
    if (err)
        fprintf(stderr, "client: %s\n", cio_strerror(err));

    cio_server_close(server);
    int closed = cio_server_wait_closed(server);
    cio_server_free(server);
    return err ? err : closed;
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
