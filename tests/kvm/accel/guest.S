/*
 * Guest programs for the accel/ real-KVM tests.  Each is copied on its own
 * to 0x1000; real-mode ones run with all segments 0, the long-mode one with
 * the identity map tests/kvm/accel/test-accel-kvm.c builds.  Results travel
 * by port I/O: port 0xf0 = "end the VM with this value", 0xf1 = "ready",
 * 0x10-0x1f = values the host records.  See the test for the memory map.
 */
	.section .rodata.guest, "a"

#define GUEST(name) .globl name, name##_end; name:
#define END(name) name##_end:
#define ABS(label, start) ((label) - (start) + 0x1000)

	.code16

/* PIO both ways, MMIO both ways, then end with 0x77. */
GUEST(g_io)
	mov	$0x42, %al
	out	%al, $0x10		/* OUT 1 byte */
	in	$0x10, %ax		/* IN 2 bytes: the host answers */
	out	%ax, $0x11		/* echo */
	mov	$0xdeadbeef, %eax
	mov	%eax, 0xd004		/* MMIO write 4 bytes */
	mov	0xd008, %eax		/* MMIO read 4 bytes */
	out	%eax, $0x12		/* echo */
	mov	$0x77, %al
	out	%al, $0xf0
	hlt
END(g_io)

/* HLT (exits to the VMM without an in-kernel irqchip), count wake-ups. */
GUEST(g_hlt)
	xor	%ax, %ax
1:	hlt
	inc	%ax
	out	%ax, $0x11
	jmp	1b
END(g_hlt)

/* Report eax, ebx and the TSC's high and low halves, then end. */
GUEST(g_regs)
	out	%eax, $0x12
	mov	%ebx, %eax
	out	%eax, $0x13
	rdtsc
	mov	%edx, %eax
	out	%eax, $0x14
	mov	$0x1, %al
	out	%al, $0xf0
	hlt
END(g_regs)

/* Spin forever incrementing the dword at 0x3000 and ecx. */
GUEST(g_spin)
1:	incl	0x3000
	inc	%ecx
	jmp	1b
END(g_spin)

/* Halt forever with interrupts off (blocks in KVM_RUN with an irqchip). */
GUEST(g_halt_forever)
	cli
1:	hlt
	jmp	1b
END(g_halt_forever)

/* Read the word at 0x8000 (slot 1) edi times; a wrong value is reported
 * on port 0x15.  Ends with 0x99. */
GUEST(g_read_loop)
	mov	$0xf1, %dx
	out	%al, %dx
1:	mov	0x8000, %ax
	cmp	$0x5a5a, %ax
	jne	2f
	dec	%edi
	jnz	1b
	mov	$0x99, %al
	out	%al, $0xf0
	hlt
2:	out	%ax, $0x15
	hlt
END(g_read_loop)

/* Write to slot 1 pages 0, 1 and 3 (0x8000, 0x9000, 0xb000), then end. */
GUEST(g_dirty)
	movb	$1, 0x8000
	movb	$2, 0x9010
	movb	$3, 0xb800
	mov	$0x1, %al
	out	%al, $0xf0
	hlt
END(g_dirty)

/* Hammer unhandled ports and MMIO 1000 times each way, then end. */
GUEST(g_hammer)
	mov	$1000, %cx
1:	in	$0x99, %al
	out	%al, $0x98
	mov	0xe000, %al
	mov	%al, 0xe004
	loop	1b
	mov	$0x2, %al
	out	%al, $0xf0
	hlt
END(g_hammer)

/* A triple fault: an empty IDT, then an exception. */
GUEST(g_triple)
	lidt	ABS(9f, g_triple)
	int3
	hlt
9:	.word	0
	.long	0
END(g_triple)

/* Jump into unbacked memory: KVM cannot fetch the instruction. */
GUEST(g_fetch_mmio)
	mov	$0xe000, %ax
	jmp	*%ax
END(g_fetch_mmio)

/*
 * Interrupts through the in-kernel PIC: IRQ 5 at vector 0x25.  Program
 * both PICs, install the handler, say "ready" on 0xf1, then halt with
 * interrupts on.  Each interrupt sends the running count to port 0x16.
 */
GUEST(g_irq)
	movw	$ABS(8f, g_irq), 0x94	/* IVT[0x25] = 0:handler */
	movw	$0, 0x96
	mov	$0x11, %al		/* master: ICW1..4, then mask all but IRQ5 */
	out	%al, $0x20
	mov	$0x20, %al
	out	%al, $0x21
	mov	$0x04, %al
	out	%al, $0x21
	mov	$0x01, %al
	out	%al, $0x21
	mov	$0xdf, %al
	out	%al, $0x21
	mov	$0x11, %al		/* slave: ICW1..4, all masked */
	out	%al, $0xa0
	mov	$0x28, %al
	out	%al, $0xa1
	mov	$0x02, %al
	out	%al, $0xa1
	mov	$0x01, %al
	out	%al, $0xa1
	mov	$0xff, %al
	out	%al, $0xa1
	movw	$0, 0x3010
	out	%al, $0xf1
	sti
1:	hlt
	jmp	1b
8:	push	%ax
	mov	$0x20, %al		/* EOI */
	out	%al, $0x20
	incw	0x3010
	mov	0x3010, %ax
	out	%ax, $0x16
	pop	%ax
	iret
END(g_irq)

/* Write port 0x50 (an ioeventfd) ebx times, then end. */
GUEST(g_ioevent)
1:	mov	%bx, %ax
	out	%ax, $0x50
	dec	%bx
	jnz	1b
	mov	$0x3, %al
	out	%al, $0xf0
	hlt
END(g_ioevent)

/* The exit round trip: edi port reads from 0x10, then end. */
GUEST(g_pio_loop)
1:	in	$0x10, %al
	dec	%edi
	jnz	1b
	mov	$0x4, %al
	out	%al, $0xf0
	hlt
END(g_pio_loop)

/* Three writes to a coalesced MMIO zone, then a PIO exit, then end. */
GUEST(g_coalesced)
	mov	$1, %eax
	mov	%eax, 0xd100
	mov	$2, %eax
	mov	%eax, 0xd104
	mov	$3, %eax
	mov	%eax, 0xd108
	out	%al, $0x17
	mov	$0x6, %al
	out	%al, $0xf0
	hlt
END(g_coalesced)

	.code64
/* Long mode: an 8-byte MMIO write and read, a 64-bit register report. */
GUEST(g_long)
	movabs	$0x1122334455667788, %rax
	mov	%rax, 0xd000
	mov	0xd008, %rbx
	mov	%ebx, %eax
	out	%eax, $0x12
	shr	$32, %rbx
	mov	%ebx, %eax
	out	%eax, $0x13
	mov	%cr0, %rax
	out	%eax, $0x14
	mov	$0x5, %al
	out	%al, $0xf0
	hlt
END(g_long)

/* Long mode, XSAVE enabled (CR4.OSXSAVE | OSFXSR, XCR0 = x87|SSE|AVX):
 * load xmm0 from 0x3000, say ready, spin until the host sets 0x3200, store
 * xmm0 to 0x3100 and end with 6.  (SSE, not AVX: under QEMU 7.2's TCG a
 * nested guest triple-faults at its first VEX instruction; the host puts
 * AVX state in through the state API instead.) */
GUEST(g_avx)
	mov	%cr4, %rax
	or	$0x40200, %rax
	mov	%rax, %cr4
	xor	%ecx, %ecx
	xor	%edx, %edx
	mov	0x3300, %eax		/* XCR0 from the host: 7, or 3 without AVX */
	xsetbv
	movdqu	0x3000, %xmm0
	out	%al, $0xf1
1:	pause
	cmpl	$0, 0x3200
	je	1b
	movdqu	%xmm0, 0x3100
	mov	$0x6, %al
	out	%al, $0xf0
	hlt
END(g_avx)

	.section .note.GNU-stack, "", @progbits
