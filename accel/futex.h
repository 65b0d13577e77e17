/* SPDX-License-Identifier: MIT */
/* Internal: thin futex(2) wrappers for the accel gate and the vCPU runner. */
#ifndef VMM_ACCEL_FUTEX_H
#define VMM_ACCEL_FUTEX_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleep while *addr == val (returns at once otherwise); spurious wake-ups
 * are possible, so callers loop.  @rel_timeout may be NULL. */
static inline int vk_futex_wait(unsigned *addr, unsigned val,
                                 const struct timespec *rel_timeout)
{
    long r = syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, rel_timeout, NULL, 0);
    return r < 0 ? -errno : 0;
}

static inline void vk_futex_wake(unsigned *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void vk_futex_wake_all(unsigned *addr)
{
    vk_futex_wake(addr, INT_MAX);
}

#endif
