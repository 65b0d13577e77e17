/* SPDX-License-Identifier: MIT */
/*
 * Internal: virtio-blk request parsing, separate from the I/O so it can be
 * fuzzed on its own.  Everything in a request comes from the guest.
 */
#ifndef VMM_VIRTIO_BLK_REQ_H
#define VMM_VIRTIO_BLK_REQ_H

#include <linux/virtio_blk.h>

#include "vmmkit/virtio.h"

/* Largest data iovec count a request may carry (after trimming). */
#define VBLK_MAX_IOV VMM_VIRTQUEUE_MAX_IOV

typedef struct VblkLimits {
    uint64_t capacity;              /* in 512-byte sectors */
    uint32_t logical_block;         /* bytes, power of two >= 512 */
    uint32_t max_discard_sectors;
    uint32_t max_write_zeroes_sectors;
    bool read_only;
    bool discard, write_zeroes, flush;  /* negotiated */
} VblkLimits;

typedef struct VblkReq {
    uint32_t type;                  /* VIRTIO_BLK_T_* */
    uint64_t sector;
    /* Data buffers: the guest's (writable for IN/GET_ID, readable for
     * OUT), header and status byte trimmed off.  Points into @iov_store. */
    struct iovec *data;
    unsigned data_num;
    uint64_t data_len;
    uint8_t *status;                /* the request's status byte */
    /* DISCARD / WRITE_ZEROES: the single segment, checked. */
    uint64_t seg_sector;
    uint32_t seg_sectors;
    bool seg_unmap;
} VblkReq;

/*
 * Parse @e into @r, using @iov_store (e->out_num + e->in_num entries) for
 * the trimmed data iovecs.  Returns:
 *  - VIRTIO_BLK_S_OK: a valid request to execute;
 *  - VIRTIO_BLK_S_UNSUPP / VIRTIO_BLK_S_IOERR: answer with this status
 *    (r->status is valid) without doing I/O;
 *  - -EIO: so malformed that no status can be written (no header or no
 *    status byte): the device must be marked DEVICE_NEEDS_RESET.
 */
int vblk_parse(const VmmVirtqElem *e, const VblkLimits *lim, struct iovec *iov_store,
               VblkReq *r);

/* Copy up to @len bytes from an iovec array (for headers and segments). */
size_t vblk_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf,
                       size_t len);

#endif
