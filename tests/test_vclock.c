/* The virtual clock (cio_loop_set_virtual_clock, cio_loop_advance): time
 * moves only when the loop is idle, straight to the next deadline, so
 * long sleeps and timeouts take no real time and always run the same way.
 *
 * "No real time" is asserted without a clock: loop->blocking_waits counts
 * the backend waits that were allowed to block, and stays 0 while the
 * clock jumps. Virtual clocks start at round numbers, so times compare
 * exactly.
 *
 * Every test runs in its own forked process: the globals start fresh. */
#define _GNU_SOURCE
#include "util.h"

#include <math.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

/* The running loop on a virtual clock reading `start`. */
static cio_loop *go_virtual(double start)
{
    cio_loop *loop = loop_now();
    CHECK_ERR(cio_loop_set_virtual_clock(loop, start), 0);
    CHECK(now() == start);
    return loop;
}

/* A callback: logs arg and the loop time it ran at. */
static void say_when(void *arg)
{
    test_log_add(&L, "%s@%g", (const char *)arg, cio_loop_time(LOOP));
}

static void say_when_stop(void *arg)
{
    say_when(arg);
    CHECK_ERR(cio_loop_stop(LOOP), 0);
}

/* ------------------------------------------------------------- sleeping */

static int main_sleep_30(void *arg)
{
    (void)arg;
    cio_loop *loop = go_virtual(0);
    unsigned long waits = loop->blocking_waits;
    CHECK_ERR(cio_sleep(30), 0);
    CHECK(now() == 30);
    CHECK_EQ(loop->blocking_waits, waits); /* it never slept for real */
    return 0;
}

TEST(vclock_a_30_s_sleep_ends_at_30_without_waiting)
{
    run_strict(main_sleep_30, NULL);
}

/* --------------------------------------------------------- timer order */

/* Deadlines relative to the clock's reading at the start: two equal, one
 * already due, and a call_soon. */
static void schedule_order_scenario(cio_loop *loop)
{
    double base = cio_loop_time(loop);
    CHECK_ERR(cio_call_at(loop, base + 0.003, say, "a", NULL), 0);
    CHECK_ERR(cio_call_at(loop, base + 0.001, say, "b", NULL), 0);
    CHECK_ERR(cio_call_at(loop, base + 0.002, say, "c", NULL), 0);
    CHECK_ERR(cio_call_at(loop, base + 0.001, say, "d", NULL), 0);
    CHECK_ERR(cio_call_at(loop, base, say, "e", NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "f", NULL), 0);
    CHECK_ERR(cio_call_at(loop, base + 0.004, say_stop, "stop", NULL), 0);
}

TEST(vclock_timers_run_in_the_order_of_the_real_clock)
{
    cio_loop *loop = loop_open();
    schedule_order_scenario(loop);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    cio_loop_free(loop);
    char real[sizeof L.buf];
    strcpy(real, L.buf);
    L.len = 0;
    L.buf[0] = 0;

    loop = loop_open();
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 0), 0);
    schedule_order_scenario(loop);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK(cio_loop_time(loop) == 0.004);
    CHECK_EQ(loop->blocking_waits, 0);
    cio_loop_free(loop);
    CHECK_STR(L.buf, real);
    CHECK_LOG(&L, "f e b d c a stop");
}

/* ------------------------------------------------------------ timeouts */

static int main_scope(void *arg)
{
    (void)arg;
    cio_loop *loop = go_virtual(0);
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 10), 0);
    CHECK_ERR(cio_sleep(20), -ETIMEDOUT);
    CHECK(now() == 10);
    CHECK_ERR(cio_timeout_end(&s), -ETIMEDOUT);
    CHECK_EQ(loop->blocking_waits, 0);
    return 0;
}

TEST(vclock_a_10_s_scope_around_a_20_s_sleep_times_out_at_10)
{
    run_strict(main_scope, NULL);
}

static int sleep_then_7(void *arg)
{
    int r = cio_sleep((double)(intptr_t)arg);
    return r ? r : 7;
}

static int main_wait_for(void *arg)
{
    (void)arg;
    go_virtual(0);
    cio_task *slow = spawn(sleep_then_7, IARG(5));
    CHECK_ERR(cio_wait_for(slow, 3, NULL), -ETIMEDOUT);
    CHECK(now() == 3);
    CHECK(cio_future_cancelled(slow));
    cio_future_unref(slow);
    cio_task *quick = spawn(sleep_then_7, IARG(2));
    CHECK_ERR(cio_wait_for(quick, 3, NULL), 7);
    CHECK(now() == 5);
    cio_future_unref(quick);
    return 0;
}

TEST(vclock_wait_for_times_out_or_returns_at_the_virtual_deadline)
{
    run_strict(main_wait_for, NULL);
}

/* ------------------------------------------------- call_later, call_at */

TEST(vclock_call_later_and_call_at_run_at_their_virtual_times)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 100), 0);
    CHECK(cio_loop_time(loop) == 100); /* also while not running */
    CHECK_ERR(cio_call_later(loop, 2.5, say_when, "later", NULL), 0);
    CHECK_ERR(cio_call_at(loop, 101, say_when, "at", NULL), 0);
    CHECK_ERR(cio_call_later(loop, 0, say_when, "now", NULL), 0);
    CHECK_ERR(cio_call_at(loop, 200, say_when_stop, "stop", NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "now@100 at@101 later@102.5 stop@200");
    /* run_once's timeout is a deadline too: with nothing scheduled the
     * clock jumps by it; with 0 it stays. */
    CHECK_EQ(cio_loop_run_once(loop, 5), 0);
    CHECK(cio_loop_time(loop) == 205);
    CHECK_EQ(cio_loop_run_once(loop, 0), 0);
    CHECK(cio_loop_time(loop) == 205);
    CHECK_EQ(loop->blocking_waits, 0);
    cio_loop_free(loop);
}

/* ------------------------------------------------------------ real I/O */

static int sp[2]; /* a socketpair */

static void read_byte(void *arg)
{
    char c;
    CHECK_EQ(read(sp[0], &c, 1), 1);
    CHECK_EQ(cio_remove_reader(LOOP, sp[0]), 1);
    say_when(arg);
}

TEST(vclock_io_already_there_arrives_before_the_clock_jumps)
{
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 0), 0);
    CHECK_ERR(cio_call_later(loop, 30, say_when_stop, "timer", NULL), 0);
    CHECK_ERR(cio_add_reader(loop, sp[0], read_byte, "read"), 0);
    CHECK_ERR(cio_loop_run_once(loop, 0), 0); /* nothing yet: no jump */
    CHECK(cio_loop_time(loop) == 0);
    CHECK_EQ(write(sp[1], "x", 1), 1);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_LOG(&L, "read@0 timer@30");
    CHECK_EQ(loop->blocking_waits, 0);
    cio_loop_free(loop);
    close_pair(sp);
}

/* Writes once the loop sleeps in the backend. */
static void *write_when_asleep(void *arg)
{
    cio_loop *loop = arg;
    WAIT_UNTIL(atomic_load(&loop->posts.sleeping));
    CHECK_EQ(write(sp[1], "x", 1), 1);
    return NULL;
}

static void read_byte_stop(void *arg)
{
    read_byte(arg);
    CHECK_ERR(cio_loop_stop(LOOP), 0);
}

TEST(vclock_with_nothing_scheduled_the_loop_blocks_for_io)
{
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 0), 0);
    CHECK_ERR(cio_add_reader(loop, sp[0], read_byte_stop, "read"), 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, write_when_asleep, loop), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_LOG(&L, "read@0");
    CHECK_EQ(loop->blocking_waits, 1);
    cio_loop_free(loop);
    close_pair(sp);
}

/* ------------------------------------------------------------- threads */

static int nap_then_3(void *arg)
{
    (void)arg;
    nap(0.01);
    return 3;
}

/* The loop waits for the worker (for real) instead of jumping to the
 * scope's deadline: the worker is quicker than 10 s. */
static int main_to_thread(void *arg)
{
    (void)arg;
    go_virtual(0);
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 10), 0);
    CHECK_ERR(cio_to_thread(nap_then_3, NULL), 3);
    CHECK(now() == 0);
    CHECK_ERR(cio_timeout_end(&s), 0);
    CHECK_ERR(cio_sleep(10), 0); /* no work in flight: a jump again */
    CHECK(now() == 10);
    return 0;
}

TEST(vclock_work_in_a_thread_lands_before_a_later_deadline)
{
    run_strict(main_to_thread, NULL);
}

/* ------------------------------------------------------- advancing by hand */

TEST(vclock_advance_runs_exactly_the_timers_that_became_due_in_order)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 0), 0);
    CHECK_ERR(cio_call_at(loop, 2, say_when, "b", NULL), 0);
    CHECK_ERR(cio_call_at(loop, 1, say_when, "a", NULL), 0);
    CHECK_ERR(cio_call_at(loop, 3, say_when, "d", NULL), 0);
    CHECK_ERR(cio_call_at(loop, 2, say_when, "c", NULL), 0);
    CHECK_ERR(cio_loop_advance(loop, 2), 0);
    CHECK(cio_loop_time(loop) == 2);
    CHECK_EQ(cio_loop_run_once(loop, 0), 3);
    CHECK_LOG(&L, "a@2 b@2 c@2");
    CHECK_EQ(cio_loop_run_once(loop, 0), 0);
    CHECK_ERR(cio_loop_advance(loop, 0.5), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 0);
    CHECK_ERR(cio_loop_advance(loop, 0.5), 0);
    CHECK_EQ(cio_loop_run_once(loop, 0), 1);
    CHECK_LOG(&L, "a@2 b@2 c@2 d@3");
    cio_loop_free(loop);
}

static int main_advance(void *arg)
{
    (void)arg;
    cio_loop *loop = go_virtual(0);
    CHECK_ERR(cio_call_later(loop, 4, say, "t4", NULL), 0);
    CHECK_ERR(cio_call_later(loop, 6, say, "t6", NULL), 0);
    CHECK_ERR(cio_call_soon(loop, say, "soon", NULL), 0);
    CHECK_ERR(cio_loop_advance(loop, 5), 0);
    test_log_add(&L, "advanced");
    CHECK_ERR(cio_sleep(0), 0); /* the due timer ran before we resumed */
    test_log_add(&L, "resumed@%g", now());
    CHECK_ERR(cio_sleep(1), 0);
    CHECK_LOG(&L, "advanced soon t4 resumed@5 t6");
    return 0;
}

TEST(vclock_advance_from_a_task_runs_due_timers_at_its_next_suspension)
{
    run_strict(main_advance, NULL);
}

TEST(vclock_bad_calls)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_advance(loop, 1), -EINVAL); /* real clock */
    CHECK_ERR(cio_loop_set_virtual_clock(NULL, 0), -EINVAL);
    CHECK_ERR(cio_loop_set_virtual_clock(loop, NAN), -EINVAL);
    CHECK_ERR(cio_loop_set_virtual_clock(loop, INFINITY), -EINVAL);
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 10), 0);
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 9), -EINVAL); /* no way back */
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 12), 0);
    CHECK_ERR(cio_loop_advance(NULL, 1), -EINVAL);
    CHECK_ERR(cio_loop_advance(loop, -1), -EINVAL);
    CHECK_ERR(cio_loop_advance(loop, NAN), -EINVAL);
    CHECK_ERR(cio_loop_advance(loop, INFINITY), -EINVAL);
    CHECK(cio_loop_time(loop) == 12);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_ERR(cio_loop_advance(loop, 1), -ESHUTDOWN);
    CHECK_ERR(cio_loop_set_virtual_clock(loop, 20), -ESHUTDOWN);
    cio_loop_free(loop);
}
