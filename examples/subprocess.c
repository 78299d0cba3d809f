/* Running other programs: subprocesses and pipes.
 *
 * A child process is something to wait for, like a timer or a socket: it
 * runs on its own while the loop does other work, its output arrives
 * through pipes, and its exit is an event. So a task can start a command
 * and wait for it without blocking the other tasks, and several commands
 * run at once.
 *
 * Three parts:
 *   1. six shell commands, run at most three at a time (a semaphore),
 *      each one's output and exit status captured, shown in a fixed order;
 *   2. a shell pipeline, `sort | uniq -c`, fed from this program through
 *      its stdin, with cio_process_communicate;
 *   3. a program started directly, without a shell, and one that does not
 *      exist.
 */
#include <cio.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Prints each line of data (which may lack a final '\n') after a prefix. */
static void print_lines(const char *prefix, const char *data, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t len = nl ? (size_t)(nl - data) : n;
        printf("%s%.*s\n", prefix, (int)len, data);
        len += nl != NULL;
        data += len;
        n -= len;
    }
}

/* How a child ended: cio's returncode is the exit status (>= 0), or minus
 * the signal that killed it, as in asyncio. */
static void print_returncode(const char *indent, int code)
{
    if (code >= 0)
        printf("%sexit status %d\n", indent, code);
    else
        printf("%skilled by signal %d (returncode %d)\n", indent, -code, code);
}

/* ----- 1. several commands at once, three at a time ----- */

typedef struct job {
    const char *cmd;
    int code;         /* its returncode, once it has finished */
    char *out, *err;  /* what it printed (released with cio_free) */
    size_t outlen, errlen;
} job;

/* The sleeps stand for real work: 1.2 s one after another. */
static job jobs[] = {
    {.cmd = "sleep 0.3; echo 6 times 7 is $((6 * 7))"},
    {.cmd = "sleep 0.1; printf '%s\\n' one two three | wc -l"},
    {.cmd = "sleep 0.2; echo 'something went wrong' >&2; exit 3"},
    {.cmd = "sleep 0.2; echo first line; echo second line"},
    {.cmd = "sleep 0.1; kill -TERM $$"}, /* the shell kills itself */
    {.cmd = "sleep 0.3; echo done >&2"},
};
enum { NJOBS = sizeof jobs / sizeof jobs[0], AT_ONCE = 3 };

static cio_semaphore slots; /* AT_ONCE units: one per running command */
static int running, most_running;

static int run_job(void *arg)
{
    job *j = arg;
    CIO_SEMAPHORE_SCOPE(slot); /* `async with slots:` to the end of run_job */
    int err = cio_semaphore_enter(&slot, &slots); /* waits while 3 run */
    if (err)
        return err;
    if (++running > most_running)
        most_running = running;

    /* stdin from /dev/null (they read nothing), stdout and stderr into
     * pipes that this program reads. */
    cio_process_options opts = {
        .in = {.kind = CIO_STDIO_DEVNULL},
        .out = {.kind = CIO_STDIO_PIPE},
        .err = {.kind = CIO_STDIO_PIPE},
    };
    cio_process *p;
    err = cio_create_subprocess_shell(j->cmd, &opts, &p); /* /bin/sh -c */
    if (!err) {
        /* Reads both pipes to EOF, then waits for the exit. Meanwhile the
         * loop runs the other jobs. */
        err = cio_process_communicate(p, NULL, 0, &j->out, &j->outlen,
                                      &j->err, &j->errlen);
        if (!err)
            cio_process_returncode(p, &j->code);
        cio_process_free(p);
    }
    running--;
    return err; /* the slot goes back here: the next one can start */
}

static int run_jobs(void)
{
    printf("%d commands, at most %d at a time:\n", NJOBS, AT_ONCE);
    cio_semaphore_init(&slots, AT_ONCE);
    cio_loop *loop = cio_get_running_loop();
    double start = cio_loop_time(loop);

    /* Every job as a task; return_exceptions (1): wait for all of them,
     * each keeps its status. Nothing to unref: the tasks are the call's. */
    cio_call calls[NJOBS];
    for (size_t i = 0; i < NJOBS; i++)
        calls[i] = (cio_call){run_job, &jobs[i]};
    cio_result results[NJOBS];
    int gathered = cio_gather_calls(calls, NJOBS, 1, results);
    double took = cio_loop_time(loop) - start;

    /* The results in the order of the list, whatever order they ended in. */
    int err = 0;
    for (size_t i = 0; i < NJOBS; i++) {
        job *j = &jobs[i];
        if (gathered == 0) {
            printf("  $ %s\n", j->cmd);
            if (results[i].status < 0) {
                printf("    failed: %s\n", cio_strerror(results[i].status));
                err = err ? err : results[i].status;
            } else {
                print_lines("    stdout: ", j->out, j->outlen);
                print_lines("    stderr: ", j->err, j->errlen);
                print_returncode("    ", j->code);
            }
        }
        cio_free(j->out);
        cio_free(j->err);
    }
    if (err || gathered)
        return err ? err : gathered;
    printf("at most %d ran at once; all done in %.1f s\n", most_running, took);
    return 0;
}

/* ----- 2. a pipeline, fed from this program ----- */

static int count_fruit(void)
{
    static const char fruit[] =
        "banana\napple\ncherry\napple\nbanana\napple\n";
    const char *cmd = "sort | uniq -c"; /* a pipeline needs a shell */
    printf("a pipeline fed from this program: %s\n", cmd);
    printf("  its stdin, a word a line:");
    for (const char *c = fruit; *c; c++)
        if (*c != '\n')
            printf("%s%c", c == fruit || c[-1] == '\n' ? " " : "", *c);
    printf("\n");

    cio_process_options opts = {
        .in = {.kind = CIO_STDIO_PIPE},  /* we write its input */
        .out = {.kind = CIO_STDIO_PIPE}, /* we read its output */
        /* .err left at 0, CIO_STDIO_INHERIT: errors go to our stderr */
    };
    cio_process *p;
    int err = cio_create_subprocess_shell(cmd, &opts, &p);
    if (err)
        return err;
    /* Writes all of `fruit` then closes its stdin (sort waits for that
     * EOF before printing anything), while reading its stdout: with large
     * data, writing first and reading after could deadlock, each side
     * waiting for the other to empty a full pipe. */
    char *out;
    size_t outlen;
    err = cio_process_communicate(p, fruit, strlen(fruit), &out, &outlen,
                                  NULL, NULL);
    int code = 0;
    if (!err) {
        cio_process_returncode(p, &code);
        print_lines("  its stdout: ", out, outlen);
        print_returncode("  ", code);
        cio_free(out);
    }
    cio_process_free(p);
    return err;
}

/* ----- 3. no shell: the program and its arguments, as they are ----- */

static int run_directly(void)
{
    printf("a program started directly, with no shell in between:\n");
    /* argv as the program gets it: no quoting, no $ expansion, no globs. */
    const char *const argv[] = {"echo", "$HOME * stays; as it is", NULL};
    /* stdout left at CIO_STDIO_INHERIT: the child writes straight to our
     * stdout, so first flush what printf still holds in its buffer. */
    printf("  echo's own output, straight to our stdout:\n");
    fflush(stdout);
    cio_process *p;
    int err = cio_create_subprocess_exec(argv, NULL, &p);
    if (err)
        return err;
    int code;
    err = cio_process_wait(p, &code);
    cio_process_free(p);
    if (err)
        return err;
    print_returncode("  ", code);

    /* A program that is not there: an error from the call itself. */
    const char *const missing[] = {"no-such-program", NULL};
    err = cio_create_subprocess_exec(missing, NULL, &p);
    printf("  starting no-such-program: %s\n", cio_strerror(err));
    cio_process_free(p); /* NULL after a failure: a no-op */
    return err == -ENOENT ? 0 : -EPROTO;
}

static int main_task(void *arg)
{
    (void)arg;
    int err = run_jobs();
    if (!err)
        err = count_fruit();
    if (!err)
        err = run_directly();
    if (err)
        fprintf(stderr, "subprocess: %s\n", cio_strerror(err));
    return err;
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
