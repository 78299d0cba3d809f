/* Lock, event, condition, semaphore, barrier: asyncio's documented
 * behaviour, and every cancellation case of issue 4 - a waiter cancelled
 * (or timed out) after it was handed the lock, a unit or a notification,
 * but before it ran, passes it on.
 *
 * Tests whose deadlines are timers, not real waiting, run on the virtual
 * clock (cio_loop_set_virtual_clock): the same order, no real time. */
#include "util.h"

#include <math.h>

/* ------------------------------------------------------------- helpers */

/* A task that takes a lock (or semaphore), logs, holds it across one
 * yield and gives it back. `deadline` > 0: inside a timeout scope ending
 * at that loop time. */
typedef struct user {
    const char *name;
    cio_lock *lock;
    cio_semaphore *sem;
    test_log *log;
    double deadline;
    int result;      /* what acquire returned */
    int scope_end;   /* what the scope's end returned */
    bool started, done;
} user;

static int acquire(user *u)
{
    return u->lock ? cio_lock_acquire(u->lock) : cio_semaphore_acquire(u->sem);
}

static void release(user *u)
{
    if (u->lock)
        CHECK_ERR(cio_lock_release(u->lock), 0);
    else
        CHECK_ERR(cio_semaphore_release(u->sem), 0);
}

static int user_run(void *arg)
{
    user *u = arg;
    cio_timeout_scope scope;
    u->started = true;
    if (u->deadline > 0)
        CHECK_ERR(cio_timeout_at(&scope, u->deadline), 0);
    u->result = acquire(u);
    if (u->deadline > 0)
        u->scope_end = cio_timeout_end(&scope);
    test_log_add(u->log, "%s:%s", u->name,
                 u->result == 0 ? "got" : cio_strerror(u->result));
    if (u->result == 0) {
        cio_sleep(0);
        release(u);
    }
    u->done = true;
    return 0;
}

/* The same, ending with acquire's error as the task's status. */
static int user_run_status(void *arg)
{
    user_run(arg);
    user *u = arg;
    return u->result < 0 ? u->result : 0;
}

static void release_cb(void *arg) { CHECK_ERR(cio_lock_release(arg), 0); }

/* ------------------------------------------------------------------ lock */

static int lock_basics_main(void *arg)
{
    (void)arg;
    cio_lock lock = CIO_LOCK_INIT;
    CHECK_EQ(cio_lock_locked(&lock), 0);
    CHECK_ERR(cio_lock_release(&lock), -EINVAL);
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    CHECK_EQ(cio_lock_locked(&lock), 1);
    CHECK_ERR(cio_lock_release(&lock), 0);
    CHECK_EQ(cio_lock_locked(&lock), 0);
    CHECK_ERR(cio_lock_release(&lock), -EINVAL);
    CHECK_ERR(cio_lock_init(&lock), 0);
    CHECK_ERR(cio_lock_acquire(NULL), -EINVAL);
    CHECK_ERR(cio_lock_release(NULL), -EINVAL);
    CHECK_ERR(cio_lock_init(NULL), -EINVAL);
    CHECK_EQ(cio_lock_locked(NULL), 0);
    return 0;
}

TEST(lock_acquire_release_locked_and_bad_release)
{
    CHECK_ERR(cio_run(lock_basics_main, NULL), 0);
    cio_lock lock = CIO_LOCK_INIT;
    CHECK_ERR(cio_lock_acquire(&lock), CIO_ENOTASK);
    CHECK_ERR(cio_lock_release(&lock), -EINVAL);
}

static int lock_fifo_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_lock lock = CIO_LOCK_INIT;
    user u[4] = {{.name = "A"}, {.name = "B"}, {.name = "C"}, {.name = "D"}};
    cio_task *t[4];
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    for (int i = 0; i < 3; i++) {
        u[i].lock = &lock;
        u[i].log = &log;
        t[i] = spawn(user_run, &u[i]);
    }
    settle();
    /* The lock goes to A; D, arriving before A runs, queues behind C. */
    CHECK_ERR(cio_lock_release(&lock), 0);
    CHECK_EQ(cio_lock_locked(&lock), 1);
    u[3].lock = &lock;
    u[3].log = &log;
    t[3] = spawn(user_run, &u[3]);
    for (int i = 0; i < 4; i++)
        CHECK_ERR(finish(t[i]), 0);
    CHECK_LOG(&log, "A:got B:got C:got D:got");
    CHECK_EQ(cio_lock_locked(&lock), 0);
    return 0;
}

TEST(lock_waiters_get_it_in_fifo_order_and_newcomers_queue)
{
    CHECK_ERR(cio_run(lock_fifo_main, NULL), 0);
}

static int lock_cancel_waiting_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_lock lock = CIO_LOCK_INIT;
    user a = {.name = "A", .lock = &lock, .log = &log};
    user b = {.name = "B", .lock = &lock, .log = &log};
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    cio_task *ta = spawn(user_run, &a), *tb = spawn(user_run, &b);
    settle();
    CHECK_EQ(cio_task_cancel(ta), 1);
    settle();
    CHECK(a.done);
    CHECK_ERR(a.result, -ECANCELED);
    CHECK_EQ(cio_lock_locked(&lock), 1); /* still ours */
    CHECK_ERR(cio_lock_release(&lock), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(finish(ta), 0);
    CHECK_LOG(&log, "A:cancelled B:got");
    CHECK_EQ(cio_lock_locked(&lock), 0);
    return 0;
}

TEST(lock_waiter_cancelled_while_waiting_leaves_the_queue)
{
    CHECK_ERR(cio_run(lock_cancel_waiting_main, NULL), 0);
}

static int lock_cancel_handed_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_lock lock = CIO_LOCK_INIT;
    user a = {.name = "A", .lock = &lock, .log = &log};
    user b = {.name = "B", .lock = &lock, .log = &log};
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    cio_task *ta = spawn(user_run, &a), *tb = spawn(user_run, &b);
    settle();
    CHECK_ERR(cio_lock_release(&lock), 0); /* handed to A, which has not run */
    CHECK_EQ(cio_task_cancel(ta), 1);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(a.result, -ECANCELED);
    CHECK_ERR(b.result, 0);
    CHECK_LOG(&log, "A:cancelled B:got");
    CHECK_EQ(cio_lock_locked(&lock), 0);
    CHECK_ERR(cio_lock_acquire(&lock), 0); /* nobody holds it */
    return 0;
}

TEST(lock_handed_to_a_cancelled_waiter_goes_to_the_next)
{
    CHECK_ERR(cio_run(lock_cancel_handed_main, NULL), 0);
}

static int lock_cancel_last_handed_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_lock lock = CIO_LOCK_INIT;
    user a = {.name = "A", .lock = &lock, .log = &log};
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    cio_task *ta = spawn(user_run, &a);
    settle();
    CHECK_ERR(cio_lock_release(&lock), 0);
    cio_task_cancel(ta);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(a.result, -ECANCELED);
    CHECK_EQ(cio_lock_locked(&lock), 0); /* not held by nobody */
    return 0;
}

TEST(lock_handed_to_a_cancelled_last_waiter_is_unlocked)
{
    CHECK_ERR(cio_run(lock_cancel_last_handed_main, NULL), 0);
}

static int lock_cancelled_entry_main(void *arg)
{
    (void)arg;
    cio_lock lock = CIO_LOCK_INIT;
    cio_task *self = cio_current_task();
    cio_task_cancel(self);
    CHECK_ERR(cio_lock_acquire(&lock), -ECANCELED); /* even though free */
    CHECK_EQ(cio_lock_locked(&lock), 0);
    CHECK_EQ(cio_task_uncancel(self), 0);
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    CHECK_ERR(cio_lock_release(&lock), 0);
    return 0;
}

TEST(lock_acquire_in_a_cancelled_task_fails_at_once)
{
    CHECK_ERR(cio_run(lock_cancelled_entry_main, NULL), 0);
}

static int lock_timeout_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_lock lock = CIO_LOCK_INIT;
    user a = {.name = "A", .lock = &lock, .log = &log};
    user b = {.name = "B", .lock = &lock, .log = &log};
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    a.deadline = cio_loop_time(loop_now()) + 0.01;
    cio_task *ta = spawn(user_run, &a), *tb = spawn(user_run, &b);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(a.result, -ETIMEDOUT);
    CHECK_ERR(a.scope_end, -ETIMEDOUT);
    CHECK_EQ(cio_lock_locked(&lock), 1);
    CHECK_ERR(cio_lock_release(&lock), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_LOG(&log, "A:timed out B:got");
    CHECK_EQ(cio_lock_locked(&lock), 0);
    return 0;
}

TEST(lock_acquire_times_out_in_a_scope_and_leaves_the_lock_consistent)
{
    CHECK_ERR(cio_run(lock_timeout_main, NULL), 0);
}

/* The release and the deadline fall in the same loop iteration, the
 * release first: A is handed the lock, then times out before it runs. */
static int lock_timeout_at_handoff_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_lock lock = CIO_LOCK_INIT;
    user a = {.name = "A", .lock = &lock, .log = &log};
    user b = {.name = "B", .lock = &lock, .log = &log};
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    double when = cio_loop_time(loop_now()) + 0.02;
    CHECK_ERR(cio_call_at(loop_now(), when, release_cb, &lock, NULL), 0);
    a.deadline = when; /* its scope's timer comes after release_cb's */
    cio_task *ta = spawn(user_run, &a), *tb = spawn(user_run, &b);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(a.result, -ETIMEDOUT);
    CHECK_ERR(b.result, 0);
    CHECK_LOG(&log, "A:timed out B:got");
    CHECK_EQ(cio_lock_locked(&lock), 0);
    return 0;
}

TEST(lock_handed_at_the_deadline_goes_to_the_next_waiter)
{
    CHECK_ERR(cio_run(lock_timeout_at_handoff_main, NULL), 0);
}

static int lock_wait_for_main(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    test_log log = {0};
    cio_lock lock = CIO_LOCK_INIT;
    user a = {.name = "A", .lock = &lock, .log = &log};
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    cio_task *ta = spawn(user_run_status, &a);
    CHECK_ERR(cio_wait_for(ta, 0.01, NULL), -ETIMEDOUT);
    CHECK(a.done);
    CHECK_ERR(a.result, -ECANCELED);
    CHECK_EQ(cio_lock_locked(&lock), 1);
    CHECK_ERR(cio_lock_release(&lock), 0);
    CHECK_EQ(cio_lock_locked(&lock), 0);
    cio_future_unref(ta);

    /* asyncio's old bug: the acquire succeeds in the very iteration the
     * timeout fires. The lock must not stay held by nobody. */
    user b = {.name = "B", .lock = &lock, .log = &log};
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    cio_task *tb = spawn(user_run_status, &b);
    double when = cio_loop_time(loop_now()) + 0.02;
    CHECK_ERR(cio_call_at(loop_now(), when, release_cb, &lock, NULL), 0);
    CHECK_ERR(cio_wait_for(tb, 0.02, NULL), -ETIMEDOUT);
    CHECK_ERR(b.result, -ECANCELED);
    CHECK_EQ(cio_lock_locked(&lock), 0);
    cio_future_unref(tb);
    CHECK_LOG(&log, "A:cancelled B:cancelled");
    return 0;
}

TEST(lock_wait_for_on_acquire_that_times_out_leaves_the_lock_consistent)
{
    CHECK_ERR(cio_run(lock_wait_for_main, NULL), 0);
}

/* Stress: workers take the lock in a loop while a chaos task cancels them
 * at random, often between hand-off and run. Mutual exclusion must hold
 * and the lock must end free. */
typedef struct chaos {
    cio_lock *lock;
    cio_semaphore *sem;
    int limit;               /* semaphore: units */
    int inside, max_inside;
    long entries;
    int rounds;
    bool stop;
    cio_task **workers;
    int nworkers;
    unsigned seed;
} chaos;

static unsigned rnd(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7fff;
}

static int chaos_worker(void *arg)
{
    chaos *c = arg;
    cio_task *self = cio_current_task();
    while (!c->stop) {
        int r = c->lock ? cio_lock_acquire(c->lock)
                        : cio_semaphore_acquire(c->sem);
        if (r) {
            CHECK_ERR(r, -ECANCELED);
            cio_task_uncancel(self);
            continue;
        }
        c->inside++;
        c->entries++;
        if (c->inside > c->max_inside)
            c->max_inside = c->inside;
        CHECK(c->inside <= c->limit);
        if (cio_sleep(0))
            cio_task_uncancel(self);
        c->inside--;
        if (c->lock)
            CHECK_ERR(cio_lock_release(c->lock), 0);
        else
            CHECK_ERR(cio_semaphore_release(c->sem), 0);
        if (cio_sleep(0))
            cio_task_uncancel(self);
    }
    return 0;
}

static int chaos_main(void *arg)
{
    chaos *c = arg;
    cio_task *w[8];
    c->workers = w;
    c->nworkers = 8;
    for (int i = 0; i < 8; i++)
        w[i] = spawn(chaos_worker, c);
    settle(); /* a task cancelled before it starts never runs */
    for (int i = 0; i < c->rounds; i++) {
        cio_task_cancel(w[rnd(&c->seed) % 8]);
        int yields = (int)(rnd(&c->seed) % 3);
        for (int k = 0; k < yields; k++)
            CHECK_ERR(cio_sleep(0), 0);
    }
    c->stop = true;
    for (int i = 0; i < 8; i++)
        CHECK_ERR(finish(w[i]), 0);
    CHECK_EQ(c->inside, 0);
    CHECK(c->entries > c->rounds / 4);
    CHECK_EQ(c->max_inside, c->limit);
    return 0;
}

TEST(lock_stays_exclusive_and_free_under_random_cancellation)
{
    cio_lock lock = CIO_LOCK_INIT;
    chaos c = {.lock = &lock, .limit = 1, .rounds = (int)test_scaled(20000),
               .seed = 42};
    CHECK_ERR(cio_run(chaos_main, &c), 0);
    CHECK_EQ(cio_lock_locked(&lock), 0);
}

/* ----------------------------------------------------------------- event */

typedef struct event_waiter {
    const char *name;
    cio_event *ev;
    test_log *log;
    int result;
} event_waiter;

static int event_waiter_run(void *arg)
{
    event_waiter *w = arg;
    w->result = cio_event_wait(w->ev);
    test_log_add(w->log, "%s:%s", w->name,
                 w->result == 0 ? "set" : cio_strerror(w->result));
    return 0;
}

static int event_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_event ev = CIO_EVENT_INIT;
    CHECK_EQ(cio_event_is_set(&ev), 0);
    event_waiter w[3] = {{"A", &ev, &log, 1}, {"B", &ev, &log, 1},
                         {"C", &ev, &log, 1}};
    cio_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(event_waiter_run, &w[i]);
    settle();
    CHECK_EQ(w[0].result, 1); /* still waiting */
    CHECK_ERR(cio_event_set(&ev), 0);
    CHECK_EQ(cio_event_is_set(&ev), 1);
    CHECK_ERR(cio_event_clear(&ev), 0); /* before they ran: still woken */
    CHECK_EQ(cio_event_is_set(&ev), 0);
    for (int i = 0; i < 3; i++)
        CHECK_ERR(finish(t[i]), 0);
    CHECK_LOG(&log, "A:set B:set C:set");
    CHECK_ERR(cio_event_set(&ev), 0);
    CHECK_ERR(cio_event_set(&ev), 0); /* idempotent */
    CHECK_ERR(cio_event_wait(&ev), 0); /* set: no wait */
    CHECK_ERR(cio_event_init(&ev), 0);
    CHECK_EQ(cio_event_is_set(&ev), 0);
    CHECK_ERR(cio_event_wait(NULL), -EINVAL);
    CHECK_ERR(cio_event_set(NULL), -EINVAL);
    CHECK_ERR(cio_event_clear(NULL), -EINVAL);
    CHECK_ERR(cio_event_init(NULL), -EINVAL);
    return 0;
}

TEST(event_set_wakes_every_waiter_in_order_even_if_cleared_before_they_run)
{
    CHECK_ERR(cio_run(event_main, NULL), 0);
    cio_event ev = CIO_EVENT_INIT;
    CHECK_ERR(cio_event_wait(&ev), CIO_ENOTASK);
}

static int event_cancel_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_event ev = CIO_EVENT_INIT;
    event_waiter a = {"A", &ev, &log, 1}, b = {"B", &ev, &log, 1};
    cio_task *ta = spawn(event_waiter_run, &a), *tb = spawn(event_waiter_run, &b);
    settle();
    cio_task_cancel(ta);
    settle();
    CHECK_ERR(a.result, -ECANCELED);
    CHECK_EQ(b.result, 1);

    cio_timeout_scope scope;
    CHECK_ERR(cio_timeout(&scope, 0.01), 0);
    CHECK_ERR(cio_event_wait(&ev), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&scope), -ETIMEDOUT);

    cio_event_set(&ev);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(finish(ta), 0);
    CHECK_LOG(&log, "A:cancelled B:set");

    cio_task_cancel(cio_current_task());
    CHECK_ERR(cio_event_wait(&ev), -ECANCELED); /* level-triggered */
    cio_task_uncancel(cio_current_task());
    return 0;
}

TEST(event_wait_is_cancellable_and_honours_timeout_scopes)
{
    CHECK_ERR(cio_run(event_cancel_main, NULL), 0);
}

/* ------------------------------------------------------------- condition */

typedef struct cond_waiter {
    const char *name;
    cio_condition *cond;
    test_log *log;
    double timeout;      /* > 0: wait inside a scope */
    int *counter;        /* wait_for: until *counter >= need */
    int need;
    int result;
    int held_after;      /* the lock was held when wait returned */
    bool done;
} cond_waiter;

static int enough(void *arg)
{
    cond_waiter *w = arg;
    return *w->counter >= w->need;
}

static int cond_waiter_run(void *arg)
{
    cond_waiter *w = arg;
    cio_timeout_scope scope;
    CHECK_ERR(cio_condition_acquire(w->cond), 0);
    if (w->timeout > 0)
        CHECK_ERR(cio_timeout(&scope, w->timeout), 0);
    w->result = w->counter ? cio_condition_wait_for(w->cond, enough, w)
                           : cio_condition_wait(w->cond);
    if (w->timeout > 0)
        cio_timeout_end(&scope);
    w->held_after = cio_condition_locked(w->cond);
    test_log_add(w->log, "%s:%s", w->name,
                 w->result == 0 ? "woke" : cio_strerror(w->result));
    CHECK_ERR(cio_condition_release(w->cond), 0);
    w->done = true;
    return 0;
}

static int cond_basic_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_condition cond = CIO_CONDITION_INIT;
    CHECK_ERR(cio_condition_wait(&cond), -EPERM);
    CHECK_ERR(cio_condition_notify(&cond, 1), -EPERM);
    CHECK_ERR(cio_condition_notify_all(&cond), -EPERM);
    CHECK_ERR(cio_condition_release(&cond), -EINVAL);
    cond_waiter w[3] = {{.name = "A"}, {.name = "B"}, {.name = "C"}};
    cio_task *t[3];
    for (int i = 0; i < 3; i++) {
        w[i].cond = &cond;
        w[i].log = &log;
        t[i] = spawn(cond_waiter_run, &w[i]);
    }
    settle();
    CHECK_EQ(cio_condition_locked(&cond), 0); /* every waiter released it */
    CHECK_ERR(cio_condition_acquire(&cond), 0);
    CHECK_EQ(cio_condition_notify(&cond, 1), 1);
    test_log_add(&log, "notified");
    settle(); /* A cannot return before we release */
    CHECK(!w[0].done);
    CHECK_ERR(cio_condition_release(&cond), 0);
    settle();
    CHECK(w[0].done && !w[1].done);
    CHECK_ERR(cio_condition_acquire(&cond), 0);
    CHECK_EQ(cio_condition_notify_all(&cond), 2);
    CHECK_EQ(cio_condition_notify(&cond, 5), 0);
    CHECK_ERR(cio_condition_release(&cond), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(finish(t[i]), 0);
        CHECK_ERR(w[i].result, 0);
        CHECK_EQ(w[i].held_after, 1);
    }
    CHECK_LOG(&log, "notified A:woke B:woke C:woke");
    CHECK_ERR(cio_condition_init(NULL, NULL), -EINVAL);
    CHECK_ERR(cio_condition_wait(NULL), -EINVAL);
    CHECK_ERR(cio_condition_wait_for(&cond, NULL, NULL), -EINVAL);
    return 0;
}

TEST(condition_notify_wakes_n_waiters_in_order_and_needs_the_lock)
{
    CHECK_ERR(cio_run(cond_basic_main, NULL), 0);
}

static int cond_wait_for_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_lock lock = CIO_LOCK_INIT;
    cio_condition cond;
    CHECK_ERR(cio_condition_init(&cond, &lock), 0);
    int counter = 0;
    cond_waiter w = {.name = "W", .cond = &cond, .log = &log,
                     .counter = &counter, .need = 3};
    cio_task *t = spawn(cond_waiter_run, &w);
    for (int i = 1; i <= 5; i++) {
        settle();
        CHECK_ERR(cio_lock_acquire(&lock), 0); /* the same lock */
        counter = i;
        test_log_add(&log, "%d", i);
        CHECK_ERR(cio_condition_notify_all(&cond), w.done ? 0 : 1);
        CHECK_ERR(cio_lock_release(&lock), 0);
    }
    CHECK_ERR(finish(t), 0);
    CHECK_LOG(&log, "1 2 3 W:woke 4 5");
    CHECK_ERR(cio_condition_acquire(&cond), 0);
    CHECK_ERR(cio_condition_wait_for(&cond, enough, &w), 0); /* true: no wait */
    CHECK_ERR(cio_condition_release(&cond), 0);
    CHECK_ERR(cio_condition_wait_for(&cond, enough, &w), -EPERM);
    return 0;
}

TEST(condition_wait_for_rechecks_the_predicate_on_a_given_lock)
{
    CHECK_ERR(cio_run(cond_wait_for_main, NULL), 0);
}

static int cond_cancel_reacquire_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_condition cond = CIO_CONDITION_INIT;
    cond_waiter a = {.name = "A", .cond = &cond, .log = &log};
    cio_task *ta = spawn(cond_waiter_run, &a);
    settle();
    CHECK_ERR(cio_condition_acquire(&cond), 0);
    cio_task_cancel(ta);
    settle();
    CHECK(!a.done); /* cancelled, but waiting for the lock back */
    cio_task_cancel(ta); /* and again: it still waits */
    settle();
    CHECK(!a.done);
    CHECK_ERR(cio_condition_release(&cond), 0);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(a.result, -ECANCELED);
    CHECK_EQ(a.held_after, 1);
    CHECK_EQ(cio_condition_locked(&cond), 0);

    /* Cancelled at entry: returns at once, the lock still held. */
    CHECK_ERR(cio_condition_acquire(&cond), 0);
    cio_task_cancel(cio_current_task());
    CHECK_ERR(cio_condition_wait(&cond), -ECANCELED);
    CHECK_EQ(cio_condition_locked(&cond), 1);
    cio_task_uncancel(cio_current_task());
    CHECK_ERR(cio_condition_release(&cond), 0);
    return 0;
}

TEST(condition_wait_cancelled_takes_the_lock_back_before_returning)
{
    CHECK_ERR(cio_run(cond_cancel_reacquire_main, NULL), 0);
}

static int cond_cancel_notified_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_condition cond = CIO_CONDITION_INIT;
    cond_waiter a = {.name = "A", .cond = &cond, .log = &log};
    cond_waiter b = {.name = "B", .cond = &cond, .log = &log};
    cio_task *ta = spawn(cond_waiter_run, &a), *tb = spawn(cond_waiter_run, &b);
    settle();
    CHECK_ERR(cio_condition_acquire(&cond), 0);
    CHECK_EQ(cio_condition_notify(&cond, 1), 1); /* A */
    cio_task_cancel(ta);                         /* before A runs */
    CHECK_ERR(cio_condition_release(&cond), 0);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(a.result, -ECANCELED);
    CHECK_ERR(b.result, 0); /* the notification was passed on */
    CHECK_LOG(&log, "A:cancelled B:woke");
    CHECK_EQ(cio_condition_locked(&cond), 0);
    return 0;
}

TEST(condition_notification_of_a_cancelled_waiter_goes_to_the_next)
{
    CHECK_ERR(cio_run(cond_cancel_notified_main, NULL), 0);
}

static int cond_cancel_reacquiring_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_condition cond = CIO_CONDITION_INIT;
    cond_waiter a = {.name = "A", .cond = &cond, .log = &log};
    cond_waiter b = {.name = "B", .cond = &cond, .log = &log};
    cio_task *ta = spawn(cond_waiter_run, &a), *tb = spawn(cond_waiter_run, &b);
    settle();
    CHECK_ERR(cio_condition_acquire(&cond), 0);
    CHECK_EQ(cio_condition_notify(&cond, 1), 1);
    settle(); /* A was notified and waits for the lock back */
    CHECK(!a.done);
    cio_task_cancel(ta);
    settle();
    CHECK(!a.done);
    CHECK_ERR(cio_condition_release(&cond), 0);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(a.result, -ECANCELED); /* as asyncio, with the lock held */
    CHECK_EQ(a.held_after, 1);
    CHECK_ERR(b.result, 0); /* A's notification went on to B */
    CHECK_LOG(&log, "A:cancelled B:woke");
    return 0;
}

TEST(condition_wait_cancelled_while_taking_the_lock_back_passes_the_notify)
{
    CHECK_ERR(cio_run(cond_cancel_reacquiring_main, NULL), 0);
}

static int cond_timeout_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_condition cond = CIO_CONDITION_INIT;
    cond_waiter a = {.name = "A", .cond = &cond, .log = &log, .timeout = 0.01};
    cond_waiter b = {.name = "B", .cond = &cond, .log = &log};
    cio_task *ta = spawn(cond_waiter_run, &a), *tb = spawn(cond_waiter_run, &b);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(a.result, -ETIMEDOUT);
    CHECK_EQ(a.held_after, 1);
    CHECK(!b.done);
    CHECK_ERR(cio_condition_acquire(&cond), 0);
    CHECK_EQ(cio_condition_notify(&cond, 1), 1); /* only B waits now */
    CHECK_ERR(cio_condition_release(&cond), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_LOG(&log, "A:timed out B:woke");
    return 0;
}

TEST(condition_wait_times_out_in_a_scope_with_the_lock_held)
{
    CHECK_ERR(cio_run(cond_timeout_main, NULL), 0);
}

/* Stress: consumers wait on a condition for items that producers add one
 * at a time with notify(1), while a chaos task cancels consumers at random
 * (often right after they were notified). A notification lost with a
 * cancelled consumer would leave an item with every consumer asleep. */
typedef struct cond_storm {
    cio_condition cond;
    int avail, produced, consumed;
    bool done;
    unsigned seed;
} cond_storm;

static int has_work(void *arg)
{
    cond_storm *s = arg;
    return s->avail > 0 || s->done;
}

static int cond_storm_consumer(void *arg)
{
    cond_storm *s = arg;
    cio_task *self = cio_current_task();
    for (;;) {
        int r = cio_condition_acquire(&s->cond);
        if (r) {
            CHECK_ERR(r, -ECANCELED);
            cio_task_uncancel(self);
            continue;
        }
        r = cio_condition_wait_for(&s->cond, has_work, s);
        CHECK_EQ(cio_condition_locked(&s->cond), 1); /* whatever happened */
        if (r) {
            CHECK_ERR(r, -ECANCELED);
            while (cio_task_uncancel(self) > 0)
                ;
        } else if (s->avail > 0) {
            s->avail--;
            s->consumed++;
        } else {
            CHECK_ERR(cio_condition_release(&s->cond), 0);
            return 0; /* done, nothing left */
        }
        CHECK_ERR(cio_condition_release(&s->cond), 0);
    }
}

static int cond_storm_main(void *arg)
{
    cond_storm *s = arg;
    enum { CONSUMERS = 6, ITEMS = 3000 };
    cio_task *c[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        c[i] = spawn(cond_storm_consumer, s);
    settle();
    int items = (int)test_scaled(ITEMS);
    for (int i = 0; i < items; i++) {
        CHECK_ERR(cio_condition_acquire(&s->cond), 0);
        s->avail++;
        s->produced++;
        CHECK(cio_condition_notify(&s->cond, 1) >= 0);
        CHECK_ERR(cio_condition_release(&s->cond), 0);
        cio_task_cancel(c[rnd(&s->seed) % CONSUMERS]);
        for (unsigned k = 0; k < rnd(&s->seed) % 3; k++)
            CHECK_ERR(cio_sleep(0), 0);
    }
    /* Every item is taken without another notify. */
    for (int i = 0; i < 10000 && s->consumed < s->produced; i++)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_EQ(s->consumed, s->produced);
    CHECK_ERR(cio_condition_acquire(&s->cond), 0);
    s->done = true;
    cio_condition_notify_all(&s->cond);
    CHECK_ERR(cio_condition_release(&s->cond), 0);
    for (int i = 0; i < CONSUMERS; i++)
        CHECK_ERR(finish(c[i]), 0);
    return 0;
}

TEST(condition_loses_no_notification_under_random_cancellation)
{
    cond_storm s = {.cond = CIO_CONDITION_INIT, .seed = 11};
    CHECK_ERR(cio_run(cond_storm_main, &s), 0);
    CHECK_EQ(s.consumed, s.produced);
    CHECK_EQ(cio_condition_locked(&s.cond), 0);
}

/* ------------------------------------------------------------- semaphore */

static int sem_basic_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_semaphore sem;
    CHECK_ERR(cio_semaphore_init(&sem, -1), -EINVAL);
    CHECK_ERR(cio_semaphore_init(NULL, 1), -EINVAL);
    CHECK_ERR(cio_semaphore_init(&sem, 2), 0);
    CHECK_EQ(cio_semaphore_locked(&sem), 0);
    CHECK_ERR(cio_semaphore_acquire(&sem), 0);
    CHECK_ERR(cio_semaphore_acquire(&sem), 0);
    CHECK_EQ(cio_semaphore_locked(&sem), 1);
    user u[3] = {{.name = "A"}, {.name = "B"}, {.name = "C"}};
    cio_task *t[3];
    for (int i = 0; i < 3; i++) {
        u[i].sem = &sem;
        u[i].log = &log;
        t[i] = spawn(user_run, &u[i]);
    }
    settle();
    CHECK(!u[0].done);
    CHECK_ERR(cio_semaphore_release(&sem), 0); /* to A */
    CHECK_EQ(cio_semaphore_locked(&sem), 1);
    CHECK_ERR(cio_semaphore_release(&sem), 0); /* to B */
    for (int i = 0; i < 3; i++)
        CHECK_ERR(finish(t[i]), 0);
    CHECK_LOG(&log, "A:got B:got C:got");
    CHECK_EQ(cio_semaphore_locked(&sem), 0);
    CHECK_ERR(cio_semaphore_acquire(&sem), 0);
    CHECK_ERR(cio_semaphore_acquire(&sem), 0);
    CHECK_EQ(cio_semaphore_locked(&sem), 1);
    /* A plain semaphore may be released above its initial value. */
    for (int i = 0; i < 3; i++)
        CHECK_ERR(cio_semaphore_release(&sem), 0);
    CHECK_ERR(cio_semaphore_acquire(NULL), -EINVAL);
    CHECK_ERR(cio_semaphore_release(NULL), -EINVAL);
    CHECK_ERR(cio_semaphore_init(&sem, 2147483647), 0);
    CHECK_ERR(cio_semaphore_release(&sem), -EOVERFLOW);
    return 0;
}

TEST(semaphore_counts_units_and_serves_waiters_in_fifo_order)
{
    CHECK_ERR(cio_run(sem_basic_main, NULL), 0);
}

static int bounded_main(void *arg)
{
    (void)arg;
    cio_semaphore sem;
    CHECK_ERR(cio_bounded_semaphore_init(&sem, -1), -EINVAL);
    CHECK_ERR(cio_bounded_semaphore_init(&sem, 2), 0);
    CHECK_ERR(cio_semaphore_release(&sem), -EINVAL); /* ValueError */
    CHECK_ERR(cio_semaphore_acquire(&sem), 0);
    CHECK_ERR(cio_semaphore_release(&sem), 0);
    CHECK_ERR(cio_semaphore_release(&sem), -EINVAL);
    CHECK_ERR(cio_semaphore_acquire(&sem), 0);
    CHECK_ERR(cio_semaphore_acquire(&sem), 0);
    CHECK_ERR(cio_semaphore_release(&sem), 0);
    CHECK_ERR(cio_semaphore_release(&sem), 0);
    CHECK_ERR(cio_semaphore_release(&sem), -EINVAL);
    CHECK_EQ(cio_semaphore_locked(&sem), 0);
    return 0;
}

TEST(bounded_semaphore_released_too_often_is_einval)
{
    CHECK_ERR(cio_run(bounded_main, NULL), 0);
}

static int sem_cancel_handed_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_semaphore sem;
    CHECK_ERR(cio_bounded_semaphore_init(&sem, 1), 0);
    CHECK_ERR(cio_semaphore_acquire(&sem), 0);
    user a = {.name = "A", .sem = &sem, .log = &log};
    user b = {.name = "B", .sem = &sem, .log = &log};
    user c = {.name = "C", .sem = &sem, .log = &log};
    cio_task *ta = spawn(user_run, &a), *tb = spawn(user_run, &b);
    settle();
    CHECK_ERR(cio_semaphore_release(&sem), 0); /* the unit is A's now */
    cio_task_cancel(ta);
    /* A newcomer does not take the unit meant for the waiters. */
    CHECK_EQ(cio_semaphore_locked(&sem), 1);
    cio_task *tc = spawn(user_run, &c);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(finish(tc), 0);
    CHECK_LOG(&log, "A:cancelled B:got C:got");
    /* The unit is back, exactly one: bounded, a second release fails. */
    CHECK_EQ(cio_semaphore_locked(&sem), 0);
    CHECK_ERR(cio_semaphore_release(&sem), -EINVAL);
    return 0;
}

TEST(semaphore_unit_handed_to_a_cancelled_waiter_goes_to_the_next)
{
    CHECK_ERR(cio_run(sem_cancel_handed_main, NULL), 0);
}

static int sem_cancel_waiting_main(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    test_log log = {0};
    cio_semaphore sem;
    CHECK_ERR(cio_semaphore_init(&sem, 0), 0);
    user a = {.name = "A", .sem = &sem, .log = &log};
    user b = {.name = "B", .sem = &sem, .log = &log};
    /* On the virtual clock the deadline passes only once the loop is idle,
     * so B is cancelled first on any machine: the order is checked. */
    a.deadline = cio_loop_time(loop_now()) + 0.5;
    cio_task *ta = spawn(user_run, &a), *tb = spawn(user_run, &b);
    settle();
    cio_task_cancel(tb);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(finish(ta), 0);
    CHECK_LOG(&log, "B:cancelled A:timed out");
    CHECK_ERR(cio_semaphore_release(&sem), 0);
    CHECK_EQ(cio_semaphore_locked(&sem), 0); /* nobody took the unit */
    cio_task_cancel(cio_current_task());
    CHECK_ERR(cio_semaphore_acquire(&sem), -ECANCELED);
    cio_task_uncancel(cio_current_task());
    CHECK_EQ(cio_semaphore_locked(&sem), 0);
    return 0;
}

TEST(semaphore_acquire_is_cancellable_and_honours_timeout_scopes)
{
    CHECK_ERR(cio_run(sem_cancel_waiting_main, NULL), 0);
}

TEST(semaphore_limits_concurrency_under_random_cancellation)
{
    cio_semaphore sem;
    CHECK_ERR(cio_bounded_semaphore_init(&sem, 3), 0);
    chaos c = {.sem = &sem, .limit = 3, .rounds = (int)test_scaled(20000),
               .seed = 7};
    CHECK_ERR(cio_run(chaos_main, &c), 0);
    /* Every unit came back: three acquires succeed, a fourth would wait. */
    CHECK_EQ(cio_semaphore_locked(&sem), 0);
    CHECK_ERR(cio_semaphore_release(&sem), -EINVAL);
}

/* --------------------------------------------------------------- barrier */

typedef struct party {
    const char *name;
    cio_barrier *b;
    test_log *log;
    int rounds;
    int result;
} party;

static int party_run(void *arg)
{
    party *p = arg;
    for (int i = 0; i < (p->rounds ? p->rounds : 1); i++) {
        p->result = cio_barrier_wait(p->b);
        if (p->result >= 0)
            test_log_add(p->log, "%s:%d", p->name, p->result);
        else
            test_log_add(p->log, "%s:%s", p->name, cio_strerror(p->result));
    }
    return 0;
}

static int barrier_basic_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_barrier b;
    CHECK_ERR(cio_barrier_init(&b, 0), -EINVAL);
    CHECK_ERR(cio_barrier_init(NULL, 1), -EINVAL);
    CHECK_ERR(cio_barrier_init(&b, 3), 0);
    CHECK_EQ(cio_barrier_parties(&b), 3);
    CHECK_EQ(cio_barrier_n_waiting(&b), 0);
    CHECK_EQ(cio_barrier_broken(&b), 0);
    party p[3] = {{"A", &b, &log, 2, 0}, {"B", &b, &log, 2, 0},
                  {"C", &b, &log, 2, 0}};
    cio_task *t[2];
    t[0] = spawn(party_run, &p[0]);
    t[1] = spawn(party_run, &p[1]);
    settle();
    CHECK_EQ(cio_barrier_n_waiting(&b), 2);
    p[2].rounds = 2;
    cio_task *tc = spawn(party_run, &p[2]);
    CHECK_ERR(finish(t[0]), 0);
    CHECK_ERR(finish(t[1]), 0);
    CHECK_ERR(finish(tc), 0);
    /* In each round the last to arrive goes on at once, then the others
     * in arrival order. */
    CHECK_LOG(&log, "C:2 A:0 B:1 A:2 B:0 C:1");
    CHECK_EQ(cio_barrier_n_waiting(&b), 0);
    cio_barrier one;
    CHECK_ERR(cio_barrier_init(&one, 1), 0);
    CHECK_EQ(cio_barrier_wait(&one), 0);
    CHECK_EQ(cio_barrier_wait(&one), 0);
    cio_barrier zero = {{0}};
    CHECK_ERR(cio_barrier_wait(&zero), -EINVAL); /* not initialised */
    CHECK_ERR(cio_barrier_wait(NULL), -EINVAL);
    return 0;
}

TEST(barrier_releases_parties_together_with_arrival_indices)
{
    CHECK_ERR(cio_run(barrier_basic_main, NULL), 0);
}

static int barrier_draining_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_barrier b;
    CHECK_ERR(cio_barrier_init(&b, 2), 0);
    party p[4] = {{"A", &b, &log, 1, 0}, {"B", &b, &log, 1, 0},
                  {"C", &b, &log, 1, 0}, {"D", &b, &log, 1, 0}};
    cio_task *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn(party_run, &p[i]);
    for (int i = 0; i < 4; i++)
        CHECK_ERR(finish(t[i]), 0);
    /* C and D arrive while A is still leaving: they wait for the drain
     * and make the next round. */
    CHECK_LOG(&log, "B:1 A:0 D:1 C:0");
    return 0;
}

TEST(barrier_newcomers_wait_for_the_drain_then_fill_the_next_round)
{
    CHECK_ERR(cio_run(barrier_draining_main, NULL), 0);
}

static int barrier_abort_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_barrier b;
    CHECK_ERR(cio_barrier_init(&b, 3), 0);
    party p[3] = {{"A", &b, &log, 1, 0}, {"B", &b, &log, 1, 0},
                  {"C", &b, &log, 1, 0}};
    cio_task *ta = spawn(party_run, &p[0]), *tb = spawn(party_run, &p[1]);
    settle();
    CHECK_ERR(cio_barrier_abort(&b), 0);
    CHECK_EQ(cio_barrier_broken(&b), 1);
    CHECK_EQ(cio_barrier_n_waiting(&b), 0);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(cio_barrier_wait(&b), CIO_EBROKEN); /* until reset */
    CHECK_ERR(cio_barrier_reset(&b), 0);
    CHECK_EQ(cio_barrier_broken(&b), 0);
    p[0].rounds = p[1].rounds = p[2].rounds = 1;
    cio_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(party_run, &p[i]);
    for (int i = 0; i < 3; i++)
        CHECK_ERR(finish(t[i]), 0);
    CHECK_LOG(&log, "A:broken barrier B:broken barrier C:2 A:0 B:1");
    return 0;
}

TEST(barrier_abort_breaks_it_for_waiters_and_newcomers_until_reset)
{
    CHECK_ERR(cio_run(barrier_abort_main, NULL), 0);
}

static int barrier_reset_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_barrier b;
    CHECK_ERR(cio_barrier_init(&b, 2), 0);
    party p[3] = {{"A", &b, &log, 1, 0}, {"B", &b, &log, 1, 0},
                  {"C", &b, &log, 1, 0}};
    cio_task *ta = spawn(party_run, &p[0]);
    settle();
    CHECK_EQ(cio_barrier_n_waiting(&b), 1);
    cio_task *tb = spawn(party_run, &p[1]); /* runs before A leaves */
    CHECK_ERR(cio_barrier_reset(&b), 0);
    CHECK_EQ(cio_barrier_broken(&b), 0);
    CHECK_EQ(cio_barrier_n_waiting(&b), 0);
    cio_task *tc = spawn(party_run, &p[2]);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(finish(tc), 0);
    /* B arrived while the reset was under way: it waited for A to leave,
     * then made a new round with C. */
    CHECK_LOG(&log, "A:broken barrier B:1 C:0");
    CHECK_ERR(cio_barrier_reset(&b), 0); /* empty: stays filling */
    CHECK_EQ(cio_barrier_n_waiting(&b), 0);
    return 0;
}

TEST(barrier_reset_breaks_current_waiters_and_refills)
{
    CHECK_ERR(cio_run(barrier_reset_main, NULL), 0);
}

static int barrier_cancel_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_barrier b;
    CHECK_ERR(cio_barrier_init(&b, 2), 0);
    party p[3] = {{"A", &b, &log, 1, 0}, {"B", &b, &log, 1, 0},
                  {"C", &b, &log, 1, 0}};
    cio_task *ta = spawn(party_run, &p[0]);
    settle();
    CHECK_EQ(cio_barrier_n_waiting(&b), 1);
    cio_task_cancel(ta);
    CHECK_ERR(finish(ta), 0);
    CHECK_EQ(cio_barrier_n_waiting(&b), 0);
    CHECK_EQ(cio_barrier_broken(&b), 0); /* asyncio: not broken */

    cio_timeout_scope scope;
    CHECK_ERR(cio_timeout(&scope, 0.01), 0);
    CHECK_ERR(cio_barrier_wait(&b), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&scope), -ETIMEDOUT);
    CHECK_EQ(cio_barrier_n_waiting(&b), 0);

    cio_task *tb = spawn(party_run, &p[1]), *tc = spawn(party_run, &p[2]);
    CHECK_ERR(finish(tb), 0);
    CHECK_ERR(finish(tc), 0);
    CHECK_LOG(&log, "A:cancelled C:1 B:0");
    return 0;
}

TEST(barrier_wait_cancelled_or_timed_out_leaves_without_breaking_it)
{
    CHECK_ERR(cio_run(barrier_cancel_main, NULL), 0);
}

/* ------------------------------------------------ a loop closed under us */

typedef struct orphan {
    cio_lock lock;
    cio_event never;
    cio_condition cond;
    cio_semaphore sem;
    cio_barrier bar;
} orphan;

static int orphan_holder(void *arg)
{
    orphan *o = arg;
    CHECK_ERR(cio_lock_acquire(&o->lock), 0);
    return cio_event_wait(&o->never); /* forever, holding the lock */
}

static int orphan_locker(void *arg)
{
    return cio_lock_acquire(&((orphan *)arg)->lock);
}

static int orphan_waiter(void *arg)
{
    orphan *o = arg;
    CHECK_ERR(cio_condition_acquire(&o->cond), 0);
    return cio_condition_wait(&o->cond);
}

static int orphan_sem(void *arg)
{
    return cio_semaphore_acquire(&((orphan *)arg)->sem);
}

static int orphan_party(void *arg)
{
    return cio_barrier_wait(&((orphan *)arg)->bar);
}

/* Hands the lock and a unit to their first waiters, in the iteration
 * before the loop closes: those never run. */
static void hand_over_cb(void *arg)
{
    orphan *o = arg;
    CHECK_ERR(cio_lock_release(&o->lock), 0);
    CHECK_ERR(cio_semaphore_release(&o->sem), 0);
}

/* The primitives outlive a loop closed while tasks wait on them: the dead
 * tasks leave the wait queues (their nodes were on their stacks), what
 * they were handed goes on, and the primitives work in the next loop. */
static int orphan_reuse_main(void *arg)
{
    orphan *o = arg;
    CHECK_EQ(cio_lock_locked(&o->lock), 0);
    CHECK_ERR(cio_lock_acquire(&o->lock), 0);
    CHECK_ERR(cio_lock_release(&o->lock), 0);
    CHECK_ERR(cio_condition_acquire(&o->cond), 0);
    CHECK_EQ(cio_condition_notify_all(&o->cond), 0); /* nobody left */
    CHECK_ERR(cio_condition_release(&o->cond), 0);
    CHECK_EQ(cio_semaphore_locked(&o->sem), 0); /* the unit came back */
    CHECK_ERR(cio_semaphore_acquire(&o->sem), 0);
    CHECK_EQ(cio_barrier_n_waiting(&o->bar), 0);
    cio_task *t = spawn(orphan_party, o);
    CHECK_EQ(cio_barrier_wait(&o->bar), 0);
    CHECK_EQ(finish(t), 1);
    return 0;
}

TEST(primitives_survive_a_loop_closed_with_tasks_waiting_on_them)
{
    orphan o = {.lock = CIO_LOCK_INIT, .never = CIO_EVENT_INIT,
                .cond = CIO_CONDITION_INIT};
    CHECK_ERR(cio_semaphore_init(&o.sem, 0), 0);
    CHECK_ERR(cio_barrier_init(&o.bar, 2), 0);
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    int reports = 0;
    CHECK_ERR(cio_loop_set_exception_handler(loop, count_reports, &reports),
              0);
    cio_task_fn fns[] = {orphan_holder, orphan_locker, orphan_locker,
                         orphan_waiter, orphan_sem,    orphan_sem,
                         orphan_party};
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
        CHECK_ERR(cio_task_new(loop, fns[i], &o, NULL, NULL), 0);
    for (int i = 0; i < 5; i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(cio_barrier_n_waiting(&o.bar), 1);
    CHECK_ERR(cio_call_soon(loop, hand_over_cb, &o, NULL), 0);
    CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    cio_loop_free(loop);
    CHECK_EQ(reports, 7); /* every task was pending */
    CHECK_EQ(cio_lock_locked(&o.lock), 0);
    CHECK_EQ(cio_barrier_n_waiting(&o.bar), 0);
    CHECK_ERR(cio_run(orphan_reuse_main, &o), 0);
}

/* ------------------------------------------------- static semaphores */

static cio_semaphore STATIC_SEM = CIO_SEMAPHORE_INIT(2);
static cio_semaphore STATIC_BOUNDED = CIO_BOUNDED_SEMAPHORE_INIT(1);
static cio_semaphore STATIC_ZERO; /* zeroed: 0 units, Semaphore(0) */

static int static_sem_main(void *arg)
{
    (void)arg;
    CHECK_EQ(cio_semaphore_locked(&STATIC_SEM), 0);
    CHECK_ERR(cio_semaphore_acquire(&STATIC_SEM), 0);
    CHECK_ERR(cio_semaphore_acquire(&STATIC_SEM), 0);
    CHECK_EQ(cio_semaphore_locked(&STATIC_SEM), 1);
    CHECK_ERR(cio_semaphore_release(&STATIC_SEM), 0);
    CHECK_ERR(cio_semaphore_release(&STATIC_SEM), 0);
    CHECK_ERR(cio_semaphore_release(&STATIC_SEM), 0); /* unbounded: fine */
    CHECK_ERR(cio_semaphore_acquire(&STATIC_BOUNDED), 0);
    CHECK_EQ(cio_semaphore_locked(&STATIC_BOUNDED), 1);
    CHECK_ERR(cio_semaphore_release(&STATIC_BOUNDED), 0);
    CHECK_ERR(cio_semaphore_release(&STATIC_BOUNDED), -EINVAL); /* bound */
    CHECK_EQ(cio_semaphore_locked(&STATIC_ZERO), 1);
    /* Each as its _init makes it. */
    cio_semaphore a = CIO_SEMAPHORE_INIT(3), b;
    CHECK_ERR(cio_semaphore_init(&b, 3), 0);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    cio_semaphore c = CIO_BOUNDED_SEMAPHORE_INIT(5), d;
    CHECK_ERR(cio_bounded_semaphore_init(&d, 5), 0);
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    return 0;
}

TEST(semaphore_static_initialisers)
{
    CHECK_ERR(cio_run(static_sem_main, NULL), 0);
}

/* ---------------------------------------------- the rest of the NULLs */

typedef struct cond_outside {
    cio_condition *cond;
    int wait, wait_for;
    bool ran;
} cond_outside;

static int never(void *arg)
{
    (void)arg;
    return 0;
}

static void condition_waits_outside_a_task(void *arg)
{
    cond_outside *o = arg;
    o->wait = cio_condition_wait(o->cond);
    o->wait_for = cio_condition_wait_for(o->cond, never, NULL);
    o->ran = true;
}

/* Every primitive's remaining NULL cases: -EINVAL, 0 for the questions,
 * no-ops for leave; enter into a holder already holding is -EINVAL and
 * takes nothing; a condition's waits need a task. */
static int sync_bad_arguments_main(void *arg)
{
    (void)arg;
    CHECK_EQ(cio_event_is_set(NULL), 0);
    CHECK_ERR(cio_condition_acquire(NULL), -EINVAL);
    CHECK_ERR(cio_condition_release(NULL), -EINVAL);
    CHECK_EQ(cio_condition_locked(NULL), 0);
    CHECK_ERR(cio_condition_wait_for(NULL, never, NULL), -EINVAL);
    CHECK_ERR(cio_condition_notify(NULL, 1), -EINVAL);
    CHECK_EQ(cio_semaphore_locked(NULL), 0);
    CHECK_ERR(cio_barrier_reset(NULL), -EINVAL);
    CHECK_ERR(cio_barrier_abort(NULL), -EINVAL);
    CHECK_ERR(cio_barrier_parties(NULL), -EINVAL);
    CHECK_ERR(cio_barrier_n_waiting(NULL), -EINVAL);
    CHECK_EQ(cio_barrier_broken(NULL), 0);

    cio_condition cond = CIO_CONDITION_INIT, *held = NULL;
    CHECK_ERR(cio_condition_enter(NULL, &cond), -EINVAL);
    cio_condition_leave(NULL);
    cio_condition_leave(&held); /* holds nothing: nothing to do */
    CHECK_ERR(cio_condition_enter(&held, &cond), 0);
    CHECK(held == &cond);
    CHECK_ERR(cio_condition_enter(&held, &cond), -EINVAL); /* holds one */
    CHECK_EQ(cio_condition_locked(&cond), 1);
    cond_outside o = {.cond = &cond};
    CHECK_ERR(cio_call_soon(loop_now(), condition_waits_outside_a_task, &o,
                            NULL),
              0);
    while (!o.ran)
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(o.wait, CIO_ENOTASK);
    CHECK_ERR(o.wait_for, CIO_ENOTASK);
    cio_condition_leave(&held);
    CHECK(held == NULL);
    CHECK_EQ(cio_condition_locked(&cond), 0);

    cio_semaphore sem = CIO_SEMAPHORE_INIT(1), *sheld = NULL;
    CHECK_ERR(cio_semaphore_enter(NULL, &sem), -EINVAL);
    cio_semaphore_leave(NULL);
    cio_semaphore_leave(&sheld);
    CHECK_ERR(cio_semaphore_enter(&sheld, &sem), 0);
    CHECK_ERR(cio_semaphore_enter(&sheld, &sem), -EINVAL);
    CHECK_EQ(cio_semaphore_locked(&sem), 1); /* taken once, not twice */
    cio_semaphore_leave(&sheld);
    CHECK_EQ(cio_semaphore_locked(&sem), 0);
    return 0;
}

TEST(sync_bad_arguments_and_condition_waits_outside_a_task)
{
    run_strict(sync_bad_arguments_main, NULL);
}
