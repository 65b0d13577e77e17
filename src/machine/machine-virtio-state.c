/* SPDX-License-Identifier: MIT */
/*
 * The state of the machine's virtio-pci devices for snapshots and
 * migration (snapshot.c, migration.c): per device, in bus order, the
 * transport's record (virtio-pci.h) then the virtio core's
 * (vmm_virtio_save_state), each behind its u32 length.  A device type's
 * own state beyond the core's is not part of it (virtio-blk has none: its
 * requests are on the rings and its data on the disk).
 */
#include "machine/machine-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "vmmkit/virtio.h"
#include "virtio/virtio-internal.h"

unsigned machine_device_ids(VmmMachine *m, uint16_t *ids, unsigned max)
{
    machine_lock(m);
    unsigned n = m->nvirtio;
    for (unsigned i = 0; i < n && i < max; i++) {
        ids[i] = vmm_virtio_device_id(m->virtio[i]->vdev);
    }
    machine_unlock(m);
    return n;
}

static MachineVirtio *device_at(VmmMachine *m, unsigned i)
{
    machine_lock(m);
    MachineVirtio *d = i < m->nvirtio ? m->virtio[i] : NULL;
    machine_unlock(m);
    return d;
}

size_t machine_device_state_size(VmmMachine *m, unsigned i)
{
    MachineVirtio *d = device_at(m, i);
    if (!d) {
        return 0;
    }
    machine_lock(m);
    machine_assert_locked(d->m);            /* d->m == m */
    size_t n = 8 + virtio_pci_state_size(&d->t);
    machine_unlock(m);
    return n + vmm_virtio_state_size(d->vdev);
}

int machine_device_save(VmmMachine *m, unsigned i, uint8_t *out, size_t len)
{
    MachineVirtio *d = device_at(m, i);
    if (!d || len != machine_device_state_size(m, i)) {
        return -EINVAL;
    }
    machine_lock(m);
    machine_assert_locked(d->m);            /* d->m == m */
    uint32_t tlen = (uint32_t)virtio_pci_state_size(&d->t);
    memcpy(out, &tlen, 4);
    virtio_pci_save(&d->t, out + 4);
    machine_unlock(m);
    uint32_t clen = (uint32_t)(len - 8 - tlen);
    memcpy(out + 4 + tlen, &clen, 4);
    return vmm_virtio_save_state(d->vdev, out + 8 + tlen, clen);
}

int machine_device_load(VmmMachine *m, unsigned i, const uint8_t *in, size_t len)
{
    MachineVirtio *d = device_at(m, i);
    uint32_t tlen, clen;
    if (!d || len < 8) {
        return -EINVAL;
    }
    memcpy(&tlen, in, 4);
    if (tlen > len - 8) {
        return -EINVAL;
    }
    memcpy(&clen, in + 4 + tlen, 4);
    if (clen != len - 8 - tlen) {
        return -EINVAL;
    }
    /* The transport first: its routes and doorbells are in place before
     * the core's kicks complete requests and raise interrupts. */
    machine_lock(m);
    machine_assert_locked(d->m);            /* d->m == m */
    int r = virtio_pci_load(&d->t, in + 4, tlen);
    machine_unlock(m);
    if (r < 0) {
        vk_error("machine: the saved virtio-pci state of device %u does not fit it", i);
        return r;
    }
    return vmm_virtio_load_state(d->vdev, in + 8 + tlen, clen);
}

int machine_devices_saveable(VmmMachine *m)
{
    uint16_t ids[MACHINE_MAX_PCI];
    unsigned n = machine_device_ids(m, ids, MACHINE_MAX_PCI);
    for (unsigned i = 0; i < n; i++) {
        MachineVirtio *d = device_at(m, i);
        size_t len = d ? vmm_virtio_state_size(d->vdev) : 0;
        uint8_t *buf = len ? malloc(len) : NULL;
        if (!buf) {
            return d ? -ENOMEM : -EINVAL;
        }
        /* A running device answers -EBUSY, or -EOPNOTSUPP if it never can. */
        int r = vmm_virtio_save_state(d->vdev, buf, len);
        free(buf);
        if (r == -EOPNOTSUPP) {
            vk_error("machine: device %u (virtio type %u) cannot be saved: no snapshot or "
                     "migration of this machine", i, ids[i]);
            return r;
        }
    }
    return 0;
}

void machine_device_used_rings(VmmMachine *m, void (*fn)(void *opaque, uint64_t gpa,
                                                         uint64_t len), void *opaque)
{
    MachineVirtio *devs[MACHINE_MAX_PCI];
    machine_lock(m);
    unsigned n = m->nvirtio;
    memcpy(devs, m->virtio, n * sizeof(devs[0]));
    machine_unlock(m);
    for (unsigned i = 0; i < n; i++) {
        VmmVirtioDevice *v = devs[i]->vdev;
        for (unsigned q = 0; q < vmm_virtio_num_queues(v); q++) {
            if (!vmm_virtio_queue_is_enabled(v, q)) {
                continue;
            }
            uint64_t desc, avail, used;
            vmm_virtio_queue_get_addr(v, q, &desc, &avail, &used);
            fn(opaque, used, 6 + 8ull * vmm_virtio_queue_get_size(v, q));
        }
        /* A backend outside the core (vhost) also wrote the buffers the
         * driver gave it, with no dirty log of ours: send them all again
         * (a superset: every buffer still in its descriptor tables). */
        if (v->backend_rings_saved) {
            virtio_writable_buffers(v, fn, opaque);
        }
    }
}

bool machine_virtio_has_backend(VmmVirtioDevice *v)
{
    return v->backend_rings_saved;
}
