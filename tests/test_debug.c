/* Debug mode's misuse checks (issue 12 §4, issue 13 §2): a second free or
 * unref is reported with the object's kind and name and touches no freed
 * memory (the sanitizers stay quiet); two threads cannot run one loop; a
 * concurrent future that only this loop could complete is -EDEADLK; the
 * references a program never dropped are named, with where they were
 * created, when the loop is freed. */
#define _GNU_SOURCE
#include "harness.h"
#include "util.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

/* Every report, in order. */
typedef struct reports {
    int n;
    char message[8][256];
    char what[8][32];
    char name[8][64];
    int error[8];
    void *object[8];
} reports;

static reports R;

static void keep_report(cio_loop *loop, const cio_error_context *ctx,
                        void *arg)
{
    (void)loop;
    reports *r = arg;
    if (r->n < 8) {
        snprintf(r->message[r->n], sizeof r->message[0], "%s", ctx->message);
        snprintf(r->what[r->n], sizeof r->what[0], "%s",
                 ctx->what ? ctx->what : "");
        snprintf(r->name[r->n], sizeof r->name[0], "%s",
                 ctx->name ? ctx->name : "");
        r->error[r->n] = ctx->error;
        r->object[r->n] = ctx->object;
    }
    r->n++;
}

static cio_loop *debug_loop(void)
{
    cio_loop *loop = loop_open_with(NULL, 1);
    CHECK_ERR(cio_loop_set_exception_handler(loop, keep_report, &R), 0);
    return loop;
}


static int return_7(void *arg)
{
    (void)arg;
    return 7;
}

/* Runs loop until fut is done. */
static void run_until(cio_loop *loop, cio_future *fut)
{
    for (int i = 0; i < 100 && !cio_future_done(fut); i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK(cio_future_done(fut));
}

/* ------------------------------------------------- futures and tasks */

TEST(debug_future_unref_twice_is_reported)
{
    cio_loop *loop = debug_loop();
    cio_future *f;
    CHECK_ERR(cio_future_new(loop, &f), 0);
    cio_future_unref(f);
    CHECK_EQ(R.n, 0);
    cio_future_unref(f); /* the quarantine still holds its memory */
    CHECK_EQ(R.n, 1);
    CHECK_HAS(R.message[0], "cio_future_unref of a freed future");
    CHECK_STR(R.what[0], "future");
    CHECK(R.object[0] == (void *)f);
    cio_future_unref(f); /* and again: still caught, still harmless */
    CHECK_EQ(R.n, 2);
    cio_loop_free(loop);
    CHECK_EQ(R.n, 2);
}

TEST(debug_task_unref_twice_is_reported_with_its_name)
{
    cio_loop *loop = debug_loop();
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, return_7, NULL,
                           &(cio_task_options){.name = "worker"}, &t), 0);
    run_until(loop, t);
    CHECK_ERR(cio_future_result(t, NULL), 7);
    cio_future_unref(t);
    CHECK_EQ(R.n, 0);
    cio_future_unref(t);
    CHECK_EQ(R.n, 1);
    CHECK_HAS(R.message[0], "cio_future_unref of a freed task");
    CHECK_STR(R.what[0], "task");
    CHECK_STR(R.name[0], "worker");
    cio_loop_free(loop);
}

/* Not only debug mode: the loop's own reference is never taken away by a
 * program that drops one reference too many while the task runs. */
TEST(debug_off_task_unref_of_the_loops_reference_is_refused)
{
    cio_loop *loop = loop_open();
    CHECK_ERR(cio_loop_set_exception_handler(loop, keep_report, &R), 0);
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, return_7, NULL,
                           &(cio_task_options){.name = "busy"}, &t), 0);
    cio_future_unref(t);
    cio_future_unref(t); /* the loop's: refused */
    CHECK_EQ(R.n, 1);
    CHECK_HAS(R.message[0], "running task's last reference");
    CHECK_STR(R.name[0], "busy");
    for (int i = 0; i < 4; i++) /* it runs, finishes and is freed */
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(cio_all_tasks(loop, NULL, 0), 0);
    cio_loop_free(loop);
    CHECK_EQ(R.n, 1);
}

/* ------------------------------------------------- library objects */

static int pipe_stream_freed_twice(void *arg)
{
    (void)arg;
    int p[2];
    CHECK_EQ(pipe(p), 0);
    cio_stream *s;
    CHECK_ERR(cio__stream_pipe(cio_get_running_loop(), p[0], false, 0, &s), 0);
    cio_stream_free(s);  /* its transport closes; freed at connection_lost */
    cio_stream_free(s);  /* while it closes */
    CHECK_EQ(R.n, 1);
    CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(cio_sleep(0), 0); /* connection_lost: freed for good */
    cio_stream_free(s);  /* after: the quarantine's memory */
    CHECK_EQ(R.n, 2);
    close(p[1]);
    return 0;
}

TEST(debug_stream_freed_twice_is_reported)
{
    cio_loop *loop = debug_loop();
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, pipe_stream_freed_twice, NULL, NULL, &t), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 0);
    cio_future_unref(t);
    CHECK_HAS(R.message[0], "cio_stream_free of a stream already freed");
    CHECK_STR(R.what[0], "stream");
    CHECK_STR(R.what[1], "stream");
    cio_loop_free(loop);
    CHECK_EQ(R.n, 2);
    cio__quarantine_flush(NULL); /* the process's: the harness counts */
}

static const cio_protocol NO_PROTOCOL;

static int server_freed_twice(void *arg)
{
    (void)arg;
    cio_server *s;
    CHECK_ERR(cio_create_server("127.0.0.1", "0", &NO_PROTOCOL, NULL, NULL,
                                NULL, &s), 0);
    cio_server_free(s);
    CHECK_EQ(R.n, 0);
    cio_server_free(s);
    CHECK_EQ(R.n, 1);
    return 0;
}

TEST(debug_server_freed_twice_is_reported)
{
    cio_loop *loop = debug_loop();
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, server_freed_twice, NULL, NULL, &t), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 0);
    cio_future_unref(t);
    CHECK_HAS(R.message[0], "cio_server_free of a server already freed");
    CHECK_STR(R.what[0], "server");
    cio_loop_free(loop);
}

/* Executors and queues belong to no loop: they are in debug mode when
 * made while a debug loop runs (or with $CIO_DEBUG), and report to the
 * running loop. */
static void executor_and_queue_freed_twice(void *arg)
{
    (void)arg;
    cio_executor *ex;
    CHECK_ERR(cio_executor_new(&ex, 1), 0);
    cio_executor_free(ex);
    cio_executor_free(ex);
    CHECK_EQ(R.n, 1);
    CHECK_HAS(R.message[0], "cio_executor_free of an executor already freed");
    CHECK_STR(R.what[0], "executor");
    cio_queue *q;
    CHECK_ERR(cio_queue_new(&q, sizeof(int), 4), 0);
    cio_queue_free(q);
    cio_queue_free(q);
    CHECK_EQ(R.n, 2);
    CHECK_HAS(R.message[1], "cio_queue_free of a queue already freed");
    CHECK_STR(R.what[1], "queue");
    cio_loop_stop(cio_get_running_loop());
}

TEST(debug_executor_and_queue_freed_twice_are_reported)
{
    cio_loop *loop = debug_loop();
    CHECK_ERR(cio_call_soon(loop, executor_and_queue_freed_twice, NULL, NULL),
              0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    CHECK_EQ(R.n, 2);
    cio__quarantine_flush(NULL); /* the process's: the harness counts */
    cio_loop_free(loop);
}

/* ------------------------------------------------- threads and loops */

typedef struct second {
    cio_loop *loop;
    sem_t go, done;
    int result;
} second;

static void *second_runner(void *arg)
{
    second *s = arg;
    sem_wait(&s->go);
    s->result = cio_loop_run_once(s->loop, 0);
    sem_post(&s->done);
    return NULL;
}

/* Runs on the loop: lets the second thread try while the loop is
 * certainly running, and waits for its answer. */
static void let_second_try(void *arg)
{
    second *s = arg;
    sem_post(&s->go);
    sem_wait(&s->done);
    cio_loop_stop(s->loop);
}

static void two_threads_one_loop(int debug)
{
    cio_loop *loop = loop_open_with(NULL, debug);
    CHECK_ERR(cio_loop_set_exception_handler(loop, keep_report, &R), 0);
    second s = {.loop = loop};
    sem_init(&s.go, 0, 0);
    sem_init(&s.done, 0, 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, second_runner, &s), 0);
    CHECK_ERR(cio_call_soon(loop, let_second_try, &s, NULL), 0);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    pthread_join(th, NULL);
    CHECK_ERR(s.result, -EBUSY);
    CHECK_ERR(cio_loop_close(loop), 0); /* the loop is free again */
    sem_destroy(&s.go);
    sem_destroy(&s.done);
    cio_loop_free(loop);
}

TEST(debug_off_loop_run_by_a_second_thread_is_refused)
{
    two_threads_one_loop(-1);
    CHECK_EQ(R.n, 0);
}

TEST(debug_loop_run_by_a_second_thread_is_reported)
{
    two_threads_one_loop(1);
    CHECK_EQ(R.n, 1);
    CHECK_HAS(R.message[0], "another thread runs");
    CHECK_ERR(R.error[0], -EBUSY);
    CHECK_STR(R.what[0], "loop");
}

static int wait_for_own_coroutine(void *arg)
{
    (void)arg;
    cio_cfuture *cf;
    CHECK_ERR(cio_run_coroutine_threadsafe(cio_get_running_loop(), return_7,
                                           NULL, &cf), 0);
    CHECK_ERR(cio_cfuture_result(cf, -1), -EDEADLK); /* it would hang */
    CHECK_ERR(cio_cfuture_result(cf, 0.5), -EDEADLK);
    while (!cio_cfuture_done(cf))
        CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(cio_cfuture_result(cf, -1), 7); /* done: it is just read */
    cio_cfuture_unref(cf);
    return 0;
}

TEST(debug_off_cfuture_result_on_the_loop_that_must_complete_it_is_edeadlk)
{
    cio_loop *loop = loop_open();
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, wait_for_own_coroutine, NULL, NULL, &t), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 0);
    cio_future_unref(t);
    cio_loop_free(loop);
}

/* ------------------------------------------- references left over */

/* The harness counts allocations: what the program never released is
 * given back by hand once the loop is gone (nothing else can). */
static void free_leaked(cio_future *f)
{
    if (f->ops) {
        cio__task *t = (cio__task *)(void *)f;
        cio__free(t->name);
        cio__free(t->scopes);
    }
    cio__free(f);
}

TEST(debug_references_never_dropped_are_named_with_their_site)
{
    cio_loop *loop = debug_loop();
    cio_future *f;
    cio_task *t;
    cio_task_options opts = {.name = "forgotten", .stack_size = 64 * 1024};
    int line = __LINE__ + 1;
    CHECK_ERR(cio_future_new(loop, &f), 0);
    CHECK_ERR(cio_task_new(loop, return_7, NULL, &opts, &t), 0);
    run_until(loop, t);
    cio_loop_free(loop);
    CHECK_EQ(R.n, 2);
    char where[128];
    snprintf(where, sizeof where, "future still referenced when the loop was "
             "freed (created at %s:%d)", __FILE__, line);
    CHECK_STR(R.message[0], where);
    CHECK_STR(R.what[0], "future");
    snprintf(where, sizeof where, "(created at %s:%d)", __FILE__, line + 1);
    CHECK_HAS(R.message[1], where);
    CHECK_STR(R.what[1], "task");
    CHECK_STR(R.name[1], "forgotten");
    free_leaked(f);
    free_leaked(t);
}

/* A designated initialiser's commas pass through the site macros. */
TEST(debug_site_macro_takes_a_compound_literal_with_commas)
{
    cio_loop *loop = loop_open();
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, return_7, NULL, &(cio_task_options){.name = "a", .stack_size = 65536}, &t), 0);
    CHECK_STR(cio_task_get_name(t), "a");
    CHECK_STR(t->site_file, __FILE__);
    run_until(loop, t);
    cio_future_unref(t);
    cio_loop_free(loop);
}

TEST(debug_off_references_are_not_reported)
{
    cio_loop *loop = loop_open_with(NULL, -1);
    CHECK_ERR(cio_loop_set_exception_handler(loop, keep_report, &R), 0);
    cio_future *f;
    CHECK_ERR(cio_future_new(loop, &f), 0);
    cio_loop_free(loop);
    CHECK_EQ(R.n, 0);
    cio__free(f);
}

/* A parked task's frame held a reference it would have dropped: the loop
 * that destroys the task cannot drop it, so debug mode names it. */
static int child(void *arg)
{
    (void)arg;
    return cio_sleep(100);
}

static cio_task *CHILD;
static int CHILD_LINE;

static int parent(void *arg)
{
    (void)arg;
    cio_task *c;
    CHILD_LINE = __LINE__ + 1;
    CHECK_ERR(cio_create_task(child, NULL, &c), 0);
    CHILD = c;
    int r = cio_await(c, NULL);
    cio_future_unref(c); /* never reached: the loop goes first */
    return r;
}

TEST(debug_loop_freed_with_a_parked_task_names_what_its_frame_held)
{
    cio_loop *loop = debug_loop();
    CHECK_ERR(cio_task_new(loop, parent, NULL,
                           &(cio_task_options){.name = "parent"}, NULL), 0);
    for (int i = 0; i < 4; i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    cio_loop_free(loop);
    /* Both destroyed pending, then the child named: parent's frame. */
    CHECK_EQ(R.n, 3);
    CHECK_HAS(R.message[0], "Task was destroyed but it is pending!");
    CHECK_HAS(R.message[1], "Task was destroyed but it is pending!");
    char where[128];
    snprintf(where, sizeof where, "task still referenced when the loop was "
             "freed (created at %s:%d)", __FILE__, CHILD_LINE);
    CHECK_STR(R.message[2], where);
    CHECK(R.object[2] == (void *)CHILD);
    free_leaked(CHILD);
}

/* ------------------------------------ a primitive whose frame goes */

/* What the waiters got, in order of their names. */
static int GOT[4];

static int lock_waiter(void *arg)
{
    GOT[0] = cio_lock_acquire(arg);
    return 0;
}

static int cond_waiter(void *arg)
{
    cio_condition *c = arg;
    CHECK_ERR(cio_condition_acquire(c), 0);
    GOT[1] = cio_condition_wait(c); /* the lock is released meanwhile */
    return 0;
}

static int barrier_waiter(void *arg)
{
    GOT[2] = cio_barrier_wait(arg);
    return 0;
}

static int sem_waiter(void *arg)
{
    GOT[3] = cio_semaphore_acquire(arg);
    return 0;
}

/* Holds one of each in its frame, lets a task wait on each, and returns:
 * with `hand`, it first releases the lock, handing it to its waiter,
 * which has not run yet when the frame goes. */
static int owner(void *arg)
{
    bool hand = arg != NULL;
    cio_lock lock = CIO_LOCK_INIT;
    cio_condition cond = CIO_CONDITION_INIT;
    cio_barrier bar;
    cio_semaphore sem;
    CHECK_ERR(cio_barrier_init(&bar, 2), 0);
    CHECK_ERR(cio_semaphore_init(&sem, 0), 0);
    CHECK_ERR(cio_lock_acquire(&lock), 0);
    cio_task_options o[4] = {{.name = "locker"}, {.name = "condwaiter"},
                             {.name = "barrierwaiter"}, {.name = "semwaiter"}};
    CHECK_ERR(cio_task_new(NULL, lock_waiter, &lock, &o[0], NULL), 0);
    CHECK_ERR(cio_task_new(NULL, cond_waiter, &cond, &o[1], NULL), 0);
    CHECK_ERR(cio_task_new(NULL, barrier_waiter, &bar, &o[2], NULL), 0);
    CHECK_ERR(cio_task_new(NULL, sem_waiter, &sem, &o[3], NULL), 0);
    for (int i = 0; i < 4; i++)
        CHECK_ERR(cio_sleep(0), 0); /* each parks */
    if (hand)
        CHECK_ERR(cio_lock_release(&lock), 0);
    return 0; /* and everything above goes with the frame */
}

static void primitives_gone(bool hand)
{
    cio_loop *loop = debug_loop();
    for (int i = 0; i < 4; i++)
        GOT[i] = 99;
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, owner, hand ? "hand" : NULL,
                           &(cio_task_options){.name = "owner"}, &t), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 0);
    cio_future_unref(t);
    for (int i = 0; i < 4; i++) /* the waiters run and return */
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(cio_all_tasks(loop, NULL, 0), 0);
    for (int i = 0; i < 4; i++)
        CHECK_ERR(GOT[i], -ESHUTDOWN);
    CHECK_EQ(R.n, 4);
    const char *names[4] = {"locker", "condwaiter", "barrierwaiter",
                            "semwaiter"};
    for (int i = 0; i < 4; i++) {
        char msg[256];
        snprintf(msg, sizeof msg, "task %s waits on a lock, event, condition, "
                 "semaphore or barrier on the stack of task owner, which "
                 "returned", names[i]);
        CHECK_STR(R.message[i], msg);
        CHECK_STR(R.name[i], names[i]);
        CHECK_ERR(R.error[i], -ESHUTDOWN);
    }
    cio_loop_free(loop);
}

TEST(debug_primitives_on_a_returning_tasks_stack_release_their_waiters)
{
    primitives_gone(false);
}

TEST(debug_lock_handed_over_as_its_frame_goes_is_not_kept)
{
    primitives_gone(true);
}

/* A task whose creation fails leaves nothing on a debug loop's lists. */
TEST(debug_task_that_cannot_be_made_is_not_tracked)
{
    cio_loop *loop = debug_loop();
    cio__fault_arm(CIO__FAULT_ALLOC, 2, 0); /* its name's copy */
    CHECK_ERR(cio_task_new(loop, return_7, NULL,
                           &(cio_task_options){.name = "never"}, NULL),
              -ENOMEM);
    CHECK(cio__fault_fired());
    cio__fault_disarm();
    cio_loop_free(loop);
    CHECK_EQ(R.n, 0);
}
