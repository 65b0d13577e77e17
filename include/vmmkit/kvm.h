/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/kvm.h - KVM VMs, memory slots, vCPUs and their run loop,
 * interrupts, ioeventfd/irqfd.
 *
 * A VmmVm owns a KVM VM fd, its accel gate (vmmkit/accel.h), its memory
 * slots, its PIO and MMIO address maps and its vCPUs.  Each vCPU has its
 * own thread, created with the vCPU: every ioctl on a vCPU fd runs on that
 * thread (the state accessors below hand the work to it and wait), so the
 * vCPU's register cache needs no lock.  A new vCPU is stopped; the VM's
 * vCPUs run after vmm_vm_start().
 *
 * Exits: IO and MMIO go to the handlers registered in the PIO/MMIO maps
 * (lookup under RCU, never inside KVM_RUN); HLT, SHUTDOWN, SYSTEM_EVENT,
 * INTERNAL_ERROR, FAIL_ENTRY and others go to the handler registered for the
 * exit reason, else to a default that ends the VM with a VmmVmExit report
 * (never an abort).  vmm_vm_wait() returns that report.
 *
 * Every KVM ioctl goes through the VmmKvmOps table (tests inject failures)
 * and is bracketed by the VM's accel gate.
 *
 * x86-64 hosts only (the structures are those of <linux/kvm.h> on x86).
 */
#ifndef VMMKIT_KVM_H
#define VMMKIT_KVM_H

#include <sys/types.h>
#include <linux/kvm.h>

#include "vmmkit/common.h"
#include "vmmkit/accel.h"
#include "vmmkit/aio.h"

VMM_BEGIN_DECLS

typedef struct VmmVm VmmVm;
typedef struct VmmVcpu VmmVcpu;

/* ---- The kernel interface (injectable) ---------------------------------- */

/*
 * Every system call the KVM layer makes on /dev/kvm, a VM or a vCPU.
 * Functions return >= 0 or a negative errno (never -1 + errno).  The
 * default table calls the kernel.  Tests pass their own to inject errors or
 * to emulate KVM.  Called from any thread (KVM_RUN from vCPU threads).
 */
typedef struct VmmKvmOps {
    size_t size;            /* sizeof(VmmKvmOps) */
    int (*open_dev)(void *opaque, const char *path);
    int (*ioctl)(void *opaque, int fd, unsigned long request, void *arg);
    void *(*mmap)(void *opaque, size_t length, int prot, int flags, int fd,
                  off_t offset);    /* returns MAP_FAILED on error */
    int (*munmap)(void *opaque, void *addr, size_t length);
    int (*close)(void *opaque, int fd);
    void *opaque;
} VmmKvmOps;

/* The table that calls the kernel.  Any thread. */
VMM_EXPORT const VmmKvmOps *vmm_kvm_default_ops(void);

/* ---- VMs ------------------------------------------------------------------ */

typedef struct VmmVmOptions {
    size_t size;                /* sizeof(VmmVmOptions), for ABI growth */
    const char *dev_path;       /* NULL: "/dev/kvm" */
    const VmmKvmOps *ops;       /* NULL: vmm_kvm_default_ops() */
    /* Dirty logging backend: 0 = the dirty ring when the kernel has it
     * (KVM_CAP_DIRTY_LOG_RING) else the bitmap; -1 = always the bitmap;
     * > 0 = ring with this many entries per vCPU (a power of two). */
    int dirty_ring_entries;
    /* The signal that kicks this VM's vCPU threads out of KVM_RUN (0:
     * SIGUSR1); VMs may share one.  Signals are the process's: vmmkit
     * installs a no-op handler (SA_RESTART) on the first VM that names the
     * signal, and the application must not use it for anything else.
     * vmm_vm_new fails with -EBUSY if the signal already has another
     * handler, -EINVAL for a fault signal (SEGV, BUS, FPE, ILL, TRAP,
     * ABRT, SYS), SIGKILL/SIGSTOP or one glibc keeps (32, 33).  Only vCPU
     * threads unblock it; kicks go to one thread (tgkill). */
    int kick_signal;
} VmmVmOptions;

/*
 * Open /dev/kvm, check the API version (12) and the capabilities vmmkit
 * relies on (USER_MEMORY, IMMEDIATE_EXIT, IOEVENTFD, IRQFD, SET_TSS_ADDR,
 * EXT_CPUID, ...), create the VM (x86: with its TSS and identity-map
 * addresses set).  A missing capability fails with -EOPNOTSUPP and an error
 * message naming it (vmm_set_log_handler).  Any thread; the caller's thread
 * becomes the VM's main loop for the debug checks.
 */
VMM_EXPORT VmmVm *vmm_vm_new(const VmmVmOptions *opts, int *errp);

/* Stop and join every vCPU thread, then close everything.  Main loop. */
VMM_EXPORT void vmm_vm_free(VmmVm *vm);

/* The VM fd (owned by the VM) and its gate.  Any thread. */
VMM_EXPORT int vmm_vm_fd(VmmVm *vm);
VMM_EXPORT VmmAccelGate *vmm_vm_gate(VmmVm *vm);

/* KVM_CHECK_EXTENSION on the VM: the capability's value (0 = absent) or a
 * negative errno.  Any thread. */
VMM_EXPORT int vmm_vm_check_extension(VmmVm *vm, long cap);

/* An ioctl on the VM fd, bracketed by the gate: the escape hatch for what
 * this header lacks.  Returns >= 0 or -errno.  Any thread. */
VMM_EXPORT int vmm_vm_ioctl(VmmVm *vm, unsigned long request, void *arg);
/* The same on /dev/kvm (KVM_GET_SUPPORTED_CPUID, KVM_GET_MSR_INDEX_LIST...). */
VMM_EXPORT int vmm_kvm_ioctl(VmmVm *vm, unsigned long request, void *arg);

/*
 * KVM_GET_SUPPORTED_CPUID: a malloc'ed table the caller frees with free(),
 * or NULL with *errp.  Any thread.
 */
VMM_EXPORT struct kvm_cpuid2 *vmm_vm_get_supported_cpuid(VmmVm *vm, int *errp);

/* ---- What the KVM in front of the library can do ------------------------- */

/*
 * A /dev/kvm that opens is not always a full KVM.  kvm_intel and kvm_amd run
 * guests on the CPU's virtualization extensions; kvm_pvm (a paging-based
 * KVM for CPUs without VMX/SVM) runs only guest kernels built for it at
 * speed and takes a stock kernel through KVM's instruction emulator, which
 * is about a thousand times slower and stops at instructions it cannot
 * emulate.  vmm_kvm_probe() finds out by running a small 64-bit guest.
 */
typedef enum VmmKvmKind {
    VMM_KVM_KIND_NONE = 0,      /* no usable device (the reason says why) */
    VMM_KVM_KIND_INTEL,         /* kvm_intel: VMX */
    VMM_KVM_KIND_AMD,           /* kvm_amd: SVM */
    VMM_KVM_KIND_PVM,           /* kvm_pvm: paging-based, no VMX/SVM */
    VMM_KVM_KIND_OTHER,         /* a KVM none of the above names */
} VmmKvmKind;

/* The probe's checks (bits of VmmKvmInfo.checked and .passed). */
#define VMM_KVM_CHECK_LONG_MODE  (1u << 0)  /* 64-bit code with paging runs */
#define VMM_KVM_CHECK_SPEED      (1u << 1)  /* a tight loop runs at least at
                                             * VMM_KVM_MIN_INSNS_PER_SEC */
#define VMM_KVM_CHECK_CMPXCHG16B (1u << 2)  /* lock cmpxchg16b (if in CPUID) */
#define VMM_KVM_CHECK_XSAVE      (1u << 3)  /* xsetbv, xsave, xrstor (if in CPUID) */
#define VMM_KVM_CHECK_INT3       (1u << 4)  /* int3 through a 64-bit IDT, iretq */
#define VMM_KVM_CHECK_TSC_WRITE  (1u << 5)  /* KVM_SET_MSRS of IA32_TSC sets the
                                             * TSC the guest reads (the library
                                             * writes it at reset and restore) */
/* What a stock x86-64 Linux kernel needs to boot at hardware speed. */
#define VMM_KVM_CHECKS_STOCK (VMM_KVM_CHECK_LONG_MODE | VMM_KVM_CHECK_SPEED | \
                              VMM_KVM_CHECK_CMPXCHG16B | VMM_KVM_CHECK_XSAVE | \
                              VMM_KVM_CHECK_INT3)
/* The loop's threshold: hardware runs it at 10^9 instructions a second and
 * more (so does a KVM nested under software emulation); an instruction
 * emulator at about 10^6. */
#define VMM_KVM_MIN_INSNS_PER_SEC 10000000.0

typedef struct VmmKvmInfo {
    size_t size;                /* sizeof(VmmKvmInfo), set by the caller */
    VmmKvmKind kind;
    char module[16];            /* the kernel module: "kvm_amd", ... or "" */
    int api_version;            /* KVM_GET_API_VERSION; 0: not opened */
    uint32_t checked;           /* VMM_KVM_CHECK_* that were tried */
    uint32_t passed;            /* ... and held */
    /* True when every check of VMM_KVM_CHECKS_STOCK that was tried passed
     * (long mode and the speed check are always tried): a stock kernel
     * runs.  TSC_WRITE is reported beside it, not part of it. */
    bool full;
    double insns_per_sec;       /* the loop's measured rate; 0: not measured */
    char reason[200];           /* why not full, one sentence; "" when full */
} VmmKvmInfo;

/*
 * Find out what the KVM at @opts->dev_path (NULL @opts: /dev/kvm, the
 * kernel's ops) is and can do: which module provides it (from sysfs), then
 * a probe VM with one vCPU runs each check as its own short 64-bit guest
 * (about 10 ms on hardware; the speed check stops a loop that outlasts
 * 250 ms).  Fills *@out and returns 0 when the device opened, whatever the
 * checks found; -EINVAL for a NULL @out or @out->size smaller than this
 * structure; else the errno of opening it or of creating the VM, with kind
 * VMM_KVM_KIND_NONE and the reason filled in.  Creates and frees a VM (its
 * kick signal from @opts, as vmm_vm_new).  Any thread but a vCPU thread.
 */
VMM_EXPORT int vmm_kvm_probe(const VmmVmOptions *opts, VmmKvmInfo *out);

/*
 * vmm_kvm_probe() with its verdict kept in a file under @dir (created, with
 * missing parents, 0755; vmmkit-run uses /run/vmmkit), so that later calls
 * on the same host skip the probe VM.  The file is used only when its key matches what
 * the host shows now: the boot (/proc/sys/kernel/random/boot_id), the
 * device's path and st_rdev, the KVM module and the contents of every
 * parameter of it and of kvm (/sys/module/MODULE/parameters/), and the
 * library's probe version; and only when it is a regular file owned by root
 * or the caller's effective uid and not writable by group or others, parses
 * strictly and is no larger than 64 KiB.  Anything else means the probe
 * runs.  Only a full verdict from a probe that ran every check is stored
 * (a not-full one may come from a loaded host and is probed each time),
 * written 0644 through a temporary file renamed into place, so concurrent
 * callers leave one whole file.  No cache (the probe runs, nothing is
 * written) when @dir is NULL or "", cannot be written, the device is not a
 * character device, or a key cannot be read (e.g. a parameter the caller
 * may not read).  Returns 1 when *@out came from the file, else what
 * vmm_kvm_probe() returns.  Any thread but a vCPU thread; concurrent calls
 * are safe.
 */
VMM_EXPORT int vmm_kvm_probe_cached(const VmmVmOptions *opts, const char *dir, VmmKvmInfo *out);

/* "none", "kvm_intel", "kvm_amd", "kvm_pvm", "other"; "unknown" for a value
 * outside the enum.  Any thread. */
VMM_EXPORT const char *vmm_kvm_kind_name(VmmKvmKind kind);
/* "long-mode", "speed", "cmpxchg16b", "xsave", "int3", "tsc-write" for one
 * VMM_KVM_CHECK_* bit; "unknown" otherwise.  Any thread. */
VMM_EXPORT const char *vmm_kvm_check_name(uint32_t check);

/* ---- Why a VM ended -------------------------------------------------------- */

typedef enum VmmVmEndKind {
    VMM_VM_RUNNING = 0,         /* not ended */
    VMM_VM_END_REQUESTED,       /* vmm_vm_request_end(); code = its code */
    VMM_VM_END_SHUTDOWN,        /* KVM_EXIT_SHUTDOWN (x86: triple fault) */
    VMM_VM_END_SYSTEM_EVENT,    /* KVM_EXIT_SYSTEM_EVENT; code = type */
    VMM_VM_END_INTERNAL_ERROR,  /* KVM_EXIT_INTERNAL_ERROR; code = suberror */
    VMM_VM_END_FAIL_ENTRY,      /* KVM_EXIT_FAIL_ENTRY; code = hw reason */
    VMM_VM_END_UNHANDLED_EXIT,  /* an exit nobody handles; code = reason */
    VMM_VM_END_ERROR,           /* an ioctl failed; error = -errno */
    VMM_VM_END_HANDLER,         /* an exit handler returned VMM_EXIT_END_VM
                                 * without vmm_vm_request_end(); exit_reason
                                 * names the exit, code/data are that exit's
                                 * as above (other exits: code = reason) */
} VmmVmEndKind;

/*
 * Names for messages.  vmm_exit_reason_name(KVM_EXIT_HLT) is "hlt",
 * vmm_exit_reason_name(KVM_EXIT_IO) is "io" (the KVM_EXIT_* name in lower
 * case, '_' as '-'); vmm_vm_end_kind_name(VMM_VM_END_SHUTDOWN) is
 * "shutdown".  A value these functions do not know gives "unknown".  The
 * strings are static.  Any thread.
 */
VMM_EXPORT const char *vmm_exit_reason_name(uint32_t exit_reason);
VMM_EXPORT const char *vmm_vm_end_kind_name(VmmVmEndKind kind);

typedef struct VmmVmExit {
    VmmVmEndKind kind;
    uint32_t vcpu_id;           /* the vCPU that reported it */
    uint32_t exit_reason;       /* KVM_EXIT_* of that vCPU's last exit */
    int error;                  /* VMM_VM_END_ERROR: -errno */
    uint64_t code;
    uint32_t ndata;             /* valid entries of data[] */
    uint64_t data[16];          /* exit data (internal error, system event) */
    uint64_t rip;               /* guest RIP at the exit, when known */
} VmmVmExit;

/* End the VM: every vCPU stops (pause), vmm_vm_wait() returns.  The first
 * end wins; later ones are ignored.  Any thread, vCPU threads included
 * (does not wait). */
VMM_EXPORT void vmm_vm_request_end(VmmVm *vm, uint64_t code);

/*
 * Wait until the VM ends, then pause every vCPU and copy the report to
 * *@out (may be NULL).  @timeout_ns < 0 waits forever.  Returns 0, or
 * -ETIMEDOUT.  Not from a vCPU thread (-EDEADLK).
 */
VMM_EXPORT int vmm_vm_wait(VmmVm *vm, int64_t timeout_ns, VmmVmExit *out);

/* Forget the end report so the VM may be started again (after a reset).
 * Main loop, with the vCPUs paused. */
VMM_EXPORT void vmm_vm_clear_end(VmmVm *vm);

/* ---- Running ------------------------------------------------------------- */

/* Start (or resume) every vCPU.  Main loop. */
VMM_EXPORT int vmm_vm_start(VmmVm *vm);
/*
 * Pause every vCPU and return once all sit outside KVM_RUN with no pending
 * PIO/MMIO (KVM_RUN is re-entered with immediate_exit to complete it).
 * Not from a vCPU thread (-EDEADLK).  Main loop.
 */
VMM_EXPORT int vmm_vm_pause(VmmVm *vm);
/* Same as vmm_vm_start(). */
VMM_EXPORT int vmm_vm_resume(VmmVm *vm);
/*
 * vmm_vm_start(), and @fn(@opaque, true) called once by the first vCPU
 * thread about to enter KVM_RUN, just before it does (so the caller can
 * tell a peer "the guest runs" without waiting for the thread to be
 * scheduled); @fn(@opaque, false) from vmm_vm_free() if no vCPU got
 * there.  @fn must not block long nor call back into the VM's run
 * control.  -EINVAL (NULL @vm or @fn), -EBUSY (a call still pending).
 * Main loop.
 */
typedef void VmmVmStartFunc(void *opaque, bool ran);
VMM_EXPORT int vmm_vm_start_notify(VmmVm *vm, VmmVmStartFunc *fn, void *opaque);

/* ---- Memory slots ----------------------------------------------------------- */

#define VMM_SLOT_READONLY   (1u << 0)   /* guest writes exit as MMIO */
#define VMM_SLOT_LOG_DIRTY  (1u << 1)   /* track dirty pages */

typedef struct VmmMemSlotDesc {
    uint64_t gpa;
    uint64_t size;          /* page multiple */
    void *host;             /* page aligned; must stay mapped while used */
    uint32_t flags;         /* VMM_SLOT_* */
} VmmMemSlotDesc;

/*
 * Map guest RAM [gpa, gpa+size) to @host.  -EEXIST if it overlaps a slot,
 * -EINVAL for unaligned or empty ranges, -ENOSPC without a free slot.
 * Main loop.
 */
VMM_EXPORT int vmm_vm_map_memory(VmmVm *vm, uint64_t gpa, uint64_t size,
                                 void *host, uint32_t flags);
/* Remove the slot that starts at @gpa (-ENOENT if none).  Main loop. */
VMM_EXPORT int vmm_vm_unmap_memory(VmmVm *vm, uint64_t gpa);

/*
 * One atomic memory update: remove the slots starting at @del[i].gpa, then
 * add @add[]. When an added range overlaps a removed one (resize, split,
 * a flag change KVM cannot make in place), vCPU and VM ioctls are
 * inhibited for the update, so no vCPU runs while the range is unmapped.
 * On error the old layout is restored where possible.  Main loop.
 */
VMM_EXPORT int vmm_vm_update_memory(VmmVm *vm, const VmmMemSlotDesc *del,
                                    size_t ndel, const VmmMemSlotDesc *add,
                                    size_t nadd);
/* Resize the slot starting at @gpa in place (same host pointer); atomic
 * for the guest.  Main loop. */
VMM_EXPORT int vmm_vm_resize_memory(VmmVm *vm, uint64_t gpa, uint64_t new_size);
/* Change a slot's flags (read-only: atomic delete + add; dirty logging: in
 * place).  Main loop. */
VMM_EXPORT int vmm_vm_set_memory_flags(VmmVm *vm, uint64_t gpa, uint32_t flags);

/* True if dirty logging uses the dirty ring (false: the bitmap).  Any thread. */
VMM_EXPORT bool vmm_vm_dirty_ring_enabled(VmmVm *vm);
/*
 * Collect the pages of the slot starting at @gpa dirtied since logging
 * started or since the last call, into @bitmap (bit i = page i, 4 KiB
 * pages, @bitmap_bytes >= (size/4096+63)/64*8), and re-arm.  The slot must
 * have VMM_SLOT_LOG_DIRTY.  With the ring, vCPUs are kicked first so that
 * every ring is current.  Main loop.
 */
VMM_EXPORT int vmm_vm_get_dirty_log(VmmVm *vm, uint64_t gpa, uint64_t *bitmap,
                                    size_t bitmap_bytes);

/* ---- PIO and MMIO maps --------------------------------------------------- */

/*
 * A device's callbacks.  @offset is relative to the registered base, @size
 * is 1, 2, 4 or 8.  They run on vCPU threads (several at once), outside
 * any RCU read-side section and outside KVM_RUN; they may (un)register
 * regions, raise interrupts and take their own locks.
 */
typedef struct VmmIoOps {
    uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
    void (*write)(void *opaque, uint64_t offset, uint64_t value, unsigned size);
} VmmIoOps;

/*
 * Register [base, base+len) in the port (@pio) or MMIO space.  -EEXIST if
 * it overlaps a registered range.  Reads of unregistered addresses return
 * all ones, writes are dropped (counted in vmm_vm_unhandled_io()).
 * Main loop or a vCPU thread.
 */
VMM_EXPORT int vmm_vm_register_io(VmmVm *vm, bool pio, uint64_t base, uint64_t len,
                                  const VmmIoOps *ops, void *opaque);
/*
 * Unregister the range starting at @base.  When it returns, no vCPU is
 * inside its callbacks any more (other than the caller itself, when called
 * from one of them): @opaque may be freed.  Main loop or a vCPU thread.
 */
VMM_EXPORT int vmm_vm_unregister_io(VmmVm *vm, bool pio, uint64_t base);
/* Accesses to unregistered ports and MMIO addresses so far.  Any thread. */
VMM_EXPORT uint64_t vmm_vm_unhandled_io(VmmVm *vm);

/*
 * Coalesced MMIO (or PIO with @pio): guest writes to the zone are queued by
 * KVM without an exit and replayed, in order, to the zone's handlers
 * before any other exit is dispatched and before a vCPU pauses.
 * Main loop.
 */
VMM_EXPORT int vmm_vm_add_coalesced_io(VmmVm *vm, bool pio, uint64_t base,
                                       uint32_t len);
VMM_EXPORT int vmm_vm_del_coalesced_io(VmmVm *vm, bool pio, uint64_t base,
                                       uint32_t len);

/* ---- Interrupts ------------------------------------------------------------ */

/* KVM_CREATE_IRQCHIP (PIC + IOAPIC + LAPICs), then KVM_CREATE_PIT2 if
 * @with_pit.  Before creating vCPUs (-EBUSY after).  Main loop. */
VMM_EXPORT int vmm_vm_create_irqchip(VmmVm *vm, bool with_pit);
/* KVM_IRQ_LINE: set GSI @gsi (ISA IRQ 0-15, IOAPIC pins 0-23) to @level.
 * Any thread. */
VMM_EXPORT int vmm_vm_set_irq(VmmVm *vm, uint32_t gsi, bool level);
/* KVM_SIGNAL_MSI.  Any thread. */
VMM_EXPORT int vmm_vm_signal_msi(VmmVm *vm, uint64_t address, uint32_t data);

/*
 * MSI routes (KVM_SET_GSI_ROUTING, keeping the irqchip's default pin
 * routes): returns the new GSI (>= 24) or -errno.  Update or remove with
 * the GSI; an update to the same address/data commits nothing.  The routes
 * need the in-kernel irqchip and KVM_CAP_IRQ_ROUTING (-ENODEV without).
 *
 * Any thread, vCPU threads included: a device model may update the route
 * behind an irqfd from inside the vCPU's MSI-X table write.  The route
 * table has its own lock, taken before the accel gate; the commit waits
 * while the gate is inhibited.  So the one forbidden caller is a thread
 * that holds the gate inhibited (it would wait for a vCPU that waits for
 * it).  When the call returns, the kernel routes the GSI the new way: an
 * irqfd signalled afterwards uses the new address/data.
 */
VMM_EXPORT int vmm_vm_add_msi_route(VmmVm *vm, uint64_t address, uint32_t data);
VMM_EXPORT int vmm_vm_update_msi_route(VmmVm *vm, int gsi, uint64_t address,
                                       uint32_t data);
VMM_EXPORT int vmm_vm_remove_msi_route(VmmVm *vm, int gsi);

/*
 * irqfd: writing the eventfd @fd raises GSI @gsi with no exit and no ioctl
 * (an iothread sets a VmmEventNotifier whose vmm_event_notifier_fd() is
 * @fd).  @resample_fd >= 0 makes it a level interrupt whose EOI writes the
 * resample eventfd.  Any thread, as the routes above.
 */
VMM_EXPORT int vmm_vm_add_irqfd(VmmVm *vm, int fd, uint32_t gsi, int resample_fd);
VMM_EXPORT int vmm_vm_remove_irqfd(VmmVm *vm, int fd, uint32_t gsi);

/* Flags of the ioeventfd calls below. */
#define VMM_IOEVENTFD_PIO        (1u << 0)  /* @addr is a port, else MMIO */
#define VMM_IOEVENTFD_DATAMATCH  (1u << 1)  /* only writes of @data */

/*
 * ioeventfd: a guest write of @len bytes (1, 2, 4, 8; 0 = any, MMIO only)
 * to @addr signals eventfd @fd inside the kernel instead of exiting.
 * @flags: VMM_IOEVENTFD_PIO (a port, else MMIO), VMM_IOEVENTFD_DATAMATCH
 * (only when the written value equals @data).  -EINVAL for a bad length,
 * a port range past 0xffff, DATAMATCH with @len 0 or an unknown flag.
 * Register @fd on an AioContext (vmm_aio_set_fd_handler or an event
 * notifier) to handle it.  Any thread, as the routes above (a transport
 * registers a doorbell from the vCPU thread in which the driver enables
 * its queue).
 */
VMM_EXPORT int vmm_vm_add_ioeventfd(VmmVm *vm, int fd, uint64_t addr, uint32_t len,
                                    uint32_t flags, uint64_t data);
VMM_EXPORT int vmm_vm_remove_ioeventfd(VmmVm *vm, int fd, uint64_t addr, uint32_t len,
                                       uint32_t flags, uint64_t data);

/*
 * The same with AioContext event notifiers: an iothread that sets @n
 * raises the interrupt (no ioctl, no exit); a guest write signals @n, whose
 * handler (vmm_aio_set_event_notifier) runs in the context that watches it.
 * Any thread, as the routes above.
 */
VMM_EXPORT int vmm_vm_add_irqfd_notifier(VmmVm *vm, VmmEventNotifier *n, uint32_t gsi);
VMM_EXPORT int vmm_vm_remove_irqfd_notifier(VmmVm *vm, VmmEventNotifier *n, uint32_t gsi);
VMM_EXPORT int vmm_vm_add_ioeventfd_notifier(VmmVm *vm, VmmEventNotifier *n, uint64_t addr,
                                             uint32_t len, uint32_t flags, uint64_t data);
VMM_EXPORT int vmm_vm_remove_ioeventfd_notifier(VmmVm *vm, VmmEventNotifier *n,
                                                uint64_t addr, uint32_t len, uint32_t flags,
                                                uint64_t data);

/* ---- Exit handlers ---------------------------------------------------------- */

typedef enum VmmExitAction {
    VMM_EXIT_CONTINUE = 0,      /* re-enter the guest */
    VMM_EXIT_PAUSE_VCPU = 1,    /* this vCPU pauses until resumed */
    VMM_EXIT_END_VM = 2,        /* end the VM (the report says why) */
} VmmExitAction;

/* Handles one exit on the vCPU's thread; @run is the vCPU's shared page.
 * Returns a VmmExitAction, or a negative errno that ends the VM with
 * VMM_VM_END_ERROR. */
typedef int VmmExitHandler(VmmVcpu *vcpu, struct kvm_run *run, void *opaque);

/*
 * Handle exit reason @exit_reason (KVM_EXIT_*) with @fn (NULL restores the
 * default).  Not for IO and MMIO (use the maps).  Defaults: HLT waits on
 * the vCPU until it is kicked, then continues; SHUTDOWN, SYSTEM_EVENT,
 * INTERNAL_ERROR, FAIL_ENTRY and unknown exits end the VM with the exit
 * data.  Main loop, before vmm_vm_start() or with the vCPUs paused.
 */
VMM_EXPORT int vmm_vm_set_exit_handler(VmmVm *vm, uint32_t exit_reason,
                                       VmmExitHandler *fn, void *opaque);

/* ---- vCPUs ---------------------------------------------------------------- */

/*
 * Create vCPU @id (KVM_CREATE_VCPU, map its kvm_run page, start its thread,
 * stopped).  @name (copied, may be NULL) names the thread.  Main loop.
 */
VMM_EXPORT VmmVcpu *vmm_vcpu_new(VmmVm *vm, uint32_t id, const char *name,
                                 int *errp);
VMM_EXPORT VmmVcpu *vmm_vm_get_vcpu(VmmVm *vm, uint32_t id);
VMM_EXPORT unsigned vmm_vm_nr_vcpus(VmmVm *vm);
VMM_EXPORT VmmVm *vmm_vcpu_vm(VmmVcpu *vcpu);
VMM_EXPORT uint32_t vmm_vcpu_id(VmmVcpu *vcpu);
VMM_EXPORT int vmm_vcpu_fd(VmmVcpu *vcpu);
/* The vCPU's kvm_run page.  Read it only on the vCPU's thread. */
VMM_EXPORT struct kvm_run *vmm_vcpu_kvm_run(VmmVcpu *vcpu);
/* The vCPU the calling thread runs, or NULL.  Any thread. */
VMM_EXPORT VmmVcpu *vmm_vcpu_current(void);

/*
 * Force the vCPU out of KVM_RUN (immediate_exit + signal) and out of a
 * halt wait.  It re-enters at once unless a pause or an end is pending.
 * Any thread, and async-signal-safe.
 */
VMM_EXPORT void vmm_vcpu_kick(VmmVcpu *vcpu);

/* Pause / resume one vCPU (vmm_vm_pause semantics).  Not from that vCPU's
 * thread (-EDEADLK: use VMM_EXIT_PAUSE_VCPU there).  Main loop. */
VMM_EXPORT int vmm_vcpu_pause(VmmVcpu *vcpu);
VMM_EXPORT int vmm_vcpu_resume(VmmVcpu *vcpu);
/* True while the vCPU is paused or not started.  Any thread. */
VMM_EXPORT bool vmm_vcpu_is_paused(VmmVcpu *vcpu);

/* Run @fn on the vCPU's thread and wait for it (at once if called there).
 * Returns @fn's result.  Any thread but another vCPU of the same VM while
 * holding something that vCPU needs. */
typedef int VmmVcpuWorkFunc(VmmVcpu *vcpu, void *opaque);
VMM_EXPORT int vmm_vcpu_run_on(VmmVcpu *vcpu, VmmVcpuWorkFunc *fn, void *opaque);

/* An ioctl on the vCPU fd, made on the vCPU's thread (vmm_vcpu_run_on)
 * and bracketed by its gate: the escape hatch for what this header lacks
 * (e.g. KVM_KVMCLOCK_CTRL).  >= 0 or -errno; -EINVAL for a NULL @vcpu.
 * Any thread but another vCPU's, as vmm_vcpu_run_on. */
VMM_EXPORT int vmm_vcpu_ioctl(VmmVcpu *vcpu, unsigned long request, void *arg);

/* Counters for tests and tuning.  Any thread (snapshots). */
typedef struct VmmVcpuStats {
    uint64_t runs;              /* KVM_RUN calls */
    uint64_t exits_io, exits_mmio, exits_hlt, exits_intr, exits_other;
    uint64_t kicks;
    uint64_t state_puts[4];     /* writebacks per level (index = level) */
    uint64_t state_gets;
} VmmVcpuStats;
VMM_EXPORT void vmm_vcpu_get_stats(VmmVcpu *vcpu, VmmVcpuStats *out);

/* ---- vCPU state -------------------------------------------------------------- */

/*
 * The writeback levels (as QEMU's kvm_put_state):
 *   RUNTIME  what the vCPU itself changes while running: general and
 *            special registers, FPU/XSAVE, XCRs, debug registers, vCPU
 *            events (without NMI-pending/SIPI), runtime MSRs;
 *   RESET    RUNTIME + what a reset changes: MP state, LAPIC, events with
 *            NMI pending and SIPI vector, reset-level MSRs (MTRRs, PAT,
 *            KVM paravirt MSRs);
 *   FULL     RESET + what only initialization or an incoming migration
 *            sets: TSC, TSC_ADJUST, feature control and the other MSRs
 *            marked full-level.
 */
typedef enum VmmStateLevel {
    VMM_STATE_RUNTIME = 1,
    VMM_STATE_RESET = 2,
    VMM_STATE_FULL = 3,
} VmmStateLevel;

/* Maximum MSRs a vCPU's cache holds. */
#define VMM_VCPU_MAX_MSRS 64

/* Room for the XSAVE area in VmmVcpuState: the legacy 4 KiB plus the
 * dynamically sized components (AMX tiles: about 11 KiB in all). */
#define VMM_XSAVE_MAX 16384

/* The whole architectural state of an x86 vCPU (a snapshot). */
typedef struct VmmVcpuState {
    size_t size;                    /* sizeof(VmmVcpuState) */
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    /* The XSAVE area in KVM's (standard, uncompacted) format, valid if
     * has_xsave (else fpu is): xsave_size bytes, as KVM_CHECK_EXTENSION
     * (KVM_CAP_XSAVE2) reports them (KVM_GET_XSAVE2), else the legacy 4096
     * (KVM_GET_XSAVE).  A VM whose size would exceed VMM_XSAVE_MAX keeps
     * the legacy 4096 and says so in the log.  vmm_vcpu_set_state accepts
     * a snapshot whose xsave_size is at most the VM's (the rest zero). */
    uint32_t xsave_size;
    uint32_t xsave[VMM_XSAVE_MAX / 4];
    struct kvm_fpu fpu;
    struct kvm_xcrs xcrs;
    struct kvm_debugregs debugregs;
    struct kvm_lapic_state lapic;   /* valid if has_lapic */
    struct kvm_vcpu_events events;
    struct kvm_mp_state mp_state;
    uint32_t nmsrs;
    struct kvm_msr_entry msrs[VMM_VCPU_MAX_MSRS];
    bool has_xsave, has_xcrs, has_lapic;
} VmmVcpuState;

/*
 * synchronize_state: pull the state from KVM into the cache unless the
 * cache is already authoritative ("dirty"); afterwards the cache is dirty
 * and will be written back at the RUNTIME level before the next KVM_RUN.
 * post_reset / post_init: write the cache back now at the RESET / FULL
 * level and mark it clean.  pre_loadvm: mark the cache dirty without
 * reading KVM (a snapshot is about to overwrite it).
 * Any thread (they run on the vCPU's thread).
 */
VMM_EXPORT int vmm_vcpu_synchronize_state(VmmVcpu *vcpu);
VMM_EXPORT int vmm_vcpu_synchronize_post_reset(VmmVcpu *vcpu);
VMM_EXPORT int vmm_vcpu_synchronize_post_init(VmmVcpu *vcpu);
VMM_EXPORT int vmm_vcpu_synchronize_pre_loadvm(VmmVcpu *vcpu);

/* Accessors: synchronize, then copy from / into the cache (setters leave
 * it dirty: written back before the next KVM_RUN, at RUNTIME level unless
 * a post_reset/post_init comes first).  Any thread. */
VMM_EXPORT int vmm_vcpu_get_regs(VmmVcpu *vcpu, struct kvm_regs *out);
VMM_EXPORT int vmm_vcpu_set_regs(VmmVcpu *vcpu, const struct kvm_regs *in);
VMM_EXPORT int vmm_vcpu_get_sregs(VmmVcpu *vcpu, struct kvm_sregs *out);
VMM_EXPORT int vmm_vcpu_set_sregs(VmmVcpu *vcpu, const struct kvm_sregs *in);
VMM_EXPORT int vmm_vcpu_get_fpu(VmmVcpu *vcpu, struct kvm_fpu *out);
VMM_EXPORT int vmm_vcpu_set_fpu(VmmVcpu *vcpu, const struct kvm_fpu *in);
VMM_EXPORT int vmm_vcpu_get_lapic(VmmVcpu *vcpu, struct kvm_lapic_state *out);
VMM_EXPORT int vmm_vcpu_set_lapic(VmmVcpu *vcpu, const struct kvm_lapic_state *in);
VMM_EXPORT int vmm_vcpu_get_mp_state(VmmVcpu *vcpu, uint32_t *out);
VMM_EXPORT int vmm_vcpu_set_mp_state(VmmVcpu *vcpu, uint32_t mp_state);
/* MSRs: get reads the cached value of @index (-ENOENT if not tracked);
 * set adds the MSR to the cache if needed.  The level an MSR is written at
 * comes from a built-in table (unknown MSRs: RUNTIME). */
VMM_EXPORT int vmm_vcpu_get_msr(VmmVcpu *vcpu, uint32_t index, uint64_t *out);
VMM_EXPORT int vmm_vcpu_set_msr(VmmVcpu *vcpu, uint32_t index, uint64_t value);
/* The level vmmkit writes MSR @index at.  Any thread. */
VMM_EXPORT VmmStateLevel vmm_msr_level(uint32_t index);

/* KVM_SET_CPUID2 (not cached: KVM keeps it).  Before the vCPU first runs.
 * Any thread. */
VMM_EXPORT int vmm_vcpu_set_cpuid(VmmVcpu *vcpu, const struct kvm_cpuid2 *cpuid);

/* Snapshot / restore the whole state.  get: synchronize + copy the cache.
 * set: pre_loadvm, copy into the cache, then write it at FULL level.  Use
 * with the vCPU paused.  Any thread. */
VMM_EXPORT int vmm_vcpu_get_state(VmmVcpu *vcpu, VmmVcpuState *out);
VMM_EXPORT int vmm_vcpu_set_state(VmmVcpu *vcpu, const VmmVcpuState *in);

VMM_END_DECLS

#endif /* VMMKIT_KVM_H */
