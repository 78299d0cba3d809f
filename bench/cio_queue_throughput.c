/* queue_throughput: 4 producers and 4 consumers move n items through one
 * queue of maxsize 1024. Each producer puts n/4 items and each consumer
 * takes exactly n/4, as the peers do; items per second. */
#include "bench.h"
#include "cio.h"

enum { WORKERS = 4 };

static cio_queue *queue;
static long per;

static int producer(void *arg)
{
    (void)arg;
    for (long i = 0; i < per; i++)
        if (cio_queue_put(queue, &i))
            return -1;
    return 0;
}

static int consumer(void *arg)
{
    (void)arg;
    long v;
    for (long i = 0; i < per; i++)
        if (cio_queue_get(queue, &v))
            return -1;
    return 0;
}

static int bench_main(void *arg)
{
    per = *(long *)arg / WORKERS;
    if (per < 1 || cio_queue_new(&queue, sizeof(long), 1024))
        return -1;
    cio_task *tasks[2 * WORKERS];
    double t0 = bench_now_ns();
    for (int i = 0; i < 2 * WORKERS; i++)
        if (cio_create_task(i < WORKERS ? producer : consumer, NULL,
                            &tasks[i]))
            return -1;
    int err = 0;
    for (int i = 0; i < 2 * WORKERS; i++) {
        err |= cio_await(tasks[i], NULL);
        cio_future_unref(tasks[i]);
    }
    double t1 = bench_now_ns();
    int empty = cio_queue_empty(queue);
    cio_queue_free(queue);
    if (err || !empty)
        return -1;
    printf("bench queue_throughput cio %.0f items/s\n",
           per * WORKERS / ((t1 - t0) / 1e9));
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    long n = bench_count(argc, argv, 1000000);
    return cio_run(bench_main, &n) == 0 ? 0 : 1;
}
