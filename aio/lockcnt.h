/* SPDX-License-Identifier: MIT */
/*
 * aio/lockcnt.h - a counter of visitors combined with a lock (the shape of
 * QEMU's QemuLockCnt, our own simpler implementation).
 *
 * Visitors (vk_lockcnt_inc/dec) walk a list without the lock; writers
 * take the lock to change it and may free a removed node only when the
 * count is 0.  While a writer holds the lock with count 0, new visitors
 * wait; a visitor already counted is never blocked by a writer (so a
 * visitor may take the lock, e.g. to free what it removed).
 *
 * One word holds (count << 1) | LOCKED.  The LOCKED bit is set and cleared
 * only by the holder of @mutex, so a visitor that must wait simply takes
 * the mutex.  All operations on the word are sequentially consistent RMWs:
 * a visitor's CAS from count 0 and a writer's fetch_or(LOCKED) are totally
 * ordered, so either the writer sees count > 0 (and does not free) or the
 * visitor's CAS fails, sees LOCKED and waits on the mutex.
 */
#ifndef VMM_AIO_LOCKCNT_H
#define VMM_AIO_LOCKCNT_H

#include <pthread.h>
#include <stdbool.h>

#include "vmmkit/common.h"
#include "util/atomic.h"

typedef struct VMM_CAPABILITY("mutex") VmmLockCnt {
    unsigned word;
    pthread_mutex_t mutex;
} VmmLockCnt;

#define LOCKCNT_LOCKED 1u
#define LOCKCNT_ONE    2u

static inline void vk_lockcnt_init(VmmLockCnt *lc)
{
    lc->word = 0;
    pthread_mutex_init(&lc->mutex, NULL);
}

static inline void vk_lockcnt_destroy(VmmLockCnt *lc)
{
    pthread_mutex_destroy(&lc->mutex);
}

static inline void vk_lockcnt_inc(VmmLockCnt *lc) VMM_NO_TSA
{
    unsigned v = vk_atomic_read(&lc->word);

    for (;;) {
        if (v == LOCKCNT_LOCKED) {
            /* A writer holds the lock with no visitors: wait for it.  The
             * writer clears LOCKED before releasing the mutex, so once we
             * own the mutex no writer is in, and our add is seen by the
             * next writer's fetch_or (both seq-cst RMWs on the word). */
            pthread_mutex_lock(&lc->mutex);
            vk_atomic_fetch_add(&lc->word, LOCKCNT_ONE);
            pthread_mutex_unlock(&lc->mutex);
            return;
        }
        /* Pairs with the fetch_or in vk_lockcnt_lock(). */
        if (__atomic_compare_exchange_n(&lc->word, &v, v + LOCKCNT_ONE, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
            return;
        }
    }
}

static inline void vk_lockcnt_dec(VmmLockCnt *lc)
{
    /* Release: our reads of the list happen before a writer that sees the
     * count drop to 0 frees a node (pairs with the fetch_or in lock()). */
    vk_atomic_fetch_sub(&lc->word, LOCKCNT_ONE);
}

static inline void vk_lockcnt_lock(VmmLockCnt *lc) VMM_ACQUIRE(*lc) VMM_NO_TSA
{
    pthread_mutex_lock(&lc->mutex);
    /* Pairs with the CAS in vk_lockcnt_inc() and the fetch_sub in
     * vk_lockcnt_dec(). */
    vk_atomic_fetch_or(&lc->word, LOCKCNT_LOCKED);
}

static inline void vk_lockcnt_unlock(VmmLockCnt *lc) VMM_RELEASE(*lc) VMM_NO_TSA
{
    vk_atomic_fetch_and(&lc->word, ~LOCKCNT_LOCKED);
    pthread_mutex_unlock(&lc->mutex);
}

static inline unsigned vk_lockcnt_count(VmmLockCnt *lc)
{
    return vk_atomic_load_acquire(&lc->word) >> 1;
}

#endif /* VMM_AIO_LOCKCNT_H */
