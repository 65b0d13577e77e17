/* SPDX-License-Identifier: MIT */
/*
 * Disks of the machine: a virtio-blk device (vmmkit/virtio-blk.h) on a
 * BlockBackend in the machine's device iothread, put on the bus by the
 * virtio-pci glue (machine-virtio.c) like any other virtio device.
 */
#include "machine/machine-internal.h"

#include <errno.h>
#include <stdlib.h>

#include "util/log.h"
#include "vmmkit/block.h"
#include "vmmkit/virtio-blk.h"

typedef struct MachineDisk {
    VmmBlockBackend *blk;
    VmmVirtioBlk *vblk;
} MachineDisk;

static void disk_drain(void *priv)
{
    MachineDisk *d = priv;
    vmm_blk_drain(d->blk);
}

static void disk_free(void *priv)
{
    MachineDisk *d = priv;
    if (d->vblk) {
        vmm_virtio_blk_free(d->vblk);
    }
    if (d->blk) {
        vmm_blk_unref(d->blk);
    }
    free(d);
}

static void disk_stats(void *priv, VmmMachineStats *st)
{
    MachineDisk *d = priv;
    VmmVirtioBlkStats bs = { .size = sizeof(bs) };
    if (vmm_virtio_blk_get_stats(d->vblk, &bs) == 0) {
        st->blk_requests += bs.requests;
        st->blk_service_ns += bs.service_ns;
        st->blk_io_ns += bs.io_ns;
    }
}

static const MachineVirtioClass disk_class = {
    .drain = disk_drain, .free = disk_free, .stats = disk_stats,
};

int vmm_machine_add_block(VmmMachine *m, const char *options, bool readonly)
{
    if (m->state != VMM_MACHINE_CREATED) {
        return VMM_MISUSE_ERR(-EINVAL, "disks are added before start");
    }
    int r = 0;
    VmmAioContext *ctx = vmm_machine_device_context(m, &r);
    if (!ctx) {
        return r;
    }
    MachineDisk *d = calloc(1, sizeof(*d));
    if (!d) {
        return -ENOMEM;
    }
    GError *gerr = NULL;
    d->blk = vmm_blk_new_open(options, readonly ? VMM_BLOCK_RDONLY : 0, &gerr);
    if (!d->blk || vmm_blk_set_context(d->blk, ctx, &gerr) < 0) {
        vk_error("machine: disk '%s': %s", options, gerr ? gerr->message : "failed");
        r = gerr && gerr->code ? -abs(gerr->code) : -EINVAL;
        g_clear_error(&gerr);
        goto fail;
    }
    VmmVirtioBlkOptions bo = { .size = sizeof(bo), .name = "vda" };
    d->vblk = vmm_virtio_blk_new(d->blk, m->mem, &bo, &r);
    if (!d->vblk) {
        goto fail;
    }
    /* virtio-blk runs its queues in the BlockBackend's context itself. */
    r = machine_virtio_add(m, vmm_virtio_blk_get_virtio(d->vblk), 0x018000, NULL,
                           &disk_class, d);
    if (r == 0) {
        return 0;
    }
fail:
    disk_free(d);
    return r < 0 ? r : -EINVAL;
}

int vmm_machine_add_disk(VmmMachine *m, const char *path, bool readonly)
{
    /* A raw image: "," in the file name is written ",,". */
    GString *o = g_string_new("driver=raw,file.driver=file,file.filename=");
    for (const char *p = path; *p; p++) {
        g_string_append_c(o, *p);
        if (*p == ',') {
            g_string_append_c(o, ',');
        }
    }
    int r = vmm_machine_add_block(m, o->str, readonly);
    g_string_free(o, TRUE);
    return r;
}
