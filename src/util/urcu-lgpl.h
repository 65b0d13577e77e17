/* SPDX-License-Identifier: MIT */
/*
 * Include first, before any liburcu header, in a file whose read-side
 * sections are hot (the vCPU exit path): liburcu's inline read-side fast
 * path (_LGPL_SOURCE: no library call per rcu_read_lock/unlock), except
 * under ThreadSanitizer, which must not see liburcu's uninstrumented
 * internals (tests/tsan.supp suppresses them only inside the library).
 */
#ifndef VMM_UTIL_URCU_LGPL_H
#define VMM_UTIL_URCU_LGPL_H

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VMM_NO_LGPL_URCU 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define VMM_NO_LGPL_URCU 1
#endif
#ifndef VMM_NO_LGPL_URCU
#define _LGPL_SOURCE 1
#endif

#endif
