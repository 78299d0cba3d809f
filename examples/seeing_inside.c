/* Seeing inside a running program: what is every task doing?
 *
 * A small restaurant: a manager runs four staff as a task group. The
 * waiter waits for an order (a queue), the cook cooks (a 10 s sleep)
 * while holding the stove (a lock), the second cook waits for the stove,
 * and the cashier counts the till in a thread (run_in_executor). While
 * they all wait, the main task prints the loop's task dump: the tree of
 * who waits for whom, what each task waits on, and where it was created.
 * It is what `kill -USR1 <pid>` prints for a program that asked for it
 * with cio_loop_dump_on_signal.
 *
 * The virtual clock makes the times exact (due in 10.000 s): without it
 * they are the real ones.
 */
#define _GNU_SOURCE
#include <cio.h>

#include <stdio.h>
#include <unistd.h>

static cio_lock stove = CIO_LOCK_INIT;
static cio_queue *orders;
static int till[2]; /* the cashier's thread reads the count from here */

static int waiter(void *arg)
{
    (void)arg;
    int order;
    return cio_queue_get(orders, &order); /* parks: no order yet */
}

/* Cooks for `*arg` seconds on the stove: the first cook takes it, the
 * second waits for it. */
static int cook(void *arg)
{
    CIO_LOCK_SCOPE(held);
    int err = cio_lock_enter(&held, &stove);
    if (err)
        return err;
    return cio_sleep(*(const double *)arg); /* cooking, holding the stove */
}

/* Runs in a worker thread: blocks as ordinary C code does. */
static int count_till(void *arg)
{
    (void)arg;
    char total[16];
    return read(till[0], total, sizeof total) > 0 ? 0 : -1;
}

static int cashier(void *arg)
{
    (void)arg;
    return cio_to_thread(count_till, NULL);
}

static int manager(void *arg)
{
    (void)arg;
    static const double ten = 10, five = 5;
    static const struct {
        const char *name;
        cio_task_fn fn;
        const void *arg;
    } staff[] = {{"waiter", waiter, NULL},
                 {"cook", cook, &ten},
                 {"second cook", cook, &five},
                 {"cashier", cashier, NULL}};
    cio_task_group *g;
    int err = cio_task_group_new(&g);
    if (err)
        return err;
    for (size_t i = 0; i < sizeof staff / sizeof staff[0] && !err; i++) {
        cio_task_options o = {.name = staff[i].name};
        err = cio_task_group_spawn(g, staff[i].fn, (void *)staff[i].arg, &o,
                                   NULL);
    }
    int joined = cio_task_group_join(g); /* parks until all are done */
    cio_task_group_free(g);
    return err ? err : joined;
}

static int restaurant(void *arg)
{
    (void)arg;
    cio_loop *loop = cio_get_running_loop();
    cio_loop_set_virtual_clock(loop, cio_loop_time(loop)); /* from now on */
    int err = cio_queue_new(&orders, sizeof(int), 0);
    if (err)
        return err;
    if (pipe(till) < 0) {
        cio_queue_free(orders);
        return -errno;
    }
    cio_task_options o = {.name = "manager"};
    cio_task *m;
    err = cio_task_new(NULL, manager, NULL, &o, &m);
    for (int i = 0; !err && i < 5; i++)
        err = cio_sleep(0); /* let everyone start and park */
    if (!err) {
        /* The whole loop: a tree, each task under the one waiting for it. */
        printf("== cio_loop_print_tasks\n");
        cio_loop_print_tasks(loop, stdout, CIO_DUMP_TEXT);

        /* One task, and who waits for it, as asyncio's print_call_graph. */
        cio_task *staff[8];
        int n = cio_task_awaits(m, staff, 8);
        printf("== cio_print_call_graph(cook): the manager has %d staff\n", n);
        cio_print_call_graph(staff[1], stdout);

        /* The same facts as fields, for a program of your own. */
        cio_task_info info;
        cio_task_inspect(staff[1], &info);
        printf("== cio_task_inspect: %s is %s on %s, done in %.1f s\n",
               info.name, info.state, info.waiting_on,
               info.deadline - cio_loop_time(loop));
        fflush(stdout);
    }
    /* Closing time: the manager's cancel goes to every member of staff. */
    if (m) {
        cio_task_cancel(m);
        if (write(till[1], "42", 2) != 2) /* the till is counted */
            err = err ? err : -errno;
        int r = cio_await(m, NULL);
        printf("closed: %s\n", cio_strerror(r));
        cio_future_unref(m);
    }
    close(till[0]);
    close(till[1]);
    cio_queue_free(orders);
    return err;
}

int main(void)
{
    int err = cio_run(restaurant, NULL);
    if (err)
        fprintf(stderr, "seeing_inside: %s\n", cio_strerror(err));
    return err ? 1 : 0;
}
