/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: virtio-net transmit chains.  The input is guest memory
 * as in fuzz-virtqueue.c (byte 0: bit 0 INDIRECT_DESC, bit 1 EVENT_IDX;
 * desc table at 0, avail ring at 0x1000, used ring at 0x2000, queue size
 * 16).  Each popped chain is checked the way virtio-net checks it
 * (vnet_tx_check) and, when good, written to /dev/null as the device writes
 * it to the tap (writev of the guest's buffers); a bad one marks the device
 * broken.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuzz-util.h"
#include "virtio/virtio-net-buf.h"
#include "vmmkit/virtio.h"

static int sink = -1;

static void handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    VmmVirtqElem *e;
    int err;
    (void)opaque;

    while ((e = vmm_virtqueue_pop(vq, sizeof(*e), &err))) {
        const char *why = vnet_tx_check(e);
        if (why) {
            vmm_virtqueue_detach(vq, e);
            free(e);
            vmm_virtio_set_needs_reset(vdev, why);
            break;
        }
        if (writev(sink, e->iov, (int)e->out_num) < 0) {
            abort();        /* /dev/null takes anything well-formed */
        }
        vmm_virtqueue_push(vq, e, 0);
        free(e);
    }
    vmm_virtqueue_notify(vq);
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
    if (sink < 0) {
        sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
    }
    if (size < 1) {
        return 0;
    }
    fuzz_fill(ram, data + 1, size - 1);
    VmmVirtioDevice *vdev = vmm_virtio_device_new("fuzz-net-tx", &ops, NULL, mem, NULL, NULL);
    fuzz_bringup(vdev, fuzz_features(data[0]), 16);
    vmm_virtio_queue_notify(vdev, 0);
    vmm_virtio_device_free(vdev);
    return 0;
}
