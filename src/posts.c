/* Other threads' way into a loop: call_soon_threadsafe's posts and the
 * bridges that carry results from worker threads, both under one lock
 * (struct cio_loop's `posts`). The loop takes them in its posts phase
 * (cio__posts_take) and shuts the door when it closes (cio__posts_close);
 * running the posts is the ready phase's (loop.c). Below the loop: this
 * file schedules handles (internal.h) and calls nothing of loop.c.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <sched.h>
#include <unistd.h>

/* ---------------------------------------------------- threadsafe posting
 * Posters append (cb, arg) to a vector under a mutex, libuv's way: no
 * allocation per post once the vector has grown. Each iteration the loop
 * swaps the vector out and schedules one embedded handle that runs the
 * batch in order: the same order as if each post had been appended to the
 * ready queue, as asyncio does.
 *
 * A poster writes the eventfd (holding the lock, so the loop cannot be
 * closed under it) only when the loop sleeps in the kernel and
 * no wake-up is outstanding, so a busy loop takes posts without a system
 * call. The loop sets `sleeping` before re-checking post_count, and a
 * poster sets post_count before reading `sleeping`: with sequential
 * consistency one of the two always sees the other, so no post is missed.
 */

/* The eventfd is written and read directly, not through cio__sys_*: its
 * only failure is EAGAIN with the counter full, which leaves it readable,
 * so there is no error path to test, and a lost wake-up would hang. */
static void wake_loop(cio_loop *loop)
{
    uint64_t one = 1;
    ssize_t n = write(loop->wakefd, &one, sizeof one);
    (void)n;
}

/* With post_lock held, after something was queued for the loop. */
static void posted_locked(cio_loop *loop)
{
    atomic_fetch_add(&loop->posts.count, 1);
    /* Still under the lock: once it is released the loop may run the post,
     * close and be freed, so nothing of it may be touched after. */
    if (atomic_load(&loop->posts.sleeping) &&
        !atomic_exchange(&loop->posts.wake_sent, 1))
        wake_loop(loop);
}

/* ------------------------------------------------------------- bridges
 * A bridge carries one result from another thread to the loop with no
 * allocation (so landing cannot fail) and without ever touching a loop
 * that closed first. The protocol, all of it here:
 *   loop thread: cio__bridge_open lists it, before the other thread can
 *     finish; cio__bridge_unopen takes it back if that thread never
 *     started;
 *   other thread: cio__bridge_land claims it (FLYING -> LANDING) and moves
 *     it to loop->posts.arrived under post_lock; the loop then runs `deliver`;
 *   a closing loop orphans every unclaimed bridge (FLYING -> ORPHANED,
 *     `orphaned` runs; the other thread's land then returns false and
 *     must not touch the loop), waits for claimed ones to arrive, and
 *     runs `deliver.drop` for arrived ones it will never deliver. */
void cio__bridge_open(cio_loop *loop, cio__bridge *b, cio_callback deliver,
                      cio_callback dropped, void (*orphaned)(cio__bridge *),
                      void *arg)
{
    atomic_init(&b->state, CIO__BRIDGE_FLYING);
    cio__handle_init(&b->deliver, loop, deliver, arg);
    b->deliver.drop = dropped;
    b->orphaned = orphaned;
    pthread_mutex_lock(&loop->posts.lock);
    cio__list_push_back(&loop->posts.bridges, &b->link);
    pthread_mutex_unlock(&loop->posts.lock);
}

void cio__bridge_unopen(cio__bridge *b)
{
    cio_loop *loop = b->deliver.loop;
    pthread_mutex_lock(&loop->posts.lock);
    cio__list_unlink(&b->link);
    pthread_mutex_unlock(&loop->posts.lock);
}

bool cio__bridge_land(cio__bridge *b)
{
    /* Read before the claim: once orphaned, b->deliver may be torn down. */
    cio_loop *loop = b->deliver.loop;
    int flying = CIO__BRIDGE_FLYING;
    if (!atomic_compare_exchange_strong(&b->state, &flying,
                                        CIO__BRIDGE_LANDING))
        return false;
    pthread_mutex_lock(&loop->posts.lock); /* a closing loop waits for us */
    cio__list_unlink(&b->link);
    cio__list_push_back(&loop->posts.arrived, &b->link);
    posted_locked(loop);
    pthread_mutex_unlock(&loop->posts.lock);
    return true;
}

static int post_locked(cio_loop *loop, cio_callback cb, cio_callback drop,
                       void *arg)
{
    if (loop->closed)
        return -ESHUTDOWN;
    cio__post *p = cio__grow(loop->posts.posted, &loop->posts.posted_cap,
                             loop->posts.nposted + 1, sizeof *p, 64);
    if (!p)
        return -ENOMEM;
    loop->posts.posted = p;
    loop->posts.posted[loop->posts.nposted++] = (cio__post){cb, drop, arg};
    posted_locked(loop);
    return 0;
}


int cio__post_threadsafe(cio_loop *loop, cio_callback cb, cio_callback drop,
                         void *arg)
{
    pthread_mutex_lock(&loop->posts.lock);
    int err = post_locked(loop, cb, drop, arg);
    pthread_mutex_unlock(&loop->posts.lock);
    return err;
}

/* Takes what other threads posted since the last iteration. */
void cio__posts_take(cio_loop *loop)
{
    if (!atomic_load_explicit(&loop->posts.count, memory_order_relaxed) ||
        loop->posts.ntorun)
        return;
    cio__list arrived;
    cio__list_init(&arrived);
    pthread_mutex_lock(&loop->posts.lock);
    cio__post *p = loop->posts.torun;
    size_t cap = loop->posts.torun_cap;
    loop->posts.torun = loop->posts.posted;
    loop->posts.torun_cap = loop->posts.posted_cap;
    loop->posts.ntorun = loop->posts.nposted;
    loop->posts.posted = p;
    loop->posts.posted_cap = cap;
    loop->posts.nposted = 0;
    cio__list_splice(&arrived, &loop->posts.arrived);
    atomic_store(&loop->posts.count, 0);
    pthread_mutex_unlock(&loop->posts.lock);
    if (loop->posts.ntorun)
        cio__handle_schedule(&loop->posts.batch);
    cio__list *n;
    while ((n = cio__list_pop_front(&arrived))) {
        cio__bridge *b = cio__container_of(n, cio__bridge, link);
        cio__handle_schedule(&b->deliver);
    }
}

/* Closes the door to other threads: from here posters get -ESHUTDOWN.
 * Posts that never ran are dropped, and work in flight in executors is
 * orphaned: its worker frees what it shares with us when it finishes. */
void cio__posts_close(cio_loop *loop)
{
    cio__list orphans, arrived, *n;
    cio__list_init(&orphans);
    cio__list_init(&arrived);
    /* A worker that already claimed its bridge (LANDING) is about to take
     * the lock to land it: let it, so that no worker touches this loop
     * after it is freed. Unclaimed ones are orphaned: their workers will
     * never come near the loop. */
    for (bool landing = true; landing;) {
        landing = false;
        pthread_mutex_lock(&loop->posts.lock);
        loop->closed = true;
        for (n = loop->posts.bridges.next; n != &loop->posts.bridges;) {
            cio__bridge *b = cio__container_of(n, cio__bridge, link);
            n = n->next;
            int flying = CIO__BRIDGE_FLYING;
            if (atomic_compare_exchange_strong(&b->state, &flying,
                                               CIO__BRIDGE_ORPHANED)) {
                cio__list_unlink(&b->link);
                cio__list_push_back(&orphans, &b->link);
            } else {
                landing = true;
            }
        }
        cio__list_splice(&arrived, &loop->posts.arrived);
        pthread_mutex_unlock(&loop->posts.lock);
        if (landing)
            sched_yield();
    }
    while ((n = cio__list_pop_front(&arrived))) {
        cio__bridge *b = cio__container_of(n, cio__bridge, link);
        b->deliver.drop(b->deliver.arg);
    }
    /* Nobody appends now; the lock is not needed to read them. */
    while ((n = cio__list_pop_front(&orphans))) {
        cio__bridge *b = cio__container_of(n, cio__bridge, link);
        b->orphaned(b);
    }
    for (size_t i = 0; i < loop->posts.ntorun; i++)
        if (loop->posts.torun[i].drop)
            loop->posts.torun[i].drop(loop->posts.torun[i].arg);
    for (size_t i = 0; i < loop->posts.nposted; i++)
        if (loop->posts.posted[i].drop)
            loop->posts.posted[i].drop(loop->posts.posted[i].arg);
    loop->posts.nposted = loop->posts.ntorun = 0;
    atomic_store(&loop->posts.count, 0);
}
