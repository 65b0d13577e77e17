/* SPDX-License-Identifier: MIT */
/*
 * Internal: the virtio-pci modern transport (virtio 1.x, section 4.1) with
 * MSI-X, over a PciDevice.  The device behind it is reached through
 * VirtioPciOps; the machine wires interrupts (an irqfd per MSI-X vector)
 * through the msix_* callbacks.  Pure state: the caller serialises every
 * call with the machine's device lock.
 *
 * BAR 0 (32-bit memory, 16 KiB): common config at 0x0000, ISR at 0x1000,
 * device config at 0x2000, notifications at 0x3000 (4 bytes per queue).
 * BAR 1 (32-bit memory, 4 KiB): the MSI-X table at 0, the PBA at 0x800.
 */
#ifndef VMM_MACHINE_VIRTIO_PCI_H
#define VMM_MACHINE_VIRTIO_PCI_H

#include <stddef.h>

#include "machine/pci.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VPCI_BAR_SIZE 0x4000
#define VPCI_COMMON 0x0000
#define VPCI_COMMON_LEN 0x38
#define VPCI_ISR 0x1000
#define VPCI_DEVCFG 0x2000
#define VPCI_DEVCFG_LEN 0x1000
#define VPCI_NOTIFY 0x3000
#define VPCI_NOTIFY_MULT 4
#define VPCI_MSIX_BAR_SIZE 0x1000
#define VPCI_MSIX_PBA 0x800
#define VPCI_MAX_QUEUES 64
#define VPCI_MAX_VECTORS (VPCI_MAX_QUEUES + 1)
#define VIRTIO_NO_VECTOR 0xffff

#define VIRTIO_STATUS_ACK 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

typedef struct VirtioPci VirtioPci;

typedef struct VirtioPciOps {
    uint64_t (*features)(void *opaque);                 /* offered */
    int (*set_features)(void *opaque, uint64_t f);      /* 0 or -errno: refused */
    void (*reset)(void *opaque);
    void (*driver_ok)(void *opaque);
    /* The driver enabled queue @q: 0, or -errno (the device then needs reset). */
    int (*queue_enable)(void *opaque, unsigned q, unsigned size, uint64_t desc,
                        uint64_t avail, uint64_t used);
    void (*queue_notify)(void *opaque, unsigned q);
    uint32_t (*config_read)(void *opaque, uint32_t off, uint32_t size);
    void (*config_write)(void *opaque, uint32_t off, uint32_t size, uint32_t val);
    /* MSI-X: vector @v now routes to (@addr, @data), or is masked/disabled. */
    void (*msix_update)(void *opaque, unsigned v, uint64_t addr, uint32_t data,
                        bool enabled);
    /* Deliver vector @v (enabled and unmasked). */
    void (*msix_fire)(void *opaque, unsigned v);
    /* Optional: the guest-physical address of queue @q's doorbell changed
     * to @gpa (UINT64_MAX: the queue has none now, because it is disabled
     * or BAR 0 does not decode).  A live doorbell belongs to an enabled
     * queue, at BAR 0 + VPCI_NOTIFY + @q * VPCI_NOTIFY_MULT; the driver
     * writes the queue index there (2 bytes).  The machine registers an
     * ioeventfd there; writes it does not catch still arrive through
     * virtio_pci_bar0_write(). */
    void (*doorbell)(void *opaque, unsigned q, uint64_t gpa);
    /* Optional: the device keeps the status itself (a virtio core that
     * decides FEATURES_OK and completes resets on its own): status writes
     * go to set_status after the transport's own handling, reads come
     * from get_status. */
    void (*set_status)(void *opaque, uint8_t status);
    uint8_t (*get_status)(void *opaque);
} VirtioPciOps;

typedef struct VirtioPciQueue {
    uint16_t size, max_size, vector;
    bool enabled;
    uint64_t desc, avail, used;
} VirtioPciQueue;

struct VirtioPci {
    PciDevice pci;
    const VirtioPciOps *ops;
    void *opaque;
    unsigned num_queues, num_vectors;
    uint32_t devcfg_len;
    uint32_t dfselect, gfselect;
    uint64_t guest_features;
    uint16_t config_vector, queue_sel;
    uint8_t status, generation, isr;
    VirtioPciQueue q[VPCI_MAX_QUEUES];
    uint8_t msix_table[VPCI_MAX_VECTORS * 16];
    uint64_t msix_pending[(VPCI_MAX_VECTORS + 63) / 64];
    bool msix_live[VPCI_MAX_VECTORS];    /* last state given to msix_update */
    uint64_t doorbell[VPCI_MAX_QUEUES];  /* last address given to doorbell */
    uint64_t mmio_notifies;              /* doorbells through bar0_write */
    uint64_t msix_pended;                /* interrupts that found a masked vector */
    int msix_cap, cfg_cap;
};

typedef struct VirtioPciConfig {
    uint16_t virtio_id;        /* e.g. 2 for block */
    uint32_t class_code;       /* PCI class, e.g. 0x018000 */
    unsigned num_queues;       /* 1..VPCI_MAX_QUEUES */
    uint16_t queue_max_size;   /* a power of two <= 32768 */
    uint32_t devcfg_len;       /* bytes of device config, <= VPCI_DEVCFG_LEN */
    uint64_t bar0_addr, bar1_addr;
} VirtioPciConfig;

int virtio_pci_init(VirtioPci *t, const VirtioPciConfig *cfg, const VirtioPciOps *ops,
                    void *opaque);

/* Guest accesses to BAR 0 and BAR 1, at offsets within the BAR. */
uint64_t virtio_pci_bar0_read(VirtioPci *t, uint64_t off, unsigned size);
void virtio_pci_bar0_write(VirtioPci *t, uint64_t off, unsigned size, uint64_t val);
uint64_t virtio_pci_msix_read(VirtioPci *t, uint64_t off, unsigned size);
void virtio_pci_msix_write(VirtioPci *t, uint64_t off, unsigned size, uint64_t val);

/* The device signals queue @q (used buffers) or a config change. */
void virtio_pci_queue_interrupt(VirtioPci *t, unsigned q);
void virtio_pci_config_interrupt(VirtioPci *t);
/* The device failed: set DEVICE_NEEDS_RESET and tell the driver. */
void virtio_pci_set_broken(VirtioPci *t);

/* Whether MSI-X is on and vector @v unmasked (for tests and the machine). */
bool virtio_pci_msix_vector_live(const VirtioPci *t, unsigned v, uint64_t *addr,
                                 uint32_t *data);

/*
 * Snapshots: the transport's state (PCI config space, common config,
 * queues, MSI-X table and PBA) as a record of virtio_pci_state_size(t)
 * bytes.  virtio_pci_load checks the record against @t's shape (queue
 * count, sizes, vectors; -EINVAL and @t unchanged when it does not fit),
 * takes it over, then reports every live vector (msix_update) and every
 * doorbell (doorbell) to the machine as a guest write would, and fires the
 * interrupts pending on live vectors.  Machine lock held.
 */
size_t virtio_pci_state_size(const VirtioPci *t);
void virtio_pci_save(const VirtioPci *t, uint8_t *out);
int virtio_pci_load(VirtioPci *t, const uint8_t *in, size_t len);

#endif
