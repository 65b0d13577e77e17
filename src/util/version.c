/* SPDX-License-Identifier: MIT */
#include "vmmkit/common.h"

const char *vmm_version(void)
{
    return VMMKIT_VERSION;
}
