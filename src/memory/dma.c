/* SPDX-License-Identifier: MIT */
/*
 * DMA into guest memory: copies and scatter-gather maps, each checked
 * against the current map inside one RCU read-side section, so a range is
 * validated and accessed against the same snapshot.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory-internal.h"
#include "memory/rcu.h"
#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"

/*
 * Walk [gpa, gpa + len) over @m: for each piece call @fn(host, n, arg).
 * Validates the whole range before the first call, so a failure touches
 * nothing.  @len > 0 and the range does not wrap.
 */
typedef void DmaPieceFn(uint8_t *host, uint64_t n, void *arg);

static int dma_check(const VmmMemMap *m, uint64_t gpa, uint64_t len, bool to_guest,
                     unsigned *pieces)
{
    uint64_t last = gpa + (len - 1);
    unsigned n = 0;

    for (;;) {
        const VmmMemSlot *s = mem_map_lookup(m, gpa);
        if (!s) {
            return -EFAULT;
        }
        if (to_guest && (s->flags & VMM_MEM_READONLY)) {
            return -EACCES;
        }
        n++;
        if (last <= s->last) {
            break;
        }
        gpa = s->last + 1;   /* no wrap: s->last < last */
    }
    *pieces = n;
    return 0;
}

static void dma_walk(const VmmMemMap *m, uint64_t gpa, uint64_t len,
                     DmaPieceFn *fn, void *arg)
{
    while (len) {
        const VmmMemSlot *s = mem_map_lookup(m, gpa);
        uint64_t avail = s->last - gpa + 1;   /* 0 means the full 2^64 */
        uint64_t n = (avail && avail < len) ? avail : len;
        fn(s->host + (gpa - s->gpa), n, arg);
        gpa += n;
        len -= n;
    }
}

typedef struct DmaCopy {
    uint8_t *buf;
    bool to_guest;
} DmaCopy;

static void dma_copy_piece(uint8_t *host, uint64_t n, void *arg)
{
    DmaCopy *c = arg;

    if (c->to_guest) {
        memcpy(host, c->buf, n);
    } else {
        memcpy(c->buf, host, n);
    }
    c->buf += n;
}

static int dma_rw(VmmGuestMemory *mem, uint64_t gpa, uint8_t *buf, size_t len,
                  bool to_guest)
{
    unsigned pieces;
    int ret;

    if (!mem || (len && !buf)) {
        return -EINVAL;
    }
    if (len == 0) {
        return 0;
    }
    if (gpa + (len - 1) < gpa) {
        return -EOVERFLOW;
    }
    vk_rcu_read_lock();
    const VmmMemMap *m = mem_map_get(mem);
    ret = dma_check(m, gpa, len, to_guest, &pieces);
    if (ret == 0) {
        DmaCopy c = { buf, to_guest };
        dma_walk(m, gpa, len, dma_copy_piece, &c);
    }
    vk_rcu_read_unlock();
    return ret;
}

void mem_mark_dirty(VmmGuestMemory *mem, uint64_t gpa, uint64_t len)
{
    /* Acquire: pairs with the release store that publishes the log. */
    VmmDirtyLog *d = vk_atomic_load_acquire(&mem->dirty);
    if (!d || len == 0) {
        return;
    }
    uint64_t first = gpa / 4096, last = (gpa + len - 1) / 4096;
    for (uint64_t p = first; p <= last && p < d->npages; p++) {
        uint64_t bit = 1ull << (p % 64);
        /* A plain load first: most pages are marked already. */
        if (!(vk_atomic_read(&d->bits[p / 64]) & bit)) {
            vk_atomic_fetch_or(&d->bits[p / 64], bit);
        }
    }
}

int vmm_guest_memory_log_dirty(VmmGuestMemory *mem, bool on)
{
    if (!mem) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_guest_memory_log_dirty: no guest memory");
    }
    vk_mutex_lock(&mem->lock);
    int ret = 0;
    if (!on) {
        vk_atomic_store_release(&mem->dirty, NULL);
    } else if (!vk_atomic_read(&mem->dirty)) {
        /* Cover every GPA the map has now. */
        uint64_t end = 0;
        vk_rcu_read_lock();
        const VmmMemMap *m = mem_map_get(mem);
        for (unsigned i = 0; m && i < m->n; i++) {
            if (m->slot[i].last + 1 > end) {
                end = m->slot[i].last + 1;
            }
        }
        vk_rcu_read_unlock();
        uint64_t npages = (end + 4095) / 4096;
        VmmDirtyLog *d = mem->dirty_keep;
        if (!d || d->npages < npages) {
            VmmDirtyLog *n = calloc(1, sizeof(*n) + (npages + 63) / 64 * 8);
            if (!n) {
                ret = -ENOMEM;
            } else {
                /* A DMA path may still hold the old one (it loaded the
                 * pointer before logging was switched off): it lives on
                 * until the memory is freed. */
                n->npages = npages;
                n->older = d;
                d = n;
            }
        } else {
            /* Atomic stores: a DMA path that loaded this log before it was
             * switched off may still OR a bit in; that bit is then one
             * more page to send, never a lost one. */
            for (uint64_t w = 0; w < (d->npages + 63) / 64; w++) {
                vk_atomic_set(&d->bits[w], 0);
            }
        }
        if (ret == 0) {
            mem->dirty_keep = d;
            /* Release: pairs with the acquire in mem_mark_dirty(). */
            vk_atomic_store_release(&mem->dirty, d);
        }
    }
    vk_mutex_unlock(&mem->lock);
    return ret;
}

int vmm_guest_memory_get_dirty(VmmGuestMemory *mem, uint64_t gpa, uint64_t npages,
                               uint64_t *bitmap)
{
    if (!mem || !bitmap || gpa % (64 * 4096)) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_guest_memory_get_dirty: bad arguments");
    }
    memset(bitmap, 0, (npages + 63) / 64 * 8);
    VmmDirtyLog *d = vk_atomic_load_acquire(&mem->dirty);
    if (!d) {
        return -ENOENT;
    }
    uint64_t base = gpa / 4096;
    for (uint64_t w = 0; w * 64 < npages && base + w * 64 < d->npages; w++) {
        uint64_t want = (w + 1) * 64 <= npages ? ~0ull : (1ull << (npages % 64)) - 1;
        bitmap[w] = vk_atomic_fetch_and(&d->bits[base / 64 + w], ~want) & want;
    }
    return 0;
}

int vmm_dma_read(VmmGuestMemory *mem, uint64_t gpa, void *buf, size_t len)
{
    return dma_rw(mem, gpa, buf, len, false);
}

int vmm_dma_write(VmmGuestMemory *mem, uint64_t gpa, const void *buf, size_t len)
{
    int r = dma_rw(mem, gpa, (uint8_t *)buf, len, true);
    if (r == 0) {
        mem_mark_dirty(mem, gpa, len);
    }
    return r;
}

typedef struct DmaIov {
    struct iovec *iov;
    unsigned n;
} DmaIov;

static void dma_iov_piece(uint8_t *host, uint64_t n, void *arg)
{
    DmaIov *d = arg;

    d->iov[d->n].iov_base = host;
    d->iov[d->n].iov_len = n;
    d->n++;
}

int vmm_dma_map(VmmGuestMemory *mem, uint64_t gpa, uint64_t len, uint32_t flags,
                struct iovec *iov, unsigned max_iov)
{
    unsigned pieces;
    int ret;

    if (!mem || (flags & ~VMM_DMA_TO_GUEST) || (max_iov && !iov)) {
        return -EINVAL;
    }
    if (len == 0) {
        return 0;
    }
    /* iov_len is a size_t and a single iovec cannot describe more than
     * SSIZE_MAX bytes for readv/writev. */
    if (gpa + (len - 1) < gpa || len > (uint64_t)SSIZE_MAX) {
        return -EOVERFLOW;
    }
    vk_rcu_read_lock();
    const VmmMemMap *m = mem_map_get(mem);
    ret = dma_check(m, gpa, len, flags & VMM_DMA_TO_GUEST, &pieces);
    if (ret == 0 && pieces > max_iov) {
        ret = -ENOBUFS;
    }
    if (ret == 0) {
        DmaIov d = { iov, 0 };
        dma_walk(m, gpa, len, dma_iov_piece, &d);
        ret = (int)d.n;
    }
    vk_rcu_read_unlock();
    if (ret >= 0 && (flags & VMM_DMA_TO_GUEST)) {
        mem_mark_dirty(mem, gpa, len);     /* the device is about to write */
    }
    return ret;
}

int guest_memory_pin(VmmGuestMemory *mem, uint64_t gpa, uint64_t len,
                         uint32_t flags, void **host, VmmRamRegion **ref)
{
    int ret = 0;

    if (len == 0 || gpa + (len - 1) < gpa) {
        return len ? -EOVERFLOW : -EINVAL;
    }
    vk_rcu_read_lock();
    const VmmMemSlot *s = mem_map_lookup(mem_map_get(mem), gpa);
    if (!s || gpa + (len - 1) > s->last) {
        ret = -EFAULT;
    } else if ((flags & VMM_DMA_TO_GUEST) && (s->flags & VMM_MEM_READONLY)) {
        ret = -EACCES;
    } else {
        *host = s->host + (gpa - s->gpa);
        if (flags & VMM_DMA_TO_GUEST) {
            mem_mark_dirty(mem, gpa, len);
        }
        /* The map we read holds a reference, and it cannot be freed before
         * we leave the read-side section: taking ours here is safe. */
        vmm_ram_region_ref(s->region);
        *ref = s->region;
    }
    vk_rcu_read_unlock();
    return ret;
}
