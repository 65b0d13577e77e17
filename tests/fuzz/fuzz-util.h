/* SPDX-License-Identifier: MIT */
/*
 * What the device-level fuzz targets share: 64 KiB of guest RAM at GPA 0,
 * a silent log, and the driver's bring-up of queue 0 with its rings at the
 * layout of fuzz-virtqueue.c (descriptors at 0, available ring at 0x1000,
 * used ring at 0x2000).
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stdint.h>
#include <string.h>

#include "vmmkit/virtio.h"

#define FUZZ_RAM_SIZE 0x10000

static void fuzz_quiet(VmmLogLevel l, const char *m, void *o)
{
    (void)l;
    (void)m;
    (void)o;
}

/* The guest memory (made on the first call) and its host address. */
static inline VmmGuestMemory *fuzz_ram(uint8_t **host)
{
    static VmmGuestMemory *mem;
    static uint8_t *ram;

    if (!mem) {
        VmmRamRegionOptions o = { .size = sizeof(o), .length = FUZZ_RAM_SIZE };
        VmmRamRegion *a = vmm_ram_region_new(&o, NULL);
        vmm_set_log_handler(fuzz_quiet, NULL, VMM_LOG_ERROR);
        mem = vmm_guest_memory_new(NULL);
        vmm_guest_memory_add(mem, 0, a, 0, FUZZ_RAM_SIZE, 0);
        ram = vmm_ram_region_host(a);
        vmm_ram_region_unref(a);
    }
    *host = ram;
    return mem;
}

/* Copy @data into RAM from GPA 0 (the rest zeroed). */
static inline void fuzz_fill(uint8_t *ram, const uint8_t *data, size_t size)
{
    memset(ram, 0, FUZZ_RAM_SIZE);
    memcpy(ram, data, size < FUZZ_RAM_SIZE ? size : FUZZ_RAM_SIZE);
}

/* VERSION_1, plus INDIRECT_DESC for bit 0 of @flags, EVENT_IDX for bit 1. */
static inline uint64_t fuzz_features(uint8_t flags)
{
    uint64_t f = 1ull << VMM_VIRTIO_F_VERSION_1;
    if (flags & 1) {
        f |= 1ull << VMM_VIRTIO_F_RING_INDIRECT_DESC;
    }
    if (flags & 2) {
        f |= 1ull << VMM_VIRTIO_F_RING_EVENT_IDX;
    }
    return f;
}

/* The driver's side up to DRIVER_OK with queue 0 of @qsize entries. */
static inline void fuzz_bringup(VmmVirtioDevice *vdev, uint64_t f, uint16_t qsize)
{
    vmm_virtio_set_status(vdev, 3);
    vmm_virtio_set_driver_features(vdev, f);
    vmm_virtio_set_status(vdev, 0xb);
    vmm_virtio_queue_set_size(vdev, 0, qsize);
    vmm_virtio_queue_set_addr(vdev, 0, 0, 0x1000, 0x2000);
    vmm_virtio_queue_enable(vdev, 0);
    vmm_virtio_set_status(vdev, 0xf);
}

#endif
