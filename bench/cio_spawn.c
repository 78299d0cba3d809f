/* spawn: create N trivial tasks and wait for all of them, with a counter
 * and one future (the peers' WaitGroup); ns per task. */
#include "bench.h"
#include "cio.h"

static long pending;
static cio_future *all_done;

static int trivial(void *arg)
{
    (void)arg;
    if (--pending == 0)
        cio_future_set_result(all_done, NULL);
    return 0;
}

static int bench_main(void *arg)
{
    long n = *(long *)arg;
    pending = n;
    cio_future_new(NULL, &all_done);
    double t0 = bench_now_ns();
    for (long i = 0; i < n; i++)
        if (cio_create_task(trivial, NULL, NULL) != 0)
            return -1;
    cio_await(all_done, NULL);
    double t1 = bench_now_ns();
    cio_future_unref(all_done);
    bench_report("spawn", (t1 - t0) / n, "ns/op");
    return 0;
}

int main(int argc, char **argv)
{
    long n = bench_count(argc, argv, 1000000);
    return cio_run(bench_main, &n) == 0 ? 0 : 1;
}
