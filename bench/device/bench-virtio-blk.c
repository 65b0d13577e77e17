/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk request round trip through the null driver, one iothread:
 *
 *   virtio_blk_null_read_4k_qd32  requests/s completed by a virtio-blk
 *       device whose queue runs in one iothread: a test-side guest driver
 *       (this thread) keeps 32 4 KiB reads in flight on a split ring in
 *       guest memory, with event-index doorbells (an eventfd handled in the
 *       iothread, the ioeventfd path) and interrupts (an eventfd, the irqfd
 *       path).  Each request: pop, parse, coroutine, vmm_blk_co_preadv on a
 *       null node, push, notify.
 *   vs blk_null_read_4k: the block layer's own null IOPS in the same
 *       iothread, same run: coroutines calling vmm_blk_co_preadv in a loop
 *       (no virtio in the way).
 *
 *   virtio_blk_null_read_4k_qd1 / blk_null_read_4k_qd1: the same with one
 *       request in flight (one coroutine looping for the comparator).
 *
 * The ratio is the fraction of the block layer's speed left after the
 * virtio device; both are wall-clock rates on the same iothread, best of
 * three alternating rounds.  VMM_BENCH_QUICK=1: tiny runs (bench-smoke).
 */
#include <errno.h>
#include <linux/virtio_blk.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../tests/device/vq-driver.h"
#include "vmmkit/virtio-blk.h"

#define QD 32
#define MiB (1ull << 20)
#define HDR 0x100000
#define STATUS 0x110000
#define DATA 0x200000

static bool quick;

typedef struct Rig {
    VmmGuestMemory *mem;
    VmmRamRegion *ram;
    uint8_t *host;
    VmmIOThread *iot;
    VmmAioContext *ctx;
    VmmBlockBackend *blk;
    VmmVirtioBlk *vblk;
    VmmVirtioDevice *vdev;
    VmmEventNotifier *doorbell, *irq;
    TestVq tq;
    uint16_t head[QD];
    uint64_t doorbells, interrupts;     /* driver side: rung, received */
} Rig;

static void irq_cb(void *opaque, VmmVirtioDevice *vdev, int queue)
{
    Rig *r = opaque;
    (void)vdev;
    (void)queue;
    __atomic_fetch_add(&r->interrupts, 1, __ATOMIC_RELAXED);
    vmm_event_notifier_set(r->irq);
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench-virtio-blk: %s: %s\n", what, strerror(-err));
    exit(1);
}

static void rig_init(Rig *r)
{
    VmmRamRegionOptions o = { .size = sizeof(o), .length = 4 * MiB };
    GError *gerr = NULL;
    int err = 0;

    r->mem = vmm_guest_memory_new(&err);
    r->ram = vmm_ram_region_new(&o, &err);
    if (!r->mem || !r->ram || (err = vmm_guest_memory_add(r->mem, 0, r->ram, 0, 4 * MiB, 0))) {
        die("guest memory", err);
    }
    r->host = vmm_ram_region_host(r->ram);
    r->iot = vmm_iothread_new("bench-vblk", NULL, &err);
    if (!r->iot) {
        die("iothread", err);
    }
    r->ctx = vmm_iothread_get_context(r->iot);
    r->blk = vmm_blk_new_open("driver=null,size=1G", 0, &gerr);
    if (!r->blk || vmm_blk_set_context(r->blk, r->ctx, NULL) < 0) {
        die("null block node", -EIO);
    }
    VmmVirtioBlkOptions bo = { .size = sizeof(bo), .name = "bench", .queue_size = 128 };
    r->vblk = vmm_virtio_blk_new(r->blk, r->mem, &bo, &err);
    if (!r->vblk) {
        die("virtio-blk", err);
    }
    r->vdev = vmm_virtio_blk_get_virtio(r->vblk);
    r->doorbell = vmm_event_notifier_new(&err);
    r->irq = vmm_event_notifier_new(&err);
    vmm_virtio_set_interrupt(r->vdev, irq_cb, r);
    if ((err = vmm_virtio_queue_set_host_notifier(r->vdev, 0, r->doorbell)) < 0) {
        die("host notifier", err);
    }
    tvq_init(&r->tq, r->host, 0x10000, 128);
    TestVq *qs[1] = { &r->tq };
    if (tvq_bringup(r->vdev, qs, 1, vmm_virtio_get_device_features(r->vdev)) != 0x0f) {
        die("driver bring-up", -EIO);
    }
    for (unsigned s = 0; s < QD; s++) {
        struct virtio_blk_outhdr h = { .type = VIRTIO_BLK_T_IN, .sector = 8ull * s };
        memcpy(r->host + HDR + 16 * s, &h, sizeof(h));
        TestBuf b[3] = { { HDR + 16 * s, 16, false }, { DATA + 4096ull * s, 4096, true },
                         { STATUS + s, 1, true } };
        r->head[s] = tvq_chain(&r->tq, b, 3);
    }
}

static void rig_free(Rig *r)
{
    vmm_virtio_blk_free(r->vblk);
    vmm_blk_unref(r->blk);
    vmm_iothread_destroy(r->iot);
    vmm_event_notifier_free(r->doorbell);
    vmm_event_notifier_free(r->irq);
    vmm_guest_memory_unref(r->mem);
    vmm_ram_region_unref(r->ram);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Publish heads added since @old and ring the doorbell if the device asks
 * for it (event index; the full barrier pairs with the device's [D]). */
static void kick(Rig *r, uint16_t old)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t ev = __atomic_load_n(tvq_avail_event(&r->tq), __ATOMIC_RELAXED);
    if ((uint16_t)(r->tq.avail_idx - ev - 1) < (uint16_t)(r->tq.avail_idx - old)) {
        r->doorbells++;
        vmm_event_notifier_set(r->doorbell);
    }
}

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* @polled: the driver never sleeps and takes no interrupts (Linux
 * virtio-blk's poll queues): used_event stays half the index space ahead,
 * so the device never signals, and the driver spins on used->idx. */
static double run_virtio(Rig *r, double secs, unsigned qd, bool polled)
{
    uint64_t done = 0;
    uint16_t old = r->tq.avail_idx;

    if (polled) {
        __atomic_store_n(tvq_used_event(&r->tq), (uint16_t)(r->tq.last_used + 0x8000),
                         __ATOMIC_RELAXED);
    }

    for (unsigned s = 0; s < qd; s++) {
        tvq_publish(&r->tq, r->head[s]);
    }
    kick(r, old);
    double t0 = now_s(), end = t0 + secs;
    unsigned inflight = qd;
    bool stop = false;
    while (inflight) {
        uint32_t id, len;
        old = r->tq.avail_idx;
        unsigned got = 0;
        while (tvq_get_used(&r->tq, &id, &len)) {
            got++;
            done++;
            if (stop) {
                inflight--;
            } else {
                tvq_publish(&r->tq, (uint16_t)id);
            }
        }
        if (got) {
            if (polled) {
                __atomic_store_n(tvq_used_event(&r->tq), (uint16_t)(r->tq.last_used + 0x8000),
                                 __ATOMIC_RELAXED);
            }
            kick(r, old);
            stop = stop || now_s() >= end;
            continue;
        }
        if (polled) {
            double give_up = 0;
            for (unsigned spins = 1;
                 __atomic_load_n(&r->tq.used->idx, __ATOMIC_ACQUIRE) == r->tq.last_used;
                 spins++) {
                relax();
                if (!(spins & 0x3FFF)) {
                    /* The device's iothread may share this CPU (2 vCPUs,
                     * other load): let it run rather than spin a slice. */
                    sched_yield();
                }
                if (!(spins & 0xFFFFF)) {
                    double t = now_s();
                    give_up = give_up ? give_up : t + 2;
                    if (t > give_up) {
                        die("no completion for 2 s", -ETIMEDOUT);
                    }
                }
            }
            continue;
        }
        /* Nothing ready: ask for an interrupt at the next completion, then
         * re-check before sleeping (the driver half of [C]). */
        __atomic_store_n(tvq_used_event(&r->tq), r->tq.last_used, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(&r->tq.used->idx, __ATOMIC_ACQUIRE) != r->tq.last_used) {
            continue;
        }
        struct pollfd p = { .fd = vmm_event_notifier_fd(r->irq), .events = POLLIN };
        if (poll(&p, 1, 2000) <= 0) {
            die("no completion for 2 s", -ETIMEDOUT);
        }
        vmm_event_notifier_test_and_clear(r->irq);
    }
    return (double)done / (now_s() - t0);
}

/* ---- Comparator: the block layer alone, in the same iothread ------------- */

typedef struct Direct {
    VmmBlockBackend *blk;
    double end;
    uint64_t done;
    int running;
    unsigned qd;
    char *buf;
} Direct;

static VMM_COROUTINE_FN void direct_co(void *opaque)
{
    Direct *d = opaque;
    struct iovec iov = { d->buf, 4096 };
    unsigned n = 0;

    do {
        for (int i = 0; i < 64; i++) {
            if (vmm_blk_co_preadv(d->blk, 4096ll * (n++ % 4096), 4096, &iov, 1, 0) == 0) {
                d->done++;
            }
        }
    } while (now_s() < d->end);
    __atomic_sub_fetch(&d->running, 1, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static void direct_start(void *opaque)
{
    Direct *d = opaque;
    for (unsigned i = 0; i < d->qd; i++) {
        VmmCoroutine *co = vmm_coroutine_create(direct_co, d, NULL);
        if (co) {
            vmm_coroutine_enter(co);
        } else {
            __atomic_sub_fetch(&d->running, 1, __ATOMIC_RELEASE);
        }
    }
}

static double run_direct(Rig *r, double secs, unsigned qd)
{
    static char buf[4096];
    Direct d = { .blk = r->blk, .buf = buf, .running = (int)qd, .qd = qd };
    double t0 = now_s();
    d.end = t0 + secs;
    vmm_bh_schedule_oneshot(r->ctx, direct_start, &d, "bench-direct");
    VMM_AIO_WAIT_WHILE(r->ctx, __atomic_load_n(&d.running, __ATOMIC_ACQUIRE) != 0);
    return (double)d.done / (now_s() - t0);
}

int main(void)
{
    Rig r = { 0 };
    double secs;

    quick = getenv("VMM_BENCH_QUICK") != NULL;
    secs = quick ? 0.05 : 1.0;
    rig_init(&r);
    /* QD32 and QD1 with an interrupt per completion the driver sleeps for;
     * QD1 with the driver polling the used ring. */
    static const struct { unsigned qd; bool polled; } runs[3] = {
        { QD, false }, { 1, false }, { 1, true },
    };
    int ret = 0;
    for (int i = 0; i < 3; i++) {
        unsigned qd = runs[i].qd;
        const char *mode = runs[i].polled ? "_polled" : "";
        double best_v = 0, best_d = 0;
        VmmVirtioBlkStats st0 = { .size = sizeof(st0) }, st1 = { .size = sizeof(st1) };
        uint64_t db = 0, irqs = 0;
        for (int round = 0; round < (quick ? 1 : 3); round++) {
            vmm_virtio_blk_get_stats(r.vblk, &st0);
            db = r.doorbells;
            irqs = __atomic_load_n(&r.interrupts, __ATOMIC_RELAXED);
            double v = run_virtio(&r, secs, qd, runs[i].polled);
            vmm_virtio_blk_get_stats(r.vblk, &st1);
            db = r.doorbells - db;
            irqs = __atomic_load_n(&r.interrupts, __ATOMIC_RELAXED) - irqs;
            double d = run_direct(&r, secs, qd);
            best_v = v > best_v ? v : best_v;
            best_d = d > best_d ? d : best_d;
        }
        /* Where a request's time goes (last round): inside the VMM from pop
         * to the end of its I/O, of which in the block layer; the rest of
         * the wall time per request is doorbell, wake-ups and the interrupt;
         * and how many doorbells and interrupts a request cost. */
        uint64_t n = st1.requests - st0.requests;
        if (n) {
            printf("# qd%u%s: a request takes %.0f ns from publish to answer (best round), "
                   "of which %.0f ns in the device (pop to I/O end, last round), %.0f ns in "
                   "the block layer; per request %.3f doorbells, %.3f interrupts\n", qd, mode,
                   1e9 * qd / best_v, (double)(st1.service_ns - st0.service_ns) / (double)n,
                   (double)(st1.io_ns - st0.io_ns) / (double)n,
                   (double)db / (double)n, (double)irqs / (double)n);
        }

        printf("BENCH name=virtio_blk_null_read_4k_qd%u%s value=%.0f unit=req/s "
               "vs=blk_null_read_4k%s vs_value=%.0f ratio=%.3f\n", qd, mode,
               best_v, qd == QD ? "" : "_qd1", best_d, best_d > 0 ? best_v / best_d : 0.0);
        ret |= !(best_v > 0 && best_d > 0);
    }
    rig_free(&r);
    return ret;
}
