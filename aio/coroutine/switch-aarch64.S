/* SPDX-License-Identifier: MIT */
/*
 * Coroutine switch for AArch64 (AAPCS64).
 *
 * int co_switch_asm(void **save_sp, void *new_sp, int action)
 *
 * Saves what the ABI makes callee-saved: x19-x28, the frame pointer x29,
 * the link register x30, the low halves of v8-v15 (d8-d15) and FPCR (its
 * rounding and trap controls are preserved across calls).  FPCR is written
 * back only when it differs, since "msr fpcr" can be slow.  Without
 * VMM_CO_FPU_CTL (-Dcoroutine_fpu_ctl=false) FPCR is not switched.
 *
 * Frame on a suspended stack (176 bytes, 16-byte aligned):
 *   sp+0 x19 x20 ... x28 x29 x30 (96 bytes), sp+96 d8..d15 (64 bytes),
 *   sp+160 FPCR, sp+168 padding
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
    .type   co_switch_asm, %function
    .p2align 4
co_switch_asm:
    .cfi_startproc
    sub     sp, sp, #176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
#if VMM_CO_FPU_CTL
    mrs     x9, fpcr
    str     x9, [sp, #160]
#endif
    mov     x10, sp
    str     x10, [x0]
    mov     sp, x1
#if VMM_CO_FPU_CTL
    ldr     x10, [sp, #160]
    cmp     x10, x9
    b.ne    2f
#endif
1:  ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #176
    mov     w0, w2
    ret
2:  msr     fpcr, x10
    b       1b
    .cfi_endproc
    .size   co_switch_asm, .-co_switch_asm

/* First code on a fresh stack: x19 holds the coroutine. */
    .globl  co_trampoline_asm
    .hidden co_trampoline_asm
    .type   co_trampoline_asm, %function
    .p2align 4
co_trampoline_asm:
    .cfi_startproc
    .cfi_undefined x30
    mov     x29, #0
    mov     x0, x19
    bl      co_trampoline
    brk     #0
    .cfi_endproc
    .size   co_trampoline_asm, .-co_trampoline_asm

    .section .note.GNU-stack, "", %progbits
