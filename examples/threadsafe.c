/* Handing results from a worker thread to the event loop.
 *
 * A loop belongs to the thread that runs it: almost every cio call must be
 * made from that thread. The one exception is cio_call_soon_threadsafe(),
 * which any thread may call: it queues a callback and wakes the loop if it
 * is asleep waiting for something to do.
 *
 * Here a worker thread computes results slowly (a stand-in for blocking
 * work) and passes each one to the loop. The loop thread prints them, in
 * the order they were handed over, and stops after the last.
 */
#define _POSIX_C_SOURCE 200809L
#include <cio.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { RESULTS = 5 };

/* One result travelling from the worker to the loop. The worker allocates
 * it; the callback that receives it frees it. */
typedef struct result {
    int n;
    unsigned long long value;
    int last;
} result;

static cio_loop *loop;

/* Runs on the loop's thread. */
static void on_result(void *arg)
{
    result *r = arg;
    printf("loop: fib(%d) = %llu\n", r->n, r->value);
    if (r->last) {
        printf("loop: that was the last one, stopping\n");
        cio_loop_stop(loop);
    }
    free(r);
}

static unsigned long long fib(int n)
{
    unsigned long long a = 0, b = 1;
    while (n-- > 0) {
        unsigned long long next = a + b;
        a = b;
        b = next;
    }
    return a;
}

/* Runs on the worker thread: it never touches the loop except through
 * cio_call_soon_threadsafe(). */
static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < RESULTS; i++) {
        result *r = malloc(sizeof *r);
        if (!r)
            abort();
        r->n = 10 * (i + 1);
        r->value = fib(r->n);
        r->last = i == RESULTS - 1;
        struct timespec pause = {0, 20 * 1000 * 1000}; /* 20 ms of "work" */
        nanosleep(&pause, NULL);
        int err = cio_call_soon_threadsafe(loop, on_result, r);
        if (err) { /* the callback will not run: the result is still ours */
            fprintf(stderr, "worker: %s\n", cio_strerror(err));
            free(r);
            abort();
        }
    }
    return NULL;
}

int main(void)
{
    int err = cio_loop_new(&loop, NULL);
    if (err) {
        fprintf(stderr, "cio_loop_new: %s\n", cio_strerror(err));
        return 1;
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, NULL) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        return 1;
    }
    printf("main: worker started; the loop waits for its results\n");
    fflush(stdout);

    /* Nothing is scheduled yet: the loop sleeps in the kernel until the
     * worker's first call_soon_threadsafe wakes it. */
    err = cio_loop_run_forever(loop);

    pthread_join(thread, NULL);
    printf("main: loop stopped, worker joined\n");
    cio_loop_free(loop);
    return err ? 1 : 0;
}
