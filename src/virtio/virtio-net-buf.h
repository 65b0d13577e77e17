/* SPDX-License-Identifier: MIT */
/*
 * Internal: virtio-net's handling of guest buffers, without the tap, so the
 * fuzz targets run the same code as the device.  Queue's context only.
 */
#ifndef VMM_VIRTIO_NET_BUF_H
#define VMM_VIRTIO_NET_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmmkit/virtio.h"

/* struct virtio_net_hdr_v1: the header on every frame once VERSION_1 is
 * negotiated (which the virtio core requires), also the tap's. */
#define VNET_HDR_LEN 12
/* num_buffers' offset in it. */
#define VNET_HDR_NUM_BUFFERS 10

/* The reason a transmit chain is malformed, or NULL. */
const char *vnet_tx_check(const VmmVirtqElem *e);

typedef enum VnetRx {
    VNET_RX_DONE,       /* delivered: *@pushed += elements pushed */
    VNET_RX_NOBUF,      /* not enough guest buffers (nothing kept) */
    VNET_RX_DROP,       /* larger than the guest's buffer: dropped */
    VNET_RX_BROKEN,     /* a malformed buffer: the device needs reset */
    VNET_RX_NOMEM,      /* out of memory (nothing kept) */
} VnetRx;

/*
 * Copy the frame @pkt (@len >= VNET_HDR_LEN bytes, the virtio-net header
 * first; its num_buffers field is overwritten) into receive buffers popped
 * from @vq: one buffer, or with @mrg as many as it takes.
 */
VnetRx vnet_rx_deliver(VmmVirtqueue *vq, uint8_t *pkt, size_t len, bool mrg,
                       unsigned *pushed);

#endif
