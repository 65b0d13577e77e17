/* SPDX-License-Identifier: MIT */
/*
 * GSI routes changed from any thread (fake KVM): a vCPU thread updates the
 * route behind an irqfd the way a guest's MSI-X table write does, while
 * other threads add, update and remove routes and the main loop inhibits
 * the accel gate.  The fake "kernel" keeps the last table committed with
 * KVM_SET_GSI_ROUTING and every check reads that table: after an update
 * returns, the kernel must route the GSI the new way, the irqchip's pin
 * routes must survive every commit, and no GSI may appear twice.
 *
 * VMM_STRESS_MS bounds the stress part (default 300 ms).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "fake-kvm.h"
#include "vmmkit/accel.h"
#include "vmmkit/kvm.h"

#define MAX_GSI 1024
#define PIN_ROUTES 40          /* 16 PIC + 24 IOAPIC entries */

/* The kernel's view: the last table committed. */
static struct {
    pthread_mutex_t lock;
    FakeKvm fk;
    VmmKvmOps ops;
    unsigned commits, bad_tables;
    bool have[MAX_GSI];
    uint64_t addr[MAX_GSI];
    uint32_t data[MAX_GSI];
    unsigned npin;
} k = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void take_table(const struct kvm_irq_routing *t)
{
    bool seen_msi[MAX_GSI] = { false };
    unsigned npin = 0;
    bool bad = false;

    memset(k.have, 0, sizeof(k.have));
    for (uint32_t i = 0; i < t->nr; i++) {
        const struct kvm_irq_routing_entry *e = &t->entries[i];
        if (e->gsi >= MAX_GSI) {
            bad = true;
            continue;
        }
        if (e->type == KVM_IRQ_ROUTING_IRQCHIP) {
            npin++;
            bad |= e->gsi >= 24;
            continue;
        }
        bad |= e->type != KVM_IRQ_ROUTING_MSI || e->gsi < 24 || seen_msi[e->gsi];
        seen_msi[e->gsi] = true;
        k.have[e->gsi] = true;
        k.addr[e->gsi] = e->u.msi.address_lo | (uint64_t)e->u.msi.address_hi << 32;
        k.data[e->gsi] = e->u.msi.data;
    }
    k.npin = npin;
    k.bad_tables += bad || npin != PIN_ROUTES;
    k.commits++;
}

static int wrap_ioctl(void *opaque, int fd, unsigned long req, void *arg)
{
    int r = k.fk.ops.ioctl(k.fk.ops.opaque, fd, req, arg);
    (void)opaque;
    if (req == KVM_SET_GSI_ROUTING && r >= 0) {
        pthread_mutex_lock(&k.lock);
        take_table(arg);
        pthread_mutex_unlock(&k.lock);
    }
    return r;
}

static VmmVm *new_vm(void)
{
    fake_kvm_init(&k.fk);
    k.fk.has_irqchip_cap = true;
    k.ops = k.fk.ops;
    k.ops.ioctl = wrap_ioctl;
    k.commits = k.bad_tables = 0;
    VmmVmOptions o = fake_vm_options(&k.fk);
    o.ops = &k.ops;
    int err = 0;
    VmmVm *vm = vmm_vm_new(&o, &err);
    assert_non_null(vm);
    assert_int_equal(vmm_vm_create_irqchip(vm, false), 0);
    return vm;
}

/* Does the kernel route @gsi to (@addr, @data)? */
static bool kernel_routes(int gsi, uint64_t addr, uint32_t data)
{
    pthread_mutex_lock(&k.lock);
    bool ok = k.have[gsi] && k.addr[gsi] == addr && k.data[gsi] == data;
    pthread_mutex_unlock(&k.lock);
    return ok;
}

static unsigned commits(void)
{
    pthread_mutex_lock(&k.lock);
    unsigned c = k.commits;
    pthread_mutex_unlock(&k.lock);
    return c;
}

/* ---- From a vCPU thread ------------------------------------------------- */

typedef struct VcpuRoute {
    VmmVm *vm;
    int gsi;
    uint64_t addr;
    uint32_t data;
    bool on_vcpu;
} VcpuRoute;

static int update_on_vcpu(VmmVcpu *v, void *opaque)
{
    VcpuRoute *r = opaque;
    r->on_vcpu = vmm_vcpu_current() == v;
    if (r->gsi < 0) {
        return vmm_vm_add_msi_route(r->vm, r->addr, r->data);
    }
    return vmm_vm_update_msi_route(r->vm, r->gsi, r->addr, r->data);
}

static void test_vcpu_thread(void **state)
{
    (void)state;
    VmmVm *vm = new_vm();
    VmmVcpu *v = vmm_vcpu_new(vm, 0, "c0", NULL);
    assert_non_null(v);

    VcpuRoute r = { .vm = vm, .gsi = -1, .addr = 0xfee00000, .data = 0x4021 };
    int gsi = vmm_vcpu_run_on(v, update_on_vcpu, &r);
    assert_true(r.on_vcpu);
    assert_true(gsi >= 24);
    assert_true(kernel_routes(gsi, 0xfee00000, 0x4021));

    r.gsi = gsi;
    r.addr = 0xfee01000;
    r.data = 0x4022;
    assert_int_equal(vmm_vcpu_run_on(v, update_on_vcpu, &r), 0);
    assert_true(kernel_routes(gsi, 0xfee01000, 0x4022));

    /* The same address/data again: nothing to commit. */
    unsigned c = commits();
    assert_int_equal(vmm_vcpu_run_on(v, update_on_vcpu, &r), 0);
    assert_int_equal(commits(), c);

    /* A failed commit leaves the kernel and our copy as they were. */
    fake_fail(&k.fk, KVM_SET_GSI_ROUTING, 1, -ENOMEM);
    r.data = 0x4023;
    assert_int_equal(vmm_vcpu_run_on(v, update_on_vcpu, &r), -ENOMEM);
    fake_fail(&k.fk, 0, 0, 0);
    assert_true(kernel_routes(gsi, 0xfee01000, 0x4022));
    r.data = 0x4022;
    c = commits();
    assert_int_equal(vmm_vcpu_run_on(v, update_on_vcpu, &r), 0);
    assert_int_equal(commits(), c);     /* our copy kept 0x4022 */

    assert_int_equal(vmm_vm_remove_msi_route(vm, gsi), 0);
    assert_false(kernel_routes(gsi, 0xfee01000, 0x4022));
    assert_int_equal(k.bad_tables, 0);
    vmm_vm_free(vm);
}

/* ---- Stress ------------------------------------------------------------- */

#define WORKERS 3

typedef struct Worker {
    VmmVm *vm;
    VmmVcpu *vcpu;          /* NULL: a plain thread */
    unsigned id;
    bool *stop;
    unsigned updates, errors;
} Worker;

static int one_round(VmmVcpu *v, void *opaque)
{
    Worker *w = opaque;
    (void)v;
    /* Our own GSI: add, update a few times, remove; check the kernel's
     * table after each step. */
    int gsi = vmm_vm_add_msi_route(w->vm, 0xfee00000, w->id << 16);
    if (gsi < 0) {
        w->errors++;
        return 0;
    }
    for (uint32_t i = 1; i <= 4; i++) {
        uint32_t data = w->id << 16 | (w->updates & 0xfff) << 4 | i;
        if (vmm_vm_update_msi_route(w->vm, gsi, 0xfee00000 + 0x1000 * i, data) < 0 ||
            !kernel_routes(gsi, 0xfee00000 + 0x1000 * i, data)) {
            w->errors++;
        }
        /* Atomic: the main loop reads it to know every worker ran. */
        __atomic_store_n(&w->updates, w->updates + 1, __ATOMIC_RELAXED);
    }
    if (vmm_vm_remove_msi_route(w->vm, gsi) < 0) {
        w->errors++;
    }
    return 0;
}

static void *worker(void *opaque)
{
    Worker *w = opaque;
    while (!__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
        if (w->vcpu) {
            vmm_vcpu_run_on(w->vcpu, one_round, w);
        } else {
            one_round(NULL, w);
        }
    }
    return NULL;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool all_updated(Worker *w)
{
    for (unsigned i = 0; i < WORKERS; i++) {
        if (!__atomic_load_n(&w[i].updates, __ATOMIC_RELAXED)) {
            return false;
        }
    }
    return true;
}

static void test_stress(void **state)
{
    (void)state;
    const char *env = getenv("VMM_STRESS_MS");
    uint64_t ms = env ? strtoull(env, NULL, 10) : 300;
    VmmVm *vm = new_vm();
    VmmVcpu *v = vmm_vcpu_new(vm, 0, "c0", NULL);
    assert_non_null(v);
    bool stop = false;
    Worker w[WORKERS];
    pthread_t th[WORKERS];

    for (unsigned i = 0; i < WORKERS; i++) {
        /* Worker 0 makes its changes on the vCPU thread. */
        w[i] = (Worker){ .vm = vm, .vcpu = i == 0 ? v : NULL, .id = i + 1, .stop = &stop };
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    /* The main loop inhibits the gate meanwhile (as a memory update does),
     * for @ms and until every worker made an update under it: on a loaded
     * machine a worker may not even start within @ms, which proves nothing
     * (a worker stuck for good still fails, at the cap). */
    uint64_t start = now_ms(), end = start + ms, cap = start + 60000;
    unsigned inhibits = 0;
    while (inhibits == 0 || now_ms() < end || (!all_updated(w) && now_ms() < cap)) {
        vmm_accel_ioctl_inhibit_begin(vmm_vm_gate(vm));
        inhibits++;
        vmm_accel_ioctl_inhibit_end(vmm_vm_gate(vm));
    }
    __atomic_store_n(&stop, true, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].errors, 0);
        assert_true(w[i].updates > 0);
    }
    assert_true(inhibits > 0);
    assert_int_equal(k.bad_tables, 0);
    /* Every route was removed: only the pin routes are left. */
    assert_int_equal(k.npin, PIN_ROUTES);
    for (int g = 0; g < MAX_GSI; g++) {
        assert_false(k.have[g]);
    }
    vmm_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vcpu_thread),
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
