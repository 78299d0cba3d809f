/* The event loop, with nothing but callbacks.
 *
 * An event loop is a queue of functions to call. You hand it callbacks
 * (call_soon: "as soon as you can", call_later / call_at: "at this time"),
 * then run it; it calls them one at a time, in a well-defined order, on
 * this one thread. Nothing runs while you are scheduling: the loop only
 * works inside cio_loop_run_forever().
 *
 * Build and run:  make && build/gcc-asm/examples/callbacks
 */
#include <cio.h>

#include <stdio.h>

static cio_loop *loop;

/* Every callback has this shape: void fn(void *arg). The loop gives back
 * the arg you passed when scheduling; here it is the line to print. */
static void say(void *arg) { printf("%s\n", (const char *)arg); }

/* A callback may schedule more callbacks. These do not run in the middle
 * of the current round ("iteration"): they wait for the next one, after
 * everything that was already queued. */
static void first(void *arg)
{
    say(arg);
    cio_call_soon(loop, say,
                  "C: scheduled by A, so it waits for the next iteration", NULL);
}

/* cio_loop_stop() does not stop at once: the loop finishes the current
 * iteration, then run_forever() returns. */
static void stop_now(void *arg)
{
    say(arg);
    cio_loop_stop(loop);
}

int main(void)
{
    int err = cio_loop_new(&loop, NULL);
    if (err) {
        fprintf(stderr, "cio_loop_new: %s\n", cio_strerror(err));
        return 1;
    }

    /* The loop's clock: monotonic seconds. call_at takes a time on it,
     * call_later a delay from now. */
    double t0 = cio_loop_time(loop);

    /* Timers run by deadline, not in the order they were scheduled. */
    cio_call_later(loop, 0.2, say, "timer 0.2 s", NULL);
    cio_call_at(loop, t0 + 0.1, say,
                "timer 0.1 s: scheduled after the 0.2 s one, runs first", NULL);
    cio_call_at(loop, t0 + 0.1, say,
                "timer 0.1 s, same deadline: runs in scheduling order", NULL);

    /* Two timers for the same moment: the first stops the loop, and the
     * second still runs, because stop() lets the iteration finish. */
    cio_call_at(loop, t0 + 0.3, stop_now, "timer 0.3 s: calls stop()", NULL);
    cio_call_at(loop, t0 + 0.3, say,
                "timer 0.3 s, same iteration: still runs after stop()", NULL);

    /* call_soon callbacks run first, first in first out. */
    cio_call_soon(loop, first, "A: first call_soon", NULL);
    cio_call_soon(loop, say, "B: second call_soon", NULL);

    /* The last argument of each call could receive a cio_handle, to
     * cancel that callback later; NULL means we won't. Each call returns 0
     * or a negative error code (-ENOMEM, ...); a real program checks. */
    printf("main: callbacks scheduled; nothing has run yet\n");
    fflush(stdout);

    err = cio_loop_run_forever(loop); /* returns after stop() */
    printf("main: run_forever() returned %d after %.1f s\n", err,
           cio_loop_time(loop) - t0);

    cio_loop_free(loop); /* closes it, then frees it */
    return err ? 1 : 0;
}
