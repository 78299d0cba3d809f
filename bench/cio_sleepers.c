/* sleepers: N tasks each sleeping 1 s at the same time; bytes of peak RSS
 * growth per task, and the wall time from the first spawn to the last
 * wake-up. */
#include "bench.h"
#include "cio.h"

static long pending;
static cio_future *all_done;

static int sleeper(void *arg)
{
    (void)arg;
    cio_sleep(1.0);
    if (--pending == 0)
        cio_future_set_result(all_done, NULL);
    return 0;
}

static int bench_main(void *arg)
{
    long n = *(long *)arg;
    pending = n;
    cio_future_new(NULL, &all_done);
    long before = bench_peak_rss_kib();
    double t0 = bench_now_ns();
    for (long i = 0; i < n; i++)
        if (cio_create_task(sleeper, NULL, NULL) != 0)
            return -1;
    cio_await(all_done, NULL);
    double t1 = bench_now_ns();
    long after = bench_peak_rss_kib();
    cio_future_unref(all_done);
    printf("bench sleepers cio %.0f bytes/task\n", (after - before) * 1024.0 / n);
    printf("bench sleepers_wall cio %.3f s\n", (t1 - t0) / 1e9);
    return 0;
}

int main(int argc, char **argv)
{
    long n = bench_count(argc, argv, 100000);
    return cio_run(bench_main, &n) == 0 ? 0 : 1;
}
