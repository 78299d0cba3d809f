/* Calling blocking code without blocking the loop: run_in_executor.
 *
 * Some calls block no matter what: a library that sleeps, a long
 * computation, reading a big file. Called from a task they would freeze
 * the whole event loop - every other task would stop. cio_run_in_executor
 * runs such a function in a worker thread instead and gives the loop a
 * future; the task awaits it like anything else.
 *
 * Here three blocking calls run at once in worker threads while a
 * heartbeat task keeps beating on the loop, proving it never stalls.
 * (Heartbeats go to stderr, so the checked output below stays the same
 * from run to run; `make demo` shows both.)
 */
#define _POSIX_C_SOURCE 200809L
#include <cio.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- blocking functions: they run in worker threads, never on the loop */

typedef struct checksum_job {
    const char *path;
    uint32_t sum; /* the result, written by the worker */
} checksum_job;

/* A slow checksum (FNV-1a, a byte at a time) of a whole file. */
static int checksum_file(void *arg)
{
    checksum_job *job = arg;
    int fd = open(job->path, O_RDONLY);
    if (fd < 0)
        return -1;
    uint32_t h = 2166136261u;
    unsigned char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) /* blocking reads */
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 16777619u;
    close(fd);
    job->sum = h;
    return 0;
}

/* Stands for a library call that blocks for a while. */
static int blocking_library_call(void *arg)
{
    int ms = *(int *)arg;
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
    return ms;
}

/* ---- the heartbeat: a task on the loop, beating every 50 ms */

static double last_beat, longest_gap;
static int beats;

static int heartbeat(void *arg)
{
    (void)arg;
    last_beat = now();
    while (cio_sleep(0.05) == 0) { /* returns -ECANCELED when stopped */
        double t = now();
        if (t - last_beat > longest_gap)
            longest_gap = t - last_beat;
        last_beat = t;
        beats++;
        fprintf(stderr, "  (heartbeat %d)\n", beats);
    }
    return 0;
}

static int write_test_file(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    for (uint32_t i = 0; i < 2 * 1024 * 1024; i++) /* 8 MiB */
        fwrite(&i, sizeof i, 1, f);
    return fclose(f);
}

static int main_task(void *arg)
{
    const char *path = arg;
    cio_task *beat;
    int err = cio_create_task(heartbeat, NULL, &beat);
    if (err)
        return err;

    checksum_job job = {path, 0};
    int ms1 = 300, ms2 = 400;
    cio_future *calls[3] = {NULL, NULL, NULL};
    printf("starting 3 blocking calls in worker threads\n");
    cio_run_in_executor(NULL, NULL, checksum_file, &job, &calls[0]);
    cio_run_in_executor(NULL, NULL, blocking_library_call, &ms1, &calls[1]);
    cio_run_in_executor(NULL, NULL, blocking_library_call, &ms2, &calls[2]);

    cio_result results[3];
    double t0 = now();
    err = cio_gather(calls, 3, 0, results); /* the loop keeps running */
    double took = now() - t0;
    if (err == 0) {
        printf("  checksum of the 8 MiB file: %08x\n", (unsigned)job.sum);
        printf("  blocking library call 1 returned %d\n", results[1].status);
        printf("  blocking library call 2 returned %d\n", results[2].status);
        printf("all three took %.1f s together; one after another, the two "
               "sleeps alone would take %.1f s\n", took, (ms1 + ms2) / 1000.0);
    }
    for (int i = 0; i < 3; i++)
        cio_future_unref(calls[i]);

    cio_task_cancel(beat);
    cio_await(beat, NULL);
    cio_future_unref(beat);
    printf("the heartbeat beat %d times meanwhile\n", beats);
    printf("the loop never stalled: %s\n", longest_gap < 0.5 ? "yes" : "no");
    return err;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    char path[] = "/tmp/cio-blocking-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || close(fd) < 0 || write_test_file(path) < 0) {
        perror("test file");
        return 1;
    }
    int err = cio_run(main_task, path);
    unlink(path);
    if (err) {
        fprintf(stderr, "failed: %s\n", cio_strerror(err));
        return 1;
    }
    return 0;
}
