/* Futures: a result that is not there yet.
 *
 * A future is a box that is empty until someone fills it, once: with a
 * value (cio_future_set_result), an error (cio_future_set_error), or by
 * cancelling it. Tasks wait for it with cio_await; callbacks hear of it
 * with cio_future_add_done_callback. asyncio's Future, as a C object with
 * a reference count.
 *
 * Here a delivery is promised: two tasks wait at the door for the same
 * parcel, a callback on a timer delivers it, a done-callback writes the
 * receipt. Then the rules: the result before it is there, a second
 * delivery, and a cancelled order.
 */
#include <cio.h>

#include <stdio.h>

/* A task: waits at the door for the parcel (borrowed: the main task
 * keeps its reference until both waiters are done). */
static int wait_at_door(void *arg)
{
    cio_future *parcel = arg;
    void *what;
    int err = cio_await(parcel, &what); /* parks until it is filled */
    if (err)
        return err;
    printf("  %s got: %s\n", cio_task_get_name(cio_current_task()),
           (const char *)what);
    return 0;
}

/* A plain callback, run by the loop 0.1 s after it was scheduled. */
static void deliver(void *arg)
{
    printf("  the courier delivers\n");
    cio_future_set_result(arg, "a book"); /* wakes every waiter */
}

/* Runs once the future is done, however it was finished. */
static void receipt(cio_future *f, void *arg)
{
    (void)arg;
    printf("  receipt: %s\n",
           cio_future_cancelled(f) ? "cancelled" : "delivered");
}

static int start_waiter(const char *name, cio_future *f, cio_task **t)
{
    cio_task_options o = {.name = name};
    return cio_task_new(NULL, wait_at_door, f, &o, t);
}

static int home(void *arg)
{
    (void)arg;
    cio_loop *loop = cio_get_running_loop();
    cio_future *parcel;
    int err = cio_future_new(NULL, &parcel);
    if (err)
        return err;
    printf("A promised parcel, two waiting for it\n");
    cio_future_add_done_callback(parcel, receipt, NULL);
    cio_task *alice = NULL, *bob = NULL;
    err = start_waiter("alice", parcel, &alice);
    if (!err)
        err = start_waiter("bob", parcel, &bob);
    if (!err)
        err = cio_call_later(loop, 0.1, deliver, parcel, NULL);
    /* Not there yet: asking for the result now is -EAGAIN. */
    int now = cio_future_result(parcel, NULL);
    printf("  result now: %s\n", now == -EAGAIN ? "-EAGAIN, not there yet"
                                                 : cio_strerror(now));
    cio_future *both[] = {alice, bob};
    if (!err)
        err = cio_gather(both, 2, 0, NULL); /* both waiters are done */
    cio_future_unref(alice);
    cio_future_unref(bob);
    if (err) {
        cio_future_unref(parcel);
        return err;
    }

    printf("The rules\n");
    void *what;
    int status = cio_future_result(parcel, &what);
    printf("  result once done: status %d, value %s\n", status,
           (const char *)what);
    /* Filled once: a second delivery is refused. */
    int again = cio_future_set_result(parcel, "a lamp");
    printf("  deliver again: %s\n", again == -EINVAL ? "-EINVAL, already done"
                                                     : cio_strerror(again));
    cio_future_unref(parcel);

    /* A cancelled order: its waiter's await returns -ECANCELED. */
    cio_future *order;
    if ((err = cio_future_new(NULL, &order)))
        return err;
    cio_future_add_done_callback(order, receipt, NULL);
    cio_task *carol = NULL;
    err = start_waiter("carol", order, &carol);
    if (!err) {
        cio_sleep(0); /* carol starts and parks on the order */
        cio_future_cancel(order);
        printf("  carol: %s\n", cio_strerror(cio_await(carol, NULL)));
        cio_future_unref(carol);
    }
    cio_future_unref(order);
    return err;
}

int main(void)
{
    int err = cio_run(home, NULL);
    if (err)
        fprintf(stderr, "futures: %s\n", cio_strerror(err));
    return err ? 1 : 0;
}
