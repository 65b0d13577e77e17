/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.x, 2.7).  The rings live in guest memory and
 * the guest may change them at any moment, so every value read from them is
 * checked before use, and descriptors are copied before they are examined.
 * A violation marks the device DEVICE_NEEDS_RESET (vmm_virtio_set_needs_reset).
 *
 * Barrier pairs with the driver (Linux drivers/virtio/virtio_ring.c terms):
 *  [A] pop: acquire load of avail->idx  <->  driver's wmb before it
 *      publishes avail->idx, so ring entries and descriptors are visible.
 *  [B] push: release store of used->idx  <->  driver's rmb after reading
 *      used->idx (get_buf), so it sees the used element and buffer data.
 *  [C] notify: mb between the used->idx store and reading used_event or
 *      avail->flags  <->  driver's mb between writing used_event (or
 *      clearing NO_INTERRUPT) and re-reading used->idx (enable_cb/poll).
 *  [D] set_notification(true): mb between writing avail_event (or clearing
 *      NO_NOTIFY) and re-reading avail->idx  <->  driver's mb between
 *      publishing avail->idx and reading avail_event/used->flags
 *      (kick_prepare).  Together [C] and [D] ensure no interrupt or doorbell
 *      is lost.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory-internal.h"
#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"
#include "virtio/virtio-internal.h"

static inline uint16_t ring_load16(const void *p)
{
    return le16toh(vk_atomic_read((const uint16_t *)p));
}

static inline void ring_store16(void *p, uint16_t v)
{
    vk_atomic_set((uint16_t *)p, htole16(v));
}

static inline uint16_t *used_event_ptr(VmmVirtqueue *vq)
{
    return (uint16_t *)&vq->avail->ring[vq->size];
}

static inline uint16_t *avail_event_ptr(VmmVirtqueue *vq)
{
    return (uint16_t *)&vq->used->ring[vq->size];
}

static bool vq_ready(VmmVirtqueue *vq)
{
    /* Acquire: pairs with the release in vq_enable(). */
    return vk_atomic_load_acquire(&vq->ready) &&
           !(vk_atomic_read(&vq->vdev->status) & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

int vq_init(VmmVirtqueue *vq, VmmVirtioDevice *vdev, unsigned index)
{
    vq->vdev = vdev;
    vq->index = index;
    vq->max_size = vdev->ops.queue_max_size;
    vq->size = vq->max_size;
    vq->scratch_iov = calloc(VMM_VIRTQUEUE_MAX_IOV, sizeof(struct iovec));
    vq->scratch_ind = calloc(VMM_VIRTQUEUE_MAX_SIZE, sizeof(struct vring_desc));
    vk_mutex_init(&vq->run_lock);
    return vq->scratch_iov && vq->scratch_ind ? 0 : -ENOMEM;
}

void vq_unpin(VmmVirtqueue *vq)
{
    for (int i = 0; i < 3; i++) {
        vmm_ram_region_unref(vq->pin[i]);
        vq->pin[i] = NULL;
    }
    vq->desc = NULL;
    vq->avail = NULL;
    vq->used = NULL;
}

void vq_cleanup(VmmVirtqueue *vq)
{
    vq_unpin(vq);
    free(vq->scratch_iov);
    free(vq->scratch_ind);
    vk_mutex_destroy(&vq->run_lock);
}

/* Back to the power-on state (device quiesced, under vdev->lock). */
void vq_reset(VmmVirtqueue *vq)
{
    vk_atomic_store_release(&vq->ready, false);
    vq_unpin(vq);
    vq->size = vq->max_size;
    vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
    vq->last_avail_idx = vq->shadow_avail_idx = vq->used_idx = 0;
    vq->signalled_used = 0;
    vq->signalled_used_valid = false;
    vq->in_flight = 0;
    /* kick_pending belongs to run_lock: core_reset() clears it. */
}

int vq_enable(VmmVirtqueue *vq, uint64_t features)
{
    VmmGuestMemory *mem = vq->vdev->mem;
    uint64_t n = vq->size;
    void *d, *a, *u;

    if (!mem || !VMM_IS_ALIGNED(vq->desc_gpa, 16) || !VMM_IS_ALIGNED(vq->avail_gpa, 2) ||
        !VMM_IS_ALIGNED(vq->used_gpa, 4)) {
        return -EINVAL;
    }
    if (guest_memory_pin(mem, vq->desc_gpa, 16 * n, 0, &d, &vq->pin[0]) < 0 ||
        guest_memory_pin(mem, vq->avail_gpa, 6 + 2 * n, 0, &a, &vq->pin[1]) < 0 ||
        guest_memory_pin(mem, vq->used_gpa, 6 + 8 * n, VMM_DMA_TO_GUEST, &u,
                             &vq->pin[2]) < 0) {
        vq_unpin(vq);
        return -EFAULT;
    }
    vq->desc = d;
    vq->avail = a;
    vq->used = u;
    vq->event_idx = features & (1ull << VMM_VIRTIO_F_RING_EVENT_IDX);
    vq->indirect = features & (1ull << VMM_VIRTIO_F_RING_INDIRECT_DESC);
    vq->last_avail_idx = vq->shadow_avail_idx = vq->used_idx = 0;
    vq->signalled_used_valid = false;
    vq->notification = true;
    vq->in_flight = 0;
    /* Release: pairs with the acquire in vq_ready(), so the queue's thread
     * sees the pinned rings. */
    vk_atomic_store_release(&vq->ready, true);
    return 0;
}

/* Re-read avail->idx; false when there is nothing new or the index is bad. */
static bool vq_refresh_avail(VmmVirtqueue *vq, int *err)
{
    /* [A] Acquire: pairs with the driver's wmb before publishing avail->idx. */
    uint16_t idx = le16toh(vk_atomic_load_acquire(&vq->avail->idx));

    if ((uint16_t)(idx - vq->last_avail_idx) > vq->size) {
        vmm_virtio_set_needs_reset(vq->vdev, "available index ran ahead of the ring");
        *err = -EIO;
        return false;
    }
    vq->shadow_avail_idx = idx;
    return idx != vq->last_avail_idx;
}

typedef struct Walk {
    struct iovec *iov;
    unsigned niov;
    unsigned out_num;
    uint64_t out_len, in_len;
} Walk;

/* Map one descriptor's buffer; NULL or the reason it is bad. */
static const char *walk_map(VmmVirtqueue *vq, Walk *w, const struct vring_desc *d)
{
    uint16_t flags = le16toh(d->flags);
    uint64_t addr = le64toh(d->addr);
    uint32_t len = le32toh(d->len);
    bool write = flags & VRING_DESC_F_WRITE;

    if (!write && w->niov > w->out_num) {
        return "device-readable descriptor after a writable one";
    }
    if (len == 0) {
        return NULL;
    }
    int r = vmm_dma_map(vq->vdev->mem, addr, len, write ? VMM_DMA_TO_GUEST : 0,
                        w->iov + w->niov, VMM_VIRTQUEUE_MAX_IOV - w->niov);
    if (r < 0) {
        return r == -ENOBUFS ? "descriptor chain has too many buffers" :
               r == -EACCES ? "writable buffer in read-only memory" :
                              "buffer outside guest RAM or wrapping";
    }
    w->niov += (unsigned)r;
    if (write) {
        w->in_len += len;
    } else {
        w->out_num = w->niov;
        w->out_len += len;
    }
    return NULL;
}

/* Copy and check an indirect table into vq->scratch_ind. */
static const char *walk_indirect(VmmVirtqueue *vq, const struct vring_desc *d,
                                 bool nested, unsigned *max)
{
    uint32_t len = le32toh(d->len);

    if (!vq->indirect) {
        return "indirect descriptor without VIRTIO_F_RING_INDIRECT_DESC";
    }
    if (nested) {
        return "indirect descriptor inside an indirect table";
    }
    if (le16toh(d->flags) & VRING_DESC_F_NEXT) {
        return "indirect descriptor with the NEXT flag";
    }
    if (len == 0 || len % sizeof(struct vring_desc) ||
        len / sizeof(struct vring_desc) > VMM_VIRTQUEUE_MAX_SIZE) {
        return "bad indirect table length";
    }
    if (vmm_dma_read(vq->vdev->mem, le64toh(d->addr), vq->scratch_ind, len) < 0) {
        return "indirect table outside guest RAM or wrapping";
    }
    *max = len / sizeof(struct vring_desc);
    return NULL;
}

/* Walk the chain at @head into @w; NULL or the reason it is bad. */
static const char *vq_walk(VmmVirtqueue *vq, uint16_t head, Walk *w)
{
    const struct vring_desc *table = vq->desc;
    unsigned max = vq->size, i = head, count = 0;
    bool indirect = false;
    const char *why;

    for (;;) {
        struct vring_desc d;
        memcpy(&d, &table[i], sizeof(d));      /* the guest may change it */
        uint16_t flags = le16toh(d.flags);
        if (flags & VRING_DESC_F_INDIRECT) {
            why = walk_indirect(vq, &d, indirect, &max);
            if (why) {
                return why;
            }
            table = vq->scratch_ind;
            indirect = true;
            i = 0;
            count = 0;
            continue;
        }
        if (++count > max) {
            return "descriptor chain loops or is longer than its table";
        }
        why = walk_map(vq, w, &d);
        if (why) {
            return why;
        }
        if (!(flags & VRING_DESC_F_NEXT)) {
            return NULL;
        }
        i = le16toh(d.next);
        if (i >= max) {
            return "next descriptor index out of range";
        }
    }
}

static void set_avail_event(VmmVirtqueue *vq, uint16_t v)
{
    ring_store16(avail_event_ptr(vq), v);
}

void *vmm_virtqueue_pop(VmmVirtqueue *vq, size_t elem_size, int *errp)
{
    int err = 0;
    VmmVirtqElem *elem = NULL;

    if (elem_size < sizeof(VmmVirtqElem)) {
        err = VMM_MISUSE_ERR(-EINVAL, "element size %zu is smaller than VmmVirtqElem",
                             elem_size);
        goto out;
    }
    if (!vq_ready(vq)) {
        goto out;
    }
    if (!device_dma_allowed(vq->vdev->dev, __func__)) {
        err = -EBUSY;
        goto out;
    }
    if (vq->last_avail_idx == vq->shadow_avail_idx && !vq_refresh_avail(vq, &err)) {
        goto out;
    }
    uint16_t head = ring_load16(&vq->avail->ring[vq->last_avail_idx & (vq->size - 1)]);
    if (head >= vq->size) {
        vmm_virtio_set_needs_reset(vq->vdev, "available ring entry out of range");
        err = -EIO;
        goto out;
    }
    Walk w = { .iov = vq->scratch_iov };
    const char *why = vq_walk(vq, head, &w);
    if (why) {
        vmm_virtio_set_needs_reset(vq->vdev, why);
        err = -EIO;
        goto out;
    }
    elem = calloc(1, elem_size + w.niov * sizeof(struct iovec));
    if (!elem) {
        err = -ENOMEM;      /* the request stays on the ring */
        goto out;
    }
    elem->index = head;
    elem->out_num = w.out_num;
    elem->in_num = w.niov - w.out_num;
    elem->out_len = w.out_len;
    elem->in_len = w.in_len;
    elem->iov = (struct iovec *)((char *)elem + elem_size);
    memcpy(elem->iov, w.iov, w.niov * sizeof(struct iovec));
    vq->last_avail_idx++;
    vq->in_flight++;
    vk_atomic_inc(&vq->vdev->in_flight);
    if (vq->event_idx && vq->notification) {
        set_avail_event(vq, vq->last_avail_idx);
    }
out:
    if (errp) {
        *errp = err;
    }
    return elem;
}

static void vq_done(VmmVirtqueue *vq)
{
    if (vq->in_flight == 0) {
        VMM_MISUSE("queue %u: more elements returned than popped", vq->index);
        return;
    }
    vq->in_flight--;
    virtio_request_finished(vq->vdev, vq);
}

void vmm_virtqueue_push(VmmVirtqueue *vq, const VmmVirtqElem *elem, uint32_t len)
{
    if (!vk_atomic_load_acquire(&vq->ready)) {
        return;
    }
    if (len > elem->in_len) {
        VMM_MISUSE("queue %u: %u bytes written to a %llu-byte buffer", vq->index, len,
                   (unsigned long long)elem->in_len);
        len = (uint32_t)elem->in_len;
    }
    struct vring_used_elem *ue = &vq->used->ring[vq->used_idx & (vq->size - 1)];
    vk_atomic_set(&ue->id, htole32(elem->index));
    vk_atomic_set(&ue->len, htole32(len));
    vq->used_idx++;
    /* [B] Release: pairs with the driver's rmb after it reads used->idx. */
    vk_atomic_store_release(&vq->used->idx, htole16(vq->used_idx));
    vq_done(vq);
}

void vmm_virtqueue_detach(VmmVirtqueue *vq, const VmmVirtqElem *elem)
{
    (void)elem;
    vq_done(vq);
}

void vq_unpop(VmmVirtqueue *vq, unsigned n)
{
    if (n > vq->in_flight) {
        VMM_MISUSE("queue %u: %u elements given back, %u in flight", vq->index, n,
                   vq->in_flight);
        return;
    }
    /* The entries are read again (descriptors re-walked) by the next pop.
     * An avail_event already moved past them is pulled back by the
     * caller's next set_notification(true) before it waits for a kick. */
    vq->last_avail_idx = (uint16_t)(vq->last_avail_idx - n);
    while (n--) {
        vq_done(vq);
    }
}

static inline bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

void vmm_virtqueue_notify(VmmVirtqueue *vq)
{
    if (!vq_ready(vq)) {
        return;
    }
    /* [C] Full barrier: the used->idx store before the used_event/flags
     * load; pairs with the driver's mb in enable_cb/poll. */
    vk_smp_mb();
    if (vq->event_idx) {
        uint16_t old = vq->signalled_used, new_idx = vq->used_idx;
        bool valid = vq->signalled_used_valid;
        vq->signalled_used = new_idx;
        vq->signalled_used_valid = true;
        if (valid && !need_event(ring_load16(used_event_ptr(vq)), new_idx, old)) {
            return;
        }
    } else if (ring_load16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT) {
        return;
    }
    virtio_raise(vq->vdev, (int)vq->index);
}

bool vmm_virtqueue_empty(VmmVirtqueue *vq)
{
    int err = 0;

    if (!vq_ready(vq)) {
        return true;
    }
    if (vq->last_avail_idx != vq->shadow_avail_idx) {
        return false;
    }
    return !vq_refresh_avail(vq, &err);
}

bool vmm_virtqueue_set_notification(VmmVirtqueue *vq, bool enable)
{
    if (!vq_ready(vq)) {
        return false;   /* processing state belongs to vq_enable() */
    }
    if (enable && vq->poll_mode) {
        /* The context busy-polls the ring (virtio-aio.c): doorbells stay
         * off until it stops, which enables them (with [D]). */
        return !vmm_virtqueue_empty(vq);
    }
    vq->notification = enable;
    if (vq->event_idx) {
        if (enable) {
            set_avail_event(vq, ring_load16(&vq->avail->idx));
        }
    } else {
        ring_store16(&vq->used->flags, enable ? 0 : VRING_USED_F_NO_NOTIFY);
    }
    if (!enable) {
        return false;
    }
    /* [D] Full barrier: publish avail_event/flags before re-reading
     * avail->idx; pairs with the driver's mb in kick_prepare. */
    vk_smp_mb();
    return !vmm_virtqueue_empty(vq);
}

unsigned vmm_virtqueue_index(VmmVirtqueue *vq)
{
    return vq->index;
}

unsigned vmm_virtqueue_in_flight(VmmVirtqueue *vq)
{
    return vq->in_flight;
}
