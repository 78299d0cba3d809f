/* An echo server with streams: every line a client sends comes back.
 *
 * cio_start_server listens, and runs handle_client as a new task for each
 * connection. The task reads with cio_stream_readline, which waits
 * without blocking anyone: while it waits, the loop serves the other
 * clients. So the handler is written for one client, as if it were the
 * only one, and the server still serves many at once.
 *
 * To show it, the example is its own client, twice: alice connects and
 * says hello, then stays connected while bob comes, talks and leaves;
 * only then does alice say goodbye. A server that served one client at a
 * time would have kept bob waiting until alice left.
 */
#include <cio.h>

#include <stdio.h>
#include <string.h>

static int clients_seen;

/* ---- the server: one task per connection, for as long as it lasts */

static int handle_client(cio_stream *s, void *arg)
{
    (void)arg;
    int id = ++clients_seen; /* no locking: only one task runs at a time */
    for (;;) {
        const char *line;
        ssize_t n = cio_stream_readline(s, &line); /* waits for a line */
        if (n == 0)
            break; /* the client sent EOF: it has nothing more to say */
        if (n < 0) {
            /* A line over the 64 KiB limit, a reset connection, ... */
            printf("server: client %d: %s\n", id, cio_strerror((int)n));
            return (int)n;
        }
        printf("server: client %d sent %.*s", id, (int)n, line);
        /* write() only queues the bytes; drain() waits if the client
         * reads more slowly than we write, so memory stays bounded. */
        int err = cio_stream_write(s, line, (size_t)n);
        if (!err)
            err = cio_stream_drain(s);
        if (err) {
            printf("server: client %d: %s\n", id, cio_strerror(err));
            return err;
        }
    }
    printf("server: client %d left\n", id);
    return 0; /* returning closes the connection: cio frees the stream */
}

/* ---- the clients */

static char port[16];
static cio_event alice_is_in = CIO_EVENT_INIT;
static cio_event bob_has_left = CIO_EVENT_INIT;

/* Sends one line and waits for the server to echo it back. */
static int say(cio_stream *s, const char *who, const char *text)
{
    printf("%s sends: %s\n", who, text);
    int err = cio_stream_write(s, text, strlen(text));
    if (!err)
        err = cio_stream_write(s, "\n", 1);
    if (!err)
        err = cio_stream_drain(s);
    if (err)
        return err;
    const char *line;
    ssize_t n = cio_stream_readline(s, &line);
    if (n <= 0)
        return n == 0 ? CIO_EINCOMPLETE : (int)n; /* no echo: server gone */
    printf("%s hears: %.*s", who, (int)n, line);
    return 0;
}

/* Says goodbye properly: EOF first (the server's readline returns 0),
 * then wait for the server to close its side too. */
static int leave(cio_stream *s, const char *who)
{
    int err = cio_stream_write_eof(s);
    const char *line;
    ssize_t n = 0;
    if (!err)
        n = cio_stream_readline(s, &line); /* 0: the server closed */
    cio_stream_free(s); /* closes our side and frees the stream */
    if (err || n != 0)
        return err ? err : -EPROTO;
    printf("%s is disconnected\n", who);
    return 0;
}

static int alice(void *arg)
{
    (void)arg;
    cio_stream *s;
    int err = cio_open_connection("127.0.0.1", port, NULL, &s);
    if (err)
        return err;
    err = say(s, "alice", "hello, I'll stay a while");
    cio_event_set(&alice_is_in); /* let bob come, even if we failed */
    if (!err)
        err = cio_event_wait(&bob_has_left); /* connected all along */
    if (!err)
        err = say(s, "alice", "bye now");
    if (err) {
        cio_stream_free(s);
        return err;
    }
    return leave(s, "alice");
}

static int bob(void *arg)
{
    (void)arg;
    int err = cio_event_wait(&alice_is_in);
    if (err)
        return err;
    cio_stream *s;
    err = cio_open_connection("127.0.0.1", port, NULL, &s);
    if (!err) {
        err = say(s, "bob", "hi, just passing through");
        if (err)
            cio_stream_free(s);
        else
            err = leave(s, "bob");
    }
    cio_event_set(&bob_has_left);
    return err;
}

static int main_task(void *arg)
{
    (void)arg;
    cio_server *server;
    /* Port "0": the kernel picks a free port; cio_server_port says which. */
    int err = cio_start_server(handle_client, NULL, "127.0.0.1", "0", NULL,
                               NULL, &server);
    if (err) {
        fprintf(stderr, "cannot listen: %s\n", cio_strerror(err));
        return err;
    }
    snprintf(port, sizeof port, "%d", cio_server_port(server));
    printf("server: listening on 127.0.0.1 port %s\n", port);

    /* Both clients at once, as tasks; 1 (return_exceptions): wait for
     * both, each result in its slot. */
    cio_call clients[] = {{alice, NULL}, {bob, NULL}};
    cio_result results[2];
    err = cio_gather_calls(clients, 2, 1, results);
    for (int i = 0; i < 2 && !err; i++)
        if (results[i].status < 0)
            err = results[i].status;
    if (err)
        fprintf(stderr, "a client failed: %s\n", cio_strerror(err));
    cio_server_close(server);               /* stop listening */
    int closed = cio_server_wait_closed(server); /* connections gone too */
    cio_server_free(server);
    if (!err && !closed)
        printf("server: closed after serving %d clients\n", clients_seen);
    return err ? err : closed;
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
