/* SPDX-License-Identifier: MIT */
/* Unit tests: the ACPI tables link up, checksum, and say what we mean. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "machine/acpi.h"

#define BASE 0xe0000ull
#define LEN 0x20000

static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static const uint8_t *table(const uint8_t *buf, uint64_t gpa, const char *sig)
{
    assert_true(gpa >= BASE && gpa < BASE + LEN);
    const uint8_t *t = buf + (gpa - BASE);
    assert_memory_equal(t, sig, 4);
    uint32_t len = get32(t + 4);
    assert_true(len >= 36 && gpa + len <= BASE + LEN);
    assert_int_equal(acpi_checksum(t, len), 0);
    return t;
}

static const uint8_t *find(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++) {
        if (!memcmp(hay + i, needle, m)) {
            return hay + i;
        }
    }
    return NULL;
}

static void check(uint32_t ncpus)
{
    uint8_t *buf = malloc(LEN);
    AcpiConfig cfg = { .ncpus = ncpus, .pci_mmio_start = 0xc0000000,
                       .pci_mmio_end = 0xfec00000 };
    long used = acpi_build(buf, LEN, BASE, &cfg);
    assert_true(used > 0 && used <= LEN);
    /* RSDP: signature, both checksums, revision 2, XSDT. */
    assert_memory_equal(buf, "RSD PTR ", 8);
    assert_int_equal(acpi_checksum(buf, 20), 0);
    assert_int_equal(acpi_checksum(buf, 36), 0);
    assert_int_equal(buf[15], 2);
    const uint8_t *xsdt = table(buf, get64(buf + 24), "XSDT");
    assert_int_equal(get32(xsdt + 4), 36 + 16);
    const uint8_t *fadt = table(buf, get64(xsdt + 36), "FACP");
    const uint8_t *madt = table(buf, get64(xsdt + 44), "APIC");
    /* FADT: revision 6, full length, hardware-reduced, reset register. */
    assert_int_equal(get32(fadt + 4), 276);
    assert_int_equal(fadt[8], 6);
    uint32_t flags = get32(fadt + 112);
    assert_true(flags & (1u << 20));
    assert_true(flags & (1u << 10));
    assert_int_equal(fadt[116], 1);                   /* reset reg in I/O space */
    assert_int_equal(get64(fadt + 120), ACPI_PORT_RESET);
    assert_int_equal(fadt[128], ACPI_RESET_VALUE);
    assert_int_equal(fadt[244], 1);
    assert_int_equal(get64(fadt + 248), ACPI_PORT_SLEEP_CONTROL);
    assert_int_equal(get64(fadt + 260), ACPI_PORT_SLEEP_STATUS);
    assert_int_equal(get32(fadt + 40), get64(fadt + 140));
    const uint8_t *dsdt = table(buf, get64(fadt + 140), "DSDT");
    /* MADT: one enabled local APIC per CPU, one I/O APIC. */
    uint32_t mlen = get32(madt + 4), cpus = 0, ioapics = 0;
    for (uint32_t off = 44; off < mlen;) {
        const uint8_t *e = madt + off;
        assert_true(e[1] >= 2 && off + e[1] <= mlen);
        if (e[0] == 0) {
            assert_int_equal(e[3], cpus);
            assert_int_equal(get32(e + 4) & 1, 1);
            cpus++;
        } else if (e[0] == 1) {
            assert_int_equal(get32(e + 4), ACPI_IOAPIC_ADDR);
            ioapics++;
        }
        off += e[1];
    }
    assert_int_equal(cpus, ncpus);
    assert_int_equal(ioapics, 1);
    /* DSDT: \_S5 with SLP_TYP 5, and a PNP0A03 root bridge whose Device
     * package runs exactly to the table's end. */
    uint32_t dlen = get32(dsdt + 4);
    const uint8_t *s5 = find(dsdt + 36, dlen - 36, "_S5_", 4);
    assert_non_null(s5);
    assert_int_equal(s5[4], 0x12);
    assert_int_equal(s5[7], 0x0a);
    assert_int_equal(s5[8], ACPI_S5_TYPE);
    const uint8_t *dev = find(dsdt + 36, dlen - 36, "\x5b\x82", 2);
    assert_non_null(dev);
    size_t pkg;
    const uint8_t *pl = dev + 2;
    if (pl[0] & 0xc0) {
        pkg = (pl[0] & 0xf) | (size_t)pl[1] << 4;
    } else {
        pkg = pl[0];
    }
    /* The second device (COM1) follows PCI0's package. */
    const uint8_t *com1 = pl + pkg;
    assert_memory_equal(com1, "\x5b\x82", 2);
    assert_memory_equal(com1 + 3, "COM1", 4);
    assert_int_equal(com1 + 2 + com1[2], dsdt + dlen);
    uint8_t hid1[] = { 0x0c, 0x41, 0xd0, 0x05, 0x01 };
    assert_non_null(find(com1, dsdt + dlen - com1, hid1, sizeof(hid1)));
    uint8_t irq4[] = { 0x22, 0x10, 0x00 };
    assert_non_null(find(com1, dsdt + dlen - com1, irq4, sizeof(irq4)));
    uint8_t hid[] = { 0x0c, 0x41, 0xd0, 0x0a, 0x03 };
    assert_non_null(find(dsdt, dlen, hid, sizeof(hid)));
    /* _CRS: the memory window, and an end tag. */
    const uint8_t *crs = find(dsdt, dlen, "_CRS", 4);
    assert_non_null(crs);
    const uint8_t *mem = find(crs, dsdt + dlen - crs, "\x87\x17\x00", 3);
    assert_non_null(mem);
    assert_int_equal(get32(mem + 10), 0xc0000000u);
    assert_int_equal(get32(mem + 14), 0xfebfffffu);
    free(buf);
}

static void test_tables_1cpu(void **state) { (void)state; check(1); }
static void test_tables_many(void **state) { (void)state; check(ACPI_MAX_CPUS); }

static void test_errors(void **state)
{
    (void)state;
    uint8_t small[64];
    AcpiConfig cfg = { .ncpus = 1, .pci_mmio_start = 0xc0000000, .pci_mmio_end = 0xfec00000 };
    assert_int_equal(acpi_build(small, sizeof(small), BASE, &cfg), -ENOSPC);
    cfg.ncpus = 0;
    assert_int_equal(acpi_build(small, sizeof(small), BASE, &cfg), -EINVAL);
    cfg.ncpus = ACPI_MAX_CPUS + 1;
    assert_int_equal(acpi_build(small, sizeof(small), BASE, &cfg), -EINVAL);
    cfg.ncpus = 1;
    cfg.pci_mmio_end = 5ull << 32;
    assert_int_equal(acpi_build(small, sizeof(small), BASE, &cfg), -EINVAL);
}

/* Regions of the VMM's own outside PCI: one PNP0C02 device each, with the
 * range as a consumer resource, after COM1; the table's checksum holds. */
static void test_regions(void **state)
{
    (void)state;
    uint8_t *buf = malloc(LEN);
    AcpiRegion regs[2] = { { .pio = true, .base = 0x510, .len = 4 },
                           { .pio = false, .base = 0xfef00000, .len = 0x1000 } };
    AcpiConfig cfg = { .ncpus = 1, .pci_mmio_start = 0xc0000000,
                       .pci_mmio_end = 0xfec00000, .regions = regs, .nregions = 2 };
    assert_true(acpi_build(buf, LEN, BASE, &cfg) > 0);
    const uint8_t *xsdt = table(buf, get64(buf + 24), "XSDT");
    const uint8_t *fadt = table(buf, get64(xsdt + 36), "FACP");
    const uint8_t *dsdt = table(buf, get64(fadt + 140), "DSDT");
    uint32_t dlen = get32(dsdt + 4);
    assert_int_equal(acpi_checksum(dsdt, dlen), 0);
    const uint8_t *r0 = find(dsdt, dlen, "RES0", 4);
    const uint8_t *r1 = find(dsdt, dlen, "RES1", 4);
    assert_non_null(r0);
    assert_non_null(r1);
    assert_true(r0 > find(dsdt, dlen, "COM1", 4) && r1 > r0);
    static const uint8_t hid[] = { 0x0c, 0x41, 0xd0, 0x0c, 0x02 };    /* PNP0C02 */
    assert_non_null(find(r0, (size_t)(r1 - r0), hid, sizeof(hid)));
    assert_non_null(find(r1, dsdt + dlen - r1, hid, sizeof(hid)));
    /* Word I/O 0x510-0x513, length 4 (consumer). */
    static const uint8_t io[] = { 0x88, 13, 0, 1, 0x0d, 3, 0, 0, 0x10, 0x05, 0x13, 0x05,
                                  0, 0, 4, 0 };
    assert_non_null(find(r0, (size_t)(r1 - r0), io, sizeof(io)));
    /* QWord memory from 0xfef00000, length 0x1000. */
    const uint8_t *q = find(r1, dsdt + dlen - r1, "\x8a\x2b\x00\x00\x0d", 5);
    assert_non_null(q);
    assert_int_equal(get64(q + 14), 0xfef00000);
    assert_int_equal(get64(q + 22), 0xfef00fff);
    assert_int_equal(get64(q + 38), 0x1000);
    /* A port range past 0xffff, or an empty one, is refused. */
    regs[0].len = 0x10000;
    assert_int_equal(acpi_build(buf, LEN, BASE, &cfg), -EINVAL);
    regs[0].len = 0;
    assert_int_equal(acpi_build(buf, LEN, BASE, &cfg), -EINVAL);
    free(buf);
}

static void test_sleep_decode(void **state)
{
    (void)state;
    assert_int_equal(acpi_decode_sleep_control(0x20 | (5 << 2)), ACPI_SLEEP_POWEROFF);
    assert_int_equal(acpi_decode_sleep_control(5 << 2), ACPI_SLEEP_NONE);
    assert_int_equal(acpi_decode_sleep_control(0x20 | (3 << 2)), ACPI_SLEEP_NONE);
    assert_int_equal(acpi_decode_sleep_control(0), ACPI_SLEEP_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_1cpu),
        cmocka_unit_test(test_tables_many),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_regions),
        cmocka_unit_test(test_sleep_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
