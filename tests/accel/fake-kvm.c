/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fake-kvm.h"

enum { FD_SYS = 1000, FD_VM = 1001, FD_VCPU0 = 1100 };
#define RUN_SIZE (3 * 4096)

static int f_open(void *opaque, const char *path)
{
    FakeKvm *f = opaque;
    (void)path;
    pthread_mutex_lock(&f->lock);
    bool fail = f->fail_req == (unsigned long)-1 && ++f->fail_seen == f->fail_nth;
    if (!fail) {
        f->open_fds++;
    }
    pthread_mutex_unlock(&f->lock);
    return fail ? f->fail_err : FD_SYS;
}

static bool has_cap(FakeKvm *f, long cap)
{
    if (cap == f->missing_cap) {
        return false;
    }
    switch (cap) {
    case KVM_CAP_USER_MEMORY: case KVM_CAP_IMMEDIATE_EXIT: case KVM_CAP_IOEVENTFD:
    case KVM_CAP_IRQFD: case KVM_CAP_SET_TSS_ADDR: case KVM_CAP_EXT_CPUID:
    case KVM_CAP_MP_STATE: case KVM_CAP_VCPU_EVENTS: case KVM_CAP_IRQ_ROUTING:
    case KVM_CAP_SIGNAL_MSI: case KVM_CAP_READONLY_MEM: case KVM_CAP_PIT2:
        return true;
    case KVM_CAP_IRQCHIP:
        return f->has_irqchip_cap;
    default:
        return false;
    }
}

static int sys_ioctl(FakeKvm *f, unsigned long req, void *arg)
{
    switch (req) {
    case KVM_GET_API_VERSION:
        return f->api_version;
    case KVM_CHECK_EXTENSION:
        if ((long)arg == KVM_CAP_NR_MEMSLOTS) {
            return 32;
        }
        if ((long)arg == KVM_CAP_COALESCED_MMIO) {
            return 2;       /* ring at page 2 of the vCPU mapping */
        }
        if ((long)arg == KVM_CAP_DIRTY_LOG_RING) {
            return f->dirty_ring_bytes;
        }
        if ((long)arg == KVM_CAP_XSAVE) {
            return f->has_xsave;
        }
        if ((long)arg == KVM_CAP_XSAVE2) {
            return f->xsave2_size;
        }
        return has_cap(f, (long)arg);
    case KVM_GET_VCPU_MMAP_SIZE:
        return RUN_SIZE;
    case KVM_CREATE_VM:
        f->open_fds++;
        return FD_VM;
    case KVM_GET_MSR_INDEX_LIST: {
        static const uint32_t list[] = { 0x10, 0xc0000081, 0x277 };
        struct kvm_msr_list *l = arg;
        uint32_t room = l->nmsrs;
        l->nmsrs = 3;
        if (room < 3) {
            return -E2BIG;
        }
        memcpy(l->indices, list, sizeof(list));
        return 0;
    }
    case KVM_GET_SUPPORTED_CPUID: {
        struct kvm_cpuid2 *c = arg;
        if (c->nent < 2) {
            return -E2BIG;
        }
        c->nent = 2;
        c->entries[0].function = 0;
        c->entries[1].function = 1;
        c->entries[1].ecx = f->cpuid1_ecx;
        return 0;
    }
    default:
        return -ENOTTY;
    }
}

static int vm_ioctl(FakeKvm *f, unsigned long req, void *arg)
{
    switch (req) {
    case KVM_CREATE_VCPU: {
        int id = (int)(uintptr_t)arg;
        if (id >= FAKE_MAX_VCPUS) {
            return -EINVAL;
        }
        f->vcpus[id].id = id;
        f->open_fds++;
        if (id >= f->nvcpus) {
            f->nvcpus = id + 1;
        }
        return FD_VCPU0 + id;
    }
    case KVM_SET_USER_MEMORY_REGION:
        f->nslot_ioctls++;
        f->last_region = *(struct kvm_userspace_memory_region *)arg;
        return 0;
    case KVM_CHECK_EXTENSION:
        return has_cap(f, (long)arg);
    case KVM_SET_TSS_ADDR: case KVM_CREATE_IRQCHIP: case KVM_CREATE_PIT2:
    case KVM_IRQ_LINE: case KVM_SET_GSI_ROUTING: case KVM_IRQFD: case KVM_IOEVENTFD:
    case KVM_GET_DIRTY_LOG: case KVM_ENABLE_CAP: case KVM_RESET_DIRTY_RINGS:
    case KVM_REGISTER_COALESCED_MMIO: case KVM_UNREGISTER_COALESCED_MMIO:
        return 0;
    /* The state of a snapshot or migration: kept by the caller's buffer. */
    case KVM_GET_IRQCHIP: case KVM_SET_IRQCHIP: case KVM_GET_PIT2: case KVM_SET_PIT2:
    case KVM_GET_CLOCK: case KVM_SET_CLOCK:
        return 0;
    case KVM_SIGNAL_MSI:
        return 1;
    default:
        return -ENOTTY;
    }
}

bool fake_msrs_any;

/* With fake_msrs_any, a slot for any other MSR (NULL when all are taken). */
static uint64_t *other_msr(FakeVcpu *v, uint32_t index)
{
    unsigned n = sizeof(v->msr_other_index) / sizeof(v->msr_other_index[0]);
    for (unsigned i = 0; fake_msrs_any && i < n; i++) {
        if (i == v->nmsr_other) {
            v->msr_other_index[v->nmsr_other++] = index;
        }
        if (v->msr_other_index[i] == index) {
            return &v->msr_other[i];
        }
    }
    return NULL;
}

static int msrs(FakeVcpu *v, struct kvm_msrs *m, bool set)
{
    if (set) {
        v->nlast_set_msrs = 0;
    }
    for (uint32_t i = 0; i < m->nmsrs; i++) {
        uint64_t *p = m->entries[i].index == 0x10 ? &v->msr_tsc
                    : m->entries[i].index == 0xc0000081 ? &v->msr_star
                    : m->entries[i].index == 0x277 ? &v->msr_pat
                    : other_msr(v, m->entries[i].index);
        if (!p) {
            return (int)i;
        }
        if (set) {
            *p = m->entries[i].data;
            if (v->nlast_set_msrs < 64) {
                v->last_set_msrs[v->nlast_set_msrs++] = m->entries[i].index;
            }
        } else {
            m->entries[i].data = *p;
        }
    }
    return (int)m->nmsrs;
}

static int fake_kick_signal = SIGUSR1;

int fake_block(FakeVcpu *fv)
{
    sigset_t block, old;
    int r = 0;

    sigemptyset(&block);
    sigaddset(&block, fake_kick_signal);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    if (!__atomic_load_n(&fv->run->immediate_exit, __ATOMIC_SEQ_CST)) {
        struct timespec ts = { 5, 0 };
        sigset_t during = old;
        sigdelset(&during, fake_kick_signal);
        r = ppoll(NULL, 0, &ts, &during) < 0 ? -errno : -ETIMEDOUT;
    } else {
        r = -EINTR;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

static int vcpu_run(FakeKvm *f, FakeVcpu *v)
{
    __atomic_fetch_add(&v->nruns, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&v->run->immediate_exit, __ATOMIC_SEQ_CST)) {
        /* KVM completes a pending PIO/MMIO first, then exits. */
        v->entered_with_immediate_exit++;
        return -EINTR;
    }
    if (!f->run_fn) {
        return fake_block(v);
    }
    return f->run_fn(v, v->run, f->run_opaque);
}

static int vcpu_ioctl(FakeKvm *f, FakeVcpu *v, unsigned long req, void *arg)
{
    switch (req) {
    case KVM_RUN:
        return vcpu_run(f, v);
    case KVM_GET_REGS: memcpy(arg, &v->regs, sizeof(v->regs)); return 0;
    case KVM_SET_REGS: memcpy(&v->regs, arg, sizeof(v->regs)); return 0;
    case KVM_GET_SREGS: memcpy(arg, &v->sregs, sizeof(v->sregs)); return 0;
    case KVM_SET_SREGS: memcpy(&v->sregs, arg, sizeof(v->sregs)); return 0;
    case KVM_GET_MP_STATE: memcpy(arg, &v->mp, sizeof(v->mp)); return 0;
    case KVM_SET_MP_STATE: memcpy(&v->mp, arg, sizeof(v->mp)); return 0;
    case KVM_GET_XSAVE:
        if (!f->has_xsave) {
            return -ENOTTY;
        }
        memcpy(arg, v->xsave, 4096);
        return 0;
    case KVM_GET_XSAVE2:
        if (!f->has_xsave || f->xsave2_size < 4096 || f->xsave2_size > 16384) {
            return -ENOTTY;
        }
        memcpy(arg, v->xsave, f->xsave2_size);
        return 0;
    case KVM_SET_XSAVE:
        if (!f->has_xsave) {
            return -ENOTTY;
        }
        /* With KVM_CAP_XSAVE2 the kernel reads the larger size. */
        memcpy(v->xsave, arg, f->xsave2_size >= 4096 && f->xsave2_size <= 16384
                              ? (size_t)f->xsave2_size : 4096);
        return 0;
    case KVM_GET_TSC_KHZ:
        return (int)(v->tsc_khz ? v->tsc_khz : f->host_tsc_khz);
    case KVM_SET_TSC_KHZ: {
        uint32_t khz = (uint32_t)(uintptr_t)arg;
        if (khz == 0 || (f->no_tsc_scaling && khz < f->host_tsc_khz)) {
            return -EPERM;              /* KVM without TSC scaling */
        }
        v->tsc_khz = khz;
        return 0;
    }
    case KVM_GET_MSRS: return msrs(v, arg, false);
    case KVM_SET_MSRS: return msrs(v, arg, true);
    case KVM_GET_FPU: case KVM_SET_FPU: case KVM_GET_VCPU_EVENTS:
    case KVM_SET_VCPU_EVENTS: case KVM_GET_LAPIC: case KVM_SET_LAPIC:
    case KVM_SET_CPUID2: case KVM_KVMCLOCK_CTRL:
        return 0;
    default:
        return -ENOTTY;
    }
}

static int f_ioctl(void *opaque, int fd, unsigned long req, void *arg)
{
    FakeKvm *f = opaque;
    bool fail = false;
    int r;

    pthread_mutex_lock(&f->lock);
    if (f->nlog < FAKE_LOG_MAX) {
        f->log[f->nlog++] = req;
    }
    if (req == f->fail_req && ++f->fail_seen == f->fail_nth) {
        fail = true;
    }
    pthread_mutex_unlock(&f->lock);
    if (fail) {
        return f->fail_err;
    }
    if (fd == FD_SYS) {
        return sys_ioctl(f, req, arg);
    }
    if (fd == FD_VM) {
        pthread_mutex_lock(&f->lock);
        r = vm_ioctl(f, req, arg);
        pthread_mutex_unlock(&f->lock);
        return r;
    }
    if (fd >= FD_VCPU0 && fd < FD_VCPU0 + FAKE_MAX_VCPUS) {
        return vcpu_ioctl(f, &f->vcpus[fd - FD_VCPU0], req, arg);
    }
    return -EBADF;
}

static void *f_mmap(void *opaque, size_t length, int prot, int flags, int fd, off_t off)
{
    FakeKvm *f = opaque;
    void *p;

    (void)prot;
    (void)flags;
    if (fd < FD_VCPU0 || fd >= FD_VCPU0 + FAKE_MAX_VCPUS) {
        return MAP_FAILED;
    }
    p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return p;
    }
    pthread_mutex_lock(&f->lock);
    f->maps++;
    if (off == 0) {
        f->vcpus[fd - FD_VCPU0].run = p;
        f->vcpus[fd - FD_VCPU0].run_size = length;
    }
    pthread_mutex_unlock(&f->lock);
    return p;
}

static int f_munmap(void *opaque, void *addr, size_t length)
{
    FakeKvm *f = opaque;
    pthread_mutex_lock(&f->lock);
    f->maps--;
    pthread_mutex_unlock(&f->lock);
    return munmap(addr, length);
}

static int f_close(void *opaque, int fd)
{
    FakeKvm *f = opaque;
    (void)fd;
    pthread_mutex_lock(&f->lock);
    f->open_fds--;
    pthread_mutex_unlock(&f->lock);
    return 0;
}

void fake_kvm_init(FakeKvm *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    f->api_version = KVM_API_VERSION;
    f->missing_cap = -1;
    f->has_irqchip_cap = true;
    f->ops = (VmmKvmOps){
        .size = sizeof(VmmKvmOps), .open_dev = f_open, .ioctl = f_ioctl,
        .mmap = f_mmap, .munmap = f_munmap, .close = f_close, .opaque = f,
    };
    for (int i = 0; i < FAKE_MAX_VCPUS; i++) {
        f->vcpus[i].msr_tsc = 1000;
    }
    f->kick_signal = SIGUSR1;
    f->host_tsc_khz = 2000000;
}

VmmVmOptions fake_vm_options(FakeKvm *f)
{
    VmmVmOptions o = { .size = sizeof(o), .ops = &f->ops, .dirty_ring_entries = -1,
                       .kick_signal = f->kick_signal };
    fake_kick_signal = f->kick_signal;
    return o;
}

void fake_fail(FakeKvm *f, unsigned long req, unsigned nth, int err)
{
    pthread_mutex_lock(&f->lock);
    f->fail_req = req;
    f->fail_nth = nth;
    f->fail_seen = 0;
    f->fail_err = err;
    pthread_mutex_unlock(&f->lock);
}

unsigned fake_count(FakeKvm *f, unsigned long req, unsigned from)
{
    unsigned n = 0;
    pthread_mutex_lock(&f->lock);
    for (unsigned i = from; i < f->nlog; i++) {
        n += f->log[i] == req;
    }
    pthread_mutex_unlock(&f->lock);
    return n;
}
