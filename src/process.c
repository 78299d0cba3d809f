/* Subprocesses: spawning with posix_spawn, pipes as streams, and exit
 * watching with pidfd (a thread per child where the kernel lacks pidfd).
 *
 * posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK) is fast even from a
 * large process, reports a program that cannot run as an error of the
 * call, and takes the child's set-up as data: which fds it gets, where it
 * runs, its signal mask. Every child is reaped: by the loop when it exits,
 * or by a reaper thread when nobody is left to wait for it.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

bool cio__process_force_thread_watcher; /* tests: as without pidfd */


struct cio_process {
    cio_loop *loop;
    pid_t pid;
    int pidfd;               /* -1: watched by a thread */
    atomic_int refs;         /* the user's and the watcher's */
    cio__bridge exit_news;   /* thread watcher: lands the exit on the loop */
    bool exited;
    int returncode;          /* >= 0 exit status, < 0 -signal */
    pid_t pgid;              /* its own process group, or 0: ours */
    cio_future *exit_fut;    /* done when it exited */
    cio_stream *in, *out, *err;
    cio__list link;          /* in loop->processes while watched */
};

static void process_unref(cio_process *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    cio_future_unref(p->exit_fut);
    cio__free(p);
}

static int decode(const siginfo_t *si)
{
    return si->si_code == CLD_EXITED ? si->si_status : -si->si_status;
}

/* The child exited and was reaped: record it, stop watching. */
static void exited(cio_process *p, int code)
{
    p->exited = true;
    p->returncode = code;
    cio__list_unlink(&p->link);
    if (!cio_future_done(p->exit_fut))
        cio_future_set_result(p->exit_fut, NULL);
    process_unref(p); /* the watcher's */
}

/* ---------------------------------------------------------- the reaper */

static void *reap(void *arg)
{
    pid_t pid = (pid_t)(intptr_t)arg;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return NULL;
}

/* Nobody will wait for this child: a detached thread reaps it, so it never
 * lingers as a zombie. */
static void hand_to_reaper(pid_t pid)
{
    pthread_t t;
    if (cio__sys_thread_create(&t, reap, (void *)(intptr_t)pid) == 0)
        pthread_detach(t);
}

/* ------------------------------------------------------ watching: pidfd */

static void on_pidfd(void *arg)
{
    cio_process *p = arg;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) < 0 ||
        si.si_pid == 0)
        return; /* not yet */
    cio_remove_reader(p->loop, p->pidfd);
    close(p->pidfd);
    p->pidfd = -1;
    exited(p, decode(&si));
}

/* ----------------------------------------- watching: a thread per child */

/* With a thread watching, p has a third reference: the loop's, held by
 * the bridge until the news landed, was dropped, or was orphaned (the
 * thread may drop its own at any time once orphaned). */
static void thread_saw_exit(void *arg)
{
    cio_process *p = arg;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG) == 0 && si.si_pid)
        exited(p, decode(&si)); /* drops the watcher's */
    else
        process_unref(p);
    process_unref(p); /* the bridge's */
}

static void thread_exit_dropped(void *arg)
{
    cio_process *p = arg;
    waitpid(p->pid, NULL, WNOHANG); /* it has exited: reap it now */
    process_unref(p);
    process_unref(p); /* the bridge's */
}

/* The watcher thread: waits for the exit without reaping (the loop reaps,
 * reading the status itself), then lands the news on the loop through a
 * bridge, as executor results do: no allocation, so it cannot fail, and
 * never touching a loop that closed first. */
static void *watch_thread(void *arg)
{
    cio_process *p = arg;
    siginfo_t si;
    while (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOWAIT) < 0 &&
           errno == EINTR)
        ;
    if (!cio__bridge_land(&p->exit_news)) {
        waitpid(p->pid, NULL, 0); /* orphaned: nobody else will reap it */
        process_unref(p);
    }
    return NULL;
}

static void exit_news_orphaned(cio__bridge *b)
{
    process_unref(cio__container_of(b, cio_process, exit_news));
}

static int watch(cio_process *p)
{
    int fd = cio__process_force_thread_watcher
                 ? -ENOSYS
                 : (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (fd < 0 && fd != -ENOSYS)
        fd = -errno;
    if (fd >= 0) {
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        int err = cio_add_reader(p->loop, fd, on_pidfd, p);
        if (err == 0) {
            p->pidfd = fd;
            return 0;
        }
        close(fd);
    }
    /* No pidfd (or it could not be watched): a thread, with a bridge
     * listed on the loop before it starts. */
    atomic_fetch_add(&p->refs, 1); /* the bridge's: the loop side's */
    cio__bridge_open(p->loop, &p->exit_news, thread_saw_exit,
                     thread_exit_dropped, exit_news_orphaned, p);
    pthread_t t;
    int err = cio__sys_thread_create(&t, watch_thread, p);
    if (err) {
        cio__bridge_unopen(&p->exit_news);
        atomic_fetch_sub(&p->refs, 1);
        return err;
    }
    pthread_detach(t);
    return 0;
}

/* Loop close: children still running go to the reaper. */
void cio__processes_close(cio_loop *loop)
{
    cio__list *n;
    while ((n = cio__list_pop_front(&loop->processes))) {
        cio_process *p = cio__container_of(n, cio_process, link);
        cio__list_init(&p->link);
        if (p->pidfd < 0)
            continue; /* a thread watches it: close_posts handles its bridge */
        cio_remove_reader(loop, p->pidfd);
        close(p->pidfd);
        p->pidfd = -1;
        hand_to_reaper(p->pid);
        process_unref(p); /* the watcher's */
    }
}

/* ------------------------------------------------------------ spawning */

typedef struct spawn_plan {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int pipes[3][2];
} spawn_plan;

static void close_fd(int *fd)
{
    if (*fd >= 0)
        cio__sys_close(*fd);
    *fd = -1;
}

static void plan_free(spawn_plan *sp)
{
    for (int i = 0; i < 3; i++) {
        close_fd(&sp->pipes[i][0]);
        close_fd(&sp->pipes[i][1]);
    }
    posix_spawn_file_actions_destroy(&sp->fa);
    posix_spawnattr_destroy(&sp->attr);
}

/* Sets up fd i (0, 1, 2) of the child as `io` says. */
static int plan_stdio(spawn_plan *sp, int i, const cio_stdio *io)
{
    switch (io->kind) {
    case CIO_STDIO_INHERIT:
        return 0;
    case CIO_STDIO_PIPE: {
        int err = pipe2(sp->pipes[i], O_CLOEXEC) < 0 ? -errno : 0;
        if (err)
            return err;
        int child = i == 0 ? sp->pipes[i][0] : sp->pipes[i][1];
        return -posix_spawn_file_actions_adddup2(&sp->fa, child, i);
    }
    case CIO_STDIO_DEVNULL:
        return -posix_spawn_file_actions_addopen(
            &sp->fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
    case CIO_STDIO_FD:
        if (io->fd < 0 || fcntl(io->fd, F_GETFD) < 0)
            return -EBADF;
        return -posix_spawn_file_actions_adddup2(&sp->fa, io->fd, i);
    case CIO_STDIO_STDOUT:
        return i == 2 ? -posix_spawn_file_actions_adddup2(&sp->fa, 1, 2)
                      : -EINVAL;
    }
    return -EINVAL;
}

/* asyncio's start_new_session (setsid in the child) and process_group
 * (setpgid): a session is already a group the child leads, so asking for
 * both is -EINVAL, as is a group below CIO_PROCESS_GROUP_NEW. */
static int plan_group(spawn_plan *sp, const cio_process_options *o,
                      short *flags)
{
    if (o->process_group < CIO_PROCESS_GROUP_NEW ||
        (o->start_new_session && o->process_group))
        return -EINVAL;
    if (o->start_new_session) {
        *flags |= POSIX_SPAWN_SETSID;
    } else if (o->process_group) {
        pid_t g = o->process_group == CIO_PROCESS_GROUP_NEW ? 0
                                                            : o->process_group;
        posix_spawnattr_setpgroup(&sp->attr, g);
        *flags |= POSIX_SPAWN_SETPGROUP;
    }
    return 0;
}

/* The group the child is in, if not ours. */
static pid_t group_of(pid_t pid, const cio_process_options *o)
{
    if (o->start_new_session || o->process_group == CIO_PROCESS_GROUP_NEW)
        return pid;
    return o->process_group > 0 ? o->process_group : 0;
}

static int plan(spawn_plan *sp, const cio_process_options *o)
{
    memset(sp->pipes, 0xff, sizeof sp->pipes);
    posix_spawn_file_actions_init(&sp->fa);
    posix_spawnattr_init(&sp->attr);
    const cio_stdio *io[3] = {&o->in, &o->out, &o->err};
    for (int i = 0; i < 3; i++) {
        int err = plan_stdio(sp, i, io[i]);
        if (err)
            return err;
    }
    if (o->cwd && posix_spawn_file_actions_addchdir_np(&sp->fa, o->cwd))
        return -ENOMEM;
    /* Only 0, 1 and 2 go to the child, whatever else is open. */
    if (posix_spawn_file_actions_addclosefrom_np(&sp->fa, 3))
        return -ENOMEM;
    /* No blocked signals (cio blocks handled ones) and default actions
     * for every signal. Every bit, not sigfillset: glibc leaves its two
     * internal signals (32, 33) out of that, and its posix_spawn then
     * starts the child with them ignored. */
    sigset_t none, all;
    sigemptyset(&none);
    memset(&all, 0xff, sizeof all);
    posix_spawnattr_setsigmask(&sp->attr, &none);
    posix_spawnattr_setsigdefault(&sp->attr, &all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    int err = plan_group(sp, o, &flags);
    posix_spawnattr_setflags(&sp->attr, flags);
    return err;
}

/* Takes the parent's end of the child's fd i (0: stdin, which we write). */
typedef int (*adopt_fn)(cio_process *p, int i, int fd, void *arg);

/* The Process API's adopter: each pipe becomes a stream. */
static int adopt_stream(cio_process *p, int i, int fd, void *arg)
{
    const cio_process_options *opts = arg;
    cio_stream **s = i == 0 ? &p->in : i == 1 ? &p->out : &p->err;
    return cio__stream_pipe(p->loop, fd, i == 0, opts->limit, s);
}

static int adopt_pipes(cio_process *p, spawn_plan *sp, adopt_fn adopt,
                       void *arg)
{
    for (int i = 0; i < 3; i++) {
        int *end = i == 0 ? &sp->pipes[i][1] : &sp->pipes[i][0];
        if (*end < 0)
            continue;
        fcntl(*end, F_SETFL, O_NONBLOCK);
        int err = adopt(p, i, *end, arg);
        if (err)
            return err;
        *end = -1; /* its transport owns it now */
    }
    return 0;
}

/* Whether `file` names a program that can run, as posix_spawnp would look
 * for it. posix_spawnp reports a missing program itself, but not where
 * its vfork-style clone is a plain fork (under valgrind, say): there the
 * child would exit 127 instead. Checking first keeps -ENOENT reliable. */
/* X_OK alone lets a directory through; exec would refuse it (EACCES). */
static int runnable(const char *path)
{
    struct stat st;
    if (access(path, X_OK) < 0)
        return -errno;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -EACCES;
}

static int check_program(const char *file)
{
    if (strchr(file, '/'))
        return runnable(file);
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    int err = -ENOENT;
    char buf[4096];
    for (const char *dir = path;; dir = strchr(dir, ':') + 1) {
        size_t len = strcspn(dir, ":");
        if (snprintf(buf, sizeof buf, "%.*s%s%s", (int)len, dir,
                     len ? "/" : "", file) < (int)sizeof buf) {
            int r = runnable(buf);
            if (r == 0)
                return 0;
            if (r == -EACCES)
                err = -EACCES; /* found, but not runnable: say so */
        }
        if (!dir[len])
            return err;
    }
}

/* The job-control idiom (the parent sets the child's group too): where
 * posix_spawn's clone is a plain fork (qemu-user, valgrind) it returns
 * before the child has called setpgid, and a killpg or getpgid right
 * after would miss the group. The child's own call has happened where the
 * clone is vfork-style: then this fails with EACCES (it has exec'd), as
 * it does once the plain-forked child has exec'd, and that is fine. */
static void settle_group(pid_t pid, const cio_process_options *o)
{
    if (o->process_group)
        (void)setpgid(pid, o->process_group == CIO_PROCESS_GROUP_NEW
                               ? pid
                               : o->process_group);
}

/* What posix_spawn cannot report where its vfork-style clone is a plain
 * fork (under valgrind, say): a program that cannot run, a bad cwd.
 * Checked first, they stay errors of the call. */
static int check_spawnable(const char *file, const cio_process_options *opts)
{
    int err = cio__fault_check_call(CIO__FAULT_SYS, "posix_spawn()");
    if (!err)
        err = check_program(file);
    if (!err && opts->cwd) {
        struct stat st;
        err = stat(opts->cwd, &st) < 0 ? -errno
              : S_ISDIR(st.st_mode)    ? 0
                                       : -ENOTDIR;
    }
    return err;
}

/* A process object for a child about to be spawned: two references (the
 * caller's, and the exit watcher's), its exit future. */
static int process_new(cio_loop *loop, cio_process **out)
{
    cio_process *p = cio__calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->loop = loop;
    p->pidfd = -1;
    atomic_init(&p->refs, 2);
    cio__list_init(&p->link);
    int err = cio_future_new(loop, &p->exit_fut);
    if (err) {
        cio__free(p);
        return err;
    }
    p->exit_fut->label = "process exit";
    *out = p;
    return 0;
}

/* The child runs: our ends of its pipes become streams (or what `adopt`
 * makes of them), and its exit is watched. On failure it is killed and
 * reaped in the background, since we could not talk to it. */
static int take_over(cio_process *p, spawn_plan *sp,
                     const cio_process_options *opts, adopt_fn adopt,
                     void *adopt_arg)
{
    close_fd(&sp->pipes[0][0]); /* the child has its ends */
    close_fd(&sp->pipes[1][1]);
    close_fd(&sp->pipes[2][1]);
    int err = adopt_pipes(p, sp, adopt ? adopt : adopt_stream,
                          adopt ? adopt_arg : (void *)opts);
    if (!err)
        err = watch(p);
    if (err) {
        kill(p->pid, SIGKILL);
        hand_to_reaper(p->pid);
        atomic_store(&p->refs, 1);
    }
    return err;
}

static int spawn(const char *file, char *const argv[],
                 const cio_process_options *opts, adopt_fn adopt,
                 void *adopt_arg, cio_process **out)
{
    static const cio_process_options defaults;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cio__current)
        return cio__no_task("cio_create_subprocess_*");
    if (!file || !argv)
        return -EINVAL;
    if (!opts)
        opts = &defaults;
    cio_process *p;
    int err = check_spawnable(file, opts);
    if (!err)
        err = process_new(cio__current->fut.loop, &p);
    if (err)
        return err;
    spawn_plan sp;
    err = plan(&sp, opts);
    if (!err)
        err = -posix_spawnp(&p->pid, file, &sp.fa, &sp.attr, argv,
                            opts->env ? opts->env : environ);
    if (err) {
        plan_free(&sp);
        cio_future_unref(p->exit_fut);
        cio__free(p);
        return err;
    }
    p->pgid = group_of(p->pid, opts);
    settle_group(p->pid, opts);
    err = take_over(p, &sp, opts, adopt, adopt_arg);
    plan_free(&sp);
    if (err) {
        cio_process_free(p);
        return err;
    }
    cio__list_push_back(&p->loop->processes, &p->link);
    *out = p;
    return 0;
}

int cio_create_subprocess_exec(const char *const *argv,
                               const cio_process_options *opts,
                               cio_process **p)
{
    if (!argv || !argv[0])
        return p ? (*p = NULL, -EINVAL) : -EINVAL;
    return spawn(argv[0], (char *const *)argv, opts, NULL, NULL, p);
}

int cio_create_subprocess_shell(const char *cmd,
                                const cio_process_options *opts,
                                cio_process **p)
{
    if (!cmd)
        return p ? (*p = NULL, -EINVAL) : -EINVAL;
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return spawn(argv[0], (char *const *)argv, opts, NULL, NULL, p);
}

/* ---------------------------------------------------------- the object */

pid_t cio_process_pid(const cio_process *p) { return p ? p->pid : -1; }

int cio_process_returncode(const cio_process *p, int *code)
{
    if (!p || !p->exited)
        return 0;
    if (code)
        *code = p->returncode;
    return 1;
}

cio_stream *cio_process_stdin(cio_process *p) { return p ? p->in : NULL; }
cio_stream *cio_process_stdout(cio_process *p) { return p ? p->out : NULL; }
cio_stream *cio_process_stderr(cio_process *p) { return p ? p->err : NULL; }

int cio_process_wait(cio_process *p, int *code)
{
    if (!p)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task(__func__);
    if (!p->exited) {
        /* Shielded: cancelling this wait leaves the child watched. */
        cio_future *mine;
        int r = cio_shield(p->exit_fut, &mine);
        if (r)
            return r;
        mine->label = "process exit"; /* what the task dump says */
        r = cio__await_owned(mine, NULL); /* mine goes with the wait */
        if (r)
            return r;
    }
    if (code)
        *code = p->returncode;
    return 0;
}

typedef struct comm {
    cio_process *p;
    const void *input;
    size_t n;
    char *data[2];
    ssize_t len[2];
} comm;

static int comm_feed(void *arg)
{
    comm *c = arg;
    cio_stream *s = c->p->in;
    int r = c->n ? cio_stream_write(s, c->input, c->n) : 0;
    if (!r && c->n)
        r = cio_stream_drain(s);
    cio_stream_close(s);
    /* A child that exits without reading all of it is not an error, as in
     * asyncio (BrokenPipeError and ConnectionResetError are ignored); a
     * pipe lost to anything else is (writes report that error). */
    return r == -EPIPE || r == -ECONNRESET ? 0 : r;
}

static int comm_read(cio_stream *s, comm *c, int i)
{
    c->len[i] = cio_stream_read_all(s, &c->data[i]);
    return c->len[i] < 0 ? (int)c->len[i] : 0;
}

static int comm_out(void *arg) { return comm_read(((comm *)arg)->p->out, arg, 0); }
static int comm_err(void *arg) { return comm_read(((comm *)arg)->p->err, arg, 1); }

/* Starts communicate's tasks: the stdin feeder and a reader per output
 * pipe (every pipe is read, wanted or not: a child blocked writing to an
 * unread pipe would never exit). Returns how many started; *r the error
 * that stopped the others, if any. */
static size_t comm_start(comm *c, cio_task *tasks[3], int *r)
{
    cio_task_fn fns[3] = {comm_feed, comm_out, comm_err};
    cio_stream *pipes[3] = {c->p->in, c->p->out, c->p->err};
    size_t nt = 0;
    *r = 0;
    for (int i = 0; i < 3 && !*r; i++) {
        if (pipes[i])
            *r = cio_task_new(NULL, fns[i], c, NULL, &tasks[nt]);
        if (pipes[i] && !*r)
            nt++;
    }
    return nt;
}

/* Hands one pipe's bytes to the caller (who then owns them) or frees them. */
static void comm_give(char *data, ssize_t len, char **to, size_t *tolen)
{
    if (!to) {
        cio__free(data);
        return;
    }
    *to = data;
    if (tolen)
        *tolen = len > 0 ? (size_t)len : 0;
}

int cio_process_communicate(cio_process *p, const void *input, size_t n,
                            char **out, size_t *outlen, char **err,
                            size_t *errlen)
{
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    if (!p)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task(__func__);
    if ((n && (!input || !p->in)))
        return -EINVAL;
    comm c = {p, input, n, {NULL, NULL}, {0, 0}};
    cio_task *tasks[3];
    int r;
    size_t nt = comm_start(&c, tasks, &r);
    /* The feeder closes stdin. One that never ran (its stack could not be
     * made) closes nothing, and the child would wait for an EOF that never
     * comes, so stdin is closed here once the feeder is done, whatever its
     * fate. The readers run meanwhile. */
    if (p->in && nt) {
        cio_await(tasks[0], NULL); /* its status: from gather, below */
        if (cio_future_done(tasks[0]))
            cio_stream_close(p->in);
    }
    /* return_exceptions: gather waits for every one of them (even when we
     * are cancelled: it cancels them and still waits), so none outlives
     * `c`, which lives on this stack. */
    cio_result res[3];
    int g = nt ? cio_gather(tasks, nt, 1, res) : 0;
    for (size_t i = 0; i < nt; i++) {
        if (!r && !g && res[i].status < 0)
            r = res[i].status;
        cio_future_unref(tasks[i]);
    }
    r = r ? r : g;
    if (!r)
        r = cio_process_wait(p, NULL);
    if (r) {
        cio__free(c.data[0]);
        cio__free(c.data[1]);
        return r;
    }
    comm_give(c.data[0], c.len[0], out, outlen);
    comm_give(c.data[1], c.len[1], err, errlen);
    return 0;
}

int cio_process_send_signal(cio_process *p, int sig)
{
    if (!p || sig < 0 || sig >= NSIG)
        return -EINVAL;
    if (p->exited)
        return -ESRCH;
    /* Through the pidfd when there is one: never a recycled pid. */
    long r = p->pidfd >= 0
                 ? syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0)
                 : kill(p->pid, sig);
    return r < 0 ? -errno : 0;
}

int cio_process_killpg(cio_process *p, int sig)
{
    if (!p || sig < 0 || sig >= NSIG || p->pgid <= 0)
        return -EINVAL;
    /* Also once the child is gone: what it left behind is the point. */
    return killpg(p->pgid, sig) < 0 ? -errno : 0;
}

int cio_process_terminate(cio_process *p)
{
    return cio_process_send_signal(p, SIGTERM);
}

int cio_process_kill(cio_process *p) { return cio_process_send_signal(p, SIGKILL); }

void cio_process_free(cio_process *p)
{
    if (!p)
        return;
    cio_stream_free(p->in);
    cio_stream_free(p->out);
    cio_stream_free(p->err);
    p->in = p->out = p->err = NULL;
    process_unref(p); /* the watcher's reference frees it at the exit */
}

/* ------------------------------------------------- the low-level form
 * asyncio's loop.subprocess_exec: a subprocess transport and a protocol
 * told of each pipe's data and end (by fd number) and of the exit;
 * connection_lost comes once the child exited and every pipe closed. */

typedef struct pipe_ctx {
    cio_subprocess_transport *st;
    int fd;
} pipe_ctx;

struct cio_subprocess_transport {
    cio_process *p;
    cio_subprocess_protocol proto;
    void *ctx;
    cio_transport *pipes[3];
    pipe_ctx pc[3];
    int open_pipes;
    bool exited, lost, closed;
    bool failed;               /* creation failed: no callbacks, just go */
    bool in_lost;              /* inside connection_lost */
    cio__handle made;          /* connection_made, soon after the spawn */
};

static void sub_free(cio_subprocess_transport *st)
{
    cio__handle_unschedule(&st->made);
    cio_process_free(st->p);
    cio__free(st);
}

static void sub_maybe_lost(cio_subprocess_transport *st)
{
    if (st->lost || !st->exited || st->open_pipes)
        return;
    st->lost = true;
    if (st->failed) {
        cio__free(st); /* its process object is already gone */
        return;
    }
    st->in_lost = true; /* a close from the callback must not free st */
    if (st->proto.connection_lost)
        st->proto.connection_lost(st, 0, st->ctx);
    st->in_lost = false;
    if (st->closed)
        sub_free(st);
}

static void sub_data(cio_transport *t, const char *data, size_t n, void *ctx)
{
    (void)t;
    pipe_ctx *pc = ctx;
    if (pc->st->proto.pipe_data_received)
        pc->st->proto.pipe_data_received(pc->st, pc->fd, data, n,
                                         pc->st->ctx);
}

static void sub_pipe_lost(cio_transport *t, int error, void *ctx)
{
    (void)t;
    pipe_ctx *pc = ctx;
    cio_subprocess_transport *st = pc->st;
    st->pipes[pc->fd] = NULL;
    st->open_pipes--;
    if (st->proto.pipe_connection_lost && !st->failed)
        st->proto.pipe_connection_lost(st, pc->fd, error, st->ctx);
    sub_maybe_lost(st);
}

static const cio_protocol sub_pipe_protocol = {
    .data_received = sub_data,
    .connection_lost = sub_pipe_lost,
};

static int adopt_transport(cio_process *p, int i, int fd, void *arg)
{
    cio_subprocess_transport *st = arg;
    st->pc[i] = (pipe_ctx){st, i};
    int err = cio__pipe_transport(p->loop, fd, i == 0, &sub_pipe_protocol,
                                  &st->pc[i], &st->pipes[i]);
    if (err == 0)
        st->open_pipes++;
    return err;
}

static void sub_exited(cio_future *f, void *arg)
{
    (void)f;
    cio_subprocess_transport *st = arg;
    st->exited = true;
    if (st->proto.process_exited)
        st->proto.process_exited(st, st->ctx);
    sub_maybe_lost(st);
}

static void sub_made(void *arg)
{
    cio_subprocess_transport *st = arg;
    if (st->proto.connection_made)
        st->proto.connection_made(st, st->ctx);
}

static int sub_spawn(const char *file, char *const argv[],
                     const cio_process_options *opts,
                     const cio_subprocess_protocol *proto, void *ctx,
                     cio_subprocess_transport **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!proto)
        return -EINVAL;
    if (!cio__current)
        return cio__no_task("cio_subprocess_*");
    cio_subprocess_transport *st = cio__calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->proto = *proto;
    st->ctx = ctx;
    cio__handle_init(&st->made, cio__current->fut.loop, sub_made, st);
    int err = spawn(file, argv, opts, adopt_transport, st, &st->p);
    if (!err)
        err = cio_future_add_done_callback(st->p->exit_fut, sub_exited, st);
    if (err) {
        if (st->p) {
            cio_process_kill(st->p);
            cio_process_free(st->p);
        }
        /* Pipes made before the failure still call back into st when they
         * close: st goes when the last one did, telling nobody. */
        st->failed = st->exited = st->closed = true;
        for (int i = 0; i < 3; i++)
            if (st->pipes[i])
                cio_transport_abort(st->pipes[i]);
        if (!st->open_pipes) /* else the last pipe to close frees it */
            cio__free(st);
        return err;
    }
    /* connection_made first, then the pipes' data, as in asyncio. */
    cio__handle_schedule(&st->made);
    *out = st;
    return 0;
}

int cio_subprocess_exec(const char *const *argv,
                        const cio_process_options *opts,
                        const cio_subprocess_protocol *proto, void *ctx,
                        cio_subprocess_transport **t)
{
    if (!argv || !argv[0])
        return t ? (*t = NULL, -EINVAL) : -EINVAL;
    return sub_spawn(argv[0], (char *const *)argv, opts, proto, ctx, t);
}

int cio_subprocess_shell(const char *cmd, const cio_process_options *opts,
                         const cio_subprocess_protocol *proto, void *ctx,
                         cio_subprocess_transport **t)
{
    if (!cmd)
        return t ? (*t = NULL, -EINVAL) : -EINVAL;
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return sub_spawn(argv[0], (char *const *)argv, opts, proto, ctx, t);
}

pid_t cio_subprocess_get_pid(const cio_subprocess_transport *t)
{
    return t ? t->p->pid : -1;
}

int cio_subprocess_get_returncode(const cio_subprocess_transport *t,
                                  int *code)
{
    return t ? cio_process_returncode(t->p, code) : 0;
}

cio_transport *cio_subprocess_get_pipe_transport(cio_subprocess_transport *t,
                                                 int fd)
{
    return t && fd >= 0 && fd < 3 ? t->pipes[fd] : NULL;
}

int cio_subprocess_send_signal(cio_subprocess_transport *t, int sig)
{
    return t ? cio_process_send_signal(t->p, sig) : -EINVAL;
}

/* asyncio's close: the pipes close, a child still running is killed; the
 * transport is freed once connection_lost has been called. */
void cio_subprocess_close(cio_subprocess_transport *t)
{
    if (!t || t->closed)
        return;
    t->closed = true;
    for (int i = 0; i < 3; i++)
        if (t->pipes[i])
            cio_transport_close(t->pipes[i]);
    if (!t->p->exited)
        cio_process_kill(t->p);
    if (t->lost && !t->in_lost)
        sub_free(t);
}
