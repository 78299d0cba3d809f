/* Handling errors: codes passed up, errors nobody retrieved, cancellation
 * as an error, and cleanup on every path.
 *
 * C has no exceptions: every cio call returns 0 (or a count) or a
 * negative code, and a task's error is its return value. Four short
 * scenes:
 *  1. a failed call's code, passed up to whoever awaits the task;
 *  2. a task that failed while nobody looked: the loop's exception
 *     handler reports "Task exception was never retrieved", as asyncio
 *     does (here a handler of our own prints it);
 *  3. cancellation arrives as -ECANCELED from the call the task waits in,
 *     and from every later wait: the task cleans up (waiting once more,
 *     after cio_task_uncancel) and ends cancelled;
 *  4. a timeout scope that a `return` leaves early ends by itself.
 */
#include <cio.h>

#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

enum { ERR_NO_CONFIG = CIO_EUSER(1) }; /* an error of this program's own */

static const char *our_names(int n)
{
    return n == 1 ? "no configuration file" : NULL;
}

/* The loop's exception handler: what cio cannot return to anybody. */
static void report(cio_loop *loop, const cio_error_context *ctx, void *arg)
{
    (void)loop, (void)arg;
    printf("  handler: %s (%s %s): %s\n", ctx->message,
           ctx->what ? ctx->what : "-", ctx->name ? ctx->name : "-",
           cio_strerror(ctx->error));
}

/* 1. A call fails; the task returns its code. */
static int connect_to_nowhere(void *arg)
{
    (void)arg;
    cio_stream *s;
    int err = cio_open_unix_connection("/nonexistent/cio.sock", NULL, &s);
    if (err)
        return err; /* passed up: the task's status */
    cio_stream_free(s);
    return 0;
}

/* 2. Fails with an error of our own. */
static int read_config(void *arg)
{
    (void)arg;
    return ERR_NO_CONFIG;
}

/* 3. Works until cancelled, then says goodbye (which waits too). */
static int worker(void *arg)
{
    int *rounds = arg;
    int err;
    while (!(err = cio_sleep(0.01)))
        ++*rounds;
    printf("  worker: sleep returned %s after %d rounds\n",
           err == -ECANCELED ? "-ECANCELED" : cio_strerror(err), *rounds);
    printf("  worker: another wait, still cancelled: %s\n",
           cio_sleep(0) == -ECANCELED ? "-ECANCELED" : "?");
    cio_task_uncancel(cio_current_task()); /* waits work again */
    int bye = cio_sleep(0.01);             /* flushing, closing, ... */
    printf("  worker: cleanup's wait after uncancel: %d\n", bye);
    return -ECANCELED; /* and still ends cancelled */
}

/* 4. An early return inside a timeout scope. */
static int ask(int fd)
{
    CIO_TIMEOUT_SCOPE(deadline);
    int err = cio_timeout(&deadline, 0.05);
    if (err)
        return err;
    char answer[16];
    ssize_t n = cio_sock_recv(fd, answer, sizeof answer); /* never comes */
    if (n < 0)
        return (int)n; /* -ETIMEDOUT; the scope ends here by itself */
    return cio_timeout_end(&deadline);
}

static int scenes(void *arg)
{
    (void)arg;
    cio_loop *loop = cio_get_running_loop();
    cio_loop_set_exception_handler(loop, report, NULL);
    /* The virtual clock (chapter 5): the sleeps below take no real time
     * and end in the same order on every run. */
    cio_loop_set_virtual_clock(loop, cio_loop_time(loop));

    printf("1. A failed call's code, passed up\n");
    cio_task *t;
    int err = cio_create_task(connect_to_nowhere, NULL, &t);
    if (err)
        return err;
    printf("  awaited: %s\n", cio_strerror(cio_await(t, NULL)));
    cio_future_unref(t);

    printf("2. An error nobody retrieved\n");
    cio_task_options named = {.name = "read-config"};
    if ((err = cio_task_new(NULL, read_config, NULL, &named, &t)))
        return err;
    cio_future_unref(t); /* nobody will look at its status */
    cio_sleep(0);        /* it runs, fails, and is gone: reported */

    printf("3. Cancellation is an error too\n");
    int rounds = 0;
    if ((err = cio_create_task(worker, &rounds, &t)))
        return err;
    cio_sleep(0.035);
    cio_task_cancel(t);
    int status = cio_await(t, NULL);
    printf("  awaited: %s, cancelled: %d\n",
           status == -ECANCELED ? "-ECANCELED" : cio_strerror(status),
           cio_future_cancelled(t));
    cio_future_unref(t);

    printf("4. A timeout scope left by a return\n");
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) < 0)
        return -errno;
    printf("  ask: %s\n", cio_strerror(ask(pair[0])));
    printf("  after it, waits are not timed out: %d\n", cio_sleep(0.06));
    close(pair[0]);
    close(pair[1]);
    return 0;
}

int main(void)
{
    cio_set_user_strerror(our_names); /* once, before any thread starts */
    int err = cio_run(scenes, NULL);
    if (err)
        fprintf(stderr, "errors: %s\n", cio_strerror(err));
    return err ? 1 : 0;
}
