/* The top floor: asyncio's runners (cio_run, run_until_complete) and the
 * loop's whole teardown. This is the only file that knows every
 * subsystem; each one below knows only the floors under it, and is told
 * about the loop's end by the closer called here.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <signal.h>

/* ---------------------------------------------------------- the teardown
 * Order matters: each step may still need what the later ones tear down.
 * Threads first (nobody may post to a closing loop), then the objects
 * that wake or reference tasks, then the tasks themselves; the loop's own
 * core (watchers, posts, timers, backend) last. */
int cio_loop_close(cio_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (atomic_load(&loop->claimed)) /* running, here or in a thread */
        return -EBUSY;
    if (loop->closed)
        return 0;
    cio_loop_trace_stop(loop);      /* written as it stood: teardown aside */
    cio__executor_loop_close(loop); /* its workers may still post to us */
    cio__signals_close(loop);       /* dispositions and masks restored */
    cio__processes_close(loop);     /* running children go to the reaper */
    cio__net_close(loop);           /* wakes tasks parked on streams */
    cio__tasks_close(loop);         /* after it nothing points into a stack */
    cio__loop_close_core(loop);     /* watchers, posts, timers, backend */
    return 0;
}

void cio_loop_free(cio_loop *loop)
{
    if (!loop)
        return;
    cio__assert(!atomic_load(&loop->claimed));
    cio_loop_close(loop);
    cio__debug_report_live(loop); /* debug: references never dropped */
    cio__quarantine_flush(loop);
    cio__stack_pool_free(loop);
    cio__loop_free_core(loop);
}

/* ---------------------------------------------------------- the trace */

int cio_loop_trace_start(cio_loop *loop, const char *path)
{
    if (!loop || !path || !*path)
        return -EINVAL;
    if (loop->closed)
        return -ESHUTDOWN;
    if (loop->trace)
        return -EBUSY;
    int err = cio__trace_begin(loop, path, false);
    if (!err)
        cio__tasks_trace_begin(loop);
    return err;
}

int cio_loop_trace_stop(cio_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (!loop->trace)
        return 0;
    cio__tasks_trace_end(loop);
    return cio__trace_end(loop);
}

/* ------------------------------------------------------------- runners */

static void stop_loop(cio_future *f, void *arg)
{
    (void)f;
    cio_loop_stop(arg);
}

int cio_loop_run_until_complete(cio_loop *loop, cio_future *fut)
{
    if (!loop || !fut || fut->loop != loop)
        return -EINVAL;
    int err = cio_future_add_done_callback(fut, stop_loop, loop);
    if (err)
        return err;
    err = cio_loop_run_forever(loop);
    cio_future_remove_done_callback(fut, stop_loop, loop);
    if (err)
        return err;
    return cio_future_result(fut, NULL); /* -EAGAIN: stopped before done */
}

/* asyncio.run's _cancel_all_tasks: cancel what is left and let it finish;
 * errors other than cancellation are reported, as asyncio does. */
static void cancel_all_tasks(cio_loop *loop)
{
    cio__list *all = &loop->tasks.all;
    for (cio__list *n = all->next; n != all; n = n->next)
        cio_task_cancel(&cio__container_of(n, cio__task, all)->fut);
    while (loop->tasks.n > 0)
        if (cio_loop_run_once(loop, CIO_NO_TIMEOUT) < 0)
            break;
}

/* Python 3.11's asyncio.Runner and Ctrl-C: the first SIGINT cancels the
 * main task, the next one interrupts the program for real. Installed only
 * in the main thread and only if SIGINT is at its default: a program that
 * handles or ignores it keeps its own choice. */
typedef struct sigint_state {
    cio_task *main;
    int count;
} sigint_state;

static void on_sigint(void *arg)
{
    sigint_state *st = arg;
    if (st->count++ == 0 && !cio_future_done(st->main)) {
        cio_task_cancel(st->main);
        return;
    }
    /* Second Ctrl-C: as if cio had never handled it. */
    cio_remove_signal_handler(cio_future_get_loop(st->main), SIGINT);
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
}

/* Returns whether the handler is in place (st is then in use). */
static bool sigint_begin(cio_loop *loop, sigint_state *st)
{
    struct sigaction old;
    if (!cio__main_thread() || sigaction(SIGINT, NULL, &old) < 0 ||
        old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
        return false;
    /* Failing that, Ctrl-C just kills, as it would without cio. */
    return cio_add_signal_handler(loop, SIGINT, on_sigint, st) == 0;
}

/* Runs main_task to its end with Ctrl-C handled, then cancels and waits
 * for every other task, then shuts the default executor down (asyncio's
 * 300 s timeout); results posted meanwhile are delivered by one more
 * iteration. */
static int run_main(cio_loop *loop, cio_task *main_task)
{
    sigint_state st = {main_task, 0};
    bool sigint = sigint_begin(loop, &st);
    int err = cio_loop_run_until_complete(loop, main_task);
    if (sigint)
        cio_remove_signal_handler(loop, SIGINT);
    cio_future_unref(main_task);
    cancel_all_tasks(loop);
    cio__executor_shutdown_default(loop, 300);
    cio_loop_run_once(loop, 0);
    return err;
}

/* The main task is the loop's first: unnamed, it is "Task-1", as the task
 * asyncio.run creates for its coroutine in a fresh program. */
int cio_run_with(cio_task_fn fn, void *arg, const cio_run_options *opts)
{
    if (cio__running_loop)
        return -EBUSY;
    if (!fn)
        return -EINVAL;
    cio_loop *loop;
    int err = cio_loop_new(&loop, opts ? &opts->loop : NULL);
    if (err)
        return err;
    cio_task *main_task;
    err = cio_task_new(loop, fn, arg, opts ? &opts->main : NULL, &main_task);
    if (err == 0)
        err = run_main(loop, main_task);
    cio_loop_free(loop);
    return err;
}

int cio_run(cio_task_fn fn, void *arg) { return cio_run_with(fn, arg, NULL); }
