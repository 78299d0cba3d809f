/*
 * timers (libuv peer): N timers, each with a random delay uniform in
 * [0, 1) s from a fixed seed, all started up front and all fired.
 * Reports total wall time (start of scheduling until the last timer fires)
 * divided by N, and the peak RSS of the process.
 *
 * One malloc'd array of uv_timer_t, one timer per entry. libuv timers have
 * millisecond resolution, so delays are drawn as integers in [0, 1000) ms.
 */
#include <uv.h>

#include "uv_common.h"

#define DEFAULT_N 1000000L
#define SEED 0x5eed1234abcdULL

static long target;
static long fired;

/* splitmix64: tiny deterministic PRNG, so every run uses the same delays. */
static uint64_t rng_state = SEED;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
    fired++; /* one-shot (repeat 0): the timer stops itself after this */
}

int main(int argc, char **argv)
{
    target = arg_count(argc, argv, DEFAULT_N);
    uv_loop_t *loop = uv_default_loop();
    uv_timer_t *timers = malloc(sizeof(*timers) * (size_t)target);
    if (!timers) {
        perror("malloc");
        return 1;
    }

    uint64_t t0 = now_ns();
    uv_update_time(loop); /* delays are relative to "now", not loop start */
    for (long i = 0; i < target; i++) {
        uint64_t delay_ms = rng_next() % 1000; /* uniform in [0, 1000) ms */
        UV_CHECK(uv_timer_init(loop, &timers[i]));
        UV_CHECK(uv_timer_start(&timers[i], on_timer, delay_ms, 0));
    }
    uv_run(loop, UV_RUN_DEFAULT); /* returns when no timer is left active */
    uint64_t t1 = now_ns();

    if (fired != target) {
        fprintf(stderr, "timers: fired %ld of %ld\n", fired, target);
        return 1;
    }
    printf("bench timers libuv %.1f ns/timer\n", (double)(t1 - t0) / target);
    printf("bench timers_rss libuv %ld KiB\n", peak_rss_kib());

    /* Closing 1M handles is cleanup, deliberately outside the measurement. */
    for (long i = 0; i < target; i++)
        uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    free(timers);
    return 0;
}
