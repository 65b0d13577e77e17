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
bool device_dma_allowed(VmmDevice *dev, const char *func);

/*
 * True while some thread runs @dev's delivery loop.  A request or unpause
 * made meanwhile is finished by that thread, after the caller returns; a
 * main-loop caller that must see the result waits with
 * VMM_AIO_WAIT_WHILE(NULL, device_delivering(dev)) (the loop kicks
 * aio-wait when it stops).  Any thread.
 */
bool device_delivering(VmmDevice *dev);

#endif
