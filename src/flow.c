/* The flow of many tasks: asyncio's high-level API. Everything here is
 * built from the task kernel (park, wake, interrupt) and one helper that
 * watches many futures at once (`multi`). */
#define _GNU_SOURCE
#include "internal.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------- timeout scopes
 * A scope's deadline is kept by its task: a record per open scope (the
 * task's memory, innermost last) and one timer, the task's own, due at
 * the earliest deadline among them. When it fires the records due are
 * marked expired and the task interrupted, so its suspension points
 * return -ETIMEDOUT until the scope ends (level-triggered, as
 * cancellation).
 *
 * The user's cio_timeout_scope only names its record (task, id, depth),
 * and only the user's own calls read or write it. So a scope left open by
 * an early return corrupts nothing: its record stays until the task parks
 * below that frame, an enclosing scope ends, or the task returns (each
 * drops it; debug loops report it). */
typedef struct cio__scope {
    cio__task *task;     /* NULL: never opened */
    uint64_t id;         /* its record's */
    size_t depth;        /* its record's index in task->scopes */
    double when;         /* once ended: its last deadline */
    bool expired;        /* once ended: whether it expired */
    bool ended;
} cio__scope;
_Static_assert(sizeof(cio__scope) <= sizeof(cio_timeout_scope),
               "cio_timeout_scope is too small for the real scope");

/* The record s names, or NULL (never opened, ended, or dropped). */
static cio__scope_rec *record(const cio__scope *s)
{
    if (!s || !s->task || s->ended || s->depth >= s->task->nscopes)
        return NULL;
    cio__scope_rec *r = &s->task->scopes[s->depth];
    return r->id == s->id ? r : NULL;
}

/* The earliest deadline among t's open scopes not yet expired. */
static double scopes_next(const cio__task *t)
{
    double when = INFINITY;
    for (size_t i = 0; i < t->nscopes; i++)
        if (!t->scopes[i].expired && t->scopes[i].when < when)
            when = t->scopes[i].when;
    return when;
}

static void scopes_fire(void *arg);

/* Re-arms t's scope timer after its scopes changed. A timer already due
 * at that deadline keeps its place among equal deadlines. A deadline
 * already passed fires from the ready queue, as asyncio's reschedule
 * call_soon()s it: before whatever the task schedules next (its own
 * wake-up from a sleep(0)), not behind the timers due meanwhile. */
static int scopes_arm(cio__task *t)
{
    double when = scopes_next(t);
    cio__handle *h = &t->scope_timer;
    if (when == INFINITY) {
        cio__handle_unschedule(h);
        return 0;
    }
    if (!h->cb)
        cio__handle_init(h, t->fut.loop, scopes_fire, t);
    if (when <= cio_loop_time(t->fut.loop)) {
        if (h->state != CIO__H_READY) {
            cio__handle_unschedule(h);
            cio__handle_schedule(h);
        }
        return 0;
    }
    if (h->state == CIO__H_TIMER && h->when == when)
        return 0;
    return cio__handle_schedule_at(h, when);
}

/* Marks t's open scopes due by `now` expired; returns how many. */
static int expire_due(cio__task *t, double now)
{
    int n = 0;
    for (size_t i = 0; i < t->nscopes; i++) {
        cio__scope_rec *r = &t->scopes[i];
        if (!r->expired && r->when != INFINITY && r->when <= now) {
            r->expired = true;
            t->expired_scopes++;
            n++;
        }
    }
    return n;
}

static void scopes_fire(void *arg)
{
    cio__task *t = arg;
    int fired = expire_due(t, cio_loop_time(t->fut.loop));
    /* The heap may have grown to its capacity meanwhile and fail to grow:
     * a deadline that cannot be kept is reported as passed, not lost. */
    if (scopes_arm(t))
        fired += expire_due(t, INFINITY);
    if (fired)
        cio__interrupt(t);
}

/* Opens a scope for the task running; fp: the public call's frame. */
static int open_scope(cio_timeout_scope *scope, double when, const void *fp)
{
    cio__task *t = cio__current;
    if (!t)
        return cio__no_task("cio_timeout_at");
    if (!scope || isnan(when))
        return -EINVAL;
    cio__scope *s = (cio__scope *)scope;
    cio__scopes_drop_dead(t, fp, s); /* scopes of frames already returned */
    memset(s, 0, sizeof *s);
    cio__scope_rec *recs = cio__grow(t->scopes, &t->scopes_cap,
                                     t->nscopes + 1, sizeof *recs, 4);
    if (!recs)
        return -ENOMEM;
    t->scopes = recs;
    *s = (cio__scope){t, ++t->scope_ids, t->nscopes, 0, false, false};
    recs[t->nscopes++] = (cio__scope_rec){when, s->id, s, false};
    int err = scopes_arm(t);
    if (err) { /* not armed: not open either */
        t->nscopes--;
        s->task = NULL;
    }
    return err;
}

/* The frame of the public call, just below the user's: whatever lies
 * below it on the task's stack belongs to functions that returned. */
#define CALLER_FRAME() __builtin_frame_address(0)

int cio_timeout_at(cio_timeout_scope *scope, double when)
{
    return open_scope(scope, when, CALLER_FRAME());
}

int cio_timeout(cio_timeout_scope *scope, double delay)
{
    if (!cio__current)
        return cio__no_task(__func__);
    if (!scope || isnan(delay))
        return -EINVAL;
    /* Any delay <= 0 is a deadline already passed; INFINITY stays none. */
    double when = cio_loop_time(cio__current->fut.loop) + delay;
    return open_scope(scope, when, CALLER_FRAME());
}

int cio_timeout_reschedule(cio_timeout_scope *scope, double when)
{
    cio__scope_rec *r = record((cio__scope *)scope);
    if (!r || r->expired || isnan(when))
        return -EINVAL;
    double before = r->when;
    r->when = when;
    int err = scopes_arm(((cio__scope *)scope)->task);
    if (err)
        r->when = before; /* as before: the timer was not in the heap */
    return err;
}

double cio_timeout_when(const cio_timeout_scope *scope)
{
    const cio__scope *s = (const cio__scope *)scope;
    const cio__scope_rec *r = record(s);
    return r ? r->when : s && s->task && s->ended ? s->when : NAN;
}

int cio_timeout_expired(const cio_timeout_scope *scope)
{
    const cio__scope *s = (const cio__scope *)scope;
    const cio__scope_rec *r = record(s);
    return r ? r->expired : s && s->ended && s->expired;
}

static int end_scope(cio_timeout_scope *scope, const void *fp)
{
    cio__scope *s = (cio__scope *)scope;
    if (!s || !s->task || s->task != cio__current)
        return -EINVAL;
    cio__task *t = s->task;
    cio__scopes_drop_dead(t, fp, NULL); /* inner ones whose frames are gone */
    cio__scope_rec *r = record(s);
    if (!r || s->depth + 1 != t->nscopes)
        return -EINVAL; /* not the innermost open scope of this task */
    s->when = r->when;
    s->expired = r->expired;
    s->ended = true;
    cio__scopes_truncate(t, s->depth);
    /* Cannot fail: the timer was in the heap (there is room for it), or
     * no deadline is left. */
    (void)scopes_arm(t);
    return s->expired ? -ETIMEDOUT : 0;
}

int cio_timeout_end(cio_timeout_scope *scope)
{
    return end_scope(scope, CALLER_FRAME());
}

void cio_timeout_leave(cio_timeout_scope *scope)
{
    cio__scope *s = (cio__scope *)scope;
    if (!record(s) || s->task != cio__current)
        return; /* never opened, already ended, or dropped */
    /* Anything opened inside it and left open goes with it. */
    cio__scopes_truncate(s->task, s->depth + 1);
    (void)end_scope(scope, CALLER_FRAME());
}

/* ------------------------------------------------------- many futures
 * `multi` watches n futures for one parked task: a waiter per future,
 * scheduled when that future completes, counts it and wakes the task when
 * the condition holds. Completion order is kept for as_completed. */
typedef struct multi multi;
typedef struct node {
    cio__waiter w;
    multi *m;
    size_t index;
} node;

enum { MULTI_INLINE = 4 };

struct multi {
    cio__task *task;       /* parked, or NULL while it runs */
    cio_future *const *futs;
    size_t n, ndone;
    node *nodes;
    size_t *order;         /* indices in completion order */
    bool first_done;       /* wake on the first completion */
    bool on_error;         /* wake on the first error (cancel counts) */
    bool on_exception;     /* wake on the first error (cancel does not) */
    bool need_all;         /* interrupted: wait for every one */
    bool failed;           /* an error or exception arrived */
    bool timed_out;
    cio__handle timer;
    /* Room for a few futures without allocating: a small gather cannot
     * fail for want of memory (communicate relies on it). */
    node inline_nodes[MULTI_INLINE];
    size_t inline_order[MULTI_INLINE];
};

static bool multi_ready(const multi *m)
{
    if (m->ndone == m->n)
        return true;
    if (m->need_all)
        return false;
    return m->timed_out || (m->first_done && m->ndone > 0) || m->failed;
}

static void multi_count(multi *m, size_t i)
{
    cio_future *f = m->futs[i];
    m->order[m->ndone++] = i;
    if (f->state == CIO__F_CANCELLED ? m->on_error
                                     : f->status < 0 &&
                                           (m->on_error || m->on_exception))
        m->failed = true;
}

static void node_fired(void *arg)
{
    node *nd = arg;
    multi *m = nd->m;
    multi_count(m, nd->index);
    if (m->task && multi_ready(m))
        cio__wake(m->task, 0);
}

static void multi_timeout(void *arg)
{
    multi *m = arg;
    m->timed_out = true;
    if (m->task && multi_ready(m))
        cio__wake(m->task, 0);
}

/* Validates the futures and watches the pending ones. */
static int multi_start(multi *m, cio__task *t, cio_future *const *futs,
                       size_t n, double timeout)
{
    memset(m, 0, sizeof *m);
    if (!futs || n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!futs[i] || futs[i]->loop != t->fut.loop || futs[i] == &t->fut)
            return futs[i] == &t->fut ? -EDEADLK : -EINVAL;
    m->futs = futs;
    m->n = n;
    if (n <= MULTI_INLINE) {
        m->nodes = m->inline_nodes;
        m->order = m->inline_order;
    } else {
        m->nodes = cio__calloc(n, sizeof *m->nodes);
        m->order = cio__calloc(n, sizeof *m->order);
        if (!m->nodes || !m->order) {
            cio__free(m->nodes);
            cio__free(m->order);
            return -ENOMEM;
        }
    }
    cio__handle_init(&m->timer, t->fut.loop, multi_timeout, m);
    if (timeout != CIO_NO_TIMEOUT) { /* <= 0: due at once */
        int err = cio__handle_schedule_at(
            &m->timer, cio_loop_time(t->fut.loop) + timeout);
        if (err) {
            if (m->nodes != m->inline_nodes) {
                cio__free(m->nodes);
                cio__free(m->order);
            }
            return err;
        }
    }
    for (size_t i = 0; i < n; i++) {
        node *nd = &m->nodes[i];
        nd->m = m;
        nd->index = i;
        cio__list_init(&nd->w.link);
        cio__handle_init(&nd->w.h, t->fut.loop, node_fired, nd);
        if (futs[i]->state != CIO__F_PENDING)
            multi_count(m, i); /* done already: counted in argument order */
        else
            cio__waiter_add(futs[i], &nd->w);
    }
    return 0;
}

static void multi_end(multi *m);
static void multi_teardown(void *arg) { multi_end(arg); }

/* The pending futures of a multi-future wait (the task dump). */
static size_t multi_pending(const void *on, cio_future **out, size_t cap)
{
    const multi *m = on;
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->futs[i]->state == CIO__F_PENDING) {
            if (k < cap)
                out[k] = m->futs[i];
            k++;
        }
    return k;
}
static const cio__wait_kind multi_wait_kind = {"gather or wait",
                                               multi_pending};
static const cio__wait_kind as_completed_kind = {"as_completed",
                                                 multi_pending};

/* Parks until the condition holds; on interruption calls on_interrupt
 * (which may set need_all and keep waiting). Returns the interruption. */
static int multi_wait(multi *m, void (*on_interrupt)(cio__task *, void *))
{
    cio__task *t = cio__current;
    int r = cio__interrupted(t);
    if (r)
        return r;
    while (!multi_ready(m)) {
        m->task = t;
        cio__cleanup c;
        cio__cleanup_push(t, &c, multi_teardown, m);
        cio__task_waits(t, &multi_wait_kind, m, -1);
        cio__park(on_interrupt, m);
        cio__cleanup_pop(t, &c);
        m->task = NULL;
        r = cio__interrupted(t);
        if (r && !m->need_all)
            return r;
    }
    return r;
}

static void multi_end(multi *m)
{
    for (size_t i = 0; i < m->n; i++)
        cio__waiter_detach(&m->nodes[i].w);
    cio__handle_unschedule(&m->timer);
    if (m->nodes != m->inline_nodes) {
        cio__free(m->nodes);
        cio__free(m->order);
    }
}

/* gather, wait_for's cousins: cancel every pending future, then keep
 * waiting until all of them finished. */
static void cancel_all_interrupt(cio__task *t, void *arg)
{
    multi *m = arg;
    m->need_all = true;
    for (size_t i = 0; i < m->n; i++)
        cio_future_cancel(m->futs[i]);
    if (multi_ready(m))
        cio__wake(t, 0);
}

static void wake_interrupt(cio__task *t, void *arg)
{
    (void)arg;
    cio__wake(t, 0);
}

int cio_gather(cio_future *const *futs, size_t n, int return_exceptions,
               cio_result *results)
{
    cio__task *t = cio__current;
    if (!t)
        return cio__no_task(__func__);
    if (n == 0) /* asyncio.gather() of nothing: done at once */
        return 0;
    multi m;
    int r = multi_start(&m, t, futs, n, CIO_NO_TIMEOUT);
    if (r)
        return r;
    m.on_error = !return_exceptions;
    for (size_t i = 0; i < n && m.on_error; i++) /* errors before we came */
        if (futs[i]->state != CIO__F_PENDING && futs[i]->status < 0)
            m.failed = true;
    r = multi_wait(&m, cancel_all_interrupt);
    int first_error = 0;
    for (size_t k = 0; k < m.ndone; k++) { /* in completion order */
        int status = cio_future_result(futs[m.order[k]], NULL);
        if (status < 0 && !first_error)
            first_error = status;
    }
    if (results)
        for (size_t i = 0; i < n; i++) {
            results[i].value = NULL;
            results[i].status = cio_future_result(futs[i], &results[i].value);
        }
    multi_end(&m);
    if (r)
        return r;
    return return_exceptions ? 0 : first_error;
}

int cio_wait(cio_future *const *futs, size_t n, cio_wait_mode mode,
             double timeout, cio_future **done, size_t *ndone,
             cio_future **pending, size_t *npending)
{
    cio__task *t = cio__current;
    if (!t)
        return cio__no_task(__func__);
    if (mode > CIO_FIRST_EXCEPTION || isnan(timeout))
        return -EINVAL;
    multi m;
    int r = multi_start(&m, t, futs, n, timeout);
    if (r)
        return r;
    m.first_done = mode == CIO_FIRST_COMPLETED;
    m.on_exception = mode == CIO_FIRST_EXCEPTION;
    for (size_t i = 0; i < n && m.on_exception; i++)
        if (futs[i]->state == CIO__F_DONE && futs[i]->status < 0)
            m.failed = true;
    r = multi_wait(&m, wake_interrupt);
    size_t nd = 0, np = 0;
    for (size_t i = 0; i < n; i++) {
        if (futs[i]->state != CIO__F_PENDING) {
            if (done)
                done[nd] = futs[i];
            nd++;
        } else {
            if (pending)
                pending[np] = futs[i];
            np++;
        }
    }
    if (ndone)
        *ndone = nd;
    if (npending)
        *npending = np;
    multi_end(&m);
    return r;
}

/* wait_for with a timeout already expired, as asyncio's: a future that
 * is done gives its outcome; one that is not is cancelled at once (a task
 * never gets to start) and waited for, and its cancellation becomes
 * -ETIMEDOUT (a result it still produced is returned). */
static int wait_for_expired(cio_future *fut, void **value)
{
    if (cio_future_done(fut))
        return cio_future_result(fut, value);
    cio_future_cancel(fut);
    int r = cio_await(fut, value);
    if (r == -ECANCELED && !cio__current->cancel_requests)
        r = -ETIMEDOUT;
    return r;
}

int cio_wait_for(cio_future *fut, double timeout, void **value)
{
    if (value)
        *value = NULL;
    if (!cio__current)
        return cio__no_task(__func__);
    if (!fut || isnan(timeout))
        return -EINVAL;
    if (timeout == CIO_NO_TIMEOUT)
        return cio_await(fut, value);
    if (timeout <= 0)
        return wait_for_expired(fut, value);
    cio__task *t = cio__current;
    cio_timeout_scope scope;
    int r = cio_timeout(&scope, timeout);
    if (r)
        return r;
    r = cio_await(fut, value); /* the caller's reference keeps fut alive */
    int expired = cio_timeout_end(&scope) == -ETIMEDOUT;
    if (r == -ETIMEDOUT || (expired && r != -ECANCELED)) {
        /* The deadline passed: fut was cancelled (an awaited future is
         * cancelled with its awaiter) and has finished; as asyncio, a
         * result it still produced is returned, a cancellation becomes
         * -ETIMEDOUT. */
        r = cio_future_done(fut) ? cio_future_result(fut, value) : -ETIMEDOUT;
        if (r == -ECANCELED && !t->cancel_requests)
            r = -ETIMEDOUT;
    }
    return r;
}

/* ------------------------------------------------------- as_completed */

struct cio_as_completed {
    multi m;
    size_t returned;
};

int cio_as_completed_new(cio_future *const *futs, size_t n, double timeout,
                         cio_as_completed **out)
{
    cio__task *t = cio__current;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!t)
        return cio__no_task(__func__);
    if (isnan(timeout))
        return -EINVAL;
    cio_as_completed *it = cio__malloc(sizeof *it);
    if (!it)
        return -ENOMEM;
    int r = n == 0 ? (memset(&it->m, 0, sizeof it->m), 0) /* yields none */
                   : multi_start(&it->m, t, futs, n, timeout);
    if (r) {
        cio__free(it);
        return r;
    }
    it->m.first_done = true;
    it->returned = 0;
    *out = it;
    return 0;
}

static void as_completed_teardown(void *it) { cio_as_completed_free(it); }

int cio_as_completed_next(cio_as_completed *it, cio_future **fut)
{
    cio__task *t = cio__current;
    if (!it || !fut)
        return -EINVAL;
    if (!t)
        return cio__no_task(__func__);
    *fut = NULL;
    if (it->returned == it->m.n)
        return 0;
    int r = cio__interrupted(t);
    while (!r && it->returned == it->m.ndone && !it->m.timed_out) {
        it->m.task = t;
        cio__cleanup c; /* the iterator's one pointer is our caller's */
        cio__cleanup_push(t, &c, as_completed_teardown, it);
        cio__task_waits(t, &as_completed_kind, &it->m, -1);
        r = cio__park_checked(wake_interrupt, NULL);
        cio__cleanup_pop(t, &c);
        it->m.task = NULL;
    }
    if (r)
        return r;
    if (it->returned == it->m.ndone)
        return -ETIMEDOUT;
    *fut = it->m.futs[it->m.order[it->returned++]];
    return 1;
}

void cio_as_completed_free(cio_as_completed *it)
{
    if (!it)
        return;
    multi_end(&it->m);
    cio__free(it);
}

/* -------------------------------------------------------------- shield */

static void shield_copy(cio_future *inner, void *arg)
{
    cio_future *outer = arg;
    if (outer->state == CIO__F_PENDING) {
        if (inner->state == CIO__F_CANCELLED)
            cio_future_cancel(outer);
        else
            cio__future_complete(outer, CIO__F_DONE,
                                 cio_future_result(inner, NULL), inner->value);
    }
}

static void shield_release(void *arg) { cio_future_unref(arg); }

int cio_shield(cio_future *fut, cio_future **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!fut)
        return -EINVAL;
    cio_future *outer;
    int err = cio_future_new(fut->loop, &outer);
    if (err)
        return err;
    err = cio__future_add_callback(fut, shield_copy, cio_future_ref(outer),
                                   shield_release);
    if (err) {
        cio_future_unref(outer);
        cio_future_unref(outer);
        return err;
    }
    *out = outer;
    return 0;
}

/* ---------------------------------------------------------- task groups
 * asyncio.TaskGroup: the first child to fail (other than by cancellation)
 * aborts the group, cancelling the other children, and cancels the parent
 * too while it has not reached join; join waits for every child, then
 * takes back the parent's cancellations that the group made. The group
 * keeps every failure, in the order they happened (asyncio's
 * ExceptionGroup), and the group's own error if it was aborted with one
 * (asyncio: the exception raised in the `async with` body). */
struct cio_task_group {
    cio__task *parent;
    cio_task **children;
    size_t n, cap, running;
    cio_task **failed;   /* children that failed, in order; room for n */
    size_t nfailed, failed_cap;
    int own_error;       /* from cio_task_group_abort, or 0 */
    int parent_cancels;  /* cancellations the group gave the parent */
    bool joining, joined, aborting;
    bool collect;        /* gather_calls' return_exceptions: no abort */
};

/* The unfinished children of a group (the task dump). */
static size_t group_running(const void *on, cio_future **out, size_t cap)
{
    const cio_task_group *g = on;
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->children[i]->state == CIO__F_PENDING) {
            if (k < cap)
                out[k] = g->children[i];
            k++;
        }
    return k;
}
static const cio__wait_kind group_wait = {"task group", group_running};

int cio_task_group_new(cio_task_group **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cio__current)
        return cio__no_task(__func__);
    cio_task_group *g = cio__calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->parent = cio__current;
    *out = g;
    return 0;
}

static void group_abort(cio_task_group *g)
{
    if (g->aborting)
        return;
    g->aborting = true;
    for (size_t i = 0; i < g->n; i++)
        cio_task_cancel(g->children[i]);
}

/* A failure aborts the group; the one that starts the abort also cancels
 * the parent while it has not reached join (asyncio cancels it once, and
 * only when the group was not aborting already), unless the parent is the
 * caller, which knows. */
static void group_fail(cio_task_group *g)
{
    if (g->aborting)
        return;
    group_abort(g);
    if (!g->joining && g->parent->fut.state == CIO__F_PENDING &&
        cio__current != g->parent) {
        g->parent_cancels++;
        cio_task_cancel(&g->parent->fut);
    }
}

static void child_done(cio_future *child, void *arg)
{
    cio_task_group *g = arg;
    g->running--;
    int status = child->state == CIO__F_CANCELLED ? -ECANCELED : child->status;
    if (status < 0 && status != -ECANCELED) {
        child->retrieved = true; /* the group reports it through join */
        g->failed[g->nfailed++] = child; /* spawn made room */
        if (!g->collect)
            group_fail(g);
    }
    if (g->joining && g->running == 0)
        cio__wake(g->parent, 0);
}

/* Room for one more child, in both arrays: child_done never allocates. */
static int group_reserve(cio_task_group *g)
{
    cio_task **c = cio__grow(g->children, &g->cap, g->n + 1, sizeof *c, 8);
    if (!c)
        return -ENOMEM;
    g->children = c;
    c = cio__grow(g->failed, &g->failed_cap, g->n + 1, sizeof *c, 8);
    if (!c)
        return -ENOMEM;
    g->failed = c;
    return 0;
}

int cio_task_group_spawn(cio_task_group *g, cio_task_fn fn, void *arg,
                         const cio_task_options *opts, cio_task **out)
{
    if (out)
        *out = NULL;
    if (!g || !fn)
        return -EINVAL;
    if (g->joined || g->aborting)
        return -ESHUTDOWN;
    int err = group_reserve(g);
    if (err)
        return err;
    cio_task *t;
    err = cio_task_new(g->parent->fut.loop, fn, arg, opts, &t);
    if (err)
        return err;
    err = cio_future_add_done_callback(t, child_done, g);
    if (err) {
        cio_task_cancel(t);
        cio_future_unref(t);
        return err;
    }
    g->children[g->n++] = t;
    g->running++;
    if (out)
        *out = t;
    return 0;
}

int cio_task_group_spawn_at(cio_task_group *g, cio_task_fn fn, void *arg,
                            const cio_task_options *opts, cio_task **out,
                            const char *file, int line)
{
    cio_task *t;
    int err = cio_task_group_spawn(g, fn, arg, opts, &t);
    if (!err) { /* the group's task: its site, as cio_task_new_at's */
        t->site_file = file;
        t->site_line = line;
    }
    if (out)
        *out = err ? NULL : t;
    return err;
}

int cio_task_group_abort(cio_task_group *g, int err)
{
    if (!g || err >= 0 || g->joined)
        return -EINVAL;
    if (!g->own_error || g->own_error == -ECANCELED)
        g->own_error = err; /* the first error; a cancellation gives way */
    group_fail(g);
    return err;
}

/* The parent is cancelled from outside while joining: cancel the children
 * and keep waiting for them. */
static void join_interrupt(cio__task *t, void *arg)
{
    cio_task_group *g = arg;
    group_abort(g);
    if (g->running == 0)
        cio__wake(t, 0);
}

/* join's result, in asyncio's order: errors before a cancellation, and of
 * the errors the group's own (asyncio re-raises the body's exception) */
static int group_result(const cio_task_group *g)
{
    if (g->own_error && g->own_error != -ECANCELED)
        return g->own_error;
    if (g->nfailed && !g->collect)
        return g->failed[0]->status;
    int r = cio__interrupted(g->parent);
    return r ? r : g->own_error;
}

int cio_task_group_join(cio_task_group *g)
{
    if (!g || cio__current != g->parent || g->joined)
        return -EINVAL;
    cio__task *t = g->parent;
    g->joining = true;
    if (cio__interrupted(t))
        group_abort(g);
    while (g->running > 0) {
        cio__task_waits(t, &group_wait, g, -1);
        cio__park(join_interrupt, g);
    }
    g->joining = false;
    g->joined = true;
    for (; g->parent_cancels > 0; g->parent_cancels--)
        cio_task_uncancel(&t->fut);
    return group_result(g);
}

size_t cio_task_group_size(const cio_task_group *g) { return g ? g->n : 0; }

cio_task *cio_task_group_task(const cio_task_group *g, size_t i)
{
    return g && i < g->n ? g->children[i] : NULL;
}

static bool own_counts(const cio_task_group *g)
{
    return g->own_error && g->own_error != -ECANCELED;
}

size_t cio_task_group_error_count(const cio_task_group *g)
{
    return g ? g->nfailed + own_counts(g) : 0;
}

int cio_task_group_error(const cio_task_group *g, size_t i, cio_task **child)
{
    if (child)
        *child = NULL;
    if (!g || i >= cio_task_group_error_count(g))
        return 0;
    if (i == g->nfailed)
        return g->own_error; /* the group's own comes last, as asyncio's */
    if (child)
        *child = g->failed[i];
    return g->failed[i]->status;
}

void cio_task_group_free(cio_task_group *g)
{
    if (!g)
        return;
    if (!g->joined && cio__current == g->parent)
        cio_task_group_join(g);
    for (size_t i = 0; i < g->n; i++) {
        cio_future_remove_done_callback(g->children[i], child_done, g);
        cio_future_unref(g->children[i]);
    }
    cio__free(g->failed);
    cio__free(g->children);
    cio__free(g);
}

/* The scoped form's way out: what join would have returned has nowhere to
 * go, so the failures of children are reported (the group's own error is
 * the one its parent is returning). */
void cio_task_group_leave(cio_task_group **gp)
{
    cio_task_group *g = gp ? *gp : NULL;
    if (!g)
        return;
    *gp = NULL;
    if (!g->joined && cio__current == g->parent) {
        cio_task_group_join(g);
        for (size_t i = 0; i < g->nfailed; i++)
            cio__report(g->parent->fut.loop,
                        "a task group was left without join: a child's "
                        "error went unread", g->failed[i]->status, "task",
                        cio_task_get_name(g->failed[i]), g->failed[i]);
    }
    cio_task_group_free(g);
}

/* ------------------------------------------------------ gather_calls
 * asyncio.gather over function calls, on a task group: the group holds
 * every task, so the caller holds none; unlike gather, nothing outlives
 * the call (the calls' arguments are the caller's). */
int cio_gather_calls(const cio_call *calls, size_t n, int return_exceptions,
                     cio_result *results)
{
    if (!cio__current)
        return cio__no_task(__func__);
    if (n && !calls)
        return -EINVAL;
    cio_task_group *g;
    int err = cio_task_group_new(&g);
    if (err)
        return err;
    g->collect = return_exceptions != 0;
    for (size_t i = 0; i < n && !err; i++)
        if (!calls[i].fn || (err = cio_task_group_spawn(
                                 g, calls[i].fn, calls[i].arg, NULL, NULL)))
            cio_task_group_abort(g, err = err ? err : -EINVAL);
    int r = cio_task_group_join(g);
    for (size_t i = 0; results && i < n; i++) {
        results[i].value = NULL;
        results[i].status = i < g->n ? cio_future_result(g->children[i],
                                                         &results[i].value)
                                     : -ECANCELED;
    }
    cio_task_group_free(g);
    return r;
}
