/* SPDX-License-Identifier: MIT */
/*
 * The guest of vmm_kvm_probe() (kvm-probe.c): 64-bit code, copied to guest
 * physical 0x1000 and entered in long mode with paging at one of the entry
 * points below, one check per run.  Each check ends by writing its result
 * byte to port 0xf0 (the host ends the run there), then halts.  An
 * instruction KVM cannot execute ends the run with its exit instead
 * (KVM_EXIT_INTERNAL_ERROR on an emulation-only KVM).
 *
 * Addresses (kvm-probe.h): data at 0x7000 (the cmpxchg16b target, 16-byte
 * aligned), the TSC read at 0x7010, the int3 flag at 0x7020, the XSAVE
 * area at 0x8000 (64-byte aligned).  Jumps are relative, so the code runs
 * wherever it is copied; only the data addresses are absolute.
 */
#include "kvm-probe.h"

    .section .rodata
    .balign 16
    .globl kvm_probe_guest, kvm_probe_guest_end
    .globl kvm_probe_long, kvm_probe_loop, kvm_probe_cx16, kvm_probe_xsave
    .globl kvm_probe_int3, kvm_probe_int3_handler, kvm_probe_tsc
    .code64
kvm_probe_guest:

/* Long mode with paging reached: report at once. */
kvm_probe_long:
    mov $PROBE_OK_LONG, %al
    jmp report

/* The timed loop: PROBE_LOOP_ITERS iterations of two instructions.  The
 * host reads %rcx when it stops a loop that outlasts its budget. */
kvm_probe_loop:
    mov $PROBE_LOOP_ITERS, %ecx
1:  dec %rcx
    jnz 1b
    mov $PROBE_OK_LOOP, %al
    jmp report

/* lock cmpxchg16b on memory that holds rdx:rax = 0: it must store rcx:rbx
 * and set ZF. */
kvm_probe_cx16:
    xor %eax, %eax
    xor %edx, %edx
    movabs $0x1122334455667788, %rbx
    movabs $0x99aabbccddeeff00, %rcx
    lock cmpxchg16b PROBE_DATA_GPA
    jnz bad
    cmp PROBE_DATA_GPA, %rbx
    jne bad
    cmp PROBE_DATA_GPA + 8, %rcx
    jne bad
    mov $PROBE_OK_CX16, %al
    jmp report

/* XCR0 = x87|SSE, then xsave and xrstor of those components. */
kvm_probe_xsave:
    xor %ecx, %ecx
    mov $3, %eax
    xor %edx, %edx
    xsetbv
    mov $3, %eax
    xor %edx, %edx
    xsave64 PROBE_XSAVE_GPA
    xrstor64 PROBE_XSAVE_GPA
    mov $PROBE_OK_XSAVE, %al
    jmp report

/* int3 through the IDT's vector 3: the handler sets the flag and returns
 * with iretq. */
kvm_probe_int3:
    movb $0, PROBE_INT3_FLAG_GPA
    int3
    cmpb $1, PROBE_INT3_FLAG_GPA
    jne bad
    mov $PROBE_OK_INT3, %al
    jmp report
kvm_probe_int3_handler:
    movb $1, PROBE_INT3_FLAG_GPA
    iretq

/* The guest's TSC as it reads it, for the host to compare with the value it
 * set through KVM_SET_MSRS. */
kvm_probe_tsc:
    rdtsc
    mov %eax, PROBE_TSC_GPA
    mov %edx, PROBE_TSC_GPA + 4
    mov $PROBE_OK_TSC, %al
    jmp report

bad:
    mov $PROBE_BAD, %al
report:
    out %al, $PROBE_PORT
3:  hlt
    jmp 3b
kvm_probe_guest_end:

    .section .note.GNU-stack, "", @progbits
