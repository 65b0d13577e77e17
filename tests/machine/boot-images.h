/* SPDX-License-Identifier: MIT */
/* Tests: the headers of test kernels - a bzImage's setup header and an ELF
 * vmlinux's executable header. */
#ifndef VMM_TESTS_BOOT_IMAGES_H
#define VMM_TESTS_BOOT_IMAGES_H

#include <elf.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>

static inline void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

/* A minimal valid bzImage setup header in @img: 4 setup sectors, protocol
 * 2.15, 64-bit entry, @init_size; no payload fields. */
static inline void test_bzimage_header(uint8_t *img, uint32_t init_size)
{
    img[0x1f1] = 4;
    put16(img + 0x1fe, 0xaa55);
    img[0x200] = 0xeb;
    img[0x201] = 0x6a;                     /* header ends at 0x26c */
    put32(img + 0x202, 0x53726448);
    put16(img + 0x206, 0x020f);
    img[0x211] = 0x01;                     /* LOADED_HIGH */
    put32(img + 0x22c, 0x7fffffff);        /* initrd_addr_max */
    put32(img + 0x230, 0x200000);          /* kernel_alignment */
    img[0x234] = 1;
    put16(img + 0x236, 0x1);               /* XLF_KERNEL_64 */
    put32(img + 0x238, 2047);              /* cmdline_size */
    put32(img + 0x258, 0x1000000);         /* pref_address */
    put32(img + 0x260, init_size);
}

/* The ELF64 x86-64 executable header of a test vmlinux; program headers
 * follow it (the caller writes them). */
static inline void test_elf_header(uint8_t *img, uint64_t entry, uint16_t phnum)
{
    Elf64_Ehdr eh = { 0 };
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry;
    eh.e_phoff = sizeof(eh);
    eh.e_ehsize = sizeof(eh);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = phnum;
    memcpy(img, &eh, sizeof(eh));
}

/* A vmlinux of one 16-byte segment at 16 MiB, written to a new file
 * named from the mkstemp() template @path.  0 or -1. */
static inline int test_write_tiny_kernel(char *path)
{
    uint8_t img[0x1100] = { 0 };
    test_elf_header(img, 0x1000000, 1);
    Elf64_Phdr ph = { .p_type = PT_LOAD, .p_offset = 0x1000, .p_vaddr = 0x1000000,
                      .p_paddr = 0x1000000, .p_filesz = 16, .p_memsz = 16,
                      .p_flags = PF_R | PF_X, .p_align = 0x1000 };
    memcpy(img + sizeof(Elf64_Ehdr), &ph, sizeof(ph));
    int fd = mkstemp(path);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = write(fd, img, sizeof(img));
    close(fd);
    return n == (ssize_t)sizeof(img) ? 0 : -1;
}

#endif
