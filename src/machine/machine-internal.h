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
#include "machine/irq-handoff.h"
#include "machine/pci.h"
#include "machine/serial.h"
#include "machine/x86-boot.h"
#include "util/lock.h"

#define MACHINE_MAX_PCI 8

typedef struct VmmMachinePciDev VmmMachinePciDev;
/* A PCI function's BAR accesses, called with the machine's lock held (the
 * VMM_REQUIRES cannot ride on the function pointers: implementations
 * start with machine_assert_locked()). */
struct VmmMachinePciDev {
    PciDevice *pci;
    uint64_t (*read)(VmmMachinePciDev *d, int bar, uint64_t off, unsigned size);
    void (*write)(VmmMachinePciDev *d, int bar, uint64_t off, unsigned size, uint64_t val);
    void *opaque;
};

typedef struct MachineDisk MachineDisk;
typedef struct MachineRestore MachineRestore;

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

    /* The device lock (see machine.c).  It guards the fields marked
     * "lock" below and in MachineDisk.  (clang's guarded_by cannot name a
     * sibling field in C before clang 19's late-parsed attributes: the
     * functions touching them carry VMM_REQUIRES(m->lock) instead.) */
    VmmMutex lock;
    IrqHandoff irqs;               /* sources: disk indexes (machine-disk.c) */
    PciBus bus;                    /* lock */
    PciDevice host_bridge;         /* lock */
    VmmMachinePciDev *pci[MACHINE_MAX_PCI];     /* lock */
    unsigned npci;                 /* lock */
    uint64_t next_mmio;            /* main loop, before start */
    Serial serial;                 /* lock */

    MachineDisk *disks[MACHINE_MAX_PCI];        /* lock */
    unsigned ndisks;               /* lock */
    VmmIOThread *iothread;         /* runs the disks' queues */

    MachineRestore *restore;       /* main loop: pending until start */
    int ack_fd;                    /* migrated: the source waits for a word here */
    int migrate_cancel;            /* atomic: vmm_machine_migrate_cancel() */

    VmmMachineState state;         /* atomic */
    int end_fd;
    pthread_t waiter;
    bool have_waiter, joined;
    char end_msg[256];
};

/* Take and release the device lock.  machine_unlock() first delivers the
 * interrupts devices raised meanwhile (irq-handoff.h). */
void machine_lock(VmmMachine *m) VMM_ACQUIRE(m->lock);
void machine_unlock(VmmMachine *m) VMM_RELEASE(m->lock);

/* The caller holds m->lock, though the analysis cannot see it: a callback
 * through a function pointer (VmmMachinePciDev, VirtioPciOps, the
 * handoff's deliver) or a device reached through m->disks[].  Debug builds
 * check that somebody holds it. */
void machine_assert_locked(VmmMachine *m) VMM_ASSERT_CAPABILITY(m->lock);

/* Plug @d into the next PCI slot.  Main loop, before start. */
int machine_pci_add(VmmMachine *m, VmmMachinePciDev *d) VMM_REQUIRES(m->lock);
/* A naturally aligned range of the PCI window for a BAR; 0 when full. */
uint64_t machine_alloc_mmio(VmmMachine *m, uint64_t size);

/* Device glue (machine-disk.c). */
int machine_devices_start(VmmMachine *m);
int machine_devices_pause(VmmMachine *m, bool pause) VMM_EXCLUDES(m->lock);
void machine_devices_free(VmmMachine *m) VMM_EXCLUDES(m->lock);
/* Snapshots (snapshot.c), per device in bus order (machine-disk.c): the
 * virtio device IDs (returns the count), a device's record size (0: no
 * such device), save (device paused) and load (before start). */
unsigned machine_device_ids(VmmMachine *m, uint16_t *ids, unsigned max) VMM_EXCLUDES(m->lock);
size_t machine_device_state_size(VmmMachine *m, unsigned i) VMM_EXCLUDES(m->lock);
int machine_device_save(VmmMachine *m, unsigned i, uint8_t *out, size_t len)
    VMM_EXCLUDES(m->lock);
int machine_device_load(VmmMachine *m, unsigned i, const uint8_t *in, size_t len)
    VMM_EXCLUDES(m->lock);
/* @fn for the used ring of every enabled queue (what the devices write
 * into guest RAM besides their requests' buffers).  Main loop. */
void machine_device_used_rings(VmmMachine *m, void (*fn)(void *opaque, uint64_t gpa,
                                                         uint64_t len), void *opaque)
    VMM_EXCLUDES(m->lock);
/* A restored machine's state that waits for vmm_machine_start (devices,
 * clock); NULL otherwise. */
int machine_restore_finish(VmmMachine *m);
VmmMachine *machine_new(const VmmMachineOptions *o, bool boot, int *errp);
/* A migrated machine tells its source whether it runs (@ok), once; no-op
 * for other machines (migration.c). */
void machine_migration_ack(VmmMachine *m, bool ok);
void machine_restore_free(MachineRestore *r);

/* The handoff's deliver (m->irqs): disk @src's pending interrupts. */
void machine_disk_deliver(void *opaque, unsigned src);

#endif
