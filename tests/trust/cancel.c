/* make cancel: each scenario's tasks cancelled at every step, checking the
 * primitive's invariants.
 *
 * A step is any point where a task is about to wait, has just done an
 * operation that may wake another (a release, a put, a notify), or the
 * loop is between iterations (every task parked). The harness first runs
 * a scenario untouched to count its steps S; then, for every task i and
 * every step k <= S, runs it afresh with task i cancelled at step k; then
 * seeded random schedules cancel several tasks at random steps. Checked:
 *  - one holder (lock), never more holders than units (semaphore), and
 *    every unit back at the end (units conserved);
 *  - tasks that were not cancelled get the lock in the order they asked;
 *  - every item put comes out exactly once (queue, condition);
 *  - a task cancelled before it finished ends with -ECANCELED (a cancel is
 *    never swallowed), and one never cancelled ends with 0;
 *  - nothing waits forever: when the loop is idle with tasks unfinished,
 *    the scenario may only be waiting for something that can no longer
 *    come (then it is shut down and must finish).
 * A planted lost hand-off (make cancel builds with -DCIO_PLANT_BUG_LOCK,
 * _SEMAPHORE, _CONDITION, _QUEUE) must make this program fail.
 *
 * usage: cancel [random schedules per scenario]; prints a table. */
#define _GNU_SOURCE
#include "../../src/internal.h"

#include <stdatomic.h>
#include <unistd.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TASKS = 4, MAX_CANCELS = 3, IDLE_LIMIT = 3, STEP_LIMIT = 100000 };

/* ----------------------------------------------------------- schedules */

typedef struct schedule {
    long at[MAX_CANCELS];      /* steps at which to cancel ... */
    int victim[MAX_CANCELS];   /* ... these tasks */
    int n;
} schedule;

typedef struct world {
    cio_loop *loop;
    cio_task *task[TASKS];
    int ntasks;
    long step;
    const schedule *sched;
    bool cancelled[TASKS];     /* cancel was requested while it ran */
    int result[TASKS];
    bool done[TASKS];
    char failure[256];
} world;

static world W;

static void fail(const char *fmt, ...)
{
    if (W.failure[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(W.failure, sizeof W.failure, fmt, ap);
    va_end(ap);
}

/* A step: cancels whichever tasks the schedule names for it. */
static void tick(void)
{
    W.step++;
    for (int i = 0; W.sched && i < W.sched->n; i++)
        if (W.sched->at[i] == W.step) {
            int v = W.sched->victim[i];
            if (W.task[v] && !cio_future_done(W.task[v])) {
                W.cancelled[v] = true;
                cio_task_cancel(W.task[v]);
            }
        }
}

/* ----------------------------------------------------------- scenarios */

typedef struct scenario {
    const char *name;
    int ntasks;                /* tasks the harness starts */
    bool propagates;           /* a cancel may end other tasks too */
    double idle_wait;          /* idle: wait this long for a thread first */
    void (*setup)(void);
    cio_task_fn body;          /* arg: the task's index */
    bool (*unstick)(void);     /* idle with tasks waiting: true if allowed */
    void (*check)(void);       /* after every task finished */
    void (*teardown)(void);
} scenario;

static int index_of(void *arg) { return (int)(intptr_t)arg; }

/* Waits (steps around it), so cancellation can land on either side. */
static int yield(void)
{
    tick();
    int r = cio_sleep(0);
    tick();
    return r;
}

/* --- lock: one holder, FIFO among those not cancelled */

static cio_lock lk;
static int holders, arrived[TASKS], got_lock[TASKS], narrived, ngot;

static void lock_setup(void)
{
    cio_lock_init(&lk);
    holders = narrived = ngot = 0;
}

static int lock_body(void *arg)
{
    int i = index_of(arg);
    int r = yield();
    if (r)
        return r;
    arrived[narrived++] = i;
    tick();
    if ((r = cio_lock_acquire(&lk)))
        return r;
    got_lock[ngot++] = i;
    if (++holders != 1)
        fail("%d holders of the lock", holders);
    r = yield();
    holders--;
    cio_lock_release(&lk);
    tick();
    return r;
}

static void lock_check(void)
{
    /* Who got the lock, in order, is who asked, in order, less the tasks
     * cancelled before they got it. */
    int k = 0;
    for (int a = 0; a < narrived; a++) {
        int i = arrived[a];
        if (k < ngot && got_lock[k] == i)
            k++;
        else if (!W.cancelled[i])
            fail("task %d asked for the lock and never got it in turn", i);
    }
    if (k != ngot)
        fail("the lock went out of order");
    if (cio_lock_locked(&lk))
        fail("the lock is still held at the end");
}

/* --- semaphore: at most 2 holders, both units back at the end */

static cio_semaphore sem;
static int sem_holders;

static void sem_setup(void)
{
    cio_semaphore_init(&sem, 2);
    sem_holders = 0;
}

static int sem_body(void *arg)
{
    (void)arg;
    tick();
    int r = cio_semaphore_acquire(&sem);
    if (r)
        return r;
    if (++sem_holders > 2)
        fail("%d holders of 2 units", sem_holders);
    r = yield();
    sem_holders--;
    cio_semaphore_release(&sem);
    tick();
    return r;
}

static int sem_drain(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2; i++)
        if (cio_semaphore_locked(&sem))
            fail("a unit was lost: %d of 2 back", i);
        else
            cio_semaphore_acquire(&sem);
    return 0;
}

static void run_task(cio_task_fn fn)
{
    cio_task *t;
    if (cio_task_new(W.loop, fn, NULL, NULL, &t) == 0) {
        cio_loop_run_until_complete(W.loop, t);
        cio_future_unref(t);
    }
}

static void sem_check(void) { run_task(sem_drain); }

/* --- queue: 2 producers, 2 consumers; every item put comes out once */

static cio_queue *q;
static int put_count[16], got_count[16];
static bool q_closed;

static void queue_setup(void)
{
    cio_queue_new(&q, sizeof(int), 1);
    memset(put_count, 0, sizeof put_count);
    memset(got_count, 0, sizeof got_count);
    q_closed = false;
}

static int queue_body(void *arg)
{
    int i = index_of(arg), r = 0;
    if (i < 2) { /* a producer of items i*4 .. i*4+3 */
        for (int k = 0; k < 4 && !r; k++) {
            int item = i * 4 + k;
            tick();
            if (!(r = cio_queue_put(q, &item)))
                put_count[item]++;
            tick();
        }
        return r == -ESHUTDOWN ? 0 : r;
    }
    for (;;) {
        int item;
        tick();
        r = cio_queue_get(q, &item);
        if (r)
            return r == -ESHUTDOWN ? 0 : r;
        got_count[item]++;
        tick();
    }
}

/* Idle with tasks waiting: fine if nobody is left to serve them - the
 * queue is empty and the producers are done, or the consumers are all
 * gone; then it is shut down, so the rest finish. Items left with a
 * consumer waiting are a lost hand-off. */
static bool queue_unstick(void)
{
    bool producers = W.done[0] && W.done[1];
    bool consumers = W.done[2] && W.done[3];
    if (q_closed || !((producers && cio_queue_qsize(q) == 0) || consumers))
        return false;
    q_closed = true;
    cio_queue_shutdown(q, 0);
    return true;
}

static void queue_check(void)
{
    int left;
    while (cio_queue_get_nowait(q, &left) == 0)
        got_count[left]++;
    for (int k = 0; k < 8; k++)
        if (put_count[k] != got_count[k])
            fail("item %d put %d times, taken %d times", k, put_count[k],
                 got_count[k]);
}

static void queue_teardown(void) { cio_queue_free(q); }

/* --- condition: 3 waiters, one notifier; every item taken once */

static cio_condition cond;
static int items, taken, produced;
static bool cond_closed;

static void cond_setup(void)
{
    cio_condition_init(&cond, NULL);
    items = taken = produced = 0;
    cond_closed = false;
}

static int cond_body(void *arg)
{
    int i = index_of(arg), r;
    tick();
    if ((r = cio_condition_acquire(&cond)))
        return r;
    if (i == 0) { /* the notifier: 3 items, one notify each */
        for (int k = 0; k < 3 && !r; k++) {
            items++;
            produced++;
            cio_condition_notify(&cond, 1);
            tick();
            cio_condition_release(&cond);
            r = yield();
            int a = cio_condition_acquire(&cond);
            r = r ? r : a;
            if (a)
                return r;
        }
    } else {
        while (!r && items == 0 && !cond_closed) {
            tick();
            r = cio_condition_wait(&cond);
        }
        if (!r && items > 0) {
            items--;
            taken++;
        }
    }
    cio_condition_release(&cond);
    tick();
    return r;
}

static int closer(void *arg)
{
    (void)arg;
    int r = cio_condition_acquire(&cond);
    if (!r) {
        cio_condition_notify_all(&cond);
        cio_condition_release(&cond);
    }
    return r;
}

/* Idle with waiters: fine once no item is left and the notifier is done;
 * then they are all woken to leave. An item left with a waiter asleep is
 * a lost notification. */
static bool cond_unstick(void)
{
    if (items != 0 || !W.done[0] || cond_closed)
        return false;
    cond_closed = true;
    cio_task *t; /* notifying takes the lock, so a task does it */
    if (cio_task_new(W.loop, closer, NULL, NULL, &t))
        abort();
    cio_future_unref(t);
    return true;
}

static void cond_check(void)
{
    if (taken + items != produced)
        fail("%d produced, %d taken, %d left", produced, taken, items);
    bool waiter_gone = false; /* a cancelled waiter may leave one behind */
    for (int i = 1; i < W.ntasks; i++)
        waiter_gone |= W.cancelled[i];
    if (items && !waiter_gone)
        fail("%d items left with every waiter served", items);
}

/* --- event: waiters all wake once it is set */

static cio_event ev;

static void event_setup(void) { cio_event_init(&ev); }

/* Idle with waiters: fine if the setter was cancelled before it set it
 * (then it is set here); waiters asleep on a set event are lost. */
static bool event_unstick(void)
{
    if (!W.done[0] || cio_event_is_set(&ev))
        return false;
    cio_event_set(&ev);
    return true;
}

static int event_body(void *arg)
{
    int i = index_of(arg);
    if (i == 0) {
        int r = yield();
        cio_event_set(&ev);
        tick();
        return r;
    }
    tick();
    return cio_event_wait(&ev);
}

static void nothing(void) {}

static bool any_cancelled(void)
{
    for (int i = 0; i < W.ntasks; i++)
        if (W.cancelled[i])
            return true;
    return false;
}

/* A child: two steps of work. */
static int child(void)
{
    int r = yield();
    return r ? r : yield();
}

/* --- gather: task 0 gathers 1 and 2; cancelling it cancels them */

static int gather_body(void *arg)
{
    int i = index_of(arg);
    if (i != 0)
        return child();
    tick();
    cio_future *f[2] = {W.task[1], W.task[2]};
    int r = cio_gather(f, 2, 0, NULL);
    tick();
    /* A cancelled child fails the gather with -ECANCELED: expected. */
    return r == -ECANCELED && !W.cancelled[0] && any_cancelled() ? 0 : r;
}

static void gather_check(void)
{
    if (W.cancelled[0] && W.result[0] == -ECANCELED)
        for (int i = 1; i < 3; i++)
            if (W.result[i] != -ECANCELED && W.result[i] != 0)
                fail("child %d of a cancelled gather ended with %d", i,
                     W.result[i]);
}

/* --- task group: task 0 spawns two children (tasks 1 and 2) */

static void adopt(int i, cio_task *t);

static int group_child(void *arg)
{
    (void)arg;
    int r = child();
    return r ? r : cio_sleep(0); /* a cancel at its last step shows too */
}

static int group_body(void *arg)
{
    (void)arg;
    cio_task_group *g;
    tick();
    int r = cio_task_group_new(&g);
    if (r)
        return r;
    for (int i = 1; i < 3 && !r; i++) {
        cio_task *t;
        if (!(r = cio_task_group_spawn(g, group_child, NULL, NULL, &t)))
            adopt(i, t);
    }
    tick();
    int j = cio_task_group_join(g);
    tick();
    cio_task_group_free(g);
    r = r ? r : j;
    return r == -ECANCELED && !W.cancelled[0] && any_cancelled() ? 0 : r;
}

/* --- shield: cancelling task 0's wait leaves task 1 running */

static int shield_body(void *arg)
{
    int i = index_of(arg);
    if (i != 0)
        return child();
    cio_future *sh;
    tick();
    int r = cio_shield(W.task[1], &sh);
    if (r)
        return r;
    r = cio_await(sh, NULL);
    tick();
    cio_future_unref(sh);
    return r == -ECANCELED && !W.cancelled[0] && W.cancelled[1] ? 0 : r;
}

/* --- wait_for: task 0 waits for 1 (no deadline), task 2 for 3 (none left) */

static int wait_for_body(void *arg)
{
    int i = index_of(arg);
    if (i == 1 || i == 3)
        return child();
    tick();
    if (i == 2 && !cio_future_done(W.task[3]) &&
        !cio_task_cancelling(cio_current_task()))
        W.cancelled[3] = true; /* wait_for's timeout is now: it cancels */
    int r = cio_wait_for(W.task[i + 1], i == 0 ? 1e9 : 0, NULL);
    tick();
    if (i == 2 && r == -ETIMEDOUT)
        r = 0; /* the deadline was now: expected */
    return r == -ECANCELED && !W.cancelled[i] && W.cancelled[i + 1] ? 0 : r;
}

/* --- timeout scope: one that never expires, one that expires at once */

static int scope_body(void *arg)
{
    int i = index_of(arg);
    cio_timeout_scope sc;
    tick();
    int r = cio_timeout(&sc, i == 0 ? 1e9 : 0);
    if (r)
        return r;
    for (int k = 0; k < 3 && !r; k++)
        r = yield();
    int e = cio_timeout_end(&sc);
    if (i == 1 && r == -ETIMEDOUT && e == -ETIMEDOUT)
        r = 0; /* expired, as it must */
    else if (i == 1 && !r)
        fail("a scope with no time left never expired");
    if (r == -ETIMEDOUT && W.cancelled[i])
        fail("task %d: cancelled, but its scope said -ETIMEDOUT", i);
    return r ? r : (i == 0 ? e : 0);
}

/* --- barrier: 3 parties, 2 rounds; a round passes all 3 or none */

static cio_barrier bar;
static int passed[2][3];
static bool bar_aborted;

static void barrier_setup(void)
{
    cio_barrier_init(&bar, 3);
    memset(passed, 0, sizeof passed);
    bar_aborted = false;
}

static int barrier_body(void *arg)
{
    (void)arg;
    for (int round = 0; round < 2; round++) {
        tick();
        int r = cio_barrier_wait(&bar);
        tick();
        if (r == CIO_EBROKEN && bar_aborted)
            return 0; /* a party was cancelled away: expected */
        if (r < 0)
            return r;
        if (r >= 3 || passed[round][r]++)
            fail("arrival index %d twice in round %d", r, round);
    }
    return 0;
}

/* A party cancelled away leaves the rest waiting for good: abort. */
static bool barrier_unstick(void)
{
    if (!any_cancelled() || bar_aborted)
        return false;
    bar_aborted = true;
    cio_barrier_abort(&bar);
    return true;
}

/* A round passes all 3 parties, or fewer only when one was cancelled: a
 * waiter cancelled but not yet run still counts (asyncio's window too:
 * its count drops in wait()'s finally, when it runs). */
static void barrier_check(void)
{
    for (int round = 0; round < 2; round++) {
        int n = passed[round][0] + passed[round][1] + passed[round][2];
        if (n != 0 && n != 3 && !any_cancelled())
            fail("%d of 3 parties passed round %d", n, round);
    }
}

/* --- stream read: task 0 writes lines, task 1 reads them; bytes conserved */

static cio_stream *rs;
static int wfd;
static char sent[256], got[256];
static size_t nsent, ngotb;

static void stream_setup(void)
{
    int p[2];
    if (pipe(p) || cio__stream_pipe(W.loop, p[0], false, 0, &rs))
        abort();
    wfd = p[1];
    nsent = ngotb = 0;
}

static int stream_body(void *arg)
{
    int i = index_of(arg), r = 0;
    if (i == 0) {
        for (int k = 0; k < 4 && !r; k++) {
            char line[16];
            int n = snprintf(line, sizeof line, "line %d\n", k);
            if (write(wfd, line, (size_t)n) != n)
                abort();
            memcpy(sent + nsent, line, (size_t)n);
            nsent += (size_t)n;
            r = yield();
        }
        close(wfd); /* EOF, cancelled or not */
        wfd = -1;
        return r;
    }
    for (;;) {
        const char *line;
        char buf[3];
        tick();
        ssize_t n = i == 1 ? cio_stream_readline(rs, &line)
                           : cio_stream_read(rs, buf, sizeof buf);
        tick();
        if (n == -EBUSY && i == 2)
            return 0; /* the line reader was waiting: one at a time */
        if (n <= 0)
            return (int)n;
        memcpy(got + ngotb, i == 1 ? line : buf, (size_t)n);
        ngotb += (size_t)n;
        if (i == 2)
            return 0; /* one read, racing the line reader */
    }
}

/* The writer was cancelled before it ran, so it never closed its end. */
static bool stream_unstick(void)
{
    if (!W.done[0] || wfd < 0)
        return false;
    close(wfd);
    wfd = -1;
    return true;
}

static int read_rest(void *arg)
{
    (void)arg;
    char *rest;
    ssize_t n = cio_stream_read_all(rs, &rest);
    if (n > 0)
        memcpy(got + ngotb, rest, (size_t)n), ngotb += (size_t)n;
    if (n >= 0)
        cio_free(rest);
    return 0;
}

static void stream_check(void)
{
    stream_unstick(); /* everyone gone before the writer ran */
    run_task(read_rest);
    if (ngotb != nsent || memcmp(got, sent, nsent) != 0)
        fail("%zu bytes sent, %zu read (lost or doubled)", nsent, ngotb);
}

static void stream_teardown(void)
{
    cio_stream_free(rs);
    if (wfd >= 0)
        close(wfd);
    for (int k = 0; k < 10; k++)
        cio_loop_run_once(W.loop, 0);
}

/* --- executor: tasks run work in threads; cancelled waits drop results */

static atomic_int ran;

static int work(void *arg)
{
    (void)arg;
    atomic_fetch_add(&ran, 1);
    return 5;
}

static int executor_body(void *arg)
{
    (void)arg;
    tick();
    int r = cio_to_thread(work, NULL);
    tick();
    if (r >= 0 && r != 5)
        fail("to_thread returned %d, the work said 5", r);
    return r < 0 ? r : 0;
}

static void executor_check(void)
{
    cio__executor_shutdown_default(W.loop, 30);
    int n = atomic_load(&ran);
    int ok = 0;
    for (int i = 0; i < W.ntasks; i++)
        ok += W.result[i] == 0;
    if (n < ok)
        fail("%d results came back from %d runs of the work", ok, n);
    atomic_store(&ran, 0);
}

static const scenario scenarios[] = {
    {"lock", 4, false, 0, lock_setup, lock_body, NULL, lock_check, nothing},
    {"semaphore", 4, false, 0, sem_setup, sem_body, NULL, sem_check, nothing},
    {"queue", 4, false, 0, queue_setup, queue_body, queue_unstick,
     queue_check, queue_teardown},
    {"condition", 4, false, 0, cond_setup, cond_body, cond_unstick,
     cond_check, nothing},
    {"event", 3, false, 0, event_setup, event_body, event_unstick, nothing,
     nothing},
    {"gather", 3, true, 0, nothing, gather_body, NULL, gather_check,
     nothing},
    {"task group", 1, true, 0, nothing, group_body, NULL, nothing, nothing},
    {"shield", 2, false, 0, nothing, shield_body, NULL, nothing, nothing},
    {"wait_for", 4, true, 0, nothing, wait_for_body, NULL, nothing, nothing},
    {"timeout scope", 2, false, 0, nothing, scope_body, NULL, nothing,
     nothing},
    {"barrier", 3, false, 0, barrier_setup, barrier_body, barrier_unstick,
     barrier_check, nothing},
    {"stream read", 3, false, 0, stream_setup, stream_body, stream_unstick,
     stream_check, stream_teardown},
    {"executor", 3, false, 5.0, nothing, executor_body, NULL,
     executor_check, nothing},
};

/* ----------------------------------------------------------- the runs */

static const scenario *SC; /* the scenario running */

static void on_done(cio_future *f, void *arg)
{
    int i = index_of(arg);
    W.done[i] = true;
    W.result[i] = cio_future_result(f, NULL);
}

/* Every task ends with one more suspension point, so a cancel requested
 * at any step before shows in its result (never swallowed). */
static int root(void *arg)
{
    int r = SC->body(arg);
    return r ? r : cio_sleep(0);
}

/* A task the scenario started (task i from now on); the harness holds a
 * reference until the run ends. */
static void adopt(int i, cio_task *t)
{
    cio_future_ref(t);
    W.task[i] = t;
    if (i >= W.ntasks)
        W.ntasks = i + 1;
    cio_future_add_done_callback(t, on_done, (void *)(intptr_t)i);
}

/* Runs the loop until every task is done; false if it got stuck. */
static bool run_to_end(const scenario *sc)
{
    int idle = 0;
    for (long n = 0; n < STEP_LIMIT; n++) {
        bool all = true;
        for (int i = 0; i < W.ntasks; i++)
            all &= W.done[i];
        if (all)
            return true;
        tick();
        idle = cio_loop_run_once(W.loop, 0) > 0 ? 0 : idle + 1;
        if (idle == IDLE_LIMIT && sc->idle_wait > 0 &&
            cio_loop_run_once(W.loop, sc->idle_wait) > 0)
            idle = 0; /* a thread's result came */
        if (idle == IDLE_LIMIT) {
            if (!sc->unstick || !sc->unstick())
                return false;
            idle = 0;
        }
    }
    return false;
}

static void check_results(const scenario *sc)
{
    bool spread = sc->propagates && any_cancelled();
    for (int i = 0; i < W.ntasks; i++) {
        int r = W.result[i];
        if (W.cancelled[i] && r != -ECANCELED)
            fail("cancelled task %d ended with %d (swallowed)", i, r);
        if (!W.cancelled[i] && r != 0 && !(spread && r == -ECANCELED))
            fail("task %d, never cancelled, ended with %d", i, r);
    }
}

/* One run; returns its steps, or -1 with W.failure set. */
static long run_once(const scenario *sc, const schedule *s)
{
    memset(&W, 0, sizeof W);
    SC = sc;
    W.sched = s;
    W.ntasks = sc->ntasks;
    if (cio_loop_new(&W.loop, NULL))
        abort();
    sc->setup();
    for (int i = 0; i < sc->ntasks; i++) {
        if (cio_task_new(W.loop, root, (void *)(intptr_t)i, NULL, &W.task[i]))
            abort();
        cio_future_add_done_callback(W.task[i], on_done, (void *)(intptr_t)i);
    }
    if (!run_to_end(sc))
        fail("stuck: tasks wait forever");
    else {
        check_results(sc);
        sc->check();
    }
    for (int i = 0; i < W.ntasks; i++)
        cio_future_unref(W.task[i]);
    sc->teardown();
    cio_loop_free(W.loop);
    return W.failure[0] ? -1 : W.step;
}

typedef struct tally {
    long runs, bad;
} tally;

static void one(const scenario *sc, const schedule *s, tally *t)
{
    t->runs++;
    if (run_once(sc, s) >= 0)
        return;
    if (t->bad++ < 3) {
        fprintf(stderr, "%s: %s (cancels:", sc->name, W.failure);
        for (int i = 0; i < s->n; i++)
            fprintf(stderr, " task %d at step %ld", s->victim[i], s->at[i]);
        fprintf(stderr, ")\n");
    }
}

int main(int argc, char **argv)
{
    long randoms = argc > 1 ? atol(argv[1]) : 200;
    if (argc > 4) { /* replay one: cancel SCENARIO TASK STEP */
        const scenario *sc = &scenarios[atoi(argv[2])];
        schedule s = {.at = {atol(argv[4])}, .victim = {atoi(argv[3])}, .n = 1};
        long r = run_once(sc, &s);
        printf("%s: %ld %s\n", sc->name, r, W.failure);
        return r < 0;
    }
    long total_runs = 0, total_bad = 0;
    printf("| scenario | steps | runs (every task, every step) | random runs "
           "| bad |\n| --- | ---: | ---: | ---: | ---: |\n");
    for (size_t k = 0; k < sizeof scenarios / sizeof scenarios[0]; k++) {
        const scenario *sc = &scenarios[k];
        const char *only = getenv("CANCEL_ONLY"); /* one scenario, by name */
        if (only && strcmp(only, sc->name) != 0)
            continue;
        schedule none = {.n = 0};
        tally every = {0, 0}, rnd = {0, 0};
        long steps = run_once(sc, &none);
        if (steps < 0) {
            fprintf(stderr, "%s: untouched run: %s\n", sc->name, W.failure);
            every.bad++;
            steps = 0;
        }
        int tasks = W.ntasks; /* with those the scenario started */
        for (int i = 0; i < tasks; i++)
            for (long at = 1; at <= steps; at++) {
                schedule s = {.at = {at}, .victim = {i}, .n = 1};
                one(sc, &s, &every);
            }
        srand(12345 + (unsigned)k); /* seeded: a failure replays */
        for (long r = 0; r < randoms && steps; r++) {
            schedule s = {.n = 1 + rand() % MAX_CANCELS};
            for (int c = 0; c < s.n; c++) {
                s.at[c] = 1 + rand() % steps;
                s.victim[c] = rand() % tasks;
            }
            one(sc, &s, &rnd);
        }
        printf("| %s | %ld | %ld | %ld | %ld |\n", sc->name, steps, every.runs,
               rnd.runs, every.bad + rnd.bad);
        total_runs += every.runs + rnd.runs;
        total_bad += every.bad + rnd.bad;
    }
    printf("| **total** | | %ld | | **%ld** |\n", total_runs, total_bad);
    return total_bad ? 1 : 0;
}
