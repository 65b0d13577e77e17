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
#include "machine/virtio-pci.h"
#include "machine/x86-boot.h"
#include "util/lock.h"

/* PCI slots for devices (slot 0 is the host bridge). */
#define MACHINE_MAX_PCI (PCI_SLOTS - 1)
/* User PIO/MMIO regions (vmm_machine_add_io_region). */
#define MACHINE_MAX_REGIONS 16

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

typedef struct MachineRestore MachineRestore;

/*
 * What a device the library builds for the machine (a disk, the console,
 * the RNG) does beside the glue.  A user's device (vmm_machine_add_virtio)
 * has none: the machine resets it at teardown and leaves it to the caller.
 */
typedef struct MachineVirtioClass {
    /* Main loop, vCPUs stopped, before the glue goes: let the device
     * finish what it has in flight (a disk drains its BlockBackend).
     * NULL: the machine resets the device through its status and waits
     * for the reset. */
    void (*drain)(void *priv);
    /* Main loop, after the glue went, before the iothread goes: free the
     * device and @priv.  NULL: the caller owns the device. */
    void (*free)(void *priv);
    /* Optional: add the device's counters (machine lock held). */
    void (*stats)(void *priv, VmmMachineStats *st);
} MachineVirtioClass;

/* An MSI-X vector's irqfd: n != NULL and gsi >= 0 when it has one. */
typedef struct MachineVirtioVector {
    VmmEventNotifier *n;
    int gsi;
} MachineVirtioVector;

/*
 * A virtio device on the machine's virtio-pci bus (machine-virtio.c): its
 * transport, MSI-X vectors on irqfds, doorbells on ioeventfds.  Fields
 * marked "lock" are guarded by m->lock.
 */
typedef struct MachineVirtio {
    VmmMachine *m;
    unsigned index;                     /* in m->virtio[]: the handoff source */
    VmmVirtioDevice *vdev;
    const MachineVirtioClass *cls;      /* NULL: a user's device */
    void *priv;                         /* the class's */
    bool set_contexts;                  /* the machine set the queues' contexts */
    VirtioPci t;                        /* lock */
    VmmMachinePciDev pcidev;
    bool paused;                        /* main loop */
    bool mig_paused;                    /* main loop: machine_backends_pause() */
    bool no_irqfd;                      /* lock; routes unavailable: signal_msi only */
    MachineVirtioVector vec[VPCI_MAX_VECTORS];  /* lock */
    VmmEventNotifier *bell[VPCI_MAX_QUEUES];    /* set at creation, attached to the queues */
    /* lock: ioeventfd registered there, or UINT64_MAX */
    uint64_t bell_gpa[VPCI_MAX_QUEUES];
    /* Interrupts raised by the virtio core, not yet given to the transport
     * (atomic; set by the interrupt callback, taken by machine_virtio_deliver). */
    uint64_t irq_queues;                /* bit q: queue q */
    bool irq_config;
    /* Statistics (atomic, relaxed). */
    uint64_t irqfd_signals, msi_injections;
} MachineVirtio;

/* A user's PIO or MMIO region (vmm_machine_add_io_region). */
typedef struct MachineRegion {
    VmmMachine *m;
    bool pio;
    uint64_t base, len;
    VmmMachineIoOps ops;
    void *opaque;
    VmmMutex lock;                      /* serialises the region's callbacks */
} MachineRegion;

/* Timestamps of a migration's steps (VMM_MIGRATE_TRACE=1 in the
 * environment): kept while the machine is paused, printed to stderr at
 * the end, on vmm_clock_ns()'s (CLOCK_MONOTONIC) time base, so the two
 * sides' lines on one host line up (migration.c). */
#define MIG_TRACE_MAX 32
typedef struct MigTrace {
    bool on;
    unsigned n;
    int64_t t[MIG_TRACE_MAX];
    const char *what[MIG_TRACE_MAX];
} MigTrace;
void mig_trace_init(MigTrace *t);
void mig_trace_mark(MigTrace *t, const char *what);
void mig_trace_print(MigTrace *t, const char *side);

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
     * "lock" below and in MachineVirtio.  (clang's guarded_by cannot name a
     * sibling field in C before clang 19's late-parsed attributes: the
     * functions touching them carry VMM_REQUIRES(m->lock) instead.) */
    VmmMutex lock;
    IrqHandoff irqs;               /* sources: m->virtio[] indexes (machine-virtio.c) */
    PciBus bus;                    /* lock */
    PciDevice host_bridge;         /* lock */
    VmmMachinePciDev *pci[MACHINE_MAX_PCI];     /* lock */
    unsigned npci;                 /* lock */
    uint64_t next_mmio;            /* main loop, before start */
    Serial serial;                 /* lock */

    /* The virtio devices, in the order added (the PCI slot order). */
    MachineVirtio *virtio[MACHINE_MAX_PCI];     /* lock */
    unsigned nvirtio;              /* lock */
    VmmIOThread *iothread;         /* the device context: runs the queues */
    MachineRegion *regions[MACHINE_MAX_REGIONS];    /* main loop, before start */
    unsigned nregions;

    MachineRestore *restore;       /* main loop: pending until start */
    int ack_fd;                    /* migrated: the source waits for a word here */
    int ack_running_fd;            /* migrated, started: the first vCPU thread's */
    int64_t ack_timeout_ns;        /* migrated: the longest wait for the source's 'C' */
    bool incoming_failed;          /* migrated: no commit came; never runs */
    MigTrace trace;                /* migrated: main loop */
    int migrate_cancel;            /* atomic: vmm_machine_migrate_cancel() */

    VmmMachineState state;         /* atomic */
    int end_fd;
    pthread_t waiter;
    bool have_waiter, joined;
    bool waiter_early;             /* made, the machine not started yet */
    char end_msg[256];
};

/* Take and release the device lock.  machine_unlock() first delivers the
 * interrupts devices raised meanwhile (irq-handoff.h). */
void machine_lock(VmmMachine *m) VMM_ACQUIRE(m->lock);
void machine_unlock(VmmMachine *m) VMM_RELEASE(m->lock);

/* The caller holds m->lock, though the analysis cannot see it: a callback
 * through a function pointer (VmmMachinePciDev, VirtioPciOps, the
 * handoff's deliver) or a device reached through m->virtio[].  Debug builds
 * check that somebody holds it. */
void machine_assert_locked(VmmMachine *m) VMM_ASSERT_CAPABILITY(m->lock);

/* Plug @d into the next PCI slot.  Main loop, before start. */
int machine_pci_add(VmmMachine *m, VmmMachinePciDev *d) VMM_REQUIRES(m->lock);
/* A naturally aligned range of the PCI window for a BAR; 0 when full. */
uint64_t machine_alloc_mmio(VmmMachine *m, uint64_t size);

/* Virtio glue (machine-virtio.c). */
/*
 * Put @vdev on the bus behind a virtio-pci function of PCI class
 * @pci_class, with its interrupt callback, doorbells and vectors wired.
 * @ctx: the context every queue runs in (set here), or NULL when the device
 * set its queues' contexts itself.  @cls/@priv: a library device's hooks
 * (NULL for a user's device).  Main loop, before start.  -EINVAL (after
 * start, a device already on the bus, too many queues), -ENOSPC (no slot
 * or BAR space), -EBUSY (a queue already has a host notifier), -ENOMEM.
 */
int machine_virtio_add(VmmMachine *m, VmmVirtioDevice *vdev, uint32_t pci_class,
                       VmmAioContext *ctx, const MachineVirtioClass *cls, void *priv)
    VMM_EXCLUDES(m->lock);
int machine_devices_start(VmmMachine *m);
int machine_devices_pause(VmmMachine *m, bool pause) VMM_EXCLUDES(m->lock);
/* Live migration's source: pause, until the migration ends, the devices
 * whose queues a backend outside the core processes (vhost), so nothing
 * writes guest memory outside the dirty logs during the pre-copy.
 * machine_devices_pause(m, false) (vmm_machine_resume) and
 * machine_devices_free() undo it.  Main loop. */
int machine_backends_pause(VmmMachine *m) VMM_EXCLUDES(m->lock);
/* @v's queues are processed by a backend outside the core (vhost). */
bool machine_virtio_has_backend(VmmVirtioDevice *v);
void machine_devices_free(VmmMachine *m) VMM_EXCLUDES(m->lock);
/* Snapshots (snapshot.c), per device in bus order (machine-virtio-state.c): the
 * virtio device IDs (returns the count), a device's record size (0: no
 * such device), save (device paused) and load (before start). */
unsigned machine_device_ids(VmmMachine *m, uint16_t *ids, unsigned max) VMM_EXCLUDES(m->lock);
size_t machine_device_state_size(VmmMachine *m, unsigned i) VMM_EXCLUDES(m->lock);
int machine_device_save(VmmMachine *m, unsigned i, uint8_t *out, size_t len)
    VMM_EXCLUDES(m->lock);
int machine_device_load(VmmMachine *m, unsigned i, const uint8_t *in, size_t len)
    VMM_EXCLUDES(m->lock);
/* 0, or -EOPNOTSUPP (with a message) when a device's state can never be
 * saved (vmm_virtio_save_state), checked on a running machine before a
 * migration starts.  Main loop. */
int machine_devices_saveable(VmmMachine *m) VMM_EXCLUDES(m->lock);
/* @fn for the used ring of every enabled queue (what the devices write
 * into guest RAM besides their requests' buffers), and for a device whose
 * backend writes outside the core (vhost), every writable buffer in its
 * descriptor tables (guest-given ranges: @fn bounds them).  Main loop,
 * machine paused. */
void machine_device_used_rings(VmmMachine *m, void (*fn)(void *opaque, uint64_t gpa,
                                                         uint64_t len), void *opaque)
    VMM_EXCLUDES(m->lock);
/* A restored machine's state that waits for vmm_machine_start (devices,
 * clock); NULL otherwise. */
int machine_restore_finish(VmmMachine *m);
VmmMachine *machine_new(const VmmMachineOptions *o, bool boot, int *errp);
/* A migrated machine tells its source whether it runs (@ok), once; no-op
 * for other machines (migration.c). */
int machine_migration_commit(VmmMachine *m);
void machine_migration_ack(VmmMachine *m, bool ok);
/* A migrated machine's vCPUs started (vmm_vm_start_notify), its 'G' sent
 * by the first vCPU thread about to enter KVM_RUN: 0 or -errno; 1 for
 * other machines (start them yourself). */
int machine_migration_run(VmmMachine *m);
/* The thread that waits for the VM's end, made ahead of
 * vmm_machine_start (which makes it if nobody did).  0 or -errno.  Main
 * loop. */
int machine_waiter_spawn(VmmMachine *m);
void machine_restore_free(MachineRestore *r);

/* The handoff's deliver (m->irqs): virtio device @src's pending interrupts. */
void machine_virtio_deliver(void *opaque, unsigned src);

#endif
