/* SPDX-License-Identifier: MIT */
/*
 * A device that does DMA from its own thread, and the quiesce protocol.
 *
 * The device's worker thread keeps incrementing a counter in guest memory
 * (a DMA write every millisecond).  The main loop asks for a device reset
 * with vmm_device_reset().  A reset must not race with the device's DMA,
 * so the library first asks the device to quiesce: the quiesce callback
 * answers -EBUSY ("in flight, I will tell you"), the worker finishes its
 * current write, calls vmm_device_quiesced() and parks.  The reset
 * callback then runs (here inside that vmm_device_quiesced() call, in the
 * worker's thread) and clears the counter; then the resume callback lets
 * the worker go on.  The program checks the counter restarted from 0.
 *
 * Build: cc quiesce-device.c $(pkg-config --cflags --libs vmmkit) -o quiesce-device
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include <vmmkit/vmmkit.h>

#define COUNTER_GPA 0x1000

typedef struct Dev {
    VmmDevice *dev;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool quiesce_requested;     /* under lock */
    bool parked;                /* under lock: the worker waits for resume */
    bool stop;                  /* under lock */
    uint64_t counter;           /* the worker's copy; reset clears it */
    bool just_resumed;          /* under lock */
    uint64_t first_after_resume;  /* the first value written after it */
    int resets;
    int dma_errors;
} Dev;

/* The device's own thread: DMA, and the quiesce handshake. */
static void *worker(void *opaque)
{
    Dev *d = opaque;
    struct timespec ms = { 0, 1000000 };

    pthread_mutex_lock(&d->lock);
    while (!d->stop) {
        if (d->quiesce_requested) {
            /* Nothing is in flight at this point: tell the library.  The
             * pending reset is delivered inside this call. */
            d->quiesce_requested = false;
            d->parked = true;
            pthread_mutex_unlock(&d->lock);
            vmm_device_quiesced(d->dev, 0);
            pthread_mutex_lock(&d->lock);
            while (d->parked && !d->stop) {
                pthread_cond_wait(&d->cond, &d->lock);
            }
            d->just_resumed = true;
            continue;
        }
        uint64_t v = ++d->counter;
        if (d->just_resumed) {
            d->just_resumed = false;
            d->first_after_resume = v;
        }
        pthread_mutex_unlock(&d->lock);
        /* DMA outside the lock, as a real device would (it may take time). */
        if (vmm_device_dma_write(d->dev, COUNTER_GPA, &v, sizeof(v)) < 0) {
            d->dma_errors++;
        }
        nanosleep(&ms, NULL);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Called by the library (any thread): stop touching guest memory. */
static int dev_quiesce(VmmDevice *dev, void *opaque)
{
    Dev *d = opaque;
    (void)dev;
    pthread_mutex_lock(&d->lock);
    d->quiesce_requested = true;
    pthread_mutex_unlock(&d->lock);
    return -EBUSY;          /* the worker calls vmm_device_quiesced() */
}

/* Quiesced: the reset may touch device state and guest memory freely. */
static int dev_reset(VmmDevice *dev, void *opaque)
{
    Dev *d = opaque;
    uint64_t zero = 0;
    pthread_mutex_lock(&d->lock);
    d->counter = 0;
    d->resets++;
    pthread_mutex_unlock(&d->lock);
    /* DMA from inside a callback delivered while quiesced is allowed. */
    return vmm_device_dma_write(dev, COUNTER_GPA, &zero, sizeof(zero));
}

/* Running again. */
static void dev_resume(VmmDevice *dev, void *opaque)
{
    Dev *d = opaque;
    (void)dev;
    pthread_mutex_lock(&d->lock);
    d->parked = false;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static const VmmDeviceOps dev_ops = {
    .size = sizeof(VmmDeviceOps),
    .quiesce = dev_quiesce,
    .resume = dev_resume,
    .reset = dev_reset,
};

typedef struct ResetDone {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int ret;
    uint64_t before;            /* the guest's counter when the reset ran */
} ResetDone;

/* The reset's completion (in the delivering thread: here the worker's). */
static void reset_done(VmmDevice *dev, int ret, void *opaque)
{
    ResetDone *r = opaque;
    (void)dev;
    pthread_mutex_lock(&r->lock);
    r->done = true;
    r->ret = ret;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static uint64_t guest_counter(void *ram)
{
    return __atomic_load_n((uint64_t *)((char *)ram + COUNTER_GPA), __ATOMIC_RELAXED);
}

int main(void)
{
    int err = 0;

    /* 64 KiB of guest memory at guest address 0. */
    VmmRamRegionOptions ro = { .size = sizeof(ro), .length = 64 * 1024, .name = "ram" };
    VmmRamRegion *ram = vmm_ram_region_new(&ro, &err);
    VmmGuestMemory *mem = ram ? vmm_guest_memory_new(&err) : NULL;
    if (!mem || vmm_guest_memory_add(mem, 0, ram, 0, 64 * 1024, 0) < 0) {
        fprintf(stderr, "quiesce-device: guest memory: %s\n", vmm_strerror(err));
        return 1;
    }
    void *host = vmm_ram_region_host(ram);

    Dev d = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    d.dev = vmm_device_new("counter", &dev_ops, &d, mem, &err);
    if (!d.dev) {
        fprintf(stderr, "quiesce-device: %s\n", vmm_strerror(err));
        return 1;
    }
    pthread_t t;
    pthread_create(&t, NULL, worker, &d);

    /* Let the device count for a while. */
    while (guest_counter(host) < 20) {
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    }

    /* Reset it: returns once queued; reset_done runs when it is over. */
    ResetDone r = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    r.before = guest_counter(host);
    if (vmm_device_reset(d.dev, reset_done, &r) < 0) {
        return 1;
    }
    pthread_mutex_lock(&r.lock);
    while (!r.done) {
        pthread_cond_wait(&r.cond, &r.lock);
    }
    pthread_mutex_unlock(&r.lock);
    printf("reset done (%s); the counter was at least %llu before it\n", vmm_strerror(r.ret),
           (unsigned long long)r.before);

    /* Counting starts again from 0: wait until the device wrote again. */
    while (guest_counter(host) == 0) {
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    }

    pthread_mutex_lock(&d.lock);
    d.stop = true;
    pthread_cond_broadcast(&d.cond);
    pthread_mutex_unlock(&d.lock);
    pthread_join(t, NULL);

    printf("first value written after the reset: %llu\n",
           (unsigned long long)d.first_after_resume);
    /* No DMA was refused (none happened while quiesced) and counting
     * restarted at 1. */
    int ok = r.ret == 0 && d.resets == 1 && d.dma_errors == 0 && d.first_after_resume == 1 &&
             vmm_device_is_idle(d.dev);
    vmm_device_free(d.dev);
    vmm_guest_memory_unref(mem);
    vmm_ram_region_unref(ram);
    printf("%s\n", ok ? "quiesce-device: ok" : "quiesce-device: FAILED");
    return ok ? 0 : 1;
}
