/* Helpers for the raw KVM tests (see kvm-raw.h). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvm-raw.h"

int raw_open_kvm(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

    if (fd < 0) {
        fail_msg("open /dev/kvm: %s (a KVM test needs a kernel KVM; run it through "
                 "meson test or scripts/vm-run)", strerror(errno));
    }
    return fd;
}

void raw_vm_init(RawVm *vm)
{
    struct kvm_userspace_memory_region slot = {
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = RAW_RAM_SIZE,
    };
    int size;

    memset(vm, 0, sizeof(*vm));
    vm->kvm = raw_open_kvm();
    assert_int_equal(ioctl(vm->kvm, KVM_GET_API_VERSION, 0), KVM_API_VERSION);
    vm->vm = ioctl(vm->kvm, KVM_CREATE_VM, 0);
    assert_true(vm->vm >= 0);
    /* Needed by VMX without unrestricted guest; harmless elsewhere. */
    assert_int_equal(ioctl(vm->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul), 0);
    size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    assert_true(size >= (int)sizeof(struct kvm_run));
    vm->run_size = (size_t)size;
    vm->ram = mmap(NULL, RAW_RAM_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    assert_true(vm->ram != MAP_FAILED);
    slot.userspace_addr = (uintptr_t)vm->ram;
    assert_int_equal(ioctl(vm->vm, KVM_SET_USER_MEMORY_REGION, &slot), 0);
}

void raw_vm_destroy(RawVm *vm)
{
    close(vm->vm);
    close(vm->kvm);
    munmap(vm->ram, RAW_RAM_SIZE);
    vm->vm = vm->kvm = -1;
    vm->ram = NULL;
}

void raw_load(RawVm *vm, const uint8_t *code, size_t len)
{
    assert_true(len > 0 && len <= RAW_IN - RAW_CODE);
    memcpy(vm->ram + RAW_CODE, code, len);
}

static void real_mode_segment(struct kvm_segment *s)
{
    s->base = 0;
    s->selector = 0;
}

void raw_vcpu_init(RawVcpu *vcpu, RawVm *vm, int id)
{
    struct kvm_sregs sregs;
    struct kvm_regs regs;

    vcpu->vm = vm;
    vcpu->id = id;
    vcpu->fd = ioctl(vm->vm, KVM_CREATE_VCPU, (unsigned long)id);
    assert_true(vcpu->fd >= 0);
    vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
    assert_true(vcpu->run != MAP_FAILED);

    assert_int_equal(ioctl(vcpu->fd, KVM_GET_SREGS, &sregs), 0);
    real_mode_segment(&sregs.cs);
    real_mode_segment(&sregs.ds);
    real_mode_segment(&sregs.es);
    real_mode_segment(&sregs.ss);
    assert_int_equal(ioctl(vcpu->fd, KVM_SET_SREGS, &sregs), 0);

    memset(&regs, 0, sizeof(regs));
    regs.rip = RAW_CODE;
    regs.rsp = RAW_STACK;
    regs.rflags = 0x2;              /* bit 1 is always set */
    assert_int_equal(ioctl(vcpu->fd, KVM_SET_REGS, &regs), 0);
}

void raw_vcpu_destroy(RawVcpu *vcpu)
{
    munmap(vcpu->run, vcpu->vm->run_size);
    close(vcpu->fd);
    vcpu->fd = -1;
}

void raw_vcpu_set_bx_dx_si(RawVcpu *vcpu, uint16_t bx, uint16_t dx, uint16_t si)
{
    struct kvm_regs regs;

    assert_int_equal(ioctl(vcpu->fd, KVM_GET_REGS, &regs), 0);
    regs.rbx = bx;
    regs.rdx = dx;
    regs.rsi = si;
    assert_int_equal(ioctl(vcpu->fd, KVM_SET_REGS, &regs), 0);
}

const char *raw_exit_name(uint32_t reason)
{
    static const char *const names[] = {
        [KVM_EXIT_UNKNOWN] = "UNKNOWN", [KVM_EXIT_EXCEPTION] = "EXCEPTION",
        [KVM_EXIT_IO] = "IO", [KVM_EXIT_HLT] = "HLT", [KVM_EXIT_MMIO] = "MMIO",
        [KVM_EXIT_SHUTDOWN] = "SHUTDOWN", [KVM_EXIT_FAIL_ENTRY] = "FAIL_ENTRY",
        [KVM_EXIT_INTR] = "INTR", [KVM_EXIT_INTERNAL_ERROR] = "INTERNAL_ERROR",
    };

    if (reason < sizeof(names) / sizeof(names[0]) && names[reason]) {
        return names[reason];
    }
    return "other";
}

uint32_t raw_run(RawVcpu *vcpu)
{
    int r;

    do {
        r = ioctl(vcpu->fd, KVM_RUN, 0);
    } while (r < 0 && errno == EINTR && !vcpu->run->immediate_exit);
    if (r < 0) {
        fail_msg("KVM_RUN on vCPU %d: %s", vcpu->id, strerror(errno));
    }
    return vcpu->run->exit_reason;
}

uint8_t *raw_expect_io(RawVcpu *vcpu, uint8_t dir, uint8_t size, uint16_t port)
{
    uint32_t reason = raw_run(vcpu);
    struct kvm_run *run = vcpu->run;

    if (reason != KVM_EXIT_IO) {
        fail_msg("vCPU %d: want an IO exit (port 0x%x), got %s (%u)",
                 vcpu->id, port, raw_exit_name(reason), reason);
    }
    if (run->io.port != port || run->io.direction != dir || run->io.size != size ||
        run->io.count != 1) {
        fail_msg("vCPU %d: want %s port 0x%x size %u, got %s port 0x%x size %u count %u",
                 vcpu->id, dir == KVM_EXIT_IO_OUT ? "OUT" : "IN", port, size,
                 run->io.direction == KVM_EXIT_IO_OUT ? "OUT" : "IN", run->io.port,
                 run->io.size, run->io.count);
    }
    return (uint8_t *)run + run->io.data_offset;
}

void raw_expect_hlt(RawVcpu *vcpu)
{
    uint32_t reason = raw_run(vcpu);

    if (reason != KVM_EXIT_HLT) {
        fail_msg("vCPU %d: want HLT, got %s (%u)", vcpu->id, raw_exit_name(reason), reason);
    }
}
