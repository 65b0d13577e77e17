/* SPDX-License-Identifier: MIT */
/*
 * aio/fdmon-poll.c - the ppoll(2) fd monitor: the array is rebuilt from
 * the handler list on each wait; past FDMON_EPOLL_THRESHOLD handlers the
 * context switches to epoll when allowed.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "aio/aio-priv.h"

bool aio_poll_disabled(VmmAioContext *ctx)
{
    /* A handler without io_poll can only be seen through the kernel. */
    return vk_atomic_read(&ctx->poll_disable_cnt) > 0;
}

static void fdmon_poll_update(VmmAioContext *ctx, AioHandler *old, AioHandler *new_node)
{
    /* The array is rebuilt from the list on every wait. */
    (void)ctx;
    (void)old;
    (void)new_node;
}

static int pollfds_reserve(VmmAioContext *ctx, unsigned n)
{
    if (n <= ctx->pollfds_len) {
        return 0;
    }
    unsigned len = ctx->pollfds_len ? ctx->pollfds_len : 16;
    while (len < n) {
        len *= 2;
    }
    struct pollfd *p = realloc(ctx->pollfds, len * sizeof(*p));
    if (!p) {
        return -ENOMEM;
    }
    ctx->pollfds = p;
    AioHandler **nodes = realloc(ctx->pollfd_nodes, len * sizeof(*nodes));
    if (!nodes) {
        return -ENOMEM;
    }
    ctx->pollfd_nodes = nodes;
    ctx->pollfds_len = len;
    return 0;
}

static short node_events(AioHandler *node)
{
    return (node->io_read ? POLLIN : 0) | (node->io_write ? POLLOUT : 0);
}

void aio_report_broken(VmmAioContext *ctx, AioHandler *node)
{
    if (!node->broken) {
        node->broken = true;
        vk_error("context '%s': fd %d was closed while its handler was set; "
                  "it is no longer watched", ctx->name, node->fd);
    }
}

static int fdmon_poll_wait(VmmAioContext *ctx, AioReadyList *ready, int64_t timeout_ns)
{
    unsigned n = 0;
    struct timespec ts, *tsp = NULL;
    int ret;

    for (AioHandler *node = vk_atomic_load_acquire(&ctx->handlers); node;
         node = vk_atomic_load_acquire(&node->next)) {
        short ev = node_events(node);
        if (!ev || node->broken || vk_atomic_read(&node->deleted)) {
            continue;
        }
        if (pollfds_reserve(ctx, n + 1) < 0) {
            break;    /* watch what fits; the rest waits for memory */
        }
        ctx->pollfds[n] = (struct pollfd){ .fd = node->fd, .events = ev };
        ctx->pollfd_nodes[n] = node;
        n++;
    }
    if (n >= FDMON_EPOLL_THRESHOLD &&
        (ctx->fdmon_wanted == VMM_FDMON_EPOLL || ctx->fdmon_wanted == VMM_FDMON_AUTO) &&
        !ctx->source && fdmon_epoll_try_enable(ctx)) {
        return ctx->fdmon->wait(ctx, ready, timeout_ns);
    }
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    ret = ppoll(ctx->pollfds, n, tsp, NULL);
    if (ret < 0) {
        return errno == EINTR ? 0 : -errno;
    }
    for (unsigned i = 0; i < n && ret > 0; i++) {
        short rev = ctx->pollfds[i].revents;
        if (!rev) {
            continue;
        }
        ret--;
        if (rev & POLLNVAL) {
            aio_report_broken(ctx, ctx->pollfd_nodes[i]);
            continue;
        }
        aio_ready_add(ready, ctx->pollfd_nodes[i], rev, false);
    }
    return 0;
}

static bool fdmon_poll_can_free(VmmAioContext *ctx, AioHandler *node)
{
    (void)ctx;
    (void)node;
    return true;
}

static void fdmon_poll_destroy(VmmAioContext *ctx)
{
    (void)ctx;
}

const FdMonOps fdmon_poll_ops = {
    .kind = VMM_FDMON_POLL,
    .update = fdmon_poll_update,
    .wait = fdmon_poll_wait,
    .need_wait = aio_poll_disabled,
    .can_free = fdmon_poll_can_free,
    .destroy = fdmon_poll_destroy,
};
