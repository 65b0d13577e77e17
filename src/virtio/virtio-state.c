/* SPDX-License-Identifier: MIT */
/*
 * The virtio core's state for snapshots and migration: features, status,
 * ISR, configuration space and generation, and per queue its set-up and
 * ring positions.  Requests are not part of it: the device is saved
 * quiesced (none popped and not pushed), so the rings in guest memory and
 * last_avail_idx say exactly which requests the device has taken.  A
 * loaded queue goes on from there: nothing is lost, nothing repeated.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/atomic.h"
#include "util/log.h"
#include "virtio/virtio-internal.h"

#define STATE_MAGIC 0x31535456u     /* "VTS1" */
#define STATE_FIXED (4 + 4 + 2 + 2 + 8 + 8 + 4 + 4 + 4)
#define STATE_QUEUE (2 + 2 + 8 + 8 + 8 + 2 + 2 + 2 + 2)

size_t vmm_virtio_state_size(VmmVirtioDevice *vdev)
{
    if (!vdev) {
        return 0;
    }
    return STATE_FIXED + vdev->ops.config_size + (size_t)vdev->num_queues * STATE_QUEUE;
}

static void put(uint8_t **p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        (*p)[i] = (uint8_t)(v >> (8 * i));
    }
    *p += n;
}

static uint64_t get(const uint8_t **p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v |= (uint64_t)(*p)[i] << (8 * i);
    }
    *p += n;
    return v;
}

int vmm_virtio_save_state(VmmVirtioDevice *vdev, void *buf, size_t len)
{
    if (!vdev || !buf || len < vmm_virtio_state_size(vdev)) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_virtio_save_state: no device, or buffer too small");
    }
    /* A backend outside the core (vhost) processes its queues: unless the
     * device puts the rings' positions here when it stops the backend
     * (backend_rings_saved), they are not theirs, and a record would
     * restore a broken device once the driver set it up. */
    if (vdev->ops.quiesce && !vdev->backend_rings_saved &&
        vk_atomic_read(&vdev->status) != 0) {
        vk_error("virtio: device type %u: its queues are processed outside the VMM (vhost); "
                 "its state cannot be saved", vdev->ops.device_id);
        return -EOPNOTSUPP;
    }
    /* Quiesced: no handler runs and nothing is in flight, so the queue
     * fields (the queue contexts' own) hold still. */
    if (!vmm_device_is_quiesced(vdev->dev) && vk_atomic_read(&vdev->status) != 0) {
        return -EBUSY;
    }
    uint8_t *p = buf;
    vk_mutex_lock(&vdev->lock);
    put(&p, STATE_MAGIC, 4);
    put(&p, vdev->num_queues, 4);
    put(&p, vdev->ops.device_id, 2);
    put(&p, 0, 2);
    put(&p, vdev->host_features, 8);
    put(&p, vdev->guest_features, 8);
    put(&p, vk_atomic_read(&vdev->status) | (uint32_t)vk_atomic_read(&vdev->isr) << 8, 4);
    put(&p, vdev->config_gen, 4);
    put(&p, vdev->ops.config_size, 4);
    memcpy(p, vdev->config, vdev->ops.config_size);
    p += vdev->ops.config_size;
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        VmmVirtqueue *vq = &vdev->vq[i];
        bool ready = vk_atomic_load_acquire(&vq->ready);
        put(&p, vq->size, 2);
        put(&p, ready, 2);
        put(&p, vq->desc_gpa, 8);
        put(&p, vq->avail_gpa, 8);
        put(&p, vq->used_gpa, 8);
        put(&p, ready ? vq->last_avail_idx : 0, 2);
        put(&p, ready ? vq->used_idx : 0, 2);
        put(&p, ready ? vq->signalled_used : 0, 2);
        put(&p, ready && vq->signalled_used_valid, 2);
    }
    vk_mutex_unlock(&vdev->lock);
    return 0;
}

int vmm_virtio_load_state(VmmVirtioDevice *vdev, const void *buf, size_t len)
{
    if (!vdev || !buf) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_virtio_load_state: no device or no record");
    }
    const uint8_t *p = buf;
    if (len != vmm_virtio_state_size(vdev) || get(&p, 4) != STATE_MAGIC ||
        get(&p, 4) != vdev->num_queues || get(&p, 2) != vdev->ops.device_id) {
        vk_error("virtio device '%s': the saved state is for another device",
                 vmm_device_name(vdev->dev));
        return -EINVAL;
    }
    get(&p, 2);
    uint64_t host = get(&p, 8), guest = get(&p, 8);
    uint32_t st = (uint32_t)get(&p, 4);
    uint32_t gen = (uint32_t)get(&p, 4);
    if (host != vdev->host_features || (guest & ~host) || get(&p, 4) != vdev->ops.config_size) {
        vk_error("virtio device '%s': the saved features or configuration size differ "
                 "(0x%llx offered then, 0x%llx now)", vmm_device_name(vdev->dev),
                 (unsigned long long)host, (unsigned long long)vdev->host_features);
        return -EINVAL;
    }
    const uint8_t *config = p;
    p += vdev->ops.config_size;
    const uint8_t *queues = p;
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        uint16_t size = (uint16_t)get(&p, 2);
        uint16_t ready = (uint16_t)get(&p, 2);
        p += 24 + 8;
        if (!size || size > vdev->vq[i].max_size || (size & (size - 1)) || ready > 1) {
            vk_error("virtio device '%s': saved queue %u is impossible",
                     vmm_device_name(vdev->dev), i);
            return -EINVAL;
        }
    }
    uint8_t status = (uint8_t)st;
    vk_mutex_lock(&vdev->lock);
    if (vk_atomic_read(&vdev->status) != 0 || vdev->reset_pending) {
        vk_mutex_unlock(&vdev->lock);
        return VMM_MISUSE_ERR(-EBUSY, "vmm_virtio_load_state: the driver set the device up");
    }
    vdev->guest_features = guest;
    vdev->config_gen = gen;
    memcpy(vdev->config, config, vdev->ops.config_size);
    int r = 0;
    p = queues;
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        VmmVirtqueue *vq = &vdev->vq[i];
        vq->size = (uint16_t)get(&p, 2);
        bool ready = get(&p, 2);
        vq->desc_gpa = get(&p, 8);
        vq->avail_gpa = get(&p, 8);
        vq->used_gpa = get(&p, 8);
        uint16_t last_avail = (uint16_t)get(&p, 2), used = (uint16_t)get(&p, 2);
        uint16_t signalled = (uint16_t)get(&p, 2);
        bool signalled_valid = get(&p, 2) & 1;
        if (!ready) {
            continue;
        }
        if (vq_enable(vq, guest) < 0) {
            r = -EFAULT;        /* outside guest memory, or misaligned */
            continue;
        }
        vq->last_avail_idx = vq->shadow_avail_idx = last_avail;
        vq->used_idx = used;
        vq->signalled_used = signalled;
        vq->signalled_used_valid = signalled_valid;
    }
    if (r < 0) {
        for (unsigned i = 0; i < vdev->num_queues; i++) {
            vq_reset(&vdev->vq[i]);
        }
        vdev->guest_features = 0;
        vk_mutex_unlock(&vdev->lock);
        vk_error("virtio device '%s': a saved queue's rings are outside guest memory",
                 vmm_device_name(vdev->dev));
        return r;
    }
    if ((status & VMM_VIRTIO_STATUS_FEATURES_OK) && vdev->ops.set_features &&
        vdev->ops.set_features(vdev, guest, vdev->opaque) < 0) {
        status |= VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    }
    vk_atomic_set(&vdev->isr, (uint8_t)(st >> 8));
    vk_atomic_set(&vdev->state_loaded, true);
    vk_atomic_store_release(&vdev->status, status);
    vk_mutex_unlock(&vdev->lock);
    if ((status & VMM_VIRTIO_STATUS_DRIVER_OK) && vdev->ops.driver_ok) {
        vdev->ops.driver_ok(vdev, vdev->opaque);
    }
    /* Requests the driver queued before the save and the device had not
     * taken yet: the doorbell that announced them was consumed. */
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        if (vk_atomic_load_acquire(&vdev->vq[i].ready)) {
            vmm_virtio_queue_kick(vdev, i);
        }
    }
    return 0;
}

/*
 * The buffers the driver offered @vdev for writing: every writable entry of
 * each enabled queue's descriptor table, and of the indirect tables it
 * names.  A backend outside the core (vhost) writes them with no dirty log
 * of ours, so a live migration sends them again once the backend stopped.
 * Called with the machine paused and the device quiesced.  The tables are
 * guest memory: indirect tables are read through vmm_dma_read (a table
 * outside RAM is skipped), their length is bounded, and @fn gets the raw
 * (address, length) pairs, which it must bound to guest RAM itself.
 */
void virtio_writable_buffers(VmmVirtioDevice *vdev,
                             void (*fn)(void *opaque, uint64_t gpa, uint64_t len),
                             void *opaque)
{
    enum { CHUNK = 32, MAX_INDIRECT = 1024 };
    for (unsigned q = 0; q < vdev->num_queues; q++) {
        VmmVirtqueue *vq = &vdev->vq[q];
        if (!vk_atomic_load_acquire(&vq->ready) || !vq->desc) {
            continue;
        }
        for (unsigned i = 0; i < vq->size; i++) {
            struct vring_desc d;
            memcpy(&d, &vq->desc[i], sizeof(d));
            uint64_t addr = le64toh(d.addr);
            uint32_t len = le32toh(d.len);
            uint16_t flags = le16toh(d.flags);
            if (!(flags & VRING_DESC_F_INDIRECT)) {
                if ((flags & VRING_DESC_F_WRITE) && len) {
                    fn(opaque, addr, len);
                }
                continue;
            }
            if (!vq->indirect) {
                continue;
            }
            unsigned n = len / sizeof(struct vring_desc);
            n = n < MAX_INDIRECT ? n : MAX_INDIRECT;
            for (unsigned k = 0; k < n; k += CHUNK) {
                struct vring_desc t[CHUNK];
                unsigned c = n - k < CHUNK ? n - k : CHUNK;
                if (vmm_dma_read(vdev->mem, addr + (uint64_t)k * sizeof(t[0]), t,
                                 c * sizeof(t[0])) < 0) {
                    break;
                }
                for (unsigned j = 0; j < c; j++) {
                    if ((le16toh(t[j].flags) & VRING_DESC_F_WRITE) && t[j].len) {
                        fn(opaque, le64toh(t[j].addr), le32toh(t[j].len));
                    }
                }
            }
        }
    }
}
