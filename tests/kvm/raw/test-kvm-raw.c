/*
 * Raw KVM, one vCPU: capabilities, VM/slot/vCPU creation, a real-mode guest
 * doing port I/O, MMIO, string I/O, memory and HLT, ioeventfd, read-only
 * slots, dirty logging, immediate_exit, and the kernel's refusals.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvm-raw.h"

typedef struct {
    RawVm vm;
    RawVcpu vcpu;
} Fixture;

static int setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    raw_vm_init(&f->vm);
    raw_vcpu_init(&f->vcpu, &f->vm, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;

    raw_vcpu_destroy(&f->vcpu);
    raw_vm_destroy(&f->vm);
    free(f);
    return 0;
}

static uint32_t get_u32(const uint8_t *p, unsigned size)
{
    uint32_t v = 0;

    memcpy(&v, p, size);
    return v;
}

/* ---- capabilities ---- */

static void test_capabilities(void **state)
{
    static const struct { int cap; const char *name; long min; } need[] = {
        { KVM_CAP_USER_MEMORY, "USER_MEMORY", 1 },
        { KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR", 1 },
        { KVM_CAP_EXT_CPUID, "EXT_CPUID", 1 },
        { KVM_CAP_IRQCHIP, "IRQCHIP", 1 },
        { KVM_CAP_IOEVENTFD, "IOEVENTFD", 1 },
        { KVM_CAP_IRQFD, "IRQFD", 1 },
        { KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT", 1 },
        { KVM_CAP_SYNC_MMU, "SYNC_MMU", 1 },
        { KVM_CAP_CHECK_EXTENSION_VM, "CHECK_EXTENSION_VM", 1 },
        { KVM_CAP_NR_MEMSLOTS, "NR_MEMSLOTS", 32 },
        { KVM_CAP_MAX_VCPUS, "MAX_VCPUS", 2 },
        { KVM_CAP_NR_VCPUS, "NR_VCPUS", 1 },
    };
    int kvm = raw_open_kvm();
    int vm;
    long nr, max;

    (void)state;
    assert_int_equal(ioctl(kvm, KVM_GET_API_VERSION, 0), KVM_API_VERSION);
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        long v = ioctl(kvm, KVM_CHECK_EXTENSION, need[i].cap);

        printf("# KVM_CAP_%s = %ld\n", need[i].name, v);
        if (v < need[i].min) {
            fail_msg("KVM_CAP_%s is %ld, need at least %ld", need[i].name, v, need[i].min);
        }
    }
    nr = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    max = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    assert_true(nr <= max);
    /* An unknown capability is reported absent, not as an error. */
    assert_int_equal(ioctl(kvm, KVM_CHECK_EXTENSION, 0x7fffffff), 0);

    /* The VM-level check agrees with the system-level one. */
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    assert_true(vm >= 0);
    assert_int_equal(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS),
                     ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS));
    close(vm);
    close(kvm);
}

static void test_supported_cpuid(void **state)
{
    size_t n = 256;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
    int kvm = raw_open_kvm();
    int found_leaf0 = 0;

    (void)state;
    assert_non_null(c);
    c->nent = (uint32_t)n;
    assert_int_equal(ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c), 0);
    assert_true(c->nent > 0 && c->nent <= n);
    for (uint32_t i = 0; i < c->nent; i++) {
        if (c->entries[i].function == 0) {
            found_leaf0 = 1;
            assert_true(c->entries[i].eax >= 1);    /* max basic leaf */
        }
    }
    assert_true(found_leaf0);
    /* Too small a buffer is refused with E2BIG. */
    c->nent = 1;
    assert_int_equal(ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c), -1);
    assert_int_equal(errno, E2BIG);
    free(c);
    close(kvm);
}

/* ---- the real-mode guest ---- */

static void test_pio(void **state)
{
    Fixture *f = *state;
    RawVcpu *v = &f->vcpu;
    uint8_t *d;

    raw_load(&f->vm, RAW_PROGRAM(guest_pio));
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 2, 0x10), 2), 0x1234);
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 1, 0x11), 1), 0xab);
    d = raw_expect_io(v, KVM_EXIT_IO_IN, 1, 0x12);
    *d = 0x5a;                          /* the answer the guest reads */
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 1, 0x13), 1), 0x5b);
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 4, 0x100), 4), 0xdeadbeef);
    d = raw_expect_io(v, KVM_EXIT_IO_IN, 4, 0x100);
    memcpy(d, &(uint32_t){ 0x12345678 }, 4);
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 4, 0x100), 4), ~0x12345678u);
    raw_expect_hlt(v);
}

static void test_string_pio(void **state)
{
    Fixture *f = *state;
    RawVcpu *v = &f->vcpu;
    uint8_t got[16];
    unsigned n = 0;
    uint32_t reason;

    for (unsigned i = 0; i < 16; i++) {
        f->vm.ram[RAW_IN + i] = (uint8_t)(0xa0 + i);
    }
    raw_load(&f->vm, RAW_PROGRAM(guest_outs));
    /* KVM may batch the rep outsb into fewer exits; collect them all. */
    while ((reason = raw_run(v)) == KVM_EXIT_IO) {
        struct kvm_run *r = v->run;

        assert_int_equal(r->io.direction, KVM_EXIT_IO_OUT);
        assert_int_equal(r->io.port, 0x14);
        assert_int_equal(r->io.size, 1);
        assert_true(r->io.count >= 1 && n + r->io.count <= sizeof(got));
        memcpy(got + n, (uint8_t *)r + r->io.data_offset, r->io.count);
        n += r->io.count;
    }
    assert_int_equal(reason, KVM_EXIT_HLT);
    assert_int_equal(n, 16);
    assert_memory_equal(got, f->vm.ram + RAW_IN, 16);
}

static void expect_mmio(RawVcpu *v, uint64_t addr, uint32_t len, int is_write)
{
    uint32_t reason = raw_run(v);

    if (reason != KVM_EXIT_MMIO) {
        fail_msg("want an MMIO exit at 0x%llx, got %s", (unsigned long long)addr,
                 raw_exit_name(reason));
    }
    assert_int_equal(v->run->mmio.phys_addr, addr);
    assert_int_equal(v->run->mmio.len, len);
    assert_int_equal(v->run->mmio.is_write, is_write);
}

static void test_mmio(void **state)
{
    Fixture *f = *state;
    RawVcpu *v = &f->vcpu;

    raw_load(&f->vm, RAW_PROGRAM(guest_mmio));
    expect_mmio(v, RAW_MMIO, 4, 1);
    assert_int_equal(get_u32(v->run->mmio.data, 4), 0xdeadbeef);
    expect_mmio(v, RAW_MMIO + 0x10, 1, 1);
    assert_int_equal(v->run->mmio.data[0], 0x42);
    expect_mmio(v, RAW_MMIO + 0x20, 2, 0);
    memcpy(v->run->mmio.data, &(uint16_t){ 0xbeef }, 2);
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 2, 0x10), 2), 0xbeef);
    raw_expect_hlt(v);
}

static void test_guest_memory(void **state)
{
    Fixture *f = *state;
    RawVcpu *v = &f->vcpu;
    uint16_t words[16], sum = 0, stored;

    for (unsigned i = 0; i < 16; i++) {
        words[i] = (uint16_t)(0x1111 * i + 7);
        sum = (uint16_t)(sum + words[i]);
    }
    memcpy(f->vm.ram + RAW_IN, words, sizeof(words));
    raw_load(&f->vm, RAW_PROGRAM(guest_sum));
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 2, 0x10), 2), sum);
    raw_expect_hlt(v);
    memcpy(&stored, f->vm.ram + RAW_OUT, 2);
    assert_int_equal(stored, sum);
    for (unsigned i = 0; i < 256; i++) {
        assert_int_equal(f->vm.ram[RAW_OUT + 0x100 + i], i);
    }
}

static void test_registers_after_hlt(void **state)
{
    Fixture *f = *state;
    RawVcpu *v = &f->vcpu;
    struct kvm_regs regs;

    raw_load(&f->vm, RAW_PROGRAM(guest_count));
    raw_vcpu_set_bx_dx_si(v, 3, 0x20, RAW_OUT);
    for (unsigned i = 1; i <= 3; i++) {
        assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 2, 0x20), 2), i);
    }
    raw_expect_hlt(v);
    assert_int_equal(ioctl(v->fd, KVM_GET_REGS, &regs), 0);
    assert_int_equal(regs.rax & 0xffff, 3);
    assert_int_equal(regs.rip, RAW_CODE + (size_t)(guest_count_end - guest_count));
}

static void test_ioeventfd(void **state)
{
    Fixture *f = *state;
    RawVcpu *v = &f->vcpu;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct kvm_ioeventfd io = {
        .addr = 0x30, .len = 1, .fd = efd, .flags = KVM_IOEVENTFD_FLAG_PIO,
    };
    uint64_t count = 0;

    assert_true(efd >= 0);
    assert_int_equal(ioctl(f->vm.vm, KVM_IOEVENTFD, &io), 0);
    raw_load(&f->vm, RAW_PROGRAM(guest_ioevent));
    /* The two OUTs to 0x30 complete in the kernel: the first exit is 0x31. */
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 1, 0x31), 1), 1);
    assert_int_equal(read(efd, &count, sizeof(count)), sizeof(count));
    assert_int_equal(count, 2);
    raw_expect_hlt(v);
    io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    assert_int_equal(ioctl(f->vm.vm, KVM_IOEVENTFD, &io), 0);
    close(efd);
}

static void test_readonly_slot(void **state)
{
    Fixture *f = *state;
    RawVcpu *v = &f->vcpu;
    uint8_t *rom;
    struct kvm_userspace_memory_region slot = {
        .slot = 1, .flags = KVM_MEM_READONLY,
        .guest_phys_addr = RAW_ROM, .memory_size = 0x1000,
    };

    if (ioctl(f->vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0) {
        skip();
    }
    rom = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(rom != MAP_FAILED);
    memcpy(rom, &(uint16_t){ 0xc0de }, 2);
    slot.userspace_addr = (uintptr_t)rom;
    assert_int_equal(ioctl(f->vm.vm, KVM_SET_USER_MEMORY_REGION, &slot), 0);
    raw_load(&f->vm, RAW_PROGRAM(guest_rom));
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 2, 0x10), 2), 0xc0de);
    expect_mmio(v, RAW_ROM, 2, 1);      /* the write leaves as MMIO */
    assert_int_equal(get_u32(v->run->mmio.data, 2), 0x5555);
    assert_int_equal(get_u32(raw_expect_io(v, KVM_EXIT_IO_OUT, 2, 0x11), 2), 0xc0de);
    raw_expect_hlt(v);
    munmap(rom, 0x1000);
}

static void test_dirty_log(void **state)
{
    Fixture *f = *state;
    RawVcpu *v = &f->vcpu;
    uint64_t bitmap[1] = { 0 };
    struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = bitmap };
    struct kvm_userspace_memory_region slot = {
        .slot = 0, .flags = KVM_MEM_LOG_DIRTY_PAGES,
        .guest_phys_addr = 0, .memory_size = RAW_RAM_SIZE,
        .userspace_addr = (uintptr_t)f->vm.ram,
    };

    raw_load(&f->vm, RAW_PROGRAM(guest_dirty));
    assert_int_equal(ioctl(f->vm.vm, KVM_SET_USER_MEMORY_REGION, &slot), 0);
    assert_int_equal(ioctl(f->vm.vm, KVM_GET_DIRTY_LOG, &log), 0);  /* clears */
    raw_expect_hlt(v);
    bitmap[0] = 0;
    assert_int_equal(ioctl(f->vm.vm, KVM_GET_DIRTY_LOG, &log), 0);
    printf("# dirty bitmap after the guest ran: 0x%llx\n", (unsigned long long)bitmap[0]);
    /* Pages 3 and 5 were written; pages 2, 4, 6, 7 never touched.  (KVM may
     * also report pages the guest only read, such as the code page.) */
    assert_true(bitmap[0] & (1u << 3));
    assert_true(bitmap[0] & (1u << 5));
    assert_int_equal(bitmap[0] & ((1u << 2) | (1u << 4) | (1u << 6) | (1u << 7)), 0);
    /* Reading the log cleared it. */
    bitmap[0] = 0;
    assert_int_equal(ioctl(f->vm.vm, KVM_GET_DIRTY_LOG, &log), 0);
    assert_int_equal(bitmap[0] & ((1u << 3) | (1u << 5)), 0);
}

static void test_immediate_exit(void **state)
{
    Fixture *f = *state;
    RawVcpu *v = &f->vcpu;

    raw_load(&f->vm, RAW_PROGRAM(guest_spin));
    v->run->immediate_exit = 1;
    assert_int_equal(ioctl(v->fd, KVM_RUN, 0), -1);
    assert_int_equal(errno, EINTR);
    v->run->immediate_exit = 0;
}

/* ---- what the kernel refuses ---- */

static void test_refusals(void **state)
{
    Fixture *f = *state;
    uint8_t *mem = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct kvm_userspace_memory_region slot = {
        .slot = 2, .guest_phys_addr = 0x4000, .memory_size = 0x1000,
        .userspace_addr = (uintptr_t)mem,
    };

    assert_true(mem != MAP_FAILED);
    /* A slot overlapping slot 0. */
    assert_int_equal(ioctl(f->vm.vm, KVM_SET_USER_MEMORY_REGION, &slot), -1);
    assert_int_equal(errno, EEXIST);
    /* A guest address that is not page aligned. */
    slot.guest_phys_addr = 0x100800;
    assert_int_equal(ioctl(f->vm.vm, KVM_SET_USER_MEMORY_REGION, &slot), -1);
    assert_int_equal(errno, EINVAL);
    /* A size that is not a page multiple. */
    slot.guest_phys_addr = 0x100000;
    slot.memory_size = 0x800;
    assert_int_equal(ioctl(f->vm.vm, KVM_SET_USER_MEMORY_REGION, &slot), -1);
    assert_int_equal(errno, EINVAL);
    /* A second vCPU with the same id. */
    assert_int_equal(ioctl(f->vm.vm, KVM_CREATE_VCPU, 0ul), -1);
    assert_int_equal(errno, EEXIST);
    munmap(mem, 0x2000);
}

static void test_many_vms(void **state)
{
    int n = getenv("VMM_RAW_VMS") ? atoi(getenv("VMM_RAW_VMS")) : 20;

    (void)state;
    /* Create, run to HLT and destroy VMs in a row: nothing leaks or sticks. */
    for (int i = 0; i < n; i++) {
        RawVm vm;
        RawVcpu v;

        raw_vm_init(&vm);
        raw_vcpu_init(&v, &vm, 0);
        raw_load(&vm, RAW_PROGRAM(guest_count));
        raw_vcpu_set_bx_dx_si(&v, 1, 0x20, RAW_OUT);
        assert_int_equal(get_u32(raw_expect_io(&v, KVM_EXIT_IO_OUT, 2, 0x20), 2), 1);
        raw_expect_hlt(&v);
        raw_vcpu_destroy(&v);
        raw_vm_destroy(&vm);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capabilities),
        cmocka_unit_test(test_supported_cpuid),
        cmocka_unit_test_setup_teardown(test_pio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_pio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mmio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registers_after_hlt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ioeventfd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirty_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_immediate_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test(test_many_vms),
    };

    return cmocka_run_group_tests_name("kvm-raw", tests, NULL, NULL);
}
