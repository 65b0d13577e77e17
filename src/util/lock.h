/* SPDX-License-Identifier: MIT */
/*
 * Internal: a pthread mutex that clang's thread-safety analysis can follow,
 * used across the library
 * (memory, devices, virtio, the block layer).
 */
#ifndef VMM_UTIL_LOCK_H
#define VMM_UTIL_LOCK_H

#include <pthread.h>
#include <stdbool.h>

#include "vmmkit/common.h"

typedef struct VMM_CAPABILITY("mutex") VmmMutex {
    pthread_mutex_t m;
} VmmMutex;

static inline void vk_mutex_init(VmmMutex *l)
{
    pthread_mutex_init(&l->m, NULL);
}

static inline void vk_mutex_destroy(VmmMutex *l)
{
    pthread_mutex_destroy(&l->m);
}

static inline void vk_mutex_lock(VmmMutex *l) VMM_ACQUIRE(*l) VMM_NO_TSA
{
    pthread_mutex_lock(&l->m);
}

/* Take the lock if it is free, without waiting: true when taken (also
 * false when the caller itself holds it: the mutex is not recursive). */
static inline bool vk_mutex_trylock(VmmMutex *l) VMM_TRY_ACQUIRE(true, *l) VMM_NO_TSA
{
    return pthread_mutex_trylock(&l->m) == 0;
}

static inline void vk_mutex_unlock(VmmMutex *l) VMM_RELEASE(*l) VMM_NO_TSA
{
    pthread_mutex_unlock(&l->m);
}

#endif
