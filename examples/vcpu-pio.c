/* SPDX-License-Identifier: MIT */
/*
 * A vCPU running real-mode code, with a port-I/O device and an MMIO device.
 *
 * The guest (16-bit code at 0x1000, bytes below) reads two numbers from
 * port 0x10, adds them and writes the sum to port 0x11; writes a word to the
 * MMIO device at 0xd000, reads one back from 0xd004 and writes it to port
 * 0x11; then halts.  Our HLT handler ends the VM, and vmm_vm_wait()
 * reports why.  Needs /dev/kvm.
 *
 * Build: cc vcpu-pio.c $(pkg-config --cflags --libs vmmkit) -o vcpu-pio
 */
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <vmmkit/vmmkit.h>

/* Guest RAM: 32 KiB at guest address 0; the MMIO device sits above it. */
#define RAM_SIZE   0x8000
#define CODE_GPA   0x1000
#define MMIO_GPA   0xd000

static const unsigned char guest_code[] = {
    0xe4, 0x10,             /* in   al, 0x10      first number  */
    0x88, 0xc3,             /* mov  bl, al                      */
    0xe4, 0x10,             /* in   al, 0x10      second number */
    0x00, 0xd8,             /* add  al, bl                      */
    0xe6, 0x11,             /* out  0x11, al      the sum       */
    0xa3, 0x00, 0xd0,       /* mov  [0xd000], ax  MMIO write    */
    0xa1, 0x04, 0xd0,       /* mov  ax, [0xd004]  MMIO read     */
    0xe6, 0x11,             /* out  0x11, al                    */
    0xf4,                   /* hlt                              */
};

typedef struct Device {
    int next_number;        /* the port device hands out 40, then 2 */
    unsigned outputs[4];
    int noutputs;
    uint64_t mmio_written;
} Device;

/* Port callbacks run on the vCPU thread; @offset is relative to the base. */
static uint64_t port_read(void *opaque, uint64_t offset, unsigned size)
{
    Device *d = opaque;
    (void)size;
    if (offset == 0) {
        return d->next_number++ == 0 ? 40 : 2;
    }
    return 0;
}

static void port_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    Device *d = opaque;
    (void)size;
    if (offset == 1 && d->noutputs < 4) {
        printf("guest wrote %u to port 0x11\n", (unsigned)value);
        d->outputs[d->noutputs++] = (unsigned)value;
    }
}

static uint64_t mmio_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)opaque;
    (void)size;
    return offset == 4 ? 0x77 : 0;
}

static void mmio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    Device *d = opaque;
    printf("guest wrote 0x%llx (%u bytes) at MMIO offset %llu\n",
           (unsigned long long)value, size, (unsigned long long)offset);
    d->mmio_written = value;
}

static const VmmIoOps port_ops = { port_read, port_write };
static const VmmIoOps mmio_ops = { mmio_read, mmio_write };

/* HLT: the guest is done.  Returning VMM_EXIT_END_VM ends the VM; the
 * report says a handler ended it (VMM_VM_END_HANDLER). */
static int on_hlt(VmmVcpu *vcpu, struct kvm_run *run, void *opaque)
{
    (void)vcpu;
    (void)run;
    (void)opaque;
    return VMM_EXIT_END_VM;
}

int main(void)
{
    Device dev = { 0 };
    int err = 0;

    VmmVmOptions opts = { .size = sizeof(opts) };
    VmmVm *vm = vmm_vm_new(&opts, &err);
    if (!vm) {
        fprintf(stderr, "vcpu-pio: cannot create a VM: %s\n", vmm_strerror(err));
        return 1;
    }

    /* Guest RAM is ordinary anonymous memory of this process. */
    void *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (ram == MAP_FAILED) {
        return 1;
    }
    memcpy((char *)ram + CODE_GPA, guest_code, sizeof(guest_code));
    err = vmm_vm_map_memory(vm, 0, RAM_SIZE, ram, 0);
    err = err ?: vmm_vm_register_io(vm, true, 0x10, 2, &port_ops, &dev);      /* ports */
    err = err ?: vmm_vm_register_io(vm, false, MMIO_GPA, 0x100, &mmio_ops, &dev);
    err = err ?: vmm_vm_set_exit_handler(vm, KVM_EXIT_HLT, on_hlt, NULL);
    if (err) {
        fprintf(stderr, "vcpu-pio: setting up the VM: %s\n", vmm_strerror(err));
        return 1;
    }

    /* One vCPU, in real mode at 0:0x1000 (flat segments at base 0). */
    VmmVcpu *vcpu = vmm_vcpu_new(vm, 0, "vcpu0", &err);
    struct kvm_sregs sregs;
    if (!vcpu || vmm_vcpu_get_sregs(vcpu, &sregs) < 0) {
        fprintf(stderr, "vcpu-pio: vCPU: %s\n", vmm_strerror(err));
        return 1;
    }
    sregs.cs.base = sregs.ds.base = sregs.es.base = sregs.ss.base = 0;
    sregs.cs.selector = sregs.ds.selector = sregs.es.selector = sregs.ss.selector = 0;
    struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 2, .rsp = 0x7000 };
    if (vmm_vcpu_set_sregs(vcpu, &sregs) < 0 || vmm_vcpu_set_regs(vcpu, &regs) < 0) {
        return 1;
    }

    /* Run: each vCPU runs in its own thread; wait here until the VM ends. */
    VmmVmExit ex;
    vmm_vm_start(vm);
    if (vmm_vm_wait(vm, 10 * 1000000000LL, &ex) < 0) {
        fprintf(stderr, "vcpu-pio: the guest did not finish\n");
        vmm_vm_request_end(vm, 0);
        vmm_vm_wait(vm, -1, &ex);
    }
    printf("VM ended: %s at exit %s, vCPU %u\n", vmm_vm_end_kind_name(ex.kind),
           vmm_exit_reason_name(ex.exit_reason), ex.vcpu_id);
    vmm_vm_free(vm);
    munmap(ram, RAM_SIZE);

    int ok = ex.kind == VMM_VM_END_HANDLER && ex.exit_reason == KVM_EXIT_HLT &&
             dev.noutputs == 2 && dev.outputs[0] == 42 && dev.outputs[1] == 0x77 &&
             dev.mmio_written == 42;
    printf("%s\n", ok ? "vcpu-pio: ok" : "vcpu-pio: FAILED");
    return ok ? 0 : 1;
}
