/* SPDX-License-Identifier: MIT */
/* Internal: the guest-physical map behind VmmGuestMemory. */
#ifndef VMM_MEMORY_INTERNAL_H
#define VMM_MEMORY_INTERNAL_H

#include <urcu/urcu-memb.h>

#include "util/lock.h"
#include "vmmkit/memory.h"

/* One section; @last is the GPA of its last byte (no overflow at 2^64). */
typedef struct VmmMemSlot {
    uint64_t gpa;
    uint64_t last;
    uint8_t *host;
    VmmRamRegion *region;
    uint64_t offset;
    uint32_t flags;
} VmmMemSlot;

/* An immutable snapshot, sorted by gpa, published with RCU. */
typedef struct VmmMemMap {
    struct rcu_head rcu;
    unsigned n;
    VmmMemSlot slot[];
} VmmMemMap;

typedef struct VmmMemListener VmmMemListener;

/* The log of device writes (vmm_guest_memory_log_dirty): bit i is guest
 * page i (GPA i * 4096), for GPAs below npages * 4096. */
typedef struct VmmDirtyLog {
    struct VmmDirtyLog *older;      /* replaced logs, freed with the memory */
    uint64_t npages;
    uint64_t bits[];
} VmmDirtyLog;

struct VmmGuestMemory {
    int refcnt;
    VmmMutex lock;                           /* serializes updates */
    VmmMemMap *map;                            /* RCU pointer */
    VmmMemListener *listeners;                 /* under lock */
    /* The device-write log while logging, else NULL: published with a
     * release store (vmm_guest_memory_log_dirty), read with an acquire
     * load by the DMA paths (mem_mark_dirty).  A log that is switched off
     * is kept (mem->dirty_keep) until the memory is freed, so a DMA path
     * that loaded the pointer just before never touches freed memory. */
    VmmDirtyLog *dirty;
    VmmDirtyLog *dirty_keep;                   /* under lock */
};

/* Record a device write of [gpa, gpa+len) when logging.  Any thread. */
void mem_mark_dirty(VmmGuestMemory *mem, uint64_t gpa, uint64_t len);

/* The current map; the caller is inside vk_rcu_read_lock(). */
const VmmMemMap *mem_map_get(VmmGuestMemory *mem);
/* The slot containing @gpa, or NULL.  Binary search. */
const VmmMemSlot *mem_map_lookup(const VmmMemMap *m, uint64_t gpa);

/*
 * Pin a range that lies inside one section: returns its host address and a
 * reference on its region in *@ref (drop with vmm_ram_region_unref()), so
 * the host memory outlives any later removal.  Used for virtqueue rings.
 * Errors as vmm_dma_map(); -EFAULT also when the range crosses sections.
 */
int guest_memory_pin(VmmGuestMemory *mem, uint64_t gpa, uint64_t len,
                         uint32_t flags, void **host, VmmRamRegion **ref);

#endif
