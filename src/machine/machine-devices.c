/* SPDX-License-Identifier: MIT */
/*
 * The library's small virtio devices on the machine: the console
 * (vmmkit/virtio-console.h) and the entropy device (vmmkit/virtio-rng.h),
 * put on the bus by the virtio-pci glue (machine-virtio.c) like any other.
 * Their queues run in the machine's device context; at teardown the glue
 * resets them (no drain hook) and the free hooks below free them.
 */
#include "machine/machine-internal.h"

#include <errno.h>

#include "util/log.h"

#include "vmmkit/virtio-console.h"
#include "vmmkit/virtio-rng.h"

static void rng_free(void *priv)
{
    vmm_virtio_rng_free(priv);
}

static const MachineVirtioClass rng_class = { .free = rng_free };

int vmm_machine_add_rng(VmmMachine *m)
{
    if (m->state != VMM_MACHINE_CREATED) {
        return VMM_MISUSE_ERR(-EINVAL, "devices are added before start");
    }
    int r = 0;
    VmmAioContext *ctx = vmm_machine_device_context(m, &r);
    if (!ctx) {
        return r;
    }
    VmmVirtioRng *rng = vmm_virtio_rng_new(m->mem, &r);
    if (!rng) {
        return r;
    }
    r = machine_virtio_add(m, vmm_virtio_rng_get_virtio(rng), 0xff0000, ctx, &rng_class, rng);
    if (r < 0) {
        vmm_virtio_rng_free(rng);
    }
    return r;
}

static void console_free(void *priv)
{
    vmm_virtio_console_free(priv);
}

static const MachineVirtioClass console_class = { .free = console_free };

int vmm_machine_add_console(VmmMachine *m, int in_fd, int out_fd)
{
    if (m->state != VMM_MACHINE_CREATED) {
        return VMM_MISUSE_ERR(-EINVAL, "devices are added before start");
    }
    if (in_fd < -1 || out_fd < -1) {
        return VMM_MISUSE_ERR(-EINVAL, "bad console fds %d, %d", in_fd, out_fd);
    }
    int r = 0;
    VmmAioContext *ctx = vmm_machine_device_context(m, &r);
    if (!ctx) {
        return r;
    }
    VmmVirtioConsole *con = vmm_virtio_console_new(m->mem, ctx, in_fd, out_fd, &r);
    if (!con) {
        return r;
    }
    /* The console set its queues' contexts (its input handler shares them). */
    r = machine_virtio_add(m, vmm_virtio_console_get_virtio(con), 0x078000, NULL,
                           &console_class, con);
    if (r < 0) {
        vmm_virtio_console_free(con);
    }
    return r;
}
