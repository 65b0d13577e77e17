/* SPDX-License-Identifier: MIT */
/* Internal: what the KVM layer needs from the gate beyond the public API. */
#ifndef VMM_ACCEL_INTERNAL_H
#define VMM_ACCEL_INTERNAL_H

#include "vmmkit/accel.h"

/* The slot the calling thread owns, or NULL. */
VmmAccelCpuSlot *vmm_accel_current_slot(void);
/* True if the calling thread is inhibiting @gate. */
bool vmm_accel_is_inhibitor(VmmAccelGate *gate);

#endif
