/* cio__ctx_switch(void **save_sp, void *load_sp): the x86-64 System V
 * context switch. Saves only what the ABI says a callee must preserve:
 * rbx, rbp, r12-r15, the stack pointer, MXCSR and the x87 control word;
 * everything else is already saved by the caller. */
#if defined(__x86_64__) && !defined(CIO_CTX_UCONTEXT)
    .text
    .globl cio__ctx_switch
    .hidden cio__ctx_switch
    .type cio__ctx_switch, @function
cio__ctx_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size cio__ctx_switch, .-cio__ctx_switch

/* A new fiber's first "return" lands here with its entry in r12 and the
 * argument in r13 (placed by cio__fiber_make). The stack is 16-byte
 * aligned here, as a call requires. */
    .globl cio__ctx_trampoline
    .hidden cio__ctx_trampoline
    .type cio__ctx_trampoline, @function
cio__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %r13, %rdi
    callq *%r12
    ud2
    .cfi_endproc
    .size cio__ctx_trampoline, .-cio__ctx_trampoline
#endif
    .section .note.GNU-stack,"",@progbits
