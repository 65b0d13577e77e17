/* SPDX-License-Identifier: MIT */
/*
 * The x86 machine: a KVM VM with the in-kernel irqchip, guest RAM, the
 * Linux boot protocol, ACPI, PCI, virtio-pci and a 16550.  See
 * include/vmmkit/machine.h and docs/machine.md.
 *
 * Locking: m->lock (the device lock, a plain non-recursive VmmMutex)
 * serialises every device model - PCI bus and config space, the UART, the
 * virtio-pci transports and the virtio devices' MSI-X vectors and
 * doorbells - against the vCPU threads that access them (port and MMIO
 * exits), the main loop (console input, statistics, creation and teardown)
 * and the device iothread (interrupts).  The caller's own PIO/MMIO regions
 * are outside it: each has a lock of its own around its callbacks.  The fields it guards are marked "lock" in
 * machine-internal.h and machine-disk.c; the functions that touch them
 * carry VMM_REQUIRES(m->lock) (clang 14 cannot attach guarded_by to a
 * field naming a sibling field in C), and callbacks reached through a
 * function pointer assert it (machine_assert_locked).  It is taken by
 * machine_lock() (or the handoff's trylock, which never waits) and left
 * only by machine_unlock(); it is never held across a call that waits for a
 * vCPU or the iothread, and nothing called under it takes it again.  The
 * iothread never waits for it, so no lock the iothread holds (a queue's
 * run_lock, taken by a reset's quiesce under this lock) can close a cycle.
 *
 * Interrupts: a device raises through m->irqs (irq-handoff.h), never by
 * taking the lock: the raiser records the interrupt and delivers it itself
 * if the lock is free; otherwise the holder delivers it in machine_unlock()
 * before releasing.  So an interrupt the virtio core raises synchronously
 * inside a register write (the vCPU holds the lock) reaches the transport
 * before that write returns to the guest, still under the lock, and the
 * iothread never waits for a vCPU's register write.
 */
#include "machine/machine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <assert.h>

#include "machine/acpi.h"
#include "machine/kernel-unpack.h"
#include "util/log.h"
#include "util/thread.h"

/* Fields callers built against an older, smaller VmmMachineOptions lack
 * read as zero. */
#define OPT_HAS(o, field) \
    ((o)->size >= offsetof(VmmMachineOptions, field) + sizeof((o)->field))

static uint32_t opt_boot_flags(const VmmMachineOptions *o)
{
    return OPT_HAS(o, boot_flags) ? o->boot_flags : 0;
}

static const VmmKvmOps *opt_kvm_ops(const VmmMachineOptions *o)
{
    return OPT_HAS(o, kvm_ops) ? o->kvm_ops : NULL;
}
#include "util/atomic.h"

const char *vmm_machine_state_name(VmmMachineState st)
{
    static const char *const names[] = {
        "created", "running", "paused", "poweroff", "reboot", "stopped",
        "crashed", "error",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) == VMM_MACHINE_ERROR + 1,
                   "a VmmMachineState without a name");
    return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "unknown";
}

/* ---- Files ------------------------------------------------------------------ */

/* Open @path for loading: a regular file of at most @max bytes. */
static int open_image(const char *path, uint64_t max, int *fd_out, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        vk_error("machine: cannot open %s: %s", path, strerror(errno));
        return e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        vk_error("machine: %s is not a regular file", path);
        return -EINVAL;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        vk_error("machine: %s is too large (%lld bytes)", path, (long long)st.st_size);
        return -E2BIG;
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Read @len bytes at @off of @fd into @dst (guest RAM or a buffer): the
 * loader reads each part of a kernel or initrd straight to where it goes,
 * with no copy of the whole file on the heap.  A file that shrank since
 * open_image() is an error, not a SIGBUS as a mapping would give. */
static int read_at(int fd, const char *path, void *dst, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)dst + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int e = n < 0 ? -errno : -EIO;
            vk_error("machine: reading %s failed%s", path, n == 0 ? " (file shrank)" : "");
            return e;
        }
        done += (size_t)n;
    }
    return 0;
}

/* The first bytes of a kernel file read by load_linux(): the bzImage setup
 * header or the ELF and program headers must lie within them. */
#define KERNEL_HEAD (64u << 10)

/* Host address of guest RAM [gpa, gpa+len) in low memory, or NULL. */
static uint8_t *low_ram(VmmMachine *m, uint64_t gpa, uint64_t len)
{
    if (gpa > m->low_size || len > m->low_size - gpa) {
        return NULL;
    }
    return m->host + gpa;
}

/* ---- Boot ------------------------------------------------------------------- */

/* An ELF vmlinux: its PT_LOAD segments at their physical addresses, bss
 * zeroed; @bz gets what the initrd placement needs (the kernel's extent and
 * the boot protocol's default 2 GiB initrd limit). */
static int place_elf(VmmMachine *m, const char *path, int fd,
                     const X86ElfKernel *ek, X86BzImage *bz)
{
    for (unsigned i = 0; i < ek->nseg; i++) {
        const X86ElfSegment *s = &ek->seg[i];
        uint8_t *dst = low_ram(m, s->paddr, s->memsz);
        if (!dst) {
            vk_error("machine: %s: a segment at 0x%" PRIx64 " (%" PRIu64
                      " bytes) is outside low RAM", path, s->paddr, s->memsz);
            return -E2BIG;
        }
        int r = read_at(fd, path, dst, s->filesz, s->offset);
        if (r < 0) {
            return r;
        }
        memset(dst + s->filesz, 0, s->memsz - s->filesz);
    }
    memset(bz, 0, sizeof(*bz));
    bz->init_size = (uint32_t)(ek->load_end - X86_HIMEM_START);
    bz->initrd_addr_max = 0x7fffffff;
    bz->cmdline_size = X86_ELF_CMDLINE_MAX;
    m->boot_rip = ek->entry;
    return 0;
}

/* A bzImage whose payload the host can decode: its vmlinux straight into
 * RAM (kernel-unpack.h).  Any failure leaves the guest's decompressor to
 * do it: the caller then loads the image the standard way, over whatever
 * this wrote. */
static int place_unpacked(VmmMachine *m, const char *path, const uint8_t *img, size_t len,
                          X86BzImage *bz)
{
    X86Payload pl;
    X86ElfKernel ek;
    int64_t t0 = vmm_clock_ns();
    int r = x86_bzimage_payload(img, len, bz, &pl);
    if (r == 0) {
        r = x86_unpack_elf(img, &pl, m->host, m->low_size, &ek);
    }
    int64_t t1 = vmm_clock_ns();
    if (r < 0) {
        if (r != -ENOTSUP) {
            vk_warn("machine: %s: cannot unpack the kernel on the host (%s); "
                     "the guest will decompress it", path, strerror(-r));
        }
        return r;
    }
    /* The initrd goes above both the decompressor's area and the kernel. */
    if (ek.load_end - X86_HIMEM_START > bz->init_size) {
        bz->init_size = (uint32_t)(ek.load_end - X86_HIMEM_START);
    }
    m->boot_rip = ek.entry;
    m->kernel_unpacked = true;
    vk_info("machine: %s: %s payload unpacked on the host (%u bytes, %u segments) in %.0f ms",
             path, pl.format == X86_PAYLOAD_XZ ? "xz" : "gzip", pl.unpacked_size, ek.nseg,
             (double)(t1 - t0) / 1e6);
    return 0;
}

/* Place the kernel open on @fd (@size bytes, the first @head_len in @head):
 * a bzImage unpacked on the host (place_unpacked) or its protected-mode
 * part at 1 MiB, or an ELF vmlinux (place_elf), each read from the file
 * straight into guest RAM.  @bz describes the kernel for the initrd
 * placement and command line checks; *@elf says whether it was an ELF file. */
static int place_kernel(VmmMachine *m, const VmmMachineOptions *o, int fd, uint64_t size,
                        const uint8_t *head, size_t head_len, X86BzImage *bz, bool *elf)
{
    const char *path = o->kernel;
    int r = x86_bzimage_parse_head(head, head_len, size, bz);
    *elf = false;
    if (r == -ENOEXEC) {
        X86ElfKernel ek;
        int e = x86_elf_parse_head(head, head_len, size, &ek);
        if (e == 0) {
            *elf = true;
            return place_elf(m, path, fd, &ek, bz);
        }
        if (e != -ENOEXEC) {
            r = e;      /* an ELF x86-64 executable, but a broken one */
        }
    }
    if (r < 0) {
        vk_error("machine: %s is neither a bootable bzImage nor an x86-64 ELF kernel (%s)",
                  path, strerror(-r));
        return r;
    }
    if (opt_boot_flags(o) & VMM_MACHINE_BOOT_HOST_UNPACK) {
        /* The decoder wants the whole payload: the file on the heap. */
        uint8_t *img = malloc((size_t)size);
        if (!img) {
            return -ENOMEM;
        }
        r = read_at(fd, path, img, (size_t)size, 0);
        if (r == 0) {
            r = place_unpacked(m, path, img, (size_t)size, bz);
        }
        free(img);
        if (r == 0) {
            return 0;
        }
    }
    uint8_t *dst = low_ram(m, X86_HIMEM_START, bz->init_size);
    if (!dst) {
        vk_error("machine: the kernel needs %u bytes from 1 MiB: not enough RAM",
                  bz->init_size);
        return -E2BIG;
    }
    r = read_at(fd, path, dst, bz->kernel_size, bz->kernel_offset);
    if (r < 0) {
        return r;
    }
    m->boot_rip = X86_HIMEM_START + X86_BZ_ENTRY64;
    return 0;
}

static int load_linux(VmmMachine *m, const VmmMachineOptions *o)
{
    uint8_t *head = NULL;
    int fd = -1, ifd = -1;
    uint64_t size;
    X86BzImage bz;
    bool elf;
    X86E820Entry e820[8];
    int r = open_image(o->kernel, 256u << 20, &fd, &size);
    if (r < 0) {
        return r;
    }
    size_t head_len = size < KERNEL_HEAD ? (size_t)size : KERNEL_HEAD;
    head = malloc(head_len ? head_len : 1);
    if (!head) {
        r = -ENOMEM;
        goto out;
    }
    r = read_at(fd, o->kernel, head, head_len, 0);
    if (r < 0) {
        goto out;
    }
    r = place_kernel(m, o, fd, size, head, head_len, &bz, &elf);
    if (r < 0) {
        goto out;
    }

    X86BootParams p = { .cmdline_addr = X86_CMDLINE_ADDR, .acpi_rsdp_addr = X86_BIOS_START };
    const char *cmd = o->cmdline ? o->cmdline : "";
    size_t clen = strlen(cmd);
    if (clen > bz.cmdline_size || clen >= X86_CMDLINE_MAX) {
        vk_error("machine: command line of %zu bytes; the kernel takes %u", clen,
                  bz.cmdline_size);
        r = -E2BIG;
        goto out;
    }
    memcpy(m->host + X86_CMDLINE_ADDR, cmd, clen + 1);
    p.cmdline_len = (uint32_t)clen;

    if (o->initrd) {
        uint64_t initrd_len;
        r = open_image(o->initrd, 1u << 30, &ifd, &initrd_len);
        if (r < 0) {
            goto out;
        }
        uint64_t at = x86_initrd_addr(&bz, m->ram_size, initrd_len, X86_HIMEM_START);
        if (!at || !low_ram(m, at, initrd_len)) {
            vk_error("machine: the initrd (%" PRIu64 " bytes) does not fit in RAM",
                      initrd_len);
            r = -E2BIG;
            goto out;
        }
        r = read_at(ifd, o->initrd, m->host + at, (size_t)initrd_len, 0);
        if (r < 0) {
            goto out;
        }
        p.initrd_addr = at;
        p.initrd_size = initrd_len;
    }
    r = x86_e820_build(m->ram_size, e820, 8);
    if (r < 0) {
        goto out;
    }
    p.e820 = e820;
    p.e820_entries = r;
    r = elf ? x86_zero_page_build_elf(m->host + X86_ZERO_PAGE_ADDR, &p)
            : x86_zero_page_build(m->host + X86_ZERO_PAGE_ADDR, head, &bz, &p);
    if (r < 0) {
        goto out;
    }
    uint64_t gdt[X86_GDT_ENTRIES];
    x86_gdt_build(gdt);
    memcpy(m->host + X86_GDT_ADDR, gdt, sizeof(gdt));
    x86_page_tables_build(m->host + X86_PML4_ADDR, X86_PT_END - X86_PML4_ADDR);

    /* The ACPI tables follow at start (build_acpi), once the devices are in. */
    x86_reset_stub(m->host + X86_RESET_VECTOR);
out:
    free(head);
    if (fd >= 0) {
        close(fd);
    }
    if (ifd >= 0) {
        close(ifd);
    }
    return r;
}

/* The ACPI tables, describing what was added to the machine, in
 * 0xE0000-0xEFFFF (the reset vector sits at 0xFFFF0).  Main loop, at start. */
static int build_acpi(VmmMachine *m)
{
    AcpiRegion regs[MACHINE_MAX_REGIONS];
    _Static_assert(MACHINE_MAX_REGIONS <= ACPI_MAX_REGIONS, "ACPI describes every region");
    for (unsigned i = 0; i < m->nregions; i++) {
        regs[i] = (AcpiRegion){ .pio = m->regions[i]->pio, .base = m->regions[i]->base,
                                .len = m->regions[i]->len };
    }
    AcpiConfig ac = { .ncpus = m->cpus, .pci_mmio_start = X86_MMIO_HOLE_START,
                      .pci_mmio_end = ACPI_IOAPIC_ADDR, .regions = regs,
                      .nregions = m->nregions };
    long n = acpi_build(m->host + X86_BIOS_START, 0x10000, X86_BIOS_START, &ac);
    return n < 0 ? (int)n : 0;
}

static int setup_vcpu(VmmMachine *m, VmmVcpu *cpu, uint32_t id,
                      const struct kvm_cpuid2 *supported, bool tsc_deadline)
{
    size_t sz = sizeof(struct kvm_cpuid2) + supported->nent * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *c = malloc(sz);
    if (!c) {
        return -ENOMEM;
    }
    memcpy(c, supported, sz);
    x86_cpuid_fixup(c->entries, c->nent, id, m->cpus, tsc_deadline);
    int r = vmm_vcpu_set_cpuid(cpu, c);
    free(c);
    if (r < 0) {
        return r;
    }
    struct kvm_msr_entry msrs[X86_BOOT_MSR_COUNT];
    x86_boot_msrs(msrs);
    for (unsigned i = 0; i < X86_BOOT_MSR_COUNT; i++) {
        r = vmm_vcpu_set_msr(cpu, msrs[i].index, msrs[i].data);
        if (r < 0) {
            return r;
        }
    }
    struct kvm_lapic_state lapic;
    r = vmm_vcpu_get_lapic(cpu, &lapic);
    if (r == 0) {
        x86_lapic_lint_setup(&lapic);
        r = vmm_vcpu_set_lapic(cpu, &lapic);
    }
    if (r < 0) {
        return r;
    }
    if (id == 0) {
        struct kvm_sregs sregs;
        struct kvm_regs regs;
        r = vmm_vcpu_get_sregs(cpu, &sregs);
        if (r < 0) {
            return r;
        }
        x86_boot_sregs(&sregs);
        x86_boot_regs_at(&regs, m->boot_rip);
        r = vmm_vcpu_set_sregs(cpu, &sregs);
        if (r == 0) {
            r = vmm_vcpu_set_regs(cpu, &regs);
        }
        if (r < 0) {
            return r;
        }
    }
    return vmm_vcpu_synchronize_post_init(cpu);
}

/* ---- Devices on port I/O ------------------------------------------------------ */

static void serial_out(void *opaque, uint8_t byte)
{
    VmmMachine *m = opaque;
    if (m->console_fd >= 0) {
        ssize_t n;
        do {
            n = write(m->console_fd, &byte, 1);
        } while (n < 0 && errno == EINTR);
    }
}

static void serial_irq(void *opaque, bool level)
{
    VmmMachine *m = opaque;
    vmm_vm_set_irq(m->vm, SERIAL_COM1_IRQ, level);
}

static uint64_t uart_read(void *opaque, uint64_t off, unsigned size)
{
    VmmMachine *m = opaque;
    (void)size;
    machine_lock(m);
    uint8_t v = serial_read(&m->serial, (unsigned)off);
    machine_unlock(m);
    return v;
}

static void uart_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    VmmMachine *m = opaque;
    (void)size;
    machine_lock(m);
    serial_write(&m->serial, (unsigned)off, (uint8_t)val);
    machine_unlock(m);
}

static const VmmIoOps uart_ops = { .read = uart_read, .write = uart_write };

static uint64_t pci_io_read(void *opaque, uint64_t off, unsigned size)
{
    VmmMachine *m = opaque;
    machine_lock(m);
    uint32_t v = pci_bus_pio_read(&m->bus, (uint16_t)(PCI_CONFIG_ADDR_PORT + off), size);
    machine_unlock(m);
    return v;
}

static void pci_io_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    VmmMachine *m = opaque;
    machine_lock(m);
    pci_bus_pio_write(&m->bus, (uint16_t)(PCI_CONFIG_ADDR_PORT + off), size, (uint32_t)val);
    machine_unlock(m);
}

static const VmmIoOps pci_io_ops = { .read = pci_io_read, .write = pci_io_write };

/* ---- The device lock ---------------------------------------------------------- */

void machine_lock(VmmMachine *m)
{
    vk_mutex_lock(&m->lock);
}

void machine_unlock(VmmMachine *m)
{
    irq_handoff_unlock(&m->irqs, &m->lock);
}

void machine_assert_locked(VmmMachine *m)
{
#ifndef NDEBUG
    /* Fails for any holder, the caller included (not recursive); taking
     * it here means nobody held it. */
    if (vk_mutex_trylock(&m->lock)) {
        machine_unlock(m);
        assert(!"machine lock not held");
    }
#else
    (void)m;
#endif
}

/* The guest asked to power off or reset: end the VM with that reason. */
static void power_request(VmmMachine *m, VmmMachineState why)
{
    vmm_vm_request_end(m->vm, (uint64_t)why);
}

static uint64_t power_read(void *opaque, uint64_t off, unsigned size)
{
    (void)opaque; (void)off; (void)size;
    return 0;                                /* sleep status: nothing pending */
}

static void power_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    VmmMachine *m = opaque;
    (void)size;
    if (off == ACPI_PORT_SLEEP_CONTROL - ACPI_PORT_SLEEP_CONTROL &&
        acpi_decode_sleep_control((uint8_t)val) == ACPI_SLEEP_POWEROFF) {
        power_request(m, VMM_MACHINE_POWEROFF);
    } else if (off == ACPI_PORT_RESET - ACPI_PORT_SLEEP_CONTROL &&
               (uint8_t)val == ACPI_RESET_VALUE) {
        power_request(m, VMM_MACHINE_REBOOT);
    }
}

static const VmmIoOps power_ops = { .read = power_read, .write = power_write };

/* The keyboard controller's status port: 0xFE written to it resets the
 * machine (Linux's reboot fallback); reads say "input buffer empty". */
static uint64_t kbd_read(void *opaque, uint64_t off, unsigned size)
{
    (void)opaque; (void)off; (void)size;
    return 0;
}

static void kbd_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    (void)off; (void)size;
    if ((uint8_t)val == 0xfe) {
        power_request(opaque, VMM_MACHINE_REBOOT);
    }
}

static const VmmIoOps kbd_ops = { .read = kbd_read, .write = kbd_write };

/* ---- PCI MMIO: the whole window, dispatched to BARs --------------------------- */

static bool find_bar(VmmMachine *m, uint64_t addr, unsigned size, VmmMachinePciDev **dev,
                     int *bar, uint64_t *off) VMM_REQUIRES(m->lock)
{
    for (unsigned i = 0; i < m->npci; i++) {
        VmmMachinePciDev *d = m->pci[i];
        for (int b = 0; b < PCI_NUM_BARS; b++) {
            uint64_t base = pci_device_bar_addr(d->pci, b);
            if (base != UINT64_MAX && addr >= base &&
                addr + size <= base + d->pci->bars[b].size) {
                *dev = d;
                *bar = b;
                *off = addr - base;
                return true;
            }
        }
    }
    return false;
}

static uint64_t mmio_read(void *opaque, uint64_t off, unsigned size)
{
    VmmMachine *m = opaque;
    VmmMachinePciDev *d;
    int bar;
    uint64_t boff, v = ~0ull;
    machine_lock(m);
    if (find_bar(m, X86_MMIO_HOLE_START + off, size, &d, &bar, &boff) && d->read) {
        v = d->read(d, bar, boff, size);
    }
    machine_unlock(m);
    return v;
}

static void mmio_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    VmmMachine *m = opaque;
    VmmMachinePciDev *d;
    int bar;
    uint64_t boff;
    machine_lock(m);
    if (find_bar(m, X86_MMIO_HOLE_START + off, size, &d, &bar, &boff) && d->write) {
        d->write(d, bar, boff, size, val);
    }
    machine_unlock(m);
}

static const VmmIoOps mmio_ops = { .read = mmio_read, .write = mmio_write };

int machine_pci_add(VmmMachine *m, VmmMachinePciDev *d)
{
    if (m->npci >= MACHINE_MAX_PCI) {
        return -ENOSPC;
    }
    int r = pci_bus_plug(&m->bus, (int)m->npci + 1, d->pci);
    if (r < 0) {
        return r;
    }
    m->pci[m->npci++] = d;
    return 0;
}

uint64_t machine_alloc_mmio(VmmMachine *m, uint64_t size)
{
    uint64_t at = (m->next_mmio + size - 1) & ~(size - 1);
    if (at + size > ACPI_IOAPIC_ADDR) {
        return 0;
    }
    m->next_mmio = at + size;
    return at;
}

/* ---- The caller's PIO and MMIO regions ----------------------------------------- */

static uint64_t region_read(void *opaque, uint64_t off, unsigned size)
{
    MachineRegion *rg = opaque;
    uint64_t v = ~0ull;
    if (rg->ops.read) {
        vk_mutex_lock(&rg->lock);
        v = rg->ops.read(rg->opaque, off, size);
        vk_mutex_unlock(&rg->lock);
    }
    return v;
}

static void region_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    MachineRegion *rg = opaque;
    if (rg->ops.write) {
        vk_mutex_lock(&rg->lock);
        rg->ops.write(rg->opaque, off, val, size);
        vk_mutex_unlock(&rg->lock);
    }
}

static const VmmIoOps region_ops = { .read = region_read, .write = region_write };

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* Whether [base, base+len) touches what the machine (or KVM in the kernel)
 * decodes itself: RAM, the PCI window and the APIC pages; the in-kernel
 * PIC, PIT and ELCR ports.  The machine's own ports are registered: the
 * registration refuses those. */
static bool region_taken(VmmMachine *m, bool pio, uint64_t base, uint64_t len)
{
    if (pio) {
        static const uint16_t kvm_ports[][2] = {
            { 0x20, 2 }, { 0xa0, 2 }, { 0x40, 4 }, { 0x61, 1 }, { 0x4d0, 2 },
        };
        for (size_t i = 0; i < sizeof(kvm_ports) / sizeof(kvm_ports[0]); i++) {
            if (overlaps(base, len, kvm_ports[i][0], kvm_ports[i][1])) {
                return true;
            }
        }
        return false;
    }
    return overlaps(base, len, 0, m->low_size) ||
           (m->ram_size > m->low_size &&
            overlaps(base, len, X86_MMIO_HOLE_END, m->ram_size - m->low_size)) ||
           overlaps(base, len, X86_MMIO_HOLE_START, ACPI_IOAPIC_ADDR - X86_MMIO_HOLE_START) ||
           overlaps(base, len, ACPI_IOAPIC_ADDR, 0x1000) ||
           overlaps(base, len, ACPI_LAPIC_ADDR, 0x1000);
}

int vmm_machine_add_io_region(VmmMachine *m, bool pio, uint64_t base, uint64_t len,
                              const VmmMachineIoOps *ops, void *opaque)
{
    if (vk_atomic_load_acquire(&m->state) != VMM_MACHINE_CREATED) {
        return VMM_MISUSE_ERR(-EINVAL, "regions are added before start");
    }
    if (!ops || ops->size < sizeof(*ops) || len == 0 || base + len < base ||
        (pio && base + len > 0x10000)) {
        return VMM_MISUSE_ERR(-EINVAL, "bad I/O region 0x%" PRIx64 "+0x%" PRIx64, base, len);
    }
    if (region_taken(m, pio, base, len)) {
        vk_error("machine: the %s range 0x%" PRIx64 "+0x%" PRIx64 " is the machine's",
                 pio ? "port" : "MMIO", base, len);
        return -EEXIST;
    }
    if (m->nregions >= MACHINE_MAX_REGIONS) {
        return -ENOSPC;
    }
    MachineRegion *rg = calloc(1, sizeof(*rg));
    if (!rg) {
        return -ENOMEM;
    }
    *rg = (MachineRegion){ .m = m, .pio = pio, .base = base, .len = len, .ops = *ops,
                           .opaque = opaque };
    vk_mutex_init(&rg->lock);
    int r = vmm_vm_register_io(m->vm, pio, base, len, &region_ops, rg);
    if (r < 0) {
        vk_mutex_destroy(&rg->lock);
        free(rg);
        return r;
    }
    m->regions[m->nregions++] = rg;
    return 0;
}

/* ---- Memory and the VM -------------------------------------------------------- */

static int setup_memory(VmmMachine *m)
{
    int r;
    VmmRamRegionOptions ro = { .size = sizeof(ro), .length = m->ram_size,
                               .name = "vmmkit-ram",
                               .flags = VMM_RAM_NORESERVE | VMM_RAM_PRIVATE };
    m->ram = vmm_ram_region_new(&ro, &r);
    if (!m->ram) {
        return r;
    }
    m->host = vmm_ram_region_host(m->ram);
    m->mem = vmm_guest_memory_new(&r);
    if (!m->mem) {
        return r;
    }
    m->low_size = m->ram_size < X86_MMIO_HOLE_START ? m->ram_size : X86_MMIO_HOLE_START;
    r = vmm_vm_map_memory(m->vm, 0, m->low_size, m->host, 0);
    if (r == 0) {
        r = vmm_guest_memory_add(m->mem, 0, m->ram, 0, m->low_size, 0);
    }
    if (r == 0 && m->ram_size > m->low_size) {
        uint64_t hi = m->ram_size - m->low_size;
        r = vmm_vm_map_memory(m->vm, X86_MMIO_HOLE_END, hi, m->host + m->low_size, 0);
        if (r == 0) {
            r = vmm_guest_memory_add(m->mem, X86_MMIO_HOLE_END, m->ram, m->low_size, hi, 0);
        }
    }
    return r;
}

static int register_io(VmmMachine *m)
{
    int r = 0;
    r = r ?: vmm_vm_register_io(m->vm, true, SERIAL_COM1_PORT, 8, &uart_ops, m);
    r = r ?: vmm_vm_register_io(m->vm, true, PCI_CONFIG_ADDR_PORT, 8, &pci_io_ops, m);
    r = r ?: vmm_vm_register_io(m->vm, true, ACPI_PORT_SLEEP_CONTROL, ACPI_PORT_COUNT,
                                &power_ops, m);
    r = r ?: vmm_vm_register_io(m->vm, true, 0x64, 1, &kbd_ops, m);
    r = r ?: vmm_vm_register_io(m->vm, false, X86_MMIO_HOLE_START,
                                ACPI_IOAPIC_ADDR - X86_MMIO_HOLE_START, &mmio_ops, m);
    return r;
}

static void *waiter_main(void *opaque)
{
    VmmMachine *m = opaque;
    VmmVmExit ex;
    vmm_vm_wait(m->vm, -1, &ex);
    VmmMachineState st;
    switch (ex.kind) {
    case VMM_VM_END_REQUESTED:
        st = (VmmMachineState)ex.code;
        break;
    case VMM_VM_END_SHUTDOWN:           /* triple fault: a PC resets */
        st = VMM_MACHINE_REBOOT;
        snprintf(m->end_msg, sizeof(m->end_msg), "guest triple fault (reset)");
        break;
    case VMM_VM_END_SYSTEM_EVENT:
        st = ex.code == KVM_SYSTEM_EVENT_SHUTDOWN ? VMM_MACHINE_POWEROFF
                                                  : VMM_MACHINE_REBOOT;
        break;
    case VMM_VM_END_ERROR:
        st = VMM_MACHINE_ERROR;
        snprintf(m->end_msg, sizeof(m->end_msg), "host error on vCPU %u: %s",
                 ex.vcpu_id, vmm_strerror(ex.error));
        break;
    default:
        st = VMM_MACHINE_CRASHED;
        snprintf(m->end_msg, sizeof(m->end_msg),
                 "guest crashed: vCPU %u, %s at KVM exit %s (%u), code 0x%" PRIx64
                 ", rip 0x%" PRIx64,
                 ex.vcpu_id, vmm_vm_end_kind_name(ex.kind),
                 vmm_exit_reason_name(ex.exit_reason), ex.exit_reason, ex.code, ex.rip);
        break;
    }
    if (!m->end_msg[0]) {
        snprintf(m->end_msg, sizeof(m->end_msg), "%s", vmm_machine_state_name(st));
    }
    vk_atomic_store_release(&m->state, st);
    uint64_t one = 1;
    ssize_t n = write(m->end_fd, &one, sizeof(one));
    (void)n;
    return NULL;
}

static int check_options(const VmmMachineOptions *o, bool need_kernel)
{
    if (!o || o->size < offsetof(VmmMachineOptions, kvm_ops) || (need_kernel && !o->kernel) ||
        o->cpus == 0 ||
        o->cpus > VMM_MACHINE_MAX_CPUS || o->memory < (32ull << 20) ||
        (o->memory & 0xfff) || o->memory > (1ull << 40)) {
        return -EINVAL;
    }
    if (opt_boot_flags(o) & ~(VMM_MACHINE_BOOT_HOST_UNPACK | VMM_MACHINE_BOOT_ANY_KVM)) {
        return -EINVAL;             /* a flag this library does not know */
    }
    return 0;
}

/*
 * The machine boots stock kernels: refuse a KVM that cannot run one (an
 * emulation-only kvm_pvm) instead of starting a guest that crawls and then
 * dies, unless VMM_MACHINE_BOOT_ANY_KVM.  The verdict is the probe's
 * (vmm_kvm_probe), kept per device path for the life of the process: the
 * KVM module does not change under a running VMM.
 */
static pthread_mutex_t kvm_verdict_lock = PTHREAD_MUTEX_INITIALIZER;
static char kvm_verdict_path[256];
static int kvm_verdict;             /* 0 full, else -EOPNOTSUPP or -errno */
static char kvm_verdict_msg[512];

static int check_kvm(const VmmMachineOptions *o)
{
    if (opt_kvm_ops(o) || (opt_boot_flags(o) & VMM_MACHINE_BOOT_ANY_KVM)) {
        return 0;                   /* a test's KVM, or the caller's choice */
    }
    const char *path = o->kvm_path ? o->kvm_path : "/dev/kvm";
    pthread_mutex_lock(&kvm_verdict_lock);
    if (strcmp(kvm_verdict_path, path) != 0) {
        VmmVmOptions vo = { .size = sizeof(vo), .dev_path = path };
        VmmKvmInfo info = { .size = sizeof(info) };
        int r = vmm_kvm_probe(&vo, &info);
        if (r == 0 && !info.full) {
            r = -EOPNOTSUPP;
            snprintf(kvm_verdict_msg, sizeof(kvm_verdict_msg),
                     "%s (%s) cannot run a stock kernel at hardware speed: %s; "
                     "VMM_MACHINE_BOOT_ANY_KVM boots anyway (a kernel built for it)",
                     path, info.module[0] ? info.module : "unknown KVM", info.reason);
        } else if (r < 0) {
            snprintf(kvm_verdict_msg, sizeof(kvm_verdict_msg), "%s", info.reason);
        }
        kvm_verdict = r;
        if (r != -ENOENT && r != -EACCES) {     /* those may change: ask again */
            snprintf(kvm_verdict_path, sizeof(kvm_verdict_path), "%s", path);
        }
    }
    int r = kvm_verdict;
    if (r < 0) {
        vk_error("machine: %s", kvm_verdict_msg);
    }
    pthread_mutex_unlock(&kvm_verdict_lock);
    return r;
}

static int build(VmmMachine *m, const VmmMachineOptions *o, bool boot)
{
    int r;
    VmmVmOptions vo = { .size = sizeof(vo), .dev_path = o->kvm_path, .ops = opt_kvm_ops(o) };
    m->vm = vmm_vm_new(&vo, &r);
    if (!m->vm) {
        return r;
    }
    r = vmm_vm_create_irqchip(m->vm, true);
    if (r < 0) {
        return r;
    }
    r = setup_memory(m);
    if (r < 0) {
        return r;
    }
    r = boot ? load_linux(m, o) : 0;
    if (r < 0) {
        return r;
    }
    /* Slot 0: a host bridge, so Linux's type-1 probe finds a bus. */
    machine_lock(m);
    pci_device_init(&m->host_bridge, 0x1b36, 0x0008, 0x060000, 0, 0x1b36, 0);
    r = pci_bus_plug(&m->bus, 0, &m->host_bridge);
    serial_init(&m->serial, serial_out, serial_irq, m);
    machine_unlock(m);
    if (r < 0) {
        return r;
    }
    r = register_io(m);
    if (r < 0) {
        return r;
    }
    struct kvm_cpuid2 *cpuid = vmm_vm_get_supported_cpuid(m->vm, &r);
    if (!cpuid) {
        return r;
    }
    bool tsc_deadline = vmm_vm_check_extension(m->vm, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    for (uint32_t i = 0; i < m->cpus && r >= 0; i++) {
        char name[16];
        snprintf(name, sizeof(name), "vcpu%u", i);
        VmmVcpu *cpu = vmm_vcpu_new(m->vm, i, name, &r);
        if (cpu) {
            r = setup_vcpu(m, cpu, i, cpuid, tsc_deadline);
        }
    }
    free(cpuid);
    return r < 0 ? r : 0;
}

/* A machine with a kernel loaded (@boot), or with nothing in RAM, for a
 * snapshot to fill (snapshot.c). */
VmmMachine *machine_new(const VmmMachineOptions *o, bool boot, int *errp)
{
    int r = check_options(o, boot);
    VmmMachine *m = NULL;
    if (r < 0) {
        r = VMM_MISUSE_ERR(r, "bad machine options");
        goto fail;
    }
    r = check_kvm(o);
    if (r < 0) {
        goto fail;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        r = -ENOMEM;
        goto fail;
    }
    vk_mutex_init(&m->lock);
    irq_handoff_init(&m->irqs, machine_virtio_deliver, m);
    m->ram_size = o->memory;
    m->cpus = o->cpus;
    m->console_fd = o->console_out_fd;
    m->next_mmio = X86_MMIO_HOLE_START;
    m->ack_fd = -1;
    m->ack_running_fd = -1;
    m->end_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->end_fd < 0) {
        r = -errno;
        goto fail;
    }
    r = build(m, o, boot);
    if (r < 0) {
        goto fail;
    }
    return m;
fail:
    if (m) {
        vmm_machine_free(m);
    }
    if (errp) {
        *errp = r;
    }
    return NULL;
}

int machine_waiter_spawn(VmmMachine *m)
{
    if (m->waiter_early) {
        return 0;
    }
    pthread_attr_t attr;
    int r = vk_thread_attr_init(&attr);
    if (r == 0) {
        r = pthread_create(&m->waiter, &attr, waiter_main, m);
        pthread_attr_destroy(&attr);
    }
    m->waiter_early = r == 0;
    return -r;
}

/* A waiter made for a start that does not happen ends with the state as it
 * is (created); its end mark is taken back. */
static void machine_waiter_unspawn(VmmMachine *m)
{
    if (!m->waiter_early) {
        return;
    }
    vmm_vm_request_end(m->vm, VMM_MACHINE_CREATED);
    pthread_join(m->waiter, NULL);
    m->waiter_early = false;
    m->end_msg[0] = 0;
    uint64_t v;
    ssize_t n = read(m->end_fd, &v, sizeof(v));
    (void)n;
}

VmmMachine *vmm_machine_new(const VmmMachineOptions *o, int *errp)
{
    return machine_new(o, true, errp);
}

int vmm_machine_start(VmmMachine *m)
{
    if (m->state != VMM_MACHINE_CREATED) {
        return VMM_MISUSE_ERR(-EINVAL, "machine already started");
    }
    if (m->incoming_failed) {
        vk_error("machine: this migrated machine got no commit from its source; it never runs");
        return -ECONNABORTED;
    }
    /* A restored or migrated machine has its ACPI tables in its RAM. */
    bool restoring = m->restore != NULL;
    int r = restoring ? 0 : build_acpi(m);
    mig_trace_mark(&m->trace, "start");
    if (r == 0) {
        r = machine_devices_start(m);
        mig_trace_mark(&m->trace, "devices started");
    }
    if (r == 0 && restoring) {
        r = machine_restore_finish(m);
        mig_trace_mark(&m->trace, "devices loaded, clock set");
    }
    /* The waiter before the commit (a migrated machine's was made before
     * its stream: the paused window holds no thread creation). */
    if (r == 0) {
        r = machine_waiter_spawn(m);
    }
    if (r == 0) {
        r = machine_migration_commit(m);    /* migrated: the source's go */
        if (r < 0) {
            machine_waiter_unspawn(m);      /* no commit: never runs */
        }
    }
    if (r < 0) {
        return r;
    }
    m->have_waiter = true;
    m->waiter_early = false;
    vk_atomic_store_release(&m->state, VMM_MACHINE_RUNNING);
    /* Migrated: the first vCPU thread about to run tells the source. */
    r = machine_migration_run(m);
    if (r == 1) {
        r = vmm_vm_start(m->vm);
    }
    if (r < 0) {
        vmm_vm_request_end(m->vm, VMM_MACHINE_ERROR);
    }
    machine_migration_ack(m, r == 0);
    return r;
}

VmmMachineState vmm_machine_state(VmmMachine *m)
{
    return vk_atomic_load_acquire(&m->state);
}

int vmm_machine_pause(VmmMachine *m)
{
    if (vmm_machine_state(m) != VMM_MACHINE_RUNNING) {
        return -EINVAL;
    }
    int r = vmm_vm_pause(m->vm);
    if (r == 0) {
        r = machine_devices_pause(m, true);
    }
    if (r == 0) {
        VmmMachineState want = VMM_MACHINE_RUNNING;
        __atomic_compare_exchange_n(&m->state, &want, VMM_MACHINE_PAUSED, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    return r;
}

int vmm_machine_resume(VmmMachine *m)
{
    if (vmm_machine_state(m) != VMM_MACHINE_PAUSED) {
        return -EINVAL;
    }
    int r = machine_devices_pause(m, false);
    if (r == 0) {
        VmmMachineState want = VMM_MACHINE_PAUSED;
        __atomic_compare_exchange_n(&m->state, &want, VMM_MACHINE_RUNNING, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
        r = vmm_vm_resume(m->vm);
    }
    return r;
}

void vmm_machine_stop(VmmMachine *m)
{
    if (m->vm) {
        vmm_vm_request_end(m->vm, VMM_MACHINE_STOPPED);
    }
}

int vmm_machine_event_fd(VmmMachine *m)
{
    return m->end_fd;
}

int vmm_machine_wait(VmmMachine *m, int64_t timeout_ns, char *msg, size_t msg_len)
{
    if (!m->have_waiter) {
        return -EINVAL;
    }
    struct pollfd pfd = { .fd = m->end_fd, .events = POLLIN };
    int ms = timeout_ns < 0 ? -1 : (int)(timeout_ns / 1000000);
    int n;
    do {
        n = poll(&pfd, 1, ms);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        return -ETIMEDOUT;
    }
    if (m->have_waiter) {
        pthread_join(m->waiter, NULL);
        m->have_waiter = false;
        m->joined = true;
    }
    if (msg && msg_len) {
        snprintf(msg, msg_len, "%s", m->end_msg);
    }
    return (int)vmm_machine_state(m);
}

size_t vmm_machine_console_input(VmmMachine *m, const void *buf, size_t len)
{
    machine_lock(m);
    size_t n = serial_receive(&m->serial, buf, len);
    machine_unlock(m);
    return n;
}

VmmVm *vmm_machine_vm(VmmMachine *m)
{
    return m->vm;
}

void vmm_machine_free(VmmMachine *m)
{
    if (!m) {
        return;
    }
    if (m->have_waiter) {
        vmm_machine_stop(m);
        pthread_join(m->waiter, NULL);
        m->have_waiter = false;
    }
    machine_waiter_unspawn(m);
    machine_restore_free(m->restore);
    machine_migration_ack(m, false);
    machine_devices_free(m);
    if (m->vm) {
        vmm_vm_free(m->vm);
    }
    for (unsigned i = 0; i < m->nregions; i++) {   /* no vCPU calls them now */
        vk_mutex_destroy(&m->regions[i]->lock);
        free(m->regions[i]);
    }
    if (m->mem) {
        vmm_guest_memory_unref(m->mem);
    }
    if (m->ram) {
        vmm_ram_region_unref(m->ram);
    }
    if (m->end_fd >= 0) {
        close(m->end_fd);
    }
    vk_mutex_destroy(&m->lock);
    free(m);
}
