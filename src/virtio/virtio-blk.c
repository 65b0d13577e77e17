/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk on a BlockBackend.  Queues run in the BlockBackend's
 * AioContext; each request is parsed (virtio-blk-req.c) and executed in its
 * own coroutine there, then pushed and notified from that context.
 *
 * Threads: handle_queue and every request coroutine run in the queue's
 * context; the block layer's device callbacks, error reports and the
 * resume of stopped requests run in the main loop.  The list of requests
 * stopped by the error policy is shared between the two under stop_lock.
 * Drain: drained_begin makes handle_queue leave requests on the rings
 * (b->drained, an atomic flag read in the queue's context); drained_end
 * kicks every queue so nothing is lost.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/lock.h"
#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"
#include "util/trace.h"
#include "virtio/virtio-blk-req.h"
#include "vmmkit/coroutine.h"
#include "vmmkit/virtio-blk.h"

#define VBLK_MAX_QUEUES 64
#define VBLK_MAX_DISCARD (1u << 22)    /* sectors per discard/write-zeroes */

typedef struct VblkRequest VblkRequest;

/*
 * Per queue, touched only in the queue's context (one thread at a time):
 * the pass state that batches interrupts, the clock reading that requests
 * share, and the statistics (single writer: relaxed loads and stores, no
 * locked instruction per request; any thread may read them).
 */
typedef struct VblkQueue {
    bool in_pass;                   /* vblk_handle() is popping this queue */
    bool notified;                  /* the pass's first completion notified */
    bool notify_pending;            /* a later completion in the pass owes one */
    int64_t now;                    /* latest clock reading of the pass */
    uint64_t requests, service_ns, io_ns;
} VblkQueue;

struct VmmVirtioBlk {
    VmmVirtioDevice *vdev;
    VmmBlockBackend *blk;
    VmmAioContext *ctx;
    VmmVirtioBlkOptions opts;
    char serial[VIRTIO_BLK_ID_BYTES];
    VblkLimits lim;                 /* capacity updated atomically */
    int drained;                    /* atomic */
    VmmMutex stop_lock;
    VblkRequest *stopped;           /* under stop_lock */
    unsigned reports;               /* atomic: error reports not yet run */
    unsigned nstopped;              /* atomic */
    VblkQueue *q;                   /* opts.num_queues of them */
};

struct VblkRequest {
    VmmVirtqElem elem;              /* first: allocated by vmm_virtqueue_pop() */
    VmmVirtioBlk *b;
    VmmVirtqueue *vq;
    VblkReq r;
    int err;                        /* for the error policy */
    VblkRequest *next;
    int64_t t_pop;                  /* vmm_clock_ns() when taken off the queue */
    int64_t t_done;                 /* ... when its I/O ended (0: none yet) */
    int64_t io_ns;                  /* in the block layer */
};

static inline void stat_add(uint64_t *v, uint64_t n)
{
    /* Single writer (the queue's context): no read-modify-write needed. */
    vk_atomic_set(v, vk_atomic_read(v) + n);
}

static inline VblkQueue *vblk_queue(VmmVirtioBlk *b, VmmVirtqueue *vq)
{
    return &b->q[vmm_virtqueue_index(vq)];
}

/*
 * Answer @req.  Inside a pass of vblk_handle() on its queue (a request
 * whose I/O ended at once), the first completion notifies at once (a
 * driver that sleeps until then wakes while the pass goes on) and the
 * others wait for the end of the pass: at most two notifies, event-index
 * checks and barriers per batch.
 */
static void vblk_complete(VblkRequest *req, uint8_t status, uint32_t len)
{
    VmmVirtqueue *vq = req->vq;
    VblkQueue *q = vblk_queue(req->b, vq);

    TRACE_PROBE(virtio_blk_complete, req->b, req, status, len);
    /* The I/O's end stands for the answer's time (the push follows at
     * once): one clock read fewer per request. */
    int64_t done = req->t_done ? req->t_done : vmm_clock_ns();
    stat_add(&q->requests, 1);
    stat_add(&q->service_ns, (uint64_t)(done - req->t_pop));
    stat_add(&q->io_ns, (uint64_t)req->io_ns);
    *req->r.status = status;
    vmm_virtqueue_push(vq, &req->elem, len);
    free(req);
    if (q->in_pass) {
        q->now = done;              /* the next pop's time */
        if (q->notified) {
            q->notify_pending = true;
            return;
        }
        q->notified = true;         /* the driver may be waiting: at once */
    }
    vmm_virtqueue_notify(vq);
}

typedef struct StopReport {
    VmmVirtioBlk *b;
    int err;
    bool is_write;
} StopReport;

static void report_stop_bh(void *opaque)
{
    StopReport *s = opaque;

    if (s->b->opts.on_error) {
        s->b->opts.on_error(s->b->opts.opaque, s->b, s->err, s->is_write);
    }
    vk_atomic_dec(&s->b->reports);
    free(s);
}

/* Apply the error policy; true if the request was kept (STOP). */
static bool vblk_stop_on_error(VblkRequest *req, int err)
{
    VmmVirtioBlk *b = req->b;
    bool is_write = req->r.type != VIRTIO_BLK_T_IN;
    VmmBlkErrorPolicy p = is_write ? b->opts.write_error : b->opts.read_error;

    if (p != VMM_BLK_ERROR_STOP) {
        return false;
    }
    req->err = err;
    vk_mutex_lock(&b->stop_lock);
    req->next = b->stopped;
    b->stopped = req;
    vk_atomic_inc(&b->nstopped);
    vk_mutex_unlock(&b->stop_lock);
    StopReport *s = malloc(sizeof(*s));
    if (s) {
        *s = (StopReport){ b, err, is_write };
        vk_atomic_inc(&b->reports);
        if (vmm_bh_schedule_oneshot(vmm_aio_context_main(), report_stop_bh, s,
                                    "virtio-blk-error") < 0) {
            vk_atomic_dec(&b->reports);
            free(s);
        }
    }
    vk_warn("virtio-blk '%s': I/O error %d, request held (error policy stop)",
             b->opts.name, err);
    return true;
}

static VMM_COROUTINE_FN int vblk_do_io(VblkRequest *req, uint32_t *len)
{
    VmmVirtioBlk *b = req->b;
    VblkReq *r = &req->r;
    int64_t off = (int64_t)(r->sector * 512);

    switch (r->type) {
    case VIRTIO_BLK_T_IN:
        *len += (uint32_t)r->data_len;
        return vmm_blk_co_preadv(b->blk, off, (int64_t)r->data_len, r->data,
                                 (int)r->data_num, 0);
    case VIRTIO_BLK_T_OUT:
        return vmm_blk_co_pwritev(b->blk, off, (int64_t)r->data_len, r->data,
                                  (int)r->data_num, 0);
    case VIRTIO_BLK_T_FLUSH:
        return vmm_blk_co_flush(b->blk);
    case VIRTIO_BLK_T_DISCARD:
        return vmm_blk_co_pdiscard(b->blk, (int64_t)(r->seg_sector * 512),
                                   (int64_t)r->seg_sectors * 512);
    case VIRTIO_BLK_T_WRITE_ZEROES:
        return vmm_blk_co_pwrite_zeroes(b->blk, (int64_t)(r->seg_sector * 512),
                                        (int64_t)r->seg_sectors * 512,
                                        r->seg_unmap ? VMM_REQ_MAY_UNMAP : 0);
    case VIRTIO_BLK_T_GET_ID: {
        size_t n = r->data_len < VIRTIO_BLK_ID_BYTES ? r->data_len : VIRTIO_BLK_ID_BYTES;
        size_t done = 0;
        for (unsigned i = 0; i < r->data_num && done < n; i++) {
            size_t c = r->data[i].iov_len < n - done ? r->data[i].iov_len : n - done;
            memcpy(r->data[i].iov_base, b->serial + done, c);
            done += c;
        }
        *len += (uint32_t)done;
        return 0;
    }
    }
    return -ENOTSUP;
}

static VMM_COROUTINE_FN void vblk_co(void *opaque)
{
    VblkRequest *req = opaque;
    uint32_t len = 1;                   /* the status byte */
    int64_t t0 = vmm_clock_ns();
    int ret = vblk_do_io(req, &len);
    req->t_done = vmm_clock_ns();
    req->io_ns += req->t_done - t0;

    if (ret < 0) {
        if (vblk_stop_on_error(req, ret)) {
            return;
        }
        vblk_complete(req, VIRTIO_BLK_S_IOERR, 1);
        return;
    }
    vblk_complete(req, VIRTIO_BLK_S_OK, len);
}

static void vblk_start(VmmVirtioBlk *b, VblkRequest *req)
{
    int err = 0;
    TRACE_PROBE(virtio_blk_request, b, req, req->r.type, req->r.sector);
    VmmCoroutine *co = vmm_coroutine_create(vblk_co, req, &err);

    if (!co) {
        vblk_complete(req, VIRTIO_BLK_S_IOERR, 1);
        return;
    }
    (void)b;
    vmm_coroutine_enter(co);
}

/* The interrupt owed by the completions of a pass, once. */
static void vblk_pass_notify(VblkQueue *q, VmmVirtqueue *vq)
{
    if (q->notify_pending) {
        q->notify_pending = false;
        vmm_virtqueue_notify(vq);
    }
}

static void vblk_handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    VmmVirtioBlk *b = opaque;
    VblkRequest *req;
    int err;

    if (vk_atomic_load_acquire(&b->drained)) {
        return;                         /* drained_end kicks the queues */
    }
    VblkLimits lim;
    bool have_lim = false;
    VblkQueue *q = vblk_queue(b, vq);

    /* A request's pop time is the latest clock reading of the pass: taken
     * when the pass (or a round of it) starts popping, then the end of the
     * previous request's I/O (requests that complete at once follow each
     * other): one reading per request instead of two. */
    q->in_pass = true;
    q->notified = false;
    do {
        q->now = vmm_clock_ns();
        vmm_virtqueue_set_notification(vq, false);
        while ((req = vmm_virtqueue_pop(vq, sizeof(*req), &err))) {
            req->t_pop = q->now;
            req->t_done = 0;
            req->io_ns = 0;
            if (!have_lim) {
                /* Only now: a successful pop means the queue was enabled,
                 * which happens after feature negotiation wrote b->lim
                 * (the acquire in the pop pairs with the enable). */
                lim = b->lim;
                lim.capacity = vk_atomic_read(&b->lim.capacity);
                have_lim = true;
            }
            req->b = b;
            req->vq = vq;
            req->next = NULL;
            req->err = 0;
            /* Trim in place: the element's own iovecs become the data. */
            int st = vblk_parse(&req->elem, &lim, req->elem.iov, &req->r);
            if (st < 0) {
                vmm_virtqueue_detach(vq, &req->elem);
                free(req);
                vmm_virtio_set_needs_reset(vdev, "virtio-blk request without a "
                                                 "header or a status byte");
                break;
            }
            if (st != VIRTIO_BLK_S_OK) {
                vblk_complete(req, (uint8_t)st, 1);
                continue;
            }
            vblk_start(b, req);
        }
        vblk_pass_notify(q, vq);
    } while (vmm_virtqueue_set_notification(vq, true));
    q->in_pass = false;
    vblk_pass_notify(q, vq);
}

static int vblk_set_features(VmmVirtioDevice *vdev, uint64_t f, void *opaque)
{
    VmmVirtioBlk *b = opaque;
    (void)vdev;

    b->lim.discard = f & (1ull << VIRTIO_BLK_F_DISCARD);
    b->lim.write_zeroes = f & (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
    b->lim.flush = true;      /* a flush is always honoured */
    return 0;
}

static void vblk_reset(VmmVirtioDevice *vdev, void *opaque)
{
    VmmVirtioBlk *b = opaque;
    (void)vdev;

    b->lim.discard = b->lim.write_zeroes = false;
}

/* ---- Block layer callbacks (main loop) ------------------------------------ */

static void vblk_drained_begin(void *opaque)
{
    VmmVirtioBlk *b = opaque;
    vk_atomic_store_release(&b->drained, 1);
}

static void vblk_drained_end(void *opaque)
{
    VmmVirtioBlk *b = opaque;

    vk_atomic_store_release(&b->drained, 0);
    for (unsigned q = 0; q < vmm_virtio_num_queues(b->vdev); q++) {
        vmm_virtio_queue_kick(b->vdev, q);
    }
}

static bool vblk_drained_poll(void *opaque)
{
    (void)opaque;
    return false;   /* requests not yet submitted stay on the rings */
}

static void vblk_fill_config(VmmVirtioBlk *b, struct virtio_blk_config *c)
{
    memset(c, 0, sizeof(*c));
    c->capacity = htole64(vk_atomic_read(&b->lim.capacity));
    c->seg_max = htole32(b->opts.queue_size - 2);
    c->blk_size = htole32(b->lim.logical_block);
    c->num_queues = htole16((uint16_t)b->opts.num_queues);
    c->max_discard_sectors = htole32(b->lim.max_discard_sectors);
    c->max_discard_seg = htole32(1);
    c->discard_sector_alignment = htole32(b->lim.logical_block / 512);
    c->max_write_zeroes_sectors = htole32(b->lim.max_write_zeroes_sectors);
    c->max_write_zeroes_seg = htole32(1);
    c->write_zeroes_may_unmap = 1;
}

static void vblk_resize(void *opaque)
{
    VmmVirtioBlk *b = opaque;
    int64_t len = vmm_blk_getlength(b->blk);
    uint64_t cap = len > 0 ? (uint64_t)len / 512 : 0;

    vk_atomic_set(&b->lim.capacity, cap);
    uint64_t le = htole64(cap);
    vmm_virtio_config_update(b->vdev, offsetof(struct virtio_blk_config, capacity),
                             &le, sizeof(le));
}

static const VmmBlockDevOps vblk_dev_ops = {
    .size = sizeof(VmmBlockDevOps),
    .drained_begin = vblk_drained_begin,
    .drained_end = vblk_drained_end,
    .drained_poll = vblk_drained_poll,
    .resize = vblk_resize,
};

/* ---- Stopped requests --------------------------------------------------- */

static VMM_COROUTINE_FN void vblk_retry_co(void *opaque)
{
    vblk_co(opaque);
}

static VMM_COROUTINE_FN void vblk_fail_co(void *opaque)
{
    vblk_complete(opaque, VIRTIO_BLK_S_IOERR, 1);
}

unsigned vmm_virtio_blk_stopped_requests(VmmVirtioBlk *vblk)
{
    return vk_atomic_read(&vblk->nstopped);
}

void vmm_virtio_blk_resume_stopped(VmmVirtioBlk *b, bool retry)
{
    vk_mutex_lock(&b->stop_lock);
    VblkRequest *list = b->stopped;
    b->stopped = NULL;
    vk_atomic_set(&b->nstopped, 0);
    vk_mutex_unlock(&b->stop_lock);

    while (list) {
        VblkRequest *req = list;
        list = req->next;
        int err = 0;
        VmmCoroutine *co = vmm_coroutine_create(retry ? vblk_retry_co : vblk_fail_co,
                                                req, &err);
        if (!co) {
            /* Cannot even fail it here; keep it for the next resume. */
            vk_mutex_lock(&b->stop_lock);
            req->next = b->stopped;
            b->stopped = req;
            vk_atomic_inc(&b->nstopped);
            vk_mutex_unlock(&b->stop_lock);
            continue;
        }
        /* Completions belong to the queue's context. */
        vmm_aio_co_schedule(b->ctx, co);
    }
}

/* ---- Life cycle ------------------------------------------------------------ */

static int vblk_check_opts(const VmmVirtioBlkOptions *in, VmmVirtioBlkOptions *o)
{
    memset(o, 0, sizeof(*o));
    if (in) {
        if (in->size < offsetof(VmmVirtioBlkOptions, opaque) + sizeof(void *)) {
            return -EINVAL;
        }
        memcpy(o, in, in->size < sizeof(*o) ? in->size : sizeof(*o));
    }
    o->size = sizeof(*o);
    o->name = o->name ? o->name : "virtio-blk";
    o->num_queues = o->num_queues ? o->num_queues : 1;
    o->queue_size = o->queue_size ? o->queue_size : 256;
    o->logical_block_size = o->logical_block_size ? o->logical_block_size : 512;
    if (o->num_queues > VBLK_MAX_QUEUES || o->queue_size < 4 ||
        o->queue_size > VMM_VIRTQUEUE_MAX_SIZE || (o->queue_size & (o->queue_size - 1)) ||
        o->logical_block_size < 512 || o->logical_block_size > 65536 ||
        (o->logical_block_size & (o->logical_block_size - 1))) {
        return -EINVAL;
    }
    return 0;
}

VmmVirtioBlk *vmm_virtio_blk_new(VmmBlockBackend *blk, VmmGuestMemory *mem,
                                 const VmmVirtioBlkOptions *opts, int *errp)
{
    VmmVirtioBlk *b = calloc(1, sizeof(*b));
    int err = b ? vblk_check_opts(opts, &b->opts) : -ENOMEM;
    int64_t len = blk ? vmm_blk_getlength(blk) : -EINVAL;

    if (err == 0 && len < 0) {
        err = (int)len;
    }
    if (err < 0) {
        goto fail;
    }
    b->q = calloc(b->opts.num_queues, sizeof(*b->q));
    if (!b->q) {
        err = -ENOMEM;
        goto fail;
    }
    b->blk = blk;
    b->ctx = vmm_blk_get_context(blk);
    if (b->opts.serial) {
        memcpy(b->serial, b->opts.serial, strnlen(b->opts.serial, sizeof(b->serial)));
    }
    b->lim = (VblkLimits){
        .capacity = (uint64_t)len / 512, .logical_block = b->opts.logical_block_size,
        .max_discard_sectors = VBLK_MAX_DISCARD, .max_write_zeroes_sectors = VBLK_MAX_DISCARD,
        .read_only = vmm_blk_is_read_only(blk), .flush = true,
    };
    vk_mutex_init(&b->stop_lock);
    uint64_t features = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                        (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_DISCARD) |
                        (1ull << VIRTIO_BLK_F_WRITE_ZEROES) |
                        (b->opts.num_queues > 1 ? 1ull << VIRTIO_BLK_F_MQ : 0) |
                        (b->lim.read_only ? 1ull << VIRTIO_BLK_F_RO : 0);
    VmmVirtioDeviceOps ops = {
        .size = sizeof(ops), .device_id = 2 /* VIRTIO_ID_BLOCK */, .features = features,
        .config_size = sizeof(struct virtio_blk_config), .num_queues = b->opts.num_queues,
        .queue_max_size = b->opts.queue_size, .handle_queue = vblk_handle,
        .set_features = vblk_set_features, .reset = vblk_reset,
    };
    struct virtio_blk_config cfg;
    vblk_fill_config(b, &cfg);
    b->vdev = vmm_virtio_device_new(b->opts.name, &ops, b, mem, &cfg, &err);
    if (!b->vdev) {
        vk_mutex_destroy(&b->stop_lock);
        goto fail;
    }
    for (unsigned q = 0; q < b->opts.num_queues; q++) {
        vmm_virtio_queue_set_context(b->vdev, q, b->ctx);
    }
    err = vmm_blk_set_dev_ops(blk, &vblk_dev_ops, b);
    if (err < 0) {
        vmm_virtio_device_free(b->vdev);
        vk_mutex_destroy(&b->stop_lock);
        goto fail;
    }
    return b;
fail:
    if (b) {
        free(b->q);
    }
    free(b);
    if (errp) {
        *errp = err;
    }
    return NULL;
}

int vmm_virtio_blk_get_stats(VmmVirtioBlk *b, VmmVirtioBlkStats *out)
{
    if (!b || !out || out->size < sizeof(size_t)) {
        return -EINVAL;
    }
    VmmVirtioBlkStats st = { .size = sizeof(st) };

    for (unsigned i = 0; i < b->opts.num_queues; i++) {
        st.requests += vk_atomic_read(&b->q[i].requests);
        st.service_ns += vk_atomic_read(&b->q[i].service_ns);
        st.io_ns += vk_atomic_read(&b->q[i].io_ns);
    }
    size_t n = out->size < sizeof(st) ? out->size : sizeof(st);
    memcpy((char *)out + sizeof(size_t), (char *)&st + sizeof(size_t), n - sizeof(size_t));
    return 0;
}

void vmm_virtio_blk_free(VmmVirtioBlk *b)
{
    if (!b) {
        return;
    }
    /* Error reports scheduled to the main loop still point at us. */
    VMM_AIO_WAIT_WHILE(NULL, vk_atomic_read(&b->reports) != 0);
    vmm_blk_set_dev_ops(b->blk, NULL, NULL);
    vmm_virtio_device_free(b->vdev);
    vk_mutex_destroy(&b->stop_lock);
    free(b->q);
    free(b);
}

VmmVirtioDevice *vmm_virtio_blk_get_virtio(VmmVirtioBlk *b)
{
    return b->vdev;
}
