/* The callback loop, tested against asyncio's documented behaviour
 * (BaseEventLoop: call_soon, call_later, call_at, stop, run_forever,
 * call_soon_threadsafe, exception handlers, debug mode) and the orderings
 * cio.h defines on top of it. The fd watchers (add_reader, add_writer)
 * are in test_watchers.c.
 *
 * Every test runs in its own forked process, so the file-level globals
 * below start fresh in each one. */
#define _GNU_SOURCE
#include "util.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static void stop_cb(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_stop(LOOP), 0);
}

/* ------------------------------------------------------------- call_soon */

TEST(call_soon_runs_in_fifo_order)
{
    cio_loop *loop = loop_open();
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        CHECK_ERR(cio_call_soon(loop, say, (void *)names[i], NULL), 0);
    CHECK_ERR(cio_call_soon(loop, stop_cb, NULL, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "a b c d e");
    cio_loop_free(loop);
}

static long fifo_next;
static void fifo_check(void *arg)
{
    CHECK_EQ((long)(intptr_t)arg, fifo_next);
    fifo_next++;
}

TEST(call_soon_keeps_fifo_order_for_many)
{
    cio_loop *loop = loop_open();
    long n = test_scaled(100000);
    for (long i = 0; i < n; i++)
        CHECK_ERR(cio_call_soon(loop, fifo_check, (void *)(intptr_t)i, NULL),
                  0);
    CHECK_EQ(cio_loop_run_once(loop, 0), n);
    CHECK_EQ(fifo_next, n);
    cio_loop_free(loop);
}

static void a_schedules_c(void *arg)
{
    (void)arg;
    say("A");
    CHECK_ERR(cio_call_soon(LOOP, say, "C", NULL), 0);
}

TEST(call_soon_from_a_callback_waits_for_the_next_iteration)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, a_schedules_c, NULL, NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "B", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 2);
    CHECK_LOG(&L, "A B");
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_LOG(&L, "A B C");
    CHECK_EQ(cio_loop_run_once(loop, 0), 0);
    cio_loop_free(loop);
}

TEST(run_once_returns_the_number_of_callbacks_run)
{
    cio_loop *loop = loop_open();
    int n = 0;
    for (int i = 0; i < 3; i++)
        CHECK_ERR(cio_call_soon(loop, count_cb, &n, NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 3);
    CHECK_EQ(n, 3);
    CHECK_EQ(cio_loop_run_once(loop, 0), 0);
    cio_loop_free(loop);
}

/* --------------------------------------------------- call_later, call_at */

TEST(call_later_runs_in_deadline_order)
{
    cio_loop *loop = loop_open();
    double t0 = mono();
    CHECK_ERR(cio_call_later(loop, 0.03, say, "c", NULL), 0);
    CHECK_ERR(cio_call_later(loop, 0.01, say, "a", NULL), 0);
    CHECK_ERR(cio_call_later(loop, 0.02, say, "b", NULL), 0);
    CHECK_ERR(cio_call_later(loop, 0.04, stop_cb, NULL, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "a b c");
    CHECK(mono() - t0 >= 0.035);
    cio_loop_free(loop);
}

static double seen_time;
static void note_time(void *arg)
{
    say(arg);
    seen_time = cio_loop_time(LOOP);
}

TEST(call_at_uses_the_loop_clock)
{
    cio_loop *loop = loop_open();
    double t = cio_loop_time(loop);
    CHECK_ERR(cio_call_at(loop, t + 0.02, note_time, "late", NULL), 0);
    CHECK_ERR(cio_call_at(loop, t - 1.0, say, "past", NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "soon", NULL), 0);
    CHECK_ERR(cio_call_at(loop, t + 0.02, stop_cb, NULL, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    /* A deadline in the past is due at once, after what was already ready. */
    CHECK_LOG(&L, "soon past late");
    CHECK(seen_time >= t + 0.02 - 1e-6);
    cio_loop_free(loop);
}

TEST(due_timers_run_after_callbacks_already_ready)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_later(loop, 0, say, "timer", NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "soon", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 2);
    CHECK_LOG(&L, "soon timer");
    cio_loop_free(loop);
}

static void schedules_timer_and_soon(void *arg)
{
    (void)arg;
    say("A");
    CHECK_ERR(cio_call_later(LOOP, 0, say, "T", NULL), 0);
    CHECK_ERR(cio_call_soon(LOOP, say, "S", NULL), 0);
}

TEST(zero_delay_timer_from_a_callback_waits_for_the_next_iteration)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, schedules_timer_and_soon, NULL, NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "B", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 2);
    CHECK_LOG(&L, "A B");
    CHECK_EQ(cio_loop_run_once(loop, 0), 2);
    CHECK_LOG(&L, "A B S T");
    cio_loop_free(loop);
}

/* Inside one iteration the clock is constant, so equal delays give equal
 * deadlines; cio runs those in the order they were scheduled. */
static void schedule_equal_delays(void *arg)
{
    (void)arg;
    const char *names[] = {"1", "2", "3", "4", "5"};
    for (int i = 0; i < 5; i++)
        CHECK_ERR(cio_call_later(LOOP, 0.01, say, (void *)names[i], NULL), 0);
    CHECK_ERR(cio_call_later(LOOP, 0.01, stop_cb, NULL, NULL), 0);
}

TEST(timers_with_equal_delays_run_in_scheduling_order)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, schedule_equal_delays, NULL, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "1 2 3 4 5");
    cio_loop_free(loop);
}

enum { EQ_TIMERS = 3000 };
static int eq_bucket[EQ_TIMERS];
static int eq_order[EQ_TIMERS], eq_fired;

static void eq_fire(void *arg)
{
    eq_order[eq_fired++] = (int)(intptr_t)arg;
    if (eq_fired == EQ_TIMERS)
        cio_loop_stop(LOOP);
}

TEST(timers_with_equal_deadlines_run_in_scheduling_order)
{
    cio_loop *loop = loop_open();
    double t = cio_loop_time(loop) + 0.005;
    /* Three deadlines, interleaved and latest first, so the heap has to
     * reorder them while keeping each deadline's timers in order. */
    for (int i = 0; i < EQ_TIMERS; i++) {
        eq_bucket[i] = 2 - i % 3;
        CHECK_ERR(cio_call_at(loop, t + eq_bucket[i] * 0.001, eq_fire,
                              (void *)(intptr_t)i, NULL),
                  0);
    }
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_EQ(eq_fired, EQ_TIMERS);
    for (int k = 1; k < EQ_TIMERS; k++) {
        int a = eq_order[k - 1], b = eq_order[k];
        CHECK(eq_bucket[a] < eq_bucket[b] ||
              (eq_bucket[a] == eq_bucket[b] && a < b));
    }
    cio_loop_free(loop);
}

TEST(call_later_from_outside_the_loop_counts_from_the_call)
{
    cio_loop *loop = loop_open();
    (void)cio_loop_time(loop);
    nap(0.2); /* the loop is idle: its clock must not stand still */
    double t0 = mono();
    CHECK_ERR(cio_call_later(loop, 0.1, say_stop, "t", NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK(mono() - t0 >= 0.09);
    /* The same after the loop ran and returned. */
    nap(0.2);
    t0 = mono();
    CHECK_ERR(cio_call_later(loop, 0.1, say_stop, "u", NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK(mono() - t0 >= 0.09);
    CHECK_LOG(&L, "t u");
    cio_loop_free(loop);
}

/* ------------------------------------------------------------------ stop */

static void a_schedules_d(void *arg)
{
    (void)arg;
    say("A");
    CHECK_ERR(cio_call_soon(LOOP, say, "D", NULL), 0);
}

TEST(stop_lets_the_current_iteration_finish)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, a_schedules_d, NULL, NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say_stop, "B", NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "C", NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "A B C");
    CHECK_EQ(cio_loop_is_running(loop), 0);
    /* D was scheduled for the next iteration: it waits for the next run. */
    CHECK_ERR(cio_call_soon(loop, say_stop, "E", NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "A B C D E");
    cio_loop_free(loop);
}

static int chain_runs;
static void chain(void *arg)
{
    chain_runs++;
    CHECK_ERR(cio_call_soon(LOOP, chain, arg, NULL), 0);
}

TEST(stop_before_run_forever_runs_exactly_one_iteration)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, chain, NULL, NULL), 0);
    CHECK_ERR(cio_loop_stop(loop), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_EQ(chain_runs, 1);
    /* The stop request was used up: the chain goes on with the next run. */
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_EQ(chain_runs, 2);
    CHECK_ERR(cio_loop_stop(loop), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_EQ(chain_runs, 3);
    cio_loop_free(loop);
}

/* asyncio: "If stop() is called before run_forever() is called, the loop
 * will poll the I/O selector once with a timeout of zero, run all
 * callbacks scheduled in response to I/O events (and those that were
 * already scheduled), and then exit." */
TEST(stop_before_run_forever_polls_io_once)
{
    cio_loop *loop = loop_open();
    int p[2];
    readable_pipe(p);
    CHECK_ERR(cio_add_reader(loop, p[0], say, "read"), 0);
    CHECK_ERR(cio_call_soon(loop, say, "soon", NULL), 0);
    CHECK_ERR(cio_loop_stop(loop), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "soon read");
    CHECK_EQ(cio_remove_reader(loop, p[0]), 1);
    cio_loop_free(loop);
    close_pair(p);
}

/* --------------------------------------------------------------- handles */

TEST(cancelled_handle_never_runs)
{
    cio_loop *loop = loop_open();
    cio_handle h;
    CHECK_ERR(cio_call_soon(loop, say, "x", &h), 0);
    CHECK_ERR(cio_call_soon(loop, say, "y", NULL), 0);
    CHECK_EQ(cio_handle_cancel(h), 1);
    CHECK_EQ(cio_handle_cancel(h), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_EQ(cio_loop_run_once(loop, 0), 0);
    CHECK_LOG(&L, "y");
    cio_loop_free(loop);
}

TEST(cancel_after_the_callback_ran_is_harmless)
{
    cio_loop *loop = loop_open();
    cio_handle h, h2;
    CHECK_ERR(cio_call_soon(loop, say, "x", &h), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_EQ(cio_handle_cancel(h), 0);
    /* The next scheduling may reuse the slot: the old handle must not
     * cancel it. */
    CHECK_ERR(cio_call_soon(loop, say, "y", &h2), 0);
    CHECK_EQ(cio_handle_cancel(h), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_EQ(cio_handle_cancel(h2), 0);
    CHECK_LOG(&L, "x y");
    cio_handle zero = {0};
    CHECK_EQ(cio_handle_cancel(zero), 0);
    cio_loop_free(loop);
}

static cio_handle victim;
static void cancel_victim(void *arg)
{
    say(arg);
    CHECK_EQ(cio_handle_cancel(victim), 1);
}

TEST(cancel_from_an_earlier_callback_of_the_same_iteration)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, cancel_victim, "A", NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "B", &victim), 0);
    CHECK_ERR(cio_call_soon(loop, say, "C", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 2);
    CHECK_LOG(&L, "A C");
    cio_loop_free(loop);
}

static cio_handle self_handle;
static void cancel_own_handle(void *arg)
{
    say(arg);
    CHECK_EQ(cio_handle_cancel(self_handle), 0);
}

TEST(cancel_from_inside_its_own_callback_returns_0)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, cancel_own_handle, "me", &self_handle), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_LOG(&L, "me");
    cio_loop_free(loop);
}

TEST(cancelled_timer_leaves_the_heap_at_once)
{
    cio_loop *loop = loop_open();
    cio_handle h;
    CHECK_ERR(cio_call_later(loop, 10.0, say, "never", &h), 0);
    CHECK_EQ(loop->heap_len, 1);
    CHECK_EQ(cio_handle_cancel(h), 1);
    CHECK_EQ(loop->heap_len, 0); /* no timer left to wake the loop for */
    CHECK_EQ(cio_handle_cancel(h), 0);
    CHECK_ERR(cio_call_later(loop, 0.01, say_stop, "done", NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "done");
    CHECK_EQ(loop->heap_len, 0);
    cio_loop_free(loop);
}

TEST(cancelling_some_timers_keeps_the_others_in_order)
{
    cio_loop *loop = loop_open();
    const char *names[] = {"t1", "t2", "t3", "t4", "t5"};
    cio_handle h[5];
    double t = cio_loop_time(loop);
    for (int i = 0; i < 5; i++)
        CHECK_ERR(cio_call_at(loop, t + 0.001 * (5 - i), say, (void *)names[i],
                              &h[i]),
                  0);
    CHECK_EQ(cio_handle_cancel(h[1]), 1);
    CHECK_EQ(cio_handle_cancel(h[3]), 1);
    CHECK_ERR(cio_call_at(loop, t + 0.01, stop_cb, NULL, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "t5 t3 t1");
    for (int i = 0; i < 5; i++)
        CHECK_EQ(cio_handle_cancel(h[i]), 0);
    cio_loop_free(loop);
}

/* -------------------------------------------------------------- run_once */

TEST(run_once_with_a_timeout_waits_that_long)
{
    cio_loop *loop = loop_open();
    double t0 = mono();
    CHECK_EQ(cio_loop_run_once(loop, 0.05), 0);
    CHECK(mono() - t0 >= 0.04);
    cio_loop_free(loop);
}

TEST(run_once_waits_for_the_next_timer)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_later(loop, 0.02, say, "t", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 5.0), 1);
    CHECK_LOG(&L, "t");
    cio_loop_free(loop);
}

TEST(run_once_with_zero_timeout_polls_io)
{
    cio_loop *loop = loop_open();
    int p[2];
    readable_pipe(p);
    CHECK_ERR(cio_add_reader(loop, p[0], say, "read"), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_LOG(&L, "read");
    CHECK_EQ(cio_remove_reader(loop, p[0]), 1);
    cio_loop_free(loop);
    close_pair(p);
}

/* ------------------------------------------------------ threadsafe calls */

/* Waits until the loop is blocked in the kernel (an internal flag), so the
 * post below has to wake it. */
static void wait_until_sleeping(cio_loop *loop)
{
    while (!atomic_load(&loop->posts.sleeping))
        nap(0.0005);
    nap(0.01);
}

static void *post_stop(void *arg)
{
    cio_loop *loop = arg;
    wait_until_sleeping(loop);
    CHECK_ERR(cio_call_soon_threadsafe(loop, say_stop, "posted"), 0);
    return NULL;
}

TEST(call_soon_threadsafe_wakes_a_blocked_loop)
{
    cio_loop *loop = loop_open();
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, post_stop, loop), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_LOG(&L, "posted");
    cio_loop_free(loop);
}

enum { POSTERS = 2 };
static long posts_each, posts_seen, post_next[POSTERS];

static void post_check(void *arg)
{
    intptr_t v = (intptr_t)arg;
    int t = (int)(v >> 24);
    long i = (long)(v & 0xffffff);
    CHECK_EQ(i, post_next[t]); /* each thread's posts keep their order */
    post_next[t]++;
    if (++posts_seen == POSTERS * posts_each)
        cio_loop_stop(LOOP);
}

static void *post_many(void *arg)
{
    intptr_t t = (intptr_t)arg;
    for (long i = 0; i < posts_each; i++) {
        CHECK_ERR(cio_call_soon_threadsafe(LOOP, post_check,
                                           (void *)((t << 24) | i)),
                  0);
        if (i % 1000 == 0)
            nap(0.0002); /* let the loop fall asleep now and then */
    }
    return NULL;
}

TEST_T(call_soon_threadsafe_keeps_each_threads_order, 30)
{
    cio_loop *loop = loop_open();
    posts_each = test_scaled(20000);
    pthread_t th[POSTERS];
    for (intptr_t t = 0; t < POSTERS; t++)
        CHECK_EQ(pthread_create(&th[t], NULL, post_many, (void *)t), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    for (int t = 0; t < POSTERS; t++)
        CHECK_EQ(pthread_join(th[t], NULL), 0);
    CHECK_EQ(posts_seen, POSTERS * posts_each);
    cio_loop_free(loop);
}

TEST(call_soon_threadsafe_from_the_loop_thread_and_leftovers_at_close)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon_threadsafe(loop, say, "a"), 0);
    CHECK_ERR(cio_call_soon(loop, say, "b", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 2);
    /* Posts never run are freed by close (the harness checks for leaks). */
    CHECK_ERR(cio_call_soon_threadsafe(loop, say, "dropped"), 0);
    CHECK_ERR(cio_call_soon_threadsafe(loop, say, "dropped"), 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_ERR(cio_call_soon_threadsafe(loop, say, "x"), -ESHUTDOWN);
    cio_loop_free(loop);
    CHECK_EQ(strstr(L.buf, "dropped") == NULL, 1);
}

/* asyncio's call_soon_threadsafe is call_soon plus a wake-up: called from
 * the loop's own thread, it keeps its place among call_soon callbacks. */
static void mix_posts_and_soon(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_call_soon_threadsafe(LOOP, say, "a"), 0);
    CHECK_ERR(cio_call_soon(LOOP, say, "b", NULL), 0);
    CHECK_ERR(cio_call_soon_threadsafe(LOOP, say, "c"), 0);
    CHECK_ERR(cio_call_soon(LOOP, say_stop, "d", NULL), 0);
}

TEST(call_soon_threadsafe_on_the_loop_thread_keeps_call_soon_order)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, mix_posts_and_soon, NULL, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "a b c d");
    cio_loop_free(loop);
}

TEST(run_once_counts_each_posted_callback)
{
    cio_loop *loop = loop_open();
    for (int i = 0; i < 3; i++)
        CHECK_ERR(cio_call_soon_threadsafe(loop, say, "p"), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 3);
    CHECK_LOG(&L, "p p p");
    cio_loop_free(loop);
}

/* ------------------------------------------------------ exception handler */

static struct {
    int calls;
    cio_loop *loop;
    cio_error_context ctx;
    void *arg;
} got;

static void record_handler(cio_loop *loop, const cio_error_context *ctx,
                           void *arg)
{
    got.calls++;
    got.loop = loop;
    got.ctx = *ctx;
    got.arg = arg;
}

static void report_boom(void *arg)
{
    cio_error_context c = {"boom", -EIO, "handle", "h1", arg};
    CHECK_ERR(cio_loop_call_exception_handler(LOOP, &c), 0);
}

TEST(exception_handler_receives_the_context)
{
    cio_loop *loop = loop_open();
    int marker, obj;
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_handler, &marker),
              0);
    report_boom(&obj);
    CHECK_EQ(got.calls, 1);
    CHECK(got.loop == loop);
    CHECK(got.arg == &marker);
    CHECK_STR(got.ctx.message, "boom");
    CHECK_ERR(got.ctx.error, -EIO);
    CHECK_STR(got.ctx.what, "handle");
    CHECK_STR(got.ctx.name, "h1");
    CHECK(got.ctx.object == &obj);

    /* NULL restores the default, which prints one line to stderr. */
    CHECK_ERR(cio_loop_set_exception_handler(loop, NULL, NULL), 0);
    char out[512];
    capture_stderr(report_boom, &obj, out, sizeof out);
    CHECK_EQ(got.calls, 1);
    CHECK(strncmp(out, "cio: boom", 9) == 0);
    CHECK(strstr(out, "handle h1") != NULL);
    CHECK(strstr(out, cio_strerror(-EIO)) != NULL);
    CHECK(strchr(out, '\n') == out + strlen(out) - 1);
    cio_loop_free(loop);
}

TEST(exception_handler_bad_arguments)
{
    cio_loop *loop = loop_open();
    cio_error_context c = {"m", 0, NULL, NULL, NULL};
    cio_error_context no_message = {NULL, -EIO, NULL, NULL, NULL};
    CHECK_ERR(cio_loop_call_exception_handler(NULL, &c), -EINVAL);
    CHECK_ERR(cio_loop_call_exception_handler(loop, NULL), -EINVAL);
    CHECK_ERR(cio_loop_call_exception_handler(loop, &no_message), -EINVAL);
    CHECK_ERR(cio_loop_set_exception_handler(NULL, record_handler, NULL),
              -EINVAL);
    CHECK_ERR(cio_loop_set_exception_handler(loop, record_handler, NULL), 0);
    CHECK_ERR(cio_loop_call_exception_handler(loop, &c), 0);
    CHECK_EQ(got.calls, 1);
    CHECK_ERR(got.ctx.error, 0);
    CHECK(got.ctx.what == NULL && got.ctx.name == NULL);
    cio_loop_free(loop);
}

/* ------------------------------------------------------------ debug mode */

static atomic_int eperm_reports;
static void count_eperm(cio_loop *loop, const cio_error_context *ctx,
                        void *arg)
{
    (void)loop;
    (void)arg;
    if (ctx->error == -EPERM)
        atomic_fetch_add(&eperm_reports, 1);
}

static int debug_pipe[2];
static void *wrong_thread_calls(void *arg)
{
    cio_loop *loop = arg;
    CHECK_EQ(cio_get_running_loop() == NULL, 1);
    CHECK_ERR(cio_call_soon(loop, say, "no", NULL), -EPERM);
    CHECK_ERR(cio_call_later(loop, 0.01, say, "no", NULL), -EPERM);
    CHECK_ERR(cio_call_at(loop, 0, say, "no", NULL), -EPERM);
    CHECK_ERR(cio_add_reader(loop, debug_pipe[0], say, "no"), -EPERM);
    CHECK_ERR(cio_call_soon_threadsafe(loop, say_stop, "yes"), 0);
    return NULL;
}

static pthread_t debug_thread;
static void start_wrong_thread(void *arg)
{
    CHECK_EQ(pthread_create(&debug_thread, NULL, wrong_thread_calls, arg), 0);
}

TEST(debug_mode_refuses_calls_from_another_thread)
{
    cio_loop *loop = loop_open_with(NULL, 1);
    CHECK_EQ(cio_loop_get_debug(loop), 1);
    CHECK_EQ(pipe(debug_pipe), 0);
    CHECK_ERR(cio_loop_set_exception_handler(loop, count_eperm, NULL), 0);
    CHECK_ERR(cio_call_soon(loop, start_wrong_thread, loop, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_EQ(pthread_join(debug_thread, NULL), 0);
    CHECK_LOG(&L, "yes");
    CHECK_EQ(atomic_load(&eperm_reports), 4);
    CHECK_EQ(cio_remove_reader(loop, debug_pipe[0]), 0);
    cio_loop_free(loop);
    close_pair(debug_pipe);
}

static void *call_soon_from_thread(void *arg)
{
    CHECK_ERR(cio_call_soon(arg, say, "from thread", NULL), 0);
    return NULL;
}

TEST(debug_mode_allows_other_threads_while_the_loop_is_not_running)
{
    cio_loop *loop = loop_open_with(NULL, 1);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, call_soon_from_thread, loop), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_LOG(&L, "from thread");
    cio_loop_free(loop);
}

static void slow(void *arg)
{
    (void)arg;
    nap(0.03);
}

static void run_slow_callback(void *arg)
{
    CHECK_ERR(cio_call_soon(arg, slow, NULL, NULL), 0);
    CHECK_EQ(cio_loop_run_once(arg, 0), 1);
}

TEST(debug_mode_warns_about_slow_callbacks)
{
    cio_loop_options opts = {NULL, 1, 0.01};
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, &opts), 0);
    char out[512];
    capture_stderr(run_slow_callback, loop, out, sizeof out);
    CHECK(strstr(out, "took") != NULL);
    cio_loop_free(loop);
}

/* A task's slow step is named as the task, with where it was made. */
static int blocks(void *arg)
{
    (void)arg;
    nap(0.03); /* blocks the loop, as a task must not */
    return 0;
}

static void run_slow_task(void *arg)
{
    cio_task_options o = {.name = "sleepy-cook"};
    cio_task *t = NULL;
    CHECK_ERR(cio_task_new(arg, blocks, NULL, &o, &t), 0);
    CHECK_ERR(cio_loop_run_until_complete(arg, t), 0);
    cio_future_unref(t);
}

TEST(debug_mode_names_the_task_of_a_slow_step)
{
    cio_loop_options opts = {NULL, 1, 0.01};
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, &opts), 0);
    char out[512];
    capture_stderr(run_slow_task, loop, out, sizeof out);
    if (!strstr(out, "executing task sleepy-cook (created at tests/test_loop.c:")
        || strstr(out, "executing callback"))
        test_fail(__FILE__, __LINE__, "stderr was: %s", out);
    cio_loop_free(loop);
}

TEST(debug_mode_switches)
{
    cio_loop *loop = loop_open_with(NULL, -1);
    CHECK_EQ(cio_loop_get_debug(loop), 0);
    CHECK_ERR(cio_loop_set_debug(loop, 1), 0);
    CHECK_EQ(cio_loop_get_debug(loop), 1);
    CHECK_ERR(cio_loop_set_debug(loop, 0), 0);
    CHECK_EQ(cio_loop_get_debug(loop), 0);
    cio_loop_free(loop);

    CHECK_EQ(setenv("CIO_DEBUG", "1", 1), 0);
    loop = loop_open_with(NULL, 0);
    CHECK_EQ(cio_loop_get_debug(loop), 1);
    cio_loop_free(loop);
    loop = loop_open_with(NULL, -1); /* explicit off beats the environment */
    CHECK_EQ(cio_loop_get_debug(loop), 0);
    cio_loop_free(loop);
    CHECK_EQ(setenv("CIO_DEBUG", "0", 1), 0);
    loop = loop_open_with(NULL, 0);
    CHECK_EQ(cio_loop_get_debug(loop), 0);
    cio_loop_free(loop);
}

/* --------------------------------------------------------------- bad use */

static cio_loop *other_loop;
static void nested_runs(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_run_forever(LOOP), -EBUSY);
    CHECK_ERR(cio_loop_run_once(LOOP, 0), -EBUSY);
    /* This thread already runs a loop: it cannot run a second one. */
    CHECK_ERR(cio_loop_run_forever(other_loop), -EBUSY);
    CHECK_ERR(cio_loop_run_once(other_loop, 0), -EBUSY);
    CHECK_EQ(cio_loop_is_running(LOOP), 1);
    CHECK_EQ(cio_loop_is_running(other_loop), 0);
    say_stop("checked");
}

TEST(run_forever_on_a_running_loop_is_ebusy)
{
    CHECK_ERR(cio_loop_new(&other_loop, NULL), 0);
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, nested_runs, NULL, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "checked");
    cio_loop_free(loop);
    cio_loop_free(other_loop);
}

TEST(a_closed_loop_refuses_to_run_and_to_schedule)
{
    cio_loop *loop = loop_open();
    int p[2];
    CHECK_EQ(pipe(p), 0);
    CHECK_EQ(cio_loop_is_closed(loop), 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_EQ(cio_loop_is_closed(loop), 1);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_ERR(cio_loop_run_forever(loop), -ESHUTDOWN);
    CHECK_ERR(cio_loop_run_once(loop, 0), -ESHUTDOWN);
    CHECK_ERR(cio_call_soon(loop, say, "x", NULL), -ESHUTDOWN);
    CHECK_ERR(cio_call_later(loop, 0.1, say, "x", NULL), -ESHUTDOWN);
    CHECK_ERR(cio_call_at(loop, 0, say, "x", NULL), -ESHUTDOWN);
    CHECK_ERR(cio_call_soon_threadsafe(loop, say, "x"), -ESHUTDOWN);
    CHECK_ERR(cio_add_reader(loop, p[0], say, "x"), -ESHUTDOWN);
    CHECK_ERR(cio_add_writer(loop, p[1], say, "x"), -ESHUTDOWN);
    cio_loop_free(loop);
    close_pair(p);
    CHECK_EQ(L.len, 0);
}

static void try_close(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_close(LOOP), -EBUSY);
    CHECK_EQ(cio_loop_is_closed(LOOP), 0);
    say_stop("tried");
}

TEST(closing_a_running_loop_is_ebusy)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, try_close, NULL, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "tried");
    CHECK_ERR(cio_loop_close(loop), 0);
    cio_loop_free(loop);
}

TEST(null_loops_and_callbacks_are_einval)
{
    cio_loop *loop = loop_open();
    cio_handle h = {0};
    CHECK_ERR(cio_loop_new(NULL, NULL), -EINVAL);
    CHECK_ERR(cio_call_soon(NULL, say, "x", &h), -EINVAL);
    CHECK_ERR(cio_call_soon(loop, NULL, "x", &h), -EINVAL);
    CHECK_ERR(cio_call_later(NULL, 0, say, "x", NULL), -EINVAL);
    CHECK_ERR(cio_call_later(loop, 0, NULL, "x", NULL), -EINVAL);
    CHECK_ERR(cio_call_at(NULL, 0, say, "x", NULL), -EINVAL);
    CHECK_ERR(cio_call_at(loop, 0, NULL, "x", NULL), -EINVAL);
    CHECK_ERR(cio_call_soon_threadsafe(NULL, say, "x"), -EINVAL);
    CHECK_ERR(cio_call_soon_threadsafe(loop, NULL, "x"), -EINVAL);
    CHECK_ERR(cio_add_reader(NULL, 0, say, "x"), -EINVAL);
    CHECK_ERR(cio_add_writer(NULL, 1, say, "x"), -EINVAL);
    CHECK_ERR(cio_remove_reader(NULL, 0), -EINVAL);
    CHECK_ERR(cio_remove_writer(NULL, 1), -EINVAL);
    CHECK_ERR(cio_remove_reader(loop, -1), -EINVAL);
    CHECK_ERR(cio_loop_run_forever(NULL), -EINVAL);
    CHECK_ERR(cio_loop_run_once(NULL, 0), -EINVAL);
    CHECK_ERR(cio_loop_stop(NULL), -EINVAL);
    CHECK_ERR(cio_loop_close(NULL), -EINVAL);
    CHECK_ERR(cio_loop_set_debug(NULL, 1), -EINVAL);
    CHECK_EQ(cio_loop_get_debug(NULL), 0);
    CHECK_EQ(cio_loop_is_running(NULL), 0);
    CHECK_EQ(cio_loop_is_closed(NULL), 0);
    cio_loop_free(NULL);
    CHECK_EQ(cio_handle_cancel(h), 0);

    int p[2];
    CHECK_EQ(pipe(p), 0);
    CHECK_ERR(cio_add_reader(loop, p[0], NULL, "x"), -EINVAL);
    CHECK_ERR(cio_add_writer(loop, p[1], NULL, "x"), -EINVAL);
    CHECK_EQ(cio_remove_reader(loop, p[0]), 0);
    close_pair(p);

    cio_loop_options bad_backend = {"kqueue", 0, 0};
    cio_loop_options bad_slow = {NULL, 0, -1};
    cio_loop *l2 = (cio_loop *)&h;
    CHECK_ERR(cio_loop_new(&l2, &bad_backend), -EINVAL);
    CHECK(l2 == NULL);
    CHECK_ERR(cio_loop_new(&l2, &bad_slow), -EINVAL);
    CHECK_EQ(cio_loop_run_once(loop, 0), 0);
    cio_loop_free(loop);
}

TEST(nan_delays_are_einval)
{
    cio_loop *loop = loop_open();
    cio_handle h = {0};
    CHECK_ERR(cio_call_later(loop, NAN, say, "x", &h), -EINVAL);
    CHECK_ERR(cio_call_at(loop, NAN, say, "x", &h), -EINVAL);
    CHECK_ERR(cio_loop_run_once(loop, NAN), -EINVAL);
    CHECK_EQ(cio_handle_cancel(h), 0);
    CHECK_EQ(loop->heap_len, 0);
    /* Zero and CIO_NO_TIMEOUT are valid delays. */
    CHECK_ERR(cio_call_later(loop, CIO_NO_TIMEOUT, say, "never", &h), 0);
    CHECK_ERR(cio_call_later(loop, 0, say, "now", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0.01), 1);
    CHECK_EQ(cio_loop_run_once(loop, 0.01), 0);
    CHECK_LOG(&L, "now");
    CHECK_EQ(cio_handle_cancel(h), 1);
    cio_loop_free(loop);
}

/* asyncio's call_later takes any delay: one <= 0 is due at once, so it
 * runs in the next iteration, after the callbacks already ready (the due
 * timers join the ready queue behind them), earliest deadline first. */
TEST(negative_delays_run_soon)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, say, "A", NULL), 0);
    CHECK_ERR(cio_call_later(loop, 0, say, "zero", NULL), 0);
    CHECK_ERR(cio_call_later(loop, -1, say, "minus1", NULL), 0);
    CHECK_ERR(cio_call_later(loop, -INFINITY, say, "-inf", NULL), 0);
    CHECK_ERR(cio_call_at(loop, cio_loop_time(loop) - 5, say, "past", NULL),
              0);
    CHECK_ERR(cio_call_soon(loop, say, "B", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 6);
    CHECK_LOG(&L, "A B -inf past minus1 zero");
    cio_loop_free(loop);
}

/* run_once's timeout keeps the rule: a negative one does not wait (it
 * used to wait as long as needed, here for the 100 s timer). */
TEST(run_once_negative_timeout_does_not_wait)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_later(loop, 100, say, "late", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, -1), 0);
    CHECK_EQ(cio_loop_run_once(loop, -INFINITY), 0);
    CHECK_ERR(cio_call_later(loop, 0.001, say, "soon", NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, CIO_NO_TIMEOUT), 1);
    CHECK_LOG(&L, "soon");
    cio_loop_free(loop);
}

static void check_running_loop(void *arg)
{
    CHECK(cio_get_running_loop() == arg);
    CHECK_EQ(cio_loop_is_running(arg), 1);
    say_stop("inside");
}

TEST(get_running_loop_inside_and_outside)
{
    CHECK(cio_get_running_loop() == NULL);
    cio_loop *loop = loop_open();
    CHECK(cio_get_running_loop() == NULL);
    CHECK_ERR(cio_call_soon(loop, check_running_loop, loop, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK(cio_get_running_loop() == NULL);
    CHECK_ERR(cio_call_soon(loop, check_running_loop, loop, NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK(cio_get_running_loop() == NULL);
    CHECK_LOG(&L, "inside inside");
    cio_loop_free(loop);
}

static double first_time;
static void time_first(void *arg)
{
    (void)arg;
    first_time = cio_loop_time(LOOP);
    nap(0.02);
    CHECK(cio_loop_time(LOOP) == first_time);
}
static void time_second(void *arg)
{
    (void)arg;
    CHECK(cio_loop_time(LOOP) == first_time);
    CHECK_ERR(cio_call_soon(LOOP, say_stop, "next", NULL), 0);
}
static void time_next(void *arg)
{
    (void)arg;
    CHECK(cio_loop_time(LOOP) >= first_time + 0.019);
}

TEST(loop_time_is_constant_within_one_iteration)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_call_soon(loop, time_first, NULL, NULL), 0);
    CHECK_ERR(cio_call_soon(loop, time_second, NULL, NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 2);
    CHECK_ERR(cio_call_soon(loop, time_next, NULL, NULL), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 2);
    CHECK_LOG(&L, "next");
    cio_loop_free(loop);
}

/* ------------------------------------------------- threads and loops */

static pthread_barrier_t both_running;
static cio_loop *thread_loop;

static void in_thread_loop(void *arg)
{
    (void)arg;
    CHECK(cio_get_running_loop() == thread_loop);
    pthread_barrier_wait(&both_running);
    CHECK(cio_get_running_loop() == thread_loop);
    CHECK_ERR(cio_loop_stop(thread_loop), 0);
}

static void *loop_thread_main(void *arg)
{
    (void)arg;
    CHECK(cio_get_running_loop() == NULL); /* main's loop is running */
    CHECK_ERR(cio_loop_new(&thread_loop, NULL), 0);
    CHECK_ERR(cio_call_soon(thread_loop, in_thread_loop, NULL, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(thread_loop), 0);
    CHECK(cio_get_running_loop() == NULL);
    cio_loop_free(thread_loop);
    return NULL;
}

static pthread_t other_thread;
static void in_main_loop(void *arg)
{
    CHECK_EQ(pthread_create(&other_thread, NULL, loop_thread_main, NULL), 0);
    pthread_barrier_wait(&both_running);
    CHECK(cio_get_running_loop() == arg);
    say_stop("main");
}

TEST(each_thread_has_its_own_running_loop)
{
    cio_loop *loop = loop_open();
    CHECK_EQ(pthread_barrier_init(&both_running, NULL, 2), 0);
    CHECK_ERR(cio_call_soon(loop, in_main_loop, loop, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_EQ(pthread_join(other_thread, NULL), 0);
    CHECK(cio_get_running_loop() == NULL);
    CHECK_LOG(&L, "main");
    pthread_barrier_destroy(&both_running);
    cio_loop_free(loop);
}

/* ---------------------------------------------------- failure injection
 * One scenario touches every path that allocates or makes a system call:
 * a new loop, 200 call_soon, 200 call_later, a reader on a pipe, and a
 * post from another thread to the loop while it sleeps in the kernel.
 * With the N-th allocation or system call failing, it must end with a
 * clean error (or recover) and leak nothing. */

enum { FAULT_SOON = 200, FAULT_LATER = 200 };

typedef struct fault_run {
    cio_loop *loop;
    int pipe[2];
    int soon, later, reads, posts;
    atomic_int all_ran; /* loop -> poster: only the post is missing */
    atomic_int quit;    /* scenario -> poster: give up */
    int post_err;       /* the first error the poster got */
} fault_run;

static void fault_progress(fault_run *r)
{
    if (r->soon == FAULT_SOON && r->later == FAULT_LATER && r->reads == 1)
        atomic_store(&r->all_ran, 1);
}

static void fault_soon(void *arg)
{
    fault_run *r = arg;
    r->soon++;
    fault_progress(r);
}

static void fault_later(void *arg)
{
    fault_run *r = arg;
    r->later++;
    fault_progress(r);
}

static void fault_read(void *arg)
{
    fault_run *r = arg;
    char c;
    CHECK_EQ(read(r->pipe[0], &c, 1), 1);
    CHECK_EQ(cio_remove_reader(r->loop, r->pipe[0]), 1);
    r->reads++;
    fault_progress(r);
}

static void fault_posted(void *arg)
{
    fault_run *r = arg;
    r->posts++;
    CHECK_ERR(cio_loop_stop(r->loop), 0);
}

static void *fault_poster(void *arg)
{
    fault_run *r = arg;
    while (!atomic_load(&r->quit) &&
           !(atomic_load(&r->all_ran) && atomic_load(&r->loop->posts.sleeping)))
        nap(0.0002);
    if (atomic_load(&r->quit))
        return NULL;
    /* A failed post never runs; the injected failure happens once, so
     * the retry goes through. */
    int err = cio_call_soon_threadsafe(r->loop, fault_posted, r);
    if (err) {
        r->post_err = err;
        CHECK_ERR(cio_call_soon_threadsafe(r->loop, fault_posted, r), 0);
    }
    return NULL;
}

static int loop_fault_scenario(void *arg)
{
    (void)arg;
    fault_run r = {0};
    pthread_t th;
    bool started = false;
    int err = cio_loop_new(&r.loop, NULL);
    if (err)
        return err;
    readable_pipe(r.pipe);
    for (int i = 0; i < FAULT_SOON && !err; i++)
        err = cio_call_soon(r.loop, fault_soon, &r, NULL);
    for (int i = 0; i < FAULT_LATER && !err; i++)
        err = cio_call_later(r.loop, (i % 20) * 0.0005, fault_later, &r, NULL);
    if (!err)
        err = cio_add_reader(r.loop, r.pipe[0], fault_read, &r);
    if (!err) {
        CHECK_EQ(pthread_create(&th, NULL, fault_poster, &r), 0);
        started = true;
        err = cio_loop_run_forever(r.loop);
    }
    atomic_store(&r.quit, 1);
    if (started)
        CHECK_EQ(pthread_join(th, NULL), 0);
    if (!err)
        err = r.post_err;
    if (!err) {
        CHECK_EQ(r.soon, FAULT_SOON);
        CHECK_EQ(r.later, FAULT_LATER);
        CHECK_EQ(r.reads, 1);
        CHECK_EQ(r.posts, 1);
    }
    cio_loop_free(r.loop);
    close_pair(r.pipe);
    return err;
}

TEST_T(failing_allocations_give_clean_errors, 60)
{
    CHECK(test_fault_loop(CIO__FAULT_ALLOC, 0, loop_fault_scenario, NULL) > 5);
}

TEST_T(failing_system_calls_emfile_give_clean_errors, 60)
{
    CHECK(test_fault_loop(CIO__FAULT_SYS, EMFILE, loop_fault_scenario, NULL) >
          3);
}

TEST_T(failing_system_calls_enomem_give_clean_errors, 60)
{
    CHECK(test_fault_loop(CIO__FAULT_SYS, ENOMEM, loop_fault_scenario, NULL) >
          3);
}

/* ----------------------------------------------------------------- stress
 * 100,000 timers with pseudo-random delays in [0, 0.05), quantised to
 * 0.1 ms so many share a deadline, a third of them cancelled: the rest
 * fire in (deadline, scheduling order), never before their deadline. */

enum { STRESS_MAX = 100000 };
static double st_when[STRESS_MAX];
static cio_handle st_handle[STRESS_MAX];
static long st_fired, st_expected, st_last = -1;

static void st_fire(void *arg)
{
    long i = (long)(intptr_t)arg;
    if (st_last >= 0 && (st_when[i] < st_when[st_last] ||
                         (st_when[i] == st_when[st_last] && i < st_last)))
        test_fail(__FILE__, __LINE__, "timer %ld (%.6f) fired after %ld (%.6f)",
                  i, st_when[i], st_last, st_when[st_last]);
    if (cio_loop_time(LOOP) + 2e-9 < st_when[i])
        test_fail(__FILE__, __LINE__, "timer %ld fired %.6f s early", i,
                  st_when[i] - cio_loop_time(LOOP));
    st_last = i;
    if (++st_fired == st_expected)
        cio_loop_stop(LOOP);
}

TEST_T(stress_100k_timers_fire_in_deadline_order, 60)
{
    cio_loop *loop = loop_open();
    long n = test_scaled(STRESS_MAX);
    uint64_t x = 0x9e3779b97f4a7c15u;
    double base = cio_loop_time(loop);
    for (long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        st_when[i] = base + (double)(x % 500) * 1e-4;
        CHECK_ERR(cio_call_at(loop, st_when[i], st_fire, (void *)(intptr_t)i,
                              &st_handle[i]),
                  0);
    }
    st_expected = n;
    for (long i = 0; i < n; i += 3) {
        CHECK_EQ(cio_handle_cancel(st_handle[i]), 1);
        st_expected--;
    }
    CHECK_EQ(loop->heap_len, st_expected);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_EQ(st_fired, st_expected);
    CHECK_EQ(loop->heap_len, 0);
    cio_loop_free(loop);
}

/* ------------------------------------------------------ the program's codes */

static int fails_with_user_code(void *arg) { return CIO_EUSER(*(int *)arg); }

/* A task failing with the program's own code, never retrieved, reported
 * by the default handler. */
static void unretrieved_user_error(void *arg)
{
    cio_loop *loop = loop_open();
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, fails_with_user_code, arg, NULL, &t), 0);
    cio_future_unref(t); /* the loop's reference is the last */
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    cio_loop_free(loop);
}

static const char *name_user_codes(int n)
{
    return n == 42 ? "configuration missing" : NULL;
}

static void report_unknown_code(void *arg)
{
    cio_error_context c = {"odd", -29999, NULL, NULL, arg};
    CHECK_ERR(cio_loop_call_exception_handler(LOOP, &c), 0);
}

TEST(user_error_codes_are_named)
{
    CHECK_EQ(CIO_EUSER(0), CIO_EUSER_BASE);
    CHECK_EQ(CIO_EUSER_NUM(CIO_EUSER(7)), 7);
    CHECK_EQ(CIO_EUSER_NUM(CIO_EUSER(CIO_EUSER_COUNT - 1)),
             CIO_EUSER_COUNT - 1);
    CHECK_EQ(CIO_EUSER_NUM(CIO_EUSER(CIO_EUSER_COUNT)), -1);
    CHECK_EQ(CIO_EUSER_NUM(-EIO), -1);
    CHECK_EQ(CIO_EUSER_NUM(CIO_ENOTASK), -1);
    CHECK_STR(cio_strerror(CIO_EUSER(7)), "user error 7");
    CHECK_STR(cio_strerror(CIO_EUSER(CIO_EUSER_COUNT)), "unknown error");
    CHECK_STR(cio_strerror(CIO_ENOTASK), "not inside a task");
    cio_set_user_strerror(name_user_codes);
    CHECK_STR(cio_strerror(CIO_EUSER(42)), "configuration missing");
    CHECK_STR(cio_strerror(CIO_EUSER(41)), "user error 41");
    cio_set_user_strerror(NULL);
    CHECK_STR(cio_strerror(CIO_EUSER(42)), "user error 42");
}

/* Every cio code has its own name; asyncio's meanings win over errno's
 * texts; other errno codes read as strerror does; anything else, or a
 * positive number, is "unknown error". */
TEST(every_error_code_has_its_name)
{
    CHECK_STR(cio_strerror(0), "success");
    CHECK_STR(cio_strerror(CIO_EINCOMPLETE),
              "incomplete read: end of stream before the expected data");
    CHECK_STR(cio_strerror(CIO_ELIMIT),
              "limit overrun: separator not found within the buffer limit");
    CHECK_STR(cio_strerror(CIO_EBROKEN), "broken barrier");
    CHECK_STR(cio_strerror(CIO_ETLS),
              "TLS failure (cio_tls_error_string says why)");
    CHECK_STR(cio_strerror(CIO_ETLSEOF),
              "TLS connection ended without close_notify (truncated)");
    CHECK_STR(cio_strerror(-ECANCELED), "cancelled");
    CHECK_STR(cio_strerror(-ETIMEDOUT), "timed out");
    CHECK_STR(cio_strerror(-ESHUTDOWN), "shut down");
    CHECK_STR(cio_strerror(-EIO), strerror(EIO));
    CHECK_STR(cio_strerror(-ECONNRESET), strerror(ECONNRESET));
    CHECK_STR(cio_strerror(-4095), "unknown error"); /* errno has none */
    CHECK_STR(cio_strerror(-4096), "unknown error");
    CHECK_STR(cio_strerror(EIO), "unknown error"); /* not negated */
    CHECK_STR(cio_strerror(1 << 30), "unknown error");
    /* Between the ranges: cio's codes, then getaddrinfo's, then users'. */
    CHECK_STR(cio_strerror(-30005), "unknown error");
    CHECK_STR(cio_strerror(CIO_EAI_BASE + 1), "unknown error");
    CHECK_STR(cio_strerror(CIO_EAI_BASE - 200), "unknown error");
    CHECK_EQ(cio_version(), CIO_VERSION_HEX);
    CHECK_STR(cio_version_string(), CIO_VERSION_STRING);
}

TEST(unretrieved_user_errors_are_reported_by_name)
{
    char out[512];
    int n = 7;
    capture_stderr(unretrieved_user_error, &n, out, sizeof out);
    CHECK_STR(out, "cio: Task exception was never retrieved (task Task-1): "
                   "user error 7\n");
    cio_set_user_strerror(name_user_codes);
    n = 42;
    capture_stderr(unretrieved_user_error, &n, out, sizeof out);
    CHECK_STR(out, "cio: Task exception was never retrieved (task Task-1): "
                   "configuration missing\n");
    /* A code nobody names still says which it is. */
    cio_loop *loop = loop_open();
    capture_stderr(report_unknown_code, NULL, out, sizeof out);
    CHECK_STR(out, "cio: odd: unknown error -29999\n");
    cio_loop_free(loop);
}

/* asyncio's Handle.cancelled(). */
TEST(handle_cancelled_tells_a_cancelled_scheduling)
{
    cio_loop *loop = loop_open();
    cio_handle a, b, c;
    CHECK_ERR(cio_call_soon(loop, say, "a", &a), 0);
    CHECK_ERR(cio_call_later(loop, 0, say, "b", &b), 0);
    CHECK_ERR(cio_call_later(loop, 100, say, "c", &c), 0);
    CHECK_EQ(cio_handle_cancelled(a), 0); /* pending */
    CHECK_EQ(cio_handle_cancel(a), 1);
    CHECK_EQ(cio_handle_cancel(c), 1);
    CHECK_EQ(cio_handle_cancelled(a), 1);
    CHECK_EQ(cio_handle_cancelled(c), 1);
    CHECK_EQ(cio_handle_cancelled(b), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_LOG(&L, "b");
    CHECK_EQ(cio_handle_cancelled(b), 0); /* it ran */
    CHECK_EQ(cio_handle_cancel(b), 0);
    CHECK_EQ(cio_handle_cancelled(b), 0);
    /* Still so while their slots serve new schedulings. */
    cio_handle more[8];
    for (int i = 0; i < 8; i++)
        CHECK_ERR(cio_call_soon(loop, say, "m", &more[i]), 0);
    CHECK_EQ(cio_handle_cancelled(a), 1);
    CHECK_EQ(cio_handle_cancelled(c), 1);
    CHECK_EQ(cio_handle_cancelled(more[0]), 0);
    CHECK_EQ(cio_handle_cancelled((cio_handle){0}), 0);
    cio_loop_free(loop);
}
