/* Threads (issue 5), the half beyond the pool: run_coroutine_threadsafe
 * (a task submitted to a loop in another thread, its result, its
 * cancellation, a loop that closes first) and a loop per thread, with
 * real threads. test_executor.c tests the thread-pool executor.
 *
 * Every test waits for the threads it starts before it returns, so the
 * harness's leak check sees everything freed. Nothing here asserts
 * timing: every wait has a generous cap. Every test name holds "executor"
 * so that `make check T=executor` runs them all. */
#define _GNU_SOURCE
#include "util.h"

#include <math.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------ run_coroutine_threadsafe */

/* A loop served by a thread of its own until told to stop. */
typedef struct loop_thread {
    pthread_t th;
    _Atomic(cio_loop *) loop;
    atomic_int stop;
    int status;
} loop_thread;

static int serve_main(void *arg)
{
    loop_thread *lt = arg;
    atomic_store(&lt->loop, cio_get_running_loop());
    while (!atomic_load(&lt->stop))
        CHECK_ERR(cio_sleep(0.002), 0);
    return 0;
}

static void *serve_loop_thread(void *arg)
{
    loop_thread *lt = arg;
    lt->status = cio_run(serve_main, lt);
    return NULL;
}

static cio_loop *loop_thread_start(loop_thread *lt)
{
    memset(lt, 0, sizeof *lt);
    CHECK_EQ(pthread_create(&lt->th, NULL, serve_loop_thread, lt), 0);
    WAIT_UNTIL(atomic_load(&lt->loop) != NULL);
    return atomic_load(&lt->loop);
}

static void loop_thread_stop(loop_thread *lt)
{
    atomic_store(&lt->stop, 1);
    CHECK_EQ(pthread_join(lt->th, NULL), 0);
    CHECK_EQ(lt->status, 0);
}

typedef struct coro_probe {
    cio_loop *loop;        /* where it must run */
    pthread_t thread;
    atomic_int started;
    atomic_int go;         /* coro_value returns once set */
    atomic_int sleep_ret;  /* coro_sleep_long: what its sleep returned */
    int value;
} coro_probe;

static int coro_value(void *arg)
{
    coro_probe *p = arg;
    CHECK(cio_get_running_loop() == p->loop);
    CHECK(pthread_equal(pthread_self(), p->thread));
    cio_task *me = cio_current_task();
    CHECK(me != NULL);
    atomic_store(&p->started, 1);
    while (!atomic_load(&p->go)) {
        int err = cio_sleep(0.001);
        if (err)
            return err;
    }
    CHECK(cio_current_task() == me);
    return p->value;
}

static int coro_sleep_long(void *arg)
{
    coro_probe *p = arg;
    atomic_store(&p->started, 1);
    int r = cio_sleep(100);
    atomic_store(&p->sleep_ret, r);
    return r;
}

TEST_T(executor_run_coroutine_threadsafe, 30)
{
    loop_thread lt;
    cio_loop *loop = loop_thread_start(&lt);
    cio_cfuture *cf = IARG(1);

    /* A result, waited for with a timeout. */
    coro_probe p = {.loop = loop, .thread = lt.th, .value = 5, .go = 1};
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_value, &p, &cf), 0);
    CHECK(cf != NULL);
    CHECK_EQ(cio_cfuture_result(cf, 20), 5);
    CHECK_EQ(cio_cfuture_done(cf), 1);
    CHECK_EQ(cio_cfuture_cancelled(cf), 0);
    CHECK_EQ(cio_cfuture_cancel(cf), 0);
    CHECK_EQ(cio_cfuture_result(cf, 0), 5);
    cio_cfuture_unref(cf);

    /* The timeout expires while it is pending; it is still pending. */
    coro_probe q = {.loop = loop, .thread = lt.th, .value = 6};
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_value, &q, &cf), 0);
    CHECK_ERR(cio_cfuture_result(cf, 0.02), -ETIMEDOUT);
    CHECK_ERR(cio_cfuture_result(cf, 0), -ETIMEDOUT);
    /* The duration rule: negative is expired too (it waited forever). */
    CHECK_ERR(cio_cfuture_result(cf, -1), -ETIMEDOUT);
    CHECK_ERR(cio_cfuture_result(cf, -INFINITY), -ETIMEDOUT);
    CHECK_ERR(cio_cfuture_result(cf, NAN), -EINVAL);
    CHECK_EQ(cio_cfuture_done(cf), 0);
    atomic_store(&q.go, 1);
    CHECK_EQ(cio_cfuture_result(cf, 20), 6);
    cio_cfuture_unref(cf);

    /* An error. */
    coro_probe e = {.loop = loop, .thread = lt.th, .value = -EIO, .go = 1};
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_value, &e, &cf), 0);
    CHECK_ERR(cio_cfuture_result(cf, CIO_NO_TIMEOUT), -EIO);
    CHECK_EQ(cio_cfuture_cancelled(cf), 0);
    cio_cfuture_unref(cf);

    /* Cancelled from here: the task on the loop is cancelled. */
    coro_probe c = {.sleep_ret = 1};
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_sleep_long, &c, &cf), 0);
    WAIT_UNTIL(atomic_load(&c.started));
    CHECK_EQ(cio_cfuture_cancel(cf), 1);
    CHECK_EQ(cio_cfuture_cancelled(cf), 1);
    CHECK_ERR(cio_cfuture_result(cf, 0), -ECANCELED);
    CHECK_ERR(cio_cfuture_result(cf, CIO_NO_TIMEOUT), -ECANCELED);
    WAIT_UNTIL(atomic_load(&c.sleep_ret) != 1);
    CHECK_ERR(atomic_load(&c.sleep_ret), -ECANCELED);
    CHECK_EQ(cio_cfuture_cancel(cf), 0);
    cio_cfuture_unref(cf);

    /* Dropping the handle early is fine: the task still runs. */
    coro_probe d = {.loop = loop, .thread = lt.th, .value = 1, .go = 1};
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_value, &d, &cf), 0);
    cio_cfuture_unref(cf);
    WAIT_UNTIL(atomic_load(&d.started));

    CHECK_ERR(cio_run_coroutine_threadsafe(NULL, coro_value, &p, &cf),
              -EINVAL);
    CHECK(cf == NULL);
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, NULL, &p, &cf), -EINVAL);
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_value, &p, NULL),
              -EINVAL);
    loop_thread_stop(&lt);
}

static int coro_mark(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

TEST(executor_run_coroutine_threadsafe_not_started)
{
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    atomic_int ran = 0;
    cio_cfuture *cf, *cf2, *cf3 = IARG(1);

    /* Cancelled before its loop took it: it never runs. */
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_mark, &ran, &cf), 0);
    CHECK_EQ(cio_cfuture_cancel(cf), 1);
    CHECK_ERR(cio_cfuture_result(cf, 0), -ECANCELED);
    for (int i = 0; i < 3; i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(atomic_load(&ran), 0);

    /* Taken by the loop: it runs. */
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_mark, &ran, &cf2), 0);
    for (int i = 0; i < 5 && !cio_cfuture_done(cf2); i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(cio_cfuture_result(cf2, 0), 0);
    CHECK_EQ(atomic_load(&ran), 1);
    cio_cfuture_unref(cf2);

    /* Posted, and the loop closes first: cancelled, never runs. */
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_mark, &ran, &cf2), 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_EQ(cio_cfuture_cancelled(cf2), 1);
    CHECK_ERR(cio_cfuture_result(cf2, CIO_NO_TIMEOUT), -ECANCELED);
    CHECK_EQ(atomic_load(&ran), 1);

    /* A closed loop refuses. */
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_mark, &ran, &cf3),
              -ESHUTDOWN);
    CHECK(cf3 == NULL);
    cio_loop_free(loop);
    cio_cfuture_unref(cf);
    cio_cfuture_unref(cf2);
}

static void quiet_handler(cio_loop *loop, const cio_error_context *ctx,
                          void *arg)
{
    (void)loop;
    (void)ctx;
    (*(int *)arg)++;
}

/* Started, and the loop closes under the task: the handle is cancelled. */
TEST(executor_run_coroutine_threadsafe_loop_closes)
{
    long allocs = cio__alloc_live();
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    int reports = 0;
    CHECK_ERR(cio_loop_set_exception_handler(loop, quiet_handler, &reports),
              0);
    coro_probe c = {.sleep_ret = 1};
    cio_cfuture *cf;
    CHECK_ERR(cio_run_coroutine_threadsafe(loop, coro_sleep_long, &c, &cf), 0);
    for (int i = 0; i < 5 && !atomic_load(&c.started); i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(atomic_load(&c.started), 1);
    CHECK_EQ(cio_cfuture_done(cf), 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_EQ(reports, 1); /* "Task was destroyed but it is pending!" */
    CHECK_ERR(cio_cfuture_result(cf, CIO_NO_TIMEOUT), -ECANCELED);
    CHECK_EQ(cio_cfuture_cancelled(cf), 1);
    CHECK_EQ(cio_cfuture_cancel(cf), 0);
    cio_cfuture_unref(cf);
    cio_loop_free(loop);
    CHECK_EQ(cio__alloc_live(), allocs);
}

/* ------------------------------------------------------- a loop per thread */

enum { NLOOPS = 4 };
static _Atomic(cio_loop *) LOOPS[NLOOPS];
static pthread_barrier_t LOOPS_UP;
static atomic_int LOOPS_FINISHED;

typedef struct per_loop {
    int i;
    pthread_t th;
    int status;
} per_loop;

/* Sent to loop j from another thread. */
static int probe_loop(void *arg)
{
    int j = (int)(intptr_t)arg;
    CHECK(cio_get_running_loop() == atomic_load(&LOOPS[j]));
    cio_task *me = cio_current_task();
    CHECK(me != NULL);
    CHECK_ERR(cio_sleep(0.001), 0);
    CHECK(cio_get_running_loop() == atomic_load(&LOOPS[j]));
    CHECK(cio_current_task() == me);
    return 100 + j;
}

static int wait_cfuture(void *arg) { return cio_cfuture_result(arg, 20); }

static int own_child(void *arg)
{
    cio_loop *loop = arg;
    cio_task *me = cio_current_task();
    for (int k = 0; k < 3; k++) {
        CHECK_ERR(cio_sleep(0.001), 0);
        CHECK(cio_current_task() == me);
        CHECK(cio_get_running_loop() == loop);
    }
    return 0;
}

static int per_loop_main(void *arg)
{
    per_loop *pl = arg;
    cio_loop *loop = cio_get_running_loop();
    cio_task *me = cio_current_task();
    CHECK(loop != NULL && me != NULL);
    atomic_store(&LOOPS[pl->i], loop);
    /* Every loop is up before any crosses to another. */
    pthread_barrier_wait(&LOOPS_UP);
    for (int j = 0; j < NLOOPS; j++)
        CHECK(j == pl->i || atomic_load(&LOOPS[j]) != loop);

    cio_task *kids[3];
    for (int k = 0; k < 3; k++)
        CHECK_ERR(cio_create_task(own_child, loop, &kids[k]), 0);
    for (int k = 0; k < 3; k++) {
        CHECK(cio_task_get_name(kids[k]) != NULL);
        CHECK_EQ(cio_await(kids[k], NULL), 0);
        cio_future_unref(kids[k]);
    }
    CHECK(cio_current_task() == me);

    /* A coroutine on the next thread's loop, awaited through a worker. */
    int next = (pl->i + 1) % NLOOPS;
    cio_cfuture *cf;
    CHECK_ERR(cio_run_coroutine_threadsafe(atomic_load(&LOOPS[next]),
                                           probe_loop, IARG(next), &cf),
              0);
    CHECK_EQ(cio_to_thread(wait_cfuture, cf), 100 + next);
    cio_cfuture_unref(cf);
    CHECK(cio_current_task() == me);
    CHECK(cio_get_running_loop() == loop);

    /* Stay up until every other thread's coroutine has been served. */
    atomic_fetch_add(&LOOPS_FINISHED, 1);
    TASK_WAIT_UNTIL(atomic_load(&LOOPS_FINISHED) == NLOOPS);
    return pl->i;
}

static void *per_loop_thread(void *arg)
{
    per_loop *pl = arg;
    CHECK(cio_get_running_loop() == NULL);
    CHECK(cio_current_task() == NULL);
    pl->status = cio_run(per_loop_main, pl);
    CHECK(cio_get_running_loop() == NULL);
    return NULL;
}

TEST_T(executor_loop_per_thread, 60)
{
    int base = thread_base();
    per_loop pl[NLOOPS];
    CHECK_EQ(pthread_barrier_init(&LOOPS_UP, NULL, NLOOPS), 0);
    for (int i = 0; i < NLOOPS; i++) {
        pl[i] = (per_loop){.i = i, .status = -1};
        CHECK_EQ(pthread_create(&pl[i].th, NULL, per_loop_thread, &pl[i]), 0);
    }
    for (int i = 0; i < NLOOPS; i++) {
        CHECK_EQ(pthread_join(pl[i].th, NULL), 0);
        CHECK_EQ(pl[i].status, i);
    }
    CHECK(cio_get_running_loop() == NULL);
    pthread_barrier_destroy(&LOOPS_UP);
    WAIT_UNTIL(thread_count() == base);
}
