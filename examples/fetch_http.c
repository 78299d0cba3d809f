/* Fetching a web page: an HTTP/1.1 GET with streams.
 *
 * HTTP/1.1 is text over TCP: a request line and headers, each ending in
 * "\r\n", then an empty line; the response is the same shape, then a body
 * whose length the Content-Length header gives. Streams fit it well:
 * readline for the head, readexactly for the body.
 *
 * So that it works without the Internet, the example starts a tiny web
 * server of its own on 127.0.0.1 first, serving one page. The client
 * speaks plain HTTP (no TLS) and reads bodies that Content-Length sizes;
 * other kinds (chunked, or up to EOF) are left out to keep it short.
 */
#define _POSIX_C_SOURCE 200809L
#include <cio.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the server: one request per connection, then close */

static const char page[] =
    "<!doctype html>\n"
    "<title>Hello from cio</title>\n"
    "<p>This page was served by a cio task.</p>\n";

static int serve_http(cio_stream *s, void *arg)
{
    (void)arg;
    /* A peer that connects and says nothing must not hold a task and a
     * socket forever: the timeout scope ends every wait after 5 s. */
    cio_timeout_scope deadline;
    int err = cio_timeout(&deadline, 5.0);
    if (err)
        return err;
    /* The request head ends with an empty line. The stream's limit (set
     * in main_task) bounds how much a peer can make us buffer looking
     * for it: past it, readuntil returns CIO_ELIMIT. */
    static const char *const blank_line[] = {"\r\n\r\n"};
    const char *head;
    ssize_t n = cio_stream_readuntil(s, blank_line, 1, &head);
    if (n > 0) {
        /* `head` is not a C string: it points into the stream's buffer,
         * n bytes long, until the next read. */
        const char *cr = memchr(head, '\r', (size_t)n); /* found: n >= 4 */
        printf("server: %.*s\n", (int)(cr - head), head);
        int found = strncmp(head, "GET / ", 6) == 0;
        char header[256];
        /* No Date header, which a real server sends: it would change
         * from run to run, and the output here is checked. */
        int len = snprintf(header, sizeof header,
                           "HTTP/1.1 %s\r\n"
                           "Server: cio-example\r\n"
                           "Content-Type: text/html; charset=utf-8\r\n"
                           "Content-Length: %zu\r\n"
                           "Connection: close\r\n"
                           "\r\n",
                           found ? "200 OK" : "404 Not Found",
                           found ? sizeof page - 1 : 0);
        struct iovec iov[] = {{header, (size_t)len},
                              {(void *)page, found ? sizeof page - 1 : 0}};
        err = cio_stream_writelines(s, iov, 2);
        if (!err)
            err = cio_stream_drain(s);
    } else if (n == CIO_ELIMIT) {
        static const char too_big[] =
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n";
        err = cio_stream_write(s, too_big, sizeof too_big - 1);
        if (!err)
            err = cio_stream_drain(s);
    } else {
        err = (int)n; /* EOF first (CIO_EINCOMPLETE), -ETIMEDOUT, ... */
    }
    int expired = cio_timeout_end(&deadline);
    return err ? err : expired; /* returning closes the connection */
}

/* ---- the client */

/* The value of a "Content-Length: 89" line of n bytes, or -1. The line
 * points into the stream's buffer, with no '\0' after it: parse by hand
 * rather than with strtol, which could read past its end. */
static long content_length(const char *line, size_t n)
{
    size_t i = 15; /* after the name and the colon */
    while (i < n && line[i] == ' ')
        i++;
    long value = -1;
    for (; i < n && line[i] >= '0' && line[i] <= '9'; i++) {
        value = (value < 0 ? 0 : value * 10) + (line[i] - '0');
        if (value > 1 << 20)
            return -1; /* more than we are willing to hold in memory */
    }
    return value;
}

static int fetch(const char *host, const char *port, const char *path)
{
    cio_stream *s;
    int err = cio_open_connection(host, port, NULL, &s);
    if (err) {
        printf("cannot connect to %s: %s\n", host, cio_strerror(err));
        return err;
    }
    char request[256];
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.1\r\n"
                       "Host: %s:%s\r\n"
                       "Connection: close\r\n"
                       "\r\n",
                       path, host, port);
    if (len < 0 || (size_t)len >= sizeof request) {
        cio_stream_free(s);
        return -EINVAL;
    }
    err = cio_stream_write(s, request, (size_t)len);
    if (!err)
        err = cio_stream_drain(s);

    /* The status line and the headers, up to the empty line. */
    long length = -1;
    for (int first = 1; !err; first = 0) {
        const char *line;
        ssize_t n = cio_stream_readline(s, &line);
        if (n <= 0) {
            err = n ? (int)n : CIO_EINCOMPLETE; /* EOF in the head */
            break;
        }
        size_t text = (size_t)n; /* without the "\r\n" */
        if (line[text - 1] == '\n')
            text--;
        if (text && line[text - 1] == '\r')
            text--;
        if (text == 0)
            break; /* the empty line: the body follows */
        printf("%s%.*s\n", first ? "status: " : "header: ", (int)text, line);
        if (text > 15 && strncasecmp(line, "Content-Length:", 15) == 0)
            length = content_length(line, text); /* names: any case */
    }

    /* The body: exactly Content-Length bytes. */
    if (!err && length < 0) {
        err = -EPROTO; /* no length, or one we will not hold in memory */
    } else if (!err) {
        char *body = malloc((size_t)length + 1);
        ssize_t n = body ? cio_stream_readexactly(s, body, (size_t)length,
                                                  NULL)
                         : -ENOMEM;
        free(body); /* a real client would use it, of course */
        if (n == length)
            printf("body: %ld bytes\n", length);
        else
            err = (int)n; /* CIO_EINCOMPLETE: the server hung up early */
    }
    if (err)
        printf("fetch failed: %s\n", cio_strerror(err));
    cio_stream_free(s);
    return err;
}

static int main_task(void *arg)
{
    (void)arg;
    cio_server *server;
    /* An 8 KiB limit: a request head longer than that is refused. */
    cio_stream_options limits = {.limit = 8192};
    int err = cio_start_server(serve_http, NULL, "127.0.0.1", "0", &limits,
                               NULL, &server);
    if (err) {
        fprintf(stderr, "cannot listen: %s\n", cio_strerror(err));
        return err;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", cio_server_port(server));

    err = fetch("127.0.0.1", port, "/");

    cio_server_close(server);
    int closed = cio_server_wait_closed(server);
    cio_server_free(server);
    return err ? err : closed;
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
