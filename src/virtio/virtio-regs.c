/* SPDX-License-Identifier: MIT */
/*
 * The transport side of the virtio core: what a virtio-pci or virtio-mmio
 * register access turns into.  Every value comes from the guest driver and
 * is checked; out-of-range accesses are ignored or fail, never trusted.
 */
#include <errno.h>
#include <string.h>

#include "util/atomic.h"
#include "util/log.h"
#include "virtio/virtio-internal.h"

#define STICKY_BITS (VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER | \
                     VMM_VIRTIO_STATUS_FEATURES_OK | VMM_VIRTIO_STATUS_DRIVER_OK | \
                     VMM_VIRTIO_STATUS_FAILED | VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET)

uint64_t vmm_virtio_get_device_features(VmmVirtioDevice *vdev)
{
    return vdev->host_features;
}

void vmm_virtio_set_driver_features(VmmVirtioDevice *vdev, uint64_t f)
{
    vk_mutex_lock(&vdev->lock);
    if (!(vdev->status & VMM_VIRTIO_STATUS_FEATURES_OK)) {
        vdev->guest_features = f & vdev->host_features;
    }
    vk_mutex_unlock(&vdev->lock);
}

uint64_t vmm_virtio_get_driver_features(VmmVirtioDevice *vdev)
{
    vk_mutex_lock(&vdev->lock);
    uint64_t f = vdev->guest_features;
    vk_mutex_unlock(&vdev->lock);
    return f;
}

uint8_t vmm_virtio_get_status(VmmVirtioDevice *vdev)
{
    return vk_atomic_load_acquire(&vdev->status);
}

static void reset_done(VmmDevice *dev, int ret, void *opaque)
{
    VmmVirtioDevice *vdev = opaque;

    if (ret < 0) {
        /* The quiesce failed: the device keeps running; let the driver
         * retry by writing 0 again. */
        vk_warn("virtio device '%s': reset failed (%d)", vmm_device_name(dev), ret);
        vk_mutex_lock(&vdev->lock);
        vdev->reset_pending = false;
        vk_mutex_unlock(&vdev->lock);
    }
}

/* A new status value from the driver, with the rules of virtio 1.x 2.1 and
 * 3.1.1; returns true when DRIVER_OK was just set. */
static bool status_transition(VmmVirtioDevice *vdev, uint8_t status) VMM_REQUIRES(vdev->lock)
{
    uint8_t old = vdev->status;
    /* The driver cannot clear bits (other than by reset) or set the
     * device's own NEEDS_RESET. */
    uint8_t st = (uint8_t)((status & ~VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET) | (old & STICKY_BITS));

    if ((st & VMM_VIRTIO_STATUS_FEATURES_OK) && !(old & VMM_VIRTIO_STATUS_FEATURES_OK)) {
        bool ok = vdev->guest_features & (1ull << VMM_VIRTIO_F_VERSION_1);
        if (ok && vdev->ops.set_features &&
            vdev->ops.set_features(vdev, vdev->guest_features, vdev->opaque) < 0) {
            ok = false;
        }
        if (!ok) {
            st &= (uint8_t)~VMM_VIRTIO_STATUS_FEATURES_OK;
        }
    }
    if (!(st & VMM_VIRTIO_STATUS_FEATURES_OK)) {
        st &= (uint8_t)~VMM_VIRTIO_STATUS_DRIVER_OK;
    }
    vk_atomic_store_release(&vdev->status, st);
    return (st & VMM_VIRTIO_STATUS_DRIVER_OK) && !(old & VMM_VIRTIO_STATUS_DRIVER_OK);
}

void vmm_virtio_set_status(VmmVirtioDevice *vdev, uint8_t status)
{
    vk_mutex_lock(&vdev->lock);
    if (vdev->reset_pending) {
        vk_mutex_unlock(&vdev->lock);      /* wait for the reset */
        return;
    }
    if (status == 0) {
        vdev->reset_pending = true;
        vk_mutex_unlock(&vdev->lock);
        if (vmm_device_reset(vdev->dev, reset_done, vdev) < 0) {
            reset_done(vdev->dev, -ENOMEM, vdev);
        }
        return;
    }
    bool driver_ok = status_transition(vdev, status);
    vk_mutex_unlock(&vdev->lock);
    if (driver_ok && vdev->ops.driver_ok) {
        vdev->ops.driver_ok(vdev, vdev->opaque);
    }
}

static bool config_range_ok(VmmVirtioDevice *vdev, uint32_t off, uint32_t len)
{
    return off <= vdev->ops.config_size && len <= vdev->ops.config_size - off;
}

int vmm_virtio_config_read(VmmVirtioDevice *vdev, uint32_t off, void *buf, uint32_t len)
{
    if (!config_range_ok(vdev, off, len)) {
        return -EINVAL;
    }
    vk_mutex_lock(&vdev->lock);
    memcpy(buf, vdev->config + off, len);
    vk_mutex_unlock(&vdev->lock);
    return 0;
}

int vmm_virtio_config_write(VmmVirtioDevice *vdev, uint32_t off, const void *buf,
                            uint32_t len)
{
    if (!config_range_ok(vdev, off, len)) {
        return -EINVAL;
    }
    vk_mutex_lock(&vdev->lock);
    memcpy(vdev->config + off, buf, len);
    vk_mutex_unlock(&vdev->lock);
    if (vdev->ops.config_write) {
        vdev->ops.config_write(vdev, off, len, vdev->opaque);
    }
    return 0;
}

int vmm_virtio_config_update(VmmVirtioDevice *vdev, uint32_t off, const void *buf,
                             uint32_t len)
{
    if (!config_range_ok(vdev, off, len)) {
        return -EINVAL;
    }
    vk_mutex_lock(&vdev->lock);
    memcpy(vdev->config + off, buf, len);
    vdev->config_gen++;
    bool live = vdev->status & VMM_VIRTIO_STATUS_DRIVER_OK;
    vk_mutex_unlock(&vdev->lock);
    if (live) {
        virtio_raise(vdev, -1);
    }
    return 0;
}

uint32_t vmm_virtio_config_generation(VmmVirtioDevice *vdev)
{
    vk_mutex_lock(&vdev->lock);
    uint32_t g = vdev->config_gen;
    vk_mutex_unlock(&vdev->lock);
    return g;
}

uint8_t vmm_virtio_isr_read_clear(VmmVirtioDevice *vdev)
{
    return vk_atomic_xchg(&vdev->isr, 0);
}

/* ---- Queues ------------------------------------------------------------------ */

static VmmVirtqueue *queue_get(VmmVirtioDevice *vdev, unsigned q)
{
    return q < vdev->num_queues ? &vdev->vq[q] : NULL;
}

uint16_t vmm_virtio_queue_get_max_size(VmmVirtioDevice *vdev, unsigned q)
{
    return queue_get(vdev, q) ? vdev->vq[q].max_size : 0;
}

uint16_t vmm_virtio_queue_get_size(VmmVirtioDevice *vdev, unsigned q)
{
    VmmVirtqueue *vq = queue_get(vdev, q);
    if (!vq) {
        return 0;
    }
    vk_mutex_lock(&vdev->lock);
    uint16_t s = vq->size;
    vk_mutex_unlock(&vdev->lock);
    return s;
}

int vmm_virtio_queue_set_size(VmmVirtioDevice *vdev, unsigned q, uint16_t size)
{
    VmmVirtqueue *vq = queue_get(vdev, q);
    int ret = 0;

    if (!vq || size == 0 || size > vq->max_size || (size & (size - 1))) {
        return -EINVAL;
    }
    vk_mutex_lock(&vdev->lock);
    if (vq->ready) {
        ret = -EBUSY;
    } else {
        vq->size = size;
    }
    vk_mutex_unlock(&vdev->lock);
    return ret;
}

int vmm_virtio_queue_set_addr(VmmVirtioDevice *vdev, unsigned q, uint64_t desc,
                              uint64_t avail, uint64_t used)
{
    VmmVirtqueue *vq = queue_get(vdev, q);
    int ret = 0;

    if (!vq) {
        return -EINVAL;
    }
    vk_mutex_lock(&vdev->lock);
    if (vq->ready) {
        ret = -EBUSY;
    } else {
        vq->desc_gpa = desc;
        vq->avail_gpa = avail;
        vq->used_gpa = used;
    }
    vk_mutex_unlock(&vdev->lock);
    return ret;
}

void vmm_virtio_queue_get_addr(VmmVirtioDevice *vdev, unsigned q, uint64_t *desc,
                               uint64_t *avail, uint64_t *used)
{
    VmmVirtqueue *vq = queue_get(vdev, q);

    vk_mutex_lock(&vdev->lock);
    *desc = vq ? vq->desc_gpa : 0;
    *avail = vq ? vq->avail_gpa : 0;
    *used = vq ? vq->used_gpa : 0;
    vk_mutex_unlock(&vdev->lock);
}

int vmm_virtio_queue_enable(VmmVirtioDevice *vdev, unsigned q)
{
    VmmVirtqueue *vq = queue_get(vdev, q);
    int ret = 0;

    if (!vq) {
        return -EINVAL;
    }
    vk_mutex_lock(&vdev->lock);
    if (!vq->ready) {
        ret = vq_enable(vq, vdev->guest_features);
    }
    vk_mutex_unlock(&vdev->lock);
    if (ret < 0) {
        vmm_virtio_set_needs_reset(vdev, "virtqueue rings misaligned or outside guest RAM");
        return -EFAULT;
    }
    return 0;
}

bool vmm_virtio_queue_is_enabled(VmmVirtioDevice *vdev, unsigned q)
{
    VmmVirtqueue *vq = queue_get(vdev, q);
    return vq && vk_atomic_load_acquire(&vq->ready);
}

void vmm_virtio_queue_notify(VmmVirtioDevice *vdev, unsigned q)
{
    VmmVirtqueue *vq = queue_get(vdev, q);

    if (vq) {        /* a doorbell for a queue that does not exist is ignored */
        virtio_dispatch(vdev, vq);
    }
}

void vmm_virtio_queue_kick(VmmVirtioDevice *vdev, unsigned q)
{
    vmm_virtio_queue_notify(vdev, q);
}
