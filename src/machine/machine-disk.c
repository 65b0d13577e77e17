/* SPDX-License-Identifier: MIT */
/* Disks of the machine (virtio-blk over virtio-pci). */
#include "machine/machine-internal.h"

#include <errno.h>

int vmm_machine_add_disk(VmmMachine *m, const char *path, bool readonly)
{
    (void)m; (void)path; (void)readonly;
    return -ENOTSUP;
}

int machine_devices_start(VmmMachine *m)
{
    (void)m;
    return 0;
}

int machine_devices_pause(VmmMachine *m, bool pause)
{
    (void)m; (void)pause;
    return 0;
}

void machine_devices_free(VmmMachine *m)
{
    (void)m;
}
