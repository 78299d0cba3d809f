/* Futures: a status and a value that are not there yet, reference counted,
 * with waiters told in registration order when it completes (asyncio's
 * done-callbacks run through call_soon; an awaiting task is woken the same
 * way, through its own wake handle). */
#define _GNU_SOURCE
#include "internal.h"

#include <string.h>

/* A user's done-callback: a waiter with the callback and its argument. */
typedef struct done_cb {
    cio__waiter w;
    cio_done_callback cb;
    void *arg;
    void (*release)(void *arg); /* drops arg once: ran, removed or dropped */
} done_cb;

void cio__future_init(cio_future *f, cio_loop *loop,
                      const cio__future_ops *ops)
{
    memset(f, 0, sizeof *f);
    f->loop = loop;
    f->refs = 1;
    f->ops = ops;
    cio__list_init(&f->waiters);
    cio__list_init(&f->live);
    f->debug = loop->debug;
    if (f->debug)
        cio__list_push_back(&loop->dbg.live, &f->live);
}

int cio_future_new_at(cio_loop *loop, cio_future **out, const char *file,
                      int line)
{
    int err = cio_future_new(loop, out);
    if (!err) {
        (*out)->site_file = file;
        (*out)->site_line = line;
    }
    return err;
}

int cio_future_new(cio_loop *loop, cio_future **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!loop)
        loop = cio__running_loop;
    int err = cio__loop_check(loop);
    if (err)
        return err;
    cio_future *f = cio__malloc(sizeof *f);
    if (!f)
        return -ENOMEM;
    cio__future_init(f, loop, NULL);
    *out = f;
    return 0;
}

cio_future *cio_future_ref(cio_future *f)
{
    if (f)
        f->refs++;
    return f;
}

static void report_unretrieved(cio_future *f)
{
    cio__report(f->loop,
                f->ops ? "Task exception was never retrieved"
                       : "Future exception was never retrieved",
                f->status, f->ops ? f->ops->what : "future",
                f->ops ? f->ops->name(f) : NULL, f);
}

static const char *name_of(const cio_future *f)
{
    return f->ops ? f->ops->name(f) : NULL;
}

static const char *what_of(const cio_future *f)
{
    return f->ops ? f->ops->what : "future";
}

/* refs was 0 already. In debug mode the memory is the quarantine's and
 * still marked; otherwise it was given back (undefined behaviour, as a
 * double free is in C): nothing more of it is read. */
static void unref_dead(cio_future *f)
{
    if (f->state != CIO__F_FREED)
        return;
    cio__misuse(f->loop, f->ops ? "cio_future_unref of a freed task "
                                  "(one unref too many)"
                                : "cio_future_unref of a freed future "
                                  "(one unref too many)",
                what_of(f), name_of(f), f);
}

/* The quarantine lets it go for good: the mark goes first, so that memory
 * given back never carries it. */
static void future_release(void *p)
{
    cio_future *f = p;
    f->state = CIO__F_DONE;
    if (f->ops)
        f->ops->free(f);
    else
        cio__free(f);
}

static void future_free(cio_future *f)
{
    cio__list_unlink(&f->live);
    if (!f->debug) {
        future_release(f);
        return;
    }
    if (f->ops)
        f->ops->retire(f);
    f->state = CIO__F_FREED;
    cio__quarantine(f->loop, f, future_release);
}

void cio_future_unref(cio_future *f)
{
    if (!f)
        return;
    if (cio__unlikely(f->refs == 0)) {
        unref_dead(f);
        return;
    }
    if (--f->refs > 0)
        return;
    if (f->ops && f->state == CIO__F_PENDING) {
        /* The loop's own reference on a running task went: the program
         * dropped one more than it held. Keep the loop's. */
        f->refs = 1;
        cio__misuse(f->loop, "cio_future_unref of a running task's last "
                             "reference, the loop's (one unref too many)",
                    what_of(f), name_of(f), f);
        return;
    }
    if (f->state == CIO__F_DONE && f->status < 0 && !f->retrieved &&
        !f->loop->closed)
        report_unretrieved(f);
    /* Waiters left on a future nobody can complete any more. */
    cio__list *n;
    while ((n = cio__list_pop_front(&f->waiters))) {
        cio__waiter *w = cio__container_of(n, cio__waiter, link);
        if (w->drop)
            w->drop(w);
    }
    future_free(f);
}

void cio__waiter_add(cio_future *f, cio__waiter *w)
{
    w->fut = f;
    cio__list_push_back(&f->waiters, &w->link);
}

/* Takes w off its future's list and the ready queue: after this, nothing
 * of the future's refers to w. */
void cio__waiter_detach(cio__waiter *w)
{
    cio__list_unlink(&w->link);
    if (w->h.state != CIO__H_IDLE) {
        cio__handle_unschedule(&w->h);
        if (w->ref_fut)
            cio_future_unref(w->fut);
    }
}

void cio__future_complete(cio_future *f, int state, int status, void *value)
{
    f->state = (uint8_t)state;
    f->status = status;
    f->value = value;
    cio__list *n;
    while ((n = cio__list_pop_front(&f->waiters))) {
        cio__waiter *w = cio__container_of(n, cio__waiter, link);
        if (w->wake) {
            w->wake(w);
            continue;
        }
        if (w->ref_fut)
            cio_future_ref(f);
        cio__handle_schedule(&w->h);
    }
}

int cio_future_set_result(cio_future *f, void *value)
{
    if (!f || f->state != CIO__F_PENDING || f->ops)
        return -EINVAL;
    cio__future_complete(f, CIO__F_DONE, 0, value);
    return 0;
}

int cio_future_set_error(cio_future *f, int err)
{
    if (!f || f->state != CIO__F_PENDING || f->ops ||
        err >= 0 || err == -ECANCELED)
        return -EINVAL;
    cio__future_complete(f, CIO__F_DONE, err, NULL);
    return 0;
}

int cio_future_cancel(cio_future *f)
{
    if (!f)
        return -EINVAL;
    if (f->ops)
        return f->ops->cancel(f);
    if (f->state != CIO__F_PENDING)
        return 0;
    cio__future_complete(f, CIO__F_CANCELLED, -ECANCELED, NULL);
    return 1;
}

int cio_future_done(const cio_future *f)
{
    return f && f->state != CIO__F_PENDING;
}

int cio_future_cancelled(const cio_future *f)
{
    return f && f->state == CIO__F_CANCELLED;
}

int cio_future_result(cio_future *f, void **value)
{
    if (!f)
        return -EINVAL;
    if (f->state == CIO__F_PENDING)
        return -EAGAIN;
    f->retrieved = true;
    if (value)
        *value = f->state == CIO__F_DONE ? f->value : NULL;
    return f->state == CIO__F_CANCELLED ? -ECANCELED : f->status;
}

cio_loop *cio_future_get_loop(const cio_future *f) { return f ? f->loop : NULL; }

/* ------------------------------------------------------- done-callbacks */

static void run_done_cb(void *arg)
{
    done_cb *d = arg;
    cio_future *f = d->w.fut;
    d->cb(f, d->arg);
    if (d->release)
        d->release(d->arg);
    cio__free(d);
    cio_future_unref(f); /* taken when it was scheduled */
}

/* The loop closed with the callback scheduled: as if it ran, minus the
 * call. */
static void drop_scheduled_done_cb(void *arg)
{
    done_cb *d = arg;
    cio_future *f = d->w.fut;
    if (d->release)
        d->release(d->arg);
    cio__free(d);
    cio_future_unref(f);
}

static void drop_done_cb(cio__waiter *w)
{
    done_cb *d = cio__container_of(w, done_cb, w);
    if (d->release)
        d->release(d->arg);
    cio__free(d);
}

int cio__future_add_callback(cio_future *f, cio_done_callback cb, void *arg,
                             void (*release)(void *))
{
    if (!f || !cb)
        return -EINVAL;
    if (f->loop->closed)
        return -ESHUTDOWN;
    done_cb *d = cio__malloc(sizeof *d);
    if (!d)
        return -ENOMEM;
    memset(&d->w, 0, sizeof d->w);
    cio__list_init(&d->w.link);
    cio__handle_init(&d->w.h, f->loop, run_done_cb, d);
    d->w.h.drop = drop_scheduled_done_cb;
    d->w.fut = f;
    d->w.drop = drop_done_cb;
    d->w.ref_fut = true;
    d->cb = cb;
    d->arg = arg;
    d->release = release;
    if (f->state == CIO__F_PENDING) {
        cio__waiter_add(f, &d->w);
    } else { /* already done: scheduled at once, as asyncio does */
        cio_future_ref(f);
        cio__handle_schedule(&d->w.h);
    }
    return 0;
}

int cio_future_add_done_callback(cio_future *f, cio_done_callback cb,
                                 void *arg)
{
    return cio__future_add_callback(f, cb, arg, NULL);
}

int cio_future_remove_done_callback(cio_future *f, cio_done_callback cb,
                                    void *arg)
{
    if (!f)
        return -EINVAL;
    int removed = 0;
    cio__list *n = f->waiters.next;
    while (n != &f->waiters) {
        cio__list *next = n->next;
        cio__waiter *w = cio__container_of(n, cio__waiter, link);
        if (w->drop == drop_done_cb) {
            done_cb *d = cio__container_of(w, done_cb, w);
            if (d->cb == cb && d->arg == arg) {
                cio__list_unlink(n);
                if (d->release)
                    d->release(d->arg);
                cio__free(d);
                removed++;
            }
        }
        n = next;
    }
    return removed;
}
