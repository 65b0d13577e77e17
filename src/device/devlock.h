/* SPDX-License-Identifier: MIT */
/*
 * Internal: a pthread mutex that clang's thread-safety analysis can follow,
 * used by the memory, device and virtio code.
 */
#ifndef VMM_DEVICE_DEVLOCK_H
#define VMM_DEVICE_DEVLOCK_H

#include <pthread.h>

#include "vmmkit/common.h"

typedef struct VMM_CAPABILITY("mutex") VmmDevLock {
    pthread_mutex_t m;
} VmmDevLock;

static inline void vmm_devlock_init(VmmDevLock *l)
{
    pthread_mutex_init(&l->m, NULL);
}

static inline void vmm_devlock_destroy(VmmDevLock *l)
{
    pthread_mutex_destroy(&l->m);
}

static inline void vmm_devlock_lock(VmmDevLock *l) VMM_ACQUIRE(*l) VMM_NO_TSA
{
    pthread_mutex_lock(&l->m);
}

static inline void vmm_devlock_unlock(VmmDevLock *l) VMM_RELEASE(*l) VMM_NO_TSA
{
    pthread_mutex_unlock(&l->m);
}

#endif
