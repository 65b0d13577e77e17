/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/virtio-rng.h - a virtio entropy device (virtio 1.x, 5.4).
 *
 * One request queue: every buffer the driver offers is filled with bytes
 * from getrandom(2) (the host kernel's CSPRNG), at most 64 KiB per
 * request; the used length says how many bytes were written, and is
 * shorter when the host returned fewer (it never pads).  A request with no
 * device-writable part is returned with length 0.  A malformed chain marks
 * the device DEVICE_NEEDS_RESET (the virtio core's rule).  On a machine:
 * vmm_machine_add_rng() (vmmkit/machine.h).
 */
#ifndef VMMKIT_VIRTIO_RNG_H
#define VMMKIT_VIRTIO_RNG_H

#include "vmmkit/virtio.h"

VMM_BEGIN_DECLS

typedef struct VmmVirtioRng VmmVirtioRng;

/* The largest number of bytes one request gets. */
#define VMM_VIRTIO_RNG_MAX_REQUEST (64u << 10)

/*
 * A virtio-rng device doing DMA into @mem.  Its queue runs where the
 * caller puts it (vmm_virtio_queue_set_context; the machine sets its
 * device context).  NULL with *errp = -EINVAL (@mem NULL) or -ENOMEM.
 * Main loop.
 */
VMM_EXPORT VmmVirtioRng *vmm_virtio_rng_new(VmmGuestMemory *mem, int *errp);
/* The device must be idle or freshly reset.  NULL: nothing.  Main loop. */
VMM_EXPORT void vmm_virtio_rng_free(VmmVirtioRng *rng);
/* The virtio device to put behind a transport.  Any thread. */
VMM_EXPORT VmmVirtioDevice *vmm_virtio_rng_get_virtio(VmmVirtioRng *rng);
/* Bytes given to the guest so far.  Any thread. */
VMM_EXPORT uint64_t vmm_virtio_rng_bytes(VmmVirtioRng *rng);

VMM_END_DECLS

#endif /* VMMKIT_VIRTIO_RNG_H */
