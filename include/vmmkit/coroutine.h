/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/coroutine.h - coroutines, their locks, and the thread pool.
 *
 * A coroutine runs on whichever thread enters it and may resume on another
 * thread after a yield.  Functions marked VMM_COROUTINE_FN may only be
 * called from a coroutine.
 */
#ifndef VMMKIT_COROUTINE_H
#define VMMKIT_COROUTINE_H

#include "vmmkit/aio.h"

VMM_BEGIN_DECLS

typedef struct VmmCoroutine VmmCoroutine;
typedef void VmmCoroutineEntry(void *opaque);

/* ---- Coroutines ---------------------------------------------------------- */

/* Create (from the pool when possible); NULL and *errp = -ENOMEM on failure.
 * Any thread. */
VMM_EXPORT VmmCoroutine *vmm_coroutine_create(VmmCoroutineEntry *entry, void *opaque,
                                              int *errp);
/* Enter in the calling thread; returns when it yields or terminates (then it
 * is freed).  Entering a running or scheduled coroutine is reported, naming
 * who scheduled it.  Any thread that is not inside that coroutine. */
VMM_EXPORT void vmm_coroutine_enter(VmmCoroutine *co);
/* Enter only if it is not running and not scheduled. */
VMM_EXPORT void vmm_coroutine_enter_if_inactive(VmmCoroutine *co);
VMM_EXPORT VMM_COROUTINE_FN void vmm_coroutine_yield(void);
/* The running coroutine, or NULL outside one.  Any thread. */
VMM_EXPORT VmmCoroutine *vmm_coroutine_self(void);
VMM_EXPORT bool vmm_in_coroutine(void);
/* True once entered and until it terminates while yielded or running. */
VMM_EXPORT bool vmm_coroutine_entered(VmmCoroutine *co);

/* ---- Scheduling across contexts ------------------------------------------ */

/* Run @co in @ctx from a BH.  Scheduling one already scheduled is reported,
 * naming who scheduled it first.  Any thread. */
VMM_EXPORT void vmm_aio_co_schedule(VmmAioContext *ctx, VmmCoroutine *co);
/* Enter @co in @ctx: directly if @ctx is the current context (after the
 * running coroutine yields, when called from one), else schedule.  Any thread. */
VMM_EXPORT void vmm_aio_co_enter(VmmAioContext *ctx, VmmCoroutine *co);
/* Wake @co in the context it last ran in.  Any thread. */
VMM_EXPORT void vmm_aio_co_wake(VmmCoroutine *co);
/* Move the running coroutine to @ctx; returns running there. */
VMM_EXPORT VMM_COROUTINE_FN void vmm_aio_co_reschedule_self(VmmAioContext *ctx);
/* The context @co last ran in. Any thread. */
VMM_EXPORT VmmAioContext *vmm_coroutine_get_context(VmmCoroutine *co);

/* Run entry(opaque) in a new coroutine in @ctx and poll @ctx until it
 * returns; from inside a coroutine it is called directly.  Returns 0 or
 * -ENOMEM.  @ctx's thread. */
VMM_EXPORT int vmm_co_run_sync(VmmAioContext *ctx, VmmCoroutineEntry *entry,
                               void *opaque);

/* ---- Sleeping ------------------------------------------------------------ */

typedef struct VmmCoSleep { void *priv_[2]; } VmmCoSleep;
/* Sleep @ns in the current context; with @w, vmm_co_sleep_wake(w) (any
 * thread) ends the sleep early. */
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_sleep_ns(VmmCoSleep *w, int64_t ns);
VMM_EXPORT void vmm_co_sleep_wake(VmmCoSleep *w);

/* ---- Locks (embeddable storage; contents are private) --------------------- */

typedef struct VMM_CAPABILITY("mutex") VmmCoMutex { uint64_t priv_[8]; } VmmCoMutex;
typedef struct VmmCoQueue { uint64_t priv_[2]; } VmmCoQueue;
typedef struct VMM_CAPABILITY("rwlock") VmmCoRwlock { uint64_t priv_[12]; } VmmCoRwlock;

VMM_EXPORT void vmm_co_mutex_init(VmmCoMutex *m);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_mutex_lock(VmmCoMutex *m) VMM_ACQUIRE(*m);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_mutex_unlock(VmmCoMutex *m) VMM_RELEASE(*m);

VMM_EXPORT void vmm_co_queue_init(VmmCoQueue *q);
/* Wait, releasing @m (may be NULL) while waiting and retaking it after. */
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_queue_wait(VmmCoQueue *q, VmmCoMutex *m);
VMM_EXPORT VMM_COROUTINE_FN bool vmm_co_queue_next(VmmCoQueue *q);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_queue_restart_all(VmmCoQueue *q);
/* From outside a coroutine: wake the first waiter now.  Any thread
 * holding the lock that protects @q (or @m, retaken for it). */
VMM_EXPORT bool vmm_co_enter_next(VmmCoQueue *q, VmmCoMutex *m);
VMM_EXPORT bool vmm_co_queue_empty(VmmCoQueue *q);

VMM_EXPORT void vmm_co_rwlock_init(VmmCoRwlock *l);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_rdlock(VmmCoRwlock *l) VMM_ACQUIRE_SHARED(*l);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_wrlock(VmmCoRwlock *l) VMM_ACQUIRE(*l);
/* Releases a read or a write hold. */
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_unlock(VmmCoRwlock *l) VMM_RELEASE_SHARED(*l);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_upgrade(VmmCoRwlock *l);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_downgrade(VmmCoRwlock *l);

/* ---- Thread pool ----------------------------------------------------------- */

typedef int VmmThreadPoolFunc(void *opaque);
typedef void VmmThreadPoolDone(void *opaque, int ret);

/* Run @fn(@arg) in a worker thread of the current context's pool and yield
 * until it returns; returns its result. */
VMM_EXPORT VMM_COROUTINE_FN int vmm_thread_pool_co_submit(VmmThreadPoolFunc *fn, void *arg);
/* Callback form: @done(@opaque, ret) runs in @ctx when @fn returns.
 * @ctx's thread. */
VMM_EXPORT int vmm_thread_pool_submit(VmmAioContext *ctx, VmmThreadPoolFunc *fn, void *arg,
                                      VmmThreadPoolDone *done, void *opaque);
/* Bound the workers of @ctx's pool.  @ctx's thread. */
VMM_EXPORT int vmm_thread_pool_set_max_workers(VmmAioContext *ctx, int max);

VMM_END_DECLS

#endif /* VMMKIT_COROUTINE_H */
