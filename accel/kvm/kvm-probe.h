/* SPDX-License-Identifier: MIT */
/*
 * Internal: the probe guest's layout (probe-guest.S, kvm-probe.c).  Only
 * preprocessor definitions before the C part: the assembly includes it.
 *
 * Guest physical memory (PROBE_RAM_SIZE bytes of RAM at 0):
 *   0x1000 code          0x2000 IDT        0x3000 GDT
 *   0x4000 PML4          0x5000 PDPT       0x6000 PD (one 2 MiB page)
 *   0x7000 data          0x8000 XSAVE area 0xf000 top of the stack
 */
#ifndef VMM_ACCEL_KVM_PROBE_H
#define VMM_ACCEL_KVM_PROBE_H

#define PROBE_RAM_SIZE      0x10000
#define PROBE_CODE_GPA      0x1000
#define PROBE_IDT_GPA       0x2000
#define PROBE_GDT_GPA       0x3000
#define PROBE_PML4_GPA      0x4000
#define PROBE_DATA_GPA      0x7000      /* cmpxchg16b target, 16 bytes */
#define PROBE_TSC_GPA       0x7010      /* 8 bytes: the guest's rdtsc */
#define PROBE_INT3_FLAG_GPA 0x7020      /* 1 byte: set by the int3 handler */
#define PROBE_XSAVE_GPA     0x8000
#define PROBE_STACK_GPA     0xf000
#define PROBE_PORT          0xf0        /* a byte written here ends the run */

/* Result bytes: one per check, so that a run cannot pass for another. */
#define PROBE_OK_LONG       0x11
#define PROBE_OK_LOOP       0x12
#define PROBE_OK_CX16       0x13
#define PROBE_OK_XSAVE      0x14
#define PROBE_OK_INT3       0x15
#define PROBE_OK_TSC        0x16
#define PROBE_BAD           0x7f        /* ran, but computed the wrong thing */

/* The timed loop: 2^19 iterations of dec+jnz, about a million
 * instructions: well under a millisecond on hardware, about 10 ms in a KVM
 * nested under TCG, and more than the 250 ms budget under an instruction
 * emulator (which the probe then stops and times by what is left in rcx).
 * Short, because every probe pays it: vmmkit-run probes before it boots. */
#define PROBE_LOOP_ITERS    0x80000

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>

#include "vmmkit/kvm.h"

/* The KVM module serving /dev/kvm, from the modules under @module_dir
 * (/sys/module) and the CPU flags in @cpuinfo (/proc/cpuinfo); its name
 * goes to @module ("" for OTHER).  For tests: any directory and file. */
VmmKvmKind kvm_probe_kind(const char *module_dir, const char *cpuinfo, char *module,
                          size_t module_len);

/* Where the probe and its cache read the host's state; tests point these
 * at a fake sysfs and proc. */
typedef struct KvmProbeRoots {
    const char *module_dir;     /* /sys/module */
    const char *cpuinfo;        /* /proc/cpuinfo */
    const char *boot_id;        /* /proc/sys/kernel/random/boot_id */
} KvmProbeRoots;
extern const KvmProbeRoots kvm_probe_host_roots;

/* vmm_kvm_probe() with the module read under @roots (arguments checked). */
int kvm_probe_at(const VmmVmOptions *opts, const KvmProbeRoots *roots, VmmKvmInfo *out);
/* vmm_kvm_probe_cached() with its keys read under @roots. */
int kvm_probe_cached_at(const VmmVmOptions *opts, const char *dir, const KvmProbeRoots *roots,
                        VmmKvmInfo *out);
/* Bumped whenever the probe's checks or what it concludes change: a verdict
 * stored by another version is probed again. */
#define KVM_PROBE_VERSION 1

/* Entry points, in the library's read-only data; each is copied with the
 * whole blob [kvm_probe_guest, kvm_probe_guest_end) to PROBE_CODE_GPA. */
extern const uint8_t kvm_probe_guest[], kvm_probe_guest_end[];
extern const uint8_t kvm_probe_long[], kvm_probe_loop[], kvm_probe_cx16[],
    kvm_probe_xsave[], kvm_probe_int3[], kvm_probe_int3_handler[], kvm_probe_tsc[];

/* The guest address of entry point @p. */
static inline uint64_t kvm_probe_gpa(const uint8_t *p)
{
    return PROBE_CODE_GPA + (uint64_t)(p - kvm_probe_guest);
}
#endif

#endif
