/* SPDX-License-Identifier: MIT */
/* Internal: the KVM layer's structures (see docs/accel.md). */
#ifndef VMM_ACCEL_KVM_INTERNAL_H
#define VMM_ACCEL_KVM_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmmkit/kvm.h"
#include "accel/accel-internal.h"
#include "memory/rcu.h"
#include "util/compiler.h"
#include "util/lock.h"

#define KVM_MAX_VCPUS_VMM   256
#define KVM_MAX_SLOTS_VMM   512
#define KVM_MAX_EXIT_REASON 64
#define KVM_MAX_ROUTES_VMM  1024
#define KVM_PAGE_SIZE       4096ULL

/* A memory slot as KVM knows it. */
typedef struct KvmSlot {
    bool used;
    uint32_t id;            /* KVM slot number */
    uint64_t gpa, size;
    void *host;
    uint32_t flags;         /* VMM_SLOT_* */
    uint64_t *dirty;        /* ring mode: pages harvested, not yet reported */
} KvmSlot;

/* One registered PIO or MMIO range; immutable once published. */
typedef struct IoRange {
    uint64_t base, len;
    VmmIoOps ops;
    void *opaque;
} IoRange;

/* A map entry: a copy of its range's data, so that a lookup reads the map
 * array and nothing else; @id is the range itself (its identity for
 * vcpu->cur_range, and what unregister frees), never read by lookups. */
typedef struct IoEntry {
    uint64_t base, len;
    VmmIoOps ops;
    void *opaque;
    IoRange *id;
} IoEntry;

/* An RCU-published, sorted array of ranges. */
typedef struct IoMap {
    struct rcu_head rcu;
    size_t n;
    IoEntry e[];
} IoMap;

/* What an exit reads of its VM, kept on the gate's page (the page the
 * vCPU's gate slot is on: accel_gate_user_area) rather than on the
 * VM's. */
typedef struct KvmHot {
    IoMap *pio_map, *mmio_map;      /* rcu */
    bool coalesced_used;            /* a zone was registered once */
} KvmHot;

typedef struct VcpuWork {
    VmmVcpuWorkFunc *fn;
    void *opaque;
    int ret;
    bool done;
    struct VcpuWork *next;
} VcpuWork;

struct VmmVcpu {
    VmmVm *vm;
    uint32_t id;
    int fd;
    struct kvm_run *run;
    size_t mmap_size;
    struct kvm_dirty_gfn *gfns;     /* dirty ring, or NULL */
    uint32_t gfn_fetch;             /* next ring entry to harvest */
    VmmAccelCpuSlot *slot;
    KvmHot *hot;                    /* vm->hot */
    /* vm->ops.ioctl (NULL for the default: a direct ioctl) and its
     * opaque, copied for KVM_RUN (vcpu_run_ioctl): no VM page per exit. */
    int (*ioctl)(void *opaque, int fd, unsigned long request, void *arg);
    void *ops_opaque;
    pthread_t thread;
    pid_t tid;                      /* set by the thread before it runs */
    char name[32];

    /* Requests: set exit_request (then kick) to make the run loop return
     * to the control loop; the fields below are under vm->run_lock. */
    unsigned exit_request;
    unsigned halt_wake;             /* futex word of the default HLT wait */
    bool want_run;
    bool paused;                    /* the thread sits in the control loop */
    bool quit;
    VcpuWork *work;
    bool io_pending;                /* last exit was PIO/MMIO: re-enter once */
    const IoRange *cur_range;       /* range whose callback runs now */

    bool have_state;
    bool dirty;                     /* the cache is authoritative */
    VmmVcpuStats stats;             /* hot: beside the fields above */
    /* The state cache, owned by the vCPU thread (large: last). */
    VmmVcpuState st;
};

struct VmmVm {
    VmmKvmOps ops;
    int kvm_fd, vm_fd;
    VmmAccelGate *gate;
    int kick_signal;
    size_t vcpu_mmap_size;
    int coalesced_page;             /* page offset of the ring, 0 = none */
    struct kvm_coalesced_mmio_ring *coalesced;  /* via the first vCPU */
    VmmMutex coalesced_lock;
    bool has_irqchip, has_pit, has_xsave, has_xcrs, has_debugregs, has_events;
    bool has_xsave2;                /* KVM_GET_XSAVE2 of xsave_size bytes */
    uint32_t xsave_size;            /* bytes of the XSAVE area (0: FPU) */
    bool has_msi, has_routing;
    uint32_t max_slots;
    uint32_t *msr_list;             /* KVM_GET_MSR_INDEX_LIST */
    uint32_t nr_msr_list;

    /* PIO / MMIO maps (hot on every exit: kept near the top). */
    VmmMutex io_lock;
    KvmHot *hot;                    /* the maps, on the gate's page */
    uint64_t unhandled_io;

    /* Exit handlers (set while vCPUs are stopped). */
    struct {
        VmmExitHandler *fn;
        void *opaque;
    } handlers[KVM_MAX_EXIT_REASON];

    /* Memory slots (main loop, serialised by mem_lock). */
    VmmMutex mem_lock;
    KvmSlot slots[KVM_MAX_SLOTS_VMM];
    uint32_t dirty_ring_entries;    /* 0: bitmap mode */
    VmmMutex dirty_lock;         /* ring harvesting */


    /* vCPUs and run control. */
    VmmMutex run_lock;
    pthread_cond_t run_cond;
    VmmVcpu *vcpus[KVM_MAX_VCPUS_VMM];
    unsigned nr_vcpus;
    bool ended;
    VmmVmExit end;
    VmmVmStartFunc *start_fn;       /* run_lock: vmm_vm_start_notify, pending */
    void *start_opaque;

    /* GSI routing (any thread, under route_lock; see kvm-irq.c). */
    VmmMutex route_lock;
    struct kvm_irq_routing_entry *routes;   /* set once, entries under route_lock */
    uint32_t nr_routes;
    uint64_t gsi_used[KVM_MAX_ROUTES_VMM / 64];
};

/* kvm-ops.c: the bracketed system calls. */
int kvm_sys_ioctl(VmmVm *vm, unsigned long req, void *arg);
int kvm_vm_ioctl(VmmVm *vm, unsigned long req, void *arg);
int kvm_vcpu_ioctl(VmmVcpu *vcpu, unsigned long req, void *arg);
const char *kvm_cap_name(long cap);

/* kvm-vcpu.c */
void kvm_vcpu_request(VmmVcpu *vcpu);
void kvm_vm_end_locked(VmmVm *vm, const VmmVmExit *e) VMM_REQUIRES(vm->run_lock);
void kvm_vm_end(VmmVm *vm, const VmmVmExit *e);
int kvm_vm_pause_all(VmmVm *vm);
void kvm_vcpu_destroy(VmmVcpu *vcpu);

/* kvm-state.c */
int kvm_state_get(VmmVcpu *vcpu);
int kvm_state_put(VmmVcpu *vcpu, VmmStateLevel level);
void kvm_state_init(VmmVcpu *vcpu);

/* kvm-io.c */
void kvm_io_init(VmmVm *vm);
void kvm_io_destroy(VmmVm *vm);
void kvm_flush_coalesced(VmmVcpu *self);

/* kvm-mem.c */
void kvm_mem_destroy(VmmVm *vm);
int kvm_dirty_ring_harvest(VmmVcpu *vcpu);

/* kvm-irq.c */
int kvm_irq_routing_init(VmmVm *vm);

#endif
