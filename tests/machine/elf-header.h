/* SPDX-License-Identifier: MIT */
/* Tests: the ELF64 x86-64 executable header of a test vmlinux, program
 * headers following it (the caller writes them). */
#ifndef VMM_TESTS_ELF_HEADER_H
#define VMM_TESTS_ELF_HEADER_H

#include <elf.h>
#include <stdint.h>
#include <string.h>

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

#endif
