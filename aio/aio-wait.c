/* SPDX-License-Identifier: MIT */
/*
 * aio/aio-wait.c - VMM_AIO_WAIT_WHILE support: a process-wide count of
 * waiters, and a kick that wakes the main loop when someone waits.
 *
 * Barrier pair: a waiter increments num_waiters and then (full barrier)
 * evaluates its condition; a kicker changes the state the condition reads
 * and then (full barrier) reads num_waiters.  One of them sees the other:
 * the waiter sees the new state, or the kicker sees the waiter and
 * schedules a BH on the main context, so the waiter's poll returns.
 */
#include <errno.h>

#include "aio/aio-priv.h"

static unsigned num_waiters;

void vmm_aio_wait_begin_(void)
{
    vk_atomic_fetch_add(&num_waiters, 1);
    vk_smp_mb();   /* pairs with the vk_smp_mb() in vmm_aio_wait_kick() */
}

void vmm_aio_wait_end_(void)
{
    vk_atomic_fetch_sub(&num_waiters, 1);
}

static void aio_wait_dummy_bh(void *opaque)
{
    (void)opaque;   /* the waiter's poll returning is the point */
}

void vmm_aio_wait_kick(void)
{
    vk_smp_mb();   /* pairs with the vk_smp_mb() in vmm_aio_wait_begin_() */
    if (vk_atomic_read(&num_waiters)) {
        vmm_bh_schedule_oneshot(vmm_aio_context_main(), aio_wait_dummy_bh, NULL,
                                "aio_wait_kick");
    }
}

static void set_flag(void *opaque)
{
    *(bool *)opaque = true;
}

int vmm_aio_wait_while_timeout_(VmmAioContext *ctx, bool (*cond)(void *), void *opaque,
                                int64_t ns)
{
    VmmAioContext *main_ctx = vmm_aio_context_main();
    VmmAioContext *pctx = ctx && ctx != main_ctx && vmm_aio_context_in_thread(ctx)
                          ? ctx : main_ctx;
    VmmTimer *timer = NULL;
    bool expired = false;
    int ret = 0;

    if (!cond) {
        return -EINVAL;
    }
    if (ns > 0) {
        timer = vmm_timer_new(pctx, set_flag, &expired);
        if (!timer) {
            return -ENOMEM;
        }
        vmm_timer_mod(timer, vmm_clock_ns() + ns);
    }
    vmm_aio_wait_begin_();
    while (cond(opaque)) {
        if (expired) {
            ret = -ETIMEDOUT;
            break;
        }
        vmm_aio_poll(pctx, true);
    }
    vmm_aio_wait_end_();
    vmm_timer_free(timer);
    return ret;
}

typedef struct RunIn {
    void (*fn)(void *opaque);
    void *opaque;
    bool done;
} RunIn;

static void run_in_bh(void *opaque)
{
    RunIn *r = opaque;
    r->fn(r->opaque);
    /* Release: pairs with the acquire in aio_run_in_context()'s wait. */
    vk_atomic_store_release(&r->done, true);
    vmm_aio_wait_kick();
}

int aio_run_in_context(VmmAioContext *ctx, void (*fn)(void *opaque), void *opaque)
{
    if (vmm_aio_context_in_thread(ctx)) {
        fn(opaque);
        return 0;
    }
    RunIn r = { .fn = fn, .opaque = opaque };
    int ret = vmm_bh_schedule_oneshot(ctx, run_in_bh, &r, "aio-run-in");
    if (ret < 0) {
        return ret;
    }
    VMM_AIO_WAIT_WHILE(ctx, !vk_atomic_load_acquire(&r.done));
    return 0;
}

static void barrier_fn(void *opaque)
{
    (void)opaque;
}

int aio_context_barrier(VmmAioContext *ctx)
{
    if (!ctx || vmm_aio_context_in_thread(ctx) || !vk_atomic_read(&ctx->home)) {
        return 0;
    }
    return aio_run_in_context(ctx, barrier_fn, NULL);
}

int aio_bh_delete_sync(VmmBH *bh)
{
    if (!bh) {
        return 0;
    }
    /* Read before the delete, which may free @bh; the context cannot go
     * meanwhile: it is destroyed from the main loop, this thread. */
    VmmAioContext *ctx = vk_atomic_read(&bh->ctx);
    vmm_bh_delete(bh);
    return aio_context_barrier(ctx);
}
