/* Synchronization primitives: lock, event, condition, semaphore, barrier.
 *
 * Every wait is the task kernel's: park the task on a FIFO wait queue,
 * wake it with a result. A wake-up that hands something over (the lock, a
 * unit, a notification) carries CIO__HANDED; the waker has already done
 * the bookkeeping on the woken task's behalf, so nobody can take it in
 * between (asyncio's fairness, without its "woken but not yet running"
 * window). The one case to take care of is a task cancelled after it was
 * handed something and before it ran: it passes the thing on.
 *
 * The primitives are blobs in the caller's memory, all-zero when fresh
 * (semaphore and barrier need their _init); the real structs below are
 * what the blobs hold.
 */
#define _GNU_SOURCE
#include "waitq.h"

#include <limits.h>
#include <string.h>

/* The waits of this file, as the task dump tells them. */
static const cio__wait_kind lock_wait = {"lock", NULL};
static const cio__wait_kind event_wait = {"event", NULL};
static const cio__wait_kind cond_wait = {"condition", NULL};
static const cio__wait_kind sem_wait = {"semaphore", NULL};
static const cio__wait_kind barrier_wait = {"barrier", NULL};

/* ------------------------------------------------------------ wait queues
 * The queue itself is inline in internal.h; here are its interrupt hooks:
 * cancellation or an expired scope reaches a parked waiter. */

void cio__waitq_interrupt(cio__task *t, void *wait)
{
    cio__waitq_unlink(wait);
    cio__wake(t, 0);
}

void cio__waitq_ignore(cio__task *t, void *wait)
{
    (void)t;
    (void)wait;
}

/* The loop closes with the task parked (or woken, not yet run): its node
 * lives on a stack about to go, and what it was handed must go on. */
void cio__waitq_teardown(void *wait)
{
    cio__wait *w = wait;
    cio__waitq_unlink(w);
    if (w->drop)
        w->drop(w->ctx,
                !w->task->parked && w->task->wake_result == CIO__HANDED);
}

void cio__waitq_forget(void *wait)
{
    ((cio__wait *)wait)->q = NULL;
}

/* The checks every call that may wait starts with: a task to park, and
 * level-triggered cancellation (a cancelled task does not even start).
 * `call`: the public function's name, for debug mode's report. */
static int wait_entry_(const void *obj, cio__task *t, const char *call)
{
    if (!obj)
        return -EINVAL;
    if (!t)
        return cio__no_task(call);
    return cio__interrupted_now(t);
}
#define wait_entry(obj, t) wait_entry_((obj), (t), __func__)

/* ------------------------------------------------------------------- lock */

typedef struct __attribute__((may_alias)) lock_impl {
    cio__waitq waiters; /* tasks in acquire; non-empty only while locked */
    bool locked;
} lock_impl;
_Static_assert(sizeof(lock_impl) <= sizeof(cio_lock), "cio_lock too small");
_Static_assert(_Alignof(lock_impl) <= _Alignof(cio_lock), "cio_lock align");

static lock_impl *L(const cio_lock *lock)
{
    return (lock_impl *)(uintptr_t)lock;
}

/* Releases a locked lock: the first waiter gets it, still locked. */
static void lock_give(lock_impl *l)
{
    if (!cio__waitq_wake_one(&l->waiters, CIO__HANDED))
        l->locked = false;
}

static void lock_dropped(void *l, int handed)
{
    if (handed)
        lock_give(l);
}

/* Takes the lock for t, parking while it is held. Returns 0 with the lock
 * (even if t was interrupted after it was handed over: the caller
 * decides), or the interruption (interruptible only) without it. */
static int lock_take(lock_impl *l, cio__task *t, bool interruptible)
{
    if (!l->locked) {
        l->locked = true;
        return 0;
    }
    for (;;) {
        int woke = cio__waitq_park(&l->waiters, t, &lock_wait, l, interruptible,
                                   lock_dropped, l);
        if (woke == CIO__HANDED)
            return 0;
        if (woke < 0)
            return woke;
        int r = interruptible ? cio__interrupted(t) : 0;
        if (r)
            return r;
        if (!l->locked) { /* woken by someone else: try again */
            l->locked = true;
            return 0;
        }
    }
}

int cio_lock_init(cio_lock *lock)
{
    if (!lock)
        return -EINVAL;
    memset(lock, 0, sizeof *lock);
    return 0;
}

int cio_lock_acquire(cio_lock *lock)
{
    cio__task *t = cio__current;
    int r = wait_entry(lock, t);
    if (r)
        return r;
    lock_impl *l = L(lock);
    r = lock_take(l, t, true);
    if (r == 0 && (r = cio__interrupted_now(t))) {
#ifndef CIO_PLANT_BUG_LOCK /* make cancel plants the lost hand-off */
        lock_give(l); /* handed over, but cancelled before it ran: pass on */
#endif
    }
    return r;
}

int cio_lock_release(cio_lock *lock)
{
    if (!lock || !L(lock)->locked)
        return -EINVAL;
    lock_give(L(lock));
    return 0;
}

int cio_lock_locked(const cio_lock *lock) { return lock && L(lock)->locked; }

/* The scoped forms (CIO_LOCK_SCOPE and friends) hold what they took in
 * *held, NULL while nothing is held: leave releases exactly that, once. */
int cio_lock_enter(cio_lock **held, cio_lock *lock)
{
    if (!held || *held)
        return -EINVAL;
    int r = cio_lock_acquire(lock);
    if (!r)
        *held = lock;
    return r;
}

void cio_lock_leave(cio_lock **held)
{
    if (held && *held) {
        cio_lock_release(*held);
        *held = NULL;
    }
}

/* ------------------------------------------------------------------ event */

typedef struct __attribute__((may_alias)) event_impl {
    cio__waitq waiters;
    bool set;
} event_impl;
_Static_assert(sizeof(event_impl) <= sizeof(cio_event), "cio_event too small");
_Static_assert(_Alignof(event_impl) <= _Alignof(cio_event), "cio_event align");

static event_impl *E(const cio_event *ev)
{
    return (event_impl *)(uintptr_t)ev;
}

int cio_event_init(cio_event *ev)
{
    if (!ev)
        return -EINVAL;
    memset(ev, 0, sizeof *ev);
    return 0;
}

int cio_event_set(cio_event *ev)
{
    if (!ev)
        return -EINVAL;
    event_impl *e = E(ev);
    if (!e->set) {
        e->set = true;
        cio__waitq_wake_all(&e->waiters, CIO__HANDED);
    }
    return 0;
}

int cio_event_clear(cio_event *ev)
{
    if (!ev)
        return -EINVAL;
    E(ev)->set = false;
    return 0;
}

int cio_event_is_set(const cio_event *ev) { return ev && E(ev)->set; }

int cio_event_wait(cio_event *ev)
{
    cio__task *t = cio__current;
    int r = wait_entry(ev, t);
    if (r)
        return r;
    event_impl *e = E(ev);
    while (!e->set) {
        int woke = cio__waitq_park(&e->waiters, t, &event_wait, e, true,
                                    NULL, NULL);
        if ((r = cio__interrupted(t)))
            return r;
        if (woke == CIO__HANDED) /* set, maybe cleared since: still 0 */
            return 0;
        if (woke < 0)
            return woke;
    }
    return 0;
}

/* -------------------------------------------------------------- condition */

typedef struct __attribute__((may_alias)) cond_impl {
    cio_lock own;       /* the lock when none was given */
    cio_lock *lock;     /* the given lock (the caller's), or NULL: own */
    cio__waitq waiters; /* tasks in wait, not yet notified */
} cond_impl;
_Static_assert(sizeof(cond_impl) <= sizeof(cio_condition),
               "cio_condition too small");
_Static_assert(_Alignof(cond_impl) <= _Alignof(cio_condition),
               "cio_condition align");

static cond_impl *C(const cio_condition *cond)
{
    return (cond_impl *)(uintptr_t)cond;
}

static cio_lock *cond_lock(const cio_condition *cond)
{
    cond_impl *c = C(cond);
    return c->lock ? c->lock : &c->own;
}

int cio_condition_init(cio_condition *cond, cio_lock *lock)
{
    if (!cond)
        return -EINVAL;
    memset(cond, 0, sizeof *cond);
    C(cond)->lock = lock;
    return 0;
}

int cio_condition_acquire(cio_condition *cond)
{
    return cond ? cio_lock_acquire(cond_lock(cond)) : -EINVAL;
}

int cio_condition_release(cio_condition *cond)
{
    return cond ? cio_lock_release(cond_lock(cond)) : -EINVAL;
}

int cio_condition_locked(const cio_condition *cond)
{
    return cond && cio_lock_locked(cond_lock(cond));
}

int cio_condition_enter(cio_condition **held, cio_condition *cond)
{
    if (!held || *held)
        return -EINVAL;
    int r = cio_condition_acquire(cond);
    if (!r)
        *held = cond;
    return r;
}

void cio_condition_leave(cio_condition **held)
{
    if (held && *held) {
        cio_condition_release(*held);
        *held = NULL;
    }
}

static int notify(cond_impl *c, int n)
{
    int woken = 0;
    while (woken < n && cio__waitq_wake_one(&c->waiters, CIO__HANDED))
        woken++;
    return woken;
}

static void cond_dropped(void *c, int handed)
{
    if (handed)
        notify(c, 1);
}

/* asyncio 3.13's Condition.wait: release, wait, and take the lock back
 * whatever happens - the caller's critical section expects to hold it.
 * Taking it back ignores cancellation and timeouts; an interruption from
 * any point of the wait is returned once the lock is held again. A
 * notification that arrived for a task that then returns an error is
 * passed on, so it is not lost; asyncio passes one on after any error,
 * notified or not (a spurious wake-up), cio only when there was one. */
int cio_condition_wait(cio_condition *cond)
{
    cio__task *t = cio__current;
    if (!cond)
        return -EINVAL;
    if (!t)
        return cio__no_task(__func__);
    cio_lock *lock = cond_lock(cond);
    if (!cio_lock_locked(lock))
        return -EPERM;
    int r = cio__interrupted(t);
    if (r)
        return r; /* never released: the caller holds the lock as it did */
    cond_impl *c = C(cond);
    lock_give(L(lock));
    int woke = cio__waitq_park(&c->waiters, t, &cond_wait, c, true,
                                cond_dropped, c);
    if (woke == CIO__GONE)
        return woke; /* the condition and its lock are no more */
    int taken = lock_take(L(lock), t, false);
    r = cio__interrupted(t);
    if (!r && woke != CIO__HANDED)
        r = woke < 0 ? woke : 0; /* -EINVAL (another loop), or spurious */
#ifndef CIO_PLANT_BUG_CONDITION /* make cancel plants the lost notify */
    if (r && woke == CIO__HANDED)
        notify(c, 1);
#endif
    return taken ? taken : r;
}

int cio_condition_wait_for(cio_condition *cond, cio_predicate pred, void *arg)
{
    if (!cond || !pred)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task(__func__);
    if (!cio_condition_locked(cond))
        return -EPERM;
    int r = cio__interrupted(cio__current);
    while (!r && !pred(arg))
        r = cio_condition_wait(cond);
    return r;
}

int cio_condition_notify(cio_condition *cond, int n)
{
    if (!cond)
        return -EINVAL;
    if (!cio_condition_locked(cond))
        return -EPERM;
    return notify(C(cond), n);
}

int cio_condition_notify_all(cio_condition *cond)
{
    return cio_condition_notify(cond, INT_MAX);
}

/* -------------------------------------------------------------- semaphore */

/* CIO_SEMAPHORE_INIT and CIO_BOUNDED_SEMAPHORE_INIT write this layout
 * into the blob's pointer slots: the waiters in priv[0..1] (empty: zero),
 * value in priv[2], bound in priv[3]; the asserts keep the two agreeing. */
typedef struct __attribute__((may_alias)) sem_impl {
    cio__waitq waiters; /* non-empty only while value is 0 */
    intptr_t value;     /* units free and promised to nobody, <= INT_MAX */
    intptr_t bound;     /* bounded: the initial value + 1; 0: unbounded */
} sem_impl;
_Static_assert(sizeof(sem_impl) <= sizeof(cio_semaphore),
               "cio_semaphore too small");
_Static_assert(_Alignof(sem_impl) <= _Alignof(cio_semaphore),
               "cio_semaphore align");
_Static_assert(offsetof(sem_impl, value) == 2 * sizeof(void *) &&
                   offsetof(sem_impl, bound) == 3 * sizeof(void *),
               "CIO_SEMAPHORE_INIT's layout");

static sem_impl *S(const cio_semaphore *sem)
{
    return (sem_impl *)(uintptr_t)sem;
}

static int sem_init(cio_semaphore *sem, int value, bool bounded)
{
    if (!sem || value < 0)
        return -EINVAL;
    memset(sem, 0, sizeof *sem);
    S(sem)->value = value;
    S(sem)->bound = bounded ? (intptr_t)value + 1 : 0;
    return 0;
}

int cio_semaphore_init(cio_semaphore *sem, int value)
{
    return sem_init(sem, value, false);
}

int cio_bounded_semaphore_init(cio_semaphore *sem, int value)
{
    return sem_init(sem, value, true);
}

/* A unit comes back: to the first waiter, or to the counter. */
static void sem_give(sem_impl *s)
{
    if (!cio__waitq_wake_one(&s->waiters, CIO__HANDED))
        s->value++;
}

static void sem_dropped(void *s, int handed)
{
    if (handed)
        sem_give(s);
}

int cio_semaphore_acquire(cio_semaphore *sem)
{
    cio__task *t = cio__current;
    int r = wait_entry(sem, t);
    if (r)
        return r;
    sem_impl *s = S(sem);
    while (s->value == 0) {
        int woke = cio__waitq_park(&s->waiters, t, &sem_wait, s, true,
                                    sem_dropped, s);
        r = cio__interrupted(t);
        if (woke == CIO__HANDED) {
#ifndef CIO_PLANT_BUG_SEMAPHORE /* make cancel plants the lost unit */
            if (r)
                sem_give(s); /* handed a unit, but cancelled: pass it on */
#endif
            return r;
        }
        if (r || woke < 0)
            return r ? r : woke;
    }
    s->value--;
    return 0;
}

int cio_semaphore_release(cio_semaphore *sem)
{
    if (!sem)
        return -EINVAL;
    sem_impl *s = S(sem);
    if (s->bound && s->value >= s->bound - 1)
        return -EINVAL;
    if (s->value == INT_MAX)
        return -EOVERFLOW;
    sem_give(s);
    return 0;
}

int cio_semaphore_locked(const cio_semaphore *sem)
{
    return sem && S(sem)->value == 0;
}

int cio_semaphore_enter(cio_semaphore **held, cio_semaphore *sem)
{
    if (!held || *held)
        return -EINVAL;
    int r = cio_semaphore_acquire(sem);
    if (!r)
        *held = sem;
    return r;
}

void cio_semaphore_leave(cio_semaphore **held)
{
    if (held && *held) {
        cio_semaphore_release(*held);
        *held = NULL;
    }
}

/* ---------------------------------------------------------------- barrier
 * asyncio's Barrier, a state machine over one wait queue; every change of
 * state wakes all waiters, who look at the state when they run (asyncio's
 * Condition.notify_all and re-check). Draining: the barrier tripped and
 * the released tasks are leaving; resetting: reset() while tasks waited,
 * they are leaving broken. Newcomers wait out both. */
enum { FILLING = 0, DRAINING, RESETTING, BROKEN };

typedef struct __attribute__((may_alias)) barrier_impl {
    cio__waitq waiters;
    int parties; /* 0: not initialised */
    int count;   /* tasks inside wait() past the entry */
    int state;
} barrier_impl;
_Static_assert(sizeof(barrier_impl) <= sizeof(cio_barrier),
               "cio_barrier too small");
_Static_assert(_Alignof(barrier_impl) <= _Alignof(cio_barrier),
               "cio_barrier align");

static barrier_impl *B(const cio_barrier *b)
{
    return (barrier_impl *)(uintptr_t)b;
}

static void barrier_changed(barrier_impl *b)
{
    cio__waitq_wake_all(&b->waiters, CIO__HANDED);
}

int cio_barrier_init(cio_barrier *bar, int parties)
{
    if (!bar || parties < 1)
        return -EINVAL;
    memset(bar, 0, sizeof *bar);
    B(bar)->parties = parties;
    return 0;
}

static void barrier_leave(barrier_impl *b);

static void barrier_dropped(void *b, int handed)
{
    (void)handed;
    barrier_leave(b);
}

/* Parks t until the barrier changes state; returns the interruption.
 * counted: t is one of the tasks inside (it must leave if the loop
 * closes). */
static int barrier_park(barrier_impl *b, cio__task *t, bool counted)
{
    int woke = cio__waitq_park(&b->waiters, t, &barrier_wait, b, true,
                               counted ? barrier_dropped : NULL, b);
    if (woke == CIO__GONE)
        return woke; /* its drop left the barrier for it */
    int r = cio__interrupted(t);
    return r ? r : woke < 0 ? woke : 0;
}

/* The last task out of a drain or a reset opens the next round. */
static void barrier_leave(barrier_impl *b)
{
    if (--b->count > 0)
        return;
    if (b->state == DRAINING || b->state == RESETTING)
        b->state = FILLING;
    barrier_changed(b);
}

int cio_barrier_wait(cio_barrier *bar)
{
    cio__task *t = cio__current;
    int r = wait_entry(bar, t);
    if (r)
        return r;
    barrier_impl *b = B(bar);
    if (b->parties < 1)
        return -EINVAL;
    while (b->state == DRAINING || b->state == RESETTING)
        if ((r = barrier_park(b, t, false)))
            return r;
    if (b->state == BROKEN)
        return CIO_EBROKEN;
    int index = b->count++;
    if (index + 1 == b->parties) {
        b->state = DRAINING; /* the last to arrive releases the others */
        barrier_changed(b);
    } else {
        while (!r && b->state == FILLING)
            r = barrier_park(b, t, true);
        if (r == CIO__GONE)
            return r;
        if (!r && (b->state == BROKEN || b->state == RESETTING))
            r = CIO_EBROKEN;
    }
    barrier_leave(b);
    return r ? r : index;
}

int cio_barrier_reset(cio_barrier *bar)
{
    if (!bar)
        return -EINVAL;
    barrier_impl *b = B(bar);
    b->state = b->count > 0 ? RESETTING : FILLING;
    barrier_changed(b);
    return 0;
}

int cio_barrier_abort(cio_barrier *bar)
{
    if (!bar)
        return -EINVAL;
    B(bar)->state = BROKEN;
    barrier_changed(B(bar));
    return 0;
}

int cio_barrier_parties(const cio_barrier *bar)
{
    return bar ? B(bar)->parties : -EINVAL;
}

int cio_barrier_n_waiting(const cio_barrier *bar)
{
    if (!bar)
        return -EINVAL;
    return B(bar)->state == FILLING ? B(bar)->count : 0;
}

int cio_barrier_broken(const cio_barrier *bar)
{
    return bar && B(bar)->state == BROKEN;
}
