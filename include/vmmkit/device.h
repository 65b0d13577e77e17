/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/device.h - the device model and its quiesce protocol.
 *
 * A VmmDevice is anything that does DMA into guest memory.  Operations that
 * must not race with the device's own DMA - a change of the DMA map (guest
 * memory added or removed), a device reset, a migration-state change, or a
 * VM-wide pause - are delivered only to a *quiesced* device:
 *
 *  1. The library calls the device's quiesce callback.  It returns 0
 *     (quiesced now) or -EBUSY (quiescing).  While quiescing the device
 *     goes on as normal, DMA included, and finishes in-flight work.
 *  2. With -EBUSY, the device later calls vmm_device_quiesced(dev, 0) from
 *     any thread (see that function for exactly when).  The pending
 *     operations' callbacks (dma_map, reset, migration) and their
 *     completions run inside that call, then the resume callback: when it
 *     returns, the device runs again (unless a pause holds it).  An error
 *     (vmm_device_quiesced(dev, -EIO)) fails the pending operations and the
 *     device stays running.
 *  3. Once quiesced, the device must not touch guest memory from its own
 *     threads.  It may DMA only from inside the callbacks the library
 *     delivers while it is quiesced.  The vmm_device_dma_*() functions check
 *     this: a violation is reported naming the function (debug builds
 *     abort) and fails with -EBUSY.
 *  4. After the operations (and when no pause holds it), the device's
 *     resume callback runs and the device is running again.
 *
 * This follows libvfio-user's protocol (vfu_device_quiesced: once it
 * returns, the queued callbacks ran and the device is unquiesced); unlike it,
 * requests may come from any thread and several may queue up: they are
 * delivered in order, one device quiesce covering all that are queued.
 */
#ifndef VMMKIT_DEVICE_H
#define VMMKIT_DEVICE_H

#include "vmmkit/common.h"
#include "vmmkit/memory.h"

VMM_BEGIN_DECLS

typedef struct VmmDevice VmmDevice;

/* Migration states, in the VFIO migration v2 sense. */
typedef enum VmmMigrationState {
    VMM_MIGRATION_RUNNING = 0,
    VMM_MIGRATION_STOP,
    VMM_MIGRATION_STOP_COPY,
    VMM_MIGRATION_PRE_COPY,
    VMM_MIGRATION_RESUMING,
} VmmMigrationState;

/*
 * The device's callbacks; @opaque is the pointer given to vmm_device_new().
 * They run in whichever thread delivers them (the requester's, or the one
 * calling vmm_device_quiesced()), never two at once for one device, and
 * without library locks held: they may call vmm_device_quiesced() and make
 * new requests.
 */
typedef struct VmmDeviceOps {
    size_t size;                /* sizeof(VmmDeviceOps) */
    /* Required.  0: quiesced; -EBUSY: call vmm_device_quiesced() later;
     * another negative errno: refuse (the pending operations fail). */
    int (*quiesce)(VmmDevice *dev, void *opaque);
    /* Optional.  The device may run again (touch guest memory). */
    void (*resume)(VmmDevice *dev, void *opaque);
    /* Optional.  Guest memory @s was added or removed (quiesced). */
    int (*dma_map)(VmmDevice *dev, void *opaque, const VmmMemorySection *s,
                   bool added);
    /* Optional.  Reset the device (quiesced). */
    int (*reset)(VmmDevice *dev, void *opaque);
    /* Optional.  Enter @state (quiesced). */
    int (*migration)(VmmDevice *dev, void *opaque, VmmMigrationState state);
} VmmDeviceOps;

/* Completion of a request: @ret is the callback's result, or the error the
 * quiesce failed with.  Runs in the delivering thread. */
typedef void VmmDeviceDoneFunc(VmmDevice *dev, int ret, void *opaque);

/* A device named @name (copied), doing DMA into @mem (a reference is
 * taken; may be NULL).  NULL with *errp = -EINVAL (@ops NULL, its size too
 * small, or no quiesce callback) or -ENOMEM.  Main loop. */
VMM_EXPORT VmmDevice *vmm_device_new(const char *name, const VmmDeviceOps *ops,
                                     void *opaque, VmmGuestMemory *mem,
                                     int *errp);
/* Free a device with no request pending and no pause held (-EBUSY
 * otherwise, and nothing is freed; logged, never an abort).  NULL: 0.
 * Main loop. */
VMM_EXPORT int vmm_device_free(VmmDevice *dev);
/* Any thread. */
VMM_EXPORT const char *vmm_device_name(VmmDevice *dev);
/* The device's guest memory (no new reference).  Any thread. */
VMM_EXPORT VmmGuestMemory *vmm_device_guest_memory(VmmDevice *dev);

/*
 * Requests.  Each returns 0 once queued - @done (may be NULL) then runs
 * exactly once, possibly before the function returns - or a negative errno
 * (-EINVAL, -ENOMEM) and @done never runs.  Any thread.
 */
VMM_EXPORT int vmm_device_reset(VmmDevice *dev, VmmDeviceDoneFunc *done,
                                void *opaque);
VMM_EXPORT int vmm_device_dma_map_change(VmmDevice *dev, const VmmMemorySection *s,
                                         bool added, VmmDeviceDoneFunc *done,
                                         void *opaque);
VMM_EXPORT int vmm_device_set_migration_state(VmmDevice *dev, VmmMigrationState st,
                                              VmmDeviceDoneFunc *done,
                                              void *opaque);
/* Quiesce and stay quiesced (done(dev, 0) once quiesced) until a matching
 * vmm_device_unpause().  Pauses nest. */
VMM_EXPORT int vmm_device_pause(VmmDevice *dev, VmmDeviceDoneFunc *done,
                                void *opaque);
/* Drop one pause; -EINVAL if none is held (logged, never an abort).  Any
 * thread. */
VMM_EXPORT int vmm_device_unpause(VmmDevice *dev);

/*
 * The device finished quiescing (@err == 0) or could not (-errno), after
 * its quiesce callback answered (or will answer) -EBUSY.  Any thread, at
 * any time from the moment the quiesce callback was entered, once per
 * -EBUSY:
 *  - From another thread (a device worker), even while the quiesce
 *    callback is still running in the requesting thread: the call waits
 *    until that callback has returned, then delivers the pending
 *    operations (callbacks and completions) and resumes the device in the
 *    calling thread.  When it returns, all of that has happened and the
 *    device may DMA again (unless a pause holds it quiesced, or a request
 *    queued meanwhile started a new quiesce).  So the quiesce callback must
 *    not wait for a thread that calls vmm_device_quiesced().
 *  - From inside the quiesce callback itself (which then returns -EBUSY):
 *    delivery and resume follow the callback's return, in the requesting
 *    thread, before the request function returns.
 * @err > 0 counts as -@err.  Called while not quiescing (twice, or after
 * the callback answered 0) it is reported (debug builds abort).
 */
VMM_EXPORT void vmm_device_quiesced(VmmDevice *dev, int err);

/* True when running with no request queued, none being delivered and no
 * pause held (what vmm_device_free() needs).  Any thread. */
VMM_EXPORT bool vmm_device_is_idle(VmmDevice *dev);

/* True while quiesced (not while quiescing).  Any thread. */
VMM_EXPORT bool vmm_device_is_quiesced(VmmDevice *dev);

/*
 * DMA on behalf of @dev: vmm_dma_read/write/map on its guest memory, plus
 * the quiesce rule (3. above); -EBUSY on violation, -ENODEV without memory.
 * Any thread.
 */
VMM_EXPORT int vmm_device_dma_read(VmmDevice *dev, uint64_t gpa, void *buf,
                                   size_t len);
VMM_EXPORT int vmm_device_dma_write(VmmDevice *dev, uint64_t gpa,
                                    const void *buf, size_t len);
VMM_EXPORT int vmm_device_dma_map(VmmDevice *dev, uint64_t gpa, uint64_t len,
                                  uint32_t flags, struct iovec *iov,
                                  unsigned max_iov);

/* ---- VM-wide quiesce ------------------------------------------------------- */

/*
 * A quiesce group stops a whole VM for a consistent view (snapshot,
 * migration, memory-map change): its vCPU gates are inhibited (no vCPU is
 * in KVM_RUN or can re-enter it, so no new doorbell or MMIO arrives), then
 * its devices are paused through the quiesce protocol, all at once, then
 * its extra stages (e.g. block drain, vmm_block_drain_all_begin) run.
 * vmm_quiesce_group_end() undoes it in reverse order.
 */
typedef struct VmmQuiesceGroup VmmQuiesceGroup;
typedef struct VmmAccelGate VmmAccelGate;

/* An extra stage: begin returns 0 or -errno (the group then unwinds). */
typedef int VmmQuiesceStageBegin(void *opaque);
typedef void VmmQuiesceStageEnd(void *opaque);

/* Main loop. */
VMM_EXPORT VmmQuiesceGroup *vmm_quiesce_group_new(int *errp);
/* The group must not be quiesced.  A device that missed a deadline and has
 * not finished yet keeps the group's memory until it does.  Main loop. */
VMM_EXPORT void vmm_quiesce_group_free(VmmQuiesceGroup *g);
/* Members: 0, -EINVAL (@g, @dev, @gate or @begin NULL), -EBUSY (while
 * quiesced) or -ENOMEM.  Main loop. */
VMM_EXPORT int vmm_quiesce_group_add_device(VmmQuiesceGroup *g, VmmDevice *dev);
VMM_EXPORT int vmm_quiesce_group_add_gate(VmmQuiesceGroup *g, VmmAccelGate *gate);
/* @name is used in error reports (copied). */
VMM_EXPORT int vmm_quiesce_group_add_stage(VmmQuiesceGroup *g, const char *name,
                                           VmmQuiesceStageBegin *begin,
                                           VmmQuiesceStageEnd *end, void *opaque);
/* Add the block layer's drain of every node (vmm_block_drain_all_begin/end)
 * as a stage.  Main loop. */
VMM_EXPORT int vmm_quiesce_group_add_block_drain(VmmQuiesceGroup *g);
/*
 * Quiesce everything; devices get @timeout_ns (< 0: forever) to finish.
 * Returns 0, -EINVAL (@g NULL or already quiesced), or -ETIMEDOUT naming
 * in @who (if not NULL; a static or
 * group-owned string valid until the next call) the first device that did
 * not finish, or a stage's error naming the stage.  On failure everything
 * is resumed (a device that finishes late is unpaused at once).
 * Main loop (it polls the main context while waiting).
 */
VMM_EXPORT int vmm_quiesce_group_begin(VmmQuiesceGroup *g, int64_t timeout_ns,
                                       const char **who);
/* Resume stages, devices and gates, in reverse order.  Main loop. */
VMM_EXPORT void vmm_quiesce_group_end(VmmQuiesceGroup *g);

VMM_END_DECLS

#endif /* VMMKIT_DEVICE_H */
