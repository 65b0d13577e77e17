/* SPDX-License-Identifier: MIT */
/* KVM VMs: open, capability checks, creation, teardown, end reports. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "accel/kvm/kvm-internal.h"
#include "util/atomic.h"
#include "util/log.h"

/* What vmmkit cannot work without. */
static const long required_caps[] = {
    KVM_CAP_USER_MEMORY, KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_IOEVENTFD,
    KVM_CAP_IRQFD, KVM_CAP_SET_TSS_ADDR, KVM_CAP_EXT_CPUID, KVM_CAP_MP_STATE,
};

static int check_ext(VmmVm *vm, long cap)
{
    int r = kvm_sys_ioctl(vm, KVM_CHECK_EXTENSION, (void *)cap);
    return r < 0 ? 0 : r;
}

/* The XSAVE area's size: KVM_CAP_XSAVE2 reports the whole uABI buffer
 * (>= 4096; more with AMX tiles, when this process may give them to
 * guests); without it KVM_GET_XSAVE's 4096. */
static void xsave_caps(VmmVm *vm)
{
    int size = vm->has_xsave ? check_ext(vm, KVM_CAP_XSAVE2) : 0;

    vm->has_xsave2 = false;
    vm->xsave_size = vm->has_xsave ? sizeof(struct kvm_xsave) : 0;
    if (size < (int)sizeof(struct kvm_xsave)) {
        return;
    }
    if (size > VMM_XSAVE_MAX) {
        vk_warn("kvm: the XSAVE area takes %d bytes, more than VMM_XSAVE_MAX (%d): "
                 "only the legacy 4096 are saved", size, VMM_XSAVE_MAX);
        return;
    }
    vm->has_xsave2 = true;
    vm->xsave_size = size;
}

int vmm_vm_check_extension(VmmVm *vm, long cap)
{
    if (!vm) {
        return -EINVAL;
    }
    /* The VM-fd form reports per-VM values (KVM_CAP_CHECK_EXTENSION_VM). */
    return kvm_vm_ioctl(vm, KVM_CHECK_EXTENSION, (void *)cap);
}

static int load_msr_list(VmmVm *vm)
{
    struct kvm_msr_list probe = { .nmsrs = 0 };
    struct kvm_msr_list *list;
    int r = kvm_sys_ioctl(vm, KVM_GET_MSR_INDEX_LIST, &probe);

    if (r < 0 && r != -E2BIG) {
        return r;
    }
    if (probe.nmsrs == 0 || probe.nmsrs > 4096) {
        return 0;
    }
    list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
    if (!list) {
        return -ENOMEM;
    }
    list->nmsrs = probe.nmsrs;
    r = kvm_sys_ioctl(vm, KVM_GET_MSR_INDEX_LIST, list);
    if (r < 0) {
        free(list);
        return r;
    }
    vm->nr_msr_list = list->nmsrs;
    vm->msr_list = malloc(list->nmsrs * sizeof(uint32_t));
    if (!vm->msr_list) {
        free(list);
        return -ENOMEM;
    }
    memcpy(vm->msr_list, list->indices, list->nmsrs * sizeof(uint32_t));
    free(list);
    return 0;
}

static void kick_handler(int sig)
{
    (void)sig;      /* only interrupts KVM_RUN; immediate_exit does the rest */
}

/* A signal the application may hand us: not one the kernel raises for a
 * fault (its handler must not return) nor one glibc keeps for itself. */
static bool kick_signal_valid(int sig)
{
    switch (sig) {
    case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS: case SIGFPE:
    case SIGILL: case SIGTRAP: case SIGABRT: case SIGSYS:
        return false;
    default:
        return sig > 0 && sig < NSIG && (sig < 32 || sig >= SIGRTMIN);
    }
}

/*
 * The kick signal's handler does nothing: the signal only has to be
 * delivered for KVM_RUN to return -EINTR (KVM returns -EINTR itself, which
 * is never restarted).  SA_RESTART is set so that the other system calls a
 * vCPU thread makes (device callbacks reading files, futex waits) resume
 * instead of failing with EINTR when a kick arrives outside KVM_RUN.  The
 * signal is the process's: installed once, on the first VM that names it;
 * a signal that already has another handler is refused (-EBUSY) rather
 * than taken from the application.
 */
static int install_kick_signal(int sig)
{
    static int installed[NSIG];
    struct sigaction sa, old;

    if (!kick_signal_valid(sig)) {
        vk_error("kvm: signal %d cannot be the kick signal", sig);
        return -EINVAL;
    }
    if (vk_atomic_read(&installed[sig])) {
        return 0;
    }
    if (sigaction(sig, NULL, &old) < 0) {
        return -errno;
    }
    if ((old.sa_flags & SA_SIGINFO) ||
        (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN &&
         old.sa_handler != kick_handler)) {
        vk_error("kvm: signal %d, the kick signal, already has a handler: pick another "
                  "with VmmVmOptions.kick_signal", sig);
        return -EBUSY;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) < 0) {
        return -errno;
    }
    vk_atomic_set(&installed[sig], 1);
    return 0;
}

static int enable_dirty_ring(VmmVm *vm, int want)
{
    long cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
    int max = check_ext(vm, cap);
    uint32_t entries = want > 0 ? (uint32_t)want : 4096;
    struct kvm_enable_cap ec = { 0 };
    int r;

    if (want < 0) {
        return 0;
    }
    if (max <= 0) {
        cap = KVM_CAP_DIRTY_LOG_RING;
        max = check_ext(vm, cap);
    }
    if (max <= 0) {
        if (want > 0) {
            vk_error("kvm: dirty ring asked for, but KVM lacks KVM_CAP_DIRTY_LOG_RING");
            return -EOPNOTSUPP;
        }
        return 0;
    }
    if (entries & (entries - 1)) {
        return -EINVAL;
    }
    while ((uint64_t)entries * sizeof(struct kvm_dirty_gfn) > (uint64_t)max) {
        entries /= 2;
    }
    if (entries < 16) {
        return want > 0 ? -EINVAL : 0;
    }
    ec.cap = cap;
    ec.args[0] = (uint64_t)entries * sizeof(struct kvm_dirty_gfn);
    r = kvm_vm_ioctl(vm, KVM_ENABLE_CAP, &ec);
    if (r < 0) {
        if (want > 0) {
            return r;
        }
        vk_warn("kvm: enabling the dirty ring failed (%s); using the bitmap",
                 strerror(-r));
        return 0;
    }
    vm->dirty_ring_entries = entries;
    return 0;
}

static int vm_probe_caps(VmmVm *vm)
{
    int v;

    v = kvm_sys_ioctl(vm, KVM_GET_API_VERSION, NULL);
    if (v != KVM_API_VERSION) {
        vk_error("kvm: API version %d, vmmkit needs %d", v, KVM_API_VERSION);
        return v < 0 ? v : -EOPNOTSUPP;
    }
    for (size_t i = 0; i < VMM_ARRAY_SIZE(required_caps); i++) {
        if (check_ext(vm, required_caps[i]) <= 0) {
            vk_error("kvm: the kernel lacks %s, which vmmkit needs",
                      kvm_cap_name(required_caps[i]));
            return -EOPNOTSUPP;
        }
    }
    v = kvm_sys_ioctl(vm, KVM_GET_VCPU_MMAP_SIZE, NULL);
    if (v < (int)sizeof(struct kvm_run)) {
        vk_error("kvm: bad vCPU mmap size %d", v);
        return v < 0 ? v : -EINVAL;
    }
    vm->vcpu_mmap_size = v;
    vm->coalesced_page = check_ext(vm, KVM_CAP_COALESCED_MMIO);
    if (vm->coalesced_page < 0 ||
        (size_t)vm->coalesced_page * KVM_PAGE_SIZE >= vm->vcpu_mmap_size) {
        vm->coalesced_page = 0;
    }
    vm->has_xsave = check_ext(vm, KVM_CAP_XSAVE) > 0;
    xsave_caps(vm);
    vm->has_xcrs = check_ext(vm, KVM_CAP_XCRS) > 0;
    vm->has_debugregs = check_ext(vm, KVM_CAP_DEBUGREGS) > 0;
    vm->has_events = check_ext(vm, KVM_CAP_VCPU_EVENTS) > 0;
    vm->has_msi = check_ext(vm, KVM_CAP_SIGNAL_MSI) > 0;
    vm->has_routing = check_ext(vm, KVM_CAP_IRQ_ROUTING) > 0;
    v = check_ext(vm, KVM_CAP_NR_MEMSLOTS);
    vm->max_slots = v > 0 ? (uint32_t)v : 32;
    if (vm->max_slots > KVM_MAX_SLOTS_VMM) {
        vm->max_slots = KVM_MAX_SLOTS_VMM;
    }
    return 0;
}

static void vm_init_locks(VmmVm *vm)
{
    pthread_mutex_init(&vm->mem_lock.m, NULL);
    pthread_mutex_init(&vm->dirty_lock.m, NULL);
    pthread_mutex_init(&vm->io_lock.m, NULL);
    pthread_mutex_init(&vm->run_lock.m, NULL);
    pthread_mutex_init(&vm->coalesced_lock.m, NULL);
    pthread_mutex_init(&vm->route_lock.m, NULL);
    pthread_cond_init(&vm->run_cond, NULL);
}

static void vm_close(VmmVm *vm)
{
    if (vm->vm_fd >= 0) {
        vm->ops.close(vm->ops.opaque, vm->vm_fd);
    }
    if (vm->kvm_fd >= 0) {
        vm->ops.close(vm->ops.opaque, vm->kvm_fd);
    }
    vmm_accel_gate_free(vm->gate);
    free(vm->msr_list);
    free(vm->routes);
    pthread_mutex_destroy(&vm->mem_lock.m);
    pthread_mutex_destroy(&vm->dirty_lock.m);
    pthread_mutex_destroy(&vm->io_lock.m);
    pthread_mutex_destroy(&vm->run_lock.m);
    pthread_mutex_destroy(&vm->coalesced_lock.m);
    pthread_mutex_destroy(&vm->route_lock.m);
    pthread_cond_destroy(&vm->run_cond);
    free(vm);
}

static int vm_create(VmmVm *vm, const VmmVmOptions *opts)
{
    const char *path = opts && opts->dev_path ? opts->dev_path : "/dev/kvm";
    int r;

    r = vm->ops.open_dev(vm->ops.opaque, path);
    if (r < 0) {
        vk_error("kvm: cannot open %s: %s", path, strerror(-r));
        return r;
    }
    vm->kvm_fd = r;
    r = vm_probe_caps(vm);
    if (r < 0) {
        return r;
    }
    r = kvm_sys_ioctl(vm, KVM_CREATE_VM, (void *)0UL);
    if (r < 0) {
        vk_error("kvm: KVM_CREATE_VM failed: %s", strerror(-r));
        return r;
    }
    vm->vm_fd = r;
    /* x86: the three pages KVM needs for real mode on VMX, below 4 GiB and
     * out of the way of RAM and the usual MMIO holes. */
    r = kvm_vm_ioctl(vm, KVM_SET_TSS_ADDR, (void *)0xfffbd000UL);
    if (r < 0) {
        return r;
    }
    if (check_ext(vm, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
        uint64_t addr = 0xfffbc000ULL;
        r = kvm_vm_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &addr);
        if (r < 0) {
            return r;
        }
    }
    r = enable_dirty_ring(vm, opts ? opts->dirty_ring_entries : 0);
    if (r < 0) {
        return r;
    }
    r = load_msr_list(vm);
    if (r < 0) {
        return r;
    }
    return install_kick_signal(vm->kick_signal);
}

VmmVm *vmm_vm_new(const VmmVmOptions *opts, int *errp)
{
    VmmVm *vm;
    int r;

    if (opts && opts->size < offsetof(VmmVmOptions, kick_signal) + sizeof(int)) {
        r = -EINVAL;
        goto fail;
    }
    if (opts && opts->ops && (opts->ops->size < sizeof(VmmKvmOps) ||
                              !opts->ops->open_dev || !opts->ops->ioctl ||
                              !opts->ops->mmap || !opts->ops->munmap ||
                              !opts->ops->close)) {
        r = -EINVAL;
        goto fail;
    }
    /* Page aligned: the fields every exit touches share one page. */
    if (posix_memalign((void **)&vm, KVM_PAGE_SIZE, sizeof(*vm))) {
        vm = NULL;
    }
    if (vm) {
        memset(vm, 0, sizeof(*vm));
    } else {
        r = -ENOMEM;
        goto fail;
    }
    vm->ops = opts && opts->ops ? *opts->ops : *vmm_kvm_default_ops();
    vm->kvm_fd = vm->vm_fd = -1;
    vm->kick_signal = opts && opts->kick_signal ? opts->kick_signal : SIGUSR1;
    vm_init_locks(vm);
    vm->gate = vmm_accel_gate_new(&r);
    if (!vm->gate) {
        vm_close(vm);
        goto fail;
    }
    kvm_io_init(vm);
    r = vm_create(vm, opts);
    if (r < 0) {
        kvm_io_destroy(vm);
        vm_close(vm);
        goto fail;
    }
    return vm;
fail:
    if (errp) {
        *errp = r;
    }
    return NULL;
}

void vmm_vm_free(VmmVm *vm)
{
    if (!vm) {
        return;
    }
    if (vmm_vcpu_current()) {
        VMM_MISUSE("vmm_vm_free from a vCPU thread");
        return;
    }
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        kvm_vcpu_destroy(vm->vcpus[i]);
    }
    if (vm->start_fn) {             /* no vCPU thread left to take it */
        vm->start_fn(vm->start_opaque, false);
        vm->start_fn = NULL;
    }
    kvm_mem_destroy(vm);
    kvm_io_destroy(vm);
    vm_close(vm);
}

int vmm_vm_fd(VmmVm *vm)
{
    return vm ? vm->vm_fd : -EINVAL;
}

VmmAccelGate *vmm_vm_gate(VmmVm *vm)
{
    return vm ? vm->gate : NULL;
}

struct kvm_cpuid2 *vmm_vm_get_supported_cpuid(VmmVm *vm, int *errp)
{
    int n = 64, r = -EINVAL;

    while (vm && n <= 4096) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
        if (!c) {
            r = -ENOMEM;
            break;
        }
        c->nent = n;
        r = kvm_sys_ioctl(vm, KVM_GET_SUPPORTED_CPUID, c);
        if (r >= 0) {
            return c;
        }
        free(c);
        if (r != -E2BIG) {
            break;
        }
        n *= 2;
    }
    if (errp) {
        *errp = r;
    }
    return NULL;
}

/* ---- end reports and waiting ------------------------------------------ */

void kvm_vm_end_locked(VmmVm *vm, const VmmVmExit *e)
{
    if (vm->ended) {
        return;
    }
    vm->end = *e;
    vm->ended = true;
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        kvm_vcpu_request(vm->vcpus[i]);
    }
    pthread_cond_broadcast(&vm->run_cond);
}

void kvm_vm_end(VmmVm *vm, const VmmVmExit *e)
{
    vk_mutex_lock(&vm->run_lock);
    kvm_vm_end_locked(vm, e);
    vk_mutex_unlock(&vm->run_lock);
}

void vmm_vm_request_end(VmmVm *vm, uint64_t code)
{
    VmmVmExit e = { .kind = VMM_VM_END_REQUESTED, .code = code };
    VmmVcpu *self = vmm_vcpu_current();

    if (!vm) {
        return;
    }
    e.vcpu_id = self ? self->id : UINT32_MAX;
    kvm_vm_end(vm, &e);
}

int vmm_vm_wait(VmmVm *vm, int64_t timeout_ns, VmmVmExit *out)
{
    struct timespec ts;
    int r = 0;

    if (!vm) {
        return -EINVAL;
    }
    if (vmm_vcpu_current()) {
        return VMM_MISUSE_ERR(-EDEADLK, "vmm_vm_wait from a vCPU thread would deadlock");
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    if (timeout_ns >= 0) {
        ts.tv_sec += timeout_ns / 1000000000LL;
        ts.tv_nsec += timeout_ns % 1000000000LL;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    vk_mutex_lock(&vm->run_lock);
    while (!vm->ended && r == 0) {
        if (timeout_ns < 0) {
            pthread_cond_wait(&vm->run_cond, &vm->run_lock.m);
        } else if (pthread_cond_timedwait(&vm->run_cond, &vm->run_lock.m, &ts) == ETIMEDOUT) {
            r = vm->ended ? 0 : -ETIMEDOUT;
        }
    }
    if (r == 0 && out) {
        *out = vm->end;
    }
    vk_mutex_unlock(&vm->run_lock);
    if (r == 0) {
        r = kvm_vm_pause_all(vm);
    }
    return r;
}

void vmm_vm_clear_end(VmmVm *vm)
{
    if (!vm) {
        return;
    }
    vk_mutex_lock(&vm->run_lock);
    vm->ended = false;
    memset(&vm->end, 0, sizeof(vm->end));
    vk_mutex_unlock(&vm->run_lock);
}

int vmm_vm_set_exit_handler(VmmVm *vm, uint32_t exit_reason, VmmExitHandler *fn,
                            void *opaque)
{
    if (!vm || exit_reason >= KVM_MAX_EXIT_REASON || exit_reason == KVM_EXIT_IO ||
        exit_reason == KVM_EXIT_MMIO) {
        return -EINVAL;
    }
    vk_mutex_lock(&vm->run_lock);
    /* Release pairs with the acquire load in the vCPU's dispatch. */
    vk_atomic_set(&vm->handlers[exit_reason].opaque, opaque);
    vk_atomic_store_release(&vm->handlers[exit_reason].fn, fn);
    vk_mutex_unlock(&vm->run_lock);
    return 0;
}
