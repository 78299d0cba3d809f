/* Timeout scopes (asyncio.timeout) and task groups (asyncio.TaskGroup),
 * tested against asyncio's documented orderings and results: expiry is
 * level-triggered until the scope ends, nested scopes, rescheduling, what
 * an expiry cancels; a group joins its children, a failing child cancels
 * the others and the parent, cancelling the parent cancels the children;
 * a group's own error (abort) and every child error in order; gather over
 * calls; the scoped forms (lock, semaphore, condition, task group, timeout)
 * on every way out of a block. Their failure injection is in test_flow.c.
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

/* ------------------------------------------------------- timeout scopes */

static int main_timeout_expires(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    GATE = future_open();
    cio_timeout_scope s;
    double t0 = now();
    CHECK_ERR(cio_timeout(&s, 0.02), 0);
    CHECK_EQ(cio_timeout_expired(&s), 0);
    CHECK_ERR(cio_sleep(10), -ETIMEDOUT);
    CHECK(now() - t0 >= 0.019);
    CHECK_EQ(cio_timeout_expired(&s), 1);
    /* Level-triggered inside the scope. */
    CHECK_ERR(cio_sleep(0), -ETIMEDOUT);
    CHECK_ERR(cio_sleep(0.001), -ETIMEDOUT);
    CHECK_ERR(cio_await(GATE, NULL), -ETIMEDOUT);
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 0);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    /* Outside it, suspension points work again. */
    CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(cio_sleep(0.001), 0);
    cio_future_unref(GATE);
    return 0;
}

TEST(flow_timeout_expiry_is_level_triggered_until_the_scope_ends)
{
    run_ok(main_timeout_expires);
}

static int main_timeout_in_time(void *arg)
{
    (void)arg;
    cio_timeout_scope s;
    double t0 = now();
    CHECK_ERR(cio_timeout(&s, 10), 0);
    CHECK(cio_timeout_when(&s) >= t0 + 10 - 1e-6);
    CHECK_ERR(cio_sleep(0.001), 0);
    CHECK_ERR(cio_sleep(0), 0);
    CHECK_EQ(cio_timeout_expired(&s), 0);
    CHECK_ERR(cio_timeout_end(&s), 0);
    return 0;
}

TEST(flow_timeout_not_reached_changes_nothing)
{
    run_ok(main_timeout_in_time);
}

static int main_timeout_at(void *arg)
{
    (void)arg;
    cio_timeout_scope s, none, none2;
    double when = now() + 5;
    CHECK_ERR(cio_timeout_at(&s, when), 0);
    CHECK(cio_timeout_when(&s) == when);
    CHECK_ERR(cio_timeout(&none, CIO_NO_TIMEOUT), 0); /* no deadline */
    CHECK(isinf(cio_timeout_when(&none)));
    CHECK_ERR(cio_timeout_at(&none2, INFINITY), 0);
    CHECK(isinf(cio_timeout_when(&none2)));
    CHECK_ERR(cio_sleep(0.001), 0);
    CHECK_ERR(cio_timeout_end(&none2), 0);
    CHECK_ERR(cio_timeout_end(&none), 0);
    CHECK_ERR(cio_timeout_end(&s), 0);
    /* A deadline already past expires at the next suspension point. */
    CHECK_ERR(cio_timeout_at(&s, now() - 1 > 0 ? now() - 1 : 0), 0);
    CHECK_ERR(cio_sleep(10), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    return 0;
}

TEST(flow_timeout_at_and_when)
{
    run_ok(main_timeout_at);
}

static int main_timeout_nested_inner(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    cio_timeout_scope outer, inner;
    CHECK_ERR(cio_timeout(&outer, 10), 0);
    CHECK_ERR(cio_timeout(&inner, 0.02), 0);
    CHECK_ERR(cio_sleep(10), -ETIMEDOUT);
    CHECK_EQ(cio_timeout_expired(&inner), 1);
    CHECK_EQ(cio_timeout_expired(&outer), 0);
    CHECK_ERR(cio_timeout_end(&inner), -ETIMEDOUT);
    CHECK_ERR(cio_sleep(0), 0); /* the outer scope is fine */
    CHECK_ERR(cio_sleep(0.001), 0);
    CHECK_ERR(cio_timeout_end(&outer), 0);
    return 0;
}

TEST(flow_timeout_nested_inner_expires_first)
{
    run_ok(main_timeout_nested_inner);
}

static int main_timeout_nested_outer(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    cio_timeout_scope outer, inner;
    CHECK_ERR(cio_timeout(&outer, 0.02), 0);
    CHECK_ERR(cio_timeout(&inner, 10), 0);
    CHECK_ERR(cio_sleep(10), -ETIMEDOUT);
    CHECK_EQ(cio_timeout_expired(&inner), 0);
    CHECK_EQ(cio_timeout_expired(&outer), 1);
    /* The inner scope did not expire: it passes the timeout on. */
    CHECK_ERR(cio_timeout_end(&inner), 0);
    CHECK_ERR(cio_sleep(0), -ETIMEDOUT); /* still inside the outer one */
    CHECK_ERR(cio_timeout_end(&outer), -ETIMEDOUT);
    CHECK_ERR(cio_sleep(0), 0);
    return 0;
}

TEST(flow_timeout_nested_outer_expires_first)
{
    run_ok(main_timeout_nested_outer);
}

static int main_timeout_reschedule(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    cio_timeout_scope s;
    /* From no deadline to one. */
    CHECK_ERR(cio_timeout(&s, CIO_NO_TIMEOUT), 0);
    double when = now() + 0.02;
    CHECK_ERR(cio_timeout_reschedule(&s, when), 0);
    CHECK(cio_timeout_when(&s) == when);
    CHECK_ERR(cio_sleep(10), -ETIMEDOUT);
    /* Expired: too late to move it (asyncio raises RuntimeError). */
    CHECK_ERR(cio_timeout_reschedule(&s, now() + 10), -EINVAL);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    /* Later. */
    CHECK_ERR(cio_timeout(&s, 0.01), 0);
    CHECK_ERR(cio_timeout_reschedule(&s, now() + 10), 0);
    CHECK_ERR(cio_sleep(0.03), 0);
    CHECK_ERR(cio_timeout_end(&s), 0);
    /* Removed. */
    CHECK_ERR(cio_timeout(&s, 0.01), 0);
    CHECK_ERR(cio_timeout_reschedule(&s, CIO_NO_TIMEOUT), 0);
    CHECK(isinf(cio_timeout_when(&s)));
    CHECK_ERR(cio_sleep(0.03), 0);
    CHECK_EQ(cio_timeout_expired(&s), 0);
    CHECK_ERR(cio_timeout_end(&s), 0);
    return 0;
}

TEST(flow_timeout_reschedule_moves_the_deadline)
{
    run_ok(main_timeout_reschedule);
}

static int main_timeout_reschedule_ended(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 10), 0);
    CHECK_ERR(cio_timeout_end(&s), 0);
    /* asyncio: "Cannot change state of finished Timeout" (RuntimeError). */
    CHECK_ERR(cio_timeout_reschedule(&s, now() + 0.01), -EINVAL);
    /* Whatever it returned, an ended scope must never fire. */
    CHECK_ERR(cio_sleep(0.05), 0);
    return 0;
}

TEST(flow_timeout_reschedule_after_the_scope_ended_is_refused)
{
    run_ok(main_timeout_reschedule_ended);
}

static int main_timeout_awaiting_task(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    cio_task *t = spawn(sleep_then_clean_up, "inner");
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 0.02), 0);
    int r = cio_await(t, NULL);
    test_log_add(&L, "await:%s", code(r));
    CHECK_ERR(r, -ETIMEDOUT);
    /* asyncio: the timeout cancels the task, whose await cancels the
     * awaited task, which it then waits for. */
    CHECK_EQ(cio_future_cancelled(t), 1);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    cio_future_unref(t);
    return 0;
}

TEST(flow_timeout_expiring_in_await_cancels_the_awaited_task)
{
    run_ok(main_timeout_awaiting_task);
    CHECK_LOG(&L, "inner:ECANCELED inner:cleaned await:ETIMEDOUT");
}

static int main_timeout_in_gather(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    cio_task *t[2] = {spawn(sleep_then_clean_up, "c1"),
                      spawn(sleep_then_clean_up, "c2")};
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 0.02), 0);
    int r = cio_gather(t, 2, 0, NULL);
    test_log_add(&L, "gather:%s", code(r));
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    CHECK_EQ(cio_future_cancelled(t[0]) + cio_future_cancelled(t[1]), 2);
    unref_all(t, 2);
    return 0;
}

/* The timeout cancels the task in gather, which cancels every child. */
TEST(flow_timeout_expiring_in_gather_cancels_the_children)
{
    run_ok(main_timeout_in_gather);
    CHECK_LOG(&L, "c1:ECANCELED c2:ECANCELED c1:cleaned c2:cleaned "
                  "gather:ETIMEDOUT");
}

static int main_timeout_and_cancel(void *arg)
{
    (void)arg;
    cio_task *me = cio_current_task();
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 10), 0);
    CHECK_EQ(cio_task_cancel(me), 1);
    CHECK_ERR(cio_sleep(0), -ECANCELED);
    /* The scope did not expire: a cancellation stays a cancellation. */
    CHECK_ERR(cio_timeout_end(&s), 0);
    CHECK_EQ(cio_task_cancelling(me), 1);
    CHECK_EQ(cio_task_uncancel(me), 0);
    /* And cancellation wins over an expired scope. */
    CHECK_ERR(cio_timeout(&s, 0.001), 0);
    CHECK_ERR(cio_sleep(10), -ETIMEDOUT);
    CHECK_EQ(cio_task_cancel(me), 1);
    CHECK_ERR(cio_sleep(0), -ECANCELED);
    CHECK_EQ(cio_task_uncancel(me), 0);
    CHECK_ERR(cio_sleep(0), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    return 0;
}

TEST(flow_timeout_scope_leaves_cancellation_alone)
{
    run_ok(main_timeout_and_cancel);
}

static int main_timeout_order(void *arg)
{
    (void)arg;
    cio_timeout_scope a, b;
    CHECK_ERR(cio_timeout(&a, 10), 0);
    CHECK_ERR(cio_timeout(&b, 10), 0);
    CHECK_ERR(cio_timeout_end(&a), -EINVAL); /* not the innermost */
    CHECK_ERR(cio_timeout_end(&b), 0);
    CHECK_ERR(cio_timeout_end(&a), 0);
    CHECK_ERR(cio_timeout(NULL, 1), -EINVAL);
    return 0;
}

TEST(flow_timeout_scopes_end_innermost_first)
{
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 1), CIO_ENOTASK);
    CHECK_ERR(cio_timeout_at(&s, 1), CIO_ENOTASK);
    run_ok(main_timeout_order);
}

/* ------------------------------------------- scopes left by early returns */

/* C's usual early return: the scope opened here is never ended. */
__attribute__((noinline)) static int open_and_return(double delay)
{
    cio_timeout_scope s;
    return cio_timeout(&s, delay);
}

/* Fills its frame (where open_and_return's scope was) with a pattern and
 * waits past the abandoned deadline: the frame must come back intact. */
__attribute__((noinline)) static int wait_over_the_dead_frame(void)
{
    volatile unsigned char buf[512];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = 0x5a;
    int r = cio_sleep(0.02);
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != 0x5a)
            test_fail(__FILE__, __LINE__, "byte %zu of a live frame was "
                      "overwritten (0x%02x)", i, buf[i]);
    return r;
}

static int report_count;

static void count_report(cio_loop *loop, const cio_error_context *ctx,
                         void *arg)
{
    (void)loop, (void)arg;
    if (strstr(ctx->message, "never ended"))
        report_count++;
}

static int main_early_return(void *arg)
{
    (void)arg;
    cio_loop *loop = loop_now();
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 0), 0);
    cio_loop_set_debug(loop, 1);
    cio_loop_set_exception_handler(loop, count_report, NULL);
    long n = test_scaled(100000);
    for (long i = 0; i < n; i++) {
        /* The scope left open by the previous round is dropped here: its
         * memory is reused for this one. */
        CHECK_ERR(open_and_return(0.01), 0);
        /* The abandoned deadline still applies (documented), and the
         * frame that now holds its old memory is never written. */
        CHECK_ERR(wait_over_the_dead_frame(), -ETIMEDOUT);
    }
    /* Opening one from main's frame drops the last (its frame is below
     * this call's); scopes work as before. */
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 0.01), 0);
    CHECK_EQ(report_count, n);
    CHECK_EQ(cio__current->nscopes, 1);
    CHECK_ERR(cio_sleep(1), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    CHECK_ERR(cio_sleep(0.01), 0);
    return 0;
}

TEST_T(timeout_scope_left_by_an_early_return_corrupts_nothing, 60)
{
    run_ok(main_early_return);
}

/* An enclosing scope's end drops the scopes left open inside it, and the
 * task's return drops whatever is left. */
static int main_outer_end_drops_inner(void *arg)
{
    (void)arg;
    cio_loop *loop = loop_now();
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 0), 0);
    cio_timeout_scope outer;
    CHECK_ERR(cio_timeout(&outer, 10), 0);
    CHECK_ERR(open_and_return(0.5), 0);
    CHECK_ERR(open_and_return(INFINITY), 0);
    CHECK_ERR(cio_timeout_end(&outer), 0);
    CHECK_ERR(cio_sleep(1), 0); /* 0.5 s passed: that scope is gone */
    CHECK_ERR(open_and_return(0.5), 0); /* left open when main returns */
    return 0;
}

TEST(timeout_scope_end_drops_scopes_left_open_inside_it)
{
    run_ok(main_outer_end_drops_inner);
}

#if defined(__GNUC__)
/* CIO_TIMEOUT_SCOPE ends the scope on every way out of its block. */
__attribute__((noinline)) static int scoped_early_return(bool fail)
{
    CIO_TIMEOUT_SCOPE(s);
    int err = cio_timeout(&s, 0.01);
    if (err)
        return err;
    if (fail)
        return -EPROTO; /* s ends here */
    err = cio_sleep(1);
    CHECK_ERR(err, -ETIMEDOUT);
    return cio_timeout_end(&s); /* ends it; the cleanup then does nothing */
}

static int main_scoped(void *arg)
{
    (void)arg;
    cio_loop *loop = loop_now();
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 0), 0);
    cio_loop_set_debug(loop, 1);
    report_count = 0;
    cio_loop_set_exception_handler(loop, count_report, NULL);
    for (int i = 0; i < 1000; i++) {
        CHECK_ERR(scoped_early_return(true), -EPROTO);
        CHECK_EQ(cio__current->nscopes, 0);
        CHECK_ERR(cio_sleep(0.02), 0); /* no deadline left behind */
    }
    CHECK_ERR(scoped_early_return(false), -ETIMEDOUT);
    CHECK_EQ(cio__current->nscopes, 0);
    CHECK_EQ(report_count, 0); /* nothing was left open */
    cio_timeout_scope never = {{0}}; /* as the macro declares one */
    cio_timeout_leave(&never); /* never opened: left alone */
    return 0;
}

TEST(timeout_scope_macro_ends_the_scope_on_every_path) { run_ok(main_scoped); }
#endif

/* ----------------------------------------------------------- task groups */

static int main_group_ok(void *arg)
{
    (void)arg;
    record_here();
    job j[3] = {{"c0", 0, 1, 2}, {"c1", 0, 2, 3}, {"c2", 0, 3, 0}};
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    cio_task *c1 = NULL;
    for (int i = 0; i < 3; i++)
        CHECK_ERR(cio_task_group_spawn(g, run_job, &j[i], NULL,
                                       i == 1 ? &c1 : NULL),
                  0);
    CHECK_ERR(cio_task_group_join(g), 0);
    CHECK_EQ(cio_task_group_size(g), 3);
    CHECK(cio_task_group_task(g, 1) == c1);
    for (size_t i = 0; i < 3; i++) {
        void *v = NULL;
        CHECK_ERR(cio_future_result(cio_task_group_task(g, i), &v),
                  (int)i + 1);
        CHECK(v == &VALUES[i + 1]);
    }
    CHECK(cio_task_group_task(g, 3) == NULL);
    /* Joined: no more children (asyncio: "TaskGroup is finished"). */
    CHECK_ERR(cio_task_group_spawn(g, run_job, &j[0], NULL, NULL),
              -ESHUTDOWN);
    cio_task_group_free(g);
    return 0;
}

TEST(flow_task_group_joins_children_that_all_succeed)
{
    run_ok(main_group_ok);
    CHECK_LOG(&L, "c2 c0 c1");
    CHECK_EQ(REP.count, 0);
}

static int main_group_failure(void *arg)
{
    (void)arg;
    record_here();
    GATE = future_open();
    job j[3] = {{"c0", 100, 0, 0}, {"c1", 0, -EPIPE, 1}, {"c2", -1, 0, 0}};
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    for (int i = 0; i < 3; i++)
        CHECK_ERR(cio_task_group_spawn(g, run_job, &j[i], NULL, NULL), 0);
    int r = cio_task_group_join(g);
    test_log_add(&L, "join:%s", code(r));
    CHECK_ERR(r, -EPIPE);
    CHECK_ERR(cio_future_result(cio_task_group_task(g, 0), NULL), -ECANCELED);
    CHECK_ERR(cio_future_result(cio_task_group_task(g, 1), NULL), -EPIPE);
    CHECK_ERR(cio_future_result(cio_task_group_task(g, 2), NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(cio_task_group_task(g, 2)), 1);
    /* The parent, which was in join, is not left cancelled. */
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 0);
    CHECK_ERR(cio_sleep(0), 0);
    cio_task_group_free(g);
    cio_future_unref(GATE);
    return 0;
}

TEST(flow_task_group_failing_child_cancels_the_others)
{
    run_ok(main_group_failure);
    CHECK_LOG(&L, "c1 c0:ECANCELED c2:ECANCELED join:EPIPE");
    CHECK_EQ(REP.count, 0); /* the group reports the error through join */
}

static int main_group_failure_before_join(void *arg)
{
    (void)arg;
    cio_task *me = cio_current_task();
    job j[2] = {{"bad", 0, -EPIPE, 1}, {"sleeper", 100, 0, 0}};
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    for (int i = 0; i < 2; i++)
        CHECK_ERR(cio_task_group_spawn(g, run_job, &j[i], NULL, NULL), 0);
    /* The failure cancels the parent too, while it has not reached join. */
    int r = cio_sleep(100);
    test_log_add(&L, "parent:%s", code(r));
    CHECK_ERR(r, -ECANCELED);
    CHECK_EQ(cio_task_cancelling(me), 1);
    /* Aborting: no more children (asyncio: "TaskGroup is shutting down"). */
    CHECK_ERR(cio_task_group_spawn(g, run_job, &j[1], NULL, NULL), -ESHUTDOWN);
    r = cio_task_group_join(g);
    test_log_add(&L, "join:%s", code(r));
    CHECK_ERR(r, -EPIPE);
    /* join took back the cancellation the group gave the parent. */
    CHECK_EQ(cio_task_cancelling(me), 0);
    CHECK_ERR(cio_sleep(0), 0);
    CHECK_EQ(cio_task_group_size(g), 2);
    cio_task_group_free(g);
    return 0;
}

TEST(flow_task_group_failure_before_join_cancels_the_parent_until_join)
{
    run_ok(main_group_failure_before_join);
    /* asyncio's order: the group cancels its children, then the parent. */
    CHECK_LOG(&L, "bad sleeper:ECANCELED parent:ECANCELED join:EPIPE");
}

static int group_parent(void *arg)
{
    (void)arg;
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    CHECK_ERR(cio_task_group_spawn(g, sleep_then_clean_up, "a", NULL, NULL),
              0);
    CHECK_ERR(cio_task_group_spawn(g, sleep_then_clean_up, "b", NULL, NULL),
              0);
    int r = cio_task_group_join(g);
    test_log_add(&L, "join:%s", code(r));
    for (size_t i = 0; i < 2; i++)
        CHECK_EQ(cio_future_cancelled(cio_task_group_task(g, i)), 1);
    cio_task_group_free(g);
    return r;
}

static int main_group_parent_cancelled(void *arg)
{
    (void)arg;
    cio_task *p = spawn(group_parent, NULL);
    yield_n(2);
    CHECK_EQ(cio_task_cancel(p), 1);
    CHECK_ERR(cio_await(p, NULL), -ECANCELED);
    CHECK_EQ(cio_future_cancelled(p), 1);
    cio_future_unref(p);
    return 0;
}

TEST(flow_task_group_parent_cancelled_in_join_cancels_the_children)
{
    run_ok(main_group_parent_cancelled);
    CHECK_LOG(&L, "a:ECANCELED b:ECANCELED a:cleaned b:cleaned "
                  "join:ECANCELED");
}

static int main_group_child_cancelled(void *arg)
{
    (void)arg;
    job j[2] = {{"victim", 100, 0, 0}, {"other", 0, 2, 2}};
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    cio_task *victim;
    CHECK_ERR(cio_task_group_spawn(g, run_job, &j[0], NULL, &victim), 0);
    CHECK_ERR(cio_task_group_spawn(g, run_job, &j[1], NULL, NULL), 0);
    yield_n(1);
    CHECK_EQ(cio_task_cancel(victim), 1);
    /* A child cancelled from outside is no failure of the group. */
    CHECK_ERR(cio_task_group_join(g), 0);
    CHECK_EQ(cio_future_cancelled(victim), 1);
    CHECK_ERR(cio_future_result(cio_task_group_task(g, 1), NULL), 2);
    cio_task_group_free(g);
    return 0;
}

TEST(flow_task_group_child_cancelled_from_outside_is_no_failure)
{
    run_ok(main_group_child_cancelled);
    CHECK_LOG(&L, "victim:ECANCELED other");
}

static int group_parent_sleeps(void *arg)
{
    (void)arg;
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    CHECK_ERR(cio_task_group_spawn(g, sleep_then_clean_up, "a", NULL, NULL),
              0);
    int r = cio_sleep(100);
    test_log_add(&L, "parent:%s", code(r));
    /* asyncio: an exception in the `async with` body aborts the group;
     * __aexit__ waits for the children and re-raises it. */
    r = cio_task_group_join(g);
    test_log_add(&L, "join:%s", code(r));
    CHECK_EQ(cio_future_cancelled(cio_task_group_task(g, 0)), 1);
    cio_task_group_free(g);
    return r;
}

static int main_group_parent_cancelled_early(void *arg)
{
    (void)arg;
    cio_task *p = spawn(group_parent_sleeps, NULL);
    yield_n(2);
    CHECK_EQ(cio_task_cancel(p), 1);
    CHECK_ERR(cio_await(p, NULL), -ECANCELED);
    cio_future_unref(p);
    return 0;
}

TEST(flow_task_group_parent_cancelled_before_join_cancels_the_children)
{
    run_ok(main_group_parent_cancelled_early);
    CHECK_LOG(&L, "parent:ECANCELED a:ECANCELED a:cleaned join:ECANCELED");
}

static int main_group_free_joins(void *arg)
{
    (void)arg;
    job j = {"child", 0.001, 0, 1};
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    CHECK_ERR(cio_task_group_spawn(g, run_job, &j, NULL, NULL), 0);
    cio_task_group_free(g); /* joins first */
    test_log_add(&L, "freed");
    return 0;
}

TEST(flow_task_group_free_joins_first)
{
    run_ok(main_group_free_joins);
    CHECK_LOG(&L, "child freed");
}

static int main_group_args(void *arg)
{
    (void)arg;
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    CHECK_ERR(cio_task_group_spawn(g, NULL, NULL, NULL, NULL), -EINVAL);
    CHECK_ERR(cio_task_group_spawn(NULL, run_job, NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(cio_task_group_size(g), 0);
    CHECK_ERR(cio_task_group_join(g), 0); /* nothing to wait for */
    CHECK_ERR(cio_task_group_join(g), -EINVAL); /* joined already */
    cio_task_group_free(g);
    return 0;
}

TEST(flow_task_group_bad_arguments)
{
    cio_task_group *g = (cio_task_group *)&g;
    CHECK_ERR(cio_task_group_new(&g), CIO_ENOTASK);
    CHECK(g == NULL);
    run_ok(main_group_args);
}

/* ----------------------------------------------- a group's own error */

/* A child whose cancellation ends in an error of its own (a cleanup that
 * failed): asyncio collects it with the others. */
static int fail_when_cancelled(void *arg)
{
    int r = cio_sleep(100);
    test_log_add(&L, "cancelled:%s", code(r));
    return (int)(intptr_t)arg;
}

static int main_group_abort(void *arg)
{
    (void)arg;
    record_here();
    cio_task *me = cio_current_task();
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    CHECK_ERR(cio_task_group_spawn(g, sleep_then_clean_up, "a", NULL, NULL),
              0);
    CHECK_ERR(cio_task_group_spawn(g, fail_when_cancelled, IARG(-EIO), NULL,
                                   NULL),
              0);
    yield_n(1);
    /* The body fails the group: asyncio's exception in `async with`. */
    CHECK_ERR(cio_task_group_abort(g, -EPROTO), -EPROTO);
    test_log_add(&L, "aborted");
    CHECK_EQ(cio_task_cancelling(me), 0); /* the body is not cancelled */
    CHECK_ERR(cio_task_group_spawn(g, run_job, NULL, NULL, NULL), -ESHUTDOWN);
    CHECK_ERR(cio_task_group_abort(g, -EPIPE), -EPIPE); /* the first stays */
    int r = cio_task_group_join(g);
    test_log_add(&L, "join:%s", code(r));
    CHECK_ERR(r, -EPROTO);
    CHECK_EQ(cio_future_cancelled(cio_task_group_task(g, 0)), 1);
    /* The child's error, then the group's own, last (asyncio's order). */
    CHECK_EQ(cio_task_group_error_count(g), 2);
    cio_task *who = NULL;
    CHECK_ERR(cio_task_group_error(g, 0, &who), -EIO);
    CHECK(who == cio_task_group_task(g, 1));
    CHECK_ERR(cio_task_group_error(g, 1, &who), -EPROTO);
    CHECK(who == NULL);
    CHECK_ERR(cio_task_group_error(g, 2, &who), 0);
    CHECK_ERR(cio_task_group_abort(g, -EPROTO), -EINVAL); /* joined */
    CHECK_ERR(cio_sleep(0), 0);
    cio_task_group_free(g);
    return 0;
}

TEST(task_group_body_aborts_with_its_own_error)
{
    run_ok(main_group_abort);
    CHECK_LOG(&L, "aborted a:ECANCELED cancelled:ECANCELED a:cleaned "
                  "join:-71"); /* -EPROTO */
    CHECK_EQ(REP.count, 0);
}

static int main_group_all_errors(void *arg)
{
    (void)arg;
    record_here();
    job bad = {"bad", 0, -EPIPE, 1};
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    CHECK_ERR(cio_task_group_spawn(g, fail_when_cancelled, IARG(-EIO), NULL,
                                   NULL),
              0);
    CHECK_ERR(cio_task_group_spawn(g, run_job, &bad, NULL, NULL), 0);
    CHECK_ERR(cio_task_group_spawn(g, fail_when_cancelled, IARG(-ENOTCONN),
                                   NULL, NULL),
              0);
    CHECK_ERR(cio_task_group_spawn(g, sleep_then_clean_up, "calm", NULL,
                                   NULL),
              0);
    int r = cio_task_group_join(g);
    test_log_add(&L, "join:%s", code(r));
    CHECK_ERR(r, -EPIPE); /* the first to happen */
    /* asyncio's ExceptionGroup: every failure, in the order they came;
     * a cancelled child is none. */
    CHECK_EQ(cio_task_group_error_count(g), 3);
    int expect[3] = {-EPIPE, -EIO, -ENOTCONN};
    size_t child[3] = {1, 0, 2};
    for (size_t i = 0; i < 3; i++) {
        cio_task *who;
        CHECK_ERR(cio_task_group_error(g, i, &who), expect[i]);
        CHECK(who == cio_task_group_task(g, child[i]));
    }
    cio_task_group_free(g);
    return 0;
}

TEST(task_group_every_child_error_is_readable_in_order)
{
    run_ok(main_group_all_errors);
    CHECK_LOG(&L, "bad cancelled:ECANCELED cancelled:ECANCELED "
                  "calm:ECANCELED calm:cleaned join:EPIPE");
    CHECK_EQ(REP.count, 0);
}

static cio_task_group *shared_group;

static int abort_from_a_child(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_sleep(0), 0);
    return cio_task_group_abort(shared_group, -ENOLINK);
}

static int main_group_abort_by_child(void *arg)
{
    (void)arg;
    cio_task *me = cio_current_task();
    CHECK_ERR(cio_task_group_new(&shared_group), 0);
    CHECK_ERR(cio_task_group_spawn(shared_group, abort_from_a_child, NULL,
                                   NULL, NULL),
              0);
    CHECK_ERR(cio_task_group_spawn(shared_group, sleep_then_clean_up, "s",
                                   NULL, NULL),
              0);
    /* Another task's abort cancels the parent too, until it joins. */
    int r = cio_sleep(100);
    test_log_add(&L, "parent:%s", code(r));
    CHECK_EQ(cio_task_cancelling(me), 1);
    r = cio_task_group_join(shared_group);
    test_log_add(&L, "join:%s", code(r));
    CHECK_EQ(cio_task_cancelling(me), 0);
    /* The child returned the error it aborted with: it failed too. */
    CHECK_EQ(cio_task_group_error_count(shared_group), 2);
    CHECK_ERR(cio_task_group_error(shared_group, 0, NULL), -ENOLINK);
    cio_task_group_free(shared_group);
    return r == -ENOLINK ? 0 : r;
}

TEST(task_group_aborted_by_another_task_cancels_the_parent_until_join)
{
    run_ok(main_group_abort_by_child);
    CHECK_LOG(&L, "s:ECANCELED parent:ECANCELED s:cleaned join:-67");
}

static int main_group_abort_cancelled(void *arg)
{
    (void)arg;
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    CHECK_ERR(cio_task_group_spawn(g, sleep_then_clean_up, "c", NULL, NULL),
              0);
    /* -ECANCELED is no error: asyncio's CancelledError in the body. */
    CHECK_ERR(cio_task_group_abort(g, -ECANCELED), -ECANCELED);
    CHECK_ERR(cio_task_group_join(g), -ECANCELED);
    CHECK_EQ(cio_task_group_error_count(g), 0);
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 0);
    cio_task_group_free(g);
    CHECK_ERR(cio_task_group_new(&g), 0);
    CHECK_ERR(cio_task_group_abort(NULL, -EIO), -EINVAL);
    CHECK_ERR(cio_task_group_abort(g, 0), -EINVAL);
    CHECK_ERR(cio_task_group_abort(g, 3), -EINVAL);
    /* A real error after a cancellation takes its place. */
    CHECK_ERR(cio_task_group_abort(g, -ECANCELED), -ECANCELED);
    CHECK_ERR(cio_task_group_abort(g, -EIO), -EIO);
    CHECK_ERR(cio_task_group_join(g), -EIO);
    CHECK_EQ(cio_task_group_error_count(g), 1);
    cio_task_group_free(g);
    CHECK_EQ(cio_task_group_error_count(NULL), 0);
    CHECK_ERR(cio_task_group_error(NULL, 0, NULL), 0);
    return 0;
}

TEST(task_group_abort_with_a_cancellation_is_no_error)
{
    run_ok(main_group_abort_cancelled);
    CHECK_LOG(&L, ""); /* "c" was cancelled before it ever ran */
}

static int main_group_two_failures(void *arg)
{
    (void)arg;
    cio_task *me = cio_current_task();
    job j[2] = {{"f0", 0, -EPIPE, 1}, {"f1", 0, -EIO, 1}};
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    for (int i = 0; i < 2; i++)
        CHECK_ERR(cio_task_group_spawn(g, run_job, &j[i], NULL, NULL), 0);
    /* Both fail in one iteration: the first starts the abort and cancels
     * the parent; the second finds the group aborting and does not
     * (asyncio cancels the parent once). */
    CHECK_ERR(cio_sleep(100), -ECANCELED);
    CHECK_EQ(cio_task_cancelling(me), 1);
    CHECK_ERR(cio_task_group_join(g), -EPIPE);
    CHECK_EQ(cio_task_cancelling(me), 0);
    CHECK_EQ(cio_task_group_error_count(g), 2);
    CHECK_ERR(cio_task_group_error(g, 1, NULL), -EIO);
    cio_task_group_free(g);
    return 0;
}

TEST(task_group_cancels_its_parent_once_however_many_children_fail)
{
    run_ok(main_group_two_failures);
}

/* ------------------------------------------------------- gather_calls */

static int main_gather_calls(void *arg)
{
    (void)arg;
    record_here();
    job j[3] = {{"g0", 0, 1, 2}, {"g1", 0, 2, 0}, {"g2", 0, 3, 1}};
    cio_call calls[3] = {{run_job, &j[0]}, {run_job, &j[1]}, {run_job, &j[2]}};
    cio_result res[3];
    CHECK_ERR(cio_gather_calls(calls, 3, 0, res), 0);
    for (int i = 0; i < 3; i++) { /* in argument order */
        CHECK_ERR(res[i].status, i + 1);
        CHECK(res[i].value == &VALUES[i + 1]);
    }
    test_log_add(&L, "|");
    /* The first failure cancels the others, which are waited for. */
    job f[3] = {{"slow", 100, 0, 0}, {"bad", 0, -EPIPE, 1}, {"gate", -1, 0, 0}};
    GATE = future_open();
    cio_call fc[3] = {{run_job, &f[0]}, {run_job, &f[1]}, {run_job, &f[2]}};
    CHECK_ERR(cio_gather_calls(fc, 3, 0, res), -EPIPE);
    CHECK_ERR(res[0].status, -ECANCELED);
    CHECK_ERR(res[1].status, -EPIPE);
    CHECK_ERR(res[2].status, -ECANCELED);
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 0);
    test_log_add(&L, "|");
    /* return_exceptions: every call runs to its end. */
    job e[2] = {{"e0", 0, -EPIPE, 0}, {"e1", 0, 4, 2}};
    cio_call ec[2] = {{run_job, &e[0]}, {run_job, &e[1]}};
    CHECK_ERR(cio_gather_calls(ec, 2, 1, res), 0);
    CHECK_ERR(res[0].status, -EPIPE);
    CHECK_ERR(res[1].status, 4);
    CHECK(res[1].value == &VALUES[4]);
    CHECK_ERR(cio_gather_calls(ec, 2, 1, NULL), 0); /* results may be NULL */
    /* A call that cannot start cancels those started. */
    cio_call bad[3] = {{run_job, &j[0]}, {NULL, NULL}, {run_job, &j[1]}};
    CHECK_ERR(cio_gather_calls(bad, 3, 1, res), -EINVAL);
    CHECK_ERR(res[0].status, -ECANCELED);
    CHECK_ERR(res[1].status, -ECANCELED);
    CHECK_ERR(res[2].status, -ECANCELED);
    CHECK_ERR(cio_gather_calls(NULL, 0, 0, NULL), 0);
    CHECK_ERR(cio_gather_calls(NULL, 1, 0, NULL), -EINVAL);
    CHECK_ERR(cio_sleep(0), 0);
    cio_future_unref(GATE);
    return 0;
}

TEST(gather_calls_results_in_order_with_nothing_to_unref)
{
    run_ok(main_gather_calls);
    CHECK_LOG(&L, "g1 g2 g0 | bad slow:ECANCELED gate:ECANCELED | e0 e1 e0 e1");
    CHECK_EQ(REP.count, 0); /* errors were returned: none unretrieved */
    CHECK_ERR(cio_gather_calls(NULL, 0, 0, NULL), CIO_ENOTASK);
}

static int gather_calls_parent(void *arg)
{
    (void)arg;
    cio_call calls[2] = {{sleep_then_clean_up, "x"},
                         {sleep_then_clean_up, "y"}};
    cio_result res[2];
    int r = cio_gather_calls(calls, 2, 1, res);
    test_log_add(&L, "gathered:%s", code(r));
    CHECK_ERR(res[0].status, -ECANCELED);
    CHECK_ERR(res[1].status, -ECANCELED);
    return r;
}

static int main_gather_calls_cancelled(void *arg)
{
    (void)arg;
    cio_task *p = spawn(gather_calls_parent, NULL);
    yield_n(2);
    CHECK_EQ(cio_task_cancel(p), 1);
    CHECK_ERR(cio_await(p, NULL), -ECANCELED);
    cio_future_unref(p);
    return 0;
}

TEST(gather_calls_cancelled_cancels_every_call_and_waits)
{
    run_ok(main_gather_calls_cancelled);
    CHECK_LOG(&L, "x:ECANCELED y:ECANCELED x:cleaned y:cleaned "
                  "gathered:ECANCELED");
}

/* ------------------------------------------------------- scoped forms */

#if defined(__GNUC__)
static cio_lock lk = CIO_LOCK_INIT, lk2 = CIO_LOCK_INIT;
static cio_semaphore sem;
static cio_condition cond = CIO_CONDITION_INIT;
static long quick_runs;

static int quick_child(void *arg)
{
    (void)arg;
    int r = cio_sleep(0);
    quick_runs++;
    return r;
}

/* Takes every scoped form, then leaves by path `how`: 0 an early return,
 * 1 a goto out of the block, 2 a break out of a loop holding a nested
 * lock scope, 3 the end of the block. */
__attribute__((noinline)) static int scoped_all(int how)
{
    int err = 0;
    {
        CIO_TIMEOUT_SCOPE(ts);
        if ((err = cio_timeout(&ts, 10)))
            return err;
        CIO_LOCK_SCOPE(held);
        if ((err = cio_lock_enter(&held, &lk)))
            return err;
        CIO_SEMAPHORE_SCOPE(unit);
        if ((err = cio_semaphore_enter(&unit, &sem)))
            return err;
        CIO_CONDITION_SCOPE(cheld);
        if ((err = cio_condition_enter(&cheld, &cond)))
            return err;
        CIO_TASK_GROUP_SCOPE(g);
        if ((err = cio_task_group_new(&g)))
            return err;
        if ((err = cio_task_group_spawn(g, quick_child, NULL, NULL, NULL)))
            return cio_task_group_abort(g, err);
        CHECK(cio_lock_locked(&lk) && cio_semaphore_locked(&sem) &&
              cio_condition_locked(&cond));
        if (how == 0)
            return -EPROTO; /* everything is released on the way out */
        if (how == 1)
            goto out;
        for (int i = 0; i < 3; i++) {
            CIO_LOCK_SCOPE(inner);
            if ((err = cio_lock_enter(&inner, &lk2)))
                return err;
            if (how == 2)
                break;
        }
        CHECK_EQ(cio_lock_locked(&lk2), 0);
        err = cio_task_group_join(g);
    }
out:
    CHECK_EQ(cio_lock_locked(&lk), 0); /* left the block: released */
    return err;
}

static void check_all_released(void)
{
    CHECK_EQ(cio_lock_locked(&lk), 0);
    CHECK_EQ(cio_lock_locked(&lk2), 0);
    CHECK_EQ(cio_semaphore_locked(&sem), 0);
    CHECK_EQ(cio_condition_locked(&cond), 0);
    CHECK_EQ(cio__current->nscopes, 0);
    CHECK_EQ(cio_all_tasks(NULL, NULL, 0), 1); /* main alone: joined */
}

static int main_scoped_every_path(void *arg)
{
    (void)arg;
    record_here();
    CHECK_ERR(cio_semaphore_init(&sem, 1), 0);
    int expect[4] = {-EPROTO, 0, 0, 0};
    long n = test_scaled(100000);
    for (long i = 0; i < n; i++) {
        CHECK_ERR(scoped_all((int)(i % 4)), expect[i % 4]);
        check_all_released();
    }
    CHECK_EQ(quick_runs, n); /* every group's child ran: joined, never lost */
    CHECK_EQ(REP.count, 0);
    return 0;
}

TEST_T(scoped_forms_release_on_every_way_out_of_the_block, 120)
{
    run_ok(main_scoped_every_path);
}

static int enter_cancelled(void *arg)
{
    (void)arg;
    CIO_LOCK_SCOPE(held);
    int err = cio_lock_enter(&held, &lk);
    test_log_add(&L, "enter:%s", code(err));
    CHECK(held == NULL); /* nothing taken: the cleanup releases nothing */
    return err;
}

static int main_scoped_enter_errors(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_lock_acquire(&lk), 0);
    cio_task *t = spawn(enter_cancelled, NULL);
    yield_n(1);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_ERR(finish(t), -ECANCELED);
    CHECK_EQ(cio_lock_locked(&lk), 1); /* still main's */
    cio_lock *held = &lk2;
    CHECK_ERR(cio_lock_enter(&held, &lk), -EINVAL); /* holds one already */
    CHECK_ERR(cio_lock_enter(NULL, &lk), -EINVAL);
    CHECK_ERR(cio_lock_release(&lk), 0);
    held = NULL;
    CHECK_ERR(cio_lock_enter(&held, &lk), 0);
    cio_lock_leave(&held); /* early, by hand */
    CHECK(held == NULL);
    CHECK_EQ(cio_lock_locked(&lk), 0);
    cio_lock_leave(&held); /* nothing held: nothing released */
    cio_lock_leave(NULL);
    cio_semaphore_leave(NULL);
    cio_condition_leave(NULL);
    cio_task_group_leave(NULL);
    CHECK_ERR(cio_semaphore_init(&sem, 0), 0);
    cio_semaphore *unit = NULL;
    CHECK_ERR(cio_task_cancel(cio_current_task()), 1);
    CHECK_ERR(cio_semaphore_enter(&unit, &sem), -ECANCELED);
    CHECK(unit == NULL);
    cio_condition *c = NULL;
    CHECK_ERR(cio_condition_enter(&c, &cond), -ECANCELED);
    CHECK(c == NULL);
    CHECK_EQ(cio_task_uncancel(cio_current_task()), 0);
    return 0;
}

TEST(scoped_forms_report_the_acquire_error_and_hold_nothing)
{
    run_ok(main_scoped_enter_errors);
    CHECK_LOG(&L, "enter:ECANCELED");
}

static int group_left_early(void *arg)
{
    job *j = arg;
    CIO_TASK_GROUP_SCOPE(g);
    int err = cio_task_group_new(&g);
    if (err)
        return err;
    CHECK_ERR(cio_task_group_spawn(g, run_job, j, NULL, NULL), 0);
    CHECK_ERR(cio_task_group_spawn(g, sleep_then_clean_up, "peer", NULL,
                                   NULL),
              0);
    err = cio_sleep(100); /* the child's failure cancels us */
    test_log_add(&L, "body:%s", code(err));
    return err; /* the group is joined here: the child's error is reported */
}

static int group_aborted_early(void *arg)
{
    (void)arg;
    CIO_TASK_GROUP_SCOPE(g);
    int err = cio_task_group_new(&g);
    if (err)
        return err;
    CHECK_ERR(cio_task_group_spawn(g, sleep_then_clean_up, "kid", NULL, NULL),
              0);
    yield_n(1);
    return cio_task_group_abort(g, -EPIPE); /* a raise: kid is cancelled */
}

static int main_group_scope(void *arg)
{
    (void)arg;
    record_here();
    job bad = {"bad", 0, -EPIPE, 1};
    CHECK_ERR(group_left_early(&bad), -ECANCELED);
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 0); /* taken back */
    CHECK_EQ(REP.count, 1);
    CHECK_ERR(REP.error, -EPIPE);
    CHECK(strstr(REP.message, "without join") != NULL);
    test_log_add(&L, "|");
    CHECK_ERR(group_aborted_early(NULL), -EPIPE);
    CHECK_EQ(REP.count, 1); /* its own error was returned: nothing to say */
    CHECK_EQ(cio_all_tasks(NULL, NULL, 0), 1);
    return 0;
}

TEST(task_group_scope_joins_when_left_and_reports_unread_errors)
{
    run_ok(main_group_scope);
    CHECK_LOG(&L, "bad peer:ECANCELED body:ECANCELED peer:cleaned | "
                  "kid:ECANCELED kid:cleaned");
}
#endif
