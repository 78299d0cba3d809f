/* Threads (issue 5): the thread-pool executor, run_in_executor, to_thread,
 * run_coroutine_threadsafe and a loop per thread, with real threads.
 *
 * Every test waits for the work its threads do before it returns (a gate
 * the work passes, cio_executor_free, cio_run's executor shutdown, or the
 * thread count falling back), so the harness's leak check sees everything
 * freed. Nothing here asserts timing: sleeps only give threads a chance to
 * get somewhere, and every wait has a generous cap. Every test name holds
 * "executor" so that `make check T=executor` runs them all. */
#define _GNU_SOURCE
#include "util.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

/* A joined thread can stay listed in /proc/self/task for a moment after
 * pthread_join returns: the kernel clears its tid (which ends the join)
 * before it releases the task. So a count taken after joins waits for
 * the kernel, with WAIT_UNTIL's bound; a thread never joined still fails
 * it. */
#define THREADS_BACK_TO(base) WAIT_UNTIL(thread_count() == (base))

/* Work that returns its argument. */
static int return_arg(void *arg) { return (int)(intptr_t)arg; }

/* Work that counts its runs in *arg. */
static int mark_ran(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

/* Work that blocks until released: lets a test hold a worker busy. */
typedef struct gate {
    atomic_int started;  /* fn entered */
    atomic_int release;  /* fn may return */
    atomic_int finished; /* fn is returning */
    int value;           /* what fn returns */
} gate;

static int gated(void *arg)
{
    gate *g = arg;
    atomic_fetch_add(&g->started, 1);
    while (!atomic_load(&g->release))
        nap(0.001);
    atomic_fetch_add(&g->finished, 1);
    return g->value;
}

static void noop(void *arg) { (void)arg; }

/* ------------------------------------------------- run_in_executor basics */

typedef struct where {
    pthread_t loop_thread, worker, callback;
    int callback_ran;
} where;

static int record_worker(void *arg)
{
    where *w = arg;
    w->worker = pthread_self();
    return 42;
}

static void record_callback(cio_future *f, void *arg)
{
    where *w = arg;
    CHECK_EQ(cio_future_done(f), 1);
    CHECK_EQ(cio_future_result(f, NULL), 42);
    w->callback = pthread_self();
    w->callback_ran++;
}

static int result_main(void *arg)
{
    where *w = arg;
    w->loop_thread = pthread_self();
    cio_loop *loop = cio_get_running_loop();
    cio_future *f = NULL;
    CHECK_ERR(cio_run_in_executor(loop, NULL, record_worker, w, &f), 0);
    CHECK(f != NULL);
    CHECK(cio_future_get_loop(f) == loop);
    /* The result comes through the loop: it cannot be there yet. */
    CHECK_EQ(cio_future_done(f), 0);
    CHECK_ERR(cio_future_add_done_callback(f, record_callback, w), 0);
    void *value = IARG(1);
    CHECK_EQ(cio_await(f, &value), 42);
    CHECK(value == NULL);
    CHECK_EQ(cio_future_result(f, NULL), 42);
    for (int i = 0; i < 10 && !w->callback_ran; i++)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_EQ(w->callback_ran, 1);
    cio_future_unref(f);

    /* NULL loop: the running one. */
    CHECK_ERR(cio_run_in_executor(NULL, NULL, return_arg, IARG(17), &f), 0);
    CHECK(cio_future_get_loop(f) == loop);
    CHECK_EQ(cio_await(f, NULL), 17);
    cio_future_unref(f);
    return 0;
}

TEST(executor_result_on_loop_thread)
{
    where w = {0};
    CHECK_EQ(cio_run(result_main, &w), 0);
    CHECK(!pthread_equal(w.worker, w.loop_thread));
    CHECK(pthread_equal(w.callback, w.loop_thread));
    CHECK(pthread_equal(w.loop_thread, pthread_self()));
}

static int errors_main(void *arg)
{
    (void)arg;
    cio_future *f;
    CHECK_ERR(cio_run_in_executor(NULL, NULL, return_arg, IARG(-EIO), &f), 0);
    CHECK_ERR(cio_await(f, NULL), -EIO);
    CHECK_ERR(cio_future_result(f, NULL), -EIO);
    CHECK_EQ(cio_future_cancelled(f), 0);
    cio_future_unref(f);

    CHECK_ERR(cio_run_in_executor(NULL, NULL, return_arg, IARG(CIO_EBROKEN),
                                  &f),
              0);
    CHECK_ERR(cio_await(f, NULL), CIO_EBROKEN);
    cio_future_unref(f);

    /* fn saying -ECANCELED cancels the future, not the awaiting task. */
    CHECK_ERR(cio_run_in_executor(NULL, NULL, return_arg, IARG(-ECANCELED),
                                  &f),
              0);
    CHECK_ERR(cio_await(f, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(f), 1);
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 0);
    CHECK_ERR(cio_sleep(0), 0);
    cio_future_unref(f);

    /* An error nobody awaits still reaches the future. */
    CHECK_ERR(cio_run_in_executor(NULL, NULL, return_arg, IARG(-ENOENT), &f),
              0);
    TASK_WAIT_UNTIL(cio_future_done(f));
    CHECK_ERR(cio_future_result(f, NULL), -ENOENT);
    cio_future_unref(f);

    CHECK_ERR(cio_to_thread(return_arg, IARG(-EPIPE)), -EPIPE);
    return 0;
}

TEST(executor_errors_reach_the_task)
{
    CHECK_EQ(cio_run(errors_main, NULL), 0);
}

/* ---------------------------------------------------------------- to_thread */

static gate TG;

static int to_thread_child(void *arg)
{
    (void)arg;
    return cio_to_thread(gated, &TG);
}

static int to_thread_main(void *arg)
{
    where *w = arg;
    w->loop_thread = pthread_self();
    /* Two tasks in to_thread at once: both run while the loop goes on.
     * (First, while no worker idles: see executor_burst_after_idle.) */
    TG.value = 6;
    cio_task *a, *b;
    CHECK_ERR(cio_create_task(to_thread_child, NULL, &a), 0);
    CHECK_ERR(cio_create_task(to_thread_child, NULL, &b), 0);
    TASK_WAIT_UNTIL(atomic_load(&TG.started) == 2);
    CHECK_EQ(cio_future_done(a), 0);
    atomic_store(&TG.release, 1);
    CHECK_EQ(cio_await(a, NULL), 6);
    CHECK_EQ(cio_await(b, NULL), 6);
    cio_future_unref(a);
    cio_future_unref(b);

    CHECK_EQ(cio_to_thread(record_worker, w), 42);
    CHECK(!pthread_equal(w->worker, w->loop_thread));
    CHECK_ERR(cio_to_thread(NULL, NULL), -EINVAL);
    return 0;
}

TEST(executor_to_thread)
{
    where w = {0};
    CHECK_EQ(cio_run(to_thread_main, &w), 0);
    CHECK_EQ(atomic_load(&TG.finished), 2);
}

static void to_thread_in_callback(void *arg)
{
    *(int *)arg = cio_to_thread(return_arg, IARG(1));
}

TEST(executor_to_thread_outside_task)
{
    int base = thread_base();
    CHECK_ERR(cio_to_thread(return_arg, IARG(1)), CIO_ENOTASK);

    /* A callback on a running loop is not a task either. */
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    int r = 1;
    CHECK_ERR(cio_call_soon(loop, to_thread_in_callback, &r, NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_ERR(r, CIO_ENOTASK);

    /* run_in_executor's own argument checks. */
    cio_future *f = IARG(1);
    CHECK_ERR(cio_run_in_executor(NULL, NULL, return_arg, NULL, &f), -EINVAL);
    CHECK(f == NULL);
    CHECK_ERR(cio_run_in_executor(loop, NULL, NULL, NULL, &f), -EINVAL);
    CHECK_ERR(cio_run_in_executor(loop, NULL, return_arg, NULL, NULL),
              -EINVAL);
    /* None of that started a thread. */
    CHECK_EQ(thread_count(), base);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_ERR(cio_run_in_executor(loop, NULL, return_arg, NULL, &f),
              -ESHUTDOWN);
    CHECK(f == NULL);
    cio_loop_free(loop);
}

/* ---------------------------------------------------------- many in flight */

static struct {
    long n;
    atomic_int *ran;
    int *delivered;
    pthread_t loop_thread;
} M;

static int many_fn(void *arg)
{
    long i = (long)(intptr_t)arg;
    atomic_fetch_add(&M.ran[i], 1);
    return (int)i;
}

static void many_done(cio_future *f, void *arg)
{
    long i = (long)(intptr_t)arg;
    CHECK(pthread_equal(pthread_self(), M.loop_thread));
    CHECK_EQ(cio_future_result(f, NULL), i);
    M.delivered[i]++;
}

static int many_main(void *arg)
{
    (void)arg;
    long n = M.n;
    M.loop_thread = pthread_self();
    cio_future **futs = calloc((size_t)n, sizeof *futs);
    cio_result *res = calloc((size_t)n, sizeof *res);
    CHECK(futs && res);
    /* All submitted before any is awaited: all in flight at once. */
    for (long i = 0; i < n; i++) {
        CHECK_ERR(cio_run_in_executor(NULL, NULL, many_fn, IARG(i), &futs[i]),
                  0);
        CHECK_ERR(cio_future_add_done_callback(futs[i], many_done, IARG(i)),
                  0);
    }
    CHECK_ERR(cio_gather(futs, (size_t)n, 0, res), 0);
    for (long i = 0; i < n; i++)
        CHECK_EQ(res[i].status, i);
    for (int k = 0; k < 5; k++)
        CHECK_ERR(cio_sleep(0), 0);
    for (long i = 0; i < n; i++) {
        CHECK_EQ(atomic_load(&M.ran[i]), 1);
        CHECK_EQ(M.delivered[i], 1);
        cio_future_unref(futs[i]);
    }
    free(futs);
    free(res);
    return 0;
}

TEST_T(executor_10000_in_flight, 60)
{
    M.n = test_scaled(10000);
    M.ran = calloc((size_t)M.n, sizeof *M.ran);
    M.delivered = calloc((size_t)M.n, sizeof *M.delivered);
    CHECK(M.ran && M.delivered);
    CHECK_EQ(cio_run(many_main, NULL), 0);
    /* Nothing more arrived after cio_run shut the executor down. */
    for (long i = 0; i < M.n; i++) {
        CHECK_EQ(atomic_load(&M.ran[i]), 1);
        CHECK_EQ(M.delivered[i], 1);
    }
    free(M.ran);
    free(M.delivered);
}

/* ----------------------------------------------------------- cancellation */

static gate CR1, CR2;

static int cancel_running_main(void *arg)
{
    (void)arg;
    /* Cancelled while fn runs: the thread goes on, its result is dropped. */
    cio_future *f;
    CR1.value = 5;
    CHECK_ERR(cio_run_in_executor(NULL, NULL, gated, &CR1, &f), 0);
    TASK_WAIT_UNTIL(atomic_load(&CR1.started) == 1);
    CHECK_EQ(cio_future_cancel(f), 1);
    CHECK_ERR(cio_await(f, NULL), -ECANCELED);
    atomic_store(&CR1.release, 1);
    TASK_WAIT_UNTIL(atomic_load(&CR1.finished) == 1);
    for (int i = 0; i < 20; i++)
        CHECK_ERR(cio_sleep(0.001), 0);
    CHECK_EQ(cio_future_cancelled(f), 1);
    CHECK_ERR(cio_future_result(f, NULL), -ECANCELED);
    cio_future_unref(f);

    /* The same with nobody holding the future any more, on an executor
     * whose worker is joined before the loop delivers the result. */
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    CR2.value = 8;
    CHECK_ERR(cio_run_in_executor(NULL, ex, gated, &CR2, &f), 0);
    TASK_WAIT_UNTIL(atomic_load(&CR2.started) == 1);
    CHECK_EQ(cio_future_cancel(f), 1);
    cio_future_unref(f);
    CHECK_ERR(cio_sleep(0), 0);
    atomic_store(&CR2.release, 1);
    cio_executor_free(ex); /* waits for the worker: the result is posted */
    for (int i = 0; i < 5; i++)
        CHECK_ERR(cio_sleep(0), 0);
    return 0;
}

TEST(executor_cancel_running_work)
{
    CHECK_EQ(cio_run(cancel_running_main, NULL), 0);
    CHECK_EQ(atomic_load(&CR1.finished), 1);
    CHECK_EQ(atomic_load(&CR2.finished), 1);
}

static gate CQ;
static atomic_int CQ_ran;

static int cancel_queued_main(void *arg)
{
    (void)arg;
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    cio_future *a, *b, *c;
    CQ.value = 1;
    CHECK_ERR(cio_run_in_executor(NULL, ex, gated, &CQ, &a), 0);
    TASK_WAIT_UNTIL(atomic_load(&CQ.started) == 1);
    /* The only worker is busy: b and c wait in the queue. */
    CHECK_ERR(cio_run_in_executor(NULL, ex, mark_ran, &CQ_ran, &b), 0);
    CHECK_ERR(cio_run_in_executor(NULL, ex, return_arg, IARG(3), &c), 0);
    CHECK_EQ(cio_future_cancel(b), 1);
    CHECK_ERR(cio_await(b, NULL), -ECANCELED);
    /* The cancellation reaches the executor through a done callback. */
    for (int i = 0; i < 3; i++)
        CHECK_ERR(cio_sleep(0), 0);
    atomic_store(&CQ.release, 1);
    CHECK_EQ(cio_await(a, NULL), 1);
    CHECK_EQ(cio_await(c, NULL), 3);
    cio_executor_free(ex); /* joined: b can never run now */
    CHECK_EQ(atomic_load(&CQ_ran), 0);
    for (int i = 0; i < 3; i++)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_EQ(cio_future_cancelled(b), 1);
    cio_future_unref(a);
    cio_future_unref(b);
    cio_future_unref(c);
    return 0;
}

TEST(executor_cancel_queued_work)
{
    CHECK_EQ(cio_run(cancel_queued_main, NULL), 0);
    CHECK_EQ(atomic_load(&CQ_ran), 0);
}

/* --------------------------------------------------------------- shutdown */

TEST(executor_shutdown_cancel_futures)
{
    int base = thread_base();
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    gate g = {.value = 3};
    atomic_int ran = 0;
    cio_cfuture *a, *b, *c, *d = IARG(1);
    CHECK_ERR(cio_executor_submit(ex, gated, &g, &a), 0);
    WAIT_UNTIL(atomic_load(&g.started) == 1);
    CHECK_ERR(cio_executor_submit(ex, mark_ran, &ran, &b), 0);
    CHECK_ERR(cio_executor_submit(ex, mark_ran, &ran, &c), 0);
    CHECK_EQ(cio_cfuture_cancel(a), 0); /* running: cannot be stopped */
    CHECK_EQ(cio_cfuture_done(b), 0);

    CHECK_ERR(cio_executor_shutdown(ex, 0, 1), 0);
    CHECK_EQ(cio_cfuture_cancelled(b), 1);
    CHECK_EQ(cio_cfuture_done(c), 1);
    CHECK_ERR(cio_cfuture_result(b, 0), -ECANCELED);
    CHECK_ERR(cio_cfuture_result(c, CIO_NO_TIMEOUT), -ECANCELED);
    CHECK_EQ(cio_cfuture_cancel(c), 0);
    /* The running one goes on. */
    CHECK_EQ(cio_cfuture_done(a), 0);
    CHECK_ERR(cio_cfuture_result(a, 0), -ETIMEDOUT);
    CHECK_ERR(cio_executor_submit(ex, mark_ran, &ran, &d), -ESHUTDOWN);
    CHECK(d == NULL);

    atomic_store(&g.release, 1);
    CHECK_EQ(cio_cfuture_result(a, CIO_NO_TIMEOUT), 3);
    CHECK_EQ(cio_cfuture_cancelled(a), 0);
    CHECK_ERR(cio_executor_shutdown(ex, 1, 1), 0); /* again: waits */
    WAIT_UNTIL(thread_count() == base);
    CHECK_EQ(atomic_load(&ran), 0);
    cio_cfuture_unref(a);
    cio_cfuture_unref(b);
    cio_cfuture_unref(c);
    cio_executor_free(ex);
}

static void *release_later(void *arg)
{
    nap(0.05);
    atomic_store(&((gate *)arg)->release, 1);
    return NULL;
}

TEST(executor_shutdown_runs_queued_work)
{
    int base = thread_base();
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    gate g = {.value = 4};
    atomic_int ran = 0;
    cio_cfuture *a, *b, *c, *d = IARG(1);
    CHECK_ERR(cio_executor_submit(ex, gated, &g, &a), 0);
    WAIT_UNTIL(atomic_load(&g.started) == 1);
    CHECK_ERR(cio_executor_submit(ex, mark_ran, &ran, &b), 0);
    CHECK_ERR(cio_executor_submit(ex, return_arg, IARG(12), &c), 0);
    CHECK_ERR(cio_executor_shutdown(ex, 0, 0), 0);
    CHECK_EQ(cio_cfuture_done(b), 0);
    CHECK_EQ(cio_cfuture_cancelled(c), 0);
    CHECK_ERR(cio_executor_submit(ex, mark_ran, &ran, &d), -ESHUTDOWN);
    CHECK(d == NULL);
    CHECK_ERR(cio_executor_submit(ex, mark_ran, &ran, NULL), -ESHUTDOWN);

    /* shutdown(wait) returns once the queue has been worked through. */
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, release_later, &g), 0);
    CHECK_ERR(cio_executor_shutdown(ex, 1, 0), 0);
    CHECK_EQ(atomic_load(&ran), 1);
    CHECK_EQ(cio_cfuture_done(c), 1);
    CHECK_EQ(cio_cfuture_result(a, 0), 4);
    CHECK_EQ(cio_cfuture_result(b, 0), 0);
    CHECK_EQ(cio_cfuture_result(c, 0), 12);
    CHECK_EQ(pthread_join(th, NULL), 0);
    WAIT_UNTIL(thread_count() == base);
    cio_cfuture_unref(a);
    cio_cfuture_unref(b);
    cio_cfuture_unref(c);
    cio_executor_free(ex);
}

static int shut_executor_main(void *arg)
{
    cio_executor *ex = arg;
    cio_future *f = IARG(1);
    CHECK_ERR(cio_run_in_executor(NULL, ex, return_arg, NULL, &f), -ESHUTDOWN);
    CHECK(f == NULL);
    /* As the loop's default executor, it refuses the same way. */
    CHECK_ERR(cio_loop_set_default_executor(cio_get_running_loop(), ex), 0);
    CHECK_ERR(cio_run_in_executor(NULL, NULL, return_arg, NULL, &f),
              -ESHUTDOWN);
    CHECK_ERR(cio_to_thread(return_arg, NULL), -ESHUTDOWN);
    return 0;
}

TEST(executor_submit_after_shutdown)
{
    int base = thread_base();
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 2), 0);
    CHECK_ERR(cio_executor_shutdown(ex, 1, 0), 0);
    cio_cfuture *cf = IARG(1);
    CHECK_ERR(cio_executor_submit(ex, return_arg, NULL, &cf), -ESHUTDOWN);
    CHECK(cf == NULL);
    /* The loop takes ex over (and frees it) in cio_run. */
    CHECK_EQ(cio_run(shut_executor_main, ex), 0);
    THREADS_BACK_TO(base);

    /* Argument checks. */
    CHECK_ERR(cio_executor_new(NULL, 1), -EINVAL);
    CHECK_ERR(cio_executor_submit(NULL, return_arg, NULL, &cf), -EINVAL);
    CHECK(cf == NULL);
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    CHECK_ERR(cio_executor_submit(ex, NULL, NULL, &cf), -EINVAL);
    CHECK_ERR(cio_executor_shutdown(NULL, 1, 1), -EINVAL);
    cio_executor_free(ex);
    cio_executor_free(NULL);
    CHECK_ERR(cio_cfuture_result(NULL, 0), -EINVAL);
    CHECK_ERR(cio_cfuture_cancel(NULL), -EINVAL);
    CHECK_EQ(cio_cfuture_done(NULL), 0);
    CHECK_EQ(cio_cfuture_cancelled(NULL), 0);
    cio_cfuture_unref(NULL);
}

/* ------------------------------------------------------ workers come and go */

TEST(executor_lazy_workers_idle_retire)
{
    cio__executor_idle_timeout = 0.05; /* before any worker exists */
    int base = thread_base();
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 4), 0);
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    CHECK_EQ(thread_count(), base); /* nothing started yet */

    gate g = {.value = 9};
    cio_cfuture *cf;
    CHECK_ERR(cio_executor_submit(ex, gated, &g, &cf), 0);
    WAIT_UNTIL(atomic_load(&g.started) == 1);
    CHECK_EQ(thread_count(), base + 1);
    atomic_store(&g.release, 1);
    CHECK_EQ(cio_cfuture_result(cf, CIO_NO_TIMEOUT), 9);
    cio_cfuture_unref(cf);
    WAIT_UNTIL(thread_count() == base); /* retired after 50 ms idle */

    /* Four busy at once: four workers, no more for a fifth item. */
    gate g4 = {.value = 1};
    cio_cfuture *cfs[5];
    for (int i = 0; i < 4; i++)
        CHECK_ERR(cio_executor_submit(ex, gated, &g4, &cfs[i]), 0);
    WAIT_UNTIL(atomic_load(&g4.started) == 4);
    CHECK_EQ(thread_count(), base + 4);
    CHECK_ERR(cio_executor_submit(ex, gated, &g4, &cfs[4]), 0);
    CHECK_EQ(thread_count(), base + 4);
    CHECK_EQ(atomic_load(&g4.started), 4);
    atomic_store(&g4.release, 1);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(cio_cfuture_result(cfs[i], CIO_NO_TIMEOUT), 1);
        cio_cfuture_unref(cfs[i]);
    }
    WAIT_UNTIL(thread_count() == base);

    /* A pool whose workers all retired starts new ones. */
    CHECK_ERR(cio_executor_submit(ex, return_arg, IARG(8), &cf), 0);
    CHECK_EQ(cio_cfuture_result(cf, CIO_NO_TIMEOUT), 8);
    cio_cfuture_unref(cf);
    cio_executor_free(ex);
    THREADS_BACK_TO(base);

    /* The loop's default executor: created on first use, retires too. */
    CHECK(loop->default_executor == NULL);
    cio_future *f;
    CHECK_ERR(cio_run_in_executor(loop, NULL, return_arg, IARG(2), &f), 0);
    CHECK(loop->default_executor != NULL);
    CHECK_EQ(cio_loop_run_until_complete(loop, f), 2);
    cio_future_unref(f);
    WAIT_UNTIL(thread_count() == base);
    cio_loop_free(loop);
    THREADS_BACK_TO(base);
}

/* How many fns run at once: each arrives, waits until `target` are in (or
 * `cap` seconds pass), lingers, and leaves. */
static struct {
    atomic_int cur, max, total;
    int target;
    double cap;
} CONC;

static int concurrent_fn(void *arg)
{
    (void)arg;
    int n = atomic_fetch_add(&CONC.cur, 1) + 1;
    int m = atomic_load(&CONC.max);
    while (n > m && !atomic_compare_exchange_weak(&CONC.max, &m, n))
        ;
    double t0 = mono();
    while (atomic_load(&CONC.max) < CONC.target && mono() - t0 < CONC.cap)
        nap(0.001);
    nap(0.02);
    atomic_fetch_sub(&CONC.cur, 1);
    atomic_fetch_add(&CONC.total, 1);
    return 0;
}

static int default_max_main(void *arg)
{
    int items = *(int *)arg;
    cio_future **futs = calloc((size_t)items, sizeof *futs);
    CHECK(futs);
    for (int i = 0; i < items; i++)
        CHECK_ERR(cio_run_in_executor(NULL, NULL, concurrent_fn, NULL,
                                      &futs[i]),
                  0);
    CHECK_ERR(cio_gather(futs, (size_t)items, 0, NULL), 0);
    for (int i = 0; i < items; i++)
        cio_future_unref(futs[i]);
    free(futs);
    return 0;
}

TEST_T(executor_default_max_workers, 60)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int expected = (int)(cpus > 0 ? cpus : 1) + 4;
    if (expected > 32)
        expected = 32;
    CONC.target = expected;
    CONC.cap = 10;
    int items = 3 * expected + 1;
    CHECK_EQ(cio_run(default_max_main, &items), 0);
    CHECK_EQ(atomic_load(&CONC.total), items);
    /* Exactly the pool's size ran at once: never more. */
    CHECK_EQ(atomic_load(&CONC.max), expected);

    /* An explicit executor with max_workers <= 0 gets the same size. */
    memset(&CONC, 0, sizeof CONC);
    CONC.target = expected;
    CONC.cap = 10;
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 0), 0);
    for (int i = 0; i < expected + 1; i++)
        CHECK_ERR(cio_executor_submit(ex, concurrent_fn, NULL, NULL), 0);
    cio_executor_free(ex);
    CHECK_EQ(atomic_load(&CONC.total), expected + 1);
    CHECK_EQ(atomic_load(&CONC.max), expected);
}

/* ------------------------------------------------- set_default_executor */

static int record_thread(void *arg)
{
    *(pthread_t *)arg = pthread_self();
    return 0;
}

static int set_default_main(void *arg)
{
    (void)arg;
    cio_loop *loop = cio_get_running_loop();
    /* A default created on first use, then replaced (and freed). */
    CHECK_EQ(cio_to_thread(return_arg, IARG(1)), 1);
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    CHECK_ERR(cio_loop_set_default_executor(loop, ex), 0);
    CHECK(loop->default_executor == ex);
    CHECK_ERR(cio_loop_set_default_executor(loop, ex), 0); /* same: kept */
    CHECK_ERR(cio_loop_set_default_executor(loop, NULL), -EINVAL);
    CHECK_ERR(cio_loop_set_default_executor(NULL, ex), -EINVAL);

    /* Work for the default goes to ex's single worker. */
    pthread_t direct, via_loop;
    cio_cfuture *cf;
    CHECK_ERR(cio_executor_submit(ex, record_thread, &direct, &cf), 0);
    CHECK_EQ(cio_cfuture_result(cf, CIO_NO_TIMEOUT), 0);
    cio_cfuture_unref(cf);
    CHECK_EQ(cio_to_thread(record_thread, &via_loop), 0);
    CHECK(pthread_equal(direct, via_loop));

    /* One worker: two fns that wait for each other never meet. */
    memset(&CONC, 0, sizeof CONC);
    CONC.target = 2;
    CONC.cap = 0.1;
    cio_future *f[2];
    for (int i = 0; i < 2; i++)
        CHECK_ERR(cio_run_in_executor(NULL, NULL, concurrent_fn, NULL, &f[i]),
                  0);
    CHECK_ERR(cio_gather(f, 2, 0, NULL), 0);
    cio_future_unref(f[0]);
    cio_future_unref(f[1]);
    CHECK_EQ(atomic_load(&CONC.max), 1);

    /* Replaced again; the loop owns and frees the last one. */
    cio_executor *ex2;
    CHECK_ERR(cio_executor_new(&ex2, 2), 0);
    CHECK_ERR(cio_loop_set_default_executor(loop, ex2), 0);
    CHECK_EQ(cio_to_thread(return_arg, IARG(5)), 5);
    return 0;
}

TEST_T(executor_set_default_executor, 60)
{
    int base = thread_base();
    CHECK_EQ(cio_run(set_default_main, NULL), 0);
    THREADS_BACK_TO(base);

    /* A closed loop refuses it (the executor stays the caller's). */
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    CHECK_ERR(cio_loop_set_default_executor(loop, ex), -ESHUTDOWN);
    cio_executor_free(ex);
    cio_loop_free(loop);
}

/* ------------------------------------------------------- the loop closes */

TEST(executor_loop_close_with_work_in_flight)
{
    int base = thread_base();
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    gate g = {.value = 1};
    cio_future *f, *f2;
    /* From the loop thread, the loop not running. */
    CHECK_ERR(cio_run_in_executor(loop, NULL, gated, &g, &f), 0);
    WAIT_UNTIL(atomic_load(&g.started) == 1);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_EQ(cio_future_done(f), 0); /* never completed now */
    cio_future_unref(f);
    CHECK_ERR(cio_run_in_executor(loop, NULL, return_arg, NULL, &f2),
              -ESHUTDOWN);
    /* The worker finishes after the loop closed: it must not touch the
     * loop's objects, and it frees what it shares. The loop's memory stays
     * until cio_loop_free. */
    atomic_store(&g.release, 1);
    WAIT_UNTIL(thread_count() == base);
    /* The orphaned worker took loop->post_lock to learn it was orphaned,
     * and nothing tells the loop's owner when it is done with it (see
     * executor_loop_free_with_work_in_flight). Taking the lock here orders
     * the free after it, for ThreadSanitizer. */
    pthread_mutex_lock(&loop->posts.lock);
    pthread_mutex_unlock(&loop->posts.lock);
    cio_loop_free(loop);

    /* The result posted but not delivered when the loop closes. */
    gate g2 = {.value = 2, .release = 1};
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    CHECK_ERR(cio_run_in_executor(loop, NULL, gated, &g2, &f), 0);
    WAIT_UNTIL(atomic_load(&loop->posts.count) == 1);
    CHECK_EQ(cio_future_done(f), 0);
    cio_future_unref(f);
    cio_loop_free(loop);
    WAIT_UNTIL(thread_count() == base);
}

static gate LF;

/* The loop freed (not only closed) while a worker still runs: the worker
 * must not touch the freed loop when it finishes. */
TEST(executor_loop_free_with_work_in_flight)
{
    int base = thread_base();
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    cio_future *f;
    CHECK_ERR(cio_run_in_executor(loop, NULL, gated, &LF, &f), 0);
    WAIT_UNTIL(atomic_load(&LF.started) == 1);
    cio_future_unref(f);
    cio_loop_free(loop);
    atomic_store(&LF.release, 1);
    WAIT_UNTIL(thread_count() == base);
}

/* cio_run: work submitted and never awaited completes before it returns. */
static atomic_int RUN_DONE;

static int slow_mark(void *arg)
{
    nap(0.05);
    atomic_fetch_add(&RUN_DONE, 1);
    return (int)(intptr_t)arg;
}

static int fire_and_forget_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        cio_future *f;
        CHECK_ERR(cio_run_in_executor(NULL, NULL, slow_mark, IARG(i), &f), 0);
        cio_future_unref(f);
    }
    return 7;
}

TEST(executor_cio_run_shuts_default_executor_down)
{
    int base = thread_base();
    long allocs = cio__alloc_live();
    CHECK_EQ(cio_run(fire_and_forget_main, NULL), 7);
    CHECK_EQ(atomic_load(&RUN_DONE), 3);
    THREADS_BACK_TO(base);
    /* Each result reaches its future in cio_run's last iteration, which
     * schedules the future's internal done callback; the loop then closes
     * with that callback still queued. */
    CHECK_EQ(cio__alloc_live(), allocs);
}

/* ---------------------------------------------------------- failures */

/* A task that wakes the loop every few ms: a wake-up lost to an injected
 * eventfd failure (impossible for real) cannot hang the scenario. */
static int ticker(void *arg)
{
    int *stop = arg;
    while (!*stop) {
        int err = cio_sleep(0.002);
        if (err)
            return err;
    }
    return 0;
}

static void *post_noop(void *arg)
{
    return IARG(cio_call_soon_threadsafe(arg, noop, NULL));
}

/* Grows both of the loop's post vectors now, so that a worker's post does
 * not allocate (see executor_post_enomem_leaks_nothing for why). Posts
 * come from another thread: from the loop's own, it is call_soon. */
static int warm_posts(void)
{
    cio_loop *loop = cio_get_running_loop();
    for (int round = 0; round < 2; round++) {
        pthread_t th;
        void *ret;
        CHECK_EQ(pthread_create(&th, NULL, post_noop, loop), 0);
        CHECK_EQ(pthread_join(th, &ret), 0);
        int err = (int)(intptr_t)ret;
        for (int i = 0; !err && i < 3; i++)
            err = cio_sleep(0);
        if (err)
            return err;
    }
    CHECK(loop->posts.posted_cap > 0 && loop->posts.torun_cap > 0);
    return 0;
}

static int expect(int got, int want, int err)
{
    if (err)
        return err;
    if (got == want)
        return 0;
    return got < 0 ? got : -EPROTO;
}

static int executor_fault_main(void *arg)
{
    (void)arg;
    int stop = 0;
    cio_task *tick;
    int err = cio_create_task(ticker, &stop, &tick);
    if (err)
        return err;
    err = warm_posts();
    cio_executor *ex = NULL;
    cio_future *f[4] = {NULL};
    if (!err)
        err = cio_run_in_executor(NULL, NULL, return_arg, IARG(7), &f[0]);
    if (!err)
        err = cio_executor_new(&ex, 2);
    if (!err)
        err = cio_run_in_executor(NULL, ex, return_arg, IARG(8), &f[1]);
    if (!err)
        err = cio_run_in_executor(NULL, ex, return_arg, IARG(9), &f[2]);
    if (!err)
        err = cio_run_in_executor(NULL, ex, return_arg, IARG(-EIO), &f[3]);
    if (f[2] && !err)
        cio_future_cancel(f[2]); /* may or may not have run: either way */
    for (int i = 0; i < 4; i++)
        if (f[i]) {
            int r = cio_await(f[i], NULL);
            if (i == 2)
                err = expect(r == -ECANCELED ? 9 : r, 9, err);
            else
                err = expect(r, i == 3 ? -EIO : 7 + i, err);
            cio_future_unref(f[i]);
        }
    if (!err)
        err = expect(cio_to_thread(return_arg, IARG(10)), 10, 0);
    cio_executor_free(ex);
    stop = 1;
    int r = cio_await(tick, NULL);
    cio_future_unref(tick);
    return err ? err : r;
}

static int FAULT_BASE; /* threads outside the scenario */

static int executor_fault_scenario(void *arg)
{
    (void)arg;
    int r = cio_run(executor_fault_main, NULL);
    /* Every worker is gone before the next run counts allocations. */
    WAIT_UNTIL(thread_count() == FAULT_BASE);
    return r;
}

/* The same on a loop run by hand: a failed poll returns to the caller,
 * who keeps the loop running until the task is done and nothing is left. */
static int fault_scenario_by_hand(void *arg)
{
    (void)arg;
    cio_loop *loop;
    int err = cio_loop_new(&loop, NULL);
    if (err)
        return err;
    cio_task *t;
    err = cio_task_new(loop, executor_fault_main, NULL, NULL, &t);
    if (!err) {
        err = cio_loop_run_until_complete(loop, t);
        while (!cio_future_done(t))
            (void)cio_loop_run_once(loop, 0.01);
        int r = cio_future_result(t, NULL);
        if (!err || r < 0)
            err = r;
        cio_future_unref(t);
    }
    cio__executor_shutdown_default(loop, 300);
    for (int idle = 0; idle < 3;)
        idle = cio_loop_run_once(loop, 0) == 0 ? idle + 1 : 0;
    cio_loop_free(loop);
    WAIT_UNTIL(thread_count() == FAULT_BASE);
    return err;
}

TEST_T(executor_fault_alloc, 120)
{
    FAULT_BASE = thread_base();
    int n =
        test_fault_loop(CIO__FAULT_ALLOC, 0, executor_fault_scenario, NULL);
    CHECK(n > 5);
    n = test_fault_loop(CIO__FAULT_ALLOC, 0, fault_scenario_by_hand, NULL);
    CHECK(n > 5);
}

TEST_T(executor_fault_sys_eagain, 120)
{
    FAULT_BASE = thread_base();
    int n = test_fault_loop(CIO__FAULT_SYS, EAGAIN, executor_fault_scenario,
                            NULL);
    CHECK(n > 3);
    n = test_fault_loop(CIO__FAULT_SYS, EAGAIN, fault_scenario_by_hand, NULL);
    CHECK(n > 3);
}

TEST(executor_thread_create_eagain)
{
    int base = thread_base();
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 2), 0);
    cio_cfuture *cf = IARG(1);
    cio__fault_arm(CIO__FAULT_SYS, 1, EAGAIN);
    CHECK_ERR(cio_executor_submit(ex, return_arg, IARG(1), &cf), -EAGAIN);
    CHECK(cio__fault_fired());
    cio__fault_disarm();
    CHECK(cf == NULL);
    THREADS_BACK_TO(base);
    CHECK_ERR(cio_executor_submit(ex, return_arg, IARG(1), &cf), 0);
    CHECK_EQ(cio_cfuture_result(cf, CIO_NO_TIMEOUT), 1);
    cio_cfuture_unref(cf);

    cio_executor_free(ex);

    /* With a worker running, a second that cannot start is no error: the
     * queue waits for the one there is. */
    CHECK_ERR(cio_executor_new(&ex, 2), 0);
    gate g = {.value = 2};
    cio_cfuture *a, *b;
    CHECK_ERR(cio_executor_submit(ex, gated, &g, &a), 0);
    WAIT_UNTIL(atomic_load(&g.started) == 1);
    cio__fault_arm(CIO__FAULT_SYS, 1, EAGAIN);
    CHECK_ERR(cio_executor_submit(ex, return_arg, IARG(3), &b), 0);
    CHECK(cio__fault_fired());
    cio__fault_disarm();
    atomic_store(&g.release, 1);
    CHECK_EQ(cio_cfuture_result(a, CIO_NO_TIMEOUT), 2);
    CHECK_EQ(cio_cfuture_result(b, CIO_NO_TIMEOUT), 3);
    cio_cfuture_unref(a);
    cio_cfuture_unref(b);
    cio_executor_free(ex);

    /* run_in_executor: -EAGAIN, and the loop's future is not kept. */
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    cio_future *f = IARG(1);
    long allocs = cio__alloc_live();
    cio__fault_arm(CIO__FAULT_SYS, 1, EAGAIN);
    CHECK_ERR(cio_run_in_executor(loop, NULL, return_arg, NULL, &f), -EAGAIN);
    CHECK(cio__fault_fired());
    cio__fault_disarm();
    CHECK(f == NULL);
    /* Only the default executor (created on first use) remains. */
    CHECK(loop->default_executor != NULL);
    CHECK_EQ(cio__alloc_live(), allocs + 2);
    CHECK_ERR(cio_run_in_executor(loop, NULL, return_arg, IARG(4), &f), 0);
    CHECK_EQ(cio_loop_run_until_complete(loop, f), 4);
    cio_future_unref(f);
    cio_loop_free(loop);
    WAIT_UNTIL(thread_count() == base);
}

/* Every allocation the worker makes to hand its result over may fail
 * (the first one after fn returns is made to): the result then either
 * arrives all the same or is lost, and closing the loop frees everything
 * either way. */
TEST(executor_result_handover_enomem)
{
    int base = thread_base();
    long allocs = cio__alloc_live();
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    gate g = {.value = 1};
    cio_future *f;
    CHECK_ERR(cio_run_in_executor(loop, ex, gated, &g, &f), 0);
    WAIT_UNTIL(atomic_load(&g.started) == 1);
    /* Only the worker runs cio code from here until the disarm. */
    cio__fault_arm(CIO__FAULT_ALLOC, 1, 0);
    atomic_store(&g.release, 1);
    cio_executor_free(ex); /* joins the worker: its hand-over is done */
    bool fired = cio__fault_fired();
    cio__fault_disarm();
    if (!fired) { /* nothing to allocate: the result must arrive */
        CHECK_EQ(cio_loop_run_until_complete(loop, f), 1);
    } else {
        for (int i = 0; i < 3; i++)
            CHECK(cio_loop_run_once(loop, 0) >= 0);
    }
    cio_future_unref(f);
    cio_loop_free(loop);
    WAIT_UNTIL(thread_count() == base);
    CHECK_EQ(cio__alloc_live(), allocs);
}

/* ------------------------------------------------------ pool edge cases */

/* A burst of submits while one worker idles must still start workers up
 * to the maximum: fns that wait for each other all meet. Whether the idle
 * worker wakes before the burst ends is up to the scheduler, so it is
 * tried a few times. */
static struct {
    atomic_int arrived;
    int need;
    double cap;
} RV;

static int rendezvous(void *arg)
{
    (void)arg;
    atomic_fetch_add(&RV.arrived, 1);
    double t0 = mono();
    while (atomic_load(&RV.arrived) < RV.need)
        if (mono() - t0 > RV.cap)
            return -ETIMEDOUT;
        else
            nap(0.001);
    return 0;
}

TEST_T(executor_burst_after_idle_starts_workers, 30)
{
    bool slow = test_scaled(20) < 20;
    RV.cap = slow ? 2 : 0.5;
    int rounds = slow ? 2 : 10, failed = 0;
    for (int round = 0; round < rounds && !failed; round++) {
        cio_executor *ex;
        CHECK_ERR(cio_executor_new(&ex, 4), 0);
        cio_cfuture *cf[4];
        /* One worker, now idle. */
        CHECK_ERR(cio_executor_submit(ex, return_arg, NULL, &cf[0]), 0);
        CHECK_EQ(cio_cfuture_result(cf[0], CIO_NO_TIMEOUT), 0);
        cio_cfuture_unref(cf[0]);
        nap(0.01);
        atomic_store(&RV.arrived, 0);
        RV.need = 4;
        for (int i = 0; i < 4; i++)
            CHECK_ERR(cio_executor_submit(ex, rendezvous, NULL, &cf[i]), 0);
        for (int i = 0; i < 4; i++) {
            int r = cio_cfuture_result(cf[i], CIO_NO_TIMEOUT);
            CHECK(r == 0 || r == -ETIMEDOUT);
            failed += r != 0;
            cio_cfuture_unref(cf[i]);
        }
        cio_executor_free(ex);
    }
    CHECK(!failed);
}

/* Workers retiring as fast as they start, one at a time: the pool's record
 * of finished workers to join must never overflow (ASan / valgrind see). */
TEST_T(executor_retire_and_restart_churn, 60)
{
    FAULT_BASE = thread_base();
    cio__executor_idle_timeout = 0;
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    long n = test_scaled(4000);
    for (long i = 0; i < n; i++) {
        cio_cfuture *cf;
        CHECK_ERR(cio_executor_submit(ex, return_arg, IARG(i & 0xff), &cf), 0);
        CHECK_EQ(cio_cfuture_result(cf, CIO_NO_TIMEOUT), i & 0xff);
        cio_cfuture_unref(cf);
    }
    cio_executor_free(ex);
    WAIT_UNTIL(thread_count() == FAULT_BASE);
}
