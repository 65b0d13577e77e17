/* SPDX-License-Identifier: MIT */
/*
 * The KVM layer against a fake KVM (fake-kvm.c): error paths with injected
 * ioctl failures, the run loop's exit dispatch and end reports, pause with
 * a pending PIO, the state writeback levels (exactly what each level
 * writes), memory-slot updates and their inhibit, interrupts.  The same
 * behaviours are checked on a real KVM by tests/kvm/accel.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmmkit/kvm.h"
#include "fake-kvm.h"
#include "util/atomic.h"

static FakeKvm fk;
static char last_log[512];

static void capture_log(VmmLogLevel l, const char *msg, void *o)
{
    (void)l;
    (void)o;
    snprintf(last_log, sizeof(last_log), "%s", msg);
}

static int setup(void **state)
{
    (void)state;
    fake_kvm_init(&fk);
    last_log[0] = 0;
    vmm_set_log_handler(capture_log, NULL, VMM_LOG_WARNING);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vmm_set_log_handler(NULL, NULL, VMM_LOG_WARNING);
    assert_int_equal(fk.open_fds, 0);
    assert_int_equal(fk.maps, 0);
    return 0;
}

static VmmVm *new_vm(void)
{
    VmmVmOptions o = fake_vm_options(&fk);
    int err = 0;
    VmmVm *vm = vmm_vm_new(&o, &err);
    assert_non_null(vm);
    return vm;
}

/* Wait until *p reaches v.  Bounded by the clock, not by a count of
 * sleeps: on a loaded CI machine (or under TSan) a vCPU thread may take
 * far longer than usual to be scheduled, and only a hang should fail. */
static void wait_for(uint64_t *p, uint64_t v)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t end = ts.tv_sec + 30;
    while (vk_atomic_read(p) < v) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (ts.tv_sec > end) {
            break;
        }
        usleep(100);
    }
    assert_true(vk_atomic_read(p) >= v);
}

/* ---- creation and its errors ------------------------------------------- */

static void test_vm_errors(void **state)
{
    VmmVmOptions o = fake_vm_options(&fk);
    int err = 0;
    (void)state;

    fake_fail(&fk, (unsigned long)-1, 1, -ENOENT);          /* open fails */
    assert_null(vmm_vm_new(&o, &err));
    assert_int_equal(err, -ENOENT);

    fake_fail(&fk, 0, 0, 0);
    fk.api_version = 11;
    assert_null(vmm_vm_new(&o, &err));
    assert_int_equal(err, -EOPNOTSUPP);
    assert_non_null(strstr(last_log, "API version 11"));
    fk.api_version = KVM_API_VERSION;

    fk.missing_cap = KVM_CAP_IMMEDIATE_EXIT;
    assert_null(vmm_vm_new(&o, &err));
    assert_int_equal(err, -EOPNOTSUPP);
    assert_non_null(strstr(last_log, "KVM_CAP_IMMEDIATE_EXIT"));
    fk.missing_cap = -1;

    fake_fail(&fk, KVM_CREATE_VM, 1, -EMFILE);
    assert_null(vmm_vm_new(&o, &err));
    assert_int_equal(err, -EMFILE);

    fake_fail(&fk, KVM_SET_TSS_ADDR, 1, -EFAULT);
    assert_null(vmm_vm_new(&o, &err));
    assert_int_equal(err, -EFAULT);
    assert_int_equal(fk.open_fds, 0);

    o.size = 4;
    assert_null(vmm_vm_new(&o, &err));
    assert_int_equal(err, -EINVAL);
}

static void test_vcpu_errors(void **state)
{
    VmmVm *vm = new_vm();
    int err = 0;
    (void)state;

    fake_fail(&fk, KVM_CREATE_VCPU, 1, -EINVAL);
    assert_null(vmm_vcpu_new(vm, 0, "c0", &err));
    assert_int_equal(err, -EINVAL);
    fake_fail(&fk, 0, 0, 0);
    VmmVcpu *v = vmm_vcpu_new(vm, 0, "c0", &err);
    assert_non_null(v);
    assert_null(vmm_vcpu_new(vm, 0, "dup", &err));
    assert_int_equal(err, -EEXIST);
    assert_ptr_equal(vmm_vm_get_vcpu(vm, 0), v);
    assert_int_equal(vmm_vm_nr_vcpus(vm), 1);
    assert_true(vmm_vcpu_is_paused(v));
    vmm_vm_free(vm);
}

/* ---- the run loop: scripted exits ------------------------------------ */

typedef struct Script {
    int step;
    uint16_t in_word;       /* what the "guest" read with IN */
    uint64_t mmio_read;
} Script;

static int script_run(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    Script *s = opaque;
    uint8_t *data = (uint8_t *)run + 4096;

    if (s->step == 4) {
        memcpy(&s->mmio_read, run->mmio.data, 8);
    }
    memset(&run->io, 0, 64);
    switch (s->step++) {
    case 0:         /* OUT 0x42 to port 0x10 */
        run->exit_reason = KVM_EXIT_IO;
        run->io = (typeof(run->io)){ .direction = KVM_EXIT_IO_OUT, .size = 1,
                                     .port = 0x10, .count = 1, .data_offset = 4096 };
        data[0] = 0x42;
        return 0;
    case 1:         /* IN 2 bytes from port 0x10 */
        run->exit_reason = KVM_EXIT_IO;
        run->io = (typeof(run->io)){ .direction = KVM_EXIT_IO_IN, .size = 2,
                                     .port = 0x10, .count = 1, .data_offset = 4096 };
        return 0;
    case 2:         /* the guest got the IN value; MMIO write */
        memcpy(&s->in_word, data, 2);
        run->exit_reason = KVM_EXIT_MMIO;
        run->mmio.phys_addr = 0xd0000004;
        run->mmio.len = 4;
        run->mmio.is_write = 1;
        memcpy(run->mmio.data, "\xef\xbe\xad\xde", 4);
        return 0;
    case 3:         /* MMIO read of 8 bytes */
        run->exit_reason = KVM_EXIT_MMIO;
        run->mmio.phys_addr = 0xd0000008;
        run->mmio.len = 8;
        run->mmio.is_write = 0;
        return 0;
    case 4:         /* unmapped port, out and in; bad data_offset */
        run->exit_reason = KVM_EXIT_IO;
        run->io = (typeof(run->io)){ .direction = KVM_EXIT_IO_OUT, .size = 4,
                                     .port = 0x99, .count = 1, .data_offset = 4096 };
        return 0;
    case 5:
        run->exit_reason = KVM_EXIT_IO;
        run->io = (typeof(run->io)){ .direction = KVM_EXIT_IO_IN, .size = 4,
                                     .port = 0x98, .count = 1, .data_offset = 4096 };
        return 0;
    case 6:
        if (memcmp(data, "\xff\xff\xff\xff", 4) != 0) {
            return -EBADMSG;    /* unhandled IN must read all ones */
        }
        run->exit_reason = KVM_EXIT_IO;
        run->io = (typeof(run->io)){ .direction = KVM_EXIT_IO_OUT, .size = 2,
                                     .port = 0x10, .count = 100000,
                                     .data_offset = 4096 };
        return 0;
    default:
        fv->regs.rip = 0xfff0;
        run->exit_reason = KVM_EXIT_SHUTDOWN;
        return 0;
    }
}

typedef struct Dev {
    uint64_t writes, last_write, last_off;
    unsigned last_size;
} Dev;

static uint64_t dev_read(void *opaque, uint64_t off, unsigned size)
{
    (void)opaque;
    return size == 8 ? 0x1122334455667788ULL + off : 0xbeef;
}

static void dev_write(void *opaque, uint64_t off, uint64_t v, unsigned size)
{
    Dev *d = opaque;
    d->writes++;
    d->last_write = v;
    d->last_off = off;
    d->last_size = size;
}

static const VmmIoOps dev_ops = { dev_read, dev_write };

static void test_exits(void **state)
{
    Script s = { 0 };
    Dev pio = { 0 }, mmio = { 0 };
    VmmVmExit e;
    (void)state;

    fk.run_fn = script_run;
    fk.run_opaque = &s;
    VmmVm *vm = new_vm();
    assert_non_null(vmm_vcpu_new(vm, 0, "c0", NULL));
    assert_int_equal(vmm_vm_register_io(vm, true, 0x10, 4, &dev_ops, &pio), 0);
    assert_int_equal(vmm_vm_register_io(vm, true, 0x12, 4, &dev_ops, &pio), -EEXIST);
    assert_int_equal(vmm_vm_register_io(vm, true, 0xfffe, 4, &dev_ops, &pio), -EINVAL);
    assert_int_equal(vmm_vm_register_io(vm, false, 0xd0000000, 0x1000, &dev_ops, &mmio), 0);
    assert_int_equal(vmm_vm_start(vm), 0);
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);

    assert_int_equal(e.kind, VMM_VM_END_SHUTDOWN);
    assert_int_equal(e.exit_reason, KVM_EXIT_SHUTDOWN);
    assert_int_equal(e.rip, 0xfff0);
    assert_int_equal(pio.writes, 1);
    assert_int_equal(pio.last_write, 0x42);
    assert_int_equal(s.in_word, 0xbeef);
    assert_int_equal(mmio.writes, 1);
    assert_int_equal(mmio.last_write, 0xdeadbeef);
    assert_int_equal(mmio.last_off, 4);
    assert_int_equal(s.mmio_read, 0x1122334455667788ULL + 8);
    /* out 0x99, in 0x98, and the bogus 100000-count string I/O. */
    assert_int_equal(vmm_vm_unhandled_io(vm), 3);
    assert_true(vmm_vcpu_is_paused(vmm_vm_get_vcpu(vm, 0)));
    assert_int_equal(vmm_vm_unregister_io(vm, true, 0x10), 0);
    assert_int_equal(vmm_vm_unregister_io(vm, true, 0x10), -ENOENT);
    vmm_vm_free(vm);
}

/* Bad input from the guest side ends the VM with a report, never aborts. */
typedef struct EndCase {
    uint32_t reason;
    int run_err;
    VmmVmEndKind kind;
    uint64_t code;
} EndCase;

static int end_run(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    EndCase *c = opaque;
    (void)fv;
    if (c->run_err) {
        return c->run_err;
    }
    run->exit_reason = c->reason;
    if (c->reason == KVM_EXIT_INTERNAL_ERROR) {
        run->internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
        run->internal.ndata = 40;       /* more than fits: clamped */
        run->internal.data[0] = 0xabc;
    } else if (c->reason == KVM_EXIT_SYSTEM_EVENT) {
        run->system_event.type = KVM_SYSTEM_EVENT_RESET;
        run->system_event.ndata = 0;
    } else if (c->reason == KVM_EXIT_FAIL_ENTRY) {
        run->fail_entry.hardware_entry_failure_reason = 0x80000021;
    }
    return 0;
}

static void test_end_reports(void **state)
{
    EndCase cases[] = {
        { KVM_EXIT_INTERNAL_ERROR, 0, VMM_VM_END_INTERNAL_ERROR, KVM_INTERNAL_ERROR_EMULATION },
        { KVM_EXIT_SYSTEM_EVENT, 0, VMM_VM_END_SYSTEM_EVENT, KVM_SYSTEM_EVENT_RESET },
        { KVM_EXIT_FAIL_ENTRY, 0, VMM_VM_END_FAIL_ENTRY, 0x80000021 },
        { KVM_EXIT_DEBUG, 0, VMM_VM_END_UNHANDLED_EXIT, KVM_EXIT_DEBUG },
        { 0, -EFAULT, VMM_VM_END_ERROR, 0 },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        VmmVmExit e;
        fk.run_fn = end_run;
        fk.run_opaque = &cases[i];
        VmmVm *vm = new_vm();
        assert_non_null(vmm_vcpu_new(vm, 0, "c0", NULL));
        vmm_vm_start(vm);
        assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
        assert_int_equal(e.kind, cases[i].kind);
        assert_int_equal(e.code, cases[i].code);
        if (cases[i].kind == VMM_VM_END_INTERNAL_ERROR) {
            assert_int_equal(e.ndata, 16);
            assert_int_equal(e.data[0], 0xabc);
        }
        if (cases[i].kind == VMM_VM_END_ERROR) {
            assert_int_equal(e.error, -EFAULT);
        }
        /* Restartable after clearing: it ends again the same way. */
        vmm_vm_clear_end(vm);
        vmm_vm_start(vm);
        assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
        assert_int_equal(e.kind, cases[i].kind);
        vmm_vm_free(vm);
    }
}

/* A handler replaces a default; END_VM from a handler; request_end. */
static int hlt_then_shutdown(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    int *n = opaque;
    (void)fv;
    run->exit_reason = (*n)++ < 3 ? KVM_EXIT_HLT : KVM_EXIT_SHUTDOWN;
    return 0;
}

static int count_hlt(VmmVcpu *v, struct kvm_run *run, void *opaque)
{
    (void)v;
    (void)run;
    (*(int *)opaque)++;
    return VMM_EXIT_CONTINUE;
}

static int end_on_shutdown(VmmVcpu *v, struct kvm_run *run, void *opaque)
{
    (void)v;
    (void)run;
    (void)opaque;
    vmm_vm_request_end(vmm_vcpu_vm(v), 77);
    return VMM_EXIT_END_VM;
}

static void test_handlers(void **state)
{
    int n = 0, hlts = 0;
    VmmVmExit e;
    (void)state;

    fk.run_fn = hlt_then_shutdown;
    fk.run_opaque = &n;
    VmmVm *vm = new_vm();
    assert_non_null(vmm_vcpu_new(vm, 0, "c0", NULL));
    assert_int_equal(vmm_vm_set_exit_handler(vm, KVM_EXIT_IO, count_hlt, NULL), -EINVAL);
    assert_int_equal(vmm_vm_set_exit_handler(vm, KVM_EXIT_HLT, count_hlt, &hlts), 0);
    assert_int_equal(vmm_vm_set_exit_handler(vm, KVM_EXIT_SHUTDOWN, end_on_shutdown, NULL), 0);
    vmm_vm_start(vm);
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
    assert_int_equal(hlts, 3);
    assert_int_equal(e.kind, VMM_VM_END_REQUESTED);
    assert_int_equal(e.code, 77);
    assert_int_equal(e.vcpu_id, 0);
    vmm_vm_free(vm);
}

/* A handler that ends the VM by its return value alone: reported as ended
 * by a handler at that exit, not as an exit nobody handles. */
static int hlt_ends(VmmVcpu *v, struct kvm_run *run, void *opaque)
{
    (void)v;
    (void)run;
    (*(int *)opaque)++;
    return VMM_EXIT_END_VM;
}

static void test_handler_ends_vm(void **state)
{
    int n = 0, hlts = 0;
    VmmVmExit e;
    (void)state;

    fk.run_fn = hlt_then_shutdown;
    fk.run_opaque = &n;
    VmmVm *vm = new_vm();
    assert_non_null(vmm_vcpu_new(vm, 0, "c0", NULL));
    assert_int_equal(vmm_vm_set_exit_handler(vm, KVM_EXIT_HLT, hlt_ends, &hlts), 0);
    vmm_vm_start(vm);
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
    assert_int_equal(hlts, 1);
    assert_int_equal(e.kind, VMM_VM_END_HANDLER);
    assert_string_equal(vmm_vm_end_kind_name(e.kind), "handler");
    assert_int_equal(e.exit_reason, KVM_EXIT_HLT);
    assert_int_equal(e.code, KVM_EXIT_HLT);
    assert_int_equal(e.vcpu_id, 0);
    vmm_vm_free(vm);

    /* Same for an exit with its own kind: the exit data stay. */
    n = 3;
    vm = new_vm();
    assert_non_null(vmm_vcpu_new(vm, 0, "c0", NULL));
    assert_int_equal(vmm_vm_set_exit_handler(vm, KVM_EXIT_SHUTDOWN, hlt_ends, &hlts), 0);
    vmm_vm_start(vm);
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
    assert_int_equal(e.kind, VMM_VM_END_HANDLER);
    assert_int_equal(e.exit_reason, KVM_EXIT_SHUTDOWN);
    vmm_vm_free(vm);
}

/* Default HLT: the vCPU waits until kicked. */
static void test_hlt_kick(void **state)
{
    int n = 0;
    VmmVcpuStats st;
    VmmVmExit e;
    (void)state;

    fk.run_fn = hlt_then_shutdown;
    fk.run_opaque = &n;
    VmmVm *vm = new_vm();
    VmmVcpu *v = vmm_vcpu_new(vm, 0, "c0", NULL);
    vmm_vm_start(vm);
    for (int k = 1; k <= 3; k++) {
        VmmVcpuStats s2;
        do {
            usleep(1000);
            vmm_vcpu_get_stats(v, &s2);
        } while (s2.exits_hlt < (uint64_t)k);
        usleep(2000);
        vmm_vcpu_get_stats(v, &st);
        assert_int_equal(st.exits_hlt, k);      /* still halted: no more runs */
        assert_int_equal(st.runs, k);
        vmm_vcpu_kick(v);
    }
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
    assert_int_equal(e.kind, VMM_VM_END_SHUTDOWN);
    vmm_vm_free(vm);
}

/* A guest blocked in KVM_RUN (in-kernel HLT): pause kicks it out; resume. */
static void test_pause_resume(void **state)
{
    (void)state;
    fk.run_fn = NULL;           /* fake_block: sits in KVM_RUN until kicked */
    VmmVm *vm = new_vm();
    VmmVcpu *v0 = vmm_vcpu_new(vm, 0, "c0", NULL);
    VmmVcpu *v1 = vmm_vcpu_new(vm, 1, "c1", NULL);
    assert_non_null(v1);
    for (int i = 0; i < 5; i++) {
        uint64_t before = fk.vcpus[0].nruns;
        vmm_vm_start(vm);
        wait_for(&fk.vcpus[0].nruns, before + 1);
        wait_for(&fk.vcpus[1].nruns, 1);
        assert_int_equal(vmm_vm_pause(vm), 0);
        assert_true(vmm_vcpu_is_paused(v0));
        assert_true(vmm_vcpu_is_paused(v1));
    }
    uint64_t before = fk.vcpus[0].nruns;
    vmm_vcpu_resume(v0);
    wait_for(&fk.vcpus[0].nruns, before + 1);
    assert_int_equal(vmm_vcpu_pause(v0), 0);
    vmm_vm_free(vm);
}

/* A PIO exit is completed (KVM_RUN with immediate_exit) before the vCPU
 * stops: here a device ends the VM from its write callback. */
static int io_then_block(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    (void)opaque;
    if (fv->nruns == 1) {
        run->exit_reason = KVM_EXIT_IO;
        run->io = (typeof(run->io)){ .direction = KVM_EXIT_IO_IN, .size = 1,
                                     .port = 0x10, .count = 1, .data_offset = 4096 };
        return 0;
    }
    return fake_block(fv);
}

static uint64_t end_read(void *opaque, uint64_t off, unsigned size)
{
    (void)off;
    (void)size;
    vmm_vm_request_end(opaque, 5);
    return 7;
}

static void test_pending_io_completed(void **state)
{
    static const VmmIoOps ops = { end_read, NULL };
    VmmVmExit e;
    (void)state;

    fk.run_fn = io_then_block;
    VmmVm *vm = new_vm();
    assert_non_null(vmm_vcpu_new(vm, 0, "c0", NULL));
    vmm_vm_register_io(vm, true, 0x10, 1, &ops, vm);
    vmm_vm_start(vm);
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
    assert_int_equal(e.kind, VMM_VM_END_REQUESTED);
    assert_int_equal(fk.vcpus[0].nruns, 2);
    assert_int_equal(fk.vcpus[0].entered_with_immediate_exit, 1);
    vmm_vm_free(vm);
}

/* ---- state levels ---------------------------------------------------- */

static bool msr_written(FakeVcpu *v, uint32_t index)
{
    for (uint32_t i = 0; i < v->nlast_set_msrs; i++) {
        if (v->last_set_msrs[i] == index) {
            return true;
        }
    }
    return false;
}

static int shutdown_run(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    (void)fv;
    (void)opaque;
    run->exit_reason = KVM_EXIT_SHUTDOWN;
    return 0;
}

static void test_state_levels(void **state)
{
    struct kvm_regs regs;
    uint64_t v64;
    unsigned mark;
    VmmVmExit e;
    (void)state;

    fk.run_fn = shutdown_run;
    VmmVm *vm = new_vm();
    VmmVcpu *v = vmm_vcpu_new(vm, 0, "c0", NULL);
    FakeVcpu *f = &fk.vcpus[0];
    f->regs.rax = 1;
    f->msr_tsc = 1000;

    /* synchronize_state reads everything once. */
    mark = fk.nlog;
    assert_int_equal(vmm_vcpu_get_regs(v, &regs), 0);
    assert_int_equal(regs.rax, 1);
    assert_int_equal(vmm_vcpu_get_msr(v, 0x10, &v64), 0);
    assert_int_equal(v64, 1000);
    assert_int_equal(fake_count(&fk, KVM_GET_REGS, mark), 1);
    assert_int_equal(fake_count(&fk, KVM_GET_MSRS, mark), 1);
    assert_int_equal(vmm_vcpu_get_msr(v, 0x1234, &v64), -ENOENT);

    /* FULL writes everything, the TSC included. */
    assert_int_equal(vmm_vcpu_set_msr(v, 0x10, 5000), 0);
    mark = fk.nlog;
    assert_int_equal(vmm_vcpu_synchronize_post_init(v), 0);
    assert_int_equal(f->msr_tsc, 5000);
    assert_true(msr_written(f, 0x10) && msr_written(f, 0x277) && msr_written(f, 0xc0000081));
    assert_int_equal(fake_count(&fk, KVM_SET_MP_STATE, mark), 1);
    assert_int_equal(fake_count(&fk, KVM_SET_REGS, mark), 1);
    assert_int_equal(fake_count(&fk, KVM_GET_REGS, mark), 0);   /* cache was valid */

    /* RESET: MP state, reset-level MSRs (PAT), not the TSC. */
    assert_int_equal(vmm_vcpu_set_msr(v, 0x10, 6000), 0);
    mark = fk.nlog;
    assert_int_equal(vmm_vcpu_synchronize_post_reset(v), 0);
    assert_int_equal(f->msr_tsc, 5000);
    assert_false(msr_written(f, 0x10));
    assert_true(msr_written(f, 0x277) && msr_written(f, 0xc0000081));
    assert_int_equal(fake_count(&fk, KVM_SET_MP_STATE, mark), 1);

    /* RUNTIME (a dirty cache before KVM_RUN): registers and runtime MSRs
     * only: no MP state, no PAT, no TSC. */
    regs.rax = 0x5555;
    assert_int_equal(vmm_vcpu_set_regs(v, &regs), 0);
    assert_int_equal(vmm_vcpu_set_msr(v, 0x10, 7000), 0);
    assert_int_equal(vmm_vcpu_set_msr(v, 0xc0000081, 0x42), 0);
    mark = fk.nlog;
    vmm_vm_start(vm);
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
    assert_int_equal(f->regs.rax, 0x5555);
    assert_int_equal(f->msr_star, 0x42);
    assert_int_equal(f->msr_tsc, 5000);
    assert_false(msr_written(f, 0x10));
    assert_false(msr_written(f, 0x277));
    assert_int_equal(fake_count(&fk, KVM_SET_MP_STATE, mark), 0);
    assert_int_equal(fake_count(&fk, KVM_SET_REGS, mark), 1);

    /* Clean now: the next run writes nothing. */
    mark = fk.nlog;
    vmm_vm_clear_end(vm);
    vmm_vm_start(vm);
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
    assert_int_equal(fake_count(&fk, KVM_SET_REGS, mark), 0);

    /* pre_loadvm marks dirty without reading KVM. */
    mark = fk.nlog;
    assert_int_equal(vmm_vcpu_synchronize_pre_loadvm(v), 0);
    assert_int_equal(vmm_vcpu_get_regs(v, &regs), 0);
    assert_int_equal(fake_count(&fk, KVM_GET_REGS, mark), 0);

    VmmVcpuStats st;
    vmm_vcpu_get_stats(v, &st);
    assert_int_equal(st.state_puts[VMM_STATE_FULL], 1);
    assert_int_equal(st.state_puts[VMM_STATE_RESET], 1);
    assert_int_equal(st.state_puts[VMM_STATE_RUNTIME], 1);
    vmm_vm_free(vm);
}

static void test_state_snapshot_and_errors(void **state)
{
    VmmVcpuState *snap = calloc(1, sizeof(*snap));
    struct kvm_regs regs;
    (void)state;

    VmmVm *vm = new_vm();
    VmmVcpu *v = vmm_vcpu_new(vm, 0, "c0", NULL);
    FakeVcpu *f = &fk.vcpus[0];
    f->regs.rbx = 0x77;
    f->msr_tsc = 123;
    assert_int_equal(vmm_vcpu_get_state(v, snap), 0);
    assert_int_equal(snap->regs.rbx, 0x77);

    /* A failing KVM_GET_SREGS fails the accessor and leaves the cache
     * clean: the next access reads again. */
    assert_int_equal(vmm_vcpu_synchronize_post_reset(v), 0);   /* clean */
    f->regs.rbx = 0x99;
    fake_fail(&fk, KVM_GET_SREGS, 1, -EIO);
    assert_int_equal(vmm_vcpu_get_regs(v, &regs), -EIO);
    assert_int_equal(vmm_vcpu_get_regs(v, &regs), 0);
    assert_int_equal(regs.rbx, 0x99);

    /* Restore writes the snapshot at FULL level. */
    f->msr_tsc = 999;
    assert_int_equal(vmm_vcpu_set_state(v, snap), 0);
    assert_int_equal(f->regs.rbx, 0x77);
    assert_int_equal(f->msr_tsc, 123);
    snap->size = 3;
    assert_int_equal(vmm_vcpu_set_state(v, snap), -EINVAL);
    snap->size = sizeof(*snap);
    snap->nmsrs = 1000;
    assert_int_equal(vmm_vcpu_set_state(v, snap), -EINVAL);

    /* A failing SET_MSRS at the RUNTIME writeback ends the VM with an error. */
    regs.rbx = 1;
    vmm_vcpu_set_regs(v, &regs);
    fake_fail(&fk, KVM_SET_SREGS, 1, -EINVAL);
    fk.run_fn = shutdown_run;
    vmm_vm_start(vm);
    VmmVmExit e;
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
    assert_int_equal(e.kind, VMM_VM_END_ERROR);
    assert_int_equal(e.error, -EINVAL);
    vmm_vm_free(vm);
    free(snap);
}

/* XSAVE beyond 4 KiB: KVM_GET_XSAVE2 with the size KVM_CAP_XSAVE2 reports,
 * the legacy KVM_GET_XSAVE without it or when the size is too large for
 * VmmVcpuState, failures passed up, snapshot sizes checked. */
static void test_xsave2(void **state)
{
    VmmVcpuState *snap = calloc(1, sizeof(*snap));
    (void)state;

    fk.has_xsave = true;
    fk.xsave2_size = 11008;                 /* AMX-sized */
    VmmVm *vm = new_vm();
    VmmVcpu *v = vmm_vcpu_new(vm, 0, "c0", NULL);
    FakeVcpu *f = &fk.vcpus[0];
    f->xsave[100] = 0x11;
    f->xsave[5000] = 0x22;                  /* beyond the legacy area */
    f->xsave[11007] = 0x33;
    unsigned from = fk.nlog;
    assert_int_equal(vmm_vcpu_get_state(v, snap), 0);
    assert_int_equal(fake_count(&fk, KVM_GET_XSAVE2, from), 1);
    assert_int_equal(fake_count(&fk, KVM_GET_XSAVE, from), 0);
    assert_int_equal(fake_count(&fk, KVM_GET_FPU, from), 0);
    assert_int_equal(snap->xsave_size, 11008);
    assert_true(snap->has_xsave);
    const uint8_t *x = (const uint8_t *)snap->xsave;
    assert_int_equal(x[100], 0x11);
    assert_int_equal(x[5000], 0x22);
    assert_int_equal(x[11007], 0x33);

    /* Restore: KVM_SET_XSAVE carries the whole area. */
    ((uint8_t *)snap->xsave)[6000] = 0x44;
    memset(f->xsave, 0, sizeof(f->xsave));
    from = fk.nlog;
    assert_int_equal(vmm_vcpu_set_state(v, snap), 0);
    assert_int_equal(fake_count(&fk, KVM_SET_XSAVE, from), 1);
    assert_int_equal(f->xsave[5000], 0x22);
    assert_int_equal(f->xsave[6000], 0x44);
    assert_int_equal(f->xsave[11007], 0x33);

    /* A legacy-sized snapshot: the rest is zeroed, not stale. */
    snap->xsave_size = 4096;
    assert_int_equal(vmm_vcpu_set_state(v, snap), 0);
    assert_int_equal(f->xsave[100], 0x11);
    assert_int_equal(f->xsave[5000], 0);
    /* Larger than this VM's area, or not whole words: refused. */
    snap->xsave_size = 12000;
    assert_int_equal(vmm_vcpu_set_state(v, snap), -EINVAL);
    snap->xsave_size = 4097;
    assert_int_equal(vmm_vcpu_set_state(v, snap), -EINVAL);

    /* A failing KVM_GET_XSAVE2 fails the read. */
    assert_int_equal(vmm_vcpu_synchronize_post_reset(v), 0);   /* clean */
    fake_fail(&fk, KVM_GET_XSAVE2, 1, -EFAULT);
    assert_int_equal(vmm_vcpu_get_state(v, snap), -EFAULT);
    assert_int_equal(vmm_vcpu_get_state(v, snap), 0);
    vmm_vm_free(vm);

    /* No KVM_CAP_XSAVE2: KVM_GET_XSAVE, 4096 bytes. */
    fk.xsave2_size = 0;
    vm = new_vm();
    v = vmm_vcpu_new(vm, 0, "c0", NULL);
    from = fk.nlog;
    assert_int_equal(vmm_vcpu_get_state(v, snap), 0);
    assert_int_equal(fake_count(&fk, KVM_GET_XSAVE, from), 1);
    assert_int_equal(fake_count(&fk, KVM_GET_XSAVE2, from), 0);
    assert_int_equal(snap->xsave_size, 4096);
    vmm_vm_free(vm);

    /* An area larger than VmmVcpuState holds: legacy, with a warning. */
    fk.xsave2_size = VMM_XSAVE_MAX + 4096;
    vm = new_vm();
    assert_non_null(strstr(last_log, "VMM_XSAVE_MAX"));
    v = vmm_vcpu_new(vm, 0, "c0", NULL);
    from = fk.nlog;
    assert_int_equal(vmm_vcpu_get_state(v, snap), 0);
    assert_int_equal(fake_count(&fk, KVM_GET_XSAVE, from), 1);
    assert_int_equal(snap->xsave_size, 4096);
    vmm_vm_free(vm);
    free(snap);
}

/* ---- memory slots ------------------------------------------------------ */

static void test_memslots(void **state)
{
    size_t sz = 1 << 20;
    uint8_t *ram = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    VmmAccelGate *g;
    uint64_t inh;
    (void)state;

    VmmVm *vm = new_vm();
    g = vmm_vm_gate(vm);
    assert_int_equal(vmm_vm_map_memory(vm, 0, 0x40000, ram, 0), 0);
    assert_int_equal(vmm_vm_map_memory(vm, 0x3f000, 0x2000, ram, 0), -EEXIST);
    assert_int_equal(vmm_vm_map_memory(vm, 0x80000, 0x1001, ram, 0), -EINVAL);
    assert_int_equal(vmm_vm_map_memory(vm, 0x80000, 0x1000, ram + 1, 0), -EINVAL);
    assert_int_equal(vmm_vm_map_memory(vm, 0x80000, 0, ram, 0), -EINVAL);
    assert_int_equal(vmm_vm_map_memory(vm, -0x1000ULL, 0x2000, ram, 0), -EINVAL);
    assert_int_equal(vmm_vm_map_memory(vm, 0x80000, 0x1000, ram, 0x80), -EINVAL);
    assert_int_equal(vmm_vm_unmap_memory(vm, 0x1000), -ENOENT);
    assert_int_equal(vmm_vm_map_memory(vm, 0x80000, 0x10000, ram + 0x40000, 0), 0);

    /* A disjoint update does not inhibit; an overlapping one does. */
    inh = vmm_accel_gate_inhibit_count(g);
    assert_int_equal(vmm_vm_map_memory(vm, 0x100000, 0x1000, ram + 0x60000, 0), 0);
    assert_int_equal(vmm_accel_gate_inhibit_count(g), inh);
    assert_int_equal(vmm_vm_resize_memory(vm, 0, 0x30000), 0);
    assert_int_equal(vmm_accel_gate_inhibit_count(g), inh + 1);
    assert_int_equal(fk.last_region.memory_size, 0x30000);
    assert_int_equal(vmm_vm_resize_memory(vm, 0, 0x90000), -EEXIST);   /* hits 0x80000 */
    /* Read-only flip: delete + add, inhibited; dirty flag: in place. */
    assert_int_equal(vmm_vm_set_memory_flags(vm, 0x80000, VMM_SLOT_READONLY), 0);
    assert_int_equal(vmm_accel_gate_inhibit_count(g), inh + 2);
    assert_int_equal(fk.last_region.flags, KVM_MEM_READONLY);
    assert_int_equal(vmm_vm_set_memory_flags(vm, 0x80000, VMM_SLOT_READONLY | VMM_SLOT_LOG_DIRTY), 0);
    assert_int_equal(vmm_accel_gate_inhibit_count(g), inh + 2);
    assert_int_equal(fk.last_region.flags, KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES);

    /* Dirty log (bitmap mode). */
    uint64_t bm[2];
    assert_false(vmm_vm_dirty_ring_enabled(vm));
    assert_int_equal(vmm_vm_get_dirty_log(vm, 0, bm, sizeof(bm)), -EINVAL);
    assert_int_equal(vmm_vm_get_dirty_log(vm, 0x80000, bm, 1), -ENOSPC);
    unsigned mark = fk.nlog;
    assert_int_equal(vmm_vm_get_dirty_log(vm, 0x80000, bm, sizeof(bm)), 0);
    assert_int_equal(fake_count(&fk, KVM_GET_DIRTY_LOG, mark), 1);

    /* An add that fails after the delete: the old layout comes back. */
    fake_fail(&fk, KVM_SET_USER_MEMORY_REGION, 2, -ENOMEM);
    assert_int_equal(vmm_vm_resize_memory(vm, 0, 0x20000), -ENOMEM);
    assert_int_equal(fk.last_region.memory_size, 0x30000);
    assert_int_equal(fk.last_region.guest_phys_addr, 0);
    fake_fail(&fk, 0, 0, 0);
    assert_int_equal(vmm_vm_resize_memory(vm, 0, 0x20000), 0);
    assert_int_equal(vmm_vm_unmap_memory(vm, 0x100000), 0);

    /* A split: one slot becomes two with a hole, atomically. */
    VmmMemSlotDesc del = { 0, 0x20000, ram, 0 };
    VmmMemSlotDesc add[2] = { { 0, 0x8000, ram, 0 }, { 0x10000, 0x10000, ram + 0x10000, 0 } };
    assert_int_equal(vmm_vm_update_memory(vm, &del, 1, add, 2), 0);
    /* resize, read-only flip, the failed resize, resize, split */
    assert_int_equal(vmm_accel_gate_inhibit_count(g), inh + 5);
    vmm_vm_free(vm);
    munmap(ram, sz);
}

/* An inhibited update kicks vCPUs sitting in KVM_RUN and completes. */
static void test_memslot_update_kicks(void **state)
{
    uint8_t *ram = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    (void)state;

    fk.run_fn = NULL;       /* blocked in KVM_RUN until kicked */
    VmmVm *vm = new_vm();
    vmm_vcpu_new(vm, 0, "c0", NULL);
    vmm_vcpu_new(vm, 1, "c1", NULL);
    assert_int_equal(vmm_vm_map_memory(vm, 0, 0x8000, ram, 0), 0);
    vmm_vm_start(vm);
    for (int i = 0; i < 10; i++) {
        wait_for(&fk.vcpus[0].nruns, i + 1);
        wait_for(&fk.vcpus[1].nruns, i + 1);
        assert_int_equal(vmm_vm_resize_memory(vm, 0, i % 2 ? 0x8000 : 0x10000), 0);
    }
    vmm_vm_pause(vm);
    vmm_vm_free(vm);
    munmap(ram, 1 << 16);
}

/* ---- interrupts ---------------------------------------------------------- */

static void test_irq(void **state)
{
    (void)state;
    VmmVm *vm = new_vm();

    assert_int_equal(vmm_vm_set_irq(vm, 4, true), -ENODEV);
    assert_int_equal(vmm_vm_add_msi_route(vm, 0xfee00000, 0x30), -ENODEV);
    assert_int_equal(vmm_vm_create_irqchip(vm, true), 0);
    assert_int_equal(vmm_vm_create_irqchip(vm, true), -EEXIST);
    assert_int_equal(vmm_vm_set_irq(vm, 4, true), 0);
    assert_int_equal(vmm_vm_signal_msi(vm, 0xfee00000, 0x31), 0);
    int g1 = vmm_vm_add_msi_route(vm, 0xfee00000, 0x30);
    int g2 = vmm_vm_add_msi_route(vm, 0xfee00000, 0x31);
    assert_int_equal(g1, 24);
    assert_int_equal(g2, 25);
    assert_int_equal(vmm_vm_update_msi_route(vm, g1, 0xfee01000, 0x40), 0);
    assert_int_equal(vmm_vm_remove_msi_route(vm, g1), 0);
    assert_int_equal(vmm_vm_remove_msi_route(vm, g1), -ENOENT);
    assert_int_equal(vmm_vm_add_msi_route(vm, 0xfee00000, 0x32), 24);
    fake_fail(&fk, KVM_SET_GSI_ROUTING, 1, -ENOMEM);
    assert_int_equal(vmm_vm_add_msi_route(vm, 0xfee00000, 0x33), -ENOMEM);
    assert_int_equal(vmm_vm_add_msi_route(vm, 0xfee00000, 0x33), 26);
    assert_int_equal(vmm_vm_add_irqfd(vm, -1, 5, -1), -EINVAL);
    assert_int_equal(vmm_vm_add_irqfd(vm, 3, 5, -1), 0);
    assert_int_equal(vmm_vm_remove_irqfd(vm, 3, 5), 0);
    assert_int_equal(vmm_vm_add_ioeventfd(vm, 3, 0xfffe, 4, VMM_IOEVENTFD_PIO, 0), -EINVAL);
    assert_int_equal(vmm_vm_add_ioeventfd(vm, 3, 0x10, 3, VMM_IOEVENTFD_PIO, 0), -EINVAL);
    assert_int_equal(vmm_vm_add_ioeventfd(vm, 3, 0xd000, 0, VMM_IOEVENTFD_DATAMATCH, 1), -EINVAL);
    assert_int_equal(vmm_vm_add_ioeventfd(vm, 3, 0x10, 2, 1u << 7, 0), -EINVAL); /* unknown */
    const uint32_t pio_dm = VMM_IOEVENTFD_PIO | VMM_IOEVENTFD_DATAMATCH;
    assert_int_equal(vmm_vm_add_ioeventfd(vm, 3, 0x10, 2, pio_dm, 7), 0);
    assert_int_equal(vmm_vm_remove_ioeventfd(vm, 3, 0x10, 2, pio_dm, 7), 0);
    VmmVcpu *v = vmm_vcpu_new(vm, 0, "c0", NULL);
    struct kvm_lapic_state lapic;
    assert_int_equal(vmm_vcpu_get_lapic(v, &lapic), 0);
    int err;
    struct kvm_cpuid2 *c = vmm_vm_get_supported_cpuid(vm, &err);
    assert_non_null(c);
    assert_int_equal(c->nent, 2);
    assert_int_equal(vmm_vcpu_set_cpuid(v, c), 0);
    free(c);
    vmm_vm_free(vm);
}


/* ---- safe unregister under load (suite concurrency, TSan) ---------------- */

typedef struct Churn {
    uint64_t magic;         /* plain: written before register, freed after
                             * unregister; a late callback is a TSan/ASan
                             * report, or a wrong magic */
    unsigned alive;
} Churn;
#define CHURN_MAGIC 0x6368726eULL

static unsigned churn_bad;

static int mmio_forever(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    (void)opaque;
    run->exit_reason = KVM_EXIT_MMIO;
    run->mmio.phys_addr = 0xd0000000 + (fv->nruns % 4) * 8;
    run->mmio.len = 4;
    run->mmio.is_write = fv->nruns & 1;
    return 0;
}

static uint64_t churn_read(void *opaque, uint64_t off, unsigned size)
{
    Churn *c = opaque;
    (void)off;
    (void)size;
    if (!vk_atomic_read(&c->alive) || c->magic != CHURN_MAGIC) {
        vk_atomic_inc(&churn_bad);
    }
    return 0;
}

static void churn_write(void *opaque, uint64_t off, uint64_t v, unsigned size)
{
    (void)v;
    churn_read(opaque, off, size);
}

static const VmmIoOps churn_ops = { churn_read, churn_write };

/* A device that unregisters itself from its own callback. */
typedef struct SelfUnreg {
    VmmVm *vm;
    unsigned done;
} SelfUnreg;

static void self_unreg_write(void *opaque, uint64_t off, uint64_t v, unsigned size)
{
    SelfUnreg *s = opaque;
    (void)off;
    (void)v;
    (void)size;
    if (!vk_atomic_xchg(&s->done, 1)) {
        assert_int_equal(vmm_vm_unregister_io(s->vm, false, 0xd0000000), 0);
    }
}

static void test_unregister_stress(void **state)
{
    static const VmmIoOps self_ops = { NULL, self_unreg_write };
    const char *ms = getenv("VMM_STRESS_MS");
    int64_t dur = (ms ? atoi(ms) : 300) * 1000000LL;
    struct timespec ts;
    (void)state;

    fk.run_fn = mmio_forever;
    VmmVm *vm = new_vm();
    vmm_vcpu_new(vm, 0, "c0", NULL);
    vmm_vcpu_new(vm, 1, "c1", NULL);
    SelfUnreg su = { .vm = vm };
    assert_int_equal(vmm_vm_register_io(vm, false, 0xd0000000, 0x100, &self_ops, &su), 0);
    vmm_vm_start(vm);
    while (!vk_atomic_read(&su.done)) {
        usleep(100);
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t end = ts.tv_sec * 1000000000LL + ts.tv_nsec + dur;
    unsigned rounds = 0;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (rounds > 0 && ts.tv_sec * 1000000000LL + ts.tv_nsec > end) {
            break;          /* (at least one round, however late we run) */
        }
        Churn *c = calloc(1, sizeof(*c));
        c->alive = 1;
        c->magic = CHURN_MAGIC;
        while (vmm_vm_register_io(vm, false, 0xd0000000, 0x100, &churn_ops, c) == -EEXIST) {
            usleep(10);     /* the self-unregistering device may still be there */
        }
        usleep(200);
        assert_int_equal(vmm_vm_unregister_io(vm, false, 0xd0000000), 0);
        vk_atomic_set(&c->alive, 0);
        c->magic = 0;
        free(c);            /* ASan: a callback after this is a use after free */
        rounds++;
    }
    vmm_vm_pause(vm);
    printf("# %u register/unregister rounds under MMIO load, %llu unhandled\n", rounds,
           (unsigned long long)vmm_vm_unhandled_io(vm));
    assert_int_equal(churn_bad, 0);
    assert_true(rounds > 0);
    vmm_vm_free(vm);
}

/* vmm_vcpu_kick from a signal handler (async-signal-safe). */
static VmmVcpu *alarm_vcpu;

static void alarm_handler(int sig)
{
    (void)sig;
    vmm_vcpu_kick(alarm_vcpu);
}

static void test_kick_from_signal(void **state)
{
    int n = 0;
    VmmVmExit e;
    struct sigaction sa = { .sa_handler = alarm_handler };
    (void)state;

    fk.run_fn = hlt_then_shutdown;
    fk.run_opaque = &n;
    VmmVm *vm = new_vm();
    alarm_vcpu = vmm_vcpu_new(vm, 0, "c0", NULL);
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    vmm_vm_start(vm);
    for (int k = 0; k < 3; k++) {
        VmmVcpuStats s;
        do {
            usleep(500);
            vmm_vcpu_get_stats(alarm_vcpu, &s);
        } while (s.exits_hlt < (uint64_t)k + 1);
        raise(SIGALRM);
    }
    assert_int_equal(vmm_vm_wait(vm, 5000000000LL, &e), 0);
    assert_int_equal(e.kind, VMM_VM_END_SHUTDOWN);
    signal(SIGALRM, SIG_DFL);
    vmm_vm_free(vm);
}

/* VmmVmOptions.kick_signal: a vCPU blocked in KVM_RUN is kicked out with
 * the signal named (the fake's KVM_RUN waits for that signal only: with
 * any other, the pause would take its 5 s timeout and end the VM); a
 * signal with the application's own handler, or a fault signal, is
 * refused. */
static void kick_other(int sig)
{
    (void)sig;
}

static void test_kick_signal_option(void **state)
{
    struct sigaction sa, old;
    VmmVmExit e;
    int err = 0;
    (void)state;

    fk.kick_signal = SIGRTMIN + 5;
    fk.run_fn = NULL;                       /* fake_block */
    VmmVm *vm = new_vm();
    assert_int_equal(sigaction(SIGRTMIN + 5, NULL, &old), 0);
    assert_true(old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN);
    assert_true(old.sa_flags & SA_RESTART);
    VmmVcpu *v = vmm_vcpu_new(vm, 0, "c0", NULL);
    for (int i = 0; i < 3; i++) {
        uint64_t before = fk.vcpus[0].nruns;
        vmm_vm_start(vm);
        wait_for(&fk.vcpus[0].nruns, before + 1);
        assert_int_equal(vmm_vm_pause(vm), 0);
        assert_true(vmm_vcpu_is_paused(v));
        /* Not ended: the fake KVM_RUN returned -EINTR because the named
         * signal kicked it.  Without that signal it returns -ETIMEDOUT
         * after 5 s, which ends the VM with an error (no wall-clock bound
         * on the pause needed: a loaded machine may stall it). */
        assert_int_equal(vmm_vm_wait(vm, 0, &e), -ETIMEDOUT);
    }
    vmm_vm_free(vm);

    /* The application's signal is not taken. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_other;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGRTMIN + 6, &sa, &old), 0);
    VmmVmOptions o = fake_vm_options(&fk);
    o.kick_signal = SIGRTMIN + 6;
    assert_null(vmm_vm_new(&o, &err));
    assert_int_equal(err, -EBUSY);
    sigaction(SIGRTMIN + 6, &old, NULL);
    o.kick_signal = SIGSEGV;
    assert_null(vmm_vm_new(&o, &err));
    assert_int_equal(err, -EINVAL);
    o.kick_signal = 33;                     /* glibc's own (below SIGRTMIN) */
    assert_null(vmm_vm_new(&o, &err));
    assert_int_equal(err, -EINVAL);
    assert_int_equal(fk.open_fds, 0);       /* nothing leaked on the way */
    fk.kick_signal = SIGUSR1;
    fake_vm_options(&fk);                   /* back to the default */
}

int main(void)
{
    if (getenv("TEST_FILTER")) {
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vm_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vcpu_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handlers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_ends_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hlt_kick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_io_completed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_snapshot_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memslots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memslot_update_kicks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_irq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unregister_stress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kick_from_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xsave2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kick_signal_option, setup, teardown),
    };
    return cmocka_run_group_tests_name("kvm-fake", tests, NULL, NULL);
}
