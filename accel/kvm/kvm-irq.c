/* SPDX-License-Identifier: MIT */
/*
 * Interrupts: the in-kernel irqchip and PIT, IRQ lines, MSI (direct and
 * through GSI routes), irqfd and ioeventfd.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so we keep it: the
 * irqchip's default pin routes (as the kernel sets them up: GSI 0-15 to
 * the PIC and the IOAPIC, 16-23 to the IOAPIC) plus our MSI routes.
 *
 * Threads: the route table is changed from any thread, vCPU threads
 * included (a guest's MSI-X table write updates the route behind its
 * irqfd from the vCPU thread that trapped it).  route_lock serialises the
 * edit of our copy and its commit, so the kernel's table is always the
 * last copy committed; the commit is a VM ioctl bracketed by the accel
 * gate, so it waits while the main loop inhibits the gate (and a vCPU
 * thread making it is outside KVM_RUN, so the inhibitor never waits for
 * it).  Lock order: route_lock, then the gate (shared).  Hence the one
 * rule: a thread that inhibits the gate must not change routes meanwhile.
 * irqfd and ioeventfd (de)assignment are single ioctls the kernel
 * serialises itself: any thread too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/kvm/kvm-internal.h"
#include "util/atomic.h"
#include "util/log.h"

#define IOAPIC_PINS 24

static void route_pin(struct kvm_irq_routing_entry *e, uint32_t gsi, uint32_t chip,
                      uint32_t pin)
{
    memset(e, 0, sizeof(*e));
    e->gsi = gsi;
    e->type = KVM_IRQ_ROUTING_IRQCHIP;
    e->u.irqchip.irqchip = chip;
    e->u.irqchip.pin = pin;
}

int kvm_irq_routing_init(VmmVm *vm)
{
    uint32_t n = 0;
    struct kvm_irq_routing_entry *t = calloc(KVM_MAX_ROUTES_VMM, sizeof(*t));

    if (!t) {
        return -ENOMEM;
    }
    /* Before any vCPU exists (vmm_vm_create_irqchip): published to the
     * threads that use it by their creation. */
    vm->routes = t;
    vk_mutex_lock(&vm->route_lock);
    for (uint32_t gsi = 0; gsi < IOAPIC_PINS; gsi++) {
        if (gsi < 16) {
            route_pin(&vm->routes[n++], gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
                                                     : KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
        }
        route_pin(&vm->routes[n++], gsi, KVM_IRQCHIP_IOAPIC, gsi);
        vm->gsi_used[gsi / 64] |= 1ULL << (gsi % 64);
    }
    vm->nr_routes = n;
    vk_mutex_unlock(&vm->route_lock);
    return 0;
}

static int commit_routes(VmmVm *vm) VMM_REQUIRES(vm->route_lock)
{
    struct kvm_irq_routing *t;
    int r;

    t = calloc(1, sizeof(*t) + vm->nr_routes * sizeof(t->entries[0]));
    if (!t) {
        return -ENOMEM;
    }
    t->nr = vm->nr_routes;
    memcpy(t->entries, vm->routes, vm->nr_routes * sizeof(t->entries[0]));
    r = kvm_vm_ioctl(vm, KVM_SET_GSI_ROUTING, t);
    free(t);
    return r < 0 ? r : 0;
}

int vmm_vm_create_irqchip(VmmVm *vm, bool with_pit)
{
    int r;

    if (!vm) {
        return -EINVAL;
    }
    if (vm->has_irqchip) {
        return -EEXIST;
    }
    if (vmm_vm_nr_vcpus(vm)) {
        return VMM_MISUSE_ERR(-EBUSY, "irqchip created after vCPUs");
    }
    if (kvm_sys_ioctl(vm, KVM_CHECK_EXTENSION, (void *)KVM_CAP_IRQCHIP) <= 0) {
        vk_error("kvm: the kernel lacks KVM_CAP_IRQCHIP");
        return -EOPNOTSUPP;
    }
    r = kvm_vm_ioctl(vm, KVM_CREATE_IRQCHIP, NULL);
    if (r < 0) {
        return r;
    }
    vm->has_irqchip = true;
    if (vm->has_routing && (r = kvm_irq_routing_init(vm)) < 0) {
        return r;
    }
    if (with_pit) {
        struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
        if (kvm_sys_ioctl(vm, KVM_CHECK_EXTENSION, (void *)KVM_CAP_PIT2) <= 0) {
            vk_error("kvm: the kernel lacks KVM_CAP_PIT2");
            return -EOPNOTSUPP;
        }
        r = kvm_vm_ioctl(vm, KVM_CREATE_PIT2, &pit);
        if (r < 0) {
            return r;
        }
        vm->has_pit = true;
    }
    return 0;
}

int vmm_vm_set_irq(VmmVm *vm, uint32_t gsi, bool level)
{
    struct kvm_irq_level l = { .irq = gsi, .level = level };

    if (!vm) {
        return -EINVAL;
    }
    if (!vm->has_irqchip) {
        return -ENODEV;
    }
    int r = kvm_vm_ioctl(vm, KVM_IRQ_LINE, &l);
    return r < 0 ? r : 0;
}

int vmm_vm_signal_msi(VmmVm *vm, uint64_t address, uint32_t data)
{
    struct kvm_msi msi = {
        .address_lo = (uint32_t)address, .address_hi = (uint32_t)(address >> 32),
        .data = data,
    };
    int r;

    if (!vm) {
        return -EINVAL;
    }
    if (!vm->has_msi || !vm->has_irqchip) {
        return -ENODEV;
    }
    r = kvm_vm_ioctl(vm, KVM_SIGNAL_MSI, &msi);
    /* > 0 delivered, 0 blocked by the guest (masked): both are fine. */
    return r < 0 ? r : 0;
}

static void route_msi(struct kvm_irq_routing_entry *e, uint32_t gsi, uint64_t addr,
                      uint32_t data)
{
    memset(e, 0, sizeof(*e));
    e->gsi = gsi;
    e->type = KVM_IRQ_ROUTING_MSI;
    e->u.msi.address_lo = (uint32_t)addr;
    e->u.msi.address_hi = (uint32_t)(addr >> 32);
    e->u.msi.data = data;
}

static int find_route(VmmVm *vm, int gsi) VMM_REQUIRES(vm->route_lock)
{
    for (uint32_t i = 0; i < vm->nr_routes; i++) {
        if ((int)vm->routes[i].gsi == gsi && vm->routes[i].type == KVM_IRQ_ROUTING_MSI) {
            return (int)i;
        }
    }
    return -1;
}

int vmm_vm_add_msi_route(VmmVm *vm, uint64_t address, uint32_t data)
{
    int gsi = -ENOSPC, r;

    if (!vm) {
        return -EINVAL;
    }
    if (!vm->routes) {
        return -ENODEV;     /* no irqchip or no KVM_CAP_IRQ_ROUTING */
    }
    vk_mutex_lock(&vm->route_lock);
    if (vm->nr_routes < KVM_MAX_ROUTES_VMM) {
        for (int g = IOAPIC_PINS; g < KVM_MAX_ROUTES_VMM; g++) {
            if (!(vm->gsi_used[g / 64] & (1ULL << (g % 64)))) {
                gsi = g;
                break;
            }
        }
    }
    if (gsi >= 0) {
        route_msi(&vm->routes[vm->nr_routes++], gsi, address, data);
        r = commit_routes(vm);
        if (r < 0) {
            vm->nr_routes--;
            gsi = r;
        } else {
            vm->gsi_used[gsi / 64] |= 1ULL << (gsi % 64);
        }
    }
    vk_mutex_unlock(&vm->route_lock);
    return gsi;
}

int vmm_vm_update_msi_route(VmmVm *vm, int gsi, uint64_t address, uint32_t data)
{
    struct kvm_irq_routing_entry keep;
    int i, r;

    if (!vm || !vm->routes) {
        return vm ? -ENODEV : -EINVAL;
    }
    vk_mutex_lock(&vm->route_lock);
    i = find_route(vm, gsi);
    if (i < 0) {
        r = -ENOENT;
    } else if (vm->routes[i].u.msi.address_lo == (uint32_t)address &&
               vm->routes[i].u.msi.address_hi == (uint32_t)(address >> 32) &&
               vm->routes[i].u.msi.data == data) {
        r = 0;                      /* unchanged: no commit */
    } else {
        keep = vm->routes[i];
        route_msi(&vm->routes[i], gsi, address, data);
        r = commit_routes(vm);
        if (r < 0) {
            vm->routes[i] = keep;
        }
    }
    vk_mutex_unlock(&vm->route_lock);
    return r;
}

int vmm_vm_remove_msi_route(VmmVm *vm, int gsi)
{
    struct kvm_irq_routing_entry keep;
    int i, r;

    if (!vm || !vm->routes) {
        return vm ? -ENODEV : -EINVAL;
    }
    vk_mutex_lock(&vm->route_lock);
    i = find_route(vm, gsi);
    if (i < 0) {
        r = -ENOENT;
    } else {
        keep = vm->routes[i];
        vm->routes[i] = vm->routes[--vm->nr_routes];
        r = commit_routes(vm);
        if (r < 0) {
            vm->routes[vm->nr_routes++] = vm->routes[i];
            vm->routes[i] = keep;
        } else {
            vm->gsi_used[gsi / 64] &= ~(1ULL << (gsi % 64));
        }
    }
    vk_mutex_unlock(&vm->route_lock);
    return r;
}

int vmm_vm_add_irqfd(VmmVm *vm, int fd, uint32_t gsi, int resample_fd)
{
    struct kvm_irqfd irqfd = { .fd = fd, .gsi = gsi };

    if (!vm || fd < 0) {
        return -EINVAL;
    }
    if (!vm->has_irqchip) {
        return -ENODEV;
    }
    if (resample_fd >= 0) {
        irqfd.flags = KVM_IRQFD_FLAG_RESAMPLE;
        irqfd.resamplefd = resample_fd;
    }
    return kvm_vm_ioctl(vm, KVM_IRQFD, &irqfd);
}

int vmm_vm_remove_irqfd(VmmVm *vm, int fd, uint32_t gsi)
{
    struct kvm_irqfd irqfd = { .fd = fd, .gsi = gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN };

    if (!vm || fd < 0) {
        return -EINVAL;
    }
    return kvm_vm_ioctl(vm, KVM_IRQFD, &irqfd);
}

static int ioeventfd(VmmVm *vm, int fd, uint64_t addr, uint32_t len, uint32_t flags,
                     uint64_t data, bool deassign)
{
    bool pio = flags & VMM_IOEVENTFD_PIO, datamatch = flags & VMM_IOEVENTFD_DATAMATCH;
    struct kvm_ioeventfd e = {
        .datamatch = datamatch ? data : 0, .addr = addr, .len = len, .fd = fd,
    };

    if (!vm || fd < 0 || (flags & ~(VMM_IOEVENTFD_PIO | VMM_IOEVENTFD_DATAMATCH)) ||
        (len != 0 && len != 1 && len != 2 && len != 4 && len != 8) ||
        (pio && (len == 0 || addr + len > 0x10000)) || (datamatch && len == 0)) {
        return -EINVAL;
    }
    e.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
              (datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
              (deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0);
    return kvm_vm_ioctl(vm, KVM_IOEVENTFD, &e);
}

int vmm_vm_add_ioeventfd(VmmVm *vm, int fd, uint64_t addr, uint32_t len, uint32_t flags,
                         uint64_t data)
{
    return ioeventfd(vm, fd, addr, len, flags, data, false);
}

int vmm_vm_remove_ioeventfd(VmmVm *vm, int fd, uint64_t addr, uint32_t len, uint32_t flags,
                            uint64_t data)
{
    return ioeventfd(vm, fd, addr, len, flags, data, true);
}

/* ---- AioContext event notifiers ----------------------------------------- */

static int notifier_fd(VmmEventNotifier *n)
{
    return n ? vmm_event_notifier_fd(n) : -EINVAL;
}

int vmm_vm_add_irqfd_notifier(VmmVm *vm, VmmEventNotifier *n, uint32_t gsi)
{
    int fd = notifier_fd(n);
    return fd < 0 ? fd : vmm_vm_add_irqfd(vm, fd, gsi, -1);
}

int vmm_vm_remove_irqfd_notifier(VmmVm *vm, VmmEventNotifier *n, uint32_t gsi)
{
    int fd = notifier_fd(n);
    return fd < 0 ? fd : vmm_vm_remove_irqfd(vm, fd, gsi);
}

int vmm_vm_add_ioeventfd_notifier(VmmVm *vm, VmmEventNotifier *n, uint64_t addr,
                                  uint32_t len, uint32_t flags, uint64_t data)
{
    int fd = notifier_fd(n);
    return fd < 0 ? fd : ioeventfd(vm, fd, addr, len, flags, data, false);
}

int vmm_vm_remove_ioeventfd_notifier(VmmVm *vm, VmmEventNotifier *n, uint64_t addr,
                                     uint32_t len, uint32_t flags, uint64_t data)
{
    int fd = notifier_fd(n);
    return fd < 0 ? fd : ioeventfd(vm, fd, addr, len, flags, data, true);
}
