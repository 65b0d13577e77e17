/* SPDX-License-Identifier: MIT */
/*
 * The x86-64 Linux boot protocol over plain buffers: bzImage validation,
 * e820, the zero page, GDT, identity page tables, boot registers, CPUID
 * and MSR setup.  See x86-boot.h and docs/machine.md.
 */
#include "machine/x86-boot.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* Offsets in the bzImage file and in the zero page (struct boot_params). */
#define ZP_ACPI_RSDP        0x070
#define ZP_EXT_RAMDISK_IMG  0x0c0
#define ZP_EXT_RAMDISK_SIZE 0x0c4
#define ZP_EXT_CMD_LINE     0x0c8
#define ZP_E820_ENTRIES     0x1e8
#define HDR_SETUP_SECTS     0x1f1
#define HDR_BOOT_FLAG       0x1fe
#define HDR_JUMP            0x200
#define HDR_MAGIC           0x202
#define HDR_VERSION         0x206
#define HDR_TYPE_OF_LOADER  0x210
#define HDR_LOADFLAGS       0x211
#define HDR_RAMDISK_IMAGE   0x218
#define HDR_RAMDISK_SIZE    0x21c
#define HDR_CMD_LINE_PTR    0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGN    0x230
#define HDR_RELOCATABLE     0x234
#define HDR_XLOADFLAGS      0x236
#define HDR_CMDLINE_SIZE    0x238
#define HDR_PAYLOAD_OFFSET  0x248
#define HDR_PAYLOAD_LENGTH  0x24c
#define HDR_PREF_ADDRESS    0x258
#define HDR_INIT_SIZE       0x260
#define HDR_CMDLINE_SIZE_END 0x23c  /* the 2.06 header ends here */
#define ZP_HDR_LIMIT        0x290   /* the setup header must end by here */
#define ZP_E820_TABLE       0x2d0

#define LOADED_HIGH 0x01
#define XLF_KERNEL_64 0x0001
#define HDRS_MAGIC 0x53726448u      /* "HdrS" */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr8(uint8_t *p, uint8_t v) { p[0] = v; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, (uint16_t)v);
    wr16(p + 2, (uint16_t)(v >> 16));
}
static void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

int x86_bzimage_parse(const uint8_t *img, size_t len, X86BzImage *out)
{
    return x86_bzimage_parse_head(img, len, len, out);
}

int x86_bzimage_parse_head(const uint8_t *img, size_t head_len, uint64_t len,
                           X86BzImage *out)
{
    memset(out, 0, sizeof(*out));
    if (!img || head_len < ZP_HDR_LIMIT || head_len > len) {
        return -ENOEXEC;
    }
    if (rd16(img + HDR_BOOT_FLAG) != 0xaa55 || rd32(img + HDR_MAGIC) != HDRS_MAGIC) {
        return -ENOEXEC;
    }
    out->version = rd16(img + HDR_VERSION);
    /* 2.12 brought xloadflags and with it the 64-bit entry point. */
    if (out->version < 0x020c || !(img[HDR_LOADFLAGS] & LOADED_HIGH)) {
        return -ENOEXEC;
    }
    out->xloadflags = rd16(img + HDR_XLOADFLAGS);
    if (!(out->xloadflags & XLF_KERNEL_64)) {
        return -ENOEXEC;
    }
    unsigned sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
    out->setup_size = (sects + 1) * 512u;
    out->header_end = HDR_MAGIC + (size_t)img[HDR_JUMP + 1];
    if (out->header_end < HDR_INIT_SIZE + 4 || out->header_end > ZP_HDR_LIMIT ||
        out->header_end > out->setup_size) {
        return -EINVAL;
    }
    if (out->setup_size >= len) {
        return -EINVAL;
    }
    if (len - out->setup_size > UINT32_MAX) {
        return -EINVAL;
    }
    out->kernel_offset = out->setup_size;
    out->kernel_size = (size_t)(len - out->setup_size);
    out->init_size = rd32(img + HDR_INIT_SIZE);
    out->initrd_addr_max = rd32(img + HDR_INITRD_ADDR_MAX);
    out->cmdline_size = rd32(img + HDR_CMDLINE_SIZE);
    out->kernel_alignment = rd32(img + HDR_KERNEL_ALIGN);
    out->pref_address = rd64(img + HDR_PREF_ADDRESS);
    if (out->init_size < out->kernel_size || out->init_size > (1u << 30)) {
        return -EINVAL;
    }
    if (img[HDR_RELOCATABLE] &&
        (out->kernel_alignment == 0 ||
         (out->kernel_alignment & (out->kernel_alignment - 1)))) {
        return -EINVAL;
    }
    if (out->initrd_addr_max < X86_HIMEM_START) {
        return -EINVAL;
    }
    return 0;
}

int x86_bzimage_payload(const uint8_t *img, size_t len, const X86BzImage *bz,
                        X86Payload *out)
{
    static const uint8_t xz_magic[6] = { 0xfd, '7', 'z', 'X', 'Z', 0 };
    memset(out, 0, sizeof(*out));
    /* 2.08 brought payload_offset/length; the header must reach them. */
    if (bz->version < 0x0208 || bz->header_end < HDR_PAYLOAD_LENGTH + 4 ||
        bz->kernel_offset > len || bz->kernel_size > len - bz->kernel_offset) {
        return -ENOTSUP;
    }
    uint32_t off = rd32(img + HDR_PAYLOAD_OFFSET), plen = rd32(img + HDR_PAYLOAD_LENGTH);
    /* Magic bytes plus the size the kernel's build appends after them. */
    if (plen < 10 || off > bz->kernel_size || plen > bz->kernel_size - off) {
        return -EINVAL;
    }
    const uint8_t *p = img + bz->kernel_offset + off;
    if (p[0] == 0x1f && p[1] == 0x8b) {
        out->format = X86_PAYLOAD_GZIP;
    } else if (memcmp(p, xz_magic, sizeof(xz_magic)) == 0) {
        out->format = X86_PAYLOAD_XZ;
    } else {
        return -ENOTSUP;        /* bzip2, lzma, lzo, lz4, zstd: the guest's job */
    }
    out->offset = bz->kernel_offset + off;
    out->length = plen - 4;
    out->unpacked_size = rd32(p + plen - 4);
    return out->unpacked_size ? 0 : -EINVAL;
}

/* ---- ELF vmlinux ------------------------------------------------------------ */

/* Where the loaded segment that holds @addr (a physical address, else a
 * virtual one) puts it physically; UINT64_MAX when none holds it. */
static uint64_t elf_entry_phys(const X86ElfKernel *k, uint64_t addr)
{
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < k->nseg; i++) {
            const X86ElfSegment *s = &k->seg[i];
            uint64_t base = pass == 0 ? s->paddr : s->vaddr;
            if (addr >= base && addr - base < s->memsz) {
                return s->paddr + (addr - base);
            }
        }
    }
    return UINT64_MAX;
}

int x86_elf_parse(const uint8_t *img, size_t len, X86ElfKernel *out)
{
    return x86_elf_parse_head(img, len, len, out);
}

int x86_elf_parse_head(const uint8_t *img, size_t head_len, uint64_t len,
                       X86ElfKernel *out)
{
    Elf64_Ehdr eh;

    memset(out, 0, sizeof(*out));
    if (!img || head_len < sizeof(eh) || head_len > len) {
        return -ENOEXEC;
    }
    memcpy(&eh, img, sizeof(eh));
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64 ||
        eh.e_type != ET_EXEC) {
        return -ENOEXEC;
    }
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64 ||
        eh.e_phoff > head_len ||
        (head_len - eh.e_phoff) / sizeof(Elf64_Phdr) < eh.e_phnum) {
        return -EINVAL;
    }
    out->load_start = UINT64_MAX;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr h;
        memcpy(&h, img + eh.e_phoff + (size_t)i * sizeof(h), sizeof(h));
        if (h.p_type != PT_LOAD || h.p_memsz == 0) {
            continue;
        }
        if (out->nseg == X86_ELF_MAX_SEGS || h.p_filesz > h.p_memsz ||
            h.p_offset > len || h.p_filesz > len - h.p_offset ||
            h.p_paddr < X86_HIMEM_START || h.p_memsz > X86_IDENTITY_MAP ||
            h.p_paddr > X86_IDENTITY_MAP - h.p_memsz) {
            return -EINVAL;
        }
        out->seg[out->nseg++] = (X86ElfSegment){ h.p_paddr, h.p_vaddr, h.p_offset,
                                                 h.p_filesz, h.p_memsz };
        if (h.p_paddr < out->load_start) {
            out->load_start = h.p_paddr;
        }
        if (h.p_paddr + h.p_memsz > out->load_end) {
            out->load_end = h.p_paddr + h.p_memsz;
        }
    }
    if (out->nseg == 0) {
        return -EINVAL;
    }
    out->entry = elf_entry_phys(out, eh.e_entry);
    if (out->entry == UINT64_MAX) {
        return -EINVAL;
    }
    return 0;
}

static int e820_add(X86E820Entry *map, int n, int max, uint64_t addr,
                    uint64_t size, uint32_t type)
{
    if (n < 0 || n >= max) {
        return -EINVAL;
    }
    map[n] = (X86E820Entry){ .addr = addr, .size = size, .type = type };
    return n + 1;
}

int x86_e820_build(uint64_t ram_size, X86E820Entry *map, int max)
{
    const uint64_t low_max = X86_MMIO_HOLE_START;
    if (ram_size < (16ull << 20) || ram_size & 0xfff || ram_size > (1ull << 46)) {
        return -EINVAL;
    }
    uint64_t low_end = ram_size < low_max ? ram_size : low_max;
    int n = 0;
    n = e820_add(map, n, max, 0, X86_EBDA_START, E820_RAM);
    n = e820_add(map, n, max, X86_EBDA_START, 0xa0000 - X86_EBDA_START, E820_RESERVED);
    n = e820_add(map, n, max, X86_BIOS_START, X86_HIMEM_START - X86_BIOS_START,
                 E820_RESERVED);
    n = e820_add(map, n, max, X86_HIMEM_START, low_end - X86_HIMEM_START, E820_RAM);
    if (ram_size > low_max) {
        n = e820_add(map, n, max, X86_MMIO_HOLE_END, ram_size - low_max, E820_RAM);
    }
    return n;
}

uint64_t x86_initrd_addr(const X86BzImage *bz, uint64_t ram_size, uint64_t size,
                         uint64_t kernel_load)
{
    uint64_t top = ram_size < X86_MMIO_HOLE_START ? ram_size : X86_MMIO_HOLE_START;
    if ((uint64_t)bz->initrd_addr_max + 1 < top) {
        top = (uint64_t)bz->initrd_addr_max + 1;
    }
    uint64_t floor = (kernel_load + bz->init_size + 0xfff) & ~0xfffull;
    if (size == 0 || size > top || top - size < floor) {
        return 0;
    }
    return (top - size) & ~0xfffull;
}

/* The fields of the zero page that come from @p (both kinds of kernel). */
static void zero_page_params(uint8_t *zp, const X86BootParams *p)
{
    wr8(zp + HDR_TYPE_OF_LOADER, 0xff);
    wr32(zp + HDR_CMD_LINE_PTR, (uint32_t)p->cmdline_addr);
    wr32(zp + ZP_EXT_CMD_LINE, (uint32_t)(p->cmdline_addr >> 32));
    wr32(zp + HDR_RAMDISK_IMAGE, (uint32_t)p->initrd_addr);
    wr32(zp + ZP_EXT_RAMDISK_IMG, (uint32_t)(p->initrd_addr >> 32));
    wr32(zp + HDR_RAMDISK_SIZE, (uint32_t)p->initrd_size);
    wr32(zp + ZP_EXT_RAMDISK_SIZE, (uint32_t)(p->initrd_size >> 32));
    wr64(zp + ZP_ACPI_RSDP, p->acpi_rsdp_addr);
    wr8(zp + ZP_E820_ENTRIES, (uint8_t)p->e820_entries);
    for (int i = 0; i < p->e820_entries; i++) {
        uint8_t *e = zp + ZP_E820_TABLE + 20 * i;
        wr64(e, p->e820[i].addr);
        wr64(e + 8, p->e820[i].size);
        wr32(e + 16, p->e820[i].type);
    }
}

/* What both kinds of zero page check in @p: the e820 table fits and the
 * command line is not longer than the kernel takes. */
static bool zero_page_params_ok(const X86BootParams *p, uint32_t cmdline_max)
{
    return p->e820_entries >= 0 && p->e820_entries <= E820_MAX &&
           p->cmdline_len <= cmdline_max && p->cmdline_len < X86_CMDLINE_MAX;
}

int x86_zero_page_build(uint8_t *zp, const uint8_t *img, const X86BzImage *bz,
                        const X86BootParams *p)
{
    if (!zero_page_params_ok(p, bz->cmdline_size)) {
        return -EINVAL;
    }
    if (bz->header_end > ZP_HDR_LIMIT || bz->header_end <= HDR_SETUP_SECTS) {
        return -EINVAL;
    }
    memset(zp, 0, X86_ZERO_PAGE_SIZE);
    memcpy(zp + HDR_SETUP_SECTS, img + HDR_SETUP_SECTS, bz->header_end - HDR_SETUP_SECTS);
    zero_page_params(zp, p);
    return 0;
}

int x86_zero_page_build_elf(uint8_t *zp, const X86BootParams *p)
{
    if (!zero_page_params_ok(p, X86_ELF_CMDLINE_MAX)) {
        return -EINVAL;
    }
    memset(zp, 0, X86_ZERO_PAGE_SIZE);
    wr16(zp + HDR_BOOT_FLAG, 0xaa55);
    wr8(zp + HDR_JUMP + 1, (uint8_t)(HDR_CMDLINE_SIZE_END - HDR_MAGIC));
    wr32(zp + HDR_MAGIC, HDRS_MAGIC);
    wr16(zp + HDR_VERSION, 0x020c);
    wr8(zp + HDR_LOADFLAGS, LOADED_HIGH);
    wr32(zp + HDR_KERNEL_ALIGN, 0x1000000);
    wr32(zp + HDR_CMDLINE_SIZE, X86_ELF_CMDLINE_MAX);
    zero_page_params(zp, p);
    return 0;
}

/* A GDT descriptor: flags are the access byte plus the G/DB/L nibble. */
static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
    return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ff) << 40) |
           ((uint64_t)(limit & 0x000f0000u) << 32) |
           ((uint64_t)(base & 0x00ffffffu) << 16) | (uint64_t)(limit & 0xffffu);
}

void x86_gdt_build(uint64_t gdt[X86_GDT_ENTRIES])
{
    gdt[0] = 0;
    gdt[1] = 0;
    gdt[2] = gdt_entry(0xa09b, 0, 0xfffff); /* code: G, L, present, exec/read */
    gdt[3] = gdt_entry(0xc093, 0, 0xfffff); /* data: G, DB, present, read/write */
    gdt[4] = gdt_entry(0x808b, 0, 0xfffff); /* TSS: G, present, busy 64-bit */
}

void x86_page_tables_build(uint8_t *buf, size_t len)
{
    const size_t need = X86_PT_END - X86_PML4_ADDR;
    if (len < need) {
        return;
    }
    memset(buf, 0, need);
    uint8_t *pml4 = buf;
    uint8_t *pdpt = buf + (X86_PDPT_ADDR - X86_PML4_ADDR);
    uint8_t *pd = buf + (X86_PD_ADDR - X86_PML4_ADDR);
    wr64(pml4, X86_PDPT_ADDR | 0x3);                    /* present, writable */
    for (unsigned g = 0; g < 4; g++) {
        wr64(pdpt + 8 * g, (X86_PD_ADDR + 0x1000ull * g) | 0x3);
    }
    for (uint64_t i = 0; i < 4 * 512; i++) {
        wr64(pd + 8 * i, (i << 21) | 0x83);              /* 2 MiB page */
    }
}

static struct kvm_segment seg_from_gdt(uint64_t d, uint16_t sel)
{
    uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
    bool g = (d >> 55) & 1;
    return (struct kvm_segment){
        .base = (uint32_t)(((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000u)),
        .limit = g ? (limit << 12) | 0xfff : limit,
        .selector = sel,
        .type = (uint8_t)((d >> 40) & 0xf),
        .present = (uint8_t)((d >> 47) & 1),
        .dpl = (uint8_t)((d >> 45) & 3),
        .db = (uint8_t)((d >> 54) & 1),
        .s = (uint8_t)((d >> 44) & 1),
        .l = (uint8_t)((d >> 53) & 1),
        .g = (uint8_t)g,
        .avl = (uint8_t)((d >> 52) & 1),
    };
}

void x86_boot_sregs(struct kvm_sregs *s)
{
    uint64_t gdt[X86_GDT_ENTRIES];
    x86_gdt_build(gdt);
    s->cs = seg_from_gdt(gdt[2], X86_BOOT_CS);
    s->ds = s->es = s->fs = s->gs = s->ss = seg_from_gdt(gdt[3], X86_BOOT_DS);
    s->tr = seg_from_gdt(gdt[4], X86_BOOT_TSS);
    s->gdt.base = X86_GDT_ADDR;
    s->gdt.limit = sizeof(gdt) - 1;
    s->idt.base = 0;
    s->idt.limit = 0;
    s->cr0 = 0x80000031ull;   /* PG | NE | ET | PE */
    s->cr3 = X86_PML4_ADDR;
    s->cr4 = 0x20;            /* PAE */
    s->efer = 0x500;          /* LMA | LME */
}

void x86_boot_regs_at(struct kvm_regs *r, uint64_t rip)
{
    memset(r, 0, sizeof(*r));
    r->rflags = 0x2;
    r->rip = rip;
    r->rsi = X86_ZERO_PAGE_ADDR;
}

void x86_boot_regs(struct kvm_regs *r, uint64_t kernel_load)
{
    x86_boot_regs_at(r, kernel_load + X86_BZ_ENTRY64);
}

static unsigned bits_for(uint32_t n)
{
    unsigned b = 0;
    while ((1u << b) < n) {
        b++;
    }
    return b;
}

void x86_cpuid_fixup(struct kvm_cpuid_entry2 *e, uint32_t nent, uint32_t index,
                     uint32_t ncpus, bool tsc_deadline)
{
    for (uint32_t i = 0; i < nent; i++) {
        struct kvm_cpuid_entry2 *c = &e[i];
        switch (c->function) {
        case 1:
            c->ebx = (c->ebx & 0xffff) | (index << 24) | ((ncpus & 0xff) << 16);
            c->ecx |= 1u << 31;               /* running on a hypervisor */
            if (tsc_deadline) {
                c->ecx |= 1u << 24;           /* TSC-deadline timer mode */
            }
            if (ncpus > 1) {
                c->edx |= 1u << 28;           /* HTT: ebx[23:16] is valid */
            }
            break;
        case 0xb:
        case 0x1f:
            c->edx = index;
            if (c->index == 0) {               /* SMT level: one thread */
                c->eax = 0;
                c->ebx = 1;
                c->ecx = 0 | (1u << 8);
            } else if (c->index == 1) {        /* core level: all vCPUs */
                c->eax = bits_for(ncpus);
                c->ebx = ncpus;
                c->ecx = 1 | (2u << 8);
            } else {
                c->eax = c->ebx = 0;
                c->ecx = c->index;
            }
            break;
        case 0x80000008:
            c->ecx = (c->ecx & ~0xf0ffu) | ((ncpus - 1) & 0xff) |
                     (bits_for(ncpus) << 12);
            break;
        case 0x8000001e:
            c->eax = index;
            break;
        default:
            break;
        }
    }
}

void x86_boot_msrs(struct kvm_msr_entry m[X86_BOOT_MSR_COUNT])
{
    static const uint32_t idx[X86_BOOT_MSR_COUNT] = {
        0x174, 0x175, 0x176,                /* SYSENTER_CS/ESP/EIP */
        0xc0000081, 0xc0000082, 0xc0000083, /* STAR, LSTAR, CSTAR */
        0xc0000084, 0xc0000102,             /* SYSCALL_MASK, KERNEL_GS_BASE */
        0x10,                               /* TSC */
        0x1a0,                              /* MISC_ENABLE */
    };
    for (unsigned i = 0; i < X86_BOOT_MSR_COUNT; i++) {
        m[i] = (struct kvm_msr_entry){ .index = idx[i], .data = 0 };
    }
    m[X86_BOOT_MSR_COUNT - 1].data = 1;     /* fast strings */
}

void x86_lapic_lint_setup(struct kvm_lapic_state *lapic)
{
    uint8_t *lint0 = (uint8_t *)lapic->regs + 0x350;
    uint8_t *lint1 = (uint8_t *)lapic->regs + 0x360;
    wr32(lint0, (rd32(lint0) & ~0x700u) | 0x700u);  /* ExtINT */
    wr32(lint1, (rd32(lint1) & ~0x700u) | 0x400u);  /* NMI */
}

void x86_reset_stub(uint8_t buf[16])
{
    static const uint8_t code[] = {
        0xb0, 0xfe,         /* mov al, 0xfe */
        0xe6, 0x64,         /* out 0x64, al: reset */
        0xf4,               /* hlt */
        0xeb, 0xfb,         /* jmp back to the out */
    };
    memset(buf, 0x90, 16);
    memcpy(buf, code, sizeof(code));
}
