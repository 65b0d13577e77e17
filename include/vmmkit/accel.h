/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/accel.h - the accel-blocker gate.
 *
 * Every ioctl on a VM, a device or a vCPU is bracketed by a begin/end pair
 * on the VM's gate.  The main loop may "inhibit" the gate: after
 * vmm_accel_ioctl_inhibit_begin() returns, no new ioctl has started, every
 * ioctl that was running has reached its end, and every vCPU that sat in
 * KVM_RUN (even in a halted guest) was kicked out.  Bracketed callers that
 * arrive meanwhile block in their begin call until
 * vmm_accel_ioctl_inhibit_end().  This is what makes a memory-slot update
 * whose old and new ranges overlap atomic for the guest.
 *
 * One gate per VM; gates are independent of each other.
 *
 * Cost: the per-vCPU begin/end pair on the vCPU's own thread is a plain
 * counter update and a load (no fence): the inhibitor pays for both sides
 * with membarrier(2) (as liburcu's memb flavour does).  Other threads use a
 * shared counter with one atomic add per call.
 *
 * The KVM layer (vmmkit/kvm.h) brackets its own ioctls; a VMM uses this
 * header directly only for ioctls it issues itself on fds it got from
 * vmmkit (vmm_vm_fd(), vmm_vcpu_fd()), or to build its own accelerator.
 */
#ifndef VMMKIT_ACCEL_H
#define VMMKIT_ACCEL_H

#include "vmmkit/common.h"

VMM_BEGIN_DECLS

/* The gate is a capability for clang's thread-safety analysis: ioctls hold
 * it shared, the inhibitor holds it exclusively. */
typedef struct VMM_CAPABILITY("accel gate") VmmAccelGate VmmAccelGate;
/* A vCPU's slot on a gate: its own counter and its kick function. */
typedef struct VMM_CAPABILITY("accel vcpu slot") VmmAccelCpuSlot VmmAccelCpuSlot;

/*
 * Force the vCPU of a slot out of a blocking vCPU ioctl (KVM_RUN).  Called
 * by the inhibitor's thread, with the gate inhibited; it must not block and
 * must not call into the gate.
 */
typedef void VmmAccelKickFunc(void *opaque);

/* Create a gate.  Any thread. */
VMM_EXPORT VmmAccelGate *vmm_accel_gate_new(int *errp);

/* Free a gate with no slot left and no ioctl in flight (debug builds
 * abort naming what is still there).  Main loop. */
VMM_EXPORT void vmm_accel_gate_free(VmmAccelGate *gate);

/*
 * Register a vCPU slot on @gate.  While any vCPU ioctl bracketed with
 * vmm_accel_cpu_ioctl_begin/end(slot) is in flight, on the owner thread or
 * on any other, vmm_accel_ioctl_inhibit_begin() calls @kick, which must get
 * every thread issuing such an ioctl out of it.  @name is used in
 * diagnostics (copied; may be NULL).  Errors: -EINVAL (@gate or @kick
 * NULL), -EDEADLK (the caller inhibits @gate), -ENOMEM.  Any thread but an
 * inhibitor of @gate.
 */
VMM_EXPORT VmmAccelCpuSlot *vmm_accel_cpu_slot_new(VmmAccelGate *gate,
                                                   VmmAccelKickFunc *kick,
                                                   void *opaque,
                                                   const char *name, int *errp);

/* Unregister and free a slot with no ioctl in flight.  Any thread but an
 * inhibitor of the slot's gate; not while the owner thread is inside
 * vmm_accel_cpu_ioctl_begin/end. */
VMM_EXPORT void vmm_accel_cpu_slot_free(VmmAccelCpuSlot *slot);

/*
 * Make the calling thread the slot's owner (its vCPU thread), or drop the
 * ownership with @bind false.  Binding is an optimisation, not a condition
 * of correctness: only the owner takes the fence-free fast path (a plain
 * counter update); vCPU ioctls on the slot from any other thread take the
 * shared path (two atomic adds) and are kicked all the same.  A thread
 * owns at most one slot, and a thread that owns a slot may not inhibit.
 * Errors: -EINVAL (@slot NULL), -EBUSY (the thread owns another slot, the
 * slot has another owner, or unbinding inside a bracket), -EPERM (unbinding
 * a slot the thread does not own), -EDEADLK (the caller inhibits the
 * slot's gate).  The owning thread.
 */
VMM_EXPORT int vmm_accel_cpu_slot_bind(VmmAccelCpuSlot *slot, bool bind);

/*
 * Bracket a VM or device ioctl.  Blocks while the gate is inhibited by
 * another thread; the inhibiting thread itself passes (it may issue the VM
 * ioctls of the update it makes atomic).  Nests.  Any thread.
 */
VMM_EXPORT void vmm_accel_ioctl_begin(VmmAccelGate *gate)
    VMM_ACQUIRE_SHARED(gate);
VMM_EXPORT void vmm_accel_ioctl_end(VmmAccelGate *gate)
    VMM_RELEASE_SHARED(gate);

/*
 * Bracket a vCPU ioctl, KVM_RUN included.  Blocks while the gate is
 * inhibited.  Nests.  Any thread; fence-free on the slot's owner thread,
 * two atomic adds on any other, and on every thread the inhibitor calls the
 * slot's kick while the ioctl is in flight.  Async-signal-safe on the owner
 * thread when the gate is not inhibited.
 */
VMM_EXPORT void vmm_accel_cpu_ioctl_begin(VmmAccelCpuSlot *slot)
    VMM_ACQUIRE_SHARED(slot);
VMM_EXPORT void vmm_accel_cpu_ioctl_end(VmmAccelCpuSlot *slot)
    VMM_RELEASE_SHARED(slot);

/*
 * Stop all ioctls on @gate: returns once none is in flight and none can
 * start (vCPUs in KVM_RUN are kicked out with their slot's kick function).
 * The caller may then issue VM ioctls itself.  Inhibits of one gate are
 * serialised; the same thread may nest them.  Must not be called from a
 * vCPU thread (a thread owning a slot) or while the caller is itself inside
 * an ioctl bracket of @gate: both would deadlock, and debug builds abort
 * naming the misuse.  Main loop (or one thread that plays its role).
 */
VMM_EXPORT void vmm_accel_ioctl_inhibit_begin(VmmAccelGate *gate)
    VMM_ACQUIRE(gate);
/* Let the blocked ioctls go on.  The thread that called inhibit_begin. */
VMM_EXPORT void vmm_accel_ioctl_inhibit_end(VmmAccelGate *gate)
    VMM_RELEASE(gate);

/* True while @gate is inhibited.  Any thread (a snapshot). */
VMM_EXPORT bool vmm_accel_ioctl_inhibited(VmmAccelGate *gate);

/*
 * Statistics for tests and tuning: number of completed inhibits and whether
 * the fast path relies on membarrier(2) (false: it falls back to a full
 * fence per call because the kernel lacks MEMBARRIER_CMD_PRIVATE_EXPEDITED).
 * Any thread.
 */
VMM_EXPORT uint64_t vmm_accel_gate_inhibit_count(VmmAccelGate *gate);
VMM_EXPORT bool vmm_accel_uses_membarrier(void);

VMM_END_DECLS

#endif /* VMMKIT_ACCEL_H */
