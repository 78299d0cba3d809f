/* Baking a cake, synchronously and then asynchronously.
 *
 * The oven needs 0.3 s to preheat, mixing the ingredients takes 0.2 s and
 * baking 0.3 s (short sleeps stand for the work). Done one after another,
 * that is 0.8 s. But nobody watches an oven preheat: you mix while it
 * warms up. That is all asynchronous programming is - while one thing
 * waits, do another - and cio lets you write it as plainly as the
 * one-after-another version.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep under -std=c11 */
#include <cio.h>

#include <stdio.h>
#include <time.h>

static struct timespec start;

static double elapsed(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
}

typedef struct step {
    const char *what;
    double seconds;
    const char *who; /* the task that does it, as the trace names it */
} step;

static step preheat = {"preheating the oven", 0.3, "oven"};
static step mix = {"mixing the ingredients", 0.2, "mixer"};
static step bake = {"baking the cake", 0.3, "kitchen"};

/* ----- The synchronous way: each step blocks the whole program. ----- */

static void blocking_step(const step *s)
{
    printf("  start %s\n", s->what);
    struct timespec ts = {0, (long)(s->seconds * 1e9)};
    nanosleep(&ts, NULL); /* the program can do nothing else meanwhile */
    printf("  done %s\n", s->what);
}

static double bake_synchronously(void)
{
    clock_gettime(CLOCK_MONOTONIC, &start);
    blocking_step(&preheat);
    blocking_step(&mix);
    blocking_step(&bake);
    return elapsed();
}

/* ----- The asynchronous way: each step is a task on the event loop. -----
 *
 * A task is a plain C function. When it calls cio_sleep() (or any other
 * cio call that waits), the task is suspended right there, and the event
 * loop runs other tasks until the wait is over. Nothing blocks. */

static int async_step(void *arg)
{
    const step *s = arg;
    /* A name for the task: the timeline (CIO_TRACE=cake.json, see the
     * guide's chapter on seeing inside) shows one row per task. */
    cio_task_set_name(cio_current_task(), s->who);
    printf("  start %s\n", s->what);
    int err = cio_sleep(s->seconds); /* suspends this task, not the program */
    if (err)
        return err; /* e.g. -ECANCELED: the task was cancelled meanwhile */
    printf("  done %s\n", s->what);
    return 0;
}

static int kitchen(void *arg)
{
    (void)arg;
    /* Preheat and mix at the same time, and wait for both: the oven must
     * be hot and the batter ready. cio_gather_calls runs each call as a
     * task of its own (asyncio.gather(preheat(), mix())). */
    cio_call both[] = {{async_step, &preheat}, {async_step, &mix}};
    int err = cio_gather_calls(both, 2, 0, NULL);
    if (err)
        return err;
    /* Baking needs both, so it comes after: a plain call in this task. */
    return async_step(&bake);
}

static double bake_asynchronously(void)
{
    clock_gettime(CLOCK_MONOTONIC, &start);
    int err = cio_run(kitchen, NULL); /* an event loop runs `kitchen` */
    if (err)
        fprintf(stderr, "kitchen failed: %s\n", cio_strerror(err));
    return elapsed();
}

int main(void)
{
    printf("Synchronous: one step after another\n");
    double sync_time = bake_synchronously();
    printf("  total: %.1f s\n", sync_time);

    printf("Asynchronous: mix while the oven preheats\n");
    double async_time = bake_asynchronously();
    printf("  total: %.1f s\n", async_time);

    printf("The asynchronous kitchen was %s.\n",
           async_time < sync_time ? "faster" : "not faster (?)");
    return 0;
}
