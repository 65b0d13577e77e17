/* SPDX-License-Identifier: MIT */
/* Internal: the machine object shared by machine.c and its device glue. */
#ifndef VMM_MACHINE_INTERNAL_H
#define VMM_MACHINE_INTERNAL_H

#include <poll.h>
#include <pthread.h>

#include "vmmkit/aio.h"
#include "vmmkit/kvm.h"
#include "vmmkit/machine.h"
#include "vmmkit/memory.h"
#include "machine/pci.h"
#include "machine/serial.h"
#include "machine/x86-boot.h"

#define MACHINE_MAX_PCI 8

typedef struct VmmMachinePciDev VmmMachinePciDev;
/* A PCI function's BAR accesses, called with the machine's lock held. */
struct VmmMachinePciDev {
    PciDevice *pci;
    uint64_t (*read)(VmmMachinePciDev *d, int bar, uint64_t off, unsigned size);
    void (*write)(VmmMachinePciDev *d, int bar, uint64_t off, unsigned size, uint64_t val);
    void *opaque;
};

typedef struct MachineDisk MachineDisk;

struct VmmMachine {
    VmmVm *vm;
    VmmRamRegion *ram;
    VmmGuestMemory *mem;
    uint8_t *host;
    uint64_t boot_rip;          /* vCPU 0's entry: bzImage startup_64 or ELF entry */
    bool kernel_unpacked;       /* a bzImage's vmlinux was unpacked on the host */
    uint64_t ram_size, low_size;
    uint32_t cpus;
    int console_fd;

    pthread_mutex_t lock;          /* the device lock (see machine.c) */
    PciBus bus;
    PciDevice host_bridge;
    VmmMachinePciDev *pci[MACHINE_MAX_PCI];
    unsigned npci;
    uint64_t next_mmio;
    Serial serial;

    MachineDisk *disks[MACHINE_MAX_PCI];
    unsigned ndisks;
    VmmIOThread *iothread;         /* runs the disks' queues */

    VmmMachineState state;         /* atomic */
    int end_fd;
    pthread_t waiter;
    bool have_waiter, joined;
    char end_msg[256];
};

/* Plug @d into the next PCI slot.  Main loop, before start. */
int machine_pci_add(VmmMachine *m, VmmMachinePciDev *d);
/* A naturally aligned range of the PCI window for a BAR; 0 when full. */
uint64_t machine_alloc_mmio(VmmMachine *m, uint64_t size);

/* Device glue (machine-disk.c). */
int machine_devices_start(VmmMachine *m);
int machine_devices_pause(VmmMachine *m, bool pause);
void machine_devices_free(VmmMachine *m);

#endif
