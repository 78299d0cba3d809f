/* Task stacks: small stacks, a million guarded stacks at once, the
 * mprotect fallback of older kernels (and running out of memory maps with
 * it, which must be a clean -ENOMEM), and a stack overflow reported with
 * the task's name instead of a bare SIGSEGV.
 *
 * Every test runs in its own forked process: the globals (including
 * cio__stack_force_mprotect) start fresh. */
#define _GNU_SOURCE
#include "harness.h"

#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER UNDER_TSAN
#endif

static volatile int STOP_AT = -1; /* never reached: recursion is unbounded */

/* Uses about 512 bytes of stack a level; the addition after the call
 * keeps it from becoming a loop. */
__attribute__((noinline)) static int recurse(int depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    pad[sizeof pad - 1] = 1;
    if (depth == STOP_AT)
        return pad[0];
    return recurse(depth + 1) + pad[sizeof pad - 1];
}

/* Recursion that stops at `levels`, suspending at the bottom. */
__attribute__((noinline)) static int deep(int levels)
{
    volatile char pad[512];
    pad[0] = 1;
    pad[sizeof pad - 1] = (char)levels;
    if (levels == 0)
        return cio_sleep(0) == 0 ? pad[0] : -1000;
    int r = deep(levels - 1);
    return r < 0 ? r : r + pad[0] + (pad[sizeof pad - 1] - levels);
}

static int deep_task(void *arg) { return deep((int)(intptr_t)arg); }

static cio_task *spawn_sized(cio_task_fn fn, void *arg, size_t size,
                             const char *name)
{
    cio_task *t = NULL;
    cio_task_options opts = {.name = name, .stack_size = size};
    CHECK_ERR(cio_task_new(NULL, fn, arg, &opts, &t), 0);
    return t;
}

/* --------------------------------------------------------- small stacks */

static int main_small_stacks(void *arg)
{
    (void)arg;
    /* 16 KiB, and sizes below the minimum (rounded up), each with a few
     * KiB of frames and a suspension at the bottom. */
    size_t sizes[] = {16384, 1, 20000};
    cio_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn_sized(deep_task, (void *)(intptr_t)8, sizes[i], NULL);
    CHECK_ERR(cio_gather(t, 3, 0, NULL), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(cio_future_result(t[i], NULL), 9);
        cio_future_unref(t[i]);
    }
    return 0;
}

TEST(stack_tasks_with_small_stacks_run)
{
    CHECK_ERR(cio_run(main_small_stacks, NULL), 0);
}

static int main_many_sizes(void *arg)
{
    (void)arg;
    enum { N = 12 };
    cio_task *t[N];
    for (int i = 0; i < N; i++)
        t[i] = spawn_sized(deep_task, (void *)(intptr_t)4,
                           (size_t)(32 + 4 * i) * 1024, NULL);
    CHECK_ERR(cio_gather(t, N, 0, NULL), 0);
    for (int i = 0; i < N; i++)
        cio_future_unref(t[i]);
    return 0;
}

/* Any stack size is allowed; a loop has no limit on how many different
 * sizes its tasks use. */
TEST(stack_tasks_with_many_different_stack_sizes_run)
{
    CHECK_ERR(cio_run(main_many_sizes, NULL), 0);
}

/* ---------------------------------------------------- a million stacks */

typedef struct crowd {
    long n, started, finished;
    cio_future *gate, *all_done;
} crowd;

static int crowd_member(void *arg)
{
    crowd *c = arg;
    c->started++;
    int r = cio_await(c->gate, NULL); /* all alive at once, each parked */
    if (r == 0)
        r = cio_sleep(0.001);
    if (r)
        return r;
    if (++c->finished == c->n)
        cio_future_set_result(c->all_done, NULL);
    return 0;
}

static int main_crowd(void *arg)
{
    crowd *c = arg;
    CHECK_ERR(cio_future_new(NULL, &c->gate), 0);
    CHECK_ERR(cio_future_new(NULL, &c->all_done), 0);
    for (long i = 0; i < c->n; i++) {
        int err = cio_create_task(crowd_member, c, NULL);
        if (err)
            test_fail(__FILE__, __LINE__, "spawn %ld of %ld: %s", i, c->n,
                      cio_strerror(err));
    }
    CHECK_ERR(cio_sleep(0), 0); /* every one of them runs and parks */
    CHECK_EQ(c->started, c->n);
    CHECK_EQ(cio_all_tasks(NULL, NULL, 0), c->n + 1);
    CHECK_ERR(cio_future_set_result(c->gate, NULL), 0);
    CHECK_ERR(cio_await(c->all_done, NULL), 0);
    CHECK_EQ(c->finished, c->n);
    cio_future_unref(c->gate);
    cio_future_unref(c->all_done);
    return 0;
}

/* A million stacks alive at once: at least a million first-touch page
 * faults, minutes on a slow virtual machine. Nothing in it depends on the
 * poller, so it runs under one backend only. */
TEST_T(stack_a_million_sleeping_tasks_spawn_and_finish, 300)
{
    const char *backend = getenv("CIO_BACKEND");
    if (backend && strcmp(backend, "poll") == 0)
        test_skip("backend-independent: runs under epoll only");
    static crowd c;
    c.n = test_scaled(1000000);
    /* ThreadSanitizer counts each task's fiber as a thread, and dies
     * beyond 8,128 of them alive at once. */
    if (UNDER_TSAN && c.n > 4000)
        c.n = 4000;
    CHECK_ERR(cio_run(main_crowd, &c), 0);
    CHECK_EQ(c.finished, c.n);
}

/* ------------------------------------------------- the mprotect fallback */

static cio_future *GATE;

static int await_gate_then_recurse(void *arg)
{
    int r = cio_await(GATE, NULL);
    return r ? r : deep((int)(intptr_t)arg);
}

static int main_mprotect(void *arg)
{
    (void)arg;
    CHECK_ERR(cio_future_new(NULL, &GATE), 0);
    enum { N = 300 }; /* more than one region of stacks */
    static cio_task *t[N];
    for (int i = 0; i < N; i++)
        t[i] = spawn_sized(await_gate_then_recurse, (void *)(intptr_t)20,
                           i % 2 ? 0 : 64 * 1024, NULL);
    CHECK_ERR(cio_sleep(0.001), 0);
    CHECK_ERR(cio_future_set_result(GATE, NULL), 0);
    CHECK_ERR(cio_gather(t, N, 0, NULL), 0);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(cio_future_result(t[i], NULL), 21);
        cio_future_unref(t[i]);
    }
    cio_future_unref(GATE);
    return 0;
}

TEST(stack_mprotect_fallback_runs_tasks)
{
    cio__stack_force_mprotect = true;
    CHECK_ERR(cio_run(main_mprotect, NULL), 0);
    CHECK_ERR(cio_run(main_small_stacks, NULL), 0);
}

/* Many tasks of one stack size alive at once: each holds its own stack. */
TEST_T(stack_mprotect_fallback_keeps_a_thousand_tasks_alive_at_once, 60)
{
    cio__stack_force_mprotect = true;
    static crowd c;
    c.n = 1000;
    CHECK_ERR(cio_run(main_crowd, &c), 0);
    CHECK_EQ(c.finished, c.n);
}

static long RAN;

static int count_run(void *arg)
{
    (void)arg;
    RAN++;
    return 0;
}

/* With mprotect guards each stack costs two memory maps, and Linux allows
 * 65,530: spawning runs out near 32,000 tasks, with -ENOMEM from the spawn
 * call. Nothing crashes, the tasks spawned so far run, nothing leaks, and
 * once they are done spawning works again. */
TEST_T(stack_mprotect_fallback_runs_out_of_maps_cleanly, 120)
{
    /* The tools map memory for themselves as the program runs, and die
     * when the maps run out. */
    if (cio__running_on_valgrind())
        test_skip("valgrind needs memory maps of its own");
    if (UNDER_SANITIZER)
        test_skip("the sanitizer's allocator needs memory maps of its own");
    cio__stack_force_mprotect = true;
    cio_loop *loop;
    CHECK_ERR(cio_loop_new(&loop, NULL), 0);
    long spawned = 0;
    int err = 0;
    while (spawned < 1000000 &&
           (err = cio_task_new(loop, count_run, NULL, NULL, NULL)) == 0)
        spawned++;
    CHECK_ERR(err, -ENOMEM);
    CHECK(spawned > 1000);
    CHECK_EQ(cio_all_tasks(loop, NULL, 0), spawned);
    for (int i = 0; i < 100 && cio_all_tasks(loop, NULL, 0) > 0; i++)
        CHECK(cio_loop_run_once(loop, 0) >= 0);
    CHECK_EQ(RAN, spawned);
    CHECK_EQ(cio_all_tasks(loop, NULL, 0), 0);
    /* The stacks came back: spawning works again. */
    cio_task *t;
    CHECK_ERR(cio_task_new(loop, count_run, NULL, NULL, &t), 0);
    CHECK_ERR(cio_loop_run_until_complete(loop, t), 0);
    CHECK_EQ(RAN, spawned + 1);
    cio_future_unref(t);
    cio_loop_free(loop);
}

/* -------------------------------------------------- giving stacks back */

/* Runs n tasks alive at once, each 20 levels (10 KiB) deep when the gate
 * opens; all must return 21. */
static void burst_of_deep_tasks(int n)
{
    CHECK_ERR(cio_future_new(NULL, &GATE), 0);
    cio_task **t = calloc((size_t)n, sizeof *t);
    CHECK(t != NULL);
    for (int i = 0; i < n; i++)
        t[i] = spawn_sized(await_gate_then_recurse, (void *)(intptr_t)20, 0,
                           NULL);
    CHECK_ERR(cio_sleep(0), 0);
    CHECK_ERR(cio_future_set_result(GATE, NULL), 0);
    CHECK_ERR(cio_gather(t, (size_t)n, 0, NULL), 0);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(cio_future_result(t[i], NULL), 21);
        cio_future_unref(t[i]);
    }
    free(t);
    cio_future_unref(GATE);
}

/* After a burst of 1,000 tasks the pool keeps 128 stacks warm (the
 * default), the rest have their pages dropped; a lower cap trims the
 * pool at once; the dropped stacks serve the next burst as well. */
static int main_give_back(void *arg)
{
    (void)arg;
    cio_loop *loop = cio_get_running_loop();
    burst_of_deep_tasks(1000);
    CHECK_EQ(cio__stack_pool_idle(loop), 128);
    CHECK_ERR(cio_loop_set_stack_pool_max(loop, 10), 0);
    CHECK_EQ(cio__stack_pool_idle(loop), 10);
    burst_of_deep_tasks(1000);
    CHECK_EQ(cio__stack_pool_idle(loop), 10);
    CHECK_ERR(cio_loop_set_stack_pool_max(loop, 0), 0);
    CHECK_EQ(cio__stack_pool_idle(loop), 0);
    burst_of_deep_tasks(300);
    CHECK_EQ(cio__stack_pool_idle(loop), 0);
    CHECK_ERR(cio_loop_set_stack_pool_max(loop, 1000), 0);
    burst_of_deep_tasks(300);
    CHECK_EQ(cio__stack_pool_idle(loop), 300);
    CHECK_ERR(cio_loop_set_stack_pool_max(NULL, 1), -EINVAL);
    return 0;
}

TEST_T(stack_pool_keeps_at_most_its_max_warm, 60)
{
    CHECK_ERR(cio_run(main_give_back, NULL), 0);
    cio__stack_force_mprotect = true;
    CHECK_ERR(cio_run(main_give_back, NULL), 0);
}

/* -------------------------------------------------------- stack overflow */

static int overflow_task(void *arg)
{
    (void)arg;
    return recurse(0);
}

static int main_overflow(void *arg)
{
    (void)arg;
    cio_task *t = spawn_sized(overflow_task, NULL, 64 * 1024, "runaway-7");
    cio_await(t, NULL);
    cio_future_unref(t);
    return 0;
}

/* Runs main_overflow in a child process; returns its wait status and
 * what it wrote to stderr. */
static int overflow_in_child(bool mprotect_guards, char *out, size_t cap)
{
    int p[2];
    CHECK_EQ(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        close(p[0]);
        dup2(p[1], 2);
        close(p[1]);
        cio__stack_force_mprotect = mprotect_guards;
        int r = cio_run(main_overflow, NULL);
        _exit(r == 0 ? 3 : 4); /* returning at all is wrong */
    }
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(p[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(p[0]);
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    return status;
}

TEST_T(stack_overflow_aborts_naming_the_task, 30)
{
    if (cio__running_on_valgrind())
        test_skip("valgrind reports the overflow itself");
    for (int mode = 0; mode < 2; mode++) {
        char out[4096];
        int status = overflow_in_child(mode == 1, out, sizeof out);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
            test_fail(__FILE__, __LINE__,
                      "mode %d: child did not abort (status %#x), "
                      "stderr: %s",
                      mode, status, out);
        /* DESIGN: "task NAME overflowed its N-byte stack". */
        if (!strstr(out, "runaway-7") || !strstr(out, "stack overflow") ||
            !strstr(out, "overflowed its 65536-byte stack") ||
            !strstr(out, "give it a larger cio_task_options.stack_size"))
            test_fail(__FILE__, __LINE__, "mode %d: stderr was: %s", mode,
                      out);
    }
}

/* ---------------------------------------------- faults that are not ours */

/* A SIGSEGV that is no task's stack overflow goes to whoever handled
 * SIGSEGV before cio: here a handler that jumps back out of the fault.
 * cio's handler steps aside for good (it puts the old one back), so each
 * case runs in its own test process. */
static sigjmp_buf segv_jump;
static volatile sig_atomic_t own_segvs;

static void own_segv_handler(int sig)
{
    (void)sig;
    own_segvs++;
    siglongjmp(segv_jump, 1);
}

static char *forbidden_page(void)
{
    char *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

/* Touches a page nobody may touch; 1 if the program's handler got it. */
__attribute__((noinline)) static int touch_forbidden(void)
{
    char *page = forbidden_page();
    int got = 0;
    if (sigsetjmp(segv_jump, 1) == 0)
        *(volatile char *)page = 1;
    else
        got = 1;
    munmap(page, 4096);
    return got;
}

static int faulting_task(void *arg)
{
    (void)arg;
    return touch_forbidden() ? 7 : -1;
}

static int main_fault_in_a_task(void *arg)
{
    const char *name = arg;
    cio_task *t = spawn_sized(faulting_task, NULL, 64 * 1024, name);
    CHECK_ERR(cio_await(t, NULL), 7); /* the task went on */
    cio_future_unref(t);
    return 0;
}

static int main_nothing(void *arg)
{
    (void)arg;
    return 0;
}

static void check_foreign_fault(int where) /* 0, 1: in a task; 2: none */
{
    if (cio__running_on_valgrind() || UNDER_SANITIZER)
        test_skip("the tool handles SIGSEGV itself");
    struct sigaction sa, now;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = own_segv_handler;
    sigemptyset(&sa.sa_mask);
    CHECK_EQ(sigaction(SIGSEGV, &sa, NULL), 0);
    if (where < 2) {
        CHECK_ERR(cio_run(main_fault_in_a_task, where ? "toucher" : NULL), 0);
    } else {
        CHECK_ERR(cio_run(main_nothing, NULL), 0); /* cio's handler is in */
        CHECK_EQ(touch_forbidden(), 1);
    }
    CHECK_EQ(own_segvs, 1);
    CHECK_EQ(sigaction(SIGSEGV, NULL, &now), 0);
    CHECK(now.sa_handler == own_segv_handler); /* ours again, for good */
}

TEST(stack_fault_off_the_guard_in_an_unnamed_task_reaches_the_program)
{
    check_foreign_fault(0);
}

TEST(stack_fault_off_the_guard_in_a_named_task_reaches_the_program)
{
    check_foreign_fault(1);
}

TEST(stack_fault_outside_any_task_reaches_the_program)
{
    check_foreign_fault(2);
}

/* A thread's own alternate signal stack is kept: cio installs one only
 * where there is none. */
TEST(stack_keeps_the_programs_alternate_signal_stack)
{
    static char mine[65536];
    stack_t ss = {.ss_sp = mine, .ss_size = sizeof mine, .ss_flags = 0};
    CHECK_EQ(sigaltstack(&ss, NULL), 0);
    CHECK_ERR(cio_run(main_nothing, NULL), 0);
    stack_t now;
    CHECK_EQ(sigaltstack(NULL, &now), 0);
    CHECK(now.ss_sp == mine);
    CHECK_EQ(now.ss_size, sizeof mine);
    CHECK(!(now.ss_flags & SS_DISABLE));
}
