/* SPDX-License-Identifier: MIT */
/*
 * vmm_kvm_probe's verdicts, on the fake KVM (tests/accel/fake-kvm.c) which
 * plays the probe guest: a full KVM whose every check reports its result,
 * and an emulation-only KVM like kvm_pvm (a slow loop, emulation failures
 * at cmpxchg16b, xrstor and int3, host TSC writes ignored).  The probe
 * itself runs on real KVMs in the kvm suite (tools/vmmkit-kvm-info); this
 * checks what it concludes from each kind of answer, and the module
 * detection from a fake sysfs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fake-kvm.h"
#include "accel/kvm/kvm-probe.h"

typedef struct Script {
    FakeKvm *f;
    bool emulator;          /* play an emulation-only KVM */
    bool fast_loop;         /* ... whose loop runs at speed all the same */
} Script;

static void report(struct kvm_run *run, uint8_t byte)
{
    run->exit_reason = KVM_EXIT_IO;
    run->io = (typeof(run->io)){ .direction = KVM_EXIT_IO_OUT, .size = 1,
                                 .port = PROBE_PORT, .count = 1, .data_offset = 4096 };
    ((uint8_t *)run)[4096] = byte;
}

static void emulation_failure(struct kvm_run *run)
{
    run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
    run->internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
    run->internal.ndata = 0;
}

static uint8_t *guest_ram(FakeKvm *f)
{
    return (uint8_t *)(uintptr_t)f->last_region.userspace_addr;
}

static int run_fn(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    Script *s = opaque;
    uint64_t rip = fv->regs.rip;
    if (rip == kvm_probe_gpa(kvm_probe_long)) {
        report(run, PROBE_OK_LONG);
    } else if (rip == kvm_probe_gpa(kvm_probe_loop)) {
        if (!s->emulator || s->fast_loop) {
            fv->regs.rcx = 0;
            report(run, PROBE_OK_LOOP);
            return 0;
        }
        /* A crawl: a few hundred iterations, then stopped by the probe. */
        fv->regs.rcx = PROBE_LOOP_ITERS - 300;
        fv->regs.rip = 0;                   /* "somewhere in the loop" */
        return fake_block(fv);
    } else if (rip == kvm_probe_gpa(kvm_probe_cx16) ||
               rip == kvm_probe_gpa(kvm_probe_xsave) ||
               rip == kvm_probe_gpa(kvm_probe_int3)) {
        if (s->emulator) {
            emulation_failure(run);
        } else {
            report(run, rip == kvm_probe_gpa(kvm_probe_cx16) ? PROBE_OK_CX16 :
                        rip == kvm_probe_gpa(kvm_probe_xsave) ? PROBE_OK_XSAVE : PROBE_OK_INT3);
        }
    } else if (rip == kvm_probe_gpa(kvm_probe_tsc)) {
        /* The guest reads the TSC the host wrote, or the host's own. */
        uint64_t tsc = s->emulator ? 123456789 : fv->msr_tsc + 1000;
        memcpy(guest_ram(s->f) + PROBE_TSC_GPA, &tsc, 8);
        report(run, PROBE_OK_TSC);
    } else {
        /* After a report the guest halts; the probe ends the run first. */
        return fake_block(fv);
    }
    fv->regs.rip = 0;
    return 0;
}

/* Probe the fake: a full KVM, or an emulator (with a loop at speed when
 * @fast_loop); leaf 1 ECX @ecx1 offers cmpxchg16b and XSAVE or not. */
static void probe_with(bool emulator, bool fast_loop, uint32_t ecx1, VmmKvmInfo *info)
{
    static FakeKvm f;
    fake_kvm_init(&f);
    f.cpuid1_ecx = ecx1;
    Script s = { .f = &f, .emulator = emulator, .fast_loop = fast_loop };
    f.run_fn = run_fn;
    f.run_opaque = &s;
    VmmVmOptions o = fake_vm_options(&f);
    memset(info, 0, sizeof(*info));
    info->size = sizeof(*info);
    assert_int_equal(vmm_kvm_probe(&o, info), 0);
    assert_int_equal(f.open_fds, 0);        /* the probe VM is gone */
    assert_int_equal(f.maps, 0);
}

#define CX16 (1u << 13)
#define XSAVE (1u << 26)

static void test_full(void **state)
{
    (void)state;
    VmmKvmInfo info;
    probe_with(false, false, CX16 | XSAVE, &info);
    uint32_t all = VMM_KVM_CHECKS_STOCK | VMM_KVM_CHECK_TSC_WRITE;
    assert_int_equal(info.checked, all);
    assert_int_equal(info.passed, all);
    assert_true(info.full);
    assert_string_equal(info.reason, "");
    assert_true(info.insns_per_sec >= VMM_KVM_MIN_INSNS_PER_SEC);
    assert_int_equal(info.api_version, KVM_API_VERSION);
}

/* CPUID without cmpxchg16b and XSAVE: those checks are not tried, and a
 * KVM that runs the rest is still full (a kernel does without them). */
static void test_full_without_optional(void **state)
{
    (void)state;
    VmmKvmInfo info;
    probe_with(false, false, 0, &info);
    assert_false(info.checked & (VMM_KVM_CHECK_CMPXCHG16B | VMM_KVM_CHECK_XSAVE));
    assert_true(info.full);
}

static void test_emulator(void **state)
{
    (void)state;
    VmmKvmInfo info;
    probe_with(true, false, CX16 | XSAVE, &info);
    assert_false(info.full);
    assert_int_equal(info.checked, VMM_KVM_CHECKS_STOCK | VMM_KVM_CHECK_TSC_WRITE);
    assert_int_equal(info.passed, VMM_KVM_CHECK_LONG_MODE);
    assert_true(info.insns_per_sec > 0);
    assert_true(info.insns_per_sec < VMM_KVM_MIN_INSNS_PER_SEC);
    /* The first failure is the reason, named by its check. */
    assert_true(strncmp(info.reason, "speed: ", 7) == 0);
    assert_non_null(strstr(info.reason, "instruction emulator"));
}

/* An emulation failure is named as such: the reason of a KVM whose loop
 * passes but whose emulator stops at cmpxchg16b. */
static void test_emulation_failure(void **state)
{
    (void)state;
    VmmKvmInfo info;
    probe_with(true, true, CX16 | XSAVE, &info);
    assert_false(info.full);
    assert_true(info.passed & VMM_KVM_CHECK_SPEED);
    assert_false(info.passed & (VMM_KVM_CHECK_CMPXCHG16B | VMM_KVM_CHECK_XSAVE |
                                VMM_KVM_CHECK_INT3 | VMM_KVM_CHECK_TSC_WRITE));
    assert_non_null(strstr(info.reason,
                           "cmpxchg16b: KVM_EXIT_INTERNAL_ERROR suberror 1 (emulation failure)"));
}

static void test_bad_args(void **state)
{
    (void)state;
    VmmKvmInfo info = { .size = sizeof(info) - 1 };
    assert_int_equal(vmm_kvm_probe(NULL, NULL), -EINVAL);
    assert_int_equal(vmm_kvm_probe(NULL, &info), -EINVAL);
    /* No device: kind none, the errno, a reason, nothing logged as an error. */
    VmmVmOptions o = { .size = sizeof(o), .dev_path = "/nonexistent/kvm" };
    info.size = sizeof(info);
    assert_int_equal(vmm_kvm_probe(&o, &info), -ENOENT);
    assert_int_equal(info.kind, VMM_KVM_KIND_NONE);
    assert_false(info.full);
    assert_non_null(strstr(info.reason, "/nonexistent/kvm"));
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(vmm_kvm_kind_name(VMM_KVM_KIND_PVM), "kvm_pvm");
    assert_string_equal(vmm_kvm_kind_name(VMM_KVM_KIND_INTEL), "kvm_intel");
    assert_string_equal(vmm_kvm_kind_name((VmmKvmKind)99), "unknown");
    assert_string_equal(vmm_kvm_check_name(VMM_KVM_CHECK_INT3), "int3");
    assert_string_equal(vmm_kvm_check_name(VMM_KVM_CHECK_TSC_WRITE), "tsc-write");
    assert_string_equal(vmm_kvm_check_name(3), "unknown");
}

/* The module from a fake /sys/module and /proc/cpuinfo. */
static VmmKvmKind kind_of(const char *const *modules, const char *flags, char *module)
{
    char dir[] = "/tmp/vmmkit-probe-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[128];
    for (const char *const *m = modules; *m; m++) {
        snprintf(p, sizeof(p), "%s/%s", dir, *m);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    snprintf(p, sizeof(p), "%s/cpuinfo", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "processor\t: 0\nflags\t\t: fpu %s sse2\n", flags);
    fclose(f);
    VmmKvmKind k = kvm_probe_kind(dir, p, module, 16);
    unlink(p);
    for (const char *const *m = modules; *m; m++) {
        snprintf(p, sizeof(p), "%s/%s", dir, *m);
        rmdir(p);
    }
    rmdir(dir);
    return k;
}

static void test_kind(void **state)
{
    (void)state;
    char mod[16];
    assert_int_equal(kind_of((const char *[]){ "kvm", "kvm_intel", NULL }, "vmx", mod),
                     VMM_KVM_KIND_INTEL);
    assert_string_equal(mod, "kvm_intel");
    assert_int_equal(kind_of((const char *[]){ "kvm", "kvm_amd", NULL }, "svm", mod),
                     VMM_KVM_KIND_AMD);
    assert_int_equal(kind_of((const char *[]){ "kvm", "kvm_pvm", NULL }, "avx", mod),
                     VMM_KVM_KIND_PVM);
    assert_string_equal(mod, "kvm_pvm");
    /* PVM beside a vendor module: without VMX/SVM only PVM can serve. */
    assert_int_equal(kind_of((const char *[]){ "kvm_intel", "kvm_pvm", NULL }, "avx", mod),
                     VMM_KVM_KIND_PVM);
    assert_int_equal(kind_of((const char *[]){ "kvm_intel", "kvm_pvm", NULL }, "vmx", mod),
                     VMM_KVM_KIND_INTEL);
    assert_int_equal(kind_of((const char *[]){ "kvm", NULL }, "vmx", mod), VMM_KVM_KIND_OTHER);
    assert_string_equal(mod, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_full_without_optional),
        cmocka_unit_test(test_emulator),
        cmocka_unit_test(test_emulation_failure),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_kind),
    };
    return cmocka_run_group_tests_name("kvm-probe", tests, NULL, NULL);
}
