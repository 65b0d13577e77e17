/* SPDX-License-Identifier: MIT */
/*
 * PIO and MMIO address maps, dispatched through RCU (liburcu memb), and
 * the coalesced MMIO/PIO ring.
 *
 * A map is a sorted array of immutable ranges, replaced as a whole (copy,
 * change, publish with rcu_assign_pointer, free the old array after a grace
 * period).  A vCPU looks its range up inside a read-side section, copies
 * the callbacks, records the range in vcpu->cur_range (store inside the
 * section), leaves the section and only then calls the device: callbacks
 * never run inside RCU, so they may unregister ranges (synchronize_rcu) or
 * block.  Unregister: unpublish, synchronize_rcu (every vCPU that found the
 * range has set cur_range by now), then wait until no other vCPU's
 * cur_range is the range (load-acquire; pairs with the store-release that
 * clears it after the callback returns).  The range is never dereferenced
 * after the callback, so it can be freed even while the unregistering
 * vCPU is itself inside one of its callbacks.
 */
/* The inline read-side fast path of liburcu (no library call per exit);
 * not under ThreadSanitizer, which must not see liburcu's uninstrumented
 * internals (tests/tsan.supp suppresses them only inside the library). */
#include "util/urcu-lgpl.h"   /* first: before any liburcu header */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accel/kvm/kvm-internal.h"
#include "accel/kvm/kvm-dispatch.h"
#include "util/atomic.h"
#include "util/log.h"

/* After the gate exists. */
void kvm_io_init(VmmVm *vm)
{
    _Static_assert(sizeof(KvmHot) <= VMM_ACCEL_GATE_USER_SIZE, "fits the gate page");
    vm->hot = accel_gate_user_area(vm->gate);    /* zeroed: no maps yet */
}

static void map_free_rcu(struct rcu_head *head)
{
    vk_rcu_tsan_acquire();
    free(vk_container_of(head, IoMap, rcu));
}

void kvm_io_destroy(VmmVm *vm)
{
    IoMap *maps[2] = { vm->hot->pio_map, vm->hot->mmio_map };

    for (int m = 0; m < 2; m++) {
        if (!maps[m]) {
            continue;
        }
        for (size_t i = 0; i < maps[m]->n; i++) {
            free(maps[m]->e[i].id);
        }
        free(maps[m]);
    }
    vm->hot->pio_map = vm->hot->mmio_map = NULL;
}

static IoMap *map_copy(const IoMap *old, size_t extra)
{
    size_t n = old ? old->n : 0;
    IoMap *m = calloc(1, sizeof(*m) + (n + extra) * sizeof(IoEntry));

    if (m && old) {
        memcpy(m->e, old->e, n * sizeof(IoEntry));
        m->n = n;
    }
    return m;
}

static IoMap **map_slot(VmmVm *vm, bool pio)
{
    return pio ? &vm->hot->pio_map : &vm->hot->mmio_map;
}

int vmm_vm_register_io(VmmVm *vm, bool pio, uint64_t base, uint64_t len,
                       const VmmIoOps *ops, void *opaque)
{
    IoMap *old, *m;
    IoRange *r;
    size_t pos;

    if (!vm || !ops || len == 0 || base + len < base || (pio && base + len > 0x10000)) {
        return -EINVAL;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        return -ENOMEM;
    }
    r->base = base;
    r->len = len;
    r->ops = *ops;
    r->opaque = opaque;
    vk_mutex_lock(&vm->io_lock);
    old = *map_slot(vm, pio);
    pos = old ? map_search(old, base) : 0;
    if (old && pos < old->n && old->e[pos].base < base + len) {
        vk_mutex_unlock(&vm->io_lock);
        free(r);
        return -EEXIST;
    }
    m = map_copy(old, 1);
    if (!m) {
        vk_mutex_unlock(&vm->io_lock);
        free(r);
        return -ENOMEM;
    }
    memmove(&m->e[pos + 1], &m->e[pos], (m->n - pos) * sizeof(IoEntry));
    m->e[pos] = (IoEntry){ .base = base, .len = len, .ops = *ops, .opaque = opaque, .id = r };
    m->n++;
    /* Publish (rcu_assign_pointer as a C11 release store, which TSan
     * understands): pairs with the load-acquire in lookup(). */
    vk_atomic_store_release(map_slot(vm, pio), m);
    vk_mutex_unlock(&vm->io_lock);
    if (old) {
        vk_rcu_tsan_release();     /* the writer's side of the TSan edge */
        vk_rcu_call(&old->rcu, map_free_rcu);
    }
    return 0;
}

static void wait_range_idle(VmmVm *vm, const IoRange *r)
{
    VmmVcpu *self = vmm_vcpu_current();
    unsigned n = vk_atomic_load_acquire(&vm->nr_vcpus);

    for (unsigned i = 0; i < n; i++) {
        VmmVcpu *v = vm->vcpus[i];
        int spins = 0;
        if (v == self) {
            continue;
        }
        /* Acquire pairs with the store-release after the callback. */
        while (vk_atomic_load_acquire(&v->cur_range) == r) {
            if (++spins < 100) {
                sched_yield();
            } else {
                struct timespec ts = { 0, 50000 };
                nanosleep(&ts, NULL);
            }
        }
    }
}

int vmm_vm_unregister_io(VmmVm *vm, bool pio, uint64_t base)
{
    IoMap *old, *m;
    IoRange *r;
    size_t pos;

    if (!vm) {
        return -EINVAL;
    }
    vk_mutex_lock(&vm->io_lock);
    old = *map_slot(vm, pio);
    pos = old ? map_search(old, base) : 0;
    if (!old || pos >= old->n || old->e[pos].base != base) {
        vk_mutex_unlock(&vm->io_lock);
        return -ENOENT;
    }
    r = old->e[pos].id;
    m = map_copy(old, 0);
    if (!m) {
        vk_mutex_unlock(&vm->io_lock);
        return -ENOMEM;
    }
    memmove(&m->e[pos], &m->e[pos + 1], (m->n - pos - 1) * sizeof(IoEntry));
    m->n--;
    vk_atomic_store_release(map_slot(vm, pio), m);  /* pairs with lookup() */
    vk_mutex_unlock(&vm->io_lock);
    /* Every vCPU that found @r in the old map has published cur_range. */
    urcu_memb_synchronize_rcu();
    vk_rcu_tsan_acquire();
    wait_range_idle(vm, r);
    free(r);
    free(old);      /* no reader can hold it after the grace period */
    return 0;
}

uint64_t vmm_vm_unhandled_io(VmmVm *vm)
{
    return vm ? vk_atomic_read(&vm->unhandled_io) : 0;
}

/* ---- dispatch ------------------------------------------------------------ */

void kvm_io_unhandled(VmmVm *vm, bool pio, uint64_t addr, bool write)
{
    uint64_t n = vk_atomic_fetch_add(&vm->unhandled_io, 1);

    if (n < 8) {    /* a guest may hammer a hole: say it a few times only */
        vk_debug("kvm: guest %s unhandled %s 0x%llx", write ? "write to" : "read of",
                  pio ? "port" : "MMIO address", (unsigned long long)addr);
    }
}

/* ---- coalesced MMIO / PIO ------------------------------------------------ */

static __thread bool flushing VMM_TLS_IE;

VMM_HOT void kvm_flush_coalesced(VmmVcpu *self)
{
    VmmVm *vm = self->vm;
    struct kvm_coalesced_mmio_ring *ring = vm->coalesced;
    const uint32_t max = (KVM_PAGE_SIZE - sizeof(*ring)) / sizeof(ring->coalesced_mmio[0]);

    /* The run loop calls this only once a zone was registered. */
    if (!ring || flushing) {
        return;
    }
    /* Acquire pairs with the kernel's release of last after the entry. */
    if (vk_atomic_read(&ring->first) ==
        vk_atomic_load_acquire(&ring->last)) {
        return;
    }
    flushing = true;
    vk_mutex_lock(&vm->coalesced_lock);
    for (;;) {
        uint32_t first = vk_atomic_read(&ring->first);
        if (first == vk_atomic_load_acquire(&ring->last) || first >= max) {
            break;
        }
        struct kvm_coalesced_mmio ent = ring->coalesced_mmio[first];
        if (valid_size(ent.len)) {
            io_write(self, ent.pio == 1, ent.phys_addr, ent.len,
                     load_sized(ent.data, ent.len));
        }
        /* Release: the entry is consumed before the kernel may reuse it. */
        vk_atomic_store_release(&ring->first, (first + 1) % max);
    }
    vk_mutex_unlock(&vm->coalesced_lock);
    flushing = false;
}

static int coalesced(VmmVm *vm, bool pio, uint64_t base, uint32_t len, bool add)
{
    struct kvm_coalesced_mmio_zone z = { .addr = base, .size = len, .pio = pio };

    if (!vm || len == 0) {
        return -EINVAL;
    }
    if (!vm->coalesced_page) {
        return -EOPNOTSUPP;
    }
    if (add) {
        vk_atomic_set(&vm->hot->coalesced_used, true);
    }
    return kvm_vm_ioctl(vm, add ? KVM_REGISTER_COALESCED_MMIO : KVM_UNREGISTER_COALESCED_MMIO,
                        &z);
}

int vmm_vm_add_coalesced_io(VmmVm *vm, bool pio, uint64_t base, uint32_t len)
{
    return coalesced(vm, pio, base, len, true);
}

int vmm_vm_del_coalesced_io(VmmVm *vm, bool pio, uint64_t base, uint32_t len)
{
    return coalesced(vm, pio, base, len, false);
}
