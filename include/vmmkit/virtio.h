/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/virtio.h - the transport-neutral virtio 1.x device core and split
 * virtqueues.
 *
 * Three parties meet here:
 *  - a device type (virtio-blk, or your own) supplies VmmVirtioDeviceOps and
 *    processes its queues with vmm_virtqueue_pop()/push()/notify();
 *  - a transport (virtio-pci, virtio-mmio) forwards the driver's register
 *    accesses to the vmm_virtio_*() calls below and supplies an interrupt
 *    callback (typically writing an irqfd);
 *  - the guest driver, which is untrusted: every index, length and address
 *    it puts in a ring is checked.  A driver that breaks the rules gets the
 *    device marked DEVICE_NEEDS_RESET (status bit 0x40, with a
 *    configuration-change interrupt); the host keeps running.
 *
 * Doorbells: the transport calls vmm_virtio_queue_notify() from the exit
 * handler, or (better) attaches an ioeventfd with
 * vmm_virtio_queue_set_host_notifier() so kicks are handled in the queue's
 * AioContext without a VM exit to user space.
 *
 * Each virtio device is a VmmDevice (vmmkit/device.h): a driver reset
 * (status 0), DMA-map changes and VM pauses go through the quiesce protocol,
 * which waits for the requests the device has popped but not yet pushed.
 */
#ifndef VMMKIT_VIRTIO_H
#define VMMKIT_VIRTIO_H

#include <sys/uio.h>

#include "vmmkit/device.h"

VMM_BEGIN_DECLS

/* From vmmkit/aio.h (repeating a typedef is valid C11). */
typedef struct VmmAioContext VmmAioContext;
typedef struct VmmEventNotifier VmmEventNotifier;

typedef struct VmmVirtioDevice VmmVirtioDevice;
typedef struct VmmVirtqueue VmmVirtqueue;

/* Device status bits (virtio 1.x, 2.1). */
#define VMM_VIRTIO_STATUS_ACKNOWLEDGE       1u
#define VMM_VIRTIO_STATUS_DRIVER            2u
#define VMM_VIRTIO_STATUS_DRIVER_OK         4u
#define VMM_VIRTIO_STATUS_FEATURES_OK       8u
#define VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET 0x40u
#define VMM_VIRTIO_STATUS_FAILED            0x80u

/* Feature bits the core implements (offered in addition to the device's). */
#define VMM_VIRTIO_F_RING_INDIRECT_DESC     28
#define VMM_VIRTIO_F_RING_EVENT_IDX         29
#define VMM_VIRTIO_F_VERSION_1              32

/* Largest split queue and longest descriptor chain (iovecs) accepted. */
#define VMM_VIRTQUEUE_MAX_SIZE  1024
#define VMM_VIRTQUEUE_MAX_IOV   1024

/* ISR bits (for transports with an ISR register or INTx). */
#define VMM_VIRTIO_ISR_QUEUE    1u
#define VMM_VIRTIO_ISR_CONFIG   2u

/* ---- What the transport supplies --------------------------------------- */

/*
 * Raise an interrupt for queue @queue, or for a configuration change when
 * @queue is -1.  Called from the thread that processes the queue (an
 * iothread) or that changed the configuration; must be thread-safe and must
 * not block (write an irqfd, or inject an MSI).
 */
typedef void VmmVirtioInterruptFunc(void *opaque, VmmVirtioDevice *vdev, int queue);

/* ---- What a device type supplies --------------------------------------- */

/*
 * A request popped from a queue.  Device types embed it first in a larger
 * struct (vmm_virtqueue_pop()'s @elem_size).  The iovecs point into guest
 * memory: @out_num device-readable ones, then @in_num device-writable ones.
 */
typedef struct VmmVirtqElem {
    uint16_t index;         /* head descriptor, for the used ring */
    unsigned out_num;
    unsigned in_num;
    uint64_t out_len;       /* bytes in the readable part */
    uint64_t in_len;        /* bytes in the writable part */
    struct iovec *iov;      /* out_num + in_num entries */
} VmmVirtqElem;

typedef struct VmmVirtioDeviceOps {
    size_t size;            /* sizeof(VmmVirtioDeviceOps) */
    uint16_t device_id;     /* VIRTIO_ID_* */
    uint64_t features;      /* device-specific feature bits offered */
    uint32_t config_size;   /* bytes of device configuration space */
    unsigned num_queues;
    uint16_t queue_max_size;/* power of two <= VMM_VIRTQUEUE_MAX_SIZE */
    /*
     * The guest kicked @vq (or vmm_virtio_queue_kick() asked to look at it).
     * Runs in the queue's AioContext (vmm_virtio_queue_set_context()), or in
     * the notifying thread when it has none; never while the device is
     * quiesced (kicks then wait for the resume).  Required.
     */
    void (*handle_queue)(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque);
    /* Optional: accept the negotiated features (0) or refuse (<0). */
    int (*set_features)(VmmVirtioDevice *vdev, uint64_t features, void *opaque);
    /* Optional: the driver wrote config bytes (already range-checked); the
     * core has stored them.  Main loop or vCPU thread. */
    void (*config_write)(VmmVirtioDevice *vdev, uint32_t off, uint32_t len,
                         void *opaque);
    /* Optional: the device was reset (quiesced, queues already reset). */
    void (*reset)(VmmVirtioDevice *vdev, void *opaque);
    /* Optional: the driver set DRIVER_OK. */
    void (*driver_ok)(VmmVirtioDevice *vdev, void *opaque);
    /*
     * Optional, for a device whose queues a backend outside the core
     * processes (vhost): quiesce runs when the device is being quiesced
     * (dispatch already stopped) and must stop that backend's DMA before it
     * returns; resume runs at the end of the resume (after a reset, a DMA
     * map change or a pause).  Main loop.  A caller built against the
     * header without these fields passes the smaller size: they are NULL.
     */
    void (*quiesce)(VmmVirtioDevice *vdev, void *opaque);
    void (*resume)(VmmVirtioDevice *vdev, void *opaque);
} VmmVirtioDeviceOps;

/*
 * Create a device named @name on @mem, with @ops/@opaque.  @config_init
 * (config_size bytes, may be NULL for zeros) is the initial configuration
 * space.  NULL with *errp = -EINVAL (@ops NULL or too small, no
 * handle_queue, no queue or too many, queue_max_size not a power of two
 * <= VMM_VIRTQUEUE_MAX_SIZE, config_size too large) or -ENOMEM.  Main loop.
 */
VMM_EXPORT VmmVirtioDevice *vmm_virtio_device_new(const char *name,
                                                  const VmmVirtioDeviceOps *ops,
                                                  void *opaque,
                                                  VmmGuestMemory *mem,
                                                  const void *config_init,
                                                  int *errp);
/* Detach host notifiers and free.  The device must be idle (no request
 * popped and not pushed) or freshly reset.  Main loop. */
VMM_EXPORT void vmm_virtio_device_free(VmmVirtioDevice *vdev);
/* The underlying device model object, for pause/migration/DMA map.  Any thread. */
VMM_EXPORT VmmDevice *vmm_virtio_device_get_device(VmmVirtioDevice *vdev);
/* The virtio device ID (VmmVirtioDeviceOps.device_id).  Any thread. */
VMM_EXPORT uint16_t vmm_virtio_device_id(VmmVirtioDevice *vdev);
/* The number of queues.  Any thread. */
VMM_EXPORT unsigned vmm_virtio_num_queues(VmmVirtioDevice *vdev);
/* Bytes of device configuration space (VmmVirtioDeviceOps.config_size).
 * Any thread. */
VMM_EXPORT uint32_t vmm_virtio_config_size(VmmVirtioDevice *vdev);
/* Queue @idx, or NULL when @idx >= the number of queues.  Any thread. */
VMM_EXPORT VmmVirtqueue *vmm_virtio_get_queue(VmmVirtioDevice *vdev, unsigned idx);

/* Install the transport's interrupt callback.  Main loop, before DRIVER_OK. */
VMM_EXPORT void vmm_virtio_set_interrupt(VmmVirtioDevice *vdev,
                                         VmmVirtioInterruptFunc *fn, void *opaque);

/* Update device configuration bytes and raise a configuration interrupt
 * (config generation +1).  Any thread. */
VMM_EXPORT int vmm_virtio_config_update(VmmVirtioDevice *vdev, uint32_t off,
                                        const void *buf, uint32_t len);
/*
 * Mark the device broken (DEVICE_NEEDS_RESET, queues stop, configuration
 * interrupt when DRIVER_OK); @why is logged once.  Any thread.
 */
VMM_EXPORT void vmm_virtio_set_needs_reset(VmmVirtioDevice *vdev, const char *why);

/* ---- Transport side (register accesses); vCPU threads or main loop ------ */

/* All 64 feature bits offered (device's plus the core's). */
VMM_EXPORT uint64_t vmm_virtio_get_device_features(VmmVirtioDevice *vdev);
/* The driver's feature choice; only before FEATURES_OK (ignored after).
 * Bits not offered are dropped. */
VMM_EXPORT void vmm_virtio_set_driver_features(VmmVirtioDevice *vdev, uint64_t f);
VMM_EXPORT uint64_t vmm_virtio_get_driver_features(VmmVirtioDevice *vdev);
/* Current status (a reset in progress still reads non-zero). */
VMM_EXPORT uint8_t vmm_virtio_get_status(VmmVirtioDevice *vdev);
/*
 * The driver wrote @status.  0 requests a reset, completed asynchronously
 * through the quiesce protocol (status reads 0 once done).  FEATURES_OK is
 * kept only if the features are acceptable (VERSION_1 among them).
 */
VMM_EXPORT void vmm_virtio_set_status(VmmVirtioDevice *vdev, uint8_t status);
/* Configuration space access, range-checked (-EINVAL outside). */
VMM_EXPORT int vmm_virtio_config_read(VmmVirtioDevice *vdev, uint32_t off,
                                      void *buf, uint32_t len);
VMM_EXPORT int vmm_virtio_config_write(VmmVirtioDevice *vdev, uint32_t off,
                                       const void *buf, uint32_t len);
VMM_EXPORT uint32_t vmm_virtio_config_generation(VmmVirtioDevice *vdev);
/* Read and clear the ISR bits. */
VMM_EXPORT uint8_t vmm_virtio_isr_read_clear(VmmVirtioDevice *vdev);

/* The largest size queue @q accepts (VmmVirtioDeviceOps' queue size), or 0
 * when @q does not exist. */
VMM_EXPORT uint16_t vmm_virtio_queue_get_max_size(VmmVirtioDevice *vdev, unsigned q);
/* Queue @q's current size (the driver's choice, else the maximum; a reset
 * restores the maximum), or 0 when @q does not exist. */
VMM_EXPORT uint16_t vmm_virtio_queue_get_size(VmmVirtioDevice *vdev, unsigned q);
/* Power of two, <= max; only while the queue is disabled.  -EINVAL (no
 * queue @q, or a bad size), -EBUSY (enabled). */
VMM_EXPORT int vmm_virtio_queue_set_size(VmmVirtioDevice *vdev, unsigned q,
                                         uint16_t size);
/* Ring addresses; only while the queue is disabled.  -EINVAL (no queue
 * @q), -EBUSY (enabled).  get_addr stores zeros for a queue that does not
 * exist. */
VMM_EXPORT int vmm_virtio_queue_set_addr(VmmVirtioDevice *vdev, unsigned q,
                                         uint64_t desc, uint64_t avail,
                                         uint64_t used);
VMM_EXPORT void vmm_virtio_queue_get_addr(VmmVirtioDevice *vdev, unsigned q,
                                          uint64_t *desc, uint64_t *avail,
                                          uint64_t *used);
/*
 * Enable the queue: the rings are checked (alignment, inside RAM) and
 * pinned.  A bad ring marks the device DEVICE_NEEDS_RESET (returns -EFAULT);
 * -EINVAL when @q does not exist.  Disabling is only done by reset.
 */
VMM_EXPORT int vmm_virtio_queue_enable(VmmVirtioDevice *vdev, unsigned q);
VMM_EXPORT bool vmm_virtio_queue_is_enabled(VmmVirtioDevice *vdev, unsigned q);
/* The driver kicked queue @q (MMIO/PIO doorbell without an ioeventfd). */
VMM_EXPORT void vmm_virtio_queue_notify(VmmVirtioDevice *vdev, unsigned q);

/* ---- Queue contexts and doorbells --------------------------------------- */

/* Process queue @q in @ctx (NULL: in the notifying thread).  Kicks from
 * other threads become a bottom half in @ctx.  Changing or clearing the
 * context (and vmm_virtio_device_free) waits until a handler run the old
 * context's thread may be in has returned, so that thread must be running.
 * Main loop, before DRIVER_OK. */
VMM_EXPORT int vmm_virtio_queue_set_context(VmmVirtioDevice *vdev, unsigned q,
                                            VmmAioContext *ctx);
/*
 * Handle @n (an ioeventfd the transport registered with KVM for the
 * queue's doorbell) in the queue's context, with busy polling of the ring
 * when the context polls; NULL detaches.  The queue must have a context
 * (-EINVAL without one, or for a queue that does not exist).
 * Main loop (it waits for @ctx's thread to switch).
 */
VMM_EXPORT int vmm_virtio_queue_set_host_notifier(VmmVirtioDevice *vdev, unsigned q,
                                                  VmmEventNotifier *n);
/*
 * Whether queue @q's context may poll its available ring (true, the
 * default) or watches only its doorbell (false).  A queue whose available
 * buffers are not work by themselves - a receive queue the device fills
 * on its own events (frames from a tap, input from an fd) - must not be
 * polled: the driver keeps buffers posted there, so every poll would find
 * "work", run the handler for nothing and keep the context from sleeping.
 * Such a device turns doorbells on when it runs out of buffers.  0, or
 * -EINVAL for a queue that does not exist, -EBUSY once a host notifier is
 * attached.  Main loop, before the transport attaches host notifiers.
 */
VMM_EXPORT int vmm_virtio_queue_set_polled(VmmVirtioDevice *vdev, unsigned q, bool polled);

/* ---- Queue processing (the queue's context) ------------------------------ */

/*
 * Take the next request.  Returns an element of @elem_size bytes (>=
 * sizeof(VmmVirtqElem), zeroed beyond it; free() it after push), or NULL
 * when the queue is empty, disabled or broken (*errp = 0), or on failure
 * (*errp < 0: -EINVAL for an @elem_size below sizeof(VmmVirtqElem),
 * -ENOMEM, or -EIO when the guest broke the rules and the device was
 * marked DEVICE_NEEDS_RESET).
 */
VMM_EXPORT void *vmm_virtqueue_pop(VmmVirtqueue *vq, size_t elem_size, int *errp);
/* Return @elem (@len bytes written to its writable part) on the used ring.
 * Does not free @elem. */
VMM_EXPORT void vmm_virtqueue_push(VmmVirtqueue *vq, const VmmVirtqElem *elem,
                                   uint32_t len);
/* Drop @elem without returning it to the guest (it is no longer in flight). */
VMM_EXPORT void vmm_virtqueue_detach(VmmVirtqueue *vq, const VmmVirtqElem *elem);
/* Interrupt the driver if it wants one for what was pushed (event index or
 * NO_INTERRUPT suppression). */
VMM_EXPORT void vmm_virtqueue_notify(VmmVirtqueue *vq);
/*
 * Ask the driver for (@enable) or suppress doorbells.  Enabling publishes
 * the event index and, after a full barrier, re-reads the available index:
 * returns true if requests arrived meanwhile (process them).
 */
VMM_EXPORT bool vmm_virtqueue_set_notification(VmmVirtqueue *vq, bool enable);
/* Any new requests? */
VMM_EXPORT bool vmm_virtqueue_empty(VmmVirtqueue *vq);
VMM_EXPORT unsigned vmm_virtqueue_index(VmmVirtqueue *vq);
/* Requests popped and not yet pushed or detached. */
VMM_EXPORT unsigned vmm_virtqueue_in_flight(VmmVirtqueue *vq);
/* Ask for handle_queue to run again in the queue's context (e.g. after a
 * resume, or once resources free up).  Any thread. */
VMM_EXPORT void vmm_virtio_queue_kick(VmmVirtioDevice *vdev, unsigned q);

/* ---- Snapshots and migration ------------------------------------------- */

/*
 * The core's state as a self-contained record: features, status, ISR,
 * configuration space and generation, and per queue its size, ring
 * addresses and ring positions (what the device has taken and returned).
 * In-flight requests are not part of it: save a quiesced device (paused
 * through vmm_device_pause(), i.e. no request popped and not pushed) or
 * one the driver has not set up.  The device type's own state, if any,
 * is the device type's.
 *
 * vmm_virtio_state_size: the record's size (0 for a NULL @vdev).  Any thread.
 * vmm_virtio_save_state: 0; -EINVAL (@vdev or @buf NULL, @len too small),
 * -EOPNOTSUPP (a device with the quiesce hook - a backend outside the
 * core processes its queues, as vhost does - that the driver set up: the
 * core holds neither its ring positions nor the backend's state; the
 * library's vhost-vsock puts its kernel's positions there and is saved),
 * -EBUSY
 * (a running device that the driver set up).  Main loop.
 * vmm_virtio_load_state: on a device the driver has not touched (status
 * 0), before the guest runs, with guest memory in place: takes the record
 * over, enables the queues it had enabled (rings checked and pinned as at
 * enable), tells the device type the features and DRIVER_OK as the
 * driver's writes would, and kicks the enabled queues so requests queued
 * before the save are processed.  -EINVAL (NULL arguments, a record of
 * another device type, size, queue count, offered features or
 * configuration size; the device is unchanged), -EBUSY (status not 0),
 * -EFAULT (a saved ring outside guest memory or misaligned; the device
 * stays reset).
 * Main loop.
 */
VMM_EXPORT size_t vmm_virtio_state_size(VmmVirtioDevice *vdev);
VMM_EXPORT int vmm_virtio_save_state(VmmVirtioDevice *vdev, void *buf, size_t len);
VMM_EXPORT int vmm_virtio_load_state(VmmVirtioDevice *vdev, const void *buf, size_t len);

VMM_END_DECLS

#endif /* VMMKIT_VIRTIO_H */
