/*
 * Helpers for the raw KVM tests: linux/kvm.h directly, no vmmkit code, so
 * these tests prove the kernel KVM and the harness before accel/ exists.
 *
 * Guest memory map (guest physical = real-mode linear, all segments 0):
 *   0x0000-0x7fff  slot 0, RAM (RAW_RAM_SIZE)
 *     0x1000         code: one guest program from guest.S
 *     0x2000         input data the host fills
 *     0x3000-0x5fff  output data the guest writes
 *     0x7000         stack top
 *   0x8000-0x8fff  optional read-only slot (test_readonly_slot)
 *   0xd000-0xdfff  unbacked: accesses exit as MMIO
 */
#ifndef VMM_TESTS_KVM_RAW_H
#define VMM_TESTS_KVM_RAW_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#define RAW_RAM_SIZE   0x8000u
#define RAW_CODE       0x1000u
#define RAW_IN         0x2000u
#define RAW_OUT        0x3000u
#define RAW_STACK      0x7000u
#define RAW_ROM        0x8000u
#define RAW_MMIO       0xd000u

/* Guest programs in guest.S: [name, name_end). */
#define RAW_GUEST(name) extern const uint8_t name[], name##_end[]
RAW_GUEST(guest_pio);
RAW_GUEST(guest_outs);
RAW_GUEST(guest_mmio);
RAW_GUEST(guest_sum);
RAW_GUEST(guest_count);
RAW_GUEST(guest_rom);
RAW_GUEST(guest_ioevent);
RAW_GUEST(guest_spin);
RAW_GUEST(guest_dirty);
#define RAW_PROGRAM(name) name, (size_t)(name##_end - name)

typedef struct RawVm {
    int kvm;                /* /dev/kvm */
    int vm;
    uint8_t *ram;           /* RAW_RAM_SIZE bytes, slot 0 */
    size_t run_size;        /* KVM_GET_VCPU_MMAP_SIZE */
} RawVm;

typedef struct RawVcpu {
    RawVm *vm;
    int fd;
    int id;
    struct kvm_run *run;
} RawVcpu;

/* Open /dev/kvm (failing the test, never skipping, when it is missing). */
int raw_open_kvm(void);
/* A VM with slot 0 mapped over fresh anonymous RAM. */
void raw_vm_init(RawVm *vm);
void raw_vm_destroy(RawVm *vm);
/* Copy a guest program to RAW_CODE. */
void raw_load(RawVm *vm, const uint8_t *code, size_t len);
/* A vCPU in real mode at RAW_CODE, all segments 0, its run area mapped. */
void raw_vcpu_init(RawVcpu *vcpu, RawVm *vm, int id);
void raw_vcpu_destroy(RawVcpu *vcpu);
/* Set general registers (bx, dx, si) before the first run. */
void raw_vcpu_set_bx_dx_si(RawVcpu *vcpu, uint16_t bx, uint16_t dx, uint16_t si);
/* KVM_RUN once; fails the test if the ioctl fails. Returns the exit reason. */
uint32_t raw_run(RawVcpu *vcpu);
/* Run and require a port-I/O exit with this direction/size/port (count 1);
 * returns a pointer to its data in the run area. */
uint8_t *raw_expect_io(RawVcpu *vcpu, uint8_t dir, uint8_t size, uint16_t port);
/* Run and require KVM_EXIT_HLT. */
void raw_expect_hlt(RawVcpu *vcpu);
/* Describe an unexpected exit (for failure messages). */
const char *raw_exit_name(uint32_t reason);

#endif
