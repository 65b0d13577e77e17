/* SPDX-License-Identifier: MIT */
/*
 * vhost-vsock: virtio-vsock's receive (0) and transmit (1) queues handed to
 * the kernel (/dev/vhost-vsock); the event queue (2) stays here, idle.
 *
 * Threads and locks: vs->lock guards the vhost set-up (start, stop, the
 * memory table), entered from the vCPU thread that sets DRIVER_OK and from
 * the main loop (quiesce, resume, reset, memory listener).  The data path
 * takes no lock: a doorbell is an eventfd write from the queue's dispatch
 * in ctx, an interrupt an eventfd read in ctx.
 *
 * Quiesce: the virtio core stops dispatch, then vs_quiesce() stops the
 * kernel (VHOST_VSOCK_SET_RUNNING 0, then VHOST_GET_VRING_BASE per queue,
 * which waits for the kernel's worker to leave the ring and returns its
 * next available index).  Nothing touches guest memory after it returns.
 * vs_resume() starts the kernel again from those indexes, with the memory
 * table and ring addresses of now (a DMA-map change may have moved them),
 * unless a reset came in between.
 *
 * Snapshots: vs_stop() leaves the kernel's ring positions in the core's
 * queues, so the core's record (vmm_virtio_save_state) is the device's
 * whole ring state.  A device that takes a record over starts its kernel
 * from those positions and sends the guest VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
 * on the event queue: the connections lived in the other kernel.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <linux/virtio_vsock.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "aio/aio-internal.h"
#include "util/atomic.h"
#include "util/lock.h"
#include "util/log.h"
#include "virtio/virtio-internal.h"
#include "vmmkit/aio.h"
#include "vmmkit/vhost-vsock.h"

#define VS_QUEUES 3
#define VS_VHOST_QUEUES 2       /* rx, tx */
#define VS_QUEUE_SIZE 128
#define VS_MAX_REGIONS 64       /* vhost's default max_mem_regions */

typedef struct VsRegion {
    uint64_t gpa, len, host;
} VsRegion;

struct VmmVhostVsock {
    VmmVirtioDevice *vdev;
    VmmGuestMemory *mem;
    VmmAioContext *ctx;
    char *name;
    int fd;
    uint64_t cid;
    uint64_t vhost_features;
    VmmEventNotifier *kick[VS_VHOST_QUEUES], *call[VS_VHOST_QUEUES];
    bool listening;

    /* Under lock (the functions that touch them require it): */
    VmmMutex lock;
    VsRegion regions[VS_MAX_REGIONS];
    unsigned nregions;
    bool too_many_regions;
    bool want_run;                          /* DRIVER_OK since the last reset */
    bool running;                           /* atomic; written under lock */
    bool reset_event;                       /* atomic: a transport reset to send */
};

static int vhost_ioctl(VmmVhostVsock *vs, unsigned long req, const void *arg, const char *what)
{
    if (ioctl(vs->fd, req, arg) < 0) {
        int err = -errno;
        vk_warn("vhost-vsock '%s': %s: %s", vs->name, what, vmm_strerror(err));
        return err;
    }
    return 0;
}

static int vs_set_mem_table(VmmVhostVsock *vs) VMM_REQUIRES(vs->lock)
{
    if (vs->too_many_regions) {
        vk_warn("vhost-vsock '%s': more than %d RAM sections", vs->name, VS_MAX_REGIONS);
        return -E2BIG;
    }
    struct vhost_memory *m = calloc(1, sizeof(*m) + vs->nregions * sizeof(m->regions[0]));
    if (!m) {
        return -ENOMEM;
    }
    m->nregions = vs->nregions;
    for (unsigned i = 0; i < vs->nregions; i++) {
        m->regions[i].guest_phys_addr = vs->regions[i].gpa;
        m->regions[i].memory_size = vs->regions[i].len;
        m->regions[i].userspace_addr = vs->regions[i].host;
    }
    int r = vhost_ioctl(vs, VHOST_SET_MEM_TABLE, m, "VHOST_SET_MEM_TABLE");
    free(m);
    return r;
}

/* Hand the rings to the kernel and let it run. */
static int vs_start(VmmVhostVsock *vs) VMM_REQUIRES(vs->lock)
{
    uint64_t f = vmm_virtio_get_driver_features(vs->vdev) & vs->vhost_features;
    int r = vhost_ioctl(vs, VHOST_SET_FEATURES, &f, "VHOST_SET_FEATURES");

    if (r == 0) {
        r = vs_set_mem_table(vs);
    }
    for (unsigned q = 0; q < VS_VHOST_QUEUES && r == 0; q++) {
        VmmVirtqueue *vq = vmm_virtio_get_queue(vs->vdev, q);
        if (!vk_atomic_load_acquire(&vq->ready)) {
            vk_warn("vhost-vsock '%s': DRIVER_OK with queue %u disabled", vs->name, q);
            return -EINVAL;
        }
        struct vhost_vring_state num = { .index = q, .num = vq->size };
        /* Where the kernel stopped (vs_stop), or a restored record's. */
        struct vhost_vring_state base = { .index = q, .num = vq->last_avail_idx };
        struct vhost_vring_addr addr = {
            .index = q, .desc_user_addr = (uintptr_t)vq->desc,
            .avail_user_addr = (uintptr_t)vq->avail, .used_user_addr = (uintptr_t)vq->used,
        };
        struct vhost_vring_file kick = { .index = q, .fd = vmm_event_notifier_fd(vs->kick[q]) };
        struct vhost_vring_file call = { .index = q, .fd = vmm_event_notifier_fd(vs->call[q]) };
        r = vhost_ioctl(vs, VHOST_SET_VRING_NUM, &num, "VHOST_SET_VRING_NUM");
        r = r ? r : vhost_ioctl(vs, VHOST_SET_VRING_BASE, &base, "VHOST_SET_VRING_BASE");
        r = r ? r : vhost_ioctl(vs, VHOST_SET_VRING_ADDR, &addr, "VHOST_SET_VRING_ADDR");
        r = r ? r : vhost_ioctl(vs, VHOST_SET_VRING_KICK, &kick, "VHOST_SET_VRING_KICK");
        r = r ? r : vhost_ioctl(vs, VHOST_SET_VRING_CALL, &call, "VHOST_SET_VRING_CALL");
    }
    int one = 1;
    r = r ? r : vhost_ioctl(vs, VHOST_VSOCK_SET_RUNNING, &one, "VHOST_VSOCK_SET_RUNNING");
    if (r < 0) {
        return r;
    }
    vk_atomic_store_release(&vs->running, true);
    /* Buffers the driver posted before (or while we were stopped). */
    for (unsigned q = 0; q < VS_VHOST_QUEUES; q++) {
        vmm_event_notifier_set(vs->kick[q]);
    }
    return 0;
}

static void vs_stop(VmmVhostVsock *vs) VMM_REQUIRES(vs->lock)
{
    if (!vk_atomic_read(&vs->running)) {
        return;
    }
    int zero = 0;
    vhost_ioctl(vs, VHOST_VSOCK_SET_RUNNING, &zero, "VHOST_VSOCK_SET_RUNNING");
    for (unsigned q = 0; q < VS_VHOST_QUEUES; q++) {
        /* Waits for the kernel's worker to leave the ring. */
        struct vhost_vring_state st = { .index = q };
        VmmVirtqueue *vq = vmm_virtio_get_queue(vs->vdev, q);
        if (vhost_ioctl(vs, VHOST_GET_VRING_BASE, &st, "VHOST_GET_VRING_BASE") == 0 &&
            vk_atomic_load_acquire(&vq->ready)) {
            /* The kernel's ring positions in the core's queue, where the
             * next start and a saved record (backend_rings_saved) take
             * them: the next entry to take, and the used index the kernel
             * published (it re-reads that from the ring when it starts). */
            vq->last_avail_idx = vq->shadow_avail_idx = (uint16_t)st.num;
            vq->used_idx = le16toh(vk_atomic_read(&vq->used->idx));
        }
    }
    vk_atomic_store_release(&vs->running, false);
}

static void vs_start_or_break(VmmVhostVsock *vs) VMM_REQUIRES(vs->lock)
{
    if (vs_start(vs) < 0) {
        vs_stop(vs);
        vmm_virtio_set_needs_reset(vs->vdev, "vhost-vsock: the kernel refused the queues");
    }
}

/* ---- virtio callbacks ---------------------------------------------------------- */

/* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET into the driver's next event buffer
 * (the queue's context): the guest drops the connections it had before a
 * restore - the kernel of this host knows none of them - and re-reads its
 * CID.  Without a buffer it stays pending for the driver's next one. */
static void vs_send_reset_event(VmmVhostVsock *vs, VmmVirtqueue *vq)
{
    int err = 0;
    VmmVirtqElem *e = vmm_virtqueue_pop(vq, sizeof(*e), &err);
    if (!e) {
        return;
    }
    struct virtio_vsock_event ev = { .id = htole32(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET) };
    const uint8_t *src = (const uint8_t *)&ev;
    size_t done = 0;
    for (unsigned i = e->out_num; i < e->out_num + e->in_num && done < sizeof(ev); i++) {
        size_t n = e->iov[i].iov_len < sizeof(ev) - done ? e->iov[i].iov_len : sizeof(ev) - done;
        memcpy(e->iov[i].iov_base, src + done, n);
        done += n;
    }
    vmm_virtqueue_push(vq, e, (uint32_t)done);
    free(e);
    vmm_virtqueue_notify(vq);
    if (done == sizeof(ev)) {
        vk_atomic_set(&vs->reset_event, false);
    } else {
        vk_warn("vhost-vsock '%s': an event buffer of %zu bytes", vs->name, done);
    }
}

static void vs_handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    VmmVhostVsock *vs = opaque;
    unsigned q = vmm_virtqueue_index(vq);
    (void)vdev;

    /* The kernel's doorbell; the event queue's buffers wait for an event. */
    if (q < VS_VHOST_QUEUES) {
        vmm_event_notifier_set(vs->kick[q]);
    } else if (vk_atomic_read(&vs->reset_event)) {
        vs_send_reset_event(vs, vq);
    }
}

static void vs_driver_ok(VmmVirtioDevice *vdev, void *opaque)
{
    VmmVhostVsock *vs = opaque;
    (void)vdev;

    if (vk_atomic_read(&vdev->state_loaded)) {
        /* A restore: this host's kernel has the rings from where the saved
         * kernel left them, none of the guest's connections, and perhaps
         * another CID (the configuration shows the device's own).  The
         * event goes out on the event queue's kick that follows. */
        struct virtio_vsock_config cfg = { .guest_cid = htole64(vs->cid) };
        uint64_t cid;
        if (vmm_virtio_config_read(vdev, 0, &cid, sizeof(cid)) == 0 &&
            cid != cfg.guest_cid) {
            vmm_virtio_config_update(vdev, 0, &cfg.guest_cid, sizeof(cid));
        }
        vk_atomic_set(&vs->reset_event, true);
    }
    vk_mutex_lock(&vs->lock);
    vs->want_run = true;
    vs_start_or_break(vs);
    vk_mutex_unlock(&vs->lock);
}

static void vs_quiesce(VmmVirtioDevice *vdev, void *opaque)
{
    VmmVhostVsock *vs = opaque;
    (void)vdev;

    vk_mutex_lock(&vs->lock);
    vs_stop(vs);
    vk_mutex_unlock(&vs->lock);
}

static void vs_resume(VmmVirtioDevice *vdev, void *opaque)
{
    VmmVhostVsock *vs = opaque;

    vk_mutex_lock(&vs->lock);
    if (vs->want_run && !vs->running &&
        !(vmm_virtio_get_status(vdev) & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET)) {
        vs_start_or_break(vs);
    }
    vk_mutex_unlock(&vs->lock);
}

static void vs_reset(VmmVirtioDevice *vdev, void *opaque)
{
    VmmVhostVsock *vs = opaque;
    (void)vdev;

    /* Quiesced: the kernel was stopped by vs_quiesce(). */
    vk_mutex_lock(&vs->lock);
    vs->want_run = false;                   /* the core reset the rings' positions */
    vk_mutex_unlock(&vs->lock);
    vk_atomic_set(&vs->reset_event, false);
}

/* The kernel used buffers: the queue's interrupt (ctx). */
static void vs_call(VmmVhostVsock *vs, unsigned q)
{
    if (vmm_event_notifier_test_and_clear(vs->call[q])) {
        virtio_raise(vs->vdev, (int)q);
    }
}

static void vs_call_rx(void *opaque)
{
    vs_call(opaque, 0);
}

static void vs_call_tx(void *opaque)
{
    vs_call(opaque, 1);
}

/* Guest RAM as the kernel must see it (main loop, map lock held). */
static void vs_mem_listener(void *opaque, const VmmMemorySection *s, bool added)
{
    VmmVhostVsock *vs = opaque;

    if (s->flags & VMM_MEM_READONLY) {
        return;     /* ROM holds no ring or buffer the kernel writes */
    }
    vk_mutex_lock(&vs->lock);
    if (added) {
        if (vs->nregions == VS_MAX_REGIONS) {
            vs->too_many_regions = true;
        } else {
            vs->regions[vs->nregions++] = (VsRegion){ s->gpa, s->length, (uintptr_t)s->host };
        }
    } else {
        for (unsigned i = 0; i < vs->nregions; i++) {
            if (vs->regions[i].gpa == s->gpa) {
                vs->regions[i] = vs->regions[--vs->nregions];
                break;
            }
        }
    }
    vk_mutex_unlock(&vs->lock);
}

/* ---- Life cycle ------------------------------------------------------------------ */

typedef struct VsWatch {
    VmmVhostVsock *vs;
    bool on;
    int ret;
} VsWatch;

static void vs_watch_bh(void *opaque)
{
    VsWatch *w = opaque;
    VmmVhostVsock *vs = w->vs;

    w->ret = vmm_aio_set_event_notifier(vs->ctx, vs->call[0], w->on ? vs_call_rx : NULL,
                                        NULL, NULL, vs);
    if (w->ret == 0 || !w->on) {
        int r = vmm_aio_set_event_notifier(vs->ctx, vs->call[1], w->on ? vs_call_tx : NULL,
                                           NULL, NULL, vs);
        w->ret = w->ret ? w->ret : r;
    }
}

/* Install or remove the call handlers in ctx, from the main loop. */
static int vs_watch(VmmVhostVsock *vs, bool on)
{
    VsWatch w = { .vs = vs, .on = on };
    int r = aio_run_in_context(vs->ctx, vs_watch_bh, &w);
    return r < 0 ? r : w.ret;
}

static void vs_destroy(VmmVhostVsock *vs)
{
    if (vs->listening) {
        vmm_guest_memory_remove_listener(vs->mem, vs_mem_listener, vs);
    }
    if (vs->mem) {
        vmm_guest_memory_unref(vs->mem);
    }
    if (vs->fd >= 0) {
        close(vs->fd);
    }
    for (unsigned q = 0; q < VS_VHOST_QUEUES; q++) {
        if (vs->kick[q]) {
            vmm_event_notifier_free(vs->kick[q]);
        }
        if (vs->call[q]) {
            vmm_event_notifier_free(vs->call[q]);
        }
    }
    vk_mutex_destroy(&vs->lock);
    free(vs->name);
    free(vs);
}

VmmVhostVsock *vmm_vhost_vsock_new(VmmGuestMemory *mem, const VmmVhostVsockOptions *opts,
                                   int *errp)
{
    VmmVhostVsockOptions o;
    VmmVhostVsock *vs = NULL;
    int err = -EINVAL;

    if (!mem || !opts || opts->size < offsetof(VmmVhostVsockOptions, ctx) + sizeof(void *)) {
        err = VMM_MISUSE_ERR(-EINVAL, "vhost-vsock without memory or options");
        goto fail;
    }
    memset(&o, 0, sizeof(o));
    memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
    if (o.guest_cid < 3 || o.guest_cid > 0xfffffffeull) {
        goto fail;
    }
    err = -ENOMEM;
    vs = calloc(1, sizeof(*vs));
    if (!vs) {
        goto fail;
    }
    vk_mutex_init(&vs->lock);
    vs->fd = -1;
    /* Our own reference: the listener is removed in vs_destroy(), after
     * the virtio device (which holds another) is gone. */
    vmm_guest_memory_ref(mem);
    vs->mem = mem;
    vs->cid = o.guest_cid;
    vs->ctx = o.ctx ? o.ctx : vmm_aio_context_main();
    vs->name = strdup(o.name ? o.name : "vhost-vsock");
    if (!vs->name) {
        goto fail;
    }
    for (unsigned q = 0; q < VS_VHOST_QUEUES; q++) {
        vs->kick[q] = vmm_event_notifier_new(&err);
        vs->call[q] = vs->kick[q] ? vmm_event_notifier_new(&err) : NULL;
        if (!vs->call[q]) {
            goto fail;
        }
    }
    vs->fd = open(o.vhost_path ? o.vhost_path : "/dev/vhost-vsock", O_RDWR | O_CLOEXEC);
    if (vs->fd < 0) {
        err = -errno;
        goto fail;
    }
    if ((err = vhost_ioctl(vs, VHOST_SET_OWNER, NULL, "VHOST_SET_OWNER")) < 0 ||
        (err = vhost_ioctl(vs, VHOST_GET_FEATURES, &vs->vhost_features,
                           "VHOST_GET_FEATURES")) < 0) {
        goto fail;
    }
    if (ioctl(vs->fd, VHOST_VSOCK_SET_GUEST_CID, &vs->cid) < 0) {
        err = -errno;       /* EADDRINUSE: another VM has it */
        goto fail;
    }
    /* The core's ring features must be the kernel's too. */
    uint64_t core = (1ull << VMM_VIRTIO_F_VERSION_1) | (1ull << VMM_VIRTIO_F_RING_EVENT_IDX) |
                    (1ull << VMM_VIRTIO_F_RING_INDIRECT_DESC);
    if ((vs->vhost_features & core) != core) {
        vk_warn("vhost-vsock '%s': the kernel lacks ring features (%#llx)", vs->name,
                (unsigned long long)vs->vhost_features);
        err = -ENOTSUP;
        goto fail;
    }
    err = vmm_guest_memory_add_listener(mem, vs_mem_listener, vs);
    if (err < 0) {
        goto fail;
    }
    vs->listening = true;
    struct virtio_vsock_config cfg = { .guest_cid = htole64(vs->cid) };
    VmmVirtioDeviceOps ops = {
        .size = sizeof(ops), .device_id = 19 /* VIRTIO_ID_VSOCK */,
        .features = vs->vhost_features & (1ull << VIRTIO_VSOCK_F_SEQPACKET),
        .config_size = sizeof(cfg), .num_queues = VS_QUEUES,
        .queue_max_size = VS_QUEUE_SIZE, .handle_queue = vs_handle,
        .reset = vs_reset, .driver_ok = vs_driver_ok, .quiesce = vs_quiesce,
        .resume = vs_resume,
    };
    vs->vdev = vmm_virtio_device_new(vs->name, &ops, vs, mem, &cfg, &err);
    if (!vs->vdev) {
        goto fail;
    }
    vs->vdev->backend_rings_saved = true;   /* vs_stop() */
    for (unsigned q = 0; q < VS_QUEUES && err == 0; q++) {
        err = vmm_virtio_queue_set_context(vs->vdev, q, vs->ctx);
    }
    if (err == 0) {
        err = vs_watch(vs, true);
    }
    if (err < 0) {
        vs_watch(vs, false);
        vmm_virtio_device_free(vs->vdev);
        goto fail;
    }
    return vs;
fail:
    if (vs) {
        vs_destroy(vs);
    }
    if (errp) {
        *errp = err;
    }
    return NULL;
}

void vmm_vhost_vsock_free(VmmVhostVsock *vs)
{
    if (!vs) {
        return;
    }
    vk_mutex_lock(&vs->lock);
    vs_stop(vs);
    vk_mutex_unlock(&vs->lock);
    vs_watch(vs, false);
    vmm_virtio_device_free(vs->vdev);
    vs_destroy(vs);
}

VmmVirtioDevice *vmm_vhost_vsock_get_virtio(VmmVhostVsock *vs)
{
    return vs->vdev;
}

bool vmm_vhost_vsock_is_running(VmmVhostVsock *vs)
{
    return vs && vk_atomic_load_acquire(&vs->running);
}
