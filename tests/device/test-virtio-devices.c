/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng and virtio-console driven as a guest driver would: rings in
 * guest memory, the queues in an iothread, the console on pipes.  A
 * hostile driver's descriptor outside RAM breaks the device
 * (DEVICE_NEEDS_RESET) and the host goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
    t->host = tvq_ram_new(MiB, &t->mem, &t->ram);
    assert_non_null(t->host);
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

/* Rings at @base, 0x8000 apart per queue. */
static void bringup_at(VmmVirtioDevice *vdev, TestVq *qs, unsigned nq, T *t, uint64_t base)
{
    TestVq *p[2] = { &qs[0], &qs[1] };
    vmm_virtio_set_interrupt(vdev, irq_cb, t);
    for (unsigned q = 0; q < nq; q++) {
        tvq_init(&qs[q], t->host, base + 0x8000 * q, 16);
    }
    uint64_t f = vmm_virtio_get_device_features(vdev) & ~(1ull << VMM_VIRTIO_F_RING_EVENT_IDX);
    assert_int_equal(tvq_bringup(vdev, p, nq, f), 0x0f);
}

static void bringup(VmmVirtioDevice *vdev, TestVq *qs, unsigned nq, T *t)
{
    bringup_at(vdev, qs, nq, t, 0x10000);
}

/* The driver resets the device; the reset completes (status 0). */
static void reset_device(VmmVirtioDevice *vdev)
{
    vmm_virtio_set_status(vdev, 0);
    for (int i = 0; i < 5000 && vmm_virtio_get_status(vdev); i++) {
        usleep(1000);
    }
    assert_int_equal(vmm_virtio_get_status(vdev), 0);
}

/* The driver just broke the rules: the device says NEEDS_RESET, and a
 * reset brings it back to 0. */
static void expect_broken_then_reset(VmmVirtioDevice *vdev)
{
    for (int i = 0; i < 5000 && !(vmm_virtio_get_status(vdev) & 0x40); i++) {
        usleep(1000);
    }
    assert_true(vmm_virtio_get_status(vdev) & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    reset_device(vdev);
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

/* Receive buffers posted, doorbells on notifiers, no input: the console's
 * context has nothing to do (a polled receive ring would be "work" on
 * every pass); input still arrives. */
static void test_console_rx_idle(void **state)
{
    (void)state;
    T *t = make();
    int in[2], out[2], err = 0;
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
    VmmVirtioConsole *con = vmm_virtio_console_new(t->mem, t->ctx, in[0], out[1], &err);
    assert_non_null(con);
    VmmVirtioDevice *vdev = vmm_virtio_console_get_virtio(con);
    TestVq q[2];
    bringup(vdev, q, 2, t);
    VmmEventNotifier *kick[2];
    for (unsigned i = 0; i < 2; i++) {
        kick[i] = vmm_event_notifier_new(NULL);
        assert_non_null(kick[i]);
        assert_int_equal(vmm_virtio_queue_set_host_notifier(vdev, i, kick[i]), 0);
    }
    TestBuf rx = { .gpa = BUF + 0x1000, .len = 64, .write = true };
    tvq_add(&q[0], &rx, 1);
    vmm_event_notifier_set(kick[0]);
    assert_true(tvq_idle(t->ctx));
    assert_int_equal(write(in[1], "abc", 3), 3);
    uint32_t id, len;
    assert_true(used(&q[0], &id, &len));
    assert_int_equal(len, 3);
    assert_memory_equal(t->host + BUF + 0x1000, "abc", 3);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(vmm_virtio_queue_set_host_notifier(vdev, i, NULL), 0);
        vmm_event_notifier_free(kick[i]);
    }
    reset_device(vdev);
    vmm_virtio_console_free(con);
    for (int i = 0; i < 2; i++) {
        close(in[i]);
        close(out[i]);
    }
    destroy(t);
}

/* Read exactly @len bytes from @fd (blocking), false after 5 s without any. */
static bool read_exactly(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 5000) != 1) {
            return false;
        }
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0) {
            return false;
        }
        got += (size_t)n;
    }
    return true;
}

#define TX_CHUNK (16u << 10)
#define TX_CHUNKS 12u           /* 192 KiB: more than a pipe and the device hold */

/*
 * The console's output pipe is blocking and nobody reads it: the guest's
 * transmit buffers wait on the ring, while another device in the same
 * iothread (virtio-rng) keeps answering and a reset of the console
 * completes.  Once the pipe is read, everything arrives, in order.
 */
static void test_console_stuck_output(void **state)
{
    (void)state;
    T *t = make();
    int out[2], err = 0;
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);            /* blocking */
    VmmVirtioConsole *con = vmm_virtio_console_new(t->mem, t->ctx, -1, out[1], &err);
    assert_non_null(con);
    VmmVirtioDevice *cdev = vmm_virtio_console_get_virtio(con);
    VmmVirtioRng *rng = vmm_virtio_rng_new(t->mem, &err);
    assert_non_null(rng);
    VmmVirtioDevice *rdev = vmm_virtio_rng_get_virtio(rng);
    assert_int_equal(vmm_virtio_queue_set_context(rdev, 0, t->ctx), 0);
    TestVq cq[2], rq[1];
    bringup(cdev, cq, 2, t);
    bringup_at(rdev, rq, 1, t, 0x40000);

    for (size_t i = 0; i < TX_CHUNK * TX_CHUNKS; i++) {
        t->host[BUF + i] = (uint8_t)(i * 7 + i / 251);
    }
    for (unsigned i = 0; i < TX_CHUNKS; i++) {
        TestBuf tx = { .gpa = BUF + i * TX_CHUNK, .len = TX_CHUNK };
        tvq_add(&cq[1], &tx, 1);
    }
    vmm_virtio_queue_notify(cdev, 1);
    usleep(50000);

    /* The iothread still serves the RNG. */
    TestBuf rb = { .gpa = 0x60000, .len = 32, .write = true };
    tvq_add(&rq[0], &rb, 1);
    vmm_virtio_queue_notify(rdev, 0);
    uint32_t id, len;
    assert_true(used(&rq[0], &id, &len));
    assert_int_equal(len, 32);

    /* Not everything fits anywhere yet: some buffers are still the guest's. */
    unsigned done = 0;
    while (tvq_get_used(&cq[1], &id, &len)) {
        done++;
    }
    assert_true(done < TX_CHUNKS);

    /* Read it all: every buffer is used, the bytes come whole and in order. */
    uint8_t *got = malloc(TX_CHUNK * TX_CHUNKS);
    assert_true(read_exactly(out[0], got, TX_CHUNK * TX_CHUNKS));
    assert_memory_equal(got, t->host + BUF, TX_CHUNK * TX_CHUNKS);
    while (done < TX_CHUNKS && used(&cq[1], &id, &len)) {
        done++;
    }
    assert_int_equal(done, TX_CHUNKS);

    /* Stuck again: a reset (a quiesce) does not wait for the reader. */
    for (unsigned i = 0; i < TX_CHUNKS; i++) {
        TestBuf tx = { .gpa = BUF + i * TX_CHUNK, .len = TX_CHUNK };
        tvq_add(&cq[1], &tx, 1);
    }
    vmm_virtio_queue_notify(cdev, 1);
    usleep(50000);
    reset_device(cdev);
    /* Freeing it does not wait for the reader either. */
    vmm_virtio_console_free(con);
    vmm_virtio_rng_free(rng);
    free(got);
    close(out[0]);
    close(out[1]);
    destroy(t);
}

/* The output pipe's reader went away: the write fails with EPIPE - no
 * SIGPIPE kills the process (this one has the default disposition) - and
 * the output ends while the device goes on. */
static void test_console_reader_gone(void **state)
{
    (void)state;
    T *t = make();
    int out[2], err = 0;
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    close(out[0]);
    VmmVirtioConsole *con = vmm_virtio_console_new(t->mem, t->ctx, -1, out[1], &err);
    assert_non_null(con);
    VmmVirtioDevice *vdev = vmm_virtio_console_get_virtio(con);
    TestVq q[2];
    bringup(vdev, q, 2, t);
    memcpy(t->host + BUF, "into the void", 13);
    uint32_t id, len;
    for (int i = 0; i < 2; i++) {
        TestBuf tx = { .gpa = BUF, .len = 13 };
        tvq_add(&q[1], &tx, 1);
        vmm_virtio_queue_notify(vdev, 1);
        assert_true(used(&q[1], &id, &len));
    }
    assert_false(vmm_virtio_get_status(vdev) & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    reset_device(vdev);
    vmm_virtio_console_free(con);
    close(out[1]);
    destroy(t);
}

/* One socket for input and output: both directions work. */
static void test_console_one_fd(void **state)
{
    (void)state;
    T *t = make();
    int sv[2], err = 0;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    VmmVirtioConsole *con = vmm_virtio_console_new(t->mem, t->ctx, sv[0], sv[0], &err);
    assert_non_null(con);
    VmmVirtioDevice *vdev = vmm_virtio_console_get_virtio(con);
    TestVq q[2];
    bringup(vdev, q, 2, t);
    TestBuf rx = { .gpa = BUF + 0x1000, .len = 64, .write = true };
    tvq_add(&q[0], &rx, 1);
    vmm_virtio_queue_notify(vdev, 0);
    usleep(20000);
    memcpy(t->host + BUF, "to the host", 11);
    TestBuf tx = { .gpa = BUF, .len = 11 };
    tvq_add(&q[1], &tx, 1);
    vmm_virtio_queue_notify(vdev, 1);
    uint32_t id, len;
    assert_true(used(&q[1], &id, &len));
    uint8_t got[16];
    assert_true(read_exactly(sv[1], got, 11));
    assert_memory_equal(got, "to the host", 11);
    assert_int_equal(write(sv[1], "to guest", 8), 8);
    assert_true(used(&q[0], &id, &len));
    assert_int_equal(len, 8);
    assert_memory_equal(t->host + BUF + 0x1000, "to guest", 8);
    reset_device(vdev);
    vmm_virtio_console_free(con);
    close(sv[0]);
    close(sv[1]);
    destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_console),
        cmocka_unit_test(test_console_stuck_output),
        cmocka_unit_test(test_console_one_fd),
        cmocka_unit_test(test_console_reader_gone),
        cmocka_unit_test(test_console_rx_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
