/* SPDX-License-Identifier: MIT */
/*
 * Unit tests: a bzImage's payload found (x86_bzimage_payload) and unpacked
 * on the host straight into guest RAM (x86_unpack_elf), for xz and gzip
 * payloads built here with liblzma and zlib; corrupt, truncated and
 * inconsistent payloads refused without writing outside the segments.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <elf.h>
#include <lzma.h>
#define ZLIB_CONST
#include <zlib.h>

#include "boot-images.h"
#include "machine/kernel-unpack.h"

#define SETUP_LEN  (5 * 512)            /* 4 setup sectors + the boot sector */
#define RAM_LEN    (40u << 20)
#define SENTINEL   0xa5

/* The ELF: a text segment, a data segment with bss, and a segment whose
 * program header comes first but whose bytes come last in the file; bytes
 * between them that no segment loads. */
#define ELF_SIZE   (64 * 1024 + 123)
static const struct { uint64_t off, paddr, filesz, memsz; } segs[3] = {
    { 0x9000, 0x1800000, 0x2000, 0x2000 },     /* listed first, last in file */
    { 0x1000, 0x1000000, 0x3000, 0x3000 },     /* text */
    { 0x5000, 0x1400000, 0x1800, 0x9000 },     /* data + bss */
};


static uint8_t *make_elf(void)
{
    uint8_t *img = malloc(ELF_SIZE);
    for (size_t i = 0; i < ELF_SIZE; i++) {
        img[i] = (uint8_t)(i * 7 + (i >> 9));   /* no two segments alike */
    }
    test_elf_header(img, 0x1000000, 3);
    for (int i = 0; i < 3; i++) {
        Elf64_Phdr ph = { .p_type = PT_LOAD, .p_offset = segs[i].off,
                          .p_vaddr = 0xffffffff80000000ull + segs[i].paddr,
                          .p_paddr = segs[i].paddr, .p_filesz = segs[i].filesz,
                          .p_memsz = segs[i].memsz };
        memcpy(img + sizeof(Elf64_Ehdr) + i * sizeof(ph), &ph, sizeof(ph));
    }
    return img;
}

static size_t compress_xz(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    size_t pos = 0;
    assert_int_equal(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, in, len, out, &pos,
                                             cap), LZMA_OK);
    return pos;
}

static size_t compress_gzip(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    z_stream z = { 0 };
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
                     Z_OK);
    z.next_in = in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    return n;
}

/* A bzImage (protocol 2.15) whose payload is @elf compressed with @gzip or
 * xz, the uncompressed size appended as the kernel's build does. */
static uint8_t *make_bzimage(const uint8_t *elf, size_t elf_len, bool gzip, size_t *len)
{
    size_t cap = elf_len + 4096;
    uint8_t *z = malloc(cap);
    size_t zlen = gzip ? compress_gzip(elf, elf_len, z, cap) : compress_xz(elf, elf_len, z, cap);
    const size_t poff = 0x200;          /* payload offset in the protected-mode part */
    *len = SETUP_LEN + poff + zlen + 4;
    uint8_t *img = calloc(1, *len);
    test_bzimage_header(img, 0x4000000);
    put32(img + 0x248, (uint32_t)poff);
    put32(img + 0x24c, (uint32_t)(zlen + 4));
    memcpy(img + SETUP_LEN + poff, z, zlen);
    put32(img + SETUP_LEN + poff + zlen, (uint32_t)elf_len);
    free(z);
    return img;
}

static uint8_t *new_ram(void)
{
    uint8_t *ram = malloc(RAM_LEN);
    memset(ram, SENTINEL, RAM_LEN);
    return ram;
}

/* Every byte of @ram is the segment's, zero (bss) or untouched. */
static void check_ram(const uint8_t *ram, const uint8_t *elf)
{
    size_t at = 0;
    for (int k = 0; k < 3; k++) {
        /* Everything below this segment and above the previous one. */
        uint64_t lo = UINT64_MAX;
        int next = -1;
        for (int i = 0; i < 3; i++) {
            if (segs[i].paddr >= at && segs[i].paddr < lo) {
                lo = segs[i].paddr;
                next = i;
            }
        }
        for (size_t a = at; a < lo; a += 4093) {
            assert_int_equal(ram[a], SENTINEL);
        }
        assert_memory_equal(ram + lo, elf + segs[next].off, segs[next].filesz);
        for (uint64_t a = lo + segs[next].filesz; a < lo + segs[next].memsz; a++) {
            assert_int_equal(ram[a], 0);
        }
        at = lo + segs[next].memsz;
    }
    for (size_t a = at; a < RAM_LEN; a += 4093) {
        assert_int_equal(ram[a], SENTINEL);
    }
}

static void roundtrip(bool gzip)
{
    uint8_t *elf = make_elf(), *ram = new_ram();
    size_t len;
    uint8_t *img = make_bzimage(elf, ELF_SIZE, gzip, &len);
    X86BzImage bz;
    X86Payload pl;
    X86ElfKernel ek;
    assert_int_equal(x86_bzimage_parse(img, len, &bz), 0);
    assert_int_equal(x86_bzimage_payload(img, len, &bz, &pl), 0);
    assert_int_equal(pl.format, gzip ? X86_PAYLOAD_GZIP : X86_PAYLOAD_XZ);
    assert_int_equal(pl.offset, SETUP_LEN + 0x200);
    assert_int_equal(pl.unpacked_size, ELF_SIZE);
    assert_int_equal(x86_unpack_elf(img, &pl, ram, RAM_LEN, &ek), 0);
    assert_int_equal(ek.nseg, 3);
    assert_int_equal(ek.entry, 0x1000000);
    assert_int_equal(ek.load_end, 0x1802000);
    check_ram(ram, elf);
    free(img);
    free(ram);
    free(elf);
}

static void test_unpack_xz(void **state)
{
    (void)state;
    roundtrip(false);
}

static void test_unpack_gzip(void **state)
{
    (void)state;
    roundtrip(true);
}

/* Sizes that disagree, truncation, corruption, a kernel too big for RAM,
 * segments overlapping in the file: refused, RAM outside segments intact. */
static void test_unpack_rejects(void **state)
{
    (void)state;
    for (int gzip = 0; gzip < 2; gzip++) {
        uint8_t *elf = make_elf(), *ram = new_ram();
        size_t len;
        uint8_t *img = make_bzimage(elf, ELF_SIZE, gzip, &len);
        X86BzImage bz;
        X86Payload pl, bad;
        X86ElfKernel ek;
        assert_int_equal(x86_bzimage_parse(img, len, &bz), 0);
        assert_int_equal(x86_bzimage_payload(img, len, &bz, &pl), 0);
        bad = pl;
        bad.unpacked_size++;            /* the stream ends early */
        assert_int_equal(x86_unpack_elf(img, &bad, ram, RAM_LEN, &ek), -EINVAL);
        bad = pl;
        bad.unpacked_size--;            /* the stream goes on */
        assert_int_equal(x86_unpack_elf(img, &bad, ram, RAM_LEN, &ek), -EINVAL);
        bad = pl;
        bad.unpacked_size = RAM_LEN + 1;    /* larger than the RAM */
        assert_int_equal(x86_unpack_elf(img, &bad, ram, RAM_LEN, &ek), -E2BIG);
        bad = pl;
        bad.length -= 9;                /* truncated */
        assert_int_equal(x86_unpack_elf(img, &bad, ram, RAM_LEN, &ek), -EINVAL);
        /* A segment above the RAM. */
        assert_int_equal(x86_unpack_elf(img, &pl, ram, 0x1801000, &ek), -E2BIG);
        /* One flipped byte in the middle of the stream: the decoder or the
         * integrity check refuses it. */
        img[pl.offset + pl.length / 2] ^= 0x40;
        assert_int_equal(x86_unpack_elf(img, &pl, ram, RAM_LEN, &ek), -EINVAL);
        free(img);

        /* Two segments sharing file bytes cannot be streamed. */
        Elf64_Phdr *ph = (Elf64_Phdr *)(elf + sizeof(Elf64_Ehdr));
        ph[2].p_offset = 0x2000;
        img = make_bzimage(elf, ELF_SIZE, gzip, &len);
        assert_int_equal(x86_bzimage_parse(img, len, &bz), 0);
        assert_int_equal(x86_bzimage_payload(img, len, &bz, &pl), 0);
        assert_int_equal(x86_unpack_elf(img, &pl, ram, RAM_LEN, &ek), -EINVAL);
        free(img);
        /* Not an ELF inside. */
        memset(elf, 0, 64);
        img = make_bzimage(elf, ELF_SIZE, gzip, &len);
        assert_int_equal(x86_bzimage_parse(img, len, &bz), 0);
        assert_int_equal(x86_bzimage_payload(img, len, &bz, &pl), 0);
        assert_int_equal(x86_unpack_elf(img, &pl, ram, RAM_LEN, &ek), -EINVAL);
        /* Nothing was written below the first segment or above the last. */
        for (size_t a = 0; a < 0x1000000; a += 4093) {
            assert_int_equal(ram[a], SENTINEL);
        }
        for (size_t a = 0x1802000; a < RAM_LEN; a += 4093) {
            assert_int_equal(ram[a], SENTINEL);
        }
        free(img);
        free(ram);
        free(elf);
    }
}

/* The payload fields: other compressions are left to the guest, offsets
 * outside the image and old protocols are refused. */
static void test_payload_header(void **state)
{
    (void)state;
    uint8_t *elf = make_elf();
    size_t len;
    uint8_t *img = make_bzimage(elf, ELF_SIZE, false, &len);
    X86BzImage bz;
    X86Payload pl;
    assert_int_equal(x86_bzimage_parse(img, len, &bz), 0);
    uint8_t *p = img + SETUP_LEN + 0x200;
    uint8_t save[6];
    memcpy(save, p, 6);
    memcpy(p, "\x28\xb5\x2f\xfd", 4);    /* zstd */
    assert_int_equal(x86_bzimage_payload(img, len, &bz, &pl), -ENOTSUP);
    memcpy(p, save, 6);
    put32(img + 0x24c, (uint32_t)(len - SETUP_LEN));    /* runs past the end */
    assert_int_equal(x86_bzimage_payload(img, len, &bz, &pl), -EINVAL);
    put32(img + 0x24c, 6);              /* no room for the size trailer */
    assert_int_equal(x86_bzimage_payload(img, len, &bz, &pl), -EINVAL);
    put32(img + 0x248, 0xffffffff);
    put32(img + 0x24c, 100);
    assert_int_equal(x86_bzimage_payload(img, len, &bz, &pl), -EINVAL);
    bz.version = 0x0207;
    assert_int_equal(x86_bzimage_payload(img, len, &bz, &pl), -ENOTSUP);
    free(img);
    free(elf);
}

/* Random damage anywhere in the payload: an error or a load, never a
 * crash or a write outside RAM (AddressSanitizer watches). */
static void test_unpack_random(void **state)
{
    (void)state;
    const char *env = getenv("VMM_FUZZ_ITERS");
    int iters = env ? atoi(env) : 300;
    uint8_t *elf = make_elf(), *ram = malloc(RAM_LEN);
    unsigned seed = 12345;
    for (int gzip = 0; gzip < 2; gzip++) {
        size_t len;
        uint8_t *img = make_bzimage(elf, ELF_SIZE, gzip, &len);
        uint8_t *t = malloc(len);
        for (int i = 0; i < iters; i++) {
            memcpy(t, img, len);
            for (int k = 0; k < 1 + i % 4; k++) {
                seed = seed * 1103515245u + 12345u;
                t[SETUP_LEN + (seed >> 8) % (len - SETUP_LEN)] ^= (uint8_t)(1u << (seed % 8));
            }
            X86BzImage bz;
            X86Payload pl;
            X86ElfKernel ek;
            if (x86_bzimage_parse(t, len, &bz) == 0 &&
                x86_bzimage_payload(t, len, &bz, &pl) == 0) {
                int r = x86_unpack_elf(t, &pl, ram, RAM_LEN, &ek);
                assert_true(r == 0 || r == -EINVAL || r == -E2BIG);
            }
        }
        free(t);
        free(img);
    }
    free(ram);
    free(elf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unpack_xz),
        cmocka_unit_test(test_unpack_gzip),
        cmocka_unit_test(test_unpack_rejects),
        cmocka_unit_test(test_payload_header),
        cmocka_unit_test(test_unpack_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
