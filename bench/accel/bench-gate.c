/* SPDX-License-Identifier: MIT */
/*
 * bench-gate: the accel-blocker fast path and the inhibit latency.
 *
 *   gate-cpu-pair-t1/t2   ns per vmm_accel_cpu_ioctl_begin+end on the vCPU's
 *                         own thread, with 1 and 2 threads (one slot each),
 *                         vs a QemuLockCnt-style cmpxchg counter gate
 *                         (cmpxchg inc, atomic dec, event-set check) and vs
 *                         pthread_rwlock rdlock/unlock on a shared lock.
 *   gate-vm-pair-t1       ns per vmm_accel_ioctl_begin+end (shared path).
 *   gate-inhibit-<N>      us per inhibit_begin+end with N fake vCPUs that
 *                         are halted (blocked until kicked) or spinning in
 *                         their bracket, vs a bare membarrier() (+ wake-ups).
 *
 * Timing: median of R repetitions, each per-thread CPU time over the
 * iterations (the machine is shared, see perf-anchors.md section 0).
 * VMM_BENCH_QUICK=1 runs a few iterations only.
 */
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmmkit/accel.h"
#include "../bench-util.h"
#include "accel/futex.h"
#include "util/atomic.h"
#include "util/compiler.h"

#ifdef __clang__
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

static bool quick;
static long iters;
static int reps;

/* ---- the comparators ----------------------------------------------------- */

/* QemuLockCnt-style gate: counter in steps of 4, low bits = lock state. */
typedef struct CmpxchgGate {
    unsigned count VMM_CACHE_ALIGNED;
    unsigned event;
} CmpxchgGate;

static inline void cg_begin(CmpxchgGate *g)
{
    unsigned v = vk_atomic_read(&g->count);
    for (;;) {
        if (v & 3) {            /* locked: would wait; never in this bench */
            v = vk_atomic_read(&g->count);
            continue;
        }
        unsigned old = vk_atomic_cmpxchg(&g->count, v, v + 4);
        if (old == v) {
            return;
        }
        v = old;
    }
}

static inline void cg_end(CmpxchgGate *g)
{
    vk_atomic_fetch_sub(&g->count, 4);
    if (vk_atomic_read(&g->event) == 0) {      /* qemu_event_set's check */
        vk_atomic_xchg(&g->event, 1);
    }
}

typedef enum Kind { K_GATE_CPU, K_GATE_VM, K_CMPXCHG, K_RWLOCK } Kind;

typedef struct PairArgs {
    Kind kind;
    VmmAccelGate *gate;
    VmmAccelCpuSlot *slot;
    CmpxchgGate *cg;
    pthread_rwlock_t *rw;
    pthread_barrier_t *bar;
    double ns;
} PairArgs;

static void noop_kick(void *o)
{
    (void)o;
}

static void *pair_thread(void *opaque)
{
    PairArgs *a = opaque;
    double v[64];

    if (a->slot) {
        vmm_accel_cpu_slot_bind(a->slot, true);
    }
    for (int r = 0; r < reps; r++) {
        pthread_barrier_wait(a->bar);
        int64_t t0 = bench_cpu_ns();
        switch (a->kind) {
        case K_GATE_CPU:
            for (long i = 0; i < iters; i++) {
                vmm_accel_cpu_ioctl_begin(a->slot);
                vk_barrier();
                vmm_accel_cpu_ioctl_end(a->slot);
            }
            break;
        case K_GATE_VM:
            for (long i = 0; i < iters; i++) {
                vmm_accel_ioctl_begin(a->gate);
                vk_barrier();
                vmm_accel_ioctl_end(a->gate);
            }
            break;
        case K_CMPXCHG:
            for (long i = 0; i < iters; i++) {
                cg_begin(a->cg);
                vk_barrier();
                cg_end(a->cg);
            }
            break;
        case K_RWLOCK:
            for (long i = 0; i < iters; i++) {
                pthread_rwlock_rdlock(a->rw);
                vk_barrier();
                pthread_rwlock_unlock(a->rw);
            }
            break;
        }
        v[r] = (double)(bench_cpu_ns() - t0) / iters;
    }
    a->ns = bench_median(v, reps);
    if (a->slot) {
        vmm_accel_cpu_slot_bind(a->slot, false);
    }
    return NULL;
}

/* Runs @nthreads threads of @kind; returns the mean of their medians. */
static double run_pairs(Kind kind, int nthreads)
{
    VmmAccelGate *gate = vmm_accel_gate_new(NULL);
    CmpxchgGate cg = { 0, 1 };
    pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
    pthread_barrier_t bar;
    PairArgs args[2];
    pthread_t t[2];
    double sum = 0;

    pthread_barrier_init(&bar, NULL, nthreads);
    for (int i = 0; i < nthreads; i++) {
        args[i] = (PairArgs){ .kind = kind, .gate = gate, .cg = &cg, .rw = &rw, .bar = &bar };
        if (kind == K_GATE_CPU) {
            args[i].slot = vmm_accel_cpu_slot_new(gate, noop_kick, NULL, "bench", NULL);
        }
        pthread_create(&t[i], NULL, pair_thread, &args[i]);
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        sum += args[i].ns;
        vmm_accel_cpu_slot_free(args[i].slot);
    }
    pthread_barrier_destroy(&bar);
    vmm_accel_gate_free(gate);
    return sum / nthreads;
}

/* ---- inhibit latency ------------------------------------------------------ */

typedef struct FakeCpu {
    VmmAccelCpuSlot *slot;
    unsigned kicked;
    bool halt;
    unsigned *stop;
} FakeCpu;

static void fake_kick(void *opaque)
{
    FakeCpu *c = opaque;
    vk_atomic_store_release(&c->kicked, 1);
    vk_futex_wake(&c->kicked, 1);
}

static void *fake_cpu(void *opaque)
{
    FakeCpu *c = opaque;

    vmm_accel_cpu_slot_bind(c->slot, true);
    while (!vk_atomic_read(c->stop)) {
        vmm_accel_cpu_ioctl_begin(c->slot);
        if (c->halt) {
            while (!vk_atomic_xchg(&c->kicked, 0) && !vk_atomic_read(c->stop)) {
                vk_futex_wait(&c->kicked, 0, NULL);
            }
        } else {
            /* "Guest code" that spins until kicked. */
            while (!vk_atomic_xchg(&c->kicked, 0) && !vk_atomic_read(c->stop)) {
                vk_barrier();
            }
        }
        vmm_accel_cpu_ioctl_end(c->slot);
    }
    vmm_accel_cpu_slot_bind(c->slot, false);
    return NULL;
}

static double inhibit_latency_us(int n, bool halt, int rounds)
{
    VmmAccelGate *gate = vmm_accel_gate_new(NULL);
    unsigned stop = 0;
    FakeCpu cpus[8];
    pthread_t t[8];
    double v[256];

    for (int i = 0; i < n; i++) {
        cpus[i] = (FakeCpu){ .halt = halt, .stop = &stop };
        cpus[i].slot = vmm_accel_cpu_slot_new(gate, fake_kick, &cpus[i], "fake", NULL);
        pthread_create(&t[i], NULL, fake_cpu, &cpus[i]);
    }
    usleep(2000);
    for (int r = 0; r < rounds; r++) {
        int64_t t0 = bench_now_ns();
        vmm_accel_ioctl_inhibit_begin(gate);
        vmm_accel_ioctl_inhibit_end(gate);
        v[r] = (bench_now_ns() - t0) / 1000.0;
        usleep(500);
    }
    vk_atomic_set(&stop, 1);
    for (int i = 0; i < n; i++) {
        fake_kick(&cpus[i]);
        pthread_join(t[i], NULL);
        vmm_accel_cpu_slot_free(cpus[i].slot);
    }
    vmm_accel_gate_free(gate);
    return bench_median(v, rounds);
}

/* The floor: one membarrier() with the same threads alive and blocked. */
static double membarrier_us(int rounds)
{
    double v[256];
    for (int r = 0; r < rounds; r++) {
        int64_t t0 = bench_now_ns();
        syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
        v[r] = (bench_now_ns() - t0) / 1000.0;
    }
    return bench_median(v, rounds);
}

int main(void)
{
    char name[64];

    quick = getenv("VMM_BENCH_QUICK") != NULL;
    iters = quick ? 1000 : 2000000;
    reps = quick ? 3 : 9;

    printf("# membarrier fast path: %s\n", vmm_accel_uses_membarrier() ? "yes" : "no");
    for (int t = 1; t <= 2; t++) {
        double gate = run_pairs(K_GATE_CPU, t);
        double cg = run_pairs(K_CMPXCHG, t);
        double rw = run_pairs(K_RWLOCK, t);
        snprintf(name, sizeof(name), "gate-cpu-pair-t%d", t);
        bench_print(name, gate, "ns", "cmpxchg-counter-gate", cg);
        bench_print(name, gate, "ns", "pthread-rwlock", rw);
    }
    double vm = run_pairs(K_GATE_VM, 1);
    double cg1 = run_pairs(K_CMPXCHG, 1);
    bench_print("gate-vm-pair-t1", vm, "ns", "cmpxchg-counter-gate", cg1);

    int rounds = quick ? 5 : 101;
    double floor_us = membarrier_us(rounds);
    for (int n = 1; n <= 4; n *= 2) {
        double h = inhibit_latency_us(n, true, rounds);
        double s = inhibit_latency_us(n, false, rounds);
        snprintf(name, sizeof(name), "gate-inhibit-halted-%d", n);
        bench_print(name, h, "us", "membarrier", floor_us);
        snprintf(name, sizeof(name), "gate-inhibit-spinning-%d", n);
        bench_print(name, s, "us", "membarrier", floor_us);
    }
    return 0;
}
