/* The runner: forks each registered test, enforces its time limit, checks
 * that nothing leaked, prints one line per test and the closing line
 * "N passed, N failed[, N skipped]". `run [pattern]` runs tests whose name
 * contains pattern. */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_SKIP = 77 };

static test_case *tests, **tests_tail = &tests;

void test_register(test_case *tc)
{
    *tests_tail = tc;
    tests_tail = &tc->next;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(NULL);
    _exit(1);
}

void test_skip(const char *why)
{
    fprintf(stderr, "    skipped: %s\n", why);
    fflush(NULL);
    _exit(EXIT_SKIP);
}

void test_log_add(test_log *log, const char *fmt, ...)
{
    va_list ap;
    if (log->len && log->len < sizeof log->buf - 1)
        log->buf[log->len++] = ' ';
    va_start(ap, fmt);
    int n = vsnprintf(log->buf + log->len, sizeof log->buf - log->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        log->len += (size_t)n;
    if (log->len >= sizeof log->buf)
        log->len = sizeof log->buf - 1;
}

int test_open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static bool slow_mode(void)
{
    const char *s = getenv("CIO_TEST_SLOW");
    return s && *s && strcmp(s, "0") != 0;
}

long test_scaled(long n) { return slow_mode() ? n / 20 : n; }

int test_fault_loop(unsigned kinds, int err, int (*scenario)(void *),
                    void *arg)
{
    long base_allocs = cio__alloc_live();
    int base_fds = test_open_fds();
    for (int n = 1;; n++) {
        cio__fault_arm(kinds, n, err);
        int r = scenario(arg);
        bool fired = cio__fault_fired();
        cio__fault_disarm();
        if (cio__alloc_live() != base_allocs)
            test_fail(__FILE__, __LINE__, "failure %d leaked %ld allocations",
                      n, cio__alloc_live() - base_allocs);
        if (test_open_fds() != base_fds)
            test_fail(__FILE__, __LINE__, "failure %d leaked %d fds", n,
                      test_open_fds() - base_fds);
        if (!fired) {
            if (r != 0)
                test_fail(__FILE__, __LINE__, "untouched run returned %d (%s)",
                          r, cio_strerror(r));
            return n - 1;
        }
        if (r > 0)
            test_fail(__FILE__, __LINE__, "failure %d: returned %d", n, r);
    }
}

/* In the child: run the test, then check it left nothing behind. */
static void run_child(test_case *tc)
{
    long allocs = cio__alloc_live();
    int fds = test_open_fds();
    tc->fn();
    if (cio__alloc_live() != allocs)
        test_fail(tc->name, 0, "leaked %ld allocations",
                  cio__alloc_live() - allocs);
    if (test_open_fds() != fds)
        test_fail(tc->name, 0, "leaked %d file descriptors",
                  test_open_fds() - fds);
    fflush(NULL);
    exit(0);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads the child's output until it closes the pipe or the deadline. */
static size_t collect(int fd, char *buf, size_t cap, double deadline,
                      bool *timed_out)
{
    size_t len = 0;
    for (;;) {
        int ms = (int)((deadline - now()) * 1e3);
        if (ms <= 0) {
            *timed_out = true;
            return len;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0)
            continue;
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n <= 0)
            return len;
        size_t take = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
        memcpy(buf + len, tmp, take);
        len += take;
    }
}

/* Returns 0 passed, 1 failed, 2 skipped. */
static int run_one(test_case *tc, double scale)
{
    int p[2];
    if (pipe(p) < 0) {
        perror("pipe");
        exit(2);
    }
    fflush(NULL);
    double started = now();
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[1]);
        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGPIPE, SIG_DFL); /* tests check that cio never raises it */
        run_child(tc);
    }
    close(p[1]);
    static char out[65536];
    bool timed_out = false;
    size_t len = collect(p[0], out, sizeof out, now() + tc->timeout * scale,
                         &timed_out);
    out[len] = 0;
    close(p[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    int verdict = 1;
    if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        verdict = 0;
    else if (!timed_out && WIFEXITED(status) &&
             WEXITSTATUS(status) == EXIT_SKIP)
        verdict = 2;
    double took = now() - started;
    printf("%-4s %s", verdict == 0 ? "ok" : verdict == 2 ? "skip" : "FAIL",
           tc->name);
    if (took >= 1.0) /* where a slow configuration spends its time */
        printf(" (%.1f s)", took);
    printf("\n");
    if (verdict != 0 && len)
        fputs(out, stdout);
    if (timed_out)
        printf("    timed out after %.0f s\n", tc->timeout * scale);
    else if (WIFSIGNALED(status))
        printf("    killed by signal %d (%s)\n", WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else if (verdict == 1 && WEXITSTATUS(status) != 1)
        printf("    exited with status %d\n", WEXITSTATUS(status));
    fflush(stdout);
    return verdict;
}

int main(int argc, char **argv)
{
    const char *pattern = argc > 1 ? argv[1] : "";
    double scale = slow_mode() ? 10 : 1;
    int counts[3] = {0, 0, 0};
    signal(SIGPIPE, SIG_IGN);
    for (test_case *tc = tests; tc; tc = tc->next)
        if (strstr(tc->name, pattern))
            counts[run_one(tc, scale)]++;
    const char *backend = getenv("CIO_BACKEND");
    printf("%s%s%d passed, %d failed", backend ? backend : "",
           backend ? ": " : "", counts[0], counts[1]);
    if (counts[2])
        printf(", %d skipped", counts[2]);
    printf("\n");
    return counts[1] ? 1 : 0;
}
