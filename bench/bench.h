/* Shared by the cio benchmark programs: a clock, peak RSS, the count from
 * argv[1] (BENCH_N), and the one output line format
 * `bench <name> cio <value> <unit>`. */
#ifndef CIO_BENCH_H
#define CIO_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static inline double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static inline long bench_peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static inline long bench_count(int argc, char **argv, long dflt)
{
    return argc > 1 ? atol(argv[1]) : dflt;
}

static inline void bench_report(const char *name, double value,
                                const char *unit)
{
    printf("bench %s cio %.1f %s\n", name, value, unit);
    fflush(stdout);
}

#endif
