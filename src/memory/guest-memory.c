/* SPDX-License-Identifier: MIT */
/*
 * The guest-physical address map.
 *
 * Readers: vk_rcu_read_lock(), mem_map_get() (rcu_dereference: a
 * consume load that pairs with the rcu_assign_pointer() release store in
 * mem_publish(), so a reader sees a fully built map), binary search,
 * vk_rcu_read_unlock().
 * Writers (serialized by mem->lock): copy the map, edit the copy, publish
 * it, and free the old one with call_rcu() once no reader can hold it.
 * Each map holds a reference on the regions it names; dropping the old map
 * drops its references, so host memory is unmapped only after the grace
 * period and after the last pin (guest_memory_pin()).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory-internal.h"
#include "memory/rcu.h"
#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"

#define MEM_ALIGN 4096u

struct VmmMemListener {
    VmmMemListener *next;
    VmmMemoryListenerFunc *fn;
    void *opaque;
};

static VmmMemMap *map_alloc(unsigned n)
{
    VmmMemMap *m = calloc(1, sizeof(*m) + n * sizeof(VmmMemSlot));
    if (m) {
        m->n = n;
    }
    return m;
}

static void map_free_rcu(struct rcu_head *head)
{
    VmmMemMap *m = caa_container_of(head, VmmMemMap, rcu);

    vk_rcu_tsan_acquire();   /* pairs with vk_rcu_read_unlock() */
    for (unsigned i = 0; i < m->n; i++) {
        vmm_ram_region_unref(m->slot[i].region);
    }
    free(m);
}

const VmmMemMap *mem_map_get(VmmGuestMemory *mem)
{
    /* Acquire (stronger than rcu_dereference()'s consume, and visible to
     * ThreadSanitizer): pairs with the release store in mem_publish(). */
    return vk_atomic_load_acquire(&mem->map);
}

const VmmMemSlot *mem_map_lookup(const VmmMemMap *m, uint64_t gpa)
{
    unsigned lo = 0, hi = m->n;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const VmmMemSlot *s = &m->slot[mid];
        if (gpa < s->gpa) {
            hi = mid;
        } else if (gpa > s->last) {
            lo = mid + 1;
        } else {
            return s;
        }
    }
    return NULL;
}

VmmGuestMemory *vmm_guest_memory_new(int *errp)
{
    VmmGuestMemory *mem = calloc(1, sizeof(*mem));
    VmmMemMap *m = map_alloc(0);

    if (!mem || !m) {
        free(mem);
        free(m);
        if (errp) {
            *errp = -ENOMEM;
        }
        return NULL;
    }
    mem->refcnt = 1;
    vk_mutex_init(&mem->lock);
    mem->map = m;
    return mem;
}

void vmm_guest_memory_ref(VmmGuestMemory *mem)
{
    vk_atomic_inc(&mem->refcnt);
}

void vmm_guest_memory_unref(VmmGuestMemory *mem)
{
    if (!mem || vk_atomic_sub_fetch(&mem->refcnt, 1) != 0) {
        return;
    }
    /* No reader can exist any more: the last reference is gone.  Let the
     * maps retired by earlier updates finish too, so nothing outlives us. */
    urcu_memb_barrier();
    map_free_rcu(&mem->map->rcu);
    for (VmmDirtyLog *d = mem->dirty_keep; d;) {
        VmmDirtyLog *older = d->older;
        free(d);
        d = older;
    }
    vk_mutex_lock(&mem->lock);
    while (mem->listeners) {
        VmmMemListener *l = mem->listeners;
        mem->listeners = l->next;
        free(l);
    }
    vk_mutex_unlock(&mem->lock);
    vk_mutex_destroy(&mem->lock);
    free(mem);
}

static void slot_to_section(const VmmMemSlot *s, VmmMemorySection *out)
{
    out->gpa = s->gpa;
    out->length = s->last - s->gpa + 1;
    out->host = s->host;
    out->region = s->region;
    out->offset = s->offset;
    out->fd = vmm_ram_region_fd(s->region);
    out->flags = s->flags;
}

static void mem_notify(VmmGuestMemory *mem, const VmmMemSlot *s, bool added)
    VMM_REQUIRES(mem->lock)
{
    VmmMemorySection sec;

    slot_to_section(s, &sec);
    for (VmmMemListener *l = mem->listeners; l; l = l->next) {
        l->fn(l->opaque, &sec, added);
    }
}

/* Publish @m and retire the old map after a grace period. */
static void mem_publish(VmmGuestMemory *mem, VmmMemMap *m) VMM_REQUIRES(mem->lock)
{
    VmmMemMap *old = mem->map;

    /* Release store (rcu_assign_pointer): pairs with the acquire load in
     * mem_map_get(), so readers see the map's contents. */
    vk_atomic_store_release(&mem->map, m);
    vk_rcu_tsan_release();   /* the hand-off to the call_rcu thread */
    vk_rcu_call(&old->rcu, map_free_rcu);
}

static int add_check(VmmRamRegion *region, uint64_t gpa, uint64_t offset,
                     uint64_t length, uint32_t flags)
{
    if (!region || length == 0 || (flags & ~VMM_MEM_READONLY)) {
        return -EINVAL;
    }
    uint64_t align = vmm_ram_region_page_size(region);
    if (align < MEM_ALIGN) {
        align = MEM_ALIGN;
    }
    if (!VMM_IS_ALIGNED(gpa, align) || !VMM_IS_ALIGNED(offset, align) ||
        !VMM_IS_ALIGNED(length, align)) {
        return -EINVAL;
    }
    if (gpa + (length - 1) < gpa) {
        return -EOVERFLOW;
    }
    uint64_t rlen = vmm_ram_region_length(region);
    if (offset > rlen || length > rlen - offset) {
        return -EINVAL;
    }
    return 0;
}

int vmm_guest_memory_add(VmmGuestMemory *mem, uint64_t gpa, VmmRamRegion *region,
                         uint64_t offset, uint64_t length, uint32_t flags)
{
    int ret = mem ? add_check(region, gpa, offset, length, flags) : -EINVAL;
    if (ret < 0) {
        return ret;
    }
    VmmMemSlot ns = {
        .gpa = gpa, .last = gpa + (length - 1),
        .host = (uint8_t *)vmm_ram_region_host(region) + offset,
        .region = region, .offset = offset, .flags = flags,
    };

    vk_mutex_lock(&mem->lock);
    const VmmMemMap *cur = mem->map;
    unsigned pos = 0;
    while (pos < cur->n && cur->slot[pos].last < gpa) {
        pos++;
    }
    if (pos < cur->n && cur->slot[pos].gpa <= ns.last) {
        ret = -EEXIST;
    } else if (cur->n >= VMM_GUEST_MEMORY_MAX_SECTIONS) {
        ret = -ENOSPC;
    }
    VmmMemMap *m = ret == 0 ? map_alloc(cur->n + 1) : NULL;
    if (ret == 0 && !m) {
        ret = -ENOMEM;
    }
    if (ret == 0) {
        memcpy(m->slot, cur->slot, pos * sizeof(VmmMemSlot));
        m->slot[pos] = ns;
        memcpy(&m->slot[pos + 1], &cur->slot[pos], (cur->n - pos) * sizeof(VmmMemSlot));
        /* The new map holds one reference on every region it names. */
        for (unsigned i = 0; i < m->n; i++) {
            vmm_ram_region_ref(m->slot[i].region);
        }
        mem_publish(mem, m);
        mem_notify(mem, &ns, true);
    }
    vk_mutex_unlock(&mem->lock);
    return ret;
}

int vmm_guest_memory_remove(VmmGuestMemory *mem, uint64_t gpa, uint64_t length)
{
    int ret = -ENOENT;

    if (!mem) {
        return -EINVAL;
    }
    vk_mutex_lock(&mem->lock);
    const VmmMemMap *cur = mem->map;
    for (unsigned pos = 0; pos < cur->n; pos++) {
        const VmmMemSlot *s = &cur->slot[pos];
        if (s->gpa != gpa || length == 0 || s->last - s->gpa != length - 1) {
            continue;
        }
        VmmMemMap *m = map_alloc(cur->n - 1);
        if (!m) {
            ret = -ENOMEM;
            break;
        }
        VmmMemSlot gone = *s;
        memcpy(m->slot, cur->slot, pos * sizeof(VmmMemSlot));
        memcpy(&m->slot[pos], &cur->slot[pos + 1], (cur->n - pos - 1) * sizeof(VmmMemSlot));
        for (unsigned i = 0; i < m->n; i++) {
            vmm_ram_region_ref(m->slot[i].region);
        }
        /* The retired map may be freed (dropping its region reference)
         * as soon as it is published: hold our own for the listeners. */
        vmm_ram_region_ref(gone.region);
        mem_publish(mem, m);
        mem_notify(mem, &gone, false);
        vmm_ram_region_unref(gone.region);
        ret = 0;
        break;
    }
    vk_mutex_unlock(&mem->lock);
    return ret;
}

int vmm_guest_memory_add_listener(VmmGuestMemory *mem, VmmMemoryListenerFunc *fn,
                                  void *opaque)
{
    if (!mem || !fn) {
        return -EINVAL;
    }
    VmmMemListener *l = calloc(1, sizeof(*l));
    if (!l) {
        return -ENOMEM;
    }
    l->fn = fn;
    l->opaque = opaque;
    vk_mutex_lock(&mem->lock);
    const VmmMemMap *cur = mem->map;
    for (unsigned i = 0; i < cur->n; i++) {
        VmmMemorySection sec;
        slot_to_section(&cur->slot[i], &sec);
        fn(opaque, &sec, true);
    }
    l->next = mem->listeners;
    mem->listeners = l;
    vk_mutex_unlock(&mem->lock);
    return 0;
}

int vmm_guest_memory_remove_listener(VmmGuestMemory *mem, VmmMemoryListenerFunc *fn,
                                     void *opaque)
{
    int ret = -ENOENT;

    if (!mem) {
        return -EINVAL;
    }
    vk_mutex_lock(&mem->lock);
    for (VmmMemListener **pl = &mem->listeners; *pl; pl = &(*pl)->next) {
        if ((*pl)->fn == fn && (*pl)->opaque == opaque) {
            VmmMemListener *l = *pl;
            *pl = l->next;
            free(l);
            ret = 0;
            break;
        }
    }
    vk_mutex_unlock(&mem->lock);
    return ret;
}

int vmm_guest_memory_find(VmmGuestMemory *mem, uint64_t gpa, VmmMemorySection *out)
{
    int ret = -ENOENT;

    if (!mem || !out) {
        return -EINVAL;
    }
    vk_rcu_read_lock();
    const VmmMemSlot *s = mem_map_lookup(mem_map_get(mem), gpa);
    if (s) {
        slot_to_section(s, out);
        ret = 0;
    }
    vk_rcu_read_unlock();
    return ret;
}
