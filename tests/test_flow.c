/* The flow of many tasks, tested against asyncio's documented orderings and
 * results: sleep, gather, wait, wait_for, as_completed, shield, and what
 * happens to all of them (and to timeout scopes and task groups, tested in
 * test_scope.c) under failing allocations and system calls.
 *
 * Orderings never depend on timing: tasks started in one iteration share
 * that iteration's loop time, so their deadlines are ordered exactly; the
 * rest is driven by futures the test completes itself. The only timing
 * checks are lower bounds (a timeout never fires early). Tests that wait
 * for timeouts run on the virtual clock (cio_loop_set_virtual_clock):
 * deadlines pass in the same order, without real waiting.
 *
 * Every test runs in its own forked process: the globals start fresh. */
#define _GNU_SOURCE
#include "util.h"

#include <math.h>
#include <stdio.h>

/* ----------------------------------------------------------------- sleep */

static int interleave(void *arg)
{
    for (int i = 0; i < 3; i++) {
        test_log_add(&L, "%s%d", (const char *)arg, i);
        CHECK_ERR(cio_sleep(0), 0);
    }
    return 0;
}

static int main_interleave(void *arg)
{
    (void)arg;
    cio_task *t[2] = {spawn(interleave, "a"), spawn(interleave, "b")};
    CHECK_ERR(cio_gather(t, 2, 0, NULL), 0);
    unref_all(t, 2);
    return 0;
}

/* asyncio.sleep(0) yields exactly once: two tasks take turns. */
TEST(flow_sleep_zero_yields_once)
{
    run_ok(main_interleave);
    CHECK_LOG(&L, "a0 b0 a1 b1 a2 b2");
}

static int main_sleep_order(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    job ja = {"a", 0.03, 0, 0}, jb = {"b", 0.01, 0, 0}, jc = {"c", 0.02, 0, 0},
        jd = {"d", 0.01, 0, 0};
    double t0 = now();
    cio_task *t[4] = {spawn(run_job, &ja), spawn(run_job, &jb),
                      spawn(run_job, &jc), spawn(run_job, &jd)};
    CHECK_ERR(cio_gather(t, 4, 0, NULL), 0);
    CHECK(now() - t0 >= 0.029); /* never early */
    unref_all(t, 4);
    return 0;
}

TEST(flow_sleepers_wake_in_deadline_order)
{
    run_ok(main_sleep_order);
    CHECK_LOG(&L, "b d c a");
}

static int main_sleep_args(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_sleep(-1), 0); /* asyncio's: <= 0 yields */
    CHECK_ERR(cio_sleep(NAN), -EINVAL);
    CHECK_ERR(cio_sleep(0), 0);
    return 0;
}

TEST(flow_sleep_refuses_nan)
{
    run_ok(main_sleep_args);
}

/* ---------------------------------------------------------------- gather */

static int main_gather_order(void *arg)
{
    (void)arg;
    job j0 = {"t0", 0.03, 1, 0}, j1 = {"t1", 0.01, 2, 0},
        j2 = {"t2", 0.02, 3, 0};
    cio_task *t[3] = {spawn(run_job, &j0), spawn(run_job, &j1),
                      spawn(run_job, &j2)};
    cio_result res[3];
    CHECK_ERR(cio_gather(t, 3, 0, res), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(res[i].status, i + 1);
        CHECK(res[i].value == &VALUES[i + 1]);
    }
    unref_all(t, 3);
    return 0;
}

TEST(flow_gather_results_are_in_argument_order)
{
    run_ok(main_gather_order);
    CHECK_LOG(&L, "t1 t2 t0"); /* the order they finished in */
}

static void set_later(void *arg) { cio_future_set_result(arg, &VALUES[7]); }

static int main_gather_mixed(void *arg)
{
    (void)arg;
    cio_future *f = future_open();
    CHECK_ERR(cio_call_later(cio_get_running_loop(), 0.001, set_later, f,
                             NULL),
              0);
    job j = {"t", 0, 4, 1};
    cio_future *all[2] = {f, spawn(run_job, &j)};
    cio_result res[2];
    CHECK_ERR(cio_gather(all, 2, 0, res), 0);
    CHECK_EQ(res[0].status, 0);
    CHECK(res[0].value == &VALUES[7]);
    CHECK_EQ(res[1].status, 4);
    CHECK(res[1].value == &VALUES[4]);
    /* Gathering what is done already returns at once, results included. */
    CHECK_ERR(cio_gather(all, 2, 0, res), 0);
    CHECK_EQ(res[1].status, 4);
    unref_all(all, 2);
    return 0;
}

TEST(flow_gather_takes_futures_and_tasks)
{
    run_ok(main_gather_mixed);
}

static int main_gather_error(void *arg)
{
    (void)arg;
    GATE = future_open();
    job slow = {"slow", -1, 2, 0}, bad = {"bad", 0, -EPIPE, 1};
    cio_task *t[2] = {spawn(run_job, &slow), spawn(run_job, &bad)};
    cio_result res[2];
    int r = cio_gather(t, 2, 0, res);
    test_log_add(&L, "gather:%s", code(r));
    CHECK_ERR(r, -EPIPE);
    CHECK_ERR(res[1].status, -EPIPE);
    CHECK_ERR(res[0].status, -EAGAIN); /* still running: not done */
    /* The others are not cancelled: the slow one goes on. */
    CHECK_EQ(cio_future_done(t[0]), 0);
    CHECK_EQ(cio_task_cancelling(t[0]), 0);
    CHECK_ERR(cio_future_set_result(GATE, NULL), 0);
    CHECK_ERR(cio_await(t[0], NULL), 2);
    unref_all(t, 2);
    cio_future_unref(GATE);
    return 0;
}

TEST(flow_gather_returns_the_first_error_and_the_rest_keep_running)
{
    run_ok(main_gather_error);
    CHECK_LOG(&L, "bad gather:EPIPE slow");
}

static int main_gather_first_error(void *arg)
{
    (void)arg;
    job late = {"late", 0, -EIO, 3}, early = {"early", 0, -EPIPE, 1};
    cio_task *t[2] = {spawn(run_job, &late), spawn(run_job, &early)};
    CHECK_ERR(cio_gather(t, 2, 0, NULL), -EPIPE); /* first to happen */
    CHECK_ERR(cio_await(t[0], NULL), -EIO);
    unref_all(t, 2);
    return 0;
}

TEST(flow_gather_error_is_the_first_to_happen_not_the_first_argument)
{
    run_ok(main_gather_first_error);
}

static void cancel_soon(void *arg) { cio_future_cancel(arg); }

static int main_gather_exceptions(void *arg)
{
    (void)arg;
    cio_future *f = future_open();
    CHECK_ERR(cio_call_soon(cio_get_running_loop(), cancel_soon, f, NULL), 0);
    job ok = {"ok", 0, 2, 1}, bad = {"bad", 0, -EPIPE, 0},
        slow = {"slow", 0.01, 4, 0};
    cio_future *all[4] = {spawn(run_job, &ok), spawn(run_job, &bad), f,
                          spawn(run_job, &slow)};
    cio_result res[4];
    CHECK_ERR(cio_gather(all, 4, 1, res), 0);
    CHECK_EQ(res[0].status, 2);
    CHECK_ERR(res[1].status, -EPIPE);
    CHECK_ERR(res[2].status, -ECANCELED);
    CHECK_EQ(res[3].status, 4); /* waited for every one */
    CHECK(res[3].value == &VALUES[4]);
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 0);
    unref_all(all, 4);
    return 0;
}

TEST(flow_gather_return_exceptions_collects_every_outcome)
{
    run_ok(main_gather_exceptions);
}

static int main_gather_child_cancelled(void *arg)
{
    (void)arg;
    GATE = future_open();
    job a = {"a", -1, 0, 0}, b = {"b", 0, 1, 3};
    cio_task *t[2] = {spawn(run_job, &a), spawn(run_job, &b)};
    CHECK_ERR(cio_call_soon(cio_get_running_loop(), cancel_soon, t[0], NULL),
              0);
    /* A cancelled child is an error for gather, which is not cancelled. */
    CHECK_ERR(cio_gather(t, 2, 0, NULL), -ECANCELED);
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 0);
    CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(cio_await(t[1], NULL), 1);
    unref_all(t, 2);
    cio_future_unref(GATE);
    return 0;
}

TEST(flow_gather_with_a_cancelled_child_is_not_itself_cancelled)
{
    run_ok(main_gather_child_cancelled);
    CHECK_LOG(&L, "a:ECANCELED b");
}

static cio_task *KIDS[4];

static int gatherer(void *arg)
{
    int n = (int)(intptr_t)arg;
    int r = cio_gather(KIDS, (size_t)n, 0, NULL);
    test_log_add(&L, "gather:%s", code(r));
    return r;
}

static int main_gather_cancelled(void *arg)
{
    (void)arg;
    KIDS[0] = spawn(sleep_then_clean_up, "c1");
    KIDS[1] = spawn(sleep_then_clean_up, "c2");
    cio_task *g = spawn(gatherer, (void *)(intptr_t)2);
    yield_n(1);
    CHECK_EQ(cio_task_cancel(g), 1);
    CHECK_ERR(cio_await(g, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(KIDS[0]), 1);
    CHECK_EQ(cio_future_cancelled(KIDS[1]), 1);
    unref_all(KIDS, 2);
    cio_future_unref(g);
    return 0;
}

/* Cancelling the task in gather cancels every child, and gather returns
 * only once they have all finished. */
TEST(flow_gather_cancelled_cancels_the_children_and_waits_for_them)
{
    run_ok(main_gather_cancelled);
    CHECK_LOG(&L, "c1:ECANCELED c2:ECANCELED c1:cleaned c2:cleaned "
                  "gather:ECANCELED");
}

static int main_gather_nothing(void *arg)
{
    (void)arg;
    /* asyncio.gather() with no awaitables gives [] at once. */
    CHECK_ERR(cio_gather(NULL, 0, 0, NULL), 0);
    return 0;
}

TEST(flow_gather_of_nothing_succeeds_at_once)
{
    run_ok(main_gather_nothing);
}

static int main_gather_args(void *arg)
{
    (void)arg;
    cio_future *f = future_open();
    cio_future *with_null[2] = {f, NULL};
    CHECK_ERR(cio_gather(with_null, 2, 0, NULL), -EINVAL);
    cio_future_unref(f);
    return 0;
}

TEST(flow_gather_bad_arguments_are_einval)
{
    cio_future *none[1] = {NULL};
    CHECK_ERR(cio_gather(none, 1, 0, NULL), CIO_ENOTASK);
    run_ok(main_gather_args);
}

/* ------------------------------------------------------------------ wait */

typedef struct wait_call {
    cio_future **futs;
    size_t n;
    cio_wait_mode mode;
    double timeout;
    int r;
    cio_future *done[8], *pending[8];
    size_t ndone, npending;
    double took;
} wait_call;

static int waiter(void *arg)
{
    wait_call *w = arg;
    double t0 = now();
    w->r = cio_wait(w->futs, w->n, w->mode, w->timeout, w->done, &w->ndone,
                    w->pending, &w->npending);
    w->took = now() - t0;
    return 0;
}

static cio_future *F[4];

static void open_futures(int n)
{
    for (int i = 0; i < n; i++)
        F[i] = future_open();
}

static int main_wait_first_completed(void *arg)
{
    (void)arg;
    open_futures(3);
    wait_call w = {F, 3, CIO_FIRST_COMPLETED, CIO_NO_TIMEOUT, 1, {0}, {0}, 9, 9, 0};
    cio_task *t = spawn(waiter, &w);
    yield_n(3);
    CHECK_EQ(cio_future_done(t), 0);
    CHECK_ERR(cio_future_set_result(F[1], NULL), 0);
    CHECK_ERR(cio_await(t, NULL), 0);
    CHECK_ERR(w.r, 0);
    CHECK_EQ(w.ndone, 1);
    CHECK(w.done[0] == F[1]);
    CHECK_EQ(w.npending, 2);
    CHECK(w.pending[0] == F[0] && w.pending[1] == F[2]);
    CHECK_EQ(cio_future_cancelled(F[0]) + cio_future_cancelled(F[2]), 0);
    cio_future_unref(t);
    unref_all(F, 3);
    return 0;
}

TEST(flow_wait_first_completed_returns_on_the_first_one)
{
    run_ok(main_wait_first_completed);
}

static int main_wait_first_exception(void *arg)
{
    (void)arg;
    open_futures(4);
    wait_call w = {F, 4, CIO_FIRST_EXCEPTION, CIO_NO_TIMEOUT, 1, {0}, {0}, 9, 9, 0};
    cio_task *t = spawn(waiter, &w);
    yield_n(2);
    CHECK_ERR(cio_future_set_result(F[0], NULL), 0);
    yield_n(3);
    CHECK_EQ(cio_future_done(t), 0); /* a result is no exception */
    CHECK_EQ(cio_future_cancel(F[1]), 1);
    yield_n(3);
    CHECK_EQ(cio_future_done(t), 0); /* nor is a cancellation */
    CHECK_ERR(cio_future_set_error(F[2], -EPIPE), 0);
    CHECK_ERR(cio_await(t, NULL), 0);
    CHECK_ERR(w.r, 0);
    CHECK_EQ(w.ndone, 3);
    CHECK(w.done[0] == F[0] && w.done[1] == F[1] && w.done[2] == F[2]);
    CHECK_EQ(w.npending, 1);
    CHECK(w.pending[0] == F[3]);
    CHECK_EQ(cio_future_done(F[3]), 0);
    CHECK_ERR(cio_future_result(F[2], NULL), -EPIPE);
    cio_future_unref(t);
    unref_all(F, 4);
    return 0;
}

TEST(flow_wait_first_exception_returns_on_the_first_error)
{
    run_ok(main_wait_first_exception);
}

static int main_wait_first_exception_none(void *arg)
{
    (void)arg;
    open_futures(2);
    wait_call w = {F, 2, CIO_FIRST_EXCEPTION, CIO_NO_TIMEOUT, 1, {0}, {0}, 9, 9, 0};
    cio_task *t = spawn(waiter, &w);
    yield_n(2);
    CHECK_ERR(cio_future_set_result(F[1], NULL), 0);
    yield_n(3);
    CHECK_EQ(cio_future_done(t), 0);
    CHECK_ERR(cio_future_set_result(F[0], NULL), 0);
    CHECK_ERR(cio_await(t, NULL), 0);
    CHECK_EQ(w.ndone, 2);
    CHECK_EQ(w.npending, 0);
    cio_future_unref(t);
    unref_all(F, 2);
    return 0;
}

/* With no exception, FIRST_EXCEPTION is ALL_COMPLETED. */
TEST(flow_wait_first_exception_without_errors_waits_for_all)
{
    run_ok(main_wait_first_exception_none);
}

static int main_wait_all(void *arg)
{
    (void)arg;
    open_futures(3);
    wait_call w = {F, 3, CIO_ALL_COMPLETED, CIO_NO_TIMEOUT, 1, {0}, {0}, 9, 9, 0};
    cio_task *t = spawn(waiter, &w);
    yield_n(2);
    CHECK_ERR(cio_future_set_result(F[2], NULL), 0);
    yield_n(3);
    CHECK_EQ(cio_future_done(t), 0);
    CHECK_ERR(cio_future_set_error(F[0], -EPIPE), 0);
    yield_n(3);
    CHECK_EQ(cio_future_done(t), 0); /* errors do not end it early */
    CHECK_EQ(cio_future_cancel(F[1]), 1);
    CHECK_ERR(cio_await(t, NULL), 0);
    CHECK_ERR(w.r, 0);
    CHECK_EQ(w.ndone, 3);
    /* cio defines the sets' order: argument order */
    CHECK(w.done[0] == F[0] && w.done[1] == F[1] && w.done[2] == F[2]);
    CHECK_EQ(w.npending, 0);
    CHECK_ERR(cio_future_result(F[0], NULL), -EPIPE);
    cio_future_unref(t);
    unref_all(F, 3);
    return 0;
}

TEST(flow_wait_all_completed_waits_for_every_one)
{
    run_ok(main_wait_all);
}

static int main_wait_timeout(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    open_futures(3);
    CHECK_ERR(cio_future_set_result(F[1], NULL), 0);
    for (int mode = CIO_ALL_COMPLETED; mode <= CIO_FIRST_EXCEPTION; mode++) {
        wait_call w = {F, 3, mode, 0.02, 1, {0}, {0}, 9, 9, 0};
        if (mode == CIO_FIRST_COMPLETED)
            w.futs = F + 2, w.n = 1; /* only a pending one */
        CHECK_ERR(waiter(&w), 0);
        CHECK_ERR(w.r, 0); /* a timeout is no error for wait */
        CHECK(w.took >= 0.019);
        if (mode == CIO_FIRST_COMPLETED) {
            CHECK_EQ(w.ndone, 0);
            CHECK_EQ(w.npending, 1);
            CHECK(w.pending[0] == F[2]);
        } else {
            CHECK_EQ(w.ndone, 1);
            CHECK(w.done[0] == F[1]);
            CHECK_EQ(w.npending, 2);
            CHECK(w.pending[0] == F[0] && w.pending[1] == F[2]);
        }
    }
    /* The futures are not cancelled on timeout. */
    CHECK_EQ(cio_future_done(F[0]) + cio_future_done(F[2]), 0);
    /* Sets may be NULL when only the counts matter. */
    size_t nd = 9, np = 9;
    CHECK_ERR(cio_wait(F, 3, CIO_ALL_COMPLETED, 0.001, NULL, &nd, NULL, &np),
              0);
    CHECK_EQ(nd, 1);
    CHECK_EQ(np, 2);
    unref_all(F, 3);
    return 0;
}

TEST(flow_wait_with_a_timeout_returns_both_sets_and_cancels_nothing)
{
    run_ok(main_wait_timeout);
}

static int main_wait_in_time(void *arg)
{
    (void)arg;
    open_futures(2);
    wait_call w = {F, 2, CIO_ALL_COMPLETED, 10, 1, {0}, {0}, 9, 9, 0};
    cio_task *t = spawn(waiter, &w);
    yield_n(2);
    CHECK_ERR(cio_future_set_result(F[0], NULL), 0);
    CHECK_ERR(cio_future_set_result(F[1], NULL), 0);
    CHECK_ERR(cio_await(t, NULL), 0);
    CHECK_ERR(w.r, 0);
    CHECK_EQ(w.ndone, 2);
    CHECK_EQ(w.npending, 0);
    /* Done already with FIRST_COMPLETED: at once. */
    size_t nd = 9, np = 9;
    CHECK_ERR(cio_wait(F, 2, CIO_FIRST_COMPLETED, CIO_NO_TIMEOUT, NULL, &nd, NULL, &np),
              0);
    CHECK_EQ(nd, 2);
    CHECK_EQ(np, 0);
    cio_future_unref(t);
    unref_all(F, 2);
    return 0;
}

TEST(flow_wait_with_a_timeout_returns_when_done_in_time)
{
    run_ok(main_wait_in_time);
}

static int main_wait_cancelled(void *arg)
{
    (void)arg;
    open_futures(2);
    wait_call w = {F, 2, CIO_ALL_COMPLETED, CIO_NO_TIMEOUT, 1, {0}, {0}, 9, 9, 0};
    cio_task *t = spawn(waiter, &w);
    yield_n(2);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_ERR(cio_await(t, NULL), 0); /* waiter returns 0 itself */
    CHECK_ERR(w.r, -ECANCELED);
    /* asyncio.wait does not cancel the futures it waits for. */
    CHECK_EQ(cio_future_done(F[0]) + cio_future_done(F[1]), 0);
    cio_future_unref(t);
    unref_all(F, 2);
    return 0;
}

TEST(flow_wait_cancelled_leaves_the_futures_alone)
{
    run_ok(main_wait_cancelled);
}

static int main_wait_args(void *arg)
{
    (void)arg;
    open_futures(1);
    size_t nd, np;
    CHECK_ERR(cio_wait(F, 0, CIO_ALL_COMPLETED, CIO_NO_TIMEOUT, NULL, &nd, NULL, &np),
              -EINVAL);
    CHECK_ERR(cio_wait(F, 1, CIO_ALL_COMPLETED, NAN, NULL, &nd, NULL, &np),
              -EINVAL);
    CHECK_ERR(cio_wait(F, 1, (cio_wait_mode)7, CIO_NO_TIMEOUT, NULL, &nd, NULL, &np),
              -EINVAL);
    unref_all(F, 1);
    return 0;
}

TEST(flow_wait_bad_arguments_are_einval)
{
    cio_future *none[1] = {NULL};
    size_t nd, np;
    CHECK_ERR(cio_wait(none, 1, CIO_ALL_COMPLETED, CIO_NO_TIMEOUT, NULL, &nd,
                       NULL, &np),
              CIO_ENOTASK);
    run_ok(main_wait_args);
}

/* -------------------------------------------------------------- wait_for */

static int main_wait_for_ok(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    job j = {"t", 0.001, 4, 0};
    cio_task *t = spawn(run_job, &j);
    void *v = NULL;
    CHECK_ERR(cio_wait_for(t, 10, &v), 4);
    CHECK(v == &VALUES[4]);
    /* CIO_NO_TIMEOUT waits as long as it takes */
    job k = {"k", 0.01, 3, 0};
    cio_task *u = spawn(run_job, &k);
    CHECK_ERR(cio_wait_for(u, CIO_NO_TIMEOUT, NULL), 3);
    /* the inner error passes through */
    job e = {"e", 0, -EPIPE, 1};
    cio_task *w = spawn(run_job, &e);
    CHECK_ERR(cio_wait_for(w, 10, NULL), -EPIPE);
    CHECK_ERR(cio_sleep(0.02), 0); /* its deadline is gone with it */
    cio_future_unref(t);
    cio_future_unref(u);
    cio_future_unref(w);
    return 0;
}

TEST(flow_wait_for_returns_the_outcome_in_time)
{
    run_ok(main_wait_for_ok);
    CHECK_LOG(&L, "t k e");
}

static int main_wait_for_timeout(void *arg)
{
    (void)arg;
    cio_task *t = spawn(sleep_then_clean_up, "inner");
    double t0 = now();
    int r = cio_wait_for(t, 0.02, NULL);
    test_log_add(&L, "wait_for:%s", code(r));
    CHECK_ERR(r, -ETIMEDOUT);
    CHECK(now() - t0 >= 0.019);
    /* The inner was cancelled and has finished. */
    CHECK_EQ(cio_future_done(t), 1);
    CHECK_EQ(cio_future_cancelled(t), 1);
    /* The caller is not left cancelled or timed out. */
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 0);
    CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(cio_sleep(0.001), 0);
    cio_future_unref(t);
    return 0;
}

TEST(flow_wait_for_timeout_cancels_the_inner_and_waits_for_it)
{
    run_ok(main_wait_for_timeout);
    CHECK_LOG(&L, "inner:ECANCELED inner:cleaned wait_for:ETIMEDOUT");
}

static int swallow_cancel(void *arg)
{
    (void)arg;
    test_log_add(&L, "inner:%s", code(cio_sleep(100)));
    cio_task_uncancel(cio_current_task());
    CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(cio_task_set_value(&VALUES[5]), 0);
    test_log_add(&L, "inner:returns");
    return 9;
}

static int main_wait_for_swallowed(void *arg)
{
    (void)arg;
    cio_task *t = spawn(swallow_cancel, NULL);
    void *v = NULL;
    /* asyncio (3.12): the inner caught the cancellation and returned a
     * value, so wait_for returns that value, not TimeoutError. */
    CHECK_ERR(cio_wait_for(t, 0.01, &v), 9);
    CHECK(v == &VALUES[5]);
    CHECK_EQ(cio_future_cancelled(t), 0);
    CHECK_ERR(cio_sleep(0), 0);
    cio_future_unref(t);
    return 0;
}

TEST(flow_wait_for_returns_the_value_of_an_inner_that_ignores_the_timeout)
{
    run_ok(main_wait_for_swallowed);
    CHECK_LOG(&L, "inner:ECANCELED inner:returns");
}

static int main_wait_for_future(void *arg)
{
    (void)arg;
    open_futures(3);
    CHECK_ERR(cio_wait_for(F[0], 0.01, NULL), -ETIMEDOUT);
    CHECK_EQ(cio_future_cancelled(F[0]), 1);
    /* Timeout 0: a done future's result, a pending one times out. */
    CHECK_ERR(cio_future_set_result(F[1], &VALUES[1]), 0);
    void *v = NULL;
    CHECK_ERR(cio_wait_for(F[1], 0, &v), 0);
    CHECK(v == &VALUES[1]);
    CHECK_ERR(cio_wait_for(F[2], 0, NULL), -ETIMEDOUT);
    CHECK_EQ(cio_future_cancelled(F[2]), 1);
    unref_all(F, 3);
    return 0;
}

TEST(flow_wait_for_a_future_times_out_and_cancels_it)
{
    run_ok(main_wait_for_future);
}

static int wait_for_inner(void *arg)
{
    int r = cio_wait_for(arg, 10, NULL);
    test_log_add(&L, "wait_for:%s", code(r));
    return r;
}

static int main_wait_for_cancelled(void *arg)
{
    (void)arg;
    cio_task *inner = spawn(sleep_then_clean_up, "inner");
    cio_task *outer = spawn(wait_for_inner, inner);
    yield_n(1);
    CHECK_EQ(cio_task_cancel(outer), 1);
    CHECK_ERR(cio_await(outer, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(inner), 1);
    cio_future_unref(inner);
    cio_future_unref(outer);
    return 0;
}

/* Cancelling the task in wait_for is a cancellation, not a timeout. */
TEST(flow_wait_for_cancelled_caller_cancels_the_inner)
{
    run_ok(main_wait_for_cancelled);
    CHECK_LOG(&L, "inner:ECANCELED inner:cleaned wait_for:ECANCELED");
}

/* ---------------------------------------------------------- as_completed */

static test_log GOT; /* what as_completed gave, in order */

static int main_as_completed(void *arg)
{
    (void)arg;
    job j0 = {"t0", 0.03, 0, 0}, j1 = {"t1", 0.01, 1, 0},
        j2 = {"t2", 0.02, 2, 0};
    cio_task *t[3] = {spawn(run_job, &j0), spawn(run_job, &j1),
                      spawn(run_job, &j2)};
    cio_as_completed *it;
    CHECK_ERR(cio_as_completed_new(t, 3, CIO_NO_TIMEOUT, &it), 0);
    cio_future *f;
    int r;
    while ((r = cio_as_completed_next(it, &f)) == 1) {
        for (int i = 0; i < 3; i++)
            if (f == t[i])
                test_log_add(&GOT, "got%d:%d", i, cio_future_result(f, NULL));
    }
    CHECK_ERR(r, 0);
    CHECK(f == NULL);
    CHECK_ERR(cio_as_completed_next(it, &f), 0); /* stays exhausted */
    cio_as_completed_free(it);
    unref_all(t, 3);
    return 0;
}

TEST(flow_as_completed_yields_in_completion_order)
{
    run_ok(main_as_completed);
    CHECK_LOG(&L, "t1 t2 t0");
    CHECK_LOG(&GOT, "got1:1 got2:2 got0:0");
}

static int main_as_completed_timeout(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    open_futures(2);
    cio_as_completed *it;
    double t0 = now();
    CHECK_ERR(cio_as_completed_new(F, 2, 0.03, &it), 0);
    CHECK_ERR(cio_call_soon(cio_get_running_loop(), set_later, F[1], NULL),
              0);
    cio_future *f = NULL;
    CHECK_ERR(cio_as_completed_next(it, &f), 1);
    CHECK(f == F[1]);
    CHECK_ERR(cio_as_completed_next(it, &f), -ETIMEDOUT);
    CHECK(now() - t0 >= 0.029);
    CHECK_ERR(cio_as_completed_next(it, &f), -ETIMEDOUT); /* and it stays */
    CHECK_EQ(cio_future_done(F[0]), 0); /* not cancelled */
    cio_as_completed_free(it);
    unref_all(F, 2);
    return 0;
}

TEST(flow_as_completed_times_out_for_the_rest)
{
    run_ok(main_as_completed_timeout);
}

static int main_as_completed_nothing(void *arg)
{
    (void)arg;
    cio_as_completed *it;
    CHECK_ERR(cio_as_completed_new(NULL, 0, CIO_NO_TIMEOUT, &it), 0);
    cio_future *f = (cio_future *)&f;
    CHECK_ERR(cio_as_completed_next(it, &f), 0);
    CHECK(f == NULL);
    cio_as_completed_free(it);
    return 0;
}

/* asyncio.as_completed([]) yields nothing. */
TEST(flow_as_completed_of_nothing_yields_nothing)
{
    run_ok(main_as_completed_nothing);
}

static int consume_as_completed(void *arg)
{
    cio_as_completed *it = arg;
    cio_future *f;
    int r = cio_as_completed_next(it, &f);
    test_log_add(&L, "next:%s", code(r));
    return 0;
}

static int main_as_completed_cancelled(void *arg)
{
    (void)arg;
    open_futures(1);
    cio_as_completed *it;
    CHECK_ERR(cio_as_completed_new(F, 1, CIO_NO_TIMEOUT, &it), 0);
    cio_task *t = spawn(consume_as_completed, it);
    yield_n(1);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_ERR(cio_await(t, NULL), 0);
    CHECK_EQ(cio_future_done(F[0]), 0);
    cio_as_completed_free(it);
    cio_future_unref(t);
    unref_all(F, 1);
    return 0;
}

TEST(flow_as_completed_cancelled_returns_ecanceled)
{
    run_ok(main_as_completed_cancelled);
    CHECK_LOG(&L, "next:ECANCELED");
}

/* ---------------------------------------------------------------- shield */

static int main_shield_ok(void *arg)
{
    (void)arg;
    job j = {"inner", 0.001, 5, 0}, e = {"bad", 0, -EPIPE, 1};
    cio_task *inner = spawn(run_job, &j), *bad = spawn(run_job, &e);
    cio_future *outer, *bad_outer;
    CHECK_ERR(cio_shield(inner, &outer), 0);
    CHECK_ERR(cio_shield(bad, &bad_outer), 0);
    void *v = NULL;
    CHECK_ERR(cio_await(outer, &v), 5);
    CHECK(v == &VALUES[5]);
    CHECK_ERR(cio_await(bad_outer, NULL), -EPIPE);
    cio_future_unref(outer);
    cio_future_unref(bad_outer);
    cio_future_unref(inner);
    cio_future_unref(bad);
    return 0;
}

TEST(flow_shield_passes_the_outcome_through)
{
    run_ok(main_shield_ok);
}

static cio_future *SHIELDED;

static int await_shielded(void *arg)
{
    (void)arg;
    int r = cio_await(SHIELDED, NULL);
    test_log_add(&L, "awaiter:%s", code(r));
    return r;
}

static int main_shield_cancel(void *arg)
{
    (void)arg;
    GATE = future_open();
    job j = {"inner", -1, 5, 0};
    cio_task *inner = spawn(run_job, &j);
    CHECK_ERR(cio_shield(inner, &SHIELDED), 0);
    cio_task *t = spawn(await_shielded, NULL);
    yield_n(1);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_ERR(cio_await(t, NULL), -ECANCELED);
    /* The shield's outer future is cancelled, the inner task is not. */
    CHECK_EQ(cio_future_cancelled(SHIELDED), 1);
    CHECK_EQ(cio_future_done(inner), 0);
    CHECK_EQ(cio_task_cancelling(inner), 0);
    CHECK_ERR(cio_future_set_result(GATE, NULL), 0);
    CHECK_ERR(cio_await(inner, NULL), 5);
    cio_future_unref(t);
    cio_future_unref(SHIELDED);
    cio_future_unref(inner);
    cio_future_unref(GATE);
    return 0;
}

TEST(flow_shield_cancelling_the_outer_leaves_the_inner_running)
{
    run_ok(main_shield_cancel);
    CHECK_LOG(&L, "awaiter:ECANCELED inner");
}

static int main_shield_inner_cancelled(void *arg)
{
    (void)arg;
    open_futures(1);
    cio_future *outer, *none = (cio_future *)&none;
    CHECK_ERR(cio_shield(F[0], &outer), 0);
    CHECK_EQ(cio_future_cancel(F[0]), 1);
    CHECK_ERR(cio_await(outer, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(outer), 1);
    CHECK_ERR(cio_shield(NULL, &none), -EINVAL);
    CHECK(none == NULL);
    cio_future_unref(outer);
    cio_future_unref(F[0]);
    return 0;
}

TEST(flow_shield_inner_cancelled_cancels_the_outer)
{
    run_ok(main_shield_inner_cancelled);
}

/* ---------------------------------------------------- failure injection
 * One scenario through every flow call: a loop, a main task spawning
 * tasks that sleep, gather, wait_for (both ways), wait, a task group; run
 * to completion; everything freed. With the n-th allocation or system
 * call failing, each call must give a clean error the scenario passes
 * up. If the loop itself fails, the scenario cleans up as asyncio.run
 * does: cancel the tasks left and run them to their end. */

typedef struct fault_state {
    cio_future *held[16]; /* every reference main takes */
    int nheld;
    int reports;
} fault_state;

static int flow_fault_child(void *arg)
{
    int status = (int)(intptr_t)arg;
    int r = status == 100 ? cio_sleep(100) : cio_sleep(0.0005);
    if (r)
        return r;
    return status == 100 ? 0 : status;
}

static void fault_report(cio_loop *loop, const cio_error_context *ctx,
                         void *arg)
{
    (void)loop, (void)ctx;
    ((fault_state *)arg)->reports++;
}

static int fault_spawn(fault_state *st, int status, cio_task **out)
{
    int err = cio_create_task(flow_fault_child, (void *)(intptr_t)status, out);
    if (!err)
        st->held[st->nheld++] = *out;
    return err;
}

/* Each step returns 0 to go on, or the error the scenario returns. */
static int fault_steps(fault_state *st)
{
    cio_task *a, *b, *c, *d;
    int err;
    if ((err = fault_spawn(st, 1, &a)) || (err = fault_spawn(st, 2, &b)))
        return err;
    cio_result res[2];
    cio_future *ab[2] = {a, b};
    if ((err = cio_gather(ab, 2, 0, res)))
        return err;
    CHECK_EQ(res[0].status, 1);
    CHECK_EQ(res[1].status, 2);
    if ((err = fault_spawn(st, 100, &c)))
        return err;
    err = cio_wait_for(c, 0.001, NULL);
    if (err != -ETIMEDOUT)
        return err < 0 ? err : -EPROTO;
    if ((err = fault_spawn(st, 3, &d)))
        return err;
    err = cio_wait_for(d, 10, NULL);
    if (err != 3)
        return err < 0 ? err : -EPROTO;
    cio_future *f;
    if ((err = cio_future_new(NULL, &f)))
        return err;
    st->held[st->nheld++] = f;
    cio_task *e;
    if ((err = fault_spawn(st, 4, &e)))
        return err;
    cio_future *fe[2] = {f, e}, *done[2];
    size_t nd, np;
    if ((err = cio_wait(fe, 2, CIO_FIRST_COMPLETED, 10, done, &nd, NULL,
                        &np)))
        return err;
    if (nd != 1 || done[0] != e)
        return -EPROTO;
    if ((err = cio_future_result(e, NULL)) != 4)
        return err < 0 ? err : -EPROTO;
    cio_task_group *g;
    if ((err = cio_task_group_new(&g)))
        return err;
    for (int i = 0; i < 3 && !err; i++)
        err = cio_task_group_spawn(g, flow_fault_child,
                                   (void *)(intptr_t)(i == 1 ? -EPIPE : 0),
                                   NULL, NULL);
    int joined = cio_task_group_join(g);
    cio_task_group_free(g);
    if (err)
        return err;
    if (joined != -EPIPE)
        return joined < 0 ? joined : -EPROTO;
    cio_call calls[3] = {{flow_fault_child, (void *)(intptr_t)5},
                         {flow_fault_child, (void *)(intptr_t)-EPIPE},
                         {flow_fault_child, (void *)(intptr_t)6}};
    cio_result cres[3];
    if ((err = cio_gather_calls(calls, 3, 1, cres)))
        return err;
    if (cres[0].status != 5 || cres[1].status != -EPIPE || cres[2].status != 6)
        return -EPROTO;
    err = cio_gather_calls(calls, 3, 0, cres);
    return err == -EPIPE ? 0 : err < 0 ? err : -EPROTO;
}

static int flow_fault_main(void *arg)
{
    fault_state *st = arg;
    int err = fault_steps(st);
    for (int i = 0; i < st->nheld; i++)
        cio_future_unref(st->held[i]);
    st->nheld = 0;
    return err;
}

/* asyncio.run's cleanup, by hand: cancel what is left, run it to its end. */
static void fault_drain(cio_loop *loop)
{
    cio_task *left[32];
    int n = cio_all_tasks(loop, left, 32);
    CHECK(n >= 0 && n <= 32);
    for (int i = 0; i < n; i++)
        cio_task_cancel(left[i]);
    for (int i = 0; i < 1000 && cio_all_tasks(loop, NULL, 0) > 0; i++)
        cio_loop_run_once(loop, 0.01);
    CHECK_EQ(cio_all_tasks(loop, NULL, 0), 0);
}

static int flow_fault_scenario(void *arg)
{
    (void)arg;
    fault_state st = {{0}, 0, 0};
    cio_loop *loop;
    int err = cio_loop_new(&loop, NULL);
    if (err)
        return err;
    CHECK_ERR(cio_loop_set_exception_handler(loop, fault_report, &st), 0);
    cio_task *main_task;
    err = cio_task_new(loop, flow_fault_main, &st, NULL, &main_task);
    if (!err) {
        err = cio_loop_run_until_complete(loop, main_task);
        fault_drain(loop); /* main is done unless the loop failed */
        CHECK_EQ(cio_future_done(main_task), 1);
        CHECK_EQ(st.nheld, 0);
        cio_future_unref(main_task);
    }
    cio_loop_free(loop);
    return err;
}

TEST_T(flow_failing_allocations_give_clean_errors, 120)
{
    CHECK(test_fault_loop(CIO__FAULT_ALLOC, 0, flow_fault_scenario, NULL) >
          10);
}

TEST_T(flow_failing_system_calls_give_clean_errors, 120)
{
    CHECK(test_fault_loop(CIO__FAULT_SYS, ENOMEM, flow_fault_scenario, NULL) >
          5);
}

/* ------------------------------------------------------------- durations
 * One rule everywhere (cio.h, "durations"), asyncio's: a delay or timeout
 * <= 0 is already due or expired, CIO_NO_TIMEOUT never expires, NaN is
 * -EINVAL. Before it, a negative timeout meant "none": a computed
 * `deadline - now` that went negative waited forever. */

static int main_sleep_negative(void *arg)
{
    (void)arg;
    cio_task *t[2] = {spawn(interleave, "a"), spawn(interleave, "b")};
    for (int i = 0; i < 3; i++) {
        test_log_add(&L, "m%d", i);
        CHECK_ERR(cio_sleep(-1), 0); /* yields once, as sleep(0) */
    }
    CHECK_ERR(cio_gather(t, 2, 0, NULL), 0);
    unref_all(t, 2);
    return 0;
}

TEST(flow_sleep_negative_yields_once)
{
    run_ok(main_sleep_negative);
    CHECK_LOG(&L, "m0 a0 b0 m1 a1 b1 m2 a2 b2");
}

static int main_wait_for_expired(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    /* Not done: cancelled before it ever ran, at once. */
    job j = {"j", 100, 7, 0};
    cio_task *t = spawn(run_job, &j);
    CHECK_ERR(cio_wait_for(t, -0.001, NULL), -ETIMEDOUT);
    CHECK(cio_future_cancelled(t));
    CHECK(now() == 0);
    /* Done already: its outcome, even with timeout 0 (asyncio's
     * `if fut.done(): return fut.result()`). */
    job k = {"k", 0, 3, 0};
    cio_task *u = spawn(run_job, &k);
    CHECK_ERR(cio_sleep(0), 0);
    void *v = NULL;
    CHECK(cio_future_done(u));
    CHECK_ERR(cio_wait_for(u, 0, &v), 3);
    CHECK(v == &VALUES[3]);
    cio_future *f;
    CHECK_ERR(cio_future_new(NULL, &f), 0);
    CHECK_ERR(cio_future_set_error(f, -EPIPE), 0);
    CHECK_ERR(cio_wait_for(f, -INFINITY, NULL), -EPIPE);
    /* A plain future pending: cancelled, and that is the timeout. */
    cio_future *g;
    CHECK_ERR(cio_future_new(NULL, &g), 0);
    CHECK_ERR(cio_wait_for(g, 0, NULL), -ETIMEDOUT);
    CHECK(cio_future_cancelled(g));
    cio_future_unref(t);
    cio_future_unref(u);
    cio_future_unref(f);
    cio_future_unref(g);
    return 0;
}

TEST(flow_wait_for_negative_timeout_expires_at_once)
{
    run_ok(main_wait_for_expired);
    CHECK_LOG(&L, "k");
}

/* A task that catches the cancellation and returns a value instead: with
 * an expired timeout, wait_for hands that value over, as asyncio. */
static int shrugs_off_cancel(void *arg)
{
    (void)arg;
    int r = cio_sleep(100);
    cio_task_uncancel(cio_current_task());
    return r == -ECANCELED ? 9 : r;
}

static int main_wait_for_expired_result(void *arg)
{
    (void)arg;
    cio_task *t = spawn(shrugs_off_cancel, NULL);
    CHECK_ERR(cio_sleep(0), 0); /* it runs up to its sleep */
    CHECK_ERR(cio_wait_for(t, -5, NULL), 9);
    cio_future_unref(t);
    return 0;
}

TEST(flow_wait_for_expired_returns_what_the_cancelled_task_returned)
{
    run_ok(main_wait_for_expired_result);
}

static int main_wait_negative(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    job a = {"a", 0, 1, 0}, b = {"b", 100, 2, 0};
    cio_task *t[2] = {spawn(run_job, &a), spawn(run_job, &b)};
    CHECK_ERR(cio_sleep(0), 0); /* a is done, b sleeps */
    cio_future *done[2], *pending[2];
    size_t nd = 9, np = 9;
    CHECK_ERR(cio_wait(t, 2, CIO_ALL_COMPLETED, -1, done, &nd, pending, &np),
              0);
    CHECK_EQ(nd, 1);
    CHECK_EQ(np, 1);
    CHECK(done[0] == t[0] && pending[0] == t[1]);
    CHECK(now() == 0);
    /* as_completed: what is done, then the timeout. */
    cio_as_completed *it;
    cio_future *f;
    CHECK_ERR(cio_as_completed_new(t, 2, -0.5, &it), 0);
    CHECK_EQ(cio_as_completed_next(it, &f), 1);
    CHECK(f == t[0]);
    CHECK_ERR(cio_as_completed_next(it, &f), -ETIMEDOUT);
    cio_as_completed_free(it);
    CHECK(now() == 0);
    /* CIO_NO_TIMEOUT waits as long as it takes. */
    CHECK_ERR(cio_wait(t, 2, CIO_ALL_COMPLETED, CIO_NO_TIMEOUT, NULL, &nd,
                       NULL, &np),
              0);
    CHECK_EQ(nd, 2);
    CHECK(now() >= 100);
    unref_all(t, 2);
    return 0;
}

TEST(flow_wait_and_as_completed_negative_timeouts_expire_at_once)
{
    run_ok(main_wait_negative);
}

static int main_timeout_negative(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, -1), 0);
    CHECK(cio_timeout_when(&s) == -1);
    CHECK_ERR(cio_sleep(100), -ETIMEDOUT);
    CHECK(now() == 0);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    /* Expired at once means soon, as asyncio's call_soon(on_timeout):
     * before the sleep(0) that follows gets its turn, so that yield
     * already sees it. */
    CHECK_ERR(cio_timeout(&s, 0), 0);
    CHECK_ERR(cio_sleep(0), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    /* Moved into the past: the same. */
    CHECK_ERR(cio_timeout(&s, 10), 0);
    CHECK_ERR(cio_timeout_reschedule(&s, now() - 3), 0);
    CHECK_ERR(cio_sleep(0), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    /* But nothing waits in a scope that did not get to fire. */
    CHECK_ERR(cio_timeout(&s, -INFINITY), 0);
    CHECK_EQ(cio_timeout_expired(&s), 0);
    CHECK_ERR(cio_timeout_end(&s), 0);
    /* CIO_NO_TIMEOUT: none. */
    CHECK_ERR(cio_timeout(&s, CIO_NO_TIMEOUT), 0);
    CHECK_ERR(cio_sleep(1000), 0);
    CHECK_ERR(cio_timeout_end(&s), 0);
    return 0;
}

TEST(flow_timeout_negative_delay_expires_soon)
{
    run_ok(main_timeout_negative);
}

static int main_nan_everywhere(void *arg)
{
    (void)arg;
    cio_future *f;
    CHECK_ERR(cio_future_new(NULL, &f), 0);
    size_t nd, np;
    cio_as_completed *it;
    cio_timeout_scope s;
    CHECK_ERR(cio_sleep(NAN), -EINVAL);
    CHECK_ERR(cio_wait_for(f, NAN, NULL), -EINVAL);
    CHECK_ERR(cio_wait(&f, 1, CIO_ALL_COMPLETED, NAN, NULL, &nd, NULL, &np),
              -EINVAL);
    CHECK_ERR(cio_as_completed_new(&f, 1, NAN, &it), -EINVAL);
    CHECK_ERR(cio_timeout(&s, NAN), -EINVAL);
    CHECK_ERR(cio_timeout_at(&s, NAN), -EINVAL);
    CHECK_ERR(cio_timeout(&s, 10), 0);
    CHECK_ERR(cio_timeout_reschedule(&s, NAN), -EINVAL);
    CHECK(cio_timeout_when(&s) == now() + 10);
    CHECK_ERR(cio_timeout_end(&s), 0);
    cio_connection_options o = {.happy_eyeballs_delay = NAN};
    cio_transport *t;
    CHECK_ERR(cio_create_connection("127.0.0.1", "9", &(cio_protocol){0},
                                    NULL, &o, &t),
              -EINVAL);
    CHECK_ERR(cio_call_later(loop_now(), NAN, say, "x", NULL), -EINVAL);
    CHECK_ERR(cio_call_at(loop_now(), NAN, say, "x", NULL), -EINVAL);
    CHECK(!cio_future_done(f));
    cio_future_unref(f);
    return 0;
}

TEST(flow_nan_durations_are_einval)
{
    run_ok(main_nan_everywhere);
}

/* ------------------------------------------------------- bad arguments */

static int join_other_group(void *arg)
{
    return cio_task_group_join(arg); /* not its parent */
}

typedef struct flow_outside {
    cio_as_completed *it;
    int next;
    bool ran;
} flow_outside;

static void as_completed_outside_a_task(void *arg)
{
    flow_outside *o = arg;
    cio_future *f;
    o->next = cio_as_completed_next(o->it, &f);
    o->ran = true;
}

/* The flow calls' documented -EINVAL (NULL outputs and iterators, the
 * calling task or a future of another loop among the futures, a group
 * joined twice or by a task not its parent), answers for NULL groups, and
 * CIO_ENOTASK for waits outside a task; the calls that failed leave
 * nothing behind, and the ones after still work. */
static int flow_bad_arguments_main(void *arg)
{
    cio_loop *other = arg;
    cio_future *f = future_open(), *foreign, *none = (cio_future *)1;
    CHECK_ERR(cio_future_new(other, &foreign), 0);
    cio_future *me = cio_current_task();
    cio_as_completed *it = (cio_as_completed *)1;
    CHECK_ERR(cio_as_completed_new(&f, 1, CIO_NO_TIMEOUT, NULL), -EINVAL);
    CHECK_ERR(cio_as_completed_new(&foreign, 1, CIO_NO_TIMEOUT, &it), -EINVAL);
    CHECK(it == NULL);
    CHECK_ERR(cio_as_completed_new(&me, 1, CIO_NO_TIMEOUT, &it), -EDEADLK);
    CHECK_ERR(cio_as_completed_next(NULL, &none), -EINVAL);
    cio_as_completed_free(NULL);
    CHECK_ERR(cio_wait_for(NULL, 1, NULL), -EINVAL);
    CHECK_ERR(cio_shield(f, NULL), -EINVAL);
    CHECK_ERR(cio_as_completed_new(&f, 1, CIO_NO_TIMEOUT, &it), 0);
    CHECK_ERR(cio_as_completed_next(it, NULL), -EINVAL);
    flow_outside o = {.it = it};
    CHECK_ERR(cio_call_soon(loop_now(), as_completed_outside_a_task, &o, NULL),
              0);
    while (!o.ran)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(o.next, CIO_ENOTASK);
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    cio_future *got = NULL;
    CHECK_EQ(cio_as_completed_next(it, &got), 1); /* still iterates */
    CHECK(got == f);
    CHECK_EQ(cio_as_completed_next(it, &got), 0);
    cio_as_completed_free(it);

    CHECK_ERR(cio_task_group_new(NULL), -EINVAL);
    CHECK_ERR(cio_task_group_join(NULL), -EINVAL);
    CHECK_EQ(cio_task_group_size(NULL), 0);
    CHECK(cio_task_group_task(NULL, 0) == NULL);
    CHECK_EQ(cio_task_group_error_count(NULL), 0);
    cio_task *child = (cio_task *)1;
    CHECK_ERR(cio_task_group_error(NULL, 0, &child), 0);
    CHECK(child == NULL);
    cio_task_group_free(NULL);
    cio_task_group_leave(NULL);
    cio_task_group *g = NULL;
    cio_task_group_leave(&g); /* NULL *group: nothing */
    CHECK_ERR(cio_task_group_new(&g), 0);
    job j = {"kid", 0, 0, 0};
    cio_task *kid;
    CHECK_ERR(cio_task_group_spawn(g, run_job, &j, NULL, &kid), 0);
    CHECK(cio_task_group_task(g, 1) == NULL); /* out of range */
    cio_task *stranger = spawn(join_other_group, g);
    CHECK_ERR(finish(stranger), -EINVAL);
    CHECK_ERR(cio_task_group_join(g), 0);
    CHECK_ERR(cio_task_group_join(g), -EINVAL); /* joined */
    CHECK_EQ(cio_task_group_size(g), 1);
    CHECK(cio_task_group_task(g, 0) == kid);
    CHECK_LOG(&L, "kid");
    cio_task_group_free(g);
    unref_all(&f, 1);
    cio_future_unref(foreign);
    return 0;
}

TEST(flow_bad_arguments_and_calls_outside_a_task)
{
    cio_loop *other = loop_open();
    run_strict(flow_bad_arguments_main, other);
    cio_loop_free(other);
    /* No loop at all. */
    cio_as_completed *it = (cio_as_completed *)1;
    CHECK_ERR(cio_as_completed_new(NULL, 0, CIO_NO_TIMEOUT, &it), CIO_ENOTASK);
    CHECK(it == NULL);
    cio_task_group *g = (cio_task_group *)1;
    CHECK_ERR(cio_task_group_new(&g), CIO_ENOTASK);
    CHECK(g == NULL);
    CHECK_ERR(cio_wait_for(NULL, 1, NULL), CIO_ENOTASK);
}
