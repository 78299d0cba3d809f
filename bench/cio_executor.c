/* executor: N cio_run_in_executor round trips of a trivial function on the
 * loop's default executor, 64 in flight at a time: each completion (a done
 * callback on the loop thread) submits the next. ns per call, from the
 * first submit to the last delivery. argv[1] overrides N. */
#include "bench.h"
#include "cio.h"

enum { IN_FLIGHT = 64 };

static long n, submitted, completed;
static cio_future *all_done;
static int failure;

static int trivial(void *arg)
{
    (void)arg;
    return 1;
}

static void on_done(cio_future *f, void *arg);

static int submit_one(void)
{
    cio_future *f;
    int err = cio_run_in_executor(NULL, NULL, trivial, NULL, &f);
    if (err)
        return err;
    submitted++;
    err = cio_future_add_done_callback(f, on_done, NULL);
    if (err)
        cio_future_unref(f);
    return err;
}

static void on_done(cio_future *f, void *arg)
{
    (void)arg;
    int r = cio_future_result(f, NULL);
    cio_future_unref(f);
    if (r != 1 && !failure)
        failure = r < 0 ? r : -EPROTO;
    completed++;
    if (submitted < n && !failure) {
        int err = submit_one();
        if (err && !failure)
            failure = err;
    }
    if (completed == submitted && (submitted == n || failure))
        cio_future_set_result(all_done, NULL);
}

static int bench_main(void *arg)
{
    (void)arg;
    int err = cio_future_new(NULL, &all_done);
    if (err)
        return err;
    double t0 = bench_now_ns();
    while (submitted < IN_FLIGHT && submitted < n && !err)
        err = submit_one();
    if (err)
        failure = err;
    if (submitted > 0)
        cio_await(all_done, NULL);
    double t1 = bench_now_ns();
    cio_future_unref(all_done);
    if (failure) {
        fprintf(stderr, "cio_executor: %s\n", cio_strerror(failure));
        return failure;
    }
    bench_report("executor", (t1 - t0) / (double)n, "ns/op");
    return 0;
}

int main(int argc, char **argv)
{
    n = bench_count(argc, argv, 100000);
    if (n <= 0) {
        fprintf(stderr, "cio_executor: the count must be positive\n");
        return 2;
    }
    return cio_run(bench_main, NULL) == 0 ? 0 : 1;
}
