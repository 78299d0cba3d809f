/* Three ways to run an event loop, and why a loop stays in its thread.
 *
 *   1. cio_run(main, arg): the whole program. It makes the loop, runs
 *      main as the first task, cancels what main left running, and frees
 *      everything. Prefer it.
 *   2. cio_loop_new + cio_loop_run_until_complete: a loop you keep, run
 *      until one future (a task) is done, as often as you like.
 *   3. cio_loop_run_forever: until a callback calls cio_loop_stop.
 *
 * Then debug mode catches another thread calling into a running loop: a
 * loop's queues have no locks (that is what makes it fast), so such a
 * call would corrupt them; in debug mode it returns -EPERM and the loop's
 * exception handler says so.
 */
#define _POSIX_C_SOURCE 200809L /* pthreads */
#include <cio.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>

/* ---- 1. cio_run */

static int background(void *arg)
{
    (void)arg;
    int err = cio_sleep(3600); /* never finishes by itself */
    printf("  background task: %s by cio_run, since main returned\n",
           cio_strerror(err));
    return err;
}

static int main_task(void *arg)
{
    printf("  main task: running, given \"%s\"\n", (const char *)arg);
    int err = cio_create_task(background, NULL, NULL); /* left running */
    if (!err)
        err = cio_sleep(0.05);
    return err ? err : 42; /* cio_run returns this */
}

static int way_run(void)
{
    printf("1. cio_run: a loop for the whole program\n");
    int status = cio_run(main_task, "an argument");
    printf("  cio_run returned %d; no loop is left: %s\n", status,
           cio_get_running_loop() ? "no" : "yes");
    return status == 42 ? 0 : -EPROTO;
}

/* ---- 2. cio_loop_run_until_complete */

static int step(void *arg)
{
    int err = cio_sleep(0.05);
    printf("  task %s done\n", (const char *)arg);
    return err;
}

/* Starts step(name) as a task on loop and runs the loop until it is done:
 * the loop stops there, and stays open for the next one. */
static int run_one(cio_loop *loop, const char *name)
{
    cio_task *t;
    int err = cio_task_new(loop, step, (void *)name, NULL, &t);
    if (err)
        return err;
    err = cio_loop_run_until_complete(loop, t);
    cio_future_unref(t);
    return err;
}

static int way_until_complete(void)
{
    printf("2. run_until_complete: a loop of our own, run for one task\n");
    cio_loop *loop;
    int err = cio_loop_new(&loop, NULL);
    if (err)
        return err;
    err = run_one(loop, "one");
    printf("  between runs: loop running %d, closed %d\n",
           cio_loop_is_running(loop), cio_loop_is_closed(loop));
    if (!err)
        err = run_one(loop, "two");
    cio_loop_free(loop); /* closes it: leftovers would be reported */
    return err;
}

/* ---- 3. cio_loop_run_forever and cio_loop_stop */

static void nested(void *arg)
{
    int err = cio_loop_run_forever(arg); /* inside its own callback */
    printf("  a callback runs the loop again: %s\n", cio_strerror(err));
}

static void stop(void *arg)
{
    printf("  a timer calls cio_loop_stop\n");
    cio_loop_stop(arg); /* the iteration finishes, then run_forever returns */
}

static int way_forever(void)
{
    printf("3. run_forever: until a callback calls stop\n");
    cio_loop *loop;
    int err = cio_loop_new(&loop, NULL);
    if (!err)
        err = cio_call_soon(loop, nested, loop, NULL);
    if (!err)
        err = cio_call_later(loop, 0.05, stop, loop, NULL);
    if (!err)
        err = cio_loop_run_forever(loop);
    if (!err)
        printf("  run_forever returned\n");
    cio_loop_free(loop);
    return err;
}

/* ---- one thread, one loop: what debug mode says */

static pthread_t other;
static int other_started;

/* The exception handler: the default prints to stderr; this one prints
 * to stdout so that the example's output shows it. It runs in the thread
 * that made the mistake. */
static void report(cio_loop *loop, const cio_error_context *ctx, void *arg)
{
    (void)loop;
    (void)arg;
    printf("  debug mode reports: %s (%s)\n", ctx->message,
           cio_strerror(ctx->error));
}

static void ignore(void *arg) { (void)arg; }

static void answer(void *arg)
{
    printf("  loop thread: call_soon_threadsafe delivered \"%s\"\n",
           (const char *)arg);
    cio_loop_stop(cio_get_running_loop());
}

static void *other_thread(void *arg)
{
    cio_loop *loop = arg;
    int err = cio_call_soon(loop, ignore, NULL, NULL); /* wrong: not ours */
    printf("  other thread: cio_call_soon returned %s\n", cio_strerror(err));
    err = cio_call_soon_threadsafe(loop, answer, "the right door");
    if (err) /* the loop will not stop by itself: nothing else can work */
        printf("  other thread: call_soon_threadsafe: %s\n",
               cio_strerror(err));
    return NULL;
}

/* Runs on the loop, so the other thread calls in while the loop runs. */
static void start_other(void *arg)
{
    if (pthread_create(&other, NULL, other_thread, arg) == 0)
        other_started = 1;
    else
        cio_loop_stop(arg);
}

static int one_thread(void)
{
    printf("another thread calls into the loop, in debug mode\n");
    /* slow_callback_duration: a slow machine (or valgrind) must not make
     * debug mode's slow-callback warning part of this output. */
    cio_loop_options opts = {.debug = 1, .slow_callback_duration = 60};
    cio_loop *loop;
    int err = cio_loop_new(&loop, &opts);
    if (err)
        return err;
    err = cio_loop_set_exception_handler(loop, report, NULL);
    if (!err)
        err = cio_call_soon(loop, start_other, loop, NULL);
    if (!err)
        err = cio_loop_run_forever(loop); /* until answer() stops it */
    if (other_started)
        pthread_join(other, NULL);
    cio_loop_free(loop);
    return err ? err : other_started ? 0 : -EAGAIN;
}

int main(void)
{
    int err = way_run();
    if (!err)
        err = way_until_complete();
    if (!err)
        err = way_forever();
    if (!err)
        err = one_thread();
    if (err)
        fprintf(stderr, "running: %s\n", cio_strerror(err));
    return err ? 1 : 0;
}
