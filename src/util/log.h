/* SPDX-License-Identifier: MIT */
/* Internal: the library's logging, routed through vmm_set_log_handler(). */
#ifndef VMM_UTIL_LOG_H
#define VMM_UTIL_LOG_H

#include "vmmkit/common.h"

void vmm_log(VmmLogLevel level, const char *fmt, ...) VMM_PRINTF(2, 3);

#define vmm_error(...)   vmm_log(VMM_LOG_ERROR, __VA_ARGS__)
#define vmm_warn(...)    vmm_log(VMM_LOG_WARNING, __VA_ARGS__)
#define vmm_info(...)    vmm_log(VMM_LOG_INFO, __VA_ARGS__)
#define vmm_debug(...)   vmm_log(VMM_LOG_DEBUG, __VA_ARGS__)

/*
 * API misuse that a debug build promises to catch: log it naming the
 * function, then abort in debug builds; release builds only log.
 * Never use it for bad input from a guest or an image: return an error.
 */
void vmm_misuse(const char *func, const char *fmt, ...) VMM_PRINTF(2, 3);
#define VMM_MISUSE(...) vmm_misuse(__func__, __VA_ARGS__)

#endif
