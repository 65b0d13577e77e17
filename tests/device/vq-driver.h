/* SPDX-License-Identifier: MIT */
/*
 * Test-side virtio driver: lays out split virtqueues in guest memory the way
 * a guest driver does, submits requests, and reads completions, with the
 * driver half of the barrier pairs (see src/virtio/virtqueue.c).  Helpers
 * for malformed rings let tests play a hostile guest.
 */
#ifndef TEST_VQ_DRIVER_H
#define TEST_VQ_DRIVER_H

#include <linux/virtio_ring.h>
#include <string.h>
#include <unistd.h>

#include "vmmkit/aio.h"
#include "vmmkit/memory.h"
#include "vmmkit/virtio.h"

/* @len bytes of guest RAM at guest physical 0, in a guest memory of its
 * own, as the device tests lay it out.  The host address of gpa 0, or NULL
 * (nothing left allocated). */
static inline uint8_t *tvq_ram_new(uint64_t len, VmmGuestMemory **mem, VmmRamRegion **ram)
{
    VmmRamRegionOptions o = { .size = sizeof(o), .length = len };
    *mem = vmm_guest_memory_new(NULL);
    *ram = vmm_ram_region_new(&o, NULL);
    if (!*mem || !*ram || vmm_guest_memory_add(*mem, 0, *ram, 0, len, 0) < 0) {
        vmm_guest_memory_unref(*mem);
        vmm_ram_region_unref(*ram);
        *mem = NULL;
        *ram = NULL;
        return NULL;
    }
    return vmm_ram_region_host(*ram);
}

typedef struct TestVq {
    uint8_t *ram;           /* host address of guest physical 0 */
    uint16_t size;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t avail_idx;     /* next avail entry the driver fills */
    uint16_t last_used;     /* next used entry the driver reads */
    uint16_t next_desc;     /* descriptors are handed out round robin */
} TestVq;

typedef struct TestBuf {
    uint64_t gpa;
    uint32_t len;
    bool write;             /* device-writable */
} TestBuf;

/* Rings at @base (gpa): desc at base, avail at base + 0x2000 (4 KiB-aligned
 * parts), used at base + 0x3000.  Room for up to 512 entries. */
static inline void tvq_init(TestVq *t, uint8_t *ram, uint64_t base, uint16_t size)
{
    memset(t, 0, sizeof(*t));
    t->ram = ram;
    t->size = size;
    t->desc_gpa = base;
    t->avail_gpa = base + 0x2000;
    t->used_gpa = base + 0x3000;
    t->desc = (struct vring_desc *)(ram + t->desc_gpa);
    t->avail = (struct vring_avail *)(ram + t->avail_gpa);
    t->used = (struct vring_used *)(ram + t->used_gpa);
    memset(ram + base, 0, 0x4000 + 8u * size + 8);
}

/* Put @head on the available ring and publish it. */
static inline void tvq_publish(TestVq *t, uint16_t head)
{
    t->avail->ring[t->avail_idx % t->size] = head;
    t->avail_idx++;
    /* Release: the driver's wmb before publishing avail->idx (pairs with
     * the device's acquire load [A]). */
    __atomic_store_n(&t->avail->idx, t->avail_idx, __ATOMIC_RELEASE);
}

/* Write a chain of @n descriptors for @bufs; returns its head. */
static inline uint16_t tvq_chain(TestVq *t, const TestBuf *bufs, unsigned n)
{
    uint16_t head = t->next_desc;
    for (unsigned i = 0; i < n; i++) {
        uint16_t d = (uint16_t)((head + i) % t->size);
        t->desc[d].addr = bufs[i].gpa;
        t->desc[d].len = bufs[i].len;
        t->desc[d].flags = (uint16_t)((bufs[i].write ? VRING_DESC_F_WRITE : 0) |
                                      (i + 1 < n ? VRING_DESC_F_NEXT : 0));
        t->desc[d].next = (uint16_t)((d + 1) % t->size);
    }
    t->next_desc = (uint16_t)((head + n) % t->size);
    return head;
}

static inline uint16_t tvq_add(TestVq *t, const TestBuf *bufs, unsigned n)
{
    uint16_t head = tvq_chain(t, bufs, n);
    tvq_publish(t, head);
    return head;
}

/* One descriptor pointing at an indirect table at @table_gpa holding @n
 * entries built from @bufs. */
static inline uint16_t tvq_add_indirect(TestVq *t, uint64_t table_gpa,
                                        const TestBuf *bufs, unsigned n)
{
    struct vring_desc *tab = (struct vring_desc *)(t->ram + table_gpa);
    for (unsigned i = 0; i < n; i++) {
        tab[i].addr = bufs[i].gpa;
        tab[i].len = bufs[i].len;
        tab[i].flags = (uint16_t)((bufs[i].write ? VRING_DESC_F_WRITE : 0) |
                                  (i + 1 < n ? VRING_DESC_F_NEXT : 0));
        tab[i].next = (uint16_t)(i + 1);
    }
    TestBuf ind = { .gpa = table_gpa, .len = (uint32_t)(n * sizeof(struct vring_desc)) };
    uint16_t head = tvq_chain(t, &ind, 1);
    t->desc[head].flags = VRING_DESC_F_INDIRECT;
    tvq_publish(t, head);
    return head;
}

/* Next completion, if any. */
static inline bool tvq_get_used(TestVq *t, uint32_t *id, uint32_t *len)
{
    /* Acquire: the driver's rmb after reading used->idx (pairs with the
     * device's release store [B]). */
    uint16_t idx = __atomic_load_n(&t->used->idx, __ATOMIC_ACQUIRE);
    if (idx == t->last_used) {
        return false;
    }
    struct vring_used_elem *e = &t->used->ring[t->last_used % t->size];
    *id = e->id;
    *len = e->len;
    t->last_used++;
    return true;
}

static inline uint16_t *tvq_used_event(TestVq *t)
{
    return &t->avail->ring[t->size];
}

static inline uint16_t *tvq_avail_event(TestVq *t)
{
    return (uint16_t *)&t->used->ring[t->size];
}

/* The guest driver's bring-up: negotiate @features, set up queue @q on
 * @t's rings, DRIVER_OK.  Returns the final status. */
static inline uint8_t tvq_bringup(VmmVirtioDevice *vdev, TestVq *const *qs,
                                  unsigned nq, uint64_t features)
{
    vmm_virtio_set_status(vdev, VMM_VIRTIO_STATUS_ACKNOWLEDGE);
    vmm_virtio_set_status(vdev, VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER);
    vmm_virtio_set_driver_features(vdev, features);
    vmm_virtio_set_status(vdev, VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER |
                                VMM_VIRTIO_STATUS_FEATURES_OK);
    for (unsigned q = 0; q < nq; q++) {
        vmm_virtio_queue_set_size(vdev, q, qs[q]->size);
        vmm_virtio_queue_set_addr(vdev, q, qs[q]->desc_gpa, qs[q]->avail_gpa,
                                  qs[q]->used_gpa);
        vmm_virtio_queue_enable(vdev, q);
    }
    vmm_virtio_set_status(vdev, VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER |
                                VMM_VIRTIO_STATUS_FEATURES_OK | VMM_VIRTIO_STATUS_DRIVER_OK);
    return vmm_virtio_get_status(vdev);
}

typedef struct TvqIdle {
    VmmAioContext *ctx;
    int drain, busy;
    bool done;              /* atomic */
} TvqIdle;

/* In the context's thread: poll until nothing is left to do (at most 100
 * passes), then count the passes that still claim progress. */
static inline void tvq_idle_bh(void *opaque)
{
    TvqIdle *c = opaque;
    for (c->drain = 0; c->drain < 100 && vmm_aio_poll(c->ctx, false); c->drain++) {
    }
    for (int i = 0; i < 20; i++) {
        c->busy += vmm_aio_poll(c->ctx, false);
    }
    /* Release: pairs with the acquire in tvq_idle(). */
    __atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
}

/*
 * Whether the iothread context @ctx, once it has done what it had to, makes
 * no progress in 20 more non-blocking passes (so its blocking poll would
 * sleep).  A context that finds "work" every pass never settles: false.
 */
static inline bool tvq_idle(VmmAioContext *ctx)
{
    TvqIdle c = { .ctx = ctx };
    if (vmm_bh_schedule_oneshot(ctx, tvq_idle_bh, &c, "tvq-idle") < 0) {
        return false;
    }
    for (int i = 0; i < 30000 && !__atomic_load_n(&c.done, __ATOMIC_ACQUIRE); i++) {
        usleep(1000);
    }
    return __atomic_load_n(&c.done, __ATOMIC_ACQUIRE) && c.drain < 100 && c.busy == 0;
}

#endif
