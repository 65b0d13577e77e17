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
 * every switch.  The FPU words are reloaded unconditionally: comparing
 * first was measured slower (the compare waits for stmxcsr's store).
 * Built with -Dcoroutine_fpu_ctl=false, the FPU words are not switched at
 * all: coroutines then share the thread's rounding mode and exception
 * masks (see docs/coroutines.md).
 */
#include "aio/coroutine/coroutine-config.h"
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
    movq    %rsi, %rsp
#if VMM_CO_FPU_CTL
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
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
