/* Seeing inside a running program: what each task is doing, what it
 * waits on and who waits for it (asyncio's capture_call_graph and
 * `python -m asyncio pstree`), as an indented tree for a person or JSON
 * lines for a program, on demand or when a chosen signal arrives.
 *
 * Everything here only reads: the task layer records, as each task
 * parks, a descriptor of the wait (cio__task.wait_kind), and that is all
 * the dump needs. The await graph is rebuilt on each call from those
 * descriptors: an edge from a task to each pending task its wait is for
 * (cio_await of a task, gather or wait's tasks, a task group's running
 * children). Waiting on a future that is not a task is a leaf.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The most edges followed out of one task: a gather of more tasks than
 * this shows the first ones (the rest are still dumped, as roots). */
enum { MAX_AWAITS = 64, MAX_DEPTH = 64 };

static cio__task *task_in(const cio_task *task)
{
    cio__task *t = cio__task_of(task);
    return t && t->fut.state != CIO__F_FREED ? t : NULL;
}

static const char *state_of(const cio__task *t)
{
    if (t->fut.state != CIO__F_PENDING)
        return "done";
    if (cio__current == t)
        return "running";
    return t->parked ? "parked" : "ready";
}

static double scope_deadline(const cio__task *t)
{
    double when = INFINITY;
    for (size_t i = 0; i < t->nscopes; i++)
        if (t->scopes[i].when < when)
            when = t->scopes[i].when;
    return when;
}

int cio_task_inspect(const cio_task *task, cio_task_info *info)
{
    cio__task *t = task_in(task);
    if (!t || !info)
        return -EINVAL;
    double now = cio_loop_time(t->fut.loop);
    bool parked = t->parked && t->fut.state == CIO__F_PENDING;
    const cio__wait_kind *k = parked ? t->wait_kind : NULL;
    const char *what = parked ? cio__task_wait_what(t) : NULL;
    *info = (cio_task_info){
        .id = t->id,
        .name = cio_task_get_name(task),
        .state = state_of(t),
        .waiting_on = what,
        .object = k ? t->wait_on : NULL,
        .fd = k ? t->wait_fd : -1,
        .deadline = parked && t->timer.state == CIO__H_TIMER ? t->timer.when
                                                             : INFINITY,
        .scope_deadline = scope_deadline(t),
        .file = t->fut.site_file,
        .line = t->fut.site_line,
        .age = now > t->created ? now - t->created : 0, /* clock set back */
        .cancelling = t->cancel_requests,
        .stack_size = t->fiber.stack_size,
        .stack_used = t->stack_used,
    };
    if (t->fut.loop->debug && t->fiber.stack_lo)
        info->stack_used = cio__stack_used(t->fiber.stack_lo,
                                           t->fiber.stack_size);
    return 0;
}

/* The pending tasks t's wait is for, up to cap into out; how many. */
static size_t awaits_of(const cio__task *t, cio_task **out, size_t cap)
{
    if (!t->parked || t->fut.state != CIO__F_PENDING || !t->wait_kind ||
        !t->wait_kind->futures)
        return 0;
    cio_future *futs[MAX_AWAITS];
    size_t n = t->wait_kind->futures(t->wait_on, futs, MAX_AWAITS);
    size_t k = 0;
    for (size_t i = 0; i < n && i < MAX_AWAITS; i++) {
        cio__task *u = cio__task_of(futs[i]);
        if (!u || u->fut.state != CIO__F_PENDING)
            continue;
        if (k < cap)
            out[k] = &u->fut;
        k++;
    }
    return k;
}

int cio_task_awaits(const cio_task *task, cio_task **out, size_t cap)
{
    cio__task *t = task_in(task);
    if (!t || (cap && !out))
        return -EINVAL;
    return (int)awaits_of(t, out, cap);
}

static bool awaits(const cio__task *t, const cio__task *u)
{
    cio_task *to[MAX_AWAITS];
    size_t n = awaits_of(t, to, MAX_AWAITS);
    for (size_t i = 0; i < n && i < MAX_AWAITS; i++)
        if (to[i] == &u->fut)
            return true;
    return false;
}

int cio_task_awaited_by(const cio_task *task, cio_task **out, size_t cap)
{
    cio__task *t = task_in(task);
    if (!t || (cap && !out))
        return -EINVAL;
    size_t k = 0;
    cio__list *all = &t->fut.loop->tasks.all;
    for (cio__list *n = all->next; n != all; n = n->next) {
        cio__task *u = cio__container_of(n, cio__task, all);
        if (u != t && awaits(u, t)) {
            if (k < cap)
                out[k] = &u->fut;
            k++;
        }
    }
    return (int)k;
}

/* ------------------------------------------------------------- printing */

/* One task on one line, after `indent` spaces and `lead`. */
static void print_line(FILE *out, int indent, const char *lead,
                       const cio_task *task)
{
    cio_task_info i;
    cio_task_inspect(task, &i);
    fprintf(out, "%*s%s%s (id %llu) %s", indent, "", lead, i.name,
            (unsigned long long)i.id, i.state);
    if (i.waiting_on) {
        fprintf(out, " on %s", i.waiting_on);
        if (i.object)
            fprintf(out, " %p", i.object);
        if (i.fd >= 0)
            fprintf(out, " fd %d", i.fd);
    }
    double now = cio_loop_time(task->loop);
    if (i.deadline < INFINITY)
        fprintf(out, ", due in %.3f s", i.deadline - now);
    if (i.scope_deadline < INFINITY)
        fprintf(out, ", timeout in %.3f s", i.scope_deadline - now);
    if (i.cancelling)
        fprintf(out, ", cancelling %d", i.cancelling);
    if (i.file)
        fprintf(out, ", created at %s:%d", i.file, i.line);
    fprintf(out, ", age %.3f s", i.age);
    if (i.stack_used)
        fprintf(out, ", stack %zu of %zu bytes", i.stack_used, i.stack_size);
    fputc('\n', out);
}

/* Below task, the tasks that await it, up to the roots. `gen` marks the
 * tasks already printed, so that a cycle of awaits (a deadlock the
 * program made) prints each task once. */
static void print_awaited_by(FILE *out, const cio_task *task, int depth,
                             uint64_t gen)
{
    cio_task *by[MAX_AWAITS];
    int n = cio_task_awaited_by(task, by, MAX_AWAITS);
    for (int i = 0; i < n && i < MAX_AWAITS && depth <= MAX_DEPTH; i++) {
        cio__task *u = cio__task_of(by[i]);
        if (u->dump_mark == gen)
            continue;
        u->dump_mark = gen;
        print_line(out, 2 * depth, "awaited by ", by[i]);
        print_awaited_by(out, by[i], depth + 1, gen);
    }
}

int cio_print_call_graph(const cio_task *task, FILE *out)
{
    if (!task)
        task = cio_current_task();
    cio__task *t = task_in(task);
    if (!t || !out)
        return -EINVAL;
    uint64_t gen = ++t->fut.loop->tasks.dump_gen;
    t->dump_mark = gen;
    print_line(out, 0, "", task);
    print_awaited_by(out, task, 1, gen);
    return 0;
}

/* Marks every task some unfinished task awaits with `gen`: the others
 * are the tree's roots. One pass over the edges, so that a dump of ten
 * thousand tasks does not ask each one about all the others. */
static void mark_awaited(cio_loop *loop, uint64_t gen)
{
    cio__list *all = &loop->tasks.all;
    for (cio__list *n = all->next; n != all; n = n->next) {
        cio_task *to[MAX_AWAITS];
        size_t k = awaits_of(cio__container_of(n, cio__task, all), to,
                             MAX_AWAITS);
        for (size_t i = 0; i < k && i < MAX_AWAITS; i++)
            cio__task_of(to[i])->dump_awaited = gen;
    }
}

/* t, then what it awaits, each one level deeper; each task once (`gen`,
 * as above). */
static void print_tree(FILE *out, cio__task *t, int depth, uint64_t gen)
{
    t->dump_mark = gen;
    print_line(out, 2 * depth, "", &t->fut);
    cio_task *to[MAX_AWAITS];
    size_t n = awaits_of(t, to, MAX_AWAITS);
    for (size_t i = 0; i < n && i < MAX_AWAITS; i++) {
        cio__task *u = cio__task_of(to[i]);
        if (u->dump_mark != gen && depth < MAX_DEPTH)
            print_tree(out, u, depth + 1, gen);
    }
}


static void print_json_ids(FILE *out, cio_task *const *ts, int n)
{
    fputc('[', out);
    for (int i = 0; i < n && i < MAX_AWAITS; i++)
        fprintf(out, "%s%llu", i ? "," : "",
                (unsigned long long)cio__task_of(ts[i])->id);
    fputc(']', out);
}

static void print_json_time(FILE *out, const char *key, double when,
                            double now)
{
    if (when < INFINITY)
        fprintf(out, ",\"%s\":%.6f", key, when - now);
    else
        fprintf(out, ",\"%s\":null", key);
}

/* One JSON object on one line: every field of cio_task_info (deadlines
 * as seconds from now, null if none) and the ids of the edges. */
static void print_json(FILE *out, const cio_task *task)
{
    cio_task_info i;
    cio_task_inspect(task, &i);
    double now = cio_loop_time(task->loop);
    fprintf(out, "{\"id\":%llu,\"name\":", (unsigned long long)i.id);
    cio__json_string(out, i.name);
    fprintf(out, ",\"state\":\"%s\",\"waiting_on\":", i.state);
    if (i.waiting_on)
        cio__json_string(out, i.waiting_on);
    else
        fputs("null", out);
    if (i.object)
        fprintf(out, ",\"object\":\"%p\"", i.object);
    else
        fputs(",\"object\":null", out);
    fprintf(out, ",\"fd\":%d", i.fd);
    print_json_time(out, "due_in", i.deadline, now);
    print_json_time(out, "timeout_in", i.scope_deadline, now);
    fprintf(out, ",\"cancelling\":%d,\"file\":", i.cancelling);
    if (i.file)
        cio__json_string(out, i.file);
    else
        fputs("null", out);
    fprintf(out, ",\"line\":%d,\"age\":%.6f,\"stack_size\":%zu,"
            "\"stack_used\":%zu,\"awaits\":", i.line, i.age, i.stack_size,
            i.stack_used);
    cio_task *ts[MAX_AWAITS];
    print_json_ids(out, ts, cio_task_awaits(task, ts, MAX_AWAITS));
    fputs("}\n", out);
}

int cio_loop_print_tasks(cio_loop *loop, FILE *out, int format)
{
    if (!loop)
        loop = cio__running_loop;
    if (!loop || !out || (format != CIO_DUMP_TEXT && format != CIO_DUMP_JSON))
        return -EINVAL;
    cio__list *all = &loop->tasks.all;
    if (format == CIO_DUMP_JSON) {
        for (cio__list *n = all->next; n != all; n = n->next)
            print_json(out, &cio__container_of(n, cio__task, all)->fut);
        return 0;
    }
    int count = cio_all_tasks(loop, NULL, 0);
    fprintf(out, "%d task%s\n", count, count == 1 ? "" : "s");
    uint64_t awaited = ++loop->tasks.dump_gen, gen = ++loop->tasks.dump_gen;
    mark_awaited(loop, awaited);
    for (cio__list *n = all->next; n != all; n = n->next) {
        cio__task *t = cio__container_of(n, cio__task, all);
        if (t->dump_awaited != awaited)
            print_tree(out, t, 0, gen);
    }
    /* Tasks only a cycle of awaits reaches: no root leads to them. */
    for (cio__list *n = all->next; n != all; n = n->next) {
        cio__task *t = cio__container_of(n, cio__task, all);
        if (t->dump_mark != gen)
            print_tree(out, t, 0, gen);
    }
    return 0;
}

/* ------------------------------------------------------ dump on a signal
 * The signal arrives as a loop callback (signal.c's signalfd), so the
 * dump is written from the loop thread between callbacks, never from a
 * signal handler: the task list holds still while it is read. */

struct dump_request {
    int fd, format;
};
typedef struct dump_request dump_request;


static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return; /* nowhere to report it: the dump is best effort */
        p += k;
        n -= (size_t)k;
    }
}

static void dump_now(void *arg)
{
    dump_request *rq = arg;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem)
        return;
    cio_loop_print_tasks(cio__running_loop, mem, rq->format);
    if (fclose(mem) == 0)
        write_all(rq->fd, buf, len);
    free(buf);
}

int cio_loop_dump_on_signal(cio_loop *loop, int signum, int fd, int format)
{
    if (!loop || fd < 0 || (format != CIO_DUMP_TEXT && format != CIO_DUMP_JSON))
        return -EINVAL;
    dump_request *rq = loop->dump_request;
    if (!rq) {
        rq = cio__malloc(sizeof *rq);
        if (!rq)
            return -ENOMEM;
    }
    int err = cio_add_signal_handler(loop, signum, dump_now, rq);
    if (err) {
        if (rq != loop->dump_request)
            cio__free(rq);
        return err;
    }
    *rq = (dump_request){fd, format};
    loop->dump_request = rq;
    return 0;
}
