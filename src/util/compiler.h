/* SPDX-License-Identifier: MIT */
/* Internal: small compiler helpers shared by every part of the library. */
#ifndef VMM_UTIL_COMPILER_H
#define VMM_UTIL_COMPILER_H

#include <stddef.h>

#define vk_likely(x)   __builtin_expect(!!(x), 1)
#define vk_unlikely(x) __builtin_expect(!!(x), 0)

#define VMM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define vk_container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#define VMM_ALIGN_DOWN(n, m) ((n) / (m) * (m))
#define VMM_ALIGN_UP(n, m)   VMM_ALIGN_DOWN((n) + (m) - 1, (m))
#define VMM_IS_ALIGNED(n, m) (((n) % (m)) == 0)

#define VMM_NOINLINE    __attribute__((noinline))
#define VMM_ALWAYS_INLINE inline __attribute__((always_inline))
/* Hot paths (the vCPU exit path): grouped by the linker (.text.hot), so
 * they touch few code pages (it matters where TLBs are flushed per exit,
 * e.g. under emulated nested virtualization). */
#define VMM_HOT         __attribute__((hot))
/* Thread-locals read on hot paths: initial-exec, so the shared library
 * reads them at a fixed offset from the thread pointer instead of calling
 * __tls_get_addr (a few bytes of glibc's surplus static TLS if vmmkit is
 * dlopen()ed). */
#define VMM_TLS_IE      __attribute__((tls_model("initial-exec")))
#define VMM_UNUSED      __attribute__((unused))
#define VMM_CACHELINE   64
#define VMM_CACHE_ALIGNED __attribute__((aligned(VMM_CACHELINE)))

/*
 * VMM_DEBUG_CHECKS is 1 in debug builds (meson option debug_checks).  Code
 * tests it (`if (VMM_DEBUG_CHECKS)`) around checks of our own invariants;
 * VMM_MISUSE() (util/log.h) reports API misuse and aborts only when it is 1.
 */
#ifndef VMM_DEBUG_CHECKS
#define VMM_DEBUG_CHECKS 0
#endif

#endif
