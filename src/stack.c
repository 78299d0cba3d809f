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
 * Give-back: the pool keeps at most `idle_max` used stacks warm (their
 * pages resident); a stack given back beyond that has its pages dropped
 * (MADV_DONTNEED: its guard and its address space stay, so taking it
 * again makes no system call), so a burst of 10,000 deep tasks leaves no
 * 10,000 stacks' worth of memory behind.
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

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_UNDEFINED(lo, size) ((void)(lo), (void)(size))
#define VALGRIND_MAKE_MEM_DEFINED(lo, size) ((void)(lo), (void)(size))
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

enum { REGION_STACKS = 256, DEFAULT_IDLE_MAX = 128 };

bool cio__stack_force_mprotect; /* tests: behave as on an older kernel */
bool cio__stack_poison_released; /* tests: wipe every stack given back */

typedef struct region {
    struct region *next;
    char *base;
    size_t len;
    size_t stride;             /* guard + stack */
    unsigned carved;           /* slots handed out so far */
    unsigned vg_ids[REGION_STACKS];
} region;

/* Stacks of one size. A spawned task reserves a stack; it takes one only
 * when it first runs, the most recently used first (its pages are warm),
 * so a million spawned tasks that run one after another share one stack.
 * available = nhot + ncold + nspare + uncarved slots, always >= reserved. */
typedef struct size_class {
    struct size_class *next;
    size_t size;               /* usable bytes */
    void *hot;                 /* used stacks, linked through their tops */
    void *cold;                /* guarded, never used (mprotect mode) */
    /* Guarded, pages dropped: listed here, not through their tops, since
     * a link there would bring a page back. cio__malloc'd. */
    char **spare;
    size_t nhot, ncold, nspare, spare_cap, uncarved, reserved;
    region *regions, **tail;   /* in creation order */
    region *cur;               /* the first with uncarved slots */
} size_class;

struct cio__stack_pool {
    size_class *classes;       /* one per stack size in use */
    size_t idle;               /* hot stacks, over every class */
    size_t idle_max;           /* beyond it, a stack put back is dropped */
    bool mprotect_guards;
};

static size_t page_size(void)
{
    static atomic_size_t page; /* loops in several threads ask at once */
    size_t p = atomic_load_explicit(&page, memory_order_relaxed);
    if (!p) {
        p = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&page, p, memory_order_relaxed);
    }
    return p;
}

/* The free-list link lives in the stack's top word: the one page a task
 * touches anyway, so a pooled stack costs no fresh page. */
static void **top_link(char *lo, size_t size)
{
    return (void **)(lo + size - sizeof(void *));
}

static void push(void **list, size_t *count, char *lo, size_t size)
{
    void **link = top_link(lo, size);
    *link = *list;
    *list = link;
    (*count)++;
}

static char *pop(void **list, size_t *count, size_t size)
{
    char *top = *list;
    *list = *(void **)top;
    (*count)--;
    return top + sizeof(void *) - size;
}

static cio__stack_pool *get_pool(cio_loop *loop)
{
    cio__stack_pool *pool = loop->tasks.stacks;
    if (!pool && (pool = cio__calloc(1, sizeof *pool))) {
        pool->idle_max = DEFAULT_IDLE_MAX;
        loop->tasks.stacks = pool;
    }
    return pool;
}

static size_class *find_class(cio_loop *loop, size_t size)
{
    cio__stack_pool *pool = get_pool(loop);
    if (!pool)
        return NULL;
    for (size_class *c = pool->classes; c; c = c->next)
        if (c->size == size)
            return c;
    size_class *c = cio__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->size = size;
    c->next = pool->classes;
    pool->classes = c;
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
    int err = cio__sys_mprotect(guard, page_size(), PROT_NONE);
    return err == -EAGAIN ? -ENOMEM : err; /* out of maps: ENOMEM */
}

static bool mprotect_mode(const cio__stack_pool *pool)
{
    return pool->mprotect_guards || cio__stack_force_mprotect;
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
    r->next = NULL;
    if (!c->regions)
        c->tail = &c->regions;
    *c->tail = r;
    c->tail = &r->next;
    if (!c->cur)
        c->cur = r;
    c->uncarved += REGION_STACKS;
    return 0;
}

/* Takes the next uncarved slot and guards it. */
static int carve(cio__stack_pool *pool, size_class *c, char **lo)
{
    region *r = c->cur;
    cio__assert(c->uncarved > 0 && r && r->carved < REGION_STACKS);
    char *guard = r->base + r->carved * r->stride;
    int err = install_guard(pool, guard);
    if (err)
        return err;
    r->vg_ids[r->carved] =
        cio__valgrind_stack_register(guard + page_size(), guard + r->stride);
    if (++r->carved == REGION_STACKS)
        c->cur = r->next;
    c->uncarved--;
    *lo = guard + page_size();
    return 0;
}

/* At spawn: makes sure a stack of `size` will be there at the first run.
 * Address space is reserved now; with mprotect guards (which cost memory
 * maps, the scarce resource) the guard is installed now too, so running
 * out is an error of the spawn call. */
int cio__stack_reserve(cio_loop *loop, size_t size)
{
    size_class *c = find_class(loop, size);
    if (!c)
        return -ENOMEM;
    if (mprotect_mode(loop->tasks.stacks)) {
        /* Every reservation is backed by a guarded stack. */
        if (c->nhot + c->ncold + c->nspare <= c->reserved) {
            char *lo;
            int err = c->uncarved ? 0 : new_region(c);
            if (!err)
                err = carve(loop->tasks.stacks, c, &lo);
            if (err)
                return err;
            push(&c->cold, &c->ncold, lo, size);
        }
    } else if (c->nhot + c->ncold + c->nspare + c->uncarved <= c->reserved) {
        /* Address space only: guards come when a stack is first taken. */
        int err = new_region(c);
        if (err)
            return err;
    }
    c->reserved++;
    return 0;
}

void cio__stack_unreserve(cio_loop *loop, size_t size)
{
    size_class *c = find_class(loop, size);
    cio__assert(c && c->reserved > 0);
    c->reserved--;
}

/* At the first run: a reserved stack, the warmest there is. Fails only if
 * a guard cannot be installed (the kernel is out of memory). */
int cio__stack_take(cio_loop *loop, size_t size, char **lo)
{
    size_class *c = find_class(loop, size);
    cio__assert(c && c->reserved > 0);
    if (c->nhot) {
        *lo = pop(&c->hot, &c->nhot, size);
        loop->tasks.stacks->idle--;
    } else if (c->nspare) {
        *lo = c->spare[--c->nspare];
    } else if (c->ncold)
        *lo = pop(&c->cold, &c->ncold, size);
    else {
        /* uncarved is empty only if the kernel refused MADV_GUARD_INSTALL
         * after reservations counted on it: carve from a new region. */
        int err = c->uncarved ? 0 : new_region(c);
        if (!err)
            err = carve(loop->tasks.stacks, c, lo);
        if (err)
            return err;
    }
    c->reserved--;
    return 0;
}

/* ----------------------------------------------------- high-water marks
 * Painting every byte would make every page of every debug task's stack
 * resident; only the pages already resident (a reused stack's) are
 * painted, and the kernel's residency (mincore) tells which of the others
 * a task has touched since. A task's deepest point is then the first word
 * of the lowest resident page that is not the pattern: a fresh page's
 * zeros count as used, so a task that went into one is rounded up to that
 * page's start, less than a page from the truth. */
#define PAINT 0xc10c10c10c10c10cULL

/* Residency is asked a chunk at a time, with a small array on the stack:
 * a stack of any size, and no memory kept in every thread. */
enum { CHUNK_PAGES = 256 };

/* The residency of the n pages from p into vec; false if the kernel
 * would not say. */
static bool resident(const char *p, size_t n, unsigned char *vec)
{
    return cio__sys_mincore((void *)(uintptr_t)p, n * page_size(), vec) == 0;
}

void cio__stack_paint(char *lo, size_t size)
{
    unsigned char vec[CHUNK_PAGES];
    size_t pg = page_size(), pages = size / pg;
    for (size_t at = 0; at < pages; at += CHUNK_PAGES) {
        size_t n = pages - at < CHUNK_PAGES ? pages - at : CHUNK_PAGES;
        if (!resident(lo + at * pg, n, vec))
            return;
        for (size_t i = 0; i < n; i++)
            if (vec[i] & 1)
                for (uint64_t *w = (uint64_t *)(void *)(lo + (at + i) * pg),
                              *end = w + pg / sizeof *w;
                     w < end; w++)
                    *w = PAINT;
    }
}

/* The lowest resident page of [lo, lo + size), or NULL: none, or the
 * kernel would not say. */
static const char *lowest_resident(const char *lo, size_t size)
{
    unsigned char vec[CHUNK_PAGES];
    size_t pg = page_size(), pages = size / pg;
    for (size_t at = 0; at < pages; at += CHUNK_PAGES) {
        size_t n = pages - at < CHUNK_PAGES ? pages - at : CHUNK_PAGES;
        if (!resident(lo + at * pg, n, vec))
            return NULL;
        for (size_t i = 0; i < n; i++)
            if (vec[i] & 1)
                return lo + (at + i) * pg;
    }
    return NULL;
}

/* Reads a parked task's stack below its frames: to AddressSanitizer their
 * red zones are poisoned, to Valgrind what lies below a stack pointer is
 * undefined; neither matters for telling the pattern from the rest. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((no_sanitize_address))
#endif
size_t cio__stack_used(const char *lo, size_t size)
{
    const char *low = lowest_resident(lo, size);
    if (!low)
        return 0;
    const uint64_t *w = (const uint64_t *)(const void *)low;
    const uint64_t *end = (const uint64_t *)(const void *)(lo + size);
    VALGRIND_MAKE_MEM_DEFINED(w, (size_t)((const char *)end - (const char *)w));
    while (w < end && *w == PAINT)
        w++;
    return (size_t)((const char *)end - (const char *)w);
}

/* The deepest use of a finished debug task's stack in this process: read
 * by the overflow report (a signal handler: a plain word). */
static _Atomic size_t deepest_use;

void cio__stack_note_use(size_t used)
{
    size_t old = atomic_load_explicit(&deepest_use, memory_order_relaxed);
    while (used > old && !atomic_compare_exchange_weak_explicit(
                             &deepest_use, &old, used, memory_order_relaxed,
                             memory_order_relaxed)) {
    }
}

/* Debug (a debug loop, or the tests' switch): a stack given back is
 * zeroed, so that anything still pointing into it reads zeros now instead
 * of stale frames that happen to hold together until the stack is reused.
 * The tools' view goes first: to AddressSanitizer the frames of a task
 * that never returned are still poisoned, to Valgrind they lie below a
 * stack pointer. */
static void poison_released(cio_loop *loop, char *lo, size_t size)
{
    if (!cio__stack_poison_released && !loop->debug)
        return;
    cio__fiber_stack_fresh(lo, size);
    VALGRIND_MAKE_MEM_UNDEFINED(lo, size);
    memset(lo, 0, size);
}

/* Drops a stack's pages and lists it as spare; false (nothing changed)
 * if the list cannot grow or the kernel refuses. */
static bool drop_pages(size_class *c, char *lo)
{
    char **v = cio__grow(c->spare, &c->spare_cap, c->nspare + 1,
                         sizeof *v, 16);
    if (!v)
        return false;
    c->spare = v;
    if (cio__sys_madvise(lo, c->size, MADV_DONTNEED))
        return false;
    c->spare[c->nspare++] = lo;
    return true;
}

void cio__stack_put(cio_loop *loop, char *lo, size_t size)
{
    size_class *c = find_class(loop, size);
    cio__assert(c);
    cio__stack_pool *pool = loop->tasks.stacks;
    poison_released(loop, lo, size);
    if (pool->idle >= pool->idle_max && drop_pages(c, lo))
        return;
    push(&c->hot, &c->nhot, lo, size);
    pool->idle++;
}

/* Drops hot stacks until at most idle_max are left (any will do: beyond
 * the cap each costs the same). Stops early if memory or the kernel
 * refuses; the next put tries again. */
static void trim(cio__stack_pool *pool)
{
    for (size_class *c = pool->classes; c; c = c->next)
        while (pool->idle > pool->idle_max && c->nhot) {
            char *lo = pop(&c->hot, &c->nhot, c->size);
            if (!drop_pages(c, lo)) {
                push(&c->hot, &c->nhot, lo, c->size);
                return;
            }
            pool->idle--;
        }
}

int cio__stack_pool_set_max(cio_loop *loop, size_t max)
{
    cio__stack_pool *pool = get_pool(loop);
    if (!pool)
        return -ENOMEM;
    pool->idle_max = max;
    trim(pool);
    return 0;
}

size_t cio__stack_pool_regions(cio_loop *loop)
{
    size_t n = 0;
    cio__stack_pool *pool = loop->tasks.stacks;
    for (size_class *c = pool ? pool->classes : NULL; c; c = c->next)
        for (region *r = c->regions; r; r = r->next)
            n++;
    return n;
}

size_t cio__stack_pool_idle(cio_loop *loop)
{
    return loop->tasks.stacks ? loop->tasks.stacks->idle : 0;
}

void cio__stack_pool_free(cio_loop *loop)
{
    cio__stack_pool *pool = loop->tasks.stacks;
    if (!pool)
        return;
    while (pool->classes) {
        size_class *c = pool->classes;
        pool->classes = c->next;
        region *r = c->regions;
        while (r) {
            region *next = r->next;
            for (unsigned k = 0; k < r->carved; k++)
                cio__valgrind_stack_deregister(r->vg_ids[k]);
            cio__sys_munmap(r->base, r->len);
            cio__free(r);
            r = next;
        }
        cio__free(c->spare);
        cio__free(c);
    }
    cio__free(pool);
    loop->tasks.stacks = NULL;
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
/* The task layer's; the same in every thread, set before any task runs. */
static _Atomic cio__stack_running_fn running_stack;

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
    if (running_stack && running_stack(&lo, &size, name, sizeof name) &&
        addr >= lo - page_size() && addr < lo) {
        char msg[320];
        size_t n = put_str(msg, 0, sizeof msg, "cio: task ");
        n = put_str(msg, n, sizeof msg, name);
        n = put_str(msg, n, sizeof msg, " overflowed its ");
        n = put_num(msg, n, sizeof msg, size);
        n = put_str(msg, n, sizeof msg, "-byte stack (stack overflow): "
                    "give it a larger cio_task_options.stack_size");
        size_t deepest = atomic_load_explicit(&deepest_use,
                                              memory_order_relaxed);
        if (deepest) {
            n = put_str(msg, n, sizeof msg, "; the deepest finished task "
                        "used ");
            n = put_num(msg, n, sizeof msg, deepest);
            n = put_str(msg, n, sizeof msg, " bytes");
        }
        n = put_str(msg, n, sizeof msg, "\n");
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
 * process-wide, the alternate stack per thread (kept for its life). The
 * task layer passes `running`, which tells the handler about the stack
 * running now (this floor knows no tasks). */
void cio__stack_watch_overflow(cio__stack_running_fn running)
{
    running_stack = running;
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
