/* SPDX-License-Identifier: MIT */
/*
 * Scheduling coroutines across AioContexts.
 *
 * Each context has (in a private slot) a lock-free LIFO of scheduled
 * coroutines and one BH.  vmm_aio_co_schedule() claims co->scheduled with a
 * cmpxchg (a second schedule before the first ran is reported, naming the
 * first scheduler), pushes, and schedules the BH.  The BH takes the whole
 * list at once, reverses it into FIFO order, clears co->scheduled and
 * enters each coroutine in that context.
 *
 * Barrier pairs:
 *  - push (cmpxchg, seq_cst)  <->  the BH's exchange of the list head
 *    (seq_cst): everything the scheduler wrote before scheduling is seen by
 *    the coroutine when it runs;
 *  - co->ctx: store-release in co_enter_ctx()  <->  load-acquire in
 *    vmm_aio_co_wake(), so a waker sees the context the coroutine runs in.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "aio/aio-internal.h"
#include "coroutine-int.h"
#include "util/atomic.h"
#include "util/log.h"
#include "util/trace.h"

typedef struct CoSched {
    VmmAioContext *ctx;
    VmmBH *bh;
    struct VmmCoroutine *head;      /* atomic LIFO through sched_next */
} CoSched;

static int sched_key = -1;
static pthread_once_t sched_once = PTHREAD_ONCE_INIT;

static void sched_destroy(VmmAioContext *ctx, void *value)
{
    CoSched *s = value;

    (void)ctx;
    if (vk_atomic_read(&s->head)) {
        /* Contexts die with no reference left, so nobody can run these. */
        vk_error("context '%s' destroyed with coroutines still scheduled on it",
                  aio_context_name(s->ctx));
    }
    vmm_bh_delete(s->bh);
    free(s);
}

static void sched_key_init(void)
{
    sched_key = aio_slot_key_new("coroutine-schedule", sched_destroy);
    if (sched_key < 0) {
        vk_error("coroutine scheduling: no context slot left (%d)", sched_key);
    }
}

static void sched_bh(void *opaque)
{
    CoSched *s = opaque;
    /* Pairs with the cmpxchg in sched_push(). */
    struct VmmCoroutine *lifo = vk_atomic_xchg(&s->head, NULL);
    struct VmmCoroutine *fifo = NULL;

    while (lifo) {
        struct VmmCoroutine *next = lifo->sched_next;
        lifo->sched_next = fifo;
        fifo = lifo;
        lifo = next;
    }
    while (fifo) {
        struct VmmCoroutine *co = fifo;
        fifo = co->sched_next;
        co->sched_next = NULL;
        vk_atomic_set(&co->scheduled, NULL);
        TRACE_PROBE(co_scheduled_enter, s->ctx, co);
        co_enter_ctx(s->ctx, co);
    }
}

static void *sched_create(VmmAioContext *ctx, void *arg)
{
    CoSched *s = calloc(1, sizeof(*s));

    (void)arg;
    if (!s) {
        return NULL;
    }
    s->ctx = ctx;
    s->bh = vmm_bh_new(ctx, sched_bh, s, "coroutine-schedule");
    if (!s->bh) {
        free(s);
        return NULL;
    }
    return s;
}

static CoSched *sched_get(VmmAioContext *ctx)
{
    pthread_once(&sched_once, sched_key_init);
    if (sched_key < 0) {
        return NULL;
    }
    return aio_slot_get_or_create(ctx, sched_key, sched_create, NULL);
}

/* Names the code that scheduled a coroutine, for the double-schedule report. */
static const char *caller_name(const void *addr, char *buf, size_t len)
{
    Dl_info info;

    if (addr && dladdr(addr, &info) && info.dli_sname) {
        snprintf(buf, len, "%s", info.dli_sname);
    } else {
        snprintf(buf, len, "%p", addr);
    }
    return buf;
}

void co_schedule_by(VmmAioContext *ctx, struct VmmCoroutine *co,
                        const char *who, const void *where)
{
    const char *prev;
    CoSched *s;

    TRACE_PROBE(co_schedule, ctx, co);
    prev = vk_atomic_cmpxchg(&co->scheduled, NULL, who);
    if (vk_unlikely(prev)) {
        char a[128], b[128];
        VMM_MISUSE("coroutine %p scheduled by %s (from %s) while already scheduled "
                   "by %s (from %s)", (void *)co, who, caller_name(where, a, sizeof(a)),
                   prev, caller_name(co->sched_where, b, sizeof(b)));
        return;
    }
    co->sched_where = where;
    s = sched_get(ctx);
    if (vk_unlikely(!s)) {
        /* Out of memory for the context's first schedule: nothing to queue
         * on.  Leave the coroutine unscheduled rather than lose it silently. */
        vk_error("cannot schedule coroutine %p on context '%s': out of memory",
                  (void *)co, aio_context_name(ctx));
        vk_atomic_set(&co->scheduled, NULL);
        return;
    }
    /* The coroutine may run, finish and drop the last reference to @ctx
     * before vmm_bh_schedule() returns: hold one across. */
    vmm_aio_context_ref(ctx);
    struct VmmCoroutine *old = vk_atomic_read(&s->head);
    for (;;) {
        struct VmmCoroutine *seen;

        co->sched_next = old;
        /* Pairs with the exchange in sched_bh(). */
        seen = vk_atomic_cmpxchg(&s->head, old, co);
        if (seen == old) {
            break;
        }
        old = seen;
    }
    vmm_bh_schedule(s->bh);
    vmm_aio_context_unref(ctx);
}

void vmm_aio_co_schedule(VmmAioContext *ctx, VmmCoroutine *co)
{
    if (!ctx || !co) {
        VMM_MISUSE("NULL %s", ctx ? "coroutine" : "context");
        return;
    }
    co_schedule_by(ctx, co, "vmm_aio_co_schedule", __builtin_return_address(0));
}

void co_enter_from(VmmAioContext *ctx, struct VmmCoroutine *co,
                       const char *who, const void *where)
{
    if (!vmm_aio_context_in_thread(ctx)) {
        co_schedule_by(ctx, co, who, where);
    } else if (co_current()) {
        /* Runs right after the running coroutine yields. */
        co_queue_wakeup_by(co, who, where);
    } else {
        co_enter_ctx(ctx, co);
    }
}

void vmm_aio_co_enter(VmmAioContext *ctx, VmmCoroutine *co)
{
    if (!ctx || !co) {
        VMM_MISUSE("NULL %s", ctx ? "coroutine" : "context");
        return;
    }
    co_enter_from(ctx, co, "vmm_aio_co_enter", __builtin_return_address(0));
}

void co_wake_by(struct VmmCoroutine *co, const char *who, const void *where)
{
    /* Pairs with the store-release of co->ctx in co_enter_ctx(). */
    VmmAioContext *ctx = vk_atomic_load_acquire(&co->ctx);

    if (!ctx) {
        ctx = vmm_aio_context_current();    /* never entered yet */
    }
    co_enter_from(ctx, co, who, where);
}

void vmm_aio_co_wake(VmmCoroutine *co)
{
    if (!co) {
        VMM_MISUSE("NULL coroutine");
        return;
    }
    co_wake_by(co, "vmm_aio_co_wake", __builtin_return_address(0));
}

void vmm_aio_co_reschedule_self(VmmAioContext *ctx)
{
    struct VmmCoroutine *self = co_current();

    if (!self || !ctx) {
        VMM_MISUSE("%s", self ? "NULL context" : "called outside a coroutine");
        return;
    }
    if (vk_atomic_read(&self->ctx) == ctx && vmm_aio_context_in_thread(ctx)) {
        return;
    }
    /*
     * Scheduling ourselves now would race: the other thread could enter
     * us before we have switched out.  Whoever we yield to schedules us
     * once the switch is complete (co_enter_ctx()).
     */
    vmm_aio_context_ref(ctx);
    self->resched_ctx = ctx;
    self->resched_where = __builtin_return_address(0);
    vmm_coroutine_yield();
    vmm_aio_context_unref(ctx);
}

/* ---- Synchronous wrapper ------------------------------------------------ */

typedef struct SyncRun {
    VmmCoroutineEntry *entry;
    void *opaque;
    bool done;
} SyncRun;

static void sync_entry(void *opaque)
{
    SyncRun *r = opaque;

    r->entry(r->opaque);
    /* Pairs with the load-acquire in vmm_co_run_sync()'s loop. */
    vk_atomic_store_release(&r->done, true);
    vmm_aio_wait_kick();
}

int vmm_co_run_sync(VmmAioContext *ctx, VmmCoroutineEntry *entry, void *opaque)
{
    SyncRun r = { .entry = entry, .opaque = opaque };
    VmmCoroutine *co;
    int err = 0;

    if (!entry || !ctx) {
        return VMM_MISUSE_ERR(-EINVAL, "NULL %s", entry ? "context" : "entry");
    }
    if (vmm_in_coroutine()) {
        entry(opaque);
        return 0;
    }
    co = vmm_coroutine_create(sync_entry, &r, &err);
    if (!co) {
        return err;
    }
    co_enter_from(ctx, co, "vmm_co_run_sync", __builtin_return_address(0));
    if (vmm_aio_context_in_thread(ctx)) {
        /* Pairs with the store-release in sync_entry(). */
        while (!vk_atomic_load_acquire(&r.done)) {
            vmm_aio_poll(ctx, true);
        }
    } else {
        /* The main loop waiting for another thread's context: that thread
         * runs the coroutine and sync_entry() kicks us. */
        VMM_AIO_WAIT_WHILE(ctx, !vk_atomic_load_acquire(&r.done));
    }
    return 0;
}
