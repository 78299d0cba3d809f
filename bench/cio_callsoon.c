/* callsoon: a chain of N callbacks, each scheduling the next with
 * cio_call_soon; ns per callback. */
#include "bench.h"
#include "cio.h"

static long remaining;
static cio_loop *loop;

static void step(void *arg)
{
    if (--remaining > 0)
        cio_call_soon(loop, step, arg, NULL);
    else
        cio_loop_stop(loop);
}

int main(int argc, char **argv)
{
    long n = bench_count(argc, argv, 1000000);
    cio_loop_new(&loop, NULL);
    remaining = n;
    double t0 = bench_now_ns();
    cio_call_soon(loop, step, NULL, NULL);
    cio_loop_run_forever(loop);
    double t1 = bench_now_ns();
    bench_report("callsoon", (t1 - t0) / n, "ns/op");
    cio_loop_free(loop);
    return 0;
}
