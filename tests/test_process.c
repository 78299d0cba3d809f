/* Subprocesses and pipes (issue 7): create_subprocess_exec / _shell with
 * every stdio choice, cwd and env, the fds a child inherits, errors from
 * the create call, return codes (negative for a signal), send_signal,
 * wait (cancelled, timed out), communicate (10 MiB each way), two hundred
 * children at once, reaping when nobody waits any more (object freed, loop
 * closed), the thread watcher, connect_read_pipe / connect_write_pipe, the
 * low-level subprocess transport and protocol, and failure injection.
 *
 * Everything runs real children (sh, cat, tee, sleep, ls, env, grep) and
 * real signals. "Reaped" is checked without reaping: the child's
 * /proc/PID entry must disappear (a zombie keeps it, in state Z), and only
 * then waitpid(pid, WNOHANG) must say ECHILD. Tests that run the same with
 * a thread per child instead of a pidfd exist twice: process_NAME and
 * process_thread_NAME. Every test name starts with "process_"
 * (`make check T=process`). */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ------------------------------------------------------------- helpers */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Time limits stretch under valgrind and sanitizers. */
static double tscale(void) { return test_scaled(20) < 20 ? 10.0 : 1.0; }

static void strict_handler(cio_loop *loop, const cio_error_context *ctx,
                           void *arg)
{
    (void)loop;
    (void)arg;
    test_fail(__FILE__, __LINE__, "unexpected report: %s (%s)", ctx->message,
              cio_strerror(ctx->error));
}

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

/* Runs fn(arg) as cio_run's main task; any exception report fails. */
static void run(cio_task_fn fn, void *arg)
{
    runner r = {fn, arg};
    CHECK_ERR(cio_run(strict_main, &r), 0);
}

static cio_process_options stdio3(cio_stdio_kind in, cio_stdio_kind out,
                                  cio_stdio_kind err)
{
    cio_process_options o;
    memset(&o, 0, sizeof o);
    o.in.kind = in;
    o.out.kind = out;
    o.err.kind = err;
    return o;
}

#define PIPE CIO_STDIO_PIPE
#define DEVNULL CIO_STDIO_DEVNULL
#define INHERIT CIO_STDIO_INHERIT

static cio_process *sh(const char *cmd, const cio_process_options *o)
{
    cio_process *p = (cio_process *)&p;
    CHECK_ERR(cio_create_subprocess_shell(cmd, o, &p), 0);
    CHECK(p != NULL && p != (cio_process *)&p);
    CHECK(cio_process_pid(p) > 0);
    return p;
}

static cio_process *ex(const char *const *argv, const cio_process_options *o)
{
    cio_process *p = (cio_process *)&p;
    CHECK_ERR(cio_create_subprocess_exec(argv, o, &p), 0);
    CHECK(p != NULL && p != (cio_process *)&p);
    CHECK(cio_process_pid(p) > 0);
    return p;
}

/* Waits; the code wait gives must be the one returncode gives. */
static int wait_code(cio_process *p)
{
    int code = 12345, again = 54321;
    CHECK_ERR(cio_process_wait(p, &code), 0);
    CHECK_EQ(cio_process_returncode(p, &again), 1);
    CHECK_EQ(again, code);
    return code;
}

#define CHECK_BYTES(data, len, expected)                                       \
    check_bytes(__FILE__, __LINE__, (data), (len), (expected))

static void check_bytes(const char *file, int line, const char *data,
                        size_t len, const char *expected)
{
    size_t n = strlen(expected);
    if (len == n && (n == 0 || (data && memcmp(data, expected, n) == 0)))
        return;
    int show = data ? (int)(len > 300 ? 300 : len) : 0;
    test_fail(file, line, "got %zu bytes \"%.*s\", expected \"%s\"", len,
              show, data ? data : "", expected);
}

typedef struct outputs {
    char *out, *err;
    size_t outlen, errlen;
} outputs;

static void communicate(cio_process *p, const char *input, outputs *o)
{
    o->out = o->err = NULL;
    o->outlen = o->errlen = 99999;
    CHECK_ERR(cio_process_communicate(p, input, input ? strlen(input) : 0,
                                      &o->out, &o->outlen, &o->err,
                                      &o->errlen),
              0);
}

static void outputs_free(outputs *o)
{
    cio_free(o->out);
    cio_free(o->err);
}

/* A child's state letter from /proc/PID/stat ('Z': zombie), 0 once the
 * process is gone (reaped). */
static char proc_state(pid_t pid)
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

static void check_echild(pid_t pid)
{
    errno = 0;
    CHECK_EQ(waitpid(pid, NULL, WNOHANG), -1);
    CHECK_ERR(-errno, -ECHILD);
}

/* From a task (the loop keeps running): pid must be reaped within secs. */
static void task_check_reaped(pid_t pid, double secs)
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

/* With no loop running: pid must be reaped in the background. */
static void check_reaped(pid_t pid, double secs)
{
    double end = mono() + secs * tscale();
    char st;
    while ((st = proc_state(pid)) != 0) {
        if (mono() > end)
            test_fail(__FILE__, __LINE__, "child %d not reaped (state %c)",
                      (int)pid, st);
        usleep(5000);
    }
    check_echild(pid);
}

/* A background watcher frees its share of a process object just after
 * reaping: give it a moment to get back to `base` live allocations. */
static void settle_allocs(long base)
{
    double end = mono() + 2 * tscale();
    while (cio__alloc_live() != base && mono() < end)
        usleep(2000);
    CHECK_EQ(cio__alloc_live(), base);
}

/* How many processes have this one as parent (*zombies: of them, in Z). */
static int count_children(int *zombies)
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

/* No loop running: every child of this process must be gone within secs
 * (killed ones die at once; a zombie never goes). */
static void check_no_children(double secs)
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

static char pat(size_t i) { return (char)((i * 131u + (i >> 9)) & 0xff); }

/* Reads fd (blocking) to EOF into buf; returns the length. */
static size_t read_fd_all(int fd, char *buf, size_t cap)
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

/* Tests that run with either watcher: process_NAME (pidfd) and
 * process_thread_NAME (a thread per child, as without pidfd). */
#define BOTH_WATCHERS(name, secs)                                              \
    static void body_##name(void);                                             \
    TEST_T(process_##name, secs) { body_##name(); }                            \
    TEST_T(process_thread_##name, secs)                                        \
    {                                                                          \
        cio__process_force_thread_watcher = true;                              \
        body_##name();                                                         \
    }                                                                          \
    static void body_##name(void)

/* ---------------------------------------------------- return codes */

static int t_exit_codes(void *arg)
{
    (void)arg;
    cio_process *p = sh("exit 3", NULL);
    int code = 777;
    /* Not reaped before the loop ran: still running as far as it knows. */
    CHECK_EQ(cio_process_returncode(p, &code), 0);
    CHECK_EQ(code, 777);
    CHECK_EQ(wait_code(p), 3);
    CHECK_EQ(wait_code(p), 3); /* a second wait returns at once */
    cio_process_free(p);

    p = ex(ARGV("sh", "-c", "exit 255"), NULL);
    CHECK_EQ(wait_code(p), 255);
    cio_process_free(p);
    p = ex(ARGV("true"), NULL);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
    p = ex(ARGV("false"), NULL);
    CHECK_EQ(wait_code(p), 1);
    cio_process_free(p);
    /* A child that kills itself: asyncio's negative returncode. */
    p = sh("kill -9 $$", NULL);
    CHECK_EQ(wait_code(p), -9);
    cio_process_free(p);
    p = sh("kill -TERM $$", NULL);
    CHECK_EQ(wait_code(p), -SIGTERM);
    cio_process_free(p);
    return 0;
}

BOTH_WATCHERS(exit_codes, 10) { run(t_exit_codes, NULL); }

static int t_signals(void *arg)
{
    (void)arg;
    cio_process_options o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    cio_process *p = ex(ARGV("sleep", "10"), &o);
    CHECK_ERR(cio_process_send_signal(p, 0), 0); /* it exists */
    CHECK_ERR(cio_process_send_signal(p, -1), -EINVAL);
    CHECK_ERR(cio_process_send_signal(p, NSIG), -EINVAL);
    CHECK_ERR(cio_process_kill(p), 0);
    CHECK_EQ(wait_code(p), -9);
    /* After the exit: -ESRCH, whatever the signal. */
    CHECK_ERR(cio_process_kill(p), -ESRCH);
    CHECK_ERR(cio_process_terminate(p), -ESRCH);
    CHECK_ERR(cio_process_send_signal(p, SIGUSR1), -ESRCH);
    CHECK_ERR(cio_process_send_signal(p, 0), -ESRCH);
    CHECK_ERR(cio_process_send_signal(p, -1), -EINVAL);
    cio_process_free(p);

    p = ex(ARGV("sleep", "10"), &o);
    CHECK_ERR(cio_process_terminate(p), 0);
    CHECK_EQ(wait_code(p), -SIGTERM);
    cio_process_free(p);

    p = ex(ARGV("sleep", "10"), &o);
    CHECK_ERR(cio_process_send_signal(p, SIGUSR1), 0);
    CHECK_EQ(wait_code(p), -SIGUSR1);
    cio_process_free(p);

    /* The signal reaches the child itself: its trap runs. */
    o = stdio3(DEVNULL, PIPE, DEVNULL);
    p = sh("trap 'exit 7' TERM; echo ready; "
           "while :; do sleep 0.02; done",
           &o);
    const char *line;
    CHECK_EQ(cio_stream_readline(cio_process_stdout(p), &line), 6);
    CHECK(memcmp(line, "ready\n", 6) == 0);
    CHECK_ERR(cio_process_terminate(p), 0);
    CHECK_EQ(wait_code(p), 7);
    cio_process_free(p);
    CHECK_ERR(cio_process_send_signal(NULL, SIGTERM), -EINVAL);
    return 0;
}

BOTH_WATCHERS(signals, 10) { run(t_signals, NULL); }

/* ------------------------------------------------------------ stdio */

static int t_streams_cat(void *arg)
{
    (void)arg;
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_process *p = ex(ARGV("cat"), &o);
    cio_stream *in = cio_process_stdin(p), *out = cio_process_stdout(p),
               *err = cio_process_stderr(p);
    CHECK(in && out && err);
    const char *line;
    CHECK_ERR(cio_stream_write(in, "hello\n", 6), 0);
    CHECK_ERR(cio_stream_drain(in), 0);
    CHECK_EQ(cio_stream_readline(out, &line), 6);
    CHECK(memcmp(line, "hello\n", 6) == 0);
    CHECK_ERR(cio_stream_write(in, "world\n", 6), 0);
    CHECK_ERR(cio_stream_drain(in), 0);
    CHECK_EQ(cio_stream_readline(out, &line), 6);
    CHECK(memcmp(line, "world\n", 6) == 0);
    CHECK_EQ(cio_process_returncode(p, NULL), 0); /* cat still runs */
    CHECK_ERR(cio_stream_write_eof(in), 0);       /* a pipe: closes it */
    char *rest = NULL;
    CHECK_EQ(cio_stream_read_all(out, &rest), 0);
    cio_free(rest);
    rest = NULL;
    CHECK_EQ(cio_stream_read_all(err, &rest), 0);
    cio_free(rest);
    CHECK(cio_stream_at_eof(out));
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);

    /* Only what was asked for is a stream. */
    o = stdio3(INHERIT, PIPE, DEVNULL);
    p = sh("echo one", &o);
    CHECK(cio_process_stdin(p) == NULL);
    CHECK(cio_process_stderr(p) == NULL);
    CHECK(cio_process_stdout(p) != NULL);
    CHECK_EQ(cio_stream_readline(cio_process_stdout(p), &line), 4);
    CHECK(memcmp(line, "one\n", 4) == 0);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
    CHECK(cio_process_stdin(NULL) == NULL);
    return 0;
}

BOTH_WATCHERS(streams_cat, 10) { run(t_streams_cat, NULL); }

static int t_devnull(void *arg)
{
    (void)arg;
    outputs r;
    /* stdin: /dev/null, so cat ends at once. */
    cio_process_options o = stdio3(DEVNULL, PIPE, PIPE);
    cio_process *p =
        sh("readlink /proc/self/fd/0; cat; echo done", &o);
    CHECK(cio_process_stdin(p) == NULL);
    communicate(p, NULL, &r);
    CHECK_BYTES(r.out, r.outlen, "/dev/null\ndone\n");
    CHECK_BYTES(r.err, r.errlen, "");
    outputs_free(&r);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);

    o = stdio3(PIPE, DEVNULL, PIPE);
    /* $$: the shell, whose stdout is what it was given (dash would
     * apply a ">&2" to itself first). */
    p = sh("echo lost; x=$(readlink /proc/$$/fd/1); echo \"$x\" >&2", &o);
    CHECK(cio_process_stdout(p) == NULL);
    communicate(p, NULL, &r);
    CHECK(r.out == NULL);
    CHECK_EQ(r.outlen, 0);
    CHECK_BYTES(r.err, r.errlen, "/dev/null\n");
    outputs_free(&r);
    cio_process_free(p);

    o = stdio3(DEVNULL, PIPE, DEVNULL);
    p = sh("echo lost >&2; readlink /proc/self/fd/2", &o);
    CHECK(cio_process_stderr(p) == NULL);
    communicate(p, NULL, &r);
    CHECK_BYTES(r.out, r.outlen, "/dev/null\n");
    CHECK(r.err == NULL);
    outputs_free(&r);
    cio_process_free(p);
    return 0;
}

TEST(process_stdio_devnull) { run(t_devnull, NULL); }

static int t_stderr_stdout(void *arg)
{
    (void)arg;
    outputs r;
    cio_process_options o = stdio3(DEVNULL, PIPE, CIO_STDIO_STDOUT);
    cio_process *p = sh("echo out; echo err >&2; echo out2", &o);
    CHECK(cio_process_stderr(p) == NULL);
    communicate(p, NULL, &r);
    CHECK_BYTES(r.out, r.outlen, "out\nerr\nout2\n");
    CHECK(r.err == NULL);
    outputs_free(&r);
    cio_process_free(p);

    /* stdout to a given fd, stderr following it there. */
    int pp[2];
    CHECK(pipe(pp) == 0);
    o = stdio3(DEVNULL, CIO_STDIO_FD, CIO_STDIO_STDOUT);
    o.out.fd = pp[1];
    p = sh("echo a; echo b >&2", &o);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
    close(pp[1]);
    char buf[64];
    size_t n = read_fd_all(pp[0], buf, sizeof buf);
    CHECK_BYTES(buf, n, "a\nb\n");
    close(pp[0]);

    /* STDOUT is for stderr only. */
    o = stdio3(CIO_STDIO_STDOUT, PIPE, PIPE);
    p = (cio_process *)&p;
    CHECK_ERR(cio_create_subprocess_shell("true", &o, &p), -EINVAL);
    CHECK(p == NULL);
    o = stdio3(PIPE, CIO_STDIO_STDOUT, PIPE);
    CHECK_ERR(cio_create_subprocess_shell("true", &o, &p), -EINVAL);
    CHECK(p == NULL);
    /* A bad given fd. */
    o = stdio3(PIPE, CIO_STDIO_FD, PIPE);
    o.out.fd = -1;
    CHECK_ERR(cio_create_subprocess_shell("true", &o, &p), -EBADF);
    o.out.fd = 1000;
    CHECK_ERR(cio_create_subprocess_shell("true", &o, &p), -EBADF);
    CHECK(p == NULL);
    CHECK_EQ(count_children(NULL), 0);
    return 0;
}

TEST(process_stderr_to_stdout) { run(t_stderr_stdout, NULL); }

static int t_given_fds(void *arg)
{
    (void)arg;
    int in[2], out[2];
    CHECK(pipe(in) == 0);
    CHECK(pipe(out) == 0);
    CHECK_EQ(write(in[1], "from fd\n", 8), 8);
    close(in[1]);
    cio_process_options o = stdio3(CIO_STDIO_FD, CIO_STDIO_FD, CIO_STDIO_FD);
    o.in.fd = in[0];
    o.out.fd = out[1];
    o.err.fd = out[1];
    cio_process *p = sh("cat; echo e >&2", &o);
    CHECK(cio_process_stdin(p) == NULL && cio_process_stdout(p) == NULL &&
          cio_process_stderr(p) == NULL);
    /* Duplicated into the child: ours stay open and ours. */
    CHECK(fcntl(in[0], F_GETFD) >= 0);
    CHECK(fcntl(out[1], F_GETFD) >= 0);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
    close(in[0]);
    close(out[1]);
    char buf[64];
    size_t n = read_fd_all(out[0], buf, sizeof buf);
    CHECK_BYTES(buf, n, "from fd\ne\n");
    close(out[0]);
    return 0;
}

TEST(process_stdio_given_fd) { run(t_given_fds, NULL); }

typedef struct inherit_result {
    int create, wait, code;
    int create2, wait2, code2;
} inherit_result;

static int t_inherit(void *arg)
{
    inherit_result *res = arg;
    int save[3], in[2], out[2], err[2];
    for (int i = 0; i < 3; i++)
        CHECK((save[i] = fcntl(i, F_DUPFD_CLOEXEC, 10)) >= 0);
    CHECK(pipe(in) == 0 && pipe(out) == 0 && pipe(err) == 0);
    CHECK_EQ(write(in[1], "typed\n", 6), 6);
    close(in[1]);
    fflush(NULL);
    /* This process's own 0, 1, 2 become the pipes; no CHECK until they
     * are back (a failure message would go into them). */
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    cio_process *p = NULL, *q = NULL;
    res->create = cio_create_subprocess_shell("cat; echo to-err >&2", NULL, &p);
    res->code = res->code2 = -1000;
    res->wait = res->create ? 0 : cio_process_wait(p, &res->code);
    cio_process_options o = stdio3(INHERIT, INHERIT, INHERIT);
    res->create2 = cio_create_subprocess_exec(ARGV("echo", "explicit"), &o, &q);
    res->wait2 = res->create2 ? 0 : cio_process_wait(q, &res->code2);
    for (int i = 0; i < 3; i++) {
        dup2(save[i], i);
        close(save[i]);
    }
    cio_process_free(p);
    cio_process_free(q);
    CHECK_ERR(res->create, 0);
    CHECK_ERR(res->wait, 0);
    CHECK_EQ(res->code, 0);
    CHECK_ERR(res->create2, 0);
    CHECK_ERR(res->wait2, 0);
    CHECK_EQ(res->code2, 0);
    char buf[128];
    size_t n = read_fd_all(out[0], buf, sizeof buf);
    CHECK_BYTES(buf, n, "typed\nexplicit\n");
    n = read_fd_all(err[0], buf, sizeof buf);
    CHECK_BYTES(buf, n, "to-err\n");
    close(out[0]);
    close(err[0]);
    return 0;
}

TEST(process_stdio_inherit)
{
    inherit_result res;
    run(t_inherit, &res);
}

/* ------------------------------------------------------- cwd and env */

static int t_cwd(void *arg)
{
    (void)arg;
    char dir[] = "/tmp/cio-cwd-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char real[4096];
    CHECK(realpath(dir, real) != NULL);
    strcat(real, "\n");
    cio_process_options o = stdio3(DEVNULL, PIPE, PIPE);
    o.cwd = dir;
    outputs r;
    cio_process *p = ex(ARGV("pwd", "-P"), &o);
    communicate(p, NULL, &r);
    CHECK_BYTES(r.out, r.outlen, real);
    CHECK_BYTES(r.err, r.errlen, "");
    outputs_free(&r);
    cio_process_free(p);
    /* A shell's relative paths are relative to it. */
    p = sh("echo made > here.txt", &o);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
    char file[4200];
    snprintf(file, sizeof file, "%s/here.txt", dir);
    CHECK(access(file, F_OK) == 0);
    CHECK(unlink(file) == 0);
    /* No such directory, or not a directory: an error of the call. */
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/missing", dir);
    o.cwd = missing;
    p = (cio_process *)&p;
    CHECK_ERR(cio_create_subprocess_exec(ARGV("pwd"), &o, &p), -ENOENT);
    CHECK(p == NULL);
    o.cwd = "/dev/null";
    CHECK_ERR(cio_create_subprocess_exec(ARGV("pwd"), &o, &p), -ENOTDIR);
    CHECK(p == NULL);
    CHECK(rmdir(dir) == 0);
    return 0;
}

TEST(process_cwd) { run(t_cwd, NULL); }

static int t_env(void *arg)
{
    (void)arg;
    CHECK(setenv("CIO_PARENT_ONLY", "yes", 1) == 0);
    char *const env[] = {"CIO_A=1", "CIO_B=two words", NULL};
    cio_process_options o = stdio3(DEVNULL, PIPE, PIPE);
    o.env = env;
    outputs r;
    cio_process *p = ex(ARGV("/usr/bin/env"), &o);
    communicate(p, NULL, &r);
    CHECK_BYTES(r.out, r.outlen, "CIO_A=1\nCIO_B=two words\n");
    outputs_free(&r);
    cio_process_free(p);

    char *const empty[] = {NULL};
    o.env = empty;
    p = ex(ARGV("/usr/bin/env"), &o);
    communicate(p, NULL, &r);
    CHECK_BYTES(r.out, r.outlen, "");
    outputs_free(&r);
    cio_process_free(p);

    /* NULL: the parent's environment, as it is now. */
    o.env = NULL;
    p = sh("echo \"$CIO_PARENT_ONLY\"", &o);
    communicate(p, NULL, &r);
    CHECK_BYTES(r.out, r.outlen, "yes\n");
    outputs_free(&r);
    cio_process_free(p);
    unsetenv("CIO_PARENT_ONLY");
    return 0;
}

TEST(process_env) { run(t_env, NULL); }

/* -------------------------------------------------- inherited fds */

/* Parses ls's output (one fd number a line) into a bit set. */
static unsigned long long fd_set_of(const char *s, size_t n, int *count)
{
    unsigned long long set = 0;
    *count = 0;
    size_t i = 0;
    while (i < n) {
        int v = 0, digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (s[i++] - '0');
            digits++;
        }
        CHECK(digits > 0 && i < n && s[i] == '\n');
        i++;
        CHECK(v < 64);
        set |= 1ull << v;
        (*count)++;
    }
    return set;
}

static int t_only_given_fds(void *arg)
{
    (void)arg;
    /* Open, inheritable (no O_CLOEXEC) fds the child must not get. */
    int extra = open("/dev/null", O_RDONLY);
    int pp[2];
    CHECK(extra >= 0 && pipe(pp) == 0);
    CHECK_EQ(dup2(extra, 50), 50);
    CHECK_EQ(dup2(pp[0], 51), 51);
    CHECK_EQ(dup2(pp[1], 52), 52);
    close(extra);
    close(pp[0]);
    close(pp[1]);
    for (int fd = 50; fd <= 52; fd++)
        CHECK_EQ(fcntl(fd, F_GETFD), 0);

    outputs r;
    int count;
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_process *p = ex(ARGV("ls", "/proc/self/fd"), &o);
    communicate(p, NULL, &r);
    CHECK_EQ(wait_code(p), 0);
    /* 0, 1, 2 and the one ls opened to read the directory. */
    CHECK_EQ(fd_set_of(r.out, r.outlen, &count), 0xfull);
    CHECK_EQ(count, 4);
    CHECK_BYTES(r.err, r.errlen, "");
    outputs_free(&r);
    cio_process_free(p);

    /* The shell form, listing the shell's own fds (or ls's, if the shell
     * execs its last command). */
    o = stdio3(DEVNULL, PIPE, INHERIT);
    p = sh("ls /proc/$$/fd", &o);
    communicate(p, NULL, &r);
    unsigned long long set = fd_set_of(r.out, r.outlen, &count);
    CHECK(set == 0x7ull || set == 0xfull);
    outputs_free(&r);
    cio_process_free(p);

    for (int fd = 50; fd <= 52; fd++) /* still ours */
        CHECK_EQ(close(fd), 0);
    return 0;
}

TEST(process_inherits_only_given_fds) { run(t_only_given_fds, NULL); }

/* ------------------------------------------------- create errors */

static int t_create_errors(void *arg)
{
    (void)arg;
    cio_process *p = (cio_process *)&p;
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    CHECK_ERR(cio_create_subprocess_exec(
                  ARGV("/nonexistent/cio-no-such-program"), &o, &p),
              -ENOENT);
    CHECK(p == NULL);
    p = (cio_process *)&p;
    CHECK_ERR(cio_create_subprocess_exec(ARGV("cio-no-such-program-x9"), NULL,
                                         &p),
              -ENOENT);
    CHECK(p == NULL);
    /* A file that is not executable, and a directory. */
    char path[] = "/tmp/cio-noexec-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "#!/bin/sh\nexit 0\n", 17), 17);
    CHECK(fchmod(fd, 0644) == 0);
    close(fd);
    CHECK_ERR(cio_create_subprocess_exec(ARGV(path), &o, &p), -EACCES);
    CHECK(p == NULL);
    unlink(path);
    CHECK_ERR(cio_create_subprocess_exec(ARGV("/tmp"), &o, &p), -EACCES);
    CHECK(p == NULL);
    /* Bad arguments. */
    CHECK_ERR(cio_create_subprocess_exec(NULL, NULL, &p), -EINVAL);
    CHECK_ERR(cio_create_subprocess_exec((const char *const[]){NULL}, NULL,
                                         &p),
              -EINVAL);
    CHECK_ERR(cio_create_subprocess_shell(NULL, NULL, &p), -EINVAL);
    CHECK(p == NULL);
    CHECK_ERR(cio_create_subprocess_shell("true", NULL, NULL), -EINVAL);
    /* The failed programs never became processes to reap. */
    CHECK_EQ(count_children(NULL), 0);
    return 0;
}

TEST(process_create_errors)
{
    run(t_create_errors, NULL);
    /* Outside a task. */
    cio_process *p = (cio_process *)&p;
    CHECK_ERR(cio_create_subprocess_exec(ARGV("true"), NULL, &p), -EINVAL);
    CHECK(p == NULL);
    CHECK_ERR(cio_create_subprocess_shell("true", NULL, &p), -EINVAL);
    CHECK_EQ(count_children(NULL), 0);
    cio_process_free(NULL);
    CHECK_EQ(cio_process_pid(NULL), -1);
    CHECK_EQ(cio_process_returncode(NULL, NULL), 0);
}

/* --------------------------------------------- signal state reset */

static void on_usr1(void *arg) { ++*(int *)arg; }

/* Signals 32 and 33 (glibc's SIGCANCEL and SIGSETXID) as SigIgn bits. */
#define GLIBC_INTERNAL (3ull << 31)

/* A child's blocked and ignored signals, from its /proc/self/status. */
static void child_sigmasks(unsigned long long *blk, unsigned long long *ign)
{
    outputs r;
    cio_process_options o = stdio3(DEVNULL, PIPE, PIPE);
    cio_process *p = ex(ARGV("grep", "-E", "^Sig(Blk|Ign):",
                             "/proc/self/status"),
                        &o);
    communicate(p, NULL, &r);
    CHECK(r.out != NULL);
    char text[128];
    CHECK(r.outlen < sizeof text);
    memcpy(text, r.out, r.outlen);
    text[r.outlen] = 0;
    if (sscanf(text, "SigBlk:\t%llx\nSigIgn:\t%llx\n", blk, ign) != 2)
        test_fail(__FILE__, __LINE__, "grep said: %s", text);
    outputs_free(&r);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
}

static int t_sigstate(void *arg)
{
    int *usr1 = arg;
    /* cio_run blocks SIGINT for its Ctrl-C handling; a handler blocks
     * SIGUSR1; SIGUSR2 is blocked and SIGTERM ignored by hand. */
    CHECK_ERR(cio_add_signal_handler(cio_get_running_loop(), SIGUSR1, on_usr1,
                                     usr1),
              0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
    CHECK(signal(SIGTERM, SIG_IGN) != SIG_ERR);
    CHECK(signal(SIGHUP, SIG_IGN) != SIG_ERR);

    unsigned long long blk, ign;
    child_sigmasks(&blk, &ign);
    CHECK_EQ(blk, 0);
    CHECK_EQ(ign & ~GLIBC_INTERNAL, 0); /* those two: the next test */

    cio_process_options o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    cio_process *p = ex(ARGV("sleep", "10"), &o);
    CHECK_ERR(cio_process_terminate(p), 0);
    CHECK_EQ(wait_code(p), -SIGTERM);
    cio_process_free(p);
    p = ex(ARGV("sleep", "10"), &o);
    CHECK_ERR(cio_process_send_signal(p, SIGUSR2), 0);
    CHECK_EQ(wait_code(p), -SIGUSR2);
    cio_process_free(p);
    p = ex(ARGV("sleep", "10"), &o);
    CHECK_ERR(cio_process_send_signal(p, SIGUSR1), 0);
    CHECK_EQ(wait_code(p), -SIGUSR1);
    cio_process_free(p);
    CHECK_EQ(*usr1, 0); /* that SIGUSR1 was the child's, not ours */
    CHECK_EQ(cio_remove_signal_handler(cio_get_running_loop(), SIGUSR1), 1);
    return 0;
}

TEST(process_signal_state_reset)
{
    int usr1 = 0;
    run(t_sigstate, &usr1);
}

/* "The signal dispositions are reset to their defaults in it": all of
 * them, glibc's internal two included (sigfillset leaves them out of the
 * set given to posix_spawn, whose child then sets them to SIG_IGN). */
static int t_sigstate_internal(void *arg)
{
    (void)arg;
    unsigned long long blk, ign;
    child_sigmasks(&blk, &ign);
    CHECK_EQ(blk, 0);
    CHECK_EQ(ign, 0);
    return 0;
}

TEST(process_signal_state_reset_internal) { run(t_sigstate_internal, NULL); }

/* ------------------------------------------------------- communicate */

static int t_comm_stderr(void *arg)
{
    (void)arg;
    outputs r;
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_process *p = sh("cat; echo err >&2; exit 5", &o);
    communicate(p, "in\n", &r);
    CHECK_BYTES(r.out, r.outlen, "in\n");
    CHECK_BYTES(r.err, r.errlen, "err\n");
    outputs_free(&r);
    int code = -1;
    CHECK_EQ(cio_process_returncode(p, &code), 1); /* communicate waited */
    CHECK_EQ(code, 5);
    cio_process_free(p);

    /* Only stderr wanted. */
    p = sh("echo o; echo e >&2", &o);
    char *e = NULL;
    size_t elen = 0;
    CHECK_ERR(cio_process_communicate(p, NULL, 0, NULL, NULL, &e, &elen), 0);
    CHECK_BYTES(e, elen, "e\n");
    cio_free(e);
    cio_process_free(p);

    /* No pipes at all: communicate just waits. */
    p = sh("exit 2", NULL);
    communicate(p, NULL, &r);
    CHECK(r.out == NULL && r.err == NULL);
    CHECK_EQ(r.outlen, 0);
    CHECK_EQ(r.errlen, 0);
    CHECK_EQ(cio_process_returncode(p, &code), 1);
    CHECK_EQ(code, 2);
    /* Input for a child without a stdin pipe. */
    CHECK_ERR(cio_process_communicate(p, "x", 1, NULL, NULL, NULL, NULL),
              -EINVAL);
    cio_process_free(p);
    return 0;
}

BOTH_WATCHERS(communicate_stderr, 10) { run(t_comm_stderr, NULL); }

static int t_comm_unread(void *arg)
{
    (void)arg;
    size_t n = 1 << 20;
    char *in = malloc(n);
    CHECK(in != NULL);
    for (size_t i = 0; i < n; i++)
        in[i] = pat(i);
    /* A child that never reads its input: not an error (asyncio ignores
     * the broken pipe), and no SIGPIPE here. */
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_process *p = sh("exit 4", &o);
    char *out = NULL, *err = NULL;
    size_t on = 9, en = 9;
    CHECK_ERR(cio_process_communicate(p, in, n, &out, &on, &err, &en), 0);
    CHECK_EQ(on, 0);
    CHECK_EQ(en, 0);
    cio_free(out);
    cio_free(err);
    CHECK_EQ(wait_code(p), 4);
    cio_process_free(p);
    /* One that reads part of it. */
    p = ex(ARGV("head", "-c", "10"), &o);
    CHECK_ERR(cio_process_communicate(p, in, n, &out, &on, &err, &en), 0);
    CHECK_EQ(on, 10);
    CHECK(memcmp(out, in, 10) == 0);
    cio_free(out);
    cio_free(err);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
    free(in);
    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    return 0;
}

TEST(process_communicate_unread_input) { run(t_comm_unread, NULL); }

static int t_comm_big(void *arg)
{
    (void)arg;
    size_t n = 10u << 20;
    char *in = malloc(n);
    CHECK(in != NULL);
    for (size_t i = 0; i < n; i++)
        in[i] = pat(i);
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    /* 10 MiB in, 10 MiB out. */
    cio_process *p = ex(ARGV("cat"), &o);
    char *out = NULL, *err = NULL;
    size_t on = 0, en = 9;
    CHECK_ERR(cio_process_communicate(p, in, n, &out, &on, &err, &en), 0);
    CHECK_EQ(on, n);
    CHECK(memcmp(out, in, n) == 0);
    CHECK_EQ(en, 0);
    cio_free(out);
    cio_free(err);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
    /* 10 MiB in, and out through both stdout and stderr, which tee writes
     * in turns: reading only one of them would block it for good. */
    p = ex(ARGV("tee", "/dev/stderr"), &o);
    CHECK_ERR(cio_process_communicate(p, in, n, &out, &on, &err, &en), 0);
    CHECK_EQ(on, n);
    CHECK_EQ(en, n);
    CHECK(memcmp(out, in, n) == 0);
    CHECK(memcmp(err, in, n) == 0);
    cio_free(out);
    cio_free(err);
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
    free(in);
    return 0;
}

TEST_T(process_communicate_10mib, 60) { run(t_comm_big, NULL); }

/* ------------------------------------------------ wait and cancelling */

typedef struct waiter {
    cio_process *p;
    int r, code;
} waiter;

static int wait_task(void *arg)
{
    waiter *w = arg;
    w->r = cio_process_wait(w->p, &w->code);
    return 0;
}

static int t_wait_cancel(void *arg)
{
    (void)arg;
    cio_process_options o = stdio3(PIPE, DEVNULL, DEVNULL);
    cio_process *p = sh("read x; exit 6", &o);
    pid_t pid = cio_process_pid(p);

    /* A waiting task cancelled. */
    waiter w = {p, 1, -1000};
    cio_task *t;
    CHECK_ERR(cio_task_new(NULL, wait_task, &w, NULL, &t), 0);
    CHECK_ERR(cio_sleep(0.02), 0);
    CHECK_EQ(cio_task_cancel(t), 1);
    CHECK_ERR(cio_await(t, NULL), 0);
    cio_future_unref(t);
    CHECK_ERR(w.r, -ECANCELED);
    CHECK_EQ(w.code, -1000);
    CHECK_EQ(cio_process_returncode(p, NULL), 0);

    /* A wait inside a timeout scope. */
    cio_timeout_scope sc;
    int code = -1000;
    CHECK_ERR(cio_timeout(&sc, 0.05), 0);
    CHECK_ERR(cio_process_wait(p, &code), -ETIMEDOUT);
    CHECK_ERR(cio_timeout_end(&sc), -ETIMEDOUT);
    CHECK_EQ(code, -1000);

    /* Now it exits while nobody waits: still watched, reaped, recorded. */
    CHECK_ERR(cio_stream_write(cio_process_stdin(p), "go\n", 3), 0);
    CHECK_ERR(cio_stream_drain(cio_process_stdin(p)), 0);
    double end = mono() + 5 * tscale();
    while (!cio_process_returncode(p, &code)) {
        CHECK(mono() < end);
        CHECK_ERR(cio_sleep(0.005), 0);
    }
    CHECK_EQ(code, 6);
    task_check_reaped(pid, 1);
    CHECK_EQ(wait_code(p), 6);
    cio_process_free(p);

    /* Cancelled waits, then one that gets the code of a killed child. */
    o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    p = ex(ARGV("sleep", "10"), &o);
    waiter ws[3];
    cio_task *ts[3];
    for (int i = 0; i < 3; i++) {
        ws[i] = (waiter){p, 1, -1000};
        CHECK_ERR(cio_task_new(NULL, wait_task, &ws[i], NULL, &ts[i]), 0);
    }
    CHECK_ERR(cio_sleep(0.01), 0);
    cio_task_cancel(ts[0]);
    /* wait_for cancels it on timeout; the task swallows that and returns
     * 0, so (as asyncio's wait_for) that is what wait_for returns. */
    CHECK_ERR(cio_wait_for(ts[1], 0.01, NULL), 0);
    CHECK_ERR(cio_process_kill(p), 0);
    CHECK_ERR(cio_await(ts[2], NULL), 0);
    CHECK_ERR(ws[2].r, 0);
    CHECK_EQ(ws[2].code, -9);
    CHECK_ERR(cio_await(ts[0], NULL), 0);
    CHECK_ERR(ws[0].r, -ECANCELED);
    CHECK_ERR(ws[1].r, -ECANCELED);
    for (int i = 0; i < 3; i++)
        cio_future_unref(ts[i]);
    CHECK_EQ(wait_code(p), -9);
    cio_process_free(p);
    return 0;
}

BOTH_WATCHERS(wait_cancelled, 10) { run(t_wait_cancel, NULL); }

/* ------------------------------------------------------------ reaping */

static int t_free_running(void *arg)
{
    (void)arg;
    cio_process_options o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    cio_process *p = ex(ARGV("sleep", "0.2"), &o);
    pid_t pid = cio_process_pid(p);
    cio_process_free(p);
    CHECK(proc_state(pid) != 0); /* still running */
    task_check_reaped(pid, 5);

    /* With pipes: freeing closes them, cat sees EOF and exits. */
    o = stdio3(PIPE, PIPE, PIPE);
    p = ex(ARGV("cat"), &o);
    pid = cio_process_pid(p);
    CHECK_ERR(cio_stream_write(cio_process_stdin(p), "x", 1), 0);
    cio_process_free(p);
    task_check_reaped(pid, 5);

    /* Killed, then freed before anybody saw it die. */
    o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    p = ex(ARGV("sleep", "10"), &o);
    pid = cio_process_pid(p);
    CHECK_ERR(cio_process_kill(p), 0);
    cio_process_free(p);
    task_check_reaped(pid, 5);
    return 0;
}

BOTH_WATCHERS(free_running_reaped, 10) { run(t_free_running, NULL); }

typedef struct left_behind {
    pid_t pid[3];
    cio_process *keep; /* freed only after the loop closed */
} left_behind;

static int t_leave_running(void *arg)
{
    left_behind *lb = arg;
    cio_process_options o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    cio_process *p = ex(ARGV("sleep", "0.3"), &o);
    lb->pid[0] = cio_process_pid(p);
    cio_process_free(p);
    o = stdio3(PIPE, PIPE, PIPE);
    p = sh("sleep 0.3", &o);
    lb->pid[1] = cio_process_pid(p);
    cio_process_free(p);
    o = stdio3(DEVNULL, PIPE, DEVNULL);
    lb->keep = sh("sleep 0.3", &o);
    lb->pid[2] = cio_process_pid(lb->keep);
    return 0;
}

/* The loop is closed while the children run; the one object still held
 * is freed after the close. */
static void count_reports(cio_loop *loop, const cio_error_context *ctx,
                          void *arg)
{
    (void)loop;
    (void)ctx;
    ++*(int *)arg;
}

static void body_loop_close(void)
{
    long base = cio__alloc_live();
    cio_loop *loop;
    int reports = 0;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    /* Closing reports the held process's unclosed pipe: expected. */
    CHECK_ERR(cio_loop_set_exception_handler(loop, count_reports, &reports),
              0);
    left_behind lb;
    memset(&lb, 0, sizeof lb);
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, t_leave_running, &lb, NULL, &t), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 0);
    cio_future_unref(t);
    CHECK_ERR(cio_loop_close(loop), 0);
    cio_process_free(lb.keep);
    for (int i = 0; i < 3; i++)
        CHECK(proc_state(lb.pid[i]) != 0); /* all still running */
    for (int i = 0; i < 3; i++)
        check_reaped(lb.pid[i], 5);
    cio_loop_free(loop);
    settle_allocs(base);
}

BOTH_WATCHERS(loop_closed_reaped, 10) { body_loop_close(); }

static int t_run_leaves(void *arg)
{
    pid_t *pid = arg;
    cio_process_options o = stdio3(DEVNULL, PIPE, DEVNULL);
    cio_process *p = ex(ARGV("sleep", "0.3"), &o);
    *pid = cio_process_pid(p);
    cio_process_free(p);
    return 0;
}

/* cio_run closes and frees its loop while a child runs. */
static void body_run_returns(void)
{
    long base = cio__alloc_live();
    pid_t pid = 0;
    run(t_run_leaves, &pid);
    CHECK(pid > 0);
    CHECK(proc_state(pid) != 0);
    check_reaped(pid, 5);
    usleep(50000); /* a watcher thread would touch the freed loop now */
    settle_allocs(base);
}

BOTH_WATCHERS(run_returns_reaped, 10)
{
    body_run_returns();
}

/* ------------------------------------------ 200 children at once */

typedef struct kid {
    int n, code;
} kid;

static int kid_task(void *arg)
{
    kid *k = arg;
    char cmd[32];
    snprintf(cmd, sizeof cmd, "exit %d", k->n);
    cio_process_options o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    cio_process *p = NULL;
    int r = cio_create_subprocess_shell(cmd, &o, &p);
    if (r)
        return r;
    r = cio_process_wait(p, &k->code);
    cio_process_free(p);
    return r;
}

enum { NKIDS = 200 };

static int t_many(void *arg)
{
    (void)arg;
    static kid kids[NKIDS];
    static cio_task *tasks[NKIDS];
    static cio_result res[NKIDS];
    for (int i = 0; i < NKIDS; i++) {
        kids[i] = (kid){i + 1, -1000};
        CHECK_ERR(cio_task_new(NULL, kid_task, &kids[i], NULL, &tasks[i]), 0);
    }
    CHECK_ERR(cio_gather(tasks, NKIDS, 1, res), 0);
    for (int i = 0; i < NKIDS; i++) {
        CHECK_ERR(res[i].status, 0);
        CHECK_EQ(kids[i].code, i + 1);
        cio_future_unref(tasks[i]);
    }
    CHECK_EQ(count_children(NULL), 0);
    return 0;
}

BOTH_WATCHERS(200_children, 60) { run(t_many, NULL); }

/* ----------------------------------- SIGCHLD handled by the program */

static int t_sigchld(void *arg)
{
    int *chld = arg;
    cio_loop *loop = cio_get_running_loop();
    CHECK_ERR(cio_add_signal_handler(loop, SIGCHLD, on_usr1, chld), 0);
    cio_process *p = sh("exit 4", NULL);
    CHECK_EQ(wait_code(p), 4);
    cio_process_free(p);
    double end = mono() + 5 * tscale();
    while (*chld == 0) {
        CHECK(mono() < end);
        CHECK_ERR(cio_sleep(0.005), 0);
    }
    CHECK_EQ(cio_remove_signal_handler(loop, SIGCHLD), 1);
    return 0;
}

/* A program's own SIGCHLD handler and cio's watching get along. */
BOTH_WATCHERS(sigchld_handler, 10)
{
    int chld = 0;
    run(t_sigchld, &chld);
}

/* ------------------------------------------------------------ pipes */

typedef struct pipe_rec {
    test_log log;
    cio_future *lost;
    int lost_error;
    int eof_ret;
    int paused, resumed;
    size_t bytes;
    bool pattern_ok;
    bool quiet; /* bulk data: count it, do not log it */
} pipe_rec;

static void pr_made(cio_transport *t, void *ctx)
{
    (void)t;
    test_log_add(&((pipe_rec *)ctx)->log, "made");
}

static void pr_data(cio_transport *t, const char *data, size_t n, void *ctx)
{
    (void)t;
    pipe_rec *r = ctx;
    if (r->quiet) {
        for (size_t i = 0; i < n; i++)
            if (data[i] != pat(r->bytes + i))
                r->pattern_ok = false;
    } else {
        test_log_add(&r->log, "data:%.*s", (int)n, data);
    }
    r->bytes += n;
}

static int pr_eof(cio_transport *t, void *ctx)
{
    (void)t;
    pipe_rec *r = ctx;
    test_log_add(&r->log, "eof");
    return r->eof_ret;
}

static void pr_lost(cio_transport *t, int error, void *ctx)
{
    (void)t;
    pipe_rec *r = ctx;
    test_log_add(&r->log, "lost:%d", error);
    r->lost_error = error;
    CHECK_ERR(cio_future_set_result(r->lost, NULL), 0);
}

static void pr_pause(cio_transport *t, void *ctx)
{
    (void)t;
    ((pipe_rec *)ctx)->paused++;
}

static void pr_resume(cio_transport *t, void *ctx)
{
    (void)t;
    ((pipe_rec *)ctx)->resumed++;
}

static const cio_protocol pipe_proto = {
    .connection_made = pr_made,
    .data_received = pr_data,
    .eof_received = pr_eof,
    .connection_lost = pr_lost,
    .pause_writing = pr_pause,
    .resume_writing = pr_resume,
};

static void rec_init(pipe_rec *r)
{
    memset(r, 0, sizeof *r);
    r->pattern_ok = true;
    CHECK_ERR(cio_future_new(NULL, &r->lost), 0);
}

/* Waits for connection_lost (at most a few seconds). */
static void await_lost(pipe_rec *r)
{
    int e = cio_wait_for(r->lost, 5 * tscale(), NULL);
    if (e)
        test_fail(__FILE__, __LINE__, "no connection_lost (%s); log: %s",
                  cio_strerror(e), r->log.buf);
    cio_future_unref(r->lost);
    r->lost = NULL;
}

static int t_read_pipe(void *arg)
{
    (void)arg;
    int pp[2];
    pipe_rec r;
    cio_transport *t = (cio_transport *)&t;

    /* Data, the writer's close: eof_received, then connection_lost. */
    CHECK(pipe(pp) == 0);
    CHECK_EQ(write(pp[1], "hello", 5), 5);
    close(pp[1]);
    rec_init(&r);
    CHECK_ERR(cio_connect_read_pipe(NULL, pp[0], &pipe_proto, &r, &t), 0);
    CHECK(t != NULL && t != (cio_transport *)&t);
    CHECK(fcntl(pp[0], F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(pp[0], F_GETFD) & FD_CLOEXEC);
    CHECK_ERR(cio_transport_write(t, "x", 1), -EINVAL); /* read side */
    CHECK_EQ(cio_transport_can_write_eof(t), 0);
    CHECK_ERR(cio_transport_write_eof(t), -ENOTSUP);
    await_lost(&r);
    CHECK_LOG(&r.log, "made data:hello eof lost:0");

    /* Closed by us while the writer is still there; then pausing. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_read_pipe(NULL, pp[0], &pipe_proto, &r, &t), 0);
    CHECK_ERR(cio_transport_pause_reading(t), 0);
    CHECK_EQ(write(pp[1], "later", 5), 5);
    CHECK_ERR(cio_sleep(0.05), 0);
    CHECK_LOG(&r.log, "made");
    CHECK_EQ(cio_transport_is_reading(t), 0);
    CHECK_ERR(cio_transport_resume_reading(t), 0);
    double end = mono() + 5 * tscale();
    while (r.bytes < 5) {
        CHECK(mono() < end);
        CHECK_ERR(cio_sleep(0.005), 0);
    }
    cio_transport_close(t);
    CHECK_EQ(cio_transport_is_closing(t), 1);
    await_lost(&r);
    CHECK_LOG(&r.log, "made data:later lost:0");
    /* The transport closed its fd: the writer now has no reader. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    errno = 0;
    CHECK_EQ(write(pp[1], "y", 1), -1);
    CHECK_EQ(errno, EPIPE);
    struct timespec zero = {0, 0};
    sigtimedwait(&block, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(pp[1]);

    /* Errors. */
    CHECK_ERR(cio_connect_read_pipe(NULL, 999, &pipe_proto, NULL, &t),
              -EBADF);
    CHECK_ERR(cio_connect_read_pipe(NULL, -1, &pipe_proto, NULL, &t),
              -EINVAL);
    return 0;
}

TEST(process_connect_read_pipe) { run(t_read_pipe, NULL); }

/* As asyncio's read pipe transport: EOF closes it (eof_received, then
 * connection_lost(None)) whatever eof_received returns: a read pipe has
 * no write side to keep open. */
static int t_read_pipe_keep(void *arg)
{
    (void)arg;
    int pp[2];
    pipe_rec r;
    cio_transport *t;
    CHECK(pipe(pp) == 0);
    CHECK_EQ(write(pp[1], "x", 1), 1);
    close(pp[1]);
    rec_init(&r);
    r.eof_ret = 1;
    CHECK_ERR(cio_connect_read_pipe(cio_get_running_loop(), pp[0], &pipe_proto,
                                    &r, &t),
              0);
    CHECK_ERR(cio_wait_for(r.lost, 1 * tscale(), NULL), 0);
    cio_future_unref(r.lost);
    CHECK_LOG(&r.log, "made data:x eof lost:0");
    return 0;
}

TEST(process_read_pipe_eof_keep_open) { run(t_read_pipe_keep, NULL); }

static int t_write_pipe(void *arg)
{
    (void)arg;
    int pp[2];
    pipe_rec r;
    cio_transport *t;
    char buf[64];

    /* Writes, then close: the reader sees the data and EOF. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    CHECK_EQ(cio_transport_can_write_eof(t), 1);
    CHECK_ERR(cio_transport_write(t, "abc", 3), 0);
    CHECK_ERR(cio_transport_write(t, "def", 3), 0);
    cio_transport_close(t);
    CHECK_ERR(cio_transport_write(t, "x", 1), -EPIPE);
    await_lost(&r);
    CHECK_LOG(&r.log, "made lost:0");
    size_t n = read_fd_all(pp[0], buf, sizeof buf);
    CHECK_BYTES(buf, n, "abcdef");
    close(pp[0]);

    /* write_eof: a pipe's EOF is its closing. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    CHECK_ERR(cio_transport_write(t, "end", 3), 0);
    CHECK_ERR(cio_transport_write_eof(t), 0);
    await_lost(&r);
    CHECK_LOG(&r.log, "made lost:0");
    n = read_fd_all(pp[0], buf, sizeof buf);
    CHECK_BYTES(buf, n, "end");
    close(pp[0]);
    CHECK_ERR(cio_connect_write_pipe(NULL, 999, &pipe_proto, NULL, &t),
              -EBADF);
    return 0;
}

TEST(process_connect_write_pipe) { run(t_write_pipe, NULL); }

/* A write pipe whose reader is gone: an error through connection_lost,
 * never a SIGPIPE (which is at its default here: it would kill us). */
static int t_write_pipe_broken(void *arg)
{
    (void)arg;
    int pp[2];
    pipe_rec r;
    cio_transport *t;
    struct sigaction sa;
    CHECK(sigaction(SIGPIPE, NULL, &sa) == 0);
    CHECK(sa.sa_handler == SIG_DFL);

    /* The reader left before the first write. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    close(pp[0]);
    CHECK_ERR(cio_transport_write(t, "x", 1), 0); /* errors come later */
    await_lost(&r);
    CHECK_ERR(r.lost_error, -EPIPE);
    CHECK_LOG(&r.log, "made lost:-32");

    /* The reader leaves while data waits in the buffer. */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    size_t n = 1 << 20;
    char *big = malloc(n);
    CHECK(big != NULL);
    memset(big, 'z', n);
    CHECK_ERR(cio_transport_write(t, big, n), 0);
    free(big);
    CHECK(cio_transport_get_write_buffer_size(t) > 0);
    CHECK_EQ(r.paused, 1);
    CHECK_ERR(cio_sleep(0.01), 0);
    close(pp[0]);
    await_lost(&r);
    CHECK_ERR(r.lost_error, -EPIPE);

    /* The reader leaves with nothing buffered: as asyncio, a plain close
     * (connection_lost(0)). */
    CHECK(pipe(pp) == 0);
    rec_init(&r);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &r, &t), 0);
    CHECK_ERR(cio_sleep(0.01), 0);
    close(pp[0]);
    await_lost(&r);
    CHECK_LOG(&r.log, "made lost:0");

    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    return 0;
}

TEST(process_write_pipe_reader_closed) { run(t_write_pipe_broken, NULL); }

/* A write pipe transport feeding a read pipe transport: 8 MiB, with flow
 * control on the writer. */
static int t_pipe_pair(void *arg)
{
    (void)arg;
    int pp[2];
    CHECK(pipe(pp) == 0);
    pipe_rec w, rd;
    rec_init(&w);
    rec_init(&rd);
    rd.quiet = true;
    cio_transport *wt, *rt;
    CHECK_ERR(cio_connect_read_pipe(NULL, pp[0], &pipe_proto, &rd, &rt), 0);
    CHECK_ERR(cio_connect_write_pipe(NULL, pp[1], &pipe_proto, &w, &wt), 0);
    size_t total = 8u << 20, chunk = 256 << 10;
    char *buf = malloc(chunk);
    CHECK(buf != NULL);
    for (size_t off = 0; off < total; off += chunk) {
        for (size_t i = 0; i < chunk; i++)
            buf[i] = pat(off + i);
        CHECK_ERR(cio_transport_write(wt, buf, chunk), 0);
        /* Wait for resume_writing while paused (as drain would). */
        double end = mono() + 10 * tscale();
        while (w.paused > w.resumed) {
            CHECK(mono() < end);
            CHECK_ERR(cio_sleep(0.001), 0);
        }
    }
    free(buf);
    CHECK(w.paused > 0);
    cio_transport_close(wt); /* flushes, then closes: the reader's EOF */
    await_lost(&w);
    await_lost(&rd);
    CHECK_EQ(rd.bytes, total);
    CHECK(rd.pattern_ok);
    CHECK_LOG(&w.log, "made lost:0");
    CHECK_LOG(&rd.log, "made eof lost:0");
    return 0;
}

TEST_T(process_pipe_pair_bulk, 30) { run(t_pipe_pair, NULL); }

/* ------------------------------------------ the low-level subprocess API */

typedef struct sub_rec {
    test_log log;
    cio_future *lost_fut;
    int made, exited, lost, lost_error;
    int pipe_lost[3], pipe_err[3];
    char data[3][256];
    size_t len[3];
    int have_code, code_at_exit;
    int npipes;          /* how many of 0, 1, 2 are pipes */
    bool close_in_lost;  /* call cio_subprocess_close in connection_lost */
    bool create_failed;  /* no callback may come after that */
    cio_subprocess_transport *t;
} sub_rec;

static void sr_alive(sub_rec *r)
{
    if (r->create_failed)
        test_fail(__FILE__, __LINE__,
                  "a callback after the create call failed");
}

static void sr_made(cio_subprocess_transport *t, void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK_EQ(r->made, 0);
    CHECK(!r->exited && !r->lost);
    r->made++;
    r->t = t;
    test_log_add(&r->log, "made");
}

static void sr_data(cio_subprocess_transport *t, int fd, const char *data,
                    size_t n, void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK(t == r->t);
    CHECK(r->made && !r->lost);
    CHECK(fd == 1 || fd == 2);
    CHECK_EQ(r->pipe_lost[fd], 0);
    size_t room = sizeof r->data[fd] - 1 - r->len[fd];
    size_t take = n < room ? n : room;
    memcpy(r->data[fd] + r->len[fd], data, take);
    r->len[fd] += take;
}

static void sr_pipe_lost(cio_subprocess_transport *t, int fd, int error,
                         void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK(t == r->t);
    CHECK(r->made && !r->lost);
    CHECK(fd >= 0 && fd < 3);
    CHECK_EQ(r->pipe_lost[fd], 0);
    r->pipe_lost[fd]++;
    r->pipe_err[fd] = error;
    test_log_add(&r->log, "pipe_lost:%d", fd);
}

static void sr_exited(cio_subprocess_transport *t, void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK(t == r->t);
    CHECK(r->made && !r->lost);
    CHECK_EQ(r->exited, 0);
    r->exited++;
    r->have_code = cio_subprocess_get_returncode(t, &r->code_at_exit);
    test_log_add(&r->log, "exited");
}

static void sr_lost(cio_subprocess_transport *t, int error, void *ctx)
{
    sub_rec *r = ctx;
    sr_alive(r);
    CHECK(t == r->t);
    CHECK(r->made && r->exited);
    CHECK_EQ(r->lost, 0);
    CHECK_EQ(r->pipe_lost[0] + r->pipe_lost[1] + r->pipe_lost[2], r->npipes);
    r->lost++;
    r->lost_error = error;
    test_log_add(&r->log, "lost");
    CHECK_ERR(cio_future_set_result(r->lost_fut, NULL), 0);
    if (r->close_in_lost)
        cio_subprocess_close(t);
}

static const cio_subprocess_protocol sub_proto = {
    .connection_made = sr_made,
    .pipe_data_received = sr_data,
    .pipe_connection_lost = sr_pipe_lost,
    .process_exited = sr_exited,
    .connection_lost = sr_lost,
};

static void sub_init(sub_rec *r, int npipes)
{
    memset(r, 0, sizeof *r);
    r->npipes = npipes;
    CHECK_ERR(cio_future_new(NULL, &r->lost_fut), 0);
}

static void sub_await_lost(sub_rec *r)
{
    int e = cio_wait_for(r->lost_fut, 5 * tscale(), NULL);
    if (e)
        test_fail(__FILE__, __LINE__, "no connection_lost (%s); log: %s",
                  cio_strerror(e), r->log.buf);
    cio_future_unref(r->lost_fut);
    r->lost_fut = NULL;
}

/* The log starts with made and ends with lost; what lies between may come
 * in any order (as in asyncio). */
static void sub_check_frame(const sub_rec *r)
{
    const char *s = r->log.buf;
    size_t n = strlen(s);
    if (strncmp(s, "made", 4) != 0 || n < 9 || strcmp(s + n - 5, " lost") != 0)
        test_fail(__FILE__, __LINE__, "callback order: %s", s);
}

static int t_sub_order(void *arg)
{
    (void)arg;
    sub_rec r;
    sub_init(&r, 3);
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_subprocess_transport *t = (cio_subprocess_transport *)&t;
    CHECK_ERR(cio_subprocess_exec(ARGV("sh", "-c",
                                       "echo out; echo err >&2; exit 3"),
                                  &o, &sub_proto, &r, &t),
              0);
    CHECK(t != NULL && t != (cio_subprocess_transport *)&t);
    CHECK(cio_subprocess_get_pid(t) > 0);
    for (int fd = 0; fd < 3; fd++)
        CHECK(cio_subprocess_get_pipe_transport(t, fd) != NULL);
    CHECK(cio_subprocess_get_pipe_transport(t, 3) == NULL);
    CHECK(cio_subprocess_get_pipe_transport(t, -1) == NULL);
    if (!r.made) /* connection_made may come just after the call */
        r.t = t;
    sub_await_lost(&r);
    sub_check_frame(&r);
    CHECK_BYTES(r.data[1], r.len[1], "out\n");
    CHECK_BYTES(r.data[2], r.len[2], "err\n");
    for (int fd = 0; fd < 3; fd++) {
        CHECK_EQ(r.pipe_lost[fd], 1);
        CHECK_ERR(r.pipe_err[fd], 0);
        CHECK(cio_subprocess_get_pipe_transport(t, fd) == NULL);
    }
    CHECK_EQ(r.exited, 1);
    CHECK_EQ(r.have_code, 1);
    CHECK_EQ(r.code_at_exit, 3);
    CHECK_EQ(r.lost, 1);
    CHECK_ERR(r.lost_error, 0);
    int code = -1;
    CHECK_EQ(cio_subprocess_get_returncode(t, &code), 1);
    CHECK_EQ(code, 3);
    CHECK_ERR(cio_subprocess_send_signal(t, SIGTERM), -ESRCH);
    cio_subprocess_close(t); /* frees it */

    /* The shell form, no pipes. */
    sub_init(&r, 0);
    o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    CHECK_ERR(cio_subprocess_shell("exit 9", &o, &sub_proto, &r, &t), 0);
    for (int fd = 0; fd < 3; fd++)
        CHECK(cio_subprocess_get_pipe_transport(t, fd) == NULL);
    r.t = t;
    sub_await_lost(&r);
    CHECK_LOG(&r.log, "made exited lost");
    CHECK_EQ(r.code_at_exit, 9);
    cio_subprocess_close(t);
    return 0;
}

BOTH_WATCHERS(subprocess_protocol_order, 10) { run(t_sub_order, NULL); }

static int t_sub_stdin(void *arg)
{
    (void)arg;
    sub_rec r;
    sub_init(&r, 2);
    cio_process_options o = stdio3(PIPE, PIPE, DEVNULL);
    cio_subprocess_transport *t;
    CHECK_ERR(cio_subprocess_exec(ARGV("cat"), &o, &sub_proto, &r, &t), 0);
    r.t = t;
    CHECK(cio_subprocess_get_pipe_transport(t, 2) == NULL);
    cio_transport *in = cio_subprocess_get_pipe_transport(t, 0);
    CHECK(in != NULL);
    CHECK(cio_subprocess_get_pipe_transport(t, 1) != NULL);
    CHECK_ERR(cio_transport_write(in, "hello ", 6), 0);
    CHECK_ERR(cio_transport_write(in, "pipes\n", 6), 0);
    CHECK_ERR(cio_transport_write_eof(in), 0); /* cat ends at EOF */
    sub_await_lost(&r);
    sub_check_frame(&r);
    CHECK_BYTES(r.data[1], r.len[1], "hello pipes\n");
    CHECK_EQ(r.pipe_lost[0], 1);
    CHECK_EQ(r.pipe_lost[1], 1);
    CHECK_EQ(r.pipe_lost[2], 0);
    CHECK_EQ(r.code_at_exit, 0);
    cio_subprocess_close(t);
    return 0;
}

TEST(process_subprocess_pipe_transport) { run(t_sub_stdin, NULL); }

static int t_sub_close(void *arg)
{
    (void)arg;
    sub_rec r;
    /* close while it runs: pipes closed, the child killed, connection_lost
     * still comes (and then the transport is freed). */
    sub_init(&r, 3);
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_subprocess_transport *t;
    CHECK_ERR(cio_subprocess_exec(ARGV("sleep", "10"), &o, &sub_proto, &r,
                                  &t),
              0);
    r.t = t;
    pid_t pid = cio_subprocess_get_pid(t);
    CHECK_ERR(cio_sleep(0.01), 0);
    cio_subprocess_close(t);
    sub_await_lost(&r);
    sub_check_frame(&r);
    CHECK_EQ(r.exited, 1);
    CHECK_EQ(r.code_at_exit, -9);
    task_check_reaped(pid, 1);
    return 0;
}

TEST(process_subprocess_close_running) { run(t_sub_close, NULL); }

static int t_sub_signal(void *arg)
{
    (void)arg;
    sub_rec r;
    cio_subprocess_transport *t;
    cio_process_options o;
    /* Signals through the transport. */
    sub_init(&r, 0);
    o = stdio3(DEVNULL, DEVNULL, DEVNULL);
    CHECK_ERR(cio_subprocess_exec(ARGV("sleep", "10"), &o, &sub_proto, &r,
                                  &t),
              0);
    r.t = t;
    CHECK_ERR(cio_subprocess_send_signal(t, SIGTERM), 0);
    sub_await_lost(&r);
    CHECK_EQ(r.code_at_exit, -SIGTERM);
    CHECK_ERR(cio_subprocess_send_signal(t, SIGTERM), -ESRCH);
    cio_subprocess_close(t);
    return 0;
}

TEST(process_subprocess_send_signal) { run(t_sub_signal, NULL); }

static int t_sub_close_in_lost(void *arg)
{
    (void)arg;
    sub_rec r;
    cio_subprocess_transport *t;
    cio_process_options o;
    /* close from inside connection_lost (as asyncio allows: close is
     * idempotent). */
    sub_init(&r, 1);
    r.close_in_lost = true;
    o = stdio3(DEVNULL, PIPE, DEVNULL);
    CHECK_ERR(cio_subprocess_shell("echo bye", &o, &sub_proto, &r, &t), 0);
    r.t = t;
    sub_await_lost(&r);
    CHECK_BYTES(r.data[1], r.len[1], "bye\n");
    CHECK_ERR(cio_sleep(0.01), 0);
    return 0;
}

static void close_in_lost_body(void) { run(t_sub_close_in_lost, NULL); }

TEST(process_subprocess_close_in_connection_lost)
{
    close_in_lost_body();
}

static int t_sub_close_late(void *arg)
{
    (void)arg;
    sub_rec r;
    cio_subprocess_transport *t;
    cio_process_options o;
    /* close after process_exited, while a grandchild still holds the
     * stdout pipe: the pipe closes, then connection_lost, then it is
     * freed. */
    sub_init(&r, 1);
    o = stdio3(DEVNULL, PIPE, DEVNULL);
    CHECK_ERR(cio_subprocess_shell("(sleep 0.3; echo late) & exit 0", &o,
                                   &sub_proto, &r, &t),
              0);
    r.t = t;
    double end = mono() + 5 * tscale();
    while (!r.exited) {
        CHECK(mono() < end);
        CHECK_ERR(cio_sleep(0.002), 0);
    }
    CHECK_EQ(r.pipe_lost[1], 0);
    CHECK_EQ(r.lost, 0);
    cio_subprocess_close(t);
    sub_await_lost(&r);
    CHECK_LOG(&r.log, "made exited pipe_lost:1 lost");
    return 0;
}

TEST(process_subprocess_close_after_exit) { run(t_sub_close_late, NULL); }

static int t_sub_enoent(void *arg)
{
    (void)arg;
    sub_rec r;
    cio_subprocess_transport *t;
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    /* No such program: an error, no transport, and never a callback. */
    sub_init(&r, 0);
    t = (cio_subprocess_transport *)&t;
    CHECK_ERR(cio_subprocess_exec(ARGV("/nonexistent/cio-prog"), &o,
                                  &sub_proto, &r, &t),
              -ENOENT);
    CHECK(t == NULL);
    r.create_failed = true;
    CHECK_ERR(cio_sleep(0.02), 0);
    cio_future_unref(r.lost_fut);
    CHECK_ERR(cio_subprocess_exec(ARGV("true"), &o, NULL, &r, &t), -EINVAL);
    CHECK_EQ(count_children(NULL), 0);
    return 0;
}

TEST(process_subprocess_enoent) { run(t_sub_enoent, NULL); }

/* ------------------------------------------------- failure injection */

typedef struct fault_state {
    int reports;    /* errors reported through the exception handler */
    bool hung;      /* communicate never returned, the child waiting */
    bool exit_lost; /* the child was reaped, but wait never returned */
} fault_state;

static void count_fault_reports(cio_loop *loop, const cio_error_context *ctx,
                                void *arg)
{
    (void)loop;
    (void)ctx;
    ((fault_state *)arg)->reports++;
}

/* After a failure: withdraw cancellation (cio_run cancels the main task
 * when its loop fails) so that cleanup can still wait. */
static void calm(void)
{
    cio_task *me = cio_current_task();
    while (cio_task_cancelling(me) > 0)
        cio_task_uncancel(me);
}

/* Three pipes, communicate, wait. On an error the child is killed and
 * waited for, as a careful program does. Success with wrong output is
 * allowed only if the failure was reported through the exception handler
 * (as asyncio: communicate ignores a broken stdin, the pipe transport
 * reports its fatal error). A watchdog catches communicate never
 * returning. */
static int fault_main(void *arg)
{
    fault_state *fs = arg;
    cio_loop_set_exception_handler(cio_get_running_loop(),
                                   count_fault_reports, fs);
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_process *p = (cio_process *)&p;
    int r = cio_create_subprocess_shell("cat; echo err >&2", &o, &p);
    if (r) {
        CHECK(p == NULL);
        return r;
    }
    char *out = NULL, *err = NULL;
    size_t on = 0, en = 0;
    int code = -1000;
    cio_timeout_scope sc;
    pid_t pid = cio_process_pid(p);
    r = cio_timeout(&sc, 1.5 * tscale());
    if (!r) {
        r = cio_process_communicate(p, "fault\n", 6, &out, &on, &err, &en);
        if (cio_timeout_end(&sc) == -ETIMEDOUT) {
            if (proc_state(pid) == 0 && !cio_process_returncode(p, NULL))
                fs->exit_lost = true; /* gone, and nobody told us */
            else
                fs->hung = true;
        }
    }
    if (!r) {
        bool right = on == 6 && memcmp(out, "fault\n", 6) == 0 && en == 4 &&
                     memcmp(err, "err\n", 4) == 0;
        if (!right && fs->reports == 0)
            test_fail(__FILE__, __LINE__,
                      "communicate returned 0 with out \"%.*s\" err \"%.*s\" "
                      "and nothing reported",
                      (int)on, out ? out : "", (int)en, err ? err : "");
        r = cio_process_wait(p, &code);
        if (!r && right)
            CHECK_EQ(code, 0);
    }
    if (r) {
        calm();
        cio_process_kill(p);
        if (cio_timeout(&sc, 1.5 * tscale()) == 0) {
            cio_process_wait(p, NULL);
            if (cio_timeout_end(&sc) == -ETIMEDOUT)
                fs->exit_lost = true;
        }
    }
    cio_free(out);
    cio_free(err);
    cio_process_free(p);
    return r;
}

static int fault_scenario(void *arg)
{
    int r = cio_run(fault_main, arg);
    check_no_children(5); /* no zombie, whatever failed */
    return r;
}

static void fault_loop(unsigned kind, int err)
{
    fault_state fs = {0, false, false};
    int n = test_fault_loop(kind, err, fault_scenario, &fs);
    if (fs.exit_lost)
        test_fail(__FILE__, __LINE__, "a child was reaped, but neither "
                  "communicate nor wait ever learnt of its exit");
    if (fs.hung)
        test_fail(__FILE__, __LINE__, "communicate never returned");
    CHECK(n > 3);
}

static void fault_alloc_body(void) { fault_loop(CIO__FAULT_ALLOC, 0); }
static void fault_emfile_body(void) { fault_loop(CIO__FAULT_SYS, EMFILE); }

TEST_T(process_fault_alloc, 60) { fault_alloc_body(); }

TEST_T(process_fault_emfile, 60)
{
    fault_emfile_body();
}

TEST_T(process_thread_fault_alloc, 60)
{
    cio__process_force_thread_watcher = true;
    fault_alloc_body();
}

TEST_T(process_thread_fault_emfile, 60)
{
    cio__process_force_thread_watcher = true;
    fault_emfile_body();
}

/* The same through the low-level API: once the create call succeeded,
 * connection_lost comes, whatever failed; after it failed, no callback. */
static int sub_fault_main(void *arg)
{
    fault_state *fs = arg;
    cio_loop_set_exception_handler(cio_get_running_loop(),
                                   count_fault_reports, fs);
    sub_rec r;
    memset(&r, 0, sizeof r);
    r.npipes = 3;
    int e = cio_future_new(NULL, &r.lost_fut);
    if (e)
        return e;
    cio_process_options o = stdio3(PIPE, PIPE, PIPE);
    cio_subprocess_transport *t = (cio_subprocess_transport *)&t;
    e = cio_subprocess_exec(ARGV("sh", "-c", "cat; echo err >&2"), &o,
                            &sub_proto, &r, &t);
    if (e) {
        CHECK(t == NULL);
        r.create_failed = true;
        calm();
        cio_sleep(0.01); /* a stray callback would come now */
        cio_sleep(0.01);
        cio_future_unref(r.lost_fut);
        return e;
    }
    r.t = t;
    cio_transport *in = cio_subprocess_get_pipe_transport(t, 0);
    CHECK(in != NULL);
    e = cio_transport_write(in, "fault\n", 6);
    if (!e)
        e = cio_transport_write_eof(in);
    bool closed = false;
    double end = mono() + 5 * tscale();
    while (!r.lost) {
        if (mono() > end)
            test_fail(__FILE__, __LINE__, "no connection_lost; log: %s",
                      r.log.buf);
        int s2 = cio_sleep(0.002);
        if ((e || s2) && !closed) { /* give up: kill it, closing all */
            if (!e)
                e = s2;
            cio_subprocess_close(t);
            closed = true;
        }
        if (s2)
            calm();
    }
    if (!e) {
        for (int fd = 0; fd < 3 && !e; fd++)
            e = r.pipe_err[fd];
        bool right = r.len[1] == 6 && memcmp(r.data[1], "fault\n", 6) == 0 &&
                     r.len[2] == 4 && memcmp(r.data[2], "err\n", 4) == 0 &&
                     r.code_at_exit == 0;
        if (!e && !right && fs->reports == 0)
            test_fail(__FILE__, __LINE__,
                      "all went well but out \"%s\" err \"%s\" code %d",
                      r.data[1], r.data[2], r.code_at_exit);
    }
    if (!closed)
        cio_subprocess_close(t); /* frees it (after connection_lost) */
    cio_future_unref(r.lost_fut);
    return e;
}

static int sub_fault_scenario(void *arg)
{
    int r = cio_run(sub_fault_main, arg);
    check_no_children(5);
    return r;
}

static void sub_fault_alloc_body(void)
{
    fault_state fs = {0, false, false};
    CHECK(test_fault_loop(CIO__FAULT_ALLOC, 0, sub_fault_scenario, &fs) > 5);
}

static void sub_fault_emfile_body(void)
{
    fault_state fs = {0, false, false};
    CHECK(test_fault_loop(CIO__FAULT_SYS, EMFILE, sub_fault_scenario, &fs) >
          3);
}

TEST_T(process_subprocess_fault_alloc, 60)
{
    sub_fault_alloc_body();
}

TEST_T(process_subprocess_fault_emfile, 60)
{
    sub_fault_emfile_body();
}
