/* SPDX-License-Identifier: MIT */
/* Internal: what snapshots (snapshot.c) and migration (migration.c) share. */
#ifndef VMM_MACHINE_SNAPSHOT_INTERNAL_H
#define VMM_MACHINE_SNAPSHOT_INTERNAL_H

#include "machine/machine-internal.h"
#include "machine/snapshot-format.h"

/* The VM-wide record: PIC master, PIC slave, IOAPIC, PIT, clock. */
typedef struct SnapVm {
    uint32_t magic;
    uint32_t reserved;
    struct kvm_irqchip chip[3];
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
} SnapVm;
#define SNAP_VM_MAGIC 0x314d5653u       /* "SVM1" */

/* What waits for vmm_machine_start() in a restored or migrated machine. */
struct MachineRestore {
    SnapConfig cfg;
    struct kvm_clock_data clock;
    uint8_t *dev[SNAP_MAX_DEVICES];
    size_t dev_len[SNAP_MAX_DEVICES];
};

/* A machine's state records, as read from a file or a stream. */
typedef struct Records {
    void *vcpu[VMM_MACHINE_MAX_CPUS];
    void *vm, *serial;
    size_t serial_len;
    MachineRestore *rs;         /* configuration and the devices' records */
} Records;

/* Each record of a paused machine, in order (vCPUs, VM, UART, devices),
 * to @emit (which returns 0 or -errno); fills *@cfg (NULL: the caller has
 * the configuration already).  Main loop. */
typedef int MachineEmitFunc(void *opaque, uint32_t type, uint32_t index, const void *data,
                            size_t len);
int machine_save_records(VmmMachine *m, SnapConfig *cfg, MachineEmitFunc *emit,
                         void *opaque);
/* @m's configuration as a snapshot or stream records it (RAM, vCPUs,
 * devices, record sizes, TSC rate; the XSAVE size comes with the vCPU
 * records).  Main loop. */
void machine_snap_config(VmmMachine *m, SnapConfig *cfg);

/* Every record @rec->rs->cfg needs is there and plausible; else -EINVAL
 * with the reason in @why. */
int machine_records_check(const Records *rec, char *why, size_t why_len);
/* Every vCPU's TSC rate to @khz (KVM_SET_TSC_KHZ where it differs from
 * the host's; 0: leave it): before their state is set.  0, or -EINVAL
 * with the reason in @why when this KVM cannot give that rate. */
int machine_set_tsc_khz(VmmMachine *m, uint32_t khz, char *why, size_t why_len);
/* Give the vCPUs, irqchip, PIT and UART their state; the devices' records
 * and the clock move to m->restore for vmm_machine_start(). */
int machine_restore_state(VmmMachine *m, Records *rec);
void machine_records_free(Records *rec);

/* The stream form of a snapshot (migration.c): the migration stream's
 * hello, every non-zero page, the records and the end mark, with no
 * hand-over, for a pipe or a socket.  machine_snapshot_stream: @m paused.
 * machine_restore_stream: as vmm_machine_restore, RAM copied in.  Main
 * loop. */
int machine_snapshot_stream(VmmMachine *m, int fd);
VmmMachine *machine_restore_stream(const VmmMachineOptions *opts, int fd, int *errp);

#endif
