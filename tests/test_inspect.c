/* Seeing inside (inspect.c): cio_task_inspect for a task parked in each
 * kind of wait, the await graph (cio_task_awaits, cio_task_awaited_by),
 * cio_print_call_graph, the loop's dump as a tree and as JSON lines, and
 * the dump a signal asks for. Time is the virtual clock's wherever a
 * deadline or an age is checked, so the figures are exact. Every test
 * name starts with "inspect_". */
#define _GNU_SOURCE
#include "util.h"

#include <alloca.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static cio_task *named(const char *name, cio_task_fn fn, void *arg)
{
    cio_task_options o = {.name = name};
    cio_task *t = NULL;
    CHECK_ERR(cio_task_new(NULL, fn, arg, &o, &t), 0);
    return t;
}

static cio_task_info info_of(cio_task *t)
{
    cio_task_info i;
    CHECK_ERR(cio_task_inspect(t, &i), 0);
    return i;
}

/* What fn(arg, out) printed, as a string the caller frees. */
static char *printed(int (*fn)(void *arg, FILE *out), void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    CHECK(mem != NULL);
    CHECK_ERR(fn(arg, mem), 0);
    CHECK(fclose(mem) == 0);
    return buf;
}

static int dump_text(void *arg, FILE *out)
{
    return cio_loop_print_tasks(arg, out, CIO_DUMP_TEXT);
}

static int dump_json(void *arg, FILE *out)
{
    return cio_loop_print_tasks(arg, out, CIO_DUMP_JSON);
}

static int call_graph(void *arg, FILE *out)
{
    return cio_print_call_graph(arg, out);
}

/* The line of text that contains `needle`, copied into line. */
static void line_with(const char *text, const char *needle, char *line,
                      size_t cap)
{
    const char *p = strstr(text, needle);
    if (!p)
        test_fail(__FILE__, __LINE__, "no line with \"%s\" in:\n%s", needle,
                  text);
    while (p > text && p[-1] != '\n')
        p--;
    size_t n = strcspn(p, "\n");
    CHECK(n < cap);
    memcpy(line, p, n);
    line[n] = 0;
}


static int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* ------------------------------------------------- one task per wait */

typedef struct waits {
    cio_lock lock;
    cio_event event, never;
    cio_condition cond;
    cio_semaphore sem;
    cio_barrier barrier;
    cio_queue *empty, *full, *unjoined;
    int sock[2], jam[2]; /* jam[1]: its send buffer is full */
    cio_process *child;
    int work_pipe[2];
    cio_future *fut;
    cio_task *sleeper;
} waits;

static int w_sleep(void *arg) { (void)arg; return cio_sleep(30); }
static int w_lock(void *arg) { return cio_lock_acquire(&((waits *)arg)->lock); }
static int w_event(void *arg) { return cio_event_wait(&((waits *)arg)->event); }
static int w_cond(void *arg)
{
    waits *w = arg;
    CHECK_ERR(cio_condition_acquire(&w->cond), 0);
    int r = cio_condition_wait(&w->cond);
    cio_condition_release(&w->cond);
    return r;
}
static int w_sem(void *arg) { return cio_semaphore_acquire(&((waits *)arg)->sem); }
static int w_barrier(void *arg) { return cio_barrier_wait(&((waits *)arg)->barrier); }
static int w_get(void *arg)
{
    int item;
    return cio_queue_get(((waits *)arg)->empty, &item);
}
static int w_put(void *arg)
{
    int item = 2;
    return cio_queue_put(((waits *)arg)->full, &item);
}
static int w_join(void *arg) { return cio_queue_join(((waits *)arg)->unjoined); }
static int w_recv(void *arg)
{
    char c;
    ssize_t n = cio_sock_recv(((waits *)arg)->sock[0], &c, 1);
    return n == 1 ? 0 : (int)n;
}
static int w_stream(void *arg)
{
    char c;
    ssize_t n = cio_stream_read(cio_process_stdout(((waits *)arg)->child), &c,
                                1);
    return n < 0 ? (int)n : 0;
}
static int w_exit(void *arg)
{
    int code;
    return cio_process_wait(((waits *)arg)->child, &code);
}
static int blocking_work(void *arg)
{
    char c;
    return read(*(int *)arg, &c, 1) == 1 ? 0 : -EIO;
}
static int w_thread(void *arg)
{
    return cio_to_thread(blocking_work, &((waits *)arg)->work_pipe[0]);
}
static int w_future(void *arg) { return cio_await(((waits *)arg)->fut, NULL); }
static int w_task(void *arg) { return cio_await(((waits *)arg)->sleeper, NULL); }
static int w_write(void *arg)
{
    return cio_sock_sendall(((waits *)arg)->jam[1], "x", 1);
}
static int w_drain(void *arg)
{
    static char big[512 * 1024]; /* more than the pipe and the buffer */
    cio_stream *in = cio_process_stdin(((waits *)arg)->child);
    int err = cio_stream_write(in, big, sizeof big);
    return err ? err : cio_stream_drain(in); /* sleep never reads */
}
static int w_as_completed(void *arg)
{
    cio_future *f = ((waits *)arg)->fut;
    cio_as_completed *it;
    int err = cio_as_completed_new(&f, 1, CIO_NO_TIMEOUT, &it);
    if (err)
        return err;
    cio_future *next;
    err = cio_as_completed_next(it, &next);
    cio_as_completed_free(it);
    return err;
}
static int w_scope(void *arg)
{
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 5), 0);
    int r = cio_event_wait(&((waits *)arg)->never);
    int e = cio_timeout_end(&s);
    return r ? r : e;
}

typedef struct expect {
    const char *name;
    cio_task_fn fn;
    const char *what;
} expect;

static const expect EXPECT[] = {
    {"sleeper", w_sleep, "sleep"},
    {"locker", w_lock, "lock"},
    {"eventer", w_event, "event"},
    {"conder", w_cond, "condition"},
    {"semer", w_sem, "semaphore"},
    {"barrierer", w_barrier, "barrier"},
    {"getter", w_get, "queue get"},
    {"putter", w_put, "queue put"},
    {"joiner", w_join, "queue join"},
    {"receiver", w_recv, "read"},
    {"streamer", w_stream, "stream read"},
    {"exiter", w_exit, "process exit"},
    {"threader", w_thread, "executor job"},
    {"futurer", w_future, "future"},
    {"tasker", w_task, "task"},
    {"writer", w_write, "write"},
    {"drainer", w_drain, "stream drain"},
    {"completer", w_as_completed, "as_completed"},
    {"scoper", w_scope, "event"},
};
enum { NWAITS = sizeof EXPECT / sizeof EXPECT[0] };

static const void *object_of(waits *w, const char *what)
{
    static const struct { const char *what; size_t off; } objs[] = {
        {"lock", offsetof(waits, lock)},
        {"event", offsetof(waits, event)},
        {"condition", offsetof(waits, cond)},
        {"semaphore", offsetof(waits, sem)},
        {"barrier", offsetof(waits, barrier)},
    };
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
        if (!strcmp(objs[i].what, what))
            return (char *)w + objs[i].off;
    if (!strcmp(what, "queue get"))
        return w->empty;
    if (!strcmp(what, "queue put"))
        return w->full;
    if (!strcmp(what, "queue join"))
        return w->unjoined;
    if (!strcmp(what, "stream read"))
        return cio_process_stdout(w->child);
    if (!strcmp(what, "stream drain"))
        return cio_process_stdin(w->child);
    if (!strcmp(what, "future"))
        return w->fut;
    if (!strcmp(what, "task"))
        return w->sleeper;
    return NULL; /* checked separately */
}

static void waits_open(waits *w)
{
    *w = (waits){.lock = CIO_LOCK_INIT,
                 .event = CIO_EVENT_INIT,
                 .never = CIO_EVENT_INIT,
                 .sem = CIO_SEMAPHORE_INIT(0)};
    CHECK_ERR(cio_condition_init(&w->cond, NULL), 0);
    CHECK_ERR(cio_barrier_init(&w->barrier, 2), 0);
    CHECK_ERR(cio_lock_acquire(&w->lock), 0); /* the main task holds it */
    CHECK_ERR(cio_queue_new(&w->empty, sizeof(int), 0), 0);
    CHECK_ERR(cio_queue_new(&w->full, sizeof(int), 1), 0);
    CHECK_ERR(cio_queue_new(&w->unjoined, sizeof(int), 0), 0);
    int item = 1;
    CHECK_ERR(cio_queue_put(w->full, &item), 0);
    CHECK_ERR(cio_queue_put(w->unjoined, &item), 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, w->sock) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, w->jam) == 0);
    static char chunk[4096];
    while (write(w->jam[1], chunk, sizeof chunk) > 0) {
    }
    CHECK(errno == EAGAIN);
    cio_process_options o = {.in = {.kind = CIO_STDIO_PIPE},
                             .out = {.kind = CIO_STDIO_PIPE}};
    CHECK_ERR(cio_create_subprocess_exec(ARGV("sleep", "100"), &o, &w->child),
              0);
    CHECK(pipe(w->work_pipe) == 0);
    w->fut = future_open();
}

/* What the cancelled tasks cannot end by themselves: the child they
 * wait for, the thread's blocking read. */
static void waits_unblock(waits *w)
{
    CHECK_ERR(cio_process_kill(w->child), 0);
    CHECK(write(w->work_pipe[1], "x", 1) == 1);
}

/* Once every task is done: what they waited on (as_completed, for one,
 * borrows its future until it is freed). Not the thread's pipe: the
 * cancelled to_thread task is done before its thread, whose read may
 * still be on the fd; it closes once cio_run has joined the workers. */
static void waits_close(waits *w)
{
    cio_lock_release(&w->lock);
    cio_queue_free(w->empty);
    cio_queue_free(w->full);
    cio_queue_free(w->unjoined);
    close_pair(w->sock);
    close_pair(w->jam);
    cio_process_free(w->child);
    cio_future_unref(w->fut);
}

static int t_each_wait(void *arg)
{
    int *work_pipe = arg;
    CHECK_ERR(cio_loop_set_virtual_clock(loop_now(), 0), 0);
    waits w;
    waits_open(&w);
    double t0 = now();
    cio_task *ts[NWAITS];
    for (int i = 0; i < NWAITS; i++) {
        ts[i] = named(EXPECT[i].name, EXPECT[i].fn, &w);
        if (i == 0)
            w.sleeper = ts[0];
    }
    settle();
    CHECK_ERR(cio_loop_advance(loop_now(), 2), 0);
    WAIT_BOUNDED(info_of(ts[12]).waiting_on != NULL, yield_n(1));
    for (int i = 0; i < NWAITS; i++) {
        cio_task_info in = info_of(ts[i]);
        CHECK_STR(in.name, EXPECT[i].name);
        CHECK_STR(in.state, "parked");
        CHECK(in.waiting_on != NULL);
        CHECK_STR(in.waiting_on, EXPECT[i].what);
        const void *obj = object_of(&w, EXPECT[i].what);
        if (i == NWAITS - 1)
            obj = &w.never; /* the scope's task waits on this one */
        if (obj)
            CHECK(in.object == obj);
        int fd = !strcmp(in.waiting_on, "read")    ? w.sock[0]
                 : !strcmp(in.waiting_on, "write") ? w.jam[1]
                                                   : -1;
        CHECK_EQ(in.fd, fd);
        CHECK_STR(in.file, __FILE__);
        CHECK(in.line > 0);
        CHECK(in.age == now() - t0);
        CHECK(in.age == 2); /* the virtual clock moved by 2 s exactly */
        CHECK(in.deadline == (i == 0 ? t0 + 30 : INFINITY));
        CHECK(in.scope_deadline == (i == NWAITS - 1 ? t0 + 5 : INFINITY));
        CHECK_EQ(in.cancelling, 0);
    }
    cio_task_info self = info_of(cio_current_task());
    CHECK_STR(self.state, "running");
    CHECK(self.waiting_on == NULL && self.object == NULL && self.fd == -1);

    /* The text dump: one line per task, each saying its wait. */
    char *text = printed(dump_text, loop_now());
    CHECK_EQ(count_lines(text), 1 + NWAITS + 1);
    CHECK(strncmp(text, "20 tasks\n", 9) == 0);
    char line[512], want[128];
    line_with(text, "eventer (id", line, sizeof line);
    snprintf(want, sizeof want, "parked on event %p", (void *)&w.event);
    CHECK_HAS(line, want);
    line_with(text, "receiver (id", line, sizeof line);
    snprintf(want, sizeof want, "parked on read fd %d", w.sock[0]);
    CHECK_HAS(line, want);
    line_with(text, "sleeper (id", line, sizeof line);
    CHECK_HAS(line, ", due in 28.000 s");
    line_with(text, "scoper (id", line, sizeof line);
    CHECK_HAS(line, ", timeout in 3.000 s");
    line_with(text, "Task-1 (id 1)", line, sizeof line);
    CHECK_HAS(line, "running");
    /* tasker awaits sleeper: sleeper is below it, not a root. */
    line_with(text, "tasker (id", line, sizeof line);
    CHECK(line[0] != ' ');
    line_with(text, "  sleeper (id", line, sizeof line);
    free(text);

    char *json = printed(dump_json, loop_now());
    CHECK_EQ(count_lines(json), NWAITS + 1);
    for (const char *p = json; *p; p = strchr(p, '\n') + 1)
        CHECK(strncmp(p, "{\"id\":", 6) == 0 && strchr(p, '\n')[-1] == '}');
    line_with(json, "\"name\":\"putter\"", line, sizeof line);
    CHECK_HAS(line, "\"state\":\"parked\",\"waiting_on\":\"queue put\"");
    CHECK_HAS(line, "\"due_in\":null,\"timeout_in\":null");
    CHECK_HAS(line, "\"age\":2.000000");
    line_with(json, "\"name\":\"sleeper\"", line, sizeof line);
    CHECK_HAS(line, "\"due_in\":28.000000");
    CHECK_HAS(line, "\"awaits\":[]");
    line_with(json, "\"name\":\"tasker\"", line, sizeof line);
    snprintf(want, sizeof want, "\"awaits\":[%llu]}",
             (unsigned long long)info_of(ts[0]).id);
    CHECK_HAS(line, want);
    free(json);

    for (int i = 0; i < NWAITS; i++)
        cio_task_cancel(ts[i]);
    waits_unblock(&w);
    for (int i = 0; i < NWAITS; i++)
        finish(ts[i]);
    waits_close(&w);
    work_pipe[0] = w.work_pipe[0];
    work_pipe[1] = w.work_pipe[1];
    return 0;
}

TEST(inspect_each_kind_of_wait)
{
    int work_pipe[2] = {-1, -1};
    run_strict(t_each_wait, work_pipe); /* its workers joined at the end */
    close_pair(work_pipe);
}

/* ------------------------------------------------------- the await graph */

typedef struct chain {
    cio_task *next; /* awaited by this link, or NULL: the bottom sleeps */
} chain;

static int link_body(void *arg)
{
    chain *c = arg;
    return c->next ? cio_await(c->next, NULL) : cio_sleep(100);
}

static int t_call_graph(void *arg)
{
    (void)arg;
    chain cs[3] = {{0}};
    cio_task *bottom = named("bottom", link_body, &cs[2]);
    cs[1].next = bottom;
    cio_task *middle = named("middle", link_body, &cs[1]);
    cs[0].next = middle;
    cio_task *top = named("top", link_body, &cs[0]);
    settle();
    cio_task *got[4];
    CHECK_EQ(cio_task_awaits(top, got, 4), 1);
    CHECK(got[0] == middle);
    CHECK_EQ(cio_task_awaits(bottom, got, 4), 0);
    CHECK_EQ(cio_task_awaited_by(bottom, got, 4), 1);
    CHECK(got[0] == middle);
    CHECK_EQ(cio_task_awaited_by(top, got, 4), 0);
    CHECK_EQ(cio_task_awaits(top, NULL, 0), 1); /* a count alone */

    /* asyncio's print_call_graph: the task, then who awaits it. */
    char *g = printed(call_graph, bottom);
    CHECK_EQ(count_lines(g), 3);
    CHECK(strncmp(g, "bottom (id ", 11) == 0);
    CHECK_HAS(g, "parked on sleep");
    CHECK_HAS(g, "\n  awaited by middle (id ");
    CHECK_HAS(g, "\n    awaited by top (id ");
    char want[64];
    snprintf(want, sizeof want, "parked on task %p", (void *)bottom);
    CHECK_HAS(g, want);
    free(g);

    /* The loop's tree: top at the left, each awaited task one deeper. */
    char *text = printed(dump_text, loop_now());
    CHECK_HAS(text, "\ntop (id ");
    CHECK_HAS(text, "\n  middle (id ");
    CHECK_HAS(text, "\n    bottom (id ");
    CHECK(strstr(text, "top (id ") < strstr(text, "middle (id "));
    CHECK(strstr(text, "middle (id ") < strstr(text, "bottom (id "));
    free(text);

    cio_task_cancel(bottom);
    CHECK_ERR(finish(top), -ECANCELED);
    CHECK_ERR(finish(middle), -ECANCELED);
    CHECK_ERR(finish(bottom), -ECANCELED);
    return 0;
}

TEST(inspect_call_graph_of_a_chain_of_awaits)
{
    run_strict(t_call_graph, NULL);
}

static int nap_long(void *arg) { (void)arg; return cio_sleep(100); }

static int gather_two(void *arg)
{
    cio_task **kids = arg;
    cio_result results[2];
    return cio_gather(kids, 2, 0, results);
}

static int group_of_two(void *arg)
{
    (void)arg;
    cio_task_group *g;
    CHECK_ERR(cio_task_group_new(&g), 0);
    cio_task_options o = {.name = "member"};
    for (int i = 0; i < 2; i++)
        CHECK_ERR(cio_task_group_spawn(g, nap_long, NULL, &o, NULL), 0);
    int r = cio_task_group_join(g);
    cio_task_group_free(g);
    return r;
}

static int t_tree(void *arg)
{
    (void)arg;
    cio_task *kids[2] = {named("kid", nap_long, NULL),
                         named("kid", nap_long, NULL)};
    cio_task *gatherer = named("gatherer", gather_two, kids);
    cio_task *grouper = named("grouper", group_of_two, NULL);
    settle();
    cio_task *got[4];
    CHECK_EQ(cio_task_awaits(gatherer, got, 4), 2);
    CHECK(got[0] == kids[0] && got[1] == kids[1]);
    CHECK_EQ(cio_task_awaits(grouper, got, 4), 2);
    CHECK_STR(info_of(grouper).waiting_on, "task group");
    CHECK_STR(info_of(gatherer).waiting_on, "gather or wait");
    CHECK_STR(cio_task_get_name(got[0]), "member");

    char *text = printed(dump_text, loop_now());
    /* 7 tasks: Task-1, two kids, gatherer, grouper, two members. */
    CHECK(strncmp(text, "7 tasks\n", 8) == 0);
    CHECK_EQ(count_lines(text), 8);
    const char *g = strstr(text, "\ngatherer (id ");
    const char *m = strstr(text, "\ngrouper (id ");
    CHECK(g && m);
    CHECK(strncmp(strstr(g + 1, "\n") + 1, "  kid (id ", 10) == 0);
    CHECK(strncmp(strstr(m + 1, "\n") + 1, "  member (id ", 13) == 0);
    char line[512];
    line_with(text, "  member (id ", line, sizeof line);
    CHECK_HAS(line, ", created at tests/test_inspect.c:"); /* spawn's site */
    CHECK(strstr(text, "\nkid (id ") == NULL); /* never a root */
    free(text);

    cio_task_cancel(gatherer);
    cio_task_cancel(grouper);
    CHECK_ERR(finish(gatherer), -ECANCELED);
    CHECK_ERR(finish(grouper), -ECANCELED);
    for (int i = 0; i < 2; i++) {
        cio_task_cancel(kids[i]);
        CHECK_ERR(finish(kids[i]), -ECANCELED);
    }
    return 0;
}

TEST(inspect_tree_of_gather_and_task_group)
{
    run_strict(t_tree, NULL);
}

/* Two tasks awaiting each other (a deadlock of the program's making):
 * each is printed once and the dump ends. Cancelling one ends both: the
 * cancel that a's await passes to b comes back to a, which wakes to it
 * (it overflowed the stack, each cancel passing it on again, before). */
static int t_cycle(void *arg)
{
    (void)arg;
    chain a = {0}, b = {0};
    cio_task *ta = named("a", link_body, &a);
    cio_task *tb = named("b", link_body, &b);
    a.next = tb;
    b.next = ta;
    settle();
    CHECK_EQ(cio_task_awaited_by(ta, NULL, 0), 1);
    char *text = printed(dump_text, loop_now());
    CHECK_EQ(count_lines(text), 4);
    CHECK_HAS(text, "\na (id ");
    CHECK_HAS(text, "\n  b (id ");
    free(text);
    char *g = printed(call_graph, ta);
    CHECK_EQ(count_lines(g), 2); /* a, awaited by b; not a again */
    CHECK_HAS(g, "\n  awaited by b (id ");
    free(g);
    CHECK_EQ(cio_task_cancel(ta), 1);
    CHECK_EQ(cio_task_cancelling(ta), 1); /* once: the request came back */
    CHECK_EQ(cio_task_cancelling(tb), 1);
    CHECK_ERR(finish(ta), -ECANCELED);
    CHECK_ERR(finish(tb), -ECANCELED);
    return 0;
}

TEST(inspect_a_cycle_of_awaits_prints_each_task_once_and_cancels)
{
    run_strict(t_cycle, NULL);
}

/* ------------------------------------------------- states and edge cases */

static int quick(void *arg) { (void)arg; return 7; }
static int wait_event(void *arg) { return cio_event_wait(arg); }

static int t_states(void *arg)
{
    (void)arg;
    cio_task *t = named("quick", quick, NULL);
    CHECK_STR(info_of(t).state, "ready");
    CHECK(info_of(t).waiting_on == NULL);
    CHECK_ERR(cio_await(t, NULL), 7);
    CHECK_STR(info_of(t).state, "done");
    cio_future_unref(t);

    /* Woken but not yet run: ready, its wait no longer reported. */
    cio_event ev = CIO_EVENT_INIT;
    cio_task *w = named("waiter", wait_event, &ev);
    settle();
    CHECK_STR(info_of(w).waiting_on, "event");
    cio_event_set(&ev);
    CHECK_STR(info_of(w).state, "ready");
    CHECK(info_of(w).waiting_on == NULL);
    CHECK_ERR(finish(w), 0);

    /* A cancelled task that waits on in its cleanup says so. */
    cio_task *c = named("cleaner", sleep_then_clean_up, NULL);
    settle();
    cio_task_cancel(c);
    CHECK_EQ(info_of(c).cancelling, 1);
    finish(c);

    /* Bad calls. */
    cio_future *f = future_open();
    cio_task_info in;
    CHECK_ERR(cio_task_inspect(f, &in), -EINVAL);
    CHECK_ERR(cio_task_inspect(NULL, &in), -EINVAL);
    CHECK_ERR(cio_task_inspect(cio_current_task(), NULL), -EINVAL);
    CHECK_ERR(cio_task_awaits(f, NULL, 0), -EINVAL);
    CHECK_ERR(cio_task_awaits(cio_current_task(), NULL, 1), -EINVAL);
    CHECK_ERR(cio_task_awaited_by(NULL, NULL, 0), -EINVAL);
    CHECK_ERR(cio_print_call_graph(f, stderr), -EINVAL);
    CHECK_ERR(cio_print_call_graph(NULL, NULL), -EINVAL);
    CHECK_ERR(cio_loop_print_tasks(NULL, NULL, CIO_DUMP_TEXT), -EINVAL);
    CHECK_ERR(cio_loop_print_tasks(NULL, stderr, 2), -EINVAL);
    CHECK_ERR(cio_loop_dump_on_signal(loop_now(), SIGUSR1, -1, 0), -EINVAL);
    CHECK_ERR(cio_loop_dump_on_signal(loop_now(), SIGUSR1, 2, 5), -EINVAL);
    CHECK_ERR(cio_loop_dump_on_signal(NULL, SIGUSR1, 2, 0), -EINVAL);
    CHECK_ERR(cio_loop_dump_on_signal(loop_now(), SIGKILL, 2, 0), -EINVAL);
    cio_future_unref(f);
    return 0;
}

TEST(inspect_states_and_bad_calls)
{
    run_strict(t_states, NULL);
}

/* A name is the program's: JSON escapes what it must. */
static int t_json_escapes(void *arg)
{
    (void)arg;
    cio_task *t = named("say \"hi\"\\\n\t", nap_long, NULL);
    settle();
    char *json = printed(dump_json, loop_now());
    CHECK_HAS(json, "\"name\":\"say \\\"hi\\\"\\\\\\u000a\\u0009\"");
    CHECK_EQ(count_lines(json), 2);
    free(json);
    cio_task_cancel(t);
    finish(t);
    return 0;
}

TEST(inspect_json_escapes_names)
{
    run_strict(t_json_escapes, NULL);
}

/* ------------------------------------------------------ dump on a signal */

static void pipe_readable(void *arg) { cio_event_set(arg); }

static int t_signal_dump(void *arg)
{
    (void)arg;
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(cio_loop_dump_on_signal(loop_now(), SIGUSR1, p[1], CIO_DUMP_TEXT),
              0);
    cio_task *t = named("busy-worker", nap_long, NULL);
    settle();
    cio_event ev = CIO_EVENT_INIT;
    CHECK_ERR(cio_add_reader(loop_now(), p[0], pipe_readable, &ev), 0);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    CHECK_ERR(cio_event_wait(&ev), 0);
    CHECK_EQ(cio_remove_reader(loop_now(), p[0]), 1);
    char buf[4096];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    CHECK(n > 0);
    buf[n] = 0;
    CHECK(strncmp(buf, "2 tasks\n", 8) == 0);
    CHECK_HAS(buf, "busy-worker (id 2) parked on sleep");
    /* Moved to JSON: the next signal writes that. */
    CHECK_ERR(cio_loop_dump_on_signal(loop_now(), SIGUSR1, p[1], CIO_DUMP_JSON),
              0);
    cio_event_clear(&ev);
    CHECK_ERR(cio_add_reader(loop_now(), p[0], pipe_readable, &ev), 0);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    CHECK_ERR(cio_event_wait(&ev), 0);
    CHECK_EQ(cio_remove_reader(loop_now(), p[0]), 1);
    n = read(p[0], buf, sizeof buf - 1);
    CHECK(n > 0);
    buf[n] = 0;
    CHECK(strncmp(buf, "{\"id\":1,", 8) == 0);
    CHECK_HAS(buf, "\"name\":\"busy-worker\",\"state\":\"parked\"");
    CHECK_EQ(cio_remove_signal_handler(loop_now(), SIGUSR1), 1);
    cio_task_cancel(t);
    finish(t);
    close_pair(p);
    return 0;
}

TEST(inspect_dump_on_a_signal)
{
    run_strict(t_signal_dump, NULL);
}

/* ---------------------------------------------------------- stack use */

/* Uses `*arg` bytes of its stack (touched, so they count), then parks. */
static int use_stack(void *arg)
{
    size_t n = *(const size_t *)arg;
    char *buf = alloca(n);
    memset(buf, 1, n);
    __asm__ volatile("" : : "r"(buf) : "memory");
    return cio_sleep(100);
}

static size_t used_by(size_t n, const cio_task_options *o, size_t *size)
{
    cio_task *t = NULL;
    CHECK_ERR(cio_task_new(NULL, use_stack, &n, o, &t), 0);
    settle();
    cio_task_info in = info_of(t);
    CHECK_STR(in.waiting_on, "sleep");
    *size = in.stack_size;
    cio_task_cancel(t);
    CHECK_ERR(finish(t), -ECANCELED);
    return in.stack_used;
}

/* The truth is n and the frames above and below it: a few hundred bytes
 * here; the mark may round up to the page it reached. */
#define CHECK_NEAR_USE(used, n)                                                \
    do {                                                                       \
        CHECK((used) >= (n));                                                  \
        CHECK((used) <= (n) + 2048 + (size_t)sysconf(_SC_PAGESIZE));           \
    } while (0)

static int t_stack_use(void *arg)
{
    (void)arg;
    size_t size;
    /* A fresh stack, then the same stack again (warm: its pages were
     * painted), used less the second time: each mark is its own task's. */
    size_t deep = used_by(100 * 1024, NULL, &size);
    CHECK_EQ(size, 256 * 1024);
    CHECK_NEAR_USE(deep, 100 * 1024);
    size_t shallow = used_by(20 * 1024, NULL, &size);
    CHECK_NEAR_USE(shallow, 20 * 1024);
    size_t again = used_by(150 * 1024, NULL, &size);
    CHECK_NEAR_USE(again, 150 * 1024);

    /* The dump says it, and a finished task keeps its mark. */
    size_t n = 40 * 1024;
    cio_task *t = named("digger", use_stack, &n);
    settle();
    char *text = printed(dump_text, loop_now());
    char line[512];
    line_with(text, "digger (id", line, sizeof line);
    CHECK_HAS(line, " of 262144 bytes");
    free(text);
    cio_task_cancel(t);
    CHECK_ERR(cio_await(t, NULL), -ECANCELED);
    cio_task_info in = info_of(t);
    CHECK_NEAR_USE(in.stack_used, n);
    CHECK_EQ(in.stack_size, 0);
    cio_future_unref(t);

    /* Past 75% of its stack: reported, with a size to choose. */
    record_here();
    cio_task_options small = {.name = "greedy", .stack_size = 64 * 1024};
    used_by(52 * 1024, &small, &size);
    CHECK_EQ(REP.count, 1);
    CHECK_STR(REP.name, "greedy");
    CHECK_HAS(REP.message, "of its 65536-byte stack (more than 75%)");
    CHECK_HAS(REP.message, "stack_size of at least ");
    used_by(40 * 1024, &small, &size); /* 62%: quiet */
    CHECK_EQ(REP.count, 1);
    return 0;
}

TEST(inspect_stack_high_water_marks_in_debug_mode)
{
    cio_run_options o = {.loop = {.debug = 1}};
    CHECK_ERR(cio_run_with(t_stack_use, NULL, &o), 0);
}

static int t_no_stack_use(void *arg)
{
    (void)arg;
    size_t size;
    CHECK_EQ(used_by(20 * 1024, NULL, &size), 0);
    CHECK_EQ(size, 256 * 1024);
    return 0;
}

TEST(inspect_no_stack_marks_outside_debug_mode)
{
    cio_run_options o = {.loop = {.debug = -1}};
    CHECK_ERR(cio_run_with(t_no_stack_use, NULL, &o), 0);
}
