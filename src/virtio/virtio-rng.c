/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng (vmmkit/virtio-rng.h): requests are filled from getrandom(2)
 * in the queue's context.  getrandom without flags waits only until the
 * host's pool is first initialised (early host boot); after that it never
 * blocks, and returns fewer bytes than asked only when a signal interrupts
 * a large read - the loop goes on then, and a failure ends the request
 * with what was written (the used length says so).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util/atomic.h"
#include "util/log.h"
#include "vmmkit/virtio-rng.h"

#define VIRTIO_ID_RNG 4

struct VmmVirtioRng {
    VmmVirtioDevice *vdev;
    uint64_t bytes;             /* atomic, relaxed */
    bool warned;                /* the queue's context */
};

/* Fill @len bytes at @p; returns how many were written. */
static size_t fill(VmmVirtioRng *rng, uint8_t *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom(p + done, len - done, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (!rng->warned) {
                vk_warn("virtio-rng: getrandom failed: %s", n < 0 ? strerror(errno) : "0 bytes");
                rng->warned = true;
            }
            break;
        }
        done += (size_t)n;
    }
    return done;
}

static void rng_handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    VmmVirtioRng *rng = opaque;
    (void)vdev;
    bool pushed = false;
    for (;;) {
        int err = 0;
        VmmVirtqElem *e = vmm_virtqueue_pop(vq, sizeof(*e), &err);
        if (!e) {
            break;              /* empty, or broken (the core marked it) */
        }
        size_t total = 0, want = VMM_VIRTIO_RNG_MAX_REQUEST;
        for (unsigned i = e->out_num; i < e->out_num + e->in_num && total < want; i++) {
            size_t len = e->iov[i].iov_len;
            if (len > want - total) {
                len = want - total;
            }
            size_t n = fill(rng, e->iov[i].iov_base, len);
            total += n;
            if (n < len) {
                break;
            }
        }
        vmm_virtqueue_push(vq, e, (uint32_t)total);
        vk_atomic_stat_add(&rng->bytes, total);
        free(e);
        pushed = true;
    }
    if (pushed) {
        vmm_virtqueue_notify(vq);
    }
}

static const VmmVirtioDeviceOps rng_ops = {
    .size = sizeof(VmmVirtioDeviceOps), .device_id = VIRTIO_ID_RNG,
    .num_queues = 1, .queue_max_size = 64, .handle_queue = rng_handle,
};

VmmVirtioRng *vmm_virtio_rng_new(VmmGuestMemory *mem, int *errp)
{
    int err = -ENOMEM;
    VmmVirtioRng *rng = NULL;
    if (!mem) {
        err = VMM_MISUSE_ERR(-EINVAL, "no guest memory");
        goto fail;
    }
    rng = calloc(1, sizeof(*rng));
    if (!rng) {
        goto fail;
    }
    rng->vdev = vmm_virtio_device_new("virtio-rng", &rng_ops, rng, mem, NULL, &err);
    if (!rng->vdev) {
        goto fail;
    }
    return rng;
fail:
    free(rng);
    if (errp) {
        *errp = err;
    }
    return NULL;
}

void vmm_virtio_rng_free(VmmVirtioRng *rng)
{
    if (rng) {
        vmm_virtio_device_free(rng->vdev);
        free(rng);
    }
}

VmmVirtioDevice *vmm_virtio_rng_get_virtio(VmmVirtioRng *rng)
{
    return rng->vdev;
}

uint64_t vmm_virtio_rng_bytes(VmmVirtioRng *rng)
{
    return vk_atomic_read(&rng->bytes);
}
