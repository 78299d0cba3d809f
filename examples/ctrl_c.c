/* Ctrl-C and cio_run, as asyncio.run (Python 3.11) handles it.
 *
 * With no SIGINT handler of the program's own, cio_run takes SIGINT:
 *   - the first Ctrl-C cancels the main task: the call it waits in returns
 *     -ECANCELED, it cleans up, and cio_run returns what it returns;
 *   - a second one, while that cleanup runs, interrupts the program for
 *     real (SIGINT's default action): for a cleanup that hangs.
 *
 * Pressing Ctrl-C makes the terminal send SIGINT; so that the example
 * runs by itself, a timer sends it with kill(getpid(), SIGINT). Each
 * scenario runs in a child process, since the second one ends it, and
 * the parent says how the child ended.
 */
#define _POSIX_C_SOURCE 200809L /* fork, kill, waitpid */
#include <cio.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void press_ctrl_c(void *arg)
{
    (void)arg;
    printf("  (Ctrl-C)\n");
    kill(getpid(), SIGINT); /* what the terminal does on Ctrl-C */
}

/* The main task of a tool: works until cancelled, then cleans up, which
 * takes 0.3 s. presses: how many Ctrl-Cs come, 0.1 s apart. */
static int main_task(void *arg)
{
    int presses = *(const int *)arg;
    cio_loop *loop = cio_get_running_loop();
    for (int i = 0; i < presses; i++) {
        int err = cio_call_later(loop, 0.1 * (i + 1), press_ctrl_c, NULL, NULL);
        if (err)
            return err;
    }
    printf("  working; press Ctrl-C\n");
    int err = cio_sleep(3600); /* -ECANCELED after Ctrl-C */
    printf("  main task: %s; cleaning up\n", cio_strerror(err));
    /* Cancellation sticks: uncancel, so the cleanup's own waits can wait. */
    cio_task_uncancel(cio_current_task());
    int cleanup = cio_sleep(0.3); /* flushing, saying goodbye, ... */
    printf("  main task: clean\n");
    return err ? err : cleanup;
}

/* The child: the whole program, as it would run in a terminal. */
static int child(int presses)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* each line out before a kill */
    /* A shell starts background jobs with SIGINT ignored, and cio_run
     * leaves a choice made before it alone: put back the terminal's. */
    signal(SIGINT, SIG_DFL);
    int err = cio_run(main_task, &presses);
    printf("  cio_run returned: %s\n", cio_strerror(err));
    return err == -ECANCELED ? 130 : err ? 1 : 0; /* 130: the shell's 128 + 2 */
}

static int scenario(const char *title, int presses)
{
    printf("%s\n", title);
    fflush(stdout); /* or the child would print our buffer again */
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        exit(child(presses));
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -errno;
    if (WIFEXITED(status))
        printf("  the program exited with status %d\n", WEXITSTATUS(status));
    else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGINT)
        printf("  the program was killed by SIGINT\n");
    else
        return -EPROTO;
    return 0;
}

int main(void)
{
    int err = scenario("one Ctrl-C: the main task is cancelled, cleans up", 1);
    if (!err)
        err = scenario("two Ctrl-Cs: the second one interrupts the cleanup", 2);
    if (err)
        fprintf(stderr, "ctrl_c: %s\n", cio_strerror(err));
    return err ? 1 : 0;
}
