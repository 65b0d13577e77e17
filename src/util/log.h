/* SPDX-License-Identifier: MIT */
/* Internal: the library's logging, routed through vmm_set_log_handler(). */
#ifndef VMM_UTIL_LOG_H
#define VMM_UTIL_LOG_H

#include "vmmkit/common.h"

void vk_log(VmmLogLevel level, const char *fmt, ...) VMM_PRINTF(2, 3);

#define vk_error(...)   vk_log(VMM_LOG_ERROR, __VA_ARGS__)
#define vk_warn(...)    vk_log(VMM_LOG_WARNING, __VA_ARGS__)
#define vk_info(...)    vk_log(VMM_LOG_INFO, __VA_ARGS__)
#define vk_debug(...)   vk_log(VMM_LOG_DEBUG, __VA_ARGS__)

/*
 * API misuse that a debug build promises to catch: log it naming the
 * function, then abort in debug builds; release builds only log.  Only
 * where the function has no error to return (a void function) or for the
 * library's own invariants: where the header promises an errno, use
 * VMM_MISUSE_ERR.  Never use it for bad input from a guest or an image:
 * return an error.
 */
void vk_misuse(const char *func, const char *fmt, ...) VMM_PRINTF(2, 3);
#define VMM_MISUSE(...) vk_misuse(__func__, __VA_ARGS__)

/*
 * A caller mistake for which the header promises an errno: log it as
 * VMM_MISUSE does, in every build, and evaluate to @err (never abort: the
 * caller gets the errno the header promises).
 */
int vk_misuse_errno(const char *func, int err, const char *fmt, ...) VMM_PRINTF(3, 4);
#define VMM_MISUSE_ERR(err, ...) vk_misuse_errno(__func__, err, __VA_ARGS__)

#endif
