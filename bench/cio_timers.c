/* timers: N call_later timers with delays uniform in [0, 1) s (fixed-seed
 * splitmix64, as the libuv peer), all fired; total ns per timer (the ~1 s
 * of waiting included, as for every peer) and peak RSS. */
#include "bench.h"
#include "cio.h"

#include <stdint.h>

static long fired, n;
static cio_loop *loop;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fire(void *arg)
{
    (void)arg;
    if (++fired == n)
        cio_loop_stop(loop);
}

int main(int argc, char **argv)
{
    n = bench_count(argc, argv, 1000000);
    uint64_t seed = 12345;
    cio_loop_new(&loop, NULL);
    double t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        double delay = (splitmix64(&seed) >> 11) * (1.0 / 9007199254740992.0);
        cio_call_later(loop, delay, fire, NULL, NULL);
    }
    cio_loop_run_forever(loop);
    double t1 = bench_now_ns();
    bench_report("timers", (t1 - t0) / n, "ns/timer");
    printf("bench timers_rss cio %ld KiB\n", bench_peak_rss_kib());
    cio_loop_free(loop);
    return 0;
}
