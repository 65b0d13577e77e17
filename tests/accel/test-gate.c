/* SPDX-License-Identifier: MIT */
/*
 * The accel-blocker gate: semantics, nesting, several gates, misuse
 * (debug builds) and a many-thread stress test that checks the inhibit
 * guarantees (suite 'concurrency', also run under ThreadSanitizer).
 *
 * Stress knobs: VMM_STRESS_MS (duration of each stress case, default 300),
 * VMM_STRESS_THREADS (vCPU threads, default 6).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmmkit/accel.h"
#include "accel/futex.h"
#include "util/atomic.h"
#include "util/compiler.h"

/* This test nests, inhibits while nested and misuses the gate on purpose,
 * which the thread-safety annotations (rightly) reject in normal code. */
#ifdef __clang__
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void noop_kick(void *opaque)
{
    (void)opaque;
}

/* ---- single-threaded semantics ----------------------------------------- */

static void test_basic(void **state)
{
    (void)state;
    int err = 0;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    assert_non_null(g);

    vmm_accel_ioctl_begin(g);
    vmm_accel_ioctl_begin(g);       /* nests */
    vmm_accel_ioctl_end(g);
    vmm_accel_ioctl_end(g);
    assert_false(vmm_accel_ioctl_inhibited(g));

    vmm_accel_ioctl_inhibit_begin(g);
    assert_true(vmm_accel_ioctl_inhibited(g));
    vmm_accel_ioctl_inhibit_begin(g);       /* nests on the same thread */
    /* The inhibitor passes its own gate. */
    vmm_accel_ioctl_begin(g);
    vmm_accel_ioctl_end(g);
    vmm_accel_ioctl_inhibit_end(g);
    assert_true(vmm_accel_ioctl_inhibited(g));
    vmm_accel_ioctl_inhibit_end(g);
    assert_false(vmm_accel_ioctl_inhibited(g));
    assert_int_equal(vmm_accel_gate_inhibit_count(g), 1);

    VmmAccelCpuSlot *s = vmm_accel_cpu_slot_new(g, noop_kick, NULL, "cpu0", &err);
    assert_non_null(s);
    assert_int_equal(vmm_accel_cpu_slot_bind(s, true), 0);
    vmm_accel_cpu_ioctl_begin(s);
    vmm_accel_ioctl_begin(g);       /* a VM ioctl on the vCPU thread nests */
    vmm_accel_ioctl_end(g);
    vmm_accel_cpu_ioctl_end(s);
    assert_int_equal(vmm_accel_cpu_slot_bind(s, false), 0);
    /* Not the owner any more: the shared path, still correct. */
    vmm_accel_cpu_ioctl_begin(s);
    vmm_accel_cpu_ioctl_end(s);
    vmm_accel_cpu_slot_free(s);
    vmm_accel_gate_free(g);
}

static void test_bad_args(void **state)
{
    (void)state;
    int err = 0;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    assert_null(vmm_accel_cpu_slot_new(NULL, noop_kick, NULL, "x", &err));
    assert_int_equal(err, -EINVAL);
    assert_null(vmm_accel_cpu_slot_new(g, NULL, NULL, "x", &err));
    assert_int_equal(err, -EINVAL);
    assert_int_equal(vmm_accel_cpu_slot_bind(NULL, true), -EINVAL);
    vmm_accel_gate_free(NULL);
    vmm_accel_cpu_slot_free(NULL);
    vmm_accel_gate_free(g);
}

/* ---- blocking: an ioctl that starts while inhibited waits ---------------- */

typedef struct BlockArgs {
    VmmAccelGate *gate;
    VmmAccelCpuSlot *slot;      /* NULL: VM ioctl path */
    unsigned started, entered;
} BlockArgs;

static void *block_thread(void *opaque)
{
    BlockArgs *a = opaque;
    if (a->slot) {
        vmm_accel_cpu_slot_bind(a->slot, true);
    }
    vk_atomic_set(&a->started, 1);
    if (a->slot) {
        vmm_accel_cpu_ioctl_begin(a->slot);
    } else {
        vmm_accel_ioctl_begin(a->gate);
    }
    vk_atomic_store_release(&a->entered, 1);
    if (a->slot) {
        vmm_accel_cpu_ioctl_end(a->slot);
        vmm_accel_cpu_slot_bind(a->slot, false);
    } else {
        vmm_accel_ioctl_end(a->gate);
    }
    return NULL;
}

static void check_blocks(bool with_slot)
{
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    BlockArgs a = { .gate = g };
    pthread_t t;

    if (with_slot) {
        a.slot = vmm_accel_cpu_slot_new(g, noop_kick, NULL, "blk", &err);
    }
    vmm_accel_ioctl_inhibit_begin(g);
    pthread_create(&t, NULL, block_thread, &a);
    while (!vk_atomic_read(&a.started)) {
        sched_yield();
    }
    /* Give it time to (wrongly) pass; it must not while we inhibit. */
    for (int i = 0; i < 200; i++) {
        sched_yield();
        assert_int_equal(vk_atomic_load_acquire(&a.entered), 0);
    }
    usleep(20000);
    assert_int_equal(vk_atomic_load_acquire(&a.entered), 0);
    vmm_accel_ioctl_inhibit_end(g);
    pthread_join(t, NULL);
    assert_int_equal(a.entered, 1);
    vmm_accel_cpu_slot_free(a.slot);
    vmm_accel_gate_free(g);
}

static void test_blocks_vm_ioctl(void **state)
{
    (void)state;
    check_blocks(false);
}

static void test_blocks_cpu_ioctl(void **state)
{
    (void)state;
    check_blocks(true);
}

/* A thread already inside a VM ioctl may nest another one while an
 * inhibitor waits: it must not block (the inhibitor waits for it). */
typedef struct NestArgs {
    VmmAccelGate *gate;
    unsigned phase;
} NestArgs;

static void *nest_thread(void *opaque)
{
    NestArgs *a = opaque;
    vmm_accel_ioctl_begin(a->gate);
    vk_atomic_set(&a->phase, 1);
    while (!vmm_accel_ioctl_inhibited(a->gate)) {
        sched_yield();
    }
    vmm_accel_ioctl_begin(a->gate);     /* nested while inhibit is pending */
    vmm_accel_ioctl_end(a->gate);
    vk_atomic_set(&a->phase, 2);
    vmm_accel_ioctl_end(a->gate);
    return NULL;
}

static void test_nested_while_inhibiting(void **state)
{
    (void)state;
    int err;
    NestArgs a = { .gate = vmm_accel_gate_new(&err) };
    pthread_t t;

    pthread_create(&t, NULL, nest_thread, &a);
    while (!vk_atomic_read(&a.phase)) {
        sched_yield();
    }
    vmm_accel_ioctl_inhibit_begin(a.gate);
    assert_int_equal(vk_atomic_read(&a.phase), 2);
    vmm_accel_ioctl_inhibit_end(a.gate);
    pthread_join(t, NULL);
    vmm_accel_gate_free(a.gate);
}

/* Two gates are independent: inhibiting one does not block the other. */
static void test_two_gates(void **state)
{
    (void)state;
    int err;
    VmmAccelGate *g1 = vmm_accel_gate_new(&err), *g2 = vmm_accel_gate_new(&err);
    BlockArgs a = { .gate = g2 };
    pthread_t t;

    vmm_accel_ioctl_inhibit_begin(g1);
    pthread_create(&t, NULL, block_thread, &a);
    pthread_join(t, NULL);          /* would hang if g2 were blocked */
    assert_int_equal(a.entered, 1);
    vmm_accel_ioctl_inhibit_end(g1);
    vmm_accel_gate_free(g1);
    vmm_accel_gate_free(g2);
}

/* ---- kicks reach a slot's ioctl on any thread --------------------------- */

/* A vCPU ioctl on a slot from a thread that never bound it (the shared
 * path) is kicked like the owner's: a "halted" fake KVM_RUN there must be
 * woken by the inhibitor, not wait for the guard below. */
typedef struct UnboundRun {
    VmmAccelCpuSlot *slot;
    unsigned kicked;            /* the "immediate_exit" */
    unsigned inside;
    unsigned timed_out;
} UnboundRun;

static void unbound_kick(void *opaque)
{
    UnboundRun *r = opaque;
    vk_atomic_store_release(&r->kicked, 1);
    vk_futex_wake(&r->kicked, 1);
}

static void *unbound_run_thread(void *opaque)
{
    UnboundRun *r = opaque;
    const struct timespec tick = { .tv_sec = 0, .tv_nsec = 50 * 1000 * 1000 };
    int64_t deadline = now_ns() + 5000000000LL;      /* the guard */

    vmm_accel_cpu_ioctl_begin(r->slot);
    vk_atomic_store_release(&r->inside, 1);
    while (!vk_atomic_xchg(&r->kicked, 0)) {
        if (now_ns() > deadline) {
            vk_atomic_set(&r->timed_out, 1);
            break;
        }
        vk_futex_wait(&r->kicked, 0, &tick);
    }
    vmm_accel_cpu_ioctl_end(r->slot);
    return NULL;
}

static void test_unbound_slot_kicked(void **state)
{
    (void)state;
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    UnboundRun r = { 0 };
    pthread_t t;

    r.slot = vmm_accel_cpu_slot_new(g, unbound_kick, &r, "unbound", &err);
    assert_non_null(r.slot);
    pthread_create(&t, NULL, unbound_run_thread, &r);
    while (!vk_atomic_load_acquire(&r.inside)) {
        sched_yield();
    }
    vmm_accel_ioctl_inhibit_begin(g);   /* kicks r, or waits for the guard */
    vmm_accel_ioctl_inhibit_end(g);
    pthread_join(t, NULL);
    assert_int_equal(vk_atomic_read(&r.timed_out), 0);
    vmm_accel_cpu_slot_free(r.slot);
    vmm_accel_gate_free(g);
}

/* ---- stress: the inhibit guarantee with halted and spinning vCPUs ------- */

typedef struct StressCpu {
    VmmAccelCpuSlot *slot;
    unsigned kicked;            /* the "immediate_exit" of this fake vCPU */
    uint64_t runs, halts, lost_kicks;
    int idx;
} StressCpu;

typedef struct Stress {
    VmmAccelGate *gate;
    unsigned stop;
    unsigned inside;            /* threads inside a bracket right now */
    /* Protected by the gate: only changed with every ioctl stopped. */
    uint64_t data_a, data_b;
    uint64_t torn;
    StressCpu *cpus;
    int ncpus;
} Stress;

static Stress stress;

static void stress_kick(void *opaque)
{
    StressCpu *c = opaque;
    vk_atomic_store_release(&c->kicked, 1);
    vk_futex_wake(&c->kicked, 1);
}

static void check_data(void)
{
    /* Plain reads: TSan reports them if the gate fails to order them
     * against the inhibitor's plain writes. */
    if (stress.data_a != stress.data_b) {
        vk_atomic_inc(&stress.torn);
    }
}

/* A fake KVM_RUN: spin a while, or "halt" until kicked. */
static void fake_run(StressCpu *c, unsigned *rnd)
{
    *rnd = *rnd * 1103515245u + 12345u;
    if ((*rnd >> 16) % 4 == 0) {
        const struct timespec ts = { .tv_sec = 2, .tv_nsec = 0 };
        int64_t t0 = now_ns();
        c->halts++;
        while (!vk_atomic_xchg(&c->kicked, 0) && !vk_atomic_read(&stress.stop)) {
            vk_futex_wait(&c->kicked, 0, &ts);
            /* A lost wake-up leaves this vCPU halted for good while the
             * inhibitor waits for it, so any bound detects one; 10 s keeps
             * a starved scheduler on a loaded 2-core CI machine from
             * looking like one. */
            if (now_ns() - t0 > 10000000000LL) {
                c->lost_kicks++;
                break;
            }
        }
    } else {
        for (unsigned i = (*rnd >> 8) % 200; i; i--) {
            vk_barrier();
        }
    }
}

static void *stress_cpu_thread(void *opaque)
{
    StressCpu *c = opaque;
    unsigned rnd = c->idx * 7919u + 1;

    /* cpu0 never binds its slot: its vCPU ioctls take the shared path and
     * must be kicked out of a halt all the same. */
    if (c->idx) {
        assert_int_equal(vmm_accel_cpu_slot_bind(c->slot, true), 0);
    }
    while (!vk_atomic_read(&stress.stop)) {
        vmm_accel_cpu_ioctl_begin(c->slot);
        vk_atomic_inc(&stress.inside);
        check_data();
        fake_run(c, &rnd);
        check_data();
        vk_atomic_dec(&stress.inside);
        vmm_accel_cpu_ioctl_end(c->slot);
        c->runs++;
    }
    if (c->idx) {
        vmm_accel_cpu_slot_bind(c->slot, false);
    }
    return NULL;
}

static void *stress_vm_thread(void *opaque)
{
    uint64_t *n = opaque;
    while (!vk_atomic_read(&stress.stop)) {
        vmm_accel_ioctl_begin(stress.gate);
        vk_atomic_inc(&stress.inside);
        check_data();
        vk_atomic_dec(&stress.inside);
        vmm_accel_ioctl_end(stress.gate);
        (*n)++;
    }
    return NULL;
}

static void run_stress(void)
{
    int n = env_int("VMM_STRESS_THREADS", 6);
    int64_t dur = env_int("VMM_STRESS_MS", 300) * 1000000LL;
    pthread_t cpu_t[64], vm_t[2];
    uint64_t vm_n[2] = { 0, 0 };
    uint64_t inhibits = 0, runs = 0, halts = 0, lost = 0;
    int err;

    n = n < 1 ? 1 : n > 64 ? 64 : n;
    memset(&stress, 0, sizeof(stress));
    stress.gate = vmm_accel_gate_new(&err);
    stress.ncpus = n;
    stress.cpus = calloc(n, sizeof(StressCpu));
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "cpu%d", i);
        stress.cpus[i].idx = i;
        stress.cpus[i].slot = vmm_accel_cpu_slot_new(stress.gate, stress_kick,
                                                     &stress.cpus[i], name, &err);
        assert_non_null(stress.cpus[i].slot);
        pthread_create(&cpu_t[i], NULL, stress_cpu_thread, &stress.cpus[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_create(&vm_t[i], NULL, stress_vm_thread, &vm_n[i]);
    }
    int64_t end = now_ns() + dur;
    int64_t inhibit_ns = 0, inhibit_max = 0;
    /* At least one inhibit however late this thread gets the CPU back
     * (the check below wants one; a 300 ms stall right here skipped the
     * loop). */
    while (inhibits == 0 || now_ns() < end) {
        int64_t t0 = now_ns(), dt;
        vmm_accel_ioctl_inhibit_begin(stress.gate);
        dt = now_ns() - t0;
        inhibit_ns += dt;
        inhibit_max = dt > inhibit_max ? dt : inhibit_max;
        /* Nobody inside, and the data may be changed in two steps. */
        assert_int_equal(vk_atomic_read(&stress.inside), 0);
        stress.data_a++;
        sched_yield();
        assert_int_equal(vk_atomic_read(&stress.inside), 0);
        stress.data_b++;
        vmm_accel_ioctl_inhibit_end(stress.gate);
        inhibits++;
        usleep(200);
    }
    vk_atomic_set(&stress.stop, 1);
    for (int i = 0; i < n; i++) {
        stress_kick(&stress.cpus[i]);
        pthread_join(cpu_t[i], NULL);
        runs += stress.cpus[i].runs;
        halts += stress.cpus[i].halts;
        lost += stress.cpus[i].lost_kicks;
        vmm_accel_cpu_slot_free(stress.cpus[i].slot);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(vm_t[i], NULL);
    }
    printf("# %d vcpus: %llu inhibits, %llu runs (%llu halted), %llu+%llu vm ioctls, "
           "membarrier=%d, inhibit avg %lld us max %lld us\n", n, (unsigned long long)inhibits, (unsigned long long)runs,
           (unsigned long long)halts, (unsigned long long)vm_n[0],
           (unsigned long long)vm_n[1], vmm_accel_uses_membarrier(),
           (long long)(inhibit_ns / (inhibits ? inhibits : 1) / 1000),
           (long long)(inhibit_max / 1000));
    assert_int_equal(stress.torn, 0);
    assert_int_equal(lost, 0);
    assert_true(inhibits > 0);
    assert_int_equal(vmm_accel_gate_inhibit_count(stress.gate), inhibits);
    free(stress.cpus);
    vmm_accel_gate_free(stress.gate);
}

static void test_stress(void **state)
{
    (void)state;
    run_stress();
}

/* ---- misuse: debug builds abort naming it ------------------------------- */

static void quiet_log(VmmLogLevel l, const char *msg, void *o)
{
    (void)l; (void)msg; (void)o;
}

/* Runs @fn in a child; returns true if it died of SIGABRT. */
static bool aborts(void (*fn)(void))
{
    pid_t pid = fork();
    int status;

    if (pid == 0) {
        vmm_set_log_handler(quiet_log, NULL, VMM_LOG_ERROR);
        fn();
        _exit(0);
    }
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void misuse_end_without_begin(void)
{
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    vmm_accel_ioctl_end(g);
}

static void misuse_cpu_end_without_begin(void)
{
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    VmmAccelCpuSlot *s = vmm_accel_cpu_slot_new(g, noop_kick, NULL, "c", &err);
    vmm_accel_cpu_slot_bind(s, true);
    vmm_accel_cpu_ioctl_end(s);
}

static void misuse_inhibit_from_vcpu(void)
{
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    VmmAccelCpuSlot *s = vmm_accel_cpu_slot_new(g, noop_kick, NULL, "c", &err);
    vmm_accel_cpu_slot_bind(s, true);
    vmm_accel_ioctl_inhibit_begin(g);
}

static void misuse_inhibit_inside_ioctl(void)
{
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    vmm_accel_ioctl_begin(g);
    vmm_accel_ioctl_inhibit_begin(g);
}

static void misuse_free_slot_in_ioctl(void)
{
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    VmmAccelCpuSlot *s = vmm_accel_cpu_slot_new(g, noop_kick, NULL, "c", &err);
    vmm_accel_cpu_slot_bind(s, true);
    vmm_accel_cpu_ioctl_begin(s);
    vmm_accel_cpu_slot_free(s);
}

static void misuse_free_gate_with_slot(void)
{
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    (void)vmm_accel_cpu_slot_new(g, noop_kick, NULL, "c", &err);
    vmm_accel_gate_free(g);
}

static pthread_t forgot_thread;

static void *forget_end(void *opaque)
{
    vmm_accel_ioctl_begin(opaque);      /* and never ends */
    return NULL;
}

static void misuse_begin_without_end(void)
{
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    setenv("VMM_ACCEL_WATCHDOG_MS", "200", 1);
    pthread_create(&forgot_thread, NULL, forget_end, g);
    pthread_join(forgot_thread, NULL);
    vmm_accel_ioctl_inhibit_begin(g);   /* the watchdog names the culprit */
}

static void misuse_inhibit_end_not_inhibitor(void)
{
    int err;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    vmm_accel_ioctl_inhibit_end(g);
}

static void test_misuse(void **state)
{
    (void)state;
    if (!VMM_DEBUG_CHECKS) {
        skip();
    }
    assert_true(aborts(misuse_end_without_begin));
    assert_true(aborts(misuse_cpu_end_without_begin));
    assert_true(aborts(misuse_inhibit_from_vcpu));
    assert_true(aborts(misuse_inhibit_inside_ioctl));
    assert_true(aborts(misuse_free_slot_in_ioctl));
    assert_true(aborts(misuse_free_gate_with_slot));
    assert_true(aborts(misuse_begin_without_end));
    assert_true(aborts(misuse_inhibit_end_not_inhibitor));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_blocks_vm_ioctl),
        cmocka_unit_test(test_blocks_cpu_ioctl),
        cmocka_unit_test(test_nested_while_inhibiting),
        cmocka_unit_test(test_two_gates),
        cmocka_unit_test(test_unbound_slot_kicked),
        cmocka_unit_test(test_misuse),
    };
    const struct CMUnitTest conc[] = {
        cmocka_unit_test(test_stress),
    };

    if (argc > 1 && strcmp(argv[1], "stress") == 0) {
        return cmocka_run_group_tests_name("gate-stress", conc, NULL, NULL);
    }
    return cmocka_run_group_tests_name("gate", unit, NULL, NULL);
}
