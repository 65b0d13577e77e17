/* SPDX-License-Identifier: MIT */
/*
 * Coroutine switch for x86-64 (System V ABI).
 *
 * int vmm_co_switch_asm(void **save_sp, void *new_sp, int action)
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
 * The FPU words, measured on the Zen 5 used here (bench-fpu-words): the
 * cost is stmxcsr (~1.5 ns each inside a switch, not overlapped with
 * anything); fnstcw is free, ldmxcsr/fldcw of an unchanged value cost
 * ~0.3/0.6 ns.  So:
 *  - MXCSR is stored and reloaded unconditionally.  Comparing it to skip
 *    the reload needs stmxcsr's store back in a register, and that load
 *    waits for the store to retire: 18 ns per round trip instead of 11.
 *  - The x87 control word is compared in a register (fnstcw's store
 *    forwards normally) and fldcw runs only when the incoming word differs
 *    from the outgoing one: the common case (nobody changed precision or
 *    rounding) skips it, ~0.6 ns per round trip.
 * Both sides' words are therefore what each last set whatever the other
 * did: test_fpu_words_pingpong covers equal and different words in both
 * directions.
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
    .globl  vmm_co_switch_asm
    .hidden vmm_co_switch_asm
    .type   vmm_co_switch_asm, @function
    .p2align 4
vmm_co_switch_asm:
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
    movzwl  4(%rsp), %eax           /* outgoing x87 CW */
#endif
    movq    %rsi, %rsp
#if VMM_CO_FPU_CTL
    ldmxcsr (%rsp)
    cmpw    4(%rsp), %ax
    jne     2f
1:
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
2:  fldcw   4(%rsp)                 /* the incoming side's CW differs */
    jmp     1b
#endif
    .cfi_endproc
    .size   vmm_co_switch_asm, .-vmm_co_switch_asm

/*
 * First code on a fresh stack: r12 holds the coroutine.  The return
 * address is undefined so unwinders and debuggers stop here.
 */
    .globl  vmm_co_trampoline_asm
    .hidden vmm_co_trampoline_asm
    .type   vmm_co_trampoline_asm, @function
    .p2align 4
vmm_co_trampoline_asm:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r12, %rdi
    call    vmm_co_trampoline
    ud2
    .cfi_endproc
    .size   vmm_co_trampoline_asm, .-vmm_co_trampoline_asm

    .section .note.GNU-stack, "", @progbits
