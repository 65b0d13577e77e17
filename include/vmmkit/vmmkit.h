/* SPDX-License-Identifier: MIT */
/* vmmkit/vmmkit.h - the whole public API. */
#ifndef VMMKIT_VMMKIT_H
#define VMMKIT_VMMKIT_H

#include "vmmkit/common.h"
#include "vmmkit/version.h"
#include "vmmkit/aio.h"
#include "vmmkit/coroutine.h"
#include "vmmkit/block.h"
#include "vmmkit/accel.h"
#include "vmmkit/kvm.h"
#include "vmmkit/memory.h"
#include "vmmkit/device.h"
#include "vmmkit/virtio.h"
#include "vmmkit/virtio-blk.h"
#include "vmmkit/virtio-console.h"
#include "vmmkit/virtio-rng.h"
#include "vmmkit/virtio-net.h"
#include "vmmkit/vhost-vsock.h"
#include "vmmkit/machine.h"

#endif
