/* SPDX-License-Identifier: MIT */
/*
 * The virtio 1.x device core: feature negotiation, the status machine,
 * configuration space, queue set-up, dispatch of doorbells, and the glue to
 * the device model's quiesce protocol.
 *
 * Locks: vdev->lock guards status, features, configuration and queue
 * set-up (register accesses from any vCPU).  vq->run_lock serializes
 * handle_queue with the quiesce callback, which sets vq->stopped under it:
 * once it is set, no handler runs or will start, so only requests already
 * popped (vdev->in_flight) can still touch guest memory.  Order:
 * run_lock before vdev->lock.
 *
 * Quiesce hand-off (Dekker style, all sequentially consistent):
 *   quiesce: xchg(quiesce_waiting, 1) ... load(in_flight)
 *   finish:  sub_fetch(in_flight) ... load(quiesce_waiting)
 * at least one side sees the other; xchg(quiesce_waiting, 0) picks exactly
 * one to report: the callback's return 0, or vmm_device_quiesced().
 * vmm_device_quiesced() waits until the quiesce callback has returned, and
 * that callback waits for each queue's run_lock: a report from inside
 * handle_queue (a queue without a context, run in the notifying thread
 * under run_lock) is therefore made after dispatch_here() drops the lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"
#include "virtio/virtio-internal.h"

#define CORE_FEATURES ((1ull << VMM_VIRTIO_F_VERSION_1) | \
                       (1ull << VMM_VIRTIO_F_RING_EVENT_IDX) | \
                       (1ull << VMM_VIRTIO_F_RING_INDIRECT_DESC))
#define MAX_QUEUES 256
#define MAX_CONFIG 4096

void virtio_raise(VmmVirtioDevice *vdev, int queue)
{
    vk_atomic_fetch_or(&vdev->isr, queue < 0 ? VMM_VIRTIO_ISR_CONFIG : VMM_VIRTIO_ISR_QUEUE);
    VmmVirtioInterruptFunc *fn = vk_atomic_load_acquire(&vdev->irq);
    if (fn) {
        fn(vdev->irq_opaque, vdev, queue);
    }
}

/* The device whose handle_queue this thread runs under a run_lock, and
 * whether a quiesce report waits for that lock to drop. */
static __thread VmmVirtioDevice *tls_dispatching;
static __thread bool tls_report_quiesced;

/* Run handle_queue here (the queue's context, or anywhere without one). */
static void dispatch_here(VmmVirtioDevice *vdev, VmmVirtqueue *vq)
{
    VmmVirtioDevice *outer = tls_dispatching;
    bool outer_report = tls_report_quiesced;
    bool report;

    tls_dispatching = vdev;
    tls_report_quiesced = false;
    vk_mutex_lock(&vq->run_lock);
    if (vq->stopped) {
        vq->kick_pending = true;    /* handled at resume */
    } else {
        vdev->ops.handle_queue(vdev, vq, vdev->opaque);
    }
    vk_mutex_unlock(&vq->run_lock);
    report = tls_report_quiesced;
    tls_dispatching = outer;
    tls_report_quiesced = outer_report;
    if (report) {
        vmm_device_quiesced(vdev->dev, 0);  /* deferred by request_finished */
    }
}

void virtio_dispatch(VmmVirtioDevice *vdev, VmmVirtqueue *vq)
{
    VmmAioContext *ctx = vk_atomic_load_acquire(&vq->ctx);

    if (ctx && !vmm_aio_context_in_thread(ctx)) {
        vmm_bh_schedule(vq->bh);    /* runs dispatch_here() in ctx */
        return;
    }
    dispatch_here(vdev, vq);
}

static void quiesced_bh(void *opaque)
{
    VmmVirtioDevice *vdev = opaque;

    if (tls_dispatching == vdev) {
        /* Run by a poll nested in handle_queue: after the run_lock drops. */
        tls_report_quiesced = true;
        return;
    }
    vmm_device_quiesced(vdev->dev, 0);
}

void virtio_request_finished(VmmVirtioDevice *vdev, VmmVirtqueue *vq)
{
    /* Pairs with the xchg/load in core_quiesce() (header comment). */
    if (vk_atomic_sub_fetch(&vdev->in_flight, 1) == 0 &&
        vk_atomic_load_seq_cst(&vdev->quiesce_waiting) &&
        vk_atomic_xchg(&vdev->quiesce_waiting, 0)) {
        /* In a queue's context the caller (a request coroutine, a BH) may
         * still touch the queue after this push, e.g. to notify: finish
         * from a new BH in that context, which runs after it returns.  The
         * pending callbacks (reset, DMA map) then run there. */
        VmmAioContext *ctx = vk_atomic_load_acquire(&vq->ctx);
        if (ctx && vmm_bh_schedule_oneshot(ctx, quiesced_bh, vdev, "virtio-quiesced") == 0) {
            return;
        }
        if (tls_dispatching == vdev) {
            /* Under a run_lock the quiesce callback may be waiting for:
             * report once dispatch_here() has dropped it. */
            tls_report_quiesced = true;
            return;
        }
        vmm_device_quiesced(vdev->dev, 0);
    }
}

/* ---- Device-model callbacks ---------------------------------------------- */

static int core_quiesce(VmmDevice *dev, void *opaque)
{
    VmmVirtioDevice *vdev = opaque;
    (void)dev;

    vk_atomic_xchg(&vdev->quiesce_waiting, 1);
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        VmmVirtqueue *vq = &vdev->vq[i];
        vk_mutex_lock(&vq->run_lock);     /* waits for a running handler */
        vq->stopped = true;
        vk_mutex_unlock(&vq->run_lock);
    }
    if (vdev->ops.quiesce) {
        vdev->ops.quiesce(vdev, vdev->opaque);
    }
    if (vk_atomic_load_seq_cst(&vdev->in_flight) == 0 &&
        vk_atomic_xchg(&vdev->quiesce_waiting, 0)) {
        return 0;
    }
    return -EBUSY;   /* the last vmm_virtqueue_push() reports it */
}

static void core_resume(VmmDevice *dev, void *opaque)
{
    VmmVirtioDevice *vdev = opaque;
    (void)dev;

    for (unsigned i = 0; i < vdev->num_queues; i++) {
        VmmVirtqueue *vq = &vdev->vq[i];
        vk_mutex_lock(&vq->run_lock);
        bool kick = vq->kick_pending;
        vq->stopped = false;
        vq->kick_pending = false;
        vk_mutex_unlock(&vq->run_lock);
        if (kick) {
            virtio_dispatch(vdev, vq);   /* a BH when vq has a context */
        }
    }
    if (vdev->ops.resume) {
        vdev->ops.resume(vdev, vdev->opaque);
    }
}

static int core_reset(VmmDevice *dev, void *opaque)
{
    VmmVirtioDevice *vdev = opaque;
    (void)dev;

    /* Kicks remembered while stopped are for the old rings.  Under
     * run_lock, which a dispatch that finds the queue stopped holds when it
     * sets the flag (and which comes before vdev->lock). */
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        vk_mutex_lock(&vdev->vq[i].run_lock);
        vdev->vq[i].kick_pending = false;
        vk_mutex_unlock(&vdev->vq[i].run_lock);
    }
    vk_mutex_lock(&vdev->lock);
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        vq_reset(&vdev->vq[i]);
    }
    vdev->guest_features = 0;
    vk_atomic_set(&vdev->isr, 0);
    vdev->reset_pending = false;
    vdev->broken_logged = false;
    vk_atomic_set(&vdev->state_loaded, false);
    vk_atomic_store_release(&vdev->status, 0);
    vk_mutex_unlock(&vdev->lock);
    if (vdev->ops.reset) {
        vdev->ops.reset(vdev, vdev->opaque);
    }
    return 0;
}

/* Guest memory changed: re-pin the rings of enabled queues. */
static int core_dma_map(VmmDevice *dev, void *opaque, const VmmMemorySection *s, bool added)
{
    VmmVirtioDevice *vdev = opaque;
    bool bad = false;
    (void)dev;
    (void)s;
    (void)added;

    vk_mutex_lock(&vdev->lock);
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        VmmVirtqueue *vq = &vdev->vq[i];
        if (!vq->ready) {
            continue;
        }
        uint16_t la = vq->last_avail_idx, sa = vq->shadow_avail_idx, ui = vq->used_idx;
        uint16_t su = vq->signalled_used;
        bool sv = vq->signalled_used_valid, n = vq->notification;
        vq_unpin(vq);
        if (vq_enable(vq, vdev->guest_features) < 0) {
            vk_atomic_store_release(&vq->ready, false);
            bad = true;
            continue;
        }
        vq->last_avail_idx = la;
        vq->shadow_avail_idx = sa;
        vq->used_idx = ui;
        vq->signalled_used = su;
        vq->signalled_used_valid = sv;
        vq->notification = n;
    }
    vk_mutex_unlock(&vdev->lock);
    if (bad) {
        vmm_virtio_set_needs_reset(vdev, "a virtqueue ring is no longer in guest RAM");
    }
    return 0;
}

static const VmmDeviceOps core_dev_ops = {
    .size = sizeof(VmmDeviceOps),
    .quiesce = core_quiesce,
    .resume = core_resume,
    .reset = core_reset,
    .dma_map = core_dma_map,
};

/* ---- Life cycle ------------------------------------------------------------ */

static int check_ops(const VmmVirtioDeviceOps *ops)
{
    if (!ops || ops->size < offsetof(VmmVirtioDeviceOps, quiesce) || !ops->handle_queue ||
        ops->num_queues == 0 || ops->num_queues > MAX_QUEUES ||
        ops->queue_max_size == 0 || ops->queue_max_size > VMM_VIRTQUEUE_MAX_SIZE ||
        (ops->queue_max_size & (ops->queue_max_size - 1)) ||
        ops->config_size > MAX_CONFIG) {
        return VMM_MISUSE_ERR(-EINVAL, "invalid virtio device ops");
    }
    return 0;
}

static void vdev_destroy(VmmVirtioDevice *vdev)
{
    if (vdev->vq) {
        for (unsigned i = 0; i < vdev->num_queues; i++) {
            VmmVirtqueue *vq = &vdev->vq[i];
            if (vq->notifier) {
                vmm_virtio_queue_set_host_notifier(vdev, i, NULL);
            }
            virtio_queue_drop_bh(vq);
            vq_cleanup(vq);
        }
    }
    if (vdev->dev) {
        vmm_device_free(vdev->dev);
    }
    vk_mutex_destroy(&vdev->lock);
    free(vdev->vq);
    free(vdev->config);
    free(vdev);
}

VmmVirtioDevice *vmm_virtio_device_new(const char *name, const VmmVirtioDeviceOps *ops,
                                       void *opaque, VmmGuestMemory *mem,
                                       const void *config_init, int *errp)
{
    int err = check_ops(ops);
    VmmVirtioDevice *vdev = NULL;

    if (err < 0) {
        goto fail;
    }
    err = -ENOMEM;
    vdev = calloc(1, sizeof(*vdev));
    if (!vdev) {
        goto fail;
    }
    vk_mutex_init(&vdev->lock);
    memcpy(&vdev->ops, ops, ops->size < sizeof(*ops) ? ops->size : sizeof(*ops));
    vdev->opaque = opaque;
    vdev->mem = mem;
    vdev->host_features = ops->features | CORE_FEATURES;
    vdev->num_queues = ops->num_queues;
    vdev->config = calloc(1, ops->config_size ? ops->config_size : 1);
    vdev->vq = calloc(ops->num_queues, sizeof(VmmVirtqueue));
    if (!vdev->config || !vdev->vq) {
        goto fail;
    }
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        if (vq_init(&vdev->vq[i], vdev, i) < 0) {
            vdev->num_queues = i + 1;
            goto fail;
        }
    }
    if (config_init) {
        memcpy(vdev->config, config_init, ops->config_size);
    }
    vdev->dev = vmm_device_new(name, &core_dev_ops, vdev, mem, &err);
    if (!vdev->dev) {
        goto fail;
    }
    return vdev;
fail:
    if (vdev) {
        vdev_destroy(vdev);
    }
    if (errp) {
        *errp = err;
    }
    return NULL;
}

void vmm_virtio_device_free(VmmVirtioDevice *vdev)
{
    if (vdev) {
        vdev_destroy(vdev);
    }
}

VmmDevice *vmm_virtio_device_get_device(VmmVirtioDevice *vdev)
{
    return vdev->dev;
}

uint16_t vmm_virtio_device_id(VmmVirtioDevice *vdev)
{
    return vdev->ops.device_id;
}

unsigned vmm_virtio_num_queues(VmmVirtioDevice *vdev)
{
    return vdev->num_queues;
}

uint32_t vmm_virtio_config_size(VmmVirtioDevice *vdev)
{
    return vdev->ops.config_size;
}

VmmVirtqueue *vmm_virtio_get_queue(VmmVirtioDevice *vdev, unsigned idx)
{
    return idx < vdev->num_queues ? &vdev->vq[idx] : NULL;
}

void vmm_virtio_set_interrupt(VmmVirtioDevice *vdev, VmmVirtioInterruptFunc *fn,
                              void *opaque)
{
    vdev->irq_opaque = opaque;
    /* Release: pairs with the acquire in virtio_raise(). */
    vk_atomic_store_release(&vdev->irq, fn);
}

void vmm_virtio_set_needs_reset(VmmVirtioDevice *vdev, const char *why)
{
    vk_mutex_lock(&vdev->lock);
    bool first = !vdev->broken_logged;
    vdev->broken_logged = true;
    uint8_t st = vdev->status | VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    vk_atomic_store_release(&vdev->status, st);
    vk_mutex_unlock(&vdev->lock);
    if (first) {
        vk_warn("virtio device '%s' needs reset: %s", vmm_device_name(vdev->dev), why);
        if (st & VMM_VIRTIO_STATUS_DRIVER_OK) {
            virtio_raise(vdev, -1);
        }
    }
}
