/* SPDX-License-Identifier: MIT */
/*
 * aio/fdmon-io-uring.c - the io_uring fd monitor.
 *
 * Each watched handler has a one-shot IORING_OP_POLL_ADD in flight
 * (user_data = the node), re-armed after its completion.  Handler changes
 * (any thread, under list_lock) only queue the node on ctx->submit_list
 * with ADD/REMOVE flags (REMOVE is sticky); the home thread turns them into
 * SQEs at its next wait.  A removed node stays allocated until its POLL_ADD
 * completes (usually with -ECANCELED after our POLL_REMOVE): can_free()
 * says no while it is in the ring or on the submit list.
 *
 * Completions are read from the shared CQ ring in user space, so a
 * non-blocking poll needs no system call unless SQEs wait to be submitted
 * or completions are already there.
 */
#include <errno.h>
#include <stdlib.h>
#include <liburing.h>

#include "aio/aio-priv.h"

enum { URING_ADD = 1, URING_REMOVE = 2 };

static struct io_uring *ring_of(VmmAioContext *ctx)
{
    return ctx->uring;
}

static unsigned node_poll_mask(AioHandler *node)
{
    return (node->io_read ? POLLIN | POLLRDHUP : 0) | (node->io_write ? POLLOUT : 0);
}

static void submit_list_add_locked(VmmAioContext *ctx, AioHandler *node, unsigned op)
{
    node->uring_ops |= op;
    if (!node->in_submit) {
        node->in_submit = true;
        node->submit_next = ctx->submit_list;
        vk_atomic_set(&ctx->submit_list, node);
    }
}

/* Under list_lock, any thread. */
static void fdmon_io_uring_update(VmmAioContext *ctx, AioHandler *old, AioHandler *new_node)
{
    if (new_node && node_poll_mask(new_node)) {
        submit_list_add_locked(ctx, new_node, URING_ADD);
    }
    if (old) {
        submit_list_add_locked(ctx, old, URING_REMOVE);
    }
}

static struct io_uring_sqe *get_sqe(VmmAioContext *ctx)
{
    struct io_uring *ring = ring_of(ctx);
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

    while (!sqe) {
        /* SQ full: hand what we have to the kernel. */
        int r = io_uring_submit(ring);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            return NULL;
        }
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

static void arm_node(VmmAioContext *ctx, AioHandler *node)
{
    struct io_uring_sqe *sqe = get_sqe(ctx);

    if (!sqe) {
        aio_report_broken(ctx, node);
        return;
    }
    io_uring_prep_poll_add(sqe, node->fd, node_poll_mask(node));
    io_uring_sqe_set_data(sqe, node);
    node->in_ring = true;
}

/* Home thread: turn queued changes into SQEs. */
static void drain_submit_list(VmmAioContext *ctx)
{
    if (!vk_atomic_read(&ctx->submit_list)) {
        return;
    }
    vk_lockcnt_lock(&ctx->list_lock);
    AioHandler *node = ctx->submit_list;
    vk_atomic_set(&ctx->submit_list, NULL);
    while (node) {
        AioHandler *next = node->submit_next;
        unsigned ops = node->uring_ops;
        node->uring_ops = 0;
        node->submit_next = NULL;
        node->in_submit = false;
        if (ops & URING_REMOVE) {
            if (node->in_ring) {
                struct io_uring_sqe *sqe = get_sqe(ctx);
                if (sqe) {
                    io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)node);
                    io_uring_sqe_set_data(sqe, NULL);
                }
            }
        } else if ((ops & URING_ADD) && !node->deleted && !node->in_ring) {
            arm_node(ctx, node);
        }
        node = next;
    }
    vk_lockcnt_unlock(&ctx->list_lock);
}

static void process_cqe(VmmAioContext *ctx, AioReadyList *ready, struct io_uring_cqe *cqe)
{
    AioHandler *node = io_uring_cqe_get_data(cqe);

    if (!node) {
        return;                       /* a POLL_REMOVE's own completion */
    }
    node->in_ring = false;
    if (vk_atomic_read(&node->deleted) || cqe->res == -ECANCELED) {
        return;                       /* now free-able */
    }
    if (cqe->res < 0) {
        if (cqe->res == -EBADF) {
            aio_report_broken(ctx, node);
        } else {
            arm_node(ctx, node);
        }
        return;
    }
    aio_ready_add(ready, node, cqe->res, false);
    /* Poll is level-triggered per arm: re-arm now; the SQE goes in with
     * the next wait, after the handler has consumed the event. */
    arm_node(ctx, node);
}

static int fdmon_io_uring_wait(VmmAioContext *ctx, AioReadyList *ready, int64_t timeout_ns)
{
    struct io_uring *ring = ring_of(ctx);
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    int ret = 0;

    drain_submit_list(ctx);
    if (timeout_ns == 0) {
        if (io_uring_sq_ready(ring)) {
            ret = io_uring_submit(ring);
        }
    } else if (!io_uring_cq_ready(ring)) {
        if (timeout_ns < 0) {
            ret = io_uring_submit_and_wait(ring, 1);
        } else {
            struct __kernel_timespec ts = {
                .tv_sec = timeout_ns / 1000000000,
                .tv_nsec = timeout_ns % 1000000000,
            };
            ret = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
        }
    } else if (io_uring_sq_ready(ring)) {
        ret = io_uring_submit(ring);
    }
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        vk_error("context '%s': io_uring wait failed: %d", ctx->name, ret);
    }
    io_uring_for_each_cqe(ring, head, cqe) {
        process_cqe(ctx, ready, cqe);
        n++;
    }
    io_uring_cq_advance(ring, n);
    return 0;
}

static bool fdmon_io_uring_need_wait(VmmAioContext *ctx)
{
    struct io_uring *ring = ring_of(ctx);

    return io_uring_cq_ready(ring) || io_uring_sq_ready(ring) ||
           vk_atomic_read(&ctx->submit_list);
}

static bool fdmon_io_uring_can_free(VmmAioContext *ctx, AioHandler *node)
{
    (void)ctx;
    return !node->in_ring && !node->in_submit;
}

static void ring_teardown(VmmAioContext *ctx)
{
    if (ctx->uring) {
        io_uring_queue_exit(ctx->uring);
        free(ctx->uring);
        ctx->uring = NULL;
    }
}

static void fdmon_io_uring_destroy(VmmAioContext *ctx)
{
    ring_teardown(ctx);
}

const FdMonOps fdmon_io_uring_ops = {
    .kind = VMM_FDMON_IO_URING,
    .update = fdmon_io_uring_update,
    .wait = fdmon_io_uring_wait,
    .need_wait = fdmon_io_uring_need_wait,
    .need_wait_transient = true,
    .can_free = fdmon_io_uring_can_free,
    .destroy = fdmon_io_uring_destroy,
};

int fdmon_io_uring_setup(VmmAioContext *ctx)
{
    struct io_uring *ring = calloc(1, sizeof(*ring));
    int ret;

    if (!ring) {
        return -ENOMEM;
    }
    ret = io_uring_queue_init(256, ring, 0);
    if (ret < 0) {
        free(ring);
        return ret;
    }
    ctx->uring = ring;
    ctx->fdmon = &fdmon_io_uring_ops;
    return 0;
}

/* Home thread or a context nobody polls: switch to ppoll. */
void fdmon_io_uring_fallback(VmmAioContext *ctx)
{
    vk_lockcnt_lock(&ctx->list_lock);
    if (ctx->fdmon == &fdmon_io_uring_ops) {
        ring_teardown(ctx);
        for (AioHandler *n = ctx->handlers; n; n = n->next) {
            n->in_ring = n->in_submit = false;
            n->uring_ops = 0;
            n->submit_next = NULL;
        }
        for (AioHandler *n = ctx->deleted_handlers; n; n = n->deleted_next) {
            n->in_ring = n->in_submit = false;
            n->uring_ops = 0;
            n->submit_next = NULL;
        }
        vk_atomic_set(&ctx->submit_list, NULL);
        ctx->fdmon = &fdmon_poll_ops;
    }
    vk_lockcnt_unlock(&ctx->list_lock);
}
