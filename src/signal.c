/* Unix signals as loop callbacks, through one signalfd per loop.
 *
 * A handled signal is blocked in the main thread, so the kernel queues it
 * for the signalfd instead of running a handler; the loop reads the
 * signalfd like any other fd and runs the callbacks. Unblocking and the
 * default disposition come back when the handler is removed.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct sig_handler {
    cio_callback cb;
    void *arg;
} sig_handler;

struct cio__signals {
    int fd;                     /* the signalfd, -1 until the first handler */
    sigset_t handled;
    sig_handler handlers[NSIG];
};

bool cio__main_thread(void) { return getpid() == (pid_t)syscall(SYS_gettid); }

static void on_signals(void *arg)
{
    cio_loop *loop = arg;
    struct cio__signals *s = loop->signals;
    struct signalfd_siginfo info[16];
    ssize_t n = read(s->fd, info, sizeof info);
    for (ssize_t i = 0; i < n / (ssize_t)sizeof info[0]; i++) {
        unsigned sig = info[i].ssi_signo;
        if (sig < NSIG && s->handlers[sig].cb)
            s->handlers[sig].cb(s->handlers[sig].arg);
    }
}

int cio_add_signal_handler(cio_loop *loop, int signum, cio_callback cb,
                           void *arg)
{
    int err = cio__loop_check(loop);
    if (err)
        return err;
    if (!cb || signum <= 0 || signum >= NSIG || signum == SIGKILL ||
        signum == SIGSTOP)
        return -EINVAL;
    if (!cio__main_thread())
        return -EPERM;
    struct cio__signals *s = loop->signals;
    if (!s) {
        s = cio__calloc(1, sizeof *s);
        if (!s)
            return -ENOMEM;
        s->fd = -1;
        sigemptyset(&s->handled);
        loop->signals = s;
    }
    sigset_t set = s->handled;
    sigaddset(&set, signum);
    int fd = signalfd(s->fd, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (s->fd < 0) {
        err = cio_add_reader(loop, fd, on_signals, loop);
        if (err) {
            close(fd);
            return err;
        }
        s->fd = fd;
    }
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signum);
    pthread_sigmask(SIG_BLOCK, &one, NULL);
    s->handled = set;
    s->handlers[signum] = (sig_handler){cb, arg};
    return 0;
}

int cio_remove_signal_handler(cio_loop *loop, int signum)
{
    if (!loop || signum <= 0 || signum >= NSIG)
        return -EINVAL;
    struct cio__signals *s = loop->signals;
    if (!s || !s->handlers[signum].cb)
        return 0;
    s->handlers[signum].cb = NULL;
    sigdelset(&s->handled, signum);
    if (s->fd >= 0)
        (void)signalfd(s->fd, &s->handled, 0);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signum);
    /* One that arrived while the handler was in place was the handler's,
     * even if the loop never got to read it: it is dropped here, never
     * left pending to act by default (and kill us) once unblocked. */
    struct timespec zero = {0, 0};
    while (sigtimedwait(&one, NULL, &zero) == signum)
        ;
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    return 1;
}

/* Loop close: every handler goes, the signals act as before. */
void cio__signals_close(cio_loop *loop)
{
    struct cio__signals *s = loop->signals;
    if (!s)
        return;
    for (int sig = 1; sig < NSIG; sig++)
        if (s->handlers[sig].cb)
            cio_remove_signal_handler(loop, sig);
    if (s->fd >= 0) {
        cio_remove_reader(loop, s->fd);
        close(s->fd);
    }
    cio__free(s);
    loop->signals = NULL;
}
