/* One small job in the styles of other asynchronous worlds, in cio.
 *
 * The job: look a user up, then fetch that user's score: two steps that
 * wait, the second needing the first's answer. Each step is an
 * operation that returns a future at once and completes it 50 ms later
 * (a timer stands for the network).
 *   1. Callbacks: JavaScript's promise.then, Twisted's Deferred
 *      addCallback, Tornado's IOLoop callbacks: cio_future_add_done_callback.
 *   2. async/await: JavaScript's and Python's, Tornado's coroutines,
 *      gevent's greenlets: a cio task, which waits with cio_await.
 *   3. All at once: Promise.all, Twisted's DeferredList, gevent.joinall:
 *      cio_gather_calls.
 */
#define _POSIX_C_SOURCE 200809L
#include <cio.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct user {
    const char *name;
    int id, score;
} user;

static const user users[] = {{"ada", 1, 97}, {"bob", 2, 88}};

/* ---- the operations: a future now, its result 50 ms later */

typedef struct op {
    cio_future *f; /* the op's own reference, dropped when it resolves */
    const void *value;
} op;

static void resolve(void *arg)
{
    op *o = arg;
    cio_future_set_result(o->f, (void *)o->value);
    cio_future_unref(o->f);
    free(o);
}

/* Starts an operation on loop that completes with value; *out is the
 * caller's reference. Returns 0, -ENOMEM, or as cio_call_later. */
static int start_op(cio_loop *loop, const void *value, cio_future **out)
{
    op *o = malloc(sizeof *o);
    if (!o)
        return -ENOMEM;
    o->value = value;
    int err = cio_future_new(loop, &o->f);
    if (!err)
        err = cio_call_later(loop, 0.05, resolve, o, NULL);
    if (err) {
        cio_future_unref(o->f); /* NULL-safe */
        free(o);
        return err;
    }
    *out = cio_future_ref(o->f);
    return 0;
}

static int lookup(cio_loop *loop, const char *name, cio_future **out)
{
    const user *u = name[0] == 'a' ? &users[0] : &users[1];
    return start_op(loop, u, out);
}

static int fetch_score(cio_loop *loop, const user *u, cio_future **out)
{
    return start_op(loop, &u->score, out);
}

/* ---- 1. callbacks: each step's continuation is a function */

static void got_score(cio_future *f, void *arg)
{
    const user *u = arg;
    void *v;
    int err = cio_future_result(f, &v);
    if (err)
        printf("  failed: %s\n", cio_strerror(err));
    else
        printf("  then score(%d) -> %d\n", u->id, *(const int *)v);
    cio_loop_stop(cio_future_get_loop(f)); /* the chain's end */
}

static void got_user(cio_future *f, void *arg)
{
    (void)arg;
    void *v;
    cio_future *next;
    int err = cio_future_result(f, &v);
    if (!err) {
        const user *u = v;
        printf("  lookup(\"%s\") -> user %d\n", u->name, u->id);
        err = fetch_score(cio_future_get_loop(f), u, &next);
        if (!err) {
            err = cio_future_add_done_callback(next, got_score, v);
            cio_future_unref(next); /* the callback holds it from here */
        }
    }
    if (err) { /* every step passes errors on by hand */
        printf("  failed: %s\n", cio_strerror(err));
        cio_loop_stop(cio_future_get_loop(f));
    }
}

static int callbacks(void)
{
    printf("1. callbacks (promise.then, Deferred.addCallback):\n");
    cio_loop *loop;
    cio_future *f = NULL;
    int err = cio_loop_new(&loop, NULL);
    if (err)
        return err;
    err = lookup(loop, "ada", &f);
    if (!err)
        err = cio_future_add_done_callback(f, got_user, NULL);
    cio_future_unref(f);
    if (!err)
        err = cio_loop_run_forever(loop); /* until got_score stops it */
    cio_loop_free(loop);
    return err;
}

/* ---- 2. async/await: the steps in order, in one function */

static int user_score(void *arg)
{
    const char *name = arg;
    cio_loop *loop = cio_get_running_loop();
    cio_future *f;
    void *v;
    int err = lookup(loop, name, &f);
    if (err)
        return err;
    err = cio_await(f, &v); /* await lookup(name) */
    cio_future_unref(f);
    if (err)
        return err;
    const user *u = v;
    if ((err = fetch_score(loop, u, &f)))
        return err;
    err = cio_await(f, &v); /* await fetch_score(user) */
    cio_future_unref(f);
    if (!err)
        printf("  %s: user %d, score %d\n", u->name, u->id, *(const int *)v);
    return err;
}

/* ---- 3. all at once */

static int both(void *arg)
{
    (void)arg;
    cio_loop *loop = cio_get_running_loop();
    double t0 = cio_loop_time(loop);
    cio_call calls[] = {{user_score, "ada"}, {user_score, "bob"}};
    int err = cio_gather_calls(calls, 2, 0, NULL);
    if (!err)
        printf("  both took %.1f s; one after the other, 0.2 s\n",
               cio_loop_time(loop) - t0);
    return err;
}

int main(void)
{
    int err = callbacks();
    if (!err) {
        printf("2. async/await (a task: coroutines, greenlets):\n");
        err = cio_run(user_score, "ada");
    }
    if (!err) {
        printf("3. all at once (Promise.all, DeferredList, joinall):\n");
        err = cio_run(both, NULL);
    }
    if (err)
        fprintf(stderr, "other_styles: %s\n", cio_strerror(err));
    return err ? 1 : 0;
}
