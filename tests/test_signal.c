/* Unix signals (issue 7): cio_add_signal_handler / cio_remove_signal_handler
 * with real signals sent by kill(), and cio_run's Ctrl-C handling as
 * Python 3.11's asyncio.Runner: the first SIGINT cancels the main task,
 * which may clean up; cio_run then returns -ECANCELED; a second SIGINT
 * during the cleanup interrupts for real; a SIGINT that is ignored or
 * handled by the program is left alone.
 *
 * Whatever could kill the process (a default action, a second Ctrl-C)
 * runs in a forked child whose wait status is checked. A handled signal
 * is blocked in the thread that added the handler, so a helper thread
 * that sends one either blocks it too (made after the handler was added,
 * or a cio worker) or would take it itself. Every test name starts with
 * "signal_" (`make check T=signal`). */
#define _GNU_SOURCE
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static bool blocked(int sig)
{
    sigset_t cur;
    CHECK(pthread_sigmask(SIG_BLOCK, NULL, &cur) == 0);
    return sigismember(&cur, sig);
}

static bool pending(int sig)
{
    sigset_t set;
    CHECK(sigpending(&set) == 0);
    return sigismember(&set, sig);
}

static void (*disposition(int sig))(int)
{
    struct sigaction sa;
    CHECK(sigaction(sig, NULL, &sa) == 0);
    return sa.sa_handler;
}

/* Runs fn(arg) in a forked child (fresh: no loop, one thread) and returns
 * its wait status; `marks` (may be NULL) receives what the child wrote to
 * fd `mark_fd` (a pipe) as it went. A failed CHECK in the child prints
 * its message and exits 1. */
typedef void (*child_fn)(void *arg, int mark_fd);

static int in_child(child_fn fn, void *arg, char *marks, size_t cap,
                    double timeout)
{
    int pp[2];
    CHECK(pipe(pp) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(pp[0]);
        fn(arg, pp[1]);
        fflush(NULL);
        _exit(0);
    }
    close(pp[1]);
    size_t len = 0;
    double end = mono() + timeout * tscale();
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        CHECK(r == 0);
        if (mono() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            close(pp[0]);
            test_fail(__FILE__, __LINE__, "child timed out");
        }
        usleep(2000);
    }
    for (;;) {
        char c;
        ssize_t n = read(pp[0], &c, 1);
        if (n <= 0)
            break;
        if (marks && len + 1 < cap)
            marks[len++] = c;
    }
    if (marks)
        marks[len] = 0;
    close(pp[0]);
    return status;
}

static void mark(int fd, char c) { CHECK_EQ(write(fd, &c, 1), 1); }

#define CHECK_EXITED_0(status)                                                 \
    do {                                                                       \
        int s_ = (status);                                                     \
        if (!WIFEXITED(s_) || WEXITSTATUS(s_) != 0)                            \
            test_fail(__FILE__, __LINE__, "child %s %d", WIFEXITED(s_)         \
                      ? "exited with" : "killed by signal",                    \
                      WIFEXITED(s_) ? WEXITSTATUS(s_) : WTERMSIG(s_));         \
    } while (0)

#define CHECK_KILLED_BY(status, sig)                                           \
    do {                                                                       \
        int s_ = (status);                                                     \
        if (!WIFSIGNALED(s_) || WTERMSIG(s_) != (sig))                         \
            test_fail(__FILE__, __LINE__, "child %s %d, not killed by %d",     \
                      WIFEXITED(s_) ? "exited with" : "killed by signal",      \
                      WIFEXITED(s_) ? WEXITSTATUS(s_) : WTERMSIG(s_), (sig));  \
    } while (0)

/* --------------------------------------------------- handlers run */

typedef struct sig_state {
    cio_loop *loop;
    cio_future *done;
    test_log log;
    int count[NSIG];
    bool in_task_context; /* a callback saw a current task */
    bool wrong_loop;
} sig_state;

static void note_soon(void *arg)
{
    sig_state *st = arg;
    test_log_add(&st->log, "soon");
    if (!cio_future_done(st->done))
        CHECK_ERR(cio_future_set_result(st->done, NULL), 0);
}

static int side_task(void *arg)
{
    sig_state *st = arg;
    CHECK_ERR(cio_sleep(0.001), 0);
    test_log_add(&st->log, "task");
    return 0;
}

/* An ordinary callback: on the loop, outside any task, free to call cio
 * (schedule a callback, start a task). */
static void on_usr1(void *arg)
{
    sig_state *st = arg;
    st->count[SIGUSR1]++;
    if (cio_get_running_loop() != st->loop)
        st->wrong_loop = true;
    if (cio_current_task() != NULL)
        st->in_task_context = true;
    test_log_add(&st->log, "usr1");
    CHECK_ERR(cio_call_soon(st->loop, note_soon, st, NULL), 0);
    cio_task *t;
    CHECK_ERR(cio_task_new(st->loop, side_task, st, NULL, &t), 0);
    cio_future_unref(t);
}

static void count_sig(void *arg, int sig)
{
    sig_state *st = arg;
    st->count[sig]++;
    test_log_add(&st->log, "sig%d", sig);
    if (!cio_future_done(st->done))
        cio_future_set_result(st->done, NULL);
}

static void on_usr2(void *arg) { count_sig(arg, SIGUSR2); }
static void on_usr1_b(void *arg) { count_sig(arg, SIGUSR1); }
static void on_rt(void *arg) { count_sig(arg, SIGRTMIN + 2); }

static void st_init(sig_state *st)
{
    memset(st, 0, sizeof *st);
    st->loop = cio_get_running_loop();
    CHECK_ERR(cio_future_new(NULL, &st->done), 0);
}

static void st_rearm(sig_state *st)
{
    cio_future_unref(st->done);
    CHECK_ERR(cio_future_new(NULL, &st->done), 0);
}

static void st_await(sig_state *st)
{
    int e = cio_wait_for(st->done, 5 * tscale(), NULL);
    if (e)
        test_fail(__FILE__, __LINE__, "no callback (%s); log: %s",
                  cio_strerror(e), st->log.buf);
}

static int t_runs_on_loop(void *arg)
{
    (void)arg;
    sig_state st;
    st_init(&st);
    CHECK(!blocked(SIGUSR1));
    CHECK_ERR(cio_add_signal_handler(st.loop, SIGUSR1, on_usr1, &st), 0);
    CHECK(blocked(SIGUSR1)); /* so the kernel queues it for the loop */
    CHECK_EQ(kill(getpid(), SIGUSR1), 0);
    /* Not run inside kill, nor before the loop gets to it. */
    CHECK_LOG(&st.log, "");
    st_await(&st);
    CHECK_ERR(cio_sleep(0.01), 0); /* let the side task finish */
    CHECK_LOG(&st.log, "usr1 soon task");
    CHECK_EQ(st.count[SIGUSR1], 1);
    CHECK(!st.wrong_loop);
    CHECK(!st.in_task_context);
    /* Again: each arrival runs it once more. */
    st_rearm(&st);
    CHECK_EQ(kill(getpid(), SIGUSR1), 0);
    st_await(&st);
    CHECK_EQ(st.count[SIGUSR1], 2);
    CHECK_ERR(cio_sleep(0.01), 0);

    CHECK_EQ(cio_remove_signal_handler(st.loop, SIGUSR1), 1);
    CHECK_EQ(cio_remove_signal_handler(st.loop, SIGUSR1), 0);
    CHECK(!blocked(SIGUSR1));
    CHECK(disposition(SIGUSR1) == SIG_DFL);
    cio_future_unref(st.done);
    return 0;
}

TEST(signal_handler_runs_on_loop) { run_strict(t_runs_on_loop, NULL); }

typedef struct sender {
    int sig;
    double delay;
} sender;

static void *send_later(void *arg)
{
    sender *s = arg;
    usleep((useconds_t)(s->delay * 1e6));
    kill(getpid(), s->sig);
    return NULL;
}

/* A signal from another thread wakes a loop asleep in the kernel. */
static int t_other_thread(void *arg)
{
    (void)arg;
    sig_state st;
    st_init(&st);
    CHECK_ERR(cio_add_signal_handler(st.loop, SIGUSR2, on_usr2, &st), 0);
    /* Made now, the thread inherits SIGUSR2 blocked: the process-wide
     * signal goes to the signalfd, not to the thread's default action. */
    sender s = {SIGUSR2, 0.05};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, send_later, &s) == 0);
    double t0 = mono();
    st_await(&st);
    CHECK(mono() - t0 < 2 * tscale());
    CHECK_EQ(st.count[SIGUSR2], 1);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(cio_remove_signal_handler(st.loop, SIGUSR2), 1);
    cio_future_unref(st.done);
    return 0;
}

TEST(signal_from_another_thread) { run_strict(t_other_thread, NULL); }

static int kill_self(void *arg)
{
    kill(getpid(), *(int *)arg);
    return 0;
}

/* From a cio worker thread (cio_to_thread): they block every signal. */
static int t_from_worker(void *arg)
{
    (void)arg;
    sig_state st;
    st_init(&st);
    CHECK_ERR(cio_add_signal_handler(st.loop, SIGUSR2, on_usr2, &st), 0);
    int sig = SIGUSR2;
    CHECK_ERR(cio_to_thread(kill_self, &sig), 0);
    st_await(&st);
    CHECK_EQ(st.count[SIGUSR2], 1);
    CHECK_EQ(cio_remove_signal_handler(st.loop, SIGUSR2), 1);
    cio_future_unref(st.done);
    return 0;
}

TEST(signal_from_a_worker_thread) { run_strict(t_from_worker, NULL); }

/* Sent while the loop is not running: it waits, pending, for the loop. */
TEST(signal_pending_before_the_loop_runs)
{
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    sig_state st;
    memset(&st, 0, sizeof st);
    CHECK_ERR(cio_future_new(loop, &st.done), 0);
    st.loop = loop;
    CHECK_ERR(cio_add_signal_handler(loop, SIGUSR1, on_usr1_b, &st), 0);
    CHECK_EQ(kill(getpid(), SIGUSR1), 0);
    CHECK(pending(SIGUSR1)); /* blocked, queued */
    CHECK_EQ(st.count[SIGUSR1], 0);
    double end = mono() + 5 * tscale();
    while (st.count[SIGUSR1] == 0) {
        CHECK(mono() < end);
        CHECK(cio_loop_run_once(loop, 0.1) >= 0);
    }
    CHECK_EQ(st.count[SIGUSR1], 1);
    CHECK(!pending(SIGUSR1));
    cio_future_unref(st.done);
    /* Freeing the loop removes its handlers: unblocked again. */
    cio_loop_free(loop);
    CHECK(!blocked(SIGUSR1));
    CHECK(disposition(SIGUSR1) == SIG_DFL);
}

/* Adding again replaces the callback (and its argument). */
static int t_replace(void *arg)
{
    (void)arg;
    sig_state a, b;
    st_init(&a);
    st_init(&b);
    CHECK_ERR(cio_add_signal_handler(a.loop, SIGUSR1, on_usr1_b, &a), 0);
    CHECK_ERR(cio_add_signal_handler(a.loop, SIGUSR1, on_usr2, &b), 0);
    CHECK_EQ(kill(getpid(), SIGUSR1), 0);
    st_await(&b);
    CHECK_ERR(cio_sleep(0.02), 0);
    CHECK_EQ(a.count[SIGUSR1], 0);
    CHECK_EQ(b.count[SIGUSR2], 1); /* on_usr2 counts as SIGUSR2 */
    CHECK_LOG(&a.log, "");
    /* Replaced back, with the first argument. */
    CHECK_ERR(cio_add_signal_handler(a.loop, SIGUSR1, on_usr1_b, &a), 0);
    CHECK_EQ(kill(getpid(), SIGUSR1), 0);
    st_await(&a);
    CHECK_EQ(a.count[SIGUSR1], 1);
    CHECK_EQ(b.count[SIGUSR2], 1);
    CHECK_EQ(cio_remove_signal_handler(a.loop, SIGUSR1), 1);
    cio_future_unref(a.done);
    cio_future_unref(b.done);
    return 0;
}

TEST(signal_handler_replaced) { run_strict(t_replace, NULL); }

/* Several signals on one loop; removing one leaves the others. Real-time
 * signals queue: three sent, three callbacks. */
static int t_several(void *arg)
{
    (void)arg;
    sig_state st;
    st_init(&st);
    int rt = SIGRTMIN + 2;
    CHECK_ERR(cio_add_signal_handler(st.loop, SIGUSR1, on_usr1_b, &st), 0);
    CHECK_ERR(cio_add_signal_handler(st.loop, SIGUSR2, on_usr2, &st), 0);
    CHECK_ERR(cio_add_signal_handler(st.loop, rt, on_rt, &st), 0);
    CHECK_EQ(kill(getpid(), SIGUSR1), 0);
    CHECK_EQ(kill(getpid(), SIGUSR2), 0);
    union sigval v = {0};
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sigqueue(getpid(), rt, v), 0);
    double end = mono() + 5 * tscale();
    while (st.count[SIGUSR1] + st.count[SIGUSR2] + st.count[rt] < 5) {
        CHECK(mono() < end);
        CHECK_ERR(cio_sleep(0.005), 0);
    }
    CHECK_ERR(cio_sleep(0.02), 0);
    CHECK_EQ(st.count[SIGUSR1], 1);
    CHECK_EQ(st.count[SIGUSR2], 1);
    CHECK_EQ(st.count[rt], 3);

    CHECK_EQ(cio_remove_signal_handler(st.loop, SIGUSR1), 1);
    CHECK(!blocked(SIGUSR1));
    CHECK(blocked(SIGUSR2));
    st_rearm(&st);
    CHECK_EQ(kill(getpid(), SIGUSR2), 0);
    st_await(&st);
    CHECK_EQ(st.count[SIGUSR2], 2);
    CHECK_EQ(cio_remove_signal_handler(st.loop, SIGUSR2), 1);
    CHECK_EQ(cio_remove_signal_handler(st.loop, rt), 1);
    cio_future_unref(st.done);
    return 0;
}

TEST(signal_several_signals) { run_strict(t_several, NULL); }

/* --------------------------------------------- the default action back */

static void on_any(void *arg) { ++*(int *)arg; }

/* remove returns 1 then 0, and SIGUSR1 then kills again. */
static void child_remove(void *arg, int fd)
{
    (void)arg;
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    int n = 0;
    CHECK_ERR(cio_add_signal_handler(loop, SIGUSR1, on_any, &n), 0);
    CHECK_EQ(cio_remove_signal_handler(loop, SIGUSR1), 1);
    CHECK_EQ(cio_remove_signal_handler(loop, SIGUSR1), 0);
    mark(fd, 'r');
    kill(getpid(), SIGUSR1);
    mark(fd, 'X'); /* not reached */
    cio_loop_free(loop);
}

TEST(signal_remove_restores_default)
{
    char marks[16];
    int status = in_child(child_remove, NULL, marks, sizeof marks, 5);
    CHECK_KILLED_BY(status, SIGUSR1);
    CHECK_STR(marks, "r");
}

/* A handler that removes itself (a one-shot): the next one kills. */
static void one_shot(void *arg)
{
    cio_loop *loop = arg;
    CHECK_EQ(cio_remove_signal_handler(loop, SIGUSR1), 1);
    cio_loop_stop(loop);
}

static void child_one_shot(void *arg, int fd)
{
    (void)arg;
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    CHECK_ERR(cio_add_signal_handler(loop, SIGUSR1, one_shot, loop), 0);
    kill(getpid(), SIGUSR1);
    CHECK_ERR(cio_loop_run_forever(loop), 0);
    mark(fd, 'h');
    kill(getpid(), SIGUSR1);
    mark(fd, 'X');
    cio_loop_free(loop);
}

TEST(signal_handler_removing_itself)
{
    char marks[16];
    int status = in_child(child_one_shot, NULL, marks, sizeof marks, 5);
    CHECK_KILLED_BY(status, SIGUSR1);
    CHECK_STR(marks, "h");
}

/* Closing the loop (without removing) gives the signal back too. */
static void child_close(void *arg, int fd)
{
    (void)arg;
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    int n = 0;
    CHECK_ERR(cio_add_signal_handler(loop, SIGUSR2, on_any, &n), 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_ERR(cio_add_signal_handler(loop, SIGUSR2, on_any, &n), -ESHUTDOWN);
    mark(fd, 'c');
    kill(getpid(), SIGUSR2);
    mark(fd, 'X');
    cio_loop_free(loop);
}

TEST(signal_loop_close_restores_default)
{
    char marks[16];
    int status = in_child(child_close, NULL, marks, sizeof marks, 5);
    CHECK_KILLED_BY(status, SIGUSR2);
    CHECK_STR(marks, "c");
}

/* ----------------------------------------------------------- errors */

TEST(signal_invalid_signals)
{
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    int n = 0;
    int bad[] = {SIGKILL, SIGSTOP, 0, -1, NSIG, NSIG + 10};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_ERR(cio_add_signal_handler(loop, bad[i], on_any, &n), -EINVAL);
    CHECK_ERR(cio_add_signal_handler(loop, SIGUSR1, NULL, &n), -EINVAL);
    CHECK_ERR(cio_add_signal_handler(NULL, SIGUSR1, on_any, &n), -EINVAL);
    /* None of them changed anything. */
    CHECK(!blocked(SIGUSR1));
    CHECK(!blocked(SIGKILL) && !blocked(SIGSTOP));
    CHECK_ERR(cio_remove_signal_handler(loop, 0), -EINVAL);
    CHECK_ERR(cio_remove_signal_handler(loop, NSIG), -EINVAL);
    CHECK_ERR(cio_remove_signal_handler(loop, -3), -EINVAL);
    CHECK_ERR(cio_remove_signal_handler(NULL, SIGUSR1), -EINVAL);
    CHECK_EQ(cio_remove_signal_handler(loop, SIGUSR1), 0); /* none */
    CHECK_EQ(cio_remove_signal_handler(loop, SIGKILL), 0);
    CHECK_ERR(cio_loop_close(loop), 0);
    CHECK_ERR(cio_add_signal_handler(loop, SIGUSR1, on_any, &n), -ESHUTDOWN);
    cio_loop_free(loop);
}

typedef struct thread_result {
    int add, add_kill, remove, loop_new;
} thread_result;

static void *other_thread_loop(void *arg)
{
    thread_result *r = arg;
    cio_loop *loop;
    r->loop_new = cio_loop_new(&loop, NULL);
    if (r->loop_new)
        return NULL;
    int n = 0;
    r->add = cio_add_signal_handler(loop, SIGUSR1, on_any, &n);
    r->add_kill = cio_add_signal_handler(loop, SIGKILL, on_any, &n);
    r->remove = cio_remove_signal_handler(loop, SIGUSR1);
    cio_loop_free(loop);
    return NULL;
}

/* As asyncio: only the main thread's loop handles signals. */
TEST(signal_not_the_main_thread)
{
    thread_result r = {1, 1, 1, 1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, other_thread_loop, &r) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_ERR(r.loop_new, 0);
    CHECK_ERR(r.add, -EPERM);
    CHECK_ERR(r.add_kill, -EINVAL);
    CHECK_EQ(r.remove, 0);
    CHECK(!blocked(SIGUSR1));
}

/* ------------------------------------------------------- cio_run and ^C */

typedef struct ctrl_c {
    int fd;            /* marks for the parent */
    bool from_worker;  /* send from a cio worker thread, not a callback */
    bool second;       /* send a second SIGINT during the cleanup */
    int uncancel_left; /* what cio_task_uncancel returned */
    int cleanup_sleep; /* what a cleanup sleep returned */
    int main_ret;      /* what main returns after cleaning up */
} ctrl_c;

static void send_sigint(void *arg)
{
    (void)arg;
    kill(getpid(), SIGINT);
}

static int worker_sigint(void *arg)
{
    (void)arg;
    usleep(50000);
    kill(getpid(), SIGINT);
    return 0;
}

static int sigint_sender(void *arg)
{
    (void)arg;
    return cio_to_thread(worker_sigint, NULL);
}

static int ctrl_c_main(void *arg)
{
    ctrl_c *c = arg;
    cio_loop *loop = cio_get_running_loop();
    CHECK(blocked(SIGINT)); /* cio_run handles it */
    cio_task *helper = NULL;
    if (c->from_worker)
        CHECK_ERR(cio_task_new(loop, sigint_sender, NULL, NULL, &helper), 0);
    else
        CHECK_ERR(cio_call_later(loop, 0.05, send_sigint, NULL, NULL), 0);
    double t0 = mono();
    int r = cio_sleep(10);
    CHECK_ERR(r, -ECANCELED);
    CHECK(mono() - t0 < 5 * tscale());
    mark(c->fd, 'C');
    CHECK_EQ(cio_task_cancelling(cio_current_task()), 1);
    c->uncancel_left = cio_task_uncancel(cio_current_task());
    CHECK_EQ(c->uncancel_left, 0);
    /* Cleanup that waits works again. */
    c->cleanup_sleep = cio_sleep(0.02);
    CHECK_ERR(c->cleanup_sleep, 0);
    if (helper) {
        CHECK_ERR(cio_await(helper, NULL), 0);
        cio_future_unref(helper);
    }
    mark(c->fd, 'U');
    if (c->second) {
        kill(getpid(), SIGINT); /* the second Ctrl-C, during cleanup */
        cio_sleep(5);
        mark(c->fd, 'X'); /* not reached */
    }
    return c->main_ret;
}

static void child_ctrl_c(void *arg, int fd)
{
    ctrl_c *c = arg;
    c->fd = fd;
    CHECK(signal(SIGINT, SIG_DFL) != SIG_ERR);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0);
    int r = run_strict_status(ctrl_c_main, c);
    CHECK_ERR(r, c->main_ret);
    /* After cio_run, SIGINT is as it was. */
    CHECK(!blocked(SIGINT));
    CHECK(disposition(SIGINT) == SIG_DFL);
    mark(fd, 'R');
}

/* The first Ctrl-C cancels the main task, which cleans up and gives up:
 * cio_run returns -ECANCELED (Python: KeyboardInterrupt after cleanup). */
TEST(signal_ctrl_c_cancels_main_task)
{
    ctrl_c c = {.main_ret = -ECANCELED};
    char marks[16];
    int status = in_child(child_ctrl_c, &c, marks, sizeof marks, 10);
    CHECK_EXITED_0(status);
    CHECK_STR(marks, "CUR");
}

TEST(signal_ctrl_c_from_another_thread)
{
    ctrl_c c = {.main_ret = -ECANCELED, .from_worker = true};
    char marks[16];
    int status = in_child(child_ctrl_c, &c, marks, sizeof marks, 10);
    CHECK_EXITED_0(status);
    CHECK_STR(marks, "CUR");
}

/* A main task that handles the Ctrl-C and finishes normally: its status
 * is cio_run's (Python's Runner returns the result too). */
TEST(signal_ctrl_c_handled_by_main)
{
    ctrl_c c = {.main_ret = 0};
    char marks[16];
    int status = in_child(child_ctrl_c, &c, marks, sizeof marks, 10);
    CHECK_EXITED_0(status);
    CHECK_STR(marks, "CUR");
}

/* A second Ctrl-C during the cleanup interrupts for real. */
TEST(signal_ctrl_c_twice_kills)
{
    ctrl_c c = {.main_ret = -ECANCELED, .second = true};
    char marks[16];
    int status = in_child(child_ctrl_c, &c, marks, sizeof marks, 10);
    CHECK_KILLED_BY(status, SIGINT);
    CHECK_STR(marks, "CU");
}

/* cio_run returning normally leaves SIGINT at its default: it kills. */
static int quick_main(void *arg)
{
    (void)arg;
    CHECK(blocked(SIGINT));
    return cio_sleep(0.01);
}

static void child_after_run(void *arg, int fd)
{
    (void)arg;
    CHECK(signal(SIGINT, SIG_DFL) != SIG_ERR);
    run_strict(quick_main, NULL);
    CHECK(!blocked(SIGINT));
    mark(fd, 'r');
    kill(getpid(), SIGINT);
    mark(fd, 'X');
}

TEST(signal_ctrl_c_default_after_cio_run)
{
    char marks[16];
    int status = in_child(child_after_run, NULL, marks, sizeof marks, 10);
    CHECK_KILLED_BY(status, SIGINT);
    CHECK_STR(marks, "r");
}

/* SIGINT ignored, or handled by the program: cio_run leaves it alone. */
static volatile sig_atomic_t own_handler_ran;

static void own_handler(int sig)
{
    (void)sig;
    own_handler_ran++;
}

typedef struct alone {
    bool ignore; /* SIG_IGN, else a handler of the program's own */
} alone;

static int alone_main(void *arg)
{
    alone *a = arg;
    CHECK(!blocked(SIGINT));
    CHECK(disposition(SIGINT) == (a->ignore ? SIG_IGN : own_handler));
    CHECK_ERR(cio_call_later(cio_get_running_loop(), 0.02, send_sigint, NULL,
                             NULL),
              0);
    CHECK_ERR(cio_sleep(0.2), 0); /* not cancelled */
    return 0;
}

static void child_alone(void *arg, int fd)
{
    alone *a = arg;
    if (a->ignore) {
        CHECK(signal(SIGINT, SIG_IGN) != SIG_ERR);
    } else {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = own_handler;
        sigemptyset(&sa.sa_mask);
        CHECK(sigaction(SIGINT, &sa, NULL) == 0);
    }
    run_strict(alone_main, a);
    CHECK(disposition(SIGINT) == (a->ignore ? SIG_IGN : own_handler));
    CHECK(!blocked(SIGINT));
    CHECK_EQ(own_handler_ran, a->ignore ? 0 : 1);
    mark(fd, 'o');
}

TEST(signal_ctrl_c_ignored_left_alone)
{
    alone a = {true};
    char marks[16];
    int status = in_child(child_alone, &a, marks, sizeof marks, 10);
    CHECK_EXITED_0(status);
    CHECK_STR(marks, "o");
}

TEST(signal_ctrl_c_own_handler_left_alone)
{
    alone a = {false};
    char marks[16];
    int status = in_child(child_alone, &a, marks, sizeof marks, 10);
    CHECK_EXITED_0(status);
    CHECK_STR(marks, "o");
}

/* cio_run from another thread does not take SIGINT (only the main
 * thread's loop handles signals), and a main-thread handler of its own
 * for another signal still works meanwhile. */
static int signal_thread_main(void *arg)
{
    (void)arg;
    CHECK(!blocked(SIGINT));
    return cio_sleep(0.01);
}

static void *thread_run(void *arg)
{
    *(int *)arg = run_strict_status(signal_thread_main, NULL);
    return NULL;
}

TEST(signal_cio_run_in_another_thread)
{
    int r = 1;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, thread_run, &r) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_ERR(r, 0);
    CHECK(!blocked(SIGINT));
}

/* ------------------------------------------------- failure injection */

static int sig_fault_main(void *arg)
{
    (void)arg;
    cio_loop *loop = cio_get_running_loop();
    int n = 0;
    int r = cio_add_signal_handler(loop, SIGUSR1, on_any, &n);
    if (r)
        return r;
    kill(getpid(), SIGUSR1);
    double end = mono() + 5 * tscale();
    while (n == 0 && mono() < end) {
        r = cio_sleep(0.002);
        if (r)
            break;
    }
    CHECK(r != 0 || n == 1);
    if (pending(SIGUSR1)) { /* the loop failed before reading it */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        struct timespec zero = {0, 0};
        sigtimedwait(&set, NULL, &zero); /* still blocked: take it */
    }
    CHECK_EQ(cio_remove_signal_handler(loop, SIGUSR1), 1);
    return r;
}

static int sig_fault_scenario(void *arg)
{
    int r = cio_run(sig_fault_main, arg);
    /* Whatever failed, nothing is left blocked or pending. */
    CHECK(!blocked(SIGUSR1));
    CHECK(!blocked(SIGINT));
    CHECK(!pending(SIGUSR1));
    return r;
}

TEST_T(signal_fault_alloc, 30)
{
    CHECK(test_fault_loop(CIO__FAULT_ALLOC, 0, sig_fault_scenario, NULL) > 2);
}

TEST_T(signal_fault_emfile, 30)
{
    CHECK(test_fault_loop(CIO__FAULT_SYS, EMFILE, sig_fault_scenario, NULL) >
          2);
}
