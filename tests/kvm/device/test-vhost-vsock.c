/* SPDX-License-Identifier: MIT */
/*
 * vhost-vsock against the kernel's /dev/vhost-vsock (in the emulated
 * machine, which loads vhost_vsock for it): a test-side guest driver lays
 * out the three queues in guest memory and speaks the virtio-vsock packet
 * protocol by hand with a host AF_VSOCK socket, through the kernel's
 * vhost worker - a connection request, the response, data both ways.
 * Then a pause (the kernel stops; host data waits and arrives after the
 * resume), a reset and a new bring-up (a new connection on fresh rings).
 * Without /dev/vhost-vsock (a host whose kernel lacks the module) it skips.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_vsock.h>
#include <linux/vm_sockets.h>
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
#include "vmmkit/vhost-vsock.h"
#include "../../device/vq-driver.h"

#define MiB (1ull << 20)
#define CID 42
#define RXQ 0
#define TXQ 1
#define EVQ 2
#define QSIZE 64
#define RXBUF 0x40000       /* 4 KiB receive buffers, 32 slots */
#define TXBUF 0x80000       /* 4 KiB transmit buffers, 16 slots */
#define HDR sizeof(struct virtio_vsock_hdr)

typedef struct T {
    VmmGuestMemory *mem;
    VmmRamRegion *ram;
    uint8_t *host;
    VmmIOThread *iot;
    VmmVhostVsock *vs;
    VmmVirtioDevice *vdev;
    TestVq tq[3];
    unsigned rx_slot, tx_slot;
    int irqs[3];            /* atomic */
} T;

static void irq_cb(void *opaque, VmmVirtioDevice *vdev, int queue)
{
    T *t = opaque;
    (void)vdev;
    if (queue >= 0) {
        __atomic_add_fetch(&t->irqs[queue], 1, __ATOMIC_RELAXED);
    }
}

#define WAIT_NS (60 * 1000000000LL)
#define WAIT_UNTIL(cond) ({                                               \
    int64_t end_ = vmm_clock_ns() + WAIT_NS;                              \
    while (!(cond) && vmm_clock_ns() < end_) {                            \
        vmm_aio_poll(vmm_aio_context_main(), false);                      \
        usleep(500);                                                      \
    }                                                                     \
    (cond); })

static void post_rx(T *t, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        TestBuf b = { RXBUF + 4096ull * (t->rx_slot++ % 32), 4096, true };
        tvq_add(&t->tq[RXQ], &b, 1);
    }
    vmm_virtio_queue_notify(t->vdev, RXQ);
}

static void bringup(T *t)
{
    TestVq *qs[3] = { &t->tq[0], &t->tq[1], &t->tq[2] };
    for (unsigned q = 0; q < 3; q++) {
        tvq_init(&t->tq[q], t->host, 0x10000 + 0x8000ull * q, QSIZE);
    }
    t->rx_slot = t->tx_slot = 0;
    uint64_t f = vmm_virtio_get_device_features(t->vdev) &
                 ~(1ull << VMM_VIRTIO_F_RING_EVENT_IDX);
    assert_int_equal(tvq_bringup(t->vdev, qs, 3, f), 0x0f);
    TestBuf ev = { 0xc0000, 8, true };
    tvq_add(&t->tq[EVQ], &ev, 1);
    vmm_virtio_queue_notify(t->vdev, EVQ);
    post_rx(t, 16);
}

static T *make(void)
{
    T *t = calloc(1, sizeof(*t));
    t->host = tvq_ram_new(MiB, &t->mem, &t->ram);
    assert_non_null(t->host);
    t->iot = vmm_iothread_new("vsock-test", NULL, NULL);
    VmmVhostVsockOptions vo = {
        .size = sizeof(vo), .name = "vsock0", .guest_cid = CID,
        .ctx = vmm_iothread_get_context(t->iot),
    };
    int err = 0;
    t->vs = vmm_vhost_vsock_new(t->mem, &vo, &err);
    if (!t->vs) {
        fail_msg("vmm_vhost_vsock_new: %s", vmm_strerror(err));
    }
    t->vdev = vmm_vhost_vsock_get_virtio(t->vs);
    vmm_virtio_set_interrupt(t->vdev, irq_cb, t);
    bringup(t);
    assert_true(vmm_vhost_vsock_is_running(t->vs));
    return t;
}

static void destroy(T *t)
{
    vmm_virtio_set_status(t->vdev, 0);
    assert_true(WAIT_UNTIL(vmm_virtio_get_status(t->vdev) == 0));
    vmm_vhost_vsock_free(t->vs);
    vmm_iothread_destroy(t->iot);
    vmm_guest_memory_unref(t->mem);
    vmm_ram_region_unref(t->ram);
    free(t);
}

/* The next packet the kernel put on the receive queue (its buffer is
 * posted again); false after the wait. */
static bool guest_recv(T *t, struct virtio_vsock_hdr *h, uint8_t *data, size_t max,
                       int64_t wait_ns)
{
    uint32_t id, len;
    int64_t end = vmm_clock_ns() + wait_ns;
    while (!tvq_get_used(&t->tq[RXQ], &id, &len)) {
        if (vmm_clock_ns() > end) {
            return false;
        }
        usleep(500);
    }
    assert_true(len >= HDR);
    const uint8_t *buf = t->host + t->tq[RXQ].desc[id].addr;
    memcpy(h, buf, HDR);
    assert_int_equal(len, HDR + h->len);
    assert_true(h->len <= max);
    memcpy(data, buf + HDR, h->len);
    post_rx(t, 1);
    return true;
}

/* The next packet with operation @op, skipping credit updates. */
static void guest_expect(T *t, uint16_t op, struct virtio_vsock_hdr *h, uint8_t *data,
                         size_t max)
{
    for (;;) {
        assert_true(guest_recv(t, h, data, max, WAIT_NS));
        if (h->op != VIRTIO_VSOCK_OP_CREDIT_UPDATE || op == VIRTIO_VSOCK_OP_CREDIT_UPDATE) {
            break;
        }
    }
    assert_int_equal(h->op, op);
    assert_int_equal(h->dst_cid, CID);
    assert_int_equal(h->src_cid, VMADDR_CID_HOST);
    assert_int_equal(h->type, VIRTIO_VSOCK_TYPE_STREAM);
}

/* Send a packet from the guest: header and payload in two descriptors. */
static void guest_send(T *t, const struct virtio_vsock_hdr *req, uint16_t op,
                       const void *data, uint32_t len)
{
    struct virtio_vsock_hdr h = {
        .src_cid = CID, .dst_cid = req->src_cid, .src_port = req->dst_port,
        .dst_port = req->src_port, .len = len, .type = VIRTIO_VSOCK_TYPE_STREAM,
        .op = op, .buf_alloc = 65536, .fwd_cnt = 0,
    };
    uint64_t gpa = TXBUF + 4096ull * (t->tx_slot++ % 16);
    memcpy(t->host + gpa, &h, HDR);
    if (len) {
        memcpy(t->host + gpa + 256, data, len);
    }
    TestBuf b[2] = { { gpa, (uint32_t)HDR, false }, { gpa + 256, len, false } };
    tvq_add(&t->tq[TXQ], b, len ? 2 : 1);
    vmm_virtio_queue_notify(t->vdev, TXQ);
}

/* A host connection to the guest's port @port, accepted by the test
 * driver; returns the socket, *@req the request's header. */
static int connect_guest(T *t, uint32_t port, struct virtio_vsock_hdr *req)
{
    int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = CID, .svm_port = port };
    int r = connect(s, (struct sockaddr *)&a, sizeof(a));
    assert_true(r == 0 || errno == EINPROGRESS);
    uint8_t none[1];
    guest_expect(t, VIRTIO_VSOCK_OP_REQUEST, req, none, 0);
    assert_int_equal(req->dst_port, port);
    guest_send(t, req, VIRTIO_VSOCK_OP_RESPONSE, NULL, 0);
    struct pollfd p = { .fd = s, .events = POLLOUT };
    assert_int_equal(poll(&p, 1, 30000), 1);
    int soerr = -1;
    socklen_t sl = sizeof(soerr);
    assert_int_equal(getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl), 0);
    assert_int_equal(soerr, 0);
    return s;
}

/* As connect_guest, after a reset or a restore: what the old connection's
 * end sent may come first, so skip to the new request. */
static int connect_guest_skipping(T *t, uint32_t port, struct virtio_vsock_hdr *h)
{
    uint8_t data[256];
    int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = CID, .svm_port = port };
    int r = connect(s, (struct sockaddr *)&a, sizeof(a));
    assert_true(r == 0 || errno == EINPROGRESS);
    do {
        assert_true(guest_recv(t, h, data, sizeof(data), WAIT_NS));
    } while (h->op != VIRTIO_VSOCK_OP_REQUEST);
    assert_int_equal(h->dst_port, port);
    guest_send(t, h, VIRTIO_VSOCK_OP_RESPONSE, NULL, 0);
    struct pollfd p = { .fd = s, .events = POLLOUT };
    assert_int_equal(poll(&p, 1, 30000), 1);
    return s;
}

static void host_expect(int s, const char *msg)
{
    char buf[256];
    size_t got = 0, len = strlen(msg);
    while (got < len) {
        struct pollfd p = { .fd = s, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 30000), 1);
        ssize_t r = recv(s, buf + got, sizeof(buf) - got, 0);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_int_equal(got, len);
    assert_memory_equal(buf, msg, len);
}

static bool have_vhost(void)
{
    return access("/dev/vhost-vsock", R_OK | W_OK) == 0;
}

/* Data both ways through the kernel. */
static void test_exchange(void **state)
{
    (void)state;
    if (!have_vhost()) {
        skip();
    }
    T *t = make();
    struct virtio_vsock_hdr req, h;
    uint8_t data[256];

    int s = connect_guest(t, 5000, &req);
    static const char to_guest[] = "hello guest, from the host";
    assert_int_equal(send(s, to_guest, strlen(to_guest), 0), (ssize_t)strlen(to_guest));
    guest_expect(t, VIRTIO_VSOCK_OP_RW, &h, data, sizeof(data));
    assert_int_equal(h.len, strlen(to_guest));
    assert_memory_equal(data, to_guest, h.len);
    static const char to_host[] = "hello host, from the guest";
    guest_send(t, &req, VIRTIO_VSOCK_OP_RW, to_host, (uint32_t)strlen(to_host));
    host_expect(s, to_host);
    assert_true(__atomic_load_n(&t->irqs[RXQ], __ATOMIC_RELAXED) > 0);
    assert_true(__atomic_load_n(&t->irqs[TXQ], __ATOMIC_RELAXED) > 0);
    close(s);
    destroy(t);
}

/* Paused: the kernel stops touching the rings; host data arrives after the
 * resume.  Reset: the kernel stops; after a new bring-up a new connection
 * works on fresh rings. */
static void test_pause_reset(void **state)
{
    (void)state;
    if (!have_vhost()) {
        skip();
    }
    T *t = make();
    struct virtio_vsock_hdr req, h;
    uint8_t data[256];
    VmmDevice *dev = vmm_virtio_device_get_device(t->vdev);

    int s = connect_guest(t, 5001, &req);
    assert_int_equal(vmm_device_pause(dev, NULL, NULL), 0);
    assert_true(WAIT_UNTIL(vmm_device_is_quiesced(dev)));
    assert_false(vmm_vhost_vsock_is_running(t->vs));
    static const char msg[] = "sent while the device was paused";
    assert_int_equal(send(s, msg, strlen(msg), 0), (ssize_t)strlen(msg));
    assert_false(guest_recv(t, &h, data, sizeof(data), 300 * 1000000LL));
    assert_int_equal(vmm_device_unpause(dev), 0);
    assert_true(WAIT_UNTIL(vmm_vhost_vsock_is_running(t->vs)));
    guest_expect(t, VIRTIO_VSOCK_OP_RW, &h, data, sizeof(data));
    assert_int_equal(h.len, strlen(msg));
    assert_memory_equal(data, msg, h.len);
    close(s);

    vmm_virtio_set_status(t->vdev, 0);
    assert_true(WAIT_UNTIL(vmm_virtio_get_status(t->vdev) == 0));
    assert_false(vmm_vhost_vsock_is_running(t->vs));
    bringup(t);
    assert_true(vmm_vhost_vsock_is_running(t->vs));
    int s2 = connect_guest_skipping(t, 5002, &h);
    static const char again[] = "after the reset";
    guest_send(t, &h, VIRTIO_VSOCK_OP_RW, again, (uint32_t)strlen(again));
    host_expect(s2, again);
    close(s2);
    destroy(t);
}

/* Saved (quiesced) after an exchange, the device freed, a new one takes
 * the record over: the guest gets VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in
 * its event buffer, the kernel goes on from the saved ring positions, and
 * a new connection carries data both ways. */
static void test_save_load(void **state)
{
    (void)state;
    if (!have_vhost()) {
        skip();
    }
    T *t = make();
    struct virtio_vsock_hdr req, h;
    uint8_t data[256];
    VmmDevice *dev = vmm_virtio_device_get_device(t->vdev);

    int s = connect_guest(t, 5003, &req);
    static const char before[] = "before the save";
    assert_int_equal(send(s, before, strlen(before), 0), (ssize_t)strlen(before));
    guest_expect(t, VIRTIO_VSOCK_OP_RW, &h, data, sizeof(data));
    assert_int_equal(vmm_device_pause(dev, NULL, NULL), 0);
    assert_true(WAIT_UNTIL(vmm_device_is_quiesced(dev)));
    size_t len = vmm_virtio_state_size(t->vdev);
    uint8_t *rec = malloc(len);
    assert_int_equal(vmm_virtio_save_state(t->vdev, rec, len), 0);
    assert_int_equal(vmm_device_unpause(dev), 0);
    vmm_virtio_set_status(t->vdev, 0);
    assert_true(WAIT_UNTIL(vmm_virtio_get_status(t->vdev) == 0));
    vmm_vhost_vsock_free(t->vs);            /* the kernel's connection goes too */
    vmm_iothread_destroy(t->iot);
    close(s);

    t->iot = vmm_iothread_new("vsock-test2", NULL, NULL);
    VmmVhostVsockOptions vo = { .size = sizeof(vo), .name = "vsock0", .guest_cid = CID,
                                .ctx = vmm_iothread_get_context(t->iot) };
    int err = 0;
    t->vs = vmm_vhost_vsock_new(t->mem, &vo, &err);
    assert_non_null(t->vs);
    t->vdev = vmm_vhost_vsock_get_virtio(t->vs);
    vmm_virtio_set_interrupt(t->vdev, irq_cb, t);
    uint32_t id = 0, used = 0;
    assert_false(tvq_get_used(&t->tq[EVQ], &id, &used));
    assert_int_equal(vmm_virtio_load_state(t->vdev, rec, len), 0);
    free(rec);
    assert_true(vmm_vhost_vsock_is_running(t->vs));
    bool got = false;
    assert_true(WAIT_UNTIL(got || (got = tvq_get_used(&t->tq[EVQ], &id, &used))));
    assert_int_equal(used, 4);
    uint32_t ev;
    memcpy(&ev, t->host + t->tq[EVQ].desc[id].addr, 4);
    assert_int_equal(le32toh(ev), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
    assert_true(__atomic_load_n(&t->irqs[EVQ], __ATOMIC_RELAXED) > 0);

    int s2 = connect_guest_skipping(t, 5004, &h);
    static const char after[] = "after the restore";
    guest_send(t, &h, VIRTIO_VSOCK_OP_RW, after, (uint32_t)strlen(after));
    host_expect(s2, after);
    assert_int_equal(send(s2, after, strlen(after), 0), (ssize_t)strlen(after));
    guest_expect(t, VIRTIO_VSOCK_OP_RW, &h, data, sizeof(data));
    assert_int_equal(h.len, strlen(after));
    assert_memory_equal(data, after, h.len);
    close(s2);
    destroy(t);
}

static void test_bad_cid(void **state)
{
    (void)state;
    if (!have_vhost()) {
        skip();
    }
    T *t = make();
    VmmVhostVsockOptions vo = { .size = sizeof(vo), .guest_cid = CID };
    int err = 0;
    assert_null(vmm_vhost_vsock_new(t->mem, &vo, &err));
    assert_int_equal(err, -EADDRINUSE);
    vo.guest_cid = 2;
    assert_null(vmm_vhost_vsock_new(t->mem, &vo, &err));
    assert_int_equal(err, -EINVAL);
    vo.guest_cid = CID + 1;
    vo.vhost_path = "/nonexistent/vhost-vsock";
    assert_null(vmm_vhost_vsock_new(t->mem, &vo, &err));
    assert_int_equal(err, -ENOENT);
    destroy(t);
}

/* The caller may drop its guest memory reference before it frees the
 * device (a machine does, in vmm_machine_free): the device keeps the
 * memory it listens to until it is freed (with MALLOC_PERTURB_, as meson
 * runs tests, a listener removed from freed memory crashed). */
static void test_free_after_memory(void **state)
{
    (void)state;
    if (!have_vhost()) {
        skip();
    }
    T *t = make();
    vmm_virtio_set_status(t->vdev, 0);
    assert_true(WAIT_UNTIL(vmm_virtio_get_status(t->vdev) == 0));
    vmm_guest_memory_unref(t->mem);
    vmm_vhost_vsock_free(t->vs);
    vmm_iothread_destroy(t->iot);
    vmm_ram_region_unref(t->ram);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchange),
        cmocka_unit_test(test_pause_reset),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_bad_cid),
        cmocka_unit_test(test_free_after_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
