/* The helpers several test files share (see util.h). */
#define _GNU_SOURCE
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

test_log L;
cio_loop *LOOP;
report REP;
cio_future *GATE;
int VALUES[8];

/* --------------------------------------------------- clocks and waits */

double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void nap(double seconds)
{
    struct timespec ts = {(time_t)seconds,
                          (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

double tscale(void) { return test_scaled(20) < 20 ? 10.0 : 1.0; }

/* ------------------------------------------------------------ threads */

int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Records its thread id. */
static void *nothing(void *arg)
{
    *(pid_t *)arg = (pid_t)syscall(SYS_gettid);
    return NULL;
}

static bool tid_listed(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d", (int)tid);
    return access(path, F_OK) == 0;
}

int thread_base(void)
{
    pthread_t th;
    pid_t tid = 0;
    CHECK_EQ(pthread_create(&th, NULL, nothing, &tid), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    WAIT_UNTIL(!tid_listed(tid));
    return thread_count();
}

/* -------------------------------------------------- loops and the log */

cio_loop *loop_open(void)
{
    cio_loop *loop = NULL;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    CHECK(loop != NULL);
    LOOP = loop;
    return loop;
}

cio_loop *loop_open_with(const char *backend, int debug)
{
    cio_loop_options opts = {backend, debug, 0};
    cio_loop *loop = NULL;
    CHECK_ERR(cio_loop_new(&loop, &opts), 0);
    LOOP = loop;
    return loop;
}

void say(void *arg) { test_log_add(&L, "%s", (const char *)arg); }

void say_stop(void *arg)
{
    say(arg);
    CHECK_ERR(cio_loop_stop(LOOP), 0);
}

void count_cb(void *arg) { ++*(int *)arg; }

void readable_pipe(int p[2])
{
    CHECK_EQ(pipe(p), 0);
    CHECK_EQ(write(p[1], "x", 1), 1);
}

void close_pair(int p[2])
{
    close(p[0]);
    close(p[1]);
}

void capture_stderr(void (*fn)(void *), void *arg, char *buf, size_t cap)
{
    int p[2];
    CHECK_EQ(pipe(p), 0);
    fflush(stderr);
    int saved = dup(2);
    CHECK(saved >= 0);
    CHECK(dup2(p[1], 2) == 2);
    fn(arg);
    fflush(stderr);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while (len < cap - 1 && (n = read(p[0], buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = 0;
    close(p[0]);
}

/* -------------------------------------------------- tasks and futures */

cio_task *spawn(cio_task_fn fn, void *arg)
{
    cio_task *t = NULL;
    CHECK_ERR(cio_create_task(fn, arg, &t), 0);
    CHECK(t != NULL);
    return t;
}

int finish(cio_task *t)
{
    int r = cio_await(t, NULL);
    cio_future_unref(t);
    return r;
}

void yield_n(int n)
{
    for (int i = 0; i < n; i++)
        CHECK_ERR(cio_sleep(0), 0);
}

void settle(void) { yield_n(5); }

cio_loop *loop_now(void) { return cio_get_running_loop(); }

double now(void) { return cio_loop_time(cio_get_running_loop()); }

cio_future *future_open(void)
{
    cio_future *f = NULL;
    CHECK_ERR(cio_future_new(NULL, &f), 0);
    return f;
}

void unref_all(cio_future **f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cio_future_unref(f[i]);
}

const char *code(int r)
{
    static char buf[8][24];
    static int next;
    char *b = buf[next++ % 8];
    switch (r) {
    case -ECANCELED: return "ECANCELED";
    case -ETIMEDOUT: return "ETIMEDOUT";
    case -EPIPE: return "EPIPE";
    case -EINVAL: return "EINVAL";
    case -EDEADLK: return "EDEADLK";
    case -ESHUTDOWN: return "ESHUTDOWN";
    case -EAGAIN: return "EAGAIN";
    default: snprintf(b, 24, "%d", r); return b;
    }
}

int run_job(void *arg)
{
    job *j = arg;
    for (int i = 0; i < j->yields; i++) {
        int r = cio_sleep(0);
        if (r) {
            test_log_add(&L, "%s:%s", j->name, code(r));
            return r;
        }
    }
    int r = j->delay < 0 ? cio_await(GATE, NULL)
                         : j->delay > 0 ? cio_sleep(j->delay) : 0;
    if (r) {
        test_log_add(&L, "%s:%s", j->name, code(r));
        return r;
    }
    test_log_add(&L, "%s", j->name);
    if (j->status >= 0 && j->status < 8)
        CHECK_ERR(cio_task_set_value(&VALUES[j->status]), 0);
    return j->status;
}

int sleep_then_clean_up(void *arg)
{
    const char *name = arg;
    int r = cio_sleep(100);
    test_log_add(&L, "%s:%s", name, code(r));
    if (r != -ECANCELED)
        return r;
    cio_task_uncancel(cio_current_task());
    yield_n(2);
    CHECK_ERR(cio_sleep(0.001), 0);
    test_log_add(&L, "%s:cleaned", name);
    return -ECANCELED;
}

/* -------------------------------------------------- exception reports */

void record_report(cio_loop *loop, const cio_error_context *ctx, void *arg)
{
    (void)loop;
    report *r = arg;
    r->count++;
    snprintf(r->message, sizeof r->message, "%s", ctx->message);
    snprintf(r->what, sizeof r->what, "%s", ctx->what ? ctx->what : "");
    snprintf(r->name, sizeof r->name, "%s", ctx->name ? ctx->name : "");
    r->error = ctx->error;
    r->object = ctx->object;
}

void record_here(void)
{
    CHECK_ERR(cio_loop_set_exception_handler(cio_get_running_loop(),
                                             record_report, &REP),
              0);
}

void count_reports(cio_loop *loop, const cio_error_context *ctx, void *arg)
{
    (void)loop;
    (void)ctx;
    ++*(int *)arg;
}

void strict_handler(cio_loop *loop, const cio_error_context *ctx, void *arg)
{
    (void)loop;
    (void)arg;
    test_fail(__FILE__, __LINE__, "unexpected report: %s (%s)", ctx->message,
              cio_strerror(ctx->error));
}

void calm(void)
{
    cio_task *me = cio_current_task();
    while (cio_task_cancelling(me) > 0)
        cio_task_uncancel(me);
}

/* ------------------------------------------------------------ cio_run */

typedef struct runner {
    cio_task_fn fn;
    void *arg;
} runner;

static int strict_main(void *arg)
{
    runner *r = arg;
    CHECK_ERR(cio_loop_set_exception_handler(cio_get_running_loop(),
                                             strict_handler, NULL),
              0);
    return r->fn(r->arg);
}

void run_ok(cio_task_fn fn) { CHECK_ERR(cio_run(fn, NULL), 0); }

int run_strict_status(cio_task_fn fn, void *arg)
{
    runner r = {fn, arg};
    return cio_run(strict_main, &r);
}

void run_strict(cio_task_fn fn, void *arg)
{
    CHECK_ERR(run_strict_status(fn, arg), 0);
}

/* ------------------------------------------------- children and pipes */

cio_process_options stdio3(cio_stdio_kind in, cio_stdio_kind out,
                           cio_stdio_kind err)
{
    cio_process_options o;
    memset(&o, 0, sizeof o);
    o.in.kind = in;
    o.out.kind = out;
    o.err.kind = err;
    return o;
}

cio_process *sh(const char *cmd, const cio_process_options *o)
{
    cio_process *p = (cio_process *)&p;
    CHECK_ERR(cio_create_subprocess_shell(cmd, o, &p), 0);
    CHECK(p != NULL && p != (cio_process *)&p);
    CHECK(cio_process_pid(p) > 0);
    return p;
}

void check_bytes(const char *file, int line, const char *data, size_t len,
                 const char *expected)
{
    size_t n = strlen(expected);
    if (len == n && (n == 0 || (data && memcmp(data, expected, n) == 0)))
        return;
    int show = data ? (int)(len > 300 ? 300 : len) : 0;
    test_fail(file, line, "got %zu bytes \"%.*s\", expected \"%s\"", len,
              show, data ? data : "", expected);
}

char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp[2] : '?';
}

void check_echild(pid_t pid)
{
    errno = 0;
    CHECK_EQ(waitpid(pid, NULL, WNOHANG), -1);
    CHECK_ERR(-errno, -ECHILD);
}

void task_check_reaped(pid_t pid, double secs)
{
    double end = mono() + secs * tscale();
    char st;
    while ((st = proc_state(pid)) != 0) {
        if (mono() > end)
            test_fail(__FILE__, __LINE__, "child %d not reaped (state %c)",
                      (int)pid, st);
        CHECK_ERR(cio_sleep(0.01), 0);
    }
    check_echild(pid);
}

int count_children(int *zombies)
{
    DIR *d = opendir("/proc");
    CHECK(d != NULL);
    int n = 0, z = 0;
    long me = (long)getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = 0;
        char *rp = strrchr(buf, ')');
        char state;
        long ppid;
        if (!rp || sscanf(rp + 1, " %c %ld", &state, &ppid) != 2)
            continue;
        if (ppid == me) {
            n++;
            z += state == 'Z';
        }
    }
    closedir(d);
    if (zombies)
        *zombies = z;
    return n;
}

void check_no_children(double secs)
{
    double end = mono() + secs * tscale();
    int z = 0, n;
    while ((n = count_children(&z)) != 0) {
        if (mono() > end)
            test_fail(__FILE__, __LINE__, "%d children left, %d zombies", n,
                      z);
        usleep(5000);
    }
}

char pat(size_t i) { return (char)((i * 131u + (i >> 9)) & 0xff); }

size_t read_fd_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
        CHECK(len < cap - 1);
    }
    buf[len] = 0;
    return len;
}
