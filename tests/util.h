/* What the test files share: clocks and bounded waits, threads, loops,
 * tasks and futures, exception reports, cio_run wrappers, the log and the
 * gate tests record into, and children (processes and pipes). harness.h
 * runs the tests (fork, time limit, leak check); this is what they call.
 *
 * The globals below (L, LOOP, REP, GATE, VALUES) are per test: each test
 * runs in its own forked process, so they start zeroed in every one. */
#ifndef CIO_TEST_UTIL_H
#define CIO_TEST_UTIL_H

#include "harness.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ------------------------------------------------------ clocks and waits */

double mono(void);        /* CLOCK_MONOTONIC, in seconds */
void nap(double seconds); /* sleeps this thread, resuming after signals */
/* Time limits stretch (10x) under valgrind and sanitizers. */
double tscale(void);

/* Checks cond, running `pause` between checks, until it holds; fails
 * after 30 s. */
#define WAIT_BOUNDED(cond, pause)                                              \
    do {                                                                       \
        double t0_ = mono();                                                   \
        while (!(cond)) {                                                      \
            if (mono() - t0_ > 30)                                             \
                test_fail(__FILE__, __LINE__, "timed out waiting for %s",      \
                          #cond);                                              \
            pause;                                                             \
        }                                                                      \
    } while (0)
/* Blocks this thread until cond holds. */
#define WAIT_UNTIL(cond) WAIT_BOUNDED(cond, nap(0.001))
/* The same from a task: sleeps on the loop, so the loop keeps running. */
#define TASK_WAIT_UNTIL(cond) WAIT_BOUNDED(cond, CHECK_ERR(cio_sleep(0.001), 0))

/* ---------------------------------------------------------------- threads */

int thread_count(void); /* threads of this process, from /proc/self/task */
/* This process's threads before the test starts any. ThreadSanitizer
 * adds a background thread at the first pthread_create: one is made (and
 * joined, and gone from the kernel's list) first, so that thread is
 * counted in the base. */
int thread_base(void);

/* ------------------------------------------------------ loops and the log */

extern test_log L;     /* what happened, in order */
extern cio_loop *LOOP; /* the last loop loop_open* made, for callbacks */

cio_loop *loop_open(void); /* a new loop, kept in LOOP too */
cio_loop *loop_open_with(const char *backend, int debug);
void say(void *arg);      /* a callback: logs the string arg */
void count_cb(void *arg); /* a callback: counts its calls in *(int *)arg */
void say_stop(void *arg); /* logs arg, then stops LOOP */
void readable_pipe(int p[2]); /* a pipe whose read end has a byte waiting */
void close_pair(int p[2]);
/* Runs fn with stderr going into buf (NUL-terminated). */
void capture_stderr(void (*fn)(void *), void *arg, char *buf, size_t cap);

/* ------------------------------------------------------ tasks and futures */

cio_task *spawn(cio_task_fn fn, void *arg); /* on the running loop */
int finish(cio_task *t); /* awaits t, drops the reference, its status */
void yield_n(int n);     /* lets other tasks run for n iterations */
void settle(void);       /* lets every ready task run until it parks */
cio_loop *loop_now(void);            /* the running loop */
double now(void);                    /* the running loop's time */
cio_future *future_open(void);       /* a future on the running loop */
void unref_all(cio_future **f, size_t n);
#define IARG(i) ((void *)(intptr_t)(i)) /* an int as a task's argument */
/* An error code as the logs show it: its name, or the number. */
const char *code(int r);

extern cio_future *GATE; /* tasks park on it until the test opens it */
extern int VALUES[8];    /* what run_job's tasks set as their values */

/* A task body: sleeps `delay` seconds (< 0: awaits GATE), logs its name
 * into L, sets VALUES[status] as its value (if in range), returns status;
 * `yields` sleep(0)s first. Any error is logged as name:code. */
typedef struct job {
    const char *name;
    double delay; /* < 0: await GATE instead */
    int status;
    int yields;   /* sleep(0)s before that */
} job;
int run_job(void *arg);
/* A task that is cancelled, cleans up with awaits and stays cancelled. */
int sleep_then_clean_up(void *arg);

/* ----------------------------------------------------- exception reports */

/* What the exception handler was told. */
typedef struct report {
    int count;
    char message[128];
    char what[32];
    char name[64];
    int error;
    void *object;
} report;
extern report REP;

void record_report(cio_loop *loop, const cio_error_context *ctx, void *arg);
void record_here(void); /* the running loop's reports go into REP */
/* Counts reports in *(int *)arg. */
void count_reports(cio_loop *loop, const cio_error_context *ctx, void *arg);
/* Fails the test at any report. */
void strict_handler(cio_loop *loop, const cio_error_context *ctx, void *arg);
/* After a failure: withdraws cancellation (cio_run cancels the main task
 * when its loop fails) so that cleanup can still wait. */
void calm(void);

/* --------------------------------------------------------------- cio_run */

void run_ok(cio_task_fn fn); /* cio_run(fn, NULL) must return 0 */
/* cio_run(fn, arg) with strict_handler on its loop; returns its status. */
int run_strict_status(cio_task_fn fn, void *arg);
void run_strict(cio_task_fn fn, void *arg); /* ... which must be 0 */

/* ------------------------------------------------------ children and pipes */

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define PIPE CIO_STDIO_PIPE
#define DEVNULL CIO_STDIO_DEVNULL
#define INHERIT CIO_STDIO_INHERIT

cio_process_options stdio3(cio_stdio_kind in, cio_stdio_kind out,
                           cio_stdio_kind err);
/* cio_create_subprocess_shell, which must succeed with a pid. */
cio_process *sh(const char *cmd, const cio_process_options *o);

/* Fails unless the string text contains needle, showing both. */
#define CHECK_HAS(text, needle)                                                \
    do {                                                                       \
        if (!strstr((text), (needle)))                                         \
            test_fail(__FILE__, __LINE__, "no \"%s\" in:\n%s", (needle),      \
                      (text));                                                 \
    } while (0)

#define CHECK_BYTES(data, len, expected)                                       \
    check_bytes(__FILE__, __LINE__, (data), (len), (expected))
void check_bytes(const char *file, int line, const char *data, size_t len,
                 const char *expected);

/* A child's state letter from /proc/PID/stat ('Z': zombie), 0 once the
 * process is gone (reaped). */
char proc_state(pid_t pid);
void check_echild(pid_t pid); /* waitpid(pid) must say ECHILD */
/* From a task (the loop keeps running): pid must be reaped within secs. */
void task_check_reaped(pid_t pid, double secs);
/* How many processes have this one as parent (*zombies: of them, in Z). */
int count_children(int *zombies);
/* No loop running: every child of this process must be gone within secs
 * (killed ones die at once; a zombie never goes). */
void check_no_children(double secs);

char pat(size_t i); /* byte i of the bulk-data pattern */
/* Reads fd (blocking) to EOF into buf; returns the length. */
size_t read_fd_all(int fd, char *buf, size_t cap);

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

#endif
