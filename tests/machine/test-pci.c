/* SPDX-License-Identifier: MIT */
/* Unit tests: PCI config space, BAR sizing, capabilities, CF8/CFC. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "machine/pci.h"

static int hook_calls;
static uint64_t hook_old, hook_new;
static void bar_hook(PciDevice *d, int bar, uint64_t o, uint64_t n, void *opaque)
{
    (void)d; (void)opaque;
    if (bar == 0) {
        hook_calls++;
        hook_old = o;
        hook_new = n;
    }
}

static void test_ids_and_command(void **state)
{
    (void)state;
    PciDevice d;
    pci_device_init(&d, 0x1af4, 0x1042, 0x018000, 1, 0x1af4, 0x42);
    assert_int_equal(pci_config_read(&d, 0, 4), 0x10421af4);
    assert_int_equal(pci_config_read(&d, 0x08, 4), 0x01800001);
    assert_int_equal(pci_config_read(&d, 0x2c, 4), 0x00421af4);
    /* Read-only ids stay. */
    pci_config_write(&d, 0, 4, 0);
    assert_int_equal(pci_config_read(&d, 0, 2), 0x1af4);
    pci_config_write(&d, PCI_COMMAND, 2, 0xffff);
    assert_int_equal(pci_config_read(&d, PCI_COMMAND, 2), 0x407);
    /* Bad sizes, misaligned and out-of-range accesses are safe. */
    assert_int_equal(pci_config_read(&d, 1, 2), 0xffffffffu);
    assert_int_equal(pci_config_read(&d, 255, 4), 0xffffffffu);
    assert_int_equal(pci_config_read(&d, 0x1000, 1), 0xffffffffu);
    assert_int_equal(pci_config_read(&d, 0, 3), 0xffffffffu);
    pci_config_write(&d, 254, 4, 0);
    pci_config_write(&d, 0x7fffffff, 4, 0);
    /* Status error bits are write-1-to-clear. */
    d.config[PCI_STATUS + 1] = 0xf9;
    pci_config_write(&d, PCI_STATUS, 2, 0x0100);
    assert_int_equal(d.config[PCI_STATUS + 1], 0xf8);
}

static void test_bar_sizing(void **state)
{
    (void)state;
    PciDevice d;
    pci_device_init(&d, 1, 2, 0, 0, 0, 0);
    d.bar_hook = bar_hook;
    assert_int_equal(pci_device_set_bar(&d, 0, 0x4000, 0, 0xc0000000), 0);
    assert_int_equal(pci_device_set_bar(&d, 2, 1ull << 32, PCI_BAR_MEM64, 1ull << 36), 0);
    assert_int_equal(pci_device_set_bar(&d, 4, 32, PCI_BAR_IO, 0x1000), 0);
    assert_int_equal(pci_device_set_bar(&d, 0, 0x4000, 0, 0), -EINVAL);   /* taken */
    assert_int_equal(pci_device_set_bar(&d, 1, 0x3000, 0, 0), -EINVAL);   /* not pow2 */
    assert_int_equal(pci_device_set_bar(&d, 1, 0x1000, 0, 0x800), -EINVAL); /* misaligned */
    assert_int_equal(pci_device_set_bar(&d, 5, 0x1000, PCI_BAR_MEM64, 0), -EINVAL);
    /* Decoding off: no address. */
    assert_int_equal(pci_device_bar_addr(&d, 0), UINT64_MAX);
    hook_calls = 0;
    pci_config_write(&d, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_new, 0xc0000000);
    assert_int_equal(pci_device_bar_addr(&d, 0), 0xc0000000);
    assert_int_equal(pci_device_bar_addr(&d, 2), 1ull << 36);
    assert_int_equal(pci_device_bar_addr(&d, 4), 0x1000);
    /* Sizing as an OS does: write ones, read the mask, restore. */
    pci_config_write(&d, PCI_COMMAND, 2, 0);
    pci_config_write(&d, PCI_BAR0, 4, 0xffffffff);
    assert_int_equal(pci_config_read(&d, PCI_BAR0, 4), 0xffffc000);
    pci_config_write(&d, PCI_BAR0 + 8, 4, 0xffffffff);
    pci_config_write(&d, PCI_BAR0 + 12, 4, 0xffffffff);
    assert_int_equal(pci_config_read(&d, PCI_BAR0 + 8, 4), 0x00000004);
    assert_int_equal(pci_config_read(&d, PCI_BAR0 + 12, 4), 0xffffffff);
    pci_config_write(&d, PCI_BAR0 + 16, 4, 0xffffffff);
    assert_int_equal(pci_config_read(&d, PCI_BAR0 + 16, 4), 0xffffffe1);
    /* Move BAR 0 and enable decoding: the hook sees the new place. */
    pci_config_write(&d, PCI_BAR0, 4, 0xd0004000);
    hook_calls = 0;
    pci_config_write(&d, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_old, UINT64_MAX);
    assert_int_equal(hook_new, 0xd0004000);
    /* Moving while decoding: old and new. */
    pci_config_write(&d, PCI_BAR0, 4, 0xd0008000);
    assert_int_equal(hook_old, 0xd0004000);
    assert_int_equal(hook_new, 0xd0008000);
    /* The BAR's low flag bits are read-only. */
    pci_config_write(&d, PCI_BAR0, 4, 0xd000800f);
    assert_int_equal(pci_config_read(&d, PCI_BAR0, 4), 0xd0008000);
    /* A BAR written with its mask is not a mapping. */
    pci_config_write(&d, PCI_BAR0, 4, 0xffffffff);
    assert_int_equal(pci_device_bar_addr(&d, 0), UINT64_MAX);
}

static void test_caps(void **state)
{
    (void)state;
    PciDevice d;
    pci_device_init(&d, 1, 2, 0, 0, 0, 0);
    int a = pci_device_add_cap(&d, 0x11, 12);
    int b = pci_device_add_cap(&d, 0x09, 16);
    int c = pci_device_add_cap(&d, 0x09, 20);
    assert_int_equal(a, 0x40);
    assert_int_equal(b, 0x4c);
    assert_int_equal(c, 0x5c);
    assert_true(pci_config_read(&d, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    /* Walk the list. */
    int seen = 0;
    for (uint8_t p = d.config[PCI_CAP_PTR]; p; p = d.config[p + 1]) {
        seen++;
        assert_true(seen <= 3);
    }
    assert_int_equal(seen, 3);
    while (pci_device_add_cap(&d, 0x09, 64) >= 0) {
    }
    assert_int_equal(pci_device_add_cap(&d, 0x09, 64), -ENOSPC);
}

static void test_cf8(void **state)
{
    (void)state;
    PciBus bus;
    memset(&bus, 0, sizeof(bus));
    PciDevice host, dev;
    pci_device_init(&host, 0x8086, 0x0d57, 0x060000, 0, 0, 0);
    pci_device_init(&dev, 0x1af4, 0x1042, 0x018000, 1, 0, 0);
    assert_int_equal(pci_bus_plug(&bus, 0, &host), 0);
    assert_int_equal(pci_bus_plug(&bus, 1, &dev), 0);
    assert_int_equal(pci_bus_plug(&bus, 1, &dev), -EINVAL);
    assert_int_equal(pci_bus_plug(&bus, 32, &dev), -EINVAL);
    /* Linux's type-1 probe: CF8 reads back what was written. */
    pci_bus_pio_write(&bus, 0xcf8, 4, 0x80000000);
    assert_int_equal(pci_bus_pio_read(&bus, 0xcf8, 4), 0x80000000);
    assert_int_equal(pci_bus_pio_read(&bus, 0xcfc, 4), 0x0d578086);
    pci_bus_pio_write(&bus, 0xcf8, 4, 0x80000800);   /* slot 1 */
    assert_int_equal(pci_bus_pio_read(&bus, 0xcfc, 2), 0x1af4);
    assert_int_equal(pci_bus_pio_read(&bus, 0xcfe, 2), 0x1042);
    pci_bus_pio_write(&bus, 0xcf8, 4, 0x80000808);
    assert_int_equal(pci_bus_pio_read(&bus, 0xcff, 1), 0x01);
    /* Empty slot, another function or bus, disabled: all ones. */
    uint32_t none[] = { 0x80001000, 0x80000900, 0x80010800, 0x00000800 };
    for (int i = 0; i < 4; i++) {
        pci_bus_pio_write(&bus, 0xcf8, 4, none[i]);
        assert_int_equal(pci_bus_pio_read(&bus, 0xcfc, 4), 0xffffffffu);
        assert_int_equal(pci_bus_pio_read(&bus, 0xcfc, 1), 0xff);
        pci_bus_pio_write(&bus, 0xcfc, 4, 0);        /* ignored */
    }
    /* Writes through CFC reach the device. */
    pci_bus_pio_write(&bus, 0xcf8, 4, 0x80000804);
    pci_bus_pio_write(&bus, 0xcfc, 2, PCI_COMMAND_MASTER);
    assert_int_equal(pci_config_read(&dev, PCI_COMMAND, 2), PCI_COMMAND_MASTER);
    assert_int_equal(pci_bus_pio_read(&bus, 0xcfb, 1), 0xff);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_and_command),
        cmocka_unit_test(test_bar_sizing),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_cf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
