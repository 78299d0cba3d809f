/* Tasks, tested against asyncio.Task's documented behaviour and cio.h's
 * deliberate differences: a task's status and value, current_task,
 * all_tasks, names, cancellation (level-triggered in cio: once cancelled,
 * every suspension point returns -ECANCELED until the task returns or
 * uncancels), cancelling()/uncancel(), "Task exception was never
 * retrieved", asyncio.run (cio_run), run_until_complete and closing a loop
 * with tasks still pending.
 *
 * Every test runs in its own forked process: the globals start fresh. */
#define _GNU_SOURCE
#include "util.h"

#include <pthread.h>
#include <stdio.h>

/* ------------------------------------------------------------- helpers */

static cio_task *spawn_named(cio_task_fn fn, void *arg, const char *name)
{
    cio_task *t = NULL;
    cio_task_options opts = {.name = name};
    CHECK_ERR(cio_task_new(NULL, fn, arg, &opts, &t), 0);
    return t;
}

static int RAN;          /* how many task bodies started */

static int return_arg_counted(void *arg)
{
    RAN++;
    return (int)(intptr_t)arg;
}

static int wait_gate(void *arg)
{
    RAN++;
    int r = cio_await(GATE, NULL);
    if (arg)
        test_log_add(&L, "%s:%s", (const char *)arg, code(r));
    return r;
}

static int sleep_long(void *arg)
{
    RAN++;
    int r = cio_sleep(100);
    if (arg)
        test_log_add(&L, "%s:%s", (const char *)arg, code(r));
    return r;
}

/* ------------------------------------------------------------- results */

static int X, Y;

static int value_seven(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_task_set_value(&X), 0);
    return 7;
}

static int main_result(void *arg)
{
    (void)arg;
    cio_task *t = spawn(value_seven, NULL);
    void *v = NULL;
    CHECK_ERR(cio_await(t, &v), 7);
    CHECK(v == &X);
    v = NULL;
    CHECK_ERR(cio_future_result(t, &v), 7);
    CHECK(v == &X);
    CHECK_EQ(cio_future_done(t), 1);
    CHECK_EQ(cio_future_cancelled(t), 0);
    cio_future_unref(t);
    return 0;
}

TEST(task_result_is_its_status_and_value)
{
    CHECK_ERR(cio_run(main_result, NULL), 0);
}

static int fail_with_value(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_task_set_value(&Y), 0);
    CHECK_ERR(cio_sleep(0), 0);
    return -EPIPE;
}

static int main_error(void *arg)
{
    (void)arg;
    cio_task *t = spawn(fail_with_value, NULL);
    void *v = &v;
    CHECK_ERR(cio_await(t, &v), -EPIPE);
    CHECK(v == NULL); /* an error carries no value */
    CHECK_EQ(cio_future_cancelled(t), 0);
    CHECK_ERR(cio_future_result(t, NULL), -EPIPE);
    cio_future_unref(t);
    return 0;
}

TEST(task_error_status_is_its_error)
{
    CHECK_ERR(cio_run(main_error, NULL), 0);
}

static int main_positive(void *arg)
{
    (void)arg;
    cio_task *t = spawn(return_arg_counted, (void *)(intptr_t)3);
    CHECK_ERR(cio_await(t, NULL), 3);
    cio_future_unref(t);
    return 0;
}

TEST(task_positive_status_passes_through)
{
    CHECK_ERR(cio_run(main_positive, NULL), 0);
}

static int main_returns_ecanceled(void *arg)
{
    (void)arg;
    cio_task *t = spawn(return_arg_counted, (void *)(intptr_t)-ECANCELED);
    CHECK_ERR(cio_await(t, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(t), 1);
    cio_future_unref(t);
    return 0;
}

TEST(task_returning_ecanceled_makes_it_cancelled)
{
    CHECK_ERR(cio_run(main_returns_ecanceled, NULL), 0);
}

static int set_value_outside_check(void *arg)
{
    (void)arg;
    return 0;
}

TEST(task_calls_outside_a_task_are_enotask)
{
    CHECK_ERR(cio_task_set_value(&X), CIO_ENOTASK);
    CHECK_ERR(cio_sleep(0), CIO_ENOTASK);
    CHECK_ERR(cio_create_task(set_value_outside_check, NULL, NULL), -EINVAL);
    cio_task *t = (cio_task *)&t;
    CHECK_ERR(cio_create_task(set_value_outside_check, NULL, &t), -EINVAL);
    CHECK(t == NULL);
    t = (cio_task *)&t;
    CHECK_ERR(cio_task_new(NULL, set_value_outside_check, NULL, NULL, &t),
              -EINVAL);
    CHECK(t == NULL);
    cio_loop *loop = loop_open();
    cio_future *f = NULL;
    CHECK_ERR(cio_future_new(loop, &f), 0);
    void *v = &v;
    CHECK_ERR(cio_await(f, &v), CIO_ENOTASK);
    CHECK(v == NULL);
    CHECK_ERR(cio_task_new(loop, NULL, NULL, NULL, NULL), -EINVAL);
    /* A plain future is not a task. */
    CHECK_ERR(cio_task_cancel(f), -EINVAL);
    CHECK_ERR(cio_task_uncancel(f), -EINVAL);
    CHECK_ERR(cio_task_cancelling(f), -EINVAL);
    cio_future_unref(f);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_ERR(cio_task_new(loop, set_value_outside_check, NULL, NULL, NULL),
              -ESHUTDOWN);
    cio_loop_free(loop);
}

static int set_result_on_self(void *arg)
{
    (void)arg;
    cio_task *me = cio_current_task();
    /* asyncio: Task does not support set_result() / set_exception(). */
    CHECK_ERR(cio_future_set_result(me, NULL), -EINVAL);
    CHECK_ERR(cio_future_set_error(me, -EIO), -EINVAL);
    CHECK_ERR(cio_await(NULL, NULL), -EINVAL);
    return 4;
}

TEST(task_is_completed_only_by_its_function)
{
    CHECK_ERR(cio_run(set_result_on_self, NULL), 4);
}

/* --------------------------------------------------- scheduling order */

static int log_and_return(void *arg)
{
    test_log_add(&L, "%s", (const char *)arg);
    return 0;
}

static int main_order(void *arg)
{
    (void)arg;
    cio_task *a = spawn(log_and_return, "a");
    cio_task *b = spawn(log_and_return, "b");
    cio_task *c = spawn(log_and_return, "c");
    test_log_add(&L, "created"); /* create_task only schedules */
    CHECK_ERR(cio_sleep(0), 0);
    test_log_add(&L, "main");
    CHECK_EQ(cio_future_done(a) + cio_future_done(b) + cio_future_done(c), 3);
    cio_future_unref(a);
    cio_future_unref(b);
    cio_future_unref(c);
    return 0;
}

TEST(task_starts_on_a_later_iteration_in_creation_order)
{
    CHECK_ERR(cio_run(main_order, NULL), 0);
    CHECK_LOG(&L, "created a b c main");
}

static cio_future *DONE_ALREADY;

static int await_done_then_log(void *arg)
{
    (void)arg;
    test_log_add(&L, "a1");
    CHECK_ERR(cio_await(DONE_ALREADY, NULL), 0);
    test_log_add(&L, "a2");
    return 0;
}

static int main_await_done(void *arg)
{
    (void)arg;
    DONE_ALREADY = future_open();
    CHECK_ERR(cio_future_set_result(DONE_ALREADY, NULL), 0);
    cio_task *a = spawn(await_done_then_log, NULL);
    cio_task *b = spawn(log_and_return, "b");
    CHECK_ERR(cio_await(b, NULL), 0);
    CHECK_EQ(cio_future_done(a), 1);
    cio_future_unref(a);
    cio_future_unref(b);
    cio_future_unref(DONE_ALREADY);
    return 0;
}

/* `await fut` on a done future returns at once, without yielding. */
TEST(task_await_of_a_done_future_does_not_suspend)
{
    CHECK_ERR(cio_run(main_await_done, NULL), 0);
    CHECK_LOG(&L, "a1 a2 b");
}

static void log_task_done(cio_future *f, void *arg)
{
    test_log_add(&L, "%s:done:%s", (const char *)arg,
                 code(cio_future_result(f, NULL)));
}

static int main_task_callbacks(void *arg)
{
    (void)arg;
    cio_task *t = spawn(return_arg_counted, (void *)(intptr_t)6);
    CHECK_ERR(cio_future_add_done_callback(t, log_task_done, "t"), 0);
    CHECK_ERR(cio_await(t, NULL), 6);
    test_log_add(&L, "main");
    CHECK_ERR(cio_sleep(0), 0);
    cio_future_unref(t);
    return 0;
}

/* A task is a future: its done-callbacks run after it finishes, in
 * registration order with the task that awaited it (registered later). */
TEST(task_done_callbacks_run_when_it_finishes)
{
    CHECK_ERR(cio_run(main_task_callbacks, NULL), 0);
    CHECK_LOG(&L, "t:done:6 main");
}

/* ------------------------------------------------ current and all tasks */

static cio_task *SEEN_CURRENT;

static int remember_current(void *arg)
{
    (void)arg;
    SEEN_CURRENT = cio_current_task();
    return 0;
}

static cio_task *CURRENT_IN_CALLBACK = (cio_task *)&CURRENT_IN_CALLBACK;

static void current_in_callback(void *arg)
{
    (void)arg;
    CURRENT_IN_CALLBACK = cio_current_task();
}

static int main_current(void *arg)
{
    (void)arg;
    cio_task *me = cio_current_task();
    CHECK(me != NULL);
    cio_task *t = spawn(remember_current, NULL);
    CHECK(cio_current_task() == me);
    CHECK_ERR(cio_call_soon(cio_get_running_loop(), current_in_callback, NULL,
                            NULL),
              0);
    CHECK_ERR(cio_await(t, NULL), 0);
    CHECK(SEEN_CURRENT == t);
    CHECK(cio_current_task() == me); /* back in main after the switch */
    CHECK(CURRENT_IN_CALLBACK == NULL); /* a plain callback is no task */
    cio_future_unref(t);
    return 0;
}

TEST(task_current_task_inside_and_outside)
{
    CHECK(cio_current_task() == NULL);
    CHECK_ERR(cio_run(main_current, NULL), 0);
    CHECK(cio_current_task() == NULL);
}

static int contains(cio_task **list, int n, cio_task *t)
{
    for (int i = 0; i < n; i++)
        if (list[i] == t)
            return 1;
    return 0;
}

static int main_all_tasks(void *arg)
{
    (void)arg;
    GATE = future_open();
    cio_task *me = cio_current_task();
    cio_task *kids[3];
    for (int i = 0; i < 3; i++)
        kids[i] = spawn(wait_gate, NULL);
    cio_task *list[8] = {0};
    /* Not yet started tasks are unfinished too. */
    CHECK_EQ(cio_all_tasks(NULL, list, 8), 4);
    CHECK(contains(list, 4, me));
    for (int i = 0; i < 3; i++)
        CHECK(contains(list, 4, kids[i]));
    yield_n(1);
    CHECK_EQ(cio_all_tasks(cio_get_running_loop(), list, 8), 4);
    /* A short array gets what fits; the count is still all of them. */
    cio_task *sentinel = (cio_task *)&sentinel;
    cio_task *few[3] = {NULL, NULL, sentinel};
    CHECK_EQ(cio_all_tasks(NULL, few, 2), 4);
    CHECK(few[0] != NULL && few[1] != NULL);
    CHECK(few[2] == sentinel);
    CHECK_EQ(cio_all_tasks(NULL, NULL, 0), 4);
    CHECK_ERR(cio_future_set_result(GATE, NULL), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(cio_await(kids[i], NULL), 0);
        cio_future_unref(kids[i]);
    }
    CHECK_EQ(cio_all_tasks(NULL, list, 8), 1);
    CHECK(list[0] == me);
    cio_future_unref(GATE);
    return 0;
}

TEST(task_all_tasks_lists_the_unfinished_ones)
{
    CHECK_ERR(cio_run(main_all_tasks, NULL), 0);
}

/* ----------------------------------------------------------------- names */

static int name_number(const char *name)
{
    int n = -1;
    if (!name || strncmp(name, "Task-", 5) != 0 ||
        sscanf(name + 5, "%d", &n) != 1)
        return -1;
    return n;
}

TEST(task_default_names_are_task_n)
{
    cio_loop *loop = loop_open();
    cio_task *a, *b, *c;
    CHECK_ERR(cio_task_new(loop, return_arg_counted, NULL, NULL, &a), 0);
    CHECK_ERR(cio_task_new(loop, return_arg_counted, NULL, NULL, &b), 0);
    CHECK_ERR(cio_task_new(loop, return_arg_counted, NULL,
                           &(cio_task_options){.name = NULL}, &c),
              0);
    int na = name_number(cio_task_get_name(a));
    int nb = name_number(cio_task_get_name(b));
    int nc = name_number(cio_task_get_name(c));
    CHECK(na >= 1);
    CHECK(nb > na);
    CHECK(nc > nb);
    CHECK_ERR(cio_loop_run_until_complete(loop, c), 0);
    CHECK_EQ(RAN, 3);
    /* The name outlives the run, for as long as the task lives. */
    CHECK_EQ(name_number(cio_task_get_name(a)), na);
    cio_future_unref(a);
    cio_future_unref(b);
    cio_future_unref(c);
    cio_loop_free(loop);
}

static int log_own_name(void *arg)
{
    (void)arg;
    test_log_add(&L, "%s", cio_task_get_name(cio_current_task()));
    return 0;
}

TEST(task_names_from_options_and_set_name_are_copied)
{
    cio_loop *loop = loop_open();
    char buf[16] = "worker";
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, log_own_name, NULL,
                           &(cio_task_options){.name = buf}, &t),
              0);
    strcpy(buf, "changed");
    CHECK_STR(cio_task_get_name(t), "worker");
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 0);
    strcpy(buf, "renamed");
    CHECK_ERR(cio_task_set_name(t, buf), 0);
    strcpy(buf, "again");
    CHECK_STR(cio_task_get_name(t), "renamed");
    CHECK_ERR(cio_task_set_name(t, NULL), -EINVAL);
    CHECK_STR(cio_task_get_name(t), "renamed");
    CHECK_LOG(&L, "worker");
    cio_future_unref(t);
    cio_loop_free(loop);
}

/* ----------------------------------------------------------- cancelling */

static int cancelled_then_recovers(void *arg)
{
    (void)arg;
    cio_task *me = cio_current_task();
    test_log_add(&L, "sleep:%s", code(cio_sleep(10)));
    /* Level-triggered: every suspension point now says ECANCELED. */
    test_log_add(&L, "yield:%s", code(cio_sleep(0)));
    test_log_add(&L, "sleep:%s", code(cio_sleep(0.001)));
    test_log_add(&L, "await:%s", code(cio_await(GATE, NULL)));
    test_log_add(&L, "cancelling:%d", cio_task_cancelling(me));
    test_log_add(&L, "uncancel:%d", cio_task_uncancel(me));
    /* Suspension points work again: cleanup may await. */
    test_log_add(&L, "yield:%s", code(cio_sleep(0)));
    test_log_add(&L, "sleep:%s", code(cio_sleep(0.001)));
    CHECK_ERR(cio_task_set_value(&X), 0);
    return 5;
}

static int main_cancel_sleeper(void *arg)
{
    (void)arg;
    GATE = future_open();
    cio_task *t = spawn(cancelled_then_recovers, NULL);
    yield_n(1); /* it starts and sleeps */
    CHECK_EQ(cio_task_cancelling(t), 0);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_EQ(cio_task_cancelling(t), 1);
    CHECK_EQ(cio_future_done(t), 0); /* cancel only requests */
    void *v = NULL;
    /* It caught the cancellation and returned normally: not cancelled. */
    CHECK_ERR(cio_await(t, &v), 5);
    CHECK(v == &X);
    CHECK_EQ(cio_future_cancelled(t), 0);
    CHECK_EQ(cio_future_done(GATE), 0);
    cio_future_unref(t);
    cio_future_unref(GATE);
    return 0;
}

TEST(task_cancel_is_level_triggered_until_uncancel)
{
    CHECK_ERR(cio_run(main_cancel_sleeper, NULL), 0);
    CHECK_LOG(&L, "sleep:ECANCELED yield:ECANCELED sleep:ECANCELED "
                  "await:ECANCELED cancelling:1 uncancel:0 yield:0 sleep:0");
}

static int count_requests(void *arg)
{
    (void)arg;
    cio_task *me = cio_current_task();
    test_log_add(&L, "await:%s", code(cio_await(GATE, NULL)));
    test_log_add(&L, "cancelling:%d", cio_task_cancelling(me));
    test_log_add(&L, "uncancel:%d", cio_task_uncancel(me));
    test_log_add(&L, "yield:%s", code(cio_sleep(0))); /* one request left */
    test_log_add(&L, "uncancel:%d", cio_task_uncancel(me));
    test_log_add(&L, "yield:%s", code(cio_sleep(0)));
    test_log_add(&L, "uncancel:%d", cio_task_uncancel(me)); /* stays at 0 */
    return 0;
}

static int main_cancel_counts(void *arg)
{
    (void)arg;
    GATE = future_open();
    cio_task *t = spawn(count_requests, NULL);
    yield_n(1);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_EQ(cio_task_cancelling(t), 2);
    CHECK_ERR(cio_await(t, NULL), 0);
    CHECK_EQ(cio_future_cancelled(t), 0);
    /* Done: cancel() returns False and changes nothing. */
    CHECK_EQ(cio_task_cancel(t), 0);
    CHECK_EQ(cio_task_cancelling(t), 0);
    CHECK_ERR(cio_future_result(t, NULL), 0);
    cio_future_unref(t);
    cio_future_unref(GATE);
    return 0;
}

TEST(task_cancelling_counts_requests_and_uncancel_withdraws_one)
{
    CHECK_ERR(cio_run(main_cancel_counts, NULL), 0);
    CHECK_LOG(&L, "await:ECANCELED cancelling:2 uncancel:1 yield:ECANCELED "
                  "uncancel:0 yield:0 uncancel:0");
}

static int cancel_self(void *arg)
{
    (void)arg;
    cio_task *me = cio_current_task();
    CHECK_EQ(cio_task_cancel(me), 1);
    test_log_add(&L, "running"); /* cancel() does not stop the caller */
    int r = cio_sleep(0);
    test_log_add(&L, "yield:%s", code(r));
    return r;
}

static int main_cancel_self(void *arg)
{
    (void)arg;
    cio_task *t = spawn(cancel_self, NULL);
    CHECK_ERR(cio_await(t, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(t), 1);
    cio_future_unref(t);
    return 0;
}

TEST(task_cancelling_itself_hits_its_next_suspension_point)
{
    CHECK_ERR(cio_run(main_cancel_self, NULL), 0);
    CHECK_LOG(&L, "running yield:ECANCELED");
}

static int main_cancel_before_start(void *arg)
{
    (void)arg;
    cio_task *t = spawn(return_arg_counted, NULL);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_ERR(cio_await(t, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(t), 1);
    CHECK_EQ(RAN, 0); /* its function never ran */
    cio_future_unref(t);
    return 0;
}

TEST(task_cancelled_before_it_starts_never_runs)
{
    CHECK_ERR(cio_run(main_cancel_before_start, NULL), 0);
    /* Outside a running loop too. */
    cio_loop *loop = loop_open();
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, return_arg_counted, NULL, NULL, &t), 0);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_ERR(cio_loop_run_until_complete(loop, t), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(t), 1);
    CHECK_EQ(RAN, 0);
    cio_future_unref(t);
    cio_loop_free(loop);
}

static int main_cancel_awaiting_future(void *arg)
{
    (void)arg;
    GATE = future_open();
    cio_task *t = spawn(wait_gate, "t");
    yield_n(1);
    CHECK_EQ(cio_task_cancel(t), 1);
    /* asyncio's Task.cancel() cancels the future it waits for, at once. */
    CHECK_EQ(cio_future_cancelled(GATE), 1);
    CHECK_ERR(cio_await(t, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(t), 1);
    cio_future_unref(t);
    cio_future_unref(GATE);
    return 0;
}

TEST(task_cancelling_a_task_cancels_the_future_it_awaits)
{
    CHECK_ERR(cio_run(main_cancel_awaiting_future, NULL), 0);
    CHECK_LOG(&L, "t:ECANCELED");
}

static cio_task *INNER;

static int inner_with_cleanup(void *arg)
{
    (void)arg;
    int r = cio_sleep(100);
    test_log_add(&L, "inner:%s", code(r));
    cio_task_uncancel(cio_current_task());
    yield_n(3); /* cleanup that awaits */
    CHECK_ERR(cio_sleep(0.001), 0);
    test_log_add(&L, "inner:cleaned");
    return r;
}

static int outer_awaits_inner(void *arg)
{
    (void)arg;
    int r = cio_await(INNER, NULL);
    test_log_add(&L, "outer:%s", code(r));
    return r;
}

static int main_cancel_chain(void *arg)
{
    (void)arg;
    INNER = spawn(inner_with_cleanup, NULL);
    cio_task *outer = spawn(outer_awaits_inner, NULL);
    yield_n(1);
    CHECK_EQ(cio_task_cancel(outer), 1);
    CHECK_EQ(cio_task_cancelling(INNER), 1); /* passed on at once */
    CHECK_ERR(cio_await(outer, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(outer), 1);
    CHECK_EQ(cio_future_cancelled(INNER), 1);
    cio_future_unref(outer);
    cio_future_unref(INNER);
    return 0;
}

/* The outer task resumes only once the inner one has finished. */
TEST(task_cancelling_a_task_that_awaits_a_task_cancels_and_waits_for_it)
{
    CHECK_ERR(cio_run(main_cancel_chain, NULL), 0);
    CHECK_LOG(&L, "inner:ECANCELED inner:cleaned outer:ECANCELED");
}

static int inner_ignores_cancel(void *arg)
{
    (void)arg;
    test_log_add(&L, "inner:%s", code(cio_sleep(100)));
    cio_task_uncancel(cio_current_task());
    CHECK_ERR(cio_sleep(0), 0);
    return 7;
}

static int main_inner_ignores(void *arg)
{
    (void)arg;
    INNER = spawn(inner_ignores_cancel, NULL);
    cio_task *outer = spawn(outer_awaits_inner, NULL);
    yield_n(1);
    CHECK_EQ(cio_task_cancel(outer), 1);
    /* cio, level-triggered: the cancelled outer task's await says
     * ECANCELED even though the inner one swallowed it and succeeded. */
    CHECK_ERR(cio_await(outer, NULL), -ECANCELED);
    CHECK_ERR(cio_future_result(INNER, NULL), 7);
    CHECK_EQ(cio_future_cancelled(INNER), 0);
    cio_future_unref(outer);
    cio_future_unref(INNER);
    return 0;
}

TEST(task_cancelled_awaiter_of_a_task_that_swallows_it_sees_ecanceled)
{
    CHECK_ERR(cio_run(main_inner_ignores, NULL), 0);
    CHECK_LOG(&L, "inner:ECANCELED outer:ECANCELED");
}

static int await_self(void *arg)
{
    (void)arg;
    return cio_await(cio_current_task(), NULL);
}

TEST(task_awaiting_itself_is_edeadlk)
{
    CHECK_ERR(cio_run(await_self, NULL), -EDEADLK);
}

/* ---------------------------------------- "Task exception was never ..." */

static int main_unretrieved(void *arg)
{
    (void)arg;
    record_here();
    CHECK_ERR(cio_task_new(NULL, return_arg_counted, (void *)(intptr_t)-EPIPE,
                           &(cio_task_options){.name = "doomed"}, NULL),
              0);
    for (int i = 0; i < 10 && REP.count == 0; i++)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_EQ(REP.count, 1);
    CHECK_STR(REP.message, "Task exception was never retrieved");
    CHECK_STR(REP.what, "task");
    CHECK_STR(REP.name, "doomed");
    CHECK_ERR(REP.error, -EPIPE);
    return 0;
}

TEST(task_unretrieved_error_is_reported_with_the_task_name)
{
    CHECK_ERR(cio_run(main_unretrieved, NULL), 0);
    CHECK_EQ(REP.count, 1);
}

static int main_held_unretrieved(void *arg)
{
    (void)arg;
    record_here();
    cio_task *t =
        spawn_named(return_arg_counted, (void *)(intptr_t)-EIO, "held");
    yield_n(3);
    CHECK_EQ(cio_future_done(t), 1);
    CHECK_EQ(REP.count, 0); /* someone may still look at it */
    cio_future_unref(t);
    CHECK_EQ(REP.count, 1);
    CHECK_STR(REP.message, "Task exception was never retrieved");
    CHECK_STR(REP.name, "held");
    CHECK_ERR(REP.error, -EIO);
    return 0;
}

TEST(task_unretrieved_error_is_reported_when_the_last_reference_goes)
{
    CHECK_ERR(cio_run(main_held_unretrieved, NULL), 0);
}

static int main_retrieved(void *arg)
{
    (void)arg;
    record_here();
    cio_task *a = spawn(return_arg_counted, (void *)(intptr_t)-EIO);
    cio_task *b = spawn(return_arg_counted, (void *)(intptr_t)-EPIPE);
    cio_task *c = spawn(sleep_long, NULL);
    cio_task *d = spawn(return_arg_counted, (void *)(intptr_t)2);
    CHECK_ERR(cio_await(a, NULL), -EIO);
    yield_n(2);
    CHECK_ERR(cio_future_result(b, NULL), -EPIPE);
    CHECK_EQ(cio_task_cancel(c), 1); /* a cancellation is no error */
    yield_n(2);
    CHECK_EQ(cio_future_cancelled(c), 1);
    CHECK_EQ(cio_future_done(d), 1);
    cio_future_unref(a);
    cio_future_unref(b);
    cio_future_unref(c);
    cio_future_unref(d);
    return 0;
}

TEST(task_retrieved_errors_and_cancellations_are_not_reported)
{
    CHECK_ERR(cio_run(main_retrieved, NULL), 0);
    CHECK_EQ(REP.count, 0);
}

/* -------------------------------------------------------------- cio_run */

static int ret_42(void *arg)
{
    (void)arg;
    CHECK(cio_get_running_loop() != NULL);
    CHECK_ERR(cio_sleep(0.001), 0);
    return 42;
}

TEST(task_cio_run_returns_mains_status)
{
    CHECK(cio_get_running_loop() == NULL);
    CHECK_ERR(cio_run(ret_42, NULL), 42);
    CHECK(cio_get_running_loop() == NULL);
    CHECK_ERR(cio_run(return_arg_counted, (void *)(intptr_t)-EPIPE), -EPIPE);
    CHECK_ERR(cio_run(return_arg_counted, (void *)(intptr_t)0), 0);
    CHECK(cio_get_running_loop() == NULL);
    CHECK_EQ(RAN, 2);
}

static int L1_SAW, L2_SAW, L2_CLEANED;

static int leftover_sleeper(void *arg)
{
    (void)arg;
    L1_SAW = cio_sleep(100);
    return L1_SAW;
}

static int leftover_with_cleanup(void *arg)
{
    (void)arg;
    L2_SAW = cio_await(GATE, NULL);
    cio_task_uncancel(cio_current_task());
    L2_CLEANED = cio_sleep(0.001) == 0 && cio_sleep(0) == 0;
    return 0;
}

static int main_leaves_tasks(void *arg)
{
    (void)arg;
    GATE = future_open();
    CHECK_ERR(cio_create_task(leftover_sleeper, NULL, NULL), 0);
    CHECK_ERR(cio_create_task(leftover_with_cleanup, NULL, NULL), 0);
    yield_n(1);
    cio_future_unref(GATE); /* the waiting task holds its own reference */
    return 3;
}

/* asyncio.run: when main returns, the tasks left are cancelled and run to
 * their end; nothing is left behind (the harness checks leaks). */
TEST(task_cio_run_cancels_and_finishes_leftover_tasks)
{
    CHECK_ERR(cio_run(main_leaves_tasks, NULL), 3);
    CHECK_ERR(L1_SAW, -ECANCELED);
    CHECK_ERR(L2_SAW, -ECANCELED);
    CHECK_EQ(L2_CLEANED, 1);
    CHECK(cio_get_running_loop() == NULL);
}

static int nested_run(void *arg)
{
    (void)arg;
    RAN++;
    return 0;
}

static int main_nested_run(void *arg)
{
    (void)arg;
    return cio_run(nested_run, NULL);
}

static int RUN_IN_CALLBACK;

static void run_in_callback(void *arg)
{
    RUN_IN_CALLBACK = cio_run(nested_run, NULL);
    cio_loop_stop(arg);
}

TEST(task_cio_run_inside_a_running_loop_is_ebusy)
{
    CHECK_ERR(cio_run(main_nested_run, NULL), -EBUSY);
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, run_in_callback, loop, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_ERR(RUN_IN_CALLBACK, -EBUSY);
    CHECK_EQ(RAN, 0);
    cio_loop_free(loop);
}

/* ------------------------------------------------------ run_until_complete */

static void complete_later(void *arg) { cio_future_set_result(arg, &Y); }
static void fail_later(void *arg) { cio_future_set_error(arg, -EPIPE); }

TEST(task_run_until_complete_returns_the_outcome)
{
    cio_loop *loop = loop_open();
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, ret_42, NULL, NULL, &t), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 42);
    CHECK_EQ(cio_loop_is_running(loop), 0);
    /* A done future: its outcome, at once. */
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 42);
    cio_future *f, *g;
    CHECK_ERR(cio_future_new(loop, &f), 0);
    CHECK_ERR(cio_future_new(loop, &g), 0);
    CHECK_ERR(cio_call_later(loop, 0.001, complete_later, f, NULL), 0);
    CHECK_ERR(cio_call_later(loop, 0.002, fail_later, g, NULL), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, f), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, g), -EPIPE);
    cio_loop *other = loop_open();
    cio_future *h;
    CHECK_ERR(cio_future_new(other, &h), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, h), -EINVAL);
    CHECK_ERR(cio_loop_run_until_complete(loop, NULL), -EINVAL);
    cio_future_unref(h);
    cio_loop_free(other);
    cio_future_unref(t);
    cio_future_unref(f);
    cio_future_unref(g);
    cio_loop_free(loop);
}

static int main_nested_until_complete(void *arg)
{
    (void)arg;
    cio_future *f = future_open();
    /* asyncio: RuntimeError, "This event loop is already running". */
    CHECK_ERR(cio_loop_run_until_complete(cio_get_running_loop(), f),
              -EBUSY);
    CHECK_ERR(cio_future_set_result(f, NULL), 0);
    CHECK_ERR(cio_sleep(0), 0);
    cio_future_unref(f);
    return 0;
}

TEST(task_run_until_complete_on_the_running_loop_is_ebusy)
{
    CHECK_ERR(cio_run(main_nested_until_complete, NULL), 0);
}

/* ------------------------------------------------------------- threads */

static int thread_child(void *arg)
{
    int *counter = arg;
    for (int i = 0; i < 50; i++) {
        (*counter)++;
        if (cio_sleep(i % 5 ? 0 : 0.0001))
            return -1;
    }
    return 1;
}

static int task_thread_main(void *arg)
{
    int *counter = arg;
    cio_task *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn(thread_child, counter);
    int sum = 0;
    for (int i = 0; i < 4; i++) {
        sum += cio_await(t[i], NULL);
        cio_future_unref(t[i]);
    }
    return sum + (cio_current_task() != NULL);
}

static void *run_in_thread(void *arg)
{
    int *slot = arg;
    slot[1] = cio_run(task_thread_main, slot);
    return NULL;
}

/* Each thread has its own loop, current task and scheduler. */
TEST(task_loops_in_two_threads_run_their_own_tasks)
{
    static int a[2], b[2];
    pthread_t ta, tb;
    CHECK_EQ(pthread_create(&ta, NULL, run_in_thread, a), 0);
    CHECK_EQ(pthread_create(&tb, NULL, run_in_thread, b), 0);
    CHECK_EQ(pthread_join(ta, NULL), 0);
    CHECK_EQ(pthread_join(tb, NULL), 0);
    CHECK_EQ(a[1], 5);
    CHECK_EQ(b[1], 5);
    CHECK_EQ(a[0], 200);
    CHECK_EQ(b[0], 200);
}

/* ---------------------------------------------------- closing the loop */

TEST(task_closing_a_loop_destroys_its_pending_tasks_and_reports_them)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &REP), 0);
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, sleep_long, NULL,
                           &(cio_task_options){.name = "sleepy"}, &t),
              0);
    for (int i = 0; i < 5 && !RAN; i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(RAN, 1); /* it sleeps in cio_sleep */
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_EQ(REP.count, 1);
    CHECK_STR(REP.message, "Task was destroyed but it is pending!");
    CHECK_STR(REP.what, "task");
    CHECK_STR(REP.name, "sleepy");
    CHECK(REP.object == (void *)t);
    cio_future_unref(t);
    cio_loop_free(loop);
    CHECK_EQ(REP.count, 1);
}

TEST(task_closing_a_loop_destroys_tasks_that_never_ran)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &REP), 0);
    CHECK_ERR(cio_task_new(loop, return_arg_counted, NULL,
                           &(cio_task_options){.name = "unborn"}, NULL),
              0);
    cio_loop_free(loop);
    CHECK_EQ(REP.count, 1);
    CHECK_STR(REP.message, "Task was destroyed but it is pending!");
    CHECK_STR(REP.name, "unborn");
    CHECK_EQ(RAN, 0);
}

static cio_task *AWAITED_TASK;

static int await_awaited_task(void *arg)
{
    (void)arg;
    RAN++;
    return cio_await(AWAITED_TASK, NULL);
}

/* Both tasks are destroyed pending; the reference cio_await took on the
 * task it waits for must not keep that one alive after the loop. */
TEST(task_closing_a_loop_frees_a_task_awaiting_another)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &REP), 0);
    CHECK_ERR(cio_task_new(loop, sleep_long, NULL, NULL, &AWAITED_TASK), 0);
    CHECK_ERR(cio_task_new(loop, await_awaited_task, NULL, NULL, NULL), 0);
    cio_future_unref(AWAITED_TASK); /* the loop holds it */
    for (int i = 0; i < 5 && RAN < 2; i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(RAN, 2);
    cio_loop_free(loop);
    CHECK_EQ(REP.count, 2);
    CHECK_STR(REP.message, "Task was destroyed but it is pending!");
}

static int wait_for_awaited_task(void *arg)
{
    (void)arg;
    RAN++;
    return cio_wait_for(AWAITED_TASK, 100, NULL);
}

static int gather_awaited_task(void *arg)
{
    (void)arg;
    RAN++;
    cio_future *both[2] = {AWAITED_TASK, GATE};
    return cio_gather(both, 2, 0, NULL);
}

static int wait_on_awaited_task(void *arg)
{
    (void)arg;
    RAN++;
    size_t nd, np;
    return cio_wait(&AWAITED_TASK, 1, CIO_ALL_COMPLETED, CIO_NO_TIMEOUT, NULL, &nd, NULL,
                    &np);
}

/* Whatever a pending task holds inside a cio call (references, the call's
 * own bookkeeping) goes with it when the loop closes. */
static void close_with_a_task_in(cio_task_fn fn)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &REP), 0);
    CHECK_ERR(cio_future_new(loop, &GATE), 0);
    CHECK_ERR(cio_task_new(loop, sleep_long, NULL, NULL, &AWAITED_TASK), 0);
    CHECK_ERR(cio_task_new(loop, fn, NULL, NULL, NULL), 0);
    cio_future_unref(AWAITED_TASK); /* the loop holds it */
    for (int i = 0; i < 5 && RAN < 2; i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(RAN, 2);
    cio_loop_free(loop);
    cio_future_unref(GATE);
    CHECK_EQ(REP.count, 2);
}

TEST(task_closing_a_loop_frees_a_task_in_wait_for)
{
    close_with_a_task_in(wait_for_awaited_task);
}

TEST(task_closing_a_loop_frees_a_task_in_gather)
{
    close_with_a_task_in(gather_awaited_task);
}

TEST(task_closing_a_loop_frees_a_task_in_wait)
{
    close_with_a_task_in(wait_on_awaited_task);
}

/* --------------------------------------------------- failure injection */

static int task_fault_child(void *arg)
{
    (void)arg;
    int r = cio_sleep(0.0005);
    return r ? r : 1;
}

static int task_fault_main(void *arg)
{
    (void)arg;
    cio_task *t[3] = {0};
    int err = 0;
    for (int i = 0; i < 3 && !err; i++)
        err = cio_task_new(NULL, task_fault_child, NULL,
                           &(cio_task_options){.name = i ? NULL : "named"},
                           &t[i]);
    for (int i = 0; i < 3 && !err; i++) {
        int r = cio_await(t[i], NULL);
        if (r < 0)
            err = r;
        else
            CHECK_EQ(r, 1);
    }
    for (int i = 0; i < 3; i++)
        cio_future_unref(t[i]);
    return err;
}

static int run_fault_scenario(void *arg)
{
    return cio_run(task_fault_main, arg);
}

TEST_T(task_cio_run_under_failing_allocations_gives_clean_errors, 60)
{
    CHECK(test_fault_loop(CIO__FAULT_ALLOC, 0, run_fault_scenario, NULL) > 3);
}

TEST_T(task_cio_run_under_failing_system_calls_gives_clean_errors, 60)
{
    CHECK(test_fault_loop(CIO__FAULT_SYS, ENOMEM, run_fault_scenario, NULL) >
          3);
}

/* ------------------------------------------------------ cio_run's main task */

static int main_reports_itself(void *arg)
{
    cio__task *t = (cio__task *)cio_current_task();
    test_log_add(&L, "%s", cio_task_get_name(&t->fut));
    *(size_t *)arg = t->fiber.stack_size;
    return 0;
}

/* asyncio.run's main task is an unnamed task, "Task-1" in a fresh program;
 * cio_run's is the loop's first task, named the same way. */
TEST(run_main_task_is_task_1)
{
    size_t stack = 0;
    CHECK_ERR(cio_run(main_reports_itself, &stack), 0);
    CHECK_LOG(&L, "Task-1");
    CHECK_EQ(stack, 256 * 1024);
}

TEST(run_with_chooses_the_main_task_name_and_stack)
{
    size_t stack = 0;
    cio_run_options o = {.main = {.name = "boss", .stack_size = 4 << 20}};
    CHECK_ERR(cio_run_with(main_reports_itself, &stack, &o), 0);
    CHECK_LOG(&L, "boss");
    CHECK(stack >= (size_t)4 << 20);
    /* NULL options: cio_run's. */
    CHECK_ERR(cio_run_with(main_reports_itself, &stack, NULL), 0);
    CHECK_LOG(&L, "boss Task-1");
    CHECK_EQ(stack, 256 * 1024);
    cio_run_options bad = {.loop = {.backend = "kqueue"}};
    CHECK_ERR(cio_run_with(main_reports_itself, &stack, &bad), -EINVAL);
    CHECK_ERR(cio_run_with(NULL, NULL, &o), -EINVAL);
    CHECK_LOG(&L, "boss Task-1");
}

/* Outside a task, in a callback of a debug loop: CIO_ENOTASK, and the
 * loop says which call it was. */
static void waits_in_a_callback(void *arg)
{
    cio_lock lock = CIO_LOCK_INIT;
    *(int *)arg = cio_sleep(1);
    CHECK_ERR(cio_lock_acquire(&lock), CIO_ENOTASK);
}

TEST(task_call_outside_a_task_is_reported_in_debug_mode)
{
    cio_loop *loop = loop_open_with(NULL, 1);
    static report rep;
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &rep), 0);
    int r = 0;
    CHECK_ERR(cio_call_soon(loop, waits_in_a_callback, &r, NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_ERR(r, CIO_ENOTASK);
    CHECK_EQ(rep.count, 2);
    CHECK(strstr(rep.message, "cio_lock_acquire() called outside a task"));
    CHECK_ERR(rep.error, CIO_ENOTASK);
    cio_loop_free(loop);
    /* Not in debug mode: the code alone. */
    loop = loop_open_with(NULL, -1);
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &rep), 0);
    CHECK_ERR(cio_call_soon(loop, waits_in_a_callback, &r, NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_EQ(rep.count, 2);
    cio_loop_free(loop);
}

/* ------------------------------------------------------ bad arguments */

static int task_bad_arguments_main(void *arg)
{
    cio_loop *other = arg;
    cio_task *me = cio_current_task();
    CHECK_ERR(cio_task_set_name(me, "mine"), 0);
    CHECK_ERR(cio_task_set_name(me, NULL), -EINVAL);
    CHECK_STR(cio_task_get_name(me), "mine"); /* unchanged */
    cio_task *list[1] = {NULL};
    CHECK_EQ(cio_all_tasks(NULL, list, 1), 1); /* the running loop's */
    CHECK(list[0] == me);
    /* A future of another loop cannot be awaited here. */
    cio_future *f;
    CHECK_ERR(cio_future_new(other, &f), 0);
    void *v = &v;
    CHECK_ERR(cio_await(f, &v), -EINVAL);
    CHECK(v == NULL);
    CHECK_EQ(cio_future_done(f), 0); /* nothing happened to it */
    cio_future_unref(f);
    return 0;
}

/* NULL and non-tasks are -EINVAL for the task calls (NULL for its name);
 * with no loop running, all_tasks has none to list. */
TEST(task_bad_arguments_are_einval)
{
    CHECK_ERR(cio_all_tasks(NULL, NULL, 0), -EINVAL);
    CHECK(cio_task_get_name(NULL) == NULL);
    CHECK_ERR(cio_task_set_name(NULL, "x"), -EINVAL);
    CHECK_ERR(cio_task_cancel(NULL), -EINVAL);
    CHECK_ERR(cio_task_cancelling(NULL), -EINVAL);
    CHECK_ERR(cio_task_uncancel(NULL), -EINVAL);
    cio_loop *other = loop_open();
    cio_future *f;
    CHECK_ERR(cio_future_new(other, &f), 0);
    CHECK(cio_task_get_name(f) == NULL); /* a plain future has none */
    CHECK_ERR(cio_task_set_name(f, "x"), -EINVAL);
    cio_future_unref(f);
    CHECK_ERR(cio_run(task_bad_arguments_main, other), 0);
    cio_loop_free(other);
}

/* ------------------------------------- a scope left open at the return */

__attribute__((noinline)) static int open_scope(double delay)
{
    cio_timeout_scope s;
    return cio_timeout(&s, delay);
}

static int return_inside_a_scope(void *arg)
{
    (void)arg;
    CHECK_ERR(open_scope(0.001), 0);
    return 5; /* past the scope: it is closed with the task */
}

/* A task that returns with a timeout scope still open finishes as it
 * returned, and its deadline never fires at anything later; a debug loop
 * says so, naming the task, and a plain one stays quiet. */
static void scope_left_open(int debug)
{
    cio_loop *loop = loop_open_with(NULL, debug);
    memset(&REP, 0, sizeof REP);
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_report, &REP), 0);
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, return_inside_a_scope, NULL,
                           &(cio_task_options){.name = "leaver"}, &t),
              0);
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 5);
    cio_future_unref(t);
    /* Past the old deadline: nothing is due. */
    nap(0.01);
    CHECK_EQ(cio_loop_run_once(loop, 0), 0);
    if (debug) {
        CHECK_EQ(REP.count, 1);
        CHECK_STR(REP.message,
                  "a timeout scope was never ended: its task returned");
        CHECK_STR(REP.what, "task");
        CHECK_STR(REP.name, "leaver");
    } else {
        CHECK_EQ(REP.count, 0);
    }
    cio_loop_free(loop);
}

TEST(task_returning_inside_a_timeout_scope_closes_it_and_debug_says_so)
{
    scope_left_open(0);
    scope_left_open(1);
}
