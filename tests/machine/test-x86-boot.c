/* SPDX-License-Identifier: MIT */
/* Unit tests: bzImage parsing (hostile images included), e820, zero page,
 * GDT, page tables, boot registers, CPUID and LAPIC setup. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <elf.h>

#include "boot-images.h"
#include "machine/x86-boot.h"

#define IMG_LEN (64 * 1024)

static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

/* A minimal valid bzImage: 4 setup sectors, protocol 2.15, 64-bit entry. */
static uint8_t *make_image(size_t len)
{
    uint8_t *img = calloc(1, len);
    test_bzimage_header(img, 0x800000);
    return img;
}

static void test_bzimage_valid(void **state)
{
    (void)state;
    uint8_t *img = make_image(IMG_LEN);
    X86BzImage bz;
    assert_int_equal(x86_bzimage_parse(img, IMG_LEN, &bz), 0);
    assert_int_equal(bz.version, 0x020f);
    assert_int_equal(bz.setup_size, 5 * 512);
    assert_int_equal(bz.kernel_offset, 5 * 512);
    assert_int_equal(bz.kernel_size, IMG_LEN - 5 * 512);
    assert_int_equal(bz.cmdline_size, 2047);
    assert_int_equal(bz.header_end, 0x26c);
    assert_int_equal(bz.init_size, 0x800000);
    /* setup_sects 0 means 4. */
    img[0x1f1] = 0;
    assert_int_equal(x86_bzimage_parse(img, IMG_LEN, &bz), 0);
    assert_int_equal(bz.setup_size, 5 * 512);
    free(img);
}

/* The loader parses the first bytes of the file and reads the rest into
 * guest RAM: the head gives what the whole image gives, sizes come from the
 * file's length, and a head too short for the setup header is refused. */
static void test_bzimage_head(void **state)
{
    (void)state;
    uint8_t *img = make_image(IMG_LEN);
    X86BzImage whole, head;
    assert_int_equal(x86_bzimage_parse(img, IMG_LEN, &whole), 0);
    assert_int_equal(x86_bzimage_parse_head(img, 4096, IMG_LEN, &head), 0);
    assert_memory_equal(&whole, &head, sizeof(whole));
    /* A file of 100 MiB: only its length changes the kernel's size. */
    assert_int_equal(x86_bzimage_parse_head(img, 4096, 100u << 20, &head), -EINVAL);
    img[0x260] = 0;                     /* init_size 256 MiB */
    img[0x261] = 0;
    img[0x262] = 0;
    img[0x263] = 0x10;
    assert_int_equal(x86_bzimage_parse_head(img, 4096, 100u << 20, &head), 0);
    assert_int_equal(head.kernel_size, (100u << 20) - 5 * 512);
    /* The setup header must be in the head; the head in the file. */
    assert_int_equal(x86_bzimage_parse_head(img, 0x28f, IMG_LEN, &head), -ENOEXEC);
    assert_int_equal(x86_bzimage_parse_head(img, 4096, 4095, &head), -ENOEXEC);
    /* Setup sectors reaching the end of the file. */
    assert_int_equal(x86_bzimage_parse_head(img, 0x290, 5 * 512, &head), -EINVAL);
    free(img);
}

static void test_bzimage_rejects(void **state)
{
    (void)state;
    X86BzImage bz;
    uint8_t *img = make_image(IMG_LEN);
    assert_int_equal(x86_bzimage_parse(NULL, 0, &bz), -ENOEXEC);
    assert_int_equal(x86_bzimage_parse(img, 0x100, &bz), -ENOEXEC);
    /* Wrong magic, too old, no 64-bit entry, not loaded high. */
    struct { size_t off; uint8_t val; int err; } cases[] = {
        { 0x1fe, 0x00, -ENOEXEC }, { 0x202, 'X', -ENOEXEC }, { 0x206, 0x0b, -ENOEXEC },
        { 0x207, 0x01, -ENOEXEC }, { 0x236, 0x00, -ENOEXEC }, { 0x211, 0x00, -ENOEXEC },
        { 0x201, 0x10, -EINVAL },  /* header too short */
        { 0x201, 0xff, -EINVAL },  /* header past the zero page's room */
        { 0x1f1, 0xff, -EINVAL },  /* setup larger than the file */
        { 0x263, 0x00, -EINVAL },  /* init_size smaller than the kernel */
        { 0x230, 0x03, -EINVAL },  /* alignment not a power of two */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *bad = make_image(IMG_LEN);
        bad[cases[i].off] = cases[i].val;
        if (cases[i].off == 0x263) {
            put32(bad + 0x260, 100);
        }
        assert_int_equal(x86_bzimage_parse(bad, IMG_LEN, &bz), cases[i].err);
        free(bad);
    }
    /* Every truncation is refused or parsed, never read past the end
     * (AddressSanitizer watches the copies). */
    for (size_t len = 0; len < 0x1000; len++) {
        uint8_t *t = malloc(len ? len : 1);
        memcpy(t, img, len);
        int r = x86_bzimage_parse(t, len, &bz);
        assert_true(r == 0 || r == -ENOEXEC || r == -EINVAL);
        if (len <= 5 * 512) {
            assert_int_not_equal(r, 0);
        }
        free(t);
    }
    free(img);
}

static void test_bzimage_random(void **state)
{
    (void)state;
    /* Random corruption of the header: errors or a consistent result. */
    unsigned seed = 12345;
    uint8_t *img = make_image(8192);
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t *t = malloc(8192);
        memcpy(t, img, 8192);
        for (int k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            t[0x1f0 + (seed >> 8) % 0x80] = (uint8_t)(seed >> 20);
        }
        X86BzImage bz;
        if (x86_bzimage_parse(t, 8192, &bz) == 0) {
            assert_true(bz.kernel_offset + bz.kernel_size == 8192);
            assert_true(bz.header_end <= 0x290 && bz.header_end <= bz.setup_size);
            assert_true(bz.init_size >= bz.kernel_size);
            uint8_t zp[X86_ZERO_PAGE_SIZE];
            X86BootParams p = { .cmdline_len = 0 };
            assert_int_equal(x86_zero_page_build(zp, t, &bz, &p), 0);
        }
        free(t);
    }
    free(img);
}

/* A minimal vmlinux: text at 16 MiB (virtual 0xffffffff81000000), data
 * with a bss after it, entry given physically as x86-64 vmlinux does. */
#define ELF_LEN 16384
static uint8_t *make_elf(void)
{
    uint8_t *img = calloc(1, ELF_LEN);
    test_elf_header(img, 0x1000000, 3);
    Elf64_Phdr ph[3] = {
        { .p_type = PT_LOAD, .p_offset = 4096, .p_vaddr = 0xffffffff81000000ull,
          .p_paddr = 0x1000000, .p_filesz = 4096, .p_memsz = 4096 },
        { .p_type = PT_NOTE, .p_offset = 12288, .p_filesz = 16, .p_memsz = 16 },
        { .p_type = PT_LOAD, .p_offset = 8192, .p_vaddr = 0xffffffff81200000ull,
          .p_paddr = 0x1200000, .p_filesz = 4096, .p_memsz = 0x10000 },
    };
    memcpy(img + sizeof(Elf64_Ehdr), ph, sizeof(ph));
    return img;
}

static Elf64_Phdr *elf_ph(uint8_t *img, int i)
{
    return (Elf64_Phdr *)(img + sizeof(Elf64_Ehdr)) + i;
}

static void test_elf_valid(void **state)
{
    (void)state;
    uint8_t *img = make_elf();
    X86ElfKernel k;
    assert_int_equal(x86_elf_parse(img, ELF_LEN, &k), 0);
    assert_int_equal(k.nseg, 2);
    assert_int_equal(k.entry, 0x1000000);
    assert_int_equal(k.load_start, 0x1000000);
    assert_int_equal(k.load_end, 0x1210000);
    assert_int_equal(k.seg[1].filesz, 4096);
    assert_int_equal(k.seg[1].memsz, 0x10000);
    /* A virtual entry point is translated through its segment. */
    ((Elf64_Ehdr *)img)->e_entry = 0xffffffff81000100ull;
    assert_int_equal(x86_elf_parse(img, ELF_LEN, &k), 0);
    assert_int_equal(k.entry, 0x1000100);
    uint64_t entry = k.entry;
    /* A bzImage is not an ELF and the other way round. */
    uint8_t *bzi = make_image(8192);
    assert_int_equal(x86_elf_parse(bzi, 8192, &k), -ENOEXEC);
    X86BzImage bz;
    assert_int_equal(x86_bzimage_parse(img, ELF_LEN, &bz), -ENOEXEC);
    free(bzi);
    /* The zero page says what the kernel reads from a setup header. */
    uint8_t zp[X86_ZERO_PAGE_SIZE];
    X86E820Entry e820[8];
    int n = x86_e820_build(256u << 20, e820, 8);
    X86BootParams p = { .cmdline_addr = X86_CMDLINE_ADDR, .cmdline_len = 10,
                        .initrd_addr = 0x8000000, .initrd_size = 4096,
                        .acpi_rsdp_addr = X86_BIOS_START, .e820 = e820, .e820_entries = n };
    assert_int_equal(x86_zero_page_build_elf(zp, &p), 0);
    assert_int_equal(zp[0x1fe] | zp[0x1ff] << 8, 0xaa55);
    assert_int_equal(get32(zp + 0x202), 0x53726448);
    assert_int_equal(get32(zp + 0x228), X86_CMDLINE_ADDR);
    assert_int_equal(get32(zp + 0x218), 0x8000000);
    assert_int_equal(get32(zp + 0x21c), 4096);
    assert_int_equal(zp[0x210], 0xff);
    assert_int_equal(zp[0x1e8], n);
    assert_int_equal(get64(zp + 0x70), X86_BIOS_START);
    p.cmdline_len = X86_ELF_CMDLINE_MAX + 1;
    assert_int_equal(x86_zero_page_build_elf(zp, &p), -EINVAL);
    /* The boot registers enter exactly at the entry point. */
    struct kvm_regs r;
    x86_boot_regs_at(&r, entry);
    assert_int_equal(r.rip, 0x1000100);
    assert_int_equal(r.rsi, X86_ZERO_PAGE_ADDR);
    free(img);
}

static void test_elf_rejects(void **state)
{
    (void)state;
    X86ElfKernel k;
    uint8_t *img = make_elf();
    assert_int_equal(x86_elf_parse(NULL, 0, &k), -ENOEXEC);
    assert_int_equal(x86_elf_parse(img, sizeof(Elf64_Ehdr) - 1, &k), -ENOEXEC);
    /* Program headers past the end of the file. */
    assert_int_equal(x86_elf_parse(img, sizeof(Elf64_Ehdr) + 10, &k), -EINVAL);
    uint8_t *t = malloc(ELF_LEN);
#define EDIT(stmt, err) do { memcpy(t, img, ELF_LEN); stmt; \
        assert_int_equal(x86_elf_parse(t, ELF_LEN, &k), err); } while (0)
    EDIT(t[EI_CLASS] = ELFCLASS32, -ENOEXEC);
    EDIT(((Elf64_Ehdr *)t)->e_machine = EM_386, -ENOEXEC);
    EDIT(((Elf64_Ehdr *)t)->e_type = ET_DYN, -ENOEXEC);
    EDIT(((Elf64_Ehdr *)t)->e_phnum = 0, -EINVAL);
    EDIT(((Elf64_Ehdr *)t)->e_phentsize = 32, -EINVAL);
    EDIT(((Elf64_Ehdr *)t)->e_phoff = ELF_LEN - 8, -EINVAL);
    EDIT(((Elf64_Ehdr *)t)->e_phoff = UINT64_MAX - 8, -EINVAL);
    EDIT(elf_ph(t, 0)->p_filesz = 8192, -EINVAL);                 /* > memsz */
    EDIT(elf_ph(t, 0)->p_offset = ELF_LEN - 100, -EINVAL);        /* past EOF */
    EDIT(elf_ph(t, 0)->p_offset = UINT64_MAX - 10, -EINVAL);
    EDIT(elf_ph(t, 0)->p_paddr = 0x7000, -EINVAL);                /* below 1 MiB */
    EDIT(elf_ph(t, 2)->p_paddr = UINT64_MAX - 0x1000, -EINVAL);   /* wraps */
    EDIT(elf_ph(t, 2)->p_memsz = 1ull << 40, -EINVAL);
    EDIT(((Elf64_Ehdr *)t)->e_entry = 0x5000000, -EINVAL);        /* in no segment */
    EDIT(elf_ph(t, 0)->p_type = PT_NULL; elf_ph(t, 2)->p_type = PT_NULL, -EINVAL);
#undef EDIT
    free(t);
    free(img);
}

static void test_elf_random(void **state)
{
    (void)state;
    /* Random corruption of the headers: errors or a consistent result. */
    unsigned seed = 777;
    uint8_t *img = make_elf();
    uint8_t *t = malloc(ELF_LEN);
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(t, img, ELF_LEN);
        for (int k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            t[(seed >> 8) % (sizeof(Elf64_Ehdr) + 3 * sizeof(Elf64_Phdr))] = (uint8_t)(seed >> 20);
        }
        X86ElfKernel k;
        if (x86_elf_parse(t, ELF_LEN, &k) == 0) {
            assert_true(k.nseg >= 1 && k.nseg <= X86_ELF_MAX_SEGS);
            for (unsigned i = 0; i < k.nseg; i++) {
                assert_true(k.seg[i].offset + k.seg[i].filesz <= ELF_LEN);
                assert_true(k.seg[i].filesz <= k.seg[i].memsz);
                assert_true(k.seg[i].paddr >= X86_HIMEM_START);
                assert_true(k.seg[i].paddr + k.seg[i].memsz <= X86_IDENTITY_MAP);
            }
            assert_true(k.entry >= k.load_start && k.entry < k.load_end);
        }
    }
    free(t);
    free(img);
}

static void test_e820(void **state)
{
    (void)state;
    X86E820Entry m[8];
    int n = x86_e820_build(256ull << 20, m, 8);
    assert_int_equal(n, 4);
    assert_int_equal(m[0].addr, 0);
    assert_int_equal(m[0].size, 0x9fc00);
    assert_int_equal(m[0].type, E820_RAM);
    assert_int_equal(m[2].addr, 0xe0000);
    assert_int_equal(m[2].type, E820_RESERVED);
    assert_int_equal(m[3].addr, 0x100000);
    assert_int_equal(m[3].size, (256ull << 20) - 0x100000);
    /* RAM beyond the hole goes above 4 GiB. */
    n = x86_e820_build(4ull << 30, m, 8);
    assert_int_equal(n, 5);
    assert_int_equal(m[3].addr + m[3].size, X86_MMIO_HOLE_START);
    assert_int_equal(m[4].addr, 1ull << 32);
    assert_int_equal(m[4].size, (4ull << 30) - X86_MMIO_HOLE_START);
    assert_int_equal(x86_e820_build(1 << 20, m, 8), -EINVAL);
    assert_int_equal(x86_e820_build((64ull << 20) + 1, m, 8), -EINVAL);
    assert_int_equal(x86_e820_build(4ull << 30, m, 3), -EINVAL);
}

static void test_initrd_and_zero_page(void **state)
{
    (void)state;
    uint8_t *img = make_image(IMG_LEN);
    X86BzImage bz;
    assert_int_equal(x86_bzimage_parse(img, IMG_LEN, &bz), 0);
    uint64_t ram = 128ull << 20;
    uint64_t at = x86_initrd_addr(&bz, ram, 1000000, X86_HIMEM_START);
    assert_int_equal(at & 0xfff, 0);
    assert_true(at + 1000000 <= ram);
    assert_true(at >= X86_HIMEM_START + bz.init_size);
    /* Too big to fit above the kernel. */
    assert_int_equal(x86_initrd_addr(&bz, ram, ram - 0x100000, X86_HIMEM_START), 0);
    assert_int_equal(x86_initrd_addr(&bz, ram, 0, X86_HIMEM_START), 0);

    X86E820Entry m[8];
    int n = x86_e820_build(ram, m, 8);
    X86BootParams p = { .cmdline_addr = X86_CMDLINE_ADDR, .cmdline_len = 20,
                        .initrd_addr = at, .initrd_size = 1000000,
                        .acpi_rsdp_addr = 0xe0000, .e820 = m, .e820_entries = n };
    uint8_t zp[X86_ZERO_PAGE_SIZE];
    assert_int_equal(x86_zero_page_build(zp, img, &bz, &p), 0);
    assert_int_equal(zp[0x210], 0xff);                  /* type_of_loader */
    assert_int_equal(get32(zp + 0x202), 0x53726448);    /* header copied */
    assert_int_equal(get32(zp + 0x228), X86_CMDLINE_ADDR);
    assert_int_equal(get32(zp + 0x218), at);
    assert_int_equal(get32(zp + 0x21c), 1000000);
    assert_int_equal(get64(zp + 0x070), 0xe0000);
    assert_int_equal(zp[0x1e8], n);
    assert_int_equal(get64(zp + 0x2d0 + 20 * 3), 0x100000);
    assert_int_equal(get32(zp + 0x2d0 + 20 * 3 + 16), E820_RAM);
    /* A command line longer than the kernel takes is refused. */
    p.cmdline_len = 4000;
    assert_int_equal(x86_zero_page_build(zp, img, &bz, &p), -EINVAL);
    p.cmdline_len = 1;
    p.e820_entries = E820_MAX + 1;
    assert_int_equal(x86_zero_page_build(zp, img, &bz, &p), -EINVAL);
    free(img);
}

static void test_gdt_and_sregs(void **state)
{
    (void)state;
    uint64_t gdt[X86_GDT_ENTRIES];
    x86_gdt_build(gdt);
    assert_int_equal(gdt[0], 0);
    assert_int_equal(gdt[2], 0x00af9b000000ffffull);
    assert_int_equal(gdt[3], 0x00cf93000000ffffull);
    assert_int_equal(gdt[4], 0x008f8b000000ffffull);
    struct kvm_sregs s;
    memset(&s, 0, sizeof(s));
    x86_boot_sregs(&s);
    assert_int_equal(s.cs.selector, 0x10);
    assert_int_equal(s.cs.l, 1);
    assert_int_equal(s.cs.db, 0);
    assert_int_equal(s.cs.type, 0xb);
    assert_int_equal(s.cs.limit, 0xffffffffu);
    assert_int_equal(s.ds.selector, 0x18);
    assert_int_equal(s.ss.db, 1);
    assert_int_equal(s.tr.type, 0xb);
    assert_int_equal(s.tr.s, 0);
    assert_int_equal(s.gdt.base, X86_GDT_ADDR);
    assert_int_equal(s.gdt.limit, 8 * X86_GDT_ENTRIES - 1);
    assert_true(s.cr0 & 0x80000001u);
    assert_int_equal(s.cr3, X86_PML4_ADDR);
    assert_int_equal(s.efer, 0x500);
    struct kvm_regs r;
    x86_boot_regs(&r, 0x100000);
    assert_int_equal(r.rip, 0x100200);
    assert_int_equal(r.rsi, X86_ZERO_PAGE_ADDR);
    assert_int_equal(r.rflags, 2);
}

/* Walk the identity map the way the MMU does. */
static uint64_t translate(const uint8_t *pt, uint64_t va)
{
    uint64_t pml4e = get64(pt + 8 * ((va >> 39) & 511));
    if (!(pml4e & 1)) {
        return UINT64_MAX;
    }
    uint64_t pdpte = get64(pt + (pml4e & ~0xfffull) - X86_PML4_ADDR + 8 * ((va >> 30) & 511));
    if (!(pdpte & 1)) {
        return UINT64_MAX;
    }
    uint64_t pde = get64(pt + (pdpte & ~0xfffull) - X86_PML4_ADDR + 8 * ((va >> 21) & 511));
    if (!(pde & 1) || !(pde & 0x80)) {
        return UINT64_MAX;
    }
    return (pde & ~0x1fffffull) | (va & 0x1fffff);
}

static void test_page_tables(void **state)
{
    (void)state;
    size_t len = X86_PT_END - X86_PML4_ADDR;
    uint8_t *pt = malloc(len);
    x86_page_tables_build(pt, len);
    uint64_t probes[] = { 0, 0x7000, 0x100200, 0x1234567, 0xbfffffff, 0xfee00000,
                          0xffffffffull };
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        assert_int_equal(translate(pt, probes[i]), probes[i]);
    }
    assert_int_equal(translate(pt, 1ull << 32), UINT64_MAX);
    free(pt);
}

static void test_cpuid_msr_lapic(void **state)
{
    (void)state;
    struct kvm_cpuid_entry2 e[4] = {
        { .function = 1, .ebx = 0x12340800, .ecx = 0, .edx = 0 },
        { .function = 0xb, .index = 0 },
        { .function = 0xb, .index = 1 },
        { .function = 0xb, .index = 2 },
    };
    x86_cpuid_fixup(e, 4, 3, 4, false);
    assert_false(e[0].ecx & (1u << 24));
    x86_cpuid_fixup(e, 4, 3, 4, true);
    assert_true(e[0].ecx & (1u << 24));
    assert_int_equal(e[0].ebx >> 24, 3);
    assert_int_equal((e[0].ebx >> 16) & 0xff, 4);
    assert_int_equal(e[0].ebx & 0xffff, 0x0800);
    assert_true(e[0].ecx & (1u << 31));
    assert_true(e[0].edx & (1u << 28));
    assert_int_equal(e[1].edx, 3);
    assert_int_equal(e[1].ebx, 1);
    assert_int_equal(e[2].ebx, 4);
    assert_int_equal(e[2].eax, 2);
    assert_int_equal((e[2].ecx >> 8) & 0xff, 2);
    assert_int_equal((e[3].ecx >> 8) & 0xff, 0);

    struct kvm_msr_entry m[X86_BOOT_MSR_COUNT];
    x86_boot_msrs(m);
    assert_int_equal(m[X86_BOOT_MSR_COUNT - 1].index, 0x1a0);
    assert_int_equal(m[X86_BOOT_MSR_COUNT - 1].data, 1);

    struct kvm_lapic_state l;
    memset(&l, 0, sizeof(l));
    put32((uint8_t *)l.regs + 0x350, 0x10000 | 0x300);
    x86_lapic_lint_setup(&l);
    assert_int_equal(get32((uint8_t *)l.regs + 0x350), 0x10700);
    assert_int_equal(get32((uint8_t *)l.regs + 0x360), 0x400);
}

static void test_reset_stub(void **state)
{
    (void)state;
    uint8_t b[16];
    x86_reset_stub(b);
    /* out 0x64 of 0xfe, and the jump goes back to the out. */
    assert_memory_equal(b, "\xb0\xfe\xe6\x64", 4);
    assert_int_equal(b[5], 0xeb);
    assert_int_equal(7 + (int8_t)b[6], 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bzimage_valid),
        cmocka_unit_test(test_bzimage_head),
        cmocka_unit_test(test_bzimage_rejects),
        cmocka_unit_test(test_bzimage_random),
        cmocka_unit_test(test_elf_valid),
        cmocka_unit_test(test_elf_rejects),
        cmocka_unit_test(test_elf_random),
        cmocka_unit_test(test_e820),
        cmocka_unit_test(test_initrd_and_zero_page),
        cmocka_unit_test(test_gdt_and_sregs),
        cmocka_unit_test(test_page_tables),
        cmocka_unit_test(test_cpuid_msr_lapic),
        cmocka_unit_test(test_reset_stub),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
