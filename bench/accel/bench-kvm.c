/* SPDX-License-Identifier: MIT */
/*
 * bench-kvm: the vCPU runner on a real KVM (directly, or inside the
 * emulated machine: scripts/vm-run build/bench/accel/bench-accel-kvm).
 *
 *   kvm-pio-exit        ns per guest `in` exit handled through vmmkit's
 *                       runner (gate, RCU port map, handler) vs a raw
 *                       KVM_RUN loop doing the same, on the same thread:
 *                       the runner's port handler itself runs a chunk of
 *                       raw exits on a second VM after every chunk of its
 *                       own, so runner and raw chunks alternate (ABAB...)
 *                       a few milliseconds apart.  Each exit is timed
 *                       (handler to handler; raw: exit to exit) and a
 *                       chunk's figure is its median exit, so a host
 *                       preemption inside a chunk does not count.  The
 *                       figure printed is the pair whose ratio is the
 *                       median of the per-pair ratios: load drift on a
 *                       shared host hits both halves of a pair alike.
 *   kvm-pio-exit-vm     the same with a whole VM per repetition (runner
 *                       on its vCPU thread, raw loop on the main thread),
 *                       repetitions interleaved, median per-pair ratio.
 *   kvm-inhibit-<kind>-<N>  us for inhibit_begin (+end) with N vCPUs halted
 *                       in KVM_RUN (in-kernel irqchip) or spinning in the
 *                       guest, vs a raw kick (immediate_exit + signal) of one
 *                       raw vCPU thread in the same state, waited for.
 *
 * Absolute times inside the emulated machine are an emulated CPU's: judge
 * the ratios.  VMM_BENCH_QUICK=1 runs a short version.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <linux/kvm.h>

#include "../bench-util.h"
#include "vmmkit/kvm.h"

#define G(name) extern const uint8_t name[], name##_end[]
G(b_pio_loop); G(b_spin); G(b_halt);

#define RAM 0x8000

static bool quick;

static void die(const char *what)
{
    fprintf(stderr, "bench-kvm: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- the raw side: linux/kvm.h only ------------------------------------ */

typedef struct Raw {
    int kvm, vm, cpu;
    struct kvm_run *run;
    uint8_t *ram;
    pid_t tid;
    unsigned returns;
    unsigned stop;
} Raw;

static void raw_setup(Raw *r, const uint8_t *code, size_t len, bool irqchip, uint32_t edi)
{
    struct kvm_sregs s;
    struct kvm_regs regs = { .rip = 0x1000, .rflags = 2, .rsp = 0x7000, .rdi = edi };

    memset(r, 0, sizeof(*r));
    r->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (r->kvm < 0) {
        die("/dev/kvm");
    }
    r->vm = ioctl(r->kvm, KVM_CREATE_VM, 0);
    if (r->vm < 0 || ioctl(r->vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) {
        die("KVM_CREATE_VM");
    }
    if (irqchip && ioctl(r->vm, KVM_CREATE_IRQCHIP, 0) < 0) {
        die("KVM_CREATE_IRQCHIP");
    }
    r->ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(r->ram + 0x1000, code, len);
    struct kvm_userspace_memory_region m = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = RAM,
        .userspace_addr = (uintptr_t)r->ram,
    };
    if (ioctl(r->vm, KVM_SET_USER_MEMORY_REGION, &m) < 0) {
        die("KVM_SET_USER_MEMORY_REGION");
    }
    r->cpu = ioctl(r->vm, KVM_CREATE_VCPU, 0);
    int sz = ioctl(r->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    r->run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, r->cpu, 0);
    if (r->cpu < 0 || r->run == MAP_FAILED || ioctl(r->cpu, KVM_GET_SREGS, &s) < 0) {
        die("vCPU");
    }
    s.cs.base = s.ds.base = s.es.base = s.ss.base = s.fs.base = s.gs.base = 0;
    s.cs.selector = s.ds.selector = s.es.selector = s.ss.selector = 0;
    if (ioctl(r->cpu, KVM_SET_SREGS, &s) < 0 || ioctl(r->cpu, KVM_SET_REGS, &regs) < 0) {
        die("KVM_SET_REGS");
    }
}

static void raw_close(Raw *r)
{
    close(r->cpu);
    close(r->vm);
    close(r->kvm);
    munmap(r->ram, RAM);
}

/* The reference loop: KVM_RUN, answer the IN, until the OUT to 0xf0. */
static double raw_pio_ns(uint32_t n)
{
    Raw r;
    raw_setup(&r, b_pio_loop, b_pio_loop_end - b_pio_loop, false, n);
    int64_t t0 = 0;
    for (;;) {
        if (ioctl(r.cpu, KVM_RUN, 0) < 0) {
            die("KVM_RUN");
        }
        if (r.run->exit_reason != KVM_EXIT_IO) {
            die("unexpected exit");
        }
        if (!t0) {
            t0 = bench_now_ns();      /* the first exit: steady state from here */
        }
        if (r.run->io.port == 0xf0) {
            break;
        }
        *((uint8_t *)r.run + r.run->io.data_offset) = 0x5a;
    }
    double ns = (double)(bench_now_ns() - t0) / n;
    raw_close(&r);
    return ns;
}

/* ---- the same through vmmkit ------------------------------------------- */

/* Timestamps taken in the handlers, on the vCPU thread: the same points
 * as the raw loop's (first exit, final exit). */
static int64_t t_first, t_last;

static uint64_t port_read(void *o, uint64_t off, unsigned size)
{
    (void)o;
    (void)off;
    (void)size;
    if (!t_first) {
        t_first = bench_now_ns();
    }
    return 0x5a;
}

static void end_write(void *o, uint64_t off, uint64_t v, unsigned size)
{
    (void)off;
    (void)size;
    t_last = bench_now_ns();
    vmm_vm_request_end(o, v);
}

static const VmmIoOps in_ops = { port_read, NULL };
static const VmmIoOps end_ops = { NULL, end_write };

static VmmVcpu *real_mode_cpu(VmmVm *vm, uint32_t id, uint64_t rip, uint32_t edi)
{
    struct kvm_sregs s;
    struct kvm_regs r;
    VmmVcpu *v = vmm_vcpu_new(vm, id, "bench", NULL);

    if (!v || vmm_vcpu_get_sregs(v, &s) < 0) {
        die("vmm_vcpu_new");
    }
    s.cs.base = s.ds.base = s.es.base = s.ss.base = s.fs.base = s.gs.base = 0;
    s.cs.selector = s.ds.selector = s.es.selector = s.ss.selector = 0;
    vmm_vcpu_set_sregs(v, &s);
    memset(&r, 0, sizeof(r));
    r.rip = rip;
    r.rflags = 2;
    r.rsp = 0x7000;
    r.rdi = edi;
    vmm_vcpu_set_regs(v, &r);
    if (id > 0) {
        vmm_vcpu_set_mp_state(v, KVM_MP_STATE_RUNNABLE);
        vmm_vcpu_synchronize_post_reset(v);
    }
    return v;
}

static VmmVm *lib_setup(uint8_t **ram, bool irqchip)
{
    VmmVmOptions o = { .size = sizeof(o), .dirty_ring_entries = -1 };
    int err;
    VmmVm *vm = vmm_vm_new(&o, &err);

    if (!vm) {
        errno = -err;
        die("vmm_vm_new");
    }
    if (irqchip && vmm_vm_create_irqchip(vm, false) < 0) {
        die("irqchip");
    }
    *ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (vmm_vm_map_memory(vm, 0, RAM, *ram, 0) < 0) {
        die("map");
    }
    return vm;
}

static double lib_pio_ns(uint32_t n)
{
    uint8_t *ram;
    VmmVm *vm = lib_setup(&ram, false);
    VmmVmExit e;

    memcpy(ram + 0x1000, b_pio_loop, b_pio_loop_end - b_pio_loop);
    vmm_vm_register_io(vm, true, 0x10, 1, &in_ops, NULL);
    vmm_vm_register_io(vm, true, 0xf0, 1, &end_ops, vm);
    real_mode_cpu(vm, 0, 0x1000, n);
    t_first = t_last = 0;
    vmm_vm_start(vm);
    vmm_vm_wait(vm, -1, &e);
    double ns = (double)(t_last - t_first) / n;
    if (e.kind != VMM_VM_END_REQUESTED) {
        fprintf(stderr, "bench-kvm: the guest ended with kind %d\n", e.kind);
        exit(1);
    }
    vmm_vm_free(vm);
    munmap(ram, RAM);
    return ns;
}

/* ---- runner and raw loop interleaved on one thread ------------------------ */

#define MAX_PAIRS 256
#define MAX_CHUNK 256

/* One raw exit: what raw_pio_ns() does per iteration. */
static inline void raw_pio_once(Raw *r)
{
    if (ioctl(r->cpu, KVM_RUN, 0) < 0) {
        die("KVM_RUN");
    }
    if (r->run->exit_reason != KVM_EXIT_IO || r->run->io.port != 0x10) {
        die("unexpected exit");
    }
    *((uint8_t *)r->run + r->run->io.data_offset) = 0x5a;
}

typedef struct Pairs {
    VmmVm *vm;
    Raw raw;                /* the comparator's VM, run from the handler */
    int k;                  /* timed exits per chunk */
    int npairs, pair;
    int c;                  /* runner exits seen in the current chunk */
    int64_t t_prev;
    double lat[MAX_CHUNK];  /* the chunk's exit times */
    double ours[MAX_PAIRS], raw_ns[MAX_PAIRS];
} Pairs;

/*
 * The runner's port handler.  Chunk = one untimed exit (it absorbs the
 * switch from the other VM), then k timed round trips, each from one
 * handler call to the next.  After each runner chunk the raw chunk runs
 * here, on the same thread: one untimed exit, then k, each timed from one
 * exit's end to the next's.  Both sides read the clock once per exit.
 */
static uint64_t pair_read(void *o, uint64_t off, unsigned size)
{
    Pairs *p = o;
    int64_t t = bench_now_ns();

    (void)off;
    (void)size;
    if (p->pair >= p->npairs) {
        return 0x5a;        /* the end was requested: the IN completes */
    }
    if (p->c > 0) {
        p->lat[p->c - 1] = (double)(t - p->t_prev);
    }
    p->t_prev = t;
    if (p->c == p->k) {
        p->ours[p->pair] = bench_median(p->lat, p->k);
        raw_pio_once(&p->raw);
        int64_t prev = bench_now_ns();
        for (int i = 0; i < p->k; i++) {
            raw_pio_once(&p->raw);
            t = bench_now_ns();
            p->lat[i] = (double)(t - prev);
            prev = t;
        }
        p->raw_ns[p->pair] = bench_median(p->lat, p->k);
        p->c = -1;
        if (++p->pair == p->npairs) {
            vmm_vm_request_end(p->vm, 0);
        }
    }
    p->c++;
    return 0x5a;
}

static const VmmIoOps pair_ops = { pair_read, NULL };

/* Index of the pair whose ratio is the median (npairs odd). */
static int median_pair(const double *ours, const double *raw, int n)
{
    double r[MAX_PAIRS], sorted[MAX_PAIRS];

    for (int i = 0; i < n; i++) {
        r[i] = sorted[i] = ours[i] / raw[i];
    }
    double m = bench_median(sorted, n);
    for (int i = 0; i < n; i++) {
        if (r[i] == m) {
            return i;
        }
    }
    return 0;
}

static void pio_pairs(int npairs, int k)
{
    static Pairs p;         /* big: not on the stack */
    uint8_t *ram;
    VmmVmExit e;

    memset(&p, 0, sizeof(p));
    p.k = k;
    p.npairs = npairs;
    p.vm = lib_setup(&ram, false);
    /* Both guests loop on IN 0x10 for 2^32 exits: the handler decides. */
    raw_setup(&p.raw, b_pio_loop, b_pio_loop_end - b_pio_loop, false, 0);
    memcpy(ram + 0x1000, b_pio_loop, b_pio_loop_end - b_pio_loop);
    vmm_vm_register_io(p.vm, true, 0x10, 1, &pair_ops, &p);
    real_mode_cpu(p.vm, 0, 0x1000, 0);
    vmm_vm_start(p.vm);
    vmm_vm_wait(p.vm, -1, &e);
    if (e.kind != VMM_VM_END_REQUESTED || p.pair != npairs) {
        fprintf(stderr, "bench-kvm: pairs: the guest ended with kind %d\n", e.kind);
        exit(1);
    }
    vmm_vm_free(p.vm);
    munmap(ram, RAM);
    raw_close(&p.raw);

    int m = median_pair(p.ours, p.raw_ns, npairs);
    double lo = 1e9, hi = 0;
    for (int i = 0; i < npairs; i++) {
        double r = p.ours[i] / p.raw_ns[i];
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    /* The median pair, read before bench_median() sorts the arrays. */
    double ours_m = p.ours[m], raw_m = p.raw_ns[m];
    printf("# kvm-pio-exit: %d pairs of %d exits on one thread; per-pair ratios %.3f..%.3f, "
           "median %.4f; median ns runner %.0f raw %.0f\n", npairs, k, lo, hi,
           ours_m / raw_m, bench_median(p.ours, npairs), bench_median(p.raw_ns, npairs));
    bench_print("kvm-pio-exit", ours_m, "ns", "raw-kvm-run-loop", raw_m);
}

/* ---- inhibit latency ------------------------------------------------------ */

static void *raw_thread(void *opaque)
{
    Raw *r = opaque;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    __atomic_store_n(&r->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&r->stop, __ATOMIC_SEQ_CST)) {
        int rc = ioctl(r->cpu, KVM_RUN, 0);
        if (rc < 0 && errno == EINTR) {
            r->run->immediate_exit = 0;
            __atomic_fetch_add(&r->returns, 1, __ATOMIC_SEQ_CST);
            syscall(SYS_futex, &r->returns, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        }
    }
    return NULL;
}

static void noop(int sig)
{
    (void)sig;
}

/* One raw vCPU thread in @code; median us from kick to its return. */
static double raw_kick_us(const uint8_t *code, size_t len, bool irqchip, int rounds)
{
    Raw r;
    pthread_t t;
    double v[256];

    raw_setup(&r, code, len, irqchip, 0);
    pthread_create(&t, NULL, raw_thread, &r);
    while (!__atomic_load_n(&r.tid, __ATOMIC_SEQ_CST)) {
        usleep(100);
    }
    usleep(5000);
    for (int i = 0; i < rounds; i++) {
        unsigned before = __atomic_load_n(&r.returns, __ATOMIC_SEQ_CST);
        int64_t t0 = bench_now_ns();
        __atomic_store_n(&r.run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_tgkill, getpid(), r.tid, SIGUSR2);
        while (__atomic_load_n(&r.returns, __ATOMIC_SEQ_CST) == before) {
            /* Sleep as the gate's inhibitor does: the vCPU may need this CPU. */
            syscall(SYS_futex, &r.returns, FUTEX_WAIT_PRIVATE, before, NULL, NULL, 0);
        }
        v[i] = (bench_now_ns() - t0) / 1000.0;
        usleep(1000);
    }
    __atomic_store_n(&r.stop, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&r.run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_tgkill, getpid(), r.tid, SIGUSR2);
    pthread_join(t, NULL);
    raw_close(&r);
    return bench_median(v, rounds);
}

static double lib_inhibit_us(const uint8_t *code, size_t len, bool irqchip, int n,
                             int rounds)
{
    uint8_t *ram;
    VmmVm *vm = lib_setup(&ram, irqchip);
    double v[256];

    memcpy(ram + 0x1000, code, len);
    for (int i = 0; i < n; i++) {
        real_mode_cpu(vm, i, 0x1000, 0);
    }
    vmm_vm_start(vm);
    usleep(20000);
    VmmAccelGate *g = vmm_vm_gate(vm);
    for (int i = 0; i < rounds; i++) {
        int64_t t0 = bench_now_ns();
        vmm_accel_ioctl_inhibit_begin(g);
        v[i] = (bench_now_ns() - t0) / 1000.0;
        vmm_accel_ioctl_inhibit_end(g);
        usleep(1000);
    }
    vmm_vm_pause(vm);
    vmm_vm_free(vm);
    munmap(ram, RAM);
    return bench_median(v, rounds);
}

int main(void)
{
    struct sigaction sa = { .sa_handler = noop };
    char name[64];

    quick = getenv("VMM_BENCH_QUICK") != NULL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);     /* the raw kicks; vmmkit's is SIGUSR1 */

    uint32_t n = quick ? 500 : 2000;
    int reps = quick ? 1 : 15;
    double raw[16], ours[16];
    raw_pio_ns(n / 10);                 /* warm up */
    lib_pio_ns(n / 10);
    pio_pairs(quick ? 5 : 101, quick ? 20 : 100);
    for (int i = 0; i < reps; i++) {    /* interleaved pairs: same conditions */
        if (i % 2) {
            ours[i] = lib_pio_ns(n);
            raw[i] = raw_pio_ns(n);
        } else {
            raw[i] = raw_pio_ns(n);
            ours[i] = lib_pio_ns(n);
        }
    }
    int m = median_pair(ours, raw, reps);
    bench_print("kvm-pio-exit-vm", ours[m], "ns", "raw-kvm-run-loop", raw[m]);

    int rounds = quick ? 5 : 41;
    double floor_h = raw_kick_us(b_halt, b_halt_end - b_halt, true, rounds);
    double floor_s = raw_kick_us(b_spin, b_spin_end - b_spin, false, rounds);
    for (int cpus = 1; cpus <= 2; cpus++) {
        double h = lib_inhibit_us(b_halt, b_halt_end - b_halt, true, cpus, rounds);
        double s = lib_inhibit_us(b_spin, b_spin_end - b_spin, false, cpus, rounds);
        snprintf(name, sizeof(name), "kvm-inhibit-halted-%d", cpus);
        bench_print(name, h, "us", "raw-kick-halted-1", floor_h);
        snprintf(name, sizeof(name), "kvm-inhibit-spinning-%d", cpus);
        bench_print(name, s, "us", "raw-kick-spinning-1", floor_s);
    }
    return 0;
}
