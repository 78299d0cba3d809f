/* The timeline trace (trace.c): cio_loop_trace_start / stop and
 * $CIO_TRACE. A program with a task that sleeps, one that hands work to
 * a thread, a reader and a timer is traced; the file must hold each kind
 * of event on its row, and pass tests/check_trace.py (well-formed, every
 * slice closed, rows that never overlap). Every test name starts with
 * "trace_". */
#define _GNU_SOURCE
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *tmp_path(const char *name)
{
    static char path[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/cio-trace-XXXXXX");
        CHECK(mkdtemp(dir) != NULL);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* Each test's files go with it. */
static void remove_tmp(void)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ(system(cmd), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}


static void check_valid(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "python3 tests/check_trace.py %s >&2", path);
    CHECK_EQ(system(cmd), 0);
}

static int sleeper(void *arg) { (void)arg; return cio_sleep(0.01); }

static int work(void *arg) { (void)arg; return 5; }

static int thread_user(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_task_set_name(cio_current_task(), "renamed \"worker\""), 0);
    return cio_to_thread(work, NULL);
}

static void readable(void *arg) { cio_event_set(arg); }

static int t_traced(void *arg)
{
    const char *path = arg;
    cio_loop *loop = loop_now();
    CHECK_ERR(cio_loop_trace_start(loop, path), 0);
    CHECK_ERR(cio_loop_trace_start(loop, path), -EBUSY);
    cio_task_options o = {.name = "napper"};
    cio_task *a = NULL, *b = NULL;
    CHECK_ERR(cio_task_new(NULL, sleeper, NULL, &o, &a), 0);
    CHECK_ERR(cio_task_new(NULL, thread_user, NULL, NULL, &b), 0);
    int p[2];
    CHECK(pipe(p) == 0);
    cio_event ev = CIO_EVENT_INIT;
    CHECK_ERR(cio_add_reader(loop, p[0], readable, &ev), 0);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK_ERR(cio_event_wait(&ev), 0);
    CHECK_EQ(cio_remove_reader(loop, p[0]), 1);
    CHECK_ERR(finish(a), 0);
    CHECK_ERR(finish(b), 5);
    CHECK_ERR(cio_loop_trace_stop(loop), 0);
    CHECK_ERR(cio_loop_trace_stop(loop), 0); /* not tracing: nothing */
    close_pair(p);

    char *t = slurp(path);
    check_valid(path);
    char want[128];
    snprintf(want, sizeof want, "\"ph\":\"i\",\"name\":\"readable\",\"pid\":1,"
             "\"tid\":0,");
    CHECK_HAS(t, want);
    snprintf(want, sizeof want, "\"args\":{\"fd\":%d}", p[0]);
    CHECK_HAS(t, want);
    CHECK_HAS(t, "\"ph\":\"i\",\"name\":\"timer\"");
    CHECK_HAS(t, "\"name\":\"callback\",\"pid\":1,\"tid\":0");
    CHECK_HAS(t, "\"args\":{\"name\":\"napper\"}");
    CHECK_HAS(t, "\"args\":{\"name\":\"renamed \\\"worker\\\"\"}");
    /* The main task (id 1) waited on the event; the napper (2) slept; the
     * other (3) waited for its job, which ran on a worker's row. */
    CHECK_HAS(t, "\"name\":\"event\",\"pid\":1,\"tid\":1,");
    CHECK_HAS(t, "\"name\":\"sleep\",\"pid\":1,\"tid\":2,");
    CHECK_HAS(t, "\"name\":\"executor job\",\"pid\":1,\"tid\":3,");
    CHECK_HAS(t, "\"name\":\"executor job\",\"pid\":1,\"tid\":10995116277");
    CHECK_HAS(t, "\"lost_events\":false");
    return 0;
}

TEST(trace_records_tasks_waits_callbacks_io_timers_and_jobs)
{
    run_strict(t_traced, (void *)tmp_path("a.json"));
    remove_tmp();
}

static int wait_event(void *arg) { return cio_event_wait(arg); }

/* A trace still running when the loop closes is written then, with the
 * waits still open closed where they stood. */
static int t_left_open(void *arg)
{
    CHECK_ERR(cio_loop_trace_start(loop_now(), arg), 0);
    /* Static: the task still waits on it after this frame has returned. */
    static cio_event never = CIO_EVENT_INIT;
    cio_task_options o = {.name = "forever"};
    cio_task *t = NULL;
    CHECK_ERR(cio_task_new(NULL, wait_event, &never, &o, &t), 0);
    settle();
    cio_future_unref(t); /* left parked: the loop's close ends it */
    return 0;
}

TEST(trace_written_when_the_loop_closes)
{
    const char *path = tmp_path("b.json");
    cio_loop *loop = loop_open();
    cio_task *main_task = NULL;
    CHECK_ERR(cio_task_new(loop, t_left_open, (void *)path, NULL, &main_task),
              0);
    CHECK_ERR(cio_loop_run_until_complete(loop, main_task), 0);
    cio_future_unref(main_task);
    cio_loop_set_exception_handler(loop, count_reports, &(int){0});
    cio_loop_free(loop);
    check_valid(path);
    char *t = slurp(path);
    CHECK_HAS(t, "\"args\":{\"name\":\"forever\"}");
    CHECK_HAS(t, "\"name\":\"event\",\"pid\":1,\"tid\":2,");
    remove_tmp();
}

static int t_bad(void *arg)
{
    (void)arg;
    cio_loop *loop = loop_now();
    CHECK_ERR(cio_loop_trace_start(NULL, "x"), -EINVAL);
    CHECK_ERR(cio_loop_trace_start(loop, NULL), -EINVAL);
    CHECK_ERR(cio_loop_trace_start(loop, ""), -EINVAL);
    CHECK_ERR(cio_loop_trace_start(loop, "/nonexistent-dir/t.json"), -ENOENT);
    CHECK_ERR(cio_loop_trace_stop(NULL), -EINVAL);
    /* A file that cannot be written when the trace ends: the error. */
    const char *path = tmp_path("gone/c.json");
    char sub[128];
    snprintf(sub, sizeof sub, "%s/gone", dir);
    CHECK(mkdir(sub, 0700) == 0);
    CHECK_ERR(cio_loop_trace_start(loop, path), 0);
    CHECK(unlink(path) == 0 && rmdir(sub) == 0);
    CHECK_ERR(cio_loop_trace_stop(loop), -ENOENT);
    return 0;
}

TEST(trace_bad_calls)
{
    run_strict(t_bad, NULL);
    remove_tmp();
}

/* $CIO_TRACE: every loop traces; the second of the process to path.2. */
TEST(trace_from_the_environment_numbers_later_loops)
{
    const char *path = tmp_path("env.json");
    CHECK(setenv("CIO_TRACE", path, 1) == 0);
    cio_loop *one = loop_open(), *two = loop_open();
    CHECK(unsetenv("CIO_TRACE") == 0);
    cio_loop_free(two);
    cio_loop_free(one);
    check_valid(path);
    char second[160];
    snprintf(second, sizeof second, "%s.2", path);
    check_valid(second);
    CHECK_HAS(slurp(second), "\"args\":{\"name\":\"cio loop 2\"}");
    remove_tmp();
}
