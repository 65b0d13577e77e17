/* SPDX-License-Identifier: MIT */
/* Internal: what the KVM layer needs from the gate beyond the public API. */
#ifndef VMM_ACCEL_INTERNAL_H
#define VMM_ACCEL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmmkit/accel.h"
#include "util/atomic.h"
#include "util/compiler.h"
#include "util/lock.h"

/* The gate's structures (accel-blocker.c has the algorithm and its barrier
 * pairs); here so the owner's fast path can be inlined into the run loop. */
#define SLOT_NAME_MAX 32

struct VmmAccelCpuSlot {
    unsigned count VMM_CACHE_ALIGNED;   /* owner writes; inhibitor reads */
    unsigned foreign;                   /* vCPU ioctls of other threads (D4) */
    VmmAccelGate *gate;
    VmmAccelKickFunc *kick;
    void *opaque;
    void *owner;                        /* &tls_self of the owner, or NULL */
    VmmAccelCpuSlot *next;              /* gate->slots, under gate->lock */
    char name[SLOT_NAME_MAX];
};

struct VmmAccelGate {
    unsigned inhibited VMM_CACHE_ALIGNED;
    bool fence_free;                    /* use_membarrier, read per begin/end */
    unsigned shared_count VMM_CACHE_ALIGNED;
    unsigned event VMM_CACHE_ALIGNED;
    VmmMutex lock VMM_CACHE_ALIGNED;   /* serialises inhibitors; slot list */
    VmmAccelCpuSlot *slots;  /* under lock */
    void *inhibitor;                    /* &tls_self of the inhibitor */
    unsigned inhibit_depth;             /* inhibitor's thread only */
    unsigned bypass_depth;              /* inhibitor's own ioctls */
    unsigned nr_slots;
    uint64_t inhibits;
};

/* VMM_ACCEL_GATE_USER_SIZE zeroed bytes, 64-byte aligned, on the page of
 * @gate and its first slots: for read-mostly data the gate's user reads on
 * the same path as the gate (fewer pages touched per vCPU exit). */
#define VMM_ACCEL_GATE_USER_SIZE 64
void *accel_gate_user_area(VmmAccelGate *gate);

/* Slow paths of the owner's brackets (accel-blocker.c). */
void accel_slot_begin_slow(VmmAccelCpuSlot *slot);
void accel_gate_event_set(VmmAccelGate *gate);

/* The owner side of D1/D2: free when membarrier does the work.
 * gate->fence_free is use_membarrier, copied at the gate's creation. */
static inline void accel_owner_fence(const VmmAccelGate *gate)
{
    if (vk_likely(gate->fence_free)) {
        vk_barrier();
    } else {
        vk_smp_mb();   /* pairs with vk_smp_mb() in inhibitor_fence() */
    }
}

/*
 * vmm_accel_cpu_ioctl_begin/end for the thread that owns @slot (bound with
 * vmm_accel_cpu_slot_bind), without the ownership check: the KVM vCPU
 * thread's own brackets around KVM_RUN.  Same algorithm as the public
 * functions (pairs D1/D2 in accel-blocker.c).
 */
static inline void accel_owner_begin(VmmAccelCpuSlot *slot) VMM_NO_TSA
{
    unsigned c = slot->count;

    vk_atomic_set(&slot->count, c + 1);
    if (c) {
        return;     /* nested: already counted */
    }
    accel_owner_fence(slot->gate);  /* D1: pairs with inhibitor_fence() */
    if (vk_unlikely(vk_atomic_load_acquire(&slot->gate->inhibited))) {
        accel_slot_begin_slow(slot);
    }
}

static inline void accel_owner_end(VmmAccelCpuSlot *slot) VMM_NO_TSA
{
    unsigned c = slot->count;

    /* Release pairs with the inhibitor's load-acquire of the count. */
    vk_atomic_store_release(&slot->count, c - 1);
    if (c > 1) {
        return;
    }
    accel_owner_fence(slot->gate);  /* D2: pairs with inhibitor_fence() */
    if (vk_unlikely(vk_atomic_read(&slot->gate->inhibited))) {
        accel_gate_event_set(slot->gate);
    }
}

#endif
