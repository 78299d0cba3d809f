/* cio's test harness: each test runs in its own forked process with a time
 * limit, and fails if it leaks an allocation or a file descriptor. */
#ifndef CIO_TEST_HARNESS_H
#define CIO_TEST_HARNESS_H

#include "cio.h"
#include "../src/internal.h"

#include <string.h>

typedef struct test_case {
    const char *name;
    void (*fn)(void);
    int timeout; /* seconds */
    struct test_case *next;
} test_case;

void test_register(test_case *tc);
_Noreturn void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void test_skip(const char *why);
int test_open_fds(void);
/* Under valgrind or sanitizers: run fewer of whatever is counted in the
 * millions (returns n / 20 there, else n). */
long test_scaled(long n);

/* Runs scenario(arg) with the 1st, 2nd, 3rd ... counted call of `kinds`
 * failing (allocations with ENOMEM, syscalls with -err), until a run
 * completes without the failure being hit. After each run nothing may
 * leak; a run where the failure hit must return an error or 0 (recovered),
 * never crash; the last run must return 0. Returns how many failures were
 * injected. */
int test_fault_loop(unsigned kinds, int err, int (*scenario)(void *),
                    void *arg);

#define TEST_T(name, secs)                                                     \
    static void test_##name(void);                                             \
    __attribute__((constructor)) static void register_##name(void)            \
    {                                                                          \
        static test_case tc = {#name, test_##name, secs, NULL};               \
        test_register(&tc);                                                    \
    }                                                                          \
    static void test_##name(void)
#define TEST(name) TEST_T(name, 10)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                 \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (a_ != b_)                                                          \
            test_fail(__FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b,   \
                      a_, b_);                                                 \
    } while (0)

/* For error codes: prints the names too. */
#define CHECK_ERR(a, b)                                                        \
    do {                                                                       \
        int a_ = (int)(a), b_ = (int)(b);                                      \
        if (a_ != b_)                                                          \
            test_fail(__FILE__, __LINE__, "%s == %s (%d \"%s\" vs %d \"%s\")",  \
                      #a, #b, a_, cio_strerror(a_), b_, cio_strerror(b_));     \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                 \
            test_fail(__FILE__, __LINE__, "%s == %s (\"%s\" vs \"%s\")", #a,   \
                      #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");             \
    } while (0)

/* A log of what happened, in order, to compare with what asyncio does. */
typedef struct test_log {
    char buf[4096];
    size_t len;
} test_log;
void test_log_add(test_log *log, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define CHECK_LOG(log, expected) CHECK_STR((log)->buf, expected)

#endif
