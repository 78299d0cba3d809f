/* One event loop per thread, and the two safe ways between them.
 *
 * A loop belongs to the thread that runs it: only that thread may touch
 * it, its tasks and its futures. Other threads talk to it through two
 * doors: cio_call_soon_threadsafe (run this callback on your loop) and
 * cio_run_coroutine_threadsafe (run this function as a task on your loop
 * and give me a future I can wait for from my thread).
 *
 * Three threads each run their own loop with cio_run. A token travels
 * around them, handed on with call_soon_threadsafe; then the main thread,
 * which runs no loop at all, asks each loop to compute something with
 * run_coroutine_threadsafe and waits for the answers.
 */
#define _POSIX_C_SOURCE 200809L
#include <cio.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>

enum { NTHREADS = 3, HOPS = 7 };

typedef struct worker {
    int id;
    pthread_t thread;
    cio_loop *loop;   /* set by its thread before `ready` */
    cio_future *quit; /* its main task waits for this */
} worker;

static worker workers[NTHREADS];
static sem_t ready, token_home;
static int token_hops;

/* ---- runs on each worker thread */

static int worker_main(void *arg)
{
    worker *w = arg;
    w->loop = cio_get_running_loop();
    int err = cio_future_new(NULL, &w->quit);
    sem_post(&ready); /* others may now post to w->loop */
    if (err)
        return err;
    err = cio_await(w->quit, NULL); /* the loop runs callbacks meanwhile */
    cio_future_unref(w->quit);
    return err;
}

static void *thread_main(void *arg)
{
    worker *w = arg;
    int err = cio_run(worker_main, w); /* this thread's own loop */
    if (err)
        fprintf(stderr, "thread %d: %s\n", w->id, cio_strerror(err));
    return NULL;
}

/* A callback posted from one thread, running on another thread's loop. */
static void receive_token(void *arg)
{
    worker *w = arg;
    printf("  hop %d: the token is on thread %d\n", token_hops, w->id);
    if (++token_hops == HOPS) {
        sem_post(&token_home);
        return;
    }
    worker *next = &workers[(w->id + 1) % NTHREADS];
    cio_call_soon_threadsafe(next->loop, receive_token, next);
}

/* A coroutine started from the main thread on a worker's loop. */
static int square_slowly(void *arg)
{
    worker *w = arg;
    int err = cio_sleep(0.01 * (NTHREADS - w->id)); /* a task: it may wait */
    return err ? err : (w->id + 1) * (w->id + 1);
}

static void quit_loop(void *arg)
{
    worker *w = arg;
    cio_future_set_result(w->quit, NULL);
}

/* ---- the main thread: runs no loop, only talks to the others */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    sem_init(&ready, 0, 0);
    sem_init(&token_home, 0, 0);
    for (int i = 0; i < NTHREADS; i++) {
        workers[i].id = i;
        pthread_create(&workers[i].thread, NULL, thread_main, &workers[i]);
    }
    for (int i = 0; i < NTHREADS; i++)
        sem_wait(&ready);

    printf("a token travels around %d loops, one per thread:\n", NTHREADS);
    cio_call_soon_threadsafe(workers[0].loop, receive_token, &workers[0]);
    sem_wait(&token_home);

    printf("the main thread asks each loop for a square:\n");
    cio_cfuture *answers[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        cio_run_coroutine_threadsafe(workers[i].loop, square_slowly,
                                     &workers[i], &answers[i]);
    for (int i = 0; i < NTHREADS; i++) {
        int r = cio_cfuture_result(answers[i], 5.0); /* blocks this thread */
        printf("  thread %d answered %d\n", i, r);
        cio_cfuture_unref(answers[i]);
    }

    for (int i = 0; i < NTHREADS; i++) {
        cio_call_soon_threadsafe(workers[i].loop, quit_loop, &workers[i]);
        pthread_join(workers[i].thread, NULL);
    }
    printf("every loop finished in its own thread\n");
    sem_destroy(&ready);
    sem_destroy(&token_home);
    return 0;
}
