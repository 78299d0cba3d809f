/* The top floor: asyncio's runners (cio_run, run_until_complete) and the
 * loop's whole teardown. This is the only file that knows every
 * subsystem; each one below knows only the floors under it, and is told
 * about the loop's end by the closer called here.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

/* ---------------------------------------------------------- the teardown
 * Order matters: each step may still need what the later ones tear down.
 * Threads first (nobody may post to a closing loop), then the objects
 * that wake or reference tasks, then the tasks themselves; the loop's own
 * core (watchers, posts, timers, backend) last. */
int cio_loop_close(cio_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (atomic_load(&loop->claimed)) /* running, here or in a thread */
        return -EBUSY;
    if (loop->closed)
        return 0;
    cio_loop_trace_stop(loop);      /* written as it stood: teardown aside */
    cio__executor_loop_close(loop); /* its workers may still post to us */
    cio__signals_close(loop);       /* dispositions and masks restored */
    cio__processes_close(loop);     /* running children go to the reaper */
    cio__net_close(loop);           /* wakes tasks parked on streams */
    cio__tasks_close(loop);         /* after it nothing points into a stack */
    cio__loop_close_core(loop);     /* watchers, posts, timers, backend */
    return 0;
}

void cio_loop_free(cio_loop *loop)
{
    if (!loop)
        return;
    cio__assert(!atomic_load(&loop->claimed));
    cio_loop_close(loop);
    cio__debug_report_live(loop); /* debug: references never dropped */
    cio__quarantine_flush(loop);
    cio__stack_pool_free(loop);
    cio__loop_free_core(loop);
}

/* ---------------------------------------------------------- the trace */

int cio_loop_trace_start(cio_loop *loop, const char *path)
{
    if (!loop || !path || !*path)
        return -EINVAL;
    if (loop->closed)
        return -ESHUTDOWN;
    if (loop->trace)
        return -EBUSY;
    int err = cio__trace_begin(loop, path, false);
    if (!err)
        cio__tasks_trace_begin(loop);
    return err;
}

int cio_loop_trace_stop(cio_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (!loop->trace)
        return 0;
    cio__tasks_trace_end(loop);
    return cio__trace_end(loop);
}

/* ------------------------------------------------------------- runners */

static void stop_loop(cio_future *f, void *arg)
{
    (void)f;
    cio_loop_stop(arg);
}

int cio_loop_run_until_complete(cio_loop *loop, cio_future *fut)
{
    if (!loop || !fut || fut->loop != loop)
        return -EINVAL;
    int err = cio_future_add_done_callback(fut, stop_loop, loop);
    if (err)
        return err;
    err = cio_loop_run_forever(loop);
    cio_future_remove_done_callback(fut, stop_loop, loop);
    if (err)
        return err;
    return cio_future_result(fut, NULL); /* -EAGAIN: stopped before done */
}

/* asyncio.run's _cancel_all_tasks: cancel what is left and let it finish;
 * errors other than cancellation are reported, as asyncio does. */
static void cancel_all_tasks(cio_loop *loop)
{
    cio__list *all = &loop->tasks.all;
    for (cio__list *n = all->next; n != all; n = n->next)
        cio_task_cancel(&cio__container_of(n, cio__task, all)->fut);
    while (loop->tasks.n > 0)
        if (cio_loop_run_once(loop, CIO_NO_TIMEOUT) < 0)
            break;
}

/* Python 3.11's asyncio.Runner and Ctrl-C: the first SIGINT cancels the
 * main task, the next one interrupts the program for real. Installed only
 * in the main thread and only if SIGINT is at its default: a program that
 * handles or ignores it keeps its own choice. */
typedef struct sigint_state {
    cio_task *main;
    int count;
} sigint_state;

static void on_sigint(void *arg)
{
    sigint_state *st = arg;
    if (st->count++ == 0 && !cio_future_done(st->main)) {
        cio_task_cancel(st->main);
        return;
    }
    /* Second Ctrl-C: as if cio had never handled it. */
    cio_remove_signal_handler(cio_future_get_loop(st->main), SIGINT);
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
}

/* Returns whether the handler is in place (st is then in use). */
static bool sigint_begin(cio_loop *loop, sigint_state *st)
{
    struct sigaction old;
    if (!cio__main_thread() || sigaction(SIGINT, NULL, &old) < 0 ||
        old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
        return false;
    /* Failing that, Ctrl-C just kills, as it would without cio. */
    return cio_add_signal_handler(loop, SIGINT, on_sigint, st) == 0;
}

/* Runs main_task to its end with Ctrl-C handled, then cancels and waits
 * for every other task, then shuts the default executor down (asyncio's
 * 300 s timeout); results posted meanwhile are delivered by one more
 * iteration. */
static int run_main(cio_loop *loop, cio_task *main_task)
{
    sigint_state st = {main_task, 0};
    bool sigint = sigint_begin(loop, &st);
    int err = cio_loop_run_until_complete(loop, main_task);
    if (sigint)
        cio_remove_signal_handler(loop, SIGINT);
    cio_future_unref(main_task);
    cancel_all_tasks(loop);
    cio__executor_shutdown_default(loop, 300);
    cio_loop_run_once(loop, 0);
    return err;
}

/* The main task is the loop's first: unnamed, it is "Task-1", as the task
 * asyncio.run creates for its coroutine in a fresh program. */
int cio_run_with(cio_task_fn fn, void *arg, const cio_run_options *opts)
{
    if (cio__running_loop)
        return -EBUSY;
    if (!fn)
        return -EINVAL;
    cio_loop *loop;
    int err = cio_loop_new(&loop, opts ? &opts->loop : NULL);
    if (err)
        return err;
    cio_task *main_task;
    err = cio_task_new(loop, fn, arg, opts ? &opts->main : NULL, &main_task);
    if (err == 0)
        err = run_main(loop, main_task);
    cio_loop_free(loop);
    return err;
}

int cio_run(cio_task_fn fn, void *arg) { return cio_run_with(fn, arg, NULL); }

/* ------------------------------------------------- loops on every core
 * cio_run_loops: one loop per thread, the caller's thread running loop 0,
 * all of them told to stop at once. Each slot is one loop's, in the
 * caller's memory for the whole call. The stop reaches a loop through a
 * bridge opened when its main task starts: landing one allocates nothing,
 * so a stop cannot fail for want of memory and leave a loop running. The
 * group's lock orders a stop against a loop coming and going: a loop
 * lists itself (opens its bridge) or unlists itself (takes the unlanded
 * bridge back) under it, and a stop lands every listed bridge under it.
 * (An open bridge is "a thread owes this loop a result": a loop with the
 * virtual clock waits for real time in a group.) */
typedef struct loops_group loops_group;

typedef struct loop_slot {
    loops_group *g;
    int index;
    cio_loop *loop;  /* while its main task runs: listed, under g->lock */
    cio__bridge stop_bridge;
    cio_event stop;  /* set on its own loop once the group stops */
    pthread_t thread;
    bool started;    /* thread created (slots 1..n-1) */
} loop_slot;

struct loops_group {
    pthread_mutex_t lock;
    bool stopped;
    int first_error;            /* the first main task to fail, in time */
    int nsignals;               /* stop signals seen (loop 0's thread) */
    int n;
    cio_task_fn fn;
    void *arg;
    const cio_loops_options *opts;
    loop_slot *slots;
};

static _Thread_local loop_slot *current_slot;

static void stop_delivered(void *arg) { cio_event_set(&((loop_slot *)arg)->stop); }
static void stop_dropped(void *arg) { (void)arg; }
static void stop_orphaned(cio__bridge *b) { (void)b; } /* never: unlisted first */

/* Any thread. Idempotent. */
static void group_stop(loops_group *g)
{
    pthread_mutex_lock(&g->lock);
    if (!g->stopped) {
        g->stopped = true;
        for (int i = 0; i < g->n; i++)
            if (g->slots[i].loop)
                cio__bridge_land(&g->slots[i].stop_bridge);
    }
    pthread_mutex_unlock(&g->lock);
}

static void group_fail(loops_group *g, int err)
{
    pthread_mutex_lock(&g->lock);
    if (!g->first_error)
        g->first_error = err;
    pthread_mutex_unlock(&g->lock);
    group_stop(g);
}

static void slot_list(loop_slot *s)
{
    loops_group *g = s->g;
    cio_event_init(&s->stop);
    pthread_mutex_lock(&g->lock);
    s->loop = cio__running_loop;
    if (g->stopped)
        cio_event_set(&s->stop);
    else
        cio__bridge_open(s->loop, &s->stop_bridge, stop_delivered,
                         stop_dropped, stop_orphaned, s);
    pthread_mutex_unlock(&g->lock);
}

/* A landed bridge is the loop's: delivered, or dropped when it closes. */
static void slot_unlist(loop_slot *s)
{
    loops_group *g = s->g;
    pthread_mutex_lock(&g->lock);
    if (!g->stopped)
        cio__bridge_unopen(&s->stop_bridge);
    s->loop = NULL;
    pthread_mutex_unlock(&g->lock);
}

/* SIGTERM or SIGINT, on loop 0: the first stops the group (which drains),
 * a second one acts as if cio had never handled it, as cio_run's Ctrl-C. */
static const int stop_signals[] = {SIGTERM, SIGINT};

static void stop_signal(loop_slot *s, int sig)
{
    if (s->g->nsignals++ == 0) {
        group_stop(s->g);
        return;
    }
    for (size_t i = 0; i < 2; i++) {
        cio_remove_signal_handler(s->loop, stop_signals[i]);
        signal(stop_signals[i], SIG_DFL);
    }
    raise(sig);
}

static void on_sigterm(void *arg) { stop_signal(arg, SIGTERM); }
static void on_sigint_stop(void *arg) { stop_signal(arg, SIGINT); }

static int stop_signals_begin(loop_slot *s)
{
    int err = cio_add_signal_handler(s->loop, SIGTERM, on_sigterm, s);
    return err ? err : cio_add_signal_handler(s->loop, SIGINT, on_sigint_stop, s);
}

static void stop_signals_end(loop_slot *s)
{
    for (size_t i = 0; i < 2; i++)
        cio_remove_signal_handler(s->loop, stop_signals[i]);
}

/* Each loop's main task: the user's, between listing and unlisting. */
static int slot_main(void *arg)
{
    loop_slot *s = arg;
    bool signals = s->index == 0 && s->g->opts->stop_signals;
    current_slot = s;
    slot_list(s);
    int err = signals ? stop_signals_begin(s) : 0;
    if (!err)
        err = s->g->fn(s->g->arg);
    if (signals)
        stop_signals_end(s);
    slot_unlist(s);
    current_slot = NULL;
    if (err)
        group_fail(s->g, err);
    return err;
}

static int slot_run(loop_slot *s)
{
    int err = cio_run_with(slot_main, s, &s->g->opts->run);
    if (err) /* slot_main stopped the group at once; this covers a loop
              * that never ran it (no loop, no stack) */
        group_fail(s->g, err);
    return err;
}

static void *slot_thread(void *arg)
{
    slot_run(arg);
    return NULL;
}

static int cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Starts loops 1..n-1; a thread that cannot start stops the group. */
static void start_threads(loops_group *g)
{
    for (int i = 1; i < g->n; i++) {
        int err = cio__sys_thread_create(&g->slots[i].thread, slot_thread,
                                         &g->slots[i]);
        if (err) {
            group_fail(g, err);
            break;
        }
        g->slots[i].started = true;
    }
}

/* With stop_signals, both are blocked from before the first thread starts
 * (which inherit that) until the end: one sent before loop 0's handlers
 * are in place waits for its signalfd, and none goes to a thread that
 * would die of it. */
static void block_stop_signals(sigset_t *old)
{
    sigset_t block;
    sigemptyset(&block);
    for (size_t i = 0; i < 2; i++)
        sigaddset(&block, stop_signals[i]);
    pthread_sigmask(SIG_BLOCK, &block, old);
}

int cio_run_loops(cio_task_fn fn, void *arg, const cio_loops_options *opts)
{
    static const cio_loops_options defaults;
    if (cio__running_loop)
        return -EBUSY;
    if (!opts)
        opts = &defaults;
    if (!fn || opts->nloops < 0)
        return -EINVAL;
    loops_group g = {.fn = fn, .arg = arg, .opts = opts};
    g.n = opts->nloops ? opts->nloops : cpu_count();
    g.slots = cio__calloc((size_t)g.n, sizeof *g.slots);
    if (!g.slots)
        return -ENOMEM;
    pthread_mutex_init(&g.lock, NULL);
    for (int i = 0; i < g.n; i++)
        g.slots[i] = (loop_slot){.g = &g, .index = i};
    sigset_t old;
    if (opts->stop_signals)
        block_stop_signals(&old);
    start_threads(&g);
    slot_run(&g.slots[0]);
    for (int i = 1; i < g.n; i++)
        if (g.slots[i].started)
            pthread_join(g.slots[i].thread, NULL);
    if (opts->stop_signals)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_destroy(&g.lock);
    cio__free(g.slots);
    return g.first_error;
}

/* The running loop's slot, or NULL when it is in no group. */
static loop_slot *running_slot(void)
{
    loop_slot *s = current_slot;
    return s && s->loop == cio__running_loop ? s : NULL;
}

int cio_loops_index(void)
{
    loop_slot *s = running_slot();
    return s ? s->index : -1;
}

int cio_loops_count(void)
{
    loop_slot *s = running_slot();
    return s ? s->g->n : 0;
}

int cio_loops_wait_stop(void)
{
    loop_slot *s = running_slot();
    return s ? cio_event_wait(&s->stop) : -EINVAL;
}

int cio_loops_stop(void)
{
    loop_slot *s = running_slot();
    if (!s)
        return -EINVAL;
    group_stop(s->g);
    return 0;
}
