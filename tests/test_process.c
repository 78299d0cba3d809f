/* Subprocesses and pipes (issue 7): create_subprocess_exec / _shell with
 * every stdio choice, cwd and env, the fds a child inherits, errors from
 * the create call, return codes (negative for a signal), send_signal,
 * wait (cancelled, timed out), communicate (10 MiB each way), two hundred
 * children at once, reaping when nobody waits any more (object freed, loop
 * closed), the thread watcher, and failure injection. Pipes and the
 * low-level subprocess transport are in test_subprocess.c.
 *
 * Everything runs real children (sh, cat, tee, sleep, ls, env, grep) and
 * real signals. "Reaped" is checked without reaping: the child's
 * /proc/PID entry must disappear (a zombie keeps it, in state Z), and only
 * then waitpid(pid, WNOHANG) must say ECHILD. Tests that run the same with
 * a thread per child instead of a pidfd exist twice: process_NAME and
 * process_thread_NAME. Every test name starts with "process_"
 * (`make check T=process`). */
#define _GNU_SOURCE
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

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

BOTH_WATCHERS(exit_codes, 10) { run_strict(t_exit_codes, NULL); }

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

BOTH_WATCHERS(signals, 10) { run_strict(t_signals, NULL); }

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

BOTH_WATCHERS(streams_cat, 10) { run_strict(t_streams_cat, NULL); }

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

TEST(process_stdio_devnull) { run_strict(t_devnull, NULL); }

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

TEST(process_stderr_to_stdout) { run_strict(t_stderr_stdout, NULL); }

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

TEST(process_stdio_given_fd) { run_strict(t_given_fds, NULL); }

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
    run_strict(t_inherit, &res);
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

TEST(process_cwd) { run_strict(t_cwd, NULL); }

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

TEST(process_env) { run_strict(t_env, NULL); }

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

TEST(process_inherits_only_given_fds) { run_strict(t_only_given_fds, NULL); }

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
    run_strict(t_create_errors, NULL);
    /* Outside a task. */
    cio_process *p = (cio_process *)&p;
    CHECK_ERR(cio_create_subprocess_exec(ARGV("true"), NULL, &p), CIO_ENOTASK);
    CHECK(p == NULL);
    CHECK_ERR(cio_create_subprocess_shell("true", NULL, &p), CIO_ENOTASK);
    CHECK_EQ(count_children(NULL), 0);
    cio_process_free(NULL);
    CHECK_EQ(cio_process_pid(NULL), -1);
    CHECK_EQ(cio_process_returncode(NULL, NULL), 0);
}

/* --------------------------------------------- signal state reset */

static void count_usr1(void *arg) { ++*(int *)arg; }

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
    CHECK_ERR(cio_add_signal_handler(cio_get_running_loop(), SIGUSR1,
                                     count_usr1, usr1),
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
    run_strict(t_sigstate, &usr1);
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

TEST(process_signal_state_reset_internal)
{
    run_strict(t_sigstate_internal, NULL);
}

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

BOTH_WATCHERS(communicate_stderr, 10) { run_strict(t_comm_stderr, NULL); }

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

TEST(process_communicate_unread_input) { run_strict(t_comm_unread, NULL); }

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

TEST_T(process_communicate_10mib, 60) { run_strict(t_comm_big, NULL); }

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

BOTH_WATCHERS(wait_cancelled, 10) { run_strict(t_wait_cancel, NULL); }

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

BOTH_WATCHERS(free_running_reaped, 10) { run_strict(t_free_running, NULL); }

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
    run_strict(t_run_leaves, &pid);
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

BOTH_WATCHERS(200_children, 60) { run_strict(t_many, NULL); }

/* ----------------------------------- SIGCHLD handled by the program */

static int t_sigchld(void *arg)
{
    int *chld = arg;
    cio_loop *loop = cio_get_running_loop();
    CHECK_ERR(cio_add_signal_handler(loop, SIGCHLD, count_usr1, chld), 0);
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
    run_strict(t_sigchld, &chld);
}

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

/* Three pipes, communicate, wait. On an error the child is killed and
 * waited for, as a careful program does. Success with wrong output is
 * allowed only if the failure was reported through the exception handler
 * (as asyncio: communicate ignores a broken stdin, the pipe transport
 * reports its fatal error). A watchdog catches communicate never
 * returning. */
static int process_fault_main(void *arg)
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

static int process_fault_scenario(void *arg)
{
    int r = cio_run(process_fault_main, arg);
    check_no_children(5); /* no zombie, whatever failed */
    return r;
}

static void fault_loop(unsigned kind, int err)
{
    fault_state fs = {0, false, false};
    int n = test_fault_loop(kind, err, process_fault_scenario, &fs);
    if (fs.exit_lost)
        test_fail(__FILE__, __LINE__, "a child was reaped, but neither "
                  "communicate nor wait ever learnt of its exit");
    if (fs.hung)
        test_fail(__FILE__, __LINE__, "communicate never returned");
    CHECK(n > 3);
}

static void fault_alloc_body(void) { fault_loop(CIO__FAULT_ALLOC, 0); }

/* The tasks of communicate whose stacks cannot be guarded (madvise
 * fails at the N-th stack, once or for good): communicate fails or
 * succeeds, and never waits for an EOF that a feeder which never ran
 * cannot send. */
TEST_T(process_fault_stack_guard, 60)
{
    fault_state fs = {0, false, false};
    for (int persist = 0; persist < 2; persist++)
        for (int n = 1;; n++) {
            cio__fault_arm_call(CIO__FAULT_SYS |
                                    (persist ? CIO__FAULT_PERSIST : 0),
                                n, ENOMEM, "madvise");
            int r = process_fault_scenario(&fs);
            bool fired = cio__fault_fired();
            cio__fault_disarm();
            CHECK(!fs.hung && !fs.exit_lost);
            CHECK(r <= 0);
            if (!fired) {
                CHECK_ERR(r, 0);
                CHECK(n > 3); /* main, the feeder and both readers */
                break;
            }
        }
}
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

/* ------------------------------------------- sessions and process groups
 * asyncio's start_new_session and process_group, and killing the group:
 * a `sh -c` job's grandchildren are in the child's group, so killing the
 * group reaches them where killing the child does not. A grandchild is
 * not ours to wait for: its death is watched through a pidfd (readable
 * once it exits, whoever reaps it), with a deadline. Where pidfd_open is
 * missing (valgrind does not know the call) the death is polled from
 * /proc instead: gone, or a zombie waiting for its new parent. */

static void pidfd_ready(void *arg) { cio_event_set(arg); }

/* A pidfd for pid, or -ENOSYS where the kernel (or valgrind) lacks one. */
static int open_pidfd(pid_t pid)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && errno == ENOSYS)
        return -ENOSYS;
    CHECK(fd >= 0);
    return fd;
}

static void wait_gone_polled(pid_t pid)
{
    double end = mono() + 30 * tscale();
    char st;
    while ((st = proc_state(pid)) != 0 && st != 'Z') {
        CHECK(mono() < end);
        CHECK_ERR(cio_sleep(0.005), 0);
    }
}

/* Waits (bounded) until pid, whose pidfd open_pidfd gave, has died. */
static void wait_gone(pid_t pid, int pidfd)
{
    if (pidfd == -ENOSYS) {
        wait_gone_polled(pid);
        return;
    }
    cio_event ev = CIO_EVENT_INIT;
    CHECK_ERR(cio_add_reader(loop_now(), pidfd, pidfd_ready, &ev), 0);
    cio_timeout_scope s;
    CHECK_ERR(cio_timeout(&s, 30 * tscale()), 0);
    int r = cio_event_wait(&ev);
    CHECK_EQ(cio_remove_reader(loop_now(), pidfd), 1);
    CHECK_ERR(cio_timeout_end(&s), 0);
    CHECK_ERR(r, 0);
    close(pidfd);
}

/* Reads the pid the child printed on its own line. */
static pid_t read_pid(cio_process *p)
{
    const char *line;
    ssize_t n = cio_stream_readline(cio_process_stdout(p), &line);
    CHECK(n > 1);
    return (pid_t)atoi(line);
}

static int t_killpg(void *arg)
{
    cio_process_options o = *(const cio_process_options *)arg;
    o.out.kind = CIO_STDIO_PIPE;
    cio_process *p = ex(ARGV("sh", "-c",
                             "sleep 100 & echo $!; sleep 100 & echo $!; wait"),
                        &o);
    pid_t pid = cio_process_pid(p), g[2] = {read_pid(p), read_pid(p)};
    int fds[2] = {open_pidfd(g[0]), open_pidfd(g[1])};
    CHECK_EQ(getpgid(pid), pid); /* it leads a group of its own */
    CHECK_EQ(getsid(pid) == pid, o.start_new_session);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(getpgid(g[i]), pid); /* and the grandchildren are in it */
    CHECK_ERR(cio_process_killpg(p, SIGKILL), 0);
    CHECK_EQ(wait_code(p), -SIGKILL);
    wait_gone(g[0], fds[0]);
    wait_gone(g[1], fds[1]);
    cio_process_free(p);
    return 0;
}

TEST(process_group_new_killpg_kills_the_grandchildren)
{
    cio_process_options o = {.process_group = CIO_PROCESS_GROUP_NEW};
    run_strict(t_killpg, &o);
}

TEST(process_new_session_killpg_kills_the_grandchildren)
{
    cio_process_options o = {.start_new_session = 1};
    run_strict(t_killpg, &o);
}

/* The Ctrl-C case: the shell is gone already, its background job is not;
 * the group still reaches it. */
static int t_killpg_after_exit(void *arg)
{
    (void)arg;
    cio_process_options o = {.out = {.kind = CIO_STDIO_PIPE},
                             .process_group = CIO_PROCESS_GROUP_NEW};
    cio_process *p = ex(ARGV("sh", "-c", "sleep 100 & echo $!"), &o);
    pid_t g = read_pid(p);
    int fd = open_pidfd(g);
    CHECK_EQ(wait_code(p), 0);
    CHECK_EQ(kill(g, 0), 0); /* left running */
    CHECK_EQ(cio_process_send_signal(p, SIGTERM), -ESRCH);
    CHECK_ERR(cio_process_killpg(p, SIGTERM), 0);
    wait_gone(g, fd);
    cio_process_free(p);
    return 0;
}

TEST(process_killpg_after_the_child_exited)
{
    run_strict(t_killpg_after_exit, NULL);
}

static int t_group_errors(void *arg)
{
    (void)arg;
    cio_process *p = ex(ARGV("true"), NULL);
    /* In our group: killpg would signal this process too. */
    CHECK_ERR(cio_process_killpg(p, SIGTERM), -EINVAL);
    CHECK_EQ(getpgid(cio_process_pid(p)), getpgrp());
    CHECK_EQ(wait_code(p), 0);
    cio_process_free(p);
    CHECK_ERR(cio_process_killpg(NULL, SIGTERM), -EINVAL);
    cio_process_options both = {.start_new_session = 1,
                                .process_group = CIO_PROCESS_GROUP_NEW};
    cio_process_options bad = {.process_group = -2};
    CHECK_ERR(cio_create_subprocess_exec(ARGV("true"), &both, &p), -EINVAL);
    CHECK_ERR(cio_create_subprocess_exec(ARGV("true"), &bad, &p), -EINVAL);
    /* Joining a group that exists: the child's own, made by another. */
    cio_process_options lead = {.out = {.kind = CIO_STDIO_PIPE},
                                .process_group = CIO_PROCESS_GROUP_NEW};
    cio_process *leader = ex(ARGV("sh", "-c", "echo ready; exec sleep 100"),
                             &lead);
    const char *line;
    CHECK(cio_stream_readline(cio_process_stdout(leader), &line) > 0);
    cio_process_options join = {.process_group = cio_process_pid(leader)};
    cio_process *member = ex(ARGV("sleep", "100"), &join);
    CHECK_EQ(getpgid(cio_process_pid(member)), cio_process_pid(leader));
    CHECK_ERR(cio_process_killpg(member, SIGKILL), 0); /* both */
    CHECK_EQ(wait_code(member), -SIGKILL);
    CHECK_EQ(wait_code(leader), -SIGKILL);
    cio_process_free(member);
    cio_process_free(leader);
    return 0;
}

TEST(process_group_options_and_errors)
{
    run_strict(t_group_errors, NULL);
}
