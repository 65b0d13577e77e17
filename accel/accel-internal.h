/* SPDX-License-Identifier: MIT */
/* Internal: what the KVM layer needs from the gate beyond the public API. */
#ifndef VMM_ACCEL_INTERNAL_H
#define VMM_ACCEL_INTERNAL_H

#include "vmmkit/accel.h"

/* The per-exit path: grouped by the linker (.text.hot), so an exit touches
 * few code pages (it matters where TLBs are flushed per exit, e.g. under
 * emulated nested virtualization). */
#define VMM_HOT __attribute__((hot))

/* The slot the calling thread owns, or NULL. */
VmmAccelCpuSlot *vmm_accel_current_slot(void);
/* True if the calling thread is inhibiting @gate. */
bool vmm_accel_is_inhibitor(VmmAccelGate *gate);

#endif
