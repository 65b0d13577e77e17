/* SPDX-License-Identifier: MIT */
/*
 * virtio-net guest buffers (virtio 1.x, 5.1.6): transmit chains are checked
 * before the tap sees them, received frames are copied into the guest's
 * receive buffers.  Every length comes from the guest and is checked; the
 * iovecs themselves were bounds-checked by the virtqueue (vmm_dma_map).
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/virtio-internal.h"
#include "virtio/virtio-net-buf.h"

/* Receive buffers one frame may take with mergeable buffers. */
#define VNET_MAX_MRG 256

const char *vnet_tx_check(const VmmVirtqElem *e)
{
    if (e->in_num) {
        return "virtio-net transmit chain with a device-writable buffer";
    }
    if (e->out_len < VNET_HDR_LEN) {
        return "virtio-net transmit chain shorter than the virtio-net header";
    }
    return NULL;
}

/* The reason a receive buffer is malformed, or NULL. */
static const char *rx_check(const VmmVirtqElem *e)
{
    if (e->out_num) {
        return "virtio-net receive buffer with a device-readable part";
    }
    if (e->in_len < VNET_HDR_LEN) {
        return "virtio-net receive buffer shorter than the virtio-net header";
    }
    return NULL;
}

/* Copy up to @len bytes of @src into @e's writable iovecs; the count. */
static size_t rx_copy(const VmmVirtqElem *e, const uint8_t *src, size_t len)
{
    size_t done = 0;

    for (unsigned i = e->out_num; i < e->out_num + e->in_num && done < len; i++) {
        size_t c = e->iov[i].iov_len < len - done ? e->iov[i].iov_len : len - done;
        memcpy(e->iov[i].iov_base, src + done, c);
        done += c;
    }
    return done;
}

static void rx_free(VmmVirtqElem **elems, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        free(elems[i]);
    }
}

/* The device is broken: what was popped is dropped, not given back. */
static VnetRx rx_broken(VmmVirtqueue *vq, VmmVirtqElem **elems, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        vmm_virtqueue_detach(vq, elems[i]);
    }
    rx_free(elems, n);
    return VNET_RX_BROKEN;
}

VnetRx vnet_rx_deliver(VmmVirtqueue *vq, uint8_t *pkt, size_t len, bool mrg,
                       unsigned *pushed)
{
    VmmVirtqElem *elems[VNET_MAX_MRG];
    unsigned n = 0;
    uint64_t room = 0;
    int err;

    while (room < len) {
        if (n == (mrg ? VNET_MAX_MRG : 1)) {
            /* Too large for what the driver posts: give the buffers back
             * and drop the frame. */
            vq_unpop(vq, n);
            rx_free(elems, n);
            return VNET_RX_DROP;
        }
        VmmVirtqElem *e = vmm_virtqueue_pop(vq, sizeof(*e), &err);
        if (!e) {
            if (err == -EIO) {
                return rx_broken(vq, elems, n);
            }
            vq_unpop(vq, n);
            rx_free(elems, n);
            return err == -ENOMEM ? VNET_RX_NOMEM : VNET_RX_NOBUF;
        }
        elems[n++] = e;
        const char *why = rx_check(e);
        if (why) {
            vmm_virtio_set_needs_reset(vq->vdev, why);
            return rx_broken(vq, elems, n);
        }
        room += e->in_len;
    }
    uint16_t nb = htole16((uint16_t)n);
    memcpy(pkt + VNET_HDR_NUM_BUFFERS, &nb, sizeof(nb));
    size_t off = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t c = rx_copy(elems[i], pkt + off, len - off);
        off += c;
        vmm_virtqueue_push(vq, elems[i], (uint32_t)c);
        free(elems[i]);
    }
    *pushed += n;
    return VNET_RX_DONE;
}
