/* SPDX-License-Identifier: MIT */
/* Internal: the virtio core's structures, shared by its files. */
#ifndef VMM_VIRTIO_INTERNAL_H
#define VMM_VIRTIO_INTERNAL_H

#include <linux/virtio_ring.h>

#include "util/lock.h"
#include "device/device-internal.h"
#include "vmmkit/aio.h"
#include "vmmkit/virtio.h"

struct VmmVirtqueue {
    VmmVirtioDevice *vdev;
    unsigned index;
    uint16_t max_size;

    /* Set up by the driver (under vdev->lock, while not ready). */
    uint16_t size;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    bool ready;                 /* atomic: release when enabled */

    /* Pinned rings (valid while ready); region refs keep them mapped. */
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    VmmRamRegion *pin[3];

    /* Processing state: the queue's context only. */
    uint16_t last_avail_idx;    /* next ring entry to pop */
    uint16_t shadow_avail_idx;  /* last avail->idx read */
    uint16_t used_idx;          /* next used entry to fill */
    uint16_t signalled_used;    /* used_idx at the last interrupt */
    bool signalled_used_valid;
    bool notification;          /* doorbells wanted */
    bool poll_mode;             /* the context busy-polls the ring: doorbells
                                 * stay off (virtio-aio.c) */
    bool event_idx, indirect;   /* negotiated at enable */
    unsigned in_flight;
    struct iovec *scratch_iov;  /* VMM_VIRTQUEUE_MAX_IOV entries */
    struct vring_desc *scratch_ind; /* a copied indirect table */

    /* Dispatch (run_lock): handle_queue never runs while stopped. */
    VmmMutex run_lock;
    bool stopped;               /* quiesced: kicks are remembered */
    bool kick_pending;
    VmmAioContext *ctx;         /* atomic; NULL: run in the caller */
    VmmBH *bh;                  /* kicks from other threads */
    VmmEventNotifier *notifier; /* attached host notifier (ctx's thread) */
    bool unpolled;              /* doorbell only, no poll of the ring; set
                                 * before a notifier is attached */
};

struct VmmVirtioDevice {
    VmmMutex lock;            /* status, features, config, queue set-up */
    VmmDevice *dev;
    VmmVirtioDeviceOps ops;
    void *opaque;
    VmmGuestMemory *mem;
    uint64_t host_features;
    uint64_t guest_features;
    uint8_t status;             /* atomic reads */
    uint8_t isr;                /* atomic */
    uint32_t config_gen;
    uint8_t *config;
    bool reset_pending;
    bool broken_logged;
    VmmVirtioInterruptFunc *irq;
    void *irq_opaque;
    unsigned in_flight;         /* atomic: sum over queues */
    int quiesce_waiting;        /* atomic: a quiesce waits for in_flight 0 */
    unsigned num_queues;
    VmmVirtqueue *vq;
    /* A library device whose queues a backend outside the core processes
     * (the quiesce hook: vhost) and that, when it stops the backend, puts
     * the rings' positions into the core's queues: the core's record is
     * then its whole ring state.  Set once, before the driver runs. */
    bool backend_rings_saved;
    /* atomic: the driver's set-up came from vmm_virtio_load_state (until
     * the next reset), so the device type's driver_ok can tell a restore
     * from a driver's own set-up. */
    bool state_loaded;
};

/* virtqueue.c */
int vq_init(VmmVirtqueue *vq, VmmVirtioDevice *vdev, unsigned index);
void vq_cleanup(VmmVirtqueue *vq);
void vq_reset(VmmVirtqueue *vq);
int vq_enable(VmmVirtqueue *vq, uint64_t features);
void vq_unpin(VmmVirtqueue *vq);
/* Give back the last @n popped elements, none of them pushed or detached
 * since (the caller frees them); the next pops return them again. */
void vq_unpop(VmmVirtqueue *vq, unsigned n);

/* virtio.c */
void virtio_raise(VmmVirtioDevice *vdev, int queue);
void virtio_request_finished(VmmVirtioDevice *vdev, VmmVirtqueue *vq);
void virtio_dispatch(VmmVirtioDevice *vdev, VmmVirtqueue *vq);
/* virtio-aio.c: delete the queue's BH and wait until a run of it that
 * its context's thread may be in has returned.  Main loop. */
void virtio_queue_drop_bh(VmmVirtqueue *vq);

/* virtio-state.c: the writable buffers of @vdev's descriptor tables (see
 * there).  Machine paused, device quiesced. */
void virtio_writable_buffers(VmmVirtioDevice *vdev,
                             void (*fn)(void *opaque, uint64_t gpa, uint64_t len),
                             void *opaque);

#endif
