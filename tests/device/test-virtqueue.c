/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues and the virtio core, driven by the test-side driver
 * (vq-driver.h) against an "echo" device that copies each request's
 * readable bytes into its writable buffers.  Hostile-guest cases check that
 * every rule violation ends in DEVICE_NEEDS_RESET with the host unharmed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmmkit/virtio.h"
#include "vq-driver.h"

#define MiB (1ull << 20)
#define F_V1 (1ull << VMM_VIRTIO_F_VERSION_1)
#define F_IND (1ull << VMM_VIRTIO_F_RING_INDIRECT_DESC)
#define F_EVT (1ull << VMM_VIRTIO_F_RING_EVENT_IDX)
#define STATUS_LIVE (VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER | \
                     VMM_VIRTIO_STATUS_FEATURES_OK | VMM_VIRTIO_STATUS_DRIVER_OK)

typedef struct Echo {
    VmmGuestMemory *mem;
    VmmRamRegion *ram, *ram2, *rom;
    uint8_t *host;
    VmmVirtioDevice *vdev;
    TestVq tq;
    int queue_irqs, config_irqs;
    int last_err;
    bool hold;                  /* keep requests in flight */
    VmmVirtqElem *held[64];
    int nheld;
    int handled;
    int resets;
    bool refuse_features;
    bool stall;                 /* hold the queue's run lock a while per request */
    int stall_entered;          /* atomic */
} Echo;

static void echo_one(VmmVirtqueue *vq, VmmVirtqElem *e)
{
    uint8_t buf[4096];
    size_t n = 0;
    for (unsigned i = 0; i < e->out_num && n < sizeof(buf); i++) {
        size_t c = e->iov[i].iov_len < sizeof(buf) - n ? e->iov[i].iov_len : sizeof(buf) - n;
        memcpy(buf + n, e->iov[i].iov_base, c);
        n += c;
    }
    size_t done = 0;
    for (unsigned i = e->out_num; i < e->out_num + e->in_num && done < n; i++) {
        size_t c = e->iov[i].iov_len < n - done ? e->iov[i].iov_len : n - done;
        memcpy(e->iov[i].iov_base, buf + done, c);
        done += c;
    }
    vmm_virtqueue_push(vq, e, (uint32_t)done);
}

static void echo_handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    Echo *t = opaque;
    (void)vdev;
    t->handled++;
    do {
        vmm_virtqueue_set_notification(vq, false);
        VmmVirtqElem *e;
        while ((e = vmm_virtqueue_pop(vq, sizeof(*e), &t->last_err))) {
            if (t->hold) {
                t->held[t->nheld++] = e;
                continue;
            }
            if (t->stall) {
                /* The reset's quiesce callback now waits for our run lock;
                 * the push below then reports the quiesce from in here. */
                __atomic_store_n(&t->stall_entered, 1, __ATOMIC_RELEASE);
                usleep(100 * 1000);
            }
            echo_one(vq, e);
            free(e);
        }
    } while (vmm_virtqueue_set_notification(vq, true));
    vmm_virtqueue_notify(vq);
}

static void echo_release(Echo *t)
{
    VmmVirtqueue *vq = vmm_virtio_get_queue(t->vdev, 0);
    while (t->nheld) {
        VmmVirtqElem *e = t->held[--t->nheld];
        echo_one(vq, e);
        free(e);
    }
    vmm_virtqueue_notify(vq);
}

static void echo_irq(void *opaque, VmmVirtioDevice *vdev, int queue)
{
    Echo *t = opaque;
    (void)vdev;
    if (queue < 0) {
        t->config_irqs++;
    } else {
        t->queue_irqs++;
    }
}

static int echo_features(VmmVirtioDevice *vdev, uint64_t f, void *opaque)
{
    Echo *t = opaque;
    (void)vdev;
    (void)f;
    return t->refuse_features ? -ENOTSUP : 0;
}

static void echo_reset(VmmVirtioDevice *vdev, void *opaque)
{
    Echo *t = opaque;
    (void)vdev;
    t->resets++;
}

static const VmmVirtioDeviceOps echo_ops = {
    .size = sizeof(VmmVirtioDeviceOps),
    .device_id = 0x7fff, .features = 1ull << 3, .config_size = 16,
    .num_queues = 1, .queue_max_size = 256,
    .handle_queue = echo_handle, .set_features = echo_features,
    .reset = echo_reset,
};

static VmmRamRegion *ram(uint64_t len)
{
    VmmRamRegionOptions o = { .size = sizeof(o), .length = len };
    VmmRamRegion *r = vmm_ram_region_new(&o, NULL);
    assert_non_null(r);
    return r;
}

static int setup(void **state)
{
    Echo *t = calloc(1, sizeof(*t));
    uint8_t cfg[16] = { 1, 2, 3, 4 };
    t->mem = vmm_guest_memory_new(NULL);
    t->ram = ram(MiB);
    t->ram2 = ram(0x10000);
    t->rom = ram(0x1000);
    assert_int_equal(vmm_guest_memory_add(t->mem, 0, t->ram, 0, MiB, 0), 0);
    assert_int_equal(vmm_guest_memory_add(t->mem, MiB, t->ram2, 0, 0x10000, 0), 0);
    assert_int_equal(vmm_guest_memory_add(t->mem, 2 * MiB, t->rom, 0, 0x1000,
                                          VMM_MEM_READONLY), 0);
    t->host = vmm_ram_region_host(t->ram);
    t->vdev = vmm_virtio_device_new("echo", &echo_ops, t, t->mem, cfg, NULL);
    assert_non_null(t->vdev);
    vmm_virtio_set_interrupt(t->vdev, echo_irq, t);
    tvq_init(&t->tq, t->host, 0x10000, 16);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    Echo *t = *state;
    t->hold = false;
    if (t->nheld) {
        echo_release(t);
    }
    vmm_virtio_device_free(t->vdev);
    vmm_guest_memory_unref(t->mem);
    vmm_ram_region_unref(t->ram);
    vmm_ram_region_unref(t->ram2);
    vmm_ram_region_unref(t->rom);
    free(t);
    return 0;
}

static void bringup(Echo *t, uint64_t features)
{
    TestVq *qs[1] = { &t->tq };
    assert_int_equal(tvq_bringup(t->vdev, qs, 1, features), STATUS_LIVE);
}

static void expect_broken(Echo *t)
{
    assert_true(vmm_virtio_get_status(t->vdev) & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    assert_int_equal(t->last_err, -EIO);
    assert_int_equal(t->config_irqs, 1);
    uint32_t id, len;
    assert_false(tvq_get_used(&t->tq, &id, &len));
    /* Broken queues stay quiet; the host carries on. */
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };
    tvq_add(&t->tq, b, 2);
    t->last_err = 0;
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_int_equal(t->last_err, 0);
    assert_false(tvq_get_used(&t->tq, &id, &len));
}

/* ---- Working paths ------------------------------------------------------- */

static void test_echo(void **state)
{
    Echo *t = *state;
    uint32_t id, len;

    bringup(t, F_V1);
    memcpy(t->host + 0x80000, "hello", 5);
    TestBuf b[2] = { { 0x80000, 5, false }, { 0x81000, 64, true } };
    uint16_t head = tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_true(tvq_get_used(&t->tq, &id, &len));
    assert_int_equal(id, head);
    assert_int_equal(len, 5);
    assert_memory_equal(t->host + 0x81000, "hello", 5);
    assert_int_equal(t->queue_irqs, 1);
    assert_int_equal(vmm_virtio_isr_read_clear(t->vdev), VMM_VIRTIO_ISR_QUEUE);
    assert_int_equal(vmm_virtio_isr_read_clear(t->vdev), 0);
    assert_false(tvq_get_used(&t->tq, &id, &len));
    /* Doorbells for queues that do not exist are ignored. */
    vmm_virtio_queue_notify(t->vdev, 7);
    vmm_virtio_queue_notify(t->vdev, 0xffff);
}

static void test_split_buffer_and_wrap(void **state)
{
    Echo *t = *state;
    uint32_t id, len;

    bringup(t, F_V1);
    /* A readable buffer spanning two RAM regions gives two iovecs. */
    memset(t->host + MiB - 8, 'a', 8);
    memset(vmm_ram_region_host(t->ram2), 'b', 8);
    for (int round = 0; round < 40; round++) {     /* wraps the 16-entry ring */
        TestBuf b[2] = { { MiB - 8, 16, false }, { 0x90000, 16, true } };
        tvq_add(&t->tq, b, 2);
        vmm_virtio_queue_notify(t->vdev, 0);
        assert_true(tvq_get_used(&t->tq, &id, &len));
        assert_int_equal(len, 16);
        assert_memory_equal(t->host + 0x90000, "aaaaaaaabbbbbbbb", 16);
    }
}

static void test_indirect(void **state)
{
    Echo *t = *state;
    uint32_t id, len;

    bringup(t, F_V1 | F_IND);
    memcpy(t->host + 0x80000, "indirect", 8);
    TestBuf b[3] = { { 0x80000, 4, false }, { 0x80004, 4, false }, { 0x82000, 8, true } };
    uint16_t head = tvq_add_indirect(&t->tq, 0x70000, b, 3);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_true(tvq_get_used(&t->tq, &id, &len));
    assert_int_equal(id, head);
    assert_int_equal(len, 8);
    assert_memory_equal(t->host + 0x82000, "indirect", 8);
}

/* virtio-state.c: what a live migration sends again for a vhost backend. */
void virtio_writable_buffers(VmmVirtioDevice *vdev,
                             void (*fn)(void *opaque, uint64_t gpa, uint64_t len),
                             void *opaque);

typedef struct Ranges {
    uint64_t gpa[64], len[64];
    unsigned n;
} Ranges;

static void collect_range(void *opaque, uint64_t gpa, uint64_t len)
{
    Ranges *r = opaque;
    assert_true(r->n < 64);
    r->gpa[r->n] = gpa;
    r->len[r->n++] = len;
}

static bool has_range(const Ranges *r, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < r->n; i++) {
        if (r->gpa[i] == gpa && r->len[i] == len) {
            return true;
        }
    }
    return false;
}

/*
 * Every writable buffer in the descriptor table, direct or through an
 * indirect table, is named, and nothing the device only reads; an indirect
 * table outside RAM is skipped, a huge one bounded.
 */
static void test_writable_buffers(void **state)
{
    Echo *t = *state;
    Ranges r = { .n = 0 };

    bringup(t, F_V1 | F_IND);
    t->hold = true;                     /* the buffers stay posted */
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4096, true } };
    tvq_add(&t->tq, b, 2);
    TestBuf ind[3] = { { 0x84000, 16, false }, { 0x85000, 512, true }, { 0x86000, 8, true } };
    tvq_add_indirect(&t->tq, 0x70000, ind, 3);
    TestBuf bad[1] = { { 0xfffffffffffff000ull, 0xffffffff, false } };
    uint16_t head = tvq_chain(&t->tq, bad, 1);
    /* An indirect entry whose table is far outside RAM. */
    t->tq.desc[head].flags = VRING_DESC_F_INDIRECT;
    virtio_writable_buffers(t->vdev, collect_range, &r);
    assert_true(has_range(&r, 0x81000, 4096));
    assert_true(has_range(&r, 0x85000, 512));
    assert_true(has_range(&r, 0x86000, 8));
    assert_false(has_range(&r, 0x80000, 4));
    assert_false(has_range(&r, 0x84000, 16));
    assert_int_equal(r.n, 3);
}

static void test_event_idx(void **state)
{
    Echo *t = *state;
    uint32_t id, len;
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };

    bringup(t, F_V1 | F_EVT);
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_int_equal(t->queue_irqs, 1);           /* the first one always */
    /* The device publishes where it wants the next doorbell. */
    assert_int_equal(*tvq_avail_event(&t->tq), 1);
    assert_true(tvq_get_used(&t->tq, &id, &len));
    /* The driver asks for an interrupt only after used index 5. */
    *tvq_used_event(&t->tq) = 5;
    for (int i = 0; i < 4; i++) {
        tvq_add(&t->tq, b, 2);
        vmm_virtio_queue_notify(t->vdev, 0);
    }
    assert_int_equal(t->queue_irqs, 1);           /* used 2..5: suppressed */
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);          /* used 6 passes event 5 */
    assert_int_equal(t->queue_irqs, 2);
}

static void test_no_interrupt_flag(void **state)
{
    Echo *t = *state;
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };

    bringup(t, F_V1);
    t->tq.avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_int_equal(t->queue_irqs, 0);
    t->tq.avail->flags = 0;
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_int_equal(t->queue_irqs, 1);
    /* Between batches the device re-enabled doorbells. */
    assert_int_equal(t->tq.used->flags, 0);
}

/* ---- Status machine, features, configuration ----------------------------- */

static void test_features(void **state)
{
    Echo *t = *state;

    assert_true(vmm_virtio_get_device_features(t->vdev) & F_V1);
    assert_true(vmm_virtio_get_device_features(t->vdev) & (1ull << 3));
    vmm_virtio_set_status(t->vdev, VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER);
    /* Unoffered bits are dropped; no VERSION_1 means no FEATURES_OK. */
    vmm_virtio_set_driver_features(t->vdev, (1ull << 3) | (1ull << 40));
    assert_int_equal(vmm_virtio_get_driver_features(t->vdev), 1ull << 3);
    vmm_virtio_set_status(t->vdev, 0x0b);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0x03);
    /* The device may refuse a combination. */
    vmm_virtio_set_driver_features(t->vdev, F_V1);
    t->refuse_features = true;
    vmm_virtio_set_status(t->vdev, 0x0b);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0x03);
    t->refuse_features = false;
    /* DRIVER_OK without FEATURES_OK is dropped. */
    vmm_virtio_set_status(t->vdev, 0x07);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0x03);
    vmm_virtio_set_status(t->vdev, 0x0b);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0x0b);
    /* Features are frozen after FEATURES_OK; the driver cannot clear bits
     * or claim NEEDS_RESET. */
    vmm_virtio_set_driver_features(t->vdev, F_V1 | F_EVT);
    assert_int_equal(vmm_virtio_get_driver_features(t->vdev), F_V1);
    vmm_virtio_set_status(t->vdev, 0x41);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0x0b);
}

static void test_config(void **state)
{
    Echo *t = *state;
    uint8_t b[16];

    assert_int_equal(vmm_virtio_config_read(t->vdev, 0, b, 4), 0);
    assert_int_equal(b[3], 4);
    assert_int_equal(vmm_virtio_config_read(t->vdev, 12, b, 8), -EINVAL);
    assert_int_equal(vmm_virtio_config_read(t->vdev, UINT32_MAX, b, 2), -EINVAL);
    assert_int_equal(vmm_virtio_config_write(t->vdev, 15, b, 2), -EINVAL);
    assert_int_equal(vmm_virtio_config_write(t->vdev, 8, "xy", 2), 0);
    assert_int_equal(vmm_virtio_config_read(t->vdev, 8, b, 2), 0);
    assert_memory_equal(b, "xy", 2);
    uint32_t gen = vmm_virtio_config_generation(t->vdev);
    assert_int_equal(vmm_virtio_config_update(t->vdev, 0, "abcd", 4), 0);
    assert_int_equal(t->config_irqs, 0);          /* not live yet */
    bringup(t, F_V1);
    assert_int_equal(vmm_virtio_config_update(t->vdev, 4, "efgh", 4), 0);
    assert_int_equal(t->config_irqs, 1);
    assert_int_equal(vmm_virtio_config_generation(t->vdev), gen + 2);
    assert_int_equal(vmm_virtio_isr_read_clear(t->vdev), VMM_VIRTIO_ISR_CONFIG);
}

static void test_queue_setup_checks(void **state)
{
    Echo *t = *state;

    assert_int_equal(vmm_virtio_queue_get_max_size(t->vdev, 0), 256);
    assert_int_equal(vmm_virtio_queue_get_max_size(t->vdev, 1), 0);
    assert_int_equal(vmm_virtio_queue_set_size(t->vdev, 0, 24), -EINVAL);
    assert_int_equal(vmm_virtio_queue_set_size(t->vdev, 0, 512), -EINVAL);
    assert_int_equal(vmm_virtio_queue_set_size(t->vdev, 0, 0), -EINVAL);
    assert_int_equal(vmm_virtio_queue_set_size(t->vdev, 3, 16), -EINVAL);
    bringup(t, F_V1);
    assert_int_equal(vmm_virtio_queue_set_size(t->vdev, 0, 32), -EBUSY);
    assert_int_equal(vmm_virtio_queue_set_addr(t->vdev, 0, 0, 0, 0), -EBUSY);
    uint64_t d, a, u;
    vmm_virtio_queue_get_addr(t->vdev, 0, &d, &a, &u);
    assert_int_equal(d, t->tq.desc_gpa);
    assert_int_equal(u, t->tq.used_gpa);
    assert_true(vmm_virtio_queue_is_enabled(t->vdev, 0));
}

static void bad_rings(Echo *t, uint64_t desc, uint64_t avail, uint64_t used)
{
    vmm_virtio_set_status(t->vdev, 0x03);
    vmm_virtio_set_driver_features(t->vdev, F_V1);
    vmm_virtio_set_status(t->vdev, 0x0b);
    vmm_virtio_queue_set_size(t->vdev, 0, 16);
    vmm_virtio_queue_set_addr(t->vdev, 0, desc, avail, used);
    assert_int_equal(vmm_virtio_queue_enable(t->vdev, 0), -EFAULT);
    assert_false(vmm_virtio_queue_is_enabled(t->vdev, 0));
    assert_true(vmm_virtio_get_status(t->vdev) & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

static void test_rings_outside_ram(void **state)
{
    Echo *t = *state;
    bad_rings(t, 0x10000, 0x12000, 0x1000000);          /* used in a hole */
}

static void test_rings_misaligned(void **state)
{
    Echo *t = *state;
    bad_rings(t, 0x10008, 0x12000, 0x13000);
}

static void test_used_ring_in_rom(void **state)
{
    Echo *t = *state;
    bad_rings(t, 0x10000, 0x12000, 2 * MiB);
}

static void test_reset_and_reinit(void **state)
{
    Echo *t = *state;
    uint32_t id, len;
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };

    bringup(t, F_V1);
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    vmm_virtio_set_status(t->vdev, 0);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0);
    assert_int_equal(t->resets, 1);
    assert_false(vmm_virtio_queue_is_enabled(t->vdev, 0));
    assert_int_equal(vmm_virtio_get_driver_features(t->vdev), 0);
    /* The driver starts over on fresh rings. */
    tvq_init(&t->tq, t->host, 0x20000, 8);
    bringup(t, F_V1);
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_true(tvq_get_used(&t->tq, &id, &len));
}

static void test_reset_mid_request(void **state)
{
    Echo *t = *state;
    uint32_t id, len;
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };

    bringup(t, F_V1);
    t->hold = true;
    tvq_add(&t->tq, b, 2);
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_int_equal(t->nheld, 2);
    vmm_virtio_set_status(t->vdev, 0);
    /* Two requests in flight: the reset waits for them. */
    assert_int_equal(vmm_virtio_get_status(t->vdev), STATUS_LIVE);
    assert_int_equal(t->resets, 0);
    /* Writes during the reset are ignored, doorbells wait. */
    vmm_virtio_set_status(t->vdev, 0x0f);
    tvq_add(&t->tq, b, 2);
    int handled = t->handled;
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_int_equal(t->handled, handled);
    t->hold = false;
    echo_release(t);     /* the last push completes the quiesce, then reset */
    assert_int_equal(t->resets, 1);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0);
    (void)id;
    (void)len;
}

/*
 * The last in-flight request finishes inside handle_queue (holding the
 * queue's run lock, in a thread of its own: a queue without a context runs
 * in the notifying thread) while a reset's quiesce callback waits for that
 * lock.  The report of the quiesce must not wait for the callback from
 * under the lock it waits for: guarded by a watchdog.
 */
static void *notify_thread(void *opaque)
{
    Echo *t = opaque;
    vmm_virtio_queue_notify(t->vdev, 0);
    return NULL;
}

static int watchdog_done;

static void *watchdog(void *opaque)
{
    (void)opaque;
    for (int i = 0; i < 1000 && !__atomic_load_n(&watchdog_done, __ATOMIC_ACQUIRE); i++) {
        usleep(10 * 1000);
    }
    if (!__atomic_load_n(&watchdog_done, __ATOMIC_ACQUIRE)) {
        fprintf(stderr, "deadlock: the reset did not finish within 10 s\n");
        _exit(1);
    }
    return NULL;
}

static void test_reset_while_handler_finishes(void **state)
{
    Echo *t = *state;
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };
    pthread_t nt, wd;

    bringup(t, F_V1);
    t->stall = true;
    tvq_add(&t->tq, b, 2);
    __atomic_store_n(&watchdog_done, 0, __ATOMIC_RELAXED);
    pthread_create(&wd, NULL, watchdog, NULL);
    pthread_create(&nt, NULL, notify_thread, t);
    while (!__atomic_load_n(&t->stall_entered, __ATOMIC_ACQUIRE)) {
        sched_yield();
    }
    vmm_virtio_set_status(t->vdev, 0);  /* quiesce waits for the run lock */
    pthread_join(nt, NULL);
    __atomic_store_n(&watchdog_done, 1, __ATOMIC_RELEASE);
    pthread_join(wd, NULL);
    t->stall = false;
    assert_int_equal(t->resets, 1);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0);
}

static void test_pause_defers_kicks(void **state)
{
    Echo *t = *state;
    uint32_t id, len;
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };
    VmmDevice *dev = vmm_virtio_device_get_device(t->vdev);

    bringup(t, F_V1);
    assert_int_equal(vmm_device_pause(dev, NULL, NULL), 0);
    assert_true(vmm_device_is_quiesced(dev));
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_false(tvq_get_used(&t->tq, &id, &len));
    assert_int_equal(vmm_device_unpause(dev), 0);
    assert_true(tvq_get_used(&t->tq, &id, &len));   /* handled at resume */
}

static void test_dma_map_change_repins(void **state)
{
    Echo *t = *state;
    uint32_t id, len;
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };
    VmmDevice *dev = vmm_virtio_device_get_device(t->vdev);
    VmmMemorySection s;

    bringup(t, F_V1);
    assert_int_equal(vmm_guest_memory_find(t->mem, MiB, &s), 0);
    assert_int_equal(vmm_device_pause(dev, NULL, NULL), 0);
    assert_int_equal(vmm_guest_memory_remove(t->mem, MiB, 0x10000), 0);
    assert_int_equal(vmm_device_dma_map_change(dev, &s, false, NULL, NULL), 0);
    assert_int_equal(vmm_device_unpause(dev), 0);
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_true(tvq_get_used(&t->tq, &id, &len));
    /* Now take away the memory holding the rings. */
    assert_int_equal(vmm_guest_memory_find(t->mem, 0, &s), 0);
    assert_int_equal(vmm_guest_memory_remove(t->mem, 0, MiB), 0);
    assert_int_equal(vmm_device_dma_map_change(dev, &s, false, NULL, NULL), 0);
    assert_true(vmm_virtio_get_status(t->vdev) & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    assert_int_equal(vmm_guest_memory_add(t->mem, 0, t->ram, 0, MiB, 0), 0);
}

/* ---- Hostile guests -------------------------------------------------------- */

static void test_bad_head(void **state)
{
    Echo *t = *state;
    bringup(t, F_V1);
    tvq_publish(&t->tq, 16);
    vmm_virtio_queue_notify(t->vdev, 0);
    expect_broken(t);
}

static void test_bad_next(void **state)
{
    Echo *t = *state;
    bringup(t, F_V1);
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };
    uint16_t h = tvq_chain(&t->tq, b, 2);
    t->tq.desc[h].next = 200;
    tvq_publish(&t->tq, h);
    vmm_virtio_queue_notify(t->vdev, 0);
    expect_broken(t);
}

static void test_loop(void **state)
{
    Echo *t = *state;
    bringup(t, F_V1);
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x80000, 4, false } };
    uint16_t h = tvq_chain(&t->tq, b, 2);
    t->tq.desc[h + 1].flags = VRING_DESC_F_NEXT;
    t->tq.desc[h + 1].next = h;
    tvq_publish(&t->tq, h);
    vmm_virtio_queue_notify(t->vdev, 0);
    expect_broken(t);
}

static void test_avail_idx_runs_ahead(void **state)
{
    Echo *t = *state;
    bringup(t, F_V1);
    t->tq.avail->idx = 17;
    vmm_virtio_queue_notify(t->vdev, 0);
    expect_broken(t);
}

static void hostile_buf(Echo *t, uint64_t gpa, uint32_t len, bool write)
{
    bringup(t, F_V1);
    TestBuf b[2] = { { 0x80000, 4, false }, { gpa, len, write } };
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    expect_broken(t);
}

static void test_buf_outside_ram(void **state)
{
    hostile_buf(*state, 0x40000000, 16, true);
}

static void test_buf_crosses_hole(void **state)
{
    hostile_buf(*state, MiB + 0x10000 - 8, 16, false);
}

static void test_buf_wraps(void **state)
{
    hostile_buf(*state, UINT64_MAX - 7, 16, true);
}

static void test_write_into_rom(void **state)
{
    hostile_buf(*state, 2 * MiB, 16, true);
}

static void test_readable_after_writable(void **state)
{
    Echo *t = *state;
    bringup(t, F_V1);
    TestBuf b[2] = { { 0x81000, 4, true }, { 0x80000, 4, false } };
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    expect_broken(t);
}

static void hostile_indirect(Echo *t, uint64_t features, void (*mangle)(TestVq *, uint16_t))
{
    bringup(t, features);
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };
    uint16_t h = tvq_add_indirect(&t->tq, 0x70000, b, 2);
    t->tq.avail_idx--;              /* re-publish after mangling */
    mangle(&t->tq, h);
    tvq_publish(&t->tq, h);
    vmm_virtio_queue_notify(t->vdev, 0);
    expect_broken(t);
}

static void m_none(TestVq *q, uint16_t h) { (void)q; (void)h; }
static void m_len(TestVq *q, uint16_t h) { q->desc[h].len = 24; }
static void m_len0(TestVq *q, uint16_t h) { q->desc[h].len = 0; }
static void m_huge(TestVq *q, uint16_t h) { q->desc[h].len = 16 * 2048; }
static void m_next(TestVq *q, uint16_t h) { q->desc[h].flags |= VRING_DESC_F_NEXT; }
static void m_addr(TestVq *q, uint16_t h) { q->desc[h].addr = 0x7ffffff0; }
static void m_nested(TestVq *q, uint16_t h)
{
    (void)h;
    struct vring_desc *tab = (struct vring_desc *)(q->ram + 0x70000);
    tab[1].flags = VRING_DESC_F_INDIRECT;
}
static void m_loop(TestVq *q, uint16_t h)
{
    (void)h;
    struct vring_desc *tab = (struct vring_desc *)(q->ram + 0x70000);
    tab[1].flags = VRING_DESC_F_NEXT | VRING_DESC_F_WRITE;
    tab[1].next = 0;
}
static void m_tab_next(TestVq *q, uint16_t h)
{
    (void)h;
    struct vring_desc *tab = (struct vring_desc *)(q->ram + 0x70000);
    tab[0].next = 2;      /* table has 2 entries */
}

static void test_indirect_not_negotiated(void **state) { hostile_indirect(*state, F_V1, m_none); }
static void test_indirect_bad_len(void **state) { hostile_indirect(*state, F_V1 | F_IND, m_len); }
static void test_indirect_zero_len(void **state) { hostile_indirect(*state, F_V1 | F_IND, m_len0); }
static void test_indirect_too_big(void **state) { hostile_indirect(*state, F_V1 | F_IND, m_huge); }
static void test_indirect_with_next(void **state) { hostile_indirect(*state, F_V1 | F_IND, m_next); }
static void test_indirect_outside(void **state) { hostile_indirect(*state, F_V1 | F_IND, m_addr); }
static void test_indirect_nested(void **state) { hostile_indirect(*state, F_V1 | F_IND, m_nested); }
static void test_indirect_loop(void **state) { hostile_indirect(*state, F_V1 | F_IND, m_loop); }
static void test_indirect_next_oob(void **state) { hostile_indirect(*state, F_V1 | F_IND, m_tab_next); }

static void test_too_many_buffers(void **state)
{
    Echo *t = *state;
    static TestBuf b[1024];
    /* 1024 one-byte buffers, one of which spans two regions: 1025 iovecs. */
    for (int i = 0; i < 1024; i++) {
        b[i] = (TestBuf){ 0x80000 + (uint64_t)i, 1, false };
    }
    b[1023] = (TestBuf){ MiB - 1, 2, false };
    bringup(t, F_V1 | F_IND);
    tvq_add_indirect(&t->tq, 0x40000, b, 1024);
    vmm_virtio_queue_notify(t->vdev, 0);
    expect_broken(t);
}

static void test_broken_then_reset_recovers(void **state)
{
    Echo *t = *state;
    uint32_t id, len;
    test_bad_head(state);
    vmm_virtio_set_status(t->vdev, 0);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0);
    tvq_init(&t->tq, t->host, 0x10000, 16);
    bringup(t, F_V1);
    TestBuf b[2] = { { 0x80000, 4, false }, { 0x81000, 4, true } };
    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_true(tvq_get_used(&t->tq, &id, &len));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_echo), T(test_split_buffer_and_wrap), T(test_indirect),
        T(test_event_idx), T(test_no_interrupt_flag), T(test_features),
        T(test_config), T(test_queue_setup_checks), T(test_rings_outside_ram),
        T(test_rings_misaligned), T(test_used_ring_in_rom), T(test_reset_and_reinit),
        T(test_reset_mid_request),
        T(test_reset_while_handler_finishes), T(test_pause_defers_kicks),
        T(test_dma_map_change_repins),
        T(test_bad_head), T(test_bad_next), T(test_loop), T(test_avail_idx_runs_ahead),
        T(test_buf_outside_ram), T(test_buf_crosses_hole), T(test_buf_wraps),
        T(test_write_into_rom), T(test_readable_after_writable),
        T(test_indirect_not_negotiated), T(test_indirect_bad_len),
        T(test_indirect_zero_len), T(test_indirect_too_big), T(test_indirect_with_next),
        T(test_indirect_outside), T(test_indirect_nested), T(test_indirect_loop),
        T(test_indirect_next_oob), T(test_too_many_buffers), T(test_writable_buffers),
        T(test_broken_then_reset_recovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
