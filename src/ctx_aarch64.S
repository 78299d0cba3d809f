/* cio__ctx_switch(void **save_sp, void *load_sp): the AArch64 (AAPCS64)
 * context switch. Saves only what the ABI says a callee must preserve:
 * x19-x28, the frame pointer x29, the link register x30, the stack
 * pointer, the low 64 bits of v8-v15 (d8-d15) and FPCR (rounding mode,
 * flush-to-zero, default NaN). FPSR is not kept: its cumulative exception
 * flags are status the ABI leaves to the caller, like x0-x18 and the rest
 * of the vector registers, which the caller has already saved.
 *
 * The frame, 176 bytes from the saved stack pointer up (a multiple of 16,
 * so sp stays 16-byte aligned as AAPCS64 requires at every access):
 *     0: x19 x20   16: x21 x22   32: x23 x24   48: x25 x26   64: x27 x28
 *    80: x29 x30   96: d8 d9    112: d10 d11  128: d12 d13  144: d14 d15
 *   160: FPCR, then 8 bytes of padding
 * cio__fiber_make (ctx.c) lays out the same frame for a new fiber. */
#if defined(__aarch64__) && !defined(CIO_CTX_UCONTEXT)
    .text
    .globl cio__ctx_switch
    .hidden cio__ctx_switch
    .type cio__ctx_switch, %function
    .p2align 2
cio__ctx_switch:
    .cfi_startproc
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mrs x9, fpcr
    str x9, [sp, #160]
    mov x9, sp              /* str cannot store sp itself */
    str x9, [x0]
    mov sp, x1
    ldr x9, [sp, #160]
    msr fpcr, x9
    ldp d14, d15, [sp, #144]
    ldp d12, d13, [sp, #128]
    ldp d10, d11, [sp, #112]
    ldp d8, d9, [sp, #96]
    ldp x29, x30, [sp, #80]
    ldp x27, x28, [sp, #64]
    ldp x25, x26, [sp, #48]
    ldp x23, x24, [sp, #32]
    ldp x21, x22, [sp, #16]
    ldp x19, x20, [sp, #0]
    add sp, sp, #176
    ret                     /* to x30: the resumed caller, or the trampoline */
    .cfi_endproc
    .size cio__ctx_switch, .-cio__ctx_switch

/* A new fiber's first "return" lands here with its entry in x19 and the
 * argument in x20, x29 zero (the end of the frame chain), and sp 16-byte
 * aligned at the top of its stack (placed by cio__fiber_make). entry never
 * returns; if it did, brk traps instead of running off into memory. */
    .globl cio__ctx_trampoline
    .hidden cio__ctx_trampoline
    .type cio__ctx_trampoline, %function
    .p2align 2
cio__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov x0, x20
    blr x19
    brk #0
    .cfi_endproc
    .size cio__ctx_trampoline, .-cio__ctx_trampoline
#endif
    .section .note.GNU-stack,"",%progbits
