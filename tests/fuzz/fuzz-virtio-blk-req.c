/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: virtio-blk request parsing on top of the virtqueue.
 * The input is guest memory as in fuzz-virtqueue.c (byte 0: bit 0
 * INDIRECT_DESC, bit 1 read-only disk, bit 2 DISCARD/WRITE_ZEROES
 * negotiated, bit 3 4 KiB logical blocks); each popped request is parsed
 * against a 1 MiB disk and answered the way virtio-blk does.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "fuzz-util.h"
#include "virtio/virtio-blk-req.h"
#include "vmmkit/virtio.h"

static VblkLimits lim;

static void handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    static struct iovec store[VMM_VIRTQUEUE_MAX_IOV];
    VmmVirtqElem *e;
    VblkReq r;
    int err;
    (void)opaque;

    while ((e = vmm_virtqueue_pop(vq, sizeof(*e), &err))) {
        int st = vblk_parse(e, &lim, store, &r);
        if (st < 0) {
            vmm_virtqueue_detach(vq, e);
            vmm_virtio_set_needs_reset(vdev, "bad request");
            free(e);
            break;
        }
        uint32_t len = 1;
        if (st == VIRTIO_BLK_S_OK && (r.type == VIRTIO_BLK_T_IN || r.type == VIRTIO_BLK_T_GET_ID)) {
            uint64_t n = r.type == VIRTIO_BLK_T_GET_ID && r.data_len > 20 ? 20 : r.data_len;
            for (unsigned i = 0; i < r.data_num && n; i++) {
                size_t c = r.data[i].iov_len < n ? r.data[i].iov_len : n;
                memset(r.data[i].iov_base, 0, c);
                n -= c;
                len += (uint32_t)c;
            }
        } else if (st == VIRTIO_BLK_S_OK && r.type == VIRTIO_BLK_T_OUT) {
            for (unsigned i = 0; i < r.data_num; i++) {
                volatile uint8_t s = *((uint8_t *)r.data[i].iov_base + r.data[i].iov_len - 1);
                (void)s;
            }
        }
        *r.status = (uint8_t)st;
        vmm_virtqueue_push(vq, e, len);
        free(e);
    }
    vmm_virtqueue_notify(vq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const VmmVirtioDeviceOps ops = {
        .size = sizeof(VmmVirtioDeviceOps), .device_id = 2,
        .num_queues = 1, .queue_max_size = 16, .handle_queue = handle,
    };
    uint8_t *ram;
    VmmGuestMemory *mem = fuzz_ram(&ram);
    if (size < 1) {
        return 0;
    }
    fuzz_fill(ram, data + 1, size - 1);
    lim = (VblkLimits){
        .capacity = 2048, .logical_block = (data[0] & 8) ? 4096 : 512,
        .max_discard_sectors = 1024, .max_write_zeroes_sectors = 1024,
        .read_only = data[0] & 2, .discard = data[0] & 4, .write_zeroes = data[0] & 4,
        .flush = true,
    };
    VmmVirtioDevice *vdev = vmm_virtio_device_new("fuzz-blk", &ops, NULL, mem, NULL, NULL);
    fuzz_bringup(vdev, fuzz_features(data[0] & 1), 16);
    vmm_virtio_queue_notify(vdev, 0);
    vmm_virtio_device_free(vdev);
    return 0;
}
