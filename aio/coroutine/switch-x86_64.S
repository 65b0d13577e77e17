/* SPDX-License-Identifier: MIT */
/*
 * Coroutine switch for x86-64 (System V ABI).
 *
 * int co_switch_asm(void **save_sp, void *new_sp, int action)
 *
 * Saves what the ABI makes callee-saved: rbx, rbp, r12-r15, the MXCSR
 * control bits and the x87 control word.  The stack pointer goes to
 * *save_sp.  The other side is restored from new_sp, and the call returns
 * there with @action in eax.
 *
 * Frame on a suspended stack (low to high address):
 *   sp+0  MXCSR (4 bytes), x87 CW (2 bytes), 2 unused bytes (unused
 *         entirely without VMM_CO_FPU_CTL)
 *   sp+8  r15, r14, r13, r12, rbx, rbp, return address
 *
 * It returns with "pop; jmp *reg", not "ret": a switch never returns to
 * its own caller, so "ret" would mispredict in the return stack buffer on
 * every switch.
 *
 * The FPU words: stmxcsr/fnstcw into the outgoing frame.  The x87 CW is
 * read back (the load is forwarded from fnstcw's store) and fldcw runs
 * only when the incoming side's differs, which it almost never does.
 * ldmxcsr runs unconditionally: comparing MXCSR first would need the
 * stored word back in a register, and a load from stmxcsr's store waits
 * for that store to retire (Zen 5: 14.3 ns per round trip instead of
 * 11.0, bench-coroutine's asm_fpucmp_rt).  What makes the ldmxcsr
 * cheap everywhere is that it loads the value MXCSR already holds:
 * an ldmxcsr that changes MXCSR serializes on Intel cores (tens of ns),
 * and it would change on every switch if the two sides differed only in
 * MXCSR's sticky status flags (bits 0-5), e.g. a thread that has done one
 * inexact division against a coroutine that has done none.  The status
 * flags are caller-saved in the ABI (only the control bits are
 * callee-saved), so the switch keeps them all set: the word it loads has
 * bits 0-5 set (a saved word without them gets them first, on the cold
 * path), and since the flags are sticky, what runs afterwards still has
 * them set when it switches out.  Sides with equal control words then
 * switch without changing MXCSR at all.  bench-coroutine's
 * asm_floor_fpu_flipflags_rt shows what a switch pays per CPU when the
 * flags differ.
 * Built with -Dcoroutine_fpu_ctl=false, the FPU words are not switched at
 * all: coroutines then share the thread's rounding mode and exception
 * masks (see docs/coroutines.md).
 */
/* The build's coroutine-config.h, unless VMM_CO_FPU_CTL comes from the
 * command line (tests/coroutine/test-switch-aarch64.c's standalone build). */
#ifndef VMM_CO_FPU_CTL
#include "aio/coroutine/coroutine-config.h"
#endif
#ifndef VMM_CO_FPU_CTL
#define VMM_CO_FPU_CTL 0
#endif
    .text
    .globl  co_switch_asm
    .hidden co_switch_asm
    .type   co_switch_asm, @function
    .p2align 4
co_switch_asm:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
#if VMM_CO_FPU_CTL
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
#endif
    movq    %rsp, (%rdi)
#if VMM_CO_FPU_CTL
    movzwl  4(%rsp), %ecx           /* outgoing x87 CW, forwarded from fnstcw */
#endif
    movq    %rsi, %rsp
#if VMM_CO_FPU_CTL
    movl    (%rsp), %eax            /* incoming MXCSR, stored long ago */
    notl    %eax
    testb   $0x3F, %al
    jnz     2f                      /* some status flag clear: set them */
1:  ldmxcsr (%rsp)
    cmpw    4(%rsp), %cx
    jne     3f                      /* x87 CW differs: load it */
4:
#endif
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    popq    %rcx
    movl    %edx, %eax
    jmpq    *%rcx
#if VMM_CO_FPU_CTL
2:  orb     $0x3F, (%rsp)
    jmp     1b
3:  fldcw   4(%rsp)
    jmp     4b
#endif
    .cfi_endproc
    .size   co_switch_asm, .-co_switch_asm

/*
 * First code on a fresh stack: r12 holds the coroutine.  The return
 * address is undefined so unwinders and debuggers stop here.
 */
    .globl  co_trampoline_asm
    .hidden co_trampoline_asm
    .type   co_trampoline_asm, @function
    .p2align 4
co_trampoline_asm:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r12, %rdi
    call    co_trampoline
    ud2
    .cfi_endproc
    .size   co_trampoline_asm, .-co_trampoline_asm

    .section .note.GNU-stack, "", @progbits
