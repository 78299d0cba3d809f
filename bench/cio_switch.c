/* switch: two tasks hand a value back and forth through futures, a fresh
 * future per hand-off created by whoever comes first (the peers' Slot);
 * A->B and B->A each count as one hand-off; ns per hand-off. */
#include "bench.h"
#include "cio.h"

#include <stdint.h>

typedef struct slot {
    cio_future *fut;
} slot;

static slot to_a, to_b;
static long rounds;

static void slot_send(slot *s, long v)
{
    if (!s->fut)
        cio_future_new(NULL, &s->fut);
    cio_future_set_result(s->fut, (void *)(intptr_t)v);
}

static long slot_recv(slot *s)
{
    void *v;
    if (!s->fut)
        cio_future_new(NULL, &s->fut);
    cio_await(s->fut, &v);
    cio_future_unref(s->fut);
    s->fut = NULL;
    return (long)(intptr_t)v;
}

static int task_a(void *arg)
{
    (void)arg;
    long v = 0;
    for (long i = 0; i < rounds; i++) {
        slot_send(&to_b, v);
        v = slot_recv(&to_a);
    }
    return v == rounds ? 0 : -1;
}

static int task_b(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++)
        slot_send(&to_a, slot_recv(&to_b) + 1);
    return 0;
}

static int bench_main(void *arg)
{
    rounds = *(long *)arg / 2;
    cio_task *a, *b;
    double t0 = bench_now_ns();
    cio_create_task(task_a, NULL, &a);
    cio_create_task(task_b, NULL, &b);
    int rb = cio_await(b, NULL), ra = cio_await(a, NULL);
    double t1 = bench_now_ns();
    cio_future_unref(a);
    cio_future_unref(b);
    if (ra || rb)
        return -1;
    bench_report("switch", (t1 - t0) / (2 * rounds), "ns/op");
    return 0;
}

int main(int argc, char **argv)
{
    long n = bench_count(argc, argv, 1000000);
    return cio_run(bench_main, &n) == 0 ? 0 : 1;
}
