/* Task stacks: carved out of large mappings, each with a guard page below
 * it, and reused through a per-loop pool so that spawning a task normally
 * makes no system call and touches no fresh page.
 *
 * Guards: madvise(MADV_GUARD_INSTALL) (Linux 6.13+) marks a page as a
 * guard without splitting the mapping, so a million guarded stacks fit in
 * the 65,530-map limit. Where the kernel lacks it, mprotect(PROT_NONE)
 * splits the mapping (two maps a stack): running out of maps then is a
 * clean -ENOMEM from the spawn call.
 *
 * Overflow: a SIGSEGV handler on an alternate signal stack recognises a
 * fault in the running task's guard page, names the task and aborts.
 */
#define _GNU_SOURCE
#include "ctx.h"
#include "internal.h"

#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

enum { REGION_STACKS = 64, MAX_CLASSES = 8 };

bool cio__stack_force_mprotect; /* tests: behave as on an older kernel */

typedef struct region {
    struct region *next;
    char *base;
    size_t len;
    size_t stride;             /* guard + stack */
    unsigned carved;           /* stacks handed out so far */
    unsigned vg_ids[REGION_STACKS];
} region;

typedef struct size_class {
    size_t size;               /* usable bytes */
    void *free;                /* free stacks, linked through their tops */
    region *regions;
} size_class;

struct cio__stack_pool {
    size_class classes[MAX_CLASSES];
    int nclasses;
    bool mprotect_guards;
};

static size_t page_size(void)
{
    static size_t page;
    if (!page)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

/* The free-list link lives in the stack's top word: the one page a task
 * touches anyway, so a pooled stack costs no fresh page. */
static void **top_link(char *lo, size_t size)
{
    return (void **)(lo + size - sizeof(void *));
}

static size_class *find_class(cio__stack_pool *pool, size_t size)
{
    for (int i = 0; i < pool->nclasses; i++)
        if (pool->classes[i].size == size)
            return &pool->classes[i];
    if (pool->nclasses == MAX_CLASSES)
        return NULL;
    size_class *c = &pool->classes[pool->nclasses++];
    memset(c, 0, sizeof *c);
    c->size = size;
    return c;
}

static int install_guard(cio__stack_pool *pool, char *guard)
{
    if (!pool->mprotect_guards && !cio__stack_force_mprotect) {
        int err = cio__sys_madvise(guard, page_size(), MADV_GUARD_INSTALL);
        if (err != -EINVAL)
            return err;
        pool->mprotect_guards = true; /* an older kernel */
    }
    return cio__sys_mprotect(guard, page_size(), PROT_NONE);
}

static int new_region(size_class *c)
{
    region *r = cio__malloc(sizeof *r);
    if (!r)
        return -ENOMEM;
    int err;
    r->stride = page_size() + c->size;
    r->len = r->stride * REGION_STACKS;
    r->base = cio__sys_mmap(r->len, &err);
    if (!r->base) {
        cio__free(r);
        return err;
    }
    r->carved = 0;
    r->next = c->regions;
    c->regions = r;
    return 0;
}

/* Takes a stack of `size` usable bytes (a multiple of the page size). */
int cio__stack_get(cio_loop *loop, size_t size, char **lo)
{
    cio__stack_pool *pool = loop->stacks;
    if (!pool) {
        pool = loop->stacks = cio__calloc(1, sizeof *pool);
        if (!pool)
            return -ENOMEM;
    }
    size_class *c = find_class(pool, size);
    if (!c)
        return -ENOMEM;
    if (c->free) {
        char *top = c->free;
        c->free = *(void **)top;
        *lo = top + sizeof(void *) - size;
        return 0;
    }
    if (!c->regions || c->regions->carved == REGION_STACKS) {
        int err = new_region(c);
        if (err)
            return err;
    }
    region *r = c->regions;
    char *guard = r->base + r->carved * r->stride;
    int err = install_guard(pool, guard);
    if (err)
        return err == -EAGAIN ? -ENOMEM : err;
    r->vg_ids[r->carved] =
        cio__valgrind_stack_register(guard + page_size(), guard + r->stride);
    r->carved++;
    *lo = guard + page_size();
    return 0;
}

void cio__stack_put(cio_loop *loop, char *lo, size_t size)
{
    size_class *c = find_class(loop->stacks, size);
    cio__assert(c);
    void **link = top_link(lo, size);
    *link = c->free;
    c->free = link;
}

void cio__stack_pool_free(cio_loop *loop)
{
    cio__stack_pool *pool = loop->stacks;
    if (!pool)
        return;
    for (int i = 0; i < pool->nclasses; i++) {
        region *r = pool->classes[i].regions;
        while (r) {
            region *next = r->next;
            for (unsigned k = 0; k < r->carved; k++)
                cio__valgrind_stack_deregister(r->vg_ids[k]);
            cio__sys_munmap(r->base, r->len);
            cio__free(r);
            r = next;
        }
    }
    cio__free(pool);
    loop->stacks = NULL;
}

/* Rounds a requested stack size to whole pages, at least 16 KiB. */
size_t cio__stack_round(size_t size)
{
    size_t page = page_size();
    if (size < 16384)
        size = 16384;
    return (size + page - 1) / page * page;
}

/* ---------------------------------------------------- overflow reporting */

static struct sigaction previous_segv;
static pthread_once_t segv_once = PTHREAD_ONCE_INIT;
static _Thread_local bool altstack_ready;

/* Async-signal-safe formatting: appends s, or n in decimal. */
static size_t put_str(char *buf, size_t at, size_t cap, const char *s)
{
    while (*s && at < cap)
        buf[at++] = *s++;
    return at;
}

static size_t put_num(char *buf, size_t at, size_t cap, size_t n)
{
    char digits[24];
    int k = 0;
    do
        digits[k++] = (char)('0' + n % 10);
    while ((n /= 10) && k < 24);
    while (k && at < cap)
        buf[at++] = digits[--k];
    return at;
}

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
    (void)sig, (void)uctx;
    char *lo;
    size_t size;
    char name[64];
    char *addr = si->si_addr;
    if (cio__task_stack_info(&lo, &size, name, sizeof name) &&
        addr >= lo - page_size() && addr < lo) {
        char msg[256];
        size_t n = put_str(msg, 0, sizeof msg, "cio: task ");
        n = put_str(msg, n, sizeof msg, name);
        n = put_str(msg, n, sizeof msg, " overflowed its ");
        n = put_num(msg, n, sizeof msg, size);
        n = put_str(msg, n, sizeof msg, "-byte stack (stack overflow)\n");
        ssize_t w = write(2, msg, n);
        (void)w;
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    /* Not ours: put back whoever handled SIGSEGV before us and return, so
     * the fault happens again and reaches them (or kills the process). */
    sigaction(SIGSEGV, &previous_segv, NULL);
}

static void install_segv(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
}

/* Makes sure this thread can report an overflow: the handler is
 * process-wide, the alternate stack per thread (kept for its life). */
void cio__stack_watch_overflow(void)
{
    if (altstack_ready)
        return;
    altstack_ready = true;
    pthread_once(&segv_once, install_segv);
    stack_t old;
    if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
        return; /* someone (a sanitizer, the program) already set one */
    size_t size = 65536;
    int err;
    void *mem = cio__sys_mmap(size, &err);
    if (!mem)
        return; /* overflow then shows as a plain SIGSEGV */
    stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
    sigaltstack(&ss, NULL);
}
