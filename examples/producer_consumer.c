/* Producers and consumers over a bounded queue.
 *
 * Two producers put jobs into a queue with room for three; three consumers
 * take them, work on them and say each is done (task_done). When the queue
 * is full, a producer's put waits: that back-pressure is what a bounded
 * queue is for. Once the producers are finished, join() waits until every
 * job is done; then shutdown() tells the consumers, waiting in get() for
 * work that will never come, to stop.
 *
 * The "work" is a few turns of the loop (cio_sleep(0) yields), so that the
 * output is the same on every run; a real consumer would await I/O.
 */
#include <cio.h>

#include <stdint.h>
#include <stdio.h>

enum { PRODUCERS = 2, CONSUMERS = 3, JOBS_EACH = 4, ROOM = 3 };

typedef struct job {
    int producer;
    int number;
} job;

static cio_queue *queue; /* jobs, copied in and out by value */

static int producer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int n = 1; n <= JOBS_EACH; n++) {
        job j = {id, n};
        if (cio_queue_full(queue))
            printf("producer %d: queue full, waiting\n", id);
        int err = cio_queue_put(queue, &j); /* waits while the queue is full */
        if (err)
            return err;
        printf("producer %d: put job %d.%d\n", id, id, n);
    }
    return 0;
}

static int consumer(void *arg)
{
    int id = (int)(intptr_t)arg, done = 0;
    for (;;) {
        job j;
        int err = cio_queue_get(queue, &j); /* waits while it is empty */
        if (err == -ESHUTDOWN)
            break; /* shut down and empty: no more work will come */
        if (err)
            return err;
        printf("  consumer %d: working on job %d.%d\n", id, j.producer,
               j.number);
        for (int turn = 0; turn < j.number; turn++) /* job n takes n turns */
            cio_sleep(0);
        cio_queue_task_done(queue);
        done++;
    }
    printf("consumer %d: queue shut down, stopping after %d jobs\n", id, done);
    return 0;
}

/* Starts n tasks running fn(1) .. fn(n) and stores them in tasks. */
static int start(cio_task_fn fn, int n, cio_task **tasks)
{
    for (int i = 0; i < n; i++) {
        int err = cio_create_task(fn, (void *)(intptr_t)(i + 1), &tasks[i]);
        if (err)
            return err;
    }
    return 0;
}

static int restaurant(void *arg)
{
    (void)arg;
    cio_task *consumers[CONSUMERS], *producers[PRODUCERS];
    int err = cio_queue_new(&queue, sizeof(job), ROOM);
    if (err)
        return err;
    if ((err = start(consumer, CONSUMERS, consumers)) ||
        (err = start(producer, PRODUCERS, producers)))
        return err;

    err = cio_gather(producers, PRODUCERS, 0, NULL);
    printf("producers finished; join() waits for the last jobs\n");
    if (!err)
        err = cio_queue_join(queue);
    printf("join() returned: every job is done\n");

    cio_queue_shutdown(queue, 0);
    if (!err)
        err = cio_gather(consumers, CONSUMERS, 0, NULL);
    for (int i = 0; i < PRODUCERS; i++)
        cio_future_unref(producers[i]);
    for (int i = 0; i < CONSUMERS; i++)
        cio_future_unref(consumers[i]);
    cio_queue_free(queue);
    return err;
}

int main(void)
{
    int err = cio_run(restaurant, NULL);
    if (err)
        fprintf(stderr, "producer_consumer: %s\n", cio_strerror(err));
    return err ? 1 : 0;
}
