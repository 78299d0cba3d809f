/* The platform's context switch and fibers: a fiber is a stack plus the
 * registers saved when it is switched away from. Only task.c switches. */
#ifndef CIO_CTX_H
#define CIO_CTX_H

#include <stddef.h>
#ifdef CIO_CTX_UCONTEXT
#include <ucontext.h>
#endif

typedef struct cio__fiber {
#ifdef CIO_CTX_UCONTEXT
    ucontext_t uc;
#else
    void *sp;          /* saved stack pointer; registers sit below it */
#endif
    char *stack_lo;    /* usable stack, above its guard page; NULL: thread's */
    size_t stack_size;
    void *asan_fake;   /* AddressSanitizer's fake stack while away */
    void *tsan;        /* ThreadSanitizer's fiber */
    unsigned vg_id;    /* Valgrind's stack id */
} cio__fiber;

/* Prepares f to run entry(arg) on its stack when first switched to.
 * entry must never return: it ends by switching away for good. */
void cio__fiber_make(cio__fiber *f, void (*entry)(void *), void *arg);

/* Saves the current context into `from` and resumes `to`. `exiting`: from
 * will never be resumed (lets the sanitizers drop its state). */
void cio__fiber_switch(cio__fiber *from, cio__fiber *to, int exiting);

/* The sanitizers' view of f's stack goes away (call before reusing it). */
void cio__fiber_destroy(cio__fiber *f);

/* The arriving half of a switch, for the sanitizers: `me` is the fiber
 * now running (NULL on a fiber's first run), `from` the one left, whose
 * stack bounds are learnt if unknown (a thread's own stack). */
void cio__fiber_arrived(cio__fiber *me, cio__fiber *from);

/* A stack about to be used by a new fiber (clears sanitizer state). */
void cio__fiber_stack_fresh(void *lo, size_t size);

/* Valgrind: registers / deregisters a stack range. */
unsigned cio__valgrind_stack_register(void *lo, void *hi);
void cio__valgrind_stack_deregister(unsigned id);
int cio__running_on_valgrind(void);

#endif
