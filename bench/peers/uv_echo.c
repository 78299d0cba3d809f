/*
 * uv_echo PORT (libuv peer): the echo server of the echo benchmarks.
 *
 * The efficient libuv idiom: alloc_cb hands out one shared 64 KiB buffer,
 * read_cb echoes with uv_try_write (a direct write, no request) and only
 * what the socket did not take is copied into a uv_write request; while
 * such a write is pending the connection stops reading (bounded memory,
 * as the epoll peer). TCP_NODELAY as asyncio, uvloop and Go. Listens on
 * 127.0.0.1; prints only errors; runs until killed.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "uv_common.h"

#define BUF_SIZE 65536

static char shared_buf[BUF_SIZE];
static uv_loop_t *loop;

struct pending_write {
    uv_write_t req;
    char data[]; /* the unsent tail */
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(shared_buf, BUF_SIZE);
}

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    uv_stream_t *s = req->handle;
    free(req);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (!uv_is_closing((uv_handle_t *)s))
        uv_read_start(s, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n == 0)
        return;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
    int w = uv_try_write(s, &out, 1);
    if (w == n)
        return;
    if (w < 0 && w != UV_EAGAIN) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    size_t done = w > 0 ? (size_t)w : 0, rest = (size_t)n - done;
    struct pending_write *pw = malloc(sizeof *pw + rest);
    if (!pw) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    memcpy(pw->data, buf->base + done, rest);
    uv_buf_t tail = uv_buf_init(pw->data, (unsigned)rest);
    uv_read_stop(s);
    if (uv_write(&pw->req, s, &tail, 1, on_write) < 0) {
        free(pw);
        uv_close((uv_handle_t *)s, on_close);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "uv_echo: connection: %s\n", uv_strerror(status));
        return;
    }
    uv_tcp_t *c = malloc(sizeof *c);
    if (!c)
        return;
    uv_tcp_init(loop, c);
    if (uv_accept(server, (uv_stream_t *)c) < 0) {
        uv_close((uv_handle_t *)c, on_close);
        return;
    }
    uv_tcp_nodelay(c, 1);
    uv_read_start((uv_stream_t *)c, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: uv_echo PORT\n");
        return 2;
    }
    loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    UV_CHECK(uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr));
    UV_CHECK(uv_tcp_init(loop, &server));
    UV_CHECK(uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0));
    UV_CHECK(uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection));
    return uv_run(loop, UV_RUN_DEFAULT);
}
