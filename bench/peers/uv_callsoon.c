/*
 * callsoon (libuv peer): a chain of N callbacks, each scheduling the next
 * one for the next loop iteration. Reports ns per callback.
 *
 * Fairness choice: libuv has no "call_soon" (one-shot deferred callback).
 * The closest equivalent is an idle handle: while it is active the loop
 * does not block in poll and runs its callback exactly once per loop
 * iteration - the same shape as an asyncio call_soon chain, where only
 * one handle is ever ready, so each callback is also one loop iteration.
 * To model the "schedule the next" cost too, each callback explicitly
 * re-arms the chain (uv_idle_stop + uv_idle_start) instead of leaving the
 * handle running.
 */
#include <uv.h>

#include "uv_common.h"

#define DEFAULT_N 1000000L

static long target;
static long count;

static void on_idle(uv_idle_t *h)
{
    /* This invocation is done; re-arm for the next link unless finished. */
    uv_idle_stop(h);
    if (++count < target)
        uv_idle_start(h, on_idle);
    /* When stopped, the loop has no active handles left and uv_run returns. */
}

int main(int argc, char **argv)
{
    target = arg_count(argc, argv, DEFAULT_N);
    uv_loop_t *loop = uv_default_loop();
    uv_idle_t idle;
    UV_CHECK(uv_idle_init(loop, &idle));

    uint64_t t0 = now_ns();
    UV_CHECK(uv_idle_start(&idle, on_idle));
    uv_run(loop, UV_RUN_DEFAULT);
    uint64_t t1 = now_ns();

    if (count != target) {
        fprintf(stderr, "callsoon: ran %ld of %ld\n", count, target);
        return 1;
    }
    printf("bench callsoon libuv %.1f ns/op\n", (double)(t1 - t0) / target);
    uv_close((uv_handle_t *)&idle, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
