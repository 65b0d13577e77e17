/* SPDX-License-Identifier: MIT */
/*
 * aio/timer.c - per-context timers on CLOCK_MONOTONIC.
 *
 * Pending timers form a list sorted by expiry under ctx->timer_lock (they
 * may be armed from any thread); ctx->timer_deadline mirrors the head so
 * that the poller checks "anything due?" with one load and no lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "aio/aio-priv.h"

int64_t vmm_clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);   /* vDSO: no system call */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* All timers of a context (pending or not), so destruction can detach
 * them; under timer_lock.  Kept apart from VmmTimer's sorted link. */
typedef struct TimerNode {
    VmmTimer t;
    struct TimerNode *all_next, **all_pprev;
} TimerNode;

static void update_deadline_locked(VmmAioContext *ctx) VMM_REQUIRES(ctx->timer_lock)
{
    /* Pairs with the acquire in aio_timer_deadline_ns()/aio_run_timers(). */
    vk_atomic_store_release(&ctx->timer_deadline,
                             ctx->timers ? ctx->timers->expire : INT64_MAX);
}

static void timer_unlink_locked(VmmAioContext *ctx, VmmTimer *t) VMM_REQUIRES(ctx->timer_lock)
{
    if (t->expire < 0) {
        return;
    }
    for (VmmTimer **p = &ctx->timers; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    t->next = NULL;
    t->expire = -1;
}

static TimerNode **all_timers(VmmAioContext *ctx)
{
    return (TimerNode **)&ctx->all_timers;
}

VmmTimer *vmm_timer_new(VmmAioContext *ctx, VmmTimerFunc *cb, void *opaque)
{
    if (!AIO_CTX_CHECK_ERR(ctx)) {
        return NULL;
    }
    if (!cb) {
        VMM_MISUSE_ERR(0, "timer without a callback");
        return NULL;
    }
    TimerNode *n = calloc(1, sizeof(*n));
    if (!n) {
        return NULL;
    }
    n->t.ctx = ctx;
    n->t.cb = cb;
    n->t.opaque = opaque;
    n->t.expire = -1;
    aio_mutex_lock(&ctx->timer_lock);
    TimerNode **head = all_timers(ctx);
    n->all_next = *head;
    if (n->all_next) {
        n->all_next->all_pprev = &n->all_next;
    }
    *head = n;
    n->all_pprev = head;
    aio_mutex_unlock(&ctx->timer_lock);
    return &n->t;
}

static VmmAioContext *timer_ctx(VmmTimer *t, const char *func)
{
    if (!t) {
        vk_misuse(func, "NULL timer");
        return NULL;
    }
    VmmAioContext *ctx = vk_atomic_read(&t->ctx);
    if (!ctx) {
        vk_misuse(func, "timer used after its context was destroyed");
    }
    return ctx;
}

void vmm_timer_mod(VmmTimer *t, int64_t expire_ns)
{
    VmmAioContext *ctx = timer_ctx(t, __func__);
    bool first;

    if (!ctx) {
        return;
    }
    if (expire_ns < 0) {
        expire_ns = 0;
    }
    aio_mutex_lock(&ctx->timer_lock);
    timer_unlink_locked(ctx, t);
    VmmTimer **p = &ctx->timers;
    while (*p && (*p)->expire <= expire_ns) {
        p = &(*p)->next;
    }
    t->expire = expire_ns;
    t->next = *p;
    *p = t;
    first = ctx->timers == t;
    update_deadline_locked(ctx);
    aio_mutex_unlock(&ctx->timer_lock);
    if (first) {
        /* A poller may be blocking with a later deadline. */
        vmm_aio_notify(ctx);
    }
}

void vmm_timer_del(VmmTimer *t)
{
    VmmAioContext *ctx = timer_ctx(t, __func__);

    if (!ctx) {
        return;
    }
    aio_mutex_lock(&ctx->timer_lock);
    timer_unlink_locked(ctx, t);
    update_deadline_locked(ctx);
    aio_mutex_unlock(&ctx->timer_lock);
}

bool vmm_timer_pending(VmmTimer *t)
{
    VmmAioContext *ctx = timer_ctx(t, __func__);
    bool pending;

    if (!ctx) {
        return false;
    }
    aio_mutex_lock(&ctx->timer_lock);
    pending = t->expire >= 0;
    aio_mutex_unlock(&ctx->timer_lock);
    return pending;
}

void vmm_timer_free(VmmTimer *t)
{
    if (!t) {
        return;
    }
    TimerNode *n = vk_container_of(t, TimerNode, t);
    VmmAioContext *ctx = vk_atomic_read(&t->ctx);
    if (ctx) {
        aio_mutex_lock(&ctx->timer_lock);
        timer_unlink_locked(ctx, t);
        update_deadline_locked(ctx);
        *n->all_pprev = n->all_next;
        if (n->all_next) {
            n->all_next->all_pprev = n->all_pprev;
        }
        aio_mutex_unlock(&ctx->timer_lock);
    }
    free(n);
}

int64_t aio_timer_deadline_ns(VmmAioContext *ctx)
{
    int64_t dl = vk_atomic_load_acquire(&ctx->timer_deadline);

    if (dl == INT64_MAX) {
        return -1;
    }
    int64_t now = vmm_clock_ns();
    return dl <= now ? 0 : dl - now;
}

/* Run expired timers.  Home thread. */
bool aio_run_timers(VmmAioContext *ctx)
{
    int64_t dl = vk_atomic_load_acquire(&ctx->timer_deadline);
    bool progress = false;
    int64_t now;
    VmmTimer *t;

    if (dl == INT64_MAX || (now = vmm_clock_ns()) < dl) {
        return false;
    }
    aio_mutex_lock(&ctx->timer_lock);
    while ((t = ctx->timers) && t->expire <= now) {
        ctx->timers = t->next;
        t->next = NULL;
        t->expire = -1;
        update_deadline_locked(ctx);
        VmmTimerFunc *cb = t->cb;
        void *opaque = t->opaque;
        aio_mutex_unlock(&ctx->timer_lock);
        cb(opaque);          /* may re-arm, delete or free t */
        progress = true;
        aio_mutex_lock(&ctx->timer_lock);
    }
    aio_mutex_unlock(&ctx->timer_lock);
    return progress;
}

void aio_timers_destroy(VmmAioContext *ctx)
{
    aio_mutex_lock(&ctx->timer_lock);
    for (TimerNode *n = *all_timers(ctx); n; n = n->all_next) {
        if (n->t.expire >= 0) {
            vk_warn("context '%s' destroyed with a timer still armed", ctx->name);
        }
        n->t.expire = -1;
        n->t.next = NULL;
        vk_atomic_set(&n->t.ctx, NULL);
        n->all_pprev = NULL;
    }
    *all_timers(ctx) = NULL;
    ctx->timers = NULL;
    update_deadline_locked(ctx);
    aio_mutex_unlock(&ctx->timer_lock);
}
