/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the split-virtqueue walker.  The input is guest memory:
 *   byte 0: bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 suppress doorbells
 *           while processing; bits 4-6: log2 of the queue size (1..256)
 *   byte 1..: copied to guest RAM from GPA 0 (desc table at 0, avail ring
 *           at 0x1000, used ring at 0x2000; buffers anywhere).
 * Guest RAM: 64 KiB at 0, a hole, 4 KiB ROM at 0x20000 followed by 4 KiB
 * RAM at 0x21000 (adjacent sections), nothing else.
 * The device pops everything, fills writable buffers, pushes and notifies.
 * Any crash, sanitizer report or misuse abort is a bug.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "vmmkit/virtio.h"

#define RAM_SIZE 0x10000

static VmmGuestMemory *mem;
static uint8_t *ram;

static void quiet(VmmLogLevel l, const char *m, void *o)
{
    (void)l;
    (void)m;
    (void)o;
}

static void init(void)
{
    VmmRamRegionOptions o = { .size = sizeof(o), .length = RAM_SIZE };
    VmmRamRegion *a = vmm_ram_region_new(&o, NULL);
    o.length = 0x1000;
    VmmRamRegion *rom = vmm_ram_region_new(&o, NULL);
    VmmRamRegion *b = vmm_ram_region_new(&o, NULL);

    vmm_set_log_handler(quiet, NULL, VMM_LOG_ERROR);
    mem = vmm_guest_memory_new(NULL);
    vmm_guest_memory_add(mem, 0, a, 0, RAM_SIZE, 0);
    vmm_guest_memory_add(mem, 0x20000, rom, 0, 0x1000, VMM_MEM_READONLY);
    vmm_guest_memory_add(mem, 0x21000, b, 0, 0x1000, 0);
    ram = vmm_ram_region_host(a);
    vmm_ram_region_unref(a);
    vmm_ram_region_unref(rom);
    vmm_ram_region_unref(b);
}

static bool suppress;

static void handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    VmmVirtqElem *e;
    int err;
    (void)vdev;
    (void)opaque;

    do {
        vmm_virtqueue_set_notification(vq, !suppress);
        while ((e = vmm_virtqueue_pop(vq, sizeof(*e), &err))) {
            uint64_t written = 0;
            for (unsigned i = e->out_num; i < e->out_num + e->in_num; i++) {
                memset(e->iov[i].iov_base, 0xa5, e->iov[i].iov_len);
                written += e->iov[i].iov_len;
            }
            for (unsigned i = 0; i < e->out_num; i++) {
                volatile uint8_t sink = *(uint8_t *)e->iov[i].iov_base;
                (void)sink;
            }
            vmm_virtqueue_push(vq, e, written > UINT32_MAX ? UINT32_MAX : (uint32_t)written);
            free(e);
        }
    } while (vmm_virtqueue_set_notification(vq, true));
    vmm_virtqueue_notify(vq);
}

static void irq(void *opaque, VmmVirtioDevice *vdev, int q)
{
    (void)opaque;
    (void)vdev;
    (void)q;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const VmmVirtioDeviceOps ops = {
        .size = sizeof(VmmVirtioDeviceOps), .device_id = 0x7ffe,
        .num_queues = 1, .queue_max_size = 256, .handle_queue = handle,
    };
    if (!mem) {
        init();
    }
    if (size < 1) {
        return 0;
    }
    memset(ram, 0, RAM_SIZE);
    memcpy(ram, data + 1, size - 1 < RAM_SIZE ? size - 1 : RAM_SIZE);
    uint64_t f = 1ull << VMM_VIRTIO_F_VERSION_1;
    if (data[0] & 1) {
        f |= 1ull << VMM_VIRTIO_F_RING_INDIRECT_DESC;
    }
    if (data[0] & 2) {
        f |= 1ull << VMM_VIRTIO_F_RING_EVENT_IDX;
    }
    suppress = data[0] & 4;
    uint16_t qsize = (uint16_t)(1u << ((data[0] >> 4) & 7) << 1);

    VmmVirtioDevice *vdev = vmm_virtio_device_new("fuzz", &ops, NULL, mem, NULL, NULL);
    vmm_virtio_set_interrupt(vdev, irq, NULL);
    vmm_virtio_set_status(vdev, 3);
    vmm_virtio_set_driver_features(vdev, f);
    vmm_virtio_set_status(vdev, 0xb);
    vmm_virtio_queue_set_size(vdev, 0, qsize);
    vmm_virtio_queue_set_addr(vdev, 0, 0, 0x1000, 0x2000);
    vmm_virtio_queue_enable(vdev, 0);
    vmm_virtio_set_status(vdev, 0xf);
    vmm_virtio_queue_notify(vdev, 0);
    vmm_virtio_queue_notify(vdev, 0);     /* a second doorbell: nothing new */
    vmm_virtio_device_free(vdev);
    return 0;
}
