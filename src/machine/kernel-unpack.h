/* SPDX-License-Identifier: MIT */
/*
 * Internal: unpack a bzImage's compressed vmlinux on the host, straight
 * into guest RAM.
 *
 * A bzImage normally decompresses itself inside the guest: the
 * decompressor copies itself out of the way, decompresses the ELF vmlinux
 * to a buffer, picks a (KASLR) location, moves the segments there and
 * applies relocations.  Doing it here instead streams the payload through
 * liblzma or zlib and writes each PT_LOAD segment directly to its physical
 * address - no buffer holds the whole image and nothing is copied twice -
 * after which the vCPU enters the ELF entry point in 64-bit mode with the
 * bzImage's own setup header in the zero page, exactly as the decompressor
 * would have jumped there.  The price is KASLR, as for every vmlinux boot:
 * hence an option (VMM_MACHINE_BOOT_HOST_UNPACK), not the default.
 */
#ifndef VMM_MACHINE_KERNEL_UNPACK_H
#define VMM_MACHINE_KERNEL_UNPACK_H

#include "machine/x86-boot.h"

/*
 * Decode @pl (found in @img by x86_bzimage_payload) and load the ELF
 * kernel it holds into @ram, @ram_len bytes of guest RAM starting at
 * guest-physical 0.  The whole stream is decoded and checked (the xz
 * check, gzip's CRC, the size trailer) before 0 is returned with @ek
 * describing the kernel.  Errors: -ENOTSUP (no decoder for the format),
 * -EINVAL (a corrupt stream, an ELF inside that x86_elf_parse rejects,
 * segments out of order or overlapping in the file, sizes that disagree),
 * -E2BIG (a segment beyond @ram_len, or an image larger than it),
 * -ENOMEM.  On error @ram may have been written to (only inside the
 * segments' ranges).
 */
int x86_unpack_elf(const uint8_t *img, const X86Payload *pl, uint8_t *ram,
                   uint64_t ram_len, X86ElfKernel *ek);

#endif
