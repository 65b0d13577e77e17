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
 * Output: each transmit buffer is copied into a host buffer of 64 KiB
 * and written to @out_fd in the device's context, never blocking it (the
 * fd may be blocking: it is written after poll(2) says it takes data, at
 * most PIPE_BUF bytes at a time - a pipe, socket or file then never
 * blocks; a terminal with less room than that may hold the context up
 * briefly).  While the fd is full the guest's transmit buffers wait on the
 * ring (nothing stays in flight: a pause or reset does not wait for the
 * reader); a single buffer larger than 64 KiB loses its end if the fd is
 * full meanwhile (logged once).  -1 discards.  A write error ends the
 * output (logged once); a pipe whose reader went away is such an error
 * (EPIPE), never a SIGPIPE.  The fd's file flags are left alone.
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
 * the caller's (not closed; they may be the same fd, e.g. a socket); -1
 * for none.  The fds' handlers and the queues must share @ctx: on a
 * machine use vmm_machine_add_console(), or vmm_machine_add_virtio() with
 * @ctx as the options' context.  NULL with *errp = -EINVAL (@mem or @ctx
 * NULL, an fd below -1) or -ENOMEM.  Main loop.
 */
VMM_EXPORT VmmVirtioConsole *vmm_virtio_console_new(VmmGuestMemory *mem, VmmAioContext *ctx,
                                                    int in_fd, int out_fd, int *errp);
/* Stop watching the fds (waits for @ctx's thread, which must still run),
 * write what the output takes at once, drop the rest, and free.  The
 * device must be idle or freshly reset.  NULL: nothing.  Main loop. */
VMM_EXPORT void vmm_virtio_console_free(VmmVirtioConsole *con);
/* The virtio device to put behind a transport.  Any thread. */
VMM_EXPORT VmmVirtioDevice *vmm_virtio_console_get_virtio(VmmVirtioConsole *con);

VMM_END_DECLS

#endif /* VMMKIT_VIRTIO_CONSOLE_H */
