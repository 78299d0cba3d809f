/*
 * threadsafe (libuv peer): another thread posts N callbacks to the loop;
 * each is delivered on the loop thread and counted. Reports ns per
 * callback from the start of posting until the last one has run.
 *
 * libuv has no thread-safe call queue, so this builds the obvious one:
 * a mutex-protected growable array of (fn, arg) items plus uv_async_send
 * after every post (the analogue of asyncio's call_soon_threadsafe, which
 * appends to a deque and writes to its self-pipe on every call).
 * uv_async_send coalesces wake-ups, so the async callback swaps the whole
 * pending array out under the lock and runs every item in it.
 */
#include <pthread.h>
#include <uv.h>

#include "uv_common.h"

#define DEFAULT_N 1000000L

typedef void (*item_fn)(void *arg);
typedef struct {
    item_fn fn;
    void *arg;
} item_t;

typedef struct {
    item_t *v;
    size_t len, cap;
} vec_t;

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static vec_t incoming; /* filled by the poster, guarded by q_lock */
static vec_t draining; /* owned by the loop thread */
static uv_async_t wakeup;

static long target;
static long delivered;
static uint64_t t_start, t_end;

/* Thread-safe: queue fn(arg) to run on the loop thread. */
static void post(item_fn fn, void *arg)
{
    pthread_mutex_lock(&q_lock);
    if (incoming.len == incoming.cap) {
        incoming.cap = incoming.cap ? incoming.cap * 2 : 1024;
        incoming.v = realloc(incoming.v, incoming.cap * sizeof(item_t));
        if (!incoming.v) {
            perror("realloc");
            exit(1);
        }
    }
    incoming.v[incoming.len++] = (item_t){fn, arg};
    pthread_mutex_unlock(&q_lock);
    uv_async_send(&wakeup);
}

/* Loop thread: take everything queued so far and run it. */
static void on_wakeup(uv_async_t *h)
{
    (void)h;
    pthread_mutex_lock(&q_lock);
    vec_t tmp = incoming;
    incoming = draining; /* empty buffer (len 0) goes back to the poster */
    draining = tmp;
    pthread_mutex_unlock(&q_lock);

    for (size_t i = 0; i < draining.len; i++)
        draining.v[i].fn(draining.v[i].arg);
    draining.len = 0;
}

/* The posted callback: count it; the last one ends the run. */
static void count_cb(void *arg)
{
    (void)arg;
    if (++delivered == target) {
        t_end = now_ns();
        uv_close((uv_handle_t *)&wakeup, NULL); /* loop then has nothing left */
    }
}

static void *poster(void *arg)
{
    (void)arg;
    t_start = now_ns();
    for (long i = 0; i < target; i++)
        post(count_cb, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    target = arg_count(argc, argv, DEFAULT_N);
    uv_loop_t *loop = uv_default_loop();
    UV_CHECK(uv_async_init(loop, &wakeup, on_wakeup));

    pthread_t th;
    if (pthread_create(&th, NULL, poster, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);

    if (delivered != target) {
        fprintf(stderr, "threadsafe: delivered %ld of %ld\n", delivered, target);
        return 1;
    }
    printf("bench threadsafe libuv %.1f ns/op\n",
           (double)(t_end - t_start) / target);
    uv_loop_close(loop);
    free(incoming.v);
    free(draining.v);
    return 0;
}
