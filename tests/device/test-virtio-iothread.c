/* SPDX-License-Identifier: MIT */
/*
 * Concurrency: a virtio device whose queue runs in an iothread, doorbells
 * through an event notifier (the ioeventfd path), completions through an
 * interrupt callback that sets another notifier (the irqfd path), and the
 * quiesce protocol with requests in flight in the iothread.
 * VMM_STRESS_ITERS bounds the round trips (default 2000).
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/atomic.h"
#include "vmmkit/aio.h"
#include "vmmkit/virtio.h"
#include "vq-driver.h"

#define MiB (1ull << 20)

typedef struct T {
    VmmGuestMemory *mem;
    VmmRamRegion *ram;
    uint8_t *host;
    VmmIOThread *iot;
    VmmAioContext *ctx;
    VmmVirtioDevice *vdev;
    VmmEventNotifier *doorbell, *irq;
    TestVq tq;
    int hold;                   /* atomic: keep requests in flight */
    VmmVirtqElem *held[64];     /* iothread only */
    int nheld;                  /* atomic */
    int handled;                /* atomic */
    int paused;                 /* atomic */
    int slow;                   /* atomic: handle() takes its time */
    int slow_in, slow_out;      /* atomic: handle() entered / returning */
} T;

static void echo_push(VmmVirtqueue *vq, VmmVirtqElem *e)
{
    uint32_t n = 0;
    if (e->out_num && e->in_num) {
        size_t c = e->iov[0].iov_len < e->iov[e->out_num].iov_len ?
                   e->iov[0].iov_len : e->iov[e->out_num].iov_len;
        memcpy(e->iov[e->out_num].iov_base, e->iov[0].iov_base, c);
        n = (uint32_t)c;
    }
    vmm_virtqueue_push(vq, e, n);
    free(e);
}

static void handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    T *t = opaque;
    VmmVirtqElem *e;
    int err;
    (void)vdev;

    assert_true(vmm_aio_context_in_thread(t->ctx));
    vk_atomic_inc(&t->handled);
    if (vk_atomic_read(&t->slow)) {
        vk_atomic_set(&t->slow_in, 1);
        usleep(200 * 1000);
        vk_atomic_set(&t->slow_out, 1);
        return;
    }
    do {
        vmm_virtqueue_set_notification(vq, false);
        while ((e = vmm_virtqueue_pop(vq, sizeof(*e), &err))) {
            if (vk_atomic_read(&t->hold)) {
                t->held[vk_atomic_read(&t->nheld)] = e;
                vk_atomic_inc(&t->nheld);
                continue;
            }
            echo_push(vq, e);
        }
    } while (vmm_virtqueue_set_notification(vq, true));
    vmm_virtqueue_notify(vq);
}

/* Runs in the iothread: complete what was held. */
static void release_bh(void *opaque)
{
    T *t = opaque;
    VmmVirtqueue *vq = vmm_virtio_get_queue(t->vdev, 0);
    int n = vk_atomic_read(&t->nheld);
    vk_atomic_set(&t->hold, 0);
    for (int i = 0; i < n; i++) {
        echo_push(vq, t->held[i]);
    }
    vk_atomic_set(&t->nheld, 0);
    vmm_virtqueue_notify(vq);
}

static void irq(void *opaque, VmmVirtioDevice *vdev, int queue)
{
    T *t = opaque;
    (void)vdev;
    if (queue >= 0) {
        vmm_event_notifier_set(t->irq);     /* the irqfd write */
    }
}

static const VmmVirtioDeviceOps ops = {
    .size = sizeof(VmmVirtioDeviceOps), .device_id = 0x7fff,
    .num_queues = 1, .queue_max_size = 256, .handle_queue = handle,
};

static int setup(void **state)
{
    T *t = calloc(1, sizeof(*t));
    t->host = tvq_ram_new(MiB, &t->mem, &t->ram);
    assert_non_null(t->host);
    t->iot = vmm_iothread_new("vq-test", NULL, NULL);
    assert_non_null(t->iot);
    t->ctx = vmm_iothread_get_context(t->iot);
    t->vdev = vmm_virtio_device_new("echo-io", &ops, t, t->mem, NULL, NULL);
    assert_non_null(t->vdev);
    vmm_virtio_set_interrupt(t->vdev, irq, t);
    t->doorbell = vmm_event_notifier_new(NULL);
    t->irq = vmm_event_notifier_new(NULL);
    assert_int_equal(vmm_virtio_queue_set_context(t->vdev, 0, t->ctx), 0);
    assert_int_equal(vmm_virtio_queue_set_host_notifier(t->vdev, 0, t->doorbell), 0);
    tvq_init(&t->tq, t->host, 0x10000, 64);
    TestVq *qs[1] = { &t->tq };
    assert_int_equal(tvq_bringup(t->vdev, qs, 1, 1ull << VMM_VIRTIO_F_VERSION_1 |
                                 1ull << VMM_VIRTIO_F_RING_EVENT_IDX), 0x0f);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    T *t = *state;
    vmm_virtio_device_free(t->vdev);
    vmm_iothread_destroy(t->iot);
    vmm_event_notifier_free(t->doorbell);
    vmm_event_notifier_free(t->irq);
    vmm_guest_memory_unref(t->mem);
    vmm_ram_region_unref(t->ram);
    free(t);
    return 0;
}

/* Wait for the "irqfd" to fire (bounded: 5 s). */
static void wait_irq(T *t)
{
    struct pollfd p = { .fd = vmm_event_notifier_fd(t->irq), .events = POLLIN };
    assert_int_equal(poll(&p, 1, 5000), 1);
    vmm_event_notifier_test_and_clear(t->irq);
}

static void test_roundtrips(void **state)
{
    T *t = *state;
    const char *env = getenv("VMM_STRESS_ITERS");
    long iters = env ? atol(env) : 2000;
    uint32_t id, len;

    for (long i = 0; i < iters; i++) {
        uint64_t v = (uint64_t)i * 7919;
        memcpy(t->host + 0x80000, &v, 8);
        TestBuf b[2] = { { 0x80000, 8, false }, { 0x81000, 8, true } };
        uint16_t old = t->tq.avail_idx;
        uint16_t head = tvq_add(&t->tq, b, 2);
        /* The driver kicks only if the device asked for it (event index):
         * a device that forgot to publish avail_event would hang here.
         * Full barrier [D]'s pair: avail->idx store before avail_event load. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        uint16_t ev = __atomic_load_n(tvq_avail_event(&t->tq), __ATOMIC_RELAXED);
        if ((uint16_t)(t->tq.avail_idx - ev - 1) < (uint16_t)(t->tq.avail_idx - old)) {
            vmm_event_notifier_set(t->doorbell);
        }
        while (!tvq_get_used(&t->tq, &id, &len)) {
            wait_irq(t);
        }
        /* The driver re-arms interrupts for the next completion (then a
         * full barrier and a re-check, [C]'s pair, in a real driver). */
        __atomic_store_n(tvq_used_event(&t->tq), t->tq.last_used, __ATOMIC_RELAXED);
        assert_int_equal(id, head);
        assert_int_equal(len, 8);
        assert_memory_equal(t->host + 0x81000, &v, 8);
    }
}

static void test_kick_from_main_thread(void **state)
{
    T *t = *state;
    uint32_t id, len;
    TestBuf b[2] = { { 0x80000, 8, false }, { 0x81000, 8, true } };

    tvq_add(&t->tq, b, 2);
    vmm_virtio_queue_notify(t->vdev, 0);     /* not the iothread: a BH */
    while (!tvq_get_used(&t->tq, &id, &len)) {
        wait_irq(t);
    }
}

/*
 * Taking a queue out of its context (as the machine does before the caller
 * frees the device) while a kick runs there: the call returns only after
 * that run has, so the queue may be freed right after.
 */
static void test_detach_waits_for_running_kick(void **state)
{
    T *t = *state;

    assert_int_equal(vmm_virtio_queue_set_host_notifier(t->vdev, 0, NULL), 0);
    vk_atomic_set(&t->slow, 1);
    vmm_virtio_queue_notify(t->vdev, 0);     /* a BH in the iothread */
    for (int i = 0; i < 5000 && !vk_atomic_read(&t->slow_in); i++) {
        usleep(1000);
    }
    assert_true(vk_atomic_read(&t->slow_in));
    assert_int_equal(vmm_virtio_queue_set_context(t->vdev, 0, NULL), 0);
    assert_true(vk_atomic_read(&t->slow_out));
}

static void paused_cb(VmmDevice *dev, int ret, void *opaque)
{
    T *t = opaque;
    assert_int_equal(ret, 0);
    assert_true(vmm_device_is_quiesced(dev));
    vk_atomic_store_release(&t->paused, 1);
}

static void test_pause_with_requests_in_flight(void **state)
{
    T *t = *state;
    VmmDevice *dev = vmm_virtio_device_get_device(t->vdev);
    TestBuf b[2] = { { 0x80000, 8, false }, { 0x81000, 8, true } };
    uint32_t id, len;

    vk_atomic_set(&t->hold, 1);
    for (int i = 0; i < 3; i++) {
        tvq_add(&t->tq, b, 2);
    }
    vmm_event_notifier_set(t->doorbell);
    while (vk_atomic_read(&t->nheld) < 3) {
        vmm_aio_poll(vmm_aio_context_main(), false);
    }
    assert_int_equal(vmm_device_pause(dev, paused_cb, t), 0);
    /* Quiescing: three requests are still in flight in the iothread. */
    assert_false(vmm_device_is_quiesced(dev));
    assert_int_equal(vk_atomic_read(&t->paused), 0);
    assert_int_equal(vmm_bh_schedule_oneshot(t->ctx, release_bh, t, "release"), 0);
    VMM_AIO_WAIT_WHILE(NULL, !vk_atomic_load_acquire(&t->paused));
    for (int i = 0; i < 3; i++) {
        assert_true(tvq_get_used(&t->tq, &id, &len));
    }
    __atomic_store_n(tvq_used_event(&t->tq), t->tq.last_used, __ATOMIC_RELAXED);
    /* Doorbells while paused are remembered, handled after the resume. */
    int handled = vk_atomic_read(&t->handled);
    tvq_add(&t->tq, b, 2);
    vmm_event_notifier_set(t->doorbell);
    vmm_virtio_queue_notify(t->vdev, 0);
    assert_false(tvq_get_used(&t->tq, &id, &len));
    assert_int_equal(vmm_device_unpause(dev), 0);
    while (!tvq_get_used(&t->tq, &id, &len)) {
        wait_irq(t);
    }
    assert_true(vk_atomic_read(&t->handled) > handled);
}

static void test_reset_mid_request(void **state)
{
    T *t = *state;
    TestBuf b[2] = { { 0x80000, 8, false }, { 0x81000, 8, true } };

    vk_atomic_set(&t->hold, 1);
    tvq_add(&t->tq, b, 2);
    vmm_event_notifier_set(t->doorbell);
    while (vk_atomic_read(&t->nheld) < 1) {
        vmm_aio_poll(vmm_aio_context_main(), false);
    }
    vmm_virtio_set_status(t->vdev, 0);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0x0f);   /* still running */
    assert_int_equal(vmm_bh_schedule_oneshot(t->ctx, release_bh, t, "release"), 0);
    VMM_AIO_WAIT_WHILE(NULL, vmm_virtio_get_status(t->vdev) != 0);
    assert_false(vmm_virtio_queue_is_enabled(t->vdev, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kick_from_main_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_with_requests_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_waits_for_running_kick, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
