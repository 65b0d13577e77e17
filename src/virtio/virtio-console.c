/* SPDX-License-Identifier: MIT */
/*
 * virtio-console (vmmkit/virtio-console.h): one port, receive queue 0 fed
 * from the input fd, transmit queue 1 written to the output fd.
 *
 * Threads: everything but creation and free runs in the device's context
 * (@ctx): both queues' handlers (the virtio core dispatches them there)
 * and the input fd's handler, so the watch state needs no lock.  The input
 * fd is watched only while the receive queue has a buffer and the fd has
 * nothing to read; when the fd becomes readable its handler stops the
 * watch and kicks the receive queue, whose handler reads into as many
 * buffers as there are and data to fill them, and watches again when the
 * fd runs dry - or, when the buffers run out first, waits for the
 * driver's next kick (it kicks when it adds buffers).  A kick while the
 * device is quiesced waits for the resume (the virtio core), so no read
 * touches guest memory during a pause, reset or DMA-map change.
 */
#include <errno.h>
#include <linux/virtio_console.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/log.h"
#include "vmmkit/aio.h"
#include "vmmkit/virtio-console.h"

#define VIRTIO_ID_CONSOLE 3
#define RXQ 0
#define TXQ 1

struct VmmVirtioConsole {
    VmmVirtioDevice *vdev;
    VmmAioContext *ctx;
    int in_fd, out_fd;
    /* @ctx's thread only: */
    bool watching;              /* in_fd's handler is installed */
    bool in_done;               /* end of input (EOF, error) or closing */
    bool out_warned;
};

static void rx_kick(void *opaque);

static void watch(VmmVirtioConsole *c, bool on)
{
    if (on == c->watching) {
        return;
    }
    int r = vmm_aio_set_fd_handler(c->ctx, c->in_fd, on ? rx_kick : NULL, NULL, NULL, NULL,
                                   c);
    if (r < 0 && on) {
        vk_warn("virtio-console: cannot watch fd %d: %s; input ends", c->in_fd,
                strerror(-r));
        c->in_done = true;
        return;
    }
    c->watching = on;
}

/* The input fd is readable: let the receive queue's handler read it. */
static void rx_kick(void *opaque)
{
    VmmVirtioConsole *c = opaque;
    watch(c, false);
    vmm_virtio_queue_kick(c->vdev, RXQ);
}

static void rx_handle(VmmVirtioConsole *c, VmmVirtqueue *vq)
{
    bool pushed = false;
    while (!c->in_done && c->in_fd >= 0) {
        struct pollfd p = { .fd = c->in_fd, .events = POLLIN };
        int n = poll(&p, 1, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0) {
            watch(c, true);             /* nothing to read: wait for the fd */
            break;
        }
        if (n < 0 || (p.revents & POLLNVAL)) {
            c->in_done = true;
            break;
        }
        int err = 0;
        VmmVirtqElem *e = vmm_virtqueue_pop(vq, sizeof(*e), &err);
        if (!e) {
            watch(c, false);            /* no buffer: the driver's kick brings us back */
            break;
        }
        ssize_t r = 0;
        if (e->in_num) {
            do {
                r = readv(c->in_fd, e->iov + e->out_num, (int)e->in_num);
            } while (r < 0 && errno == EINTR);
            if (r == 0) {
                c->in_done = true;      /* end of file */
            } else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                vk_warn("virtio-console: reading fd %d: %s; input ends", c->in_fd,
                        strerror(errno));
                c->in_done = true;
            }
        }
        vmm_virtqueue_push(vq, e, r > 0 ? (uint32_t)r : 0);
        free(e);
        pushed = true;
    }
    if (c->in_done) {
        watch(c, false);
    }
    if (pushed) {
        vmm_virtqueue_notify(vq);
    }
}

/* Write all of @iov (@n entries) to the output; false on an error. */
static bool write_all(VmmVirtioConsole *c, const struct iovec *iov, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left) {
            ssize_t w = write(c->out_fd, p, left);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                struct pollfd pf = { .fd = c->out_fd, .events = POLLOUT };
                poll(&pf, 1, -1);
                continue;
            }
            if (w <= 0) {
                return false;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    return true;
}

static void tx_handle(VmmVirtioConsole *c, VmmVirtqueue *vq)
{
    bool pushed = false;
    int err = 0;
    VmmVirtqElem *e;
    while ((e = vmm_virtqueue_pop(vq, sizeof(*e), &err))) {
        if (c->out_fd >= 0 && !write_all(c, e->iov, e->out_num) && !c->out_warned) {
            vk_warn("virtio-console: writing fd %d: %s; output dropped", c->out_fd,
                    strerror(errno));
            c->out_warned = true;
        }
        vmm_virtqueue_push(vq, e, 0);
        free(e);
        pushed = true;
    }
    if (pushed) {
        vmm_virtqueue_notify(vq);
    }
}

static void con_handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    (void)vdev;
    if (vmm_virtqueue_index(vq) == RXQ) {
        rx_handle(opaque, vq);
    } else {
        tx_handle(opaque, vq);
    }
}

static const VmmVirtioDeviceOps con_ops = {
    .size = sizeof(VmmVirtioDeviceOps), .device_id = VIRTIO_ID_CONSOLE,
    .config_size = sizeof(struct virtio_console_config), .num_queues = 2,
    .queue_max_size = 128, .handle_queue = con_handle,
};

VmmVirtioConsole *vmm_virtio_console_new(VmmGuestMemory *mem, VmmAioContext *ctx, int in_fd,
                                         int out_fd, int *errp)
{
    int err = -ENOMEM;
    VmmVirtioConsole *c = NULL;
    if (!mem || !ctx || in_fd < -1 || out_fd < -1) {
        err = VMM_MISUSE_ERR(-EINVAL, "bad virtio-console arguments");
        goto fail;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        goto fail;
    }
    c->ctx = ctx;
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    c->vdev = vmm_virtio_device_new("virtio-console", &con_ops, c, mem, NULL, &err);
    if (!c->vdev) {
        goto fail;
    }
    for (unsigned q = 0; q < 2; q++) {
        err = vmm_virtio_queue_set_context(c->vdev, q, ctx);
        if (err < 0) {
            goto fail;
        }
    }
    return c;
fail:
    if (c) {
        vmm_virtio_device_free(c->vdev);
        free(c);
    }
    if (errp) {
        *errp = err;
    }
    return NULL;
}

typedef struct StopWait {
    VmmVirtioConsole *c;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} StopWait;

/* In @ctx: end the input and its watch. */
static void stop_bh(void *opaque)
{
    StopWait *w = opaque;
    w->c->in_done = true;
    watch(w->c, false);
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void vmm_virtio_console_free(VmmVirtioConsole *c)
{
    if (!c) {
        return;
    }
    StopWait w = { .c = c, .lock = PTHREAD_MUTEX_INITIALIZER,
                   .cond = PTHREAD_COND_INITIALIZER };
    if (vmm_aio_context_in_thread(c->ctx) ||
        vmm_bh_schedule_oneshot(c->ctx, stop_bh, &w, "virtio-console-stop") < 0) {
        stop_bh(&w);
    }
    pthread_mutex_lock(&w.lock);
    while (!w.done) {
        pthread_cond_wait(&w.cond, &w.lock);
    }
    pthread_mutex_unlock(&w.lock);
    vmm_virtio_device_free(c->vdev);
    free(c);
}

VmmVirtioDevice *vmm_virtio_console_get_virtio(VmmVirtioConsole *c)
{
    return c->vdev;
}
