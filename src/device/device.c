/* SPDX-License-Identifier: MIT */
/*
 * The device model: requests queued in order, delivered to a quiesced
 * device by one thread at a time (the "deliverer"), then a resume.
 *
 * State (under dev->lock; dev->state is also read atomically by the DMA
 * check):
 *   RUNNING --request--> QUIESCING (quiesce cb) --0 or quiesced(0)-->
 *   QUIESCED --queue drained, no pause--> resume cb --> RUNNING
 *   QUIESCING --refused or quiesced(err)--> RUNNING, queued requests fail.
 * Whoever changes something that may let delivery progress calls
 * device_run(); if another thread is already delivering it only leaves the
 * work queued, and that deliverer loops until nothing is left to do, so no
 * wake-up is lost and callbacks never run concurrently.
 *
 * The hand-over (H): a quiesce callback that answers -EBUSY ends its
 * thread's delivery loop; vmm_device_quiesced() runs the loop itself, so
 * that when it returns the queued requests were delivered and the device
 * resumed, whichever thread called it and whenever.  If it is called while
 * the requesting thread is still inside the quiesce callback (or on its
 * way back to the lock), it waits on handoff until that thread has left
 * the loop.  Both sides test and change delivering and state under lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/lock.h"
#include "device/device-internal.h"
#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"
#include "vmmkit/aio.h"

enum { DEV_RUNNING, DEV_QUIESCING, DEV_QUIESCED };

typedef enum DevReqKind {
    REQ_RESET, REQ_DMA_MAP, REQ_MIGRATION, REQ_PAUSE,
} DevReqKind;

typedef struct DevReq {
    struct DevReq *next;
    DevReqKind kind;
    VmmMemorySection section;
    bool added;
    VmmMigrationState mig;
    VmmDeviceDoneFunc *done;
    void *opaque;
} DevReq;

struct VmmDevice {
    VmmMutex lock;
    char *name;
    VmmDeviceOps ops;
    void *opaque;
    VmmGuestMemory *mem;
    int state;              /* DEV_*; written under lock, read atomically */
    bool delivering;        /* a thread runs device_run()'s loop */
    const void *deliverer;  /* that thread (&tls_token) */
    pthread_cond_t handoff; /* signalled when delivering drops (H) */
    unsigned pauses;        /* granted vmm_device_pause() holds */
    DevReq *head, **tail;   /* queued requests */
};

/* The device whose callback this thread is delivering, for the DMA rule. */
static __thread VmmDevice *tls_delivering;
/* This thread's identity (dev->deliverer). */
static __thread char tls_token;

VmmDevice *vmm_device_new(const char *name, const VmmDeviceOps *ops, void *opaque,
                          VmmGuestMemory *mem, int *errp)
{
    VmmDevice *dev;

    if (!ops || ops->size < offsetof(VmmDeviceOps, resume) + sizeof(void *) ||
        !ops->quiesce) {
        int e = VMM_MISUSE_ERR(-EINVAL, "device ops without a quiesce callback");
        if (errp) {
            *errp = e;
        }
        return NULL;
    }
    dev = calloc(1, sizeof(*dev));
    if (!dev || !(dev->name = strdup(name ? name : "device"))) {
        free(dev);
        if (errp) {
            *errp = -ENOMEM;
        }
        return NULL;
    }
    memcpy(&dev->ops, ops, ops->size < sizeof(dev->ops) ? ops->size : sizeof(dev->ops));
    dev->ops.size = sizeof(dev->ops);
    vk_mutex_init(&dev->lock);
    pthread_cond_init(&dev->handoff, NULL);
    dev->opaque = opaque;
    dev->mem = mem;
    if (mem) {
        vmm_guest_memory_ref(mem);
    }
    dev->tail = &dev->head;
    return dev;
}

bool vmm_device_is_idle(VmmDevice *dev)
{
    vk_mutex_lock(&dev->lock);
    bool busy = dev->head || dev->pauses || dev->delivering || dev->state != DEV_RUNNING;
    vk_mutex_unlock(&dev->lock);
    return !busy;
}

bool device_delivering(VmmDevice *dev)
{
    vk_mutex_lock(&dev->lock);
    bool d = dev->delivering;
    vk_mutex_unlock(&dev->lock);
    return d;
}

int vmm_device_free(VmmDevice *dev)
{
    if (!dev) {
        return 0;
    }
    if (!vmm_device_is_idle(dev)) {
        return VMM_MISUSE_ERR(-EBUSY, "device '%s' freed while a request or pause is pending",
                              dev->name);
    }
    vmm_guest_memory_unref(dev->mem);
    pthread_cond_destroy(&dev->handoff);
    vk_mutex_destroy(&dev->lock);
    free(dev->name);
    free(dev);
    return 0;
}

const char *vmm_device_name(VmmDevice *dev)
{
    return dev->name;
}

VmmGuestMemory *vmm_device_guest_memory(VmmDevice *dev)
{
    return dev->mem;
}

bool vmm_device_is_quiesced(VmmDevice *dev)
{
    return vk_atomic_load_acquire(&dev->state) == DEV_QUIESCED;
}

static void set_state(VmmDevice *dev, int st) VMM_REQUIRES(dev->lock)
{
    /* Release: a device thread that sees RUNNING again (acquire in
     * device_dma_allowed) also sees what the callbacks did. */
    vk_atomic_store_release(&dev->state, st);
}

/* Run one queued request's callback (quiesced, lock dropped). */
static int deliver(VmmDevice *dev, DevReq *r)
{
    switch (r->kind) {
    case REQ_RESET:
        return dev->ops.reset ? dev->ops.reset(dev, dev->opaque) : 0;
    case REQ_DMA_MAP:
        return dev->ops.dma_map ? dev->ops.dma_map(dev, dev->opaque, &r->section, r->added) : 0;
    case REQ_MIGRATION:
        return dev->ops.migration ? dev->ops.migration(dev, dev->opaque, r->mig) : 0;
    case REQ_PAUSE:
        return 0;
    }
    return -EINVAL;
}

/* Fail every queued request with @err (lock held; callbacks after). */
static DevReq *take_all(VmmDevice *dev) VMM_REQUIRES(dev->lock)
{
    DevReq *all = dev->head;
    dev->head = NULL;
    dev->tail = &dev->head;
    return all;
}

static void fail_all(VmmDevice *dev, DevReq *all, int err)
{
    while (all) {
        DevReq *r = all;
        all = r->next;
        if (r->done) {
            r->done(dev, err, r->opaque);
        }
        free(r);
    }
}

/* One step of delivery; returns false when this thread must stop. */
static bool device_step(VmmDevice *dev) VMM_REQUIRES(dev->lock)
{
    if (dev->state == DEV_RUNNING) {
        if (!dev->head) {
            return false;
        }
        set_state(dev, DEV_QUIESCING);
        vk_mutex_unlock(&dev->lock);
        int r = dev->ops.quiesce(dev, dev->opaque);
        vk_mutex_lock(&dev->lock);
        if (r == 0 && dev->state == DEV_QUIESCING) {
            set_state(dev, DEV_QUIESCED);
        } else if (r < 0 && r != -EBUSY && dev->state == DEV_QUIESCING) {
            set_state(dev, DEV_RUNNING);
            DevReq *all = take_all(dev);
            vk_mutex_unlock(&dev->lock);
            fail_all(dev, all, r);
            vk_mutex_lock(&dev->lock);
        } else if (r == -EBUSY && dev->state == DEV_QUIESCING) {
            /* H: vmm_device_quiesced() delivers; hand the loop over (it
             * may be waiting for us already).  Still QUIESCING means no
             * other thread reported yet: they wait for the hand-over. */
            return false;
        }
        /* Otherwise the callback itself reported (quiesced from inside
         * it, in this thread): go on delivering. */
        return true;
    }
    if (dev->state == DEV_QUIESCING) {
        return false;   /* vmm_device_quiesced() will call device_run() */
    }
    /* Quiesced. */
    if (dev->head) {
        DevReq *r = dev->head;
        dev->head = r->next;
        if (!dev->head) {
            dev->tail = &dev->head;
        }
        if (r->kind == REQ_PAUSE) {
            dev->pauses++;     /* before done(), which may unpause */
        }
        vk_mutex_unlock(&dev->lock);
        /* Mark this thread as delivering to @dev (the DMA rule); a callback
         * may deliver to another device, so restore what was there. */
        VmmDevice *outer = tls_delivering;
        tls_delivering = dev;
        int ret = deliver(dev, r);
        if (r->done) {
            r->done(dev, ret, r->opaque);
        }
        tls_delivering = outer;
        free(r);
        vk_mutex_lock(&dev->lock);
        return true;
    }
    if (dev->pauses) {
        return false;
    }
    set_state(dev, DEV_RUNNING);
    if (dev->ops.resume) {
        vk_mutex_unlock(&dev->lock);
        dev->ops.resume(dev, dev->opaque);
        vk_mutex_lock(&dev->lock);
    }
    return true;
}

/* Run the delivery loop in this thread until nothing is left to do. */
static void run_loop(VmmDevice *dev) VMM_REQUIRES(dev->lock)
{
    dev->delivering = true;
    dev->deliverer = &tls_token;
    while (device_step(dev)) {
    }
    dev->delivering = false;
    dev->deliverer = NULL;
    pthread_cond_broadcast(&dev->handoff);     /* H: a waiting quiesced() */
}

static void device_run(VmmDevice *dev)
{
    vk_mutex_lock(&dev->lock);
    if (dev->delivering) {
        /* That thread re-checks the queue and state before it stops. */
        vk_mutex_unlock(&dev->lock);
        return;
    }
    run_loop(dev);
    vk_mutex_unlock(&dev->lock);
    /* Completions may have run in another thread than the main loop's:
     * let a VMM_AIO_WAIT_WHILE() there re-check its condition. */
    vmm_aio_wait_kick();
}

static int device_request(VmmDevice *dev, DevReq *tmpl)
{
    if (!dev) {
        return -EINVAL;
    }
    DevReq *r = malloc(sizeof(*r));
    if (!r) {
        return -ENOMEM;
    }
    *r = *tmpl;
    r->next = NULL;
    vk_mutex_lock(&dev->lock);
    *dev->tail = r;
    dev->tail = &r->next;
    vk_mutex_unlock(&dev->lock);
    device_run(dev);
    return 0;
}

int vmm_device_reset(VmmDevice *dev, VmmDeviceDoneFunc *done, void *opaque)
{
    return device_request(dev, &(DevReq){ .kind = REQ_RESET, .done = done,
                                          .opaque = opaque });
}

int vmm_device_dma_map_change(VmmDevice *dev, const VmmMemorySection *s, bool added,
                              VmmDeviceDoneFunc *done, void *opaque)
{
    if (!s) {
        return -EINVAL;
    }
    return device_request(dev, &(DevReq){ .kind = REQ_DMA_MAP, .section = *s,
                                          .added = added, .done = done,
                                          .opaque = opaque });
}

int vmm_device_set_migration_state(VmmDevice *dev, VmmMigrationState st,
                                   VmmDeviceDoneFunc *done, void *opaque)
{
    if ((unsigned)st > VMM_MIGRATION_RESUMING) {
        return -EINVAL;
    }
    return device_request(dev, &(DevReq){ .kind = REQ_MIGRATION, .mig = st,
                                          .done = done, .opaque = opaque });
}

int vmm_device_pause(VmmDevice *dev, VmmDeviceDoneFunc *done, void *opaque)
{
    return device_request(dev, &(DevReq){ .kind = REQ_PAUSE, .done = done,
                                          .opaque = opaque });
}

int vmm_device_unpause(VmmDevice *dev)
{
    vk_mutex_lock(&dev->lock);
    if (!dev->pauses) {
        vk_mutex_unlock(&dev->lock);
        return VMM_MISUSE_ERR(-EINVAL, "device '%s' unpaused without a pause", dev->name);
    }
    dev->pauses--;
    vk_mutex_unlock(&dev->lock);
    device_run(dev);
    return 0;
}

/* Report the quiesce's outcome (lock held, state QUIESCING); returns the
 * requests it fails, for fail_all() without the lock. */
static DevReq *quiesce_outcome(VmmDevice *dev, int err) VMM_REQUIRES(dev->lock)
{
    if (err == 0) {
        set_state(dev, DEV_QUIESCED);
        return NULL;
    }
    set_state(dev, DEV_RUNNING);
    return take_all(dev);
}

void vmm_device_quiesced(VmmDevice *dev, int err)
{
    DevReq *failed;

    if (!dev) {
        VMM_MISUSE("NULL device");
        return;
    }
    err = err < 0 ? err : -err;
    vk_mutex_lock(&dev->lock);
    if (dev->state == DEV_QUIESCING && dev->delivering && dev->deliverer == &tls_token) {
        /* From inside the quiesce callback, in the delivering thread: its
         * loop goes on delivering once the callback returns. */
        failed = quiesce_outcome(dev, err);
        vk_mutex_unlock(&dev->lock);
        fail_all(dev, failed, err);
        return;
    }
    /* H: the requesting thread may still be inside the quiesce callback,
     * or on its way back to the lock: wait until it has left the loop. */
    while (dev->delivering && dev->state == DEV_QUIESCING) {
        pthread_cond_wait(&dev->handoff, &dev->lock.m);
    }
    if (dev->state != DEV_QUIESCING) {
        vk_mutex_unlock(&dev->lock);
        VMM_MISUSE("device '%s' reported quiesced while not quiescing", dev->name);
        return;
    }
    failed = quiesce_outcome(dev, err);
    if (failed) {
        /* Hold the loop while the failed requests complete without the lock:
         * a request queued meanwhile waits for run_loop() below. */
        dev->delivering = true;
        dev->deliverer = &tls_token;
        vk_mutex_unlock(&dev->lock);
        fail_all(dev, failed, err);
        vk_mutex_lock(&dev->lock);
    }
    run_loop(dev);
    vk_mutex_unlock(&dev->lock);
    vmm_aio_wait_kick();
}

bool device_dma_allowed(VmmDevice *dev, const char *func)
{
    /* Acquire: pairs with the release in set_state(). */
    if (vk_likely(vk_atomic_load_acquire(&dev->state) != DEV_QUIESCED)) {
        return true;
    }
    if (tls_delivering == dev) {
        return true;    /* inside a callback delivered while quiesced */
    }
    vk_misuse(func, "DMA by device '%s' while it is quiesced (only its "
               "callbacks may do DMA then)", dev->name);
    return false;
}

int vmm_device_dma_read(VmmDevice *dev, uint64_t gpa, void *buf, size_t len)
{
    if (!dev->mem) {
        return -ENODEV;
    }
    if (!device_dma_allowed(dev, __func__)) {
        return -EBUSY;
    }
    return vmm_dma_read(dev->mem, gpa, buf, len);
}

int vmm_device_dma_write(VmmDevice *dev, uint64_t gpa, const void *buf, size_t len)
{
    if (!dev->mem) {
        return -ENODEV;
    }
    if (!device_dma_allowed(dev, __func__)) {
        return -EBUSY;
    }
    return vmm_dma_write(dev->mem, gpa, buf, len);
}

int vmm_device_dma_map(VmmDevice *dev, uint64_t gpa, uint64_t len, uint32_t flags,
                       struct iovec *iov, unsigned max_iov)
{
    if (!dev->mem) {
        return -ENODEV;
    }
    if (!device_dma_allowed(dev, __func__)) {
        return -EBUSY;
    }
    return vmm_dma_map(dev->mem, gpa, len, flags, iov, max_iov);
}
