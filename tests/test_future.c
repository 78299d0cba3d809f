/* Futures, tested against asyncio.Future's documented behaviour: a result,
 * an error or a cancellation, InvalidStateError (-EINVAL) when a done
 * future is completed again, done-callbacks scheduled through call_soon in
 * registration order (never called synchronously), remove_done_callback's
 * count, reference counting, and "Future exception was never retrieved".
 *
 * Every test runs in its own forked process: the globals start fresh. */
#define _GNU_SOURCE
#include "util.h"

#include <stdio.h>

/* ------------------------------------------------------------- helpers */

static cio_future *future_on(cio_loop *loop)
{
    cio_future *f = NULL;
    CHECK_ERR(cio_future_new(loop, &f), 0);
    CHECK(f != NULL);
    return f;
}

/* Runs every callback that is ready now (one iteration, no waiting). */
static int run_ready(cio_loop *loop)
{
    int n = cio_loop_run_once(loop, 0);
    CHECK(n >= 0);
    return n;
}

static void log_cb(cio_future *f, void *arg)
{
    (void)f;
    test_log_add(&L, "%s", (const char *)arg);
}

static void log_cb2(cio_future *f, void *arg)
{
    (void)f;
    test_log_add(&L, "2:%s", (const char *)arg);
}

/* Logs what the future it is given looks like from inside its callback. */
static void describe_cb(cio_future *f, void *arg)
{
    void *v = NULL;
    int r = cio_future_result(f, &v);
    test_log_add(&L, "%s:done=%d:cancelled=%d:result=%d:value=%s",
                 (const char *)arg, cio_future_done(f),
                 cio_future_cancelled(f), r, v ? (const char *)v : "-");
}

/* ------------------------------------------------------------ outcomes */

TEST(future_starts_pending)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_EQ(cio_future_done(f), 0);
    CHECK_EQ(cio_future_cancelled(f), 0);
    void *v = NULL;
    CHECK_ERR(cio_future_result(f, &v), -EAGAIN); /* InvalidStateError */
    CHECK_ERR(cio_future_result(f, NULL), -EAGAIN);
    CHECK(cio_future_get_loop(f) == loop);
    cio_future_unref(f);
    cio_loop_free(loop);
}

TEST(future_set_result_completes_it_with_the_value)
{
    static int x;
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_set_result(f, &x), 0);
    CHECK_EQ(cio_future_done(f), 1);
    CHECK_EQ(cio_future_cancelled(f), 0);
    void *v = NULL;
    CHECK_ERR(cio_future_result(f, &v), 0);
    CHECK(v == &x);
    v = NULL; /* reading it again gives the same */
    CHECK_ERR(cio_future_result(f, &v), 0);
    CHECK(v == &x);
    CHECK_ERR(cio_future_result(f, NULL), 0);
    cio_future_unref(f);
    cio_loop_free(loop);
}

TEST(future_set_error_completes_it_with_the_error)
{
    static int x;
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_set_error(f, -EPIPE), 0);
    CHECK_EQ(cio_future_done(f), 1);
    CHECK_EQ(cio_future_cancelled(f), 0);
    void *v = &x;
    CHECK_ERR(cio_future_result(f, &v), -EPIPE);
    CHECK(v == NULL); /* a failed future has no value */
    cio_future_unref(f);
    cio_loop_free(loop);
}

TEST(future_set_error_refuses_what_is_not_an_error)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_set_error(f, 0), -EINVAL);
    CHECK_ERR(cio_future_set_error(f, 5), -EINVAL);
    CHECK_ERR(cio_future_set_error(f, -ECANCELED), -EINVAL); /* use cancel */
    CHECK_EQ(cio_future_done(f), 0);
    CHECK_ERR(cio_future_result(f, NULL), -EAGAIN);
    cio_future_unref(f);
    cio_loop_free(loop);
}

TEST(future_cancel_completes_it_as_cancelled)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_EQ(cio_future_cancel(f), 1);
    CHECK_EQ(cio_future_done(f), 1);
    CHECK_EQ(cio_future_cancelled(f), 1);
    void *v = &v;
    CHECK_ERR(cio_future_result(f, &v), -ECANCELED);
    CHECK(v == NULL);
    CHECK_EQ(cio_future_cancel(f), 0); /* already done: False */
    CHECK_EQ(cio_future_cancelled(f), 1);
    cio_future_unref(f);
    cio_loop_free(loop);
}

/* asyncio raises InvalidStateError for set_result / set_exception on a
 * done future; cancel() of a done future returns False. The outcome stays
 * the first one. */
TEST(future_a_done_future_refuses_a_second_outcome)
{
    static int x, y;
    cio_loop *loop = loop_open();
    cio_future *ok = future_on(loop), *bad = future_on(loop),
               *off = future_on(loop);
    CHECK_ERR(cio_future_set_result(ok, &x), 0);
    CHECK_ERR(cio_future_set_error(bad, -EIO), 0);
    CHECK_EQ(cio_future_cancel(off), 1);
    cio_future *all[] = {ok, bad, off};
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(cio_future_set_result(all[i], &y), -EINVAL);
        CHECK_ERR(cio_future_set_error(all[i], -EPIPE), -EINVAL);
        CHECK_EQ(cio_future_cancel(all[i]), 0);
    }
    void *v = NULL;
    CHECK_ERR(cio_future_result(ok, &v), 0);
    CHECK(v == &x);
    CHECK_ERR(cio_future_result(bad, NULL), -EIO);
    CHECK_ERR(cio_future_result(off, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(ok) + cio_future_cancelled(bad), 0);
    for (int i = 0; i < 3; i++)
        cio_future_unref(all[i]);
    cio_loop_free(loop);
}

TEST(future_null_arguments_are_einval)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_new(loop, NULL), -EINVAL);
    CHECK_ERR(cio_future_set_result(NULL, NULL), -EINVAL);
    CHECK_ERR(cio_future_set_error(NULL, -EIO), -EINVAL);
    CHECK_ERR(cio_future_cancel(NULL), -EINVAL);
    CHECK_EQ(cio_future_done(NULL), 0);
    CHECK_EQ(cio_future_cancelled(NULL), 0);
    CHECK_ERR(cio_future_result(NULL, NULL), -EINVAL);
    CHECK_ERR(cio_future_add_done_callback(NULL, log_cb, "x"), -EINVAL);
    CHECK_ERR(cio_future_add_done_callback(f, NULL, "x"), -EINVAL);
    CHECK(cio_future_get_loop(NULL) == NULL);
    CHECK(cio_future_ref(NULL) == NULL);
    cio_future_unref(NULL);
    CHECK_EQ(cio_future_done(f), 0);
    cio_future_unref(f);
    cio_loop_free(loop);
}

/* ------------------------------------------------------------- loops */

static cio_future *made_in_callback;

static void make_future_with_no_loop(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_future_new(NULL, &made_in_callback), 0);
}

TEST(future_new_takes_the_running_loop_or_needs_one)
{
    cio_future *f = (cio_future *)&f;
    CHECK_ERR(cio_future_new(NULL, &f), -EINVAL); /* no running loop */
    CHECK(f == NULL);
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, make_future_with_no_loop, NULL, NULL), 0);
    run_ready(loop);
    CHECK(made_in_callback != NULL);
    CHECK(cio_future_get_loop(made_in_callback) == loop);
    cio_future_unref(made_in_callback);
    cio_loop_free(loop);
}

/* ------------------------------------------------------ done-callbacks */

TEST(future_done_callbacks_are_scheduled_not_called)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, "a"), 0);
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    CHECK_LOG(&L, ""); /* asyncio: call_soon, never synchronously */
    CHECK_EQ(run_ready(loop), 1);
    CHECK_LOG(&L, "a");
    CHECK_EQ(run_ready(loop), 0); /* and exactly once */
    CHECK_LOG(&L, "a");
    cio_future_unref(f);
    cio_loop_free(loop);
}

/* The callbacks join the ready queue when the future completes, in the
 * order they were added: after what was scheduled before, before what is
 * scheduled after. */
TEST(future_done_callbacks_run_in_registration_order_via_call_soon)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, "a"), 0);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, "b"), 0);
    CHECK_ERR(cio_call_soon(loop, say, "before", NULL), 0);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, "c"), 0);
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "after", NULL), 0);
    run_ready(loop);
    CHECK_LOG(&L, "before a b c after");
    cio_future_unref(f);
    cio_loop_free(loop);
}

TEST(future_done_callbacks_see_each_outcome)
{
    static char val[] = "v";
    cio_loop *loop = loop_open();
    cio_future *ok = future_on(loop), *bad = future_on(loop),
               *off = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(ok, describe_cb, "ok"), 0);
    CHECK_ERR(cio_future_add_done_callback(bad, describe_cb, "bad"), 0);
    CHECK_ERR(cio_future_add_done_callback(off, describe_cb, "off"), 0);
    CHECK_ERR(cio_future_set_result(ok, val), 0);
    CHECK_ERR(cio_future_set_error(bad, -5), 0);
    CHECK_EQ(cio_future_cancel(off), 1);
    run_ready(loop);
    CHECK_LOG(&L, "ok:done=1:cancelled=0:result=0:value=v "
                  "bad:done=1:cancelled=0:result=-5:value=- "
                  "off:done=1:cancelled=1:result=-125:value=-");
    cio_future_unref(ok);
    cio_future_unref(bad);
    cio_future_unref(off);
    cio_loop_free(loop);
}

static cio_future *seen_future;
static void *seen_arg;

static void remember_cb(cio_future *f, void *arg)
{
    seen_future = f;
    seen_arg = arg;
}

TEST(future_done_callback_receives_the_future_and_its_arg)
{
    static int arg;
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(f, remember_cb, &arg), 0);
    CHECK_EQ(cio_future_cancel(f), 1);
    run_ready(loop);
    CHECK(seen_future == f);
    CHECK(seen_arg == &arg);
    cio_future_unref(f);
    cio_loop_free(loop);
}

/* asyncio: "If the Future is already done when this method is called, the
 * callback is scheduled with loop.call_soon()". */
TEST(future_callback_added_to_a_done_future_is_scheduled)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "before", NULL), 0);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, "late"), 0);
    CHECK_LOG(&L, "");
    CHECK_ERR(cio_call_soon(loop, say, "after", NULL), 0);
    run_ready(loop);
    CHECK_LOG(&L, "before late after");
    cio_future_unref(f);
    cio_loop_free(loop);
}

static void add_from_callback(cio_future *f, void *arg)
{
    test_log_add(&L, "first");
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, arg), 0);
}

TEST(future_callback_added_by_a_callback_runs_next_iteration)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(f, add_from_callback, "second"), 0);
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    CHECK_EQ(run_ready(loop), 1);
    CHECK_LOG(&L, "first");
    CHECK_EQ(run_ready(loop), 1);
    CHECK_LOG(&L, "first second");
    cio_future_unref(f);
    cio_loop_free(loop);
}

/* asyncio: "Remove callback from the callbacks list. Returns the number of
 * callbacks removed, which is typically 1, unless a callback was added more
 * than once." A registration matches on both callback and argument. */
TEST(future_remove_done_callback_counts_every_registration)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    static char a[] = "a", b[] = "b";
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, a), 0);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, b), 0);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, a), 0);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb2, a), 0);
    CHECK_EQ(cio_future_remove_done_callback(f, log_cb, a), 2);
    CHECK_EQ(cio_future_remove_done_callback(f, log_cb, a), 0);
    CHECK_EQ(cio_future_remove_done_callback(f, log_cb2, b), 0);
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    run_ready(loop);
    CHECK_LOG(&L, "b 2:a");
    cio_future_unref(f);
    cio_loop_free(loop);
}

/* Once the future completes its callbacks are already scheduled (asyncio
 * clears its list then): removing one is too late and returns 0. */
TEST(future_remove_after_completion_finds_nothing)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, "a"), 0);
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    CHECK_EQ(cio_future_remove_done_callback(f, log_cb, "a"), 0);
    run_ready(loop);
    CHECK_LOG(&L, "a");
    cio_future_unref(f);
    cio_loop_free(loop);
}

/* ------------------------------------------------------ reference counts */

TEST(future_references_keep_it_alive_until_the_last_goes)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK(cio_future_ref(f) == f);
    CHECK(cio_future_ref(f) == f);
    cio_future_unref(f);
    cio_future_unref(f);
    /* still ours: the creator's reference is left */
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    CHECK_EQ(cio_future_done(f), 1);
    cio_future_unref(f); /* freed: the harness checks nothing leaked */
    cio_loop_free(loop);
}

TEST(future_a_scheduled_callback_keeps_its_future_alive)
{
    static char val[] = "kept";
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(f, describe_cb, "cb"), 0);
    CHECK_ERR(cio_future_set_result(f, val), 0);
    cio_future_unref(f); /* the creator lets go before the callback ran */
    run_ready(loop);
    CHECK_LOG(&L, "cb:done=1:cancelled=0:result=0:value=kept");
    cio_loop_free(loop);
}

TEST(future_released_while_pending_drops_its_callbacks)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, "never"), 0);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, "never"), 0);
    cio_future_unref(f);
    CHECK_EQ(run_ready(loop), 0);
    CHECK_LOG(&L, "");
    cio_loop_free(loop);
}

/* asyncio drops the ready queue on close; cio must also free what each
 * dropped done-callback held (its registration and the future's
 * reference): nothing the library owns outlives the loop. */
TEST(future_closing_the_loop_frees_scheduled_done_callbacks)
{
    cio_loop *loop = loop_open();
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(f, log_cb, "never"), 0);
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    cio_future_unref(f);
    cio_loop_free(loop); /* the callback never ran */
    CHECK_LOG(&L, "");
}

/* ------------------------------------------ "exception was never retrieved" */

TEST(future_unretrieved_error_is_reported_when_released)
{
    static report rep;
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &rep), 0);
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_set_error(f, -EPIPE), 0);
    cio_future *ref = cio_future_ref(f);
    cio_future_unref(f);
    CHECK_EQ(rep.count, 0); /* not while someone holds it */
    cio_future_unref(ref);
    CHECK_EQ(rep.count, 1);
    CHECK_STR(rep.message, "Future exception was never retrieved");
    CHECK_ERR(rep.error, -EPIPE);
    CHECK_STR(rep.what, "future");
    CHECK(rep.object == (void *)f);
    cio_loop_free(loop);
    CHECK_EQ(rep.count, 1);
}

TEST(future_retrieved_error_is_not_reported)
{
    static report rep;
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &rep), 0);
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_set_error(f, -EPIPE), 0);
    CHECK_ERR(cio_future_result(f, NULL), -EPIPE);
    cio_future_unref(f);
    cio_loop_free(loop);
    CHECK_EQ(rep.count, 0);
}

TEST(future_error_retrieved_by_a_done_callback_is_not_reported)
{
    static report rep;
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &rep), 0);
    cio_future *f = future_on(loop);
    CHECK_ERR(cio_future_add_done_callback(f, describe_cb, "cb"), 0);
    CHECK_ERR(cio_future_set_error(f, -EIO), 0);
    cio_future_unref(f);
    run_ready(loop);
    CHECK_LOG(&L, "cb:done=1:cancelled=0:result=-5:value=-");
    cio_loop_free(loop);
    CHECK_EQ(rep.count, 0);
}

TEST(future_results_and_cancellations_are_never_reported)
{
    static report rep;
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &rep), 0);
    cio_future *ok = future_on(loop), *off = future_on(loop),
               *pending = future_on(loop);
    CHECK_ERR(cio_future_set_result(ok, NULL), 0);
    CHECK_EQ(cio_future_cancel(off), 1);
    cio_future_unref(ok);
    cio_future_unref(off);
    cio_future_unref(pending);
    cio_loop_free(loop);
    CHECK_EQ(rep.count, 0);
}

/* ------------------------------------------------------ awaiting tasks */

static cio_future *awaited;

static int await_and_log(void *arg)
{
    void *v = NULL;
    int r = cio_await(awaited, &v);
    test_log_add(&L, "%s:%d:%s", (const char *)arg, r, v ? (char *)v : "-");
    return 0;
}

/* A task awaiting a future is one more done-callback (asyncio's
 * Task.__wakeup): it resumes in registration order among the callbacks. */
TEST(future_wakes_awaiting_tasks_in_registration_order)
{
    static char val[] = "v";
    cio_loop *loop = loop_open();
    awaited = future_on(loop);
    cio_task *t1, *t2;
    CHECK_ERR(cio_future_add_done_callback(awaited, log_cb, "cb1"), 0);
    CHECK_ERR(cio_task_new(loop, await_and_log, "task1", NULL, &t1), 0);
    run_ready(loop); /* task1 starts and parks in cio_await */
    CHECK_ERR(cio_future_add_done_callback(awaited, log_cb, "cb2"), 0);
    CHECK_ERR(cio_task_new(loop, await_and_log, "task2", NULL, &t2), 0);
    run_ready(loop);
    CHECK_ERR(cio_future_add_done_callback(awaited, log_cb, "cb3"), 0);
    CHECK_LOG(&L, "");
    CHECK_ERR(cio_future_set_result(awaited, val), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, t2), 0);
    CHECK_LOG(&L, "cb1 task1:0:v cb2 task2:0:v cb3");
    CHECK_EQ(cio_future_done(t1), 1);
    cio_future_unref(t1);
    cio_future_unref(t2);
    cio_future_unref(awaited);
    cio_loop_free(loop);
}

/* --------------------------------------------------- failure injection */

static int future_fault_scenario(void *arg)
{
    (void)arg;
    cio_loop *loop;
    int err = cio_loop_new(&loop, NULL);
    if (err)
        return err;
    cio_future *f = NULL;
    int ran = 0;
    err = cio_future_new(loop, &f);
    for (int i = 0; i < 4 && !err; i++)
        err = cio_future_add_done_callback(f, log_cb, "x");
    if (!err)
        err = cio_future_set_result(f, NULL);
    if (!err) {
        ran = cio_loop_run_once(loop, 0);
        if (ran < 0)
            err = ran;
        else
            CHECK_EQ(ran, 4);
    }
    cio_future_unref(f);
    cio_loop_free(loop);
    return err;
}

TEST_T(future_failing_allocations_give_clean_errors, 60)
{
    CHECK(test_fault_loop(CIO__FAULT_ALLOC, 0, future_fault_scenario, NULL) >
          3);
}
