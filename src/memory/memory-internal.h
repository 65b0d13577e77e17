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

struct VmmGuestMemory {
    int refcnt;
    VmmMutex lock;                           /* serializes updates */
    VmmMemMap *map;                            /* RCU pointer */
    VmmMemListener *listeners;                 /* under lock */
};

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
