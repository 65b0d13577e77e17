/* SPDX-License-Identifier: MIT */
/* Names of KVM exit reasons and of the ways a VM ends, for messages. */
#include <linux/kvm.h>

#include "vmmkit/kvm.h"

/* KVM_EXIT_* by number; a reason the build's <linux/kvm.h> lacks stays
 * unnamed ("unknown"). */
static const char *const exit_names[] = {
#define N(reason, name) [reason] = name,
    N(KVM_EXIT_UNKNOWN, "unknown-reason")
    N(KVM_EXIT_EXCEPTION, "exception")
    N(KVM_EXIT_IO, "io")
    N(KVM_EXIT_HYPERCALL, "hypercall")
    N(KVM_EXIT_DEBUG, "debug")
    N(KVM_EXIT_HLT, "hlt")
    N(KVM_EXIT_MMIO, "mmio")
    N(KVM_EXIT_IRQ_WINDOW_OPEN, "irq-window-open")
    N(KVM_EXIT_SHUTDOWN, "shutdown")
    N(KVM_EXIT_FAIL_ENTRY, "fail-entry")
    N(KVM_EXIT_INTR, "intr")
    N(KVM_EXIT_SET_TPR, "set-tpr")
    N(KVM_EXIT_TPR_ACCESS, "tpr-access")
    N(KVM_EXIT_S390_SIEIC, "s390-sieic")
    N(KVM_EXIT_S390_RESET, "s390-reset")
    N(KVM_EXIT_DCR, "dcr")
    N(KVM_EXIT_NMI, "nmi")
    N(KVM_EXIT_INTERNAL_ERROR, "internal-error")
    N(KVM_EXIT_OSI, "osi")
    N(KVM_EXIT_PAPR_HCALL, "papr-hcall")
    N(KVM_EXIT_S390_UCONTROL, "s390-ucontrol")
    N(KVM_EXIT_WATCHDOG, "watchdog")
    N(KVM_EXIT_S390_TSCH, "s390-tsch")
    N(KVM_EXIT_EPR, "epr")
    N(KVM_EXIT_SYSTEM_EVENT, "system-event")
    N(KVM_EXIT_S390_STSI, "s390-stsi")
    N(KVM_EXIT_IOAPIC_EOI, "ioapic-eoi")
    N(KVM_EXIT_HYPERV, "hyperv")
#ifdef KVM_EXIT_ARM_NISV
    N(KVM_EXIT_ARM_NISV, "arm-nisv")
#endif
#ifdef KVM_EXIT_X86_RDMSR
    N(KVM_EXIT_X86_RDMSR, "x86-rdmsr")
    N(KVM_EXIT_X86_WRMSR, "x86-wrmsr")
#endif
#ifdef KVM_EXIT_DIRTY_RING_FULL
    N(KVM_EXIT_DIRTY_RING_FULL, "dirty-ring-full")
#endif
#ifdef KVM_EXIT_AP_RESET_HOLD
    N(KVM_EXIT_AP_RESET_HOLD, "ap-reset-hold")
#endif
#ifdef KVM_EXIT_X86_BUS_LOCK
    N(KVM_EXIT_X86_BUS_LOCK, "x86-bus-lock")
#endif
#ifdef KVM_EXIT_XEN
    N(KVM_EXIT_XEN, "xen")
#endif
#ifdef KVM_EXIT_RISCV_SBI
    N(KVM_EXIT_RISCV_SBI, "riscv-sbi")
#endif
#ifdef KVM_EXIT_RISCV_CSR
    N(KVM_EXIT_RISCV_CSR, "riscv-csr")
#endif
#ifdef KVM_EXIT_NOTIFY
    N(KVM_EXIT_NOTIFY, "notify")
#endif
#ifdef KVM_EXIT_LOONGARCH_IOCSR
    N(KVM_EXIT_LOONGARCH_IOCSR, "loongarch-iocsr")
#endif
#ifdef KVM_EXIT_MEMORY_FAULT
    N(KVM_EXIT_MEMORY_FAULT, "memory-fault")
#endif
#undef N
};

const char *vmm_exit_reason_name(uint32_t reason)
{
    if (reason < sizeof(exit_names) / sizeof(exit_names[0]) && exit_names[reason]) {
        return exit_names[reason];
    }
    return "unknown";
}

static const char *const end_kind_names[] = {
    [VMM_VM_RUNNING] = "running",
    [VMM_VM_END_REQUESTED] = "requested",
    [VMM_VM_END_SHUTDOWN] = "shutdown",
    [VMM_VM_END_SYSTEM_EVENT] = "system-event",
    [VMM_VM_END_INTERNAL_ERROR] = "internal-error",
    [VMM_VM_END_FAIL_ENTRY] = "fail-entry",
    [VMM_VM_END_UNHANDLED_EXIT] = "unhandled-exit",
    [VMM_VM_END_ERROR] = "error",
    [VMM_VM_END_HANDLER] = "handler",
};
_Static_assert(sizeof(end_kind_names) / sizeof(end_kind_names[0]) == VMM_VM_END_HANDLER + 1,
               "a VmmVmEndKind without a name");

const char *vmm_vm_end_kind_name(VmmVmEndKind kind)
{
    if ((unsigned)kind < sizeof(end_kind_names) / sizeof(end_kind_names[0])) {
        return end_kind_names[kind];
    }
    return "unknown";
}
