/* SPDX-License-Identifier: MIT */
/* vmmkit/vmmkit.h - the whole public API. */
#ifndef VMMKIT_VMMKIT_H
#define VMMKIT_VMMKIT_H

#include "vmmkit/common.h"
#include "vmmkit/machine.h"
#include "vmmkit/accel.h"
#include "vmmkit/memory.h"

#endif
