/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: virtio-net receive buffers.  The input:
 *   byte 0: bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 MRG_RXBUF
 *   bytes 1-2: the length of the frames to deliver (little endian; the
 *              virtio-net header included, at least 12)
 *   byte 3..: guest memory as in fuzz-virtqueue.c (desc table at 0, avail
 *             ring at 0x1000, used ring at 0x2000, queue size 16).
 * Frames are delivered the way virtio-net does (vnet_rx_deliver, buffers
 * given back when there are too few) until the guest's buffers run out or
 * the device breaks; then one more doorbell tries again.
 */
#include <endian.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "virtio/virtio-net-buf.h"
#include "vmmkit/virtio.h"

#define MAX_FRAME (65536 + 256)

static uint8_t frame[MAX_FRAME];
static size_t frame_len;
static bool mrg;

static void handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    unsigned pushed = 0;
    (void)vdev;
    (void)opaque;

    for (int i = 0; i < 64; i++) {
        VnetRx r = vnet_rx_deliver(vq, frame, frame_len, mrg, &pushed);
        if (r == VNET_RX_NOBUF || r == VNET_RX_BROKEN) {
            break;
        }
    }
    vmm_virtqueue_set_notification(vq, true);
    if (pushed) {
        vmm_virtqueue_notify(vq);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const VmmVirtioDeviceOps ops = {
        .size = sizeof(VmmVirtioDeviceOps), .device_id = 1,
        .num_queues = 1, .queue_max_size = 16, .handle_queue = handle,
    };
    uint8_t *ram;
    VmmGuestMemory *mem = fuzz_ram(&ram);
    if (size < 3) {
        return 0;
    }
    if (frame[1] == 0) {
        for (size_t i = 0; i < MAX_FRAME; i++) {
            frame[i] = (uint8_t)(i * 13);
        }
    }
    uint16_t l;
    memcpy(&l, data + 1, 2);
    frame_len = le16toh(l);
    frame_len = frame_len < VNET_HDR_LEN ? VNET_HDR_LEN : frame_len;
    mrg = data[0] & 4;
    fuzz_fill(ram, data + 3, size - 3);
    VmmVirtioDevice *vdev = vmm_virtio_device_new("fuzz-net-rx", &ops, NULL, mem, NULL, NULL);
    fuzz_bringup(vdev, fuzz_features(data[0]), 16);
    vmm_virtio_queue_notify(vdev, 0);
    vmm_virtio_queue_notify(vdev, 0);
    vmm_virtio_device_free(vdev);
    return 0;
}
