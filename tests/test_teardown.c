/* Closing a loop with tasks parked in every kind of wait. The stacks of
 * destroyed tasks are zeroed when they go back to the pool
 * (cio__stack_poison_released), so anything the loop still held into one
 * (a timer, a wait-queue link, a list node) shows at once as a hang, a
 * crash or a sanitizer report instead of stale frames that happen to hold
 * together. The harness checks allocations and fds after each test.
 *
 * Every test: start the tasks, run the loop until each is parked, close
 * and free the loop with them still parked. */
#define _GNU_SOURCE
#include "harness.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static void quiet(cio_loop *loop, const cio_error_context *ctx, void *arg)
{
    (void)loop, (void)ctx;
    ++*(int *)arg; /* "Task was destroyed but it is pending!" is expected */
}

static int REPORTS;

static cio_loop *open_poisoned(void)
{
    cio__stack_poison_released = true;
    cio_loop *loop = NULL;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    CHECK_ERR(cio_loop_set_exception_handler(loop, quiet, &REPORTS), 0);
    return loop;
}

static void spawn_on(cio_loop *loop, cio_task_fn fn, void *arg)
{
    CHECK_ERR(cio_task_new(loop, fn, arg, NULL, NULL), 0);
}

/* Runs iterations without blocking: every task started gets to park. */
static void settle_loop(cio_loop *loop)
{
    for (int i = 0; i < 8; i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
}

static void close_and_free(cio_loop *loop)
{
    CHECK_ERR(cio_loop_close(loop), 0);
    cio_loop_free(loop);
}

/* Runs the loop (blocking at most 10 ms an iteration) until cond holds,
 * within a bound. */
#define RUN_UNTIL(loop, cond)                                                  \
    do {                                                                       \
        double t0_ = mono();                                                   \
        while (!(cond)) {                                                      \
            if (mono() - t0_ > 20)                                             \
                test_fail(__FILE__, __LINE__, "timed out waiting for %s",      \
                          #cond);                                              \
            CHECK(cio_loop_run_once(loop, 0.01) >= 0);                         \
        }                                                                      \
    } while (0)

static atomic_int PARKED; /* tasks that reached their wait */

static cio_future *NEVER; /* a future nobody completes */

static int await_never(void *arg)
{
    (void)arg;
    PARKED++;
    return cio_await(NEVER, NULL);
}

/* --------------------------------------------------------------- sleep */

static int sleeper(void *arg)
{
    (void)arg;
    return cio_sleep(100);
}

/* The program: one task in cio_sleep. */
TEST(teardown_sleep)
{
    cio_loop *loop = open_poisoned();
    spawn_on(loop, sleeper, NULL);
    cio_loop_run_once(loop, 0);
    cio_loop_run_once(loop, 0);
    close_and_free(loop);
}

/* Several sleepers: the timer heap holds several stack timers at once. */
TEST(teardown_sleep_many)
{
    cio_loop *loop = open_poisoned();
    for (int i = 0; i < 5; i++)
        spawn_on(loop, sleeper, NULL);
    settle_loop(loop);
    close_and_free(loop);
}

/* -------------------------------------------------------- timeout scope */

static int in_scopes(void *arg)
{
    (void)arg;
    cio_timeout_scope outer, inner;
    CHECK_ERR(cio_timeout(&outer, 200), 0);
    CHECK_ERR(cio_timeout(&inner, 100), 0);
    return await_never(NULL);
}

TEST(teardown_timeout_scope)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_future_new(loop, &NEVER), 0);
    spawn_on(loop, in_scopes, NULL);
    spawn_on(loop, in_scopes, NULL);
    settle_loop(loop);
    CHECK_EQ(PARKED, 2);
    close_and_free(loop);
    cio_future_unref(NEVER);
}

static int waits_for(void *arg)
{
    (void)arg;
    return cio_wait_for(NEVER, 100, NULL);
}

TEST(teardown_wait_for)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_future_new(loop, &NEVER), 0);
    spawn_on(loop, waits_for, NULL);
    settle_loop(loop);
    close_and_free(loop);
    cio_future_unref(NEVER);
}

/* -------------------------------------------------------- future await */

static int awaits_task(void *arg) { return cio_await(arg, NULL); }

/* One task awaits a plain future, another awaits that task. */
TEST(teardown_future_await)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_future_new(loop, &NEVER), 0);
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, await_never, NULL, NULL, &t), 0);
    spawn_on(loop, awaits_task, t);
    settle_loop(loop);
    CHECK_EQ(PARKED, 1);
    close_and_free(loop);
    cio_future_unref(t);
    cio_future_unref(NEVER);
}

/* ------------------------------------------------------------ sync waits */

static cio_lock LOCK;

static int holds_lock(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_lock_acquire(&LOCK), 0);
    return await_never(NULL);
}

static int wants_lock(void *arg)
{
    (void)arg;
    PARKED++;
    return cio_lock_acquire(&LOCK);
}

/* Two waiters queued behind the holder: their nodes link to each other. */
TEST(teardown_lock)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_future_new(loop, &NEVER), 0);
    CHECK_ERR(cio_lock_init(&LOCK), 0);
    spawn_on(loop, holds_lock, NULL);
    spawn_on(loop, wants_lock, NULL);
    spawn_on(loop, wants_lock, NULL);
    settle_loop(loop);
    CHECK_EQ(PARKED, 3);
    close_and_free(loop);
    cio_future_unref(NEVER);
}

static int released_lock_waiter(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_lock_acquire(&LOCK), 0);
    CHECK_ERR(cio_sleep(0), 0);
    return cio_lock_release(&LOCK); /* hands it to a parked waiter */
}

/* The lock is handed to a waiter that never runs again. */
TEST(teardown_lock_handed)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_lock_init(&LOCK), 0);
    spawn_on(loop, released_lock_waiter, NULL);
    spawn_on(loop, wants_lock, NULL);
    spawn_on(loop, wants_lock, NULL);
    cio_loop_run_once(loop, 0); /* all three start; the first yields */
    cio_loop_run_once(loop, 0); /* it releases: the second is handed it */
    close_and_free(loop);
}

static cio_event EVENT;

static int waits_event(void *arg)
{
    (void)arg;
    return cio_event_wait(&EVENT);
}

TEST(teardown_event)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_event_init(&EVENT), 0);
    for (int i = 0; i < 3; i++)
        spawn_on(loop, waits_event, NULL);
    settle_loop(loop);
    close_and_free(loop);
}

static cio_condition COND;

static int waits_condition(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_condition_acquire(&COND), 0);
    return cio_condition_wait(&COND);
}

TEST(teardown_condition)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_lock_init(&LOCK), 0);
    CHECK_ERR(cio_condition_init(&COND, &LOCK), 0);
    for (int i = 0; i < 3; i++)
        spawn_on(loop, waits_condition, NULL);
    settle_loop(loop);
    close_and_free(loop);
}

static cio_semaphore SEM;

static int takes_unit(void *arg)
{
    (void)arg;
    return cio_semaphore_acquire(&SEM);
}

TEST(teardown_semaphore)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_semaphore_init(&SEM, 1), 0);
    for (int i = 0; i < 3; i++)
        spawn_on(loop, takes_unit, NULL);
    settle_loop(loop);
    close_and_free(loop);
}

static cio_barrier BARRIER;

static int at_barrier(void *arg)
{
    (void)arg;
    return cio_barrier_wait(&BARRIER);
}

TEST(teardown_barrier)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_barrier_init(&BARRIER, 3), 0);
    spawn_on(loop, at_barrier, NULL);
    spawn_on(loop, at_barrier, NULL);
    settle_loop(loop);
    close_and_free(loop);
}

/* ---------------------------------------------------------------- queues */

static cio_queue *Q;

static int getter(void *arg)
{
    (void)arg;
    int item;
    return cio_queue_get(Q, &item);
}

static int putter(void *arg)
{
    int item = (int)(intptr_t)arg;
    return cio_queue_put(Q, &item);
}

static int joiner(void *arg)
{
    (void)arg;
    return cio_queue_join(Q);
}

TEST(teardown_queue_get)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_queue_new(&Q, sizeof(int), 1), 0);
    spawn_on(loop, getter, NULL);
    spawn_on(loop, getter, NULL);
    settle_loop(loop);
    close_and_free(loop);
    cio_queue_free(Q);
}

TEST(teardown_queue_put_and_join)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_queue_new(&Q, sizeof(int), 1), 0);
    for (int i = 0; i < 3; i++)
        spawn_on(loop, putter, (void *)(intptr_t)i);
    spawn_on(loop, joiner, NULL);
    settle_loop(loop);
    close_and_free(loop);
    cio_queue_free(Q);
}

/* ---------------------------------------------------- gather, wait, ... */

static cio_future *FUTS[2];

static int gathers(void *arg)
{
    (void)arg;
    return cio_gather(FUTS, 2, 0, NULL);
}

static int waits(void *arg)
{
    (void)arg;
    return cio_wait(FUTS, 2, CIO_ALL_COMPLETED, 100, NULL, NULL, NULL, NULL);
}

static int iterates(void *arg)
{
    (void)arg;
    cio_as_completed *it;
    CHECK_ERR(cio_as_completed_new(FUTS, 2, 100, &it), 0);
    cio_future *f;
    int r = cio_as_completed_next(it, &f);
    cio_as_completed_free(it);
    return r;
}

static void run_multi(cio_task_fn fn)
{
    cio_loop *loop = open_poisoned();
    CHECK_ERR(cio_future_new(loop, &FUTS[0]), 0);
    CHECK_ERR(cio_future_new(loop, &FUTS[1]), 0);
    spawn_on(loop, fn, NULL);
    spawn_on(loop, fn, NULL);
    settle_loop(loop);
    close_and_free(loop);
    cio_future_unref(FUTS[0]);
    cio_future_unref(FUTS[1]);
}

TEST(teardown_gather) { run_multi(gathers); }
TEST(teardown_wait) { run_multi(waits); }
TEST(teardown_as_completed) { run_multi(iterates); }

/* -------------------------------------------------------------- executor */

static atomic_int WORK_DONE, RELEASE;

/* Held until the loop stopped running, so that its result cannot be
 * delivered before the close. */
static int work(void *arg)
{
    (void)arg;
    while (!atomic_load(&RELEASE))
        usleep(1000);
    WORK_DONE = 1;
    return 7;
}

static int to_thread(void *arg)
{
    (void)arg;
    PARKED++;
    return cio_to_thread(work, NULL);
}

/* Has the worker handed its result to the loop (not yet delivered)? */
static bool result_arrived(cio_loop *loop)
{
    pthread_mutex_lock(&loop->posts.lock);
    bool in = loop->posts.arrived.next != &loop->posts.arrived;
    pthread_mutex_unlock(&loop->posts.lock);
    return in;
}

/* The result arrives, and the loop closes before delivering it. */
TEST(teardown_executor)
{
    int base = thread_base();
    cio_loop *loop = open_poisoned();
    spawn_on(loop, to_thread, NULL);
    settle_loop(loop);
    CHECK_EQ(PARKED, 1);
    RELEASE = 1;
    double t0 = mono();
    while (!result_arrived(loop)) {
        if (mono() - t0 > 20)
            test_fail(__FILE__, __LINE__, "the work's result never arrived");
        usleep(1000);
    }
    CHECK_EQ(WORK_DONE, 1);
    close_and_free(loop);
    WAIT_UNTIL(thread_count() == base);
}

static atomic_int STARTED;

/* Still running when the loop closes, then writes into its task's frame. */
static int writes_late(void *arg)
{
    STARTED = 1;
    while (!atomic_load(&RELEASE))
        usleep(1000);
    *(int *)arg = 42;
    return 0;
}

static int lends_frame(void *arg)
{
    (void)arg;
    int local = 0;
    PARKED++;
    int r = cio_to_thread(writes_late, &local);
    return r < 0 ? r : local;
}

static void *release_later(void *arg)
{
    (void)arg;
    usleep(20000); /* after the close has begun, or not: both must hold */
    RELEASE = 1;
    return NULL;
}

/* The work outlives the task that lent it its frame: closing the loop
 * must not give the stack back (or unmap it) while the work still runs. */
TEST(teardown_executor_work_running)
{
    int base = thread_base();
    cio_loop *loop = open_poisoned();
    spawn_on(loop, lends_frame, NULL);
    RUN_UNTIL(loop, STARTED == 1);
    CHECK_EQ(PARKED, 1);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, release_later, NULL), 0);
    close_and_free(loop);
    CHECK_EQ(RELEASE, 1); /* the close waited for the work */
    CHECK_EQ(pthread_join(th, NULL), 0);
    WAIT_UNTIL(thread_count() == base);
}

static int never_runs(void *arg)
{
    (void)arg;
    test_fail(__FILE__, __LINE__, "work queued before the close ran");
}

static int queues_behind(void *arg)
{
    (void)arg;
    int local = 0;
    PARKED++;
    return cio_to_thread(never_runs, &local);
}

/* Work still queued (the only worker is busy) when the loop closes is
 * cancelled: it never runs on a frame that is gone. */
TEST(teardown_executor_work_queued)
{
    int base = thread_base();
    cio_loop *loop = open_poisoned();
    cio_executor *one;
    CHECK_ERR(cio_executor_new(&one, 1), 0);
    CHECK_ERR(cio_loop_set_default_executor(loop, one), 0);
    spawn_on(loop, lends_frame, NULL);
    RUN_UNTIL(loop, STARTED == 1);
    spawn_on(loop, queues_behind, NULL);
    RUN_UNTIL(loop, PARKED == 2);
    settle_loop(loop);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, release_later, NULL), 0);
    close_and_free(loop);
    CHECK_EQ(pthread_join(th, NULL), 0);
    WAIT_UNTIL(thread_count() == base);
}

/* ------------------------------------------------------------ subprocess */

static cio_process *CHILD;

static int waits_child(void *arg)
{
    (void)arg;
    const char *argv[] = {"sleep", "100", NULL};
    CHECK_ERR(cio_create_subprocess_exec(argv, NULL, &CHILD), 0);
    PARKED++;
    return cio_process_wait(CHILD, NULL);
}

TEST(teardown_subprocess_wait)
{
    int base = thread_base();
    cio_loop *loop = open_poisoned();
    spawn_on(loop, waits_child, NULL);
    RUN_UNTIL(loop, PARKED == 1);
    settle_loop(loop);
    pid_t pid = cio_process_pid(CHILD);
    close_and_free(loop);
    CHECK_EQ(kill(pid, SIGKILL), 0); /* the reaper waits for it */
    cio_process_free(CHILD);
    WAIT_UNTIL(thread_count() == base);
}

/* ------------------------------------------------------------ networking */

/* A listening socket on 127.0.0.1 (backlog as given); its port in *port. */
static int listener(int backlog, char port[16])
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ(listen(fd, backlog), 0);
    socklen_t len = sizeof a;
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    snprintf(port, 16, "%u", ntohs(a.sin_port));
    return fd;
}

static char PORT[16];
static cio_stream *STREAM;

static int reads(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_open_connection("127.0.0.1", PORT, NULL, &STREAM), 0);
    char buf[16];
    PARKED++;
    return (int)cio_stream_read(STREAM, buf, sizeof buf);
}

static int drains(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_open_connection("127.0.0.1", PORT, NULL, &STREAM), 0);
    static char chunk[1 << 20];
    for (int i = 0; i < 16; i++) /* the peer never reads */
        CHECK_ERR(cio_stream_write(STREAM, chunk, sizeof chunk), 0);
    PARKED++;
    return cio_stream_drain(STREAM);
}

static void run_stream(cio_task_fn fn)
{
    int base = thread_base();
    int lfd = listener(8, PORT);
    cio_loop *loop = open_poisoned();
    spawn_on(loop, fn, NULL);
    RUN_UNTIL(loop, PARKED == 1);
    settle_loop(loop);
    close_and_free(loop);
    cio_stream_free(STREAM);
    close(lfd);
    WAIT_UNTIL(thread_count() == base);
}

TEST(teardown_stream_read) { run_stream(reads); }
TEST(teardown_stream_drain) { run_stream(drains); }

static int connects(void *arg)
{
    (void)arg;
    cio_stream *s;
    PARKED++;
    return cio_open_connection("127.0.0.1", PORT, NULL, &s);
}

/* Connecting to a listener whose accept queue is full: the SYN goes
 * unanswered, so the task stays parked in the connect (happy eyeballs,
 * its delay timer armed). */
TEST(teardown_connect)
{
    int base = thread_base();
    int lfd = listener(0, PORT);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)atoi(PORT))};
    int fill = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fill >= 0); /* backlog 0 holds one: this one */
    CHECK_EQ(connect(fill, (struct sockaddr *)&a, sizeof a), 0);
    cio_loop *loop = open_poisoned();
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, connects, NULL, NULL, &t), 0);
    RUN_UNTIL(loop, PARKED == 1);
    for (int i = 0; i < 20; i++) /* the resolution done, the connect on */
        CHECK(cio_loop_run_once(loop, 0.005) >= 0);
    CHECK_EQ(cio_future_done(t), 0);
    close_and_free(loop);
    cio_future_unref(t);
    close(fill);
    close(lfd);
    WAIT_UNTIL(thread_count() == base);
}
