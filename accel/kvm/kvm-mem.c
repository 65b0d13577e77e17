/* SPDX-License-Identifier: MIT */
/*
 * Memory slots and dirty logging.
 *
 * Updates are serialised by mem_lock (main loop).  KVM cannot resize or
 * split a slot in place, so an update whose added ranges overlap removed
 * ones is applied with the accel gate inhibited: deletes, then adds, while
 * no vCPU is in KVM_RUN; a guest never sees the range missing.
 *
 * Dirty logging: with the dirty ring (KVM_CAP_DIRTY_LOG_RING[_ACQ_REL])
 * every vCPU has a ring of {slot, offset} entries; harvesting reads an
 * entry's flags with load-acquire (pairs with KVM's store-release when it
 * publishes the entry), records the page in the slot's bitmap and hands
 * the entry back with a store-release of RESET (pairs with KVM's read in
 * KVM_RESET_DIRTY_RINGS); then KVM_RESET_DIRTY_RINGS re-protects the
 * pages.  Without the ring: KVM_GET_DIRTY_LOG per slot.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/kvm/kvm-internal.h"
#include "util/atomic.h"
#include "util/log.h"

static uint64_t npages(const KvmSlot *s)
{
    return s->size / KVM_PAGE_SIZE;
}

static size_t bitmap_bytes(const KvmSlot *s)
{
    return (npages(s) + 63) / 64 * 8;
}

static int slot_ioctl(VmmVm *vm, const KvmSlot *s, bool del)
{
    struct kvm_userspace_memory_region r = {
        .slot = s->id,
        .flags = (s->flags & VMM_SLOT_READONLY ? KVM_MEM_READONLY : 0) |
                 (s->flags & VMM_SLOT_LOG_DIRTY ? KVM_MEM_LOG_DIRTY_PAGES : 0),
        .guest_phys_addr = s->gpa,
        .memory_size = del ? 0 : s->size,
        .userspace_addr = (uintptr_t)s->host,
    };
    return kvm_vm_ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
}

static KvmSlot *find_slot(VmmVm *vm, uint64_t gpa) VMM_REQUIRES(vm->mem_lock)
{
    for (uint32_t i = 0; i < vm->max_slots; i++) {
        if (vm->slots[i].used && vm->slots[i].gpa == gpa) {
            return &vm->slots[i];
        }
    }
    return NULL;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static int validate(VmmVm *vm, const VmmMemSlotDesc *d)
{
    if (d->size == 0 || d->gpa % KVM_PAGE_SIZE || d->size % KVM_PAGE_SIZE ||
        (uintptr_t)d->host % KVM_PAGE_SIZE || !d->host || d->gpa + d->size < d->gpa ||
        (d->flags & ~(VMM_SLOT_READONLY | VMM_SLOT_LOG_DIRTY))) {
        return -EINVAL;
    }
    if ((d->flags & VMM_SLOT_READONLY) &&
        kvm_sys_ioctl(vm, KVM_CHECK_EXTENSION, (void *)KVM_CAP_READONLY_MEM) <= 0) {
        vk_error("kvm: read-only slots need KVM_CAP_READONLY_MEM");
        return -EOPNOTSUPP;
    }
    return 0;
}

static KvmSlot *alloc_slot(VmmVm *vm, bool *taken) VMM_REQUIRES(vm->mem_lock)
{
    for (uint32_t i = 0; i < vm->max_slots; i++) {
        if (!vm->slots[i].used && !taken[i]) {
            taken[i] = true;
            vm->slots[i].id = i;
            return &vm->slots[i];
        }
    }
    return NULL;
}

static int slot_fill(KvmSlot *s, const VmmMemSlotDesc *d, bool ring)
{
    s->gpa = d->gpa;
    s->size = d->size;
    s->host = d->host;
    s->flags = d->flags;
    free(s->dirty);
    s->dirty = NULL;
    if (ring && (d->flags & VMM_SLOT_LOG_DIRTY)) {
        s->dirty = calloc(1, bitmap_bytes(s));
        if (!s->dirty) {
            return -ENOMEM;
        }
    }
    return 0;
}

/* Check an update against the current slots; sets *inhibit if an added
 * range overlaps a removed one. */
static int check_update(VmmVm *vm, KvmSlot **dels, const VmmMemSlotDesc *del, size_t ndel,
                        const VmmMemSlotDesc *add, size_t nadd, bool *inhibit)
    VMM_REQUIRES(vm->mem_lock)
{
    int r;

    for (size_t i = 0; i < ndel; i++) {
        dels[i] = find_slot(vm, del[i].gpa);
        if (!dels[i]) {
            return -ENOENT;
        }
        for (size_t j = 0; j < i; j++) {
            if (dels[j] == dels[i]) {
                return -EINVAL;
            }
        }
    }
    for (size_t i = 0; i < nadd; i++) {
        if ((r = validate(vm, &add[i])) < 0) {
            return r;
        }
        for (size_t j = 0; j < i; j++) {
            if (ranges_overlap(add[i].gpa, add[i].size, add[j].gpa, add[j].size)) {
                return -EEXIST;
            }
        }
        for (uint32_t s = 0; s < vm->max_slots; s++) {
            const KvmSlot *k = &vm->slots[s];
            bool deleted = false;
            if (!k->used || !ranges_overlap(add[i].gpa, add[i].size, k->gpa, k->size)) {
                continue;
            }
            for (size_t j = 0; j < ndel; j++) {
                deleted |= dels[j] == k;
            }
            if (!deleted) {
                return -EEXIST;
            }
            *inhibit = true;
        }
    }
    return 0;
}

/* Apply deletes then adds; on failure restore what was there. */
static int apply_update(VmmVm *vm, KvmSlot **dels, size_t ndel,
                        const VmmMemSlotDesc *add, size_t nadd) VMM_REQUIRES(vm->mem_lock)
{
    bool taken[KVM_MAX_SLOTS_VMM] = { false };
    KvmSlot *added[KVM_MAX_SLOTS_VMM];
    size_t nd = 0, na = 0;
    int r = 0;

    for (; nd < ndel; nd++) {
        if ((r = slot_ioctl(vm, dels[nd], true)) < 0) {
            goto undo;
        }
        dels[nd]->used = false;
        taken[dels[nd]->id] = true;     /* keep it for the undo */
    }
    for (; na < nadd; na++) {
        KvmSlot *s = alloc_slot(vm, taken);
        if (!s) {
            r = -ENOSPC;
            goto undo;
        }
        if ((r = slot_fill(s, &add[na], vm->dirty_ring_entries != 0)) < 0 ||
            (r = slot_ioctl(vm, s, false)) < 0) {
            goto undo;
        }
        s->used = true;
        added[na] = s;
    }
    return 0;
undo:
    vk_warn("kvm: memory update failed (%s), restoring the old layout", strerror(-r));
    while (na > 0) {
        KvmSlot *s = added[--na];
        slot_ioctl(vm, s, true);
        s->used = false;
    }
    while (nd > 0) {
        KvmSlot *s = dels[--nd];
        if (slot_ioctl(vm, s, false) == 0) {
            s->used = true;
        }
    }
    return r;
}

int vmm_vm_update_memory(VmmVm *vm, const VmmMemSlotDesc *del, size_t ndel,
                         const VmmMemSlotDesc *add, size_t nadd)
{
    KvmSlot *dels[KVM_MAX_SLOTS_VMM];
    bool inhibit = false;
    int r;

    if (!vm || (ndel && !del) || (nadd && !add) || ndel > KVM_MAX_SLOTS_VMM ||
        nadd > KVM_MAX_SLOTS_VMM) {
        return -EINVAL;
    }
    vk_mutex_lock(&vm->mem_lock);
    r = check_update(vm, dels, del, ndel, add, nadd, &inhibit);
    if (r == 0) {
        if (inhibit) {
            vmm_accel_ioctl_inhibit_begin(vm->gate);
            r = apply_update(vm, dels, ndel, add, nadd);
            vmm_accel_ioctl_inhibit_end(vm->gate);
        } else {
            r = apply_update(vm, dels, ndel, add, nadd);
        }
    }
    vk_mutex_unlock(&vm->mem_lock);
    return r;
}

int vmm_vm_map_memory(VmmVm *vm, uint64_t gpa, uint64_t size, void *host, uint32_t flags)
{
    VmmMemSlotDesc d = { gpa, size, host, flags };
    return vmm_vm_update_memory(vm, NULL, 0, &d, 1);
}

int vmm_vm_unmap_memory(VmmVm *vm, uint64_t gpa)
{
    VmmMemSlotDesc d = { .gpa = gpa };
    return vmm_vm_update_memory(vm, &d, 1, NULL, 0);
}

static int get_slot_desc(VmmVm *vm, uint64_t gpa, VmmMemSlotDesc *d)
{
    KvmSlot *s;

    vk_mutex_lock(&vm->mem_lock);
    s = find_slot(vm, gpa);
    if (s) {
        *d = (VmmMemSlotDesc){ s->gpa, s->size, s->host, s->flags };
    }
    vk_mutex_unlock(&vm->mem_lock);
    return s ? 0 : -ENOENT;
}

int vmm_vm_resize_memory(VmmVm *vm, uint64_t gpa, uint64_t new_size)
{
    VmmMemSlotDesc old, nw;
    int r;

    if (!vm) {
        return -EINVAL;
    }
    if ((r = get_slot_desc(vm, gpa, &old)) < 0) {
        return r;
    }
    nw = old;
    nw.size = new_size;
    return vmm_vm_update_memory(vm, &old, 1, &nw, 1);
}

int vmm_vm_set_memory_flags(VmmVm *vm, uint64_t gpa, uint32_t flags)
{
    VmmMemSlotDesc old, nw;
    KvmSlot *s;
    int r;

    if (!vm || (flags & ~(VMM_SLOT_READONLY | VMM_SLOT_LOG_DIRTY))) {
        return -EINVAL;
    }
    if ((r = get_slot_desc(vm, gpa, &old)) < 0) {
        return r;
    }
    nw = old;
    nw.flags = flags;
    if ((old.flags ^ flags) & VMM_SLOT_READONLY) {
        /* KVM cannot flip READONLY in place: delete + add, atomically. */
        return vmm_vm_update_memory(vm, &old, 1, &nw, 1);
    }
    vk_mutex_lock(&vm->mem_lock);
    s = find_slot(vm, gpa);
    r = s ? 0 : -ENOENT;
    if (s && s->flags != flags) {
        uint32_t keep = s->flags;
        uint64_t *bm = s->dirty;
        s->dirty = NULL;
        r = slot_fill(s, &nw, vm->dirty_ring_entries != 0);
        if (r == 0) {
            r = slot_ioctl(vm, s, false);   /* KVM changes LOG_DIRTY in place */
        }
        if (r < 0) {
            free(s->dirty);
            s->flags = keep;
            s->dirty = bm;
        } else {
            free(bm);
        }
    }
    vk_mutex_unlock(&vm->mem_lock);
    return r;
}

void kvm_mem_destroy(VmmVm *vm)
{
    for (uint32_t i = 0; i < KVM_MAX_SLOTS_VMM; i++) {
        free(vm->slots[i].dirty);
        vm->slots[i].dirty = NULL;
    }
}

/* ---- dirty logging ------------------------------------------------------ */

bool vmm_vm_dirty_ring_enabled(VmmVm *vm)
{
    return vm && vm->dirty_ring_entries != 0;
}

static KvmSlot *slot_by_id(VmmVm *vm, uint32_t id) VMM_REQUIRES(vm->mem_lock)
{
    if (id >= vm->max_slots || !vm->slots[id].used) {
        return NULL;
    }
    return &vm->slots[id];
}

/* Harvest @vcpu's ring into the slots' bitmaps.  Returns entries taken. */
static int harvest_locked(VmmVm *vm, VmmVcpu *vcpu) VMM_REQUIRES(vm->mem_lock)
{
    uint32_t n = vm->dirty_ring_entries;
    int count = 0;

    if (!vcpu->gfns) {
        return 0;
    }
    for (;;) {
        struct kvm_dirty_gfn *g = &vcpu->gfns[vcpu->gfn_fetch & (n - 1)];
        /* Acquire pairs with KVM's release when it publishes the entry. */
        uint32_t flags = vk_atomic_load_acquire(&g->flags);
        if (!(flags & KVM_DIRTY_GFN_F_DIRTY)) {
            break;
        }
        KvmSlot *s = (g->slot >> 16) == 0 ? slot_by_id(vm, g->slot & 0xffff) : NULL;
        if (s && s->dirty && g->offset < npages(s)) {
            s->dirty[g->offset / 64] |= 1ULL << (g->offset % 64);
        }
        /* Release pairs with KVM's read in KVM_RESET_DIRTY_RINGS. */
        vk_atomic_store_release(&g->flags, KVM_DIRTY_GFN_F_RESET);
        vcpu->gfn_fetch++;
        count++;
    }
    return count;
}

int kvm_dirty_ring_harvest(VmmVcpu *vcpu)
{
    VmmVm *vm = vcpu->vm;
    int r;

    vk_mutex_lock(&vm->mem_lock);
    harvest_locked(vm, vcpu);
    r = kvm_vm_ioctl(vm, KVM_RESET_DIRTY_RINGS, NULL);
    vk_mutex_unlock(&vm->mem_lock);
    return r < 0 ? r : 0;
}

static int noop_work(VmmVcpu *vcpu, void *opaque)
{
    (void)vcpu;
    (void)opaque;
    return 0;
}

static int ring_get_log(VmmVm *vm, uint64_t gpa, uint64_t *bitmap, size_t bytes)
{
    unsigned nv = vk_atomic_load_acquire(&vm->nr_vcpus);
    KvmSlot *s;
    int r = 0;

    /* Get every vCPU out of KVM_RUN once, so that hardware buffers (PML)
     * are flushed into the rings.  Not under mem_lock: a vCPU may be
     * harvesting its full ring under it. */
    for (unsigned i = 0; i < nv; i++) {
        vmm_vcpu_run_on(vm->vcpus[i], noop_work, NULL);
    }
    vk_mutex_lock(&vm->mem_lock);
    s = find_slot(vm, gpa);
    if (!s || !s->dirty) {
        r = s ? -EINVAL : -ENOENT;
    } else if (bytes < bitmap_bytes(s)) {
        r = -ENOSPC;
    } else {
        for (unsigned i = 0; i < nv; i++) {
            harvest_locked(vm, vm->vcpus[i]);
        }
        r = kvm_vm_ioctl(vm, KVM_RESET_DIRTY_RINGS, NULL);
        memcpy(bitmap, s->dirty, bitmap_bytes(s));
        memset(s->dirty, 0, bitmap_bytes(s));
        r = r < 0 ? r : 0;
    }
    vk_mutex_unlock(&vm->mem_lock);
    return r;
}

int vmm_vm_get_dirty_log(VmmVm *vm, uint64_t gpa, uint64_t *bitmap, size_t bitmap_bytes_)
{
    struct kvm_dirty_log log = { 0 };
    KvmSlot *s;
    int r;

    if (!vm || !bitmap) {
        return -EINVAL;
    }
    if (vm->dirty_ring_entries) {
        return ring_get_log(vm, gpa, bitmap, bitmap_bytes_);
    }
    vk_mutex_lock(&vm->mem_lock);
    s = find_slot(vm, gpa);
    if (!s || !(s->flags & VMM_SLOT_LOG_DIRTY)) {
        r = s ? -EINVAL : -ENOENT;
    } else if (bitmap_bytes_ < bitmap_bytes(s)) {
        r = -ENOSPC;
    } else {
        memset(bitmap, 0, bitmap_bytes(s));
        log.slot = s->id;
        log.dirty_bitmap = bitmap;
        r = kvm_vm_ioctl(vm, KVM_GET_DIRTY_LOG, &log);
        r = r < 0 ? r : 0;
    }
    vk_mutex_unlock(&vm->mem_lock);
    return r;
}
