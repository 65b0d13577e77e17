/* SPDX-License-Identifier: MIT */
/*
 * vCPUs: one thread each, the run loop, the kick, pause/resume, work
 * items that run on the vCPU's thread.
 *
 * Kick protocol (pairs K1/K2):
 *   requester:  exit_request = 1; smp_mb (K1); immediate_exit = 1; signal
 *   vCPU:       KVM_RUN returns -EINTR; immediate_exit = 0; smp_mb (K2);
 *               read exit_request at the top of the loop
 * KVM reads immediate_exit on entry, so a request made after the vCPU
 * checked exit_request still stops the next KVM_RUN; the signal gets a vCPU
 * that is already inside KVM_RUN out.  If the vCPU's clear of
 * immediate_exit overwrote the requester's 1, K1/K2 make the vCPU's next
 * read of exit_request see the request.
 */
/* The inline read-side fast path of liburcu (no library call per exit:
 * the PIO/MMIO dispatch of kvm-dispatch.h is inlined here);
 * not under ThreadSanitizer, which must not see liburcu's uninstrumented
 * internals (tests/tsan.supp suppresses them only inside the library). */
#include "util/urcu-lgpl.h"   /* first: before any liburcu header */
#include <errno.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "accel/futex.h"
#include "accel/kvm/kvm-internal.h"
#include "accel/kvm/kvm-dispatch.h"
#include "util/atomic.h"
#include "util/log.h"
#include "util/thread.h"
#include "util/trace.h"

#define STAT_INC(v, f) vk_atomic_set(&(v)->stats.f, (v)->stats.f + 1)

static __thread VmmVcpu *tls_vcpu VMM_TLS_IE;

VmmVcpu *vmm_vcpu_current(void)
{
    return tls_vcpu;
}

/* immediate_exit + signal: gets the vCPU out of KVM_RUN.  Async-signal-safe. */
static void kick_run(VmmVcpu *vcpu)
{
    pid_t tid = vk_atomic_read(&vcpu->tid);

    vk_atomic_set(&vcpu->run->immediate_exit, 1);
    if (tid > 0) {
        syscall(SYS_tgkill, getpid(), tid, vcpu->vm->kick_signal);
    }
}

/* The gate's kick: out of KVM_RUN only (a halt wait is outside the gate). */
static void gate_kick(void *opaque)
{
    kick_run(opaque);
}

void vmm_vcpu_kick(VmmVcpu *vcpu)
{
    if (!vcpu) {
        return;
    }
    vk_atomic_stat_add(&vcpu->stats.kicks, 1);
    vk_smp_mb();   /* K1 for callers that set a flag the vCPU reads */
    kick_run(vcpu);
    vk_atomic_set(&vcpu->halt_wake, 1);
    vk_futex_wake(&vcpu->halt_wake, 1);
}

void kvm_vcpu_request(VmmVcpu *vcpu)
{
    vk_atomic_set(&vcpu->exit_request, 1);
    vmm_vcpu_kick(vcpu);        /* K1 inside */
}

/* ---- exits ---------------------------------------------------------------- */

/* The report of @vcpu's last exit; @by_handler: an exit handler returned
 * VMM_EXIT_END_VM for it. */
static void fill_exit_report(VmmVcpu *vcpu, VmmVmExit *e, bool by_handler)
{
    struct kvm_run *run = vcpu->run;
    struct kvm_regs regs;

    memset(e, 0, sizeof(*e));
    e->vcpu_id = vcpu->id;
    e->exit_reason = run->exit_reason;
    switch (run->exit_reason) {
    case KVM_EXIT_SHUTDOWN:
        e->kind = VMM_VM_END_SHUTDOWN;
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        e->kind = VMM_VM_END_SYSTEM_EVENT;
        e->code = run->system_event.type;
        e->ndata = run->system_event.ndata > 16 ? 16 : run->system_event.ndata;
        memcpy(e->data, run->system_event.data, e->ndata * sizeof(uint64_t));
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        e->kind = VMM_VM_END_INTERNAL_ERROR;
        e->code = run->internal.suberror;
        e->ndata = run->internal.ndata > 16 ? 16 : run->internal.ndata;
        memcpy(e->data, run->internal.data, e->ndata * sizeof(uint64_t));
        break;
    case KVM_EXIT_FAIL_ENTRY:
        e->kind = VMM_VM_END_FAIL_ENTRY;
        e->code = run->fail_entry.hardware_entry_failure_reason;
        e->ndata = 1;
        e->data[0] = run->fail_entry.cpu;
        break;
    default:
        e->kind = VMM_VM_END_UNHANDLED_EXIT;
        e->code = run->exit_reason;
        break;
    }
    if (by_handler) {
        e->kind = VMM_VM_END_HANDLER;
    }
    if (kvm_vcpu_ioctl(vcpu, KVM_GET_REGS, &regs) >= 0) {
        e->rip = regs.rip;
    }
}

static void end_with_error(VmmVcpu *vcpu, int err)
{
    VmmVmExit e = {
        .kind = VMM_VM_END_ERROR, .vcpu_id = vcpu->id,
        .exit_reason = vcpu->run->exit_reason, .error = err,
    };
    vk_error("vcpu %u: %s", vcpu->id, vmm_strerror(err));
    kvm_vm_end(vcpu->vm, &e);
}

/* The default HLT handler: sleep until kicked or asked to stop. */
static int default_halt(VmmVcpu *vcpu)
{
    while (!vk_atomic_xchg(&vcpu->halt_wake, 0)) {
        if (vk_atomic_read(&vcpu->exit_request)) {
            break;
        }
        vk_futex_wait(&vcpu->halt_wake, 0, NULL);
    }
    /* The kick that woke us also set immediate_exit: consume it here, as
     * after -EINTR, so the next KVM_RUN runs the guest. */
    vk_atomic_set(&vcpu->run->immediate_exit, 0);
    vk_smp_mb();       /* K2: pairs with K1 in vmm_vcpu_kick() */
    return VMM_EXIT_CONTINUE;
}

VMM_HOT static int handle_exit(VmmVcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    uint32_t reason = run->exit_reason;
    VmmExitHandler *fn = NULL;
    void *opaque = NULL;
    VmmVmExit e;

    switch (reason) {
    case KVM_EXIT_IO:
        STAT_INC(vcpu, exits_io);
        vcpu->io_pending = true;
        kvm_dispatch_pio(vcpu);
        return VMM_EXIT_CONTINUE;
    case KVM_EXIT_MMIO:
        STAT_INC(vcpu, exits_mmio);
        vcpu->io_pending = true;
        kvm_dispatch_mmio(vcpu);
        return VMM_EXIT_CONTINUE;
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_INTR:
        STAT_INC(vcpu, exits_intr);
        return VMM_EXIT_CONTINUE;
    case KVM_EXIT_DIRTY_RING_FULL:
        STAT_INC(vcpu, exits_other);
        return kvm_dirty_ring_harvest(vcpu) < 0 ? -EIO : VMM_EXIT_CONTINUE;
    default:
        break;
    }
    if (reason == KVM_EXIT_HLT) {
        STAT_INC(vcpu, exits_hlt);
    } else {
        STAT_INC(vcpu, exits_other);
    }
    if (reason < KVM_MAX_EXIT_REASON) {
        /* Acquire pairs with the release in vmm_vm_set_exit_handler(). */
        fn = vk_atomic_load_acquire(&vcpu->vm->handlers[reason].fn);
        opaque = vk_atomic_read(&vcpu->vm->handlers[reason].opaque);
    }
    if (fn) {
        return fn(vcpu, run, opaque);
    }
    if (reason == KVM_EXIT_HLT) {
        return default_halt(vcpu);
    }
    fill_exit_report(vcpu, &e, false);
    vk_warn("vcpu %u: %s (KVM exit %s, %u; code %llu) ends the VM", vcpu->id,
             vmm_vm_end_kind_name(e.kind), vmm_exit_reason_name(reason), reason,
             (unsigned long long)e.code);
    kvm_vm_end(vcpu->vm, &e);
    return VMM_EXIT_END_VM;
}

/* ---- the run loop ----------------------------------------------------------- */

/* KVM_RUN inside the vCPU's gate bracket, all inline: this thread owns
 * the slot (bound in vcpu_thread), and with the default ops the ioctl is
 * made directly (vcpu->ioctl is NULL), as a raw KVM_RUN loop makes it. */
static inline int vcpu_run_ioctl(VmmVcpu *vcpu)
{
    int r;

    accel_owner_begin(vcpu->slot);
    if (vk_likely(!vcpu->ioctl)) {
        r = ioctl(vcpu->fd, KVM_RUN, 0);
        if (r < 0) {
            r = -errno;
        }
    } else {
        r = vcpu->ioctl(vcpu->ops_opaque, vcpu->fd, KVM_RUN, NULL);
    }
    accel_owner_end(vcpu->slot);
    return r;
}

/* Run until a request (pause, end, work, quit) or an exit that stops us.
 * Not inlined into vcpu_thread: the loop stays in the hot text. */
VMM_HOT __attribute__((noinline)) static void vcpu_exec(VmmVcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    int r;

    for (;;) {
        if (vk_atomic_read(&vcpu->exit_request)) {
            if (!vcpu->io_pending) {
                return;
            }
            /* Complete the pending PIO/MMIO without running the guest:
             * KVM finishes the instruction, then sees immediate_exit. */
            vk_atomic_set(&run->immediate_exit, 1);
        }
        if (vcpu->dirty) {
            r = kvm_state_put(vcpu, VMM_STATE_RUNTIME);
            if (r < 0) {
                end_with_error(vcpu, r);
                return;
            }
            vcpu->dirty = false;
        }
        /* Kicks before this point are covered by immediate_exit; only a
         * kick after the coming exit may end a halt wait. */
        vk_atomic_set(&vcpu->halt_wake, 0);
        r = vcpu_run_ioctl(vcpu);
        STAT_INC(vcpu, runs);
        vcpu->io_pending = false;   /* any entry completes it */
        if (r < 0) {
            if (r == -EINTR || r == -EAGAIN) {
                vk_atomic_set(&run->immediate_exit, 0);
                vk_smp_mb();       /* K2: pairs with K1 in vmm_vcpu_kick() */
                STAT_INC(vcpu, exits_intr);
                continue;
            }
            end_with_error(vcpu, r);
            return;
        }
        /* Writes queued in the coalesced ring happened before this exit.
         * No zone registered (the usual case): the ring stays empty. */
        if (vk_unlikely(vk_atomic_read(&vcpu->hot->coalesced_used))) {
            kvm_flush_coalesced(vcpu);
        }
        TRACE_PROBE(vcpu_exit, vcpu->id, run->exit_reason);
        r = handle_exit(vcpu);
        TRACE_PROBE(vcpu_exit_done, vcpu->id, run->exit_reason, r);
        if (r < 0) {
            end_with_error(vcpu, r);
            return;
        }
        if (r == VMM_EXIT_PAUSE_VCPU) {
            vk_mutex_lock(&vcpu->vm->run_lock);
            vcpu->want_run = false;
            vk_mutex_unlock(&vcpu->vm->run_lock);
            return;
        }
        if (r == VMM_EXIT_END_VM) {
            VmmVmExit e;
            fill_exit_report(vcpu, &e, true);
            kvm_vm_end(vcpu->vm, &e);   /* no-op if the handler ended it */
            return;
        }
    }
}

static void run_work_locked(VmmVm *vm, VmmVcpu *vcpu) VMM_REQUIRES(vm->run_lock)
{
    while (vcpu->work) {
        VcpuWork *w = vcpu->work;
        vcpu->work = w->next;
        vk_mutex_unlock(&vm->run_lock);
        w->ret = w->fn(vcpu, w->opaque);
        vk_mutex_lock(&vm->run_lock);
        w->done = true;
        pthread_cond_broadcast(&vm->run_cond);
    }
}

static void *vcpu_thread(void *opaque)
{
    VmmVcpu *vcpu = opaque;
    VmmVm *vm = vcpu->vm;
    sigset_t set;

    tls_vcpu = vcpu;
    vmm_accel_cpu_slot_bind(vcpu->slot, true);
    vk_rcu_register_thread();
    vk_atomic_set(&vcpu->tid, (pid_t)syscall(SYS_gettid));
    sigemptyset(&set);
    sigaddset(&set, vm->kick_signal);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    vk_mutex_lock(&vm->run_lock);
    for (;;) {
        run_work_locked(vm, vcpu);
        if (vcpu->quit) {
            break;
        }
        if (!vcpu->want_run || vm->ended) {
            if (!vcpu->paused) {
                vcpu->paused = true;
                pthread_cond_broadcast(&vm->run_cond);
            }
            pthread_cond_wait(&vm->run_cond, &vm->run_lock.m);
            continue;
        }
        vcpu->paused = false;
        /* Under run_lock: a request made after this sees us running and
         * sets exit_request again after we cleared it. */
        vk_atomic_set(&vcpu->exit_request, 0);
        VmmVmStartFunc *start_fn = vm->start_fn;  /* taken once, under run_lock */
        void *start_opaque = vm->start_opaque;
        vm->start_fn = NULL;
        vk_mutex_unlock(&vm->run_lock);
        if (start_fn) {
            start_fn(start_opaque, true);
        }
        vcpu_exec(vcpu);
        vk_mutex_lock(&vm->run_lock);
    }
    vcpu->paused = true;
    pthread_cond_broadcast(&vm->run_cond);
    vk_mutex_unlock(&vm->run_lock);
    vk_atomic_set(&vcpu->tid, 0);
    vmm_accel_cpu_slot_bind(vcpu->slot, false);
    tls_vcpu = NULL;
    return NULL;
}

/* ---- creation and teardown -------------------------------------------------- */

static int vcpu_map(VmmVcpu *vcpu)
{
    VmmVm *vm = vcpu->vm;
    void *p;

    vcpu->mmap_size = vm->vcpu_mmap_size;
    p = vm->ops.mmap(vm->ops.opaque, vcpu->mmap_size, PROT_READ | PROT_WRITE,
                     MAP_SHARED, vcpu->fd, 0);
    if (p == MAP_FAILED) {
        return -ENOMEM;
    }
    vcpu->run = p;
    if (vm->dirty_ring_entries) {
        p = vm->ops.mmap(vm->ops.opaque,
                         vm->dirty_ring_entries * sizeof(struct kvm_dirty_gfn),
                         PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd,
                         KVM_DIRTY_LOG_PAGE_OFFSET * KVM_PAGE_SIZE);
        if (p == MAP_FAILED) {
            return -ENOMEM;
        }
        vcpu->gfns = p;
    }
    return 0;
}

static void vcpu_unmap_close(VmmVcpu *vcpu)
{
    VmmVm *vm = vcpu->vm;

    if (vcpu->gfns) {
        vm->ops.munmap(vm->ops.opaque, vcpu->gfns,
                       vm->dirty_ring_entries * sizeof(struct kvm_dirty_gfn));
    }
    if (vcpu->run) {
        vm->ops.munmap(vm->ops.opaque, vcpu->run, vcpu->mmap_size);
    }
    if (vcpu->fd >= 0) {
        vm->ops.close(vm->ops.opaque, vcpu->fd);
    }
    vmm_accel_cpu_slot_free(vcpu->slot);
    free(vcpu);
}

static int vcpu_start_thread(VmmVcpu *vcpu)
{
    sigset_t all, old;
    int r;

    /* The thread starts with every signal blocked and unblocks its kick. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    r = -vk_thread_attr_init(&attr);
    if (r == 0) {
        r = -pthread_create(&vcpu->thread, &attr, vcpu_thread, vcpu);
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r == 0) {
        pthread_setname_np(vcpu->thread, vcpu->name);
    }
    return r;
}

VmmVcpu *vmm_vcpu_new(VmmVm *vm, uint32_t id, const char *name, int *errp)
{
    VmmVcpu *vcpu;
    int r = -EINVAL;

    if (!vm || id >= KVM_MAX_VCPUS_VMM || vmm_vm_get_vcpu(vm, id)) {
        r = vm && id < KVM_MAX_VCPUS_VMM ? -EEXIST : -EINVAL;
        goto fail;
    }
    /* Page aligned: the fields every exit touches share one page. */
    if (posix_memalign((void **)&vcpu, KVM_PAGE_SIZE, sizeof(*vcpu))) {
        vcpu = NULL;
    }
    if (vcpu) {
        memset(vcpu, 0, sizeof(*vcpu));
    } else {
        r = -ENOMEM;
        goto fail;
    }
    vcpu->vm = vm;
    vcpu->hot = vm->hot;
    /* NULL: the default ops, whose ioctl the run loop makes directly. */
    vcpu->ioctl = vm->ops.ioctl == vmm_kvm_default_ops()->ioctl ? NULL : vm->ops.ioctl;
    vcpu->ops_opaque = vm->ops.opaque;
    vcpu->id = id;
    vcpu->fd = -1;
    vcpu->paused = true;        /* stopped until vmm_vm_start() */
    snprintf(vcpu->name, sizeof(vcpu->name), "%s", name ? name : "vcpu");
    r = kvm_vm_ioctl(vm, KVM_CREATE_VCPU, (void *)(uintptr_t)id);
    if (r < 0) {
        vk_error("kvm: KVM_CREATE_VCPU %u failed: %s", id, strerror(-r));
        free(vcpu);
        goto fail;
    }
    vcpu->fd = r;
    vcpu->slot = vmm_accel_cpu_slot_new(vm->gate, gate_kick, vcpu, vcpu->name, &r);
    if (!vcpu->slot || (r = vcpu_map(vcpu)) < 0) {
        vcpu_unmap_close(vcpu);
        goto fail;
    }
    kvm_state_init(vcpu);
    vk_mutex_lock(&vm->run_lock);
    if (vm->coalesced_page && !vm->coalesced) {
        vm->coalesced = (void *)((char *)vcpu->run + vm->coalesced_page * KVM_PAGE_SIZE);
    }
    r = vcpu_start_thread(vcpu);
    if (r == 0) {
        vm->vcpus[vm->nr_vcpus] = vcpu;
        /* Release pairs with the load-acquire of readers of vcpus[]. */
        vk_atomic_store_release(&vm->nr_vcpus, vm->nr_vcpus + 1);
    }
    vk_mutex_unlock(&vm->run_lock);
    if (r < 0) {
        vcpu_unmap_close(vcpu);
        goto fail;
    }
    return vcpu;
fail:
    if (errp) {
        *errp = r;
    }
    return NULL;
}

void kvm_vcpu_destroy(VmmVcpu *vcpu)
{
    VmmVm *vm = vcpu->vm;

    vk_mutex_lock(&vm->run_lock);
    vcpu->quit = true;
    kvm_vcpu_request(vcpu);
    pthread_cond_broadcast(&vm->run_cond);
    vk_mutex_unlock(&vm->run_lock);
    pthread_join(vcpu->thread, NULL);
    vcpu_unmap_close(vcpu);
}

VmmVcpu *vmm_vm_get_vcpu(VmmVm *vm, uint32_t id)
{
    unsigned n = vm ? vk_atomic_load_acquire(&vm->nr_vcpus) : 0;

    for (unsigned i = 0; i < n; i++) {
        if (vm->vcpus[i]->id == id) {
            return vm->vcpus[i];
        }
    }
    return NULL;
}

unsigned vmm_vm_nr_vcpus(VmmVm *vm)
{
    return vm ? vk_atomic_read(&vm->nr_vcpus) : 0;
}

VmmVm *vmm_vcpu_vm(VmmVcpu *vcpu)
{
    return vcpu ? vcpu->vm : NULL;
}

uint32_t vmm_vcpu_id(VmmVcpu *vcpu)
{
    return vcpu ? vcpu->id : UINT32_MAX;
}

int vmm_vcpu_fd(VmmVcpu *vcpu)
{
    return vcpu ? vcpu->fd : -EINVAL;
}

struct kvm_run *vmm_vcpu_kvm_run(VmmVcpu *vcpu)
{
    return vcpu ? vcpu->run : NULL;
}

void vmm_vcpu_get_stats(VmmVcpu *vcpu, VmmVcpuStats *out)
{
    uint64_t *dst = (uint64_t *)out, *src = (uint64_t *)&vcpu->stats;

    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++) {
        dst[i] = vk_atomic_read(&src[i]);
    }
}

/* ---- run control ----------------------------------------------------------- */

int vmm_vcpu_run_on(VmmVcpu *vcpu, VmmVcpuWorkFunc *fn, void *opaque)
{
    VmmVm *vm;
    VcpuWork w = { .fn = fn, .opaque = opaque };

    if (!vcpu || !fn) {
        return -EINVAL;
    }
    if (tls_vcpu == vcpu) {
        return fn(vcpu, opaque);
    }
    vm = vcpu->vm;
    vk_mutex_lock(&vm->run_lock);
    if (vcpu->quit) {
        vk_mutex_unlock(&vm->run_lock);
        return -ESHUTDOWN;
    }
    VcpuWork **p = &vcpu->work;
    while (*p) {
        p = &(*p)->next;
    }
    *p = &w;
    kvm_vcpu_request(vcpu);
    pthread_cond_broadcast(&vm->run_cond);
    while (!w.done) {
        pthread_cond_wait(&vm->run_cond, &vm->run_lock.m);
    }
    vk_mutex_unlock(&vm->run_lock);
    return w.ret;
}

static void wait_paused_locked(VmmVm *vm, VmmVcpu *vcpu) VMM_REQUIRES(vm->run_lock)
{
    while (!vcpu->paused && !vcpu->quit) {
        pthread_cond_wait(&vm->run_cond, &vm->run_lock.m);
    }
}

int kvm_vm_pause_all(VmmVm *vm)
{
    vk_mutex_lock(&vm->run_lock);
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        vm->vcpus[i]->want_run = false;
        kvm_vcpu_request(vm->vcpus[i]);
    }
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        wait_paused_locked(vm, vm->vcpus[i]);
    }
    vk_mutex_unlock(&vm->run_lock);
    return 0;
}

int vmm_vm_pause(VmmVm *vm)
{
    if (!vm) {
        return -EINVAL;
    }
    if (tls_vcpu) {
        return VMM_MISUSE_ERR(-EDEADLK, "vmm_vm_pause from a vCPU thread would deadlock");
    }
    return kvm_vm_pause_all(vm);
}

int vmm_vm_start(VmmVm *vm)
{
    if (!vm) {
        return -EINVAL;
    }
    vk_mutex_lock(&vm->run_lock);
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        vm->vcpus[i]->want_run = true;
    }
    pthread_cond_broadcast(&vm->run_cond);
    vk_mutex_unlock(&vm->run_lock);
    return 0;
}

int vmm_vm_resume(VmmVm *vm)
{
    return vmm_vm_start(vm);
}

int vmm_vm_start_notify(VmmVm *vm, VmmVmStartFunc *fn, void *opaque)
{
    if (!vm || !fn) {
        return -EINVAL;
    }
    vk_mutex_lock(&vm->run_lock);
    if (vm->start_fn) {
        vk_mutex_unlock(&vm->run_lock);
        return -EBUSY;
    }
    vm->start_fn = fn;
    vm->start_opaque = opaque;
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        vm->vcpus[i]->want_run = true;
    }
    pthread_cond_broadcast(&vm->run_cond);
    vk_mutex_unlock(&vm->run_lock);
    return 0;
}

int vmm_vcpu_pause(VmmVcpu *vcpu)
{
    if (!vcpu) {
        return -EINVAL;
    }
    if (tls_vcpu == vcpu) {
        return VMM_MISUSE_ERR(-EDEADLK, "vmm_vcpu_pause on the vCPU's own thread "
                              "(return VMM_EXIT_PAUSE_VCPU)");
    }
    vk_mutex_lock(&vcpu->vm->run_lock);
    vcpu->want_run = false;
    kvm_vcpu_request(vcpu);
    wait_paused_locked(vcpu->vm, vcpu);
    vk_mutex_unlock(&vcpu->vm->run_lock);
    return 0;
}

int vmm_vcpu_resume(VmmVcpu *vcpu)
{
    if (!vcpu) {
        return -EINVAL;
    }
    vk_mutex_lock(&vcpu->vm->run_lock);
    vcpu->want_run = true;
    pthread_cond_broadcast(&vcpu->vm->run_cond);
    vk_mutex_unlock(&vcpu->vm->run_lock);
    return 0;
}

bool vmm_vcpu_is_paused(VmmVcpu *vcpu)
{
    bool p;

    if (!vcpu) {
        return true;
    }
    vk_mutex_lock(&vcpu->vm->run_lock);
    p = vcpu->paused;
    vk_mutex_unlock(&vcpu->vm->run_lock);
    return p;
}
