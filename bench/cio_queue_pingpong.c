/* queue_pingpong: two tasks pass a value back and forth through two queues
 * of maxsize 1. Each put -> get transfer is one hand-off (A->B and B->A
 * each count), as the peers count them; ns per hand-off. */
#include "bench.h"
#include "cio.h"

static cio_queue *to_b, *to_a;
static long rounds;

static int task_a(void *arg)
{
    (void)arg;
    long v = 0;
    for (long i = 0; i < rounds; i++)
        if (cio_queue_put(to_b, &v) || cio_queue_get(to_a, &v))
            return -1;
    return v == rounds ? 0 : -1;
}

static int task_b(void *arg)
{
    (void)arg;
    long v;
    for (long i = 0; i < rounds; i++) {
        if (cio_queue_get(to_b, &v))
            return -1;
        v++;
        if (cio_queue_put(to_a, &v))
            return -1;
    }
    return 0;
}

static int bench_main(void *arg)
{
    rounds = *(long *)arg / 2;
    if (rounds < 1 || cio_queue_new(&to_b, sizeof(long), 1) ||
        cio_queue_new(&to_a, sizeof(long), 1))
        return -1;
    cio_task *a, *b;
    double t0 = bench_now_ns();
    if (cio_create_task(task_a, NULL, &a) || cio_create_task(task_b, NULL, &b))
        return -1;
    int rb = cio_await(b, NULL), ra = cio_await(a, NULL);
    double t1 = bench_now_ns();
    cio_future_unref(a);
    cio_future_unref(b);
    cio_queue_free(to_a);
    cio_queue_free(to_b);
    if (ra || rb)
        return -1;
    bench_report("queue_pingpong", (t1 - t0) / (2 * rounds), "ns/op");
    return 0;
}

int main(int argc, char **argv)
{
    long n = bench_count(argc, argv, 1000000);
    return cio_run(bench_main, &n) == 0 ? 0 : 1;
}
