/* SPDX-License-Identifier: MIT */
/* Guest RAM regions, the GPA map and DMA checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "vmmkit/memory.h"

#define MiB (1ull << 20)

static VmmRamRegion *new_ram(uint64_t len)
{
    VmmRamRegionOptions o = { .size = sizeof(o), .length = len, .name = "test" };
    int err = 0;
    VmmRamRegion *r = vmm_ram_region_new(&o, &err);
    assert_non_null(r);
    assert_int_equal(err, 0);
    return r;
}

static void test_region_basic(void **state)
{
    (void)state;
    VmmRamRegion *r = new_ram(MiB);
    uint8_t *p = vmm_ram_region_host(r);

    assert_int_equal(vmm_ram_region_length(r), MiB);
    assert_int_equal(vmm_ram_region_page_size(r), 4096);
    assert_int_equal(p[0] | p[MiB - 1], 0);
    /* Shareable: a second mapping of the memfd sees the same bytes. */
    uint8_t *q = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_SHARED,
                      vmm_ram_region_fd(r), 0);
    assert_ptr_not_equal(q, MAP_FAILED);
    p[12345] = 0x5a;
    assert_int_equal(q[12345], 0x5a);
    munmap(q, MiB);
    vmm_ram_region_unref(r);
}

static void test_region_bad_options(void **state)
{
    (void)state;
    int err = 0;
    VmmRamRegionOptions o = { .size = sizeof(o), .length = 4095 };
    assert_null(vmm_ram_region_new(&o, &err));
    assert_int_equal(err, -EINVAL);
    o.length = 4096;
    o.flags = VMM_RAM_HUGEPAGES;
    o.hugepage_size = 3 << 20;          /* not a power of two */
    err = 0;
    assert_null(vmm_ram_region_new(&o, &err));
    assert_int_equal(err, -EINVAL);
    o.hugepage_size = 0;                /* 2 MiB default: 4 KiB is unaligned */
    err = 0;
    assert_null(vmm_ram_region_new(&o, &err));
    assert_int_equal(err, -EINVAL);
}

static void test_region_hugepages(void **state)
{
    (void)state;
    VmmRamRegionOptions o = { .size = sizeof(o), .length = 2 * MiB,
                              .flags = VMM_RAM_HUGEPAGES };
    int err = 0;
    VmmRamRegion *r = vmm_ram_region_new(&o, &err);
    if (!r) {
        /* No huge pages reserved on this host: a clean error, no crash.
         * (cmocka's TAP output reports skip() as a failure.) */
        assert_true(err == -ENOMEM || err == -EINVAL || err == -ENOSPC);
        return;
    }
    assert_int_equal(vmm_ram_region_page_size(r), 2 * MiB);
    ((uint8_t *)vmm_ram_region_host(r))[MiB] = 1;
    vmm_ram_region_unref(r);
}

/* Whether /proc/self/smaps marks the mapping that starts at p "THPeligible:
 * 1" (-1: the kernel does not report it). */
static int thp_eligible(const void *p)
{
    char line[256], start[32];
    int found = 0, val = -1;
    FILE *f = fopen("/proc/self/smaps", "r");

    snprintf(start, sizeof(start), "%lx-", (unsigned long)(uintptr_t)p);
    while (f && fgets(line, sizeof(line), f)) {
        if (strchr(line, '-') && strncmp(line, start, strlen(start)) == 0) {
            found = 1;
        } else if (found && sscanf(line, "THPeligible: %d", &val) == 1) {
            break;
        } else if (found && line[0] != ' ' && !strchr(line, ':')) {
            break;      /* the next mapping's header */
        }
    }
    if (f) {
        fclose(f);
    }
    return val;
}

static void test_region_private(void **state)
{
    (void)state;
    VmmRamRegionOptions o = { .size = sizeof(o), .length = 6 * MiB,
                              .flags = VMM_RAM_PRIVATE | VMM_RAM_NORESERVE };
    int err = 0;
    VmmRamRegion *r = vmm_ram_region_new(&o, &err);
    assert_non_null(r);
    uint8_t *p = vmm_ram_region_host(r);

    assert_int_equal(vmm_ram_region_fd(r), -1);
    assert_int_equal(vmm_ram_region_length(r), 6 * MiB);
    assert_int_equal(vmm_ram_region_page_size(r), 4096);
    /* Aligned so KVM can use 2 MiB pages (host address = GPA mod 2 MiB). */
    assert_int_equal((uintptr_t)p & (2 * MiB - 1), 0);
    assert_int_equal(p[0] | p[6 * MiB - 1], 0);
    memset(p, 0xa5, 6 * MiB);
    assert_int_equal(p[3 * MiB + 7], 0xa5);
    /* Advised for THP wherever the host lets a process ask for it. */
    char mode[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f) {
        if (!fgets(mode, sizeof(mode), f)) {
            mode[0] = 0;
        }
        fclose(f);
    }
    int elig = thp_eligible(p);
    if (strstr(mode, "[always]") || strstr(mode, "[madvise]")) {
        assert_true(elig == 1 || elig == -1);
    }
    /* The slack around the aligned mapping went back: the pages right
     * before and after are not ours (mincore fails with ENOMEM). */
    unsigned char vec;
    assert_int_equal(mincore(p - 4096, 4096, &vec), -1);
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(mincore(p + 6 * MiB, 4096, &vec), -1);
    assert_int_equal(errno, ENOMEM);
    vmm_ram_region_unref(r);

    /* Smaller than a huge page: plain 4 KiB pages, still private. */
    o.length = 64 * 1024;
    r = vmm_ram_region_new(&o, &err);
    assert_non_null(r);
    assert_int_equal(vmm_ram_region_fd(r), -1);
    ((uint8_t *)vmm_ram_region_host(r))[65535] = 1;
    vmm_ram_region_unref(r);
}

static void test_add_checks(void **state)
{
    (void)state;
    VmmGuestMemory *mem = vmm_guest_memory_new(NULL);
    VmmRamRegion *r = new_ram(MiB);

    assert_int_equal(vmm_guest_memory_add(mem, 0x1000, r, 0, 0, 0), -EINVAL);
    assert_int_equal(vmm_guest_memory_add(mem, 0x1001, r, 0, 0x1000, 0), -EINVAL);
    assert_int_equal(vmm_guest_memory_add(mem, 0, r, 0x800, 0x1000, 0), -EINVAL);
    assert_int_equal(vmm_guest_memory_add(mem, 0, r, 0, 2 * MiB, 0), -EINVAL);
    assert_int_equal(vmm_guest_memory_add(mem, 0, r, MiB - 4096, 8192, 0), -EINVAL);
    assert_int_equal(vmm_guest_memory_add(mem, 0, r, 0, 4096, 0x80), -EINVAL);
    assert_int_equal(vmm_guest_memory_add(mem, UINT64_MAX - 4095, r, 0, 8192, 0),
                     -EOVERFLOW);
    /* The very last page of the address space is fine. */
    assert_int_equal(vmm_guest_memory_add(mem, UINT64_MAX - 4095, r, 0, 4096, 0), 0);
    assert_int_equal(vmm_guest_memory_add(mem, 0x10000, r, 0, 0x10000, 0), 0);
    assert_int_equal(vmm_guest_memory_add(mem, 0x8000, r, 0, 0x9000, 0), -EEXIST);
    assert_int_equal(vmm_guest_memory_add(mem, 0x1f000, r, 0, 0x1000, 0), -EEXIST);
    assert_int_equal(vmm_guest_memory_add(mem, 0x20000, r, 0, 0x1000, 0), 0);
    assert_int_equal(vmm_guest_memory_remove(mem, 0x10000, 0x1000), -ENOENT);
    assert_int_equal(vmm_guest_memory_remove(mem, 0x30000, 0x1000), -ENOENT);
    assert_int_equal(vmm_guest_memory_remove(mem, 0x10000, 0x10000), 0);
    assert_int_equal(vmm_guest_memory_remove(mem, 0x10000, 0x10000), -ENOENT);
    vmm_ram_region_unref(r);     /* the map keeps its own references */
    vmm_guest_memory_unref(mem);
}

static void test_add_too_many(void **state)
{
    (void)state;
    VmmGuestMemory *mem = vmm_guest_memory_new(NULL);
    VmmRamRegion *r = new_ram(4096);

    for (uint64_t i = 0; i < VMM_GUEST_MEMORY_MAX_SECTIONS; i++) {
        assert_int_equal(vmm_guest_memory_add(mem, i * 8192, r, 0, 4096, 0), 0);
    }
    assert_int_equal(vmm_guest_memory_add(mem, 1ull << 40, r, 0, 4096, 0), -ENOSPC);
    VmmMemorySection s;
    assert_int_equal(vmm_guest_memory_find(mem, 8192 * 77 + 5, &s), 0);
    assert_int_equal(s.gpa, 8192 * 77);
    assert_int_equal(vmm_guest_memory_find(mem, 8192 * 77 + 4096, &s), -ENOENT);
    vmm_ram_region_unref(r);
    vmm_guest_memory_unref(mem);
}

/* Two adjacent sections [0, 64K) and [64K, 128K) from different regions, a
 * hole, then a read-only section at 1 MiB. */
typedef struct Fixture {
    VmmGuestMemory *mem;
    VmmRamRegion *a, *b, *rom;
} Fixture;

static int fx_setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    f->mem = vmm_guest_memory_new(NULL);
    f->a = new_ram(0x10000);
    f->b = new_ram(0x10000);
    f->rom = new_ram(0x1000);
    memset(vmm_ram_region_host(f->a), 0xaa, 0x10000);
    memset(vmm_ram_region_host(f->b), 0xbb, 0x10000);
    memset(vmm_ram_region_host(f->rom), 0xcc, 0x1000);
    assert_int_equal(vmm_guest_memory_add(f->mem, 0, f->a, 0, 0x10000, 0), 0);
    assert_int_equal(vmm_guest_memory_add(f->mem, 0x10000, f->b, 0, 0x10000, 0), 0);
    assert_int_equal(vmm_guest_memory_add(f->mem, MiB, f->rom, 0, 0x1000,
                                          VMM_MEM_READONLY), 0);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    Fixture *f = *state;
    vmm_guest_memory_unref(f->mem);
    vmm_ram_region_unref(f->a);
    vmm_ram_region_unref(f->b);
    vmm_ram_region_unref(f->rom);
    free(f);
    return 0;
}

static void test_dma_rw(void **state)
{
    Fixture *f = *state;
    uint8_t buf[32], want[32];

    /* Across the boundary of two adjacent sections. */
    assert_int_equal(vmm_dma_read(f->mem, 0x10000 - 16, buf, 32), 0);
    memset(want, 0xaa, 16);
    memset(want + 16, 0xbb, 16);
    assert_memory_equal(buf, want, 32);
    memset(buf, 0x11, sizeof(buf));
    assert_int_equal(vmm_dma_write(f->mem, 0x10000 - 16, buf, 32), 0);
    assert_int_equal(((uint8_t *)vmm_ram_region_host(f->a))[0xffff], 0x11);
    assert_int_equal(((uint8_t *)vmm_ram_region_host(f->b))[15], 0x11);
    assert_int_equal(((uint8_t *)vmm_ram_region_host(f->b))[16], 0xbb);
    /* Zero length is a no-op, even at a hole. */
    assert_int_equal(vmm_dma_read(f->mem, 0x50000, buf, 0), 0);
    /* ROM reads, and refuses writes. */
    assert_int_equal(vmm_dma_read(f->mem, MiB, buf, 4), 0);
    assert_int_equal(buf[3], 0xcc);
    assert_int_equal(vmm_dma_write(f->mem, MiB, buf, 4), -EACCES);
}

static void test_dma_hole_and_wrap(void **state)
{
    Fixture *f = *state;
    uint8_t buf[64];

    memset(buf, 0x77, sizeof(buf));
    /* Runs off the end of RAM into the hole: fails, touching nothing. */
    assert_int_equal(vmm_dma_write(f->mem, 0x20000 - 32, buf, 64), -EFAULT);
    assert_int_equal(((uint8_t *)vmm_ram_region_host(f->b))[0xffff], 0xbb);
    assert_int_equal(vmm_dma_read(f->mem, 0x20000, buf, 1), -EFAULT);
    assert_int_equal(vmm_dma_read(f->mem, MiB - 1, buf, 2), -EFAULT);
    assert_int_equal(vmm_dma_read(f->mem, MiB + 0x1000 - 1, buf, 2), -EFAULT);
    /* Wrapping around 2^64 fails before any lookup. */
    assert_int_equal(vmm_dma_read(f->mem, UINT64_MAX - 2, buf, 8), -EOVERFLOW);
    assert_int_equal(vmm_dma_write(f->mem, UINT64_MAX, buf, 2), -EOVERFLOW);
    struct iovec iov[4];
    assert_int_equal(vmm_dma_map(f->mem, 8, UINT64_MAX, 0, iov, 4), -EOVERFLOW);
    assert_int_equal(vmm_dma_map(f->mem, 0, 1ull << 63, 0, iov, 4), -EOVERFLOW);
    assert_int_equal(vmm_dma_map(f->mem, 0x1f000, 0x2000, 0, iov, 4), -EFAULT);
    assert_int_equal(vmm_dma_read(NULL, 0, buf, 1), -EINVAL);
}

static void test_dma_map(void **state)
{
    Fixture *f = *state;
    struct iovec iov[4];

    assert_int_equal(vmm_dma_map(f->mem, 0x100, 0x200, 0, iov, 4), 1);
    assert_ptr_equal(iov[0].iov_base, (uint8_t *)vmm_ram_region_host(f->a) + 0x100);
    assert_int_equal(iov[0].iov_len, 0x200);
    assert_int_equal(vmm_dma_map(f->mem, 0xff00, 0x200, VMM_DMA_TO_GUEST, iov, 4), 2);
    assert_int_equal(iov[0].iov_len, 0x100);
    assert_ptr_equal(iov[1].iov_base, vmm_ram_region_host(f->b));
    assert_int_equal(iov[1].iov_len, 0x100);
    assert_int_equal(vmm_dma_map(f->mem, 0xff00, 0x200, 0, iov, 1), -ENOBUFS);
    assert_int_equal(vmm_dma_map(f->mem, MiB, 0x10, VMM_DMA_TO_GUEST, iov, 4), -EACCES);
    assert_int_equal(vmm_dma_map(f->mem, MiB, 0x10, 0, iov, 4), 1);
    assert_int_equal(vmm_dma_map(f->mem, 0, 0, 0, iov, 4), 0);
    assert_int_equal(vmm_dma_map(f->mem, 0, 1, 0x40, iov, 4), -EINVAL);
}

static void test_remove_then_dma(void **state)
{
    Fixture *f = *state;
    uint8_t b;

    assert_int_equal(vmm_guest_memory_remove(f->mem, 0x10000, 0x10000), 0);
    assert_int_equal(vmm_dma_read(f->mem, 0x10000, &b, 1), -EFAULT);
    assert_int_equal(vmm_dma_read(f->mem, 0xffff, &b, 1), 0);
    assert_int_equal(vmm_guest_memory_add(f->mem, 0x10000, f->b, 0, 0x10000, 0), 0);
    assert_int_equal(vmm_dma_read(f->mem, 0x10000, &b, 1), 0);
    assert_int_equal(b, 0xbb);
}

typedef struct ListenLog {
    int adds, removes;
    uint64_t last_gpa;
} ListenLog;

static void listen_fn(void *opaque, const VmmMemorySection *s, bool added)
{
    ListenLog *l = opaque;
    if (added) {
        l->adds++;
    } else {
        l->removes++;
    }
    l->last_gpa = s->gpa;
    assert_true(s->fd >= 0);
    assert_non_null(s->host);
}

static void test_listeners(void **state)
{
    Fixture *f = *state;
    ListenLog log = { 0 };

    assert_int_equal(vmm_guest_memory_add_listener(f->mem, listen_fn, &log), 0);
    assert_int_equal(log.adds, 3);        /* replay of existing sections */
    assert_int_equal(vmm_guest_memory_remove(f->mem, MiB, 0x1000), 0);
    assert_int_equal(log.removes, 1);
    assert_int_equal(log.last_gpa, MiB);
    assert_int_equal(vmm_guest_memory_add(f->mem, 2 * MiB, f->rom, 0, 0x1000, 0), 0);
    assert_int_equal(log.adds, 4);
    assert_int_equal(log.last_gpa, 2 * MiB);
    assert_int_equal(vmm_guest_memory_remove_listener(f->mem, listen_fn, &log), 0);
    assert_int_equal(vmm_guest_memory_remove_listener(f->mem, listen_fn, &log), -ENOENT);
    assert_int_equal(vmm_guest_memory_remove(f->mem, 2 * MiB, 0x1000), 0);
    assert_int_equal(log.removes, 1);
}

/* The log of device writes: what vmm_dma_write and writable maps touch,
 * fetched and cleared by vmm_guest_memory_get_dirty. */
static void test_dirty_log(void **state)
{
    (void)state;
    VmmRamRegion *r = new_ram(MiB);
    VmmGuestMemory *mem = vmm_guest_memory_new(NULL);
    assert_int_equal(vmm_guest_memory_add(mem, 0, r, 0, MiB, 0), 0);
    uint64_t bm[MiB / 4096 / 64];
    uint8_t buf[8192] = { 0 };
    struct iovec iov[2];
    assert_int_equal(vmm_guest_memory_get_dirty(mem, 0, MiB / 4096, bm), -ENOENT);
    assert_int_equal(vmm_guest_memory_get_dirty(mem, 4096, 1, bm), -EINVAL);
    assert_int_equal(vmm_guest_memory_log_dirty(NULL, true), -EINVAL);
    assert_int_equal(vmm_guest_memory_log_dirty(mem, true), 0);
    assert_int_equal(vmm_dma_write(mem, 0x5800, buf, 0x1000), 0);      /* pages 5, 6 */
    assert_int_equal(vmm_dma_map(mem, 0x10000, 1, VMM_DMA_TO_GUEST, iov, 2), 1);
    assert_int_equal(vmm_dma_map(mem, 0x20000, 4096, 0, iov, 2), 1);  /* read: not */
    assert_int_equal(vmm_dma_read(mem, 0x30000, buf, 4096), 0);
    assert_int_equal(vmm_guest_memory_get_dirty(mem, 0, MiB / 4096, bm), 0);
    assert_int_equal(bm[0], (1ull << 5) | (1ull << 6) | (1ull << 16));
    for (unsigned w = 1; w < MiB / 4096 / 64; w++) {
        assert_int_equal(bm[w], 0);
    }
    /* Fetching cleared them; a partial word leaves the rest. */
    assert_int_equal(vmm_guest_memory_get_dirty(mem, 0, MiB / 4096, bm), 0);
    assert_int_equal(bm[0], 0);
    assert_int_equal(vmm_dma_write(mem, 0x41000, buf, 1), 0);          /* page 65 */
    assert_int_equal(vmm_dma_write(mem, 0x7f000, buf, 1), 0);          /* page 127 */
    assert_int_equal(vmm_guest_memory_get_dirty(mem, 0x40000, 10, bm), 0);
    assert_int_equal(bm[0], 2);
    assert_int_equal(vmm_guest_memory_get_dirty(mem, 0x40000, 64, bm), 0);
    assert_int_equal(bm[0], 1ull << 63);
    /* Off: nothing recorded, fetching says so; on again starts clean. */
    assert_int_equal(vmm_dma_write(mem, 0x3000, buf, 1), 0);
    assert_int_equal(vmm_guest_memory_log_dirty(mem, false), 0);
    assert_int_equal(vmm_guest_memory_get_dirty(mem, 0, 64, bm), -ENOENT);
    assert_int_equal(vmm_guest_memory_log_dirty(mem, true), 0);
    assert_int_equal(vmm_guest_memory_get_dirty(mem, 0, 64, bm), 0);
    assert_int_equal(bm[0], 0);
    vmm_guest_memory_unref(mem);
    vmm_ram_region_unref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_region_basic),
        cmocka_unit_test(test_dirty_log),
        cmocka_unit_test(test_region_bad_options),
        cmocka_unit_test(test_region_hugepages),
        cmocka_unit_test(test_region_private),
        cmocka_unit_test(test_add_checks),
        cmocka_unit_test(test_add_too_many),
        cmocka_unit_test_setup_teardown(test_dma_rw, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dma_hole_and_wrap, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dma_map, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_remove_then_dma, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_listeners, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
