/* threadsafe: another thread posts N callbacks with
 * cio_call_soon_threadsafe; each is delivered and counted; ns per callback
 * from the first post to the last delivery. */
#include "bench.h"
#include "cio.h"

#include <pthread.h>

static long delivered, n;
static cio_loop *loop;

static void deliver(void *arg)
{
    (void)arg;
    if (++delivered == n)
        cio_loop_stop(loop);
}

static void *poster(void *arg)
{
    (void)arg;
    for (long i = 0; i < n; i++)
        while (cio_call_soon_threadsafe(loop, deliver, NULL) != 0)
            ;
    return NULL;
}

int main(int argc, char **argv)
{
    n = bench_count(argc, argv, 1000000);
    cio_loop_new(&loop, NULL);
    pthread_t th;
    double t0 = bench_now_ns();
    pthread_create(&th, NULL, poster, NULL);
    cio_loop_run_forever(loop);
    double t1 = bench_now_ns();
    pthread_join(th, NULL);
    bench_report("threadsafe", (t1 - t0) / n, "ns/op");
    cio_loop_free(loop);
    return 0;
}
