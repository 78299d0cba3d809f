/* Queues: asyncio's documented behaviour (FIFO / LIFO / priority order,
 * nowait calls, task_done and join, 3.13's shutdown), and the cancellation
 * cases of issue 4: a getter cancelled as it is handed an item does not
 * lose it, a putter cancelled while waiting inserts nothing. Timeout
 * tests run on the virtual clock (cio_loop_set_virtual_clock): the same
 * order, no real waiting. */
#include "util.h"

/* ------------------------------------------------------------- helpers */

/* A task that gets (or puts) one int, and says what happened. */
typedef struct client {
    const char *name;
    cio_queue *q;
    test_log *log;
    int value;      /* put: what to put; get: what it got */
    double timeout; /* > 0: inside a timeout scope */
    int result;
    bool done;
} client;

static int getter_run(void *arg)
{
    client *c = arg;
    cio_timeout_scope scope;
    if (c->timeout > 0)
        CHECK_ERR(cio_timeout(&scope, c->timeout), 0);
    c->result = cio_queue_get(c->q, &c->value);
    if (c->timeout > 0)
        cio_timeout_end(&scope);
    if (c->result == 0)
        test_log_add(c->log, "%s:%d", c->name, c->value);
    else
        test_log_add(c->log, "%s:%s", c->name, cio_strerror(c->result));
    c->done = true;
    return c->result == -ECANCELED ? c->result : 0;
}

static int putter_run(void *arg)
{
    client *c = arg;
    c->result = cio_queue_put(c->q, &c->value);
    test_log_add(c->log, "%s:%s", c->name,
                 c->result == 0 ? "put" : cio_strerror(c->result));
    c->done = true;
    return 0;
}

static int joiner_run(void *arg)
{
    client *c = arg;
    c->result = cio_queue_join(c->q);
    test_log_add(c->log, "%s:%s", c->name,
                 c->result == 0 ? "joined" : cio_strerror(c->result));
    c->done = true;
    return 0;
}

static int get_int(cio_queue *q)
{
    int v = -1;
    CHECK_ERR(cio_queue_get_nowait(q, &v), 0);
    return v;
}

static void put_int(cio_queue *q, int v)
{
    CHECK_ERR(cio_queue_put_nowait(q, &v), 0);
}

/* ------------------------------------------------------- the three kinds */

TEST(queue_fifo_nowait_calls_and_predicates)
{
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, 0, 3), -EINVAL);
    CHECK(q == NULL);
    CHECK_ERR(cio_queue_new(NULL, 4, 3), -EINVAL);
    CHECK_ERR(cio_priority_queue_new(&q, 4, 3, NULL, NULL), -EINVAL);
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 3), 0);
    CHECK_EQ(cio_queue_maxsize(q), 3);
    CHECK_EQ(cio_queue_qsize(q), 0);
    CHECK_EQ(cio_queue_empty(q), 1);
    CHECK_EQ(cio_queue_full(q), 0);
    int v = 0;
    CHECK_ERR(cio_queue_get_nowait(q, &v), -EAGAIN); /* QueueEmpty */
    for (int i = 1; i <= 3; i++)
        put_int(q, i);
    CHECK_EQ(cio_queue_qsize(q), 3);
    CHECK_EQ(cio_queue_full(q), 1);
    CHECK_EQ(cio_queue_empty(q), 0);
    v = 4;
    CHECK_ERR(cio_queue_put_nowait(q, &v), -EAGAIN); /* QueueFull */
    /* Round and round the ring. */
    for (int i = 4; i <= 20; i++) {
        CHECK_EQ(get_int(q), i - 3);
        put_int(q, i);
    }
    CHECK_ERR(cio_queue_get_nowait(q, NULL), 0); /* 18, dropped */
    CHECK_EQ(get_int(q), 19);
    CHECK_EQ(get_int(q), 20);
    CHECK_EQ(cio_queue_empty(q), 1);
    CHECK_ERR(cio_queue_put_nowait(q, NULL), -EINVAL);
    CHECK_ERR(cio_queue_put_nowait(NULL, &v), -EINVAL);
    CHECK_ERR(cio_queue_get_nowait(NULL, &v), -EINVAL);
    /* Waiting calls need a task. */
    CHECK_ERR(cio_queue_put(q, &v), CIO_ENOTASK);
    CHECK_ERR(cio_queue_get(q, &v), CIO_ENOTASK);
    CHECK_ERR(cio_queue_join(q), CIO_ENOTASK);
    CHECK_EQ(cio_queue_qsize(NULL), 0);
    CHECK_EQ(cio_queue_empty(NULL), 0);
    cio_queue_free(q);
    cio_queue_free(NULL);
}

TEST(queue_lifo_returns_the_newest_first)
{
    cio_queue *q;
    CHECK_ERR(cio_lifo_queue_new(&q, sizeof(int), 0), 0);
    CHECK_EQ(cio_queue_maxsize(q), 0);
    for (int i = 0; i < 100; i++) /* past the first allocation */
        put_int(q, i);
    CHECK_EQ(cio_queue_full(q), 0); /* unbounded: never full */
    for (int i = 99; i >= 50; i--)
        CHECK_EQ(get_int(q), i);
    put_int(q, 1000);
    CHECK_EQ(get_int(q), 1000);
    CHECK_EQ(get_int(q), 49);
    CHECK_EQ(cio_queue_qsize(q), 49);
    cio_queue_free(q);
}

typedef struct prio_item {
    int prio;
    int id;
} prio_item;

static int cmp_tag; /* the comparison's argument, checked */

static int by_prio(const void *a, const void *b, void *arg)
{
    CHECK(arg == &cmp_tag);
    const prio_item *x = a, *y = b;
    return (x->prio > y->prio) - (x->prio < y->prio);
}

TEST(priority_queue_returns_the_smallest_first_ties_in_insertion_order)
{
    cio_queue *q;
    CHECK_ERR(cio_priority_queue_new(&q, sizeof(prio_item), 0, by_prio,
                                     &cmp_tag),
              0);
    unsigned seed = 1;
    enum { N = 2000 };
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        prio_item j = {(int)((seed >> 16) % 50), i};
        CHECK_ERR(cio_queue_put_nowait(q, &j), 0);
    }
    prio_item prev = {-1, -1};
    for (int i = 0; i < N; i++) {
        prio_item j;
        CHECK_ERR(cio_queue_get_nowait(q, &j), 0);
        CHECK(j.prio > prev.prio || (j.prio == prev.prio && j.id > prev.id));
        prev = j;
    }
    CHECK_EQ(cio_queue_empty(q), 1);
    cio_queue_free(q);
    /* A bounded one. */
    CHECK_ERR(cio_priority_queue_new(&q, sizeof(prio_item), 3, by_prio,
                                     &cmp_tag),
              0);
    prio_item in[3] = {{5, 0}, {1, 1}, {5, 2}}, out;
    for (int i = 0; i < 3; i++)
        CHECK_ERR(cio_queue_put_nowait(q, &in[i]), 0);
    CHECK_EQ(cio_queue_full(q), 1);
    CHECK_ERR(cio_queue_put_nowait(q, &in[0]), -EAGAIN);
    int want[3] = {1, 0, 2};
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(cio_queue_get_nowait(q, &out), 0);
        CHECK_EQ(out.id, want[i]);
    }
    cio_queue_free(q);
}

TEST(queue_unbounded_grows_with_a_wrapped_ring_in_order)
{
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 0), 0);
    int next_in = 0, next_out = 0;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 5 + round * 13; i++)
            put_int(q, next_in++);
        for (int i = 0; i < 3 + round * 7; i++)
            CHECK_EQ(get_int(q), next_out++);
    }
    while (!cio_queue_empty(q))
        CHECK_EQ(get_int(q), next_out++);
    CHECK_EQ(next_in, next_out);
    cio_queue_free(q);
}

/* --------------------------------------------------------------- waiting */

static int getters_fifo_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 0), 0);
    client c[3] = {{.name = "A"}, {.name = "B"}, {.name = "C"}};
    cio_task *t[3];
    for (int i = 0; i < 3; i++) {
        c[i].q = q;
        c[i].log = &log;
        t[i] = spawn(getter_run, &c[i]);
    }
    settle();
    put_int(q, 1);
    /* Promised to A, which has not run: nobody else can take it. */
    CHECK_EQ(cio_queue_qsize(q), 0);
    CHECK_EQ(cio_queue_empty(q), 1);
    int v;
    CHECK_ERR(cio_queue_get_nowait(q, &v), -EAGAIN);
    put_int(q, 2);
    put_int(q, 3);
    put_int(q, 4); /* nobody waits for this one */
    CHECK_EQ(cio_queue_qsize(q), 1);
    for (int i = 0; i < 3; i++)
        CHECK_ERR(finish(t[i]), 0);
    CHECK_LOG(&log, "A:1 B:2 C:3");
    CHECK_EQ(get_int(q), 4);
    cio_queue_free(q);
    return 0;
}

TEST(queue_getters_wait_and_are_served_in_fifo_order)
{
    CHECK_ERR(cio_run(getters_fifo_main, NULL), 0);
}

static int putters_fifo_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 1), 0);
    CHECK_ERR(cio_queue_put(q, &(int){10}), 0); /* room: no wait */
    client p[2] = {{.name = "P", .value = 11}, {.name = "R", .value = 12}};
    cio_task *t[2];
    for (int i = 0; i < 2; i++) {
        p[i].q = q;
        p[i].log = &log;
        t[i] = spawn(putter_run, &p[i]);
    }
    settle();
    CHECK(!p[0].done);
    CHECK_EQ(get_int(q), 10);
    /* The slot is P's now: full for everyone else. */
    CHECK_EQ(cio_queue_full(q), 1);
    CHECK_EQ(cio_queue_qsize(q), 0);
    CHECK_ERR(cio_queue_put_nowait(q, &(int){99}), -EAGAIN);
    int v;
    CHECK_ERR(cio_queue_get(q, &v), 0); /* waits for P to run */
    CHECK_EQ(v, 11);
    CHECK_ERR(cio_queue_get(q, &v), 0);
    CHECK_EQ(v, 12);
    for (int i = 0; i < 2; i++)
        CHECK_ERR(finish(t[i]), 0);
    CHECK_LOG(&log, "P:put R:put");
    CHECK_EQ(cio_queue_empty(q), 1);
    cio_queue_free(q);
    return 0;
}

TEST(queue_putters_wait_while_full_and_are_served_in_fifo_order)
{
    CHECK_ERR(cio_run(putters_fifo_main, NULL), 0);
}

/* ---------------------------------------------------------- cancellation */

static int getter_cancelled_at_handoff_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 0), 0);
    client a = {.name = "A", .q = q, .log = &log};
    client b = {.name = "B", .q = q, .log = &log};
    cio_task *ta = spawn(getter_run, &a), *tb = spawn(getter_run, &b);
    settle();
    put_int(q, 7);        /* handed to A... */
    cio_task_cancel(ta);  /* ...which is cancelled before it runs */
    CHECK_ERR(finish(ta), -ECANCELED);
    CHECK_ERR(finish(tb), 0);
    CHECK_LOG(&log, "A:cancelled B:7");
    CHECK_EQ(cio_queue_empty(q), 1);
    cio_queue_free(q);
    return 0;
}

TEST(queue_getter_cancelled_as_an_item_is_handed_over_passes_it_on)
{
    CHECK_ERR(cio_run(getter_cancelled_at_handoff_main, NULL), 0);
}

static int getter_cancelled_alone_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 2), 0);
    client a = {.name = "A", .q = q, .log = &log};
    cio_task *ta = spawn(getter_run, &a);
    settle();
    put_int(q, 7);
    put_int(q, 8);
    cio_task_cancel(ta);
    CHECK_ERR(finish(ta), -ECANCELED);
    CHECK_EQ(cio_queue_qsize(q), 2); /* 7 is back within reach */
    CHECK_EQ(get_int(q), 7);
    CHECK_EQ(get_int(q), 8);
    cio_queue_free(q);
    return 0;
}

TEST(queue_item_of_a_cancelled_last_getter_stays_in_the_queue)
{
    CHECK_ERR(cio_run(getter_cancelled_alone_main, NULL), 0);
}

static int putter_cancelled_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 1), 0);
    put_int(q, 1);
    client p = {.name = "P", .q = q, .log = &log, .value = 2};
    cio_task *tp = spawn(putter_run, &p);
    settle();
    cio_task_cancel(tp); /* while it waits for room */
    CHECK_ERR(finish(tp), 0);
    CHECK_ERR(p.result, -ECANCELED);
    CHECK_EQ(get_int(q), 1);
    CHECK_EQ(cio_queue_empty(q), 1); /* 2 never went in */
    CHECK_ERR(cio_queue_task_done(q), 0);
    CHECK_ERR(cio_queue_task_done(q), -EINVAL); /* one item was ever put */
    cio_queue_free(q);
    return 0;
}

TEST(queue_putter_cancelled_while_waiting_inserts_nothing)
{
    CHECK_ERR(cio_run(putter_cancelled_main, NULL), 0);
}

static int putter_cancelled_handed_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 1), 0);
    put_int(q, 1);
    client p = {.name = "P", .q = q, .log = &log, .value = 2};
    client r = {.name = "R", .q = q, .log = &log, .value = 3};
    cio_task *tp = spawn(putter_run, &p), *tr = spawn(putter_run, &r);
    settle();
    CHECK_EQ(get_int(q), 1); /* the slot is promised to P... */
    cio_task_cancel(tp);     /* ...cancelled before it runs */
    CHECK_ERR(finish(tp), 0);
    CHECK_ERR(finish(tr), 0);
    CHECK_LOG(&log, "P:cancelled R:put");
    CHECK_EQ(get_int(q), 3);
    CHECK_EQ(cio_queue_empty(q), 1);
    cio_queue_free(q);
    return 0;
}

TEST(queue_slot_promised_to_a_cancelled_putter_goes_to_the_next)
{
    CHECK_ERR(cio_run(putter_cancelled_handed_main, NULL), 0);
}

static void put_cb(void *arg)
{
    int v = 5;
    CHECK_ERR(cio_queue_put_nowait(arg, &v), 0);
}

static int get_timeout_main(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 0), 0);
    client a = {.name = "A", .q = q, .log = &log, .timeout = 0.01};
    cio_task *ta = spawn(getter_run, &a);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(a.result, -ETIMEDOUT);

    /* The item arrives in the iteration the deadline passes, first. */
    cio_timeout_scope scope;
    double when = cio_loop_time(loop_now()) + 0.02;
    CHECK_ERR(cio_call_at(loop_now(), when, put_cb, q, NULL), 0);
    CHECK_ERR(cio_timeout_at(&scope, when), 0);
    int v = 0;
    CHECK_ERR(cio_queue_get(q, &v), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&scope), -ETIMEDOUT);
    CHECK_EQ(get_int(q), 5); /* not lost */

    /* wait_for around a task that gets. */
    client b = {.name = "B", .q = q, .log = &log};
    cio_task *tb = spawn(getter_run, &b);
    CHECK_ERR(cio_wait_for(tb, 0.01, NULL), -ETIMEDOUT);
    cio_future_unref(tb);
    put_int(q, 6);
    CHECK_EQ(get_int(q), 6);
    CHECK_LOG(&log, "A:timed out B:cancelled");
    cio_queue_free(q);
    return 0;
}

TEST(queue_get_times_out_in_scopes_and_wait_for_without_losing_items)
{
    CHECK_ERR(cio_run(get_timeout_main, NULL), 0);
}

static int put_timeout_main(void *arg)
{
    (void)arg;
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 1), 0);
    put_int(q, 1);
    cio_timeout_scope scope;
    CHECK_ERR(cio_timeout(&scope, 0.01), 0);
    CHECK_ERR(cio_queue_put(q, &(int){2}), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&scope), -ETIMEDOUT);
    CHECK_EQ(cio_queue_qsize(q), 1);
    CHECK_EQ(get_int(q), 1);
    cio_task_cancel(cio_current_task());
    CHECK_ERR(cio_queue_put(q, &(int){3}), -ECANCELED); /* even with room */
    CHECK_ERR(cio_queue_get(q, NULL), -ECANCELED);
    CHECK_ERR(cio_queue_join(q), -ECANCELED);
    cio_task_uncancel(cio_current_task());
    CHECK_EQ(cio_queue_empty(q), 1);
    cio_queue_free(q);
    return 0;
}

TEST(queue_put_times_out_and_cancelled_tasks_fail_at_once)
{
    CHECK_ERR(cio_run(put_timeout_main, NULL), 0);
}

/* ------------------------------------------------------ task_done, join */

static int join_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 0), 0);
    CHECK_ERR(cio_queue_join(q), 0); /* nothing put: at once */
    CHECK_ERR(cio_queue_task_done(q), -EINVAL);
    for (int i = 0; i < 3; i++)
        put_int(q, i);
    client j = {.name = "J", .q = q, .log = &log};
    client k = {.name = "K", .q = q, .log = &log};
    cio_task *tj = spawn(joiner_run, &j), *tk = spawn(joiner_run, &k);
    settle();
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(get_int(q), i);
        settle();
        CHECK(!j.done); /* got, not yet done */
        test_log_add(&log, "done%d", i);
        CHECK_ERR(cio_queue_task_done(q), 0);
    }
    put_int(q, 9); /* after the last task_done: they return anyway */
    CHECK_ERR(finish(tj), 0);
    CHECK_ERR(finish(tk), 0);
    CHECK_LOG(&log, "done0 done1 done2 J:joined K:joined");

    client c = {.name = "C", .q = q, .log = &log};
    cio_task *tc = spawn(joiner_run, &c);
    settle();
    cio_task_cancel(tc);
    CHECK_ERR(finish(tc), 0);
    CHECK_ERR(c.result, -ECANCELED);
    cio_queue_free(q);
    return 0;
}

TEST(queue_join_waits_until_every_item_is_task_done)
{
    CHECK_ERR(cio_run(join_main, NULL), 0);
}

/* -------------------------------------------------------------- shutdown */

static int shutdown_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q, *empty;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 2), 0);
    CHECK_ERR(cio_queue_new(&empty, sizeof(int), 0), 0);
    put_int(q, 1);
    put_int(q, 2);
    client p = {.name = "P", .q = q, .log = &log, .value = 3};
    client g = {.name = "G", .q = empty, .log = &log};
    client j = {.name = "J", .q = q, .log = &log};
    cio_task *tp = spawn(putter_run, &p), *tg = spawn(getter_run, &g);
    cio_task *tj = spawn(joiner_run, &j);
    settle();
    CHECK_ERR(cio_queue_shutdown(q, 0), 0);
    CHECK_ERR(cio_queue_shutdown(empty, 0), 0);
    CHECK_ERR(finish(tp), 0);
    CHECK_ERR(finish(tg), 0);
    CHECK_LOG(&log, "P:shut down G:shut down");
    CHECK_ERR(cio_queue_put(q, &(int){4}), -ESHUTDOWN);
    CHECK_ERR(cio_queue_put_nowait(q, &(int){4}), -ESHUTDOWN);
    /* What is in it can still be got, then get fails. */
    int v;
    CHECK_ERR(cio_queue_get(q, &v), 0);
    CHECK_EQ(v, 1);
    CHECK_EQ(get_int(q), 2);
    CHECK_ERR(cio_queue_get(q, &v), -ESHUTDOWN);
    CHECK_ERR(cio_queue_get_nowait(q, &v), -ESHUTDOWN);
    CHECK(!j.done); /* join still waits for task_done */
    CHECK_ERR(cio_queue_task_done(q), 0);
    CHECK_ERR(cio_queue_task_done(q), 0);
    CHECK_ERR(finish(tj), 0);
    CHECK_ERR(j.result, 0);
    cio_queue_free(q);
    cio_queue_free(empty);
    return 0;
}

TEST(queue_shutdown_stops_puts_and_gets_once_empty)
{
    CHECK_ERR(cio_run(shutdown_main, NULL), 0);
}

/* Getters waiting on a shut-down queue whose last items are promised to
 * woken getters: they wait for those to be taken, then are told. */
static int shutdown_promised_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 0), 0);
    client c[3] = {{.name = "A"}, {.name = "B"}, {.name = "C"}};
    cio_task *t[3];
    for (int i = 0; i < 3; i++) {
        c[i].q = q;
        c[i].log = &log;
        t[i] = spawn(getter_run, &c[i]);
    }
    settle();
    put_int(q, 1); /* promised to A */
    CHECK_ERR(cio_queue_shutdown(q, 0), 0);
    cio_task_cancel(t[0]); /* passes 1 to B */
    for (int i = 0; i < 3; i++)
        CHECK_ERR(finish(t[i]), i == 0 ? -ECANCELED : 0);
    CHECK_LOG(&log, "A:cancelled B:1 C:shut down");
    cio_queue_free(q);
    return 0;
}

TEST(queue_shutdown_still_delivers_promised_items)
{
    CHECK_ERR(cio_run(shutdown_promised_main, NULL), 0);
}

static int shutdown_immediate_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 0), 0);
    put_int(q, 0);
    CHECK_EQ(get_int(q), 0); /* being worked on: no task_done yet */
    client a = {.name = "A", .q = q, .log = &log};
    client b = {.name = "B", .q = q, .log = &log};
    client j = {.name = "J", .q = q, .log = &log};
    cio_task *ta = spawn(getter_run, &a), *tb = spawn(getter_run, &b);
    cio_task *tj = spawn(joiner_run, &j);
    settle();
    put_int(q, 1); /* promised to A, which has not run yet */
    put_int(q, 2); /* promised to B */
    put_int(q, 3);
    put_int(q, 4);
    /* asyncio would give 1 too: promises are counts, 1 is the oldest
     * item, and A and B will take the next ones. */
    CHECK_EQ(get_int(q), 1);
    CHECK_ERR(cio_queue_shutdown(q, 1), 0);
    CHECK_EQ(cio_queue_qsize(q), 0);
    CHECK_ERR(finish(ta), 0);
    CHECK_ERR(finish(tb), 0);
    /* 2, 3 and 4 were dropped (promised or not); 0 and 1 still count
     * until their task_done. */
    CHECK(!j.done);
    CHECK_ERR(cio_queue_task_done(q), 0);
    settle();
    CHECK(!j.done);
    CHECK_ERR(cio_queue_task_done(q), 0);
    CHECK_ERR(finish(tj), 0);
    CHECK_LOG(&log, "A:shut down B:shut down J:joined");
    CHECK_ERR(cio_queue_get_nowait(q, NULL), -ESHUTDOWN);
    CHECK_ERR(cio_queue_task_done(q), -EINVAL);
    CHECK_ERR(cio_queue_shutdown(q, 1), 0); /* again: nothing changes */
    cio_queue_free(q);
    return 0;
}

TEST(queue_shutdown_immediate_drops_items_and_releases_join)
{
    CHECK_ERR(cio_run(shutdown_immediate_main, NULL), 0);
}

static int free_waiters_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 1), 0);
    put_int(q, 1);
    client p = {.name = "P", .q = q, .log = &log, .value = 9};
    client r = {.name = "R", .q = q, .log = &log, .value = 10};
    client j = {.name = "J", .q = q, .log = &log};
    cio_task *tp = spawn(putter_run, &p), *tr = spawn(putter_run, &r);
    cio_task *tj = spawn(joiner_run, &j);
    settle();
    CHECK_EQ(get_int(q), 1); /* the slot is promised to P, not yet run */
    cio_queue_free(q);       /* P, R and J still have to return */
    CHECK_ERR(finish(tp), 0);
    CHECK_ERR(finish(tr), 0);
    CHECK_ERR(finish(tj), 0);
    CHECK_LOG(&log, "P:shut down R:shut down J:shut down");
    return 0;
}

TEST(queue_free_with_tasks_waiting_wakes_them_and_frees_later)
{
    CHECK_ERR(cio_run(free_waiters_main, NULL), 0);
}

static int free_promised_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 0), 0);
    client g = {.name = "G", .q = q, .log = &log};
    client h = {.name = "H", .q = q, .log = &log};
    cio_task *tg = spawn(getter_run, &g), *th = spawn(getter_run, &h);
    settle();
    put_int(q, 1);     /* promised to G, which has not run */
    cio_queue_free(q); /* G still has to look at it, H waits */
    CHECK_ERR(finish(tg), 0);
    CHECK_ERR(finish(th), 0);
    CHECK_LOG(&log, "G:shut down H:shut down");
    return 0;
}

TEST(queue_free_while_an_item_is_promised_is_safe)
{
    CHECK_ERR(cio_run(free_promised_main, NULL), 0);
}

/* ------------------------------------------------------ failure injection */

static int queue_fault_main(void *arg)
{
    (void)arg;
    cio_queue *a = NULL, *b = NULL, *c = NULL;
    int err = cio_queue_new(&a, sizeof(int), 0);
    if (!err)
        err = cio_queue_new(&b, sizeof(int), 4);
    if (!err)
        err = cio_priority_queue_new(&c, sizeof(prio_item), 0, by_prio,
                                     &cmp_tag);
    for (int i = 0; !err && i < 200; i++) { /* a grows several times */
        err = cio_queue_put(a, &i);
        if (err)
            CHECK_ERR(err, -ENOMEM);
        prio_item j = {i % 7, i};
        if (!err)
            err = cio_queue_put(c, &j);
    }
    /* Whatever went in comes out in order. */
    for (int want = 0; a && !cio_queue_empty(a); want++) {
        int v;
        CHECK_ERR(cio_queue_get(a, &v), 0);
        CHECK_EQ(v, want);
    }
    if (!err)
        err = cio_queue_put(b, &(int){1});
    cio_queue_free(a);
    cio_queue_free(b);
    cio_queue_free(c);
    return err;
}

static int queue_fault_scenario(void *arg)
{
    (void)arg;
    int r = cio_run(queue_fault_main, NULL);
    return r > 0 ? 0 : r;
}

TEST(queue_allocation_failures_fail_cleanly_and_leak_nothing)
{
    int injected =
        test_fault_loop(CIO__FAULT_ALLOC, 0, queue_fault_scenario, NULL);
    CHECK(injected > 5);
}

/* ------------------------------------------------------------ stress */

enum { WORKERS = 4, PER = 500 };

typedef struct storm {
    cio_queue *q;
    unsigned char put_ok[WORKERS * PER];
    unsigned char got[WORKERS * PER];
    int next[WORKERS];
    long cancels_seen;
} storm;

typedef struct storm_worker {
    storm *s;
    int index;
} storm_worker;

static int storm_producer(void *arg)
{
    storm_worker *w = arg;
    storm *s = w->s;
    cio_task *self = cio_current_task();
    for (int i = 0; i < PER; i++) {
        int id = w->index * PER + i;
        int r;
        while ((r = cio_queue_put(s->q, &id)) != 0) {
            CHECK_ERR(r, -ECANCELED); /* then it was not inserted: retry */
            s->cancels_seen++;
            cio_task_uncancel(self);
        }
        s->put_ok[id]++;
    }
    return 0;
}

static int queue_storm_consumer(void *arg)
{
    storm_worker *w = arg;
    storm *s = w->s;
    cio_task *self = cio_current_task();
    for (;;) {
        int id = -1;
        int r = cio_queue_get(s->q, &id);
        if (r == -ESHUTDOWN)
            return 0;
        if (r) {
            CHECK_ERR(r, -ECANCELED);
            s->cancels_seen++;
            cio_task_uncancel(self);
            continue;
        }
        CHECK(id >= 0 && id < WORKERS * PER);
        s->got[id]++;
        CHECK_ERR(cio_queue_task_done(s->q), 0);
    }
}

static int storm_main(void *arg)
{
    storm *s = arg;
    storm_worker w[2 * WORKERS];
    cio_task *t[2 * WORKERS];
    for (int i = 0; i < 2 * WORKERS; i++) {
        w[i] = (storm_worker){s, i % WORKERS};
        t[i] = spawn(i < WORKERS ? storm_producer : queue_storm_consumer,
                     &w[i]);
    }
    settle();
    unsigned seed = 3;
    bool producing = true;
    while (producing) {
        seed = seed * 1103515245u + 12345u;
        cio_task_cancel(t[(seed >> 16) % (2 * WORKERS)]);
        for (unsigned k = 0; k < (seed >> 20) % 3; k++)
            CHECK_ERR(cio_sleep(0), 0);
        producing = false;
        for (int i = 0; i < WORKERS; i++)
            producing |= !cio_future_done(t[i]);
    }
    for (int i = 0; i < WORKERS; i++)
        CHECK_ERR(finish(t[i]), 0);
    CHECK_ERR(cio_queue_join(s->q), 0); /* every item got and done */
    CHECK_ERR(cio_queue_shutdown(s->q, 0), 0);
    for (int i = WORKERS; i < 2 * WORKERS; i++) {
        int r = finish(t[i]);
        CHECK(r == 0 || r == -ECANCELED); /* cancelled before a last get */
    }
    return 0;
}

TEST(queue_delivers_every_item_exactly_once_under_random_cancellation)
{
    static storm s;
    CHECK_ERR(cio_queue_new(&s.q, sizeof(int), 4), 0);
    CHECK_ERR(cio_run(storm_main, &s), 0);
    for (int id = 0; id < WORKERS * PER; id++) {
        CHECK_EQ(s.put_ok[id], 1);
        CHECK_EQ(s.got[id], 1);
    }
    CHECK(s.cancels_seen > 100);
    cio_queue_free(s.q);
}

/* ------------------------------------------------ a loop closed under us */

typedef struct orphans {
    cio_queue *empty, *full;
} orphans;

static int orphan_get(void *arg)
{
    return cio_queue_get(((orphans *)arg)->empty, NULL);
}

static int orphan_put(void *arg)
{
    return cio_queue_put(((orphans *)arg)->full, &(int){2});
}

static int orphan_join(void *arg)
{
    return cio_queue_join(((orphans *)arg)->full);
}

static void quiet(cio_loop *loop, const cio_error_context *ctx, void *arg)
{
    (void)loop;
    (void)ctx;
    ++*(int *)arg;
}

static void promise_cb(void *arg)
{
    orphans *o = arg;
    put_int(o->empty, 7);                /* promised to the first getter */
    CHECK_EQ(get_int(o->full), 1);       /* a slot to the first putter */
}

/* Tasks waiting in a queue when their loop closes: what they were promised
 * goes on to the next waiter or back to the queue, and the queue does not
 * count them as inside (it can be freed at once, and reused). */
TEST(queue_survives_a_loop_closed_with_tasks_waiting_on_it)
{
    orphans o;
    CHECK_ERR(cio_queue_new(&o.empty, sizeof(int), 0), 0);
    CHECK_ERR(cio_queue_new(&o.full, sizeof(int), 1), 0);
    put_int(o.full, 1);
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    int reports = 0;
    CHECK_ERR(cio_loop_set_exception_handler(loop, quiet, &reports), 0);
    cio_task_fn fns[] = {orphan_get, orphan_get, orphan_put, orphan_put,
                         orphan_join};
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
        CHECK_ERR(cio_task_new(loop, fns[i], &o, NULL, NULL), 0);
    for (int i = 0; i < 5; i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_ERR(cio_call_soon(loop, promise_cb, &o, NULL), 0);
    CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    cio_loop_free(loop);
    CHECK_EQ(reports, 5);
    /* The item is back, the slot is free, and nobody is inside. */
    CHECK_EQ(cio_queue_qsize(o.empty), 1);
    CHECK_EQ(get_int(o.empty), 7);
    CHECK_EQ(cio_queue_full(o.full), 0);
    put_int(o.full, 3);
    CHECK_EQ(get_int(o.full), 3);
    cio_queue_free(o.empty); /* at once: the leak check would see it */
    cio_queue_free(o.full);
}

/* ------------------------------------------- items of every size */

/* Items of `size` bytes: byte 0 is the value (so memcmp orders them by
 * it), the rest a pattern of the value, so a torn or short copy shows. */
enum { MAX_ITEM = 40 };

static void make_item(char *item, size_t size, int v)
{
    item[0] = (char)v;
    for (size_t j = 1; j < size; j++)
        item[j] = (char)(v * 31 + (int)j);
}

static int item_value(const char *item, size_t size)
{
    char want[MAX_ITEM];
    make_item(want, size, (unsigned char)item[0]);
    CHECK(memcmp(item, want, size) == 0);
    return (unsigned char)item[0];
}

static int cmp_items(const void *a, const void *b, void *arg)
{
    return memcmp(a, b, *(size_t *)arg);
}

typedef struct sized_client {
    cio_queue *q;
    size_t size;
    char item[MAX_ITEM];
    bool drop; /* get: into NULL */
    int result;
} sized_client;

static int sized_get(void *arg)
{
    sized_client *c = arg;
    c->result = cio_queue_get(c->q, c->drop ? NULL : c->item);
    return 0;
}

static int sized_put(void *arg)
{
    sized_client *c = arg;
    c->result = cio_queue_put(c->q, c->item);
    return 0;
}

static int take_value(cio_queue *q, size_t size, bool wait)
{
    char item[MAX_ITEM];
    memset(item, 0xee, sizeof item);
    CHECK_ERR(wait ? cio_queue_get(q, item) : cio_queue_get_nowait(q, item),
              0);
    return item_value(item, size);
}

static void give_value(cio_queue *q, size_t size, int v, bool wait)
{
    char item[MAX_ITEM];
    make_item(item, size, v);
    CHECK_ERR(wait ? cio_queue_put(q, item) : cio_queue_put_nowait(q, item),
              0);
}

static cio_queue *sized_queue(int kind, size_t *size, size_t maxsize)
{
    cio_queue *q = NULL;
    if (kind == 0)
        CHECK_ERR(cio_queue_new(&q, *size, maxsize), 0);
    else if (kind == 1)
        CHECK_ERR(cio_lifo_queue_new(&q, *size, maxsize), 0);
    else
        CHECK_ERR(cio_priority_queue_new(&q, *size, maxsize, cmp_items, size),
                  0);
    return q;
}

/* Order of 5, 3 (put), then 4 (a waiting putter, once 1 item left):
 * what each kind gives back. */
static const int first_out[3] = {5, 3, 3};
static const int then_out[3][2] = {{3, 4}, {4, 5}, {4, 5}};

static void sized_paths(int kind, size_t size)
{
    cio_queue *q = sized_queue(kind, &size, 2);
    /* The calls that do not wait, then the waiting ones that need not. */
    give_value(q, size, 5, false);
    give_value(q, size, 3, true);
    CHECK_EQ(cio_queue_full(q), 1);
    CHECK_EQ(take_value(q, size, false), first_out[kind]);
    CHECK_EQ(take_value(q, size, true), first_out[kind] == 5 ? 3 : 5);
    /* A waiting getter is handed the item a put stores. */
    sized_client g = {.q = q, .size = size};
    cio_task *tg = spawn(sized_get, &g);
    settle();
    give_value(q, size, 7, false);
    CHECK_ERR(finish(tg), 0);
    CHECK_ERR(g.result, 0);
    CHECK_EQ(item_value(g.item, size), 7);
    /* ... and a waiting getter that drops it leaves nothing. */
    sized_client d = {.q = q, .size = size, .drop = true};
    cio_task *td = spawn(sized_get, &d);
    settle();
    give_value(q, size, 8, true);
    CHECK_ERR(finish(td), 0);
    CHECK_ERR(d.result, 0);
    CHECK_EQ(cio_queue_empty(q), 1);
    /* A waiting putter is handed the slot a get frees. */
    give_value(q, size, 5, false);
    give_value(q, size, 3, false);
    sized_client p = {.q = q, .size = size};
    make_item(p.item, size, 4);
    cio_task *tp = spawn(sized_put, &p);
    settle();
    CHECK_EQ(cio_queue_qsize(q), 2); /* it waits */
    CHECK_EQ(take_value(q, size, false), first_out[kind]);
    CHECK_ERR(finish(tp), 0);
    CHECK_ERR(p.result, 0);
    CHECK_EQ(take_value(q, size, true), then_out[kind][0]);
    CHECK_EQ(take_value(q, size, false), then_out[kind][1]);
    CHECK_EQ(cio_queue_empty(q), 1);
    cio_queue_free(q);
    /* Unbounded: grows past its first 16 slots with its ring wrapped, and
     * gives all back in the kind's order. */
    q = sized_queue(kind, &size, 0);
    for (int i = 0; i < 10; i++)
        give_value(q, size, 100 + i, false);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(take_value(q, size, false), kind == 1 ? 109 - i : 100 + i);
    for (int i = 10; i < 40; i++)
        give_value(q, size, 100 + i, true);
    CHECK_EQ(cio_queue_qsize(q), 34);
    int prev = -1;
    for (int i = 0; i < 34; i++) {
        int v = take_value(q, size, i % 2 == 0);
        if (kind == 0)
            CHECK_EQ(v, 106 + i);
        else if (kind == 2)
            CHECK(v > prev);
        else if (i < 30)
            CHECK_EQ(v, 139 - i); /* the newest first */
        else
            CHECK_EQ(v, 103 - (i - 30));
        prev = v;
    }
    CHECK_EQ(cio_queue_empty(q), 1);
    cio_queue_free(q);
}

static int every_size_main(void *arg)
{
    (void)arg;
    const size_t sizes[] = {1, 4, 8, 12, 16, 24, MAX_ITEM};
    for (int kind = 0; kind < 3; kind++)
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
            sized_paths(kind, sizes[i]);
    return 0;
}

TEST(queue_items_of_every_size_pass_intact_through_every_path)
{
    CHECK_ERR(cio_run(every_size_main, NULL), 0);
}

/* ------------------------------------- promises, shutdown, bad arguments */

/* A getter handed an item and then cancelled before it ran stays
 * cancelled when an immediate shutdown drops the item meanwhile; a putter
 * handed a slot, then cancelled, stays cancelled through a shutdown and
 * stores nothing. */
static int promise_cancelled_then_shut_main(void *arg)
{
    (void)arg;
    test_log log = {0};
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 1), 0);
    client g = {.name = "G", .q = q, .log = &log};
    cio_task *tg = spawn(getter_run, &g);
    settle();
    put_int(q, 1); /* promised to G, which has not run */
    CHECK_EQ(cio_task_cancel(tg), 1);
    CHECK_ERR(cio_queue_shutdown(q, 1), 0);
    CHECK_ERR(finish(tg), -ECANCELED);
    CHECK_EQ(cio_queue_qsize(q), 0);
    cio_queue_free(q);

    CHECK_ERR(cio_queue_new(&q, sizeof(int), 1), 0);
    put_int(q, 2);
    client p = {.name = "P", .q = q, .log = &log, .value = 3};
    cio_task *tp = spawn(putter_run, &p);
    settle();
    CHECK_EQ(get_int(q), 2); /* the slot is promised to P */
    CHECK_EQ(cio_task_cancel(tp), 1);
    CHECK_ERR(cio_queue_shutdown(q, 0), 0);
    CHECK_ERR(finish(tp), 0);
    CHECK_ERR(p.result, -ECANCELED);
    CHECK_EQ(cio_queue_qsize(q), 0);
    int v;
    CHECK_ERR(cio_queue_get_nowait(q, &v), -ESHUTDOWN);
    CHECK_LOG(&log, "G:cancelled P:cancelled");
    cio_queue_free(q);
    return 0;
}

TEST(queue_promise_cancelled_then_shut_down_stays_cancelled)
{
    CHECK_ERR(cio_run(promise_cancelled_then_shut_main, NULL), 0);
}

/* Sizes no memory holds are -ENOMEM before anything is allocated; NULL
 * queues and items are -EINVAL (0 for the questions), in a task too. */
static int queue_bad_arguments_main(void *arg)
{
    (void)arg;
    cio_queue *q = (cio_queue *)1;
    CHECK_ERR(cio_priority_queue_new(&q, SIZE_MAX - 3, 1, cmp_items, NULL),
              -ENOMEM);
    CHECK(q == NULL);
    CHECK_ERR(cio_queue_new(&q, 1 << 20, SIZE_MAX / 2), -ENOMEM);
    CHECK(q == NULL);
    int v = 1;
    CHECK_ERR(cio_queue_put(NULL, &v), -EINVAL);
    CHECK_ERR(cio_queue_get(NULL, &v), -EINVAL);
    CHECK_ERR(cio_queue_join(NULL), -EINVAL);
    CHECK_ERR(cio_queue_task_done(NULL), -EINVAL);
    CHECK_ERR(cio_queue_shutdown(NULL, 0), -EINVAL);
    CHECK_EQ(cio_queue_maxsize(NULL), 0);
    CHECK_EQ(cio_queue_full(NULL), 0);
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 0), 0);
    CHECK_ERR(cio_queue_put(q, NULL), -EINVAL);
    CHECK_EQ(cio_queue_full(q), 0); /* unbounded: never */
    CHECK_EQ(cio_queue_qsize(q), 0);
    /* Shut down and empty: get says so at once, without waiting. */
    CHECK_ERR(cio_queue_shutdown(q, 0), 0);
    CHECK_ERR(cio_queue_get(q, &v), -ESHUTDOWN);
    CHECK_ERR(cio_queue_put(q, &v), -ESHUTDOWN);
    cio_queue_free(q);
    return 0;
}

TEST(queue_bad_arguments_and_impossible_sizes)
{
    CHECK_ERR(cio_run(queue_bad_arguments_main, NULL), 0);
}
