/* SPDX-License-Identifier: MIT */
/*
 * The narrow kernel interface: every system call on /dev/kvm, a VM or a
 * vCPU goes through VmmKvmOps, and every ioctl through the accel gate.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "accel/kvm/kvm-internal.h"
#include "util/log.h"

static int real_open(void *opaque, const char *path)
{
    (void)opaque;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

VMM_HOT static int real_ioctl(void *opaque, int fd, unsigned long request, void *arg)
{
    (void)opaque;
    int r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

static void *real_mmap(void *opaque, size_t length, int prot, int flags, int fd,
                       off_t offset)
{
    (void)opaque;
    return mmap(NULL, length, prot, flags, fd, offset);
}

static int real_munmap(void *opaque, void *addr, size_t length)
{
    (void)opaque;
    return munmap(addr, length) < 0 ? -errno : 0;
}

static int real_close(void *opaque, int fd)
{
    (void)opaque;
    return close(fd) < 0 ? -errno : 0;
}

static const VmmKvmOps default_ops = {
    .size = sizeof(VmmKvmOps),
    .open_dev = real_open,
    .ioctl = real_ioctl,
    .mmap = real_mmap,
    .munmap = real_munmap,
    .close = real_close,
};

const VmmKvmOps *vmm_kvm_default_ops(void)
{
    return &default_ops;
}

/* /dev/kvm ioctls touch no VM state: no bracket needed. */
int kvm_sys_ioctl(VmmVm *vm, unsigned long req, void *arg)
{
    return vm->ops.ioctl(vm->ops.opaque, vm->kvm_fd, req, arg);
}

int kvm_vm_ioctl(VmmVm *vm, unsigned long req, void *arg)
{
    int r;

    vmm_accel_ioctl_begin(vm->gate);
    r = vm->ops.ioctl(vm->ops.opaque, vm->vm_fd, req, arg);
    vmm_accel_ioctl_end(vm->gate);
    return r;
}

VMM_HOT int kvm_vcpu_ioctl(VmmVcpu *vcpu, unsigned long req, void *arg)
{
    int r;

    vmm_accel_cpu_ioctl_begin(vcpu->slot);
    r = vcpu->vm->ops.ioctl(vcpu->vm->ops.opaque, vcpu->fd, req, arg);
    vmm_accel_cpu_ioctl_end(vcpu->slot);
    return r;
}

int vmm_vm_ioctl(VmmVm *vm, unsigned long request, void *arg)
{
    if (!vm) {
        return -EINVAL;
    }
    return kvm_vm_ioctl(vm, request, arg);
}

typedef struct VcpuIoctl {
    unsigned long req;
    void *arg;
} VcpuIoctl;

static int do_vcpu_ioctl(VmmVcpu *vcpu, void *opaque)
{
    VcpuIoctl *a = opaque;
    return kvm_vcpu_ioctl(vcpu, a->req, a->arg);
}

int vmm_vcpu_ioctl(VmmVcpu *vcpu, unsigned long request, void *arg)
{
    if (!vcpu) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_vcpu_ioctl: no vCPU");
    }
    VcpuIoctl a = { .req = request, .arg = arg };
    return vmm_vcpu_run_on(vcpu, do_vcpu_ioctl, &a);
}

int vmm_kvm_ioctl(VmmVm *vm, unsigned long request, void *arg)
{
    if (!vm) {
        return -EINVAL;
    }
    return kvm_sys_ioctl(vm, request, arg);
}

const char *kvm_cap_name(long cap)
{
    switch (cap) {
    case KVM_CAP_USER_MEMORY: return "KVM_CAP_USER_MEMORY";
    case KVM_CAP_IMMEDIATE_EXIT: return "KVM_CAP_IMMEDIATE_EXIT";
    case KVM_CAP_IOEVENTFD: return "KVM_CAP_IOEVENTFD";
    case KVM_CAP_IRQFD: return "KVM_CAP_IRQFD";
    case KVM_CAP_SET_TSS_ADDR: return "KVM_CAP_SET_TSS_ADDR";
    case KVM_CAP_EXT_CPUID: return "KVM_CAP_EXT_CPUID";
    case KVM_CAP_NR_MEMSLOTS: return "KVM_CAP_NR_MEMSLOTS";
    case KVM_CAP_MP_STATE: return "KVM_CAP_MP_STATE";
    case KVM_CAP_SYNC_MMU: return "KVM_CAP_SYNC_MMU";
    default: return "a KVM capability";
    }
}
