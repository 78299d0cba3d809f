/* An echo client with streams: open_connection, write, drain, readline.
 *
 * cio_open_connection connects and hands back a stream: one object to
 * read from (readline, read, readexactly) and write to (write, drain).
 * Calls that wait suspend only this task, so the code reads like the
 * blocking socket code you know, and still shares the thread.
 *
 * So that it runs on its own, the example first starts a small echo
 * server on 127.0.0.1 (chapter 9 is about servers); the rest is the
 * client: send three lines, say "that's all" with write_eof, read the
 * echoes until the server closes, then close. At the end it connects
 * once more, after the server has gone, to show what failure looks like.
 */
#include <cio.h>

#include <stdio.h>
#include <string.h>

/* ---- the server: sends back whatever it reads, until EOF */

static int echo(cio_stream *s, void *arg)
{
    (void)arg;
    char buf[4096];
    ssize_t n;
    while ((n = cio_stream_read(s, buf, sizeof buf)) > 0) {
        int err = cio_stream_write(s, buf, (size_t)n);
        if (!err)
            err = cio_stream_drain(s);
        if (err)
            return err;
    }
    return (int)n; /* 0 at EOF: returning closes the connection */
}

/* ---- the client */

static int client(const char *port)
{
    cio_stream *s;
    int err = cio_open_connection("127.0.0.1", port, NULL, &s);
    if (err) {
        printf("client: cannot connect: %s\n", cio_strerror(err));
        return err;
    }
    printf("client: connected\n");

    /* write() never waits: it queues the bytes (sending what it can at
     * once). drain() is where a fast writer waits for a slow reader, so
     * call it after writing, before writing more. */
    static const char *const lines[] = {"one\n", "two\n", "three\n"};
    for (int i = 0; i < 3 && !err; i++)
        err = cio_stream_write(s, lines[i], strlen(lines[i]));
    if (!err)
        err = cio_stream_drain(s);
    /* Half-close: the server reads EOF, but we can still read its
     * replies. Without it, the server could not tell we were done. */
    if (!err)
        err = cio_stream_write_eof(s);
    if (err) {
        printf("client: cannot send: %s\n", cio_strerror(err));
        cio_stream_free(s);
        return err;
    }
    printf("client: sent 3 lines, then EOF\n");

    for (;;) {
        const char *line; /* points into the stream's buffer... */
        ssize_t n = cio_stream_readline(s, &line);
        if (n == 0)
            break; /* EOF: the server closed its side */
        if (n < 0) {
            err = (int)n;
            printf("client: cannot read: %s\n", cio_strerror(err));
            break;
        }
        /* ...until the next read call: print it (or copy it) now. */
        printf("client: echoed back: %.*s", (int)n, line);
    }
    if (!err)
        printf("client: the server closed the connection\n");

    /* close() starts closing (queued data still goes out first);
     * wait_closed() waits until it is done; free() releases the stream. */
    cio_stream_close(s);
    int closed = cio_stream_wait_closed(s);
    cio_stream_free(s);
    if (!err && closed)
        printf("client: closing failed: %s\n", cio_strerror(closed));
    return err ? err : closed;
}

static int main_task(void *arg)
{
    (void)arg;
    cio_server *server;
    int err = cio_start_server(echo, NULL, "127.0.0.1", "0", NULL, NULL,
                               &server);
    if (err) {
        fprintf(stderr, "cannot listen: %s\n", cio_strerror(err));
        return err;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", cio_server_port(server));

    err = client(port);

    cio_server_close(server);
    int closed = cio_server_wait_closed(server);
    cio_server_free(server);
    if (err || closed)
        return err ? err : closed;

    /* Nobody listens on that port any more: a careful client checks. */
    printf("client: connecting again, now that the server is gone\n");
    cio_stream *s;
    err = cio_open_connection("127.0.0.1", port, NULL, &s);
    if (err == 0) {
        cio_stream_free(s);
        printf("client: connected?! (another program took the port)\n");
        return 0;
    }
    printf("client: cannot connect: %s\n", cio_strerror(err));
    return err == -ECONNREFUSED ? 0 : err; /* the failure we expected */
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
