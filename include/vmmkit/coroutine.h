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

#include <pthread.h>

#include "vmmkit/aio.h"

VMM_BEGIN_DECLS

typedef struct VmmCoroutine VmmCoroutine;
typedef void VmmCoroutineEntry(void *opaque);

/* ---- Coroutines ---------------------------------------------------------- */

/* Create (from the pool when possible); NULL and *errp = -EINVAL (@entry
 * NULL) or -ENOMEM on failure.  Any thread. */
VMM_EXPORT VmmCoroutine *vmm_coroutine_create(VmmCoroutineEntry *entry, void *opaque,
                                              int *errp);
/* Enter in the calling thread; returns when it yields or terminates (then it
 * is freed).  Entering a running or scheduled coroutine is reported, naming
 * who scheduled it.  Any thread that is not inside that coroutine. */
VMM_EXPORT void vmm_coroutine_enter(VmmCoroutine *co);
/* Enter only if it is not running (entered) and not scheduled.  Any thread. */
VMM_EXPORT void vmm_coroutine_enter_if_inactive(VmmCoroutine *co);
/* Suspend the running coroutine; it resumes when entered again (perhaps on
 * another thread).  Coroutine. */
VMM_EXPORT VMM_COROUTINE_FN void vmm_coroutine_yield(void);
/* The running coroutine, or NULL outside one.  Any thread. */
VMM_EXPORT VmmCoroutine *vmm_coroutine_self(void);
/* Any thread. */
VMM_EXPORT bool vmm_in_coroutine(void);
/* True while @co is running or waits for a coroutine it entered; false
 * before it is first entered and while it is yielded.  Any thread. */
VMM_EXPORT bool vmm_coroutine_entered(VmmCoroutine *co);

/*
 * Thread-locals in coroutine code.  After anything that may yield, a
 * coroutine may be running on another thread, but compilers assume a
 * function stays on one thread and may keep the address of a __thread
 * variable in a register across the call.  Read and write thread-locals
 * from coroutine code through accessors the compiler cannot inline or
 * merge:
 *
 *     VMM_CO_TLS_STATIC(int, my_counter)
 *     ... my_counter_get(), my_counter_set(v), my_counter_ptr()
 *
 * A pointer from name_ptr() is valid only until the next yield.
 */
#define VMM_CO_TLS_STATIC(type, name)                                        \
    static __thread type name##_co_tls_;                                     \
    static __attribute__((noinline, unused)) type *name##_ptr(void)          \
    {                                                                        \
        __asm__ __volatile__("");                                            \
        return &name##_co_tls_;                                              \
    }                                                                        \
    static __attribute__((noinline, unused)) type name##_get(void)           \
    {                                                                        \
        __asm__ __volatile__("");                                            \
        return name##_co_tls_;                                               \
    }                                                                        \
    static __attribute__((noinline, unused)) void name##_set(type v_)        \
    {                                                                        \
        __asm__ __volatile__("");                                            \
        name##_co_tls_ = v_;                                                 \
    }

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

/* Run entry(opaque) in a new coroutine in @ctx and wait until it returns:
 * in @ctx's thread by polling @ctx, in the main loop (for an iothread's
 * context) with VMM_AIO_WAIT_WHILE.  From inside a coroutine, entry is
 * simply called.  Returns 0, -EINVAL (@ctx or @entry NULL) or -ENOMEM.
 * @ctx's thread or the main loop. */
VMM_EXPORT int vmm_co_run_sync(VmmAioContext *ctx, VmmCoroutineEntry *entry,
                               void *opaque);

/* ---- Sleeping ------------------------------------------------------------ */

typedef struct VmmCoSleep { void *priv_[2]; } VmmCoSleep;
/* Sleep @ns in the current context; with @w, vmm_co_sleep_wake(w) (any
 * thread) ends the sleep early. */
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_sleep_ns(VmmCoSleep *w, int64_t ns);
VMM_EXPORT void vmm_co_sleep_wake(VmmCoSleep *w);

/* ---- Locks (embeddable storage; contents are private) --------------------- */

/*
 * A zero-filled VmmCoMutex, VmmCoQueue or VmmCoRwlock is initialised; the
 * init functions just do that, from any thread (or coroutine), on a lock
 * no coroutine holds or waits for.  None of the locks blocks a thread: a
 * coroutine that must wait yields, and is woken in the context it last
 * ran in.  Holder and waiters may run in different contexts (threads).
 */
typedef struct VMM_CAPABILITY("mutex") VmmCoMutex { uint64_t priv_[8]; } VmmCoMutex;
typedef struct VmmCoQueue { uint64_t priv_[2]; } VmmCoQueue;
typedef struct VMM_CAPABILITY("rwlock") VmmCoRwlock { uint64_t priv_[12]; } VmmCoRwlock;

/* CoMutex: fair (FIFO hand-off to the longest waiter, no barging); the
 * uncontended lock+unlock is one atomic each.  Unlock only by the holder.
 * A coroutine must not end holding a coroutine lock (reported). */
VMM_EXPORT void vmm_co_mutex_init(VmmCoMutex *m);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_mutex_lock(VmmCoMutex *m) VMM_ACQUIRE(*m);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_mutex_unlock(VmmCoMutex *m) VMM_RELEASE(*m);

/* CoQueue: a FIFO of waiting coroutines.  It has no lock of its own: the
 * caller protects it with a CoMutex or a thread mutex (or keeps it within
 * one context). */
VMM_EXPORT void vmm_co_queue_init(VmmCoQueue *q);
/* Wait, releasing @m (may be NULL) while waiting and retaking it after. */
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_queue_wait(VmmCoQueue *q, VmmCoMutex *m);
/* The same with a thread mutex held around the queue (NULL: none). */
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_queue_wait_pthread(VmmCoQueue *q,
                                                           pthread_mutex_t *lock);
/* Wake the first waiter (it runs in its own context; in this one, right
 * after the calling coroutine yields).  Returns false if none waited.
 * Any thread or coroutine holding the queue's lock. */
VMM_EXPORT bool vmm_co_queue_next(VmmCoQueue *q);
/* Wake every waiter.  As vmm_co_queue_next(). */
VMM_EXPORT void vmm_co_queue_restart_all(VmmCoQueue *q);
/*
 * From outside a coroutine: wake the first waiter, entering it right away
 * when it belongs to the calling thread's context.  @lock (may be NULL) is
 * the thread mutex the caller holds around @q; it is dropped while the
 * waiter runs, since the waiter takes it too.  (A CoMutex cannot be taken
 * outside a coroutine, hence a thread mutex here.)  Returns false if none
 * waited.  Any thread.
 */
VMM_EXPORT bool vmm_co_enter_next(VmmCoQueue *q, pthread_mutex_t *lock);
/* Wake every waiter, as vmm_co_enter_next().  Any thread. */
VMM_EXPORT void vmm_co_enter_all(VmmCoQueue *q, pthread_mutex_t *lock);
/* Any thread holding the queue's lock. */
VMM_EXPORT bool vmm_co_queue_empty(VmmCoQueue *q);

/*
 * CoRwlock: readers and writers are served in FIFO order of arrival (one
 * ticket each); a reader arriving while anyone waits queues too, so
 * writers never starve.  Upgrade gives up the read hold and queues as a
 * writer unless it is the only holder and nobody waits: other writers may
 * run in between.  Downgrade keeps the lock held (as a reader) throughout
 * and lets queued readers in.  The lock and unlock functions: coroutine
 * (misuse - unlock while not held, upgrade without a read hold, downgrade
 * without a write hold - is reported, and debug builds abort).
 */
/* Any thread or coroutine, while no coroutine holds or waits for @l. */
VMM_EXPORT void vmm_co_rwlock_init(VmmCoRwlock *l);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_rdlock(VmmCoRwlock *l) VMM_ACQUIRE_SHARED(*l);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_wrlock(VmmCoRwlock *l) VMM_ACQUIRE(*l);
/* Releases a read or a write hold. */
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_unlock(VmmCoRwlock *l)
    VMM_TSA(release_generic_capability(*l));
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_upgrade(VmmCoRwlock *l)
    VMM_RELEASE_SHARED(*l) VMM_ACQUIRE(*l);
VMM_EXPORT VMM_COROUTINE_FN void vmm_co_rwlock_downgrade(VmmCoRwlock *l)
    VMM_RELEASE(*l) VMM_ACQUIRE_SHARED(*l);

/* ---- Thread pool ----------------------------------------------------------- */

typedef int VmmThreadPoolFunc(void *opaque);
typedef void VmmThreadPoolDone(void *opaque, int ret);

/* Run @fn(@arg) in a worker thread of the current context's pool and yield
 * until it returns; returns its result, or -EINVAL (@fn NULL, or called
 * outside a coroutine) or -ENOMEM without running it.  Coroutine. */
VMM_EXPORT VMM_COROUTINE_FN int vmm_thread_pool_co_submit(VmmThreadPoolFunc *fn, void *arg);
/* Callback form: @done(@opaque, ret) runs in @ctx when @fn returns.
 * Returns 0, or -EINVAL (@ctx or @fn NULL) or -ENOMEM and nothing runs.
 * @ctx's thread. */
VMM_EXPORT int vmm_thread_pool_submit(VmmAioContext *ctx, VmmThreadPoolFunc *fn, void *arg,
                                      VmmThreadPoolDone *done, void *opaque);
/* Bound the workers of @ctx's pool to @max (>= 1).  Returns 0, -EINVAL
 * (@ctx NULL or @max < 1) or -ENOMEM.  @ctx's thread. */
VMM_EXPORT int vmm_thread_pool_set_max_workers(VmmAioContext *ctx, int max);

VMM_END_DECLS

#endif /* VMMKIT_COROUTINE_H */
