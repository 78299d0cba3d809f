/* Small helpers shared by the libuv peer benchmarks (header-only). */
#ifndef CIO_BENCH_UV_COMMON_H
#define CIO_BENCH_UV_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

/* Monotonic clock in nanoseconds; comparable across threads. */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Count from argv[1] if given (for quick smoke runs), else the default. */
static inline long arg_count(int argc, char **argv, long dflt)
{
    if (argc > 1) {
        long n = strtol(argv[1], NULL, 10);
        if (n > 0)
            return n;
        fprintf(stderr, "bad count '%s'\n", argv[1]);
        exit(2);
    }
    return dflt;
}

/* Peak resident set size of this process in KiB (Linux ru_maxrss unit). */
static inline long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Abort with a message if a libuv call failed. */
#define UV_CHECK(expr)                                                    \
    do {                                                                  \
        int rc_ = (expr);                                                 \
        if (rc_ < 0) {                                                    \
            fprintf(stderr, "%s failed: %s\n", #expr, uv_strerror(rc_)); \
            exit(1);                                                      \
        }                                                                 \
    } while (0)

#endif
