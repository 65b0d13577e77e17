/* SPDX-License-Identifier: MIT */
/* Internal: device-model hooks used by the virtio code. */
#ifndef VMM_DEVICE_INTERNAL_H
#define VMM_DEVICE_INTERNAL_H

#include "vmmkit/device.h"

/*
 * The quiesce rule for DMA done without the vmm_device_dma_*() wrappers
 * (e.g. through pinned virtqueue rings): true if @dev may touch guest
 * memory now; otherwise reports the misuse naming @func and returns false.
 */
bool vmm_device_dma_allowed(VmmDevice *dev, const char *func);

#endif
