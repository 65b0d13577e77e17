/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk request parsing (virtio 1.x 5.2.6): a 16-byte header in the
 * readable part, the data, and a one-byte status at the very end of the
 * writable part.  Headers and buffers may be split across descriptors any
 * way the guest likes; sector ranges are checked without overflow.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "virtio/virtio-blk-req.h"

size_t vblk_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf,
                       size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < n && done < len; i++) {
        size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        size_t c = l - skip < len - done ? l - skip : len - done;
        memcpy((char *)buf + done, (char *)iov[i].iov_base + skip, c);
        done += c;
        skip = 0;
    }
    return done;
}

/* Copy @src[0..n) into @dst dropping @head bytes at the front and @tail at
 * the back; returns the count of non-empty iovecs. */
static unsigned iov_trim(const struct iovec *src, unsigned n, uint64_t head, uint64_t tail,
                         struct iovec *dst, uint64_t *total)
{
    uint64_t all = 0;
    unsigned out = 0;

    for (unsigned i = 0; i < n; i++) {
        all += src[i].iov_len;
    }
    uint64_t keep = all - head - tail;      /* caller ensures head+tail <= all */
    *total = keep;
    for (unsigned i = 0; i < n && keep; i++) {
        uint64_t l = src[i].iov_len;
        char *b = src[i].iov_base;
        if (head >= l) {
            head -= l;
            continue;
        }
        b += head;
        l -= head;
        head = 0;
        if (l > keep) {
            l = keep;
        }
        dst[out].iov_base = b;
        dst[out].iov_len = l;
        out++;
        keep -= l;
    }
    return out;
}

/* The status byte: the last byte of the last writable iovec with data. */
static uint8_t *find_status(const VmmVirtqElem *e)
{
    for (unsigned i = e->out_num + e->in_num; i > e->out_num; i--) {
        const struct iovec *v = &e->iov[i - 1];
        if (v->iov_len) {
            return (uint8_t *)v->iov_base + v->iov_len - 1;
        }
    }
    return NULL;
}

static bool range_ok(const VblkLimits *lim, uint64_t sector, uint64_t nsect)
{
    uint64_t lb = lim->logical_block / 512;

    if (sector % lb || nsect % lb) {
        return false;
    }
    return sector <= lim->capacity && nsect <= lim->capacity - sector;
}

static int parse_rw(const VblkLimits *lim, VblkReq *r)
{
    if (r->data_len % lim->logical_block) {
        return VIRTIO_BLK_S_IOERR;
    }
    if (!range_ok(lim, r->sector, r->data_len / 512)) {
        return VIRTIO_BLK_S_IOERR;
    }
    if (r->type == VIRTIO_BLK_T_OUT && lim->read_only) {
        return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
}

static int parse_segment(const VblkLimits *lim, VblkReq *r)
{
    struct virtio_blk_discard_write_zeroes seg;
    bool wz = r->type == VIRTIO_BLK_T_WRITE_ZEROES;

    if ((wz && !lim->write_zeroes) || (!wz && !lim->discard)) {
        return VIRTIO_BLK_S_UNSUPP;
    }
    /* One segment, like max_discard_seg = max_write_zeroes_seg = 1. */
    if (r->data_len != sizeof(seg)) {
        return r->data_len % sizeof(seg) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_UNSUPP;
    }
    vblk_iov_to_buf(r->data, r->data_num, 0, &seg, sizeof(seg));
    uint32_t flags = le32toh(seg.flags);
    r->seg_sector = le64toh(seg.sector);
    r->seg_sectors = le32toh(seg.num_sectors);
    r->seg_unmap = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    if (flags & ~(uint32_t)(wz ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0)) {
        return VIRTIO_BLK_S_UNSUPP;
    }
    uint32_t max = wz ? lim->max_write_zeroes_sectors : lim->max_discard_sectors;
    if (r->seg_sectors > max || lim->read_only ||
        !range_ok(lim, r->seg_sector, r->seg_sectors)) {
        return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
}

int vblk_parse(const VmmVirtqElem *e, const VblkLimits *lim, struct iovec *iov_store,
               VblkReq *r)
{
    struct virtio_blk_outhdr hdr;

    memset(r, 0, sizeof(*r));
    r->status = find_status(e);
    if (!r->status || e->out_len < sizeof(hdr)) {
        return -EIO;
    }
    vblk_iov_to_buf(e->iov, e->out_num, 0, &hdr, sizeof(hdr));
    r->type = le32toh(hdr.type);
    r->sector = le64toh(hdr.sector);
    r->data = iov_store;

    switch (r->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_GET_ID:
        /* Data: the writable part minus the status byte; nothing readable
         * may follow the header. */
        if (e->out_len != sizeof(hdr)) {
            return VIRTIO_BLK_S_IOERR;
        }
        r->data_num = iov_trim(e->iov + e->out_num, e->in_num, 0, 1, iov_store, &r->data_len);
        return r->type == VIRTIO_BLK_T_IN ? parse_rw(lim, r) : VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_OUT:
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        if (e->in_len != 1) {       /* only the status byte is writable */
            return VIRTIO_BLK_S_IOERR;
        }
        r->data_num = iov_trim(e->iov, e->out_num, sizeof(hdr), 0, iov_store, &r->data_len);
        return r->type == VIRTIO_BLK_T_OUT ? parse_rw(lim, r) : parse_segment(lim, r);
    case VIRTIO_BLK_T_FLUSH:
        return lim->flush ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_UNSUPP;
    default:
        return VIRTIO_BLK_S_UNSUPP;
    }
}
