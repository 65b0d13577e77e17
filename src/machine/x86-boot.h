/* SPDX-License-Identifier: MIT */
/*
 * Internal: the x86-64 Linux boot protocol (Documentation/arch/x86/boot.rst)
 * over plain buffers.  Nothing here touches KVM: the machine copies the
 * results into guest memory and vCPU registers, and unit tests check them.
 */
#ifndef VMM_MACHINE_X86_BOOT_H
#define VMM_MACHINE_X86_BOOT_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

/* Guest-physical layout of the boot structures (all below 1 MiB). */
#define X86_GDT_ADDR        0x500ull
#define X86_ZERO_PAGE_ADDR  0x7000ull
#define X86_PML4_ADDR       0x9000ull
#define X86_PDPT_ADDR       0xa000ull
#define X86_PD_ADDR         0xb000ull   /* four page directories: 4 GiB */
#define X86_PT_END          0xf000ull
#define X86_CMDLINE_ADDR    0x20000ull
#define X86_CMDLINE_MAX     0x10000u
#define X86_EBDA_START      0x9fc00ull
#define X86_BIOS_START      0xe0000ull  /* ACPI tables live here */
#define X86_HIMEM_START     0x100000ull /* the protected-mode kernel */
#define X86_BZ_ENTRY64      0x200ull    /* a bzImage's startup_64, from its load address */
#define X86_IDENTITY_MAP    (4ull << 30)

/* The 32-bit MMIO hole below 4 GiB: PCI BARs, IOAPIC, LAPIC. */
#define X86_MMIO_HOLE_START 0xc0000000ull
#define X86_MMIO_HOLE_END   0x100000000ull

/* GDT selectors the boot protocol asks for. */
#define X86_BOOT_CS 0x10
#define X86_BOOT_DS 0x18
#define X86_BOOT_TSS 0x20
#define X86_GDT_ENTRIES 5

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_ACPI     3
#define E820_MAX      128

typedef struct X86E820Entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} X86E820Entry;

/* What a bzImage's setup header says, validated. */
typedef struct X86BzImage {
    uint16_t version;         /* boot protocol, e.g. 0x020f */
    uint32_t setup_size;      /* bytes of real-mode setup, header included */
    size_t kernel_offset;     /* start of the protected-mode kernel in the file */
    size_t kernel_size;       /* its length */
    uint32_t init_size;       /* memory the kernel needs from its load address */
    uint32_t initrd_addr_max; /* highest address an initrd byte may occupy */
    uint32_t cmdline_size;    /* longest command line, without the NUL */
    uint32_t kernel_alignment;
    uint64_t pref_address;
    uint16_t xloadflags;
    size_t header_end;        /* end of the setup header in the file */
} X86BzImage;

/*
 * Parse and validate a bzImage of @len bytes.  Any error in a hostile or
 * truncated image gives -ENOEXEC (not a bzImage, or too old for the 64-bit
 * entry) or -EINVAL (inconsistent sizes); never reads out of bounds.
 */
int x86_bzimage_parse(const uint8_t *img, size_t len, X86BzImage *out);

/* The same from the first @head_len bytes of a bzImage file of @len bytes
 * (the setup header lies in the first 0x290; sizes are checked against
 * @len), for a loader that reads the rest straight into guest RAM. */
int x86_bzimage_parse_head(const uint8_t *img, size_t head_len, uint64_t len,
                           X86BzImage *out);

/*
 * The compressed kernel inside a bzImage (protocol >= 2.08): an ELF
 * vmlinux compressed with the kernel's build-time choice, followed by its
 * uncompressed size (le32).  The machine unpacks xz and gzip payloads on
 * the host (kernel-unpack.h) instead of running the guest's decompressor.
 */
typedef enum X86PayloadFormat {
    X86_PAYLOAD_NONE = 0,
    X86_PAYLOAD_GZIP,
    X86_PAYLOAD_XZ,
} X86PayloadFormat;

typedef struct X86Payload {
    X86PayloadFormat format;
    size_t offset;              /* of the compressed stream in the file */
    size_t length;              /* of the stream, the size trailer excluded */
    uint32_t unpacked_size;     /* what the trailer says it unpacks to */
} X86Payload;

/*
 * Find the payload of @img, already parsed into @bz.  0; -ENOTSUP for an
 * older protocol or another compression (the caller lets the guest
 * decompress); -EINVAL for offsets outside the file or a zero size.
 */
int x86_bzimage_payload(const uint8_t *img, size_t len, const X86BzImage *bz,
                        X86Payload *out);

/*
 * An uncompressed x86-64 vmlinux (ELF64): what Firecracker and
 * cloud-hypervisor boot.  Its PT_LOAD segments go to their physical
 * addresses and the vCPU enters the ELF entry point (phys_startup_64) in
 * 64-bit mode with the zero page in RSI, as the bzImage decompressor would
 * have jumped there, so the guest skips decompressing itself (and, like
 * every vmlinux boot, KASLR).
 */
#define X86_ELF_MAX_SEGS 16

typedef struct X86ElfSegment {
    uint64_t paddr, vaddr, offset, filesz, memsz;
} X86ElfSegment;

typedef struct X86ElfKernel {
    uint64_t entry;         /* guest-physical entry point */
    uint64_t load_start;    /* lowest physical address of any segment */
    uint64_t load_end;      /* end of the highest segment, bss included */
    unsigned nseg;
    X86ElfSegment seg[X86_ELF_MAX_SEGS];
} X86ElfKernel;

/*
 * Parse and validate an ELF64 x86-64 executable of @len bytes.  -ENOEXEC
 * when it is not one; -EINVAL for inconsistent headers (segments outside
 * the file, below 1 MiB, wrapping, an entry outside every segment, too many
 * segments).  Never reads out of bounds.
 */
int x86_elf_parse(const uint8_t *img, size_t len, X86ElfKernel *out);

/* The same from the first @head_len bytes of an ELF file of @len bytes
 * (the headers must lie in that head; segments are checked against @len):
 * for the loader, which reads the segments straight into guest RAM, and for
 * a kernel that is still being decompressed. */
int x86_elf_parse_head(const uint8_t *img, size_t head_len, uint64_t len,
                       X86ElfKernel *out);

/* The longest command line an ELF kernel is given (x86 COMMAND_LINE_SIZE
 * is 2048 with the NUL; a vmlinux has no header to say otherwise). */
#define X86_ELF_CMDLINE_MAX 2047u

/*
 * The e820 map for @ram_size bytes of RAM: low memory up to the EBDA,
 * the BIOS area reserved, RAM from 1 MiB to the MMIO hole and the rest
 * above 4 GiB.  Returns the number of entries (at most @max) or -EINVAL.
 */
int x86_e820_build(uint64_t ram_size, X86E820Entry *map, int max);

/*
 * Where an initrd of @size bytes goes: as high as it fits below both the
 * end of low RAM and @bz's initrd_addr_max, page aligned, above the
 * kernel's init_size area.  Returns the address or 0 when it cannot fit.
 */
uint64_t x86_initrd_addr(const X86BzImage *bz, uint64_t ram_size, uint64_t size,
                         uint64_t kernel_load);

/* Parameters of the zero page. */
typedef struct X86BootParams {
    uint64_t cmdline_addr;
    uint32_t cmdline_len;      /* without NUL */
    uint64_t initrd_addr;
    uint64_t initrd_size;
    uint64_t acpi_rsdp_addr;
    const X86E820Entry *e820;
    int e820_entries;
} X86BootParams;

#define X86_ZERO_PAGE_SIZE 4096

/*
 * Fill @zp (4 KiB) from the image's setup header and @p.  Returns 0 or
 * -EINVAL (too many e820 entries, a command line the kernel cannot take,
 * an initrd above 4 GiB with an old protocol).
 */
int x86_zero_page_build(uint8_t *zp, const uint8_t *img, const X86BzImage *bz,
                        const X86BootParams *p);

/*
 * The zero page for an ELF kernel: no setup header to copy, so the loader
 * writes the fields the kernel reads (boot flag, "HdrS", version 2.12,
 * loader type, LOADED_HIGH, alignment, command line size) plus @p.
 * Returns 0 or -EINVAL as above.
 */
int x86_zero_page_build_elf(uint8_t *zp, const X86BootParams *p);

/* The GDT: null, null, 64-bit code (0x10), data (0x18), TSS (0x20). */
void x86_gdt_build(uint64_t gdt[X86_GDT_ENTRIES]);

/*
 * Identity page tables for the first 4 GiB with 2 MiB pages, laid out for
 * guest address X86_PML4_ADDR: @buf covers [X86_PML4_ADDR, X86_PT_END).
 */
void x86_page_tables_build(uint8_t *buf, size_t len);

/* Special and general registers for the 64-bit entry of a kernel loaded at
 * @kernel_load; @sregs is updated in place (it starts as KVM's reset state). */
void x86_boot_sregs(struct kvm_sregs *sregs);
void x86_boot_regs(struct kvm_regs *regs, uint64_t kernel_load);
/* The same for a kernel entered at @rip exactly (an ELF entry point). */
void x86_boot_regs_at(struct kvm_regs *regs, uint64_t rip);

/*
 * Adapt KVM's supported CPUID to vCPU @index of @ncpus: APIC ids, the
 * hypervisor bit, topology leaves.  Entries are edited in place.
 * @tsc_deadline: KVM has KVM_CAP_TSC_DEADLINE_TIMER (with the in-kernel
 * LAPIC), which KVM_GET_SUPPORTED_CPUID does not report by itself: the
 * guest then arms its timer with one MSR write instead of calibrating and
 * programming the LAPIC's count-down timer.
 */
void x86_cpuid_fixup(struct kvm_cpuid_entry2 *e, uint32_t nent, uint32_t index,
                     uint32_t ncpus, bool tsc_deadline);

/* The MSRs a vCPU starts with (Linux expects fast strings enabled). */
#define X86_BOOT_MSR_COUNT 10
void x86_boot_msrs(struct kvm_msr_entry msrs[X86_BOOT_MSR_COUNT]);

/*
 * The code at the reset vector (0xFFFF0), where Linux's "BIOS" reboot
 * method jumps in real mode (it is also what a hardware-reduced ACPI
 * machine without EFI falls back to): pulse the reset line through the
 * keyboard controller, as firmware would.  Fills @buf (16 bytes).
 */
#define X86_RESET_VECTOR 0xffff0ull
void x86_reset_stub(uint8_t buf[16]);

/* Program LINT0 as ExtINT and LINT1 as NMI in a LAPIC register page. */
void x86_lapic_lint_setup(struct kvm_lapic_state *lapic);

#endif
