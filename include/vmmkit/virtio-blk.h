/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/virtio-blk.h - a virtio block device on a BlockBackend.
 *
 * The device's queues are processed in an AioContext (normally an
 * iothread's, the BlockBackend's), one coroutine per request: read, write,
 * flush, discard, write-zeroes and get-id, on up to 64 queues (VIRTIO_BLK_F_MQ).
 * Malformed requests follow the virtio core's rules (DEVICE_NEEDS_RESET);
 * out-of-range or unsupported ones get VIRTIO_BLK_S_IOERR/UNSUPP.
 *
 * I/O errors follow the disk's error policy: REPORT completes the request
 * with VIRTIO_BLK_S_IOERR; STOP keeps the request, calls on_error (in the
 * main loop) so the VMM can pause the VM, and waits for
 * vmm_virtio_blk_resume_stopped() to retry or fail it.
 */
#ifndef VMMKIT_VIRTIO_BLK_H
#define VMMKIT_VIRTIO_BLK_H

#include "vmmkit/block.h"
#include "vmmkit/virtio.h"

VMM_BEGIN_DECLS

typedef struct VmmVirtioBlk VmmVirtioBlk;

typedef enum VmmBlkErrorPolicy {
    VMM_BLK_ERROR_REPORT = 0,   /* VIRTIO_BLK_S_IOERR to the guest */
    VMM_BLK_ERROR_STOP,         /* hold the request, tell the VMM */
} VmmBlkErrorPolicy;

/* A request hit an I/O error under the STOP policy (@err: -errno, @is_write).
 * Main loop. */
typedef void VmmVirtioBlkErrorFunc(void *opaque, VmmVirtioBlk *vblk, int err,
                                   bool is_write);

typedef struct VmmVirtioBlkOptions {
    size_t size;                /* sizeof(VmmVirtioBlkOptions) */
    const char *name;           /* device name (diagnostics) */
    const char *serial;         /* GET_ID answer, up to 20 bytes; may be NULL */
    unsigned num_queues;        /* 0 = 1; more than 1 offers VIRTIO_BLK_F_MQ */
    uint16_t queue_size;        /* 0 = 256; power of two <= 1024 */
    uint32_t logical_block_size;/* 0 = 512 */
    VmmBlkErrorPolicy read_error, write_error;
    VmmVirtioBlkErrorFunc *on_error;
    void *opaque;
} VmmVirtioBlkOptions;

/*
 * A virtio-blk device on @blk (which must hold a node), doing DMA into
 * @mem; its queues run in @blk's AioContext.  Main loop.
 */
VMM_EXPORT VmmVirtioBlk *vmm_virtio_blk_new(VmmBlockBackend *blk, VmmGuestMemory *mem,
                                            const VmmVirtioBlkOptions *opts, int *errp);
/* The device must be idle (reset, or no request in flight).  Main loop. */
VMM_EXPORT void vmm_virtio_blk_free(VmmVirtioBlk *vblk);
/* The virtio device to put behind a transport.  Any thread. */
VMM_EXPORT VmmVirtioDevice *vmm_virtio_blk_get_virtio(VmmVirtioBlk *vblk);
/* Requests held by the STOP policy.  Any thread. */
VMM_EXPORT unsigned vmm_virtio_blk_stopped_requests(VmmVirtioBlk *vblk);
/* Retry (@retry) or fail with VIRTIO_BLK_S_IOERR the held requests.  Main loop. */
VMM_EXPORT void vmm_virtio_blk_resume_stopped(VmmVirtioBlk *vblk, bool retry);

/*
 * Where a request's time goes inside the VMM (counters since creation):
 * service_ns sums, over completed requests, the time from taking the
 * request off the queue to the end of its I/O, after which its answer goes
 * into the used ring at once and the interrupt follows (to the answer, for
 * a request refused without I/O); io_ns is the part spent in the block
 * layer.  What the
 * guest sees per request, minus service_ns / requests, is the transport:
 * doorbell, iothread wake-up, interrupt delivery.
 */
typedef struct VmmVirtioBlkStats {
    size_t size;                /* sizeof(VmmVirtioBlkStats), set by the caller */
    uint64_t requests;
    uint64_t service_ns;
    uint64_t io_ns;
} VmmVirtioBlkStats;

/* Fill *@out (@out->size says how much).  0 or -EINVAL.  Any thread. */
VMM_EXPORT int vmm_virtio_blk_get_stats(VmmVirtioBlk *vblk, VmmVirtioBlkStats *out);

VMM_END_DECLS

#endif /* VMMKIT_VIRTIO_BLK_H */
