/* The event loop: ready callbacks, timers, fd watchers, threadsafe posts.
 *
 * One iteration is four phases (cio_loop_run_once):
 *   poll    ask the backend which fds are ready (or sleep until a timer;
 *           on a virtual clock, jump the clock to it instead)
 *   posts   take what other threads handed over with call_soon_threadsafe
 *           (posts.c)
 *   timers  move due timers to the ready queue, in (deadline, seq) order
 *   ready   run the callbacks that were ready when the phase began
 *
 * Speed: a system call costs about a microsecond here, so the poll phase
 * skips the kernel while callbacks are waiting, unless fds are watched and
 * POLL_EVERY callbacks ran since the last poll (I/O is never starved, and
 * a chain of call_soon callbacks costs no system call). The clock is read
 * lazily, at most once per iteration.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

enum {
    SLAB_HANDLES = 64,
    POLL_EVERY = 256,          /* callbacks between polls while busy */
    HANDLE_POOLED = CIO__HANDLE_POOLED
};

struct cio__slab {
    cio__slab *next;
    cio__handle h[SLAB_HANDLES];
};

_Thread_local cio_loop *cio__running_loop;

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ handle pool */

static cio__handle *handle_get(cio_loop *loop)
{
    cio__list *n = cio__list_pop_front(&loop->free_handles);
    if (!n) {
        cio__slab *s = cio__malloc(sizeof *s);
        if (!s)
            return NULL;
        s->next = loop->slabs;
        loop->slabs = s;
        for (int i = 0; i < SLAB_HANDLES; i++) {
            s->h[i].id = 0;
            s->h[i].cancelled_id = 0;
            if (i > 0)
                cio__list_push_back(&loop->free_handles, &s->h[i].link);
        }
        n = &s->h[0].link;
    }
    return cio__container_of(n, cio__handle, link);
}

/* Returns a pool handle once it left every queue; ids of old cio_handle
 * values held by the user no longer match. */
static void handle_put(cio_loop *loop, cio__handle *h)
{
    h->id = 0;
    h->state = CIO__H_IDLE;
    cio__list_push_back(&loop->free_handles, &h->link);
}


/* ------------------------------------------------------------ timer heap
 * A binary min-heap on (when, seq); each handle knows its index, so
 * cancelling is O(log n) and frees the slot at once. */

static bool timer_before(const cio__handle *a, const cio__handle *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(cio_loop *loop, size_t i, cio__handle *h)
{
    loop->heap[i] = h;
    h->heap_index = i;
}

static void sift_up(cio_loop *loop, size_t i)
{
    cio__handle *h = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(h, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, h);
}

static void sift_down(cio_loop *loop, size_t i)
{
    cio__handle *h = loop->heap[i];
    size_t n = loop->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && timer_before(loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!timer_before(loop->heap[c], h))
            break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, h);
}

static int heap_push(cio_loop *loop, cio__handle *h)
{
    cio__handle **heap = cio__grow(loop->heap, &loop->heap_cap,
                                   loop->heap_len + 1, sizeof *heap, 64);
    if (!heap)
        return -ENOMEM;
    loop->heap = heap;
    heap_set(loop, loop->heap_len++, h);
    sift_up(loop, loop->heap_len - 1);
    return 0;
}

static void heap_remove(cio_loop *loop, cio__handle *h)
{
    size_t i = h->heap_index;
    cio__handle *last = loop->heap[--loop->heap_len];
    if (last != h) {
        heap_set(loop, i, last);
        if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
            sift_up(loop, i);
        else
            sift_down(loop, i);
    }
}

/* ------------------------------------------------------------ scheduling */


int cio__handle_schedule_at(cio__handle *h, double when)
{
    cio__handle_unschedule(h);
    h->when = when;
    h->seq = ++h->loop->next_id;
    int err = heap_push(h->loop, h);
    if (err == 0)
        h->state = CIO__H_TIMER;
    return err;
}

void cio__handle_unschedule(cio__handle *h)
{
    if (h->state == CIO__H_READY)
        cio__list_unlink(&h->link);
    else if (h->state == CIO__H_TIMER)
        heap_remove(h->loop, h);
    h->state = CIO__H_IDLE;
}

int cio__loop_check(cio_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->closed)
        return -ESHUTDOWN;
    if (loop->debug && loop->running &&
        !pthread_equal(loop->owner, pthread_self())) {
        cio__report(loop, "non-thread-safe call into a loop from a thread "
                          "that does not own it", -EPERM, "loop", NULL, loop);
        return -EPERM;
    }
    return 0;
}

/* Takes a pool handle for cb(arg) and tells the user its identity. */
static cio__handle *new_handle(cio_loop *loop, cio_callback cb, void *arg,
                               cio_handle *out)
{
    cio__handle *h = handle_get(loop);
    if (!h)
        return NULL;
    cio__list_init(&h->link);
    h->cb = cb;
    h->drop = NULL;
    h->arg = arg;
    h->loop = loop;
    h->id = ++loop->next_id;
    h->state = CIO__H_IDLE;
    h->embedded = HANDLE_POOLED;
    if (out) {
        out->slot = h;
        out->id = h->id;
    }
    return h;
}

int cio_call_soon(cio_loop *loop, cio_callback cb, void *arg,
                  cio_handle *handle)
{
    if (handle)
        *handle = (cio_handle){NULL, 0};
    int err = cio__loop_check(loop);
    if (err)
        return err;
    if (!cb)
        return -EINVAL;
    cio__handle *h = new_handle(loop, cb, arg, handle);
    if (!h)
        return -ENOMEM;
    cio__handle_schedule(h);
    return 0;
}

int cio_call_at(cio_loop *loop, double when, cio_callback cb, void *arg,
                cio_handle *handle)
{
    if (handle)
        *handle = (cio_handle){NULL, 0};
    int err = cio__loop_check(loop);
    if (err)
        return err;
    if (!cb || isnan(when))
        return -EINVAL;
    cio__handle *h = new_handle(loop, cb, arg, NULL);
    if (!h)
        return -ENOMEM;
    err = cio__handle_schedule_at(h, when);
    if (err) {
        handle_put(loop, h);
        return err;
    }
    if (handle) {
        handle->slot = h;
        handle->id = h->id;
    }
    return 0;
}

int cio_call_later(cio_loop *loop, double delay, cio_callback cb, void *arg,
                   cio_handle *handle)
{
    if (handle)
        *handle = (cio_handle){NULL, 0};
    int err = cio__loop_check(loop); /* before reading its clock */
    if (err)
        return err;
    if (isnan(delay)) /* any other delay: <= 0 runs soon, as asyncio's */
        return -EINVAL;
    return cio_call_at(loop, cio_loop_time(loop) + delay, cb, arg, handle);
}

int cio_handle_cancel(cio_handle handle)
{
    cio__handle *h = handle.slot;
    if (!h || handle.id == 0 || h->id != handle.id ||
        h->state == CIO__H_IDLE)
        return 0;
    cio__handle_unschedule(h);
    h->cancelled_id = h->id; /* kept while the slot serves others */
    handle_put(h->loop, h);
    return 1;
}

int cio_handle_cancelled(cio_handle handle)
{
    const cio__handle *h = handle.slot;
    return h && handle.id != 0 && h->cancelled_id == handle.id;
}

int cio_call_soon_threadsafe(cio_loop *loop, cio_callback cb, void *arg)
{
    if (!loop || !cb)
        return -EINVAL;
    /* From the loop's own thread it is call_soon, as in asyncio, where
     * both append to the same queue: the order of the two is kept. */
    if (cio__running_loop == loop)
        return cio_call_soon(loop, cb, arg, NULL);
    return cio__post_threadsafe(loop, cb, NULL, arg);
}

static void run_one(cio_loop *loop, cio_callback cb, void *arg);

static void run_posts(void *arg)
{
    cio_loop *loop = arg;
    for (size_t i = 0; i < loop->posts.ntorun; i++)
        run_one(loop, loop->posts.torun[i].cb, loop->posts.torun[i].arg);
    loop->posts.ntorun = 0;
}

/* ---------------------------------------------------------- fd watchers */

static int add_watcher(cio_loop *loop, int fd, int dir, cio_callback cb,
                       void *arg)
{
    int err = cio__loop_check(loop);
    if (err)
        return err;
    if (!cb || fd < 0 || fd == loop->wakefd)
        return fd < 0 ? -EBADF : -EINVAL;
    if ((size_t)fd >= loop->watchers_cap) {
        /* An fd number beyond the table may be anything: one that is not
         * open must not make the table grow. */
        if (fcntl(fd, F_GETFD) < 0)
            return -EBADF;
        size_t old = loop->watchers_cap;
        cio__watcher **w = cio__grow(loop->watchers, &loop->watchers_cap,
                                     (size_t)fd + 1, sizeof *w, 64);
        if (!w)
            return -ENOMEM;
        memset(w + old, 0, (loop->watchers_cap - old) * sizeof *w);
        loop->watchers = w;
    }
    cio__watcher *w = loop->watchers[fd];
    bool fresh = !w;
    if (fresh) {
        w = cio__malloc(sizeof *w);
        if (!w)
            return -ENOMEM;
        cio__handle_init(&w->io[0], loop, NULL, NULL);
        cio__handle_init(&w->io[1], loop, NULL, NULL);
        w->events = 0;
    }
    unsigned bit = dir == 0 ? CIO__READ : CIO__WRITE;
    if (!(w->events & bit)) {
        err = loop->backend->watch(loop, fd, w->events, w->events | bit);
        if (err) {
            if (fresh)
                cio__free(w);
            return err;
        }
    }
    if (fresh) {
        loop->watchers[fd] = w;
        loop->nwatched++;
    }
    w->events |= bit;
    w->io[dir].cb = cb;
    w->io[dir].arg = arg;
    return 0;
}

static void free_watcher(cio_loop *loop, int fd)
{
    cio__free(loop->watchers[fd]);
    loop->watchers[fd] = NULL;
    loop->nwatched--;
}

static int remove_watcher(cio_loop *loop, int fd, int dir)
{
    if (!loop || fd < 0)
        return -EINVAL;
    if ((size_t)fd >= loop->watchers_cap || !loop->watchers[fd])
        return 0;
    cio__watcher *w = loop->watchers[fd];
    unsigned bit = dir == 0 ? CIO__READ : CIO__WRITE;
    if (!(w->events & bit))
        return 0;
    /* The fd may already be closed; the kernel forgot it then, and there
     * is nothing left to undo, so the backend's answer is not an error. */
    (void)loop->backend->watch(loop, fd, w->events, w->events & ~bit);
    w->events &= ~bit;
    cio__handle_unschedule(&w->io[dir]);
    w->io[dir].cb = NULL;
    if (!w->events)
        free_watcher(loop, fd);
    return 1;
}

int cio_add_reader(cio_loop *loop, int fd, cio_callback cb, void *arg)
{
    return add_watcher(loop, fd, 0, cb, arg);
}
int cio_add_writer(cio_loop *loop, int fd, cio_callback cb, void *arg)
{
    return add_watcher(loop, fd, 1, cb, arg);
}
int cio_remove_reader(cio_loop *loop, int fd)
{
    return remove_watcher(loop, fd, 0);
}
int cio_remove_writer(cio_loop *loop, int fd)
{
    return remove_watcher(loop, fd, 1);
}

/* The backend tells this, through its wait, about each fd that fired. */
static void io_event(cio_loop *loop, int fd, unsigned events)
{
    if (fd == loop->wakefd) {
        uint64_t count;
        ssize_t n = read(fd, &count, sizeof count); /* posts.c writes it */
        (void)n;
        atomic_store(&loop->posts.wake_sent, 0);
        return;
    }
    if ((size_t)fd >= loop->watchers_cap || !loop->watchers[fd])
        return;
    cio__watcher *w = loop->watchers[fd];
    if (cio__unlikely(loop->trace))
        cio__trace_instant(loop->trace, 0,
                           events & CIO__READ ? "readable" : "writable", fd);
    if ((events & CIO__READ) && w->io[0].cb)
        cio__handle_schedule(&w->io[0]);
    if ((events & CIO__WRITE) && w->io[1].cb)
        cio__handle_schedule(&w->io[1]);
}

/* ------------------------------------------------------------ iteration */

double cio_loop_time(cio_loop *loop)
{
    if (!loop)
        return NAN;
    if (loop->virtual_clock) /* `now` is the clock itself */
        return loop->now;
    if (!loop->running) /* between runs the cache would be stale */
        return monotonic_now();
    if (!loop->now_valid) {
        loop->now = monotonic_now();
        loop->now_valid = true;
    }
    return loop->now;
}

/* How long the poll may block, in ms (rounded up, so a timer is never
 * polled for early and spun on): 0 when work is waiting, -1 forever. */
static int poll_timeout(cio_loop *loop, double max_wait)
{
    if (!cio__list_empty(&loop->ready) || loop->stopping)
        return 0;
    double wait = max_wait;
    if (loop->heap_len) {
        double until = loop->heap[0]->when - cio_loop_time(loop);
        if (until < 0)
            until = 0;
        if (wait < 0 || until < wait)
            wait = until;
    }
    if (wait < 0)
        return -1;
    double ms = ceil(wait * 1e3);
    return ms > 86400e3 ? 86400000 : (int)ms;
}

/* One call into the backend; with a timeout, posters are told to wake us
 * (see posts.c) and a post that came first cancels the sleep. */
static int backend_wait(cio_loop *loop, int timeout)
{
    if (timeout != 0) {
        atomic_store(&loop->posts.sleeping, 1);
        if (atomic_load(&loop->posts.count))
            timeout = 0;
        else
            loop->blocking_waits++;
    }
    int n = loop->backend->wait(loop, timeout, io_event);
    atomic_store(&loop->posts.sleeping, 0);
    loop->ran_since_poll = 0;
    loop->now_valid = false;
    return n == -EINTR ? 0 : n;
}

/* Does another thread owe this loop a result (executor work, a process
 * watcher thread)? Plain posters from user threads are not known here. */
static bool threads_in_flight(cio_loop *loop)
{
    pthread_mutex_lock(&loop->posts.lock);
    bool flying = !cio__list_empty(&loop->posts.bridges);
    pthread_mutex_unlock(&loop->posts.lock);
    return flying;
}

/* The virtual clock's poll, when the loop would sleep: take the I/O that
 * is already there and, if nothing came, jump the clock to the deadline
 * it would have slept until (the first timer, or max_wait from now). With
 * nothing scheduled it blocks as usual. While a thread owes a result it
 * waits for real, as long as the jump, so that a worker quicker than a
 * timeout still lands before it. */
static int poll_virtual(cio_loop *loop, double max_wait)
{
    double at = max_wait < 0 ? INFINITY : loop->now + max_wait;
    if (loop->heap_len && loop->heap[0]->when < at)
        at = loop->heap[0]->when;
    int timeout = isinf(at) ? -1 : 0;
    if (timeout == 0 && threads_in_flight(loop))
        timeout = (int)fmin(ceil((at - loop->now) * 1e3), 86400e3);
    int n = 0;
    if (timeout != 0 || loop->nwatched > 0)
        n = backend_wait(loop, timeout);
    if (n >= 0 && !isinf(at) && at > loop->now &&
        cio__list_empty(&loop->ready) && !atomic_load(&loop->posts.count))
        loop->now = at;
    return n;
}

/* `always`: poll even with callbacks waiting - the last iteration before
 * a stop, and run_once, see I/O as asyncio's iterations do. */
static int poll_phase(cio_loop *loop, double max_wait, bool always)
{
    int timeout = poll_timeout(loop, max_wait);
    if (timeout != 0 && loop->virtual_clock)
        return poll_virtual(loop, max_wait);
    if (timeout == 0 && (loop->nwatched == 0 ||
                         (!always && !loop->stopping &&
                          loop->ran_since_poll < POLL_EVERY)))
        return 0;
    return backend_wait(loop, timeout);
}

static void timers_phase(cio_loop *loop)
{
    if (!loop->heap_len)
        return;
    double end = cio_loop_time(loop) + 1e-9; /* the clock's resolution */
    while (loop->heap_len && loop->heap[0]->when <= end) {
        cio__handle *h = loop->heap[0];
        heap_remove(loop, h);
        h->state = CIO__H_READY;
        cio__list_push_back(&loop->ready, &h->link);
        if (cio__unlikely(loop->trace))
            cio__trace_instant(loop->trace, 0, "timer", -1);
    }
}

static void run_one(cio_loop *loop, cio_callback cb, void *arg)
{
    loop->ran++;
    if (cio__likely(!loop->debug && !loop->trace)) {
        cb(arg);
        return;
    }
    double t0 = monotonic_now();
    cb(arg);
    double t1 = monotonic_now(), took = t1 - t0;
    if (loop->trace)
        cio__trace_slice(loop->trace, 0, "callback", t0, t1);
    bool named = loop->dbg.step_timed; /* a task's step: task.c said it */
    loop->dbg.step_timed = false;
    if (loop->debug && !named && took >= loop->slow_callback_duration)
        fprintf(stderr, "cio: warning: executing callback %p took %.3f "
                        "seconds\n", (void *)(uintptr_t)cb, took);
}

/* Runs exactly the callbacks that were ready when the phase began; ones
 * they schedule wait for the next iteration, as asyncio's do. */
static int ready_phase(cio_loop *loop)
{
    loop->ran = 0; /* counted by run_one: a batch of posts counts each */
    cio__list_splice(&loop->batch, &loop->ready);
    cio__list *n;
    while ((n = cio__list_pop_front(&loop->batch))) {
        cio__handle *h = cio__container_of(n, cio__handle, link);
        cio_callback cb = h->cb;
        void *arg = h->arg;
        h->state = CIO__H_IDLE;
        if (h->embedded == HANDLE_POOLED)
            handle_put(loop, h);
        if (h == &loop->posts.batch)
            run_posts(loop); /* each post counts, not the batch */
        else
            run_one(loop, cb, arg);
    }
    loop->ran_since_poll += loop->ran;
    return (int)loop->ran;
}

static int iterate(cio_loop *loop, double max_wait, bool always_poll)
{
    loop->now_valid = false;
    int err = poll_phase(loop, max_wait, always_poll);
    if (err < 0)
        return err;
    cio__posts_take(loop);
    timers_phase(loop);
    return ready_phase(loop);
}

/* Marks loop as running in this thread; -EBUSY if it or another loop
 * already runs here, or another thread runs it (claimed atomically: of two
 * threads entering at once, exactly one gets it). */
static int enter(cio_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->closed)
        return -ESHUTDOWN;
    if (cio__running_loop) /* this one or another, in this thread */
        return -EBUSY;
    int unclaimed = 0;
    if (!atomic_compare_exchange_strong(&loop->claimed, &unclaimed, 1)) {
        if (loop->debug)
            cio__report(loop, "a second thread tried to run a loop that "
                              "another thread runs", -EBUSY, "loop", NULL,
                        loop);
        return -EBUSY;
    }
    loop->running = true;
    loop->owner = pthread_self();
    cio__running_loop = loop;
    return 0;
}

static void leave(cio_loop *loop)
{
    loop->running = false;
    cio__running_loop = NULL;
    atomic_store(&loop->claimed, 0);
}

int cio_loop_run_forever(cio_loop *loop)
{
    int err = enter(loop);
    if (err)
        return err;
    for (;;) {
        err = iterate(loop, -1, false);
        if (err < 0 || loop->stopping)
            break;
    }
    loop->stopping = false;
    leave(loop);
    return err < 0 ? err : 0;
}

int cio_loop_run_once(cio_loop *loop, double timeout)
{
    if (loop && isnan(timeout))
        return -EINVAL;
    int err = enter(loop);
    if (err)
        return err;
    /* iterate's max_wait: -1 is as long as needed. */
    double max_wait = timeout == CIO_NO_TIMEOUT ? -1 : timeout > 0 ? timeout : 0;
    int ran = iterate(loop, max_wait, true);
    loop->stopping = false;
    leave(loop);
    return ran;
}

int cio_loop_stop(cio_loop *loop)
{
    if (!loop)
        return -EINVAL;
    loop->stopping = true;
    return 0;
}

int cio_loop_is_running(const cio_loop *loop) { return loop && loop->running; }
int cio_loop_is_closed(const cio_loop *loop) { return loop && loop->closed; }
cio_loop *cio_get_running_loop(void) { return cio__running_loop; }

int cio_loop_set_debug(cio_loop *loop, int enabled)
{
    if (!loop)
        return -EINVAL;
    loop->debug = enabled != 0;
    return 0;
}

int cio_loop_get_debug(const cio_loop *loop) { return loop && loop->debug; }

/* ------------------------------------------------------- virtual clock */

int cio_loop_set_virtual_clock(cio_loop *loop, double start)
{
    int err = cio__loop_check(loop);
    if (err)
        return err;
    if (!isfinite(start) || (loop->virtual_clock && start < loop->now))
        return -EINVAL; /* a clock never goes back */
    loop->now = start;
    loop->virtual_clock = true;
    return 0;
}

int cio_loop_advance(cio_loop *loop, double seconds)
{
    int err = cio__loop_check(loop);
    if (err)
        return err;
    if (!loop->virtual_clock || !(seconds >= 0) || isinf(seconds))
        return -EINVAL;
    loop->now += seconds;
    timers_phase(loop); /* what is due now is ready before anything else */
    return 0;
}

/* ------------------------------------------------------ exception handler */

void cio_loop_default_exception_handler(cio_loop *loop,
                                        const cio_error_context *ctx)
{
    (void)loop;
    fprintf(stderr, "cio: %s", ctx->message ? ctx->message : "error");
    if (ctx->what)
        fprintf(stderr, " (%s%s%s)", ctx->what, ctx->name ? " " : "",
                ctx->name ? ctx->name : "");
    if (ctx->error) {
        /* A code nobody named still says which one it was. */
        const char *name = cio_strerror(ctx->error);
        fprintf(stderr, ": %s", name);
        if (strcmp(name, "unknown error") == 0)
            fprintf(stderr, " %d", ctx->error);
    }
    fputc('\n', stderr);
}

int cio_loop_set_exception_handler(cio_loop *loop,
                                   cio_exception_handler handler, void *arg)
{
    if (!loop)
        return -EINVAL;
    loop->handler = handler;
    loop->handler_arg = arg;
    return 0;
}

int cio_loop_call_exception_handler(cio_loop *loop,
                                    const cio_error_context *ctx)
{
    if (!loop || !ctx || !ctx->message)
        return -EINVAL;
    if (loop->handler)
        loop->handler(loop, ctx, loop->handler_arg);
    else
        cio_loop_default_exception_handler(loop, ctx);
    return 0;
}

void cio__report(cio_loop *loop, const char *message, int error,
                 const char *what, const char *name, void *obj)
{
    cio_error_context ctx = {message, error, what, name, obj};
    cio_loop_call_exception_handler(loop, &ctx);
}

/* ------------------------------------------------------ create and close */

static const cio__backend *pick_backend(const char *name)
{
    if (!name)
        name = getenv("CIO_BACKEND");
    if (!name || !*name || strcmp(name, "epoll") == 0)
        return &cio__backend_epoll;
    if (strcmp(name, "poll") == 0)
        return &cio__backend_poll;
    return NULL;
}

static bool debug_from_env(void)
{
    const char *d = getenv("CIO_DEBUG");
    return d && *d && strcmp(d, "0") != 0;
}

/* $CIO_TRACE=path: every new loop records its timeline (cio_loop_trace).
 * A path that cannot be written costs the trace, not the loop. */
static void trace_from_env(cio_loop *loop)
{
    const char *path = getenv("CIO_TRACE");
    if (!path || !*path)
        return;
    int err = cio__trace_begin(loop, path, true);
    if (err)
        fprintf(stderr, "cio: warning: CIO_TRACE=%s: %s\n", path,
                cio_strerror(err));
}

int cio_loop_new(cio_loop **out, const cio_loop_options *opts)
{
    static const cio_loop_options defaults;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!opts)
        opts = &defaults;
    const cio__backend *backend = pick_backend(opts->backend);
    if (!backend || !(opts->slow_callback_duration >= 0))
        return -EINVAL;
    cio_loop *loop = cio__calloc(1, sizeof *loop);
    if (!loop)
        return -ENOMEM;
    loop->backend = backend;
    loop->debug = opts->debug > 0 || (opts->debug == 0 && debug_from_env());
    loop->slow_callback_duration =
        opts->slow_callback_duration > 0 ? opts->slow_callback_duration : 0.1;
    cio__list_init(&loop->ready);
    cio__list_init(&loop->batch);
    cio__list_init(&loop->free_handles);
    cio__list_init(&loop->tasks.all);
    cio__list_init(&loop->dbg.live);
    cio__list_init(&loop->posts.bridges);
    cio__list_init(&loop->posts.arrived);
    cio__list_init(&loop->net.transports);
    cio__list_init(&loop->net.servers);
    cio__list_init(&loop->processes);
    cio__handle_init(&loop->posts.batch, loop, run_posts, loop);
    pthread_mutex_init(&loop->posts.lock, NULL);
    int err = loop->wakefd = cio__sys_eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (err < 0)
        goto fail_loop;
    err = backend->init(loop);
    if (err)
        goto fail_wakefd;
    err = backend->watch(loop, loop->wakefd, 0, CIO__READ);
    if (err)
        goto fail_backend;
    trace_from_env(loop);
    *out = loop;
    return 0;
fail_backend:
    backend->fini(loop);
fail_wakefd:
    cio__sys_close(loop->wakefd);
fail_loop:
    pthread_mutex_destroy(&loop->posts.lock);
    cio__free(loop);
    return err;
}

/* Drops every queued callback: pool handles go back to the pool, embedded
 * ones are left to their owners (already torn down by now). */
static void drop_handles(cio_loop *loop)
{
    cio__list_splice(&loop->batch, &loop->ready);
    cio__list *n;
    while ((n = cio__list_pop_front(&loop->batch))) {
        cio__handle *h = cio__container_of(n, cio__handle, link);
        h->state = CIO__H_IDLE;
        if (h->embedded == HANDLE_POOLED)
            handle_put(loop, h);
        else if (h->drop)
            h->drop(h->arg); /* its owner frees what the callback would */
    }
    while (loop->heap_len) {
        cio__handle *h = loop->heap[0];
        cio__handle_unschedule(h);
        if (h->embedded == HANDLE_POOLED)
            handle_put(loop, h);
    }
}

/* The loop's own part of closing, after every subsystem closed (see
 * runner.c's cio_loop_close): watchers, posts, queued callbacks, backend. */
void cio__loop_close_core(cio_loop *loop)
{
    for (int fd = 0; (size_t)fd < loop->watchers_cap; fd++)
        if (loop->watchers[fd]) {
            cio__handle_unschedule(&loop->watchers[fd]->io[0]);
            cio__handle_unschedule(&loop->watchers[fd]->io[1]);
            (void)loop->backend->watch(loop, fd, loop->watchers[fd]->events, 0);
            free_watcher(loop, fd);
        }
    cio__posts_close(loop);
    drop_handles(loop);
    loop->backend->fini(loop);
    cio__sys_close(loop->wakefd);
}

/* Frees what cio__loop_close_core left: memory only. */
void cio__loop_free_core(cio_loop *loop)
{
    while (loop->slabs) {
        cio__slab *s = loop->slabs;
        loop->slabs = s->next;
        cio__free(s);
    }
    cio__free(loop->heap);
    cio__free(loop->watchers);
    cio__free(loop->posts.posted);
    cio__free(loop->posts.torun);
    cio__free(loop->dump_request); /* its signal handler went already */
    pthread_mutex_destroy(&loop->posts.lock);
    cio__free(loop);
}
