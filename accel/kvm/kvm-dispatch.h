/* SPDX-License-Identifier: MIT */
/*
 * Internal: the PIO/MMIO dispatch of an exit, inline, so that the run loop
 * (kvm-vcpu.c) handles an IO exit without a call or return of ours
 * between KVM_RUN and the device callback.  Where the TLBs are flushed
 * on every exit (nested virtualization, notably emulated), each distinct
 * page and call target an exit touches costs a page walk or a lookup:
 * inlining these calls took the PIO round trip from 1.04 to 1.02 times a
 * raw KVM_RUN loop's (bench/accel/bench-kvm.c).  A map entry carries its
 * range's data, so a lookup reads one heap object (the map array).   The map's writers and the
 * RCU rules are in kvm-io.c.
 * Include after defining _LGPL_SOURCE as kvm-io.c does (liburcu's inline
 * read side).
 */
#ifndef VMM_ACCEL_KVM_DISPATCH_H
#define VMM_ACCEL_KVM_DISPATCH_H

#include <string.h>

#include "accel/kvm/kvm-internal.h"
#include "util/atomic.h"

/* Counts (and names the first few of) accesses to holes (kvm-io.c). */
void kvm_io_unhandled(VmmVm *vm, bool pio, uint64_t addr, bool write);

/* First range whose end is above @addr (binary search), or n. */
static inline size_t map_search(const IoMap *map, uint64_t addr)
{
    size_t lo = 0, hi = map->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const IoEntry *r = &map->e[mid];
        if (r->base + r->len <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static inline bool valid_size(unsigned size)
{
    return size == 1 || size == 2 || size == 4 || size == 8;
}

/* Fixed-size copies (no memcpy call per exit); @size is valid_size(). */
static inline uint64_t load_sized(const void *p, unsigned size)
{
    uint8_t b;
    uint16_t h;
    uint32_t w;
    uint64_t d;

    switch (size) {
    case 1: memcpy(&b, p, 1); return b;
    case 2: memcpy(&h, p, 2); return h;
    case 4: memcpy(&w, p, 4); return w;
    default: memcpy(&d, p, 8); return d;
    }
}

static inline void store_sized(void *p, uint64_t v, unsigned size)
{
    uint8_t b = v;
    uint16_t h = v;
    uint32_t w = v;

    switch (size) {
    case 1: memcpy(p, &b, 1); break;
    case 2: memcpy(p, &h, 2); break;
    case 4: memcpy(p, &w, 4); break;
    default: memcpy(p, &v, 8); break;
    }
}

typedef struct Found {
    VmmIoOps ops;
    void *opaque;
    uint64_t base;
} Found;

/* Look up [addr, addr+size) and mark it current on @vcpu.  False: a hole. */
static VMM_ALWAYS_INLINE bool lookup(VmmVcpu *vcpu, bool pio, uint64_t addr, unsigned size, Found *f)
{
    KvmHot *hot = vcpu->hot;
    bool ok = false;
    IoMap *map;

    /* The vCPU thread registered with RCU when it started (lookups run
     * only there: exits and the coalesced flush), so no per-exit check. */
    urcu_memb_read_lock();
    /* Acquire (rcu_dereference, stronger): pairs with the release that
     * published the map. */
    map = vk_atomic_load_acquire(pio ? &hot->pio_map : &hot->mmio_map);
    if (map) {
        size_t pos = map_search(map, addr);
        if (pos < map->n) {
            const IoEntry *r = &map->e[pos];
            if (r->base <= addr && addr + size <= r->base + r->len && addr + size > addr) {
                f->ops = r->ops;
                f->opaque = r->opaque;
                f->base = r->base;
                vk_atomic_set(&vcpu->cur_range, r->id);
                ok = true;
            }
        }
    }
    vk_rcu_read_unlock();
    return ok;
}

static VMM_ALWAYS_INLINE void done(VmmVcpu *vcpu)
{
    /* Release pairs with the load-acquire in wait_range_idle(). */
    vk_atomic_store_release(&vcpu->cur_range, NULL);
}

static VMM_ALWAYS_INLINE uint64_t io_read(VmmVcpu *vcpu, bool pio, uint64_t addr, unsigned size)
{
    Found f;
    uint64_t v = ~0ULL;

    if (lookup(vcpu, pio, addr, size, &f)) {
        if (f.ops.read) {
            v = f.ops.read(f.opaque, addr - f.base, size);
        }
        done(vcpu);
    } else {
        kvm_io_unhandled(vcpu->vm, pio, addr, false);
    }
    return size < 8 ? v & ((1ULL << (size * 8)) - 1) : v;
}

static VMM_ALWAYS_INLINE void io_write(VmmVcpu *vcpu, bool pio, uint64_t addr, unsigned size, uint64_t v)
{
    Found f;

    if (lookup(vcpu, pio, addr, size, &f)) {
        if (f.ops.write) {
            f.ops.write(f.opaque, addr - f.base, v, size);
        }
        done(vcpu);
    } else {
        kvm_io_unhandled(vcpu->vm, pio, addr, true);
    }
}

static VMM_ALWAYS_INLINE void kvm_dispatch_pio(VmmVcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    unsigned size = run->io.size;
    uint64_t off = run->io.data_offset;
    uint32_t count = run->io.count;
    uint8_t *data;

    if (!valid_size(size) || size == 8 || off > vcpu->mmap_size ||
        (uint64_t)count * size > vcpu->mmap_size - off) {
        kvm_io_unhandled(vcpu->vm, true, run->io.port, run->io.direction == KVM_EXIT_IO_OUT);
        return;
    }
    data = (uint8_t *)run + off;
    for (uint32_t i = 0; i < count; i++, data += size) {
        if (run->io.direction == KVM_EXIT_IO_OUT) {
            io_write(vcpu, true, run->io.port, size, load_sized(data, size));
        } else {
            store_sized(data, io_read(vcpu, true, run->io.port, size), size);
        }
    }
}

static VMM_ALWAYS_INLINE void kvm_dispatch_mmio(VmmVcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    unsigned len = run->mmio.len;

    if (!valid_size(len)) {
        kvm_io_unhandled(vcpu->vm, false, run->mmio.phys_addr, run->mmio.is_write);
        if (!run->mmio.is_write) {
            memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
        }
        return;
    }
    if (run->mmio.is_write) {
        io_write(vcpu, false, run->mmio.phys_addr, len, load_sized(run->mmio.data, len));
    } else {
        store_sized(run->mmio.data, io_read(vcpu, false, run->mmio.phys_addr, len), len);
    }
}

#endif
