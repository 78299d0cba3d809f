/* Fibers over the context switch, and the sanitizers' fiber hooks, so that
 * AddressSanitizer, ThreadSanitizer and Valgrind follow every switch. */
#define _GNU_SOURCE
#include "ctx.h"
#include "internal.h"

#include <stdint.h>
#include <signal.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define CIO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CIO_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CIO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CIO_TSAN 1
#endif
#endif

#ifdef CIO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CIO_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CIO_VALGRIND 1
#endif
#endif

#ifndef CIO_CTX_UCONTEXT
void cio__ctx_switch(void **save_sp, void *load_sp);
void cio__ctx_trampoline(void);

#if defined(__x86_64__)
void cio__fiber_make(cio__fiber *f, void (*entry)(void *), void *arg)
{
    /* The frame cio__ctx_switch pops: fp-control word, r15, r14, r13
     * (arg), r12 (entry), rbx, rbp, then the return address. The return
     * address sits 8 bytes below a 16-byte boundary, so the trampoline
     * starts with the aligned stack a call needs. */
    uintptr_t top = ((uintptr_t)(f->stack_lo + f->stack_size)) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 24);
    *sp = (uint64_t)(uintptr_t)cio__ctx_trampoline;
    *--sp = 0;                            /* rbp */
    *--sp = 0;                            /* rbx */
    *--sp = (uint64_t)(uintptr_t)entry;   /* r12 */
    *--sp = (uint64_t)(uintptr_t)arg;     /* r13 */
    *--sp = 0;                            /* r14 */
    *--sp = 0;                            /* r15 */
    *--sp = 0x037F00001F80ull;            /* x87 control word : MXCSR */
    f->sp = sp;
}
#elif defined(__aarch64__)
void cio__fiber_make(cio__fiber *f, void (*entry)(void *), void *arg)
{
    /* The 22 words cio__ctx_switch pops (ctx_aarch64.S): x19 (entry), x20
     * (arg), x21-x28, x29 (0: the end of the frame chain), x30 (the
     * trampoline, where its ret goes), d8-d15, FPCR (0: round to nearest,
     * no flush-to-zero, no traps, as Linux starts a thread) and padding.
     * The frame ends at the aligned top, so the trampoline starts with sp
     * 16-byte aligned. */
    uintptr_t top = ((uintptr_t)(f->stack_lo + f->stack_size)) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)entry;                /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;                  /* x20 */
    sp[11] = (uint64_t)(uintptr_t)cio__ctx_trampoline; /* x30 */
    f->sp = sp;
}
#else
#error "no context switch for this CPU: build with CIO_CTX=ucontext"
#endif
#else
/* makecontext passes only ints: each pointer travels as two halves. */
static void uc_start(unsigned entry_hi, unsigned entry_lo, unsigned arg_hi,
                     unsigned arg_lo)
{
    void (*entry)(void *) = (void (*)(void *))(
        ((uintptr_t)entry_hi << 32) | (uintptr_t)entry_lo);
    entry((void *)(((uintptr_t)arg_hi << 32) | (uintptr_t)arg_lo));
}

void cio__fiber_make(cio__fiber *f, void (*entry)(void *), void *arg)
{
    uintptr_t e = (uintptr_t)entry, a = (uintptr_t)arg;
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack_lo;
    f->uc.uc_stack.ss_size = f->stack_size;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, (void (*)(void))uc_start, 4, (unsigned)(e >> 32),
                (unsigned)e, (unsigned)(a >> 32), (unsigned)a);
}
#endif

void cio__fiber_switch(cio__fiber *from, cio__fiber *to, int exiting)
{
#ifdef CIO_ASAN
    __sanitizer_start_switch_fiber(exiting ? NULL : &from->asan_fake,
                                   to->stack_lo, to->stack_size);
#endif
#ifdef CIO_TSAN
    if (!to->tsan)
        to->tsan = __tsan_create_fiber(0);
    if (!from->tsan)
        from->tsan = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
    (void)exiting;
#ifdef CIO_CTX_UCONTEXT
    /* swapcontext also restores the signal mask saved in `to`: carry the
     * current one over, or a signal blocked since (cio's signalfd ones)
     * would be unblocked by the switch. */
    pthread_sigmask(SIG_SETMASK, NULL, &to->uc.uc_sigmask);
    swapcontext(&from->uc, &to->uc);
#else
    cio__ctx_switch(&from->sp, to->sp);
#endif
    cio__fiber_arrived(from, NULL);
}

void cio__fiber_arrived(cio__fiber *me, cio__fiber *from)
{
#ifdef CIO_ASAN
    const void *lo;
    size_t size;
    __sanitizer_finish_switch_fiber(me ? me->asan_fake : NULL, &lo, &size);
    if (from && !from->stack_lo) {
        from->stack_lo = (char *)lo;
        from->stack_size = size;
    }
#endif
    (void)me, (void)from;
}

void cio__fiber_destroy(cio__fiber *f)
{
#ifdef CIO_TSAN
    if (f->tsan)
        __tsan_destroy_fiber(f->tsan);
#endif
    f->tsan = NULL;
    f->asan_fake = NULL;
}

/* A stack handed to a new task: AddressSanitizer may still hold poison
 * from frames of an earlier task that never returned (one torn down with
 * its loop, or one that lived in a region since unmapped and mapped
 * again); the new task starts on clean memory. */
void cio__fiber_stack_fresh(void *lo, size_t size)
{
#ifdef CIO_ASAN
    __asan_unpoison_memory_region(lo, size);
#endif
    (void)lo, (void)size;
}

unsigned cio__valgrind_stack_register(void *lo, void *hi)
{
#ifdef CIO_VALGRIND
    return VALGRIND_STACK_REGISTER(lo, hi);
#else
    (void)lo, (void)hi;
    return 0;
#endif
}

void cio__valgrind_stack_deregister(unsigned id)
{
#ifdef CIO_VALGRIND
    VALGRIND_STACK_DEREGISTER(id);
#else
    (void)id;
#endif
}

int cio__running_on_valgrind(void)
{
#ifdef CIO_VALGRIND
    return RUNNING_ON_VALGRIND;
#else
    return 0;
#endif
}
