/* SPDX-License-Identifier: MIT */
/*
 * aio/gsource.c - run an AioContext inside a GLib main loop.
 *
 * The GSource holds a reference on the context; the context points back
 * at it weakly (cleared in finalize).  Every handler's fd is a GPollFD of
 * the source.  io_uring cannot be mixed with GLib's poll, so a context
 * asked for its GSource falls back to ppoll.
 *
 * Barriers: prepare sets bit 0 of notify_me and then reads notified with
 * a seq-cst load (pairs with the xchg of notified in vmm_aio_notify()):
 * either prepare sees a notification and returns "ready", or the notifier
 * sees notify_me != 0 and writes the eventfd GLib is about to poll.
 */
#include <errno.h>

#include "aio/aio-priv.h"
#include "util/atomic.h"

typedef struct AioSource {
    GSource source;
    VmmAioContext *ctx;
} AioSource;

static VmmAioContext *source_ctx(GSource *s)
{
    return ((AioSource *)s)->ctx;
}

static gboolean aio_source_prepare(GSource *s, gint *timeout)
{
    VmmAioContext *ctx = source_ctx(s);

    /* Pairs with the xchg of notified in vmm_aio_notify(). */
    vk_atomic_fetch_or(&ctx->notify_me, 1u);
    int64_t ns = aio_compute_timeout(ctx);
    if (vk_atomic_load_seq_cst(&ctx->notified)) {
        ns = 0;
    }
    *timeout = ns < 0 ? -1 : (gint)((ns + 999999) / 1000000);
    return ns == 0;
}

static gboolean aio_source_check(GSource *s)
{
    VmmAioContext *ctx = source_ctx(s);
    bool ready = false;

    /* We won't block any more: notifiers may skip the eventfd. */
    vk_atomic_fetch_and(&ctx->notify_me, ~1u);
    vk_lockcnt_inc(&ctx->list_lock);
    for (AioHandler *n = vk_atomic_load_acquire(&ctx->handlers); n && !ready;
         n = vk_atomic_load_acquire(&n->next)) {
        ready = n->in_gsource && !vk_atomic_read(&n->deleted) &&
                (n->gpfd.revents & n->gpfd.events);
    }
    vk_lockcnt_dec(&ctx->list_lock);
    return ready || vk_atomic_read(&ctx->notified) || aio_compute_timeout(ctx) == 0;
}

static gboolean aio_source_dispatch(GSource *s, GSourceFunc cb, gpointer user_data)
{
    VmmAioContext *ctx = source_ctx(s);
    AioReadyList ready = { NULL };
    VmmAioContext *saved;

    (void)cb;
    (void)user_data;
    if (!aio_poll_enter(ctx, &saved)) {
        return G_SOURCE_CONTINUE;
    }
    vk_lockcnt_inc(&ctx->list_lock);
    aio_notify_accept(ctx);
    aio_bh_poll(ctx);
    for (AioHandler *n = vk_atomic_load_acquire(&ctx->handlers); n;
         n = vk_atomic_load_acquire(&n->next)) {
        int rev = n->in_gsource ? (n->gpfd.revents & (n->gpfd.events | G_IO_NVAL)) : 0;
        if (!rev || vk_atomic_read(&n->deleted)) {
            continue;
        }
        n->gpfd.revents = 0;
        if (rev & G_IO_NVAL) {
            aio_report_broken(ctx, n);
            continue;
        }
        /* G_IO_IN/OUT/ERR/HUP have poll(2)'s values. */
        aio_ready_add(&ready, n, rev, false);
    }
    aio_dispatch_handlers(ctx, &ready);
    vk_lockcnt_dec(&ctx->list_lock);
    aio_free_deleted_handlers(ctx);
    aio_run_timers(ctx);
    aio_poll_exit(ctx, saved);
    return G_SOURCE_CONTINUE;
}

static void aio_source_finalize(GSource *s)
{
    VmmAioContext *ctx = source_ctx(s);

    vk_lockcnt_lock(&ctx->list_lock);
    for (AioHandler *n = ctx->handlers; n; n = n->next) {
        n->in_gsource = false;
    }
    ctx->source = NULL;
    vk_lockcnt_unlock(&ctx->list_lock);
    vmm_aio_context_unref(ctx);
}

static GSourceFuncs aio_source_funcs = {
    .prepare = aio_source_prepare,
    .check = aio_source_check,
    .dispatch = aio_source_dispatch,
    .finalize = aio_source_finalize,
};

/* Under list_lock. */
void aio_gsource_add_handler(VmmAioContext *ctx, AioHandler *node)
{
    if (!ctx->source || node->in_gsource || node->broken) {
        return;
    }
    node->gpfd.fd = node->fd;
    node->gpfd.events = (node->io_read ? G_IO_IN | G_IO_HUP | G_IO_ERR : 0) |
                        (node->io_write ? G_IO_OUT | G_IO_ERR : 0);
    node->gpfd.revents = 0;
    if (node->gpfd.events) {
        g_source_add_poll(ctx->source, &node->gpfd);
        node->in_gsource = true;
    }
}

/* Under list_lock. */
void aio_gsource_remove_handler(VmmAioContext *ctx, AioHandler *node)
{
    if (ctx->source && node->in_gsource) {
        g_source_remove_poll(ctx->source, &node->gpfd);
    }
    node->in_gsource = false;
}

void *vmm_aio_context_get_g_source(VmmAioContext *ctx)
{
    if (!AIO_CTX_CHECK(ctx)) {
        return NULL;
    }
    vk_lockcnt_lock(&ctx->list_lock);
    if (ctx->source) {
        GSource *s = g_source_ref(ctx->source);
        vk_lockcnt_unlock(&ctx->list_lock);
        return s;
    }
    vk_lockcnt_unlock(&ctx->list_lock);

    /* GLib polls the fds itself; io_uring's polls would compete. */
    fdmon_io_uring_fallback(ctx);

    GSource *s = g_source_new(&aio_source_funcs, sizeof(AioSource));
    ((AioSource *)s)->ctx = ctx;
    vmm_aio_context_ref(ctx);
    g_source_set_can_recurse(s, TRUE);
    g_source_set_name(s, "vmmkit-aio");

    vk_lockcnt_lock(&ctx->list_lock);
    if (ctx->source) {
        /* Lost a race with another caller: use theirs. */
        GSource *theirs = g_source_ref(ctx->source);
        vk_lockcnt_unlock(&ctx->list_lock);
        g_source_unref(s);
        return theirs;
    }
    ctx->source = s;
    for (AioHandler *n = ctx->handlers; n; n = n->next) {
        if (!n->deleted) {
            aio_gsource_add_handler(ctx, n);
        }
    }
    vk_lockcnt_unlock(&ctx->list_lock);
    return s;
}
