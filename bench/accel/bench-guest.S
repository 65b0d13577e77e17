/* Real-mode guests for bench-kvm.c, copied to 0x1000 with segments 0. */
	.section .rodata.guest, "a"
	.code16
#define GUEST(name) .globl name, name##_end; name:
#define END(name) name##_end:

/* edi port reads from 0x10, then OUT to 0xf0 and halt. */
GUEST(b_pio_loop)
1:	in	$0x10, %al
	dec	%edi
	jnz	1b
	out	%al, $0xf0
	cli
2:	hlt
	jmp	2b
END(b_pio_loop)

/* Spin forever. */
GUEST(b_spin)
1:	inc	%ecx
	jmp	1b
END(b_spin)

/* Halt forever with interrupts off. */
GUEST(b_halt)
	cli
1:	hlt
	jmp	1b
END(b_halt)

	.section .note.GNU-stack, "", @progbits
