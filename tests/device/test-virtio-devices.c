/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng and virtio-console driven as a guest driver would: rings in
 * guest memory, the queues in an iothread, the console on pipes.  A
 * hostile driver's descriptor outside RAM breaks the device
 * (DEVICE_NEEDS_RESET) and the host goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmmkit/aio.h"
#include "vmmkit/memory.h"
#include "vmmkit/virtio-console.h"
#include "vmmkit/virtio-rng.h"
#include "vq-driver.h"

#define MiB (1ull << 20)
#define BUF 0x80000

typedef struct T {
    VmmGuestMemory *mem;
    VmmRamRegion *ram;
    uint8_t *host;
    VmmIOThread *iot;
    VmmAioContext *ctx;
    int irqs;               /* atomic */
} T;

static void irq_cb(void *opaque, VmmVirtioDevice *vdev, int queue)
{
    T *t = opaque;
    (void)vdev;
    (void)queue;
    __atomic_add_fetch(&t->irqs, 1, __ATOMIC_SEQ_CST);
}

static T *make(void)
{
    T *t = calloc(1, sizeof(*t));
    VmmRamRegionOptions o = { .size = sizeof(o), .length = MiB };
    t->mem = vmm_guest_memory_new(NULL);
    t->ram = vmm_ram_region_new(&o, NULL);
    assert_int_equal(vmm_guest_memory_add(t->mem, 0, t->ram, 0, MiB, 0), 0);
    t->host = vmm_ram_region_host(t->ram);
    t->iot = vmm_iothread_new("dev-test", NULL, NULL);
    t->ctx = vmm_iothread_get_context(t->iot);
    return t;
}

static void destroy(T *t)
{
    vmm_iothread_destroy(t->iot);
    vmm_guest_memory_unref(t->mem);
    vmm_ram_region_unref(t->ram);
    free(t);
}

static bool used(TestVq *q, uint32_t *id, uint32_t *len)
{
    for (int i = 0; i < 5000; i++) {
        if (tvq_get_used(q, id, len)) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

static void bringup(VmmVirtioDevice *vdev, TestVq *qs, unsigned nq, T *t)
{
    TestVq *p[2] = { &qs[0], &qs[1] };
    vmm_virtio_set_interrupt(vdev, irq_cb, t);
    for (unsigned q = 0; q < nq; q++) {
        tvq_init(&qs[q], t->host, 0x10000 + 0x8000 * q, 16);
    }
    uint64_t f = vmm_virtio_get_device_features(vdev) & ~(1ull << VMM_VIRTIO_F_RING_EVENT_IDX);
    assert_int_equal(tvq_bringup(vdev, p, nq, f), 0x0f);
}

/* The driver just broke the rules: the device says NEEDS_RESET, and a
 * reset brings it back to 0. */
static void expect_broken_then_reset(VmmVirtioDevice *vdev)
{
    for (int i = 0; i < 5000 && !(vmm_virtio_get_status(vdev) & 0x40); i++) {
        usleep(1000);
    }
    assert_true(vmm_virtio_get_status(vdev) & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    vmm_virtio_set_status(vdev, 0);
    for (int i = 0; i < 5000 && vmm_virtio_get_status(vdev); i++) {
        usleep(1000);
    }
    assert_int_equal(vmm_virtio_get_status(vdev), 0);
}

/* ---- virtio-rng ------------------------------------------------------------- */

static void test_rng(void **state)
{
    (void)state;
    T *t = make();
    int err = 0;
    assert_null(vmm_virtio_rng_new(NULL, &err));
    assert_int_equal(err, -EINVAL);
    VmmVirtioRng *rng = vmm_virtio_rng_new(t->mem, &err);
    assert_non_null(rng);
    VmmVirtioDevice *vdev = vmm_virtio_rng_get_virtio(rng);
    assert_int_equal(vmm_virtio_device_id(vdev), 4);
    assert_int_equal(vmm_virtio_queue_set_context(vdev, 0, t->ctx), 0);
    TestVq q[1];
    bringup(vdev, q, 1, t);

    /* Two buffers in one chain: both filled, not all bytes equal. */
    memset(t->host + BUF, 0, 4096);
    TestBuf b[2] = { { .gpa = BUF, .len = 100, .write = true },
                     { .gpa = BUF + 1000, .len = 28, .write = true } };
    tvq_add(&q[0], b, 2);
    vmm_virtio_queue_notify(vdev, 0);
    uint32_t id, len;
    assert_true(used(&q[0], &id, &len));
    assert_int_equal(len, 128);
    int same = 0;
    for (int i = 1; i < 100; i++) {
        same += t->host[BUF + i] == t->host[BUF];
    }
    assert_true(same < 99);
    assert_int_equal(vmm_virtio_rng_bytes(rng), 128);

    /* A request larger than the cap gets exactly the cap. */
    TestBuf big = { .gpa = BUF, .len = VMM_VIRTIO_RNG_MAX_REQUEST + 4096, .write = true };
    tvq_add(&q[0], &big, 1);
    vmm_virtio_queue_notify(vdev, 0);
    assert_true(used(&q[0], &id, &len));
    assert_int_equal(len, VMM_VIRTIO_RNG_MAX_REQUEST);

    /* Nothing writable: length 0. */
    TestBuf ro = { .gpa = BUF, .len = 16, .write = false };
    tvq_add(&q[0], &ro, 1);
    vmm_virtio_queue_notify(vdev, 0);
    assert_true(used(&q[0], &id, &len));
    assert_int_equal(len, 0);

    /* A buffer outside RAM: the device breaks, the host goes on. */
    TestBuf bad = { .gpa = 4 * MiB, .len = 64, .write = true };
    tvq_add(&q[0], &bad, 1);
    vmm_virtio_queue_notify(vdev, 0);
    expect_broken_then_reset(vdev);
    vmm_virtio_rng_free(rng);
    destroy(t);
}

/* ---- virtio-console -------------------------------------------------------- */

static void test_console(void **state)
{
    (void)state;
    T *t = make();
    int in[2], out[2], err = 0;
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
    assert_null(vmm_virtio_console_new(t->mem, NULL, in[0], out[1], &err));
    assert_int_equal(err, -EINVAL);
    assert_null(vmm_virtio_console_new(t->mem, t->ctx, -2, out[1], &err));
    assert_int_equal(err, -EINVAL);
    VmmVirtioConsole *con = vmm_virtio_console_new(t->mem, t->ctx, in[0], out[1], &err);
    assert_non_null(con);
    VmmVirtioDevice *vdev = vmm_virtio_console_get_virtio(con);
    assert_int_equal(vmm_virtio_device_id(vdev), 3);
    TestVq q[2];
    bringup(vdev, q, 2, t);

    /* Output: a transmit buffer reaches the output fd whole. */
    memcpy(t->host + BUF, "hello, host\n", 12);
    TestBuf tx = { .gpa = BUF, .len = 12 };
    tvq_add(&q[1], &tx, 1);
    vmm_virtio_queue_notify(vdev, 1);
    uint32_t id, len;
    assert_true(used(&q[1], &id, &len));
    char got[64] = { 0 };
    assert_int_equal(read(out[0], got, sizeof(got)), 12);
    assert_string_equal(got, "hello, host\n");

    /* Input: buffers offered before any byte; the bytes come later and
     * fill the first one (the fd handler wakes the queue). */
    TestBuf rx1 = { .gpa = BUF + 0x1000, .len = 64, .write = true };
    TestBuf rx2 = { .gpa = BUF + 0x2000, .len = 64, .write = true };
    tvq_add(&q[0], &rx1, 1);
    tvq_add(&q[0], &rx2, 1);
    vmm_virtio_queue_notify(vdev, 0);
    usleep(20000);
    assert_false(tvq_get_used(&q[0], &id, &len));          /* nothing to read yet */
    assert_int_equal(write(in[1], "abc", 3), 3);
    assert_true(used(&q[0], &id, &len));
    assert_int_equal(len, 3);
    assert_memory_equal(t->host + BUF + 0x1000, "abc", 3);
    assert_int_equal(write(in[1], "defg", 4), 4);
    assert_true(used(&q[0], &id, &len));
    assert_int_equal(len, 4);
    assert_memory_equal(t->host + BUF + 0x2000, "defg", 4);
    /* No buffer left: input waits in the pipe until the driver adds one. */
    assert_int_equal(write(in[1], "xy", 2), 2);
    usleep(20000);
    assert_false(tvq_get_used(&q[0], &id, &len));
    TestBuf rx3 = { .gpa = BUF + 0x3000, .len = 64, .write = true };
    tvq_add(&q[0], &rx3, 1);
    vmm_virtio_queue_notify(vdev, 0);
    assert_true(used(&q[0], &id, &len));
    assert_int_equal(len, 2);
    assert_memory_equal(t->host + BUF + 0x3000, "xy", 2);
    assert_true(__atomic_load_n(&t->irqs, __ATOMIC_SEQ_CST) >= 4);

    /* A transmit descriptor outside RAM: the device breaks, host alive. */
    TestBuf bad = { .gpa = 8 * MiB, .len = 16 };
    tvq_add(&q[1], &bad, 1);
    vmm_virtio_queue_notify(vdev, 1);
    expect_broken_then_reset(vdev);
    vmm_virtio_console_free(con);
    for (int i = 0; i < 2; i++) {
        close(in[i]);
        close(out[i]);
    }
    destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_console),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
