/* SPDX-License-Identifier: MIT */
/* PCI config space, BARs and the CF8/CFC mechanism; see pci.h. */
#include "machine/pci.h"

#include <errno.h>
#include <string.h>

void pci_device_init(PciDevice *d, uint16_t vendor, uint16_t device, uint32_t class_code,
                     uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id)
{
    memset(d, 0, sizeof(*d));
    pci_set(d->config + PCI_VENDOR_ID, 2, vendor);
    pci_set(d->config + PCI_DEVICE_ID, 2, device);
    d->config[PCI_REVISION] = revision;
    pci_set(d->config + PCI_CLASS_PROG, 3, class_code);
    pci_set(d->config + PCI_SUBSYS_VENDOR, 2, subsys_vendor);
    pci_set(d->config + PCI_SUBSYS_ID, 2, subsys_id);
    /* Command: I/O, memory, bus master, INTx disable are writable. */
    pci_set(d->wmask + PCI_COMMAND, 2,
            PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
            PCI_COMMAND_INTX_DISABLE);
    /* Status: the error bits are write-one-to-clear. */
    pci_set(d->w1cmask + PCI_STATUS, 2, 0xf900);
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    d->wmask[0x0c] = 0xff;               /* cache line size */
    d->wmask[0x0d] = 0xff;               /* latency timer */
    d->next_cap = 0x40;
}

static bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

int pci_device_set_bar(PciDevice *d, int idx, uint64_t size, uint32_t flags, uint64_t addr)
{
    bool io = flags & PCI_BAR_IO, m64 = flags & PCI_BAR_MEM64;
    if (idx < 0 || idx >= PCI_NUM_BARS || (m64 && idx + 1 >= PCI_NUM_BARS) ||
        (io && m64) || !is_pow2(size) || size < (io ? 4u : 16u) ||
        (io && size > 256) || (!m64 && size > (1ull << 31)) || (addr & (size - 1)) ||
        d->bars[idx].size) {
        return -EINVAL;
    }
    d->bars[idx] = (PciBar){ .size = size, .flags = flags };
    uint64_t mask = ~(size - 1);
    uint32_t low_flags = io ? 0x1 : (m64 ? 0x4 : 0x0);
    uint8_t *reg = d->config + PCI_BAR0 + 4 * idx;
    uint8_t *wm = d->wmask + PCI_BAR0 + 4 * idx;
    pci_set(reg, 4, (addr & 0xfffffff0u) | low_flags);
    pci_set(wm, 4, (uint32_t)mask & (io ? ~0x3u : ~0xfu));
    if (m64) {
        pci_set(reg + 4, 4, addr >> 32);
        pci_set(wm + 4, 4, mask >> 32);
    }
    return 0;
}

static uint64_t bar_raw_addr(const PciDevice *d, int idx)
{
    const PciBar *b = &d->bars[idx];
    uint64_t v = pci_get(d->config + PCI_BAR0 + 4 * idx, 4);
    if (b->flags & PCI_BAR_IO) {
        return v & ~0x3ull;
    }
    v &= ~0xfull;
    if (b->flags & PCI_BAR_MEM64) {
        v |= (uint64_t)pci_get(d->config + PCI_BAR0 + 4 * idx + 4, 4) << 32;
    }
    return v;
}

uint64_t pci_device_bar_addr(const PciDevice *d, int idx)
{
    if (idx < 0 || idx >= PCI_NUM_BARS || !d->bars[idx].size) {
        return UINT64_MAX;
    }
    const PciBar *b = &d->bars[idx];
    uint16_t cmd = (uint16_t)pci_get(d->config + PCI_COMMAND, 2);
    if (!(cmd & ((b->flags & PCI_BAR_IO) ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY))) {
        return UINT64_MAX;
    }
    uint64_t a = bar_raw_addr(d, idx);
    uint64_t limit = (b->flags & PCI_BAR_IO) ? 0x10000 : (b->flags & PCI_BAR_MEM64)
                                                             ? (1ull << 52) : (1ull << 32);
    /* While the guest sizes a BAR it reads back the mask: not a mapping. */
    if (a == 0 || a + b->size > limit || a + b->size < a ||
        a == (~(b->size - 1) & (limit - 1))) {
        return UINT64_MAX;
    }
    return a;
}

int pci_device_add_cap(PciDevice *d, uint8_t id, uint8_t len)
{
    uint32_t at = (d->next_cap + 3u) & ~3u;
    if (len < 2 || at < 0x40 || at + len > PCI_CONFIG_SIZE) {
        return -ENOSPC;
    }
    d->config[at] = id;
    d->config[at + 1] = 0;
    /* Link at the end of the chain. */
    uint8_t *link = &d->config[PCI_CAP_PTR];
    while (*link) {
        link = &d->config[*link + 1];
    }
    *link = (uint8_t)at;
    d->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    d->next_cap = (uint8_t)(at + len < 0x100 ? at + len : 0xff);
    return (int)at;
}

static bool access_ok(uint32_t off, uint32_t size)
{
    return (size == 1 || size == 2 || size == 4) && off < PCI_CONFIG_SIZE &&
           off + size <= PCI_CONFIG_SIZE && (off & (size - 1)) == 0;
}

uint32_t pci_config_read(const PciDevice *d, uint32_t off, uint32_t size)
{
    if (!access_ok(off, size)) {
        return 0xffffffffu;
    }
    return pci_get(d->config + off, size);
}

void pci_config_write(PciDevice *d, uint32_t off, uint32_t size, uint32_t val)
{
    if (!access_ok(off, size)) {
        return;
    }
    uint64_t before[PCI_NUM_BARS];
    for (int i = 0; i < PCI_NUM_BARS; i++) {
        before[i] = pci_device_bar_addr(d, i);
    }
    for (uint32_t i = 0; i < size; i++) {
        uint8_t v = (uint8_t)(val >> (8 * i));
        uint32_t o = off + i;
        uint8_t wm = d->wmask[o], w1c = d->w1cmask[o];
        d->config[o] = (uint8_t)((d->config[o] & ~wm) | (v & wm));
        d->config[o] &= (uint8_t)~(v & w1c);
    }
    if (d->bar_hook) {
        for (int i = 0; i < PCI_NUM_BARS; i++) {
            uint64_t now = pci_device_bar_addr(d, i);
            if (now != before[i]) {
                d->bar_hook(d, i, before[i], now, d->opaque);
            }
        }
    }
    if (d->write_hook) {
        d->write_hook(d, off, size, d->opaque);
    }
}

int pci_bus_plug(PciBus *bus, int slot, PciDevice *d)
{
    if (slot < 0 || slot >= PCI_SLOTS || bus->slot[slot]) {
        return -EINVAL;
    }
    bus->slot[slot] = d;
    return 0;
}

/* The device and register CF8 selects, or NULL (disabled, other bus or
 * function, empty slot). */
static PciDevice *selected(PciBus *bus, uint32_t *reg)
{
    uint32_t a = bus->cf8;
    if (!(a & 0x80000000u) || ((a >> 16) & 0xff) != 0 || ((a >> 8) & 7) != 0) {
        return NULL;
    }
    *reg = a & 0xfc;
    return bus->slot[(a >> 11) & 0x1f];
}

uint32_t pci_bus_pio_read(PciBus *bus, uint16_t port, uint32_t size)
{
    uint32_t ones = size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
    if (port == PCI_CONFIG_ADDR_PORT && size == 4) {
        return bus->cf8;
    }
    if (port < PCI_CONFIG_DATA_PORT || port + size > PCI_CONFIG_DATA_PORT + 4) {
        return ones;
    }
    uint32_t reg;
    PciDevice *d = selected(bus, &reg);
    if (!d) {
        return ones;
    }
    return pci_config_read(d, reg + (port - PCI_CONFIG_DATA_PORT), size);
}

void pci_bus_pio_write(PciBus *bus, uint16_t port, uint32_t size, uint32_t val)
{
    if (port == PCI_CONFIG_ADDR_PORT && size == 4) {
        bus->cf8 = val & 0x80fffffcu;
        return;
    }
    if (port < PCI_CONFIG_DATA_PORT || port + size > PCI_CONFIG_DATA_PORT + 4) {
        return;
    }
    uint32_t reg;
    PciDevice *d = selected(bus, &reg);
    if (d) {
        pci_config_write(d, reg + (port - PCI_CONFIG_DATA_PORT), size, val);
    }
}
