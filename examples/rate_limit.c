/* Limiting concurrency with a semaphore.
 *
 * Twenty "downloads" (sleeps of 50 ms stand for them) are started at once,
 * but a semaphore with three units lets only three run at a time: each
 * takes a unit before it starts and gives it back when done, and the rest
 * wait their turn, first come first served. cio_gather_calls() runs the
 * twenty calls as tasks and waits for all of them, with no task to keep
 * or unref. Without the semaphore they would all run at once, which is
 * fine for sleeps but not for a server that allows three connections.
 *
 * CIO_SEMAPHORE_SCOPE (GCC and Clang) is Python's `async with limit:` the
 * unit goes back however the block is left, by return, break or goto.
 * Without it: cio_semaphore_acquire, then cio_semaphore_release on every
 * path out.
 */
#include <cio.h>

#include <stdint.h>
#include <stdio.h>

enum { DOWNLOADS = 20, AT_ONCE = 3 };

static cio_semaphore limit = CIO_SEMAPHORE_INIT(AT_ONCE);
static int in_flight, most_in_flight;

static int download(void *arg)
{
    int n = (int)(intptr_t)arg;
    CIO_SEMAPHORE_SCOPE(unit);                    /* holds nothing yet */
    int err = cio_semaphore_enter(&unit, &limit); /* waits for a free unit */
    if (err)
        return err; /* -ECANCELED: no unit was taken */
    in_flight++;
    if (in_flight > most_in_flight)
        most_in_flight = in_flight;
    printf("download %2d: start (%d in flight)\n", n, in_flight);
    err = cio_sleep(0.05); /* the download itself */
    in_flight--;
    printf("download %2d: done\n", n);
    return err; /* the unit goes back here, even after an error */
}

static int fetch_all(void *arg)
{
    (void)arg;
    cio_call calls[DOWNLOADS];
    for (int i = 0; i < DOWNLOADS; i++)
        calls[i] = (cio_call){download, (void *)(intptr_t)(i + 1)};
    printf("%d downloads, at most %d at a time\n", DOWNLOADS, AT_ONCE);
    double start = cio_loop_time(cio_get_running_loop());
    int err = cio_gather_calls(calls, DOWNLOADS, 0, NULL);
    double took = cio_loop_time(cio_get_running_loop()) - start;
    printf("all done in %.2f s, never more than %d in flight\n", took,
           most_in_flight);
    return err;
}

int main(void)
{
    int err = cio_run(fetch_all, NULL);
    if (err)
        fprintf(stderr, "rate_limit: %s\n", cio_strerror(err));
    return err ? 1 : 0;
}
