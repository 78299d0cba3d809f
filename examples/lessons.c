/* Chapter 12's pragmatic lessons, each shown on a few lines.
 *
 *   1. stop() is for run_forever: a task-based program ends by returning.
 *   2. gather before wait: wait leaves the unfinished futures to you.
 *   3. A queue is often the last resort: a known set of jobs is a task
 *      group, limited by a semaphore; errors come back to the parent.
 *   4. Every wait deserves a deadline.
 *   5. Loops in threads: one per thread, sharing nothing, and one door.
 *   6. No event loop policies: the running loop is the one this thread
 *      runs, or none.
 *   7. Low-level calls are for libraries: add_reader against a stream.
 * Durations differ by 50 ms or more, so the output is the same every run.
 */
#define _POSIX_C_SOURCE 200809L /* pipe, pthreads */
#include <cio.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int nap(void *arg) /* a job: sleeps, then succeeds */
{
    return cio_sleep(*(const double *)arg);
}

static int broken(void *arg) /* a job: sleeps, then fails */
{
    int err = cio_sleep(*(const double *)arg);
    return err ? err : -EIO;
}

static const double short_nap = 0.05, long_nap = 0.3;

/* ---- 1. stop() is for run_forever */

static int stops_the_loop(void *arg)
{
    (void)arg;
    cio_loop_stop(cio_get_running_loop()); /* wrong tool in a task */
    return cio_sleep(short_nap);
}

static int lesson_stop(void)
{
    printf("1. stop() under run_until_complete leaves the task unfinished\n");
    cio_loop *loop;
    cio_task *t;
    int err = cio_loop_new(&loop, NULL);
    if (err)
        return err;
    err = cio_task_new(loop, stops_the_loop, NULL, NULL, &t);
    if (!err) {
        int first = cio_loop_run_until_complete(loop, t);
        printf("  run_until_complete returned %s; the task is done: %s\n",
               cio_strerror(first), cio_future_done(t) ? "yes" : "no");
        err = cio_loop_run_until_complete(loop, t); /* finish it */
        printf("  run again: the task returned %d\n", err);
        cio_future_unref(t);
    }
    cio_loop_free(loop);
    return err;
}

/* ---- 5. loops in threads, and 6. no policies */

typedef struct handoff {
    cio_loop *main_loop; /* the loop to answer on: the only shared thing */
    cio_future *answer;  /* main's; set on main's loop only */
    int had_loop;        /* the worker saw a running loop before cio_run */
    int main_had;        /* main saw its loop inside cio_run */
    int own_loop;        /* inside cio_run, a loop that is not main's */
    pthread_t thread;
    int started;         /* thread is to be joined */
} handoff;

static void deliver(void *arg) /* runs on the main loop's thread */
{
    handoff *h = arg;
    cio_future_set_result(h->answer, h);
}

static int worker_main(void *arg)
{
    handoff *h = arg;
    h->own_loop = cio_get_running_loop() != h->main_loop;
    int err = cio_sleep(short_nap); /* its loop's own work */
    /* Never touch main's future from here: post to main's loop instead. */
    return err ? err : cio_call_soon_threadsafe(h->main_loop, deliver, h);
}

static void *worker(void *arg)
{
    handoff *h = arg;
    h->had_loop = cio_get_running_loop() != NULL;
    if (cio_run(worker_main, h) != 0) /* no answer: wake main anyway */
        cio_call_soon_threadsafe(h->main_loop, deliver, h);
    return NULL;
}

static int threads_task(void *arg)
{
    handoff *h = arg;
    h->main_loop = cio_get_running_loop();
    h->main_had = h->main_loop != NULL;
    int err = cio_future_new(NULL, &h->answer);
    if (err)
        return err;
    if (pthread_create(&h->thread, NULL, worker, h) != 0) {
        cio_future_unref(h->answer);
        return -EAGAIN;
    }
    h->started = 1;
    err = cio_await(h->answer, NULL);
    if (err) { /* cancelled (Ctrl-C): the worker will still post to us */
        cio_task_uncancel(cio_current_task());
        (void)cio_await(h->answer, NULL);
    }
    cio_future_unref(h->answer);
    return err;
}

static int lesson_threads(void)
{
    printf("5. loops in threads: each its own, sharing nothing\n");
    handoff h = {0};
    int err = cio_run(threads_task, &h);
    if (h.started)
        pthread_join(h.thread, NULL); /* blocks: never on a loop */
    if (err)
        return err;
    printf("  the worker ran a loop of its own: %s; its answer came to "
           "main's loop by call_soon_threadsafe\n", h.own_loop ? "yes" : "no");
    printf("6. no policies: a thread's running loop is the one it runs\n");
    printf("  main, inside cio_run: %s; after it returned: %s\n",
           h.main_had ? "its loop" : "none",
           cio_get_running_loop() ? "a loop" : "none");
    printf("  the worker thread, before its own cio_run: %s\n",
           h.had_loop ? "a loop" : "none");
    return 0;
}

/* ---- 2. gather before wait */

static int count_tasks(void)
{
    return cio_all_tasks(NULL, NULL, 0); /* unfinished tasks, this one too */
}

static int wait_task(void *arg)
{
    (void)arg;
    cio_task *t[2], *done[2], *pending[2];
    size_t nd, np;
    int err = cio_create_task(nap, (void *)&short_nap, &t[0]);
    if (err)
        return err;
    err = cio_create_task(nap, (void *)&long_nap, &t[1]);
    if (err) {
        cio_future_unref(t[0]);
        return err;
    }
    err = cio_wait(t, 2, CIO_FIRST_COMPLETED, CIO_NO_TIMEOUT, done, &nd,
                   pending, &np);
    printf("  wait: %zu done, %zu still running: ours to cancel and await\n",
           nd, np);
    for (size_t i = 0; i < np; i++) {
        cio_task_cancel(pending[i]);
        (void)cio_await(pending[i], NULL); /* -ECANCELED, and it is over */
    }
    cio_future_unref(t[0]);
    cio_future_unref(t[1]);
    cio_call calls[] = {{nap, (void *)&long_nap}, {broken, (void *)&short_nap}};
    int failed = cio_gather_calls(calls, 2, 0, NULL);
    printf("  gather_calls: %s; tasks left besides this one: %d\n",
           cio_strerror(failed), count_tasks() - 1);
    return err ? err : failed == -EIO ? 0 : -EPROTO;
}

static int lesson_gather(void)
{
    printf("2. gather before wait\n");
    return cio_run(wait_task, NULL);
}

/* ---- 3. a known set of jobs: a task group and a semaphore, no queue */

typedef struct limited {
    cio_semaphore *sem; /* at most its units run at once */
    double seconds;
    int fails;
} limited;

static int limited_job(void *arg)
{
    const limited *j = arg;
    CIO_SEMAPHORE_SCOPE(unit); /* given back however the job ends */
    int err = cio_semaphore_enter(&unit, j->sem);
    if (!err)
        err = cio_sleep(j->seconds);
    return err ? err : j->fails ? -EIO : 0;
}

static int group_task(void *arg)
{
    (void)arg;
    cio_semaphore sem;
    cio_semaphore_init(&sem, 2);
    limited jobs[] = {{&sem, 0.1, 0}, {&sem, 0.35, 0}, {&sem, 0.1, 1},
                      {&sem, 0.1, 0}};
    CIO_TASK_GROUP_SCOPE(g); /* joined and freed on every way out */
    int err = cio_task_group_new(&g);
    if (err)
        return err;
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++)
        if ((err = cio_task_group_spawn(g, limited_job, &jobs[i], NULL, NULL)))
            return cio_task_group_abort(g, err); /* children cancelled */
    int joined = cio_task_group_join(g);
    printf("  join returned %s; each job, in order:", cio_strerror(joined));
    for (size_t i = 0; i < cio_task_group_size(g); i++) {
        int st = cio_future_result(cio_task_group_task(g, i), NULL);
        printf(" %s", st ? cio_strerror(st) : "done");
    }
    printf("\n");
    return joined == -EIO ? 0 : -EPROTO;
}

static int lesson_group(void)
{
    printf("3. four jobs, two at a time; the third fails\n");
    return cio_run(group_task, NULL);
}

/* ---- 7. low level: add_reader and a hand-made line splitter */

typedef struct counter {
    int fd;
    int lines;
    cio_future *eof; /* the task waits here: callbacks cannot wait */
} counter;

static void on_readable(void *arg)
{
    counter *c = arg;
    char buf[64];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return; /* level-triggered: called again */
    for (ssize_t i = 0; i < n; i++)
        c->lines += buf[i] == '\n';
    if (n <= 0) { /* EOF or an error: stop watching, wake the task */
        cio_remove_reader(cio_get_running_loop(), c->fd);
        cio_future_set_result(c->eof, NULL);
    }
}

static int count_lines_low(int fd, int *lines)
{
    counter c = {fd, 0, NULL};
    int err = cio_future_new(NULL, &c.eof);
    if (!err)
        err = cio_add_reader(cio_get_running_loop(), fd, on_readable, &c);
    if (!err)
        err = cio_await(c.eof, NULL);
    if (err) /* a watcher must not outlive c */
        cio_remove_reader(cio_get_running_loop(), fd);
    cio_future_unref(c.eof);
    *lines = c.lines;
    return err;
}

/* The same with a child's stdout stream: readline does the buffering. */
static int count_lines_stream(int *lines)
{
    const char *const argv[] = {"printf", "one\\ntwo\\nthree\\n", NULL};
    cio_process_options opts = {.out = {.kind = CIO_STDIO_PIPE}};
    cio_process *p;
    int err = cio_create_subprocess_exec(argv, &opts, &p);
    if (err)
        return err;
    const char *line;
    ssize_t n;
    *lines = 0;
    while ((n = cio_stream_readline(cio_process_stdout(p), &line)) > 0)
        (*lines)++;
    int code;
    int waited = cio_process_wait(p, &code);
    cio_process_free(p);
    return n < 0 ? (int)n : waited;
}

static int low_level_task(void *arg)
{
    (void)arg;
    int fds[2], low = 0, high = 0;
    if (pipe(fds) < 0)
        return -errno;
    const char text[] = "one\ntwo\nthree\n"; /* fits in the pipe at once */
    ssize_t w = write(fds[1], text, strlen(text));
    close(fds[1]); /* the reader sees EOF after the text */
    int err = w < 0 ? -errno : count_lines_low(fds[0], &low);
    close(fds[0]);
    if (!err)
        err = count_lines_stream(&high);
    if (!err)
        printf("  add_reader, read and a counter: %d lines; a stream's "
               "readline: %d lines\n", low, high);
    return err;
}

static int lesson_low_level(void)
{
    printf("7. the same lines read low and high\n");
    return cio_run(low_level_task, NULL);
}

/* ---- 4. a deadline around a wait that might never end */

static int deadline_task(void *arg)
{
    (void)arg;
    CIO_TIMEOUT_SCOPE(s); /* ends itself on every way out */
    int err = cio_timeout(&s, 0.1);
    if (err)
        return err;
    err = cio_sleep(3600); /* stands for a peer that never answers */
    int expired = cio_timeout_end(&s);
    printf("  the wait returned %s, and so did the scope: %s\n",
           cio_strerror(err), cio_strerror(expired));
    return err == -ETIMEDOUT ? 0 : -EPROTO;
}

static int lesson_deadline(void)
{
    printf("4. every wait deserves a deadline\n");
    return cio_run(deadline_task, NULL);
}

int main(void)
{
    int (*const lessons[])(void) = {lesson_stop,     lesson_gather,
                                    lesson_group,    lesson_deadline,
                                    lesson_threads,  lesson_low_level};
    int err = 0;
    for (size_t i = 0; !err && i < sizeof lessons / sizeof lessons[0]; i++)
        err = lessons[i]();
    if (err)
        fprintf(stderr, "lessons: %s\n", cio_strerror(err));
    return err ? 1 : 0;
}
