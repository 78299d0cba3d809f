/* Debug mode's misuse checks that need memory of their own: the quarantine
 * that keeps freed objects so a second free is caught, and the list of
 * futures and tasks still referenced when the loop is freed.
 *
 * Freed memory cannot be inspected in general: once given back, it may be
 * anyone's. So a debug object's free marks it dead and parks it here
 * instead; a second free reads the mark in memory that is still ours.
 * Bounded: only the most recent frees are kept (a long debug run must not
 * grow without limit), the oldest is really freed when a newer one comes.
 * A double free older than that is undefined behaviour again, as it is
 * always outside debug mode.
 */
#define _GNU_SOURCE
#include "internal.h"

enum {
    LOOP_GRAVES = 1024,  /* per debug loop: futures, tasks, streams, ... */
    GLOBAL_GRAVES = 256  /* objects that may outlive their loop, or have
                          * none: streams, executors, queues */
};

typedef struct grave {
    void *obj;
    void (*release)(void *obj);
} grave;

/* A ring: the oldest at `head`, `n` of `cap` in use. */
struct cio__graves {
    size_t head, n, cap;
    grave g[];
};

static struct cio__graves *global_graves;
static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;

static struct cio__graves *graves_new(size_t cap)
{
    struct cio__graves *q = cio__malloc(sizeof *q + cap * sizeof(grave));
    if (q) {
        q->head = q->n = 0;
        q->cap = cap;
    }
    return q;
}

/* Parks obj in *qp, making the ring on first use; if it is full, the
 * oldest leaves first. Without memory for the ring, obj goes at once. */
static void bury(struct cio__graves **qp, size_t cap, void *obj,
                 void (*release)(void *obj))
{
    if (!*qp && !(*qp = graves_new(cap))) {
        release(obj);
        return;
    }
    struct cio__graves *q = *qp;
    if (q->n == q->cap) {
        grave old = q->g[q->head];
        q->head = (q->head + 1) % q->cap;
        q->n--;
        old.release(old.obj);
    }
    q->g[(q->head + q->n++) % q->cap] = (grave){obj, release};
}

/* Releases every object in q (taken out of its owner, unlocked), oldest
 * first, then q. */
static void release_all(struct cio__graves *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->n; i++) {
        grave *g = &q->g[(q->head + i) % q->cap];
        g->release(g->obj);
    }
    cio__free(q);
}

void cio__quarantine(cio_loop *loop, void *obj, void (*release)(void *obj))
{
    if (loop) {
        bury(&loop->dbg.graves, LOOP_GRAVES, obj, release);
        return;
    }
    /* Executors end on any thread (the last worker of an abandoned one). */
    pthread_mutex_lock(&global_lock);
    bury(&global_graves, GLOBAL_GRAVES, obj, release);
    pthread_mutex_unlock(&global_lock);
}

void cio__quarantine_flush(cio_loop *loop)
{
    struct cio__graves *q;
    if (loop) {
        q = loop->dbg.graves;
        loop->dbg.graves = NULL;
    } else {
        pthread_mutex_lock(&global_lock);
        q = global_graves;
        global_graves = NULL;
        pthread_mutex_unlock(&global_lock);
    }
    release_all(q);
}

/* The process's quarantine goes when the program ends. */
__attribute__((destructor)) static void flush_at_exit(void)
{
    cio__quarantine_flush(NULL);
}

bool cio__debug_wanted(void)
{
    if (cio__running_loop)
        return cio__running_loop->debug;
    const char *d = getenv("CIO_DEBUG");
    return d && *d && strcmp(d, "0") != 0;
}

void cio__misuse(cio_loop *loop, const char *message, const char *what,
                 const char *name, void *obj)
{
    if (!loop)
        loop = cio__running_loop;
    if (loop) {
        cio__report(loop, message, 0, what, name, obj);
        return;
    }
    cio_error_context ctx = {message, 0, what, name, obj};
    cio_loop_default_exception_handler(NULL, &ctx);
}

/* ------------------------------------------------- references left over */

static void report_live(cio_loop *loop, cio_future *f)
{
    const char *what = f->ops ? f->ops->what : "future";
    char msg[512];
    snprintf(msg, sizeof msg, "%s still referenced when the loop was freed "
             "(created at %s:%d)", what, f->site_file, f->site_line);
    cio__report(loop, msg, 0, what, f->ops ? f->ops->name(f) : NULL, f);
}

/* Each the program created is reported once, oldest first (those cio made
 * belong to objects of its own, which the program frees, maybe after the
 * loop: a stream's, a process's). Their memory stays theirs, but they
 * leave a loop that goes: released later, they are freed at once, the
 * loop untouched. */
void cio__debug_report_live(cio_loop *loop)
{
    cio__list *n;
    while ((n = cio__list_pop_front(&loop->dbg.live))) {
        cio_future *f = cio__container_of(n, cio_future, live);
        if (f->site_file)
            report_live(loop, f);
        f->debug = false;
    }
}
