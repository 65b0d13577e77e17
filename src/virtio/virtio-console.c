/* SPDX-License-Identifier: MIT */
/*
 * virtio-console (vmmkit/virtio-console.h): one port, receive queue 0 fed
 * from the input fd, transmit queue 1 written to the output fd.
 *
 * Threads: everything but creation and free runs in the device's context
 * (@ctx): both queues' handlers (the virtio core dispatches them there)
 * and the fds' handlers, so the state below needs no lock.
 *
 * Input: the fd is watched only while the receive queue has a buffer and
 * the fd has nothing to read; when the fd becomes readable its handler
 * stops the watch and kicks the receive queue, whose handler reads into as
 * many buffers as there are and data to fill them, and watches again when
 * the fd runs dry - or, when the buffers run out first, waits for the
 * driver's next kick (it kicks when it adds buffers).  A kick while the
 * device is quiesced waits for the resume (the virtio core), so no read
 * touches guest memory during a pause, reset or DMA-map change.
 *
 * Output never blocks the context (other devices' queues share it): the
 * transmit handler copies each buffer into a bounded host buffer (OUT_CAP)
 * and pushes it after one flush, and writes that buffer to the fd only as far as
 * poll(2) says the fd takes it, PIPE_BUF bytes per write(2) (so a
 * blocking pipe or socket does not block either; the caller's file flags
 * stay untouched).  When the fd is full the rest waits in the buffer,
 * watched by the fd's write handler; when the buffer has no room for the
 * next transmit buffer, that one goes back on the ring (vq_unpop) and the
 * handler stops taking more until the fd has drained the buffer, then
 * kicks the queue.  Nothing stays popped across a wait, so a quiesce
 * (pause, reset, vmm_machine_free) never waits for the reader.  A single
 * transmit buffer larger than OUT_CAP streams through the host buffer
 * while the fd takes it; what is left of it when the fd is full is
 * dropped (logged once) - Linux's driver sends at most 32 KiB at a time.
 */
#include <errno.h>
#include <limits.h>
#include <linux/virtio_console.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "virtio/virtio-internal.h"
#include "vmmkit/aio.h"
#include "vmmkit/virtio-console.h"

#define VIRTIO_ID_CONSOLE 3
#define RXQ 0
#define TXQ 1
#define OUT_CAP (64u << 10)

struct VmmVirtioConsole {
    VmmVirtioDevice *vdev;
    VmmAioContext *ctx;
    int in_fd, out_fd;
    /* @ctx's thread only: */
    bool watch_in;              /* in_fd's read handler is installed */
    bool watch_out;             /* out_fd's write handler is installed */
    bool closing;               /* vmm_virtio_console_free: no new watch */
    bool in_done;               /* end of input (EOF, error) or closing */
    bool out_dead;              /* output discarded (no fd, write error) */
    bool out_warned, trunc_warned;
    bool tx_waiting;            /* a transmit buffer waits for room */
    uint8_t *obuf;              /* OUT_CAP bytes: [o_off, o_off + o_len) pending */
    size_t o_off, o_len;
};

static void rx_ready(void *opaque);
static void tx_ready(void *opaque);

/* Install the handlers @fd needs now (in_fd and out_fd may be one fd). */
static int install(VmmVirtioConsole *c, int fd)
{
    bool rd = fd == c->in_fd && c->watch_in, wr = fd == c->out_fd && c->watch_out;
    int r = vmm_aio_set_fd_handler(c->ctx, fd, rd ? rx_ready : NULL, wr ? tx_ready : NULL,
                                   NULL, NULL, c);
    return r == -ENOENT && !rd && !wr ? 0 : r;
}

static void watch_in(VmmVirtioConsole *c, bool on)
{
    on = on && !c->closing && !c->in_done;
    if (on == c->watch_in) {
        return;
    }
    c->watch_in = on;
    int r = install(c, c->in_fd);
    if (r < 0 && on) {
        vk_warn("virtio-console: cannot watch fd %d: %s; input ends", c->in_fd,
                strerror(-r));
        c->watch_in = false;
        c->in_done = true;
    }
}

static void watch_out(VmmVirtioConsole *c, bool on)
{
    on = on && !c->closing && !c->out_dead;
    if (on == c->watch_out) {
        return;
    }
    c->watch_out = on;
    int r = install(c, c->out_fd);
    if (r < 0 && on) {
        vk_warn("virtio-console: cannot watch fd %d: %s; output dropped", c->out_fd,
                strerror(-r));
        c->watch_out = false;
        c->out_dead = true;
        c->o_len = 0;
    }
}

/* The input fd is readable: let the receive queue's handler read it. */
static void rx_ready(void *opaque)
{
    VmmVirtioConsole *c = opaque;
    watch_in(c, false);
    vmm_virtio_queue_kick(c->vdev, RXQ);
}

static void rx_handle(VmmVirtioConsole *c, VmmVirtqueue *vq)
{
    bool pushed = false;
    while (!c->in_done && !c->closing && c->in_fd >= 0) {
        struct pollfd p = { .fd = c->in_fd, .events = POLLIN };
        int n = poll(&p, 1, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0) {
            watch_in(c, true);          /* nothing to read: wait for the fd */
            break;
        }
        if (n < 0 || (p.revents & POLLNVAL)) {
            c->in_done = true;
            break;
        }
        int err = 0;
        VmmVirtqElem *e = vmm_virtqueue_pop(vq, sizeof(*e), &err);
        if (!e) {
            watch_in(c, false);         /* no buffer: the driver's kick brings us back */
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
        watch_in(c, false);
    }
    if (pushed) {
        vmm_virtqueue_notify(vq);
    }
}

/*
 * write(2) without SIGPIPE: a pipe whose reader went away must end the
 * output (EPIPE), not the process - the program may not ignore SIGPIPE.
 * The signal is blocked in this thread around the write, and one it
 * raised (pending for this thread) is taken before unblocking; one that
 * was pending before is left alone.
 */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, pending, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t w = write(fd, buf, len);
    int e = errno;
    if (w < 0 && e == EPIPE && !was_pending) {
        sigtimedwait(&pipe_set, NULL, &(struct timespec){ 0 });
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return w;
}

/* Write the host buffer to the output while it takes it, without
 * blocking; watch the fd when it is full. */
static void flush(VmmVirtioConsole *c)
{
    while (c->o_len && !c->out_dead) {
        struct pollfd p = { .fd = c->out_fd, .events = POLLOUT };
        int n = poll(&p, 1, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0) {
            break;                      /* full: wait for POLLOUT */
        }
        ssize_t w = -1;
        if (n > 0 && !(p.revents & POLLNVAL)) {
            /* After POLLOUT a pipe or socket takes PIPE_BUF bytes without
             * blocking, even a blocking one. */
            size_t len = c->o_len < PIPE_BUF ? c->o_len : PIPE_BUF;
            w = write_nosigpipe(c->out_fd, c->obuf + c->o_off, len);
            if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (errno == EINTR) {
                    continue;
                }
                break;
            }
        } else {
            errno = n < 0 ? errno : EBADF;
        }
        if (w <= 0) {
            if (!c->out_warned) {
                vk_warn("virtio-console: writing fd %d: %s; output dropped", c->out_fd,
                        w < 0 ? strerror(errno) : "nothing written");
                c->out_warned = true;
            }
            c->out_dead = true;
            c->o_len = 0;
            break;
        }
        c->o_off += (size_t)w;
        c->o_len -= (size_t)w;
    }
    if (c->o_len == 0) {
        c->o_off = 0;
    }
    watch_out(c, c->o_len > 0);
}

/* Take @e's bytes into the host buffer (streaming through it when they
 * are more than it holds). */
static void tx_take(VmmVirtioConsole *c, const VmmVirtqElem *e)
{
    for (unsigned i = 0; i < e->out_num && !c->out_dead; i++) {
        const uint8_t *p = e->iov[i].iov_base;
        size_t left = e->iov[i].iov_len;
        while (left) {
            if (c->o_len == OUT_CAP) {
                flush(c);
                if (c->o_len == OUT_CAP || c->out_dead) {
                    if (!c->trunc_warned && !c->out_dead) {
                        vk_warn("virtio-console: a %llu-byte transmit buffer while the "
                                "output is full: its end is dropped",
                                (unsigned long long)e->out_len);
                        c->trunc_warned = true;
                    }
                    return;
                }
            }
            if (c->o_off + c->o_len == OUT_CAP) {
                memmove(c->obuf, c->obuf + c->o_off, c->o_len);
                c->o_off = 0;
            }
            size_t room = OUT_CAP - c->o_off - c->o_len;
            size_t n = left < room ? left : room;
            memcpy(c->obuf + c->o_off + c->o_len, p, n);
            c->o_len += n;
            p += n;
            left -= n;
        }
    }
}

static void tx_handle(VmmVirtioConsole *c, VmmVirtqueue *vq)
{
    bool pushed = false;
    int err = 0;
    VmmVirtqElem *e;
    flush(c);
    c->tx_waiting = false;
    while (!c->closing) {
        if (c->o_len == OUT_CAP) {
            c->tx_waiting = true;       /* tx_ready kicks us once drained */
            break;
        }
        e = vmm_virtqueue_pop(vq, sizeof(*e), &err);
        if (!e) {
            break;
        }
        if (c->o_len && !c->out_dead && e->out_len > OUT_CAP - c->o_len) {
            vq_unpop(vq, 1);            /* no room: the guest's until we drain */
            free(e);
            c->tx_waiting = true;
            break;
        }
        tx_take(c, e);
        flush(c);                       /* before the push: a fd that takes the
                                         * bytes has them when the guest sees
                                         * the buffer used */
        vmm_virtqueue_push(vq, e, 0);
        free(e);
        pushed = true;
    }
    if (pushed) {
        vmm_virtqueue_notify(vq);
    }
}

/* The output fd takes bytes again: write, and once the host buffer is
 * empty let the transmit queue go on. */
static void tx_ready(void *opaque)
{
    VmmVirtioConsole *c = opaque;
    flush(c);
    if (c->o_len == 0 && c->tx_waiting) {
        c->tx_waiting = false;
        vmm_virtio_queue_kick(c->vdev, TXQ);
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
    c->out_dead = out_fd < 0;
    c->obuf = malloc(OUT_CAP);
    if (!c->obuf) {
        goto fail;
    }
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
    /* Receive buffers wait for input: not work to poll for (see
     * vmm_virtio_queue_set_polled); the fd's handler kicks the queue. */
    vmm_virtio_queue_set_polled(c->vdev, RXQ, false);
    return c;
fail:
    if (c) {
        vmm_virtio_device_free(c->vdev);
        free(c->obuf);
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

/* In @ctx: end the watches (what the output fd takes now is written, the
 * rest of the host buffer dropped). */
static void stop_bh(void *opaque)
{
    StopWait *w = opaque;
    flush(w->c);
    w->c->closing = true;
    w->c->in_done = true;
    watch_in(w->c, false);
    watch_out(w->c, false);
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
    free(c->obuf);
    free(c);
}

VmmVirtioDevice *vmm_virtio_console_get_virtio(VmmVirtioConsole *c)
{
    return c->vdev;
}
