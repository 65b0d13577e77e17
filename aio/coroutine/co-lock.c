/* SPDX-License-Identifier: MIT */
/*
 * Coroutine locks: CoQueue, CoMutex, CoRwlock.
 *
 * None of them blocks a thread: a coroutine that must wait queues itself
 * and yields, and whoever releases the lock wakes it with
 * co_wake_by(), which runs it in the context it last ran in (in that
 * context's thread, via a BH, when the waker is elsewhere).  Their small
 * internal state is guarded by a spinlock whose critical sections never
 * yield.
 *
 * CoMutex: "locked" counts the holder plus the waiters.  lock() takes it
 * with a cmpxchg 0 -> 1 when it is free (one atomic RMW, the uncontended
 * path); while the holder runs in another context it retries for a short
 * spin; then it increments "locked" and, unless that found 0, queues under
 * the spinlock and yields.  unlock()
 * decrements; from 1 nobody waits.  Otherwise ownership is handed directly
 * to the first queued waiter, which resumes owning the mutex: no barging,
 * strict FIFO among queued waiters, and the mutex never looks free while
 * someone waits.  A waiter that counted itself but has not queued yet when
 * the unlocker looks finds a "handoff" credit instead and proceeds owning
 * the mutex (QEMU's lock-free CoMutex solves the same race with its
 * handoff/sequence pair).
 * Barrier pairs: the fetch_add in lock() <-> the fetch_sub in unlock()
 * (both seq_cst): the new holder sees what the previous holder wrote.  On
 * a hand-off the chain is unlock's spinlock release -> waiter's wake-up
 * (schedule cmpxchg / BH exchange) -> the waiter.
 *
 * CoRwlock: FIFO tickets (the algorithm QEMU adopted in 2021 after its
 * downgrade bug).  "owners" is >0 for readers, -1 for a writer.  Whoever
 * grants the head ticket sets "owners" for the woken coroutine *before*
 * waking it, so nobody can slip in between the release and the wake-up.
 * New readers queue behind any waiting ticket (so writers do not starve);
 * a granted reader grants the next ticket if it is a reader too.
 */
#include <sched.h>
#include <string.h>

#include "coroutine-int.h"
#include "util/atomic.h"
#include "util/log.h"

void co_spin_lock_slow(VmmCoSpin *s)
{
    for (unsigned n = 0;; n++) {
        if (!vk_atomic_read(&s->v) && !vk_atomic_xchg_acquire(&s->v, 1)) {
            return;
        }
        if (n < 64) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ volatile("yield");
#endif
        } else {
            sched_yield();
        }
    }
}

static struct VmmCoroutine *self_or_misuse(const char *func)
{
    struct VmmCoroutine *self = co_current();

    if (vk_unlikely(!self)) {
        vk_misuse(func, "called outside a coroutine");
    }
    return self;
}

/* ---- CoMutex ------------------------------------------------------------------- */

typedef struct CoMutexImpl {
    uint32_t locked;                /* atomic: holder + waiters */
    uint32_t handoff;               /* under spin */
    VmmCoSpin spin;
    uint32_t pad_;
    VmmCoFifo waiters;              /* under spin */
    struct VmmCoroutine *holder;    /* atomic, diagnostics only */
    VmmAioContext *holder_ctx;      /* atomic: where the holder runs */
} CoMutexImpl;

/* Pause iterations a locker spends retrying while the holder runs in
 * another context (thread), before queueing: a cross-thread wake-up costs
 * several microseconds, a short critical section much less. */
#define MUTEX_SPIN 200

_Static_assert(sizeof(CoMutexImpl) <= sizeof(VmmCoMutex), "VmmCoMutex too small");

static CoMutexImpl *mutex_impl(VmmCoMutex *m)
{
    return (CoMutexImpl *)m;
}

void vmm_co_mutex_init(VmmCoMutex *m)
{
    CoMutexImpl *mi = mutex_impl(m);

    memset(m, 0, sizeof(*m));
    co_fifo_init(&mi->waiters);
}

/* Waits for ownership after lock() found the mutex taken. */
static void mutex_lock_slow(CoMutexImpl *mi, struct VmmCoroutine *self)
{
    co_spin_lock(&mi->spin);
    if (mi->handoff) {
        /* An unlocker passed ownership to "the next waiter" before any
         * waiter had queued: that is us. */
        mi->handoff--;
        co_spin_unlock(&mi->spin);
        return;
    }
    co_fifo_push(&mi->waiters, self);
    co_spin_unlock(&mi->spin);
    vmm_coroutine_yield();
    /* Woken by mutex_unlock(): we own it. */
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Free (no holder, no waiter)?  Then take it: same as fetch_add from 0. */
static inline bool mutex_try(CoMutexImpl *mi)
{
    /* Pairs with the fetch_sub in vmm_co_mutex_unlock(). */
    return vk_atomic_read(&mi->locked) == 0 && vk_atomic_cmpxchg(&mi->locked, 0, 1) == 0;
}

void vmm_co_mutex_lock(VmmCoMutex *m) VMM_NO_TSA
{
    CoMutexImpl *mi = mutex_impl(m);
    struct VmmCoroutine *self = self_or_misuse(__func__);
    VmmAioContext *my_ctx;

    if (!self) {
        return;
    }
    my_ctx = vk_atomic_read(&self->ctx);
    /* Pairs with the fetch_sub in vmm_co_mutex_unlock(). */
    if (vk_unlikely(vk_atomic_cmpxchg(&mi->locked, 0, 1) != 0)) {
        /* Spin only while the holder runs elsewhere: one in our own
         * context cannot make progress until we yield.  locked == 0 means
         * nobody is queued either, so spinning never overtakes a waiter. */
        VmmAioContext *hctx = vk_atomic_read(&mi->holder_ctx);
        bool got = false;

        for (int i = 0; hctx && hctx != my_ctx && i < MUTEX_SPIN; i++) {
            cpu_relax();
            if (mutex_try(mi)) {
                got = true;
                break;
            }
        }
        /* Pairs with the fetch_sub in vmm_co_mutex_unlock(). */
        if (!got && vk_atomic_fetch_add(&mi->locked, 1) != 0) {
            mutex_lock_slow(mi, self);
            my_ctx = vk_atomic_read(&self->ctx);   /* may have moved */
        }
    }
    vk_atomic_set(&mi->holder, self);
    vk_atomic_set(&mi->holder_ctx, my_ctx);
    self->locks_held++;
}

void vmm_co_mutex_unlock(VmmCoMutex *m) VMM_NO_TSA
{
    CoMutexImpl *mi = mutex_impl(m);
    struct VmmCoroutine *self = self_or_misuse(__func__);
    struct VmmCoroutine *next;

    if (!self) {
        return;
    }
    if (vk_unlikely(vk_atomic_read(&mi->holder) != self)) {
        VMM_MISUSE("CoMutex %p unlocked by coroutine %p, which does not hold it",
                   (void *)m, (void *)self);
        return;
    }
    vk_atomic_set(&mi->holder, NULL);
    vk_atomic_set(&mi->holder_ctx, NULL);
    self->locks_held--;
    /* Pairs with the fetch_add in vmm_co_mutex_lock(). */
    if (vk_atomic_fetch_sub(&mi->locked, 1) == 1) {
        return;
    }
    /* Someone counted itself in: ownership goes to the first waiter. */
    co_spin_lock(&mi->spin);
    next = co_fifo_pop(&mi->waiters);
    if (!next) {
        mi->handoff++;
    }
    co_spin_unlock(&mi->spin);
    if (next) {
        co_wake_by(next, "vmm_co_mutex_unlock", __builtin_return_address(0));
    }
}

/* ---- CoQueue --------------------------------------------------------------------- */

static VmmCoFifo *queue_fifo(VmmCoQueue *q)
{
    return (VmmCoFifo *)q;
}

_Static_assert(sizeof(VmmCoFifo) <= sizeof(VmmCoQueue), "VmmCoQueue too small");

void vmm_co_queue_init(VmmCoQueue *q)
{
    co_fifo_init(queue_fifo(q));
}

void vmm_co_queue_wait(VmmCoQueue *q, VmmCoMutex *m) VMM_NO_TSA
{
    struct VmmCoroutine *self = self_or_misuse(__func__);

    if (!self) {
        return;
    }
    co_fifo_push(queue_fifo(q), self);
    if (m) {
        vmm_co_mutex_unlock(m);
    }
    vmm_coroutine_yield();
    if (m) {
        vmm_co_mutex_lock(m);
    }
}

void vmm_co_queue_wait_pthread(VmmCoQueue *q, pthread_mutex_t *lock)
{
    struct VmmCoroutine *self = self_or_misuse(__func__);

    if (!self) {
        return;
    }
    co_fifo_push(queue_fifo(q), self);
    if (lock) {
        pthread_mutex_unlock(lock);
    }
    vmm_coroutine_yield();
    if (lock) {
        pthread_mutex_lock(lock);
    }
}

bool vmm_co_queue_next(VmmCoQueue *q)
{
    struct VmmCoroutine *co = co_fifo_pop(queue_fifo(q));

    if (co) {
        co_wake_by(co, "vmm_co_queue_next", __builtin_return_address(0));
    }
    return co != NULL;
}

void vmm_co_queue_restart_all(VmmCoQueue *q)
{
    struct VmmCoroutine *co;

    while ((co = co_fifo_pop(queue_fifo(q)))) {
        co_wake_by(co, "vmm_co_queue_restart_all", __builtin_return_address(0));
    }
}

bool vmm_co_enter_next(VmmCoQueue *q, pthread_mutex_t *lock)
{
    struct VmmCoroutine *co = co_fifo_pop(queue_fifo(q));

    if (!co) {
        return false;
    }
    /* The woken coroutine may take @lock itself (it may run right here). */
    if (lock) {
        pthread_mutex_unlock(lock);
    }
    co_wake_by(co, "vmm_co_enter_next", __builtin_return_address(0));
    if (lock) {
        pthread_mutex_lock(lock);
    }
    return true;
}

void vmm_co_enter_all(VmmCoQueue *q, pthread_mutex_t *lock)
{
    while (vmm_co_enter_next(q, lock)) {
    }
}

bool vmm_co_queue_empty(VmmCoQueue *q)
{
    return queue_fifo(q)->head == NULL;
}

/* ---- CoRwlock ---------------------------------------------------------------------- */

typedef struct RwTicket {
    bool read;
    struct VmmCoroutine *co;
    struct RwTicket *next;
} RwTicket;

typedef struct CoRwImpl {
    VmmCoSpin spin;
    int32_t owners;                 /* under spin: >0 readers, -1 writer */
    RwTicket *head;                 /* under spin */
    RwTicket **tailp;               /* under spin */
} CoRwImpl;

_Static_assert(sizeof(CoRwImpl) <= sizeof(VmmCoRwlock), "VmmCoRwlock too small");

static CoRwImpl *rw_impl(VmmCoRwlock *l)
{
    return (CoRwImpl *)l;
}

void vmm_co_rwlock_init(VmmCoRwlock *l) VMM_NO_TSA
{
    CoRwImpl *rw = rw_impl(l);

    memset(l, 0, sizeof(*l));
    rw->tailp = &rw->head;
}

static void rw_enqueue(CoRwImpl *rw, RwTicket *t) VMM_REQUIRES(rw->spin)
{
    t->next = NULL;
    if (!rw->tailp) {
        rw->tailp = &rw->head;
    }
    *rw->tailp = t;
    rw->tailp = &t->next;
}

/*
 * Grant the head ticket if it is compatible with the current owners,
 * updating "owners" for it, then drop the spinlock and wake it.
 */
static void rw_grant_one(CoRwImpl *rw) VMM_RELEASE(rw->spin)
{
    RwTicket *t = rw->head;
    struct VmmCoroutine *co = NULL;

    if (t && (t->read ? rw->owners >= 0 : rw->owners == 0)) {
        rw->owners = t->read ? rw->owners + 1 : -1;
        co = t->co;
        rw->head = t->next;
        if (!rw->head) {
            rw->tailp = &rw->head;
        }
    }
    co_spin_unlock(&rw->spin);
    if (co) {
        co_wake_by(co, "CoRwlock grant", __builtin_return_address(0));
    }
}

static void rw_wait(CoRwImpl *rw, struct VmmCoroutine *self, bool read)
    VMM_RELEASE(rw->spin)
{
    RwTicket t = { .read = read, .co = self };

    rw_enqueue(rw, &t);
    co_spin_unlock(&rw->spin);
    vmm_coroutine_yield();
    /* Granted: "owners" already counts us. */
}

void vmm_co_rwlock_rdlock(VmmCoRwlock *l) VMM_NO_TSA
{
    CoRwImpl *rw = rw_impl(l);
    struct VmmCoroutine *self = self_or_misuse(__func__);

    if (!self) {
        return;
    }
    co_spin_lock(&rw->spin);
    /* Queue behind any waiting ticket, so a waiting writer is not starved. */
    if (rw->owners >= 0 && !rw->head) {
        rw->owners++;
        co_spin_unlock(&rw->spin);
    } else {
        rw_wait(rw, self, true);
        /* Readers queued right behind us may go too: they wake each other
         * one by one down the run of read tickets. */
        co_spin_lock(&rw->spin);
        rw_grant_one(rw);
    }
    self->locks_held++;
}

void vmm_co_rwlock_wrlock(VmmCoRwlock *l) VMM_NO_TSA
{
    CoRwImpl *rw = rw_impl(l);
    struct VmmCoroutine *self = self_or_misuse(__func__);

    if (!self) {
        return;
    }
    co_spin_lock(&rw->spin);
    if (rw->owners == 0 && !rw->head) {
        rw->owners = -1;
        co_spin_unlock(&rw->spin);
    } else {
        rw_wait(rw, self, false);
    }
    self->locks_held++;
}

void vmm_co_rwlock_unlock(VmmCoRwlock *l) VMM_NO_TSA
{
    CoRwImpl *rw = rw_impl(l);
    struct VmmCoroutine *self = self_or_misuse(__func__);

    if (!self) {
        return;
    }
    co_spin_lock(&rw->spin);
    if (vk_unlikely(rw->owners == 0)) {
        co_spin_unlock(&rw->spin);
        VMM_MISUSE("CoRwlock %p unlocked while not held", (void *)l);
        return;
    }
    rw->owners = rw->owners > 0 ? rw->owners - 1 : 0;
    self->locks_held--;
    rw_grant_one(rw);
}

void vmm_co_rwlock_downgrade(VmmCoRwlock *l) VMM_NO_TSA
{
    CoRwImpl *rw = rw_impl(l);

    if (!self_or_misuse(__func__)) {
        return;
    }
    co_spin_lock(&rw->spin);
    if (vk_unlikely(rw->owners != -1)) {
        co_spin_unlock(&rw->spin);
        VMM_MISUSE("CoRwlock %p downgraded without a write hold", (void *)l);
        return;
    }
    rw->owners = 1;
    /* Readers at the head of the queue may now share the lock with us. */
    rw_grant_one(rw);
}

void vmm_co_rwlock_upgrade(VmmCoRwlock *l) VMM_NO_TSA
{
    CoRwImpl *rw = rw_impl(l);
    struct VmmCoroutine *self = self_or_misuse(__func__);

    if (!self) {
        return;
    }
    co_spin_lock(&rw->spin);
    if (vk_unlikely(rw->owners <= 0)) {
        co_spin_unlock(&rw->spin);
        VMM_MISUSE("CoRwlock %p upgraded without a read hold", (void *)l);
        return;
    }
    if (rw->owners == 1 && !rw->head) {
        rw->owners = -1;
        co_spin_unlock(&rw->spin);
        return;
    }
    /* Give up our read hold and queue as a writer at the tail (fairness:
     * waiting writers go first), letting the head ticket in if it can. */
    RwTicket t = { .read = false, .co = self };

    rw->owners--;
    rw_enqueue(rw, &t);
    rw_grant_one(rw);
    vmm_coroutine_yield();
}
