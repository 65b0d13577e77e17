/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/virtio-console.h - a virtio console (virtio 1.x, 5.3) with one
 * port on the caller's file descriptors: Linux's /dev/hvc0.
 *
 * Input: bytes read from @in_fd go into the buffers the driver offers on
 * the receive queue.  The fd is watched in the device's AioContext only
 * while the driver has buffers waiting (so a full guest does not make the
 * context spin); a read of 0 (end of file) stops the input for good.  The
 * fd is read after poll(2) says it is readable, so it may be blocking.
 * Output: each transmit buffer is written to @out_fd whole, in the
 * device's context (a blocking fd may stall that context while it is
 * full; -1 discards).  A write error drops the buffer and is logged once.
 * No multiport, no console size, no emergency write.  A malformed chain
 * marks the device DEVICE_NEEDS_RESET (the virtio core's rule).  On a
 * machine: vmm_machine_add_console() (vmmkit/machine.h).
 */
#ifndef VMMKIT_VIRTIO_CONSOLE_H
#define VMMKIT_VIRTIO_CONSOLE_H

#include "vmmkit/virtio.h"

VMM_BEGIN_DECLS

typedef struct VmmVirtioConsole VmmVirtioConsole;

/*
 * A virtio-console doing DMA into @mem, its two queues (receive 0,
 * transmit 1) and the input fd's handler in @ctx.  @in_fd and @out_fd stay
 * the caller's (not closed); -1 for none.  NULL with *errp = -EINVAL (@mem
 * or @ctx NULL, an fd below -1) or -ENOMEM.  Main loop.
 */
VMM_EXPORT VmmVirtioConsole *vmm_virtio_console_new(VmmGuestMemory *mem, VmmAioContext *ctx,
                                                    int in_fd, int out_fd, int *errp);
/* Stop watching the input (waits for @ctx's thread) and free.  The device
 * must be idle or freshly reset.  NULL: nothing.  Main loop. */
VMM_EXPORT void vmm_virtio_console_free(VmmVirtioConsole *con);
/* The virtio device to put behind a transport.  Any thread. */
VMM_EXPORT VmmVirtioDevice *vmm_virtio_console_get_virtio(VmmVirtioConsole *con);

VMM_END_DECLS

#endif /* VMMKIT_VIRTIO_CONSOLE_H */
