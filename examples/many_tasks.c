/* Running many tasks: gather, wait, wait_for, as_completed, shield,
 * timeout scopes and task groups, each on the same small jobs.
 *
 * A job sleeps for a while (standing for a download) and then succeeds
 * with its name as value, or fails. Which tool to reach for:
 *   - all results, in order, stop at the first failure: gather;
 *   - results as they come: as_completed;
 *   - the first one, or whatever is done by a deadline: wait;
 *   - one thing, but not for longer than this: wait_for, or a timeout
 *     scope around several steps;
 *   - something that must finish even if we are cancelled: shield;
 *   - tasks that live and die together (one fails, all stop): a group.
 * The durations differ by 100 ms or more, so the order is the same on
 * every run.
 */
#define _POSIX_C_SOURCE 200809L
#include <cio.h>

#include <stdio.h>

typedef struct job {
    const char *name;
    double seconds;
    int fails; /* 1: fails with -EIO after its sleep */
} job;

static int run_job(void *arg)
{
    const job *j = arg;
    int err = cio_sleep(j->seconds);
    if (err)
        return err; /* cancelled, or a timeout scope expired */
    if (j->fails)
        return -EIO;
    cio_task_set_value((void *)j->name);
    return 0;
}

static job slow = {"slow", 0.3, 0}, medium = {"medium", 0.2, 0},
           quick = {"quick", 0.1, 0}, broken = {"broken", 0.15, 1};

/* Starts each job as a task: the caller unrefs them (unref_all). */
static int start_all(job *const *jobs, cio_task **tasks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int err = cio_create_task(run_job, jobs[i], &tasks[i]);
        if (err) {
            while (i--)
                cio_future_unref(tasks[i]);
            return err;
        }
    }
    return 0;
}

static void unref_all(cio_task **tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cio_future_unref(tasks[i]);
}

/* ---- gather: every result, in the order asked for */

static int show_gather(void)
{
    cio_call calls[] = {{run_job, &slow}, {run_job, &quick}, {run_job, &medium}};
    cio_result r[3];
    int err = cio_gather_calls(calls, 3, 0, r);
    printf("gather: %s %s %s\n", (char *)r[0].value, (char *)r[1].value,
           (char *)r[2].value); /* argument order, not finishing order */
    calls[1].arg = &broken;      /* one fails: the others are cancelled */
    int failed = cio_gather_calls(calls, 3, 0, r);
    printf("gather with a failure: %s\n", cio_strerror(failed));
    return err;
}

/* ---- as_completed: each result as soon as it is there */

static int show_as_completed(void)
{
    job *jobs[] = {&slow, &quick, &medium};
    cio_task *tasks[3];
    int err = start_all(jobs, tasks, 3);
    if (err)
        return err;
    cio_as_completed *it;
    err = cio_as_completed_new(tasks, 3, 5.0, &it);
    printf("as_completed:");
    cio_future *f;
    while (!err && (err = cio_as_completed_next(it, &f)) == 1) {
        void *name;
        err = cio_future_result(f, &name);
        printf(" %s", err ? cio_strerror(err) : (char *)name);
    }
    printf("\n");
    cio_as_completed_free(it);
    unref_all(tasks, 3);
    return err;
}

/* ---- wait: the first to finish, then whatever is done by a deadline */

static int show_wait(void)
{
    job *jobs[] = {&slow, &quick, &medium};
    cio_task *tasks[3];
    int err = start_all(jobs, tasks, 3);
    if (err)
        return err;
    cio_future *done[3], *pending[3];
    size_t ndone, npending;
    err = cio_wait(tasks, 3, CIO_FIRST_COMPLETED, 5.0, done, &ndone, pending,
                   &npending);
    printf("wait FIRST_COMPLETED: %zu done, %zu pending\n", ndone, npending);
    if (!err) /* 0.15 s more: medium finishes, slow does not */
        err = cio_wait(pending, npending, CIO_ALL_COMPLETED, 0.15, done,
                       &ndone, pending, &npending);
    printf("wait with a timeout: %zu done, %zu still pending\n", ndone,
           npending);
    for (size_t i = 0; i < npending; i++) /* wait does not cancel them */
        cio_task_cancel(pending[i]);
    unref_all(tasks, 3);
    return err;
}

/* ---- wait_for and shield: a deadline for one thing */

static int show_wait_for(void)
{
    cio_task *t;
    int err = cio_create_task(run_job, &slow, &t);
    if (err)
        return err;
    int r = cio_wait_for(t, 0.1, NULL); /* too slow: cancelled */
    printf("wait_for a slow job: %s (the job: %s)\n", cio_strerror(r),
           cio_strerror(cio_future_result(t, NULL)));
    cio_future_unref(t);

    /* The same deadline around a shield: we stop waiting, the job goes
     * on (saving a file should not be cut in half by our impatience). */
    cio_future *shielded;
    if ((err = cio_create_task(run_job, &medium, &t)) ||
        (err = cio_shield(t, &shielded)))
        return err;
    r = cio_wait_for(shielded, 0.1, NULL);
    void *name;
    err = cio_await(t, &name);
    printf("wait_for a shielded job: %s; the job still finished: %s\n",
           cio_strerror(r), err ? cio_strerror(err) : (char *)name);
    cio_future_unref(shielded);
    cio_future_unref(t);
    return err;
}

/* ---- timeout scopes: one deadline over several steps */

static int show_scopes(void)
{
    CIO_TIMEOUT_SCOPE(outer);
    int err = cio_timeout(&outer, 1.0);
    if (err)
        return err;
    {
        CIO_TIMEOUT_SCOPE(inner);
        if ((err = cio_timeout(&inner, 0.15)))
            return err;
        int r = run_job(&quick);        /* 0.1 s: in time... */
        if (r == 0)
            r = run_job(&quick);        /* ...the second step is not */
        printf("inner scope: %s, expired: %d\n", cio_strerror(r),
               cio_timeout_expired(&inner));
    }
    /* Moving a deadline: more time for the slow step. */
    CIO_TIMEOUT_SCOPE(moved);
    if ((err = cio_timeout(&moved, 0.1)))
        return err;
    cio_timeout_reschedule(&moved, cio_timeout_when(&moved) + 0.3);
    int r = run_job(&slow);
    printf("rescheduled scope: %s\n", cio_strerror(r));
    cio_timeout_end(&moved);
    printf("outer scope: %s\n", cio_strerror(cio_timeout_end(&outer)));
    return 0;
}

/* ---- task groups: tasks that stand or fall together */

static int show_group(job *const *jobs, size_t n, int body_error)
{
    CIO_TASK_GROUP_SCOPE(g); /* freed (and joined) on every way out */
    int err = cio_task_group_new(&g);
    if (err)
        return err;
    for (size_t i = 0; i < n; i++)
        if ((err = cio_task_group_spawn(g, run_job, jobs[i], NULL, NULL)))
            return cio_task_group_abort(g, err); /* children cancelled */
    if (body_error) { /* the body itself fails, as a raise would */
        (void)cio_sleep(0.05);
        cio_task_group_abort(g, body_error);
    }
    int joined = cio_task_group_join(g);
    printf("task group: %s;", cio_strerror(joined));
    for (size_t i = 0; i < cio_task_group_size(g); i++)
        printf(" %s=%s", jobs[i]->name,
               cio_strerror(cio_future_result(cio_task_group_task(g, i),
                                              NULL)));
    printf("\n");
    return 0;
}

static int main_task(void *arg)
{
    (void)arg;
    job *fine[] = {&quick, &medium}, *one_fails[] = {&slow, &broken, &quick};
    int err = show_gather();
    if (!err)
        err = show_as_completed();
    if (!err)
        err = show_wait();
    if (!err)
        err = show_wait_for();
    if (!err)
        err = show_scopes();
    if (!err)
        err = show_group(fine, 2, 0);
    if (!err)
        err = show_group(one_fails, 3, 0);
    if (!err)
        err = show_group(fine, 2, -EPROTO);
    return err;
}

int main(void) { return cio_run(main_task, NULL) == 0 ? 0 : 1; }
