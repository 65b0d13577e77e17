/* SPDX-License-Identifier: MIT */
/*
 * A minimal x86-64 kernel image for measuring a VMM's own start
 * (bench/machine/bench-start.c): an ELF linked at 1 MiB with two entries.
 *
 *  - The ELF entry (64-bit mode, paging on, identity map: what vmmkit-run
 *    gives a vmlinux) writes 'V' to COM1 and powers off through the ACPI
 *    sleep control port vmmkit's machine declares (0x600, SLP_EN | S5).
 *  - The PVH entry (the Xen ELF note PHYS32_ENTRY: 32-bit protected mode,
 *    paging off, what QEMU's -kernel gives a PVH ELF) writes 'V' to COM1
 *    and ends the machine with a triple fault (QEMU -no-reboot exits).
 *
 * Built with -DMINI_STAY the image halts for ever after the byte instead,
 * so that the VMM's memory can be read while its guest runs.
 */
#define COM1            0x3f8
#define ACPI_SLEEP_CTL  0x600
#define ACPI_POWEROFF   0x34    /* SLP_EN (0x20) | SLP_TYP 5 << 2 */

        .section .note.Xen, "a", @note
        .balign 4
        .long   4                       /* namesz: "Xen\0" */
        .long   8                       /* descsz */
        .long   18                      /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz  "Xen"
        .quad   pvh_entry               /* read as 32 or 64 bits: upper half 0 */

        .text
        .code64
        .globl  _start
_start:
        mov     $COM1, %dx
        mov     $'V', %al
        out     %al, %dx
#ifndef MINI_STAY
        mov     $ACPI_SLEEP_CTL, %dx
        mov     $ACPI_POWEROFF, %al
        out     %al, %dx
        lidt    idt_none(%rip)          /* not powered off: triple fault */
        int3
#endif
1:      cli
        hlt
        jmp     1b

        .code32
pvh_entry:
        mov     $COM1, %dx
        mov     $'V', %al
        out     %al, %dx
#ifndef MINI_STAY
        lidt    idt_none                /* no IDT: int3 triple-faults */
        int3
#endif
2:      cli
        hlt
        jmp     2b

        .section .rodata
        .balign 16
idt_none:
        .word   0                       /* limit 0: every vector faults */
        .quad   0
