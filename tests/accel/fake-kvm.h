/* SPDX-License-Identifier: MIT */
/*
 * A fake KVM behind VmmKvmOps for unit tests: enough of /dev/kvm, a VM and
 * its vCPUs to drive the library, with scripted KVM_RUN exits, a log of the
 * ioctls made and injectable failures.
 */
#ifndef FAKE_KVM_H
#define FAKE_KVM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmmkit/kvm.h"

#define FAKE_MAX_VCPUS 8
#define FAKE_LOG_MAX 4096

typedef struct FakeVcpu FakeVcpu;

/* Fill run->exit_reason etc. for one KVM_RUN; return 0 or -errno.  Runs on
 * the vCPU thread.  fake_block() emulates a guest that sits in KVM_RUN
 * (HLT with an in-kernel irqchip) until kicked. */
typedef int FakeRunFunc(FakeVcpu *fv, struct kvm_run *run, void *opaque);

struct FakeVcpu {
    int id;
    struct kvm_run *run;
    size_t run_size;
    uint64_t nruns;
    unsigned entered_with_immediate_exit;   /* runs that found it set */
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_mp_state mp;
    uint64_t msr_tsc, msr_star, msr_pat;
    /* Other MSRs, when fake_msrs_any. */
    uint32_t msr_other_index[32];
    uint64_t msr_other[32];
    unsigned nmsr_other;
    /* MSRs written by the last KVM_SET_MSRS. */
    uint32_t last_set_msrs[64];
    uint32_t nlast_set_msrs;
    uint8_t xsave[16384];           /* KVM_GET/SET_XSAVE(2) */
    uint32_t tsc_khz;               /* KVM_GET/SET_TSC_KHZ; 0: the host's */
};

typedef struct FakeKvm {
    VmmKvmOps ops;
    pthread_mutex_t lock;       /* the log and the counters */
    int api_version;
    long missing_cap;           /* KVM_CAP_* reported absent (-1: none) */
    int dirty_ring_bytes;       /* KVM_CAP_DIRTY_LOG_RING value */
    bool has_irqchip_cap;
    bool has_xsave;             /* KVM_CAP_XSAVE (default: off, FPU) */
    int xsave2_size;            /* KVM_CAP_XSAVE2's value; 0: absent */
    int kick_signal;            /* what fake_block() waits for (SIGUSR1) */
    uint32_t cpuid1_ecx;        /* KVM_GET_SUPPORTED_CPUID leaf 1 ECX (0) */
    uint32_t host_tsc_khz;      /* a new vCPU's TSC rate (2000000) */
    bool no_tsc_scaling;        /* KVM_SET_TSC_KHZ below the host's: -EPERM */
    FakeRunFunc *run_fn;
    void *run_opaque;
    FakeVcpu vcpus[FAKE_MAX_VCPUS];
    int nvcpus;
    /* Log of ioctl requests, in order (all fds). */
    unsigned long log[FAKE_LOG_MAX];
    unsigned nlog;
    /* Failure injection: the @fail_nth call (1-based) of @fail_req fails. */
    unsigned long fail_req;
    unsigned fail_nth, fail_seen;
    int fail_err;
    unsigned open_fds;          /* fds opened and not closed */
    unsigned maps;              /* mappings not unmapped */
    uint32_t nslot_ioctls;
    struct kvm_userspace_memory_region last_region;
} FakeKvm;

void fake_kvm_init(FakeKvm *f);
/* KVM_GET/SET_MSRS accept any MSR (up to 32 others per vCPU), not only
 * TSC, STAR and PAT: for programs that set up whole vCPUs (the machine). */
extern bool fake_msrs_any;
/* Options that make vmm_vm_new() use @f. */
VmmVmOptions fake_vm_options(FakeKvm *f);
void fake_fail(FakeKvm *f, unsigned long req, unsigned nth, int err);
/* Number of logged @req since index @from. */
unsigned fake_count(FakeKvm *f, unsigned long req, unsigned from);
/* Block like a guest in KVM_RUN until kicked (immediate_exit or signal). */
int fake_block(FakeVcpu *fv);

#endif
