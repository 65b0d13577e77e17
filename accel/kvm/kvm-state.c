/* SPDX-License-Identifier: MIT */
/*
 * The vCPU state cache and its writeback levels (QEMU's vcpu_dirty model).
 *
 * The cache lives on the vCPU's thread.  "dirty" means the cache is
 * authoritative: KVM's copy may be stale and will be overwritten before the
 * next KVM_RUN (RUNTIME level), unless a post_reset/post_init writes it
 * first at a higher level.  Every accessor runs on the vCPU's thread
 * through vmm_vcpu_run_on().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/kvm/kvm-internal.h"
#include "util/atomic.h"
#include "util/log.h"

#define STAT_INC(v, f) vk_atomic_set(&(v)->stats.f, (v)->stats.f + 1)

/* x86 MSR numbers this file names. */
enum {
    MSR_TSC = 0x10, MSR_APIC_BASE = 0x1b, MSR_FEATURE_CONTROL = 0x3a,
    MSR_TSC_ADJUST = 0x3b, MSR_SPEC_CTRL = 0x48, MSR_SYSENTER_CS = 0x174, MSR_SYSENTER_ESP = 0x175,
    MSR_SYSENTER_EIP = 0x176, MSR_MISC_ENABLE = 0x1a0, MSR_MTRR_PHYS_FIRST = 0x200,
    MSR_MTRR_PHYS_LAST = 0x21f, MSR_MTRR_FIX_FIRST = 0x250, MSR_MTRR_FIX_LAST = 0x26f,
    MSR_PAT = 0x277, MSR_MTRR_DEF_TYPE = 0x2ff, MSR_TSC_DEADLINE = 0x6e0,
    MSR_STAR = 0xc0000081, MSR_LSTAR = 0xc0000082, MSR_CSTAR = 0xc0000083,
    MSR_FMASK = 0xc0000084, MSR_KERNEL_GS_BASE = 0xc0000102, MSR_TSC_AUX = 0xc0000103,
    MSR_KVM_WALL_CLOCK = 0x11, MSR_KVM_SYSTEM_TIME = 0x12,
    MSR_KVM_WALL_CLOCK_NEW = 0x4b564d00, MSR_KVM_SYSTEM_TIME_NEW = 0x4b564d01,
    MSR_KVM_ASYNC_PF_EN = 0x4b564d02, MSR_KVM_STEAL_TIME = 0x4b564d03,
    MSR_KVM_PV_EOI_EN = 0x4b564d04, MSR_KVM_POLL_CONTROL = 0x4b564d05,
    MSR_KVM_ASYNC_PF_INT = 0x4b564d06,
};

VmmStateLevel vmm_msr_level(uint32_t index)
{
    switch (index) {
    case MSR_TSC:
    case MSR_TSC_ADJUST:
    case MSR_FEATURE_CONTROL:
    case MSR_KVM_WALL_CLOCK:
    case MSR_KVM_SYSTEM_TIME:
    case MSR_KVM_WALL_CLOCK_NEW:
    case MSR_KVM_SYSTEM_TIME_NEW:
        return VMM_STATE_FULL;
    case MSR_PAT:
    case MSR_MTRR_DEF_TYPE:
    case MSR_MISC_ENABLE:
    case MSR_APIC_BASE:
    case MSR_TSC_DEADLINE:
    case MSR_KVM_ASYNC_PF_EN:
    case MSR_KVM_ASYNC_PF_INT:
    case MSR_KVM_STEAL_TIME:
    case MSR_KVM_PV_EOI_EN:
    case MSR_KVM_POLL_CONTROL:
        return VMM_STATE_RESET;
    default:
        if ((index >= MSR_MTRR_PHYS_FIRST && index <= MSR_MTRR_PHYS_LAST) ||
            (index >= MSR_MTRR_FIX_FIRST && index <= MSR_MTRR_FIX_LAST)) {
            return VMM_STATE_RESET;
        }
        return VMM_STATE_RUNTIME;
    }
}

/* The MSRs every cache tracks (when KVM lists them): what a running Linux
 * guest changes and a restored one needs back - the paravirtual clock and
 * friends, the TSC deadline timer after the TSC it counts against, the
 * async page fault interrupt vector before the MSR that enables it. */
static const uint32_t default_msrs[] = {
    MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP, MSR_STAR, MSR_LSTAR,
    MSR_CSTAR, MSR_FMASK, MSR_KERNEL_GS_BASE, MSR_TSC_AUX, MSR_PAT, MSR_TSC,
    MSR_TSC_ADJUST, MSR_TSC_DEADLINE, MSR_MISC_ENABLE, MSR_MTRR_DEF_TYPE,
    MSR_KVM_WALL_CLOCK_NEW, MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_ASYNC_PF_INT,
    MSR_KVM_ASYNC_PF_EN, MSR_KVM_STEAL_TIME, MSR_KVM_PV_EOI_EN, MSR_KVM_POLL_CONTROL,
    MSR_SPEC_CTRL,
};

static bool kvm_knows_msr(VmmVm *vm, uint32_t index)
{
    for (uint32_t i = 0; i < vm->nr_msr_list; i++) {
        if (vm->msr_list[i] == index) {
            return true;
        }
    }
    return false;
}

static bool needs_lapic(uint32_t index)
{
    return index == MSR_TSC_DEADLINE || index == MSR_KVM_ASYNC_PF_INT ||
           index == MSR_KVM_ASYNC_PF_EN || index == MSR_KVM_PV_EOI_EN;
}

void kvm_state_init(VmmVcpu *vcpu)
{
    VmmVcpuState *st = &vcpu->st;

    st->size = sizeof(*st);
    for (size_t i = 0; i < VMM_ARRAY_SIZE(default_msrs); i++) {
        if (!vcpu->vm->has_irqchip && needs_lapic(default_msrs[i])) {
            continue;       /* KVM refuses them without an in-kernel LAPIC */
        }
        if (kvm_knows_msr(vcpu->vm, default_msrs[i])) {
            st->msrs[st->nmsrs++].index = default_msrs[i];
        }
    }
    st->has_xsave = vcpu->vm->has_xsave;
    st->xsave_size = vcpu->vm->xsave_size;
    st->has_xcrs = vcpu->vm->has_xcrs;
    st->has_lapic = vcpu->vm->has_irqchip;
}

/* KVM_GET_MSRS / KVM_SET_MSRS on the cached entries (at most @level for a
 * set).  A set leaves out the TSC deadline, or (@deadline) sets only it:
 * KVM keeps a deadline only for a LAPIC already in TSC-deadline mode, so
 * it is written after KVM_SET_LAPIC. */
static int msrs_io(VmmVcpu *vcpu, bool set, VmmStateLevel level, bool deadline)
{
    VmmVcpuState *st = &vcpu->st;
    /* struct kvm_msrs followed by its entries. */
    uint64_t raw[(sizeof(struct kvm_msrs) +
                  VMM_VCPU_MAX_MSRS * sizeof(struct kvm_msr_entry)) / 8 + 1];
    struct kvm_msrs *hdr = (struct kvm_msrs *)raw;
    struct kvm_msr_entry *e = hdr->entries;
    uint32_t n = 0;
    int r;

    memset(raw, 0, sizeof(raw));
    for (uint32_t i = 0; i < st->nmsrs; i++) {
        if (!set || (vmm_msr_level(st->msrs[i].index) <= level &&
                     (st->msrs[i].index == MSR_TSC_DEADLINE) == deadline)) {
            e[n++] = st->msrs[i];
        }
    }
    if (n == 0) {
        return 0;
    }
    hdr->nmsrs = n;
    r = kvm_vcpu_ioctl(vcpu, set ? KVM_SET_MSRS : KVM_GET_MSRS, hdr);
    if (r < 0) {
        return r;
    }
    if ((uint32_t)r != n) {
        vk_error("vcpu %u: KVM %s only %d of %u MSRs (first failing: 0x%x)",
                  vcpu->id, set ? "set" : "got", r, n, e[r].index);
        return -EINVAL;
    }
    if (!set) {
        /* Same order as st->msrs: every entry was requested. */
        for (uint32_t i = 0; i < n; i++) {
            st->msrs[i].data = e[i].data;
        }
    }
    return 0;
}

int kvm_state_get(VmmVcpu *vcpu)
{
    VmmVcpuState *st = &vcpu->st;
    VmmVm *vm = vcpu->vm;
    int r;

    if ((r = kvm_vcpu_ioctl(vcpu, KVM_GET_REGS, &st->regs)) < 0 ||
        (r = kvm_vcpu_ioctl(vcpu, KVM_GET_SREGS, &st->sregs)) < 0) {
        return r;
    }
    r = vm->has_xsave2 ? kvm_vcpu_ioctl(vcpu, KVM_GET_XSAVE2, st->xsave)
      : vm->has_xsave ? kvm_vcpu_ioctl(vcpu, KVM_GET_XSAVE, st->xsave)
                      : kvm_vcpu_ioctl(vcpu, KVM_GET_FPU, &st->fpu);
    if (r < 0) {
        return r;
    }
    if (vm->has_xcrs && (r = kvm_vcpu_ioctl(vcpu, KVM_GET_XCRS, &st->xcrs)) < 0) {
        return r;
    }
    if (vm->has_debugregs &&
        (r = kvm_vcpu_ioctl(vcpu, KVM_GET_DEBUGREGS, &st->debugregs)) < 0) {
        return r;
    }
    if (vm->has_irqchip && (r = kvm_vcpu_ioctl(vcpu, KVM_GET_LAPIC, &st->lapic)) < 0) {
        return r;
    }
    if (vm->has_events &&
        (r = kvm_vcpu_ioctl(vcpu, KVM_GET_VCPU_EVENTS, &st->events)) < 0) {
        return r;
    }
    if ((r = kvm_vcpu_ioctl(vcpu, KVM_GET_MP_STATE, &st->mp_state)) < 0 ||
        (r = msrs_io(vcpu, false, VMM_STATE_FULL, false)) < 0) {
        return r;
    }
    st->has_lapic = vm->has_irqchip;
    vcpu->have_state = true;
    STAT_INC(vcpu, state_gets);
    return 0;
}

static int put_events(VmmVcpu *vcpu, VmmStateLevel level)
{
    struct kvm_vcpu_events ev = vcpu->st.events;

    /* Only a reset or a load may change a pending NMI or the SIPI vector:
     * at RUNTIME level KVM keeps its own. */
    ev.flags &= ~(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR);
    if (level >= VMM_STATE_RESET) {
        ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING;
        if (vcpu->st.mp_state.mp_state == KVM_MP_STATE_SIPI_RECEIVED) {
            ev.flags |= KVM_VCPUEVENT_VALID_SIPI_VECTOR;
        }
    }
    return kvm_vcpu_ioctl(vcpu, KVM_SET_VCPU_EVENTS, &ev);
}

int kvm_state_put(VmmVcpu *vcpu, VmmStateLevel level)
{
    VmmVcpuState *st = &vcpu->st;
    VmmVm *vm = vcpu->vm;
    int r;

    if (!vcpu->have_state) {
        return 0;       /* nothing cached: KVM's state stands */
    }
    if ((r = kvm_vcpu_ioctl(vcpu, KVM_SET_REGS, &st->regs)) < 0) {
        return r;
    }
    /* KVM_SET_XSAVE reads the XSAVE2 size when KVM has KVM_CAP_XSAVE2. */
    r = vm->has_xsave ? kvm_vcpu_ioctl(vcpu, KVM_SET_XSAVE, st->xsave)
                      : kvm_vcpu_ioctl(vcpu, KVM_SET_FPU, &st->fpu);
    if (r < 0) {
        return r;
    }
    if (vm->has_xcrs && (r = kvm_vcpu_ioctl(vcpu, KVM_SET_XCRS, &st->xcrs)) < 0) {
        return r;
    }
    if ((r = kvm_vcpu_ioctl(vcpu, KVM_SET_SREGS, &st->sregs)) < 0 ||
        (r = msrs_io(vcpu, true, level, false)) < 0) {
        return r;
    }
    if (level >= VMM_STATE_RESET) {
        if ((r = kvm_vcpu_ioctl(vcpu, KVM_SET_MP_STATE, &st->mp_state)) < 0) {
            return r;
        }
        if (vm->has_irqchip && (r = kvm_vcpu_ioctl(vcpu, KVM_SET_LAPIC, &st->lapic)) < 0) {
            return r;
        }
    }
    if ((r = msrs_io(vcpu, true, level, true)) < 0) {
        return r;
    }
    if (vm->has_events && (r = put_events(vcpu, level)) < 0) {
        return r;
    }
    if (vm->has_debugregs &&
        (r = kvm_vcpu_ioctl(vcpu, KVM_SET_DEBUGREGS, &st->debugregs)) < 0) {
        return r;
    }
    vk_atomic_set(&vcpu->stats.state_puts[level], vcpu->stats.state_puts[level] + 1);
    return 0;
}

/* ---- synchronize_* (on the vCPU's thread) ----------------------------- */

static int do_sync_state(VmmVcpu *vcpu, void *opaque)
{
    int r;

    (void)opaque;
    if (vcpu->dirty) {
        return 0;
    }
    r = kvm_state_get(vcpu);
    if (r == 0) {
        vcpu->dirty = true;
    }
    return r;
}

static int do_put_level(VmmVcpu *vcpu, void *opaque)
{
    VmmStateLevel level = (VmmStateLevel)(uintptr_t)opaque;
    int r;

    if (!vcpu->have_state) {
        r = kvm_state_get(vcpu);
        if (r < 0) {
            return r;
        }
    }
    r = kvm_state_put(vcpu, level);
    if (r == 0) {
        vcpu->dirty = false;
    }
    return r;
}

static int do_pre_loadvm(VmmVcpu *vcpu, void *opaque)
{
    (void)opaque;
    vcpu->have_state = true;
    vcpu->dirty = true;
    return 0;
}

int vmm_vcpu_synchronize_state(VmmVcpu *vcpu)
{
    return vcpu ? vmm_vcpu_run_on(vcpu, do_sync_state, NULL) : -EINVAL;
}

int vmm_vcpu_synchronize_post_reset(VmmVcpu *vcpu)
{
    return vcpu ? vmm_vcpu_run_on(vcpu, do_put_level, (void *)(uintptr_t)VMM_STATE_RESET)
                : -EINVAL;
}

int vmm_vcpu_synchronize_post_init(VmmVcpu *vcpu)
{
    return vcpu ? vmm_vcpu_run_on(vcpu, do_put_level, (void *)(uintptr_t)VMM_STATE_FULL)
                : -EINVAL;
}

int vmm_vcpu_synchronize_pre_loadvm(VmmVcpu *vcpu)
{
    return vcpu ? vmm_vcpu_run_on(vcpu, do_pre_loadvm, NULL) : -EINVAL;
}

/* ---- accessors ------------------------------------------------------------ */

typedef struct Access {
    void *buf;
    size_t off, len;
    bool set;
} Access;

static int do_access(VmmVcpu *vcpu, void *opaque)
{
    Access *a = opaque;
    int r = do_sync_state(vcpu, NULL);

    if (r < 0) {
        return r;
    }
    if (a->set) {
        memcpy((char *)&vcpu->st + a->off, a->buf, a->len);
    } else {
        memcpy(a->buf, (char *)&vcpu->st + a->off, a->len);
    }
    return 0;
}

static int access_state(VmmVcpu *vcpu, void *buf, size_t off, size_t len, bool set)
{
    Access a = { buf, off, len, set };

    if (!vcpu || !buf) {
        return -EINVAL;
    }
    return vmm_vcpu_run_on(vcpu, do_access, &a);
}

#define ACCESSORS(name, field, type)                                          \
int vmm_vcpu_get_##name(VmmVcpu *vcpu, type *out)                             \
{                                                                             \
    return access_state(vcpu, out, offsetof(VmmVcpuState, field),             \
                        sizeof(type), false);                                 \
}                                                                             \
int vmm_vcpu_set_##name(VmmVcpu *vcpu, const type *in)                        \
{                                                                             \
    return access_state(vcpu, (void *)in, offsetof(VmmVcpuState, field),      \
                        sizeof(type), true);                                  \
}

ACCESSORS(regs, regs, struct kvm_regs)
ACCESSORS(sregs, sregs, struct kvm_sregs)

int vmm_vcpu_get_fpu(VmmVcpu *vcpu, struct kvm_fpu *out)
{
    return access_state(vcpu, out, offsetof(VmmVcpuState, fpu), sizeof(*out), false);
}

int vmm_vcpu_set_fpu(VmmVcpu *vcpu, const struct kvm_fpu *in)
{
    if (vcpu && vcpu->vm->has_xsave) {
        return -EOPNOTSUPP;     /* the cache holds XSAVE: use vmm_vcpu_set_state */
    }
    return access_state(vcpu, (void *)in, offsetof(VmmVcpuState, fpu), sizeof(*in), true);
}

int vmm_vcpu_get_lapic(VmmVcpu *vcpu, struct kvm_lapic_state *out)
{
    if (vcpu && !vcpu->vm->has_irqchip) {
        return -ENODEV;
    }
    return access_state(vcpu, out, offsetof(VmmVcpuState, lapic), sizeof(*out), false);
}

int vmm_vcpu_set_lapic(VmmVcpu *vcpu, const struct kvm_lapic_state *in)
{
    if (vcpu && !vcpu->vm->has_irqchip) {
        return -ENODEV;
    }
    return access_state(vcpu, (void *)in, offsetof(VmmVcpuState, lapic), sizeof(*in), true);
}

int vmm_vcpu_get_mp_state(VmmVcpu *vcpu, uint32_t *out)
{
    return access_state(vcpu, out, offsetof(VmmVcpuState, mp_state.mp_state),
                        sizeof(*out), false);
}

int vmm_vcpu_set_mp_state(VmmVcpu *vcpu, uint32_t mp_state)
{
    return access_state(vcpu, &mp_state, offsetof(VmmVcpuState, mp_state.mp_state),
                        sizeof(mp_state), true);
}

typedef struct MsrAccess {
    uint32_t index;
    uint64_t value;
    bool set;
} MsrAccess;

static int do_msr(VmmVcpu *vcpu, void *opaque)
{
    MsrAccess *m = opaque;
    VmmVcpuState *st = &vcpu->st;
    int r = do_sync_state(vcpu, NULL);

    if (r < 0) {
        return r;
    }
    for (uint32_t i = 0; i < st->nmsrs; i++) {
        if (st->msrs[i].index == m->index) {
            if (m->set) {
                st->msrs[i].data = m->value;
            } else {
                m->value = st->msrs[i].data;
            }
            return 0;
        }
    }
    if (!m->set) {
        return -ENOENT;
    }
    if (st->nmsrs == VMM_VCPU_MAX_MSRS) {
        return -ENOSPC;
    }
    st->msrs[st->nmsrs].index = m->index;
    st->msrs[st->nmsrs].reserved = 0;
    st->msrs[st->nmsrs++].data = m->value;
    return 0;
}

int vmm_vcpu_get_msr(VmmVcpu *vcpu, uint32_t index, uint64_t *out)
{
    MsrAccess m = { .index = index };
    int r;

    if (!vcpu || !out) {
        return -EINVAL;
    }
    r = vmm_vcpu_run_on(vcpu, do_msr, &m);
    if (r == 0) {
        *out = m.value;
    }
    return r;
}

int vmm_vcpu_set_msr(VmmVcpu *vcpu, uint32_t index, uint64_t value)
{
    MsrAccess m = { .index = index, .value = value, .set = true };

    return vcpu ? vmm_vcpu_run_on(vcpu, do_msr, &m) : -EINVAL;
}

static int do_set_cpuid(VmmVcpu *vcpu, void *opaque)
{
    return kvm_vcpu_ioctl(vcpu, KVM_SET_CPUID2, opaque);
}

int vmm_vcpu_set_cpuid(VmmVcpu *vcpu, const struct kvm_cpuid2 *cpuid)
{
    if (!vcpu || !cpuid || cpuid->nent > 4096) {
        return -EINVAL;
    }
    return vmm_vcpu_run_on(vcpu, do_set_cpuid, (void *)cpuid);
}

static int do_get_state(VmmVcpu *vcpu, void *opaque)
{
    int r = do_sync_state(vcpu, NULL);

    if (r == 0) {
        memcpy(opaque, &vcpu->st, sizeof(vcpu->st));
    }
    return r;
}

static int do_set_state(VmmVcpu *vcpu, void *opaque)
{
    const VmmVcpuState *in = opaque;
    VmmVcpuState keep = vcpu->st;

    do_pre_loadvm(vcpu, NULL);
    memcpy(&vcpu->st, in, sizeof(vcpu->st));
    /* What KVM supports is the VM's, not the snapshot's.  A smaller XSAVE
     * area (a legacy 4 KiB snapshot): the components beyond it are absent
     * (XSTATE_BV says so) and zero. */
    vcpu->st.size = sizeof(vcpu->st);
    if (in->xsave_size < keep.xsave_size) {
        memset((char *)vcpu->st.xsave + in->xsave_size, 0,
               keep.xsave_size - in->xsave_size);
    }
    vcpu->st.xsave_size = keep.xsave_size;
    vcpu->st.has_xsave = keep.has_xsave;
    vcpu->st.has_xcrs = keep.has_xcrs;
    vcpu->st.has_lapic = keep.has_lapic;
    return do_put_level(vcpu, (void *)(uintptr_t)VMM_STATE_FULL);
}

int vmm_vcpu_get_state(VmmVcpu *vcpu, VmmVcpuState *out)
{
    if (!vcpu || !out) {
        return -EINVAL;
    }
    return vmm_vcpu_run_on(vcpu, do_get_state, out);
}

int vmm_vcpu_set_state(VmmVcpu *vcpu, const VmmVcpuState *in)
{
    if (!vcpu || !in || in->size != sizeof(VmmVcpuState) ||
        in->nmsrs > VMM_VCPU_MAX_MSRS) {
        return -EINVAL;
    }
    /* An XSAVE area larger than this VM's holds state KVM cannot take. */
    if (vcpu->vm->has_xsave && in->has_xsave &&
        (in->xsave_size > vcpu->vm->xsave_size || in->xsave_size % 4)) {
        return -EINVAL;
    }
    return vmm_vcpu_run_on(vcpu, do_set_state, (void *)in);
}
