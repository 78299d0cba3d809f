/* Stopping a server gracefully on SIGTERM or Ctrl-C.
 *
 * A server is told to stop by a signal: SIGTERM from `kill PID`, systemd or
 * a container runtime, SIGINT from Ctrl-C. Dying on the spot would cut off
 * the clients it is serving. A graceful server instead:
 *   1. stops accepting: new clients are refused, and can go elsewhere;
 *   2. lets the requests in flight finish, for a limited time: whoever
 *      sent the signal will not wait forever (systemd sends SIGKILL after
 *      90 s, Kubernetes after 30 s);
 *   3. at that deadline, drops the connections still open;
 *   4. exits 0.
 *
 * cio_add_signal_handler makes a signal an ordinary loop callback, so the
 * handler may call anything: here, cio_server_close.
 *
 * The server's protocol: it greets each client, the client asks for
 * "work SECONDS\n", the server says "working", works (a sleep stands for
 * it) and says "done". To be self-contained, the example plays the world
 * around the server too: a task `world` connects two clients, alice, whose
 * request is in flight, and bob, who sends half a request and stalls; then
 * it sends SIGTERM to this very process, and a third client, carol, comes
 * too late.
 */
#define _POSIX_C_SOURCE 200809L /* kill */
#include <cio.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const double grace = 1.0; /* seconds in-flight requests get */

static cio_server *server;
static int connections, open_connections;

/* ---- the server: one task per connection */

static int handle_client(cio_stream *s, void *arg)
{
    (void)arg;
    int id = ++connections;
    open_connections++;
    printf("server: connection %d open\n", id);
    int err = cio_stream_write(s, "hello\n", 6);
    const char *line;
    ssize_t n = err ? err : cio_stream_readline(s, &line);
    double seconds;
    char request[32];
    if (n > 0 && line[n - 1] == '\n' && (size_t)n < sizeof request) {
        /* The line points into the stream's buffer, with no '\0' after it:
         * copy it to parse it. */
        memcpy(request, line, (size_t)n);
        request[n] = '\0';
        if (sscanf(request, "work %lf", &seconds) == 1 && seconds >= 0 &&
            seconds <= 10) {
            printf("server: connection %d asks for %.1f s of work\n", id,
                   seconds);
            err = cio_stream_write(s, "working\n", 8);
            if (!err)
                err = cio_stream_drain(s);
            if (!err)
                err = cio_sleep(seconds); /* the work */
            if (!err)
                err = cio_stream_write(s, "done\n", 5);
            if (!err)
                err = cio_stream_drain(s);
            if (!err)
                printf("server: connection %d done\n", id);
        }
    } else if (n >= 0) {
        /* Closed (by the client, or by abort_clients) before a whole
         * request came. */
        printf("server: connection %d gone before its request was complete\n",
               id);
    }
    open_connections--;
    return 0; /* errors too: the connection is closed either way */
}

/* SIGTERM or SIGINT: runs on the loop like any callback, not inside a
 * signal handler, so it may print, close and free at will. */
static void on_stop_signal(void *arg)
{
    int signum = (int)(intptr_t)arg;
    printf("server: got %s: no new connections from now on\n",
           signum == SIGTERM ? "SIGTERM" : "SIGINT");
    /* A second SIGTERM or Ctrl-C should stop us for real, at once: give
     * both signals their default action back. */
    cio_loop *loop = cio_get_running_loop();
    cio_remove_signal_handler(loop, SIGTERM);
    cio_remove_signal_handler(loop, SIGINT);
    cio_server_close(server); /* stop listening: serve_forever returns */
}

/* ---- the world around the server (in real life: other programs) */

static char port[16];
static cio_event stopped_accepting = CIO_EVENT_INIT;

/* Connects and reads the greeting. */
static int arrive(const char *who, cio_stream **s)
{
    int err = cio_open_connection("127.0.0.1", port, NULL, s);
    if (err) {
        printf("%s: cannot connect: %s\n", who, cio_strerror(err));
        return err;
    }
    const char *line;
    ssize_t n = cio_stream_readline(*s, &line);
    if (n <= 0) {
        cio_stream_free(*s);
        return n ? (int)n : CIO_EINCOMPLETE;
    }
    printf("%s: connected, the server says %.*s", who, (int)n, line);
    return 0;
}

/* Reads the server's next line, or notices it hung up: an orderly close
 * (EOF), or a dropped connection (abort resets it: ECONNRESET). */
static int hear(const char *who, cio_stream *s)
{
    const char *line;
    ssize_t n = cio_stream_readline(s, &line);
    if (n > 0)
        printf("%s: the server says %.*s", who, (int)n, line);
    else if (n == 0 || n == -ECONNRESET)
        printf("%s: the server closed the connection\n", who);
    return n < 0 && n != -ECONNRESET ? (int)n : 0;
}

static int world(void *arg)
{
    (void)arg;
    cio_stream *alice, *bob = NULL, *carol;
    int err = arrive("alice", &alice);
    if (err)
        return err;
    printf("alice: asks for 0.5 s of work\n");
    err = cio_stream_write(alice, "work 0.5\n", 9);
    if (!err)
        err = hear("alice", alice); /* "working": it is in flight */
    if (!err)
        err = arrive("bob", &bob);
    if (!err) {
        printf("bob: sends half a request, then stalls\n");
        err = cio_stream_write(bob, "wor", 3);
    }

    /* In real life the signal comes from outside: `kill PID` (SIGTERM) in
     * a shell, a service manager stopping us, or Ctrl-C in the terminal
     * (SIGINT). The example sends it to itself so that it runs alone. */
    if (!err) {
        printf("world: sending SIGTERM to this process\n");
        fflush(stdout);
        if (kill(getpid(), SIGTERM) < 0)
            err = -errno;
    }

    /* Once the server has stopped accepting, a newcomer is refused. */
    if (!err)
        err = cio_event_wait(&stopped_accepting);
    if (!err && arrive("carol", &carol) == 0) {
        cio_stream_free(carol);
        err = -EPROTO; /* it should not have got in */
    }
    if (!err)
        err = hear("alice", alice); /* "done": it finished */
    if (!err)
        err = hear("bob", bob); /* cut off at the deadline */
    cio_stream_free(alice);
    cio_stream_free(bob);
    return err;
}

/* ---- the server's life: start, serve until a signal, shut down */

static int main_task(void *arg)
{
    (void)arg;
    int err = cio_start_server(handle_client, NULL, "127.0.0.1", "0", NULL,
                               NULL, &server);
    if (err) {
        fprintf(stderr, "cannot listen: %s\n", cio_strerror(err));
        return err;
    }
    snprintf(port, sizeof port, "%d", cio_server_port(server));
    printf("server: listening on 127.0.0.1 port %s\n", port);

    /* Our handler for SIGINT replaces cio_run's (which would cancel this
     * task): Ctrl-C then shuts down as gracefully as SIGTERM does. */
    cio_loop *loop = cio_get_running_loop();
    err = cio_add_signal_handler(loop, SIGTERM, on_stop_signal,
                                 (void *)(intptr_t)SIGTERM);
    if (!err)
        err = cio_add_signal_handler(loop, SIGINT, on_stop_signal,
                                     (void *)(intptr_t)SIGINT);
    cio_task *others = NULL;
    if (!err)
        err = cio_create_task(world, NULL, &others);

    /* Serve until closed, which the signal handler does. */
    if (!err)
        err = cio_server_serve_forever(server);
    cio_server_close(server); /* already, unless something failed */
    cio_event_set(&stopped_accepting);

    /* Step 2: wait for the open connections, but only for so long. */
    printf("server: waiting up to %.1f s for %d open connection%s\n", grace,
           open_connections, open_connections == 1 ? "" : "s");
    cio_timeout_scope deadline;
    int closed = cio_timeout(&deadline, grace);
    if (!closed) {
        closed = cio_server_wait_closed(server);
        if (cio_timeout_end(&deadline) == -ETIMEDOUT) {
            /* Step 3: the deadline passed; drop whoever is left. */
            printf("server: deadline passed, dropping %d connection%s\n",
                   open_connections, open_connections == 1 ? "" : "s");
            cio_server_abort_clients(server);
            closed = cio_server_wait_closed(server);
        }
    }
    cio_server_free(server);

    if (others) {
        int world_err = cio_await(others, NULL);
        cio_future_unref(others);
        err = err ? err : world_err;
    }
    err = err ? err : closed;
    if (err) {
        fprintf(stderr, "graceful_shutdown: %s\n", cio_strerror(err));
        return err;
    }
    printf("server: all connections closed, exiting with status 0\n");
    return 0;
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
