/* Threads: concurrent futures, the thread-pool executor, run_in_executor,
 * to_thread and run_coroutine_threadsafe.
 *
 * Ownership across threads is the whole difficulty, so it is kept to two
 * rules: a cio_cfuture is shared (atomic references, a mutex), and loop
 * objects (futures, tasks) are touched only on the loop's thread. A worker
 * hands a result to the loop by posting it (call_soon_threadsafe's queue);
 * what is in flight is listed on the loop, so that closing the loop can
 * orphan it and nothing leaks whichever side finishes last.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double cio__executor_idle_timeout = 5.0; /* seconds; tests lower it */

/* ------------------------------------------------------ concurrent futures */

enum { CF_PENDING, CF_RUNNING, CF_DONE, CF_CANCELLED };

struct cio_cfuture {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    atomic_int refs;
    int state;                   /* CF_*, under lock */
    int status;
    /* Called once, outside the lock, by whoever completes it. */
    void (*on_done)(cio_cfuture *f, void *arg);
    void *on_done_arg;
    /* run_coroutine_threadsafe: the task, touched on the loop only */
    cio_loop *loop;
    cio_task *task;
    /* A traced loop's job: its worker notes when it ran, and which worker
     * it was, before completing it (so the loop reads them after). */
    bool timed;
    double ran_from, ran_to;
    unsigned worker;
};

static cio_cfuture *cfuture_new(int refs)
{
    cio_cfuture *f = cio__calloc(1, sizeof *f);
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->changed, NULL);
    atomic_init(&f->refs, refs);
    return f;
}

void cio_cfuture_unref(cio_cfuture *f)
{
    if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->changed);
    cio__free(f);
}

/* Moves f from `from` (a state or -1 for any unfinished) to state/status;
 * returns false if it was elsewhere. Runs on_done after unlocking. */
static bool cfuture_move(cio_cfuture *f, int from, int state, int status)
{
    pthread_mutex_lock(&f->lock);
    bool ok = from < 0 ? f->state < CF_DONE : f->state == from;
    void (*cb)(cio_cfuture *, void *) = NULL;
    if (ok) {
        f->state = state;
        f->status = status;
        if (state >= CF_DONE) {
            cb = f->on_done;
            f->on_done = NULL;
            pthread_cond_broadcast(&f->changed);
        }
    }
    pthread_mutex_unlock(&f->lock);
    if (cb)
        cb(f, f->on_done_arg);
    return ok;
}

int cio_cfuture_result(cio_cfuture *f, double timeout)
{
    if (!f || isnan(timeout))
        return -EINVAL;
    /* Past 1e9 s (31 years) is as good as none, and keeps time_t sane. */
    bool forever = timeout >= 1e9;
    struct timespec deadline;
    if (!forever) {
        clock_gettime(CLOCK_REALTIME, &deadline);
        double end = deadline.tv_sec + deadline.tv_nsec * 1e-9 +
                     (timeout > 0 ? timeout : 0);
        deadline.tv_sec = (time_t)end;
        deadline.tv_nsec = (long)((end - (double)deadline.tv_sec) * 1e9);
    }
    pthread_mutex_lock(&f->lock);
    if (f->state < CF_DONE && f->loop && f->loop == cio__running_loop) {
        /* Only this thread's loop can complete it, and it would be
         * blocked here. */
        pthread_mutex_unlock(&f->lock);
        return -EDEADLK;
    }
    int err = 0;
    while (f->state < CF_DONE && err != ETIMEDOUT)
        err = forever ? pthread_cond_wait(&f->changed, &f->lock)
                          : pthread_cond_timedwait(&f->changed, &f->lock,
                                                   &deadline);
    int r = f->state == CF_CANCELLED ? -ECANCELED
            : f->state == CF_DONE    ? f->status
                                     : -ETIMEDOUT;
    pthread_mutex_unlock(&f->lock);
    return r;
}

static void cancel_task_on_loop(void *arg)
{
    cio_cfuture *f = arg;
    if (f->task)
        cio_task_cancel(f->task);
    cio_cfuture_unref(f);
}

static void drop_cfuture_ref(void *arg) { cio_cfuture_unref(arg); }

int cio_cfuture_cancel(cio_cfuture *f)
{
    if (!f)
        return -EINVAL;
    if (!cfuture_move(f, f->loop ? -1 : CF_PENDING, CF_CANCELLED, -ECANCELED))
        return 0;
    if (f->loop) { /* a coroutine: its task is cancelled on its loop */
        atomic_fetch_add(&f->refs, 1);
        int err = cio__post_threadsafe(f->loop, cancel_task_on_loop,
                                       drop_cfuture_ref, f);
        if (err)
            cio_cfuture_unref(f);
    }
    return 1;
}

int cio_cfuture_done(cio_cfuture *f)
{
    if (!f)
        return 0;
    pthread_mutex_lock(&f->lock);
    int done = f->state >= CF_DONE;
    pthread_mutex_unlock(&f->lock);
    return done;
}

int cio_cfuture_cancelled(cio_cfuture *f)
{
    if (!f)
        return 0;
    pthread_mutex_lock(&f->lock);
    int c = f->state == CF_CANCELLED;
    pthread_mutex_unlock(&f->lock);
    return c;
}

/* ------------------------------------------------------------ executor */

typedef struct work {
    struct work *next;
    cio_work_fn fn;
    void *arg;
    cio_cfuture *fut; /* the work's reference */
} work;

struct cio_executor {
    pthread_mutex_t lock;
    pthread_cond_t has_work;     /* workers wait here */
    pthread_cond_t worker_gone;  /* shutdown(wait) waits here */
    work *head, **tail;
    int max_workers, nworkers, nidle;
    size_t nqueued;              /* work not yet taken by a worker */
    bool shutdown;
    bool abandoned;              /* its owner left: the last worker frees it */
    bool debug;                  /* made under a debug loop or $CIO_DEBUG */
    bool dead;                   /* debug: freed, kept in the quarantine */
    pthread_t *exited;           /* finished workers, to be joined */
    size_t nexited, exited_cap;
};

int cio_executor_new(cio_executor **out, int max_workers)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (max_workers <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        max_workers = (int)(cpus > 0 ? cpus : 1) + 4;
        if (max_workers > 32)
            max_workers = 32;
    }
    cio_executor *ex = cio__calloc(1, sizeof *ex);
    if (!ex)
        return -ENOMEM;
    ex->exited = cio__calloc((size_t)max_workers, sizeof *ex->exited);
    if (!ex->exited) {
        cio__free(ex);
        return -ENOMEM;
    }
    ex->exited_cap = (size_t)max_workers;
    ex->max_workers = max_workers;
    ex->tail = &ex->head;
    ex->debug = cio__debug_wanted();
    pthread_mutex_init(&ex->lock, NULL);
    pthread_cond_init(&ex->has_work, NULL);
    pthread_cond_init(&ex->worker_gone, NULL);
    *out = ex;
    return 0;
}

/* Joins the workers that finished. Call without the lock. */
static void join_exited(cio_executor *ex)
{
    pthread_t ids[64];
    for (;;) {
        pthread_mutex_lock(&ex->lock);
        size_t n = ex->nexited < 64 ? ex->nexited : 64;
        ex->nexited -= n;
        memcpy(ids, ex->exited + ex->nexited, n * sizeof *ids);
        pthread_mutex_unlock(&ex->lock);
        if (!n)
            return;
        for (size_t i = 0; i < n; i++)
            pthread_join(ids[i], NULL);
    }
}

/* The quarantine lets it go (its mark goes first). */
static void executor_release(void *p)
{
    cio_executor *ex = p;
    ex->dead = false;
    cio__free(ex);
}

static void executor_destroy(cio_executor *ex)
{
    pthread_mutex_destroy(&ex->lock);
    pthread_cond_destroy(&ex->has_work);
    pthread_cond_destroy(&ex->worker_gone);
    cio__free(ex->exited);
    ex->exited = NULL;
    if (!ex->debug) {
        cio__free(ex);
        return;
    }
    ex->dead = true; /* a second cio_executor_free sees it */
    cio__quarantine(NULL, ex, executor_release);
}

static bool deadline_passed(struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* Each worker thread's number in the process, for the trace's rows. */
static atomic_uint workers_started;
static _Thread_local unsigned worker_number;

static int run_work(work *w)
{
    if (!w->fut->timed)
        return w->fn(w->arg);
    if (!worker_number)
        worker_number = atomic_fetch_add(&workers_started, 1) + 1;
    double from = cio__trace_clock();
    int status = w->fn(w->arg);
    w->fut->ran_from = from;
    w->fut->ran_to = cio__trace_clock();
    w->fut->worker = worker_number;
    return status;
}

static void *worker_main(void *arg)
{
    cio_executor *ex = arg;
    pthread_mutex_lock(&ex->lock);
    for (;;) {
        if (!ex->head && !ex->shutdown) { /* idle: wait, or retire */
            struct timespec deadline;
            clock_gettime(CLOCK_REALTIME, &deadline);
            deadline.tv_sec += (time_t)cio__executor_idle_timeout;
            deadline.tv_nsec += (long)((cio__executor_idle_timeout -
                                        (double)(time_t)cio__executor_idle_timeout) * 1e9);
            if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
            }
            ex->nidle++;
            while (!ex->head && !ex->shutdown && !deadline_passed(&deadline))
                pthread_cond_timedwait(&ex->has_work, &ex->lock, &deadline);
            ex->nidle--;
        }
        work *w = ex->head;
        if (!w)
            break; /* shut down, or idle for too long */
        if (!(ex->head = w->next))
            ex->tail = &ex->head;
        ex->nqueued--;
        pthread_mutex_unlock(&ex->lock);
        if (cfuture_move(w->fut, CF_PENDING, CF_RUNNING, 0))
            cfuture_move(w->fut, CF_RUNNING, CF_DONE, run_work(w));
        cio_cfuture_unref(w->fut);
        cio__free(w);
        pthread_mutex_lock(&ex->lock);
    }
    ex->nworkers--;
    if (ex->abandoned) { /* nobody will join us: the last one cleans up */
        bool last = ex->nworkers == 0;
        pthread_detach(pthread_self());
        pthread_mutex_unlock(&ex->lock);
        if (last)
            executor_destroy(ex);
        return NULL;
    }
    ex->exited[ex->nexited++] = pthread_self();
    pthread_cond_broadcast(&ex->worker_gone);
    pthread_mutex_unlock(&ex->lock);
    return NULL;
}

/* Queues w; starts a worker if none is idle and the pool has room. */
static int enqueue(cio_executor *ex, work *w)
{
    pthread_mutex_lock(&ex->lock);
    if (ex->shutdown) {
        pthread_mutex_unlock(&ex->lock);
        return -ESHUTDOWN;
    }
    int err = 0;
    /* An idle worker takes one item when it wakes: more queued items than
     * idle workers need more workers (a burst must not wait in line). */
    if (ex->nqueued >= (size_t)ex->nidle && ex->nworkers < ex->max_workers) {
        /* Join retired workers first, so that nworkers + nexited stays
         * within `exited` (max_workers). They no longer need the lock:
         * joining under it cannot deadlock. */
        while (ex->nexited)
            pthread_join(ex->exited[--ex->nexited], NULL);
        pthread_t id;
        err = cio__sys_thread_create(&id, worker_main, ex);
        if (err == 0)
            ex->nworkers++;
        else if (ex->nworkers > 0)
            err = 0; /* the workers there are will get to it */
        else
            err = -EAGAIN;
    }
    if (!err) {
        w->next = NULL;
        *ex->tail = w;
        ex->tail = &w->next;
        ex->nqueued++;
        pthread_cond_signal(&ex->has_work);
    }
    pthread_mutex_unlock(&ex->lock);
    return err;
}

/* Submits fn(arg); the work and the caller (if out) share fut. */
/* timed: for a traced loop (cio_cfuture.timed). */
static int submit(cio_executor *ex, cio_work_fn fn, void *arg,
                  cio_cfuture **out, void (*on_done)(cio_cfuture *, void *),
                  void *on_done_arg, bool timed)
{
    join_exited(ex);
    work *w = cio__malloc(sizeof *w);
    cio_cfuture *f = cfuture_new(out ? 2 : 1);
    if (!w || !f) {
        cio__free(w);
        cio_cfuture_unref(f);
        if (f && out)
            cio_cfuture_unref(f);
        return -ENOMEM;
    }
    f->on_done = on_done;
    f->on_done_arg = on_done_arg;
    f->timed = timed;
    *w = (work){NULL, fn, arg, f};
    if (out)
        *out = f;
    int err = enqueue(ex, w);
    if (err) {
        cio__free(w);
        cio_cfuture_unref(f);
        if (out) {
            cio_cfuture_unref(f);
            *out = NULL;
        }
    }
    return err;
}

int cio_executor_submit(cio_executor *ex, cio_work_fn fn, void *arg,
                        cio_cfuture **out)
{
    if (out)
        *out = NULL;
    if (!ex || !fn)
        return -EINVAL;
    return submit(ex, fn, arg, out, NULL, NULL, false);
}

int cio_executor_shutdown(cio_executor *ex, int wait, int cancel_futures)
{
    if (!ex)
        return -EINVAL;
    work *cancelled = NULL;
    pthread_mutex_lock(&ex->lock);
    ex->shutdown = true;
    if (cancel_futures) {
        cancelled = ex->head;
        ex->head = NULL;
        ex->tail = &ex->head;
        ex->nqueued = 0;
    }
    pthread_cond_broadcast(&ex->has_work);
    pthread_mutex_unlock(&ex->lock);
    while (cancelled) {
        work *w = cancelled;
        cancelled = w->next;
        cfuture_move(w->fut, CF_PENDING, CF_CANCELLED, -ECANCELED);
        cio_cfuture_unref(w->fut);
        cio__free(w);
    }
    if (wait) {
        pthread_mutex_lock(&ex->lock);
        while (ex->nworkers > 0)
            pthread_cond_wait(&ex->worker_gone, &ex->lock);
        pthread_mutex_unlock(&ex->lock);
    }
    join_exited(ex);
    return 0;
}

void cio_executor_free(cio_executor *ex)
{
    if (!ex)
        return;
    if (ex->dead) { /* only ever set in debug mode */
        cio__misuse(NULL, "cio_executor_free of an executor already freed",
                    "executor", NULL, ex);
        return;
    }
    cio_executor_shutdown(ex, 1, 0);
    executor_destroy(ex);
}

/* Shuts down without waiting (asyncio's shutdown(wait=False)): queued work
 * still runs, and the last worker to finish frees the executor. */
static void executor_abandon(cio_executor *ex)
{
    cio_executor_shutdown(ex, 0, 0);
    pthread_mutex_lock(&ex->lock);
    for (size_t i = 0; i < ex->nexited; i++)
        pthread_detach(ex->exited[i]);
    ex->nexited = 0;
    bool idle = ex->nworkers == 0;
    ex->abandoned = !idle;
    pthread_mutex_unlock(&ex->lock);
    if (idle)
        executor_destroy(ex);
}

/* Waits up to timeout seconds for the workers; returns -ETIMEDOUT if some
 * are still busy. */
static int executor_join(cio_executor *ex, double timeout)
{
    cio_executor_shutdown(ex, 0, 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)timeout;
    pthread_mutex_lock(&ex->lock);
    while (ex->nworkers > 0 && !deadline_passed(&deadline))
        pthread_cond_timedwait(&ex->worker_gone, &ex->lock, &deadline);
    int busy = ex->nworkers;
    pthread_mutex_unlock(&ex->lock);
    join_exited(ex);
    return busy ? -ETIMEDOUT : 0;
}

int cio_loop_set_default_executor(cio_loop *loop, cio_executor *ex)
{
    int err = cio__loop_check(loop);
    if (err)
        return err;
    if (!ex)
        return -EINVAL;
    if (loop->default_executor != ex)
        cio_executor_free(loop->default_executor);
    loop->default_executor = ex;
    return 0;
}

/* Loop close: as asyncio's, the default executor is shut down without
 * waiting; work still in flight is orphaned by the loop. */
void cio__executor_loop_close(cio_loop *loop)
{
    if (loop->default_executor)
        executor_abandon(loop->default_executor);
    loop->default_executor = NULL;
}

/* cio_run's shutdown_default_executor: waits (at most timeout seconds) for
 * the default executor's threads, so their results are delivered first. */
void cio__executor_shutdown_default(cio_loop *loop, double timeout)
{
    if (!loop->default_executor)
        return;
    if (executor_join(loop->default_executor, timeout) == 0) {
        executor_destroy(loop->default_executor);
        loop->default_executor = NULL;
        return;
    }
    cio__report(loop, "the default executor did not finish joining its "
                      "threads within the timeout", -ETIMEDOUT, "executor",
                NULL, loop->default_executor);
}

/* ------------------------------------------------------ run_in_executor */

typedef struct bridge {
    cio__bridge b;           /* first: listed on the loop */
    cio_future *fut;         /* the loop's future (a reference) */
    cio_cfuture *cf;         /* the work's future (a reference) */
} bridge;

static void bridge_unref(bridge *br)
{
    if (atomic_fetch_sub(&br->b.refs, 1) != 1)
        return;
    cio_cfuture_unref(br->cf);
    cio__free(br);
}

/* On the loop: the result arrived (the bridge's deliver handle ran). A
 * cancelled future drops it. */
static void bridge_deliver(void *arg)
{
    bridge *br = arg;
    cio_future *f = br->fut;
    if (br->cf->timed && f->loop->trace && br->cf->worker)
        cio__trace_slice(f->loop->trace, CIO__TRACE_WORKER + br->cf->worker,
                         "executor job", br->cf->ran_from,
                         br->cf->ran_to);
    if (f->state == CIO__F_PENDING) {
        int status = br->cf->status;
        if (br->cf->state == CF_CANCELLED || status == -ECANCELED)
            cio_future_cancel(f);
        else if (status < 0)
            cio_future_set_error(f, status);
        else
            cio__future_complete(f, CIO__F_DONE, status, NULL);
    }
    cio_future_unref(f);
    bridge_unref(br); /* the worker's, carried to the loop */
    bridge_unref(br); /* the loop's */
}

/* On the loop: it closed with the result in but not delivered. */
static void bridge_drop(void *arg)
{
    bridge *br = arg;
    cio_future_unref(br->fut);
    bridge_unref(br);
    bridge_unref(br);
}

/* On the loop: it closed while the work was in flight. */
static void bridge_orphaned(cio__bridge *b)
{
    bridge *br = (bridge *)b;
    cio_future_unref(br->fut);
    bridge_unref(br); /* the worker frees it if it finishes later */
}

/* In the worker (or wherever the cfuture completed): post the result. */
static void bridge_done(cio_cfuture *cf, void *arg)
{
    (void)cf;
    bridge *br = arg;
    /* Landed, the worker's reference goes to the loop with it; orphaned,
     * the loop may be gone, and the worker just drops its own. */
    if (!cio__bridge_land(&br->b))
        bridge_unref(br);
}

/* On the loop: the future was cancelled; work not started need not run. */
static void cancel_work(cio_future *f, void *arg)
{
    if (f->state == CIO__F_CANCELLED)
        cio_cfuture_cancel(arg);
}

static void release_cfuture(void *arg) { cio_cfuture_unref(arg); }

/* The work is on its way: cancelling the loop's future cancels it, and
 * *cf (if cf is not NULL) gets a reference on its cfuture. */
static void bridge_submitted(bridge *br, cio_cfuture **cf)
{
    atomic_fetch_add(&br->cf->refs, 1);
    if (cio__future_add_callback(br->fut, cancel_work, br->cf,
                                 release_cfuture))
        cio_cfuture_unref(br->cf); /* cancelling then only drops the
                                    * result: still correct */
    if (cf) {
        atomic_fetch_add(&br->cf->refs, 1);
        *cf = br->cf;
    }
}

/* cio_run_in_executor; *cf (if cf is not NULL) gets a reference on the
 * work's cfuture. */
static int run_bridged(cio_loop *loop, cio_executor *ex, cio_work_fn fn,
                       void *arg, cio_future **out, cio_cfuture **cf)
{
    if (out)
        *out = NULL;
    if (!loop)
        loop = cio__running_loop;
    int err = cio__loop_check(loop);
    if (err)
        return err;
    if (!fn || !out)
        return -EINVAL;
    if (!ex && !loop->default_executor) {
        err = cio_executor_new(&loop->default_executor, 0);
        if (err)
            return err;
    }
    if (!ex)
        ex = loop->default_executor;
    bridge *br = cio__calloc(1, sizeof *br);
    if (!br)
        return -ENOMEM;
    err = cio_future_new(loop, &br->fut);
    if (err) {
        cio__free(br);
        return err;
    }
    br->fut->label = "executor job";
    atomic_init(&br->b.refs, 2);
    /* Open before the work can finish, so bridge_done finds it listed. */
    cio__bridge_open(loop, &br->b, bridge_deliver, bridge_drop,
                     bridge_orphaned, br);
    err = submit(ex, fn, arg, &br->cf, bridge_done, br, loop->trace != NULL);
    if (err == 0) {
        bridge_submitted(br, cf);
        *out = cio_future_ref(br->fut);
        return 0;
    }
    cio__bridge_unopen(&br->b);
    cio_future_unref(br->fut);
    cio__free(br);
    return err;
}

int cio_run_in_executor(cio_loop *loop, cio_executor *ex, cio_work_fn fn,
                        void *arg, cio_future **out)
{
    return run_bridged(loop, ex, fn, arg, out, NULL);
}

/* The loop closes while a task waits in to_thread: the work may use the
 * task's stack (its arg often points into it), which goes back to the
 * pool and is unmapped with the loop. Work not started never runs (the
 * cleanup); work running is waited for (its finish), so that it never
 * outlives the stack it uses. */
static void work_cancel(void *cf) { (void)cio_cfuture_cancel(cf); }

static void work_finish(void *cf)
{
    (void)cio_cfuture_result(cf, CIO_NO_TIMEOUT);
    cio_cfuture_unref(cf);
}

int cio_to_thread(cio_work_fn fn, void *arg)
{
    cio__task *t = cio__current;
    if (!t)
        return cio__no_task(__func__);
    if (!fn)
        return -EINVAL;
    cio_future *f;
    cio_cfuture *cf;
    int err = run_bridged(t->fut.loop, NULL, fn, arg, &f, &cf);
    if (err)
        return err;
    cio__cleanup c;
    cio__cleanup_push(t, &c, work_cancel, cf);
    c.finish = work_finish;
    err = cio__await_owned(f, NULL); /* f's reference goes with the wait */
    cio__cleanup_pop(t, &c);
    cio_cfuture_unref(cf);
    return err;
}

/* ----------------------------------------------- run_coroutine_threadsafe */

typedef struct coro_start {
    cio_task_fn fn;
    void *arg;
    cio_cfuture *cf; /* a reference */
} coro_start;

static void coro_finished(cio_future *task, void *arg)
{
    cio_cfuture *cf = arg;
    int status = cio_future_result(task, NULL);
    cfuture_move(cf, -1, status == -ECANCELED ? CF_CANCELLED : CF_DONE, status);
    cf->task = NULL;
    cio_future_unref(task);
}

/* Releases coro_finished's reference; if the loop closed before the task
 * finished, the callback never ran: its waiters learn it was cancelled. */
static void coro_release(void *arg)
{
    cio_cfuture *cf = arg;
    cfuture_move(cf, -1, CF_CANCELLED, -ECANCELED);
    if (cf->task) { /* the reference coro_finished would have dropped */
        cio_future_unref(cf->task);
        cf->task = NULL;
    }
    cio_cfuture_unref(cf);
}

static void coro_begin(void *arg)
{
    coro_start *cs = arg;
    cio_cfuture *cf = cs->cf;
    if (!cio_cfuture_done(cf)) { /* not cancelled before it began */
        cio_task *t;
        int err = cio_task_new(cf->loop, cs->fn, cs->arg, NULL, &t);
        if (!err) {
            err = cio__future_add_callback(t, coro_finished, cf,
                                           coro_release);
            if (!err) {
                cf->task = t;
                cio__free(cs);
                return; /* coro_finished drops the task and cf */
            }
            cio_task_cancel(t);
            cio_future_unref(t);
        }
        cfuture_move(cf, -1, CF_DONE, err);
    }
    cio_cfuture_unref(cf);
    cio__free(cs);
}

static void coro_drop(void *arg)
{
    coro_start *cs = arg;
    cfuture_move(cs->cf, -1, CF_CANCELLED, -ECANCELED);
    cio_cfuture_unref(cs->cf);
    cio__free(cs);
}

int cio_run_coroutine_threadsafe(cio_loop *loop, cio_task_fn fn, void *arg,
                                 cio_cfuture **out)
{
    if (out)
        *out = NULL;
    if (!loop || !fn || !out)
        return -EINVAL;
    coro_start *cs = cio__malloc(sizeof *cs);
    cio_cfuture *cf = cs ? cfuture_new(2) : NULL;
    if (!cf) {
        cio__free(cs);
        return -ENOMEM;
    }
    cf->loop = loop;
    *cs = (coro_start){fn, arg, cf};
    int err = cio__post_threadsafe(loop, coro_begin, coro_drop, cs);
    if (err) {
        cio__free(cs);
        cio_cfuture_unref(cf);
        cio_cfuture_unref(cf);
        return err;
    }
    *out = cf;
    return 0;
}
