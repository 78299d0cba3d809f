/* spawn_process: N /bin/true children (default 1,000), 16 at a time: a
 * pool of 16 tasks, each starting a child, waiting for its exit and
 * starting the next. Processes per second, from the first spawn to the
 * last exit. */
#include "bench.h"
#include "cio.h"

enum { AT_ONCE = 16 };

static long started, total;

static int worker(void *arg)
{
    (void)arg;
    static const char *const argv[] = {"/bin/true", NULL};
    while (started < total) {
        started++;
        cio_process *p;
        int err = cio_create_subprocess_exec(argv, NULL, &p);
        if (err)
            return err;
        int code = -1;
        err = cio_process_wait(p, &code);
        cio_process_free(p);
        if (err)
            return err;
        if (code != 0)
            return -1;
    }
    return 0;
}

static int bench_main(void *arg)
{
    total = *(long *)arg;
    cio_task *pool[AT_ONCE];
    double t0 = bench_now_ns();
    for (int i = 0; i < AT_ONCE; i++)
        if (cio_create_task(worker, NULL, &pool[i]) != 0)
            return -1;
    int err = cio_gather(pool, AT_ONCE, 0, NULL);
    double t1 = bench_now_ns();
    for (int i = 0; i < AT_ONCE; i++)
        cio_future_unref(pool[i]);
    if (err) {
        fprintf(stderr, "spawn_process: %s\n", cio_strerror(err));
        return err;
    }
    bench_report("spawn_process", total / ((t1 - t0) / 1e9), "procs/s");
    return 0;
}

int main(int argc, char **argv)
{
    long n = bench_count(argc, argv, 1000);
    return cio_run(bench_main, &n) == 0 ? 0 : 1;
}
