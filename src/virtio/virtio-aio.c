/* SPDX-License-Identifier: MIT */
/*
 * Queue contexts and host notifiers (ioeventfds): doorbells handled in the
 * queue's AioContext, with adaptive busy polling of the available ring.
 */
#include <errno.h>

#include "util/atomic.h"
#include "aio/aio-internal.h"
#include "util/log.h"
#include "virtio/virtio-internal.h"

static void queue_bh_cb(void *opaque)
{
    VmmVirtqueue *vq = opaque;
    virtio_dispatch(vq->vdev, vq);   /* in ctx now: runs the handler */
}

int vmm_virtio_queue_set_context(VmmVirtioDevice *vdev, unsigned q, VmmAioContext *ctx)
{
    VmmVirtqueue *vq = vmm_virtio_get_queue(vdev, q);

    if (!vq || vq->notifier) {
        return vq ? -EBUSY : -EINVAL;
    }
    VmmBH *bh = NULL;
    if (ctx) {
        bh = vmm_bh_new(ctx, queue_bh_cb, vq, "virtqueue");
        if (!bh) {
            return -ENOMEM;
        }
    }
    virtio_queue_drop_bh(vq);
    vq->bh = bh;
    /* Release: pairs with the acquire in virtio_dispatch(). */
    vk_atomic_store_release(&vq->ctx, ctx);
    return 0;
}

void virtio_queue_drop_bh(VmmVirtqueue *vq)
{
    VmmBH *bh = vq->bh;

    if (!bh) {
        return;
    }
    vq->bh = NULL;
    /* The BH may be running queue_bh_cb() in the queue's context right
     * now (a kick remembered across a reset replays as this BH): wait for
     * it to return, so the caller may free the queue or hand it to another
     * context.  Later runs are stopped by the delete. */
    if (aio_bh_delete_sync(bh) < 0) {
        vk_warn("virtqueue %u: no memory to wait for its context; a running kick may "
                    "outlive the queue", vq->index);
    }
}

static void notifier_read(void *opaque)
{
    VmmVirtqueue *vq = opaque;

    vmm_event_notifier_test_and_clear(vq->notifier);
    virtio_dispatch(vq->vdev, vq);
}

/* Busy-poll check: has the driver published anything new?  A relaxed read
 * is enough: handle_queue re-reads with acquire ([A] in virtqueue.c).
 * run_lock: a quiesced device's rings may be reset or re-pinned by the
 * main loop, and stopped (set under the lock) keeps us off them. */
static bool notifier_poll(void *opaque)
{
    VmmVirtqueue *vq = opaque;
    bool work = false;

    vk_mutex_lock(&vq->run_lock);
    if (!vq->stopped && vk_atomic_load_acquire(&vq->ready)) {
        work = vk_atomic_read(&vq->avail->idx) != vq->last_avail_idx;
    }
    vk_mutex_unlock(&vq->run_lock);
    return work;
}

static void notifier_poll_ready(void *opaque)
{
    VmmVirtqueue *vq = opaque;
    virtio_dispatch(vq->vdev, vq);
}

/*
 * Busy-poll mode (the context's io_poll_begin/io_poll_end): while the
 * context polls the available ring, the driver need not ring the doorbell
 * (an eventfd write, a system call or a VM exit per kick), so doorbells
 * are off (event index: avail_event is no longer advanced; else
 * VRING_USED_F_NO_NOTIFY) and handle_queue's passes leave them off
 * (vmm_virtqueue_set_notification).  Leaving poll mode turns them back on
 * with [D]'s full barrier, and the context's re-poll after io_poll_end
 * finds what the driver published meanwhile without a doorbell.
 * A stopped (quiesced) queue's rings belong to the main loop: begin leaves
 * it alone, and an end while stopped remembers a kick, so the resume runs
 * a pass that turns doorbells back on.
 */
static void notifier_poll_begin(void *opaque)
{
    VmmVirtqueue *vq = opaque;
    vk_mutex_lock(&vq->run_lock);
    if (!vq->stopped) {
        vq->poll_mode = true;
        vmm_virtqueue_set_notification(vq, false);
    }
    vk_mutex_unlock(&vq->run_lock);
}

static void poll_mode_leave(VmmVirtqueue *vq)
{
    if (!vq->poll_mode) {
        return;
    }
    vq->poll_mode = false;
    if (vq->stopped) {
        vq->kick_pending = true;
    } else {
        vmm_virtqueue_set_notification(vq, true);
    }
}

static void notifier_poll_end(void *opaque)
{
    VmmVirtqueue *vq = opaque;

    vk_mutex_lock(&vq->run_lock);
    poll_mode_leave(vq);
    vk_mutex_unlock(&vq->run_lock);
}

typedef struct NotifierSwitch {
    VmmVirtqueue *vq;
    VmmEventNotifier *n;
    int ret;
} NotifierSwitch;

static void notifier_switch(void *opaque)
{
    NotifierSwitch *s = opaque;
    VmmVirtqueue *vq = s->vq;

    if (vq->notifier) {
        vmm_aio_set_event_notifier(vq->ctx, vq->notifier, NULL, NULL, NULL, NULL);
        vq->notifier = NULL;
        /* A removed handler gets no io_poll_end: the doorbells are ours. */
        vk_mutex_lock(&vq->run_lock);
        poll_mode_leave(vq);
        vk_mutex_unlock(&vq->run_lock);
    }
    s->ret = 0;
    if (s->n) {
        VmmAioHandlerOptions o = {
            .size = sizeof(o), .io_read = notifier_read, .opaque = vq,
        };
        if (!vq->unpolled) {
            o.io_poll = notifier_poll;
            o.io_poll_ready = notifier_poll_ready;
            o.io_poll_begin = notifier_poll_begin;
            o.io_poll_end = notifier_poll_end;
        }
        vq->notifier = s->n;
        s->ret = vmm_aio_set_event_notifier_full(vq->ctx, s->n, &o);
        if (s->ret < 0) {
            vq->notifier = NULL;
        } else {
            /* A doorbell rung before we listened must not be lost. */
            vmm_event_notifier_set(s->n);
        }
    }
}

int vmm_virtio_queue_set_polled(VmmVirtioDevice *vdev, unsigned q, bool polled)
{
    VmmVirtqueue *vq = vdev ? vmm_virtio_get_queue(vdev, q) : NULL;

    if (!vq) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_virtio_queue_set_polled: no queue %u", q);
    }
    /* vq->notifier changes only in the main loop's set_host_notifier
     * (through the context, which it waits for): ours to read here. */
    if (vq->notifier) {
        return -EBUSY;
    }
    vq->unpolled = !polled;     /* read in the context after the attach's hand-over */
    return 0;
}

int vmm_virtio_queue_set_host_notifier(VmmVirtioDevice *vdev, unsigned q,
                                       VmmEventNotifier *n)
{
    VmmVirtqueue *vq = vmm_virtio_get_queue(vdev, q);

    if (!vq || !vq->ctx) {
        return VMM_MISUSE_ERR(-EINVAL, "host notifier for queue %u without a context", q);
    }
    NotifierSwitch s = { .vq = vq, .n = n };
    int r = aio_run_in_context(vq->ctx, notifier_switch, &s);
    return r < 0 ? r : s.ret;
}
