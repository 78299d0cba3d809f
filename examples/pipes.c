/* Pipes you made yourself: connect_write_pipe and connect_read_pipe.
 *
 * CIO_STDIO_PIPE gives a child's pipes to you as streams. A pipe can also
 * come from elsewhere: pipe(2), a FIFO, an fd your parent handed down.
 * cio_connect_write_pipe and cio_connect_read_pipe wrap any such fd in a
 * transport, with a protocol as for a socket (chapter 2): the write side
 * writes and closes, the read side gets data_received, eof_received when
 * the writer closed its end, then connection_lost.
 *
 * Here the two pipes are made with pipe(2) and go to a child, `tr a-z
 * A-Z`, as its stdin and stdout (CIO_STDIO_FD); the parent writes lines
 * into one and reads them back in capitals from the other.
 */
#define _POSIX_C_SOURCE 200809L /* pipe, close */
#include <cio.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* One end's state: what came in, and the protocol's reference to the
 * future the main task waits on, dropped at connection_lost. Kept in
 * static storage, so a transport that outlives the main task (after a
 * Ctrl-C) touches nothing freed. */
typedef struct end {
    char got[256];
    size_t n;
    cio_future *lost;
} end;

static end w, r; /* the write pipe's, the read pipe's */

static const char text[] = "a pipe is a file descriptor\n"
                           "the loop watches it\n"
                           "as it watches a socket\n";

static void writer_made(cio_transport *t, void *ctx)
{
    (void)ctx;
    printf("write pipe: connection_made: writing 3 lines, then closing\n");
    if (cio_transport_write(t, text, strlen(text)) != 0)
        printf("write pipe: the write failed\n");
    cio_transport_close(t); /* once flushed: the child reads EOF then */
}

static void reader_data(cio_transport *t, const char *data, size_t n,
                        void *ctx)
{
    (void)t;
    end *e = ctx;
    /* A pipe is a byte stream: the reply may come in several pieces. */
    size_t room = sizeof e->got - e->n;
    size_t m = n < room ? n : room;
    memcpy(e->got + e->n, data, m);
    e->n += m;
}

static int reader_eof(cio_transport *t, void *ctx)
{
    (void)t;
    end *e = ctx;
    printf("read pipe: eof_received after %zu bytes: the child closed it\n",
           e->n);
    return 0;
}

static void reader_made(cio_transport *t, void *ctx)
{
    (void)t;
    (void)ctx;
    printf("read pipe: connection_made\n");
}

/* Both ends: the last callback says the transport (and its fd) is gone. */
static void end_lost(cio_transport *t, int error, void *ctx)
{
    (void)t;
    end *e = ctx;
    if (error)
        cio_future_set_error(e->lost, error);
    else
        cio_future_set_result(e->lost, NULL);
    cio_future_unref(e->lost);
    e->lost = NULL;
}

static const cio_protocol writer = {
    .connection_made = writer_made,
    .connection_lost = end_lost,
};

static const cio_protocol reader = {
    .connection_made = reader_made,
    .data_received = reader_data,
    .eof_received = reader_eof,
    .connection_lost = end_lost,
};

/* Starts `tr a-z A-Z` reading from in, writing to out (the child gets
 * copies: the originals stay ours, and we close them once it runs). */
static int start_child(int in, int out, cio_process **p)
{
    const char *const argv[] = {"tr", "a-z", "A-Z", NULL};
    cio_process_options opts = {
        .in = {.kind = CIO_STDIO_FD, .fd = in},
        .out = {.kind = CIO_STDIO_FD, .fd = out},
    };
    int err = cio_create_subprocess_exec(argv, &opts, p);
    close(in);
    close(out);
    return err;
}

/* Wraps fd (the transport's from then on) with e; *lost, the caller's
 * reference (NULL on error), completes at its connection_lost. */
static int connect_end(int fd, int reading, end *e, cio_future **lost)
{
    *lost = NULL;
    int err = cio_future_new(NULL, &e->lost);
    if (!err) {
        *lost = cio_future_ref(e->lost);
        err = reading ? cio_connect_read_pipe(NULL, fd, &reader, e, NULL)
                      : cio_connect_write_pipe(NULL, fd, &writer, e, NULL);
    }
    if (err) {
        close(fd); /* still ours when the call failed */
        cio_future_unref(e->lost); /* NULL-safe */
        cio_future_unref(*lost);
        e->lost = *lost = NULL;
    }
    return err;
}

static int talk(cio_process *p, int to_child, int from_child)
{
    cio_future *ends[2];
    int err = connect_end(to_child, 0, &w, &ends[0]);
    int rerr = connect_end(from_child, 1, &r, &ends[1]);
    cio_future *live[2];
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        if (ends[i])
            live[n++] = ends[i];
    /* Both ends, even if one failed: the output is whole after both. */
    cio_result res[2];
    int gathered = n > 0 ? cio_gather(live, n, 1, res) : 0; /* -ECANCELED */
    for (size_t i = 0; i < n; i++) {
        err = err ? err : gathered ? gathered : res[i].status;
        cio_future_unref(live[i]);
    }
    err = err ? err : rerr;
    if (!err) {
        printf("main: both ends are closed; the child wrote:\n");
        printf("%.*s", (int)r.n, r.got);
    }
    int code = 0;
    int werr = cio_process_wait(p, &code);
    if (!err && !werr)
        printf("tr exited with status %d\n", code);
    return err ? err : werr;
}

static int main_task(void *arg)
{
    (void)arg;
    int to_child[2], from_child[2];
    if (pipe(to_child) < 0)
        return -errno;
    if (pipe(from_child) < 0) {
        int err = -errno;
        close(to_child[0]);
        close(to_child[1]);
        return err;
    }
    cio_process *p;
    int err = start_child(to_child[0], from_child[1], &p);
    if (err) {
        close(to_child[1]);
        close(from_child[0]);
    } else {
        printf("main: tr a-z A-Z runs with pipes of ours as stdin and "
               "stdout\n");
        err = talk(p, to_child[1], from_child[0]);
        cio_process_free(p);
    }
    if (err)
        fprintf(stderr, "pipes: %s\n", cio_strerror(err));
    return err;
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
