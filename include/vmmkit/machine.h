/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/machine.h - an x86-64 PC-like machine that boots a Linux kernel
 * (bzImage or uncompressed vmlinux).
 *
 * The machine puts together what the rest of vmmkit provides: a KVM VM with
 * the in-kernel irqchip and PIT, guest RAM, the 64-bit Linux boot protocol
 * (zero page, e820, identity page tables), ACPI tables (hardware-reduced:
 * MADT for the CPUs and the I/O APIC, a DSDT with a PCI root bridge, and a
 * sleep-control/reset register the VMM sees), a PCI bus 0 with virtio-pci
 * (modern; MSI-X through irqfds, doorbells through ioeventfds) devices and
 * a 16550 UART console.  Before starting it, a program adds devices: the
 * library's (disks, a virtio console, a virtio RNG) and its own (a
 * VmmVirtioDevice on the virtio-pci bus, a PIO or MMIO region).
 * docs/machine.md explains the layout and why.
 *
 * Lifecycle: vmm_machine_new() builds and loads everything (vCPUs stopped);
 * vmm_machine_start() runs it; the machine ends when the guest powers off,
 * reboots, crashes, or vmm_machine_stop() is called; vmm_machine_wait() (or
 * polling vmm_machine_event_fd()) reports how.  A reboot is reported, not
 * performed: the caller frees the machine and builds a new one.
 *
 * Threads: one thread (the caller's "main loop") creates, starts, pauses,
 * stops and frees the machine; vCPU threads and the console run inside.
 */
#ifndef VMMKIT_MACHINE_H
#define VMMKIT_MACHINE_H

#include "vmmkit/common.h"

VMM_BEGIN_DECLS

typedef struct VmmMachine VmmMachine;
typedef struct VmmVm VmmVm;
typedef struct VmmKvmOps VmmKvmOps;
/* From vmmkit/aio.h, vmmkit/memory.h, vmmkit/virtio.h (repeating a typedef
 * is valid C11). */
typedef struct VmmAioContext VmmAioContext;
typedef struct VmmGuestMemory VmmGuestMemory;
typedef struct VmmVirtioDevice VmmVirtioDevice;

#define VMM_MACHINE_MAX_CPUS 64

typedef struct VmmMachineOptions {
    size_t size;                /* sizeof(VmmMachineOptions), for ABI growth */
    const char *kernel;         /* path of a bzImage (boot protocol >= 2.12) or
                                 * of an x86-64 vmlinux ELF: its segments load at
                                 * their physical addresses and vCPU 0 enters its
                                 * entry point in 64-bit mode (no in-guest
                                 * decompression, and so no KASLR).  A bzImage
                                 * decompresses itself in the guest, unless
                                 * VMM_MACHINE_BOOT_HOST_UNPACK */
    const char *initrd;         /* path or NULL */
    const char *cmdline;        /* NULL: "" */
    uint64_t memory;            /* bytes of RAM, >= 32 MiB, 4 KiB multiple */
    uint32_t cpus;              /* 1..VMM_MACHINE_MAX_CPUS */
    int console_out_fd;         /* the UART's output (-1: discarded) */
    const char *kvm_path;       /* NULL: /dev/kvm */
    /* NULL: the kernel.  Else every KVM system call goes through it
     * (vmmkit/kvm.h VmmKvmOps): tests use it to make irqfds or ioeventfds
     * fail and see the machine fall back to KVM_SIGNAL_MSI / MMIO exits.
     * Callers built before this field existed pass a smaller size. */
    const VmmKvmOps *kvm_ops;
    uint32_t boot_flags;        /* VMM_MACHINE_BOOT_*; a smaller size means 0;
                                 * an unknown flag fails with -EINVAL */
} VmmMachineOptions;

/*
 * Unpack a bzImage on the host: the library decodes an xz or gzip payload
 * (liblzma, zlib), writes the vmlinux segments straight into guest RAM and
 * enters the kernel in 64-bit mode, as the kernel's own decompressor would
 * have - which spares the guest that work but gives up KASLR (the
 * decompressor chooses the random location).  Other compressions, and
 * payloads that fail the host's checks, take the standard way: the guest
 * decompresses itself.  Not the default: under nested emulation the
 * host's decoder measured no faster than the guest's (docs/machine.md).
 */
#define VMM_MACHINE_BOOT_HOST_UNPACK (1u << 0)

/*
 * Boot on whatever KVM is there.  By default vmm_machine_new() first asks
 * vmm_kvm_probe() (vmmkit/kvm.h; once per device path and process) whether
 * the KVM runs a stock kernel at hardware speed, and fails with
 * -EOPNOTSUPP and a message naming the reason where it cannot (kvm_pvm:
 * stock kernels crawl through KVM's instruction emulator, then stop at an
 * instruction it cannot emulate).  With this flag the machine boots anyway,
 * e.g. a guest kernel built for PVM.  Machines with @kvm_ops are never
 * probed.
 */
#define VMM_MACHINE_BOOT_ANY_KVM (1u << 1)

typedef enum VmmMachineState {
    VMM_MACHINE_CREATED = 0,    /* built, not started */
    VMM_MACHINE_RUNNING,
    VMM_MACHINE_PAUSED,
    VMM_MACHINE_POWEROFF,       /* ended: the guest powered off (ACPI S5) */
    VMM_MACHINE_REBOOT,         /* ended: the guest asked for a reset */
    VMM_MACHINE_STOPPED,        /* ended: vmm_machine_stop() */
    VMM_MACHINE_CRASHED,        /* ended: KVM reported an error for the guest */
    VMM_MACHINE_ERROR,          /* ended: a host error */
} VmmMachineState;

/* "created", "running", "paused", "poweroff", "reboot", "stopped",
 * "crashed", "error" for messages; another value gives "unknown".  The
 * strings are static.  Any thread. */
VMM_EXPORT const char *vmm_machine_state_name(VmmMachineState st);

/*
 * Build the machine and load the kernel and initrd.  Errors: -EINVAL (bad
 * options), -EOPNOTSUPP (a KVM that cannot run a stock kernel, see
 * VMM_MACHINE_BOOT_ANY_KVM), -ENOEXEC (neither a bzImage nor an ELF kernel the machine can boot), -E2BIG (kernel,
 * initrd or command line do not fit), the errno of a file or of KVM (a
 * message names it through vmm_set_log_handler).  Main loop.
 */
VMM_EXPORT VmmMachine *vmm_machine_new(const VmmMachineOptions *opts, int *errp);

/*
 * ---- Composing the machine ----------------------------------------------
 *
 * Between vmm_machine_new() and vmm_machine_start() the caller puts devices
 * into the machine: the library's (disks, console, RNG) and its own - a
 * virtio device of any type on the machine's virtio-pci bus, or a plain
 * port I/O or MMIO region.  The PCI bus (which the guest scans) and the
 * ACPI tables (written at start) describe what was added.  Every
 * vmm_machine_add_*() is main loop, before start (-EINVAL after).
 */

/* The guest's RAM, for creating devices that do DMA (vmm_virtio_device_new).
 * The machine holds it until vmm_machine_free().  Any thread. */
VMM_EXPORT VmmGuestMemory *vmm_machine_guest_memory(VmmMachine *m);

/*
 * The machine's device context: the AioContext of the iothread that runs
 * the machine's virtio queues (created on first use).  A device of the
 * caller's may put its own fd handlers, timers and bottom halves there;
 * it removes them before vmm_machine_free(), which ends the iothread.
 * NULL with *errp = -errno when the iothread cannot start.  Main loop.
 */
VMM_EXPORT VmmAioContext *vmm_machine_device_context(VmmMachine *m, int *errp);

typedef struct VmmMachineVirtioOptions {
    size_t size;                /* sizeof(VmmMachineVirtioOptions) */
    uint32_t pci_class;         /* 24-bit PCI class code; 0: 0xff0000 (other) */
    /* The context every queue of the device is processed in (the machine
     * sets it with vmm_virtio_queue_set_context); NULL: the machine's
     * device context (vmm_machine_device_context). */
    VmmAioContext *context;
} VmmMachineVirtioOptions;

/*
 * Put the caller's virtio device @vdev (vmmkit/virtio.h, created on
 * vmm_machine_guest_memory(m)) into the next PCI slot behind a modern
 * virtio-pci function, wired as the machine's own disks are: MSI-X vectors
 * through KVM irqfds (KVM_SIGNAL_MSI where that fails), each queue's
 * doorbell a KVM ioeventfd the queue's context watches (an MMIO exit
 * where that fails), vmm_machine_pause() quiescing it through the device
 * model.  The machine installs the device's interrupt callback, sets every
 * queue's context (@opts) and host notifier: the caller changes none of
 * them.  @opts may be NULL (defaults).
 *
 * The caller keeps @vdev: it frees it after vmm_machine_free(), which
 * resets the device (waiting for the requests it has in flight) and
 * detaches it (no interrupt callback, no host notifier, no queue context).
 *
 * 0, -EINVAL (@vdev NULL, after start, @vdev already added, @vdev not on
 * vmm_machine_guest_memory(m), more queues than the transport has (64), a
 * bad @opts size or class), -ENOSPC (the
 * bus is full: 31 devices, the disks counted), -EBUSY (a queue already has
 * a host notifier), -ENOMEM, or the errno of starting the iothread.
 * Main loop.
 */
VMM_EXPORT int vmm_machine_add_virtio(VmmMachine *m, VmmVirtioDevice *vdev,
                                      const VmmMachineVirtioOptions *opts);

/* A region's accesses: @off from the region's base, @size 1, 2, 4 or 8. */
typedef struct VmmMachineIoOps {
    size_t size;                /* sizeof(VmmMachineIoOps) */
    uint64_t (*read)(void *opaque, uint64_t off, unsigned size);
    void (*write)(void *opaque, uint64_t off, uint64_t val, unsigned size);
} VmmMachineIoOps;

/*
 * Give guest port I/O (@pio) or MMIO accesses to [@base, @base + @len) to
 * @ops (read returns the value, all ones when NULL; write NULL drops).
 * The callbacks run on the vCPU thread that accessed the region, one at a
 * time per region (a lock of the region's own, taken by the machine), and
 * without the machine's device lock: they may call any vmmkit function a
 * vCPU thread may call (e.g. raise a virtio interrupt, vmm_vm_set_irq),
 * but not wait for the main loop.  The DSDT describes the region as a
 * motherboard resource (PNP0C02), so the guest OS allocates nothing there.
 *
 * 0, -EINVAL (after start, @ops NULL or too small, @len 0, a range that
 * wraps or, for ports, passes 0xffff), -EEXIST (it overlaps the machine's
 * RAM, its PCI window, the I/O APIC or local APIC page, a port of its own
 * or of KVM's in-kernel PIC/PIT, or another region), -ENOSPC (16 regions
 * already), -ENOMEM.  Main loop.
 */
VMM_EXPORT int vmm_machine_add_io_region(VmmMachine *m, bool pio, uint64_t base,
                                         uint64_t len, const VmmMachineIoOps *ops,
                                         void *opaque);

/*
 * Add a virtio-blk disk backed by the image file @path (raw), read-only if
 * @readonly.  Before vmm_machine_start() (-EINVAL after; -ENOSPC when the
 * bus is full).  Returns 0 or the errno of
 * opening the image (a message names it).  Main loop.
 */
VMM_EXPORT int vmm_machine_add_disk(VmmMachine *m, const char *path, bool readonly);

/*
 * Add a virtio-blk disk on a block graph described by @options (the
 * syntax of vmm_block_open(), e.g. a fault-injection filter over a file).
 * Before vmm_machine_start().  Returns 0, -EINVAL (after start), -ENOSPC
 * (the bus is full), -ENOMEM, or the error of opening the graph (a message
 * names it).  Main loop.
 */
VMM_EXPORT int vmm_machine_add_block(VmmMachine *m, const char *options, bool readonly);

/*
 * Add a virtio entropy device (vmmkit/virtio-rng.h: getrandom(2) of the
 * host; Linux's /dev/hwrng with the virtio_rng driver).  0, -EINVAL
 * (after start), -ENOSPC (the bus is full), -ENOMEM, or the errno of
 * starting the device iothread.  Main loop.
 */
VMM_EXPORT int vmm_machine_add_rng(VmmMachine *m);

/*
 * Add a virtio console (vmmkit/virtio-console.h; Linux's /dev/hvc0 with
 * the virtio_console driver): the guest's input is read from @in_fd, its
 * output written to @out_fd, in the device iothread; -1 for none.  The
 * fds stay the caller's and must stay open until vmm_machine_free().
 * 0, -EINVAL (after start, an fd below -1), -ENOSPC (the bus is full),
 * -ENOMEM, or the errno of starting the device iothread.  Main loop.
 */
VMM_EXPORT int vmm_machine_add_console(VmmMachine *m, int in_fd, int out_fd);

/* Run the vCPUs.  0, -EINVAL (already started), or the error of starting
 * them.  Main loop. */
VMM_EXPORT int vmm_machine_start(VmmMachine *m);
/* Stop every vCPU (and device) / let them go on.  Main loop. */
VMM_EXPORT int vmm_machine_pause(VmmMachine *m);
VMM_EXPORT int vmm_machine_resume(VmmMachine *m);
/* End the machine (VMM_MACHINE_STOPPED unless it already ended).  Any thread. */
VMM_EXPORT void vmm_machine_stop(VmmMachine *m);

/* The current state.  Any thread. */
VMM_EXPORT VmmMachineState vmm_machine_state(VmmMachine *m);

/*
 * An fd that becomes readable once the machine has ended (for poll).
 * Owned by the machine.  Any thread.
 */
VMM_EXPORT int vmm_machine_event_fd(VmmMachine *m);

/*
 * Wait until the machine ends (@timeout_ns < 0: forever) and return its
 * final state, or -ETIMEDOUT.  @msg (may be NULL) receives a one-line
 * description of why it ended.  Main loop.
 */
VMM_EXPORT int vmm_machine_wait(VmmMachine *m, int64_t timeout_ns, char *msg,
                                size_t msg_len);

/* Queue console input for the UART; returns the bytes accepted (the
 * receive FIFO may be full: retry later).  Any thread. */
VMM_EXPORT size_t vmm_machine_console_input(VmmMachine *m, const void *buf, size_t len);

/*
 * How the machine's virtio-pci devices talk to the guest, summed over its
 * disks (counters since creation; the last two are the current state).
 * An interrupt goes through an irqfd when its MSI-X vector has a KVM GSI
 * route, else through KVM_SIGNAL_MSI; a doorbell exits to the VMM (counted
 * here) only where no ioeventfd catches it.
 */
typedef struct VmmMachineStats {
    size_t size;                /* sizeof(VmmMachineStats), set by the caller */
    uint64_t irqfd_signals;     /* interrupts delivered by writing an irqfd */
    uint64_t msi_injections;    /* interrupts delivered with KVM_SIGNAL_MSI */
    uint64_t msix_pended;       /* interrupts that found their vector masked */
    uint64_t mmio_doorbells;    /* queue notifications that exited to the VMM */
    uint32_t irqfd_vectors;     /* MSI-X vectors with a route and an irqfd */
    uint32_t ioeventfd_queues;  /* queues whose doorbell is a KVM ioeventfd */
    uint32_t kernel_unpacked;   /* 1: the library unpacked the bzImage's kernel
                                 * (VMM_MACHINE_BOOT_HOST_UNPACK) */
    /* The disks' requests and their time inside the VMM (vmmkit/virtio-blk.h
     * VmmVirtioBlkStats: queue to end of I/O, and of that the block layer). */
    uint64_t blk_requests;
    uint64_t blk_service_ns;
    uint64_t blk_io_ns;
} VmmMachineStats;

/* Fill *@out (@out->size says how much).  0 or -EINVAL.  Any thread
 * (the counters are read without stopping anything). */
VMM_EXPORT int vmm_machine_get_stats(VmmMachine *m, VmmMachineStats *out);

/*
 * Snapshots (docs/machine.md, "Snapshots").
 *
 * vmm_machine_snapshot: write the paused machine (vmm_machine_pause) to
 * @fd, a regular file opened for writing (it is truncated first): every
 * vCPU's whole state, the in-kernel interrupt controllers, PIT and clock,
 * the UART and the virtio-pci devices (quiesced by the pause, so no disk
 * request is half done), then guest RAM with its zero pages left as holes.
 * A versioned format: a header with the configuration and a table of
 * sections with lengths and CRC-32s.  A pipe or a socket gets the stream
 * form instead (the migration stream's hello, non-zero pages, records and
 * end mark; blocks until the reader has taken it all).  The machine stays
 * paused; resume it or free it.  0, -EINVAL (@m NULL, @fd < 0, a machine
 * not paused), -ESPIPE (@fd is none of these), -EOPNOTSUPP (a device
 * whose state cannot be saved: one whose queues vhost processes, such as
 * vhost-vsock, once the guest's driver set it up; a message names it),
 * or the errno of a write or of KVM (a message names it).  Main loop.
 *
 * vmm_machine_restore: build a new machine from the snapshot in @fd (a
 * regular file, or a pipe or socket carrying the stream form; the caller
 * may close it once this returns).  @opts as for
 * vmm_machine_new, except that kernel, initrd and cmdline are not used
 * and a memory or cpus of 0 takes the snapshot's (any other value must
 * match it).  Guest RAM is mapped privately from the file: pages are read
 * when the guest touches them, and machines restored from the same file
 * share the pages they do not write; from a stream, RAM is copied in (no
 * sharing, the whole stream read before this returns).  Add the same disks, in the same
 * order, as the saved machine had (vmm_machine_add_disk); then
 * vmm_machine_start() loads the devices' state, sets the clock, tells the
 * guest it was paused (KVM_KVMCLOCK_CTRL) and runs the guest from where
 * it stopped - or fails with -EINVAL and a message when the disks do not
 * match the snapshot's devices.  The file must not change while the
 * machine lives.  NULL with *@errp: -EINVAL (NULL @opts, @fd < 0, a file
 * that is not a snapshot, another format version, a corrupt or truncated
 * file, a configuration that does not match @opts or this KVM: a message
 * names which), -EPIPE (a stream that ends early), -ESPIPE (neither a
 * regular file nor a pipe or socket), or what vmm_machine_new returns.
 * Main loop.
 */
VMM_EXPORT int vmm_machine_snapshot(VmmMachine *m, int fd);
VMM_EXPORT VmmMachine *vmm_machine_restore(const VmmMachineOptions *opts, int fd,
                                           int *errp);

typedef struct VmmMigrateOptions {
    size_t size;                /* sizeof(VmmMigrateOptions) */
    uint32_t max_rounds;        /* pre-copy rounds after the first pass; 0: 10 */
    uint64_t downtime_ns;       /* the pause's budget; 0: 50 ms */
    /* The longest either side waits for the other to move a byte (a peer
     * that goes silent without closing: a network partition); the
     * destination learns it from the stream.  0: 10 s; at most an hour. */
    uint64_t timeout_ns;
} VmmMigrateOptions;

typedef struct VmmMigrateStats {
    size_t size;                /* sizeof(VmmMigrateStats), set by the caller */
    uint32_t rounds;            /* rounds after the first pass */
    uint64_t pages_sent;        /* RAM pages sent in all */
    uint64_t final_pages;       /* ... of them while paused */
    uint64_t bytes_sent;        /* the whole stream */
    uint64_t total_ns;          /* the call, until the destination's answer */
    uint64_t downtime_ns;       /* paused until the destination's answer */
    uint64_t stop_copy_ns;      /* paused until the last byte was sent (what
                                 * QEMU reports as its downtime) */
    /* vmm_clock_ns() when the source paused, and the destination's
     * vmm_clock_ns() when its first vCPU was about to enter KVM_RUN (0 if
     * not known): on one host (one clock) the second minus the first is
     * the time the guest ran nowhere, without the wait for the answer. */
    uint64_t paused_at_ns;
    uint64_t dest_run_at_ns;
} VmmMigrateStats;

/*
 * Live migration (docs/machine.md, "Live migration") over a connected
 * stream @fd (a Unix or TCP socket, a pipe).
 *
 * vmm_machine_migrate: send the running machine @m: its RAM while it runs
 * (KVM's dirty log, ring or bitmap, and the log of device writes), rounds
 * until the pages still dirty fit in @opts->downtime_ns at the bandwidth
 * measured or @opts->max_rounds were made, then the machine pauses and the
 * rest goes with the device state; then the two-phase hand-over (the
 * destination says it is ready, the source commits, the destination runs).
 * Returns 0 once the destination runs, with @m stopped (VMM_MACHINE_STOPPED;
 * free it).  On any failure before the commit - the stream breaks, the
 * destination refuses or closes, vmm_machine_migrate_cancel() - @m goes on
 * running, nothing lost, and the error is returned (-ECANCELED for a
 * cancel, -ETIMEDOUT when the destination moved nothing for
 * @opts->timeout_ns).  After the commit @m never resumes by itself:
 * -ENOLINK (the stream broke, or the destination said nothing for
 * @opts->timeout_ns, before its answer: it runs the guest or it never
 * ran, unknown here) or -ECONNABORTED (the destination failed to start:
 * the guest runs nowhere) leave @m paused with its whole state;
 * vmm_machine_resume() goes on with it when the destination does not run.
 * Never both.  @opts and @stats may be NULL (defaults: 10 rounds, 50 ms,
 * 10 s).  -EINVAL (NULL @m, @fd < 0, a machine not running, a size field
 * too small, a timeout above an hour), -EOPNOTSUPP (a device whose state
 * cannot be saved, as for vmm_machine_snapshot: refused before anything
 * is sent, @m runs on).  Blocks; main loop.
 *
 * vmm_machine_migrate_cancel: make a migration of @m in progress give up at
 * its next step (until the destination says it is ready; after that the
 * hand-over decides).  Any thread.
 *
 * vmm_machine_incoming: receive a machine from @fd into a new one; @opts
 * as for vmm_machine_restore (memory/cpus 0: the source's).  Returns the
 * machine once the whole state has arrived; add the same disks as the
 * source had, then vmm_machine_start() asks the source to commit, runs the
 * vCPUs only once it has, and tells the source, which then stops; without
 * the commit (the stream breaks, or nothing comes within the source's
 * timeout_ns: -ETIMEDOUT) it fails and nothing ran.  Freeing it
 * without a successful start tells the source it did not start.  NULL with *@errp: -EINVAL (NULL @opts, @fd < 0, not a migration
 * stream, a configuration that does not match, a corrupt message; a
 * message names it), -EPIPE (the stream ended early), or what
 * vmm_machine_new returns.  Main loop.
 */
VMM_EXPORT int vmm_machine_migrate(VmmMachine *m, int fd, const VmmMigrateOptions *opts,
                                   VmmMigrateStats *stats);
VMM_EXPORT void vmm_machine_migrate_cancel(VmmMachine *m);
VMM_EXPORT VmmMachine *vmm_machine_incoming(const VmmMachineOptions *opts, int fd,
                                            int *errp);

/* The VM underneath (for exit handlers, stats, state).  Any thread. */
VMM_EXPORT VmmVm *vmm_machine_vm(VmmMachine *m);

/* Stop if needed and free everything.  Main loop. */
VMM_EXPORT void vmm_machine_free(VmmMachine *m);

VMM_END_DECLS

#endif /* VMMKIT_MACHINE_H */
