/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "vmmkit/common.h"

const char *vmm_strerror(int err)
{
    if (err == 0) {
        return "Success";
    }
    /* INT_MIN has no positive counterpart: no errno is that large. */
    int e = err < 0 ? (err == -2147483647 - 1 ? 0 : -err) : err;
    /* glibc's table, without strerror()'s per-thread buffer. */
    const char *s = e ? strerrordesc_np(e) : NULL;
    return s ? s : "Unknown error";
}
