#ifndef CIO_WAITQ_H
#define CIO_WAITQ_H

#include "internal.h"

/* The wait queue under every lock, semaphore, condition, barrier and
 * queue (sync.c, queue.c, which alone include this). A wait queue parks
 * tasks in FIFO order, each on a cio__wait node that lives on the parked
 * task's own stack for the length of the wait. All-zero is an empty
 * queue, so primitives embedding one can be initialised with {0}. Whoever
 * wakes a node unlinks it first: a woken task is on no wait queue.
 * Inline: these are the hot path of every lock and queue hand-off. */
typedef struct cio__waitq cio__waitq;
typedef struct cio__wait {
    struct cio__wait *next, *prev;
    cio__waitq *q;           /* the queue it is on; NULL once unlinked */
    cio__task *task;         /* the parked task */
    /* The loop closes with the task parked here, or woken and not yet
     * run (handed: 1 if it was handed something): undo its part. */
    void (*drop)(void *ctx, int handed);
    void *ctx;
} cio__wait;

struct cio__waitq {
    cio__wait *head, *tail;  /* oldest first; both NULL when empty */
};

/* The wake result that hands something over (the lock, a unit, an item's
 * reservation, a notification); an interrupted waiter wakes with 0. */
enum { CIO__HANDED = 1 };

/* cio__interrupted() without the call when nothing is pending. */
static inline int cio__interrupted_now(const cio__task *t)
{
    return cio__likely(!t->cancel_requests && !t->expired_scopes)
               ? 0
               : cio__interrupted(t);
}

static inline void cio__waitq_push(cio__waitq *q, cio__wait *w)
{
    w->q = q;
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
}

/* Unlinks w from its queue; harmless if it is on none. */
static inline void cio__waitq_unlink(cio__wait *w)
{
    cio__waitq *q = w->q;
    if (!q)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->q = NULL;
}

/* The hooks (sync.c). Interrupt: an interruptible waiter leaves its queue
 * and wakes with 0; an uninterruptible one stays parked. Teardown: the
 * loop closes, the node leaves its queue and `drop` runs. */
CIO_HIDDEN void cio__waitq_interrupt(cio__task *t, void *wait);
CIO_HIDDEN void cio__waitq_ignore(cio__task *t, void *wait);
CIO_HIDDEN void cio__waitq_teardown(void *wait);
/* Debug: the queue's memory is gone (see cio__cleanup.on): the node
 * leaves it without a look at it. */
CIO_HIDDEN void cio__waitq_forget(void *wait);

/* Parks the current task t at the back of q until a waker hands it a
 * result (returned). Interruptible: cancellation or an expired scope
 * unlinks it and wakes it with 0 (the caller reads cio__interrupted).
 * Otherwise it stays parked through both. drop(ctx, handed) (may be NULL)
 * runs if the loop closes first. -EINVAL: tasks of another loop wait on
 * q. kind and on say what it waits on (the task dump). */
static inline int cio__waitq_park(cio__waitq *q, cio__task *t,
                                  const cio__wait_kind *kind, const void *on,
                                  bool interruptible,
                                  void (*drop)(void *ctx, int handed),
                                  void *ctx)
{
    if (q->head && q->head->task->fut.loop != t->fut.loop)
        return -EINVAL; /* shared with another loop's tasks */
    cio__wait w = {.task = t, .drop = drop, .ctx = ctx};
    cio__waitq_push(q, &w);
    cio__cleanup c;
    cio__cleanup_push(t, &c, cio__waitq_teardown, &w);
    c.on = q;
    c.forget = cio__waitq_forget;
    cio__task_waits(t, kind, on, -1);
    int r = cio__park(interruptible ? cio__waitq_interrupt : cio__waitq_ignore,
                      &w);
    cio__cleanup_pop(t, &c);
    cio__waitq_unlink(&w); /* in case something else woke it */
    return r;
}

/* Unlinks the oldest waiter and wakes it with result; returns 0 if q was
 * empty, else 1. */
static inline int cio__waitq_wake_one(cio__waitq *q, int result)
{
    cio__wait *w = q->head;
    if (!w)
        return 0;
    cio__waitq_unlink(w);
    cio__wake(w->task, result);
    return 1;
}

/* Wakes every waiter, oldest first; returns how many. */
static inline size_t cio__waitq_wake_all(cio__waitq *q, int result)
{
    size_t n = 0;
    while (cio__waitq_wake_one(q, result))
        n++;
    return n;
}

#endif
