/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/vhost-vsock.h - a virtio socket device (AF_VSOCK) whose data path
 * is the kernel's vhost-vsock (/dev/vhost-vsock, module vhost_vsock).
 *
 * The kernel processes the receive and transmit queues in guest memory
 * directly; the device gives it the memory table, the rings, the guest's
 * context ID (CID), and an eventfd per queue each way.  Doorbells reach
 * the kernel through the queue's AioContext (the virtio core's dispatch
 * writes the queue's kick eventfd) and the kernel's interrupts come back
 * through a call eventfd watched there.  The event queue stays with the
 * device (it holds the driver's buffers; no event is sent).
 *
 * The kernel's processing starts when the driver sets DRIVER_OK and stops
 * whenever the device is quiesced (pause, DMA-map change, reset): the
 * ring positions are read back from the kernel and given to it again on
 * resume, so no buffer is lost or processed twice across a pause.
 */
#ifndef VMMKIT_VHOST_VSOCK_H
#define VMMKIT_VHOST_VSOCK_H

#include "vmmkit/virtio.h"

VMM_BEGIN_DECLS

typedef struct VmmVhostVsock VmmVhostVsock;

typedef struct VmmVhostVsockOptions {
    size_t size;                /* sizeof(VmmVhostVsockOptions) */
    const char *name;           /* device name (diagnostics); NULL: "vhost-vsock" */
    uint64_t guest_cid;         /* 3 .. 0xfffffffe, unique on the host */
    const char *vhost_path;     /* NULL: "/dev/vhost-vsock" */
    VmmAioContext *ctx;         /* doorbells and interrupts; NULL: the main loop */
} VmmVhostVsockOptions;

/*
 * A vhost-vsock device for guest CID @opts->guest_cid doing DMA into @mem
 * (the kernel maps every RAM section of @mem, kept current through a
 * memory listener).  NULL with *errp = -EINVAL (@mem or @opts NULL or too
 * small, a CID outside 3 .. 0xfffffffe), -EADDRINUSE (another VM has the
 * CID), -ENOMEM, or the errno of opening the vhost device (-ENOENT without
 * the vhost_vsock module).  Main loop.
 */
VMM_EXPORT VmmVhostVsock *vmm_vhost_vsock_new(VmmGuestMemory *mem,
                                              const VmmVhostVsockOptions *opts,
                                              int *errp);
/* The device must be idle (reset, or never started).  NULL is ignored.
 * Main loop. */
VMM_EXPORT void vmm_vhost_vsock_free(VmmVhostVsock *vs);
/* The virtio device to put behind a transport.  Any thread. */
VMM_EXPORT VmmVirtioDevice *vmm_vhost_vsock_get_virtio(VmmVhostVsock *vs);
/* Whether the kernel is processing the queues now.  Any thread. */
VMM_EXPORT bool vmm_vhost_vsock_is_running(VmmVhostVsock *vs);

VMM_END_DECLS

#endif /* VMMKIT_VHOST_VSOCK_H */
