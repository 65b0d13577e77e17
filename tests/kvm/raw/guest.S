/*
 * Real-mode guest programs for the raw KVM tests.  Each is copied on its own
 * to GUEST_CODE (0x1000) with CS=DS=ES=SS=0, so the code only uses relative
 * jumps and absolute data addresses (see kvm-raw.h for the memory map).
 * Host-visible results travel by port I/O, MMIO and guest memory.
 */
	.section .rodata.guest, "a"
	.code16

#define GUEST(name) .globl name, name##_end; name:
#define END(name) name##_end:

/* Port I/O of each size and direction, then HLT. */
GUEST(guest_pio)
	mov	$0x1234, %ax
	out	%ax, $0x10		/* OUT 2 bytes to 0x10 */
	mov	$0xab, %al
	out	%al, $0x11		/* OUT 1 byte to 0x11 */
	in	$0x12, %al		/* IN 1 byte: the host answers */
	add	$1, %al
	out	%al, $0x13		/* echo answer + 1 */
	mov	$0x100, %dx
	mov	$0xdeadbeef, %eax
	out	%eax, %dx		/* OUT 4 bytes to 0x100 */
	in	%dx, %eax		/* IN 4 bytes from 0x100 */
	not	%eax
	out	%eax, %dx		/* echo ~answer */
	hlt
END(guest_pio)

/* String output: rep outsb of 16 bytes from 0x2000 to port 0x14. */
GUEST(guest_outs)
	cld
	mov	$0x2000, %si
	mov	$16, %cx
	mov	$0x14, %dx
	rep outsb
	hlt
END(guest_outs)

/* MMIO to the unbacked window at 0xd000: two writes, one read. */
GUEST(guest_mmio)
	mov	$0xdeadbeef, %eax
	mov	%eax, 0xd000		/* write 4 bytes */
	movb	$0x42, 0xd010		/* write 1 byte */
	mov	0xd020, %ax		/* read 2 bytes: the host answers */
	out	%ax, $0x10		/* echo the answer */
	hlt
END(guest_mmio)

/* Sum 16 words at 0x2000 into 0x3000 (and port 0x10); fill 0x3100.. with 0..255. */
GUEST(guest_sum)
	xor	%ax, %ax
	mov	$0x2000, %si
	mov	$16, %cx
1:	add	(%si), %ax
	add	$2, %si
	loop	1b
	mov	%ax, 0x3000
	out	%ax, $0x10
	mov	$0x3100, %di
	xor	%al, %al
	mov	$256, %cx
2:	mov	%al, (%di)
	inc	%di
	inc	%al
	loop	2b
	hlt
END(guest_sum)

/* Count from 1 to BX: OUT each value to port DX and store it at (SI). */
GUEST(guest_count)
	xor	%ax, %ax
1:	inc	%ax
	out	%ax, %dx
	mov	%ax, (%si)
	cmp	%bx, %ax
	jne	1b
	hlt
END(guest_count)

/* Read a word from the read-only slot at 0x8000, echo it, then try to write it. */
GUEST(guest_rom)
	mov	0x8000, %ax
	out	%ax, $0x10
	movw	$0x5555, 0x8000		/* a write to read-only memory: an MMIO exit */
	mov	0x8000, %ax
	out	%ax, $0x11		/* still the old value */
	hlt
END(guest_rom)

/* Port 0x30 is an ioeventfd: no exit; then OUT to 0x31 does exit. */
GUEST(guest_ioevent)
	mov	$0x77, %al
	out	%al, $0x30
	out	%al, $0x30
	mov	$0x01, %al
	out	%al, $0x31
	hlt
END(guest_ioevent)

/* Spin forever: only a signal or immediate_exit gets the vCPU out. */
GUEST(guest_spin)
1:	jmp	1b
END(guest_spin)

/* Write a byte to each of pages 3 and 5, then HLT (dirty logging). */
GUEST(guest_dirty)
	movb	$1, 0x3000
	movb	$1, 0x5008
	hlt
END(guest_dirty)

	.section .note.GNU-stack, "", @progbits
