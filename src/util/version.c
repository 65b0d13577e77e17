/* SPDX-License-Identifier: MIT */
#include "vmmkit/common.h"
#include "vmmkit/version.h"

const char *vmm_version(void)
{
    return VMM_VERSION_STRING;
}

unsigned vmm_version_number(void)
{
    return VMM_VERSION;
}
