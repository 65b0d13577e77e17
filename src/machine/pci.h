/* SPDX-License-Identifier: MIT */
/*
 * Internal: a PCI bus 0 with type-0 config space, BAR sizing, capability
 * lists and the CF8/CFC configuration mechanism.  Pure state machines over
 * plain memory: the machine serialises calls with its device lock.
 */
#ifndef VMM_MACHINE_PCI_H
#define VMM_MACHINE_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_CONFIG_SIZE 256
#define PCI_SLOTS 32
#define PCI_NUM_BARS 6

#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_SUBSYS_ID 0x2e
#define PCI_CAP_PTR 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d

#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_CAP_LIST 0x10

#define PCI_BAR_IO 0x1
#define PCI_BAR_MEM64 0x4

typedef struct PciDevice PciDevice;

/* Called after a config write the generic code applied (the device may
 * react: MSI-X enable, its own capability fields). */
typedef void PciConfigWriteHook(PciDevice *d, uint32_t off, uint32_t size, void *opaque);
/* Called when what a BAR decodes changes (moved, or decoding switched by
 * the command register): the machine re-registers ioeventfds. */
typedef void PciBarHook(PciDevice *d, int bar, uint64_t old_addr, uint64_t new_addr,
                        void *opaque);

typedef struct PciBar {
    uint64_t size;     /* 0: absent; a power of two */
    uint32_t flags;    /* PCI_BAR_IO, PCI_BAR_MEM64 */
} PciBar;

struct PciDevice {
    uint8_t config[PCI_CONFIG_SIZE];
    uint8_t wmask[PCI_CONFIG_SIZE];    /* bits the guest may write */
    uint8_t w1cmask[PCI_CONFIG_SIZE];  /* bits cleared by writing 1 */
    PciBar bars[PCI_NUM_BARS];
    uint8_t next_cap;                  /* where the next capability goes */
    PciConfigWriteHook *write_hook;
    PciBarHook *bar_hook;
    void *opaque;
};

/* A type-0 function with the given ids; no BARs, no capabilities. */
void pci_device_init(PciDevice *d, uint16_t vendor, uint16_t device, uint32_t class_code,
                     uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id);

/*
 * Declare BAR @idx (a 64-bit BAR takes @idx and @idx+1) of @size bytes (a
 * power of two, at least 16 for memory, 4 for I/O) at @addr (what firmware
 * would have assigned).  Returns 0 or -EINVAL.
 */
int pci_device_set_bar(PciDevice *d, int idx, uint64_t size, uint32_t flags, uint64_t addr);

/* Where BAR @idx decodes now, or UINT64_MAX when it does not (decoding off,
 * absent, or an address not yet sized back). */
uint64_t pci_device_bar_addr(const PciDevice *d, int idx);

/*
 * Append a capability of @len bytes (id and next pointer included) with id
 * @id; returns its config offset or -ENOSPC.
 */
int pci_device_add_cap(PciDevice *d, uint8_t id, uint8_t len);

/* Config space accesses of 1, 2 or 4 bytes; others read as all ones and
 * are ignored on write.  Any offset is safe. */
uint32_t pci_config_read(const PciDevice *d, uint32_t off, uint32_t size);
void pci_config_write(PciDevice *d, uint32_t off, uint32_t size, uint32_t val);

typedef struct PciBus {
    PciDevice *slot[PCI_SLOTS];
    uint32_t cf8;
} PciBus;

#define PCI_CONFIG_ADDR_PORT 0xcf8
#define PCI_CONFIG_DATA_PORT 0xcfc

int pci_bus_plug(PciBus *bus, int slot, PciDevice *d);

/* Port I/O on 0xCF8-0xCFF; @port outside that range reads all ones. */
uint32_t pci_bus_pio_read(PciBus *bus, uint16_t port, uint32_t size);
void pci_bus_pio_write(PciBus *bus, uint16_t port, uint32_t size, uint32_t val);

/* Little-endian helpers shared by the device models. */
/* @size is 1..4. */
static inline uint32_t pci_get(const uint8_t *p, uint32_t size)
{
    uint32_t v = 0;
    for (uint32_t i = 0; i < size; i++) {
        v |= (uint32_t)p[i] << (8 * i);
    }
    return v;
}
/* @size is 1..8. */
static inline void pci_set(uint8_t *p, uint32_t size, uint64_t v)
{
    for (uint32_t i = 0; i < size; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

#endif
