/* SPDX-License-Identifier: MIT */
/*
 * aio/fdmon-epoll.c - the epoll(7) fd monitor, used past
 * FDMON_EPOLL_THRESHOLD handlers (ppoll's cost grows with the fd count).
 * An epoll_ctl failure (some fd types refuse epoll) switches the context
 * back to ppoll at its next wait.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "aio/aio-priv.h"


static uint32_t node_epoll_events(AioHandler *node)
{
    return (node->io_read ? EPOLLIN | EPOLLRDHUP : 0) | (node->io_write ? EPOLLOUT : 0);
}

static int epoll_add(VmmAioContext *ctx, AioHandler *node, int op)
{
    struct epoll_event ev = { .events = node_epoll_events(node), .data.ptr = node };

    if (epoll_ctl(ctx->epollfd, op, node->fd, &ev) < 0) {
        return -errno;
    }
    node->in_epoll = true;
    return 0;
}

/* Under list_lock. */
static void fdmon_epoll_update(VmmAioContext *ctx, AioHandler *old, AioHandler *new_node)
{
    bool old_in = old && old->in_epoll;
    bool new_wants = new_node && node_epoll_events(new_node);
    int r = 0;

    if (old_in && new_wants) {
        r = epoll_add(ctx, new_node, EPOLL_CTL_MOD);
    } else if (new_wants) {
        r = epoll_add(ctx, new_node, EPOLL_CTL_ADD);
    } else if (old_in) {
        struct epoll_event ev = { 0 };
        if (epoll_ctl(ctx->epollfd, EPOLL_CTL_DEL, old->fd, &ev) < 0 && errno != EBADF &&
            errno != ENOENT) {
            r = -errno;
        }
    }
    if (old) {
        old->in_epoll = false;
    }
    if (r < 0) {
        /* The home thread switches back to ppoll at its next wait. */
        vk_atomic_set(&ctx->epoll_failed, true);
        vmm_aio_notify(ctx);
    }
}

/* Home thread, inside the count: swap monitors under the lock. */
bool fdmon_epoll_try_enable(VmmAioContext *ctx)
{
    bool ok = false;

    vk_lockcnt_lock(&ctx->list_lock);
    if (ctx->fdmon == &fdmon_epoll_ops) {
        ok = true;
        goto out;
    }
    if (ctx->fdmon != &fdmon_poll_ops) {
        goto out;
    }
    ctx->epollfd = epoll_create1(EPOLL_CLOEXEC);
    if (ctx->epollfd < 0) {
        goto out;
    }
    for (AioHandler *n = ctx->handlers; n; n = n->next) {
        if (!n->deleted && node_epoll_events(n) && epoll_add(ctx, n, EPOLL_CTL_ADD) < 0) {
            for (AioHandler *m = ctx->handlers; m; m = m->next) {
                m->in_epoll = false;
            }
            close(ctx->epollfd);
            ctx->epollfd = -1;
            goto out;
        }
    }
    ctx->epoll_failed = false;
    ctx->fdmon = &fdmon_epoll_ops;
    ok = true;
out:
    vk_lockcnt_unlock(&ctx->list_lock);
    return ok;
}

static void epoll_disable(VmmAioContext *ctx)
{
    vk_lockcnt_lock(&ctx->list_lock);
    for (AioHandler *n = ctx->handlers; n; n = n->next) {
        n->in_epoll = false;
    }
    close(ctx->epollfd);
    ctx->epollfd = -1;
    ctx->fdmon = &fdmon_poll_ops;
    vk_lockcnt_unlock(&ctx->list_lock);
    vk_warn("context '%s': epoll refused an fd, back to ppoll", ctx->name);
}

static int fdmon_epoll_wait(VmmAioContext *ctx, AioReadyList *ready, int64_t timeout_ns)
{
    struct epoll_event events[128];
    int ret;

    if (vk_atomic_read(&ctx->epoll_failed)) {
        epoll_disable(ctx);
        return ctx->fdmon->wait(ctx, ready, timeout_ns);
    }
    if (timeout_ns > 0) {
        struct timespec ts = { timeout_ns / 1000000000, timeout_ns % 1000000000 };
        ret = epoll_pwait2(ctx->epollfd, events, VMM_ARRAY_SIZE(events), &ts, NULL);
        if (ret < 0 && errno == ENOSYS) {
            ret = epoll_wait(ctx->epollfd, events, VMM_ARRAY_SIZE(events),
                             (int)((timeout_ns + 999999) / 1000000));
        }
    } else {
        ret = epoll_wait(ctx->epollfd, events, VMM_ARRAY_SIZE(events),
                         timeout_ns < 0 ? -1 : 0);
    }
    if (ret < 0) {
        return errno == EINTR ? 0 : -errno;
    }
    for (int i = 0; i < ret; i++) {
        AioHandler *node = events[i].data.ptr;
        uint32_t ev = events[i].events;
        int revents = (ev & (EPOLLIN | EPOLLRDHUP) ? POLLIN : 0) |
                      (ev & EPOLLOUT ? POLLOUT : 0) | (ev & EPOLLHUP ? POLLHUP : 0) |
                      (ev & EPOLLERR ? POLLERR : 0);
        aio_ready_add(ready, node, revents, false);
    }
    return 0;
}

static bool fdmon_epoll_can_free(VmmAioContext *ctx, AioHandler *node)
{
    (void)ctx;
    (void)node;
    return true;
}

static void fdmon_epoll_destroy(VmmAioContext *ctx)
{
    if (ctx->epollfd >= 0) {
        close(ctx->epollfd);
        ctx->epollfd = -1;
    }
}

const FdMonOps fdmon_epoll_ops = {
    .kind = VMM_FDMON_EPOLL,
    .update = fdmon_epoll_update,
    .wait = fdmon_epoll_wait,
    .need_wait = aio_poll_disabled,
    .can_free = fdmon_epoll_can_free,
    .destroy = fdmon_epoll_destroy,
};
