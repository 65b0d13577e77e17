/* SPDX-License-Identifier: MIT */
/* The name functions: every value has its own name, unknown values a
 * defined one.  Public API only. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <linux/kvm.h>

#include <vmmkit/vmmkit.h>

/* Names are non-empty, distinct, and not the "unknown" fallback. */
static void check_names(const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_non_null(names[i]);
        assert_true(names[i][0] != '\0');
        assert_string_not_equal(names[i], "unknown");
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                fail_msg("values %zu and %zu are both named '%s'", j, i, names[i]);
            }
        }
    }
}

static void test_exit_reason_names(void **state)
{
    (void)state;
    /* Every reason Debian 12's <linux/kvm.h> defines: 0..KVM_EXIT_NOTIFY. */
    const char *names[KVM_EXIT_NOTIFY + 1];
    for (uint32_t r = 0; r <= KVM_EXIT_NOTIFY; r++) {
        names[r] = vmm_exit_reason_name(r);
    }
    check_names(names, KVM_EXIT_NOTIFY + 1);
    assert_string_equal(vmm_exit_reason_name(KVM_EXIT_HLT), "hlt");
    assert_string_equal(vmm_exit_reason_name(KVM_EXIT_IO), "io");
    assert_string_equal(vmm_exit_reason_name(KVM_EXIT_MMIO), "mmio");
    assert_string_equal(vmm_exit_reason_name(KVM_EXIT_INTERNAL_ERROR), "internal-error");
    assert_string_equal(vmm_exit_reason_name(KVM_EXIT_SYSTEM_EVENT), "system-event");
    assert_string_equal(vmm_exit_reason_name(1000), "unknown");
    assert_string_equal(vmm_exit_reason_name(UINT32_MAX), "unknown");
}

static void test_end_kind_names(void **state)
{
    (void)state;
    const char *names[VMM_VM_END_HANDLER + 1];
    for (int k = VMM_VM_RUNNING; k <= VMM_VM_END_HANDLER; k++) {
        names[k] = vmm_vm_end_kind_name((VmmVmEndKind)k);
    }
    check_names(names, VMM_VM_END_HANDLER + 1);
    assert_string_equal(vmm_vm_end_kind_name(VMM_VM_END_SHUTDOWN), "shutdown");
    assert_string_equal(vmm_vm_end_kind_name(VMM_VM_END_UNHANDLED_EXIT), "unhandled-exit");
    assert_string_equal(vmm_vm_end_kind_name(VMM_VM_END_HANDLER), "handler");
    assert_string_equal(vmm_vm_end_kind_name((VmmVmEndKind)(VMM_VM_END_HANDLER + 1)),
                        "unknown");
    assert_string_equal(vmm_vm_end_kind_name((VmmVmEndKind)-1), "unknown");
}

static void test_machine_state_names(void **state)
{
    (void)state;
    const char *names[VMM_MACHINE_ERROR + 1];
    for (int s = VMM_MACHINE_CREATED; s <= VMM_MACHINE_ERROR; s++) {
        names[s] = vmm_machine_state_name((VmmMachineState)s);
    }
    check_names(names, VMM_MACHINE_ERROR + 1);
    assert_string_equal(vmm_machine_state_name(VMM_MACHINE_POWEROFF), "poweroff");
    assert_string_equal(vmm_machine_state_name((VmmMachineState)(VMM_MACHINE_ERROR + 1)),
                        "unknown");
    assert_string_equal(vmm_machine_state_name((VmmMachineState)-1), "unknown");
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(vmm_strerror(-ENOENT), "No such file or directory");
    assert_string_equal(vmm_strerror(ENOENT), "No such file or directory");
    assert_string_equal(vmm_strerror(-EINVAL), strerror(EINVAL));
    assert_string_equal(vmm_strerror(-EBUSY), strerror(EBUSY));
    assert_string_equal(vmm_strerror(0), "Success");
    assert_string_equal(vmm_strerror(-100000), "Unknown error");
    assert_string_equal(vmm_strerror(-2147483647 - 1), "Unknown error");
    /* Every errno the C library names keeps its text, from any sign. */
    for (int e = 1; e < 134; e++) {
        assert_string_equal(vmm_strerror(-e), vmm_strerror(e));
        assert_non_null(vmm_strerror(-e));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_reason_names),
        cmocka_unit_test(test_end_kind_names),
        cmocka_unit_test(test_machine_state_names),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
