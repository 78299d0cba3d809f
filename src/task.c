/* Tasks: stackful coroutines on the loop. Every suspension in cio reduces
 * to one small kernel (libdill's): park the current task with an interrupt
 * hook, and wake it with a result. The loop's own stack is the scheduler:
 * a task's wake handle, run as an ordinary ready callback, switches into
 * the task; the task switches back when it parks or finishes.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

enum { DEFAULT_STACK = 256 * 1024 };

_Thread_local cio__task *cio__current;
static _Thread_local cio__fiber scheduler; /* the thread's own stack */

static const cio__future_ops task_ops;
static int running_stack_info(char **lo, size_t *size, char *name,
                              size_t cap);

static cio__task *as_task(const cio_future *f)
{
    return f && f->ops == &task_ops ? (cio__task *)(uintptr_t)f : NULL;
}

cio__task *cio__task_of(const cio_future *f)
{
    return as_task(f);
}

/* The waits of this file, as the task dump tells them. */
static size_t one_future(const void *on, cio_future **out, size_t cap)
{
    if (cap)
        out[0] = (cio_future *)(uintptr_t)on;
    return 1;
}
/* cio_await's: "task" or "future" (or the future's label), told when the
 * dump or the trace asks, not on the await's hot path. */
static const cio__wait_kind await_future = {"future", one_future};
static const cio__wait_kind sleeping = {"sleep", NULL};

/* ----------------------------------------------------------- the kernel */

int cio__interrupted(const cio__task *t)
{
    if (t->cancel_requests > 0)
        return -ECANCELED;
    if (t->expired_scopes > 0)
        return -ETIMEDOUT;
    return 0;
}

void cio__wake(cio__task *t, int result)
{
    if (!t->parked)
        return; /* already woken: the first result wins */
    t->parked = false;
    t->interrupt = NULL;
    t->wake_result = result;
    cio__handle_schedule(&t->wake);
}

void cio__interrupt(cio__task *t)
{
    if (!t->parked)
        return; /* it will see the request at its next suspension point */
    if (t->interrupting) {
        /* Back round a cycle of awaits (a awaits b awaits a): its own
         * hook's cancel reached it again. Nothing it awaits can finish
         * first, so it wakes to the request now; the rest of the cycle
         * then sees it finish. (asyncio recurses until RecursionError.) */
        cio__wake(t, 0);
        return;
    }
    if (t->interrupt) {
        t->interrupting = true;
        t->interrupt(t, t->interrupt_arg);
        t->interrupting = false;
    } else {
        cio__wake(t, 0);
    }
}

/* ------------------------------------------------------ timeout scopes
 * The records; flow.c gives them their meaning. */

void cio__scopes_truncate(cio__task *t, size_t i)
{
    while (t->nscopes > i)
        if (t->scopes[--t->nscopes].expired)
            t->expired_scopes--;
}

static bool on_stack(const cio__task *t, const void *p)
{
    const char *c = p, *lo = t->fiber.stack_lo;
    return lo && c >= lo && c < lo + t->fiber.stack_size;
}

void cio__scopes_drop_dead(cio__task *t, const void *fp, const void *reused)
{
    size_t n = t->nscopes;
    while (n) {
        const void *frame = t->scopes[n - 1].frame;
        bool below = on_stack(t, fp) && on_stack(t, frame) &&
                     (const char *)frame < (const char *)fp;
        if (!below && frame != reused)
            break;
        n--;
    }
    if (n == t->nscopes)
        return;
    if (t->fut.loop->debug)
        cio__report(t->fut.loop, "a timeout scope was never ended: the "
                                 "function that opened it returned",
                    0, "task", cio_task_get_name(&t->fut), &t->fut);
    cio__scopes_truncate(t, n);
}

int cio__park(void (*interrupt)(cio__task *t, void *arg), void *arg)
{
    cio__task *t = cio__current;
    t->parked = true;
    t->interrupt = interrupt;
    t->interrupt_arg = arg;
    cio__fiber_switch(&t->fiber, &scheduler, 0);
    return t->wake_result;
}

int cio__park_checked(void (*interrupt)(cio__task *t, void *arg), void *arg)
{
    int woke = cio__park(interrupt, arg);
    int r = cio__interrupted(cio__current);
    return r ? r : woke;
}

/* ------------------------------------------------------ running a task */

static bool within(const void *p, const char *lo, size_t size);
static void cleanup_done(void *arg) { (void)arg; }

/* Debug: u waits on an object in a frame of t's, which has returned: its
 * memory is already reused (by this very call's frames). u's wait forgets
 * it untouched, and u wakes (or, woken already, resumes) with CIO__GONE;
 * what it was handed, if anything, goes with the object. */
static void abandon(cio__task *t, cio__task *u, cio__cleanup *c)
{
    char msg[256];
    snprintf(msg, sizeof msg, "task %s waits on a lock, event, condition, "
             "semaphore or barrier on the stack of task %s, which returned",
             cio_task_get_name(&u->fut), cio_task_get_name(&t->fut));
    cio__report(t->fut.loop, msg, -ESHUTDOWN, "task",
                cio_task_get_name(&u->fut), &u->fut);
    c->forget(c->arg);
    c->fn = cleanup_done; /* nothing for a teardown to undo */
    c->on = NULL;
    if (u->parked)
        cio__wake(u, CIO__GONE);
    else
        u->wake_result = CIO__GONE;
}

/* Debug: before t's stack goes, no other task's wait may stay linked into
 * an object on it. (A frame that returns while its task goes on, or a
 * primitive in heap memory the program frees, is not seen.) */
static void abandon_waiters_on(cio__task *t)
{
    const char *lo = t->fiber.stack_lo;
    size_t size = t->fiber.stack_size;
    cio__list *all = &t->fut.loop->tasks.all;
    for (cio__list *n = all->next; n != all; n = n->next) {
        cio__task *u = cio__container_of(n, cio__task, all);
        for (cio__cleanup *c = u->cleanups; u != t && c; c = c->next)
            if (c->on && within(c->on, lo, size))
                abandon(t, u, c);
    }
}

static void finish(cio__task *t, int status)
{
    cio__assert(!t->cleanups); /* every push was popped */
    if (t->fut.loop->debug && t->fiber.stack_lo)
        abandon_waiters_on(t);
    /* Its timers leave the loop with it, even if a scope was left open. */
    cio__handle_unschedule(&t->timer);
    cio__handle_unschedule(&t->scope_timer);
    if (t->nscopes && t->fut.loop->debug)
        cio__report(t->fut.loop, "a timeout scope was never ended: its "
                                 "task returned",
                    0, "task", cio_task_get_name(&t->fut), &t->fut);
    cio__scopes_truncate(t, 0); /* the task's return closes them */
    cio__list_unlink(&t->all);
    t->fut.loop->tasks.n--;
    if (status == -ECANCELED)
        cio__future_complete(&t->fut, CIO__F_CANCELLED, -ECANCELED, NULL);
    else
        cio__future_complete(&t->fut, CIO__F_DONE, status,
                             status >= 0 ? t->result_value : NULL);
}

/* Debug: the high-water mark of a finished task's stack, and a warning
 * if it came within a quarter of the end: the next run, with other input,
 * may overflow. */
static void record_stack_use(cio__task *t)
{
    size_t size = t->fiber.stack_size;
    t->stack_used = cio__stack_used(t->fiber.stack_lo, size);
    cio__stack_note_use(t->stack_used);
    if (t->stack_used <= size / 4 * 3)
        return;
    char msg[160];
    snprintf(msg, sizeof msg, "a task used %zu of its %zu-byte stack (more "
             "than 75%%): give it a stack_size of at least %zu",
             t->stack_used, size, cio__stack_round(2 * t->stack_used));
    cio__report(t->fut.loop, msg, 0, "task", cio_task_get_name(&t->fut),
                &t->fut);
}

/* Gives back the task's stack, or its reservation if it never ran. */
static void release_stack(cio__task *t)
{
    if (t->fiber.stack_lo) {
        if (t->fut.loop->debug)
            record_stack_use(t);
        cio__fiber_destroy(&t->fiber);
        cio__stack_put(t->fut.loop, t->fiber.stack_lo, t->fiber.stack_size);
        t->fiber.stack_lo = NULL;
    } else if (t->fiber.stack_size) {
        cio__stack_unreserve(t->fut.loop, t->fiber.stack_size);
    }
    t->fiber.stack_size = 0;
}

/* The first frame on a task's stack. */
static void task_entry(void *arg)
{
    cio__task *t = arg;
    cio__fiber_arrived(NULL, &scheduler);
    finish(t, t->fn(t->arg));
    cio__fiber_switch(&t->fiber, &scheduler, 1);
    cio__assert(!"a finished task was resumed");
}

const char *cio__task_wait_what(const cio__task *t)
{
    const cio__wait_kind *k = t->wait_kind;
    if (!k)
        return NULL;
    const cio_future *f = t->wait_on;
    if (k != &await_future)
        return k->what;
    if (as_task(f))
        return "task";
    return f->label ? f->label : "future"; /* what it stands for */
}

/* ----------------------------------------------------- the trace's view
 * A task's row: its run slices, and between them what it waited on. */

static double trace_resume(cio__trace *tr, cio__task *t)
{
    double now = cio__trace_clock();
    if (t->trace_wait_from > 0)
        cio__trace_slice(tr, t->id, t->trace_wait, t->trace_wait_from, now);
    t->trace_wait_from = 0;
    return now;
}

static void trace_pause(cio__trace *tr, cio__task *t, double from)
{
    double now = cio__trace_clock();
    cio__trace_slice(tr, t->id, "run", from, now);
    if (t->parked && t->fut.state == CIO__F_PENDING) {
        t->trace_wait_from = now;
        t->trace_wait = cio__task_wait_what(t);
        if (!t->trace_wait)
            t->trace_wait = "wait";
    }
}

void cio__tasks_trace_begin(cio_loop *loop)
{
    cio__list *all = &loop->tasks.all;
    for (cio__list *n = all->next; n != all; n = n->next) {
        cio__task *t = cio__container_of(n, cio__task, all);
        if (t->started)
            cio__trace_name_row(loop->trace, t->id, cio_task_get_name(&t->fut));
    }
}

void cio__tasks_trace_end(cio_loop *loop)
{
    double now = cio__trace_clock();
    cio__list *all = &loop->tasks.all;
    for (cio__list *n = all->next; n != all; n = n->next) {
        cio__task *t = cio__container_of(n, cio__task, all);
        if (t->trace_wait_from > 0)
            cio__trace_slice(loop->trace, t->id, t->trace_wait,
                             t->trace_wait_from, now);
        t->trace_wait_from = 0;
    }
}

/* Debug: a step that kept the loop from everything else too long (it
 * blocked: chapter 4), named as asyncio's "Executing <Task ...> took". */
static void warn_if_slow(const cio__task *t, double took)
{
    cio_loop *loop = t->fut.loop;
    loop->dbg.step_timed = true; /* the loop's generic warning stays quiet */
    if (took < loop->slow_callback_duration)
        return;
    if (t->fut.site_file)
        fprintf(stderr, "cio: warning: executing task %s (created at %s:%d) "
                        "took %.3f seconds\n", cio_task_get_name(&t->fut),
                t->fut.site_file, t->fut.site_line, took);
    else
        fprintf(stderr, "cio: warning: executing task %s took %.3f seconds\n",
                cio_task_get_name(&t->fut), took);
}

/* Its first step: a stack, and the first frame on it. False if it could
 * not start (cancelled first, or no stack): then it is finished. */
static bool task_start(cio__task *t)
{
    t->started = true;
    /* Cancelled before it ran: it never runs, as in asyncio. */
    int err = t->cancel_requests > 0 ? -ECANCELED : 0;
    if (!err)
        err = cio__stack_take(t->fut.loop, t->fiber.stack_size,
                              &t->fiber.stack_lo);
    if (err) {
        release_stack(t);
        finish(t, err);
        cio_future_unref(&t->fut); /* the loop's reference */
        return false;
    }
    cio__stack_watch_overflow(running_stack_info);
    cio__fiber_stack_fresh(t->fiber.stack_lo, t->fiber.stack_size);
    if (t->fut.loop->debug)
        cio__stack_paint(t->fiber.stack_lo, t->fiber.stack_size);
    if (t->fut.loop->trace)
        cio__trace_name_row(t->fut.loop->trace, t->id,
                            cio_task_get_name(&t->fut));
    cio__fiber_make(&t->fiber, task_entry, t);
    return true;
}

static void run_step(cio__task *t)
{
    cio__current = t;
    cio__fiber_switch(&scheduler, &t->fiber, 0);
    cio__current = NULL;
}

/* A step on a debug or traced loop: timed, recorded. */
static void run_step_observed(cio__task *t)
{
    cio_loop *loop = t->fut.loop;
    cio__trace *tr = loop->trace;
    double from = tr ? trace_resume(tr, t) : cio__trace_clock();
    run_step(t);
    if (loop->debug)
        warn_if_slow(t, cio__trace_clock() - from);
    /* Read again: the step may have started or stopped the trace. */
    if ((tr = loop->trace) != NULL)
        trace_pause(tr, t, from);
}

/* The wake handle's callback, on the loop's stack: one step of the task. */
static void task_step(void *arg)
{
    cio__task *t = arg;
    cio_loop *loop = t->fut.loop;
    if (cio__unlikely(!t->started) && !task_start(t))
        return;
    if (cio__unlikely(loop->debug || loop->trace)) {
        run_step_observed(t);
    } else {
        run_step(t);
        if (cio__unlikely(loop->trace)) /* the step started a trace */
            trace_pause(loop->trace, t, 0);
    }
    if (t->fut.state != CIO__F_PENDING) {
        release_stack(t);
        cio_future_unref(&t->fut);
    }
}

/* ------------------------------------------------------------ the API */

int cio_task_new(cio_loop *loop, cio_task_fn fn, void *arg,
                 const cio_task_options *opts, cio_task **out)
{
    if (out)
        *out = NULL;
    if (!loop)
        loop = cio__running_loop;
    int err = cio__loop_check(loop);
    if (err)
        return err;
    if (!fn)
        return -EINVAL;
    cio__task *t = cio__malloc(sizeof *t);
    if (!t)
        return -ENOMEM;
    memset(t, 0, sizeof *t);
    cio__future_init(&t->fut, loop, &task_ops);
    size_t size = cio__stack_round(opts && opts->stack_size ? opts->stack_size
                                                            : DEFAULT_STACK);
    err = cio__stack_reserve(loop, size); /* taken when it first runs */
    if (err)
        goto fail;
    t->fiber.stack_size = size;
    if (opts && opts->name && !(t->name = cio__strdup(opts->name))) {
        err = -ENOMEM;
        goto fail_stack;
    }
    t->fn = fn;
    t->arg = arg;
    t->id = ++loop->tasks.counter;
    t->created = cio_loop_time(loop);
    t->wait_fd = -1;
    cio__handle_init(&t->wake, loop, task_step, t);
    cio__list_init(&t->await.link);
    cio__list_push_back(&loop->tasks.all, &t->all);
    loop->tasks.n++;
    t->parked = true; /* so that the first wake starts it */
    cio__wake(t, 0);
    if (out)
        *out = cio_future_ref(&t->fut);
    return 0;
fail_stack:
    cio__stack_unreserve(loop, size);
fail:
    cio__list_unlink(&t->fut.live); /* a debug loop's list */
    cio__free(t);
    return err;
}

/* The task's future records the program's call site (debug reports). */
static int with_site(int err, cio_task **out, cio_task *t, const char *file,
                     int line)
{
    if (!err) {
        t->site_file = file;
        t->site_line = line;
    }
    if (out)
        *out = err ? NULL : t;
    else if (!err)
        cio_future_unref(t);
    return err;
}

int cio_task_new_at(cio_loop *loop, cio_task_fn fn, void *arg,
                    const cio_task_options *opts, cio_task **out,
                    const char *file, int line)
{
    cio_task *t;
    int err = cio_task_new(loop, fn, arg, opts, &t);
    return with_site(err, out, t, file, line);
}

int cio_create_task(cio_task_fn fn, void *arg, cio_task **out)
{
    if (!cio__running_loop) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    return cio_task_new(cio__running_loop, fn, arg, NULL, out);
}

int cio_create_task_at(cio_task_fn fn, void *arg, cio_task **out,
                       const char *file, int line)
{
    cio_task *t;
    int err = cio_create_task(fn, arg, &t);
    return with_site(err, out, t, file, line);
}

/* All but the memory and the name (debug: the quarantine keeps those). */
static void task_retire(cio_future *f)
{
    cio__task *t = as_task(f);
    release_stack(t);
    cio__free(t->scopes);
    t->scopes = NULL;
}

static void task_free(cio_future *f)
{
    cio__task *t = as_task(f);
    task_retire(f);
    cio__free(t->name);
    cio__free(t);
}

cio_task *cio_current_task(void)
{
    return cio__current ? &cio__current->fut : NULL;
}

int cio_loop_set_stack_pool_max(cio_loop *loop, size_t max)
{
    int err = cio__loop_check(loop);
    return err ? err : cio__stack_pool_set_max(loop, max);
}

int cio_all_tasks(cio_loop *loop, cio_task **out, size_t cap)
{
    if (!loop)
        loop = cio__running_loop;
    if (!loop)
        return -EINVAL;
    size_t i = 0;
    cio__list *all = &loop->tasks.all;
    for (cio__list *n = all->next; n != all; n = n->next) {
        if (i < cap && out)
            out[i] = &cio__container_of(n, cio__task, all)->fut;
        i++;
    }
    return (int)i;
}

const char *cio_task_get_name(const cio_task *task)
{
    cio__task *t = as_task(task);
    if (!t)
        return NULL;
    if (!t->name) { /* "Task-N", made on first use: spawning stays cheap */
        char buf[32];
        snprintf(buf, sizeof buf, "Task-%" PRIu64, t->id);
        t->name = cio__strdup(buf);
        if (!t->name)
            return "Task";
    }
    return t->name;
}

int cio_task_set_name(cio_task *task, const char *name)
{
    cio__task *t = as_task(task);
    if (!t || !name)
        return -EINVAL;
    char *copy = cio__strdup(name);
    if (!copy)
        return -ENOMEM;
    cio__free(t->name);
    t->name = copy;
    if (t->fut.loop->trace && t->started)
        cio__trace_name_row(t->fut.loop->trace, t->id, copy);
    return 0;
}

int cio_task_cancel(cio_task *task)
{
    cio__task *t = as_task(task);
    if (!t)
        return -EINVAL;
    if (t->fut.state != CIO__F_PENDING)
        return 0;
    if (!t->interrupting) /* else the request that went round a cycle */
        t->cancel_requests++;
    cio__interrupt(t);
    return 1;
}

int cio_task_cancelling(const cio_task *task)
{
    cio__task *t = as_task(task);
    return t ? t->cancel_requests : -EINVAL;
}

int cio_task_uncancel(cio_task *task)
{
    cio__task *t = as_task(task);
    if (!t)
        return -EINVAL;
    if (t->cancel_requests > 0)
        t->cancel_requests--;
    return t->cancel_requests;
}

int cio_task_set_value(void *value)
{
    if (!cio__current)
        return cio__no_task(__func__);
    cio__current->result_value = value;
    return 0;
}

/* ----------------------------------------------------------- awaiting */

/* Cancelling a task that awaits a future cancels the future (asyncio);
 * the task stays parked until the future completes, which wakes it. */
static void await_interrupt(cio__task *t, void *arg)
{
    (void)t;
    cio_future_cancel(arg);
}

/* The awaited future completed: wakes the task whose waiter it is. */
static void await_woken(cio__waiter *w)
{
    cio__wake(cio__container_of(w, cio__task, await), 0);
}

/* The checks of every await: 0 to go on, or the error to return. */
static int await_check(const cio__task *t, const cio_future *f, void **value)
{
    if (value)
        *value = NULL;
    if (!t)
        return cio__no_task("cio_await");
    if (!f || f->loop != t->fut.loop)
        return -EINVAL;
    if (f == &t->fut)
        return -EDEADLK;
    return cio__interrupted(t);
}

/* Parks t on pending f. The reference on f is t->awaiting's: given back
 * here, or by cio__tasks_close if the loop closes first. */
static int await_pending(cio__task *t, cio_future *f, void **value)
{
    t->await.wake = await_woken;
    t->awaiting = f;
    cio__waiter_add(f, &t->await);
    cio__task_waits(t, &await_future, f, -1);
    int r = cio__park_checked(await_interrupt, f);
    cio__list_unlink(&t->await.link);
    t->awaiting = NULL;
    if (r == 0)
        r = cio_future_result(f, value);
    cio_future_unref(f);
    return r;
}

int cio_await(cio_future *f, void **value)
{
    cio__task *t = cio__current;
    int r = await_check(t, f, value);
    if (r)
        return r;
    if (f->state == CIO__F_PENDING) /* f must outlive our look at it */
        return await_pending(t, cio_future_ref(f), value);
    return cio_future_result(f, value);
}

int cio__await_owned(cio_future *f, void **value)
{
    cio__task *t = cio__current;
    int r = await_check(t, f, value);
    if (!r && f->state == CIO__F_PENDING)
        return await_pending(t, f, value);
    if (!r)
        r = cio_future_result(f, value);
    cio_future_unref(f);
    return r;
}

/* ------------------------------------------------- outside a task
 * What every call that may wait returns when no task runs (from main(),
 * from a callback): CIO_ENOTASK, not -EINVAL, so that it never looks like
 * a bad argument; a debug loop running here also says which call. */
int cio__no_task(const char *call)
{
    cio_loop *loop = cio__running_loop;
    if (loop && loop->debug) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "%s() called outside a task: it may wait, and only a "
                 "task can",
                 call);
        cio__report(loop, msg, CIO_ENOTASK, NULL, NULL, NULL);
    }
    return CIO_ENOTASK;
}

/* ------------------------------------------------------------ sleeping */

static void sleep_done(void *arg) { cio__wake(arg, 0); }

int cio__task_timer_at(cio__task *t, double when, cio_callback cb)
{
    cio__handle_unschedule(&t->timer); /* a connect re-arms it */
    cio__handle_init(&t->timer, t->fut.loop, cb, t);
    return cio__handle_schedule_at(&t->timer, when);
}

int cio_sleep(double seconds)
{
    cio__task *t = cio__current;
    if (!t)
        return cio__no_task(__func__);
    if (isnan(seconds))
        return -EINVAL;
    int r = cio__interrupted(t);
    if (r)
        return r;
    cio_loop *loop = t->fut.loop;
    if (seconds <= 0) { /* yield: to the back of the ready queue, awake */
        cio__handle_schedule(&t->wake);
        cio__fiber_switch(&t->fiber, &scheduler, 0);
        return cio__interrupted(t);
    }
    r = cio__task_timer_at(t, cio_loop_time(loop) + seconds, sleep_done);
    if (r)
        return r;
    cio__task_waits(t, &sleeping, NULL, -1);
    r = cio__park_checked(NULL, NULL);
    cio__handle_unschedule(&t->timer);
    return r;
}

/* ----------------------------------------------------------- teardown */

static int running_stack_info(char **lo, size_t *size, char *name,
                              size_t cap)
{
    cio__task *t = cio__current;
    if (!t || !t->fiber.stack_lo)
        return 0;
    *lo = t->fiber.stack_lo;
    *size = t->fiber.stack_size;
    /* Called from a signal handler: no allocation, plain copying. */
    size_t i = 0;
    if (t->name) {
        for (; t->name[i] && i + 1 < cap; i++)
            name[i] = t->name[i];
    } else {
        char digits[24];
        int k = 0;
        uint64_t id = t->id;
        do
            digits[k++] = (char)('0' + id % 10);
        while ((id /= 10) && k < 24);
        for (const char *p = "Task-"; *p && i + 1 < cap; p++)
            name[i++] = *p;
        while (k && i + 1 < cap)
            name[i++] = digits[--k];
    }
    name[i] = 0;
    return 1;
}

static bool within(const void *p, const char *lo, size_t size)
{
    return (const char *)p >= lo && (const char *)p < lo + size;
}

static bool handle_into(const cio__handle *h, const char *lo, size_t size)
{
    return within(h, lo, size) || (h->embedded && h->drop &&
                                   within(h->arg, lo, size));
}

/* Debug: does the loop still hold a handle that lives on [lo, lo+size),
 * or one whose drop would be given a pointer into it? */
static bool loop_points_into(const cio_loop *loop, const char *lo,
                             size_t size)
{
    for (size_t i = 0; i < loop->heap_len; i++)
        if (handle_into(loop->heap[i], lo, size))
            return true;
    for (const cio__list *n = loop->ready.next; n != &loop->ready;
         n = n->next)
        if (handle_into(cio__container_of(n, cio__handle, link), lo, size))
            return true;
    return false;
}

/* Unlinks everything the loop holds of t, but what runs in other threads
 * on its frame (settle waits for that). */
static void unhook(cio__task *t)
{
    cio__list_unlink(&t->await.link);
    if (t->awaiting) /* the reference cio_await took */
        cio_future_unref(t->awaiting);
    t->awaiting = NULL;
    for (cio__cleanup *c = t->cleanups; c; c = c->next) /* innermost first */
        c->fn(c->arg);
    cio__handle_unschedule(&t->wake);
    cio__handle_unschedule(&t->timer);
    cio__handle_unschedule(&t->scope_timer); /* every open scope's */
    cio__scopes_truncate(t, 0);
    t->parked = false;
}

/* Waits for what t's cleanups could not stop, then checks the invariant:
 * after this, nothing points into t's stack. */
static void settle(cio_loop *loop, cio__task *t)
{
    for (cio__cleanup *c = t->cleanups; c; c = c->next)
        if (c->finish)
            c->finish(c->arg);
    t->cleanups = NULL;
    if (t->fiber.stack_lo && (loop->debug || cio__stack_poison_released))
        cio__assert(!loop_points_into(loop, t->fiber.stack_lo,
                                      t->fiber.stack_size));
}

/* The loop closes with tasks still pending: asyncio's "Task was destroyed
 * but it is pending!". They cannot run any more; each is reported,
 * unhooked, marked cancelled (its holders see it done) and its stack
 * reclaimed. Two passes: every task is unhooked before any waits for
 * work that runs on its frame. */
void cio__tasks_close(cio_loop *loop)
{
    cio__list doomed, *n;
    cio__list_init(&doomed);
    cio__list_splice(&doomed, &loop->tasks.all);
    for (n = doomed.next; n != &doomed; n = n->next) {
        cio__task *t = cio__container_of(n, cio__task, all);
        cio__report(loop, "Task was destroyed but it is pending!", 0, "task",
                    cio_task_get_name(&t->fut), t);
        unhook(t);
    }
    while ((n = cio__list_pop_front(&doomed))) {
        cio__task *t = cio__container_of(n, cio__task, all);
        cio__list_init(&t->all);
        loop->tasks.n--;
        settle(loop, t);
        /* Its waiters belong to tasks that are going too: tell none. */
        while ((n = cio__list_pop_front(&t->fut.waiters))) {
            cio__waiter *w = cio__container_of(n, cio__waiter, link);
            if (w->drop)
                w->drop(w);
        }
        t->fut.state = CIO__F_CANCELLED;
        t->fut.status = -ECANCELED;
        release_stack(t);
        cio_future_unref(&t->fut);
    }
}

/* How futures see a task (future.c knows no more of tasks than this). */
static const cio__future_ops task_ops = {
    "task", cio_task_get_name, cio_task_cancel, task_free, task_retire,
};
